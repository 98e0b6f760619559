"""The docker fleet, for real: a private Docker engine (docker/dockerd), images made from
Debian's packages (docker/make-base-images, docker/build-wheels, docker compose build), and
docker/compose.yaml brought up on host networking with TLS and one Redis user and client
certificate per container. From this machine, over TLS, as the analyst: the paper's Listing
1.1, a custom module deployed to two vehicle containers and swapped mid-assignment, a killed
vehicle container reported missing and serving again, a Redis restart that loses nothing.
Vehicle 3 reads an MDF4 drive this test writes, mounted from this machine through
docker/vehicle-data.yaml (as ``OODIDA_VEHICLE_DATA=DIR docker/fleet up`` does), and averages
what numpy computes from the same drive.
At the end the fleet goes down and nothing of the test is left: no container, volume or
network, and the engine is stopped.

Runs where a Docker engine can be started: as root with Debian's docker.io and debootstrap
and Docker Compose v2 (scripts/optional-tools.sh installs them in CI); skipped elsewhere,
saying why. The engine's data root is the clone's .oodida/docker, so that the base images and
the build cache stay between runs (`docker/dockerd stop` leaves them; delete the directory to
start afresh).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from oodida_core.protocol.errors import SpecError
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.signals import SIGNALS
from oodida_core.security.auth import UserStore
from oodida_core.security.tls import plain_url
from oodida_core.spec.fields import LISTING_1_1
from oodida_ops import fleet
from oodida_ops.dockerfleet import (
    ENGINE_DIR,
    VEHICLE_DATA_FILE,
    DockerFleet,
    docker_missing,
    env_file,
    prepare_images,
    start_engine,
    stop_engine,
)
from oodida_ops.redis_server import free_port
from oodida_user import Oodida
from tests.fakes.mdffiles import channels_of, simulated_drive, write_mdf

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1800)]

VEHICLES = {"1": [1], "2": [2], "3": [3], "fleet": list(range(101, 151))}
ALL_CLIENTS = [1, 2, 3, *range(101, 151)]
MDF_CLIENT = 3  # docker/vehicle-data.yaml: vehicle-3 reads /data, its own /data/3.mf4
CHANNELS = {"speed": "Vehicle.Speed"}  # the other five channels are named like their signals
OODIDA = str(Path(sys.executable).with_name("oodida"))  # the CLI beside this Python
Recorded = tuple[Path, np.ndarray, dict[str, np.ndarray]]  # the data directory, times, readings


@pytest.fixture(scope="module")
def engine() -> Iterator[str]:
    why = docker_missing()
    if why:
        pytest.skip(why)
    host = start_engine(ENGINE_DIR)
    try:
        yield host
    finally:
        stop_engine(ENGINE_DIR)


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Vehicle 3's recorded drive: a minute of the six signals at 20 Hz in DIR/3.mf4, DIR
    readable by the containers' user (uid 10001); its times and readings."""
    data = tmp_path_factory.mktemp("vehicle-data")
    times, values = simulated_drive(client=MDF_CLIENT, frequency=20, seconds=60.0)
    write_mdf(data / f"{MDF_CLIENT}.mf4", channels_of(times, values, names=CHANNELS)).chmod(0o644)
    data.chmod(0o755)
    return data, times, values


@pytest.fixture(scope="module")
def docker_fleet(
    engine: str, drive: Recorded, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockerFleet]:
    timings = prepare_images(engine)
    the_fleet = DockerFleet(
        tmp_path_factory.mktemp("fleet") / "secrets",
        project=f"oodida-test-{os.getpid()}",
        docker_host=engine,
        flower_port=free_port(),
        overrides=(VEHICLE_DATA_FILE,),
        variables={"OODIDA_VEHICLE_DATA": str(drive[0])},
    )
    the_fleet.init(fleet.FleetPlan(vehicles=VEHICLES, port=free_port()))
    try:
        timings["compose build"] = the_fleet.build()
        timings["up until healthy"] = the_fleet.up(timeout=300)
        print("\nfleet timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
        yield the_fleet
    finally:
        with contextlib.suppress(Exception):
            print(the_fleet.compose("logs", "--no-color", "--tail", "30", check=False).stdout[-6000:])
        the_fleet.down()
        left = the_fleet.leftovers()
        assert left == {"containers": [], "volumes": [], "networks": []}, left


@pytest.fixture(scope="module")
def token(docker_fleet: DockerFleet) -> str:
    admin = redis.Redis.from_url(docker_fleet.admin_settings().redis_url)
    try:
        return UserStore(admin, Keys()).add_or_rotate("alice")
    finally:
        admin.close()


def _analyst(docker_fleet: DockerFleet, token: str) -> Oodida:
    return Oodida(settings=docker_fleet.analyst_settings("alice", token))


def _live(o: Oodida) -> set[int]:
    return {c.client_id for c in o.clients()}


def _wait(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        time.sleep(0.5)


def test_every_service_is_up_and_healthy(docker_fleet: DockerFleet) -> None:
    health = docker_fleet.health()
    assert health.pop("setup") == "exited"  # one-shot: the vehicles' ids are registered
    assert health == dict.fromkeys(
        ["redis", "cloud", "vehicle-1", "vehicle-2", "vehicle-3", "vehicle-fleet", "flower"], "healthy"
    )
    print("resident memory per container: " + ", ".join(f"{k} {v}" for k, v in docker_fleet.memory().items()))


def test_a_vehicle_container_averages_the_mdf_drive_mounted_from_the_host(
    docker_fleet: DockerFleet, token: str, drive: Recorded
) -> None:
    """Vehicle 3 reads /data/3.mf4 (docker/vehicle-data.yaml); the analyst sees its source and
    catalogue (the library and `oodida clients --catalogue`), and its averages are numpy's on
    the same drive: its own file is read from its start, iteration i at (i*300 + k)/10 s."""
    _, times, values = drive
    with _analyst(docker_fleet, token) as o:
        _wait("vehicle 3 live", lambda: MDF_CLIENT in _live(o), 60)
        clients = {c.client_id: c for c in o.clients()}
        result = o.submit(
            {
                "name": "speed from the MDF drive",
                "mode": "measurement",
                "clients": [MDF_CLIENT],
                "signals": ["speed"],
                "onboard": "average",
                "offboard": "collect",
                "frequency": 10,
                "samples": 300,
                "iterations": 2,
            }
        ).wait(timeout=60, progress=False)
    mine = clients[MDF_CLIENT]
    assert (mine.source, clients[1].source) == ("mdf", "simulated")
    assert {e.signal: e.origin for e in mine.catalogue} == {s: f"mdf:{CHANNELS.get(s, s)}" for s in values}
    assert result.status == "done" and [it.index for it in result.iterations] == [0, 1]
    for it in result.iterations:
        at = (it.index * 300 + np.arange(300)) / 10.0
        want = float(np.mean(np.interp(at, times, values["speed"])))
        assert it.onboard[MDF_CLIENT]["speed"] == pytest.approx(want, rel=1e-9), it.index
    env = {
        **os.environ,
        **env_file(docker_fleet.directory / "host" / "analyst.env"),
        "OODIDA_USER": "alice",
        "OODIDA_TOKEN": token,
    }
    listed = subprocess.run(
        [OODIDA, "clients", "--catalogue"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert f"client(s) {MDF_CLIENT}: source mdf" in lines, listed.stdout
    block = lines[lines.index(f"client(s) {MDF_CLIENT}: source mdf") + 1 :]
    speed = next(line.split() for line in block if line.split()[:1] == ["speed"])
    builtin = SIGNALS["speed"]
    assert speed == [
        "speed",
        builtin.vss,
        builtin.unit,
        f"{builtin.low:g}",
        "to",
        f"{builtin.high:g}",
        "mdf:Vehicle.Speed",
    ], speed


def test_listing_1_1_runs_from_the_host_over_tls(docker_fleet: DockerFleet, token: str) -> None:
    with _analyst(docker_fleet, token) as o:
        assert o.settings.redis_url.startswith("rediss://oodida-analyst:")
        _wait("every vehicle live", lambda: set(ALL_CLIENTS) <= _live(o), 60)
        t0 = time.monotonic()
        result = o.submit(dict(LISTING_1_1)).wait(timeout=120, progress=False)
        print(f"Listing 1.1 through the containers: {time.monotonic() - t0:.2f}s")
    assert result.status == "done"
    assert sorted(result.iterations[-1].onboard) == ALL_CLIENTS


def test_a_module_is_deployed_to_two_vehicle_containers_and_swapped_mid_assignment(
    docker_fleet: DockerFleet, token: str, tmp_path: Path
) -> None:
    v1, v2 = tmp_path / "v1.py", tmp_path / "v2.py"
    v1.write_text("def custom_code(x):\n    return 1.0\n")
    v2.write_text("def custom_code(x):\n    return 2.0\n")
    with _analyst(docker_fleet, token) as o:
        first = o.deploy_onboard(str(v1), clients=[1, 2]).wait(timeout=60)
        assignment = o.submit(
            {
                "name": "swap in the containers",
                "mode": "measurement",
                "clients": [1, 2],
                "signals": "speed",
                "onboard": "custom",
                "offboard": "collect",
                "frequency": 1,
                "samples": 5,
                "iterations": 0,  # a stream, until the new version has answered a while
                "keep": 1000,
            }
        )
        _wait("a first iteration", lambda: assignment.record().iterations_done >= 1, 60)
        second = o.deploy_onboard(str(v2), clients=[1, 2]).wait(timeout=60)

        def answered_with_v2_a_while() -> bool:
            values = [sorted(set(it.onboard.values())) for it in assignment.result().iterations]
            return values[-3:] == [[2.0]] * 3

        _wait("iterations with version 2", answered_with_v2_a_while, 60)
        result = assignment.cancel()
    assert result.status == "cancelled"
    result = dataclasses.replace(
        result, iterations=[it for it in result.iterations if it.ended_by == "complete"]
    )
    values = [sorted(set(it.onboard.values())) for it in result.iterations]
    versions = [sorted(set(it.versions.values())) for it in result.iterations]
    assert values[0] == [1.0] and values[-1] == [2.0], values
    assert versions[0] == [first.version] and versions[-1] == [second.version], versions
    swapped = [i for i, v in enumerate(values) if v == [2.0]]
    assert swapped == list(range(swapped[0], len(values))), values  # once swapped, stays swapped


def test_a_crashed_vehicle_container_is_restarted_by_its_policy(
    docker_fleet: DockerFleet, token: str
) -> None:
    """The worker's process dies (not a `docker kill`, which Docker counts as a stop): the
    restart policy brings the container back and the vehicle answers again."""
    cid = docker_fleet.container("vehicle-2")
    pid = int(docker_fleet.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
    os.kill(pid, signal.SIGKILL)  # tini, PID 1 of the container: the whole container dies

    def restarted() -> bool:
        return docker_fleet.docker("inspect", "-f", "{{.RestartCount}}", cid).stdout.strip() != "0"

    _wait("vehicle-2 restarted", restarted, 60)
    docker_fleet.wait_health("vehicle-2", timeout=120)
    with _analyst(docker_fleet, token) as o:
        _wait("vehicle 2 live again", lambda: 2 in _live(o), 30)
        back = o.submit({**LISTING_1_1, "clients": [2], "samples": 5}).wait(timeout=60, progress=False)
    assert sorted(back.iterations[-1].onboard) == [2]


def test_a_killed_vehicle_container_is_missing_then_serves_again(
    docker_fleet: DockerFleet, token: str
) -> None:
    """Within one running assignment: vehicle 3's container is killed (`docker kill`, which
    Docker counts as a stop, so compose starts it again), its answers are reported missing,
    the registry no longer lists it, a new assignment naming it is refused; once started
    again it answers the same running assignment."""
    with _analyst(docker_fleet, token) as o:
        stream = o.submit(
            {**LISTING_1_1, "clients": [1, 3], "samples": 5, "iterations": 0, "keep": 1000, "timeout": 3}
        )

        def last() -> Any:
            done = stream.result().iterations
            return done[-1] if done else None

        _wait("a first iteration", lambda: last() is not None, 60)
        docker_fleet.docker("kill", docker_fleet.container("vehicle-3"))
        _wait("vehicle 3 reported missing", lambda: last().missing == (3,), 30)
        _wait("vehicle 3 no longer live", lambda: 3 not in _live(o), 30)
        with pytest.raises(SpecError, match="clients 3 are not live"):
            o.submit({**LISTING_1_1, "clients": [3]}).wait(timeout=30, progress=False)
        docker_fleet.compose("start", "vehicle-3")
        docker_fleet.wait_health("vehicle-3", timeout=120)
        _wait("vehicle 3 answering again", lambda: sorted(last().onboard) == [1, 3], 60)
        result = stream.cancel()
    kept = [sorted(it.onboard) for it in result.iterations]
    assert [1] in kept and kept[0] == [1, 3], kept


def _stored(o: Oodida, assignment_id: str) -> tuple[str, list[Any]]:
    result = o.assignment(assignment_id).result()
    return result.status, [(it.index, it.value, it.versions) for it in result.iterations]


def test_a_redis_restart_loses_nothing_stored(docker_fleet: DockerFleet, token: str) -> None:
    with _analyst(docker_fleet, token) as o:
        done = o.submit({**LISTING_1_1, "samples": 5}).wait(timeout=60, progress=False)
        before = {a: _stored(o, a) for a in o.assignments()}
        version = o.code_versions()
    assert done.id in before
    docker_fleet.compose("restart", "redis", timeout=120)
    docker_fleet.wait_health("redis", timeout=120)
    with _analyst(docker_fleet, token) as o:  # the same token: users and ACLs survived
        after = {a: _stored(o, a) for a in before}
        assert after == before
        assert o.code_versions() == version
        _wait("every vehicle live again", lambda: set(ALL_CLIENTS) <= _live(o), 90)
        again = o.submit({**LISTING_1_1, "samples": 5}).wait(timeout=120, progress=False)
    assert sorted(again.iterations[-1].onboard) == ALL_CLIENTS
    for service in ("cloud", "vehicle-1", "vehicle-fleet", "flower"):
        docker_fleet.wait_health(service, timeout=120)


def test_the_fleet_refuses_plaintext_and_another_vehicles_password(docker_fleet: DockerFleet) -> None:
    admin = docker_fleet.admin_settings().redis_url
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(plain_url(admin), socket_connect_timeout=3, socket_timeout=3).ping()
    mine, theirs = docker_fleet.service_url("vehicle-1"), docker_fleet.service_url("vehicle-2")
    forged = mine.replace(mine.split(":", 2)[2].split("@")[0], theirs.split(":", 2)[2].split("@")[0])
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(forged, socket_connect_timeout=3).ping()
    own = redis.Redis.from_url(mine)
    try:
        assert own.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            own.lrange("client.2", 0, -1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            own.lrange("cloud", 0, -1)  # Redis 7's selectors: a vehicle only pushes there
    finally:
        own.close()
