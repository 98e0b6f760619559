"""MDF4 measurement files for tests, written with asammdf from a recorded drive.

A drive is its times (seconds) and, per signal, its readings at those times (e.g. made with
``SimulatedSensors``). ``write_mdf`` writes channels into one channel group per time base,
so signals recorded at different rates (``every``) sit in groups of their own, as a logger
writes them. Faults are made on purpose with ``Channel`` directly: a gap or timestamps that
go back (edit ``times``), a value out of range (edit ``values``), a channel of text
(``values`` of bytes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from oodida_core.protocol.signals import SIGNAL_NAMES, SIGNALS
from oodida_edge.sources.simulated import SimulatedSensors

__all__ = ["Channel", "channels_of", "simulated_drive", "write_mdf"]

FloatArray = npt.NDArray[np.float64]


@dataclass
class Channel:
    """One channel to write: its name, its samples' times and its samples (numbers or bytes)."""

    name: str
    times: FloatArray
    values: npt.NDArray[np.generic]
    unit: str = ""


def simulated_drive(
    client: int = 3, frequency: int = 20, seconds: float = 60.0, signals: Sequence[str] = SIGNAL_NAMES
) -> tuple[FloatArray, dict[str, FloatArray]]:
    """A deterministic drive of the simulator: its times from 0 and each signal's readings."""
    n = round(seconds * frequency)
    values = SimulatedSensors().read(client, "drive", 0, list(signals), n, frequency)
    return np.arange(n, dtype=np.float64) / frequency, values


def channels_of(
    times: FloatArray,
    values: Mapping[str, FloatArray],
    *,
    names: Mapping[str, str] | None = None,
    every: Mapping[str, int] | None = None,
    start: float = 0.0,
) -> list[Channel]:
    """The drive's signals as channels: named ``names[signal]`` (default: the signal), each
    keeping every ``every[signal]``-th reading (default: all), times shifted by ``start``."""
    out = []
    for signal, v in values.items():
        step = (every or {}).get(signal, 1)
        unit = SIGNALS[signal].unit if signal in SIGNALS else ""
        name = (names or {}).get(signal, signal)
        out.append(Channel(name, times[::step] + start, np.asarray(v)[::step], unit))
    return out


def write_mdf(path: Path, channels: Sequence[Channel], version: str = "4.10") -> Path:
    """An MDF file (MDF 4 by default) holding ``channels``, one channel group per distinct
    time base, in the order first seen."""
    from asammdf import MDF, Signal

    groups: list[tuple[FloatArray, list[Channel]]] = []
    for ch in channels:
        for times, members in groups:
            if times.shape == ch.times.shape and np.array_equal(times, ch.times):
                members.append(ch)
                break
        else:
            groups.append((ch.times, [ch]))
    mdf = MDF(version=version)
    try:
        for times, members in groups:
            mdf.append(
                [
                    Signal(
                        samples=c.values,
                        timestamps=times,
                        name=c.name,
                        unit=c.unit,
                        encoding="utf-8" if c.values.dtype.kind in "SU" else None,
                    )
                    for c in members
                ],
                comment="recorded drive",
            )
        mdf.save(path, overwrite=True)
    finally:
        mdf.close()
    return path
