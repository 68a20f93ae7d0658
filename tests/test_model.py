"""%%grad on nn.Module cells: parameters as leaves with the model's names, their grads
summarised, tracked in place with --wrt, gradient flow, and the contract with the user's model."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import Failure

from torchgrad_magic import grad

SETUP = """
import torch
from torch import nn
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
data = torch.randn(16, 8)
target = torch.randn(16, 1)
"""
LOSS = "loss = ((net(data) - target) ** 2).mean()"


def namespace(setup: str = SETUP) -> dict:
    ns: dict = {}
    exec(setup, ns)
    return ns


def plain_grads(setup: str, cell: str) -> dict[str, torch.Tensor]:
    ns = namespace(setup)
    exec(cell, ns)
    ns["loss"].backward()
    return {n: p.grad for n, p in ns["net"].named_parameters()}


def test_parameters_are_the_leaves_with_the_models_names(run):
    run.ns.update(namespace()) if run.kind == "function" else run.shell.run_cell(SETUP)
    result = run("", LOSS)
    expected = plain_grads(SETUP, LOSS)
    assert list(result.grads) == [f"net.{n}" for n in expected]
    for name, g in expected.items():
        torch.testing.assert_close(result.grads[f"net.{name}"], g)
    model = result.model
    assert [p.name for p in model.params] == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    w0 = model.params[0]
    assert w0.module == "net.0" and w0.kind == "Linear" and w0.shape == (32, 8) and not w0.frozen
    g = expected["0.weight"]
    assert w0.stats.grad_norm == pytest.approx(float(g.norm()), rel=1e-6)
    assert w0.stats.mean_abs == pytest.approx(float(g.abs().mean()), rel=1e-6)
    assert w0.stats.max_abs == pytest.approx(float(g.abs().max()), rel=1e-6)
    assert w0.stats.zero_fraction == 0
    weight = (run.ns if run.kind == "function" else run.shell.user_ns)["net"][0].weight
    assert w0.stats.ratio == pytest.approx(float(g.norm() / weight.detach().norm()), rel=1e-6)
    text = str(result)
    assert "loss = " in text and "grads of 4 parameters" in text and "‖g‖/‖w‖" in text
    assert "net.0.weight  (32, 8)" in text
    assert weight.grad is None  # the cell did not call backward(): no .grad written on the user's model


def test_training_step_grads_at_the_moment_and_model_as_plain():
    cell = LOSS + "\nopt.zero_grad()\nloss.backward()\nopt.step()"
    setup = SETUP + "opt = torch.optim.SGD(net.parameters(), lr=0.1)\n"
    plain, ours = namespace(setup), namespace(setup)
    exec(cell, plain)
    result = grad(cell, namespace=ours)
    for (name, p), q in zip(plain["net"].named_parameters(), ours["net"].parameters(), strict=True):
        assert torch.equal(p, q) and torch.equal(p.grad, q.grad), name  # stepped once, same .grad
        torch.testing.assert_close(result.grads[f"net.{name}"], p.grad)


def test_nested_tied_frozen_and_buffers():
    setup = """
import torch
from torch import nn
torch.manual_seed(0)
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.Linear(4, 4)
        self.norm = nn.BatchNorm1d(4)
    def forward(self, x):
        return self.norm(torch.relu(self.attn(x)))
class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 4, bias=False)
        self.encoder = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(4, 4, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
    def forward(self, x):
        x = self.embed(x)
        for block in self.encoder:
            x = block(x)
        return self.head(self.frozen(x))
model = Model()
x = torch.randn(8, 4)
"""
    ns = namespace(setup)
    result = grad("loss = model(x).pow(2).mean()", namespace=ns)
    names = [p.name for p in result.model.params]
    assert "model.encoder.1.attn.weight" in names and "model.encoder.0.norm.bias" in names
    tied = next(p for p in result.model.params if p.name == "model.embed.weight")
    assert tied.aliases == ("model.head.weight",) and "model.head.weight" not in names  # once, both names
    frozen = [p for p in result.model.params if p.frozen]
    assert {p.name for p in frozen} == {"model.frozen.weight", "model.frozen.bias"}
    assert all(p.stats.grad_norm is None for p in frozen)
    assert not any("running_mean" in n for n in names)  # buffers are not parameters
    assert "frozen (requires_grad=False" in str(result) and "= model.head.weight" in str(result)
    expected = namespace(setup)
    expected["model"](expected["x"]).pow(2).mean().backward()
    for name, p in expected["model"].named_parameters():
        if p.requires_grad and f"model.{name}" in result.grads:
            torch.testing.assert_close(result.grads[f"model.{name}"], p.grad)


def test_wrt_a_dotted_parameter_tracks_it_in_place(run):
    if run.kind == "function":
        run.ns.update(namespace())
    else:
        run.shell.run_cell(SETUP)
    ns = run.ns if run.kind == "function" else run.shell.user_ns
    result = run("--wrt net.0.weight", LOSS + "\nloss.backward()")
    weight = ns["net"][0].weight
    assert list(result.grads) == ["net.0.weight"] and result.tensors["net.0.weight"] is weight
    torch.testing.assert_close(result.grads["net.0.weight"], plain_grads(SETUP, LOSS)["0.weight"])
    torch.testing.assert_close(weight.grad, result.grads["net.0.weight"])  # as the cell's backward left it
    assert "net.0.weight" not in ns  # no variable made for it


def test_wrt_name_equals_a_parameter_is_not_a_copy():
    ns = namespace()
    result = grad(LOSS, wrt="W=net[0].weight", namespace=ns)
    assert result.tensors["W"] is ns["net"][0].weight
    torch.testing.assert_close(result.grads["W"], plain_grads(SETUP, LOSS)["0.weight"])
    assert ns["net"][0].weight.grad is None  # the cell did not call backward(): nothing written
    assert not any("does not depend" in n for n in result.note_texts)


@pytest.mark.parametrize(
    ("wrt", "message"),
    [
        ("net.5.weight", "net has no parameter or attribute 5.weight"),
        ("data.T", "data.T: not a leaf tensor that requires grad"),
        ("nothing.weight", "no variable 'nothing'"),
    ],
)
def test_wrt_dotted_errors(wrt, message):
    from torchgrad_magic import GradError

    with pytest.raises(GradError, match=message.replace(".", r"\.").replace("(", r"\(")):
        grad(LOSS, wrt=wrt, namespace=namespace())


def test_dead_layer_and_non_finite_are_named():
    setup = SETUP.replace("nn.Tanh()", "nn.ReLU()") + "with torch.no_grad():\n    net[0].bias.fill_(-100.0)\n"
    result = grad(LOSS, namespace=namespace(setup))
    texts = " ".join(result.note_texts)
    assert "net.0 (Linear): every grad is exactly 0" in texts
    row = next(m for m in result.model.modules if m.name == "net.0")
    assert row.stats.grad_norm == 0 and row.stats.zero_fraction == 1
    bad = SETUP + "with torch.no_grad():\n    net[2].weight[0, 0] = float('inf')\n"
    result = grad(LOSS, namespace=namespace(bad))
    assert any("grads contain nan or inf" in n for n in result.note_texts)
    shown = grad(LOSS, namespace=namespace(bad))  # (the table first: its numbers tell the notes)
    assert "grads contain nan or inf" in str(shown) and "grads contain nan or inf" in shown._repr_html_()


DEEP_TANH = """
import torch
from torch import nn
torch.manual_seed(0)
layers = []
for i in range(120):
    layers += [nn.Linear(16, 16), nn.Tanh()]
net = nn.Sequential(*layers, nn.Linear(16, 1))
data = torch.randn(8, 16)
"""


@pytest.mark.parametrize("table_first", [True, False], ids=["table first", "notes first"])
def test_vanishing_grads_keep_their_norms(table_first):
    """120 Tanh layers: the first layers' grads are about 1e-33, whose squares underflow in float32.
    Their norms are still the float64 ones (not 0), and no layer is called dead."""
    cell = "loss = net(data).pow(2).mean()"
    ns = namespace(DEEP_TANH)
    result = grad(cell, namespace=ns)
    if table_first:
        str(result)
    texts = " ".join(result.note_texts)
    assert "every grad is exactly 0" not in texts
    first = next(m for m in result.model.modules if m.name == "net.0")
    expected = plain_grads(DEEP_TANH, cell)
    oracle = torch.cat([expected["0.weight"].double().flatten(), expected["0.bias"].double().flatten()])
    assert 0 < float(oracle.abs().max()) < 1e-30  # (the case: below float32's square root of its smallest)
    assert first.grad_norm == pytest.approx(float(oracle.norm()), rel=1e-6)
    assert first.stats.grad_norm == pytest.approx(float(oracle.norm()), rel=1e-6)
    assert first.stats.mean_abs == pytest.approx(float(oracle.abs().mean()), rel=1e-5)


def test_exploding_grads_keep_finite_norms():
    """Grads of about 1e25: their squares overflow float32, the norm does not."""
    setup = SETUP + "with torch.no_grad():\n    net[2].weight.fill_(1e25)\n"
    cell = "loss = net(data).sum()"
    result = grad(cell, namespace=namespace(setup))
    expected = plain_grads(setup, cell)["0.weight"].double()
    assert torch.isfinite(expected).all() and float(expected.norm()) > 1e20
    row = next(p for p in result.model.params if p.name == "net.0.weight")
    assert row.grad_norm == pytest.approx(float(expected.norm()), rel=1e-6)
    assert row.stats.grad_norm == pytest.approx(float(expected.norm()), rel=1e-6)
    assert row.stats.finite and "nan or inf" not in " ".join(result.note_texts)


class _Reductions(torch.overrides.TorchFunctionMode):
    """Counts the reductions a statistic or a finiteness check makes over a big tensor (small ones,
    up to 1,024 elements, are copied at the call and compared: cheap by design)."""

    NAMES = frozenset(
        {"vector_norm", "norm", "count_nonzero", "aminmax", "isfinite", "abs", "amax", "any", "all", "eq"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        big = args and isinstance(args[0], torch.Tensor) and args[0].numel() > 1024
        if big and getattr(func, "__name__", "") in self.NAMES:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("backward", [False, True], ids=["no backward", "backward"])
def test_no_pass_over_the_parameters_on_the_cells_path(backward, monkeypatch):
    """The statistics and the notes that need a pass over every element (all-zero or non-finite
    layers, a non-finite weight) are found when the report is first read, not while the cell runs:
    on a big model that is what keeps %%grad close to the plain cell (make bench)."""
    setup = SETUP.replace("nn.Tanh()", "nn.ReLU()").replace("Linear(8, 32)", "Linear(8, 256)")
    setup = setup.replace("Linear(32, 1)", "Linear(256, 8)").replace("randn(16, 1)", "randn(16, 8)")
    setup += "with torch.no_grad():\n    net[0].bias.fill_(-100.0)\n    net[2].weight[0, 0] = float('nan')\n"
    cell = LOSS + ("\nloss.backward()" if backward else "")
    ns = namespace(setup)
    from torchgrad_magic.capture import copies

    monkeypatch.setattr(copies, "SNAPSHOT_LIMIT", 1024)  # the weights as a real model's: not copied
    with _Reductions() as seen:
        result = grad(cell, namespace=ns)
    assert seen.seen == []  # none of ours (the cell itself makes none)
    assert all(
        "_norm_finite" not in row.__dict__ and "stats" not in row.__dict__ for row in result.model.params
    )
    texts = result.note_texts  # read now: found on the tensors the result holds
    assert any("net.0 (Linear): every grad is exactly 0" in n for n in texts)
    assert any("net.2.weight" in n and "nan" in n for n in texts), texts
    assert result.notes is result.notes  # found once
    assert texts == result.replace(digits=3).note_texts  # a copy finds the same


def test_plot_on_a_model_is_its_gradient_flow():
    result = grad(LOSS, namespace=namespace(), plot=True)
    figure = result.figure
    ax = figure.axes[0]
    assert ax.get_yscale() == "log"
    labels = [tick.get_text() for tick in ax.get_xticklabels()]
    assert any("net.0" in label for label in labels) and any("net.2" in label for label in labels)
    assert result.figure_bundle()["image/png"][:4] == b"\x89PNG"


def test_big_model_folds_per_module():
    setup = "import torch\nfrom torch import nn\ntorch.manual_seed(0)\nnet = nn.Sequential(*[nn.Linear(8, 8) for _ in range(40)])\ndata = torch.randn(4, 8)\ntarget = torch.randn(4, 8)\n"
    result = grad(LOSS, namespace=namespace(setup))
    assert result.model.by_module and len(result.model.params) == 80 and len(result.model.modules) == 40
    text, html = str(result), result._repr_html_()
    assert text.count("\n") < 70 and "result.model.params has each of the 80 parameters" in text
    assert "<details><summary>every parameter (80)</summary>" in html and len(html) < 24_000


def test_zh_model_table():
    text = str(grad(LOSS, namespace=namespace(), lang="zh"))
    assert "个参数的梯度" in text and "梯度范数" in text


def test_graph_folds_a_model_per_layer_and_depth_unfolds(run):
    if run.kind == "function":
        run.ns.update(namespace())
    else:
        run.shell.run_cell(SETUP)
    cell = LOSS + "\nloss.backward()"
    boxes = [n.name for n in run("--graph", cell).graph.nodes if n.kind == "module"]
    assert boxes == ["net.2", "net.1", "net.0"]  # from the loss back to the input, one box per layer
    whole = [n.name for n in run("--graph 0", cell).graph.nodes if n.kind == "module"]
    assert whole == ["net"]
    full = run("--graph full", cell).graph
    assert not [n for n in full.nodes if n.kind == "module"] and any(
        n.op == "AddmmBackward0" for n in full.nodes
    )
    steps = run("--graph --steps", cell).graph
    assert any(label for label in steps.labels)  # the flowing gradients label the folded edges too


def test_graph_depth_errors(shell):
    outcome = shell.run_cell("%%grad --wrt x=3 --graph 99\ny = x")
    assert "--graph 99: use --graph" in str(outcome.error_in_exec)
    outcome = shell.run_cell("%%grad --wrt x=3 --graph deep\ny = x")
    assert "--graph deep" in str(outcome.error_in_exec)
    assert shell.run_cell("1 + 1").result == 2


def test_steps_on_a_model_are_per_layer():
    result = grad(LOSS + "\nloss.backward()", namespace=namespace(), steps=True)
    steps = result.steps
    layers = [item for item in steps.shown() if type(item).__name__ == "Layer"]
    assert [(layer.module, layer.kind) for layer in layers] == [
        ("net.2", "Linear"),
        ("net.1", "Tanh"),
        ("net.0", "Linear"),
    ]
    text = steps.to_text()
    assert (
        "∂loss/∂net.2.weight = gᵀ·b" in text
        and "∂loss/∂b = g·net.2.weight" in text
        and "→ net.2.weight.grad" in text
        and "e = c − target" in text
    )
    sent = {e.to: e.sent for layer in layers for e in layer.leaving}
    for name in ("net.0.weight", "net.2.bias"):
        torch.testing.assert_close(sent[name], result.grads[name])
    assert len(steps.shown()) == 6  # mean, pow, sub, then three layers: not every scalar op


def test_grads_held_from_before_are_one_note_for_a_model(run):
    """A second backward() without zero_grad(): one note naming the parameters in the model's
    order (not one long note per parameter); the table shows this call's grads."""
    setup = SETUP + LOSS + "\nloss.backward()\n"
    run.ns.update(namespace(setup)) if run.kind == "function" else run.shell.run_cell(setup)
    result = run("", LOSS + "\nloss.backward()")
    texts = [n for n in result.note_texts if "already held" in n]
    assert len(texts) == 1, result.note_texts
    assert texts[0].startswith(
        "net.0.weight, net.0.bias, net.2.weight, net.2.bias (4 parameters): .grad already held"
    )
    expected = plain_grads(SETUP, LOSS)  # one call's grads
    for name, g in expected.items():
        torch.testing.assert_close(result.grads[f"net.{name}"], g)
    net = (run.ns if run.kind == "function" else run.shell.user_ns)["net"]
    torch.testing.assert_close(net[0].weight.grad, 2 * expected["0.weight"])  # .grad holds the sum, as plain


def test_three_leaves_held_from_before_are_one_note():
    ns = {"torch": torch}
    cell = "y = (u * v * w).sum()\ny.backward()"
    exec("u, v, w = (torch.tensor(float(k), requires_grad=True) for k in (2, 3, 4))\n" + cell, ns)
    result = grad(cell, namespace=ns)
    texts = [n for n in result.note_texts if "already held" in n]
    assert texts == [
        "u, v, w (3 tensors): .grad already held grads from before, so backward() added this call's to them "
        "(.grad now holds the sums). PyTorch adds grads up; clear them first (optimizer.zero_grad(), or "
        ".grad = None) to get one call's."
    ]
    assert [result.rows[i].grad.item() for i in range(3)] == [24.0, 16.0, 12.0]  # the sums, as .grad holds


def test_a_layer_whose_big_grad_changed_is_not_drawn_as_dead(monkeypatch):
    from torchgrad_magic.capture import copies

    monkeypatch.setattr(copies, "SNAPSHOT_LIMIT", 100)
    result = grad(LOSS + "\nloss.backward()\nnet[0].weight.grad.zero_()", namespace=namespace(), plot=True)
    assert [layer.name for layer in result.model.layers()] == ["net.2"]  # net.0's grads are not the call's
    assert "every grad is exactly 0" not in " ".join(result.note_texts)


DEAD = SETUP.replace("nn.Tanh()", "nn.ReLU()") + "with torch.no_grad():\n    net[0].bias[:8].fill_(-100.0)\n"


def _model_rows(text: str) -> list[str]:
    """The lines of the parameters' table in a report's text (its header first)."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(("parameter ", "参数 ")))
    end = lines.index("", start)
    return lines[start:end]


def test_model_table_names_on_the_left_and_zeros_as_percentages(run):
    """8 of net.0's 32 units never activate: a quarter of net.0's and net.2.weight's grads are 0,
    none of net.2.bias's. The zeros column says both in one unit (0%, 25%), text and HTML alike."""
    run.ns.update(namespace(DEAD)) if run.kind == "function" else run.shell.run_cell(DEAD)
    result = run("", LOSS)
    rows = [re.split(r"\s{2,}", line) for line in _model_rows(str(result))]
    header, body = rows[0], rows[1:]
    assert [r[0] for r in body] == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]  # left
    zeros = [r[header.index("zeros")] for r in body]
    assert zeros == ["25%", "25%", "25%", "0%"]
    html = result._repr_html_()
    table = html[html.index("<table") : html.index("</table>")]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
    assert [c[0] for c in cells] == [r[0] for r in body]
    assert [c[header.index("zeros")] for c in cells] == zeros
    zh = run("--lang zh", LOSS)
    zh_rows = [re.split(r"\s{2,}", line) for line in _model_rows(str(zh))]
    assert [r[zh_rows[0].index("零的比例")] for r in zh_rows[1:]] == zeros


def test_save_on_a_model_writes_its_gradient_flow_and_says_where(run, tmp_path):
    run.ns.update(namespace()) if run.kind == "function" else run.shell.run_cell(SETUP)
    path = tmp_path / "flow.png"
    result = run(f"--save {path}", LOSS)
    assert path.read_bytes().startswith(b"\x89PNG") and result.figure.get_suptitle().startswith(
        "Gradient flow"
    )
    assert f"figure saved to {path}" in result.note_texts
    zh = run(f"--save {path} --lang zh", LOSS)
    assert f"图已保存到 {path}" in zh.note_texts
    missing = tmp_path / "missing"
    with pytest.raises(Failure, match=f"the folder {re.escape(str(missing))} does not exist"):
        run(f"--save {missing / 'flow.png'}", "ran = True\n" + LOSS)
    assert "ran" not in run.ns  # refused before the cell ran (it used to fail after, when saving)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_an_optimizer_step_after_the_call_is_one_short_list(language):
    """opt.step() after backward() changes every parameter: the note names them (the first few
    and the last) with their count, not each one's new numbers (a 24-parameter model made a
    3,000-character note); two leaves changed keep their numbers (a tutorial's w and b)."""
    ns = namespace(SETUP.replace("nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))",
                                 "nn.Sequential(*[nn.Linear(8, 8) for _ in range(12)])"))  # fmt: skip
    ns["opt"] = torch.optim.SGD(ns["net"].parameters(), lr=0.1)
    cell = f"{LOSS.replace('target', 'data')}\nloss.backward()\nopt.step()"
    result = grad(cell, namespace=ns, lang=language)
    (after,) = [n for n in result.notes if n.id == "note.after"]
    text = result.note_texts[result.notes.index(after)]
    expected = "the values of 24 tensors (net.0.weight, net.0.bias, net.1.weight, …, net.11.bias)"
    if language == "zh":
        expected = "24 个张量的值（net.0.weight, net.0.bias, net.1.weight, …, net.11.bias）"
    assert expected in text and "now" not in text and "现在" not in text and len(text) < 200, text
    result = grad(cell + "\nopt.zero_grad()", namespace=ns)  # the values, and the grads let go
    text = " ".join(result.note_texts)
    assert "the values of 24 tensors" in text and "the .grad of 24 tensors (now None: net.0.weight," in text
    clipped = cell.replace("opt.step()", "torch.nn.utils.clip_grad_norm_(net.parameters(), 1e-3)\nopt.step()")
    result = grad(clipped, namespace=ns)  # (clipping changed every grad, the step every value)
    assert "the values and .grad of 24 tensors (net.0.weight, " in " ".join(result.note_texts)
    small = {"torch": torch, "w": torch.tensor([1.0, 2.0], requires_grad=True)}
    result = grad(
        "loss = (w ** 2).sum()\nloss.backward()\nwith torch.no_grad():\n    w -= 0.5 * w.grad",
        namespace=small,
    )
    assert "changed w (now [0, 0])" in " ".join(result.note_texts), result.note_texts


def test_a_big_models_html_tensor_table_keeps_its_own_header():
    """More than 24 parameters: the fold-out of every parameter has its header, and the tensor
    table below it keeps 'tensor, role, data, grad, ...' (it was given the parameters' header)."""
    ns = namespace(
        "import torch\nfrom torch import nn\nnet = nn.Sequential(*[nn.Linear(2, 2) for _ in range(13)])"
    )
    result = grad("loss = net(torch.ones(1, 2)).sum()\nloss.backward()", namespace=ns)
    html = result._repr_html_()
    tables = html.split("<table")[1:]
    last = tables[-1]
    assert "<th style='text-align:left;white-space:nowrap'>data</th>" in last and "grad norm" not in last
    assert ">loss<" in last


@pytest.mark.parametrize("scale", [3e-23, 1e-42])
def test_grads_whose_squares_are_subnormal_keep_exact_norms(scale):
    """Grads of 3e-23 in float32: their squares are subnormal (inexact, not 0), so the norm was
    25% off; 1e-42 is subnormal itself."""
    setup = "import torch\nfrom torch import nn\ntorch.manual_seed(0)\nnet = nn.Linear(10, 1, bias=False)\n"
    cell = f"loss = (net.weight * {scale}).sum()"
    result = grad(cell, namespace=namespace(setup))
    expected = float(plain_grads(setup, cell)["weight"].double().norm())
    row = next(p for p in result.model.params if p.name == "net.weight")
    assert row.grad_norm == pytest.approx(expected, rel=1e-6)
    assert row.stats.grad_norm == pytest.approx(expected, rel=1e-6)


def test_a_parameter_holding_this_cells_grads_already_is_said_once():
    """The tutorial's `--wrt mlp.0.weight` after a cell that ran the same backward(): one note (its
    .grad holds these very grads), not the 6-number vector again beside 'the cell did not call
    backward() ... unchanged'."""
    ns = namespace()
    exec(LOSS + "\nloss.backward()", ns)
    result = grad(LOSS, namespace=ns, wrt="net.0.weight")
    assert result.note_texts == [
        "net.0.weight.grad: already these very grads, from earlier code; %%grad left .grad as it was (a "
        "backward() now would add them again)."
    ]
    whole = grad(LOSS, namespace=ns)  # every parameter: one note naming them all, not one each
    (said,) = [n for n in whole.note_texts if "already these very grads" in n]
    assert said.startswith("net.0.weight.grad, net.0.bias.grad, net.2.weight.grad, net.2.bias.grad:")


def test_a_big_grad_clipped_after_the_call_is_said_once_and_not_as_a_change_of_its_data():
    """``clip_grad_norm_`` after ``backward()`` changes a 90,000-element grad too big to copy: one
    note (the model's: what changed it and what to do), not a second one saying the layer's data
    is shown 'as it is now' (its weights did not change)."""
    ns = namespace("import torch\ntorch.manual_seed(0)\nbig = torch.nn.Sequential(torch.nn.Linear(300, 300), "
                   "torch.nn.ReLU(), torch.nn.Linear(300, 1))\nX = torch.randn(64, 300)")  # fmt: skip
    cell = (
        "loss = big(X).pow(2).mean()\nloss.backward()\ntorch.nn.utils.clip_grad_norm_(big.parameters(), 0.01)"
    )
    texts = grad(cell, namespace=ns).note_texts
    about = [n for n in texts if "big.0.weight" in n]
    assert len(about) == 1 and "clip_grad_norm_" in about[0], texts
    assert not any("shown as it is now" in n for n in texts)
    w = torch.randn(300, 300, requires_grad=True)  # no model: the grad's own note says it
    (said,) = grad("loss = (w * 2).sum()\nloss.backward()\nw.grad.zero_()", namespace={"w": w}).note_texts
    assert said.startswith("w: too big to copy at every call, and their grads changed")
