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
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import json
import math
import operator
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
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import CodeType, FrameType, FunctionType, MethodType, ModuleType, SimpleNamespace, TracebackType
from typing import Any

from .customcode import (
    ARRAY_REFUSED,
    ENTRY_POINT,
    NUMPY_SUBMODULES,
    REFUSED_ATTRIBUTES,
    UNAVAILABLE_BUILTINS,
    USER_MODULE_NAME,
    CheckedModule,
    CodePolicy,
    Role,
    _words,
    attribute_refusal,
    check_source,
    code_version,
    describe_input,
    encode_result,
    module_refusal,
    sample_inputs,
)
from .errors import CustomCodeError

MiB = 1024 * 1024
RECURSION_LIMIT = 1000
PRINT_LIMIT = 4096  # characters of print() output kept per call
_CACHE = 32  # compiled modules kept per child
_BOOT = "import sys; sys.path.append({root!r}); import oodida_core.sandbox as s; s._child_main(sys.argv[1:])"
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


# --- the child process ----------------------------------------------------------------------


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


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "@=": operator.imatmul,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand, "^=": operator.ixor,
    "|=": operator.ior,
}  # fmt: skip
_PLAIN = {int, float, str, bool, type(None), list, dict, tuple, bytes}
_DANGEROUS_TYPES = {FunctionType, CodeType, FrameType, TracebackType, MethodType, SimpleNamespace}
_EXTRA_BUILTINS = _words(
    "all any ascii bin bytearray bytes classmethod dict enumerate filter format frozenset iter list "
    "map max min next object property reversed set sorted staticmethod sum super tuple zip "
    "NotImplemented RecursionError StopAsyncIteration TimeoutError ModuleNotFoundError"
)


class _ModuleProxy(ModuleType):
    """What custom code gets for a module: its public attributes, vetted; no ``__name__`` (so
    ``from m import x`` cannot fall back to ``sys.modules``)."""

    def __init__(self, real: ModuleType, runtime: _Runtime) -> None:
        super().__init__(real.__name__)
        self.__dict__.clear()
        self.__dict__["_oodida_"] = (real, runtime)

    def __getattr__(self, name: str) -> Any:
        real, runtime = self.__dict__["_oodida_"]
        why = attribute_refusal(real.__name__, name)
        if why is not None:
            raise AttributeError(why)
        value = runtime.vet(getattr(real, name), f"{real.__name__}.{name}")
        if isinstance(value, (dict, list, set)):  # shared state: each call gets its own copy
            return copy.deepcopy(value)
        if not isinstance(value, _ModuleProxy):  # which modules are allowed may change per call
            self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"<module {self.__dict__['_oodida_'][0].__name__!r} (restricted)>"


class _GuardMeta(type):
    """A stand-in for a class whose constructor is unsafe (numpy.ndarray with a raw buffer):
    ``isinstance`` works, calling goes through a checked factory, attributes are guarded."""

    _real: type
    _factory: Callable[..., Any]
    _runtime: _Runtime

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, cls._real)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls._real)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._factory(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        return cls._runtime.getattr_(cls._real, name)

    def __repr__(cls) -> str:
        return repr(cls._real)


class _ItemWriter:
    """``_write_(array)``: item assignment only (no ``a.dtype = ...``, ``a.strides = ...``)."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        self._target = target

    def __setitem__(self, key: Any, value: Any) -> None:
        self._target[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._target[key]

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "_target":
            raise TypeError("custom code cannot change attributes of numpy arrays")
        object.__setattr__(self, name, value)


class _Printer:
    """RestrictedPython's print collector with a budget shared by the whole call."""

    def __init__(self, parts: list[str]) -> None:
        self._parts = parts

    def write(self, text: str) -> None:
        room = PRINT_LIMIT - sum(map(len, self._parts))
        if room > 0:
            self._parts.append(text[:room] + ("\n[output truncated]" if len(text) > room else ""))

    def __call__(self) -> str:
        return "".join(self._parts)

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        if kwargs.get("file") is None:
            kwargs["file"] = self
        print(*objects, **kwargs)


def _unavailable(name: str, why: str) -> Callable[..., Any]:
    def stub(*args: Any, **kwargs: Any) -> Any:
        raise NameError(f"{name}() is not available in custom code: {why}")

    return stub


class _Runtime:  # pragma: no cover - runs in the sandbox process
    """The restricted interpreter inside a sandbox process."""

    def __init__(self, allowed: frozenset[str], memory_limit: int) -> None:
        import importlib

        from RestrictedPython import safe_builtins
        from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

        self.allowed, self.memory_limit = allowed, memory_limit
        self.codes: OrderedDict[str, CodeType] = OrderedDict()
        self.proxies: dict[str, _ModuleProxy] = {}
        self.imported: set[str] = set()
        self.policies: dict[int, CodePolicy] = {}
        extra = ["collections.abc", "json.decoder", "json.encoder", "_strptime", *NUMPY_SUBMODULES]
        for name in [*sorted(allowed), *extra]:
            if name.split(".")[0] in allowed or name == "_strptime":
                with contextlib.suppress(Exception):
                    importlib.import_module(name)
        sys.modules.setdefault(USER_MODULE_NAME, ModuleType(USER_MODULE_NAME))  # dataclasses looks it up
        self.np: Any = sys.modules.get("numpy")
        self.guarded: dict[type, type] = {}
        if self.np is not None:
            ndarray = _GuardMeta("ndarray", (), {"_real": self.np.ndarray, "_runtime": self})
            ndarray._factory = staticmethod(self._new_array)
            self.guarded[self.np.ndarray] = ndarray
            self.np_err = self.np.geterr()
        self.dangerous = {id(getattr(builtins, n)) for n in [*UNAVAILABLE_BUILTINS, "__import__", "getattr"]}
        box = {k: v for k, v in safe_builtins.items() if k not in {"setattr", "delattr", "_getattr_"}}
        box.update({n: getattr(builtins, n) for n in _EXTRA_BUILTINS})
        box.update({n: _unavailable(n, why) for n, why in UNAVAILABLE_BUILTINS.items()})
        box.update(getattr=self.getattr_, hasattr=self.hasattr_, type=self.type_, __import__=self.import_)
        box["__build_class__"] = self.build_class
        iter_unpack = guarded_iter_unpack_sequence
        self.template: dict[str, Any] = {
            "__builtins__": box, "__name__": USER_MODULE_NAME, "__metaclass__": type,
            "_getattr_": self.getattr_, "_getitem_": self.getitem_, "_getiter_": iter, "_write_": self.write_,
            "_iter_unpack_sequence_": lambda it, spec, _getiter_=iter: iter_unpack(it, spec, iter),
            "_unpack_sequence_": lambda it, spec, _getiter_=iter: guarded_unpack_sequence(it, spec, iter),
            "_inplacevar_": lambda op, x, y: _INPLACE[op](x, y),
            "_inplace_item_": self.inplace_item, "_inplace_attr_": self.inplace_attr,
        }  # fmt: skip

    # -- the guards --

    def vet(self, value: Any, where: str) -> Any:
        """A value custom code is about to get: modules become proxies, unsafe things refused."""
        kind = type(value)
        if kind in _PLAIN or kind is _ModuleProxy:
            return value
        if isinstance(value, ModuleType):
            why = module_refusal(value.__name__, self.allowed)
            if why is not None:
                raise AttributeError(why)
            self.imported.add(value.__name__.split(".")[0])  # its global state is reset after the call
            proxy = self.proxies.get(value.__name__)
            if proxy is None:
                proxy = self.proxies[value.__name__] = _ModuleProxy(value, self)
            return proxy
        if isinstance(value, type):
            guard = self.guarded.get(value)
            if guard is not None:
                return guard
            if issubclass(value, (type, ModuleType)) or value in _DANGEROUS_TYPES:
                raise AttributeError(f"{where} is not available in custom code: it can build code or classes")
        elif id(value) in self.dangerous:
            raise AttributeError(f"{where} is not available in custom code")
        return value

    def getattr_(self, obj: Any, name: str, *default: Any) -> Any:
        if type(name) is not str:
            raise TypeError("attribute names must be strings")
        why = REFUSED_ATTRIBUTES.get(name)
        if name.startswith("_"):
            why = "names starting with '_' are internal"
        elif name in ARRAY_REFUSED and self._is_array(obj):
            why = ARRAY_REFUSED[name]
        elif name == "format" and (isinstance(obj, str) or obj is str):
            why = "use an f-string or % formatting"
        if why is not None:
            raise AttributeError(f"{name!r} is not available in custom code: {why}")
        try:
            value = getattr(obj, name)
        except AttributeError:
            if default:
                return default[0]
            raise
        return self.vet(value, name)

    def _is_array(self, obj: Any) -> bool:
        if self.np is None:
            return False
        real = self.np.ndarray
        return isinstance(obj, (real, _GuardMeta)) or (isinstance(obj, type) and issubclass(obj, real))

    def hasattr_(self, obj: Any, name: str) -> bool:
        try:
            self.getattr_(obj, name)
        except AttributeError:
            return False
        return True

    def getitem_(self, obj: Any, key: Any) -> Any:
        value = obj[key]
        return value if type(value) in _PLAIN else self.vet(value, "item")

    def type_(self, obj: Any, *rest: Any) -> Any:
        if rest:
            raise TypeError("type() takes one argument in custom code")
        return self.vet(type(obj), "type(...)")

    def write_(self, obj: Any) -> Any:
        if self.np is not None and isinstance(obj, self.np.ndarray):
            return _ItemWriter(obj)
        if isinstance(obj, (dict, list, set, bytearray, deque)):
            return obj
        if getattr(type(obj), "__module__", None) == USER_MODULE_NAME:  # classes the code defined
            return obj
        raise TypeError(f"custom code cannot change {type(obj).__name__} objects it did not create")

    def inplace_item(self, obj: Any, key: Any, op: str, value: Any) -> None:
        self.write_(obj)[key] = _INPLACE[op](self.getitem_(obj, key), value)

    def inplace_attr(self, obj: Any, name: str, op: str, value: Any) -> None:
        target = self.write_(obj)
        if isinstance(target, (_ItemWriter, dict, list, set, bytearray, deque)):
            raise TypeError(f"custom code cannot change attributes of {type(obj).__name__} objects")
        setattr(target, name, _INPLACE[op](self.getattr_(obj, name), value))

    def build_class(self, func: Any, name: str, *bases: Any, **kwargs: Any) -> Any:
        if any(isinstance(b, _GuardMeta) for b in bases) or kwargs.get("metaclass", type) is not type:
            raise TypeError(f"class {name}: subclassing numpy arrays and metaclasses are not available")
        return builtins.__build_class__(func, name, *bases, **kwargs)

    def import_(self, name: str, _g: Any = None, _l: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level:
            raise ImportError("relative imports are not available in custom code")
        internal = sys.modules.get(name) if name.startswith("_") or "._" in name else None
        if internal is not None:  # numpy's and datetime's C code importing their own internals:
            return internal  # custom code cannot ask for these names (they are refused statically)
        why = module_refusal(name, self.allowed)
        if why is not None:
            raise ImportError(why)
        module = sys.modules.get(name)
        if module is None:  # sandbox processes import what is allowed when they start, not later
            raise ImportError(f"module {name} is not installed, or was not allowed when the sandbox started")
        if not fromlist:
            return self.vet(sys.modules[name.split(".")[0]], name)
        proxy = self.vet(module, name)
        for item in fromlist:
            try:
                getattr(proxy, item)
            except AttributeError as exc:
                raise ImportError(f"cannot import {item} from {name}: {exc}") from None
        return proxy

    def _new_array(
        self,
        shape: Any,
        dtype: Any = float,
        buffer: Any = None,
        offset: int = 0,
        strides: Any = None,
        order: Any = None,
    ) -> Any:
        if buffer is not None or offset or strides is not None:
            raise TypeError("np.ndarray(buffer=..., strides=...) is not available; use np.array or np.zeros")
        return self.np.ndarray(shape, dtype, order=order or "C")

    # -- serving --

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
            while len(self.codes) > _CACHE:
                self.codes.popitem(last=False)
        if memory_limit != self.memory_limit:
            import resource

            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            resource.setrlimit(resource.RLIMIT_AS, (min(memory_limit, hard), hard))
            self.memory_limit = memory_limit
        return self._run(code, filename, x, max_result)

    def _run(self, code: CodeType, filename: str, x: Any, max_result: int) -> bytes:
        printed: list[str] = []
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
        out = json.dumps("".join(printed)).encode() if printed else b'""'
        return b'{"ok":' + text.encode() + b',"out":' + out + b"}"

    def _reset(self) -> None:
        """Undo global state the call may have changed in the modules it imported."""
        if "random" in self.imported:
            import random

            random.seed()
        if "decimal" in self.imported:
            import decimal

            decimal.setcontext(decimal.Context())
        if "numpy" in self.imported and self.np is not None:
            self.np.seterr(**self.np_err)
            self.np.random.seed(self.np.frombuffer(os.urandom(16), dtype=self.np.uint32))


def _describe(exc: BaseException, filename: str) -> str:  # pragma: no cover - in the sandbox
    try:
        text = str(exc)
    except Exception:
        text = "(the message could not be shown)"
    text = text if len(text) <= 500 else text[:497] + "..."
    where, tb = "", exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            where = f" ({filename} line {tb.tb_lineno}, in {tb.tb_frame.f_code.co_name})"
        tb = tb.tb_next
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"
