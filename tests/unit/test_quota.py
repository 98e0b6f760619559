"""The pure checks of bounded storage (oodida_core/state/quota.py): each refusal names its limit and
the limit's value; nothing at or under a limit is refused."""

from __future__ import annotations

import pytest
import redis
from kombu.exceptions import BatchPublishError

from oodida_core.protocol.errors import OodidaError, QuotaError
from oodida_core.protocol.wire import AssignmentRecord, Reply
from oodida_core.settings import Settings, env_var_names
from oodida_core.state.quota import (
    assignment_refusal,
    iteration_refusal,
    memory_refusal,
    out_of_memory,
    out_of_memory_cause,
    unknown_refusal,
)
from oodida_user.replies import raise_for


def test_an_iteration_at_the_limit_is_stored_and_one_byte_more_is_refused_naming_the_limit() -> None:
    assert iteration_refusal(3, 1000, 1000) is None
    refusal = iteration_refusal(3, 1001, 1000)
    assert refusal is not None
    assert refusal.limit == "OODIDA_MAX_ITERATION_BYTES"
    assert "OODIDA_MAX_ITERATION_BYTES=1000" in refusal.message and "iteration 3" in refusal.message


def test_an_assignment_counts_what_it_stored_before_against_its_limit() -> None:
    assert assignment_refusal(2, 600, 400, 1000) is None
    refusal = assignment_refusal(2, 600, 401, 1000)
    assert refusal is not None and refusal.limit == "OODIDA_MAX_ASSIGNMENT_BYTES"
    assert "OODIDA_MAX_ASSIGNMENT_BYTES=1000" in refusal.message and "1,001 bytes" in refusal.message


def test_registered_clients_are_never_counted_as_unknown() -> None:
    assert unknown_refusal(range(1, 1001), set(range(1, 1001)), 0) is None
    assert unknown_refusal([1, 2, 900, 901], {1, 2}, 2) is None
    refusal = unknown_refusal([1, 900, 901, 902], {1}, 2)
    assert refusal is not None and refusal.limit == "OODIDA_MAX_UNKNOWN_CLIENTS"
    assert "OODIDA_MAX_UNKNOWN_CLIENTS=2" in refusal.message and "900-902" in refusal.message


def test_a_refusal_of_thousands_of_unknown_ids_stays_short() -> None:
    refusal = unknown_refusal(range(1, 40_000, 2), set(), 10)
    assert refusal is not None and len(refusal.message) < 400
    assert "20,000 of the clients" in refusal.message


@pytest.mark.parametrize(
    ("used", "maxmemory", "refused"),
    [(10**9, 0, False), (89, 100, False), (90, 100, True), (150, 100, True)],
)
def test_memory_is_refused_from_ninety_percent_of_maxmemory_and_never_without_one(
    used: int, maxmemory: int, refused: bool
) -> None:
    refusal = memory_refusal({"used_memory": used, "maxmemory": maxmemory})
    assert (refusal is not None) is refused
    if refusal is not None:
        assert refusal.limit == "maxmemory" and f"maxmemory={maxmemory}" in refusal.message


def test_redis_out_of_memory_is_found_behind_kombus_wrapping() -> None:
    oom = redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    try:
        try:
            raise oom
        except redis.exceptions.RedisError as exc:
            raise BatchPublishError("Redis publish batch failed; delivery is uncertain") from exc
    except BatchPublishError as wrapped:
        assert out_of_memory_cause(wrapped) is oom
    assert out_of_memory_cause(redis.exceptions.ConnectionError("gone")) is None
    assert "maxmemory is reached" in out_of_memory(oom).message


def test_a_quota_reply_raises_quota_error_naming_the_limit() -> None:
    reply = Reply(
        ok=False,
        error="quota",
        message="the limit OODIDA_MAX_ASSIGNMENTS=2 is reached",
        value="OODIDA_MAX_ASSIGNMENTS",
    )
    with pytest.raises(QuotaError, match="OODIDA_MAX_ASSIGNMENTS=2") as caught:
        raise_for(reply)
    assert caught.value.limit == "OODIDA_MAX_ASSIGNMENTS"
    assert isinstance(caught.value, OodidaError)


def test_records_written_before_the_limits_existed_still_decode() -> None:
    record = AssignmentRecord(id="a", user="u", status="done", spec={}, created_at=0.0)
    assert record.limit is None


def test_every_limit_is_a_setting_with_a_positive_default() -> None:
    settings = Settings.from_env({})
    for name in ("max_iteration_bytes", "max_assignment_bytes", "max_assignments", "max_pending_deployments"):
        assert getattr(settings, name) > 0
        assert f"OODIDA_{name.upper()}" in env_var_names()
    assert Settings.from_env({"OODIDA_MAX_ASSIGNMENTS": "3"}).max_assignments == 3
    with pytest.raises(OodidaError, match="OODIDA_MAX_ASSIGNMENTS"):
        Settings.from_env({"OODIDA_MAX_ASSIGNMENTS": "0"})
