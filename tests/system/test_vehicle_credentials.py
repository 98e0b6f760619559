"""Each vehicle holds its own Redis credentials (``oodida vehicles add``): tried against another
vehicle's queue, results, pointers, verdicts, pending installs and code, against the messages
in flight and against remote control (a ``shutdown`` broadcast), everything is refused or
ignored, and the fleet keeps working. Real Redis (6.2, embedded), real workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from oodida_core.keys import Keys
from oodida_core.local import LocalSystem
from oodida_user import Oodida

KEYS = Keys()
SPEC = {
    "name": "fleet",
    "mode": "measurement",
    "clients": [1, 2],
    "signals": "speed",
    "onboard": "max",
    "frequency": 1,
    "samples": 10,
    "iterations": 1,
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    """Two vehicles, each an edge process with its own credentials, and a cloud."""
    data = tmp_path_factory.mktemp("vehicles")
    with LocalSystem(0, data_dir=data, acl=True) as system:
        system.start_edge("vehicle-1", "1")
        system.start_edge("vehicle-2", "2")
        system.wait_ready(clients=2)
        yield system


def vehicle_one(system: LocalSystem) -> tuple[str, str]:
    """What vehicle 1 is given: its Redis URL and its reader's."""
    made = getattr(system, "vehicle_urls", {}).get("vehicle-1")
    if made is not None:
        return made.url, made.read_url or made.url
    return system.role_urls["edge"], system.role_urls["edge-read"]  # before: one role for all


def refused(urls: tuple[str, ...], call: Callable[[redis.Redis], object]) -> bool:
    """Whether every one of the vehicle's users is refused ``call``."""
    for url in urls:
        client = redis.Redis.from_url(url)
        try:
            call(client)
            return False
        except redis.exceptions.NoPermissionError:
            pass
        except redis.exceptions.ResponseError as exc:
            if "NOPERM" not in str(exc) and "no permissions" not in str(exc):
                raise
        finally:
            client.close()
    return True


def deploy(o: Oodida, tmp: Path, client: int, body: str) -> str:
    module = tmp / f"m{client}.py"
    module.write_text(f"def custom_code(x):\n    return {body}\n")
    report = o.deploy_onboard(module, clients=[client]).wait(timeout=60)
    assert report.accepted == (client,)
    return report.version


def test_a_vehicle_takes_no_task_of_another_vehicle_and_pushes_none_onto_its_queue(
    system: LocalSystem,
) -> None:
    mine = vehicle_one(system)
    assert refused(mine, lambda r: r.brpop(["client.2"], 0.01))
    assert refused(mine, lambda r: r.lrange("client.2", 0, -1))
    assert refused(mine, lambda r: r.lpush("client.2", "a forged task"))
    assert refused(mine, lambda r: r.hgetall("unacked"))  # every queue's messages in flight
    assert not refused(mine, lambda r: r.llen("client.1"))


def test_a_vehicle_answers_only_its_own_tasks(system: LocalSystem) -> None:
    mine = vehicle_one(system)
    with Oodida(settings=system.client_settings("alice")) as o:
        result = o.submit(SPEC).wait(timeout=60)
        assert sorted(result.iterations[0].onboard) == [1, 2]
        aid = result.id
    assert refused(mine, lambda r: r.set(f"celery-task-meta-{aid}-i0-c2", "{}"))
    assert refused(mine, lambda r: r.get(f"celery-task-meta-{aid}-i0-c2"))
    assert not refused(mine, lambda r: r.get(f"celery-task-meta-{aid}-i0-c1"))


def test_a_vehicle_reads_only_the_code_deployed_to_it_and_moves_only_its_own_pointers(
    system: LocalSystem, tmp_path: Path
) -> None:
    mine = vehicle_one(system)
    with Oodida(settings=system.client_settings("alice")) as o:
        own = deploy(o, tmp_path, 1, "max(x)")
        other = deploy(o, tmp_path, 2, "min(x) + 0.5")
        other_id = o.deploy_onboard(tmp_path / "m2.py", clients=[2]).wait(timeout=60).id
    own_pointer, other_pointer = KEYS.onboard_pointer("alice", 1), KEYS.onboard_pointer("alice", 2)
    assert not refused(mine, lambda r: r.lindex(own_pointer, 0))
    assert not refused(mine, lambda r: r.hget(KEYS.code(own), "source"))
    # Nowhere to learn the other version: pointers, deployment times, records, key names.
    assert refused(mine, lambda r: r.lindex(other_pointer, 0))
    assert refused(mine, lambda r: r.lpush(other_pointer, own))
    assert refused(mine, lambda r: r.hgetall(KEYS.deployed_at("alice")))
    assert refused(mine, lambda r: r.lindex(KEYS.offboard_pointer("alice"), 0))
    assert refused(mine, lambda r: r.hgetall(KEYS.deployment(other_id)))
    assert refused(mine, lambda r: r.hgetall(KEYS.pending_installs(2)))
    assert refused(mine, lambda r: r.scan(0, count=1000))
    assert refused(mine, lambda r: r.keys("*"))
    assert refused(mine, lambda r: r.set(KEYS.deployment_verdict(other_id, 2), '{"accepted": false}'))
    assert refused(mine, lambda r: r.hset(KEYS.code(other), "source", "evil"))
    admin = redis.Redis.from_url(system.url)
    assert admin.lindex(other_pointer, 0) == other.encode()
    admin.close()


def test_no_vehicle_can_stop_or_revoke_a_worker_and_edges_ignore_remote_control(system: LocalSystem) -> None:
    mine = vehicle_one(system)
    for db in range(16):
        assert refused(mine, lambda r, db=db: r.publish(f"/{db}.celery.pidbox", "shutdown"))  # type: ignore[misc]
    assert refused(mine, lambda r: r.lpush("_kombu.binding.celery.pidbox", "x"))
    # Even a shutdown that reached the channel (from the operator) stops no edge.
    from oodida_core.celery_app import make_celery_app

    app = make_celery_app(system.settings, "test-admin")
    edges = [name for name in ("vehicle-1", "vehicle-2")]
    app.control.broadcast(
        "shutdown", destination=["client-1@" + os.uname().nodename, "client-2@" + os.uname().nodename]
    )
    app.control.revoke("anything", terminate=True)
    time.sleep(3)
    assert all(system.procs[name].poll() is None for name in edges)
    with Oodida(settings=system.client_settings("alice")) as o:
        result = o.submit(SPEC).wait(timeout=60)
    assert sorted(result.iterations[0].onboard) == [1, 2]


def test_the_operator_makes_a_vehicles_credentials_with_one_command_and_revokes_them(
    system: LocalSystem,
) -> None:
    env = {**os.environ, "OODIDA_REDIS_URL": system.url}
    cli = [sys.executable, "-m", "oodida_user._cli", "vehicles"]
    out = subprocess.run([*cli, "add", "7"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    urls = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert "oodida-vehicle-7:" in urls["OODIDA_REDIS_URL"] and "shown once" in out.stderr
    seven = (urls["OODIDA_REDIS_URL"], urls.get("OODIDA_READ_URL", urls["OODIDA_REDIS_URL"]))
    assert not refused(seven, lambda r: r.llen("client.7"))
    assert refused(seven, lambda r: r.llen("client.1"))
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert "7" in listed.stdout.split()
    held = redis.Redis.from_url(urls["OODIDA_REDIS_URL"])
    held.ping()
    out = subprocess.run([*cli, "revoke", "7"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with pytest.raises(redis.exceptions.RedisError):
        redis.Redis.from_url(urls["OODIDA_REDIS_URL"]).ping()  # new connections refused
    with pytest.raises(redis.exceptions.RedisError):
        held.llen("client.7")  # and the open one was closed
    held.close()
