"""``--quiz``: the report as questions, each answer hidden until the learner reveals it.

Built after the cell from the finished :class:`~torchgrad_magic.render.result.GradResult` (and the cell's
syntax tree, to see what the cell did: a ``detach()``, a ``no_grad`` block, an in-place op). Every
answer is one of the run's own numbers or facts; nothing here runs the cell again, runs autograd
or writes a ``.grad``.

HTML: each answer in a ``<details>`` (no JavaScript: JupyterLab keeps it in untrusted notebooks,
nbviewer and GitHub too), no colours of its own. Text (a terminal, VS Code untrusted): the
questions numbered, then the answers under a heading.
"""

from __future__ import annotations

import ast
import html
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from .. import format as fmt
from ..capture.syntax import detached_names, no_grad_names, nodes
from ..derive.rows import TensorRow
from ..messages import t, using

MAX_TENSORS = 8  # named tensors asked about (a model's parameters would be hundreds)
MAX_STEPS = 6  # --steps: steps asked about
IN_PLACE = re.compile(r"^[a-z][a-z0-9_]*[a-z0-9]_$")  # add_, mul_, clamp_ (not __iadd__)
NOT_IN_PLACE = {"requires_grad_", "retain_grad_", "share_memory_"}  # set a flag, change no value


class Question(NamedTuple):
    text: str
    answer: str


@dataclass(frozen=True)
class Quiz:
    """The questions (``text``, ``answer``) in the report's language; ``context``: lines to read
    first (the point, the forward computation: no answers); ``report``: the whole GradResult, the
    last reveal; ``graph``: the backward graph without its grads (``--graph``), or None."""

    questions: tuple[Question, ...]
    context: tuple[str, ...] = ()
    report: Any = None
    graph: Any = None
    language: str = "en"

    def to_text(self) -> str:
        """The questions numbered, then the heading "Answers" and the answers, then the report."""
        with using(self.language):
            lines = [t("quiz.title"), *self.context, ""]
            lines += [f"{k:>2}. {q.text}" for k, q in enumerate(self.questions, start=1)]
            lines += ["", t("quiz.answers"), ""]
            lines += [f"{k:>2}. {q.answer}" for k, q in enumerate(self.questions, start=1)]
            if self.report is not None:
                lines += ["", t("quiz.report"), "", self.report.text(graph=False)]
        return "\n".join(lines)

    def to_html(self) -> str:
        """Each question with its answer in a ``<details>``; the whole report in the last one."""
        esc = html.escape
        with using(self.language):
            reveal = esc(t("quiz.reveal"))
            parts = [f"<p><b>{esc(t('quiz.title'))}</b></p>"]
            parts += _context_html(self.context)
            items = "".join(
                f"<li>{esc(q.text)}<details><summary>{reveal}</summary><p>{esc(q.answer)}</p></details></li>"
                for q in self.questions
            )
            parts.append(f"<ol>{items}</ol>")
            if self.report is not None:
                summary = esc(t("quiz.report"))
                parts.append(f"<details><summary>{summary}</summary>{self.report._repr_html_()}</details>")
        # No colours of our own, as the report: readable in light and dark themes and without styles.
        return "<div class='torchgrad-magic torchgrad-quiz'>" + "".join(parts) + "</div>"

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("<Quiz>" if cycle else self.to_text())


def _context_html(lines: tuple[str, ...]) -> list[str]:
    """The lines to read first: a paragraph each, the forward listing (its lines indented) as one
    block of code, as the report's steps show it."""
    esc, parts, block = html.escape, [], []
    for line in (*lines, ""):
        if line.startswith("  "):
            block.append(line[2:])
            continue
        if block:
            parts.append("<pre>" + esc("\n".join(block)) + "</pre>")
            block = []
        if line:
            parts.append(f"<p>{esc(line)}</p>")
    return parts


def build(result: Any, tree: ast.Module | None, called: str | None) -> Quiz:
    """The quiz of a finished run: *result* a GradResult with an output, *tree* the cell's syntax
    tree, *called* the kind of the cell's call shown (``"backward"``, ``"grad"``; None: none, the
    grads are %%grad's own)."""
    facts = CellFacts.of(tree)
    with using(result.language):
        rows = [row for row in result.rows if row.role != "alias"][:MAX_TENSORS]
        questions = [_tensor_question(row, facts) for row in rows]
        questions += _grad_questions(result, rows, called)
        if result.steps is not None:
            questions += _step_questions(result.steps)
        if called == "backward":
            questions += _once_more(result, rows)
        context = _context(result)
    graph = None
    if result.graph is not None:
        from ..derive.graph import without_grads

        graph = without_grads(result.graph)
    return Quiz(tuple(questions), tuple(context), result, graph, result.language)


@dataclass(frozen=True)
class CellFacts:
    """What the cell did, read from its syntax tree: names it assigned from a ``detach()`` (name ->
    the detached expression), inside a ``no_grad``/``inference_mode`` block, and changed in place
    (name -> the call, ``y.add_(1)`` or ``y += 1``)."""

    detached: dict[str, str]
    no_grad: set[str]
    in_place: dict[str, str]

    @classmethod
    def of(cls, tree: ast.Module | None) -> CellFacts:
        in_place: dict[str, str] = {}
        for node in nodes(tree) if tree is not None else ():
            if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                in_place.setdefault(node.target.id, _short(ast.unparse(node)))
            elif _in_place_call(node):
                assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                assert isinstance(node.func.value, ast.Name)
                in_place.setdefault(node.func.value.id, _short(ast.unparse(node)))
        detached = {name: _short(source) for name, source in detached_names(tree).items()}
        return cls(detached, set(no_grad_names(tree)), in_place)


def _in_place_call(node: ast.AST) -> bool:
    """``y.add_(1)``: a method ending in ``_`` called on a name."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    attr = node.func.attr
    return isinstance(node.func.value, ast.Name) and bool(IN_PLACE.match(attr)) and attr not in NOT_IN_PLACE


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------
# the questions
# ---------------------------------------------------------------------------
def _tensor_question(row: TensorRow, facts: CellFacts) -> Question:
    """One question on what a named tensor is: is_leaf and grad_fn; requires_grad where it needs
    none (and why: detach(), no_grad, an integer dtype); grad_fn after an in-place op."""
    name, data = row.name, fmt.values(row.data)
    if not row.requires_grad:
        if row.name in facts.detached:
            source = facts.detached[name]
            whole = source.endswith(".detach()")  # z = x.detach() itself, or computed from one
            answer = t("quiz.a.detach" if whole else "quiz.a.detach_from", name=name,
                       source=source.removesuffix(".detach()"), data=data)  # fmt: skip
        elif row.name in facts.no_grad:
            answer = t("quiz.a.no_grad", name=name, data=data)
        elif not (row.data.is_floating_point() or row.data.is_complex()):
            answer = t("quiz.a.integer", name=name, dtype=fmt.dtype(row.data), data=data)
        else:
            answer = t("quiz.a.constant", name=name)
        return Question(t("quiz.q.requires_grad", name=name), answer)
    if row.name in facts.in_place and row.grad_fn is not None:
        question = t("quiz.q.inplace", name=name, call=facts.in_place[name])
        return Question(question, t("quiz.a.inplace", name=name, fn=row.grad_fn, data=data))
    if row.is_leaf:
        return Question(t("quiz.q.leaf", name=name), t("quiz.a.leaf", name=name))
    return Question(t("quiz.q.leaf", name=name), t("quiz.a.computed", name=name, fn=row.grad_fn))


def _grad_questions(result: Any, rows: list[TensorRow], called: str | None) -> list[Question]:
    """Each input's grad (what .grad holds after the cell's backward(); else the derivative, and
    where it went), then what a non-leaf's .grad holds after backward()."""
    questions = []
    leaves = [r.name for r in rows if r.role in ("input", "leaf") and r.name in result.grads]
    for row in rows:
        grad = result.grads.get(row.name)
        if row.name in leaves and grad is not None and row.name not in result.lost and not row.withheld:
            questions.append(_grad_question(result, row, grad, called))
        elif row.role in ("intermediate", "output") and row.requires_grad:
            if row.grad is not None:  # kept (--retain-grad)
                text = row.grad_text(result.digits, result.max_items)
                questions.append(Question(t("quiz.q.nonleaf_grad", name=row.name), text))
            elif called != "grad":
                fields = {"name": row.name, "fn": row.grad_fn, "leaves": ", ".join(leaves) or "—"}
                questions.append(
                    Question(t("quiz.q.nonleaf_grad", name=row.name), t("quiz.a.nonleaf_grad", **fields))
                )
    return questions


def _grad_question(result: Any, row: TensorRow, grad: torch.Tensor, called: str | None) -> Question:
    name, value = row.name, fmt.values(grad, result.digits, result.max_items)
    if called == "backward":
        calls = result.backward_calls
        question = (
            t("quiz.q.grad_calls", count=calls, name=name) if calls > 1 else t("quiz.q.grad", name=name)
        )
        return Question(question, row.grad_text(result.digits, result.max_items))
    top = fmt.operand(result.label or "y")
    d = fmt.d_of(len(result.grads) != 1, top, *result.grads)
    question = t("quiz.q.derivative", d=f"{d}{top}/{d}{name}", at=_at(result))
    if called == "grad":
        return Question(question, t("quiz.a.returned", value=value, name=name))
    out = _backward_receiver(result)
    live = result.tensors.get(name)
    if live is not None and live.grad is grad:  # (a leaf --wrt made: it carries its grad)
        again = fmt.values(grad + grad, result.digits, result.max_items)
        return Question(question, t("quiz.a.stored", value=value, name=name, out=out, again=again))
    return Question(question, t("quiz.a.not_stored", value=value, name=name, out=out))


def _backward_receiver(result: Any) -> str:
    """What ``.backward()`` would be called on: ``y``, ``Y.sum()`` (a non-scalar output)."""
    if result.written:
        return result.written
    if result.summed:
        return f"{result.output_name}.sum()"
    return fmt.operand(result.label or "y")


def _step_questions(steps: Any) -> list[Question]:
    """--steps: each step's local derivative and the gradient it sends on, then each leaf's sum
    over its paths, every answer as the steps table writes it."""
    from ..derive.steps import Step

    questions = []
    for step in [s for s in steps.steps if isinstance(s, Step)][:MAX_STEPS]:
        for edge in step.edges:
            local, sent = steps.edge_text(step, edge)
            head, _, answer = local.partition(" = ")
            fields = {"index": step.index, "node": step.node, "forward": step.forward}
            questions.append(Question(t("quiz.q.local", local=head, **fields), answer))
            passed_on = edge.local is not None and edge.local.numel() == 1 and float(edge.local) == 1
            if edge.sent is not None and not passed_on:  # (× 1: what arrived goes on, asked once above)
                head, _, answer = sent.partition(" += " if edge.shared else " = ")
                head += " +=" if edge.shared else " ="  # (one path's part: ∂f/∂v += arriving · local)
                questions.append(Question(t("quiz.q.sent", index=step.index, sent=head), answer))
    for leaf, line in zip(steps.leaves, steps.leaf_lines(), strict=True):
        if len(leaf.parts) > 1:
            head, _, answer = line.partition(" = ")
            questions.append(Question(t("quiz.q.paths", d=head, count=len(leaf.parts)), answer))
    return questions


def _once_more(result: Any, rows: list[TensorRow]) -> list[Question]:
    """What .grad becomes if the cell's forward and backward() ran once more without zeroing:
    what it holds now plus this call's derivative (computed from the run's numbers, not by
    running anything again)."""
    questions = []
    for row in rows:
        grad = result.grads.get(row.name)
        if row.role not in ("input", "leaf") or grad is None or row.grad is None or row.name in result.lost:
            continue
        if row.grad.shape != grad.shape or not _as_at_the_call(result.tensors.get(row.name), row):
            continue
        digits, items = result.digits, result.max_items
        total = fmt.values(row.grad + grad.to(row.grad.dtype), digits, items)
        now, added = fmt.values(row.grad, digits, items), fmt.values(grad, digits, items)
        answer = t("quiz.a.once_more", total=total, now=now, added=added, name=row.name)
        questions.append(Question(t("quiz.q.once_more", name=row.name, call=_the_call(result)), answer))
    return questions


def _the_call(result: Any) -> str:
    """The call the report shows, as code: ``z.backward()`` (a cell with two calls: "once more"
    is of this one), ``Y.sum().backward()`` for an output %%grad summed."""
    name = result.written or result.output_name or "y"
    name = name if fmt.is_atom(name) else f"({name})"
    return f"{name}.sum().backward()" if result.summed and not result.written else f"{name}.backward()"


def _as_at_the_call(live: torch.Tensor | None, row: TensorRow) -> bool:
    """Whether the leaf and its ``.grad`` still hold what they held at the call shown (the question
    "once more on this same w" reads them now: a loop's optimizer step or ``w.grad.zero_()`` after
    the call would make its answer false)."""
    if live is None or row.grad is None or live.grad is None:
        return False
    with torch.no_grad():
        value, grad = live.detach(), live.grad.detach()
        if value.shape != row.data.shape or grad.shape != row.grad.shape:
            return False
        return bool(
            torch.equal(value, row.data.to(value.dtype)) and torch.equal(grad, row.grad.to(grad.dtype))
        )


def _at(result: Any) -> str:
    """``at x = 3``: the inputs' values when the grads were computed."""
    points = [f"{n} = {fmt.values(v, result.digits, result.max_items)}" for n, v in result.leaves.items()]
    return t("quiz.at", points=t("headline.sep").join(points))


def _context(result: Any) -> list[str]:
    """What to read before answering: the point, and with --steps the forward computation."""
    lines = [_at(result)] if result.leaves else []
    steps = result.steps
    if steps is not None:
        lines += [t("steps.forward"), *("  " + line for line in steps.forward_shown())]
        if steps.made_up:
            lines.append(t("steps.made_up", names=", ".join(steps.made_up[:8])))
    return lines
