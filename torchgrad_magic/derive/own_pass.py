"""%%grad's own backward pass, for a cell that made none: the grads of one output with respect to
some tensors, worked out by calling the nodes of the cell's graph one at a time, in the engine's
order, without any of the user's code that the engine would run on the way.

Why not ``torch.autograd.grad``: the engine also runs what the user attached to the graph (a
tensor's ``register_hook`` functions, ``retain_grad()``'s write of ``.grad``, a node's own hooks,
callbacks those queue). A plain cell without ``backward()`` runs none of that, so %%grad must not
run it either. Calling a node (``grad_fn(grad)``) runs only its derivative formula; the rest of
the engine's work is done here as the engine does it:

- a node runs once every grad for it has arrived, the most recently made node first (autograd's
  order, so sums over several paths add up in the same order);
- the grads arriving at one input from several paths are added up;
- each grad a node sends is summed to the shape and cast to the dtype its input had
  (:func:`..capture.internals.input_shapes`: a broadcast ``w * x`` sends ``w`` its own shape);
- only nodes on a path to a wanted tensor run; nothing of the graph is freed.

The user's own code can still be inside the graph: a custom ``autograd.Function``'s backward, a
module's backward hook (one such Function) or a saved-tensor unpack hook (``saved_tensors_hooks``,
non-reentrant ``checkpoint``). The caller looks for those first and does not run the pass then.
"""

from __future__ import annotations

import heapq
from typing import Any

import torch

from ..capture.internals import accumulate_grad_class, input_shapes, sequence_number


def own_grads(target: torch.Tensor, inputs: list[torch.Tensor], tracer: Any = None) -> tuple:
    """d(*target*)/d(each of *inputs*) (None where there is no path), like
    ``torch.autograd.grad(target, inputs, allow_unused=True, retain_graph=True)`` without running
    any hook; *tracer* (``capture/tracer.Tracer``, unhooked) is told of every node called.
    A node that cannot run raises the engine's own error (a graph already freed, say)."""
    root = target.grad_fn
    if root is None:  # the target is itself a leaf: d target / d target = 1
        return tuple(torch.ones_like(target) if t is target else None for t in inputs)
    nodes = _reachable(root)
    wanted = _where_caught(inputs, nodes)
    useful = _useful(nodes, wanted)
    found: list[torch.Tensor | None] = [None] * len(inputs)
    buffers: dict[int, list] = {id(root): [None] * len(input_shapes(root))}
    buffers[id(root)][target.output_nr] = torch.ones_like(target)
    waiting = _parents_counted(nodes, useful)
    ready = [(-sequence_number(root), 0, root)]
    count = 1
    with torch.no_grad():
        while ready:
            node = heapq.heappop(ready)[2]
            arrived = buffers.pop(id(node))
            for slot, grad in enumerate(arrived):
                for index in wanted.get((id(node), slot), ()):
                    found[index] = grad
            if not _runs(node, useful):
                continue
            sent = _sent(node, arrived, useful)
            if tracer is not None:
                tracer.saw(node, sent, tuple(arrived))
            for (child, slot), grad in zip(node.next_functions, sent, strict=False):
                if child is None or id(child) not in useful:
                    continue
                _add(buffers, child, slot, grad)
                waiting[id(child)] -= 1
                if waiting[id(child)] == 0:
                    heapq.heappush(ready, (-sequence_number(child), count, child))
                    count += 1
    return tuple(found)


def _reachable(root: Any) -> dict[int, Any]:
    """id -> node for every node behind *root*, each after all the nodes it sends grads to (a
    depth-first walk; the nodes are held, so their ids stay theirs)."""
    nodes: dict[int, Any] = {}
    entered = {id(root)}
    stack = [(root, iter(root.next_functions))]
    while stack:
        node, children = stack[-1]
        for child, _ in children:
            if child is not None and id(child) not in entered:
                entered.add(id(child))
                stack.append((child, iter(child.next_functions)))
                break
        else:
            stack.pop()
            nodes[id(node)] = node
    return nodes


def _where_caught(inputs: list[torch.Tensor], nodes: dict[int, Any]) -> dict[tuple[int, int], list[int]]:
    """(id(node), input slot) -> indexes of *inputs*: where each wanted tensor's grad arrives (a
    leaf's at its AccumulateGrad node, a non-leaf's at the node that made it)."""
    leaves: dict[int, list[int]] = {}
    wanted: dict[tuple[int, int], list[int]] = {}
    for index, tensor in enumerate(inputs):
        if tensor.grad_fn is None:
            leaves.setdefault(id(tensor), []).append(index)
        else:
            wanted.setdefault((id(tensor.grad_fn), tensor.output_nr), []).append(index)
    accumulate = accumulate_grad_class()
    for key, node in nodes.items():
        if type(node) is accumulate and id(node.variable) in leaves:  # type: ignore[attr-defined]
            wanted[(key, 0)] = leaves[id(node.variable)]  # type: ignore[attr-defined]
    return wanted


def _useful(nodes: dict[int, Any], wanted: dict[tuple[int, int], list[int]]) -> set[int]:
    """ids of the nodes on a path to a wanted tensor (where a grad is caught, or that run to send
    one there): the engine's "needed" nodes. (*nodes* come children first: one pass.)"""
    useful = {key for key, _ in wanted}
    for key, node in nodes.items():
        if key not in useful and any(c is not None and id(c) in useful for c, _ in node.next_functions):
            useful.add(key)
    return useful


def _runs(node: Any, useful: set[int]) -> bool:
    """Whether *node* is called: it sends a grad on toward a wanted tensor."""
    return any(child is not None and id(child) in useful for child, _ in node.next_functions)


def _parents_counted(nodes: dict[int, Any], useful: set[int]) -> dict[int, int]:
    """id -> how many grads a useful node waits for (one per edge from a node that runs)."""
    waiting = dict.fromkeys(useful, 0)
    for node in nodes.values():
        if id(node) in useful and _runs(node, useful):
            for child, _ in node.next_functions:
                if child is not None and id(child) in useful:
                    waiting[id(child)] += 1
    return waiting


def _sent(node: Any, arrived: list, useful: set[int]) -> tuple:
    """What *node* sends to each next function, fitted as the engine fits it."""
    sent = node(*arrived)
    sent = sent if isinstance(sent, tuple) else (sent,)
    fitted = []
    for (child, slot), grad in zip(node.next_functions, sent, strict=False):
        if child is None or grad is None or id(child) not in useful:
            fitted.append(grad)
            continue
        fitted.append(_fit(grad, input_shapes(child)[slot]))
    return tuple(fitted)


def _fit(grad: torch.Tensor, expected: tuple) -> torch.Tensor:
    """*grad* summed to the shape, cast to the dtype, moved to the device the input had."""
    shape, dtype, device = expected
    if tuple(grad.shape) != shape and not grad.is_nested:
        grad = grad.sum_to_size(shape)  # (raises as the engine does when it cannot be)
    if grad.dtype != dtype:
        grad = grad.to(dtype)
    if grad.device != device:
        grad = grad.to(device)
    return grad


def _add(buffers: dict[int, list], child: Any, slot: int, grad: torch.Tensor | None) -> None:
    buffer = buffers.get(id(child))
    if buffer is None:
        buffer = buffers[id(child)] = [None] * max(1, len(input_shapes(child)))
    if grad is not None:
        buffer[slot] = grad if buffer[slot] is None else buffer[slot] + grad
