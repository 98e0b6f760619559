"""Each vehicle holds its own Redis credentials (``oodida vehicles add``): tried against another
vehicle's queue, results, pointers, verdicts, pending installs, registry entry and heartbeat
and code, against assignments and their results, against the messages in flight and against
remote control (a ``shutdown`` broadcast), everything is refused or ignored, and the fleet
keeps working. Real Redis (6.2, embedded), real workers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from oodida_core.protocol.keys import Keys
from oodida_core.protocol.wire import ClientInfo
from oodida_core.state.registry import Registry
from oodida_ops.local import LocalSystem
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
    """Two vehicles, each an edge process with its own credentials, and a cloud; a third
    vehicle takes its readings in real time (``--realtime``)."""
    data = tmp_path_factory.mktemp("vehicles")
    with LocalSystem(0, data_dir=data, acl=True) as system:
        system.start_edge("vehicle-1", "1")
        system.start_edge("vehicle-2", "2")
        system.realtime = True
        system.start_edge("vehicle-3", "3")
        system.realtime = False
        system.wait_ready(clients=3)
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
    # A vehicle may publish on the remote-control channel (on Redis 6.2 subscribing is
    # publishing), but no worker obeys a shutdown or revoke from anyone (test_remote_control.py).
    from oodida_core.messaging.celery_app import make_celery_app

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


def _live(system: LocalSystem) -> dict[int, ClientInfo]:
    admin = redis.Redis.from_url(system.url)
    try:
        return {c.client_id: c for c in Registry(admin, system.settings).live()}
    finally:
        admin.close()


def test_a_vehicle_cannot_overwrite_remove_or_age_another_vehicles_registry_entry(
    system: LocalSystem,
) -> None:
    genuine = _live(system)[2]
    forged = genuine.model_copy(update={"signals": ("forged",), "worker": "evil@nowhere", "pid": 1})
    for url in vehicle_one(system):
        registry = Registry(redis.Redis.from_url(url), system.settings)
        with contextlib.suppress(redis.exceptions.RedisError):
            registry.register([forged])
        with contextlib.suppress(redis.exceptions.RedisError):
            registry.beat([2])
        with contextlib.suppress(redis.exceptions.RedisError):
            registry.unregister([2])
        registry.redis.close()
    after = _live(system)
    assert set(after) >= {1, 2, 3}, "vehicle 1 removed vehicle 2 from the registry"
    assert after[2].signals == genuine.signals and after[2].worker == genuine.worker
    assert after[2].last_seen >= genuine.last_seen
    mine = vehicle_one(system)
    assert refused(mine, lambda r: r.set(KEYS.client_info(2), forged.to_json()))
    assert refused(mine, lambda r: r.delete(KEYS.client_info(2), KEYS.client_seen(2)))
    assert refused(mine, lambda r: r.set(KEYS.client_seen(2), "0"))
    assert refused(mine, lambda r: r.srem(KEYS.client_index, "2"))
    assert refused(mine, lambda r: r.sadd(KEYS.client_index, "99999"))
    assert not refused(mine, lambda r: r.get(KEYS.client_info(1)))


def test_a_vehicle_reads_no_assignment_nor_any_result(system: LocalSystem) -> None:
    mine = vehicle_one(system)
    with Oodida(settings=system.client_settings("alice")) as o:
        aid = o.submit(SPEC).wait(timeout=60).id
    assert refused(mine, lambda r: r.hget(KEYS.assignment(aid), "status"))
    assert refused(mine, lambda r: r.hgetall(KEYS.assignment(aid)))
    assert refused(mine, lambda r: r.hgetall(KEYS.iterations(aid)))
    assert refused(mine, lambda r: r.xrange(KEYS.events(aid)))
    assert refused(mine, lambda r: r.zrange(KEYS.user_assignments("alice"), 0, -1))
    assert not refused(mine, lambda r: r.get(KEYS.assignment_ended(aid)))


def test_a_real_time_vehicle_stops_reading_when_its_assignment_is_cancelled(system: LocalSystem) -> None:
    with Oodida(settings=system.client_settings("alice")) as o:
        a = o.submit({**SPEC, "clients": [3], "samples": 60, "timeout": 120})
        time.sleep(3)  # the vehicle is reading (60 samples at 1 Hz)
        a.cancel()
    admin = redis.Redis.from_url(system.url)
    deadline = time.monotonic() + 20
    meta = None
    while time.monotonic() < deadline and meta is None:
        meta = admin.get(f"celery-task-meta-{a.id}-i0-c3")
        time.sleep(0.2)
    admin.close()
    assert meta is not None, "the vehicle went on reading after the cancel"
    answer = json.loads(meta)["result"]
    assert answer["status"] == "skipped", answer
    assert answer["error"] == "assignment ended while reading"
