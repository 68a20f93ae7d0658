"""The benchmark code runs (at tiny sizes) so it does not rot; no timing is asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "benchmarks" / "run.py"


def test_benchmarks_run_quick():
    out = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| figure |" in out.stdout and "`--plot` of 2,000 points" in out.stdout


def test_gpu_check_script_runs():
    script = BENCH.parent / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "no CUDA device here" in out.stdout or "worst relative difference" in out.stdout
