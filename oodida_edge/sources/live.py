"""Live sources: one thread per device owns the connection and fills a timestamped buffer per
signal; a task waits for its readings, resamples them and checks their ranges.

``Device`` is what a kind of source implements (OBD-II adapter, CAN bus): ``open`` connects,
``poll`` returns readings ``(signal id, time, value)`` already converted to the signal's unit,
``shut`` disconnects. ``DeviceThread`` runs one device: it opens it, polls it, and when
anything fails it marks the device unavailable (with the reason), closes it and retries with
backoff (``BACKOFF`` doubling up to ``BACKOFF_MAX``), for as long as the source lives.

``LiveSource.read`` starts at the current time ``t0`` and waits until every requested signal
has a reading at or after ``t0 + (samples - 1) / frequency``; its readings are the signal
interpolated at ``t0 + k / frequency``. Readings outside the signal's range are dropped (a
sensor glitch); a pause longer than ``stall_after`` fails the read (``SignalUnavailable``),
as do the device going down meanwhile and the task's deadline. The wait is a condition
variable per source: it holds no lock the device thread or another task needs, so tasks of
other assignments read the same buffer at the same time.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .base import Entry, FloatArray, SignalUnavailable, SourceError, check_request

__all__ = ["BACKOFF", "BACKOFF_MAX", "Buffer", "Device", "DeviceThread", "LiveSource", "Stopped"]

log = logging.getLogger("oodida.edge")

BACKOFF = 0.2  # seconds before the first retry of a device that failed
BACKOFF_MAX = 5.0
KEEP = 120.0  # seconds of readings a buffer keeps
STALL_FLOOR = 3.0  # a signal with no reading for this long (or 20 of its intervals) has stalled
CHECK_EVERY = 1.0  # seconds between two calls of a read's stop()
FIRST_CONNECT = 15.0  # seconds a read waits for a device's first connection after the start


class Stopped(SourceError):
    """The read was stopped: its assignment ended while it waited for readings."""


class Device:
    """One device a live source reads (subclasses: an OBD-II adapter, a CAN bus)."""

    name = "device"

    def open(self) -> None:
        raise NotImplementedError

    def poll(self) -> list[tuple[str, float, float]]:
        """Readings that arrived, ``(signal id, unix time, value)``; blocks at most ~0.5 s.
        Raises when the device is gone."""
        raise NotImplementedError

    def shut(self) -> None:
        raise NotImplementedError


@dataclass
class _Track:
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


class Buffer:
    """The last ``keep`` seconds of readings of each signal, in arrival order."""

    def __init__(self, keep: float = KEEP) -> None:
        self.keep = keep
        self.cond = threading.Condition()
        self.tracks: dict[str, _Track] = {}

    def put(self, readings: Iterable[tuple[str, float, float]]) -> None:
        with self.cond:
            for signal, t, value in readings:
                track = self.tracks.setdefault(signal, _Track())
                if track.times and t <= track.times[-1]:
                    continue  # a reading must be later than the last one of its signal
                track.times.append(t)
                track.values.append(value)
                if track.times[0] < t - self.keep * 1.5:
                    cut = bisect.bisect_left(track.times, t - self.keep)
                    del track.times[:cut], track.values[:cut]
            self.cond.notify_all()

    def latest(self, signal: str) -> float | None:
        track = self.tracks.get(signal)
        return track.times[-1] if track and track.times else None

    def window(self, signal: str, t0: float, t1: float) -> tuple[FloatArray, FloatArray]:
        """The readings from the last one at or before ``t0`` to the first at or after ``t1``."""
        with self.cond:
            track = self.tracks.get(signal)
            if track is None:
                return np.zeros(0), np.zeros(0)
            lo = max(0, bisect.bisect_right(track.times, t0) - 1)
            hi = bisect.bisect_left(track.times, t1) + 1
            return np.array(track.times[lo:hi]), np.array(track.values[lo:hi])


class DeviceThread(threading.Thread):
    """Runs one device: connect, poll into the buffer, and on failure retry with backoff."""

    def __init__(self, device: Device, buffer: Buffer) -> None:
        super().__init__(name=f"oodida-{device.name}", daemon=True)
        self.device = device
        self.buffer = buffer
        self.available = False
        self.reason = "not connected yet"  # the latest failure
        self.cause = self.reason  # the failure that took the device down
        self.since = time.time()
        self.generation = 0  # counts the connections made
        self.attempts = 0  # counts the connections tried
        self._stop_event = threading.Event()

    def run(self) -> None:
        delay = BACKOFF
        while not self._stop_event.is_set():
            try:
                self.device.open()
            except Exception as exc:
                self.attempts += 1
                self._down(f"cannot connect: {_why(exc)}")
                self._stop_event.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF
            with self.buffer.cond:
                self.available, self.reason, self.since = True, "", time.time()
                self.generation += 1
                self.attempts += 1
                self.buffer.cond.notify_all()
            log.info("%s connected", self.device.name)
            try:
                while not self._stop_event.is_set():
                    readings = self.device.poll()
                    if readings:
                        self.buffer.put(readings)
            except Exception as exc:
                self._down(f"disconnected: {_why(exc)}")
            finally:
                with contextlib.suppress(Exception):
                    self.device.shut()

    def _down(self, reason: str) -> None:
        with self.buffer.cond:
            if self.available:
                log.warning("%s %s; retrying", self.device.name, reason)
            if self.available:
                self.since, self.cause = time.time(), reason
            elif self.generation == 0:  # never connected: the latest failure is the cause
                self.cause = reason
            self.available, self.reason = False, reason
            self.buffer.cond.notify_all()

    def stop(self) -> None:
        self._stop_event.set()

    def status(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        latest = f"; then {self.reason}" if self.reason != self.cause else ""
        return f"{self.device.name} is unavailable since {when} ({self.cause}{latest}); it is being retried"


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


class LiveSource:
    """Readings from live devices, one per client."""

    live = True

    def __init__(
        self,
        kind: str,
        devices: dict[int, Device],
        catalogues: dict[int, tuple[Entry, ...]],
        keep: float = KEEP,
    ) -> None:
        self.kind = kind
        self.catalogues = catalogues
        self.buffers = {cid: Buffer(keep) for cid in devices}
        self.threads = {cid: DeviceThread(dev, self.buffers[cid]) for cid, dev in devices.items()}
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if not self._started:
                for thread in self.threads.values():
                    thread.start()
                self._started = True

    def check(self, client_ids: Iterable[int]) -> None:
        missing = [c for c in client_ids if c not in self.threads]
        if missing:
            raise SourceError(f"no {self.kind} device for client(s) {', '.join(map(str, missing))}")

    def catalogue(self, client_id: int) -> tuple[Entry, ...]:
        return self.catalogues.get(client_id, ())

    def read(
        self,
        client_id: int,
        assignment_id: str,
        iteration: int,
        signals: Sequence[str],
        samples: int,
        frequency: int,
        *,
        deadline: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> dict[str, FloatArray]:
        check_request(samples, frequency)
        self.start()
        entries = {e.signal: e for e in self.catalogue(client_id)}
        missing = [s for s in signals if s not in entries]
        if missing:
            raise SourceError(
                f"client {client_id} does not deliver {', '.join(map(repr, missing))} "
                f"(its {self.kind} source delivers {', '.join(entries) or 'nothing'})"
            )
        if samples == 0:
            return {s: np.zeros(0) for s in signals}
        thread = self.threads[client_id]
        buffer = self.buffers[client_id]
        self._first_connection(thread, buffer, deadline)
        t0 = time.time()
        t_end = t0 + (samples - 1) / frequency
        self._wait(thread, buffer, signals, t0, t_end, deadline, stop)
        at = t0 + np.arange(samples, dtype=np.float64) / frequency
        return {s: self._resample(client_id, buffer, entries[s], t0, t_end, at) for s in signals}

    @staticmethod
    def _first_connection(thread: DeviceThread, buffer: Buffer, deadline: float | None) -> None:
        """Right after the edge started, wait (at most FIRST_CONNECT seconds, and not past the
        deadline) until the device's first connection succeeded or failed."""
        limit = time.monotonic() + FIRST_CONNECT
        with buffer.cond:
            while thread.attempts == 0 and time.monotonic() < limit:
                if deadline is not None and time.time() > deadline:
                    return
                buffer.cond.wait(0.1)

    def _wait(
        self,
        thread: DeviceThread,
        buffer: Buffer,
        signals: Sequence[str],
        t0: float,
        t_end: float,
        deadline: float | None,
        stop: Callable[[], bool] | None,
    ) -> None:
        checked = time.monotonic()
        with buffer.cond:
            if not thread.available:
                raise SignalUnavailable(thread.status())
            generation = thread.generation
            while True:
                now = time.time()
                if not thread.available or thread.generation != generation:
                    raise SignalUnavailable(thread.status())
                late = [s for s in signals if (buffer.latest(s) or 0.0) < t_end]
                if not late:
                    return
                for s in late:
                    last = buffer.latest(s)
                    quiet = now - max(last or t0, t0)
                    if quiet > _stall_after(buffer, s):
                        raise SignalUnavailable(
                            f"{thread.device.name}: no reading of {s!r} for {quiet:.1f} s"
                            + ("" if last else " since the task started")
                        )
                if deadline is not None and now > deadline:
                    raise SignalUnavailable(
                        f"{thread.device.name}: the iteration's deadline passed before "
                        f"{', '.join(map(repr, late))} had {t_end - t0:.1f} s of readings"
                    )
                if stop is not None and time.monotonic() - checked > CHECK_EVERY:
                    buffer.cond.release()
                    try:
                        stopped = stop()
                    finally:
                        buffer.cond.acquire()
                    checked = time.monotonic()
                    if stopped:
                        raise Stopped("the assignment ended while the vehicle was reading")
                buffer.cond.wait(0.25)

    def close(self) -> None:
        """Stop every device thread (each closes its device) and wait for them."""
        for thread in self.threads.values():
            thread.stop()
        for thread in self.threads.values():
            if thread.is_alive():
                thread.join(5.0)

    @staticmethod
    def _resample(
        client_id: int, buffer: Buffer, entry: Entry, t0: float, t_end: float, at: FloatArray
    ) -> FloatArray:
        times, values = buffer.window(entry.signal, t0, t_end)
        ok = (values >= entry.low) & (values <= entry.high)
        if not ok.all():
            log.warning(
                "client %d: %d reading(s) of %r outside %g to %g %s dropped",
                client_id,
                int((~ok).sum()),
                entry.signal,
                entry.low,
                entry.high,
                entry.unit,
            )
            times, values = times[ok], values[ok]
        if times.size == 0:
            raise SignalUnavailable(f"client {client_id}: no reading of {entry.signal!r} within its range")
        return np.interp(at, times, values)


def _stall_after(buffer: Buffer, signal: str) -> float:
    track = buffer.tracks.get(signal)
    if track is None or len(track.times) < 3:
        return STALL_FLOOR
    recent = track.times[-20:]
    step = (recent[-1] - recent[0]) / (len(recent) - 1)
    return max(STALL_FLOOR, 20 * step)
