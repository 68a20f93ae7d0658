"""From the ran cell to first derivatives: which tensor is the output, which
leaves it depends on, and their gradients (without doubling a backward()
the cell already made).

:class:`Recorder` watches the cell while it runs; :func:`differentiate`
reads the namespace and the graph afterwards.
"""

from __future__ import annotations

import ast
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from . import format as fmt
from .hints import with_hint
from .messages import t
from .result import GradResult, TensorRow
from .spec import GradError


class Recorder(TorchFunctionMode):
    """Watches the cell's torch calls: backward() calls, non-leaf ``.grad`` reads,
    and (with ``retain``) keeps the grad of every non-leaf tensor it makes."""

    def __init__(self, retain: bool):
        super().__init__()
        self.retain = retain
        self.backward_targets: list[torch.Tensor] = []
        self.nonleaf_reads: dict[int, torch.Tensor] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.backward or func is torch.autograd.backward:
            target = args[0] if args else kwargs.get("tensors")
            if isinstance(target, (list, tuple)):
                target = target[0] if target else None
            if isinstance(target, torch.Tensor):
                self.backward_targets.append(target)
        elif getattr(func, "__self__", None) is torch.Tensor.grad and args:
            tensor = args[0]
            if isinstance(tensor, torch.Tensor) and not tensor.is_leaf and not tensor.retains_grad:
                self.nonleaf_reads.setdefault(id(tensor), tensor)
        out = func(*args, **kwargs)
        if self.retain:
            _retain(out)
        return out


def _retain(out: Any) -> None:
    if isinstance(out, torch.Tensor):
        if out.requires_grad and not out.is_leaf and not out.retains_grad:
            out.retain_grad()
    elif isinstance(out, (tuple, list)):
        for item in out:
            _retain(item)


@dataclass
class _Graph:
    """What lies behind one tensor: its backward nodes and the leaves they reach."""

    nodes: set[int] = field(default_factory=set)
    leaves: dict[int, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def of(cls, tensor: torch.Tensor) -> _Graph:
        graph = cls()
        if tensor.grad_fn is None:
            if tensor.requires_grad:
                graph.leaves[id(tensor)] = tensor
            return graph
        stack = [tensor.grad_fn]
        while stack:
            fn = stack.pop()
            if id(fn) in graph.nodes:
                continue
            graph.nodes.add(id(fn))
            variable = getattr(fn, "variable", None)
            if isinstance(variable, torch.Tensor):
                graph.leaves[id(variable)] = variable
            stack.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)
        return graph


class _Names:
    """Names of the user's tensors, preferring what the cell assigned."""

    def __init__(self, namespace: dict[str, Any], preferred: list[str]):
        self.by_id: dict[int, str] = {}
        for name in preferred:
            self._add(name, namespace.get(name))
        for name, value in namespace.items():
            if not name.startswith("_") and name not in ("In", "Out"):
                self._add(name, value)

    def _add(self, name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            self.by_id.setdefault(id(value), name)

    def get(self, tensor: torch.Tensor, default: str | None = None) -> str | None:
        return self.by_id.get(id(tensor), default)


def assigned_names(tree: ast.AST) -> list[str]:
    """Names the cell stores to, ordered by their last assignment (nested
    function, class, lambda and comprehension scopes are skipped)."""
    names: list[str] = []

    class Visitor(ast.NodeVisitor):
        def visit_Name(self, node: ast.Name) -> None:
            if isinstance(node.ctx, ast.Store):
                if node.id in names:
                    names.remove(node.id)
                names.append(node.id)

        def _skip(self, node: ast.AST) -> None:
            pass

        visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _skip
        visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _skip

    Visitor().visit(tree)
    return names


def names_assigned(tree: ast.Module | None, ns: dict[str, Any], before: dict[str, int]) -> list[str]:
    """Names the cell assigned, in order. Assignments hidden from the syntax
    tree (``%time y = ...``) are found by what changed in the namespace and
    come first, since their position is unknown."""
    seen = assigned_names(tree) if tree is not None else []
    changed = [n for n, v in ns.items() if before.get(n) != id(v) and not n.startswith("_")]
    return [n for n in changed if n not in seen] + [n for n in seen if n in ns]


def parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def differentiate(
    ns: dict[str, Any],
    wrt_leaves: dict[str, torch.Tensor],
    recorder: Recorder,
    last_value: Any,
    assigned: list[str],
    of: str | None,
    retain_grad: bool,
    create_graph: bool = False,
    keep_graph: bool = False,
) -> tuple[GradResult, list[torch.Tensor | None]]:
    """First derivatives. With *create_graph* they come back with their own
    graph (for higher orders); with *keep_graph* the output's graph is kept
    (for Jacobians and the values the graph saved)."""
    names = _Names(ns, [*wrt_leaves, *assigned])
    graphs: dict[int, _Graph] = {}

    def graph(tensor: torch.Tensor) -> _Graph:
        if id(tensor) not in graphs:
            graphs[id(tensor)] = _Graph.of(tensor)
        return graphs[id(tensor)]

    wrt_ids = {id(tensor) for tensor in wrt_leaves.values()}

    def depends(tensor: torch.Tensor) -> bool:
        if wrt_ids:
            return bool(wrt_ids & graph(tensor).leaves.keys())
        return tensor.grad_fn is not None and any(names.get(v) for v in graph(tensor).leaves.values())

    out_name, output = _find_output(ns, names, recorder, last_value, assigned, of, depends, wrt_leaves)
    notes: list[str] = []

    # the leaves we report: the --wrt ones, or the cell's named leaves
    if wrt_leaves:
        leaves = dict(wrt_leaves)
    else:
        found = {names.get(v): v for v in graph(output).leaves.values() if names.get(v)}
        order = {name: i for i, name in enumerate(assigned)}
        leaves = dict(sorted(found.items(), key=lambda kv: order.get(kv[0], len(order))))

    nodes = graph(output).nodes
    intermediates: dict[str, torch.Tensor] = {}
    if retain_grad:
        for name in assigned:
            tensor = ns.get(name)
            if (
                isinstance(tensor, torch.Tensor)
                and tensor is not output
                and tensor.grad_fn is not None
                and id(tensor.grad_fn) in nodes
                and names.get(tensor) == name
            ):
                intermediates[name] = tensor

    summed = False
    first: list[torch.Tensor | None] = []
    calls = len(recorder.backward_targets)
    if calls:
        grads = {name: leaf.grad for name, leaf in leaves.items()}
        inter_grads = {n: tensor.grad if tensor.retains_grad else None for n, tensor in intermediates.items()}
        if calls == 1:
            notes.append(t("note.backward_once"))
        else:
            notes.append(t("note.backward_many", count=calls))
    else:
        if output.is_complex():
            raise GradError(t("err.complex", out=out_name))
        target = output
        if output.numel() != 1:
            target, summed = output.sum(), True
            notes.append(t("note.summed", out=out_name, count=output.numel()))
        inputs = [*leaves.values(), *intermediates.values()]
        try:
            computed = torch.autograd.grad(
                target,
                inputs,
                allow_unused=True,
                create_graph=create_graph,
                retain_graph=keep_graph or create_graph,
            )
        except RuntimeError as e:
            message = with_hint(t("err.backward_failed", out=out_name, error=e), e)
            raise GradError(message) from None
        first = list(computed[: len(leaves)])
        computed = tuple(None if g is None else g.detach() for g in computed)
        grads = dict(zip(leaves, computed[: len(leaves)], strict=True))
        inter_grads = dict(zip(intermediates, computed[len(leaves) :], strict=True))
        for name, leaf in leaves.items():
            if leaf.grad is not None and id(leaf) not in wrt_ids:
                old = fmt.values(leaf.grad)
                notes.append(t("note.replaced", name=name, old=old))
            leaf.grad = grads[name]
        for name, tensor in intermediates.items():
            if tensor.retains_grad:
                tensor.grad = inter_grads[name]

    for name, g in grads.items():
        if g is None:
            notes.append(t("note.unused", out=out_name, name=name))
    for name, leaf in leaves.items():
        if leaf.device.type != "meta" and not bool(torch.isfinite(leaf.detach()).all()):
            notes.append(t("note.non_finite", name=name))

    rows = [
        TensorRow.of(name, "input" if wrt_leaves else "leaf", tensor, grads[name])
        for name, tensor in leaves.items()
    ]
    rows += [
        TensorRow.of(name, "intermediate", tensor, inter_grads[name])
        for name, tensor in intermediates.items()
    ]
    if all(output is not tensor for tensor in leaves.values()):
        own = output.grad if output.is_leaf or output.retains_grad else None
        rows.append(TensorRow.of(out_name, "output", output, own))
    notes += _nonleaf_notes(recorder, names, rows, leaves)

    result = GradResult(
        output=output,
        output_name=out_name,
        leaves=leaves,
        grads=grads,
        rows=rows,
        summed=summed,
        backward_calls=calls,
        notes=notes,
    )
    return result, first


def _nonleaf_notes(recorder: Recorder, names: _Names, rows: list[TensorRow], leaves: dict) -> list[str]:
    notes = []
    leaf_names = ", ".join(leaves) or t("word.the_leaves")
    read: set[str] = set()
    for tensor in recorder.nonleaf_reads.values():
        name = names.get(tensor, t("word.a_tensor"))
        read.add(name)
        fn = type(tensor.grad_fn).__name__ if tensor.grad_fn is not None else t("word.an_operation")
        notes.append(t("note.nonleaf_read", name=name, fn=fn, leaves=leaf_names))
    quiet = [r.name for r in rows if not r.is_leaf and r.grad is None and r.name not in read]
    if quiet:
        notes.append(t("note.nonleaf_quiet", names=", ".join(quiet)))
    return notes


def _find_output(
    ns: dict[str, Any],
    names: _Names,
    recorder: Recorder,
    last_value: Any,
    assigned: list[str],
    of: str | None,
    depends,
    wrt_leaves: dict[str, torch.Tensor],
) -> tuple[str, torch.Tensor]:
    wrt_text = ", ".join(wrt_leaves)

    def no_dependence(name: str, value: torch.Tensor) -> GradError:
        if value.is_leaf and value.requires_grad:
            return GradError(t("err.leaf_only", name=name))
        if wrt_leaves:
            return GradError(t("err.no_path", name=name, wrt=wrt_text))
        return GradError(t("err.no_leaf", name=name))

    def is_wrt_leaf(value: torch.Tensor) -> bool:
        return any(value is leaf for leaf in wrt_leaves.values())

    if of is not None:
        if of not in ns:
            raise GradError(t("err.of_missing", name=of))
        value = ns[of]
        if not isinstance(value, torch.Tensor):
            raise GradError(t("err.of_not_tensor", name=of, kind=type(value).__name__))
        if not (depends(value) or is_wrt_leaf(value)):
            raise no_dependence(of, value)
        return of, value

    for target in reversed(recorder.backward_targets):
        return names.get(target, "out"), target

    tensors: list[tuple[str, torch.Tensor]] = []
    if isinstance(last_value, torch.Tensor):
        tensors.append((names.get(last_value, "out"), last_value))
    for name in reversed(assigned):
        value = ns.get(name)
        if isinstance(value, torch.Tensor) and not (name in wrt_leaves and is_wrt_leaf(value)):
            tensors.append((name, value))  # (y = x makes y the leaf x itself: dy/dx = 1)
    for name, value in tensors:
        if depends(value):
            return name, value
    if tensors:
        raise no_dependence(*tensors[0])
    if last_value is not None:
        what, value = t("word.last_value"), last_value
    elif assigned and assigned[-1] in ns:
        what, value = assigned[-1], ns[assigned[-1]]
    else:
        what, value = None, None
    if what is not None and isinstance(value, (numbers.Number, list, tuple, dict)):
        message = "err.not_tensor_number" if isinstance(value, numbers.Number) else "err.not_tensor"
        raise GradError(t(message, what=what, kind=type(value).__name__))
    if wrt_leaves:
        raise GradError(t("err.no_output_from", wrt=wrt_text))
    raise GradError(t("err.no_output"))
