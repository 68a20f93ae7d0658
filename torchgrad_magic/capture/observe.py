"""Watching the one run of the cell: every ``backward()`` and ``torch.autograd.grad()``
at the moment it runs, and PyTorch's warnings about reading a non-leaf's ``.grad``.

Nothing here runs autograd itself or writes a ``.grad``. For each call into the
autograd engine (both ``Tensor.backward``/``torch.autograd.backward`` and
``torch.autograd.grad`` go through one place, :func:`engine_slot`), the leaves
the cell can name get a temporary tensor hook, so the grad each call adds is
caught exactly as autograd computed it, and their values are copied as they
were then. Later changes (an optimizer step, ``w.grad = None``, ``zero_()``)
cannot change what was caught.

The cost per call is a scan of the namespace and one hook per leaf; the cell's
tensor operations are not watched (that is :mod:`.record`'s job, only when an
extra asks for it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import linecache
import operator
import re
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from .. import format as fmt
from . import copies
from .copies import (
    Frozen,
    all_zero,
    apart,
    by_reference,
    fresh_row,
    keep,
    small_zero,
    snapshot,
    take_probes,
    thaw,
    unchanged,
)
from .internals import (
    accumulate_grad_class,
    engine_slot,
    has_post_accumulate_hooks,
    is_transformed,
    next_sequence_number,
    nodes_behind,
    outside_transforms,
)
from .paths import is_module as _is_module
from .paths import is_tensor, members, value_at
from .repeat import NOT_REACHED, LoopPlan, LoopRows, grads_now, reached_all, reached_any

NONLEAF_WARNING = r"The \.grad attribute of a Tensor that is not a leaf Tensor"
_GRAD_READ = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\.grad\b")


_REGISTER_HOOK = torch.Tensor.register_hook  # the observer's own hooks (not watched: see Observer._watch)
HELPER_MODULES = ("torch.autograd.functional", "torch.autograd.gradcheck")  # their calls are theirs
HELPER_DEPTH = 48  # frames looked at (a notebook cell runs about 25 deep)


def torch_helper(namespace: dict[str, Any] | None = None) -> str | None:
    """``torch.autograd.functional.jacobian`` when the engine call being made comes from inside
    one of torch's differentiation helpers (anywhere in the frames above, the user's own function
    that a helper calls included), else None. The walk stops at the cell's own top level (its
    frame runs in *namespace*): a handful of frames in a training loop."""
    helpers = _helper_globals()
    frame: Any = sys._getframe(1)
    found = None
    for _ in range(HELPER_DEPTH):  # also past the user's function a helper calls (jacobian(g, x))
        if frame is None or (frame.f_globals is namespace and frame.f_code.co_name == "<module>"):
            break
        module = helpers.get(id(frame.f_globals))
        if module is not None:
            found = f"{module}.{frame.f_code.co_name}"  # the outermost helper frame wins
        frame = frame.f_back
    return found


_HELPERS: dict[int, str] = {}


def _helper_globals() -> dict[int, str]:
    """id(the helper modules' globals) -> module name (imported with torch.autograd)."""
    if not _HELPERS:
        for name in HELPER_MODULES:
            module = sys.modules.get(name)
            if module is not None:
                _HELPERS[id(vars(module))] = name
    return _HELPERS


# ---------------------------------------------------------------------------
# what one call was
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Leaf:
    """A leaf tensor as one call saw it."""

    name: str
    tensor: torch.Tensor
    value: torch.Tensor  # its value at the call (a copy, or the tensor itself when big)
    version: int  # tensor._version at the call: a later in-place change shows
    grad: torch.Tensor | None  # what this call computed for it (None: not reached)
    grad_after: torch.Tensor | None  # .grad right after the call (backward: grad plus what was there)
    grad_before: torch.Tensor | None  # .grad before the call (a copy when small), when there was one
    grad_version: int = 0  # grad._version at the call: a kept (not copied) grad changed later shows
    grad_before_text: str | None = None  # .grad before the call, as the report shows it
    after_version: int = -1  # ._version of .grad right after the call (a later in-place change shows)
    added_calls: int = 1  # backward() calls whose grads .grad holds, added up (this cell's)
    held_before: bool = False  # .grad already held grads from before this cell when they started
    grad_probe: torch.Tensor | None = None  # a few elements of a big (kept, not copied) grad: see unchanged()
    after_probe: torch.Tensor | None = None  # the same of grad_after

    @property
    def kept(self) -> bool:
        """Whether value and grad are still what they were at the call."""
        return self.value_kept and self.grad_kept

    @property
    def value_kept(self) -> bool:
        """Whether the value is still what it was at the call (copied, or not changed since)."""
        value_ok = self.value is not self.tensor and apart(self.value, self.tensor)
        return value_ok or self.tensor._version == self.version

    @property
    def grad_kept(self) -> bool:
        """Whether the grad (and .grad after the call) are still what the call left."""
        return unchanged(self.grad, self.grad_probe, self.grad_version) and unchanged(
            self.grad_after, self.after_probe, self.after_version
        )


@dataclass(eq=False)  # (not frozen: made at every backward() of a loop, its __init__ is kept cheap)
class Call:
    """One call into the autograd engine made by the cell.

    A training loop makes hundreds of calls and the report shows one: each call keeps only plain
    tuples (``seen``: :class:`Leaf`'s fields) and the gradients it was given; the
    :class:`Leaf` objects and ``gradient_given`` are made when first asked."""

    index: int  # 1, 2, ...
    kind: str  # "backward" or "grad"
    outputs: tuple[torch.Tensor, ...]
    rows: Any  # per leaf this call reached, a tuple of Leaf's fields (or a LoopRows: see seen)
    intermediates: dict[str, torch.Tensor | None]  # named non-leaf tensors' grads (retain_grad)
    create_graph: bool
    gradients: tuple = ()  # what the engine was given: backward(gradient=...) / grad(grad_outputs=...)
    higher_order: bool = False  # differentiates a grad made with create_graph=True
    record_ref: Any = None  # where the output sits in the record (extras only)
    trace: Any = None  # steps.Tracer of this call (--steps only)
    inner: tuple[str, ...] = ()  # leaves whose grads came from a pass run inside this one
    big: bool = False  # it holds a grad by reference (too big to copy): see released()
    unwalked: bool = False  # its leaves were the last call's, not found by a walk: see Observer.result()
    unnamed: int = 0  # leaves it reached that have no name here (not shown: a note counts them)
    chosen: bool = False  # given its inputs (grad(y, [a]), backward(inputs=[a])): it left the others out

    @property
    def output(self) -> torch.Tensor:
        return self.outputs[0]

    @property
    def seen(self) -> tuple[tuple, ...]:
        """Per leaf this call reached, a tuple of :class:`Leaf`'s fields (a loop's call keeps its
        copies in a :class:`.repeat.LoopRows`: made into these tuples when first read)."""
        rows = self.rows
        if type(rows) is not tuple:
            rows = self.rows = rows.rows()
        return rows

    def released(self) -> bool:
        """Whether the cell let go of a grad this call left in ``.grad`` (``zero_grad()`` set it to
        None): then only this record holds it."""
        return any(row[5] is not None and kept_grad(row[1]) is None for row in self.seen)

    @cached_property
    def leaves(self) -> dict[str, Leaf]:
        return {row[0]: Leaf(*map(thaw, row)) for row in self.seen}

    @cached_property
    def gradient_given(self) -> bool:
        """Whether the cell gave weights (backward() on a scalar passes ones to the engine:
        only other weights are a real v)."""
        return any(isinstance(g, torch.Tensor) and not _all_ones(g) for g in self.gradients)


@dataclass(frozen=True)
class Observation:
    """What the one run showed."""

    calls: tuple[Call, ...]  # heavy data is kept for the primary call only
    call_count: int
    nonleaf_reads: tuple[str, ...]  # names whose .grad the cell read while it was None
    helpers: tuple[tuple[str, int], ...] = ()  # (torch.autograd.functional.jacobian, its calls), ...
    saved_hooks: bool = False  # the cell entered saved_tensors_hooks (checkpoint, save_on_cpu): their
    # unpack hooks are the user's code, run by any backward pass through what was saved then
    hooks_added: bool = False  # the cell called a tensor's register_hook() or retain_grad()
    first_node: int = -1  # sequence number of the first backward node the cell could make (-1: unknown)

    @property
    def primary(self) -> Call | None:
        """The call the report shows: the last one that is not a higher-order call."""
        for call in reversed(self.calls):
            if not call.higher_order:
                return call
        return self.calls[-1] if self.calls else None

    @property
    def higher(self) -> tuple[Call, ...]:
        return tuple(c for c in self.calls if c.higher_order)


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------
_SETTLED: dict[int, list | None] = {}  # id(namespace) -> its scan, while the namespace holds still


@contextlib.contextmanager
def namespace_settled(namespace: dict[str, Any]) -> Iterator[None]:
    """After the cell: the namespace holds still while the report is made, so one scan of it
    serves every stage that names tensors (the table, a model's parameters, the notes)."""
    _SETTLED[id(namespace)] = None
    try:
        yield
    finally:
        _SETTLED.pop(id(namespace), None)


def tensors_and_modules(namespace: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """The namespace's public tensors and ``nn.Module`` objects in its order, as (name, value,
    is a module): one pass, a type's kind decided once (10,000 tensors take a few ms)."""
    settled = _SETTLED.get(id(namespace))
    if settled is not None:
        return settled
    found: list[tuple[str, Any, bool]] = []
    Module = _module_class()
    kinds: dict[type, int] = {}
    for name, value in list(namespace.items()):
        kind = kinds.get(type(value))
        if kind is None:
            is_module = Module is not None and issubclass(type(value), Module)  # (type alone: no user code)
            kind = kinds[type(value)] = 1 if is_tensor(value) else 2 if is_module else 0
        if kind and not name.startswith("_") and name not in ("In", "Out"):
            found.append((name, value, kind == 2))
    if id(namespace) in _SETTLED:
        _SETTLED[id(namespace)] = found
    return found


def tensor_names(namespace: dict[str, Any], preferred: tuple[str, ...] = ()) -> dict[int, str]:
    """id -> name for the tensors a user can name: top-level variables (preferred
    names first) and the parameters of top-level ``nn.Module`` objects."""
    names: dict[int, str] = {}
    for name in preferred:
        value = namespace.get(name)
        if isinstance(value, torch.Tensor):
            names.setdefault(id(value), name)
    for name, value, is_module in tensors_and_modules(namespace):
        if not is_module:
            names.setdefault(id(value), name)
            continue
        for pname, param in value.named_parameters(remove_duplicate=False):
            names.setdefault(id(param), f"{name}.{pname}")
    return names


class TensorNames(Mapping[int, str]):
    """id -> name for the tensors a user can name, as :func:`tensor_names` gives them, but made from
    the names the cell's code uses (*first*: --wrt and what it assigned, then the names it reads):
    top-level tensors and the parameters of top-level modules (``net.0.weight``). The rest of the
    namespace is looked at only when :meth:`cover` is asked to name a tensor none of those names is
    (a leaf used through an earlier cell's function): a namespace's size costs nothing otherwise."""

    def __init__(self, namespace: dict[str, Any], first: tuple[str, ...], read: tuple[str, ...] = ()):
        self._namespace = namespace
        self._table: dict[int, str] = {}
        self._scanned = False
        self._add(first, every=True)
        self._add(read, every=False)

    def _add(self, names: tuple[str, ...], every: bool) -> None:
        for name in dict.fromkeys(names):
            if not every and (name.startswith("_") or name in ("In", "Out")):
                continue
            value = value_at(self._namespace, name)
            if is_tensor(value) or _is_module(value):
                self._name(name, value)
            else:  # params = [w, b] -> params[0]; a plain object's model.w, trainer.model.0.weight
                for path, member in members(name, value):
                    self._name(path, member)

    def _name(self, name: str, value: Any) -> None:
        """*value* (a tensor) under *name*, or a module's parameters under ``name.0.weight``."""
        if is_tensor(value):
            self._table.setdefault(id(value), name)
            return
        for pname, param in value.named_parameters(remove_duplicate=False):
            self._table.setdefault(id(param), f"{name}.{pname}")

    def cover(self, tensors: Iterable[torch.Tensor]) -> TensorNames:
        """Names for *tensors* too, where the namespace has them: one scan of it, the first time one
        of them has no name yet."""
        if not self._scanned and any(id(t) not in self._table for t in tensors):
            self._scanned = True
            for key, name in tensor_names(self._namespace).items():
                self._table.setdefault(key, name)
        return self

    def __getitem__(self, key: int) -> str:
        return self._table[key]

    def __iter__(self) -> Iterator[int]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


def _module_class() -> Any:
    import sys

    nn = sys.modules.get("torch.nn")
    return getattr(nn, "Module", None)


def _engine_args(args: tuple, kwargs: dict) -> tuple[tuple, Any, bool, bool, tuple]:
    """(outputs, gradients, accumulate into .grad, create_graph, inputs) of a ``run_backward`` call."""
    outputs = args[0] if args else kwargs.get("t_outputs", ())
    outputs = tuple(o for o in outputs if isinstance(o, torch.Tensor))
    gradients = args[1] if len(args) > 1 else kwargs.get("grad_tensors", ())
    accumulate = kwargs.get("accumulate_grad", args[6] if len(args) > 6 else True)
    create = bool(args[3]) if len(args) > 3 else False
    inputs = tuple(args[4]) if len(args) > 4 and args[4] else ()
    return outputs, gradients, accumulate, create, inputs


def _walked_again(
    leaves: dict, held: tuple[dict, dict, dict], found: dict, others: dict
) -> tuple[dict, tuple]:
    """The leaves a walk after the call *found*, with what their ``.grad`` held before it where the
    call started from them, or where it was one of the cell's *others* (id -> a copy of its
    ``.grad`` then); a leaf it did not expect otherwise: nothing, as for a fresh leaf."""
    was = {id(tensor): name for name, tensor in leaves.items()}
    before, before_text, before_zero = {}, {}, {}
    for name, tensor in found.items():
        old = was.get(id(tensor))
        before[name] = held[0].get(old) if old is not None else others.get(id(tensor))
        if old is None and id(tensor) in others:
            before_zero[name] = False
        if old is not None and old in held[1]:
            before_text[name] = held[1][old]
        if old is not None and old in held[2]:
            before_zero[name] = held[2][old]
    return dict(found), (before, before_text, before_zero)


def _added_to(after: torch.Tensor, had: torch.Tensor) -> bool:
    """Whether ``.grad`` now differs from the copy taken before the call (one the call added to
    without a hook of ours: a leaf that joined it)."""
    if after is had or after.layout != torch.strided or after.shape != had.shape or after.dtype != had.dtype:
        return False
    return not torch.equal(after, had)


def _held_others(others: list[tuple]) -> dict[int, torch.Tensor]:
    """A copy of each small ``.grad`` the cell's other leaves hold (:func:`.repeat.grads_now`'s
    triples), by the leaf's id: one that joins the call is added to in place, and its own grad
    is then what the call added (see :meth:`Observer._seen`)."""
    held = {}
    for tensor, grad, _ in others:
        if grad is not None and grad.layout == torch.strided and grad.numel() <= copies.SNAPSHOT_LIMIT:
            held[id(tensor)] = snapshot(grad)
    return held


def _held_grads(leaves: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
    """What each leaf's ``.grad`` holds before the call: a copy (None where there is none, or all
    zeros: ``w.grad.zero_()`` in a loop, 0 + g is this call's g), the report's words for a big one
    (not copied), and whether it was all zeros."""
    before: dict[str, torch.Tensor | None] = {}
    before_text: dict[str, str] = {}
    before_zero: dict[str, bool] = {}
    for n, t in leaves.items():
        g = kept_grad(t)
        if g is None:
            before[n] = None
            continue
        small = g.numel() <= copies.SNAPSHOT_LIMIT and g.layout == torch.strided
        if small_zero(g) if small else all_zero(g):
            before[n] = None  # (zero_grad(set_to_none=False), .grad.zero_(): 0 + g is this call's g)
            continue
        before[n] = g = snapshot(g)
        before_zero[n] = False
        if not small:  # a big .grad is not copied: what the report says of it is taken now
            before_text[n] = fmt.values(g)
    return before, before_text, before_zero


def graph_functions(outputs: tuple[torch.Tensor, ...], limit: int | None = None) -> set[int]:
    """ids of the backward nodes behind *outputs* (stops after *limit* nodes)."""
    return set(nodes_behind([t for t in outputs if isinstance(t, torch.Tensor)], limit)[0])


_NOT_REPEATED = object()  # Observer._repeat: this call takes the long way
_REQUIRES_GRAD = operator.attrgetter("requires_grad")
_ANOMALY = torch.is_anomaly_enabled


class _Pending:
    """One engine call of the cell's, between the engine's run and :meth:`Observer._remember`."""

    __slots__ = ("accumulate", "args", "caught", "held", "leaves", "nested", "outputs", "same")

    def __init__(self, args: tuple, outputs: tuple, accumulate: bool, leaves: dict, held: tuple,
                 caught: dict, same: Any, nested: Any):  # fmt: skip
        self.args, self.outputs, self.accumulate, self.leaves = args, outputs, accumulate, leaves
        self.held, self.caught, self.same, self.nested = held, caught, same, nested

    @property
    def create(self) -> bool:
        return bool(self.args[3]) if len(self.args) > 3 else False

    @property
    def inputs(self) -> tuple:
        return tuple(self.args[4]) if len(self.args) > 4 and self.args[4] else ()

    @property
    def gradients(self) -> Any:
        return self.args[1] if len(self.args) > 1 else ()


# ---------------------------------------------------------------------------
# the observer
# ---------------------------------------------------------------------------
class Observer:
    """Context manager around the cell's one run (see the module docstring)."""

    def __init__(
        self,
        namespace: dict[str, Any],
        wrt: dict[str, torch.Tensor],
        intermediates: bool = False,
        recorder: Any = None,
        steps: bool = False,
    ):
        self.namespace = namespace
        self.steps = steps
        self.wrt = wrt
        self.written: tuple[str, ...] = ()  # the names the cell's code uses: looked at before a scan
        self.intermediates = intermediates
        self.recorder = recorder
        self.calls: list[Call] = []
        self._holds_big = False  # a call in self.calls holds a grad by reference (Call.big)
        self.helpers: dict[str, int] = {}  # torch helpers that ran backward passes of their own: calls
        self._running = False  # inside the engine: a call made now is part of that call's pass
        self._nested: dict[int, torch.Tensor] | None = None  # leaves such inner passes reached
        self.count = 0
        self.created: set[int] = set()  # grad_fn ids of grads made with create_graph=True
        self.reads: list[str] = []
        self._owner: Any = None
        self._engine: Any = None
        self._filter: Any = None
        self._params: dict[int, list] = {}  # module id -> its named parameters, for this cell
        self._by_name: dict[int, dict] = {}  # module id -> {parameter name: parameter}, for this cell
        self._added: dict[int, tuple[int, bool]] = {}  # id(leaf) -> (calls added up in .grad, held before)
        self._names: dict[int, str] = {}  # id(leaf) -> its name, from the last look at the namespace
        self._last_leaves: tuple[Any, list, dict] = (None, [], {})  # the last call's: key, tensors, names
        self._others_key: Any = None  # the _last_leaves key self._others was found for
        self._others: list[torch.Tensor] = []  # leaves the cell's code names that the last call did not reach
        self._frozen: list[torch.Tensor] = []  # leaves it names that need no grad (yet): X, Y, a frozen w
        self._unnamed_count = 0  # the last walk's leaves with no name here
        self._plan: LoopPlan | None = None  # what a loop's calls on the last walk's leaves share
        self._loop_call: tuple | None = None  # the short way's latest call, made a Call when read
        self._short = not (steps or intermediates)  # the cell's loops may take the short way
        self._shown: Any = None
        self._showwarning: Any = None
        self.saved_hooks = False  # the cell entered saved_tensors_hooks
        self.hooks_added = False  # the cell called a tensor's register_hook() or retain_grad()
        self.first_node = -1  # the sequence number of the first backward node the cell can make
        self._watched: list[tuple[Any, str, Any, Any]] = []  # (owner, name, original, wrapper)

    # ---- context ----------------------------------------------------------
    def __enter__(self) -> Observer:
        owner, attr = engine_slot()
        self._owner, self._engine = owner, getattr(owner, attr)
        setattr(owner, attr, _Engine(self._engine, self))
        # PyTorch's warning about reading a non-leaf's .grad also gives a note. The warning itself
        # is shown exactly as without %%grad: no filter is added (that would change which
        # warnings show, and reset Python's once-per-place records), and every warning that
        # reaches showwarning is passed on unchanged.
        shown = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            try:
                if re.match(NONLEAF_WARNING, str(message)):
                    self._nonleaf_read(filename, lineno)
            finally:
                shown(message, category, filename, lineno, file, line)

        self._shown, self._showwarning = shown, showwarning
        warnings.showwarning = showwarning
        self._warn = warnings.warn  # (a warning raised in backward() is placed past our frames)
        warnings.warn = self._warn_past_us = _past_our_frames(self._warn)
        self.first_node = next_sequence_number()
        Hooks = torch.autograd.graph.saved_tensors_hooks
        self._watch(Hooks, "__enter__", "saved_hooks")  # (checkpoint and save_on_cpu enter one too)
        self._watch(torch.Tensor, "register_hook", "hooks_added")
        self._watch(torch.Tensor, "retain_grad", "hooks_added")
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if warnings.showwarning is self._showwarning:
                warnings.showwarning = self._shown
            if warnings.warn is self._warn_past_us:
                warnings.warn = self._warn
        finally:
            _, attr = engine_slot()
            setattr(self._owner, attr, self._engine)
            for owner, name, original, wrapper in reversed(self._watched):
                if getattr(owner, name) is wrapper:
                    setattr(owner, name, original)
            self._watched.clear()

    def _watch(self, owner: type, name: str, flag: str) -> None:
        """While the cell runs, a call of the public method *owner.name* sets *flag* (then passes
        on): the cell entered ``saved_tensors_hooks`` (their unpack hooks are the user's code in
        the graph), or put a hook on a tensor (then %%grad's own pass goes node by node, running
        none: ``derive/own_pass.py``). Put back in :meth:`__exit__`."""
        original = getattr(owner, name)
        observer = self

        def watched(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            setattr(observer, flag, True)
            return original(*args, **kwargs)

        functools.update_wrapper(watched, original)
        self._watched.append((owner, name, original, watched))
        setattr(owner, name, watched)

    def result(self, tree: Any = None) -> Observation:
        """What the run showed; *tree* (the cell's syntax tree) adds the cell's own reads of a
        non-leaf's ``.grad`` that Python did not warn about again (once per place is its rule)."""
        reads = [*self.reads, *nonleaf_reads(tree, self.namespace)] if tree is not None else self.reads
        return Observation(
            tuple(self._named_now(self._walked(call)) for call in self._settled()),
            self.count,
            tuple(dict.fromkeys(reads)),
            tuple(self.helpers.items()),
            self.saved_hooks,
            self.hooks_added,
            self.first_node,
        )

    def _walked(self, call: Call) -> Call:
        """*call* with the leaves a walk of its graph finds now that it did not record (its leaves
        were taken to be the last call's, and a new one joined them): as they are now."""
        if not call.unwalked:
            return call
        found = self._leaves(call.outputs, ())
        known = {id(row[1]) for row in call.seen}
        added = []
        for name, leaf in found.items():
            grad = leaf.grad
            if id(leaf) not in known and grad is not None:
                added.append(fresh_row(name, leaf, grad))
        return dataclasses.replace(call, rows=(*call.seen, *added)) if added else call

    def _named_now(self, call: Call) -> Call:
        """*call* with its leaves under the names they have now, where a name the loop kept no
        longer stands for its tensor (``w = w.detach()...`` in a loop: the old tensor is unnamed)."""
        stale = [row for row in call.seen if self.namespace_value(row[0]) is not row[1]]
        if not stale:
            return call
        found = self._names_of({id(row[1]) for row in stale}, every_tensor=call.kind == "grad")
        seen = tuple((found.get(id(row[1]), row[0]), *row[1:]) for row in call.seen)
        return dataclasses.replace(call, rows=seen)

    # ---- non-leaf .grad reads -------------------------------------------------
    def _nonleaf_read(self, filename: str, lineno: int) -> None:
        """PyTorch warned of a non-leaf's ``.grad`` read at *filename*:*lineno*: the names read
        there, looked up in the cell's namespace or, inside a function of the cell's, in that
        function's own variables (``def f(t): u = t * 2; print(u.grad)``)."""
        line = linecache.getline(filename, lineno)
        scope: Any = None
        for expr in _GRAD_READ.findall(line):
            value = _lookup(self.namespace, expr)
            if value is None:
                scope = _scope_at(filename, lineno) if scope is None else scope
                value = _lookup(scope, expr)
            if _is_quiet_nonleaf(value):
                self.reads.append(expr)

    # ---- one engine call ----------------------------------------------------
    def run_backward(self, *args: Any, **kwargs: Any) -> Any:
        """The engine's ``run_backward`` while the cell runs (:class:`_Engine` hands every call
        here, with no frame of its own: a loop's step goes through here thousands of times)."""
        __tracebackhide__ = True
        if len(args) == 5 and not (args[3] or args[4] or self._running):  # (as Tensor.backward makes it)
            plan = self._loop_plan(kwargs)
            if plan is not None:  # a loop's next backward(): the short way
                done = self._repeat(plan, self._engine, args, kwargs)
                if done is not _NOT_REPEATED:
                    return done
        return self.run(self._engine, args, kwargs)

    def run(self, engine: Any, args: tuple, kwargs: dict) -> Any:
        """One call into the engine, passed on as it is; a call the cell made is remembered (what
        cannot be recovered later only: the leaves' values and grads at the call, copied)."""
        if self._loop_call is not None:  # (the long way reads what the last call left)
            self._settled()
        outputs, gradients, accumulate, create, inputs = _engine_args(args, kwargs)
        if not self._is_the_cells(outputs, gradients, accumulate):
            return engine.run_backward(*args, **kwargs)
        higher = bool(self.created) and bool(self.created & graph_functions(outputs, 10_000))
        self._let_go_of_released(higher)
        same: tuple | None = None if inputs or create or higher or self.steps else self._same_leaves()
        leaves = same[0] if same is not None else self._leaves(outputs, inputs)
        if same is not None:  # (a leaf the last call did not reach may join with a grad in .grad)
            same = (*same, _held_others(same[2]))
        tracer = None
        if self.steps and not higher:
            from .tracer import Tracer

            tracer = Tracer(outputs)
        held = _held_grads(leaves)
        caught: dict[str, torch.Tensor] = {}
        inter = self._intermediates(outputs) if self.intermediates else {}
        result, nested = self._engine_run(engine, (args, kwargs), leaves, held[0], caught, inter, tracer)
        if not accumulate and inputs:  # grad(): the result is the grads, in inputs' order
            by_id = {id(t): g for t, g in zip(inputs, result, strict=False)}
            for name, leaf in leaves.items():
                if by_id.get(id(leaf)) is not None:
                    caught.setdefault(name, by_id[id(leaf)])
        pending = _Pending(args, outputs, accumulate, leaves, held, caught, same, nested)
        return self._remember(pending, result, higher=higher, inter=inter, tracer=tracer)

    def _remember(self, pending: _Pending, result: Any, higher: bool = False, inter: dict | None = None,
                  tracer: Any = None) -> Any:  # fmt: skip
        """After the engine ran: the call as the report may show it (*result* is passed on)."""
        outputs, leaves, held, inputs = pending.outputs, pending.leaves, pending.held, pending.inputs
        unwalked = pending.same is not None
        if unwalked and (not reached_all(pending.same[1]) or reached_any(pending.same[2])):  # new leaves:
            self._last_leaves = (None, [], {})  # walk the graph now (its nodes are still there)
            leaves, held = _walked_again(leaves, held, self._leaves(outputs, inputs), pending.same[3])
            unwalked = False
        inner = self._inner_leaves(leaves, held[0], pending.nested)
        self.count += 1
        if pending.create:
            self._remember_created(pending.caught, leaves)
        seen = self._seen(leaves, pending.caught, held, pending.accumulate)
        inter = inter or {}
        call = Call(
            index=self.count,
            kind="backward" if pending.accumulate else "grad",
            outputs=outputs,
            rows=seen,
            intermediates={n: pending.caught.get("\0" + n) for n in inter},
            create_graph=pending.create,
            gradients=tuple(pending.gradients or ()),
            higher_order=higher,
            record_ref=self.recorder.ref(outputs[0]) if self.recorder is not None else None,
            trace=tracer,
            inner=inner,
            big=any(by_reference(row[5]) for row in seen),
            unwalked=unwalked,
            unnamed=self._unnamed() if pending.accumulate and not inputs else 0,
            chosen=bool(inputs),
        )
        # keep the heavy data of the calls the report may show: the latest of each kind
        self._keep_call(call)
        return result

    def _keep_call(self, call: Call) -> None:
        """*call* replaces the last call of its kind (first or higher order): the calls the report
        may show are the latest of each kind, and only they hold their heavy data."""
        calls = self.calls
        if calls and (len(calls) > 1 or calls[0].higher_order != call.higher_order):
            calls = [c for c in calls if c.higher_order != call.higher_order]
            self.calls, self._holds_big = [*calls, call], call.big or any(c.big for c in calls)
        else:  # (a loop's calls: one kept, the next replaces it)
            self.calls, self._holds_big = [call], call.big

    # ---- a loop's next call: the same leaves, nothing in their .grad -------------------------
    def _repeat(self, plan: LoopPlan, engine: Any, args: tuple, kwargs: dict) -> Any:
        """The loop's next ``backward()``, the short way (a training loop's calls: most of its time
        with %%grad was the bookkeeping): the last call's leaves, not walked, where each ``.grad`` is
        None or zero (so no hook is needed: ``.grad`` after the call is this call's grad). Anything
        else is found before the engine runs (:data:`_NOT_REPEATED`: the long way), or after it,
        by :meth:`_remember` (a leaf not reached: the graph is walked then)."""
        outputs = args[0]
        if not outputs or _ANOMALY() or not outside_transforms(outputs):  # (then the long way tells)
            return _NOT_REPEATED
        then = plan.start()
        if then is None:
            return _NOT_REPEATED  # (the engine adds to a .grad: a hook catches this call's own)
        if self._others_key is not plan.key or (self._frozen and any(map(_REQUIRES_GRAD, self._frozen))):
            self._find_others()  # (a new walk, or a frozen leaf was unfrozen: requires_grad_(True))
        others = grads_now(self._others) if self._others else ()
        for _, held_grad, _ in others:
            if held_grad is not None:  # (one may join with it: the long way keeps a copy first)
                return _NOT_REPEATED
        if self._holds_big:
            self._let_go_of_released(False)
        self._running, self._nested = True, {}
        try:
            result = engine.run_backward(*args, **kwargs)
            nested = self._nested
        finally:
            self._running, self._nested = False, None
        rows: Any = NOT_REACHED if nested or (others and reached_any(others)) else plan.finish(then)
        if rows is NOT_REACHED:  # a pass inside it, a leaf not reached, a new one: the long way
            self._settled()
            named = dict(zip(plan.names, plan.leaves, strict=True))
            held: tuple[dict, dict, dict] = (dict.fromkeys(named), {}, {})  # (zero is as good as none)
            pending = _Pending(args, tuple(outputs), True, named, held, {}, (named, then, others, {}), nested)
            return self._remember(pending, result)
        self.count += 1
        if rows is None:  # (a leaf's dtype changed in the loop: kept one by one)
            rows, big = self._seen_fresh(dict(zip(plan.names, plan.leaves, strict=True)))
        else:
            big = rows.holds_big
        ref = self.recorder.ref(outputs[0]) if self.recorder is not None else None
        self._loop_call = (plan, self.count, outputs, args[1], rows, big, ref)  # (see _settled)
        self._holds_big = self._holds_big or big
        return result

    def _settled(self) -> list[Call]:
        """The calls kept, the short way's latest made a :class:`Call` first (a loop's call is kept
        as a tuple until something reads it: most are replaced by the next one unread)."""
        if self._loop_call is not None:
            plan, count, outputs, gradients, rows, big, ref = self._loop_call
            self._loop_call = None
            self._added.update(plan.counts)
            call = Call(count, "backward", tuple(outputs), rows, {}, False, tuple(gradients or ()), False,
                        ref, None, (), big, True, self._unnamed_count)  # fmt: skip
            self._keep_call(call)
        return self.calls

    def _loop_plan(self, kwargs: dict) -> LoopPlan | None:
        """The plan of the last walk's leaves (made once per walk: :class:`.repeat.LoopPlan`) where
        this ``backward()`` may take the short way: after a call of the cell's that walked its
        leaves, in a cell that made no grad with a graph, traces no steps and names no
        intermediates."""
        key, tensors, named = self._last_leaves
        if (
            key is None
            or key[1]
            or self.created
            or not self._short
            or kwargs.get("accumulate_grad", True) is not True
        ):
            return None
        if self._plan is None or self._plan.key is not key:
            self._plan = LoopPlan(key, tensors, named)
        return None if self._plan.hooked else self._plan

    def _seen_fresh(self, named: dict[str, torch.Tensor]) -> tuple[tuple[tuple, ...], bool]:
        """:meth:`_seen` of a call whose leaves had nothing in ``.grad`` and were all reached: their
        ``.grad`` now is this call's grad (and whether one is kept by reference, too big to copy)."""
        seen = []
        counts = self._added
        for name, tensor in named.items():
            counts[id(tensor)] = (1, False)
            seen.append(fresh_row(name, tensor, tensor.grad))
        return tuple(seen), any(by_reference(row[4]) for row in seen)

    def _is_the_cells(self, outputs: tuple, gradients: Any, accumulate: bool = False) -> bool:
        """Whether this engine call is one the cell made itself (not a pass inside a pass, a
        ``torch.func`` transform's, or one of torch's helpers': those are counted, not shown)."""
        if self._running and self._nested is not None and outputs:  # a pass inside the cell's pass:
            for tensor in graph_leaves(outputs, 100_000) or ():  # (a reentrant checkpoint's layers)
                if tensor.grad is None:  # then .grad after the pass is what the pass sent it
                    self._nested.setdefault(id(tensor), tensor)
        if not outputs or self._running:  # (a pass inside a pass: a reentrant checkpoint, a Function's
            return False  # backward)
        for output in outputs:
            if is_transformed(output):
                return False
        helper = None
        for gradient in gradients or ():
            if is_transformed(gradient):  # grad(is_grads_batched=True): a vmap over the grads
                helper = "torch.autograd.grad(is_grads_batched=True)"
                break
        else:  # jacobian(), hessian(), gradcheck(): their passes (all grad(): a backward() is the cell's)
            helper = None if accumulate else torch_helper(self.namespace)
        if helper is not None:
            self.helpers[helper] = self.helpers.get(helper, 0) + 1
            return False
        return True

    def _let_go_of_released(self, higher: bool) -> None:
        """This call replaces the last one of its kind: where the cell let go of that one's big
        grads (zero_grad()), let go of them too before the engine runs, so that it can reuse their
        memory as a plain run does (holding them made every step of a training loop allocate
        afresh); otherwise the last call stays until this one has succeeded (it may raise)."""
        if not self._holds_big:
            return
        loop = self._loop_call
        if loop is not None and not higher and type(loop[4]) is LoopRows:  # (a loop's last call, kept
            if not loop[4].released():  # as a tuple: its big grads told apart without making it a Call)
                return
            self._loop_call = None  # (it would have replaced the kept first-order calls: they go too)
            self.calls = [c for c in self.calls if c.higher_order]
        else:
            self.calls = [c for c in self._settled() if c.higher_order != higher or not c.released()]
        self._holds_big = any(c.big for c in self.calls)

    def _engine_run(
        self, engine: Any, call: tuple, leaves: dict, before: dict, caught: dict, inter: dict, tracer: Any
    ) -> tuple[Any, dict[int, torch.Tensor] | None]:
        """The engine's run, with a hook on each leaf whose ``.grad`` already holds something (the
        engine adds to it in place; elsewhere ``.grad`` after the call is exactly this call's grad)
        and on the named intermediates: the result, and the leaves a pass inside it reached."""
        args, kwargs = call
        accumulate = kwargs.get("accumulate_grad", args[6] if len(args) > 6 else True)
        handles = []
        try:
            if tracer is not None:
                tracer.__enter__()
            for name, leaf in leaves.items():
                if before[name] is not None or not accumulate or not leaf.is_leaf:
                    handles.append(_REGISTER_HOOK(leaf, _catcher(caught, name)))  # (not a hook of the cell's)
                elif has_post_accumulate_hooks(leaf):  # (they may step the leaf and take .grad away)
                    handles.append(_REGISTER_HOOK(leaf, _catcher(caught, name, leaf)))
            for name, tensor in inter.items():
                handles.append(_REGISTER_HOOK(tensor, _catcher(caught, "\0" + name)))
            self._running, self._nested = True, ({} if accumulate else None)
            if (len(args) > 3 and args[3]) or torch.is_anomaly_enabled():  # the engine warns then:
                return _as_if_called_from_torch(engine, args, kwargs), self._nested  # as without us
            return engine.run_backward(*args, **kwargs), self._nested
        finally:
            self._running, self._nested = False, None
            for handle in handles:
                handle.remove()
            if tracer is not None:
                tracer.__exit__()

    def _inner_leaves(self, leaves: dict, before: dict, nested: dict | None) -> tuple[str, ...]:
        """Leaves only a pass inside this one reached (behind a reentrant checkpoint): added."""
        inner: list[str] = []
        if nested:
            for name, tensor in self._leaves((), tuple(nested.values())).items():
                if name not in leaves and all(tensor is not t for t in leaves.values()):
                    leaves[name], before[name] = tensor, None
                    inner.append(name)
        return tuple(inner)

    def _seen(self, leaves: dict, caught: dict, held: tuple, accumulate: bool) -> tuple[tuple, ...]:
        """Per leaf this call reached, :class:`Leaf`'s fields (Leaf objects are made for the call
        the report shows only): the grad the call computed, kept as it is now (a later zero_()
        must not change what is shown), the leaf's value, ``.grad`` before and after."""
        before, before_text, before_zero = held
        seen = []
        counts = self._added
        for name, leaf in leaves.items():
            grad = caught.get(name)  # what the call returned (or a hook saw) is the cell's to change
            had = before[name]
            after = leaf.grad if accumulate and leaf.is_leaf else None
            if grad is None:
                if after is None or (had is not None and not _added_to(after, had)):  # not reached
                    continue
                grad = after if had is None else after.detach() - had  # (joined: no hook caught it)
            added = (1, False)
            if accumulate and leaf.is_leaf:
                if had is not None and not before_zero[name]:
                    count, was_held = counts.get(id(leaf), (0, True))
                    added = (count + 1, was_held)
                counts[id(leaf)] = added
            version = grad._version
            kept = keep(grad)
            kept_after = (
                keep(after) if had is not None and after is not None else kept if accumulate else None
            )
            probes = (None, None) if type(kept) is Frozen else take_probes(kept, kept_after)
            value = caught.get("\1" + name)  # (taken as the grad reached it: see _catcher)
            value = keep(leaf) if value is None else value
            seen.append((
                name, leaf, value, leaf._version, kept, kept_after, had, version,
                before_text.get(name), after._version if after is not None else -1, added[0], added[1],
                *probes,
            ))  # fmt: skip
        return tuple(seen)

    def _remember_created(self, caught: dict, leaves: dict) -> None:
        """The grads made with create_graph=True: a later call through them is higher-order."""
        self.created.update(
            id(g.grad_fn) for g in caught.values() if isinstance(g, torch.Tensor) and g.grad_fn is not None
        )
        for leaf in leaves.values():
            held = kept_grad(leaf)
            if held is not None and held.grad_fn is not None:
                self.created.add(id(held.grad_fn))

    def _leaves(self, outputs: tuple[torch.Tensor, ...], inputs: tuple) -> dict[str, torch.Tensor]:
        """The named tensors this call computes grads for: the leaves behind *outputs* (a walk of
        the graph), or *inputs* when given, named as at this moment. The same leaves as the last
        call's keep the names found then: the names of the calls kept are looked at again after
        the cell (:meth:`result`)."""
        tensors = list(inputs) if inputs else graph_leaves(outputs) or []
        key = (tuple(map(id, tensors)), bool(inputs))
        if key == self._last_leaves[0]:  # (the last call's tensors are held: no id was reused)
            return dict(self._last_leaves[2])
        named = self._named(tensors, bool(inputs))
        self._last_leaves = (key, tensors, named)
        return dict(named)

    def _unnamed(self) -> int:
        """How many of the last walk's leaves have no name here."""
        if self._others_key is not self._last_leaves[0]:
            self._find_others()
        return self._unnamed_count

    def _same_leaves(self) -> tuple[dict[str, torch.Tensor], list[tuple], list[tuple]] | None:
        """A loop's next call: the last call's leaves, without a walk of the graph, and what their
        ``.grad`` was before this call (None when there was no last call). The engine changes the
        ``.grad`` of every leaf it reaches (a new tensor, or its version): :func:`.repeat.reached_all` tells
        after the call whether it reached them all, else the graph is walked then."""
        key, tensors, named = self._last_leaves
        if key is None or key[1]:
            return None
        return dict(named), grads_now(tensors), self._others_now()

    def _others_now(self) -> list[tuple]:
        """The other leaves the cell's code names (not the last call's), with their ``.grad`` now:
        a call that changes one reached a leaf the last call did not (a branch taken, a leaf that
        joins late), and the graph is walked then (:func:`.repeat.reached_any`)."""
        if self._others_key is not self._last_leaves[0] or (
            self._frozen and any(map(_REQUIRES_GRAD, self._frozen))
        ):  # (a new walk, or a frozen leaf was unfrozen: requires_grad_(True) in the loop)
            self._find_others()
        others = self._others
        return grads_now(others) if others else []

    def _find_others(self) -> None:
        """:meth:`_others_now`'s leaves, found once for each set of leaves a walk found."""
        key, tensors, named = self._last_leaves
        known = {id(t) for t in tensors}
        found, frozen = [], []
        for name in self.written:
            value = value_at(self.namespace, name)
            for tensor in [value] if is_tensor(value) else _parameters_of(value):
                if tensor.is_leaf and id(tensor) not in known:
                    known.add(id(tensor))
                    if tensor.requires_grad:
                        found.append(tensor)
                    elif tensor.is_floating_point() or tensor.is_complex():  # (may be unfrozen)
                        frozen.append(tensor)
        self._others_key, self._others, self._unnamed_count = key, found, len(tensors) - len(named)
        self._frozen = frozen

    def _named(self, tensors: list[torch.Tensor], every_tensor: bool) -> dict[str, torch.Tensor]:
        named = {}
        missing = set()
        for tensor in tensors:
            name = self._names.get(id(tensor))
            if name is not None and self.namespace_value(name) is tensor:
                named[name] = tensor
            else:
                missing.add(id(tensor))
        if missing:  # under the name the last leaf had, or a name the cell wrote; else one scan
            found = self._names_of(missing, every_tensor, (*set(self._names.values()), *self.written))
            if len(found) < len(missing):
                found = self._names_of(missing, every_tensor=every_tensor)
            self._names.update(found)
            named = {}
            for tensor in tensors:
                name = self._names.get(id(tensor))
                if name is not None and self.namespace_value(name) is tensor:
                    named[name] = tensor
        return named

    def _names_of(
        self, wanted: set[int], every_tensor: bool, among: tuple[str, ...] | None = None
    ) -> dict[int, str]:
        """The first name each tensor of *wanted* (ids) has: a --wrt leaf, a variable, a module's
        parameter (``net.0.weight``); *every_tensor*: non-leaf variables too (``inputs=``). *among*:
        only these variables (a few names, not a scan of the whole namespace)."""
        names = {id(t): n for n, t in self.wrt.items() if id(t) in wanted}
        if among is None:
            candidates = tensors_and_modules(self.namespace)
        else:
            Module = _module_class()
            candidates = []
            for name in dict.fromkeys(among):
                if name.startswith("_"):
                    continue
                value = value_at(self.namespace, name)
                if is_tensor(value):
                    candidates.append((name, value, False))
                elif Module is not None and issubclass(type(value), Module):
                    candidates.append((name, value, True))
                else:  # params = [w, b] -> params[0]; a plain object's model.w, trainer.model
                    candidates += [(path, v, _is_module(v)) for path, v in members(name, value)]
        for name, value, is_module in candidates:
            if not is_module:
                if id(value) in wanted and (every_tensor or (value.requires_grad and value.grad_fn is None)):
                    names.setdefault(id(value), name)
                continue
            named = self._params.get(id(value))
            if named is None:
                named = self._params[id(value)] = list(value.named_parameters())
            for pname, param in named:
                if id(param) in wanted and param.requires_grad:
                    names.setdefault(id(param), f"{name}.{pname}")
        return names

    def namespace_value(self, name: str) -> Any:
        if name in self.wrt:
            return self.wrt[name]
        return _lookup_param(self.namespace, name, self._params, self._by_name)

    def _intermediates(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        nodes = graph_functions(outputs)
        found = {}
        for name, value in list(self.namespace.items()):
            if (
                not name.startswith("_")
                and isinstance(value, torch.Tensor)
                and value.grad_fn is not None
                and id(value.grad_fn) in nodes
                and all(value is not o for o in outputs)
            ):
                found[name] = value
        return found


def _lookup_param(
    namespace: dict[str, Any], name: str, params: dict[int, list], by_name: dict[int, dict] | None = None
) -> Any:
    """The tensor a leaf's name (:meth:`Observer._leaves`) stands for now (``net.0.weight`` too);
    *by_name* caches each module's parameters by name (one lookup, not a scan, per name)."""
    head, _, rest = name.partition(".")
    value = namespace.get(head)
    if not head.isidentifier():  # a path: params[0], layers[1].w
        return value_at(namespace, name)
    if not rest or value is None:
        return value
    table = by_name.get(id(value)) if by_name is not None else None
    if table is None:
        table = dict(reversed(params.get(id(value), ())))  # the first of a name wins, as in a scan
        if by_name is not None and id(value) in params:
            by_name[id(value)] = table
    found = table.get(rest)
    return found if found is not None else value_at(namespace, name)  # (m.w, params[0])


def graph_leaves(outputs: tuple[torch.Tensor, ...], limit: int | None = None) -> list[torch.Tensor] | None:
    """The leaf tensors behind *outputs* (the variables of their AccumulateGrad nodes);
    None when the graph has more than *limit* nodes (not all were seen)."""
    nodes, cut = nodes_behind(outputs, limit)
    return None if cut else leaves_in(nodes, outputs)


def leaves_in(nodes: dict[int, Any], outputs: tuple[torch.Tensor, ...] = ()) -> list[torch.Tensor]:
    """The leaf tensors of a walk's *nodes* (:func:`.internals.nodes_behind`), and those of
    *outputs* that are leaves themselves."""
    found = {id(t): t for t in outputs if t.grad_fn is None and t.requires_grad}
    accumulate = accumulate_grad_class()
    for node in nodes.values():
        if type(node) is accumulate:  # a leaf's node
            variable = node.variable  # type: ignore[attr-defined]  # AccumulateGrad has it
            found.setdefault(id(variable), variable)
    return list(found.values())


def _all_ones(tensor: torch.Tensor) -> bool:
    """Whether *tensor* is all ones (what backward() passes for a scalar); False where it
    cannot be looked at (a batched tensor inside torch.autograd.functional's vmap)."""
    try:
        if tensor.numel() == 1:  # backward() on a scalar: one number, no comparison kernel
            return bool(tensor.item() == 1)
        with torch.no_grad():
            return bool((tensor == 1).all())
    except Exception:
        return False


def kept_grad(tensor: torch.Tensor) -> torch.Tensor | None:
    """``tensor.grad`` where PyTorch keeps one (a leaf, or retain_grad()); None elsewhere, without
    reading it: a read warns, and that warning would be ours, not the cell's."""
    return tensor.grad if tensor.is_leaf or tensor.retains_grad else None


def _is_quiet_nonleaf(value: Any) -> bool:
    """A tensor whose ``.grad`` PyTorch keeps None and warns about (never reads ``.grad`` itself)."""
    return isinstance(value, torch.Tensor) and value.grad_fn is not None and not value.retains_grad


def nonleaf_reads(tree: Any, namespace: dict[str, Any]) -> list[str]:
    """``y.grad`` (and ``net.out.grad``) read by the cell's own code where ``y`` is, at the end of
    the cell, a non-leaf that does not retain its grad."""
    import ast

    from .syntax import nodes

    found = []
    for node in nodes(tree):
        if isinstance(node, ast.Attribute) and node.attr == "grad" and isinstance(node.ctx, ast.Load):
            parts, base = [], node.value
            while isinstance(base, ast.Attribute):
                parts.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name):
                expr = ".".join([base.id, *reversed(parts)])
                if _is_quiet_nonleaf(_lookup(namespace, expr)):
                    found.append(expr)
    return found


def _catcher(caught: dict[str, Any], name: str, leaf: torch.Tensor | None = None):
    """A hook that adds up the grads reaching a tensor in *caught* under *name*; with *leaf*, also
    the leaf's value as the grad reaches it (under ``"\1" + name``: before its post-accumulate
    hooks run, which may step it: the optimizer in backward)."""

    def hook(grad: torch.Tensor) -> None:
        caught[name] = grad if name not in caught else caught[name] + grad
        if leaf is not None and "\1" + name not in caught:
            caught["\1" + name] = keep(leaf)

    return hook


def _parameters_of(value: Any) -> list[torch.Tensor]:
    """A module's parameters (the cell names the model: a layer used only sometimes is a leaf to
    watch); nothing for anything else."""
    Module = _module_class()
    return list(value.parameters()) if Module is not None and issubclass(type(value), Module) else []


def _scope_at(filename: str, lineno: int) -> dict[str, Any]:
    """The variables of the frame on the stack now that runs *filename*:*lineno* (a function the
    cell called: the warning is shown while it runs), or none."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == filename and frame.f_lineno == lineno:
            return {**frame.f_globals, **frame.f_locals}
        frame = frame.f_back
    return {}


def _lookup(namespace: dict[str, Any], dotted: str) -> Any:
    head, *rest = dotted.split(".")
    value = namespace.get(head)
    for part in rest:
        value = getattr(value, part, None)
    return value


def _past_our_frames(warn: Any) -> Any:
    """``warnings.warn`` while the cell runs: as *warn*, but a *stacklevel* that climbs through
    this module's frames (the engine's caller while ``backward()`` runs: a module backward hook's
    warning, PyTorch's own at ``stacklevel=5``) skips them, so the warning is placed, filtered and
    shown once per place exactly as without %%grad."""

    @functools.wraps(warn)
    def warn_past_us(
        message: Any, category: Any = None, stacklevel: int = 1, *args: Any, **kwargs: Any
    ) -> Any:
        level, frame = max(stacklevel, 1), sys._getframe(1)  # (level 1: the caller of warn; 0 too)
        for _ in range(stacklevel - 1):
            frame = frame.f_back if frame is not None else None
            while frame is not None and frame.f_code.co_filename == __file__:
                frame, level = frame.f_back, level + 1
        return warn(message, category, level + 1, *args, **kwargs)

    return warn_past_us


def _as_if_called_from_torch(engine: Any, args: tuple, kwargs: dict) -> Any:
    """``engine.run_backward``, with the warnings it raises shown exactly as without us: at the
    place in PyTorch's code that called the engine, without our frames in a stack they quote.
    (Shown through a wrapper, not caught and raised again: catching changes the warning filters,
    and Python then forgets which warnings it showed once, so each would show at every call.)"""
    caller = sys._getframe(1)  # the first frame outside this module: torch's, that called the engine
    while caller.f_back is not None and caller.f_code.co_filename == __file__:
        caller = caller.f_back
    shown = warnings.showwarning

    def at_torchs_place(message, category, filename, lineno, file=None, line=None):
        if filename == __file__:  # raised by the engine call below
            message, filename, lineno, line = (
                _without_our_call(message),
                caller.f_code.co_filename,
                caller.f_lineno,
                None,
            )
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = at_torchs_place
    try:
        return engine.run_backward(*args, **kwargs)
    finally:
        if warnings.showwarning is at_torchs_place:
            warnings.showwarning = shown


# anomaly mode's "Traceback of forward call": from the %%grad cell's line down to the cell's own code
_OUR_FRAMES = re.compile(
    r"^  File [^\n]*, in <module>\n    get_ipython\(\)\.run_cell_magic\('grad'[^\n]*\n"
    r"(?:(?!  File [^\n]*, in <module>\n)[^\n]*\n)*",
    re.M,
)


def _without_our_call(message: Warning | str) -> Warning | str:
    """*message* with the frames of %%grad taken out of a stack it quotes (anomaly mode's forward
    traceback), so the warning reads as a plain cell's: the kernel's frames, then the cell's."""
    text = str(message)
    if "run_cell_magic('grad'" not in text:
        return message
    shorter = _OUR_FRAMES.sub("", text)
    return type(message)(shorter) if isinstance(message, Warning) else shorter


class _Engine:
    """Stands in for PyTorch's engine object while the cell runs: every call is
    passed on unchanged, and ``run_backward`` is observed on the way."""

    __tracebackhide__ = True

    def __init__(self, engine: Any, observer: Observer):
        self._engine, self._observer = engine, observer
        self.run_backward = observer.run_backward  # (the observer's own method: no frame of ours here)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)
