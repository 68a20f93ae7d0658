"""A loop's backward() calls: the report shows the last call, with the leaves it reached, their
values and grads at that call. The observer reuses the last call's leaves without walking the graph
(``Observer._same_leaves``) and walks it after the call when the engine did not reach them all:
each case here changes the leaves between calls in another way."""

from __future__ import annotations

import pytest
import torch

from torchgrad_magic import grad

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
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_last_call_is_shown_with_its_own_leaves(case):
    cell, expected = CASES[case]
    result = grad(cell, namespace={"torch": torch})
    rows = {r.name: r for r in result.rows}
    shown = {n: (rows[n].data.item(), rows[n].grad.item()) for n in result.grads}  # the call's leaves
    assert set(shown) == set(expected), (shown, result.note_texts)
    for name, (value, grad_) in expected.items():
        assert shown[name] == pytest.approx((value, grad_)), (name, shown[name])
