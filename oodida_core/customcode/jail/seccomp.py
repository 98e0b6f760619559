"""seccomp: the system calls a call process may not make, through libseccomp.

The filter (libseccomp via ``pyseccomp``, ctypes bindings of the same library systemd, Docker
and Chromium use) is a deny list: Python and numpy run unchanged, and every call below fails
with EPERM. Calls of another architecture (the i386 and x32 entry points on x86_64) kill the
process, libseccomp's default for a foreign architecture. Groups, and why:
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Mapping
from typing import Any

DENIED: Mapping[str, tuple[str, ...]] = {
    # no network, no local sockets: the call's channel to its parent is already open
    "sockets": ("socket", "socketpair", "connect", "bind", "listen", "accept", "accept4"),
    # no new process or thread, nothing run from a file
    "processes": ("fork", "vfork", "clone", "clone3", "execve", "execveat"),
    # no signal to anyone, no reading or writing another process
    "other processes": (
        "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "ptrace",
        "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd",
        "pidfd_send_signal", "kcmp", "process_madvise",
    ),
    # no change of identity or limits (prlimit64 that sets a limit: see build())
    "privileges": (
        "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid",
        "setfsgid", "setgroups", "capset", "setrlimit", "setpriority", "personality",
    ),
    # no namespaces, mounts or kernel objects that outlive the call
    "kernel": (
        "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
        "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr", "keyctl", "add_key",
        "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
        "io_uring_register", "open_by_handle_at", "name_to_handle_at", "init_module",
        "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon",
        "swapoff", "sethostname", "setdomainname", "acct", "quotactl", "ioperm", "iopl",
        "memfd_create", "memfd_secret", "mknod", "mknodat", "msgget", "semget", "shmget",
        "mq_open", "fanotify_init", "lookup_dcookie", "vhangup", "syslog", "uselib",
        "modify_ldt", "listmount", "statmount",
    ),
    # no kernel objects that pin kernel memory outside the address space limit, or a
    # host-wide quota (fs.aio-max-nr)
    "kernel memory": (
        "pipe", "pipe2", "epoll_create", "epoll_create1", "inotify_init", "inotify_init1",
        "eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create", "perf_event_open",
        "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    ),
    # no scheduling or memory placement of other processes (see build() for its own)
    "scheduling": ("sched_setattr", "ioprio_set", "migrate_pages", "move_pages"),
}  # fmt: skip


_LIBRARIES: dict[str, str] = {}


def libraries() -> dict[str, str]:
    """Where this machine's C library and libseccomp are (``ctypes.util.find_library`` needs
    ``ldconfig``, which the jail does not have): found by the parent, handed to the server."""
    import ctypes.util

    found = {name: ctypes.util.find_library(name) for name in ("c", "seccomp")}
    return {name: path for name, path in found.items() if path}


def use_libraries(paths: Mapping[str, str]) -> None:
    _LIBRARIES.update(paths)


def _pyseccomp() -> Any:
    import ctypes.util

    original = ctypes.util.find_library
    ctypes.util.find_library = lambda name: _LIBRARIES.get(name) or original(name)
    try:
        import pyseccomp
    finally:
        ctypes.util.find_library = original
    return pyseccomp


def all_denied() -> tuple[str, ...]:
    return tuple(name for group in DENIED.values() for name in group)


def available() -> str | None:
    """None when a filter can be built here, else why not (no libseccomp)."""
    try:
        pyseccomp = _pyseccomp()
        pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    except Exception as exc:  # an ImportError, or an OSError from loading libseccomp.so.2
        return f"libseccomp is not available ({type(exc).__name__}: {exc})"
    return None


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def program() -> bytes:
    """The filter compiled to classic BPF by libseccomp, once (the fork server does this)."""
    read, write = os.pipe()
    try:
        with os.fdopen(write, "wb", closefd=False) as out:
            build().export_bpf(out)  # type: ignore[attr-defined]
        os.close(write)
        write = -1
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def load(bpf: bytes) -> None:
    """Install the compiled filter on this process (needs ``no_new_privs``); irreversible."""
    buffer = (ctypes.c_char * len(bpf)).from_buffer_copy(bpf)
    prog = _SockFprog(
        len(bpf) // ctypes.sizeof(_SockFilter), ctypes.cast(buffer, ctypes.POINTER(_SockFilter))
    )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        errno_ = ctypes.get_errno()
        raise OSError(errno_, f"seccomp filter: {os.strerror(errno_)}")


def build() -> object:
    """The filter as a libseccomp object (``program()`` compiles it)."""
    pyseccomp = _pyseccomp()
    f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in all_denied():
        try:
            f.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
        except (OSError, ValueError, RuntimeError):
            continue  # a call this architecture or libseccomp does not know
    # prlimit64 may read limits (getrlimit uses it), never set them
    f.add_rule(pyseccomp.ERRNO(errno.EPERM), "prlimit64", pyseccomp.Arg(2, pyseccomp.NE, 0))
    # a call process stays not dumpable (PR_SET_DUMPABLE)
    f.add_rule(pyseccomp.ERRNO(errno.EPERM), "prctl", pyseccomp.Arg(0, pyseccomp.EQ, 4))
    # scheduling policy and CPUs of itself only (pid 0): not of the fork server or the next call
    for name in ("sched_setscheduler", "sched_setparam", "sched_setaffinity"):
        f.add_rule(pyseccomp.ERRNO(errno.EPERM), name, pyseccomp.Arg(0, pyseccomp.NE, 0))
    # no signal by way of a descriptor: F_SETOWN, F_SETOWN_EX, F_SETSIG, F_SETLEASE, F_NOTIFY
    for command in (8, 15, 10, 1024, 1026):
        f.add_rule(pyseccomp.ERRNO(errno.EPERM), "fcntl", pyseccomp.Arg(1, pyseccomp.EQ, command))
    # TIOCSTI (push characters into a terminal's input), FIOSETOWN and SIOCSPGRP (signals)
    for request in (0x5412, 0x8901, 0x8902):
        f.add_rule(pyseccomp.ERRNO(errno.EPERM), "ioctl", pyseccomp.Arg(1, pyseccomp.EQ, request))
    return f
