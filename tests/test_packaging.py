"""What a stranger installing the wheel relies on: declared dependencies, one version, the
[symbolic] extra. (Installing the built wheel into a fresh venv is scripts/compat.py: `make smoke`.)"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest
import tomllib

import torchgrad_magic
import torchgrad_magic.derive
from torchgrad_magic import grad

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# import name -> distribution name, where they differ
DISTRIBUTION = {"IPython": "ipython"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


def imported_packages() -> set[str]:
    found = set()
    for path in (ROOT / "torchgrad_magic").glob("**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "torchgrad_magic"}


def test_every_imported_package_is_declared():
    project = PYPROJECT["project"]
    required = {_name(r) for r in project["dependencies"]}
    symbolic = {_name(r) for r in project["optional-dependencies"]["symbolic"]}
    imported = {DISTRIBUTION.get(name, name).lower() for name in imported_packages()}
    assert imported == required | symbolic, (imported, required, symbolic)
    assert symbolic == {"sympy"}  # --symbolic only: the one optional import (extras.py says so when missing)
    assert all(re.search(r">=\d", r) for r in project["dependencies"]), "every dependency has a floor"


def test_version_is_written_once():
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "torchgrad_magic.__version__"
    # setuptools reads it statically (no import of torch): a plain string literal in __init__.py
    source = (ROOT / "torchgrad_magic" / "__init__.py").read_text()
    assert re.search(r'^__version__ = "[0-9][0-9a-z.]*"$', source, re.MULTILINE)
    assert md.version("torchgrad-magic") == torchgrad_magic.__version__


def test_license_and_typing_marker_ship():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (ROOT / "torchgrad_magic" / "py.typed").is_file()
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["torchgrad_magic"] == ["py.typed"]


def test_symbolic_without_sympy_is_a_note_with_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "sympy", None)  # `import sympy` raises ImportError
    monkeypatch.delitem(sys.modules, "torchgrad_magic.derive.symbolic", raising=False)
    monkeypatch.delattr(
        torchgrad_magic.derive, "symbolic", raising=False
    )  # else `from . import symbolic` finds it
    result = grad("y = 3 * x ** 2", wrt="x=3", symbolic=True, plot=True)
    assert result.grads["x"].item() == 18 and result.figure is not None  # the rest of the report comes
    assert result.symbolic == ()
    assert [n.id for n in result.notes if n.id.startswith("sym.")] == ["sym.missing"]
    assert "pip install 'torchgrad-magic[symbolic]'" in str(result)
    zh = grad("y = 3 * x ** 2", wrt="x=3", symbolic=True, lang="zh")
    assert "需要 SymPy" in str(zh)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="add_note is 3.11+; the 3.10 path is the same list")
def test_a_hint_is_a_pep_678_note():
    with pytest.raises(RuntimeError) as info:
        grad("y = x * torch.ones(3)\ny.backward()", wrt="x=3")
    assert any(n.startswith("what it means:") for n in info.value.__notes__)
