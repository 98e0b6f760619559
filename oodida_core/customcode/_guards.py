"""The guards of the sandbox's restricted interpreter (they run in the sandbox process).

``_Guards`` builds the namespace custom code runs in: safe builtins, and the hooks
RestrictedPython's compiled code calls for attribute access, item reads and writes, in-place
operators, class creation and imports. Every value handed to the code is vetted: allowed modules
become read-only proxies, numpy.ndarray a checked stand-in, and anything that can build code or
classes, reach the interpreter's internals or files is refused. The tables of what is refused
live in ``oodida_core.customcode.check``, shared with the static check.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import copy
import functools
import operator
import sys
import typing
from collections import deque
from collections.abc import Callable
from types import CodeType, FrameType, FunctionType, MethodType, ModuleType, SimpleNamespace, TracebackType
from typing import Any

from oodida_core.customcode import _stand_ins as stand_ins
from oodida_core.customcode.check import (
    ARRAY_REFUSED,
    NUMPY_SUBMODULES,
    REFUSED_ATTRIBUTES,
    UNAVAILABLE_BUILTINS,
    USER_MODULE_NAME,
    _words,
    attribute_refusal,
    module_refusal,
)
from oodida_core.customcode.rules import LITERAL_FORMAT

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


def _apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A call written with ``*args`` or ``**kwargs`` (RestrictedPython routes it here)."""
    return function(*args, **kwargs)


class _ModuleProxy(ModuleType):
    """What custom code gets for a module: its public attributes, vetted; no ``__name__`` (so
    ``from m import x`` cannot fall back to ``sys.modules``)."""

    def __init__(self, real: ModuleType, runtime: _Guards) -> None:
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
    _runtime: _Guards

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


def _user_class(cls: type) -> bool:
    return cls.__dict__.get("__module__") == USER_MODULE_NAME


def _unavailable(name: str, why: str) -> Callable[..., Any]:
    def stub(*args: Any, **kwargs: Any) -> Any:
        raise NameError(f"{name}() is not available in custom code: {why}")

    return stub


class _Guards:  # pragma: no cover - runs in the sandbox process
    """The restricted namespace and its guards; ``template`` is copied for every call."""

    def __init__(self, allowed: frozenset[str]) -> None:
        import importlib

        from RestrictedPython import safe_builtins
        from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

        self.allowed = allowed
        self.proxies: dict[str, _ModuleProxy] = {}
        extra = ["collections.abc", "json.decoder", "json.encoder", "_strptime", *NUMPY_SUBMODULES]
        for name in [*sorted(allowed), *extra]:
            if name.split(".")[0] in allowed or name == "_strptime":
                with contextlib.suppress(Exception):
                    importlib.import_module(name)
        sys.modules.setdefault(USER_MODULE_NAME, ModuleType(USER_MODULE_NAME))  # dataclasses looks it up
        self.np: Any = sys.modules.get("numpy")
        self.guarded: dict[type, type] = {}
        self.substitutes: dict[int, Any] = {}  # id of a library function -> its checked stand-in
        self.array_types: tuple[type, ...] = ()
        if self.np is not None:
            for name, real in [("ndarray", self.np.ndarray), ("chararray", self.np.char.chararray)]:
                guard = _GuardMeta(name, (), {"_real": real, "_runtime": self})
                guard._factory = staticmethod(functools.partial(self._new_array, real))
                self.guarded[real] = guard
            self.array_types = (self.np.ndarray, self.np.generic)
            numpy_modules = [sys.modules[n] for n in ["numpy", *sorted(NUMPY_SUBMODULES)] if n in sys.modules]
            stand_ins.freeze_shared_arrays(numpy_modules, self.np.ndarray)
        stand_ins.refuse_forward_refs()
        import dataclasses

        makers: list[tuple[Any, Callable[[Any], Any]]] = [
            (dataclasses.dataclass, stand_ins.checked_dataclass),
            (functools.total_ordering, stand_ins.checked_total_ordering),
            (typing.TypeVar, stand_ins.checked_type_var),
        ]
        for real_function, make in makers:
            self.substitutes[id(real_function)] = make(real_function)
        self.tester = type(getattr(self.np, "test", None))
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
            "_apply_": _apply,  # f(*args, **kwargs): the callee's own guards still apply
            "_inplace_item_": self.inplace_item, "_inplace_attr_": self.inplace_attr,
        }  # fmt: skip

    def vet(self, value: Any, where: str) -> Any:
        """A value custom code is about to get: modules become proxies, unsafe things refused."""
        kind = type(value)
        if kind in _PLAIN or kind is _ModuleProxy:
            return value
        substitute = self.substitutes.get(id(value))
        if substitute is not None:
            return substitute
        if stand_ins.is_str_formatter(value):
            raise AttributeError(f"{where} is not available in custom code: {LITERAL_FORMAT}")
        if kind is self.tester and kind is not type(None):
            raise AttributeError(f"{where} is not available in custom code: it runs numpy's test suite")
        if isinstance(value, ModuleType):
            why = module_refusal(value.__name__, self.allowed)
            if why is not None:
                raise AttributeError(why)
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
        elif name == "register" and isinstance(obj, abc.ABCMeta) and not _user_class(obj):
            why = "it changes the registry of a library class, shared with the next call"
        if why is not None:
            raise AttributeError(f"{name!r} is not available in custom code: {why}")
        if name == "register" and stand_ins.is_single_dispatch(obj):
            return stand_ins.checked_register(obj)
        try:
            value = getattr(obj, name)
        except AttributeError:
            if default:
                return default[0]
            raise
        return self.vet(value, name)

    def _is_array(self, obj: Any) -> bool:
        """numpy arrays and scalars, and their classes (scalars have ``dump`` and ``tofile`` too)."""
        if self.np is None:
            return False
        kinds = self.array_types
        return isinstance(obj, (*kinds, _GuardMeta)) or (isinstance(obj, type) and issubclass(obj, kinds))

    def hasattr_(self, obj: Any, name: str) -> bool:
        try:
            self.getattr_(obj, name)
        except AttributeError:
            return False
        return True

    def getitem_(self, obj: Any, key: Any) -> Any:
        if (
            getattr(obj, "__module__", None) == "typing"
            and obj is not typing.Literal
            and stand_ins.has_string(key if isinstance(key, tuple) else (key,))
        ):
            raise TypeError(f"{obj!r}[...] with a string: {stand_ins.FORWARD_REF}")
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

    def _new_array(self, real: type, shape: Any, *args: Any, **kwargs: Any) -> Any:
        """``np.ndarray(shape, dtype, order=...)`` or ``np.char.chararray(shape, itemsize, unicode,
        order=...)``: never over a buffer, with an offset or with strides."""
        if len(args) > 2 or {"buffer", "offset", "strides"} & set(kwargs):
            name = real.__name__
            raise TypeError(f"np.{name}(buffer=..., offset=..., strides=...) is not available; use np.array")
        return real(shape, *args, **kwargs)
