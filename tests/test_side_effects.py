"""Cells with side effects, plain in kernel A and under ``%%grad`` in kernel B.

For each case both kernels must end in the same state (the fingerprint of
``test_corpus.py``: every variable, grad, RNG state, grad mode, ...) and show the same
outputs, and the numbers of the report (``--out _r``) must match oracles computed in
kernel A with ``torch.autograd.grad`` (or by hand) at the values the leaves had when the
cell's own ``backward()`` ran.

Both kernels are shared by the whole module; every test starts with a fresh namespace
(as after ``%reset -f``) and the same set-up in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_corpus import FINGERPRINT, SELF_CHECK, Outcome, Pair, compare, diff_fingerprints, is_ours

RESET = (  # like %reset -f (a fresh namespace), ten times faster
    "_tgm_ip = get_ipython()\n"
    "for _tgm_name in [n for n in _tgm_ip.user_ns if n not in _tgm_ip.user_ns_hidden]:\n"
    "    del _tgm_ip.user_ns[_tgm_name]\n"
    "import random, numpy as np, torch\n"
    "random.seed(0); np.random.seed(0); torch.manual_seed(0)\n"
    "torch.set_grad_enabled(True); torch.set_default_dtype(torch.float32)\n"
    "%matplotlib inline\n" + FINGERPRINT
)


@pytest.fixture(scope="module")
def pair():
    p = Pair()
    yield p
    p.close()


def start(pair: Pair, setup: str) -> None:
    """A clean namespace in both kernels, then the same set-up code in both."""
    for code in (RESET, setup):
        a, b = pair.run_plain(code)
        assert a.status == b.status == "ok", f"set-up failed: {a.ename or b.ename}: {a.evalue or b.evalue}"
    same_state(pair, "after the set-up")


def same_state(pair: Pair, what: str, a: Outcome | None = None, b: Outcome | None = None, ignore=()) -> None:
    problems = compare(a, b) if a is not None and b is not None else []
    problems += diff_fingerprints(*pair.fingerprints(), ignore=tuple(ignore))
    assert not problems, f"{what}: the %%grad kernel differs from the plain one:\n" + "\n".join(
        f"  - {p}" for p in problems
    )


def run(pair: Pair, cell: str, line: str = "--out _r -q") -> tuple[Outcome, Outcome]:
    """Run *cell* plain in A and under ``%%grad line`` in B; both must agree."""
    a, b = pair.run(cell, line)
    same_state(pair, f"%%grad {line}\n{cell}\n", a, b)
    return a, b


def oracle(pair: Pair, code: str, expr: str) -> Any:
    """Run *code* silently in the plain kernel (names start with ``_tgm_``), then evaluate *expr*."""
    pair.a.run_silently(code)
    return pair.a.value(expr)


class _Anything:
    """What the report is read as in the harness self-check (no %%grad, so no ``_r``)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "<anything>"


def report(pair: Pair, expr: str) -> Any:
    """*expr* about the result ``_r`` that ``--out _r`` stored in the %%grad kernel."""
    return _Anything() if SELF_CHECK else pair.b.value(expr)


def result_grad(pair: Pair, name: str) -> Any:
    """``_r.grads[name]`` in the %%grad kernel, as a float, a list, or None."""
    return report(pair, f"None if _r.grads[{name!r}] is None else _r.grads[{name!r}].tolist()")


def assert_close(actual: Any, expected: Any, what: str, rel: float = 1e-6, abs_: float = 1e-7) -> None:
    def close(x, y) -> bool:
        if isinstance(x, _Anything):
            return True
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(close(p, q) for p, q in zip(x, y, strict=True))
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            return math.isclose(x, y, rel_tol=rel, abs_tol=abs_)
        return x == y

    assert close(actual, expected), f"{what}: got {actual!r}, expected {expected!r}"


def before(pair: Pair, leaf: str) -> None:
    """Remember the value *leaf* has now (in the plain kernel) as a fresh leaf ``_tgm_<leaf>``."""
    pair.a.run_silently(f"_tgm_{leaf} = {leaf}.detach().clone().requires_grad_()")


# ---------------------------------------------------------------------------
# gradient descent by hand, accumulation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("clear", ["w.grad = None", "w.grad.zero_()"])
def test_manual_gradient_descent_step(pair, clear):
    start(pair, "w = torch.tensor(5.0, requires_grad=True)")
    cell = f"loss = (w - 3) ** 2\nloss.backward()\nwith torch.no_grad():\n    w -= 0.1 * w.grad\n{clear}"
    expected_w = 5.0
    for step in range(3):  # the same cell again and again, as in a notebook
        before(pair, "w")
        dw = oracle(pair, "", "torch.autograd.grad((_tgm_w - 3) ** 2, _tgm_w)[0].item()")
        assert_close(dw, 2 * (expected_w - 3), "oracle (by hand)")
        run(pair, cell)
        assert_close(result_grad(pair, "w"), dw, f"step {step}: _r.grads['w'] (dloss/dw when backward ran)")
        assert report(pair, "_r.output_name") == "loss"
        assert_close(report(pair, "_r.leaves['w'].item()"), expected_w, "_r.leaves['w'] (w at backward)")
        expected_w -= 0.1 * dw
        assert_close(pair.a.value("w.item()"), expected_w, "w after the step (plain kernel)", rel=1e-5)
    if clear == "w.grad = None":
        assert pair.a.value("w.grad is None")
    else:
        assert pair.a.value("w.grad.item()") == 0.0


def test_backward_twice_accumulates_like_plain(pair):
    start(pair, "x = torch.tensor(2.0, requires_grad=True)")
    for calls in (1, 2):
        run(pair, "y = x ** 3\ny.backward()")
        assert_close(result_grad(pair, "x"), 12.0, f"run {calls}: _r.grads['x'] is this call's dy/dx")
        assert pair.a.value("x.grad.item()") == 12.0 * calls  # and the %%grad kernel has the same


# ---------------------------------------------------------------------------
# optimizers, lists, prints, displays, plots, random numbers
# ---------------------------------------------------------------------------
OPTIMIZER_SETUP = """\
torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
opt = torch.optim.{optimizer}(model.parameters(), lr=0.1{extra})
X = torch.randn(8, 3)
Y = torch.randn(8, 1)
"""
OPTIMIZER_CELL = """\
opt.zero_grad()
loss = torch.nn.functional.mse_loss(model(X), Y)
loss.backward()
opt.step()
"""


@pytest.mark.parametrize(("optimizer", "extra"), [("SGD", ", momentum=0.9"), ("Adam", "")])
def test_optimizer_step(pair, optimizer, extra):
    start(pair, OPTIMIZER_SETUP.format(optimizer=optimizer, extra=extra))
    for step in range(2):
        expected = oracle(
            pair,
            "_tgm_g = torch.autograd.grad(torch.nn.functional.mse_loss(model(X), Y), [model.weight, model.bias])",
            "[g.tolist() for g in _tgm_g]",
        )
        run(pair, OPTIMIZER_CELL)  # weights, grads and the optimizer's state identical
        assert report(pair, "_r.output_name") == "loss", f"step {step}"
        for name in (
            [] if SELF_CHECK else pair.b.value("sorted(_r.grads)")
        ):  # parameters, if the report names them
            if name.endswith(("weight", "bias")):
                assert_close(result_grad(pair, name), expected[0 if name.endswith("weight") else 1], name)


def test_list_append_happens_once(pair):
    start(pair, "losses = []\nw = torch.tensor(1.0, requires_grad=True)")
    run(pair, "loss = (2 * w - 1) ** 2\nloss.backward()\nlosses.append(loss.item())")
    assert pair.a.value("losses") == [1.0]
    assert_close(result_grad(pair, "w"), 4.0, "_r.grads['w']")


def test_print_and_display_show_once(pair):
    start(pair, "x = torch.tensor(2.0, requires_grad=True)")
    cell = "y = x * 3\nprint('value', y.item())\ndisplay(y.detach())\ny.backward()"
    _, b = run(pair, cell, "--out _r")
    assert b.stdout == "value 6.0\n"
    assert [d["data"]["text/plain"] for d in b.displays if not is_ours(d)] == ["tensor(6.)"]
    assert_close(result_grad(pair, "x"), 3.0, "_r.grads['x']")


def test_matplotlib_plot_in_the_cell(pair):
    start(pair, "import matplotlib.pyplot as plt\nx = torch.linspace(-1, 1, 5, requires_grad=True)")
    _, b = run(pair, "y = (x ** 2).sum()\ny.backward()\nplt.plot(x.detach(), x.grad)", "--out _r")
    assert len([d for d in b.displays if not is_ours(d) and "image/png" in d["data"]]) == 1
    assert_close(result_grad(pair, "x"), [-2.0, -1.0, 0.0, 1.0, 2.0], "_r.grads['x']")


def test_random_draws_and_dropout_in_the_cell(pair):
    start(pair, "torch.manual_seed(1)\nw = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)")
    draws = (
        "noise = torch.randn(4)\n"
        "kept = torch.nn.functional.dropout(w, p=0.5, training=True)\n"
        "r = torch.rand(1)\n"
        "loss = (kept * noise).sum() + r.sum()\n"
    )
    expected = oracle(  # the same draws from the same RNG state, which fork_rng then puts back
        pair,
        "with torch.random.fork_rng():\n"
        "    _tgm_w = w.detach().clone().requires_grad_()\n"
        + "".join(f"    {line.replace('w,', '_tgm_w,')}\n" for line in draws.splitlines())
        + "    _tgm_g = torch.autograd.grad(loss, _tgm_w)[0].tolist()\n"
        "    del noise, kept, r, loss",
        "_tgm_g",
    )
    run(pair, draws + "loss.backward()")  # noise, kept, r and the RNG state identical
    assert_close(result_grad(pair, "w"), expected, "_r.grads['w']")


# ---------------------------------------------------------------------------
# --wrt with a helper from an earlier cell; autograd.grad; double backward
# ---------------------------------------------------------------------------
def test_helper_function_from_an_earlier_cell(pair):
    start(pair, "def f(t):\n    return 3 * t ** 2")
    # the plain counterpart of `--wrt x=3` is a leaf x = 3 made by hand
    plain = "x = torch.tensor(3.0, requires_grad=True)\ny = f(x)"
    a = pair.a.execute(plain)
    b = pair.b.execute(plain if SELF_CHECK else "%%grad --wrt x=3 --check --plot --out _r\ny = f(x)")
    same_state(pair, "%%grad --wrt x=3 --check --plot", a, b, ignore={"x"})
    assert_close(result_grad(pair, "x"), 18.0, "_r.grads['x']")
    assert report(pair, "[(c.name, c.ok) for c in _r.checks]") == [("x", True)]
    curves = [] if SELF_CHECK else pair.b.value("[(c.label, c.x.tolist(), c.y.tolist()) for c in _r.curves]")
    derivative = [(xs, ys) for label, xs, ys in curves if label.split("|")[0] == "dy/dx"]
    assert derivative or SELF_CHECK, f"no dy/dx curve among {[c[0] for c in curves]}"
    for xs, ys in derivative[:1]:
        assert_close(float(np.interp(3.0, xs, ys)), 18.0, "the plotted dy/dx at x = 3", rel=1e-4)
    a, b = pair.run_plain("y.backward()")  # the graph of y is still there
    assert b.status == "ok", f"y.backward() after %%grad --wrt: {b.ename}: {b.evalue}"
    same_state(pair, "y.backward() after %%grad --wrt", a, b, ignore={"x"})


def test_autograd_grad_inside_the_cell(pair):
    start(pair, "x = torch.tensor(2.0, requires_grad=True)")
    _, b = run(pair, "y = x ** 2 + 3 * x\n(g,) = torch.autograd.grad(y, x)\nprint(g)", "--out _r")
    assert b.status == "ok"
    assert_close(result_grad(pair, "x"), 7.0, "_r.grads['x']")
    assert pair.a.value("x.grad is None")  # autograd.grad fills no .grad: neither may %%grad


def test_double_backward(pair):
    start(pair, "x = torch.tensor(2.0, requires_grad=True)")
    before(pair, "x")
    dy = oracle(pair, "", "torch.autograd.grad(_tgm_x ** 3, _tgm_x)[0].item()")
    run(pair, "y = x ** 3\ny.backward(create_graph=True)\ng = x.grad\ng.backward()")
    assert report(pair, "_r.output_name") == "y"
    assert_close(result_grad(pair, "x"), dy, "_r.grads['x'] (dy/dx of the first backward)")


# ---------------------------------------------------------------------------
# cells with nothing to differentiate, Out[], await, errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cell",
    ["print('hi')", "a = 1 + 1", "import math", "def g(t):\n    return 2 * t", "x = torch.ones(2)\nx.sum()"],
)
def test_nothing_to_differentiate(pair, cell):
    start(pair, "")
    _, b = run(pair, cell, "")
    assert b.status == "ok", f"{b.ename}: {b.evalue}"


@pytest.mark.parametrize("cell", ["y = 2 * x\ny.backward()\nx.grad", "x.grad", "y = 2 * x\ny"])
def test_last_expression_is_the_same_out(pair, cell):
    start(pair, "x = torch.tensor(2.0, requires_grad=True)")
    run(pair, cell, "")


def test_top_level_await(pair):
    start(pair, "x = torch.tensor(2.0, requires_grad=True)")
    _, b = run(pair, "import asyncio\nawait asyncio.sleep(0)\ny = x * 2\ny.backward()")
    assert b.status == "ok", f"{b.ename}: {b.evalue}"
    assert_close(result_grad(pair, "x"), 2.0, "_r.grads['x']")


def test_error_after_side_effects(pair):
    start(pair, "log = []\nx = torch.tensor(2.0, requires_grad=True)")
    _, b = run(pair, "log.append(1)\ny = x * 2\ny.backward()\nraise ValueError('boom')")
    assert (b.ename, b.evalue) == ("ValueError", "boom")


# ---------------------------------------------------------------------------
# --check, --plot, --symbolic on cells with side effects: everything happens once
# ---------------------------------------------------------------------------
SIDE_EFFECT_CELLS = {
    "print-append-rand": (
        "w = torch.tensor(2.0, requires_grad=True)\nlog = []",
        "print('step', len(log))\nlog.append(w.item())\nr = torch.rand(1)\nloss = w ** 2 + r.sum()\nloss.backward()",
        4.0,
    ),
    "manual-step": (
        "w = torch.tensor(5.0, requires_grad=True)",
        "loss = (w - 3) ** 2\nloss.backward()\nwith torch.no_grad():\n    w -= 0.1 * w.grad\nw.grad = None",
        4.0,
    ),
    "optimizer-step": (
        OPTIMIZER_SETUP.format(optimizer="SGD", extra=", momentum=0.9"),
        OPTIMIZER_CELL + "print(round(loss.item(), 4))",
        None,
    ),
}


@pytest.mark.parametrize("flags", ["--check", "--plot", "--symbolic", "--check --plot --symbolic"])
@pytest.mark.parametrize("case", sorted(SIDE_EFFECT_CELLS))
def test_flags_do_not_repeat_side_effects(pair, case, flags):
    setup, cell, dw = SIDE_EFFECT_CELLS[case]
    start(pair, setup)
    run(pair, cell, f"{flags} --out _r")  # without -q: the report's own displays are told apart
    if dw is not None:
        assert_close(result_grad(pair, "w"), dw, "_r.grads['w']")


# ---------------------------------------------------------------------------
# random cells
# ---------------------------------------------------------------------------
TERMS = ["w * {c}", "w ** 2", "(w - {c}) ** 2", "torch.sin(w)", "torch.exp(w / 4)", "w * w * {c}"]


@dataclass
class RandomCell:
    value: float
    expr: str  # the loss as a function of w only
    code: str
    backward: bool


@st.composite
def random_cells(draw) -> RandomCell:
    value = draw(st.sampled_from([-2.0, -1.5, -0.5, 0.5, 1.0, 2.0, 3.0]))
    terms = draw(st.lists(st.sampled_from(TERMS), min_size=1, max_size=3))
    expr = " + ".join(t.format(c=draw(st.sampled_from([1, 2, 3, 0.5]))) for t in terms)
    lines = []
    if draw(st.booleans()):
        lines.append(f"torch.manual_seed({draw(st.integers(0, 3))})")
    noise = draw(st.booleans())
    if noise:
        lines.append("r = torch.rand(2)")
    lines.append(f"loss = {expr}" + (" + r.sum()" if noise else ""))
    if draw(st.booleans()):
        lines.append("print('loss', round(loss.item(), 4))")
    if draw(st.booleans()):
        lines.append("log.append(loss.item())")
    backward = draw(st.booleans())
    if backward:
        lines.append("loss.backward()")
        if draw(st.booleans()):
            lines += ["with torch.no_grad():", "    w -= 0.1 * w.grad"]
        clear = draw(st.sampled_from([None, "w.grad = None", "w.grad.zero_()"]))
        if clear:
            lines.append(clear)
    ending = draw(st.sampled_from([None, "print(w)", "loss", "w"]))
    if ending:
        lines.append(ending)
    return RandomCell(value, expr, "\n".join(lines), backward)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each example is two kernels
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=random_cells())
def test_random_cells_match_the_plain_kernel(pair, case: RandomCell):
    start(pair, f"w = torch.tensor({case.value}, requires_grad=True)\nlog = []")
    before(pair, "w")
    dw = oracle(pair, "", f"torch.autograd.grad((lambda w: {case.expr})(_tgm_w), _tgm_w)[0].item()")
    a, b = pair.run(case.code, "--out _r -q")
    problems = compare(a, b) + diff_fingerprints(*pair.fingerprints())
    assert not problems, f"%%grad --out _r -q\n{case.code}\n" + "\n".join(f"  - {p}" for p in problems)
    if case.backward:
        assert_close(result_grad(pair, "w"), dw, f"_r.grads['w'] for\n{case.code}\n")
        assert_close(report(pair, "_r.leaves['w'].item()"), case.value, "_r.leaves['w'] (w at backward)")
