"""Mixed precision's loss scaling: ``scaler.scale(loss).backward()`` differentiates loss × scale
(``torch.amp.GradScaler``, 65,536 by default), so every grad that call made is the scale times the
loss's grad. A learner comparing with a run without AMP sees 65,536× otherwise: one note says so,
with the unscaled values beside the scaled ones the table shows.

Found after the cell, from what the report already holds: the differentiated tensor is a
``MulBackward0`` whose other factor is a constant, and a GradScaler is among the names the cell's
code uses (looked up by name: the cost does not grow with the namespace). The scale is the output
divided by the loss where the cell named the loss (exact: the scale is a power of two), else the
scaler's ``get_scale()``. The scaler is only read (``is_enabled()``, ``get_scale()``, its growth
and backoff factors): never ``update()``d, its state is as the cell left it.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .. import format as fmt
from ..capture.observe import kept_grad
from ..messages import Note, note

if TYPE_CHECKING:
    from .backward import First

SHOWN = 4  # grads listed unscaled in the note (a model's parameters: the first ones, then "…")
ROLES = ("input", "leaf")  # the rows whose grads are listed


@dataclass(frozen=True)
class Scaling:
    """How a GradScaler scaled the differentiated output, and the grads shown, unscaled."""

    scaler: str  # the scaler's variable name
    scale: float  # what the output was multiplied by (the scale at the call)
    now: float  # scaler.get_scale() after the cell (update() may have changed it since the call)
    loss: str | None  # the loss as the cell wrote it: its name, or what scale() was given
    grads: tuple[tuple[str, torch.Tensor], ...]  # (row name, grad as the table shows it: scaled)
    unscaled_now: bool  # after the call the cell divided .grad in place (unscale_()/step())
    more: bool = False  # more rows had grads than are listed

    def unscaled(self) -> dict[str, torch.Tensor]:
        """Each listed grad divided by the scale: the grad of the loss itself."""
        return {name: grad / self.scale for name, grad in self.grads}

    def note(self, out: str) -> Note:
        """The one note: what the output is, the scale, and the grads unscaled: listed, or where the
        cell's unscale_()/step() left them in .grad (a note on what the cell changed after the call
        shows those values: each said once)."""
        since = note("amp.since", scaler=self.scaler, now=_number(self.now)) if self.now != self.scale else ""
        fields = dict(out=out, loss=self.loss if self.loss is not None else note("amp.the_loss"),
                      scale=_number(self.scale), scaler=self.scaler, since=since)  # fmt: skip
        if self.unscaled_now:
            return note("note.amp_unscaled_after", **fields)
        return note("note.amp_scaled", **fields, unscaled=_Listed(self.grads, self.scale, self.more))


@dataclass(frozen=True)
class _Listed:
    """``w: 2; b: 1``: the grads divided by the scale when the note is put into words (a model's big
    grads are not divided on the cell's path)."""

    grads: tuple[tuple[str, torch.Tensor], ...]
    scale: float
    more: bool

    def __str__(self) -> str:
        listed = [f"{name}: {fmt.values(grad / self.scale)}" for name, grad in self.grads]
        return "; ".join([*listed, *(["…"] if self.more else [])])


def scaling(first: First, ns: dict[str, Any], names: Iterable[str]) -> Scaling | None:
    """The loss scaling behind *first*'s grads, or None: the differentiated tensor is loss × a
    constant, and that constant is the scale of a GradScaler among *names* (the cell's names)."""
    output = _differentiated(first)
    root = output.grad_fn if output is not None else None
    if output is None or root is None or type(root).__name__ != "MulBackward0":
        return None
    made = [edge for edge in root.next_functions if edge[0] is not None]
    if len(made) != 1 or len(root.next_functions) != 2:  # (a product of two tensors that need grad)
        return None
    names = tuple(dict.fromkeys(names))
    scalers = [(n, ns[n]) for n in names if isinstance(ns.get(n), torch.amp.GradScaler)]
    scalers = [(n, s) for n, s in scalers if s.is_enabled()]
    if not scalers:
        return None
    loss_name, loss = _loss(made[0], ns, names)
    written = first.written or first.output_name or ""
    for name, scaler in scalers:
        inside = _scaled_text(written, name)
        scale = _scale_at_call(scaler, output, loss, inside is not None)
        if scale is None:
            continue
        grads, more = _grads(first)
        backward = first.call is not None and first.call.kind == "backward"
        after = backward and _holds_unscaled(first, grads, scale)
        loss_text = loss_name or _bracketed(inside) or None
        return Scaling(name, scale, float(scaler.get_scale()), loss_text, grads, after, more)
    return None


def with_scaling_note(first: First, ns: dict[str, Any], names: Iterable[str]) -> First:
    """*first* with the loss-scaling note added where a GradScaler scaled its output (the one
    call that wires this module in: after ``first_derivatives``)."""
    found = scaling(first, ns, names)
    if found is None:
        return first
    out = first.written or first.output_name or ""
    return dataclasses.replace(first, notes=(*first.notes, found.note(out)))


def _differentiated(first: First) -> torch.Tensor | None:
    """The tensor whose grads the table shows: the call's output, else what %%grad differentiated."""
    if first.call is not None:
        return first.call.output
    return first.target if first.target is not None else first.output


def _loss(edge: tuple[Any, int], ns: dict[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    """The named tensor the other factor multiplied (``loss`` in ``scaler.scale(loss)``), if any."""
    node, index = edge
    for name in names:
        value = ns.get(name)
        if not isinstance(value, torch.Tensor):
            continue
        if value.grad_fn is node and value.output_nr == index:
            return name, value
        if value.grad_fn is None and getattr(node, "variable", None) is value:  # (a leaf scaled)
            return name, value
    return None, None


def _scaled_text(written: str, name: str) -> str | None:
    """What ``name.scale(...)`` scales in the output as the cell wrote it (``loss``, ``net(x).sum()``):
    None where the text has no such call, "" where its argument cannot be read back."""
    if f"{name}.scale(" not in written:
        return None
    try:
        tree = ast.parse(written, mode="eval")
    except SyntaxError:
        return ""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "scale"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == name
        ):
            arg = (
                node.args[0]
                if node.args
                else next((k.value for k in node.keywords if k.arg == "outputs"), None)
            )
            return (ast.get_source_segment(written, arg) or "") if arg is not None else ""
    return ""


def _bracketed(text: str | None) -> str | None:
    """*text* as a factor of ``text × scale``: in brackets unless it is a name, a call, an attribute."""
    if not text:
        return text
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return f"({text})"
    return text if isinstance(node, (ast.Name, ast.Call, ast.Attribute, ast.Subscript)) else f"({text})"


def _scale_at_call(scaler: Any, output: torch.Tensor, loss: Any, written: bool) -> float | None:
    """The scale *output* was multiplied by, when it is *scaler*'s: output / loss, matched against the
    scale now or the one before the last update() (grown or backed off); without the loss, the
    scale now where the cell wrote ``name.scale(`` itself. None: not this scaler's."""
    now = float(scaler.get_scale())
    if loss is None:
        return now if written else None
    ratio = _ratio(output, loss)
    if ratio is None:
        return now if written else None
    before = (now, now / float(scaler.get_growth_factor()), now / float(scaler.get_backoff_factor()))
    for scale in before:
        if math.isclose(ratio, scale, rel_tol=1e-5):
            return scale
    return ratio if written else None  # (update(new_scale) set another scale since)


def _ratio(output: torch.Tensor, loss: torch.Tensor) -> float | None:
    """output / loss at the loss's largest element (None where it is 0 or not finite)."""
    out, base = output.detach().reshape(-1), loss.detach().reshape(-1)
    if base.numel() == 0 or out.numel() != base.numel() or base.is_complex() or out.is_complex():
        return None
    at = int(base.abs().argmax())
    num, den = float(out[at]), float(base[at])
    if den == 0 or not (math.isfinite(num) and math.isfinite(den)):
        return None
    ratio = num / den
    return ratio if ratio > 0 else None


def _grads(first: First) -> tuple[tuple[tuple[str, torch.Tensor], ...], bool]:
    """The leaves' grads as the table shows them (scaled), the first few; and whether there are more."""
    grads = [
        (r.name, r.grad)
        for r in first.rows
        if r.role in ROLES and r.grad is not None and not (r.changed or r.withheld)
    ]
    return tuple(grads[:SHOWN]), len(grads) > SHOWN


def _holds_unscaled(first: First, grads: tuple[tuple[str, torch.Tensor], ...], scale: float) -> bool:
    """Whether each listed leaf's .grad now holds its grad ÷ scale (the cell's unscale_()/step())."""
    if not grads or scale == 1:
        return False
    for name, grad in grads:
        leaf = first.leaves.get(name)
        now = kept_grad(leaf) if isinstance(leaf, torch.Tensor) else None
        if now is None or now.shape != grad.shape or now.layout != torch.strided:
            return False
        if now.data_ptr() == grad.data_ptr():  # (the very grad the table shows: still scaled)
            return False
        if not torch.allclose(now.detach() * scale, grad.to(now.dtype), rtol=1e-5, atol=0, equal_nan=True):
            return False
    return True


def _number(value: float) -> str:
    """``65536.0 -> '65536'``: a whole scale as the integer it is (format.number would write 6.554e+04)."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else fmt.number(value)
