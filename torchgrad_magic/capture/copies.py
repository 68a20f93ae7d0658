"""What a call into the autograd engine keeps of a tensor, and how it tells later whether that
still holds: a tiny tensor as Python numbers (:class:`Frozen`), a small one as a copy, a big one
(over :data:`SNAPSHOT_LIMIT` elements: a real model's layers) as the tensor itself with its
version and a probe of a few elements (:func:`unchanged`).

:mod:`.observe` keeps what each call saw with these; :mod:`.repeat`, a loop's next call, too.
"""

from __future__ import annotations

from typing import Any

import torch

SNAPSHOT_LIMIT = 65_536  # elements: values and grads up to this size (256 kB of float32: a course's
# tensors, d2l's 784×10 weights) are copied at each call; bigger ones (a real model's layers) are
# kept by reference with their version: a grad the cell changed in place afterwards is not shown


def apart(copy: torch.Tensor, tensor: torch.Tensor) -> bool:
    """Whether *copy* shares no memory with *tensor* (a sparse copy, which has no data pointer to
    compare, is a clone: apart)."""
    if copy.layout != torch.strided or tensor.layout != torch.strided:
        return True
    return copy.data_ptr() != tensor.data_ptr()


PROBE = 64  # elements looked at to tell whether a big tensor kept by reference has changed


def probe(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """A copy of 64 evenly spaced elements of a big tensor kept by reference (None for one that is
    copied whole, or not laid out flat). ``._version`` alone misses changes made through ``.data``
    or numpy (the old tutorials' ``w.grad.data.zero_()``) and counts no-ops (``clip_grad_norm_``
    under its limit multiplies by 1)."""
    if tensor is None or tensor.numel() <= SNAPSHOT_LIMIT:
        return None
    flat = tensor.detach()
    if not flat.is_contiguous() or flat.layout != torch.strided:
        return None
    n = flat.numel()
    step = max(1, n // PROBE)
    count = min(PROBE, (n + step - 1) // step)  # (elements 0, step, 2·step, …: flat[::step][:PROBE])
    return flat.as_strided((count,), (step,)).clone()  # (one view: a loop takes one at every call)


def by_reference(kept: Any) -> bool:
    """A grad kept as the tensor itself (too big to copy), not a copy."""
    return kept is not None and type(kept) is not Frozen and kept.numel() > SNAPSHOT_LIMIT


def take_probes(grad: Any, after: Any) -> tuple[Any, Any]:
    if type(grad) is Frozen or grad.numel() <= SNAPSHOT_LIMIT:  # (copies: nothing to probe)
        return None, None
    taken = probe(grad)
    return taken, (taken if after is grad else probe(after))


def unchanged(tensor: torch.Tensor | None, probe_then: torch.Tensor | None, version: int) -> bool:
    """Whether *tensor* still holds what it did when *probe_then* / *version* were taken: by the
    probe where there is one (the same elements, nan as nan), else by the version counter."""
    if tensor is None or tensor.numel() <= SNAPSHOT_LIMIT:  # (a copy: nothing else holds it)
        return True
    if probe_then is None:
        return tensor._version == version
    now = probe(tensor)
    if now is None or now.shape != probe_then.shape:
        return False
    same = (
        (now == probe_then) | (torch.isnan(now) & torch.isnan(probe_then))
        if now.is_floating_point()
        else now == probe_then
    )
    return bool(same.all())


def snapshot(tensor: torch.Tensor) -> torch.Tensor:
    value = tensor.detach()
    return value.clone() if value.numel() <= SNAPSHOT_LIMIT else value


FREEZE_LIMIT = 64  # elements: a tiny CPU tensor is kept as Python numbers (a tenth of a clone's cost)


class Frozen:
    """A tiny tensor's values as Python numbers, taken at a call (exact: every float, half and
    complex value round-trips); made into a tensor again only for the call the report shows."""

    __slots__ = ("dtype", "shape", "values")

    def __init__(self, values: Any, dtype: torch.dtype, shape: torch.Size | None):
        self.values, self.dtype, self.shape = values, dtype, shape  # (shape None: the nesting's)

    def tensor(self) -> torch.Tensor:
        tensor = torch.tensor(self.values, dtype=self.dtype)
        return tensor if self.shape is None else tensor.reshape(self.shape)


def keep(tensor: torch.Tensor) -> Any:
    """What a call keeps of a tensor: Frozen numbers when tiny, a copy up to SNAPSHOT_LIMIT
    elements, the tensor itself (with its version and a probe) when bigger."""
    n = tensor.numel()
    if n <= FREEZE_LIMIT and tensor.is_cpu and tensor.layout == torch.strided:
        try:  # (tolist() reads the numbers without autograd: no detach() needed, a loop's hot path)
            return Frozen(tensor.tolist(), tensor.dtype, tensor.shape)
        except (TypeError, RuntimeError):  # a dtype without Python numbers (float8, ...)
            pass
    value = tensor.detach()
    return value.clone() if n <= SNAPSHOT_LIMIT else value


def thaw(kept: Any) -> Any:
    """A tensor again from what :func:`keep` kept (anything else is returned as it is)."""
    return kept.tensor() if type(kept) is Frozen else kept


def fresh_row(name: str, tensor: torch.Tensor, grad: torch.Tensor) -> tuple:
    """:class:`Leaf`'s fields for a leaf whose ``.grad`` held nothing before the call: ``.grad``
    after it is the call's grad (kept once: copied, or by reference with a probe when big)."""
    kept = keep(grad)
    probes = (None, None) if type(kept) is Frozen else take_probes(kept, kept)
    version = grad._version
    return (name, tensor, keep(tensor), tensor._version, kept, kept, None, version, None, version, 1, False,
            *probes)  # fmt: skip


def small_zero(tensor: torch.Tensor) -> bool:
    """Every element of a small tensor 0 (nan is not 0); False where it cannot be told. Tiny ones
    are read as Python numbers (no kernel: the zero_() loop's case)."""
    try:
        if tensor.layout != torch.strided:
            return False
        if tensor.is_cpu and tensor.numel() <= FREEZE_LIMIT:
            dim = tensor.dim()
            if dim == 0:
                return tensor.item() == 0
            if dim == 1:
                return not any(tensor.tolist())  # (nan is truthy, -0.0 is not)
            if dim == 2:
                return not any(map(any, tensor.tolist()))
        return not bool(tensor.any())
    except Exception:
        return False


def all_zero(tensor: torch.Tensor) -> bool:
    """Every element 0 (the L2 norm, a fast pass, first: a nonzero grad is not 0)."""
    try:
        with torch.no_grad():
            t = tensor.detach()
            wide = torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else None
            if t.is_floating_point() and float(torch.linalg.vector_norm(t, dtype=wide)) != 0:
                return False
            return int(torch.count_nonzero(t)) == 0
    except Exception:
        return False
