"""Running custom code: every call in a fresh, jailed process; nothing trusted that comes back.

The parent (a worker thread) keeps a small pool of fork servers (``oodida_core.customcode.jail``), each
started in bubblewrap's namespaces as an unprivileged user with the allowed modules imported.
For every call a server forks a fresh call process, which confines itself (rlimits, Landlock,
seccomp, an audit hook), compiles the module with RestrictedPython, runs ``custom_code(x)`` in
the guarded namespace (``_sandbox_child``, ``_sandbox_guards``) and replies straight to the
parent, then dies. The parent reads at most a bounded number of bytes within the time limit and
checks the reply as if it came from the network (``check_reply``): strict JSON, the contract's
types, depth and size. A timeout, a memory blow-up or a crash costs that call only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oodida_core.customcode._child import PRINT_LIMIT as PRINT_LIMIT
from oodida_core.customcode._child import RECURSION_LIMIT as RECURSION_LIMIT
from oodida_core.customcode.check import (
    ENTRY_POINT,
    CheckedModule,
    CodePolicy,
    Role,
    describe_input,
    sample_inputs,
)
from oodida_core.customcode.jail import LAYERS, LEVELS, Capabilities, JailSettings, level_of, probe
from oodida_core.customcode.jail.reply import CustomCodeFailure as CustomCodeFailure
from oodida_core.customcode.jail.reply import check_reply as check_reply
from oodida_core.customcode.jail.reply import reply_limit
from oodida_core.customcode.jail.server import ReplyTimeout, ReplyTooLarge, Server, ServerError, read_frame
from oodida_core.protocol.errors import CustomCodeError

MiB = 1024 * 1024
Module = CheckedModule | tuple[str, str, str]  # or (version, filename, source)
log = logging.getLogger("oodida.sandbox")
_GRACE = 2.0  # seconds the parent waits past the time limit for the jail to answer


def child_environment(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a sandbox process: locale and one-thread numerics, nothing else
    of the worker's (no OODIDA_* variables, no Redis URLs, no credentials)."""
    source = os.environ if parent is None else parent
    env = {k: source[k] for k in ("LANG", "LC_ALL", "LC_CTYPE", "TZ") if k in source}
    threads = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
    return {**env, **dict.fromkeys(threads, "1"), "PATH": "/usr/bin:/bin"}


def _timed_out(limit: float) -> CustomCodeFailure:
    return CustomCodeFailure(f"{ENTRY_POINT} ran longer than {limit:g} s and was stopped", "timeout")


class Sandbox:
    """Runs custom modules in jailed call processes, forked by a pool of at most
    ``max_children`` fork servers (created on demand, one per concurrent caller, reused; a
    server never runs custom code). Thread-safe. ``close()`` stops them; they are also stopped
    when the interpreter exits, and die with their parent.

    ``policy`` (default: ``CodePolicy.from_env()``) sets what the servers import; a call's own
    policy sets its time limit, memory limit and result size, and may narrow (not widen) the
    allowed imports. ``jail`` (default: ``JailSettings.from_env()``) sets the lowest level of
    jail accepted and the uid calls run as; ``layers`` (tests) picks the layers by name
    instead of every layer this machine has; ``raw`` (tests) lets ``run_raw`` run
    unrestricted Python in the jail, to test the jail alone."""

    def __init__(
        self,
        policy: CodePolicy | None = None,
        *,
        max_children: int = 4,
        start_timeout: float = 60.0,
        jail: JailSettings | None = None,
        layers: frozenset[str] | None = None,
        raw: bool = False,
    ) -> None:
        if max_children < 1:
            raise ValueError("max_children must be at least 1")
        self.policy = policy or CodePolicy.from_env()
        self.jail = jail or JailSettings.from_env()
        self.capabilities: Capabilities = probe(self.jail.bwrap)
        unknown = set(layers or ()) - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown jail layers: {', '.join(sorted(unknown))}")
        self.layers = (
            frozenset(layers) & self.capabilities.layers if layers is not None else self.capabilities.layers
        )
        self.level = level_of(self.layers)
        self.refusal: str | None = None
        if layers is None and LEVELS.index(self.level) < LEVELS.index(self.jail.minimum):
            self.refusal = (
                f"custom code is refused on this machine: its jail is level {self.level} and "
                f"OODIDA_JAIL asks for at least {self.jail.minimum} ({self.capabilities.describe()})"
            )
        self.raw = raw
        self.max_children = max_children
        self.start_timeout = start_timeout
        self.starts: list[float] = []  # seconds each fork server took to start
        self._cond = threading.Condition()
        self._idle: list[Server] = []
        self._children: set[Server] = set()
        self._starting = 0
        self._closed = False
        self._pid = os.getpid()
        self._busy_wait = self.policy.time_limit + start_timeout + 30.0
        self._finalizer = weakref.finalize(self, _kill_all, self._children)

    def describe(self) -> str:
        """The jail's level and layers, for logs and health checks."""
        return self.refusal or self.capabilities.describe()

    def run(self, module: Module, x: object, policy: CodePolicy | None = None) -> object:
        """``custom_code(x)``'s checked result; CustomCodeFailure when it cannot be had."""
        return self.run_with_output(module, x, policy)[0]

    def run_with_output(
        self, module: Module, x: object, policy: CodePolicy | None = None
    ) -> tuple[object, str]:
        """The result and what the code printed (at most PRINT_LIMIT characters)."""
        version, filename, source = (
            (module.version, module.filename, module.source) if isinstance(module, CheckedModule) else module
        )
        return self._call("run", version, filename, source, x, policy or self.policy)

    def run_raw(self, source: str, x: object, policy: CodePolicy | None = None) -> tuple[object, str]:
        """Tests only (a Sandbox made with ``raw=True``): run ``custom_code(x)`` of ``source`` as
        plain, unrestricted Python in the jail, as if the restricted interpreter had been
        escaped. The reply is checked like any other."""
        if not self.raw:
            raise CustomCodeFailure("run_raw needs a Sandbox made with raw=True (tests only)", "unavailable")
        from oodida_core.customcode.check import code_version

        return self._call("raw", code_version(source), "raw.py", source, x, policy or self.policy)

    def _call(
        self, op: str, version: str, filename: str, source: str, x: object, policy: CodePolicy
    ) -> tuple[object, str]:
        if self.refusal:
            raise CustomCodeFailure(self.refusal, "unavailable")
        request = {
            "op": op, "version": version, "filename": filename, "source": source, "x": x,
            "memory_limit": policy.memory_limit, "time_limit": policy.time_limit,
            "max_result_bytes": policy.max_result_bytes, "allowed": sorted(policy.allowed_imports),
        }  # fmt: skip
        for attempt in (1, 2):
            server = self._acquire()
            healthy = False
            try:
                data = self._exchange(server, request, policy)
                healthy = True
            except CustomCodeFailure:
                healthy = server.alive()  # a call that failed costs the call, not the server
                raise
            except ServerError as exc:  # the server itself failed: a fresh one, once
                if attempt == 2:
                    raise CustomCodeFailure(f"the jail failed: {exc}", "crash") from None
                continue
            finally:
                self._release(server, healthy)
            return check_reply(data, policy)
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, server: Server, request: dict[str, Any], policy: CodePolicy) -> bytes:
        """The call process's raw reply; CustomCodeFailure for a timeout or a crash."""
        limit = policy.time_limit
        deadline = time.monotonic() + limit
        data: bytes | None = None
        failure: CustomCodeFailure | None = None
        try:
            call = server.spawn(request, deadline)  # a ServerError here: the caller tries a fresh server
        except TypeError as exc:  # pickling the input
            raise CustomCodeFailure(f"cannot send the input to custom code: {exc}", "unavailable") from None
        except ReplyTimeout:
            server.end()
            raise _timed_out(limit) from None
        try:
            data = read_frame(call.fileno(), deadline, reply_limit(policy))
        except ReplyTimeout:
            failure = _timed_out(limit)
        except ReplyTooLarge:
            failure = CustomCodeFailure("the reply of custom code is too large", "reply")
        except OSError:
            data = None
        finally:
            call.close()
            try:
                how = server.end(wait=data is None)
            except ServerError as exc:
                how = f"its fork server died: {exc}"
                server.kill()
        if failure is not None:
            raise failure
        if data is None:
            if how in ("killed by SIGXCPU",):
                raise _timed_out(limit)
            raise CustomCodeFailure(f"{ENTRY_POINT} stopped the process running it ({how})", "crash")
        return data

    def _acquire(self) -> Server:
        with self._cond:
            if os.getpid() != self._pid:  # forked: the servers belong to the parent process
                self._idle, self._pid = [], os.getpid()
                self._children.clear()
            while True:
                if self._closed:
                    raise CustomCodeFailure("the sandbox is closed", "unavailable")
                while self._idle:
                    server = self._idle.pop()
                    if server.alive():
                        return server
                    self._children.discard(server)
                    server.kill()
                if len(self._children) + self._starting < self.max_children:
                    self._starting += 1
                    break
                if not self._cond.wait(self._busy_wait):  # every call ends by its time limit
                    raise CustomCodeFailure(
                        f"all {self.max_children} sandbox processes stayed busy for {self._busy_wait:g} s",
                        "unavailable",
                    )
        try:
            server = Server(
                layers=self.layers, allowed=self.policy.allowed_imports, env=child_environment(),
                bwrap=self.capabilities.bwrap, uid=self.jail.uid, raw=self.raw,
                start_timeout=self.start_timeout,
            )  # fmt: skip
        except ServerError as exc:
            raise CustomCodeFailure(
                f"the sandbox for custom code did not start: {exc}", "unavailable"
            ) from None
        finally:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
        with self._cond:
            self._children.add(server)
            self.starts.append(server.start_seconds)
        if server.layers != self.layers:
            log.warning(
                "the jail's fork server has layers %s, not %s", sorted(server.layers), sorted(self.layers)
            )
        return server

    def _release(self, server: Server, healthy: bool) -> None:
        with self._cond:
            keep = healthy and not self._closed and server.alive()
            if keep:
                self._idle.append(server)
            else:
                self._children.discard(server)
            self._cond.notify()
        if not keep:
            server.kill()

    def warm(self, count: int = 1) -> None:
        """Start up to ``count`` fork servers now, so the first calls do not pay for it."""
        if self.refusal:
            return
        servers = [self._acquire() for _ in range(min(count, self.max_children))]
        for server in servers:
            self._release(server, True)

    def child_environ(self) -> dict[str, str]:
        """The environment a call process actually has (a diagnostic)."""
        env, _ = self._call("environ", "", "", "", None, self.policy)
        return dict(env) if isinstance(env, dict) else {}

    def child_pids(self) -> list[int]:
        """The fork servers' process ids (bubblewrap's, when it runs them)."""
        with self._cond:
            return sorted(s.pid for s in self._children)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for server in idle:
            self._children.discard(server)
            server.kill()
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def announce_jail(sandbox: Sandbox, logger: logging.Logger) -> None:
    """Say at a worker's start how custom code is jailed here: info at level full, a warning
    below it (which layer is missing and why), an error when custom code is refused."""
    if sandbox.refusal:
        logger.error("CUSTOM CODE IS REFUSED: %s", sandbox.refusal)
    elif sandbox.level != "full":
        logger.warning("custom code runs in a WEAKER JAIL: %s", sandbox.describe())
    else:
        logger.info("custom code runs in a %s", sandbox.describe())


def _kill_all(children: set[Server]) -> None:
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
