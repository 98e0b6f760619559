"""MDF4 measurement files as recorded drives: what goes in comes out, the operator's mapping
converts, and every bad input is one clear error naming the file and the signal or sample."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oodida_core.protocol.signals import SIGNAL_NAMES
from oodida_edge.sources.base import SourceError
from oodida_edge.sources.mapping import MappingError, load_mapping
from oodida_edge.sources.mdf import load_mdf, mdf_source
from oodida_edge.sources.recorded import GAP_FLOOR, GAP_STEPS, OFFSET_STRIDE, max_gap_for, median_step
from tests.fakes.mdffiles import Channel, channels_of, simulated_drive, write_mdf

ROOT = Path(__file__).resolve().parents[2]
HZ = 20
TIMES, VALUES = simulated_drive(client=3, frequency=HZ, seconds=60.0)
N = TIMES.size


def window_means(values: np.ndarray, start: int, samples: int) -> float:
    """The mean of ``samples`` readings from index ``start`` on, the drive looping."""
    return float(np.take(values, np.arange(start, start + samples), mode="wrap").mean())


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# -- same drive in, same averages out ----------------------------------------------------------
def test_a_clients_own_file_replays_the_recorded_per_iteration_averages(tmp_path: Path) -> None:
    write_mdf(tmp_path / "7.mf4", channels_of(TIMES, VALUES, start=1234.5))
    source = mdf_source(tmp_path)
    source.check([7])
    assert [e.signal for e in source.catalogue(7)] == list(SIGNAL_NAMES)
    assert {e.origin for e in source.catalogue(7)} == {f"mdf:{s}" for s in SIGNAL_NAMES}
    samples = 100
    for iteration in range(15):  # 1,500 samples: the 1,200-sample drive loops once
        got = source.read(7, "a", iteration, list(SIGNAL_NAMES), samples, HZ)
        for signal in SIGNAL_NAMES:
            want = window_means(VALUES[signal], iteration * samples, samples)
            assert got[signal].mean() == pytest.approx(want, rel=1e-9, abs=1e-9), (signal, iteration)


def test_clients_sharing_a_file_each_replay_it_from_their_own_offset(tmp_path: Path) -> None:
    path = write_mdf(tmp_path / "drive.mf4", channels_of(TIMES, VALUES))
    source = mdf_source(path)
    for client in (1, 2, 5):
        first = (client * OFFSET_STRIDE) % N
        for iteration in range(3):
            got = source.read(client, "a", iteration, ["speed", "rpm"], 40, HZ)
            for signal in ("speed", "rpm"):
                want = window_means(VALUES[signal], first + iteration * 40, 40)
                assert got[signal].mean() == pytest.approx(want, rel=1e-9), (client, signal)


def test_signals_recorded_at_different_rates_each_keep_their_own_time_base(tmp_path: Path) -> None:
    path = write_mdf(tmp_path / "1.mf4", channels_of(TIMES, VALUES, every={"engine_temp": 10, "rpm": 2}))
    drive = load_mdf(path)
    assert drive.series["engine_temp"].times.size == N // 10
    assert drive.series["rpm"].times.size == N // 2
    got = mdf_source(tmp_path).read(1, "a", 2, ["engine_temp", "rpm", "speed"], 200, HZ)
    t = (400 + np.arange(200)) / HZ
    coarse = np.interp(t, TIMES[::10], VALUES["engine_temp"][::10])
    np.testing.assert_allclose(got["engine_temp"], coarse, rtol=1e-12)
    np.testing.assert_allclose(got["rpm"], np.interp(t, TIMES[::2], VALUES["rpm"][::2]), rtol=1e-12)
    np.testing.assert_allclose(got["speed"], VALUES["speed"][400:600], rtol=1e-12)
    # 2 Hz engine temperature still averages like the 20 Hz drive it was taken from
    assert got["engine_temp"].mean() == pytest.approx(VALUES["engine_temp"][400:600].mean(), abs=0.2)


def test_an_mdf3_file_reads_like_an_mdf4_file(tmp_path: Path) -> None:
    v3 = load_mdf(write_mdf(tmp_path / "drive.mdf", channels_of(TIMES, VALUES), version="3.30"))
    v4 = load_mdf(write_mdf(tmp_path / "drive.mf4", channels_of(TIMES, VALUES)))
    for signal in SIGNAL_NAMES:
        np.testing.assert_array_equal(v3.series[signal].values, v4.series[signal].values)
        np.testing.assert_array_equal(v3.series[signal].times, v4.series[signal].times)


# -- which channel delivers which signal -------------------------------------------------------
def test_the_default_mapping_takes_short_names_and_vss_paths_in_any_case_and_skips_the_rest(
    tmp_path: Path,
) -> None:
    names = {"speed": "vehicle.SPEED", "rpm": "RPM", "fuel_rate": "Fuel_Rate"}
    chosen = {s: VALUES[s] for s in names}
    extra = Channel("GearboxOilTemp", TIMES, np.full(N, 70.0))
    path = write_mdf(tmp_path / "d.mf4", [*channels_of(TIMES, chosen, names=names), extra])
    drive = load_mdf(path)
    assert [(e.signal, e.origin) for e in drive.entries] == [
        ("speed", "mdf:vehicle.SPEED"),
        ("rpm", "mdf:RPM"),
        ("fuel_rate", "mdf:Fuel_Rate"),
    ]
    np.testing.assert_array_equal(drive.series["rpm"].values, VALUES["rpm"])


def test_a_channel_in_several_groups_is_read_from_the_first(tmp_path: Path) -> None:
    first = Channel("speed", TIMES, np.full(N, 30.0))
    second = Channel("speed", TIMES[::2], np.full(N // 2, 90.0))
    drive = load_mdf(write_mdf(tmp_path / "d.mf4", [first, second]))
    assert drive.series["speed"].values.min() == drive.series["speed"].values.max() == 30.0


MAPPING = """\
signals:
  speed:
    mdf: VehSpd_mph
    scale: 1.609344
  Vehicle.Cabin.HVAC.AmbientAirTemperature:
    mdf: AmbientTemp_F
    unit: degC
    range: [-40, 85]
    scale: 0.5555555555555556
    offset: -17.77777777777778
  rpm:
    mdf: EngSpeed
"""


def test_the_operators_mapping_converts_mph_and_fahrenheit_and_adds_a_vss_signal(tmp_path: Path) -> None:
    mapping = load_mapping(_write(tmp_path / "map.yaml", MAPPING))
    mph = VALUES["speed"] / 1.609344
    fahrenheit = np.linspace(50.0, 68.0, N)  # 10 to 20 degC
    channels = [
        Channel("VehSpd_mph", TIMES, mph, "mph"),
        Channel("AmbientTemp_F", TIMES, fahrenheit, "degF"),
        Channel("EngSpeed", TIMES, VALUES["rpm"], "rpm"),
        Channel("speed", TIMES, np.zeros(N)),  # not mapped by the operator: ignored
    ]
    write_mdf(tmp_path / "4.mf4", channels)
    source = mdf_source(tmp_path, mapping)
    ambient = "Vehicle.Cabin.HVAC.AmbientAirTemperature"
    entries = {e.signal: e for e in source.catalogue(4)}
    assert set(entries) == {"speed", "rpm", ambient}
    assert (entries["speed"].unit, entries["speed"].origin) == ("km/h", "mdf:VehSpd_mph")
    assert (entries[ambient].unit, entries[ambient].low, entries[ambient].high) == ("degC", -40.0, 85.0)
    got = source.read(4, "a", 1, ["speed", ambient, "rpm"], 300, HZ)
    np.testing.assert_allclose(got["speed"], VALUES["speed"][300:600], rtol=1e-12)
    np.testing.assert_allclose(got[ambient], (fahrenheit[300:600] - 32.0) * 5.0 / 9.0, rtol=1e-12)
    assert 10.0 <= got[ambient].min() < got[ambient].max() <= 20.0
    # the default mapping reads the same file differently: the cache keeps them apart
    assert mdf_source(tmp_path).read(4, "a", 1, ["speed"], 300, HZ)["speed"].max() == 0.0


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- bad inputs: one clear error each ----------------------------------------------------------
def test_a_file_that_is_not_mdf_is_refused_naming_it(tmp_path: Path) -> None:
    path = _write(tmp_path / "drive.mf4", "timestamp,speed\n0,1\n")
    with pytest.raises(SourceError) as exc:
        mdf_source(path).check([1])
    assert one_line(exc) == (
        f"{path.resolve()}: not an MDF file (it does not begin with an MDF identification block)"
    )


# asammdf's half-built reader complains in its __del__ (an AttributeError it ignores); it
# holds no file open (checked by hand with /proc/self/fd)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_truncated_mdf_file_is_refused_naming_it(tmp_path: Path) -> None:
    whole = write_mdf(tmp_path / "whole.mf4", channels_of(TIMES, VALUES)).read_bytes()
    path = tmp_path / "cut.mf4"
    path.write_bytes(whole[:200])
    with pytest.raises(SourceError) as exc:
        load_mdf(path)
    assert one_line(exc).startswith(f"{path}: not an MDF file asammdf can read (")
    del exc
    gc.collect()


def test_a_nonexistent_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no recorded drive at .*nowhere\.mf4"):
        mdf_source(tmp_path / "nowhere.mf4")


def test_a_channel_the_mapping_names_but_the_file_lacks_names_the_line_signal_file_and_a_guess(
    tmp_path: Path,
) -> None:
    mapping = load_mapping(_write(tmp_path / "map.yaml", MAPPING))
    path = write_mdf(
        tmp_path / "d.mf4",
        [
            Channel("VehSpd_mph", TIMES, VALUES["speed"]),
            Channel("AmbientTemp_F", TIMES, np.full(N, 60.0)),
            Channel("EngSpd", TIMES, VALUES["rpm"]),
        ],
    )
    with pytest.raises(MappingError) as exc:
        mdf_source(path, mapping).check([1])
    assert one_line(exc) == (
        f"{tmp_path / 'map.yaml'} line 11: signal 'rpm': the MDF channel 'EngSpeed' is not in "
        f"{path}; did you mean 'EngSpd'?"
    )


def test_a_file_without_any_signal_of_the_default_mapping_lists_its_channels(tmp_path: Path) -> None:
    path = write_mdf(
        tmp_path / "d.mf4", [Channel("Foo", TIMES, np.ones(N)), Channel("Bar", TIMES, np.ones(N))]
    )
    with pytest.raises(SourceError) as exc:
        load_mdf(path)
    assert "no channel delivers a signal under the default mapping" in one_line(exc)
    assert "'Foo', 'Bar'" in str(exc.value) and str(path) in str(exc.value)


def _faulty(tmp_path: Path, signal: str, times: np.ndarray, values: np.ndarray) -> str:
    others = channels_of(TIMES, {"rpm": VALUES["rpm"]})
    path = write_mdf(tmp_path / "d.mf4", [*others, Channel(signal, times, values)])
    with pytest.raises(SourceError) as exc:
        load_mdf(path)
    text = one_line(exc)
    assert text.startswith(f"{path} sample ")
    return text


def test_a_gap_in_the_recording_names_the_file_sample_and_signal(tmp_path: Path) -> None:
    times = TIMES.copy()
    times[700:] += 30.0
    text = _faulty(tmp_path, "speed", times, VALUES["speed"])
    assert text.startswith(f"{tmp_path / 'd.mf4'} sample 700: signal 'speed' (mdf:speed): a gap of 30.050 s")


def test_timestamps_that_go_back_name_the_file_sample_and_signal(tmp_path: Path) -> None:
    times = TIMES.copy()
    times[500] = times[498]
    text = _faulty(tmp_path, "fuel_rate", times, VALUES["fuel_rate"])
    assert "sample 500: signal 'fuel_rate' (mdf:fuel_rate): time 24.900000 s is not after" in text


def test_a_value_out_of_range_names_the_file_sample_and_signal(tmp_path: Path) -> None:
    values = VALUES["speed"].copy()
    values[321] = 250.0
    text = _faulty(tmp_path, "speed", TIMES, values)
    assert text.endswith(
        "sample 321: signal 'speed' (mdf:speed): 250 km/h is outside its range 0 to 200 km/h"
    )


def test_a_value_out_of_range_after_conversion_names_the_mapping_origin(tmp_path: Path) -> None:
    mapping = load_mapping(
        _write(tmp_path / "map.json", '{"signals": {"speed": {"mdf": "v", "scale": 3.6}}}')
    )
    path = write_mdf(tmp_path / "d.mf4", [Channel("v", TIMES, np.r_[np.full(N - 1, 20.0), 60.0])])
    with pytest.raises(SourceError) as exc:
        load_mdf(path, mapping)
    assert one_line(exc).endswith(
        f"sample {N - 1}: signal 'speed' (mdf:v): 216 km/h is outside its range 0 to 200 km/h"
    )


def test_a_channel_of_text_is_refused_naming_the_file_and_signal(tmp_path: Path) -> None:
    path = write_mdf(tmp_path / "d.mf4", [Channel("speed", TIMES[:3], np.array([b"fast", b"slow", b"stop"]))])
    with pytest.raises(SourceError) as exc:
        load_mdf(path)
    assert one_line(exc) == f"{path}: signal 'speed' (mdf:speed): the channel holds |S4 values, not numbers"


def test_the_median_step_by_partition_is_numpys_median() -> None:
    rng = np.random.default_rng(5)
    for times in (
        np.zeros(1),
        np.array([0.0, 0.5]),
        np.cumsum(rng.exponential(0.05, 1001)),  # odd and even counts of steps
        np.cumsum(rng.exponential(0.05, 1000)),
        np.cumsum(rng.choice([0.01, 0.02, 3.0], 999)),
    ):
        if times.size > 1:
            assert median_step(times) == float(np.median(np.diff(times)))
        assert max_gap_for(times) == (
            max(GAP_FLOOR, GAP_STEPS * float(np.median(np.diff(times)))) if times.size > 1 else math.inf
        )


# -- the extra ---------------------------------------------------------------------------------
def test_asammdf_is_imported_only_when_an_mdf_file_is_read() -> None:
    code = "import sys, oodida_edge.sources.mdf; print('asammdf' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_without_asammdf_reading_an_mdf_file_names_the_extra_to_install(tmp_path: Path) -> None:
    path = write_mdf(tmp_path / "d.mf4", channels_of(TIMES, {"speed": VALUES["speed"]}))
    code = (
        "import sys\n"
        "sys.modules['asammdf'] = None\n"
        "from oodida_edge.sources.base import MissingExtra\n"
        "from oodida_edge.sources.mdf import mdf_source\n"
        f"source = mdf_source({str(path)!r})\n"
        "try:\n"
        "    source.check([1])\n"
        "except MissingExtra as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'oodida[mdf]'" in done.stdout
    assert "'asammdf'" in done.stdout
