"""Property-based tests of the library against a real system: bad input raises OodidaError only.

Specs from the grammar (valid, broken, any JSON), module files with any name and any content,
junk assignment ids, client lists, timeouts, broker URLs and user names: every call returns
normally or raises an ``OodidaError`` subclass, never anything else. Accepted assignments are
cancelled at once, so a drawn spec of a million iterations costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from spec_strategies import broken_specs, json_values, valid_analytic_specs, valid_deploy_specs

from oodida_core.protocol.wire import FINAL_STATUSES
from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import (
    Assignment,
    BadArgument,
    Deployment,
    DeployReport,
    Oodida,
    OodidaError,
    UnknownAssignment,
)

T = TypeVar("T")
API = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHEAP = settings(max_examples=200, deadline=None)
VALID_MODULE = "def custom_code(x):\n    return len(x) if isinstance(x, list) else 0\n"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(2, data_dir=tmp_path_factory.mktemp("library-properties")) as s:
        yield s


@pytest.fixture(scope="module")
def o(system: LocalSystem) -> Iterator[Oodida]:
    with Oodida(system.url, user="fuzzer", token=system.token("fuzzer")) as o:
        yield o


@pytest.fixture(scope="module")
def done(o: Oodida) -> Assignment:
    a: Assignment = o.submit({**LISTING_1_1, "samples": 10})
    a.wait(timeout=60, progress=False)
    return a


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("modules")


def outcome(call: Callable[[], T]) -> T | OodidaError:
    """The call's value or its OodidaError; any other exception fails the test."""
    try:
        return call()
    except OodidaError as error:
        return error


def _cheap(spec: dict[str, Any]) -> dict[str, Any]:
    """A valid spec made quick to run: few readings, few iterations, a short timeout."""
    quick = {**spec, "samples": min(int(spec["samples"]), 200), "iterations": min(int(spec["iterations"]), 2)}
    if spec.get("sample_size") is not None:
        quick["sample_size"] = 1
    return {**quick, "timeout": 10}


specs = st.one_of(
    valid_analytic_specs().map(_cheap),
    valid_deploy_specs(),
    broken_specs().map(lambda case: case[0]),
    json_values,
)


@API
@given(spec=specs)
def test_submit_returns_a_handle_or_raises_an_oodida_error(o: Oodida, spec: Any) -> None:
    result = outcome(lambda: o.submit(spec))
    event(type(result).__name__)
    if isinstance(result, Assignment):
        ended = outcome(lambda: result.cancel(timeout=60))
        assert not isinstance(ended, OodidaError), ended
        assert ended.status in FINAL_STATUSES
    elif isinstance(result, Deployment):
        assert not isinstance(outcome(lambda: result.wait(timeout=30)), (TypeError, ValueError))
    else:
        assert isinstance(result, OodidaError)


names = st.one_of(
    st.text(max_size=40).map(lambda s: s + ".py"),
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            ".py",
            "..py",
            "a\x00b.py",
            "\ud800.py",
            "dir/",
            "x" * 300 + ".py",
            "/dev/null",
            "/proc/self/mem",
        ]
    ),
)
contents = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.sampled_from(
        [
            VALID_MODULE,
            "def custom_code(x):\n    return (x\n",
            "import os\ndef custom_code(x):\n    return os.getcwd()\n",
            "def custom_code(x, y):\n    return 1\n",
            "def custom_code(x):\n    return float('nan')\n",
            "def custom_code(x):\n    return open('/etc/passwd').read()\n",
            VALID_MODULE + "#" * 300_000,
            "\ufeff" + VALID_MODULE,
            "",
        ]
    ),
)
client_lists: st.SearchStrategy[Any] = st.one_of(
    st.just("all"),
    st.lists(st.integers(-3, 4), max_size=4),
    st.integers(-2, 5),
    st.sampled_from([None, "some", 1.5, True, [None], {"a": 1}, [2**70]]),
)


@API
@given(
    name=st.just("module.py") | names,
    content=st.just(VALID_MODULE) | contents,
    clients=st.just("all") | client_lists,
    role=st.sampled_from(["onboard", "offboard"]),
)
def test_deploying_any_file_returns_a_report_or_raises_an_oodida_error(
    o: Oodida, workdir: Path, name: str, content: str | bytes, clients: Any, role: str
) -> None:
    path = workdir / name if name and not name.startswith("/") else Path(name)
    if path.parent == workdir and "\x00" not in name:
        data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
        with contextlib.suppress(OSError, ValueError):  # a name the file system refuses: no file
            path.write_bytes(data)
    if role == "onboard":
        result = outcome(lambda: o.deploy_onboard(path, clients=clients))
    else:
        result = outcome(lambda: o.deploy_offboard(path))
    event(type(result).__name__)
    if isinstance(result, Deployment):
        report = outcome(lambda: result.wait(timeout=30))
        event(f"waited: {type(report).__name__}")
        assert isinstance(report, (DeployReport, OodidaError))


junk_ids = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=20),
    st.integers(),
    st.none(),
    st.sampled_from([":ev", ":it", "*", "../", "a b", "x" * 100_000]),
)


@CHEAP
@given(suffix=junk_ids)
def test_a_junk_assignment_id_is_an_unknown_assignment(o: Oodida, done: Assignment, suffix: Any) -> None:
    for wanted in (suffix, f"{done.id}{suffix}" if isinstance(suffix, str) else suffix):
        if wanted == done.id:
            continue
        with pytest.raises(UnknownAssignment):
            o.assignment(wanted)


@CHEAP
@given(clients=client_lists | st.lists(st.integers(1, 5), max_size=3))
def test_client_lists_for_rollback_and_versions_are_checked(o: Oodida, clients: Any) -> None:
    usable = isinstance(clients, list) and all(type(c) is int and 0 < c < 2**63 for c in clients)
    versions = outcome(lambda: o.code_versions(clients))
    rollback = outcome(lambda: o.rollback_onboard(clients))
    if usable:
        assert isinstance(versions, dict) and isinstance(rollback, (dict, OodidaError))
    else:
        assert isinstance(rollback, BadArgument)
        assert isinstance(versions, BadArgument) or (clients is None and isinstance(versions, dict))


timeouts = st.one_of(
    st.floats(),
    st.integers(-5, 5),
    st.none(),
    st.sampled_from(["10", [], True, float("nan"), float("inf"), -float("inf")]),
)


@CHEAP
@given(timeout=timeouts)
def test_any_timeout_gives_a_result_or_an_oodida_error(done: Assignment, timeout: Any) -> None:
    for call in (
        lambda: done.wait(timeout=timeout, progress=False),
        lambda: list(done.iterations(timeout=timeout)),
        lambda: done.cancel(timeout=timeout),
    ):
        outcome(call)  # anything but an OodidaError escaping fails


@CHEAP
@given(
    url=st.one_of(
        st.text(max_size=30),
        st.sampled_from(
            [
                "redis://[::1",
                "redis://h:port/0",
                "redis://127.0.0.1:99999/0",
                "redis://127.0.0.1:1/0",
                "unix:///nonexistent/redis.sock",
                "rediss://127.0.0.1:1/0",
                "redis://127.0.0.1:1/notadb",
                "http://127.0.0.1/",
            ]
        ),
    ),
    user=st.one_of(st.just("fuzzer"), st.text(max_size=70)),
)
def test_a_bad_broker_url_or_user_name_is_an_oodida_error(url: str, user: str) -> None:
    result = outcome(lambda: Oodida(url or "redis://127.0.0.1:1/0", user=user or "x"))
    assert isinstance(result, OodidaError), f"connected to {url!r}"
