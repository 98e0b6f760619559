"""The live registry: clients register when ready, beat, leave on a clean shutdown, and go
stale when killed; a fleet's supervisor brings a dead worker process back."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from oodida_core.state.registry import Registry
from oodida_ops.local import LocalSystem


def _registry(system: LocalSystem) -> Registry:
    return Registry(redis.Redis.from_url(system.url), system.settings)


def _wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_client_stopped_cleanly_leaves_the_registry_at_once(fresh_system: LocalSystem) -> None:
    registry = _registry(fresh_system)
    fresh_system.start_edge("extra", "7", processes=1)
    assert _wait_for(lambda: 7 in {c.client_id for c in registry.live()})
    info = next(c for c in registry.live() if c.client_id == 7)
    assert info.worker.startswith("client-7@") and info.pid > 0 and "speed" in info.signals
    fresh_system.stop_process("extra", signal.SIGTERM)
    assert 7 not in registry.known()
    assert 7 not in {c.client_id for c in registry.live()}


@pytest.mark.slow
def test_a_killed_client_is_not_live_after_a_few_missed_heartbeats(fresh_system: LocalSystem) -> None:
    registry = _registry(fresh_system)
    proc = fresh_system.start_edge("victim", "8", processes=1)
    assert _wait_for(lambda: 8 in {c.client_id for c in registry.live()})
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.monotonic()
    assert 8 in registry.known()  # no chance to leave
    assert _wait_for(lambda: 8 not in {c.client_id for c in registry.live()})
    window = fresh_system.settings.live_window
    assert time.monotonic() - killed_at <= window + fresh_system.settings.heartbeat_interval + 1


@pytest.mark.slow
def test_the_fleet_supervisor_restarts_a_worker_process_that_died(fresh_system: LocalSystem) -> None:
    registry = _registry(fresh_system)
    fresh_system.start_edge("fleet2", "11-14", processes=2)
    assert _wait_for(lambda: {11, 12, 13, 14} <= {c.client_id for c in registry.live()})
    before = {c.client_id: c.pid for c in registry.live() if c.client_id >= 11}
    assert before[11] == before[12] != before[13] == before[14]
    os.kill(before[13], signal.SIGKILL)
    assert _wait_for(
        lambda: (
            {c.client_id: c.pid for c in registry.live() if c.client_id >= 13}.get(13)
            not in (None, before[13])
        )
    )
    after = {c.client_id: c.pid for c in registry.live() if c.client_id >= 11}
    assert after[11] == before[11] and after[13] == after[14] != before[13]
