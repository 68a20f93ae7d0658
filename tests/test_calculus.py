"""--order, --hessian, --jacobian, --check, --expect, --symbolic, --times-input and error help,
against torch.func, gradcheck and SymPy; property-based over random expressions."""

from __future__ import annotations

import math
import re

import pytest
import sympy
import torch
from conftest import Failure
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from torchgrad_magic import GradError, grad

POLY = "y = 6 * x ** 2 + 2 * x + 4"
PARTIAL = "f = u**3 + v**2 + 4*u*v"


def test_second_and_third_order(run):
    result = run("--wrt x=3 --order 3", POLY)
    d1, d2, d3 = (g.item() for g in result.orders["x"])
    f = lambda x: 6 * x**2 + 2 * x + 4  # noqa: E731
    x = torch.tensor(3.0)
    assert d1 == torch.func.grad(f)(x).item() == 38
    assert d2 == torch.func.grad(torch.func.grad(f))(x).item() == 12
    assert d3 == torch.func.grad(torch.func.grad(torch.func.grad(f)))(x).item() == 0
    assert "dy/dx = 38, d²y/dx² = 12, d³y/dx³ = 0 (at x = 3)" in str(result)
    assert result.grads["x"].item() == 38 and result.grads["x"].grad_fn is None


def test_order_with_partials_and_vectors(run):
    result = run("--wrt u=3 v=4 --order 2", PARTIAL)
    assert [g.item() for g in result.orders["u"]] == [43, 18]
    assert [g.item() for g in result.orders["v"]] == [20, 2]
    assert "∂²f/∂u² = 18" in str(result)
    vector = run("--wrt x=torch.linspace(-2, 2, 5) --order 2", "Y = torch.sin(x)")
    x = torch.linspace(-2, 2, 5)
    torch.testing.assert_close(vector.orders["x"][1], -torch.sin(x))
    assert not any("element by element" in n for n in vector.note_texts)  # (sin works element by element)


@pytest.mark.parametrize(
    ("cell", "function"),
    [
        ("y = (x ** 3).sum() + x[0] * x[1]", lambda t: (t**3).sum() + t[0] * t[1]),
        ("y = torch.softmax(x, 0)[0]", lambda t: torch.softmax(t, 0)[0]),
    ],
)
@pytest.mark.parametrize("order", [2, 3])
def test_order_of_a_vector_input_is_the_hessians_diagonal(run, cell, function, order):
    """A function that mixes the elements of x: d²y/dx² is ∂²y/∂xᵢ² (it was the grad of the sum of
    dy/dx, [7, -11, 18] for [6, -12, 18]); a note says so, and no order above 2 is shown."""
    point = torch.tensor([1.0, -2.0, 3.0])
    result = run(f"--wrt x=torch.tensor([1., -2., 3.]) --order {order}", cell)
    oracle = torch.autograd.functional.hessian(function, point).diagonal()
    torch.testing.assert_close(result.orders["x"][1], oracle, rtol=1e-4, atol=1e-6)
    assert len(result.orders["x"]) == 2
    (said,) = [n for n in result.note_texts if "element by element" in n]
    assert "∂²y/∂xᵢ²" in said and ("no higher order" in said) == (order > 2)


def test_hessian(run):
    result = run("--wrt u=3 v=4 --hessian", PARTIAL)
    (matrix,) = result.matrices
    oracle = torch.func.hessian(lambda p: p[0] ** 3 + p[1] ** 2 + 4 * p[0] * p[1])(torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(matrix.values, oracle)
    assert matrix.values.tolist() == [[18, 4], [4, 2]] and result.hessian is matrix.values
    assert result.jacobian is None
    assert matrix.rows == matrix.cols == ["u", "v"]
    text = str(result)
    assert "Hessian of f" in text and re.search(r"u\s+18\s+4", text) and re.search(r"v\s+4\s+2", text)


def test_hessian_needs_scalars(run):
    result = run("--wrt x=[1.0, 2.0] --hessian", "y = (x ** 3).sum()")  # runs; a note says why there is none
    assert result.hessian is None and result.grads["x"].tolist() == [3.0, 12.0]
    assert any("--hessian needs scalar inputs; x" in n for n in result.note_texts)


@pytest.mark.parametrize(
    ("cell", "fn"),
    [
        ("Y = x ** 2", lambda x: x**2),
        ("Y = torch.cumsum(x, 0) * x", lambda x: torch.cumsum(x, 0) * x),
        ("Y = torch.softmax(x, 0)", lambda x: torch.softmax(x, 0)),
    ],
)
def test_jacobian_against_jacrev(run, cell, fn):
    result = run("--wrt x=torch.linspace(-1, 1, 4) --jacobian", cell)
    (matrix,) = result.matrices
    torch.testing.assert_close(matrix.values, torch.func.jacrev(fn)(torch.linspace(-1, 1, 4)))
    assert result.jacobian is matrix.values
    assert matrix.rows == ["Y[0]", "Y[1]", "Y[2]", "Y[3]"] and matrix.cols == ["x[0]", "x[1]", "x[2]", "x[3]"]
    assert "Jacobian of Y (4×4" in str(result)
    assert any("--jacobian shows every dY[i]/dx[j]" in n for n in result.note_texts)
    torch.testing.assert_close(result.grads["x"], matrix.values.sum(0))  # .grad stays the column sums


def test_jacobian_several_inputs_and_big_ones_summarised(run):
    result = run("--wrt a=[1.0, 2.0] b=3 --jacobian", "Y = a * b")
    (matrix,) = result.matrices
    assert matrix.values.tolist() == [[3, 0, 1], [0, 3, 2]] and matrix.cols == ["a[0]", "a[1]", "b"]
    big = run("--wrt x=torch.linspace(0, 1, 50) --jacobian", "Y = x ** 2")
    assert big.matrices[0].values.shape == (50, 50)
    assert len(str(big)) < 4000 and "…" in str(big)


def test_order_after_the_cells_own_backward(run):
    # the cell's backward() freed its graph: higher orders come from the recorded computation
    result = run("--wrt x=3 --order 3", "y = x ** 3\ny.backward()")
    assert [g.item() for g in result.orders["x"]] == [27, 18, 6]


@pytest.mark.parametrize(
    ("cell", "point"),
    [(POLY, "x=3"), ("y = torch.sin(x) * torch.exp(x)", "x=1"), ("y = torch.tanh(x ** 2)", "x=0.5")],
)
def test_check_passes_and_agrees_with_gradcheck(run, cell, point):
    result = run(f"--wrt {point} --check", cell)
    (row,) = result.checks
    assert row.ok and row.max_error < 1e-6
    assert "pass" in str(result)
    source = cell.split("=", 1)[1]
    x = torch.tensor(float(point.split("=")[1]), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: eval(source, {"torch": torch, "x": x}), (x,))


def test_check_vectors_and_sampling(run):
    result = run("--wrt x=torch.linspace(-3, 3, 200) --check", "Y = x ** 3")
    (row,) = result.checks
    assert row.ok and row.autograd.numel() == 8  # 8 random directions, as gradcheck's fast mode
    assert any("x has 200 elements; the check compared 8 random directions" in n for n in result.note_texts)
    small = run("--wrt x=torch.linspace(-3, 3, 64) --check", "Y = x ** 3")
    assert small.checks[0].ok and small.checks[0].autograd.numel() == 64  # element by element


def test_check_says_where_the_function_has_a_kink(run):
    abs_result = run("--wrt x=0 --check", "y = torch.abs(x)")
    assert any(
        "not differentiable at x = 0" in n and "1 from the right and -1 from the left" in n
        for n in abs_result.note_texts
    )
    assert abs_result.checks[0].ok and abs_result.checks[0].kink
    relu = run("--wrt x=0 --check", "y = torch.relu(x)")  # (differences: 0.5, autograd 0: one side)
    assert relu.checks[0].ok and relu.checks[0].kink and "FAIL" not in str(relu)
    assert str(relu).count("kink: see note") == str(abs_result).count("kink: see note") == 1  # alike
    assert any("not differentiable at x = 0" in n for n in relu.note_texts)
    # a kink does not excuse a value outside the two slopes (2 and 3): a hook made it 10 times that
    hooked = "x = torch.tensor(0.0, requires_grad=True)\nu = x * 1\nh = u.register_hook(lambda g: g * 10)\n"
    wrong = run("--check", hooked + "y = torch.relu(u) + 2 * u\ny.backward()")
    assert not wrong.checks[0].ok and "FAIL" in str(wrong), str(wrong)
    smooth = run("--wrt x=1 --check", "y = torch.abs(x)")
    assert smooth.checks[0].ok and not any("not differentiable" in n for n in smooth.note_texts)


def test_a_steep_smooth_function_is_no_kink(run):
    # 1e7·x² at 0: the one-sided slopes over h = 1e-6 are 10 and -10 (f''·h), not a kink
    result = run("--wrt x=0 --check", "y = 1e7 * x ** 2")
    assert result.checks[0].ok and not result.checks[0].kink and "pass" in str(result)
    assert not any("differentiable" in n for n in result.note_texts), result.note_texts


def test_a_kink_inside_a_big_input_is_found_along_the_directions(run):
    # relu over a linspace with 0 in it (checked along 8 random directions) read FAIL, no note
    result = run("--wrt x=torch.linspace(-1, 1, 101) --check", "y = torch.relu(x).sum()")
    (row,) = result.checks
    assert row.directions == 8 and row.ok and row.kink and "kink: see note" in str(result)
    assert any("along one of the random directions of x" in n for n in result.note_texts)


def test_a_wrong_custom_backward_is_not_blamed_on_a_cut(run):
    """A Function's forward runs without grad: its ops read as a no_grad cut, and a buggy backward()
    (the textbook exercise) got "the difference comes from that cut, not from an autograd error"."""
    run.ns["torch"] = torch
    exec(
        "class MySquare(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x * x\n"
        "    @staticmethod\n    def backward(ctx, g):\n        (x,) = ctx.saved_tensors\n        return g * 3 * x\n",
        run.ns,
    )
    result = run("--wrt x=3 --check", "y = MySquare.apply(x)\ny.backward()")
    assert not result.checks[0].ok and "FAIL" in str(result)
    assert not any("cut" in n for n in result.note_texts), result.note_texts


def test_check_of_a_big_input_names_its_numbers_directional_derivatives(run):
    result = run("--wrt x=torch.linspace(-3, 3, 1000) --check", "y = torch.sin(x).sum()")
    assert result.checks[0].directions == 8 and "x along 8 directions  [" in str(result), str(result)
    assert any("not x.grad" in n for n in result.note_texts)
    small = run("--wrt x=torch.tensor([1.0, 2.0]) --check", "y = (x ** 2).sum()")
    assert small.checks[0].directions == 0 and "\nx       [2, 4]" in str(small), str(small)


def test_symbolic_at_a_kink_says_why_it_differs_once(run):
    alone = run("--wrt x=0 --symbolic", "y = torch.relu(x)")
    (text,) = alone.note_texts
    assert text.startswith("SymPy gives 0.5 for dy/dx but autograd gives 0: at x = 0 y has a kink"), text
    both = run("--wrt x=0 --symbolic --check", "y = torch.relu(x)")
    assert sum("kink" in n or "not differentiable" in n for n in both.note_texts) == 1, both.note_texts
    assert both.note_texts[-1] == "SymPy gives 0.5 for dy/dx there: its Heaviside(0) is 1/2."
    (smooth,) = run("--wrt x=1 --symbolic", "y = torch.relu(x)").symbolic  # (agrees: no note)
    assert smooth.value == 1


def test_expect(run, capsys):
    assert run("--wrt x=3 --expect 38", POLY).expect_line == "as expected: dy/dx = 38"
    assert run("--wrt u=3 v=4 --expect u=43 v=20", PARTIAL).expect_line.startswith("as expected")
    with pytest.raises(Failure, match="not as expected: dy/dx: expected 36, got 38"):
        run("--wrt x=3 --expect 36", POLY)
    with pytest.raises(Failure, match=r"∂f/∂v: expected 21, got 20"):
        run("--wrt u=3 v=4 --expect u=43 v=21", PARTIAL)
    with pytest.raises(Failure, match=re.escape("there are 2 inputs; name them: --expect u=... v=...")):
        run("--wrt u=3 v=4 --expect 43", PARTIAL)
    with pytest.raises(Failure, match="w is not one of the inputs"):
        run("--wrt u=3 v=4 --expect w=1", PARTIAL)
    vector = run("--wrt x=torch.linspace(-20, 20, 20) --expect 2*torch.linspace(-20, 20, 20)", "Y = x ** 2")
    assert vector.expect_line.startswith("as expected")


def test_expect_prints_one_line_in_the_shell(shell, capsys):
    assert shell.run_cell(f"%%grad --wrt x=3 --expect 38\n{POLY}").success
    assert capsys.readouterr().out.strip() == "as expected: dy/dx = 38"
    outcome = shell.run_cell(f"%%grad --wrt x=3 --expect 36\n{POLY}")
    assert "expected 36, got 38" in str(outcome.error_in_exec)


def test_symbolic(run):
    result = run("--wrt x=3 --symbolic", POLY)
    (line,) = result.symbolic
    assert line.expression == "12*x + 2" and line.value == 38
    assert "dy/dx = 12*x + 2 = 38 at x = 3" in str(result)
    assert "$$" in result._repr_html_() and r"\frac{d y}{d x}" in result._repr_html_()
    trig = run("--wrt t=0.5 --symbolic", "s = torch.sin(t) * torch.exp(t)")
    x = sympy.Symbol("t", real=True)
    shown = sympy.sympify(trig.symbolic[0].expression, locals={"t": x})
    assert sympy.simplify(shown - sympy.diff(sympy.sin(x) * sympy.exp(x), x)) == 0
    assert trig.symbolic[0].expression == "exp(t)*sin(t) + exp(t)*cos(t)"
    assert trig.symbolic[0].value == pytest.approx(trig.grads["t"].item(), rel=1e-5)


@pytest.mark.parametrize(
    ("cell", "derivative"),
    [
        (
            "y = 1 / (1 + torch.exp(-x))",
            lambda x: sympy.exp(-x) / (1 + sympy.exp(-x)) ** 2,
        ),  # a sigmoid by hand
        ("y = 1 / x", lambda x: -1 / x**2),
        ("y = 2 - x ** 2", lambda x: -2 * x),
    ],
)
def test_symbolic_of_a_number_on_the_left(run, cell, derivative):
    """``1 / x`` calls ``Tensor.__rdiv__`` (the tutorials' hand-written sigmoid): it was refused as
    "not plain arithmetic"."""
    result = run("--wrt x=0.5 --symbolic", cell)
    (line,) = result.symbolic
    x = sympy.Symbol("x", real=True)
    assert sympy.simplify(sympy.sympify(line.expression, locals={"x": x}) - derivative(x)) == 0
    assert line.value == pytest.approx(result.grads["x"].item(), rel=1e-5)


@pytest.mark.parametrize(
    "cell",
    [
        "net = torch.nn.Linear(1, 1)\ny = net(x.reshape(1)).sum()",
        "y = (x * torch.ones(3)).sum()",
    ],
)
def test_symbolic_says_when_it_cannot(run, cell):
    result = run("--wrt x=3 --symbolic", cell)
    assert not result.symbolic
    (note,) = [n for n in result.note_texts if "no symbolic answer" in n]
    assert "\n" not in note


def test_symbolic_of_a_cell_with_item_says_what_is_constant(run):
    result = run("--wrt x=3 --symbolic", "y = x\nfor k in range(int(x.item())):\n    y = y * x")
    assert result.symbolic[0].expression == "4*x**3"  # the loop ran 3 times, as autograd saw it
    assert any("turned tracked values into Python values" in n for n in result.note_texts)


def test_model_input_sensitivity(run):
    torch.manual_seed(0)
    run.ns["model"] = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    result = run("--wrt inp=[0.5, -1.0, 2.0] --times-input", "score = model(inp)")
    model = run.ns["model"]
    oracle = torch.func.jacrev(lambda i: model(i).sum())(torch.tensor([0.5, -1.0, 2.0]))
    torch.testing.assert_close(result.grads["inp"], oracle)
    assert all(p.grad is None for p in model.parameters())
    header, rows = result.table()
    assert header[3:5] == ["grad", "grad×input"]  # (beside the grad it multiplies)
    expected = oracle * torch.tensor([0.5, -1.0, 2.0])
    from torchgrad_magic import format as fmt

    assert rows[0][4] == fmt.values(expected, result.digits, result.max_items)  # the column shows grad×input
    torch.testing.assert_close(result.rows[0].grad * result.rows[0].data, expected)
    assert rows[-1][4] == ""  # the output row has no grad×input


HINTS = [
    ("--wrt x=3", "y = x * torch.ones(3)\ny.backward()", "y.sum().backward()"),
    ("--wrt x=3", "y = x ** 2\ny.backward()\ny.backward()", "retain_graph=True"),
    ("", "z = torch.tensor(3, requires_grad=True)", "torch.tensor(3.0, requires_grad=True)"),
    ("--wrt x=3", "x.add_(1)", "x2 = x + 1"),
    ("--wrt x=3", "y = torch.exp(x)\ny += 1\ny.backward()", "out-of-place"),
    (
        "--wrt x=3",
        "y = torch.tensor(3.0) * 2\ny.backward()",
        "not connected to any tensor with requires_grad=True",
    ),
    ("--wrt x=3", "a = x.numpy()", ".detach().numpy()"),
]


@pytest.mark.parametrize(("line", "cell", "fix"), HINTS)
def test_autograd_errors_get_plain_language_help(shell, capsys, line, cell, fix):
    outcome = shell.run_cell(f"%%grad {line}\n{cell}")
    shown = capsys.readouterr().out
    assert not isinstance(outcome.error_in_exec, UsageError)  # PyTorch's own error, as without %%grad
    assert "what it means:" in shown and fix in shown  # with one line of help under its traceback
    assert shell.run_cell("%%grad --wrt x=3\ny = 3 * x ** 2").success


@pytest.mark.parametrize(("line", "cell", "fix"), HINTS)
def test_autograd_errors_keep_pytorchs_error_in_the_function(line, cell, fix):
    with pytest.raises(Exception) as info:
        grad(cell, wrt=line.removeprefix("--wrt ") or None)
    assert not isinstance(info.value, GradError)  # PyTorch's own error, unchanged ...
    assert any(fix in note for note in getattr(info.value, "__notes__", []))  # ... with one line of help


# ---------------------------------------------------------------------------
# property-based: random smooth expressions
# ---------------------------------------------------------------------------
UNARY = ["torch.sin({})", "torch.cos({})", "torch.exp({})", "torch.tanh({})", "({}) ** 2", "({}) ** 3"]


@st.composite
def expressions(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(["x", "x", "2.0", "0.5", "(-1.5)"]))
    kind = draw(st.sampled_from(["unary", "add", "mul", "sub"]))
    if kind == "unary":
        inner = draw(expressions(depth=depth - 1))
        if "x" not in inner:  # torch.sin(2.0) is a TypeError: torch functions take tensors
            return f"({inner}) ** 2"
        return draw(st.sampled_from(UNARY)).format(inner)
    left, right = draw(expressions(depth=depth - 1)), draw(expressions(depth=depth - 1))
    return f"({left} {dict(add='+', mul='*', sub='-')[kind]} {right})"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expr=expressions(), point=st.floats(-1.5, 1.5, allow_nan=False))
def test_orders_check_and_symbolic_agree_with_oracles(expr, point):
    if "x" not in expr:
        expr = f"({expr}) * x"
    cell = f"y = {expr}"
    result = grad(cell, wrt={"x": point}, dtype="float64", order=3, check=True, symbolic=True)
    f = lambda x: eval(expr, {"torch": torch, "x": x})  # noqa: E731
    x = torch.tensor(point, dtype=torch.float64)
    nested = [
        torch.func.grad(f),
        torch.func.grad(torch.func.grad(f)),
        torch.func.grad(torch.func.grad(torch.func.grad(f))),
    ]
    for k, (got, oracle) in enumerate(zip(result.orders["x"], nested, strict=True), start=1):
        assert got.item() == pytest.approx(oracle(x).item(), rel=1e-9, abs=1e-9), (k, expr)
    (row,) = result.checks
    assert row.ok, (expr, row)
    line, *higher = result.symbolic  # d/dx, then d²/dx² and d³/dx³ (--order 3)
    assert [s.order for s in higher] == [2, 3]
    for s, auto in zip(higher, result.orders["x"][1:], strict=True):
        assert math.isclose(s.value, auto.item(), rel_tol=1e-7, abs_tol=1e-9), (expr, s)
    assert math.isclose(line.value, result.grads["x"].item(), rel_tol=1e-7, abs_tol=1e-9), (expr, line)
    symbol = sympy.Symbol("x", real=True)
    sym_expr = sympy.sympify(expr.replace("torch.", ""), locals={"x": symbol})
    assert float(sympy.diff(sym_expr, symbol).subs(symbol, point)) == pytest.approx(
        line.value, rel=1e-7, abs=1e-9
    )


def test_a_tensor_an_earlier_cell_made_from_the_leaves_is_named_not_failed():
    """The record of this cell starts at h (an earlier cell's h = x * 3): --check must not call
    autograd's right grad a FAIL; a note names h and says why the extras are left out."""
    ns = {"torch": torch}
    exec("x = torch.tensor(2., requires_grad=True)\nh = x * 3", ns)
    result = grad("k = h.sin() * x", namespace=ns, check=True)
    assert not result.checks
    assert any("computed from h, which an earlier cell computed" in n for n in result.note_texts)
    assert result.grads["x"].item() == pytest.approx(
        torch.sin(torch.tensor(6.0)).item() + 2 * 3 * torch.cos(torch.tensor(6.0)).item()
    )


def test_jacobian_note_names_each_input_and_is_left_out_for_one_row(run):
    scalar = run("--wrt u=3 v=4 --jacobian", "f = u ** 3 + v ** 2 + 4 * u * v")
    assert not [n for n in scalar.note_texts if "--jacobian shows" in n]  # (its one row is the grads)
    vector = run("--wrt x=torch.tensor([1.0, 2.0]) y=torch.tensor([3.0, 4.0]) --jacobian", "Y = x * y")
    (said,) = [n for n in vector.note_texts if "--jacobian shows" in n]
    assert said.startswith("--jacobian shows every dY[i]/dx[j], dY[i]/dy[j]; the grad column is what Y.sum()")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_symbolic_of_a_vector_input_says_why_in_the_language(run, lang):
    said = " ".join(
        run(f"--wrt x=torch.tensor([1.0, 2.0]) --symbolic --lang {lang}", "y = (x ** 2).sum()").note_texts
    )
    assert (
        "real scalar inputs, and x is not one" if lang == "en" else "只接受实数标量输入，而 x 不是"
    ) in said
    assert "needs scalar inputs" not in said and "plain arithmetic" not in said


def test_a_constant_symbolic_derivative_is_said_without_the_point(run):
    lines = [s.text for s in run("--wrt x=3 --symbolic --order 3", "y = x ** 3").symbolic]
    assert lines == ["dy/dx = 3*x**2 = 27 at x = 3", "d²y/dx² = 6*x = 18 at x = 3", "d³y/dx³ = 6"]


def test_notes_and_plots_write_partial_signs_for_a_name_starting_with_d(run):
    scaled = run("--wrt delta=3", "y = 3 * delta ** 2\ny.backward(torch.tensor(2.))").note_texts
    assert any("each grad is 2 × ∂y/∂delta" in n for n in scaled) and not any(
        "dy/ddelta" in n for n in scaled
    )
    plotted = run("--wrt d=torch.tensor([1.0, 2.0]) --plot", "Y = d * 2")
    assert [c.label for c in plotted.curves] == ["Y", "∂Y/∂d"]
    assert any(
        "dY[i]/dx[j]" in n for n in run("--wrt x=torch.tensor([1.0, 2.0]) --jacobian", "Y = x * 2").note_texts
    )


def test_order_of_a_big_vector_input_that_mixes_its_elements_stops_at_one(run):
    """Past DIAGONAL_PASSES elements no Hessian diagonal is taken element by element: only dy/dx,
    and a note says why (the grad of the sum would have been shown as d²y/dx²)."""
    result = run("--wrt x=torch.linspace(-2, 2, 3000) --order 2", "y = torch.softmax(x, 0)[0]")
    assert len(result.orders["x"]) == 1 and "d²y/dx²" not in result.headline
    assert any("too many elements" in n for n in result.note_texts)


@pytest.mark.parametrize(
    ("values", "function"),
    [
        ([15.0, 1.0, 2.0], lambda t: torch.exp(t).sum() + t[1] * t[2]),  # a big diagonal beside a mixed term
        ([1.0, 1.0, 1.0], lambda t: 1e7 * t[0] ** 2 + t[1] * t[2]),
    ],
)
def test_order_probe_sees_a_small_mixed_term_beside_a_big_diagonal(run, values, function):
    """The probe's tolerance was scaled by the largest element: exp(15) = 3.3e6 hid x[1]·x[2]
    (d²y/dx² showed [3.269e6, 3.718, 8.389] for [3.269e6, 2.718, 7.389])."""
    point = torch.tensor(values, dtype=torch.float64)
    cell = "y = torch.exp(x).sum() + x[1] * x[2]" if values[0] == 15 else "y = 1e7 * x[0] ** 2 + x[1] * x[2]"
    result = run(f"--wrt x=torch.tensor({values}, dtype=torch.float64) --order 2", cell)
    oracle = torch.autograd.functional.hessian(function, point).diagonal()
    torch.testing.assert_close(result.orders["x"][1], oracle, rtol=1e-6, atol=1e-9)


def test_order_that_mixes_only_from_three_on_stops_there(run):
    """y = x0² · x1: d²y/dx² = [2·x1, 0] is the grad of the sum's exactly; order 3 mixes. The note
    said x had "too many elements" (it has 2) and that no order above 1 is shown."""
    result = run("--wrt x=torch.tensor([0., 2.]) --order 3", "y = x[0] ** 2 * x[1]")
    assert [g.tolist() for g in result.orders["x"]] == [[0.0, 0.0], [4.0, 0.0]]
    (said,) = [n for n in result.note_texts if "order" in n]
    assert "from order 3 on" in said and "too many" not in said
