"""End-to-end latency of one OODIDA iteration against bare Celery chords with the same layout.

    .venv/bin/python benchmarks/bench_core.py [--clients 1,20,100] [--repeats 10] [--json out.json]

One embedded Redis; db 0 serves OODIDA (``LocalSystem``), db 1 the bare baselines
(``bare_app.py``): the same worker processes over the same queues ``client.1..client.N`` plus one
``cloud`` worker, the same threads pool and concurrency, the same Celery settings. Three columns:

* ours: ``submit(spec).wait()`` with the library (caller -> cloud -> chord -> callback on cloud).
* bare: the caller publishes ``chord(noop per client)(done)`` itself and ``get()``s the result.
* bare+hop: the caller sends ``bench.start`` to ``cloud`` (``ignore_result``, as the library
  sends); the cloud worker publishes the same chord, its callback under a task id the caller
  chose, and the caller ``get()``s that id. OODIDA's hop structure without OODIDA's code.

After 2 warm-up runs of each, every repeat runs all three, in an order that rotates per repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import celery
import kombu
import redis
from bare_app import READY_KEY, make_app
from celery import Celery, chord

from oodida_core.protocol.keys import CLOUD_QUEUE, client_queue
from oodida_core.spec.model import LISTING_1_1
from oodida_edge._worker import EDGE_POOL, default_processes, edge_concurrency, split, worker_name
from oodida_ops.local import LocalSystem
from oodida_ops.redis_server import EmbeddedRedis
from oodida_user import Oodida

HERE = Path(__file__).resolve().parent
WARMUP = 2
SPEC: dict[str, Any] = {**LISTING_1_1, "name": "bench", "mode": "measurement"}


class BareFleet:
    """Bare Celery workers laid out as LocalSystem lays out OODIDA's: a cloud worker, and the
    client queues split over ``default_processes(n)`` processes with the edge's concurrency."""

    def __init__(self, url: str, n: int, log_dir: Path, cloud_concurrency: int) -> None:
        self.url = url
        self.log_dir = log_dir
        slices = split(list(range(1, n + 1)), default_processes(n)) if n else []
        self.layout = [("bare-cloud", CLOUD_QUEUE, cloud_concurrency)] + [
            (f"bare-{worker_name(ids)}", ",".join(client_queue(c) for c in ids), edge_concurrency(len(ids)))
            for ids in slices
        ]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 60.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, queues, concurrency in self.layout:
            with open(self.log_dir / f"{name}.log", "ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(HERE / "bare_app.py"),
                            "--redis-url",
                            self.url,
                            "--queues",
                            queues,
                            "--concurrency",
                            str(concurrency),
                            "--name",
                            name,
                            "--pool",
                            "threads" if name == "bare-cloud" else EDGE_POOL,
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        want = {f"{name}@{socket.gethostname()}".encode() for name, _, _ in self.layout}
        client = redis.Redis.from_url(self.url)
        try:
            deadline = time.monotonic() + timeout
            while not want <= client.smembers(READY_KEY):
                if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                    raise RuntimeError(f"bare workers did not start (logs in {self.log_dir})")
                time.sleep(0.1)
        finally:
            client.close()

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


def run_ours(o: Oodida, n: int) -> tuple[float, dict[str, float]]:
    t0, w0 = time.perf_counter(), time.time()
    result = o.submit(SPEC).wait(progress=False)
    elapsed, w1 = time.perf_counter() - t0, time.time()
    it = result.iterations[0] if result.iterations else None
    if result.status != "done" or it is None or len(it.onboard) != n:
        raise RuntimeError(f"OODIDA run went wrong: {result.status} {it}")
    assert result.started_at is not None and result.finished_at is not None
    phases = {  # wall-clock stamps written by the library, the cloud and the store
        "submit->cloud accepted": result.started_at - w0,
        "accepted->iteration aggregated": it.finished_at - result.started_at,
        "aggregated->assignment done": result.finished_at - it.finished_at,
        "done->wait() returned": w1 - result.finished_at,
    }
    return elapsed, phases


def run_bare(app: Celery, n: int) -> float:
    noop, done = app.tasks["bench.noop"], app.tasks["bench.done"]
    t0 = time.perf_counter()
    header = [noop.s().set(queue=client_queue(i)) for i in range(1, n + 1)]
    value = chord(header)(done.s().set(queue=CLOUD_QUEUE)).get(timeout=120)
    elapsed = time.perf_counter() - t0
    if value != n:
        raise RuntimeError(f"bare chord returned {value!r}, expected {n}")
    return elapsed


def run_bare_hop(app: Celery, n: int) -> float:
    callback_id = uuid.uuid4().hex
    t0 = time.perf_counter()
    # Sent as the library sends an assignment: no result, message and its event in one trip.
    with app.producer_or_acquire() as producer, producer.batch():
        app.send_task(
            "bench.start",
            args=(n, callback_id),
            queue=CLOUD_QUEUE,
            ignore_result=True,
            producer=producer,
        )
    value = app.AsyncResult(callback_id).get(timeout=120)
    elapsed = time.perf_counter() - t0
    if value != n:
        raise RuntimeError(f"bare+hop chord returned {value!r}, expected {n}")
    return elapsed


ORDER = ("ours", "bare", "hop")


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]


def measure(n: int, repeats: int, db0: str, db1: str, tmp: Path) -> dict[str, Any]:
    for url in (db0, db1):
        with contextlib.closing(redis.Redis.from_url(url)) as client:
            client.flushdb()
    system = LocalSystem(n, redis_url=db0, data_dir=tmp / f"oodida-{n}", loglevel="WARNING")
    bare = BareFleet(db1, n, tmp / f"bare-{n}", system.settings.cloud_concurrency)
    o: Oodida | None = None
    app: Celery | None = None
    try:
        system.start()
        bare.start()
        o, app = (
            Oodida(db0, user="bench", token=system.token("bench"), settings=system.settings),
            make_app(db1),
        )
        for _ in range(WARMUP):
            run_ours(o, n)
            run_bare(app, n)
            run_bare_hop(app, n)
        runs: dict[str, list[float]] = {which: [] for which in ORDER}
        phases: dict[str, list[float]] = {}
        for r in range(repeats):
            # ours, bare, hop / bare, hop, ours / hop, ours, bare / ...
            for which in ORDER[r % 3 :] + ORDER[: r % 3]:
                if which == "ours":
                    elapsed, ph = run_ours(o, n)
                    for k, v in ph.items():
                        phases.setdefault(k, []).append(v)
                elif which == "bare":
                    elapsed = run_bare(app, n)
                else:
                    elapsed = run_bare_hop(app, n)
                runs[which].append(elapsed)
    finally:
        if o is not None:
            o.close()
        if app is not None:
            app.close()
        bare.stop()
        system.stop()
    med = {which: statistics.median(values) for which, values in runs.items()}

    def figures(which: str) -> dict[str, Any]:
        values = runs[which]
        return {"median": med[which] * 1e3, "p90": p90(values) * 1e3, "runs": [x * 1e3 for x in values]}

    return {
        "clients": n,
        "processes": {"edge": default_processes(n) if n else 0, "cloud": 1},
        "ours_ms": figures("ours"),
        "bare_ms": figures("bare"),
        "bare_hop_ms": figures("hop"),
        "ratio": med["ours"] / med["bare"],  # the target: <= 1.30
        "ratio_hop": med["ours"] / med["hop"],
        "ours_per_client_ms": med["ours"] * 1e3 / n,
        "bare_per_client_ms": med["bare"] * 1e3 / n,
        "bare_hop_per_client_ms": med["hop"] * 1e3 / n,
        "ours_phases_median_ms": {k: statistics.median(v) * 1e3 for k, v in phases.items()},
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis-py": redis.__version__,
    }


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,20,100", help="comma-separated fleet sizes")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each, after 2 warm-ups")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.clients.split(",") if x.strip()]
    if not sizes or min(sizes) < 1 or args.repeats < 1:
        parser.error("--clients needs positive integers and --repeats at least 1")
    # SIGTERM unwinds like Ctrl-C, so every finally below runs and every child is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="oodida-bench-"))
    server = EmbeddedRedis(tmp / "redis")
    rows: list[dict[str, Any]] = []
    try:
        server.start()
        db0, db1 = server.url, server.url.rsplit("/", 1)[0] + "/1"
        print(f"redis-server on port {server.port}: OODIDA on db 0, bare Celery on db 1", flush=True)
        for n in sizes:
            print(f"N={n}: {WARMUP} warm-ups + {args.repeats} runs of ours, bare, bare+hop ...", flush=True)
            rows.append(measure(n, args.repeats, db0, db1, tmp))
    finally:
        server.stop()
        if port_free(server.port):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"warning: port {server.port} still in use; kept {tmp}", file=sys.stderr)

    head = (
        f"{'N':>5} {'ours med':>9} {'ours p90':>9} {'bare med':>9} {'bare p90':>9} "
        f"{'hop med':>9} {'hop p90':>9} {'ours/bare':>9} {'ours/hop':>9} {'ours/client':>11}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['clients']:>5} {r['ours_ms']['median']:>9.1f} {r['ours_ms']['p90']:>9.1f} "
            f"{r['bare_ms']['median']:>9.1f} {r['bare_ms']['p90']:>9.1f} "
            f"{r['bare_hop_ms']['median']:>9.1f} {r['bare_hop_ms']['p90']:>9.1f} "
            f"{r['ratio']:>9.2f} {r['ratio_hop']:>9.2f} {r['ours_per_client_ms']:>11.2f}"
        )
    print(
        "(ms; hop = bare+hop; ours/bare = ours median / bare median, target <= 1.30; "
        "ours/hop = ours median / bare+hop median)"
    )
    for r in rows:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["ours_phases_median_ms"].items())
        print(f"N={r['clients']} ours, median ms per phase: {phases}")
    if args.json:
        report = {"machine": info, "repeats": args.repeats, "results": rows}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
