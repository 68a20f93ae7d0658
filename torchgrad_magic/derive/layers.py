"""Which layer of a model made which autograd node: the calls :class:`~..capture.modules.ModuleTracker`
kept, matched to the graph's nodes after the cell, and a graph folded one box per module call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..capture.internals import accumulate_grad_class
from ..capture.modules import CALL_MARK, ModuleCall


def module_names(namespace: dict[str, Any]) -> dict[int, str]:
    """``id(module) -> qualified name`` for every module reachable from the namespace's
    ``nn.Module`` variables: ``net``, ``net.0``, ``model.encoder.layers.3.self_attn``. A module
    under two names (shared, or two variables) keeps the first."""
    names: dict[int, str] = {}
    for var, value in list(namespace.items()):
        if var.startswith("_") or not isinstance(value, torch.nn.Module):
            continue
        for qual, sub in value.named_modules():
            names.setdefault(id(sub), f"{var}.{qual}" if qual else var)
    return names


class NodeOwners(dict[int, str]):
    """``id(autograd node) -> call key`` of the innermost module call that made it, plus what
    :func:`.graph.fold` needs about the calls (in the order they started):

    kinds
        call key -> the module's type name (``Linear``)
    parents
        call key -> the key of the call it was made from (None: called from the cell)
    params
        id(AccumulateGrad node) -> the parameter's qualified name (``net.0.weight``)

    It holds the autograd nodes it names, so their ids stay valid: keep it until the graph is
    built and folded, then let it go."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: dict[str, str] = {}
        self.parents: dict[str, str | None] = {}
        self.params: dict[int, str] = {}
        self.held: dict[int, Any] = {}  # id(node) -> the node: keeps the ids valid


def call_keys(calls: Iterable[ModuleCall], names: dict[int, str]) -> dict[ModuleCall, str]:
    """A key per call (and per call they were made from): the module's qualified name, ``#2``,
    ``#3`` for its later calls. A module no variable reaches is named from the call it was made
    from (``net.3.inner``) or by its type (``Linear``)."""
    every: dict[int, ModuleCall] = {}
    for call in calls:
        c: ModuleCall | None = call
        while c is not None and id(c) not in every:
            every[id(c)] = c
            c = c.parent
    ordered = sorted(every.values(), key=lambda c: c.order)  # parents before their calls
    subnames: dict[int, dict[int, str]] = {}  # per parent module: id(submodule) -> its relative name
    plain: dict[int, str] = {}  # id(call) -> qualified name
    for call in ordered:
        module = call.module
        name = names.get(id(module))
        if name is None:
            name = call.kind
            parent = call.parent
            if parent is not None:
                parent_module = parent.module
                known = subnames.get(id(parent_module))
                if known is None:
                    known = {id(m): q for q, m in parent_module.named_modules() if q}
                    subnames[id(parent_module)] = known
                if id(module) in known:
                    name = f"{plain[id(parent)]}.{known[id(module)]}"
        plain[id(call)] = name
    keys: dict[ModuleCall, str] = {}
    count: dict[str, int] = {}
    for call in ordered:
        name = plain[id(call)]
        count[name] = count.get(name, 0) + 1
        keys[call] = name if count[name] == 1 else f"{name}{CALL_MARK}{count[name]}"
    return keys


# ---------------------------------------------------------------------------
# ownership
# ---------------------------------------------------------------------------
def owner_of_nodes(calls: list[ModuleCall], names: dict[int, str]) -> NodeOwners:
    """The innermost module call each backward node was made in.

    A call owns the nodes reachable backwards from its outputs, stopping at its inputs (the
    grad_fn of its tensor arguments, and leaf arguments) and at nodes owned by calls that are not
    inside it (an earlier layer's output it reads); the ``AccumulateGrad`` nodes of the module's
    own parameters (its submodules' included) belong to it too, also one it hands to an inner
    call as an argument; other leaves stay the cell's. Calls are taken in the order
    they finished, so an inner call claims its nodes first; an outer call then steps over an
    inner call's part in one jump, from its outputs to its inputs: the cost is linear in the size
    of the graphs."""
    owners = NodeOwners()
    keys = call_keys(calls, names)
    for call, key in sorted(keys.items(), key=lambda kv: kv[0].order):
        owners.kinds[key] = call.kind
        owners.parents[key] = keys[call.parent] if call.parent is not None else None
    owner: dict[int, ModuleCall] = {}  # id(node) -> innermost call
    passed: dict[int, list[Any]] = {}  # id(call) -> the AccumulateGrad nodes it met and left (not its own)
    params: dict[int, dict[int, str]] = {}  # id(module) -> id(parameter) -> name (submodules' too)
    accumulate = accumulate_grad_class()
    for call in calls:
        key = keys[call]
        own = _parameter_ids(call.module, params)
        stop = {id(fn) for fn in call.inputs}
        leaves = {id(t) for t in call.leaves}
        jumped: set[int] = set()
        todo = list(call.outputs)
        while todo:
            fn = todo.pop()
            node = id(fn)
            if node in stop:
                continue
            prior = owner.get(node)
            if prior is not None:
                if prior is not call:
                    inner = _child_of(prior, call)
                    if inner is not None and id(inner) not in jumped:  # step over the inner call
                        jumped.add(id(inner))
                        todo.extend(inner.inputs)
                        todo.extend(passed.get(id(inner), ()))  # a parameter handed to it, maybe ours
                continue
            if type(fn) is accumulate:
                variable = getattr(fn, "variable", None)
                if variable is not None and id(variable) in own and id(variable) not in leaves:
                    owner[node] = call
                    owners[node] = key
                    owners.params[node] = f"{_plain(key)}.{own[id(variable)]}"
                    owners.held[node] = fn
                else:
                    passed.setdefault(id(call), []).append(fn)
                continue
            owner[node] = call
            owners[node] = key
            owners.held[node] = fn
            todo.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)
    return owners


def _parameter_ids(module: Any, params: dict[int, dict[int, str]]) -> dict[int, str]:
    """id(parameter) -> its name in *module* (its submodules' too), found once per module."""
    own = params.get(id(module))
    if own is None:
        own = params[id(module)] = {}
        for pname, param in module.named_parameters(remove_duplicate=False):
            own.setdefault(id(param), pname)
    return own


def _child_of(inner: ModuleCall, outer: ModuleCall) -> ModuleCall | None:
    """The call made directly from *outer* that *inner* is (or is inside); None if none is."""
    c = inner
    while c.parent is not None:
        if c.parent is outer:
            return c
        c = c.parent
    return None


def _plain(key: str) -> str:
    name, mark, count = key.rpartition(CALL_MARK)
    return name if mark and count.isdigit() else key


def fold_graph(
    graph: Any, owners: NodeOwners, depth: int | str | bool | None = None, repeats: bool = True
) -> Any:
    """*graph* (from :func:`.graph.build`, while *owners* is alive) folded one box per module
    call at *depth* (:func:`.graph.fold`): ``None``/``True`` the default (1: one box per layer of
    the model), an int, ``"full"`` not folded (*graph* itself); with *repeats*, repeated blocks
    and units into one box too. A parameter the graph has no name for is named as its model names
    it (``net.0.weight``)."""
    from dataclasses import replace

    from ..derive.graph import fold

    if depth == "full" or not owners:
        return graph
    if depth is None or isinstance(depth, bool):
        depth = None
    elif isinstance(depth, str):
        depth = int(depth)

    ops = {n.id: n.op for n in graph.nodes}
    # an id that names another node than the one drawn (the graph built before the owners were
    # found, its nodes gone since) is left out rather than put in a wrong box
    by_node = {
        gid: owners[src]
        for gid, src in graph.sources.items()
        if src in owners and type(owners.held[src]).__name__ == ops.get(gid)
    }
    nodes = list(graph.nodes)
    for i, node in enumerate(nodes):
        qualified = owners.params.get(graph.sources.get(node.id, -1))
        if qualified and node.kind == "leaf" and (not node.name or node.name.startswith("Parameter ")):
            nodes[i] = replace(node, name=qualified)
    named = replace(graph, nodes=nodes)  # (its language and output name kept)
    return fold(named, by_node, owners.kinds, depth, owners.parents, repeats)
