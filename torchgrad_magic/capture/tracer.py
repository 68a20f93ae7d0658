"""The numbers of one backward pass, caught while it runs (``--steps``, ``--graph``).

A :class:`Tracer` puts a hook on every node of the graph (``Node.register_hook``: the grads
arriving at the node and the grads it sends to its inputs) and takes them off afterwards; each
node's call becomes one :class:`Raw`. Nothing is recomputed by a second engine: the *local
derivative* of an edge is what the node sent divided by what arrived (element by element, where
shapes match); only where no gradient arrived (0) is the node itself asked for its factor, by
calling it with ones (built-in nodes only: a custom ``autograd.Function`` is never called again).
:mod:`..derive.steps` turns the trace into the steps the report shows.

What costs is caught only where the report can show it. A pass of up to ``EVERY`` nodes is caught
in full: the grads copied, each local derivative worked out and what each node saved read while
it runs (a pass without ``retain_graph`` frees what the nodes saved as it goes). Of a longer pass,
only the nodes at its ends are: the first and the last ``ENDS`` that autograd runs (the steps the
report shows before and after the folded middle; the last counted from the nodes found behind the
outputs, so a pass that runs fewer, ``inputs=``, has its last ones caught by the next rule only)
and the first and last ``ENDS`` made (the lines of its forward listing, and in one thread autograd's
last steps too). Of the others the hook keeps the grads as they are (references), and
:meth:`Raw.locals`/:meth:`Raw.saved_now` work the rest out when a step is read, from what the graph
still holds then: the same numbers, except where 0 arrived after the graph was freed (the node can
no longer give its own factor: nan there) and what the nodes saved (freed: the forward line takes
the call's constants from the record).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import torch

from .internals import accumulate_grad_class, has_unpack_hook, nodes_behind, sequence_number

TRACE_LIMIT = 100_000  # nodes hooked at most
KEEP = 1024  # grads up to this many elements are copied when caught
LOCAL_LIMIT = 4096  # element-wise local derivatives are worked out up to this size
EVERY = 256  # a pass of up to this many nodes is caught in full
ENDS = 64  # of a longer one, in full: this many nodes at each end (of autograd's order, of code order)
# nodes whose local derivative is one number per element
ELEMENTWISE = {
    "AddBackward0", "AddBackward1", "SubBackward0", "SubBackward1", "RsubBackward0", "RsubBackward1",
    "MulBackward0", "MulBackward1", "DivBackward0", "DivBackward1", "NegBackward0", "PowBackward0",
    "PowBackward1", "PowBackward2", "ExpBackward0", "LogBackward0", "SqrtBackward0", "SinBackward0",
    "CosBackward0", "TanhBackward0", "SigmoidBackward0", "ReluBackward0", "AbsBackward0",
    "ReciprocalBackward0", "CloneBackward0", "ToCopyBackward0", "LeakyReluBackward0", "EluBackward0",
    "GeluBackward0", "SiluBackward0", "SoftplusBackward0", "HardtanhBackward0", "ClampBackward1",
    "ClampMinBackward0", "ClampMaxBackward0", "Log1PBackward0", "Expm1Backward0", "RsqrtBackward0",
    "TanBackward0", "AtanBackward0", "SinhBackward0", "CoshBackward0", "Log2Backward0", "Log10Backward0",
    "Exp2Backward0", "SquareBackward0", "MaximumBackward0", "MinimumBackward0", "WhereBackward0",
    "SgnBackward0", "SignBackward0", "FloorBackward0", "CeilBackward0", "RoundBackward0", "FracBackward0",
    "ErfBackward0", "AsinBackward0", "AcosBackward0", "AtanhBackward0", "LogitBackward0",
}  # fmt: skip


# ---------------------------------------------------------------------------
# catching the numbers while backward runs
# ---------------------------------------------------------------------------
@dataclass(slots=True)
class Raw:
    """One node as autograd ran it (internal: :func:`build` reads it). *local* and *saved* are
    None where the pass did not work them out (the middle of a long pass): :meth:`locals` and
    :meth:`saved_now` do then."""

    node: Any
    order: int
    grad_out: tuple[torch.Tensor | None, ...]
    grad_in: tuple[torch.Tensor | None, ...]
    local: tuple[torch.Tensor | None, ...] | None
    saved: dict[str, Any] | None

    def locals(self) -> tuple[torch.Tensor | None, ...]:
        """The local derivative of each input (worked out now where the pass did not: the same
        numbers, but where 0 arrived only a graph still kept lets the node give its own factor;
        otherwise nan there, None where nothing else is known)."""
        if self.local is None:
            with torch.no_grad():
                called: list = []
                self.local = tuple(
                    _local(self.node, i, g, self.grad_out, called) for i, g in enumerate(self.grad_in)
                )
        return self.local

    def saved_now(self) -> dict[str, Any]:
        """What the node saved (read now where the pass did not: the numbers are kept by the
        node; its tensors only while the graph is kept, ``retain_graph`` or %%grad's own pass)."""
        if self.saved is None:
            with torch.no_grad():
                self.saved = _saved(self.node)
        return self.saved


def _keep(grad: Any) -> torch.Tensor | None:
    if not isinstance(grad, torch.Tensor):
        return None
    return grad.clone() if grad.numel() <= KEEP else grad.detach()  # (called under no_grad)


def _is_custom(node: Any) -> bool:
    """A node of a Python ``autograd.Function``: its backward is the user's code."""
    return isinstance(node, torch.autograd.function.BackwardCFunction)


def _local(node: Any, index: int, grad_in: Any, grad_outputs: tuple, called: list) -> torch.Tensor | None:
    """d(node's output)/d(this input), element by element, from autograd's own numbers: for
    element-wise nodes (and any node between scalars), where it is one number per element."""
    if len(grad_outputs) != 1 or not isinstance(grad_in, torch.Tensor):
        return None
    out = grad_outputs[0]
    if not isinstance(out, torch.Tensor) or out.shape != grad_in.shape or out.numel() > LOCAL_LIMIT:
        return None
    if out.numel() != 1 and type(node).__name__ not in ELEMENTWISE:
        return None
    if out.is_complex() or grad_in.is_complex() or out.layout != torch.strided:
        return None
    ratio = grad_in / out  # (where 0 arrived it is not finite: inf, or nan for 0 / 0)
    if out.numel() == 1:  # the common case of a course's cells: plain numbers, no tensor checks
        if math.isfinite(ratio.item()):
            return ratio
    elif math.isfinite(ratio.sum().item()):  # (a sum is finite only if every element is: one check)
        return ratio
    bad = ~torch.isfinite(ratio)
    if bool(bad.any()):
        if not called:
            called.append(_call_with_ones(node, out))
        ones = called[0]
        own = ones[index] if ones is not None and index < len(ones) else None
        if not isinstance(own, torch.Tensor) or own.shape != grad_in.shape:
            return None if bool(bad.all()) else torch.where(bad, torch.full_like(ratio, float("nan")), ratio)
        ratio = torch.where(bad, own, ratio)
    return ratio


def _call_with_ones(node: Any, out: torch.Tensor) -> tuple | None:
    if _is_custom(node):
        return None
    try:
        found = node(torch.ones_like(out))
    except Exception:
        return None
    return found if isinstance(found, tuple) else (found,)


_SAVED_ATTRS: dict[type, tuple[str, ...]] = {}


@dataclass(slots=True)
class SavedTensor:
    """A tensor a node saved: the tensor itself (to find the cell's name for it) and, when
    small, a copy of its value at the time."""

    tensor: torch.Tensor
    copy: torch.Tensor | None


def _saved(node: Any) -> dict[str, Any]:
    """What a node saved: numbers (exponent, alpha, dim, reduction) and tensors."""
    found: dict[str, Any] = {}
    if has_unpack_hook(node):  # reading them would run the user's unpack hook again
        return found
    kind = type(node)
    attrs = _SAVED_ATTRS.get(kind)
    if attrs is None:
        attrs = _SAVED_ATTRS[kind] = tuple(
            a for a in dir(node) if a.startswith("_saved_") and not a.endswith(("_sym_sizes", "_sym_strides"))
        )
    for attr in attrs:
        try:
            value = getattr(node, attr)
        except Exception:
            continue
        if isinstance(value, torch.Tensor):
            small = value.numel() <= 16 and value.layout == torch.strided
            found[attr[7:]] = SavedTensor(value, value.clone() if small else None)  # (under no_grad)
        elif isinstance(value, (bool, int, float, str, tuple)):
            found[attr[7:]] = value
    return found


class Tracer:
    """Hooks on the nodes behind *outputs* while one backward pass runs (a context manager).

    In a long pass a node gets its hook when the first node that sends it a gradient has run (the
    outputs' nodes at the start) and loses it once it has run itself, so that no hook object lives
    longer than a few steps of the pass (a short one has them all from the start). What each node
    sent and received is kept in flat lists (:attr:`ran`, :meth:`sent`); :attr:`raws` makes a
    :class:`Raw` of a step when it is read."""

    def __init__(self, outputs: tuple[torch.Tensor, ...]):
        self.outputs = tuple(o for o in outputs if isinstance(o, torch.Tensor))
        self.nodes: list[Any] = []
        self.cut = False  # more nodes than TRACE_LIMIT: the rest are not hooked
        self.ran: list[Any] = []  # the nodes in the order they ran
        self.raws: Sequence[Raw] = _Raws(self)
        self._full: dict[int, Raw] = {}  # step (from 0) -> its Raw, caught in full
        # the grads each step received and sent (where not in _full), one flat list each: step i's
        # are [at[i]:at[i + 1]] (no container per step for the garbage collector to walk)
        self._outs: list[Any] = []
        self._ins: list[Any] = []
        self._outs_at: list[int] = [0]
        self._ins_at: list[int] = [0]
        self._handles: dict[int, Any] = {}  # id(node) -> its hook's handle, until it has run
        self._hookable: set[int] = set()  # ids of the nodes that get a hook when reached
        self._every = True  # every node caught in full (a short pass)
        self._expected = 0  # nodes with a hook: how many the pass runs, at most
        self._ends: set[int] = set()  # ids of the first and last nodes made (a long pass)

    def __enter__(self) -> Tracer:
        self.nodes = self._walk()
        accumulate = accumulate_grad_class()
        hooked = [node for node in self.nodes if type(node) is not accumulate]  # (its input: one step up)
        self._plan(hooked)
        try:
            if self._every:  # a short pass: every node hooked now (few hook objects to hold)
                self._handles = {
                    id(node): node.register_hook(functools.partial(self.saw, node)) for node in hooked
                }
            else:
                self._hookable = {id(node) for node in hooked}
                for output in self.outputs:
                    if output.grad_fn is not None:
                        self._hook(output.grad_fn)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _plan(self, hooked: list[Any]) -> None:
        """Which nodes of the pass are caught in full (see the module docstring)."""
        self._expected = len(hooked)
        self._every = len(hooked) <= EVERY
        if not self._every:
            made = sorted(hooked, key=sequence_number)
            self._ends = {id(node) for node in (*made[:ENDS], *made[-ENDS:])}

    def unhooked(self) -> Tracer:
        """The nodes, without hooks: %%grad's own pass (``derive/own_pass.py``) reports each node
        it calls through :meth:`saw`."""
        self.nodes = self._walk()
        accumulate = accumulate_grad_class()
        self._plan([node for node in self.nodes if type(node) is not accumulate])
        return self

    def _walk(self) -> list[Any]:
        nodes, self.cut = nodes_behind(self.outputs, TRACE_LIMIT)
        return list(nodes.values())

    def __exit__(self, *exc: Any) -> None:
        handles, self._handles = self._handles, {}
        for handle in handles.values():  # (the nodes the pass did not run)
            handle.remove()

    def _hook(self, node: Any) -> None:
        """Hook *node* (once, and only a node of the walk)."""
        key = id(node)
        if key in self._hookable and key not in self._handles:
            self._handles[key] = node.register_hook(functools.partial(self._on_run, node))

    def _on_run(self, node: Any, grad_inputs: tuple, grad_outputs: tuple) -> None:
        """*node*'s hook: it ran; its hook comes off (torch allows it from inside), the nodes it
        sends to get theirs."""
        handle = self._handles.pop(id(node), None)
        if handle is not None:
            handle.remove()
        self.saw(node, grad_inputs, grad_outputs)
        try:
            for nxt, _ in node.next_functions:
                if nxt is not None:
                    self._hook(nxt)
        except Exception:  # never break the user's backward pass
            pass

    def saw(self, node: Any, grad_inputs: tuple, grad_outputs: tuple) -> None:
        """*node* ran: *grad_outputs* arrived, it sent *grad_inputs* (one per next function)."""
        try:
            count = len(self.ran)
            if self._every or count < ENDS or count >= self._expected - ENDS or id(node) in self._ends:
                self._full[count] = _caught(node, count, grad_inputs, grad_outputs)
            elif torch.is_grad_enabled():  # (create_graph: the grads are not held with their graph)
                self._outs.extend(_detached(grad_outputs))
                self._ins.extend(_detached(grad_inputs))
            else:
                self._outs.extend(grad_outputs)
                self._ins.extend(grad_inputs)
            self._outs_at.append(len(self._outs))
            self._ins_at.append(len(self._ins))
            self.ran.append(node)
        except Exception:  # never break the user's backward pass
            pass

    def sent(self, step: int) -> tuple[torch.Tensor | None, ...]:
        """What the node of *step* (from 0) sent to each of its inputs."""
        full = self._full.get(step)
        return (
            full.grad_in
            if full is not None
            else tuple(self._ins[self._ins_at[step] : self._ins_at[step + 1]])
        )

    def raw(self, step: int) -> Raw:
        """The :class:`Raw` of *step* (from 0): caught in full, or made now from the flat lists."""
        found = self._full.get(step)
        if found is None:
            outs = tuple(self._outs[self._outs_at[step] : self._outs_at[step + 1]])
            found = self._full[step] = Raw(self.ran[step], step, outs, self.sent(step), None, None)
        return found


class _Raws(Sequence):
    """:attr:`Tracer.raws`: one :class:`Raw` per step, made when read."""

    def __init__(self, tracer: Tracer):
        self._tracer = tracer

    def __len__(self) -> int:
        return len(self._tracer.ran)

    @overload
    def __getitem__(self, index: int) -> Raw: ...

    @overload
    def __getitem__(self, index: slice) -> list[Raw]: ...

    def __getitem__(self, index: int | slice) -> Raw | list[Raw]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._tracer.raw(index)


def _caught(node: Any, count: int, grad_inputs: tuple, grad_outputs: tuple) -> Raw:
    """A node's call caught in full: its grads copied, its local derivatives and what it saved
    (without recording any of it: a backward pass runs without grad mode unless create_graph)."""
    if torch.is_grad_enabled():
        with torch.no_grad():
            return _caught(node, count, grad_inputs, grad_outputs)
    called: list = []
    local = tuple(_local(node, i, g, grad_outputs, called) for i, g in enumerate(grad_inputs))
    keep = tuple(_keep(g) for g in grad_outputs), tuple(_keep(g) for g in grad_inputs)
    return Raw(node, count, keep[0], keep[1], local, _saved(node))


def _detached(grads: tuple) -> tuple:
    return tuple(g.detach() if isinstance(g, torch.Tensor) else g for g in grads)
