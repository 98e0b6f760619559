"""The module-level Celery app, for Celery's own command line and for Flower.

    export OODIDA_REDIS_URL=redis://...      # the first line ``oodida up`` prints
    celery -A oodida_core.app inspect registered
    celery -A oodida_core.app inspect active
    celery -A oodida_core.app inspect stats
    celery -A oodida_core.app status
    celery -A oodida_core.app events --dump
    celery -A oodida_core.app flower --address=127.0.0.1 --port=5555

``app`` is built from the ``OODIDA_*`` settings (``Settings.from_env``) and the operator's
Celery configuration module, if ``CELERY_CONFIG_MODULE`` names one (``celery_app.py``).
Building it connects to nothing: the commands above connect when they run. The workers
answer only inspection (``remote_control.py``): ``celery control`` commands are ignored.
The workers themselves are started by ``oodida-cloud`` and ``oodida-edge`` (which register
the project's tasks), not by ``celery -A oodida_core.app worker``.
"""

from __future__ import annotations

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.settings import Settings

app = make_celery_app(Settings.from_env(), "oodida")

__all__ = ["app"]
