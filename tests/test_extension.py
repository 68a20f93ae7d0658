"""Loading, unloading, help and flags of the %%grad magic in a real InteractiveShell."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_and_load_ext_are_light():
    code = (
        "import sys\n"
        "import torchgrad_magic\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'torchgrad_magic')\n"
        "assert 'grad' in ip.magics_manager.magics['cell']\n"
        "print(sorted(m for m in ('torch', 'matplotlib', 'sympy', 'graphviz') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_value_config_refused_does_not_break_the_next_load():
    """A value the magic refuses, given before it is loaded (``ipython_config.py``, or
    ``%config GradMagic.language = 'fr'`` before ``%load_ext``): IPython keeps it in its config, so
    the load warns and drops it (it failed, and %%grad was gone until a valid value)."""
    code = (
        "import warnings\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.config.GradMagic.language = 'fr'\n"
        "with warnings.catch_warnings(record=True) as said:\n"
        "    warnings.simplefilter('always')\n"
        "    assert ip.run_cell('%load_ext torchgrad_magic').success\n"
        "print([str(w.message).split(':')[0] for w in said])\n"
        "assert ip.run_cell('%%grad --wrt x=3\\ny = 3 * x ** 2').success\n"
        "print(ip.magics_manager.registry['GradMagic'].language)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0] == "[\"%config GradMagic.language = 'fr' ignored\"]", out.stdout
    assert out.stdout.splitlines()[-1] == "auto"


def test_a_value_config_refused_keeps_the_valid_one_in_use():
    """``%config GradMagic.language = 'zh'``, then a refused ``'fr'``: the magic goes on in
    Chinese, and so does it after ``%reload_ext`` (it fell back to the default, 'auto')."""
    code = (
        "import warnings\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'torchgrad_magic')\n"
        "ip.run_line_magic('config', \"GradMagic.language = 'zh'\")\n"
        "ip.run_line_magic('config', \"GradMagic.digits = 6\")\n"
        "ip.run_line_magic('config', \"GradMagic.language = 'fr'\")\n"
        "print(ip.magics_manager.registry['GradMagic'].language)\n"
        "with warnings.catch_warnings(record=True) as said:\n"
        "    warnings.simplefilter('always')\n"
        "    assert ip.run_cell('%reload_ext torchgrad_magic').success\n"
        "print(len(said))\n"
        "magics = ip.magics_manager.registry['GradMagic']\n"
        "print(magics.language, magics.digits)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-3:] == ["zh", "0", "zh 6"], out.stdout + out.stderr


def test_unload_and_reload(shell):
    assert shell.run_cell("%unload_ext torchgrad_magic").success
    assert "grad" not in shell.magics_manager.magics["cell"]
    assert not shell.run_cell("%%grad --wrt x=3\ny = x").success  # no such magic now
    assert shell.run_cell("%load_ext torchgrad_magic").success
    assert shell.run_cell("%reload_ext torchgrad_magic").success
    assert shell.run_cell("%%grad --wrt x=3 --out r -q\ny = 3 * x ** 2").success
    assert shell.user_ns["r"].grads["x"].item() == 18


def test_help_is_real(shell, capsys):
    shell.run_cell("%%grad?")
    text = capsys.readouterr().out
    flags = (
        "--wrt", "--of", "--retain-grad", "--dtype", "--device", "--plot", "--range", "--save", "--order",
        "--hessian", "--jacobian", "--check", "--symbolic", "--expect", "--graph", "--times-input", "--lang",
        "--out", "--quiet",
    )  # fmt: skip
    for flag in flags:
        assert flag in text, flag
    assert "%%grad --wrt x=3" in text and "y = 3 * x ** 2" in text


def test_report_is_displayed(shell, capsys):
    assert shell.run_cell("%%grad --wrt x=3\ny = 3 * x ** 2").success
    out = capsys.readouterr().out
    assert "y = 27, dy/dx = 18 (at x = 3)" in out
    assert "MulBackward0" in out and "Out[" not in out


@pytest.mark.parametrize("line", ["--wrt x=3 -q", "--wrt x=3 --quiet", "--wrt x=3;", "--wrt x=3 --out r;"])
def test_quiet_and_semicolon_print_nothing(shell, capsys, line):
    assert shell.run_cell(f"%%grad {line}\ny = 3 * x ** 2").success
    assert capsys.readouterr().out == ""
    assert shell.user_ns["x"].grad.item() == 18


def test_out_stores_the_result(shell):
    shell.run_cell("%%grad --wrt u=3 v=4 --out res -q\nf = u**3 + v**2 + 4*u*v")
    res = shell.user_ns["res"]
    assert {k: v.item() for k, v in res.grads.items()} == {"u": 43, "v": 20}
    assert res.output.item() == 91 and res["u"].item() == 43


def test_bad_out_name(shell):
    outcome = shell.run_cell("%%grad --wrt x=3 --out 1r\ny = x")
    assert "--out 1r" in str(outcome.error_in_exec)


def test_magics_in_the_cell_work(shell, capsys):
    assert shell.run_cell("%%grad --wrt x=3\n%time y = 3 * x ** 2").success
    out = capsys.readouterr().out
    assert "Wall time" in out and "dy/dx = 18" in out


def test_cell_can_use_earlier_variables(shell):
    shell.run_cell("a = 6\nimport torch")
    shell.run_cell("%%grad --wrt x=3 --out r -q\ny = a * x ** 2 + 2 * x + 4")
    assert shell.user_ns["r"].grads["x"].item() == 38


def test_torch_is_available_without_import(shell):
    shell.user_ns.pop("torch", None)
    assert shell.run_cell("%%grad --wrt x=0 --out r -q\ny = torch.sin(x)").success
    assert shell.user_ns["r"].grads["x"].item() == pytest.approx(1.0)


def test_last_expression_shows_as_out_as_in_a_plain_cell(shell, capsys):
    outcome = shell.run_cell("%%grad --wrt x=3 -q\n3 * x ** 2", store_history=True)
    assert "Out[" in capsys.readouterr().out  # -q quiets the report, not the cell's own Out[]
    assert outcome.result.item() == 27 and shell.user_ns["_"].item() == 27
    shell.run_cell("%%grad --wrt x=3 -q\n3 * x ** 2;", store_history=True)
    assert capsys.readouterr().out == ""  # a trailing ; hides it, as in a plain cell


@pytest.mark.parametrize("body", ["y = 3 * x ** 2", "y = 3 * x ** 2\ny", "# only a comment"])
def test_the_cells_value_is_its_own_out_with_a_users_input_transformer(shell, body):
    """%%grad hands back the value of the cell's last expression as its Out[] (an AST transformer
    of ours catches it). A body that cannot end with one gets no transformer, unless the user's
    own transformers may make one: here a line transformer that shows the last name assigned,
    as ``ast_node_interactivity = "last_expr_or_assign"`` does. The earlier cell's Out[] stays."""

    def show_last_assigned(lines: list[str]) -> list[str]:
        last = lines[-1] if lines else ""
        name = last.split(" = ")[0].strip()
        return [*lines, name + "\n"] if " = " in last and name.isidentifier() else lines

    shell.input_transformers_post.append(show_last_assigned)
    try:
        earlier = shell.run_cell("'earlier'", store_history=True)
        outcome = shell.run_cell(f"%%grad --wrt x=3 -q\n{body}", store_history=True)
    finally:
        shell.input_transformers_post.remove(show_last_assigned)
    out = shell.user_ns["Out"]
    assert out[earlier.execution_count] == "earlier"
    if body.startswith("#"):
        assert outcome.result is None and outcome.execution_count not in out
    else:
        assert outcome.result.item() == 27 and out[outcome.execution_count].item() == 27


@pytest.mark.parametrize(
    "body, interactivity",
    [
        ("%time 3 * x ** 2", "last_expr"),  # (%time parses its own code: our transformer leaves it)
        ("%%time\ny = 3 * x ** 2\ny * 2", "last_expr"),
        ("y = 3 * x ** 2", "last_expr_or_assign"),  # (IPython shows y: so does the magic, as Out[n])
        ("y = 3 * x ** 2\ny += 1", "last_expr_or_assign"),
        ("y = 3 * x ** 2", "last_expr"),
    ],
)
def test_out_is_what_the_plain_cell_leaves(shell, capsys, body, interactivity):
    """The %%grad cell's Out[] is the plain cell's, under its own number, and the earlier cell's
    stays: a value a magic in the cell returns, and IPython's "last_expr_or_assign"."""
    import torch

    saved = shell.ast_node_interactivity
    shell.ast_node_interactivity = interactivity
    try:
        shell.user_ns["x"] = torch.tensor(3.0, requires_grad=True)
        plain = shell.run_cell(body, store_history=True)
        earlier = shell.run_cell("'earlier'", store_history=True)
        capsys.readouterr()
        magic = shell.run_cell(f"%%grad --wrt x=3 -q\n{body}", store_history=True)
        shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Out[")]
    finally:
        shell.ast_node_interactivity = saved
    out = shell.user_ns["Out"]
    assert out[earlier.execution_count] == "earlier"
    if plain.result is None:
        assert magic.result is None and magic.execution_count not in out and not shown
    else:
        assert torch.equal(magic.result, plain.result) and out[magic.execution_count] is magic.result
        assert [line.split(":")[0] for line in shown] == [f"Out[{magic.execution_count}]"]
