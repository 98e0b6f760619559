"""The signals a simulated vehicle offers, with units and the range a reading stays in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signal:
    name: str
    unit: str
    low: float  # nominal lower bound of a reading
    high: float  # nominal upper bound of a reading
    scale: float  # a typical magnitude, used to normalise features in federated training


SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in (
        Signal("speed", "km/h", 0.0, 200.0, 100.0),
        Signal("rpm", "1/min", 0.0, 7000.0, 3000.0),
        Signal("fuel_rate", "l/h", 0.0, 40.0, 10.0),
        Signal("engine_temp", "degC", -30.0, 130.0, 100.0),
        Signal("acceleration", "m/s^2", -10.0, 10.0, 3.0),
        Signal("battery_voltage", "V", 10.0, 15.5, 14.0),
    )
}

SIGNAL_NAMES: tuple[str, ...] = tuple(SIGNALS)
