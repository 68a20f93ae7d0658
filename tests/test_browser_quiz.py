"""The quiz worksheet as a learner opens it: UNTRUSTED in JupyterLab, in Chromium.

No answer is visible until its ``<summary>`` is clicked; clicked, the answer reads 18. The server,
the browser and the themes are test_browser.py's (Debian's ``chromium``, never
``playwright install``); screenshots go to ``build/screenshots/quiz-*.png``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import run_demo  # examples/, on sys.path via conftest
from test_browser import (
    CHROMIUM,
    LAB_NOTEBOOK,
    THEMES,
    fit_viewport,
    lab_over,
    new_context,
    set_theme,
    shoot,
    unsigned,
)

ROOT = Path(__file__).resolve().parents[1]
WORKSHEET = "quiz.ipynb"
FIRST_QUIZ = f"{LAB_NOTEBOOK} .jp-OutputArea-output:has(.torchgrad-quiz)"
ANSWER = "18 (the cell called no backward()"  # the first quiz's answer to dy/dx = ?


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    def write(root: Path) -> nbformat.NotebookNode:  # (while the server boots)
        return unsigned(run_demo.execute(ROOT / "examples" / WORKSHEET), root / WORKSHEET)

    with lab_over(tmp_path_factory.mktemp("browser-quiz"), write) as (server, _):
        yield server


def test_a_reveal_opens_on_click_in_untrusted_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"],
        )
        context = new_context(browser)
        try:
            page = context.new_page()
            page.goto(f"{lab.url}/lab/workspaces/quiz/tree/{WORKSHEET}?token={lab.token}")
            page.wait_for_function(
                "(sel) => window.jupyterapp && document.querySelector(sel)", arg=FIRST_QUIZ
            )
            trusted = page.evaluate(
                """() => window.jupyterapp.shell.currentWidget.content.widgets
                    .filter(c => c.model.type === 'code' && c.model.trusted).length"""
            )
            assert trusted == 0, "the worksheet opened trusted; the test needs untrusted"
            check_closed_then_open(page)
        finally:
            context.close()
            browser.close()


def check_closed_then_open(page) -> None:
    """Both themes: no answer shown, reveals kept by the sanitizer; one click shows 18."""
    quiz = page.locator(FIRST_QUIZ).first
    reveals = quiz.locator("details")
    assert reveals.count() == 5  # four questions and the whole report
    for theme, theme_name in THEMES.items():
        set_theme(page, theme_name)
        fit_viewport(page)
        shoot(page, f"quiz-lab-en-{theme}-closed")
        assert not any(reveals.nth(k).evaluate("d => d.open") for k in range(reveals.count()))
        assert ANSWER not in quiz.inner_text() and "18" not in quiz.inner_text()
        assert not page.get_by_text(ANSWER).first.is_visible()
    third = reveals.nth(2)  # "dy/dx = ? (at x = 3)"
    third.locator("summary").click()
    page.wait_for_function("(d) => d.open", arg=third.element_handle())
    assert third.inner_text().split("\n")[-1].startswith(ANSWER)
    assert page.get_by_text(ANSWER).first.is_visible()
    assert not reveals.nth(3).evaluate("d => d.open")  # the others stay closed
    shoot(page, f"quiz-lab-en-{theme}-open")
    set_theme(page, THEMES["light"])
    fit_viewport(page)
    quiz.scroll_into_view_if_needed()
    shoot(page, "quiz-lab-en-light-open")
