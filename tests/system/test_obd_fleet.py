"""Two vehicles reading live OBD-II end to end: a real LocalSystem (embedded Redis, a cloud
worker) with no simulated clients, and two edge processes started with ``--source obd:PORT``,
each reading its own fake ELM327 adapter (tests/fakes/elm327.py, in a process of its own, on a
pseudo-terminal behind a stable link that can be unplugged and plugged back)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fault_kit import wait_live

from oodida_core.protocol.wire import IterationResult
from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Each car drives a speed triangle of +-2 km/h around its mean (period 2 s) at a constant rpm
# that the PID encodes exactly (1/4 rpm steps).
CARS = {1: (30.0, 1200.25), 2: (90.0, 2800.5)}
# An iteration reads 10 samples at 5 Hz (2 s, one period of the triangle). Its mean is the car's
# speed within 1 km/h: speed is sent in whole km/h (0.5), the samples catch the triangle's
# corners at some phase (0.1) and an answer may be late (4 km/h/s x tens of ms).
SPEED_TOLERANCE = 1.0
SPEC = {
    **LISTING_1_1,
    "clients": [1, 2],
    "signals": ["speed", "rpm"],
    "samples": 10,
    "frequency": 5,
}


@dataclass
class Adapter:
    proc: subprocess.Popen[str]
    link: Path

    def unplug(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def plug(self) -> None:
        self.proc.send_signal(signal.SIGUSR2)


def write_drive(path: Path, speed: float, rpm: float) -> Path:
    t = np.array([0.0, 1.0, 2.0])
    np.savetxt(
        path,
        np.column_stack([t, speed + np.array([-2.0, 2.0, -2.0]), np.full(3, rpm)]),
        delimiter=",",
        fmt="%.4f",
        header="time,speed,rpm",
        comments="",
    )
    return path


def start_adapter(tmp: Path, client: int) -> Adapter:
    drive = write_drive(tmp / f"drive{client}.csv", *CARS[client])
    link = tmp / f"obd{client}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.elm327", "--drive", str(drive), "--link", str(link)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30.0)
    line = proc.stdout.readline() if ready else ""
    if line.split() != ["ready", str(link)]:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the fake adapter {client} did not start: {line!r}")
    return Adapter(proc, link)


@pytest.fixture()
def adapters(tmp_path: Path) -> Iterator[dict[int, Adapter]]:
    started: dict[int, Adapter] = {}
    try:
        for client in CARS:
            started[client] = start_adapter(tmp_path, client)
        yield started
    finally:
        for adapter in started.values():
            adapter.proc.terminate()
        for adapter in started.values():
            try:
                adapter.proc.wait(10)
            except subprocess.TimeoutExpired:
                adapter.proc.kill()
                adapter.proc.wait()
            if adapter.proc.stdout is not None:
                adapter.proc.stdout.close()
        assert not any(os.path.lexists(a.link) for a in started.values())  # the links are removed


@pytest.fixture()
def fleet(adapters: dict[int, Adapter], tmp_path: Path) -> Iterator[Oodida]:
    with LocalSystem(0, data_dir=tmp_path / "sys") as system:
        for client, adapter in adapters.items():
            system.start_edge(f"obd-{client}", str(client), source=f"obd:{adapter.link}")
        with Oodida(system.url, user="driver", token=system.token("driver")) as o:
            wait_live(o, CARS, timeout=60)
            yield o


def check_answer(it: IterationResult, client: int) -> None:
    speed, rpm = CARS[client]
    answer = it.onboard[client]
    assert answer["speed"] == pytest.approx(speed, abs=SPEED_TOLERANCE), (it.index, client)
    assert answer["rpm"] == pytest.approx(rpm, rel=1e-9), (it.index, client)


def test_two_obd_vehicles_average_what_their_cars_drove(fleet: Oodida) -> None:
    offered = {c.client_id: c for c in fleet.clients()}
    for client in CARS:
        assert offered[client].signals == ("speed", "rpm")  # what the cars support, nothing else
        assert [e.origin for e in offered[client].catalogue] == ["obd:SPEED", "obd:RPM"]
    result = fleet.submit({**SPEC, "iterations": 2}).wait(timeout=90)
    assert result.status == "done" and len(result.iterations) == 2
    for it in result.iterations:
        assert sorted(it.onboard) == [1, 2] and not it.failed
        for client in CARS:
            check_answer(it, client)


def test_an_unplugged_adapter_fails_its_vehicles_iterations_and_serves_again_plugged_back(
    fleet: Oodida, adapters: dict[int, Adapter]
) -> None:
    a = fleet.submit({**SPEC, "iterations": 14})
    its = a.iterations(timeout=120)
    first = next(its)
    assert sorted(first.onboard) == [1, 2]
    adapters[2].unplug()
    failed: list[IterationResult] = []
    for it in its:  # iterations until two have failed for vehicle 2
        if 2 in it.failed:
            failed.append(it)
            if len(failed) == 2:
                break
    assert len(failed) == 2, "vehicle 2 never failed while its adapter was unplugged"
    for it in failed:
        assert sorted(it.onboard) == [1]  # the other vehicle still answers
        check_answer(it, 1)
        reason = it.failed[2]
        assert f"OBD-II adapter {adapters[2].link} (client 2)" in reason, reason
        assert "unavailable" in reason or "stopped answering" in reason, reason
    adapters[2].plug()
    served = [it for it in its if 2 in it.onboard]
    assert served, "vehicle 2 did not serve again after its adapter was plugged back"
    for it in served:
        check_answer(it, 2)
    result = a.result()
    assert result.status == "done" and len(result.iterations) == 14
    assert all(1 in it.onboard for it in result.iterations)


def test_one_vehicle_reads_for_several_assignments_at_once(fleet: Oodida) -> None:
    """Each iteration waits 2 s for its readings; four assignments on the same vehicles read
    together (the live edge's threads), so all four end well before 4 x 2 s (measured: 1.9 s
    together, 7.4 s one after another with a single thread)."""
    import time

    started = time.monotonic()
    running = [fleet.submit({**SPEC, "name": f"together {k}"}) for k in range(4)]
    results = [a.wait(timeout=60) for a in running]
    took = time.monotonic() - started
    for result in results:
        assert result.status == "done"
        for client in CARS:
            check_answer(result.iterations[0], client)
    assert took < 5.0, f"four 2 s readings took {took:.1f} s: they waited for each other"
