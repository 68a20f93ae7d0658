"""The numbers of one backward pass, caught while it runs (``--steps``, ``--graph``).

A :class:`Tracer` puts a hook on every node of the graph (``Node.register_hook``: the grads
arriving at the node and the grads it sends to its inputs) and takes them off afterwards; each
node's call becomes one :class:`Raw`. Nothing is recomputed by a second engine: the *local
derivative* of an edge is what the node sent divided by what arrived (element by element, where
shapes match); only where no gradient arrived (0) is the node itself asked for its factor, by
calling it with ones (built-in nodes only: a custom ``autograd.Function`` is never called again).
:mod:`..derive.steps` turns the trace into the steps the report shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .internals import accumulate_grad_class, has_unpack_hook, nodes_behind

TRACE_LIMIT = 100_000  # nodes hooked at most
KEEP = 1024  # grads up to this many elements are copied when caught
LOCAL_LIMIT = 4096  # element-wise local derivatives are worked out up to this size
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
@dataclass
class Raw:
    """One node as autograd ran it (internal: :func:`build` reads it)."""

    node: Any
    order: int
    grad_out: tuple[torch.Tensor | None, ...]
    grad_in: tuple[torch.Tensor | None, ...]
    local: tuple[torch.Tensor | None, ...]
    saved: dict[str, Any]


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
    ratio = grad_in / out
    if out.numel() == 1:  # the common case of a course's cells: plain numbers, no tensor checks
        value = ratio.item()
        if out.item() != 0 and math.isfinite(value):
            return ratio
    bad = (out == 0) | ~torch.isfinite(ratio)
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


@dataclass(frozen=True)
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
    """Hooks on the nodes behind *outputs* while one backward pass runs (a context manager)."""

    def __init__(self, outputs: tuple[torch.Tensor, ...]):
        self.outputs = tuple(o for o in outputs if isinstance(o, torch.Tensor))
        self.nodes: list[Any] = []
        self.raws: list[Raw] = []
        self.cut = False  # more nodes than TRACE_LIMIT: the rest are not hooked
        self._handles: list[Any] = []

    def __enter__(self) -> Tracer:
        self.nodes = self._walk()
        accumulate = accumulate_grad_class()
        try:
            for index, node in enumerate(self.nodes):
                if type(node) is not accumulate:  # AccumulateGrad: its input is caught one step up
                    self._handles.append(node.register_hook(self._hook(index)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def unhooked(self) -> Tracer:
        """The nodes, without hooks: %%grad's own pass (``derive/own_pass.py``) reports each node
        it calls through :meth:`saw`."""
        self.nodes = self._walk()
        return self

    def _walk(self) -> list[Any]:
        nodes, self.cut = nodes_behind(self.outputs, TRACE_LIMIT)
        return list(nodes.values())

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, index: int) -> Any:
        def hook(grad_inputs: tuple, grad_outputs: tuple) -> None:
            self.saw(self.nodes[index], grad_inputs, grad_outputs)

        return hook

    def saw(self, node: Any, grad_inputs: tuple, grad_outputs: tuple) -> None:
        """*node* ran: *grad_outputs* arrived, it sent *grad_inputs* (one per next function)."""
        try:
            with torch.no_grad():
                called: list = []
                local = tuple(_local(node, i, g, grad_outputs, called) for i, g in enumerate(grad_inputs))
                self.raws.append(
                    Raw(
                        node,
                        len(self.raws),
                        tuple(_keep(g) for g in grad_outputs),
                        tuple(_keep(g) for g in grad_inputs),
                        local,
                        _saved(node),
                    )
                )
        except Exception:  # never break the user's backward pass
            pass
