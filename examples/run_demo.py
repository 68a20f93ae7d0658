"""Run the example notebooks in a real Jupyter kernel and print what each cell shows.

    make demo            # or: .venv/bin/python examples/run_demo.py [NOTEBOOK ...]

Each notebook is executed with nbclient; the executed copy is written next to
it as ``NAME.executed.ipynb`` (ignored by git).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
KERNEL_NAME = "torchgrad-magic"


def ensure_kernelspec() -> str:
    """A kernelspec that starts this interpreter, so the kernel sees the same install."""
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if spec.argv and Path(spec.argv[0]) == Path(sys.executable):
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    install(kernel_name=KERNEL_NAME, display_name="Python (torchgrad-magic)", prefix=sys.prefix)
    return KERNEL_NAME


def execute(path: Path, timeout: int = 300) -> nbformat.NotebookNode:
    """Execute the notebook at *path* in a fresh kernel; raise if a cell fails."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=ensure_kernelspec(),
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return nb


def cell_text(cell: nbformat.NotebookNode) -> str:
    """The text a person would read under a code cell."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text.rstrip("\n"))
        elif out.output_type in ("display_data", "execute_result"):
            data = out.get("data", {})
            if "image/png" in data:
                parts.append(f"[figure, {len(data['image/png']) * 3 // 4:,} bytes of PNG]")
            elif "text/plain" in data:
                parts.append(data["text/plain"])
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "\n".join(parts)


def main(paths: list[str]) -> int:
    notebooks = [Path(p) for p in paths] or sorted(
        p for p in HERE.glob("*.ipynb") if not p.name.endswith(".executed.ipynb")
    )
    for path in notebooks:
        print(f"=== {path.name} ===")
        nb = execute(path)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            print("\n" + "\n".join(f">>> {line}" for line in cell.source.splitlines()))
            text = cell_text(cell)
            if text:
                print(text)
        out = path.with_name(path.stem + ".executed.ipynb")
        nbformat.write(nb, out)
        print(f"\nexecuted notebook written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
