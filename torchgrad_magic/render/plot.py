"""``--plot``: the function and its derivative, drawn without pyplot.

Imported only when a plot is asked for; builds a ``matplotlib.figure.Figure``
(no pyplot, no global figure list, rcParams untouched), so nothing is left open
and the inline backend never shows it a second time. Every text carries its own
font (a CJK one for Chinese labels), so the figure draws the same whenever and
wherever it is drawn. The derivative gets its own y-axis when it would look flat
on the function's; the slope label and the legend go where no line crosses them.

* one 1-D input: the output (before summing) and the grad against the input;
* scalar inputs: f and f' over a window around the point (evaluated with
  ``torch.func.vmap``), the point marked and its tangent drawn, one panel per
  input with the others held at their values.

Long curves are reduced to the figure's pixel columns keeping, per column, the
first, lowest, highest and last point (M4), so the picture is the same as
plotting every point, spikes included.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .. import format as fmt
from ..capture.spec import GradError, interval
from ..derive.model import LayerFlow  # noqa: F401  (the picture's rows: made by derive)
from ..messages import MESSAGES, Note, note, t

WIDTH_IN, HEIGHT_IN, DPI = 6.4, 4.0, 100
GRID_POINTS = 201
# pixel columns to keep: the figure's width in pixels (any axes in it is narrower)
COLUMNS = int(WIDTH_IN * DPI)
FUNCTION_COLOR, DERIVATIVE_COLOR, TANGENT_COLOR = "tab:red", "tab:green", "0.35"
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "STHeiti",
    "AR PL UMing CN",
    "AR PL UKai CN",
)
_warned_no_cjk = False


@dataclass
class Curve:
    """A plotted line as plain data (what tests and scripts read back)."""

    label: str
    x: torch.Tensor
    y: torch.Tensor


def parse_range(text: str | None) -> tuple[float, float] | None:
    """``"-2:5"`` -> ``(-2.0, 5.0)``."""
    if text is None:
        return None
    return interval(text, "plot.bad_range")


def check_save_path(path: str | None) -> None:
    """GradError unless *path* can be written: a ``.png``/``.svg`` name in a folder that exists
    and may be written to (checked before the cell runs, so a typo costs no run)."""
    if path is None:
        return
    if os.path.splitext(path)[1].lower() not in (".png", ".svg"):
        raise GradError(t("plot.bad_save", path=path))
    full = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(full)
    if os.path.isdir(full):
        raise GradError(t("plot.save_is_folder", path=path))
    if not os.path.isdir(folder):
        raise GradError(t("plot.save_no_folder", path=path, folder=folder))
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(full) and not os.access(full, os.W_OK)):
        raise GradError(t("plot.save_not_writable", path=path, folder=folder))


# ---------------------------------------------------------------------------
# fonts
# ---------------------------------------------------------------------------
# font files with Chinese glyphs, best first (matched against the file's name, lower case): looked
# for on disk when matplotlib's font cache (built before the font was installed) knows none of them
CJK_FILES = (
    "notosanscjk-regular",
    "notosanscjksc-regular",
    "notosanssc-regular",
    "sourcehansans-regular",
    "sourcehanssanssc-regular",
    "wqy-microhei",
    "wqy-zenhei",
    "notosanscjk",
    "sourcehansans",
    "notoserifcjk",
    "droidsansfallback",
    "uming",
    "ukai",
)
# always there (it ships with matplotlib): the Latin text and any glyph the CJK font lacks
BASE_FONT = "DejaVu Sans"
LABEL_SIZE, TEXT_SIZE, TITLE_SIZE = 11, 10, 11  # points: readable on a projector


def _cjk_installed() -> str | None:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in installed:
            return name
    for name in sorted(installed):
        if "CJK" in name or "Han Sans" in name or "WenQuanYi" in name:
            return name
    return None


def cjk_font() -> str | None:
    """The name of an installed font with Chinese glyphs, or None.

    matplotlib lists the fonts it found when it built its cache; a font installed since (e.g.
    ``apt-get install fonts-noto-cjk``) is found on disk here and added for this process."""
    from matplotlib import font_manager

    name = _cjk_installed()
    if name is not None:
        return name
    try:
        paths = font_manager.findSystemFonts()
    except Exception:  # an unreadable font folder: no CJK font
        return None
    for pattern in CJK_FILES:
        for path in sorted(paths):
            if pattern in os.path.basename(path).lower().replace(" ", ""):
                try:
                    font_manager.fontManager.addfont(path)
                except Exception:  # a broken file: try the next one
                    continue
                name = _cjk_installed()
                if name is not None:
                    return name
    return None


def _fonts(language: str, notes: list[Note]) -> tuple[str, list[str]]:
    """The label language and the font families every text of the figure is given (so that the
    figure draws the same whenever it is drawn, whatever rcParams are then)."""
    global _warned_no_cjk
    if language != "zh":
        return language, [BASE_FONT]
    font = cjk_font()
    if font is None:
        if not _warned_no_cjk:
            _warned_no_cjk = True
            notes.append(note("plot.no_cjk_font"))
        return "en", [BASE_FONT]
    return language, [font, BASE_FONT]


# ---------------------------------------------------------------------------
# reducing long curves
# ---------------------------------------------------------------------------
def reduce_points(
    x: torch.Tensor, y: torch.Tensor, columns: int = COLUMNS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep, for each of *columns* runs of consecutive points, the first, the
    lowest, the highest and the last (in their order): a line through them
    covers exactly the pixels the full line covers."""
    n = x.numel()
    if n <= 4 * columns:
        return x, y
    size = math.ceil(n / columns)
    count = n // size
    body = count * size
    xs, ys = x[:body].reshape(count, size), y[:body].reshape(count, size)
    low, high = ys.argmin(dim=1), ys.argmax(dim=1)
    first = torch.zeros_like(low)
    last = torch.full_like(low, size - 1)
    picks = torch.stack([first, torch.minimum(low, high), torch.maximum(low, high), last], dim=1)
    px, py = xs.gather(1, picks).reshape(-1), ys.gather(1, picks).reshape(-1)
    if body < n:
        tx, ty = reduce_points(x[body:], y[body:], 1) if n - body > 4 else (x[body:], y[body:])
        px, py = torch.cat([px, tx]), torch.cat([py, ty])
    return px, py


# ---------------------------------------------------------------------------
# the figures
# ---------------------------------------------------------------------------
def make_figure(
    result: Any, evaluate: Callable | None, window: tuple[float, float] | None, language: str | None
):
    """The figure for *result* (the first derivatives: ``leaves``, ``values``, ``grads``,
    ``output``), or None; returns ``(figure, curves, notes)``."""
    from ..messages import resolve

    language = resolve(language)
    notes: list[Note] = []
    leaves = result.leaves
    problem = _unplottable(result)
    if problem is not None:
        return None, [], [problem]
    label_language, family = _fonts(language, notes)

    def label(message_id: str, **fields: object) -> str:
        return _say(label_language, message_id, **fields)

    style = _Style(family)
    if len(leaves) == 1 and next(iter(leaves.values())).dim() == 1:
        figure, curves = _vector_figure(result, notes, style)
    else:
        figure, curves = _point_figure(result, evaluate, window, notes, label, style)
    return figure, curves, notes


def _say(language: str, message_id: str, **fields: object) -> str:
    """A figure's words in *language*, as given: never the language in use when it is drawn."""
    return MESSAGES[message_id][language].format(**fields)


@dataclass
class _Style:
    """The fonts given to each text artist (nothing is read from rcParams when it is drawn)."""

    family: list[str]

    def font(self, size: float):
        from matplotlib.font_manager import FontProperties

        return FontProperties(family=self.family, size=size)

    def axes(self, ax, xlabel: str, ylabel: str, color: str | None = None, right: bool = False) -> None:
        if not right:
            ax.set_xlabel(xlabel, fontproperties=self.font(LABEL_SIZE))
        ax.set_ylabel(ylabel, fontproperties=self.font(LABEL_SIZE), color=color or "black")
        ax.set_facecolor("white")
        try:  # matplotlib >= 3.8: the tick labels made when drawing get the family too
            ax.tick_params(labelsize=TEXT_SIZE, labelfontfamily=self.family)
        except (TypeError, ValueError, AttributeError):  # older: digits draw in any font
            ax.tick_params(labelsize=TEXT_SIZE)
        if color is not None:
            ax.tick_params(axis="y", labelcolor=color)
        for axis in (ax.xaxis, ax.yaxis):
            axis.get_offset_text().set_fontproperties(self.font(TEXT_SIZE))


def _unplottable(result: Any) -> Any:
    leaves = result.leaves
    dims = {leaf.dim() for leaf in leaves.values()}
    names = ", ".join(f"{n} {fmt.shape(v)}" for n, v in leaves.items())
    if any(v.is_complex() for v in [*leaves.values(), result.output]):
        return note("plot.complex")
    if dims == {0} or (len(leaves) == 1 and dims == {1}):
        if dims == {1} and not leaves[next(iter(leaves))].numel():
            return note("plot.empty")
        return None
    return note("plot.shape", shapes=names)


def _new_figure(panels: int):
    from matplotlib.figure import Figure

    figure = Figure(
        figsize=(WIDTH_IN if panels == 1 else 4.6 * panels, HEIGHT_IN),
        dpi=DPI,
        layout="constrained",
        facecolor="white",
        edgecolor="white",
    )
    return figure, [figure.add_subplot(1, panels, i + 1) for i in range(panels)]


def _finite(x: torch.Tensor, *ys: torch.Tensor) -> tuple[torch.Tensor, ...]:
    keep = torch.isfinite(x)
    for y in ys:
        keep &= torch.isfinite(y)
    if bool(keep.all()):  # the usual case: no copies
        return (x, *ys)
    return tuple(v[keep] for v in (x, *ys))


def _needs_twin(function: torch.Tensor | None, derivative: torch.Tensor | None) -> bool:
    """Whether the derivative gets its own y-axis: on a shared one, one of the curves would
    span less than a fifth of the axis (it would look flat). A constant curve is flat anyway."""
    if function is None or derivative is None or not function.numel() or not derivative.numel():
        return False
    spans = []
    for y in (function, derivative):
        spans.append((y.min().item(), y.max().item()))
    union = max(s[1] for s in spans) - min(s[0] for s in spans)
    return any(0 < high - low < union / 5 for low, high in spans)


def _twin(ax):
    """A second y-axis on the right for the derivative (drawn over *ax*; the legend goes on it)."""
    twin = ax.twinx()
    twin.patch.set_visible(False)
    return twin


def _reduced_from(result: Any, shape: torch.Size) -> tuple[str, torch.Tensor] | None:
    """The named tensor a scalar output is the sum or the mean of (``y = torch.sum(Y)``), where it
    has the input's shape: (its name, its values) to draw as the function, as the seed's own plot
    draws ``Y`` beside ``x.grad``; None where there is no such tensor."""
    node = result.output.grad_fn
    kind = type(node).__name__ if node is not None else ""
    if result.output.numel() != 1 or kind not in ("SumBackward0", "MeanBackward0"):
        return None
    total = float(result.output.detach())
    for row in result.rows:
        if row.role != "intermediate" or row.data.shape != shape or not row.data.is_floating_point():
            continue
        values = row.data.detach().double()
        reduced = float(values.sum() if kind == "SumBackward0" else values.mean())
        if math.isclose(reduced, total, rel_tol=1e-5, abs_tol=1e-6):
            return row.name, row.data.detach().float().cpu()
    return None


def _vector_figure(result: Any, notes: list[Note], style: _Style):
    name, out_name = next(iter(result.leaves)), result.output_name
    x = result.values[name].detach().float().cpu()
    grad = result.grads[name]
    output = result.output.detach().float().cpu()
    written = getattr(result, "written", None)  # Y.mean(): its grads are not dY/dx
    top = fmt.operand(written if written and not result.summed else out_name)
    d = fmt.d_of(False, top, name)
    d_name = f"{d}{top}/{d}{name}"
    with_function = output.shape == x.shape
    drawn = out_name
    if not with_function:  # y = torch.sum(Y): the seed draws Y, the function, beside x.grad
        reduced = _reduced_from(result, x.shape)
        if reduced is not None:
            (drawn, output), with_function = reduced, True
    series = []
    if with_function:
        series.append((drawn, output, FUNCTION_COLOR))
    if grad is not None:
        series.append((d_name, grad.detach().float().cpu(), DERIVATIVE_COLOR))
    else:
        notes.append(note("plot.no_grad", out=out_name, name=name))
    if not with_function:
        notes.append(note("plot.not_elementwise", out=out_name, shape=fmt.shape(result.output), name=name))
    if not series:
        return None, []
    order = None if x.numel() < 2 or bool((x[1:] >= x[:-1]).all()) else torch.argsort(x)
    figure, (ax,) = _new_figure(1)
    curves = []
    skipped = 0
    for label, y, _ in series:
        xs, ys = (x, y) if order is None else (x[order], y[order])
        fx, fy = _finite(xs, ys)
        skipped = max(skipped, xs.numel() - fx.numel())
        curves.append(Curve(label, *reduce_points(fx, fy)))
    if skipped:
        notes.append(note("plot.non_finite", count=skipped))
    twin = None
    if len(curves) == 2 and _needs_twin(curves[0].y, curves[1].y):
        twin = _twin(ax)
    for curve, (_, _, color) in zip(curves, series, strict=True):
        target = twin if twin is not None and curve.label == d_name else ax
        target.plot(curve.x.numpy(), curve.y.numpy(), color=color, label=curve.label, linewidth=1.8)
    if twin is not None:
        style.axes(ax, name, drawn, FUNCTION_COLOR)
        style.axes(twin, name, d_name, DERIVATIVE_COLOR, right=True)
    else:
        style.axes(ax, name, ", ".join(c.label for c in curves))
    ax.grid(True, color="0.9")  # (a grid, not extra lines: ax.lines holds only the curves)
    _place(figure, [(ax, twin, None)], style)
    return figure, curves


def _point_figure(
    result: Any, evaluate: Callable | None, window, notes: list[Note], label: Callable, style: _Style
):
    names = list(result.leaves)
    reduced = getattr(result, "target", None)  # what the cell reduced the output to, as it wrote it
    out = getattr(result, "written", None) or (
        f"sum({result.output_name})" if result.summed else result.output_name
    )
    d = fmt.d_of(len(names) != 1, out, *names)
    figure, axes = _new_figure(len(names))
    curves: list[Curve] = []
    panels = []
    for ax, name in zip(axes, names, strict=True):
        point = result.values[name].detach().double().item()
        slope_t = result.grads[name]
        value = (
            (reduced if reduced is not None else result.output.sum() if result.summed else result.output)
            .detach()
            .double()
            .item()
        )
        low, high = window or (point - max(1.0, abs(point)), point + max(1.0, abs(point)))
        grid = torch.linspace(low, high, GRID_POINTS, dtype=torch.float64)
        label_d = f"{d}{fmt.operand(out)}/{d}{name}"
        evaluated = _evaluate(evaluate, name, grid, notes)
        twin = None
        if evaluated is not None:
            values, slopes = evaluated
            fx, fy = _finite(grid, values.double())
            dx, dy = _finite(grid, slopes.double())
            if _needs_twin(fy, dy):
                twin = _twin(ax)
            for legend, x, y, color, target in (
                (out, fx, fy, FUNCTION_COLOR, ax),
                (label_d, dx, dy, DERIVATIVE_COLOR, twin or ax),
            ):
                target.plot(x.numpy(), y.numpy(), color=color, label=legend, linewidth=1.8)
                curves.append(Curve(f"{legend}|{name}" if len(names) > 1 else legend, x, y))
        annotation = None
        if slope_t is not None:
            slope = slope_t.detach().double().item()
            tx, ty = _tangent(ax, name, (point, value), slope, (high - low) / 4, label)
            curves.append(Curve(f"tangent|{name}" if len(names) > 1 else "tangent", tx, ty))
            annotation = (label("plot.slope", slope=fmt.number(slope)), (point, value))
        ax.scatter([point], [value], color="black", zorder=3)
        if twin is not None:
            style.axes(ax, name, out, FUNCTION_COLOR)
            style.axes(twin, name, label_d, DERIVATIVE_COLOR, right=True)
        else:
            style.axes(ax, name, out if evaluated is None else f"{out}, {label_d}")
        ax.grid(True, color="0.9")
        others = [
            label("plot.held", name=o, value=fmt.number(result.values[o].item())) for o in names if o != name
        ]
        if others:
            ax.set_title(label("headline.sep").join(others), fontproperties=style.font(TITLE_SIZE))
        panels.append((ax, twin, annotation))
    _place(figure, panels, style)
    return figure, curves


def _evaluate(evaluate: Callable | None, name: str, grid: torch.Tensor, notes: list[Note]) -> Any:
    """The function's values and slopes on *grid* along input *name*; None without an evaluator,
    or (with a note) where the cell cannot run on a batch of points."""
    if evaluate is None:
        return None
    try:
        return evaluate(name, grid)
    except Exception as e:  # the cell cannot run on a batch of points
        notes.append(note("plot.no_vmap", name=name, error=fmt.error_line(e, 200)))
        return None


def _tangent(
    ax, name: str, at: tuple[float, float], slope: float, half: float, label: Callable
) -> tuple[torch.Tensor, torch.Tensor]:
    """The dashed tangent through *at* (the run's point and value) with *slope*, *half* wide on
    each side, drawn on *ax* under its legend line; its two points."""
    point, value = at
    tx = torch.tensor([point - half, point + half], dtype=torch.float64)
    ty = value + slope * (tx - point)
    tangent = label("plot.tangent", name=name, point=fmt.number(point))  # (its slope: the label at the point)
    ax.plot(tx.numpy(), ty.numpy(), linestyle="--", color=TANGENT_COLOR, label=tangent, linewidth=1.5)
    return tx, ty


# ---------------------------------------------------------------------------
# placing the legend and the slope where no line crosses them
# ---------------------------------------------------------------------------
def _line_points(axes: list) -> Any:
    """The display coordinates of every line of *axes*, a point every 2 pixels along them."""
    import numpy as np

    chunks = []
    for ax in axes:
        for line in ax.get_lines():
            xy = np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float)
            xy = line.get_transform().transform(xy)
            xy = xy[np.isfinite(xy).all(axis=1)]
            if len(xy) < 2:
                chunks.append(xy)
                continue
            start, step = xy[:-1], np.diff(xy, axis=0)
            count = np.minimum(np.ceil(np.hypot(step[:, 0], step[:, 1]) / 2).astype(int), 10_000) + 1
            which = np.repeat(np.arange(len(step)), count)
            offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
            chunks.append(start[which] + step[which] * (offset / np.repeat(count, count))[:, None])
            chunks.append(xy[-1:])
        for collection in ax.collections:  # the marked point: as heavy as a short stretch of line
            marks = collection.get_offset_transform().transform(collection.get_offsets())
            chunks.append(np.repeat(marks, 20, axis=0))
    return np.concatenate(chunks) if chunks else np.zeros((0, 2))


def _hits(points: Any, box: tuple[float, float, float, float]) -> int:
    x0, y0, x1, y1 = box
    inside = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
    return int(inside.sum())


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


LEGEND_SPOTS = ("upper left", "upper right", "lower right", "lower left", "upper center", "lower center",
                "center left", "center right")  # fmt: skip
SLOPE_PAD = 0.3  # the slope label's box: padding around the text, in font sizes
SLOPE_DIRECTIONS = ((1, -1), (1, 1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))


def _place(figure, panels: list, style: _Style) -> None:
    """Move each panel's slope label, then its legend, to where the fewest line pixels cross them.

    The layout is computed once here (the labels and legends take no part in it), so the spots
    found are the spots drawn."""
    figure.draw_without_rendering()
    pixels = figure.dpi / 72
    for ax, twin, annotation in panels:
        points = _line_points([ax] + ([twin] if twin is not None else []))
        frame = ax.bbox.extents
        taken: list[tuple[float, ...]] = []
        if annotation is not None:
            taken.append(_place_slope(ax, annotation, points, frame, style))
        top = twin if twin is not None else ax
        handles = [*ax.get_lines()] + ([*twin.get_lines()] if twin is not None else [])
        order = [h for h in handles if h.get_linestyle() != "--"] + [
            h for h in handles if h.get_linestyle() == "--"
        ]
        legend = top.legend(
            order, [h.get_label() for h in order], prop=style.font(TEXT_SIZE), loc="upper left"
        )
        legend.set_in_layout(False)
        box = legend.get_window_extent()
        width, height = box.width, box.height
        pad = 0.5 * TEXT_SIZE * pixels  # borderaxespad
        best = None
        for rank, spot in enumerate(LEGEND_SPOTS):
            vertical, _, horizontal = spot.partition(" ")
            if spot.startswith("center"):
                vertical, horizontal = "center", spot.split(" ")[1]
            if horizontal == "left":
                x0 = frame[0] + pad
            elif horizontal == "right":
                x0 = frame[2] - pad - width
            else:
                x0 = (frame[0] + frame[2] - width) / 2
            if vertical == "upper":
                y0 = frame[3] - pad - height
            elif vertical == "lower":
                y0 = frame[1] + pad
            else:
                y0 = (frame[1] + frame[3] - height) / 2
            spot_box = (x0, y0, x0 + width, y0 + height)
            score = (_hits(points, spot_box) + sum(_overlap(spot_box, b) for b in taken), rank)
            if best is None or score < best[0]:
                best = (score, spot)
        if hasattr(legend, "set_loc"):  # matplotlib >= 3.8
            legend.set_loc(best[1])
        else:
            top.legend(order, [h.get_label() for h in order], prop=style.font(TEXT_SIZE), loc=best[1])


def _slope_label(
    ax, text: str, xy: tuple[float, float], style: _Style, offset=(10, -10), ha="left", va="top"
):
    """The "slope = 18" label: on a white box, with a thin line to the point when it is away from it."""
    far = math.hypot(*offset) > 24
    annotation = ax.annotate(
        text,
        xy,
        textcoords="offset points",
        xytext=offset,
        ha=ha,
        va=va,
        fontproperties=style.font(TEXT_SIZE),
        bbox={"boxstyle": f"round,pad={SLOPE_PAD}", "facecolor": "white", "edgecolor": "0.75", "alpha": 0.85},
        arrowprops={"arrowstyle": "-", "color": "0.45", "linewidth": 0.8, "shrinkA": 0, "shrinkB": 4}
        if far
        else None,
        zorder=4,
    )
    annotation.set_in_layout(False)
    return annotation


def _place_slope(ax, spec, points: Any, frame: tuple[float, ...], style: _Style) -> tuple[float, ...]:
    """Put the slope label next to the point, in the nearest spot no line crosses; returns its box."""
    text, xy = spec
    probe = _slope_label(ax, text, xy, style)
    inner = probe.get_window_extent()  # the text (its box is sized only when drawn)
    probe.remove()
    width, height = inner.width, inner.height
    pixels = ax.figure.dpi / 72
    px, py = ax.transData.transform(xy)
    margin = (SLOPE_PAD * TEXT_SIZE + 2) * pixels  # the box around the text, and a gap
    best = None
    for ring, distance in enumerate((8, 16, 30, 46, 66, 90, 120, 160)):
        for turn, (dx, dy) in enumerate(SLOPE_DIRECTIONS):
            ox, oy = dx * distance * pixels, dy * distance * pixels
            x0 = px + ox - (width if dx < 0 else width / 2 if dx == 0 else 0)
            y0 = py + oy - (height if dy < 0 else height / 2 if dy == 0 else 0)
            spot = (x0 - margin, y0 - margin, x0 + width + margin, y0 + height + margin)
            if spot[0] < frame[0] or spot[1] < frame[1] or spot[2] > frame[2] or spot[3] > frame[3]:
                continue
            score = (_hits(points, spot), ring, turn)
            if best is None or score < best[0]:
                best = (score, (dx, dy, distance), spot)
        if best is not None and best[0][0] == 0:
            break
    if best is None:  # no room inside the axes: the usual spot
        _slope_label(ax, text, xy, style)
        return tuple(inner.padded(margin).extents)
    _, (dx, dy, distance), spot = best
    _slope_label(
        ax,
        text,
        xy,
        style,
        offset=(dx * distance, dy * distance),
        ha="left" if dx > 0 else "right" if dx < 0 else "center",
        va="bottom" if dy > 0 else "top" if dy < 0 else "center",
    )
    return spot


# ---------------------------------------------------------------------------
# gradient flow of a model: mean and max |grad| per layer, in forward order
# ---------------------------------------------------------------------------
MEAN_COLOR, MAX_COLOR = "tab:blue", "tab:orange"
# how each kind of layer that log scale cannot show is drawn at the bottom: marker, color, band,
# and the words said of it (messages.MESSAGES, in the figure's language)
FLOW_MARKS = {
    "zero": ("X", "tab:red", "#fde4e1", "flow.zero"),
    "non-finite": ("*", "tab:purple", "#efe3f7", "flow.non_finite"),
    "frozen": ("s", "0.45", "0.93", "flow.frozen"),
}
FLOW_WIDTH_IN, FLOW_MAX_WIDTH_IN = WIDTH_IN, 9.0
TICK_PX = 18  # room a 10 pt label needs across its line (rotated: between neighbours)
CHAR_PX = 7  # a 10 pt character, on average
PREFIX_CHARS = 8  # a shared prefix this long is left out of turned names (and said once)
NAME_CHARS = 30  # longer names keep their end: "…layers.3.attn.q_proj.weight"
STRIP = 0.06  # where the markers of layers without a plottable grad sit (axes fraction)


def flow_status(layer: Any) -> str | None:
    """``"frozen"``, ``"non-finite"``, ``"zero"`` (all grads exactly 0) or None (plottable)."""
    if layer.frozen:
        return "frozen"
    if not layer.finite or not (math.isfinite(layer.mean_abs) and math.isfinite(layer.max_abs)):
        return "non-finite"
    if layer.max_abs <= 0:
        return "zero"
    return None


def _short_name(name: str) -> str:
    return name if len(name) <= NAME_CHARS else "…" + name[-(NAME_CHARS - 1) :]


def _tick_plan(count: int, width_px: float, status: list, capacity_px: float = TICK_PX) -> list[int]:
    """The layers whose names are written: all when they fit, else every k-th one, the layers
    without a plottable grad first (those matter most); no two nearer than k layers."""
    capacity = max(2, int(width_px // capacity_px))
    if count <= capacity:
        return list(range(count))
    step = math.ceil(count / capacity)
    marked = [i for i, s in enumerate(status) if s is not None]
    chosen: list[int] = []
    for i in [*marked, *range(0, count, step)]:
        if all(abs(i - j) >= step for j in chosen):
            chosen.append(i)
    return sorted(chosen)


def _turned_name(name: str, kind: str) -> str:
    """A turned tick label: the name, with the layer's type when that stays short."""
    with_kind = f"{name} ({kind})"
    return with_kind if kind and len(with_kind) <= NAME_CHARS else _short_name(name)


def _common_prefix(names: list[str]) -> str:
    """The dotted prefix every name starts with and none is only: ``model.encoder.`` or ``""``."""
    if len(names) < 2:
        return ""
    parts = [name.split(".")[:-1] for name in names]  # the last part is never shared away
    shared = 0
    while all(len(p) > shared and p[shared] == parts[0][shared] for p in parts):
        shared += 1
    return "".join(f"{part}." for part in parts[0][:shared])


def flow_figure(layers: Any, language: str | None = "en", notes: list | None = None):
    """The gradient-flow picture of a model: per layer (forward order) the mean and the max |grad|
    on a log scale; layers whose grads are all zero, frozen or non-finite are drawn on a strip at
    the bottom with their own marker, band and words. A ``matplotlib.figure.Figure`` made without
    pyplot; its words are in *language* (``None``: the language in use when it is made); *notes*
    (a list) receives the one-time "no Chinese font" note."""
    from matplotlib.figure import Figure

    from ..messages import resolve

    layers = list(layers)
    label_language, family = _fonts(resolve(language), notes if notes is not None else [])

    def say(message_id: str, **fields: object) -> str:
        return _say(label_language, message_id, **fields)

    style = _Style(family)
    status = [flow_status(layer) for layer in layers]
    layout = _flow_layout(layers)
    figure = Figure(
        figsize=(layout.width_in, HEIGHT_IN + max(0.0, layout.drop - 40) / DPI),
        dpi=DPI,
        layout="constrained",
        facecolor="white",
        edgecolor="white",
    )
    ax = figure.add_subplot(1, 1, 1)
    ax.set_yscale("log")
    figure.suptitle(say("flow.title"), fontproperties=style.font(TITLE_SIZE))
    style.axes(ax, say("flow.xlabel"), say("flow.ylabel"))
    if not layers:
        _flow_empty(ax, say("flow.empty"), style)
        return figure
    annotate = sum(s is not None for s in status) <= 12 and layout.spacing >= 20
    mean, high = _flow_values(ax, layers, status, layout, annotate)
    handles, labels = _flow_lines(ax, mean, high, say)
    for kind in FLOW_MARKS:
        _flow_marks(ax, kind, status, annotate, say, style, handles, labels)
    legend = ax.legend(
        handles,
        labels,
        prop=style.font(TEXT_SIZE),
        loc="lower left",
        bbox_to_anchor=(0.0, 1.01),
        ncol=len(handles),
        frameon=False,
        borderaxespad=0.0,
        handletextpad=0.4,
        columnspacing=1.2,
    )
    legend.set_in_layout(True)
    _flow_names(ax, status, layout, say, style)
    return figure


@dataclass
class _FlowLayout:
    """The size of a flow picture and its layers' names as written under the axis."""

    count: int
    width_in: float
    axes_px: float
    spacing: float  # pixels per layer
    texts: list[str]
    rotation: int  # 0 or 90 (45° names reach out of a narrow figure)
    prefix: str  # the shared prefix left out of turned names ("" when none)
    widest: float  # pixels

    @property
    def drop(self) -> float:
        """How far turned names reach below the axis (pixels)."""
        return self.widest if self.rotation else 0


def _flow_layout(layers: list) -> _FlowLayout:
    """Wider for more layers (up to a notebook's width), taller for long turned names."""
    count = len(layers)
    width_in = min(FLOW_MAX_WIDTH_IN, max(FLOW_WIDTH_IN, 1.3 + count * TICK_PX / DPI))
    axes_px = (width_in - 1.1) * DPI
    spacing = axes_px / max(count, 1)
    with_kind = count <= 12
    texts = [
        _short_name(layer.name) + (f"\n{layer.kind}" if with_kind and layer.kind else "") for layer in layers
    ]
    widest = max((max(len(line) for line in text.split("\n")) for text in texts), default=0) * CHAR_PX
    rotation = 0 if widest <= spacing * 0.9 else 90
    prefix = ""
    if rotation:  # turned names: without the prefix they all share (said once, under the axis)
        prefix = _common_prefix([layer.name for layer in layers])
        if len(prefix) < PREFIX_CHARS:
            prefix = ""
        texts = [_turned_name(layer.name[len(prefix) :], layer.kind if with_kind else "") for layer in layers]
        widest = max(len(text) for text in texts) * CHAR_PX
    return _FlowLayout(count, width_in, axes_px, spacing, texts, rotation, prefix, widest)


def _flow_empty(ax, text: str, style: _Style) -> None:
    """No layers: the words in the middle, no ticks, no numbers."""
    from matplotlib.ticker import NullFormatter

    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontproperties=style.font(LABEL_SIZE),
    )
    ax.set_xticks([])
    ax.yaxis.set_major_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def _flow_values(ax, layers: list, status: list, layout: _FlowLayout, annotate: bool) -> tuple[Any, Any]:
    """The mean and max |grad| per layer (nan where log scale cannot show one), and the axes'
    ranges: the plottable values, with room below them for the strip of the others."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, NullFormatter

    mean = np.array([r.mean_abs if s is None else np.nan for r, s in zip(layers, status, strict=True)], float)
    high = np.array([r.max_abs if s is None else np.nan for r, s in zip(layers, status, strict=True)], float)
    mean = np.where(mean > 0, mean, np.nan)  # a mean of 0 under a max > 0 cannot be: not drawn
    shown = np.concatenate([mean[np.isfinite(mean)], high[np.isfinite(high) & (high > 0)]])
    floor = 0.3 if annotate and any(s is not None for s in status) else 0.14
    if shown.size:
        low, top = math.log10(shown.min()), math.log10(shown.max())
    else:  # nothing to put on the scale: no numbers on it either
        low, top = -2.0, 0.0
    if top - low < 2:  # at least two decades, so that two powers of ten are labelled
        low, top = (low + top) / 2 - 1, (low + top) / 2 + 1
    span = top - low
    bottom = low - floor * span / (1 - floor - 0.08)
    ax.set_ylim(10**bottom, 10 ** (top + 0.08 * span))
    # 10⁻³: plain text, no mathtext
    ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten) if shown.size else NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(-0.6, layout.count - 0.4)
    return mean, high


def _flow_lines(ax, mean: Any, high: Any, say: Callable) -> tuple[list, list[str]]:
    """Mean and max per layer: markers joined by lines (broken where a layer has no value), and a
    light bar from mean to max; returns the legend's handles and labels so far."""
    import numpy as np

    count = len(mean)
    x = np.arange(count, dtype=float)
    few = count <= 60
    ends = np.isfinite(mean) & np.isfinite(high)
    ax.vlines(x[ends], mean[ends], high[ends], color=MAX_COLOR, alpha=0.3, linewidth=3 if few else 1.5)
    words = say("flow.mean"), say("flow.max")
    (high_line,) = ax.plot(
        x, high, color=MAX_COLOR, marker="^" if few else None, markersize=6, linewidth=1.4, label=words[1]
    )
    (mean_line,) = ax.plot(
        x, mean, color=MEAN_COLOR, marker="o" if few else None, markersize=5, linewidth=1.8, label=words[0]
    )
    ax.grid(True, axis="y", color="0.9")
    ax.set_axisbelow(True)
    return [mean_line, high_line], list(words)


def _flow_marks(
    ax, kind: str, status: list, annotate: bool, say: Callable, style: _Style, handles: list, labels: list
) -> None:
    """The layers of one *kind* log scale cannot show: a band over each run of them, a marker on
    the strip at the bottom, their word (when there is room) and a legend entry."""
    from matplotlib.lines import Line2D

    where = [i for i, s in enumerate(status) if s == kind]
    if not where:
        return
    marker, color, band, message_id = FLOW_MARKS[kind]
    strip = ax.get_xaxis_transform()  # x in layers, y in axes fraction
    for start, stop in _runs(where):
        ax.axvspan(start - 0.5, stop + 0.5, color=band, zorder=0, linewidth=0)
    ax.plot(where, [STRIP] * len(where), linestyle="none", marker=marker, color=color, markersize=9,
            transform=strip, clip_on=False, zorder=3)  # fmt: skip
    word = say(message_id)
    handles.append(Line2D([], [], linestyle="none", marker=marker, color=color, markersize=9))
    labels.append(say("flow.count", label=word, count=len(where)) if len(where) > 1 else word)
    if not annotate:
        return
    for i in where:
        ax.text(i, STRIP + 0.05, word, transform=strip, rotation=90, ha="center", va="bottom", color=color,
                fontproperties=style.font(TEXT_SIZE), zorder=4)  # fmt: skip


def _flow_names(ax, status: list, layout: _FlowLayout, say: Callable, style: _Style) -> None:
    """The layers' names: every one when they fit, else a thinned set (the unnamed layers marked
    by small ticks, and the axis label saying so); names of layers without a plottable grad in
    their kind's color."""
    import numpy as np
    from matplotlib.markers import TICKDOWN
    from matplotlib.ticker import FixedLocator

    count, rotation = layout.count, layout.rotation
    named = _tick_plan(
        count, layout.axes_px, status, TICK_PX if rotation else max(TICK_PX, layout.widest / 0.9)
    )
    ax.xaxis.set_major_locator(FixedLocator(named))
    ax.set_xticklabels(
        [layout.texts[i] for i in named], fontproperties=style.font(TEXT_SIZE), rotation=rotation, ha="center"
    )
    xlabel = [say("flow.xlabel")]
    if layout.prefix:
        xlabel.append(say("flow.prefix", prefix=layout.prefix))
    if len(named) < count:
        xlabel.append(say("flow.every", count=count, step=_step(named)))
    if len(xlabel) > 1:
        ax.set_xlabel(" · ".join(xlabel), fontproperties=style.font(LABEL_SIZE))
    if len(named) < count:  # the unnamed layers get a short tick each (one artist: 500 Ticks are slow)
        ax.plot(np.arange(count, dtype=float), np.zeros(count), linestyle="none", marker=TICKDOWN, markersize=3,
                markeredgewidth=0.8, color="black", transform=ax.get_xaxis_transform(), clip_on=False)  # fmt: skip
    for tick, i in zip(ax.xaxis.get_major_ticks(), named, strict=False):
        if status[i] is not None:
            tick.label1.set_color(FLOW_MARKS[status[i]][1])


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power_of_ten(value: float, _position: object = None) -> str:
    """``1e-3`` -> ``"10⁻³"`` (``"1"``, ``"10"``); other values as numbers."""
    if not value > 0:
        return ""
    exponent = round(math.log10(value))
    if not math.isclose(value, 10.0**exponent, rel_tol=1e-6):
        return fmt.number(value)
    return {0: "1", 1: "10"}.get(exponent, "10" + str(exponent).translate(SUPERSCRIPT))


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """``[1, 2, 3, 7]`` -> ``[(1, 3), (7, 7)]``."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _step(named: list[int]) -> int:
    gaps = [b - a for a, b in itertools.pairwise(named)]
    return statistics.median_low(gaps) if gaps else 1


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------
def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi, facecolor="white", transparent=False)
    return buffer.getvalue()


def save(figure, path: str) -> Note:
    """Write *figure* to *path* (``.png`` or ``.svg``); the note that says where it went."""
    full = os.path.abspath(os.path.expanduser(path))
    try:
        figure.savefig(full, dpi=figure.dpi, facecolor="white", transparent=False)
    except OSError as e:
        raise GradError(t("plot.save_failed", path=path, error=e)) from None
    return note("plot.saved", path=full)
