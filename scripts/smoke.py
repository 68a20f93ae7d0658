"""Smoke test of an *installed* torchgrad-magic (a wheel in a fresh venv, no dev extras).

Run it with the venv's python from a directory outside the repository (scripts/compat.py does),
so that ``import torchgrad_magic`` finds the installed wheel, never the source tree. It uses no
pytest and none of the repository's fixtures: only what a new user has.

    python smoke.py            # every check; the kernel run only where ipykernel is installed
    python smoke.py --no-kernel

Exit status 0 when every check passed; each check prints one line.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("LC_ALL", "C.UTF-8")  # English report

PASSED: list[str] = []


def check(name: str, ok: bool, detail: object = "") -> None:
    if not ok:
        print(f"FAIL {name}: {detail}", flush=True)
        raise SystemExit(1)
    PASSED.append(name)
    print(f"ok   {name}", flush=True)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in (
        "torchgrad-magic",
        "torch",
        "ipython",
        "ipykernel",
        "jupyter_client",
        "traitlets",
        "matplotlib",
        "numpy",
        "sympy",
    ):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            found[dist] = "-"
    return found


def installed_not_source() -> None:
    import torchgrad_magic

    where = Path(torchgrad_magic.__file__).resolve()
    check("imported from site-packages", "site-packages" in where.parts, where)
    check("__version__ is the wheel's version", torchgrad_magic.__version__ == md.version("torchgrad-magic"))
    check("py.typed shipped", (where.parent / "py.typed").is_file())
    # importing the package (and loading the extension) must not import torch
    code = "import sys, torchgrad_magic; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    check("import is cheap (no torch)", out.strip() == "False", out)


def shell_cells() -> None:
    import matplotlib.figure
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "torchgrad_magic")
    check("%load_ext torchgrad_magic", "grad" in shell.magics_manager.magics["cell"])

    def cell(line: str, body: str):
        shell.user_ns.pop("_r", None)
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            outcome = shell.run_cell(f"%%grad --out _r {line}\n{body}")
        if not outcome.success:
            check(f"%%grad {line}", False, outcome.error_in_exec or outcome.error_before_exec)
        return shell.user_ns["_r"], buffer.getvalue()

    result, shown = cell("--wrt x=3", "y = 3 * x ** 2")
    check("tutorial: y = 3x² at x=3 -> 18", result.grads["x"].item() == 18, result.grads)
    check("the report is shown", "dy/dx = 18" in shown and "MulBackward0" in shown, shown)

    result, _ = cell("--wrt x=3", "y = 6 * x ** 2 + 2 * x + 4")
    check("tutorial: 6x²+2x+4 at x=3 -> 38", result.grads["x"].item() == 38, result.grads)

    result, _ = cell("--wrt u=3 v=4", "f = u ** 3 + v ** 2 + 4 * u * v")
    ok = result.grads["u"].item() == 43 and result.grads["v"].item() == 20
    check("tutorial: u³+v²+4uv at u=3 v=4 -> 43, 20", ok, result.grads)

    result, _ = cell("--wrt x=3 --plot", "y = 3 * x ** 2")
    check("--plot draws a figure", isinstance(result.figure, matplotlib.figure.Figure), result.figure)
    png = io.BytesIO()
    result.figure.savefig(png, format="png")
    check("the figure saves as PNG", png.getvalue().startswith(b"\x89PNG"))

    result, _ = cell("--wrt x=3 --graph", "y = 3 * x ** 2")
    ops = [n.op for n in result.graph.nodes] if result.graph is not None else []
    check("--graph has the backward graph", "MulBackward0" in ops and "AccumulateGrad" in ops, ops)

    result, _ = cell("--wrt x=3 --symbolic", "y = 6 * x ** 2 + 2 * x + 4")
    lines = [(s.expression, s.value) for s in result.symbolic]
    check("--symbolic gives 12*x + 2 = 38", lines == [("12*x + 2", 38.0)], lines)
    check("the SymPy line is in the report", "dy/dx = 12*x + 2 = 38" in str(result), str(result))

    from torchgrad_magic import grad

    check("grad() without IPython", grad("y = 3 * x ** 2", wrt="x=3").grads["x"].item() == 18)
    try:  # a classic autograd error keeps its type and gets one line of help (a PEP 678 note, 3.10 too)
        grad("y = x * torch.ones(3)\ny.backward()", wrt="x=3")
        notes: list[str] = []
    except RuntimeError as e:
        notes = list(getattr(e, "__notes__", []))
    check("the cell's own error carries a hint", any("what it means" in n for n in notes), notes)


def kernel_run() -> None:
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        print("skip kernel run: jupyter_client/ipykernel not installed", flush=True)
        return
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        outputs: list[str] = []

        def hook(msg: dict) -> None:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                outputs.append(content["text"])
            elif msg["msg_type"] in ("display_data", "execute_result"):
                outputs.append(content["data"].get("text/plain", ""))
            elif msg["msg_type"] == "error":
                outputs.append(f"{content['ename']}: {content['evalue']}")

        code = "%load_ext torchgrad_magic\nimport sys, torchgrad_magic\nprint(sys.prefix, torchgrad_magic.__file__)"
        reply = kc.execute_interactive(code, output_hook=hook, timeout=120)["content"]
        check("kernel: %load_ext", reply["status"] == "ok", outputs)
        where = "".join(outputs).split()
        ok = len(where) == 2 and where[0] == sys.prefix and where[1].startswith(sys.prefix)
        check("kernel: this venv (sys.prefix) and its installed package", ok, (where, sys.prefix))
        outputs.clear()
        reply = kc.execute_interactive("%%grad --wrt x=3\ny = 3 * x ** 2", output_hook=hook, timeout=120)
        shown = "\n".join(outputs)
        check(
            "kernel: %%grad shows dy/dx = 18",
            reply["content"]["status"] == "ok" and "dy/dx = 18" in shown,
            shown,
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-kernel", action="store_true", help="skip the real Jupyter kernel run")
    args = parser.parse_args()
    start = time.perf_counter()
    print(" ".join(f"{k}={v}" for k, v in versions().items()), flush=True)
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)  # plots or files a cell writes land here; the source tree is never on sys.path
        try:
            installed_not_source()
            shell_cells()
            if not args.no_kernel:
                kernel_run()
        finally:
            os.chdir(here)
    print(f"smoke checks took {time.perf_counter() - start:.1f}s", flush=True)
    print(f"smoke: {len(PASSED)} passed, 0 failed", flush=True)


if __name__ == "__main__":
    main()
