"""The gradient-flow picture of a model (``plot.flow_figure``): its data, its words, its size and speed."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
import warnings
from types import SimpleNamespace

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import torch
from test_plot import _texts

from torchgrad_magic.messages import MESSAGES, using
from torchgrad_magic.render import plot
from torchgrad_magic.render.plot import LayerFlow, flow_figure

NAN, INF = float("nan"), float("inf")


def mlp_rows(net: torch.nn.Module, prefix: str = "net") -> list[LayerFlow]:
    """One row per module with parameters, as the report builds them (forward order)."""
    rows = []
    for name, module in net.named_modules():
        params = list(module.parameters(recurse=False))
        if not params:
            continue
        if not any(p.requires_grad for p in params):
            rows.append(LayerFlow(f"{prefix}.{name}", type(module).__name__, NAN, NAN, NAN, 0.0, True, True))
            continue
        g = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
        rows.append(
            LayerFlow(
                f"{prefix}.{name}",
                type(module).__name__,
                g.abs().mean().item(),
                g.abs().max().item(),
                g.norm().item(),
                (g == 0).float().mean().item(),
                bool(torch.isfinite(g).all()),
                False,
            )
        )
    return rows


@pytest.fixture
def healthy() -> list[LayerFlow]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 1),
    )
    ((net(torch.randn(64, 8)) - torch.randn(64, 1)) ** 2).mean().backward()
    return mlp_rows(net)


@pytest.fixture
def broken() -> list[LayerFlow]:
    """net.0 and net.2 all zero (net.2's ReLU is dead, so nothing before it gets a grad), net.4
    frozen, net.6 non-finite, net.8 healthy."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 1),
    )
    with torch.no_grad():
        net[2].bias.fill_(-100.0)
    net[4].requires_grad_(False)
    ((net(torch.randn(32, 8)) - 1) ** 2).mean().backward()
    rows = mlp_rows(net)
    rows[3] = LayerFlow("net.6", "Linear", INF, INF, INF, 0.0, False, False)
    return rows


def deep_rows(count: int, prefix: str = "model.encoder.layers.") -> list[LayerFlow]:
    return [
        LayerFlow(f"{prefix}{i}.mlp.fc{i % 2}", "Linear", 10 ** (-2 - i / 50), 10 ** (-1 - i / 50), 1.0)
        for i in range(count)
    ]


def tick_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def all_texts(figure) -> list:
    """Every text the figure draws: the figure's own texts and those of its axes (test_plot's helper)."""
    return [t for t in figure.texts if t.get_text()] + _texts(figure)


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_healthy_mlp_mean_and_max_per_layer_on_a_log_scale(healthy):
    figure = flow_figure(healthy)
    (ax,) = figure.axes
    assert ax.get_yscale() == "log"
    # one tick per layer, in forward order, the layer's type under its name
    assert tick_texts(ax) == ["net.0\nLinear", "net.2\nLinear", "net.4\nLinear"]
    assert list(ax.get_xticks()) == [0, 1, 2]
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["mean |grad|"].get_ydata(), [r.mean_abs for r in healthy])
    np.testing.assert_allclose(lines["max |grad|"].get_ydata(), [r.max_abs for r in healthy])
    low, high = ax.get_ylim()
    assert low < min(r.mean_abs for r in healthy) and max(r.max_abs for r in healthy) < high
    assert legend_texts(ax) == ["mean |grad|", "max |grad|"]
    assert figure.get_suptitle() == "Gradient flow: |grad| per layer"
    assert ax.get_xlabel() == "layer (forward order)" and ax.get_ylabel() == "|grad| (log scale)"
    assert not ax.texts  # nothing to call out


def test_zero_frozen_and_non_finite_layers_are_marked_and_said(broken):
    assert [plot.flow_status(r) for r in broken] == ["zero", "zero", "frozen", "non-finite", None]
    figure = flow_figure(broken)
    (ax,) = figure.axes
    assert [t.split("\n")[0] for t in tick_texts(ax)] == ["net.0", "net.2", "net.4", "net.6", "net.8"]
    # log scale cannot show them: no value on the lines, the words on the strip at the bottom
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert np.isnan(lines["mean |grad|"].get_ydata()[:4]).all()
    assert np.isfinite(lines["mean |grad|"].get_ydata()[4])
    words = sorted((t.get_text(), round(t.get_position()[0])) for t in ax.texts)
    assert words == [("all zero", 0), ("all zero", 1), ("frozen", 2), ("non-finite", 3)]
    assert legend_texts(ax) == ["mean |grad|", "max |grad|", "all zero (2)", "non-finite", "frozen"]
    colors = [matplotlib.colors.to_hex(t.get_color()) for t in ax.get_xticklabels()]
    assert colors[4] == "#000000" and len(set(colors[:4])) == 3  # the three kinds in their colors
    assert len(ax.patches) == 3  # a band over each run of such layers (net.0-net.2 is one run)
    image = plot.png(figure)
    assert image.startswith(b"\x89PNG\r\n\x1a\n")


def test_rows_are_any_objects_with_the_fields():
    rows = [
        SimpleNamespace(
            name="fc",
            kind="Linear",
            mean_abs=0.1,
            max_abs=1.0,
            norm=2.0,
            zero_fraction=0.5,
            finite=True,
            frozen=False,
        ),
        SimpleNamespace(
            name="out",
            kind="Linear",
            mean_abs=0.0,
            max_abs=0.0,
            norm=0.0,
            zero_fraction=1.0,
            finite=True,
            frozen=False,
        ),
    ]
    (ax,) = flow_figure(rows).axes
    assert [t.split("\n")[0] for t in tick_texts(ax)] == ["fc", "out"]
    assert [t.get_text() for t in ax.texts] == ["all zero"]


def test_nothing_plottable_and_no_layers():
    rows = [LayerFlow("a", "Linear", 0.0, 0.0), LayerFlow("b", "Linear", frozen=True)]
    (ax,) = flow_figure(rows).axes
    assert ax.get_yscale() == "log" and sorted(t.get_text() for t in ax.texts) == ["all zero", "frozen"]
    plot.png(ax.figure)
    (empty,) = flow_figure([]).axes
    assert [t.get_text() for t in empty.texts] == ["no layers to show"] and empty.get_yscale() == "log"
    assert plot.png(empty.figure).startswith(b"\x89PNG")


def test_chinese_labels_use_a_cjk_font(broken):
    font = plot.cjk_font()
    if font is None:
        pytest.fail("no CJK font found: install one (apt-get install -y fonts-noto-cjk); CI installs it")
    figure = flow_figure(broken, language="zh")
    (ax,) = figure.axes
    assert figure.get_suptitle() == "梯度流：每层的 |梯度|"
    assert ax.get_ylabel() == "|梯度|（对数刻度）" and ax.get_xlabel() == "层（前向顺序）"
    assert sorted(t.get_text() for t in ax.texts) == ["全为零", "全为零", "含 nan/inf", "已冻结"]
    assert legend_texts(ax)[:3] == ["平均 |梯度|", "最大 |梯度|", "全为零（2 层）"]
    # drawn later, with rcParams that know no CJK font: every text carries its own
    rc = {"font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"]}
    with matplotlib.rc_context(rc), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert plot.png(figure).startswith(b"\x89PNG")
    assert not [str(w.message) for w in caught if "missing from font" in str(w.message)]
    texts = all_texts(figure)
    assert any("梯度" in t.get_text() for t in texts)
    for text in texts:
        if any(ord(c) > 0x2E80 for c in text.get_text()):
            assert text.get_fontfamily()[0] == font, (text.get_text(), text.get_fontfamily())


def test_chinese_without_a_cjk_font_falls_back_to_english(healthy, monkeypatch):
    monkeypatch.setattr(plot, "cjk_font", lambda: None)
    monkeypatch.setattr(plot, "_warned_no_cjk", False)
    notes: list = []
    figure = flow_figure(healthy, language="zh", notes=notes)
    assert figure.get_suptitle() == "Gradient flow: |grad| per layer"
    with using("zh"):
        assert [str(n) for n in notes] and "没有安装中文字体" in str(notes[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph would warn here
        plot.png(figure)


def test_readable_opaque_and_no_state_left_behind(broken):
    import matplotlib.pyplot as plt

    before = (dict(matplotlib.rcParams), plt.get_fignums())
    figure = flow_figure(broken)
    image = plot.png(figure)
    assert (dict(matplotlib.rcParams), plt.get_fignums()) == before  # no pyplot figure, rcParams as they were
    pixels = matplotlib.image.imread(io.BytesIO(image))
    assert pixels.shape[-1] == 3 or np.all(pixels[..., 3] == 1)  # opaque
    assert np.all(pixels[0, 0, :3] == 1) and figure.get_facecolor() == (1, 1, 1, 1)
    assert pixels.shape[1] <= 900  # a notebook's width
    for text in all_texts(figure):
        assert text.get_fontsize() >= 10, text.get_text()


def test_flow_figure_does_not_import_pyplot():
    code = (
        "import sys\n"
        "from torchgrad_magic.render.plot import LayerFlow, flow_figure, png\n"
        "png(flow_figure([LayerFlow('a', 'Linear', 0.1, 1.0), LayerFlow('b', 'Linear', 0.0, 0.0)]))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _label_boxes(figure) -> list:
    figure.draw_without_rendering()
    (ax,) = figure.axes
    return [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]


@pytest.mark.parametrize("count", [48, 120, 500])
def test_many_layers_are_all_drawn_and_their_names_thinned(count):
    rows = deep_rows(count)
    rows[7] = LayerFlow(rows[7].name, "Linear", 0.0, 0.0)  # a dead layer is always named
    rows[8] = LayerFlow(rows[8].name, "Linear", 0.0, 0.0)  # (its neighbour too, when there is room)
    figure = flow_figure(rows)
    (ax,) = figure.axes
    mean = next(line for line in ax.get_lines() if line.get_label() == "mean |grad|")
    assert len(mean.get_ydata()) == count  # every layer is drawn
    ticks = [int(t) for t in ax.get_xticks()]
    assert ticks == sorted(ticks) and 7 in ticks and len(ticks) < count
    # the names: in order, without the prefix they all share (said once under the axis)
    names = [r.name.removeprefix("model.encoder.layers.") for r in rows]
    assert tick_texts(ax) == [names[i] for i in ticks]
    assert "names after model.encoder.layers." in ax.get_xlabel()
    step = plot._step(ticks)
    assert f"{count} layers, 1 in {step} named" in ax.get_xlabel()
    boxes = _label_boxes(figure)
    for a, b in itertools.pairwise(boxes):
        assert a.x1 <= b.x0, "tick labels overlap"
    assert all(box.x0 >= 0 and box.x1 <= figure.bbox.width and box.y0 >= 0 for box in boxes)


def test_few_layers_with_long_names_are_turned_and_kept_in_the_figure():
    names = [
        "embed",
        *(f"encoder.layers.0.self_attn.{p}_proj" for p in "qkv"),
        "encoder.layers.0.linear1",
        "head",
    ]
    rows = [LayerFlow(n, "Linear", 0.01 * (i + 1), 0.1 * (i + 1)) for i, n in enumerate(names)]
    figure = flow_figure(rows)
    (ax,) = figure.axes
    texts = tick_texts(ax)
    assert len(texts) == len(rows) and texts[0] == "embed (Linear)" and texts[-1] == "head (Linear)"
    assert all(len(t) <= plot.NAME_CHARS for t in texts)
    assert texts[1].startswith("…") and texts[1].endswith("self_attn.q_proj")
    assert {t.get_rotation() for t in ax.get_xticklabels()} == {90}
    boxes = _label_boxes(figure)
    assert all(box.x0 >= 0 and box.x1 <= figure.bbox.width and box.y0 >= 0 for box in boxes)


def test_tick_plan_and_helpers():
    assert plot._tick_plan(10, 500, [None] * 10) == list(range(10))
    status = [None] * 100
    status[3] = status[4] = "zero"
    plan = plot._tick_plan(100, 180, status)  # room for 10 names
    assert 3 in plan and 4 not in plan and len(plan) <= 10
    assert min(b - a for a, b in itertools.pairwise(plan)) >= 10
    assert plot._common_prefix(["net.0", "net.2"]) == "net."
    assert plot._common_prefix(["m.enc.0.w", "m.enc.1.w"]) == "m.enc."
    assert plot._common_prefix(["a.b", "a.b.c"]) == "a."  # "a.b" is a name, not only a prefix
    assert plot._common_prefix(["a", "a.b"]) == ""
    assert plot._common_prefix(["fc1", "fc2"]) == ""
    assert [plot._power_of_ten(v) for v in (1e-3, 1.0, 10.0, 100.0, 0.0)] == ["10⁻³", "1", "10", "10²", ""]
    assert plot.flow_status(LayerFlow("x", "L", NAN, 1.0)) == "non-finite"
    assert plot.flow_status(LayerFlow("x", "L", 0.1, 1.0, finite=False)) == "non-finite"
    assert plot.flow_status(LayerFlow("x", "L", 0.0, 0.0, frozen=True)) == "frozen"


def test_50_and_500_layers_render():
    # (how fast: benchmarks/run.py --only render; no wall-clock bound here, it fails under load)
    fifty, five_hundred = deep_rows(50), deep_rows(500)
    for row in five_hundred[::37]:
        row.frozen = True
    for rows in (fifty, five_hundred):
        png = plot.png(flow_figure(rows))
        assert png.startswith(b"\x89PNG") and len(png) > 10_000


MODEL = (
    "import torch\ntorch.manual_seed(0)\n"
    "net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))\n"
)
TRAIN = "loss = ((net(torch.randn(16, 4)) - 1) ** 2).mean()\nloss.backward()"


def _flow_words(figure) -> tuple:
    (ax,) = figure.axes
    return figure.get_suptitle(), ax.get_xlabel(), ax.get_ylabel(), legend_texts(ax)


def _catalogue(language: str) -> tuple:
    words = {key: MESSAGES[f"flow.{key}"][language] for key in ("title", "xlabel", "ylabel", "mean", "max")}
    return words["title"], words["xlabel"], words["ylabel"], [words["mean"], words["max"]]


def test_flow_words_are_the_catalogues_in_the_cells_language(shell):
    """The picture's words live in messages.MESSAGES (flow.*), and a cell's figure is in its language:
    --lang zh and %config GradMagic.language = 'zh' both give the Chinese words, in a CJK font."""
    font = plot.cjk_font()
    if font is None:
        pytest.fail("no CJK font found: install one (apt-get install -y fonts-noto-cjk); CI installs it")
    assert not hasattr(plot, "FLOW_LABELS")  # one catalogue
    shell.run_cell(MODEL)
    assert shell.run_cell(f"%%grad --plot --out r -q\n{TRAIN}").success
    assert _flow_words(shell.user_ns["r"].figure) == _catalogue("en")
    assert shell.run_cell(f"%%grad --plot --lang zh --out r -q\n{TRAIN}").success
    assert _flow_words(shell.user_ns["r"].figure) == _catalogue("zh")
    try:
        shell.run_cell("%config GradMagic.language = 'zh'")
        assert shell.run_cell(f"%%grad --plot --out r -q\n{TRAIN}").success
    finally:
        shell.run_cell("%config GradMagic.language = 'auto'")
    figure = shell.user_ns["r"].figure
    assert _flow_words(figure) == _catalogue("zh") and _catalogue("zh") != _catalogue("en")
    assert figure.get_suptitle() == "梯度流：每层的 |梯度|"
    texts = all_texts(figure)
    assert all(t.get_fontfamily()[0] == font for t in texts if any(ord(c) > 0x2E80 for c in t.get_text()))
    with using("en"):  # the language is the one passed, not the one in use when it is made
        assert _flow_words(flow_figure(mlp_rows(shell.user_ns["net"]), language="zh")) == _catalogue("zh")
