"""Bounded storage (issue 12, item 5): per-user limits the operator sets, and Redis's own
``maxmemory``, refuse what would grow Redis without bound, with an error naming the limit and
its value, and lose nothing that was stored before.

Each test reproduces an attack first: iterations of results near 1 MiB per client with
``iterations: 0``; assignments started without end; a deployment to thousands of client ids
that never registered; deployments that stay pending; requests against a full Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fault_kit import fault_settings, wait_for

from oodida_core.protocol.errors import OodidaError, QuotaError
from oodida_core.protocol.keys import Keys, client_queue
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
LIMITS = {
    "max_iteration_bytes": 3 * MIB,
    "max_assignment_bytes": 8 * MIB,
    "max_assignments": 2,
    "max_pending_deployments": 2,
    "max_unknown_clients": 5,
}
MODULE = "def custom_code(x):\n    return len(x)\n"
BIG = {  # collect of 20,000 readings: about 2 MB of JSON per iteration (on-board values and value)
    "name": "big results",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "collect",
    "offboard": "collect",
    "frequency": 1,
    "samples": 20_000,
    "iterations": 0,
    "timeout": 30,
}
SMALL = {**BIG, "name": "small", "onboard": "average", "samples": 1}


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    """Three clients, one cloud worker, the limits above."""
    settings = fault_settings(**LIMITS)
    with LocalSystem(3, data_dir=tmp_path_factory.mktemp("quotas"), settings=settings) as system:
        yield system


def connect(system: LocalSystem, user: str) -> Oodida:
    return Oodida(system.url, user=user, token=system.token(user))


def test_results_beyond_the_per_assignment_limit_end_it_with_the_limit_named_and_keep_what_was_stored(
    limited: LocalSystem,
) -> None:
    with connect(limited, "filler") as o:
        admin = redis.Redis.from_url(limited.url)
        before = used_memory(admin)
        a = o.submit(BIG)
        with pytest.raises(QuotaError, match=r"OODIDA_MAX_ASSIGNMENT_BYTES.*8388608") as caught:
            a.wait(timeout=120, progress=False)
        print(f"refused: {caught.value}")
        result = a.result()
        assert result.status == "failed"
        assert len(result.iterations) >= 1  # what was stored before is still there
        for it in result.iterations:
            assert sorted(it.onboard) == [1, 2, 3] and len(it.onboard[1]["speed"]) == 20_000
        grown = used_memory(admin) - before
        print(f"{len(result.iterations)} iterations stored; Redis grew by {grown / MIB:.1f} MiB")
        # the stored iterations (at most 8 MiB) and Celery's copies of the answers (about as much)
        assert grown < 24 * MIB
        assert a.status() == "failed"


def test_an_iteration_beyond_the_per_iteration_limit_is_refused_with_the_limit_named(
    limited: LocalSystem,
) -> None:
    with connect(limited, "wide") as o:
        spec = {**BIG, "samples": 60_000, "iterations": 3}  # about 6 MB per iteration
        a = o.submit(spec)
        with pytest.raises(QuotaError, match=r"OODIDA_MAX_ITERATION_BYTES.*3145728"):
            a.wait(timeout=120, progress=False)
        assert a.result().status == "failed"
        assert a.result().iterations == []


def test_concurrent_assignments_beyond_the_limit_are_refused_and_a_slot_frees_when_one_ends(
    limited: LocalSystem,
) -> None:
    with connect(limited, "busy") as o:
        first, second = o.submit(SMALL), o.submit(SMALL)
        with pytest.raises(QuotaError, match=r"OODIDA_MAX_ASSIGNMENTS.*\b2\b"):
            o.submit(SMALL)
        wait_for(lambda: first.record().iterations_done >= 1, 30, "a first iteration")
        first.cancel()
        third = o.submit({**SMALL, "iterations": 1})
        assert third.wait(timeout=60, progress=False).status == "done"
        assert first.result().iterations  # the cancelled one is still readable
        assert second.status() == "running"
        second.cancel()
        assert not o.redis.smembers(Keys().running(o.user))  # every slot given back


def test_a_deployment_to_thousands_of_unregistered_clients_is_refused_and_stores_nothing(
    limited: LocalSystem, tmp_path: Path
) -> None:
    module = tmp_path / "count.py"
    module.write_text(MODULE)
    with connect(limited, "spray") as o:
        admin = redis.Redis.from_url(limited.url)
        keys_before, memory_before = admin.dbsize(), used_memory(admin)
        with pytest.raises(QuotaError, match=r"OODIDA_MAX_UNKNOWN_CLIENTS.*\b5\b"):
            o.deploy_onboard(module, clients=list(range(10_001, 12_001))).wait(timeout=20)
        grown = admin.dbsize() - keys_before
        print(f"2,000 unknown ids: {grown} keys, {(used_memory(admin) - memory_before) / 1024:.0f} KiB")
        assert grown < 20
        assert not admin.exists(client_queue(10_001))
        # A few unknown ids (a vehicle not started yet) are fine; their queue expires.
        d = o.deploy_onboard(module, clients=[1, 20_001])
        wait_for(lambda: d.record().status == "sent", 30, "the deployment sent")
        # "sent" is recorded before the installs are published and their queues given a TTL
        wait_for(lambda: admin.ttl(client_queue(20_001)) > 0, 10, "the unknown client's queue")
        ttl = admin.ttl(client_queue(20_001))
        assert 0 < ttl <= limited.settings.assignment_ttl
        assert 0 < admin.ttl(Keys().pending_installs(20_001)) <= limited.settings.assignment_ttl


def test_pending_deployments_beyond_the_limit_are_refused_and_earlier_ones_stay_readable(
    limited: LocalSystem, tmp_path: Path
) -> None:
    module = tmp_path / "count.py"
    module.write_text(MODULE)
    with connect(limited, "waiting") as o:
        first = o.deploy_onboard(module, clients=[30_001])  # never answers: stays pending
        second = o.deploy_onboard(module, clients=[30_002])
        wait_for(lambda: second.record().status == "sent", 30, "the second deployment sent")
        with pytest.raises(QuotaError, match=r"OODIDA_MAX_PENDING_DEPLOYMENTS.*\b2\b"):
            o.deploy_onboard(module, clients=[1]).wait(timeout=20)
        assert first.record().targets == (30_001,)
        # Off-board deployments end at once and do not count.
        assert o.deploy_offboard(module).wait(timeout=30) is not None


def test_a_full_redis_refuses_requests_with_maxmemory_named_and_keeps_stored_results(
    limited: LocalSystem, tmp_path: Path
) -> None:
    module = tmp_path / "count.py"
    module.write_text(MODULE)
    with connect(limited, "late") as o:
        done = o.submit({**SMALL, "iterations": 2})
        assert done.wait(timeout=60, progress=False).status == "done"
        admin = redis.Redis.from_url(limited.url)
        admin.set("filler", b"x" * 8 * MIB)  # so that a few KiB more or less do not matter
        try:
            # Near the limit (above 90 %): the cloud takes no new work, and says why.
            admin.config_set("maxmemory", int(used_memory(admin) / 0.95))
            with pytest.raises(QuotaError, match=r"maxmemory=\d+") as near:
                o.submit(SMALL)
            print(f"near: {near.value}")
            # Again from what is used now: memory freed in between must not take Redis below
            # 90 % (the deploy once went through on a loaded machine; the cause was not seen).
            admin.config_set("maxmemory", int(used_memory(admin) / 0.95))
            with pytest.raises(QuotaError, match=r"maxmemory=\d+"):
                o.deploy_onboard(module, clients=[1]).wait(timeout=20)
            # At the limit: Redis refuses the request itself.
            admin.config_set("maxmemory", used_memory(admin) // 2)
            with pytest.raises(QuotaError, match=r"maxmemory is reached") as full:
                o.submit(SMALL)
            print(f"full: {full.value}")
        finally:
            admin.config_set("maxmemory", 0)
            admin.delete("filler")
        assert len(done.result().iterations) == 2
        assert o.submit({**SMALL, "iterations": 1}).wait(timeout=60, progress=False).status == "done"


def test_quota_error_is_an_oodida_error() -> None:
    assert issubclass(QuotaError, OodidaError)
