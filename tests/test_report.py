"""The report: what it shows, how big it gets, and that building it has no side effects."""

from __future__ import annotations

import warnings

import pytest
import torch

from torchgrad_magic import format as fmt
from torchgrad_magic import grad


@pytest.mark.parametrize(
    ("value", "text"),
    [(18.0, "18"), (1 / 3, "0.3333"), (-0.0, "0"), (float("nan"), "nan"), (1e-12, "1e-12"), (2.5, "2.5")],
)
def test_numbers(value, text):
    assert fmt.number(value) == text


def test_a_number_near_a_whole_one_keeps_its_digits_in_the_table():
    # torch prints tensor(2.0002); the table read "y = 2, dy/dx = 1" for y = 1.0001·x at x = 2
    text = grad("y = x * 1.0001", wrt="x=2").text()
    assert text.startswith("y = 2.0002, dy/dx = 1.0001 (at x = 2)"), text
    assert grad("y = x * 1.000001", wrt="x=2").text().startswith("y = 2, dy/dx = 1 ")  # float noise
    assert grad("y = x + 1", wrt="x=12345").text().startswith("y = 12346, dy/dx = 1 (at x = 12345)")
    assert grad("y = x ** 2 + 1", wrt="x=1000").text().startswith("y = 1000001, dy/dx = 2000 ")  # not 1e+06


def test_values_are_summarised_whatever_the_size():
    small = fmt.values(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert small == "[[1, 2], [3, 4]]"
    big = fmt.values(torch.arange(10_000_000, dtype=torch.float32))
    assert big == "[0, 1, 2, …, 9999997, 9999998, 9999999]"  # (it read 1e+07 three times)
    assert fmt.values(torch.arange(7.0), max_items=4) == "[0, 1, …, 5, 6]"


def test_report_of_a_big_tensor_stays_small():
    result = grad("y = torch.sin(x) * 2", wrt="x=torch.linspace(0, 1, 1_000_000)")
    text, html = str(result), result._repr_html_()
    assert len(text) < 2_000 and len(html) < 4_000
    assert "(1000000,)" in text
    torch.testing.assert_close(result.grads["x"], 2 * torch.cos(torch.linspace(0, 1, 1_000_000)))


def test_rendering_never_warns_and_changes_nothing():
    result = grad("z = 2 * x\ny = z ** 2", wrt="x=3")
    y = result.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch's non-leaf .grad warning would raise here
        first = (str(result), result._repr_html_(), repr(result))
        second = (str(result), result._repr_html_(), repr(result))
    assert first == second
    assert y.grad_fn is not None and not y.retains_grad


def test_html_table_and_escaping():
    result = grad("y = 3 * x ** 2", wrt="x=3")
    from torchgrad_magic.messages import Note

    result = result.replace(
        notes=(*result.notes, Note("note.unused", {"out": "<script>alert(1)</script>", "name": "x"}))
    )
    html = result._repr_html_()
    assert html.count("<tr>") == 3  # header, x, y
    assert "<script>" not in html and "&lt;script&gt;" in html
    for column in ("data", "grad", "grad_fn", "is_leaf", "requires_grad"):
        assert f">{column}</th>" in html


def test_pretty_text_equals_str():
    from IPython.lib.pretty import pretty

    result = grad("y = 3 * x ** 2", wrt="x=3")
    assert pretty(result) == str(result)
    assert repr(result) == "<GradResult: y = 27, dy/dx = 18 (at x = 3)>"


def test_shape_and_dtype_columns_appear_only_when_useful():
    assert "shape" not in str(grad("y = 3 * x ** 2", wrt="x=3"))
    text = str(grad("y = 3 * x ** 2", wrt="x=3", dtype="float64"))  # (scalars: their shape says nothing)
    assert "shape" not in text and "  dtype\n" in text and "float64" in text, text
    text = str(grad("y = (x ** 2).sum()", wrt="x=[1.0, 2.0, 3.0]"))  # (float32, the default: nothing to say)
    assert "  shape\n" in text and "dtype" not in text and "float32" not in text, text


def test_getitem_and_grads_mapping():
    result = grad("f = u * v", wrt={"u": 2.0, "v": 5.0})
    assert result["u"].item() == 5 and result.grads["v"].item() == 2


def test_readme_shows_what_users_see():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for line in str(grad("y = 3 * x ** 2", wrt="x=3")).splitlines():
        assert line in readme
    assert str(grad("f = u ** 3 + v ** 2 + 4 * u * v", wrt="u=3 v=4")).splitlines()[0] in readme
    assert str(grad("Y = x ** 2", wrt="x=torch.linspace(-20, 20, 20)")).splitlines()[0] in readme


def test_readme_graph_example_is_what_users_see():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    result = grad("y = 3 * x ** 2", wrt="x=3", graph=True)
    assert result.graph.to_text() in readme


def test_autograd_grad_says_that_grad_is_left_as_it_was(run):
    """The grad column shows what torch.autograd.grad() returned; x.grad is not that (still None,
    or an earlier cell's grad): one note says what .grad holds."""
    cell = "x = torch.tensor(3.0, requires_grad=True)\ny = x ** 3\n(g,) = torch.autograd.grad(y, x)"
    result = run("", cell)
    assert result.grads["x"].item() == 27 and result.tensors["x"].grad is None
    assert [n for n in result.note_texts if "torch.autograd.grad() returned" in n] == [
        "the grad column is what torch.autograd.grad() returned; it stores nothing, so .grad is as it was: "
        "x.grad = None."
    ]
    earlier = run("", cell.replace("(g,) =", "y.backward(retain_graph=True)\n(g,) ="))
    assert any(n.endswith("x.grad = 27.") for n in earlier.note_texts)
    assert not [n for n in run("", cell.replace("(g,) = torch.autograd.grad(y, x)", "y.backward()")).note_texts
                if "autograd.grad" in n]  # fmt: skip


def test_a_retained_grad_before_backward_is_not_called_not_kept(run):
    """y.retain_grad() without backward(): y's grad is None because no backward() ran, not because
    a non-leaf's grad is not kept."""
    row = {r.name: r for r in run("--wrt x=3", "y = x ** 2\ny.retain_grad()\nz = y * 2").rows}["y"]
    assert row.grad is None and row.grad_text(4, 6) == "None (retain_grad(): kept once backward() runs)"
    after = {r.name: r for r in run("--wrt x=3", "y = x ** 2\ny.retain_grad()\nz = y * 2\nz.backward()").rows}
    assert after["y"].grad.item() == 2 and after["z"].grad_text(4, 6) == "None (not a leaf: not kept)"


def test_no_grad_returned_note_where_a_later_call_filled_grad(run):
    cell = "x = torch.tensor(3.0, requires_grad=True)\ny = x ** 3\n(g,) = torch.autograd.grad(y, x, create_graph=True)\ng.backward()"
    assert not [n for n in run("", cell).note_texts if "torch.autograd.grad() returned" in n]


@pytest.mark.parametrize(
    ("cell", "wrt"),
    [
        ("b = torch.tensor(2.0, requires_grad=True)\ny = a * b", "a=1"),
        ("a = torch.tensor(1.0, requires_grad=True)\nb = torch.tensor(2.0, requires_grad=True)\n"
         "c = torch.tensor(5.0, requires_grad=True)\ny = a * b\ny.backward(inputs=[a])", None),
        ("a = torch.tensor(1.0, requires_grad=True)\nb = torch.tensor(2.0, requires_grad=True)\n"
         "y = a * b\nga, = torch.autograd.grad(y, [a])", None),
    ],
)  # fmt: skip
def test_a_leaf_on_the_path_the_call_left_out_is_not_said_to_have_no_path(cell, wrt):
    """``y.backward(inputs=[a])``, ``grad(y, [a])``, ``--wrt a``: b is on y's path, its grad was
    not asked for (the table said "no path to the output"); c, not on it, has none."""
    result = grad(cell, wrt=wrt, namespace={"torch": torch})
    text = str(result)
    line = next(line for line in text.splitlines() if line.startswith("b "))
    assert "None (on the path, not asked for)" in line and "no path" not in line
    if "c = " in cell:
        assert "None (no path to the output)" in next(r for r in text.splitlines() if r.startswith("c "))
    zh = grad(cell, wrt=wrt, namespace={"torch": torch}, lang="zh")
    assert "None（在路径上，但没有要求计算）" in str(zh)


def test_a_complex_inputs_grad_says_which_convention_it_is():
    """r = |z| at 3+4j: PyTorch's z.grad is 0.6+0.8j (∂r/∂a + i·∂r/∂b), which a learner reads as
    dr/dz; the note says which it is, once."""
    cell = "z = torch.tensor(3 + 4j, requires_grad=True)\nr = torch.abs(z)\nr.backward()"
    result = grad(cell, namespace={"torch": torch})
    assert result.grads["z"].item() == pytest.approx(0.6 + 0.8j)
    (said,) = [n for n in result.note_texts if "a + bi" in n]
    assert "∂r/∂a + i·∂r/∂b" in said and "not a complex derivative of r" in said
    assert not any("a + bi" in n for n in grad("y = 3 * x ** 2", wrt="x=3").note_texts)
    square = "z = torch.tensor(1 + 2j, requires_grad=True)\ny = z * z\ny.backward(torch.tensor(1 + 0j))"
    assert not any("a + bi" in n for n in grad(square, namespace={"torch": torch}).note_texts)  # (complex y)


def test_a_custom_function_that_returns_no_grad_for_a_leaf():
    """backward() asked for every leaf; the Function's backward returned None for b: on the path,
    no grad reached it (not "not asked for", nor "no path")."""

    class F(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, g):
            return g * 3.0, None

    cell = "a = torch.tensor(1., requires_grad=True)\nb = torch.tensor(2., requires_grad=True)\ny = F.apply(a, b)\ny.backward()"
    text = str(grad(cell, namespace={"torch": torch, "F": F}))
    assert "None (on the path, but no grad reached it)" in next(
        r for r in text.splitlines() if r.startswith("b ")
    )


def test_a_custom_function_without_backward_is_said_to_have_none():
    class Id(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a.clone()

    cell = "a = torch.tensor([1., 2.], requires_grad=True)\ny = Id.apply(a).sum()"
    (said,) = grad(cell, namespace={"torch": torch, "Id": Id}).note_texts
    assert (
        "defines no backward()" in said and "NotImplementedError" in said and "call y.backward()" not in said
    )


def test_a_nonleaf_grad_read_names_the_node_that_made_it():
    """``print(y.grad)`` on y = x * 2: the note says y was made by MulBackward0, as its row shows
    (it said "made by an operation")."""
    cell = "x = torch.tensor(3.0, requires_grad=True)\ny = x * 2\nz = y ** 2\nz.backward()\nprint(y.grad)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = grad(cell, namespace={"torch": torch})
    (said,) = [n for n in result.note_texts if "the cell read y.grad" in n]
    assert "(made by MulBackward0)" in said


def test_a_cut_list_never_hides_one_name_behind_an_ellipsis():
    """("C, W1, b1, …, b2" hid only W2: all five are shorter than that.)"""
    assert fmt.few(["C", "W1", "b1", "W2", "b2"], 3, last=True) == ["C", "W1", "b1", "W2", "b2"]
    assert fmt.few(list("abcdef"), 3, last=True) == ["a", "b", "c", "…", "f"]
    assert fmt.few(list("abcde")) == list("abcde")
    assert fmt.few(list("abcdef")) == ["a", "b", "c", "d", "…"]


def test_a_quoted_error_is_cut_at_a_word():
    error = NotImplementedError(
        "Could not run 'aten::eq.Tensor' with arguments from the 'SparseCPU' backend. This could be "
        "because the operator doesn't exist for this backend, or was omitted during the selective build."
    )
    line = fmt.error_line(error)
    assert line.startswith("NotImplementedError: Could not run") and line.endswith(" …") and len(line) <= 162
    assert line[:-2].endswith(("this", "for", "exist"))  # (not "back")
    assert fmt.error_line(ValueError("short\nsecond line")) == "ValueError: short"


def test_a_nonleaf_grad_read_inside_the_cells_function_gets_its_note():
    """``def f(t): u = t * 2; print(u.grad)``: PyTorch warns, and the note comes with it (u is the
    function's own variable: it was looked up in the cell's namespace only)."""
    cell = (
        "def f(t):\n    u = t * 2\n    print(u.grad)\n    return u\n"
        "x = torch.tensor(3.0, requires_grad=True)\ny = f(x) ** 2\ny.backward()"
    )
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        result = grad(cell, namespace={"torch": torch})
    assert any(".grad attribute of a Tensor that is not a leaf" in str(w.message) for w in said)
    assert any(n.startswith("the cell read u.grad: None, since u is not a leaf") for n in result.note_texts)
