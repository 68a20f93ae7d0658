"""``--explore`` as a learner uses it: the executed tutorial opened UNTRUSTED in JupyterLab, the slider
of ``y = x ** 3`` moved from 1 to 2, and dy/dx read off the page (3, then 12), in the light and the
dark theme. JupyterLab draws ``application/vnd.vegalite.v5+json`` itself (its renderer is marked
safe), so the chart and its slider work without trust. Screenshots go to ``build/screenshots/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import run_demo  # examples/, on sys.path via conftest
from test_browser import (
    CHROMIUM,
    LAB_NOTEBOOK,
    MIN_CONTRAST,
    ROOT,
    SHOTS,
    THEMES,
    Lab,
    lab_over,
    new_context,
    set_theme,
    unsigned,
)

CELL = "%%grad --wrt x=1 --explore\ny = x ** 3"
NOTEBOOKS = {"en": "tutorial.ipynb", "zh": "tutorial.zh.ipynb"}
VEGA = ".jp-RenderedVegaLite"
HEADLINE = re.compile(r"dy/dx = (-?[\d.]+)")


def explorer_cell(nb: nbformat.NotebookNode) -> int:
    (index,) = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip() == CELL]
    return index


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    def write(root):
        return {
            lang: unsigned(run_demo.execute(ROOT / "examples" / name), root / name)
            for lang, name in NOTEBOOKS.items()
        }

    with lab_over(tmp_path_factory.mktemp("explore"), write) as (server, executed):
        yield server, executed


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"],
        )
        yield chromium
        chromium.close()


def marked_cell(page, index: int):
    """Cell *index* of the open notebook, scrolled into view: its own node, as JupyterLab's notebook
    widget holds it, marked for the locator (a list index in the DOM was once seen on another cell
    while the notebook was still laying itself out)."""
    page.evaluate(
        """(i) => {
            const node = window.jupyterapp.shell.currentWidget.content.widgets[i].node;
            node.setAttribute('data-test-cell', String(i));
            node.scrollIntoView({block: 'start'});
        }""",
        index,
    )
    cell = page.locator(f'{LAB_NOTEBOOK} .jp-Cell[data-test-cell="{index}"]')
    cell.scroll_into_view_if_needed()
    return cell


def headline(chart) -> str:
    """The chart's title as drawn (SVG text: vega-embed's svg renderer)."""
    return " ".join(chart.locator("svg text").all_text_contents())


TABLE_ROWS_JS = """(el) => {
    const column = (key) => [...el.querySelectorAll(`svg g.table_${key}_group g.role-axis-label text`)]
        .map((t) => t.textContent);
    const [names, data, grad] = ["name", "data", "grad"].map(column);
    return names.map((name, r) => [name, data[r], grad[r]]);
}"""


def table_rows(chart) -> dict[str, list[str]]:
    """The table panel as drawn: a column a view, its cells its y axis's labels (top to bottom), by
    row name (``name: [data, grad]``)."""
    return {name: [data, grad] for name, data, grad in chart.evaluate(TABLE_ROWS_JS)}


def open_notebook(page, lab: Lab, name: str, theme: str) -> None:
    """Open *name* in *theme*; reloaded after switching, so the chart is drawn in that theme (JupyterLab's
    renderer reads the theme when it draws)."""
    workspace = "explore-" + name.replace(".", "-")  # (one shared workspace reopened the last notebook too)
    url = f"{lab.url}/lab/workspaces/{workspace}/tree/{name}?token={lab.token}"
    shown = "(n) => window.jupyterapp?.shell?.currentWidget?.context?.path === n"  # this notebook in front
    page.goto(url)
    page.wait_for_function("(sel) => window.jupyterapp && document.querySelector(sel)", arg=LAB_NOTEBOOK)
    if page.evaluate("() => document.body.dataset.jpThemeName") != theme:
        set_theme(page, theme)
        page.goto(url)
        page.wait_for_function("(sel) => window.jupyterapp && document.querySelector(sel)", arg=LAB_NOTEBOOK)
        page.wait_for_function("(t) => document.body.dataset.jpThemeName === t", arg=theme)
    page.wait_for_function(shown, arg=name)


@pytest.mark.parametrize(
    ("lang", "theme"), [("en", "light"), ("en", "dark"), ("zh", "light"), ("zh", "dark")]
)
def test_moving_the_slider_moves_the_tangent(lab, browser, lang, theme):
    server, executed = lab
    context = new_context(browser)
    try:
        page = context.new_page()
        open_notebook(page, server, NOTEBOOKS[lang], THEMES[theme])
        index = explorer_cell(executed[lang])
        page.wait_for_function(
            "(i) => (window.jupyterapp.shell.currentWidget?.content?.widgets?.length ?? 0) > i", arg=index
        )
        trusted = page.evaluate(
            "(i) => window.jupyterapp.shell.currentWidget.content.widgets[i].model.trusted", index
        )
        assert trusted is False, "the notebook opened trusted; the test needs untrusted"
        cell = marked_cell(page, index)
        chart = cell.locator(VEGA)
        chart.locator("svg text").first.wait_for()
        assert HEADLINE.search(headline(chart)).group(1) == "3", headline(chart)
        assert table_rows(chart) == {"x": ["1", "3"], "y": ["1", "1"]}, table_rows(chart)
        point = chart.locator("svg path[aria-roledescription='point'], svg .mark-symbol path").first
        before = point.get_attribute("transform")
        slider = chart.locator("input[type=range]")
        assert slider.count() == 1 and float(slider.input_value()) == pytest.approx(1)
        slider.fill("2")  # as dragging does: the value set, then input and change events
        page.wait_for_function(
            "(el) => /dy\\/dx = 12\\b/.test([...el.querySelectorAll('svg text')].map(t => t.textContent).join(' '))",
            arg=chart.element_handle(),
        )
        assert HEADLINE.search(headline(chart)).group(1) == "12"
        assert point.get_attribute("transform") != before  # the point moved along the curve
        assert re.search(r"y = 8\b", headline(chart)), headline(chart)
        page.wait_for_function(  # the table's y row follows the slider too: 1 -> 8
            f"(el) => ({TABLE_ROWS_JS})(el).flat().join(' ') === 'x 2 12 y 8 1'", arg=chart.element_handle()
        )
        assert table_rows(chart) == {"x": ["2", "12"], "y": ["8", "1"]}, table_rows(chart)
        titles = " ".join(chart.locator("svg text").all_text_contents())
        assert all(
            word in titles
            for word in (("张量", "data", "dy/d…") if lang == "zh" else ("tensor", "data", "dy/d…"))
        )
        if lang == "zh":
            assert "在 x = 2 处" in headline(chart) and "拖动滑块" in headline(chart)
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / f"explore-{lang}-{theme}.png"
        cell.screenshot(path=str(shot))
        assert Path(shot).stat().st_size > 1000
    finally:
        context.close()


TABLE_COLOURS_JS = """(el) => {
    const rgb = (css) => (css.match(/[\\d.]+/g) || []).map(Number);
    let background = [255, 255, 255];  // (the page behind everything)
    for (let e = el.querySelector("svg"); e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || c[3] > 0) { background = c.slice(0, 3); break; }
    }
    const texts = [...el.querySelectorAll("svg g.table_group text")].filter((t) => t.textContent.trim());
    return {background, texts: texts.map((t) => [t.textContent, rgb(getComputedStyle(t).fill).slice(0, 3)])};
}"""
TABLE_EDGES_JS = """(el) => {
    const left = el.querySelector("svg").getBoundingClientRect().left;
    const edges = (key) => [...el.querySelectorAll(`svg g.table_${key}_group text`)]
        .filter((t) => t.textContent.trim()).map((t) => Math.round(t.getBoundingClientRect().right - left));
    return ["name", "data", "grad"].map(edges);
}"""


def contrast(fg: list[float], bg: list[float]) -> float:
    """WCAG's contrast ratio of two sRGB colours (0-255)."""

    def luminance(rgb: list[float]) -> float:
        lin = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def unreadable_table_texts(chart) -> list[tuple[str, list[float], float]]:
    """The table's texts (headers and cells) whose fill is below MIN_CONTRAST on the chart's background."""
    found = chart.evaluate(TABLE_COLOURS_JS)
    assert len(found["texts"]) >= 9, found  # three headers, two rows of three cells
    ratios = [(text, fill, round(contrast(fill, found["background"]), 2)) for text, fill in found["texts"]]
    return [r for r in ratios if r[2] < MIN_CONTRAST]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_table_numbers_are_readable_in_the_theme(lab, browser, theme):
    """The table's cells take the theme's colour like its headers (JupyterLab Dark draws the chart on
    #333: black numbers there were 1.7:1), before and after the slider moves; each column's header and
    numbers right-aligned on one edge, which stays put as the numbers change length."""
    server, executed = lab
    context = new_context(browser)
    try:
        page = context.new_page()
        open_notebook(page, server, NOTEBOOKS["en"], THEMES[theme])
        index = explorer_cell(executed["en"])
        page.wait_for_function(
            "(i) => (window.jupyterapp.shell.currentWidget?.content?.widgets?.length ?? 0) > i", arg=index
        )
        cell = marked_cell(page, index)
        chart = cell.locator(VEGA)
        chart.locator("svg g.table_group text").first.wait_for()
        assert unreadable_table_texts(chart) == [], theme
        edges = chart.evaluate(TABLE_EDGES_JS)
        assert [len(column) for column in edges] == [3, 3, 3], edges  # a header and two rows a column
        assert all(len(set(column)) == 1 for column in edges), edges  # right-aligned, header included
        chart.locator("input[type=range]").fill("-0.9")  # longer numbers: y = -0.729, dy/dx = 2.43
        page.wait_for_function(
            f"(el) => ({TABLE_ROWS_JS})(el).flat().join(' ') === 'x -0.9 2.43 y -0.729 1'",
            arg=chart.element_handle(),
        )
        assert unreadable_table_texts(chart) == [], theme
        assert chart.evaluate(TABLE_EDGES_JS) == edges  # the same edges: nothing moved
        SHOTS.mkdir(parents=True, exist_ok=True)
        chart.locator("svg").screenshot(path=str(SHOTS / f"explore-table-{theme}.png"))
    finally:
        context.close()


GRAPH_CELL = "%%grad --wrt x=2 --explore --graph\nh = x ** 2\ny = 3 * h"


@pytest.fixture(scope="module")
def graph_lab(tmp_path_factory):
    """A one-cell notebook (``--explore --graph``), executed, opened untrusted."""

    def write(root):
        source = tmp_path_factory.mktemp("graph-source") / "graph.ipynb"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(GRAPH_CELL)])
        nb.cells.insert(0, nbformat.v4.new_code_cell("%load_ext torchgrad_magic"))
        nbformat.write(nb, source)
        return unsigned(run_demo.execute(source), root / "graph.ipynb")

    with lab_over(tmp_path_factory.mktemp("explore-graph"), write) as (server, executed):
        yield server, executed


def texts(chart) -> list[str]:
    return chart.locator("svg text").all_text_contents()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_graph_nodes_follow_the_slider(graph_lab, browser, theme):
    server, _ = graph_lab
    context = new_context(browser)
    try:
        page = context.new_page()
        open_notebook(page, server, "graph.ipynb", THEMES[theme])
        page.wait_for_function(
            "() => (window.jupyterapp.shell.currentWidget?.content?.widgets?.length ?? 0) > 1"
        )
        cell = marked_cell(page, 1)
        chart = cell.locator(VEGA)
        chart.locator("svg text").first.wait_for()
        shown = texts(chart)
        assert {"h (PowBackward0)", "data 4", "grad 3", "grad 12"} <= set(shown), shown
        chart.locator("input[type=range]").fill("3")
        page.wait_for_function(  # h: 9 (grad 3), x: grad dy/dx = 18
            "(el) => { const t = [...el.querySelectorAll('svg text')].map(t => t.textContent);"
            " return t.includes('data 9') && t.includes('grad 18'); }",
            arg=chart.element_handle(),
        )
        assert "grad 12" not in texts(chart)
        SHOTS.mkdir(parents=True, exist_ok=True)
        cell.screenshot(path=str(SHOTS / f"explore-graph-{theme}.png"))
    finally:
        context.close()
