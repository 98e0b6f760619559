"""The project's exceptions. Every error a user can meet is one of these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from oodida_core.protocol.text import shorten


class OodidaError(Exception):
    """Base class: broker unreachable, unknown assignment, timeout, refused request."""


@dataclass(frozen=True)
class SpecIssue:
    """One thing wrong with an assignment spec: the field, the value found, the rule broken."""

    field: str
    value: object
    rule: str

    def __str__(self) -> str:
        shown = _short_repr(self.value)
        return f"{self.field}: {self.rule} (got {shown})"


_MISSING = object()


def _short_repr(value: object) -> str:
    if value is _MISSING:
        return "nothing"
    text = repr(value)
    return shorten(text, 80)


class SpecError(OodidaError, ValueError):
    """An assignment spec broke one or more rules; `issues` lists every one of them."""

    def __init__(self, issues: Sequence[SpecIssue]) -> None:
        self.issues: tuple[SpecIssue, ...] = tuple(issues)
        count = len(self.issues)
        head = f"the assignment spec has {count} problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  - {i}" for i in self.issues)]))

    @classmethod
    def single(cls, field: str, value: object, rule: str) -> SpecError:
        return cls([SpecIssue(field, value, rule)])

    @property
    def fields(self) -> list[str]:
        return [i.field for i in self.issues]


class CustomCodeError(OodidaError):
    """A custom module is unusable: what is wrong with it, with line numbers where known."""


class BadArgument(OodidaError, ValueError):
    """A library call got an argument it cannot use: a broker URL, a timeout, client ids."""


class MessageError(OodidaError):
    """A wire message could not be decoded: wrong types, missing or unknown fields."""


class AuthError(OodidaError, PermissionError):
    """The cloud refused a request: unknown user, wrong or missing token, or not yours."""


class AssignmentTimeout(OodidaError, TimeoutError):
    """Waiting for an assignment took longer than the caller allowed."""


class UnknownAssignment(OodidaError, KeyError):
    """No assignment with that id exists for this user."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else "unknown assignment"


MISSING = _MISSING


class QuotaError(OodidaError):
    """A request went past a limit: one the operator set per user (an ``OODIDA_*`` setting) or
    Redis's ``maxmemory``. The message names the limit and its value; ``limit`` is its name."""

    def __init__(self, message: str, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit
