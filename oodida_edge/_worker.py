"""``oodida-edge``: one client (``--client-id N``) or a simulated fleet (``--clients 1-100``).

Each client consumes its own queue ``client.<id>``. A fleet is served by ``--processes``
worker processes, each consuming a contiguous slice of the clients' queues; a supervisor
process starts them, restarts one that dies, and stops them all on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import redis
from celery import signals

from oodida_core.customcode.check import CodePolicy
from oodida_core.customcode.runner import CodeRunner
from oodida_core.customcode.sandbox import Sandbox, announce_jail
from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.procs import die_with_parent
from oodida_core.protocol.ids import format_ranges, parse_id_ranges
from oodida_core.protocol.keys import Keys, client_queue
from oodida_core.protocol.logs import setup_logging
from oodida_core.protocol.tags import ENV_VAR as TAGS_ENV
from oodida_core.protocol.tags import OPTION_FORM, split_items, tags_for_clients
from oodida_core.protocol.wire import CatalogueEntry, ClientInfo
from oodida_core.settings import Settings
from oodida_core.state.codestore import CodeStore
from oodida_core.state.registry import Registry

from .bootsteps import Heartbeat
from .install import Installer
from .pool import EdgePool
from .runner import OnboardRunner, edge_delay
from .sources.base import Source, SourceError, resolved
from .sources.live import LiveSource
from .sources.select import SourceSpec, build_source, parse_source
from .tasks import register_edge_tasks

log = logging.getLogger("oodida.edge")

# Measured on 2 cores (BENCHMARKS.md, "Process layout"): the solo pool (the task runs in the
# consumer, no thread hand-off) and few processes with many queues each beat threads and one
# process per few clients; 1,000 clients: 4 processes x 250 queues, 1.8 s an iteration and
# 380 MiB, against 3.5 s and 1.6 GiB for 20 threaded processes x 50 queues.
CLIENTS_PER_PROCESS = 250
MIN_SPLIT = 20  # from this many clients on, at least two processes: the work spreads over cores
EDGE_POOL = os.environ.get("OODIDA_EDGE_POOL", "solo")
# Custom tasks run beside the built-in ones (oodida_edge/pool.py): this many threads, each with
# its own sandbox fork server (~40 MB, started at the first custom task), one of them at most
# per assignment; up to CUSTOM_WINDOW tasks a client held at once, running or waiting.
SANDBOXES_PER_PROCESS = 2
CUSTOM_PER_ASSIGNMENT = 1
CUSTOM_NICE = 10
CUSTOM_WINDOW = 4


def pool_for(realtime: bool) -> str:
    """solo runs one task at a time, right in the consumer; a real-time client spends most of
    a task waiting for its readings, so there each process runs its clients in threads (as
    it does for clients slowed down by $OODIDA_EDGE_DELAY, a test and benchmark aid)."""
    return "threads" if realtime or edge_delay() else EDGE_POOL


REALTIME_THREADS = 8  # at least this many readings at once: a live vehicle serves several assignments


def edge_concurrency(n_clients: int, requested: int = 0, pool: str = EDGE_POOL) -> int:
    """Tasks one edge process runs at once: solo runs one; threads (real-time and live clients,
    whose tasks mostly wait for readings) one per client, at least 8 so that one vehicle reads
    for several assignments at once, up to 16 (or ``--concurrency``)."""
    if pool in ("solo", "celery-solo"):
        return 1
    return requested or min(max(n_clients, REALTIME_THREADS), 16)


def lanes_for(pool: str, threads: int, n_clients: int, max_assignments: int = 10) -> tuple[str, int]:
    """The Celery pool and concurrency of an edge process: built-in tasks on ``pool`` (solo: in
    the consumer; threads: ``threads`` threads), custom tasks in lanes of their own, so that
    none waits for another's custom code. The concurrency is the prefetch window for built-in
    tasks: a custom task waiting for its lane widens it by one (pool.py ``Window``), up to
    ``max_assignments`` tasks per client served for each user.
    ``OODIDA_EDGE_POOL=celery-solo`` (or ``celery-threads``, any other Celery pool) runs every
    task on Celery's own pool, custom ones too, as before issue 12 (for comparisons)."""
    if pool not in ("solo", "threads"):
        return pool.removeprefix("celery-"), threads
    # Real-time custom tasks spend most of their time waiting for readings, in their lane:
    # there one lane more than threads (sharing the sandbox servers), all but one per assignment.
    lanes = SANDBOXES_PER_PROCESS if pool == "solo" else max(SANDBOXES_PER_PROCESS, threads + 1)
    EdgePool.configure(
        custom_threads=lanes,
        per_assignment=CUSTOM_PER_ASSIGNMENT if pool == "solo" else lanes - 1,
        nice=CUSTOM_NICE,
        fast_threads=threads if pool == "threads" else 0,
        waiting_per_user=max_assignments * max(1, n_clients),
    )
    return f"{EdgePool.__module__}:{EdgePool.__name__}", threads + max(16, CUSTOM_WINDOW * n_clients)


def default_processes(n_clients: int) -> int:
    """Worker processes for a simulated fleet of ``n_clients``."""
    if n_clients < MIN_SPLIT:
        return 1
    cap = max(2, 2 * (os.cpu_count() or 1))
    return max(2, min(cap, math.ceil(n_clients / CLIENTS_PER_PROCESS)))


def split(ids: Sequence[int], parts: int) -> list[list[int]]:
    """Contiguous, nearly equal slices."""
    parts = max(1, min(parts, len(ids)))
    size, extra = divmod(len(ids), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(list(ids[start:end]))
        start = end
    return out


def worker_name(ids: Sequence[int]) -> str:
    return f"client-{ids[0]}" if len(ids) == 1 else f"clients-{format_ranges(ids).replace(',', '_')}"


def serve(
    ids: list[int],
    settings: Settings,
    realtime: bool,
    concurrency: int,
    loglevel: str,
    sensors: Source,
    tags: dict[int, dict[str, str]] | None = None,
) -> None:
    """Run one Celery worker process for the clients ``ids``, reading ``sensors`` (checked);
    returns when it shut down. Each client registers the catalogue its source delivers and
    its ``tags`` (checked: protocol/tags.py)."""
    catalogues = {c: sensors.catalogue(c) for c in ids}
    if isinstance(sensors, LiveSource):
        sensors.start()  # the devices connect while the worker starts, not at the first task
    app = make_celery_app(settings, "oodida-edge", edge=True)
    client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
    # What the edge only reads (code, assignment state) may come through a read-only ACL user.
    reader = (
        redis.Redis.from_url(settings.read_url, health_check_interval=30) if settings.read_url else client
    )
    keys = Keys(settings.key_prefix)
    policy = CodePolicy.from_env()
    codestore = CodeStore(client, keys, ttl=settings.assignment_ttl, reader=reader)
    EdgePool.resolve_with(codestore.onboard_version)
    pool = pool_for(realtime)
    threads = edge_concurrency(len(ids), concurrency, pool)
    pool, threads = lanes_for(pool, threads, len(ids), settings.max_assignments)
    app.conf.worker_pool = pool
    sandbox = Sandbox(max_children=SANDBOXES_PER_PROCESS)
    announce_jail(sandbox, log)
    code = CodeRunner(codestore, sandbox, policy)
    installer = Installer(codestore, policy, set(ids))
    runner = OnboardRunner(reader, keys, sensors, code, realtime=realtime)
    register_edge_tasks(app, runner, installer)
    # Deployments sent while these clients were offline, installed before the worker takes any
    # task: a custom task that waited in the queue ahead of its install runs the new version.
    # (A client that stayed up takes its installs in queue order, so a deployment switches it
    # between two of its tasks, as it switches every other client.)
    for cid in ids:
        try:
            installer.install_pending(cid)
        except redis.exceptions.RedisError:
            log.warning("client %d: could not read its pending deployments; at its first custom task", cid)
    registry = Registry(client, settings)
    host = socket.gethostname()
    name = f"{worker_name(ids)}@{host}"
    infos = [
        ClientInfo(
            client_id=c,
            signals=tuple(e.signal for e in catalogues[c]),
            source=sensors.kind,
            catalogue=tuple(
                CatalogueEntry(
                    signal=e.signal, vss=e.vss, unit=e.unit, low=e.low, high=e.high, origin=e.origin
                )
                for e in catalogues[c]
            ),
            tags=(tags or {}).get(c, {}),
            worker=name,
            hostname=host,
            pid=os.getpid(),
            started_at=time.time(),
        )
        for c in ids
    ]
    # Registered, kept live and unregistered with the worker (a bootstep: bootsteps.py).
    app.steps["worker"].add(Heartbeat.for_clients(registry, infos))

    def on_ready(**_: Any) -> None:
        log.info("%s ready: clients %s", name, format_ranges(ids))

    def on_shutdown(**_: Any) -> None:
        code.close()
        sensors.close()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(client_queue(c) for c in ids),
            # Celery's --pool takes only its own names; a class is named by worker_pool.
            *(["--pool", pool] if ":" not in pool else []),
            "--concurrency",
            str(threads),
            "--hostname",
            name,
            "--loglevel",
            loglevel,
            "--without-mingle",
            "--without-gossip",
        ]
    )


class Supervisor:
    """Starts one child process per slice of clients, restarts a child that dies, stops all."""

    def __init__(self, slices: list[list[int]], child_args: list[str], env: dict[str, str]) -> None:
        self.slices = slices
        self.child_args = child_args
        self.env = env
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def _spawn(self, index: int) -> None:
        ids = format_ranges(self.slices[index])
        cmd = [sys.executable, "-m", "oodida_edge", "--clients", ids, "--processes", "1", *self.child_args]
        self.children[index] = subprocess.Popen(cmd, env=self.env, preexec_fn=die_with_parent())

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for index in range(len(self.slices)):
            self._spawn(index)
        restarts: list[float] = []
        while not self.stopping:
            time.sleep(0.5)
            for index, child in list(self.children.items()):
                code = child.poll()
                if code is None or self.stopping:
                    continue
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 60] + [now]
                if len(restarts) > 10 * len(self.slices):
                    log.error("edge processes keep dying; giving up")
                    self._stop(signal.SIGTERM, None)
                    break
                log.warning(
                    "edge process for clients %s exited with %s; restarting",
                    format_ranges(self.slices[index]),
                    code,
                )
                self._spawn(index)
        deadline = time.monotonic() + 20
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oodida-edge", description=__doc__)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--client-id", type=int, help="serve this one client")
    who.add_argument("--clients", help="serve a simulated fleet, e.g. 1-20 or 1,3,5-9")
    parser.add_argument(
        "--processes",
        type=int,
        help=f"worker processes (default: 1 below {MIN_SPLIT} clients, "
        f"else one per {CLIENTS_PER_PROCESS} and at least 2)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="threads per process with --realtime or a live source (default: its clients, at least "
        f"{REALTIME_THREADS}, at most 16)",
    )
    parser.add_argument("--realtime", action="store_true", help="take samples/frequency seconds per task")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--source",
        metavar="KIND[:TARGET]",
        default=os.environ.get("OODIDA_SOURCE") or None,
        help="where the readings come from (default: $OODIDA_SOURCE, else sim): sim, csv:PATH, "
        "mdf:PATH, canlog:PATH (with --dbc), obd:PORT (a device or socket://HOST:PORT), "
        "can:INTERFACE:CHANNEL[?bitrate=N] (with --dbc); {client} in a PORT or CHANNEL is the "
        "client id; checked at start-up (files load, devices answer)",
    )
    where.add_argument(
        "--replay",
        metavar="DIR|FILE",
        help="the same as --source csv:DIR|FILE: a CSV file every client shares (each from its own "
        "offset), or a directory of <client id>.csv files (a client without one shares its drive.csv)",
    )
    parser.add_argument(
        "--dbc",
        metavar="FILE",
        default=os.environ.get("OODIDA_DBC") or None,
        help="the DBC file that decodes a CAN source's frames (default: $OODIDA_DBC)",
    )
    parser.add_argument(
        "--mapping",
        metavar="FILE",
        default=os.environ.get("OODIDA_MAPPING") or None,
        help="YAML or JSON: which DBC signal, OBD command or MDF channel delivers which signal, with "
        "unit conversions and signals beyond the six (default: $OODIDA_MAPPING)",
    )
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="[IDS:]KEY=VALUE",
        help=f"a tag of the clients (repeatable; after ${TAGS_ENV}, a comma list): powertrain=ev for all, "
        "1-50:region=eu for clients 1-50; a later value of a key replaces an earlier one",
    )
    parser.add_argument("--tags-checked", action="store_true", help=argparse.SUPPRESS)  # a child
    parser.add_argument(
        "--check", action="store_true", help="only check the options and the source, then exit"
    )
    parser.add_argument("--redis-url", help="broker URL (default: $OODIDA_REDIS_URL)")
    parser.add_argument("--loglevel", default=os.environ.get("OODIDA_LOGLEVEL", "INFO"))
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.client_id is not None:
        if args.client_id < 1:
            parser.error("--client-id must be a positive integer")
        ids = [args.client_id]
    else:
        try:
            ids = parse_id_ranges(args.clients)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        items = [*split_items(os.environ.get(TAGS_ENV, "")), *args.tag]
        tags = tags_for_clients(items, ids, strict=not args.tags_checked)
    except ValueError as exc:
        parser.error(f"--tag / ${TAGS_ENV} ({OPTION_FORM}): {exc}")
    processes = args.processes or default_processes(len(ids))
    if processes < 1:
        parser.error("--processes must be at least 1")
    try:
        edge_delay()
    except ValueError as exc:
        parser.error(str(exc))

    try:
        spec = parse_source(f"csv:{args.replay}" if args.replay is not None else (args.source or "sim"))
    except SourceError as exc:
        parser.exit(2, f"oodida-edge: {exc}\n")
    option = "--replay" if args.replay is not None else "--source"
    try:
        if spec.kind in ("csv", "mdf", "canlog"):
            spec = SourceSpec(spec.kind, str(resolved(spec.target)))
        dbc = resolved(args.dbc) if args.dbc else None
        mapping = resolved(args.mapping) if args.mapping else None
    except SourceError as exc:
        parser.exit(2, f"oodida-edge: {option}: {exc}\n")
    sensors: Source | None = None
    try:
        # One process: the source built here serves it. Several: each child builds its own
        # clients' source; a recorded one is checked here first (a live device is opened by
        # the child that serves it, and here too by --check).
        if processes == 1 or not spec.live or args.check:
            sensors = build_source(spec, ids, dbc=dbc, mapping=mapping)
    except SourceError as exc:
        parser.exit(2, f"oodida-edge: {option}: {exc}\n")
    realtime = args.realtime or spec.live  # a live source reads in real time, on the threads pool
    if args.check:
        if sensors is not None:
            sensors.close()
        print(f"oodida-edge: clients {format_ranges(ids)}: source {spec}, ok")
        return

    settings = Settings.from_env(redis_url=args.redis_url)
    setup_logging(args.loglevel)
    if processes == 1:
        assert sensors is not None
        serve(ids, settings, realtime, args.concurrency, args.loglevel, sensors, tags)
        return
    if sensors is not None:
        sensors.close()
    child_args = ["--loglevel", args.loglevel, "--concurrency", str(args.concurrency), "--source", str(spec)]
    child_args += [*(f"--tag={item}" for item in args.tag), "--tags-checked"]
    if realtime:
        child_args.append("--realtime")
    child_args += [*(["--dbc", str(dbc)] if dbc else []), *(["--mapping", str(mapping)] if mapping else [])]
    env = {**os.environ, **settings.to_env()}
    sys.exit(Supervisor(split(ids, processes), child_args, env).run())


if __name__ == "__main__":
    main()
