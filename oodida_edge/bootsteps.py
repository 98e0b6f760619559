"""The edge worker's own service, as a Celery worker bootstep: its clients' heartbeat.

``Heartbeat.for_clients(registry, infos)`` is the step for one worker process's clients; the
worker adds it with ``app.steps["worker"].add(...)``. Celery starts it after the worker's pool
and before the consumer, and stops it (warm or cold shutdown) after the consumer, before the
pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, ClassVar

from celery import bootsteps

from oodida_core.protocol.wire import ClientInfo
from oodida_core.state.registry import Registry

log = logging.getLogger("oodida.edge")

POOL_STEP = "celery.worker.components:Pool"


class Heartbeat(bootsteps.StartStopStep):
    """Registers this process's clients when the worker starts, keeps them live in the registry
    (a beat every ``heartbeat_interval``; re-registers those Redis lost), and takes them out
    of the registry when the worker stops."""

    label = "oodida edge heartbeat"
    requires = (POOL_STEP,)
    registry: ClassVar[Registry]
    infos: ClassVar[tuple[ClientInfo, ...]]

    @classmethod
    def for_clients(cls, registry: Registry, infos: Iterable[ClientInfo]) -> type[Heartbeat]:
        """This step for ``infos`` (Celery instantiates the step class it is given)."""
        attrs = {"registry": registry, "infos": tuple(infos), "__module__": cls.__module__}
        step: type[Heartbeat] = bootsteps.StepType(cls.__name__, (cls,), attrs)
        return step

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.ids = [i.client_id for i in self.infos]
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        try:
            self.registry.register(self.infos)
        except Exception:  # Redis unreachable: the first beat registers them again
            log.warning("could not register the clients; the next beat will", exc_info=True)
        self.thread = threading.Thread(target=self.run, name="oodida-edge-heartbeat", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopped.wait(self.registry.settings.heartbeat_interval):
            try:
                lost = set(self.registry.beat(self.ids))
                if lost:
                    self.registry.register(i for i in self.infos if i.client_id in lost)
            except Exception:
                log.warning("heartbeat failed (Redis unreachable?); retrying", exc_info=True)

    def stop(self, worker: Any) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        try:
            self.registry.unregister(self.ids)
        except Exception:
            log.warning("could not leave the registry", exc_info=True)

    def terminate(self, worker: Any) -> None:
        self.stop(worker)
