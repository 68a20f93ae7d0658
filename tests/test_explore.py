"""``--explore``: the grid's numbers against autograd, the display bundle, and the cell run once."""

from __future__ import annotations

import base64
import json

import pytest
import torch

from torchgrad_magic import GradError, grad
from torchgrad_magic.render.explore import MIME, parse_ranges

VEGA = MIME


def params(spec: dict) -> dict:
    return {p["name"]: p for p in spec["params"]}


def grid(axis: dict) -> list[float]:
    """The slider's values, from the bound range input's min, max and step."""
    bind = axis["bind"]
    count = round((bind["max"] - bind["min"]) / bind["step"]) + 1
    return [bind["min"] + bind["step"] * i for i in range(count)]


def oracle(function, *values: float) -> tuple[float, list[float]]:
    leaves = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    out = function(*leaves)
    return out.item(), [g.item() for g in torch.autograd.grad(out, leaves)]


# ---------------------------------------------------------------------------
# the numbers, through grad() (no IPython)
# ---------------------------------------------------------------------------
def test_one_input_matches_autograd_on_the_grid():
    result = grad("y = x ** 3", wrt="x=1", explore=True)
    spec = result.explorer.bundle()[VEGA]
    found = params(spec)
    xs = grid(found["s0"])
    assert xs[0] == pytest.approx(-1) and xs[-1] == pytest.approx(3)  # 1 ± max(2, 1)
    assert len(xs) == 81 and xs[1] - xs[0] == pytest.approx(0.05)  # (a round step: 4 / 100 is 0.04)
    assert found["s0"]["value"] == pytest.approx(1)
    f, d = found["F"]["value"], found["D0"]["value"]
    for x in (1.0, 2.0, -1.0, 0.0, 2.6):
        i = round((x - xs[0]) / (xs[1] - xs[0]))
        value, (slope,) = oracle(lambda t: t**3, xs[i])
        assert f[i] == pytest.approx(value, rel=1e-5, abs=1e-6)
        assert d[i] == pytest.approx(slope, rel=1e-5, abs=1e-6)
    assert d[xs.index(min(xs, key=lambda v: abs(v - 1)))] == pytest.approx(3)
    assert d[xs.index(min(xs, key=lambda v: abs(v - 2)))] == pytest.approx(12)


def test_two_inputs_match_autograd_on_the_grid():
    result = grad("f = u**3 + v**2 + 4*u*v", wrt="u=3 v=4", explore=True)
    found = params(result.explorer.bundle()[VEGA])
    us, vs = grid(found["s0"]), grid(found["s1"])
    assert (len(us), len(vs)) == (31, 41)  # 0 to 6 and 0 to 8, 0.2 apart
    f, du, dv = found["F"]["value"], found["D0"]["value"], found["D1"]["value"]
    for i, j in ((15, 20), (0, 40), (30, 7), (23, 3)):
        value, (gu, gv) = oracle(lambda u, v: u**3 + v**2 + 4 * u * v, us[i], vs[j])
        k = i * len(vs) + j
        assert f[k] == pytest.approx(value, rel=1e-5)
        assert du[k] == pytest.approx(gu, rel=1e-5) and dv[k] == pytest.approx(gv, rel=1e-5)
    at = us.index(3) * len(vs) + vs.index(4)
    assert (f[at], du[at], dv[at]) == (91, 43, 20)


def test_the_slider_moves_in_round_steps():
    """x = 3 explores 0 to 6: 0.05 apart (not 0.06), so the slider lands on 0.5, 1.25 and 3 exactly,
    and the numbers there are autograd's."""
    found = params(grad("y = 3 * x ** 2", wrt="x=3", explore=True).explorer.bundle()[VEGA])
    bind = found["s0"]["bind"]
    assert (bind["min"], bind["max"], bind["step"], found["s0"]["value"]) == (0, 6, 0.05, 3)
    xs = grid(found["s0"])
    for x in (0.5, 1.25, 3.0):
        i = round(x / 0.05)
        assert xs[i] == pytest.approx(x, abs=1e-12)
        assert found["D0"]["value"][i] == pytest.approx(6 * x, rel=1e-6)
    # a point off the round grid stays a value of the slider (the grid is shifted to it)
    shifted = params(grad("y = x ** 2", wrt="x=0.37", explore="0:1").explorer.bundle()[VEGA])
    assert shifted["s0"]["bind"]["step"] == 0.01 and shifted["s0"]["value"] == pytest.approx(0.37)


def test_given_range_and_a_point_on_the_grid():
    result = grad("y = x ** 3", wrt="x=1", explore="x=-2:2")
    found = params(result.explorer.bundle()[VEGA])
    assert grid(found["s0"])[0] == pytest.approx(-2) and grid(found["s0"])[-1] == pytest.approx(2)
    assert found["s0"]["value"] == pytest.approx(1)
    # a range the point is not on a grid step of: the grid is shifted so that the point is one of them
    shifted = params(grad("y = x ** 3", wrt="x=0.3", explore="-1:1").explorer.bundle()[VEGA])
    assert min(abs(v - 0.3) for v in grid(shifted["s0"])) < 1e-6  # (x is float32 0.3)


def test_vector_input_moves_along_the_points():
    result = grad("Y = x ** 2\nY.sum().backward()", wrt="x=torch.linspace(-20, 20, 20)", explore=True)
    found = params(result.explorer.bundle()[VEGA])
    x = torch.linspace(-20, 20, 20)
    assert found["X0"]["value"] == pytest.approx(x.tolist(), rel=1e-6)
    assert found["P0"]["value"] == list(range(20))
    assert found["F"]["value"] == pytest.approx((x**2).tolist(), rel=1e-5)
    assert found["D0"]["value"] == pytest.approx((2 * x).tolist(), rel=1e-5)  # dY[i]/dx[i]
    assert found["s0"]["bind"]["max"] == 19


def test_long_vector_input_is_picked_not_sent_whole():
    result = grad("Y = torch.sin(x)", wrt="x=torch.linspace(-3, 3, 100_000)", explore=True)
    found = params(result.explorer.bundle()[VEGA])
    picks = found["P0"]["value"]
    assert len(picks) <= 201 and picks[0] == 0 and picks[-1] == 99_999
    x = torch.linspace(-3, 3, 100_000)[picks]
    assert found["D0"]["value"] == pytest.approx(torch.cos(x).tolist(), abs=1e-5)


def test_not_elementwise_is_a_note():
    result = grad("Y = torch.softmax(x, 0)", wrt="x=torch.linspace(-1, 1, 4)", explore=True)
    assert result.explorer is None
    assert any(n.id == "explore.not_elementwise" for n in result.notes)


@pytest.mark.parametrize(
    ("cell", "note_id"),
    [
        ("y = x ** 3 if x.item() > 0 else -x", "explore.escapes"),
        ("y = x * torch.rand_like(x)", "explore.random"),
    ],
)
def test_cannot_be_evaluated_off_the_point(cell, note_id):
    result = grad(cell, wrt="x=1", explore=True)
    assert result.explorer is None
    assert note_id in [n.id for n in result.notes]
    assert result.grads["x"] is not None  # the report at the point is still there


def test_three_inputs_are_a_note():
    result = grad("f = a * b * c", wrt="a=1 b=2 c=3", explore=True)
    assert result.explorer is None and "explore.shape" in [n.id for n in result.notes]


@pytest.mark.parametrize("value", ["x=2:1", "x=a:b", "x=-2", "z=-2:2"])
def test_bad_ranges_are_refused(value):
    with pytest.raises(GradError, match="--explore"):
        parse_ranges(value, ["x"])


def test_parse_ranges():
    assert parse_ranges(True, ["x"]) == {}
    assert parse_ranges("-2:2", ["x"]) == {None: (-2.0, 2.0)}
    assert parse_ranges("u=0:5 v=1:2", ["u", "v"]) == {"u": (0.0, 5.0), "v": (1.0, 2.0)}


# ---------------------------------------------------------------------------
# the magic in an InteractiveShell
# ---------------------------------------------------------------------------
def displayed(shell, cell: str) -> list[tuple[object, dict]]:
    from unittest import mock

    shown: list[tuple[object, dict]] = []
    with mock.patch("IPython.display.display", lambda *objs, **kw: shown.append((objs[0], kw))):
        outcome = shell.run_cell(cell)
    assert outcome.success, outcome.error_in_exec or outcome.error_before_exec
    return shown


def test_magic_shows_the_bundle_without_html(shell):
    shown = displayed(shell, "%%grad --wrt x=1 --explore\ny = x ** 3")
    bundles = [(obj, kw) for obj, kw in shown if isinstance(obj, dict) and VEGA in obj]
    assert len(bundles) == 1
    bundle, kw = bundles[0]
    assert set(bundle) == {VEGA, "image/png", "text/plain"}  # no text/html: JupyterLab would prefer it
    assert bundle["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert kw["metadata"][VEGA]["embed_options"]["renderer"] == "svg"
    assert "explorer of y: x from -1 to 3" in bundle["text/plain"]


def test_negative_range_on_the_magic_line(shell):
    shell.run_cell("%%grad --wrt x=1 --explore -2:2 --out r -q\ny = x ** 3")
    axis = shell.user_ns["r"].explorer.axes[0]
    assert (axis.value(0), axis.value(axis.count - 1)) == pytest.approx((-2, 2))


def test_one_range_per_input_as_in_wrt(shell):
    shell.run_cell("%%grad --wrt u=3 v=4 --explore u=0:5 v=1:6 --out r -q\nf = u ** 3 + v ** 2")
    axes = {a.name: a for a in shell.user_ns["r"].explorer.axes}
    assert axes["u"].value(axes["u"].count - 1) == pytest.approx(5, abs=0.1)
    assert axes["v"].value(0) == pytest.approx(1, abs=0.1)


def test_quiz_and_explore_are_refused_together_before_the_cell_runs(shell):
    shell.user_ns["calls"] = []
    outcome = shell.run_cell("%%grad --wrt x=3 --quiz --explore\ncalls.append(1)\ny = x ** 2")
    assert "the explorer shows every answer" in str(outcome.error_in_exec)
    assert shell.user_ns["calls"] == []


def test_colab_gets_html(shell, monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    result = grad("y = x ** 3", wrt="x=1", explore=True)
    bundle = result.explorer.bundle()
    assert (
        VEGA not in bundle
        and "vegaEmbed(" in bundle["text/html"]
        and "cdn.jsdelivr.net" in bundle["text/html"]
    )


def test_text_report_says_what_can_be_explored():
    result = grad("y = x ** 3", wrt="x=1", explore=True)
    assert "explorer of y: x from -1 to 3 (81 values" in str(result)
    assert "explorer" not in result.text(graph=False)  # shown as its own output in a notebook


# ---------------------------------------------------------------------------
# a real kernel
# ---------------------------------------------------------------------------
def bundle_of(reply) -> dict:
    (found,) = [o["data"] for o in reply.of_type("display_data") if VEGA in o["data"]]
    return found


def test_kernel_one_input(kernel):
    reply = kernel.run("%%grad --wrt x=1 --explore\ny = x ** 3")
    assert reply.status == "ok", reply.text()
    data = bundle_of(reply)
    assert set(data) == {VEGA, "image/png", "text/plain"}
    assert base64.b64decode(data["image/png"])[:4] == b"\x89PNG"
    size = len(json.dumps(data).encode())
    assert size <= 200_000, size
    found = params(data[VEGA])
    xs = grid(found["s0"])
    assert found["D0"]["value"][xs.index(min(xs, key=lambda v: abs(v - 2)))] == pytest.approx(12)
    assert "dy/dx" in data[VEGA]["title"]["text"]["expr"]


def test_kernel_two_inputs(kernel):
    reply = kernel.run("%%grad --wrt u=3 v=4 --explore\nf = u**3 + v**2 + 4*u*v")
    assert reply.status == "ok", reply.text()
    data = bundle_of(reply)
    found = params(data[VEGA])
    assert {"s0", "s1"} <= set(found) and found["s0"]["bind"]["name"].strip() == "u"
    assert len(found["F"]["value"]) == 31 * 41
    assert len(json.dumps(data).encode()) <= 300_000


def test_kernel_vector_input(kernel):
    reply = kernel.run("%%grad --wrt x=torch.linspace(-20, 20, 20) --explore\nY = x ** 2\nY.sum().backward()")
    assert reply.status == "ok", reply.text()
    found = params(bundle_of(reply)[VEGA])
    assert found["D0"]["value"][0] == pytest.approx(-40) and found["D0"]["value"][-1] == pytest.approx(40)


def test_kernel_chinese_labels(kernel):
    reply = kernel.run("%%grad --wrt x=1 --explore --lang zh\ny = x ** 3")
    data = bundle_of(reply)
    assert "y 的探索器：x 从 -1 到 3" in data["text/plain"]
    spec = data[VEGA]
    assert "拖动滑块" in spec["title"]["subtitle"] and "（在 x = " in spec["title"]["text"]["expr"]


def test_kernel_side_effects_happen_once(kernel):
    setup = "log = []\nw = torch.tensor(0.5, requires_grad=True)\nopt = torch.optim.SGD([w], lr=0.1)"
    cell = "log.append(len(log))\nopt.zero_grad()\ny = (w * x - 2) ** 2 + x ** 3\ny.backward()\nopt.step()"
    assert kernel.run(setup).status == "ok"
    reply = kernel.run(f"%%grad --wrt x=1 --explore\n{cell}")
    assert reply.status == "ok", reply.text()
    assert bundle_of(reply)
    ours = kernel.value("(log, w.item())")
    assert kernel.run(f"{setup}\nx = torch.tensor(1.0, requires_grad=True)\n{cell}").status == "ok"
    assert kernel.value("(log, w.item())") == ours == "([0], 0.800000011920929)"  # one step: 0.5 + 0.1·3


def test_kernel_cannot_evaluate_off_the_point(kernel):
    reply = kernel.run("%%grad --wrt x=1 --explore\ny = x ** 3 if x.item() > 0 else -x")
    assert reply.status == "ok", reply.text()
    assert not [o for o in reply.of_type("display_data") if VEGA in o["data"]]
    assert "there is no explorer, only the report at this point" in reply.text()
    assert "dy/dx = 3" in reply.text()


# ---------------------------------------------------------------------------
# the table follows the slider: every named one-element tensor's data and grad on the grid
# ---------------------------------------------------------------------------
def table(explorer) -> dict[str, object]:
    return {row.name: row for row in explorer.table}


def retained(cell, **inputs: float) -> dict[str, tuple[float, float | None]]:
    """The oracle: the cell's code with *inputs* as float64 leaves, every named tensor's value and
    its grad as ``retain_grad()`` gives it (a leaf's .grad), from ``backward()`` on the last name."""
    ns = {
        "torch": torch,
        **{n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in inputs.items()},
    }
    torch.set_default_dtype(torch.float64)
    try:
        exec(cell, ns)
    finally:
        torch.set_default_dtype(torch.float32)
    named = {n: v for n, v in ns.items() if isinstance(v, torch.Tensor)}
    for v in named.values():
        if v.requires_grad and not v.is_leaf:
            v.retain_grad()
    named[list(named)[-1]].backward()
    return {n: (v.item(), None if v.grad is None else v.grad.item()) for n, v in named.items()}


def test_table_rows_match_retain_grad_on_the_grid():
    cell = "h = x ** 2\ny = 3 * h"
    result = grad(cell, wrt="x=2", explore=True)
    ex = result.explorer
    rows = table(ex)
    assert list(rows) == ["x", "h", "y"]
    assert (rows["x"].source, rows["h"].source, rows["y"].source) == ("input", "node", "output")
    axis = ex.axes[0]
    at = axis.start
    assert axis.value(at) == pytest.approx(2)
    assert (rows["h"].data[at], rows["h"].grad[at]) == (4, 3)  # h = 4, dy/dh = 3
    assert (ex.f[at], ex.d[0][at]) == (12, 12)  # y = 12, dy/dx = 12
    for i in (0, 10, 37, 75, axis.count - 1):
        x = axis.value(i)
        want = retained(cell, x=x)
        assert rows["h"].data[i] == pytest.approx(want["h"][0], rel=1e-5, abs=1e-6)
        assert rows["h"].grad[i] == pytest.approx(want["h"][1], rel=1e-5, abs=1e-6)
        assert ex.f[i] == pytest.approx(want["y"][0], rel=1e-5, abs=1e-6)
        assert ex.d[0][i] == pytest.approx(want["x"][1], rel=1e-5, abs=1e-6)


def test_table_grad_depends_on_the_point():
    """dy/dh changes with x (y = h ** 2 · x): the grad column is computed at each point, not copied."""
    cell = "h = torch.sin(x)\ng = h * x\ny = g ** 2"
    ex = grad(cell, wrt="x=1", explore=True).explorer
    rows = table(ex)
    for i in (0, 20, 50, 80):
        want = retained(cell, x=ex.axes[0].value(i))
        for name in ("h", "g"):
            assert rows[name].data[i] == pytest.approx(want[name][0], rel=1e-5, abs=1e-6)
            assert rows[name].grad[i] == pytest.approx(want[name][1], rel=1e-4, abs=1e-5)


def test_table_of_two_inputs_and_a_leaf_of_the_cell():
    cell = "w = torch.tensor(0.5, requires_grad=True)\nh = u * v + w\nf = h ** 2 * w"
    ex = grad(cell, wrt="u=3 v=4", explore=True).explorer
    rows = table(ex)
    assert list(rows) == ["u", "v", "w", "h", "f"]
    assert rows["w"].source == "node" and len(rows["h"].grad) == 31 * 41
    for i, j in ((15, 20), (0, 40), (30, 7)):
        want = retained(cell, u=ex.axes[0].value(i), v=ex.axes[1].value(j))
        k = i * ex.axes[1].count + j
        for name in ("w", "h"):
            assert rows[name].data[k] == pytest.approx(want[name][0], rel=1e-5)
            assert rows[name].grad[k] == pytest.approx(want[name][1], rel=1e-5)


def test_table_leaves_out_what_it_cannot_follow():
    """A vector is not a row, an unused tensor is off the output's path, a constant has no grad."""
    cell = "c = torch.tensor(2.0)\nV = torch.stack([x, x])\nz = x * 5\nh = x ** 2\ny = c * h + V.sum()"
    ex = grad(cell, wrt="x=1", explore=True).explorer
    rows = table(ex)
    assert list(rows) == ["x", "c", "h", "y"]
    assert rows["c"].source == "constant" and rows["c"].data == (2.0,) and rows["c"].grad == ()
    assert rows["h"].grad[ex.axes[0].start] == 2


def table_axes(spec: dict) -> dict[str, dict]:
    """The table panel's columns (``name``, ``data``, ``grad``): each one's y axis, which draws it."""
    panel = spec["vconcat"][-1]
    assert panel["name"] == "table"
    return {part["name"].removeprefix("table_"): part["encoding"]["y"]["axis"] for part in panel["hconcat"]}


def test_table_panel_in_the_spec():
    ex = grad("h = x ** 2\ny = 3 * h", wrt="x=2", explore=True).explorer
    spec = ex.bundle()[VEGA]
    found = params(spec)
    assert found["V1"]["value"] == list(ex.table[1].data) and found["G1"]["value"] == list(ex.table[1].grad)
    panel = spec["vconcat"][-1]
    assert [v["name"] for v in panel["data"]["values"]] == ["x", "h", "y"]
    axes = table_axes(spec)
    assert list(axes) == ["name", "data", "grad"]
    data = axes["data"]["labelExpr"]
    assert "V1[" in data and "F[" in data and "i0" in data  # filtered by the slider's index
    assert "G1[" in axes["grad"]["labelExpr"] and '"h"' in axes["name"]["labelExpr"]
    assert [axis["title"] for axis in axes.values()] == ["tensor", "data", "dy/d…"]  # (y's row: dy/dy = 1;
    # the report's grad column is .grad, None for y: the header says which this is)
    zh = grad("h = x ** 2\ny = 3 * h", wrt="x=2", explore=True, lang="zh").explorer.bundle()[VEGA]
    assert [axis["title"] for axis in table_axes(zh).values()] == ["张量", "data", "dy/d…"]


def test_table_is_drawn_by_axes_the_theme_colours():
    """No text mark (Vega-Lite gives one an explicit fill: black on JupyterLab Dark's #333) and no
    colour of our own: every header and cell is an axis's title or label, which the theme colours.
    The columns fill the width the panels above take, right-aligned, their extent pinned."""
    for wrt, width in (("x=2", 380), ("x=2 w=1", 2 * 280 + 20)):
        ex = grad(
            "h = x ** 2\ny = 3 * h * w" if "w" in wrt else "h = x ** 2\ny = 3 * h", wrt=wrt, explore=True
        ).explorer
        panel = ex.bundle()[VEGA]["vconcat"][-1]
        columns = panel["hconcat"]
        assert sum(part["width"] for part in columns) == width and panel["spacing"] == 0
        assert all(part["mark"]["type"] != "text" for part in columns)
        assert "color" not in json.dumps(panel).lower() and "fill" not in json.dumps(panel)
        for axis in table_axes(ex.bundle()[VEGA]).values():
            assert (axis["labelAlign"], axis["titleAlign"], axis["titleAngle"]) == ("right", "right", 0)
            assert axis["minExtent"] == axis["maxExtent"] == 0  # numbers changing length move nothing
            assert not axis["domain"] and not axis["ticks"] and not axis["grid"]


def test_vector_input_has_no_table():
    ex = grad("Y = x ** 2\nY.sum().backward()", wrt="x=torch.linspace(-1, 1, 5)", explore=True).explorer
    parts = ex.bundle()[VEGA]["vconcat"]
    assert all(part.get("name") != "table" and "hconcat" not in part for part in parts)


def test_kernel_table_follows_the_slider(kernel):
    reply = kernel.run("%%grad --wrt x=2 --explore\nh = x ** 2\ny = 3 * h")
    assert reply.status == "ok", reply.text()
    data = bundle_of(reply)
    size = len(json.dumps(data).encode())
    assert size <= 200_000, size
    spec = data[VEGA]
    found = params(spec)
    xs = grid(found["s0"])
    assert [v["name"] for v in spec["vconcat"][-1]["data"]["values"]] == ["x", "h", "y"]
    for x in (2.0, -1.0, 0.5, 3.6):
        i = xs.index(min(xs, key=lambda v: abs(v - x)))
        want = retained("h = x ** 2\ny = 3 * h", x=xs[i])
        assert found["V1"]["value"][i] == pytest.approx(want["h"][0], rel=1e-5, abs=1e-6)
        assert found["G1"]["value"][i] == pytest.approx(3)
        assert found["F"]["value"][i] == pytest.approx(want["y"][0], rel=1e-5, abs=1e-6)
    i = xs.index(min(xs, key=lambda v: abs(v - 2)))
    assert (found["V1"]["value"][i], found["G1"]["value"][i], found["F"]["value"][i]) == (4, 3, 12)


# ---------------------------------------------------------------------------
# --graph in the explorer: the nodes' numbers follow the slider
# ---------------------------------------------------------------------------
def graph_lines(spec: dict, index: int) -> dict[str, list[str]]:
    """Each node's text lines at grid index *index* of the one slider: the panel's expressions
    read with a tiny evaluator (the number's expression, ``V1[1 * i0]`` or ``(0.0 + 0.04 * i0)``,
    is Python too)."""
    import re

    found = params(spec)
    panel = next(part for part in spec["vconcat"] if part.get("name") == "graph")
    words = [
        layer for layer in panel["layer"] if layer["mark"]["type"] == "text" and "k" in str(layer["data"])
    ]
    texts = words[0]["transform"][1]["calculate"]
    options = re.split(r"datum\.k === \d+ \? ", texts)[1:]

    def value(option: str) -> str:
        inner = re.search(r"isValid\((.*?)\) \?", option)
        assert inner is not None, option
        arrays = {name: p["value"] for name, p in found.items() if "value" in p}
        return f"{eval(inner.group(1), {**arrays, 'i0': index}):.4g}"

    lines: dict[str, list[str]] = {}
    for line in words[0]["data"]["values"]:
        if line["bold"]:
            current = lines.setdefault(line["text"].split(" ")[0], [])
            continue
        k = line["k"]
        if k < len(options):
            head = json.loads(options[k].split(" + ")[0])
            current.append(head + value(options[k]))
        else:
            current.append(line["text"])
    return lines


def test_magic_graph_panel_follows_the_slider(shell):
    shown = displayed(shell, "%%grad --wrt x=2 --explore --graph\nh = x ** 2\ny = 3 * h")
    (spec,) = [obj[VEGA] for obj, _ in shown if isinstance(obj, dict) and VEGA in obj]
    panel = spec["vconcat"][-1]
    assert panel["name"] == "graph"
    marks = {layer["mark"]["type"] for layer in panel["layer"]}
    assert {"rect", "text", "line"} <= marks
    edges = next(layer for layer in panel["layer"] if layer["mark"]["type"] == "line")
    assert edges["encoding"]["detail"]["field"] == "e" and edges["encoding"]["order"]["field"] == "o"
    assert all(
        layer["mark"].get("style") == "guide-label"
        for layer in panel["layer"]
        if layer["mark"]["type"] == "text"
    )
    # the caption is the view's title, which the theme colours (a text mark came out black on the dark
    # theme's #333); the text marks left are the nodes' lines, on their boxes
    assert panel["title"]["text"].startswith("backward graph: from y back to the leaves")
    assert all(layer["data"]["values"] is not None and "k" in layer["data"]["values"][0]
               for layer in panel["layer"] if layer["mark"]["type"] == "text")  # fmt: skip
    xs = grid(params(spec)["s0"])
    at = {x: xs.index(min(xs, key=lambda v: abs(v - x))) for x in (2.0, 1.0, 3.2)}  # (x from 0 to 4)
    lines = graph_lines(spec, at[2.0])
    assert lines["h"] == ["data 4", "grad 3"]  # dy/dh = 3
    assert lines["x"] == ["data 2", "grad 12"] and lines["y"] == ["data 12", "grad 1"]
    lines = graph_lines(spec, at[1.0])
    assert lines["h"] == ["data 1", "grad 3"] and lines["x"] == ["data 1", "grad 6"]
    assert lines["y"] == ["data 3", "grad 1"]
    lines = graph_lines(spec, at[3.2])
    assert lines["h"] == ["data 10.24", "grad 3"] and lines["x"] == ["data 3.2", "grad 19.2"]
    assert lines["y"] == ["data 30.72", "grad 1"]


def test_no_graph_panel_without_graph(shell):
    shown = displayed(shell, "%%grad --wrt x=2 --explore\nh = x ** 2\ny = 3 * h")
    (spec,) = [obj[VEGA] for obj, _ in shown if isinstance(obj, dict) and VEGA in obj]
    assert all(part.get("name") != "graph" for part in spec["vconcat"])


def test_graph_panel_left_out_for_a_vector_input():
    result = grad(
        "Y = x ** 2\nY.sum().backward()", wrt="x=torch.linspace(-1, 1, 5)", explore=True, graph=True
    )
    assert all(part.get("name") != "graph" for part in result.explorer.bundle()[VEGA]["vconcat"])


def test_an_explorer_that_cannot_be_evaluated_leaves_the_plot():
    """The grid failing is a note after the plot's own: the figure and --check stay."""
    cell = "y = torch.linalg.cholesky(x.reshape(1, 1)).sum()"
    result = grad(cell, wrt="x=1", explore=True, plot=True, check=True)
    assert result.explorer is None and result.figure is not None and result.checks
    assert [n.id for n in result.notes] == ["plot.no_vmap", "rec.failed"]


def test_the_picture_is_the_plot_when_there_is_one():
    from torchgrad_magic.render import plot

    both = grad("y = x ** 3", wrt="x=1", explore=True, plot=True)
    assert both.explorer.png == plot.png(both.figure)
    alone = grad("y = x ** 3", wrt="x=1", explore=True)
    assert alone.figure is None and alone.explorer.png.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("cell", "wrt", "headline"),
    [("y = 1.0001 * x", "x=1", "y = 1.0001, dy/dx = 1.0001 (at x = 1)"),  # (read y = 1, dy/dx = 1)
     ("y = x + 1", "x=12345", "y = 12346, dy/dx = 1 (at x = 12345)"),  # (read 1.235e+4)
     ("y = x ** 3", "x=1", "y = 1, dy/dx = 3 (at x = 1)")],
)  # fmt: skip
def test_the_charts_numbers_read_as_the_tables(cell, wrt, headline):
    """The spec's own number format, run by Vega itself (vl-convert: Vega's JavaScript, no browser)."""
    import html
    import re

    import vl_convert

    svg = vl_convert.vegalite_to_svg(grad(cell, wrt=wrt, explore=True).explorer.bundle()[VEGA])
    texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
    assert headline in texts, [t for t in texts if "=" in t]
