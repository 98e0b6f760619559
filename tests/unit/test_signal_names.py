"""Signals by short name or VSS path: the one naming rule of specs, the schema and the cloud."""

from __future__ import annotations

import jsonschema
import pytest

from oodida_cloud.planning import check_signals
from oodida_core.protocol.errors import SpecError
from oodida_core.protocol.signals import SIGNALS, canonical, is_vss_path, spelt, vss_path
from oodida_core.protocol.wire import ClientInfo
from oodida_core.spec.model import LISTING_1_1, validate_spec
from oodida_core.spec.schema import spec_json_schema

THE_SIX = {
    "speed": "Vehicle.Speed",
    "rpm": "Vehicle.Powertrain.CombustionEngine.Speed",
    "engine_temp": "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
    "battery_voltage": "Vehicle.LowVoltageBattery.CurrentVoltage",
    "acceleration": "Vehicle.Acceleration.Longitudinal",
    "fuel_rate": "Vehicle.OBD.FuelRate",
}


def test_every_built_in_signal_has_the_vss_path_the_issue_names() -> None:
    assert {name: s.vss for name, s in SIGNALS.items()} == THE_SIX
    for name, path in THE_SIX.items():
        assert (
            canonical(name) == canonical(path) == canonical(path.lower()) == canonical(name.upper()) == name
        )
        assert vss_path(name) == path


@pytest.mark.parametrize(
    "name",
    ["Vehicle.Cabin.HVAC.AmbientAirTemperature", "Vehicle.Body.Lights.Beam.Low.IsOn", "Vehicle.Row1_X"],
)
def test_any_other_vss_path_names_itself(name: str) -> None:
    assert is_vss_path(name) and canonical(name) == name and vss_path(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "sped",
        "vehicle.cabin.temp",
        "Vehicle",
        "Vehicle.",
        "Vehicle..Speed",
        "Vehicle.1Row",
        "Vehicle.Speed\n",
        "Car.Speed",
        "Vehicle.Spe ed",
        "",
        "Vehicle." + "A" * 65,
        42,
    ],
)
def test_a_name_that_is_neither_names_no_signal(name: object) -> None:
    assert canonical(name) is None


def test_a_spec_keeps_each_signal_as_named_in_the_catalogues_spelling() -> None:
    spec = validate_spec({**LISTING_1_1, "signals": ["vehicle.speed", "RPM", "Vehicle.Cabin.Temp"]})
    assert spec.signals == ("Vehicle.Speed", "rpm", "Vehicle.Cabin.Temp")
    assert spelt("VEHICLE.OBD.FUELRATE") == "Vehicle.OBD.FuelRate"


def test_two_names_of_one_signal_are_a_repeat() -> None:
    with pytest.raises(SpecError, match="repeated: speed"):
        validate_spec({**LISTING_1_1, "signals": ["speed", "Vehicle.Speed"]})


def test_an_unknown_short_name_is_refused_with_a_hint_and_the_vss_rule() -> None:
    with pytest.raises(SpecError) as err:
        validate_spec({**LISTING_1_1, "signals": ["sped"]})
    text = str(err.value)
    assert "did you mean 'speed'" in text and "VSS path" in text


@pytest.mark.parametrize(
    ("signals", "ok"),
    [
        (["Vehicle.Speed"], True),
        (["vehicle.powertrain.combustionengine.speed"], True),
        (["Vehicle.Cabin.Temp", "speed"], True),
        (["speed", "VEHICLE.SPEED"], False),
        (["Vehicle.Cabin.Temp", "Vehicle.Cabin.Temp"], False),
        (["vehicle.cabin.temp"], False),
        (["Vehicle.Speed\n"], False),
    ],
)
def test_the_json_schema_and_the_library_agree_on_signal_names(signals: list[str], ok: bool) -> None:
    spec = {**LISTING_1_1, "signals": signals}
    valid = jsonschema.Draft202012Validator(spec_json_schema()).is_valid(spec)
    try:
        validate_spec(spec)
        accepted = True
    except SpecError:
        accepted = False
    assert valid == accepted == ok


def _client(cid: int, signals: tuple[str, ...]) -> ClientInfo:
    return ClientInfo(client_id=cid, signals=signals, worker="w", hostname="h", pid=1, started_at=0.0)


def test_the_cloud_matches_a_vss_path_with_a_vehicle_offering_the_short_name() -> None:
    spec = validate_spec({**LISTING_1_1, "clients": [1, 2], "signals": ["Vehicle.Speed", "rpm"]})
    check_signals(spec, [1, 2], [_client(1, ("speed", "rpm")), _client(2, ("speed", "rpm", "Vehicle.X"))])


def test_the_cloud_refuses_a_signal_a_catalogue_lacks_and_names_the_nearest() -> None:
    spec = validate_spec({**LISTING_1_1, "clients": [1, 2], "signals": ["Vehicle.Cabin.Temperatur"]})
    live = [_client(1, ("speed", "Vehicle.Cabin.Temperature")), _client(2, ("speed",))]
    with pytest.raises(SpecError) as err:
        check_signals(spec, [1, 2], live)
    assert "not offered by clients 1-2" in str(err.value)
    assert "did you mean 'Vehicle.Cabin.Temperature'" in str(err.value)
