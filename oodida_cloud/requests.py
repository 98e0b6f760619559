"""The one path every message to the cloud takes before its handler runs.

A ``Route`` declares a task: its name, the verb its log lines use, the message model, what the
gate logs of it, whose assignment or deployment it names (``Owned``, ``Claimable``) and the
handler. The ``Dispatcher`` then, once for every task:

1. takes the task's arguments apart and decodes them at ``wire.decode``; a malformed message
   gets its one log line (``guard.log_rejected``) and ``Outcome.REJECTED``;
2. admits a library request through the gate (its user's token): refused, it is answered on its
   reply stream and ``REJECTED``;
3. when the request names an assignment or a deployment, looks it up once and checks that it is
   the user's: another user's is refused, one that must exist and does not is ``UNKNOWN``;
4. hands the handler the decoded, authenticated request (and what it names).

Handlers keep only their own logic and return an ``Outcome``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from oodida_core.messaging.guard import log_rejected, readable_part, single_argument
from oodida_core.protocol.errors import MessageError
from oodida_core.protocol.wire import Request, Wire, decode

from .gate import Gate
from .outcomes import Outcome

log = logging.getLogger("oodida.cloud")

M = TypeVar("M", bound=Wire)
R = TypeVar("R", bound=Request)
T = TypeVar("T")

Arguments = Callable[[str, tuple[Any, ...], Mapping[str, Any]], object]


def one_message(task: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> object:
    """The one message a library request's task takes (MessageError for anything else)."""
    return single_argument(task, args, kwargs)


def answers_and_keywords(task: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> object:
    """A chord callback's arguments: the gathered answers (if any) and keywords."""
    if len(args) > 1:
        raise MessageError(f"{task} takes the answers and keywords only")
    return {**kwargs, "answers": args[0]} if args else dict(kwargs)


@dataclass(frozen=True)
class Owned(Generic[R, T]):
    """The request names a ``noun`` that must exist and be its user's (cancel, purge): ``find``
    looks it up (None: there is none), ``owner`` says whose it is."""

    noun: str
    target: Callable[[R], str]
    find: Callable[[R], T | None]
    owner: Callable[[T], str]


@dataclass(frozen=True)
class Claimable(Generic[R, T]):
    """The request names a ``noun`` that is its user's or nobody's yet (start, deploy): ``find``
    looks it up, or claims it, and ``owner`` says whose it is (None: nobody's)."""

    noun: str
    target: Callable[[R], str]
    find: Callable[[R], T]
    owner: Callable[[T], str | None]


@dataclass(frozen=True)
class Route:
    """One task of the cloud: build it with ``Route.plain``, ``Route.owned`` or ``Route.claiming``."""

    task: str
    verb: str  # "start": "rejected a start message", "start by 'bob' refused"
    model: type[Wire]
    handle: Callable[..., Outcome]
    action: Callable[[Any], str] | None = None  # what the gate logs; None: no token to check
    ownership: Owned[Any, Any] | Claimable[Any, Any] | None = None
    arguments: Arguments = one_message

    @property
    def what(self) -> str:
        """The message as a rejection's log line names it: "a start", "an authenticate"."""
        return f"{'an' if self.verb[:1] in 'aeiou' else 'a'} {self.verb}"

    @classmethod
    def internal(
        cls, task: str, verb: str, model: type[M], handle: Callable[[M], Outcome], arguments: Arguments
    ) -> Route:
        """A task the cloud sends itself (no user, no token): decoded, then handled."""
        return cls(task, verb, model, handle, arguments=arguments)

    @classmethod
    def plain(
        cls, task: str, verb: str, model: type[R], action: Callable[[R], str], handle: Callable[[R], Outcome]
    ) -> Route:
        """A library request that names nothing of anyone's: decoded, authenticated, handled."""
        return cls(task, verb, model, handle, action)

    @classmethod
    def owned(
        cls,
        task: str,
        verb: str,
        model: type[R],
        action: Callable[[R], str],
        ownership: Owned[R, T],
        handle: Callable[[R, T], Outcome],
    ) -> Route:
        """A library request on something of its user's: the handler gets what it names."""
        return cls(task, verb, model, handle, action, ownership)

    @classmethod
    def claiming(
        cls,
        task: str,
        verb: str,
        model: type[R],
        action: Callable[[R], str],
        ownership: Claimable[R, T],
        handle: Callable[[R, T], Outcome],
    ) -> Route:
        """A library request on something of its user's or nobody's (the handler may create it)."""
        return cls(task, verb, model, handle, action, ownership)


class Dispatcher:
    """Decodes, logs a rejection, authenticates and checks ownership once, for every route."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def __call__(
        self, route: Route, args: tuple[Any, ...], kwargs: Mapping[str, Any], task_id: str | None = None
    ) -> Outcome:
        try:
            message = decode(route.model, route.arguments(route.task, args, kwargs))
        except MessageError as exc:
            log_rejected(log, route.what, readable_part(args, kwargs), exc, task_id)
            return Outcome.REJECTED
        if route.action is None:
            return route.handle(message)
        if not isinstance(message, Request):
            raise TypeError(f"{route.task}: a request with a token must be a wire.Request")
        if not self.gate.admit(message, route.action(message)):
            return Outcome.REJECTED  # before anything is validated, looked up or stored
        if route.ownership is None:
            return route.handle(message)
        found, refused = self._check_owner(route.verb, route.ownership, message)
        return refused if refused is not None else route.handle(message, found)

    def _check_owner(
        self, verb: str, ownership: Owned[Any, Any] | Claimable[Any, Any], request: Request
    ) -> tuple[Any, Outcome | None]:
        """What the request names, and None; or the refusal (logged and answered)."""
        found = ownership.find(request)
        target, user, noun = ownership.target(request), request.user, ownership.noun
        if isinstance(ownership, Owned):
            if found is not None and ownership.owner(found) == user:
                return found, None
            log.warning("%s of %s by %r refused: no such %s of that user", verb, target, user, noun)
            self.gate.refuse(request, "unknown", f"no {noun} {target!r} of user {user!r}")
            return None, Outcome.UNKNOWN
        owner = ownership.owner(found)
        if owner is None or owner == user:
            return found, None
        log.warning("%s %s: %s by %r refused, it belongs to another user", noun, target, verb, user)
        self.gate.refuse(request, "refused", f"{noun} id {target} is taken")
        return None, Outcome.REJECTED
