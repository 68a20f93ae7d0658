"""``--explore``: move an input with a slider, watch the tangent, the numbers and the graph follow.

The numbers are the grid :mod:`..derive.explore` evaluated once, in the kernel, from the record of
the one run; here they become the chart. What is sent is a Vega-Lite v5 spec (the front end draws
it and moves the sliders itself, no kernel round-trip), a PNG of the current point for front ends
that run nothing, and a text summary; no HTML, which JupyterLab would prefer over the chart
(Colab, which does not render Vega-Lite, gets HTML with vega-embed instead).
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from .. import format as fmt
from ..derive.explore import Grid, TableRow
from ..derive.explore import parse_ranges as parse_ranges  # (checked by the engine before the cell runs)
from ..messages import MESSAGES

MIME = "application/vnd.vegalite.v5+json"
FUNCTION_COLOR, DERIVATIVE_COLOR, TANGENT_COLOR, POINT_COLOR = "#d62728", "#2ca02c", "#7f7f7f", "#ff7f0e"
EMBED_OPTIONS = {"actions": False, "renderer": "svg"}  # svg: the numbers are text a page can read
VEGA_CDN = "https://cdn.jsdelivr.net/npm/"
GRAPH_NODES = 40  # --graph's panel in the explorer: nodes at most (a bigger graph stays the report's picture)
GRAPH_WIDTH = 760  # a wider graph panel is scaled down to this many pixels
GRAPH_OPACITY = 0.45  # the nodes' fill over the theme's background (light or dark)
GRAPH_LINE = "#888888"  # edges and boxes' outlines: a grey that shows on both backgrounds
TABLE_ROW = 22  # the table's rows: pixels each
TABLE_PAD = 8  # pixels between a column's right edge and its text, and under its header


@dataclass(frozen=True)
class Explorer(Grid):
    """The explorer as shown: the grid's numbers (:class:`~..derive.explore.Grid`), a picture of the
    run's point (*png*) and --graph's graph (its panel)."""

    png: bytes | None = field(default=None, repr=False)
    graph: Any = field(default=None, repr=False, compare=False)  # --graph's graph.Graph (its panel)

    @classmethod
    def of(cls, grid: Grid, png: bytes | None) -> Explorer:
        """The explorer of *grid*, with the picture *png* (None: no picture)."""
        return cls(**{f.name: getattr(grid, f.name) for f in dataclasses.fields(grid)}, png=png)

    def bundle(self) -> dict[str, Any]:
        """The display bundle: the spec, the picture of the current point and a text summary."""
        return bundle(self)

    def summary(self) -> str:
        return summary(self)

    def metadata(self) -> dict[str, Any]:
        return metadata()


# ---------------------------------------------------------------------------
# the Vega-Lite spec
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Names:
    """Expressions of the spec for one explorer: the flat index of the current point, each axis's
    input value at an index, a number as text."""

    ex: Explorer

    def x(self, k: int, index: str) -> str:
        axis = self.ex.axes[k]
        return f"X{k}[{index}]" if self.ex.vector else f"({axis.low!r} + {axis.step!r} * {index})"

    def flat(self, k: int | None = None, index: str = "datum.i") -> str:
        """The row-major index of the grid point with axis *k* at *index*, the others at the sliders."""
        parts, stride = [], 1
        for j in reversed(range(len(self.ex.axes))):
            parts.append(f"{stride} * {index if j == k else f'i{j}'}")
            stride *= self.ex.axes[j].count
        return " + ".join(reversed(parts))

    def number(self, value: str) -> str:
        """*value* as :func:`..format.number` writes it: its digits, more where they would make a
        number that is not whole read as one (1.0001), no exponent below 10⁷ (12345)."""
        short, long = f"format({value}, '.{self.ex.digits}~g')", f"format({value}, '.8~g')"
        whole = f"test(regexp('^-?[0-9]+$'), {short}) && abs({value} - round({value})) > 1e-6 * max(1, abs({value}))"
        chosen = f"(abs({value}) >= 1e4 && abs({value}) < 1e7) || ({whole}) ? {long} : {short}"
        return f"(isValid({value}) ? replace({chosen}, '\\u2212', '-') : 'nan')"


def _say(ex: Explorer, message_id: str, **fields: object) -> str:
    """The spec's words in the explorer's language (whatever language is in use when it is built)."""
    return MESSAGES[message_id][ex.language].format(**fields)


def _expression(text: str) -> str:
    """Text with ``\\ue000expr\\ue001`` holes as a Vega expression that joins the pieces."""
    pieces = re.split("\ue000(.*?)\ue001", text)
    parts = [
        piece if i % 2 else json.dumps(piece, ensure_ascii=False) for i, piece in enumerate(pieces) if piece
    ]
    return " + ".join(parts) or "''"


def headline(ex: Explorer) -> str:
    """The headline at the sliders' point, as a Vega expression (``y = 8, dy/dx = 12 (at x = 2)``)."""
    names = _Names(ex)
    hole = lambda expr: f"\ue000{names.number(expr)}\ue001"  # noqa: E731
    current = names.flat()
    sep = _say(ex, "headline.sep")
    if ex.vector:
        name = ex.axes[0].name
        parts = [f"{ex.out}[i] = {hole('F[i0]')}", f"{ex.ds[0]} = {hole('D0[i0]')}"]
        points = [f"i = {hole('P0[i0]')}", f"{name}[i] = {hole('X0[i0]')}"]
    else:
        current = current.replace("datum.i", "0")
        parts = [f"{ex.out} = {hole(f'F[{current}]')}"]
        parts += [f"{d} = {hole(f'D{k}[{current}]')}" for k, d in enumerate(ex.ds)]
        points = [f"{a.name} = {hole(names.x(k, f'i{k}'))}" for k, a in enumerate(ex.axes)]
    text = _say(ex, "headline.at", text=sep.join(parts), points=sep.join(points))
    return _expression(text)


def _domain(values: tuple[float | None, ...]) -> list[float]:
    finite = [v for v in values if v is not None]
    if not finite:
        return [-1.0, 1.0]
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.05 or max(1.0, abs(low)) * 0.5
    return [low - pad, high + pad]


def _params(ex: Explorer) -> list[dict[str, Any]]:
    """A slider per input (its value), the grid index it stands for, and the grid's arrays."""
    params: list[dict[str, Any]] = []
    for k, axis in enumerate(ex.axes):
        if ex.vector:
            bind = {"input": "range", "min": 0, "max": axis.count - 1, "step": 1, "name": f"{axis.name}[i] "}
            params += [{"name": f"s{k}", "value": axis.start, "bind": bind}]
            params += [{"name": f"i{k}", "expr": f"clamp(round(s{k}), 0, {axis.count - 1})"}]
            params += [
                {"name": f"X{k}", "value": list(axis.values)},
                {"name": f"P{k}", "value": list(axis.picks)},
            ]
            continue
        high = axis.value(axis.count - 1)
        bind = {"input": "range", "min": axis.low, "max": high, "step": axis.step, "name": f"{axis.name} "}
        params += [{"name": f"s{k}", "value": axis.value(axis.start), "bind": bind}]
        index = f"clamp(round((s{k} - {axis.low!r}) / {axis.step!r}), 0, {axis.count - 1})"
        params += [{"name": f"i{k}", "expr": index}]
    params += [{"name": "F", "value": list(ex.f)}]
    params += [{"name": f"D{k}", "value": list(d)} for k, d in enumerate(ex.d)]
    for r, row in enumerate(_shown_table(ex)):
        if row.source == "node":
            params += [{"name": f"V{r}", "value": list(row.data)}, {"name": f"G{r}", "value": list(row.grad)}]
    return params


def _shown_table(ex: Explorer) -> tuple[TableRow, ...]:
    """The table's rows the spec shows (a vector input's explorer has none)."""
    return () if ex.vector else ex.table


def _cells(ex: Explorer, r: int, row: TableRow) -> tuple[str, str]:
    """Row *r*'s data and grad at the sliders' point, as Vega expressions giving text."""
    names = _Names(ex)
    current = names.flat()
    if row.source == "input":
        data, grad = names.x(row.axis, f"i{row.axis}"), f"D{row.axis}[{current}]"
    elif row.source == "output":
        data, grad = f"F[{current}]", "1"
    elif row.source == "node":
        data, grad = f"V{r}[{current}]", f"G{r}[{current}]"
    else:  # a constant: its one value, no grad
        value = row.data[0] if row.data else None
        return names.number(repr(value) if value is not None else "NaN"), json.dumps("\u2014")
    return names.number(data), names.number(grad)


def _choose(index: str, options: list[str]) -> str:
    """``index === 0 ? a : index === 1 ? b : c`` (a Vega expression)."""
    text = options[-1]
    for k in reversed(range(len(options) - 1)):
        text = f"{index} === {k} ? {options[k]} : {text}"
    return text


def table_panel(ex: Explorer, width: int) -> dict[str, Any]:
    """The table, ``tensor · data · grad`` a row with the numbers at the sliders' point: a column a
    view, side by side, *width* pixels in all. Every word of it is an axis's (a column's y axis
    draws its cells as labels, its header as the title): the front end's theme colours axes, light
    on a dark background, while a text mark gets an explicit fill that no theme changes."""
    rows = _shown_table(ex)
    cells = [_cells(ex, r, row) for r, row in enumerate(rows)]
    columns = {
        "name": [json.dumps(row.name, ensure_ascii=False) for row in rows],
        "data": [data for data, _ in cells],
        "grad": [grad for _, grad in cells],
    }
    wide = [width - 2 * (width // 3), width // 3, width // 3]  # (the first takes what is left over)
    return {
        "name": "table",
        "data": {"values": [{"j": r, "name": row.name} for r, row in enumerate(rows)]},
        "hconcat": [
            {"name": f"table_{key}", **_table_column(_header(ex, key), labels, w)}
            for (key, labels), w in zip(columns.items(), wide, strict=True)
        ],
        "spacing": 0,
    }


def _header(ex: Explorer, key: str) -> str:
    """A table column's header; the grad column's is ``dy/d…``: what it holds for every row is the
    derivative of the output by that tensor (the report's grad column is ``.grad``: None for y)."""
    if key == "grad":
        d = fmt.d_of(len(ex.axes) != 1, ex.out)
        return f"{d}{fmt.operand(ex.out)}/{d}…"
    return "data" if key == "data" else _say(ex, "explore.col_name")  # (data: PyTorch's own word, as in
    # the report's table)


def _table_column(title: str, labels: list[str], width: int) -> dict[str, Any]:
    """One column of the table, *width* pixels wide: its y axis (a row a label, ``datum.value``
    the row's index, *labels* its text as Vega expressions) drawn inside the view, labels and
    title right-aligned a little short of the view's right edge. The axis's extent is pinned, so
    the layout does not move as the numbers change length."""
    edge = width - TABLE_PAD
    axis = {
        "labelExpr": _choose("datum.value", labels), "labelAlign": "right", "labelPadding": 0,
        "labelFontSize": 13, "labelLimit": edge - TABLE_PAD, "offset": -edge,
        "domain": False, "ticks": False, "grid": False, "minExtent": 0, "maxExtent": 0,
        "title": title, "titleAngle": 0, "titleAlign": "right", "titleBaseline": "bottom",
        "titleX": 0, "titleY": -TABLE_PAD, "titleFontSize": 13, "titleFontWeight": "bold",
    }  # fmt: skip
    return {
        "width": width,
        "height": {"step": TABLE_ROW},
        "mark": {"type": "rule", "opacity": 0},  # (a view needs a mark; its axis draws the column)
        "encoding": {"y": {"field": "j", "type": "ordinal", "axis": axis}},
    }


def _followed(ex: Explorer) -> dict[str, tuple[str, str, int]]:
    """The table's rows a graph node can follow: name -> its data and grad at the sliders' point
    (Vega expressions giving text) and the most characters a number of it takes on the grid."""
    found = {}
    for r, row in enumerate(_shown_table(ex)):
        if row.source == "constant":
            continue
        if row.source == "input":
            axis = ex.axes[row.axis]
            values = [axis.value(i) for i in range(axis.count)] + list(ex.d[row.axis])
        else:
            values = [*ex.f, 1.0] if row.source == "output" else [*row.data, *row.grad]
        chars = max((len(f"{v:.{ex.digits}g}") for v in values if v is not None), default=3)
        found[row.name] = (*_cells(ex, r, row), chars)
    return found


def _graph_layout(ex: Explorer) -> tuple[Any, dict[int, tuple[str, str]]] | None:
    """The layout of --graph's graph with room for the numbers the slider moves (a followed node
    gets a data and a grad line, as wide as its widest number), and those nodes' expressions."""
    from . import graph

    if ex.graph is None or ex.vector or not ex.graph.nodes or len(ex.graph.nodes) > GRAPH_NODES:
        return None
    followed, moving, nodes = _followed(ex), {}, []
    for node in ex.graph.nodes:
        if node.name in followed and node.kind in ("output", "named", "leaf"):
            data, grad, chars = followed[node.name]
            node = dataclasses.replace(node, data="0" * chars, grad="0" * chars)  # room for any of them
            moving[node.id] = (data, grad)
        nodes.append(node)
    shown = dataclasses.replace(ex.graph, nodes=nodes)
    return graph.layout(shown, graph.MAX_SHOWN, ex.language), moving


def _graph_marks(
    ex: Explorer, lay: Any, moving: dict[int, tuple[str, str]]
) -> tuple[dict[str, list[dict]], list[str]]:
    """The panel's data: a box per node, a text line each (*k* picks a moving line's expression),
    the edges' points in order; and the lines' expressions (the last: a line's own text)."""
    from . import graph

    boxes, lines, expressions = [], [], []
    for node in lay.nodes:
        x0, y0, w, h = lay.boxes[node.id]
        boxes.append(
            {"x0": x0, "x1": x0 + w, "y0": y0, "y1": y0 + h, "fill": graph.FILL.get(node.kind, "#eeeeee")}
        )
        for j, text in enumerate(node.lines()):
            k = -1
            if node.id in moving and j in (1, 2):  # (a followed node's data and grad lines)
                head = "data " if j == 1 else "grad "
                expressions.append(f"{json.dumps(head)} + {moving[node.id][j - 1]}")
                k = len(expressions) - 1
            y = y0 + graph.PAD + graph.LINE_H * (j + 0.75)
            lines.append({"x": x0 + w / 2, "y": y, "text": text, "k": k, "bold": j == 0})
    for line in lines:
        line["k"] = len(expressions) if line["k"] < 0 else line["k"]
    edges = [
        {"e": e, "o": o, "x": x, "y": y}
        for e, (_, _, points) in enumerate(lay.edges)
        for o, (x, y) in enumerate(points)
    ]
    ends = [{"x": points[-1][0], "y": points[-1][1]} for _, _, points in lay.edges if points]
    found: dict[str, list[dict]] = {"boxes": boxes, "lines": lines, "edges": edges, "ends": ends}
    return found, [*expressions, "datum.text"]


def graph_panel(ex: Explorer) -> dict[str, Any] | None:
    """--graph's backward graph at the sliders' point: boxes, edges and lines as the report's
    picture draws them; the data and grad of each node the table follows move with the sliders.
    None: no --graph, a vector input, or more than GRAPH_NODES nodes (the report's picture only)."""
    from . import graph

    found = _graph_layout(ex)
    if found is None:
        return None
    lay, moving = found
    (marks, texts), scale = _graph_marks(ex, lay, moving), min(1.0, GRAPH_WIDTH / lay.width)
    x = {
        "field": "x",
        "type": "quantitative",
        "axis": None,
        "scale": {"domain": [0, lay.width], "nice": False},
    }
    header = [line for line, _, _, _ in lay.header()]  # (the caption, the edge labels' legend)
    top = len(header) * graph.LINE_H + graph.PAD if header else 0.0  # (drawn as the view's title)
    y = {
        "field": "y",
        "type": "quantitative",
        "axis": None,
        "scale": {"domain": [top, lay.height], "nice": False, "zero": False, "reverse": True},  # y grows down
    }
    font = {
        "type": "text",
        "style": "guide-label",
        "font": graph.SVG_FONTS,
        "fontSize": graph.FONT_PX * scale,
    }
    layers = [*_graph_shapes(marks, x, y, scale), *_graph_words(marks, texts, x, y, font)]
    spec: dict[str, Any] = {
        "name": "graph",
        "width": round(lay.width * scale),
        "height": round((lay.height - top) * scale),
        "layer": layers,
    }
    if header:  # a title, which the front end's theme colours (a text mark came out black in the dark)
        spec["title"] = {
            "text": header[0], "anchor": "start", "font": graph.SVG_FONTS, "fontSize": graph.FONT_PX * scale,
            "fontWeight": "normal", **({"subtitle": header[1], "subtitleFontSize": graph.LABEL_PX * scale,
                                        "subtitleFont": graph.SVG_FONTS} if len(header) > 1 else {}),
        }  # fmt: skip
    return spec


def _graph_shapes(marks: dict[str, list[dict]], x: dict, y: dict, scale: float) -> list[dict[str, Any]]:
    """The graph panel's edges (a line each, its points in order), their arrowheads and the boxes
    (the picture's fill per kind, see-through so the theme's background shows)."""
    return [
        {
            "data": {"values": marks["edges"]},
            "mark": {"type": "line", "color": GRAPH_LINE, "strokeWidth": 1},
            "encoding": {"x": x, "y": y, "detail": {"field": "e", "type": "nominal"}, "order": {"field": "o"}},
        },
        {
            "data": {"values": marks["ends"]},
            "mark": {"type": "point", "shape": "triangle-down", "filled": True, "size": 30 * scale, "color": GRAPH_LINE, "opacity": 1},
            "encoding": {"x": x, "y": y},
        },
        {
            "data": {"values": marks["boxes"]},
            "mark": {"type": "rect", "cornerRadius": 4, "fillOpacity": GRAPH_OPACITY, "stroke": GRAPH_LINE, "strokeWidth": 1},
            "encoding": {
                "x": {**x, "field": "x0"}, "x2": {"field": "x1"}, "y": {**y, "field": "y0"}, "y2": {"field": "y1"},
                "fill": {"field": "fill", "type": "nominal", "scale": None, "legend": None},
            },
        },
    ]  # fmt: skip


def _graph_words(
    marks: dict[str, list[dict]], texts: list[str], x: dict, y: dict, font: dict
) -> list[dict[str, Any]]:
    """The nodes' lines (the first bold; *texts* picks each line's expression by its ``k``), dark on
    their see-through boxes in either theme (the caption above them is the view's title)."""
    text = {"calculate": _choose("datum.k", texts), "as": "label"}
    layers = [
        {
            "data": {"values": marks["lines"]},
            "transform": [{"filter": f"{'' if bold else '!'}datum.bold"}, text],
            "mark": {**font, "baseline": "alphabetic", "align": "center", "fontWeight": "bold" if bold else "normal"},
            "encoding": {"x": x, "y": y, "text": {"field": "label", "type": "nominal"}},
        }
        for bold in (True, False)
    ]  # fmt: skip
    return layers


def _panel(
    ex: Explorer, k: int, values: str, title: str, domain: list[float], color: str, tangent: bool
) -> dict:
    """One input's panel: *values* (``F`` or ``Dk``) along axis k, the others held at their sliders,
    the current point marked and (on the function) the tangent of slope ∂f/∂x_k."""
    names, axis = _Names(ex), ex.axes[k]
    x_domain = [axis.value(0), axis.value(axis.count - 1)] if not ex.vector else _domain(axis.values)
    x = {
        "field": "x",
        "type": "quantitative",
        "title": axis.name,
        "scale": {"domain": x_domain, "nice": False},
    }
    y = {"field": "y", "type": "quantitative", "title": title, "scale": {"domain": domain, "zero": False}}
    along = {"sequence": {"start": 0, "stop": axis.count, "as": "i"}}
    line = {
        "data": along,
        "transform": [
            {"calculate": names.x(k, "datum.i"), "as": "x"},
            {"calculate": f"{values}[{names.flat(k)}]", "as": "y"},
            {"filter": "isValid(datum.x) && isValid(datum.y)"},
        ],
        "mark": {"type": "line", "color": color, "strokeWidth": 2, "clip": True},
        "encoding": {"x": x, "y": y},
    }
    at = names.flat(k, f"i{k}")
    here = [{"calculate": names.x(k, f"i{k}"), "as": "x"}, {"calculate": f"{values}[{at}]", "as": "y"}]
    layers = [line]
    if tangent:
        half = (x_domain[1] - x_domain[0]) / 4
        slope = f"D{k}[{at}]"
        ends = [
            {"calculate": f"datum.x - {half!r}", "as": "x1"}, {"calculate": f"datum.x + {half!r}", "as": "x2"},
            {"calculate": f"datum.y - {slope} * {half!r}", "as": "y1"},
            {"calculate": f"datum.y + {slope} * {half!r}", "as": "y2"},
        ]  # fmt: skip
        layers.append({
            "data": {"sequence": {"start": 0, "stop": 1, "as": "i"}},
            "transform": [*here, *ends, {"filter": "isValid(datum.y1) && isValid(datum.y2)"}],
            "mark": {"type": "rule", "color": TANGENT_COLOR, "strokeDash": [6, 4], "strokeWidth": 1.5, "clip": True},
            "encoding": {"x": {**x, "field": "x1"}, "x2": {"field": "x2"}, "y": {**y, "field": "y1"}, "y2": {"field": "y2"}},
        })  # fmt: skip
    layers.append({
        "data": {"sequence": {"start": 0, "stop": 1, "as": "i"}},
        "transform": [*here, {"filter": "isValid(datum.y)"}],
        "mark": {"type": "point", "filled": True, "size": 90, "color": POINT_COLOR, "opacity": 1, "clip": True},
        "encoding": {"x": x, "y": y},
    })  # fmt: skip
    return {"layer": layers}


def spec(ex: Explorer) -> dict[str, Any]:
    """The Vega-Lite v5 spec: the function's panels over its derivatives', a panel per input."""
    wide = len(ex.axes) == 1
    size = {"width": 380 if wide else 280, "height": 200 if wide else 170}
    f_domain = _domain(ex.f)
    rows = [
        [{**size, **_panel(ex, k, "F", ex.out, f_domain, FUNCTION_COLOR, True)} for k in range(len(ex.axes))],
        [{**size, **_panel(ex, k, f"D{k}", ex.ds[k], _domain(ex.d[k]), DERIVATIVE_COLOR, False)}
         for k in range(len(ex.axes))],
    ]  # fmt: skip
    if _shown_table(ex):
        rows.append([table_panel(ex, size["width"] * len(ex.axes) + (20 if len(ex.axes) > 1 else 0))])
    drawn = graph_panel(ex)
    if drawn is not None:
        rows.append([drawn])
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "description": _say(ex, "explore.description", out=ex.out),
        "title": {
            "text": {"expr": headline(ex)},
            "subtitle": _say(ex, "explore.hint"),
            "anchor": "start",
            "fontSize": 15,
            "subtitleFontSize": 12,
        },
        "params": _params(ex),
        "vconcat": [{"hconcat": row} if len(row) > 1 else row[0] for row in rows],
        "config": {"axis": {"labelFontSize": 12, "titleFontSize": 13}, "view": {"stroke": None}},
    }


# ---------------------------------------------------------------------------
# the display bundle
# ---------------------------------------------------------------------------
def bundle(ex: Explorer) -> dict[str, Any]:
    """``application/vnd.vegalite.v5+json`` + ``image/png`` + ``text/plain`` (no HTML: JupyterLab
    would show it instead of the chart); in Colab, HTML that loads vega-embed instead."""
    chart = spec(ex)
    found: dict[str, Any] = {"text/plain": summary(ex)}
    if "google.colab" in sys.modules:
        found["text/html"] = colab_html(chart)
    else:
        found[MIME] = chart
    if ex.png is not None:
        found["image/png"] = ex.png
    return found


def metadata() -> dict[str, Any]:
    """vega-embed's options for JupyterLab's renderer: no menu, SVG (its text can be read and found)."""
    return {MIME: {"embed_options": dict(EMBED_OPTIONS)}}


def colab_html(chart: dict[str, Any]) -> str:
    """The chart as HTML that loads vega, vega-lite and vega-embed from jsDelivr (Colab only)."""
    target = f"tgm-explore-{uuid.uuid4().hex[:12]}"
    scripts = "".join(
        f'<script src="{VEGA_CDN}{package}"></script>'
        for package in ("vega@5", "vega-lite@5", "vega-embed@6")
    )
    data = json.dumps(chart, ensure_ascii=False).replace("</", "<\\/")
    options = json.dumps({**EMBED_OPTIONS, "mode": "vega-lite"})
    return f'<div id="{html.escape(target)}"></div>{scripts}<script>vegaEmbed("#{target}", {data}, {options});</script>'


def summary(ex: Explorer) -> str:
    """One line for front ends that draw nothing (a terminal): what can be explored, over what."""
    if ex.vector:
        axis = ex.axes[0]
        where = _say(ex, "explore.over_vector", name=axis.name, count=axis.count)
    else:
        where = _say(ex, "headline.sep").join(
            _say(
                ex,
                "explore.over",
                name=a.name,
                low=fmt.number(a.value(0)),
                high=fmt.number(a.value(a.count - 1)),
            )
            for a in ex.axes
        )
    return _say(ex, "explore.text", out=ex.out, where=where, points=len(ex.f))
