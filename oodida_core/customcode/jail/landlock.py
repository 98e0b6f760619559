"""Landlock (Linux 5.13+): the call process gives up file, network and signal access.

A thin ctypes binding of the three system calls (``landlock_create_ruleset``,
``landlock_add_rule``, ``landlock_restrict_self``; see Documentation/userspace-api/landlock.rst
in the kernel). PyPI's ``landlock`` package covers file access only (no TCP rules, no scopes)
and is a development release, so the dozen constants live here. What a restricted process keeps:
read access beneath the given directories (and files), nothing else of the file system; no TCP
``bind``/``connect`` (ABI 4+); no signals to, and no abstract Unix sockets of, processes outside
its own domain (ABI 6+). The restriction is inherited by every child and cannot be undone.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # x86_64 and aarch64 (asm-generic)
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
# remove dir/file, make char/dir/reg/sock/fifo/block/sym (ABI 1), refer (2), truncate (3),
# ioctl_dev (5): every right that changes or reaches beyond reading
_FS_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
READ = FS_READ_FILE | FS_READ_DIR  # no FS_EXECUTE: nothing beneath can be exec()'d


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    n = int(
        _libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    )
    return max(n, 0)


def _fs_rights(abi: int) -> int:
    return _FS_ABI[max(k for k in _FS_ABI if k <= abi)]


def restrict(readable: Iterable[str], abi: int | None = None) -> int:
    """Restrict this thread (and what it starts) to reading beneath ``readable``; no writes, no
    TCP, no signals or abstract sockets outside. Returns the ABI used; OSError when it fails.
    Needs ``no_new_privs`` (set here) or CAP_SYS_ADMIN."""
    abi = abi_version() if abi is None else abi
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    attr = _RulesetAttr(
        fs=_fs_rights(abi),
        net=(NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0,
        scoped=(SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0,
    )
    ruleset = int(
        _libc.syscall(
            _CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0)
        )
    )
    if ruleset < 0:
        raise _error("landlock_create_ruleset")
    try:
        for path in readable:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path that does not exist here grants nothing
            try:
                rights = READ if os.path.isdir(path) else FS_READ_FILE
                rule = _PathBeneath(allowed=rights & attr.fs, parent_fd=fd)
                if _libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) < 0:
                    raise _error(f"landlock_add_rule({path})")
            finally:
                os.close(fd)
        if _libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            raise _error("prctl(PR_SET_NO_NEW_PRIVS)")
        if _libc.syscall(_RESTRICT_SELF, ruleset, 0) < 0:
            raise _error("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _error(what: str) -> OSError:
    errno = ctypes.get_errno()
    return OSError(errno, f"{what}: {os.strerror(errno)}")
