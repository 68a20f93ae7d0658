"""``--graph``: the backward graph with the user's names, values and grads.

:func:`build` walks ``grad_fn.next_functions`` from the output back to the
leaves (as torchviz does) and returns plain data: nodes and edges, each node
already labelled with text. Rendering needs no graphviz binary: a text tree
for terminals, and a layered drawing (:meth:`Graph.layout`) that
:meth:`Graph.to_svg` writes as a standalone SVG and :meth:`Graph.to_png` draws
with matplotlib; ``display(graph)`` shows it as an image in any front end.
Big graphs are kept whole as data; the views cut them after a number of
nodes and say how many more there are.

The layout (Sugiyama's layered drawing, kept small): longest-path layers with
the output at the top and the leaves on the bottom row; a dummy point on every
row an edge passes, so long edges are routed as polylines around the boxes;
barycenter sweeps down and up with adjacent swaps, keeping the order with the
fewest crossings; then x positions fitted to the neighbours under the rows'
order and spacing (isotonic regression), so boxes never overlap and an edge
only runs through the gaps between them.

On a model (``--graph`` with ``nn.Module`` calls in the cell), :func:`fold` puts the nodes each
module call made into one box (``net.0 (Linear)``, its ops and parameters listed inside) and
repeated blocks chained one after another into one (``layers.0–11 (TransformerEncoderLayer) ×
12``); the result is a plain :class:`Graph` again, drawn by the same views. Which call made which
node comes from :mod:`.modules`, through :attr:`Graph.sources`.
"""

from __future__ import annotations

import html
import io
import itertools
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from . import format as fmt
from .messages import t

MAX_SHOWN = 80  # nodes drawn before "… N more nodes"
MAX_INDENT = 36  # characters of indentation in the text tree
# pixels: a monospace character at 12 px, a text line, padding, gaps between boxes and rows
FONT_PX, CHAR_W, LINE_H, PAD, GAP_X, GAP_Y = 12.0, 7.25, 15.0, 6.0, 18.0, 44.0
GAP_LABEL = 64.0  # rows' gap when edges carry labels (--steps --graph)
LABEL_PX, LABEL_W = 10.0, 6.05  # edge labels: font size and character width
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
}
BACKGROUND, TEXT, STROKE, EDGE, MORE = "#ffffff", "#111111", "#555555", "#777777", "#aa0000"
LABEL = "#0b4f8a"  # edge labels (--steps): dark blue on the white background
SVG_FONTS = "DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, monospace"
PNG_DPI = 100  # one layout pixel = one image pixel


@dataclass
class Node:
    """One node of the backward graph, as text."""

    id: int
    kind: str  # "output", "named" (a named intermediate), "function", "leaf", "saved"
    op: str  # MulBackward0, AccumulateGrad, ... ("" for saved values)
    name: str | None = None  # the user's variable name, if any
    data: str | None = None
    grad: str | None = None
    extra: list[str] = field(default_factory=list)  # saved values (--graph=full)
    shape: str | None = None  # a leaf's shape, "(32, 8)" (folded modules list their parameters with it)

    def lines(self) -> list[str]:
        head = f"{self.name} ({self.op})" if self.name and self.op else self.name or self.op
        lines = [head]
        if self.data is not None:
            lines.append(f"data {self.data}")
        if self.grad is not None:
            lines.append(f"grad {self.grad}")
        return lines + self.extra


@dataclass
class Layout:
    """Where everything goes, in pixels (y grows downwards).

    ``boxes`` maps a node id to ``(x, y, width, height)``; ``edges`` holds
    ``(parent id, child id, points)`` with the polyline from the parent's bottom
    to the child's top, in the order of :attr:`Graph.edges`."""

    width: float
    height: float
    nodes: list[Node]
    boxes: dict[int, tuple[float, float, float, float]]
    edges: list[tuple[int, int, list[tuple[float, float]]]]
    hidden: int  # nodes not drawn
    labels: list[str | None] = field(default_factory=list)  # per edge (--steps): the gradient flowing

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


@dataclass
class Graph:
    """The backward graph as plain data: ``nodes`` and ``edges`` (parent id, child id),
    from the output (node 0) towards the leaves, in a deterministic order."""

    nodes: list[Node]
    edges: list[tuple[int, int]]
    labels: list[str | None] = field(default_factory=list)  # per edge, with --steps: "×6 → 18"
    # node id -> id() of the autograd node it was drawn from (build); valid only while something
    # holds those autograd nodes (modules.owner_of_nodes does): see fold()
    sources: dict[int, int] = field(default_factory=dict, compare=False, repr=False)

    def label(self, index: int) -> str | None:
        return self.labels[index] if index < len(self.labels) else None

    def children(self) -> dict[int, list[int]]:
        kids: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for a, b in self.edges:
            kids[a].append(b)
        return kids

    def child_labels(self) -> dict[int, list[str | None]]:
        found: dict[int, list[str | None]] = {n.id: [] for n in self.nodes}
        for k, (a, _) in enumerate(self.edges):
            found[a].append(self.label(k))
        return found

    # ---- text ------------------------------------------------------------
    def to_text(self, limit: int = MAX_SHOWN) -> str:
        """An indented tree from the output; a shared node is drawn once and referred to after."""
        if not self.nodes:
            return ""
        kids, by_id = self.children(), {n.id: n for n in self.nodes}
        edge_labels = self.child_labels()
        lines: list[str] = []
        seen: set[int] = set()
        stack: list[tuple[int, str, str, str | None]] = [(self.nodes[0].id, "", "", None)]
        while stack:
            node_id, lead, branch, flow = stack.pop()
            node = by_id[node_id]
            label = " · ".join(node.lines())
            if flow:
                branch += f"[{flow}] "
            if node_id in seen:
                lines.append(f"{lead}{branch}↑ {node.name or node.op} {t('graph.shared')}")
                continue
            if len(seen) >= limit:
                lines.append(f"{lead}{branch}{t('graph.more', count=len(self.nodes) - len(seen))}")
                break
            seen.add(node_id)
            lines.append(f"{lead}{branch}{label}")
            child_lead = "" if not branch else lead + ("   " if branch.startswith("└─ ") else "│  ")
            if len(child_lead) > MAX_INDENT:  # long chains: stop indenting, stay readable
                child_lead = lead
            items = kids[node_id]
            for i, child in reversed(list(enumerate(items))):
                stack.append(
                    (child, child_lead, "└─ " if i == len(items) - 1 else "├─ ", edge_labels[node_id][i])
                )
        return "\n".join(lines)

    # ---- drawing -----------------------------------------------------------
    def layout(self, limit: int = MAX_SHOWN) -> Layout:
        """The drawing of the first *limit* nodes: output at the top, leaves at the bottom."""
        shown = self.nodes[:limit]
        ids = {n.id for n in shown}
        kept = [k for k, (a, b) in enumerate(self.edges) if a in ids and b in ids]
        labels = [self.label(k) for k in kept]
        gap = GAP_LABEL if any(labels) else GAP_Y
        lay = _layout(shown, [self.edges[k] for k in kept], len(self.nodes) - len(shown), gap)
        lay.labels = labels
        return lay

    def to_svg(self, limit: int = MAX_SHOWN) -> str:
        """A standalone SVG (presentation attributes only, its own white background, ids unique
        to this call), so it looks the same inline, in an ``<img>``, on a dark theme or saved."""
        lay = self.layout(limit)
        arrow = f"tgm-arrow-{uuid.uuid4().hex[:12]}"
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{lay.width:.0f}" '
            f'height="{lay.height:.0f}" viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" '
            f'font-family="{SVG_FONTS}" font-size="{FONT_PX:.0f}">',
            f'<rect x="0" y="0" width="{lay.width:.0f}" height="{lay.height:.0f}" fill="{BACKGROUND}"/>',
            f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M 0 0 L 10 5 L 0 10 z" fill="{EDGE}"/></marker></defs>',
        ]
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
        for n in lay.nodes:
            x0, y0, w, h = lay.boxes[n.id]
            out.append(
                f"<g><title>{html.escape(' | '.join(n.lines()))}</title>"
                f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" rx="4" '
                f'fill="{FILL[n.kind]}" stroke="{STROKE}" stroke-width="1"/>'
            )
            for j, line in enumerate(n.lines()):
                weight = ' font-weight="bold"' if j == 0 else ""
                out.append(
                    f'<text x="{x0 + w / 2:.1f}" y="{_baseline(y0, j):.1f}" fill="{TEXT}" '
                    f'text-anchor="middle"{weight}>{html.escape(line)}</text>'
                )
            out.append("</g>")
        if lay.hidden:
            more = html.escape(t("graph.more", count=lay.hidden))
            out.append(f'<text x="{PAD:.0f}" y="{lay.height - PAD - 3:.1f}" fill="{MORE}">{more}</text>')
        out.append("</svg>")
        return "".join(out)

    def to_png(self, limit: int = MAX_SHOWN) -> bytes:
        """The same drawing as :meth:`to_svg`, as PNG bytes (matplotlib's Agg, no pyplot)."""
        from matplotlib.collections import LineCollection, PolyCollection
        from matplotlib.figure import Figure
        from matplotlib.patches import FancyBboxPatch
        from matplotlib.transforms import Affine2D

        lay = self.layout(limit)
        fonts = ["DejaVu Sans Mono"]  # ships with matplotlib
        labels = [line for n in lay.nodes for line in n.lines()]
        if lay.hidden:
            labels.append(t("graph.more", count=lay.hidden))
        if any(fmt.width(s) != len(s) for s in labels):  # wide (CJK) characters: add a font that has them
            from .plot import cjk_font

            extra = cjk_font()
            fonts += [extra] if extra else []
        points = FONT_PX * 72 / PNG_DPI
        line_pt = 72 / PNG_DPI  # 1 px
        fig = Figure(figsize=(lay.width / PNG_DPI, lay.height / PNG_DPI), dpi=PNG_DPI, facecolor=BACKGROUND)
        # the layout's pixels (y down) onto the canvas's (y up); artists on the figure itself, no axes
        px = Affine2D().scale(1, -1).translate(0, lay.height)
        fig.add_artist(
            LineCollection(
                [pts for _, _, pts in lay.edges], colors=EDGE, linewidths=line_pt, transform=px, zorder=1
            )
        )
        heads = [_arrowhead(*pts[-2], *pts[-1]) for _, _, pts in lay.edges]
        fig.add_artist(PolyCollection(heads, facecolors=EDGE, edgecolors="none", transform=px, zorder=2))
        for n in lay.nodes:
            x0, y0, w, h = lay.boxes[n.id]
            box = FancyBboxPatch(
                (x0, y0),
                w,
                h,
                boxstyle="round,pad=0,rounding_size=4",
                facecolor=FILL[n.kind],
                edgecolor=STROKE,
                linewidth=line_pt,
                transform=px,
                zorder=3,
            )
            fig.add_artist(box)
            for j, line in enumerate(n.lines()):
                fig.text(
                    x0 + w / 2,
                    _baseline(y0, j),
                    line,
                    ha="center",
                    va="baseline",
                    family=fonts,
                    size=points,
                    weight="bold" if j == 0 else "normal",
                    color=TEXT,
                    transform=px,
                    zorder=4,
                )
        for text, lx, ly in lay.label_spots():
            fig.text(
                lx, ly, text, ha="center", va="center", family=fonts, size=LABEL_PX * 72 / PNG_DPI, color=LABEL,
                transform=px, zorder=2.5,
                bbox={"boxstyle": "square,pad=0.1", "facecolor": BACKGROUND, "edgecolor": "none", "alpha": 0.9},
            )  # fmt: skip
        if lay.hidden:
            more = t("graph.more", count=lay.hidden)
            fig.text(
                PAD,
                lay.height - PAD - 3,
                more,
                va="baseline",
                family=fonts,
                size=points,
                color=MORE,
                transform=px,
            )
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=PNG_DPI, facecolor=BACKGROUND, metadata={"Software": None})
        return buffer.getvalue()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """``display(graph)``: SVG and PNG of the same drawing, and the text tree."""

        def wanted(mime: str) -> bool:
            return (not include or mime in include) and not (exclude and mime in exclude)

        bundle: dict[str, Any] = {}
        if wanted("image/svg+xml"):
            bundle["image/svg+xml"] = self.to_svg()
        if wanted("image/png"):
            bundle["image/png"] = self.to_png()
        bundle["text/plain"] = self.to_text()
        return bundle


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
    indegree = {n.id: 0 for n in nodes}
    kids: dict[int, list[int]] = {n.id: [] for n in nodes}
    for a, b in edges:
        indegree[b] += 1
        kids[a].append(b)
    layer = {n.id: 0 for n in nodes}
    queue = deque(i for i, d in indegree.items() if d == 0)
    while queue:
        a = queue.popleft()
        for b in kids[a]:
            layer[b] = max(layer[b], layer[a] + 1)
            indegree[b] -= 1
            if indegree[b] == 0:
                queue.append(b)
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


def _layout(shown: list[Node], edges: list[tuple[int, int]], hidden: int, gap_y: float = GAP_Y) -> Layout:
    """Layers, dummy points for long edges, crossing reduction, x placement and edge routing."""
    plan = _best_plan(shown, edges)
    layer, size, chains, rows, real = plan.layer, plan.size, plan.chains, plan.rows, len(shown)
    count = len(layer)
    x = _place(rows, size, plan.up, plan.down, real)
    # rows' vertical extent
    top, bottom, y = [], [], PAD
    for row in rows:
        height = max((size[i][1] for i in row), default=0.0)
        top.append(y)
        bottom.append(y + height)
        y += height + gap_y
    left = min((x[i] - size[i][0] / 2 for i in range(count)), default=0.0)
    shift = PAD - left
    x = [v + shift for v in x]
    width = max((x[i] + size[i][0] / 2 for i in range(count)), default=0.0) + PAD
    height = bottom[-1] + PAD + (LINE_H + PAD if hidden else 0)
    if hidden:
        width = max(width, fmt.width(t("graph.more", count=hidden)) * CHAR_W + 2 * PAD)
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
    return Layout(float(round(width + 0.49)), float(round(height + 0.49)), list(shown), boxes, routed, hidden)


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


# ---------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------
def build(
    output: torch.Tensor,
    out_name: str,
    names: dict[int, str],
    tensors: list[torch.Tensor],
    grads: dict[int, torch.Tensor | None],
    full: bool = False,
    digits: int = 4,
    flow: dict[int, tuple[str | None, list[str | None]]] | None = None,
) -> Graph:
    """The graph behind *output*.

    names
        ``id(tensor) -> name`` for the user's tensors (leaves and intermediates).
    tensors
        the user's named tensors: a non-leaf one labels its ``grad_fn`` node.
    grads
        ``id(tensor) -> grad`` to show (leaves' grads, retained intermediates').
    full
        also show the values each backward node saved (exponents, factors, saved tensors).
    flow
        with ``--steps``: ``id(node) -> (gradient that arrived, a label per input edge)``,
        the numbers autograd passed along each edge (:func:`.steps.graph_flow`).
    """
    flow = flow or {}

    def values(x: torch.Tensor) -> str:
        return fmt.values(x, digits, 4)

    def grad_text(tensor: torch.Tensor) -> str | None:
        g = grads.get(id(tensor))
        return None if g is None else values(g)

    by_fn = {id(x.grad_fn): x for x in tensors if x.grad_fn is not None and id(x) in names}

    def name_of(x: torch.Tensor) -> str | None:
        """The user's name for a saved tensor: the same tensor (a saved input), or the same
        output of the same node (a saved output is unpacked as a new tensor object)."""
        name = names.get(id(x))
        if name is None and x.grad_fn is not None:
            owner = by_fn.get(id(x.grad_fn))
            if owner is not None and owner.output_nr == x.output_nr and owner.shape == x.shape:
                name = names.get(id(owner))
        return name

    nodes: list[Node] = []
    edges: list[tuple[int, int]] = []
    index: dict[int, int] = {}
    # PyTorch makes a new Python object for an autograd node each time one is asked for while none
    # is alive, so id() is only stable while one is held: every node seen is kept until the end
    held: list[Any] = []
    sources: dict[int, int] = {}
    if output.grad_fn is None:  # the output is a leaf itself
        nodes.append(Node(0, "output", "", out_name, values(output.detach()), grad_text(output)))
        return Graph(nodes, edges)

    def add(fn: Any) -> int:
        node_id = len(nodes)
        index[id(fn)] = node_id
        held.append(fn)
        sources[node_id] = id(fn)
        op = type(fn).__name__
        variable = getattr(fn, "variable", None)
        if isinstance(variable, torch.Tensor):
            name = names.get(id(variable))
            data = values(variable.detach())
            label = name or f"{type(variable).__name__} {fmt.shape(variable)}"
            nodes.append(
                Node(node_id, "leaf", op, label, data, grad_text(variable), shape=fmt.shape(variable))
            )
            return node_id
        if node_id == 0:
            nodes.append(Node(node_id, "output", op, out_name, values(output.detach()), grad_text(output)))
        elif id(fn) in by_fn:
            tensor = by_fn[id(fn)]
            name = names[id(tensor)]
            nodes.append(Node(node_id, "named", op, name, values(tensor.detach()), grad_text(tensor)))
        else:
            nodes.append(Node(node_id, "function", op))
        if id(fn) in flow and nodes[-1].grad is None:
            nodes[-1].grad = flow[id(fn)][0]
        if full:
            nodes[-1].extra = _saved(fn, values, name_of)
        return node_id

    labels: list[str | None] = []
    queue = deque([output.grad_fn])
    add(output.grad_fn)
    while queue:
        fn = queue.popleft()
        parent = index[id(fn)]
        edge_flow = flow.get(id(fn), (None, []))[1]
        for i, (nxt, _) in enumerate(fn.next_functions):
            if nxt is None:
                continue
            if id(nxt) not in index:
                add(nxt)
                queue.append(nxt)
            edges.append((parent, index[id(nxt)]))
            labels.append(edge_flow[i] if i < len(edge_flow) else None)
    return Graph(nodes, edges, labels if any(labels) else [], sources)


def _saved(fn: Any, values: Any, name_of: Any) -> list[str]:
    """``name = value`` for what a backward node saved: ``exponent = 2``, ``other = u`` (a saved
    tensor that is one of the user's named tensors shows the name), ``self = 12`` (an unnamed one
    shows its values). A value PyTorch did not keep (``None``: not needed for the grads asked
    for, or an optional argument not given) is left out."""

    def text(value: Any) -> str | None:
        if isinstance(value, torch.Tensor):
            name = name_of(value)
            if name is not None:
                return name
            return values(value.detach()) + (f" {fmt.shape(value)}" if value.dim() else "")
        if isinstance(value, bool | int | float | complex):
            return fmt.number(value)
        if isinstance(value, str):
            return repr(value)
        if isinstance(value, tuple | list | torch.Size) and len(value) <= 6:
            parts = [text(v) for v in value]
            if any(p is None for p in parts):
                return None
            return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        return None  # None itself, or something too long to be worth a line

    found = []
    for attr in sorted(a for a in dir(fn) if a.startswith("_saved_")):
        label = attr[len("_saved_") :]
        try:
            value = getattr(fn, attr)
        except RuntimeError:  # freed by an earlier backward()
            found.append(f"{label} = {t('graph.freed')}")
            continue
        shown = text(value)
        if shown is not None:
            found.append(f"{label} = {shown}")
    return found


# ---------------------------------------------------------------------------
# folding modules (--graph on a model)
# ---------------------------------------------------------------------------
MIN_RUN = 3  # repeated blocks chained one after another fold into one box from this many on
MAX_PARAM_LINES = 6  # parameters listed in a module's box
MAX_OP_NAMES = 3  # a box names its ops when they are of at most this many kinds
CALL_MARK = "#"  # a call key's mark for a module's later calls: "cell#2" (modules.call_keys)
WORDS: dict[str, dict[str, str]] = {  # the boxes' words (to move into messages.py)
    "fold.op": {"en": "1 op", "zh": "1 个运算"},
    "fold.ops": {"en": "{count} ops", "zh": "{count} 个运算"},
    "fold.named_ops": {"en": "{ops}: {names}", "zh": "{ops}：{names}"},
    "fold.each": {"en": "each: {text}", "zh": "每个：{text}"},
    "fold.more_params": {"en": "… {count} more parameters", "zh": "…… 另有 {count} 个参数"},
}


def _word(key: str, **fields: object) -> str:
    from .messages import resolve

    return WORDS[key][resolve(None)].format(**fields)


@dataclass
class Box(Node):
    """A module call folded into one node (:func:`fold`): ``name`` the module's qualified name
    (``net.0``; ``model.layers.0–11`` for repeated blocks), ``op`` its type, ``extra`` the lines
    under the title (the outputs named in the cell, the ops, the parameters)."""

    repeat: int = 1  # blocks folded into this box ("× 12")
    calls: list[str] = field(default_factory=list)  # the call keys folded in, in forward order
    members: list[int] = field(default_factory=list)  # ids of the folded graph's nodes inside

    def lines(self) -> list[str]:
        head = f"{self.name} ({self.op})" if self.op and self.name != self.op else self.name or self.op
        return [head + (f" × {self.repeat}" if self.repeat > 1 else ""), *self.extra]


@dataclass
class _Calls:
    """What fold knows of the calls: plain names, parents, levels, and which made other calls."""

    kinds: dict[str, str]
    parent: dict[str, str | None]
    level: dict[str, int]
    has_calls: set[str]
    order: dict[str, int]


def _plain(key: str) -> str:
    """``net.0#2`` -> ``net.0``."""
    name, mark, count = key.rpartition(CALL_MARK)
    return name if mark and count.isdigit() else key


def _call_number(key: str) -> int:
    name, mark, count = key.rpartition(CALL_MARK)
    return int(count) if mark and count.isdigit() and name else 1


def _calls(keys: Any, kinds: dict[str, str], parents: dict[str, str | None] | None) -> _Calls:
    every = dict.fromkeys([*kinds, *keys])
    if parents is None:  # from the names: the longest dotted prefix that is a call too
        by_name: dict[str, str] = {}
        for key in every:
            by_name.setdefault(_plain(key), key)
        parents = {}
        for key in every:
            parts = _plain(key).split(".")
            parents[key] = next(
                (
                    by_name[p]
                    for p in (".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1))
                    if p in by_name
                ),
                None,
            )
    parent = {key: parents.get(key) for key in every}
    for key in list(parent):  # a parent nothing else mentions
        p = parent[key]
        if p is not None and p not in parent:
            parent[p] = None
    level: dict[str, int] = {}

    def level_of(key: str) -> int:
        chain = []
        k: str | None = key
        while k is not None and k not in level and k not in chain:
            chain.append(k)
            k = parent.get(k)
        base = level.get(k, -1) if k is not None else -1
        for c in reversed(chain):
            # a call from the cell: level 0 if it is a variable (net), else 1 (net.0 called directly)
            base = base + 1 if base >= 0 else (0 if "." not in _plain(c) else 1)
            level[c] = base
        return level[key]

    for key in parent:
        level_of(key)
    has_calls = {p for p in parent.values() if p is not None}
    order = {key: i for i, key in enumerate(parent)}
    return _Calls({k: kinds.get(k, "") for k in parent}, parent, level, has_calls, order)


def _box_of(key: str, depth: int, calls: _Calls) -> str | None:
    """The call whose box a node made in call *key* goes into at *depth*; None: drawn as it is."""
    if calls.level[key] >= depth:
        chain = [key]
        while (p := calls.parent[chain[-1]]) is not None:
            chain.append(p)
        return next(k for k in reversed(chain) if calls.level[k] >= depth)
    return None if key in calls.has_calls else key  # a module that calls no other stays one box


def _short_op(op: str) -> str:
    """``AddmmBackward0`` -> ``Addmm``."""
    head, _, tail = op.rpartition("Backward")
    return head if head and (not tail or tail.isdigit()) else op


def fold(
    graph: Graph,
    owners: dict[int, str],
    kinds: dict[str, str],
    depth: int | None = None,
    parents: dict[str, str | None] | None = None,
) -> Graph:
    """*graph* with the nodes each module call made folded into one box.

    owners
        graph node id -> the key of the innermost module call that made it (``net.0``;
        ``cell#2`` for a module's second call): :func:`.modules.owner_of_nodes` through
        :attr:`Graph.sources` (:func:`.modules.fold_graph` does both).
    kinds
        call key -> the module's type name (``Linear``).
    depth
        which calls become boxes. Calls are counted from the cell: the call of a model variable
        (``net(x)``) is level 0, the calls it makes level 1, theirs level 2; a submodule called
        directly (``net.0(x)``) is level 1. At depth *d* every node made in a call of level
        *d* or deeper goes into the box of its level-*d* call (or of the outermost call it is in,
        if that is deeper); a node made directly in a shallower call (the model's own
        ``torch.relu`` between two layers) stays as it is, unless that call made no module calls
        itself (a ``Linear`` variable is still one box). ``None`` is 1: one box per layer of
        ``net = nn.Sequential(...)`` (``net.0 (Linear)``, ``net.1 (Tanh)``, ...); 2 one level
        deeper; 0 one box per model. For no folding at all (``--graph full``) do not fold.
    parents
        call key -> the key of the call it was made from (None: the cell); without it, read
        from the dotted names.

    Then blocks of one type and the same make-up, chained one after another (``layers.0``,
    ``layers.1``, ... each reading the one before, or one module called several times in a row),
    fold into one box from :data:`MIN_RUN` on: ``layers.0–11 (TransformerEncoderLayer) × 12``.

    A box lists the named tensors the cell computed in it (the output), its ops (``2 ops: Addmm,
    T``) and the module's parameters (``weight (32, 8) · grad …``: the leaves the module owns go
    inside its box; the cell's own leaves and ops stay outside). Edges between boxes appear once.
    A box that would put the graph in a loop (a module reading a tensor made outside it by a
    path that passes through it) is not folded."""
    if not owners or not graph.nodes:
        return graph
    want = 1 if depth is None else max(0, depth)
    calls = _calls(set(owners.values()), kinds, parents)
    position = {n.id: i for i, n in enumerate(graph.nodes)}
    by_id = {n.id: n for n in graph.nodes}
    group: dict[int, str] = {}  # node id -> box key
    for node in graph.nodes:
        key = owners.get(node.id)
        if key is not None:
            box = _box_of(key, want, calls)
            if box is not None:
                group[node.id] = box
    _shared_leaves_out(graph, group, by_id)
    _break_loops(graph, group)
    boxes: dict[str, list[int]] = {}
    for node in graph.nodes:
        if node.id in group:
            boxes.setdefault(group[node.id], []).append(node.id)
    runs = _runs(graph, group, boxes, calls, by_id)
    # the new nodes, in the order of their first node (the output's first)
    members: dict[Any, list[int]] = {}
    run_of = {key: first for first, run in runs.items() for key in run}
    for node in graph.nodes:
        key = group.get(node.id)
        gkey: Any = node.id if key is None else ("box", run_of.get(key, key))
        members.setdefault(gkey, []).append(node.id)
    ordered = sorted(members, key=lambda g: position[members[g][0]])
    new_id = {g: i for i, g in enumerate(ordered)}
    names = _box_names(ordered, runs, calls)
    nodes: list[Node] = []
    sources: dict[int, int] = {}
    for g in ordered:
        if not isinstance(g, tuple):
            nodes.append(_copy(by_id[g], new_id[g]))
            if g in graph.sources:
                sources[new_id[g]] = graph.sources[g]
            continue
        first = g[1]
        keys = runs.get(first, [first])
        nodes.append(_make_box(new_id[g], names[first], keys, boxes, calls, by_id))
    gid = {n: new_id[g] for g, ids in members.items() for n in ids}
    edges: list[tuple[int, int]] = []
    found: dict[tuple[int, int], list[str | None]] = {}
    for k, (a, b) in enumerate(graph.edges):
        edge = (gid[a], gid[b])
        if edge[0] == edge[1]:
            continue
        if edge not in found:
            found[edge] = []
            edges.append(edge)
        found[edge].append(graph.label(k))
    labels = [found[e][0] if len(found[e]) == 1 else None for e in edges]
    return Graph(nodes, edges, labels if any(labels) else [], sources)


def _copy(node: Node, new: int) -> Node:
    from dataclasses import replace

    return replace(node, id=new, extra=list(node.extra))


def _shared_leaves_out(graph: Graph, group: dict[int, str], by_id: dict[int, Node]) -> None:
    """A parameter also used outside its module's box (a module called several times, tied
    weights) is drawn as a leaf of its own, not inside the box of the call that met it first."""
    for a, b in graph.edges:
        if b in group and by_id[b].kind == "leaf" and group.get(a) != group[b]:
            del group[b]


def _group_edges(graph: Graph, group: dict[int, Any]) -> dict[Any, set[Any]]:
    out: dict[Any, set[Any]] = {}
    for n in graph.nodes:
        out.setdefault(group.get(n.id, n.id), set())
    for a, b in graph.edges:
        ga, gb = group.get(a, a), group.get(b, b)
        if ga != gb:
            out[ga].add(gb)
    return out


def _in_loops(out: dict[Any, set[Any]]) -> set[Any]:
    """The groups on or between loops: what is left after peeling sources and sinks off."""
    indegree = dict.fromkeys(out, 0)
    back: dict[Any, set[Any]] = {g: set() for g in out}
    for a, bs in out.items():
        for b in bs:
            indegree[b] += 1
            back[b].add(a)
    outdegree = {g: len(bs) for g, bs in out.items()}
    left = set(out)
    for degree, nxt in ((indegree, out), (outdegree, back)):
        queue = deque(g for g in left if degree[g] == 0)
        while queue:
            g = queue.popleft()
            left.discard(g)
            for h in nxt[g]:
                degree[h] -= 1
                if degree[h] == 0 and h in left:
                    queue.append(h)
    return left


def _break_loops(graph: Graph, group: dict[int, Any]) -> None:
    """Unfold the boxes that would make a loop (the drawing needs the graph to stay acyclic)."""
    for _ in range(len(set(group.values())) + 1):
        left = _in_loops(_group_edges(graph, group))
        bad = {g for g in left if not isinstance(g, int)}
        if not bad:
            return
        for n in [n for n, g in group.items() if g in bad]:
            del group[n]


def _signature(
    key: str, ids: list[int], by_id: dict[int, Node], made: dict[str, list[str]], calls: _Calls
) -> Any:
    """What makes blocks the same: the types of the calls made inside, in order, and the
    parameters (names and shapes). Not the ops: a first block whose input needs no grad has
    fewer backward nodes than the others."""

    def tree(k: str) -> tuple[Any, ...]:
        return (calls.kinds[k], tuple(tree(c) for c in made.get(k, [])))

    prefix = _plain(key)
    params = sorted(
        (_relative(by_id[i].name, prefix), by_id[i].shape or "") for i in ids if by_id[i].kind == "leaf"
    )
    return tree(key), tuple(params)


def _relative(name: str | None, prefix: str) -> str:
    name = name or ""
    return name[len(prefix) + 1 :] if name.startswith(prefix + ".") else name


def _runs(
    graph: Graph, group: dict[int, str], boxes: dict[str, list[int]], calls: _Calls, by_id: dict[int, Node]
) -> dict[str, list[str]]:
    """Repeated blocks chained one after another: first box key -> the keys of the run."""
    series: dict[tuple[Any, ...], list[tuple[int, str]]] = {}
    plain_count: dict[str, int] = {}
    for key in boxes:
        plain_count[_plain(key)] = plain_count.get(_plain(key), 0) + 1
    for key in boxes:
        name, kind, parent = _plain(key), calls.kinds[key], calls.parent[key]
        if plain_count[name] > 1:  # one module called again and again
            series.setdefault(("call", parent, kind, name), []).append((_call_number(key), key))
            continue
        base, _, index = name.rpartition(".")
        if base and index.isdigit():  # layers.0, layers.1, ...
            series.setdefault(("num", parent, kind, base), []).append((int(index), key))
    runs: dict[str, list[str]] = {}
    edges = _group_edges(graph, group)
    made: dict[str, list[str]] = {}  # call key -> the calls made from it, in order
    for k, p in calls.parent.items():
        if p is not None:
            made.setdefault(p, []).append(k)
    for items in series.values():
        if len(items) < MIN_RUN:
            continue
        items.sort()
        signature = {k: _signature(k, boxes[k], by_id, made, calls) for _, k in items}
        run = [items[0][1]]
        for (i, prev), (j, key) in itertools.pairwise(items):
            if j == i + 1 and signature[key] == signature[prev] and prev in edges.get(key, ()):
                run.append(key)
                continue
            _keep_run(run, runs, graph, group)
            run = [key]
        _keep_run(run, runs, graph, group)
    return runs


def _keep_run(run: list[str], runs: dict[str, list[str]], graph: Graph, group: dict[int, str]) -> None:
    if len(run) < MIN_RUN:
        return
    members = set(run)
    merged = {n: (run[0] if g in members else g) for n, g in group.items()}
    if _in_loops(_group_edges(graph, merged)):
        return
    runs[run[0]] = run
    group.update(merged)


def _box_names(ordered: list[Any], runs: dict[str, list[str]], calls: _Calls) -> dict[str, str]:
    """Each box's title name: ``net.0``; ``layers.0–11`` for a run; ``cell #2`` where one module's
    calls make several boxes (numbered in forward order among the boxes shown)."""
    names: dict[str, str] = {}
    same: dict[str, list[str]] = {}
    for g in ordered:
        if not isinstance(g, tuple):
            continue
        first = g[1]
        run = runs.get(first)
        if run is not None and _plain(run[0]) != _plain(run[-1]):
            base = _plain(run[0]).rpartition(".")[0]
            names[first] = f"{base}.{_plain(run[0]).rpartition('.')[2]}–{_plain(run[-1]).rpartition('.')[2]}"
            continue
        names[first] = _plain(first)
        same.setdefault(_plain(first), []).append(first)
    for keys in same.values():
        if len(keys) > 1:
            for k, key in enumerate(sorted(keys, key=lambda key: calls.order[key]), 1):
                names[key] = f"{names[key]} #{k}"
    return names


def _param_order(params: list[Node], prefix: str) -> list[Node]:
    """Parameters module by module in forward order (the graph lists them from the output back),
    a submodule's next to its parent's (``self_attn.in_proj_weight``, ``self_attn.out_proj.weight``),
    in each module the weights before the biases."""
    rank: dict[str, int] = {}
    for p in reversed(params):
        path = _relative(p.name, prefix).split(".")[:-1]
        for k in range(1, len(path) + 1):
            rank.setdefault(".".join(path[:k]), len(rank))

    def key(p: Node) -> tuple[Any, ...]:
        *path, last = _relative(p.name, prefix).split(".")
        return (*(rank[".".join(path[: k + 1])] for k in range(len(path))), -1, "bias" in last)

    return sorted(params, key=key)


def _make_box(
    new: int, name: str, keys: list[str], boxes: dict[str, list[int]], calls: _Calls, by_id: dict[int, Node]
) -> Box:
    first = boxes[keys[0]]
    inside = [i for key in keys for i in boxes[key]]
    counts = {sum(1 for i in boxes[key] if by_id[i].kind != "leaf") for key in keys}
    each = len(keys) > 1 and len(counts) == 1  # blocks alike down to their ops: "each: 3 ops"
    lines = []
    for i in inside:  # the tensors the cell named (the output first)
        n = by_id[i]
        if n.kind in ("output", "named") and n.name:
            line = f"→ {n.name}" + (f" = {n.data}" if n.data is not None else "")
            lines.append(line + (f" · grad {n.grad}" if n.grad is not None else ""))
    counted = first if each or len(keys) == 1 else inside
    ops = [by_id[i].op for i in reversed(counted) if by_id[i].kind != "leaf"]  # forward order
    if ops:
        kinds = list(dict.fromkeys(_short_op(op) for op in ops))
        text = _word("fold.op") if len(ops) == 1 else _word("fold.ops", count=len(ops))
        if len(kinds) <= MAX_OP_NAMES:
            text = _word("fold.named_ops", ops=text, names=", ".join(kinds))
        lines.append(_word("fold.each", text=text) if each else text)
    prefix = _plain(keys[0])
    params = _param_order([by_id[i] for i in first if by_id[i].kind == "leaf"], prefix)
    shown = params if len(params) <= MAX_PARAM_LINES else params[: MAX_PARAM_LINES - 1]
    for p in shown:
        line = " ".join(s for s in (_relative(p.name, prefix), p.shape) if s)
        if len(keys) == 1 and p.grad is not None:
            line += f" · grad {p.grad}"
        lines.append(line)
    if len(shown) < len(params):
        lines.append(_word("fold.more_params", count=len(params) - len(shown)))
    kind = calls.kinds[keys[0]]
    return Box(new, "module", kind, name, extra=lines, repeat=len(keys), calls=list(keys), members=inside)
