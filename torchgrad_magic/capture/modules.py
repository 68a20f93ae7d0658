"""Which ``nn.Module`` call made each backward node (``--graph`` on a model; ``--steps``).

:class:`ModuleTracker` records every module forward call while a cell runs, with PyTorch's public
global hooks (``register_module_forward_pre_hook`` / ``register_module_forward_hook``): the module,
the autograd nodes of its tensor inputs and outputs, who called it, in what order. The hooks return
None (the user's outputs are untouched) and are removed when the ``with`` block ends, also on an
exception.

Afterwards :func:`owner_of_nodes` tells, for each backward node made inside a module call, the
innermost call it belongs to, and :func:`fold_graph` folds a :class:`.graph.Graph` into one box
per module call (:func:`.graph.fold`). The order matters, because an autograd node's Python object,
and so its ``id()``, only lives while something holds it::

    with ModuleTracker() as tracker:
        ...  # the cell
    owners = owner_of_nodes(tracker.calls, module_names(namespace))  # holds the nodes it names
    built = graph.build(...)  # Graph.sources: graph node id -> id(autograd node)
    folded = fold_graph(built, owners, depth)  # depth None/1: children of the model; "full": no fold
    tracker.clear()
    del owners  # the model's autograd nodes are held up to here only

A call key names one call: the module's qualified name (``net.0``,
``model.encoder.layers.3.self_attn``); the module's second, third, ... call in the cell gets
``#2``, ``#3`` (``cell#2``), so that a module called in a loop folds into one box per call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.modules import module as _nn_module

from .internals import forget_kwargs_flag

MAX_CALLS = 20_000  # calls kept; past it the oldest half is dropped (long training loops)
MAX_ITEMS = 256  # tensors looked at in one call's arguments or output
MAX_NESTING = 4  # containers inside containers looked into
CALL_MARK = "#"  # "cell#2": the second call of cell


@dataclass(eq=False)
class ModuleCall:
    """One forward call of a module."""

    order: int  # when it started (0, 1, ...): outer calls before the calls they make
    module: torch.nn.Module  # held until ModuleTracker.clear(): a module made in the cell may be gone by then
    kind: str  # the module's type name: Linear, TransformerEncoderLayer
    parent: ModuleCall | None  # the call this one was made from
    inputs: list[Any] = field(default_factory=list)  # grad_fn of tensor arguments
    leaves: list[torch.Tensor] = field(default_factory=list)  # tensor arguments that are leaves with grad
    outputs: list[Any] = field(default_factory=list)  # grad_fn of tensor outputs (flattened)
    children: int = 0  # calls made from this one


class ModuleTracker:
    """Records every ``nn.Module`` forward call made (on this thread) inside the ``with`` block.

    ``calls`` lists the finished calls whose output is part of an autograd graph, in the order
    they finished (a call's inner calls come before it). They hold autograd nodes, and so the
    graphs: :meth:`clear` when done."""

    def __init__(self, limit: int = MAX_CALLS) -> None:
        self.calls: list[ModuleCall] = []
        self.started = 0  # calls seen
        self.dropped = 0  # calls dropped past *limit*
        self._limit = limit
        self._stack: list[ModuleCall] = []
        self._handles: list[Any] = []
        self._thread: int | None = None

    def __enter__(self) -> ModuleTracker:
        self._thread = threading.get_ident()
        pre = _nn_module.register_module_forward_pre_hook(self._pre)
        try:
            post = _nn_module.register_module_forward_hook(self._post, with_kwargs=True, always_call=True)
        except BaseException:
            pre.remove()
            raise
        self._handles = [pre, post]
        return self

    def __exit__(self, *exc: object) -> None:
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()
            forget_kwargs_flag(handle.id)
        self._stack.clear()

    def clear(self) -> None:
        """Drop every record (and with them the autograd nodes they hold)."""
        self.calls = []
        self._stack.clear()

    # ---- the hooks: they never raise and always return None ----------------------
    def _pre(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if threading.get_ident() != self._thread:
            return None
        try:
            parent = self._stack[-1] if self._stack else None
            call = ModuleCall(self.started, module, type(module).__name__, parent)
            self.started += 1
            _collect(args, call.inputs, call.leaves)
            if parent is not None:
                parent.children += 1
            self._stack.append(call)
        except Exception:  # pragma: no cover - a record lost, the user's call goes on
            pass
        return None

    def _post(self, module: torch.nn.Module, args: tuple[Any, ...], *rest: Any) -> None:
        # rest: (kwargs, output) after a forward; (output,) when the forward raised (always_call)
        if threading.get_ident() != self._thread or not self._stack:
            return None
        try:
            call = self._stack[-1]
            if call.module is not module:  # its pre-hook never ran (another hook raised first)
                return None
            self._stack.pop()
            if len(rest) != 2:
                return None
            kwargs, output = rest
            if kwargs:
                _collect(kwargs, call.inputs, call.leaves)
            _collect(output, call.outputs, None)
            if call.outputs:
                self.calls.append(call)
                if len(self.calls) > self._limit:
                    drop = len(self.calls) // 2
                    del self.calls[:drop]
                    self.dropped += drop
        except Exception:  # pragma: no cover
            pass
        return None


def _collect(value: Any, nodes: list[Any], leaves: list[torch.Tensor] | None) -> None:
    """The grad_fn of every tensor in *value* (tensors, tuples, lists, dicts, nested a little) into
    *nodes*; leaf tensors that require grad into *leaves*."""
    todo: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while todo and seen < MAX_ITEMS:
        item, depth = todo.pop()
        seen += 1
        if isinstance(item, torch.Tensor):
            fn = item.grad_fn
            if fn is not None:
                nodes.append(fn)
            elif leaves is not None and item.requires_grad:
                leaves.append(item)
        elif depth < MAX_NESTING:
            if isinstance(item, tuple | list):
                todo.extend((v, depth + 1) for v in item)
            elif isinstance(item, dict):
                todo.extend((v, depth + 1) for v in item.values())


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------
