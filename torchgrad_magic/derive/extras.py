"""The optional parts (``--order``, ``--hessian``, ``--jacobian``, ``--check``,
``--symbolic``, ``--plot``), all evaluated on the computation recorded during the
one run of the cell (:mod:`.record`), never by running the cell again.

Before any of them is shown, the replay is compared with what autograd computed
in the run (the output's value and every grad): if they differ, the record could
not follow the cell, and a note says so instead of showing a wrong number. The
global random generator and grad mode are put back afterwards.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ..capture.spec import GradError
from ..messages import Note, note


@dataclass(frozen=True)
class Extras:
    orders: dict[str, list[torch.Tensor | None]] = field(default_factory=dict)
    matrices: tuple[Any, ...] = ()
    checks: tuple[Any, ...] = ()
    check_step: float = 0.0
    symbolic: tuple[Any, ...] = ()
    figure: Any = None
    curves: tuple[Any, ...] = ()
    explorer: Any = None  # explore.Explorer (--explore)
    notes: tuple[Note, ...] = ()


def extras(first: Any, recorder: Any, observer: Any, opts: Any, window: Any, ns: dict[str, Any]) -> Extras:
    if recorder is None:
        return Extras()
    if first.output is None or not first.leaves or not opts.needs_replay:
        recorder.finish()
        return Extras()
    from ..capture.record import replay_for

    if getattr(first, "withheld", False):  # its grads run the user's own backward code
        recorder.finish()
        return Extras(notes=(note("extras.withheld"),))

    if getattr(first, "others", ()):  # y1 + y2: the extras evaluate one output
        recorder.finish()
        return Extras(notes=(note("extras.several", label=first.differentiated or first.output_name),))
    notes: list[Note] = []
    if first.call is not None and first.call.gradient_given:
        notes.append(note("extras.weighted", out=first.output_name, label=first.differentiated or "v"))
    summed = target_of(first).numel() != 1
    ref = first.call.record_ref if first.call is not None else recorder.ref(target_of(first))
    # --jacobian of Y itself when the cell reduced it (Y.sum().backward()): the matrix is Y's
    written = getattr(first, "written", None)  # (--explore of a vector input moves along Y itself too)
    whole_ref = recorder.ref(first.output) if written and (opts.jacobian or opts.explore) else None
    named = _named_refs(recorder, first, ns) if opts.explore else {}  # --explore's table
    record = recorder.finish()
    replay = replay_for(record, ref, first.leaves, summed)
    whole = replay_for(record, whole_ref, first.leaves, True) if whole_ref is not None else None
    if record.escapes:
        notes.append(
            note(
                "rec.escapes",
                calls=", ".join(
                    f".{n}()" if not n.startswith("__") else n for n in dict.fromkeys(record.escapes)
                ),
            )
        )
    if isinstance(replay, str):
        notes.append(note(replay, out=first.output_name))
        replay = None
    points = {name: first.values[name] for name in first.leaves}
    # heavy libraries are imported before the warning filters are saved: their own module-level
    # filters (sympy adds one) must stay, as after a plain import
    if opts.symbolic:
        try:
            from . import symbolic  # noqa: F401
        except ImportError:  # sympy is the [symbolic] extra: the rest of the report still comes
            notes.append(note("sym.missing"))
            opts = opts.replace(symbolic=False)
    if opts.plot or opts.explore:  # (--explore: the picture of its point)
        import matplotlib.figure  # noqa: F401
    found: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]), torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            found = _extras(replay, record, first, points, opts, window, notes, whole, named)
        except GradError as e:  # a flag only the run could check (--explore z=… without --wrt)
            notes.append(note("extras.refused", error=str(e)))
        except Exception as e:  # an extra that cannot work here is a note, never a lost report
            notes.append(note("rec.failed", error=f"{type(e).__name__}: {e}".split("\n")[0][:160]))
    return Extras(notes=tuple(notes), **found)


def _extras(
    replay: Any,
    record: Any,
    first: Any,
    points: dict,
    opts: Any,
    window: Any,
    notes: list[Note],
    whole: Any = None,
    named: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Verify the replay, then the extras that were asked for."""
    found: dict[str, Any] = {}
    if replay is not None:
        problem = _verify(replay, first, points)
        if problem is not None and problem.id == "rec.grads_differ" and opts.check:
            # the values agree but autograd's grads do not: exactly what --check is for
            found = _check(replay, first, points, notes, autograd=first.grads)
            rows = found.get("checks", ())
            if rows and all(row.ok for row in rows):  # the cell's grads are right: the record is what differs
                problem = note("rec.grads_agree", out=problem.fields["out"])
            notes.append(problem)
            replay = None
        elif problem is not None:
            notes.append(problem)
            replay = None
    if replay is not None:
        found = _calculus(replay, first, points, opts, notes, whole)
    if opts.plot:
        found.update(_plot(replay, first, window, opts, notes, escaped=bool(record.escapes)))
    if opts.explore:
        found["explorer"] = _explore(
            replay, record, first, opts, notes, whole, found.get("figure"), named or {}
        )
    return found


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


def _explore(
    replay: Any,
    record: Any,
    first: Any,
    opts: Any,
    notes: list[Note],
    whole: Any,
    figure: Any,
    named: dict[str, Any],
) -> Any:
    """--explore: the grid's values from the record (the table's rows too: *named*, the record's
    refs of the cell's named tensors), and a picture of the run's point (the --plot figure when
    there is one)."""
    import dataclasses

    from ..render import explore, plot

    explorer = explore.build(replay, whole, record, first, opts, notes, named)
    if explorer is None:
        return None
    if figure is None:
        window = explore.picture_window(explorer)
        figure = _plot(replay, first, window, opts.replace(save=None), notes, escaped=False)["figure"]
    return dataclasses.replace(explorer, png=plot.png(figure) if figure is not None else None)


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
        return note("rec.failed", error=f"{type(e).__name__}: {e}".split("\n")[0][:160])
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
            found["orders"] = calculus.higher_orders(replay, points, opts.order)
            if any(v.dim() for v in points.values()):
                notes.append(note("calc.order_vector"))
        if opts.hessian:
            names = list(points)
            matrix = calculus.Matrix(
                "hessian", t("calc.hessian_title", out=out), calculus.hessian(replay, points), names, names
            )
            matrices.append(matrix)
        if opts.jacobian:
            of_whole = whole if whole is not None and not isinstance(whole, str) else replay
            matrices.append(calculus.jacobian(of_whole, points, first.output_name))
            if (
                getattr(first, "written", None) is None or first.summed
            ):  # (a mean's grads are not the column sums)
                notes.append(note("calc.jacobian_note", out=first.output_name, inputs=", ".join(points)))
    except (GradError, RuntimeError) as e:
        notes.append(note("calc.cannot", error=str(e).split("\n")[0]))
    found["matrices"] = tuple(matrices)
    if opts.check:
        found.update(_check(replay, first, points, notes))
    if opts.symbolic:
        from .symbolic import symbolic

        lines, more = symbolic(replay, points, first.grads, out, found.get("orders"))
        found["symbolic"] = tuple(lines)
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
        notes.append(note("check.cannot", error=f"{type(e).__name__}: {e}"[:200]))
        return {}
    notes.extend(more)
    if any(not row.ok for row in rows) and _cut(replay):
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


def _plot(
    replay: Any, first: Any, window: Any, opts: Any, notes: list[Note], escaped: bool
) -> dict[str, Any]:
    from ..render import plot

    evaluate = None
    if replay is not None and not escaped:

        def evaluate(name: str, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            point = first.values[name]
            values = grid.to(point.dtype).to(point.device)
            fixed = {n: v for n, v in first.values.items() if n != name}

            def function(v: torch.Tensor) -> torch.Tensor:
                return replay({**fixed, name: v})

            try:
                slopes, ys = torch.func.vmap(torch.func.grad_and_value(function), randomness="same")(values)
            except Exception:  # no batching rule somewhere: one point at a time
                pairs = [_grad_and_value(function, v) for v in values]
                slopes, ys = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
            return ys.detach().cpu(), slopes.detach().cpu()

    elif escaped:
        notes.append(note("rec.branches"))  # values left the computation: only the tangent is honest
    figure, curves, more = plot.make_figure(first, evaluate, window, opts.lang)
    notes.extend(more)
    if figure is not None and opts.save is not None:
        notes.append(plot.save(figure, opts.save))
    return {"figure": figure, "curves": tuple(curves)}


def _grad_and_value(function: Any, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = value.detach().clone().requires_grad_(True)
    out = function(leaf)
    (g,) = torch.autograd.grad(out, leaf, allow_unused=True)
    return (torch.zeros_like(leaf) if g is None else g.detach()), out.detach()
