"""A record of the computation from the leaves to the output, made during the one run.

Only when an extra asks for it (``--check``, ``--plot``, ``--symbolic``,
``--order``, ``--hessian``, ``--jacobian``), a :class:`Recorder` (a
``TorchFunctionMode``) writes down every torch call that reads a tracked tensor:
a leaf that requires grad, or the result of an earlier recorded call.
Everything else the cell uses (model weights that are not leaves, globals,
random draws, Python side effects) is a constant of the record.

:class:`Replay` evaluates the record again as a plain function of some leaves,
with other inputs (a batch of points, float64 copies): the user's code does
not run again, so nothing it prints, appends, steps or draws happens twice.
Random operations on tracked tensors (dropout) replay with the generator state
they had; the caller restores the global generator afterwards.

What the record cannot follow is said, not guessed: values taken out to Python
(``.item()``, ``float()``, ``if x > 0``) are constants for it, an in-place change
through a view stops it, and :func:`check_replay` compares the replay with what
autograd computed before any extra uses it.

``--steps`` alone evaluates nothing again: it only writes the call that made each
backward node (``softmax(z, dim=-1)``, the ``4`` of ``a + 4``). For it a
:class:`NodeCalls` notes just that, following the tensors as the record does, at
a fraction of a :class:`Recorder`'s cost (no copies, nothing to replay).
"""

from __future__ import annotations

import os
import sys
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from .internals import sequence_number

# values taken out of the computation into Python
ESCAPES = {
    "item",
    "__float__",
    "__int__",
    "__bool__",
    "__index__",
    "__complex__",
    "tolist",
    "numpy",
    "__array__",
}
# calls that read no values (or whose result we never replay)
IGNORED = {
    "backward", "register_hook", "register_post_accumulate_grad_hook", "retain_grad", "size", "dim",
    "numel", "stride", "storage_offset", "is_contiguous", "data_ptr", "__len__", "__hash__", "__repr__",
    "__str__", "__format__", "element_size", "nelement", "ndimension", "untyped_storage", "is_floating_point",
    "is_complex", "__reduce_ex__", "__deepcopy__", "_version", "__dir__", "type", "get_device",
}  # fmt: skip
# property getters whose value is computed from the tensor's values
VALUE_PROPERTIES = {"data", "T", "mT", "H", "mH", "real", "imag"}
RANDOM = {
    "rand_like", "randn_like", "randint_like", "bernoulli", "bernoulli_", "normal", "normal_", "uniform_",
    "dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "multinomial", "rrelu", "rrelu_", "poisson", "exponential_", "geometric_", "log_normal_", "cauchy_",
    "random_", "gumbel_softmax",
}  # fmt: skip
SMALL = 4096  # constants up to this many elements are copied when recorded
MAX_BYTES = 512 * 2**20  # the record stops growing past this


def op_name(func: Callable) -> str:
    """``mul``, ``__rmul__``, ``sin`` ...; property getters as ``.data``, ``.grad``."""
    name = getattr(func, "__name__", "") or ""
    if name == "__get__":
        return "." + getattr(getattr(func, "__self__", None), "__name__", "?")
    return name


_INPLACE: dict[str, bool] = {}  # is_inplace, by name


def is_inplace(name: str) -> bool:
    return (name.endswith("_") and not name.endswith("__")) or name in (
        "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__ipow__", "__imod__",
        "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__", "__imatmul__", "__setitem__",
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Ref:
    """Output *index* (in flattened order) of recorded op *op*; index -1: the op's
    first tensor argument after an in-place change that returns nothing."""

    op: int
    index: int


@dataclass(frozen=True, slots=True)
class RootRef:
    root: int


@dataclass
class Root:
    """A leaf tensor that requires grad, with its value when the record first used it."""

    tensor: torch.Tensor
    value: torch.Tensor
    version: int


@dataclass(slots=True)
class Op:
    func: Callable
    name: str
    spec: Any  # pytree spec of (args, kwargs)
    inputs: list[Any]  # flattened args: Ref/RootRef, constants, or plain Python values
    grad_enabled: bool
    rng: torch.Tensor | None
    inplace: bool


@dataclass
class Record:
    """The recorded ops, the roots, and what the record could not follow."""

    ops: list[Op] = field(default_factory=list)
    roots: list[Root] = field(default_factory=list)
    escapes: list[str] = field(default_factory=list)  # .item() and the like, on tracked values
    escaped_at: list[int] = field(default_factory=list)  # each escape's place: the ops recorded before it
    broken: str | None = None  # why the record cannot be used at all
    constants: list[tuple[torch.Tensor, int]] = field(
        default_factory=list
    )  # (tensor, version) kept by reference

    def escapes_before(self, output: Ref | RootRef | None) -> list[str]:
        """The escapes that may have fed *output*: those made before its op (``.numpy()`` for a
        plot after the output was computed cannot change it). All of them where it is not known."""
        if not isinstance(output, Ref):
            return list(self.escapes) if output is None else []
        return [name for name, at in zip(self.escapes, self.escaped_at, strict=True) if at <= output.op]

    def needed(self, output: Ref | RootRef) -> tuple[list[int], set[int]]:
        """The ops (in order) and roots the output depends on."""
        ops: set[int] = set()
        roots: set[int] = set()
        stack: list[Any] = [output]
        while stack:
            ref = stack.pop()
            if isinstance(ref, RootRef):
                roots.add(ref.root)
            elif isinstance(ref, Ref) and ref.op not in ops:
                ops.add(ref.op)
                stack.extend(x for x in self.ops[ref.op].inputs if isinstance(x, (Ref, RootRef)))
        return sorted(ops), roots

    def changed_constants(self) -> bool:
        return any(tensor._version != version for tensor, version in self.constants)


PLAIN = (torch.Tensor, int, float, bool, complex)


def _flatten(args: tuple, kwargs: dict) -> tuple[list[Any], Any]:
    """The arguments as one flat list and what :func:`unflatten` needs to rebuild them: the
    common call (tensors and numbers, no keywords) without pytree's cost (spec: their count)."""
    if not kwargs and all(isinstance(a, PLAIN) for a in args):
        return list(args), len(args)
    return tree_flatten((args, kwargs))


def unflatten(flat: list[Any], spec: Any) -> tuple[tuple, dict]:
    if isinstance(spec, int):
        return tuple(flat), {}
    return tree_unflatten(flat, spec)


def _weak(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        try:
            return weakref.ref(value)
        except TypeError:
            return None
    return None


def _constants_passed(flat: list[Any], refs: list[Any]) -> tuple:
    """Weak references to the tensors a call was passed as constants (not tracked), by position
    (None elsewhere): --steps names a constant the cell named."""
    return tuple(_weak(value) if ref is None else None for value, ref in zip(flat, refs, strict=True))


_OURS_OR_TORCH = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # torchgrad_magic/
    os.path.dirname(torch.__file__),
    os.path.abspath(warnings.__file__),  # (the warning machinery that called showwarning)
)


def _users_frame() -> Any:
    """The innermost frame of the user's code (not ours, not torch's) on the stack."""
    frame: Any = sys._getframe(2)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_OURS_OR_TORCH):
        frame = frame.f_back
    return frame


class _AtUsersLine(TorchFunctionMode):
    """A torch-function mode whose calls' warnings (PyTorch's "Converting a tensor with
    requires_grad=True to a scalar") show at the cell's own line, as a plain run shows them."""

    def __enter__(self) -> Any:
        self._shown = warnings.showwarning
        self._at_users_line = self._show_at_users_line
        warnings.showwarning = self._at_users_line
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            if warnings.showwarning is self._at_users_line:
                warnings.showwarning = self._shown

    def _show_at_users_line(self, message, category, filename, lineno, file=None, line=None) -> None:
        """A warning a call raised, shown at the cell's own line (not at ours)."""
        if filename == __file__:
            frame = _users_frame()
            if frame is not None:
                filename, lineno, line = frame.f_code.co_filename, frame.f_lineno, None
        self._shown(message, category, filename, lineno, file, line)


class Recorder(_AtUsersLine):
    """Writes down the torch calls that read tracked tensors (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.record = Record()
        self._where: dict[int, tuple[Ref | RootRef, int]] = {}  # id(tensor) -> (ref, its _version then)
        self._keep: list[torch.Tensor] = []  # so that ids stay unique while recording
        self._bytes = 0
        # id(grad_fn) -> (grad_fn, op index, weak references to the tensors passed): for --steps
        self.node_ops: dict[int, tuple[Any, int, tuple]] = {}

    def ref(self, tensor: torch.Tensor) -> Ref | RootRef | None:
        """Where *tensor* is in the record now (None: not computed from a tracked tensor;
        a leaf that requires grad is its own root: ``y = x``)."""
        bound = self._where.get(id(tensor))
        if bound is not None and bound[1] == tensor._version:
            return bound[0]
        return self._track(tensor) if tensor.requires_grad and tensor.grad_fn is None else None

    def _track(self, value: Any) -> Ref | RootRef | None:
        if not isinstance(value, torch.Tensor) or value.is_inference():  # inference tensors: constants
            return None
        bound = self._where.get(id(value))
        if bound is not None and bound[1] == value._version:
            return bound[0]
        if value.requires_grad and value.grad_fn is None:  # a leaf: a root (again, after a change)
            record = self.record
            snapshot = value.detach().clone() if value.numel() <= 10 * SMALL else value.detach()
            if snapshot is not value and snapshot.data_ptr() == value.data_ptr():
                record.constants.append((value, value._version))
            record.roots.append(Root(value, snapshot, value._version))
            ref = RootRef(len(record.roots) - 1)
            self._bind(value, ref)
            return ref
        if bound is not None:  # changed in a way the record did not see
            self.record.broken = self.record.broken or "changed"
        return None

    def _bind(self, tensor: torch.Tensor, ref: Ref | RootRef) -> None:
        if tensor.is_inference():  # made under inference_mode: no grad, no version counter
            return
        if id(tensor) not in self._where:
            self._keep.append(tensor)
            self._bytes += tensor.numel() * tensor.element_size() if tensor.layout == torch.strided else 0
        self._where[id(tensor)] = (ref, tensor._version)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        """The call, once, and its record. What the record cannot follow (torch.func's wrapped
        tensors, inference tensors, ...) stops the record; the cell's call itself goes on."""
        kwargs = kwargs or {}
        state: dict[str, Any] = {}
        try:
            return self._record(func, types, args, kwargs, state)
        except Exception:
            if state.get("raised"):  # the cell's own error: it is the cell's
                raise
            self.record.broken = self.record.broken or "failed"
            if "out" in state:
                return state["out"]
            return func(*args, **kwargs)

    def _call(self, state: dict[str, Any], func: Any, args: Any, kwargs: Any) -> Any:
        try:
            out = func(*args, **kwargs)
        except BaseException:
            state["raised"] = True
            raise
        state["out"] = out
        return out

    def _record(self, func, types, args, kwargs, state):
        call = self._call
        record = self.record
        name = op_name(func)
        if (
            record.broken == "too big"
            or name in IGNORED
            or (name.startswith(".") and name[1:] not in VALUE_PROPERTIES)
        ):
            return call(state, func, args, kwargs)
        if name == "__iter__" and args and isinstance(args[0], torch.Tensor):
            return iter(self.__torch_function__(torch.Tensor.unbind, types, (args[0], 0)))
        flat, spec = _flatten(args, kwargs)
        refs, target, constant = self._refs(flat)
        if refs is None:
            return call(state, func, args, kwargs)
        if name in ESCAPES:
            record.escapes.append(name)
            record.escaped_at.append(len(record.ops))
            return call(state, func, args, kwargs)
        inplace = _INPLACE.get(name)
        if inplace is None:
            inplace = _INPLACE[name] = is_inplace(name)
        if inplace and isinstance(refs[0], RootRef):
            # an update of a leaf (w -= lr * w.grad, optimizer.step()): its next use is a new root
            out = call(state, func, args, kwargs)
            for value, ref in zip(flat, refs, strict=True):
                if isinstance(ref, RootRef):
                    self._where.pop(id(value), None)
            return out
        if inplace and target is not None and target._is_view():
            record.broken = record.broken or "view"
        rng = torch.get_rng_state() if name in RANDOM else None
        grad_enabled = torch.is_grad_enabled()
        out = call(state, func, args, kwargs)
        if constant:
            inputs = [
                ref if ref is not None else self._constant(v) for v, ref in zip(flat, refs, strict=True)
            ]
        else:  # (no tensor among the constants: they are kept as they are)
            inputs = [ref if ref is not None else v for v, ref in zip(flat, refs, strict=True)]
        record.ops.append(Op(func, name, spec, inputs, grad_enabled, rng, inplace))
        self._outputs(out, len(record.ops) - 1, flat, refs if constant else None)
        if inplace and out is None and target is not None:
            self._bind(target, Ref(len(record.ops) - 1, -1))
        if self._bytes > MAX_BYTES:
            record.broken = "too big"
            self._where.clear()
            self._keep.clear()
            self.node_ops.clear()
        return out

    def _refs(self, flat: list[Any]) -> tuple[list[Any] | None, torch.Tensor | None, bool]:
        """Where each argument is in the record (None: a constant; the list itself None when no
        argument is tracked), the first tensor argument, and whether a tensor is a constant."""
        where, refs = self._where, []
        target, tracked, constant = None, False, False
        for value in flat:
            ref = None
            if isinstance(value, torch.Tensor):
                target = value if target is None else target
                bound = where.get(id(value))
                ref = bound[0] if bound is not None and bound[1] == value._version else self._track(value)
                tracked, constant = tracked or ref is not None, constant or ref is None
            refs.append(ref)
        return (refs if tracked else None), target, constant

    def _outputs(self, out: Any, index: int, flat: list[Any], refs: list[Any] | None) -> None:
        """Bind each tensor *out* holds to op *index*; a backward node it made is that op's
        (with the tensors passed as constants: *refs* None when there were none)."""
        passed: tuple | None = None if refs is not None else ()
        for i, value in enumerate((out,) if isinstance(out, torch.Tensor) else tree_flatten(out)[0]):
            if isinstance(value, torch.Tensor):
                self._bind(value, Ref(index, i))
                node = value.grad_fn
                if node is not None and id(node) not in self.node_ops:
                    if passed is None:
                        passed = _constants_passed(flat, refs)  # type: ignore[arg-type]
                    self.node_ops[id(node)] = (node, index, passed)

    def _constant(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.numel() <= SMALL and value.layout == torch.strided:
                return value.detach().clone()
            self.record.constants.append((value, value._version))
            return value.detach()
        return value

    def finish(self) -> Record:
        self._keep.clear()
        self.node_ops.clear()
        return self.record


_NOT_NOTED = IGNORED | ESCAPES  # (NodeCalls: calls that read no values, or take them out)
# What NodeCalls notes for a tensor argument: a plain tuple whose first item says which (plain
# tuples of numbers: the garbage collector stops following them; a flattened argument is never
# a plain tuple). Read them with :func:`noted`.
NODE = "node"  # (NODE, id(node), output_nr): a result of a noted call; id -1: the record cannot tell
LEAF = "leaf"  # (LEAF, id(tensor)): a leaf that requires grad
MADE = "made"  # (MADE, id(tensor)): a result without grad of a noted call (a mask: x > 0)
CONST = "const"  # (CONST, its value up to 4 elements or None, its shape, a weak reference to it)


def noted(item: Any) -> str | None:
    """Which of NODE, LEAF, MADE, CONST a :class:`NodeCalls` argument is (None: a value passed)."""
    return item[0] if type(item) is tuple else None


class NodeCalls(_AtUsersLine):
    """For ``--steps`` when nothing evaluates the record again: which torch call made each backward
    node, with its arguments as ``--steps`` names them (NODE, LEAF, MADE, CONST: see
    :func:`noted`; other arguments as passed). It follows the tensors as
    :class:`Recorder` does (a call is noted when it reads a leaf that requires grad or a result of
    a noted call) but copies nothing (but a constant tensor of up to 4 elements), holds no tensor
    (but a result without grad, which a later call may read) and keeps per call only tuples of
    numbers and names, which the garbage collector stops following: several times cheaper per
    call than a :class:`Recorder`.

    ``calls``: id(node) -> (its sequence number, call name, pytree spec, arguments), the first call
    that gave the node; ``made``: id(tensor) -> (its version, the node its call made or -1, which
    output, call name, arguments) for a result without grad (a mask), the tensor kept."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[int, tuple[int, str, Any, tuple]] = {}
        self.made: dict[int, tuple[int, int, int, str, tuple]] = {}
        self._same: dict[int, tuple[torch.Tensor, int, Any]] = {}  # a node's tensor a call gave back
        self._held: list[torch.Tensor] = []  # (the results in ``made`` and ``_same``: ids stay theirs)

    def ref(self, tensor: torch.Tensor) -> None:
        """(A :class:`Recorder`'s; nothing here evaluates the record again.)"""
        return None

    def finish(self) -> None:
        """The run is over: let go of the tensors held (the notes stay)."""
        self._held.clear()
        self._same.clear()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        """The call, once; noted when it reads a followed tensor (never breaking the call)."""
        kwargs = kwargs or {}
        name = op_name(func)
        if name in _NOT_NOTED or (name[:1] == "." and name[1:] not in VALUE_PROPERTIES):
            return func(*args, **kwargs)
        if name == "__iter__" and args and isinstance(args[0], torch.Tensor):
            return iter(self.__torch_function__(torch.Tensor.unbind, types, (args[0], 0)))
        try:
            items, spec = self._items(args, kwargs)
        except Exception:
            items = None
        out = func(*args, **kwargs)
        if items is not None:
            self._note(out, name, spec, items)
        return out

    def _items(self, args: tuple, kwargs: dict) -> tuple[tuple | None, Any]:
        """The arguments, flattened, as noted (None when none of them is followed), and their spec."""
        flat: Any = args
        spec: Any = len(args)
        if kwargs or not all(isinstance(a, PLAIN) for a in args):
            flat, spec = tree_flatten((args, kwargs))
        items: list[Any] = []
        followed = False
        for value in flat:
            if isinstance(value, torch.Tensor):
                value = self._item(value)
                followed = followed or value[0] != CONST
            items.append(value)
        return (tuple(items) if followed else None), spec

    def _item(self, tensor: torch.Tensor) -> tuple:
        if tensor.is_inference():  # (no grad, no version counter: a constant)
            return _const_in(tensor)
        key = id(tensor)
        made = self.made.get(key)
        if made is not None and made[0] == tensor._version:
            return (MADE, key)
        if tensor.requires_grad:
            node = tensor.grad_fn
            if node is None:
                return (LEAF, key)
            call = self.calls.get(id(node))
            if call is not None and call[0] == sequence_number(node):
                same = self._same.get(key)
                if same is not None and same[1] == tensor._version and same[2] is node:
                    return (NODE, -1, -1)
                return (NODE, id(node), tensor.output_nr)
        return _const_in(tensor)

    def _note(self, out: Any, name: str, spec: Any, items: tuple) -> None:
        """The nodes *out*'s tensors have: made by this call (unless an earlier one made them)."""
        try:
            if type(out) is torch.Tensor or isinstance(out, torch.Tensor):
                node = out.grad_fn
                if node is not None:  # (the common call: one tensor out, one node)
                    seq, known = sequence_number(node), self.calls.get(id(node))
                    if known is None or known[0] != seq:
                        self.calls[id(node)] = (seq, name, spec, items)
                        return
                self._note_all((out,), name, spec, items)
            else:
                self._note_all(tree_flatten(out)[0], name, spec, items)
        except Exception:  # (not noted: the steps fall back on the graph)
            pass

    def _note_all(self, outs: list[Any] | tuple, name: str, spec: Any, items: tuple) -> None:
        made_here, fresh = -1, set()
        for value in outs:
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                node = value.grad_fn
                known = self.calls.get(id(node))
                if known is None or known[0] != sequence_number(node):
                    self.calls[id(node)] = (sequence_number(node), name, spec, items)
                    made_here = id(node)
                    fresh.add(made_here)
                elif id(node) not in fresh:  # given back as it was: the node is an earlier call's
                    self._same[id(value)] = (value, value._version, node)
                    self._held.append(value)
        for index, value in enumerate(outs):
            if isinstance(value, torch.Tensor) and value.grad_fn is None and not value.is_inference():
                self.made[id(value)] = (value._version, made_here, index, name, items)
                self._held.append(value)


def _const_in(tensor: torch.Tensor) -> tuple:
    """(CONST, ...) for a tensor passed as a constant: its value as --steps writes it (up to 4
    elements: a copy, as :class:`Recorder` keeps it), its shape, a weak reference (its name)."""
    copy = None
    if tensor.numel() <= 4:
        copy = tensor.detach().clone() if tensor.layout == torch.strided else tensor.detach()
    return (CONST, copy, tuple(tensor.shape), _weak(tensor))


class Replay:
    """The recorded computation of *output* as a function of the leaves in *leaves*
    (name -> root index); other roots keep the values they had."""

    def __init__(self, record: Record, output: Ref | RootRef, leaves: dict[str, int], summed: bool):
        self.record, self.output, self.leaves, self.summed = record, output, leaves, summed
        self.ops, self.roots = record.needed(output)
        self.random = any(record.ops[i].rng is not None for i in self.ops)

    def __call__(self, values: dict[str, torch.Tensor], cast: torch.dtype | None = None) -> torch.Tensor:
        """The output (summed when the report sums it) for *values* (name -> tensor);
        *cast*: floating tensors of the record are converted to that dtype (float64 checks)."""
        result = self.unsummed(values, cast)
        return result.sum() if self.summed else result

    def unsummed(self, values: dict[str, torch.Tensor], cast: torch.dtype | None = None) -> torch.Tensor:
        record = self.record
        by_root = {self.leaves[name]: value for name, value in values.items() if name in self.leaves}

        def convert(value: Any) -> Any:
            if cast is not None and isinstance(value, torch.Tensor):
                if value.is_floating_point():
                    return value.to(cast)
                if value.is_complex():
                    return value.to(torch.complex128)
            return value

        def resolve(item: Any, env: dict[int, list[Any]]) -> Any:
            if isinstance(item, RootRef):
                return by_root[item.root] if item.root in by_root else convert(record.roots[item.root].value)
            if isinstance(item, Ref):
                return env[item.op][item.index]
            return convert(item)

        env: dict[int, list[Any]] = {}
        for index in self.ops:
            op = record.ops[index]
            flat = [resolve(item, env) for item in op.inputs]
            if op.inplace:
                first = next(i for i, v in enumerate(flat) if isinstance(v, torch.Tensor))
                flat[first] = flat[first].clone()  # never change a constant or an earlier value
            args, kwargs = unflatten(flat, op.spec)
            if op.rng is not None:
                torch.set_rng_state(op.rng)
            with torch.set_grad_enabled(op.grad_enabled and torch.is_grad_enabled()):
                out = op.func(*args, **kwargs)
            outs, _ = tree_flatten(out)
            if op.inplace:
                target = next(v for v in flat if isinstance(v, torch.Tensor))
                outs = outs or [target]
                outs.append(target)  # index -1
            env[index] = outs
        return resolve(self.output, env)


def replay_for(
    record: Record, output_ref: Any, leaves: dict[str, torch.Tensor], summed: bool
) -> Replay | str:
    """A Replay of the output in terms of *leaves*, or the message id saying why there is none."""
    if record.broken is not None:
        known = {"view": "rec.view", "too big": "rec.too_big", "failed": "rec.cannot_follow"}
        return known.get(record.broken, "rec.changed")
    if output_ref is None:
        return "rec.no_output"
    if record.changed_constants():
        return "rec.changed"
    names: dict[str, int] = {}
    _, roots = record.needed(output_ref)
    for index in sorted(roots):
        root = record.roots[index]
        for name, leaf in leaves.items():
            if root.tensor is leaf:
                names[name] = index  # the latest generation the output used
    return Replay(record, output_ref, names, summed)
