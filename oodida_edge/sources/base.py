"""What every signal source of a vehicle is: a catalogue of the signals it delivers, and reads.

A source serves the clients of one edge process. ``check`` runs once at start and raises
``SourceError`` for anything wrong (a file that does not load, a DBC without a mapped signal,
an adapter that is not there); the process refuses to start then. ``catalogue(client)`` is
what the client advertises: only what it can deliver. ``read`` gives ``samples`` readings per
signal at ``frequency`` Hz, keyed by signal id (oodida_core/protocol/signals.py): a recorded
source computes them at once; a live one waits for them (``samples / frequency`` seconds) and
stops early at ``deadline`` or when ``stop()`` says so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np
import numpy.typing as npt

from oodida_core.protocol.errors import OodidaError
from oodida_core.protocol.signals import SIGNALS, vss_path

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "Entry",
    "FloatArray",
    "MissingExtra",
    "SensorError",
    "SignalUnavailable",
    "Source",
    "SourceError",
    "builtin_entry",
    "check_request",
    "require",
    "resolved",
]


class SensorError(OodidaError, ValueError):
    """A request for readings that a sensor source cannot serve (unknown signal, bad size)."""


class SourceError(SensorError):
    """A source that cannot serve: bad input (naming the file, line or signal) or a device."""


class SignalUnavailable(SourceError):
    """A live source that cannot deliver now (an adapter unplugged, a bus gone quiet); the
    task fails with this reason and the device is retried meanwhile."""


class MissingExtra(SourceError):
    """A source whose library is not installed; the message names the extra to install."""


@dataclass(frozen=True)
class Entry:
    """One signal a client delivers: its id, VSS path, unit, physical range and origin."""

    signal: str  # the id: a built-in short name, or a VSS path
    unit: str
    low: float
    high: float
    origin: str  # where it comes from: "simulated", "csv:speed", "dbc:VehicleSpeed", "obd:SPEED"

    @property
    def vss(self) -> str:
        return vss_path(self.signal)


def builtin_entry(signal: str, origin: str) -> Entry:
    """The catalogue entry of a built-in signal, with its registry unit and range."""
    s = SIGNALS[signal]
    return Entry(signal, s.unit, s.low, s.high, origin)


class Source(Protocol):
    """Where a client's readings come from."""

    kind: str  # "simulated", "csv", "mdf", "canlog", "obd", "can"
    live: bool  # readings arrive in real time (a read waits for them)

    def check(self, client_ids: Iterable[int]) -> None:
        """Validate everything the clients need now; raises SourceError."""
        ...

    def catalogue(self, client_id: int) -> tuple[Entry, ...]:
        """The signals the client delivers."""
        ...

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
        """``samples`` float64 readings per signal id, at ``frequency`` Hz."""
        ...

    def close(self) -> None:
        """Release devices and threads."""
        ...


def check_request(samples: object, frequency: object) -> None:
    """The shape of a read; a bad one raises SourceError."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise SourceError(f"samples must be a non-negative integer, got {samples!r}")
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
        raise SourceError(f"frequency must be a positive integer (Hz), got {frequency!r}")


def resolved(path: str | Path) -> Path:
    """``path`` absolute, ``~`` expanded (the shell leaves ``mdf:~/drive.mf4`` alone), its
    symlinks resolved; a symlink loop raises SourceError (Python 3.11's ``Path.resolve`` raises
    RuntimeError for one)."""
    try:
        expanded = Path(path).expanduser()
    except RuntimeError:  # no home directory to expand ~ to: the path as written
        expanded = Path(path)
    try:
        return expanded.resolve()
    except (RuntimeError, OSError):
        raise SourceError(f"{path}: a symlink loop (the link points back to itself)") from None


def require(extra: str, *modules: str) -> tuple[ModuleType, ...]:
    """Import the modules a source needs, only when it is used; a missing one raises
    MissingExtra naming the extra (``pip install 'oodida[can]'``)."""
    loaded = []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError as exc:
            raise MissingExtra(
                f"this source needs the Python package {name.split('.')[0]!r} ({exc}); "
                f"install it with: pip install 'oodida[{extra}]'"
            ) from None
    return tuple(loaded)
