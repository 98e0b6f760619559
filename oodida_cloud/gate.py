"""The cloud's front door: every request of the library is authenticated before anything else.

A request (``wire.Request``) names its user and carries that user's token. ``Gate.admit`` checks
the token against the users hash (unless the system runs with ``OODIDA_AUTH=off``); a refused
request is logged with the user name and what it asked for (never the token) and answered on
its reply stream, and its handler stops there: nothing is validated, stored or sent for it.
The cloud's one request path (``requests.py``) admits every request here before its handler.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from oodida_core.protocol.keys import Keys
from oodida_core.protocol.wire import AuthRequest, Reply, Request
from oodida_core.security.auth import AuthFailure, UserStore

from .outcomes import Outcome

log = logging.getLogger("oodida.cloud")

REPLY_TTL = 600  # seconds a reply waits for the library


class Gate:
    def __init__(self, client: redis.Redis, keys: Keys, users: UserStore | None) -> None:
        """``users``: the users hash the tokens are checked against; None with ``OODIDA_AUTH=off``."""
        self.redis = client
        self.keys = keys
        self.users = users

    def admit(self, request: Request, what: str) -> bool:
        """True when ``request``'s user is who the token says; else log, answer, and False."""
        if self.users is None:
            return True
        try:
            self.users.authenticate(request.user, request.token)
        except AuthFailure as exc:
            log.warning("%s by user %r refused: %s", what, request.user, exc.reason)
            self.answer(request, Reply(ok=False, error="auth", message=str(exc)))
            return False
        return True

    def answer(self, request: Request, reply: Reply) -> None:
        """Put ``reply`` on the request's reply stream (if the library asked for one)."""
        if not request.request_id:
            return
        key = self.keys.reply(request.request_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(key, {"reply": reply.to_json()}, maxlen=10, approximate=False)
        pipe.expire(key, REPLY_TTL)
        pipe.execute()

    def ok(self, request: Request, value: Any = None) -> None:
        self.answer(request, Reply(ok=True, value=value))

    def refuse(self, request: Request, error: str, message: str) -> None:
        self.answer(request, Reply.model_validate({"ok": False, "error": error, "message": message}))

    def authenticated(self, request: AuthRequest) -> Outcome:
        """The library's first call, once the request path admitted it: its user and token are
        good."""
        self.ok(request, {"user": request.user})
        return Outcome.OK
