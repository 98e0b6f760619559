"""Signals by VSS path end to end, and each vehicle's catalogue as the analyst sees it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from oodida_core.protocol.signals import SIGNALS
from oodida_core.spec.model import LISTING_1_1
from oodida_edge.sources.simulated import SimulatedSensors
from oodida_ops.local import LocalSystem
from oodida_user import Oodida, SpecError

OODIDA = str(Path(sys.executable).with_name("oodida"))


def test_a_spec_naming_vss_paths_gets_results_keyed_by_the_names_asked_for(oodida: Oodida) -> None:
    signals = ["Vehicle.Speed", "rpm", "vehicle.powertrain.combustionengine.engineCOOLANT.temperature"]
    a = oodida.submit({**LISTING_1_1, "signals": signals, "samples": 200, "clients": [1, 3]})
    result = a.wait(timeout=60)
    assert result.status == "done"
    asked = ["Vehicle.Speed", "rpm", "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature"]
    for cid in (1, 3):
        readings = SimulatedSensors().read(cid, a.id, 0, ["speed", "rpm", "engine_temp"], 200, 1)
        assert list(result.value[cid]) == asked
        for name, sid in zip(asked, ["speed", "rpm", "engine_temp"], strict=True):
            assert result.value[cid][name] == pytest.approx(float(np.mean(readings[sid])), rel=1e-12)


def test_a_histogram_of_a_signal_named_by_its_vss_path_uses_its_range(oodida: Oodida) -> None:
    a = oodida.submit(
        {**LISTING_1_1, "signals": ["Vehicle.Speed"], "onboard": "histogram", "bins": 4, "clients": [2]}
    )
    value = a.wait(timeout=60).value[2]["Vehicle.Speed"]
    assert value["edges"] == [0.0, 50.0, 100.0, 150.0, 200.0] and sum(value["counts"]) == 1000


def test_a_signal_no_vehicle_offers_is_refused_by_the_cloud(oodida: Oodida) -> None:
    with pytest.raises(
        SpecError, match=r"'Vehicle\.Cabin\.HVAC\.AmbientAirTemperature' is not offered by clients 1-5"
    ):
        oodida.submit({**LISTING_1_1, "signals": ["Vehicle.Cabin.HVAC.AmbientAirTemperature"]}).wait(
            timeout=30
        )


def run(system: LocalSystem, *args: str) -> subprocess.CompletedProcess[str]:
    user = f"catalogue{time.monotonic_ns()}"
    env = {
        **os.environ,
        "OODIDA_REDIS_URL": system.url,
        "OODIDA_USER": user,
        "OODIDA_TOKEN": system.token(user),
    }
    return subprocess.run([OODIDA, *args], env=env, capture_output=True, text=True, timeout=60)


def test_oodida_clients_shows_each_vehicles_catalogue(system: LocalSystem) -> None:
    out = run(system, "clients", "--catalogue")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "5 live client(s)" and "client(s) 1-5: source simulated" in lines
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("  ") and "VSS" not in line}
    for name, s in SIGNALS.items():
        assert rows[name][1] == s.vss and rows[name][-1] == "simulated"
    listed = json.loads(run(system, "clients", "--json").stdout)
    entry = next(e for e in listed[0]["catalogue"] if e["signal"] == "fuel_rate")
    assert entry == {
        "signal": "fuel_rate",
        "vss": "Vehicle.OBD.FuelRate",
        "unit": "l/h",
        "low": 0.0,
        "high": 40.0,
        "origin": "simulated",
    }
    assert listed[0]["source"] == "simulated"
