"""Authentication and isolation of users against the real cloud: every refusal comes before
anything is stored, and no user reads, runs, cancels, deploys or rolls back another's work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from oodida_core.customcode.check import code_version
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.wire import TASK_CANCEL, TASK_START, CancelRequest, SubmitRequest
from oodida_core.security.auth import new_token
from oodida_ops.local import LocalSystem
from oodida_user import Assignment, AuthError, Oodida, OodidaError, SpecError, UnknownAssignment
from oodida_user.replies import await_reply, new_request_id

SPEC = {
    "name": "auth",
    "mode": "measurement",
    "clients": [1, 2],
    "signals": "speed",
    "onboard": "max",
    "frequency": 1,
    "samples": 20,
    "iterations": 1,
}
MEAN = "def custom_code(x):\n    return sum(x) / len(x)\n"


@pytest.fixture(scope="module")
def admin(system: LocalSystem) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(system.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def alice(system: LocalSystem) -> Iterator[Oodida]:
    with Oodida(system.url, user="auth-alice", token=system.token("auth-alice")) as o:
        yield o


@pytest.fixture(scope="module")
def bob(system: LocalSystem) -> Iterator[Oodida]:
    with Oodida(system.url, user="auth-bob", token=system.token("auth-bob")) as o:
        yield o


@pytest.fixture(scope="module")
def alices_module(alice: Oodida, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Alice's on-board module on clients 1 and 2 (Bob deploys nothing)."""
    path = tmp_path_factory.mktemp("alice") / "alice_mean.py"
    path.write_text(MEAN)
    return alice.deploy_onboard(path, clients=[1, 2]).wait(timeout=60).version


def spoof(system: LocalSystem, user: str, token: str | None = None) -> Oodida:
    """A connection claiming to be ``user`` with a token that is not theirs."""
    return Oodida(system.url, user=user, token=token or new_token(), accept_timeout=30)


def count(admin: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in admin.scan_iter(pattern, count=1000))


def cloud_log(system: LocalSystem) -> str:
    return (system.log_dir / "cloud-1.log").read_text(errors="replace")


# -- authentication --------------------------------------------------------------------------
def test_a_wrong_token_is_refused_before_anything_is_stored_and_logged_without_it(
    system: LocalSystem, alice: Oodida, admin: redis.Redis, tmp_path: Path
) -> None:
    keys = Keys()
    before = (count(admin, keys.assignment("*")), count(admin, keys.deployment("*")))
    mine = alice.assignments()
    wrong = new_token()
    with spoof(system, alice.user, wrong) as mallory:
        with pytest.raises(AuthError, match="unknown user or wrong token"):
            mallory.submit(SPEC)
        module = tmp_path / "evil_twin.py"
        module.write_text("def custom_code(x):\n    return 42\n")
        with pytest.raises(AuthError):
            mallory.deploy_onboard(module, clients=[1]).wait(timeout=30)
    assert (count(admin, keys.assignment("*")), count(admin, keys.deployment("*"))) == before
    assert not admin.exists(keys.code(code_version(module.read_text())))
    assert alice.assignments() == mine
    log = cloud_log(system)
    assert f"by user '{alice.user}' refused: wrong token" in log
    assert wrong not in log and wrong[7:] not in log


def test_a_start_published_straight_to_the_cloud_queue_with_a_wrong_token_stores_nothing(
    alice: Oodida,
) -> None:
    request = SubmitRequest(
        assignment_id="forged-start-1",
        user=alice.user,
        token=new_token(),
        request_id=new_request_id(),
        spec=SPEC,
    )
    alice.app.send_task(TASK_START, args=(request.to_wire(),), queue="cloud", ignore_result=True)
    reply = await_reply(alice.redis, alice.keys, request.request_id, 30)
    assert reply is not None and not reply.ok and reply.error == "auth"
    assert alice.store.get("forged-start-1") is None


def test_an_unknown_user_and_a_missing_token_are_refused_with_a_clear_error(system: LocalSystem) -> None:
    with spoof(system, "auth-nobody") as nobody:
        with pytest.raises(AuthError, match="'auth-nobody': unknown user or wrong token"):
            nobody.assignments()
        with pytest.raises(AuthError):
            nobody.submit(SPEC)
    with (
        Oodida(
            system.url, user="auth-alice", settings=system.settings.model_copy(update={"token": ""})
        ) as tokenless,
        pytest.raises(AuthError, match="no token given"),
    ):
        tokenless.clients()
    assert "authentication by user 'auth-nobody' refused: unknown user" in cloud_log(system)


# -- isolation -------------------------------------------------------------------------------
def test_a_user_cannot_read_anothers_assignment_status_or_results(
    system: LocalSystem, alice: Oodida, bob: Oodida
) -> None:
    a = alice.submit(SPEC)
    a.wait(timeout=60)
    with pytest.raises(UnknownAssignment):
        bob.assignment(a.id)
    assert a.id not in bob.assignments()
    handle = Assignment(bob, a.id)  # a handle built by hand reads nothing either
    for read in (handle.status, handle.result, lambda: list(handle.iterations(timeout=5))):
        with pytest.raises(UnknownAssignment):
            read()
    with spoof(system, alice.user, bob.settings.token) as mallory:  # Bob's own token, Alice's name
        with pytest.raises(AuthError):
            mallory.assignment(a.id)
        with pytest.raises(AuthError):
            Assignment(mallory, a.id).result()
    assert alice.assignment(a.id).result().status == "done"


def test_a_user_cannot_cancel_anothers_assignment(system: LocalSystem, alice: Oodida, bob: Oodida) -> None:
    a = alice.submit({**SPEC, "iterations": 0, "timeout": 30})
    try:
        with pytest.raises(UnknownAssignment):
            Assignment(bob, a.id).cancel(timeout=10)
        # Straight to the cloud with Bob's good token: the cloud checks the owner itself.
        with pytest.raises(UnknownAssignment, match="no assignment"):
            bob._request(TASK_CANCEL, CancelRequest(assignment_id=a.id, **bob._credentials()), "cancel")
        with spoof(system, alice.user) as mallory, pytest.raises(AuthError):
            mallory._request(
                TASK_CANCEL, CancelRequest(assignment_id=a.id, **mallory._credentials()), "cancel"
            )
        next(iter(a.iterations(timeout=60)))
        time.sleep(0.5)
        assert a.status() == "running"
    finally:
        assert a.cancel().status == "cancelled"


def test_a_user_sees_only_their_own_code_versions(
    system: LocalSystem, alice: Oodida, bob: Oodida, alices_module: str
) -> None:
    assert alice.code_versions([1, 2])["onboard"] == {1: alices_module, 2: alices_module}
    assert bob.code_versions([1, 2]) == {"offboard": None, "onboard": {1: None, 2: None}}
    with spoof(system, alice.user) as mallory, pytest.raises(AuthError):
        mallory.code_versions([1, 2])


def test_a_user_cannot_run_anothers_code(bob: Oodida, alices_module: str) -> None:
    with pytest.raises(SpecError, match="you have no on-board code on clients 1-2"):
        bob.submit({**SPEC, "onboard": "custom"})


def test_nobody_deploys_or_rolls_back_for_another_user(
    system: LocalSystem, alice: Oodida, bob: Oodida, alices_module: str, tmp_path: Path
) -> None:
    module = tmp_path / "takeover.py"
    module.write_text("def custom_code(x):\n    return -1.0\n")
    with spoof(system, alice.user) as mallory:
        with pytest.raises(AuthError):
            mallory.deploy_onboard(module, clients=[1, 2]).wait(timeout=30)
        with pytest.raises(AuthError):
            mallory.rollback_onboard([1, 2])
        with pytest.raises(AuthError):
            mallory.rollback_offboard()
    with pytest.raises(OodidaError, match="nothing to roll back"):
        bob.rollback_onboard([1, 2])  # Bob's rollback touches Bob's pointers only
    assert alice.code_versions([1, 2])["onboard"] == {1: alices_module, 2: alices_module}
    a = alice.submit({**SPEC, "onboard": "custom"}).wait(timeout=60)
    assert set(a.iterations[0].versions.values()) == {alices_module}


# -- the operator's command line -------------------------------------------------------------
def users(system: LocalSystem, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OODIDA_REDIS_URL": system.url}
    return subprocess.run(
        [sys.executable, "-m", "oodida_user._cli", "users", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_users_are_added_listed_rotated_and_removed_from_the_command_line(system: LocalSystem) -> None:
    name = f"auth-carol{time.monotonic_ns()}"
    added = users(system, "add", name)
    assert added.returncode == 0, added.stderr
    first = added.stdout.strip()
    assert users(system, "add", name).returncode == 1  # exists already
    assert name in users(system, "list").stdout
    with Oodida(system.url, user=name, token=first) as carol:
        carol.authenticate()
    rotated = users(system, "rotate", name)
    assert rotated.returncode == 0 and "token rotated" in users(system, "list").stdout
    second = rotated.stdout.strip()
    with Oodida(system.url, user=name, token=first) as old, pytest.raises(AuthError):
        old.authenticate()
    with Oodida(system.url, user=name, token=second) as new:
        new.authenticate()
    assert users(system, "remove", name).returncode == 0
    assert name not in users(system, "list").stdout
    with Oodida(system.url, user=name, token=second) as gone, pytest.raises(AuthError):
        gone.authenticate()
    assert users(system, "rotate", name).returncode == 1


def test_with_authentication_off_any_user_works_without_a_token(tmp_path: Path) -> None:
    with (
        LocalSystem(1, data_dir=tmp_path, auth=False) as s,
        Oodida(s.url, user="anyone", settings=s.settings.model_copy(update={"token": ""})) as o,
    ):
        assert o.submit({**SPEC, "clients": "all"}).wait(timeout=60).status == "done"
