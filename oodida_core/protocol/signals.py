"""The signals a vehicle offers: short names, COVESA VSS paths, units and ranges.

Every built-in signal has a short name (``speed``) and a path in the COVESA Vehicle Signal
Specification (``Vehicle.Speed``); a spec may name either, and results stay keyed by the name
asked for. A vehicle may offer more signals than the six built-in ones (an operator's mapping
file, oodida_edge/sources/mapping.py); those are named by their VSS path alone.

``fuel_rate`` (l/h) has no node in VSS's standard catalogue: ``Vehicle.Powertrain.FuelSystem.
InstantConsumption`` is l/100 km, which is a different quantity (undefined when standing
still). It maps to ``Vehicle.OBD.FuelRate``, the l/h node of VSS's OBD branch (OBD PID 5E,
"engine fuel rate"), which VSS 4 carried in the standard catalogue and later versions keep as
an overlay.

A signal's *id* is what the system keys readings by: the short name of a built-in signal,
the VSS path of any other. ``canonical`` turns any accepted name into its id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Signal:
    name: str
    unit: str
    low: float  # nominal lower bound of a reading
    high: float  # nominal upper bound of a reading
    scale: float  # a typical magnitude, used to normalise features in federated training
    vss: str = ""  # the signal's path in the COVESA Vehicle Signal Specification


SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in (
        Signal("speed", "km/h", 0.0, 200.0, 100.0, "Vehicle.Speed"),
        Signal("rpm", "1/min", 0.0, 7000.0, 3000.0, "Vehicle.Powertrain.CombustionEngine.Speed"),
        Signal("fuel_rate", "l/h", 0.0, 40.0, 10.0, "Vehicle.OBD.FuelRate"),
        Signal(
            "engine_temp",
            "degC",
            -30.0,
            130.0,
            100.0,
            "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
        ),
        Signal("acceleration", "m/s^2", -10.0, 10.0, 3.0, "Vehicle.Acceleration.Longitudinal"),
        Signal("battery_voltage", "V", 10.0, 15.5, 14.0, "Vehicle.LowVoltageBattery.CurrentVoltage"),
    )
}

SIGNAL_NAMES: tuple[str, ...] = tuple(SIGNALS)

VSS_PATHS: dict[str, str] = {s.vss: s.name for s in SIGNALS.values()}
"""The VSS path of each built-in signal -> its short name."""

_VSS_FOLDED = {path.lower(): name for path, name in VSS_PATHS.items()}

# A VSS path: the root branch ``Vehicle``, then 1-15 segments of letters, digits and
# underscores, each starting with a letter (VSS names are UpperCamelCase; ``Row1`` has digits).
VSS_PATTERN = r"Vehicle(?:\.[A-Za-z][A-Za-z0-9_]{0,63}){1,15}"  # unanchored: fullmatch it
_VSS = re.compile(VSS_PATTERN)
MAX_SIGNAL_NAME = 1024


def is_vss_path(name: object) -> bool:
    """Whether ``name`` has the shape of a VSS path (whether or not the catalogue has it)."""
    return isinstance(name, str) and len(name) <= MAX_SIGNAL_NAME and _VSS.fullmatch(name) is not None


def canonical(name: object) -> str | None:
    """The id of the signal ``name`` names, or None if it names none.

    A built-in signal's short name (any case) or VSS path (any case) gives its short name;
    any other VSS path gives itself, spelt as given (VSS is case-sensitive).
    """
    if not isinstance(name, str) or len(name) > MAX_SIGNAL_NAME:
        return None
    folded = name.lower()
    if folded in SIGNALS:
        return folded
    if folded in _VSS_FOLDED:
        return _VSS_FOLDED[folded]
    return name if _VSS.fullmatch(name) else None


def vss_path(signal: str) -> str:
    """The VSS path of a signal id (a built-in signal's path, or the id itself)."""
    known = SIGNALS.get(signal)
    return known.vss if known is not None else signal


def spelt(name: str) -> str:
    """``name`` as a spec keeps it: a built-in signal's short name lowercased, a built-in
    signal's VSS path in the catalogue's spelling, any other path as given."""
    folded = name.lower()
    if folded in SIGNALS:
        return folded
    short = _VSS_FOLDED.get(folded)
    return SIGNALS[short].vss if short is not None else name
