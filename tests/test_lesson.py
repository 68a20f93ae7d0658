"""The report as the lesson (issue 23): every name the cell wrote is a row, the seed's own idiom
(``Y.sum().backward()``) keeps its names and its plot, each fact is said once, and messages blame
the right cause. Both entry points (``run``: grad() and %%grad), a real kernel for the traceback."""

from __future__ import annotations

import re

import pytest
import torch

SEED_VECTOR = "--wrt x=torch.linspace(-3, 3, 61)"
SQUARE = (  # a custom autograd.Function: its backward is the user's own code
    "class Square(torch.autograd.Function):\n"
    "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x ** 2\n"
    "    @staticmethod\n    def backward(ctx, g):\n        (x,) = ctx.saved_tensors\n        return 2 * x * g\n"
)


def row(result, name):
    return next(r for r in result.rows if r.name == name)


# ---- 1. the seed's idiom: the cell sums a named tensor itself ---------------------------------
@pytest.mark.parametrize(
    ("call", "written"),
    [
        ("Y.sum().backward()", "Y.sum()"),
        ("torch.sum(Y).backward()", "torch.sum(Y)"),
        ("Y.mean().backward()", "Y.mean()"),
        ("torch.autograd.grad(Y.sum(), x)", "Y.sum()"),
    ],
)
def test_a_reduced_output_is_reported_as_the_cell_wrote_it(run, call, written):
    result = run(SEED_VECTOR, f"Y = x ** 2\n{call}")
    assert result.output_name == "Y" and result.written == written
    assert [r.name for r in result.rows] == ["x", "Y"]  # no made-up "out"
    assert row(result, "Y").role == "output" and row(result, "Y").data.shape == (61,)
    x = torch.linspace(-3, 3, 61, dtype=torch.float64).requires_grad_()
    y = x**2
    target = y.mean() if "mean" in written else y.sum()
    (oracle,) = torch.autograd.grad(target, x)
    assert torch.allclose(result.grads["x"].double(), oracle, atol=1e-5)
    assert result.headline.startswith(f"{written} = {float(target.detach()):.4g}")
    assert f"d({written})/dx = " in result.headline
    assert not any(r.name.startswith("out") for r in result.rows)


def test_a_reduced_output_twice_gets_no_out_1(run):
    for _ in range(2):  # (it was out, then out_1)
        result = run(SEED_VECTOR, "Y = x ** 2\nY.sum().backward()")
        assert result.output_name == "Y"


def test_the_seed_plot_draws_the_function_and_its_derivative(run):
    result = run(SEED_VECTOR + " --plot", "Y = x ** 2\nY.sum().backward()")
    labels = [c.label for c in result.curves]
    assert labels == ["Y", "dY/dx"], labels
    function, derivative = result.curves
    assert torch.allclose(function.y, function.x**2, atol=1e-4)
    assert torch.allclose(derivative.y, 2 * derivative.x, atol=1e-4)
    assert not any("shape" in n for n in result.note_texts)  # (it said "out has shape ()")
    assert not any("recorded computation" in n for n in result.note_texts)


def test_the_last_expression_reduced_is_named_too(run):
    result = run(SEED_VECTOR, "Y = x ** 2\nY.sum()")
    assert result.output_name == "Y" and result.written == "Y.sum()"


def test_a_named_sum_keeps_its_own_name(run):
    result = run(SEED_VECTOR, "Y = x ** 2\ns = Y.sum()\ns.backward()")
    assert result.output_name == "s" and result.written is None
    assert [r.name for r in result.rows] == ["x", "Y", "s"]


def test_check_on_a_reduced_output(run):
    result = run("--wrt x=torch.tensor([1.0, 2.0]) --check", "Y = x ** 3\nY.sum().backward()")
    assert result.checks and all(c.ok for c in result.checks)
    assert torch.allclose(result.checks[0].autograd, torch.tensor([3.0, 12.0], dtype=torch.float64))


# ---- 2. every tensor the cell binds to a name is a row ----------------------------------------
def test_a_named_intermediate_is_a_row(run):
    result = run("--wrt x=3", "u = x * 2\ny = u ** 3")
    assert [r.name for r in result.rows] == ["x", "u", "y"]
    u = row(result, "u")
    assert (u.role, u.grad_fn, u.is_leaf, u.requires_grad, u.grad) == (
        "intermediate", "MulBackward0", False, True, None
    )  # fmt: skip
    assert u.grad_text(4, 6) == "None (not a leaf: not kept)"
    assert result.grads["x"].item() == 216  # d(8x³)/dx = 24x² at 3


def test_retain_grad_fills_the_intermediate_and_the_output(run):
    result = run("--wrt x=3 --retain-grad", "u = x * 2\ny = u ** 3")
    assert row(result, "u").grad.item() == 108  # 3u² at u = 6
    assert row(result, "y").grad.item() == 1  # dy/dy, as PyTorch's retain_grad() keeps it
    assert result.note_texts == []  # (no "--retain-grad keeps it" when it was given)


def test_an_alias_of_a_parameter_says_what_it_aliases(run):
    cell = (
        "torch.manual_seed(0)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))\n"
        "W = model[2].weight\n"
        "out = model(torch.ones(1, 2)).sum()\n"
        "out.backward()"
    )
    result = run("", cell)
    w = row(result, "W")
    assert w.alias == "model.2.weight" and w.cells(4, 6, (), False)[1] == "= model.2.weight"
    assert torch.equal(w.grad, run.ns["model"][2].weight.grad) if run.kind == "magic" else w.grad is not None


def test_a_grad_made_by_autograd_grad_is_a_row(run):
    result = run("--wrt x=3", "y = x ** 3\ng, = torch.autograd.grad(y, x, create_graph=True)")
    g = row(result, "g")
    assert g.data.item() == 27 and g.grad_fn is not None and g.role == "intermediate"


def test_a_constant_is_a_row(run):
    result = run("--wrt x=3", "c = torch.tensor(2.0)\ny = c * x")
    c = row(result, "c")
    assert c.role == "constant" and c.grad_text(4, 6) == "None (requires_grad=False)"


# ---- 3. each fact once ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "cell"),
    [
        ("--wrt x=3", "y = 3 * x ** 2"),
        ("--wrt x=3", "y = 6 * x ** 2 + 2 * x + 4"),
        ("--wrt u=3 v=4", "f = u ** 3 + v ** 2 + 4 * u * v"),
        ("", "x = torch.tensor(3.0, requires_grad=True)\ny = 3 * x ** 2\ny.backward()"),
        ("--wrt x=3", "u = x * 2\ny = u ** 3"),
    ],
)
def test_the_seed_cells_need_no_note(run, line, cell):
    assert run(line, cell).note_texts == []


def test_an_optimizer_loop_ends_with_one_note(run):
    cell = (
        "torch.manual_seed(0)\nX = torch.randn(20, 3)\nT = X @ torch.tensor([1.0, 2.0, 3.0])\n"
        "w = torch.zeros(3, requires_grad=True)\nopt = torch.optim.SGD([w], lr=0.1)\n"
        "for step in range(50):\n    opt.zero_grad()\n    loss = ((X @ w - T) ** 2).mean()\n"
        "    loss.backward()\n    opt.step()"
    )
    result = run("", cell)
    assert len(result.note_texts) == 1, result.note_texts
    (text,) = result.note_texts
    assert "50 times" in text and "call 50" in text and "changed w" in text


# ---- 7. messages that name the right cause ---------------------------------------------------
def test_grad_mode_off_is_said(run):
    torch.set_grad_enabled(False)
    try:
        result = run("--wrt x=3", "y = 3 * x ** 2")
    finally:
        torch.set_grad_enabled(True)
    (text,) = result.note_texts
    assert "grad mode is off" in text and "torch.set_grad_enabled(True)" in text
    assert "torch.tensor(...)" not in text  # (the wrong guess it made)


def test_of_a_tensor_the_cell_did_not_make(run):
    run("", "w = torch.tensor(2.0, requires_grad=True)\nloss = torch.tensor(5.0)")
    result = run("--of loss", "z = w + 1")
    assert result.note_texts[0].startswith("--of loss: the cell did not assign loss")
    assert not any("requires_grad=True" in n for n in result.note_texts)


def test_a_custom_function_keeps_its_row_and_check_says_why(run, capsys):
    cell = (
        SQUARE.replace("        return 2", "        print('backward ran')\n        return 2")
        + "y = Square.apply(x)"
    )
    result = run("--wrt x=2 --check", cell)
    assert row(result, "x").grad_text(4, 6) == "not computed (see the note)"
    assert "dy/dx" not in result.headline  # (it said dy/dx = None)
    assert any("--check" in n for n in result.note_texts) and not result.checks
    assert "backward ran" not in capsys.readouterr().out  # the user's backward code never ran


def test_check_of_a_complex_input_shows_complex_numbers(run):
    result = run("--wrt z=1+2j --check", "y = (z * z.conj()).real")
    (check,) = result.checks
    assert check.autograd.is_complex() and complex(check.autograd) == pytest.approx(2 + 4j)
    assert complex(check.numeric) == pytest.approx(2 + 4j, abs=1e-6)
    assert "(2+4j)" in str(result).split("check against")[1]


@pytest.mark.parametrize("cell", ["x = (1,\ny = 2", "def f():\nreturn 1", "return 5"])
def test_a_syntax_error_shows_the_cells_line_only(shell, capsys, cell):
    shell.run_cell(cell)
    plain = capsys.readouterr()
    outcome = shell.run_cell("%%grad\n" + cell)
    ours = capsys.readouterr()
    assert not outcome.success
    assert "magic.py" not in ours.out + ours.err and "interactiveshell" not in ours.out + ours.err
    assert plain.out.strip() in ours.out and plain.out.strip()
    assert shell.run_cell("1 + 1").result == 2


# ---- 6. smaller things ------------------------------------------------------------------------
def test_symbolic_second_order(run):
    pytest.importorskip("sympy")
    result = run("--wrt x=2 --symbolic --order 2", "y = x ** 4")
    assert [s.expression for s in result.symbolic] == ["4*x**3", "12*x**2"]
    assert [s.value for s in result.symbolic] == [32, 48]
    text = str(result)
    assert "dy/dx = 4*x**3 = 32" in text and "d²y/dx² = 12*x**2 = 48" in text
    assert r"\frac{d^{2} y}{d x^{2}}" in result.symbolic[1].latex


@pytest.mark.parametrize("expect", ["'u=43 v=20'", '"u=43 v=20"', "u=43 v=20", '"u=43" "v=20"'])
def test_quoted_expect(shell, capsys, expect):
    outcome = shell.run_cell(f"%%grad --wrt u=3 v=4 --expect {expect}\nf = u ** 3 + v ** 2 + 4 * u * v")
    assert outcome.success, outcome.error_in_exec
    assert "as expected: ∂f/∂u = 43; ∂f/∂v = 20" in capsys.readouterr().out


def test_help_opens_with_the_usage(shell, capsys):
    shell.run_cell("%%grad?")
    out = capsys.readouterr().out
    assert "::" not in out.split("--wrt")[0] and "%%grad [--wrt" in out


def test_html_cells_never_wrap(run):
    html = run(SEED_VECTOR, "Y = x ** 2\nY.sum().backward()")._repr_html_()
    cells = html.split("<td")[1:]
    assert cells and all("white-space:pre" in c.split("</td>")[0] for c in cells if "<code" in c)
    assert " " not in html.split("<tbody>")[1].split("</tbody>")[0].replace("<td style", "").replace(
        "<code style", ""
    ).replace("<tr><td", "")  # no breakable space inside the table's cells


@pytest.mark.parametrize("cell", ["x = (1,\ny = 2", "x = 1\nreturn x", "def f():\nreturn 1"])
def test_the_kernel_shows_a_syntax_error_as_a_plain_cell(kernel, cell):
    plain = kernel.run(cell)
    ours = kernel.run("%%grad\n" + cell)
    assert len(ours.of_type("error")) == len(plain.of_type("error")) == 1  # (not twice)
    assert ours.status == "error" and ours.ename == plain.ename and ours.ename.endswith("Error")
    (theirs,), (mine,) = plain.of_type("error"), ours.of_type("error")

    def numbered(lines):  # (each cell its own In[n])
        return [re.sub(r"In\[\d+\]", "In[n]", line) for line in lines]

    assert numbered(mine["traceback"]) == numbered(theirs["traceback"]) and "In[" in mine["traceback"][0]
    assert kernel.value("1 + 1") == "2"


def test_the_expect_line_is_html_too_in_a_kernel(kernel):
    reply = kernel.run("%%grad --wrt u=3 v=4 --expect 'u=43 v=20'\nf = u ** 3 + v ** 2 + 4 * u * v")
    (shown,) = reply.of_type("display_data")
    assert shown["data"]["text/plain"] == "as expected: ∂f/∂u = 43; ∂f/∂v = 20"
    assert (
        shown["data"]["text/html"] == "<p>as expected: ∂f/∂u = 43; ∂f/∂v = 20</p>"
    )  # (no link made of f/∂u)


# ---- a refused line leaves the namespace untouched (the cell does not run) ---------------------
@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("--wrt x²=3", "'x²' is not a valid variable name"),
        ("--wrt x=3 --expect w=3", "w is not one of the inputs (x)"),
        ("--wrt x=3 --expect 'x=18 w=1'", "w is not one of the inputs (x)"),
        ("--wrt x=3 --expect x=1+", "SyntaxError"),
        ("--expect 1+", "SyntaxError"),
        ("--wrt x=3 --of y --of z", "--of is given twice"),
        ("--wrt x=3 --plot --no-plot", "--plot and --no-plot set the same thing"),
        ("--wrt x=3 --save /no/such/folder/f.png", "/no/such/folder"),
    ],
)
def test_a_refused_line_does_not_run_the_cell(shell, line, words):
    outcome = shell.run_cell(f"%%grad {line}\nran = True\ny = 3 * x ** 2\nz = y * 2")
    assert not outcome.success and words in str(outcome.error_in_exec)
    assert "ran" not in shell.user_ns and "y" not in shell.user_ns
    assert shell.run_cell("%%grad --wrt x=3\ny = 3 * x ** 2").success


def test_layer_rules_and_accumulation_in_chinese(shell, capsys):
    shell.run_cell(
        "import torch\ntorch.manual_seed(0)\n"
        "net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))\n"
        "X = torch.randn(5, 3)"
    )
    capsys.readouterr()
    assert shell.run_cell("%%grad --steps --lang zh\nloss = net(X).pow(2).mean()\nloss.backward()").success
    out = capsys.readouterr().out
    assert "> 0 处），其余为 0" in out and "where" not in out and "else" not in out
    shell.run_cell("w = torch.tensor([1.0, 2.0], requires_grad=True)")
    capsys.readouterr()
    assert shell.run_cell("%%grad --lang zh\nfor _ in range(2):\n    (w * w).sum().backward()").success
    assert "]（2 次 backward() 累加）" in capsys.readouterr().out  # (no space before a full-width bracket)


def test_a_sparse_embedding_step_is_reported(run):
    """nn.Embedding(sparse=True) gives sparse grads: the report shows them as the dense grads they
    stand for (it crashed: "Cannot access data pointer of Tensor that doesn't have storage")."""
    run("", "torch.manual_seed(0)\nemb = torch.nn.Embedding(10, 3, sparse=True)")
    if run.kind == "function":
        run.ns["emb"] = torch.nn.Embedding(10, 3, sparse=True)
    emb = run.ns["emb"]
    before = emb.weight.detach().clone()
    cell = (
        "opt = torch.optim.SGD(emb.parameters(), lr=0.1)\nidx = torch.tensor([1, 2, 4])\n"
        "loss = emb(idx).pow(2).sum()\nopt.zero_grad()\nloss.backward()\nopt.step()"
    )
    result = run("", cell)
    (name,) = result.grads
    expected = torch.zeros(10, 3)
    expected[[1, 2, 4]] = 2 * before[[1, 2, 4]]
    torch.testing.assert_close(result.grads[name], expected)
    assert "<sparse" not in str(result) and "<td" in result._repr_html_()  # renders, text and HTML


# ---- found by the red team (real kernels, plain vs %%grad) -------------------------------------
def test_the_jacobian_of_a_reduced_output_is_the_tensors_own(run):
    for call in ("Y.sum().backward()", "Y.mean().backward()"):
        result = run("--wrt x=torch.tensor([1.0, 2.0, 3.0]) --jacobian", f"Y = x ** 2\n{call}")
        torch.testing.assert_close(result.jacobian, torch.diag(torch.tensor([2.0, 4.0, 6.0])))


def test_of_the_tensor_the_cell_reduced(run):
    cell = "x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)\nY = x ** 2\nY.sum().backward()"
    result = run("--of Y", cell)
    assert result.headline == "Y.sum() = 14, d(Y.sum())/dx = [2, 4, 6]" and not result.note_texts


def test_an_unnamed_output_is_named_as_the_cell_wrote_it(run):
    result = run("--wrt x=torch.tensor([1.0, 2.0])", "Y = x ** 2\n(Y * 2).sum().backward()")
    assert result.output_name == "(Y * 2).sum()"
    assert result.headline == "(Y * 2).sum() = 10, d((Y * 2).sum())/dx = [4, 8]"


def test_the_advice_to_fill_grad_works_for_a_vector_output(run):
    result = run("", "x = torch.tensor([1.0, 2.0], requires_grad=True)\nY = x ** 2")
    assert any("call Y.sum().backward() to fill .grad" in n for n in result.note_texts)
    y = torch.tensor([1.0, 2.0], requires_grad=True) ** 2
    y.sum().backward()  # (the advice runs: Y.backward() would raise for a vector)


def test_a_custom_function_without_wrt_keeps_its_leaf(run):
    cell = SQUARE + "x = torch.tensor(2.0, requires_grad=True)\ny = Square.apply(x)"
    result = run("", cell)
    assert row(result, "x").grad_text(4, 6) == "not computed (see the note)"
    assert not any("no name here" in n for n in result.note_texts)


def test_retain_grad_of_a_summed_output(run):
    result = run("--wrt x=torch.tensor([1.0, 2.0]) --retain-grad", "Y = x ** 2")
    torch.testing.assert_close(row(result, "Y").grad, torch.ones(2))


def test_steps_and_symbolic_use_the_written_form(run):
    result = run("--wrt x=torch.tensor([1.0, 2.0]) --steps", "Y = x ** 2\nY.sum().backward()")
    assert "grads of Y.sum()" in str(result) and "d(Y.sum())/dx = [2, 4]" in str(result)
    pytest.importorskip("sympy")
    result = run("--wrt x=3 --symbolic", "y = x ** 2\ny.sum().backward()")
    assert result.symbolic[0].text == "d(y.sum())/dx = 2*x = 6 at x = 3"


def test_mixed_calls_are_named_as_they_were(run):
    cell = (
        "x = torch.tensor([1.0, 2.0], requires_grad=True)\nY = x ** 2\n"
        "g, = torch.autograd.grad(Y.sum(), x, create_graph=True)\nh = (g ** 2).sum()\nh.backward()"
    )
    notes = run("", cell).note_texts
    assert any("backward()/torch.autograd.grad() 2 times" in n for n in notes), notes


def test_an_edge_out_of_a_folded_loop_has_no_label(run):
    cell = "h = x\nfor _ in range(20):\n    h = torch.sin(h) * 1.01 + h * 0.5\ny = h * 2"
    result = run("--wrt x=1 --graph --steps", cell)
    graph = result.graph
    (box,) = [i for i, n in enumerate(graph.nodes) if getattr(n, "repeat", 1) > 1]
    assert box is not None and all(graph.label(k) is None for k, (a, _) in enumerate(graph.edges) if a == box)


def test_a_custom_function_whose_grads_pass_check_is_not_called_wrong(run):
    cell = SQUARE + "y = Square.apply(x)\ny.backward()"
    result = run("--wrt x=2 --check", cell)
    assert result.checks and all(c.ok for c in result.checks)  # the cell's own grads, checked
    assert not any("differ from" in n for n in result.note_texts), result.note_texts
    assert any("cannot follow" in n for n in result.note_texts)


@pytest.mark.parametrize("flags", ["", "--check", "--steps", "--plot"])
def test_an_error_in_the_cells_backward_has_a_plain_traceback(shell, capsys, flags):
    """The recorder's torch-function mode made PyTorch add handle_torch_function frames."""
    cell = "x = torch.tensor(2.0)\ny = x ** 2\ny.backward()"
    shell.run_cell("import torch")
    capsys.readouterr()
    shell.run_cell(cell)
    plain = re.sub(r"In\[\d+\]", "In[n]", capsys.readouterr().out)
    assert not shell.run_cell(f"%%grad {flags}\n{cell}").success
    ours = re.sub(r"In\[\d+\]", "In[n]", capsys.readouterr().out)
    assert "overrides.py" not in ours and ours.count("File") == plain.count("File") >= 2
    assert ours.count("_tensor.py") == plain.count("_tensor.py")


def test_a_bare_wrt_says_the_cell_ran_on_a_copy(shell):
    shell.run_cell("import torch\nx = torch.tensor([1.0, 2.0])")
    assert shell.run_cell("%%grad --wrt x --out r -q\nY = x ** 2\nY.sum().backward()").success
    (text,) = shell.user_ns["r"].note_texts
    assert text.startswith("--wrt x: the cell ran on a copy of x") and shell.user_ns["x"].grad is None


def test_a_change_through_data_after_the_call_is_said(run):
    cell = "x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)\nY = x ** 2\nY.sum().backward()\nx.data.mul_(0)"
    (text,) = run("", cell).note_texts
    assert "changed x (now [0, 0, 0])" in text


def test_steps_of_a_long_loop_read_well(run):
    result = run(
        "--wrt x=torch.tensor([1.0, 2.0]) --steps",
        "y = x\nfor _ in range(40):\n    y = y * torch.sin(x) + 0.1",
    )
    text = str(result)
    assert "(1 steps" not in text and "–109 " not in text
    assert "41 paths: steps #121, #120, #118, #115, #112, #109, #106, #103, …)" in text


def test_anomaly_modes_warning_prints_as_in_a_plain_cell(shell):
    """#24: under set_detect_anomaly(True), PyTorch's "Error detected in SqrtBackward0" warning came
    with the error only in a plain cell (it was recorded and dropped when the pass raised)."""
    import warnings

    cell = "x = torch.tensor(-1.0, requires_grad=True)\ny = torch.sqrt(x)\ny.backward()"
    shell.run_cell("import torch")
    found = []
    try:
        torch.autograd.set_detect_anomaly(True)
        for run_cell in (cell, "%%grad\n" + cell):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert not shell.run_cell(run_cell).success
            found.append([str(w.message).split(".")[0] for w in caught if "Error detected" in str(w.message)])
    finally:
        torch.autograd.set_detect_anomaly(False)
    plain, ours = found
    assert plain == ours == ["Error detected in SqrtBackward0"]


def test_steps_keep_where_s_condition_and_explain_its_nan(run):
    """#24: where(cond, a, b) was listed as where(a, const), and its NaN trap went unexplained."""
    result = run(
        "--wrt x=torch.tensor([-1.0, 4.0]) --steps", "y = torch.where(x > 0, torch.sqrt(x), x * 0).sum()"
    )
    assert "= where(x > 0, a, b)" in str(result)
    x = torch.tensor([-1.0, 4.0], requires_grad=True)
    (oracle,) = torch.autograd.grad(torch.where(x > 0, torch.sqrt(x), x * 0).sum(), x)
    torch.testing.assert_close(result.grads["x"], oracle, equal_nan=True)  # nan at -1, as PyTorch gives
    assert any(n.startswith("x: nan from torch.where") for n in result.note_texts)
    safe = run(
        "--wrt x=torch.tensor([-1.0, 4.0]) --steps",
        "y = torch.where(x > 0, torch.sqrt(torch.where(x > 0, x, 1)), x * 0).sum()",
    )
    assert not any("torch.where" in n for n in safe.note_texts)


@pytest.mark.parametrize(
    ("cell", "line"),
    [
        ("p, q = torch.split(x, 2)\ng = q ** 2\ny = g.sum() + p.sum()", "p, q = split(x, 2, dim=0)"),
        ("u, v, w, z = x.unbind()\na = (u * v).sum()", "u, v, w, z = unbind(x)"),
    ],
)
def test_steps_define_every_name_they_use(run, cell, line):
    """#24: a listing used q (and v) without defining them: "p = split(...)" then "g = q ** 2"."""
    result = run("--wrt x=torch.tensor([1.0, 2.0, 3.0, 4.0]) --steps", cell)
    assert f"  {line}\n" in str(result)


def test_a_hook_that_changes_grads_is_named(run):
    """#24: a hook on u multiplying its grad by 10 made x.grad 240, and the report called it dy/dx."""
    cell = "x = torch.tensor(3.0, requires_grad=True)\nu = x * 2\nh = u.register_hook(lambda g: g * 10)\ny = u ** 2"
    result = run("", cell + "\ny.backward()")
    assert result.grads["x"].item() == 240  # what PyTorch computed, as .grad holds it
    (text,) = result.note_texts
    assert text.startswith("u: a hook (register_hook)") and "(x: 240)" in text and "--check" in text
    checked = run("--check", cell + "\ny.backward()")
    assert checked.checks[0].numeric.item() == pytest.approx(24)  # the derivative itself
    plain = run(
        "", "x = torch.tensor(3.0, requires_grad=True)\nu = x * 2\nu.retain_grad()\ny = u ** 2\ny.backward()"
    )
    assert plain.note_texts == []  # retain_grad() is no hook of the user's


def test_max_with_dim_says_the_grad_goes_to_one_index(run):
    """#24: max(dim=…) with ties was said to share the grad; PyTorch sends it all to one index."""
    cell = "v, i = (x * torch.tensor([[1.0, 3.0, 3.0]])).max(dim=1)\ny = v.sum()"
    result = run("--wrt x=torch.tensor([[1.0, 1.0, 1.0]]) --steps", cell)
    text = str(result)
    assert "1 at the index max returned" in text and "shared among ties" not in text
    assert sorted(result.grads["x"].flatten().tolist()) == [0.0, 0.0, 3.0]  # one index gets it all
    shared = run(
        "--wrt x=torch.tensor([1.0, 1.0, 1.0]) --steps", "y = (x * torch.tensor([1.0, 3.0, 3.0])).max()"
    )
    assert "shared among ties" in str(shared) and shared.grads["x"].tolist() == [0.0, 1.5, 1.5]


def test_an_op_without_a_formula_is_said_not_explained(run):
    result = run(
        "--wrt x=torch.tensor([[1.0, 2.0], [3.0, 5.0]]) --steps",
        "v, m = torch.var_mean(x, dim=0)\ny = (v + m).sum()",
    )
    text = str(result)
    assert "v, m = var_mean(x, dim=0)" in text and "(not explained: VarMeanBackward0)" in text
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0]], requires_grad=True)
    v, m = torch.var_mean(x, dim=0)
    (oracle,) = torch.autograd.grad((v + m).sum(), x)
    torch.testing.assert_close(result.grads["x"], oracle)


# ---- a named tensor the output was not computed from ----------------------------------------
OFF_PATH = {  # cell -> the names a note says backward() from the output never reaches
    "y = x * 2\nz = x * 5\ny.backward()": ["z"],  # beside the output, not on its way back
    "h = x * 2\nk = h ** 2\nh = h + 1\nk.backward()": ["h"],  # the h in the table is the new one
    "h = x * 2\nk = h ** 2": [],  # on the way back: no note (and no backward() in the cell)
    "a = x * 2\nb = a * 3\nc = b + 1\nc.backward()": [],
}


@pytest.mark.parametrize("cell", list(OFF_PATH))
def test_a_tensor_off_the_outputs_way_back_is_said_once(run, cell):
    result = run("--wrt x=3", cell)
    said = [text for text in result.note_texts if text.startswith("not on the way back")]
    off = OFF_PATH[cell]
    if not off:
        assert not said, said
        return
    (text,) = said
    assert text.endswith(": " + ", ".join(off) + "."), text
    out = result.output_name
    assert f"backward() from {out} never reaches" in text
    plain = {"torch": torch, "x": torch.tensor(3.0, requires_grad=True)}  # oracle: autograd itself
    exec(cell.replace(".backward()", ".backward(retain_graph=True)"), plain)
    for row in result.rows:
        if row.role == "intermediate":
            (g,) = torch.autograd.grad(plain[out], plain[row.name], allow_unused=True, retain_graph=True)
            assert (g is None) == (row.name in off), row.name


DESCENT_TWO_STEPS = (
    "w = torch.tensor(1.0, requires_grad=True)\n"
    "for _ in range(2):\n"
    "    loss = (w * 2 - 8) ** 2\n"
    "    loss.backward()\n"
    "    with torch.no_grad():\n"
    "        w -= 0.1 * w.grad\n"
    "    w.grad.zero_()"
)


def test_a_change_after_the_call_is_listed_with_and(run):
    text = " ".join(run("", DESCENT_TWO_STEPS).note_texts)
    assert "changed w (now 3.88) and w.grad (zeroed: now 0)." in text, text
    text = " ".join(run("--lang zh", DESCENT_TWO_STEPS).note_texts)
    assert "改动了 w（现在是 3.88）和 w.grad（已清零：现在是 0）" in text, text


def test_chinese_brackets_take_no_space_before_them(shell, capsys):
    shell.run_cell(
        "import torch\nu = torch.tensor(3.0, requires_grad=True)\nv = torch.tensor(4.0, requires_grad=True)"
    )
    capsys.readouterr()
    assert shell.run_cell("%%grad --steps --graph --lang zh\nf = u ** 3 + v ** 2 + 4 * u * v").success
    out = capsys.readouterr().out
    assert "（2 条路径：步骤 #6, #3）" in out and "第 #" not in out, out
    assert " （" not in out, [line for line in out.splitlines() if " （" in line]


@pytest.mark.parametrize(
    ("cell", "said"),
    [
        ("with torch.no_grad():\n    y = 3 * x ** 2",
         "y was computed inside a torch.no_grad() block, where autograd records nothing: y has no path back to x."),
        ("with torch.no_grad():\n    z = x * 2\ny = z + 1",
         "z was computed inside a torch.no_grad() block, where autograd records nothing: y has no path back to x."),
        ("y = (3 * x ** 2).detach()",
         "y comes from (3 * x ** 2).detach(): detach() cuts the graph there, so y has no path back to x."),
        ("z = x.detach()\ny = z * 2", "y comes from x.detach(): detach() cuts the graph there"),
        ("y = torch.tensor(3.0) * 2", "was it made with torch.tensor(...), .detach(), .item() or under torch.no_grad()?"),
        ("with torch.inference_mode():\n    y = x * 2", "y was computed inside a torch.inference_mode() block"),
    ],
)  # fmt: skip
def test_a_cut_path_names_its_cause_where_the_code_shows_it(run, cell, said):
    """It asked "was it made with torch.tensor(...), .detach(), .item() or under torch.no_grad()?"
    of a cell whose `with torch.no_grad():` was in plain sight."""
    result = run("--wrt x=3", cell)
    (text,) = result.note_texts
    assert said in text, text


def test_two_backward_calls_in_a_cell_are_one_note(run):
    """Three sayings of one fact: the grad column, "the cell called backward() 2 times" and
    "x.grad already held 18, so backward() added this call's 18: x.grad = 36"."""
    cell = "x = torch.tensor(3.0, requires_grad=True)\ny = 3 * x ** 2\ny.backward()\ny = 3 * x ** 2\ny.backward()"
    result = run("", cell)
    (text,) = result.note_texts
    assert text.startswith("the cell called backward() 2 times; shown: call 2 (on y), as it ran: it added its 18 "
                           "to the 18 x.grad held."), text  # fmt: skip
    assert "36 (added up over 2 backward() calls)" in str(result)
    before = (
        "x = torch.tensor(3.0, requires_grad=True)\n(3 * x ** 2).backward()"  # (held from before the cell)
    )
    run.ns["torch"] = torch
    exec(before, run.ns)
    later = run("", "y = 3 * x ** 2\ny.backward()\ny = 3 * x ** 2\ny.backward()")
    assert any(n.startswith("x.grad already held 36") for n in later.note_texts), later.note_texts
