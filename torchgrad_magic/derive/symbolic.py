"""``--symbolic``: SymPy's derivative beside autograd's number.

The recorded computation (:mod:`.record`) is evaluated once more with SymPy
symbols for the scalar inputs: each recorded torch call is mapped to its
SymPy counterpart. The cell itself does not run again. A call without a
counterpart (a matrix product, a module with many weights) gives a one-line
note instead. SymPy is imported only here.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import sympy
import torch

from .. import format as fmt
from ..messages import Note, note, t

SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass(frozen=True)
class SymbolicLine:
    name: str
    expression: str  # the derivative, as text
    latex: str
    value: float
    out: str
    d: str
    point: str
    order: int = 1  # 2: d²y/dx²
    constant: bool = False  # the same at every point: said once, without the point

    @property
    def text(self) -> str:
        """The whole line as shown in a terminal, in the language in use."""
        power = power_of(self.order)
        top, bottom = f"{self.d}{power}{fmt.operand(self.out)}", f"{self.d}{self.name}{power}"
        if self.constant:
            return f"{top}/{bottom} = {self.expression}"
        return t("sym.line", top=top, bottom=bottom, expr=self.expression, value=fmt.number(self.value),
                 point=self.point)  # fmt: skip


def _sigmoid(x: Any) -> Any:
    return 1 / (1 + sympy.exp(-x))


UNARY = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "asin": sympy.asin, "acos": sympy.acos,
    "atan": sympy.atan, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "exp": sympy.exp, "log": sympy.log,
    "log2": lambda x: sympy.log(x, 2), "log10": lambda x: sympy.log(x, 10), "log1p": lambda x: sympy.log(1 + x),
    "expm1": lambda x: sympy.exp(x) - 1, "sqrt": sympy.sqrt, "rsqrt": lambda x: 1 / sympy.sqrt(x),
    "abs": sympy.Abs, "__abs__": sympy.Abs, "absolute": sympy.Abs, "square": lambda x: x**2,
    "reciprocal": lambda x: 1 / x, "sigmoid": _sigmoid, "relu": lambda x: sympy.Max(0, x), "erf": sympy.erf,
    "neg": operator.neg, "__neg__": operator.neg, "negative": operator.neg, "__pos__": operator.pos,
    "softplus": lambda x: sympy.log(1 + sympy.exp(x)), "silu": lambda x: x * _sigmoid(x),
    "sum": lambda x: x, "mean": lambda x: x, "clone": lambda x: x, "squeeze": lambda x: x,
    "contiguous": lambda x: x, "reshape": lambda x, *a: x, "view": lambda x, *a: x, "float": lambda x: x,
    "double": lambda x: x, "detach": lambda x: x,
}  # fmt: skip
BINARY = {
    "add": operator.add, "__add__": operator.add, "__radd__": lambda a, b: b + a, "__iadd__": operator.add,
    "sub": operator.sub, "__sub__": operator.sub, "__rsub__": lambda a, b: b - a, "__isub__": operator.sub,
    "subtract": operator.sub, "mul": operator.mul, "__mul__": operator.mul, "__rmul__": lambda a, b: b * a,
    "__imul__": operator.mul, "multiply": operator.mul, "div": operator.truediv, "divide": operator.truediv,
    "true_divide": operator.truediv, "__truediv__": operator.truediv, "__rtruediv__": lambda a, b: b / a,
    "__itruediv__": operator.truediv, "__rdiv__": lambda a, b: b / a, "__div__": operator.truediv,
    "__idiv__": operator.truediv, "pow": operator.pow, "__pow__": operator.pow,
    "__rpow__": lambda a, b: b**a, "float_power": operator.pow, "maximum": sympy.Max, "minimum": sympy.Min,
}  # fmt: skip


class NotSymbolic(Exception):
    pass


def _constant(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise NotSymbolic(f"a constant tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool):
        raise NotSymbolic("a boolean")
    if isinstance(value, (int, float)):
        return sympy.nsimplify(value) if math.isfinite(value) else sympy.sympify(value)
    raise NotSymbolic(type(value).__name__)


def expression(replay: Any, symbols: dict[str, Any]) -> Any:
    """The recorded output as a SymPy expression of *symbols* (name -> Symbol)."""
    from ..capture.record import Ref, RootRef

    record = replay.record
    by_root = {replay.leaves[n]: s for n, s in symbols.items() if n in replay.leaves}

    def resolve(item: Any, env: dict[int, Any]) -> Any:
        if isinstance(item, RootRef):
            if item.root in by_root:
                return by_root[item.root]
            return _constant(record.roots[item.root].value)
        if isinstance(item, Ref):
            return env[item.op]
        return item

    env: dict[int, Any] = {}
    for index in replay.ops:
        op = record.ops[index]
        values = [resolve(item, env) for item in op.inputs]
        tracked = [isinstance(item, (Ref, RootRef)) for item in op.inputs]
        if op.name in UNARY and tracked[0]:
            env[index] = UNARY[op.name](values[0])
        elif op.name in BINARY and len(values) >= 2:
            a, b = (v if t else _constant(v) for v, t in zip(values[:2], tracked[:2], strict=True))
            env[index] = BINARY[op.name](a, b)
        else:
            raise NotSymbolic(op.name)
    return resolve(replay.output, env)


def symbolic(
    replay: Any, points: dict[str, torch.Tensor], grads: dict, out: str, orders: dict | None = None
) -> tuple[list[SymbolicLine], list[Note]]:
    """SymPy's derivatives of the output for each input, evaluated at the point: the first, and with
    *orders* (``--order N``: name -> autograd's [d1, ..., dN]) each higher one, checked against them."""
    if any(v.dim() != 0 or v.is_complex() for v in points.values()):
        names = ", ".join(n for n, v in points.items() if v.dim() != 0 or v.is_complex())
        return [], [note("sym.scalars_only", names=names)]
    symbols = {name: sympy.Symbol(name, real=True) for name in points}
    try:
        expr = sympy.sympify(expression(replay, symbols))
        if not isinstance(expr, sympy.Expr):
            raise NotSymbolic(type(expr).__name__)
    except (NotSymbolic, TypeError, ValueError, AttributeError) as e:
        return [], [note("sym.cannot", error=fmt.error_line(e).split(": ", 1)[-1])]
    at_point = {symbols[n]: sympy.nsimplify(float(v)) for n, v in points.items()}
    at = ", ".join(f"{n} = {fmt.number(float(v))}" for n, v in points.items())
    d = fmt.d_of(len(symbols) != 1, out, *symbols)
    lines, notes = [], []
    for name, symbol in symbols.items():
        autograd = (orders or {}).get(name) or [grads.get(name)]
        derivative = expr
        for k, auto in enumerate(autograd, start=1):
            # unsimplified: simplify() can turn sin+cos into sin(t + pi/4)
            derivative = sympy.diff(derivative, symbol)
            line = _line(derivative, at_point, (out, name, d, k), at)
            lines.append(line)
            auto_value = 0.0 if auto is None else float(auto.detach())
            if not math.isclose(line.value, auto_value, rel_tol=1e-4, abs_tol=1e-6):
                kink = derivative.has(sympy.Heaviside, sympy.sign, sympy.DiracDelta)  # (a kink's conventions)
                notes.append(note("sym.mismatch_kink" if kink else "sym.mismatch", d=line.d + power_of(k), out=out,
                                  name=name + power_of(k), symbolic=fmt.number(line.value),
                                  auto=fmt.number(auto_value), at=at))  # fmt: skip
    return lines, notes


def _line(derivative: Any, at_point: dict, names: tuple[str, str, str, int], at: str) -> SymbolicLine:
    """One derivative's line: ``d²y/dx² = 12*x**2 = 48`` (order *k* of *out* by *name*)."""
    out, name, d, k = names
    try:
        value = float(derivative.subs(at_point).evalf())
    except (TypeError, ValueError):
        value = math.nan
    tex_power = "" if k == 1 else f"^{{{k}}}"
    tex_d = "d" if d == "d" else r"\partial"
    frac = rf"\frac{{{tex_d}{tex_power} {out}}}{{{tex_d} {name}{tex_power}}}"
    if not derivative.free_symbols:  # a constant: the same at every point (d³(x³)/dx³ = 6)
        return SymbolicLine(
            name, str(derivative), rf"{frac} = {sympy.latex(derivative)}", value, out, d, at, k, True
        )
    latex = rf"{frac} = {sympy.latex(derivative)} = {fmt.number(value)} \quad ({at})"
    return SymbolicLine(name, str(derivative), latex, value, out, d, at, k)


def power_of(k: int) -> str:
    """``²`` for 2 (nothing for 1): d²y/dx²."""
    return "" if k == 1 else str(k).translate(SUPERSCRIPTS)
