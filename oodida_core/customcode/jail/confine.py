"""What a call process does to itself before custom code runs: the per-call layers.

Order matters: resource limits first (seccomp forbids changing them later), then Landlock,
then the seccomp filter, then the audit hook. Whatever the layers, the process is not dumpable
(no ptrace or /proc/<pid>/mem by a process of the same uid), has ``no_new_privs``, and dies
with its fork server.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import resource
import signal
import sys
from collections.abc import Iterable

from oodida_core.customcode.jail import audit, landlock, seccomp

_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 1, 4, 38
_libc = ctypes.CDLL(None, use_errno=True)
MAX_DESCRIPTORS = 32


def prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")


def always() -> None:
    """What every call process does, with or without layers."""
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(_PR_SET_DUMPABLE, 0)
    prctl(_PR_SET_NO_NEW_PRIVS, 1)


def limit(memory_limit: int, time_limit: float) -> None:
    """Address space, CPU seconds (a backstop behind the parent's wall-clock limit), no file
    may grow (RLIMIT_FSIZE 0), no core dump, no new process (binds an unprivileged uid), few
    descriptors (each pipe or epoll watch costs kernel memory outside the address space)."""
    cpu = math.ceil(time_limit) + 1
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_DESCRIPTORS, MAX_DESCRIPTORS))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    for which in (resource.RLIMIT_FSIZE, resource.RLIMIT_CORE, resource.RLIMIT_NPROC):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (0, 0))


def confine(
    layers: frozenset[str],
    readable: Iterable[str],
    memory_limit: int,
    time_limit: float,
    bpf: bytes | None,
    hook: audit.Hook | None,
) -> audit.Hook | None:
    """Apply the per-call layers named in ``layers`` (the seccomp program and the audit hook
    are prepared by the fork server); the hook when it was installed."""
    always()
    if "rlimits" in layers:
        limit(memory_limit, time_limit)
    if "landlock" in layers:
        landlock.restrict(readable)
    if "seccomp" in layers and bpf is not None:
        seccomp.load(bpf)
    if "audit" in layers and hook is not None:
        sys.addaudithook(hook)
        return hook
    return None
