"""Bad input: a short message naming the problem and the fix, then everything still works."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from conftest import Failure, global_state

BAD = [
    # (line, cell, words the message must contain)
    ("--wrt x=", "y = x", ["--wrt x=", "empty", "--wrt x=3"]),
    ("--wrt 3=x", "y = x", ["'3' is not a valid variable name", "did you mean --wrt x=3"]),
    ("--wrt x=nosuchthing", "y = x", ["name 'nosuchthing' is not defined"]),
    ("--wrt =3", "y = 3", ["name before '=' is missing"]),
    ("--wrt for=3", "y = 3", ["'for' is a Python keyword"]),
    ("--wrt x=1 x=2", "y = x", ["'x' is given twice"]),
    ("--wrt x=3, y=4", "z = x", ["spaces, not commas"]),
    ("--wrt x=torch.linspace(-20, 20", "y = x", ["unbalanced brackets"]),
    ("--wrt x=(1+", "y = x", ["unbalanced brackets"]),
    ("--wrt x=1)", "y = x", ["unbalanced brackets"]),
    ("--wrt x=1+*2", "y = x", ["not a valid Python expression"]),
    ("--wrt x=1/0", "y = x", ["ZeroDivisionError"]),
    ("--wrt x='abc'", "y = x", ["x is str, not a number, list or tensor"]),
    ("--wrt x=None", "y = x", ["NoneType"]),
    ("--wrt x=True", "y = x", ["boolean"]),
    ("--wrt x=torch.tensor([True, False])", "y = x", ["integer or boolean tensor", "bool"]),
    ("--wrt x=torch.arange(3)", "y = x * 2", ["integer or boolean tensor", "int64", "floating-point"]),
    ("--wrt x=[[1, 2], [3]]", "y = x", ["can't make a tensor"]),
    ("--wrt nothere", "y = 1", ["no variable 'nothere' yet", "--wrt nothere=3"]),
    ("--wrt torch=3", "y = 1", ["would hide the torch module"]),
    ("--wrt x=3 --of 2y", "y = x * 2", ["'2y' is not a valid variable name"]),
    (
        "--wrt x=3 --dtype int8",
        "y = x",
        {
            "magic": ["argument --dtype: invalid choice: 'int8'"],
            "function": ["--dtype int8", "float32, float64"],
        },
    ),
    ("--wrt x=3 --device nowhere", "y = x", ["--device nowhere", "not a device name"]),
    ("--wrt x=3 --bogus", "y = x", ["unrecognized arguments: --bogus"]),
    ("--wrt", "y = 1", ["argument --wrt: expected a value"]),
]

LEAF = "x = torch.tensor(3.0, requires_grad=True)\n"

# A cell that runs but has nothing (or nothing usable) to differentiate is not an error:
# it runs as it would without %%grad, and a note says why there are no grads.
NOTHING = [
    ("--wrt x=3", "print('hi')", ["made no tensor output from x", "y = 3 * x ** 2"]),
    ("--wrt x=3", "y = torch.tensor(5.0) * 2", ["y does not depend on x", "torch.tensor"]),
    ("--wrt x=3", "y = x.detach() * 2", ["y comes from x.detach()", "no path back to x"]),
    (
        "--wrt x=3",
        "with torch.no_grad():\n    y = x * 2",
        ["inside a torch.no_grad() block", "y has no path back to x"],
    ),
    ("--wrt x=3", "y = (3 * x ** 2).item()", ["y is of type float, not a tensor", ".item()"]),
    ("--wrt x=3", "[3 * x, x]", ["last value is of type list"]),
    ("--wrt x=3 --of nope", "y = x * 2", ["--of nope", "no variable 'nope'"]),
    ("--wrt x=3 --of k", "k = 4\ny = x * 2", ["--of k", "k is int, not a tensor"]),
    ("--wrt x=3 --of c", "c = torch.ones(2)\ny = x * 2", ["c does not depend on x"]),
    ("", "y = torch.tensor(3.0) * 2", ["does not depend on any leaf tensor", "requires_grad=True"]),
    ("", "x = torch.tensor(3.0, requires_grad=True)", ["x is a leaf and the cell computed nothing from it"]),
    # the cell's own leaf, cut off from the output: the note names it and the likely cut
    (
        "",
        f"{LEAF}with torch.no_grad():\n    y = 3 * x ** 2",
        ["inside a torch.no_grad() block", "y has no path back to x"],
    ),
    ("", f"{LEAF}z = x.detach()\ny = 3 * z ** 2", ["y comes from x.detach()", "y has no path back to x"]),
    ("", f"{LEAF}y = x.item() ** 2", ["y is a Python number (9)", "back to x", ".item()", "y = x ** 2"]),
    ("", f"{LEAF}v = x.item()\ny = v ** 2", ["y is a Python number (9)", "back to x"]),
    ("", f"{LEAF}lr = 0.01\nepochs = 10", ["x is a leaf and the cell computed nothing from it"]),  # (set, not
    # computed from x: no 'Python number' note)
    (
        "--of Y",
        f"{LEAF}Y = x * 2\ny = torch.sum(Y)\ny.backward()",  # (the graph this cell's call freed)
        ["no grads for Y", "the cell's own backward() freed the graph", "retain_graph=True"],
    ),
    ("--wrt x=3", "y = x * 1j", ["y is complex", ".abs()"]),
    ("--wrt x=3", "# only a comment\n", ["the cell has no code", "it ran"]),
    (
        "",
        "p = (torch.randn(4, 5, requires_grad=True) * 1.0).softmax(1)[0, 0]",
        ["no name here", "W = torch.randn"],
    ),
    ("", "# now the action:\n\n# (nothing yet)", ["the cell has no code", "it ran"]),
]


@pytest.mark.parametrize(("line", "cell", "words"), NOTHING, ids=[f"{b[0]}|{b[1][:20]}" for b in NOTHING])
def test_nothing_to_differentiate_is_a_note(run, line, cell, words):
    result = run(line, cell)
    message = " ".join(str(n) for n in result.note_texts)
    for word in words:
        assert word in message, message
    assert all(g is None for g in result.grads.values())
    assert run("--wrt x=3", "y = 3 * x ** 2").grads["x"].item() == 18


def test_an_empty_cell(run):
    """An empty body is IPython's own refusal for any cell magic; grad("") runs nothing, with a note."""
    if run.kind == "magic":
        with pytest.raises(Failure, match="cell body is empty"):
            run("--wrt x=3", "")
    else:
        assert run("--wrt x=3", "").note_texts == [run("", "\n").note_texts[0]]
        assert "the cell has no code" in run("", "").note_texts[0]
    assert run("--wrt x=3", "y = 3 * x ** 2").grads["x"].item() == 18


@pytest.mark.parametrize(("line", "cell", "words"), BAD, ids=[f"{b[0]}|{b[1][:20]}" for b in BAD])
def test_bad_input_message(run, line, cell, words):
    with pytest.raises(Failure) as info:
        run(line, cell)
    message = str(info.value)
    for word in words[run.kind] if isinstance(words, dict) else words:
        assert word in message, message
    assert "Traceback" not in message
    # nothing is broken afterwards
    assert run("--wrt x=3", "y = 3 * x ** 2").grads["x"].item() == 18


@pytest.mark.parametrize(
    ("line", "cell"),
    [
        ("--wrt x=3 --dtype float64", "torch.set_grad_enabled(True)\nraise ValueError('boom')"),
        ("--wrt x=3 --dtype float64", "torch.set_default_dtype(torch.float16)\ny = x * 2"),
        (
            "--wrt x=3",
            "torch.autograd.set_detect_anomaly(True)\nimport warnings\nwarnings.simplefilter('error')\ny = x",
        ),
        ("--wrt x=3", "raise KeyboardInterrupt"),
        ("--wrt x=", "y = x"),
    ],
)
def test_global_state_is_what_a_plain_run_leaves(shell, line, cell):
    """Nothing %%grad changes stays changed; what the cell itself changes stays, as without %%grad."""

    def after(code: str):
        torch.set_grad_enabled(False)
        try:
            with warnings.catch_warnings():
                shell.user_ns.update(torch=torch, x=torch.tensor(3.0, requires_grad=True))
                shell.run_cell(code)
                return global_state()
        finally:
            torch.set_grad_enabled(True)
            torch.autograd.set_detect_anomaly(False)
            torch.set_default_dtype(torch.float32)

    plain = after(cell)
    assert after(f"%%grad {line}\n{cell}") == plain
    assert shell.run_cell("1 + 1").result == 2


def test_users_own_exception_keeps_its_traceback(shell, capsys):
    outcome = shell.run_cell("%%grad --wrt x=3\ny = 3 * x ** 2\nraise ValueError('my own mistake')")
    out = capsys.readouterr()
    shown = re.sub(r"\x1b\[[0-9;]*m", "", out.out + out.err)
    assert "ValueError" in shown and "my own mistake" in shown
    assert "raise ValueError('my own mistake')" in shown  # the user's line, in the user's traceback
    assert "torchgrad_magic" not in shown  # no internal frames
    assert shown.count("ValueError: my own mistake") == 1  # shown once, as a plain cell shows it
    assert isinstance(outcome.error_in_exec, ValueError)  # the cell's own error, as without %%grad
    assert shell.run_cell("%%grad --wrt x=3\ny = 3 * x ** 2").success


def test_users_exception_propagates_from_the_function():
    from torchgrad_magic import grad

    with pytest.raises(ValueError, match="my own mistake"):
        grad("raise ValueError('my own mistake')", wrt="x=3")


def test_syntax_error_in_the_cell(shell, capsys):
    outcome = shell.run_cell("%%grad --wrt x=3\ny = = 3")
    assert "SyntaxError" in capsys.readouterr().out
    # named SyntaxError (a kernel's reply says so), shown as a plain cell's: the line and a caret, no frames
    assert type(outcome.error_in_exec).__name__ == "SyntaxError"
    assert shell.run_cell("%%grad --wrt x=3\ny = x * 2").success


def test_user_tensor_is_unchanged_after_a_failure(shell):
    x = torch.tensor([1.0, 2.0])
    shell.user_ns["x"] = x
    shell.run_cell("%%grad --wrt x\nraise RuntimeError('fail')")
    assert shell.user_ns["x"] is x and not x.requires_grad and x.grad is None
    torch.testing.assert_close(x, torch.tensor([1.0, 2.0]))


def test_a_failing_cell_is_named_by_its_own_number(shell):
    """IPython counts the next cell while one runs: the cell's code must still be In[n]."""
    import traceback

    def cell_numbers(outcome) -> list[str]:
        frames = traceback.extract_tb(outcome.error_in_exec.__traceback__)
        return [f.filename.split("-")[2] for f in frames if f.filename.startswith("<ipython-input-")]

    plain = shell.run_cell("x = 1\nraise ValueError('boom')", store_history=True)
    assert cell_numbers(plain) == [str(plain.execution_count)]
    ours = shell.run_cell("%%grad\nx = 1\nraise ValueError('boom')", store_history=True)
    assert cell_numbers(ours)[-1] == str(ours.execution_count)
    after = shell.run_cell("%%grad --wrt x=3\ny = 3 * x ** 2\ny", store_history=True)
    assert after.execution_count == ours.execution_count + 1 and after.result.item() == 27
