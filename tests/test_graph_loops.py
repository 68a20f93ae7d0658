"""--graph as a user sees it in IPython: loops folded, the graph's own words in the report's
language, its caption and the legend of its edge labels with the drawing, the names --steps gives."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET

import pytest
import torch
from IPython.utils.capture import capture_output
from test_graph import walk

from torchgrad_magic import format as fmt
from torchgrad_magic.derive import graph
from torchgrad_magic.messages import MESSAGES

LOOP = "h = x\nfor i in range(100):\n    h = torch.sin(h) * 1.01 + h * 0.5"
TUTORIAL = "f = u**3 + v**2 + 4*u*v"
PRIMES = (  # 121 nodes and no repeated run: cut after 80 ("… 41 more nodes")
    "primes = {2,3,5,7,11,13,17,19,23,29,31,37,41,43,47,53,59,61,67,71,73,79,83,89,97,101,103,107,109,113}\n"
    "y = x\nfor i in range(120):\n    y = torch.sin(y) if i in primes else y * 1.01"
)
ENGLISH = ("backward graph", "more nodes", "ops", "each", "repeated", "repetition", "on the edges", "shared")
SVG_TEXT = "{http://www.w3.org/2000/svg}text"


def shown(shell, cell: str) -> tuple[dict, dict]:
    """Run *cell* in the shell as a user would; the display data (mime type -> content) of the
    report and of the graph (its own output: an SVG, a PNG and a text/plain stand-in)."""
    with capture_output() as captured:
        outcome = shell.run_cell(cell)
    assert outcome.success, outcome.error_in_exec or outcome.error_before_exec
    bundles = [out.data for out in captured.outputs]
    (report,) = [b for b in bundles if "text/html" in b]
    (drawing,) = [b for b in bundles if "image/svg+xml" in b]
    return report, drawing


def png_of(drawing: dict):
    from PIL import Image

    data = drawing["image/png"]
    data = base64.b64decode(data) if isinstance(data, str) else data
    return data, Image.open(io.BytesIO(data)).convert("RGB")


def svg_texts(drawing: dict) -> list[str]:
    return [el.text or "" for el in ET.fromstring(drawing["image/svg+xml"]).iter(SVG_TEXT)]


# ---------------------------------------------------------------------------
# 1. repeated ops fold into one box
# ---------------------------------------------------------------------------
def test_a_loop_is_one_box_that_says_how_often(shell):
    report, drawing = shown(shell, f"%%grad --wrt x=3 --graph --out r\n{LOOP}")
    result, h = shell.user_ns["r"], shell.user_ns["h"]
    text = drawing["text/plain"]
    assert len(text.splitlines()) < 40 and len(report["text/plain"].splitlines()) < 40
    (box,) = [n for n in result.graph.nodes if n.kind == "loop"]
    assert box.repeat == 100 and len(box.members) == 400
    assert len(box.members) + len(result.graph.nodes) - 1 == walk(h)[0]  # every autograd node, once
    assert "the same ops, repeated × 100" in text and "each time: 4 ops: Sin, Mul, Add" in text
    assert f"last repetition: h = {fmt.values(h, 4)}" in text  # the output's value: the last repetition's
    (x,) = [n for n in result.graph.nodes if n.name == "x"]
    assert x.grad == fmt.values(result.grads["x"], 4) and result.graph.edges == [(box.id, x.id)]
    png, image = png_of(drawing)
    assert image.size[0] < 600 and image.size[1] < 300 and len(png) < 40_000  # (unfolded: 423 × 4264)


def test_unfold_draws_every_node(shell):
    _, drawing = shown(shell, f"%%grad --wrt x=3 --graph unfold --out r\n{LOOP}")
    result = shell.user_ns["r"]
    assert not [n for n in result.graph.nodes if n.kind == "loop"]
    assert (len(result.graph.nodes), len(result.graph.edges)) == walk(shell.user_ns["h"])
    assert "… 321 more nodes" in drawing["text/plain"]


def test_unfold_is_documented_in_both_languages(shell, capsys):
    from torchgrad_magic.magic import _graph_kind

    assert _graph_kind("unfold") == "unfold"
    try:
        for language, words in (
            ("en", "--graph unfold draws each of them"),
            ("zh", "--graph unfold 逐个画出"),
        ):
            shell.run_cell(f"%config GradMagic.language = '{language}'")
            capsys.readouterr()
            shell.run_cell("%%grad?")
            assert words in " ".join(capsys.readouterr().out.split()), language
    finally:
        shell.run_cell("%config GradMagic.language = 'auto'")


def test_only_first_and_last_repetitions_show_values(shell):
    cell = "h = x\nfor i in range(20):\n    h = h * w + 1\n    if i == 9:\n        mid = h\ny = h + mid"
    _, drawing = shown(shell, f"%%grad --wrt x=1 w=1.01 --graph --out r\n{cell}")
    result, ns = shell.user_ns["r"], shell.user_ns
    boxes = [n for n in result.graph.nodes if n.kind == "loop"]
    # a tensor named in the middle of the loop cuts it: each part shows its own last value
    assert [b.repeat for b in boxes] == [10, 10]
    values = [line for b in boxes for line in b.extra if "=" in line]
    assert values == [
        f"last repetition: h = {fmt.values(ns['h'], 4)}",
        f"last repetition: mid = {fmt.values(ns['mid'], 4)}",
    ]
    leaves = {n.name: n for n in result.graph.nodes if n.kind == "leaf"}
    assert set(leaves) == {"x", "w"}  # read by every repetition: outside the boxes, edges to each
    assert leaves["w"].grad == fmt.values(result.grads["w"], 4)
    assert sum(1 for a, b in result.graph.edges if b == leaves["w"].id) == 2
    shared = (
        f"↑ the same ops, repeated × 10 · {values[1]} {MESSAGES['graph.shared']['en']}"  # which of the two
    )
    assert shared in drawing["text/plain"]


CELLS_WITHOUT_RUNS = {
    "tutorial": (TUTORIAL, "u=3 v=4"),
    "three repetitions": ("h = x\nfor i in range(3):\n    h = torch.sin(h) * 1.01 + h * 0.5", "x=1"),
    "six products": ("y = x * 2 * 3 * 4 * 5 * 6 * 7", "x=1"),
}


@pytest.mark.parametrize("name", CELLS_WITHOUT_RUNS)
def test_graphs_without_long_runs_stay_as_they_were(shell, name):
    cell, wrt = CELLS_WITHOUT_RUNS[name]
    shown(shell, f"%%grad --wrt {wrt} --graph --out r\n{cell}")
    g = shell.user_ns["r"].graph
    assert graph.fold_repeats(g) is g and not [n for n in g.nodes if isinstance(n, graph.Box)]
    assert (len(g.nodes), len(g.edges)) == walk(shell.user_ns["r"].output)


# ---------------------------------------------------------------------------
# 2. the graph's words are in the report's language, shown after the cell's using() ended
# ---------------------------------------------------------------------------
def english_left(text: str) -> list[str]:
    return [w for w in ENGLISH if re.search(rf"\b{w}\b", text)]


def test_lang_flag_reaches_every_word_of_the_graph(shell):
    report, drawing = shown(shell, f"%%grad --wrt x=3 --graph --lang zh --out r\n{LOOP}")
    text = drawing["text/plain"]
    assert "张量" in report["text/plain"]
    assert text.splitlines()[0] == "反向计算图：从 h 回到叶子张量（梯度流动的方向）"
    assert (
        "同样的运算，重复 × 100" in text
        and "每次：4 个运算：Sin, Mul, Add" in text
        and "最后一次重复" in text
    )
    assert english_left(text) == [] and english_left(" ".join(svg_texts(drawing))) == []
    result = shell.user_ns["r"]
    assert result.graph.language == "zh" and result.graph.to_text() == text  # no language in use now
    assert english_left(str(result)) == []


def test_configured_language_reaches_every_word_of_the_graph(shell):
    try:
        shell.run_cell("%config GradMagic.language = 'zh'")
        _, drawing = shown(shell, f"%%grad --wrt x=1 --graph\n{PRIMES}")
        text = drawing["text/plain"]
        assert "…… 另有 41 个节点" in text and english_left(text) == []
        assert "…… 另有 41 个节点" in svg_texts(drawing)
        setup = (
            "from torch import nn\ntorch.manual_seed(0)\ndata = torch.randn(2, 4)\n"
            "net = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(3)])"
        )
        assert shell.run_cell(setup).success
        _, drawing = shown(shell, "%%grad --graph\nloss = net(data).pow(2).sum()")
        text = drawing["text/plain"]
        assert "net.0–2 (Sequential) × 3" in text and "每个：3 个运算：T, Addmm, Tanh" in text
        assert english_left(text) == []
    finally:
        shell.run_cell("%config GradMagic.language = 'auto'")


# ---------------------------------------------------------------------------
# 3. the caption sits with its image; 4. the edge labels are explained there
# ---------------------------------------------------------------------------
def test_the_caption_is_the_first_line_of_the_graph_not_of_the_report(shell):
    report, drawing = shown(shell, "%%grad --wrt x=3 --graph --out r\ny = 3 * x ** 2")
    caption = "backward graph: from y back to the leaves (the way gradients flow)"
    assert caption not in report["text/html"]
    assert drawing["text/plain"].splitlines()[0] == caption and svg_texts(drawing)[0] == caption
    # a terminal prints each output's text/plain: the graph's text once, under the report
    assert caption not in report["text/plain"] and drawing["text/plain"].count(caption) == 1
    assert str(shell.user_ns["r"]).count(caption) == 1  # str(result) holds it all, once
    _, image = png_of(drawing)
    lay = shell.user_ns["r"].graph.layout()
    top = min(y for _, y, _, _ in lay.boxes.values())
    assert image.size == (int(lay.width), int(lay.height))
    above = [image.getpixel((x, y)) for x in range(image.size[0]) for y in range(int(top) - 2)]
    assert sum(1 for p in above if max(p) < 100) > 200  # the caption's dark letters above the boxes


def test_an_edge_label_keeps_a_factor_near_one(shell):
    _, drawing = shown(shell, "%%grad --wrt x=2 --graph --steps\ny = x * 1.0001")
    assert "[×1.0001 → 1.0001] x (AccumulateGrad)" in drawing["text/plain"], drawing["text/plain"]


def test_edge_labels_come_with_a_legend(shell):
    legend = MESSAGES["graph.legend"]
    _, drawing = shown(shell, f"%%grad --wrt u=3 v=4 --graph --steps\n{TUTORIAL}")
    assert drawing["text/plain"].splitlines()[1] == legend["en"] and legend["en"] in svg_texts(drawing)
    assert "[×27 → 27] u (AccumulateGrad)" in drawing["text/plain"]
    _, drawing = shown(shell, f"%%grad --wrt u=3 v=4 --graph --steps --lang zh\n{TUTORIAL}")
    assert drawing["text/plain"].splitlines()[1] == legend["zh"] and legend["zh"] in svg_texts(drawing)
    _, drawing = shown(shell, f"%%grad --wrt u=3 v=4 --graph\n{TUTORIAL}")  # no labels, no legend
    assert legend["en"] not in drawing["text/plain"] and legend["en"] not in svg_texts(drawing)


# ---------------------------------------------------------------------------
# 5. the graph names nodes as --steps does
# ---------------------------------------------------------------------------
def test_graph_nodes_have_the_names_the_steps_made_up(shell):
    _, drawing = shown(shell, f"%%grad --wrt u=3 v=4 --graph --steps --out r\n{TUTORIAL}")
    result = shell.user_ns["r"]
    g, steps = result.graph, result.steps
    assert steps.made_up == ("a", "b", "c", "e", "h")  # (no d: it reads as ∂; no g: the gradient in formulas)
    by_name = {n.name: n for n in g.nodes}
    assert {n.name for n in g.nodes if n.kind == "function"} == set(steps.made_up)
    kids = g.children()
    for line in steps.forward:  # "h = e · v": the graph's node h reads e and v
        name, expression = line.split(" = ", 1)
        operands = set(re.findall(r"[a-z]\w*", expression)) & set(by_name)
        assert {g.nodes[k].name for k in kids[by_name[name].id]} == operands, line
    assert "a (PowBackward0)" in drawing["text/plain"] and "a (PowBackward0)" in svg_texts(drawing)


def test_names_from_steps_stay_out_of_the_way_without_steps(shell):
    shown(shell, "%%grad --wrt x=3 --graph --out r\ny = 3 * x ** 2")
    assert [n.name for n in shell.user_ns["r"].graph.nodes] == ["y", None, "x"]
    shown(shell, "%%grad --wrt x=3 --graph --steps --out r\ny = 3 * x ** 2")
    assert [n.name for n in shell.user_ns["r"].graph.nodes] == ["y", "a", "x"]
    assert torch.equal(shell.user_ns["r"].grads["x"], torch.tensor(18.0))
