"""Methods end to end: the new built-in quantile, and a toy method added through the registry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from oodida_core.methods import EXTRA_METHODS_ENV, registered
from oodida_edge.sources.simulated import SimulatedSensors
from oodida_ops.local import LocalSystem
from oodida_user import Oodida
from tests.system.toy_methods import RANGE

ROOT = Path(__file__).resolve().parents[2]
SENSORS = SimulatedSensors()
BASE = {
    "name": "methods",
    "mode": "measurement",
    "clients": "all",
    "signals": ["speed", "rpm"],
    "frequency": 1,
    "samples": 200,
    "iterations": 1,
}


def test_quantile_on_board_and_off_board_matches_numpy_on_the_simulated_readings(oodida: Oodida) -> None:
    a = oodida.submit({**BASE, "onboard": "quantile", "offboard": "quantile", "q": 0.9})
    result = a.wait(timeout=60)
    assert result.status == "done"
    onboard = result.iterations[0].onboard
    assert sorted(onboard) == [1, 2, 3, 4, 5]
    for signal in BASE["signals"]:
        per_client = []
        for cid in sorted(onboard):
            x = SENSORS.read(cid, a.id, 0, BASE["signals"], 200, 1)[signal]
            expected = float(np.quantile(x, 0.9, method="linear"))
            assert onboard[cid][signal] == pytest.approx(expected, rel=1e-12)
            per_client.append(expected)
        combined = float(np.quantile(per_client, 0.9, method="linear"))
        assert result.value[signal] == pytest.approx(combined, rel=1e-12)


@pytest.fixture()
def toy_system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalSystem]:
    """A system whose workers register the toy methods at start (OODIDA_EXTRA_METHODS)."""
    monkeypatch.setenv(EXTRA_METHODS_ENV, "tests.system.toy_methods")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with LocalSystem(2, data_dir=tmp_path / "toy") as system:
        yield system


def test_a_toy_method_added_through_the_registry_alone_runs_end_to_end(toy_system: LocalSystem) -> None:
    spec = {**BASE, "onboard": "range", "offboard": "max"}
    with registered(RANGE), Oodida(toy_system.url, user="toy", token=toy_system.token("toy")) as oodida:
        a = oodida.submit(spec)
        result = a.wait(timeout=60)
    assert result.status == "done"
    onboard = result.iterations[0].onboard
    assert sorted(onboard) == [1, 2]
    for signal in BASE["signals"]:
        ranges = [float(np.ptp(SENSORS.read(c, a.id, 0, BASE["signals"], 200, 1)[signal])) for c in (1, 2)]
        assert [onboard[c][signal] for c in (1, 2)] == pytest.approx(ranges, rel=1e-12)
        assert result.value[signal] == pytest.approx(max(ranges), rel=1e-12)
