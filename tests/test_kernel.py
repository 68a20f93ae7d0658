"""The same behaviour in a real Jupyter kernel (jupyter_client), and the example notebook (nbclient)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import run_demo

EXAMPLES = sorted(  # (the quiz worksheets hide these numbers: tests/test_quiz.py runs them)
    p
    for p in (Path(__file__).parents[1] / "examples").glob("*.ipynb")
    if ".executed." not in p.name and not p.name.startswith("quiz")
)

TUTORIAL = [
    ("--wrt x=3", "y = 3 * x ** 2", "y = 27, dy/dx = 18 (at x = 3)", "MulBackward0"),
    ("--wrt x=3", "y = 6 * x ** 2 + 2 * x + 4", "y = 64, dy/dx = 38 (at x = 3)", "AddBackward0"),
    (
        "--wrt u=3 v=4",
        "f = u**3 + v**2 + 4*u*v",
        "f = 91, ∂f/∂u = 43, ∂f/∂v = 20 (at u = 3, v = 4)",
        "AddBackward0",
    ),
    ("--wrt x=torch.linspace(-20, 20, 20)", "Y = x ** 2", "d(sum(Y))/dx = [-40, -35.79", "PowBackward0"),
]


@pytest.mark.parametrize(("line", "cell", "headline", "grad_fn"), TUTORIAL)
def test_tutorial_examples_in_a_kernel(kernel, line, cell, headline, grad_fn):
    reply = kernel.run(f"%%grad {line}\n{cell}")
    assert reply.status == "ok", reply.text()
    (shown,) = reply.of_type("display_data")  # one report, no Out[] echo
    assert not reply.of_type("execute_result")
    assert headline in shown["data"]["text/plain"]
    html = shown["data"]["text/html"]
    assert "<table>" in html and grad_fn in html and "requires_grad" in html
    assert headline.replace("∂", "&#x2202;") in html or headline in html


def test_grads_match_autograd_in_the_kernel(kernel):
    kernel.run("%%grad --wrt u=3 v=4 --out r -q\nf = u**3 + v**2 + 4*u*v")
    oracle = kernel.value(
        "_u = torch.tensor(3., requires_grad=True); _v = torch.tensor(4., requires_grad=True)\n"
        "[g.item() for g in torch.autograd.grad(_u**3 + _v**2 + 4*_u*_v, [_u, _v])]"
    )
    assert kernel.value("[r.grads['u'].item(), r.grads['v'].item()]") == oracle == "[43.0, 20.0]"


def test_the_kernel_is_the_install_asked_for(kernel):
    """TGM_KERNEL_VERSIONS=torch==2.9.1,ipython==7.34.0 (scripts/compat.py --kernel-suite): the kernel
    suite really ran on that stack; otherwise this interpreter's own versions."""
    import importlib.metadata as md

    wanted = os.environ.get("TGM_KERNEL_VERSIONS")
    pins = dict(p.split("==") for p in wanted.split(",")) if wanted else {
        d: md.version(d) for d in ("torch", "ipython", "ipykernel")
    }  # fmt: skip
    for dist, version in pins.items():
        found = kernel.value(f"__import__('importlib.metadata').metadata.version({dist!r})").strip("'")
        assert found == version, (dist, found, version)


def test_nonleaf_note_comes_with_the_warning_in_a_kernel(kernel):
    """PyTorch's own warning reaches the user as in a plain cell (the corpus suite compares the two
    exactly, repeats included); the note adds the why, each time."""
    cell = "x = torch.tensor(3.0, requires_grad=True)\ny = 3 * x ** 2\ny.backward()\nprint(y.grad)"
    for time in (1, 2):
        reply = kernel.run(f"%%grad\n{cell}")
        assert reply.status == "ok"
        warned = [o["text"] for o in reply.of_type("stream") if o["name"] == "stderr"]
        if time == 1:
            assert any("UserWarning: The .grad attribute of a Tensor that is not a leaf" in w for w in warned)
        assert "the cell read y.grad: None, since y is not a leaf" in reply.text()
        assert kernel.value("x.grad.item()") == "18.0"


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%grad --wrt x=\ny = x", "the value after '=' is empty"),
        ("%%grad --wrt 3=x\ny = x", "'3' is not a valid variable name"),
        ("%%grad --wrt x=nosuchthing\ny = x", "name 'nosuchthing' is not defined"),
        ("%%grad --wrt x=3 --nonsense\ny = x", "unrecognized arguments: --nonsense"),
        ("%%grad --wrt x=torch.arange(3)\ny = x", "only floating-point tensors can require grad"),
    ],
)
def test_errors_in_a_kernel(kernel, cell, message):
    reply = kernel.run(cell)
    assert reply.status == "error" and reply.ename == "UsageError"
    assert message in reply.evalue
    assert "UsageError: %%grad: " in reply.text() or "UsageError: unrecognized" in reply.text()
    assert "Traceback" not in reply.text()
    assert kernel.value("1 + 1") == "2"
    assert kernel.value("(torch.is_grad_enabled(), torch.get_default_dtype())") == "(True, torch.float32)"


@pytest.mark.parametrize(
    ("cell", "note"),
    [
        ("%%grad --wrt x=3\nprint('no output')", "made no tensor output"),
        ("%%grad --wrt x=3\ny = torch.tensor(2.0) * 3", "y does not depend on x"),
        ("%%grad\nimport math", "nothing to differentiate"),
    ],
)
def test_nothing_to_differentiate_runs_in_a_kernel(kernel, cell, note):
    reply = kernel.run(cell)
    assert reply.status == "ok", reply.text()  # "Run all" never stops because of %%grad
    assert note in reply.text()
    assert kernel.value("1 + 1") == "2"


def test_users_error_in_a_kernel(kernel):
    reply = kernel.run("%%grad --wrt x=3 --dtype float64\ny = 3 * x ** 2\nraise ValueError('oops')")
    assert reply.status == "error"
    (error,) = reply.of_type("error")  # the user's own traceback, once, as a plain cell shows it
    assert error["ename"] == "ValueError" and "oops" in error["evalue"]
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert "raise ValueError('oops')" in traceback and "torchgrad_magic" not in traceback
    assert reply.ename == "ValueError"  # the cell's own error, not ours
    assert kernel.value("torch.get_default_dtype()") == "torch.float32"
    assert kernel.run("%%grad --wrt x=3\ny = 3 * x ** 2").status == "ok"


def test_unload_reload_in_a_kernel(kernel):
    assert kernel.run("%unload_ext torchgrad_magic").status == "ok"
    assert kernel.run("%%grad --wrt x=3\ny = x").status == "error"
    assert kernel.run("%load_ext torchgrad_magic").status == "ok"
    assert kernel.run("%reload_ext torchgrad_magic").status == "ok"
    assert kernel.run("%%grad --wrt x=3\ny = 3 * x ** 2").status == "ok"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_notebook_runs(path):
    nb = run_demo.execute(path)
    texts = [run_demo.cell_text(c) for c in nb.cells if c.cell_type == "code"]
    joined = "\n".join(texts)
    chinese = ".zh." in path.name
    sep = "，" if chinese else ", "
    for expected in (
        "dy/dx = 18",
        "dy/dx = 38",
        f"∂f/∂u = 43{sep}∂f/∂v = 20",
        "d(sum(Y))/dx = [-40",
        "dy/dx = 24",
    ):
        assert expected in joined
    assert "Error" not in joined
    if chinese:
        assert "张量" in joined and "输出" in joined and "note:" not in joined


def test_chinese_in_a_kernel(kernel):
    assert kernel.run("%config GradMagic.language = 'zh'").status == "ok"
    try:
        for line, cell, _, grad_fn in TUTORIAL:
            reply = kernel.run(f"%%grad {line}\n{cell}")
            (shown,) = reply.of_type("display_data")
            for text in (shown["data"]["text/plain"], shown["data"]["text/html"].replace("\u2060", "")):
                assert "张量" in text and "角色" in text and "输出" in text and grad_fn in text
                assert ("提示" in text) == ("linspace" in line)  # a note only where the table cannot say it
        reply = kernel.run("%%grad --wrt u=3 v=4\nf = u**3 + v**2 + 4*u*v")
        assert "f = 91，∂f/∂u = 43，∂f/∂v = 20（在 u = 3，v = 4 处）" in reply.text()
        reply = kernel.run(
            "%%grad\nx = torch.tensor(3.0, requires_grad=True)\ny = 3 * x ** 2\ny.backward()\ny.grad"
        )
        assert "单元格读取了 y.grad" in reply.text()
        reply = kernel.run("%%grad --wrt x=3\ny = torch.tensor(2.0) * 3")
        assert reply.status == "ok" and "y 与 x 无关" in reply.text()
        assert "tensor" in kernel.run("%%grad --wrt x=3 --lang en\ny = 3 * x ** 2").text()
    finally:
        kernel.run("%config GradMagic.language = 'auto'")


@pytest.mark.parametrize(
    "cell",
    [
        "%%grad --wrt x=torch.linspace(-20, 20, 20) --plot\nY = x ** 2",
        "%%grad --wrt x=3 --plot\ny = 3 * x ** 2",
        "%%grad --wrt u=3 v=4 --plot\nf = u**3 + v**2 + 4*u*v",
    ],
)
def test_plot_arrives_as_one_image(kernel, cell):
    assert kernel.run("%matplotlib inline").status == "ok"
    reply = kernel.run(cell)
    assert reply.status == "ok", reply.text()
    images = [o for o in reply.outputs if "image/png" in o["content"].get("data", {})]
    assert len(images) == 1
    assert images[0]["content"]["data"]["image/png"]  # base64 text
    assert kernel.value("import matplotlib.pyplot as plt; plt.get_fignums()") == "[]"
    assert kernel.value("1 + 1") == "2"


def test_plot_figure_on_the_result_in_a_kernel(kernel):
    kernel.run("%%grad --wrt x=3 --plot --out r -q\ny = 3 * x ** 2")
    assert kernel.value("type(r.figure).__name__") == "'Figure'"
    assert kernel.value("[c.label for c in r.curves]") == "['y', 'dy/dx', 'tangent']"


FLAGS = [
    ("%%grad --wrt x=3 --order 2\ny = 6 * x ** 2 + 2 * x + 4", "dy/dx = 38, d²y/dx² = 12"),
    ("%%grad --wrt u=3 v=4 --hessian\nf = u**3 + v**2 + 4*u*v", "Hessian of f"),
    ("%%grad --wrt x=torch.linspace(-1, 1, 3) --jacobian\nY = x ** 2", "Jacobian of Y (3×3"),
    ("%%grad --wrt x=0 --check\ny = torch.abs(x)", "not differentiable at x = 0"),
    ("%%grad --wrt x=3 --symbolic\ny = 6 * x ** 2 + 2 * x + 4", "dy/dx = 12*x + 2 = 38 at x = 3"),
    ("%%grad --wrt inp=[1.0, 2.0] --times-input\ny = (inp ** 2).sum()", "grad×input"),
]


@pytest.mark.parametrize(("cell", "expected"), FLAGS, ids=[c.split("\n")[0] for c, _ in FLAGS])
def test_each_flag_in_a_kernel(kernel, cell, expected):
    reply = kernel.run(cell)
    assert reply.status == "ok", reply.text()
    (shown,) = reply.of_type("display_data")
    assert expected in shown["data"]["text/plain"]
    assert "<table>" in shown["data"]["text/html"]


def test_symbolic_is_latex_in_the_notebook(kernel):
    reply = kernel.run("%%grad --wrt x=3 --symbolic\ny = 6 * x ** 2 + 2 * x + 4")
    (shown,) = reply.of_type("display_data")
    assert r"$$\frac{d y}{d x} = 12 x + 2 = 38" in shown["data"]["text/html"]


def test_expect_in_a_kernel(kernel):
    ok = kernel.run("%%grad --wrt x=3 --expect 38\ny = 6 * x ** 2 + 2 * x + 4")
    assert ok.status == "ok" and ok.text().strip() == "as expected: dy/dx = 38"
    wrong = kernel.run("%%grad --wrt x=3 --expect 36\ny = 6 * x ** 2 + 2 * x + 4")
    assert wrong.status == "error" and wrong.ename == "UsageError"
    assert "expected 36, got 38" in wrong.evalue
    assert kernel.value("1 + 1") == "2"


def test_autograd_error_help_in_a_kernel(kernel):
    reply = kernel.run("%%grad --wrt x=3\ny = x * torch.ones(3)\ny.backward()")
    assert reply.status == "error" and reply.ename == "RuntimeError"  # PyTorch's own error, as without %%grad
    (error,) = reply.of_type("error")
    assert "grad can be implicitly created only for scalar outputs" in error["evalue"]
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert "what it means:" in shown and "y.sum().backward()" in shown  # one line of help under it
    assert "torchgrad_magic" not in shown


def test_graph_in_a_kernel(kernel):
    reply = kernel.run("%%grad --wrt x=3 --graph\ny = 3 * x ** 2")
    report, drawing = reply.of_type("display_data")
    assert "<svg" not in report["data"]["text/html"]  # SVG inside HTML is stripped when untrusted
    # the graph's text is its own output's (a terminal shows it once), under its caption
    assert "y (MulBackward0) · data 27" not in report["data"]["text/plain"]
    assert (
        drawing["data"]["text/plain"].startswith("backward graph")
        and "y (MulBackward0) · data 27" in drawing["data"]["text/plain"]
    )
    assert report["metadata"]["torchgrad_magic"] and drawing["metadata"]["torchgrad_magic"]
    svg = drawing["data"]["image/svg+xml"]
    assert svg.startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in svg
    assert "x (AccumulateGrad)" in svg and "PowBackward0" in svg
    assert drawing["data"]["image/png"]  # base64 PNG for front ends without SVG


def test_model_cell_in_a_kernel_matches_a_plain_run(kernel):
    """A model from an earlier cell: no --wrt, the parameters are the leaves, named as the model
    names them; the grads equal a plain run's named_parameters() grads, and --steps/--graph run."""
    setup = (
        "from torch import nn\ntorch.manual_seed(0)\n"
        "net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))\n"
        "data, target = torch.randn(16, 8), torch.randn(16, 1)"
    )
    assert kernel.run(setup).status == "ok"
    plain = kernel.run(
        "loss = ((net(data) - target) ** 2).mean()\nloss.backward()\n"
        "plain = {n: p.grad.clone() for n, p in net.named_parameters()}\nnet.zero_grad(set_to_none=True)"
    )
    assert plain.status == "ok", plain.text()
    reply = kernel.run(
        "%%grad --out r --steps --graph\nloss = ((net(data) - target) ** 2).mean()\nloss.backward()"
    )
    assert reply.status == "ok", reply.text()
    text = reply.text()
    assert "grads of 4 parameters" in text and "net.0.weight  (32, 8)" in text and "chain rule" in text
    same = kernel.value(
        "all(torch.equal(r.grads['net.' + n], g) and torch.equal(p.grad, g)"
        " for (n, g), p in zip(plain.items(), net.parameters()))"
    )
    assert same == "True"
