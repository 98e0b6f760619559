"""Users and their tokens: issued by the operator, stored hashed, checked by the cloud.

A token is 32 random bytes (``secrets.token_urlsafe``) behind the ``oodida_`` prefix: 256 bits
that nobody guesses, so one salted HMAC-SHA256 is enough to store it (a slow password hash
protects low-entropy secrets; it buys nothing here and would cost the cloud time on every
request). Redis holds only ``hmac-sha256$<salt>$<digest>`` per user, in one hash that only the
cloud and the operator need to read (see ``acl.py``). Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

import redis

from oodida_core.protocol.errors import AuthError, OodidaError
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.wire import MAX_USER_NAME
from oodida_core.protocol.wire import USER_PATTERN as USER_NAME

TOKEN_PREFIX = "oodida_"
TOKEN_BYTES = 32
TOKEN_PATTERN = re.compile(r"^oodida_[A-Za-z0-9_-]{43}$")
USER_PATTERN = re.compile(USER_NAME)  # 1-64 letters, digits or . _ @ -
SCHEME = "hmac-sha256"
SALT_BYTES = 16

# Compared against when the user is unknown, so that answer takes as long as a wrong token.
_DUMMY = f"{SCHEME}${'00' * SALT_BYTES}${'00' * 32}"


def check_user_name(name: str) -> str:
    """``name`` if it is a plain user name (1-64 letters, digits or . _ @ -), else OodidaError."""
    if not USER_PATTERN.match(name or ""):
        raise OodidaError(f"user name {name!r} must be 1-{MAX_USER_NAME} letters, digits or . _ @ -")
    return name


def new_token() -> str:
    """A fresh random token: ``oodida_`` and 43 URL-safe characters (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def looks_like_token(text: str) -> bool:
    """True when ``text`` has the form of a token (not whether it is anyone's)."""
    return bool(TOKEN_PATTERN.match(text))


def credential_for(token: str, salt: bytes | None = None) -> str:
    """What Redis stores for ``token``: the scheme, a random salt and HMAC-SHA256(salt, token)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hmac.new(salt, token.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{SCHEME}${salt.hex()}${digest}"


def verify(credential: str, token: str) -> bool:
    """True when ``token`` is the one ``credential`` was made from; False for anything else,
    including a malformed credential or an unknown scheme."""
    try:
        scheme, salt_hex, digest = credential.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != SCHEME or len(digest) != 64:
        return False
    expected = hmac.new(salt, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, digest)


class AuthFailure(AuthError):
    """An AuthError with the reason the cloud logs (never sent back: it tells who exists)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class UserEntry:
    """A user as ``oodida users list`` shows it (never the token, which is not stored)."""

    name: str
    created_at: float
    rotated_at: float | None = None


class UserStore:
    """The users hash in Redis: add, rotate, remove, list them, and authenticate a request."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def add(self, name: str) -> str:
        """Create ``name`` and return its token (shown once; only its hash is kept)."""
        check_user_name(name)
        token = new_token()
        entry = {"credential": credential_for(token), "created_at": time.time()}
        if not self.redis.hsetnx(self.keys.users, name, json.dumps(entry)):
            raise OodidaError(f"user {name!r} exists already: rotate its token instead")
        return token

    def rotate(self, name: str) -> str:
        """A new token for ``name``; the old one stops working at once."""
        raw = self.redis.hget(self.keys.users, name)
        if raw is None:
            raise OodidaError(f"no user {name!r}")
        entry = _entry(raw)
        token = new_token()
        entry.update(credential=credential_for(token), rotated_at=time.time())
        self.redis.hset(self.keys.users, name, json.dumps(entry))
        return token

    def add_or_rotate(self, name: str) -> str:
        """A working token for ``name``, creating the user if needed (``oodida up``, tests)."""
        try:
            return self.add(name)
        except OodidaError:
            return self.rotate(name)

    def remove(self, name: str) -> bool:
        """Delete ``name``: its token stops working. False if there was no such user."""
        return bool(self.redis.hdel(self.keys.users, name))

    def entries(self) -> list[UserEntry]:
        out = []
        for name, raw in self.redis.hgetall(self.keys.users).items():
            entry = _entry(raw)
            created, rotated = entry.get("created_at"), entry.get("rotated_at")
            out.append(
                UserEntry(
                    name.decode() if isinstance(name, bytes) else str(name),
                    float(created) if isinstance(created, (int, float)) else 0.0,
                    float(rotated) if isinstance(rotated, (int, float)) else None,
                )
            )
        return sorted(out, key=lambda e: e.name)

    def authenticate(self, name: str, token: str) -> None:
        """Nothing if ``token`` is ``name``'s current token, else AuthError.

        The message does not say whether the user exists; ``reason`` (for the log) does.
        """
        if not token:
            raise AuthFailure(
                f"no token given for user {name!r}: pass token=... or set OODIDA_TOKEN", "no token"
            )
        raw = self.redis.hget(self.keys.users, name) if USER_PATTERN.match(name) else None
        credential = _entry(raw).get("credential", "") if raw is not None else ""
        ok = verify(str(credential) or _DUMMY, token)
        if raw is None or not ok:
            raise AuthFailure(
                f"authentication failed for user {name!r}: unknown user or wrong token",
                "unknown user" if raw is None else "wrong token",
            )


def _entry(raw: bytes | str) -> dict[str, object]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
