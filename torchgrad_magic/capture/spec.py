"""Reading the magic line: bracket-aware splitting and ``--wrt`` specs.

Nothing here imports torch: parsing a line must stay cheap and must work
before any tensor exists.
"""

from __future__ import annotations

import keyword
import math
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..messages import t
from .paths import is_path, parse_path

_OPEN = "([{"
_CLOSE = ")]}"
_QUOTES = "'\""
_MISSING: Any = object()


class GradError(Exception):
    """A problem the user can fix: bad flags, bad values, no output to differentiate.

    The message is meant to be shown as it is, without a traceback.
    """


def split_line(line: str) -> list[str]:
    """Split a magic line on spaces that are outside brackets and quotes.

    ``--wrt x=torch.linspace(-20, 20, 20)`` stays one token, so users need no
    quoting. A token wholly wrapped in quotes loses them (``"x=[1, 2]"``), and
    ``x = 3`` / ``x =3`` / ``x= 3`` are joined back into ``x=3``.
    """
    tokens: list[str] = []
    buf: list[str] = []
    depth = 0
    quote = ""
    escaped = False
    start = 0  # where the current token began, to show it in errors
    for i, ch in enumerate(line):
        if not buf and not ch.isspace():
            start = i
        if quote:
            buf.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in _QUOTES:
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                raise GradError(t("err.close_bracket", ch=ch, line=line[start : i + 1]))
        if ch.isspace() and depth == 0:
            if buf:
                tokens.append("".join(buf))
                buf = []
            continue
        buf.append(ch)
    if quote:
        raise GradError(t("err.quote", quote=quote, line=line[start:].strip()))
    if depth:
        raise GradError(t("err.open_bracket", count=depth, line=line[start:].strip()))
    if buf:
        tokens.append("".join(buf))
    return _join_equals([_unquote(t) for t in tokens])


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] in _QUOTES and token[-1] == token[0]:
        return token[1:-1]
    return token


def _join_equals(tokens: list[str]) -> list[str]:
    """Join ``x``, ``=``, ``3`` (and ``x=`` ``3``, ``x`` ``=3``) into ``x=3``."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt is not None and not tok.startswith("-") and "=" not in tok and nxt.startswith("="):
            # "x" followed by "=3" or "=" (then the value)
            if nxt == "=" and i + 2 < len(tokens) and not tokens[i + 2].startswith("-"):
                out.append(tok + "=" + tokens[i + 2])
                i += 3
            else:
                out.append(tok + nxt)
                i += 2
            continue
        if (
            nxt is not None
            and tok.endswith("=")
            and tok.count("=") == 1
            and not tok.startswith("-")
            and (not nxt.startswith("-") or _is_negative_number(nxt))
            and "=" not in nxt
        ):
            out.append(tok + nxt)
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def _is_negative_number(token: str) -> bool:
    return len(token) > 1 and token[0] == "-" and (token[1].isdigit() or token[1] == ".")


@dataclass(frozen=True)
class WrtSpec:
    """One ``--wrt`` item: ``name=expr``, a bare ``name``, or a ready value."""

    name: str
    expr: str | None = None
    value: Any = _MISSING
    dotted: bool = False  # a model's parameter by its qualified name (net.0.weight): tracked in place

    @property
    def has_value(self) -> bool:
        return self.value is not _MISSING

    def __str__(self) -> str:
        return self.name if self.expr is None else f"{self.name}={self.expr}"


def check_name(name: str, what: str) -> None:
    """Raise GradError unless *name* can be a Python variable."""
    if not name:
        raise GradError(t("err.name_missing", where=what))
    if keyword.iskeyword(name):
        raise GradError(t("err.keyword", where=what, name=name))
    if not name.isidentifier():
        raise GradError(t("err.bad_name", where=what, name=name))


def parse_wrt_item(item: str) -> WrtSpec:
    """Parse ``name=expr`` or a bare ``name``."""
    text = item.strip()
    name, sep, expr = text.partition("=")
    written = name.strip()
    name = unicodedata.normalize("NFKC", written)  # as Python reads names: µ (micro sign) is μ
    where = f"--wrt {text}"
    if written != name and not all(part.isidentifier() or part.isdigit() for part in written.split(".")):
        raise GradError(t("err.bad_name", where=where, name=written))  # x²: no name (it reads as x2)
    if not name:
        raise GradError(t("err.wrt_name_missing", where=where))
    head, *rest = name.split(".")
    dotted = bool(rest) and head.isidentifier() and not keyword.iskeyword(head)
    if not sep and dotted and all(p.isidentifier() or p.isdigit() for p in rest):
        return WrtSpec(name, dotted=True)  # a model's parameter: net.0.weight
    if not sep and "[" in name and is_path(name) and parse_path(name) is not None:
        return WrtSpec(name, dotted=True)  # a tensor in a list or dict, as the table names it: params[0]
    if not name.isidentifier() and not keyword.iskeyword(name):
        message = t("err.bad_name", where=where, name=name)
        if sep and expr.strip().isidentifier():
            message = t("err.did_you_mean", message=message, expr=expr.strip(), name=name)
        raise GradError(message)
    check_name(name, where)
    if name == "torch":
        raise GradError(t("err.wrt_torch", where=where))
    if not sep:
        return WrtSpec(name)
    expr = expr.strip()
    if not expr:
        raise GradError(t("err.wrt_empty", where=where, name=name))
    if expr.endswith(","):
        raise GradError(t("err.wrt_commas", where=where))
    return WrtSpec(name, expr)


def parse_wrt(wrt: Any) -> list[WrtSpec]:
    """Normalise what users may pass as ``wrt`` into a list of specs.

    Accepts ``None``, a string (``"u=3 v=4"``), a list of such strings, or a
    mapping ``{"x": 3}`` whose values are used directly (not evaluated).
    """
    if wrt is None:
        return []
    if isinstance(wrt, str):
        items: list[Any] = split_line(wrt)
    elif isinstance(wrt, dict):
        specs = []
        for name, value in wrt.items():
            check_name(str(name), f"wrt {name!r}")
            specs.append(WrtSpec(str(name), None, value))
        return _no_duplicates(specs)
    else:
        items = []
        for item in wrt:
            if not isinstance(item, str):
                raise GradError(t("err.wrt_not_string", kind=type(item).__name__))
            items.extend(split_line(item) if item.strip() else [item])
    if not items:
        raise GradError(t("err.wrt_nothing"))
    return _no_duplicates([parse_wrt_item(item) for item in items])


def _no_duplicates(specs: list[WrtSpec]) -> list[WrtSpec]:
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise GradError(t("err.wrt_twice", name=spec.name))
        seen.add(spec.name)
    return specs


def interval(text: str, bad: str) -> tuple[float, float]:
    """``"-2:5"`` -> ``(-2.0, 5.0)`` (--plot-range, --explore); :class:`GradError` with the message
    *bad* (its field: ``value``) unless it is ``low:high``, both finite, low below high."""
    low, colon, high = str(text).partition(":")
    try:
        a, b = float(low), float(high)
    except ValueError:
        raise GradError(t(bad, value=text)) from None
    if not colon or not (math.isfinite(a) and math.isfinite(b)) or a >= b:
        raise GradError(t(bad, value=text))
    return a, b
