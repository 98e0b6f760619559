"""``oodida list`` (alias ``ps``) and ``oodida clients`` against a real system: one's own
assignments only, newest first, with a header line, filtered, limited, or as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

OODIDA = str(Path(sys.executable).with_name("oodida"))
HEADER = ["ID", "NAME", "STATUS", "PROGRESS", "AGE", "FAILED"]


def run(system: LocalSystem, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OODIDA_REDIS_URL": system.url,
        "OODIDA_USER": user,
        "OODIDA_TOKEN": system.token(user),
        "PYTHONIOENCODING": "utf-8",
    }
    return subprocess.run([OODIDA, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture()
def listed(system: LocalSystem) -> Iterator[tuple[str, list[str], str]]:
    """A user with three assignments (done, cancelled, running; oldest first) and another
    user with one of their own."""
    user, other = f"lister{time.monotonic_ns()}", f"other{time.monotonic_ns()}"
    with (
        Oodida(system.url, user=user, token=system.token(user)) as o,
        Oodida(system.url, user=other, token=system.token(other)) as p,
    ):
        done = o.submit({**LISTING_1_1, "name": "done one", "iterations": 1})
        done.wait(timeout=60, progress=False)
        cancelled = o.submit({**LISTING_1_1, "name": "cancelled one", "iterations": 0, "keep": 5})
        cancelled.cancel(timeout=30)
        running = o.submit({**LISTING_1_1, "name": "running one", "iterations": 0, "keep": 5})
        theirs = p.submit({**LISTING_1_1, "name": "not yours", "iterations": 1})
        try:
            yield user, [running.id, cancelled.id, done.id], theirs.id
        finally:
            running.cancel(timeout=30)
            theirs.wait(timeout=60, progress=False)


def test_oodida_list_shows_ones_own_assignments_newest_first_under_a_header(
    system: LocalSystem, listed: tuple[str, list[str], str]
) -> None:
    user, ids, theirs = listed
    out = run(system, user, "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == HEADER
    assert [line.split()[0] for line in lines[1:]] == ids
    assert theirs not in out.stdout
    running, cancelled, done = lines[1:]
    assert "running one" in running and " running " in running and "/∞" in running
    assert "cancelled one" in cancelled and " cancelled " in cancelled
    assert "done one" in done and " done " in done and " 1/1 " in done
    assert all(line.split()[-1] == "0" for line in lines[1:])  # no failed iterations
    aliased = run(system, user, "ps").stdout.splitlines()
    assert aliased[0].split() == HEADER and [line.split()[0] for line in aliased[1:]] == ids


def test_oodida_list_json_filter_and_limit(system: LocalSystem, listed: tuple[str, list[str], str]) -> None:
    user, ids, theirs = listed
    assert theirs not in run(system, user, "list", "--json").stdout
    rows = json.loads(run(system, user, "list", "--json").stdout)
    assert [r["id"] for r in rows] == ids
    assert [r["status"] for r in rows] == ["running", "cancelled", "done"]
    assert rows[0]["iterations"] is None and rows[2]["iterations"] == 1
    assert rows[2]["iterations_done"] == 1 and rows[2]["failed_iterations"] == 0
    assert rows[0]["name"] == "running one" and rows[0]["age_s"] >= 0

    only = run(system, user, "list", "--status", "running")
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == ids[:1]
    none = run(system, user, "list", "--status", "failed")
    assert none.stdout.strip() == "no failed assignment(s)"

    limited = run(system, user, "list", "--limit", "1")
    assert limited.stdout.splitlines()[1:] == [
        limited.stdout.splitlines()[1],
        "... 2 more assignment(s) not shown (--limit 0 lists all)",
    ]
    assert limited.stdout.splitlines()[1].split()[0] == ids[0]
    bad = run(system, user, "list", "--limit", "-1")
    assert bad.returncode == 2 and "--limit" in bad.stderr


def test_oodida_clients_has_a_header_line(system: LocalSystem) -> None:
    out = run(system, f"lister{time.monotonic_ns()}", "clients")
    lines = out.stdout.splitlines()
    assert lines[0] == "5 live client(s)"
    assert lines[1].split() == ["CLIENT", "WORKER", "LAST", "SEEN", "SOURCE", "TAGS", "SIGNALS"]
    assert all(line.split()[-3:-1] == ["simulated", "-"] for line in lines[2:])  # no tags: "-"
    assert [int(line.split()[0]) for line in lines[2:]] == [1, 2, 3, 4, 5]
