"""The docker fleet's secrets and configuration, made once on the operator's machine
(``oodida fleet init DIR``) and mounted into each container: every container sees only its own.

    DIR/compose.env          variables for docker compose (--env-file): where DIR is, the port
    DIR/ca/ca.pem, ca.key    the private CA (ca.key: keep it here, never in a container)
    DIR/redis/               redis.conf (TLS only, append-only, aclfile), server.pem/.key,
                             ca.pem, users.acl (hashed passwords), health.pass
    DIR/<service>/           oodida.env (its OODIDA_REDIS_URL), client.pem/.key, ca.pem
                             for cloud, flower, setup and vehicle-<name> (1, 2, 3, fleet)
    DIR/host/                admin.env, analyst.env: the operator's and the analysts' URLs on
                             this machine (absolute paths to their certificates)

Every process has its own Redis user (``security/acl.py``; Redis 7's key selectors, so one
user per vehicle) and its own client certificate; Redis asks for a certificate signed by the
CA and checks the password. Inside a container the files are at ``/run/oodida``.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import redis

from oodida_core.protocol.errors import OodidaError
from oodida_core.protocol.keys import Keys
from oodida_core.security import acl
from oodida_core.security.acl import acl_lines
from oodida_core.security.tls import TlsFiles, tls_url
from oodida_core.state import lua
from oodida_ops.certs import Authority, private_dir

MOUNT = "/run/oodida"  # where a container sees its directory
CONTAINER_UID = 10001  # the images' user (docker/Dockerfile, docker/redis.Dockerfile)
SERVICES = ("cloud", "flower", "setup")  # besides the vehicles; setup registers the vehicles' ids


@dataclass(frozen=True)
class FleetPlan:
    """What ``init`` makes: the vehicles (name -> client ids; the service and directory of
    vehicle ``n`` are ``vehicle-<n>``), where Redis listens."""

    vehicles: dict[str, list[int]] = field(
        default_factory=lambda: {
            "1": [1],
            "2": [2],
            "3": [3],
            "fleet": list(range(101, 151)),
        }
    )
    port: int = 6380
    bind: str = "127.0.0.1"
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost")  # names in the server's certificate
    flower_user: str = "ops"
    name: str = "oodida"  # the compose project's name (OODIDA_FLEET_NAME)
    prefix: str = "oodida"


def redis_conf(plan: FleetPlan) -> str:
    """Redis's configuration in the container: TLS only, append-only, users from the aclfile
    (kept in the data volume so that `oodida vehicles add` persists with ACL SAVE)."""
    return "".join(
        f"{k} {v}\n"
        for k, v in {
            "bind": plan.bind,
            "protected-mode": "yes",
            "port": "0",
            "tls-port": str(plan.port),
            "tls-cert-file": f"{MOUNT}/server.pem",
            "tls-key-file": f"{MOUNT}/server.key",
            "tls-ca-cert-file": f"{MOUNT}/ca.pem",
            "tls-auth-clients": "yes",
            "tls-protocols": '"TLSv1.2 TLSv1.3"',
            "aclfile": "/data/users.acl",
            "dir": "/data",
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
            "maxmemory-policy": "noeviction",
            "stream-node-max-bytes": "1024",
            "maxclients": "10000",
        }.items()
    )


def init(directory: str | os.PathLike[str], plan: FleetPlan | None = None) -> Path:
    """Make the fleet directory (refused when it already holds a CA: run ``down`` first)."""
    plan = plan or FleetPlan()
    root = Path(directory).resolve()
    if (root / "ca" / "ca.pem").exists():
        raise OodidaError(f"{root} already holds a fleet: use it, or remove it to start afresh")
    private_dir(root)  # other users of this machine read nothing here, and planted nothing
    keys = Keys(plan.prefix)
    ca = Authority.create(root / "ca")
    roles = dict(acl.roles(keys, selectors=True))  # Redis 7
    roles["health"] = acl.Role("health", (), (), acl.CONNECT)  # PING, for the health check
    made_vehicles: dict[str, acl.Role] = {}
    for name, ids in plan.vehicles.items():
        (role,) = acl.vehicle_roles(keys, name, ids, selectors=True)
        made_vehicles[name] = role
    passwords = acl.new_passwords([*roles, *(r.name for r in made_vehicles.values())])
    base = f"redis://127.0.0.1:{plan.port}/0"

    def url(role: str, directory: Path, inside: bool) -> str:
        user_url = acl.role_url(base, f"{plan.prefix}-{role}", passwords[role])
        where = MOUNT if inside else str(directory)
        return tls_url(user_url, TlsFiles(f"{where}/ca.pem", f"{where}/client.pem", f"{where}/client.key"))

    redis_dir = _private_dir(root / "redis")
    server = ca.issue_server(redis_dir / "server.pem", redis_dir / "server.key", plan.hosts)
    _copy(ca.cert, redis_dir / "ca.pem")
    (redis_dir / "redis.conf").write_text(redis_conf(plan))
    (redis_dir / "users.acl").write_text(
        "\n".join(acl_lines([*roles.values(), *made_vehicles.values()], passwords, plan.prefix)) + "\n"
    )
    write_env(redis_dir / "health.env", {"REDISCLI_AUTH": passwords["health"]})
    health = ca.issue_client(redis_dir / "health.pem", redis_dir / "health.key", "health")
    _for_container(redis_dir, [server.key, health.key, redis_dir / "health.env"])

    service_roles = {"cloud": "cloud", "flower": "flower", "setup": "admin"}
    flower_password = secrets.token_urlsafe(18)
    for service, role_name in {
        **service_roles,
        **{f"vehicle-{n}": r.name for n, r in made_vehicles.items()},
    }.items():
        d = _private_dir(root / service)
        made = ca.issue_client(d / "client.pem", d / "client.key", service)
        _copy(ca.cert, d / "ca.pem")
        env = {"OODIDA_REDIS_URL": url(role_name, d, inside=True)}
        if service == "flower":
            env["FLOWER_BASIC_AUTH"] = f"{plan.flower_user}:{flower_password}"
        write_env(d / "oodida.env", env)
        _for_container(d, [made.key, d / "oodida.env"])

    host = _private_dir(root / "host")
    for name in ("admin", "analyst", "analyst-read"):
        ca.issue_client(host / f"{name}.pem", host / f"{name}.key", name)
    _copy(ca.cert, host / "ca.pem")

    def host_url(role: str) -> str:
        user_url = acl.role_url(base, f"{plan.prefix}-{role}", passwords[role])
        return tls_url(
            user_url, TlsFiles(str(host / "ca.pem"), str(host / f"{role}.pem"), str(host / f"{role}.key"))
        )

    write_env(host / "admin.env", {"OODIDA_REDIS_URL": host_url("admin")})
    write_env(
        host / "analyst.env",
        {"OODIDA_REDIS_URL": host_url("analyst"), "OODIDA_READ_URL": host_url("analyst-read")},
    )
    described = json.dumps({"vehicles": plan.vehicles, "port": plan.port}, indent=2) + "\n"
    for where in (root / "fleet.json", root / "setup" / "fleet.json"):
        where.write_text(described)
        where.chmod(0o644)
    write_env(
        root / "compose.env",
        {
            "OODIDA_FLEET_NAME": plan.name,
            "OODIDA_FLEET_DIR": str(root),
            "OODIDA_REDIS_PORT": str(plan.port),
            "FLOWER_USER": plan.flower_user,
            "FLOWER_PASSWORD": flower_password,
        },
    )
    return root


def vehicle_bundle(
    ca_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    url: str,
    name: str,
    install: str = "/etc/oodida",
) -> Path:
    """The directory a vehicle on another network needs, to be copied to ``install`` on it:
    ``ca.pem``, its own ``client.pem`` and ``client.key`` (issued now by the CA in ``ca_dir``)
    and ``oodida.env`` (``OODIDA_REDIS_URL``: ``url``, the vehicle's user, over TLS with those
    files). Refused if ``out`` exists (it would hold an older key)."""
    target = Path(out)
    if target.exists():
        raise OodidaError(f"{target} exists: remove it or choose another directory")
    ca = Authority.load(ca_dir)
    target.mkdir(parents=True)
    target.chmod(0o700)
    ca.issue_client(target / "client.pem", target / "client.key", f"vehicle-{name}")
    _copy(ca.cert, target / "ca.pem")
    files = TlsFiles(f"{install}/ca.pem", f"{install}/client.pem", f"{install}/client.key")
    write_env(target / "oodida.env", {"OODIDA_REDIS_URL": tls_url(url, files)})
    return target


def register(client: redis.Redis, keys: Keys, vehicles: dict[str, list[int]]) -> int:
    """Put the vehicles' client ids into the registry's index (what ``acl.add_vehicle`` does
    besides making the user; here the users come from the aclfile). Idempotent; the number of
    client ids."""
    ids = sorted({i for served in vehicles.values() for i in served})
    if not ids:
        return 0
    pipe = client.pipeline(transaction=True)
    pipe.sadd(keys.client_index, *map(str, ids))
    for name, served in vehicles.items():
        pipe.hset(keys.vehicles, name, json.dumps(sorted(served)))
    pipe.execute()
    lua.preload(client)  # vehicles and readers may only EVALSHA (the cloud reloads them too)
    return len(ids)


def read_plan(path: str | os.PathLike[str]) -> dict[str, list[int]]:
    """The vehicles of a ``fleet.json`` (name -> client ids), checked."""
    try:
        raw = json.loads(Path(path).read_text())
        vehicles = raw["vehicles"]
        if not isinstance(vehicles, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, int) and i > 0 for i in ids)
            for ids in vehicles.values()
        ):
            raise ValueError("vehicles must map names to lists of positive client ids")
        for name in vehicles:
            acl.vehicle_user_name(name)
    except (OSError, ValueError, KeyError, TypeError, OodidaError) as exc:
        raise OodidaError(f"bad fleet file {path}: {exc}") from None
    return {str(k): list(v) for k, v in vehicles.items()}


def write_env(path: Path, values: dict[str, str], mode: int = 0o600) -> None:
    """An environment file that docker compose (``env_file``), systemd (``EnvironmentFile``)
    and a shell (``set -a; . FILE``) all read alike: one ``KEY='value'`` per line (a URL's
    ``&`` would end a shell command unquoted). Created with ``mode``, never readable on the way."""
    lines = []
    for key, value in values.items():
        if "'" in value or "\n" in value:
            raise OodidaError(f"{key}: a value with a quote or a new line cannot go into an env file")
        lines.append(f"{key}='{value}'\n")
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write("".join(lines))


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)  # the container's user must enter it; the fleet directory is 0700
    return path


def _copy(source: Path, target: Path) -> None:
    target.write_bytes(source.read_bytes())
    target.chmod(0o644)


def _for_container(directory: Path, secret_files: list[Path]) -> None:
    """Make a container's secrets readable by its user (uid 10001) and nobody else: owned by
    that uid when we are root; otherwise readable by all (the fleet directory, 0700, still
    keeps other users of this machine out)."""
    for path in secret_files:
        if os.geteuid() == 0:
            os.chown(path, CONTAINER_UID, CONTAINER_UID)
            path.chmod(0o400)
        else:
            path.chmod(0o644)
    for path in directory.iterdir():
        if path not in secret_files and path.is_file():
            path.chmod(0o644)
