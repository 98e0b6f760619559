"""The operator's mapping file: what it maps, how it converts, and one clear error per mistake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from oodida_edge.sources.mapping import MappingError, default_mapping, load_mapping

GOOD = """\
signals:
  Vehicle.Speed:
    dbc: WheelSpeed
    obd: SPEED
    mdf: speed_mph
    scale: 1.609344
  rpm:
    dbc: EngineSpeed
  Vehicle.Cabin.HVAC.AmbientAirTemperature:
    dbc: AmbientTemp
    unit: degC
    range: [-40, 85]
    offset: -40
"""


def write(tmp_path: Path, text: str, name: str = "mapping.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_mapping_names_each_signals_source_per_kind_and_converts(tmp_path: Path) -> None:
    m = load_mapping(write(tmp_path, GOOD))
    assert set(m.rules) == {"speed", "rpm", "Vehicle.Cabin.HVAC.AmbientAirTemperature"}
    assert set(m.for_kind("dbc")) == set(m.rules)
    assert set(m.for_kind("obd")) == {"speed"} and set(m.for_kind("mdf")) == {"speed"}
    speed = m.rules["speed"]
    assert speed.unit == "km/h" and (speed.low, speed.high) == (0.0, 200.0)  # the built-in's
    assert np.allclose(speed.convert(np.array([0.0, 62.137])), [0.0, 100.0], atol=1e-3)
    ambient = m.rules["Vehicle.Cabin.HVAC.AmbientAirTemperature"]
    assert (ambient.unit, ambient.low, ambient.high) == ("degC", -40.0, 85.0)
    assert ambient.convert_one(60.0) == 20.0
    entry = ambient.entry("dbc")
    assert entry.vss == "Vehicle.Cabin.HVAC.AmbientAirTemperature" and entry.origin == "dbc:AmbientTemp"


def test_json_mappings_read_the_same(tmp_path: Path) -> None:
    import yaml

    as_json = write(tmp_path, json.dumps(yaml.safe_load(GOOD)), "mapping.json")
    assert load_mapping(as_json).rules.keys() == load_mapping(write(tmp_path, GOOD)).rules.keys()


def test_the_default_mapping_covers_the_six_and_obd_lacks_only_acceleration() -> None:
    m = default_mapping()
    assert len(m.for_kind("dbc")) == len(m.for_kind("mdf")) == 6
    assert set(m.for_kind("obd")) == {"speed", "rpm", "fuel_rate", "engine_temp", "battery_voltage"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("signals:\n  sped:\n    dbc: X\n", "line 2: 'sped' is neither a built-in signal"),
        ("signals:\n  speed:\n    dbc: X\n    unit: mph\n", "line 2: signal 'speed' is in km/h, not mph"),
        ("signals:\n  speed:\n    dbc: X\n    range: [0, 300]\n", "cannot be changed"),
        ("signals:\n  speed:\n    unit: km/h\n", "line 2: signal 'speed' names no source"),
        ("signals:\n  speed:\n    dbc: X\n    scael: 2\n", "unknown key(s) scael"),
        ("signals:\n  speed:\n    dbc: X\n    scale: fast\n", "scale must be a finite number"),
        ("signals:\n  speed:\n    dbc: X\n    scale: 0\n", "scale must not be 0"),
        (
            "signals:\n  rpm:\n    dbc: A\n  Vehicle.Speed:\n    dbc: B\n  speed:\n    dbc: C\n",
            "line 6: signal 'speed' is mapped twice (also at",
        ),
        (
            "signals:\n  Vehicle.X:\n    dbc: X\n",
            "line 2: signal 'Vehicle.X' is not built in; it needs a unit",
        ),
        ("signals:\n  Vehicle.X:\n    dbc: X\n    unit: V\n    range: [5, 1]\n", "low < high"),
        ("signals:\n  speed: [1, 2]\n", "must map to keys"),
        ("signal:\n  speed:\n    dbc: X\n", "holds one key, signals"),
        ("signals:\n  speed:\n    dbc: X\n   bad: indent\n", "line 4: not valid YAML"),
        ("signals: {}\n", "at least one signal"),
    ],
)
def test_each_mistake_gives_one_error_naming_the_file_line_and_signal(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert str(path) in str(err.value) and expected in str(err.value), str(err.value)


def test_a_missing_or_unknown_kind_of_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"cannot read the mapping file .*nothing.yaml"):
        load_mapping(tmp_path / "nothing.yaml")
    with pytest.raises(MappingError, match=r"mapping.toml: a mapping file is \.yaml, \.yml or \.json"):
        load_mapping(write(tmp_path, "x", "mapping.toml"))
    with pytest.raises(MappingError, match=r"mapping.json line 1: not valid JSON"):
        load_mapping(write(tmp_path, "{signals", "mapping.json"))
