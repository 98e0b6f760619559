"""The operator's mapping file: which DBC signal, OBD command or MDF channel delivers which
vehicle signal, and how to convert it (as Eclipse Kuksa's dbc2vss mapping does).

A mapping is YAML (``.yaml``/``.yml``) or JSON (``.json``)::

    signals:
      Vehicle.Speed:                 # a VSS path or a built-in short name (speed)
        dbc: VehicleSpeed            # CAN sources: the DBC signal (or Message.Signal)
        obd: SPEED                   # OBD-II: a python-OBD command (SPEED) or a mode-01 PID (010D)
        mdf: speed_kmh               # MDF4: the channel's name
        scale: 1.0                   # value = reading * scale + offset, into the signal's unit
        offset: 0.0
      Vehicle.Cabin.HVAC.AmbientAirTemperature:   # beyond the six: unit and range are required
        dbc: AmbientTemp
        unit: degC
        range: [-40, 85]

A built-in signal keeps its unit and range from oodida_core/protocol/signals.py (``unit``, if
given, must be that unit: convert with ``scale`` and ``offset``). Each source kind uses only
its own key; a signal without a key for a kind is not delivered by that kind. Without a
mapping file, every kind has a default (``default_mapping``). Errors name the file, the line
(YAML) and the signal.
"""

from __future__ import annotations

import contextlib
import json
import math
import reprlib
import stat
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oodida_core.protocol.signals import SIGNALS, canonical

from .base import Entry, FloatArray, SourceError

__all__ = ["KINDS", "Mapping", "MappingError", "Rule", "default_mapping", "load_mapping"]

KINDS = ("dbc", "obd", "mdf")
_KEYS = {*KINDS, "unit", "scale", "offset", "range"}
MAX_SIGNALS = 1000
MAX_BYTES = 4 << 20  # a mapping of MAX_SIGNALS signals is well under 1 MB
_repr = reprlib.Repr()  # values in errors: short, whatever a hostile file holds
_repr.maxlevel, _repr.maxstring, _repr.maxother, _repr.maxlong = 1, 60, 60, 40
_show = _repr.repr


class MappingError(SourceError):
    """A mapping file that cannot be used; the message names the file, line and signal."""


@dataclass(frozen=True)
class Rule:
    """How one signal is obtained: from which name in each source kind, and the conversion."""

    signal: str  # the signal id
    unit: str
    low: float
    high: float
    scale: float = 1.0
    offset: float = 0.0
    names: dict[str, str] = field(default_factory=dict)  # kind -> name in that source
    where: str = ""  # "mapping.yaml line 4", for errors about this signal

    def convert(self, values: FloatArray) -> FloatArray:
        """Readings of the source, in the signal's unit."""
        if self.scale == 1.0 and self.offset == 0.0:
            return values
        return values * self.scale + self.offset

    def convert_one(self, value: float) -> float:
        return value * self.scale + self.offset

    def entry(self, kind: str) -> Entry:
        return Entry(self.signal, self.unit, self.low, self.high, f"{kind}:{self.names[kind]}")


@dataclass(frozen=True)
class Mapping:
    """The rules of one mapping file (or a default), by signal id."""

    rules: dict[str, Rule]
    path: Path | None = None

    def for_kind(self, kind: str) -> dict[str, Rule]:
        """The signals a kind of source delivers under this mapping, by id."""
        return {sid: rule for sid, rule in self.rules.items() if kind in rule.names}

    def describe(self) -> str:
        return str(self.path) if self.path is not None else "the default mapping"


# python-OBD's command names of the built-in signals (acceleration has no OBD-II PID).
_OBD_DEFAULTS = {
    "speed": "SPEED",
    "rpm": "RPM",
    "fuel_rate": "FUEL_RATE",
    "engine_temp": "COOLANT_TEMP",
    "battery_voltage": "CONTROL_MODULE_VOLTAGE",
}


def default_mapping() -> Mapping:
    """Without a mapping file: DBC signals and MDF channels named like a built-in signal (its
    short name or VSS path) deliver it; OBD-II delivers the five built-in signals it has PIDs
    for. Names match case-insensitively for DBC and MDF (``resolve_name`` in the sources)."""
    rules = {
        name: Rule(
            name,
            s.unit,
            s.low,
            s.high,
            names={
                "dbc": name,
                "mdf": name,
                **({"obd": _OBD_DEFAULTS[name]} if name in _OBD_DEFAULTS else {}),
            },
            where="the default mapping",
        )
        for name, s in SIGNALS.items()
    }
    return Mapping(rules)


def _lines(path: Path, text: str) -> dict[tuple[str, ...], int]:
    """The line of each key path in a YAML document (1-based), for error messages. A key twice
    in one mapping raises MappingError (YAML would keep the last silently). Each node is walked
    once: an alias is not followed again (no recursion, no alias bomb)."""
    import yaml

    found: dict[tuple[str, ...], int] = {}
    seen: set[int] = set()
    with contextlib.suppress(yaml.YAMLError):
        todo: list[tuple[Any, tuple[str, ...]]] = [(yaml.compose(text), ())]
        while todo:
            node, prefix = todo.pop()
            if not isinstance(node, yaml.MappingNode) or id(node) in seen:
                continue
            seen.add(id(node))
            keys: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in keys:
                        raise MappingError(
                            f"{path} line {line}: key {_show(key.value)} appears twice in one mapping "
                            f"(also line {keys[key.value]}); YAML would keep only the last"
                        )
                    keys[key.value] = line
                    at = (*prefix, str(key.value))
                    found[at] = line
                    todo.append((value, at))
    return found


def _unique(path: Path) -> Any:
    """A JSON object_pairs_hook refusing a key twice in one object (json keeps the last)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise MappingError(
                    f"{path}: key {_show(key)} appears twice in one object; JSON would keep only the last"
                )
            out[key] = value
        return out

    return hook


def _parse(path: Path) -> tuple[object, dict[tuple[str, ...], int]]:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or /dev/zero would block or never end
            raise MappingError(f"{path}: not a regular file (a mapping is a .yaml, .yml or .json file)")
        if st.st_size > MAX_BYTES:
            raise MappingError(f"{path}: {st.st_size} bytes is too large for a mapping (at most {MAX_BYTES})")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MappingError(f"cannot read the mapping file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise MappingError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text, object_pairs_hook=_unique(path)), {}
        except MappingError:
            raise
        except json.JSONDecodeError as exc:
            raise MappingError(f"{path} line {exc.lineno}: not valid JSON: {exc.msg}") from None
        except (ValueError, RecursionError) as exc:  # a number of over 4300 digits, a nesting too deep
            raise MappingError(f"{path}: not a usable JSON mapping: {_reason(exc)}") from None
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise MappingError(f"{path}: a mapping file is .yaml, .yml or .json")
    try:
        import yaml
    except ImportError:
        raise MappingError(
            f"{path}: reading a YAML mapping needs PyYAML: pip install PyYAML (or use a .json mapping)"
        ) from None
    try:
        return yaml.safe_load(text), _lines(path, text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MappingError(f"{path}{line}: not valid YAML: {problem}") from None
    except MappingError:
        raise
    except (ValueError, RecursionError) as exc:  # a number of over 4300 digits, a nesting too deep
        raise MappingError(f"{path}: not a usable YAML mapping: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    return str(exc).split(";")[0]


def _number(value: object, what: str, where: str) -> float:
    number = math.nan
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond 1.8e308
            number = math.inf
    if not math.isfinite(number):
        hint = ""  # YAML 1.1 reads 6e1 as text: a number needs a dot and a signed exponent
        with contextlib.suppress(ValueError):
            if isinstance(value, str) and "e" in value.lower() and len(value) < 40:
                written = float(value)
                exact = repr(written)  # 60.0, 1.5e-07; 1e+308 needs its dot: 1.0e+308
                if math.isfinite(written):
                    exact = exact if "." in exact else exact.replace("e", ".0e")
                    hint = f" (YAML reads {value} as text: write {exact})"
        raise MappingError(f"{where}: {what} must be a finite number, got {_show(value)}{hint}")
    return number


def _rule(name: str, body: object, where: str) -> Rule:
    sid = canonical(name)
    if sid is None:
        known = ", ".join(SIGNALS)
        raise MappingError(
            f"{where}: {_show(name)} is neither a built-in signal ({known}) "
            "nor a VSS path (Vehicle.Branch.Leaf)"
        )
    if not isinstance(body, MappingABC):
        raise MappingError(f"{where}: signal {name!r} must map to keys ({', '.join(sorted(_KEYS))})")
    unknown = sorted(str(k) for k in body if k not in _KEYS)
    if unknown:
        raise MappingError(
            f"{where}: signal {name!r} has unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_KEYS))})"
        )
    names: dict[str, str] = {}
    for kind in KINDS:
        if kind in body:
            value = body[kind]
            if isinstance(value, int) and not isinstance(value, bool) and kind == "obd":
                if not 0x100 <= value <= 0x1FF:  # 0105 unquoted is YAML's octal 69, not PID 0105
                    raise MappingError(
                        f"{where}: signal {name!r}: obd is the number {value} (YAML reads an unquoted "
                        f"0105 as an octal number); write a mode-01 PID in quotes, such as '010D'"
                    )
                value = f"{value:04X}"
            if not isinstance(value, str) or not value.strip() or len(value) > 256:
                raise MappingError(
                    f"{where}: signal {name!r}: {kind} must name a {kind} signal, got {_show(value)}"
                )
            names[kind] = value.strip()
    if not names:
        raise MappingError(f"{where}: signal {name!r} names no source ({', '.join(KINDS)})")
    scale = _number(body.get("scale", 1.0), f"signal {name!r}: scale", where)
    offset = _number(body.get("offset", 0.0), f"signal {name!r}: offset", where)
    if scale == 0.0:
        raise MappingError(f"{where}: signal {name!r}: scale must not be 0")
    builtin = SIGNALS.get(sid)
    unit = body.get("unit")
    if unit is not None and (not isinstance(unit, str) or not unit.strip() or len(unit) > 64):
        raise MappingError(f"{where}: signal {name!r}: unit must be a short text, got {_show(unit)}")
    if builtin is not None:
        if unit is not None and unit != builtin.unit:
            raise MappingError(
                f"{where}: signal {name!r} is in {builtin.unit}, not {unit}; convert with scale and offset "
                f"(for example mph to km/h: scale: 1.609344)"
            )
        unit, low, high = builtin.unit, builtin.low, builtin.high
        if "range" in body:
            raise MappingError(
                f"{where}: signal {name!r} is built in; its range is {builtin.low:g} to {builtin.high:g} "
                f"{builtin.unit} and cannot be changed"
            )
    else:
        if unit is None:
            raise MappingError(f"{where}: signal {name!r} is not built in; it needs a unit")
        span = body.get("range")
        if not isinstance(span, (list, tuple)) or len(span) != 2:
            raise MappingError(f"{where}: signal {name!r} is not built in; it needs a range: [low, high]")
        low = _number(span[0], f"signal {name!r}: range", where)
        high = _number(span[1], f"signal {name!r}: range", where)
        if not low < high:
            raise MappingError(f"{where}: signal {name!r}: range must be [low, high] with low < high")
    return Rule(sid, unit, low, high, scale, offset, names, where)


def load_mapping(path: str | Path) -> Mapping:
    """The validated mapping in ``path``; every error names the file, line and signal."""
    path = Path(path)
    data, lines = _parse(path)
    if not isinstance(data, MappingABC) or set(data) != {"signals"}:
        raise MappingError(f"{path}: a mapping file holds one key, signals: {{<signal>: {{...}}}}")
    signals = data["signals"]
    if not isinstance(signals, MappingABC) or not signals:
        raise MappingError(f"{path}: signals must map at least one signal to its sources")
    if len(signals) > MAX_SIGNALS:
        raise MappingError(f"{path}: at most {MAX_SIGNALS} signals")
    rules: dict[str, Rule] = {}
    for name, body in signals.items():
        line = lines.get(("signals", str(name)))
        where = f"{path} line {line}" if line else str(path)
        rule = _rule(str(name), body, where)
        if rule.signal in rules:
            raise MappingError(
                f"{where}: signal {name!r} is mapped twice (also at {rules[rule.signal].where})"
            )
        rules[rule.signal] = rule
    return Mapping(rules, path)
