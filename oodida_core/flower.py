"""``oodida-flower``: Flower, the Celery monitor, on the project's own Celery app.

The broker, the result backend and the transport options come from the ``OODIDA_*`` settings
(``OODIDA_REDIS_URL``), as for every other process; Flower's own options from its ``FLOWER_*``
variables (``FLOWER_BASIC_AUTH``, ``FLOWER_URL_PREFIX``, ``FLOWER_PORT``, ...) or from options
given on the command line (``--port=5555``, ``--basic-auth=user:pass``), which win. Flower
binds 127.0.0.1 unless ``--address`` or ``FLOWER_ADDRESS`` says otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from .celery_app import make_celery_app
from .errors import OodidaError
from .settings import Settings


def flower_argv(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The ``celery`` command line that runs Flower with ``argv`` (Flower's own options)."""
    out = ["flower"]
    named = {a.lstrip("-").partition("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
    if "address" not in named and not env.get("FLOWER_ADDRESS"):
        out.append("--address=127.0.0.1")
    return [*out, *argv]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        print("Flower's options: celery flower --help")
        return
    try:
        settings = Settings.from_env()
    except OodidaError as exc:
        sys.exit(f"oodida-flower: {exc}")
    app = make_celery_app(settings, "oodida-flower")
    sys.exit(app.start(flower_argv(args, os.environ)) or 0)


if __name__ == "__main__":
    main()
