"""Numbers a teacher can trust: the cell runs once, grads are caught when backward runs,
extras read the record, --check never cries wolf. Both entry points (``run``), oracles
from torch.autograd / torch.func, and the user's state compared with a plain run."""

from __future__ import annotations

import json
import linecache
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import Failure
from hypothesis import given, settings
from hypothesis import strategies as st

from torchgrad_magic import grad


def test_torch_func_inside_a_cell_is_not_mistaken_for_the_cells_backward(run):
    result = run("--wrt x=3", "g = torch.func.grad(lambda t: t ** 3)(x)\ny = 3 * x ** 2")
    assert result.grads["x"].item() == 18 and result.backward_calls == 0


# ---------------------------------------------------------------------------
# one run, cheap when nothing extra is asked
# ---------------------------------------------------------------------------
def test_the_cell_runs_once_with_every_extra(run):
    run.ns["calls"] = []
    cell = "calls.append(1)\ny = torch.sin(x) * x ** 2"
    result = run("--wrt x=1.5 --check --plot --symbolic --order 3 --hessian --jacobian", cell)
    assert run.ns["calls"] == [1]
    x = torch.tensor(1.5, requires_grad=True)
    oracle = torch.func.grad(lambda t: torch.sin(t) * t**2)(x.detach())
    torch.testing.assert_close(result.grads["x"], oracle)
    second = torch.func.grad(torch.func.grad(lambda t: torch.sin(t) * t**2))(x.detach())
    torch.testing.assert_close(result.orders["x"][1], second)
    torch.testing.assert_close(result.hessian, second.reshape(1, 1))
    assert result.checks[0].ok and result.symbolic and len(result.curves) == 3


def test_no_torch_function_mode_without_extras(run):
    probe = "modes = torch._C._len_torch_function_stack()\ny = 3 * x ** 2"
    run("--wrt x=3", probe)
    assert run.ns["modes"] == 0  # default cells pay for no per-op observer
    run("--wrt x=3 --check", probe)
    assert run.ns["modes"] == 1  # the recorder, only when an extra needs it


def test_extras_leave_the_random_generator_and_linecache_as_a_plain_run(run):
    cell = "noise = torch.rand(3)\ny = (x * noise).sum() + torch.nn.functional.dropout(x, 0.5).sum()"
    run("--wrt x=[1.0, 2.0, 3.0] --check --plot --jacobian", cell)  # first imports (matplotlib) are not leaks
    torch.manual_seed(1)
    plain = {"x": torch.tensor([1.0, 2.0, 3.0], requires_grad=True)}
    exec(cell, {"torch": torch}, plain)
    expected_state, expected_noise = torch.get_rng_state(), plain["noise"]
    entries = len(linecache.cache)
    torch.manual_seed(1)
    result = run("--wrt x=[1.0, 2.0, 3.0] --check --plot --jacobian", cell)
    assert torch.equal(torch.get_rng_state(), expected_state)
    assert torch.equal(run.ns["noise"], expected_noise)
    assert result.checks[0].ok  # the dropout mask replays as it was drawn
    if run.kind == "function":  # (IPython keeps each cell's source in linecache, as it does without %%grad)
        assert len(linecache.cache) <= entries + 1


def test_a_function_from_an_earlier_cell_reads_the_recorded_input(run):
    run("", "def f(t):\n    return 3 * t ** 2\nx = torch.tensor(10.0)")
    result = run("--wrt x=3 --check --plot", "y = f(x)")
    assert result.grads["x"].item() == 18 and result.checks[0].ok
    lines = {c.label: c for c in result.curves}
    at = (lines["dy/dx"].x - 3).abs().argmin()
    assert lines["dy/dx"].y[at].item() == pytest.approx(18, rel=1e-6)
    assert run.ns["x"].item() == 3 and run.ns["x"].grad.item() == 18  # --wrt x=3 made x: ours, with its grad


def test_optimizer_step_and_appends_happen_once_with_check(run):
    setup = (
        "torch.manual_seed(0)\nmodel = torch.nn.Linear(2, 1)\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "data = torch.tensor([[1.0, 2.0]])\nlosses = []"
    )
    cell = "opt.zero_grad()\nloss = (model(data) ** 2).sum()\nloss.backward()\nopt.step()\nlosses.append(loss.item())"
    plain: dict = {"torch": torch}
    exec(setup, plain)
    oracle = torch.autograd.grad((plain["model"](plain["data"]) ** 2).sum(), plain["model"].weight)[0]
    exec(cell, plain)
    run("", setup)
    result = run("--check", cell)
    assert len(run.ns["losses"]) == 1
    torch.testing.assert_close(run.ns["model"].weight, plain["model"].weight, rtol=0, atol=0)
    torch.testing.assert_close(result.grads["model.weight"], oracle)
    assert all(row.ok for row in result.checks)


# ---------------------------------------------------------------------------
# --check never cries wolf
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [10**5, 10**6, 10**7])
def test_check_passes_correct_grads_of_big_inputs(size):
    result = grad("y = x ** 2", wrt=f"x=torch.linspace(-1, 1, {size})", check=True)
    (row,) = result.checks
    assert row.ok, (row.max_error, row.tolerance)


def test_check_still_catches_a_wrong_grad():
    cell = (
        "class Wrong(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, t):\n        return t ** 2\n"
        "    @staticmethod\n    def backward(ctx, g):\n        return g * 3.0\n"
        "y = Wrong.apply(x).sum()\ny.backward()"  # %%grad never runs a user's backward code itself
    )
    for wrt in ("x=torch.linspace(-1, 1, 10)", "x=torch.linspace(-1, 1, 10**5)"):
        result = grad(cell, wrt=wrt, check=True)
        assert result.grads["x"].unique().tolist() == [
            3.0
        ]  # autograd's (wrong) grad, as the cell computed it
        assert not result.checks[0].ok, wrt
        assert any("custom autograd.Function" in n for n in result.note_texts)


def test_check_is_honest_for_complex_inputs():
    result = grad("y = (z * z.conj()).real.sum()", wrt="z=torch.tensor([1+2j, 3-1j])", check=True)
    torch.testing.assert_close(result.grads["z"], 2 * torch.tensor([1 + 2j, 3 - 1j]))
    (row,) = result.checks
    # real and imaginary directions of each element checked, shown as the complex grads the table has
    assert row.ok and row.autograd.shape == (2,) and row.autograd.is_complex()
    torch.testing.assert_close(row.numeric, row.autograd, atol=1e-6, rtol=1e-6)


FUNCTIONS = st.sampled_from(
    [
        "torch.sin(x)",
        "torch.exp(x / 4)",
        "x ** 3",
        "torch.tanh(x) * x",
        "torch.log1p(x ** 2)",
        "1 / (1 + x ** 2)",
    ]
)


@settings(max_examples=25, deadline=None)
@given(
    body=FUNCTIONS,
    size=st.sampled_from([1, 7, 64, 65, 1000, 20_000]),
    scale=st.sampled_from([0.1, 1.0, 30.0]),
)
def test_check_property_no_fail_for_correct_grads(body, size, scale):
    wrt = f"x=torch.linspace(-{scale}, {scale}, {size})" if size > 1 else f"x={scale}"
    result = grad(f"y = ({body}).sum()", wrt=wrt, check=True)
    assert result.checks[0].ok, (body, size, scale, result.checks[0])


# ---------------------------------------------------------------------------
# honest fall-backs
# ---------------------------------------------------------------------------
def test_in_place_change_through_a_view_is_said_not_guessed(run):
    result = run("--wrt x=torch.ones(3) --check", "y = x * 2\nv = y[:2]\nv.mul_(3)\nout = y.sum()")
    assert result.grads["x"].tolist() == [6.0, 6.0, 2.0]
    assert not result.checks
    assert any("through a view" in n for n in result.note_texts)


def test_values_taken_out_to_python_are_named(run):
    result = run("--wrt x=3 --plot", "if x > 0:\n    y = x ** 2\nelse:\n    y = -x")
    assert result.grads["x"].item() == 6
    assert {c.label for c in result.curves} == {"tangent"}
    assert any("Python values" in n for n in result.note_texts)


# ---------------------------------------------------------------------------
# smaller items
# ---------------------------------------------------------------------------
def test_micro_sign_is_the_name_python_reads(run):
    result = run("--wrt µ=3", "y = µ ** 2")
    assert result.grads["μ"].item() == 6


def test_out_may_not_replace_a_module(shell):
    shell.run_cell("import torch")
    outcome = shell.run_cell("%%grad --wrt x=3 --out torch\ny = x * 2")
    assert "--out torch: torch is a module" in str(outcome.error_in_exec)
    assert shell.user_ns["torch"] is torch


def test_save_expands_the_home_directory(shell, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert shell.run_cell("%%grad --wrt x=3 --save ~/f.png -q\ny = x ** 2").success
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_chinese_errors_have_a_chinese_prefix(shell):
    outcome = shell.run_cell("%%grad --wrt x=3 --lang zh --bogus\ny = x")
    assert str(outcome.error_in_exec).startswith("%%grad：")


@pytest.mark.parametrize("device", ["mps", "xpu"])
def test_devices_this_machine_lacks_get_a_message(run, device):
    if getattr(getattr(torch, device, None), "is_available", lambda: False)():
        pytest.skip(f"this machine has {device}")  # a real device: nothing to refuse
    with pytest.raises(Failure, match=f"this machine has no {device} device"):
        run(f"--wrt x=3 --device {device}", "y = x * 2")


def test_interrupt_during_an_extra_is_a_short_message(shell, monkeypatch):
    from torchgrad_magic.derive import calculus

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(calculus, "check", interrupted)
    outcome = shell.run_cell("%%grad --wrt x=3 --check\ny = x * 2")
    assert "interrupted" in str(outcome.error_in_exec) and "y" in shell.user_ns
    assert shell.run_cell("%%grad --wrt x=3\ny = 3 * x ** 2").success


# ---------------------------------------------------------------------------
# leaks, for every flag (the benchmark's own script, at a small size)
# ---------------------------------------------------------------------------
def test_no_per_run_leaks_for_any_flag():
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import run as bench

    out = subprocess.run(
        [sys.executable, "-c", bench.LEAKS, "3", "8", json.dumps(bench.LEAK_CASES)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(rows) == len(bench.LEAK_CASES)
    for row in rows:
        assert "error" not in row, row
        assert row["objects"] <= 5 and row["tensors"] <= 0 and row["linecache"] <= 0, row


# ---------------------------------------------------------------------------
# found by a red-team run in a real kernel
# ---------------------------------------------------------------------------
def test_extras_on_complex_inputs_are_notes_not_crashes(run):
    cell = "zc = torch.tensor(1+2j, requires_grad=True)\nout = (zc ** 2).abs()\nout"
    result = run("--order 2 --symbolic --check --plot", cell)
    assert result.grads["zc"] is not None and not result.orders and not result.symbolic
    assert any("work on real inputs" in n for n in result.note_texts)


def test_a_hook_that_changes_grads_is_checked_not_hidden(run):
    cell = (
        "x = torch.tensor(0.7, requires_grad=True)\nh = x * 2\nh.register_hook(lambda g: g * 10)\n"
        "y = h ** 2\ny.backward()"
    )
    result = run("--check", cell)
    (row,) = result.checks
    assert result.grads["x"].item() == pytest.approx(56) and row.autograd.item() == pytest.approx(56)
    assert not row.ok and row.numeric.item() == pytest.approx(5.6)
    assert any("hook that changes grads" in n for n in result.note_texts)


def test_a_cut_in_the_graph_explains_a_check_failure(run):
    result = run(
        "--check", "s = torch.tensor(2.0, requires_grad=True)\nc = (s * 3).detach() * s\nc.backward()"
    )
    assert result.grads["s"].item() == 6 and not result.checks[0].ok
    assert any("passes through .detach()/.data or torch.no_grad()" in n for n in result.note_texts)


def test_graph_shows_leaves_as_they_were_at_the_call(run):
    run("", "w = torch.tensor(5.0, requires_grad=True)")
    cell = "loss = (w - 3) ** 2\nloss.backward()\nwith torch.no_grad():\n    w -= 0.1 * w.grad\nw.grad = None"
    result = run("--graph", cell)
    (leaf,) = [n for n in result.graph.nodes if n.kind == "leaf"]
    assert leaf.data == "5" and leaf.grad == "4"


def test_of_an_intermediate_after_the_cells_backward_claims_no_grads(run):
    cell = "a = torch.tensor(2.0, requires_grad=True)\nz = a * 3\ny = z ** 2\ny.backward()"
    result = run("--of z", cell)
    assert result.grads == {} and result.headline == "z = 6"
    assert any(
        "no grads for z: the cell's own backward() freed the graph behind z" in n for n in result.note_texts
    )
    assert not any("does not depend" in n for n in result.note_texts)


def test_symbolic_keeps_sympys_own_warning_filter():
    code = (
        "import warnings\nfrom torchgrad_magic import grad\n"
        "grad('y = x ** 2', wrt='x=3', symbolic=True)\n"
        "from sympy.utilities.exceptions import SymPyDeprecationWarning\n"
        "print(any(f[2] is SymPyDeprecationWarning for f in warnings.filters))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


# ---------------------------------------------------------------------------
# what a call differentiated: weights, several outputs, second derivatives, torch's helpers
# ---------------------------------------------------------------------------
X3 = "x = torch.tensor(3.0, requires_grad=True)\n"


def test_several_outputs_at_once_are_named_as_what_was_differentiated(run):
    cell = (
        X3
        + "y1 = x ** 2\ny2 = 3 * x\ntorch.autograd.backward([y1, y2], [torch.tensor(1.0), torch.tensor(2.0)])"
    )
    result = run("--check", cell)
    # 12 = 1·(2x) + 2·3 at x = 3: the grad of y1 + 2·y2, not dy1/dx (6)
    assert result.headline == "y1 = 9, y2 = 9, d(y1 + 2·y2)/dx = 12 (at x = 3)"
    assert result.grads["x"].item() == 12 and result.differentiated == "y1 + 2·y2"
    assert [r.name for r in result.rows] == ["x", "y1", "y2"]
    texts = " ".join(result.note_texts)
    assert "several outputs at once (y1, y2): each grad is the grad of y1 + 2·y2" in texts
    assert not result.checks and "evaluate one output" in texts  # never a false FAIL


def test_a_scalar_weight_is_in_the_headline_and_the_check_says_what_it_checks(run):
    result = run("--check", X3 + "y = 3 * x ** 2\ny.backward(torch.tensor(2.0))")
    assert result.headline == "y = 27, d(2·y)/dx = 36 (at x = 3)"  # dy/dx is 18
    texts = " ".join(result.note_texts)
    assert "given the weight 2 for y, so each grad is 2 × dy/dx" in texts
    assert "look at y itself" in texts
    assert [(c.name, c.ok, c.autograd.item()) for c in result.checks] == [("x", True, 18.0)]  # dy/dx


def test_a_vector_weight_and_ones_name_the_quantity(run):
    vec = "x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)\ny = x ** 2\n"
    result = run("", vec + "v = torch.tensor([0.1, 1.0, 0.0001])\ny.backward(v)")
    assert result.headline.startswith("y = [1, 4, 9], d(v·y)/dx = [0.2, 4, 0.0006]")
    assert "each grad is v·(dy/dx)" in " ".join(result.note_texts)
    result = run("", vec + "y.backward(torch.ones_like(y))")
    assert result.headline.startswith("y = [1, 4, 9], d(sum(y))/dx = [2, 4, 6]")
    assert "given ones for y (3 elements), so each grad is the grad of y.sum()" in " ".join(result.note_texts)
    result = run("", vec + "s = y.sum()\ns.backward()")  # one number: the output itself
    assert result.differentiated is None and result.headline.startswith("s = 14, ds/dx = [2, 4, 6]")


def test_a_second_derivative_by_grad_is_said_with_its_value_and_no_false_grad_claim(run):
    cell = "x = torch.tensor(2.0, requires_grad=True)\ng, = torch.autograd.grad(x ** 3, x, create_graph=True)\nh, = torch.autograd.grad(g, x)"
    result = run("", cell)
    texts = " ".join(result.note_texts)
    assert "a second derivative (x: 12), returned by that call" in texts
    assert ".grad now also holds" not in texts
    assert result.grads["x"].item() == 12  # 3x² at 2


def test_torch_helpers_passes_are_theirs_not_the_cells(run):
    cell = "x = torch.tensor([1.0, 2.0], requires_grad=True)\nJ = torch.autograd.functional.jacobian(lambda t: t ** 2, x)"
    result = run("", cell)
    texts = " ".join(result.note_texts)
    assert result.output is None and "torch.autograd.functional.jacobian (2): torch's helper" in texts
    assert "requires_grad=True" not in texts  # x does require grad: that hint would mislead
    ns = run.ns
    torch.testing.assert_close(ns["J"], torch.diag(torch.tensor([2.0, 4.0])))
    assert ns["x"].grad is None
    cell = (
        "x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)\n"
        "ok = torch.autograd.gradcheck(lambda t: (t ** 2).sum(), (x,))\ny = (x ** 2).sum()\ny.backward()"
    )
    result = run("", cell)
    assert result.headline == "y = 5, dy/dx = [2, 4]" and result.backward_calls == 1
    assert "torch.autograd.gradcheck.gradcheck (" in " ".join(result.note_texts)


# ---------------------------------------------------------------------------
# found by a red-team run in real kernels
# ---------------------------------------------------------------------------
GD = (
    "loss = ((X @ w + b0 - yt) ** 2).mean()\nloss.backward()\n"
    "with torch.no_grad():\n    w -= 0.01 * w.grad; b0 -= 0.01 * b0.grad\n    w.grad.zero_(); b0.grad.zero_()"
)
GD_SETUP = (
    "torch.manual_seed(0); X = torch.randn(50, 2000); yt = torch.randn(50)\n"
    "w = torch.zeros(2000, requires_grad=True); b0 = torch.zeros(1, requires_grad=True)"
)


def _gd_namespace() -> dict:
    ns = {"torch": torch}
    exec(GD_SETUP, ns)
    return ns


def test_manual_descent_on_a_course_sized_weight_shows_the_grad_at_the_call():
    expected = _gd_namespace()
    exec(GD.split("\nwith")[0], expected)
    result = grad(GD, namespace=_gd_namespace())
    torch.testing.assert_close(result.grads["w"], expected["w"].grad)  # copied: zero_() after cannot touch it
    assert float(result.grads["w"].norm()) > 1 and "changed after the call" not in str(result)


def test_a_big_grad_changed_after_the_call_is_not_shown_as_numbers(monkeypatch):
    from torchgrad_magic.capture import copies

    monkeypatch.setattr(copies, "SNAPSHOT_LIMIT", 100)  # as a real model's 4096×1024 layer
    result = grad(GD, namespace=_gd_namespace())
    text = str(result)
    assert "∂loss/∂w: changed after the call" in result.headline, result.headline
    row = next(r for r in result.rows if r.name == "w")
    assert row.changed and "[0, 0, 0" not in text
    assert float(result.grads["b0"].abs().sum()) > 0  # the small one was copied: shown


def test_a_models_big_grads_changed_after_the_call_make_no_false_dead_layer_note(monkeypatch):
    from torchgrad_magic.capture import copies

    monkeypatch.setattr(copies, "SNAPSHOT_LIMIT", 100)
    ns = {"torch": torch}
    exec(
        "torch.manual_seed(0); net = torch.nn.Sequential(torch.nn.Linear(64, 64, bias=False), torch.nn.Tanh(), "
        "torch.nn.Linear(64, 1))\nopt = torch.optim.SGD(net.parameters(), lr=0.1); X = torch.randn(8, 64)",
        ns,
    )
    cell = "loss = net(X).pow(2).mean()\nopt.zero_grad()\nloss.backward()\nopt.step()\nfor p in net.parameters():\n    p.grad.zero_()"
    result = grad(cell, namespace=ns)
    texts = " ".join(result.note_texts)
    assert (
        "every grad is exactly 0" not in texts and "net.0.weight" in texts and "changed these grads" in texts
    )
    assert "changed after the call" in str(result)
    # later changes to a report kept with --out are caught when it is first read
    result = grad("loss = net(X).pow(2).mean()\nopt.zero_grad()\nloss.backward()", namespace=ns)
    ns["opt"].zero_grad(set_to_none=False)
    texts = " ".join(result.note_texts)
    assert "every grad is exactly 0" not in texts and "changed these grads" in texts


def test_batched_grad_outputs_run_as_plain():
    cell = "x = torch.tensor([1., 2., 3.], requires_grad=True)\ny = x ** 2\ng, = torch.autograd.grad(y, x, grad_outputs=torch.eye(3), is_grads_batched=True)"
    ns = {"torch": torch}
    grad(cell, namespace=ns)
    torch.testing.assert_close(ns["g"], torch.diag(torch.tensor([2.0, 4.0, 6.0])))


def test_a_backward_that_raises_and_is_caught_keeps_the_call_before():
    cell = (
        "x = torch.tensor([1., 2.], requires_grad=True)\ny = (x ** 2).sum()\ny.backward()\n"
        "try:\n    y.backward()\nexcept RuntimeError:\n    print('caught')"
    )
    result = grad(cell, namespace={"torch": torch})
    assert result.headline == "y = 5, dy/dx = [2, 4]"


def test_made_up_names_never_take_the_cells_own():
    cell = "x = torch.tensor([1., 2.], requires_grad=True)\nout = x * 3\n(x ** 2).sum().backward()"
    result = grad(cell, namespace={"torch": torch})
    # the cell's own text, never a made-up name (it was out_1, beside the cell's own out)
    assert result.output_name == "(x ** 2).sum()"
    assert result.headline.startswith("(x ** 2).sum() = 5, d((x ** 2).sum())/dx = [2, 4]")
    assert [r.name for r in result.rows] == ["x", "out", "(x ** 2).sum()"]


def test_a_pass_inside_a_pass_is_not_a_call_of_the_cell():
    cell = (
        "import torch.utils.checkpoint as cp\ntorch.manual_seed(0); lin = torch.nn.Linear(2, 2)\n"
        "inp = torch.randn(3, 2, requires_grad=True)\n"
        "out = cp.checkpoint(lambda t: torch.tanh(lin(t)), inp, use_reentrant=True).sum()\nout.backward()"
    )
    ns = {"torch": torch}
    result = grad(cell, namespace=ns)
    assert result.backward_calls == 1
    assert "2 times" not in " ".join(result.note_texts)
    # the layer inside the checkpoint got its grads from the inner pass: they are the report's too
    assert [p.name for p in result.model.params] == ["lin.weight", "lin.bias"]
    assert "lin.weight, lin.bias: their grads came from a backward pass run inside" in " ".join(
        result.note_texts
    )
    torch.testing.assert_close(result.grads["lin.weight"], ns["lin"].weight.grad)
    torch.testing.assert_close(result.grads["inp"], ns["inp"].grad)


def test_a_users_function_inside_a_helper_is_the_helpers_business():
    cell = (
        "x = torch.tensor([1., 2.], requires_grad=True)\n"
        "def g(t):\n    return torch.autograd.grad((t ** 3).sum(), t, create_graph=True)[0]\n"
        "H = torch.autograd.functional.jacobian(g, x)"
    )
    result = grad(cell, namespace={"torch": torch})
    assert result.backward_calls == 0 and "torch.autograd.functional.jacobian" in " ".join(result.note_texts)


@pytest.mark.parametrize(
    "after",
    ["w.grad.data.zero_()", "w.grad.numpy()[:] = 0", "w.grad.zero_()"],
    ids=["data", "numpy", "in place"],
)
def test_a_big_grad_changed_behind_the_version_counter_is_caught(monkeypatch, after):
    """.data and numpy leave ._version alone: a probe of a few elements catches them."""
    from torchgrad_magic.capture import copies

    monkeypatch.setattr(copies, "SNAPSHOT_LIMIT", 100)
    cell = "loss = ((X @ w + b0 - yt) ** 2).mean()\nloss.backward()\n" + after
    result = grad(cell, namespace=_gd_namespace())
    assert "∂loss/∂w: changed after the call" in result.headline, result.headline


@pytest.mark.parametrize("limit", [100, 65_536])
def test_a_probe_is_evenly_spaced_elements(monkeypatch, limit):
    """The probe a big grad is kept with: every (n // 64)-th element, 64 of them, also of a view
    that starts inside its storage (a row of a bigger tensor)."""
    from torchgrad_magic.capture import copies

    monkeypatch.setattr(copies, "SNAPSHOT_LIMIT", limit)
    for tensor in (torch.randn(limit + 1), torch.randn(3, limit + 7)[1], torch.randn(784, 256)):
        if tensor.numel() <= limit:
            continue
        flat = tensor.reshape(-1)
        expected = flat[:: max(1, flat.numel() // copies.PROBE)][: copies.PROBE]
        taken = copies.probe(tensor)
        assert taken is not None and torch.equal(taken, expected) and taken.numel() == copies.PROBE
        assert taken.data_ptr() != tensor.data_ptr()  # (a copy: the grad may change after)


def test_a_no_op_change_of_a_big_grad_still_shows_it(monkeypatch):
    """clip_grad_norm_ under its limit multiplies by 1 (the version moves, the numbers do not)."""
    from torchgrad_magic.capture import copies

    monkeypatch.setattr(copies, "SNAPSHOT_LIMIT", 100)
    ns = _gd_namespace()
    cell = "loss = ((X @ w + b0 - yt) ** 2).mean()\nloss.backward()\ntorch.nn.utils.clip_grad_norm_([w, b0], 1e6)\nw.grad.mul_(2); w.grad.div_(2)"
    expected = _gd_namespace()
    exec(cell, expected)
    result = grad(cell, namespace=ns)
    assert "changed after the call" not in str(result)
    torch.testing.assert_close(result.grads["w"], expected["w"].grad)


def test_a_big_grad_added_up_then_zeroed_is_not_shown_as_the_sum(monkeypatch):
    from torchgrad_magic.capture import copies

    monkeypatch.setattr(copies, "SNAPSHOT_LIMIT", 100)
    cell = "xb = torch.ones(200, requires_grad=True)\n(xb ** 2).sum().backward()\n(3 * xb).sum().backward()\nxb.grad.zero_()"
    result = grad(cell, namespace={"torch": torch})
    row = next(r for r in result.rows if r.name == "xb")
    assert row.changed and "[0, 0, 0" not in str(result)


def test_grad_results_are_copied_when_small():
    cell = "x = torch.tensor([1., 2., 3.], requires_grad=True)\ng, = torch.autograd.grad((x ** 2).sum(), x)\ng.zero_()"
    result = grad(cell, namespace={"torch": torch})
    assert result.headline.startswith("(x ** 2).sum() = 14, d((x ** 2).sum())/dx = [2, 4, 6]"), (
        result.headline
    )
    assert "changed after the call" not in str(result)


def test_steps_are_left_out_for_a_weighted_call_with_a_note(run):
    cell = (
        X3
        + "y1 = x ** 2\ny2 = 3 * x\ntorch.autograd.backward([y1, y2], [torch.tensor(1.0), torch.tensor(2.0)])"
    )
    result = run("--steps", cell)
    assert result.steps is None and "--steps follows one output" in " ".join(result.note_texts)
    result = run("--steps", X3 + "y = 3 * x ** 2\ny.backward(torch.tensor(2.0))")
    assert result.steps is None and "differentiated 2·y" in " ".join(result.note_texts)
    result = run("--steps", X3 + "y = 3 * x ** 2\ny.backward()")
    assert result.steps is not None  # one output, no weight: the steps


def test_batched_grads_complex_weights_and_near_one_weights_are_said():
    ns = {"torch": torch}
    cell = "x = torch.tensor([1., 2., 3.], requires_grad=True)\ny = x ** 2\ng, = torch.autograd.grad(y, x, grad_outputs=torch.eye(3), is_grads_batched=True)"
    texts = " ".join(grad(cell, namespace=ns).note_texts)
    assert "torch.autograd.grad(is_grads_batched=True) (1)" in texts and "failed" not in texts
    cell = (
        "z = torch.tensor([1+1j, 2-1j], requires_grad=True)\nq = (z ** 2).sum()\nq.backward(torch.tensor(2j))"
    )
    assert "complex weight for q" in " ".join(grad(cell, namespace=ns).note_texts)
    result = grad(X3 + "y = x ** 2\ny.backward(torch.tensor(1.00001))", namespace=ns)
    assert result.differentiated == "1.00001·y"


@pytest.mark.parametrize(
    "value",
    [
        [0.1, -0.0, float("nan"), float("inf"), 1e-45],
        [[1.5, 2.25], [3.0, -4.0]],
        3.0,
    ],
)
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64]
)
def test_tiny_tensors_kept_as_numbers_round_trip_exactly(value, dtype):
    from torchgrad_magic.capture.copies import Frozen, keep, thaw

    tensor = torch.tensor(value).to(dtype)
    kept = keep(tensor)
    assert type(kept) is Frozen
    tensor.add_(1)  # a later in-place change does not reach what was kept
    back = thaw(kept)
    original = torch.tensor(value).to(dtype)
    assert back.dtype == dtype and back.shape == original.shape
    torch.testing.assert_close(back, original, rtol=0, atol=0, equal_nan=True)  # every value exactly
    real = (lambda t: torch.view_as_real(t)) if dtype.is_complex else (lambda t: t)
    numbers = ~torch.isnan(real(original))  # -0.0 stays -0.0 (a nan's sign bit is no number's)
    assert torch.equal(torch.signbit(real(back))[numbers], torch.signbit(real(original))[numbers])


def test_zeroed_grad_in_a_loop_is_no_accumulation(run):
    """w.grad.zero_() before each backward(): the grad shown is the call's, with no 'already held' note."""
    cell = (
        "w = torch.tensor([1.0, -0.5], requires_grad=True)\nX = torch.tensor([[1.0, 2.0], [3.0, 4.0]])\n"
        "for i in range(3):\n    loss = ((X @ w) ** 2).sum()\n    loss.backward()\n"
        "    with torch.no_grad():\n        w -= 0.01 * w.grad\n        w.grad.zero_()"
    )
    result = run("", cell)
    w = torch.tensor([1.0, -0.5], requires_grad=True)
    X = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    for _ in range(2):
        (g,) = torch.autograd.grad(((X @ w) ** 2).sum(), w)
        with torch.no_grad():
            w -= 0.01 * g
    (expected,) = torch.autograd.grad(((X @ w) ** 2).sum(), w)
    assert torch.equal(result.grads["w"], expected)
    assert not any("already held" in n for n in result.note_texts)
    assert torch.equal(run.ns["w"].grad, torch.zeros(2))


def test_the_retain_grad_guard_survives_odd_objects(run):
    """Bound builtins, objects whose attributes raise: the cell runs, the retained grad is kept."""
    setup = (
        "class Odd:\n    @property\n    def __dict__(self):\n        raise RuntimeError('no')\n"
        "odd = Odd()\nm, f = [].append, print\na = torch.ones(2, requires_grad=True)\nh = a * 2\nh.retain_grad()\n"
        "h.sum().backward(retain_graph=True)\nkeep = h.grad.clone()"
    )
    run.ns["torch"] = torch
    exec(setup, run.ns)
    result = run("", "yy = (h * 3).sum()")
    assert result.output_name == "yy" and result.grads
    assert torch.equal(run.ns["h"].grad, run.ns["keep"])


def test_which_tensor_depends_on_wrt_is_told_by_walks_within_a_budget(monkeypatch):
    """A cell without backward(): the output is the last tensor computed from the --wrt leaves.
    Finding it walks each candidate's graph (the one found is walked once, not again), and all
    the walks together stay within WALK_BUDGET nodes: 1,000 names over a big graph that does not
    depend on x cost one budget, not 1,000 walks."""
    from torchgrad_magic.derive import backward

    walked: list[int] = []
    real = backward.nodes_behind

    def counted(roots, limit=None):
        nodes, cut = real(roots, limit)
        walked.append(len(nodes))
        return nodes, cut

    monkeypatch.setattr(backward, "nodes_behind", counted)
    monkeypatch.setattr(backward, "WALK_BUDGET", 500)
    ns = {"torch": torch}
    exec(
        "w = torch.tensor([0.5, -0.3], requires_grad=True)\nz = w\nfor i in range(300):\n    z = z * 1.0001",
        ns,
    )
    grad("\n".join(f"h{i} = z * {i}" for i in range(50)), namespace=ns, wrt="x=3")
    # the candidates' walks stop at the budget (500 nodes), then the report walks the output's
    # graph (302 nodes) as for any output: 50 walks of 302 nodes each would be 15,100
    assert sum(walked) <= 500 + 3 * 302, walked
    monkeypatch.setattr(backward, "WALK_BUDGET", 100_000)
    result = grad("a = x * 2\nb = (a * 3).sin()\nc = z.sum()", namespace=ns, wrt="x=3")
    x = torch.tensor(3.0, requires_grad=True)  # oracle: c does not depend on x, b does
    (expected,) = torch.autograd.grad((x * 2 * 3).sin(), x)
    assert result.output_name == "b" and torch.equal(result.grads["x"], expected)


def test_of_another_output_than_the_cells_backward_says_what_grad_holds(run):
    """--of Y when the cell's y.backward() was on y = Y * 2: x.grad holds that call's 2 (put there by
    the cell, not "from earlier code"), and the table's dY/dx = 1 is %%grad's, not stored."""
    result = run("--of Y", "x = torch.tensor(3.0, requires_grad=True)\nY = x + 1\ny = Y * 2\ny.backward()")
    assert result.grads["x"].item() == 1 and result.tensors["x"].grad.item() == 2
    said = " ".join(result.note_texts)
    assert (
        "--of Y: the cell's backward() was on another output, so .grad holds that call's grads (x.grad = 2)"
        in said
    )
    assert "from earlier code" not in said and "did not call backward()" not in said
