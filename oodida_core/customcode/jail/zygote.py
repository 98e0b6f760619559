"""The fork server: started in the jail by ``oodida_core.customcode.sandbox``, it forks one call process
per call and never runs custom code itself.

It imports the allowed modules once, builds the seccomp filter, drops to the jail's uid when it
started as root, and then serves its parent over a SOCK_SEQPACKET socket:

* ``spawn``: fork a call process and hand the parent one end of a fresh socket pair to it
  (SCM_RIGHTS). The parent sends the request straight to the call process and reads its reply:
  no user's code, input or result ever passes through this process, so nothing of one call can
  be left here for the next.
* ``end``: kill the call process, reap it, kill whatever it left behind (in its own pid
  namespace: every other process but this one; otherwise its process group) and say how it
  ended.

The call process closes every descriptor but its own socket, takes the request, confines
itself (``confine``) and runs it with ``oodida_core.customcode._child``'s runtime.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import signal
import socket
import sys
from multiprocessing.connection import Connection
from typing import Any

from oodida_core.customcode.jail import audit, landlock, seccomp
from oodida_core.customcode.jail import confine as _confine


def main(argv: list[str]) -> None:  # pragma: no cover - runs in the fork server
    sock = socket.socket(fileno=int(argv[0]))
    config: dict[str, Any] = json.loads(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import warnings

    warnings.simplefilter("ignore")
    from oodida_core.customcode._child import RECURSION_LIMIT, Runtime

    runtime = Runtime(frozenset(config["allowed"]))  # imports everything allowed
    sys.setrecursionlimit(RECURSION_LIMIT)
    layers = set(config["layers"])
    seccomp.use_libraries(config.get("libraries", {}))
    if "landlock" in layers and landlock.abi_version() < 1:
        layers.discard("landlock")
    bpf = seccomp.program() if "seccomp" in layers and seccomp.available() is None else None
    if bpf is None:
        layers.discard("seccomp")
    hook = audit.Hook(config["readable"])
    if "user" in layers and os.getuid() == 0:
        uid = int(config["uid"])
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    if os.getuid() == 0:
        layers.discard("user")
    _confine.prctl(_confine._PR_SET_DUMPABLE, 0)
    _confine.prctl(_confine._PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
    _confine.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: what a call leaves behind stays ours to kill
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    import gc

    gc.collect()
    gc.freeze()  # what the server holds now is never traversed again: fewer copied pages per call
    active = frozenset(layers)
    own_pidns = "namespaces" in active  # bubblewrap gave this server its own pid namespace
    sock.send(json.dumps({"ready": os.getpid(), "layers": sorted(active), "uid": os.getuid()}).encode())
    prepared = _Prepared(runtime, config, active, bpf, hook)
    # With seccomp no call can fork, so nothing but the call process itself is left to kill,
    # and the next call's process can be forked (and warmed up) while a call runs.
    eager = "seccomp" in active
    spare: tuple[int, socket.socket] | None = _fork(sock, prepared)
    current = 0
    while True:
        try:
            op = sock.recv(64)
        except OSError:
            op = b""
        if op == b"spawn":
            current, theirs = spare or _fork(sock, prepared)
            spare = None
            socket.send_fds(sock, [json.dumps({"pid": current}).encode()], [theirs.fileno()])
            theirs.close()
            if eager:  # the next call's process, made ready while this call runs
                spare = _fork(sock, prepared)
        elif op == b"end":
            how = _end(current, not eager, own_pidns)
            current = 0
            sock.send(json.dumps({"ended": how}).encode())
            # Without seccomp a call could have forked: the next call's process only now, so
            # that it never exists next to a running call and _end's kill(-1) cannot miss it.
            if spare is None:
                spare = _fork(sock, prepared)
        else:
            if current:
                _end(current, not eager, own_pidns)
            os._exit(0)


class _Prepared:
    """What every call process gets from the server, made once."""

    def __init__(
        self, runtime: Any, config: dict[str, Any], layers: frozenset[str], bpf: bytes | None, hook: Any
    ) -> None:
        self.runtime, self.config, self.layers, self.bpf, self.hook = runtime, config, layers, bpf, hook


def _fork(server: socket.socket, prepared: _Prepared) -> tuple[int, socket.socket]:  # pragma: no cover
    """A call process waiting for its request, and the parent's end of its socket."""
    theirs, mine = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        server.close()
        theirs.close()
        _call(mine, prepared)
    mine.close()
    return pid, theirs


def _end(pid: int, leftovers: bool, own_pidns: bool) -> str:  # pragma: no cover - in the server
    """Kill and reap the call process; with ``leftovers`` (a call could have forked: no
    seccomp) also what it started. How the call process ended."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 0
    if leftovers:
        with contextlib.suppress(OSError):
            if own_pidns:
                os.kill(-1, signal.SIGKILL)  # everything this uid has in this namespace, but us
            else:
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:  # no spare exists now: only leftovers
                pass
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "killed" if sig == signal.SIGKILL else f"killed by {signal.Signals(sig).name}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _call(sock: socket.socket, prepared: _Prepared) -> None:  # pragma: no cover - in the call process
    code = 1
    try:
        os.setsid()
        _confine.prctl(_confine._PR_SET_PDEATHSIG, signal.SIGKILL)
        _confine.prctl(_confine._PR_SET_DUMPABLE, 0)
        fd = sock.detach()
        os.closerange(3, fd)
        os.closerange(fd + 1, 1 << 16)
        conn = Connection(fd)
        with contextlib.suppress(Exception):
            prepared.runtime.warm_up()  # while no request is here yet: fewer page faults in the call
        request = pickle.loads(conn.recv_bytes())
        random.seed()  # the server's state is every call's: draw fresh
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()
        config = prepared.config
        hook = _confine.confine(
            prepared.layers, config["readable"], request["memory_limit"], request["time_limit"],
            prepared.bpf, prepared.hook,
        )  # fmt: skip
        conn.send_bytes(prepared.runtime.call(request, hook, raw_allowed=bool(config.get("raw"))))
        code = 0
    finally:
        os._exit(code)
