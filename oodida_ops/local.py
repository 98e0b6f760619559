"""A whole local system: embedded Redis, cloud worker(s), simulated clients, Flower.

Used by ``oodida up``, ``oodida demo``, the tests and the benchmarks. It starts the other
roles as separate processes (``python -m oodida_cloud`` / ``oodida_edge``) and imports
neither; it waits until every part is ready and stops every process it started.

The cloud authenticates users unless ``auth=False`` (``OODIDA_AUTH=off``): ``token(user)``
issues a user's token, ``client_settings(user)`` gives an analyst everything to connect. With
``acl=True`` every process talks to Redis as its own ACL user (``acl.py``), and so does the
analyst of ``client_settings``; this object keeps the admin's URL in ``url``. Every edge
process it starts is then a vehicle of its own (``acl.vehicle_roles``, named after the
process, for the clients it serves); ``role_urls["edge"]`` and ``["edge-read"]`` are those of
the first one (``vehicle_urls`` has each).

With ``tls=True`` (``oodida up --tls``) the embedded server listens with TLS only and ``acl``
is on: a private CA in ``<data_dir>/tls`` (made once, ``certs.py``) signs the server's
certificate and one client certificate per role and per vehicle, and every URL is a
``rediss://`` URL that verifies the server and presents its role's certificate.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis

from oodida_core.procs import die_with_parent
from oodida_core.protocol.errors import OodidaError
from oodida_core.protocol.ids import parse_id_ranges
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.tags import parse_item
from oodida_core.security import acl as acl_rules
from oodida_core.security.auth import UserStore
from oodida_core.security.tls import TlsFiles, tls_url
from oodida_core.settings import Settings, check_redis_url, masked_url
from oodida_core.state import lua
from oodida_core.state.registry import Registry
from oodida_ops.redis_server import EmbeddedRedis, ServerTls, free_port


class LocalSystem:
    """Start with ``start()`` or ``with LocalSystem(...) as system:``; stop with ``stop()``."""

    def __init__(
        self,
        clients: int = 5,
        *,
        redis_url: str | None = None,
        port: int | None = None,
        data_dir: str | os.PathLike[str] = ".oodida",
        processes: int | None = None,
        cloud_workers: int = 1,
        flower: bool = False,
        flower_port: int = 5555,
        flower_auth: str | None = None,
        realtime: bool = False,
        replay: str | os.PathLike[str] | None = None,
        source: str | None = None,
        dbc: str | os.PathLike[str] | None = None,
        mapping: str | os.PathLike[str] | None = None,
        tags: Sequence[str] = (),
        settings: Settings | None = None,
        auth: bool | None = None,
        acl: bool = False,
        tls: bool = False,
        role_urls: dict[str, str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        loglevel: str = "WARNING",
        startup_timeout: float = 60.0,
    ) -> None:
        if clients < 0:
            raise OodidaError("clients must be 0 or more")
        if tls and redis_url:
            raise OodidaError(
                "tls makes an embedded server: an external Redis URL carries its own TLS options"
            )
        if redis_url:
            try:
                check_redis_url(redis_url)  # refused before any connection is made
            except ValueError as exc:
                raise OodidaError(str(exc)) from None
        self.n_clients = clients
        self.external_url = redis_url
        self.port = port
        self.data_dir = Path(data_dir)
        self.processes = processes
        self.n_cloud = cloud_workers
        self.flower = flower
        self.flower_port = flower_port
        self.flower_auth = flower_auth
        self.realtime = realtime
        self.replay = str(Path(replay).resolve()) if replay is not None else None
        if replay is not None and source is not None:
            raise OodidaError("replay is the source csv:PATH; give one of replay and source")
        self.source = source
        self.dbc = str(Path(dbc).resolve()) if dbc is not None else None
        self.mapping = str(Path(mapping).resolve()) if mapping is not None else None
        self.tags = tuple(tags)  # the fleet's tags, oodida-edge --tag items ([IDS:]key=value)
        for item in self.tags:
            try:
                parse_item(item)
            except ValueError as exc:
                raise OodidaError(f"tags: {exc}") from None
        self.base_settings = settings or Settings.from_env()
        if auth is not None:
            self.base_settings = self.base_settings.model_copy(update={"auth": auth})
        self.role_urls = dict(role_urls or {})
        self.tls = tls
        self._client_certs: dict[str, TlsFiles] = {}
        self.acl = acl or tls
        self.vehicle_urls: dict[str, acl_rules.VehicleCredentials] = {}
        self.tokens: dict[str, str] = {}
        self._tokens_lock = threading.Lock()
        self.log_dir = Path(log_dir) if log_dir else self.data_dir / "logs"
        self.loglevel = loglevel
        self.startup_timeout = startup_timeout
        self.redis_server: EmbeddedRedis | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[object] = []
        self.url = redis_url or ""

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.base_settings.model_copy(update={"redis_url": self.url})

    def start(self) -> LocalSystem:
        try:
            if not self.external_url:
                server_tls = self._server_tls() if self.tls else None
                self.redis_server = EmbeddedRedis(self.data_dir, self.port, tls=server_tls).start()
                self.url = self.redis_server.url
            self._check_redis()
            if self.acl:
                self._apply_acl()
            self.log_dir.mkdir(parents=True, exist_ok=True)
            for i in range(self.n_cloud):
                self.start_cloud(f"cloud-{i + 1}")
            if self.n_clients:
                self.start_edge("fleet", f"1-{self.n_clients}", self.processes)
            self.wait_ready()
            if self.flower:
                self.start_flower()
        except BaseException:
            self.stop()
            raise
        return self

    def _apply_acl(self) -> None:
        """A Redis user per role (acl.py) with fresh passwords, the passwordless default user
        switched off; from here on this object talks to Redis as the role admin."""
        keys = Keys(self.base_settings.key_prefix)
        passwords = acl_rules.new_passwords()
        client = redis.Redis.from_url(self.url, socket_connect_timeout=5)
        try:
            acl_rules.apply(client, keys, passwords, lock_default=True)
            lua.preload(client)  # vehicles and readers may only EVALSHA
        finally:
            client.close()
        self.role_urls = {
            role: self._with_tls(url, role)
            for role, url in acl_rules.role_urls(self.url, keys, passwords).items()
        }
        self.url = self.role_urls["admin"]

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    def _server_tls(self) -> ServerTls:
        """The CA (made on first use), the server's certificate and the operator's client one."""
        from oodida_ops.certs import Authority, private_dir

        ca = Authority.open(private_dir(self.tls_dir))
        server = ca.issue_server(
            self.tls_dir / "server.pem", self.tls_dir / "server.key", ["127.0.0.1", "localhost"]
        )
        return ServerTls(ca.cert, server.cert, server.key, self._client_tls("admin"))

    def _client_tls(self, name: str) -> TlsFiles:
        """A client certificate of its own for role or vehicle ``name`` (issued once per start)."""
        if name in self._client_certs:
            return self._client_certs[name]
        from oodida_ops.certs import Authority

        ca = Authority.load(self.tls_dir)
        made = ca.issue_client(
            self.tls_dir / "clients" / f"{name}.pem", self.tls_dir / "clients" / f"{name}.key", name
        )
        self._client_certs[name] = TlsFiles(str(ca.cert), str(made.cert), str(made.key))
        return self._client_certs[name]

    def _with_tls(self, url: str, name: str) -> str:
        """``url`` presenting ``name``'s certificate (unchanged without TLS or for a blank URL)."""
        return tls_url(url, self._client_tls(name)) if self.tls and url else url

    def client_settings(self, user: str) -> Settings:
        """What an analyst's library needs for this system: URL(s), user and a token."""
        update: dict[str, object] = {
            "redis_url": self.url_for("analyst"),
            "read_url": self.role_urls.get("analyst-read", ""),
            "user": user,
            "token": self.token(user) if self.auth else "",
        }
        return self.base_settings.model_copy(update=update)

    def _check_redis(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=3)
        try:
            client.ping()
        except redis.exceptions.RedisError as exc:
            raise OodidaError(f"cannot reach Redis at {masked_url(self.url)}: {exc}") from None
        finally:
            client.close()

    @property
    def auth(self) -> bool:
        """Whether the cloud checks users' tokens (``OODIDA_AUTH=off`` turns it off)."""
        return self.base_settings.auth

    def token(self, user: str) -> str:
        """A working token for ``user`` on this system: issued the first time it is asked for
        (a user left from an earlier run with this data directory gets a fresh one)."""
        with self._tokens_lock:
            if user not in self.tokens:
                client = redis.Redis.from_url(self.url, socket_connect_timeout=5)
                try:
                    store = UserStore(client, Keys(self.base_settings.key_prefix))
                    self.tokens[user] = store.add_or_rotate(user)
                finally:
                    client.close()
            return self.tokens[user]

    def url_for(self, role: str) -> str:
        """The Redis URL a role's processes use: its own (``role_urls``) or the system's."""
        return self.role_urls.get(role) or self.url

    def _env(self, role: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "OODIDA_TOKEN"}  # no worker needs one
        settings = self.settings
        if role is not None:
            read = self.role_urls.get(f"{role}-read", "")
            settings = settings.model_copy(update={"redis_url": self.url_for(role), "read_url": read})
        return {**env, **settings.to_env(), "PYTHONUNBUFFERED": "1"}

    def _spawn(
        self,
        name: str,
        cmd: list[str],
        extra_env: dict[str, str] | None = None,
        role: str | None = None,
    ) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        proc = subprocess.Popen(
            cmd,
            env={**self._env(role), **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        self.procs[name] = proc
        return proc

    def start_cloud(self, name: str) -> subprocess.Popen[bytes]:
        return self._spawn(
            name,
            [sys.executable, "-m", "oodida_cloud", "--name", name, "--loglevel", self.loglevel],
            role="cloud",
        )

    def start_edge(
        self,
        name: str,
        clients: str,
        processes: int | None = None,
        replay: str | None = None,
        source: str | None = None,
        dbc: str | os.PathLike[str] | None = None,
        mapping: str | os.PathLike[str] | None = None,
        tags: Sequence[str] | None = None,
        delay: float = 0.0,
    ) -> subprocess.Popen[bytes]:
        """Start ``oodida-edge`` for ``clients``; with ``replay`` they replay recorded drives from
        that file or directory, with ``source`` they read it (``oodida-edge --source``, with
        ``dbc`` and ``mapping``); each defaults to the system's, and without any they simulate.
        A source other than sim is checked first (``--check``), so that a bad file or a missing
        device is refused with the edge's own message. ``tags``: the clients' tags as
        ``oodida-edge --tag`` items (default: the system's)."""
        cmd = [sys.executable, "-m", "oodida_edge", "--clients", clients, "--loglevel", self.loglevel]
        if processes:
            cmd += ["--processes", str(processes)]
        cmd += [f"--tag={item}" for item in (self.tags if tags is None else tags)]
        if tags is None and self.tags:
            cmd.append("--tags-checked")  # the system's items: each applies where its ids are served
        if self.realtime:
            cmd.append("--realtime")
        if replay is None and source is None:
            replay, source = self.replay, self.source
        if replay is not None:
            cmd += ["--replay", str(Path(replay).resolve())]
        elif source is not None:
            cmd += ["--source", source]
        dbc = dbc if dbc is not None else self.dbc
        mapping = mapping if mapping is not None else self.mapping
        cmd += [*(["--dbc", str(Path(dbc).resolve())] if dbc else [])]
        cmd += [*(["--mapping", str(Path(mapping).resolve())] if mapping else [])]
        if replay is not None or (source is not None and source.strip().lower() != "sim"):
            self._check_edge_options(cmd)
        extra = self._vehicle_env(name, parse_id_ranges(clients)) if self.acl else None
        if delay:  # slow vehicles: each task waits this long ($OODIDA_EDGE_DELAY, a test aid)
            extra = {**(extra or {}), "OODIDA_EDGE_DELAY": str(delay)}
        return self._spawn(name, cmd, extra, role="edge")

    def _vehicle_env(self, name: str, ids: list[int]) -> dict[str, str]:
        """A vehicle's own Redis user(s) for the edge process ``name`` serving ``ids``."""
        client = redis.Redis.from_url(self.url, socket_connect_timeout=5)
        try:
            made = acl_rules.add_vehicle(client, self.url, Keys(self.base_settings.key_prefix), name, ids)
        finally:
            client.close()
        if self.tls:
            made = acl_rules.VehicleCredentials(
                made.name,
                self._with_tls(made.url, f"vehicle-{name}"),
                self._with_tls(made.read_url, f"vehicle-{name}"),
            )
        self.vehicle_urls[name] = made
        self.role_urls.setdefault("edge", made.url)
        self.role_urls.setdefault("edge-read", made.read_url or made.url)
        return {"OODIDA_REDIS_URL": made.url, "OODIDA_READ_URL": made.read_url}

    def _check_edge_options(self, cmd: list[str]) -> None:
        """Refuse a bad source (a recorded drive, a DBC, a device) with the edge's own message,
        not a start-up timeout."""
        proc = subprocess.run(
            [*cmd, "--check"], env=self._env("edge"), capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise OodidaError(lines[-1] if lines else f"oodida-edge exited with {proc.returncode}")

    def start_flower(self) -> None:
        """Flower (``oodida-flower``) on 127.0.0.1, on the same Redis; with ``acl``, as its own
        user (``acl.roles``: ``flower``, task events and inspection only) and, with ``tls``, its
        own certificate. With ``flower_auth`` (``user:password``) its pages and HTTP API ask for
        that login; without it the pages open to anyone who can reach the port and the HTTP API
        stays closed, as Flower does by default (an open API would let any web page the
        operator visits send tasks)."""
        port = self.flower_port or free_port()
        self.flower_port = port
        env = {"FLOWER_BASIC_AUTH": self.flower_auth} if self.flower_auth else {}
        self._spawn(
            "flower",
            [sys.executable, "-m", "oodida_ops.flower", "--address=127.0.0.1", f"--port={port}"],
            env,
            role="flower" if self.acl else None,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise OodidaError(f"Flower did not answer on port {port} within {self.startup_timeout}s")

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}/"

    def wait_ready(self, clients: int | None = None, timeout: float | None = None) -> None:
        """Wait until a cloud worker and the first ``clients`` clients are live in the registry."""
        want = set(range(1, (self.n_clients if clients is None else clients) + 1))
        client = redis.Redis.from_url(self.url)
        registry = Registry(client, self.settings)
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        try:
            while time.monotonic() < deadline:
                self._check_alive()
                live = {c.client_id for c in registry.live()}
                if want <= live and (self.n_cloud == 0 or registry.live_cloud_workers()):
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise OodidaError(
            f"the local system was not ready within {timeout or self.startup_timeout}s "
            f"(logs in {self.log_dir})"
        )

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise OodidaError(
                    f"{name} exited with code {proc.returncode} during start-up "
                    f"(see {self.log_dir / (name + '.log')})"
                )

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Whatever the group left behind (a supervisor's children) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        names = list(self.procs)
        for name in names:  # ask everyone first, then wait: shutdown runs in parallel
            proc = self.procs[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for name in names:
            self.stop_process(name)
        for log in self._logs:
            log.close()  # type: ignore[attr-defined]
        self._logs.clear()
        if self.redis_server is not None:
            self.redis_server.stop()
            self.redis_server = None

    def __enter__(self) -> LocalSystem:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
