"""The analyst library's classes meet only through public members, reach the cloud through one
channel and agree with the cloud on what a user name is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from oodida_core.protocol.errors import OodidaError
from oodida_core.protocol.wire import MAX_USER_NAME, WireUser
from oodida_core.security.auth import check_user_name

LIBRARY = Path(__file__).resolve().parents[2] / "oodida_user"

# `x._name` allowed where x is not self or cls: (module, expression) and why. Third-party APIs
# that are underscore by convention (IPython's _repr_html_, matplotlib's private helpers) would
# go here; none is needed today.
ALLOWED_PRIVATE_ACCESS: dict[tuple[str, str], str] = {}


def modules() -> list[Path]:
    found = sorted(LIBRARY.glob("*.py"))
    assert len(found) > 10, f"no library modules under {LIBRARY}"
    return found


def private_accesses(path: Path) -> list[tuple[int, str]]:
    """``x._name`` in ``path`` where ``x`` is not ``self`` or ``cls`` (dunders are not private)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        out.append((node.lineno, ast.unparse(node)))
    return sorted(out)


def calls_of(path: Path, name: str) -> list[int]:
    """Lines of ``path`` that call ``name`` (a function or any object's method of that name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == name)
            or (isinstance(node.func, ast.Name) and node.func.id == name)
        )
    ]


def test_no_library_module_touches_another_objects_underscore_members() -> None:
    found = [
        f"{path.name}:{line}: {expr}"
        for path in modules()
        for line, expr in private_accesses(path)
        if (path.name, expr) not in ALLOWED_PRIVATE_ACCESS
    ]
    assert not found, "use a public member (or list it, with why, in ALLOWED_PRIVATE_ACCESS):\n" + "\n".join(
        found
    )


def test_the_boundary_check_sees_a_private_access_and_lets_self_and_dunders_pass(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("self._a\ncls._b\nx.__name__\no._send(1)\nself.o._request\n", encoding="utf-8")
    assert private_accesses(module) == [(4, "o._send"), (5, "self.o._request")]


def test_requests_are_published_only_by_the_request_channel() -> None:
    publishers = {path.name for path in modules() if calls_of(path, "send_task")}
    assert publishers == {"requests.py"}


def test_the_celery_app_and_the_stores_are_built_only_by_the_composition_root() -> None:
    for name in ("make_celery_app", "AssignmentStore", "CodeStore", "Registry"):
        builders = {path.name for path in modules() if calls_of(path, name)}
        assert builders == {"connection.py"}, name


def test_the_dry_run_sandbox_is_built_by_the_deploy_path_not_by_the_connection() -> None:
    builders = {path.name for path in modules() if calls_of(path, "Sandbox")}
    assert builders == {"deploy.py"}


def wire_accepts(name: str) -> bool:
    try:
        TypeAdapter(WireUser).validate_python(name)
    except ValidationError:
        return False
    return True


def auth_accepts(name: str) -> bool:
    try:
        check_user_name(name)
    except OodidaError:
        return False
    return True


@given(st.text(alphabet="aZ09_.@-é :", max_size=MAX_USER_NAME + 70))
def test_a_message_may_carry_exactly_the_user_names_the_cloud_authenticates(name: str) -> None:
    assert wire_accepts(name) == auth_accepts(name)


@pytest.mark.parametrize("length", [1, MAX_USER_NAME])
def test_a_user_name_of_1_to_64_characters_is_one_limit_everywhere(length: int) -> None:
    assert MAX_USER_NAME == 64
    assert wire_accepts("a" * length) and auth_accepts("a" * length)
    assert not wire_accepts("a" * (MAX_USER_NAME + 1)) and not auth_accepts("a" * (MAX_USER_NAME + 1))
