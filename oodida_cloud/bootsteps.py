"""The cloud worker's own service, as a Celery worker bootstep: its deadline watcher.

``DeadlineWatcher.for_worker(orchestrator, purger, node)`` is the step for one cloud worker; the
worker adds it with ``app.steps["worker"].add(...)``. Celery starts it after the worker's pool
and before the consumer, and stops it (warm or cold shutdown) after the consumer, before the
pool.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

from celery import bootsteps

from oodida_core.state import lua

if TYPE_CHECKING:
    from .orchestrator import Orchestrator
    from .purge import Purger

log = logging.getLogger("oodida.cloud")

POOL_STEP = "celery.worker.components:Pool"
SCRIPT_RELOAD = 5.0  # seconds: the script cache is empty after a Redis restart


class DeadlineWatcher(bootsteps.StartStopStep):
    """The heartbeat of this cloud worker (``node``, its Celery node name, as Flower and
    ``oodida health --cloud`` show it) and the deadlines of running iterations: every
    ``deadline_poll`` seconds a finish task for each iteration whose deadline passed, and the
    second sweep of each purged assignment that is due (``Purger.sweep_due``). The worker
    leaves the cloud registry when it stops."""

    label = "oodida deadline watcher"
    requires = (POOL_STEP,)
    orchestrator: ClassVar[Orchestrator]
    purger: ClassVar[Purger]
    node: ClassVar[str]

    @classmethod
    def for_worker(cls, orchestrator: Orchestrator, purger: Purger, node: str) -> type[DeadlineWatcher]:
        """This step for the worker ``node`` (Celery instantiates the step class it is given)."""
        attrs = {
            "orchestrator": orchestrator,
            "purger": purger,
            "node": node,
            "__module__": cls.__module__,
        }
        step: type[DeadlineWatcher] = bootsteps.StepType(cls.__name__, (cls,), attrs)
        return step

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        self.thread = threading.Thread(target=self.run, name="oodida-cloud-watcher", daemon=True)
        self.thread.start()

    def run(self) -> None:
        settings = self.orchestrator.settings
        registry = self.orchestrator.registry
        next_beat = next_load = 0.0
        while not self.stopped.is_set():
            try:
                now = time.monotonic()
                if now >= next_beat:
                    registry.cloud_beat(self.node)
                    next_beat = now + settings.heartbeat_interval
                if now >= next_load:  # vehicles and readers may only EVALSHA (security/acl.py)
                    lua.preload(registry.redis)
                    next_load = now + SCRIPT_RELOAD
                self.orchestrator.fire_due_deadlines()
                self.purger.sweep_due()
            except Exception:  # a Redis outage: log, keep trying
                log.exception("deadline watcher: Redis call failed; retrying")
                self.stopped.wait(1.0)
            self.stopped.wait(settings.deadline_poll)

    def stop(self, worker: Any) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        try:
            self.orchestrator.registry.cloud_leave(self.node)
        except Exception:
            log.warning("could not leave the cloud registry", exc_info=True)

    def terminate(self, worker: Any) -> None:
        self.stop(worker)
