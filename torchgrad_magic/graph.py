"""``--graph``: the backward graph with the user's names, values and grads.

:func:`build` walks ``grad_fn.next_functions`` from the output back to the
leaves (as torchviz does) and returns plain data: nodes and edges, each node
already labelled with text. Rendering needs no graphviz binary: a text tree
for terminals and an SVG drawn with a small layered layout for notebooks.
Big graphs are kept whole as data; the views cut them after a number of
nodes and say how many more there are.
"""

from __future__ import annotations

import html
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from . import format as fmt
from .messages import t

MAX_SHOWN = 80  # nodes drawn before "… N more nodes"
MAX_INDENT = 36  # characters of indentation in the text tree
CHAR_W, LINE_H, PAD, GAP_X, GAP_Y = 7.0, 15.0, 6.0, 18.0, 34.0
FILL = {"output": "#d9f2d9", "leaf": "#d6e6fb", "named": "#fff2c2", "function": "#eeeeee", "saved": "#f7e1f3"}


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

    def lines(self) -> list[str]:
        head = f"{self.name} ({self.op})" if self.name and self.op else self.name or self.op
        lines = [head]
        if self.data is not None:
            lines.append(f"data {self.data}")
        if self.grad is not None:
            lines.append(f"grad {self.grad}")
        return lines + self.extra


@dataclass
class Graph:
    """The backward graph as plain data: ``nodes`` and ``edges`` (parent id, child id),
    from the output (node 0) towards the leaves, in a deterministic order."""

    nodes: list[Node]
    edges: list[tuple[int, int]]

    def children(self) -> dict[int, list[int]]:
        kids: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for a, b in self.edges:
            kids[a].append(b)
        return kids

    # ---- text ------------------------------------------------------------
    def to_text(self, limit: int = MAX_SHOWN) -> str:
        """An indented tree from the output; a shared node is drawn once and referred to after."""
        if not self.nodes:
            return ""
        kids, by_id = self.children(), {n.id: n for n in self.nodes}
        lines: list[str] = []
        seen: set[int] = set()
        stack: list[tuple[int, str, str]] = [(self.nodes[0].id, "", "")]
        while stack:
            node_id, lead, branch = stack.pop()
            node = by_id[node_id]
            label = " · ".join(node.lines())
            if node_id in seen:
                lines.append(f"{lead}{branch}↑ {node.name or node.op} {t('graph.shared')}")
                continue
            if len(seen) >= limit:
                lines.append(f"{lead}{branch}{t('graph.more', count=len(self.nodes) - len(seen))}")
                break
            seen.add(node_id)
            lines.append(f"{lead}{branch}{label}")
            child_lead = "" if not branch else lead + ("   " if branch == "└─ " else "│  ")
            if len(child_lead) > MAX_INDENT:  # long chains: stop indenting, stay readable
                child_lead = lead
            items = kids[node_id]
            for i, child in reversed(list(enumerate(items))):
                stack.append((child, child_lead, "└─ " if i == len(items) - 1 else "├─ "))
        return "\n".join(lines)

    # ---- SVG -------------------------------------------------------------
    def to_svg(self, limit: int = MAX_SHOWN) -> str:
        """A layered drawing, output at the top, leaves at the bottom (the way gradients flow)."""
        shown = [n for n in self.nodes[:limit]]
        ids = {n.id for n in shown}
        edges = [(a, b) for a, b in self.edges if a in ids and b in ids]
        hidden = len(self.nodes) - len(shown)
        layer = _layers(shown, edges)
        boxes = {n.id: _box(n) for n in shown}
        rows: dict[int, list[int]] = {}
        for n in shown:
            rows.setdefault(layer[n.id], []).append(n.id)
        parents: dict[int, list[int]] = {}
        for a, b in edges:
            parents.setdefault(b, []).append(a)
        xs: dict[int, float] = {}
        widths = {k: sum(boxes[i][0] for i in v) + GAP_X * (len(v) - 1) for k, v in rows.items()}
        total_w = max(widths.values()) if widths else 0
        y, ys = PAD, {}
        for k in sorted(rows):
            row = rows[k]
            if k:  # order by the mean position of the parents (fewer crossings)
                row.sort(
                    key=lambda i: (
                        sum(xs.get(p, 0) for p in parents.get(i, [])) / max(1, len(parents.get(i, [])))
                    )
                )
            x = PAD + (total_w - widths[k]) / 2
            for i in row:
                xs[i] = x + boxes[i][0] / 2
                ys[i] = y
                x += boxes[i][0] + GAP_X
            y += max(boxes[i][1] for i in row) + GAP_Y
        height = y - GAP_Y + PAD + (LINE_H + PAD if hidden else 0)
        width = total_w + 2 * PAD
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="monospace" font-size="12">',
            '<defs><marker id="tgm-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#777"/></marker></defs>',
        ]
        for a, b in edges:
            x1, y1 = xs[a], ys[a] + boxes[a][1]
            x2, y2 = xs[b], ys[b]
            out.append(
                f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#777" '
                'marker-end="url(#tgm-arrow)"/>'
            )
        for n in shown:
            w, h = boxes[n.id]
            x0, y0 = xs[n.id] - w / 2, ys[n.id]
            out.append(
                f"<g><title>{html.escape(' | '.join(n.lines()))}</title>"
                f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" rx="4" '
                f'fill="{FILL[n.kind]}" stroke="#555"/>'
            )
            for j, line in enumerate(n.lines()):
                weight = ' font-weight="bold"' if j == 0 else ""
                out.append(
                    f'<text x="{xs[n.id]:.1f}" y="{y0 + PAD + LINE_H * (j + 0.75):.1f}" '
                    f'text-anchor="middle"{weight}>{html.escape(line)}</text>'
                )
            out.append("</g>")
        if hidden:
            out.append(
                f'<text x="{PAD}" y="{height - PAD:.1f}" fill="#a00">{html.escape(t("graph.more", count=hidden))}</text>'
            )
        out.append("</svg>")
        return "".join(out)


def _box(node: Node) -> tuple[float, float]:
    lines = node.lines()
    return max(fmt.width(s) for s in lines) * CHAR_W + 2 * PAD, len(lines) * LINE_H + 2 * PAD


def _layers(nodes: list[Node], edges: list[tuple[int, int]]) -> dict[int, int]:
    """Longest-path layers from the output, so every edge points down."""
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
    return layer


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
    """

    def values(x: torch.Tensor) -> str:
        return fmt.values(x, digits, 4)

    def grad_text(tensor: torch.Tensor) -> str | None:
        g = grads.get(id(tensor))
        return None if g is None else values(g)

    by_fn = {id(x.grad_fn): x for x in tensors if x.grad_fn is not None and id(x) in names}
    nodes: list[Node] = []
    edges: list[tuple[int, int]] = []
    index: dict[int, int] = {}
    if output.grad_fn is None:  # the output is a leaf itself
        nodes.append(Node(0, "output", "", out_name, values(output.detach()), grad_text(output)))
        return Graph(nodes, edges)

    def add(fn: Any) -> int:
        node_id = len(nodes)
        index[id(fn)] = node_id
        op = type(fn).__name__
        variable = getattr(fn, "variable", None)
        if isinstance(variable, torch.Tensor):
            name = names.get(id(variable))
            data = values(variable.detach())
            label = name or f"{type(variable).__name__} {fmt.shape(variable)}"
            nodes.append(Node(node_id, "leaf", op, label, data, grad_text(variable)))
            return node_id
        if node_id == 0:
            nodes.append(Node(node_id, "output", op, out_name, values(output.detach()), grad_text(output)))
        elif id(fn) in by_fn:
            tensor = by_fn[id(fn)]
            name = names[id(tensor)]
            nodes.append(Node(node_id, "named", op, name, values(tensor.detach()), grad_text(tensor)))
        else:
            nodes.append(Node(node_id, "function", op))
        if full:
            nodes[-1].extra = _saved(fn, values)
        return node_id

    queue = deque([output.grad_fn])
    add(output.grad_fn)
    while queue:
        fn = queue.popleft()
        parent = index[id(fn)]
        for nxt, _ in fn.next_functions:
            if nxt is None:
                continue
            if id(nxt) not in index:
                add(nxt)
                queue.append(nxt)
            edges.append((parent, index[id(nxt)]))
    return Graph(nodes, edges)


def _saved(fn: Any, values) -> list[str]:
    """``name=value`` for what a backward node saved (``_saved_exponent=2``, ``_saved_other=3``)."""
    found = []
    for attr in sorted(a for a in dir(fn) if a.startswith("_saved_")):
        try:
            value = getattr(fn, attr)
        except RuntimeError:  # freed by an earlier backward()
            found.append(f"{attr[7:]}={t('graph.freed')}")
            continue
        if isinstance(value, torch.Tensor):
            shape = f" {fmt.shape(value)}" if value.dim() else ""
            found.append(f"{attr[7:]}={values(value.detach())}{shape}")
        elif isinstance(value, (int, float, bool, complex)) or value is None:
            found.append(f"{attr[7:]}={fmt.number(value) if isinstance(value, float) else value}")
        elif isinstance(value, (tuple, list)) and len(value) <= 6:
            found.append(f"{attr[7:]}={tuple(value)}")
    return found
