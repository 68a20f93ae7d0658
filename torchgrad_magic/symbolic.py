"""``--symbolic``: the derivative from SymPy beside autograd's number.

The cell is run once more with SymPy symbols for its scalar inputs and a
stand-in ``torch`` whose elementwise functions are SymPy's. What cannot be
expressed that way (loops over data, nn modules, tensors from elsewhere)
gives a one-line note instead. SymPy comes with torch; it is imported only here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import sympy

from . import format as fmt
from .messages import t


@dataclass
class SymbolicLine:
    name: str
    expression: str  # the derivative, as text
    latex: str
    value: float
    text: str  # the whole line as shown in a terminal


def _shim() -> SimpleNamespace:
    """A stand-in for ``torch`` with SymPy's elementwise functions."""
    relu = lambda x: sympy.Max(0, x)  # noqa: E731
    functions = {
        "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "asin": sympy.asin, "acos": sympy.acos,
        "atan": sympy.atan, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
        "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "exp": sympy.exp, "log": sympy.log,
        "log2": lambda x: sympy.log(x, 2), "log10": lambda x: sympy.log(x, 10), "log1p": lambda x: sympy.log(1 + x),
        "expm1": lambda x: sympy.exp(x) - 1, "sqrt": sympy.sqrt, "rsqrt": lambda x: 1 / sympy.sqrt(x),
        "abs": sympy.Abs, "square": lambda x: x**2, "pow": lambda x, y: x**y, "reciprocal": lambda x: 1 / x,
        "sigmoid": lambda x: 1 / (1 + sympy.exp(-x)), "relu": relu, "erf": sympy.erf,
        "tensor": sympy.sympify, "as_tensor": sympy.sympify, "pi": sympy.pi, "e": sympy.E,
    }  # fmt: skip
    functional = SimpleNamespace(
        relu=relu,
        sigmoid=functions["sigmoid"],
        tanh=sympy.tanh,
        softplus=lambda x: sympy.log(1 + sympy.exp(x)),
    )
    return SimpleNamespace(**functions, nn=SimpleNamespace(functional=functional))


def symbolic(rerun: Any, result: Any) -> tuple[list[SymbolicLine], list[str]]:
    """SymPy's derivative of the output for each input, evaluated at the point."""
    if any(leaf.dim() != 0 for leaf in result.leaves.values()):
        return [], [t("sym.cannot", error="--symbolic needs scalar inputs")]
    symbols = {name: sympy.Symbol(name, real=True) for name in result.leaves}
    try:
        expr = rerun.output(symbols, extra={"torch": _shim(), "math": _math_shim()})
        expr = sympy.sympify(expr)
        if not isinstance(expr, sympy.Expr):
            raise TypeError(f"the output is {type(expr).__name__}")
    except Exception as e:
        return [], [t("sym.cannot", error=f"{type(e).__name__}: {e}"[:160])]
    point = {symbols[n]: sympy.nsimplify(float(v.detach())) for n, v in result.leaves.items()}
    at = ", ".join(f"{n} = {fmt.number(float(v.detach()))}" for n, v in result.leaves.items())
    d = "d" if len(symbols) == 1 else "∂"
    out = result.output_name
    lines, notes = [], []
    for name, symbol in symbols.items():
        derivative = sympy.diff(expr, symbol)  # unsimplified: simplify() can turn sin+cos into sin(t + pi/4)
        try:
            value = float(derivative.subs(point).evalf())
        except (TypeError, ValueError):
            value = math.nan
        text = t("sym.line", d=d, out=out, name=name, expr=str(derivative), value=fmt.number(value), point=at)
        frac = (
            rf"\frac{{d {out}}}{{d {name}}}" if d == "d" else rf"\frac{{\partial {out}}}{{\partial {name}}}"
        )
        latex = rf"{frac} = {sympy.latex(derivative)} = {fmt.number(value)} \quad ({at})"
        lines.append(SymbolicLine(name, str(derivative), latex, value, text))
        auto = result.grads.get(name)
        auto_value = 0.0 if auto is None else float(auto.detach())
        if not math.isclose(value, auto_value, rel_tol=1e-4, abs_tol=1e-6):
            notes.append(
                t(
                    "sym.mismatch",
                    d=d,
                    out=out,
                    name=name,
                    symbolic=fmt.number(value),
                    auto=fmt.number(auto_value),
                )
            )
    return lines, notes


def _math_shim() -> SimpleNamespace:
    return SimpleNamespace(
        sin=sympy.sin, cos=sympy.cos, tan=sympy.tan, exp=sympy.exp, log=sympy.log, sqrt=sympy.sqrt,
        tanh=sympy.tanh, pi=sympy.pi, e=sympy.E,
    )  # fmt: skip
