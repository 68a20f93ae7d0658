"""Benchmarks with targets: `make bench` prints a table and writes benchmarks/results.md.

Each figure is a ratio of two sides measured in the same run, alternating the
sides over several rounds (these machines are noisy); the table gives the
median ratio and its spread (lowest and highest round).

    python benchmarks/run.py            # full sizes
    python benchmarks/run.py --quick    # tiny sizes, no results file (the tests run this)
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

HERE = Path(__file__).resolve().parent


@dataclass
class Figure:
    name: str
    compared_with: str
    target: str
    ratios: list[float]
    ours_s: list[float]
    theirs_s: list[float]
    ok: bool
    unit: str = "×"

    def row(self) -> str:
        median = statistics.median(self.ratios)
        spread = f"{min(self.ratios):.3f}–{max(self.ratios):.3f}"
        verdict = "met" if self.ok else "MISSED"
        if self.unit == "MB":
            return f"| {self.name} | {self.compared_with} | — | {median:.1f} MB ({spread}) | {self.target} | {verdict} |"
        ours, theirs = statistics.median(self.ours_s), statistics.median(self.theirs_s)
        return (
            f"| {self.name} | {self.compared_with} | {_seconds(ours)} vs {_seconds(theirs)} | "
            f"{median:.3f}× ({spread}) | {self.target} | {verdict} |"
        )


def _seconds(value: float) -> str:
    return f"{value * 1e3:.2f} ms" if value < 0.1 else f"{value:.3f} s"


def side_by_side(
    ours: Callable[[], object], theirs: Callable[[], object], rounds: int
) -> tuple[list, list, list]:
    """Alternate the two sides (starting side flips each round); return times and ratios."""
    ours_s, theirs_s = [], []
    for i in range(rounds):
        pair = [(ours, ours_s), (theirs, theirs_s)]
        for fn, times in pair if i % 2 == 0 else reversed(pair):
            gc.collect()
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return ours_s, theirs_s, [a / b for a, b in zip(ours_s, theirs_s, strict=True)]


# ---------------------------------------------------------------------------
# --plot of n points against the tutorial's naive pyplot code
# ---------------------------------------------------------------------------
def plot_ours(n: int) -> Callable[[], bytes]:
    from torchgrad_magic import grad
    from torchgrad_magic.plot import png

    def run() -> bytes:
        result = grad("Y = x ** 2", wrt=f"x=torch.linspace(-20, 20, {n})", plot=True)
        return png(result.figure)

    return run


def plot_naive(n: int) -> Callable[[], bytes]:
    import io

    import matplotlib.pyplot as plt
    import torch

    def run() -> bytes:
        x = torch.linspace(-20, 20, n, requires_grad=True)
        Y = x**2
        Y.sum().backward()
        fig = plt.figure(figsize=(6.4, 4.0), dpi=100)
        (function_line,) = plt.plot(x.detach().numpy(), Y.detach().numpy(), label="function")
        function_line.set_color("red")
        (derivative_line,) = plt.plot(x.detach().numpy(), x.grad.detach().numpy(), label="derivative")
        derivative_line.set_color("green")
        plt.xlabel("x")
        plt.legend()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        return buffer.getvalue()

    return run


def bench_plot(n: int, rounds: int) -> Figure:
    ours, theirs, ratios = side_by_side(plot_ours(n), plot_naive(n), rounds)
    return Figure(
        f"`--plot` of {n:,} points, PNG rendered",
        "the naive two-`plt.plot` version rendered the same way",
        "≤ 0.1×",
        ratios,
        ours,
        theirs,
        statistics.median(ratios) <= 0.1,
    )


# ---------------------------------------------------------------------------
# --graph of a 10 000-node graph against a torchviz-style walk that renders nothing
# ---------------------------------------------------------------------------
def chain(steps: int):
    from torchgrad_magic import grad

    return grad(f"y = x\nfor i in range({steps}):\n    y = y * 1.0001 + 0.1", wrt="x=1.0")


def graph_ours(result) -> Callable[[], object]:
    from torchgrad_magic import graph

    def run() -> object:
        g = graph.build(result.output, "y", {id(result.leaves["x"]): "x"}, [], {}, False)
        return g.to_svg(), g.to_text()

    return run


def graph_walk(result) -> Callable[[], object]:
    def run() -> object:  # what torchviz does before calling dot: visit every node once
        seen, stack, edges = set(), [result.output.grad_fn], []
        while stack:
            fn = stack.pop()
            if fn in seen:
                continue
            seen.add(fn)
            for nxt, _ in fn.next_functions:
                if nxt is not None:
                    edges.append((str(id(fn)), str(id(nxt))))
                    stack.append(nxt)
        return edges

    return run


def bench_graph(steps: int, rounds: int) -> Figure:
    result = chain(steps)
    ours, theirs, ratios = side_by_side(graph_ours(result), graph_walk(result), rounds)
    nodes = 2 * steps + 1
    return Figure(
        f"`--graph` of a {nodes:,}-node graph (walk, label, text tree and SVG)",
        "a torchviz-style walk without rendering",
        "report it (render well under 1 s)",
        ratios,
        ours,
        theirs,
        statistics.median(ours) < 1.0,
    )


# ---------------------------------------------------------------------------
# per-cell time through InteractiveShell.run_cell, HTML formatter on
# ---------------------------------------------------------------------------
MAGIC_CELL = "%%grad --wrt x=3\ny = 3 * x ** 2"
HAND_CELL = """x = torch.tensor(3.0, requires_grad=True)
y = 3 * x ** 2
y.backward()
print(x.data, x.grad, x.grad_fn, x.is_leaf, x.requires_grad)
print(y.data, y.grad, y.grad_fn, y.is_leaf, y.requires_grad)"""


def bench_cell(runs: int, rounds: int) -> Figure:
    import contextlib
    import io
    import warnings

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.display_formatter.active_types = ["text/plain", "text/html"]  # as in a notebook
    shell.run_line_magic("load_ext", "torchgrad_magic")
    shell.run_cell("import torch")

    def cells(cell: str) -> Callable[[], None]:
        def run() -> None:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the hand-written code reads y.grad
                for _ in range(runs):
                    shell.run_cell(cell)

        return run

    cells(MAGIC_CELL)(), cells(HAND_CELL)()  # warm up
    ours, theirs, ratios = side_by_side(cells(MAGIC_CELL), cells(HAND_CELL), rounds)
    shell.history_manager.outputs.clear()
    return Figure(
        "per-cell time of `%%grad --wrt x=3` / `y = 3*x**2` (run_cell, HTML on)",
        "hand-written code printing the same five attributes of x and y, same shell",
        "≤ 1.3×",
        ratios,
        [o / runs for o in ours],
        [o / runs for o in theirs],
        statistics.median(ratios) <= 1.3,
    )


# ---------------------------------------------------------------------------
# %load_ext in a fresh interpreter against import torch
# ---------------------------------------------------------------------------
LOAD_EXT = """
import sys, time, json
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
start = time.perf_counter()
shell.run_line_magic("load_ext", "torchgrad_magic")
load = time.perf_counter() - start
heavy = sorted(m for m in ("torch", "matplotlib", "sympy", "graphviz") if m in sys.modules)
start = time.perf_counter()
import torch
print(json.dumps({"load": load, "torch": time.perf_counter() - start, "heavy": heavy}))
"""


def bench_load(rounds: int) -> Figure:
    import json
    import subprocess

    loads, torches, heavy = [], [], set()
    for _ in range(rounds):
        out = subprocess.run([sys.executable, "-c", LOAD_EXT], capture_output=True, text=True, check=True)
        found = json.loads(out.stdout.strip().splitlines()[-1])
        loads.append(found["load"])
        torches.append(found["torch"])
        heavy.update(found["heavy"])
    ratios = [a / b for a, b in zip(loads, torches, strict=True)]
    return Figure(
        "`%load_ext torchgrad_magic` in a fresh interpreter"
        + (
            f" (imported: {', '.join(sorted(heavy))})"
            if heavy
            else " (torch, matplotlib, sympy, graphviz not imported)"
        ),
        "`import torch` in the same interpreter",
        "≤ 2% of it",
        ratios,
        loads,
        torches,
        statistics.median(ratios) <= 0.02 and not heavy,
    )


# ---------------------------------------------------------------------------
# memory: RSS growth over many runs of a 10^6-element cell
# ---------------------------------------------------------------------------
RSS = """
import contextlib, ctypes, gc, io, json, os, sys
import torch
from IPython.core.interactiveshell import InteractiveShell

def rss():
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # count what is kept, not what malloc caches
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

def tensors():
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

shell = InteractiveShell.instance()
shell.display_formatter.active_types = ["text/plain", "text/html"]
shell.run_line_magic("load_ext", "torchgrad_magic")
cell = "%%grad --wrt x=torch.linspace(0, 1, 1_000_000) --graph\\ny = torch.sin(x) * x"
runs = int(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()):
    for _ in range(20):
        shell.run_cell(cell, store_history=True)
    before, live = rss(), tensors()
    for _ in range(runs):
        shell.run_cell(cell, store_history=True)
    after, live_after = rss(), tensors()
print(json.dumps({"growth": after - before, "tensors": live_after - live}))
"""


def bench_memory(runs: int, rounds: int) -> Figure:
    import json
    import subprocess

    growth, extra = [], []
    for _ in range(rounds):
        out = subprocess.run(
            [sys.executable, "-c", RSS, str(runs)], capture_output=True, text=True, check=True
        )
        found = json.loads(out.stdout.strip().splitlines()[-1])
        growth.append(found["growth"])
        extra.append(found["tensors"])
    median = statistics.median(growth)
    return Figure(
        f"RSS growth over {runs} runs of a 10⁶-element cell (MB; tensors left alive: {max(extra)})",
        "—",
        "≤ 8 MB",
        growth,
        growth,
        [1.0] * rounds,
        median <= 8 and max(extra) <= 0,
        unit="MB",
    )


# ---------------------------------------------------------------------------
# the example notebook in a kernel against the same notebook in plain torch
# ---------------------------------------------------------------------------
def bench_notebook(rounds: int) -> Figure:
    sys.path.insert(0, str(HERE.parent / "examples"))
    import run_demo

    ours = lambda: run_demo.execute(HERE.parent / "examples" / "tutorial.ipynb")  # noqa: E731
    theirs = lambda: run_demo.execute(HERE / "plain_tutorial.ipynb")  # noqa: E731
    o, t_, ratios = side_by_side(ours, theirs, rounds)
    return Figure(
        "`examples/tutorial.ipynb` executed in a kernel (start to end)",
        "`benchmarks/plain_tutorial.ipynb`: the same cells in plain torch, pyplot and SymPy",
        "≤ 1.2×",
        ratios,
        o,
        t_,
        statistics.median(ratios) <= 1.2,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round, no results file")
    args = parser.parse_args(argv)
    quick = args.quick
    figures = [
        bench_cell(20, 1) if quick else bench_cell(200, 7),
        bench_load(1 if quick else 5),
        *(bench_plot(n, r) for n, r in ([(2_000, 1)] if quick else [(1_000_000, 5), (10_000_000, 3)])),
        bench_memory(10, 1) if quick else bench_memory(300, 3),
        bench_notebook(1 if quick else 3),
        bench_graph(50, 1) if quick else bench_graph(5_000, 7),
    ]
    header = (
        "| figure | compared with | median (ours vs theirs) | ratio, median (lowest–highest) | target | |\n"
        "|---|---|---|---|---|---|"
    )
    table = "\n".join([header, *(f.row() for f in figures)])
    print(table)
    if not args.quick:
        import platform

        import torch

        text = (
            "# Benchmark results\n\n"
            f"Written by `make bench` on {time.strftime('%Y-%m-%d')}: Python {platform.python_version()}, "
            f"torch {torch.__version__}, {os.cpu_count()} CPUs, {platform.machine()}.\n\n{table}\n"
        )
        (HERE / "results.md").write_text(text)
        print(f"\nwritten to {HERE / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
