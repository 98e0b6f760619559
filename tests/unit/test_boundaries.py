"""The packages' boundaries show in their imports: user, cloud and edge import only the core
(and the user's command line the operations package); inside the core, each concept imports
only the concepts below it (the table ``MAY_IMPORT``); nothing imports another package's private
module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY_LITERAL = re.compile(r"[\"']oodida:[a-z{]")
ROLES = ("oodida_user", "oodida_cloud", "oodida_edge")


def imported_packages(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


@pytest.mark.parametrize("package", ROLES)
def test_a_role_package_imports_the_shared_core_and_never_another_role(package: str) -> None:
    imports = imported_packages(package)
    others = [p for p in ROLES if p != package and p in imports]
    assert not others, f"{package} imports {others} in {[imports[o] for o in others]}"


def test_the_shared_core_imports_no_role_package() -> None:
    imports = imported_packages("oodida_core")
    assert not [p for p in ROLES if p in imports]


# What each package may import of the project, besides itself. Read top to bottom: a concept
# imports only concepts listed before it. docs/ARCHITECTURE.md draws the same table.
MAY_IMPORT: dict[str, set[str]] = {
    "oodida_core.__init__": set(),
    "oodida_core.protocol": set(),
    "oodida_core.settings": {"oodida_core.protocol"},
    "oodida_core.procs": set(),
    "oodida_core.methods": {"oodida_core.protocol"},
    "oodida_core.spec": {"oodida_core.protocol", "oodida_core.methods"},
    "oodida_core.security": {"oodida_core.protocol", "oodida_core.settings"},
    "oodida_core.messaging": {"oodida_core.protocol", "oodida_core.settings"},
    "oodida_core.state": {"oodida_core.protocol", "oodida_core.settings", "oodida_core.security"},
    "oodida_core.customcode": {"oodida_core.protocol", "oodida_core.settings", "oodida_core.state"},
    "oodida_core.app": {"oodida_core.settings", "oodida_core.messaging"},
    "oodida_ops": {"oodida_core.*"},
    "oodida_cloud": {"oodida_core.*"},
    "oodida_edge": {"oodida_core.*"},
    "oodida_user": {"oodida_core.*", "oodida_ops"},
}


def _unit(module: str) -> str:
    """The row of MAY_IMPORT a module belongs to: a core subpackage or top module, or a package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "oodida_core" and len(parts) > 1 else parts[0]


def _project_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("oodida")}


def _sources() -> list[tuple[str, Path]]:
    out = []
    for package in ("oodida_core", "oodida_ops", *ROLES):
        for path in sorted((ROOT / package).rglob("*.py")):
            out.append((".".join(path.relative_to(ROOT).with_suffix("").parts), path))
    return out


def test_every_package_imports_only_what_the_table_allows() -> None:
    wrong = []
    for module, path in _sources():
        me = _unit(module)
        assert me in MAY_IMPORT, f"{module} is in no row of MAY_IMPORT: add its package to the table"
        allowed = MAY_IMPORT[me]
        for target in _project_imports(path):
            unit = _unit(target)
            anything_in_core = "oodida_core.*" in allowed and unit.startswith("oodida_core")
            if unit == me or unit in allowed or anything_in_core:
                continue
            wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_table_has_no_cycle() -> None:
    order = list(MAY_IMPORT)
    for row, allowed in MAY_IMPORT.items():
        for other in allowed:
            if other in MAY_IMPORT:
                assert order.index(other) < order.index(row), f"{row} may import {other}, listed after it"


def _owner(target: str) -> str | None:
    """The package a private name belongs to: the package holding the first private part of
    ``target`` (a private module, or a private name of a module); None if nothing is private."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            container = parts[:i]
            if not (ROOT.joinpath(*container)).is_dir():  # a module's private name
                container = container[:-1]
            return ".".join(container)
    return None


def test_no_module_imports_another_packages_private_module() -> None:
    wrong = []
    for module, path in _sources():
        for target in _project_imports(path):
            owner = _owner(target)
            if owner is not None and not module.startswith(owner + "."):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_every_redis_key_is_built_in_the_keys_module() -> None:
    offenders = []
    for package in ("oodida_core", *ROLES):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "keys.py":
                continue
            text = path.read_text()
            if KEY_LITERAL.search(text) or "{self.prefix}:" in text:
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_the_public_api_is_a_sorted_all() -> None:
    import oodida_user

    assert oodida_user.__all__ == sorted(oodida_user.__all__)
    for name in oodida_user.__all__:
        assert hasattr(oodida_user, name)


def test_a_private_name_belongs_to_the_package_that_holds_it() -> None:
    assert _owner("oodida_core.customcode._child") == "oodida_core.customcode"
    assert _owner("oodida_core.customcode.rules._words") == "oodida_core.customcode"
    assert _owner("oodida_core.protocol.wire.decode") is None
    assert _unit("oodida_core.state.store") == "oodida_core.state"
    assert _unit("oodida_cloud.tasks") == "oodida_cloud"
