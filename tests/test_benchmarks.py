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
    "--steps",
    "--steps --graph",
    "a model: --plot --graph --steps",
]


def test_benchmarks_run_quick():
    out = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| figure |" in out.stdout and "`--plot` of 2,000 points" in out.stdout
    # the rows added for the op-heavy cell, the training loop and the per-run leaks (a row may say
    # "error: ..." while the engine is rewritten; it must still be there)
    assert "on a cell of 100 small tensor ops" in out.stdout
    assert "on a training loop: 5 SGD steps" in out.stdout
    assert "on 20 steps of manual gradient descent" in out.stdout
    assert "rendering big reports" in out.stdout and "gradient-flow PNG, 500 layers" in out.stdout
    assert "per-run leaks of `%%grad`, 17 magic lines" in out.stdout
    assert "| magic line | objects / run | tensors / run | linecache entries / run |" in out.stdout
    for flag in FLAG_LINES:
        assert f"| `{flag}` |" in out.stdout, flag
    # the model cells (#13): MLP and transformer block, with and without backward() in the cell, and
    # their report's build time and size (tiny sizes here; a row may say "error: ...")
    for cell in ("loss = ((net(x) - y) ** 2).mean()", "loss = block(src).pow(2).mean()"):
        assert f"on `{cell}; loss.backward()`:" in out.stdout, cell
        assert f"on `{cell}`:" in out.stdout, cell
    assert "a 1,616-parameter MLP (16-32-16-16-16, ReLU), batch 4" in out.stdout
    assert "| the report of the model cells above:" in out.stdout
    assert "| cell | `_repr_html_()` | `str()` | together | HTML | |" in out.stdout
    for name in (
        "cell",
        "load",
        "plot",
        "memory",
        "notebook",
        "graph",
        "ops",
        "gd",
        "render",
        "train",
        "leaks",
        "model",
    ):
        assert f"{name}: " in out.stderr, name  # each figure's wall time


def test_benchmarks_only_rejects_unknown_figures():
    # `--only` itself is used by hand (`--only ops,leaks`); running a figure here would cost seconds
    bad = subprocess.run([sys.executable, str(BENCH), "--only", "ops,nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown figure nope" in bad.stderr


def test_benchmarks_update_needs_only_and_full_sizes():
    for argv in (["--update"], ["--only", "model", "--update", "--quick"]):
        bad = subprocess.run([sys.executable, str(BENCH), *argv], capture_output=True, text=True)
        assert bad.returncode == 2 and "--update goes with --only" in bad.stderr


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_run", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_run", module)  # (its dataclasses look their module up there)
    spec.loader.exec_module(sys.modules["bench_run"])
    return sys.modules["bench_run"]


def test_update_results_replaces_only_the_rows_it_ran(tmp_path):
    bench = _bench_module()
    results = tmp_path / "results.md"
    results.write_text(
        "# Benchmark results\n\nWritten by `make bench` on 2026-01-01: Python 3.11.\n\n"
        "| figure | compared with | median | ratio | target | |\n|---|---|---|---|---|---|\n"
        "| kept | x | 1 ms vs 1 ms | 1.000× (1.000–1.000) | ≤ 1.1× | met |\n"
        "| model row | x | 9 ms vs 1 ms | 9.000× (9.000–9.000) | ≤ 1.1× | MISSED |\n\n"
        "Other detail:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "Model detail:\n\n| c | d |\n|---|---|\n| old | old |\n"
    )
    row = bench.Figure("model row", "x", "≤ 1.1×", [1.05], [1.05], [1.0], True)
    new = bench.Figure(
        "new row", "y", "t", [], [], [], True, value="5 ms", detail="Model detail:\n\n| c |\n| new |"
    )
    for _ in range(2):  # twice: the same file
        bench.update_results(
            results, [row, new], "# Benchmark results", "Rows of `--only model` re-run: now."
        )
    text = results.read_text()
    assert (
        "| kept | x |" in text and "9.000×" not in text and "| model row | x | 1.050 s vs 1.000 s |" in text
    )
    lines = text.splitlines()
    assert lines.index("| new row | y | — | 5 ms | t | met |") == lines.index(row.row()) + 1  # in the table
    assert "Other detail:" in text and "| old | old |" not in text and text.count("| new |") == 1
    assert text.count("Rows of `--only model` re-run") == 1 and lines[3] == ""


def test_gpu_check_script_runs():
    script = BENCH.parent / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "no CUDA device here" in out.stdout or "worst relative difference" in out.stdout
