"""The names the cell wrote, after it ran: every tensor it bound to a name is a row, and an
output the cell reduced itself (``Y.sum().backward()``) is reported as the cell wrote it.

Built after the cell, from the namespace and the cell's syntax tree: nothing here runs while the
cell runs, nothing reads a non-leaf's ``.grad`` (that read warns, and the warning would be ours).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from typing import Any

import torch

from ..capture.observe import kept_grad
from ..capture.paths import value_at
from ..capture.syntax import loop_targets, nodes
from .rows import TensorRow

REDUCTIONS = {"SumBackward0": "sum", "MeanBackward0": "mean"}  # whole-tensor sum and mean only


@dataclass(frozen=True)
class Reduced:
    """``Y.sum()`` as the cell wrote it: *name* and *tensor* are Y, *written* the cell's text,
    *result* the reduced tensor (what was differentiated), *kind* ``"sum"`` or ``"mean"``."""

    name: str
    tensor: torch.Tensor
    written: str
    result: torch.Tensor
    kind: str


@dataclass(frozen=True)
class Written:
    """What the cell differentiates or shows, as it wrote it: *calls*, the receiver of each
    ``.backward()`` and the first argument of each ``autograd.grad(...)``; *last*, its last
    expression."""

    calls: tuple[str, ...] = ()
    last: str | None = None
    loops: frozenset[str] = frozenset()  # the names a for loop binds (they name a tensor last)

    @property
    def texts(self) -> tuple[str, ...]:
        return (*self.calls, *((self.last,) if self.last else ()))

    @property
    def only_call(self) -> str | None:
        """The one expression the cell differentiates, when it has one call site (a name for an
        unnamed output: ``(Y * 2).sum()``, not a made-up ``out``)."""
        return self.calls[0] if len(self.calls) == 1 else None


@functools.lru_cache(maxsize=32)  # (per tree: one per cell text, see capture/syntax.parse)
def differentiated_texts(tree: ast.Module | None, code: str) -> Written:
    """What the cell differentiates or shows, as it wrote it (:class:`Written`)."""
    if tree is None:
        return Written()
    found: list[ast.expr] = []
    for node in nodes(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr == "backward":
            found.append(node.func.value)
        elif node.func.attr == "grad" and node.args:
            found.append(node.args[0])
    last = tree.body[-1].value if tree.body and isinstance(tree.body[-1], ast.Expr) else None

    def text(expr: ast.expr) -> str:
        return " ".join((ast.get_source_segment(code, expr) or ast.unparse(expr)).split())

    calls = tuple(dict.fromkeys(text(expr) for expr in found))
    return Written(calls, text(last) if last is not None else None, loop_targets(tree))


def read_into(tree: ast.Module | None, name: str) -> set[str]:
    """The names read on the right of the cell's assignments to *name* (``y = x.item() ** 2``:
    ``x``); every name where the tree is not known."""
    if tree is None:
        return {"*"}
    found: set[str] = set()
    for node in nodes(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found.update(n.id for n in ast.walk(node.value) if isinstance(n, ast.Name))
    return found


def reduction_of(
    output: torch.Tensor, ns: dict[str, Any], assigned: list[str], texts: tuple[str, ...]
) -> Reduced | None:
    """*output* as ``Y.sum()``/``torch.sum(Y)``/``Y.mean()`` of a tensor Y the cell named, or None."""
    fn = output.grad_fn
    kind = REDUCTIONS.get(type(fn).__name__) if fn is not None else None
    if fn is None or kind is None:
        return None
    inputs = [(f, k) for f, k in fn.next_functions if f is not None]
    if len(inputs) != 1:
        return None
    source, index = inputs[0]
    variable = getattr(source, "variable", None)  # AccumulateGrad: the reduced tensor is a leaf
    candidates = [*reversed(assigned), *(n for n in ns if n not in assigned)]
    for name in candidates:
        value = ns.get(name)
        if name.startswith("_") or not isinstance(value, torch.Tensor):
            continue
        if value is variable or (value.grad_fn is source and value.output_nr == index):
            written = next((s for s in texts if _reduces(s, name, kind)), f"{name}.{kind}()")
            return Reduced(name, value, written, output, kind)
    return None


def _reduces(text: str, name: str, kind: str) -> bool:
    """Whether *text* is ``name.kind()`` or ``torch.kind(name)`` (no other arguments)."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return False
    if not isinstance(node, ast.Call) or node.keywords or not isinstance(node.func, ast.Attribute):
        return False
    if node.func.attr != kind:
        return False
    if not node.args:
        return isinstance(node.func.value, ast.Name) and node.func.value.id == name
    base = node.func.value
    return (
        len(node.args) == 1
        and isinstance(base, ast.Name)
        and base.id == "torch"
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id == name
    )


def named_rows(
    ns: dict[str, Any],
    assigned: list[str],
    shown: dict[int, str],
    grads: dict[str, torch.Tensor | None],
) -> list[TensorRow]:
    """A row for each tensor the cell bound to a name and the table does not have yet, in the
    order the cell assigned them. *shown*: id -> name of the tensors already in the report (leaves,
    the output, a model's parameters): another name for one of them is an alias row. *grads*: the
    grads %%grad caught for named intermediates (``--retain-grad``); else .grad as PyTorch has it."""
    rows = []
    names_in_rows = set(shown.values())
    for name in assigned:
        value = value_at(ns, name)  # (a name, or a path: hs[0])
        if name in names_in_rows or name.startswith("_") or not isinstance(value, torch.Tensor):
            continue
        if id(value) in shown:
            rows.append(TensorRow.of(name, "alias", value, kept_grad(value), alias=shown[id(value)]))
            continue
        grad = grads[name] if name in grads else kept_grad(value)
        role = (
            "intermediate" if value.grad_fn is not None else ("leaf" if value.requires_grad else "constant")
        )
        rows.append(TensorRow.of(name, role, value, grad))
        shown = {**shown, id(value): name}
    return rows
