"""Redis ACL users per role against the embedded Redis (6.2): what each role may not do, and
a whole system whose processes each hold only their own role still running assignments."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from oodida_core.protocol.keys import Keys
from oodida_ops.local import LocalSystem
from oodida_ops.redis_server import EmbeddedRedis
from oodida_user import Oodida

KEYS = Keys()


@pytest.fixture(scope="module")
def role_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An embedded Redis with the roles applied by ``oodida acl --apply --lock-default``."""
    with EmbeddedRedis(tmp_path_factory.mktemp("acl")) as server:
        setup = redis.Redis.from_url(server.url)
        setup.hset(KEYS.users, "alice", '{"credential": "hmac-sha256$00$00"}')
        setup.hset(KEYS.code("sha256:abc"), mapping={"source": "x = 1", "filename": "m.py"})
        setup.close()
        out = subprocess.run(
            [sys.executable, "-m", "oodida_user._cli", "acl", "--apply", "--lock-default"],
            env={**os.environ, "OODIDA_REDIS_URL": server.url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        urls: dict[str, str] = {}
        for line in out.stdout.splitlines():
            for part in line.split():
                if part.startswith(("OODIDA_REDIS_URL=", "OODIDA_READ_URL=")):
                    url = part.split("=", 1)[1]
                    urls[url.split("//", 1)[1].split(":", 1)[0].removeprefix("oodida-")] = url
        assert set(urls) == {"admin", "cloud", "analyst", "analyst-read", "flower"}
        vehicle = subprocess.run(  # a vehicle's own users: "edge" below
            [sys.executable, "-m", "oodida_user._cli", "vehicles", "add", "1"],
            env={**os.environ, "OODIDA_REDIS_URL": urls["admin"]},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert vehicle.returncode == 0, vehicle.stderr
        given = dict(line.split("=", 1) for line in vehicle.stdout.splitlines())
        urls["edge"], urls["edge-read"] = given["OODIDA_REDIS_URL"], given["OODIDA_READ_URL"]
        yield urls
        admin = redis.Redis.from_url(urls["admin"])
        admin.execute_command("ACL", "SETUSER", "default", "on")  # so that stop() is clean
        admin.close()


def refused(url: str, call: Callable[[redis.Redis], object]) -> bool:
    client = redis.Redis.from_url(url)
    try:
        call(client)
    except (redis.exceptions.NoPermissionError, redis.exceptions.AuthenticationError) as exc:
        return "permission" in str(exc).lower() or "auth" in str(exc).lower()
    except redis.exceptions.ResponseError as exc:  # in a script: "the user ... can't run this command"
        return any(m in str(exc) for m in ("NOPERM", "NOAUTH", "can't run this command"))
    finally:
        client.close()
    return False


def test_only_the_operator_and_the_cloud_read_the_users_token_hashes(role_urls: dict[str, str]) -> None:
    for role in ("edge", "edge-read", "analyst", "analyst-read"):
        assert refused(role_urls[role], lambda r: r.hgetall(KEYS.users)), role
        assert refused(role_urls[role], lambda r: r.hget(KEYS.users, "alice")), role
    for role in ("admin", "cloud"):
        client = redis.Redis.from_url(role_urls[role])
        assert client.hget(KEYS.users, "alice") is not None
        client.close()


def test_the_default_user_is_locked_out(role_urls: dict[str, str]) -> None:
    port = role_urls["admin"].rsplit(":", 1)[1].split("/")[0]
    assert refused(f"redis://127.0.0.1:{port}/0", lambda r: r.get("anything"))


def test_no_edge_or_analyst_user_writes_code_or_anothers_code_pointer(role_urls: dict[str, str]) -> None:
    for role in ("edge", "edge-read", "analyst", "analyst-read"):
        assert refused(role_urls[role], lambda r: r.hset(KEYS.code("sha256:abc"), "source", "evil")), role
        assert refused(role_urls[role], lambda r: r.delete(KEYS.code("sha256:abc"))), role
    for role in ("analyst", "analyst-read", "edge-read"):
        assert refused(role_urls[role], lambda r: r.lpush(KEYS.onboard_pointer("bob", 1), "sha256:abc")), role
    reader = redis.Redis.from_url(role_urls["edge-read"])  # the edge reads code through its reader
    assert reader.hget(KEYS.code("sha256:abc"), "source") == b"x = 1"
    reader.close()


def test_an_analyst_reads_no_queue_sends_no_remote_control_and_writes_nothing_it_reads(
    role_urls: dict[str, str],
) -> None:
    analyst, reader = role_urls["analyst"], role_urls["analyst-read"]
    assert refused(analyst, lambda r: r.lrange("cloud", 0, -1))  # pending requests carry tokens
    assert refused(analyst, lambda r: r.brpop(["cloud"], 1))
    assert refused(analyst, lambda r: r.publish("/0.celery.pidbox", "shutdown"))
    assert refused(analyst, lambda r: r.lpush("client.1", "a forged on-board task"))
    assert refused(reader, lambda r: r.hset(KEYS.assignment("a1"), "status", "done"))
    assert refused(reader, lambda r: r.xadd(KEYS.reply("r1"), {"reply": "{}"}))
    write_in_a_script = "return redis.call('HSET', KEYS[1], 'status', 'done')"
    assert refused(reader, lambda r: r.eval(write_in_a_script, 1, KEYS.assignment("a1")))
    assert refused(reader, lambda r: r.lrange("cloud", 0, -1))
    assert refused(role_urls["cloud"], lambda r: r.flushall())
    assert not refused(reader, lambda r: r.hgetall(KEYS.assignment("a1")))  # what it is for


def test_the_printed_rules_load_as_an_aclfile(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "oodida_user._cli", "acl", "--redis-url", "redis://127.0.0.1:6379/0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    acl_file = tmp_path / "users.acl"
    acl_file.write_text("".join(line + "\n" for line in out.stdout.splitlines() if line.startswith("user ")))
    cloud = next(p.split("=", 1)[1] for p in out.stdout.split() if "//oodida-cloud:" in p)
    with EmbeddedRedis(tmp_path, extra_config={"aclfile": str(acl_file)}) as server:
        client = redis.Redis.from_url(cloud.replace(":6379/", f":{server.port}/"))
        assert client.ping()
        client.close()


@pytest.mark.slow
def test_a_system_whose_processes_hold_only_their_roles_runs_custom_code_end_to_end(
    tmp_path: Path,
) -> None:
    with LocalSystem(2, data_dir=tmp_path, acl=True) as system:
        assert {"cloud", "edge", "edge-read", "analyst", "analyst-read"} <= set(system.role_urls)
        assert "oodida-vehicle-fleet:" in system.role_urls["edge"]  # the fleet is a vehicle of its own
        with Oodida(settings=system.client_settings("acl-alice")) as o:
            assert "analyst-read" in o.settings.read_url and "oodida-analyst:" in o.settings.redis_url
            module = tmp_path / "mean.py"
            module.write_text("def custom_code(x):\n    return sum(x) / len(x)\n")
            version = o.deploy_onboard(module, clients=[1, 2]).wait(timeout=60).version
            assert o.code_versions([1, 2])["onboard"] == {1: version, 2: version}
            spec = {
                "name": "acl",
                "mode": "measurement",
                "clients": "all",
                "signals": "speed",
                "onboard": "custom",
                "frequency": 1,
                "samples": 20,
                "iterations": 2,
            }
            result = o.submit(spec).wait(timeout=120)
            assert result.status == "done" and len(result.iterations) == 2
            assert set(result.iterations[-1].versions.values()) == {version}
            endless = o.submit({**spec, "onboard": "max", "iterations": 0})
            next(iter(endless.iterations(timeout=60)))
            assert endless.progress().status == "running"  # reads the chord's counters
            assert endless.cancel().status == "cancelled"  # the cloud revokes over remote control
        admin = redis.Redis.from_url(system.url, decode_responses=True)
        denied = [
            entry
            for entry in admin.execute_command("ACL", "LOG")
            if entry["object"] != "client"  # redis-py's CLIENT SETINFO, a 7.2 command
        ]
        admin.close()
        assert not denied, denied
