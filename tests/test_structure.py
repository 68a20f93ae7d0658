"""The package reads in one direction, as its folders say: capture -> derive -> render.

``capture/`` runs the cell once and keeps what cannot be recovered later; ``derive/`` builds the
report's facts from that; ``render/`` lays them out. A stage may use the ones before it (and the
shared top-level modules: the catalogue ``messages``, ``format``, ``options``), never the ones after:
a test here fails when an import points backwards. The few arrows still to remove are listed,
each with why, so that the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "torchgrad_magic"
STAGES = ("capture", "derive", "render")
TOP = {"__init__", "magic", "engine", "options", "messages", "format"}
# (importing module, imported stage): why it is still there
NOT_YET: dict[tuple[str, str], str] = {}


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(the package-level target of each import inside torchgrad_magic, line), lazy imports too."""
    stage = path.parent.name if path.parent != PACKAGE else ""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        parts = (node.module or "").split(".")
        if node.level == 0 and parts[0] == "torchgrad_magic":
            target = parts[1] if len(parts) > 1 else ""
        elif node.level == 1 and stage:
            target = stage
        elif node.level == 1 or node.level == 2:
            target = parts[0] if parts[0] else ""
        else:
            continue
        if not target and node.level:  # `from .. import format`: the names are the targets
            found += [(alias.name, node.lineno) for alias in node.names]
        else:
            found.append((target, node.lineno))
    return found


def test_the_folders_are_the_stages():
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")} == set(STAGES)
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == TOP, f"top-level modules should be the shell and what every stage shares: {top - TOP}"
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").read_text().startswith('"""')  # says what the stage is


def test_imports_point_one_way():
    backwards = []
    for path in sorted(PACKAGE.glob("*/*.py")):
        stage = path.parent.name
        for target, line in imports_of(path):
            if target in STAGES and STAGES.index(target) > STAGES.index(stage):
                key = (f"{stage}/{path.name}", target)
                if key not in NOT_YET:
                    backwards.append(f"{key[0]}:{line} imports from {target}/")
    assert not backwards, "a stage imports a later one:\n" + "\n".join(backwards)


def test_the_list_of_arrows_still_to_remove_only_shrinks():
    for (module, target), why in NOT_YET.items():
        targets = {t for t, _ in imports_of(PACKAGE / module)}
        assert target in targets, f"{module} no longer imports {target}/ ({why}): take it off NOT_YET"


def test_private_torch_touches_live_in_internals():
    """``torch._C`` and a tensor's private hook dict are read in capture/internals.py only."""
    for path in PACKAGE.rglob("*.py"):
        if path.name == "internals.py":
            continue
        text = path.read_text()
        for private in ("torch._C.", "_backward_hooks", "_sequence_nr", "_execution_engine", "_functorch"):
            assert private not in text, (
                f"{path.relative_to(PACKAGE)} uses {private}: put it in capture/internals.py"
            )
