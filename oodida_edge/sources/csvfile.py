"""Recorded drives: a client replays a CSV file instead of simulating its readings.

A recording is a CSV file with a header row: a ``timestamp`` column (seconds, strictly
increasing; any origin) and one column per signal it recorded, named as in
``oodida_core.protocol.signals`` (any subset of them, in any order). Blank lines are skipped.

Which file a client reads (``oodida-edge --replay PATH``):

- PATH is a file: every client replays it, each from its own offset into the recording, so
  clients differ: the row ``(client_id * 997) % rows`` is where client ``client_id`` starts.
- PATH is a directory: client N replays ``PATH/N.csv`` from its start (e.g. ``7.csv`` for
  client 7); a client without a file of its own shares ``PATH/drive.csv`` as above, and with
  neither the client cannot start.

Every file is validated when first loaded (the edge loads all of its clients' files at
start-up and refuses to start on a bad one), with an error naming the file, the line and the
column, for: no ``timestamp`` column, a column that is not a known signal (an error, not a
warning: a misspelt signal would otherwise silently disappear from what the client offers),
a repeated column, a row with too few or too many values, an empty or non-numeric (or NaN,
infinite) value, a timestamp not after the previous one, a reading outside its signal's
physical range (``Signal.low`` to ``Signal.high``), no signal column or fewer than two rows.
A loaded file is cached per process and reloaded (and validated again) when its mtime or size
changes.

Reading: a task's ``samples`` readings at ``frequency`` Hz are the recording linearly
interpolated at the times ``offset + (iteration * samples + k) / frequency`` (k < samples)
after the recording's first timestamp, so consecutive iterations continue the drive. The
recording loops: after its last row it continues with its first, one median row interval
later (and interpolates across that seam), so the loop period is the recorded span plus one
median interval. Readings depend on (file, client offset, iteration, samples, frequency) only,
never on the assignment: a recorded drive is the same drive whoever asks. Sampling below the
recording's rate picks interpolated points without smoothing.
"""

from __future__ import annotations

import csv
import math
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from oodida_core.protocol.signals import SIGNALS

from .base import Entry, SourceError, builtin_entry, resolved
from .recorded import locate

FloatArray = npt.NDArray[np.float64]

__all__ = ["OFFSET_STRIDE", "SHARED_NAME", "Recording", "ReplayError", "ReplaySensors", "load_recording"]

TIMESTAMP = "timestamp"
SHARED_NAME = "drive.csv"  # the file shared by the clients without one of their own
OFFSET_STRIDE = 997  # a prime: clients sharing a file start at rows (id * 997) % rows


class ReplayError(SourceError):
    """A recorded drive that cannot be replayed: a bad file, or a signal it does not hold."""


@dataclass(frozen=True)
class Recording:
    """One validated recording: times from 0, and the columns of the signals it holds."""

    path: Path
    times: FloatArray  # seconds since the first row, strictly increasing, times[0] == 0
    columns: dict[str, FloatArray]  # signal -> readings, one per row, in the file's order
    period: float  # seconds after which the recording starts over

    @property
    def rows(self) -> int:
        return int(self.times.size)

    @property
    def signals(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def offset(self, client_id: int) -> float:
        """Where a client sharing this recording starts, in seconds after its first row."""
        return float(self.times[(int(client_id) * OFFSET_STRIDE) % self.rows])

    def resample(self, signal: str, start: float, samples: int, frequency: int) -> FloatArray:
        """``samples`` readings of ``signal`` at ``frequency`` Hz from ``start`` seconds on."""
        t = np.arange(samples, dtype=np.float64)
        t /= frequency
        t += start
        np.remainder(t, self.period, out=t)
        return np.interp(t, self.times, self.columns[signal], period=self.period)


# --------------------------------------------------------------------------------------------
# Loading and validation.


def _number(text: str) -> float | None:
    """The finite float in ``text``, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (line number, cells) of every non-blank row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header: list[str] | None = None
            rows: list[tuple[int, list[str]]] = []
            for cells in reader:
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                if header is None:
                    header = [c.strip() for c in cells]
                else:
                    rows.append((reader.line_num, cells))
    except OSError as exc:
        raise ReplayError(f"cannot read the recorded drive {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ReplayError(f"{path}: not a readable CSV file ({exc})") from None
    if header is None:
        raise ReplayError(f"{path}: the file is empty (it needs a header row: {TIMESTAMP},<signals>)")
    return header, rows


def _check_header(path: Path, header: list[str]) -> None:
    known = ", ".join(SIGNALS)
    seen: set[str] = set()
    for index, name in enumerate(header, start=1):
        if not name:
            raise ReplayError(f"{path} line 1: column {index} has no name")
        if name in seen:
            raise ReplayError(f"{path} line 1: column {name!r} appears twice")
        seen.add(name)
        if name != TIMESTAMP and name not in SIGNALS:
            raise ReplayError(
                f"{path} line 1: column {name!r} is not a known signal (known: {known}; plus {TIMESTAMP!r})"
            )
    if TIMESTAMP not in seen:
        raise ReplayError(f"{path} line 1: no {TIMESTAMP!r} column (the columns are {', '.join(header)})")
    if len(header) < 2:
        raise ReplayError(f"{path} line 1: no signal column besides {TIMESTAMP!r} (known: {known})")


def _table(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> FloatArray:
    """The rows as a (rows x columns) float array; the first bad cell raises."""
    width = len(header)
    for line, cells in rows:
        if len(cells) != width:
            raise ReplayError(
                f"{path} line {line}: {len(cells)} value(s) where the header has {width} "
                f"({', '.join(header)})"
            )
    try:  # fast path: numpy parses the whole table at once
        table = np.array([cells for _, cells in rows], dtype=np.float64).reshape(len(rows), width)
        if np.isfinite(table).all():
            return table
    except ValueError:
        pass
    table = np.empty((len(rows), width))
    for i, (line, cells) in enumerate(rows):
        for j, (name, cell) in enumerate(zip(header, cells, strict=True)):
            value = _number(cell)
            if value is None:
                what = "an empty value" if not cell.strip() else f"{cell.strip()!r} is not a number"
                raise ReplayError(f"{path} line {line}, column {name!r}: {what}")
            table[i, j] = value
    return table


def _parse(path: Path) -> Recording:
    header, rows = _rows(path)
    _check_header(path, header)
    if len(rows) < 2:
        raise ReplayError(f"{path}: {len(rows)} data row(s); a recorded drive needs at least 2")
    table = _table(path, header, rows)
    lines = [line for line, _ in rows]
    stamps = table[:, header.index(TIMESTAMP)]
    steps = np.diff(stamps)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise ReplayError(
            f"{path} line {lines[i]}, column {TIMESTAMP!r}: {stamps[i]:g} is not after "
            f"{stamps[i - 1]:g} on line {lines[i - 1]} (timestamps must be strictly increasing)"
        )
    columns: dict[str, FloatArray] = {}
    for j, name in enumerate(header):
        if name == TIMESTAMP:
            continue
        values = np.ascontiguousarray(table[:, j])
        sig = SIGNALS[name]
        outside = (values < sig.low) | (values > sig.high)
        if outside.any():
            i = int(np.argmax(outside))
            raise ReplayError(
                f"{path} line {lines[i]}, column {name!r}: {values[i]:g} {sig.unit} is outside "
                f"the signal's range {sig.low:g} to {sig.high:g} {sig.unit}"
            )
        columns[name] = values
    times = stamps - stamps[0]
    period = float(times[-1] + np.median(steps))
    return Recording(path=path, times=times, columns=columns, period=period)


_cache: dict[Path, tuple[tuple[int, int], Recording]] = {}
_cache_lock = threading.Lock()


def load_recording(path: str | Path) -> Recording:
    """The validated recording in ``path``; cached, and reloaded when the file changed."""
    path = resolved(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise ReplayError(f"cannot read the recorded drive {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):  # replaced while serving: a FIFO would block the task
        raise ReplayError(f"the recorded drive {path} is not a regular file any more")
    stamp = (st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _cache.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    recording = _parse(path)
    with _cache_lock:
        _cache[path] = (stamp, recording)
    return recording


# --------------------------------------------------------------------------------------------
# The sensor source.


class ReplaySensors:
    """Readings replayed from recorded drives (see the module's docstring for the layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = resolved(path)
        if not self.path.exists():
            raise ReplayError(f"no recorded drive at {self.path} (expected a CSV file or a directory)")
        if not (self.path.is_file() or self.path.is_dir()):  # a FIFO or a device would block or never end
            raise ReplayError(f"{self.path} is neither a file nor a directory of recorded drives")
        self._sources: dict[int, tuple[Path, bool]] = {}

    def source(self, client_id: int) -> tuple[Path, bool]:
        """The file client ``client_id`` replays, and whether it is shared (offset) or its own."""
        found = self._sources.get(client_id)
        if found is not None:
            return found
        found = locate(self.path, client_id, [f"{int(client_id)}.csv"], [SHARED_NAME], ReplayError)
        self._sources[client_id] = found
        return found

    def recording(self, client_id: int) -> tuple[Recording, float]:
        """The client's validated recording and its start offset in seconds."""
        path, shared = self.source(client_id)
        recording = load_recording(path)
        return recording, recording.offset(client_id) if shared else 0.0

    kind = "csv"
    live = False

    def catalogue(self, client_id: int) -> tuple[Entry, ...]:
        """What the client delivers: its recording's columns, in the registry's order."""
        return tuple(builtin_entry(s, f"csv:{s}") for s in self.signals_for(client_id))

    def close(self) -> None:
        pass

    def signals_for(self, client_id: int) -> tuple[str, ...]:
        """The signals the client can offer: its recording's columns, in the registry's order."""
        held = set(self.recording(client_id)[0].signals)
        return tuple(s for s in SIGNALS if s in held)

    def check(self, client_ids: Iterable[int]) -> None:
        """Load and validate every file the clients replay (each file once); the first bad
        one raises."""
        for cid in client_ids:
            self.recording(cid)

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
        if isinstance(signals, str):
            signals = [signals]
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
            raise ReplayError(f"samples must be a non-negative integer, got {samples!r}")
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ReplayError(f"frequency must be a positive integer (Hz), got {frequency!r}")
        recording, offset = self.recording(client_id)
        missing = [s for s in signals if s not in recording.columns]
        if missing:
            raise ReplayError(
                f"the recorded drive {recording.path.name} of client {client_id} has no "
                f"{', '.join(map(repr, missing))} column; it has {', '.join(recording.signals)}"
            )
        # Seconds into the drive, reduced modulo the period before adding the small part, so
        # that a late iteration keeps its precision.
        start = offset + math.fmod(iteration * samples, recording.period * frequency) / frequency
        return {s: recording.resample(s, start, samples, frequency) for s in signals}
