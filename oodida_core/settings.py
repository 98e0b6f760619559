"""Settings, read from ``OODIDA_*`` environment variables or passed explicitly.

One frozen value, handed to whoever needs it; nothing reads a global.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.connection import parse_url, to_bool

from oodida_core.protocol.errors import BadArgument

ENV_PREFIX = "OODIDA_"

# Read by single processes outside ``Settings``: the workers' log level, the edge's Celery
# pool and signal source (oodida_edge/_worker.py), the custom-code policy
# (oodida_core/customcode/check.py) and its jail (oodida_core/customcode/jail/layers.py).
PROCESS_ENV_VARS = (
    "OODIDA_LOGLEVEL",
    "OODIDA_EDGE_POOL",
    "OODIDA_SOURCE",
    "OODIDA_DBC",
    "OODIDA_MAPPING",
    "OODIDA_TAGS",
    "OODIDA_EDGE_DELAY",
    "OODIDA_CODE_ALLOWED_IMPORTS",
    "OODIDA_CODE_TIME_LIMIT",
    "OODIDA_CODE_MEMORY_LIMIT",
    "OODIDA_JAIL",
    "OODIDA_JAIL_UID",
    "OODIDA_JAIL_BWRAP",
    "OODIDA_EXTRA_METHODS",
)


REDIS_SCHEMES = ("redis", "rediss")  # what both redis-py and kombu (the broker) understand
# TLS options that would add trust anchors or loosen verification beyond ssl_ca_certs.
UNCHECKED_TLS_OPTIONS = (
    "ssl_ca_path",
    "ssl_ca_data",
    "ssl_include_verify_flags",
    "ssl_exclude_verify_flags",
    "ssl_password",
)


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``**``, for messages and logs (a red team found
    role passwords in error messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    # everything up to the last "@" is credentials, whatever it holds ("#", "/", "?" included:
    # urlsplit would not find a password there and show it, found by a red team)
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}://{user}:**@{host}"


def check_redis_url(url: str) -> str:
    """``url`` when redis-py and Celery's broker can both use it; ValueError saying why not
    (a bad scheme, port or database would otherwise fail later, deep in kombu or redis-py)."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(f"the scheme must be redis:// or rediss://, not {parts.scheme or 'none'}")
        db = parts.path.strip("/")
        if db and not (db.isascii() and db.isdigit()):
            raise ValueError(f"the database must be a number, not {db!r:.20}")
        parse_url(url)  # port, database and query options, as redis-py reads them
        check_tls(url)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{masked_url(url)!r:.80} is not a Redis URL: {exc}") from None
    return url


def pin_redis_trust() -> None:
    """A TLS connection whose URL names its CA (``ssl_ca_certs``) trusts that CA only.

    redis-py 8.2 (and so kombu's broker and Celery's result backend, which use its
    ``SSLConnection``) starts from ``ssl.create_default_context()``, which trusts the system's
    public CAs, and adds ``ssl_ca_certs`` to them: anyone with a public certificate for the
    server's name could stand in for Redis and collect passwords (found by a red team). Here
    such a context starts empty instead. Without ``ssl_ca_certs``, redis-py's own context
    (the system's CAs) is kept. Installed once per process, when this module is imported."""
    import ssl

    from redis.connection import SSLConnection

    if getattr(SSLConnection, "_oodida_pinned", False):
        return
    system_trust = SSLConnection._build_ssl_context

    def build(self: Any) -> ssl.SSLContext:
        if self.ca_certs is None or self.ca_path is not None or self.ca_data is not None:
            return system_trust(self)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA at all until the one below
        context.check_hostname = self.check_hostname
        context.verify_mode = self.cert_reqs
        for flag in self.ssl_include_verify_flags or ():
            context.verify_flags |= flag
        for flag in self.ssl_exclude_verify_flags or ():
            context.verify_flags &= ~flag
        if self.certfile or self.keyfile:
            context.load_cert_chain(self.certfile, self.keyfile, self.certificate_password)
        context.load_verify_locations(cafile=self.ca_certs)
        if self.ssl_min_version is not None:
            context.minimum_version = self.ssl_min_version
        if self.ssl_ciphers:
            context.set_ciphers(self.ssl_ciphers)
        return context

    SSLConnection._build_ssl_context = build  # type: ignore[method-assign]
    SSLConnection._oodida_pinned = True  # type: ignore[attr-defined]


def check_tls(url: str) -> None:
    """ValueError when ``url`` asks for TLS without verifying the server, or names TLS files
    for a plaintext connection or files that do not exist."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    options = dict(pairs)
    named = [k for k in options if k.startswith("ssl_")]
    if parts.scheme != "rediss":
        if named:
            raise ValueError(f"TLS options ({', '.join(named)}) need a rediss:// URL")
        return
    repeated = sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    if repeated:  # redis-py reads the first, kombu another: one meaning only
        raise ValueError(f"an option given twice: {', '.join(repeated)}")
    extra_trust = [k for k in named if k in UNCHECKED_TLS_OPTIONS]
    if extra_trust:
        raise ValueError(f"{', '.join(extra_trust)}: not accepted (name the one CA with ssl_ca_certs)")
    reqs = options.get("ssl_cert_reqs", "").strip().lower()
    if reqs != "required":
        raise ValueError(
            "a rediss:// URL must verify the server's certificate: add ssl_cert_reqs=required "
            f"(got {reqs or 'nothing'}) and ssl_ca_certs=<the CA's file>"
        )
    if "ssl_check_hostname" in options and to_bool(options["ssl_check_hostname"]) is False:
        raise ValueError("a rediss:// URL must check the server's host name (drop ssl_check_hostname)")
    for option in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        path = options.get(option)
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"{option}: no such file {path!r}")
    if ("ssl_certfile" in options) != ("ssl_keyfile" in options):
        raise ValueError("a client certificate needs both ssl_certfile and ssl_keyfile")


class Settings(BaseModel):
    """Everything an OODIDA process needs to know about its surroundings."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)  # URLs hold passwords

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="broker and result store")
    read_url: str = Field(
        "",
        description="read-only Redis URL for what this role only reads (ACLs); default: redis_url",
    )
    user: str = Field("", description="the analyst's user name (library and CLI)")
    token: str = Field("", repr=False, description="the analyst's token (library and CLI); never logged")
    auth: bool = Field(
        True, description="the cloud refuses requests without a valid user token (off: development only)"
    )
    key_prefix: str = Field("oodida", description="prefix of every Redis key the project writes")
    heartbeat_interval: float = Field(2.0, gt=0, le=60, description="client heartbeat, seconds")
    live_after_missed: int = Field(
        3, ge=1, le=100, description="heartbeats a client may miss before it is not live"
    )
    result_expires: int = Field(
        2 * 86400, ge=1, description="seconds Celery keeps task results and chord counters"
    )
    assignment_ttl: int = Field(
        7 * 86400, ge=1, description="seconds an assignment's data is kept after it ended"
    )
    visibility_timeout: int = Field(
        2 * 86400,
        ge=1,
        description="seconds before Redis redelivers an unacked message (tests use a few seconds)",
    )
    deadline_poll: float = Field(0.2, gt=0, le=10, description="cloud deadline check, seconds")
    cloud_concurrency: int = Field(4, ge=1, le=64, description="threads per cloud worker")
    events: bool = Field(True, description="send task events for Flower")
    # Per-user limits on what a user keeps in Redis (oodida_core/state/quota.py; README, "Data
    # retention"): past one, the cloud refuses with QuotaError naming the limit.
    max_iteration_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="bytes of one iteration's stored result (JSON)"
    )
    max_assignment_bytes: int = Field(
        512 * 1024 * 1024, ge=1024, description="bytes of all stored iteration results of one assignment"
    )
    max_assignments: int = Field(10, ge=1, description="assignments of one user running at once")
    max_kept_iterations: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="iterations one assignment keeps one by one (the latest); older ones are "
        "folded into a summary (an assignment's spec key 'keep' may ask for fewer)",
    )
    max_pending_deployments: int = Field(
        10, ge=1, description="on-board deployments of one user still waiting for clients"
    )
    max_unknown_clients: int = Field(
        10, ge=0, description="client ids one deployment may name that are not registered"
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: str) -> str:
        return check_redis_url(url)

    @field_validator("read_url")
    @classmethod
    def _read_url(cls, url: str) -> str:
        return check_redis_url(url) if url else url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``OODIDA_<FIELD>`` variables; explicit overrides win when not None."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = source.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise BadArgument(f"bad settings: {problems}") from None

    @property
    def live_window(self) -> float:
        """A client whose last heartbeat is older than this many seconds is not live."""
        return self.heartbeat_interval * self.live_after_missed

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process
        (without the analyst's token: no worker needs it)."""
        return {
            ENV_PREFIX + name.upper(): str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in self.model_dump(exclude={"token"}).items()
        }


def env_var_names() -> frozenset[str]:
    """Every ``OODIDA_*`` variable a process of the project reads."""
    return frozenset(ENV_PREFIX + name.upper() for name in Settings.model_fields) | frozenset(
        PROCESS_ENV_VARS
    )


# Every process imports the settings: from here on a TLS connection that names its CA trusts
# only it, whichever path made the connection (LocalSystem, the library, the workers).
pin_redis_trust()
