"""``%%grad`` on ``nn.Module`` cells: the parameters' grads summarised, per parameter and per module.

When the tracked leaves include parameters of a model in the namespace (``net.0.weight``, or a
parameter given with ``--wrt``), :func:`model_report` summarises each one's grad as practitioners
read it: grad norm, mean and max |g|, the fraction of exact zeros, and the grad-norm / weight-norm
ratio (the update-scale signal). Parameters are listed in the model's own order (definition order,
which is the forward order of a ``Sequential``); a tied parameter is one row with all its names; a
frozen one (``requires_grad=False``) is listed as frozen; buffers are not parameters. Every
number is a scalar computed where the tensor lives: nothing whole is copied to the CPU.

Per-module rows (the parameter's owner, ``net.0``) aggregate the same numbers: they are the
table of a big model (with the parameters as a fold-out), and the rows of the gradient-flow
picture (``--plot``). Notes name the layers whose grads are all zero or not finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from .. import format as fmt
from ..capture.copies import probe, unchanged
from ..capture.internals import norms
from ..capture.observe import tensors_and_modules
from ..messages import Note, note, t

MODULE_ROWS_FROM = 24  # more parameters than this: the table shows modules, the parameters fold out


@dataclass(frozen=True)
class Stats:
    """Summary numbers of one grad (or of several, aggregated)."""

    numel: int
    grad_norm: float | None  # None: no grad (frozen, or not reached)
    mean_abs: float | None
    max_abs: float | None
    zero_fraction: float | None
    weight_norm: float
    finite: bool = True
    changed: bool = False  # the grad was changed in place after the call (too big to copy): no numbers

    @property
    def ratio(self) -> float | None:
        """‖grad‖ / ‖weight‖: how big one SGD step with lr = 1 would be, relative to the weight."""
        if self.grad_norm is None or self.weight_norm == 0:
            return None
        return self.grad_norm / self.weight_norm


@dataclass(frozen=True)
class ParamRow:
    name: str  # the name the report uses (the first one)
    aliases: tuple[str, ...]  # other names of the same tensor (tied weights)
    module: str  # owner, e.g. "net.0" ("" when unknown)
    kind: str  # the owner's type, e.g. "Linear"
    shape: tuple[int, ...]
    frozen: bool
    grad: torch.Tensor | None = field(default=None, repr=False)  # as the report got it (not copied)
    weight: torch.Tensor | None = field(default=None, repr=False)
    lost: bool = False  # already changed in place when the cell ended
    grad_version: int = -1  # the grad's version when the report was made
    grad_probe: torch.Tensor | None = field(default=None, repr=False)  # and a few of its elements

    @property
    def changed(self) -> bool:
        """Whether the grad is no longer what the call computed (a big grad is kept, not copied:
        ``.grad.zero_()``, ``clip_grad_norm_`` after the call change it in place)."""
        return self.lost or not unchanged(self.grad, self.grad_probe, self.grad_version)

    @cached_property
    def _norm_finite(self) -> tuple[float | None, bool]:
        if self.changed:
            return None, True
        stats = self.__dict__.get("stats")  # (the table's numbers, where it was made first: no pass)
        if stats is not None and not stats.changed:
            return stats.grad_norm, stats.finite
        return _quick(self.grad)

    @property
    def grad_norm(self) -> float | None:
        """‖grad‖ (one fast pass, when first asked: not on the cell's path)."""
        return self._norm_finite[0]

    @property
    def finite(self) -> bool:
        return self._norm_finite[1]

    @cached_property
    def stats(self) -> Stats:
        """Every summary number (a few passes over the grad: computed when first shown)."""
        weight = self.weight if self.weight is not None else torch.zeros(0)
        if self.changed:
            return Stats(weight.numel(), None, None, None, None, 0.0, changed=True)
        return stats_of([(self.grad, weight)])[0]


@dataclass(frozen=True)
class ModuleRow:
    name: str
    kind: str
    params: int  # parameter tensors
    frozen: bool  # all its parameters are frozen
    members: tuple[ParamRow, ...] = field(default=(), repr=False)

    @cached_property
    def stats(self) -> Stats:
        parts = [m.stats for m in self.members if not m.frozen] or [m.stats for m in self.members]
        if any(p.changed for p in parts):
            return Stats(sum(p.numel for p in parts), None, None, None, None, 0.0, changed=True)
        return _aggregate(parts)

    @property
    def changed(self) -> bool:
        return any(m.changed for m in self.members if not m.frozen)

    @property
    def grad_norm(self) -> float | None:
        norms = [m.grad_norm for m in self.members if not m.frozen and m.grad_norm is not None]
        return math.hypot(*norms) if norms else None

    @property
    def finite(self) -> bool:
        return all(m.finite for m in self.members)


@dataclass(frozen=True)
class ModelReport:
    """``result.model``: the parameters' grads summarised (see the module docstring)."""

    params: tuple[ParamRow, ...]
    modules: tuple[ModuleRow, ...]
    digits: int = 4

    @cached_property
    def notes(self) -> tuple[Note, ...]:
        """Layers whose grads are not finite or all zero, and the frozen parameters (a pass over
        each grad: found when first asked, not on the cell's path)."""
        notes: list[Note] = []
        for m in self.modules:
            if m.frozen or m.changed:  # (a grad changed after the call says nothing about this batch)
                continue
            if not m.finite:
                notes.append(note("model.non_finite", module=m.name, kind=m.kind))
            elif m.grad_norm == 0:
                notes.append(note("model.all_zero", module=m.name, kind=m.kind))
        changed = [r.name for r in self.params if not r.frozen and r.changed]
        if changed:
            listed = ", ".join(fmt.few(changed, 6))
            notes.append(note("model.changed_note", names=listed))
        frozen = [r.name for r in self.params if r.frozen]
        if frozen:
            listed = ", ".join(fmt.few(frozen, 6))
            notes.append(note("model.frozen_note", names=listed))
        return tuple(notes)

    @cached_property
    def _all_stats(self) -> bool:
        """Every parameter's numbers in one batch (one copy to the host), when a table first asks."""
        rows = [r for r in self.params if "stats" not in r.__dict__ and not r.changed]
        weights = [r.weight if r.weight is not None else torch.zeros(0) for r in rows]
        for row, stats in zip(
            rows, stats_of([(r.grad, w) for r, w in zip(rows, weights, strict=True)]), strict=True
        ):
            row.__dict__["stats"] = stats  # (ParamRow.stats is a cached_property: this is its cache)
        return True

    @property
    def by_module(self) -> bool:
        """Whether the table shows modules (a big model) rather than each parameter."""
        return len(self.params) > MODULE_ROWS_FROM

    def header(self, first: str) -> list[str]:
        return [first, t("model.col.shape"), t("model.col.norm"), "mean |g|", "max |g|",
                t("model.col.zeros"), "‖g‖/‖w‖"]  # fmt: skip

    def _cells(self, stats: Stats, frozen: bool) -> list[str]:
        if frozen:
            return [t("model.frozen"), "", "", "", ""]
        if stats.changed:
            return [t("state.changed"), "", "", "", ""]
        if stats.grad_norm is None:
            return [t("model.no_grad"), "", "", "", ""]
        n = lambda v: "" if v is None else fmt.number(float(v), self.digits)  # noqa: E731
        zeros = _percent(stats.zero_fraction or 0.0)
        return [n(stats.grad_norm), n(stats.mean_abs), n(stats.max_abs), zeros, n(stats.ratio)]

    def param_rows(self, limit: int | None = None) -> list[list[str]]:
        self._all_stats  # noqa: B018  (computed in one batch)
        rows = []
        shown = self.params if limit is None or len(self.params) <= limit else self.params[:limit]
        for p in shown:
            name = p.name + "".join(f" = {a}" for a in p.aliases)
            shape = "(" + ", ".join(str(s) for s in p.shape) + ("," if len(p.shape) == 1 else "") + ")"
            rows.append([name, shape, *self._cells(p.stats, p.frozen)])
        if len(shown) < len(self.params):
            rows.append([t("model.more", count=len(self.params) - len(shown)), "", "", "", "", "", ""])
        return rows

    def module_rows(self) -> list[list[str]]:
        self._all_stats  # noqa: B018  (computed in one batch)
        return [
            [f"{m.name} ({m.kind})", t("model.params", count=m.params), *self._cells(m.stats, m.frozen)]
            for m in self.modules
        ]

    def summary(self) -> str:
        self._all_stats  # noqa: B018  (computed in one batch)
        total = sum(p.stats.numel for p in self.params)
        trained = sum(1 for p in self.params if not p.frozen)
        count, modules = len(self.params), len(self.modules)
        plural = {
            "s": "" if count == 1 else "s",
            "ms": "" if modules == 1 else "s",
            "gs": "s" if trained == 1 else "",
        }
        return t(
            "model.summary", params=count, values=f"{total:,}", modules=modules, trained=trained, **plural
        )

    def layers(self) -> list[Any]:
        """The rows of the gradient-flow picture: one per module, in the model's order."""
        self._all_stats  # noqa: B018  (computed in one batch)
        return [
            LayerFlow(
                name=m.name,
                kind=m.kind,
                mean_abs=m.stats.mean_abs or 0.0,
                max_abs=m.stats.max_abs or 0.0,
                norm=m.stats.grad_norm or 0.0,
                zero_fraction=m.stats.zero_fraction if m.stats.zero_fraction is not None else 1.0,
                finite=m.stats.finite,
                frozen=m.frozen,
            )
            for m in self.modules
            if not m.changed  # (its grads are no longer the call's: the notes say so, not a picture)
        ]


@dataclass
class LayerFlow:
    """One row of a gradient-flow picture: a layer (or one parameter) and its grad's summary."""

    name: str
    kind: str = ""
    mean_abs: float = 0.0
    max_abs: float = 0.0
    norm: float = 0.0
    zero_fraction: float = 0.0
    finite: bool = True
    frozen: bool = False


def stats_of(pairs: list[tuple[torch.Tensor | None, torch.Tensor]]) -> list[Stats]:
    """The summary numbers of every (grad, weight) pair: reductions only (norms, a count), each
    one pass where the tensor lives, no temporary copies; all of them stay on their device until
    one copy to the host per device (a GPU waits once, not five times a parameter). Pairs alike
    (a dense real grad, its weight's dtype and device) take five batched calls in all."""
    numbers: list[list[float]] = [[] for _ in pairs]
    with torch.no_grad():
        groups: dict[tuple[Any, Any], list[int]] = {}
        for i, (g, w) in enumerate(pairs):
            if _batchable(g, w):
                groups.setdefault((g.device, g.dtype), []).append(i)  # type: ignore[union-attr]
        for indices in groups.values():
            for i, row in zip(indices, _batched([pairs[i] for i in indices]), strict=True):
                numbers[i] = row
        rest = [i for i, row in enumerate(numbers) if not row]
        reduced = {i: _reductions(*pairs[i]) for i in rest}
        by_device: dict[Any, list[int]] = {}
        for i, values in reduced.items():
            by_device.setdefault(values.device, []).append(i)
        for indices in by_device.values():
            for i, row in zip(indices, torch.stack([reduced[i] for i in indices]).tolist(), strict=True):
                numbers[i] = row
    return [_as_stats(row, g, w) for row, (g, w) in zip(numbers, pairs, strict=True)]


BATCHED_UP_TO = 65_536  # elements: a smaller grad's numbers come from the batched norms (its cost is the
# calls); a bigger one's from aminmax and count_nonzero (on the CPU the inf- and 0-norms take 5-15x as long)


def _batchable(grad: torch.Tensor | None, weight: torch.Tensor) -> bool:
    """Whether a pair's numbers come from the batched calls: a dense real floating grad of up to
    :data:`BATCHED_UP_TO` elements, and its weight of the same dtype, on the same device."""
    return (
        grad is not None
        and grad.layout is torch.strided
        and grad.is_floating_point()
        and 0 < grad.numel() <= BATCHED_UP_TO
        and weight.dtype is grad.dtype
        and weight.device == grad.device
        and weight.numel() > 0
    )


def _batched(pairs: list[tuple[Any, torch.Tensor]]) -> list[list[float]]:
    """:func:`_reductions`' numbers of pairs alike (:func:`_batchable`, one dtype and device): five
    batched norms (the count of nonzero elements is the 0-norm), one copy to the host."""
    grads, weights = [g.detach() for g, _ in pairs], [w.detach() for _, w in pairs]
    wide = torch.float32 if grads[0].dtype in LOW else None
    columns = [norms(weights, 2, wide), *(norms(grads, order, wide) for order in (2, 1, math.inf, 0))]
    flat = torch.stack([value for column in columns for value in column]).double().tolist()
    n = len(pairs)
    return [[flat[k * n + i] for k in range(5)] for i in range(n)]


def _reductions(grad: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
    """[‖w‖, ‖g‖, Σ|g|, max |g|, nonzero count] as float64 on the grad's (or weight's) device; nan
    for what there is no grad for."""
    w = weight.detach()
    device = grad.device if grad is not None else w.device
    nan = torch.tensor(math.nan, dtype=torch.float64, device=device)
    floating = w.is_floating_point() or w.is_complex()
    weight_norm = (
        _norm(w).to(device) if floating and w.numel() else torch.zeros((), dtype=torch.float64, device=device)
    )
    if grad is None or grad.numel() == 0:
        return torch.stack([weight_norm, nan, nan, nan, nan])
    g = grad.detach()
    if g.is_complex():
        max_abs = _norm(g, math.inf)
    else:  # one min/max pass is faster than the inf-norm on CPU; both carry nan and inf
        low, high = torch.aminmax(g.float() if g.dtype in LOW else g)
        max_abs = torch.maximum(-low, high).double()
    nonzero = torch.count_nonzero(g).double()
    return torch.stack([weight_norm, _norm(g), _norm(g, 1), max_abs, nonzero])


def _norm(tensor: torch.Tensor, order: float = 2) -> torch.Tensor:
    wide = torch.float32 if tensor.dtype in LOW else None
    return torch.linalg.vector_norm(tensor, ord=order, dtype=wide).double()


def _as_stats(row: list[float], grad: torch.Tensor | None, weight: torch.Tensor) -> Stats:
    weight_norm, grad_norm, l1, max_abs, nonzero = row
    if grad is None:
        return Stats(weight.numel(), None, None, None, None, weight_norm)
    n = grad.numel()
    if n == 0:
        return Stats(0, 0.0, 0.0, 0.0, 1.0, weight_norm)
    if _out_of_range(max_abs, grad.dtype, n) or (grad_norm == 0 and max_abs > 0):
        grad_norm, l1 = _rescaled(grad, max_abs)
    return Stats(
        numel=n, grad_norm=grad_norm, mean_abs=l1 / n, max_abs=max_abs, zero_fraction=1.0 - nonzero / n,
        weight_norm=weight_norm, finite=math.isfinite(max_abs),
    )  # fmt: skip


LOW = (torch.float16, torch.bfloat16)


def _percent(fraction: float) -> str:
    """A share as a percentage, always (one unit down the column): 0%, 6%, 100%; a small share
    with two significant digits (0.61%, 0.098%, 0.00001%) and one just short of all with as
    many as it takes (99.5%, 99.999%), so that only none is 0% and only all is 100%."""
    if fraction <= 0 or fraction >= 1:
        return "0%" if fraction <= 0 else "100%"
    percent = fraction * 100
    if percent < 1:
        return _plain(f"{percent:.2g}") + "%"
    digits = 0
    while digits < 12 and round(percent, digits) >= 100:
        digits += 1
    text = f"{percent:.{digits}f}"
    return (text.rstrip("0").rstrip(".") if digits else text) + "%"


def _plain(text: str) -> str:
    """``"1e-05"`` -> ``"0.00001"`` (a learner reads no exponent in a percentage)."""
    if "e" not in text:
        return text
    return f"{float(text):.{-int(text.split('e')[1]) + 1}f}".rstrip("0").rstrip(".")


def _quick(grad: torch.Tensor | None) -> tuple[float | None, bool]:
    """(grad norm, finite) in one fast pass: the L2 norm is nan or inf exactly when an element is
    (or when it overflows: then the elements are looked at, as they are when it is 0)."""
    if grad is None:
        return None, True
    with torch.no_grad():
        g = grad.detach()
        value = float(torch.linalg.vector_norm(g, dtype=torch.float32 if g.dtype in LOW else None))
        if value != 0 and math.isfinite(value) and not _out_of_range(value, g.dtype, 1):  # (the norm
            # bounds the max: a norm in range says every element is; 0 may be an underflow)
            return value, True
        finite = math.isfinite(value) or bool(torch.isfinite(g).all())
        if finite and g.numel():
            max_abs = float(torch.linalg.vector_norm(g, math.inf))
            if max_abs > 0 and _out_of_range(max_abs, g.dtype, g.numel()):
                value = _rescaled(g, max_abs)[0]
        return value, finite


def _out_of_range(max_abs: float, dtype: torch.dtype, count: int) -> bool:
    """Whether the norm or the sum of *count* elements up to *max_abs* in size loses precision in
    the dtype the grad is summed in: squares below its smallest normal number (vanishing grads:
    1e-23 squared is subnormal in float32, 1e-33 squared is 0), or a sum past its largest."""
    info = torch.finfo(torch.float32 if dtype in LOW else (dtype.to_real() if dtype.is_complex else dtype))
    if not 0 < max_abs < math.inf:
        return False
    return max_abs < math.sqrt(info.tiny / info.eps) or max_abs * max(count, 1) > math.sqrt(info.max)


def _rescaled(grad: torch.Tensor, max_abs: float) -> tuple[float, float]:
    """‖grad‖ and Σ|grad| computed on the grad divided by its largest element, in float64 (the
    rare case :func:`_out_of_range` finds: one more pass, and a copy)."""
    with torch.no_grad():
        wide = grad.detach().to(torch.complex128 if grad.is_complex() else torch.float64) / max_abs
        norm, total = float(torch.linalg.vector_norm(wide)), float(torch.linalg.vector_norm(wide, 1))
    return max_abs * norm, max_abs * total


def _aggregate(parts: list[Stats]) -> Stats:
    numel = sum(s.numel for s in parts)
    with_grad = [s for s in parts if s.grad_norm is not None]
    weight_norm = math.hypot(*(s.weight_norm for s in parts))
    if not with_grad:
        return Stats(numel, None, None, None, None, weight_norm)
    counted = sum(s.numel for s in with_grad) or 1
    return Stats(
        numel=numel,
        grad_norm=math.hypot(*((s.grad_norm or 0.0) for s in with_grad)),
        mean_abs=sum((s.mean_abs or 0.0) * s.numel for s in with_grad) / counted,
        max_abs=max(s.max_abs or 0.0 for s in with_grad),
        zero_fraction=sum((s.zero_fraction or 0.0) * s.numel for s in with_grad) / counted,
        weight_norm=weight_norm,
        finite=all(s.finite for s in with_grad),
    )


def parameters_in(namespace: dict[str, Any]) -> dict[int, list[tuple[str, Any, Any]]]:
    """id(parameter) -> [(qualified name, owner module, the parameter)] for every nn.Module
    variable of the namespace (tied parameters have several names)."""
    found: dict[int, list[tuple[str, Any, Any]]] = {}
    for var, value, is_module in tensors_and_modules(namespace):
        if not is_module:
            continue
        for path, module in value.named_modules(remove_duplicate=False):
            for pname, param in module.named_parameters(recurse=False, remove_duplicate=False):
                qualified = ".".join(p for p in (var, path, pname) if p)
                entries = found.setdefault(id(param), [])
                if all(q != qualified for q, _, _ in entries):
                    entries.append((qualified, (f"{var}.{path}" if path else var, module), param))
    return found


def model_report(
    leaves: dict[str, torch.Tensor],
    values: dict[str, torch.Tensor],
    grads: dict[str, torch.Tensor | None],
    namespace: dict[str, Any],
    digits: int,
    lost: tuple[str, ...] = (),
) -> ModelReport | None:
    """The parameters among *leaves* (and the frozen ones of the same models), summarised with
    their *values* and *grads* at the moment the grads were computed; None when no leaf is a
    model's parameter."""
    if not any(isinstance(t, torch.nn.Parameter) for t in leaves.values()):  # (no scan of the namespace)
        return None
    owners = parameters_in(namespace)
    tracked = {id(t): n for n, t in leaves.items() if id(t) in owners}
    if not tracked:
        return None
    tops = {entries[0][0].split(".")[0] for key, entries in owners.items() if key in tracked}
    rows: list[ParamRow] = []
    seen: set[int] = set()
    for key, entries in owners.items():  # the models' own order
        if key in seen or entries[0][0].split(".")[0] not in tops:
            continue
        seen.add(key)
        qualified, (module_name, module), param = entries[0]
        kind, shape = type(module).__name__, tuple(param.shape)
        if key in tracked:
            name = tracked[key]
            aliases = tuple(q for q, _, _ in entries if q != name)
            weight, grad = values.get(name, leaves[name]), grads.get(name)
            version = grad._version if grad is not None else -1
            rows.append(
                ParamRow(name, aliases, module_name, kind, shape, False, grad, weight, name in lost, version,
                         probe(grad))
            )  # fmt: skip
        elif not param.requires_grad:
            aliases = tuple(q for q, _, _ in entries[1:])
            rows.append(ParamRow(qualified, aliases, module_name, kind, shape, True, None, param))
        # else: a parameter that requires grad but the output does not reach: not tracked
    modules: dict[str, list[ParamRow]] = {}
    for row in rows:
        modules.setdefault(row.module, []).append(row)
    module_rows = tuple(
        ModuleRow(name, members[0].kind, len(members), all(m.frozen for m in members), tuple(members))
        for name, members in modules.items()
    )
    return ModelReport(tuple(rows), module_rows, digits)
