"""Recorded drives in ASAM MDF measurement files (``oodida-edge --source mdf:PATH``), read
with asammdf (``pip install 'oodida[mdf]'``).

PATH is an MDF file (MDF 4 ``.mf4``; MDF 3 ``.mdf`` and ``.dat`` too: asammdf reads versions
2 to 4) that every client replays from its own offset, or a directory of ``<client id>.mf4``
files with a shared ``drive.mf4`` (see oodida_edge/sources/recorded.py, which also replays).

Which channel delivers which signal is the mapping's ``mdf`` key (oodida_edge/sources/
mapping.py). Without a mapping file, a channel named like a built-in signal, its short name
(``speed``) or its VSS path (``Vehicle.Speed``), in any case, delivers it, and signals the
file has no channel for are simply not offered. A channel the operator's mapping names must
be in the file: a missing one is an error naming the mapping's line, the signal, the file
and the nearest channel name. Names match exactly first, then case-insensitively. A channel
recorded in several channel groups is read from the first group that holds it (the order of
the file, as asammdf's ``channels_db`` lists it).

Each channel keeps its own time base (its group's master channel), so signals recorded at
different rates replay correctly. Its physical values (the file's conversion applied) are
converted by the mapping's ``scale`` and ``offset`` and validated by ``check_series``: times
strictly increasing, no gap, values in the signal's range, each error naming the file, the
sample and the signal. A channel of text or of arrays is an error, as is a file that is not
MDF.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from oodida_core.protocol.signals import SIGNALS

from .base import Entry, FloatArray, SourceError, require
from .mapping import Mapping, MappingError, Rule, default_mapping
from .recorded import Drive, RecordedSource, Series, check_series, max_gap_for

__all__ = ["SUFFIXES", "load_mdf", "mdf_source"]

SUFFIXES = (".mf4", ".mdf", ".dat")  # MDF 4, and MDF 2/3 as CANape and INCA name them
_MAGIC = (b"MDF     ", b"UnFinMF ")  # a finalised MDF file, one a logger did not finalise


def mdf_source(path: str | Path, mapping: Mapping | None = None) -> RecordedSource:
    """Replayed MDF drives at ``path`` under ``mapping`` (the default mapping if None)."""
    mapping = default_mapping() if mapping is None else mapping
    rules = mapping.for_kind("mdf")
    key = hashlib.sha256(repr((mapping.path, sorted(rules.items()))).encode()).hexdigest()[:16]
    return RecordedSource(path, "mdf", SUFFIXES, lambda p: load_mdf(p, mapping), cache_key=key)


def _candidates(rule: Rule, default: bool) -> tuple[str, ...]:
    """The channel names that deliver ``rule``'s signal, in order of preference."""
    name = rule.names["mdf"]
    builtin = SIGNALS.get(rule.signal)
    if default and builtin is not None:
        return (name, builtin.vss)
    return (name,)


def _find(names: tuple[str, ...], exact: set[str], folded: dict[str, str]) -> str | None:
    for name in names:
        if name in exact:
            return name
    for name in names:
        hit = folded.get(name.lower())
        if hit is not None:
            return hit
    return None


def _missing(path: Path, mapping: Mapping, rule: Rule, channels: list[str]) -> MappingError:
    name = rule.names["mdf"]
    near = difflib.get_close_matches(name.lower(), [c.lower() for c in channels], n=1, cutoff=0.6)
    spelt = {c.lower(): c for c in reversed(channels)}
    hint = f"; did you mean {spelt[near[0]]!r}?" if near else f" (it has {_listing(channels)})"
    return MappingError(
        f"{rule.where}: signal {rule.signal!r}: the MDF channel {name!r} is not in {path}{hint}"
    )


def _listing(channels: list[str], most: int = 12) -> str:
    shown = ", ".join(repr(c) for c in channels[:most])
    more = len(channels) - most
    return shown + (f" and {more} more" if more > 0 else "") if channels else "no channels"


def load_mdf(path: Path, mapping: Mapping | None = None) -> Drive:
    """The validated drive in the MDF file ``path`` under ``mapping``."""
    (asammdf,) = require("mdf", "asammdf")
    quiet(asammdf)
    mapping = default_mapping() if mapping is None else mapping
    default = mapping.path is None
    rules = mapping.for_kind("mdf")
    if not rules:
        raise SourceError(f"{mapping.describe()} maps no signal to an MDF channel (key mdf)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise SourceError(f"cannot read the recorded drive {path}: {exc.strerror}") from None
    if head not in _MAGIC:
        raise SourceError(f"{path}: not an MDF file (it does not begin with an MDF identification block)")
    try:
        mdf = asammdf.MDF(path)
    except Exception as exc:  # asammdf raises MdfException, OSError, struct errors...
        release_unread(exc)
        reason = str(exc).replace(f'"{path}"', "the file").strip() or type(exc).__name__
        raise SourceError(f"{path}: not an MDF file asammdf can read ({reason})") from None
    try:
        db = mdf.channels_db
        masters = {(g, int(mdf.masters_db[g])) for g in mdf.masters_db}
        channels = [name for name, where in db.items() if not all(tuple(w) in masters for w in where)]
        exact = set(channels)
        folded: dict[str, str] = {}
        for name in channels:
            folded.setdefault(name.lower(), name)
        found: list[tuple[Rule, str]] = []
        for rule in rules.values():
            channel = _find(_candidates(rule, default), exact, folded)
            if channel is None:
                if default:
                    continue
                raise _missing(path, mapping, rule, channels)
            found.append((rule, channel))
        if not found:
            raise SourceError(
                f"{path}: no channel delivers a signal under {mapping.describe()} (the file has "
                f"{_listing(channels)}; name channels like a signal, e.g. speed or Vehicle.Speed, "
                f"or map them with --mapping)"
            )
        picks = [(c, *next(w for w in db[c] if tuple(w) not in masters)) for _, c in found]
        try:
            read = mdf.select(picks, copy_master=False)
        except Exception as exc:
            raise SourceError(
                f"{path}: asammdf cannot read the channels {_listing([p[0] for p in picks])}: {exc}"
            ) from None
    finally:
        mdf.close()
    series: dict[str, Series] = {}
    entries: list[Entry] = []
    gaps: dict[int, float] = {}  # the channels of a group share their master's array
    for (rule, channel), signal in zip(found, read, strict=True):
        entry = Entry(rule.signal, rule.unit, rule.low, rule.high, f"mdf:{channel}")
        values = rule.convert(_numbers(path, entry, signal.samples))
        times = np.asarray(signal.timestamps, dtype=np.float64)
        where = _sample
        invalid = getattr(signal, "invalidation_bits", None)
        if invalid is not None and np.any(invalid):  # samples the logger marked "no value"
            kept = np.flatnonzero(~np.asarray(invalid, dtype=bool))
            times, values = times[kept], values[kept]
            where = functools.partial(_kept_sample, kept)
        if id(times) not in gaps:
            gaps[id(times)] = max_gap_for(times)
        check_series(path, entry, times, values, where, gaps[id(times)])
        series[rule.signal] = Series(times, values)
        entries.append(entry)
    return Drive.of(path, series, entries)


def quiet(asammdf: Any) -> None:
    """asammdf logs to stderr through a handler of its own (an error line for each block of a
    corrupted file): to the edge's log instead, and never as bare lines beside --check's."""
    own = logging.getLogger("asammdf")
    console = getattr(asammdf, "console", None)
    if console is not None and console in own.handlers:
        own.removeHandler(console)
    if not any(isinstance(h, logging.NullHandler) for h in own.handlers):
        own.addHandler(logging.NullHandler())


def release_unread(exc: BaseException) -> None:
    """Close the asammdf objects a failed read left half-built: asammdf 8 deletes ``_file`` of
    a file it cannot read and its ``__del__`` then prints an AttributeError with a traceback."""
    tb = exc.__traceback__
    while tb is not None:
        obj: Any = tb.tb_frame.f_locals.get("self")
        if type(obj).__name__ in ("MDF4", "MDF3") and not hasattr(obj, "_file"):
            with contextlib.suppress(Exception):
                obj._file = None
                obj.close()  # sets _closed first: __del__ does nothing more
        tb = tb.tb_next


def _sample(i: int) -> str:
    return f"sample {i}"


def _kept_sample(kept: Any, i: int) -> str:
    return f"sample {int(kept[i])}"  # the sample's number in the file, invalid ones counted


def _numbers(path: Path, entry: Entry, samples: Any) -> FloatArray:
    array = np.asarray(samples)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        what = f"{array.dtype} values" if array.ndim == 1 else f"arrays of shape {array.shape[1:]}"
        raise SourceError(
            f"{path}: signal {entry.signal!r} ({entry.origin}): the channel holds {what}, not numbers"
        )
    return array.astype(np.float64, copy=False)
