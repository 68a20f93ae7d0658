"""Mixed precision's loss scaling (issue 25): under ``torch.amp.GradScaler``,
``scaler.scale(loss).backward()`` makes every grad the scale (65,536) times the plain one. The report
keeps the grads the call made (scaled), and one note names the scaler and the scale and gives the
grads unscaled; the cell's variables, .grad and the scaler's state are those of a plain run.

Oracles: the same cell run without %%grad, and without the scaler (plain fp32 ``loss.backward()``):
unscaled = scaled / scale = the plain grads. The module is tested directly too (``derive/scaler.py``
on a ``First`` made here from plain PyTorch), so what the note says does not rest on the engine.
"""

from __future__ import annotations

import pytest
import torch

from torchgrad_magic import format as fmt
from torchgrad_magic import grad
from torchgrad_magic.derive.backward import First
from torchgrad_magic.derive.rows import TensorRow
from torchgrad_magic.derive.scaler import scaling, with_scaling_note
from torchgrad_magic.messages import using

SETUP = """
import torch
w = torch.tensor([1.0, -2.0], requires_grad=True)
b = torch.tensor(0.5, requires_grad=True)
x = torch.tensor([3.0, 4.0])
opt = torch.optim.SGD([w, b], lr=0.1)
scaler = torch.amp.GradScaler("cpu")
"""
LOSS = "loss = ((w * x).sum() + b) ** 2"
SCALED = f"{LOSS}\nscaler.scale(loss).backward()"
STEP = f"opt.zero_grad()\n{SCALED}\nscaler.step(opt)\nscaler.update()"
PLAIN_GRADS = {"w": torch.tensor([-27.0, -36.0]), "b": torch.tensor(-9.0)}  # d(loss)/dw, d(loss)/db
SCALE = 65536.0

MODEL_SETUP = """
import torch
from torch import nn
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
data = torch.randn(32, 8)
target = torch.randn(32, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
scaler = torch.amp.GradScaler("cpu")
"""
MODEL_LOSS = """
with torch.autocast("cpu", dtype=torch.bfloat16):
    loss = ((net(data).float() - target) ** 2).mean()
"""


def namespace(setup: str = SETUP) -> dict:
    ns: dict = {}
    exec(setup, ns)
    return ns


def prepared(run, setup: str = SETUP):
    """The setup run as an earlier cell of the entry's namespace; that namespace."""
    if run.kind == "function":
        run.ns.update(namespace(setup))
        return run.ns
    assert run.shell.run_cell(setup).success
    return run.shell.user_ns


def amp_notes(result) -> list:
    return [n for n in result.notes if n.id in ("note.amp_scaled", "note.amp_unscaled_after")]


def state(ns: dict, tensors: tuple[str, ...]) -> dict:
    """What a plain run leaves: the tensors, their .grad, the scaler's scale and growth tracker."""
    found = {}
    for name in tensors:
        tensor = ns[name]
        found[name] = tensor.detach().clone()
        if tensor.is_leaf:
            found[f"{name}.grad"] = None if tensor.grad is None else tensor.grad.clone()
    scaler = ns["scaler"]
    found["scale"] = scaler.get_scale()
    found["growth"] = int(scaler._growth_tracker) if scaler._growth_tracker is not None else None
    return found


def assert_same(mine: dict, plain: dict) -> None:
    assert mine.keys() == plain.keys()
    for key, value in plain.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(mine[key], value), key
        else:
            assert mine[key] == value, key


# ---------------------------------------------------------------------------
# the module, on a First made from plain PyTorch (no engine)
# ---------------------------------------------------------------------------
def _first(ns: dict, output: torch.Tensor, out_name: str) -> First:
    leaves = {"w": ns["w"], "b": ns["b"]}
    computed = torch.autograd.grad(output, list(leaves.values()), retain_graph=True)
    grads = dict(zip(leaves, computed, strict=True))
    rows = tuple(TensorRow.of(n, "leaf", leaf, grads[n]) for n, leaf in leaves.items())
    values = {n: leaf.detach() for n, leaf in leaves.items()}
    return First(output=output, output_name=out_name, leaves=leaves, values=values, grads=grads,
                 rows=rows, notes=())  # fmt: skip


def test_scaling_found_from_the_output_and_the_cells_names():
    ns = namespace()
    exec(LOSS + "\nscaled = scaler.scale(loss)", ns)
    first = _first(ns, ns["scaled"], "scaled")
    found = scaling(first, ns, ("scaled", "scaler", "loss"))
    assert found is not None
    assert (found.scaler, found.scale, found.now, found.loss) == ("scaler", SCALE, SCALE, "loss")
    assert not found.unscaled_now and not found.more
    for name, unscaled in found.unscaled().items():
        torch.testing.assert_close(unscaled, PLAIN_GRADS[name], rtol=0, atol=0)
        torch.testing.assert_close(first.grads[name], PLAIN_GRADS[name] * SCALE, rtol=0, atol=0)
    noted = with_scaling_note(first, ns, ("scaled", "scaler", "loss"))
    assert [n.id for n in noted.notes] == ["note.amp_scaled"]
    assert noted.rows == first.rows and noted.grads is first.grads  # only a note is added


def test_scaling_needs_the_scaler_among_the_cells_names():
    ns = namespace()
    exec(LOSS + "\nscaled = scaler.scale(loss)", ns)
    first = _first(ns, ns["scaled"], "scaled")
    assert scaling(first, ns, ("scaled", "loss")) is None  # (the namespace is not walked)
    exec("times = loss * 3", ns)  # a constant factor that is not the scale
    assert scaling(_first(ns, ns["times"], "times"), ns, ("times", "scaler", "loss")) is None
    exec("plain = loss * 1", ns)
    assert with_scaling_note(_first(ns, ns["loss"], "loss"), ns, ("scaler", "loss")).notes == ()


def test_scaling_without_a_named_loss_reads_the_written_call():
    ns = namespace()
    out = ns["scaler"].scale(((ns["w"] * ns["x"]).sum() + ns["b"]) ** 2)
    written = "scaler.scale(((w * x).sum() + b) ** 2)"
    found = scaling(_first(ns, out, written), ns, ("scaler", "w", "x", "b"))
    assert found is not None and found.scale == SCALE
    assert found.loss == "(((w * x).sum() + b) ** 2)"
    assert scaling(_first(ns, out, "out"), ns, ("scaler", "w", "x", "b")) is None  # nothing to go by


def test_scaling_reads_the_scaler_and_changes_nothing():
    ns = namespace()
    exec(LOSS + "\nscaled = scaler.scale(loss)", ns)
    before = state(ns, ("w", "b"))
    scaler = ns["scaler"]
    attributes = {k: v for k, v in vars(scaler).items() if not isinstance(v, torch.Tensor)}
    tensors = {k: (v.clone(), v._version) for k, v in vars(scaler).items() if isinstance(v, torch.Tensor)}
    str(with_scaling_note(_first(ns, ns["scaled"], "scaled"), ns, ("scaled", "scaler", "loss")).notes[0])
    assert_same(state(ns, ("w", "b")), before)
    assert {k: v for k, v in vars(scaler).items() if not isinstance(v, torch.Tensor)} == attributes
    for key, (value, version) in tensors.items():
        now = getattr(scaler, key)
        assert torch.equal(now, value) and now._version == version, key


# ---------------------------------------------------------------------------
# the report (a real InteractiveShell and the plain function): these need the one wiring line
# (engine.run, after first_derivatives: first = with_scaling_note(first, ns, observer.written))
# ---------------------------------------------------------------------------
def test_scaled_grads_shown_unscaled_in_one_note(run):
    prepared(run)
    result = run("", SCALED)
    plain = namespace()  # the oracle: the same loss without the scaler
    exec(LOSS + "\nloss.backward()", plain)
    for name in ("w", "b"):
        torch.testing.assert_close(result.grads[name], plain[name].grad * SCALE, rtol=0, atol=0)
        torch.testing.assert_close(result.grads[name] / SCALE, PLAIN_GRADS[name], rtol=0, atol=0)
    (found,) = amp_notes(result)
    text = str(found)
    assert text.startswith(
        "scaler.scale(loss) is loss × 65536, the loss scale of scaler (torch.amp.GradScaler)"
    )
    assert f"Unscaled (÷ 65536): w: {fmt.values(plain['w'].grad)}; b: {fmt.values(plain['b'].grad)}." in text
    assert "scaler.unscale_(optimizer) divides .grad by the scale in place" in text
    assert "-1769472" in str(result)  # the table keeps the grads the call made: scaled
    assert len(result.note_texts) == 1  # one fact, one note


def test_the_note_in_chinese(run):
    prepared(run)
    result = run("--lang zh", SCALED)
    (text,) = result.note_texts
    assert (
        "scaler.scale(loss) 等于 loss × 65536，65536 是 scaler（torch.amp.GradScaler）的损失缩放系数" in text
    )
    assert "所以表中每个梯度都是不缩放时的 65536 倍" in text
    assert "除以 65536 还原后：w: [-27, -36]; b: -9。" in text
    assert "scaler.unscale_(optimizer) 会把 .grad 原地除以缩放系数" in text
    with using("en"):
        assert str(amp_notes(result)[0]).startswith("scaler.scale(loss) is loss × 65536")


def test_a_training_step_leaves_everything_as_a_plain_run(run):
    ns = prepared(run)
    result = run("", STEP)
    plain = namespace()
    exec(STEP, plain)
    assert_same(state(ns, ("w", "b", "loss")), state(plain, ("w", "b", "loss")))
    for name in ("w", "b"):  # the table: the grads at the call (scaled); .grad now: unscaled by step()
        torch.testing.assert_close(result.grads[name], PLAIN_GRADS[name] * SCALE, rtol=0, atol=0)
        torch.testing.assert_close(ns[name].grad, PLAIN_GRADS[name], rtol=0, atol=0)
    (found,) = amp_notes(result)
    assert found.id == "note.amp_unscaled_after"
    text = str(found)
    assert text.startswith(
        "scaler.scale(loss) is loss × 65536, the loss scale of scaler (torch.amp.GradScaler),"
    )
    assert "the cell's scaler.unscale_() or scaler.step() divided .grad by the scale in place" in text
    assert "update() changed it" not in text  # (2,000 good steps before it grows)
    # the unscaled values are said once: by the note on what the cell changed after the call
    assert "[-27, -36]" not in text and "[-27, -36]" in " ".join(result.note_texts)


def test_the_scale_at_the_call_after_update_changed_it(run):
    ns = prepared(run, SETUP.replace('GradScaler("cpu")', 'GradScaler("cpu", growth_interval=1)'))
    result = run("", STEP)
    assert ns["scaler"].get_scale() == 2 * SCALE  # update() grew it after the call
    (found,) = amp_notes(result)
    text = str(found)
    assert "loss × 65536" in text and "(now 131072: scaler.update() changed it after the call)" in text
    ns["w"].grad = ns["b"].grad = None
    result = run("", SCALED)  # the next cell: the grown scale
    text = str(amp_notes(result)[0])
    plain = namespace()  # the oracle: the stepped w and b, their loss without the scaler
    exec(f"{STEP}\nw.grad = b.grad = None\n{LOSS}\nloss.backward()", plain)
    for name in ("w", "b"):
        torch.testing.assert_close(result.grads[name], plain[name].grad * 2 * SCALE, rtol=0, atol=0)
    assert "loss × 131072" in text and "now" not in text
    unscaled = f"w: {fmt.values(plain['w'].grad)}; b: {fmt.values(plain['b'].grad)}"
    assert f"Unscaled (÷ 131072): {unscaled}." in text


def test_unscale_then_zero_grad(run):
    ns = prepared(run)
    cell = f"{LOSS}\nscaled = scaler.scale(loss)\nscaled.backward()\nscaler.unscale_(opt)\nopt.zero_grad()"
    result = run("", cell)
    assert ns["w"].grad is None and ns["scaler"].get_scale() == SCALE
    (found,) = amp_notes(result)
    assert found.id == "note.amp_scaled"  # (.grad no longer holds them: the values are listed)
    assert str(found).startswith("scaled is loss × 65536") and "w: [-27, -36]; b: -9" in str(found)


def test_a_model_under_autocast(run):
    ns = prepared(run, MODEL_SETUP)
    cell = f"opt.zero_grad(){MODEL_LOSS}scaler.scale(loss).backward()"
    result = run("", cell)
    plain = namespace(MODEL_SETUP)  # the oracle: the same cell without the scaler
    exec(cell.replace("scaler.scale(loss)", "loss"), plain)
    names = [f"net.{n}" for n, _ in plain["net"].named_parameters()]
    for (name, p), q in zip(plain["net"].named_parameters(), ns["net"].parameters(), strict=True):
        torch.testing.assert_close(result.grads[f"net.{name}"] / SCALE, p.grad)
        torch.testing.assert_close(q.grad, p.grad * SCALE)  # the user's .grad: scaled, as without %%grad
    text = str(amp_notes(result)[0])
    assert text.startswith("scaler.scale(loss) is loss × 65536")
    shown = "; ".join(f"{n}: {fmt.values(plain['net'].get_parameter(n[4:]).grad)}" for n in names)
    assert f"Unscaled (÷ 65536): {shown}." in text  # (4 parameters: all listed)


def test_a_model_training_step_as_a_plain_run(run):
    ns = prepared(run, MODEL_SETUP)
    cell = f"opt.zero_grad(){MODEL_LOSS}scaler.scale(loss).backward()\nscaler.step(opt)\nscaler.update()"
    result = run("", cell)
    plain = namespace(MODEL_SETUP)
    exec(cell, plain)
    for (name, p), q in zip(plain["net"].named_parameters(), ns["net"].parameters(), strict=True):
        assert torch.equal(p, q) and torch.equal(p.grad, q.grad), name  # stepped once, as plain
        torch.testing.assert_close(result.grads[f"net.{name}"] / SCALE, p.grad)  # .grad: unscaled
    assert ns["scaler"].get_scale() == plain["scaler"].get_scale() == SCALE
    assert int(ns["scaler"]._growth_tracker) == int(plain["scaler"]._growth_tracker) == 1
    assert [n.id for n in amp_notes(result)] == ["note.amp_unscaled_after"]


def test_no_note_without_the_scaler(run):
    ns = prepared(run)
    assert amp_notes(run("", f"{LOSS}\nloss.backward()")) == []  # a scaler in the namespace, not used
    ns["w"].grad = ns["b"].grad = None
    assert amp_notes(run("", f"{LOSS}\n(loss * 65536).backward()")) == []  # the cell does not name it
    ns["w"].grad = ns["b"].grad = None
    assert amp_notes(run("", f"{LOSS}\n(loss * 3).backward()\nscaler.get_scale()")) == []  # not its scale


def test_a_disabled_scaler_scales_nothing():
    ns = namespace(SETUP.replace('GradScaler("cpu")', 'GradScaler("cpu", enabled=False)'))
    result = grad(SCALED, namespace=ns)
    assert amp_notes(result) == [] and result.note_texts == []
    torch.testing.assert_close(result.grads["w"], PLAIN_GRADS["w"], rtol=0, atol=0)


def test_a_plain_cell_gets_no_note():
    result = grad("y = 3 * x ** 2", wrt="x=3")
    assert amp_notes(result) == []


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_note_without_a_named_loss(lang):
    ns = namespace()
    result = grad("scaler.scale(((w * x).sum() + b) ** 2).backward()", namespace=ns, lang=lang)
    (text,) = result.note_texts
    expected = {
        "en": "is (((w * x).sum() + b) ** 2) × 65536",
        "zh": "等于 (((w * x).sum() + b) ** 2) × 65536",
    }
    assert expected[lang] in text
