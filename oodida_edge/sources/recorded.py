"""Recorded drives of any format (MDF4 files, CAN logs): per-signal time series, replayed.

A loader turns one file into a ``Drive``: for each signal id, its readings and their times
(seconds from the drive's start). ``check_series`` is the one validation every format goes
through: strictly increasing times, no gap longer than ``max_gap``, readings within the
signal's range, each error naming the file, the signal and where (a line, a frame, a sample).

``RecordedSource`` replays drives with the layout and arithmetic of CSV replay
(oodida_edge/sources/csvfile.py): PATH is a file every client shares, each from its own
offset (the ``(client_id * 997) % n``-th reading time of the drive's densest signal), or a
directory of ``<client id><suffix>`` files with a shared ``drive<suffix>``. Iteration ``i``
reads the times ``offset + (i * samples + k) / frequency``, linearly interpolated; the drive
loops after its period (the span plus one median step). Loaded drives are cached per process
and reloaded when the file changes.
"""

from __future__ import annotations

import math
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import Entry, FloatArray, SourceError, check_request, resolved

__all__ = [
    "GAP_FLOOR",
    "GAP_STEPS",
    "OFFSET_STRIDE",
    "Drive",
    "RecordedSource",
    "Series",
    "check_series",
    "locate",
    "max_gap_for",
    "median_step",
]

OFFSET_STRIDE = 997
GAP_FLOOR = 2.0  # seconds: a pause shorter than this is never a gap
GAP_STEPS = 20  # ... nor one shorter than this many median steps of the signal


@dataclass(frozen=True)
class Series:
    """One signal's readings: times in seconds from the drive's start, strictly increasing."""

    times: FloatArray
    values: FloatArray


@dataclass(frozen=True)
class Drive:
    """One recorded drive: every signal it holds, and what the client advertises for it."""

    path: Path
    series: dict[str, Series]
    entries: tuple[Entry, ...]
    period: float  # seconds after which the drive starts over

    @classmethod
    def of(cls, path: Path, series: dict[str, Series], entries: Sequence[Entry]) -> Drive:
        """A drive whose times start at its earliest reading; its period is its span plus one
        median step of its densest signal."""
        if not series:
            raise SourceError(f"{path}: no mapped signal has readings")
        origin = min(float(s.times[0]) for s in series.values())
        shifted: dict[int, FloatArray] = {}  # signals of one group share one times array: shift it once
        moved = {}
        for sid, s in series.items():
            if id(s.times) not in shifted:
                shifted[id(s.times)] = s.times - origin
            moved[sid] = Series(shifted[id(s.times)], s.values)
        end = max(float(s.times[-1]) for s in moved.values())
        densest = max(moved.values(), key=lambda s: s.times.size)
        step = median_step(densest.times) if densest.times.size > 1 else 1.0
        return cls(path, moved, tuple(entries), end + step)

    @property
    def signals(self) -> tuple[str, ...]:
        return tuple(self.series)

    def offset(self, client_id: int) -> float:
        """Where a client sharing this drive starts, in seconds."""
        times = max(self.series.values(), key=lambda s: s.times.size).times
        return float(times[(int(client_id) * OFFSET_STRIDE) % times.size])

    def resample(self, signal: str, start: float, samples: int, frequency: int) -> FloatArray:
        s = self.series[signal]
        t = np.arange(samples, dtype=np.float64)
        t /= frequency
        t += start
        np.remainder(t, self.period, out=t)
        if s.times.size == 1:
            return np.full(samples, float(s.values[0]))
        # As np.interp(..., period=self.period), without its sort and copies of the whole drive
        # at every read: the times are increasing and within [0, period); a time before the
        # first reading or after the last lies on the loop's wrap, from the last to the first.
        xp, fp = s.times, s.values
        out = np.interp(t, xp, fp)
        wrap = (t < xp[0]) | (t > xp[-1])
        if wrap.any():
            w = t[wrap]
            w[w < xp[0]] += self.period
            out[wrap] = fp[-1] + (w - xp[-1]) * ((fp[0] - fp[-1]) / (xp[0] + self.period - xp[-1]))
        return out


def median_step(times: FloatArray) -> float:
    """The median of the steps between readings; ``np.median(np.diff(times))``, four times
    faster on a million readings: it partitions the steps in place (np.median copies them)."""
    steps = np.diff(times)
    half = steps.size // 2
    if steps.size % 2:
        steps.partition(half)
        return float(steps[half])
    steps.partition((half - 1, half))
    return (float(steps[half - 1]) + float(steps[half])) / 2.0


def max_gap_for(times: FloatArray) -> float:
    """The longest pause between two readings that is not a gap in the recording."""
    if times.size < 2:
        return math.inf
    return max(GAP_FLOOR, GAP_STEPS * median_step(times))


def check_series(
    path: Path,
    entry: Entry,
    times: FloatArray,
    values: FloatArray,
    where: Callable[[int], str],
    max_gap: float | None = None,
) -> None:
    """Raise SourceError, naming the file, the signal and ``where(i)`` (a line, a frame), for
    the first reading that is not finite, not after the previous one, after a gap, or outside
    the signal's range. ``max_gap`` defaults to ``max_gap_for(times)``."""
    name = f"{entry.signal!r} ({entry.origin})"
    if times.size == 0:
        raise SourceError(f"{path}: signal {name} has no readings")
    bad = ~(np.isfinite(times) & np.isfinite(values))
    if bad.any():
        i = int(np.argmax(bad))
        raise SourceError(f"{path} {where(i)}: signal {name}: the reading or its time is not a finite number")
    steps = np.diff(times)
    back = steps <= 0
    if back.any():
        i = int(np.argmax(back)) + 1
        raise SourceError(
            f"{path} {where(i)}: signal {name}: time {times[i]:.6f} s is not after the previous reading's "
            f"{times[i - 1]:.6f} s ({where(i - 1)}); timestamps must increase"
        )
    limit = max_gap_for(times) if max_gap is None else max_gap
    if steps.size and float(steps.max()) > limit:
        i = int(np.argmax(steps)) + 1
        raise SourceError(
            f"{path} {where(i)}: signal {name}: a gap of {steps[i - 1]:.3f} s with no reading, from "
            f"{times[i - 1]:.3f} s to {times[i]:.3f} s (longer than {limit:.3f} s)"
        )
    outside = (values < entry.low) | (values > entry.high)
    if outside.any():
        i = int(np.argmax(outside))
        raise SourceError(
            f"{path} {where(i)}: signal {name}: {values[i]:g} {entry.unit} is outside its range "
            f"{entry.low:g} to {entry.high:g} {entry.unit}"
        )


def locate(
    root: Path,
    client_id: int,
    own: Sequence[str],
    shared: Sequence[str],
    error: type[SourceError] = SourceError,
) -> tuple[Path, bool]:
    """The file client ``client_id`` replays under ``root``, and whether it shares it: ``root``
    itself when it is a file (shared), else the first of its ``own`` names in the directory,
    else the first of its ``shared`` names; none raises ``error`` naming what was looked for.
    Every recorded format's layout (CSV's too)."""
    if not root.is_dir():
        return root, True
    for names, is_shared in ((own, False), (shared, True)):
        for name in names:
            if (root / name).is_file():
                return root / name, is_shared
    raise error(
        f"client {client_id} has no recorded drive: neither {' nor '.join([*own, *shared])} in {root}"
    )


_cache: dict[tuple[Path, str], tuple[tuple[int, int], Drive]] = {}
_cache_lock = threading.Lock()


class RecordedSource:
    """Readings replayed from recorded drives of one format (``loader``)."""

    live = False

    def __init__(
        self,
        path: str | Path,
        kind: str,
        suffixes: Sequence[str],
        loader: Callable[[Path], Drive],
        cache_key: str = "",
    ) -> None:
        self.path = resolved(path)
        self.kind = kind
        self.suffixes = tuple(suffixes)
        self.loader = loader
        self.cache_key = f"{kind}:{cache_key}"
        if not self.path.exists():
            raise SourceError(
                f"no recorded drive at {self.path} (expected a {'/'.join(self.suffixes)} file or a directory)"
            )
        if not (self.path.is_file() or self.path.is_dir()):  # a FIFO or a device would block or never end
            raise SourceError(f"{self.path} is neither a file nor a directory of recorded drives")
        self._sources: dict[int, tuple[Path, bool]] = {}

    def source(self, client_id: int) -> tuple[Path, bool]:
        """The file a client replays, and whether it shares it (from an offset)."""
        found = self._sources.get(client_id)
        if found is not None:
            return found
        found = locate(
            self.path,
            client_id,
            [f"{client_id}{s}" for s in self.suffixes],
            [f"drive{s}" for s in self.suffixes],
        )
        self._sources[client_id] = found
        return found

    def drive(self, client_id: int) -> tuple[Drive, float]:
        """The client's validated drive and its start offset in seconds."""
        path, shared = self.source(client_id)
        try:
            st = path.stat()
        except OSError as exc:
            raise SourceError(f"cannot read the recorded drive {path}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):  # replaced while serving: a FIFO would block the task
            raise SourceError(f"the recorded drive {path} is not a regular file any more")
        stamp = (st.st_mtime_ns, st.st_size)
        key = (path, self.cache_key)
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None and hit[0] == stamp:
            drive = hit[1]
        else:
            drive = self.loader(path)
            with _cache_lock:
                _cache[key] = (stamp, drive)
        return drive, drive.offset(client_id) if shared else 0.0

    def check(self, client_ids: Iterable[int]) -> None:
        for cid in client_ids:
            self.drive(cid)

    def catalogue(self, client_id: int) -> tuple[Entry, ...]:
        return self.drive(client_id)[0].entries

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
        drive, offset = self.drive(client_id)
        missing = [s for s in signals if s not in drive.series]
        if missing:
            raise SourceError(
                f"the recorded drive {drive.path.name} of client {client_id} has no "
                f"{', '.join(map(repr, missing))}; it has {', '.join(drive.signals)}"
            )
        start = offset + math.fmod(iteration * samples, drive.period * frequency) / frequency
        return {s: drive.resample(s, start, samples, frequency) for s in signals}

    def close(self) -> None:
        pass
