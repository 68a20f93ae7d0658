"""Tensors the cell names by a path: ``m.w``, ``params[0]``, ``layers[1].weight``, ``d["w"]``.

The learner's own words for a leaf are the expression they wrote. :func:`paths_in` finds those
expressions in the cell's code (a name followed by attributes and constant subscripts), and
:func:`value_at` looks one up without running any of the user's code: an object's instance
dictionary, a module's registered parameters, buffers and submodules, a list, tuple or dict
(never a property, ``__getattr__`` or ``__getitem__`` of the user's classes).
"""

from __future__ import annotations

import ast
import functools
import sys
import types
from typing import Any

from .syntax import nodes

_MISSING = object()


def paths_in(tree: ast.AST) -> list[tuple[int, int, str]]:
    """(line, column, text) of every path the code writes: ``m.w``, ``params[0]``, ``d['w']``
    (the longest of a chain, and the paths inside it: ``m.layers[0].w`` gives all three)."""
    found = []
    for node in nodes(tree):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and _steps_of(node) is not None:
            found.append((node.lineno, node.col_offset, ast.unparse(node)))
    return found


def _steps_of(node: ast.AST) -> tuple[str, tuple] | None:
    """(root name, steps) of a path expression; None for anything else (a call, a slice, x[i])."""
    steps: list[tuple[str, Any]] = []
    while True:
        if isinstance(node, ast.Attribute):
            steps.append(("attr", node.attr))
            node = node.value
        elif isinstance(node, ast.Subscript):
            key = _constant_key(node.slice)
            if key is None:
                return None
            steps.append(("item", key))
            node = node.value
        elif isinstance(node, ast.Name):
            return node.id, tuple(reversed(steps))
        else:
            return None


def _constant_key(node: ast.AST) -> int | str | None:
    """The index of ``params[0]``, ``params[-1]``, ``d['w']``; None for any other subscript."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        key = _constant_key(node.operand)
        return -key if type(key) is int else None
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)) and type(node.value) is not bool:
        return node.value
    return None


def parse_path(path: str) -> tuple[str, tuple] | None:
    """(root name, steps) of a path such as ``params[0].w``; None where it is not one."""
    return _parsed(path)


@functools.lru_cache(maxsize=1024)
def _parsed(path: str) -> tuple[str, tuple] | None:
    try:
        return _steps_of(ast.parse(path, mode="eval").body)
    except SyntaxError:  # a module parameter's name: net.0.weight
        head, *parts = path.split(".")
        if head.isidentifier() and parts and all(p.isidentifier() or p.isdigit() for p in parts):
            return head, tuple(("attr", p) for p in parts)
        return None


def is_path(name: str) -> bool:
    """Whether *name* is more than one variable's name (``m.w``, ``params[0]``)."""
    return not name.isidentifier()


def value_at(namespace: dict[str, Any], path: str) -> Any:
    """What *path* stands for in *namespace* now; None where it is not there or could only be
    found by running the user's code."""
    if path.isidentifier():
        return namespace.get(path)
    parsed = _parsed(path)
    if parsed is None:
        return None
    value = namespace.get(parsed[0], _MISSING)
    for kind, key in parsed[1]:
        if value is _MISSING:
            return None
        value = _attribute(value, key) if kind == "attr" else _item(value, key)
    return None if value is _MISSING else value


def _attribute(value: Any, name: str) -> Any:
    """``value.name`` where it is plain data: the instance dictionary, or a module's registries."""
    table = _instance_dict(value)
    if table is None:
        return _MISSING
    if is_module(value):
        for registry in ("_parameters", "_buffers", "_modules"):
            found = table.get(registry, {}).get(name, _MISSING)
            if found is not _MISSING:
                return found
    return table.get(name, _MISSING)


def _instance_dict(value: Any) -> dict | None:
    """*value*'s instance dictionary, read without running its class's code: None where the class
    has its own ``__getattribute__`` or a ``__dict__`` of its own making (a property), or no
    dictionary (slots, a tensor's C attributes)."""
    for klass in type(value).__mro__:
        own = klass.__dict__  # (a type's own mapping: no user code runs)
        if klass is not object and "__getattribute__" in own:
            return None
        if "__dict__" in own and not isinstance(own["__dict__"], types.GetSetDescriptorType):
            return None
    try:
        table = object.__getattribute__(value, "__dict__")
    except AttributeError:
        return None
    return table if type(table) is dict else None


def members(name: str, value: Any, limit: int = 64) -> list[tuple[str, Any]]:
    """The tensors and modules *value* holds under the paths a learner writes: ``params[0]`` for a
    list or tuple, ``model.w`` (``trainer.model``) for a plain object's attribute (a few dozen at most; nothing for a tensor,
    a module, or anything that would run the user's code to look into)."""
    if type(value) in (list, tuple):
        found = [(f"{name}[{i}]", v) for i, v in enumerate(value[:limit])]
    elif type(value) in _NOTHING_INSIDE or is_module(value) or is_tensor(value):
        return []  # (a number, a string, a function, a Python module: no tensors to name)
    else:
        table = _instance_dict(value)
        if table is None:
            return []
        found = [(f"{name}.{k}", v) for k, v in list(table.items())[:limit] if not k.startswith("_")]
    return [(path, v) for path, v in found if is_tensor(v) or is_module(v)]


_NOTHING_INSIDE = (int, float, complex, bool, str, bytes, type(None), type, types.ModuleType, types.FunctionType,
                   types.BuiltinFunctionType, types.MethodType, range, slice)  # fmt: skip


def is_tensor(value: Any) -> bool:
    """Whether *value* is a tensor, by its type alone (``isinstance`` would ask a user's object for
    its ``__class__``)."""
    torch = sys.modules.get("torch")
    return torch is not None and issubclass(type(value), torch.Tensor)


def _item(value: Any, key: int | str) -> Any:
    """``value[key]`` for a list, tuple or dict, and torch's containers (``nn.Sequential``,
    ``nn.ModuleList``, ``nn.ParameterList``, …): their indexing is torch's own code."""
    if type(value) in (list, tuple, dict) or _is_torch_container(value):
        try:
            return value[key]
        except (IndexError, KeyError, TypeError, AttributeError):
            return _MISSING
    return _MISSING


def is_module(value: Any) -> bool:
    """Whether *value* is an ``nn.Module``, by its type alone."""
    nn = sys.modules.get("torch.nn")
    return nn is not None and issubclass(type(value), nn.Module)


def _is_torch_container(value: Any) -> bool:
    nn = sys.modules.get("torch.nn")
    if nn is None:
        return False
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)
    return type(value) in containers
