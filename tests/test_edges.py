"""Issue #24, class by class, in real kernels: plain in kernel A, ``%%grad`` in kernel B.

Each case is one example of a class of failure found by trying the tool as a new user
would (cells beyond the tutorial). For every case both kernels must end in the same state
(every variable, grad, RNG state, ...) and show the same output and stderr, and the
report's numbers must match ``torch.autograd.grad`` computed in the plain kernel:

1. no crash where the plain cell runs (sparse grads, ops --steps has no formula for);
2. ``--steps`` says nothing false or half (where's condition, names it defines, ties, hooks);
3. a refused line does not run the cell: the namespace is left untouched;
4. what the plain cell prints still prints (anomaly mode's forward traceback, zh fonts);
5. zh everywhere: the report's words come from the one catalogue.
"""

from __future__ import annotations

import re

import pytest
from test_corpus import SELF_CHECK
from test_side_effects import assert_close, oracle, report, result_grad, run, start

pytestmark = pytest.mark.skipif(SELF_CHECK, reason="reads the report of the %%grad kernel")


@pytest.fixture(scope="module")
def pair():
    from test_corpus import Pair

    p = Pair()
    yield p
    p.close()


def report_text(pair, flags: str = "") -> str:
    """The text of the report ``--out _r`` kept, with the graph's text when it has one."""
    return report(pair, "_r.text()")


def grads_match(pair, leaves: list[str], code: str, output: str) -> None:
    """_r.grads equal torch.autograd.grad of *output* after *code*, in the plain kernel."""
    expected = oracle(
        pair,
        f"{code}\n_tgm_g = torch.autograd.grad({output}, [{', '.join(leaves)}], allow_unused=True)",
        "[None if g is None else g.to_dense().tolist() for g in _tgm_g]",
    )
    for name, value in zip(leaves, expected, strict=True):
        assert_close(result_grad(pair, name), value, f"_r.grads[{name!r}]", rel=1e-5, abs_=1e-6)


# ---------------------------------------------------------------------------
# 1. no crash where the plain cell runs
# ---------------------------------------------------------------------------
EMBEDDING = """\
torch.manual_seed(0)
emb = torch.nn.Embedding(6, 3, sparse=True)
opt = torch.optim.SGD(emb.parameters(), lr=0.1)
ids = torch.tensor([1, 4, 1])
"""
EMBEDDING_STEP = "opt.zero_grad()\nloss = emb(ids).pow(2).sum()\nloss.backward()\nopt.step()"


@pytest.mark.parametrize("flags", ["--out _r -q", "--out _r -q --steps", "--out _r -q --graph full --steps"])
def test_sparse_embedding_training_step(pair, flags):
    start(pair, EMBEDDING)
    expected = oracle(
        pair,
        "_tgm_g = torch.autograd.grad(emb(ids).pow(2).sum(), emb.weight)[0].to_dense()",
        "_tgm_g.tolist()",
    )
    _, b = run(pair, EMBEDDING_STEP, flags)
    assert b.status == "ok"
    assert_close(result_grad(pair, "emb.weight"), expected, "_r.grads['emb.weight'] (dense)", rel=1e-5)
    if "--steps" in flags:
        text = report_text(pair)
        assert "embedding" in text.lower(), text  # the step is listed, not an empty --steps


@pytest.mark.parametrize(
    ("setup", "cell", "flags"),
    [
        (
            "x = torch.tensor([[1.0, 2.0], [3.0, 5.0], [4.0, 0.0]], requires_grad=True)",
            "v, m = torch.var_mean(x, dim=0)\nloss = (v * m).sum()\nloss.backward()",
            "--out _r -q --steps",
        ),
        (
            "torch.manual_seed(0)\nnet = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(),"
            " torch.nn.Flatten(), torch.nn.Linear(8, 1))\nimg = torch.randn(1, 1, 4, 4)",
            "loss = net(img).sum()\nloss.backward()",
            "--out _r -q --graph full --steps",
        ),
    ],
    ids=["var_mean", "conv_net"],
)
def test_ops_steps_may_not_know_still_give_a_whole_report(pair, setup, cell, flags):
    start(pair, setup)
    _, b = run(pair, cell, flags)
    assert b.status == "ok"
    text = report_text(pair)
    assert "Traceback" not in text and "KeyError" not in text
    if "var_mean" in cell:
        grads_match(pair, ["x"], "_tgm_v, _tgm_m = torch.var_mean(x, dim=0)", "(_tgm_v * _tgm_m).sum()")
    else:
        assert sorted(report(pair, "sorted(_r.grads)")) == [
            "net.0.bias",
            "net.0.weight",
            "net.3.bias",
            "net.3.weight",
        ]
        expected = oracle(
            pair, "_tgm_g = torch.autograd.grad(net(img).sum(), net[0].weight)[0]", "_tgm_g.tolist()"
        )
        assert_close(result_grad(pair, "net.0.weight"), expected, "_r.grads['net.0.weight']", rel=1e-5)


# ---------------------------------------------------------------------------
# 2. --steps says nothing false or half
# ---------------------------------------------------------------------------
def test_where_keeps_its_condition_and_warns_of_nan(pair):
    start(pair, "x = torch.tensor([-1.0, 0.0, 4.0], requires_grad=True)")
    cell = "y = torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))\nloss = y.sum()\nloss.backward()"
    run(pair, cell, "--out _r -q --steps")
    text = report_text(pair)
    assert re.search(r"where\(x > 0", text), text  # the condition is shown, not dropped
    assert "nan" in text.lower()  # the NaN trap: sqrt's grad at -1 and 0 is nan before where masks it
    expected = oracle(
        pair,
        "_tgm_g = torch.autograd.grad(torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x)).sum(), x)[0]",
        "str(_tgm_g.tolist())",
    )
    assert expected == "[nan, nan, 0.25]"  # the trap itself: masked, yet nan
    assert report(pair, "str(_r.grads['x'].tolist())") == expected


@pytest.mark.parametrize(
    ("cell", "defined"),
    [
        (
            "p, q = torch.split(x, 2)\ng = q ** 2\nloss = (p.sum() + g.sum())\nloss.backward()",
            ["p", "q", "g"],
        ),
        ("u, v = torch.unbind(x.view(2, 2))\na = u @ v\na.backward()", ["u", "v", "a"]),
    ],
    ids=["split", "unbind"],
)
def test_steps_define_every_name_they_use(pair, cell, defined):
    start(pair, "x = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)")
    run(pair, cell, "--out _r -q --steps")
    listing = report(pair, "_r.steps.to_text()")
    for name in defined:
        assert re.search(rf"^\s*(?:\S+,\s*)*{name}\b[^=\n]*=", listing, re.M), (
            f"{name} never defined:\n{listing}"
        )


def test_max_with_ties_sends_the_whole_grad_to_one_index(pair):
    start(pair, "x = torch.tensor([[3.0, 3.0, 1.0]], requires_grad=True)")
    run(pair, "m, i = x.max(dim=1)\nm.sum().backward()", "--out _r -q --steps")
    text = report_text(pair)
    assert "ties" not in text, text
    assert result_grad(pair, "x") == pair.a.value("x.grad.tolist()")
    assert sum(result_grad(pair, "x")[0]) == 1.0


def test_tanh_step_shows_its_values(pair):
    start(pair, "x = torch.tensor(0.5, requires_grad=True)")
    run(pair, "y = torch.tanh(x)\ny.backward()", "--out _r -q --steps")
    listing = report(pair, "_r.steps.to_text()")
    assert "0.7864" in listing, listing  # 1 - tanh(0.5)² = 0.78645, the value beside the formula


def test_a_hook_is_named_and_fires_as_often_as_plain(pair):
    start(pair, "x = torch.tensor(2.0, requires_grad=True)\ncalls = []")
    cell = (
        "h = x ** 2\n"
        "h.register_hook(lambda g: calls.append(1) or g * 10)\n"
        "y = 3 * h ** 2\n"  # dy/dx = 12 x³ = 96; x.grad = 960 through the hook
        "y.backward()"
    )
    run(pair, cell, "--out _r -q --check")  # the fingerprint compares `calls`: once in both
    assert pair.a.value("calls") == [1] and pair.b.value("calls") == [1]
    assert pair.a.value("x.grad.item()") == 960.0
    text = report_text(pair)
    assert "hook" in text and "960" in text and "96" in text.replace("960", ""), text


def test_our_pass_does_not_call_the_users_hook(pair):
    """No backward() in the cell: %%grad's own derivative must not fire the user's hook."""
    start(pair, "x = torch.tensor(2.0, requires_grad=True)\ncalls = []")
    run(pair, "h = x ** 2\nh.register_hook(lambda g: calls.append(1))\ny = 3 * h", "--wrt x --out _r -q")
    assert pair.b.value("calls") == []
    assert_close(result_grad(pair, "x"), 12.0, "_r.grads['x']")


# ---------------------------------------------------------------------------
# 3. a refused line does not run the cell
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--wrt x=3 --expect 'z=1'", "z"),
        ("--expect x=abc", "abc"),
        ("--expect 18 19", "18 19"),
        ("--wrt x²=3", "x²"),
        ("--wrt x=3 --of y --of z", "--of"),
        ("--wrt x=3 --save /no/such/folder/f.png", "/no/such/folder"),
        ("--wrt x=3 --save f.png --no-plot", "--save"),
        ("--wrt x=3 --order 99", "99"),
    ],
)
def test_a_refused_line_leaves_the_namespace_untouched(pair, line, message):
    start(pair, "calls = []")
    before = pair.b.fingerprint()
    out = pair.b.execute(f"%%grad {line}\ncalls.append(1)\ny = 3 * x ** 2")
    assert out.status == "error" and out.ename == "UsageError", out
    assert message in out.evalue, out.evalue
    assert pair.b.value("calls") == [] and pair.b.value("'y' in dir()") is False
    assert pair.b.fingerprint() == before
    assert pair.b.value("1 + 1") == 2  # the kernel still works


def test_an_expect_name_only_the_run_can_check_is_a_note(pair):
    """Without --wrt the inputs are known after the run: the cell has run, so it is not refused."""
    start(pair, "x = torch.tensor(3.0, requires_grad=True)\ncalls = []")
    run(pair, "calls.append(1)\ny = 3 * x ** 2", "--expect z=1 --out _r -q")
    assert pair.b.value("calls") == [1]
    assert any("z is not one of the inputs" in n for n in report(pair, "_r.note_texts"))


# ---------------------------------------------------------------------------
# 4. what the plain cell prints still prints
# ---------------------------------------------------------------------------
def test_anomaly_mode_forward_traceback_is_printed(pair):
    start(pair, "x = torch.tensor([-1.0, 4.0], requires_grad=True)")
    cell = "with torch.autograd.detect_anomaly():\n    y = torch.sqrt(x).sum()\n    y.backward()"
    a, b = run(pair, cell)  # same stderr in both kernels (run() compares it)
    assert "SqrtBackward0" in a.stderr and "SqrtBackward0" in b.stderr


def test_anomaly_mode_on_warns_once_as_plain_and_our_pass_adds_nothing(pair):
    start(pair, "torch.autograd.set_detect_anomaly(True)\nx = torch.tensor(3.0, requires_grad=True)")
    for run_number in (1, 2):  # Python shows a warning once per place: the second run shows none
        a, _ = run(pair, "y = torch.sqrt(x - x) * 0\ny.backward()")
        assert (run_number == 1) == ("SqrtBackward0" in a.stderr)
    run(pair, "y = torch.sqrt(x - x) * 0")  # no backward(): %%grad's own pass runs without anomaly mode
    assert report(pair, "_r.grads['x'].isnan().item()") is True
    pair.b.run_silently("torch.autograd.set_detect_anomaly(False)")
    pair.a.run_silently("torch.autograd.set_detect_anomaly(False)")


def test_a_warning_of_a_recorded_call_points_at_the_cells_line(pair):
    """(PyTorch gives this warning once per process: one case per kernel pair.)"""
    flags = "--out _r -q --plot"
    start(pair, "x = torch.tensor(3.0, requires_grad=True)")
    cell = "y = x ** 2 * float(x)"
    a, _ = run(pair, cell, flags)  # run() compares stderr: the cell's line in both
    assert "Converting a tensor with requires_grad=True" in a.stderr


def test_a_warning_raised_in_backward_is_placed_filtered_and_shown_once_as_plain(pair):
    """PyTorch's module backward hook warns with ``stacklevel=5``: plain, that lands on the cell's
    ``backward()`` line. %%grad's frames between torch and the engine must not move it (it landed in
    torch/autograd/graph.py: shown at the wrong place, once per process instead of once per cell,
    and a filter on ``module="torch"`` turned it into an error only under %%grad)."""
    start(pair, "lin = torch.nn.Linear(3, 2)\n_h = lin.register_full_backward_hook(lambda m, gi, go: None)")
    cell = "out = lin(torch.ones(1, 3)).sum()\nout.backward()"
    for _ in (1, 2):  # run() compares stderr: the cell's own line, in each run
        a, b = run(pair, cell, "--out _r -q")
        assert ":2: UserWarning: Full backward hook is firing" in b.stderr
        assert "graph.py" not in b.stderr
    error = (
        'import warnings\nwarnings.filterwarnings("error", message="Full backward hook", module="torch")\n'
    )
    a, b = run(pair, error + cell + "\nprint('no error')", "--out _r -q")
    assert a.status == b.status == "ok" and "no error" in b.stdout
    for level in (0, -3):  # (Python takes these as 1: the cell's line, not our wrapper's)
        a, b = run(pair, f"import warnings\nwarnings.warn('level {level}', UserWarning, stacklevel={level})")
        assert f":2: UserWarning: level {level}" in b.stderr and "observe.py" not in b.stderr


def test_zh_graph_adds_nothing_to_stderr(pair):
    start(pair, "x = torch.tensor(3.0, requires_grad=True)")
    _, b = run(pair, "y = 3 * x ** 2\ny.backward()", "--out _r --lang zh --graph")
    assert b.stderr == ""
    assert any("image/png" in d["data"] for d in b.displays)


@pytest.mark.parametrize("cell", ["if True:\nprint(1)", "return 3", "y = (x +"])
def test_a_syntax_error_looks_like_the_plain_one(pair, cell):
    start(pair, "x = torch.tensor(3.0, requires_grad=True)")
    a, b = run(pair, cell, "--wrt x")
    assert a.status == b.status == "error" and a.ename == b.ename


# ---------------------------------------------------------------------------
# 5. zh everywhere
# ---------------------------------------------------------------------------
ENGLISH = re.compile(r"\b(where|else|added|rows|picked|the|of|and|times|backward\(\) calls)\b")


def test_zh_steps_of_layers_have_no_english_words(pair):
    start(
        pair,
        "torch.manual_seed(0)\nemb = torch.nn.Embedding(4, 2)\nids = torch.tensor([0, 2])\n"
        "a = torch.tensor([-1.0, 2.0], requires_grad=True)",
    )
    cell = "loss = torch.relu(a).sum() + emb(ids).sum()\nloss.backward(retain_graph=True)\nloss.backward()"
    run(pair, cell, "--out _r -q --steps --lang zh")
    listing = report(pair, "_r.text()")
    words = [w for w in ENGLISH.findall(listing) if w]
    assert not words, f"English in a zh report: {words}\n{listing}"


def test_a_cell_run_again_is_parsed_once_and_reported_afresh():
    """The same cell text gets the same syntax tree (capture/syntax.parse: what depends only on
    the code is kept with it), and each run's report is its own: other values, other names."""
    import torch

    from torchgrad_magic import grad
    from torchgrad_magic.capture import syntax

    cell = "y = 3 * x ** 2\nz = y * w"
    assert syntax.parse(cell) is syntax.parse(cell) and syntax.parse("y = (") is None
    first = grad(cell, "x=3", namespace={"torch": torch, "w": 1.0})
    w = torch.tensor(5.0, requires_grad=True)
    second = grad(cell, "x=2", namespace={"torch": torch, "w": w})
    assert float(first.grads["x"]) == 18 and set(first.grads) == {"x"}
    assert float(second.grads["x"]) == 60 and w.grad is None  # (3x²·w at x = 2, w = 5)
