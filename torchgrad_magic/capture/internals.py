"""Every private PyTorch touch of %%grad, each in one small function with a test in
``tests/test_internals.py`` that fails loudly when a PyTorch release changes it.

Public APIs come first everywhere else; what is here has no public equivalent:

- :func:`engine_slot`: where the autograd engine that every ``backward()``/``autograd.grad()``
  call goes through is kept (the observer stands in front of it while the cell runs);
- :func:`is_transformed`: a tensor inside a ``torch.func`` transform (its backward calls are the
  transform's, not the cell's); :func:`outside_transforms`, its cheap form for a loop's steps;
- :func:`accumulate_grad_class`: the class of a leaf's backward node (found with public calls);
- :func:`nodes_behind`: THE walk over a backward graph (``grad_fn.next_functions``) that every
  stage uses to see which nodes (and leaves) are behind an output;
- :func:`hook_dict`: the dict that holds a tensor's ``register_hook`` functions (the report names
  the tensors whose hooks changed the grads shown);
- :func:`sequence_number`, :func:`earliest_sequence_number`: the order in which autograd nodes
  were made (the cell's code order);
- :func:`has_unpack_hook`: whether a node's saved tensors have an unpack hook (read without
  unpacking: unpacking would run it);
- :func:`input_shapes`: what each input of a backward node expects (shape, dtype, device), so that
  %%grad's own pass (``derive/own_pass.py``) fits a node's grads as the engine does;
- :func:`forget_kwargs_flag`: a flag PyTorch leaves behind when a global module hook is removed;
- :func:`copy_all`: one batched copy of many tensors (a loop's leaves and grads at each call).

(``Tensor._version`` is read in several places: it is documented in PyTorch's notes on in-place
operations and checked by autograd itself; IPython's internals are in ``capture/runner.py``.)
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Iterable
from typing import Any

import torch
from torch.nn.modules import module as _nn_module


def engine_slot() -> tuple[Any, str]:
    """Where PyTorch keeps the autograd engine that every backward()/grad() call uses:
    ``torch.autograd.variable.Variable._execution_engine``."""
    from torch.autograd.variable import Variable

    return Variable, "_execution_engine"


_WRAPPED = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
# the batched grads of torch.autograd.grad(..., is_grads_batched=True) (torch's older vmap)
_LEGACY = getattr(getattr(torch._C, "_functorch", None), "is_legacy_batchedtensor", None)


def is_transformed(tensor: Any) -> bool:
    """True for tensors inside a ``torch.func`` transform or torch's older vmap (their backward
    calls are the transform's business, not the cell's)."""
    if not isinstance(tensor, torch.Tensor):
        return False
    return bool((_WRAPPED is not None and _WRAPPED(tensor)) or (_LEGACY is not None and _LEGACY(tensor)))


_TRANSFORMS_ACTIVE = getattr(torch._C, "_are_functorch_transforms_active", None)


def outside_transforms(outputs: tuple) -> bool:
    """Whether no ``torch.func`` transform is active and none of *outputs* is a transform's tensor
    (one that escaped a transform that has returned, or batched by torch's older vmap); False also
    for a non-tensor: a loop step's cheaper form of :func:`is_transformed` (where it says False,
    the caller checks each output)."""
    try:
        if _TRANSFORMS_ACTIVE is None or _TRANSFORMS_ACTIVE() or _WRAPPED is None or _LEGACY is None:
            return False
        for output in outputs:
            if _WRAPPED(output) or _LEGACY(output):
                return False
    except TypeError:  # (not a tensor)
        return False
    return True


_ACCUMULATE: list[type] = []


def accumulate_grad_class() -> type:
    """The class of the backward node that writes a leaf's ``.grad`` (``AccumulateGrad``), found
    with public calls once: the node behind a view of a fresh leaf."""
    if not _ACCUMULATE:
        leaf = torch.zeros((), requires_grad=True)
        with torch.enable_grad():  # (asked first under no_grad, it must not remember "no node")
            node = leaf.view_as(leaf).grad_fn
        assert node is not None
        _ACCUMULATE.append(type(node.next_functions[0][0]))
    return _ACCUMULATE[0]


def nodes_behind(roots: Any, limit: int | None = None) -> tuple[dict[int, Any], bool]:
    """id -> node for every backward node behind *roots* (nodes, or tensors: their ``grad_fn``),
    depth first; the nodes are held, so their ids stay theirs while the dict lives (before torch
    2.5, about, a node's Python object died once unreferenced, and another could get its id). With
    *limit*, the walk stops after that many nodes: then the second value is True (cut short)."""
    stack: list[Any] = [r.grad_fn if isinstance(r, torch.Tensor) else r for r in roots]
    stack = [node for node in stack if node is not None]
    seen: dict[int, Any] = {}
    pop, push = stack.pop, stack.append
    while stack:  # (runs at every backward() of a training loop: kept tight)
        node = pop()
        key = id(node)
        if key in seen:
            continue
        if limit is not None and len(seen) >= limit:
            return seen, True
        seen[key] = node
        for nxt, _ in node.next_functions:
            if nxt is not None and id(nxt) not in seen:
                push(nxt)
    return seen, False


def hook_dict(tensor: torch.Tensor) -> dict | None:
    """The dict holding *tensor*'s ``register_hook`` functions, which PyTorch reads each time a
    pass reaches the tensor (None, or empty, when it has none)."""
    return tensor._backward_hooks


def has_post_accumulate_hooks(tensor: torch.Tensor) -> bool:
    """Whether a leaf has ``register_post_accumulate_grad_hook`` functions: they run after the
    engine writes ``.grad`` and may take it away (the optimizer in backward sets it to None)."""
    return bool(getattr(tensor, "_post_accumulate_grad_hooks", None))


def sequence_number(node: Any) -> int:
    """The order in which autograd made *node* (earlier nodes have smaller numbers)."""
    return node._sequence_nr()


_SEQUENCE_NR = operator.methodcaller("_sequence_nr")


def earliest_sequence_number(nodes: Iterable[Any]) -> int:
    """The smallest :func:`sequence_number` of *nodes* (a big graph's, without a Python loop);
    a very large number when there are none."""
    return min(map(_SEQUENCE_NR, nodes), default=sys.maxsize)


def next_sequence_number() -> int:
    """The sequence number the next backward node made in this thread will have (or more): nodes
    with a smaller one were made before now. -1 where it cannot be told."""
    with torch.enable_grad():
        node = torch.zeros((), requires_grad=True).view(()).grad_fn
    return sequence_number(node) + 1 if node is not None else -1


_RAW_SAVED: dict[type, tuple[str, ...]] = {}


def has_unpack_hook(node: Any) -> bool:
    """Whether a tensor *node* saved has an unpack hook (``saved_tensors_hooks``, a non-reentrant
    ``checkpoint``): unpacking it runs the user's code. Read without unpacking anything, from the
    node's ``_raw_saved_*`` SavedTensor objects."""
    attrs = _RAW_SAVED.get(type(node))
    if attrs is None:
        attrs = _RAW_SAVED[type(node)] = tuple(a for a in dir(node) if a.startswith("_raw_saved_"))
    for attr in attrs:
        try:
            saved = getattr(node, attr)
        except Exception:  # (freed by a backward() without retain_graph: nothing left to unpack)
            continue
        for item in saved if isinstance(saved, (list, tuple)) else (saved,):
            if getattr(item, "unpack_hook", None) is not None:
                return True
    return False


def input_shapes(node: Any) -> tuple[tuple[tuple[int, ...], torch.dtype, torch.device], ...]:
    """(shape, dtype, device) of each input of *node* (one per output of the forward op): what the
    engine fits a grad sent to it to (summed to the shape, cast to the dtype)."""
    return tuple((tuple(m.shape), m.dtype, m.device) for m in node._input_metadata)


def forget_kwargs_flag(hook_id: int) -> None:
    """PyTorch (2.1 to 2.13 at least) leaves a global forward hook's ``with_kwargs`` flag behind
    when its handle is removed: ``torch.nn.modules.module._has_any_global_hook()`` then stays
    true, and every later ``torch.compile(module)`` call warns about global hooks. Drop it."""
    flags = getattr(_nn_module, "_global_forward_hooks_with_kwargs", None)
    if isinstance(flags, dict) and hook_id not in getattr(_nn_module, "_global_forward_hooks", {}):
        flags.pop(hook_id, None)


_FOREACH_COPY = getattr(torch, "_foreach_copy_", None)
_SET_GRAD_ENABLED = torch._C._set_grad_enabled


def copy_all(destinations: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """Copy each of *sources* into the tensor of the same place in *destinations* (same shapes
    and dtypes), in one batched op with grad mode off: a third of what ``clone()`` per tensor
    costs in a loop, where most of a copy's time is its dispatch. (``torch.no_grad()`` does the
    same as the two ``_set_grad_enabled`` calls, at twice their cost; the sources may be leaves
    that require grad.) Per tensor where the batched op is missing or refuses."""
    enabled = torch.is_grad_enabled()
    try:
        _SET_GRAD_ENABLED(False)  # (inside the try: a KeyboardInterrupt here leaves it as it was)
        if _FOREACH_COPY is not None:
            try:
                _FOREACH_COPY(destinations, sources)
                return
            except (RuntimeError, TypeError):
                pass
        for destination, source in zip(destinations, sources, strict=True):
            destination.copy_(source)
    finally:
        _SET_GRAD_ENABLED(enabled)


_FOREACH_NORM = getattr(torch, "_foreach_norm", None)


def norms(tensors: list[torch.Tensor], order: float, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """``torch.linalg.vector_norm(t, order, dtype=dtype)`` of each of *tensors* (0-d tensors), in
    one batched call: a model's few hundred parameters cost one call, not one each (the call is
    ``torch._foreach_norm``; one call per tensor where it is missing or refuses)."""
    if _FOREACH_NORM is not None:
        try:
            return list(_FOREACH_NORM(tensors, order, dtype=dtype))
        except (RuntimeError, TypeError):
            pass
    return [torch.linalg.vector_norm(t, order, dtype=dtype) for t in tensors]
