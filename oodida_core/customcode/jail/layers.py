"""The jail's layers, what this machine can give, and the level that results.

Layers, outermost first (each tested alone in tests/unit/test_jail_layers.py):

- namespaces (the fork server): bubblewrap gives it its own mount namespace (a read-only view
  of the interpreter and the allowed packages, no /proc), pid, network, IPC, UTS and cgroup
  namespaces.
- user (the fork server): an unprivileged uid; a root worker's server drops to
  ``OODIDA_JAIL_UID`` (65534).
- landlock (each call): reads beneath the readable roots only; no writes, no TCP, no signals or
  abstract sockets outside.
- seccomp (each call): the system calls of ``jail.seccomp.DENIED`` fail with EPERM.
- rlimits (each call): address space, CPU seconds, file size 0, no core, no new processes.
- audit (each call): a PEP 578 hook refuses files, sockets, processes, signals, ctypes and
  run-time compiling.

Always, whatever the layers: a fresh process per call (forked from a server that never runs
custom code and never holds a user's data), ``no_new_privs``, not dumpable, no descriptor but
its own channel, a scrubbed environment.

Levels: ``full`` (every layer), ``kernel`` (all but namespaces: no bubblewrap, or no user
namespaces, as in a default Docker container), ``process`` (no Landlock or no seccomp either:
rlimits, audit and the restricted interpreter only). ``OODIDA_JAIL`` is the lowest level the
operator accepts (default ``kernel``); below it, custom code is refused with the reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from oodida_core.protocol.errors import OodidaError

LAYERS = ("namespaces", "user", "landlock", "seccomp", "rlimits", "audit")
LEVELS = ("process", "kernel", "full")
DEFAULT_UID = 65534  # nobody


def level_of(layers: frozenset[str]) -> str:
    if set(LAYERS) <= layers:
        return "full"
    if {"landlock", "seccomp", "rlimits", "audit", "user"} <= layers:
        return "kernel"
    return "process"


@dataclass(frozen=True)
class JailSettings:
    minimum: str = "kernel"  # OODIDA_JAIL
    uid: int = DEFAULT_UID  # OODIDA_JAIL_UID: the uid a root worker's calls run as
    bwrap: str | None = None  # path of bubblewrap; None: found on PATH

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JailSettings:
        source = os.environ if env is None else env
        minimum = source.get("OODIDA_JAIL", "kernel").strip().lower() or "kernel"
        if minimum not in LEVELS:
            raise OodidaError(
                f"bad settings: OODIDA_JAIL must be one of {', '.join(LEVELS)} (got {minimum!r})"
            )
        uid_text = source.get("OODIDA_JAIL_UID", str(DEFAULT_UID)).strip()
        if not uid_text.isdigit() or int(uid_text) == 0:
            raise OodidaError(f"bad settings: OODIDA_JAIL_UID must be a non-zero uid (got {uid_text!r})")
        return cls(minimum=minimum, uid=int(uid_text), bwrap=source.get("OODIDA_JAIL_BWRAP") or None)


@dataclass(frozen=True)
class Capabilities:
    """What this machine offers the jail, and why a layer is missing."""

    layers: frozenset[str]
    missing: Mapping[str, str]
    bwrap: str | None
    landlock_abi: int

    @property
    def level(self) -> str:
        return level_of(self.layers)

    def describe(self) -> str:
        text = f"jail level {self.level} ({', '.join(n for n in LAYERS if n in self.layers)})"
        if self.missing:
            text += "; missing: " + "; ".join(f"{k}: {v}" for k, v in self.missing.items())
        return text


@functools.lru_cache(maxsize=4)
def probe(bwrap: str | None = None) -> Capabilities:
    """Measure what works here (cached per process): bubblewrap with the namespaces the fork
    server uses, Landlock's ABI, libseccomp."""
    from oodida_core.customcode.jail import landlock, seccomp

    missing: dict[str, str] = {}
    layers = {"rlimits", "audit", "user"}
    path = bwrap or shutil.which("bwrap")
    if path is None:
        missing["namespaces"] = "bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)"
    else:
        why = _try_bwrap(path)
        if why is None:
            layers.add("namespaces")
        else:
            missing["namespaces"] = why
            path = None
    abi = landlock.abi_version()
    if abi >= 1:
        layers.add("landlock")
    else:
        missing["landlock"] = "the kernel has no Landlock (Linux 5.13+, enabled in the lsm= list)"
    why = seccomp.available()
    if why is None:
        layers.add("seccomp")
    else:
        missing["seccomp"] = why
    return Capabilities(frozenset(layers), missing, path, abi)


def _try_bwrap(path: str) -> str | None:
    from oodida_core.customcode.jail.bwrap import namespace_flags

    cmd = [path, *namespace_flags(os.geteuid() == 0), "--ro-bind", "/", "/", "--", "/bin/true"]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot run: {exc}"
    if done.returncode != 0:
        text = done.stderr.decode(errors="replace").strip().splitlines()
        return f"bubblewrap cannot create namespaces here: {text[-1] if text else done.returncode}"
    return None
