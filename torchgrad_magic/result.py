"""The result of one ``%%grad`` run: plain data plus text and HTML views.

Rendering reads what the engine stored and nothing else: it never touches
``.grad`` of a non-leaf tensor, never runs autograd, and has no side effects.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import torch

from . import format as fmt
from .messages import t, using

# Only "tensor" and "role" are translated: the rest are PyTorch's own attribute names.
COLUMNS = ("col.tensor", "col.role", "data", "grad", "grad_fn", "is_leaf", "requires_grad")
EXTRA_COLUMNS = ("shape", "dtype")


@dataclass
class TensorRow:
    """What the report shows of one tensor, read once after backward."""

    name: str
    role: str  # "input", "leaf", "intermediate" or "output"
    data: torch.Tensor
    grad: torch.Tensor | None
    grad_fn: str | None
    is_leaf: bool
    requires_grad: bool

    @classmethod
    def of(cls, name: str, role: str, t: torch.Tensor, grad: torch.Tensor | None) -> TensorRow:
        return cls(
            name=name,
            role=role,
            data=t.detach(),
            grad=None if grad is None else grad.detach(),
            grad_fn=None if t.grad_fn is None else type(t.grad_fn).__name__,
            is_leaf=t.is_leaf,
            requires_grad=t.requires_grad,
        )

    @property
    def is_scalar(self) -> bool:
        return self.data.dim() == 0

    def cells(self, digits: int, max_items: int, extra: bool) -> list[str]:
        cells = [
            self.name,
            t(f"role.{self.role}"),
            fmt.values(self.data, digits, max_items),
            "None" if self.grad is None else fmt.values(self.grad, digits, max_items),
            str(self.grad_fn),
            str(self.is_leaf),
            str(self.requires_grad),
        ]
        if extra:
            cells += [fmt.shape(self.data), fmt.dtype(self.data)]
        return cells


@dataclass
class GradResult:
    """Gradients of one cell's output with respect to its tracked leaves.

    ``grads`` maps each tracked leaf's name to its gradient (``None`` when the
    output does not depend on it); ``output`` is the tensor that was
    differentiated (before any summing). ``str(result)`` is the text report;
    in a notebook the result shows as an HTML table.
    """

    output: torch.Tensor
    output_name: str
    leaves: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    rows: list[TensorRow]
    summed: bool = False
    backward_calls: int = 0
    notes: list[str] = field(default_factory=list)
    digits: int = 4
    max_items: int = 6
    language: str = "en"
    figure: Any = None  # a matplotlib Figure with --plot
    curves: list[Any] = field(default_factory=list)  # the plotted lines as data (plot.Curve)

    def __getitem__(self, name: str) -> torch.Tensor | None:
        """``result['x']`` is the gradient of the output with respect to ``x``."""
        return self.grads[name]

    # ---- derived text -------------------------------------------------
    @property
    def headline(self) -> str:
        """``y = 27, dy/dx = 18 (at x = 3)``."""
        out = f"sum({self.output_name})" if self.summed else self.output_name
        value = self.output.detach().sum() if self.summed else self.output.detach()
        d = "d" if len(self.grads) == 1 else "∂"
        frac = f"{d}({out})/{d}" if self.summed else f"{d}{out}/{d}"
        parts = [f"{out} = {self._values(value)}"]
        for name, g in self.grads.items():
            parts.append(f"{frac}{name} = {'None' if g is None else self._values(g)}")
        with using(self.language):
            sep = t("headline.sep")
            text = sep.join(parts)
            points = [f"{n} = {self._values(leaf)}" for n, leaf in self.leaves.items() if leaf.dim() == 0]
            if points and len(points) == len(self.leaves):
                text = t("headline.at", text=text, points=sep.join(points))
        return text

    def _values(self, t: torch.Tensor) -> str:
        return fmt.values(t, self.digits, self.max_items)

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Column names and the cells of each row, as text."""
        extra = any(not row.is_scalar or row.data.dtype != torch.float32 for row in self.rows)
        with using(self.language):
            header = [t(c) if c.startswith("col.") else c for c in COLUMNS + (EXTRA_COLUMNS if extra else ())]
            return header, [row.cells(self.digits, self.max_items, extra) for row in self.rows]

    def _notes(self) -> list[str]:
        with using(self.language):
            return [t("note.prefix", note=note) for note in self.notes]

    # ---- views ---------------------------------------------------------
    def __str__(self) -> str:
        header, body = self.table()
        widths = [max(fmt.width(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = [self.headline, ""]
        for cells in [header, *body]:
            lines.append("  ".join(fmt.pad(c, w) for c, w in zip(cells, widths, strict=True)).rstrip())
        return "\n".join(lines + self._notes())

    def __repr__(self) -> str:
        return f"<GradResult: {self.headline}>"

    def _repr_pretty_(self, p, cycle: bool) -> None:
        p.text(repr(self) if cycle else str(self))

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
        header, body = self.table()
        head = "".join(f"<th style='text-align:left'>{esc(h)}</th>" for h in header)
        rows = "".join(
            "<tr>"
            + "".join(f"<td style='text-align:left'><code>{esc(c)}</code></td>" for c in cells)
            + "</tr>"
            for cells in body
        )
        notes = "".join(f"<li>{esc(n)}</li>" for n in self._notes())
        return (
            "<div class='torchgrad-magic'>"
            f"<p><b>{esc(self.headline)}</b></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            + (f"<ul>{notes}</ul>" if notes else "")
            + "</div>"
        )
