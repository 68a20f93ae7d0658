"""``--plot``: the function and its derivative, drawn without pyplot.

Imported only when a plot is asked for; builds a ``matplotlib.figure.Figure``
(no pyplot, no global figure list, rcParams untouched outside a context), so
nothing is left open and the inline backend never shows it a second time.

* one 1-D input: the output (before summing) and the grad against the input;
* scalar inputs: f and f' over a window around the point (evaluated with
  ``torch.func.vmap``), the point marked and its tangent drawn, one panel per
  input with the others held at their values.

Long curves are reduced to the figure's pixel columns keeping, per column, the
first, lowest, highest and last point (M4), so the picture is the same as
plotting every point, spikes included.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from . import format as fmt
from .messages import note, t, using
from .spec import GradError

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
    low, sep, high = str(text).partition(":")
    try:
        a, b = float(low), float(high)
    except ValueError:
        raise GradError(t("plot.bad_range", value=text)) from None
    if not sep or not (math.isfinite(a) and math.isfinite(b)) or a >= b:
        raise GradError(t("plot.bad_range", value=text))
    return a, b


def check_save_path(path: str | None) -> None:
    if path is not None and os.path.splitext(path)[1].lower() not in (".png", ".svg"):
        raise GradError(t("plot.bad_save", path=path))


# ---------------------------------------------------------------------------
# fonts
# ---------------------------------------------------------------------------
def cjk_font() -> str | None:
    """The name of an installed font with Chinese glyphs, or None."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in installed:
            return name
    for name in sorted(installed):
        if "CJK" in name or "Han Sans" in name or "WenQuanYi" in name:
            return name
    return None


@contextlib.contextmanager
def _style(language: str, notes: list[str]) -> Iterator[str]:
    """rcParams for the figure, restored afterwards; yields the label language."""
    import matplotlib

    global _warned_no_cjk
    params: dict[str, Any] = {"axes.unicode_minus": False}
    label_language = language
    if language == "zh":
        font = cjk_font()
        if font is None:
            label_language = "en"
            if not _warned_no_cjk:
                _warned_no_cjk = True
                notes.append(note("plot.no_cjk_font"))
        else:
            params["font.sans-serif"] = [font, *matplotlib.rcParams["font.sans-serif"]]
            params["font.family"] = "sans-serif"
    with matplotlib.rc_context(params):
        yield label_language


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
    from .messages import resolve

    language = resolve(language)
    notes: list[str] = []
    leaves = result.leaves
    problem = _unplottable(result)
    if problem is not None:
        return None, [], [problem]
    with _style(language, notes) as label_language:

        def label(message_id: str, **fields: object) -> str:
            with using(label_language):
                return t(message_id, **fields)

        if len(leaves) == 1 and next(iter(leaves.values())).dim() == 1:
            figure, curves = _vector_figure(result, notes)
        else:
            figure, curves = _point_figure(result, evaluate, window, notes, label)
    return figure, curves, notes


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
        figsize=(WIDTH_IN if panels == 1 else 4.2 * panels, HEIGHT_IN), dpi=DPI, layout="constrained"
    )
    return figure, [figure.add_subplot(1, panels, i + 1) for i in range(panels)]


def _finite(x: torch.Tensor, *ys: torch.Tensor) -> tuple[torch.Tensor, ...]:
    keep = torch.isfinite(x)
    for y in ys:
        keep &= torch.isfinite(y)
    if bool(keep.all()):  # the usual case: no copies
        return (x, *ys)
    return tuple(v[keep] for v in (x, *ys))


def _vector_figure(result: Any, notes: list[str]):
    name, out_name = next(iter(result.leaves)), result.output_name
    x = result.values[name].detach().float().cpu()
    grad = result.grads[name]
    output = result.output.detach().float().cpu()
    with_function = output.shape == x.shape
    series = []
    if with_function:
        series.append((out_name, output, FUNCTION_COLOR))
    if grad is not None:
        series.append((f"d{out_name}/d{name}", grad.detach().float().cpu(), DERIVATIVE_COLOR))
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
    for label, y, color in series:
        xs, ys = (x, y) if order is None else (x[order], y[order])
        fx, fy = _finite(xs, ys)
        skipped = max(skipped, xs.numel() - fx.numel())
        px, py = reduce_points(fx, fy)
        ax.plot(px.numpy(), py.numpy(), color=color, label=label)
        curves.append(Curve(label, px, py))
    if skipped:
        notes.append(note("plot.non_finite", count=skipped))
    ax.set_xlabel(name)
    ax.grid(True, color="0.9")  # (a grid, not extra lines: ax.lines holds only the curves)
    ax.legend()
    return figure, curves


def _point_figure(result: Any, evaluate: Callable | None, window, notes: list[str], label: Callable):
    names = list(result.leaves)
    out = f"sum({result.output_name})" if result.summed else result.output_name
    d = "d" if len(names) == 1 else "∂"
    figure, axes = _new_figure(len(names))
    curves: list[Curve] = []
    for ax, name in zip(axes, names, strict=True):
        point = result.values[name].detach().double().item()
        slope_t = result.grads[name]
        value = (result.output.detach().sum() if result.summed else result.output.detach()).double().item()
        low, high = window or (point - max(1.0, abs(point)), point + max(1.0, abs(point)))
        grid = torch.linspace(low, high, GRID_POINTS, dtype=torch.float64)
        label_d = f"{d}{out}/{d}{name}"
        evaluated = None
        if evaluate is not None:
            try:
                evaluated = evaluate(name, grid)
            except Exception as e:  # the cell cannot run on a batch of points
                notes.append(note("plot.no_vmap", name=name, error=f"{type(e).__name__}: {e}".strip()[:200]))
        if evaluated is not None:
            values, slopes = evaluated
            for legend, y, color in ((out, values, FUNCTION_COLOR), (label_d, slopes, DERIVATIVE_COLOR)):
                fx, fy = _finite(grid, y.double())
                ax.plot(fx.numpy(), fy.numpy(), color=color, label=legend)
                curves.append(Curve(f"{legend}|{name}" if len(names) > 1 else legend, fx, fy))
        if slope_t is not None:
            slope = slope_t.detach().double().item()
            half = (high - low) / 4
            tx = torch.tensor([point - half, point + half], dtype=torch.float64)
            ty = value + slope * (tx - point)
            tangent = label("plot.tangent", slope=fmt.number(slope), name=name, point=fmt.number(point))
            ax.plot(tx.numpy(), ty.numpy(), linestyle="--", color=TANGENT_COLOR, label=tangent)
            curves.append(Curve(f"tangent|{name}" if len(names) > 1 else "tangent", tx, ty))
            ax.annotate(
                label("plot.slope", slope=fmt.number(slope)),
                (point, value),
                textcoords="offset points",
                xytext=(8, -14),
                fontsize=9,
            )
        ax.scatter([point], [value], color="black", zorder=3)
        ax.set_xlabel(name)
        ax.grid(True, color="0.9")
        others = [f"{o} = {fmt.number(result.values[o].item())}" for o in names if o != name]
        if others:
            ax.set_title(", ".join(others), fontsize=10)
        ax.legend(fontsize=8)
    return figure, curves


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------
def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def save(figure, path: str) -> None:
    try:
        figure.savefig(os.path.expanduser(path))
    except OSError as e:
        raise GradError(t("plot.save_failed", path=path, error=e)) from None
