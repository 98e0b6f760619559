"""Simulated vehicle sensors: deterministic, consistent across signals, physically plausible."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from oodida_core.protocol.signals import SIGNALS
from oodida_edge.sources.simulated import SensorError, SensorSource, SimulatedSensors, vehicle_profile

ALL = list(SIGNALS)


@pytest.fixture(scope="module")
def sensors() -> SimulatedSensors:
    return SimulatedSensors()


@pytest.fixture(scope="module")
def long_drive(sensors: SimulatedSensors) -> dict[str, np.ndarray]:
    """Half a day of driving at 1 Hz for one client."""
    return sensors.read(7, "long", 0, ALL, 43_200, 1)


def test_simulated_sensors_satisfy_the_sensor_source_protocol(sensors: SimulatedSensors) -> None:
    source: SensorSource = sensors
    out = source.read(1, "a", 0, ["speed"], 10, 1)
    assert set(out) == {"speed"}


def test_readings_are_float64_arrays_of_the_requested_length(sensors: SimulatedSensors) -> None:
    out = sensors.read(1, "a", 0, ALL, 1234, 10)
    assert list(out) == ALL
    for values in out.values():
        assert isinstance(values, np.ndarray)
        assert values.dtype == np.float64
        assert values.shape == (1234,)


def test_same_client_assignment_iteration_gives_identical_readings(
    sensors: SimulatedSensors,
) -> None:
    a = sensors.read(3, "job-1", 2, ALL, 5000, 1)
    b = SimulatedSensors().read(3, "job-1", 2, ALL, 5000, 1)
    for s in ALL:
        np.testing.assert_array_equal(a[s], b[s])


@pytest.mark.parametrize(
    "other",
    [(4, "job-1", 2), (3, "job-2", 2), (3, "job-1", 3)],
    ids=["other-client", "other-assignment", "other-iteration"],
)
def test_a_different_client_assignment_or_iteration_gives_different_readings(
    sensors: SimulatedSensors, other: tuple[int, str, int]
) -> None:
    a = sensors.read(3, "job-1", 2, ALL, 2000, 1)
    b = sensors.read(*other, ALL, 2000, 1)
    for s in ALL:
        assert not np.array_equal(a[s], b[s]), s


@pytest.mark.parametrize("signal", ALL)
def test_a_signal_reads_the_same_alone_as_together_with_others(
    sensors: SimulatedSensors, signal: str
) -> None:
    together = sensors.read(5, "mix", 1, ALL, 3000, 2)
    alone = sensors.read(5, "mix", 1, [signal], 3000, 2)
    pair = sensors.read(5, "mix", 1, ["battery_voltage", signal], 3000, 2)
    np.testing.assert_array_equal(alone[signal], together[signal])
    np.testing.assert_array_equal(pair[signal], together[signal])


def test_a_signal_alone_reads_the_same_as_in_every_combination(sensors: SimulatedSensors) -> None:
    # Each signal computes only what it needs and draws from a random stream of its own, so
    # neither leaving out other signals nor their order may change a reading.
    alone = {s: sensors.read(12, "combo", 3, [s], 1500, 2)[s] for s in ALL}
    for size in range(2, len(ALL) + 1):
        for combo in itertools.combinations(ALL, size):
            for order in (list(combo), list(reversed(combo))):
                out = sensors.read(12, "combo", 3, order, 1500, 2)
                assert list(out) == order
                for s in combo:
                    np.testing.assert_array_equal(out[s], alone[s], err_msg=f"{s} in {order}")


def test_readings_are_the_same_in_other_threads_and_under_concurrent_reads(
    sensors: SimulatedSensors,
) -> None:
    expected = {i: sensors.read(i, "threads", i, ALL, 2000, 1) for i in range(8)}
    got: dict[int, dict[str, np.ndarray]] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                got[i] = sensors.read(i, "threads", i, ALL, 2000, 1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for i, readings in expected.items():
        for s in ALL:
            np.testing.assert_array_equal(got[i][s], readings[s])


def test_signals_are_returned_in_the_requested_order(sensors: SimulatedSensors) -> None:
    out = sensors.read(1, "a", 0, ["rpm", "speed"], 10, 1)
    assert list(out) == ["rpm", "speed"]


@pytest.mark.parametrize("client", [1, 2, 3, 17, 99, 1000])
@pytest.mark.parametrize("frequency", [1, 100])
def test_every_reading_stays_within_its_signal_range(
    sensors: SimulatedSensors, client: int, frequency: int
) -> None:
    out = sensors.read(client, "range", 0, ALL, 20_000, frequency)
    for s, values in out.items():
        assert np.isfinite(values).all(), s
        assert values.min() >= SIGNALS[s].low, s
        assert values.max() <= SIGNALS[s].high, s


def test_speed_is_never_negative_and_includes_stops_and_highway(
    long_drive: dict[str, np.ndarray],
) -> None:
    speed = long_drive["speed"]
    assert speed.min() == 0.0
    assert (speed == 0.0).mean() > 0.01  # the car stops now and then
    assert 20.0 < speed.mean() < 130.0
    assert speed.max() <= 190.0


def test_acceleration_matches_the_derivative_of_speed(
    long_drive: dict[str, np.ndarray],
) -> None:
    derivative = np.gradient(long_drive["speed"] / 3.6, 1.0)
    acc = long_drive["acceleration"]
    assert np.abs(acc - derivative).max() < 0.3  # only a little sensor noise
    assert np.corrcoef(acc, derivative)[0, 1] > 0.95
    assert np.abs(acc).max() < 6.0


def test_rpm_idles_when_stopped_and_rises_while_driving(long_drive: dict[str, np.ndarray]) -> None:
    speed, rpm = long_drive["speed"], long_drive["rpm"]
    stopped = speed == 0.0
    assert 650.0 < rpm[stopped].mean() < 950.0
    cruising = speed > 30.0
    assert 1300.0 < np.median(rpm[cruising]) < 3500.0
    assert rpm.max() <= 6500.0


@pytest.mark.parametrize("client", [1, 7, 42, 133])
def test_rpm_and_fuel_rate_correlate_with_what_drives_them(sensors: SimulatedSensors, client: int) -> None:
    d = sensors.read(client, "corr", 0, ALL, 30_000, 1)
    assert np.corrcoef(d["rpm"], d["speed"])[0, 1] > 0.5
    assert np.corrcoef(d["fuel_rate"], d["rpm"])[0, 1] > 0.5
    # Accelerating costs fuel: at the same speed band, fuel is higher when pulling.
    band = (d["speed"] > 30.0) & (d["speed"] < 70.0)
    pulling = band & (d["acceleration"] > 0.8)
    steady = band & (np.abs(d["acceleration"]) < 0.1)
    assert d["fuel_rate"][pulling].mean() > d["fuel_rate"][steady].mean()


def test_fuel_rate_is_about_idle_consumption_when_stopped(
    long_drive: dict[str, np.ndarray],
) -> None:
    stopped = long_drive["speed"] == 0.0
    fuel = long_drive["fuel_rate"]
    assert 0.4 < fuel[stopped].mean() < 1.3
    assert np.percentile(fuel, 99) < 30.0


def test_engine_warms_from_ambient_to_operating_temperature(sensors: SimulatedSensors) -> None:
    # Find a cold start: the first reading far below the operating temperature.
    for iteration in range(20):
        temp = sensors.read(11, "warm", iteration, ["engine_temp"], 7200, 1)["engine_temp"]
        if temp[0] < 60.0:
            break
    else:  # pragma: no cover - a cold start is a coin toss per iteration
        pytest.fail("no cold start in 20 iterations")
    assert np.mean(temp[:10]) < np.mean(temp[600:700]) < np.mean(temp[3000:])
    warm = temp[3600:]
    assert warm.min() >= 85.0
    assert warm.max() <= 100.0


def test_battery_charges_while_the_engine_runs_above_idle(
    long_drive: dict[str, np.ndarray],
) -> None:
    rpm, volts = long_drive["rpm"], long_drive["battery_voltage"]
    idle = long_drive["speed"] == 0.0
    assert 12.3 < volts[idle].mean() < 12.8
    running = rpm > 1500.0
    assert 13.7 < volts[running].mean() < 14.5


def test_clients_drive_differently(sensors: SimulatedSensors) -> None:
    profiles = {vehicle_profile(c) for c in range(1, 21)}
    assert len(profiles) == 20
    means = [sensors.read(c, "fleet", 0, ["speed"], 20_000, 1)["speed"].mean() for c in (1, 2, 3)]
    assert max(means) - min(means) > 5.0


def test_the_vehicle_profile_depends_on_the_client_id_alone() -> None:
    assert vehicle_profile(5) == vehicle_profile(5)
    assert vehicle_profile(5) != vehicle_profile(6)


def test_zero_samples_gives_empty_arrays(sensors: SimulatedSensors) -> None:
    out = sensors.read(1, "a", 0, ["speed", "rpm"], 0, 1)
    assert {s: v.shape for s, v in out.items()} == {"speed": (0,), "rpm": (0,)}


def test_unknown_signal_is_rejected_with_the_list_of_signals(sensors: SimulatedSensors) -> None:
    with pytest.raises(SensorError, match=r"'velocity'.*speed, acceleration, rpm"):
        sensors.read(1, "a", 0, ["speed", "velocity"], 10, 1)


@pytest.mark.parametrize(("samples", "frequency"), [(-1, 1), (10, 0), (10, 1.5)])
def test_bad_sizes_are_rejected(sensors: SimulatedSensors, samples: int, frequency: int) -> None:
    with pytest.raises(SensorError):
        sensors.read(1, "a", 0, ["speed"], samples, frequency)


def test_a_million_samples_of_every_signal_are_produced_within_range(
    sensors: SimulatedSensors,
) -> None:
    out = sensors.read(1, "big", 0, ALL, 1_000_000, 1)
    for name, values in out.items():
        assert values.size == 1_000_000
        assert SIGNALS[name].low <= float(values.min()) and float(values.max()) <= SIGNALS[name].high
