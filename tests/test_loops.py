"""A loop's backward() calls: the report shows the last call, with the leaves it reached, their
values and grads at that call. The observer reuses the last call's leaves without walking the graph
(``Observer._same_leaves``) and walks it after the call when the engine did not reach them all:
each case here changes the leaves between calls in another way."""

from __future__ import annotations

import pytest
import torch

from torchgrad_magic import grad
from torchgrad_magic.capture import repeat

CASES = {
    "rebinds its leaf": (
        "w = torch.tensor(5.0, requires_grad=True)\n"
        "for i in range(3):\n"
        "    loss = (w - 3) ** 2\n"
        "    loss.backward()\n"
        "    w = (w - 0.1 * w.grad).detach().requires_grad_()",
        {"w": (4.28, 2.56)},  # the w of call 3: 5 → 4.6 → 4.28, d/dw = 2(w − 3)
    ),
    "alternates two leaves": (
        "a = torch.tensor(2.0, requires_grad=True)\nb = torch.tensor(3.0, requires_grad=True)\n"
        "for i in range(4):\n"
        "    loss = (a if i % 2 == 0 else b) ** 2\n"
        "    loss.backward()",
        {"b": (3.0, 12.0)},  # call 4 reaches b only; b.grad holds calls 2 and 4: 6 + 6
    ),
    "adds a leaf on the last call": (
        "w = torch.tensor(2.0, requires_grad=True)\nv = torch.tensor(4.0, requires_grad=True)\n"
        "for i in range(3):\n"
        "    w.grad = None\n"
        "    loss = w * 3 + (v * w if i == 2 else 0)\n"
        "    loss.backward()",
        {"w": (2.0, 7.0), "v": (4.0, 2.0)},
    ),
    "a fresh leaf each call": (
        "for i in range(3):\n"
        "    x = torch.tensor(float(i + 1), requires_grad=True)\n"
        "    loss = x ** 3\n"
        "    loss.backward()",
        {"x": (3.0, 27.0)},
    ),
    "a leaf on every other call": (
        "w = torch.tensor([1.0, -2.0], requires_grad=True)\nb = torch.tensor(0.5, requires_grad=True)\n"
        "for i in range(5):\n"
        "    loss = ((w * 3 + (b if i % 2 == 0 else 0)) ** 2).sum()\n"
        "    loss.backward()\n"
        "    w.grad = None\n"
        "    b.grad = None",
        {"w": ([1.0, -2.0], [21.0, -33.0]), "b": (0.5, -4.0)},  # call 5 reaches b again: 2·(3.5 − 5.5)
    ),
    "a leaf skips a call while its .grad holds one": (
        "a = torch.tensor([1.0, 2.0], requires_grad=True)\nb = torch.tensor(3.0, requires_grad=True)\n"
        "for i in range(3):\n"
        "    loss = (a * b).sum() if i != 1 else b * 2\n"
        "    loss.backward()",
        {"a": ([1.0, 2.0], [6.0, 6.0]), "b": (3.0, 8.0)},  # .grad after call 3 (its own: below)
    ),
    "unfreezes a leaf on the second call": (
        "w1 = torch.tensor([1.0, 2.0])\nw2 = torch.tensor([3.0], requires_grad=True)\n"
        "for i in range(3):\n"
        "    if i == 1:\n"
        "        w1.requires_grad_(True)\n"
        "    w1.grad = None\n"
        "    w2.grad = None\n"
        "    loss = (w1 * w2).sum() + (w1 ** 2).sum()\n"
        "    loss.backward()\n"
        "    with torch.no_grad():\n"
        "        if w1.grad is not None:\n"
        "            w1 -= 0.1 * w1.grad\n"
        "        w2 -= 0.1 * w2.grad",
        {"w1": ([0.53, 1.33], [3.46, 5.06]), "w2": (2.4, 1.86)},  # call 3: w1 as it was then, not after
    ),
    "from scratch: a class and a list of its tensors": (
        "class LinReg:\n"
        "    def __init__(self):\n"
        "        self.w = torch.tensor([2.0], requires_grad=True)\n"
        "        self.b = torch.tensor([0.0], requires_grad=True)\n"
        "    def __call__(self, X):\n"
        "        return X * self.w + self.b\n"
        "model = LinReg()\nparams = [model.w, model.b]\nX = torch.tensor([1.0, 2.0])\n"
        "for epoch in range(2):\n"
        "    l = ((model(X) - 3 * X) ** 2 / 2).mean()\n"
        "    l.backward()\n"
        "    with torch.no_grad():\n"
        "        for p in params:\n"
        "            p -= 0.1 * p.grad\n"
        "            p.grad.zero_()",
        {"model.w": (2.25, -1.65), "model.b": (0.15, -0.975)},  # epoch 2: residual -0.75·X + 0.15
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_last_call_is_shown_with_its_own_leaves(case):
    cell, expected = CASES[case]
    result = grad(cell, namespace={"torch": torch})
    rows = {r.name: r for r in result.rows}
    shown = {n: (rows[n].data.tolist(), rows[n].grad.tolist()) for n in result.grads}  # the call's leaves
    assert set(shown) == set(expected), (shown, result.note_texts)
    for name, (value, grad_) in expected.items():
        assert _flat(shown[name]) == pytest.approx(_flat((value, grad_))), (name, shown[name])


def _flat(pair: tuple) -> list[float]:
    return [float(v) for part in pair for v in (part if isinstance(part, list) else [part])]


TRAINING = (
    "torch.manual_seed(0)\n"
    "model = torch.nn.Sequential(torch.nn.Linear(3, {hidden}), torch.nn.Tanh(), torch.nn.Linear({hidden}, 1))\n"
    "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    "X, Y = torch.randn(8, 3), torch.randn(8, 1)\n"
    "for step in range(5):\n"
    "    {clear}\n"
    "    loss = ((model(X) - Y) ** 2).mean() + (model[0].bias.sum() if step == 2 else 0)\n"
    "    loss.backward()\n"
    "    {update}\n"
)
CLEARS = {  # the ways a loop empties .grad: the short way (Observer._repeat) takes both
    "zero_grad()": "opt.zero_grad()",
    "zero_grad(set_to_none=False)": "opt.zero_grad(set_to_none=False)",
    "each .grad.zero_()": "[p.grad.zero_() for p in model.parameters() if p.grad is not None]",
    "none: grads add up": "pass",
}


SIZES = {  # how the short way keeps the leaves (capture/repeat.py): all tiny, as Python numbers;
    "tiny: numbers": 4,  # else one batched copy into buffers that take turns
    "a 3×40 weight: one batched copy": 40,
}


@pytest.mark.parametrize("hidden", list(SIZES))
@pytest.mark.parametrize("clear", list(CLEARS))
def test_a_training_loop_shows_its_last_step(clear, hidden):
    """Every leaf's value and grad at the 5th backward(), against a plain run that copies them there
    (the loop's calls after the first take the short way: same leaves, .grad empty or zero)."""
    cell = TRAINING.format(clear=CLEARS[clear], update="opt.step()", hidden=SIZES[hidden])
    seen = "hist = []\n" + TRAINING.format(
        hidden=SIZES[hidden],
        clear=CLEARS[clear],
        update="hist.append([(p.detach().clone(), p.grad.clone()) for p in model.parameters()])\n    opt.step()",
    )
    plain: dict = {"torch": torch}
    exec(seen, plain)
    last, before = plain["hist"][4], plain["hist"][3]
    result = grad(cell, namespace={"torch": torch})
    names = ["model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias"]
    assert list(result.leaves) == names, result.note_texts
    for i, name in enumerate(names):
        value, held = last[i]
        own = held - before[i][1] if clear == "none: grads add up" else held  # (this call's own grad)
        assert torch.equal(result.leaves[name], value), name
        assert torch.allclose(result.grads[name], own, rtol=0, atol=1e-6), name


def test_a_big_grad_zeroed_in_place_is_not_added_to():
    """zero_grad(set_to_none=False) on a parameter over 65,536 elements (kept by reference, not
    copied): backward() did not add to anything, so no note says it did."""
    cell = (
        "torch.manual_seed(0)\nlayer = torch.nn.Linear(300, 300)\n"
        "opt = torch.optim.SGD(layer.parameters(), lr=0.1)\nX = torch.randn(4, 300)\n"
        "for step in range(3):\n"
        "    opt.zero_grad(set_to_none=False)\n"
        "    layer(X).pow(2).mean().backward()\n"
        "    opt.step()"
    )
    result = grad(cell, namespace={"torch": torch})
    assert not any("already held" in text for text in result.note_texts), result.note_texts
    assert "layer.weight" in result.grads


def test_a_loop_over_big_and_copied_leaves_shows_its_last_step(monkeypatch):
    """A layer over 65,536 elements beside small ones: the short way copies the small ones in one
    batch and keeps the big one by reference (its grad, which zero_grad() lets go of); every grad
    and every copied value shown is the last call's."""
    cell = TRAINING.format(clear="opt.zero_grad()", update="opt.step()", hidden=25_000)
    seen = "hist = []\n" + TRAINING.format(
        hidden=25_000,
        clear="opt.zero_grad()",
        update="hist.append([(p.detach().clone(), p.grad.clone()) for p in model.parameters()])\n    opt.step()",
    )
    plain: dict = {"torch": torch}
    exec(seen, plain)
    kept: list = []
    finish = repeat.LoopPlan.finish
    monkeypatch.setattr(repeat.LoopPlan, "finish", lambda plan, then: _noted(kept, finish(plan, then)))
    result = grad(cell, namespace={"torch": torch})
    assert [getattr(k, "holds_big", None) for k in kept] == [True] * 4  # calls 2-5: the short way
    names = ["model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias"]
    for name, (value, held) in zip(names, plain["hist"][4], strict=True):
        assert torch.equal(result.grads[name], held), name
        if value.numel() <= 65_536:  # (copied; the big weight is the tensor itself, stepped since)
            assert torch.equal(result.leaves[name], value), name


def test_an_unnamed_leaf_is_counted_not_dropped():
    ns = {"torch": torch, "w": torch.tensor(2.0, requires_grad=True)}
    result = grad("y = (torch.ones(3, requires_grad=True) * w).sum()\ny.backward()", namespace=ns)
    assert set(result.grads) == {"w"}
    assert any("leaf tensors behind y that have no name here (1:" in text for text in result.note_texts)


@pytest.mark.parametrize("change", ["w.data = w.data.double()", "w.data = torch.ones(66)"])
def test_a_leaf_whose_data_is_swapped_in_the_loop_is_shown_as_it_was_at_the_last_call(change):
    """``w.data = ...`` swaps what the leaf holds (PyTorch refuses a new shape there, not a new
    dtype): the short way copies from what the leaf holds now, and where its plan (dtypes,
    buffers) no longer fits, the call is kept one by one, as a plain run sees it."""
    loop = (
        "w = torch.linspace(-1, 1, 66, requires_grad=True)\n"
        "for i in range(4):\n"
        "    loss = (w ** 3).sum()\n"
        "    loss.backward()\n"
        "    with torch.no_grad():\n"
        "        w -= 0.1 * w.grad\n"
        "    w.grad = None\n"
        f"    if i == 1:\n        {change}"
    )
    plain: dict = {"torch": torch}
    exec(
        loop.replace(
            "    loss.backward()\n", "    loss.backward()\n    last = (w.detach().clone(), w.grad.clone())\n"
        ),
        plain,
    )
    result = grad(loop, namespace={"torch": torch})
    value, held = plain["last"]
    assert torch.equal(result.leaves["w"], value) and result.leaves["w"].dtype == value.dtype
    assert torch.equal(result.grads["w"], held)


def test_tiny_leaves_with_a_sparse_grad():
    """Embedding(sparse=True): a tiny leaf (40 elements) whose grad is sparse is kept one by one
    (the short way keeps tiny grads as numbers, which a sparse grad has no flat memory for)."""
    cell = (
        "torch.manual_seed(0)\nemb = torch.nn.Embedding(10, 4, sparse=True)\n"
        "opt = torch.optim.SGD(emb.parameters(), lr=0.5)\nidx = torch.tensor([1, 2, 2, 5])\n"
        "for i in range(3):\n"
        "    opt.zero_grad()\n"
        "    loss = emb(idx).pow(2).sum()\n"
        "    loss.backward()\n"
        "    {keep}opt.step()"
    )
    plain: dict = {"torch": torch}
    exec(cell.format(keep="last = (emb.weight.detach().clone(), emb.weight.grad.clone())\n    "), plain)
    result = grad(cell.format(keep=""), namespace={"torch": torch})
    value, held = plain["last"]
    assert torch.equal(result.leaves["emb.weight"], value)
    assert torch.equal(result.grads["emb.weight"].to_dense(), held.to_dense())


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64"])
def test_tiny_leaves_of_every_shape_zeroed_in_place(dtype, monkeypatch):
    """The short way reads a tiny ``.grad`` as Python numbers to tell that ``zero_()`` emptied it,
    and keeps values and grads as numbers whose nesting is the shape: a 0-d, a 2-d and a 1×1×1
    leaf come back with their own shapes, dtypes and the last call's numbers."""
    cell = (
        f"a = torch.tensor(1.5, dtype=torch.{dtype}, requires_grad=True)\n"
        f"m = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.{dtype}, requires_grad=True)\n"
        f"c = torch.full((1, 1, 1), 2.0, dtype=torch.{dtype}, requires_grad=True)\n"
        "for i in range(4):\n"
        "    loss = ((a * m + c) ** 2).sum().abs()\n"
        "    loss.backward()\n"
        "    {keep}with torch.no_grad():\n"
        "        for p in (a, m, c):\n"
        "            p -= 0.01 * p.grad\n"
        "            p.grad.zero_()"
    )
    plain: dict = {"torch": torch}
    exec(
        cell.format(
            keep="last = {n: (t.detach().clone(), t.grad.clone()) for n, t in zip('amc', (a, m, c))}\n    "
        ),
        plain,
    )
    kept = []
    finish = repeat.LoopPlan.finish
    monkeypatch.setattr(repeat.LoopPlan, "finish", lambda plan, then: _noted(kept, finish(plan, then)))
    result = grad(cell.format(keep=""), namespace={"torch": torch})
    assert [type(k) for k in kept] == [repeat.LoopRows] * 3  # calls 2-4: the short way, as numbers
    for name, (value, held) in plain["last"].items():
        shown, shown_grad = result.leaves[name], result.grads[name]
        assert shown.shape == value.shape and shown.dtype == value.dtype, name
        assert torch.equal(shown, value) and torch.equal(shown_grad, held), name


def _noted(kept: list, result):
    kept.append(result)
    return result


@pytest.mark.parametrize(
    "start, swap",
    [
        ("torch.tensor([1+1j, 2-1j])", "w.data.real.clone()"),  # complex leaf, real since: crashed
        ("torch.tensor([1.0], dtype=torch.bfloat16) * 65504", "w.data.half()"),  # 65536 shown as inf
        ("torch.tensor([1.0, 2.0])", "w.data.double()"),  # float64 shown for a float32 .grad
        ("torch.randn(3, 40)", "w.data.double()"),  # (the batched copy's buffers: float32)
    ],
    ids=["complex to real", "bfloat16 to half", "float to double", "copied: float to double"],
)
def test_a_grad_zeroed_in_place_keeps_its_own_dtype_when_the_leaf_changes_its(start, swap):
    """``w.data = ...`` to another dtype while ``.grad`` is zeroed in place (not set to None): the
    grad keeps its old dtype, and the call shows it with that dtype and its own numbers."""
    cell = (
        f"torch.manual_seed(0)\nw = ({start}).requires_grad_()\n"
        "for i in range(3):\n"
        "    loss = (w * w).real.sum() if w.is_complex() else (w * w).sum()\n"
        "    loss.backward()\n"
        "    {keep}w.grad.zero_()\n"
        f"    if i == 0:\n        w.data = {swap}"
    )
    plain: dict = {"torch": torch}
    exec(cell.format(keep="last = (w.detach().clone(), w.grad.clone())\n    "), plain)
    result = grad(cell.format(keep=""), namespace={"torch": torch})
    value, held = plain["last"]
    assert torch.equal(result.leaves["w"], value) and result.leaves["w"].dtype == value.dtype
    assert result.grads["w"].dtype == held.dtype and torch.equal(result.grads["w"], held)
    str(result)  # (the report is made: Frozen made a complex grad a real tensor and raised)


def test_a_float8_leaf_is_reported():
    """A leaf whose data is float8 (no norm kernels of its own): the report is made, its values
    and grads as the plain run leaves them (the check for nan/inf read it as float32)."""
    ns = {"torch": torch}
    exec("w = torch.tensor([1.0, 2.0], requires_grad=True)\nw.data = w.data.to(torch.float8_e4m3fn)", ns)
    result = grad("loss = (w.float() ** 2).sum()\nloss.backward()", namespace=ns)
    assert "float8_e4m3fn" in str(result) and "[2, 4]" in result._repr_html_()
    assert result.grads["w"].float().tolist() == [2.0, 4.0]


def test_a_leaf_that_joins_a_call_with_a_grad_in_its_grad_gets_the_calls_own():
    """``a`` sits out call 2 and comes back in call 3 while ``a.grad`` holds call 1's grad: the
    engine adds to it in place with no hook of ours on ``a`` (the last call's leaves were only
    ``b``); the grad shown is call 3's own (.grad after it less the copy taken before it), and
    the note says what ``a.grad`` held (the oracle: a hook on ``a`` in a plain run)."""
    cell = CASES["a leaf skips a call while its .grad holds one"][0]
    plain: dict = {"torch": torch}
    exec(
        cell.replace(
            "    loss.backward()",
            "    own = []\n    h = a.register_hook(own.append)\n    loss.backward()\n    h.remove()",
        ),
        plain,
    )
    result = grad(cell, namespace={"torch": torch})
    assert torch.equal(result.grads["a"], plain["own"][0]) and result.grads["b"].item() == 3.0
    assert "a.grad already held [3, 3], so backward() added this call's [3, 3]" in " ".join(result.note_texts)


def test_the_optimizer_in_backward_is_shown_at_the_call():
    """PyTorch's "optimizer in backward" recipe: a post-accumulate-grad hook steps each parameter
    and sets its ``.grad`` to None during the call. The report shows each parameter's grad and
    value as the hook received them (the oracle: the same hook, recording, in a plain run); the
    loop takes the long way each call, with a hook of ours that sees the grad first."""
    cell = (
        "torch.manual_seed(0)\nmodel = torch.nn.Linear(3, 2)\n"
        "opts = {p: torch.optim.SGD([p], lr=0.1) for p in model.parameters()}\n"
        "def step(p):\n    {keep}opts[p].step()\n    p.grad = None\n"
        "for p in model.parameters():\n    p.register_post_accumulate_grad_hook(step)\n"
        "X = torch.randn(4, 3)\nfor i in range(3):\n    loss = model(X).pow(2).mean()\n    loss.backward()"
    )
    plain: dict = {"torch": torch, "seen": {}}
    exec(cell.replace("{keep}", "seen[id(p)] = (p.detach().clone(), p.grad.clone())\n    "), plain)
    result = grad(cell.replace("{keep}", ""), namespace={"torch": torch})
    for name in ("weight", "bias"):
        value, held = plain["seen"][id(getattr(plain["model"], name))]
        assert torch.equal(result.grads[f"model.{name}"], held), name
        assert torch.equal(result.leaves[f"model.{name}"], value), name
    assert "model.weight.grad (now None)" in " ".join(result.note_texts)


@pytest.mark.parametrize("reset", ["w.grad = None\n", ""], ids=["grad emptied first", "grad held"])
def test_a_tensor_that_escaped_a_transform_is_not_the_cells_call(reset):
    """backward() on a tensor that escaped ``torch.func.grad`` after a loop's calls is the
    transform's business, not the cell's: the short way (no transform is active any more) and
    the long way agree on it, so the report shows the loop's last call either way."""
    cell = (
        "leak = []\n"
        "def f(v):\n"
        "    leak.append((v * w).sum())\n"
        "    return (v * x).sin().sum()\n"
        "for i in range(2):\n"
        "    w.grad = None\n"
        "    loss = (w * x).pow(2).sum() * (i + 1)\n"
        "    loss.backward()\n"
        "g = torch.func.grad(f)(x.clone())\n"
        f"{reset}leak[0].backward()\n"
    )
    w, x = torch.tensor([1.0, -2.0, 0.5], requires_grad=True), torch.tensor([0.3, 1.0, -1.5])
    result = grad(cell, namespace={"torch": torch, "w": w, "x": x})
    assert result.output_name == "loss" and result.backward_calls == 2
    assert torch.allclose(result.grads["w"], 4 * w.detach() * x**2)  # d/dw of 2·Σ(w·x)²


def test_a_leaf_swapped_for_another_shape_in_the_loop_is_shown_with_its_own():
    """``w.data = `` a tensor of another shape (PyTorch allows it; the grad keeps its shape): the
    short way's buffers have the plan's shape, and a batched copy would broadcast into them; the
    call is kept one by one instead, as a plain run sees it."""
    cell = (
        "for i in range(3):\n"
        "    w.grad = None\n"
        "    if i == 2:\n"
        "        w.data = torch.full((1,), 7.0)\n"
        "    loss = (w * x).sum()\n"
        "    loss.backward()\n"
    )
    w = torch.ones(100, requires_grad=True)
    result = grad(cell, namespace={"torch": torch, "w": w, "x": torch.arange(100.0)})
    assert torch.equal(result.leaves["w"], torch.full((1,), 7.0))
    assert torch.equal(result.grads["w"], torch.arange(100.0))


def test_a_big_grad_the_loop_let_go_of_is_let_go_of_before_the_next_backward():
    """zero_grad() sets a big grad (kept by reference) to None: the record lets go of it before
    the next backward() runs, so that the engine can reuse its memory as in a plain run (told
    by the grad's storage, alive or not, while the next pass runs; the record's alias of the
    grad holds the storage too)."""
    cell = (
        "import weakref\n"
        "torch.manual_seed(0)\n"
        "layer = torch.nn.Linear(300, 300)\n"
        "opt = torch.optim.SGD(layer.parameters(), lr=0.1)\n"
        "X = torch.randn(4, 300)\n"
        "prev, alive, last = None, [], None\n"
        "for step in range(4):\n"
        "    opt.zero_grad()\n"
        "    out = layer(X)\n"
        "    out.register_hook(lambda g: alive.append(prev is not None and prev() is not None))\n"
        "    out.pow(2).mean().backward()\n"
        "    prev = weakref.ref(layer.weight.grad.untyped_storage())\n"
        "    last = layer.weight.grad.clone()\n"
        "    opt.step()\n"
    )
    ns: dict = {"torch": torch}
    result = grad(cell, namespace=ns)
    assert ns["alive"] == [False] * 4
    assert torch.equal(result.grads["layer.weight"], ns["last"])
