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
from .internals import copy_all

_ONE_CALL = (1, False)  # Observer._added: .grad holds one call's grad, nothing from before the cell


NOT_REACHED = object()  # LoopPlan.finish: the call did not reach every leaf (the long way walks)


class LoopPlan:
    """What a loop's calls on the same leaves share: the leaves (*tensors*: every leaf the walk
    found; *named*: those the report shows, by name), how each is kept, and the copy buffers."""

    def __init__(self, tensors: list[torch.Tensor], named: dict[str, torch.Tensor]):
        self.tensors = tuple(tensors)
        self.names = tuple(named)
        self.leaves = tuple(named.values())
        self.counts = {id(t): _ONE_CALL for t in self.leaves}
        how = [_how(t) for t in self.leaves]
        self.frozen = all(h == "tiny" for h in how)  # all as numbers; else one batched copy for all
        self.copied = tuple(i for i, h in enumerate(how) if h != "big")
        self.big = tuple(i for i, h in enumerate(how) if h == "big")
        self.dtypes = [self.leaves[i].dtype for i in self.copied]  # (autograd refuses a new shape)
        self.buffers: list[list[torch.Tensor]] = []  # two sets, made at the first copy
        self.turn = 0

    def start(self) -> list[tuple] | None:
        """Each leaf with its ``.grad`` before the call (:func:`grads_now`); None where one holds
        something other than zeros (the engine adds to it: the long way catches this call's own)."""
        then = grads_now(self.tensors)
        for _, grad, _ in then:
            if grad is not None and (
                grad.numel() > copies.SNAPSHOT_LIMIT or grad.layout != torch.strided or not small_zero(grad)
            ):
                return None
        return then

    def finish(self, then: list[tuple]) -> Any:
        """After the engine ran: the named leaves' values and grads, kept (:class:`LoopRows`);
        :data:`NOT_REACHED` where the call left a leaf's ``.grad`` as it was; None where a leaf
        changed its dtype since the plan was made (``w.data = ...``) or a grad is sparse (then
        the call is kept one by one)."""
        if not reached_all(then):
            return NOT_REACHED
        leaves = self.leaves
        grads: list[Any] = [t.grad for t in leaves]
        kept = self._frozen(grads) if self.frozen else self._copy(grads)
        if kept is None:
            return None
        big = [fresh_row(self.names[i], leaves[i], grads[i]) for i in self.big]
        at_call = ([t._version for t in leaves], [g._version for g in grads])
        return LoopRows(self, kept, big, at_call)

    def _frozen(self, grads: list[torch.Tensor]) -> list[tuple] | None:
        """Each leaf's value and grad as Python numbers (all are tiny CPU tensors; None where a
        grad is not laid out flat: ``Embedding(sparse=True)`` gives a tiny leaf a sparse grad)."""
        for grad in grads:
            if grad.layout is not torch.strided:
                return None
        return [(Frozen(t.tolist(), t.dtype, t.shape), Frozen(g.tolist(), g.dtype, g.shape))
                for t, g in zip(self.leaves, grads, strict=True)]  # fmt: skip

    def _copy(self, grads: list[torch.Tensor]) -> list[tuple] | None:
        """The copied leaves' values and grads, in one batched copy into the set of buffers the
        call kept last does not hold (None: a dtype is not the plan's any more, or a grad is
        sparse: kept one by one)."""
        leaves, copied = self.leaves, self.copied
        if [leaves[i].dtype for i in copied] != self.dtypes:  # w.data = w.data.double()
            return None
        sources = [leaves[i] for i in copied] + [grads[i] for i in copied]
        if not self.buffers:
            self.buffers = [[torch.empty_like(s, requires_grad=False) for s in sources] for _ in range(2)]
        self.turn ^= 1
        buffers = self.buffers[self.turn]
        try:
            copy_all(buffers, sources)
        except RuntimeError:
            return None
        n = len(copied)
        return [(buffers[j], buffers[n + j]) for j in range(n)]


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
    if n <= FREEZE_LIMIT and tensor.is_cpu and _has_python_numbers(tensor.dtype):
        return "tiny"
    return "copy" if n <= copies.SNAPSHOT_LIMIT else "big"


def _has_python_numbers(dtype: torch.dtype) -> bool:
    """Whether ``tolist()`` reads a tensor of *dtype* (not float8 and the like)."""
    try:
        torch.zeros(1, dtype=dtype).tolist()
    except (TypeError, RuntimeError):
        return False
    return True


class LoopRows:
    """One loop call's leaves, as :meth:`LoopPlan.finish` kept them: made into rows (``Leaf``'s
    fields, as :func:`.copies.fresh_row` makes them) when first read."""

    __slots__ = ("big", "kept", "plan", "versions")

    def __init__(self, plan: LoopPlan, kept: list[tuple], big: list[tuple], versions: tuple):
        self.plan, self.kept, self.big, self.versions = plan, kept, big, versions

    @property
    def holds_big(self) -> bool:
        """Whether a grad is kept by reference (too big to copy): see ``Call.released``."""
        return bool(self.big)

    def rows(self) -> tuple[tuple, ...]:
        plan = self.plan
        kept = dict(zip(plan.copied, self.kept, strict=True))
        big = dict(zip(plan.big, self.big, strict=True))
        versions, grad_versions = self.versions
        rows = []
        for i, (name, tensor) in enumerate(zip(plan.names, plan.leaves, strict=True)):
            if i in big:
                rows.append(big[i])
                continue
            value, grad = kept[i]
            v = grad_versions[i]
            rows.append(
                (name, tensor, value, versions[i], grad, grad, None, v, None, v, 1, False, None, None)
            )
        return tuple(rows)
