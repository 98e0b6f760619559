"""The library's one channel to the cloud: publish a request, read the cloud's reply.

``Oodida``, ``Assignment`` and ``Deployment`` all ask the cloud through one ``CloudRequests``
(``Oodida.requests``): ``credentials()`` for what every request carries, ``send`` to publish
it, ``await_reply`` to read its reply, ``request`` for both (the reply's value, or its error
raised). A good reply proves the token, so the channel also knows whether the user is
authenticated yet (``authenticated``).
"""

from __future__ import annotations

from typing import Any, TypedDict

from kombu.exceptions import OperationalError

from oodida_core.protocol.errors import OodidaError, QuotaError
from oodida_core.protocol.wire import Reply, Request
from oodida_core.settings import masked_url
from oodida_core.state.quota import out_of_memory, out_of_memory_cause

from .connection import Connection
from .replies import await_reply, new_request_id, raise_for, read_reply


class Credentials(TypedDict):
    """What every request to the cloud carries: who, the proof, and where to answer."""

    user: str
    token: str
    request_id: str


class CloudRequests:
    """Requests to the cloud over one connection, as its user."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.authenticated = False  # a good reply came: the token is good

    def credentials(self) -> Credentials:
        """The user, the token and a fresh request id (where the cloud will answer)."""
        settings = self.connection.settings
        return {"user": settings.user, "token": settings.token, "request_id": new_request_id()}

    def send(self, task: str, request: Request, task_id: str) -> None:
        """Publish ``request`` as task ``task`` to the cloud queue. OodidaError when the broker
        cannot be reached, QuotaError when Redis at its memory limit refused the message."""
        app = self.connection.app
        message = request.to_wire()
        try:
            with app.producer_or_acquire() as producer, producer.batch():  # message + event: one trip
                app.send_task(
                    task,
                    args=(message,),
                    task_id=task_id,
                    ignore_result=True,
                    producer=producer,
                )
        except OperationalError as exc:
            url = self.connection.settings.redis_url
            raise OodidaError(f"cannot reach the OODIDA broker at {masked_url(url)}: {exc}") from None
        except Exception as exc:
            oom = out_of_memory_cause(exc)
            if oom is None:
                raise
            refusal = out_of_memory(oom)  # Redis at its maxmemory refused the message
            raise QuotaError(refusal.message, limit=refusal.limit) from None

    def await_reply(self, request_id: str, timeout: float | None) -> Reply | None:
        """The cloud's reply (waiting up to ``timeout`` seconds; None: just look), or None when
        none came; a good one proves the token."""
        c = self.connection
        if timeout is None:
            reply = read_reply(c.redis, c.keys, request_id, None)
        else:
            reply = await_reply(c.redis, c.keys, request_id, timeout)
        if reply is not None and reply.error != "auth":
            self.authenticated = True
        return reply

    def request(self, task: str, request: Request, what: str, timeout: float) -> Any:
        """Send ``request`` and wait up to ``timeout`` for the reply: its value, or its error
        raised; OodidaError naming ``what`` when no cloud worker answered."""
        self.send(task, request, f"{request.request_id}-{task.rsplit('.', 1)[-1]}")
        reply = self.await_reply(request.request_id, timeout)
        if reply is None:
            raise OodidaError(
                f"no cloud worker answered the {what} request within {timeout:.0f}s: "
                "is oodida-cloud running on this broker?"
            )
        return raise_for(reply)
