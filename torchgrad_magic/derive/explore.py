"""``--explore``'s numbers: the recorded computation evaluated on the sliders' grid.

The values are computed here, in the kernel, once: the computation recorded during the one run
(:mod:`..capture.record`) is evaluated on a grid (101 points for one scalar input, 41 × 41 for
two), batched with ``torch.func.vmap``. The cell never runs again. A vector input
(``x = torch.linspace(...)``) needs no grid: the slider picks a point of the run's own values, and
the tangent's slope is dY[i]/dx[i], read off the rows of the Jacobian the record gives.

The result is a :class:`Grid` of plain numbers; :mod:`..render.explore` makes the chart of it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from .. import format as fmt
from ..capture.spec import GradError, interval
from ..messages import Note, note, resolve, t
from .extras import label_of

SCALAR_POINTS = (101, 41)  # about this many grid points per input, one and two scalar inputs (nice_step)
TABLE_ROWS = 12  # the explorer's table: rows at most (each a grid of data and one of grad)
VECTOR_POINTS = 201  # points of a vector input the slider can pick, at most


@dataclass(frozen=True)
class Axis:
    """One slider: the input's *name*, its grid ``low + step·i`` (i < *count*) or, for a vector
    input, the picked elements' values (*values*), and the index of the run's own point."""

    name: str
    low: float
    step: float
    count: int
    start: int
    values: tuple[float | None, ...] = ()  # a vector input's picked values (the slider moves an index)
    picks: tuple[int, ...] = ()  # and their indices in the input

    def value(self, i: int) -> float:
        """The input's value at grid index *i* (a scalar input's grid; 0.6, not 0.6000000000000001)."""
        return float(f"{self.low + self.step * i:.12g}")


@dataclass(frozen=True)
class TableRow:
    """One row of the explorer's table, ``name · data · grad`` at the sliders' point. *source*:
    ``"input"`` (axis *axis*'s value and the derivative along it), ``"output"`` (the function, grad
    1), ``"node"`` (a named tensor of the record: *data* and *grad* on the grid, grad as
    ``retain_grad()`` gives it), ``"constant"`` (*data* one number, no grad)."""

    name: str
    source: str
    axis: int = 0
    data: tuple[float | None, ...] = ()
    grad: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class Grid:
    """The grid's values as plain lists (row-major over the axes): ``f`` the function, ``d[k]``
    its derivative along axis k; *out* and *ds* the labels (``y``, ``dy/dx``); *table* the named
    one-element tensors, at every point of the grid."""

    axes: tuple[Axis, ...]
    out: str
    ds: tuple[str, ...]
    f: tuple[float | None, ...]
    d: tuple[tuple[float | None, ...], ...]
    vector: bool = False
    digits: int = 4
    language: str = "en"
    seconds: float = 0.0  # how long the grid took
    table: tuple[TableRow, ...] = ()  # the named one-element tensors (the chart shows the sliders' point)


# ---------------------------------------------------------------------------
# the magic line: --explore, --explore x=-2:2, --explore u=0:5 v=1:2
# ---------------------------------------------------------------------------
def parse_ranges(value: Any, names: list[str]) -> dict[str | None, tuple[float, float]]:
    """``True`` -> ``{}``; ``"x=-2:2"`` -> ``{"x": (-2, 2)}``; ``"-2:2"`` -> ``{None: (-2, 2)}``
    (the one input). GradError for what cannot be a range, or a name not in *names* (when known)."""
    if value is True or value in (None, False, ""):
        return {}
    found: dict[str | None, tuple[float, float]] = {}
    for token in str(value).replace(",", " ").split():
        name, _, text = token.rpartition("=") if "=" in token else ("", "", token)
        try:
            a, b = interval(text, "explore.bad_range")
        except GradError:
            raise GradError(t("explore.bad_range", value=token)) from None
        if name and names and name not in names:
            raise GradError(t("explore.unknown", name=name, names=", ".join(names)))
        found[name or None] = (a, b)
    return found


def window(point: float, given: tuple[float, float] | None) -> tuple[float, float]:
    """The slider's range: as given, or the point ± max(2, |point|)."""
    if given is not None:
        return given
    half = max(2.0, abs(point))
    return point - half, point + half


def grid_axis(name: str, point: float, low: float, high: float, count: int) -> Axis:
    """About *count* points from *low* to *high*, a round step apart (:func:`nice_step`), shifted
    so that one of them is the run's own point (when it is inside the range): the slider starts
    exactly there, and where the point is a round number it also lands on 0.5, 1.25, ..."""
    step = nice_step((high - low) / (count - 1))
    digits = max(0, 1 - math.floor(math.log10(step)))  # (enough for every multiple of the step)
    if low <= point <= high:
        below = math.floor((point - low) / step + 1e-6)
        start = point - below * step
        if abs(point / step - round(point / step)) < 1e-6:  # (on the step's grid: no rounding noise)
            start = round(start, digits)
        count = below + math.floor((high - point) / step + 1e-6) + 1
        return Axis(name, start, step, count, below)
    count = math.floor((high - low) / step + 1e-6) + 1
    return Axis(name, low, step, count, 0 if point < low else count - 1)


def nice_step(raw: float) -> float:
    """The round step nearest *raw* (1, 2, 2.5 or 5 times a power of ten): 0.05, not 0.06."""
    power = 10.0 ** math.floor(math.log10(raw))
    steps = [float(f"{m * power:.12g}") for m in (1.0, 2.0, 2.5, 5.0, 10.0)]
    return min(steps, key=lambda step: abs(math.log(step / raw)))


# ---------------------------------------------------------------------------
# evaluating the record on the grid
# ---------------------------------------------------------------------------
def unavailable(replay: Any, record: Any, first: Any) -> Note | None:
    """Why the record cannot be evaluated away from the run's point (None: it can)."""
    if replay is None:
        return note("explore.no_record", out=first.output_name)
    if record.escapes:
        calls = ", ".join(f".{n}()" if not n.startswith("__") else n for n in dict.fromkeys(record.escapes))
        return note("explore.escapes", calls=calls)
    if replay.random:
        return note("explore.random")
    if any(v.is_complex() for v in first.values.values()) or first.output.is_complex():
        return note("explore.complex")
    return None


def scalar_values(
    replay: Any, first: Any, axes: tuple[Axis, ...], nodes: dict[str, Any] | None = None
) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """f and each partial derivative on the grid of *axes* (row-major), in one batched call (point
    by point where an operation has no batching rule); with *nodes* (name -> the record's ref), each
    named tensor's value and d(f)/d(it) on the grid too (those off the output's path left out)."""
    names = [a.name for a in axes]
    fixed = {n: v for n, v in first.values.items() if n not in names}
    dtype = first.values[names[0]].dtype
    device = first.values[names[0]].device
    coords = [torch.tensor([a.value(i) for i in range(a.count)], dtype=dtype, device=device) for a in axes]
    mesh = torch.meshgrid(*coords, indexing="ij")
    flat = [m.reshape(-1) for m in mesh]
    probe, state, kept = probed(replay, nodes or {})
    roots = {n: probe.record.roots[probe.leaves[ROOT + n]].value for n in kept if ROOT + n in probe.leaves}

    def function(*args: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        xs, eps = args[: len(names)], args[len(names) :]
        state["eps"], state["seen"] = dict(zip(kept, eps, strict=True)), {}
        held = {ROOT + n: v + state["eps"][n].to(v.dtype) for n, v in roots.items()}
        state["seen"].update((n[len(ROOT) :], v) for n, v in held.items())
        out = probe({**fixed, **dict(zip(names, xs, strict=True)), **held})
        return out, tuple(state["seen"][n] for n in kept)

    zeros = [torch.zeros_like(flat[0]) for _ in kept]
    argnums = tuple(range(len(names) + len(kept)))
    try:
        grads, (values, seen) = torch.func.vmap(
            torch.func.grad_and_value(function, argnums=argnums, has_aux=True), randomness="same"
        )(*flat, *zeros)
    except Exception:  # no batching rule somewhere: one point at a time
        points = [_grad_and_value(function, [f[i] for f in [*flat, *zeros]]) for i in range(flat[0].numel())]
        values = torch.stack([p[1] for p in points])
        grads = tuple(torch.stack([p[0][k] for p in points]) for k in argnums)
        seen = tuple(torch.stack([p[2][k] for p in points]) for k in range(len(kept)))
    found = {
        n: (seen[k].detach().reshape(-1), grads[len(names) + k].detach().reshape(-1))
        for k, n in enumerate(kept)
    }
    return values.detach(), [g.detach() for g in grads[: len(names)]], found


ROOT = "\ue000"  # the replay's name of a named leaf that is not an input (its grad in the table)


def probed(replay: Any, nodes: dict[str, Any]) -> tuple[Any, dict[str, Any], list[str]]:
    """A copy of *replay* that adds ``state["eps"][name]`` to each tensor of *nodes* (name -> the
    record's Ref/RootRef) where the record makes it, and keeps its value in ``state["seen"]``:
    d(out)/d(eps) at eps = 0 is d(out)/d(that tensor), as ``retain_grad()`` gives it. The names
    kept: those on the output's path (the others, and the inputs, are left out)."""
    from ..capture.record import Ref, Replay, RootRef

    record = replay.record
    state: dict[str, Any] = {"eps": {}, "seen": {}}
    leaves, kept = dict(replay.leaves), []
    by_op: dict[int, list[tuple[int, str]]] = {}
    for name, ref in nodes.items():
        if isinstance(ref, Ref) and ref.op in replay.ops and ref.index >= 0:
            by_op.setdefault(ref.op, []).append((ref.index, name))
        elif isinstance(ref, RootRef) and ref.root in replay.roots and ref.root not in leaves.values():
            leaves[ROOT + name] = ref.root
        else:
            continue
        kept.append(name)
    if not kept:
        return replay, state, kept
    ops = list(record.ops)
    for k, pairs in by_op.items():
        ops[k] = dataclasses.replace(ops[k], func=_probe(ops[k].func, pairs, state))
    return Replay(dataclasses.replace(record, ops=ops), replay.output, leaves, replay.summed), state, kept


def _probe(func: Any, pairs: list[tuple[int, str]], state: dict[str, Any]) -> Any:
    """*func*, its outputs at *pairs* (flat index, name) kept and moved by their eps."""
    from torch.utils._pytree import tree_flatten, tree_unflatten

    def probed(*args: Any, **kwargs: Any) -> Any:
        out = func(*args, **kwargs)
        flat, spec = tree_flatten(out)
        for index, name in pairs:
            state["seen"][name] = flat[index]
            flat[index] = flat[index] + state["eps"][name].to(flat[index].dtype)
        return tree_unflatten(flat, spec)

    return probed


def _grad_and_value(
    function: Any, values: list[torch.Tensor]
) -> tuple[list[torch.Tensor], torch.Tensor, tuple[torch.Tensor, ...]]:
    leaves = [v.detach().clone().requires_grad_(True) for v in values]
    out, aux = function(*leaves)
    grads = torch.autograd.grad(out, leaves, allow_unused=True)
    return (
        [torch.zeros_like(v) if g is None else g.detach() for v, g in zip(leaves, grads, strict=True)],
        out.detach(),
        tuple(a.detach() for a in aux),
    )


def vector_values(whole: Any, first: Any, name: str) -> tuple[list[int], torch.Tensor, torch.Tensor] | Note:
    """A 1-D input: the picked indices, Y there and dY[i]/dx[i] there (rows of the Jacobian, one
    vector-Jacobian product each, batched); a note when Y is not elementwise in x."""
    x = first.values[name].detach()
    picks = torch.linspace(0, x.numel() - 1, min(VECTOR_POINTS, x.numel())).round().long().unique()
    out, vjp = torch.func.vjp(lambda v: whole.unsummed({name: v}), x)[:2]
    if out.shape != x.shape:
        return note("explore.not_elementwise", out=first.output_name, name=name)
    ones = torch.zeros(picks.numel(), x.numel(), dtype=out.dtype, device=out.device)
    ones[torch.arange(picks.numel()), picks] = 1
    try:
        (rows,) = torch.func.vmap(vjp, chunk_size=32)(ones.reshape(-1, *out.shape))
    except Exception:  # no batching rule somewhere: one row at a time
        rows = torch.stack([vjp(row.reshape(out.shape))[0] for row in ones])
    rows = rows.reshape(picks.numel(), -1).detach()
    slopes = rows[torch.arange(picks.numel()), picks].clone()
    rows[torch.arange(picks.numel()), picks] = 0
    if bool((rows != 0).any()):
        return note("explore.not_elementwise", out=first.output_name, name=name)
    return picks.tolist(), out.detach().reshape(-1)[picks], slopes


# ---------------------------------------------------------------------------
# building the grid
# ---------------------------------------------------------------------------
def build(
    replay: Any,
    whole: Any,
    record: Any,
    first: Any,
    opts: Any,
    notes: list[Note],
    named: dict[str, Any] | None = None,
) -> Grid | None:
    """The explorer's grid of *first*'s output, or None with a note saying why there is none. *named*:
    the record's refs of the cell's named one-element tensors, for the table (scalar inputs)."""
    import time

    problem = unavailable(replay, record, first)
    dims = [v.dim() for v in first.values.values()]
    if problem is None and not (set(dims) == {0} and len(dims) <= 2) and dims != [1]:
        problem = note(
            "explore.shape", shapes=", ".join(f"{n} {fmt.shape(v)}" for n, v in first.values.items())
        )
    if problem is not None:
        notes.append(problem)
        return None
    given = parse_ranges(opts.explore, list(first.values))
    start = time.perf_counter()
    if dims == [1]:
        found = _vector(whole if whole is not None and not isinstance(whole, str) else replay, first, opts)
    else:
        found = _scalar(replay, first, opts, given, named or {})
    if isinstance(found, Note):
        notes.append(found)
        return None
    return dataclasses.replace(found, seconds=time.perf_counter() - start)


def _scalar(replay: Any, first: Any, opts: Any, given: dict, named: dict[str, Any]) -> Grid:
    names = list(first.values)
    count = SCALAR_POINTS[len(names) - 1]
    axes = []
    for name in names:
        point = first.values[name].detach().double().item()
        low, high = window(point, given.get(name, given.get(None) if len(names) == 1 else None))
        axes.append(grid_axis(name, point, low, high, count))
    nodes = {n: ref for n, ref in named.items() if n in _table_names(first)}
    try:
        values, grads, found = scalar_values(replay, first, tuple(axes), nodes)
    except Exception:  # the table's tensors could not be followed: the chart without them
        values, grads, found = scalar_values(replay, first, tuple(axes))
    out = label_of(first, replay)
    d = fmt.d_of(len(names) != 1, out, *names)
    ds = tuple(f"{d}{fmt.operand(out)}/{d}{n}" for n in names)
    return Grid(
        tuple(axes), out, ds, _numbers(values), tuple(_numbers(g) for g in grads), digits=opts.digits,
        language=_language(opts), table=table_rows(first, names, found),
    )  # fmt: skip


def _table_names(first: Any) -> list[str]:
    """The table's rows the explorer can follow: one-element floating tensors, at most TABLE_ROWS."""
    rows = [r for r in first.rows if r.data.numel() == 1 and r.data.is_floating_point()]
    return [r.name for r in rows][:TABLE_ROWS]


def table_rows(
    first: Any, names: list[str], found: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> tuple[TableRow, ...]:
    """The explorer's table in the report's order: the inputs (the sliders), the output (grad 1),
    the constants (their one value) and the named tensors the record made (*found*: their values
    and grads on the grid); a tensor the record has not (or off the output's path) is left out."""
    rows: list[TableRow] = []
    wanted = set(_table_names(first))
    for row in first.rows:
        if row.name not in wanted:
            continue
        if row.name in names and row.role == "input":
            rows.append(TableRow(row.name, "input", names.index(row.name)))
        elif row.role == "output":
            rows.append(TableRow(row.name, "output"))
        elif row.name in found:
            data, grad = found[row.name]
            rows.append(TableRow(row.name, "node", data=_numbers(data), grad=_numbers(grad)))
        elif row.role == "constant":
            rows.append(TableRow(row.name, "constant", data=_numbers(row.data)))
    return tuple(rows)


def _vector(whole: Any, first: Any, opts: Any) -> Grid | Note:
    name = next(iter(first.values))
    found = vector_values(whole, first, name)
    if isinstance(found, Note):
        return found
    picks, ys, slopes = found
    x = first.values[name].detach().reshape(-1)
    axis = Axis(name, 0.0, 1.0, len(picks), len(picks) // 2, _numbers(x[picks]), tuple(picks))
    out = first.output_name
    d = fmt.d_of(False, out, name)
    ds = (f"{d}{fmt.operand(out)}[i]/{d}{name}[i]",)
    return Grid((axis,), out, ds, _numbers(ys), (_numbers(slopes),), True, opts.digits, _language(opts))


def _language(opts: Any) -> str:
    return resolve(opts.lang)


def _numbers(values: torch.Tensor) -> tuple[float | None, ...]:
    """Plain numbers, 7 significant digits (float32's; 12 for float64), None for nan/inf."""
    digits = 12 if values.dtype == torch.float64 else 7
    return tuple(
        float(f"{v:.{digits}g}") if math.isfinite(v) else None
        for v in values.detach().double().cpu().reshape(-1).tolist()
    )


def picture_window(ex: Grid) -> tuple[float, float] | None:
    """The window of the static picture: the sliders' range when every input has the same one."""
    ranges = {(a.value(0), a.value(a.count - 1)) for a in ex.axes}
    return next(iter(ranges)) if not ex.vector and len(ranges) == 1 else None
