"""Live CAN across processes: a pty pair made by socat stands for a serial CAN adapter's line,
a player process sends a recorded drive with python-can's ``slcan`` interface on one end and
the edge's CAN source reads with ``slcan`` on the other (oodida_edge/sources/canbus.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from oodida_edge.sources.canbus import can_source
from oodida_edge.sources.mapping import load_mapping
from tests.fakes.canlogs import CARRIED, write_mapping

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed"),
]

PLAYER = Path(__file__).resolve().parents[1] / "fakes" / "canlogs.py"
DBC = Path(__file__).resolve().parents[2] / "examples" / "vehicle-data" / "vehicle.dbc"
MAX_LAG = 1.0  # seconds from a frame's send to its reading, at most (even on a loaded machine)


@pytest.fixture()
def pty_pair() -> Iterator[tuple[str, str]]:
    """Two connected pseudo-terminals (socat's paths), removed again after the test."""
    socat = subprocess.Popen(
        ["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert socat.stderr is not None
        paths: list[str] = []
        deadline = time.monotonic() + 10
        while len(paths) < 2 and time.monotonic() < deadline:
            line = socat.stderr.readline()
            if not line:
                break
            found = re.search(r"PTY is (\S+)", line)
            if found:
                paths.append(found.group(1))
        assert len(paths) == 2, f"socat gave no pty pair: {paths}"
        yield paths[0], paths[1]
    finally:
        socat.terminate()
        try:
            socat.wait(5)
        except subprocess.TimeoutExpired:
            socat.kill()
            socat.wait(5)
        if socat.stderr is not None:
            socat.stderr.close()


def test_a_drive_played_by_another_process_over_slcan_is_read_by_the_can_source(
    pty_pair: tuple[str, str], tmp_path: Path
) -> None:
    player_end, our_end = pty_pair
    mapping = load_mapping(write_mapping(tmp_path))
    # At start the source opens (and closes) the bus once: the adapter is there.
    source = can_source("slcan", our_end, [4], DBC, mapping, {"sleep_after_open": "0"})
    source.start()
    deadline = time.monotonic() + 10
    while not source.threads[4].available:
        assert time.monotonic() < deadline, source.threads[4].status()
        time.sleep(0.02)
    out = tmp_path / "sent.json"
    player = subprocess.Popen(
        [sys.executable, str(PLAYER), "slcan", player_end, "6", "4", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = Path(str(out) + ".ready")
        while not ready.exists():
            assert player.poll() is None, player.communicate()[1]
            assert time.monotonic() < deadline + 30, "the player never opened its end"
            time.sleep(0.02)
        time.sleep(1.0)
        samples, frequency = 40, 20
        before = time.time()
        got = source.read(4, "a", 0, list(CARRIED), samples, frequency)
        _, errors = player.communicate(timeout=30)
        assert player.returncode == 0, errors
        sent = {sid: (np.array(t), np.array(v)) for sid, (t, v) in json.loads(out.read_text()).items()}
        for signal, (times, values) in sent.items():
            # The readings are the frames the player sent, in order, none lost, each with the
            # value cantools decodes from it, stamped when it arrived (after it was sent).
            kept_t, kept_v = source.buffers[4].window(signal, before, before + 2.0)
            n = kept_t.size
            assert n > 5, signal
            starts = [
                j
                for j in range(times.size - n + 1)
                if 0 <= kept_t[0] - times[j] < MAX_LAG
                and np.array_equal(values[j : j + n], kept_v)
                and bool(np.all(kept_t >= times[j : j + n]))
            ]
            assert starts, f"{signal}: the readings are not the frames sent, in order"
            lag = float((kept_t - times[starts[-1] : starts[-1] + n]).max())
            assert lag < MAX_LAG, signal
            # The read's average: its start within 10 ms of `before`, each reading at most `lag`
            # after its frame was sent; so within (10 ms + lag) times the steepest slope.
            at = before + np.arange(samples) / frequency
            slope = float(np.abs(np.diff(values) / np.diff(times)).max())
            expected = np.interp(at, times, values)
            assert abs(got[signal].mean() - expected.mean()) <= (0.01 + lag) * slope + 1e-9, (signal, lag)
    finally:
        if player.poll() is None:
            player.terminate()
            player.communicate(timeout=10)
        elif player.stderr is not None and not player.stderr.closed:
            player.stderr.close()
        source.close()
        for leftover in (out, Path(str(out) + ".ready")):
            leftover.unlink(missing_ok=True)
    assert all(not t.is_alive() for t in source.threads.values())
