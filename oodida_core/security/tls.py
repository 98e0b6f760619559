"""TLS to Redis, carried in the URL: one ``OODIDA_REDIS_URL`` configures redis-py, Celery's
broker (kombu) and Celery's result backend alike.

``rediss://user:password@host:port/0?ssl_cert_reqs=required&ssl_ca_certs=CA&ssl_certfile=CERT&ssl_keyfile=KEY``

- ``ssl_cert_reqs=required``: the server's certificate must be signed by ``ssl_ca_certs`` (or,
  without it, by a CA of the system's store) and name the host (redis-py checks the host name
  by default). ``settings.check_redis_url`` (``check_tls``) refuses a ``rediss://`` URL that asks for less.
- ``ssl_certfile`` and ``ssl_keyfile``: this process's client certificate, for a server with
  ``tls-auth-clients yes``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query options of redis-py's SSL connection that this module writes (and replaces).
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


@dataclass(frozen=True)
class TlsFiles:
    """What a process needs for TLS: the CA that signed the server, and its own certificate."""

    ca: str
    cert: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ValueError("a client certificate needs both its certificate and its key file")


def tls_url(url: str, files: TlsFiles) -> str:
    """``url`` as a ``rediss://`` URL that verifies the server with ``files.ca`` and presents
    ``files.cert``; other query options are kept."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in TLS_OPTIONS]
    query += [("ssl_cert_reqs", "required"), ("ssl_ca_certs", os.fspath(files.ca))]
    if files.cert:
        query += [("ssl_certfile", os.fspath(files.cert)), ("ssl_keyfile", os.fspath(files.key))]
    return urlunsplit(("rediss", parts.netloc, parts.path or "/0", urlencode(query, safe="/"), ""))


def plain_url(url: str) -> str:
    """``url`` without TLS (``redis://``, no ``ssl_*`` options): what an attacker without a
    certificate would try (the tests use it)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("ssl_")]
    return urlunsplit(("redis", parts.netloc, parts.path, urlencode(query, safe="/"), ""))


def without_client_certificate(url: str) -> str:
    """``url`` without ``ssl_certfile``/``ssl_keyfile`` (the operator's own, on this machine)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("ssl_certfile", "ssl_keyfile")]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe="/"), parts.fragment))
