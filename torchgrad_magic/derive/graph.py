"""``--graph``: the backward graph with the user's names, values and grads.

:func:`build` walks ``grad_fn.next_functions`` from the output back to the
leaves (as torchviz does) and returns plain data: nodes and edges, each node
already labelled with text. This module writes the text tree for terminals
(:meth:`Graph.to_text`); the pictures (a layered drawing as SVG and PNG, and
``display(graph)``) are :mod:`torchgrad_magic.render.graph`'s. Big graphs are kept whole as
data; the views cut them after a number of nodes and say how many more there are.

On a model (``--graph`` with ``nn.Module`` calls in the cell), :func:`fold` puts the nodes each
module call made into one box (``net.0 (Linear)``, its ops and parameters listed inside) and
repeated blocks chained one after another into one (``layers.0–11 (TransformerEncoderLayer) ×
12``); the result is a plain :class:`Graph` again, drawn by the same views. Which call made which
node comes from :mod:`.modules`, through :attr:`Graph.sources`.

A loop over plain ops (``for i in range(100): h = torch.sin(h) * 1.01 + h * 0.5``) makes the
same few nodes again and again, one copy after another: :func:`fold_repeats` finds such runs (the
ops along the chain repeat with some period, edges and all) and draws each as one box,
``repeated × 100`` with the ops of one repetition and the named values of the last and first
repetitions (``--graph unfold`` keeps every node).

A graph carries the language it was built in (:attr:`Graph.language`): every word of its views
(the caption, the legend of the edge labels, "… N more nodes", the boxes) is in it, whatever the
language in use when it is shown.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import format as fmt
from ..messages import MESSAGES, resolve

MAX_SHOWN = 80  # nodes drawn before "… N more nodes"
MAX_INDENT = 36  # characters of indentation in the text tree


def _say(language: str, key: str, **fields: object) -> str:
    """The catalogue's message *key* in *language*: the graph's own, never the one in use."""
    return MESSAGES[key][language].format(**fields)


def _language_in_use() -> str:
    return resolve(None)


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
class Graph:
    """The backward graph as plain data: ``nodes`` and ``edges`` (parent id, child id),
    from the output (node 0) towards the leaves, in a deterministic order. ``language`` is the
    language it was built in (every word of its views is in it); ``output_name`` names the output
    in its caption (no caption without it)."""

    nodes: list[Node]
    edges: list[tuple[int, int]]
    labels: list[str | None] = field(default_factory=list)  # per edge, with --steps: "×6 → 18"
    # node id -> id() of the autograd node it was drawn from (build); valid only while something
    # holds those autograd nodes (layers.owner_of_nodes does): see fold()
    sources: dict[int, int] = field(default_factory=dict, compare=False, repr=False)
    language: str = field(default_factory=_language_in_use)
    output_name: str | None = None

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

    def caption(self, language: str | None = None) -> str:
        """``backward graph: from y back to the leaves (…)``: the first line of every view."""
        if self.output_name is None:
            return ""
        return _say(language or self.language, "graph.title", out=self.output_name)

    def legend(self, labelled: bool, language: str | None = None) -> str:
        """What the edge labels say (``×27 → 27``), where there are any."""
        return _say(language or self.language, "graph.legend") if labelled else ""

    def more(self, count: int, language: str | None = None) -> str:
        """``… 12 more nodes``: what a view says where it stops before the last *count* nodes."""
        return _say(language or self.language, "graph.more", count=count)

    # ---- text ------------------------------------------------------------
    def to_text(self, limit: int = MAX_SHOWN) -> str:
        """The caption (and the legend of the edge labels), then an indented tree from the output;
        a shared node is drawn once and referred to after."""
        if not self.nodes:
            return ""
        head = [line for line in (self.caption(), self.legend(any(self.labels))) if line]
        return "\n".join(head + self._tree(limit))

    def _tree(self, limit: int) -> list[str]:
        kids, by_id = self.children(), {n.id: n for n in self.nodes}
        edge_labels = self.child_labels()
        lines: list[str] = []
        seen: set[int] = set()
        stack: list[tuple[int, str, str, str | None]] = [(self.nodes[0].id, "", "", None)]
        while stack:
            node_id, lead, branch, flow = stack.pop()
            node = by_id[node_id]
            if flow:
                branch += f"[{flow}] "
            if node_id in seen:
                shared = _say(self.language, "graph.shared")
                ref = node.name or node.op
                if node.kind == "loop":  # which run: its count and the values it shows
                    ref = " · ".join([node.lines()[0], *node.lines()[2:]])
                lines.append(fmt.beside(f"{lead}{branch}↑ {ref}", shared))
                continue
            if len(seen) >= limit:
                lines.append(f"{lead}{branch}{self.more(len(self.nodes) - len(seen))}")
                break
            seen.add(node_id)
            lines.append(f"{lead}{branch}{' · '.join(node.lines())}")
            child_lead = "" if not branch else lead + ("   " if branch.startswith("└─ ") else "│  ")
            if len(child_lead) > MAX_INDENT:  # long chains: stop indenting, stay readable
                child_lead = lead
            items = kids[node_id]
            for i, child in reversed(list(enumerate(items))):
                stack.append(
                    (child, child_lead, "└─ " if i == len(items) - 1 else "├─ ", edge_labels[node_id][i])
                )
        return lines


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
    node_names: dict[int, str] | None = None,
    language: str | None = None,
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
    node_names
        with ``--steps``: ``id(node) -> name`` for the nodes the cell gave no name, the short
        names the steps made up for them (:func:`names_from_steps`), so both views match.
    language
        the language of the graph's words (default: the one in use).
    """
    maker = _Builder(output, out_name, names, tensors, grads, digits, flow or {}, node_names or {})
    maker.full, maker.language = full, resolve(language)
    return maker.walk()


_GRAD_PART = re.compile(r" · grad .*$")  # how a node's or a folded box's line ends with a grad


def without_grads(graph: Graph) -> Graph:
    """A copy of *graph* that shows no gradient (``--quiz``: the grads are the answers): no node's
    grad, no folded box's line ending in one, no number on the edges; names and data stay."""
    nodes = [
        dataclasses.replace(n, grad=None, extra=[_GRAD_PART.sub("", line) for line in n.extra])
        for n in graph.nodes
    ]
    return dataclasses.replace(graph, nodes=nodes, labels=[None] * len(graph.labels))


class _Builder:
    """:func:`build`'s state: the nodes made so far, each autograd node held while the walk runs
    (PyTorch makes a new Python object for an autograd node each time one is asked for while none
    is alive, so id() is only stable while one is held)."""

    full = False
    language = "en"

    def __init__(self, output: Any, out_name: str, names: Any, tensors: Any, grads: Any, digits: int,
                 flow: Any, node_names: dict[int, str]) -> None:  # fmt: skip
        self.output, self.out_name, self.names, self.grads, self.digits = (
            output,
            out_name,
            names,
            grads,
            digits,
        )
        self.flow, self.node_names = flow, node_names
        self.by_fn = {id(x.grad_fn): x for x in tensors if x.grad_fn is not None and id(x) in names}
        self.nodes: list[Node] = []
        self.index: dict[int, int] = {}
        self.held: list[Any] = []
        self.sources: dict[int, int] = {}

    def values(self, x: torch.Tensor) -> str:
        return fmt.values(x, self.digits, 4)

    def grad_text(self, tensor: torch.Tensor) -> str | None:
        g = self.grads.get(id(tensor))
        return None if g is None else self.values(g)

    def name_of(self, x: torch.Tensor) -> str | None:
        """The user's name for a saved tensor: the same tensor (a saved input), or the same
        output of the same node (a saved output is unpacked as a new tensor object)."""
        name = self.names.get(id(x))
        if name is None and x.grad_fn is not None:
            owner = self.by_fn.get(id(x.grad_fn))
            if owner is not None and owner.output_nr == x.output_nr and owner.shape == x.shape:
                name = self.names.get(id(owner))
        return name

    def walk(self) -> Graph:
        """Breadth first from the output's node along ``next_functions``."""
        output, edges, labels = self.output, [], []
        if output.grad_fn is None:  # the output is a leaf itself
            node = Node(0, "output", "", self.out_name, self.values(output.detach()), self.grad_text(output))
            return Graph([node], [], language=self.language, output_name=self.out_name)
        queue = deque([output.grad_fn])
        self.add(output.grad_fn)
        while queue:
            fn = queue.popleft()
            parent = self.index[id(fn)]
            edge_flow = self.flow.get(id(fn), (None, []))[1]
            for i, (nxt, _) in enumerate(fn.next_functions):
                if nxt is None:
                    continue
                if id(nxt) not in self.index:
                    self.add(nxt)
                    queue.append(nxt)
                edges.append((parent, self.index[id(nxt)]))
                labels.append(edge_flow[i] if i < len(edge_flow) else None)
        labelled = labels if any(labels) else []
        return Graph(self.nodes, edges, labelled, self.sources, self.language, self.out_name)

    def add(self, fn: Any) -> None:
        node_id = len(self.nodes)
        self.index[id(fn)] = node_id
        self.held.append(fn)
        self.sources[node_id] = id(fn)
        op = type(fn).__name__
        variable = getattr(fn, "variable", None)
        if isinstance(variable, torch.Tensor):
            label = self.names.get(id(variable)) or f"{type(variable).__name__} {fmt.shape(variable)}"
            data, grad = self.values(variable.detach()), self.grad_text(variable)
            self.nodes.append(Node(node_id, "leaf", op, label, data, grad, shape=fmt.shape(variable)))
            return
        if node_id == 0:
            output = self.output
            node = Node(
                node_id, "output", op, self.out_name, self.values(output.detach()), self.grad_text(output)
            )
        elif id(fn) in self.by_fn:
            tensor = self.by_fn[id(fn)]
            data = self.values(tensor.detach())
            node = Node(node_id, "named", op, self.names[id(tensor)], data, self.grad_text(tensor))
        else:  # (with --steps: the name the steps made up for it)
            node = Node(node_id, "function", op, self.node_names.get(id(fn)))
        if id(fn) in self.flow and node.grad is None:
            node.grad = self.flow[id(fn)][0]
        if self.full:
            node.extra = _saved(fn, self.values, self.name_of, self.language)
        self.nodes.append(node)


def names_from_steps(raws: Any, steps: Any) -> dict[int, str]:
    """``id(autograd node) -> name`` as ``--steps`` wrote it: *raws* are the traced nodes
    (:attr:`.steps.Tracer.raws`) and ``steps.steps`` the steps made from them, one each, in the
    same order; a node no step ran (its gradient was not needed) is named by the edge that
    reaches it. Empty where the two do not line up (then no node gets a name it may not have)."""
    found: dict[int, str] = {}
    if len(raws) != len(steps.steps):
        return {}
    for raw, step in zip(raws, steps.steps, strict=True):
        if type(raw.node).__name__ != step.node:
            return {}
        found.setdefault(id(raw.node), step.name)
        inputs = [nxt for nxt, _ in raw.node.next_functions if nxt is not None]
        if len(inputs) == len(step.edges):
            for nxt, edge in zip(inputs, step.edges, strict=True):
                if not edge.leaf:
                    found.setdefault(id(nxt), edge.to)
    return found


def _saved(fn: Any, values: Any, name_of: Any, language: str = "en") -> list[str]:
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
            found.append(f"{label} = {_say(language, 'graph.freed')}")
            continue
        shown = text(value)
        if shown is not None:
            found.append(f"{label} = {shown}")
    return found


# ---------------------------------------------------------------------------
# folding modules (--graph on a model)
# ---------------------------------------------------------------------------
MIN_RUN = 3  # repeated blocks chained one after another fold into one box from this many on
MAX_UNIT = 8  # the most module calls in one repeated unit (Linear, Tanh: 2) that folds as a run
MAX_PARAM_LINES = 6  # parameters listed in a module's box
MAX_OP_NAMES = 3  # a box names its ops when they are of at most this many kinds
CALL_MARK = "#"  # a call key's mark for a module's later calls: "cell#2" (modules.call_keys)


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
    made: dict[str, list[str]] = field(default_factory=dict)  # call key -> the calls made from it, in order


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
    made: dict[str, list[str]] = {}
    for k, p in parent.items():
        if p is not None:
            made.setdefault(p, []).append(k)
    return _Calls({k: kinds.get(k, "") for k in parent}, parent, level, has_calls, order, made)


def _box_of(key: str, depth: int, calls: _Calls) -> str | None:
    """The call whose box a node made in call *key* goes into at *depth*; None: drawn as it is."""
    if calls.level[key] >= depth:
        chain = [key]
        while (p := calls.parent[chain[-1]]) is not None:
            chain.append(p)
        return next(k for k in reversed(chain) if calls.level[k] >= depth)
    return None if key in calls.has_calls else key  # a module that calls no other stays one box


def _ops_text(ops: list[str], language: str) -> str:
    """``2 ops: T, Addmm`` (*ops* in forward order; the kinds named when there are few)."""
    kinds = list(dict.fromkeys(_short_op(op) for op in ops))
    text = (
        _say(language, "graph.fold.op") if len(ops) == 1 else _say(language, "graph.fold.ops", count=len(ops))
    )
    if len(kinds) <= MAX_OP_NAMES:
        text = _say(language, "graph.fold.named_ops", ops=text, names=", ".join(kinds))
    return text


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
    repeats: bool = True,
) -> Graph:
    """*graph* with the nodes each module call made folded into one box.

    owners
        graph node id -> the key of the innermost module call that made it (``net.0``;
        ``cell#2`` for a module's second call): :func:`.layers.owner_of_nodes` through
        :attr:`Graph.sources` (:func:`.layers.fold_graph` does both).
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
    repeats
        fold repeated blocks and units too (below); ``--graph unfold`` does not.

    Then blocks of one type and the same make-up, chained one after another (``layers.0``,
    ``layers.1``, ... each reading the one before, or one module called several times in a row),
    fold into one box from :data:`MIN_RUN` on: ``layers.0–11 (TransformerEncoderLayer) × 12``; so
    do units of a few calls repeated one after another (an MLP written out layer by layer, Linear
    then Tanh 120 times: ``net.0–239 (Linear, Tanh) × 120``).

    A box lists the named tensors the cell computed in it (the output), its ops (``2 ops: Addmm,
    T``) and the module's parameters (``weight (32, 8) · grad …``: the leaves the module owns go
    inside its box; the cell's own leaves and ops stay outside). Edges between boxes appear once.
    A box that would put the graph in a loop (a module reading a tensor made outside it by a
    path that passes through it) is not folded."""
    if not owners or not graph.nodes:
        return graph
    calls = _calls(set(owners.values()), kinds, parents)
    by_id = {n.id: n for n in graph.nodes}
    group = _module_groups(graph, owners, 1 if depth is None else max(0, depth), calls, by_id)
    boxes = _members(graph, group)
    runs = _runs(graph, group, boxes, calls, by_id) if repeats else {}  # (--graph unfold: each call a box)
    periods = _unit_runs(graph, group, boxes, calls, by_id, runs) if repeats else {}
    run_of = {key: first for first, run in runs.items() for key in run}
    final = {n: run_of.get(key, key) for n, key in group.items()}  # node id -> its box's first call
    ordered = [
        ("box", k) if isinstance(k, str) else k
        for k in dict.fromkeys(final.get(n.id, n.id) for n in graph.nodes)
    ]
    names = _box_names(ordered, runs, calls)

    def make(first: str, new: int, _: list[int]) -> Node:
        unit = runs.get(first, [first]), periods.get(first, 1)
        return _make_box(new, names[first], unit, boxes, calls, by_id, graph.language)

    return _collapse(graph, final, make)


def _members(graph: Graph, group: dict[int, str]) -> dict[str, list[int]]:
    """call key -> the ids of the nodes in its box, in the graph's order."""
    boxes: dict[str, list[int]] = {}
    for node in graph.nodes:
        if node.id in group:
            boxes.setdefault(group[node.id], []).append(node.id)
    return boxes


def _module_groups(
    graph: Graph, owners: dict[int, str], depth: int, calls: _Calls, by_id: dict[int, Node]
) -> dict[int, str]:
    """node id -> the key of the call whose box it goes into at *depth* (see :func:`fold`)."""
    group: dict[int, str] = {}
    for node in graph.nodes:
        key = owners.get(node.id)
        if key is not None:
            box = _box_of(key, depth, calls)
            if box is not None:
                group[node.id] = box
    _shared_leaves_out(graph, group, by_id)
    _break_loops(graph, group)
    return group


def _collapse(
    graph: Graph, group: dict[int, Any], make: Callable[[Any, int, list[int]], Node], labels_out: bool = True
) -> Graph:
    """*graph* with each group of nodes (``group``: node id -> key) drawn as one node,
    ``make(key, new id, the group's node ids)``, the other nodes copied; the new nodes in the order
    of their first node (the output's first). Edges between the same two nodes appear once; an
    edge keeps its label where it stands for one edge only (and, without *labels_out*, not out of a
    box: a loop's box has no one "grad above" for the legend's rule)."""
    members: dict[Any, list[int]] = {}
    for node in graph.nodes:
        members.setdefault(("group", group[node.id]) if node.id in group else node.id, []).append(node.id)
    new_id = {g: i for i, g in enumerate(members)}
    by_id = {n.id: n for n in graph.nodes}
    nodes: list[Node] = []
    sources: dict[int, int] = {}
    for g, ids in members.items():
        if isinstance(g, tuple):
            nodes.append(make(g[1], new_id[g], ids))
            continue
        nodes.append(_copy(by_id[g], new_id[g]))
        if g in graph.sources:
            sources[new_id[g]] = graph.sources[g]
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
    boxes = set() if labels_out else {new_id[g] for g in members if isinstance(g, tuple)}
    labels = [found[e][0] if len(found[e]) == 1 and e[0] not in boxes else None for e in edges]
    return Graph(nodes, edges, labels if any(labels) else [], sources, graph.language, graph.output_name)


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
    for items in series.values():
        if len(items) < MIN_RUN:
            continue
        items.sort()
        signature = {k: _signature(k, boxes[k], by_id, calls.made, calls) for _, k in items}
        run = [items[0][1]]
        for (i, prev), (j, key) in itertools.pairwise(items):
            if j == i + 1 and signature[key] == signature[prev] and prev in edges.get(key, ()):
                run.append(key)
                continue
            _keep_run(run, runs, graph, group)
            run = [key]
        _keep_run(run, runs, graph, group)
    return runs


def _keep_run(run: list[str], runs: dict[str, list[str]], graph: Graph, group: dict[int, str]) -> bool:
    """Fold *run* into one box (its first key's), unless it is too short or would make a loop."""
    if len(run) < MIN_RUN:
        return False
    members = set(run)
    merged = {n: (run[0] if g in members else g) for n, g in group.items()}
    if _in_loops(_group_edges(graph, merged)):
        return False
    runs[run[0]] = run
    group.update(merged)
    return True


def _unit_runs(
    graph: Graph,
    group: dict[int, str],
    boxes: dict[str, list[int]],
    calls: _Calls,
    by_id: dict[int, Node],
    runs: dict[str, list[str]],
) -> dict[str, int]:
    """Units of 2 to :data:`MAX_UNIT` calls made one after another from the same parent and
    repeated, each unit reading the one before (an MLP written out layer by layer: ``net.0``
    Linear, ``net.1`` Tanh, ``net.2`` Linear, ...): from :data:`MIN_RUN` units on they fold into
    one box, added to *runs* (the calls that are in a run of single blocks already stay there).
    First call key -> the unit's number of calls."""
    taken = {key for run in runs.values() for key in run}
    siblings: dict[str | None, list[str]] = {}
    for key in boxes:
        if key not in taken:
            siblings.setdefault(calls.parent[key], []).append(key)
    edges = _group_edges(graph, group)
    periods: dict[str, int] = {}
    for keys in siblings.values():
        if len(keys) < 2 * MIN_RUN:
            continue
        keys.sort(key=calls.order.__getitem__)  # (forward order)
        signature = [_signature(k, boxes[k], by_id, calls.made, calls) for k in keys]
        chained = [False] + [prev in edges.get(key, ()) for prev, key in itertools.pairwise(keys)]
        weighted = [any(by_id[i].kind == "leaf" for i in boxes[k]) for k in keys]
        start = 0
        while start < len(keys):
            period, count = _unit_at(start, signature, chained)
            for shift in range(1, period if count >= MIN_RUN and not weighted[start] else 0):
                if weighted[start + shift] and _unit_at(start + shift, signature, chained) == (period, count):
                    start += shift  # (Linear, ReLU × 3 rather than ReLU, Linear: a unit opens with its layer)
                    break
            run = keys[start : start + period * count]
            if count >= MIN_RUN and _keep_run(run, runs, graph, group):
                periods[run[0]] = period
                start += len(run)
            else:
                start += 1
    return periods


def _unit_at(start: int, signature: list[Any], chained: list[bool]) -> tuple[int, int]:
    """The unit of 2 to :data:`MAX_UNIT` calls that repeats over the most calls from *start*, each
    call reading the one before (the shorter unit where two cover as many): its size and count."""
    best = (1, 0)
    for period in range(2, MAX_UNIT + 1):
        if start + period > len(signature) or not all(chained[start + 1 : start + period]):
            continue
        end = start + period
        while end < len(signature) and chained[end] and signature[end] == signature[end - period]:
            end += 1
        count = (end - start) // period
        if count >= MIN_RUN and count * period > best[0] * best[1]:  # (a window seen once is no run)
            best = (period, count)
    return best


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
    new: int,
    name: str,
    run: tuple[list[str], int],
    boxes: dict[str, list[int]],
    calls: _Calls,
    by_id: dict[int, Node],
    language: str,
) -> Box:
    """The box of the calls *run* holds (its keys in forward order, and the number of calls in one
    repeated unit: 1 for a single call or a run of single blocks)."""
    keys, period = run
    inside = [i for key in keys for i in boxes[key]]
    units = [keys[u : u + period] for u in range(0, len(keys), period)]
    counts = {sum(1 for key in unit for i in boxes[key] if by_id[i].kind != "leaf") for unit in units}
    each = len(units) > 1 and len(counts) == 1  # blocks alike down to their ops: "each: 3 ops"
    lines = []
    for i in inside:  # the tensors the cell named (the output first)
        n = by_id[i]
        if n.kind in ("output", "named") and n.name:
            line = f"→ {n.name}" + (f" = {n.data}" if n.data is not None else "")
            lines.append(line + (f" · grad {n.grad}" if n.grad is not None else ""))
    counted = keys[:period] if each or len(units) == 1 else keys  # (each call's nodes: output first)
    ops = [by_id[i].op for key in counted for i in reversed(boxes[key]) if by_id[i].kind != "leaf"]
    if ops:
        text = _ops_text(ops, language)
        lines.append(_say(language, "graph.fold.each", text=text) if each else text)
    params, prefix = _unit_params(keys[:period], boxes, by_id)
    shown = params if len(params) <= MAX_PARAM_LINES else params[: MAX_PARAM_LINES - 1]
    for p in shown:
        line = " ".join(s for s in (_relative(p.name, prefix), p.shape) if s)
        if len(keys) == 1 and p.grad is not None:
            line += f" · grad {p.grad}"
        lines.append(line)
    if len(shown) < len(params):
        lines.append(_say(language, "graph.fold.more_params", count=len(params) - len(shown)))
    kind = ", ".join(calls.kinds[key] for key in keys[:period])
    return Box(new, "module", kind, name, extra=lines, repeat=len(units), calls=list(keys), members=inside)


def _unit_params(
    unit: list[str], boxes: dict[str, list[int]], by_id: dict[int, Node]
) -> tuple[list[Node], str]:
    """The parameters of one unit of a box, in order, and the prefix their names are shown without
    (the module's name; where several calls of the unit hold parameters, their parent's)."""
    owners = [key for key in unit if any(by_id[i].kind == "leaf" for i in boxes[key])]
    prefix = _plain(owners[0] if len(owners) == 1 else unit[0])
    if len(unit) > 1 and len(owners) > 1:
        prefix = prefix.rpartition(".")[0]
    params = [by_id[i] for key in reversed(unit) for i in boxes[key] if by_id[i].kind == "leaf"]  # (as the
    return _param_order(params, prefix), prefix  # graph lists them: from the output back)


# ---------------------------------------------------------------------------
# folding repeated ops (a loop: --graph folds, --graph unfold and --graph full do not)
# ---------------------------------------------------------------------------
MAX_PERIOD = 32  # the most nodes one repetition of a folded run may have
LOOP_MIN_REPEAT = 5  # a run of repeated ops folds from this many repetitions on ...
LOOP_MIN_NODES = 10  # ... and this many nodes in all (a short loop stays drawn out)


def fold_repeats(graph: Graph) -> Graph:
    """*graph* with each run of repeated ops folded into one box (:class:`Box`, kind ``"loop"``).

    Along the chain from the output (the nodes other than leaves, ordered by their longest path
    from the output), a loop makes the same *p* nodes again and again: a run is *c* such units
    one after another where each unit has the ops of the next, and its edges lead to the same
    places shifted by one unit (or to the very same node: a leaf or a tensor made before the loop,
    read in every repetition). The last unit (the loop's first repetition) may lead elsewhere
    where the others lead to the next unit (the loop's input). A run folds when it has at least
    :data:`LOOP_MIN_REPEAT` units and :data:`LOOP_MIN_NODES` nodes, nothing outside it leads into
    any unit but its first, and only its first and last units hold named tensors (a value named in
    the middle cuts it in two). The longest runs go first; one that would put the graph in a loop
    stays drawn out. Graphs with no such run come back as they are."""
    order = _chain_order(graph)
    if len(order) < LOOP_MIN_NODES:
        return graph
    by_id = {n.id: n for n in graph.nodes}
    runs = _repeat_runs(graph, order, by_id)
    if not runs:
        return graph
    group = {nid: ("loop", k) for k, (_, units) in enumerate(runs) for unit in units for nid in unit}

    def make(key: tuple[str, int], new: int, _: list[int]) -> Node:
        return _loop_box(new, runs[key[1]][1], by_id, graph.language)

    return _collapse(graph, group, make, labels_out=False)


def longest_paths(ids: list[int], edges: list[tuple[int, int]]) -> dict[int, int]:
    """Each id's longest path from a node nothing points to, over the *edges* between *ids*."""
    keep = set(ids)
    indegree = dict.fromkeys(ids, 0)
    kids: dict[int, list[int]] = {i: [] for i in ids}
    for a, b in edges:
        if a in keep and b in keep:
            indegree[b] += 1
            kids[a].append(b)
    layer = dict.fromkeys(ids, 0)
    queue = deque(i for i, d in indegree.items() if d == 0)
    while queue:
        a = queue.popleft()
        for b in kids[a]:
            layer[b] = max(layer[b], layer[a] + 1)
            indegree[b] -= 1
            if indegree[b] == 0:
                queue.append(b)
    return layer


def _chain_order(graph: Graph) -> list[int]:
    """The ids of the nodes other than leaves, by their longest path from the output (ties in the
    graph's order): a loop's repetitions come one after another, each in the same order."""
    inner = [n.id for n in graph.nodes if n.kind != "leaf"]
    depth = longest_paths(inner, graph.edges)
    position = {i: k for k, i in enumerate(inner)}
    return sorted(inner, key=lambda i: (depth[i], position[i]))


@dataclass
class _Chain:
    """What :func:`_repeat_runs` compares: per position in the chain order, the node's op (a box
    is like nothing else) and its children (their positions; a leaf as ``-1 - id``)."""

    sig: list[Any]
    kids: list[tuple[int, ...]]

    def __post_init__(self) -> None:
        numbers: dict[Any, int] = {}
        self.codes = torch.tensor([numbers.setdefault(s, len(numbers)) for s in self.sig], dtype=torch.int64)

    def same(self, i: int, j: int, shift: int) -> bool:
        """Whether the node at *j* repeats the one at *i*: the same op, each child the same node
        or the one *shift* further on."""
        if self.sig[i] != self.sig[j]:
            return False
        a, b = self.kids[i], self.kids[j]
        return len(a) == len(b) and all(
            x == y or (x >= 0 and y - x == shift) for x, y in zip(a, b, strict=True)
        )

    def last_unit(self, start: int, p: int) -> bool:
        """Whether the unit at *start* + *p* repeats the unit at *start*, except that where the
        earlier one leads to a later unit, it may lead anywhere outside the two (the loop's input)."""
        if start + 2 * p > len(self.sig):
            return False
        for i in range(start, start + p):
            j = i + p
            a, b = self.kids[i], self.kids[j]
            if self.sig[i] != self.sig[j] or len(a) != len(b):
                return False
            for x, y in zip(a, b, strict=True):
                if not (
                    x == y or (x >= 0 and y - x == p) or (x >= start + p and (y < 0 or y >= start + 2 * p))
                ):
                    return False
        return True


def _repeat_runs(graph: Graph, order: list[int], by_id: dict[int, Node]) -> list[tuple[int, list[list[int]]]]:
    """The runs to fold, each ``(period, units)`` with the units' node ids, the output's side first."""
    pos = {nid: i for i, nid in enumerate(order)}
    kids = graph.children()
    chain = _Chain(
        [("box", i) if isinstance(by_id[i], Box) else by_id[i].op for i in order],
        [tuple(pos.get(b, -1 - b) for b in kids[i]) for i in order],
    )
    candidates: list[tuple[int, int, int]] = []
    for p in range(1, min(MAX_PERIOD, len(order) // LOOP_MIN_REPEAT) + 1):
        # where a divisor of p found its run, p finds the same nodes in longer units: no need to look
        blocked = torch.zeros(len(order), dtype=torch.bool)
        for start, q, count in candidates:
            if p % q == 0:
                blocked[start : start + q * count] = True
        candidates += _stretches(chain, p, blocked)
    candidates.sort(key=lambda c: (-c[1] * c[2], c[1], c[0]))  # most nodes first, then the shortest unit
    parents: list[list[int]] = [[] for _ in order]
    for a, b in graph.edges:
        if b in pos and a in pos:
            parents[pos[b]].append(pos[a])
    pinned = [by_id[i].kind in ("output", "named") for i in order]
    used = [False] * len(order)
    group: dict[int, Any] = {}
    runs: list[tuple[int, list[list[int]]]] = []
    for start, p, count in candidates:
        for u, c in _parts(start, p, count, parents, pinned):
            span = range(u, u + c * p)
            if any(used[i] for i in span):
                continue
            trial = {**group, **{order[i]: ("loop", len(runs)) for i in span}}
            if any(isinstance(g, tuple) for g in _in_loops(_group_edges(graph, trial))):
                continue
            group = trial
            for i in span:
                used[i] = True
            runs.append((p, [order[u + k * p : u + (k + 1) * p] for k in range(c)]))
    return runs


def _stretches(chain: _Chain, p: int, blocked: torch.Tensor) -> list[tuple[int, int, int]]:
    """``(start, p, count)`` for each stretch of the chain order where every node repeats the one
    *p* before it (none starts at a *blocked* position): units of *p* from its start, the last one
    checked with :meth:`_Chain.last_unit`."""
    n = len(chain.sig)
    codes = chain.codes
    looks = torch.nonzero((codes[:-p] == codes[p:]) & ~blocked[:-p]).flatten().tolist()  # same op
    found = []
    i = 0
    for j in looks:
        if j < i or not chain.same(j, j + p, p):
            continue
        i = j
        while i < n - p and chain.same(i, i + p, p):
            i += 1
        count = (i - j) // p + 1
        if chain.last_unit(j + (count - 1) * p, p):
            count += 1
        if count >= LOOP_MIN_REPEAT and count * p >= LOOP_MIN_NODES:
            found.append((j, p, count))
    return found


def _parts(
    start: int, p: int, count: int, parents: list[list[int]], pinned: list[bool]
) -> list[tuple[int, int]]:
    """The run of *count* units of *p* from *start* cut before each unit that is reached from
    outside the run (only the first may be) and before each unit in the middle that holds a named
    tensor (only the first and last show their values): ``(start, count)`` of the parts long
    enough to fold."""
    out, pending = [], [(start, count)]
    while pending:
        u, c = pending.pop()
        if c < LOOP_MIN_REPEAT or c * p < LOOP_MIN_NODES:
            continue
        end = u + c * p

        def cut_before(k: int, u: int = u, c: int = c, end: int = end) -> bool:
            unit = range(u + k * p, u + (k + 1) * p)
            outside = any(not u <= a < end for i in unit for a in parents[i])
            return outside or (k < c - 1 and any(pinned[i] for i in unit))

        cut = next((k for k in range(1, c) if cut_before(k)), None)
        if cut is None:
            out.append((u, c))
        else:
            pending += [(u + cut * p, c - cut), (u, cut)]
    return out


def _loop_box(new: int, units: list[list[int]], by_id: dict[int, Node], language: str) -> Box:
    """One box for a run: ``the same ops, repeated × 100``, the ops of one repetition in forward
    order, and the named tensors of the last repetition (the unit on the output's side) and of the
    first: values that are true of one repetition, never of all of them."""
    top, bottom = units[0], units[-1]
    ops = [by_id[i].op for i in reversed(top)]
    lines = [_say(language, "graph.fold.each_time", text=_ops_text(ops, language))]
    for unit, key in ((top, "graph.fold.last"), (bottom, "graph.fold.first")):
        for i in unit:
            n = by_id[i]
            if n.kind in ("output", "named") and n.name:
                text = n.name + (f" = {n.data}" if n.data is not None else "")
                lines.append(
                    _say(language, key, text=text + (f" · grad {n.grad}" if n.grad is not None else ""))
                )
    members = [i for unit in units for i in unit]
    name = _say(language, "graph.fold.repeated")
    return Box(new, "loop", "", name, extra=lines, repeat=len(units), members=members)
