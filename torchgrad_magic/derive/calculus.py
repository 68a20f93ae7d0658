"""Beyond the first derivative: ``--order``, ``--hessian``, ``--jacobian``,
``--check`` and ``--expect``.

Each function evaluates the recorded computation (a :class:`~torchgrad_magic.capture.record.Replay`,
never the cell again) and returns plain data for the report; nothing here prints.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import format as fmt
from ..capture.spec import GradError, split_line
from ..messages import note, t

JACOBIAN_LIMIT = 1_000_000
CHECK_ELEMENTS = 64  # inputs up to this size are checked element by element


# ---------------------------------------------------------------------------
# higher orders, Hessian, Jacobian: on the recorded computation (a Replay)
# ---------------------------------------------------------------------------
def _inputs(points: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: v.detach().clone().requires_grad_(True) for n, v in points.items()}


DIAGONAL_PASSES = 2048  # a vector input's second derivatives, one pass per element, up to this size


def higher_orders(
    replay: Any, points: dict[str, torch.Tensor], order: int
) -> tuple[dict[str, list[torch.Tensor | None]], dict[str, tuple[str, int]]]:
    """``{name: [d1, d2, ..., dN]}``, and the vector inputs whose orders stop early. Order k is the
    grad of the sum of order k-1: for a vector input that is ``∂ᵏy/∂xᵢᵏ`` element by element when
    each element of order k-1 depends on its own ``xᵢ`` alone (one probe tells). Where one does not
    (``softmax``, ``x[0] * x[1]``), order 2 is the diagonal of the Hessian, one pass per element
    ("mixed"; "big" past :data:`DIAGONAL_PASSES` elements: no order 2), and no higher order; where
    only a higher order k mixes them, the orders stop before it ("from"). *stopped*: name -> (why, k)."""
    inputs = _inputs(points)
    out = replay(inputs)
    orders: dict[str, list[torch.Tensor | None]] = {}
    stopped: dict[str, tuple[str, int]] = {}
    for name, leaf in inputs.items():
        (g,) = torch.autograd.grad(out, leaf, create_graph=True, retain_graph=True, allow_unused=True)
        found = [None if g is None else g.detach()]
        for k in range(2, order + 1):
            if g is None or not g.requires_grad:  # the previous order is a constant
                g = None if g is None else torch.zeros_like(leaf)
            else:
                previous = g
                (g,) = torch.autograd.grad(
                    g.sum(), leaf, create_graph=True, retain_graph=True, allow_unused=True
                )
                g = torch.zeros_like(leaf) if g is None else g
                if leaf.dim() != 0 and not _elementwise(previous, g, leaf):
                    why = "from" if k > 2 else "mixed" if leaf.numel() <= DIAGONAL_PASSES else "big"
                    stopped[name] = (why, k)
                    if why == "mixed":
                        found.append(_diagonal(previous, leaf))
                    break
            found.append(None if g is None else g.detach())
        orders[name] = found
    return orders, stopped


def _elementwise(previous: torch.Tensor, summed: torch.Tensor, leaf: torch.Tensor) -> bool:
    """Whether each element of *previous* depends on its own element of *leaf* alone, so that
    *summed* (the grad of its sum) is its derivative element by element: then the grad of
    ``previous · v`` is ``summed · v`` for any v (one random v, of a generator of our own)."""
    v = torch.randn(leaf.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = v.to(dtype=leaf.dtype, device=leaf.device)
    (probe,) = torch.autograd.grad((previous * v).sum(), leaf, retain_graph=True, allow_unused=True)
    if probe is None:
        return True
    expected = summed.detach() * v  # (element by element: a mixed term beside a big diagonal still counts)
    return bool(torch.isclose(probe, expected, rtol=1e-4, atol=1e-10 * float(expected.abs().max())).all())


def _diagonal(g: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """``∂g[i]/∂leaf[i]`` for each element i: one pass per element."""
    flat, parts = g.reshape(-1), []
    for i in range(flat.numel()):
        row = None
        if flat[i].requires_grad:
            (row,) = torch.autograd.grad(flat[i], leaf, retain_graph=True, allow_unused=True)
        parts.append(
            torch.zeros((), dtype=leaf.dtype, device=leaf.device) if row is None else row.reshape(-1)[i]
        )
    return torch.stack(parts).reshape(leaf.shape)


def hessian(replay: Any, points: dict[str, torch.Tensor]) -> torch.Tensor:
    """The matrix of second partials of the (summed) output; scalar inputs only."""
    vectors = [name for name, leaf in points.items() if leaf.dim() != 0]
    if vectors:
        raise GradError(t("calc.hessian_scalars", names=", ".join(vectors)))
    inputs = _inputs(points)
    values = list(inputs.values())
    dtype = values[0].dtype
    firsts = torch.autograd.grad(replay(inputs), values, create_graph=True, allow_unused=True)
    rows = []
    for g in firsts:
        if g is None or not g.requires_grad:
            rows.append(torch.zeros(len(values), dtype=dtype))
            continue
        parts = torch.autograd.grad(g, values, retain_graph=True, allow_unused=True)
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


def jacobian(replay: Any, points: dict[str, torch.Tensor], out_name: str) -> Matrix:
    """Every d output[i] / d input[j]: rows are the output's elements, columns the inputs' elements."""
    inputs = _inputs(points)
    output = replay.unsummed(inputs)
    m = output.numel()
    n = sum(leaf.numel() for leaf in inputs.values())
    if m * n > JACOBIAN_LIMIT:
        raise GradError(t("calc.jacobian_too_big", rows=m, cols=n, limit=f"{JACOBIAN_LIMIT:,}"))
    flat = output.reshape(-1)
    values = list(inputs.values())
    try:
        eye = torch.eye(m, dtype=output.dtype, device=output.device)
        parts = torch.autograd.grad(
            flat, values, grad_outputs=eye, is_grads_batched=True, retain_graph=True, allow_unused=True
        )
    except RuntimeError:  # an operation without a batching rule: one backward per row
        rows = [torch.autograd.grad(flat[i], values, retain_graph=True, allow_unused=True) for i in range(m)]
        parts = tuple(
            None if all(r[j] is None for r in rows) else torch.stack([
                torch.zeros_like(leaf) if r[j] is None else r[j] for r in rows
            ])
            for j, leaf in enumerate(values)
        )  # fmt: skip
    blocks = [
        torch.zeros(m, leaf.numel(), dtype=output.dtype) if p is None else p.detach().reshape(m, -1)
        for p, leaf in zip(parts, values, strict=True)
    ]
    cols = [c for name, leaf in points.items() for c in element_names(name, leaf)]
    title = t("calc.jacobian_title", out=out_name, rows=m, cols=n, inputs=", ".join(points))
    return Matrix("jacobian", title, torch.cat(blocks, dim=1).cpu(), element_names(out_name, output), cols)


# ---------------------------------------------------------------------------
# --check: central differences in float64
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckRow:
    name: str
    autograd: torch.Tensor
    numeric: torch.Tensor
    max_error: float
    ok: bool
    tolerance: float = 0.0
    directions: int = 0  # a big input: checked along this many random directions (the numbers are those)
    kink: bool = False  # at a kink: autograd's value lies between the slopes from left and right


def _as_shown(found: torch.Tensor, point: torch.Tensor, directions: list) -> torch.Tensor:
    """The checked numbers as the table shows the grads: a number for a scalar input, complex
    numbers for a complex input (real and imaginary parts are checked one by one)."""
    elementwise = all(i is not None for i, _ in directions)
    if point.is_complex() and elementwise and found.numel() == 2 * point.numel():
        found = torch.complex(found[0::2], found[1::2]).reshape(point.shape)
    elif elementwise and found.numel() == point.numel():
        found = found.reshape(point.shape)
    return found


EPS64 = float(torch.finfo(torch.float64).eps)
RTOL, ATOL = 1e-5, 1e-7
DIRECTIONS = 8  # random directions for inputs with more than CHECK_ELEMENTS elements


def check(
    replay: Any, points: dict[str, torch.Tensor], out: str, autograd: dict[str, Any] | None = None
) -> tuple[list[CheckRow], list[Any], float]:
    """Compare autograd with central differences, both in float64 on the recorded
    computation, per input. Inputs up to CHECK_ELEMENTS elements are checked
    element by element; bigger ones along random directions (as gradcheck's fast
    mode does). Tolerances include the rounding error of the differences, which
    grows with the size of the output, so a correct grad never FAILs for being big.

    *autograd*: the grads the cell's own autograd computed, when they are to be
    checked instead of the recorded computation's (they differ from it: a custom
    ``autograd.Function``, a hook that changes grads); they are in the cell's
    dtype, so the tolerance is that dtype's.

    Returns the rows, notes (sampling, kinks) and the relative step used.
    """
    base = {name: _float64(v) for name, v in points.items()}
    inputs = _inputs(base)
    output = replay(inputs, cast=torch.float64)
    grads, rtol = _checked_grads(output, inputs, autograd)
    checker = _Checker(replay, base, float(output.detach()), out, rtol)
    rows = [checker.row(name, point, g) for (name, point), g in zip(base.items(), grads, strict=True)]
    return rows, checker.notes, checker.step


def _checked_grads(
    output: torch.Tensor, inputs: dict[str, torch.Tensor], autograd: dict[str, Any] | None
) -> tuple[tuple[torch.Tensor | None, ...], float]:
    """The grads to check (the recorded computation's, or *autograd*'s in float64) and the relative
    tolerance: 1e-3 when the cell's own grads are in a lower precision than float64."""
    if autograd is None:
        return torch.autograd.grad(output, list(inputs.values()), allow_unused=True), RTOL
    grads = tuple(None if autograd.get(n) is None else _float64(autograd[n]) for n in inputs)
    low = [g for g in autograd.values() if g is not None and g.dtype not in (torch.float64, torch.complex128)]
    return grads, 1e-3 if low else RTOL


@dataclass
class _Checker:
    """One --check: the recorded computation (*replay*) in float64 around *base*, where it is
    *center*; *out* the output's label, *rtol* the relative tolerance, *step* the relative step of
    the differences. It gathers the notes (one kink at most) and draws the random directions."""

    replay: Any
    base: dict[str, torch.Tensor]
    center: float
    out: str
    rtol: float
    step: float = 1e-6
    notes: list[Any] = field(default_factory=list)
    kink_said: bool = False
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    def value(self, name: str, point: torch.Tensor) -> float:
        """The output with input *name* at *point*, the others at their values."""
        with torch.no_grad():
            return float(self.replay({**self.base, name: point}, cast=torch.float64))

    def row(self, name: str, point: torch.Tensor, g: torch.Tensor | None) -> CheckRow:
        """Input *name* (at *point*) checked: autograd's *g* against the differences along each
        direction (and, for a complex input, along the imaginary unit too)."""
        g = torch.zeros_like(point) if g is None else g.detach()
        directions = self.directions(name, point)
        units = [1] + ([1j] if point.is_complex() else [])
        measured = [
            self.difference(name, point, g, direction, unit) for direction in directions for unit in units
        ]
        numeric = [m[0] for m in measured]
        a = torch.tensor([m[1] for m in measured], dtype=torch.float64)
        b = torch.tensor(numeric, dtype=torch.float64)
        tol = torch.tensor([m[2] for m in measured], dtype=torch.float64) + self.rtol * a.abs() + ATOL
        diff = (a - b).abs()
        error = float(diff.max()) if a.numel() else 0.0
        kinks = torch.tensor([m[3] for m in measured], dtype=torch.bool)  # (autograd took a side there)
        ok = bool(((diff <= tol) | kinks).all()) and all(map(math.isfinite, numeric))
        shown_a, shown_b = _as_shown(a, point, directions), _as_shown(b, point, directions)
        sampled = len(directions) if directions and directions[0][0] is None else 0
        tolerance = float(tol.max()) if a.numel() else 0.0
        return CheckRow(name, shown_a, shown_b, error, ok, tolerance, sampled, bool(kinks.any()))

    def directions(self, name: str, point: torch.Tensor) -> list[tuple[int | None, torch.Tensor]]:
        """(element, unit vector) for each element of a small input; (None, a random ±1 direction)
        DIRECTIONS times for a big one (a note says so)."""
        if point.numel() <= CHECK_ELEMENTS:
            directions: list[tuple[int | None, torch.Tensor]] = []
            for i in range(point.numel()):
                e = torch.zeros_like(point).reshape(-1)
                e[i] = 1
                directions.append((i, e.reshape(point.shape)))
            return directions
        self.notes.append(note("check.directions", name=name, count=point.numel(), used=DIRECTIONS))
        return [
            (None, (torch.randint(0, 2, point.shape, generator=self.generator) * 2 - 1).to(point.dtype))
            for _ in range(DIRECTIONS)
        ]

    def difference(
        self,
        name: str,
        point: torch.Tensor,
        g: torch.Tensor,
        direction: tuple[int | None, torch.Tensor],
        unit: complex,
    ) -> tuple[float, float, float, bool]:
        """One central difference along *direction* times *unit* (1, or 1j: the imaginary part):
        (the difference quotient, autograd's derivative along it, the rounding error's tolerance,
        whether the point is a kink where autograd's value lies between the two one-sided slopes)."""
        i, e = direction
        scale = float(point.abs().max()) if i is None else abs(complex(point.reshape(-1)[i]))
        h = self.step * max(1.0, scale)
        move = e * unit * h
        f_plus, f_minus = self.value(name, point + move), self.value(name, point - move)
        along = (g * e).sum() if i is None else g.reshape(-1)[i]
        chosen = float(along.real if unit == 1 else along.imag)
        tolerance = 64 * EPS64 * max(abs(f_plus), abs(f_minus), abs(self.center), 1.0) / h
        slopes = ((f_plus - self.center) / h, (self.center - f_minus) / h)
        side = False
        if self.is_kink(name, point, move, slopes):
            side = min(slopes) - tolerance - ATOL <= chosen <= max(slopes) + tolerance + ATOL
            self.say_kink(name, point, i, slopes, (chosen, side))
        return (f_plus - f_minus) / (2 * h), chosen, tolerance, side

    def is_kink(
        self, name: str, point: torch.Tensor, move: torch.Tensor, slopes: tuple[float, float]
    ) -> bool:
        """Whether the slopes from the right and the left (*slopes*, over *move*) differ there, and
        still do over a tenth of it: a smooth function's differ by f''·h, which shrinks with h (10⁷·x²
        at 0: 10 and -10 at h = 10⁻⁶), a kink's do not."""
        right, left = slopes
        if not abs(right - left) > 1e-3 * max(1.0, abs(right), abs(left)):
            return False
        h = float(move.abs().max())
        small = ((self.value(name, point + move / 10) - self.center) / (h / 10),
                 (self.center - self.value(name, point - move / 10)) / (h / 10))  # fmt: skip
        return abs(small[0] - small[1]) > 0.5 * abs(right - left)

    def say_kink(
        self,
        name: str,
        point: torch.Tensor,
        i: int | None,
        slopes: tuple[float, float],
        auto: tuple[float, bool],
    ) -> None:
        """The note of the first kink: where (an element, or along a random direction), its slopes,
        and autograd's value *auto* (between them: PyTorch took a side; outside both: wrong)."""
        if self.kink_said:
            return
        self.kink_said = True
        right, left = (fmt.number(v) for v in slopes)
        value, between = fmt.number(auto[0]), auto[1]
        if i is None:
            key = "check.kink_along" if between else "check.kink_along_outside"
            self.notes.append(note(key, out=self.out, name=name, right=right, left=left, auto=value))
            return
        where = name if point.dim() == 0 else f"{name}[{i}]"
        at = fmt.number(float(point.reshape(-1)[i].real))
        key = "check.kink" if between else "check.kink_outside"
        self.notes.append(note(key, out=self.out, name=where, point=at, right=right, left=left, auto=value))


def _float64(value: torch.Tensor) -> torch.Tensor:
    value = value.detach()
    return value.to(torch.complex128) if value.is_complex() else value.to(torch.float64)


# ---------------------------------------------------------------------------
# --expect
# ---------------------------------------------------------------------------
def parse_expect(items: list[str] | str, names: list[str]) -> dict[str, str]:
    """``["38"]`` (one input) or ``["u=43", "v=20"]`` -> ``{name: expression}``."""
    # 'u=43 v=20' quoted, as people write it, is one item: split each item again
    tokens = [token for item in ([items] if isinstance(items, str) else items) for token in split_line(item)]
    expected: dict[str, str] = {}
    for token in tokens:
        name, sep, expr = token.partition("=")
        if not sep:
            example = " ".join(f"{n}=..." for n in names) or "x=..."
            if len(names) != 1:
                raise GradError(t("expect.one_input", value=token, count=len(names), example=example))
            if len(tokens) != 1:
                raise GradError(t("expect.one_value", value=" ".join(tokens), name=names[0]))
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
    out = fmt.operand(result.label)
    d = fmt.d_of(len(result.leaves) != 1, out, *result.leaves)
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
