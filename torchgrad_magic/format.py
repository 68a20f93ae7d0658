"""Short, size-independent text for numbers and tensors in the report, and its tables (text and
HTML) that every stage lays its rows out with."""

from __future__ import annotations

import html
import math
import re
import unicodedata

import torch

ELLIPSIS = "…"


NOISE = 1e-6  # relative: a number this close to a whole one reads whole (float32 rounding: 1.2e-7 a step)


def number(value: object, digits: int = 4) -> str:
    """``18.0 -> '18'``, ``1/3 -> '0.3333'``, ``nan -> 'nan'``; complex kept complex. A number that
    is not whole never reads as one (``1.0001``, not ``1``: a factor of the chain rule shown as 1
    hides what it multiplies by), but float noise does (``0.99999994 -> '1'``); below 10⁷ a number
    has no exponent (``12345``, ``1000001``: the +1 of x² + 1 at x = 1000 stays)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, complex):
        return f"({number(value.real, digits)}{'+' if value.imag >= 0 else '-'}{number(abs(value.imag), digits)}j)"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        text = f"{value:.{digits}g}"
        if "e+" in text and abs(value) < 1e7:  # (12345 reads 12345, not 1.234e+04)
            digits = len(str(int(abs(value))))
            text = f"{value:.{digits}g}"
            if "e+" in text:  # (99999.5 rounds up to 100000: one digit more)
                digits += 1
                text = f"{value:.{digits}g}"
        if _reads_whole(text) and abs(value - float(text)) > NOISE * max(1.0, abs(value)):
            return _unrounded(value, digits)  # (2.0002 is not 2: torch itself prints 2.0002)
        return "0" if text == "-0" else text
    return str(value)


def _unrounded(value: float, digits: int) -> str:
    """*value* with more digits than asked (up to 8), the fewest that do not read as a whole
    number: ``1.0001``, ``1234.5``."""
    text = f"{value:.{digits}g}"
    while digits < 8 and _reads_whole(text):
        digits += 1
        text = f"{value:.{digits}g}"
    return text


def _reads_whole(text: str) -> bool:
    return text.lstrip("-").isdigit()


def beside(text: str, words: str) -> str:
    """*words* after *text*, a space between unless *words* opens with a full-width bracket
    (Chinese puts none before one)."""
    return f"{text}{'' if words.startswith('（') else ' '}{words}"


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


# ---------------------------------------------------------------------------
# tables, as text and as HTML (the report's, the steps', the model's)
# ---------------------------------------------------------------------------
def _text_table(header: list[str], body: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; a folded row (``…`` and one text: "steps 13–5988: ...")
    runs on past its column instead of widening it."""
    sized = [r for r in body if not _folded(r)]
    widths = [max(width(r[i]) for r in [header, *sized]) for i in range(len(header))]
    return [
        (pad(cells[0], widths[0]) + "  " + cells[1]).rstrip()
        if _folded(cells)
        else "  ".join(pad(c, w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in [header, *body]
    ]


def _folded(cells: list[str]) -> bool:
    return len(cells) > 2 and cells[0] == "…" and not any(cells[2:])


_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*(?:=\S+)?)")


def _no_break_flags(text: str) -> str:
    """Flags such as --retain-grad stay on one line (a browser may break a line at '-')."""
    return _FLAG.sub(r"<code style='white-space:nowrap'>\1</code>", text)


_CJK_PAIR = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef])(?=[\u3000-\u9fff\uff00-\uffef])")


def _unbroken(text: str) -> str:
    """*text* that no browser breaks across lines, even where styles are stripped (untrusted
    notebooks drop white-space:nowrap): no-break spaces, and word joiners between CJK characters."""
    return _CJK_PAIR.sub("\u2060", text.replace(" ", "\u00a0"))


def _html_cell(text: str) -> str:
    """Every cell on one line, as in the text table: no-break spaces (kept where styles are stripped)
    and white-space:pre on the code box itself (JupyterLab's code style, pre-wrap, beats the cell's
    nowrap). A long table scrolls sideways instead of breaking its rows apart."""
    if not text:
        return ""  # no empty (grey) code box
    return f"<code style='white-space:pre'>{html.escape(_unbroken(text))}</code>"


def _html_table(header: list[str], body: list[list[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th style='text-align:left;white-space:nowrap'>{esc(_unbroken(h))}</th>" for h in header)
    rows = "".join(
        "<tr>"
        + "".join(f"<td style='text-align:left;white-space:nowrap'>{_html_cell(c)}</td>" for c in cells)
        + "</tr>"
        for cells in body
    )
    return f"<div style='overflow-x:auto'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"


def _html_numbers_table(header: list[str], body: list[list[str]]) -> str:
    """A table of names and numbers (a model's parameters): the same look with less markup, so a
    big model's report stays small (numbers need no code boxes and never break)."""
    esc = html.escape
    head = "".join(f"<th style='text-align:left'>{esc(h)}</th>" for h in header)
    # names on the left, as in the text table (JupyterLab right-aligns a td without a style)
    rows = "".join(
        f"<tr><td style='text-align:left'>{esc(cells[0])}</td>"
        + "".join(f"<td>{esc(c)}</td>" for c in cells[1:])
        + "</tr>"
        for cells in body
    )
    table = f"<table style='white-space:nowrap'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f"<div style='overflow-x:auto'>{table}</div>"  # (a wide table scrolls sideways, in any front end)


def d_of(several: bool, *names: str | None) -> str:
    """The derivative's d: ``∂`` for partial derivatives (several inputs), and where a name starts
    with d (``dy/dd`` reads as a typo; ``∂y/∂d`` does not); else ``d``."""
    return "∂" if several or any((n or "").startswith("d") for n in names) else "d"


def few(items: list[str], most: int = 4, last: bool = False) -> list[str]:
    """*items*, cut after the first *most* with "…" (and the last one, with *last*), but only where
    that hides two or more: a "…" that stands for one name hides it for nothing."""
    keep = most + (1 if last else 0)
    if len(items) <= keep + 1:
        return list(items)
    return [*items[:most], "…", *([items[-1]] if last else [])]


def error_line(error: BaseException, limit: int = 160) -> str:
    """``Kind: message``, its first line, cut at a word with "…" past *limit* characters (a note
    quotes a library's error: "for this back" was cut mid-word)."""
    text = f"{type(error).__name__}: {error}".strip().split("\n")[0]
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " …"


def is_atom(expression: str) -> bool:
    """Whether ``{expression}.backward()`` needs no brackets (a name, a call, an attribute)."""
    import ast

    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return False
    return isinstance(node, (ast.Name, ast.Call, ast.Attribute, ast.Subscript))
