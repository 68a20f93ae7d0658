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
import sys
from dataclasses import dataclass
from typing import Any

import torch

from . import format as fmt
from .messages import Note, note, t

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
    stats: Stats


@dataclass(frozen=True)
class ModuleRow:
    name: str
    kind: str
    params: int  # parameter tensors
    frozen: bool  # all its parameters are frozen
    stats: Stats


@dataclass(frozen=True)
class ModelReport:
    """``result.model``: the parameters' grads summarised (see the module docstring)."""

    params: tuple[ParamRow, ...]
    modules: tuple[ModuleRow, ...]
    notes: tuple[Note, ...] = ()
    digits: int = 4

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
        if stats.grad_norm is None:
            return [t("model.no_grad"), "", "", "", ""]
        n = lambda v: "" if v is None else fmt.number(float(v), self.digits)  # noqa: E731
        zeros = stats.zero_fraction or 0.0
        zero_text = "0" if zeros == 0 else f"{zeros:.0%}" if zeros >= 0.01 else f"{zeros:.1e}"
        return [n(stats.grad_norm), n(stats.mean_abs), n(stats.max_abs), zero_text, n(stats.ratio)]

    def param_rows(self, limit: int | None = None) -> list[list[str]]:
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
        return [
            [f"{m.name} ({m.kind})", t("model.params", count=m.params), *self._cells(m.stats, m.frozen)]
            for m in self.modules
        ]

    def summary(self) -> str:
        total = sum(p.stats.numel for p in self.params)
        trained = sum(1 for p in self.params if not p.frozen)
        return t("model.summary", params=len(self.params), values=f"{total:,}", modules=len(self.modules),
                 trained=trained)  # fmt: skip

    def layers(self) -> list[Any]:
        """The rows of the gradient-flow picture: one per module, in the model's order."""
        from .plot import LayerFlow

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
        ]


def _stats(grad: torch.Tensor | None, weight: torch.Tensor) -> Stats:
    with torch.no_grad():
        w = weight.detach()
        weight_norm = float(w.float().norm()) if w.is_floating_point() else 0.0
        if grad is None:
            return Stats(w.numel(), None, None, None, None, weight_norm)
        g = grad.detach()
        if g.is_complex():
            g = g.abs()
        a = g.abs().float()
        finite = bool(torch.isfinite(a).all())
        return Stats(
            numel=g.numel(),
            grad_norm=float(a.norm()),
            mean_abs=float(a.mean()) if g.numel() else 0.0,
            max_abs=float(a.max()) if g.numel() else 0.0,
            zero_fraction=float((g == 0).float().mean()) if g.numel() else 1.0,
            weight_norm=weight_norm,
            finite=finite,
        )


def _aggregate(parts: list[Stats]) -> Stats:
    numel = sum(s.numel for s in parts)
    with_grad = [s for s in parts if s.grad_norm is not None]
    weight_norm = math.sqrt(sum(s.weight_norm**2 for s in parts))
    if not with_grad:
        return Stats(numel, None, None, None, None, weight_norm)
    counted = sum(s.numel for s in with_grad) or 1
    return Stats(
        numel=numel,
        grad_norm=math.sqrt(sum((s.grad_norm or 0.0) ** 2 for s in with_grad)),
        mean_abs=sum((s.mean_abs or 0.0) * s.numel for s in with_grad) / counted,
        max_abs=max(s.max_abs or 0.0 for s in with_grad),
        zero_fraction=sum((s.zero_fraction or 0.0) * s.numel for s in with_grad) / counted,
        weight_norm=weight_norm,
        finite=all(s.finite for s in with_grad),
    )


def parameters_in(namespace: dict[str, Any]) -> dict[int, list[tuple[str, Any, Any]]]:
    """id(parameter) -> [(qualified name, owner module, the parameter)] for every nn.Module
    variable of the namespace (tied parameters have several names)."""
    nn = sys.modules.get("torch.nn")
    Module = getattr(nn, "Module", None)
    found: dict[int, list[tuple[str, Any, Any]]] = {}
    if Module is None:
        return found
    for var, value in list(namespace.items()):
        if var.startswith("_") or not isinstance(value, Module):
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
) -> ModelReport | None:
    """The parameters among *leaves* (and the frozen ones of the same models), summarised with
    their *values* and *grads* at the moment the grads were computed; None when no leaf is a
    model's parameter."""
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
        if key in tracked:
            name = tracked[key]
            aliases = tuple(q for q, _, _ in entries if q != name)
            stats = _stats(grads.get(name), values.get(name, leaves[name]))
            frozen = False
        elif not param.requires_grad:
            name, aliases, stats, frozen = (
                qualified,
                tuple(q for q, _, _ in entries[1:]),
                _stats(None, param),
                True,
            )
        else:
            continue  # a parameter that requires grad but the output does not reach: not tracked
        rows.append(
            ParamRow(name, aliases, module_name, type(module).__name__, tuple(param.shape), frozen, stats)
        )
    modules: dict[str, list[ParamRow]] = {}
    for row in rows:
        modules.setdefault(row.module, []).append(row)
    module_rows = tuple(
        ModuleRow(name, members[0].kind, len(members), all(m.frozen for m in members),
                  _aggregate([m.stats for m in members if not m.frozen] or [m.stats for m in members]))
        for name, members in modules.items()
    )  # fmt: skip
    notes: list[Note] = []
    for m in module_rows:
        if m.frozen:
            continue
        if not m.stats.finite:
            notes.append(note("model.non_finite", module=m.name, kind=m.kind))
        elif m.stats.grad_norm == 0:
            notes.append(note("model.all_zero", module=m.name, kind=m.kind))
    frozen = [r.name for r in rows if r.frozen]
    if frozen:
        notes.append(
            note("model.frozen_note", names=", ".join(frozen[:6]) + (" …" if len(frozen) > 6 else ""))
        )
    return ModelReport(tuple(rows), module_rows, tuple(notes), digits)
