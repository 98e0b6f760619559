"""Recorded drives end to end: a fleet replaying CSV files, checked against numpy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from oodida_core.protocol.errors import OodidaError
from oodida_core.protocol.signals import SIGNAL_NAMES
from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import Oodida, SpecError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "drives" / "drive.csv"
STRIDE = 997  # oodida_edge/sources/csvfile.py: a shared file's client starts at row (id * 997) % rows


def own_drive(path: Path) -> None:
    """Client 3's own recording: 100 s at 2 Hz, speed and engine temperature only."""
    t = np.arange(200) / 2.0
    speed = 60.0 + 25.0 * np.sin(t / 7.0)
    temp = 70.0 + 0.2 * t
    np.savetxt(
        path,
        np.column_stack([t + 1000.0, speed, temp]),
        delimiter=",",
        fmt="%.4f",
        header="timestamp,speed,engine_temp",
        comments="",
    )


@pytest.fixture(scope="module")
def drives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drives")
    shutil.copy(EXAMPLE, path / "drive.csv")  # clients 1 and 2 share it
    own_drive(path / "3.csv")
    return path


@pytest.fixture(scope="module")
def replaying(drives: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    # Two edge processes: the supervisor hands --replay on to its children.
    with LocalSystem(3, data_dir=tmp_path_factory.mktemp("replay"), replay=drives, processes=2) as s:
        yield s


@pytest.fixture()
def o(replaying: LocalSystem) -> Iterator[Oodida]:
    with Oodida(replaying.url, user="replayer", token=replaying.token("replayer")) as client:
        yield client


def expected(path: Path, client: int, shared: bool, signal: str, iteration: int, samples: int, freq: int):
    """The readings, computed here with numpy alone from the CSV file."""
    with open(path) as fh:
        header = fh.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    stamps = table[:, header.index("timestamp")] - table[0, header.index("timestamp")]
    values = table[:, header.index(signal)]
    period = stamps[-1] + np.median(np.diff(stamps))
    offset = stamps[(client * STRIDE) % len(stamps)] if shared else 0.0
    t = offset + (iteration * samples + np.arange(samples)) / freq
    return np.interp(t % period, stamps, values, period=period)


def test_the_registry_advertises_only_the_signals_each_clients_file_holds(o: Oodida) -> None:
    offered = {c.client_id: tuple(c.signals) for c in o.clients()}
    assert offered[1] == offered[2] == SIGNAL_NAMES
    assert offered[3] == ("speed", "engine_temp")


def test_an_average_assignment_over_three_replaying_clients_matches_numpy(o: Oodida, drives: Path) -> None:
    samples, freq = 250, 2
    spec = {
        **LISTING_1_1,
        "signals": ["speed", "engine_temp"],
        "samples": samples,
        "frequency": freq,
        "iterations": 3,
    }
    result = o.submit(spec).wait(timeout=90)
    assert result.status == "done" and len(result.iterations) == 3
    files = {1: (drives / "drive.csv", True), 2: (drives / "drive.csv", True), 3: (drives / "3.csv", False)}
    seen = set()
    for it in result.iterations:
        assert sorted(it.onboard) == [1, 2, 3] and not it.failed
        for cid, (path, shared) in files.items():
            for signal in ("speed", "engine_temp"):
                want = float(np.mean(expected(path, cid, shared, signal, it.index, samples, freq)))
                assert it.onboard[cid][signal] == pytest.approx(want, rel=1e-9), (it.index, cid, signal)
                seen.add(round(want, 6))
    assert len(seen) == 18  # every client and every iteration read a different stretch


def test_a_signal_missing_from_a_clients_file_is_refused_by_the_cloud(o: Oodida) -> None:
    with pytest.raises(SpecError) as err:
        o.submit({**LISTING_1_1, "signals": ["speed", "rpm"]})
    assert err.value.fields == ["signals"]
    assert "'rpm' is not offered by clients 3" in str(err.value)
    # The clients whose file has it answer.
    result = o.submit({**LISTING_1_1, "signals": ["rpm"], "clients": [1, 2], "samples": 100}).wait(timeout=60)
    assert result.status == "done" and sorted(result.value) == [1, 2]


@pytest.fixture()
def bad_drives(tmp_path: Path) -> Path:
    path = tmp_path / "bad"
    path.mkdir()
    shutil.copy(EXAMPLE, path / "drive.csv")
    (path / "2.csv").write_text("timestamp,speed\n0,10\n1,ten\n2,12\n")
    return path


def test_a_bad_file_stops_the_fleet_at_start_up_with_a_clear_message(
    bad_drives: Path, tmp_path: Path
) -> None:
    system = LocalSystem(3, data_dir=tmp_path / "sys", replay=bad_drives)
    with pytest.raises(OodidaError, match=r"2\.csv line 3, column 'speed': 'ten' is not a number"):
        system.start()
    assert not system.procs  # everything it started is stopped


def test_oodida_edge_refuses_bad_files_before_serving(bad_drives: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OODIDA_REDIS_URL"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "oodida_edge",
            "--clients",
            "1-3",
            "--replay",
            str(bad_drives),
            "--redis-url",
            "redis://127.0.0.1:1/0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "oodida-edge: --replay:" in proc.stderr and "line 3, column 'speed'" in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "oodida_edge", "--clients", "1-3", "--replay", str(EXAMPLE), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr


def test_oodida_up_reports_a_bad_file(bad_drives: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "oodida_user._cli",
            "up",
            "--clients",
            "2",
            "--data-dir",
            str(tmp_path / "up"),
            "--replay",
            str(bad_drives),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "oodida: oodida-edge: --replay:" in proc.stderr and "2.csv line 3" in proc.stderr
