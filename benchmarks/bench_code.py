"""Active-code replacement against a bare chord and a process restart, on one simulated fleet.

    .venv/bin/python benchmarks/bench_code.py [--clients 100] [--repeats 10] [--json out.json]

One embedded Redis; db 0 serves OODIDA (``LocalSystem`` with N clients), db 1 the bare Celery
fleet of ``bench_core.py`` (the same queues ``client.1..client.N`` and ``cloud``, the same
process layout, pool, concurrency and Celery settings). One run measures:

* deploy: ``o.deploy_onboard(path, clients="all").wait()`` until the report has all N clients
  accepted, a new module version (a new sha256) every time.
* bare: ``chord(noop on each client.i)(done on cloud).get()`` over the bare fleet.
* restart: stop one edge worker process (``oodida-edge`` for client 1001, outside the fleet,
  started with ``LocalSystem.start_edge``) with SIGTERM and start it again, until the new
  process answers a Celery ``ping`` to its worker name. Before every restart the process is
  started (untimed) and after it stopped again (untimed), so that ``clients="all"`` in the
  deploy column always means exactly the N fleet clients.
* custom vs builtin: the same measurement assignment (``--task-clients`` clients spread over the
  fleet, 1 signal, 1000 samples, ``--iterations`` iterations) with onboard ``custom`` (a module
  returning the mean of x) and with onboard ``average``, alternating. Per task: the on-board
  task's run time in the worker (``runtime`` of Celery's task-succeeded events); per iteration:
  the cloud's stamps (iteration started -> aggregated).

Stage 1 repeats deploy, bare and restart in an order that rotates per repeat; stage 2 alternates
custom and builtin. Each column has warm-up runs that are not counted. A last diagnostic runs the
edge's own task body (``OnboardRunner.run``) in this process, without Celery, for both methods on
the same readings.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from bare_app import make_app
from bench_core import BareFleet, machine, p90, port_free, run_bare
from celery import Celery

from oodida_core.customcode.check import CodePolicy
from oodida_core.customcode.runner import CodeRunner
from oodida_core.customcode.sandbox import Sandbox
from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.keys import Keys
from oodida_core.state.codestore import CodeStore
from oodida_core.state.registry import Registry
from oodida_edge._worker import default_processes, worker_name
from oodida_edge.onboard import OnboardParams, run_builtin
from oodida_edge.runner import OnboardRunner
from oodida_edge.sources.simulated import SimulatedSensors
from oodida_ops.local import LocalSystem
from oodida_ops.redis_server import EmbeddedRedis
from oodida_user import Oodida

WARMUP = 2
EXTRA_CLIENT = 1001  # the restarted edge process serves this client, outside the fleet
EXTRA_PROC = "restart-edge"
PING_TIMEOUT = 0.1  # seconds one ping waits; a worker not up yet never answers it
USER = "bench"

MEAN_MODULE = '''"""The mean of one signal's readings (bench_code.py, version {n})."""


def custom_code(x):
    return sum(x) / len(x)
'''


def write_module(path: Path, n: int) -> str:
    """Write a new version of the mean module; its version string (a new sha256 for each n)."""
    source = MEAN_MODULE.format(n=n)
    path.write_text(source, encoding="utf-8")
    return "sha256:" + hashlib.sha256(source.encode("utf-8")).hexdigest()


def stream_ms(entry_id: bytes | str) -> float:
    """The wall-clock time (s) in a Redis stream entry id, stamped by Redis at XADD."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-")[0]) / 1e3


# -- deploy ----------------------------------------------------------------------------------
def run_deploy(o: Oodida, path: Path, counter: int, n: int) -> tuple[float, dict[str, float]]:
    version = write_module(path, counter)
    sent: list[float] = []
    send = o._send

    def timed_send(*args: Any, **kwargs: Any) -> None:  # only stamps when the library sends
        sent.append(time.time())
        send(*args, **kwargs)

    o._send = timed_send  # type: ignore[method-assign]
    try:
        w0, t0 = time.time(), time.perf_counter()
        deployment = o.deploy_onboard(path, clients="all")
        report = deployment.wait(timeout=120)
        elapsed, w1 = time.perf_counter() - t0, time.time()
    finally:
        del o._send  # back to the class's method
    if (
        report.version != version
        or len(report.accepted) != n
        or report.rejected
        or report.pending
        or len(sent) != 1
    ):
        raise RuntimeError(f"deployment went wrong: {report}")
    events = o.redis.xrange(o.keys.deployment_events(deployment.id))
    sent_at = [stream_ms(i) for i, f in events if f.get(b"type") == b"sent"]
    verdicts = sorted(stream_ms(i) for i, f in events if f.get(b"type") == b"verdict")
    if len(sent_at) != 1 or len(verdicts) != n:
        raise RuntimeError(f"deployment {deployment.id}: {len(sent_at)} sent, {len(verdicts)} verdict events")
    phases = {  # the library's clock, then Redis's stamps (ms) on the deployment's events
        "library checks + send": sent[0] - w0,
        "send -> cloud sent installs": sent_at[0] - sent[0],
        "sent -> first verdict": verdicts[0] - sent_at[0],
        "first -> last verdict": verdicts[-1] - verdicts[0],
        "last verdict -> wait() returned": w1 - verdicts[-1],
    }
    return elapsed, phases


# -- restart ---------------------------------------------------------------------------------
def wait_ping(ctl: Celery, system: LocalSystem, registry: Registry, t0: float) -> dict[str, float]:
    """Seconds from t0 until client EXTRA_CLIENT is live in the registry and until its worker
    answers a ping (polled together; a ping to a worker that is not up waits PING_TIMEOUT)."""
    name = f"{worker_name([EXTRA_CLIENT])}@{socket.gethostname()}"
    out: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while True:
        if "registry" not in out and any(c.client_id == EXTRA_CLIENT for c in registry.live()):
            out["registry"] = time.perf_counter() - t0
        if ctl.control.ping(destination=[name], timeout=PING_TIMEOUT):
            out["ping"] = time.perf_counter() - t0
            out.setdefault("registry", out["ping"])  # live by then (registered in worker_ready)
            return out
        proc = system.procs.get(EXTRA_PROC)
        if proc is None or proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the edge process for client {EXTRA_CLIENT} did not answer a ping")


def stop_extra(system: LocalSystem, registry: Registry) -> float:
    t0 = time.perf_counter()
    system.stop_process(EXTRA_PROC)
    elapsed = time.perf_counter() - t0
    if EXTRA_CLIENT in registry.known():  # a clean stop leaves the registry; make sure
        raise RuntimeError(f"client {EXTRA_CLIENT} is still registered after its process stopped")
    return elapsed


def run_restart(ctl: Celery, system: LocalSystem, registry: Registry) -> tuple[float, dict[str, float]]:
    system.start_edge(EXTRA_PROC, str(EXTRA_CLIENT))  # untimed: the process to be restarted
    wait_ping(ctl, system, registry, time.perf_counter())
    t0 = time.perf_counter()
    system.stop_process(EXTRA_PROC)
    stopped = time.perf_counter()
    system.start_edge(EXTRA_PROC, str(EXTRA_CLIENT))
    ready = wait_ping(ctl, system, registry, stopped)
    elapsed = time.perf_counter() - t0
    stop_extra(system, registry)  # untimed: out of the fleet again before the next deploy
    return elapsed, {
        "stop (SIGTERM -> exited)": stopped - t0,
        "start -> live in registry": ready["registry"],
        "start -> answers ping": ready["ping"],
    }


# -- custom vs builtin -------------------------------------------------------------------------
class TaskRuntimes(threading.Thread):
    """Collects the ``runtime`` of every task-succeeded event (task id -> seconds)."""

    def __init__(self, app: Celery) -> None:
        super().__init__(name="bench-events", daemon=True)
        self.app = app
        self.runtimes: dict[str, float] = {}
        self.ready = threading.Event()
        self.receiver: Any = None

    def run(self) -> None:
        with self.app.connection() as conn:
            self.receiver = self.app.events.Receiver(
                conn, handlers={"task-succeeded": self._succeeded, "*": lambda _e: None}
            )
            self.receiver.on_consume_ready = self._consume_ready
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def _consume_ready(self, *_: Any, **__: Any) -> None:
        self.ready.set()

    def _succeeded(self, event: dict[str, Any]) -> None:
        self.runtimes[str(event["uuid"])] = float(event["runtime"])

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.join(10)


def task_spec(method: str, clients: list[int], iterations: int) -> dict[str, Any]:
    return {
        "name": f"bench-{method}",
        "mode": "measurement",
        "clients": clients,
        "signals": ["speed"],
        "onboard": method,
        "offboard": "collect",
        "frequency": 1,
        "samples": 1000,
        "iterations": iterations,
    }


def run_assignment(
    o: Oodida, events: TaskRuntimes, method: str, clients: list[int], iterations: int, version: str
) -> tuple[list[float], list[float], str]:
    """One assignment: (per-iteration seconds, per-task run times, assignment id)."""
    result = o.submit(task_spec(method, clients, iterations)).wait(progress=False)
    if result.status != "done" or len(result.iterations) != iterations:
        raise RuntimeError(f"{method} assignment went wrong: {result.status} {result.error}")
    want = version if method == "custom" else "builtin"
    for it in result.iterations:
        if len(it.onboard) != len(clients) or it.failed or set(it.versions.values()) != {want}:
            raise RuntimeError(f"{method} iteration {it.index}: {it}")
    per_iteration = [it.finished_at - it.started_at for it in result.iterations]
    ids = [f"{result.id}-i{i}-c{c}" for i in range(iterations) for c in clients]
    deadline = time.monotonic() + 10  # task-succeeded events are published as the tasks end
    while any(t not in events.runtimes for t in ids) and time.monotonic() < deadline:
        time.sleep(0.01)
    missing = [t for t in ids if t not in events.runtimes]
    if missing:
        raise RuntimeError(f"{len(missing)} task-succeeded events missing, e.g. {missing[0]}")
    return per_iteration, [events.runtimes[t] for t in ids], result.id


def check_means(o: Oodida, aid: str, clients: list[int]) -> None:
    """The custom module's values are the mean of the readings (recomputed here)."""
    sensors = SimulatedSensors()
    result = o.assignment(aid).result()
    for cid in clients[:3]:
        data = sensors.read(cid, aid, 0, ("speed",), 1000, 1)
        want, got = float(data["speed"].mean()), result.iterations[0].onboard[cid]
        if abs(got - want) > 1e-9 * max(1.0, abs(want)):
            raise RuntimeError(f"custom value on client {cid} is {got}, the mean is {want}")


def in_process(url: str, prefix: str, version: str, rounds: int) -> dict[str, dict[str, float]]:
    """The edge's task body (``OnboardRunner.run``: read the simulated sensors, compute, answer)
    here, without Celery and without other load, for builtin and custom on the same message,
    alternating; then the custom path's own steps one by one, on the same readings."""
    client = redis.Redis.from_url(url)
    keys = Keys(prefix)
    policy = CodePolicy.from_env()
    sandbox = Sandbox(max_children=1)
    code = CodeRunner(CodeStore(client, keys), sandbox, policy)
    runner = OnboardRunner(client, keys, SimulatedSensors(), code)
    data = runner.sensors.read(1, "bench-inproc", 0, ("speed",), 1000, 1)
    params = OnboardParams(method="average", signals=("speed",))
    steps: dict[str, Any] = {
        "sensor read (both)": lambda: runner.sensors.read(1, "bench-inproc", 0, ("speed",), 1000, 1),
        "builtin: run_builtin (numpy mean)": lambda: run_builtin(params, data),
        "custom: version lookup (1 Redis LINDEX)": lambda: runner.codestore.onboard_version(USER, 1),
        "custom: readings .tolist()": lambda: data["speed"].tolist(),
        "custom: sandbox call (CodeRunner.run)": lambda: code.run(version, data["speed"].tolist()),
    }
    times: dict[str, list[float]] = {"builtin task": [], "custom task": []} | {k: [] for k in steps}
    try:
        for r in range(rounds + WARMUP):
            for method in ("average", "custom") if r % 2 == 0 else ("custom", "average"):
                message = {
                    "assignment_id": "bench-inproc",
                    "user": USER,
                    "iteration": 0,
                    "client_id": 1,
                    "method": method,
                    "signals": ["speed"],
                    "samples": 1000,
                    "frequency": 1,
                    "deadline": time.time() + 60,
                }
                t0 = time.perf_counter()
                answer = runner.run(message)
                elapsed = time.perf_counter() - t0
                if answer["status"] != "ok":
                    raise RuntimeError(f"in-process {method}: {answer}")
                if r >= WARMUP:
                    times["custom task" if method == "custom" else "builtin task"].append(elapsed)
            for name, step in steps.items():
                t0 = time.perf_counter()
                step()
                if r >= WARMUP:
                    times[name].append(time.perf_counter() - t0)
    finally:
        sandbox.close()
        client.close()
    return {k: {"median": statistics.median(v) * 1e3, "p90": p90(v) * 1e3} for k, v in times.items()}


def _process_table() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every process."""
    table: dict[int, tuple[int, bytes]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            table[int(proc.name)] = (ppid, (proc / "cmdline").read_bytes())
        except (OSError, IndexError, ValueError):
            continue
    return table


def descendants(pids: set[int]) -> set[int]:
    table = _process_table()
    found: set[int] = set()
    todo = set(pids)
    while todo:
        parent = todo.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                todo.add(pid)
    return found


def sandbox_processes(pids: set[int]) -> int:
    """How many jail fork servers the edge worker processes ``pids`` have now (bubblewrap, or
    the server itself without it)."""
    table = _process_table()
    count = 0
    for pid in descendants(pids):
        ppid, cmdline = table.get(pid, (0, b""))
        parent_is_jail = b"jail.zygote" in table.get(ppid, (0, b""))[1]
        count += b"jail.zygote" in cmdline and not parent_is_jail
    return count


def tree_memory(pid: int) -> dict[str, float]:
    """Resident memory of ``pid`` and every process under it (MiB): RSS summed (counts pages
    shared between them once per process) and PSS summed (shares them out), and the count."""
    rss = pss = 0
    pids = {pid} | descendants({pid})
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return {"rss_mib": rss / 1024, "pss_mib": pss / 1024, "processes": len(pids)}


MEAN_SOURCE = "def custom_code(x):\n    return sum(x) / len(x)\n"


def jail_costs(rounds: int) -> dict[str, Any]:
    """One custom call of the mean module on 1000 readings, in this process: in the jail (every
    layer this machine has), in a fresh process without any layer, and in-process (the
    restricted interpreter alone, no process); the fork server's start."""
    from oodida_core.customcode._child import Runtime
    from oodida_core.customcode.check import code_version

    module = (code_version(MEAN_SOURCE), "mean.py", MEAN_SOURCE)
    x = [float(i) for i in range(1000)]
    out: dict[str, Any] = {}
    for label, layers in (("jail, every layer", None), ("fresh process, no layer", frozenset())):
        with Sandbox(max_children=1, layers=layers) as box:
            box.run(module, x)
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                box.run(module, x)
                times.append(time.perf_counter() - t0)
                time.sleep(0.002)  # as between tasks: the next call process is forked meanwhile
            out[label] = figures(times) | {"runs": []}
            if layers is None:
                out["level"] = box.describe()
                out["server_start_ms"] = statistics.median(box.starts) * 1e3
    runtime = Runtime(CodePolicy().allowed_imports)
    request = {"op": "run", "version": module[0], "filename": "mean.py", "source": MEAN_SOURCE, "x": x,
               "max_result_bytes": 1 << 20, "allowed": sorted(CodePolicy().allowed_imports)}  # fmt: skip
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        runtime.call(dict(request), None)
        times.append(time.perf_counter() - t0)
    out["in-process, restricted interpreter only"] = figures(times) | {"runs": []}
    return out


def edge_memory(
    o: Oodida, ctl: Celery, system: LocalSystem, registry: Registry, path: Path, n: int
) -> dict[str, Any]:
    """The resident memory of one vehicle's edge (``oodida-edge --clients EXTRA_CLIENT``) and
    its jail, before and after it ran custom code."""
    proc = system.start_edge(EXTRA_PROC, str(EXTRA_CLIENT))
    try:
        wait_ping(ctl, system, registry, time.perf_counter())
        time.sleep(1)
        idle = tree_memory(proc.pid)
        version = write_module(path, n)
        report = o.deploy_onboard(path, clients=[EXTRA_CLIENT]).wait(timeout=120)
        if report.accepted != (EXTRA_CLIENT,):
            raise RuntimeError(f"deployment to the memory client went wrong: {report}")
        spec = task_spec("custom", [EXTRA_CLIENT], 3)
        result = o.submit(spec).wait(timeout=120, progress=False)
        if result.iterations[-1].versions.get(EXTRA_CLIENT) != version:
            raise RuntimeError(f"the memory client did not run custom code: {result.iterations[-1]}")
        time.sleep(0.5)
        return {"idle": idle, "after custom code": tree_memory(proc.pid)}
    finally:
        stop_extra(system, registry)


# -- the run ---------------------------------------------------------------------------------
def figures(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values) * 1e3,
        "p90": p90(values) * 1e3,
        "runs": [v * 1e3 for v in values],
    }


def medians(phases: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) * 1e3 for k, v in phases.items()}


ORDER = ("deploy", "bare", "restart")


def measure(args: argparse.Namespace, db0: str, db1: str, tmp: Path) -> dict[str, Any]:
    n = args.clients
    for url in (db0, db1):
        with contextlib.closing(redis.Redis.from_url(url)) as client:
            client.flushdb()
    system = LocalSystem(n, redis_url=db0, data_dir=tmp / "oodida", loglevel="WARNING")
    bare = BareFleet(db1, n, tmp / "bare", system.settings.cloud_concurrency)
    step = max(1, n // args.task_clients)
    task_clients = list(range(step, n + 1, step))[: args.task_clients]
    path = tmp / "mean.py"
    o: Oodida | None = None
    app: Celery | None = None
    ctl: Celery | None = None
    events: TaskRuntimes | None = None
    counter = 0
    try:
        system.start()
        bare.start()
        o, app = Oodida(db0, user=USER, token=system.token(USER), settings=system.settings), make_app(db1)
        ctl = make_celery_app(system.settings, "bench-ping")
        registry = Registry(o.redis, system.settings)

        # Stage 1: deploy, bare chord, restart, in an order that rotates per repeat.
        print(f"stage 1: {WARMUP} warm-ups + {args.repeats} runs of deploy, bare, restart ...", flush=True)
        runs: dict[str, list[float]] = {which: [] for which in ORDER}
        phases: dict[str, dict[str, list[float]]] = {"deploy": {}, "restart": {}}
        for r in range(-WARMUP, args.repeats):
            for which in ORDER[r % 3 :] + ORDER[: r % 3]:
                ph: dict[str, float] = {}
                if which == "deploy":
                    counter += 1
                    elapsed, ph = run_deploy(o, path, counter, n)
                elif which == "bare":
                    elapsed = run_bare(app, n)
                else:
                    elapsed, ph = run_restart(ctl, system, registry)
                if r >= 0:
                    runs[which].append(elapsed)
                    for k, v in ph.items():
                        phases[which].setdefault(k, []).append(v)
            if r >= 0:
                print(
                    f"  repeat {r + 1}: " + ", ".join(f"{w} {runs[w][-1] * 1e3:.0f} ms" for w in ORDER),
                    flush=True,
                )

        # Stage 2: custom (the mean module) vs builtin average, alternating.
        counter += 1
        version = write_module(path, counter)
        report = o.deploy_onboard(path, clients="all").wait(timeout=120)
        if len(report.accepted) != n:
            raise RuntimeError(f"deployment for stage 2 went wrong: {report}")
        events = TaskRuntimes(ctl)
        events.start()
        if not events.ready.wait(30):
            raise RuntimeError("the event receiver did not start")
        print(
            f"stage 2: {WARMUP} warm-ups + {args.repeats} assignments each of custom and average "
            f"({len(task_clients)} clients, {args.iterations} iterations) ...",
            flush=True,
        )
        per_it: dict[str, list[float]] = {"custom": [], "average": []}
        per_task: dict[str, list[float]] = {"custom": [], "average": []}
        per_run: dict[str, list[float]] = {"custom": [], "average": []}
        last_custom = ""
        edge_pids = {c.pid for c in o.clients() if c.client_id in task_clients}
        children: list[int] = []
        for r in range(-WARMUP, args.repeats):
            if r == 0:  # sandbox processes started by the warm-ups
                children.append(sandbox_processes(edge_pids))
            for method in ("custom", "average") if r % 2 == 0 else ("average", "custom"):
                its, tasks, aid = run_assignment(o, events, method, task_clients, args.iterations, version)
                if method == "custom":
                    last_custom = aid
                if r >= 0:
                    per_it[method] += its
                    per_task[method] += tasks
                    per_run[method].append(statistics.median(tasks) * 1e3)
        children.append(sandbox_processes(edge_pids))
        events.stop()
        events = None
        check_means(o, last_custom, task_clients)

        print("diagnostic: the edge's task body in this process ...", flush=True)
        inproc = in_process(db0, system.settings.key_prefix, version, args.inproc_rounds)
        print("stage 3: the jail's cost per call, and one vehicle's edge memory ...", flush=True)
        jail = jail_costs(args.inproc_rounds)
        counter += 1
        memory = edge_memory(o, ctl, system, registry, path, counter)
    finally:
        if events is not None:
            events.stop()
        if o is not None:
            o.close()
        for a in (app, ctl):
            if a is not None:
                a.close()
        bare.stop()
        system.stop()

    med = {which: statistics.median(v) for which, v in runs.items()}
    task_med = {m: statistics.median(v) for m, v in per_task.items()}
    it_med = {m: statistics.median(v) for m, v in per_it.items()}
    return {
        "clients": n,
        "processes": {"edge": default_processes(n), "cloud": 1, "restart": 1},
        "deploy_ms": figures(runs["deploy"]),
        "bare_ms": figures(runs["bare"]),
        "restart_ms": figures(runs["restart"]),
        "deploy_phases_median_ms": medians(phases["deploy"]),
        "restart_phases_median_ms": medians(phases["restart"]),
        "restart_phases_p90_ms": {k: p90(v) * 1e3 for k, v in phases["restart"].items()},
        "ratio_deploy_bare": med["deploy"] / med["bare"],  # target <= 1.5
        "ratio_restart_deploy": med["restart"] / med["deploy"],  # target >= 100
        "ratio_start_ping_deploy": statistics.median(phases["restart"]["start -> answers ping"])
        / med["deploy"],
        "task": {
            "clients": task_clients,
            "iterations": args.iterations,
            "samples": 1000,
            "signals": ["speed"],
            "custom_task_ms": figures(per_task["custom"]) | {"runs": per_run["custom"]},
            "builtin_task_ms": figures(per_task["average"]) | {"runs": per_run["average"]},
            "custom_iteration_ms": figures(per_it["custom"]),
            "builtin_iteration_ms": figures(per_it["average"]),
            "ratio_task": task_med["custom"] / task_med["average"],  # target <= 1.15
            "ratio_iteration": it_med["custom"] / it_med["average"],
            "in_process_ms": inproc,
            "sandbox_processes_after_warmup_and_at_end": children,
            "ratio_in_process_task": inproc["custom task"]["median"] / inproc["builtin task"]["median"],
        },
        "jail_per_call_ms": jail,
        "edge_memory_one_vehicle": memory,
    }


def print_table(r: dict[str, Any]) -> None:
    t = r["task"]
    rows = [
        (f"deploy_onboard(all) -> report, {r['clients']} clients", r["deploy_ms"]),
        (f"bare chord, {r['clients']} no-ops", r["bare_ms"]),
        ("restart 1 edge process -> ping", r["restart_ms"]),
        ("custom mean, per task (worker)", t["custom_task_ms"]),
        ("builtin average, per task (worker)", t["builtin_task_ms"]),
        ("custom mean, per iteration", t["custom_iteration_ms"]),
        ("builtin average, per iteration", t["builtin_iteration_ms"]),
    ]
    head = f"{'what':<42} {'median':>9} {'p90':>9}"
    print("\n" + head + "\n" + "-" * len(head))
    for label, fig in rows:
        print(f"{label:<42} {fig['median']:>9.2f} {fig['p90']:>9.2f}")
    print("(ms; per task = the on-board task's run time in the worker, from task-succeeded events)")
    checks = [
        ("deploy / bare", r["ratio_deploy_bare"], "<= 1.5", r["ratio_deploy_bare"] <= 1.5),
        ("restart / deploy", r["ratio_restart_deploy"], ">= 100", r["ratio_restart_deploy"] >= 100),
        ("custom / builtin, per task", t["ratio_task"], "<= 1.15", t["ratio_task"] <= 1.15),
        ("custom / builtin, per iteration", t["ratio_iteration"], "(info)", None),
        ("custom / builtin, in-process task body", t["ratio_in_process_task"], "(info)", None),
        ("(start -> ping) / deploy", r["ratio_start_ping_deploy"], "(info)", None),
    ]
    print(f"\n{'ratio':<42} {'value':>9} {'target':>9}  met")
    for label, value, target, met in checks:
        print(f"{label:<42} {value:>9.2f} {target:>9}  {'-' if met is None else 'yes' if met else 'NO'}")
    for name in ("deploy", "restart"):
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r[f"{name}_phases_median_ms"].items())
        print(f"{name}, median ms per phase: {parts}")
    parts = ", ".join(f"{k} {v['median']:.3f}" for k, v in t["in_process_ms"].items())
    print(f"in-process task body, median ms: {parts}")
    before, after = t["sandbox_processes_after_warmup_and_at_end"]
    print(f"jail fork servers of the edge workers: {before} after the warm-ups, {after} at the end")
    jail = r["jail_per_call_ms"]
    print(f"\njail: {jail['level']}; a fork server starts in {jail['server_start_ms']:.0f} ms")
    for label in ("jail, every layer", "fresh process, no layer", "in-process, restricted interpreter only"):
        print(f"  one call of the mean module, {label:<40} {jail[label]['median']:>7.2f} ms median")
    for when, m in r["edge_memory_one_vehicle"].items():
        print(
            f"one vehicle's edge, {when}: {m['processes']} processes, "
            f"RSS {m['rss_mib']:.0f} MiB summed, PSS {m['pss_mib']:.0f} MiB (target < 150 MiB)"
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100, help="fleet size N")
    parser.add_argument(
        "--repeats", type=int, default=10, help=f"timed runs of each, after {WARMUP} warm-ups"
    )
    parser.add_argument("--task-clients", type=int, default=100, help="clients of the custom/builtin runs")
    parser.add_argument("--iterations", type=int, default=5, help="iterations of each custom/builtin run")
    parser.add_argument("--inproc-rounds", type=int, default=200, help="rounds of the in-process diagnostic")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.repeats < 1 or args.iterations < 1 or args.inproc_rounds < 1:
        parser.error("--clients, --repeats, --iterations and --inproc-rounds must be at least 1")
    if not 1 <= args.task_clients <= args.clients:
        parser.error("--task-clients must be between 1 and --clients")
    if args.clients >= EXTRA_CLIENT:
        parser.error(f"--clients must be below {EXTRA_CLIENT}, the restarted client's id")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure on a Redis server of its own, which it stops again."""
    tmp = Path(tempfile.mkdtemp(prefix="oodida-bench-code-"))
    server = EmbeddedRedis(tmp / "redis")
    try:
        server.start()
        db0, db1 = server.url, server.url.rsplit("/", 1)[0] + "/1"
        print(f"redis-server on port {server.port}: OODIDA on db 0, bare Celery on db 1", flush=True)
        return measure(args, db0, db1, tmp)
    finally:
        server.stop()
        if port_free(server.port):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"warning: port {server.port} still in use; kept {tmp}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    result = run(args)
    print_table(result)
    if args.json:
        report = {"machine": info, "repeats": args.repeats, "warmup": WARMUP, "result": result}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
