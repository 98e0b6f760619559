"""The packages' boundaries show in their imports: user, cloud and edge import only the core."""

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
