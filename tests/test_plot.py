"""--plot: the figure's data against analytic derivatives, its labels, and what it leaves behind."""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import sys
import warnings

import matplotlib
import numpy as np
import pytest
import torch
from conftest import Failure

from torchgrad_magic.render import plot


def curves(result) -> dict:
    return {c.label: c for c in result.curves}


def test_vector_input_plots_function_and_derivative(run):
    result = run("--wrt x=torch.linspace(-20, 20, 20) --plot", "Y = x ** 2")
    x = torch.linspace(-20, 20, 20)
    lines = curves(result)
    assert set(lines) == {"Y", "dY/dx"}
    torch.testing.assert_close(lines["Y"].x, x)
    torch.testing.assert_close(lines["Y"].y, x**2)
    torch.testing.assert_close(lines["dY/dx"].y, 2 * x)
    # Y spans 0..400, dY/dx -40..40: on one axis the derivative would look flat, so it gets its own
    ax, twin = result.figure.axes
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "Y" and twin.get_ylabel() == "dY/dx"
    assert [t.get_text() for t in twin.get_legend().get_texts()] == ["Y", "dY/dx"]
    lines = ax.get_lines() + twin.get_lines()
    assert [line.get_label() for line in lines] == ["Y", "dY/dx"]  # the curves and nothing else
    assert len({line.get_color() for line in lines}) == 2
    torch.testing.assert_close(torch.tensor(lines[1].get_ydata()), 2 * x)


SEED_LESSON_5 = (
    "x = torch.linspace(-20, 20, 20, requires_grad=True)\nY = x ** 2\ny = torch.sum(Y)\ny.backward()"
)


def test_the_seeds_multi_value_lesson_draws_its_own_plot(run):
    """The seed's lesson: y = torch.sum(Y), then a plot of Y and x.grad. --plot draws the same two
    curves (Y, not the scalar y: a derivative alone was drawn, with a note)."""
    result = run("--plot", SEED_LESSON_5)
    x = torch.linspace(-20, 20, 20)
    lines = curves(result)
    assert set(lines) == {"Y", "dy/dx"} and not result.note_texts
    torch.testing.assert_close(lines["Y"].y, x**2)
    torch.testing.assert_close(lines["dy/dx"].y, 2 * x)
    ax, twin = result.figure.axes
    assert ax.get_ylabel() == "Y" and twin.get_ylabel() == "dy/dx"
    mean = run("--plot", SEED_LESSON_5.replace("torch.sum(Y)", "Y.mean()"))
    torch.testing.assert_close(curves(mean)["dy/dx"].y, 2 * x / 20)
    assert set(curves(mean)) == {"Y", "dy/dx"}
    numpy = run("--plot", SEED_LESSON_5 + "\nxs, Ys = x.detach().numpy(), Y.detach().numpy()")  # the seed's
    assert set(curves(numpy)) == {"Y", "dy/dx"} and not numpy.note_texts  # plot lines: after y, no matter
    branch = run("--wrt x=3 --plot", "y = x ** 2 if x.item() > 0 else -x")  # (before y: it matters)
    (said,) = [n for n in branch.note_texts if "Python values" in n]  # (one cause: one note)
    assert (
        "turned tracked values into Python values (.item())" in said
        and "only the point and its tangent" in said
    )
    scaled = run("--plot", SEED_LESSON_5.replace("torch.sum(Y)", "torch.sum(Y) * 2"))  # (not Y's sum: alone)
    assert set(curves(scaled)) == {"dy/dx"} and any("only the derivative" in n for n in scaled.note_texts)


def test_sin_against_cos(run):
    result = run("--wrt t=torch.linspace(-3, 3, 101) --plot", "s = torch.sin(t)")
    lines = curves(result)
    grid = torch.linspace(-3, 3, 101)
    torch.testing.assert_close(lines["s"].y, torch.sin(grid))
    torch.testing.assert_close(lines["ds/dt"].y, torch.cos(grid))


def test_scalar_point_window_tangent_and_labels(run):
    result = run("--wrt x=3 --plot", "y = 3 * x ** 2")
    lines = curves(result)
    assert set(lines) == {"y", "dy/dx", "tangent"}
    grid = lines["y"].x
    assert grid.min() <= 3 <= grid.max()
    torch.testing.assert_close(lines["y"].y, 3 * grid**2, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(lines["dy/dx"].y, 6 * grid, rtol=1e-5, atol=1e-4)
    tx, ty = lines["tangent"].x, lines["tangent"].y
    slope = (ty[1] - ty[0]) / (tx[1] - tx[0])
    assert slope.item() == pytest.approx(result.grads["x"].item()) == pytest.approx(18)
    ax = result.figure.axes[0]
    texts = [t.get_text() for t in ax.texts] + [t.get_text() for t in ax.get_legend().get_texts()]
    assert "slope = 18" in texts and "tangent at x = 3" in texts and "slope 18" not in texts  # (said once)
    assert [line.get_label() for line in ax.get_lines()] == ["y", "dy/dx", "tangent at x = 3"]
    assert ax.get_xlabel() == "x"


def test_range_sets_the_window(run):
    result = run("--wrt x=3 --plot --range -2:5", "y = torch.sin(x)")
    grid = curves(result)["y"].x
    assert grid[0].item() == pytest.approx(-2) and grid[-1].item() == pytest.approx(5)
    torch.testing.assert_close(curves(result)["dy/dx"].y, torch.cos(grid), rtol=1e-4, atol=1e-5)


def test_partials_one_panel_per_variable(run):
    result = run("--wrt u=3 v=4 --plot", "f = u**3 + v**2 + 4*u*v")
    assert [ax.get_xlabel() for ax in result.figure.axes[:2]] == ["u", "v"]  # one panel each
    lines = curves(result)
    u = lines["f|u"].x
    torch.testing.assert_close(lines["f|u"].y, u**3 + 16 + 16 * u, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(lines["∂f/∂u|u"].y, 3 * u**2 + 16, rtol=1e-5, atol=1e-3)
    v = lines["f|v"].x
    torch.testing.assert_close(lines["∂f/∂v|v"].y, 2 * v + 12, rtol=1e-5, atol=1e-3)
    for name, expected in (("u", 43), ("v", 20)):
        tx, ty = lines[f"tangent|{name}"].x, lines[f"tangent|{name}"].y
        assert ((ty[1] - ty[0]) / (tx[1] - tx[0])).item() == pytest.approx(expected)
    titles = [ax.get_title() for ax in result.figure.axes]
    assert titles[:2] == ["v held at 4", "u held at 3"]
    # f spans 27..187 over the v window, ∂f/∂v only 12..28: a second y-axis for it, not for u
    assert len(result.figure.axes) == 3 and result.figure.axes[2].get_ylabel() == "∂f/∂v"
    assert [line.get_label() for line in result.figure.axes[2].get_lines()] == ["∂f/∂v"]
    zh = run("--wrt u=3 v=4 --plot --lang zh", "f = u**3 + v**2 + 4*u*v")
    if plot.cjk_font() is not None:
        assert [ax.get_title() for ax in zh.figure.axes][:2] == ["v 固定为 4", "u 固定为 3"]


def test_cell_that_cannot_be_vectorised_still_shows_the_point(run):
    result = run("--wrt x=3 --plot", "y = x * float(x.item())")
    assert result.grads["x"].item() == 3  # .item() is a constant to autograd
    lines = curves(result)
    assert set(lines) == {"tangent"}  # the recorded computation holds x.item() as a constant: no curve
    assert any("turned tracked values into Python values" in n for n in result.note_texts)


def test_plot_of_a_cell_that_sets_its_own_leaf(run):
    # the cell runs once; the curve comes from the recorded computation, not from running it again
    result = run("--plot", "x = torch.tensor(3.0, requires_grad=True)\ny = 3 * x ** 2")
    lines = curves(result)
    assert set(lines) == {"y", "dy/dx", "tangent"}
    x = lines["y"].x
    torch.testing.assert_close(lines["dy/dx"].y, 6 * x)


@pytest.mark.parametrize(
    ("line", "cell", "words"),
    [
        ("--wrt x=torch.ones(2, 3) --plot", "y = x * 2", "x (2, 3)"),
        ("--wrt a=[1.0, 2.0] b=[3.0, 4.0] --plot", "y = a * b", "one 1-D input"),
        ("--wrt x=3 --plot", "y = x * (1 + 1j)\ny = y.abs()", None),
        ("--wrt x=torch.tensor([1.0, 2.0], dtype=torch.complex64) --plot", "y = (x * x).abs()", "complex"),
    ],
)
def test_what_cannot_be_plotted_is_said_and_the_table_stays(run, line, cell, words):
    result = run(line, cell)
    assert result.rows
    if words is None:
        assert result.figure is not None
    else:
        assert result.figure is None and any(words in n for n in result.note_texts)


def test_non_finite_values_are_left_out(run):
    result = run("--wrt x=torch.linspace(-1, 1, 11) --plot", "y = torch.log(x)")
    assert any("left out of the plot" in n for n in result.note_texts)
    assert all(torch.isfinite(c.y).all() for c in result.curves)


def test_the_curves_are_evaluated_on_the_grid_the_figure_draws(run):
    """derive/extras.py evaluates the curves, render/plot.py draws them: on one grid."""
    from torchgrad_magic.derive import extras

    assert extras.GRID_POINTS == plot.GRID_POINTS
    lines = curves(run("--wrt x=3 --plot", "y = 3 * x ** 2"))
    torch.testing.assert_close(lines["y"].x, extras.plot_grid(3.0, None))
    lines = curves(run("--wrt x=3 --plot --range -1:2", "y = 3 * x ** 2"))
    torch.testing.assert_close(lines["y"].x, extras.plot_grid(3.0, (-1.0, 2.0)))


def test_a_point_the_record_cannot_be_evaluated_at_is_a_note_in_its_place(run):
    # cholesky of a negative number fails: the note comes where the curves were evaluated
    result = run("--wrt x=1 --plot --check", "y = torch.linalg.cholesky(x.reshape(1, 1)).sum()")
    assert set(curves(result)) == {"tangent"} and result.checks
    assert [n.id for n in result.notes] == ["plot.no_vmap"]


def test_reduce_points_keeps_spikes_and_extremes():
    x = torch.linspace(0, 1, 1_000_003)
    y = torch.sin(40 * x)
    y[123_457] = 50.0
    y[900_001] = -50.0
    px, py = plot.reduce_points(x, y, columns=500)
    assert px.numel() <= 4 * 500 + 4
    assert py.max().item() == 50 and py.min().item() == -50
    assert px[0] == x[0] and px[-1] == x[-1] and bool((px[1:] >= px[:-1]).all())


def _pixels(figure) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(plot.png(figure)))


def test_reduced_picture_equals_the_full_picture():
    from matplotlib.figure import Figure

    x = torch.linspace(-20, 20, 200_000)
    y = torch.sin(x) * x
    y[77_777] = 30.0  # a one-point spike must survive

    def draw(px, py):
        figure = Figure(figsize=(plot.WIDTH_IN, plot.HEIGHT_IN), dpi=plot.DPI)
        ax = figure.add_subplot()
        ax.plot(px.numpy(), py.numpy(), color="tab:red")
        ax.set_xlim(-20, 20)
        ax.set_ylim(-25, 35)
        return _pixels(figure)

    full, reduced = draw(x, y), draw(*plot.reduce_points(x, y))
    differing = np.abs(full - reduced).max(axis=-1) > 0.25
    assert differing.mean() < 0.002, differing.sum()


def test_save_png_and_svg(run, tmp_path):
    for suffix, magic in (("png", b"\x89PNG"), ("svg", b"<?xml")):
        path = tmp_path / f"fig.{suffix}"
        result = run(f"--wrt x=3 --save {path}", "y = 3 * x ** 2")
        assert result.figure is not None
        assert path.read_bytes().startswith(magic)


def test_bad_save_and_range(run, tmp_path):
    with pytest.raises(Failure, match=r"must end in \.png or \.svg"):
        run(f"--wrt x=3 --save {tmp_path / 'fig.jpg'}", "y = x")
    with pytest.raises(Failure, match="low:high"):
        run("--wrt x=3 --plot --range 5:1", "y = x")
    with pytest.raises(Failure, match="low:high"):
        run("--wrt x=3 --plot --range abc", "y = x")


def test_save_says_where_it_wrote(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative name: the note gives the absolute path that was written
    result = run("--wrt x=3 --save fig.png", "y = 3 * x ** 2")
    written = tmp_path / "fig.png"
    assert written.read_bytes().startswith(b"\x89PNG")
    assert f"figure saved to {written}" in result.note_texts
    zh = run("--wrt x=3 --save fig.svg --lang zh", "y = 3 * x ** 2")
    assert f"图已保存到 {tmp_path / 'fig.svg'}" in zh.note_texts
    assert (tmp_path / "fig.svg").read_bytes().startswith(b"<?xml")


def test_save_where_it_cannot_be_written_is_refused_before_the_cell_runs(run, tmp_path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(Failure) as caught:
        run(f"--wrt x=3 --save {missing / 'f.png'}", "ran = True\ny = 3 * x ** 2")
    message = str(caught.value)
    assert f"the folder {missing} does not exist" in message and "\n" not in message
    assert "could not be evaluated again" not in message
    assert "ran" not in run.ns and not missing.exists()  # the cell's code did not run
    with pytest.raises(Failure, match=f"文件夹 {re.escape(str(missing))} 不存在"):
        run(f"--wrt x=3 --lang zh --save {missing / 'f.png'}", "ran = True\ny = x")
    assert "ran" not in run.ns
    folder = tmp_path / "f.png"
    folder.mkdir()
    with pytest.raises(Failure, match="that is a folder"):
        run(f"--wrt x=3 --save {folder}", "ran = True\ny = x")
    assert "ran" not in run.ns
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # (root may write anywhere)
        with pytest.raises(Failure, match=f"the folder {re.escape(str(locked))} cannot be written to"):
            run(f"--wrt x=3 --save {locked / 'f.png'}", "ran = True\ny = x")
        assert "ran" not in run.ns


def test_save_with_no_plot_is_refused_before_the_cell_runs(shell, tmp_path):
    path = tmp_path / "fig.png"
    outcome = shell.run_cell(f"%%grad --wrt x=3 --save {path} --no-plot\nran = True\ny = 3 * x ** 2")
    assert not outcome.success and "ran" not in shell.user_ns and not path.exists()
    message = str(outcome.error_in_exec)
    assert "--save is for the figure, and --no-plot asks for none" in message and "did not run" in message
    assert shell.run_cell("%%grad --wrt x=3 --save " + str(path) + "\ny = 3 * x ** 2").success
    assert path.read_bytes().startswith(b"\x89PNG")


def test_plotting_leaves_no_state_behind(run):
    import matplotlib.pyplot as plt

    before = (dict(matplotlib.rcParams), plt.get_fignums())
    run("--wrt x=3 --plot --lang zh", "y = 3 * x ** 2")
    run("--wrt x=torch.linspace(0, 1, 50) --plot", "y = x ** 3")
    assert (dict(matplotlib.rcParams), plt.get_fignums()) == before


def test_chinese_labels_fall_back_to_english_without_a_cjk_font(run, monkeypatch):
    monkeypatch.setattr(plot, "cjk_font", lambda: None)
    monkeypatch.setattr(plot, "_warned_no_cjk", False)
    result = run("--wrt x=3 --plot --lang zh", "y = 3 * x ** 2")
    texts = [t.get_text() for t in result.figure.axes[0].get_legend().get_texts()]
    assert "tangent at x = 3" in texts
    assert all(t.get_fontfamily() == ["DejaVu Sans"] for t in _texts(result.figure))
    assert any("没有安装中文字体" in n for n in result.note_texts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph would warn here
        plot.png(result.figure)
    again = run("--wrt x=3 --plot --lang zh", "y = 3 * x ** 2")  # said once
    assert not any("没有安装中文字体" in n for n in again.note_texts)


def _cjk_font_or_fail() -> str:
    font = plot.cjk_font()
    if font is None:
        pytest.fail(
            "no CJK font found: install one (Debian/Ubuntu: apt-get install -y fonts-noto-cjk) to test "
            "Chinese plots; CI installs fonts-noto-cjk"
        )
    return font


def _texts(figure) -> list:
    """Every text the figure draws (tick labels as made when it was last drawn)."""
    found = []
    for ax in figure.axes:
        found += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        found += [t for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_visible() and t.get_text()]
        if ax.get_legend() is not None:
            found += ax.get_legend().get_texts()
    return [t for t in found if t.get_text()]


def test_a_cjk_font_installed_after_matplotlib_built_its_cache_is_found(monkeypatch):
    from matplotlib import font_manager

    _cjk_font_or_fail()
    known = [f for f in font_manager.fontManager.ttflist if "CJK" not in f.name and "WenQuanYi" not in f.name]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", known)  # the cache as it was before the install
    font = plot.cjk_font()
    assert font is not None and any(f.name == font for f in font_manager.fontManager.ttflist)


@pytest.mark.parametrize(
    "cell", [("--wrt x=3", "y = 3 * x ** 2"), ("--wrt u=3 v=4", "f = u**3 + v**2 + 4*u*v")]
)
def test_chinese_plot_carries_its_font_to_the_png(run, cell):
    font = _cjk_font_or_fail()
    result = run(f"{cell[0]} --plot --lang zh", cell[1])
    assert "斜率" in result.figure.axes[0].texts[0].get_text()
    # drawn later, with rcParams that know no CJK font (the style of the cell is long gone)
    rc = {"font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"]}
    with matplotlib.rc_context(rc), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = plot.png(result.figure)
    assert image.startswith(b"\x89PNG")
    assert not [str(w.message) for w in caught if "missing from font" in str(w.message)]
    texts = _texts(result.figure)
    assert any("切线" in t.get_text() for t in texts)
    assert all(t.get_fontfamily()[0] == font for t in texts), {
        t.get_text(): t.get_fontfamily() for t in texts
    }


def _line_pixels(ax) -> np.ndarray:
    points = []
    for a in [ax, *[o for o in ax.figure.axes if o is not ax and o.bbox.bounds == ax.bbox.bounds]]:
        for line in a.get_lines():
            xy = a.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
            for p, q in itertools.pairwise(xy):
                steps = int(np.hypot(*(q - p))) + 2
                points.append(p + (q - p) * np.linspace(0, 1, steps)[:, None])
    return np.concatenate(points)


@pytest.mark.parametrize(
    ("line", "cell"),
    [
        ("--wrt x=3", "y = 3 * x ** 2"),
        ("--wrt x=3 --lang zh", "y = 3 * x ** 2"),
        ("--wrt u=3 v=4", "f = u**3 + v**2 + 4*u*v"),
        ("--wrt u=3 v=4 --lang zh", "f = u**3 + v**2 + 4*u*v"),
        ("--wrt x=0.5 --range -6:6", "y = torch.sin(x)"),
        ("--wrt x=torch.linspace(-20, 20, 20)", "Y = x ** 2"),
    ],
)
def test_readable_on_a_projector(run, line, cell):
    result = run(f"{line} --plot", cell)
    figure = result.figure
    pixels = _pixels(figure)  # draws it
    assert (
        pixels.shape[-1] in (3, 4) and np.all(pixels[0, 0] == 1) and np.all(pixels[-1, -1] == 1)
    )  # opaque white
    assert figure.get_facecolor() == (1, 1, 1, 1)
    for ax in figure.axes:
        assert ax.get_ylabel(), "every axis says what it shows"
    for text in _texts(figure):
        assert text.get_fontsize() >= 10, text.get_text()
    for ax in figure.axes:
        for annotation in ax.texts:  # "slope = 18": no curve, tangent or point crosses its box
            box = annotation.get_bbox_patch().get_window_extent()
            points = _line_pixels(ax)
            inside = (
                (points[:, 0] >= box.x0)
                & (points[:, 0] <= box.x1)
                & (points[:, 1] >= box.y0)
                & (points[:, 1] <= box.y1)
            )
            assert not inside.any(), (annotation.get_text(), box)
            assert (
                ax.bbox.x0 <= box.x0
                and box.x1 <= ax.bbox.x1
                and ax.bbox.y0 <= box.y0
                and box.y1 <= ax.bbox.y1
            )


def test_function_and_derivative_of_the_same_scale_share_an_axis(run):
    result = run("--wrt x=torch.linspace(-3, 3, 50) --plot", "y = torch.sin(x)")
    (ax,) = result.figure.axes
    assert [line.get_label() for line in ax.get_lines()] == ["y", "dy/dx"]
    assert ax.get_ylabel() == "y, dy/dx"


def test_saved_png_is_opaque(run, tmp_path):
    import matplotlib.image

    path = tmp_path / "fig.png"
    with matplotlib.rc_context({"savefig.transparent": True, "savefig.facecolor": "none"}):
        run(f"--wrt x=3 --save {path}", "y = 3 * x ** 2")
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[-1] == 3 or np.all(pixels[..., 3] == 1)


def test_matplotlib_is_imported_only_for_plots():
    code = (
        "import sys\n"
        "from torchgrad_magic import grad\n"
        "grad('y = 3 * x ** 2', wrt='x=3')\n"
        "assert 'matplotlib' not in sys.modules\n"
        "grad('y = 3 * x ** 2', wrt='x=3', plot=True)\n"
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
