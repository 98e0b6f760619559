"""The docker fleet (issue 15), measured in one run on a private Docker engine:

    .venv/bin/python benchmarks/bench_docker.py [--cold] [--json out.json]

1. build: the base images from Debian's packages and the wheels (skipped when present, so
   first run only), ``docker compose build`` (``--cold``: also once with ``--no-cache``);
   image sizes.
2. up: from ``compose up`` to every health check passing; resident memory of each container.
3. round trip: the paper's Listing 1.1 from this machine through the containers (TLS, one user
   per process) against the same through ``oodida up`` (``LocalSystem``) with as many clients,
   plain and with ``--tls``: medians of 5, and their ratios.
4. the papers' comparison: a running stream assignment over every vehicle while its on-board
   module is replaced (a) by ``deploy_onboard`` to every vehicle container, (b) the classic
   way, rebuilding the image with the change (a build context with one file changed) and
   recreating the vehicle containers (``up -d --force-recreate --no-build``) until every
   client answers again. Each: seconds from the start of the change until the first
   iteration in which every client answered with the new code, and the iterations of the
   running assignment in which answers were lost (clients missing or failed) or repeated.

Every process and container it starts, it stops; the engine's files are in .oodida/docker.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from oodida_core.spec.fields import LISTING_1_1
from oodida_ops import fleet
from oodida_ops.dockerfleet import (
    ENGINE_DIR,
    REPO,
    DockerFleet,
    docker_missing,
    prepare_images,
    start_engine,
    stop_engine,
)
from oodida_ops.local import LocalSystem
from oodida_ops.redis_server import free_port
from oodida_user import Oodida

VEHICLE_SERVICES = ["vehicle-1", "vehicle-2", "vehicle-3", "vehicle-fleet"]
CLIENTS = [1, 2, 3, *range(101, 151)]
REPEATS = 5


def listing_round_trips(o: Oodida) -> list[float]:
    spec = {**LISTING_1_1, "samples": 100}
    times = []
    for _ in range(REPEATS):
        t0 = time.monotonic()
        result = o.submit(spec).wait(timeout=120, progress=False)
        times.append(time.monotonic() - t0)
        assert result.status == "done" and len(result.iterations[-1].onboard) == len(CLIENTS), result
    return times


def local_round_trips(tls: bool) -> list[float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalSystem(len(CLIENTS), data_dir=tmp, tls=tls) as system,
        Oodida(settings=system.client_settings("bench")) as o,
    ):
        return listing_round_trips(o)


def module(path: Path, value: float) -> str:
    path.write_text(f"def custom_code(x):\n    return {value!r}\n")
    return str(path)


def replacement_window(
    o: Oodida, assignment: Any, start_index: int, version: str | None, after: float, timeout: float
) -> dict[str, Any]:
    """Follow the running assignment from iteration ``start_index`` until an iteration that
    started at ``after`` or later in which every client answered (with ``version``, if given);
    what was lost or repeated on the way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = assignment.result()
        seen = [it for it in result.iterations if it.index >= start_index]
        done = [
            it
            for it in seen
            if it.started_at >= after
            and sorted(it.versions) == CLIENTS
            and (version is None or set(it.versions.values()) == {version})
        ]
        if done:
            window = [it for it in seen if it.index <= done[0].index]
            indices = [it.index for it in window]
            return {
                "until_new_code_everywhere_s": done[0].finished_at,
                "iterations": len(window),
                "lost": sum(1 for it in window if it.missing or it.failed),
                "lost_answers": sum(len(it.missing) + len(it.failed) for it in window),
                "repeated": len(indices) - len(set(indices)),
            }
        time.sleep(0.5)
    raise TimeoutError(f"no iteration with {version} on every client within {timeout:g}s")


def classic_context(tmp: Path, value: float) -> Path:
    """The build context with the on-board change in it, as a classic deployment ships code."""
    context = tmp / "context"
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        target = context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, target)
    shutil.copytree(REPO / "docker" / "wheels", context / "docker" / "wheels", dirs_exist_ok=True)
    (context / "oodida_edge" / "classic_onboard.py").write_text(
        f'"""The on-board change, baked into the image."""\n\n\ndef custom_code(x):\n    return {value!r}\n'
    )
    return context


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cold", action="store_true", help="also build once without the cache")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    why = docker_missing()
    if why:
        print(f"bench_docker: cannot run here: {why}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {}
    host = start_engine(ENGINE_DIR)
    tmp = Path(tempfile.mkdtemp(prefix="bench-docker-"))
    the_fleet = DockerFleet(
        tmp / "secrets", project=f"oodida-bench-{os.getpid()}", docker_host=host, flower_port=free_port()
    )
    try:
        out["prepare_s"] = prepare_images(host)
        the_fleet.init(fleet.FleetPlan(port=free_port()))
        if args.cold:
            t0 = time.monotonic()
            the_fleet.compose("build", "--no-cache", timeout=1800)
            out["build_cold_s"] = time.monotonic() - t0
        out["build_cached_s"] = the_fleet.build()
        sizes = the_fleet.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout
        out["image_sizes"] = dict(line.split(" ", 1) for line in sizes.splitlines() if "<none>" not in line)
        out["up_until_healthy_s"] = the_fleet.up(timeout=300)
        out["memory"] = the_fleet.memory()

        import redis

        from oodida_core.protocol.keys import Keys
        from oodida_core.security.auth import UserStore

        admin = redis.Redis.from_url(the_fleet.admin_settings().redis_url)
        token = UserStore(admin, Keys()).add_or_rotate("bench")
        admin.close()
        with Oodida(settings=the_fleet.analyst_settings("bench", token)) as o:
            deadline = time.monotonic() + 60
            while set(CLIENTS) - {c.client_id for c in o.clients()}:
                assert time.monotonic() < deadline, "not every vehicle live"
                time.sleep(0.5)
            docker_times = listing_round_trips(o)
        plain, tls = local_round_trips(False), local_round_trips(True)
        out["listing_1_1_s"] = {
            "containers": statistics.median(docker_times),
            "oodida up": statistics.median(plain),
            "oodida up --tls": statistics.median(tls),
        }
        out["listing_ratio_containers_over_local"] = statistics.median(docker_times) / statistics.median(
            plain
        )
        out["listing_ratio_containers_over_local_tls"] = statistics.median(docker_times) / statistics.median(
            tls
        )

        with Oodida(settings=the_fleet.analyst_settings("bench", token)) as o:
            o.deploy_onboard(module(tmp / "v1.py", 1.0), clients=CLIENTS).wait(timeout=120)
            stream = o.submit(
                {
                    "name": "running while the code changes",
                    "mode": "measurement",
                    "clients": CLIENTS,
                    "signals": "speed",
                    "onboard": "custom",
                    "offboard": "collect",
                    "frequency": 1,
                    "samples": 5,
                    "iterations": 0,
                    "keep": 500,
                    "timeout": 5,
                }
            )
            time.sleep(5)
            start = stream.record().iterations_done
            t0 = time.time()
            report = o.deploy_onboard(module(tmp / "v2.py", 2.0), clients=CLIENTS).wait(timeout=120)
            reported = time.time() - t0
            acr = replacement_window(o, stream, start, report.version, t0, 120)
            acr["until_new_code_everywhere_s"] -= t0
            acr["deploy_reported_s"] = reported
            out["active_code_replacement"] = acr

            start = stream.record().iterations_done
            t0 = time.time()
            context = classic_context(tmp, 3.0)
            the_fleet.run(
                ["docker", "build", "-q", "-f", str(context / "docker" / "Dockerfile"), "-t", "oodida:local",
                 "--build-arg", f"BASE={the_fleet.base_image}", str(context)],
                timeout=1800,
            )  # fmt: skip
            built = time.time() - t0
            the_fleet.compose(
                "up",
                "-d",
                "--no-build",
                "--force-recreate",
                "--no-deps",
                "--wait",
                *VEHICLE_SERVICES,
                timeout=600,
            )
            recreated = time.time()
            # every vehicle container is new: the first iteration they all answer after that
            classic = replacement_window(o, stream, start, None, recreated, 300)
            classic["until_new_code_everywhere_s"] -= t0
            classic["rebuild_s"] = built
            out["rebuild_and_recreate"] = classic
            out["ratio_rebuild_over_active_code_replacement"] = (
                classic["until_new_code_everywhere_s"] / acr["until_new_code_everywhere_s"]
            )
            stream.cancel()
    finally:
        try:
            the_fleet.down()
            out["left_over"] = the_fleet.leftovers()
        finally:
            stop_engine(ENGINE_DIR)
            shutil.rmtree(tmp, ignore_errors=True)
            print(json.dumps(out, indent=2, default=str))  # what was measured, also after a failure
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
