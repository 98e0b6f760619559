"""Recorded CAN logs, decoded with a DBC file: ``oodida-edge --source canlog:PATH --dbc FILE``.

A log is any format python-can reads: candump ``.log``, Vector ``.asc`` and ``.blf``, PEAK
``.trc`` and ASAM MDF ``.mf4`` bus logs (the latter also needs asammdf, ``oodida[mdf]``).
PATH is a file every client shares or a directory of ``<client id><suffix>`` files (as for
every recorded source, oodida_edge/sources/recorded.py).

Loading reads the log once with python-can's reader, keeping the raw frames (number, time,
bytes) of the message ids that carry a mapped signal and skipping every other frame; then
each message's frames are decoded at once (``FrameDecoder``, numpy bit extraction equal to
cantools' ``Message.decode``), converted by the mapping's rule and validated by
``check_series``. Errors name the file, the frame (its number in the log, from 1; for text
logs also its line, looked up only when an error is reported) and the signal: a timestamp
not after the previous frame of its message, a gap, a reading out of range, a frame shorter
than its DBC message, a log python-can cannot read. Frames of every channel in a log are
decoded alike (one DBC describes one bus: record or split one bus per log); remote and error
frames are skipped.
"""

from __future__ import annotations

import array
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from .base import Entry, SourceError, require
from .dbc import Bound, FrameDecoder, dbc_rules, load_dbc
from .mapping import Mapping
from .recorded import Drive, RecordedSource, Series, check_series

__all__ = ["SUFFIXES", "canlog_source", "load_canlog"]

SUFFIXES = (".log", ".asc", ".blf", ".trc", ".mf4")
TEXT = (".log", ".asc", ".trc")


def canlog_source(path: str | Path, dbc: Path, mapping: Mapping) -> RecordedSource:
    """Replayed CAN logs, decoded with ``dbc``; the DBC and the mapping are checked now."""
    require("can", "can", "cantools")
    db = load_dbc(dbc)
    bound = dbc_rules(db, Path(dbc), mapping)
    target = Path(path)
    if target.is_file():
        _suffix(target)
    loader = functools.partial(load_canlog, bound=bound)
    key = f"{Path(dbc).resolve()}:{mapping.describe()}"
    return RecordedSource(target, "canlog", SUFFIXES, loader, cache_key=key)


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise SourceError(
            f"{path}: not a CAN log python-can reads (the suffix is one of {', '.join(SUFFIXES)})"
        )
    return suffix


def _reader(path: Path, suffix: str, file: IO[str] | None = None) -> Any:
    (can,) = require("can", "can")
    if suffix == ".mf4":
        from .mdf import quiet

        quiet(*require("mdf", "asammdf"))
    readers = {
        ".log": can.CanutilsLogReader,
        ".asc": can.ASCReader,
        ".blf": can.BLFReader,
        ".trc": can.TRCReader,
        ".mf4": can.MF4Reader,
    }
    return readers[suffix](file if file is not None else path)


class _Lines:
    """A text file that counts the lines read from it (for the line of a frame in an error)."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        text = next(self.file)
        self.line += 1
        return text

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def _line_of(path: Path, suffix: str, frame: int) -> int | None:
    """The line of a text log holding its ``frame``-th frame (read again: errors only)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return _line_in(path, (st.st_mtime_ns, st.st_size), suffix, frame)


@functools.lru_cache(maxsize=64)
def _line_in(path: Path, stamp: tuple[int, int], suffix: str, frame: int) -> int | None:
    if suffix not in TEXT:
        return None
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            lines = _Lines(file)
            for n, _ in enumerate(_reader(path, suffix, lines), 1):  # type: ignore[arg-type]
                if n == frame:
                    return lines.line
    except Exception:
        return None
    return None


def _where(path: Path, suffix: str, frames: Sequence[int]) -> Callable[[int], str]:
    def where(i: int) -> str:
        line = _line_of(path, suffix, frames[i])
        return f"frame {frames[i]}" + (f" (line {line})" if line is not None else "")

    return where


class _Frames:
    """The frames of one id, packed (a long log holds millions): their numbers in the log,
    times, sizes and bytes one after another."""

    def __init__(self) -> None:
        self.numbers = array.array("q")
        self.times = array.array("d")
        self.sizes = array.array("H")
        self.data = bytearray()


def _collect(path: Path, suffix: str, wanted: dict[int, bool]) -> dict[int, _Frames]:
    """The number, time and bytes of every data frame whose id is in ``wanted`` (id: whether
    it is extended; a 29-bit id is not the 11-bit id of the same number)."""
    found = {fid: _Frames() for fid in wanted}
    n = 0
    try:
        reader = _reader(path, suffix)
    except SourceError:
        raise
    except Exception as exc:
        if suffix == ".mf4":
            from .mdf import release_unread

            release_unread(exc)
        raise SourceError(f"{path}: python-can cannot open this {suffix} log ({exc})") from None
    if suffix == ".blf":
        _whole(path, reader)
    try:
        with reader:
            for n, msg in enumerate(reader, 1):
                fid = msg.arbitration_id
                if wanted.get(fid) == msg.is_extended_id and not (msg.is_remote_frame or msg.is_error_frame):
                    kept = found[fid]
                    kept.numbers.append(n)
                    kept.times.append(msg.timestamp)
                    kept.sizes.append(len(msg.data))
                    kept.data += msg.data
    except SourceError:
        raise
    except Exception as exc:
        line = _line_of(path, suffix, n) if n else None
        after = f"after frame {n}" + (f" (line {line})" if line else "") if n else "at its start"
        raise SourceError(f"{path}: python-can cannot read this {suffix} log {after} ({exc})") from None
    return found


def _whole(path: Path, reader: Any) -> None:
    """A BLF file shorter than its header says was cut off (python-can would read the frames
    up to the cut and stop without a word)."""
    expected = getattr(reader, "file_size", 0)
    size = path.stat().st_size
    if isinstance(expected, int) and expected > size:
        reader.stop()
        raise SourceError(
            f"{path}: the BLF log is truncated: its header says {expected} bytes, the file has {size}"
        )


def load_canlog(path: Path, bound: dict[int, list[Bound]]) -> Drive:
    """The drive a CAN log records: the mapped signals, decoded, converted and validated."""
    suffix = _suffix(path)
    extended = {fid: bool(rules[0].message.is_extended_frame) for fid, rules in bound.items()}
    found = _collect(path, suffix, extended)
    # Times from the first mapped frame (errors then read alike for absolute and relative logs).
    origin = min((f.times[0] for f in found.values() if f.times), default=0.0)
    series: dict[str, Series] = {}
    entries: list[Entry] = []
    for fid, rules in bound.items():
        message = rules[0].message
        kept = found[fid]
        if not kept.numbers:
            names = ", ".join(repr(b.rule.signal) for b in rules)
            raise SourceError(
                f"{path}: no frame of message {message.name} (id 0x{fid:X}) carrying {names}; "
                f"the log does not record it"
            )
        length = int(message.length)
        where = _where(path, suffix, kept.numbers)
        sizes = np.frombuffer(kept.sizes, dtype=np.uint16).astype(np.int64)
        short = sizes < length
        if short.any():
            i = int(np.argmax(short))
            raise SourceError(
                f"{path} {where(i)}: message {message.name} (id 0x{fid:X}) has {sizes[i]} data bytes, "
                f"its DBC definition {length}; the frame cannot be decoded"
            )
        packed = np.frombuffer(kept.data, dtype=np.uint8)
        if (sizes == length).all():
            matrix = packed.reshape(-1, length)
        else:  # frames longer than the message (a DLC of 8 for 4 defined bytes): their first bytes
            starts = np.cumsum(sizes) - sizes
            matrix = packed[starts[:, None] + np.arange(length)]
        decoded = FrameDecoder(message, [b.signal for b in rules]).decode(matrix)
        stamps = np.array(kept.times, dtype=np.float64)
        stamps -= origin
        for b in rules:
            entry = b.rule.entry("dbc")
            values = b.rule.convert(decoded[b.signal.name])
            check_series(path, entry, stamps, values, where)
            series[entry.signal] = Series(stamps, values)
            entries.append(entry)
    return Drive.of(path, series, entries)
