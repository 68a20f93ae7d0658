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
