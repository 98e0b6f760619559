"""Recorded drives of any format, alone: the one validation every format goes through, and
replay with CSV's offsets, interpolation and looping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oodida_edge.sources.base import SourceError, builtin_entry
from oodida_edge.sources.recorded import Drive, RecordedSource, Series, check_series

SPEED = builtin_entry("speed", "test:speed")


def where(i: int) -> str:
    return f"frame {i + 1}"


def check(times: list[float], values: list[float]) -> None:
    check_series(Path("drive.log"), SPEED, np.array(times), np.array(values), where)


def test_a_clean_series_passes() -> None:
    check([0.0, 0.1, 0.2, 0.3], [0.0, 10.0, 20.0, 30.0])


@pytest.mark.parametrize(
    ("times", "values", "expected"),
    [
        (
            [0.0, 0.1, 0.1, 0.3],
            [1.0] * 4,
            "drive.log frame 3: signal 'speed' (test:speed): time 0.100000 s is not after",
        ),
        (
            [0.0, 0.2, 0.1],
            [1.0] * 3,
            "frame 3: signal 'speed' (test:speed): time 0.100000 s is not after the previous "
            "reading's 0.200000 s (frame 2)",
        ),
        (
            [0.0, 0.1, 0.2, 9.0, 9.1],
            [1.0] * 5,
            "drive.log frame 4: signal 'speed' (test:speed): a gap of 8.800 s",
        ),
        (
            [0.0, 0.1, 0.2],
            [1.0, 250.0, 1.0],
            "frame 2: signal 'speed' (test:speed): 250 km/h is outside its range 0 to 200 km/h",
        ),
        (
            [0.0, 0.1, 0.2],
            [1.0, float("nan"), 1.0],
            "frame 2: signal 'speed' (test:speed): the reading or its time is not a finite number",
        ),
        ([], [], "drive.log: signal 'speed' (test:speed) has no readings"),
    ],
)
def test_each_defect_is_one_error_naming_the_file_where_and_the_signal(
    times: list[float], values: list[float], expected: str
) -> None:
    with pytest.raises(SourceError) as err:
        check(times, values)
    assert expected in str(err.value), str(err.value)


def test_a_short_pause_is_no_gap_and_the_gap_limit_can_be_given() -> None:
    check([0.0, 0.1, 0.2, 1.9, 2.0], [1.0] * 5)  # 1.7 s < the 2 s floor
    with pytest.raises(SourceError, match=r"a gap of 0.500 s"):
        check_series(Path("d"), SPEED, np.array([0.0, 0.1, 0.6]), np.ones(3), where, max_gap=0.3)


def drive_of(path: Path) -> Drive:
    t = np.arange(0.0, 100.0, 0.5)  # speed 2 Hz, rpm 1 Hz: signals keep their own times
    return Drive.of(
        path,
        {"speed": Series(t + 50.0, t.copy()), "rpm": Series(t[::2] + 50.0, 1000.0 + t[::2])},
        [SPEED, builtin_entry("rpm", "test:rpm")],
    )


def test_a_drive_starts_at_its_first_reading_and_loops_after_its_span(tmp_path: Path) -> None:
    d = drive_of(tmp_path / "x")
    assert d.series["speed"].times[0] == 0.0 and d.period == pytest.approx(100.0)
    x = d.resample("speed", 99.0, 4, 2)  # 99, 99.5, then the drive again from its start: 0, 0.5
    assert np.allclose(x, [99.0, 99.5, 0.0, 0.5])


def test_replay_reads_each_client_from_its_offset_and_continues_each_iteration(tmp_path: Path) -> None:
    (tmp_path / "drive.bin").write_bytes(b"x")
    (tmp_path / "3.bin").write_bytes(b"x")
    loads: list[Path] = []

    def loader(path: Path) -> Drive:
        loads.append(path)
        return drive_of(path)

    src = RecordedSource(tmp_path, "test", [".bin"], loader)
    src.check([1, 2, 3])
    assert [p.name for p in loads] == ["drive.bin", "3.bin"]  # each file loaded once
    assert src.source(3) == (tmp_path / "3.bin", False)
    offset = (1 * 997) % 200 * 0.5  # the speed series is the densest: its 200 times
    a = src.read(1, "x", 0, ["speed"], 4, 2)["speed"]
    b = src.read(1, "x", 1, ["speed"], 4, 2)["speed"]
    assert np.allclose(np.concatenate([a, b]), (offset + np.arange(8) / 2) % 100.0)
    assert np.allclose(src.read(3, "x", 0, ["rpm"], 3, 1)["rpm"], [1000.0, 1001.0, 1002.0])
    assert [e.signal for e in src.catalogue(2)] == ["speed", "rpm"]
    with pytest.raises(SourceError, match=r"has no 'fuel_rate'; it has speed, rpm"):
        src.read(1, "x", 0, ["fuel_rate"], 2, 2)


def test_a_client_without_a_file_is_refused_naming_the_files_looked_for(tmp_path: Path) -> None:
    src = RecordedSource(tmp_path, "test", [".a", ".b"], drive_of)
    looked_for = r"neither 4\.a nor 4\.b nor drive\.a nor drive\.b in "
    with pytest.raises(SourceError, match=r"client 4 has no recorded drive: " + looked_for):
        src.check([4])
    with pytest.raises(SourceError, match=r"no recorded drive at .*missing"):
        RecordedSource(tmp_path / "missing", "test", [".a"], drive_of)
