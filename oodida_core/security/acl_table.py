"""What each role can and cannot do in Redis: one table, printed into README's Security section
(``python -m oodida_core.security.acl_table``) and checked against a live server's ACLs by
``tests/system/test_acl_table.py`` (each row's probe is run with each role's credentials).

A cell is ``yes``, ``no``, ``6.2``: allowed on Redis 6.2 only, whose ACLs cannot tell reading
a key from writing it (on Redis 7 the vehicle's key selectors refuse it), or ``7``: allowed on
Redis 7 only, where a selector can grant one command on some keys (Flower's LLEN of the task
queues; on 6.2 it would come with every other command Flower has). The vehicle is client 1 (its
writer and, on 6.2, its reader); "another vehicle" is client 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from oodida_core.protocol.keys import Keys

K = Keys()
AID, DEPLOY, VERSION, USER = "00aa11bb22cc33dd", "d1", "sha256:00", "alice"
COLUMNS = ("operator", "cloud", "analyst", "vehicle", "flower")
REPLIES = "00000000-0000-0000-0000-000000000000.reply.celery.pidbox"  # a requester's reply queue


@dataclass(frozen=True)
class Row:
    what: str
    probe: Callable[[redis.Redis], Any]
    cells: tuple[str, str, str, str, str]  # operator, cloud, analyst, vehicle, flower


def _receive_events(r: redis.Redis) -> None:
    """Subscribe to task events as Flower does (PSUBSCRIBE), or else to one kind of them."""
    for subscribe, channel in (("psubscribe", "/0.celeryev/*"), ("subscribe", "/0.celeryev/task.succeeded")):
        pubsub = r.pubsub()
        try:
            getattr(pubsub, subscribe)(channel)
            pubsub.get_message(timeout=1)  # the confirmation, or the refusal raised
            return
        except redis.exceptions.NoPermissionError:
            if subscribe == "subscribe":
                raise
        finally:
            pubsub.close()


def _inspect(r: redis.Redis) -> None:
    """What Celery's inspection does: bind a reply queue, publish the request, take a reply."""
    binding = "\x06\x16".join([REPLIES.split(".", 1)[0], "", REPLIES])
    r.sadd("_kombu.binding.reply.celery.pidbox", binding)
    r.publish("/0.celery.pidbox", "{}")
    r.brpop([REPLIES], 0.01)
    r.srem("_kombu.binding.reply.celery.pidbox", binding)


ROWS: tuple[Row, ...] = (
    Row(
        "take tasks from its own queue `client.1`",
        lambda r: r.brpop(["client.1"], 0.01),
        ("yes", "yes", "no", "yes", "no"),
    ),
    Row(
        "take or read tasks of another vehicle (`client.2`)",
        lambda r: r.lrange("client.2", 0, -1),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "push a task onto another vehicle's queue",
        lambda r: r.lpush("client.2", "x"),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "add to the binding sets of `cloud` (kombu's, never expiring)",
        lambda r: r.sadd("_kombu.binding.cloud", "junk"),
        ("yes", "yes", "no", "6.2", "no"),
    ),
    Row(
        "push a message onto `cloud` (requests, chord callbacks)",
        lambda r: r.lpush("cloud", "x"),
        ("yes", "yes", "yes", "yes", "no"),
    ),
    Row(
        "overwrite, trim or delete `cloud` (a string there stopped every cloud worker)",
        lambda r: r.ltrim("cloud", 0, -1),
        ("yes", "yes", "no", "6.2", "no"),
    ),
    Row(
        "combine sets into a key (`SUNIONSTORE`, ...: a few such calls held Redis for seconds)",
        lambda r: r.sunionstore("celery-taskset-meta-x", ["celery-taskset-meta-y"]),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "switch to another database (`SELECT`: key rules hold in every database)",
        lambda r: r.execute_command("SELECT", "1"),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "run Lua of its own (`EVAL`, `SCRIPT LOAD`: a script that writes and loops holds Redis)",
        lambda r: r.eval("return 1", 0),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "learn key names from invalidation messages (`CLIENT TRACKING on BCAST`)",
        lambda r: r.execute_command("CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", r.client_id()),
        ("yes", "7", "no", "no", "no"),
    ),
    Row(
        "read or take requests waiting on `cloud` (they carry tokens)",
        lambda r: r.lrange("cloud", 0, -1),
        ("yes", "yes", "no", "6.2", "no"),
    ),
    Row(
        "read messages in flight (kombu's `unacked`)",
        lambda r: r.hgetall("unacked"),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "store the answer of its own task (`celery-task-meta-…-c1`)",
        lambda r: r.set(f"celery-task-meta-{AID}-i0-c1", "{}"),
        ("yes", "yes", "no", "yes", "no"),
    ),
    Row(
        "store or read the answer of another vehicle's task",
        lambda r: r.get(f"celery-task-meta-{AID}-i0-c2"),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "read or write a chord's counters and the answers gathered in it",
        lambda r: r.zcard(f"celery-taskset-meta-{AID}-i0.j"),
        ("yes", "yes", "yes", "yes", "no"),
    ),
    Row(
        "list the registered clients (the index of ids)",
        lambda r: r.smembers(K.client_index),
        ("yes", "yes", "yes", "no", "no"),
    ),
    Row(
        "add or remove ids in the index of clients",
        lambda r: r.sadd(K.client_index, "99999"),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "write its own registry entry and heartbeat",
        lambda r: r.set(K.client_seen(1), "1"),
        ("yes", "yes", "no", "yes", "no"),
    ),
    Row(
        "read another vehicle's registry entry or heartbeat",
        lambda r: r.mget([K.client_info(2), K.client_seen(2)]),
        ("yes", "yes", "yes", "no", "no"),
    ),
    Row(
        "write another vehicle's registry entry",
        lambda r: r.set(K.client_info(2), "{}"),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "write or remove another vehicle's heartbeat",
        lambda r: r.delete(K.client_seen(2)),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "write its own deployment verdict",
        lambda r: r.set(K.deployment_verdict(DEPLOY, 1), "{}"),
        ("yes", "yes", "no", "yes", "no"),
    ),
    Row(
        "write or read another vehicle's deployment verdict",
        lambda r: r.get(K.deployment_verdict(DEPLOY, 2)),
        ("yes", "yes", "yes", "no", "no"),
    ),
    Row(
        "read a deployment record (user, version, targets)",
        lambda r: r.hgetall(K.deployment(DEPLOY)),
        ("yes", "yes", "yes", "no", "no"),
    ),
    Row(
        "read or move its own on-board pointers",
        lambda r: r.lindex(K.onboard_pointer(USER, 1), 0),
        ("yes", "yes", "no", "yes", "no"),
    ),
    Row(
        "read or move another vehicle's on-board pointers",
        lambda r: r.lindex(K.onboard_pointer(USER, 2), 0),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "read a user's off-board pointer or deployment times",
        lambda r: r.hgetall(K.deployed_at(USER)),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "read another vehicle's pending installs",
        lambda r: r.hgetall(K.pending_installs(2)),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "read a module's source, knowing its version",
        lambda r: r.hget(K.code(VERSION), "source"),
        ("yes", "yes", "no", "yes", "no"),
    ),
    Row("write code", lambda r: r.hset(K.code(VERSION), "source", "x"), ("yes", "yes", "no", "no", "no")),
    Row(
        "read an assignment's record (user, spec, status)",
        lambda r: r.hgetall(K.assignment(AID)),
        ("yes", "yes", "yes", "no", "no"),
    ),
    Row(
        "read an assignment's results",
        lambda r: r.hgetall(K.iterations(AID)),
        ("yes", "yes", "yes", "no", "no"),
    ),
    Row(
        "read whether an assignment ended (its end marker)",
        lambda r: r.get(K.assignment_ended(AID)),
        ("yes", "yes", "yes", "yes", "no"),
    ),
    Row(
        "write an assignment's end marker",
        lambda r: r.set(K.assignment_ended(AID), "cancelled"),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row(
        "write assignments or results",
        lambda r: r.hset(K.assignment(AID), "status", "done"),
        ("yes", "yes", "no", "no", "no"),
    ),
    Row("read the users' token hashes", lambda r: r.hgetall(K.users), ("yes", "yes", "no", "no", "no")),
    Row("list key names (`SCAN`, `KEYS`)", lambda r: r.scan(0), ("yes", "yes", "no", "no", "no")),
    Row(
        "publish on the remote-control channel (every worker answers only inspection, and obeys "
        "no `shutdown`, `revoke`, `pool_restart` from anyone)",
        lambda r: r.publish("/0.celery.pidbox", "x"),
        ("yes", "yes", "no", "yes", "yes"),
    ),
    Row(
        "take the replies to remote control (workers' stats, task labels)",
        lambda r: r.brpop([REPLIES], 0.01),
        ("yes", "yes", "no", "6.2", "yes"),
    ),
    Row(
        "ask workers for their state (inspect: bind a reply queue, publish the request, take the replies)",
        _inspect,
        ("yes", "yes", "no", "6.2", "yes"),
    ),
    Row(
        "publish task events (what Flower shows)",
        lambda r: r.publish("/0.celeryev/task.succeeded", "x"),
        ("yes", "yes", "yes", "yes", "yes"),
    ),
    Row(
        "receive task events (what Flower shows)",
        _receive_events,
        ("yes", "yes", "no", "yes", "yes"),
    ),
    Row(
        "count the messages waiting on `cloud` and the clients' queues (`LLEN`: Flower's broker page)",
        lambda r: (r.llen("cloud"), r.llen("client.2")),
        ("yes", "yes", "no", "no", "7"),
    ),
    Row(
        "manage users, ACLs and vehicles' credentials",
        lambda r: r.execute_command("ACL", "USERS"),
        ("yes", "no", "no", "no", "no"),
    ),
)


def expected(row: Row, column: str, selectors: bool) -> bool:
    """Whether ``column`` may do ``row`` on a server with (Redis 7) or without key selectors."""
    cell = row.cells[COLUMNS.index(column)]
    return cell == "yes" or (cell == "6.2" and not selectors) or (cell == "7" and selectors)


def markdown() -> str:
    """The table as README shows it."""
    lines = ["| can … | " + " | ".join(COLUMNS) + " |", "| --- |" + " :---: |" * len(COLUMNS)]
    shown = {"yes": "yes", "no": "no", "6.2": "Redis 6.2 only", "7": "Redis 7 only"}
    lines += [f"| {row.what} | " + " | ".join(shown[c] for c in row.cells) + " |" for row in ROWS]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
