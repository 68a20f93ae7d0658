"""The benchmark code runs (at tiny sizes) so it does not rot; no timing is asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "benchmarks" / "run.py"


FLAG_LINES = [
    "none",
    "--retain-grad",
    "--plot",
    "--check",
    "--symbolic",
    "--order 2",
    "--hessian",
    "--jacobian",
    "--graph",
    "--graph full",
    "--times-input",
    "--expect 18",
    "--out r -q",
    "no --wrt, cell calls backward",
]


def test_benchmarks_run_quick():
    out = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| figure |" in out.stdout and "`--plot` of 2,000 points" in out.stdout
    # the rows added for the op-heavy cell, the training loop and the per-run leaks (a row may say
    # "error: ..." while the engine is rewritten; it must still be there)
    assert "on a cell of 100 small tensor ops" in out.stdout
    assert "on a training loop: 5 SGD steps" in out.stdout
    assert "per-run leaks of `%%grad`, 14 magic lines" in out.stdout
    assert "| magic line | objects / run | tensors / run | linecache entries / run |" in out.stdout
    for flag in FLAG_LINES:
        assert f"| `{flag}` |" in out.stdout, flag
    for name in ("cell", "load", "plot", "memory", "notebook", "graph", "ops", "train", "leaks"):
        assert f"{name}: " in out.stderr, name  # each figure's wall time


def test_benchmarks_only_rejects_unknown_figures():
    # `--only` itself is used by hand (`--only ops,leaks`); running a figure here would cost seconds
    bad = subprocess.run([sys.executable, str(BENCH), "--only", "ops,nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown figure nope" in bad.stderr


def test_gpu_check_script_runs():
    script = BENCH.parent / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "no CUDA device here" in out.stdout or "worst relative difference" in out.stdout
