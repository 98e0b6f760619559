"""The bubblewrap command that starts a fork server in its own namespaces.

bubblewrap (the sandbox under Flatpak) builds the view from nothing: a new mount namespace whose
root is an empty tmpfs, made read-only at the end, holding only read-only binds of the paths
given (the interpreter, the allowed packages, the system libraries), a minimal /dev and no
/proc; new pid, network (loopback only, down), IPC, UTS and cgroup namespaces; a new session
(no terminal to push input into); everything in it dies with the worker. Run by root, bubblewrap keeps
only CAP_SETUID and CAP_SETGID so that the server can drop to the jail's uid after it started;
run by anyone else it makes a user namespace and maps the caller to the jail's uid inside.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence


def namespace_flags(as_root: bool) -> list[str]:
    flags = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if as_root:
        return [*flags, "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return ["--unshare-user", *flags]


def command(
    bwrap: str,
    argv: Sequence[str],
    readable: Iterable[str],
    env: Mapping[str, str],
    *,
    as_root: bool,
    uid: int,
    hidden: Iterable[str] = (),
) -> list[str]:
    """``bwrap ... -- argv``: ``readable`` bound read-only at their own paths, ``hidden``
    directories beneath them covered by an empty read-only tmpfs (paths in ``readable`` below
    a hidden one are bound back on top)."""
    cmd = [bwrap, *namespace_flags(as_root), "--die-with-parent", "--new-session"]
    if not as_root:
        cmd += ["--uid", str(uid), "--gid", str(uid)]
    cmd += ["--dev", "/dev"]
    made: set[str] = set()
    for top in ("/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin"):
        if os.path.islink(top):  # merged /usr: /lib -> usr/lib
            cmd += ["--symlink", os.readlink(top), top]
            made.add(top)
    bound: list[str] = []
    covered = set(hidden)
    for path in sorted(set(readable) | covered):
        if path in covered:
            cmd += ["--tmpfs", path, "--remount-ro", path]
            bound.append(path)
            made.add(path)
            continue
        visible = [b for b in bound if path.startswith(b + "/")]
        if not os.path.exists(path) or path in made or (visible and visible[-1] not in covered):
            continue  # missing here, or already visible through a bind above it
        bound.append(path)
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/" + "/".join(parts[:i])
            if parent not in made:
                made.add(parent)
                cmd += ["--perms", "0755", "--dir", parent]
        cmd += ["--ro-bind", path, path]
        made.add(path)
    cmd += ["--remount-ro", "/", "--clearenv", "--chdir", "/"]
    for key, value in sorted(env.items()):
        cmd += ["--setenv", key, value]
    return [*cmd, "--", *argv]
