"""%%grad's own pass (``derive/own_pass.py``), for cells that call no ``backward()``.

1. Its grads are autograd's, exactly (``torch.autograd.grad`` is the oracle): broadcasting, mixed
   dtypes, several paths, ops with several outputs, in-place ops and views, non-leaf inputs.
2. It runs none of the user's code attached to the graph, in real kernels (plain in kernel A,
   ``%%grad`` in kernel B, every variable compared): a tensor's hook (also one no variable holds),
   a leaf's hook, ``retain_grad()``, a node's hook that queues an engine callback, a module's
   backward hook, saved-tensor hooks and non-reentrant ``checkpoint``.
"""

from __future__ import annotations

import pytest
import torch
from test_corpus import SELF_CHECK
from test_side_effects import assert_close, oracle, report, result_grad, run, start

from torchgrad_magic import grad
from torchgrad_magic.derive.own_pass import own_grads

CASES = {
    "power": (lambda x: 3 * x**2, [()]),
    "broadcast": (lambda x, w: (x * w).tanh() * x, [(3,), ()]),
    "matmul": (lambda x, w: x @ w, [(4, 3), (3, 2)]),
    "cat softmax": (lambda x, w: torch.cat([x, w]).softmax(0), [(3,), (2,)]),
    "unbind stack": (lambda x, w: torch.stack(x.unbind(0)[::2]) * w.sum(), [(4, 2), (2,)]),
    "where": (lambda x, w: torch.where(x > 0, x.abs().sqrt(), w.exp()), [(5,), (5,)]),
    "float64 times float32": (lambda x, w: x.double() * w, [(3,), (3,)]),
    "several paths": (lambda x, w: (h := x * 2) * h + h.sin() * w + h.view(-1)[0], [(3,), ()]),
    "linear relu mean": (lambda x, w: torch.nn.functional.linear(x, w).relu().mean(), [(4, 3), (2, 3)]),
    "unused input": (lambda x, w: x.exp(), [(3,), (2,)]),
}


def _in_place(x, w):
    a = x.clone()
    a[1:] += w
    return (a * a).sum()


CASES["in-place slice"] = (_in_place, [(3,), (2,)])


@pytest.mark.parametrize("case", list(CASES))
def test_the_grads_are_autograds_exactly(case):
    torch.manual_seed(0)
    f, shapes = CASES[case]
    xs = [torch.randn(s, requires_grad=True) for s in shapes]
    out = f(*xs)
    target = out.sum() if out.numel() != 1 else out
    expected = torch.autograd.grad(target, xs, allow_unused=True, retain_graph=True)
    got = own_grads(target, xs)
    for e, g in zip(expected, got, strict=True):
        assert (e is None) == (g is None)
        if e is not None:
            assert e.dtype == g.dtype
            torch.testing.assert_close(g, e, rtol=0, atol=0, equal_nan=True)


def test_a_non_leaf_input_gets_the_grad_that_reaches_it():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    y = (h**2).sum()
    gx, gh = own_grads(y, [x, h])
    assert gh.tolist() == [6.0, 12.0] and gx.tolist() == [18.0, 36.0]


def test_no_hook_runs_and_no_grad_is_written():
    x = torch.tensor(2.0, requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append("leaf"))
    h = x**2
    h.register_hook(lambda g: seen.append("tensor"))
    h.retain_grad()
    y = 3 * h
    y.grad_fn.register_hook(lambda gi, go: seen.append("node"))
    y.grad_fn.register_prehook(lambda go: seen.append("pre"))
    (gx,) = own_grads(y, [x])
    assert gx.item() == 12.0
    assert seen == [] and x.grad is None and h.grad is None
    y.backward()  # the graph is still there, whole: the user's own backward() runs it all
    assert sorted(seen) == ["leaf", "node", "pre", "tensor"] and x.grad.item() == 12.0


def test_a_freed_graph_raises_autograds_error():
    x = torch.tensor(2.0, requires_grad=True)
    y = x.exp()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        own_grads(y, [x])


# ---------------------------------------------------------------------------
# in real kernels: plain in A, %%grad in B, every variable compared (calls too)
# ---------------------------------------------------------------------------
pytest_kernel = pytest.mark.skipif(SELF_CHECK, reason="reads the report of the %%grad kernel")
SETUP = "x = torch.tensor(2.0, requires_grad=True)\ncalls = []"
CELLS = {
    "a tensor's hook": "h = x ** 2\nh.register_hook(lambda g: calls.append('tensor'))\ny = 3 * h",
    "a hook on a tensor no variable holds": (
        "keep = {}\nh = x ** 2\nh.register_hook(lambda g: calls.append('tensor'))\n"
        "keep['f'] = lambda: h\ny = 3 * h\ndel h"
    ),
    "a leaf's hook": "x.register_hook(lambda g: calls.append('leaf'))\ny = 3 * x ** 2",
    "retain_grad": "h = x ** 2\nh.retain_grad()\nstore = [h]\ny = 3 * h",
    "a tensor hook from an earlier cell": (
        "h = x ** 2\nh.register_hook(lambda g: calls.append('tensor'))",
        "y = 3 * h",
    ),
    "retain_grad from an earlier cell": ("h = x ** 2\nh.retain_grad()\nstore = [h]", "y = 3 * h"),
    "a leaf's hook from an earlier cell": (
        "x.register_hook(lambda g: calls.append('leaf'))",
        "y = 3 * x ** 2",
    ),
    "a node hook that queues an engine callback": (
        "y = 3 * x ** 2\n"
        "y.grad_fn.register_hook(lambda gi, go: torch.autograd.Variable._execution_engine.queue_callback("
        "lambda: calls.append('callback')))"
    ),
}


@pytest.fixture(scope="module")
def pair():
    from test_corpus import Pair

    p = Pair()
    yield p
    p.close()


@pytest_kernel
@pytest.mark.parametrize("what", list(CELLS))
def test_our_pass_runs_none_of_the_users_code(pair, what):
    setup, cell = CELLS[what] if isinstance(CELLS[what], tuple) else ("", CELLS[what])
    start(pair, f"{SETUP}\n{setup}")
    run(pair, cell, "--out _r -q")  # the fingerprint compares calls, h.grad, x.grad, ...
    assert pair.b.value("calls") == [] and pair.b.value("x.grad") is None
    assert_close(result_grad(pair, "x"), 12.0, "_r.grads['x']")  # 3·2x at x = 2
    if "retain_grad" in what:
        assert pair.b.value("store[0].grad") is None


USERS_CODE = {
    "a module's backward hook": (
        "net = torch.nn.Linear(2, 1)\nnet.register_full_backward_hook(lambda m, gi, go: calls.append('module'))",
        "out = net(torch.ones(2) * x).sum()",
    ),
    "saved-tensor hooks": (
        "",
        "with torch.autograd.graph.saved_tensors_hooks(lambda t: (calls.append('pack'), t)[1],\n"
        "                                              lambda t: (calls.append('unpack'), t)[1]):\n"
        "    y = (x ** 3).sin()",
    ),
    "saved-tensor hooks of an earlier cell": (
        "with torch.autograd.graph.saved_tensors_hooks(lambda t: (calls.append('pack'), t)[1],\n"
        "                                              lambda t: (calls.append('unpack'), t)[1]):\n"
        "    h = (x ** 3).sin()",
        "y = (h * 2).sum()",
    ),
    "a non-reentrant checkpoint of an earlier cell": (
        "from torch.utils.checkpoint import checkpoint\ndef f(t):\n    calls.append('forward')\n    return t.sin() * t\n"
        "h = checkpoint(f, x, use_reentrant=False)",
        "y = (h * 2).sum()",
    ),
    "a non-reentrant checkpoint": (
        "from torch.utils.checkpoint import checkpoint\ndef f(t):\n    calls.append('forward')\n    return t.sin() * t",
        "y = checkpoint(f, x, use_reentrant=False)",
    ),
}


@pytest_kernel
@pytest.mark.parametrize("what", list(USERS_CODE))
def test_where_the_users_code_is_in_the_graph_it_is_not_run_and_a_note_says_so(pair, what):
    setup, cell = USERS_CODE[what]
    start(pair, f"{SETUP}\n{setup}")
    run(pair, cell, "--out _r -q")
    assert "unpack" not in pair.b.value("calls") and "module" not in pair.b.value("calls")
    assert pair.b.value("calls").count("forward") <= 1
    notes = report(pair, "_r.note_texts")
    assert any("runs your own Python code" in n for n in notes), notes


def test_a_cell_without_hooks_runs_autograds_engine_and_one_with_a_hook_does_not(monkeypatch):
    """The engine is faster (a 6,000-node graph); it runs where no hook of the user's can be."""
    from torchgrad_magic import grad
    from torchgrad_magic.derive import backward

    engine_runs = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: engine_runs.append(1) or real(*a, **k))
    ns = {"torch": torch, "x": torch.tensor(2.0, requires_grad=True), "calls": []}
    assert grad("y = 3 * x ** 2", namespace=ns).grads["x"].item() == 12.0 and engine_runs == [1]
    exec("h = x ** 2\nh.register_hook(lambda g: calls.append(1))", ns)  # an earlier cell's hook
    assert grad("y = 3 * h", namespace=ns).grads["x"].item() == 12.0 and engine_runs == [1]
    assert grad("k = x * 1\nk.retain_grad()\ny = 3 * k", namespace=ns).grads["x"].item() == 3.0
    assert engine_runs == [1] and ns["calls"] == [] and ns["k"].grad is None
    assert backward.own_grads is not None


@pytest_kernel
def test_the_users_graph_still_works_in_the_next_cell(pair):
    start(pair, SETUP)
    run(pair, "h = x ** 2\nh.register_hook(lambda g: calls.append('tensor'))\ny = 3 * h", "--out _r -q")
    expected = oracle(pair, "y.backward()", "[calls, x.grad.item()]")
    pair.b.run_silently("y.backward()")
    assert pair.b.value("[calls, x.grad.item()]") == expected == [["tensor"], 12.0]


@pytest.mark.parametrize("expr", __import__("test_op_sweep").OPS)
def test_every_op_of_the_sweep_gets_autograds_grad_bit_for_bit(expr):
    x = torch.tensor([0.5, -1.0, 2.0, 1.5, -0.3, 0.8], requires_grad=True)
    y = eval(f"({expr}).sum()", {"torch": torch, "x": x})
    (expected,) = torch.autograd.grad(y, x, allow_unused=True, retain_graph=True)
    (got,) = own_grads(y, [x])
    assert (expected is None) == (got is None)
    if expected is not None:
        torch.testing.assert_close(got.to_dense(), expected.to_dense(), rtol=0, atol=0, equal_nan=True)


SPARSE = {
    "a sparse leaf, backward()": ("y = torch.sparse.mm(S, d).sum()\ny.backward()", ["S", "d"]),
    "a sparse leaf, no backward()": ("y = torch.sparse.mm(S, d).sum()", ["S", "d"]),
    "a sparse embedding, no backward()": ("y = emb(idx).sum(1).pow(2).sum()", ["emb.weight"]),
}


@pytest.mark.parametrize("case", list(SPARSE))
def test_sparse_grads_are_reported_dense_and_the_report_renders(case):
    torch.manual_seed(0)
    ns = {"torch": torch, "S": torch.randn(3, 3).relu().to_sparse().requires_grad_(),
          "d": torch.randn(3, 2, requires_grad=True), "emb": torch.nn.Embedding(10, 3, sparse=True),
          "idx": torch.tensor([[1, 2, 2], [9, 0, 1]])}  # fmt: skip
    cell, names = SPARSE[case]
    result = grad(cell, namespace=ns)
    assert str(result) and result._repr_html_() and result.note_texts is not None
    oracle_ns = {**ns}
    exec(cell.split("\n")[0], oracle_ns)
    leaves = [ns["emb"].weight if n == "emb.weight" else ns[n] for n in names]
    expected = torch.autograd.grad(oracle_ns["y"], leaves, retain_graph=True)
    for name, value in zip(names, expected, strict=True):
        torch.testing.assert_close(result.grads[name].to_dense(), value.to_dense())
