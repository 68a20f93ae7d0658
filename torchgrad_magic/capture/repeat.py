"""A loop's next ``backward()`` on the same leaves: what it checks and keeps (the short way of
:meth:`.observe.Observer._repeat`).

A training loop calls ``backward()`` hundreds of times on the same leaves, and the report shows
one of those calls, the last. What depends only on the leaves is worked out once, at the first
such call (:class:`LoopPlan`). Each call then does only what cannot be done later:

- before the engine runs: every ``.grad`` is None or zero (:meth:`LoopPlan.before`), so that
  ``.grad`` after the call is this call's grad and no hook is needed;
- after it: the engine reached every leaf (:meth:`LoopPlan.reached`);
- the leaves' values and grads as they are now (:meth:`LoopPlan.keep`): the optimizer changes
  them in place before the cell ends. Tiny ones are kept as Python numbers; the rest up to
  :data:`.copies.SNAPSHOT_LIMIT` elements with one batched copy into two sets of buffers that
  take turns (the call kept holds one set, the next call writes the other); bigger ones by
  reference with a probe, as every call keeps them.

The rows the report reads (:class:`.observe.Leaf`'s fields) are made when first read
(:class:`LoopRows`), for the one call kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from . import copies
from .copies import FREEZE_LIMIT, Frozen, fresh_row, small_zero
from .internals import copy_all, has_post_accumulate_hooks

_STRIDED = torch.strided
_ONE_CALL = (1, False)  # Observer._added: .grad holds one call's grad, nothing from before the cell


NOT_REACHED = object()  # LoopPlan.finish: the call did not reach every leaf (the long way walks)


class LoopPlan:
    """What a loop's calls on the same leaves share: the leaves (*tensors*: every leaf the walk
    *key* found; *named*: those the report shows, by name), how each is kept, and the copy buffers.

    Each call runs through here a few thousand times in a loop, where every Python call and every
    object made costs several times what it costs alone (the loop's torch code pushes ours out
    of the CPU's caches): :meth:`start` and :meth:`finish` are one loop each, and keep plain
    numbers and lists; :class:`LoopRows` makes them into rows for the call shown."""

    def __init__(self, key: Any, tensors: list[torch.Tensor], named: dict[str, torch.Tensor]):
        self.key = key  # the walk's (Observer._last_leaves)
        self.tensors = tuple(tensors)
        self.names = tuple(named)
        self.leaves = tuple(named.values())
        self.counts = {id(t): _ONE_CALL for t in self.leaves}
        self.checks = tuple((t, _how(t) == "tiny") for t in self.tensors)  # a tiny grad: read as numbers
        self.hooked = any(map(has_post_accumulate_hooks, self.tensors))  # (they may take .grad away:
        # the long way catches the call's grads with a hook of its own)
        how = [_how(t) for t in self.leaves]
        self.frozen = all(h == "tiny" for h in how)  # all as numbers; else one batched copy for all
        self.copied = tuple(i for i, h in enumerate(how) if h != "big")
        self.big = tuple(i for i, h in enumerate(how) if h == "big")
        self.dtypes = tuple(t.dtype for t in self.leaves)
        self.to_copy = tuple((self.leaves[i], self.dtypes[i], self.leaves[i].shape) for i in self.copied)
        self.buffers: list[list[torch.Tensor]] = []  # two sets, made at the first copy
        self.turn = 0

    def start(self) -> list[tuple] | None:
        """Each leaf with its ``.grad`` before the call and that grad's version (as
        :func:`grads_now`); None where one holds something other than zeros (the engine adds to
        it: the long way catches this call's own)."""
        then: list[tuple] = []
        try:
            for tensor, tiny in self.checks:
                grad = tensor.grad
                if grad is None:
                    then.append((tensor, None, -1))
                    continue
                if grad.layout is not _STRIDED:
                    return None
                if tiny:
                    values = grad.tolist()  # (a 1-d grad, the common case, told without a call)
                    if type(values) is list and (not values or type(values[0]) is not list):
                        if any(values):  # (nan is truthy, -0.0 is not)
                            return None
                    elif not _zeros(values):
                        return None
                elif not _small_zeros(grad):
                    return None
                then.append((tensor, grad, grad._version))
        except (TypeError, RuntimeError):  # (a dtype without Python numbers since: w.data = ...)
            return None
        return then

    def finish(self, then: list[tuple]) -> Any:
        """After the engine ran: the named leaves' values and grads, kept (:class:`LoopRows`);
        :data:`NOT_REACHED` where the call left a leaf's ``.grad`` as it was (or took it away);
        None where a leaf or its grad has a dtype other than the plan's (``w.data = ...``) or a
        grad is sparse (then the call is kept one by one)."""
        for tensor, before, version in then:
            now = tensor.grad
            if now is None or (now is before and now._version == version):
                return NOT_REACHED
        if not self.frozen:
            return self._copy()
        kept: list[Any] = []  # every leaf tiny: its value and grad as Python numbers, and versions
        for tensor, dtype in zip(self.leaves, self.dtypes):  # noqa: B905 (the plan's own: same length)
            grad: Any = tensor.grad  # (reached: not None)
            if tensor.dtype is not dtype or grad.dtype is not dtype or grad.layout is not _STRIDED:
                return None  # (a .grad of another dtype: w.data swapped, .grad zeroed in place)
            kept.append((tensor.tolist(), grad.tolist(), tensor._version, grad._version))
        return LoopRows(self, kept, (), False)

    def _copy(self) -> LoopRows | None:
        """The copied leaves' values and grads, in one batched copy into the set of buffers the
        call kept last does not hold (None: a dtype or a shape is not the plan's any more, or a
        grad is sparse: kept one by one); the big ones by reference (:func:`.copies.fresh_row`)."""
        values: list[torch.Tensor] = []
        grads: list[Any] = []
        versions: list[int] = []  # (each copied leaf's value's and grad's, in turn)
        for tensor, dtype, shape in self.to_copy:
            grad: Any = tensor.grad  # (reached: not None)
            if tensor.dtype is not dtype or grad.dtype is not dtype or grad.layout is not _STRIDED:
                return None
            if tensor.shape != shape:  # (w.data = a tensor of another shape: the copy would broadcast)
                return None
            values.append(tensor)
            grads.append(grad)
            versions += tensor._version, grad._version
        if not self.buffers:
            self.buffers = [
                [torch.empty_like(s, requires_grad=False) for s in values + grads] for _ in range(2)
            ]
        self.turn ^= 1
        buffers = self.buffers[self.turn]
        try:
            copy_all(buffers, values + grads)
        except RuntimeError:
            return None
        if not self.big:
            return LoopRows(self, (buffers, versions), (), False)  # (paired up when read: rows())
        leaves: tuple[Any, ...] = self.leaves  # (each reached: its .grad is not None)
        big = tuple(fresh_row(self.names[i], leaves[i], leaves[i].grad) for i in self.big)
        return LoopRows(self, (buffers, versions), big, True)


def grads_now(tensors: Iterable[torch.Tensor]) -> list[tuple]:
    """Each tensor with its ``.grad`` now and that grad's version (-1: none). A backward() that
    reaches a leaf changes one of the two (a new grad, or the old one added to in place)."""
    return [(t, g, -1 if g is None else g._version) for t in tensors for g in (t.grad,)]


def reached_all(then: list[tuple]) -> bool:
    """Whether the call changed the ``.grad`` of every tensor of *then* (:func:`grads_now`)."""
    for tensor, grad, version in then:
        now = tensor.grad
        if now is grad and (grad is None or grad._version == version):
            return False
    return True


def reached_any(then: list[tuple]) -> bool:
    """Whether the call changed the ``.grad`` of one of the tensors of *then*."""
    for tensor, grad, version in then:
        now = tensor.grad
        if now is not grad or (grad is not None and grad._version != version):
            return True
    return False


def _how(tensor: torch.Tensor) -> str:
    """How a loop keeps *tensor* and its grad: as Python numbers, copied, or by reference."""
    n = tensor.numel()
    if tensor.layout != torch.strided:
        return "big"  # (a sparse leaf: kept as every call keeps it)
    if 0 < n <= FREEZE_LIMIT and tensor.is_cpu and _has_python_numbers(tensor.dtype):
        return "tiny"
    return "copy" if n <= copies.SNAPSHOT_LIMIT else "big"


def _has_python_numbers(dtype: torch.dtype) -> bool:
    """Whether ``tolist()`` reads a tensor of *dtype* (not float8 and the like)."""
    try:
        torch.zeros(1, dtype=dtype).tolist()
    except (TypeError, RuntimeError):
        return False
    return True


def _zeros(values: Any) -> bool:
    """Whether a tiny tensor's ``tolist()`` holds zeros only (nan is not 0, -0.0 is)."""
    if type(values) is not list:
        return bool(values == 0)
    if values and type(values[0]) is list:
        return all(map(_zeros, values))
    return not any(values)


def _small_zeros(grad: torch.Tensor) -> bool:
    """Whether a grad not kept as numbers holds zeros only (False where it is too big to tell
    cheaply: then the long way runs, with a hook)."""
    return grad.numel() <= copies.SNAPSHOT_LIMIT and small_zero(grad)


class LoopRows:
    """One loop call's leaves, as :meth:`LoopPlan.finish` kept them (*kept*: per leaf its value,
    its grad and their versions as Python numbers when the plan is all tiny; else the buffers the
    copies went to, values then grads, and the versions, value's then grad's, leaf by leaf): made
    into rows (``Leaf``'s fields, as :func:`.copies.fresh_row` makes them) when first read."""

    __slots__ = ("big", "holds_big", "kept", "plan")

    def __init__(self, plan: LoopPlan, kept: Any, big: tuple[tuple, ...], holds_big: bool):
        self.plan, self.kept, self.big = plan, kept, big
        self.holds_big = holds_big  # a grad is kept by reference (too big to copy): see Call.released

    def released(self) -> bool:
        """Whether the cell let go of a grad kept by reference (``zero_grad()`` set a big leaf's
        ``.grad`` to None): then only this record holds it (see ``Call.released``; the copied
        ones are our own buffers)."""
        return any(row[1].grad is None for row in self.big)  # (row: fresh_row's; [1] the leaf)

    def rows(self) -> tuple[tuple, ...]:
        plan = self.plan
        per_leaf = self.kept
        if not plan.frozen:  # (buffers: values, then grads; versions: two a leaf)
            buffers, versions = self.kept
            n = len(plan.copied)
            per_leaf = [(buffers[j], buffers[n + j], versions[2 * j], versions[2 * j + 1]) for j in range(n)]
        kept = dict(zip(plan.copied, per_leaf, strict=True))
        big = dict(zip(plan.big, self.big, strict=True))
        rows = []
        for i, (name, tensor) in enumerate(zip(plan.names, plan.leaves, strict=True)):
            if i in big:
                rows.append(big[i])
                continue
            value, grad, version, v = kept[i]
            if plan.frozen:  # (the shape is the numbers' nesting: a tiny leaf has an element)
                value, grad = Frozen(value, plan.dtypes[i], None), Frozen(grad, plan.dtypes[i], None)
            rows.append((name, tensor, value, version, grad, grad, None, v, None, v, 1, False, None, None))
        return tuple(rows)
