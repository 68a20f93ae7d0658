"""The example notebooks as a learner sees them: in JupyterLab and as nbconvert's HTML, in Chromium.

The executed notebooks are opened UNTRUSTED (never signed), as a student opens a teacher's file:
JupyterLab then sanitizes HTML (no SVG inside it) and prefers safe mime types (PNG over SVG).
Needs Debian's ``chromium`` and ``fonts-noto-cjk`` (``.ci/run`` installs them; never
``playwright install``). Screenshots go to ``build/screenshots/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
import run_demo  # examples/, on sys.path via conftest

ROOT = Path(__file__).resolve().parents[1]
MEASURE_JS = (Path(__file__).parent / "browser" / "measure.js").read_text(encoding="utf-8")
SHOTS = ROOT / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = "apt-get install -y --no-install-recommends chromium fonts-noto-cjk (.ci/run does this)"

NOTEBOOKS = {"en": "tutorial.ipynb", "zh": "tutorial.zh.ipynb"}
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
IMAGE_MIMES = ("image/svg+xml", "image/png")
MIN_CONTRAST = 4.5
TIMEOUT_MS = 90_000

# a fresh user, with nothing a test does not ask for: every cell rendered (no windowing, so the whole
# notebook can be measured and photographed), no news / update pop-ups
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": (
        '{"windowingMode": "none", "scrollPastEnd": false}'
    ),
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": (
        '{"fetchNews": "false", "checkForUpdates": false}'
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A JupyterLab server of our own: its own port, token, root dir, settings and trust database."""

    root: Path
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, home: Path) -> None:
        for rel, text in LAB_SETTINGS.items():
            path = home / "settings" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        env = dict(
            os.environ,
            JUPYTER_CONFIG_DIR=str(home / "config"),
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        )
        args = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            "--allow-root",  # CI runs as root
            f"--ServerApp.root_dir={self.root}",
            "--NotebookNotary.db_file=:memory:",  # nothing is signed: every notebook is untrusted
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, to switch themes
        ]
        self.log = open(home / "lab.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {self.proc.returncode}:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"jupyter lab did not answer on {self.url} within {timeout} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@dataclass
class View:
    """One notebook as rendered in one place and theme, measured from the DOM."""

    name: str
    cells: list[dict]
    cjk: dict
    screenshot: str
    trusted: int | None = None


# ---------------------------------------------------------------------------
# the one fixture: everything is rendered and measured once per test run
# ---------------------------------------------------------------------------
@dataclass
class Rendered:
    executed: dict[str, nbformat.NotebookNode]  # "en"/"zh" -> the executed notebook
    views: dict[str, View]  # "lab-en-light", "html-zh-dark", ...
    timings: dict[str, float]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Rendered:
    """The first xdist worker to get here renders and measures (under a file lock) and writes the
    measurements as JSON; another worker of the same run reads them instead of starting a second
    server and browser (the run's basetemp is shared by its workers)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        work = tmp_path_factory.getbasetemp().parent / "browser"
        work.mkdir(exist_ok=True)
    else:
        work = tmp_path_factory.mktemp("browser")
    result, error = work / "measured.json", work / "error.txt"
    with open(work / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if error.exists():
            pytest.fail(error.read_text(encoding="utf-8"), pytrace=False)
        if not result.exists():
            try:
                data = render_and_measure(work)
            except (Exception, pytest.fail.Exception) as e:
                error.write_text(f"{type(e).__name__}: {e}", encoding="utf-8")
                raise
            result.write_text(json.dumps(data), encoding="utf-8")
    data = json.loads(result.read_text(encoding="utf-8"))
    return Rendered(
        executed={
            lang: nbformat.read(work / "notebooks" / name, as_version=4) for lang, name in NOTEBOOKS.items()
        },
        views={name: View(**view) for name, view in data["views"].items()},
        timings=data["timings"],
    )


def render_and_measure(work: Path) -> dict:
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: the browser tests need {INSTALL_HINT}")
    timings = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    lab = Lab(root=work / "notebooks")
    lab.root.mkdir()
    lab.start(work / "home")  # boots while the notebooks run
    try:
        executed = execute_notebooks(lab.root)
        lap("execute")
        exports = export_html(lab.root, work)
        lap("nbconvert")
        lab.wait_ready()
        lap("lab ready")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                # no sandbox as root; no host but this one: nothing (fonts, MathJax) comes from the network
                args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"],
            )
            try:
                views = measure_lab(browser, lab, executed)
                lap("lab views")
                views |= measure_html(browser, exports, executed)
                lap("html views")
            finally:
                browser.close()
    finally:
        lab.stop()
    return {"views": {name: asdict(view) for name, view in views.items()}, "timings": timings}


def execute_notebooks(root: Path) -> dict[str, nbformat.NotebookNode]:
    """The examples, executed in the torchgrad-magic kernel and written UNSIGNED into *root*."""
    notebooks = {}
    for lang, name in NOTEBOOKS.items():
        notebooks[lang] = unsigned(run_demo.execute(ROOT / "examples" / name), root / name)
    return notebooks


def unsigned(nb: nbformat.NotebookNode, path: Path) -> nbformat.NotebookNode:
    """*nb* written to *path* for the torchgrad-magic kernel, never signed (so: untrusted)."""
    nb.metadata["kernelspec"] = {
        "name": run_demo.ensure_kernelspec(),
        "display_name": "Python (torchgrad-magic)",
        "language": "python",
    }
    nbformat.write(nb, path)  # nbformat.write never signs
    return nb


@contextlib.contextmanager
def lab_over(work: Path, write: Any) -> Iterator[tuple[Lab, Any]]:
    """A JupyterLab server over ``work/notebooks``; ``write(root)`` puts the notebooks there while
    it boots. Fails (not skips) without Debian's chromium."""
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: the browser tests need {INSTALL_HINT}")
    server = Lab(root=work / "notebooks")
    server.root.mkdir()
    server.start(work / "home")
    try:
        written = write(server.root)
        server.wait_ready()
        yield server, written
    finally:
        server.stop()


def export_html(root: Path, work: Path) -> dict[tuple[str, str], Path]:
    """nbconvert's HTML of the executed notebooks, light and dark theme."""
    paths = [str(root / name) for name in NOTEBOOKS.values()]
    jobs = {
        theme: subprocess.Popen(
            [
                *(sys.executable, "-m", "jupyter", "nbconvert", "--to", "html"),
                *(f"--HTMLExporter.theme={theme}", "--output-dir", str(work / f"html-{theme}"), *paths),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for theme in THEMES
    }
    for theme, job in jobs.items():
        out = job.communicate(timeout=120)[0].decode(errors="replace")
        assert job.returncode == 0, f"nbconvert --to html ({theme}) failed:\n{out}"
    return {
        (lang, theme): work / f"html-{theme}" / name.replace(".ipynb", ".html")
        for lang, name in NOTEBOOKS.items()
        for theme in THEMES
    }


def rendered_outputs(nb: nbformat.NotebookNode) -> int:
    """How many output areas the notebook's outputs make (consecutive streams of a kind merge)."""
    count = 0
    for cell in nb.cells:
        previous = None
        for out in cell.get("outputs", []):
            key = ("stream", out.get("name")) if out.output_type == "stream" else None
            count += key is None or key != previous
            previous = key
    return count


def shoot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    part = path.with_suffix(f".{os.getpid()}.part.png")
    page.screenshot(path=str(part), full_page=True)
    part.replace(path)  # whole files only, also with several workers
    return path


def measure(page, root: str, nb: nbformat.NotebookNode, name: str, fit=None) -> View:
    page.wait_for_function(
        """([root, n]) => {
            const r = document.querySelector(root);
            return r && r.querySelectorAll('.jp-OutputArea-output').length >= n
                && [...r.querySelectorAll('.jp-OutputArea-output img')].every(i => i.complete);
        }""",
        arg=[root, rendered_outputs(nb)],
    )
    if fit:
        fit(page)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    data = page.evaluate(MEASURE_JS, root)
    assert "error" not in data, data.get("error")
    assert len(data["cells"]) == len(nb.cells), f"{name}: {len(data['cells'])} cells shown of {len(nb.cells)}"
    return View(name, data["cells"], data["cjk"], str(shoot(page, name)))


LAB_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"


def fit_viewport(page) -> None:
    """Make the window as tall as the notebook, so one screenshot shows it all."""
    for _ in range(4):
        extra = page.evaluate(
            """(sel) => {
                const nb = document.querySelector(sel);
                const scroller = nb.querySelector('.jp-WindowedPanel-outer') || nb;
                return Math.max(0, scroller.scrollHeight - scroller.clientHeight);
            }""",
            LAB_NOTEBOOK,
        )
        if not extra:
            return
        size = page.viewport_size
        page.set_viewport_size({"width": size["width"], "height": min(size["height"] + extra, 30_000)})
        page.wait_for_timeout(200)


def set_theme(page, theme: str) -> None:
    page.evaluate(
        """async (theme) => {
            if (document.body.dataset.jpThemeName !== theme)
                await window.jupyterapp.commands.execute('apputils:change-theme', {theme});
        }""",
        theme,
    )
    page.wait_for_function("(t) => document.body.dataset.jpThemeName === t", arg=theme)
    page.wait_for_timeout(300)  # the theme's stylesheet applied


def new_context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(TIMEOUT_MS)
    return context


def measure_lab(browser, lab: Lab, executed) -> dict[str, View]:
    """Each notebook opened in JupyterLab, light and dark: 'lab-en-light', ..."""
    views = {}
    context = new_context(browser)
    try:
        for lang, name in NOTEBOOKS.items():
            page = context.new_page()
            page.goto(f"{lab.url}/lab/workspaces/test-{lang}/tree/{name}?token={lab.token}")
            page.wait_for_function(
                "(sel) => window.jupyterapp && document.querySelector(sel)", arg=LAB_NOTEBOOK
            )
            for theme, theme_name in THEMES.items():
                set_theme(page, theme_name)
                view = measure(page, LAB_NOTEBOOK, executed[lang], f"lab-{lang}-{theme}", fit=fit_viewport)
                view.trusted = page.evaluate(
                    """() => window.jupyterapp.shell.currentWidget.content.widgets
                        .filter(c => c.model.type === 'code' && c.model.trusted).length"""
                )
                assert view.trusted == 0, (
                    f"{view.name}: the notebook opened trusted; the test needs untrusted"
                )
                views[view.name] = view
            set_theme(page, THEMES["light"])
            page.close()
    finally:
        context.close()
    return views


def measure_html(browser, exports, executed) -> dict[str, View]:
    """nbconvert's HTML opened from file://: 'html-en-light', ..."""
    views = {}
    context = new_context(browser)
    try:
        for (lang, theme), path in exports.items():
            page = context.new_page()
            page.goto(path.as_uri())
            views[f"html-{lang}-{theme}"] = measure(page, "body", executed[lang], f"html-{lang}-{theme}")
            page.close()
    finally:
        context.close()
    return views


# ---------------------------------------------------------------------------
# what the notebook asks for
# ---------------------------------------------------------------------------
def code_cells(nb: nbformat.NotebookNode, flag: str):
    for i, cell in enumerate(nb.cells):
        first = cell.source.splitlines()[0] if cell.source else ""
        if cell.cell_type == "code" and first.startswith("%%grad") and re.search(rf"\s{flag}\b", first):
            yield i, first


def shown_images(out: dict) -> list[dict]:
    return [
        img
        for img in out["images"]
        if img["shown"]
        and img["w"] > 20
        and img["h"] > 20
        and (img["natural"] is None or min(img["natural"]) > 0)
    ]


PLACES = [(where, lang) for where in ("lab", "html") for lang in NOTEBOOKS]
ALL_VIEWS = [f"{where}-{lang}-{theme}" for where, lang in PLACES for theme in THEMES]


@pytest.mark.parametrize(("where", "lang"), PLACES)
def test_graph_is_an_image(rendered, where, lang):
    """(a) --graph draws the graph as an image, not as text (SVG inside HTML is stripped when untrusted)."""
    view = rendered.views[f"{where}-{lang}-light"]
    graph_cells = list(code_cells(rendered.executed[lang], "--graph"))
    assert graph_cells, "the notebook has --graph cells"
    problems = []
    for i, line in graph_cells:
        outputs = view.cells[i]["outputs"]
        images = [o for o in outputs if o["mime"] in IMAGE_MIMES and shown_images(o)]
        if not images:
            problems.append(f"cell {i} `{line}`: no output renders as an image (image/svg+xml or image/png)")
        for o in outputs:
            if o in images:
                continue
            if o["mime"] == "text/html" and o["tables"]:  # the report
                if "AccumulateGrad" in o["text"]:
                    problems.append(f"cell {i} `{line}`: the graph is run-together text in the report")
                continue
            problems.append(f"cell {i} `{line}`: an output renders as {o['mime']}: {o['text'][:100]!r}")
    assert not problems, f"{view.name} ({view.screenshot}):\n" + "\n".join(problems)


@pytest.mark.parametrize("name", ALL_VIEWS)
def test_report_tables_are_visible(rendered, name):
    """(b) every report table is shown, with a nonzero size."""
    view = rendered.views[name]
    lang = name.split("-")[1]
    expected = sum(
        out.data["text/html"].count("<table")
        for cell in rendered.executed[lang].cells
        for out in cell.get("outputs", [])
        if "text/html" in out.get("data", {})
    )
    tables = [(i, t) for i, cell in enumerate(view.cells) for o in cell["outputs"] for t in o["tables"]]
    assert expected > 0
    assert len(tables) >= expected, f"{name}: {len(tables)} report tables shown, the outputs have {expected}"
    hidden = [
        f"cell {i}: {t}" for i, t in tables if not (t["shown"] and t["w"] > 0 and t["h"] > 0 and t["cells"])
    ]
    assert not hidden, f"{name} ({view.screenshot}): tables not visible:\n" + "\n".join(hidden)


@pytest.mark.parametrize("name", ALL_VIEWS)
def test_table_rows_are_one_line_each(rendered, name):
    """No report table cell wraps (JupyterLab's code style once beat the cell's nowrap and broke rows
    apart, worst in the dark theme): each row is one line, as in the text table."""
    view = rendered.views[name]
    tables = [(i, t) for i, cell in enumerate(view.cells) for o in cell["outputs"] for t in o["tables"]]
    assert tables
    wrapped = [f"cell {i}: {cell!r}" for i, t in tables for cell in t["wrapped"]]
    assert not wrapped, f"{name} ({view.screenshot}): cells on more than one line:\n" + "\n".join(wrapped)


@pytest.mark.parametrize(("where", "lang"), PLACES)
def test_plots_are_images(rendered, where, lang):
    """(c) --plot draws a picture under the table."""
    view = rendered.views[f"{where}-{lang}-light"]
    plot_cells = list(code_cells(rendered.executed[lang], "--plot"))
    assert plot_cells, "the notebook has --plot cells"
    problems = []
    for i, line in plot_cells:
        outputs = view.cells[i]["outputs"]
        images = [img for o in outputs if o["mime"] in IMAGE_MIMES for img in shown_images(o)]
        if not any(img["w"] >= 200 and img["h"] >= 100 for img in images):
            shown = [(o["mime"], o["text"][:60]) for o in outputs]
            problems.append(f"cell {i} `{line}`: no plot image; outputs: {shown}")
    assert not problems, f"{view.name} ({view.screenshot}):\n" + "\n".join(problems)


@pytest.mark.parametrize("name", ALL_VIEWS)
def test_report_text_contrast(rendered, name):
    """(d) the report's table cells and notes are readable (WCAG AA, 4.5:1) in light and dark themes."""
    view = rendered.views[name]
    texts = [(i, t) for i, cell in enumerate(view.cells) for o in cell["outputs"] for t in o["texts"]]
    kinds = {t["kind"] for _, t in texts}
    assert {"table cell", "note"} <= kinds, f"{name}: measured only {kinds}"
    low = [
        f"cell {i}: {t['kind']} <{t['tag']}> {t['text']!r}: {t['ratio']}:1 "
        f"(text {t['color']} -> rgb{tuple(t['fg'][:3])} on rgb{tuple(t['bg'][:3])})"
        for i, t in texts
        if t["ratio"] < MIN_CONTRAST
    ]
    assert not low, (
        f"{name} ({view.screenshot}): {len(low)} of {len(texts)} texts below {MIN_CONTRAST}:1, e.g.\n"
        + "\n".join(low[:8])
    )


@pytest.mark.parametrize("where", ["lab", "html"])
def test_chinese_report_has_no_tofu(rendered, where):
    """(e) every Chinese character of the zh notebook's outputs is drawn with a real glyph."""
    view = rendered.views[f"{where}-zh-light"]
    cjk = view.cjk
    assert len(cjk["chars"]) >= 20, (
        f"{view.name}: only {cjk['chars']!r} Chinese characters found in the outputs"
    )
    assert not cjk["blank"], f"{view.name}: drawn as nothing: {cjk['blank']!r} (install {INSTALL_HINT})"
    assert not cjk["drawnAlike"], (
        f"{view.name}: different characters drawn as the same box (tofu): {cjk['drawnAlike'][:5]} "
        f"(install {INSTALL_HINT})"
    )


def test_chinese_plot_labels(rendered):
    """(e) the zh plots' labels are Chinese, in a font that has them (no tofu in the PNG)."""
    zh, en = rendered.executed["zh"], rendered.executed["en"]
    problems = []
    for i, cell in enumerate(zh.cells):
        for out in cell.get("outputs", []):
            text = (
                out.get("text", "")
                + out.get("data", {}).get("text/plain", "")
                + out.get("data", {}).get("text/html", "")
            )
            if re.search(r"Glyph \d+ .*missing from font", text):
                problems.append(f"cell {i}: matplotlib drew tofu: {text.strip()[:160]!r}")
            if "没有安装中文字体" in text or "no Chinese font" in text:
                problems.append(f"cell {i}: {re.sub('<[^>]+>', '', text).strip()[-120:]!r}")
    english = {c.source: c for c in en.cells if c.cell_type == "code"}
    plots = list(code_cells(zh, "--plot"))
    assert plots
    for i, line in plots:
        png = [o.data["image/png"] for o in zh.cells[i].outputs if "image/png" in o.get("data", {})]
        twin = english.get(zh.cells[i].source)
        en_png = (
            [o.data["image/png"] for o in twin.outputs if "image/png" in o.get("data", {})] if twin else []
        )
        if not png:
            problems.append(f"cell {i} `{line}`: no PNG")
        elif png == en_png:
            problems.append(
                f"cell {i} `{line}`: the PNG is the English notebook's, byte for byte (labels not Chinese)"
            )
    assert not problems, "\n".join(problems)
