"""The tutorial's examples, through both entry points, against autograd itself."""

from __future__ import annotations

import warnings

import pytest
import torch


def oracle(fn, **point):
    """Gradients of fn at point by torch.autograd.grad, independently of torchgrad_magic."""
    leaves = {
        k: torch.as_tensor(v, dtype=torch.float32).clone().requires_grad_(True) for k, v in point.items()
    }
    out = fn(**leaves)
    grads = torch.autograd.grad(out.sum(), list(leaves.values()))
    return out.detach(), dict(zip(leaves, grads, strict=True))


def test_first_derivative(run):
    result = run("--wrt x=3", "y = 3 * x ** 2")
    value, expected = oracle(lambda x: 3 * x**2, x=3.0)
    assert result.grads["x"].item() == expected["x"].item() == 18
    assert result.output.item() == value.item() == 27
    assert result.output_name == "y"
    x, y = result.rows
    assert (x.name, x.is_leaf, x.requires_grad, x.grad_fn, x.grad.item()) == ("x", True, True, None, 18)
    assert (y.name, y.is_leaf, y.requires_grad, y.grad_fn, y.grad) == ("y", False, True, "MulBackward0", None)
    # the table a user reads
    text = str(result)
    assert "y = 27, dy/dx = 18 (at x = 3)" in text
    for column in ("data", "grad", "grad_fn", "is_leaf", "requires_grad"):
        assert column in text
    assert "MulBackward0" in text


def test_polynomial(run):
    result = run("--wrt x=3", "y = 6 * x ** 2 + 2 * x + 4")
    _, expected = oracle(lambda x: 6 * x**2 + 2 * x + 4, x=3.0)
    assert result.grads["x"].item() == expected["x"].item() == 38
    assert result.output.item() == 64
    assert result.rows[-1].grad_fn == "AddBackward0"


def test_partial_derivatives(run):
    result = run("--wrt u=3 v=4", "f = u**3 + v**2 + 4*u*v")
    value, expected = oracle(lambda u, v: u**3 + v**2 + 4 * u * v, u=3.0, v=4.0)
    assert result.output.item() == value.item() == 91
    assert result.grads["u"].item() == expected["u"].item() == 43
    assert result.grads["v"].item() == expected["v"].item() == 20
    assert "∂f/∂u = 43, ∂f/∂v = 20 (at u = 3, v = 4)" in str(result)


def test_many_values_with_spaces_in_the_value(run):
    result = run("--wrt x=torch.linspace(-20, 20, 20)", "Y = x ** 2")
    x = torch.linspace(-20, 20, 20)
    _, expected = oracle(lambda x: x**2, x=x)
    torch.testing.assert_close(result.grads["x"], expected["x"])
    torch.testing.assert_close(result.grads["x"], 2 * x)
    assert result.summed
    assert result.output.shape == (20,)  # the output before summing
    assert any("Y has 20 elements" in note and "Y.sum()" in note for note in result.note_texts)
    assert "(20,)" in str(result) and "float32" not in str(result)  # (the default dtype: no column)


@pytest.mark.parametrize(
    "line",
    [
        "--wrt 'x=torch.linspace(-20, 20, 20)'",
        '--wrt "x=torch.linspace(-20, 20, 20)"',
        "--wrt x = torch.linspace(-20,20,20)",
    ],
)
def test_quoted_and_spaced_specs(run, line):
    result = run(line, "Y = x ** 2")
    torch.testing.assert_close(result.grads["x"], 2 * torch.linspace(-20, 20, 20))


def test_tutorial_cells_pasted_verbatim(run):
    cell = (
        "x = torch.tensor(3.0, requires_grad = True)\n"
        "y = 3 * x ** 2\n"
        'print("result:", y)\n'
        "y.backward()\n"
        'print("derivative at x = 3:", x.grad)\n'
    )
    result = run("", cell)
    assert result.grads["x"].item() == 18  # not 36: the cell's backward() is not repeated
    assert result.backward_calls == 1
    assert result.rows[0].role == "leaf"
    assert result.note_texts == []  # the table says it all: the seed's cell gets no note


def test_partials_pasted_verbatim(run):
    cell = (
        "u = torch.tensor(3., requires_grad=True)\n"
        "v = torch.tensor(4., requires_grad=True)\n"
        "f = u**3 + v**2 + 4*u*v\n"
        "f.backward()\n"
    )
    result = run("", cell)
    assert {k: g.item() for k, g in result.grads.items()} == {"u": 43, "v": 20}


def test_many_values_pasted_verbatim(run):
    cell = (
        "x = torch.linspace(-20, 20, 20, requires_grad = True)\nY = x ** 2\ny = torch.sum(Y)\ny.backward()\n"
    )
    result = run("", cell)
    torch.testing.assert_close(result.grads["x"], 2 * torch.linspace(-20, 20, 20))
    assert result.output_name == "y"


def test_cell_without_backward_and_without_wrt(run):
    result = run("", "x = torch.tensor(3.0, requires_grad=True)\ny = 6 * x ** 2 + 2 * x + 4")
    assert result.grads["x"].item() == 38
    assert result.backward_calls == 0
    assert run.ns["x"].grad is None  # the user's .grad is not written: the cell did not call backward()
    assert any("without storing them" in n for n in result.note_texts)


def test_nonleaf_grad_read_gives_a_note_and_the_warning(run, capsys):
    """The note adds the why; PyTorch's own warning still reaches the user, as without %%grad."""
    cell = (
        "x = torch.tensor(3.0, requires_grad=True)\ny = 3 * x ** 2\ny.backward()\nprint('y.grad:', y.grad)\n"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("", cell)
    assert len([w for w in caught if "not a leaf" in str(w.message)]) == 1
    notes = [n for n in result.note_texts if "y.grad" in n]
    assert len(notes) == 1
    note = notes[0]
    assert "y is not a leaf" in note and "y.retain_grad()" in note and "MulBackward0" in note
    with warnings.catch_warnings(record=True) as caught:  # the user silenced it: still silent, still noted
        warnings.simplefilter("ignore")
        result = run("", cell)
    assert caught == [] and "UserWarning" not in capsys.readouterr().err
    assert any("y is not a leaf" in n for n in result.note_texts)


def test_retain_grad_shows_intermediates(run):
    result = run("--wrt x=3 --retain-grad", "z = 2 * x\ny = z ** 2")
    rows = {r.name: r for r in result.rows}
    assert list(rows) == ["x", "z", "y"]
    assert rows["z"].role == "intermediate" and rows["z"].grad.item() == 12
    assert result.grads["x"].item() == 24
    assert result.output.item() == 36


def test_retain_grad_when_the_cell_calls_backward(run):
    cell = "x = torch.tensor(3.0, requires_grad=True)\nz = 2 * x\ny = z ** 2\ny.backward()\nprint(z.grad)"
    result = run("--retain-grad", cell)
    rows = {r.name: r for r in result.rows}
    assert rows["z"].grad.item() == 12 and rows["x"].grad.item() == 24  # caught by a hook, as backward ran
    assert not run.ns["z"].retains_grad  # the user's tensor is left as a plain run leaves it


def test_of_picks_the_output(run):
    result = run("--wrt x=3 --of z", "z = 2 * x\ny = z ** 2")
    assert result.output_name == "z" and result.grads["x"].item() == 2


def test_last_expression_is_the_output(run):
    result = run("--wrt x=3", "y = 3 * x ** 2\nx ** 3")
    assert result.grads["x"].item() == 27
    assert result.output_name == "x ** 3"  # as the cell wrote it (not a made-up "out")


def test_last_expression_named(run):
    result = run("--wrt x=3", "z = x ** 3\ny = 3 * x ** 2\nz")
    assert result.output_name == "z" and result.grads["x"].item() == 27


def test_last_assigned_tensor_that_depends(run):
    result = run("--wrt x=3", "y = 3 * x ** 2\nc = torch.tensor(5.0)\nn = 4")
    assert result.output_name == "y" and result.grads["x"].item() == 18


def test_output_that_ignores_one_input(run):
    result = run("--wrt u=3 w=1", "f = u ** 2")
    assert result.grads["u"].item() == 6 and result.grads["w"] is None
    row = next(r for r in result.rows if r.name == "w")  # the grad cell says it; no note repeats it
    assert row.grad_text(4, 6) == "None (no path to the output)" and result.note_texts == []


def test_dtype(run):
    assert run("--wrt x=3", "y = x * 2").leaves["x"].dtype == torch.float32
    result = run("--wrt x=3 --dtype float64", "y = x * torch.tensor(2.0)")
    assert result.leaves["x"].dtype == torch.float64 and result.output.dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize(
    "spec", ["x=[1, 2, 3]", "x=(1, 2, 3)", "x=torch.tensor([1., 2., 3.])", "x=a", "x=a+0"]
)
def test_value_forms(run, spec):
    run.ns["a"] = torch.tensor([1.0, 2.0, 3.0])
    result = run(f"--wrt {spec}", "y = (x ** 2).sum()")
    torch.testing.assert_close(result.grads["x"], torch.tensor([2.0, 4.0, 6.0]))


def test_bare_name_uses_a_copy_and_leaves_the_original(run):
    original = torch.tensor(2.0)
    run.ns["x"] = original
    result = run("--wrt x", "y = x ** 3")
    assert result.grads["x"].item() == 12
    assert run.ns["x"] is original
    assert original.grad is None and not original.requires_grad
    assert "y" in run.ns  # what the cell defined stays


def test_bare_name_with_a_number(run):
    run.ns["x"] = 3
    assert run("--wrt x", "y = x ** 2").grads["x"].item() == 6
    assert run.ns["x"] == 3


def test_later_specs_see_earlier_ones(run):
    result = run("--wrt u=3 v=u+1", "f = u * v")
    assert result.grads["u"].item() == 4 and result.grads["v"].item() == 3


def test_grads_never_carry_over(run):
    first = run("--wrt x=3", "y = 3 * x ** 2\ny.backward()")
    second = run("--wrt x=3", "y = 3 * x ** 2\ny.backward()")
    assert first.grads["x"].item() == second.grads["x"].item() == 18


def test_stale_grad_of_an_existing_leaf_is_left_alone_and_said(run):
    run("", "x = torch.tensor(3.0, requires_grad=True)\ny = 3 * x ** 2\ny.backward()")
    run.ns["x"].grad.mul_(2)  # 36: an old grad that is not this cell's
    result = run("", "y = 3 * x ** 2")
    assert result.grads["x"].item() == 18
    assert run.ns["x"].grad.item() == 36  # never written: a plain cell would not write it either
    assert any("x.grad still holds 36" in n for n in result.note_texts)


def test_namespace_after_the_cell(run):
    run("--wrt x=3", "z = 2 * x\ny = z ** 2\nk = 7")
    ns = run.ns
    assert ns["k"] == 7 and ns["y"].item() == 36 and ns["z"].item() == 6
    assert ns["x"].grad.item() == 24 and ns["x"].is_leaf


def test_two_backward_calls_are_reported(run):
    result = run("--wrt x=3", "y = 3 * x ** 2\ny.backward(retain_graph=True)\ny.backward()")
    assert result.backward_calls == 2 and result.grads["x"].item() == 18  # what the call shown computed
    assert result.rows[0].grad.item() == 36  # x.grad then: the two calls added up
    (text,) = result.note_texts  # (one note: the calls and what the second added, 18 to 18)
    assert "2 times" in text and "it added its 18 to the 18 x.grad held" in text, text


def test_module_parameters_are_left_untouched(run):
    run.ns["net"] = torch.nn.Linear(2, 1)
    result = run("--wrt inp=[1.0, 2.0]", "y = net(inp)")
    weight = run.ns["net"].weight
    torch.testing.assert_close(result.grads["inp"], weight.detach()[0])
    assert weight.grad is None and run.ns["net"].bias.grad is None


def test_a_grad_the_cell_put_on_a_wrt_leaf_is_left_as_it_is(run):
    """--wrt x=3, no backward(): %%grad stores dy/dx in x.grad, but not over a grad the cell
    assigned itself (x.grad = 100 stays 100, as in a plain run)."""
    result = run("--wrt x=3", "y = 3 * x ** 2\nx.grad = torch.tensor(100.0)")
    assert result.grads["x"].item() == 18 and result.tensors["x"].grad.item() == 100
