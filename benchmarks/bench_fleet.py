"""Fleet scale (issue 4): OODIDA on 1 to 1,000 simulated clients against bare Celery, in one run.

    .venv/bin/python benchmarks/bench_fleet.py [--quick] [--json out.json] [--plot out.png]

Every row measures ours next to a bare Celery baseline in the same run and prints the ratio:

1. scale: a one-iteration ``average`` assignment (``submit(spec).wait()``, all clients) over
   N = 1, 10, 100, 1000 clients, next to a bare chord of no-op tasks over the same queues
   ``client.1..client.N`` (callback on ``cloud``) with two layouts: the NAIVE one (one bare worker
   process consuming every client queue) and OUR one (``default_processes(N)`` processes, the
   edge's pool). Three fleets, one per Redis db, all up at once; the order of the three columns
   rotates per repeat. For information, ours is also timed alone, before the bare fleets start.
2. throughput: 8 analyst threads, each with its own ``Oodida``, submit small assignments (5
   clients, 1 iteration) for a fixed window on a 20-client fleet, next to 8 threads publishing
   bare chords of 5 no-ops over the same 5-queue subsets on a bare fleet with the same layout.
3. drift: one 50-iteration assignment over 100 clients, time per iteration, the median of the
   first 10 against the last 10; next to 50 back-to-back bare chords over the same queues.
4. memory: resident memory (VmRSS from /proc) of every edge process incl. the supervisor, and
   separately the cloud worker and Redis, for each N of row 1 (measured while only OODIDA was up).
5. active-code replacement (stage ``code``): ``bench_code.py`` run in this process, its rows and ratios.

All bare workers are ``benchmarks/bare_app.py`` built by the project's ``make_celery_app`` (the
same serialiser, late acks, prefetch 1, events, ``priority_steps=[0]``, ...). Each stage starts
its own ``redis-server`` and every process it starts in its own process group, and stops them
all when it ends, including on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bench_code
import redis
from bare_app import READY_KEY, make_app
from bench_core import HERE, machine, p90, port_free, run_bare, run_ours
from celery import Celery, chord

from oodida_core.protocol.keys import CLOUD_QUEUE, client_queue
from oodida_core.settings import Settings
from oodida_edge._worker import EDGE_POOL, default_processes, edge_concurrency, split, worker_name
from oodida_ops.local import LocalSystem
from oodida_ops.redis_server import EmbeddedRedis
from oodida_user import Oodida

MIB = 1024 * 1024
GIB = 1024 * MIB
USER = "bench"
CLOUD_POOL = "threads"  # what oodida_cloud runs

# Targets of issue 4 (this machine, loopback).
T_NAIVE = 4.5  # naive bare / ours at 1000 clients, at least
T_SCALE = 1.5  # ours per client at 1000 / at 100, at most
T_BARE = 1.3  # ours / bare with our layout for N = 1, 10, 100, at most
T_ITER_1000 = 2.0  # seconds for one 1000-client iteration, at most (moonshot 1 s)
T_THROUGHPUT = 0.8  # ours / bare chords per second, at least
T_DRIFT = 1.10  # last 10 / first 10 iterations: "must not grow"; 10 % allowed for noise
T_MEMORY = 1.5 * GIB  # the whole 1000-client fleet (edge processes), below


# -- processes -------------------------------------------------------------------------------------
class Workers:
    """Bare Celery workers (``bare_app.py``) from an explicit layout of
    (name, queues, pool, concurrency); each in its own process group."""

    def __init__(
        self, url: str, layout: list[tuple[str, list[str], str, int]], log_dir: Path, stock: bool = False
    ) -> None:
        self.url = url
        self.layout = layout
        self.log_dir = log_dir
        self.stock = stock
        self.procs: list[subprocess.Popen[bytes]] = []

    @classmethod
    def naive(
        cls, url: str, n: int, log_dir: Path, pool: str, cloud_concurrency: int, stock: bool
    ) -> Workers:
        """One process consuming every client queue (the layout the issue measured at ~9 s); with
        ``stock`` on Celery's default transport options, else on ours (``priority_steps=[0]``)."""
        return cls(
            url,
            [
                ("naive-cloud", [CLOUD_QUEUE], CLOUD_POOL, cloud_concurrency),
                (
                    f"naive-{worker_name(list(range(1, n + 1)))}",
                    [client_queue(c) for c in range(1, n + 1)],
                    pool,
                    edge_concurrency(n, pool=pool),
                ),
            ],
            log_dir,
            stock,
        )

    @classmethod
    def ours(cls, url: str, n: int, log_dir: Path, cloud_concurrency: int) -> Workers:
        """The layout of ``oodida-edge --clients 1-N`` (as ``bench_core.BareFleet``), no supervisor."""
        return cls(
            url,
            [("bare-cloud", [CLOUD_QUEUE], CLOUD_POOL, cloud_concurrency)]
            + [
                (
                    f"bare-{worker_name(ids)}",
                    [client_queue(c) for c in ids],
                    EDGE_POOL,
                    edge_concurrency(len(ids)),
                )
                for ids in split(list(range(1, n + 1)), default_processes(n))
            ],
            log_dir,
        )

    def describe(self) -> str:
        edge = [(len(q), pool, c) for name, q, pool, c in self.layout if CLOUD_QUEUE not in q]
        return f"{len(edge)} x {'/'.join(sorted({str(q) for q, _, _ in edge}))} queues, {edge[0][1]} pool" + (
            ", Celery's default transport options" if self.stock else ""
        )

    def start(self, timeout: float = 120.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, queues, pool, concurrency in self.layout:
            with open(self.log_dir / f"{name}.log", "ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(HERE / "bare_app.py"),
                            "--redis-url",
                            self.url,
                            "--queues",
                            ",".join(queues),
                            "--concurrency",
                            str(concurrency),
                            "--name",
                            name,
                            "--pool",
                            pool,
                        ]
                        + (["--stock"] if self.stock else []),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        want = {f"{name}@{socket.gethostname()}".encode() for name, _, _, _ in self.layout}
        with contextlib.closing(redis.Redis.from_url(self.url)) as client:
            deadline = time.monotonic() + timeout
            while not want <= client.smembers(READY_KEY):
                if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                    raise RuntimeError(f"bare workers did not start (logs in {self.log_dir})")
                time.sleep(0.1)

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


@contextlib.contextmanager
def redis_server(tmp: Path, name: str) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp / name)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if not port_free(server.port):
            print(f"warning: port {server.port} still in use after stopping Redis", file=sys.stderr)


def db_url(server: EmbeddedRedis, db: int) -> str:
    return server.url.rsplit("/", 1)[0] + f"/{db}"


# -- memory ----------------------------------------------------------------------------------------
def _pgid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[2])  # fields after the command: state ppid pgrp


def _kib(pid: int, path: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_memory(pgid: int) -> dict[str, Any]:
    """RSS (and PSS) of every process in process group ``pgid``, from /proc."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    members = sorted(p for p in pids if _pgid(p) == pgid)
    rss = {p: _kib(p, "status", "VmRSS") * 1024 for p in members}
    pss = sum(_kib(p, "smaps_rollup", "Pss") * 1024 for p in members)
    return {"processes": len(members), "rss": sum(rss.values()), "pss": pss, "rss_each": list(rss.values())}


def memory(system: LocalSystem, server: EmbeddedRedis, n: int) -> dict[str, Any]:
    edge = group_memory(system.procs["fleet"].pid)  # LocalSystem starts each role in its own session
    cloud = group_memory(system.procs["cloud-1"].pid)
    assert server.process is not None
    red = {"processes": 1, "rss": _kib(server.process.pid, "status", "VmRSS") * 1024}
    return {
        "edge": edge,
        "cloud": cloud,
        "redis": red,
        "edge_per_client_mib": edge["rss"] / n / MIB,
        "total_rss": edge["rss"] + cloud["rss"] + red["rss"],
    }


# -- row 1: scale ----------------------------------------------------------------------------------
ORDER = ("ours", "bare", "naive", "tuned")


def figures(values: list[float]) -> dict[str, Any]:
    """Seconds in, ms out."""
    return {
        "median": statistics.median(values) * 1e3,
        "p90": p90(values) * 1e3,
        "runs": [round(x * 1e3, 2) for x in values],
    }


def scale(n: int, repeats: int, warmup: int, naive_pool: str, tmp: Path) -> dict[str, Any]:
    with redis_server(tmp, f"redis-scale-{n}") as server:
        db0, db1, db2, db3 = (db_url(server, d) for d in (0, 1, 2, 3))
        system = LocalSystem(
            n, redis_url=db0, data_dir=tmp / f"oodida-{n}", loglevel="WARNING", startup_timeout=300
        )
        cc = system.settings.cloud_concurrency
        bare = Workers.ours(db1, n, tmp / f"bare-{n}", cc)
        naive = Workers.naive(db2, n, tmp / f"naive-{n}", naive_pool, cc, stock=True)
        tuned = Workers.naive(db3, n, tmp / f"tuned-{n}", naive_pool, cc, stock=False)
        o: Oodida | None = None
        apps: dict[str, Celery] = {}
        try:
            t0 = time.perf_counter()
            system.start()
            started = time.perf_counter() - t0
            o = Oodida(db0, user=USER, token=system.token(USER), settings=system.settings)
            for _ in range(warmup):
                run_ours(o, n)
            # Memory while only OODIDA is up (Redis then holds nothing else), after real work.
            mem = memory(system, server, n)
            # For information: ours before the bare fleets exist (not alternated with them).
            alone = [run_ours(o, n)[0] for _ in range(repeats)]
            bare.start()
            naive.start()
            tuned.start()
            apps = {"bare": make_app(db1), "naive": make_app(db2, stock=True), "tuned": make_app(db3)}
            for _ in range(warmup):
                for app in apps.values():
                    run_bare(app, n)
            runs: dict[str, list[float]] = {w: [] for w in ORDER}
            phases: dict[str, list[float]] = {}
            for r in range(repeats):
                for which in ORDER[r % len(ORDER) :] + ORDER[: r % len(ORDER)]:
                    if which == "ours":
                        elapsed, ph = run_ours(o, n)
                        for k, v in ph.items():
                            phases.setdefault(k, []).append(v)
                    else:
                        elapsed = run_bare(apps[which], n)
                    runs[which].append(elapsed)
                print(
                    f"  repeat {r + 1}: " + ", ".join(f"{w} {runs[w][-1] * 1e3:.0f} ms" for w in ORDER),
                    flush=True,
                )
            mem_after = memory(system, server, n)
        finally:
            if o is not None:
                o.close()
            gc.collect()  # unsubscribes chord results (AsyncResult.__del__) while Redis is up
            for app in apps.values():
                app.close()
            tuned.stop()
            naive.stop()
            bare.stop()
            system.stop()
    med = {w: statistics.median(v) for w, v in runs.items()}
    return {
        "clients": n,
        "layout": {
            "ours": f"{default_processes(n)} edge process(es) of {EDGE_POOL}"
            + (" + supervisor" if default_processes(n) > 1 else "")
            + ", 1 cloud worker",
            "bare": bare.describe(),
            "naive": naive.describe(),
            "tuned": tuned.describe(),
        },
        "startup_s": started,
        "ours_ms": figures(runs["ours"]),
        "bare_ms": figures(runs["bare"]),
        "naive_ms": figures(runs["naive"]),
        "tuned_ms": figures(runs["tuned"]),
        "ours_alone_ms": figures(alone),
        "ours_per_client_ms": med["ours"] * 1e3 / n,
        "bare_per_client_ms": med["bare"] * 1e3 / n,
        "naive_per_client_ms": med["naive"] * 1e3 / n,
        "tuned_per_client_ms": med["tuned"] * 1e3 / n,
        "ratio_ours_bare": med["ours"] / med["bare"],
        "ratio_naive_ours": med["naive"] / med["ours"],
        "ratio_tuned_ours": med["tuned"] / med["ours"],
        "ours_phases_median_ms": {k: statistics.median(v) * 1e3 for k, v in phases.items()},
        "memory": mem,
        "memory_after_runs": {k: mem_after[k] for k in ("edge", "cloud")},
    }


# -- row 2: throughput -----------------------------------------------------------------------------
def small_spec(clients: list[int]) -> dict[str, Any]:
    return {
        "name": "bench-small",
        "mode": "measurement",
        "clients": clients,
        "signals": ["speed"],
        "onboard": "average",
        "offboard": "collect",
        "frequency": 1,
        "samples": 1000,
        "iterations": 1,
    }


def closed_loop(
    workers: list[Callable[[list[int]], None]], subsets: list[list[int]], window: float
) -> dict[str, Any]:
    """Each worker in its own thread runs back to back until the window ends, thread t on subset
    (t + k) mod len(subsets) for its k-th call. Counts the calls that ended inside the window."""
    barrier = threading.Barrier(len(workers) + 1)
    ends: list[list[float]] = [[] for _ in workers]
    errors: list[BaseException] = []
    t0 = 0.0

    def loop(t: int) -> None:
        barrier.wait()
        k = 0
        try:
            while time.perf_counter() < t0 + window and not errors:
                workers[t](subsets[(t + k) % len(subsets)])
                ends[t].append(time.perf_counter())
                k += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(t,), daemon=True) for t in range(len(workers))]
    for th in threads:
        th.start()
    t0 = time.perf_counter()
    barrier.wait()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    inside = sum(1 for e in ends for x in e if x <= t0 + window)
    return {"completed": inside, "rate": inside / window, "per_thread": [len(e) for e in ends]}


def throughput(n: int, threads: int, size: int, window: float, rounds: int, tmp: Path) -> dict[str, Any]:
    subsets = [list(range(i, i + size)) for i in range(1, n - size + 2, size)]
    with redis_server(tmp, "redis-throughput") as server:
        db0, db1 = db_url(server, 0), db_url(server, 1)
        system = LocalSystem(n, redis_url=db0, data_dir=tmp / "oodida-tp", loglevel="WARNING")
        bare = Workers.ours(db1, n, tmp / "bare-tp", system.settings.cloud_concurrency)
        analysts: list[Oodida] = []
        apps: list[Celery] = []
        try:
            system.start()
            bare.start()
            settings: Settings = system.settings
            analysts = [
                Oodida(db0, user=f"{USER}{t}", token=system.token(f"{USER}{t}"), settings=settings)
                for t in range(threads)
            ]
            apps = [make_app(db1) for _ in range(threads)]

            def ours_fn(o: Oodida) -> Callable[[list[int]], None]:
                def run(clients: list[int]) -> None:
                    result = o.submit(small_spec(clients)).wait(progress=False)
                    if result.status != "done" or len(result.iterations[0].onboard) != len(clients):
                        raise RuntimeError(f"small assignment went wrong: {result.status} {result.error}")

                return run

            def bare_fn(app: Celery) -> Callable[[list[int]], None]:
                noop, done = app.tasks["bench.noop"], app.tasks["bench.done"]

                def run(clients: list[int]) -> None:
                    header = [noop.s().set(queue=client_queue(c)) for c in clients]
                    if chord(header)(done.s().set(queue=CLOUD_QUEUE)).get(timeout=60) != len(clients):
                        raise RuntimeError("bare chord went wrong")

                return run

            fns = {"ours": [ours_fn(o) for o in analysts], "bare": [bare_fn(a) for a in apps]}
            closed_loop(fns["ours"], subsets, min(2.0, window))  # warm-ups
            closed_loop(fns["bare"], subsets, min(2.0, window))
            out: dict[str, list[dict[str, Any]]] = {"ours": [], "bare": []}
            for r in range(rounds):
                for which in ("ours", "bare") if r % 2 == 0 else ("bare", "ours"):
                    out[which].append(closed_loop(fns[which], subsets, window))
                print(
                    f"  round {r + 1}: "
                    + ", ".join(f"{w} {out[w][-1]['rate']:.1f}/s" for w in ("ours", "bare")),
                    flush=True,
                )
        finally:
            for o in analysts:
                o.close()
            gc.collect()  # unsubscribes chord results (AsyncResult.__del__) while Redis is up
            for app in apps:
                app.close()
            bare.stop()
            system.stop()
    rate = {w: statistics.median(x["rate"] for x in v) for w, v in out.items()}
    return {
        "clients": n,
        "threads": threads,
        "assignment_clients": size,
        "subsets": subsets,
        "window_s": window,
        "rounds": rounds,
        "layout": bare.describe(),
        "ours_per_s": rate["ours"],
        "bare_per_s": rate["bare"],
        "ours_runs": out["ours"],
        "bare_runs": out["bare"],
        "ratio": rate["ours"] / rate["bare"],
    }


# -- row 3: drift over many iterations -------------------------------------------------------------
def drift(n: int, iterations: int, head: int, rounds: int, tmp: Path) -> dict[str, Any]:
    """``rounds`` x one ``iterations``-iteration assignment, then ``rounds`` x as many bare
    chords: the machine's speed changes within seconds here, so one round's last/first says
    little; the median over rounds is the figure."""
    with redis_server(tmp, "redis-drift") as server:
        db0, db1 = db_url(server, 0), db_url(server, 1)
        system = LocalSystem(n, redis_url=db0, data_dir=tmp / "oodida-drift", loglevel="WARNING")
        bare = Workers.ours(db1, n, tmp / "bare-drift", system.settings.cloud_concurrency)
        o: Oodida | None = None
        app: Celery | None = None
        per_round: list[dict[str, Any]] = []
        try:
            system.start()
            bare.start()
            o, app = Oodida(db0, user=USER, token=system.token(USER), settings=system.settings), make_app(db1)
            run_ours(o, n)
            run_bare(app, n)
            spec = {**small_spec([]), "name": "bench-drift", "clients": "all", "iterations": iterations}
            # Every round of ours first, then the bare rounds, so that neither inherits the
            # other's leftovers (result subscriptions, keys): interleaved, one run gave ours
            # 1.15, 1.28, 1.41 round after round, while three rounds of ours alone stayed flat.
            for _ in range(rounds):
                t0 = time.perf_counter()
                result = o.submit(spec).wait(progress=False)
                wall = time.perf_counter() - t0
                if result.status != "done" or len(result.iterations) != iterations:
                    raise RuntimeError(f"{iterations}-iteration assignment went wrong: {result.status}")
                if any(len(it.onboard) != n for it in result.iterations):
                    raise RuntimeError("an iteration lacks clients")
                its = sorted(result.iterations, key=lambda it: it.index)
                ours = [it.finished_at - it.started_at for it in its]
                gaps = [b.started_at - a.finished_at for a, b in itertools.pairwise(its)]
                per_round.append(
                    {
                        "ours_wall_s": wall,
                        "ours_per_iteration_ms": [round(x * 1e3, 2) for x in ours],
                        "ours_gap_ms": [round(x * 1e3, 2) for x in gaps],
                        "ours": ends(ours, head),
                    }
                )
            for r in range(rounds):
                bare_runs = [run_bare(app, n) for _ in range(iterations)]
                gc.collect()  # drop the chords' result subscriptions before the next round
                per_round[r]["bare_per_chord_ms"] = [round(x * 1e3, 2) for x in bare_runs]
                per_round[r]["bare"] = ends(bare_runs, head)
                print(
                    f"  round {r + 1}: ours last/first {per_round[r]['ours']['ratio']:.2f}, "
                    f"bare {per_round[r]['bare']['ratio']:.2f}",
                    flush=True,
                )
        finally:
            if o is not None:
                o.close()
            gc.collect()  # unsubscribes chord results (AsyncResult.__del__) while Redis is up
            if app is not None:
                app.close()
            bare.stop()
            system.stop()

    def over_rounds(side: str) -> dict[str, float]:
        return {k: statistics.median(r[side][k] for r in per_round) for k in ("first_ms", "last_ms", "ratio")}

    return {
        "clients": n,
        "iterations": iterations,
        "head": head,
        "rounds": per_round,
        "ours_wall_s": statistics.median(r["ours_wall_s"] for r in per_round),
        "ours_per_iteration_ms": per_round[0]["ours_per_iteration_ms"],
        "bare_per_chord_ms": per_round[0]["bare_per_chord_ms"],
        "ours": over_rounds("ours"),
        "bare": over_rounds("bare"),
        "ours_median_ms": statistics.median(x for r in per_round for x in r["ours_per_iteration_ms"]),
        "bare_median_ms": statistics.median(x for r in per_round for x in r["bare_per_chord_ms"]),
    }


def ends(values: list[float], head: int) -> dict[str, float]:
    first, last = statistics.median(values[:head]), statistics.median(values[-head:])
    return {"first_ms": first * 1e3, "last_ms": last * 1e3, "ratio": last / first}


# -- report ----------------------------------------------------------------------------------------
def verdicts(report: dict[str, Any]) -> list[tuple[str, float, str, bool | None]]:
    rows = {r["clients"]: r for r in report.get("scale", [])}
    out: list[tuple[str, float, str, bool | None]] = []
    for n in (1, 10, 100):
        if n in rows:
            v = rows[n]["ratio_ours_bare"]
            out.append((f"ours / bare (our layout), N={n}", v, f"<= {T_BARE}", v <= T_BARE))
    if 1000 in rows:
        r = rows[1000]
        out.append(("ours / bare (our layout), N=1000", r["ratio_ours_bare"], "(info)", None))
        v = r["ratio_naive_ours"]
        out.append(("naive bare (stock) / ours, N=1000", v, f">= {T_NAIVE}", v >= T_NAIVE))
        out.append(("naive bare (our options) / ours, N=1000", r["ratio_tuned_ours"], "(info)", None))
        s = r["ours_ms"]["median"] / 1e3
        out.append(("ours, one iteration at N=1000 (s)", s, f"<= {T_ITER_1000}", s <= T_ITER_1000))
        if 100 in rows:
            v = r["ours_per_client_ms"] / rows[100]["ours_per_client_ms"]
            out.append(("ours per client, N=1000 / N=100", v, f"<= {T_SCALE}", v <= T_SCALE))
        gib = r["memory"]["edge"]["rss"] / GIB
        out.append(("edge RSS of the 1000-client fleet (GiB)", gib, "< 1.5", gib < T_MEMORY / GIB))
    if "throughput" in report:
        v = report["throughput"]["ratio"]
        out.append(("throughput ours / bare", v, f">= {T_THROUGHPUT}", v >= T_THROUGHPUT))
    if "drift" in report:
        d = report["drift"]
        v = d["ours"]["ratio"]
        out.append(
            (f"ours, iteration last {d['head']} / first {d['head']}", v, f"<= {T_DRIFT}", v <= T_DRIFT)
        )
        out.append((f"bare, chord last {d['head']} / first {d['head']}", d["bare"]["ratio"], "(info)", None))
    if "code" in report:
        c = report["code"]
        v = c["ratio_deploy_bare"]
        out.append(("deploy to 100 / bare chord over 100", v, "<= 1.5", v <= 1.5))
        v = c["ratio_restart_deploy"]
        out.append(("edge restart / deploy", v, ">= 100", v >= 100))
        v = c["task"]["ratio_task"]
        out.append(("custom / builtin, per on-board task", v, "<= 1.15", v <= 1.15))
        out.append(("custom / builtin, per iteration", c["task"]["ratio_iteration"], "(info)", None))
    return out


def print_report(report: dict[str, Any]) -> None:
    if report.get("scale"):
        print("\n1. one-iteration `average` assignment vs bare no-op chord over the same queues (ms)")
        head = (
            f"{'N':>5} {'ours med':>9} {'ours p90':>9} {'alone med':>9} {'bare med':>9} {'naive med':>10} "
            f"{'tuned med':>10} {'ours/cl':>8} {'bare/cl':>8} {'naive/cl':>9} {'ours/bare':>9} "
            f"{'naive/ours':>10} {'tuned/ours':>10}"
        )
        print(head + "\n" + "-" * len(head))
        for r in report["scale"]:
            print(
                f"{r['clients']:>5} {r['ours_ms']['median']:>9.1f} {r['ours_ms']['p90']:>9.1f} "
                f"{r['ours_alone_ms']['median']:>9.1f} "
                f"{r['bare_ms']['median']:>9.1f} {r['naive_ms']['median']:>10.1f} "
                f"{r['tuned_ms']['median']:>10.1f} "
                f"{r['ours_per_client_ms']:>8.2f} {r['bare_per_client_ms']:>8.2f} "
                f"{r['naive_per_client_ms']:>9.2f} {r['ratio_ours_bare']:>9.2f} "
                f"{r['ratio_naive_ours']:>10.2f} {r['ratio_tuned_ours']:>10.2f}"
            )
        print(
            "(alone = ours before the bare fleets were started, not alternated: information only; "
            "naive = one bare worker on every queue with Celery's default transport options, "
            "tuned = the same with ours; cl = per client; ratios of medians)"
        )
        for r in report["scale"]:
            lay = r["layout"]
            print(
                f"N={r['clients']}: ours {lay['ours']}; bare {lay['bare']}; naive {lay['naive']}; "
                f"tuned {lay['tuned']}"
            )
            print(
                "  ours by phase (median ms): "
                + ", ".join(f"{k} {v:.1f}" for k, v in r["ours_phases_median_ms"].items())
            )
        print("\n4. resident memory while only OODIDA was up, after its warm-up assignments, MiB")
        head = (
            f"{'N':>5} {'edge procs':>10} {'edge RSS':>9} {'per client':>10} {'edge PSS':>9} "
            f"{'cloud':>7} {'redis':>7}"
        )
        print(head + "\n" + "-" * len(head))
        for r in report["scale"]:
            m = r["memory"]
            print(
                f"{r['clients']:>5} {m['edge']['processes']:>10} {m['edge']['rss'] / MIB:>9.1f} "
                f"{m['edge_per_client_mib']:>10.2f} {m['edge']['pss'] / MIB:>9.1f} "
                f"{m['cloud']['rss'] / MIB:>7.1f} {m['redis']['rss'] / MIB:>7.1f}"
            )
    if "throughput" in report:
        t = report["throughput"]
        print(
            f"\n2. throughput, {t['threads']} threads x {t['window_s']:.0f} s x {t['rounds']} rounds, "
            f"{t['assignment_clients']}-client assignments on a {t['clients']}-client fleet ({t['layout']}): "
            f"ours {t['ours_per_s']:.1f} assignments/s, bare {t['bare_per_s']:.1f} chords/s, "
            f"ratio {t['ratio']:.2f} (medians over rounds)"
        )
    if "drift" in report:
        d = report["drift"]
        per_round_ratios = ", ".join(f"{r['ours']['ratio']:.2f}" for r in d["rounds"])
        print(
            f"\n3. {d['iterations']} iterations over {d['clients']} clients: ours per iteration "
            f"first {d['head']} {d['ours']['first_ms']:.1f} ms, "
            f"last {d['head']} {d['ours']['last_ms']:.1f} ms "
            f"(ratio {d['ours']['ratio']:.2f}; whole assignment {d['ours_wall_s']:.1f} s); "
            f"bare chords first {d['bare']['first_ms']:.1f}, last {d['bare']['last_ms']:.1f} "
            f"(ratio {d['bare']['ratio']:.2f}); medians over {len(d['rounds'])} round(s), "
            f"ours last/first per round: {per_round_ratios}"
        )
    if "code" in report:
        print("\n5. active-code replacement, 100 clients (bench_code.py)")
        bench_code.print_table(report["code"])
    print(f"\n{'target':<44} {'value':>8} {'target':>8}  met")
    for label, value, target, met in verdicts(report):
        print(f"{label:<44} {value:>8.2f} {target:>8}  {'-' if met is None else 'yes' if met else 'NO'}")


def plot(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    rows = report.get("scale", [])
    if rows:
        ax = axes[0][0]
        ns = [r["clients"] for r in rows]
        for key, label in (
            ("ours", "OODIDA"),
            ("bare", "bare, our layout"),
            ("naive", "bare, naive layout"),
            ("tuned", "bare, naive layout, our options"),
        ):
            ax.plot(ns, [r[f"{key}_ms"]["median"] / 1e3 for r in rows], marker="o", label=label)
        ax.set(
            xscale="log", yscale="log", xlabel="clients", ylabel="s per assignment", title="1. one iteration"
        )
        ax.legend()
        ax = axes[1][1]
        ax.bar([str(n) for n in ns], [r["memory"]["edge_per_client_mib"] for r in rows])
        ax.set(xlabel="clients", ylabel="MiB per client", title="4. edge RSS per client")
    if "throughput" in report:
        t = report["throughput"]
        ax = axes[0][1]
        ax.bar(["OODIDA", "bare chords"], [t["ours_per_s"], t["bare_per_s"]])
        ax.set(ylabel="per second", title=f"2. throughput, {t['threads']} threads")
    if "drift" in report:
        d = report["drift"]
        ax = axes[1][0]
        ax.plot(d["ours_per_iteration_ms"], label="OODIDA iteration")
        ax.plot(d["bare_per_chord_ms"], label="bare chord")
        ax.set(
            xlabel="iteration", ylabel="ms", title=f"3. {d['iterations']} iterations, {d['clients']} clients"
        )
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke check: fewer repeats, shorter windows")
    parser.add_argument("--sizes", default="1,10,100,1000", help="fleet sizes of rows 1 and 4")
    parser.add_argument("--repeats", type=int, help="timed runs per column and size (default 10, quick 3)")
    parser.add_argument("--repeats-large", type=int, help="the same from 500 clients on (default 5, quick 2)")
    parser.add_argument("--window", type=float, help="seconds of one throughput window (default 20, quick 5)")
    parser.add_argument("--rounds", type=int, help="throughput windows of each (default 3, quick 1)")
    parser.add_argument("--iterations", type=int, help="iterations of row 3 (default 50, quick 20)")
    parser.add_argument(
        "--naive-pool", choices=("solo", "threads"), default="solo", help="pool of the naive bare worker"
    )
    parser.add_argument("--drift-rounds", type=int, help="rounds of the drift row (3; quick 1)")
    parser.add_argument("--rows", default="scale,throughput,drift,code,isolation", help="which stages to run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="also draw the results here (needs matplotlib)")
    args = parser.parse_args(argv)
    q = args.quick
    repeats = args.repeats or (3 if q else 10)
    repeats_large = args.repeats_large or (2 if q else 5)
    window = args.window or (5.0 if q else 20.0)
    rounds = args.rounds or (1 if q else 3)
    iterations = args.iterations or (20 if q else 50)
    head = 5 if iterations < 30 else 10
    drift_rounds = args.drift_rounds or (1 if q else 3)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    stages = {s.strip() for s in args.rows.split(",") if s.strip()}
    if not stages <= {"scale", "throughput", "drift", "code", "isolation"} or (sizes and min(sizes) < 1):
        parser.error("--rows takes scale,throughput,drift,code,isolation; --sizes positive integers")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so every finally runs

    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    report: dict[str, Any] = {
        "machine": info,
        "date": time.strftime("%Y-%m-%d"),
        "quick": q,
        "edge_pool": EDGE_POOL,
        "naive_pool": args.naive_pool,
        "scale": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="oodida-fleet-"))
    t_start = time.perf_counter()
    try:
        if "scale" in stages:
            for n in sizes:
                reps = repeats_large if n >= 500 else repeats
                warm = 1 if n >= 500 else 2
                print(f"1+4. N={n}: {warm} warm-up(s) + {reps} runs of each column ...", flush=True)
                report["scale"].append(scale(n, reps, warm, args.naive_pool, tmp))
        if "throughput" in stages:
            print(f"2. throughput: {rounds} round(s) of {window:.0f} s each, ours and bare ...", flush=True)
            report["throughput"] = throughput(20, 8, 5, window, rounds, tmp)
        if "drift" in stages:
            print(
                f"3. drift: {drift_rounds} round(s) of one {iterations}-iteration assignment over 100 "
                "clients, then as many bare chords ...",
                flush=True,
            )
            report["drift"] = drift(100, iterations, head, drift_rounds, tmp)
        if "code" in stages:
            print("5. active-code replacement (bench_code.py) ...", flush=True)
            report["code"] = bench_code.run(bench_code.parse(["--repeats", "3" if q else "10"]))
        if "isolation" in stages:
            print("6. concurrent tasks of one vehicle (bench_isolation.py) ...", flush=True)
            import bench_isolation  # imports this module: here, not at the top

            report["isolation"] = bench_isolation.run(3 if q else 7, {"scale", "isolation"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["elapsed_s"] = time.perf_counter() - t_start
    report["targets"] = [
        {"what": label, "value": value, "target": target, "met": met}
        for label, value, target, met in verdicts(report)
    ]
    print_report(report)
    if "isolation" in report:
        import bench_isolation

        bench_isolation.print_report(report["isolation"])
    print(f"\n(took {report['elapsed_s']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        if plot(report, args.plot):
            print(f"wrote {args.plot}")
        else:
            print("matplotlib is not installed: no plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
