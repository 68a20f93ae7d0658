"""The extras' figures, drawn from what :mod:`..derive.extras` evaluated: ``--plot``'s f and f'
(:mod:`.plot`) and ``--explore``'s explorer with its picture of the run's point (:mod:`.explore`).

The engine calls :func:`draw` once, after the extras. The notes a figure adds are put where the
extras found them (a figure's notes follow the ones found before it was evaluated), and a figure
that cannot be drawn is a note, never a lost report.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch

from .. import format as fmt
from ..derive.extras import Curves, Extras, Sweep
from ..messages import Note, note


def draw(more: Extras, first: Any, opts: Any) -> Extras:
    """*more* with its figures: ``figure`` and ``curves`` from ``plot``, ``explorer`` from ``grid``
    (its PNG: the --plot figure, else the picture of ``picture``); *first*: the first derivatives
    the figures show; *opts*: their language (``lang``) and where --plot's figure is saved (``save``)."""
    if more.plot is None and more.grid is None:
        return more
    # matplotlib is imported before the warning filters are saved: its own module-level filters stay
    import matplotlib.figure  # noqa: F401

    found: dict[str, Any] = {}
    placed: list[tuple[int, list[Note]]] = []  # (where among more.notes, the notes a figure added)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _draw(more, first, opts, found, placed)
        except Exception as e:  # a figure that cannot be drawn is a note, never a lost report
            error = fmt.error_line(e)
            placed.append((len(more.notes), [note("rec.failed", error=error)]))
    return dataclasses.replace(more, notes=_spliced(more.notes, placed), **found)


def _draw(
    more: Extras, first: Any, opts: Any, found: dict[str, Any], placed: list[tuple[int, list[Note]]]
) -> None:
    """The figures into *found* (Extras' fields), their notes into *placed*."""
    from . import explore, plot

    figure = None
    if more.plot is not None:
        figure, curves, notes = _figure(more.plot, first, opts.lang, opts.save)
        found.update(figure=figure, curves=tuple(curves))
        placed.append((more.plot.at, notes))
    if more.grid is None:
        return
    if figure is None and more.picture is not None:
        figure, _, notes = _figure(more.picture, first, opts.lang, None)
        placed.append((more.picture.at, notes))
    found["explorer"] = explore.Explorer.of(more.grid, plot.png(figure) if figure is not None else None)


def _figure(
    curves: Curves, first: Any, language: str | None, save: str | None
) -> tuple[Any, list, list[Note]]:
    """The figure of *curves* (None when there is none), its lines as data and its notes (the last:
    where it was saved, with *save*)."""
    from . import plot

    figure, lines, notes = plot.make_figure(first, _evaluated(curves.sweeps), curves.window, language)
    if figure is not None and save is not None:
        notes.append(plot.save(figure, save))
    return figure, lines, notes


def _evaluated(sweeps: tuple[Sweep, ...] | None) -> Any:
    """render/plot.py's ``evaluate(name, grid)``, answered from *sweeps* (None: nothing evaluated)."""
    if sweeps is None:
        return None
    by_name = {sweep.name: sweep for sweep in sweeps}

    def evaluate(name: str, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sweep = by_name[name]
        if sweep.error is not None:  # the figure's note says why
            raise sweep.error
        if not torch.equal(grid, sweep.x):
            raise ValueError("the figure's grid is not the one derive/extras.py evaluated (GRID_POINTS)")
        assert sweep.y is not None and sweep.slope is not None
        return sweep.y, sweep.slope

    return evaluate


def _spliced(notes: tuple[Note, ...], placed: list[tuple[int, list[Note]]]) -> tuple[Note, ...]:
    """*notes* with each of *placed*'s lists put at its index (lists at the same index keep their order)."""
    found: list[Note] = []
    start = 0
    for at, more in sorted(placed, key=lambda pair: pair[0]):
        found += [*notes[start:at], *more]
        start = at
    return (*found, *notes[start:])
