"""Running custom code: a small pool of long-lived child processes, each a restricted interpreter.

The parent (a worker thread) sends ``(version, source, x)`` over a socket pair and waits at most
the time limit; the child compiles the module once per version with RestrictedPython, runs
``custom_code(x)`` in a fresh namespace whose builtins, attribute access, item writes and
imports are guarded, checks the result and sends it back as JSON (the parent never unpickles
anything from the child). A timeout, a memory blow-up or a crash kills that child only; the next
call gets a fresh one. Children start with a scrubbed environment (``python -I``, no OODIDA_*
variables, no Redis URLs), inherit no descriptor but their socket, and limit themselves before
the first call: address space (the memory limit), no new files or sockets (RLIMIT_NOFILE at the
descriptors already open), no new processes or threads (RLIMIT_NPROC 0), no file writing.

This module is the parent's side; what runs in the child is ``_sandbox_child`` (the process) and
``_sandbox_guards`` (the restricted namespace).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ._sandbox_child import CACHE as _CACHE
from ._sandbox_child import PRINT_LIMIT as PRINT_LIMIT
from ._sandbox_child import RECURSION_LIMIT as RECURSION_LIMIT
from .customcode import ENTRY_POINT, CheckedModule, CodePolicy, Role, describe_input, sample_inputs
from .errors import CustomCodeError

MiB = 1024 * 1024
_BOOT = (  # what the sandbox process runs: oodida_core._sandbox_child, not this module
    "import sys; sys.path.append({root!r}); "
    "import oodida_core._sandbox_child as s; s._child_main(sys.argv[1:])"
)
_ROOT = str(Path(__file__).resolve().parents[1])
Module = CheckedModule | tuple[str, str, str]  # or (version, filename, source)


class CustomCodeFailure(CustomCodeError):
    """Running custom code failed. ``kind``: raised (the code raised), result (bad return value),
    rejected (failed the checks), timeout, memory, crash, unavailable (no sandbox process)."""

    def __init__(self, message: str, kind: str = "raised") -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.kind))


def child_environment(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a sandbox process: locale and one-thread numerics, nothing else
    of the worker's (no OODIDA_* variables, no Redis URLs, no credentials)."""
    source = os.environ if parent is None else parent
    env = {k: source[k] for k in ("LANG", "LC_ALL", "LC_CTYPE", "TZ") if k in source}
    threads = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
    return {**env, **dict.fromkeys(threads, "1"), "PATH": "/usr/bin:/bin"}


def _mib(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n / MiB:.1f} MiB"


class _Child:
    """One sandbox process, as the parent sees it."""

    def __init__(self, memory_limit: int, allowed: frozenset[str], start_timeout: float) -> None:
        mine, theirs = socket.socketpair()
        args = [str(theirs.fileno()), str(memory_limit), ",".join(sorted(allowed))]
        started = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT.format(root=_ROOT), *args],
                pass_fds=(theirs.fileno(),), env=child_environment(), cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as exc:
            mine.close()
            raise CustomCodeFailure(f"cannot start a sandbox process: {exc}", "unavailable") from None
        finally:
            theirs.close()
        self.conn = Connection(mine.detach())
        self.poller = select.poll()
        self.poller.register(self.conn.fileno(), select.POLLIN)
        self.known: OrderedDict[str, None] = OrderedDict()
        if not self.wait(start_timeout):
            self.kill()
            raise CustomCodeFailure("the sandbox process for custom code did not start", "unavailable")
        try:
            json.loads(self.conn.recv_bytes())
        except (EOFError, OSError, ValueError):
            self.kill()
            raise CustomCodeFailure("the sandbox process for custom code failed", "unavailable") from None
        self.start_seconds = time.perf_counter() - started

    def wait(self, seconds: float) -> bool:
        return bool(self.poller.poll(max(0, math.ceil(seconds * 1000))))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.conn.close()

    def how_it_died(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"


class Sandbox:
    """Runs custom modules in a pool of at most ``max_children`` sandbox processes (created on
    demand, one per concurrent caller, reused). Thread-safe. ``close()`` stops them; they are
    also stopped when the interpreter exits, and stop themselves when their parent dies.

    ``policy`` (default: ``CodePolicy.from_env()``) sets what the processes import when they
    start and their memory limit; a call's own policy sets its time limit, memory limit and
    result size, and may narrow (not widen) the allowed imports."""

    def __init__(
        self, policy: CodePolicy | None = None, *, max_children: int = 4, start_timeout: float = 60.0
    ) -> None:
        if max_children < 1:
            raise ValueError("max_children must be at least 1")
        self.policy = policy or CodePolicy.from_env()
        self.max_children = max_children
        self.start_timeout = start_timeout
        self.starts: list[float] = []  # seconds each child took to start
        self._cond = threading.Condition()
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()
        self._starting = 0
        self._closed = False
        self._pid = os.getpid()
        self._finalizer = weakref.finalize(self, _kill_all, self._children)

    def run(self, module: Module, x: object, policy: CodePolicy | None = None) -> object:
        """``custom_code(x)``'s checked result; CustomCodeFailure when it cannot be had."""
        return self.run_with_output(module, x, policy)[0]

    def run_with_output(
        self, module: Module, x: object, policy: CodePolicy | None = None
    ) -> tuple[object, str]:
        """The result and what the code printed (at most PRINT_LIMIT characters)."""
        policy = policy or self.policy
        version, filename, source = (
            (module.version, module.filename, module.source) if isinstance(module, CheckedModule) else module
        )
        try:
            data = pickle.dumps(
                (version, filename, x, policy.memory_limit, policy.max_result_bytes, policy.allowed_imports),
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        except Exception as exc:
            raise CustomCodeFailure(f"cannot send the input to custom code: {exc}", "unavailable") from None
        for attempt in (1, 2):
            child = self._acquire()
            healthy = False
            try:
                reply = self._call(child, version, source, data, policy.time_limit)
                healthy = reply.get("kind") != "memory"
            except BrokenPipeError:  # an idle child died (killed from outside): try a fresh one
                if attempt == 2:
                    raise CustomCodeFailure("the sandbox process died", "crash") from None
                continue
            finally:
                self._release(child, healthy)
            if "error" in reply:
                raise CustomCodeFailure(reply["error"], reply["kind"])
            return reply["ok"], reply["out"]
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, child: _Child, version: str, source: str, data: bytes, limit: float) -> dict[str, Any]:
        deadline = time.monotonic() + limit
        include = version not in child.known
        while True:
            child.conn.send_bytes(pickle.dumps(("run", source if include else None, data)))
            if not child.wait(deadline - time.monotonic()):
                child.kill()
                message = f"{ENTRY_POINT} ran longer than {limit:g} s and was stopped"
                raise CustomCodeFailure(message, "timeout")
            try:
                reply: dict[str, Any] = json.loads(child.conn.recv_bytes())
            except (EOFError, OSError):
                message = f"{ENTRY_POINT} stopped the process running it ({child.how_it_died()})"
                child.kill()
                raise CustomCodeFailure(message, "crash") from None
            if not reply.get("need_source") or include:
                break
            include = True
        child.known[version] = None
        child.known.move_to_end(version)
        while len(child.known) > _CACHE:
            child.known.popitem(last=False)
        if reply.get("kind") == "memory":
            reply["error"] = f"{ENTRY_POINT} used more than {_mib(reply['limit'])} and was stopped"
        return reply

    def _acquire(self) -> _Child:
        with self._cond:
            if os.getpid() != self._pid:  # forked: the children belong to the parent process
                self._idle, self._pid = [], os.getpid()
                self._children.clear()
            while True:
                if self._closed:
                    raise CustomCodeFailure("the sandbox is closed", "unavailable")
                while self._idle:
                    child = self._idle.pop()
                    if child.proc.poll() is None:
                        return child
                    self._children.discard(child)
                    child.kill()
                if len(self._children) + self._starting < self.max_children:
                    self._starting += 1
                    break
                self._cond.wait()
        try:
            child = _Child(self.policy.memory_limit, self.policy.allowed_imports, self.start_timeout)
        finally:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
        with self._cond:
            self._children.add(child)
            self.starts.append(child.start_seconds)
        return child

    def _release(self, child: _Child, healthy: bool) -> None:
        with self._cond:
            keep = healthy and not self._closed and child.proc.poll() is None
            if keep:
                self._idle.append(child)
            else:
                self._children.discard(child)
            self._cond.notify()
        if not keep:
            child.kill()

    def warm(self, count: int = 1) -> None:
        """Start up to ``count`` children now, so the first calls do not pay for it."""
        children = [self._acquire() for _ in range(min(count, self.max_children))]
        for child in children:
            self._release(child, True)

    def child_environ(self) -> dict[str, str]:
        """The environment a sandbox process actually has (a diagnostic)."""
        child = self._acquire()
        try:
            child.conn.send_bytes(pickle.dumps(("environ", None, b"")))
            environ: dict[str, str] = json.loads(child.conn.recv_bytes())["environ"]
            return environ
        finally:
            self._release(child, True)

    def child_pids(self) -> list[int]:
        with self._cond:
            return sorted(c.proc.pid for c in self._children)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for child in idle:
            self._children.discard(child)
            child.kill()
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill_all(children: set[_Child]) -> None:
    for child in list(children):
        child.kill()
    children.clear()


_DEFAULT: Sandbox | None = None
_DEFAULT_LOCK = threading.Lock()


def default_sandbox() -> Sandbox:
    """This process's shared sandbox, with the operator's policy (``CodePolicy.from_env()``)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT._closed:
            _DEFAULT = Sandbox(CodePolicy.from_env())
        return _DEFAULT


@dataclass(frozen=True)
class DryRun:
    """Which sample inputs a module handled, and why it failed on the others."""

    version: str
    role: Role
    passed: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]


_FATAL = {"timeout", "memory", "crash", "rejected", "unavailable"}


def dry_run(
    checked: CheckedModule,
    role: Role,
    policy: CodePolicy | None = None,
    sandbox: Sandbox | None = None,
    *,
    strict: bool = False,
) -> DryRun:
    """Run the module on every ``sample_inputs(role)``. Raises CustomCodeError naming the input
    shapes that failed and why when none worked, when any was stopped (time, memory, crash), or,
    with ``strict``, when any failed. A module written for one input shape (one signal, several,
    or the federated form) passes on the shape it handles."""
    own = sandbox is None
    box = sandbox or Sandbox(policy, max_children=1)
    passed: list[str] = []
    failed: list[tuple[str, str, str]] = []
    try:
        for x in sample_inputs(role):
            try:
                box.run(checked, x, policy)
                passed.append(describe_input(x))
            except CustomCodeFailure as exc:
                failed.append((describe_input(x), str(exc), exc.kind))
    finally:
        if own:
            box.close()
    if failed and (strict or not passed or any(kind in _FATAL for _, _, kind in failed)):
        lines = [f"  - on {shape}: {why}" for shape, why, _ in failed]
        head = f"{checked.filename} failed its dry run as {role} code:"
        raise CustomCodeError("\n".join([head, *lines]))
    return DryRun(checked.version, role, tuple(passed), tuple((s, w) for s, w, _ in failed))
