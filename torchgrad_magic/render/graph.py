"""The backward graph's pictures: a layered drawing of :class:`.derive.graph.Graph`, as SVG and PNG.

:mod:`.derive.graph` builds the graph as plain data (nodes with their text, edges, the words of its
caption) and writes its text tree; this module draws it. No graphviz binary is needed:
:func:`layout` places the boxes and routes the edges, :func:`to_svg` writes the layout as a
standalone SVG and :func:`to_png` draws it with matplotlib (Agg, no pyplot).
:class:`DrawnGraph` is the graph a report carries (``result.graph``): the same data, with these
pictures as methods, so ``display(result.graph)`` shows it as an image in any front end.

The layout (Sugiyama's layered drawing, kept small): longest-path layers with the output at the
top and the leaves on the bottom row; a dummy point on every row an edge passes, so long edges
are routed as polylines around the boxes; barycenter sweeps down and up with adjacent swaps,
keeping the order with the fewest crossings; then x positions fitted to the neighbours under the
rows' order and spacing (isotonic regression), so boxes never overlap and an edge only runs
through the gaps between them.

Every word of a picture is in the graph's own language (:attr:`.derive.graph.Graph.language`),
whatever the language in use when it is shown; a PNG falls back to English words where no font
with Chinese glyphs is installed.
"""

from __future__ import annotations

import dataclasses
import html
import io
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from .. import format as fmt
from ..derive.graph import MAX_SHOWN, Graph, Node, longest_paths

# pixels: a monospace character at 12 px, a text line, padding, gaps between boxes and rows
FONT_PX, CHAR_W, LINE_H, PAD, GAP_X, GAP_Y = 12.0, 7.25, 15.0, 6.0, 18.0, 44.0
GAP_LABEL = 64.0  # rows' gap when edges carry labels (--steps --graph)
LABEL_PX, LABEL_W = 10.0, 6.05  # edge labels: font size and character width
WORD_W = (CHAR_W, LABEL_W, CHAR_W)  # character widths of the caption, the legend, "… N more nodes"
GAP_DUMMY = 12.0  # between an edge passing a row and its neighbours
STUB = 8.0  # edges leave and enter boxes vertically for this long (the arrowhead sits on it)
PORT_GAP = 10.0  # between the ends of several edges on one side of a box
SWEEPS = 12  # crossing-reduction rounds (each: one sweep down, one up)
PLACE_ROUNDS = 8  # x-placement rounds
SEARCH_NODES = 40  # up to this many nodes, other rows for the leaves are tried against crossings
FILL = {
    "output": "#d9f2d9",
    "leaf": "#d6e6fb",
    "named": "#fff2c2",
    "function": "#eeeeee",
    "saved": "#f7e1f3",
    "module": "#fde4cc",  # a folded nn.Module call (fold)
    "loop": "#e6def7",  # a folded run of repeated ops (fold_repeats)
}
BACKGROUND, TEXT, STROKE, EDGE, MORE = "#ffffff", "#111111", "#555555", "#777777", "#aa0000"
LABEL = "#0b4f8a"  # edge labels (--steps): dark blue on the white background
SVG_FONTS = "DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, monospace"
PNG_DPI = 100  # one layout pixel = one image pixel


@dataclass
class Layout:
    """Where everything goes, in pixels (y grows downwards).

    ``boxes`` maps a node id to ``(x, y, width, height)``; ``edges`` holds
    ``(parent id, child id, points)`` with the polyline from the parent's bottom
    to the child's top, in the order of :attr:`Graph.edges`. ``title`` (the caption) and
    ``legend`` (what the edge labels say) are drawn above the rows, ``more`` under them."""

    width: float
    height: float
    nodes: list[Node]
    boxes: dict[int, tuple[float, float, float, float]]
    edges: list[tuple[int, int, list[tuple[float, float]]]]
    hidden: int  # nodes not drawn
    labels: list[str | None] = field(default_factory=list)  # per edge (--steps): the gradient flowing
    title: str = ""
    legend: str = ""
    more: str = ""  # "… N more nodes", in the graph's language

    def label_spots(self) -> list[tuple[str, float, float]]:
        """(text, x, y) of each edge label: in the gap under the parent, on the edge's line,
        moved further down the edge where it would cover a label already placed."""
        spots: list[tuple[str, float, float]] = []
        boxes: list[tuple[float, float, float, float]] = []
        step = LABEL_PX + 3
        for (_, _, points), text in zip(self.edges, self.labels, strict=False):
            if not text:
                continue
            half = (fmt.width(text) * LABEL_W + 4) / 2
            middle = points[0][1] + GAP_LABEL / 2
            for y in (middle, middle + step, middle - step, middle + 2 * step, middle - 2 * step):
                x = _x_at(points, y)
                if not any(abs(x - bx) < half + bh and abs(y - by) < step for bx, bh, by, _ in boxes):
                    break
            else:
                y = middle
            x = _x_at(points, y)
            boxes.append((x, half, y, step))
            spots.append((text, x, y))
        return spots

    def header(self) -> list[tuple[str, float, float, str]]:
        """(text, baseline y, font px, colour) of the lines above the rows: the caption, then
        the legend of the edge labels."""
        lines = [(self.title, FONT_PX, TEXT), (self.legend, LABEL_PX, LABEL)]
        return [(text, _baseline(0, j), px, colour) for j, (text, px, colour) in enumerate(lines) if text]


# ---------------------------------------------------------------------------
# the views of one graph
# ---------------------------------------------------------------------------
def layout(graph: Graph, limit: int = MAX_SHOWN, language: str | None = None) -> Layout:
    """The drawing of *graph*'s first *limit* nodes: the caption on top, then the output, the
    leaves at the bottom (words in *language*, by default the graph's own)."""
    language = language or graph.language
    shown = graph.nodes[:limit]
    ids = {n.id for n in shown}
    kept = [k for k, (a, b) in enumerate(graph.edges) if a in ids and b in ids]
    labels = [graph.label(k) for k in kept]
    gap = GAP_LABEL if any(labels) else GAP_Y
    hidden = len(graph.nodes) - len(shown)
    more = graph.more(hidden, language) if hidden else ""
    title, legend = graph.caption(language), graph.legend(any(labels), language)
    lay = _layout(shown, [graph.edges[k] for k in kept], hidden, gap, (title, legend, more))
    lay.labels = labels
    return lay


def to_svg(graph: Graph, limit: int = MAX_SHOWN) -> str:
    """A standalone SVG (presentation attributes only, its own white background, ids unique
    to this call), so it looks the same inline, in an ``<img>``, on a dark theme or saved."""
    lay = layout(graph, limit)
    arrow = f"tgm-arrow-{uuid.uuid4().hex[:12]}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{lay.width:.0f}" '
        f'height="{lay.height:.0f}" viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" '
        f'font-family="{SVG_FONTS}" font-size="{FONT_PX:.0f}">',
        f'<rect x="0" y="0" width="{lay.width:.0f}" height="{lay.height:.0f}" fill="{BACKGROUND}"/>',
        f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto"><path d="M 0 0 L 10 5 L 0 10 z" fill="{EDGE}"/></marker></defs>',
    ]
    for text, y, px, colour in lay.header():
        out.append(
            f'<text x="{PAD:.0f}" y="{y:.1f}" fill="{colour}" font-size="{px:.0f}">{html.escape(text)}</text>'
        )
    out += _svg_edges(lay, arrow)
    out += [_svg_node(n, lay.boxes[n.id]) for n in lay.nodes]
    if lay.more:
        more = html.escape(lay.more)
        out.append(f'<text x="{PAD:.0f}" y="{lay.height - PAD - 3:.1f}" fill="{MORE}">{more}</text>')
    out.append("</svg>")
    return "".join(out)


def to_png(graph: Graph, limit: int = MAX_SHOWN) -> bytes:
    """The same drawing as :func:`to_svg`, as PNG bytes (matplotlib's Agg, no pyplot), on an
    opaque white background. Chinese words need a font with their glyphs: without one
    installed, the words of the picture are English (the text view keeps the graph's language)."""
    from matplotlib.figure import Figure
    from matplotlib.transforms import Affine2D

    language, fonts = _png_fonts(graph, limit)
    lay = layout(graph, limit, language)
    fig = Figure(figsize=(lay.width / PNG_DPI, lay.height / PNG_DPI), dpi=PNG_DPI, facecolor=BACKGROUND)
    # the layout's pixels (y down) onto the canvas's (y up); artists on the figure itself, no axes
    px = Affine2D().scale(1, -1).translate(0, lay.height)
    _png_edges(fig, lay, px)
    _png_nodes(fig, lay, px, fonts)
    _png_words(fig, lay, px, fonts)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, facecolor=BACKGROUND, metadata={"Software": None})
    return buffer.getvalue()


def mimebundle(graph: Graph, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """``display(graph)``: SVG and PNG of the same drawing, and the text tree."""

    def wanted(mime: str) -> bool:
        return (not include or mime in include) and not (exclude and mime in exclude)

    bundle: dict[str, Any] = {}
    if wanted("image/svg+xml"):
        bundle["image/svg+xml"] = to_svg(graph)
    if wanted("image/png"):
        bundle["image/png"] = to_png(graph)
    bundle["text/plain"] = graph.to_text()
    return bundle


class DrawnGraph(Graph):
    """A :class:`.derive.graph.Graph` with its pictures: the graph a report carries
    (``result.graph``). Same fields, same text; :meth:`to_svg`, :meth:`to_png` and
    ``display(graph)`` draw it. ``dataclasses.replace`` keeps the class (``--quiz``'s graph
    without grads is drawn as well)."""

    def layout(self, limit: int = MAX_SHOWN, language: str | None = None) -> Layout:
        return layout(self, limit, language)

    def to_svg(self, limit: int = MAX_SHOWN) -> str:
        return to_svg(self, limit)

    def to_png(self, limit: int = MAX_SHOWN) -> bytes:
        return to_png(self, limit)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return mimebundle(self, include, exclude)


def drawn(graph: Graph | None) -> DrawnGraph | None:
    """*graph* as a :class:`DrawnGraph` (the same data, not copied); ``None`` stays ``None``."""
    if graph is None or isinstance(graph, DrawnGraph):
        return graph
    return DrawnGraph(**{f.name: getattr(graph, f.name) for f in dataclasses.fields(graph)})


# ---------------------------------------------------------------------------
# SVG and PNG pieces
# ---------------------------------------------------------------------------
def _svg_edges(lay: Layout, arrow: str) -> list[str]:
    """The edges as polylines ending in the *arrow* marker, then their labels on white."""
    out = []
    for _, _, points in lay.edges:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{EDGE}" stroke-width="1" marker-end="url(#{arrow})"/>'
        )
    for text, lx, ly in lay.label_spots():
        w = fmt.width(text) * LABEL_W + 4
        out.append(
            f'<rect x="{lx - w / 2:.1f}" y="{ly - LABEL_PX / 2 - 2:.1f}" width="{w:.1f}" '
            f'height="{LABEL_PX + 4:.1f}" fill="{BACKGROUND}" fill-opacity="0.9"/>'
            f'<text x="{lx:.1f}" y="{ly + LABEL_PX * 0.35:.1f}" fill="{LABEL}" font-size="{LABEL_PX:.0f}" '
            f'text-anchor="middle">{html.escape(text)}</text>'
        )
    return out


def _svg_node(n: Node, box: tuple[float, float, float, float]) -> str:
    x0, y0, w, h = box
    out = [
        f"<g><title>{html.escape(' | '.join(n.lines()))}</title>"
        f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" rx="4" '
        f'fill="{FILL[n.kind]}" stroke="{STROKE}" stroke-width="1"/>'
    ]
    for j, line in enumerate(n.lines()):
        weight = ' font-weight="bold"' if j == 0 else ""
        out.append(
            f'<text x="{x0 + w / 2:.1f}" y="{_baseline(y0, j):.1f}" fill="{TEXT}" '
            f'text-anchor="middle"{weight}>{html.escape(line)}</text>'
        )
    out.append("</g>")
    return "".join(out)


def _png_fonts(graph: Graph, limit: int) -> tuple[str, list[str]]:
    """The PNG's language and font families: DejaVu Sans Mono (it ships with matplotlib), and a
    CJK font for wide characters, or English words where none is installed."""
    language = graph.language
    fonts = ["DejaVu Sans Mono"]
    if language != "en" or any(fmt.width(s) != len(s) for n in graph.nodes[:limit] for s in n.lines()):
        from .plot import cjk_font

        extra = cjk_font()  # wide (CJK) characters: add a font that has them
        fonts += [extra] if extra else []
        language = language if extra else "en"
    return language, fonts


def _png_edges(fig: Any, lay: Layout, px: Any) -> None:
    from matplotlib.collections import LineCollection, PolyCollection

    line_pt = 72 / PNG_DPI  # 1 px
    fig.add_artist(
        LineCollection(
            [pts for _, _, pts in lay.edges], colors=EDGE, linewidths=line_pt, transform=px, zorder=1
        )
    )
    heads = [_arrowhead(*pts[-2], *pts[-1]) for _, _, pts in lay.edges]
    fig.add_artist(PolyCollection(heads, facecolors=EDGE, edgecolors="none", transform=px, zorder=2))


def _png_nodes(fig: Any, lay: Layout, px: Any, fonts: list[str]) -> None:
    from matplotlib.patches import FancyBboxPatch

    points, line_pt = FONT_PX * 72 / PNG_DPI, 72 / PNG_DPI
    for n in lay.nodes:
        x0, y0, w, h = lay.boxes[n.id]
        box = FancyBboxPatch(
            (x0, y0), w, h, boxstyle="round,pad=0,rounding_size=4", facecolor=FILL[n.kind], edgecolor=STROKE,
            linewidth=line_pt, transform=px, zorder=3,
        )  # fmt: skip
        fig.add_artist(box)
        for j, line in enumerate(n.lines()):
            fig.text(
                x0 + w / 2, _baseline(y0, j), line, ha="center", va="baseline", family=fonts, size=points,
                weight="bold" if j == 0 else "normal", color=TEXT, transform=px, zorder=4,
            )  # fmt: skip


def _png_words(fig: Any, lay: Layout, px: Any, fonts: list[str]) -> None:
    """The caption and the legend above the rows, the edge labels, "… N more nodes" under them."""
    for text, y, size, colour in lay.header():
        fig.text(
            PAD, y, text, va="baseline", family=fonts, size=size * 72 / PNG_DPI, color=colour, transform=px
        )
    for text, lx, ly in lay.label_spots():
        fig.text(
            lx, ly, text, ha="center", va="center", family=fonts, size=LABEL_PX * 72 / PNG_DPI, color=LABEL,
            transform=px, zorder=2.5,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": BACKGROUND, "edgecolor": "none", "alpha": 0.9},
        )  # fmt: skip
    if lay.more:
        fig.text(
            PAD, lay.height - PAD - 3, lay.more, va="baseline", family=fonts, size=FONT_PX * 72 / PNG_DPI,
            color=MORE, transform=px,
        )  # fmt: skip


# ---------------------------------------------------------------------------
# the layout: layers, crossing reduction, x placement, edge routing
# ---------------------------------------------------------------------------
def _x_at(points: list[tuple[float, float]], y: float) -> float:
    """The x of a polyline (going down) at height *y*."""
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        if y1 <= y <= y2 and y2 > y1:
            return x1 + (x2 - x1) * (y - y1) / (y2 - y1)
    return points[0][0]


def _baseline(top: float, line: int) -> float:
    return top + PAD + LINE_H * (line + 0.75)


def _arrowhead(x1: float, y1: float, x2: float, y2: float) -> list[tuple[float, float]]:
    """The SVG marker's triangle (7 px long and wide) at (x2, y2), pointing from (x1, y1)."""
    length = max(((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5, 1e-9)
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    bx, by = x2 - 7 * ux, y2 - 7 * uy
    return [(x2, y2), (bx - 3.5 * uy, by + 3.5 * ux), (bx + 3.5 * uy, by - 3.5 * ux)]


def _box(node: Node) -> tuple[float, float]:
    lines = node.lines()
    return max(fmt.width(s) for s in lines) * CHAR_W + 2 * PAD, len(lines) * LINE_H + 2 * PAD


def _layers(nodes: list[Node], edges: list[tuple[int, int]], leaves_down: bool = True) -> dict[int, int]:
    """Longest-path layers from the output, so every edge points down; leaves on the last row."""
    layer = longest_paths([n.id for n in nodes], edges)
    bottom = max(layer.values(), default=0)
    for n in nodes:
        if leaves_down and n.kind == "leaf":
            layer[n.id] = bottom
    return layer


@dataclass
class _Plan:
    """Rows of items (the nodes, then one dummy per row a long edge passes) in drawing order."""

    layer: list[int]  # item -> row
    size: list[tuple[float, float]]  # item -> (width, height); dummies (0, 0)
    chains: list[list[int]]  # edge -> items from the parent to the child
    up: list[list[int]]
    down: list[list[int]]
    rows: list[list[int]]
    crossings: int


def _plan(shown: list[Node], edges: list[tuple[int, int]], layer_of: dict[int, int]) -> _Plan:
    index = {n.id: i for i, n in enumerate(shown)}
    size = [_box(n) for n in shown]
    layer = [layer_of[n.id] for n in shown]
    chains: list[list[int]] = []
    for a, b in edges:
        chain = [index[a]]
        for k in range(layer_of[a] + 1, layer_of[b]):
            chain.append(len(layer))
            layer.append(k)
            size.append((0.0, 0.0))
        chain.append(index[b])
        chains.append(chain)
    count = len(layer)
    up: list[list[int]] = [[] for _ in range(count)]
    down: list[list[int]] = [[] for _ in range(count)]
    for chain in chains:
        for u, v in itertools.pairwise(chain):
            down[u].append(v)
            up[v].append(u)
    rows = _initial_order(count, layer, down, max(layer, default=0) + 1)
    rows, crossings = _reduce_crossings(rows, up, down)
    return _Plan(layer, size, chains, up, down, rows, crossings)


def _best_plan(shown: list[Node], edges: list[tuple[int, int]]) -> _Plan:
    """Leaves on the bottom row, unless that forces crossings another row for a leaf avoids:
    in ``u**3 + v**2 + 4*u*v`` the two paths from one sum to the other nest only with ``u``
    and ``v`` on different rows."""
    layer_of = _layers(shown, edges)
    plan = _plan(shown, edges, layer_of)
    if not plan.crossings or len(shown) > SEARCH_NODES:
        return plan
    plain = _layers(shown, edges, leaves_down=False)
    if plain != layer_of:
        trial = _plan(shown, edges, plain)
        if trial.crossings < plan.crossings:
            plan, layer_of = trial, plain
    leaves = [n.id for n in shown if n.kind == "leaf"]
    for _ in range(2):  # a leaf at a time one row below all others, while that removes crossings
        better = False
        for leaf in leaves:
            bottom = max(layer_of.values())
            if plan.crossings == 0 or sum(1 for v in layer_of.values() if v == layer_of[leaf]) < 2:
                continue
            moved = {**layer_of, leaf: bottom + 1}
            trial = _plan(shown, edges, moved)
            if trial.crossings < plan.crossings:
                plan, layer_of, better = trial, moved, True
        if not better:
            break
    return plan


def _layout(
    shown: list[Node],
    edges: list[tuple[int, int]],
    hidden: int,
    gap_y: float = GAP_Y,
    words: tuple[str, str, str] = ("", "", ""),
) -> Layout:
    """Layers, dummy points for long edges, crossing reduction, x placement and edge routing;
    *words* (the caption and the legend above the rows, "… N more nodes" under them) make room."""
    title, legend, more = words
    plan = _best_plan(shown, edges)
    layer, size, chains, rows, real = plan.layer, plan.size, plan.chains, plan.rows, len(shown)
    count = len(layer)
    x = _place(rows, size, plan.up, plan.down, real)
    # rows' vertical extent, under the caption and the legend
    lines = sum(1 for w in (title, legend) if w)
    top, bottom, y = [], [], PAD + (lines * LINE_H + PAD if lines else 0)
    for row in rows:
        height = max((size[i][1] for i in row), default=0.0)
        top.append(y)
        bottom.append(y + height)
        y += height + gap_y
    left = min((x[i] - size[i][0] / 2 for i in range(count)), default=0.0)
    right = max((x[i] + size[i][0] / 2 for i in range(count)), default=0.0)
    width = max(
        [right - left + 2 * PAD] + [fmt.width(w) * c + 2 * PAD for w, c in zip(words, WORD_W, strict=True)]
    )
    shift = (width - (right - left)) / 2 - left  # the drawing centred under wider words
    x = [v + shift for v in x]
    height = bottom[-1] + PAD + (LINE_H + PAD if more else 0)
    boxes = {
        n.id: (x[i] - size[i][0] / 2, top[layer[i]], size[i][0], size[i][1]) for i, n in enumerate(shown)
    }
    out_port, in_port = _ports(chains, x, size, real)
    routed = []
    for e, chain in enumerate(chains):
        a, b = chain[0], chain[-1]
        pts = [(out_port[e], top[layer[a]] + size[a][1]), (out_port[e], bottom[layer[a]] + STUB)]
        for d in chain[1:-1]:
            pts += [(x[d], top[layer[d]] - STUB), (x[d], bottom[layer[d]] + STUB)]
        pts += [(in_port[e], top[layer[b]] - STUB), (in_port[e], top[layer[b]])]
        routed.append((shown[a].id, shown[b].id, _simplify(pts)))
    size_px = (float(round(width + 0.49)), float(round(height + 0.49)))
    return Layout(*size_px, list(shown), boxes, routed, hidden, title=title, legend=legend, more=more)


def _initial_order(count: int, layer: list[int], down: list[list[int]], depth: int) -> list[list[int]]:
    """Each row in depth-first order from the output: a tree comes out without crossings."""
    rows: list[list[int]] = [[] for _ in range(depth)]
    seen = [False] * count
    for start in range(count):
        if seen[start]:
            continue
        stack = [start]
        while stack:
            i = stack.pop()
            if seen[i]:
                continue
            seen[i] = True
            rows[layer[i]].append(i)
            stack.extend(reversed(down[i]))
    return rows


def _crossings(rows: list[list[int]], down: list[list[int]], pos: list[int]) -> int:
    """Pairs of edges between neighbouring rows that cross (edges sharing an end never do)."""
    total = 0
    for k in range(len(rows) - 1):
        pairs = sorted((pos[u], pos[v]) for u in rows[k] for v in down[u])
        if len(pairs) < 2:
            continue
        tree = [0] * (len(rows[k + 1]) + 1)  # Fenwick tree over the lower row's positions
        for seen, (_, p) in enumerate(pairs):
            j, below = p + 1, 0  # edges seen so far that end at or left of p
            while j > 0:
                below += tree[j]
                j -= j & -j
            total += seen - below
            j = p + 1
            while j < len(tree):
                tree[j] += 1
                j += j & -j
    return total


def _reduce_crossings(
    rows: list[list[int]], up: list[list[int]], down: list[list[int]]
) -> tuple[list[list[int]], int]:
    """Barycenter sweeps down and up, each followed by adjacent swaps; the best order wins."""
    pos = [0] * len(up)

    def number(row: list[int]) -> None:
        for p, i in enumerate(row):
            pos[i] = p

    for row in rows:
        number(row)
    best, best_rows = _crossings(rows, down, pos), [list(r) for r in rows]
    stale = 0
    for sweep in range(2 * SWEEPS):
        if best == 0 or stale >= 4:
            break
        going_down = sweep % 2 == 0
        order = range(1, len(rows)) if going_down else range(len(rows) - 2, -1, -1)
        for k in order:
            near = up if going_down else down
            row = rows[k]
            row.sort(key=lambda i: sum(pos[j] for j in near[i]) / len(near[i]) if near[i] else pos[i])
            number(row)
        _transpose(rows, up, down, pos)
        found = _crossings(rows, down, pos)
        if found < best:
            best, best_rows, stale = found, [list(r) for r in rows], 0
        else:
            stale += 1
    return best_rows, best


def _transpose(rows: list[list[int]], up: list[list[int]], down: list[list[int]], pos: list[int]) -> None:
    """Swap neighbours in a row while that removes crossings with the rows above and below."""

    def cost(u: int, v: int) -> int:  # crossings between u's and v's edges with u left of v
        return sum(1 for near in (up, down) for a in near[u] for b in near[v] if pos[a] > pos[b])

    for _ in range(8):
        better = False
        for row in rows:
            for p in range(len(row) - 1):
                u, v = row[p], row[p + 1]
                if cost(v, u) < cost(u, v):
                    row[p], row[p + 1] = v, u
                    pos[u], pos[v] = p + 1, p
                    better = True
        if not better:
            break


def _place(
    rows: list[list[int]],
    size: list[tuple[float, float]],
    up: list[list[int]],
    down: list[list[int]],
    real: int,
) -> list[float]:
    """x of every item's centre: rows packed, then each row fitted in turn to the mean x of its
    neighbours (down, then up) under its order and spacing."""
    x = [0.0] * len(size)
    gaps = [[_gap(row[p], row[p + 1], size, real) for p in range(len(row) - 1)] for row in rows]
    widest = max((sum(g) for g in gaps), default=0.0)
    for row, gap in zip(rows, gaps, strict=True):
        at = (widest - sum(gap)) / 2
        for p, i in enumerate(row):
            x[i] = at
            at += gap[p] if p < len(gap) else 0.0
    weight = [1.0 if i < real else 2.0 for i in range(len(size))]  # long edges straight first
    for _ in range(PLACE_ROUNDS):
        for direction in ("down", "up"):
            ks = range(1, len(rows)) if direction == "down" else range(len(rows) - 2, -1, -1)
            near = up if direction == "down" else down
            for k in ks:
                row = rows[k]
                want = [sum(x[j] for j in near[i]) / len(near[i]) if near[i] else x[i] for i in row]
                for i, v in zip(row, _fit(want, gaps[k], [weight[i] for i in row]), strict=True):
                    x[i] = v
    return x


def _gap(u: int, v: int, size: list[tuple[float, float]], real: int) -> float:
    """Centre-to-centre distance of neighbours in a row."""
    gap = GAP_X if u < real and v < real else GAP_DUMMY
    return size[u][0] / 2 + size[v][0] / 2 + gap


def _fit(want: list[float], gaps: list[float], weight: list[float]) -> list[float]:
    """Positions closest to *want* (weighted least squares) with ``x[p + 1] - x[p] >= gaps[p]``:
    pool-adjacent-violators on ``want - offsets``."""
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    blocks: list[list[float]] = []  # [weighted sum, weight, length]
    for w, o, v in zip(weight, offsets, want, strict=True):
        blocks.append([w * (v - o), w, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, wt, n = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += wt
            blocks[-1][2] += n
    out: list[float] = []
    for s, wt, n in blocks:
        out += [s / wt] * int(n)
    return [v + o for v, o in zip(out, offsets, strict=True)]


def _ports(
    chains: list[list[int]], x: list[float], size: list[tuple[float, float]], real: int
) -> tuple[list[float], list[float]]:
    """Where each edge leaves its parent's bottom and enters its child's top: several edges on
    one side of a box are spread along it in the order of their other ends, so they never cross."""
    out_port = [0.0] * len(chains)
    in_port = [0.0] * len(chains)
    leaving: dict[int, list[tuple[float, int]]] = {}
    entering: dict[int, list[tuple[float, int]]] = {}
    for e, chain in enumerate(chains):
        leaving.setdefault(chain[0], []).append((x[chain[1]], e))
        entering.setdefault(chain[-1], []).append((x[chain[-2]], e))
    for ends, port in ((leaving, out_port), (entering, in_port)):
        for i, edges in ends.items():
            edges.sort()
            step = min(PORT_GAP, (size[i][0] - 2 * PAD) / max(1, len(edges) - 1))
            for p, (_, e) in enumerate(edges):
                port[e] = x[i] + (p - (len(edges) - 1) / 2) * step
    return out_port, in_port


def _simplify(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Drop the middle of three points on one vertical line (straight runs become one segment)."""
    out = [points[0]]
    for p, q in itertools.pairwise(points[1:]):
        if not (out[-1][0] == p[0] == q[0]):
            out.append(p)
    out.append(points[-1])
    return out
