"""Short, size-independent text for numbers and tensors in the report."""

from __future__ import annotations

import math
import unicodedata

import torch

ELLIPSIS = "…"


def number(value: object, digits: int = 4) -> str:
    """``18.0 -> '18'``, ``1/3 -> '0.3333'``, ``nan -> 'nan'``; complex kept complex."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, complex):
        return f"({number(value.real, digits)}{'+' if value.imag >= 0 else '-'}{number(abs(value.imag), digits)}j)"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        text = f"{value:.{digits}g}"
        return "0" if text == "-0" else text
    return str(value)


def operand(name: str) -> str:
    """*name* as the top of a derivative: ``y`` as it is, an expression in brackets: d(Y.sum())/dx."""
    plain = name.replace(".", "_").isidentifier() and not any(c in name for c in "·()")
    return name if plain else f"({name})"


def values(t: torch.Tensor, digits: int = 4, max_items: int = 6) -> str:
    """The values of *t*: the number for one element, a list otherwise.

    Tensors with more than *max_items* elements show the first and last few,
    so the text (and the work to make it) does not grow with the tensor.
    """
    t = t.detach()
    if (t.is_sparse or t.layout != torch.strided) and t.numel() <= 1 << 20:
        t = t.to_dense()  # a sparse grad (Embedding(sparse=True)): the values it stands for
    if t.is_sparse or t.layout != torch.strided:
        return f"<{t.layout} tensor>"
    if t.device.type == "meta":
        return "<meta tensor>"
    if t.dim() == 0:
        return number(t.item(), digits)
    n = t.numel()
    if n <= max_items:
        return _nested(t.cpu().tolist(), digits)
    flat = t.reshape(-1)
    head = max(1, (max_items + 1) // 2)
    tail = max(1, max_items // 2)
    first = [number(v, digits) for v in flat[:head].cpu().tolist()]
    last = [number(v, digits) for v in flat[n - tail :].cpu().tolist()]
    return "[" + ", ".join([*first, ELLIPSIS, *last]) + "]"


def _nested(data: object, digits: int) -> str:
    if isinstance(data, list):
        return "[" + ", ".join(_nested(d, digits) for d in data) + "]"
    return number(data, digits)


def shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ("," if t.dim() == 1 else "") + ")"


def dtype(t: torch.Tensor) -> str:
    name = str(t.dtype).removeprefix("torch.")
    return name if t.device.type == "cpu" else f"{name} {t.device}"


def width(text: str) -> int:
    """Columns *text* takes in a terminal: CJK characters take two."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, columns: int) -> str:
    return text + " " * (columns - width(text))
