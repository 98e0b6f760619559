"""Flower as its own Redis user, ``oodida-flower`` (acl.py's ``flower`` role): it lists the workers
and shows the tasks with task events and inspection only, no connection of Flower's holds
another role's user, and Flower's credentials are refused everything else. On the embedded
Redis 6.2 and, over TLS with a certificate of Flower's own, on redis-server 7 where one is on
PATH (there, its broker page also counts the messages waiting in the task queues)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qsl, urlsplit

import pytest
import redis
from flower_kit import FlowerSystem

from oodida_core.protocol.keys import CLOUD_QUEUE, Keys, client_queue, header_task_id
from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

HOST = socket.gethostname()
LOGIN = "u:p"
USER = "flower-acl-analyst"
KEYS = Keys()
ATTACKER = "flower-acl-attacker"  # the client name of the attacks' connections (in ACL LOG)


def _redis7() -> bool:
    path = shutil.which("redis-server")
    if path is None:
        return False
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    version = out.split("v=", 1)[1].split()[0] if "v=" in out else "0"
    return int(version.split(".")[0]) >= 7


@pytest.fixture(scope="module", params=["redis-6.2", "redis-7-tls"])
def flower(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlowerSystem]:
    tls = request.param == "redis-7-tls"
    if tls and not _redis7():
        pytest.skip("no redis-server 7 on PATH (apt-get install redis-server)")
    system = LocalSystem(
        2,
        data_dir=tmp_path_factory.mktemp("flower-acl"),
        acl=True,
        tls=tls,
        flower=True,
        flower_port=0,
        flower_auth=LOGIN,
    )
    with system:
        yield FlowerSystem(system.flower_url, LOGIN, system)


def _local_ports(pid: int) -> set[int]:
    """The local TCP ports of process ``pid``'s sockets (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue
        if str(target).startswith("socket:["):
            inodes.add(str(target)[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _selectors(system: LocalSystem) -> bool:
    return system.tls  # the TLS system runs redis-server 7, the other the embedded 6.2


def _flower_denials(system: LocalSystem) -> list[dict[str, Any]]:
    """ACL LOG entries of Flower's user but the attacks', redis-py's CLIENT SETINFO (7.2 only)
    and, on 6.2, the queue lengths of the broker page (LLEN of the task queues: Redis 7 only)."""
    admin = redis.Redis.from_url(system.url, decode_responses=True)
    try:
        log = admin.execute_command("ACL", "LOG")
    finally:
        admin.close()
    queues = (CLOUD_QUEUE, "client.")
    return [
        entry
        for entry in log
        if entry["username"] == "oodida-flower"
        and entry["object"] != "client"
        and f"name={ATTACKER}" not in entry["client-info"]
        and not (entry["reason"] == "key" and entry["object"].startswith(queues) and not _selectors(system))
    ]


def test_flower_lists_the_workers_and_shows_the_tasks_as_its_own_user(flower: FlowerSystem) -> None:
    system = flower.system
    assert system is not None
    url = system.role_urls["flower"]
    assert urlsplit(url).username == "oodida-flower"
    proc = system.procs["flower"]
    assert _environ(proc.pid)["OODIDA_REDIS_URL"] == url  # not the admin's, not the cloud's
    if system.tls:  # a certificate of its own, as every other role
        certfile = dict(parse_qsl(urlsplit(url).query))["ssl_certfile"]
        assert Path(certfile).name == "flower.pem" and Path(certfile).is_file()
        others = {
            dict(parse_qsl(urlsplit(u).query)).get("ssl_certfile")
            for r, u in system.role_urls.items()
            if r != "flower"
        }
        assert certfile not in others

    wanted = {f"clients-1-2@{HOST}", f"cloud-1@{HOST}"}

    def workers() -> dict[str, Any] | None:
        found = flower.get_json("/api/workers?refresh=1")  # inspection, answered now
        return found if wanted <= set(found) and all(found[w].get("active_queues") for w in wanted) else None

    found = flower.wait_for(f"workers {sorted(wanted)}", workers)
    assert {q["name"] for q in found[f"clients-1-2@{HOST}"]["active_queues"]} == {"client.1", "client.2"}
    assert {q["name"] for q in found[f"cloud-1@{HOST}"]["active_queues"]} == {"cloud"}
    assert found[f"cloud-1@{HOST}"]["stats"]["pid"] > 0

    with Oodida(settings=system.client_settings(USER)) as o:
        result = o.submit(dict(LISTING_1_1, clients=[1, 2], iterations=2)).wait(timeout=60, progress=False)
    assert result.status == "done"
    aid = result.id

    def tasks() -> dict[str, Any] | None:
        mine = flower.get_json(f"/api/tasks?search=args:assignment={aid}")  # from task events
        names = sorted(t["name"] for t in mine.values())
        done = all(t["state"] == "SUCCESS" for t in mine.values())
        return mine if done and len(names) == 7 else None

    shown = flower.wait_for(f"the 7 tasks of {aid}", tasks)
    assert sorted(t["name"] for t in shown.values()) == sorted(
        ["oodida.cloud.start"] + ["oodida.cloud.finish_iteration"] * 2 + ["oodida.edge.onboard"] * 4
    )
    assert {t["worker"] for t in shown.values() if t["name"] == "oodida.edge.onboard"} == {
        f"clients-1-2@{HOST}"
    }

    # Flower's connections, told by their local ports: every one is Flower's own user.
    ports = _local_ports(proc.pid)
    admin = redis.Redis.from_url(system.url, decode_responses=True)
    try:
        connections = admin.client_list()
    finally:
        admin.close()
    flowers = [c for c in connections if int(c["addr"].rsplit(":", 1)[1]) in ports]
    assert flowers, (ports, connections)
    assert {c["user"] for c in flowers} == {"oodida-flower"}, flowers
    assert any(int(c["psub"]) >= 1 for c in flowers)  # its event receiver: PSUBSCRIBE /0.celeryev/*
    assert not _flower_denials(system)  # nothing it tried was refused


def test_flowers_broker_page_counts_queued_messages_on_redis_7_only(flower: FlowerSystem) -> None:
    system = flower.system
    assert system is not None
    if _selectors(system):  # LLEN on the task queues, and nothing else on them
        found = flower.get_json("/api/queues/length")
        assert {q["name"] for q in found["active_queues"]} >= {"cloud", "client.1", "client.2"}
        assert all(isinstance(q["messages"], int) for q in found["active_queues"])
    else:  # on 6.2 LLEN would come with BRPOP of the queues: refused, the page shows none
        with pytest.raises(HTTPError):
            flower.get("/api/queues/length")
    assert not _flower_denials(system)


def _refused(url: str, attack: Callable[[redis.Redis], object]) -> bool:
    client = redis.Redis.from_url(url, client_name=ATTACKER, socket_timeout=10)
    try:
        attack(client)
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as exc:  # in a MULTI: EXECABORT naming the refusal
        return "NOPERM" in str(exc) or "no permissions" in str(exc)
    finally:
        client.close()
    return False


AID = "00aa11bb22cc33dd"
ATTACKS: dict[str, Callable[[redis.Redis], object]] = {
    "read the requests on cloud (LRANGE)": lambda r: r.lrange(CLOUD_QUEUE, 0, -1),
    "take a request from cloud (LPOP)": lambda r: r.lpop(CLOUD_QUEUE),
    "take a request from cloud (BRPOP)": lambda r: r.brpop([CLOUD_QUEUE], 1),
    "take a client's task (BRPOP client.1)": lambda r: r.brpop([client_queue(1)], 1),
    "push a task for a client (LPUSH client.1)": lambda r: r.lpush(client_queue(1), "forged task"),
    "push onto cloud (LPUSH)": lambda r: r.lpush(CLOUD_QUEUE, "forged request"),
    "read a task's result": lambda r: r.get(f"celery-task-meta-{header_task_id(AID, 0, 1)}"),
    "subscribe to a task's result": lambda r: _subscribe(r, f"celery-task-meta-{header_task_id(AID, 0, 1)}"),
    "read an assignment": lambda r: r.hgetall(KEYS.assignment(AID)),
    "read an assignment's results": lambda r: r.hgetall(KEYS.iterations(AID)),
    "read the registry": lambda r: r.smembers(KEYS.client_index),
    "read the users' token hashes": lambda r: r.hgetall(KEYS.users),
    "write code": lambda r: r.hset(KEYS.code("sha256:00"), "source", "x"),
    "read messages in flight": lambda r: r.hgetall("unacked"),
    "list the users (ACL USERS)": lambda r: r.execute_command("ACL", "USERS"),
    "make a user (ACL SETUSER)": lambda r: r.execute_command(
        "ACL", "SETUSER", "evil", "on", ">x", "~*", "+@all"
    ),
    "list key names (KEYS)": lambda r: r.keys("*"),
    "list key names (SCAN)": lambda r: r.scan(0),
    "run a script": lambda r: r.eval("return 1", 0),
    "delete the binding table of cloud": lambda r: r.delete("_kombu.binding.cloud"),
}


def _subscribe(r: redis.Redis, channel: str) -> None:
    pubsub = r.pubsub()
    try:
        pubsub.subscribe(channel)
        pubsub.get_message(timeout=2)  # the confirmation, or the refusal raised
    finally:
        pubsub.close()


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_flowers_credentials_are_refused_everything_else(flower: FlowerSystem, attack: str) -> None:
    assert flower.system is not None
    assert _refused(flower.system.role_urls["flower"], ATTACKS[attack]), attack
