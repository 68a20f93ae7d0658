"""Nothing a user types can hurt the kernel or their data.

A catalogue of bad inputs with the exact message a user sees (more are in
test_errors.BAD), fuzzing of the magic line, global state after failures and
KeyboardInterrupt, and the user's data.
"""

from __future__ import annotations

import contextlib
import traceback
import warnings

import matplotlib
import pytest
import torch
from conftest import Failure, global_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from torchgrad_magic import GradError, grad
from torchgrad_magic.capture.spec import parse_wrt, split_line

EXACT = [
    ("--wrt x=__import__('os')", "y = x",
     "--wrt x=__import__('os'): x is module, not a number, list or tensor; "
     "e.g. --wrt x=3 or --wrt x=torch.linspace(-20, 20, 20)"),
    ("--wrt x={'a': 1}", "y = x",
     "--wrt x={'a': 1}: x is dict, not a number, list or tensor; e.g. --wrt x=3 or --wrt x=torch.linspace(-20, 20, 20)"),
    ("--wrt x=3 --order 0", "y = x", "--order 0: use a whole number from 1 to 10"),
    ("--wrt x=3 --order 11", "y = x", "--order 11: use a whole number from 1 to 10"),
    ("--wrt x=3 --order two", "y = x", "argument --order: 'two' is not a valid int"),
    ("--wrt x=3 --expect", "y = x", "argument --expect: expected a value after it"),
    # the magic's parser checks choices; grad(lang=..., graph=...) checks the keyword itself
    ("--wrt x=3 --lang fr", "y = x",
     {"magic": "argument --lang: invalid choice: 'fr' (choose from 'en', 'zh')",
      "function": (ValueError, "language must be one of auto, en, zh; got 'fr'")}),
    ("--wrt x=3 --graph wide", "y = x",
     "--graph wide: use --graph (names, values, grads), --graph full (also what each node saved) "
     "or --graph N (a model's modules unfolded N levels deep, 0 to 20)"),
    ("--wrt x=3 --device cuda:0" if not torch.cuda.is_available() else "--wrt x=3 --device nowhere", "y = x",
     "--device cuda:0: CUDA is not available on this machine; use --device cpu" if not torch.cuda.is_available()
     else "--device nowhere: not a device name (try cpu or cuda)"),
    ("--wrt x=3 --of class", "y = x", "--of class: 'class' is a Python keyword, not a variable name"),
    ("--wrt x=3 --save out.txt", "y = x", "--save out.txt: the file name must end in .png or .svg"),
    ("--wrt x=3 --range 2", "y = x", "--range 2: write it as low:high with low < high, e.g. --range -2:5"),
    ("--wrt x=3 --range nan:1", "y = x", "--range nan:1: write it as low:high with low < high, e.g. --range -2:5"),
    ("--wrt x=3 --expect nothere", "y = x * 2",
     "--expect x=nothere (NameError: name 'nothere' is not defined): write --expect 38 (one input) or "
     "--expect u=43 v=20"),
    ("--wrt x=3 --expect 5", "y = x * 2", "not as expected: dy/dx: expected 5, got 2"),
    ("--wrt x=3 x", "y = x", "--wrt: 'x' is given twice; give each variable once"),
    ("--wrt x=3 y=[1, 2", "y = x", "unbalanced brackets: 1 bracket(s) never closed in: y=[1, 2"),
    ("--wrt 'x=3", "y = x", "unclosed quote (') in: 'x=3"),
    ("--wrt None=3", "y = x", "--wrt None=3: 'None' is a Python keyword, not a variable name"),
    ("--wrt x.y=3", "y = x", "--wrt x.y=3: 'x.y' is not a valid variable name (use letters, digits and _, not starting with a digit)"),
]  # fmt: skip


# cells that run but have nothing usable to differentiate: the exact note, never an error
EXACT_NOTES = [
    ("--wrt x=[1.0, 2.0] --hessian", "y = (x * x).sum()",
     "--hessian needs scalar inputs; x not a scalar (use torch.func.hessian for tensors)"),
    ("--wrt x=3", "y = {'a': x * 2}",
     "y is of type dict, not a tensor; assign the tensor to differentiate (y = ...) or name it with --of"),
    ("--wrt x=3", "y = x * 2\ny = y.item()",
     "y is of type float, not a tensor (.item() and float() give a plain number, which has no graph); "
     "assign the tensor to differentiate (y = ...) or name it with --of"),
    ("--wrt x=3", "pass",
     "the cell made no tensor output from x: assign one (y = 3 * x ** 2) or end with an expression, "
     "or name it with --of"),
    ("--wrt x=3", "y = 3\ndel x",
     "y is of type int, not a tensor (.item() and float() give a plain number, which has no graph); "
     "assign the tensor to differentiate (y = ...) or name it with --of"),
]  # fmt: skip


@pytest.mark.parametrize(("line", "cell", "message"), EXACT_NOTES, ids=[e[1][:20] for e in EXACT_NOTES])
def test_exact_note(run, line, cell, message):
    result = run(line, cell)
    assert message in result.note_texts
    assert run("--wrt x=3", "y = 3 * x ** 2").grads["x"].item() == 18


@pytest.mark.parametrize(("line", "cell", "message"), EXACT, ids=[e[0] for e in EXACT])
def test_exact_message(run, tmp_path, monkeypatch, line, cell, message):
    monkeypatch.chdir(tmp_path)
    expected = message[run.kind] if isinstance(message, dict) else message
    error, expected = expected if isinstance(expected, tuple) else (Failure, expected)
    with pytest.raises(error) as info:
        run(line, cell)
    assert str(info.value) == expected
    assert run("--wrt x=3", "y = 3 * x ** 2").grads["x"].item() == 18


def test_catalogue_has_at_least_sixty_bad_inputs():
    from test_errors import BAD, NOTHING

    assert len({(line, cell) for line, cell, _ in [*BAD, *NOTHING, *EXACT, *EXACT_NOTES]}) >= 60


@pytest.mark.filterwarnings("ignore:To exit:UserWarning")  # IPython's own advice after sys.exit()
def test_user_code_that_exits_or_returns(shell):
    for cell, error in (
        ("return 5", SyntaxError),
        ("import sys\nsys.exit(3)", SystemExit),
        ("raise SystemExit", SystemExit),
    ):
        outcome = shell.run_cell(f"%%grad --wrt x=3\n{cell}")
        # the same error as without %%grad (a SyntaxError by name: IPython would show a raised one
        # with the magic's frames, so it is raised as an error of that name, shown as a plain cell's)
        assert type(outcome.error_in_exec).__name__ == error.__name__, cell
    assert shell.run_cell("%%grad --wrt x=3\ny = 3 * x ** 2").success


def test_huge_tensor_value_is_refused_cleanly(run):
    with pytest.raises(
        Failure, match=r"--wrt x=torch.empty\(10\*\*14\): computing the value raised RuntimeError"
    ):
        run("--wrt x=torch.empty(10**14)", "y = x")


@pytest.mark.parametrize("value", ["float('nan')", "float('inf')", "[1.0, float('nan')]"])
def test_non_finite_inputs_work_with_a_note(run, value):
    result = run(f"--wrt x={value}", "y = (x * 2).sum()")
    assert any("x holds nan or inf values" in n for n in result.note_texts)
    assert torch.equal(result.grads["x"], torch.full_like(result.leaves["x"], 2.0))


def test_complex_inputs(run):
    result = run("--wrt z=1+2j", "y = (z * z.conj()).real")
    assert result.leaves["z"].is_complex() and result.grads["z"].item() == pytest.approx(2 + 4j)


def test_zero_d_and_n_d_mixed(run):
    result = run("--wrt a=2 b=[1.0, 2.0, 3.0]", "y = (a * b).sum()")
    assert result.grads["a"].item() == 6 and result.grads["b"].tolist() == [2, 2, 2]


def test_meta_device_does_not_crash(run):
    result = run("--wrt x=3 --device meta", "y = x * 2")
    assert result.grads["x"].device.type == "meta"
    assert "<meta tensor>" in str(result)


# ---------------------------------------------------------------------------
# fuzzing
# ---------------------------------------------------------------------------
TOKENS = st.sampled_from(
    [
        "--wrt", "--of", "--retain-grad", "--dtype", "float64", "int8", "--device", "cpu", "--out", "r",
        "--order", "2", "0", "--hessian", "--jacobian", "--check", "--symbolic", "--expect", "--graph", "full",
        "--times-input", "--lang", "zh", "en", "-q", "--plot", "--no-plot", "--range", "-1:1", "x", "y", "u",
        "x=3", "x=", "=3", "3=x", "u=1 v=2", "x=[1,", "2]", "x=(", ")", "x='a", "b'", "x=torch.ones(2)",
        "x=torch.linspace(-1, 1, 5)", "x=1/0", "x=None", "x=True", "x=1+2j", "x=float('nan')", "for=1",
        "x=torch.arange(3)", "x=__import__('math').pi", "x=undefined_name", ",", ";", "{", "}", "\\", "\"", "'",
        "x=1,", "x==1", "λ=1", "x=[[1],[2,3]]", "--bogus", "-z", "x=-1", "--wrt=x=2",
    ]
)  # fmt: skip
CELLS = st.sampled_from(
    ["y = x * 2", "y = 3 * x ** 2", "", "# c", "y = (x ** 2).sum()", "1/0", "y = torch.sin(x)"]
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(TOKENS, max_size=8).map(" ".join) | st.text(max_size=60))
def test_parser_fuzz_only_raises_grad_error(line):
    with contextlib.suppress(GradError):
        parse_wrt(split_line(line))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(line=st.lists(TOKENS, max_size=7).map(" ".join), cell=CELLS)
def test_magic_fuzz_only_usage_errors(shell, tmp_path, monkeypatch, line, cell):
    monkeypatch.chdir(tmp_path)
    shell.user_ns.setdefault("x", 1.0)
    before = global_state()
    outcome = shell.run_cell(f"%%grad {line}\n{cell}")
    error = outcome.error_in_exec or outcome.error_before_exec
    if error is not None and not isinstance(
        error, UsageError
    ):  # else only the cell's own error, from its code
        frames = traceback.extract_tb(error.__traceback__)
        assert any("ipython-input" in f.filename for f in frames), (line, cell, repr(error))
    assert global_state() == before


@settings(max_examples=300, deadline=None)
@given(wrt=st.lists(TOKENS, max_size=5).map(" ".join), cell=CELLS)
def test_function_fuzz_only_grad_errors_or_the_users_own(wrt, cell):
    before = global_state()
    try:
        grad(cell, wrt=wrt, namespace={"x": 1.0})
    except GradError:
        pass
    except Exception as e:  # only the cell's own code may raise something else
        frames = traceback.extract_tb(e.__traceback__)
        assert any(f.filename.startswith("<grad-cell") for f in frames), (wrt, cell, repr(e))
    assert global_state() == before


# ---------------------------------------------------------------------------
# global state after failures and interrupts
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "cell"),
    [
        ("--wrt x=3 --plot", "raise KeyboardInterrupt"),
        ("--wrt x=3 --plot --lang zh --dtype float64", "import matplotlib\nmatplotlib.rcParams['lines.linewidth'] = 9\nraise ValueError"),
        ("--wrt x=3 --save /nonexistent/dir/fig.png", "y = 3 * x ** 2"),
        ("--wrt x=3 --check --symbolic --order 2 --graph full", "torch.set_grad_enabled(False)\ny = x"),
        ("--wrt x=3 --plot", "import warnings\nwarnings.simplefilter('error')\ntorch.set_anomaly_enabled(True)\n1/0"),
    ],
)  # fmt: skip
def test_state_after_failures(shell, line, cell):
    """What a plain run of the cell leaves (the cell's own changes stay), nothing more."""
    import matplotlib.pyplot as plt

    figures = plt.get_fignums()
    before = global_state()

    def after(code: str):
        try:
            with warnings.catch_warnings():
                shell.user_ns.update(torch=torch, x=torch.tensor(3.0, requires_grad=True))  # as --wrt x=3
                shell.run_cell(code)
                return global_state()
        finally:
            torch.set_grad_enabled(before.grad_enabled)
            torch.set_anomaly_enabled(before.anomaly_enabled)
            torch.set_default_dtype(before.default_dtype)
            matplotlib.rcParams.update(before.rc_params)

    plain = after(cell)
    ours = after(f"%%grad {line}\n{cell}")
    assert ours == plain and plt.get_fignums() == figures
    assert shell.run_cell("%%grad --wrt x=3 --plot\ny = 3 * x ** 2").success


def test_keyboard_interrupt_in_the_function_restoresglobal_state():
    before = global_state()
    with pytest.raises(KeyboardInterrupt):
        grad("raise KeyboardInterrupt", wrt="x=3", dtype="float64", plot=True)
    assert global_state() == before


# ---------------------------------------------------------------------------
# the user's data
# ---------------------------------------------------------------------------
def test_names_the_cell_does_not_assign_are_untouched(shell):
    k, w = torch.tensor([5.0]), torch.tensor(2.0, requires_grad=True)
    shell.user_ns.update(k=k, w=w)
    shell.run_cell("%%grad --wrt x=3 --check --plot --graph\ny = x * k * w")
    assert shell.user_ns["k"] is k and shell.user_ns["w"] is w
    assert k.tolist() == [5.0] and w.grad is None


def test_same_cell_twice_same_grads(run):
    cell = "y = torch.sin(x) * x ** 2"
    first = run("--wrt x=torch.linspace(-1, 1, 7) --check", cell)
    second = run("--wrt x=torch.linspace(-1, 1, 7) --check", cell)
    assert torch.equal(first.grads["x"], second.grads["x"])


def test_bare_wrt_never_modifies_the_users_tensor(run):
    original = torch.tensor([1.0, 2.0], requires_grad=True)
    original.grad = torch.tensor([9.0, 9.0])
    run.ns["x"] = original
    result = run("--wrt x --order 2 --check --plot", "y = (x ** 3).sum()")
    assert run.ns["x"] is original and original.grad.tolist() == [9.0, 9.0]
    assert result.grads["x"].tolist() == [3.0, 12.0]
