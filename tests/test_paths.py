"""Leaves named as the learner wrote them: ``m.w``, ``params[0]``, ``layers[1].weight``,
``d["w"]`` — and looked up without running any of the user's code (a property, ``__getattr__`` or
``__getitem__`` of the user's class never runs)."""

from __future__ import annotations

import ast
import math

import pytest
import torch

from torchgrad_magic import grad
from torchgrad_magic.capture.paths import paths_in, value_at


class Holder:
    def __init__(self):
        self.w = torch.tensor([1.0, 2.0], requires_grad=True)


class Loud:
    """Every way of reaching into it that is the user's code counts."""

    calls = 0

    @property
    def w(self):
        Loud.calls += 1
        return torch.ones(2, requires_grad=True)

    def __getattr__(self, name):
        Loud.calls += 1
        return torch.ones(2, requires_grad=True)

    def __getitem__(self, key):
        Loud.calls += 1
        return torch.ones(2, requires_grad=True)


def test_paths_in_finds_the_chains_the_code_writes():
    tree = ast.parse("y = (m.layers[0].w * params[0]).sum() + d['b'] + x[i] + f(a).b + m.w.grad")
    found = [text for _, _, text in paths_in(tree)]
    assert "m.layers[0].w" in found and "m.layers[0]" in found and "m.layers" in found
    assert "params[0]" in found and "d['b']" in found and "m.w.grad" in found
    assert all(text != "x[i]" and "f(a)" not in text for text in found)  # a variable index, a call


def test_value_at_reads_data_only():
    m, loud = Holder(), Loud()
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    ns = {"m": m, "params": [m.w], "d": {"w": m.w}, "loud": loud, "net": net, "t": (m.w,)}
    assert value_at(ns, "m.w") is m.w
    assert value_at(ns, "params[0]") is m.w and value_at(ns, "params[-1]") is m.w
    assert value_at(ns, "d['w']") is m.w and value_at(ns, "t[0]") is m.w
    assert value_at(ns, "net[2].weight") is net[2].weight and value_at(ns, "net.0.bias") is net[0].bias
    assert value_at(ns, "params[5]") is None and value_at(ns, "nothing.w") is None
    assert value_at(ns, "m.w.grad") is None  # a tensor's attribute is not data in a dictionary
    for path in ("loud.w", "loud.other", "loud[0]"):
        assert value_at(ns, path) is None
    assert Loud.calls == 0


@pytest.mark.parametrize(
    "setup, cell, expected",
    [
        ("m = Holder()", "y = (m.w ** 2).sum()\ny.backward()", {"m.w": [2.0, 4.0]}),
        (
            "params = [torch.tensor(3.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)]",
            "y = params[0] ** 2 * params[1]",  # no backward(): our own pass names them too
            {"params[0]": 12.0, "params[1]": 9.0},
        ),
        ("d = {'w': torch.tensor(2.0, requires_grad=True)}", "y = d['w'] ** 3", {"d['w']": 12.0}),
        (  # a model held by a plain object: its parameters as the object's path and the model name them
            "class Trainer:\n    def __init__(self):\n        self.model = torch.nn.Linear(1, 1, bias=False)\n"
            "t = Trainer()\nt.model.weight.data.fill_(3.0)",
            "y = t.model(torch.ones(1, 1)).sum() ** 2\ny.backward()",
            {"t.model.weight": [6.0]},
        ),
    ],
)
def test_leaves_get_the_names_the_cell_wrote(setup, cell, expected):
    ns = {"torch": torch, "Holder": Holder}
    exec(setup, ns)
    result = grad(cell, namespace=ns)
    assert set(result.grads) == set(expected), result.note_texts
    for name, value in expected.items():
        assert result.grads[name].reshape(-1).tolist() == pytest.approx(
            value if isinstance(value, list) else [value]
        )
    assert not any("no name" in text for text in result.note_texts)


def test_a_path_name_in_the_magic_with_check(shell):
    shell.run_cell("import torch\nparams = [torch.tensor(3.0, requires_grad=True)]")
    result = shell.run_cell("%%grad --check --out report\nz = params[0] ** 2")
    assert result.error_in_exec is None
    text = str(shell.user_ns["report"])
    assert "params[0]" in text and "pass" in text and "FAIL" not in text
    assert shell.user_ns["params"][0].grad is None  # no backward(): .grad left as it was


def test_a_tensor_an_earlier_cell_computed_gets_its_row(shell):
    """``h`` is the learner's own name on the way from k back to x: it has a row, as the cell's own
    intermediates do; once an earlier backward() freed its graph, the note says that in those names."""
    shell.run_cell("import torch\nx = torch.tensor(2.0, requires_grad=True)\nh = x * 3")
    shell.run_cell("%%grad --out first\nk = h.sin() * x\nk.backward()")
    rows = {r.name: r for r in shell.user_ns["first"].rows}
    assert list(rows) == ["x", "h", "k"] and rows["h"].role == "intermediate"
    assert rows["h"].data.item() == 6.0
    assert shell.user_ns["x"].grad.item() == pytest.approx(math.cos(6) * 6 + math.sin(6))  # d/dx sin(3x)·x
    shell.run_cell("%%grad --out second\nk2 = h ** 2")
    texts = shell.user_ns["second"].note_texts
    assert any("an earlier backward() freed the graph behind h" in text for text in texts), texts
    assert shell.run_cell("print(k2.item())").error_in_exec is None  # the cell itself ran
    assert shell.user_ns["k2"].item() == 36.0


def test_no_user_code_runs_while_naming():
    """A class that answers every attribute itself (``__getattribute__``), or has its own
    ``__class__``/``__dict__``: the cell prints what a plain run prints, nothing more."""
    setup = (
        "class Loud:\n"
        "    def __init__(self):\n"
        "        object.__setattr__(self, 'w', torch.tensor(2.0, requires_grad=True))\n"
        "    def __getattribute__(self, name):\n"
        "        print('ran', name)\n"
        "        return object.__getattribute__(self, name)\n"
        "g = Loud()"
    )
    for cell in ("y = g.w ** 2", "y = g.w ** 2\ny.backward()"):
        plain, ours = {"torch": torch}, {"torch": torch}
        exec(setup, plain), exec(setup, ours)
        import contextlib
        import io

        out_plain, out_ours = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out_plain):
            exec(cell, plain)
        with contextlib.redirect_stdout(out_ours):
            grad(cell, namespace=ours)
        assert out_ours.getvalue() == out_plain.getvalue(), cell


def test_wrt_copy_and_a_tensor_made_from_the_original(shell):
    """--wrt x runs the cell on a copy of x; h (an earlier cell's x * 5) still leads to the user's
    own x, so k.backward() fills that x's .grad too: the note says so, not "as they were"."""
    shell.run_cell("import torch\nx = torch.tensor(2.0, requires_grad=True)\nh = x * 5")
    shell.run_cell("%%grad --wrt x --out r\nk = h * x\nk.backward()")
    texts = shell.user_ns["r"].note_texts
    assert shell.user_ns["x"].grad.item() == 10.0  # as in a plain run through h
    assert any("also reached your own x" in text and "10" in text for text in texts), texts
    assert not any("are as they were" in text for text in texts), texts


def test_the_graph_names_a_leaf_as_the_table_does():
    """``W`` and ``params[0]`` are one tensor; the cell wrote ``params[0]``: the table and the graph
    both say so, and the graph's leaf shows its value at the call shown, as the table does."""
    ns = {"torch": torch}
    exec("W = torch.tensor([1.0, -2.0], requires_grad=True)\nparams = [W]", ns)
    cell = (
        "for i in range(2):\n"
        "    loss = (params[0] ** 2).sum()\n"
        "    loss.backward()\n"
        "    with torch.no_grad():\n"
        "        params[0] -= 0.1 * params[0].grad\n"
        "    params[0].grad = None"
    )
    result = grad(cell, namespace=ns, graph="simple")
    leaves = [node for node in result.graph.nodes if node.kind == "leaf"]
    assert [node.name for node in leaves] == ["params[0]"], leaves
    assert (
        leaves[0].data == "[0.8, -1.6]"
    )  # the value at call 2 (after one step), not after the cell's second


def test_wrt_takes_a_path_as_the_table_writes_it(shell):
    """--wrt params[0] / --wrt d['w']: the tensor itself, in place (as --wrt net.0.weight), named as
    written; a path to nothing is refused with the message a user sees, and the shell goes on."""
    shell.run_cell(
        "import torch\nparams = [torch.tensor(3.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)]\n"
        "d = {'w': torch.tensor(1.0, requires_grad=True)}"
    )
    shell.run_cell("%%grad --wrt params[0] --out r\ny = params[0] ** 2 * params[1]")
    assert (
        list(shell.user_ns["r"].grads) == ["params[0]"]
        and shell.user_ns["r"].grads["params[0]"].item() == 12.0
    )
    shell.run_cell("%%grad --wrt d['w'] --out r2\ny = d['w'] * 5")
    assert shell.user_ns["r2"].grads["d['w']"].item() == 5.0
    refused = shell.run_cell("%%grad --wrt params[5]\ny = params[0] * 5")
    assert "--wrt params[5]: not a leaf tensor that requires grad" in str(refused.error_in_exec)
    assert shell.run_cell("z = 1 + 1").error_in_exec is None and shell.user_ns["z"] == 2
