"""Live sources alone: a device thread per vehicle, a buffer per signal, reads that wait,
resample, drop glitches, and fail clearly when the device goes away; retried with backoff."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from oodida_edge.sources import live
from oodida_edge.sources.base import SignalUnavailable, SourceError, builtin_entry
from oodida_edge.sources.live import Buffer, Device, LiveSource, Stopped


class Ramp(Device):
    """Speed = 10 km/h per second since the device opened, every 10 ms; can be unplugged."""

    name = "ramp adapter"

    def __init__(self, glitch_every: int = 0) -> None:
        self.plugged = threading.Event()
        self.plugged.set()
        self.opens = 0
        self.glitch_every = glitch_every
        self.sent = 0

    def open(self) -> None:
        if not self.plugged.is_set():
            raise OSError("no such device")
        self.opens += 1
        self.t0 = time.time()

    def poll(self) -> list[tuple[str, float, float]]:
        time.sleep(0.01)
        if not self.plugged.is_set():
            raise OSError("the adapter stopped answering")
        now = time.time()
        self.sent += 1
        glitch = self.glitch_every and self.sent % self.glitch_every == 0
        return [("speed", now, 9999.0 if glitch else 10.0 * (now - self.t0))]

    def shut(self) -> None:
        pass


@pytest.fixture()
def ramp() -> Ramp:
    return Ramp()


def source_of(device: Device) -> LiveSource:
    return LiveSource("test", {1: device}, {1: (builtin_entry("speed", "test:ramp"),)})


def test_a_read_waits_for_its_readings_and_resamples_them(ramp: Ramp) -> None:
    src = source_of(ramp)
    try:
        started = time.monotonic()
        data = src.read(1, "a", 0, ["speed"], 10, 10)
        took = time.monotonic() - started
        x = data["speed"]
        assert x.shape == (10,) and 0.85 <= took < 3.0
        assert np.allclose(np.diff(x), 1.0, atol=0.15)  # 10 km/h/s sampled at 10 Hz: +1 per sample
    finally:
        src.close()
    assert not any(t.is_alive() for t in src.threads.values())


def test_readings_outside_the_range_are_dropped_not_averaged() -> None:
    src = source_of(Ramp(glitch_every=3))
    try:
        x = src.read(1, "a", 0, ["speed"], 8, 10)["speed"]
        assert x.max() < 200.0 and np.allclose(np.diff(x), 1.0, atol=0.3)
    finally:
        src.close()


def test_two_reads_of_different_assignments_wait_together(ramp: Ramp) -> None:
    src = source_of(ramp)
    out: dict[str, np.ndarray] = {}

    def read(name: str) -> None:
        out[name] = src.read(1, name, 0, ["speed"], 10, 10)["speed"]

    try:
        started = time.monotonic()
        threads = [threading.Thread(target=read, args=(n,)) for n in ("a", "b", "c")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert set(out) == {"a", "b", "c"} and time.monotonic() - started < 2.5  # not 3 x 1 s
    finally:
        src.close()


def test_an_unplugged_device_fails_the_read_with_its_reason_and_comes_back(
    ramp: Ramp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "BACKOFF", 0.05)
    src = source_of(ramp)
    try:
        src.read(1, "a", 0, ["speed"], 2, 10)
        threading.Timer(0.3, ramp.plugged.clear).start()
        with pytest.raises(SignalUnavailable) as err:
            src.read(1, "a", 1, ["speed"], 20, 10)
        assert "ramp adapter is unavailable since" in str(err.value)
        assert "the adapter stopped answering" in str(err.value) and "retried" in str(err.value)
        with pytest.raises(SignalUnavailable, match="cannot connect: no such device"):
            time.sleep(0.3)
            src.read(1, "a", 2, ["speed"], 2, 10)
        ramp.plugged.set()
        deadline = time.monotonic() + 5
        while not src.threads[1].available and time.monotonic() < deadline:
            time.sleep(0.05)
        assert src.read(1, "a", 3, ["speed"], 5, 10)["speed"].shape == (5,)
        assert ramp.opens == 2
    finally:
        ramp.plugged.set()
        src.close()


def test_a_quiet_signal_a_deadline_and_an_ended_assignment_each_end_the_wait(ramp: Ramp) -> None:
    src = LiveSource(
        "test",
        {1: ramp},
        {1: (builtin_entry("speed", "test:ramp"), builtin_entry("rpm", "test:never"))},
    )
    try:
        started = time.monotonic()
        with pytest.raises(SignalUnavailable, match=r"no reading of 'rpm' for \d"):
            src.read(1, "a", 0, ["speed", "rpm"], 100, 10)
        assert time.monotonic() - started < live.STALL_FLOOR + 2
        with pytest.raises(SignalUnavailable, match="deadline passed"):
            src.read(1, "a", 0, ["speed"], 100, 10, deadline=time.time() + 0.5)
        started = time.monotonic()
        with pytest.raises(Stopped):
            src.read(1, "a", 0, ["speed"], 100, 10, stop=lambda: True)
        assert time.monotonic() - started < live.CHECK_EVERY + 1.5
    finally:
        src.close()


def test_a_signal_the_vehicle_does_not_deliver_is_refused_at_once(ramp: Ramp) -> None:
    src = source_of(ramp)
    try:
        with pytest.raises(SourceError, match="client 1 does not deliver 'rpm'"):
            src.read(1, "a", 0, ["rpm"], 5, 10)
        with pytest.raises(SourceError, match="frequency must be a positive integer"):
            src.read(1, "a", 0, ["speed"], 5, 0)
    finally:
        src.close()


def test_a_buffer_keeps_a_window_and_ignores_readings_out_of_order() -> None:
    buf = Buffer(keep=10.0)
    buf.put([("s", float(t), float(t)) for t in range(100)])
    buf.put([("s", 50.0, -1.0)])
    times, values = buf.window("s", 95.5, 97.5)
    assert times.tolist() == [95.0, 96.0, 97.0, 98.0] and values.tolist() == times.tolist()
    assert buf.tracks["s"].times[0] >= 99 - 15  # older readings were let go


def test_a_read_right_after_the_start_waits_for_the_first_connection() -> None:
    class Slow(Ramp):
        def open(self) -> None:
            time.sleep(0.5)
            super().open()

    src = source_of(Slow())
    try:
        assert src.read(1, "a", 0, ["speed"], 3, 10)["speed"].shape == (3,)
    finally:
        src.close()
