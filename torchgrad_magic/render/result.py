"""The result of one ``%%grad`` run: plain data plus text and HTML views.

Rendering reads what the engine stored and nothing else: it never touches
``.grad`` of a non-leaf tensor, never runs autograd, and has no side effects.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from .. import format as fmt
from ..derive.rows import TensorRow
from ..format import _html_numbers_table, _html_table, _no_break_flags, _text_table
from ..messages import Note, note, t, using

# Only "tensor" and "role" are translated: the rest are PyTorch's own attribute names.
COLUMNS = ("col.tensor", "col.role", "data", "grad", "grad_fn", "is_leaf", "requires_grad")
EXTRA_COLUMNS = ("shape", "dtype")  # shown where they tell something: a tensor not a scalar, not float32


def _extra_columns(rows: tuple[Any, ...]) -> tuple[str, ...]:
    """Which of :data:`EXTRA_COLUMNS` the table has: shape where a tensor is not a scalar, dtype
    where one is not float32 on the CPU (PyTorch's default says nothing)."""
    shape = any(not row.is_scalar for row in rows)
    dtype = any(row.data.dtype != torch.float32 or row.data.device.type != "cpu" for row in rows)
    return tuple(c for c, shown in zip(EXTRA_COLUMNS, (shape, dtype), strict=True) if shown)


GRAD_COLUMN = COLUMNS.index("grad")
TIMES_INPUT = "grad×input"
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
MATRIX_ITEMS = 6  # rows and columns of a matrix shown before "…"
FOLD_OUT = 100  # a big model's parameters listed in its fold-out at most


@dataclass
class Block:
    """A titled part of the report under the main table: a small table or lines."""

    title: str
    header: list[str] | None
    rows: list[list[str]]
    latex: list[str] | None = None  # the same lines as LaTeX, for notebooks


@dataclass(frozen=True)
class GradResult:
    """Gradients of one cell's output with respect to its tracked leaves.

    ``grads`` maps each tracked leaf's name to its gradient (``None`` when the
    output does not depend on it); ``values`` to the leaf's value when the grads
    were computed; ``output`` is the tensor that was differentiated (before any
    summing; ``None`` when the cell had nothing to differentiate, and ``notes``
    say why). ``str(result)`` is the text report; in a notebook the result shows
    as an HTML table. ``notes`` are :class:`~torchgrad_magic.messages.Note`
    objects (``.id`` and ``.fields``), put into words when shown. Notes that need a pass over
    every element of big tensors (a non-finite value, a layer whose grads are all zero) are
    found when ``notes`` is first read, on the tensors the result holds, not while the cell runs.

    ``differentiated`` names what the grads are the grads of when that is not the output itself
    (``"y1 + 2·y2"``, ``"2·y"``, ``"v·y"``, ``"sum(y)"``; ``others`` holds the call's other
    outputs); ``lost`` names the leaves whose big grad (over 65,536 elements, kept rather than
    copied) the cell changed in place after the call: their ``grads`` entry is no longer the
    call's, and the report says so instead of showing it.

    Optional parts: ``orders`` (``--order``: name -> [d1, d2, ...]),
    ``matrices`` (``--hessian``/``--jacobian``), ``checks`` (``--check``),
    ``symbolic`` (``--symbolic``), ``figure``/``curves`` (``--plot``),
    ``graph`` (``--graph``), ``quiz`` (``--quiz``).
    """

    output: torch.Tensor | None
    output_name: str | None
    leaves: dict[str, torch.Tensor]  # each leaf's value when its grad was computed
    grads: dict[str, torch.Tensor | None]
    rows: tuple[TensorRow, ...]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # the leaf tensors themselves
    summed: bool = False
    backward_calls: int = 0
    # what the grads are the grads of, when not the output itself ("2·y", "v·y", "y1 + y2")
    differentiated: str | None = None
    others: tuple[tuple[str, torch.Tensor], ...] = ()  # other outputs of the same call
    lost: tuple[str, ...] = ()  # leaves whose big grad the cell changed in place after the call
    written: str | None = None  # the cell reduced the output itself: "Y.sum()", as it wrote it
    target: torch.Tensor | None = None  # then: that reduced tensor (what the grads are the grads of)
    found: tuple[Note, ...] = ()  # the notes known when the cell ended (see ``notes``)
    digits: int = 4
    max_items: int = 6
    language: str = "en"
    times_input: bool = False
    orders: dict[str, list[torch.Tensor | None]] = field(default_factory=dict)
    matrices: tuple[Any, ...] = ()  # calculus.Matrix
    checks: tuple[Any, ...] = ()  # calculus.CheckRow
    check_step: float = 0.0
    symbolic: tuple[Any, ...] = ()  # symbolic.SymbolicLine
    expect_line: str | None = None
    graph: Any = None  # graph.Graph with --graph
    figure: Any = None  # a matplotlib Figure with --plot
    curves: tuple[Any, ...] = ()  # the plotted lines as data (plot.Curve)
    steps: Any = None  # steps.Steps with --steps
    model: Any = None  # model.ModelReport when the leaves include a model's parameters
    explorer: Any = None  # explore.Explorer with --explore: the grid's values, shown as its own output
    quiz: Any = None  # quiz.Quiz with --quiz: the report as questions (the magic shows it instead)
    later: tuple[Callable[[], Any], ...] = field(default=(), repr=False, compare=False)

    @cached_property
    def notes(self) -> tuple[Note, ...]:
        """Every note: those known when the cell ended, then those found on first reading."""
        found = list(self.found)
        for make in self.later:
            found += make()
        if any(n.id == "model.changed_note" for n in found):  # (the model's note says it, and why)
            found = [n for n in found if n.id != "note.grad_not_kept"]
        return tuple(found)

    @classmethod
    def assemble(
        cls,
        first: Any,
        extras: Any,
        graph: Any,
        opts: Any,
        language: str,
        steps: Any = None,
        model: Any = None,
    ) -> GradResult:
        """The one place the report is put together from each stage's result."""
        notes = _assembled_notes(first, extras, opts, steps)
        from .graph import drawn  # (the graph's pictures: render/graph.py)

        return cls(
            output=first.output,
            output_name=first.output_name,
            leaves=first.values,
            grads=first.grads,
            rows=first.rows,
            tensors=first.leaves,
            summed=first.summed,
            backward_calls=first.backward_calls,
            differentiated=first.differentiated,
            others=first.others,
            lost=first.lost,
            written=first.written,
            target=first.target,
            found=tuple(notes) + extras.notes,
            digits=opts.digits,
            max_items=opts.max_items,
            language=language,
            times_input=opts.times_input,
            orders=extras.orders,
            matrices=extras.matrices,
            checks=extras.checks,
            check_step=extras.check_step,
            symbolic=extras.symbolic,
            graph=drawn(graph),
            figure=extras.figure,
            curves=extras.curves,
            explorer=getattr(extras, "explorer", None),
            steps=steps,
            model=model,
            later=(*first.later, lambda: model.notes) if model is not None else first.later,
        )

    def replace(self, **changes: Any) -> GradResult:
        """A copy with *changes*; ``notes=`` replaces every note (the ones found later too)."""
        if "notes" in changes:
            changes["found"], changes["later"] = tuple(changes.pop("notes")), ()
        return dataclasses.replace(self, **changes)

    @property
    def hessian(self) -> torch.Tensor | None:
        """The Hessian matrix (``--hessian``), rows and columns in ``leaves`` order."""
        return next((m.values for m in self.matrices if m.kind == "hessian"), None)

    @property
    def jacobian(self) -> torch.Tensor | None:
        """The Jacobian (``--jacobian``): rows are the output's elements, columns the inputs'."""
        return next((m.values for m in self.matrices if m.kind == "jacobian"), None)

    def __getitem__(self, name: str) -> torch.Tensor | None:
        """``result['x']`` is the gradient of the output with respect to ``x``."""
        return self.grads[name]

    # ---- derived text -------------------------------------------------
    @cached_property
    def headline(self) -> str:
        """``y = 27, dy/dx = 18 (at x = 3)``; higher orders follow the first."""
        if self.output is None:
            with using(self.language):
                return t("headline.nothing")
        out = self.label
        value = self.value
        assert value is not None  # (an output: checked above)
        if self.model is not None and len(self.model.params) > 1 and not self.orders:
            with using(self.language):
                count = sum(1 for p in self.model.params if not p.frozen)
                params = {p.name for p in self.model.params}
                others = [n for n in self.grads if n not in params]
                text = t("model.headline", out=out, value=self._values(value), count=count)
                return text + "".join(
                    f", ∂{out}/∂{n} = {self._values(g)}" for n in others if (g := self.grads[n]) is not None
                )
        top = fmt.operand(out or "")
        d = fmt.d_of(len(self.grads) != 1, top, *self.grads)
        if self.differentiated:  # each output's value, then the grads of what was differentiated
            value = self.output.detach()
            parts = [
                f"{n} = {self._values(v.detach())}"
                for n, v in ((self.output_name, self.output), *self.others)
            ]
        else:
            parts = [f"{out} = {self._values(value)}"]
        withheld = {row.name for row in self.rows if row.withheld}
        for name, g in self.grads.items():
            if name in withheld:  # (not computed: its row says so)
                continue
            if name in self.lost:
                with using(self.language):
                    parts.append(f"{d}{top}/{d}{name}: {t('state.changed')}")
                continue
            parts.append(f"{d}{top}/{d}{name} = {'None' if g is None else self._values(g)}")
        for name, found in self.orders.items():
            for k, g in enumerate(found[1:], start=2):
                power = str(k).translate(SUPERSCRIPTS)
                parts.append(f"{d}{power}{top}/{d}{name}{power} = {'None' if g is None else self._values(g)}")
        with using(self.language):
            sep = t("headline.sep")
            text = sep.join(parts)
            points = [f"{n} = {self._values(v)}" for n, v in self.leaves.items() if v.dim() == 0]
            if points and len(points) == len(self.leaves):
                text = t("headline.at", text=text, points=sep.join(points))
        return text

    @property
    def label(self) -> str | None:
        """What the grads are the grads of, as the headline writes it: ``y``, ``sum(Y)`` (summed by
        %%grad), ``Y.sum()`` (as the cell wrote it), ``2·y`` (weights given to the call)."""
        if self.written:
            return self.written
        return self.differentiated or (f"sum({self.output_name})" if self.summed else self.output_name)

    @property
    def value(self) -> torch.Tensor | None:
        """The value of what was differentiated (the output, summed when %%grad summed it)."""
        if self.target is not None:
            return self.target.detach()
        if self.output is None:
            return None
        return self.output.detach().sum() if self.summed else self.output.detach()

    def _values(self, tensor: torch.Tensor) -> str:
        return fmt.values(tensor, self.digits, self.max_items)

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Column names and the cells of each row, as text."""
        header, rows = self._table
        return list(header), [list(row) for row in rows]

    @cached_property
    def _table(self) -> tuple[list[str], list[list[str]]]:
        """:meth:`table`, made once: a display shows both the text and the HTML (so do the parts
        below, each made once in the report's language)."""
        extra = _extra_columns(self._rows())
        with using(self.language):
            header = [t(c) if c.startswith("col.") else c for c in COLUMNS + extra]
            if self.times_input:  # (beside the grad it multiplies: in view where a wide table scrolls)
                header.insert(GRAD_COLUMN + 1, TIMES_INPUT)
            rows = [row.cells(self.digits, self.max_items, extra, self.times_input) for row in self._rows()]
            return header, rows

    def _rows(self) -> tuple[TensorRow, ...]:
        """The table's rows: in a model's report its parameters have their own table."""
        if self.model is None:
            return self.rows
        params = {p.name for p in self.model.params}
        return tuple(row for row in self.rows if row.name not in params)

    def model_table(self) -> tuple[list[str], list[list[str]]] | None:
        """The parameters' table (per module for a big model), or None."""
        return self._model_table

    @cached_property
    def _model_table(self) -> tuple[list[str], list[list[str]]] | None:
        if self.model is None:
            return None
        with using(self.language):
            if self.model.by_module:
                return self.model.header(t("model.col.module")), self.model.module_rows()
            return self.model.header(t("model.col.param")), self.model.param_rows()

    def blocks(self) -> list[Block]:
        """The parts under the main table: matrices, checks, symbolic answers."""
        return list(self._blocks)

    @cached_property
    def _blocks(self) -> list[Block]:
        blocks = []
        with using(self.language):
            for matrix in self.matrices:
                blocks.append(self._matrix_block(matrix))
            if self.checks:
                header = [
                    t("col.tensor"), "autograd", t("check.col.numeric"), t("check.col.error"), t("check.col.result")
                ]  # fmt: skip
                rows = [
                    [t("check.along", name=c.name, count=c.directions) if c.directions else c.name,
                     self._values(c.autograd), self._values(c.numeric), f"{c.max_error:.2e}",
                     t("check.fail") if not c.ok else t("check.at_kink") if c.kink else t("check.pass")]
                    for c in self.checks
                ]  # fmt: skip
                blocks.append(Block(t("check.title", step=f"{self.check_step:g}"), header, rows))
            if self.symbolic:
                blocks.append(
                    Block("SymPy", None, [[s.text] for s in self.symbolic], [s.latex for s in self.symbolic])
                )
        return blocks

    def _matrix_block(self, matrix: Any) -> Block:
        n_rows, n_cols = matrix.values.shape
        rows_shown, cols_shown = _corner(n_rows), _corner(n_cols)
        header = [""] + [matrix.cols[j] if j >= 0 else "…" for j in cols_shown]
        rows = []
        for i in rows_shown:
            if i < 0:
                rows.append(["…"] * len(header))
                continue
            cells = [
                fmt.number(matrix.values[i, j].item(), self.digits) if j >= 0 else "…" for j in cols_shown
            ]
            rows.append([matrix.rows[i], *cells])
        return Block(matrix.title, header, rows)

    @property
    def note_texts(self) -> list[str]:
        """The notes in words, in the report's language."""
        with using(self.language):
            return [str(note) for note in self.notes]

    @cached_property
    def _notes(self) -> list[str]:
        with using(self.language):
            return [t("note.prefix", note=str(note)) for note in self.notes]

    @cached_property
    def _model_summary(self) -> str:
        with using(self.language):
            return str(self.model.summary())

    # ---- views ---------------------------------------------------------
    def __str__(self) -> str:
        return self.text()

    def text(self, graph: bool = True) -> str:
        """The text report; *graph*: with the graph's text (a display shows the graph as its own
        output, under the report: there it is left out, so a terminal does not print it twice)."""
        header, body = self._table
        lines = [self.headline]
        model = self._model_table
        if model is not None:
            with using(self.language):
                lines += ["", self._model_summary, *_text_table(*model)]
                if self.model.by_module:
                    lines.append(t("model.fold_text", count=len(self.model.params)))
        if body:
            lines += ["", *_text_table(header, body)]
        for block in self._blocks:
            lines += ["", block.title]
            lines += _text_table(block.header, block.rows) if block.header else [r[0] for r in block.rows]
        if self.steps is not None:
            with using(self.language):
                lines += ["", t("steps.title", out=self.steps.output), self.steps.to_text()]
        if graph and self.graph is not None:  # its caption first, in the graph's own language
            lines += ["", self.graph.to_text()]
        if graph and self.explorer is not None:  # (a display shows it as its own output, as the graph)
            lines += ["", self.explorer.summary()]
        return "\n".join(lines + self._notes)

    def __repr__(self) -> str:
        return f"<GradResult: {self.headline}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self) if cycle else self.text(graph=False))

    def figure_bundle(self) -> dict[str, Any]:
        """The figure as a display bundle: one ``image/png`` (and a text stand-in)."""
        from .plot import png

        with using(self.language):
            labels = dict.fromkeys(
                c.label.split("|")[0] for c in self.curves if not c.label.startswith("tangent")
            )
            text = t("plot.figure_text", names=", ".join(labels) or self.output_name)
        return {"image/png": png(self.figure), "text/plain": text}

    def _repr_html_(self) -> str:
        esc = html.escape
        header, body = self._table
        parts = [f"<p><b>{esc(self.headline)}</b></p>"]
        model = self._model_table
        if model is not None:
            with using(self.language):
                parts += [f"<p>{esc(self._model_summary)}</p>", _html_numbers_table(*model)]
                if self.model.by_module:  # every parameter, folded: open it when wanted
                    title = esc(t("model.all_params", count=len(self.model.params)))
                    params_header = self.model.header(t("model.col.param"))  # (not the tensors' header)
                    table = _html_numbers_table(params_header, self.model.param_rows(FOLD_OUT))
                    parts.append(f"<details><summary>{title}</summary>{table}</details>")
        parts += [_html_table(header, body)] if body else []
        for block in self._blocks:
            parts.append(f"<p>{esc(block.title)}</p>")
            if block.header:
                parts.append(_html_table(block.header, block.rows))
            elif block.latex:
                parts += [f"<p>$${esc(line)}$$</p>" for line in block.latex]
            else:
                parts += [f"<p>{esc(row[0])}</p>" for row in block.rows]
        if self.steps is not None:
            with using(self.language):
                parts.append(f"<p><b>{esc(t('steps.title', out=self.steps.output))}</b></p>")
                parts.append(self.steps.to_html())
        notes = "".join(f"<li>{_no_break_flags(esc(n))}</li>" for n in self._notes)
        if notes:
            parts.append(f"<ul>{notes}</ul>")
        # No colours of our own: text and code take the front end's theme (light or dark), and
        # the markup stays a readable table when styles are stripped (GitHub, untrusted notebooks).
        return "<div class='torchgrad-magic'>" + "".join(parts) + "</div>"


def _corner(n: int) -> list[int]:
    """Indices to show of n: all, or the first and last few with -1 for '…'."""
    if n <= MATRIX_ITEMS:
        return list(range(n))
    half = MATRIX_ITEMS // 2
    return [*range(half), -1, *range(n - half, n)]


def _assembled_notes(first: Any, extras: Any, opts: Any, steps: Any) -> list[Note]:
    """The first derivatives' notes, with what the steps and extras add or make redundant."""
    notes = list(first.notes)
    if opts.steps and steps is None and first.output is not None and not first.withheld:
        weighted = note("steps.weighted", label=first.differentiated or "?")
        notes.append(weighted if first.weighted else note("steps.none"))
    if steps is not None and steps.hooked:  # (one note: the table's grads and the steps' differ)
        notes = [n for n in notes if n.id != "note.hooks"]
        grads = ", ".join(
            f"{n}: {fmt.values(first.grads[n])}" for n in steps.hooked if first.grads.get(n) is not None
        )
        notes.append(note("steps.hooked", names=", ".join(steps.hooked), grads=grads, out=first.output_name))
    if steps is not None and steps.where_nan:  # torch.where's NaN trap, the one learners hit
        notes.append(note("steps.where_nan", names=", ".join(steps.where_nan)))
    if extras.matrices and any(m.kind == "jacobian" for m in extras.matrices):
        notes = [n for n in notes if n.id != "note.summed"]  # the Jacobian shows every element
    return notes
