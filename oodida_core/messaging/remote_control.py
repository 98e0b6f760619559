"""Celery's remote control, as every OODIDA worker (cloud and edges) answers it: inspection only.

Flower lists a worker only when the worker answers its inspection broadcasts (``/api/workers``,
``inspect ping``), so every worker listens on the remote-control channel. On Redis 6.2 an ACL
user who may subscribe to a channel may also publish on it, so a vehicle's credentials can
publish remote-control commands: no worker may therefore obey one that changes it. A worker's
mailbox node (``InspectOnlyNode``, installed as the app's ``mailbox.node_cls`` by
``celery_app.py``) knows only the read-only commands that Flower and ``celery inspect`` use
(``INSPECTION``); any other command (``shutdown``, ``revoke``, ``pool_restart``,
``add_consumer``, ``rate_limit``, ``hello``, ...) from anyone, the operator included, is dropped
with one log line, and so is a message that is not a well-formed command.

What the commands answer never holds a task's arguments (only the labels Flower shows, which
carry no token: tasklabels.py), nor a password (Celery's ``stats`` and ``conf`` mask them); their
arguments are ignored, and a reply goes only to the reply exchange, never to a task queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

from celery.worker import state as worker_state
from celery.worker.control import Panel
from celery.worker.request import Request
from kombu import pidbox
from kombu.matcher import match

from oodida_core.messaging.guard import clean

log = logging.getLogger("oodida.remote_control")

Handler = Callable[..., Any]


def _active(state: Any, **_: Any) -> list[dict[str, Any]]:
    """Tasks running now (their labels, never their arguments)."""
    return [request.info(safe=True) for request in state.tset(worker_state.active_requests)]


def _reserved(state: Any, **_: Any) -> list[dict[str, Any]]:
    """Tasks taken but not yet running."""
    waiting = state.tset(worker_state.reserved_requests) - state.tset(worker_state.active_requests)
    return [request.info(safe=True) for request in waiting]


def _scheduled(state: Any, **_: Any) -> list[dict[str, Any]]:
    """Tasks held for their ETA (none in OODIDA: nothing sends one)."""
    found = []
    for waiting in state.consumer.timer.schedule.queue:
        args = getattr(waiting.entry, "args", None) or ()
        if args and isinstance(args[0], Request):
            eta = args[0].eta
            found.append(
                {
                    "eta": eta.isoformat() if eta else None,
                    "priority": waiting.priority,
                    "request": args[0].info(safe=True),
                }
            )
    return found


# What Flower's worker pages and ``/api/workers?refresh=1`` ask (flower/inspector.py), and ping.
INSPECTION: Mapping[str, Handler] = {
    "ping": Panel.data["ping"],
    "stats": Panel.data["stats"],
    "active_queues": Panel.data["active_queues"],
    "registered": Panel.data["registered"],
    "revoked": Panel.data["revoked"],
    "conf": Panel.data["conf"],
    "active": _active,
    "reserved": _reserved,
    "scheduled": _scheduled,
}


class InspectOnlyNode(pidbox.Node):
    """A worker's mailbox node that answers inspection and ignores every other command."""

    def __init__(
        self,
        hostname: str,
        state: Any = None,
        channel: Any = None,
        handlers: Mapping[str, Handler] | None = None,
        mailbox: Any = None,
    ) -> None:
        # Celery hands in every command it has (``Panel.data``): keep none of them.
        super().__init__(hostname, state, channel, dict(INSPECTION), mailbox=mailbox)
        self._reply_name = mailbox.reply_exchange.name if mailbox is not None else None

    def handle_message(self, body: object, message: Any = None) -> object:
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            log.warning("remote control: a message that is not a command dropped (%s)", clean(body))
            return None
        if not self._for_me(body):
            return None
        method: str = body["method"]
        if method not in INSPECTION:
            log.warning(
                "remote control %r ignored: workers answer only inspection (%s); stop a worker with a signal",
                clean(method),
                ", ".join(sorted(INSPECTION)),
            )
            return None
        reply_to = body.get("reply_to")
        if reply_to is not None and not self._reply_exchange(reply_to):
            log.warning(
                "remote control %r ignored: its reply would go elsewhere (%s)", method, clean(reply_to)
            )
            return None
        clock = message.headers.get("clock") if message is not None else None
        if isinstance(clock, int) and not isinstance(clock, bool) and 0 <= clock < 2**63:
            self.adjust_clock(clock)
        ticket = body.get("ticket")
        return self.dispatch(method, {}, reply_to, ticket if isinstance(ticket, str) else None)

    def _for_me(self, body: dict[str, Any]) -> bool:
        """Whether the command names this worker (or every worker)."""
        destination, pattern, matcher = body.get("destination"), body.get("pattern"), body.get("matcher")
        if destination:
            return isinstance(destination, (list, tuple)) and self.hostname in destination
        if pattern and matcher:
            try:
                return bool(match(cast(Any, self.hostname), pattern, matcher))
            except Exception:  # an unknown matcher, a bad pattern
                return False
        return True

    def _reply_exchange(self, reply_to: object) -> bool:
        """Whether ``reply_to`` names the mailbox's own reply exchange (not a task queue)."""
        return (
            isinstance(reply_to, dict)
            and reply_to.get("exchange") == self._reply_name
            and isinstance(reply_to.get("routing_key"), str)
        )


def install(app: Any) -> None:
    """Make ``app``'s workers answer remote control with ``InspectOnlyNode``, their node's
    queue declared without expiry (kombu's expiring bindings would make the worker sweep every
    exchange's binding table, which a vehicle may not touch)."""
    mailbox = app.control.mailbox
    mailbox.node_cls = InspectOnlyNode
    mailbox.queue_expires = None  # the node's queue only; requesters' reply queues still expire
