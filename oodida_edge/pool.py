"""The edge's task pool: built-in tasks on the fast path, custom tasks in lanes of their own.

A built-in on-board task (and an install) runs right in the consumer, as Celery's ``solo``
pool runs every task: no thread hand-off, 0.2 ms of computation next to Celery's own 1.5-2 ms.
A custom on-board task may take up to the time limit in the sandbox, so it is handed to a few
threads of its own (``CustomLanes``), each with its own sandbox fork server; its result still
goes back through Celery (the thread runs Celery's whole trace: result, chord counter, ack,
events). The consumer goes on taking the next message at once, so a slow or runaway custom
task delays neither other assignments' tasks on the same vehicle nor the other vehicles the
process serves.

The lanes are fair per user: at most ``per_assignment`` threads run one user's tasks (all of a
user's assignments share that user's turns), and the waiting tasks are taken round-robin over
users, each user's in arrival order. A task whose assignment ended while it waited is answered
``skipped`` without running (``runner.py`` reads the end marker first, in the lane).

Waiting custom tasks never block built-in ones: each task handed to a lane widens the
consumer's prefetch window by one until it starts (``Window``), so the window left for built-in
tasks stays what ``--concurrency`` says whatever waits in the lanes. How much one user may
widen it is bounded (``waiting_per_user``: the user's assignment quota times the clients the
process serves, one task per client and running iteration); beyond that, a user's waiting
tasks count against the window like any other. The
threads run at a lower CPU priority (``nice``), and so do the sandbox processes they start, so
custom code on every core does not slow the consumer either.

With ``fast_threads`` (real-time clients, which spend a task waiting for readings) built-in
tasks run in a thread pool of that size instead of in the consumer.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, ClassVar

from celery import signals
from celery.concurrency.base import BasePool, apply_target

from oodida_core.protocol.wire import TASK_ONBOARD

from .runner import PINNED

log = logging.getLogger("oodida.edge")

Job = Callable[[], object]


def custom_assignment(args: Sequence[Any] | None) -> str | None:
    """The assignment id of a custom on-board task ("" when it has none); None for any other
    task. ``args``: what the worker passes to the pool (task name, id, request, body, ...).
    A body that neither names ``custom`` nor holds a JSON escape cannot be one: most tasks
    are told apart without decoding them."""
    target = custom_target(args)
    return None if target is None else target[0]


def custom_target(args: Sequence[Any] | None) -> tuple[str, str | None, int | None] | None:
    """(assignment id, user, client id) of a custom on-board task, as far as they can be read;
    None for any other task."""
    if not args or len(args) < 4 or args[0] != TASK_ONBOARD:
        return None
    body = args[3]
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
        if b"custom" not in raw and b"\\u" not in raw:
            return None
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    try:
        message = body[0][0]
    except (TypeError, IndexError, KeyError):
        return None
    if not isinstance(message, dict) or message.get("method") != "custom":
        return None
    aid, user, client = message.get("assignment_id"), message.get("user"), message.get("client_id")
    return (
        aid if isinstance(aid, str) else "",
        user if isinstance(user, str) else None,
        client if isinstance(client, int) and not isinstance(client, bool) else None,
    )


def _pinned(pin: tuple[str, int, str | None], job: Job) -> object:
    """Run ``job`` with the version its client had when the task was received."""
    token = PINNED.set(pin)
    try:
        return job()
    finally:
        PINNED.reset(token)


def lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority (Linux: nice is per thread; what the thread
    forks inherits it)."""
    if nice <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:  # pragma: no cover - not Linux, or a seccomp profile refuses it
        log.warning("custom-task threads keep their priority: %s", exc)


class CustomLanes:
    """``threads`` threads running jobs; at most ``per_assignment`` of one key at a time; the
    waiting jobs taken round-robin over keys, each key's in arrival order."""

    def __init__(self, threads: int, per_assignment: int, nice: int = 0) -> None:
        if threads < 1 or per_assignment < 1:
            raise ValueError("threads and per_assignment must be at least 1")
        self.per_assignment = per_assignment
        self.nice = nice
        self._cond = threading.Condition()
        self._waiting: OrderedDict[str, deque[Job]] = OrderedDict()
        self._running: Counter[str] = Counter()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"oodida-custom-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the custom-task lanes are closed")
            self._waiting.setdefault(key, deque()).append(job)
            self._cond.notify()

    def waiting(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._waiting.values())

    def running(self) -> int:
        with self._cond:
            return sum(self._running.values())

    def _take(self) -> tuple[str, Job] | None:
        """The next job (the caller holds the lock): the first key in turn that may run one
        more; that key goes to the back of the turn."""
        for key, queue in self._waiting.items():
            if self._running[key] < self.per_assignment:
                job = queue.popleft()
                if queue:
                    self._waiting.move_to_end(key)
                else:
                    del self._waiting[key]
                self._running[key] += 1
                return key, job
        return None

    def _serve(self) -> None:
        lower_priority(self.nice)
        while True:
            with self._cond:
                picked = None
                while not self._closed and (picked := self._take()) is None:
                    self._cond.wait()
                if picked is None:
                    return
            key, job = picked
            try:
                job()
            except BaseException:
                log.exception("a custom task failed outside its task")
            finally:
                with self._cond:
                    self._running[key] -= 1
                    if self._running[key] <= 0:
                        del self._running[key]
                    self._cond.notify_all()

    def close(self, timeout: float = 1.0) -> None:
        """Take no more jobs; wait up to ``timeout`` for the running ones. Jobs still waiting
        are dropped: their messages were not acknowledged, and kombu puts them back on their
        queues when the worker's channel closes (a warm shutdown; a killed process loses them,
        and those clients are ``missing`` from that iteration)."""
        with self._cond:
            self._closed = True
            self._waiting.clear()
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)


class Window:
    """How far custom tasks waiting in the lanes widened the consumer's prefetch window, per
    user, up to ``per_user`` each. Celery's ``qos.increment_eventually`` and
    ``decrement_eventually`` are thread-safe; the consumer applies the change in its loop."""

    consumer: ClassVar[Any] = None  # set when the worker is ready (``worker_ready``)

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._lock = threading.Lock()
        self._widened: Counter[str] = Counter()

    def widen(self, user: str) -> bool:
        """Widen the window by one for a task of ``user`` now waiting, if ``user`` may."""
        qos = getattr(self.consumer, "qos", None)
        with self._lock:
            if qos is None or self._widened[user] >= self.per_user:
                return False
            self._widened[user] += 1
        qos.increment_eventually()
        return True

    def narrow(self, user: str) -> None:
        """The task of ``user`` that widened the window left the lane's queue."""
        with self._lock:
            self._widened[user] -= 1
            if self._widened[user] <= 0:
                del self._widened[user]
        qos = getattr(self.consumer, "qos", None)
        if qos is not None:
            qos.decrement_eventually()

    def widened(self) -> int:
        with self._lock:
            return sum(self._widened.values())


def _remember_consumer(sender: Any = None, **_: Any) -> None:
    Window.consumer = sender


signals.worker_ready.connect(_remember_consumer, weak=False)


def _started(window: Window, user: str, job: Job) -> object:
    window.narrow(user)
    return job()


class EdgePool(BasePool):
    """The pool of ``oodida-edge`` (``--pool oodida_edge.pool:EdgePool``). ``limit`` (the
    worker's ``--concurrency``) is the prefetch window: how many tasks the process holds at
    once, running or waiting for a lane; the lanes are set with ``configure()`` before the
    worker starts."""

    body_can_be_buffer = True
    custom_threads: ClassVar[int] = 2
    per_assignment: ClassVar[int] = 1
    nice: ClassVar[int] = 10
    fast_threads: ClassVar[int] = 0
    waiting_per_user: ClassVar[int] = 40
    resolvers: ClassVar[tuple[Callable[[str, int], str | None], ...]] = ()  # none, or one

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lanes: CustomLanes | None = None
        self.window = Window(self.waiting_per_user)
        self.fast: ThreadPoolExecutor | None = None
        initargs = self.options.get("initargs") or (None, None)
        signals.worker_process_init.send(sender=initargs[1])  # as the solo pool does

    @classmethod
    def configure(
        cls,
        *,
        custom_threads: int,
        per_assignment: int,
        nice: int,
        fast_threads: int = 0,
        waiting_per_user: int = 40,
    ) -> None:
        cls.waiting_per_user = waiting_per_user
        cls.custom_threads = custom_threads
        cls.per_assignment = max(1, min(per_assignment, custom_threads))
        cls.nice = nice
        cls.fast_threads = fast_threads

    def on_start(self) -> None:
        self.lanes = CustomLanes(self.custom_threads, self.per_assignment, self.nice)
        if self.fast_threads > 0:
            self.fast = ThreadPoolExecutor(self.fast_threads, thread_name_prefix="oodida-task")

    def on_stop(self) -> None:
        if self.lanes is not None:
            self.lanes.close()
        if self.fast is not None:
            self.fast.shutdown(wait=False, cancel_futures=True)

    on_terminate = on_stop

    @classmethod
    def resolve_with(cls, resolver: Callable[[str, int], str | None]) -> None:
        """How to read a client's current on-board version of a user: a custom task is pinned
        to the version current when the consumer took it, so an install taken after it (which
        runs at once, in the consumer) does not overtake it while it waits for a lane. A
        deployment takes effect for the next task in the queue, as with a single consumer."""
        cls.resolvers = (resolver,)

    def on_apply(
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        **_: Any,
    ) -> object:
        job = partial(apply_target, target, args, kwargs, callback, accept_callback)
        custom = custom_target(args)
        if custom is not None and self.lanes is not None:
            key, user, client = custom
            if self.resolvers and user is not None and client is not None:
                try:
                    job = partial(_pinned, (user, client, self.resolvers[0](user, client)), job)
                except Exception as exc:  # Redis away: the task looks the version up itself
                    log.warning("custom task of client %s: version not pinned (%s)", client, exc)
            turn = user or key  # a user's assignments share that user's turns
            if self.window.widen(turn):
                job = partial(_started, self.window, turn, job)
            self.lanes.submit(turn, job)
            return None
        if self.fast is not None:
            return self.fast.submit(job)
        return job()

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super()._get_info()
        info.update(
            {
                "max-concurrency": self.limit,
                "custom-threads": self.custom_threads,
                "custom-per-assignment": self.per_assignment,
                "custom-running": self.lanes.running() if self.lanes else 0,
                "custom-waiting": self.lanes.waiting() if self.lanes else 0,
                "custom-window": self.window.widened(),
                "fast-threads": self.fast_threads,
            }
        )
        return info
