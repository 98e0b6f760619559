"""``oodida-flower``: Flower, the Celery monitor, on the project's own Celery app.

The broker, the result backend and the transport options come from the ``OODIDA_*`` settings
(``OODIDA_REDIS_URL``), as for every other process; Flower's own options from its ``FLOWER_*``
variables (``FLOWER_BASIC_AUTH``, ``FLOWER_URL_PREFIX``, ``FLOWER_PORT``, ...) or from options
given on the command line (``--port=5555``, ``--basic_auth=user:pass``), which win. Flower
binds 127.0.0.1 unless ``--address`` or ``FLOWER_ADDRESS`` says otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

from celery import Celery

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.errors import OodidaError
from oodida_core.security.tls import TLS_OPTIONS
from oodida_core.settings import Settings

# Flower's options that differ from Flower's defaults, unless the command line or a FLOWER_*
# variable sets them: bind locally; the task list shows the readable arguments
# (oodida_core/messaging/labels.py: assignment, iteration, client, user) instead of the task ids.
DEFAULTS = {
    "address": "127.0.0.1",
    "tasks_columns": "name,state,args,worker,received,runtime",
}


def flower_app(settings: Settings) -> Celery:
    """The Celery app Flower runs on: the project's, with queues that do not expire.

    Flower's event receiver queue (``celeryev.<uuid>``) and its remote-control reply queue
    (``<uuid>.reply.celery.pidbox``) are deleted when Flower stops consuming them. Declared
    with an expiry (Celery's default), kombu would keep their bindings alive with a Lua script
    (EVALSHA) writing a deadline set shared with every worker and sweep other exchanges' binding
    tables: what Flower's own ACL user (``acl.roles``: ``flower``) may not do. Nor does it take
    messages with kombu's ack emulation (no ``unacked`` hash, no restoring others' messages):
    it takes only replies, which need no acknowledgement."""
    app = make_celery_app(settings, "oodida-flower")
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "ack_emulation": False}
    app.conf.event_queue_expires = None
    app.control.mailbox.reply_queue_expires = None
    url = urlsplit(settings.redis_url)
    if url.scheme == "rediss" and not app.conf.broker_use_ssl:
        # Its broker page (queue lengths) connects with broker_use_ssl, not the URL's options.
        app.conf.broker_use_ssl = {k: v for k, v in parse_qsl(url.query) if k in TLS_OPTIONS}
    return app


def flower_argv(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The ``celery`` command line that runs Flower with ``argv`` (Flower's own options)."""
    named = {a.lstrip("-").partition("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
    defaults = [
        f"--{name}={value}"
        for name, value in DEFAULTS.items()
        if name not in named and not env.get("FLOWER_" + name.upper())
    ]
    return ["flower", *defaults, *argv]


def unknown_options(argv: Sequence[str]) -> list[str]:
    """The arguments that are not Flower options (Flower itself would drop them silently)."""
    import flower.options  # noqa: F401 - defines Flower's options
    from tornado.options import options

    names = {name.replace("-", "_") for name in options._options}
    return [
        a for a in argv if a.lstrip("-").partition("=")[0].replace("-", "_") not in names or a[:2] != "--"
    ]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        print("Flower's options: celery flower --help")
        return
    unknown = unknown_options(args)
    if unknown:
        sys.exit(f"oodida-flower: not Flower options: {' '.join(unknown)} (see celery flower --help)")
    try:
        settings = Settings.from_env()
    except OodidaError as exc:
        sys.exit(f"oodida-flower: {exc}")
    app = flower_app(settings)
    sys.exit(app.start(flower_argv(args, os.environ)) or 0)


if __name__ == "__main__":
    main()
