"""Honest outcomes and bounded streams, on a real system: code that fails everywhere makes a
failed iteration and a failed assignment; a stream keeps only its latest iterations and folds
the rest into a summary; an unbounded stream warns at submit."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from oodida_core.protocol.keys import Keys
from oodida_core.settings import Settings
from oodida_ops.local import LocalSystem
from oodida_user import Oodida, StreamWarning

# Passes the dry run (a list of 100 numbers), fails on the real input (20 readings, 5 values).
FAILS = (
    "def custom_code(x):\n"
    "    if len(x) != 100:\n"
    "        raise ZeroDivisionError('not the length I was written for')\n"
    "    return sum(x) / len(x)\n"
)
FAILS_ON_FIVE = (
    "def custom_code(x):\n    if len(x) == 5:\n        raise TypeError('five')\n    return len(x)\n"
)
BASE = {
    "name": "outcomes",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "average",
    "offboard": "collect",
    "frequency": 1,
    "samples": 20,
    "iterations": 1,
}


@pytest.fixture()
def user(system: LocalSystem) -> Iterator[Oodida]:
    name = f"outcomes{time.monotonic_ns()}"
    with Oodida(system.url, user=name, token=system.token(name)) as o:
        yield o


def test_code_that_fails_on_every_client_fails_the_iteration_and_the_assignment(
    user: Oodida, tmp_path: Path
) -> None:
    module = tmp_path / "fails.py"
    module.write_text(FAILS)
    user.deploy_onboard(module).wait(timeout=60)
    result = user.submit(dict(BASE, onboard="custom", iterations=2)).wait(timeout=120, progress=False)
    assert result.status == "failed"
    assert [it.status for it in result.iterations] == ["failed", "failed"]
    assert all(len(it.failed) == 5 and not it.onboard for it in result.iterations)
    assert result.error is not None and result.error.startswith(
        "every iteration failed; the last: iteration 1"
    )
    assert "ZeroDivisionError" in result.error
    record = user.assignment(result.id).record()
    assert record.failed_iterations == 2
    # the chord still completed: every client answered, none made a header task raise
    assert all(it.ended_by == "complete" and not it.missing for it in result.iterations)


def test_an_assignment_with_one_good_iteration_is_done_and_says_which_failed(
    user: Oodida, tmp_path: Path
) -> None:
    module = tmp_path / "fails.py"
    module.write_text(FAILS_ON_FIVE)
    user.deploy_offboard(module).wait(timeout=60)
    good = user.submit(dict(BASE, iterations=1)).wait(timeout=60, progress=False)
    assert good.status == "done" and good.iterations[0].status == "ok"
    bad = user.submit(dict(BASE, offboard="custom", iterations=1)).wait(timeout=60, progress=False)
    assert bad.status == "failed" and bad.iterations[0].status == "failed"
    assert "off-board step failed" in (bad.error or "")


def test_a_stream_keeps_its_latest_iterations_and_folds_the_older_ones(
    user: Oodida, system: LocalSystem
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stream with a keep does not warn
        a = user.submit(dict(BASE, name="capped", iterations=0, keep=3, timeout=10))
    try:
        deadline = time.monotonic() + 90
        while a.record().iterations_done < 10:
            assert time.monotonic() < deadline, "the stream did not reach 10 iterations in 90 s"
            time.sleep(0.2)
    finally:
        a.cancel()
    # the running iteration may still be stored (and an older one folded) just after the end
    deadline = time.monotonic() + 10
    while len((result := a.result()).iterations) != 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    done = user.assignment(a.id).record().iterations_done
    kept = [it.index for it in result.iterations]
    assert len(kept) == 3 and kept == list(range(done - 3, done))
    folded = user.assignment(a.id).record().folded
    assert folded is not None
    assert (folded.count, folded.first, folded.last) == (done - 3, 0, done - 4)
    assert folded.kept == 5 * folded.count  # five clients kept in each folded iteration
    speed = folded.values["speed"]  # collect: {client: {"speed": average}}, summarised per signal
    assert set(folded.values) == {"speed"} and speed.n == 5 * folded.count
    assert speed.min is not None and speed.max is not None and 0 <= speed.min <= speed.max
    # what Redis holds shrinks with the fold: only the kept iterations' bytes are counted
    r = redis.Redis.from_url(system.url)
    try:
        keys = Keys(Settings.from_env(redis_url=system.url).key_prefix)
        stored = r.hgetall(keys.iterations(a.id))
        assert sorted(int(k) for k in stored) == kept
        assert int(r.hget(keys.assignment(a.id), "bytes") or 0) == sum(len(v) for v in stored.values())
    finally:
        r.close()


def test_a_stream_without_an_end_or_a_keep_warns_at_submit_with_the_way_to_stop_it(user: Oodida) -> None:
    with pytest.warns(StreamWarning, match="runs until cancelled") as caught:
        a = user.submit(dict(BASE, name="forgotten", iterations=0))
    try:
        assert f"oodida cancel {a.id}" in str(caught[0].message)
    finally:
        a.cancel()


def test_a_stream_cannot_keep_more_than_the_operator_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OODIDA_MAX_KEPT_ITERATIONS", "2")
    with (
        LocalSystem(2, data_dir=tmp_path / "cap") as system,
        Oodida(system.url, user="capper", token=system.token("capper")) as o,
    ):
        spec = dict(BASE, name="over the cap", iterations=6, keep=100)
        result = o.submit(spec).wait(timeout=120, progress=False)
        assert result.status == "done"
        assert [it.index for it in result.iterations] == [4, 5]
        folded = o.assignment(result.id).record().folded
        assert folded is not None and folded.count == 4
        assert json.loads(folded.to_json())["last"] == 3
