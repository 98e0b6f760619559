"""Recorded drives: loading, validation, resampling, offsets, wrap-around, determinism."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from oodida_core.protocol.errors import OodidaError
from oodida_core.protocol.signals import SIGNAL_NAMES
from oodida_edge.sources.csvfile import OFFSET_STRIDE, ReplayError, ReplaySensors, load_recording
from oodida_edge.sources.simulated import SensorError, SensorSource, SimulatedSensors

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "drives" / "drive.csv"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    """Four rows, one second apart: speed 0, 10, 20, 30 and rpm 800..1100."""
    return write(
        tmp_path / "small.csv",
        "timestamp,speed,rpm\n100,0,800\n101,10,900\n102,20,1000\n103,30,1100\n",
    )


# -- loading ---------------------------------------------------------------------------------
def test_the_shipped_example_is_a_small_valid_ten_minute_drive_of_all_six_signals() -> None:
    assert EXAMPLE.stat().st_size < 100_000
    rec = load_recording(EXAMPLE)
    assert rec.rows == 600
    assert set(rec.signals) == set(SIGNAL_NAMES)
    assert rec.times[0] == 0.0 and rec.times[-1] == 599.0
    assert rec.period == 600.0
    assert rec.columns["speed"].max() > 30.0  # it actually drives


def _make_drive_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_drive", ROOT / "examples/drives/make_drive.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_drive_writes_the_simulators_readings_rounded(tmp_path: Path) -> None:
    make_drive = _make_drive_module()
    out = tmp_path / "d.csv"
    assert make_drive.make_drive(out, client=4, seconds=30, frequency=2) == 60
    rec = load_recording(out)
    assert rec.signals == SIGNAL_NAMES and rec.rows == 60
    np.testing.assert_allclose(rec.times, np.arange(60) / 2)
    sim = SimulatedSensors().read(4, "recorded-drive", 0, list(SIGNAL_NAMES), 60, 2)
    for s in SIGNAL_NAMES:
        np.testing.assert_allclose(rec.columns[s], sim[s], atol=0.51)


def test_loading_gives_times_from_zero_and_columns_in_file_order(small: Path) -> None:
    rec = load_recording(small)
    np.testing.assert_array_equal(rec.times, [0, 1, 2, 3])
    assert rec.signals == ("speed", "rpm")
    np.testing.assert_array_equal(rec.columns["rpm"], [800, 900, 1000, 1100])
    assert rec.period == 4.0  # the span plus one median interval


def test_blank_lines_a_bom_and_spaces_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xef\xbb\xbf timestamp , speed\n\n0, 1.5\n\n1 ,2.5\n\n")
    rec = load_recording(path)
    np.testing.assert_array_equal(rec.columns["speed"], [1.5, 2.5])


def test_a_changed_file_is_reloaded_and_validated_again(small: Path) -> None:
    first = load_recording(small)
    assert load_recording(small) is first  # cached
    write(small, "timestamp,speed\n0,5\n1,6\n")
    os.utime(small, ns=(1, 1))  # a different mtime, whatever the clock's resolution
    assert load_recording(small).signals == ("speed",)
    write(small, "timestamp,speed\n0,5\n0,6\n")
    os.utime(small, ns=(2, 2))
    with pytest.raises(ReplayError, match="strictly increasing"):
        load_recording(small)


# -- validation: each error names the file, the line and the column --------------------------
BAD: dict[str, tuple[str, str]] = {
    "no-timestamp": ("time,speed\n0,1\n1,2\n", r"line 1: column 'time' is not a known signal"),
    "no-timestamp-column": ("speed,rpm\n1,800\n2,900\n", r"line 1: no 'timestamp' column"),
    "non-numeric": ("timestamp,speed\n0,1\n1,fast\n", r"line 3, column 'speed': 'fast' is not a number"),
    "empty-value": ("timestamp,speed,rpm\n0,1,800\n1,,900\n", r"line 3, column 'speed': an empty value"),
    "nan": ("timestamp,speed\n0,nan\n1,2\n", r"line 2, column 'speed': 'nan' is not a number"),
    "infinite-time": ("timestamp,speed\n0,1\ninf,2\n", r"line 3, column 'timestamp': 'inf' is not a number"),
    "unsorted": (
        "timestamp,speed\n0,1\n2,2\n1,3\n",
        r"line 4, column 'timestamp': 1 is not after 2 on line 3 \(timestamps must be strictly",
    ),
    "duplicate-time": (
        "timestamp,speed\n0,1\n\n0,2\n",
        r"line 4, column 'timestamp': 0 is not after 0 on line 2",
    ),
    "unknown-column": (
        "timestamp,speed,gps_lat\n0,1,57.7\n1,2,57.7\n",
        r"column 'gps_lat' is not a known signal",
    ),
    "repeated-column": ("timestamp,speed,speed\n0,1,1\n1,2,2\n", r"column 'speed' appears twice"),
    "unnamed-column": ("timestamp,,speed\n0,1,1\n1,2,2\n", r"line 1: column 2 has no name"),
    "short-row": ("timestamp,speed,rpm\n0,1,800\n1,2\n", r"line 3: 2 value\(s\) where the header has 3"),
    "long-row": ("timestamp,speed\n0,1\n1,2,3\n", r"line 3: 3 value\(s\) where the header has 2"),
    "out-of-range": (
        "timestamp,speed,rpm\n0,1,800\n1,250,900\n",
        r"line 3, column 'speed': 250 km/h is outside the signal's range 0 to 200 km/h",
    ),
    "negative-rpm": ("timestamp,rpm\n0,-5\n1,800\n", r"line 2, column 'rpm': -5 1/min is outside"),
    "only-timestamp": ("timestamp\n0\n1\n", r"no signal column besides 'timestamp'"),
    "one-row": ("timestamp,speed\n0,1\n", r"1 data row\(s\); a recorded drive needs at least 2"),
    "empty": ("", r"the file is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_is_refused_naming_file_line_and_column(tmp_path: Path, case: str) -> None:
    text, message = BAD[case]
    path = write(tmp_path / f"{case}.csv", text)
    with pytest.raises(ReplayError, match=message) as err:
        load_recording(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, OodidaError) and isinstance(err.value, SensorError)


def test_a_missing_file_or_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no recorded drive at"):
        ReplaySensors(tmp_path / "nowhere")
    with pytest.raises(ReplayError, match="cannot read the recorded drive"):
        load_recording(tmp_path / "nowhere.csv")


def test_check_loads_every_clients_file_and_refuses_a_bad_one(tmp_path: Path, small: Path) -> None:
    shutil.copy(small, tmp_path / "1.csv")
    write(tmp_path / "2.csv", "timestamp,speed\n0,1\n1,x\n")
    sensors = ReplaySensors(tmp_path)
    sensors.check([1])
    with pytest.raises(ReplayError, match=r"2\.csv line 3, column 'speed'"):
        sensors.check([1, 2])
    with pytest.raises(ReplayError, match=r"client 3 has no recorded drive: neither 3\.csv nor drive\.csv"):
        sensors.check([3])


# -- reading ---------------------------------------------------------------------------------
def test_replay_sensors_satisfy_the_sensor_source_protocol(small: Path) -> None:
    source: SensorSource = ReplaySensors(small)
    out = source.read(1, "a", 0, ["speed"], 3, 1)
    assert set(out) == {"speed"} and out["speed"].dtype == np.float64 and out["speed"].shape == (3,)


def test_at_the_recorded_rate_a_client_with_its_own_file_reads_the_rows(tmp_path: Path, small: Path) -> None:
    shutil.copy(small, tmp_path / "7.csv")
    out = ReplaySensors(tmp_path).read(7, "a", 0, ["rpm", "speed"], 4, 1)
    assert list(out) == ["rpm", "speed"]
    np.testing.assert_array_equal(out["speed"], [0, 10, 20, 30])
    np.testing.assert_array_equal(out["rpm"], [800, 900, 1000, 1100])


def test_resampling_interpolates_linearly_on_the_timestamp(tmp_path: Path, small: Path) -> None:
    shutil.copy(small, tmp_path / "1.csv")
    sensors = ReplaySensors(tmp_path)
    np.testing.assert_allclose(sensors.read(1, "a", 0, ["speed"], 6, 2)["speed"], [0, 5, 10, 15, 20, 25])
    np.testing.assert_allclose(sensors.read(1, "a", 0, ["speed"], 5, 4)["speed"], [0, 2.5, 5, 7.5, 10])


def test_uneven_timestamps_interpolate_between_their_neighbours(tmp_path: Path) -> None:
    write(tmp_path / "1.csv", "timestamp,speed\n0,0\n0.5,10\n2,40\n4,8\n")
    out = ReplaySensors(tmp_path).read(1, "a", 0, ["speed"], 7, 1)["speed"]
    # steps 0.5, 1.5, 2: the median 1.5 s closes the loop, a period of 5.5 s
    np.testing.assert_allclose(out, [0, 20, 40, 24, 8, 8 / 3, 10])


def test_consecutive_iterations_continue_the_drive() -> None:
    sensors = ReplaySensors(EXAMPLE)
    whole = sensors.read(3, "a", 0, ["speed", "rpm"], 300, 10)
    for it in range(3):
        part = sensors.read(3, "a", it, ["speed", "rpm"], 100, 10)
        for s in ("speed", "rpm"):
            np.testing.assert_allclose(part[s], whole[s][it * 100 : (it + 1) * 100], rtol=0, atol=1e-9)


def test_the_drive_wraps_around_at_its_end_across_a_seam_of_one_median_interval(
    tmp_path: Path, small: Path
) -> None:
    shutil.copy(small, tmp_path / "1.csv")
    sensors = ReplaySensors(tmp_path)
    np.testing.assert_allclose(
        sensors.read(1, "a", 0, ["speed"], 10, 2)["speed"],
        [0, 5, 10, 15, 20, 25, 30, 15, 0, 5],  # 30 at 3 s, back to 0 at 4 s
    )
    later = sensors.read(1, "a", 25, ["speed"], 4, 1)["speed"]  # 100 s in: 25 periods
    np.testing.assert_allclose(later, [0, 10, 20, 30])


def test_clients_sharing_a_file_start_at_their_own_row() -> None:
    sensors = ReplaySensors(EXAMPLE)
    rec = load_recording(EXAMPLE)
    for cid in (1, 2, 3, 600, 601, 1000):
        row = (cid * OFFSET_STRIDE) % rec.rows
        out = sensors.read(cid, "a", 0, ["speed"], 5, 1)["speed"]
        expected = rec.columns["speed"][(row + np.arange(5)) % rec.rows]
        np.testing.assert_array_equal(out, expected)
    starts = {float(sensors.read(c, "a", 0, ["rpm"], 50, 1)["rpm"].sum()) for c in range(1, 11)}
    assert len(starts) == 10  # every client drives a different stretch


def test_a_directory_gives_a_client_its_own_file_and_the_others_the_shared_one(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "drive.csv")
    write(tmp_path / "2.csv", "timestamp,engine_temp,speed\n0,80,1\n1,81,2\n")
    sensors = ReplaySensors(tmp_path)
    assert sensors.source(2) == (tmp_path / "2.csv", False)
    assert sensors.source(1) == (tmp_path / "drive.csv", True)
    assert sensors.signals_for(2) == ("speed", "engine_temp")  # the registry's order
    assert set(sensors.signals_for(1)) == set(SIGNAL_NAMES)
    shared = ReplaySensors(EXAMPLE).read(1, "x", 0, ["speed"], 20, 1)["speed"]
    np.testing.assert_array_equal(sensors.read(1, "y", 0, ["speed"], 20, 1)["speed"], shared)
    np.testing.assert_array_equal(sensors.read(2, "y", 0, ["speed"], 3, 1)["speed"], [1, 2, 1])


def test_a_requested_signal_the_file_lacks_is_refused_listing_what_it_has(small: Path) -> None:
    with pytest.raises(ReplayError, match=r"has no 'fuel_rate' column; it has speed, rpm"):
        ReplaySensors(small).read(1, "a", 0, ["speed", "fuel_rate"], 10, 1)


@pytest.mark.parametrize(
    ("samples", "frequency", "message"),
    [(-1, 1, "samples"), (1.5, 1, "samples"), (10, 0, "frequency"), (10, True, "frequency")],
)
def test_bad_sizes_are_refused(small: Path, samples: object, frequency: object, message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        ReplaySensors(small).read(1, "a", 0, ["speed"], samples, frequency)  # type: ignore[arg-type]


def test_zero_samples_and_a_single_signal_name(small: Path) -> None:
    sensors = ReplaySensors(small)
    assert sensors.read(1, "a", 0, ["speed"], 0, 1)["speed"].shape == (0,)
    assert list(sensors.read(1, "a", 0, "speed", 2, 1)) == ["speed"]  # type: ignore[arg-type]


def test_readings_are_deterministic_and_do_not_depend_on_the_assignment() -> None:
    a = ReplaySensors(EXAMPLE).read(5, "job-1", 4, list(SIGNAL_NAMES), 700, 3)
    b = ReplaySensors(EXAMPLE).read(5, "job-2", 4, list(SIGNAL_NAMES), 700, 3)
    c = ReplaySensors(EXAMPLE).read(5, "job-1", 5, list(SIGNAL_NAMES), 700, 3)
    for s in SIGNAL_NAMES:
        np.testing.assert_array_equal(a[s], b[s])
        assert not np.array_equal(a[s], c[s])
