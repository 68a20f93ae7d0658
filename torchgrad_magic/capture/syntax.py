"""The cell's syntax tree, parsed once for each text and walked once: every stage that reads the
cell's code (its names, its paths, the hooks it adds, what it differentiates, the quiz's facts)
asks :func:`nodes` for the same list instead of walking the tree again (a walk is a Python
generator: a training loop's cell was walked six times per run). Nothing changes a tree."""

from __future__ import annotations

import ast
import functools


@functools.lru_cache(maxsize=32)
def parse(code: str) -> ast.Module | None:
    """The syntax tree of *code* (None where it is not plain Python), the same object each time
    the same text comes again (a cell run again: its walks are kept with it, see :func:`nodes`)."""
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):  # (ValueError: a null byte in the text)
        return None


_LAST: list = [None, ()]  # [the tree last asked about, its nodes] (the tree is held: no id reuse)


def nodes(tree: ast.AST) -> tuple[ast.AST, ...]:
    """Every node of *tree*, in ``ast.walk``'s order."""
    if _LAST[0] is not tree:
        _LAST[1] = tuple(ast.walk(tree))
        _LAST[0] = tree
    return _LAST[1]


def loop_targets(tree: ast.AST | None) -> frozenset[str]:
    """The names a ``for`` loop binds (``for p in params``): at the end they stand for whichever
    item came last, so they name a tensor only where nothing steadier does (``params[1]``)."""
    if tree is None:
        return frozenset()
    found: set[str] = set()
    for node in nodes(tree):
        if isinstance(node, (ast.For, ast.AsyncFor)):
            found.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
    return frozenset(found)


def detached_source(value: ast.expr) -> str | None:
    """``y.detach()`` when *value* is that call itself, ``y`` when it is computed from one (the
    first detach() in *value*), else None."""
    for node in ast.walk(value):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "detach":
            inner = node.func.value
            source = ast.unparse(inner)
            if not isinstance(inner, ast.Name | ast.Attribute | ast.Call | ast.Subscript):
                source = f"({source})"  # ((3 * x ** 2).detach(), as written)
            return f"{source}.detach()" if node is value else source
    return None


def is_no_grad(expr: ast.expr) -> bool:
    """``torch.no_grad()``, ``no_grad()``, ``torch.inference_mode()``."""
    func = expr.func if isinstance(expr, ast.Call) else expr
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("no_grad", "inference_mode")


def no_grad_names(tree: ast.AST | None) -> dict[str, str]:
    """The names the cell assigned inside a ``no_grad``/``inference_mode`` block (autograd records
    nothing there): name -> the block's call as written (``torch.no_grad()``)."""
    found: dict[str, str] = {}
    for node in nodes(tree) if tree is not None else ():
        if isinstance(node, (ast.With, ast.AsyncWith)):
            block = next(
                (ast.unparse(i.context_expr) for i in node.items if is_no_grad(i.context_expr)), None
            )
            if block is None:
                continue
            stores = (n for inner in node.body for n in ast.walk(inner))
            found.update(
                (n.id, block) for n in stores if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            )
    return found


def detached_names(tree: ast.AST | None) -> dict[str, str]:
    """The names the cell assigned from a ``detach()``: name -> :func:`detached_source`."""
    found: dict[str, str] = {}
    for node in nodes(tree) if tree is not None else ():
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            source = detached_source(node.value)
            if source is not None:
                found[node.targets[0].id] = source
    return found
