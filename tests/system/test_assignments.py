"""Assignments end to end against real processes: results checked against numpy."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from oodida_core.spec.model import LISTING_1_1 as PAPER_LISTING_1_1
from oodida_edge.onboard import OnboardParams, run_builtin
from oodida_edge.sources.simulated import SimulatedSensors
from oodida_ops.local import LocalSystem
from oodida_user import Oodida, SpecError

LISTING_1_1 = dict(PAPER_LISTING_1_1)

SENSORS = SimulatedSensors()


def readings(client: int, aid: str, iteration: int, signals: list[str], samples: int, freq: int = 1):
    return SENSORS.read(client, aid, iteration, signals, samples, freq)


def test_listing_1_1_returns_the_average_speed_of_each_of_five_clients(oodida: Oodida) -> None:
    a = oodida.submit(LISTING_1_1)
    result = a.wait(timeout=60)
    assert result.status == "done"
    assert len(result.iterations) == 1
    it = result.iterations[0]
    assert sorted(result.value) == [1, 2, 3, 4, 5]
    for cid in range(1, 6):
        expected = float(np.mean(readings(cid, a.id, 0, ["speed"], 1000)["speed"]))
        assert result.value[cid]["speed"] == pytest.approx(expected, rel=1e-12)
        assert it.onboard[cid] == result.value[cid]
        assert it.versions[cid] == "builtin"
    assert it.missing == () and it.failed == {} and it.discarded == {}
    assert it.finished_at >= it.started_at


NUMPY_STATS = {
    "average": np.mean,
    "min": np.min,
    "max": np.max,
    "median": np.median,
    "sum": np.sum,
    "std": np.std,
    "variance": np.var,
}


@pytest.mark.parametrize("method", sorted(NUMPY_STATS))
def test_each_scalar_onboard_method_matches_numpy(oodida: Oodida, method: str) -> None:
    signals = ["speed", "rpm"]
    a = oodida.submit(
        {**LISTING_1_1, "onboard": method, "signals": signals, "samples": 500, "clients": [2, 4]}
    )
    result = a.wait(timeout=60)
    for cid in (2, 4):
        data = readings(cid, a.id, 0, signals, 500)
        for s in signals:
            assert result.value[cid][s] == pytest.approx(float(NUMPY_STATS[method](data[s])), rel=1e-9)


def test_count_collect_sample_histogram_and_threshold_onboard_match_numpy(oodida: Oodida) -> None:
    base = {**LISTING_1_1, "clients": [1, 3], "samples": 300, "signals": "rpm"}
    specs = {
        "count": {"onboard": "count"},
        "collect": {"onboard": "collect"},
        "sample": {"onboard": "sample", "sample_size": 25},
        "histogram": {"onboard": "histogram", "bins": 7},
        "threshold": {"onboard": "threshold", "threshold": 2000.0, "direction": "below"},
    }
    handles = {name: oodida.submit({**base, **extra}) for name, extra in specs.items()}
    for name, a in handles.items():
        value = a.wait(timeout=60).value
        for cid in (1, 3):
            x = readings(cid, a.id, 0, ["rpm"], 300)["rpm"]
            got = value[cid]["rpm"]
            if name == "count":
                assert got == 300
            elif name == "collect":
                assert np.allclose(got, x)
            elif name == "sample":
                assert len(got) == 25 and len(set(got)) == 25 and set(got) <= set(x.tolist())
            elif name == "histogram":
                assert sum(got["counts"]) == 300 and len(got["edges"]) == 8
                counts, _ = np.histogram(np.clip(x, got["edges"][0], got["edges"][-1]), bins=got["edges"])
                assert got["counts"] == counts.tolist()
            else:
                idx = np.flatnonzero(x < 2000.0)
                assert [h["index"] for h in got] == idx.tolist()
                assert [h["value"] for h in got] == pytest.approx(x[idx].tolist())


@pytest.mark.parametrize("offboard", ["average", "min", "max", "median", "sum"])
def test_each_offboard_method_combines_clients_like_numpy(oodida: Oodida, offboard: str) -> None:
    a = oodida.submit({**LISTING_1_1, "offboard": offboard, "signals": ["speed", "fuel_rate"]})
    result = a.wait(timeout=60)
    fn = NUMPY_STATS[offboard]
    for s in ("speed", "fuel_rate"):
        per_client = [np.mean(readings(c, a.id, 0, ["speed", "fuel_rate"], 1000)[s]) for c in range(1, 6)]
        assert result.value[s] == pytest.approx(float(fn(per_client)), rel=1e-9)
        assert [result.iterations[0].onboard[c][s] for c in range(1, 6)] == pytest.approx(per_client)


def test_federated_assignment_passes_each_iterations_model_into_the_next(oodida: Oodida) -> None:
    signals = ["speed", "rpm", "fuel_rate"]
    a = oodida.submit(
        {
            "name": "fl",
            "mode": "federated",
            "clients": "all",
            "signals": signals,
            "onboard": "train",
            "offboard": "fedavg",
            "frequency": 10,
            "samples": 400,
            "iterations": 3,
        }
    )
    result = a.wait(timeout=60)
    assert [it.index for it in result.iterations] == [0, 1, 2]
    model = None
    for it in result.iterations:
        for cid in range(1, 6):
            data = readings(cid, a.id, it.index, signals, 400, 10)
            expected = run_builtin(OnboardParams("train", tuple(signals)), data, model)
            assert it.onboard[cid]["weights"] == pytest.approx(expected["weights"])  # type: ignore[index]
        n = np.array([it.onboard[c]["n_samples"] for c in range(1, 6)], dtype=float)
        w = np.array([it.onboard[c]["weights"] for c in range(1, 6)])
        assert it.value["weights"] == pytest.approx((w * n[:, None]).sum(0) / n.sum())
        model = it.value
    assert result.value == result.iterations[-1].value


def test_monitoring_with_zero_iterations_runs_until_cancelled(oodida: Oodida) -> None:
    a = oodida.submit(
        {
            "name": "watch",
            "mode": "monitoring",
            "clients": [1, 2],
            "signals": "speed",
            "onboard": "threshold",
            "threshold": 100,
            "frequency": 10,
            "samples": 100,
            "iterations": 0,
        }
    )
    seen = []
    for it in a.iterations(timeout=60):
        seen.append(it.index)
        if len(seen) == 5:
            break
    assert seen == [0, 1, 2, 3, 4]
    assert a.status() == "running"
    result = a.cancel()
    assert result.status == "cancelled"
    count = len(result.iterations)
    assert count >= 5
    assert [it.index for it in result.iterations] == list(range(count))
    after = a.wait(timeout=10)
    assert after.status == "cancelled" and len(after.iterations) == count


def test_ten_assignments_submitted_at_once_all_finish(system: LocalSystem, oodida: Oodida) -> None:
    handles = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        user = f"analyst{i % 3}"
        with Oodida(oodida.settings.redis_url, user=user, token=system.token(user)) as o:
            a = o.submit({**LISTING_1_1, "name": f"job {i}", "iterations": 2})
            with lock:
                handles.append((o.settings.redis_url, f"analyst{i % 3}", a.id))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(handles) == 10
    for url, user, aid in handles:
        with Oodida(url, user=user, token=system.token(user)) as o:
            result = o.assignment(aid).wait(timeout=60)
            assert result.status == "done"
            assert [len(it.onboard) for it in result.iterations] == [5, 5]


def test_unknown_client_ids_are_rejected_by_the_cloud_naming_them(oodida: Oodida) -> None:
    with pytest.raises(SpecError) as err:
        oodida.submit({**LISTING_1_1, "clients": [1, 77, 78]})
    assert "clients" in err.value.fields
    assert "77-78" in str(err.value)


def test_k_clients_selects_k_live_clients_or_all_when_fewer(oodida: Oodida) -> None:
    three = oodida.submit({**LISTING_1_1, "clients": 3}).wait(timeout=60)
    assert len(three.clients) == 3 and set(three.clients) <= {1, 2, 3, 4, 5}
    many = oodida.submit({**LISTING_1_1, "clients": 50}).wait(timeout=60)
    assert many.clients == (1, 2, 3, 4, 5)


def test_the_cloud_validates_a_spec_that_bypassed_the_library(oodida: Oodida) -> None:
    from oodida_core.protocol.wire import TASK_START, SubmitRequest

    bad = {**LISTING_1_1, "samples": -5, "frequency": "fast"}
    oodida.store.create("bypass1", oodida.user, bad)
    oodida.app.send_task(
        TASK_START,
        args=(
            SubmitRequest(
                assignment_id="bypass1", user=oodida.user, token=oodida.settings.token, spec=bad
            ).to_wire(),
        ),
        queue="cloud",
    )
    a = oodida.assignment("bypass1")
    with pytest.raises(SpecError) as err:
        a.wait_accepted(30)
    assert set(err.value.fields) == {"samples", "frequency"}
    assert a.status() == "failed"


def test_results_are_json_serialisable_and_readable(oodida: Oodida) -> None:
    result = oodida.submit({**LISTING_1_1, "onboard": "histogram"}).wait(timeout=60)
    json.dumps(result.to_dict(), allow_nan=False)
    text = str(result)
    assert "iteration 0" in text and "kept 5" in text
