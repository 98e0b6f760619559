"""The command line against real processes: ``oodida up`` and the analyst's commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from oodida_core.protocol.keys import Keys
from oodida_core.security.auth import UserStore
from oodida_core.settings import Settings
from oodida_core.spec.model import LISTING_1_1
from oodida_core.state.registry import Registry
from oodida_ops.local import LocalSystem

OODIDA = [sys.executable, "-m", "oodida_user._cli"]

LISTING = dict(LISTING_1_1)


_TOKENS: dict[str, str] = {}


def run(args: list[str], url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``oodida ARGS`` as user cli-user of the system at ``url`` (its token issued once)."""
    if url not in _TOKENS:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            _TOKENS[url] = UserStore(client, Keys()).add_or_rotate("cli-user")
        except redis.exceptions.ConnectionError:
            _TOKENS[url] = ""  # no system there: the command says so itself
        finally:
            client.close()
    env = {**os.environ, "OODIDA_REDIS_URL": url, "OODIDA_USER": "cli-user", "OODIDA_TOKEN": _TOKENS[url]}
    return subprocess.run([*OODIDA, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    kids = [int(p) for p in out]
    return kids + [d for k in kids for d in _descendants(k)]


@pytest.mark.slow
def test_up_prints_the_url_only_when_ready_and_stops_every_child_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*OODIDA, "up", "--clients", "3", "--data-dir", str(tmp_path), "--user", "analyst"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("OODIDA_REDIS_URL=redis://127.0.0.1:")
        url = line.split("=", 1)[1]
        assert proc.stdout.readline().strip() == "OODIDA_USER=analyst"
        token = proc.stdout.readline().strip().removeprefix("OODIDA_TOKEN=")
        client = redis.Redis.from_url(url)
        UserStore(client, Keys()).authenticate("analyst", token)  # the printed token works
        registry = Registry(client, Settings(redis_url=url))
        live = registry.live()  # ready means ready: no waiting here
        assert [c.client_id for c in live] == [1, 2, 3]
        assert registry.live_cloud_workers()
        pids = {c.pid for c in live}
        redis_pid = int(client.info("server")["process_id"])
        client.close()
        children = _descendants(proc.pid)
        assert len(children) >= 3  # redis, cloud, edge
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in [*pids, redis_pid, *children]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in [*pids, redis_pid, *children] if _alive(p)]
        assert list(tmp_path.glob("appendonly*")), "append-only persistence is on"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_submit_status_results_clients_and_schema_commands(system: LocalSystem, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(LISTING))
    out = run(["submit", str(spec), "--json"], system.url)
    assert out.returncode == 0, out.stderr
    aid = out.stdout.splitlines()[0]
    result = json.loads("\n".join(out.stdout.splitlines()[1:]))
    assert result["status"] == "done" and len(result["iterations"][0]["onboard"]) == 5

    status = run(["status", aid], system.url)
    assert status.returncode == 0 and "done" in status.stdout and "kept 5" in status.stdout
    results = run(["results", aid, "--json"], system.url)
    assert json.loads(results.stdout)["iterations"][0]["value"]["3"]["speed"] > 0

    clients = run(["clients", "--json"], system.url)
    assert [c["client_id"] for c in json.loads(clients.stdout)] == [1, 2, 3, 4, 5]

    schema = run(["schema"], system.url)
    props = json.loads(schema.stdout)["$defs"]["AssignmentSpec"]["properties"]
    assert {"name", "mode", "clients", "signals", "onboard", "offboard", "samples"} <= set(props)


def test_cli_reports_a_bad_spec_with_every_field_and_exit_code_2(system: LocalSystem, tmp_path: Path) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({**LISTING, "samples": 0, "sampels": 3, "onboard": "averge"}))
    out = run(["submit", str(spec)], system.url)
    assert out.returncode == 2
    for field in ("samples", "sampels", "onboard", "did you mean"):
        assert field in out.stderr


def test_cli_cancel_and_unknown_assignment(system: LocalSystem, tmp_path: Path) -> None:
    spec = tmp_path / "forever.json"
    spec.write_text(json.dumps({**LISTING, "iterations": 0}))
    out = run(["submit", str(spec), "--no-wait"], system.url)
    aid = out.stdout.strip()
    cancelled = run(["cancel", aid], system.url)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    missing = run(["status", "nosuchassignment"], system.url)
    assert missing.returncode == 1 and "no assignment" in missing.stderr


def test_cli_says_when_the_broker_is_unreachable() -> None:
    out = run(["clients"], "redis://127.0.0.1:1/0", timeout=30)
    assert out.returncode == 1 and "cannot reach" in out.stderr


@pytest.mark.slow
def test_demo_runs_listing_1_1_and_a_replacement_mid_assignment_then_stops_everything() -> None:
    out = subprocess.run([*OODIDA, "demo"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    for line in (
        "Listing 1.1",
        "vehicle 5:",
        "Federated learning",
        "Active-code replacement",
        "while the assignment runs",
        "no process was restarted",
        "every process it started is stopped",
    ):
        assert line in out.stdout
    versions = {line.split("from code ")[1] for line in out.stdout.splitlines() if "from code " in line}
    assert len(versions) == 2  # the iterations ran on two versions
    # It ends with a one-screen summary: what ran, on which code, where the data and Flower are.
    summary = out.stdout[out.stdout.index("== summary") :].splitlines()
    assert len(summary) <= 24 and all(len(line) <= 96 for line in summary)
    assert "4 assignments, 13 iterations on 5 simulated vehicles (clients 1-5)" in summary
    swap = " ".join(summary[summary.index(next(s for s in summary if s.lstrip().startswith("Swap"))) :][:2])
    assert swap.split()[:3] == ["Swap", "done", "6/6"]
    first, second = sorted(versions)
    assert "0-" in swap and first in swap and second in swap, swap
    flat = " ".join(" ".join(summary).split())
    data_dir = flat.split("the logs in ")[1].split(": removed now")[0]
    assert not Path(data_dir).exists() and "(keep them with oodida demo --data-dir DIR)" in flat
    assert "        or: oodida up --flower, then open http://127.0.0.1:5555/" in summary
    assert summary[-1].startswith("demo finished in")
