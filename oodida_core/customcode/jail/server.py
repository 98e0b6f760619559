"""The parent's handle on one fork server (``zygote``): start it in the jail, run calls, stop it.

Everything that comes back from the jail is untrusted: control messages are size-capped JSON
read with a deadline, a call's reply is at most ``max_reply`` bytes and is re-checked by
``oodida_core.customcode.sandbox``. The server holds no credential: its environment is rebuilt from
nothing, it inherits no descriptor but its own socket, and the paths it can see are those of
``readable_roots``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import pickle
import queue
import select
import site
import socket
import struct
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from oodida_core.customcode.jail import bwrap as _bwrap
from oodida_core.customcode.jail import seccomp as _seccomp

_ROOT = str(Path(__file__).resolve().parents[3])  # the directory holding oodida_core
_BOOT = (
    "import sys; sys.path[:0] = {paths!r}; "
    "from oodida_core.customcode.jail.zygote import main; main(sys.argv[1:])"
)
SYSTEM_LIBRARIES = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32", "/libx32")
_OWN_PACKAGES = ("oodida_core", "RestrictedPython", "pyseccomp")


class ServerError(Exception):
    """The server failed, stopped answering or broke the protocol."""


class _Launcher:
    """Starts servers from one thread that lives as long as the process. bubblewrap's
    ``--die-with-parent`` (and the server's own PR_SET_PDEATHSIG) fire when the *thread* that
    started them ends, and workers call from short-lived threads; this one never ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[list[str], dict[str, Any], dict[str, Any]]] = queue.SimpleQueue()
        self._pid = 0

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: its own thread
                self._queue = queue.SimpleQueue()
                threading.Thread(
                    target=self._serve, args=(self._queue,), name="jail-launcher", daemon=True
                ).start()
                self._pid = os.getpid()
            box: dict[str, Any] = {"done": threading.Event()}
            self._queue.put((argv, kwargs, box))
        box["done"].wait()
        if "error" in box:
            raise box["error"]
        proc: subprocess.Popen[bytes] = box["proc"]
        return proc

    @staticmethod
    def _serve(requests: queue.SimpleQueue[tuple[list[str], dict[str, Any], dict[str, Any]]]) -> None:
        while True:
            argv, kwargs, box = requests.get()
            try:
                box["proc"] = subprocess.Popen(argv, **kwargs)
            except BaseException as exc:
                box["error"] = exc
            finally:
                box["done"].set()


_LAUNCHER = _Launcher()


def _stdlib() -> list[str]:
    """The standard library's directories (where ``os`` is, and lib-dynload), never a venv's."""
    found = {os.path.dirname(os.path.realpath(os.__file__))}
    found |= {os.path.realpath(p) for p in sys.path if p.endswith(("lib-dynload", ".zip"))}
    return sorted(p for p in found if os.path.exists(p))


def interpreter_paths() -> list[str]:
    """The interpreter: its binary, its shared library, the standard library and its
    extension modules. Not its prefix: the base interpreter's own site-packages stay out."""
    paths = [os.path.realpath(sys.executable), *_stdlib()]
    library = sysconfig.get_config_var("LDLIBRARY") or ""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    if library and libdir and os.path.isfile(os.path.join(libdir, library)):
        paths.append(os.path.realpath(os.path.join(libdir, library)))
    return paths


def package_paths(names: Iterable[str]) -> list[str]:
    """The directories (or single files) of the importable modules ``names`` outside the
    standard library, with their wheels' ``<name>.libs`` directories of shared libraries."""
    paths: list[str] = []
    stdlib = _stdlib()
    for name in names:
        try:
            spec = importlib.util.find_spec(name.split(".")[0])
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        found = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
        for path in (os.path.realpath(p) for p in found):
            if not os.path.exists(path) or any(path == s or path.startswith(s + os.sep) for s in stdlib):
                continue
            paths.append(path)
            libs = path + ".libs" if os.path.isdir(path) else ""
            if libs and os.path.isdir(libs):
                paths.append(libs)
    return paths


def readable_roots(allowed: Iterable[str]) -> list[str]:
    """What a call may read: the interpreter, the system's shared libraries, this package and
    RestrictedPython, and the allowed modules that live outside the standard library. Nothing
    else: no data directory, home, /etc or /proc."""
    roots = interpreter_paths()
    roots += [os.path.realpath(p) for p in SYSTEM_LIBRARIES if os.path.isdir(p) and not os.path.islink(p)]
    roots += package_paths([*_OWN_PACKAGES, *allowed])
    return list(dict.fromkeys(roots))


def hidden_paths(readable: Iterable[str]) -> list[str]:
    """Directories of installed packages that a readable root would show (the interpreter's
    site-packages beneath the standard library, Debian's dist-packages beneath /usr/lib):
    bubblewrap lays an empty tmpfs over them, and binds the allowed packages back on top."""
    roots = list(readable)
    found = []
    for path in [*site.getsitepackages([sys.base_prefix]), "/usr/lib/python3/dist-packages"]:
        real = os.path.realpath(path)
        if os.path.isdir(real) and any(real.startswith(r + os.sep) for r in roots):
            found.append(real)
    return sorted(set(found))


def _import_paths(packages: Iterable[str]) -> list[str]:
    """sys.path entries for the server: the directories holding ``packages``."""
    return list(dict.fromkeys(os.path.dirname(p) for p in packages if not p.endswith(".libs")))


class ReplyTimeout(Exception):
    """The call did not send a whole reply before its deadline."""


class ReplyTooLarge(Exception):
    """The call announced or sent more than the reply may hold."""


def read_frame(fd: int, deadline: float, limit: int) -> bytes | None:
    """One ``multiprocessing.connection`` frame from the untrusted call process, read against
    the deadline (a peer that sends part of a frame and stalls is a timeout, not a hang), at
    most ``limit`` bytes; None at end of file before a whole frame."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)

    def take(n: int) -> bytes | None:
        parts, got = [], 0
        while got < n:
            if not poller.poll(max(0, math.ceil((deadline - time.monotonic()) * 1000))):
                raise ReplyTimeout
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                return None
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    head = take(4)
    if head is None:
        return None
    size = struct.unpack("!i", head)[0]
    if size == -1:
        more = take(8)
        if more is None:
            return None
        size = struct.unpack("!Q", more)[0]
    if size < 0 or size > limit:
        raise ReplyTooLarge
    return take(size) if size else b""


class Server:
    """One fork server and its socket. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        *,
        layers: frozenset[str],
        allowed: frozenset[str],
        env: Mapping[str, str],
        bwrap: str | None,
        uid: int,
        raw: bool = False,
        start_timeout: float = 60.0,
    ) -> None:
        started = time.perf_counter()
        readable = readable_roots(allowed)
        packages = package_paths([*_OWN_PACKAGES, *allowed])
        config = {
            "layers": sorted(layers),
            "allowed": sorted(allowed),
            "readable": readable,
            "uid": uid,
            "raw": raw,
            "libraries": _seccomp.libraries(),
        }
        python = os.path.realpath(sys.executable)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [
            python,
            "-I",
            "-c",
            _BOOT.format(paths=_import_paths(packages)),
            str(theirs.fileno()),
            json.dumps(config),
        ]
        as_root = os.geteuid() == 0
        if "namespaces" in layers:
            if bwrap is None:
                raise ServerError("the namespaces layer needs bubblewrap")
            argv = _bwrap.command(
                bwrap, argv, readable, env, as_root=as_root, uid=uid, hidden=hidden_paths(readable)
            )
        try:
            self.proc = _LAUNCHER.popen(
                argv, pass_fds=(theirs.fileno(),), env=dict(env), cwd="/", start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            mine.close()
            raise ServerError(f"cannot start the jail's fork server: {exc}") from None
        finally:
            theirs.close()
        self.sock = mine
        try:
            hello = self._control(start_timeout)
        except ServerError as exc:
            detail = self._stderr()
            self.kill()
            raise ServerError(f"{exc}{': ' + detail if detail else ''}") from None
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.layers = frozenset(str(n) for n in hello.get("layers", ()))
        self.pid = self.proc.pid
        self.start_seconds = time.perf_counter() - started
        self.calls = 0
        self._pending = 0  # "ended" answers not read yet (end(wait=False))

    def _stderr(self) -> str:
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return ""
        if self.proc.stderr is None:
            return ""
        lines = self.proc.stderr.read(8192).decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:300] if lines else ""

    def _control(self, timeout: float) -> dict[str, Any]:
        """One control message from the server (JSON, at most 4 KiB), within ``timeout``."""
        data, _ = self._receive(timeout, 0)
        return data

    def _receive(self, timeout: float, fds: int) -> tuple[dict[str, Any], list[int]]:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        if not poller.poll(max(0, math.ceil(timeout * 1000))):
            raise ServerError("the jail's fork server did not answer")
        try:
            data, received, _, _ = socket.recv_fds(self.sock, 4096, fds)
        except OSError as exc:
            raise ServerError(f"the jail's fork server failed: {exc}") from None
        try:
            message = json.loads(data)
        except ValueError:
            for fd in received:
                os.close(fd)
            raise ServerError(
                "the jail's fork server stopped" if not data else "the jail's fork server sent garbage"
            ) from None
        if not isinstance(message, dict):
            raise ServerError("the jail's fork server sent garbage")
        return message, list(received)

    def _drain(self) -> None:
        while self._pending:
            self._control(10.0)
            self._pending -= 1

    def spawn(self, request: Mapping[str, Any], deadline: float) -> socket.socket:
        """A fresh call process, its request sent by ``deadline`` (ReplyTimeout otherwise: a
        call process that does not take its request is a call that ran out of time)."""
        self._drain()
        try:
            self.sock.send(b"spawn")
        except OSError as exc:
            raise ServerError(f"the jail's fork server is gone: {exc}") from None
        _, fds = self._receive(10.0, 1)
        if len(fds) != 1:
            raise ServerError("the jail's fork server did not hand over a call process")
        call = socket.socket(fileno=fds[0])
        self.calls += 1
        data = pickle.dumps(dict(request), protocol=pickle.HIGHEST_PROTOCOL)
        head = struct.pack("!i", len(data)) if len(data) <= 0x7FFFFFFF else struct.pack("!iQ", -1, len(data))
        try:
            call.settimeout(max(0.05, deadline - time.monotonic()))
            call.sendall(head + data)
        except TimeoutError:
            call.close()
            raise ReplyTimeout from None
        except OSError:
            pass  # it died at once; end() tells how
        call.settimeout(None)
        return call

    def end(self, wait: bool = True) -> str:
        """Kill the call process and what it left; how it ended (``exit status 0``, ``killed
        by SIGSEGV``...). With ``wait=False`` (the reply is in hand) the answer is read before
        the next request, so that reaping the process costs the call nothing."""
        try:
            self._drain()
            self.sock.send(b"end")
            if not wait:
                self._pending += 1
                return ""
            message = self._control(10.0)
        except (OSError, ServerError) as exc:
            raise ServerError(f"the jail's fork server failed: {exc}") from None
        how = message.get("ended")
        return how[:100] if isinstance(how, str) else "unknown"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Stop the server and everything in its jail (bubblewrap takes its namespace down)."""
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, 9)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.sock.close()
