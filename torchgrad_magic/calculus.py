"""Beyond the first derivative: ``--order``, ``--hessian``, ``--jacobian``,
``--check`` and ``--expect``.

Each function reads the graph (or re-runs the cell) and returns plain data
for :class:`~torchgrad_magic.result.GradResult`; nothing here prints.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch

from . import format as fmt
from .messages import t
from .spec import GradError, split_line

JACOBIAN_LIMIT = 1_000_000
CHECK_ELEMENTS = 64


# ---------------------------------------------------------------------------
# higher orders, Hessian, Jacobian (on the graph the cell built)
# ---------------------------------------------------------------------------
def higher_orders(
    leaves: dict[str, torch.Tensor], first: list[torch.Tensor | None], order: int
) -> dict[str, list[torch.Tensor | None]]:
    """``{name: [d1, d2, ..., dN]}``; order k is the grad of the sum of order k-1.

    *first* must have been computed with ``create_graph=True``.
    """
    orders: dict[str, list[torch.Tensor | None]] = {}
    for (name, leaf), g in zip(leaves.items(), first, strict=True):
        found = [None if g is None else g.detach()]
        for k in range(2, order + 1):
            if g is None:
                found.append(None)
                continue
            if not g.requires_grad:  # the previous order is a constant
                g = torch.zeros_like(leaf)
            else:
                (g,) = torch.autograd.grad(
                    g.sum(), leaf, retain_graph=True, create_graph=k < order, allow_unused=True
                )
                g = torch.zeros_like(leaf) if g is None else g
            found.append(g.detach())
        orders[name] = found
    return orders


def hessian(leaves: dict[str, torch.Tensor], first: list[torch.Tensor | None]) -> torch.Tensor:
    """The matrix of second partials of the (summed) output; scalar inputs only."""
    vectors = [name for name, leaf in leaves.items() if leaf.dim() != 0]
    if vectors:
        raise GradError(t("calc.hessian_scalars", names=", ".join(vectors)))
    inputs = list(leaves.values())
    dtype = inputs[0].dtype
    rows = []
    for g in first:
        if g is None or not g.requires_grad:
            rows.append(torch.zeros(len(inputs), dtype=dtype))
            continue
        parts = torch.autograd.grad(g, inputs, retain_graph=True, allow_unused=True)
        rows.append(torch.stack([torch.zeros((), dtype=dtype) if p is None else p.detach() for p in parts]))
    return torch.stack(rows)


@dataclass
class Matrix:
    """A labelled matrix for the report (Hessian or Jacobian)."""

    kind: str  # "hessian" or "jacobian"
    title: str
    values: torch.Tensor
    rows: list[str]
    cols: list[str]


def element_names(name: str, tensor: torch.Tensor) -> list[str]:
    """``x`` for a scalar, ``x[0]``, ``x[1]`` ... for a vector, ``x[0, 1]`` for a matrix."""
    if tensor.dim() == 0:
        return [name]
    return [f"{name}[{', '.join(map(str, idx))}]" for idx in itertools.product(*map(range, tensor.shape))]


def jacobian(output: torch.Tensor, out_name: str, leaves: dict[str, torch.Tensor]) -> Matrix:
    """Every d output[i] / d input[j]: rows are the output's elements, columns the inputs' elements."""
    m = output.numel()
    n = sum(leaf.numel() for leaf in leaves.values())
    if m * n > JACOBIAN_LIMIT:
        raise GradError(t("calc.jacobian_too_big", rows=m, cols=n, limit=f"{JACOBIAN_LIMIT:,}"))
    flat = output.reshape(-1)
    inputs = list(leaves.values())
    try:
        eye = torch.eye(m, dtype=output.dtype, device=output.device)
        parts = torch.autograd.grad(
            flat, inputs, grad_outputs=eye, is_grads_batched=True, retain_graph=True, allow_unused=True
        )
    except RuntimeError:  # an operation without a batching rule: one backward per row
        rows = [torch.autograd.grad(flat[i], inputs, retain_graph=True, allow_unused=True) for i in range(m)]
        parts = tuple(
            None if all(r[j] is None for r in rows) else torch.stack([
                torch.zeros_like(leaf) if r[j] is None else r[j] for r in rows
            ])
            for j, leaf in enumerate(inputs)
        )  # fmt: skip
    blocks = [
        torch.zeros(m, leaf.numel(), dtype=output.dtype) if p is None else p.detach().reshape(m, -1)
        for p, leaf in zip(parts, inputs, strict=True)
    ]
    cols = [c for name, leaf in leaves.items() for c in element_names(name, leaf)]
    title = t("calc.jacobian_title", out=out_name, rows=m, cols=n, inputs=", ".join(leaves))
    return Matrix("jacobian", title, torch.cat(blocks, dim=1), element_names(out_name, output), cols)


# ---------------------------------------------------------------------------
# --check: central differences in float64
# ---------------------------------------------------------------------------
@dataclass
class CheckRow:
    name: str
    autograd: torch.Tensor
    numeric: torch.Tensor
    max_error: float
    ok: bool


def check(rerun: Any, result: Any) -> tuple[list[CheckRow], list[str], float]:
    """Compare autograd with central differences, both in float64, per input.

    Returns the rows, notes (sampling, points where the function has a kink)
    and the relative step used.
    """
    step = 1e-6
    notes: list[str] = []
    base = {name: leaf.detach().to(torch.float64) for name, leaf in result.leaves.items()}
    out = "sum(" + result.output_name + ")" if result.summed else result.output_name

    def value(values: dict[str, torch.Tensor]) -> float:
        fresh = {n: v.clone().requires_grad_(True) for n, v in values.items()}
        return float(rerun.scalar(fresh).detach())

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        inputs = {n: v.clone().requires_grad_(True) for n, v in base.items()}
        output = rerun.scalar(inputs)
        if any(v.grad is not None for v in inputs.values()):  # the cell called backward() itself
            auto = [v.grad for v in inputs.values()]
        else:
            auto = list(torch.autograd.grad(output, list(inputs.values()), allow_unused=True))
        center = float(output.detach())
        rows = []
        kink_said = False
        for (name, point), g in zip(base.items(), auto, strict=True):
            g = torch.zeros_like(point) if g is None else g.detach()
            flat = point.reshape(-1)
            picks = _sample(flat.numel())
            if len(picks) < flat.numel():
                notes.append(t("check.sampled", name=name, count=flat.numel(), used=len(picks)))
            numeric, chosen = [], []
            for i in picks:
                h = step * max(1.0, abs(float(flat[i])))
                plus, minus = flat.clone(), flat.clone()
                plus[i] += h
                minus[i] -= h
                f_plus = value({**base, name: plus.reshape(point.shape)})
                f_minus = value({**base, name: minus.reshape(point.shape)})
                numeric.append((f_plus - f_minus) / (2 * h))
                chosen.append(float(g.reshape(-1)[i]))
                right, left = (f_plus - center) / h, (center - f_minus) / h
                if not kink_said and abs(right - left) > 1e-3 * max(1.0, abs(right), abs(left)):
                    kink_said = True
                    where = name if point.dim() == 0 else f"{name}[{i}]"
                    notes.append(
                        t("check.kink", out=out, name=where, point=fmt.number(float(flat[i])),
                          right=fmt.number(right), left=fmt.number(left), auto=fmt.number(chosen[-1]))
                    )  # fmt: skip
            a, b = torch.tensor(chosen, dtype=torch.float64), torch.tensor(numeric, dtype=torch.float64)
            error = float((a - b).abs().max()) if a.numel() else 0.0
            ok = bool(torch.allclose(a, b, rtol=1e-5, atol=1e-6)) and all(map(math.isfinite, numeric))
            rows.append(CheckRow(name, a if point.dim() else a[0], b if point.dim() else b[0], error, ok))
    finally:
        torch.set_default_dtype(previous)
    return rows, notes, step


def _sample(n: int) -> list[int]:
    if n <= CHECK_ELEMENTS:
        return list(range(n))
    return sorted(set(torch.linspace(0, n - 1, CHECK_ELEMENTS).round().long().tolist()))


# ---------------------------------------------------------------------------
# --expect
# ---------------------------------------------------------------------------
def parse_expect(items: list[str] | str, names: list[str]) -> dict[str, str]:
    """``["38"]`` (one input) or ``["u=43", "v=20"]`` -> ``{name: expression}``."""
    tokens = split_line(items) if isinstance(items, str) else list(items)
    expected: dict[str, str] = {}
    for token in tokens:
        name, sep, expr = token.partition("=")
        if not sep:
            if len(tokens) != 1 or len(names) != 1:
                example = " ".join(f"{n}=..." for n in names) or "x=..."
                raise GradError(t("expect.one_input", value=token, count=len(names), example=example))
            expected[names[0]] = token
            continue
        name, expr = name.strip(), expr.strip()
        if not expr or not name:
            raise GradError(t("expect.bad", value=token))
        if name not in names:
            raise GradError(t("expect.unknown", name=name, inputs=", ".join(names)))
        expected[name] = expr
    if not expected:
        raise GradError(t("expect.bad", value=" ".join(tokens)))
    return expected


def compare_expected(
    expected: dict[str, str], result: Any, namespace: dict[str, Any]
) -> tuple[bool, list[str]]:
    """Evaluate each expected value and compare with the grads (rtol 1e-4, atol 1e-6)."""
    lines, ok = [], True
    out = f"({result.output_name}.sum())" if result.summed else result.output_name
    d = "d" if len(result.leaves) == 1 else "∂"
    for name, expr in expected.items():
        try:
            value = eval(compile(expr, "<--expect>", "eval"), namespace, {"torch": torch})
            want = torch.as_tensor(value, dtype=torch.float64)
        except Exception as e:
            raise GradError(t("expect.bad", value=f"{name}={expr} ({type(e).__name__}: {e})")) from None
        got = result.grads[name]
        have = (
            torch.zeros_like(result.leaves[name], dtype=torch.float64) if got is None else got.double().cpu()
        )
        try:
            same = bool(torch.allclose(have, want.expand_as(have), rtol=1e-4, atol=1e-6))
        except RuntimeError:
            same = False
        ok &= same
        lines.append(
            t("expect.line", d=d, out=out, name=name, expected=fmt.values(want), got=fmt.values(have))
            if not same
            else f"{d}{out}/{d}{name} = {fmt.values(have)}"
        )
    return ok, lines
