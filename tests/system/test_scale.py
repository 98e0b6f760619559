"""Scale: a 200-client fleet answers one assignment end to end, every client on its own queue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oodida_core.spec.model import LISTING_1_1
from oodida_edge.sources.simulated import SimulatedSensors
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

pytestmark = pytest.mark.slow


def test_a_200_client_fleet_answers_an_assignment_with_every_client(tmp_path: Path) -> None:
    with (
        LocalSystem(200, data_dir=tmp_path, startup_timeout=180) as system,
        Oodida(system.url, "scale", token=system.token("scale")) as o,
    ):
        clients = o.clients()
        assert [c.client_id for c in clients] == list(range(1, 201))
        workers = {c.worker for c in clients}
        assert len(workers) >= 2  # served by several processes, each named after its clients
        assert all(w.startswith("clients-") for w in workers)
        a = o.submit({**LISTING_1_1, "offboard": "average", "iterations": 2, "timeout": 60})
        result = a.wait(timeout=180)
        assert result.status == "done"
        sensors = SimulatedSensors()
        for it in result.iterations:
            assert sorted(it.onboard) == list(range(1, 201))
            assert it.missing == () and it.failed == {}
            for cid in (1, 77, 200):
                expected = float(np.mean(sensors.read(cid, a.id, it.index, ["speed"], 1000, 1)["speed"]))
                assert it.onboard[cid]["speed"] == pytest.approx(expected)
            assert it.value["speed"] == pytest.approx(np.mean([v["speed"] for v in it.onboard.values()]))
