"""Flower shows the fleet: client workers by name, readable tasks, tasks queued for offline
clients, Prometheus metrics, and a real browser rendering the workers page."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from flower_kit import FlowerSystem

from oodida_core.spec.model import LISTING_1_1
from oodida_user import Oodida

HOST = socket.gethostname()
USER = "flower-analyst"


def _tasks(fs: FlowerSystem, taskname: str) -> list[dict[str, Any]]:
    return list(fs.get_json(f"/api/tasks?taskname={taskname}").values())


def test_flower_lists_every_client_worker_by_name(flower_system: FlowerSystem) -> None:
    wanted = {f"clients-1-3@{HOST}", f"client-7@{HOST}", f"cloud-1@{HOST}"}

    def workers() -> dict[str, Any] | None:
        found = flower_system.get_json("/api/workers?refresh=1")
        return found if wanted <= set(found) else None

    found = flower_system.wait_for(f"workers {sorted(wanted)}", workers)
    # A process serving several clients is one worker that consumes each client's own queue.
    queues = {q["name"] for q in found[f"clients-1-3@{HOST}"]["active_queues"]}
    assert queues == {"client.1", "client.2", "client.3"}
    assert {q["name"] for q in found[f"client-7@{HOST}"]["active_queues"]} == {"client.7"}
    assert {q["name"] for q in found[f"cloud-1@{HOST}"]["active_queues"]} == {"cloud"}


def test_flower_shows_onboard_tasks_with_assignment_iteration_user_and_client(
    flower_system: FlowerSystem,
) -> None:
    assert flower_system.system is not None
    with Oodida(flower_system.system.url, USER, token=flower_system.system.token(USER)) as o:
        spec = dict(LISTING_1_1, clients=[1, 2, 7], iterations=2)
        assignment = o.submit(spec)
        assert assignment.wait(timeout=60, progress=False).status == "done"
    aid = assignment.id

    def onboard() -> list[dict[str, Any]] | None:
        mine = [t for t in _tasks(flower_system, "oodida.edge.onboard") if f" assignment={aid} " in t["args"]]
        return mine if len(mine) == 6 and all(t["state"] == "SUCCESS" for t in mine) else None

    tasks = flower_system.wait_for(f"6 succeeded on-board tasks of {aid}", onboard)
    seen = set()
    for task in tasks:
        match = re.fullmatch(
            rf"client=(\d) iteration=(\d) assignment={aid} user={USER} method=average signals=speed",
            task["args"],
        )
        assert match, task["args"]
        client, iteration = int(match[1]), int(match[2])
        assert task["routing_key"] == f"client.{client}"
        assert task["worker"] == (f"client-7@{HOST}" if client == 7 else f"clients-1-3@{HOST}")
        seen.add((iteration, client))
    assert seen == {(i, c) for i in (0, 1) for c in (1, 2, 7)}

    def offboard() -> list[dict[str, Any]] | None:
        mine = [t for t in _tasks(flower_system, "oodida.cloud.finish_iteration") if aid in t["args"]]
        return mine if len(mine) == 2 else None

    steps = flower_system.wait_for(f"the 2 off-board steps of {aid}", offboard)
    assert sorted(t["args"] for t in steps) == [
        f"iteration={i} assignment={aid} user={USER} answers=3" for i in (0, 1)
    ]
    assert sorted(t["kwargs"] for t in steps) == [
        f"{{'assignment_id': '{aid}', 'iteration': {i}}}" for i in (0, 1)
    ]
    # The search the operator's page shows: every task of the assignment by its arguments.
    found = flower_system.get_json(f"/api/tasks?search=args:assignment={aid}")
    assert sorted(t["name"] for t in found.values()) == sorted(
        ["oodida.cloud.start"] + ["oodida.cloud.finish_iteration"] * 2 + ["oodida.edge.onboard"] * 6
    )
    start = flower_system.get_json(f"/api/task/info/{aid}-start")
    assert start["name"] == "oodida.cloud.start"
    assert start["args"] == (
        f"assignment={aid} user={USER} name='Measurement Task' mode=measurement clients=1,2,7 iterations=2"
    )


def test_a_task_queued_for_an_offline_client_shows_as_sent_until_the_client_returns(
    flower_system: FlowerSystem, tmp_path: Path
) -> None:
    system = flower_system.system
    assert system is not None
    system.start_edge("client-8", "8")
    flower_system.wait_live(8)
    system.stop_process("client-8")  # offline now; its queue stays
    module = tmp_path / "share_above.py"
    module.write_text("def custom_code(x):\n    return sum(1 for v in x if v > 100) / len(x)\n")
    with Oodida(system.url, USER, token=system.token(USER)) as o:
        report = o.deploy_onboard(module, clients=[1, 8]).wait(timeout=30)
    assert report.accepted == (1,) and report.pending == (8,)
    task_id = f"{report.id}-c8"

    def queued() -> dict[str, Any] | None:
        found = {t["uuid"]: t for t in _tasks(flower_system, "oodida.edge.install")}
        return found.get(task_id)

    task = flower_system.wait_for(f"the install task {task_id}", queued)
    assert task["state"] == "PENDING"
    assert task["sent"] is not None
    assert task["received"] is None and task["started"] is None
    assert task.get("worker") is None
    assert task["routing_key"] == "client.8"
    assert task["args"].startswith(
        f"client=8 deployment={report.id} user={USER} file=share_above.py version=sha256:"
    )

    system.start_edge("client-8", "8")  # back: it finds the install task waiting in its queue
    try:

        def done() -> dict[str, Any] | None:
            info = flower_system.get_json(f"/api/task/info/{task_id}")
            return info if info["state"] == "SUCCESS" else None

        info = flower_system.wait_for(f"{task_id} succeeded", done)
        assert info["worker"] == f"client-8@{HOST}"
    finally:
        system.stop_process("client-8")


def test_flower_metrics_are_prometheus_text_about_the_fleet(flower_system: FlowerSystem) -> None:
    assert flower_system.system is not None
    with Oodida(flower_system.system.url, USER, token=flower_system.system.token(USER)) as o:
        assert o.submit(dict(LISTING_1_1, clients=[1])).wait(timeout=60, progress=False).status == "done"

    def metrics() -> str | None:
        text = flower_system.get("/metrics", auth=False).decode()
        online = f'flower_worker_online{{worker="clients-1-3@{HOST}"}} 1.0' in text  # after a heartbeat
        return text if 'task="oodida.edge.onboard"' in text and online else None

    text = flower_system.wait_for("on-board task metrics", metrics)
    assert "# TYPE flower_events_total counter" in text
    sent = r'flower_events_total\{task="oodida.edge.onboard",type="task-sent",worker="[^"]+"\} \d'
    assert re.search(sent, text)
    assert f'flower_worker_online{{worker="clients-1-3@{HOST}"}} 1.0' in text
    assert "flower_task_runtime_seconds_bucket" in text


def test_a_failed_custom_task_shows_as_failed_in_flower_and_its_metrics_while_the_chord_completes(
    flower_system: FlowerSystem, tmp_path: Path
) -> None:
    assert flower_system.system is not None
    module = tmp_path / "too_short.py"  # passes the dry run on 100 numbers, fails on 20 readings
    module.write_text(
        "def custom_code(x):\n    if len(x) != 100:\n        raise ValueError('too short')\n    return 1\n"
    )
    user = f"{USER}-fails"
    with Oodida(flower_system.system.url, user, token=flower_system.system.token(user)) as o:
        o.deploy_onboard(module, clients=[1, 2]).wait(timeout=30)
        spec = dict(LISTING_1_1, clients=[1, 2], onboard="custom", samples=20)
        result = o.submit(spec).wait(timeout=60, progress=False)
    assert result.status == "failed" and result.iterations[0].ended_by == "complete"
    aid = result.id

    def labelled() -> list[dict[str, Any]] | None:
        mine = [t for t in _tasks(flower_system, "oodida.edge.onboard") if f" assignment={aid} " in t["args"]]
        return mine if len(mine) == 2 and all(t["state"] == "SUCCESS" for t in mine) else None

    for task in flower_system.wait_for(f"2 on-board tasks of {aid}", labelled):
        assert task["result"].startswith("FAILED (sha256:"), task["result"]
        assert "ValueError: too short" in task["result"]

    counter = (
        r'flower_events_total\{task="oodida.edge.onboard",type="task-onboard-failed",worker="[^"]+"\} (\d+)'
    )

    def counted() -> int | None:
        found = re.findall(counter, flower_system.get("/metrics", auth=False).decode())
        total = sum(int(float(n)) for n in found)
        return total if total >= 2 else None

    assert flower_system.wait_for("the task-onboard-failed counter", counted) >= 2


def test_flowers_api_and_pages_ask_for_the_login(flower_system: FlowerSystem) -> None:
    for path in ("/api/workers", "/workers"):
        with pytest.raises(urllib.error.HTTPError) as err:
            flower_system.get(path, auth=False)
        assert err.value.code == 401
    assert flower_system.get("/healthcheck", auth=False) == b"OK"


# -- a real browser ----------------------------------------------------------------------------
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    chromium = _chromium()
    assert chromium is not None
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-quic",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=8000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium (Debian: apt-get install chromium)")
def test_a_browser_finds_the_client_workers_on_flowers_workers_page(
    flower_system: FlowerSystem, tmp_path: Path
) -> None:
    flower_system.wait_for(  # the page lists what Flower knows from the workers' events
        "the workers online",
        lambda: (
            {f"clients-1-3@{HOST}", f"client-7@{HOST}"}
            <= set(flower_system.get_json("/api/workers?refresh=1"))
        ),
    )
    login_url = flower_system.url.replace("http://", f"http://{flower_system.login}@")
    dom = _browse(login_url + "workers", tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = re.findall(r'<tr class="(?:odd|even)">(.*?)</tr>', dom.stdout, re.S)
    names = {m for row in rows for m in re.findall(r'title="([^"]+@[^"]+)"', row)}
    assert {f"clients-1-3@{HOST}", f"client-7@{HOST}", f"cloud-1@{HOST}"} <= names
    online = next(row for row in rows if f'title="clients-1-3@{HOST}"' in row)
    assert "Online" in online

    for page in ("workers", "tasks"):
        shot = tmp_path / f"flower-{page}.png"
        out = _browse(
            login_url + page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900"
        )
        assert out.returncode == 0, out.stderr[-2000:]
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        print(f"screenshot of Flower's {page} page: {shot}")


# -- oodida up --flower ------------------------------------------------------------------------
@pytest.mark.slow
def test_oodida_up_with_flower_serves_flower_on_the_same_redis(tmp_path: Path) -> None:
    login = "ops:up-test-secret"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oodida_user._cli",
            "up",
            "--clients",
            "2",
            "--flower",
            "--flower-port",
            "0",
            "--flower-auth",
            login,
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "OODIDA_"))},
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url_line = proc.stdout.readline()
        assert url_line.startswith("OODIDA_REDIS_URL="), url_line
        flower_line = proc.stderr.readline()
        match = re.match(r"# Flower: (http://127\.0\.0\.1:\d+/) \(login 'ops'\)", flower_line)
        assert match, flower_line
        fs = FlowerSystem(match[1], login)
        found = fs.wait_for(
            "the up command's fleet",
            lambda: {f"clients-1-2@{HOST}"} <= set(fs.get_json("/api/workers?refresh=1")),
        )
        assert found
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0
