"""The magic line: bracket-aware splitting and --wrt specs (no torch needed)."""

from __future__ import annotations

import pytest

from torchgrad_magic.capture.spec import GradError, WrtSpec, parse_wrt, split_line


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        ("--wrt x=3", ["--wrt", "x=3"]),
        ("--wrt x=torch.linspace(-20, 20, 20)", ["--wrt", "x=torch.linspace(-20, 20, 20)"]),
        ("--wrt u=3 v=4 --of f", ["--wrt", "u=3", "v=4", "--of", "f"]),
        ("--wrt x=[1, 2, {'a': (3, 4)}]", ["--wrt", "x=[1, 2, {'a': (3, 4)}]"]),
        ('--wrt "x=torch.ones(2, 3)"', ["--wrt", "x=torch.ones(2, 3)"]),
        ("--wrt x='a b'", ["--wrt", "x='a b'"]),
        ("--wrt x = 3 y= 4 z =5", ["--wrt", "x=3", "y=4", "z=5"]),
        ("--wrt x= -1", ["--wrt", "x=-1"]),
        ("--wrt x= --of y", ["--wrt", "x=", "--of", "y"]),
        ("  ", []),
    ],
)
def test_split_line(line, tokens):
    assert split_line(line) == tokens


@pytest.mark.parametrize("line", ["--wrt x=(1", "--wrt x=1)", "--wrt x='abc", "--wrt x=[1, (2]"])
def test_split_line_rejects_unbalanced(line):
    with pytest.raises(GradError):
        split_line(line)


def test_parse_wrt_forms():
    assert parse_wrt("u=3 v=4") == [WrtSpec("u", "3"), WrtSpec("v", "4")]
    assert parse_wrt(["x=torch.linspace(-20, 20, 20)"]) == [WrtSpec("x", "torch.linspace(-20, 20, 20)")]
    assert parse_wrt(["x"]) == [WrtSpec("x")]
    assert parse_wrt(None) == []
    (spec,) = parse_wrt({"x": 3.0})
    assert spec.name == "x" and spec.value == 3.0 and spec.has_value


@pytest.mark.parametrize(
    ("wrt", "message"),
    [
        ("x=", "empty"),
        ("3=x", "not a valid variable name"),
        ("x.y=3", "not a valid variable name"),
        ("class=1", "keyword"),
        ("x=1 x=2", "given twice"),
        ("x=1,", "not commas"),
        ({"1x": 3}, "not a valid variable name"),
        ([3], "expected 'name=value' strings"),
        ("", "at least one name"),
    ],
)
def test_parse_wrt_errors(wrt, message):
    with pytest.raises(GradError, match=message):
        parse_wrt(wrt)
