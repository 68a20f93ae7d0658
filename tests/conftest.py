"""Shared fixtures: a real InteractiveShell, a real Jupyter kernel, and one
``run`` fixture that drives every behaviour through both entry points
(the plain ``grad()`` function and the ``%%grad`` magic)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["LC_ALL"] = "C.UTF-8"  # English unless a test asks for Chinese: "auto" follows the locale

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import run_demo  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once, in the controller: workers then only read it
        run_demo.ensure_kernelspec()


# ---------------------------------------------------------------------------
# IPython
# ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ipython():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "torchgrad_magic")
    return shell


@pytest.fixture
def shell(ipython):
    """The session's shell with an empty user namespace."""
    ipython.reset(new_session=False)
    if "grad" not in ipython.magics_manager.magics["cell"]:
        ipython.run_line_magic("load_ext", "torchgrad_magic")
    yield ipython
    ipython.reset(new_session=False)


class Failure(Exception):
    """What the user was told when %%grad / grad() refused the input."""


@dataclass
class Entry:
    """One way in: ``run(line, cell)`` returns the GradResult or raises Failure."""

    kind: str
    shell: Any
    ns: dict = field(default_factory=dict)

    def __call__(self, line: str, cell: str):
        return self._magic(line, cell) if self.kind == "magic" else self._function(line, cell)

    def _function(self, line: str, cell: str):
        from IPython.core.error import UsageError

        from torchgrad_magic import GradError, grad
        from torchgrad_magic.magic import GradMagic, _parse

        try:
            args = _parse(GradMagic.grad.parser, line)
            return grad(cell, namespace=self.ns, options=GradMagic(shell=self.shell)._options(args))
        except (GradError, UsageError) as e:
            raise Failure(str(e)) from None

    def _magic(self, line: str, cell: str):
        self.shell.user_ns.pop("_result_", None)
        outcome = self.shell.run_cell(f"%%grad --out _result_ -q {line}\n{cell}")
        self.outcome = outcome
        if outcome.error_in_exec is not None or outcome.error_before_exec is not None:
            error = outcome.error_in_exec or outcome.error_before_exec
            raise Failure(str(error).removeprefix("%%grad: ").removeprefix("%%grad："))
        return self.shell.user_ns.pop("_result_")


@pytest.fixture(params=["function", "magic"])
def run(request, shell) -> Entry:
    entry = Entry(request.param, shell)
    if request.param == "magic":
        entry.ns = shell.user_ns
    return entry


# ---------------------------------------------------------------------------
# a real Jupyter kernel
# ---------------------------------------------------------------------------
@dataclass
class Reply:
    status: str
    outputs: list[dict]
    ename: str = ""
    evalue: str = ""

    def text(self, mime: str = "text/plain") -> str:
        parts = []
        for out in self.outputs:
            if out["msg_type"] == "stream":
                parts.append(out["content"]["text"])
            elif out["msg_type"] in ("display_data", "execute_result"):
                parts.append(out["content"]["data"].get(mime, ""))
            elif out["msg_type"] == "error":
                parts.append(f"{out['content']['ename']}: {out['content']['evalue']}")
        return "\n".join(parts)

    def of_type(self, msg_type: str) -> list[dict]:
        return [o["content"] for o in self.outputs if o["msg_type"] == msg_type]


class Kernel:
    def __init__(self):
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name=run_demo.KERNEL_NAME, startup_timeout=120)

    def run(self, code: str, timeout: float = 120) -> Reply:
        outputs: list[dict] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"msg_type": msg["msg_type"], "content": msg["content"]})

        content = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)["content"]
        return Reply(content["status"], outputs, content.get("ename", ""), content.get("evalue", ""))

    def value(self, expr: str) -> str:
        reply = self.run(expr)
        assert reply.status == "ok", reply.text()
        return reply.of_type("execute_result")[-1]["data"]["text/plain"]

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    reply = k.run("%load_ext torchgrad_magic\nimport torch")  # tests may run in any order
    assert reply.status == "ok", reply.text()
    yield k
    k.close()
