"""The optional parts (``--order``, ``--hessian``, ``--jacobian``, ``--check``,
``--symbolic``, ``--plot``, ``--explore``), all evaluated on the computation recorded during the
one run of the cell (:mod:`..capture.record`), never by running the cell again.

``--plot`` and ``--explore`` are evaluated here and drawn later: the curves (:class:`Curves`) and
the explorer's grid (:class:`.explore.Grid`) are data; :mod:`..render.figures` draws them.

Before any of them is shown, the replay is compared with what autograd computed
in the run (the output's value and every grad): if they differ, the record could
not follow the cell, and a note says so instead of showing a wrong number. The
global random generator and grad mode are put back afterwards.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import format as fmt
from ..capture.spec import GradError
from ..messages import Note, note

GRID_POINTS = 201  # --plot's points per input (render/plot.py draws on the same grid: a test checks)


@dataclass(frozen=True)
class Sweep:
    """f and df/d(*name*) along one scalar input, the others held at their values: *x* the grid
    (float64), *y* and *slope* on it (on the CPU); *error* instead when the record could not be
    evaluated there."""

    name: str
    x: torch.Tensor
    y: torch.Tensor | None = None
    slope: torch.Tensor | None = None
    error: Exception | None = None


@dataclass(frozen=True)
class Curves:
    """What a figure of f and f' is drawn from: the *window* asked for (None: around each point),
    the *sweeps* (None: nothing evaluated, the figure shows the run's own numbers and the tangent),
    and *at*: where the figure's own notes go among :attr:`Extras.notes` (they read in the order
    they were found)."""

    window: tuple[float, float] | None
    sweeps: tuple[Sweep, ...] | None
    at: int


@dataclass(frozen=True)
class Extras:
    """The extras' results. ``plot``, ``grid`` and ``picture`` are what --plot and --explore are
    drawn from; :func:`..render.figures.draw` fills ``figure``, ``curves`` and ``explorer``."""

    orders: dict[str, list[torch.Tensor | None]] = field(default_factory=dict)
    matrices: tuple[Any, ...] = ()
    checks: tuple[Any, ...] = ()
    check_step: float = 0.0
    symbolic: tuple[Any, ...] = ()
    plot: Curves | None = None  # --plot
    grid: Any = None  # explore.Grid (--explore)
    picture: Curves | None = None  # --explore's picture of the run's point, when --plot draws none
    figure: Any = None
    curves: tuple[Any, ...] = ()
    explorer: Any = None  # render's explore.Explorer (--explore)
    notes: tuple[Note, ...] = ()


def extras(first: Any, recorder: Any, observer: Any, opts: Any, window: Any, ns: dict[str, Any]) -> Extras:
    """The extras *opts* asks for, evaluated on the record of the run (*recorder*, finished here);
    *window*: --plot's range (None: around each point); *ns*: the cell's namespace (--explore's
    table). The figures are left to :func:`..render.figures.draw`."""
    if recorder is None:
        return Extras()
    if first.output is None or not first.leaves or not opts.needs_replay:
        recorder.finish()
        return Extras()
    if getattr(first, "withheld", False):  # its grads run the user's own backward code
        recorder.finish()
        return Extras(notes=(note("extras.withheld"),))
    if getattr(first, "others", ()):  # y1 + y2: the extras evaluate one output
        recorder.finish()
        return Extras(notes=(note("extras.several", label=first.differentiated or first.output_name),))
    notes: list[Note] = []
    if first.call is not None and first.call.gradient_given:
        notes.append(note("extras.weighted", out=first.output_name, label=first.differentiated or "v"))
    recorded = _recorded(first, recorder, opts, ns, notes)
    earlier = _made_earlier(first, observer, ns)
    if earlier and recorded.replay is not None:  # the record starts at them: its derivative is not y's
        notes.append(note("rec.earlier", out=first.output_name, names=", ".join(earlier)))
        recorded = dataclasses.replace(recorded, replay=None, whole=None)
    # heavy libraries are imported before the warning filters are saved: their own module-level
    # filters (sympy adds one) must stay, as after a plain import
    if opts.symbolic:
        try:
            from . import symbolic  # noqa: F401
        except ImportError:  # sympy is the [symbolic] extra: the rest of the report still comes
            notes.append(note("sym.missing"))
            opts = opts.replace(symbolic=False)
    found: dict[str, Any] = {}  # (what was found before an extra failed is kept)
    with torch.random.fork_rng(devices=[]), torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _extras(recorded, first, opts, window, notes, found)
        except GradError as e:  # a flag only the run could check (--explore z=… without --wrt)
            notes.append(note("extras.refused", error=str(e)))
        except Exception as e:  # an extra that cannot work here is a note, never a lost report
            notes.append(note("rec.failed", error=fmt.error_line(e)))
    return Extras(notes=tuple(notes), **found)


def _made_earlier(first: Any, observer: Any, ns: dict[str, Any]) -> list[str]:
    """The tensors the cell reads that an earlier cell computed from its leaves (``h = x * 3`` in
    the cell before): the record of this cell has them as constants."""
    from ..capture.internals import sequence_number
    from ..capture.observe import graph_leaves

    start = getattr(observer, "first_node", -1)
    leaves = {id(leaf) for leaf in first.leaves.values()}
    found = []
    for name in getattr(observer, "written", ()):
        value = ns.get(name)
        if not isinstance(value, torch.Tensor) or value.grad_fn is None:
            continue
        if start >= 0 and sequence_number(value.grad_fn) >= start:  # (made by this cell)
            continue
        reached = graph_leaves((value,), limit=20_000)
        if reached is None or any(id(t) in leaves for t in reached):
            found.append(name)
    return found


@dataclass(frozen=True)
class _Recorded:
    """What the extras evaluate: the *record*, the *replay* of what was differentiated (None: the
    record cannot follow it), the replay of Y itself when the cell reduced it (*whole*: --jacobian's
    matrix is Y's, --explore of a vector input moves along Y) and the record's refs of the cell's
    named tensors (*named*: --explore's table)."""

    record: Any
    replay: Any
    whole: Any = None
    named: dict[str, Any] = field(default_factory=dict)


def _say_point_only(notes: list[Note]) -> None:
    """The plot shows only the point and its tangent: said in the note on the escapes, where there
    is one (one cause, one note), else on its own."""
    for i, said in enumerate(notes):
        if said.id == "rec.escapes":
            notes[i] = note("rec.escapes_plot", **said.fields)
            return
    notes.append(note("rec.branches"))


def _recorded(first: Any, recorder: Any, opts: Any, ns: dict[str, Any], notes: list[Note]) -> _Recorded:
    """The record finished and its replays; the notes of what it could not follow."""
    from ..capture.record import replay_for

    summed = target_of(first).numel() != 1
    ref = first.call.record_ref if first.call is not None else recorder.ref(target_of(first))
    written = getattr(first, "written", None)
    whole_ref = recorder.ref(first.output) if written and (opts.jacobian or opts.explore) else None
    named = _named_refs(recorder, first, ns) if opts.explore else {}  # (read before the record is finished)
    record = recorder.finish()
    record.escapes = record.escapes_before(ref)  # (a .numpy() for a plot, after the output: no matter)
    replay = replay_for(record, ref, first.leaves, summed)
    whole = replay_for(record, whole_ref, first.leaves, True) if whole_ref is not None else None
    if record.escapes:
        calls = ", ".join(f".{n}()" if not n.startswith("__") else n for n in dict.fromkeys(record.escapes))
        notes.append(note("rec.escapes", calls=calls))
    if isinstance(replay, str):
        notes.append(note(replay, out=first.output_name))
        replay = None
    return _Recorded(record, replay, whole, named)


def _extras(
    recorded: _Recorded, first: Any, opts: Any, window: Any, notes: list[Note], found: dict[str, Any]
) -> None:
    """Verify the replay, then the extras that were asked for, into *found* (Extras' fields)."""
    points = {name: first.values[name] for name in first.leaves}
    replay, record = recorded.replay, recorded.record
    if replay is not None:
        problem = _verify(replay, first, points)
        if problem is not None and problem.id == "rec.grads_differ" and opts.check:
            # the values agree but autograd's grads do not: exactly what --check is for
            found.update(_check(replay, first, points, notes, autograd=first.grads))
            rows = found.get("checks", ())
            if rows and all(row.ok for row in rows):  # the cell's grads are right: the record is what differs
                problem = note("rec.grads_agree", out=problem.fields["out"])
            notes.append(problem)
            replay = None
        elif problem is not None:
            notes.append(problem)
            replay = None
    if replay is not None:
        found.update(_calculus(replay, first, points, opts, notes, recorded.whole))
    if opts.plot:
        if record.escapes and _point_figure(first):  # values left the computation: only the tangent
            _say_point_only(notes)  # is honest (a 1-D input's plot is the run's own numbers)
        found["plot"] = _curves(replay if not record.escapes else None, first, window, notes)
    if opts.explore:
        found.update(_explore(dataclasses.replace(recorded, replay=replay), first, opts, notes))


def _named_refs(recorder: Any, first: Any, ns: dict[str, Any]) -> dict[str, Any]:
    """--explore's table: where each named one-element tensor of the table (not the inputs, not the
    output) is in the record, read before the record is finished (a name not found has no entry)."""
    found = {}
    for row in first.rows:
        value = ns.get(row.name)
        if row.role in ("input", "output") or not isinstance(value, torch.Tensor) or value.numel() != 1:
            continue
        if value.grad_fn is not None or value.requires_grad:  # (a constant is not in the record)
            ref = recorder.ref(value)
            if ref is not None:
                found[row.name] = ref
    return found


def _explore(recorded: _Recorded, first: Any, opts: Any, notes: list[Note]) -> dict[str, Any]:
    """--explore: the grid's values from the record (the table's rows too), and the curves of a
    picture of the run's point (evaluated only without --plot: with it, the picture is the --plot
    figure)."""
    from . import explore

    replay = recorded.replay
    grid = explore.build(replay, recorded.whole, recorded.record, first, opts, notes, recorded.named)
    if grid is None:
        return {}
    window = explore.picture_window(grid)
    return {"grid": grid, "picture": _curves(replay if not opts.plot else None, first, window, notes)}


def _verify(replay: Any, first: Any, points: dict[str, torch.Tensor]) -> Note | None:
    """None when the replay gives the run's output and grads; else the note why not."""
    if first.call is not None and first.call.gradient_given:
        return None
    inputs = {
        n: v.detach().clone().requires_grad_(v.is_floating_point() or v.is_complex())
        for n, v in points.items()
    }
    try:
        out = replay.unsummed(inputs)
        target = out.sum() if replay.summed else out
        used = [v for v in inputs.values() if v.requires_grad]
        grads = (
            torch.autograd.grad(target, used, allow_unused=True)
            if target.requires_grad
            else (None,) * len(used)
        )
    except Exception as e:
        return note("rec.failed", error=fmt.error_line(e))
    expected = target_of(first).detach()
    if out.shape != expected.shape or not torch.allclose(
        out.detach(), expected, rtol=1e-4, atol=1e-6, equal_nan=True
    ):
        return note("rec.mismatch", out=first.output_name)
    for (name, _), g in zip(((n, v) for n, v in inputs.items() if v.requires_grad), grads, strict=True):
        want = first.grads.get(name)
        have = torch.zeros_like(points[name]) if g is None else g.detach()
        want = torch.zeros_like(points[name]) if want is None else want.detach()
        if have.shape != want.shape or not torch.allclose(
            have, want.to(have.dtype), rtol=1e-4, atol=1e-6, equal_nan=True
        ):
            return note("rec.grads_differ", out=first.output_name)
    return None


def _calculus(
    replay: Any, first: Any, points: dict[str, torch.Tensor], opts: Any, notes: list[Note], whole: Any = None
) -> dict[str, Any]:
    """--order, --hessian, --jacobian (of *whole*, Y itself, when the cell reduced it), --check, --symbolic."""
    from ..capture.spec import GradError
    from ..messages import t
    from . import calculus

    found: dict[str, Any] = {}
    matrices = []
    out = label_of(first, replay)
    if any(v.is_complex() for v in points.values()) and (
        opts.order > 1 or opts.hessian or opts.jacobian or opts.symbolic
    ):
        notes.append(note("calc.complex"))
        opts = opts.replace(order=1, hessian=False, jacobian=False, symbolic=False)
    try:
        if opts.order > 1:
            found["orders"], stopped = calculus.higher_orders(replay, points, opts.order)
            for name, (why, k) in stopped.items():  # (an elementwise function's orders need no note)
                key = f"calc.order_{why}" + ("_stop" if why == "mixed" and opts.order > 2 else "")
                notes.append(note(key, x=name, out=out, k=k, limit=calculus.DIAGONAL_PASSES))
        if opts.hessian:
            names = list(points)
            matrix = calculus.Matrix(
                "hessian", t("calc.hessian_title", out=out), calculus.hessian(replay, points), names, names
            )
            matrices.append(matrix)
        if opts.jacobian:
            of_whole = whole if whole is not None and not isinstance(whole, str) else replay
            matrices.append(calculus.jacobian(of_whole, points, first.output_name))
            several = first.output.numel() > 1  # (one row: it is the grads themselves, nothing to say)
            if several and (getattr(first, "written", None) is None or first.summed):  # (a mean's grads
                out = first.output_name  # are not the column sums)
                d = fmt.d_of(False, out, *points)
                pairs = ", ".join(f"{d}{out}[i]/{d}{name}[j]" for name in points)
                notes.append(note("calc.jacobian_note", out=out, pairs=pairs))
    except (GradError, RuntimeError) as e:
        notes.append(note("calc.cannot", error=str(e).split("\n")[0]))
    found["matrices"] = tuple(matrices)
    if opts.check:
        found.update(_check(replay, first, points, notes))
    if opts.symbolic:
        from .symbolic import symbolic

        lines, more = symbolic(replay, points, first.grads, out, found.get("orders"))
        found["symbolic"] = tuple(lines)
        if any(n.id == "check.kink" for n in notes):  # (the kink is said once: --check's note)
            more = [
                note("sym.mismatch_heaviside", **n.fields) if n.id == "sym.mismatch_kink" else n for n in more
            ]
        notes.extend(more)
    return found


def _check(
    replay: Any, first: Any, points: dict, notes: list[Note], autograd: dict | None = None
) -> dict[str, Any]:
    from . import calculus

    if target_of(first).is_complex():
        notes.append(note("err.complex", out=first.output_name))
        return {}
    out = label_of(first, replay)
    try:
        rows, more, step = calculus.check(replay, points, out, autograd)
    except Exception as e:
        notes.append(note("check.cannot", error=fmt.error_line(e, 200)))
        return {}
    notes.extend(more)
    if autograd is None and any(not row.ok for row in rows) and _cut(replay):  # (the cell's own grads
        # checked: a custom Function's forward runs without grad, and its backward() is what differs)
        notes.append(note("check.cut", out=first.output_name))
    return {"checks": tuple(rows), "check_step": step}


def target_of(first: Any) -> torch.Tensor:
    """What was differentiated: the output, or what the cell reduced it to (``Y.sum()``)."""
    return first.target if getattr(first, "target", None) is not None else first.output


def label_of(first: Any, replay: Any) -> str:
    """Its name as the report writes it: ``y``, ``sum(Y)`` (summed here), ``Y.mean()`` (by the cell)."""
    if getattr(first, "written", None):
        return first.written
    return f"sum({first.output_name})" if replay.summed else first.output_name


def _cut(replay: Any) -> bool:
    """Whether the recorded computation passes through .detach()/.data or torch.no_grad():
    autograd treats that part as a constant, finite differences do not."""
    ops = [replay.record.ops[i] for i in replay.ops]
    return any(op.name in ("detach", "detach_", ".data") or not op.grad_enabled for op in ops)


def _curves(replay: Any, first: Any, window: tuple[float, float] | None, notes: list[Note]) -> Curves:
    """f and f' along each input, from the record (*replay*; None: nothing is evaluated), for a
    figure of scalar inputs (a 1-D input's figure shows the run's own numbers: nothing to evaluate).
    Its notes will follow the *notes* found so far."""
    if replay is None or not _point_figure(first):
        return Curves(window, None, len(notes))
    return Curves(window, tuple(_sweep(replay, first, name, window) for name in first.leaves), len(notes))


def _point_figure(first: Any) -> bool:
    """Whether the figure is f and f' around the point: every input a real scalar, the output real
    (render/plot.py draws the others from the run's own numbers, or not at all)."""
    leaves = list(first.leaves.values())
    return all(v.dim() == 0 for v in leaves) and not any(v.is_complex() for v in [*leaves, first.output])


def plot_grid(point: float, window: tuple[float, float] | None) -> torch.Tensor:
    """--plot's grid for an input at *point*: the window, or the point ± max(1, |point|)."""
    low, high = window or (point - max(1.0, abs(point)), point + max(1.0, abs(point)))
    return torch.linspace(low, high, GRID_POINTS, dtype=torch.float64)


def _sweep(replay: Any, first: Any, name: str, window: tuple[float, float] | None) -> Sweep:
    """f and df/d(*name*) on *name*'s grid; the error instead when the record cannot be evaluated
    there (the figure's note says so)."""
    point = first.values[name]
    grid = plot_grid(point.detach().double().item(), window)
    fixed = {n: v for n, v in first.values.items() if n != name}

    def function(v: torch.Tensor) -> torch.Tensor:
        return replay({**fixed, name: v})

    try:
        ys, slopes = _along(function, grid.to(point.dtype).to(point.device))
    except Exception as e:  # the cell cannot run on a batch of points
        return Sweep(name, grid, error=e.with_traceback(None))
    return Sweep(name, grid, ys, slopes)


def _along(function: Any, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """*function* and its derivative at each of *values*, batched (point by point where an
    operation has no batching rule), on the CPU."""
    try:
        slopes, ys = torch.func.vmap(torch.func.grad_and_value(function), randomness="same")(values)
    except Exception:  # no batching rule somewhere: one point at a time
        pairs = [_grad_and_value(function, v) for v in values]
        slopes, ys = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    return ys.detach().cpu(), slopes.detach().cpu()


def _grad_and_value(function: Any, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = value.detach().clone().requires_grad_(True)
    out = function(leaf)
    (g,) = torch.autograd.grad(out, leaf, allow_unused=True)
    return (torch.zeros_like(leaf) if g is None else g.detach()), out.detach()
