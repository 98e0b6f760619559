"""Vehicles reading recorded data end to end: MDF4 files through an operator's mapping (a
unit conversion and a signal beyond the six) and a CAN log decoded with a DBC, served by real
edge processes; results checked against numpy on the same recordings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import Oodida, SpecError
from tests.fakes import canlogs
from tests.fakes.mdffiles import Channel, simulated_drive, write_mdf

AMBIENT = "Vehicle.Cabin.HVAC.AmbientAirTemperature"
MPH = 1.609344
MAPPING = f"""\
signals:
  speed:
    mdf: VehSpd_mph
    scale: {MPH}
  {AMBIENT}:
    mdf: CabinTemp
    unit: degC
    range: [-40, 85]
"""


def mdf_drive(path: Path, client: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Speed in mph at 20 Hz and a cabin temperature at 2 Hz: two channel groups."""
    times, values = simulated_drive(client=client, frequency=20, seconds=60.0, signals=["speed"])
    cabin_t = times[::10]
    cabin = 18.0 + client + 0.05 * cabin_t
    write_mdf(
        path,
        [
            Channel("VehSpd_mph", times, values["speed"] / MPH, "mph"),
            Channel("CabinTemp", cabin_t, cabin, "degC"),
        ],
    )
    return times, {"speed": values["speed"], AMBIENT: np.interp(times, cabin_t, cabin)}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalSystem, dict[int, dict]]]:
    data = tmp_path_factory.mktemp("vehicle-data")
    (data / "mdf").mkdir()
    (data / "can").mkdir()
    truth: dict[int, dict] = {}
    for cid in (1, 2):
        times, values = mdf_drive(data / "mdf" / f"{cid}.mf4", cid)
        truth[cid] = {"times": times, **values}
    (data / "mdf-mapping.yaml").write_text(MAPPING)
    recorded = canlogs.drive_frames(60.0, client=3)
    canlogs.write_log(recorded.frames, data / "can" / "3.blf")
    t0 = min(t[0] for t, _ in recorded.truth.values())
    truth[3] = {sid: (t - t0, v) for sid, (t, v) in recorded.truth.items()}
    # The drive loops after its span plus one median step of its densest signal (recorded.py).
    densest = max(recorded.truth.values(), key=lambda tv: tv[0].size)[0]
    truth[3]["period"] = (
        max(t[-1] for t, _ in recorded.truth.values()) - t0 + float(np.median(np.diff(densest)))
    )
    mapping = canlogs.write_mapping(data)
    with LocalSystem(0, data_dir=data / "system") as system:
        system.start_edge(
            "mdf-vehicles", "1-2", source=f"mdf:{data / 'mdf'}", mapping=data / "mdf-mapping.yaml"
        )
        system.start_edge(
            "can-vehicle", "3", source=f"canlog:{data / 'can'}", dbc=canlogs.DBC, mapping=mapping
        )
        system.n_clients = 3
        system.wait_ready()
        yield system, truth


@pytest.fixture()
def o(fleet: tuple[LocalSystem, dict]) -> Iterator[Oodida]:
    system = fleet[0]
    with Oodida(system.url, user="recorder", token=system.token("recorder")) as client:
        yield client


def test_each_vehicle_advertises_its_sources_catalogue(o: Oodida) -> None:
    clients = {c.client_id: c for c in o.clients()}
    assert clients[1].source == clients[2].source == "mdf" and clients[3].source == "canlog"
    assert clients[1].signals == ("speed", AMBIENT)
    ambient = next(e for e in clients[1].catalogue if e.signal == AMBIENT)
    assert (ambient.unit, ambient.low, ambient.high, ambient.origin) == ("degC", -40.0, 85.0, "mdf:CabinTemp")
    assert set(clients[3].signals) == {*canlogs.CARRIED}
    assert next(e for e in clients[3].catalogue if e.signal == "rpm").origin == "dbc:EngineSpeed"


def test_recorded_averages_match_numpy_on_the_recordings(o: Oodida, fleet: tuple[LocalSystem, dict]) -> None:
    truth = fleet[1]
    spec = {**LISTING_1_1, "clients": [1, 2, 3], "signals": ["speed"], "frequency": 10, "samples": 300}
    result = o.submit({**spec, "iterations": 2}).wait(timeout=60)
    assert result.status == "done"
    for it in result.iterations:
        at = (it.index * 300 + np.arange(300)) / 10.0  # a client's own file is read from its start
        for cid in (1, 2):
            want = float(np.mean(np.interp(at, truth[cid]["times"], truth[cid]["speed"])))
            assert it.onboard[cid]["speed"] == pytest.approx(want, rel=1e-6)
        t, v = truth[3]["speed"]
        want = float(np.mean(np.interp(at, t, v, period=truth[3]["period"])))
        assert it.onboard[3]["speed"] == pytest.approx(want, rel=1e-6)
    ambient = o.submit({**spec, "clients": [1, 2], "signals": [AMBIENT]}).wait(timeout=60)
    at = np.arange(300) / 10.0
    for cid in (1, 2):
        want = float(np.mean(np.interp(at, truth[cid]["times"], truth[cid][AMBIENT])))
        assert ambient.value[cid][AMBIENT] == pytest.approx(want, rel=1e-6)


def test_a_signal_only_some_vehicles_deliver_is_refused_naming_the_others(o: Oodida) -> None:
    with pytest.raises(SpecError, match=rf"'{AMBIENT}' is not offered by clients 3"):
        o.submit({**LISTING_1_1, "clients": [1, 3], "signals": [AMBIENT]}).wait(timeout=30)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vehicle-data"


def test_the_example_data_loads_through_both_recorded_sources(tmp_path: Path) -> None:
    import subprocess
    import sys

    made = subprocess.run(
        [sys.executable, str(EXAMPLE / "make_data.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    for source in (
        ["--source", f"canlog:{tmp_path / 'drive.blf'}", "--dbc", str(EXAMPLE / "vehicle.dbc")],
        ["--source", f"mdf:{tmp_path / 'drive.mf4'}"],
    ):
        checked = subprocess.run(
            [
                sys.executable,
                "-m",
                "oodida_edge",
                "--clients",
                "1-3",
                *source,
                "--mapping",
                str(EXAMPLE / "mapping.yaml"),
                "--check",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert checked.returncode == 0 and checked.stdout.strip().endswith("ok"), checked.stderr
