"""One catalogue for every user-facing sentence, complete in English and Chinese."""

from __future__ import annotations

import ast
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Failure
from test_errors import BAD

from torchgrad_magic import grad
from torchgrad_magic.messages import LANGUAGES, MESSAGES, locale_language, resolve, t, using

PACKAGE = Path(__file__).parents[1] / "torchgrad_magic"
CJK = re.compile(r"[\u4e00-\u9fff]")
CJK_OR_FULLWIDTH = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("message_id", sorted(MESSAGES))
def test_every_message_in_both_languages_with_the_same_fields(message_id):
    texts = MESSAGES[message_id]
    assert set(texts) == set(LANGUAGES)
    assert all(texts[lang].strip() for lang in LANGUAGES)
    assert fields(texts["en"]) == fields(texts["zh"])
    assert CJK_OR_FULLWIDTH.search(texts["zh"]), texts["zh"]


def _source_calls():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                yield path.name, node


def test_code_builds_no_user_sentences_inline():
    """Every error raised for users goes through t(), never an inline f-string."""
    for filename, call in _source_calls():
        name = getattr(call.func, "id", getattr(call.func, "attr", ""))
        if name in ("GradError", "UsageError") and call.args:
            arg = call.args[0]
            ok = (isinstance(arg, ast.Call) and getattr(arg.func, "id", "") == "t") or isinstance(
                arg, ast.Name
            )
            assert ok, f"{filename}:{call.lineno} builds a message inline"
        if name == "append" and getattr(call.func.value, "id", "") == "notes":
            made_by = getattr(getattr(call.args[0], "func", None), "id", "note")  # a Name: a Note made above
            assert made_by in ("note", "_no_dependence"), f"{filename}:{call.lineno}"


def test_every_message_id_used_exists_and_every_message_is_used():
    called, constants = set(), set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                constants.add(node.value)
            is_t = isinstance(node, ast.Call) and getattr(node.func, "id", "") == "t" and node.args
            if is_t and isinstance(node.args[0], ast.Constant):
                called.add(node.args[0].value)
    assert called <= set(MESSAGES), called - set(MESSAGES)
    roles = {m for m in MESSAGES if m.startswith(("role.", "help.")) and m.split(".", 1)[1] in constants}
    unused = set(MESSAGES) - constants - roles
    assert unused == set(), f"messages nobody shows: {unused}"


@pytest.mark.parametrize(
    ("env", "expected"), [("zh_CN.UTF-8", "zh"), ("zh_TW", "zh"), ("en_US.UTF-8", "en"), ("C", "en")]
)
def test_auto_follows_the_locale(monkeypatch, env, expected):
    monkeypatch.setenv("LC_ALL", env)
    assert locale_language() == expected
    assert resolve("auto") == expected
    assert resolve("en") == "en"


def test_using_nests_and_restores():
    with using("zh"):
        assert t("col.tensor") == "张量"
        with using("en"):
            assert t("col.tensor") == "tensor"
        assert t("col.tensor") == "张量"


def test_chinese_report():
    result = grad("y = 3 * x ** 2", wrt="x=3", lang="zh")
    text, html = (
        str(result),
        result._repr_html_().replace("\u2060", ""),
    )  # (word joiners keep CJK words on one line)
    assert "y = 27，dy/dx = 18（在 x = 3 处）" in text
    for word in ("张量", "角色", "输入", "输出"):
        assert word in text and word in html
    assert "提示" not in text  # the grad cell says why y has none: no note repeats it
    for technical in ("data", "grad", "grad_fn", "is_leaf", "requires_grad", "MulBackward0"):
        assert technical in text
    assert "note" not in text and " at " not in text


def test_chinese_notes():
    cell = "x = torch.tensor(3.0, requires_grad=True)\ny = 3 * x ** 2\ny.backward()\nprint(y.grad)"
    result = grad(cell, lang="zh")
    assert any(
        "单元格读取了 y.grad" in n and "y.retain_grad()" in n and "叶子" in n for n in result.note_texts
    )
    assert len(result.note_texts) == 1  # one fact, one note


@pytest.mark.parametrize(("line", "cell", "words"), BAD, ids=[f"{b[0]}|{b[1][:20]}" for b in BAD])
def test_every_error_in_chinese(run, line, cell, words):
    with pytest.raises(Failure) as info:
        run(f"{line} --lang zh" if line.strip() != "--wrt" else "--lang zh --wrt", cell)
    message = str(info.value)
    if "cell body is empty" in message:  # IPython's own check, before %%grad runs: its words, in English
        assert run.kind == "magic" and not cell.strip()
    else:
        assert CJK.search(message), message


def test_config_round_trip(shell, capsys):
    shell.run_cell("%config GradMagic")
    listing = capsys.readouterr().out
    for trait in ("language", "dtype", "digits", "max_items"):
        assert f"GradMagic.{trait}" in listing
    assert "Language of the report" in listing
    try:
        shell.run_cell("%config GradMagic.language = 'zh'")
        shell.run_cell("%config GradMagic.digits = 2")
        shell.run_cell("%config GradMagic.dtype = 'float64'")
        capsys.readouterr()
        shell.run_cell("%%grad --wrt x=1/3 --out r\ny = 3 * x ** 2")
        out = capsys.readouterr().out
        assert "张量" in out and "输出" in out and "0.33" in out and "0.333" not in out
        assert shell.user_ns["r"].leaves["x"].dtype.__str__() == "torch.float64"
        shell.run_cell("%%grad --wrt x=3 --lang en\ny = 3 * x ** 2")  # the cell's flag wins
        assert "tensor" in capsys.readouterr().out
        outcome = shell.run_cell("%%grad --wrt x=\ny = x")
        assert "'=' 后面没有值" in str(outcome.error_in_exec)
        assert shell.run_cell("%config GradMagic.language").success
    finally:
        for trait, value in (("language", "'auto'"), ("digits", "4"), ("dtype", "None")):
            shell.run_cell(f"%config GradMagic.{trait} = {value}")
    shell.run_cell("%config GradMagic.language = 'fr'")  # refused by the trait (IPython logs it)
    magic = shell.magics_manager.registry["GradMagic"]
    assert (magic.language, magic.digits, magic.dtype) == ("auto", 4, None)


def test_ipython_config_file(tmp_path):
    profile = tmp_path / "profile_default"
    profile.mkdir()
    (profile / "ipython_config.py").write_text("c.GradMagic.language = 'zh'\nc.GradMagic.max_items = 2\n")
    code = (
        "ip = get_ipython()\n"
        "ip.run_line_magic('load_ext', 'torchgrad_magic')\n"
        "ip.run_cell('%%grad --wrt x=torch.arange(10.)\\ny = x ** 2')\n"
    )
    script = tmp_path / "cell.py"
    script.write_text(code)
    out = subprocess.run(
        [sys.executable, "-m", "IPython", f"--ipython-dir={tmp_path}", "--no-banner", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "张量" in out.stdout, out.stdout + out.stderr
    assert "[0, …, 18]" in out.stdout  # max_items = 2: first and last value only


def test_readmes_show_the_chinese_report():
    root = Path(__file__).parents[1]
    text = str(grad("y = 3 * x ** 2", wrt="x=3", lang="zh"))
    for readme in ("README.md", "README.zh.md"):
        content = (root / readme).read_text()
        for line in text.splitlines():
            assert line in content, (readme, line)


def test_help_follows_the_language(shell, capsys):
    try:
        shell.run_cell("%config GradMagic.language = 'zh'")
        shell.run_cell("%%grad?")
        zh = capsys.readouterr().out
        assert "运行单元格，对输出求导" in zh and "求导的自变量" in zh and "--wrt" in zh
        assert "选项:" in zh and "options:" not in zh  # (argparse's own heading, too)
    finally:
        shell.run_cell("%config GradMagic.language = 'en'")
    shell.run_cell("%%grad?")
    en = capsys.readouterr().out
    assert "Run the cell, differentiate its output" in en and "variables to differentiate" in en
    assert "options:" in en
    shell.run_cell("%config GradMagic.language = 'auto'")
