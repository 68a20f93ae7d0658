"""``--steps``: the chain rule worked out with autograd's own numbers.

While the one backward pass the report shows runs (the cell's own
``backward()``/``autograd.grad()``, or the one %%grad makes when the cell has
none), a :class:`~..capture.tracer.Tracer` catches each node's grads.

:func:`build` turns the trace into :class:`Steps`, plain frozen data: one
:class:`Step` per node in the order autograd ran them, each with the forward
expression it undoes (the cell's names; short made-up names for unnamed
intermediates), and one :class:`Edge` per input with the local derivative's
formula, its value, and the gradient sent on; and per leaf the sum of its
contributions. Rendering lives here too (text and HTML), with long runs of
steps folded.

The cost follows what is shown, not the pass's length: every node is named and what it sent is
routed (the sums over paths stay exact), but a :class:`Step` with its formulas, numbers and
forward expression is made only when it is read. The report reads the first and last steps and
the first and last lines of the forward listing; of the middle it needs only the node kinds, to
fold them. ``Steps.steps`` and ``Steps.forward`` of a long pass are sequences that make each
item when it is first read (:class:`_StepList`, :class:`_ForwardList`).
"""

from __future__ import annotations

import contextlib
import html
import itertools
import re
import string
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import torch

from .. import format as fmt
from ..capture.internals import sequence_number
from ..capture.tracer import (
    ELEMENTWISE,
    TRACE_LIMIT,
    SavedTensor,
    Tracer,
)  # (TRACE_LIMIT: the limit --steps reports)
from ..messages import t, template

CONST_DIGITS = 8  # constants of the cell are shown as written (1.0001 is not 1)
SHOWN = 24  # steps shown in full before the middle ones are folded
HEAD = 12  # ... of which this many from the start (the rest from the end)
MAX_PERIOD = 8  # the longest repeated block of steps that is folded as "× count"
EAGER = 256  # a pass of up to this many steps has them all made at once (plain tuples)


# ---------------------------------------------------------------------------
# the steps as plain data
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Edge:
    """One input of a step: where the gradient goes."""

    to: str  # the input's name (a leaf's, the cell's, or a made-up one)
    leaf: bool
    formula: str | None  # the local derivative d(step's output)/d(input), e.g. "2·x"
    local: torch.Tensor | None  # its value, from autograd's numbers (None: not element-wise)
    sent: torch.Tensor | None  # the gradient the node sent to this input (None: not needed)
    into_grad: bool = False  # a leaf whose .grad this pass added it to
    shared: bool = False  # the input got gradients by more than one path: this is one of them


@dataclass(frozen=True)
class Step:
    """One node of the backward pass, in the order autograd ran them (``index`` from 1)."""

    index: int
    node: str  # "MulBackward0"
    name: str  # the name of the node's output: the cell's, or a made-up one
    forward: str  # "y = 3 · a"
    arriving: torch.Tensor | None  # d out / d name, as it arrived
    parts: tuple[tuple[int, torch.Tensor], ...]  # (step that sent it, contribution), when several
    edges: tuple[Edge, ...]
    routing: bool = False  # moves values around (view, index, expand, transpose): no arithmetic
    kink: bool = False  # relu/abs evaluated exactly at 0
    module: str = ""  # the model's layer that made this node (net.2), when the cell called a model
    module_kind: str = ""  # its type (Linear)
    reduction: int | None = None  # a loss node's: 0 none, 1 mean, 2 sum; -1 weighted (a rule of its own)


@dataclass(frozen=True)
class LeafSum:
    """A leaf's gradient as the sum of what each path sent it."""

    name: str
    parts: tuple[tuple[int, torch.Tensor], ...]  # (step index, contribution)
    total: torch.Tensor | None


@dataclass(frozen=True)
class Steps:
    """``result.steps``: the chain rule as autograd ran it for ``output``."""

    output: str
    seed: torch.Tensor | None  # d out / d out as the backward pass started (1 for a scalar)
    steps: Sequence[Step]  # (a tuple; of a long pass, a sequence that makes each step when read)
    forward: Sequence[str]  # the computation in code order, one line per step (the same)
    made_up: tuple[str, ...]  # names made up for unnamed intermediates
    leaves: tuple[LeafSum, ...]
    cut: bool = False
    digits: int = 4
    max_items: int = 6
    several: bool = field(default=False)  # several leaves: partial derivatives (∂)
    hooked: tuple[str, ...] = ()  # leaves whose grad is not the sum the steps show (a hook changed it)
    g: str = "g"  # the arriving gradient in the formulas (ḡ where the cell has a tensor named g)

    @property
    def where_nan(self) -> tuple[str, ...]:
        """Leaves whose grad has a nan while a ``where`` sent its branches 0s: the branch not taken
        still multiplies that 0 by its local derivative, and 0 · nan (or 0 · inf) is nan."""
        if "WhereBackward0" not in _kinds(self.steps):
            return ()
        return tuple(
            leaf.name
            for leaf in self.leaves
            if leaf.total is not None and leaf.total.is_floating_point() and bool(leaf.total.isnan().any())
        )

    # ---- words -----------------------------------------------------------
    def _v(self, tensor: torch.Tensor | None) -> str:
        if tensor is None:
            return "None"
        if tensor.numel() > self.max_items:
            return f"{fmt.values(tensor, self.digits, self.max_items)} {fmt.shape(tensor)}"
        return fmt.values(tensor, self.digits, self.max_items)

    def _factor(self, tensor: torch.Tensor) -> str:
        text = self._v(tensor)
        return f"({text})" if text.startswith("-") else text

    def d(self, top: str, bottom: str) -> str:
        d = fmt.d_of(self.several, top, bottom)
        return f"{d}{fmt.operand(top)}/{d}{fmt.operand(bottom)}"

    def edge_text(self, step: Step, edge: Edge) -> tuple[str, str]:
        """(local derivative, gradient sent) as text: ``∂a/∂x = 2·x = 6``, ``dy/dx = 3 · 6 = 18``."""
        local = f"∂{fmt.operand(step.name)}/∂{fmt.operand(edge.to)}"
        if edge.formula is not None:
            local += f" = {edge.formula}"
        if edge.local is not None and (edge.formula or "").replace("−", "-") != self._v(edge.local):
            local += f" = {self._v(edge.local)}"
        elif edge.formula is None:  # an op with no formula here: said so, the grad it sent is still shown
            local += " = ? " + t("steps.not_explained", node=step.node)
        if step.routing:
            local = fmt.beside(local, t("steps.routing"))
        if step.kink and edge is step.edges[0]:  # (relu, abs: one input; the table and the quiz say it)
            local = fmt.beside(local, t("steps.kink"))
        sent = self.d(self.output, edge.to) + (" += " if edge.shared else " = ")  # (one path's part)
        if edge.sent is None:
            sent += t("steps.not_needed")
        elif edge.local is not None and step.arriving is not None and edge.local.numel() == 1:
            arriving = self._factor(step.arriving)
            if step.parts and step.arriving.numel() == 1:  # (what its paths sent, added: (3 + 3) · 3)
                arriving = "(" + _sum_text([self._v(g) for _, g in step.parts]) + ")"
            sent += f"{arriving} · {self._factor(edge.local)} = {self._v(edge.sent)}"
        else:
            sent += self._v(edge.sent)
            arrived = step.arriving.numel() if step.arriving is not None else 0
            if step.node in ELEMENTWISE and edge.sent.numel() < arrived:  # (b broadcast over x: summed)
                sent = fmt.beside(sent, t("steps.broadcast", name=edge.to, count=arrived))
        if edge.into_grad and edge.sent is not None:
            sent += f" → {edge.to}.grad"
        return local, sent

    def step_rows(self) -> list[list[str]]:
        """The table rows: one per edge; a folded run of steps is one row."""
        rows: list[list[str]] = []
        for item in self.shown():
            if isinstance(item, Fold):
                rows.append(["…", item.text(), "", "", ""])
                continue
            if isinstance(item, Layer):
                rows += self._layer_rows(item)
                continue
            step = item
            arriving = self.d(self.output, step.name) + " = " + self._v(step.arriving)
            if step.parts:
                arriving += " (" + _sum_text([self._v(g) for _, g in step.parts]) + ")"
            head = [str(step.index), step.node, step.forward]
            if not step.edges:
                rows.append([*head, arriving, ""])
            for k, edge in enumerate(step.edges):
                local, sent = self.edge_text(step, edge)
                rows.append([*(head if k == 0 else ["", "", ""]), local, sent])
        return rows

    def _layer_rows(self, layer: Layer) -> list[list[str]]:
        """One layer of a model: the gradient arriving at its output, its rule, and what it sends
        to its parameters and to the layer before."""
        first = layer.steps[0]
        index = f"{first.index}–{layer.steps[-1].index}" if len(layer.steps) > 1 else str(first.index)
        head = [index, f"{layer.module} ({layer.kind})", first.forward]
        rule = _layer_rule(layer, self.g)
        local = (
            rule.replace("∂L/", f"∂{fmt.operand(self.output)}/")
            if rule
            else ", ".join(dict.fromkeys(s.node for s in layer.steps))
        )
        rows = [[*head, local, self.d(self.output, first.name) + " = " + self._v(first.arriving)]]
        for edge in layer.leaving:
            target = edge.to.removeprefix(layer.module + ".") if edge.leaf else edge.to
            sent = (
                self.d(self.output, edge.to) + " = " + ("None" if edge.sent is None else self._v(edge.sent))
            )
            if edge.into_grad and edge.sent is not None:
                sent += f" → {edge.to}.grad"
            rows.append(["", "", "", f"→ {target}", sent])
        return rows

    def leaf_lines(self) -> list[str]:
        lines = []
        for leaf in self.leaves:
            parts = [self._v(g) for _, g in leaf.parts]
            text = self.d(self.output, leaf.name) + " = "
            if len(parts) > 1 and len(parts) <= 8:
                text += _sum_text(parts) + " = "
            text += self._v(leaf.total)
            if len(parts) > 1:
                text = fmt.beside(
                    text,
                    t(
                        "steps.paths",
                        count=len(parts),
                        steps=", ".join(fmt.few([f"#{i}" for i, _ in leaf.parts], 8)),
                    ),
                )
            lines.append(text)
        return lines

    def _sums(self) -> list[str]:
        """:meth:`leaf_lines` where a leaf's grad is a sum over paths (each grad that came by one
        path is in the table already, with its '→ x.grad')."""
        return self.leaf_lines() if any(len(leaf.parts) > 1 for leaf in self.leaves) else []

    def header(self) -> list[str]:
        return ["#", t("steps.col.node"), t("steps.col.forward"), t("steps.col.local"), t("steps.col.grad")]

    def intro(self) -> list[str]:
        lines = [t("steps.forward")]
        lines += ["  " + line for line in self.forward_shown()]
        if self.made_up:
            names = ", ".join(fmt.few(list(self.made_up), 8))
            names += f" ({len(self.made_up)})" if len(self.made_up) > 9 else ""
            lines.append(t("steps.made_up", names=names))
        seed = self._v(self.seed) if self.seed is not None else "1"
        lines.append(t("steps.backward", start=f"{self.d(self.output, self.output)} = {seed}"))
        return lines

    def forward_shown(self) -> list[str]:
        if len(self.forward) <= SHOWN:
            return list(self.forward)
        more = len(self.forward) - SHOWN
        return [*self.forward[:HEAD], t("steps.more_lines", count=more), *self.forward[-(SHOWN - HEAD) :]]

    # ---- folding -------------------------------------------------------------
    def shown(self) -> list[Step | Fold | Layer]:
        """The steps to show: all of a short pass; of a long one the first and last ones,
        the middle folded into repeated blocks ("AddBackward0, MulBackward0 × 4998"). A model's
        layer is one step of its own (its nodes together: what goes in, what comes out).
        Only the steps shown are made; the middle is folded from the node kinds alone."""
        cached = self.__dict__.get("_shown")
        if cached is None:
            cached = _shown(self.steps)
            object.__setattr__(self, "_shown", cached)  # (made once per report: text, HTML, quiz)
        return list(cached)

    # ---- views ---------------------------------------------------------------
    def legend(self, rows: list[list[str]]) -> list[str]:
        """What a letter of the table's formulas stands for, where one is used: g."""
        if any(_G.search(row[3]) if self.g == "g" else self.g in row[3] for row in rows):
            return [t("steps.g", g=self.g)]
        return []

    def to_text(self) -> str:
        lines = self.intro()
        rows = self.step_rows()
        lines += ["  " + line for line in fmt._text_table(self.header(), rows)]
        lines += self.legend(rows)
        leaves = self._sums()
        if leaves:
            lines.append(t("steps.leaves"))
            lines += ["  " + line for line in leaves]
        if self.cut:
            lines.append(t("steps.cut", limit=TRACE_LIMIT))
        return "\n".join(lines)

    def to_html(self) -> str:
        esc = html.escape
        intro = self.intro()
        parts = [f"<p>{esc(intro[0])}</p>", "<pre>" + esc("\n".join(self.forward_shown())) + "</pre>"]
        parts += [f"<p>{esc(line)}</p>" for line in intro[1 + len(self.forward_shown()) :]]
        rows = self.step_rows()
        parts.append(fmt._html_table(self.header(), rows))
        parts += [f"<p>{esc(line)}</p>" for line in self.legend(rows)]
        leaves = self._sums()
        if leaves:
            parts.append(f"<p>{esc(t('steps.leaves'))}</p>")
            parts.append("<ul>" + "".join(f"<li><code>{esc(line)}</code></li>" for line in leaves) + "</ul>")
        if self.cut:
            parts.append(f"<p>{esc(t('steps.cut', limit=TRACE_LIMIT))}</p>")
        return "".join(parts)


@dataclass(frozen=True)
class Layer:
    """The steps of one layer of a model, shown as one (``--steps`` on a model cell)."""

    module: str
    kind: str
    steps: tuple[Step, ...]
    inputs: tuple[str, ...]  # names of what went into the layer (not its parameters)
    leaving: tuple[Edge, ...]  # the gradients the layer sent out: to its parameters, to the layer before


# what a layer's backward computes, by the layer's type (g: the gradient arriving at its output): a
# formula (no words: the same in every language), or the id of a catalogue message (in words)
LAYER_RULES = {
    "Linear": "∂L/∂weight = gᵀ·{x},  ∂L/∂bias = Σ g,  ∂L/∂{x} = g·weight",
    "Tanh": "∂L/∂{x} = g·(1 − tanh²({x}))",
    "Sigmoid": "∂L/∂{x} = g·σ({x})·(1 − σ({x}))",
    "ReLU": "steps.rule.relu",
    "LeakyReLU": "steps.rule.leaky_relu",
    "Softmax": "∂L/∂{x} = s ⊙ (g − Σ g⊙s),  s = softmax({x})",
    "LogSoftmax": "∂L/∂{x} = g − softmax({x})·Σg",
    "MSELoss": "∂L/∂{x} = 2·({x} − target)/n",
    "CrossEntropyLoss": "∂L/∂{x} = (softmax({x}) − onehot(target))/n",
    "Dropout": "∂L/∂{x} = g·mask/(1 − p)",
    "Embedding": "steps.rule.embedding",
}


_LOSS_CALL = re.compile(r"= (?:mse|nll)_loss\([\w.]+, (?:([A-Za-z_][\w.]*)[,)])?")  # (1: the target's name)


def _layer_rule(layer: Layer, g: str = "g") -> str | None:
    """What *layer*'s backward computes (:data:`LAYER_RULES`), in the cell's names: its input
    (``data``), its parameters (``net.weight``), the loss's target (``y``) and n; the part for the
    input left out where nothing goes back to it (it needs no grad)."""
    rule = LAYER_RULES.get(layer.kind)
    if rule is None:
        return None
    rule = rule if g == "g" else _G.sub(g, rule)  # (ḡ: the cell has a tensor named g)
    forward = layer.steps[0].forward
    inputs = [n for n in layer.inputs if not n.startswith(layer.module + ".")]
    x = inputs[0] if len(inputs) == 1 else _matmul_operand(forward) if not inputs else "x"
    rule = t(rule, x=x) if rule.startswith("steps.rule.") else rule.format(x=x)
    rule = _with_module_names(rule, layer.module, x, sends_back=bool(inputs))
    if layer.kind in ("MSELoss", "CrossEntropyLoss"):
        call = _LOSS_CALL.search(forward)
        reduction = next((s.reduction for s in layer.steps if s.reduction is not None), None)
        if reduction not in (1, 2) or call is None:
            return None  # (weights, label smoothing, no reduction: not the rule shown)
        rule = rule.replace("target", call.group(1) or "target")
        rule = rule + _n_of(layer) if reduction == 1 else rule.replace(")/n", ")")
    return rule


def _n_of(layer: Layer) -> str:
    """`` (n = 2)`` after a loss's rule that divides by n: what n was (MSE: the elements; cross
    entropy: the samples)."""
    sent = next((e.sent for e in layer.leaving if e.sent is not None and not e.leaf), None)
    if sent is None:
        return ""
    n = sent.numel() if layer.kind == "MSELoss" or sent.dim() < 2 else sent.shape[0]
    return f" (n = {n})"


def _reduction(kind: str, raw: Any) -> int | None:
    """A loss node's reduction (0 none, 1 mean, 2 sum), -1 where it was weighted."""
    if kind not in ("MseLossBackward0", "NllLossBackward0", "NllLoss2DBackward0"):
        return None
    saved = raw.saved_now()
    if isinstance(saved.get("weight"), SavedTensor):
        return -1
    reduction = saved.get("reduction")
    return reduction if isinstance(reduction, int) else None


def _matmul_operand(forward: str) -> str:
    """The layer's input in its forward line (``data`` of ``a = net.bias + data @ net.weightᵀ``),
    where no gradient goes back to it (it needs none); else "x"."""
    found = re.search(r"([\w.\[\]]+) @ ", forward)
    return found.group(1) if found else "x"


def _with_module_names(rule: str, module: str, x: str, sends_back: bool) -> str:
    """A layer's rule with its parameters' names as the cell has them (``net.weight``); the part
    for the layer's input left out where nothing is sent back to it (it needs no grad)."""
    rule = re.sub(r"(?<=∂)(weight|bias)\b|(?<=·)weight\b", lambda m: f"{module}.{m.group(0)}", rule)
    if sends_back:
        return rule
    return ",  ".join(part for part in rule.split(",  ") if not part.startswith(f"∂L/∂{x} ="))


def _shown(steps: Sequence[Step]) -> list[Step | Fold | Layer]:
    """:meth:`Steps.shown` of *steps*: the runs of a model's layers found from each step's layer
    alone, and only the steps of the first and last runs made."""
    runs = _runs(_column(steps, "modules", "module"))
    if len(runs) <= SHOWN:
        return [_item(steps, run) for run in runs]
    kinds, layer_kinds = _kinds(steps), _column(steps, "module_kinds", "module_kind")
    indices = _column(steps, "indices", "index")
    middle = [
        (indices[start], indices[stop - 1], (layer_kinds[start] or module) if module else kinds[start])
        for start, stop, module in runs[HEAD : len(runs) - (SHOWN - HEAD)]
    ]  # (first step, last step, what folds: the node's kind, or the layer's type)
    head, tail = runs[:HEAD], runs[len(runs) - (SHOWN - HEAD) :]
    return [*(_item(steps, run) for run in head), *_fold(middle), *(_item(steps, run) for run in tail)]


def _column(steps: Sequence[Step], name: str, attribute: str) -> Sequence[Any]:
    """One field of every step, without making the steps of a :class:`_StepList`."""
    found = getattr(steps, name, None)
    return found if found is not None else [getattr(step, attribute) for step in steps]


def _kinds(steps: Sequence[Step]) -> Sequence[str]:
    """Each step's node kind (``MulBackward0``)."""
    return _column(steps, "kinds", "node")


def _runs(modules: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, stop, layer) of each run of steps made by one layer of a model ("" for a step of
    its own), *modules* being each step's layer."""
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(modules):
        module = modules[i]
        j = i
        while j < len(modules) and module and modules[j] == module:
            j += 1
        if not module or j == i:
            out.append((i, i + 1, ""))
            i += 1
            continue
        out.append((i, j, module))
        i = j
    return out


def _item(steps: Sequence[Step], run: tuple[int, int, str]) -> Step | Layer:
    """One step, or the run of steps of one layer as a :class:`Layer`."""
    start, stop, module = run
    if not module:
        return steps[start]
    steps_run = tuple(steps[start:stop])
    inside = {s.name for s in steps_run}
    leaving = tuple(e for s in steps_run for e in s.edges if e.to not in inside)
    params = tuple(e.to for e in leaving if e.leaf and e.to.startswith(module + "."))
    inputs = tuple(dict.fromkeys(e.to for e in leaving if e.to not in params))
    return Layer(module, steps_run[0].module_kind, steps_run, inputs, leaving)


@dataclass(frozen=True)
class Fold:
    """A run of steps not shown one by one: a repeated block of node kinds and its count,
    or (no repetition) how many steps of which kinds."""

    start: int
    stop: int
    block: tuple[str, ...]
    count: int

    def text(self) -> str:
        if self.count > 1:
            return t(
                "steps.fold_block",
                block=", ".join(self.block),
                count=self.count,
                start=self.start,
                stop=self.stop,
            )
        kinds = ", ".join(self.block)
        if self.stop == self.start:  # (not "steps 69–69 (1 steps …)")
            return t("steps.fold_one", kinds=kinds.removesuffix(" ×1"), start=self.start)
        return t(
            "steps.fold", count=self.stop - self.start + 1, kinds=kinds, start=self.start, stop=self.stop
        )


def _fold(items: list[tuple[int, int, str]]) -> list[Fold]:
    """Fold *items* ((first step, last step, kind): a step, or a model's layer) into blocks: the
    shortest period (≤ MAX_PERIOD) that repeats most."""
    names = [kind for _, _, kind in items]
    folds: list[Fold] = []
    i = 0
    loose: list[tuple[int, int, str]] = []

    def flush() -> None:
        if loose:
            kinds = tuple(f"{k} ×{n}" for k, n in _counts([kind for _, _, kind in loose]))
            folds.append(Fold(loose[0][0], loose[-1][1], kinds, 1))
            loose.clear()

    while i < len(names):
        best = (1, 1)  # (period, repeats)
        for period in range(1, MAX_PERIOD + 1):
            block = names[i : i + period]
            if len(block) < period:
                break
            repeats = 1
            while names[i + repeats * period : i + (repeats + 1) * period] == block:
                repeats += 1
            if repeats * period > best[0] * best[1] and repeats > 1:
                best = (period, repeats)
        period, repeats = best
        if repeats >= 3:
            flush()
            end = i + period * repeats - 1
            folds.append(Fold(items[i][0], items[end][1], tuple(names[i : i + period]), repeats))
            i += period * repeats
        else:
            loose.append(items[i])
            i += 1
    flush()
    return folds


def _counts(names: list[str]) -> list[tuple[str, int]]:
    found: dict[str, int] = {}
    for n in names:
        found[n] = found.get(n, 0) + 1
    return sorted(found.items(), key=lambda kv: -kv[1])


# ---------------------------------------------------------------------------
# formulas
# ---------------------------------------------------------------------------
ROUTING = {
    "ViewBackward0", "ReshapeAliasBackward0", "UnsafeViewBackward0", "ExpandBackward0", "SelectBackward0",
    "SliceBackward0", "IndexBackward0", "TBackward0", "TransposeBackward0", "TransposeBackward1",
    "PermuteBackward0", "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward4", "UnsqueezeBackward0",
    "CloneBackward0", "ToCopyBackward0", "CatBackward0", "StackBackward0", "SplitBackward0",
    "UnbindBackward0", "AliasBackward0", "ExpandBackward1", "NarrowBackward0", "ViewAsRealBackward0",
    "ContiguousBackward0", "FlattenBackward0", "SortBackward0", "TopkBackward0",
}  # fmt: skip
# node -> forward template over the operands a, b, c (in next_functions order)
FORWARD = {
    "AddBackward0": "{a} + {b}", "AddBackward1": "{a} + {b}", "SubBackward0": "{a} − {b}",
    "SubBackward1": "{a} − {b}", "RsubBackward0": "{b} − {a}", "RsubBackward1": "{b} − {a}",
    "MulBackward0": "{a} · {b}", "MulBackward1": "{a} · {b}", "DivBackward0": "{a} / {b}",
    "DivBackward1": "{a} / {b}", "NegBackward0": "−{a}", "PowBackward0": "{a} ** {exponent}",
    "PowBackward1": "{a} ** {b}", "PowBackward2": "{base} ** {a}", "ExpBackward0": "exp({a})",
    "LogBackward0": "log({a})", "SqrtBackward0": "√{a}", "SinBackward0": "sin({a})",
    "CosBackward0": "cos({a})", "TanhBackward0": "tanh({a})", "SigmoidBackward0": "σ({a})",
    "ReluBackward0": "relu({a})", "AbsBackward0": "|{a}|", "ReciprocalBackward0": "1 / {a}",
    "SumBackward0": "sum({a})", "SumBackward1": "sum({a}, dim={dim})", "TraceBackward0": "trace({a})",
    "MeanBackward0": "mean({a})",
    "MeanBackward1": "mean({a}, dim={dim})", "MmBackward0": "{a} @ {b}", "MvBackward0": "{a} @ {b}",
    "DotBackward0": "{a} · {b}", "BmmBackward0": "{a} @ {b}", "AddmmBackward0": "{a} + {b} @ {c}",
    "SoftmaxBackward0": "softmax({a}, dim={dim})", "LogSoftmaxBackward0": "log_softmax({a}, dim={dim})",
    "MseLossBackward0": "mse_loss({a}, {target})", "NllLossBackward0": "nll_loss({a}, {target})",
    "TBackward0": "{a}ᵀ", "ViewBackward0": "{a}.view(…)", "ExpandBackward0": "{a}.expand(…)",
    "SelectBackward0": "{a}[…]", "SliceBackward0": "{a}[…]", "IndexBackward0": "{a}[…]",
    "UnsafeViewBackward0": "{a}.view(…)", "ReshapeAliasBackward0": "{a}.reshape(…)",
    "TransposeBackward0": "{a}.transpose(…)", "PermuteBackward0": "{a}.permute(…)",
    "CloneBackward0": "{a}.clone()", "ToCopyBackward0": "{a}.to(…)", "UnsqueezeBackward0": "{a}.unsqueeze(…)",
    "SqueezeBackward0": "{a}.squeeze()", "SqueezeBackward1": "{a}.squeeze(…)", "SqueezeBackward4": "{a}.squeeze(…)",
}  # fmt: skip
# node -> the local derivative of the output w.r.t. each input (same order); {o} the output's name
LOCAL = {
    "AddBackward0": ("1", "{alpha}"), "AddBackward1": ("1",), "SubBackward0": ("1", "−{alpha}"),
    "SubBackward1": ("1",), "RsubBackward0": ("−{alpha}", "1"), "RsubBackward1": ("−{alpha}",),
    "MulBackward0": ("{b}", "{a}"), "MulBackward1": ("{b}",), "DivBackward0": ("1/{b}", "−{a}/{b}²"),
    "DivBackward1": ("1/{b}",), "NegBackward0": ("−1",), "PowBackward0": ("{power}",),
    "PowBackward1": ("{b}·{a}^({b}−1)", "{a}^{b}·ln {a}"), "PowBackward2": ("{base}^{a}·ln {base}",),
    "ExpBackward0": ("exp({a}) = {o}",), "LogBackward0": ("1/{a}",), "SqrtBackward0": ("1/(2√{a})",),
    "SinBackward0": ("cos({a})",), "CosBackward0": ("−sin({a})",), "TanhBackward0": ("1 − tanh²({a}) = 1 − {o}²",),
    "SigmoidBackward0": ("σ({a})·(1 − σ({a})) = {o}·(1 − {o})",), "ReluBackward0": ("@formula.relu",),
    "AbsBackward0": ("sign({a})",), "ReciprocalBackward0": ("−1/{a}²",),
    "SumBackward0": ("@formula.each",), "SumBackward1": ("@formula.each",),
    "TraceBackward0": ("@formula.trace",), "MeanBackward0": ("1/n (n = {n})",), "MeanBackward1": ("@formula.mean_dim",),
    "VarBackward0": ("@formula.var",), "StdBackward0": ("@formula.std",),
    "LogsumexpBackward0": ("softmax({a}) = exp({a} − {o})",), "CumsumBackward0": ("@formula.cumsum",),
    "MmBackward0": ("g @ {b}ᵀ", "{a}ᵀ @ g"), "BmmBackward0": ("g @ {b}ᵀ", "{a}ᵀ @ g"),
    "MvBackward0": ("g ⊗ {b}", "{a}ᵀ @ g"), "DotBackward0": ("g·{b}", "g·{a}"),
    "AddmmBackward0": ("@formula.rows", "g @ {c}ᵀ", "{b}ᵀ @ g"),
    "SoftmaxBackward0": ("{o} ⊙ (g − Σ g⊙{o})",), "LogSoftmaxBackward0": ("g − softmax({a})·Σg",),
    "MseLossBackward0": ("2·({a} − {target})/n", "−2·({a} − {target})/n"),
    "NllLossBackward0": ("@formula.nll",),
    "ProdBackward0": ("@formula.prod",), "ProdBackward1": ("@formula.prod",),
    "LinalgVectorNormBackward0": ("{a}/‖{a}‖ = {a}/{o}",),  # (the 2-norm only: see _local_formulas)
    # max(dim=…) (Backward0) sends g to the one index it returned; max() and amax() share it among ties
    "MaxBackward0": ("@formula.max_index",), "MaxBackward1": ("@formula.max",), "AmaxBackward0": ("@formula.max",),
    "MinBackward0": ("@formula.min_index",), "MinBackward1": ("@formula.min",), "AminBackward0": ("@formula.min",),
    "LinalgDetBackward0": ("{o}·{a}⁻ᵀ",),
    "BinaryCrossEntropyBackward0": ("({a} − {target}) / ({a}·(1 − {a})) / n",),
    "BinaryCrossEntropyWithLogitsBackward0": ("(σ({a}) − {target}) / n",),
}  # fmt: skip
LOSSES = {
    "MseLossBackward0",
    "NllLossBackward0",
    "BinaryCrossEntropyBackward0",
    "BinaryCrossEntropyWithLogitsBackward0",
}


def _local_formulas(kind: str, saved: dict[str, Any]) -> tuple[str, ...]:
    """The formulas of *kind*'s local derivatives where they hold for what the node saved: none
    for a p-norm other than 2 or a weighted loss; a loss summed (or not reduced) has no 1/n."""
    formulas = LOCAL.get(kind, ())
    if kind == "LinalgVectorNormBackward0" and saved.get("ord") not in (2, 2.0):
        return ()
    if kind in LOSSES:
        if isinstance(saved.get("weight"), SavedTensor) or isinstance(saved.get("pos_weight"), SavedTensor):
            return ()
        if saved.get("reduction") in (0, 2):  # Reduction.None, Reduction.Sum
            return tuple(f.replace("/n", "").replace("/ n", "").rstrip() for f in formulas)
    return formulas


ROUTE_LOCAL = {
    "ExpandBackward0": "@formula.expand", "SelectBackward0": "@formula.picked",
    "SliceBackward0": "@formula.picked", "IndexBackward0": "@formula.picked",
    "TBackward0": "gᵀ", "TransposeBackward0": "@formula.transposed", "PermuteBackward0": "@formula.permuted",
    "SortBackward0": "@formula.unsorted", "TopkBackward0": "@formula.picked",
}  # fmt: skip
BINARY_OPS = {
    "add", "__add__", "__radd__", "sub", "__sub__", "__rsub__", "rsub", "mul", "__mul__", "__rmul__", "div",
    "true_divide", "__truediv__", "__rtruediv__", "__div__", "pow", "__pow__", "__rpow__", "subtract", "multiply",
    "divide",
}  # fmt: skip


_G = re.compile(r"(?<![\w.])g(?![\w(])")  # g in a formula: the gradient arriving (g ⊗ v, Σ g, gᵀ·x)
_DEFAULTS = {"inplace=False"}  # keyword arguments a library passes at their defaults: not the cell's
OPERATORS = {"neg": "-{}", "negative": "-{}", "matmul": "{} @ {}"}  # calls a cell mostly writes as operators


def _superscript(n: Any) -> str:
    return fmt.number(n).translate(str.maketrans("0123456789-.", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻·"))


def _power(name: str, exponent: Any) -> str:
    """``n·x^(n−1)`` for a number n: ``2·x``, ``3·x²``, ``0.5·x^-0.5``."""
    if not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
        return f"n·{name}^(n−1)"
    n = exponent
    lower = n - 1
    if lower == 0:
        return fmt.number(n)
    if lower == 1:
        return f"{fmt.number(n)}·{name}"
    if float(lower).is_integer() and lower > 0:
        return f"{fmt.number(n)}·{name}{_superscript(int(lower))}"
    return f"{fmt.number(n)}·{name}^({fmt.number(lower)})"


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return "…"


# ---------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------
def build(
    tracer: Tracer,
    output: torch.Tensor,
    output_name: str,
    named: dict[str, torch.Tensor],
    taken: set[str],
    recorder: Any = None,
    digits: int = 4,
    max_items: int = 6,
    to_grad: frozenset[str] | set[str] = frozenset(),
    owners: Any = None,
) -> Steps:
    """The steps of the traced pass.

    named
        the leaves and the cell's named tensors (first name wins; leaves in report order).
    taken
        names in use (made-up names avoid them).
    to_grad
        the leaves whose ``.grad`` this pass wrote (``→ x.grad``).
    owners
        :class:`~.modules.NodeOwners` when the cell called a model: each step gets its layer.
    recorder
        the :class:`~..capture.record.Recorder` (or, for --steps alone, its
        :class:`~..capture.record.NodeCalls`), when the run recorded the computation: it knows the
        constants (``+ 4``) and the functions the cell called that the graph forgot.

    Every node is named and what it sent is routed here; each :class:`Step` and forward line is
    made when first read (all at once for a pass of up to ``EAGER`` steps).
    """
    ran = tracer.ran
    naming = _Naming.of(named, taken, output, output_name)
    ordered = sorted(range(len(ran)), key=lambda i: sequence_number(ran[i]))  # the steps in code order
    naming.name_nodes([ran[i] for i in ordered])  # in code order: a, b, c read in the order made
    ops = _Ops(recorder, naming, digits)  # (the names known before the pass is walked, as the calls read)
    g = "ḡ" if "g" in naming.names.values() else "g"  # the arriving gradient in the formulas
    walk = _Walk(naming, ops, digits, to_grad, owners, tracer, g=g)
    walk.route()  # in autograd's order: the names of the nodes it did not run, and the arrivals
    leaves = _leaf_sums(tracer, walk.parts, naming.names, list(named))
    steps: Sequence[Step] = _StepList(walk)
    forward: Sequence[str] = _ForwardList(walk, ordered)
    if len(ran) <= EAGER:
        steps, forward = tuple(steps), tuple(forward)
    first = tracer.raws[0] if ran else None
    return Steps(
        output=output_name,
        seed=first.grad_out[0] if first is not None and first.grad_out else None,
        steps=steps,
        forward=forward,
        made_up=tuple(naming.made_up),
        leaves=leaves,
        cut=tracer.cut,
        digits=digits,
        max_items=max_items,
        several=len(leaves) > 1,
        g=g,
    )


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")  # no forward expression is such a name (FORWARD's each
# have an operator, a bracket or ᵀ): a node so named always has its line in the forward listing


class _Names(dict):
    """id(tensor) -> the cell's name for it; :func:`_name_of` also checks that a tensor is the one
    named (a step made after the cell has ended may read a tensor made then, whose id a tensor of
    the cell that is gone since had)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: dict[int, Any] = {}

    def add(self, tensor: torch.Tensor, name: str) -> None:
        self[id(tensor)] = name
        with contextlib.suppress(TypeError):  # (a tensor that takes no weak reference: not checked)
            self.refs[id(tensor)] = weakref.ref(tensor)


def _name_of(tensor: Any, names: dict[int, str] | None) -> str | None:
    """The cell's name of *tensor* in *names* (None: none, or another tensor had its id)."""
    name = names.get(id(tensor)) if names else None
    refs = getattr(names, "refs", None)
    if name is not None and refs is not None and id(tensor) in refs and refs[id(tensor)]() is not tensor:
        return None
    return name


@dataclass
class _Naming:
    """What the steps call each tensor and node: *names* the cell's tensors (by id, the first name
    wins), *node_names* each node's output (the cell's name, else a made-up letter from *letters*,
    kept in *made_up*), *by_output* a node's other outputs (``a, b = x.unbind()``)."""

    names: dict[int, str]
    node_names: dict[int, str]
    by_output: dict[tuple[int, int], str]  # (node, which of its outputs) -> name
    letters: Any
    made_up: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls, named: dict[str, torch.Tensor], taken: set[str], output: torch.Tensor, output_name: str
    ) -> _Naming:
        """The cell's names (*named*; *output* is *output_name*); made-up ones avoid *taken*."""
        names = _Names()
        for name, tensor in named.items():
            if isinstance(tensor, torch.Tensor) and id(tensor) not in names:
                names.add(tensor, name)
        node_names: dict[int, str] = {}
        if output.grad_fn is not None:
            node_names[id(output.grad_fn)] = output_name
        by_output: dict[tuple[int, int], str] = {}
        for name, tensor in named.items():
            if isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
                by_output.setdefault((id(tensor.grad_fn), tensor.output_nr), name)
                if tensor.output_nr == 0:
                    node_names.setdefault(id(tensor.grad_fn), name)
        letters = _letters(taken | set(names.values()) | {output_name})
        return cls(names, node_names, by_output, letters)

    def make_up(self, key: int) -> str:
        """A new letter for node *key*."""
        self.node_names[key] = next(self.letters)
        self.made_up.append(self.node_names[key])
        return self.node_names[key]

    def name_nodes(self, ordered: list[Any]) -> None:
        """Name the nodes the pass ran (*ordered*: in code order) that have no name yet."""
        for node in ordered:
            key = id(node)
            if key in self.node_names:
                continue
            if type(node).__name__ == "TBackward0":
                inputs = [nxt for nxt, _ in node.next_functions if nxt is not None]
                if len(inputs) == 1:
                    self.node_names[key] = self.input(inputs[0])[0] + "ᵀ"  # linear's Wᵀ
                    continue
            self.make_up(key)

    def input(self, nxt: Any, nr: int = 0) -> tuple[str, bool]:
        """The name of a node's input (output *nr* of node *nxt*), and whether it is a leaf."""
        variable = getattr(nxt, "variable", None)
        if isinstance(variable, torch.Tensor):
            name = self.names.get(id(variable))
            return (name if name is not None else f"leaf{fmt.shape(variable)}"), True
        if (id(nxt), nr) in self.by_output:
            return self.by_output[(id(nxt), nr)], False
        if id(nxt) not in self.node_names:  # a node this pass did not run (not needed): a name all the same
            self.make_up(id(nxt))
        return self.node_names[id(nxt)], False


@dataclass
class _Walk:
    """The pass in the order autograd ran it (*tracer*'s): the names, the recorded calls (*ops*), the
    leaves whose ``.grad`` the pass wrote (*to_grad*) and the model's layers (*owners*). :meth:`route`
    gathers what each step sent to each node and leaf (*arrivals*, read by :meth:`parts`) and each
    step's node kind and layer; :meth:`step` and :meth:`forward` make one step or forward line."""

    naming: _Naming
    ops: _Ops
    digits: int
    to_grad: frozenset[str] | set[str]
    owners: Any
    tracer: Tracer
    # by id: (step, which input) of each gradient sent to it, one pair or a list (no tensor held here)
    arrivals: dict[int, Any] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    module_kinds: list[str] = field(default_factory=list)
    made: dict[int, tuple[_Fields, str]] = field(default_factory=dict)  # id(node) -> (fields, line)
    positions: dict[int, int] | None = None  # id(node) -> its step (from 0), made when first asked
    g: str = "g"  # the arriving gradient in the formulas (Steps.g)

    def route(self) -> None:
        """Every step once, in order, cheaply: its kind and layer, the names of the nodes it reaches
        (the ones the pass did not run get theirs here, in this order) and what it sent to each."""
        naming, arrivals, owners, tracer = self.naming, self.arrivals, self.owners, self.tracer
        by_output, node_names = naming.by_output, naming.node_names
        for position, node in enumerate(tracer.ran, start=1):
            sent = tracer.sent(position - 1)
            self.kinds.append(type(node).__name__)
            module = _layer_of(owners, id(node)) if owners else ""
            self.modules.append(module)
            self.module_kinds.append(owners.kinds.get(module, "") if owners else "")
            for i, (nxt, nr) in enumerate(node.next_functions):
                if nxt is None:
                    continue
                variable = getattr(nxt, "variable", None)  # (a leaf's node: the leaf)
                if variable is None and (id(nxt), nr) not in by_output and id(nxt) not in node_names:
                    naming.make_up(id(nxt))  # (as naming.input does)
                if i < len(sent) and sent[i] is not None:
                    target = id(variable if variable is not None else nxt)
                    known = arrivals.get(target)
                    if known is None:
                        arrivals[target] = (position, i)
                    elif isinstance(known, list):
                        known.append((position, i))
                    else:
                        arrivals[target] = [known, (position, i)]

    def parts(self, key: int) -> tuple[tuple[int, torch.Tensor], ...]:
        """What was sent to node or leaf *key* (an id): (step, gradient), in the pass's order."""
        known = self.arrivals.get(key)
        if known is None:
            return ()
        pairs = known if isinstance(known, list) else [known]
        return tuple((position, self.tracer.sent(position - 1)[i]) for position, i in pairs)

    def forward(self, raw: Any) -> tuple[_Fields, str]:
        """The forward line of *raw*'s node (``a = x ** 2``; only the name where the expression is
        it) and the template fields it was made from."""
        node = raw.node
        made = self.made.get(id(node))
        if made is not None:
            return made
        naming = self.naming
        kind, name = type(node).__name__, naming.node_names[id(node)]
        operands = [naming.input(nxt, nr)[0] if nxt is not None else None for nxt, nr in node.next_functions]
        op = self.ops.get(node)
        fields = _fields(kind, operands, raw.saved_now(), op, name, self.digits, naming.names)
        expression = _forward(kind, fields, op, operands)
        lhs = _targets(id(node), name, naming.by_output)
        made = self.made[id(node)] = (fields, lhs if expression == name else f"{lhs} = {expression}")
        return made

    def has_line(self, step: int) -> bool:
        """Whether the node of *step* (from 0) has a line in the forward listing (made only where
        that cannot be told from its name)."""
        if _PLAIN_NAME.fullmatch(self.naming.node_names[id(self.tracer.ran[step])]):
            return True
        return " = " in self.forward(self.tracer.raws[step])[1]

    def step(self, position: int) -> Step:
        """Step *position* (from 1): the node it ran, what arrived at it and what it sent on."""
        raw = self.tracer.raws[position - 1]
        node = raw.node
        kind, name = self.kinds[position - 1], self.naming.node_names[id(node)]
        fields, line = self.forward(raw)
        parts = tuple(p for p in self.parts(id(node)) if p[0] < position)
        module = self.modules[position - 1]
        return Step(
            index=position,
            node=kind,
            name=name,
            forward=line,
            arriving=raw.grad_out[0] if raw.grad_out else None,
            parts=parts if len(parts) > 1 else (),
            edges=self.edges(raw, fields),
            routing=kind in ROUTING,
            kink=self._at_kink(kind, raw),
            module=module,
            module_kind=self.module_kinds[position - 1],
            reduction=_reduction(kind, raw),
        )

    def _at_kink(self, kind: str, raw: Any) -> bool:
        """Whether a relu's or abs's input is exactly 0 somewhere (abs saved its input; relu only its
        output, which is 0 for every input ≤ 0: its input is read from the leaf or from what the
        node that made it saved, and where neither tells, no kink is claimed)."""
        if kind == "AbsBackward0":
            return _zero_in(raw.saved_now().get("self"))
        if kind != "ReluBackward0" or not _zero_in(raw.saved_now().get("result")):
            return False
        made_by = raw.node.next_functions[0][0] if raw.node.next_functions else None
        variable = getattr(made_by, "variable", None)
        if isinstance(variable, torch.Tensor):
            with torch.no_grad():
                return bool((variable == 0).any())
        if self.positions is None:
            self.positions = {id(node): i for i, node in enumerate(self.tracer.ran)}
        position = self.positions.get(id(made_by))
        return position is not None and _zero_in(self.tracer.raws[position].saved_now().get("result"))

    def edges(self, raw: Any, fields: _Fields) -> tuple[Edge, ...]:
        """One edge per input of *raw*'s node that exists."""
        kind = type(raw.node).__name__
        saved = raw.saved_now()
        formulas = _local_formulas(kind, saved)
        local_all = raw.locals()
        edges = []
        for i, (nxt, nr) in enumerate(raw.node.next_functions):
            if nxt is None:
                continue
            to, is_leaf = self.naming.input(nxt, nr)
            sent = raw.grad_in[i] if i < len(raw.grad_in) else None
            local = local_all[i] if i < len(local_all) else None
            formula = formulas[i] if i < len(formulas) else None
            formula = _edge_formula(kind, formula if self.g == "g" or formula is None else _G.sub(self.g, formula),
                                    fields, saved)  # fmt: skip
            target = getattr(nxt, "variable", None) if is_leaf else nxt
            shared = isinstance(self.arrivals.get(id(target)), list)  # (several paths: this is one)
            edges.append(Edge(to, is_leaf, formula, local, sent, is_leaf and to in self.to_grad, shared))
        return tuple(edges)


class _Lazy(Sequence):
    """A read-only sequence whose items are made when first read (then kept); compares, hashes
    and prints as the tuple of its items."""

    def __init__(self, size: int):
        self._size = size
        self._made: dict[int, Any] = {}

    def _make(self, index: int) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> tuple: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self._size)))
        if index < 0:
            index += self._size
        if not 0 <= index < self._size:
            raise IndexError(index)
        if index not in self._made:
            self._made[index] = self._make(index)
        return self._made[index]

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self._size))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, list, _Lazy)):
            return len(self) == len(other) and tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))

    def __reduce__(self) -> tuple:  # (copied or pickled: as the tuple of its items)
        return (tuple, (tuple(self),))


class _StepList(_Lazy):
    """``Steps.steps`` of a long pass: each :class:`Step` made when read; the node kinds, layers and
    indices of all of them (``kinds``, ``modules``, ``module_kinds``, ``indices``) known without
    making any."""

    def __init__(self, walk: _Walk):
        super().__init__(len(walk.tracer.ran))
        self._walk = walk
        self.kinds, self.modules, self.module_kinds = walk.kinds, walk.modules, walk.module_kinds
        self.indices = range(1, len(self) + 1)

    def _make(self, index: int) -> Step:
        return self._walk.step(index + 1)


class _ForwardList(_Lazy):
    """``Steps.forward`` of a long pass: the lines in code order (*ordered*: the steps, from 0),
    each made when read."""

    def __init__(self, walk: _Walk, ordered: list[int]):
        self._walk = walk
        self._lines = [step for step in ordered if walk.has_line(step)]
        super().__init__(len(self._lines))

    def _make(self, index: int) -> str:
        return self._walk.forward(self._walk.tracer.raws[self._lines[index]])[1]


def _edge_formula(kind: str, formula: str | None, fields: _Fields, saved: dict[str, Any]) -> str | None:
    """The local derivative's formula of an edge of a *kind* node, filled in with *fields* (None
    where one of them is unknown): *formula* from LOCAL, else a routing node's words."""
    if formula is not None:
        formula = formula.format_map(fields)
    if formula is None and kind in ROUTING:
        formula = ROUTE_LOCAL.get(kind, "@formula.passed_on")
    if formula is not None and formula.startswith("@"):  # words: in the report's language
        formula = template(formula[1:]).format_map(fields)
        if kind in LOSSES and saved.get("reduction") in (0, 2):
            formula = formula.replace("/n", "")
    if formula is None or "…" in formula:
        return None
    return formula.replace("ᵀᵀ", "")  # (Wᵀ)ᵀ = W


def _leaf_sums(
    tracer: Tracer,
    arrivals: Any,
    names: dict[int, str],
    order: list[str],
) -> tuple[LeafSum, ...]:
    """Each leaf's gradient as the sum of what arrived at it (*arrivals*: id -> (step, gradient)
    pairs), contributions in code order; the leaves in the order their first contribution was
    made (then *order*: the names')."""
    sequence = {position: sequence_number(node) for position, node in enumerate(tracer.ran, start=1)}
    rank = {name: i for i, name in enumerate(order)}
    found = []
    for node in tracer.nodes:
        variable = getattr(node, "variable", None)
        parts = arrivals(id(variable)) if isinstance(variable, torch.Tensor) else ()
        if not parts:
            continue
        parts = tuple(sorted(parts, key=lambda p: sequence[p[0]]))  # in code order: u**3 before 4*u*v
        total = parts[0][1].clone()
        for _, g in parts[1:]:
            total = total + g
        found.append(LeafSum(names.get(id(variable), f"leaf{fmt.shape(variable)}"), parts, total))
    found.sort(key=lambda s: (sequence[s.parts[0][0]], rank.get(s.name, len(rank))))
    return tuple(found)


def graph_flow(tracer: Tracer, digits: int = 4) -> dict[int, tuple[str | None, list[str | None]]]:
    """For ``--graph``: per node, the gradient that arrived, and per input edge a label with
    the local factor and the gradient sent (``×6 → 18``), from the same traced numbers."""
    found: dict[int, tuple[str | None, list[str | None]]] = {}
    for raw in tracer.raws:
        arrived = raw.grad_out[0] if raw.grad_out else None
        locals_ = raw.locals()
        labels: list[str | None] = []
        for i in range(len(raw.node.next_functions)):
            sent = raw.grad_in[i] if i < len(raw.grad_in) else None
            local = locals_[i] if i < len(locals_) else None
            if sent is None:
                labels.append(None)
            elif local is not None and local.numel() == 1:
                labels.append(f"×{fmt.values(local, digits)} → {fmt.values(sent, digits)}")
            else:
                labels.append(f"→ {fmt.values(sent, digits, 3)}")
        found[id(raw.node)] = (None if arrived is None else fmt.values(arrived, digits, 3), labels)
    return found


def _layer_of(owners: Any, key: int) -> str:
    """The layer (a module called by the model the cell called: ``net.2``) that made a node."""
    if not owners or key not in owners:
        return ""
    chain = [owners[key]]
    while owners.parents.get(chain[-1]) is not None and len(chain) < 64:
        chain.append(owners.parents[chain[-1]])
    return chain[-2] if len(chain) >= 2 else chain[-1]


def _letters(taken: set[str]) -> Any:
    """a, b, c, e, ...: made-up names; none starts with d (``dy/dd`` reads as ∂: ``format.d_of``)."""
    for size in itertools.count(1):
        for combo in itertools.product(string.ascii_lowercase, repeat=size):
            name = "".join(combo)
            if name not in taken and name[0] != "d" and name not in ("g", "n"):  # (g, n: in formulas)
                yield name


def _zero_in(saved: Any) -> bool:
    """Whether a saved tensor (:class:`SavedTensor`) holds a 0."""
    if not isinstance(saved, SavedTensor):
        return False
    with torch.no_grad():
        return bool((saved.tensor == 0).any())


class _Ops:
    """id(node) -> the recorded call that made it (name, its constants, its arguments as text),
    each made when a step first asks (:meth:`get`), from a :class:`~..capture.record.Recorder`'s
    record or a :class:`~..capture.record.NodeCalls`' notes. A call's text reads the names known
    before the pass is walked (*naming* as it is now): a node the pass did not run has none yet."""

    def __init__(self, recorder: Any, naming: _Naming, digits: int):
        self._found: dict[int, Op | None] = {}
        self._made: dict[int, tuple[Any, int, tuple]] = dict(getattr(recorder, "node_ops", None) or {})
        self._calls: dict[int, tuple] = dict(getattr(recorder, "calls", None) or {})  # (NodeCalls)
        self._plain: dict[int, tuple] = dict(getattr(recorder, "made", None) or {})
        self._record = getattr(recorder, "record", None)
        self._by_op = {index: key for key, (_node, index, _) in self._made.items()}
        self._node_names = dict(naming.node_names)
        self._names, self._by_output, self._digits = naming.names, naming.by_output, digits

    def get(self, node: Any) -> Op | None:
        key = id(node)
        if key not in self._found:
            entry, call = self._made.get(key), self._calls.get(key)
            if entry is not None:
                self._found[key] = self._op(entry[1], entry[2])
            elif call is not None and call[1] and call[0] == sequence_number(node):
                self._found[key] = _op_text(call[1], call[2], call[3], self._noted)
            else:
                self._found[key] = None
        return self._found[key]

    def _named(self, node: int, index: int) -> str | None:
        return self._by_output.get((node, index)) or self._node_names.get(node)

    def _op(self, index: int, originals: tuple) -> Op:
        from ..capture.record import Ref, RootRef

        record, names, digits = self._record, self._names, self._digits
        op = record.ops[index]

        def text(item: Any, position: int) -> str:
            if isinstance(item, RootRef):
                return names.get(id(record.roots[item.root].tensor), "leaf")
            if isinstance(item, Ref):
                found = self._named(self._by_op.get(item.op, -1), item.index)
                return found or _comparison(record, item.op, names, digits) or "…"
            weak = originals[position] if position < len(originals) else None
            original = weak() if weak is not None else None
            if original is not None and id(original) in names:
                return names[id(original)]
            return _const(item, digits)

        return _op_text(op.name, op.spec, op.inputs, text)

    def _noted(self, item: Any, position: int, named: bool = True) -> str:
        """A :class:`~..capture.record.NodeCalls` argument as text, as :meth:`_op`'s ``text``
        writes the record's (*named* False: a comparison's side, no constant named)."""
        from ..capture.record import CONST, LEAF, MADE, NODE, noted

        which = noted(item)
        if which == LEAF:
            return self._names.get(item[1], "leaf")
        if which == NODE:
            return (self._named(item[1], item[2]) if item[1] != -1 else None) or "…"
        if which == MADE:
            made = self._plain.get(item[1])
            found = self._named(made[1], made[2]) if made is not None and made[1] != -1 else None
            return found or (self._noted_comparison(made, 0) if made else None) or "…"
        if which == CONST:
            _, copy, shape, weak = item
            original = weak() if weak is not None else None
            if named and original is not None and id(original) in self._names:
                return self._names[id(original)]
            if copy is not None:
                return _const(copy, self._digits)
            return "const[" + "×".join(str(n) for n in shape) + "]"
        return _const(item, self._digits)

    def _noted_comparison(self, made: tuple, depth: int) -> str | None:
        """:func:`_comparison` of a noted call (*made*: ``NodeCalls.made``'s entry)."""
        from ..capture.record import MADE, NODE, noted

        name, items = made[3], made[4]
        sign = COMPARISONS.get(name.strip("_"))
        if sign is None or len(items) < 2 or depth > 3:
            return None

        def side(item: Any) -> str:
            if noted(item) == MADE:
                inner = self._plain.get(item[1])
                return (self._noted_comparison(inner, depth + 1) if inner else None) or "…"
            return "…" if noted(item) == NODE else self._noted(item, 0, named=False)

        return f"{side(items[0])} {sign} {side(items[1])}"


def _op_text(name: str, spec: Any, inputs: Sequence[Any], text: Any) -> Op:
    """:class:`Op` of a call: *inputs* (its arguments, flattened, with *spec*) written by *text*."""
    from ..capture.record import CONST, Ref, RootRef, noted, unflatten

    def followed(v: Any) -> bool:  # (a tensor the record follows: a name, not a constant)
        return isinstance(v, (Ref, RootRef)) or noted(v) not in (None, CONST)

    constants = [
        text(v, i)
        for i, v in enumerate(inputs)
        if not followed(v)
        and (noted(v) == CONST or (isinstance(v, (int, float, complex, torch.Tensor)) and not isinstance(v, bool)))
    ]  # fmt: skip
    try:
        args, kwargs = unflatten([text(v, i) for i, v in enumerate(inputs)], spec)
        shown = [_arg(a) for a in args] + [f"{k}={_arg(v)}" for k, v in kwargs.items() if v != "None"]
    except Exception:
        shown = []
    refs = {text(v, i) for i, v in enumerate(inputs) if followed(v)}
    return Op(name, constants, shown, refs)


def _arg(value: Any) -> str:
    """An argument as text: names and numbers as they are, lists as [a, b], tuples as (a, b) (no
    quotes)."""
    if isinstance(value, tuple):
        return "(" + ", ".join(_arg(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_arg(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class Op:
    name: str
    constants: list[str]  # the call's constant arguments, as text
    shown: list[str]
    refs: set[str]


def _const(value: Any, digits: int, names: dict[int, str] | None = None) -> str:
    if isinstance(value, SavedTensor):
        name = _name_of(value.tensor, names)
        if name is not None:
            return name
        value = value.copy if value.copy is not None else value.tensor
    if isinstance(value, torch.Tensor):
        name = _name_of(value, names)
        if name is not None:
            return name
        if value.numel() <= 4:
            return fmt.values(value, digits, 4)  # (a tensor's values: as the table writes them)
        return "const[" + "×".join(str(n) for n in value.shape) + "]"  # (not torch.tensor(2, 3))
    if isinstance(value, bool | int | float | complex):
        return fmt.number(value, max(digits, CONST_DIGITS))
    if value is None:
        return "None"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, slice):  # x[:, 0], x[1:4]
        parts = ["" if v is None else _const(v, digits) for v in (value.start, value.stop, value.step)]
        return ":".join(parts[:2] if value.step is None else parts)
    if value is Ellipsis:
        return "..."
    return "const"


def _fields(
    kind: str,
    operands: list,
    saved: dict[str, Any],
    op: Op | None,
    out: str,
    digits: int,
    names: dict[int, str],
) -> _Fields:
    """Text for the template fields: operands a, b, c (constants from what the node saved or
    the record), the exponent, alpha, dim, target ..."""
    fields = _Fields(o=out)
    constants = list(op.constants) if op else []  # as text: the cell's names where it has them
    attrs = ("self", "mat1", "mat2") if kind == "AddmmBackward0" else ("self", "other", "mat2")
    if kind in ("MmBackward0", "BmmBackward0", "MvBackward0"):
        attrs = ("self", "mat2" if kind != "MvBackward0" else "vec", "")
    for letter, operand, attr in zip("abc", [*operands, None, None, None], attrs, strict=False):
        if operand is not None:
            fields[letter] = operand
            continue
        value = saved.get(attr)
        if value is not None:
            fields[letter] = _const(value, digits, names)
        elif constants:
            fields[letter] = constants.pop(0)
        elif letter in "ab" and kind.startswith(("Add", "Sub", "Rsub", "Mul", "Div")):
            fields[letter] = "const"
    exponent = saved.get("exponent")
    if exponent is not None and not isinstance(exponent, tuple):
        value = exponent
        if isinstance(exponent, SavedTensor):
            copy = exponent.copy
            value = copy.item() if copy is not None and copy.numel() == 1 else None
        fields["exponent"] = _const(exponent, digits)
        fields["power"] = _power(fields.get("a", "x"), value)
    fields["alpha"] = _const(saved.get("alpha", 1), digits)
    if "dim" in saved:
        dim = saved["dim"]
        fields["dim"] = _const(dim, digits) if not isinstance(dim, tuple) else ", ".join(str(d) for d in dim)
    if kind == "PowBackward2" and "self" in saved:
        fields["base"] = _const(saved["self"], digits)
    if "target" in saved:
        fields["target"] = _const(saved["target"], digits, names) if names else "t"
    if "self_sym_numel" in saved:
        fields["n"] = str(saved["self_sym_numel"])
    if "correction" in saved:  # var/std: None is the default, Bessel's 1
        fields["correction"] = "1" if saved["correction"] is None else _const(saved["correction"], digits)
    return fields


COMPARISONS = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "eq": "==", "ne": "!="}


def _targets(node: int, name: str, by_output: dict[tuple[int, int], str]) -> str:
    """The left side of a node's forward line: ``p, q`` for ``p, q = split(x, 2)`` (each output the
    cell named, ``_`` for one it did not), else the node's one name."""
    indices = sorted(k for n, k in by_output if n == node)
    if not indices or indices == [0]:
        return name
    return ", ".join(by_output.get((node, k), "_") for k in range(indices[-1] + 1))


def _comparison(record: Any, index: int, names: dict[int, str], digits: int, depth: int = 0) -> str | None:
    """A recorded comparison that made no graph node (``x > 0``: a mask, no grad) as the cell wrote
    it, for ``where(x > 0, a, b)``; None for anything else."""
    from ..capture.record import Ref, RootRef

    op = record.ops[index]
    sign = COMPARISONS.get(op.name.strip("_"))
    if sign is None or len(op.inputs) < 2 or depth > 3:
        return None

    def side(item: Any) -> str:
        if isinstance(item, RootRef):
            return names.get(id(record.roots[item.root].tensor), "leaf")
        if isinstance(item, Ref):
            return _comparison(record, item.op, names, digits, depth + 1) or "…"
        return _const(item, digits)

    return f"{side(op.inputs[0])} {sign} {side(op.inputs[1])}"


def _forward(kind: str, fields: _Fields, op: Op | None, operands: list) -> str:
    """The forward expression a node undoes: the call the cell made where the record has it
    and its tensors are the node's inputs (``softmax(z, dim=-1)``), else the node's template."""
    template = FORWARD.get(kind)
    names = {o for o in operands if o is not None}
    if op is not None and op.name == "__getitem__" and len(op.shown) == 2 and op.refs <= names and op.refs:
        index = op.shown[1]
        return f"{op.shown[0]}[{index[1:-1] if index.startswith('(') else index}]"  # x[:, 0], not a call
    if op is not None and op.shown and op.name not in BINARY_OPS and op.refs <= names and op.refs:
        operator = OPERATORS.get(op.name)  # (-x and W @ v as the cell most likely wrote them)
        if operator is not None and operator.count("{}") == len(op.shown):
            return operator.format(*op.shown)
        if op.name.startswith(".") and len(op.shown) == 1:  # a property: W.T, W.mT
            return f"{op.shown[0]}{op.name}"
        shown = [a for a in op.shown if a not in _DEFAULTS]  # (F.relu passes inplace=False itself)
        return f"{op.name}({', '.join(shown)})"
    if kind == "WhereBackward0":  # the condition is no operand of the node (no grad): from the record
        cond = op.shown[0] if op is not None and op.name == "where" and op.shown else "condition"
        a, b = (o if o is not None else "const" for o in [*operands, None, None][:2])
        return f"where({cond}, {a}, {b})"
    if template is None:
        args = ", ".join(o if o is not None else "const" for o in operands)
        base = kind
        for suffix in ("Backward0", "Backward1", "Backward2"):
            base = base.removesuffix(suffix)
        if base == kind and kind.endswith("Backward"):  # a Python autograd.Function (Exp: ExpBackward)
            return f"{kind.removesuffix('Backward')}.apply({args})"
        return f"{base.lower()}({args})"
    if kind in ("MulBackward0", "MulBackward1") and len(operands) > 1 and operands[1] is None:
        fields = _Fields(
            fields, a=fields.get("b", "const"), b=fields.get("a", "…")
        )  # a constant factor first: 3 · a
    return template.format_map(fields)


def _sum_text(parts: list[str]) -> str:
    """Numbers added up as a learner writes them: ``5.761 - 0.2794``, not ``5.761 + -0.2794``
    (a tensor's brackets stay: ``[1, 2] + [-1, 3]``)."""
    text = parts[0] if parts else ""
    for part in parts[1:]:
        text += f" - {part[1:]}" if part.startswith("-") and not part.startswith("-[") else f" + {part}"
    return text
