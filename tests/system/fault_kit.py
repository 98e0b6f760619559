"""Helpers of the fault-injection tests: a seeded random source, kills, waits and checks.

Every test that kills something at random moments takes ``fault_rng``: its seed comes from
``OODIDA_FAULT_SEED`` (or is drawn) and is printed, so pytest shows it with a failure and the
same moments can be replayed with ``OODIDA_FAULT_SEED=<seed>``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import pytest
import redis

from oodida_core.settings import Settings
from oodida_ops.local import LocalSystem
from oodida_ops.redis_server import EmbeddedRedis
from oodida_user import Oodida

T = TypeVar("T")

REPEATS = int(os.environ.get("OODIDA_FAULT_REPEATS") or 3)


@pytest.fixture()
def fault_rng() -> random.Random:
    seed = int(os.environ.get("OODIDA_FAULT_SEED") or random.SystemRandom().randrange(2**31))
    print(f"OODIDA_FAULT_SEED={seed}")  # shown by pytest when the test fails
    return random.Random(seed)


def fault_settings(**changes: object) -> Settings:
    """Settings of a system under fault injection: a task taken by a killed worker comes back
    after 4 s (production: 2 days, long after every deadline)."""
    values: dict[str, object] = {"visibility_timeout": 4, "heartbeat_interval": 1.0}
    values.update(changes)
    return Settings.from_env().model_copy(update=values)


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """``check()``'s first truthy value within ``timeout`` seconds; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            value = None  # Redis is coming back: ask again
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


def live_ids(o: Oodida) -> set[int]:
    return {c.client_id for c in o.clients()}


def wait_live(o: Oodida, ids: Iterable[int], timeout: float = 30.0) -> None:
    want = set(ids)
    wait_for(lambda: want <= live_ids(o), timeout, f"clients {sorted(want)} live")


def wait_gone(o: Oodida, ids: Iterable[int], timeout: float = 30.0) -> None:
    gone = set(ids)
    wait_for(lambda: not gone & live_ids(o), timeout, f"clients {sorted(gone)} no longer live")


def kill(system: LocalSystem, name: str) -> None:
    """SIGKILL a process of the system (its whole process group: sandboxes too)."""
    system.stop_process(name, signal.SIGKILL)


def kill_redis(system: LocalSystem) -> int:
    """SIGKILL the embedded Redis: no chance to flush (append-only, fsync every second)."""
    assert system.redis_server is not None
    port = system.redis_server.port
    system.redis_server.kill()
    return port


def restart_redis(system: LocalSystem, port: int) -> None:
    """The same server again: same port, same data directory, its append-only file replayed."""
    system.redis_server = EmbeddedRedis(system.data_dir, port).start()


def iteration_events(o: Oodida, aid: str) -> list[int]:
    """Every ``iteration`` event of an assignment, in order (one per stored iteration)."""
    return [int(e["index"]) for _, e in o.store.read_events(aid) if e.get("type") == "iteration"]


def end_events(o: Oodida, aid: str) -> list[str]:
    return [e["status"] for _, e in o.store.read_events(aid) if e.get("type") == "end"]
