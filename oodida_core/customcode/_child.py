"""The restricted interpreter of a call process: compile, run, reply.

The fork server (``oodida_core.customcode.jail.zygote``) builds one ``Runtime`` (importing every allowed
module) and forks a call process per call, which confines itself and calls ``Runtime.call``
once: it compiles the module with RestrictedPython, runs ``custom_code(x)`` in a copy of the
guarded namespace (``_sandbox_guards``), checks the result and returns the JSON reply. The
process then exits, so nothing a call leaves behind (module state, caches, registrations)
reaches another. The parent imports only the constants below and re-checks every reply.
"""

from __future__ import annotations

import json
import os
from types import CodeType
from typing import Any

from oodida_core.customcode._guards import _Guards
from oodida_core.customcode.check import ENTRY_POINT, USER_MODULE_NAME, CodePolicy, check_source, code_version
from oodida_core.customcode.jail.reply import PRINT_LIMIT as PRINT_LIMIT
from oodida_core.customcode.results import encode_result
from oodida_core.protocol.errors import CustomCodeError
from oodida_core.protocol.text import shorten

RECURSION_LIMIT = 1000


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


class Runtime(_Guards):  # pragma: no cover - runs in the call process
    """The restricted interpreter inside a call process."""

    def __init__(self, allowed: frozenset[str]) -> None:
        super().__init__(allowed)  # imports everything allowed

    def warm_up(self) -> None:
        """Run a fixed module of ours through the whole path once (compile, run, encode), in a
        call process still waiting for its request: the pages a call writes (reference counts
        of the guards, the compiler's, the encoder's) are copied from the fork server now, off
        the call's path, instead of one page fault at a time during it. No user's code or data
        is involved, and nothing of it is kept."""
        source = (
            "import math\n\ndef custom_code(x):\n    return {'n': len(x), 'mean': math.fsum(x) / len(x)}\n"
        )
        request = {
            "op": "run", "version": code_version(source), "filename": "warm-up.py", "source": source,
            "x": [float(i) for i in range(100)], "max_result_bytes": 1 << 20, "allowed": sorted(self.allowed),
        }  # fmt: skip
        allowed = self.allowed
        try:
            self.call(request, None)
        finally:
            self.allowed = allowed

    def call(self, request: dict[str, Any], hook: Any, *, raw_allowed: bool = False) -> bytes:
        """``request``: op (run, raw, environ), version, filename, source, x, max_result_bytes,
        allowed (may narrow the server's list). The JSON reply the parent re-checks."""
        op = request["op"]
        if op == "environ":
            return json.dumps({"ok": dict(os.environ), "out": ""}).encode()
        version, filename, source = request["version"], request["filename"], request["source"]
        self.allowed = frozenset(request["allowed"]) & self.allowed
        try:
            if code_version(source) != version:
                raise CustomCodeError(f"{filename}: the source does not match its version {version}")
            if op == "raw" and raw_allowed:  # tests only: unrestricted Python, to test the jail alone
                code = compile(source, filename, "exec")
                namespace: dict[str, Any] = {"__name__": USER_MODULE_NAME, "__builtins__": __builtins__}
            else:
                code = check_source(source, filename, CodePolicy(allowed_imports=self.allowed)).code
                namespace = dict(self.template)
        except CustomCodeError as exc:
            return json.dumps({"error": str(exc), "kind": "rejected"}).encode()
        except SyntaxError as exc:
            return json.dumps({"error": f"SyntaxError: {exc}", "kind": "rejected"}).encode()
        if hook is not None:
            hook.own_code, hook.running = code, True
        return self._run(code, namespace, filename, request["x"], request["max_result_bytes"])

    def _run(
        self, code: CodeType, namespace: dict[str, Any], filename: str, x: Any, max_result: int
    ) -> bytes:
        printed = _Output()
        namespace["_print_"] = lambda _getattr_=None: _Printer(printed)
        error: dict[str, Any] | None = None
        try:
            exec(code, namespace)
            function = namespace.get(ENTRY_POINT)
            if not callable(function):
                raise CustomCodeError(f"{filename} does not define {ENTRY_POINT}(x)")
            value = function(x)
            text = encode_result(value, CodePolicy(max_result_bytes=max_result))
        except MemoryError:
            error = {"error": "out of memory", "kind": "memory"}
        except CustomCodeError as exc:
            error = {"error": str(exc), "kind": "result"}
        except BaseException as exc:  # whatever the code raised is reported
            error = {"error": _describe(exc, filename), "kind": "raised"}
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
    text = shorten(text, 500)
    where, tb = "", exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            where = f" ({filename} line {tb.tb_lineno}, in {tb.tb_frame.f_code.co_name})"
        tb = tb.tb_next
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"
