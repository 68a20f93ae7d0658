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

    def row(self) -> str:
        median = statistics.median(self.ratios)
        spread = f"{min(self.ratios):.3f}–{max(self.ratios):.3f}"
        ours, theirs = statistics.median(self.ours_s), statistics.median(self.theirs_s)
        verdict = "met" if self.ok else "MISSED"
        return (
            f"| {self.name} | {self.compared_with} | {ours:.3f} s vs {theirs:.3f} s | "
            f"{median:.3f}× ({spread}) | {self.target} | {verdict} |"
        )


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round, no results file")
    args = parser.parse_args(argv)
    sizes = [(2_000, 1)] if args.quick else [(1_000_000, 5), (10_000_000, 3)]
    figures = [bench_plot(n, rounds) for n, rounds in sizes]
    figures.append(bench_graph(50, 1) if args.quick else bench_graph(5_000, 7))
    header = (
        "| figure | compared with | median time (ours vs theirs) | ratio (spread) | target | |\n"
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
