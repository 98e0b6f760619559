"""A PEP 578 audit hook for the call process: the interpreter's own report of what code does.

Installed in the call process before any custom code runs; an audit hook cannot be removed.
It refuses, with ``PermissionError("the jail refuses ...")``: opening a file to write, or any
file outside the readable roots; every socket operation; starting programs or processes;
signals; ``ctypes`` (loading libraries, calling foreign functions); changing resource limits or
the environment; and, once custom code runs, compiling or executing any code but the module's
own (``eval``, ``exec``, ``compile`` of strings, whatever route reaches them: ``typing``'s
string annotations, ``ForwardRef``...). Two standard-library generators of code are let
through, because their templates are fixed and their inputs checked: ``dataclasses`` (its
``_create_fn``) and ``collections.namedtuple``.

This layer sees only what Python reports; code that escapes into native code passes it, which
is why seccomp and Landlock stand below it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from typing import Any

REFUSED_PREFIXES = ("socket.", "ctypes.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "pty.")
REFUSED_EVENTS = frozenset(
    [
        "os.system",
        "os.fork",
        "os.forkpty",
        "os.startfile",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "resource.setrlimit",
        "resource.prlimit",
        "os.putenv",
        "os.unsetenv",
        "os.chmod",
        "os.chown",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.symlink",
        "os.link",
        "os.truncate",
        "os.utime",
        "shutil.rmtree",
        "sys._current_frames",
        "sys.setprofile",
        "sys.settrace",
        "mmap.__new__",
    ]
)
# What the fixed templates of dataclasses and namedtuple never hold, and an injected name would
_ESCAPES = re.compile(
    rb"__import__|__subclasses__|__globals__|__builtins__|__code__|__closure__|__bases__|__mro__"
    rb"|\b(?:exec|eval|compile|open|getattr|setattr|delattr|globals|vars|breakpoint|input)\s*\("
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class Hook:
    """The hook's state: which roots are readable, and whether custom code runs yet."""

    def __init__(self, readable: Iterable[str]) -> None:
        self.roots = tuple(os.path.join(os.path.realpath(p), "") for p in readable)
        self.files = frozenset(os.path.realpath(p) for p in readable)
        self.own_code: object = None  # the module's code object, once compiled
        self.running = False
        import collections
        import dataclasses

        self.generators = {
            (os.path.realpath(dataclasses.__file__), "_create_fn"),
            (os.path.realpath(collections.__file__), "namedtuple"),
        }

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event in REFUSED_EVENTS or event.startswith(REFUSED_PREFIXES):
            raise PermissionError(f"the jail refuses {event}")
        if event == "open":
            self._open(args)
        elif self.running and event in ("compile", "exec"):
            if event == "exec" and args[0] is self.own_code:
                return
            caller = sys._getframe(1).f_code
            if (os.path.realpath(caller.co_filename), caller.co_name) not in self.generators:
                raise PermissionError(f"the jail refuses {event} of code at run time")
            text = args[0]
            if isinstance(text, (bytes, str)) and _ESCAPES.search(
                os.fsencode(text) if isinstance(text, str) else text
            ):
                raise PermissionError(f"the jail refuses {event} of generated code that reaches out")

    def _open(self, args: tuple[Any, ...]) -> None:
        path, mode, flags = [*args, None, None, 0][:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
            (flags or 0) & _WRITE_FLAGS
        )
        if writes:
            raise PermissionError("the jail refuses open for writing")
        if isinstance(path, int):
            return  # an already open descriptor: reading it opens nothing new
        real = os.path.realpath(os.fsdecode(path)) if isinstance(path, (str, bytes)) else ""
        if real not in self.files and not real.startswith(self.roots):
            raise PermissionError(f"the jail refuses open of {real or path!r}")
