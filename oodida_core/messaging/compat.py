"""The Celery, kombu and redis-py versions the code was checked with, and what of theirs it uses
that is not their public API.

The message guards copy and patch methods of kombu's Redis transport; the cloud and the library
read Celery's chord state and result keys in Redis; the ACL rules name Celery's and kombu's
keys and channels; the remote control and the edge pool build on Celery's worker internals.
None of this is covered by those projects' deprecation policies: a release can change any of
it. ``PINS`` names the release series each was read in and every internal used, with the files
that use it; ``tests/unit/test_pinned_versions.py`` fails on another series, or when an
internal is gone or changed. Before upgrading, review the files listed here against the new
release, then update ``PINS``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any


@dataclass(frozen=True)
class Internal:
    """One internal of a dependency: ``symbol`` as ``module:attr.attr`` (must resolve), the
    value it must have (``expected``, when the code relies on the value: a key name), why the
    code needs it and where."""

    symbol: str
    why: str
    where: tuple[str, ...]
    expected: object = None


@dataclass(frozen=True)
class Pin:
    """A dependency: the version its internals were checked with and the series accepted."""

    package: str
    checked: str
    internals: tuple[Internal, ...]

    @property
    def series(self) -> str:
        """``5.7.`` for ``5.7.0``: a patch release is accepted, a minor one is not."""
        major, minor = self.checked.split(".")[:2]
        return f"{major}.{minor}."


_GUARD = ("oodida_core/messaging/kombu_guard.py",)
_CHORDS = ("oodida_core/state/chords.py", "oodida_cloud/dispatch.py", "oodida_cloud/orchestrator.py")
_REMOTE = ("oodida_core/messaging/remote_control.py",)
_ACL = ("oodida_core/security/acl.py",)

PINS: tuple[Pin, ...] = (
    Pin(
        "celery",
        "5.7.0",
        (
            Internal(
                "celery._state:_set_task_join_will_block",
                "the cloud's threads never subscribe to the result channels of the chords they publish",
                ("oodida_cloud/_worker.py",),
            ),
            Internal("celery.backends.redis:RedisBackend.set_chord_size", "a chord without canvas", _CHORDS),
            *(
                Internal(
                    f"celery.backends.redis:{name}",
                    "the chord's Lua, loaded by the cloud: vehicles may only EVALSHA",
                    ("oodida_core/state/lua/__init__.py",),
                )
                for name in ("CHORD_PART_RETURN_LUA", "CHORD_CLEANUP_LUA", "CHORD_CLAIM_EXTEND_LUA")
            ),
            Internal("celery.backends.redis:RedisBackend._chord_zset", "the join key's type", _CHORDS),
            Internal(
                "celery.backends.redis:RedisBackend.on_chord_part_return",
                "the chord keys <group>.j .t .s .d (running) and .c (done), counted and closed here",
                _CHORDS,
            ),
            Internal(
                "celery.backends.base:KeyValueStoreBackend.task_keyprefix",
                "result keys read directly and named in ACL rules",
                (*_CHORDS, *_ACL),
                "celery-task-meta-",
            ),
            Internal(
                "celery.backends.base:KeyValueStoreBackend.group_keyprefix",
                "chord keys read directly and named in ACL rules",
                (*_CHORDS, *_ACL),
                "celery-taskset-meta-",
            ),
            Internal(
                "celery.app.amqp:AMQP.as_task_v2",
                "every message labelled where Celery builds it (argsrepr, kwargsrepr)",
                ("oodida_core/messaging/labels.py",),
            ),
            Internal("celery.worker.control:Panel.data", "the inspection commands workers answer", _REMOTE),
            Internal("celery.worker.state:active_requests", "inspect active", _REMOTE),
            Internal("celery.worker.state:reserved_requests", "inspect reserved", _REMOTE),
            Internal("celery.worker.request:Request.info", "inspect active, reserved, scheduled", _REMOTE),
            Internal(
                "celery.worker.consumer:Consumer.create_task_handler",
                "a message Celery cannot take is logged and deleted",
                ("oodida_core/messaging/guard.py",),
            ),
            Internal(
                "celery.concurrency.base:BasePool._get_info",
                "the edge pool's lanes in inspect stats",
                ("oodida_edge/pool.py",),
            ),
            Internal(
                "celery.worker.components:Pool",
                "the worker bootsteps start after the pool",
                ("oodida_edge/bootsteps.py", "oodida_cloud/bootsteps.py"),
            ),
        ),
    ),
    Pin(
        "kombu",
        "5.7.0",
        (
            *(
                Internal(
                    f"kombu.transport.redis:Channel.{name}",
                    "copied or wrapped: every queue item and remote-control payload checked",
                    _GUARD,
                )
                for name in (
                    "_brpop_read",
                    "_get",
                    "_receive_one",
                    "_connparams",
                    "_handle_message",
                    "_deliver_fanout_message",
                    "_q_for_pri",
                    "_maybe_update_queues_expire",
                    "_flush_brpop_reauth",
                    "conn_or_acquire",
                )
            ),
            Internal("kombu.transport.redis:QoS.restore_by_tag", "an unreadable restore is dropped", _GUARD),
            Internal(
                "kombu.transport.redis:Channel.keyprefix_queue",
                "queue bindings named in ACL rules",
                _ACL,
                "_kombu.binding.%s",
            ),
            Internal(
                "kombu.transport.redis:Channel.keyprefix_fanout",
                "event and remote-control channels named in ACL rules",
                _ACL,
                "/{db}.",
            ),
            Internal(
                "kombu.pidbox:Mailbox.reply_exchange_fmt",
                "reply queues named in ACL rules",
                _ACL,
                "reply.%s.pidbox",
            ),
            Internal("kombu.pidbox:Node.dispatch", "the inspection-only mailbox node", _REMOTE),
            Internal("kombu.pidbox:Node.handle_message", "the inspection-only mailbox node", _REMOTE),
            Internal(
                "kombu.transport.virtual.base:Message",
                "the item envelope (body, properties, body_encoding) rebuilt by the guard",
                ("oodida_core/messaging/envelope.py", "oodida_core/messaging/fanout.py"),
            ),
        ),
    ),
    Pin(
        "redis",
        "8.2.0",
        (
            Internal(
                "redis.client:Redis.parse_response",
                "kombu 5.7's BRPOP read, copied in the guard",
                _GUARD,
            ),
            Internal("redis.client:PubSub.parse_response", "kombu 5.7's pub/sub read, copied", _GUARD),
            Internal(
                "redis.connection:SSLConnection._build_ssl_context",
                "rebuilt so that a URL's CA is the only one trusted",
                ("oodida_core/settings.py",),
            ),
            Internal(
                "redis.connection:to_bool",
                "how redis-py reads ssl_check_hostname",
                ("oodida_core/settings.py",),
            ),
        ),
    ),
)


def pin(package: str) -> Pin:
    return next(p for p in PINS if p.package == package)


def resolve(symbol: str) -> Any:
    """The object ``module:attr.attr`` names; AttributeError or ImportError when it is gone."""
    module_name, _, path = symbol.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in path.split("."):
        found = found.__dict__[part] if part in getattr(found, "__dict__", {}) else getattr(found, part)
    return found


def problems(pins: tuple[Pin, ...] = PINS) -> list[str]:
    """What differs from ``pins`` in this environment: one line each (empty: all as checked)."""
    found: list[str] = []
    for p in pins:
        installed = version(p.package)
        files = sorted({f for i in p.internals for f in i.where})
        if not installed.startswith(p.series):
            found.append(
                f"{p.package} {installed} is installed: this code relies on {p.package} internals, "
                f"checked with {p.package} {p.checked}; review {', '.join(files)} before upgrading, "
                "then update oodida_core/messaging/compat.py"
            )
        for i in p.internals:
            try:
                value = resolve(i.symbol)
            except (ImportError, AttributeError, KeyError) as exc:
                found.append(f"{i.symbol} is gone ({exc!r}): used for {i.why}; review {', '.join(i.where)}")
                continue
            if i.expected is not None and value != i.expected:
                found.append(
                    f"{i.symbol} is {value!r}, not {i.expected!r}: used for {i.why}; "
                    f"review {', '.join(i.where)}"
                )
    return found
