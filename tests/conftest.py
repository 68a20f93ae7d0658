"""Shared fixtures: a real InteractiveShell, a real Jupyter kernel, and one
``run`` fixture that drives every behaviour through both entry points
(the plain ``grad()`` function and the ``%%grad`` magic)."""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

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


class GlobalState(NamedTuple):
    """The process-wide state a cell may change and %%grad must leave as a plain run leaves it."""

    grad_enabled: bool
    anomaly_enabled: bool
    default_dtype: Any
    warning_filters: list
    rc_params: dict
    warning_functions: tuple  # warnings.warn and showwarning (%%grad wraps both while a cell runs)


def global_state() -> GlobalState:
    import warnings

    import matplotlib
    import torch

    return GlobalState(
        torch.is_grad_enabled(),
        torch.is_anomaly_enabled(),
        torch.get_default_dtype(),
        list(warnings.filters),
        dict(matplotlib.rcParams),
        (warnings.warn, warnings.showwarning),
    )


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
        from torchgrad_magic import GradError, grad

        try:
            return grad(cell, namespace=self.ns, **keywords(line))
        except GradError as e:
            raise Failure(str(e)) from None

    def _magic(self, line: str, cell: str):
        self.shell.user_ns.pop("_result_", None)
        outcome = self.shell.run_cell(f"%%grad --out _result_ -q {line}\n{cell}")
        self.outcome = outcome
        if outcome.error_in_exec is not None or outcome.error_before_exec is not None:
            error = outcome.error_in_exec or outcome.error_before_exec
            raise Failure(str(error).removeprefix("%%grad: ").removeprefix("%%grad："))
        return self.shell.user_ns.pop("_result_")


# The magic's flags as grad()'s keyword arguments, spelled out here (ipytest's pattern): the
# function entry calls the public grad() as a user would, and never borrows the magic's parser.
VALUES = {
    "--wrt": "wrt",
    "--of": "of",
    "--dtype": "dtype",
    "--device": "device",
    "--range": "plot_range",
    "--save": "save",
    "--order": "order",
    "--expect": "expect",
    "--lang": "lang",
}
SWITCHES = {
    "--retain-grad": ("retain_grad", True),
    "--plot": ("plot", True),
    "--no-plot": ("plot", False),
    "--hessian": ("hessian", True),
    "--jacobian": ("jacobian", True),
    "--check": ("check", True),
    "--symbolic": ("symbolic", True),
    "--times-input": ("times_input", True),
    "--steps": ("steps", True),
}


def keywords(line: str) -> dict[str, Any]:
    """``--wrt u=3 v=4 --order 2 --graph`` -> ``{"wrt": "u=3 v=4", "order": 2, "graph": "simple"}``.

    A flag's value is the text up to the next flag, as written (``x=torch.linspace(-1, 1, 7)``
    stays whole: grad() reads ``wrt`` and ``expect`` strings itself). What only the magic's line
    syntax can say (an unknown flag, a flag without its value, ``--order two``) has no keyword:
    such a test is about the magic's parser and is skipped for this entry (the magic entry runs it).
    """
    found: dict[str, Any] = {}
    for part in re.split(r"\s+(?=--?[A-Za-z])", line.strip()):
        if not part:
            continue
        flag, _, value = part.partition(" ")
        value = value.strip()
        if flag in SWITCHES and not value:
            key, setting = SWITCHES[flag]
            found[key] = setting
        elif flag == "--graph":
            found["graph"] = value or "simple"
        elif flag in VALUES and value:
            found[VALUES[flag]] = value
        else:
            pytest.skip(f"{part!r} is the magic's line syntax; grad() takes keywords")
    if "order" in found:
        if not re.fullmatch(r"-?\d+", found["order"]):
            pytest.skip(f"--order {found['order']} is the magic's line syntax; grad() takes an int")
        found["order"] = int(found["order"])
    return found


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


# TGM_KERNEL=<kernelspec>: the kernel tests (test_kernel.py, test_corpus.py, ...) run against
# another install, e.g. the Colab-like venv of `scripts/compat.py --kernel-suite` (the wheel there,
# IPython 7.34, torch 2.9); by default this interpreter's own kernel.
KERNEL_NAME = os.environ.get("TGM_KERNEL") or run_demo.KERNEL_NAME


class Kernel:
    def __init__(self):
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name=KERNEL_NAME, startup_timeout=120)

    def run(self, code: str, timeout: float = 120) -> Reply:
        outputs: list[dict] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"msg_type": msg["msg_type"], "content": msg["content"]})

        content = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)["content"]
        return Reply(content["status"], outputs, content.get("ename", ""), content.get("evalue", ""))

    def value(self, expr: str) -> str:
        reply = self.run(expr)
        if reply.status == "aborted":  # ipykernel 5 (Colab's) drops requests queued right after an
            time.sleep(0.5)  # error, plain cells' too ("Run all" stops there): ask once more
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
