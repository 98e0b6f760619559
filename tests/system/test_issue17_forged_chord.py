"""Red team of issue 17 on a live system with ACLs: a hostile vehicle against another user's
quorum assignment."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from oodida_core.protocol.keys import Keys, chord_group_id
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

HONEST = (1, 2, 3)
EVIL = 4


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(0, data_dir=tmp_path_factory.mktemp("issue17-attacks"), acl=True) as s:
        s.start_edge("honest", "1-3")
        s.start_edge("evil", str(EVIL))
        s.wait_ready(clients=EVIL)
        yield s


def _sent(admin: redis.Redis, aid: str, timeout: float = 20.0) -> None:
    """Until the cloud has sent iteration 0's tasks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if admin.hget(Keys().assignment(aid), "sent") is not None:
            return
        time.sleep(0.05)
    raise AssertionError(f"assignment {aid}: iteration 0 was never sent")


def test_a_forged_chord_done_marker_does_not_make_other_vehicles_skip(system: LocalSystem) -> None:
    """Every vehicle may write the chord's state (its answers join it); a done marker it forges
    on another user's quorum iteration must not make the other clients skip their tasks (they
    skipped, and the iteration kept the hostile vehicle's answer alone)."""
    honest = system.procs["honest"].pid
    os.killpg(honest, signal.SIGSTOP)  # their tasks wait for them while the marker is forged
    evil = redis.Redis.from_url(system.vehicle_urls["evil"].url)
    admin = redis.Redis.from_url(system.url)
    o = Oodida(settings=system.client_settings("alice"))
    try:
        a = o.submit(
            {
                "name": "quorum under attack",
                "mode": "measurement",
                "clients": [*HONEST, EVIL],
                "min_clients": 2,
                "signals": "speed",
                "onboard": "max",
                "offboard": "max",
                "frequency": 10,
                "samples": 10,
                "iterations": 1,
                "timeout": 20,
            }
        )
        _sent(admin, a.id)
        assert evil.set(f"celery-taskset-meta-{chord_group_id(a.id, 0)}.c", "done", ex=600)
        os.killpg(honest, signal.SIGCONT)
        result = a.wait(timeout=60, progress=False)
    finally:
        os.killpg(honest, signal.SIGCONT)
        evil.close()
        admin.close()
        o.close()
    (it,) = result.iterations
    assert set(HONEST) <= set(it.onboard) | set(it.late), (it.onboard, it.missing, it.late)


def test_the_cloud_marks_a_quorum_closed_iteration_where_no_vehicle_can_write(system: LocalSystem) -> None:
    """What the clients skip on is the cloud's marker: set when it closed the iteration at its
    quorum, readable but not writable with a vehicle's credentials."""
    honest = system.procs["honest"].pid
    os.killpg(honest, signal.SIGSTOP)  # only the hostile vehicle answers: the quorum of 1 closes
    evil = redis.Redis.from_url(system.vehicle_urls["evil"].url)
    reader = redis.Redis.from_url(system.vehicle_urls["evil"].read_url or system.vehicle_urls["evil"].url)
    admin = redis.Redis.from_url(system.url)
    o = Oodida(settings=system.client_settings("alice"))
    try:
        a = o.submit(
            {
                "name": "quorum of one",
                "mode": "measurement",
                "clients": [*HONEST, EVIL],
                "min_clients": 1,
                "signals": "speed",
                "onboard": "max",
                "offboard": "max",
                "frequency": 10,
                "samples": 10,
                "iterations": 1,
                "timeout": 20,
            }
        )
        result = a.wait(timeout=60, progress=False)
        marker = Keys().iteration_closed(a.id, 0)
        assert admin.get(marker) == b"quorum"
        assert reader.get(marker) == b"quorum"
        with pytest.raises(redis.exceptions.NoPermissionError):
            evil.delete(marker)
    finally:
        os.killpg(honest, signal.SIGCONT)
        for r in (evil, reader, admin):
            r.close()
        o.close()
    (it,) = result.iterations
    assert it.ended_by == "quorum" and set(it.onboard) == {EVIL} and set(it.late) == set(HONEST)
