"""Checked stand-ins for the few library functions that build code or change shared state (they
run in the sandbox process; ``_sandbox_guards`` hands them out in place of the real ones).

The routes they close, found by ``scripts/audit_allowed.py`` (see ``docs/ALLOWED_AUDIT.md``):

* ``typing`` turns strings into ``ForwardRef`` objects, which compile the string and later
  ``eval()`` it with whatever globals they are given (``get_type_hints``, reached through
  ``functools.singledispatch(f).register(g)``). ``refuse_forward_refs`` makes ``ForwardRef``
  refuse to be built or evaluated while custom code is on the stack, whatever the route.
* ``dataclasses.dataclass`` ``exec()``s methods whose text holds the field names: the stand-in
  takes only classes the module defined, whose field names are plain identifiers (a
  ``TypedDict`` made from a dict can have any string as a key).
* ``functools.total_ordering`` and ``dataclass`` set attributes on their class: on a library
  class that would change it for every later call.
* ``functools.singledispatch``'s ``register(g)`` reads g's annotations: strings are refused.
* numpy's shared arrays (``Polynomial.domain``, ``polyx``, ``np.ma.masked``...) are made
  read-only, so that no call changes them for the next.
"""

from __future__ import annotations

import functools
import keyword
import sys
import typing
from collections.abc import Callable, Iterator
from types import FrameType, ModuleType
from typing import Any

from oodida_core.customcode.rules import STRING_ANNOTATION, USER_MODULE_NAME


def custom_code_running(frame: FrameType | None = None) -> bool:
    """Whether a frame of custom code (the module, or what dataclasses made for it) is on the stack."""
    frame = frame or sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == USER_MODULE_NAME:
            return True
        frame = frame.f_back
    return False


def _defined_by_custom_code(cls: Any) -> bool:
    return isinstance(cls, type) and cls.__dict__.get("__module__") == USER_MODULE_NAME


FORWARD_REF = (
    "typing evaluates types written as strings with eval(), so custom code cannot use them; "
    "write the type as a plain name"
)


def refuse_forward_refs() -> None:
    """Make ``typing.ForwardRef`` refuse to be built or evaluated while custom code runs (once
    per process; typing's own forward references, built at import, are unaffected)."""
    ref: Any = typing.ForwardRef
    if getattr(ref, "_oodida_guarded", False):
        return
    build, evaluate = ref.__init__, ref._evaluate

    @functools.wraps(build)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if custom_code_running(sys._getframe(1)):
            raise TypeError(FORWARD_REF)
        build(self, *args, **kwargs)

    @functools.wraps(evaluate)
    def _evaluate(self: Any, *args: Any, **kwargs: Any) -> Any:
        if custom_code_running(sys._getframe(1)):
            raise TypeError(FORWARD_REF)
        return evaluate(self, *args, **kwargs)

    ref.__init__, ref._evaluate, ref._oodida_guarded = init, _evaluate, True


def _field_problem(cls: type) -> str | None:
    import dataclasses

    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, value in klass.__dict__.items():
            # dataclasses pastes a Field's name into the text it exec()s: a Field subclass can
            # answer anything there (a property that ignores the name dataclasses sets)
            if isinstance(value, dataclasses.Field) and type(value) is not dataclasses.Field:
                return f"its field {name!r} is a {type(value).__name__}, not a dataclasses.Field"
            if isinstance(value, type) and issubclass(value, dataclasses.Field):
                return f"{name!r} is a subclass of dataclasses.Field"
        if isinstance(klass, type) and issubclass(klass, dataclasses.Field):
            return "it is a subclass of dataclasses.Field"
        names = klass.__dict__.get("__annotations__", {})  # noqa: RUF063 - the dict dataclasses reads
        for name in names if isinstance(names, dict) else ["?"]:
            if not (isinstance(name, str) and name.isidentifier()) or keyword.iskeyword(name):
                return f"its field {name!r} is not a plain name"
            if name.startswith("_"):
                return f"its field {name!r} starts with '_'"
    return None


def checked_dataclass(real: Callable[..., Any]) -> Callable[..., Any]:
    """``dataclasses.dataclass`` for classes the module defined, with plain field names."""

    def dataclass(cls: Any = None, /, **options: Any) -> Any:
        def wrap(target: Any) -> Any:
            if not _defined_by_custom_code(target):
                raise TypeError("dataclass() takes only classes defined in the custom module")
            why = _field_problem(target)
            if why is not None:
                raise TypeError(f"dataclass() cannot make {target.__name__} a dataclass: {why}")
            return real(target, **options)

        return wrap if cls is None else wrap(cls)

    return dataclass


def checked_total_ordering(real: Callable[[type], type]) -> Callable[[type], type]:
    def total_ordering(cls: type) -> type:
        if not _defined_by_custom_code(cls):
            raise TypeError("total_ordering() takes only classes defined in the custom module")
        return real(cls)

    return total_ordering


def checked_type_var(real: Callable[..., Any]) -> Callable[..., Any]:
    def TypeVar(name: str, *constraints: Any, **options: Any) -> Any:
        if any(has_string(c) for c in [*constraints, options.get("bound")]):
            raise TypeError(FORWARD_REF)
        return real(name, *constraints, **options)

    return TypeVar


def has_string(value: Any, depth: int = 0) -> bool:
    """Whether a type (or an annotation) holds a string or a forward reference anywhere."""
    if isinstance(value, (str, typing.ForwardRef)):
        return True
    args = getattr(value, "__args__", None) if depth < 20 and not isinstance(value, ModuleType) else None
    return isinstance(args, tuple) and any(has_string(a, depth + 1) for a in args)


def is_single_dispatch(obj: Any) -> bool:
    return isinstance(obj, functools.singledispatchmethod) or (
        callable(obj) and hasattr(obj, "registry") and hasattr(obj, "dispatch") and hasattr(obj, "register")
    )


def checked_register(target: Any) -> Callable[..., Any]:
    """``register`` of a single-dispatch function or method, refusing string annotations."""
    real = target.register

    def register(cls: Any, func: Any = None) -> Any:
        for candidate in (cls, func):
            notes = getattr(candidate, "__annotations__", None) if callable(candidate) else None
            strings = isinstance(notes, dict) and any(has_string(v) for v in notes.values())
            if strings and not isinstance(candidate, type):
                name = getattr(candidate, "__name__", "?")
                raise TypeError(f"register() of {name}: {STRING_ANNOTATION}")
        return real(cls) if func is None else real(cls, func)

    return register


def shared_arrays(modules: list[ModuleType], ndarray: type) -> Iterator[Any]:
    """numpy arrays stored in the modules and in their classes (shared by every call)."""
    for module in modules:
        for name, value in list(vars(module).items()):
            if name.startswith("__"):
                continue
            if isinstance(value, ndarray):
                yield value
            elif isinstance(value, type):
                yield from (v for v in list(vars(value).values()) if isinstance(v, ndarray))


def freeze_shared_arrays(modules: list[ModuleType], ndarray: type) -> int:
    """Make numpy's shared arrays read-only; returns how many there were."""
    count = 0
    for array in shared_arrays(modules, ndarray):
        try:
            array.setflags(write=False)
        except ValueError:
            continue
        count += 1
    return count


_FORMAT_NAMES = ("format", "format_map")


def is_str_formatter(value: Any) -> bool:
    """``str.format``/``format_map`` in any form: unbound, bound to a str (or a subclass, or a
    numpy string), or ``collections.UserString``'s."""
    from collections import UserString

    if any(value is f for f in (str.format, str.format_map, UserString.format)):
        return True
    name, owner = getattr(value, "__name__", None), getattr(value, "__self__", None)
    if name not in _FORMAT_NAMES:
        return False
    func = getattr(value, "__func__", None)
    return isinstance(owner, str) or (owner is not None and func is UserString.format)
