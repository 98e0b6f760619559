"""The sandbox process: a restricted interpreter serving one parent over a socket.

``oodida_core.sandbox`` starts it as ``python -I -c <boot> FD MEMORY_LIMIT ALLOWED`` (see
``_child_main``). Before the first call it imports every allowed module, watches its parent, and
limits itself: address space (the memory limit), no new files or sockets (RLIMIT_NOFILE at the
descriptors already open), no new processes or threads (RLIMIT_NPROC 0), no file writing. Then
it answers requests: it compiles each module once per version with RestrictedPython, runs
``custom_code(x)`` in a fresh copy of the guarded namespace (``_sandbox_guards``), checks the
result and replies in JSON. Everything here runs in the child; the parent imports only the
constants below.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import sys
import threading
import time
from collections import OrderedDict
from multiprocessing.connection import Connection
from types import CodeType
from typing import Any

from ._sandbox_guards import _Guards
from .customcode import ENTRY_POINT, CodePolicy, check_source, code_version
from .errors import CustomCodeError
from .results_check import encode_result

RECURSION_LIMIT = 1000
PRINT_LIMIT = 4096  # characters of print() output kept per call
CACHE = 32  # compiled modules kept per child (the parent counts the same, to know when to resend)


def _child_main(argv: list[str]) -> None:  # pragma: no cover - runs in the sandbox process
    fd, memory_limit, allowed = int(argv[0]), int(argv[1]), frozenset(filter(None, argv[2].split(",")))
    conn = Connection(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import warnings

    warnings.simplefilter("ignore")
    runtime = _Runtime(allowed, memory_limit)  # imports everything allowed while files can be opened
    parent = os.getppid()
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    _limit_resources(memory_limit)
    sys.setrecursionlimit(RECURSION_LIMIT)
    conn.send_bytes(json.dumps({"ready": os.getpid()}).encode())
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send_bytes(runtime.handle(request))


def _watch_parent(parent: int) -> None:  # pragma: no cover - runs in the sandbox process
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _limit_resources(memory_limit: int) -> None:  # pragma: no cover - runs in the sandbox process
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    for limit in (resource.RLIMIT_CORE, resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, (0, 0))

    def is_open(fd: int) -> bool:
        try:
            return os.fstat(fd) is not None
        except OSError:
            return False

    with contextlib.suppress(ValueError, OSError):  # fill the gaps below the highest open one,
        null = os.open(os.devnull, os.O_RDONLY)  # then allow no more descriptors at all
        top = max(fd for fd in map(int, os.listdir("/proc/self/fd")) if is_open(fd))
        for fd in range(top):
            if not is_open(fd):
                os.dup2(null, fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1, top + 1))


class _Output:
    """What one call printed: at most PRINT_LIMIT characters, then a mark that more was cut."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.room = PRINT_LIMIT
        self.cut = False

    def write(self, text: str) -> None:
        if self.cut:
            return  # full: flooding costs nothing more than the print calls themselves
        if len(text) <= self.room:
            self.parts.append(text)
            self.room -= len(text)
            return
        self.parts.append(text[: self.room] + "\n[output truncated]")
        self.room, self.cut = 0, True

    def text(self) -> str:
        return "".join(self.parts)


class _Printer:
    """RestrictedPython's print collector, writing into the call's shared output."""

    def __init__(self, output: _Output) -> None:
        self._output = output

    def write(self, text: str) -> None:
        self._output.write(text)

    def __call__(self) -> str:
        return self._output.text()

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        if kwargs.get("file") is None:
            kwargs["file"] = self
        print(*objects, **kwargs)


class _Runtime(_Guards):  # pragma: no cover - runs in the sandbox process
    """The restricted interpreter inside a sandbox process: compiles, runs, replies."""

    def __init__(self, allowed: frozenset[str], memory_limit: int) -> None:
        super().__init__(allowed)  # imports everything allowed
        self.memory_limit = memory_limit
        self.codes: OrderedDict[str, CodeType] = OrderedDict()
        self.policies: dict[int, CodePolicy] = {}

    def handle(self, request: bytes) -> bytes:
        op, source, data = pickle.loads(request)
        if op == "environ":
            return json.dumps({"environ": dict(os.environ)}).encode()
        version, filename, x, memory_limit, max_result, allowed = pickle.loads(data)
        self.allowed = allowed
        code = self.codes.get(version)
        if code is None:
            if source is None:
                return b'{"need_source": true}'
            try:
                if code_version(source) != version:
                    raise CustomCodeError(f"{filename}: the source does not match its version {version}")
                code = check_source(source, filename, CodePolicy(allowed_imports=allowed)).code
            except CustomCodeError as exc:
                return json.dumps({"error": str(exc), "kind": "rejected"}).encode()
            self.codes[version] = code
            while len(self.codes) > CACHE:
                self.codes.popitem(last=False)
        if memory_limit != self.memory_limit:
            import resource

            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            resource.setrlimit(resource.RLIMIT_AS, (min(memory_limit, hard), hard))
            self.memory_limit = memory_limit
        return self._run(code, filename, x, max_result)

    def _run(self, code: CodeType, filename: str, x: Any, max_result: int) -> bytes:
        printed = _Output()
        namespace = dict(self.template)
        namespace["_print_"] = lambda _getattr_=None: _Printer(printed)
        self.imported.clear()
        error: dict[str, Any] | None = None
        try:
            exec(code, namespace)
            function = namespace.get(ENTRY_POINT)
            if not callable(function):
                raise CustomCodeError(f"{filename} does not define {ENTRY_POINT}(x)")
            value = function(x)
            del namespace, function
            policy = self.policies.get(max_result) or self.policies.setdefault(
                max_result, CodePolicy(max_result_bytes=max_result)
            )
            text = encode_result(value, policy)
        except MemoryError:
            error = {"error": "out of memory", "kind": "memory", "limit": self.memory_limit}
        except CustomCodeError as exc:
            error = {"error": str(exc), "kind": "result"}
        except BaseException as exc:  # whatever the code raised is reported
            error = {"error": _describe(exc, filename), "kind": "raised"}
        finally:
            self._reset()
        if error is not None:
            return json.dumps(error).encode()
        out = json.dumps(printed.text()).encode() if printed.parts else b'""'
        return b'{"ok":' + text.encode() + b',"out":' + out + b"}"


def _describe(exc: BaseException, filename: str) -> str:  # pragma: no cover - in the sandbox
    try:  # an exception of a million arguments would take longer to print than to raise
        text = (
            str(exc)
            if len(exc.args) <= 10
            else f"{str(exc.args[:10])[:-1]}, ...) ({len(exc.args):,} arguments)"
        )
    except Exception:
        text = "(the message could not be shown)"
    text = text if len(text) <= 500 else text[:497] + "..."
    where, tb = "", exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            where = f" ({filename} line {tb.tb_lineno}, in {tb.tb_frame.f_code.co_name})"
        tb = tb.tb_next
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"
