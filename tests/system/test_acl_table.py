"""README's table of what each role can do (oodida_core/security/acl_table.py), checked row by row
against the ACLs of a live Redis: 6.2 (the embedded one) and, where ``redis-server`` 7 is on
PATH, Redis 7 with the vehicles' key selectors."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from oodida_core.protocol.keys import Keys
from oodida_core.security import acl
from oodida_core.security.acl_table import COLUMNS, ROWS, expected, markdown
from oodida_ops.redis_server import EmbeddedRedis

KEYS = Keys()
USERS = {
    "operator": ("admin",),
    "cloud": ("cloud",),
    "analyst": ("analyst", "analyst-read"),
    "vehicle": ("vehicle", "vehicle-read"),
    "flower": ("flower",),
}


def _redis7() -> str | None:
    path = shutil.which("redis-server")
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    version = out.split("v=", 1)[1].split()[0] if "v=" in out else "0"
    return path if int(version.split(".")[0]) >= 7 else None


@pytest.fixture(params=["6.2", "7"])
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "6.2":
        with EmbeddedRedis(tmp_path) as server:
            yield server.url
        return
    binary = _redis7()
    if binary is None:
        pytest.skip("no redis-server 7 on PATH (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _urls(base: str) -> tuple[dict[str, str], bool]:
    admin = redis.Redis.from_url(base)
    selectors = acl.has_selectors(admin)
    passwords = acl.new_passwords()
    acl.apply(admin, KEYS, passwords)
    urls = acl.role_urls(base, KEYS, passwords)
    vehicle = acl.add_vehicle(admin, base, KEYS, "1", [1])
    admin.close()
    urls["vehicle"] = vehicle.url
    if vehicle.read_url:
        urls["vehicle-read"] = vehicle.read_url
    return urls, selectors


def _allowed(url: str, probe: object) -> bool:
    client = redis.Redis.from_url(url)
    try:
        probe(client)  # type: ignore[operator]
    except (redis.exceptions.NoPermissionError, redis.exceptions.AuthenticationError):
        return False
    except redis.exceptions.ResponseError as exc:
        if "NOPERM" in str(exc) or "no permissions" in str(exc):
            return False
        raise
    finally:
        client.close()
    return True


def test_every_role_can_do_exactly_what_the_readme_table_says(server_url: str) -> None:
    urls, selectors = _urls(server_url)
    wrong = []
    for row in ROWS:
        for column in COLUMNS:
            users = [u for u in USERS[column] if u in urls]
            allowed = any(_allowed(urls[u], row.probe) for u in users)
            if allowed != expected(row, column, selectors):
                wrong.append(f"{column}: {row.what}: {'allowed' if allowed else 'refused'}")
    assert not wrong, "\n".join(wrong)


def test_the_readme_shows_the_table() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert markdown() in readme, (
        "README's Security section must hold `python -m oodida_core.security.acl_table`"
    )
