"""Every worker, cloud and edges, answers Celery's inspection (so Flower lists it), and none
obeys a remote-control command that changes it: ``shutdown``, ``revoke`` with terminate,
``pool_restart``, ``add_consumer``, ``cancel_consumer``, ... sent with the operator's or with a
vehicle's credentials leave every worker with its pid and its queues, and the fleet serves the
next assignment. Real Redis (6.2, ACLs on), real workers."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Exchange, Producer

from oodida_core.messaging.celery_app import make_celery_app
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

HOST = socket.gethostname()
WORKERS = {
    f"cloud-1@{HOST}": ["cloud"],
    f"client-1@{HOST}": ["client.1"],
    f"clients-2-3@{HOST}": ["client.2", "client.3"],
}
SPEC = {
    "name": "after the broadcasts",
    "mode": "measurement",
    "clients": [1, 2, 3],
    "signals": "speed",
    "onboard": "max",
    "frequency": 1,
    "samples": 10,
    "iterations": 1,
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(0, data_dir=tmp_path_factory.mktemp("remote"), acl=True) as system:
        system.start_edge("client-1", "1")
        system.start_edge("clients-2-3", "2-3")
        system.wait_ready(clients=3)
        yield system


def _app(system: LocalSystem, url: str, name: str) -> Celery:
    return make_celery_app(system.settings.model_copy(update={"redis_url": url}), name)


def _inspect(app: Celery, method: str) -> dict[str, Any]:
    for _ in range(10):  # a worker just started may miss the first broadcast
        found = getattr(app.control.inspect(timeout=2.0), method)() or {}
        if set(WORKERS) <= set(found):
            return found
    pytest.fail(f"not every worker answered {method}: {sorted(found)}")


def test_every_worker_answers_what_flowers_worker_pages_ask(system: LocalSystem) -> None:
    admin = _app(system, system.url, "operator")
    try:
        assert all(r == {"ok": "pong"} for r in _inspect(admin, "ping").values())
        queues = _inspect(admin, "active_queues")
        assert {w: sorted(q["name"] for q in queues[w]) for w in WORKERS} == WORKERS
        for method in ("stats", "registered", "conf", "active", "reserved", "scheduled", "revoked"):
            _inspect(admin, method)
        secrets = [u.split(":")[2].split("@")[0] for u in system.role_urls.values()]
        secrets += [v.url.split(":")[2].split("@")[0] for v in system.vehicle_urls.values()]
        replies = json.dumps([_inspect(admin, m) for m in ("stats", "conf")])
        assert not [s for s in secrets if s in replies]  # no password in what they tell
    finally:
        admin.close()


def _attack(app: Celery) -> None:
    """Every command that would stop, revoke or reconfigure a worker, to every worker."""
    control = app.control
    control.broadcast("shutdown")
    control.revoke("anything", terminate=True, signal="SIGKILL")
    control.broadcast("pool_restart", arguments={"reload": True})
    control.add_consumer("client.2", destination=[f"cloud-1@{HOST}"])  # the cloud taking client 2's tasks
    control.cancel_consumer("cloud")
    control.cancel_consumer("client.1")
    control.broadcast("hello", arguments={"from_node": "x@y", "revoked": ["anything"]})
    control.rate_limit("oodida.edge.onboard", "1/h")
    control.time_limit("oodida.edge.onboard", soft=1, hard=1)
    control.pool_shrink(1)
    control.disable_events()


def test_no_worker_obeys_a_command_that_changes_it_from_the_operator_or_a_vehicle(
    system: LocalSystem,
) -> None:
    admin = _app(system, system.url, "operator")
    vehicle = _app(system, system.vehicle_urls["client-1"].url, "vehicle-1")
    try:
        before = {w: s["pid"] for w, s in _inspect(admin, "stats").items() if w in WORKERS}
        _attack(admin)
        _attack(vehicle)
        time.sleep(3)
        assert all(proc.poll() is None for proc in system.procs.values())
        after = {w: s["pid"] for w, s in _inspect(admin, "stats").items() if w in WORKERS}
        assert after == before
        queues = _inspect(admin, "active_queues")
        assert {w: sorted(q["name"] for q in queues[w]) for w in WORKERS} == WORKERS
        assert all(r == [] for w, r in _inspect(admin, "revoked").items() if w in WORKERS)
        with Oodida(settings=system.client_settings("alice")) as o:
            result = o.submit(SPEC).wait(timeout=60, progress=False)
        assert result.status == "done"
        assert sorted(result.iterations[0].onboard) == [1, 2, 3]
        for name in ("cloud-1", "client-1", "clients-2-3"):
            log = (system.log_dir / f"{name}.log").read_text()
            assert "remote control 'shutdown' ignored" in log, name
    finally:
        admin.close()
        vehicle.close()


def test_a_worker_sends_no_reply_anywhere_but_the_reply_exchange(system: LocalSystem) -> None:
    """A forged command asking for its reply on a task queue (here ``cloud``) is dropped."""
    pidbox = Exchange("celery.pidbox", "fanout", durable=False, delivery_mode="transient")
    with Connection(system.vehicle_urls["client-1"].url) as conn:
        Producer(conn).publish(
            {
                "method": "ping",
                "arguments": {},
                "destination": None,
                "reply_to": {"exchange": "cloud", "routing_key": "cloud"},
                "ticket": "forged",
            },
            exchange=pidbox,
            declare=[pidbox],  # a fanout exchange: PUBLISH on its channel
            serializer="json",
        )
    deadline = time.monotonic() + 20
    names = ("cloud-1", "client-1", "clients-2-3")
    while time.monotonic() < deadline:
        logs = [(system.log_dir / f"{n}.log").read_text() for n in names]
        if all("its reply would go elsewhere" in log for log in logs):
            break
        time.sleep(0.5)
    else:
        pytest.fail("a worker did not drop the command with a reply on a task queue")
