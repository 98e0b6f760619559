"""The analyst's library: handles, errors, isolation of users' assignments."""

from __future__ import annotations

import pytest

from oodida_ops.local import LocalSystem
from oodida_user import AssignmentTimeout, CustomCodeError, Oodida, OodidaError, SpecError, UnknownAssignment

SPEC = {
    "name": "t",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "max",
    "frequency": 1,
    "samples": 50,
    "iterations": 1,
}


def test_a_bad_spec_is_refused_before_anything_is_sent(oodida: Oodida) -> None:
    before = oodida.assignments()
    with pytest.raises(SpecError) as err:
        oodida.submit({**SPEC, "frequency": 0, "signals": ["sped"], "extra": 1})
    assert set(err.value.fields) == {"frequency", "signals", "extra"}
    assert oodida.assignments() == before


def test_deploying_a_missing_file_says_so(oodida: Oodida) -> None:
    with pytest.raises(CustomCodeError, match="no such file"):
        oodida.submit({"mode": "deploy_onboard", "filename": "missing_module.py", "clients": [1, 2]})


def test_another_users_assignment_is_unknown(system: LocalSystem, oodida: Oodida) -> None:
    a = oodida.submit(SPEC)
    a.wait(timeout=30)
    with Oodida(system.url, user="mallory", token=system.token("mallory")) as other:
        with pytest.raises(UnknownAssignment):
            other.assignment(a.id)
        assert a.id not in other.assignments()
    assert a.id in oodida.assignments()


def test_wait_raises_a_timeout_for_an_assignment_that_outlasts_it(oodida: Oodida) -> None:
    a = oodida.submit({**SPEC, "iterations": 0})
    with pytest.raises(AssignmentTimeout):
        a.wait(timeout=0.5)
    assert a.cancel().status == "cancelled"


def test_clients_lists_the_live_clients_with_their_signals(oodida: Oodida) -> None:
    clients = oodida.clients()
    assert [c.client_id for c in clients] == [1, 2, 3, 4, 5]
    assert all("speed" in c.signals and c.last_seen > 0 for c in clients)


def test_an_unreachable_broker_is_an_oodida_error() -> None:
    with pytest.raises(OodidaError, match="cannot reach"):
        Oodida("redis://127.0.0.1:1/0", user="x")


def test_a_user_is_required_and_must_be_a_plain_name(
    system: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OODIDA_USER", raising=False)
    with pytest.raises(OodidaError, match="no user"):
        Oodida(system.url)
    with pytest.raises(OodidaError, match="user name"):
        Oodida(system.url, user="a b:c")


def test_submit_without_a_cloud_worker_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with (
        LocalSystem(1, data_dir=tmp_path, cloud_workers=0) as s,
        Oodida(s.url, user="u", token=s.token("u"), accept_timeout=1) as o,
        pytest.raises(OodidaError, match="no cloud worker"),
    ):
        o.submit(SPEC)
