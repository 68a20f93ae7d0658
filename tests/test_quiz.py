"""``--quiz``: the report as questions, every answer hidden in a reveal (``<details>`` in HTML, under
the heading "Answers" in text), each answer the run's own number, checked against autograd."""

from __future__ import annotations

import html as htmllib
import re
from pathlib import Path

import nbformat
import pytest
import run_demo  # examples/, on sys.path via conftest
import torch
from IPython.utils.capture import capture_output

from torchgrad_magic import grad

EXAMPLES = Path(__file__).parents[1] / "examples"
QUIZ_NOTEBOOKS = [EXAMPLES / "quiz.ipynb", EXAMPLES / "quiz.zh.ipynb"]
DETAILS = re.compile(r"<details>(?:(?!<details>).)*?</details>", re.S)
SEED = "y = 3 * x ** 2"
SEED_BACKWARD = "y = 3 * x ** 2\ny.backward()"
DETACH = "y = x ** 2\nz = y.detach()\nw = z * x\nw.backward()"
LOOP = "for i in range(3):\n    y = 3 * x ** 2\n    y.backward()"


# ---------------------------------------------------------------------------
# oracles: autograd by hand, the way the seed tutorial writes it
# ---------------------------------------------------------------------------
def seed_grad() -> float:
    x = torch.tensor(3.0, requires_grad=True)
    (g,) = torch.autograd.grad(3 * x**2, x)
    return g.item()


def accumulated(calls: int) -> float:
    """x.grad after *calls* forward-and-backward passes of the seed on one x, never zeroed."""
    x = torch.tensor(3.0, requires_grad=True)
    for _ in range(calls):
        (3 * x**2).backward()
    assert x.grad is not None
    return x.grad.item()


def detach_grad() -> float:
    x = torch.tensor(3.0, requires_grad=True)
    (g,) = torch.autograd.grad((x**2).detach() * x, x)
    return g.item()


# ---------------------------------------------------------------------------
# what a reader sees before opening anything
# ---------------------------------------------------------------------------
def split_html(markup: str) -> tuple[str, list[str]]:
    """(the text outside every reveal, the text inside each reveal), tags stripped."""
    inside: list[str] = []
    while True:
        found = DETAILS.findall(markup)  # innermost reveals first
        if not found:
            break
        inside += [_plain(f) for f in found]
        markup = DETAILS.sub(" ", markup)
    return _plain(markup), inside


def _plain(markup: str) -> str:
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", markup)).replace("\u2060", "").replace("\xa0", " ")


def split_text(text: str, heading: str = "Answers") -> tuple[str, str]:
    before, found, after = text.partition(f"\n{heading}\n")
    assert found, f"no heading {heading!r} in:\n{text}"
    return before, after


def number_in(text: str, value: float) -> bool:
    number = f"{value:g}"
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d.])", text) is not None


def assert_hidden(markup: str, text: str, answers: list[float], heading: str = "Answers") -> None:
    """Each number in *answers* is in a reveal (HTML) and after the heading (text), nowhere before."""
    outside, inside = split_html(markup)
    before, after = split_text(text, heading)
    for value in answers:
        assert not number_in(outside, value), f"{value:g} shows outside a reveal: {outside!r}"
        assert any(number_in(part, value) for part in inside), f"{value:g} is in no reveal"
        assert not number_in(before, value), f"{value:g} shows before the answers: {before!r}"
        assert number_in(after, value), f"{value:g} is not among the answers"


def assert_every_answer_revealed(quiz) -> None:
    """Every question's answer, word for word, inside a reveal and under the heading."""
    _, inside = split_html(quiz.to_html())
    _, after = split_text(quiz.to_text(), quiz_heading(quiz))
    for question in quiz.questions:
        assert any(question.answer in part for part in inside), question
        assert question.answer in after, question


def quiz_heading(quiz) -> str:
    return "答案" if quiz.language == "zh" else "Answers"


def answer_to(quiz, pattern: str) -> str:
    found = [q.answer for q in quiz.questions if re.search(pattern, q.text)]
    assert len(found) == 1, (pattern, [q.text for q in quiz.questions])
    return found[0]


def shown(shell, cell: str) -> list:
    with capture_output() as captured:
        outcome = shell.run_cell(cell)
    assert outcome.success, outcome.error_in_exec or outcome.error_before_exec
    return captured.outputs


# ---------------------------------------------------------------------------
# in IPython
# ---------------------------------------------------------------------------
def test_seed_cell_asks_and_hides_18(shell):
    outputs = shown(shell, f"%%grad --wrt x=3 --quiz\n{SEED}")
    (quiz,) = outputs  # the quiz instead of the report
    assert_hidden(quiz.data["text/html"], quiz.data["text/plain"], [seed_grad()])
    assert "<script" not in quiz.data["text/html"] and "color" not in quiz.data["text/html"]
    result = grad(SEED, wrt="x=3", quiz=True)
    assert len(result.quiz.questions) == 4
    assert answer_to(result.quiz, r"^dy/dx = \?").startswith("18 ")
    assert answer_to(result.quiz, r"^y\.is_leaf").startswith("False, MulBackward0")
    assert answer_to(result.quiz, r"^x\.is_leaf").startswith("True, None")
    assert answer_to(result.quiz, r"y\.grad hold").startswith("None: y is not a leaf")
    assert_every_answer_revealed(result.quiz)


def test_a_wrt_leafs_grad_is_said_to_be_stored_as_it_is(shell):
    """--wrt made x: %%grad stored 18 in x.grad (the answer must not say None), and a later
    y.backward() makes it 36, as the answer says."""
    shown(shell, f"%%grad --wrt x=3 --quiz --out r\n{SEED}")
    answer = answer_to(shell.user_ns["r"].quiz, r"^dy/dx = \?")
    assert answer.startswith("18 (") and "None" not in answer and "36" in answer
    assert shell.user_ns["x"].grad.item() == 18
    shown(shell, "y.backward()")
    assert shell.user_ns["x"].grad.item() == 36
    shell.run_cell("x = torch.tensor(3.0, requires_grad=True)")  # the user's own x: not stored
    shown(shell, f"%%grad --quiz --out r\n{SEED}")
    answer = answer_to(shell.user_ns["r"].quiz, r"^dy/dx = \?")
    assert "x.grad itself is still None" in answer and shell.user_ns["x"].grad is None


def test_no_once_more_question_when_the_cell_changed_the_leaf_after_the_call(shell):
    """A descent loop steps w and zeroes w.grad after its last call: "once more on this same w,
    without zeroing" would read values w and w.grad no longer hold."""
    loop = (
        "w = torch.tensor(5.0, requires_grad=True)\nfor i in range(20):\n    loss = (w - 3) ** 2\n"
        "    loss.backward()\n    with torch.no_grad():\n        w -= 0.1 * w.grad\n    w.grad.zero_()"
    )
    shown(shell, f"%%grad --quiz --out r\n{loop}")
    quiz = shell.user_ns["r"].quiz
    assert not [q for q in quiz.questions if "once more" in q.text]
    assert answer_to(quiz, r"20 backward\(\) calls, w\.grad")  # (the call's grad is still asked)


def test_the_forward_listing_is_one_block_of_code():
    quiz = grad("y = 6 * x ** 2 + 2 * x + 4", wrt="x=3", quiz=True, steps=True).quiz
    before = quiz.to_html().split("<ol>")[0]  # (what to read before the questions)
    assert before.count("<pre>") == 1 and "<pre>a = x ** 2\nb = 6 · a" in before
    assert "<p><code>" not in before  # (a line each, in boxes of their own: scattered)


def test_once_more_is_36_from_the_runs_numbers(shell):
    shell.user_ns["ran"] = []
    outputs = shown(shell, f"%%grad --wrt x=3 --quiz --out r\nran.append(1)\n{SEED_BACKWARD}")
    (quiz,) = outputs
    assert accumulated(2) == 36
    assert_hidden(quiz.data["text/html"], quiz.data["text/plain"], [seed_grad(), accumulated(2)])
    assert shell.user_ns["ran"] == [1]  # the cell ran once: 36 was computed, not run
    assert shell.user_ns["x"].grad.item() == 18
    result = shell.user_ns["r"]  # --out keeps the whole GradResult
    assert type(result).__name__ == "GradResult" and result.grads["x"].item() == 18
    assert answer_to(result.quiz, r"once more").startswith("36 = 18 ")
    assert answer_to(result.quiz, r"^After the cell's backward\(\), x\.grad") == "18"
    assert len(result.quiz.questions) == 5


def test_steps_hide_local_derivatives_and_paths():
    result = grad(SEED_BACKWARD, wrt="x=3", quiz=True, steps=True)
    quiz = result.quiz
    assert answer_to(quiz, r"step 2 \(PowBackward0.*∂a/∂x") == "2·x = 6"
    assert answer_to(quiz, r"step 2 sends on dy/dx") == "3 · 6 = 18 → x.grad"
    assert answer_to(quiz, r"step 1 \(MulBackward0.*∂y/∂a") == "3"
    assert_hidden(quiz.to_html(), quiz.to_text(), [6, 18, 36])
    assert "a = x ** 2" in split_html(quiz.to_html())[0]  # the forward steps, to reason from
    assert_every_answer_revealed(quiz)

    partial = grad("f = u**3 + v**2 + 4*u*v", wrt="u=3 v=4", quiz=True, steps=True).quiz
    u = torch.tensor(3.0, requires_grad=True)
    v = torch.tensor(4.0, requires_grad=True)
    paths = (torch.autograd.grad(u**3, u)[0].item(), torch.autograd.grad(4 * u * v, u)[0].item())
    assert paths == (27, 16)
    assert answer_to(partial, r"^∂f/∂u: what does each").startswith("27 + 16 = 43")
    assert answer_to(partial, r"^∂f/∂v: what does each").startswith("8 + 12 = 20")
    assert_hidden(partial.to_html(), partial.to_text(), [43, 20, 27, 16, 12])


def test_a_step_that_passes_the_gradient_on_is_asked_once():
    # step 1 of f = c + h: "∂f/∂c = ?" (1) and "step 1 sends on ∂f/∂c = arriving · local = ?" (1 · 1 = 1)
    quiz = grad("f = u**3 + v**2 + 4*u*v", wrt="u=3 v=4", quiz=True, steps=True).quiz
    asked = [q.text for q in quiz.questions]
    assert "step 1 (AddBackward0, undoes f = c + h): ∂f/∂c = ?" in asked
    assert not any(q.startswith(("step 1 sends on", "step 4 sends on")) for q in asked), asked
    assert "step 2 sends on ∂f/∂e = arriving · local = ?" in asked and len(asked) == 22


def test_the_answer_at_a_kink_carries_the_kink_remark():
    quiz = grad("y = torch.relu(x)", wrt="x=0.0", quiz=True, steps=True).quiz
    (answer,) = [q.answer for q in quiz.questions if q.text.startswith("step 1 (ReluBackward0")]
    assert answer.endswith("= 0 (at exactly 0 there is a kink: PyTorch uses 0 there)"), answer


def test_detach(shell):
    (quiz,) = shown(shell, f"%%grad --wrt x=3 --quiz\n{DETACH}")
    assert detach_grad() == 9
    assert_hidden(quiz.data["text/html"], quiz.data["text/plain"], [9, 18])
    result = grad(DETACH, wrt="x=3", quiz=True)
    answer = answer_to(result.quiz, r"^z\.requires_grad")
    assert answer.startswith("False: z = y.detach() shares its data (9)")
    assert answer_to(result.quiz, r"^After the cell's backward\(\), x\.grad") == "9"
    assert answer_to(result.quiz, r"once more").startswith("18 = 9 ")


def test_loop_accumulates(shell):
    shell.user_ns["ran"] = []
    (quiz,) = shown(shell, f"%%grad --wrt x=3 --quiz --out r\nran.append(1)\n{LOOP}")
    assert (accumulated(3), accumulated(4)) == (54, 72)
    assert_hidden(quiz.data["text/html"], quiz.data["text/plain"], [54, 72])
    assert shell.user_ns["ran"] == [1] and shell.user_ns["x"].grad.item() == 54
    result = shell.user_ns["r"]
    assert answer_to(result.quiz, r"3 backward\(\) calls, x\.grad").startswith("54")
    assert answer_to(result.quiz, r"once more").startswith("72 = 54 (in x.grad now) + 18 ")


@pytest.mark.parametrize(
    ("cell", "name", "starts"),
    [
        ("y = x * 2\nwith torch.no_grad():\n    s = y * 10\nout = y + s\nout.backward()", "s",
         "False: s was computed inside torch.no_grad()"),
        ("n = torch.arange(3)\ny = (x * n).sum()", "n", "False: n is int64"),
        ("c = torch.tensor(2.0)\ny = c * x", "c", "False (grad_fn None)"),
    ],
)  # fmt: skip
def test_constants_say_why(cell, name, starts):
    quiz = grad(cell, wrt="x=3", quiz=True).quiz
    assert answer_to(quiz, rf"^{name}\.requires_grad = \?").startswith(starts)
    assert_every_answer_revealed(quiz)


def test_in_place_op():
    quiz = grad("y = x * 2\ny.add_(1)\nz = y ** 2", wrt="x=3", quiz=True).quiz
    assert answer_to(quiz, r"^y was changed in place \(y\.add_\(1\)\)").startswith("AddBackward0:")
    x = torch.tensor(3.0, requires_grad=True)
    y = x * 2
    y.add_(1)
    assert torch.autograd.grad(y**2, x)[0].item() == 28
    assert_hidden(quiz.to_html(), quiz.to_text(), [28])


def test_chinese(shell):
    (quiz,) = shown(shell, f"%%grad --wrt x=3 --quiz --lang zh --steps\n{SEED_BACKWARD}")
    markup, text = quiz.data["text/html"], quiz.data["text/plain"]
    assert_hidden(markup, text, [6, 18, 36], heading="答案")
    assert "小测验" in text and "<summary>答案</summary>" in markup
    assert "Answers" not in text and "answer" not in markup
    result = grad(SEED_BACKWARD, wrt="x=3", quiz=True, lang="zh")
    assert answer_to(result.quiz, r"再运行一次").startswith("36 = 18（x.grad 现有的）")
    assert_every_answer_revealed(result.quiz)


def test_graph_shows_no_grads(shell):
    outputs = shown(shell, f"%%grad --wrt x=3 --quiz --graph --steps --out r\n{SEED_BACKWARD}")
    _, graph = outputs
    assert "image/svg+xml" in graph.data and "image/png" in graph.data
    for mime in ("text/plain", "image/svg+xml"):
        assert not re.search(r"\bgrad\b", graph.data[mime]), graph.data[mime][:400]
        assert not number_in(re.sub(r"<[^>]+>", " ", graph.data[mime]), 18)
    assert "x (AccumulateGrad) · data 3" in graph.data["text/plain"]
    full = shell.user_ns["r"].graph  # --out: the graph with its grads, as without --quiz
    assert any(node.grad == "18" for node in full.nodes)
    assert all(node.grad is None for node in shell.user_ns["r"].quiz.graph.nodes)
    assert not any(shell.user_ns["r"].quiz.graph.labels)


def test_graph_of_a_folded_loop_shows_no_grads():
    cell = "h = x\nfor i in range(30):\n    h = h * 1.01\nout = h * 2"
    result = grad(cell, wrt="x=3", quiz=True, graph="simple", retain_grad=True)
    assert " · grad " in result.graph.to_text()
    assert not re.search(r"\bgrad\b", result.quiz.graph.to_text() + result.quiz.graph.to_svg())


def test_expect_is_graded_and_the_quiz_follows(shell):
    outputs = shown(shell, f"%%grad --wrt x=3 --quiz --expect 18\n{SEED}")
    line, quiz = outputs
    assert line.data["text/plain"] == "as expected: dy/dx = 18"  # the learner's own prediction
    assert quiz.data["text/plain"].startswith("Quiz:")
    line, quiz = shown(shell, f"%%grad --wrt x=3 --quiz --expect 17\n{SEED}")  # a wrong guess is graded:
    assert line.data["text/plain"] == "not as expected: dy/dx: expected 17, got 18"  # the worksheet stays
    assert quiz.data["text/plain"].startswith("Quiz:")


def test_nothing_to_differentiate_shows_the_report(shell):
    (report,) = shown(shell, "%%grad --wrt x=3 --quiz\nprint('hi')")
    assert "Quiz" not in report.data["text/plain"] and "made no tensor output" in report.data["text/plain"]


def test_users_tensors_are_left_alone(shell):
    shown(shell, "%%grad --quiz\nx = torch.tensor(3.0, requires_grad=True)\ny = 3 * x ** 2")
    assert shell.user_ns["x"].grad is None  # no backward() in the cell: none by %%grad either


# ---------------------------------------------------------------------------
# in a real Jupyter kernel
# ---------------------------------------------------------------------------
KERNEL_CASES = [
    ("--wrt x=3 --quiz", SEED, [18], "Answers"),
    ("--wrt x=3 --quiz", SEED_BACKWARD, [18, 36], "Answers"),
    ("--wrt x=3 --quiz --steps", SEED_BACKWARD, [6, 18, 36], "Answers"),
    ("--wrt x=3 --quiz", DETACH, [9, 18], "Answers"),
    ("--wrt x=3 --quiz", LOOP, [54, 72], "Answers"),
    ("--wrt x=3 --quiz --lang zh", SEED_BACKWARD, [18, 36], "答案"),
]


@pytest.mark.parametrize(("line", "cell", "answers", "heading"), KERNEL_CASES)
def test_in_a_kernel(kernel, line, cell, answers, heading):
    reply = kernel.run(f"%%grad {line}\n{cell}")
    assert reply.status == "ok", reply.text()
    (quiz,) = reply.of_type("display_data")
    assert_hidden(quiz["data"]["text/html"], quiz["data"]["text/plain"], answers, heading)
    assert "<details><summary>" in quiz["data"]["text/html"]
    assert quiz["metadata"] == {"torchgrad_magic": {"version": 1}}


def test_graph_in_a_kernel(kernel):
    reply = kernel.run(f"%%grad --wrt x=3 --quiz --graph\n{SEED_BACKWARD}")
    quiz, graph = reply.of_type("display_data")
    assert_hidden(quiz["data"]["text/html"], quiz["data"]["text/plain"], [18, 36])
    assert "grad 18" not in graph["data"]["text/plain"]
    # the SVG's words only: its markup holds a random marker id (``tgm-arrow-…18…`` is no answer)
    assert not number_in(re.sub(r"<[^>]+>", " ", graph["data"]["image/svg+xml"]), 18)


@pytest.mark.parametrize("path", QUIZ_NOTEBOOKS, ids=[p.name for p in QUIZ_NOTEBOOKS])
def test_worksheet_notebook(path):
    """The teachers' worksheets run, and every quiz in them hides its answers."""
    nb = run_demo.execute(path)
    heading = "答案" if ".zh." in path.name else "Answers"
    quizzes = [
        out
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if "torchgrad-quiz" in out.get("data", {}).get("text/html", "")
    ]
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert not errors
    # in the worksheet's order: y = 3x²; with backward(), once more; u = 2x, y = u²; detach; the loop;
    # y = 6x² + 2x + 4 with --steps (the paths 36 + 2); then f(u, v) is graded with --expect, no quiz
    hidden = ([18], [18, 36], [24, 48], [9, 18], [54, 72], [38, 36])
    assert len(quizzes) == len(hidden)
    for answers, out in zip(hidden, quizzes, strict=True):
        assert_hidden(out.data["text/html"], out.data["text/plain"], answers, heading)
    graded = [run_demo.cell_text(c) for c in nb.cells if c.cell_type == "code" and "--expect" in c.source]
    assert graded and graded[0].startswith(("as expected: ∂f/∂u = 43", "符合预期：∂f/∂u = 43"))
    texts = [c.source for c in nb.cells if c.cell_type == "markdown"]  # (a worksheet tells no answer)
    assert not [t for t in texts if re.search(r"\b(18|36|38|43|20)\b", t)], texts
    assert nbformat.validate(nb) is None


def test_the_docs_example_is_what_users_see():
    docs = (Path(__file__).parents[1] / "docs" / "features.md").read_text(encoding="utf-8")
    example = docs.split("## Quizzes")[1].split("```")[3]
    text = grad(SEED_BACKWARD, wrt="x=3", quiz=True).quiz.to_text()
    for line in example.strip("\n").splitlines():
        assert line.rstrip(" …").replace(" …", "") in text, line


def test_once_more_names_the_call_it_adds():
    """Two backward() calls (y's, then z's): "once more" adds z's grad, and says it is z.backward()
    (it said "the cell's forward and backward()", which would add both calls' grads: 18, not 12)."""
    cell = "y = x ** 2\ny.backward(retain_graph=True)\nz = 3 * x\nz.backward()"
    quiz = grad(cell, wrt="x=3", quiz=True).quiz
    (question,) = [q for q in quiz.questions if "once more" in q.text]
    assert "z.backward()" in question.text and question.answer.startswith("12 = 9 (in x.grad now) + 3 ")
    seed = grad("Y = x ** 2\nY.sum().backward()", wrt="x=3", quiz=True).quiz
    assert any("forward pass and Y.sum().backward() ran once more" in q.text for q in seed.questions)
