"""Every Lua script is a file whose header names its KEYS, ARGV and replies, and each reply it
names comes out of a real Redis here: the registry's, the code store's and the quotas' scripts
(the assignment store's are in test_lua_scripts_assignments.py). No Python module holds Lua."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from oodida_core.state.lua import HERE, load
from oodida_ops.redis_server import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("oodida_core", "oodida_user", "oodida_cloud", "oodida_edge")
SCRIPTS = sorted(p.stem for p in HERE.glob("*.lua"))
USED = re.compile(r"\b(KEYS|ARGV)\[(\d+)\]")
NAMED = re.compile(r"^-- (KEYS|ARGV)\[(\d+)\]  \S", re.M)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("lua")) as srv:
        yield srv


@pytest.fixture()
def r(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


def run(r: redis.Redis, name: str, keys: list[str], args: list[Any] | None = None) -> Any:
    """Call script ``name`` with the file's text, as the stores do."""
    return r.register_script(load(name))(keys=keys, args=args or [])


# -- every script: a file with its header ------------------------------------------------------
def header_and_body(name: str) -> tuple[str, str]:
    lines = load(name).splitlines(keepends=True)
    head = [line for line in lines if line.startswith("--")]
    assert lines[: len(head)] == head, f"{name}.lua: the header is the file's first lines"
    return "".join(head), "".join(lines[len(head) :])


def test_there_is_a_script_file_for_each_state_change_of_the_stores() -> None:
    assert len(SCRIPTS) == 16


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_header_names_its_keys_its_arguments_and_its_replies(name: str) -> None:
    head, body = header_and_body(name)
    assert head.startswith(f"-- {name}.lua: "), "the first line names the file and what it does"
    for what in ("KEYS", "ARGV"):
        assert re.search(rf"^-- {what}(\[| )", head, re.M), f"{name}.lua names no {what}"
        used = {int(n) for w, n in USED.findall(body) if w == what}
        named = {int(n) for w, n in NAMED.findall(head) if w == what}
        assert used <= named, f"{name}.lua uses {what}{sorted(used - named)} without naming them"
        assert named == set(range(1, len(named) + 1)), f"{name}.lua: {what} named out of order"
    assert re.search(r"^-- Returns ", head, re.M), f"{name}.lua does not say what it returns"


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_file_is_loaded_by_a_store(name: str) -> None:
    users = [p for p in (ROOT / "oodida_core").rglob("*.py") if f'load("{name}")' in p.read_text()]
    assert users, f"{name}.lua is loaded nowhere"


def test_no_python_module_holds_inline_lua() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "redis.call(" in path.read_text()
    ]
    assert not offenders


def test_a_script_is_read_once_per_process() -> None:
    assert load("mark_sent") is load("mark_sent")


# -- registry.py ---------------------------------------------------------------------------------
def test_beat_sets_every_heartbeat_with_the_live_window_and_finds_no_loss(r: redis.Redis) -> None:
    r.set("c:1:info", "{}")
    r.set("c:2:info", "{}")
    assert run(r, "beat_clients", ["c:1:seen", "c:2:seen", "c:1:info", "c:2:info"], ["12.5", 3000]) == []
    assert r.mget("c:1:seen", "c:2:seen") == ["12.5", "12.5"]
    assert 0 < r.pttl("c:2:seen") <= 3000


def test_beat_names_the_positions_of_the_clients_whose_info_is_gone(r: redis.Redis) -> None:
    r.set("c:1:info", "{}")
    keys = ["c:1:seen", "c:2:seen", "c:3:seen", "c:1:info", "c:2:info", "c:3:info"]
    assert run(r, "beat_clients", keys, ["1.0", 1000]) == [2, 3]
    assert r.exists("c:2:seen", "c:3:seen") == 2  # a lost client still beats


def test_beat_refuses_more_than_ten_thousand_clients_in_one_call(r: redis.Redis) -> None:
    """A vehicle may run this script: millions of keys held Redis for seconds (red team)."""
    keys = [f"c:{i}:seen" for i in range(10_001)] + [f"c:{i}:info" for i in range(10_001)]
    with pytest.raises(redis.exceptions.ResponseError, match="at most 10000 clients"):
        run(r, "beat_clients", keys, ["1.0", 1000])
    assert not r.exists("c:0:seen")  # refused before writing anything


def test_known_clients_are_the_indexed_ids_whose_info_exists(r: redis.Redis) -> None:
    r.sadd("ids", "1", "2", "3")
    r.set("p:c:1:info", "{}")
    r.set("p:c:3:info", "{}")
    assert sorted(run(r, "known_clients", ["ids"], ["p:c:", ":info"])) == ["1", "3"]


def test_known_clients_of_an_empty_or_missing_index_is_empty(r: redis.Redis) -> None:
    r.set("p:c:1:info", "{}")  # registered but not indexed
    assert run(r, "known_clients", ["ids"], ["p:c:", ":info"]) == []


# -- codestore.py --------------------------------------------------------------------------------
def test_point_offboard_pushes_a_new_head_and_records_when(r: redis.Redis) -> None:
    assert run(r, "point_offboard", ["off", "at"], ["v1", "10.0", 10]) == 1
    assert run(r, "point_offboard", ["off", "at"], ["v2", "11.0", 10]) == 1
    assert r.lrange("off", 0, -1) == ["v2", "v1"]
    assert r.hgetall("at") == {"v1": "10.0", "v2": "11.0"}


def test_point_offboard_again_keeps_one_head_and_moves_its_time(r: redis.Redis) -> None:
    run(r, "point_offboard", ["off", "at"], ["v1", "10.0", 10])
    assert run(r, "point_offboard", ["off", "at"], ["v1", "12.0", 10]) == 1
    assert r.lrange("off", 0, -1) == ["v1"]
    assert r.hget("at", "v1") == "12.0"


def test_point_offboard_keeps_only_the_history_asked_for(r: redis.Redis) -> None:
    for n in range(5):
        run(r, "point_offboard", ["off", "at"], [f"v{n}", "1.0", 3])
    assert r.lrange("off", 0, -1) == ["v4", "v3", "v2"]


def test_point_onboard_pushes_a_new_head_once_and_trims(r: redis.Redis) -> None:
    assert run(r, "point_onboard", ["on"], ["v1", 2]) == 1
    assert run(r, "point_onboard", ["on"], ["v1", 2]) == 1  # repeated: no second entry
    run(r, "point_onboard", ["on"], ["v2", 2])
    run(r, "point_onboard", ["on"], ["v3", 2])
    assert r.lrange("on", 0, -1) == ["v3", "v2"]
    assert not r.exists("at")  # only the pointer: the deployment's time is the cloud's


def test_rollback_drops_the_head_and_names_the_version_now_current(r: redis.Redis) -> None:
    r.rpush("ptr", "v2", "v1")
    assert run(r, "rollback_pointer", ["ptr"]) == [1, "v1"]
    assert run(r, "rollback_pointer", ["ptr"]) == [1, None]  # the pointer is empty now
    assert not r.exists("ptr")


def test_rollback_of_an_empty_pointer_changes_nothing(r: redis.Redis) -> None:
    assert run(r, "rollback_pointer", ["ptr"]) == [0, None]
    assert not r.exists("ptr")


def test_a_verdict_is_written_with_its_lifetime_and_an_event(r: redis.Redis) -> None:
    assert run(r, "record_verdict", ["d:v:7", "d:ev"], ['{"ok": true}', 7, 60]) == 1
    assert r.get("d:v:7") == '{"ok": true}'
    assert 0 < r.ttl("d:v:7") <= 60
    assert 0 < r.ttl("d:ev") <= 60
    entries: Any = r.xrange("d:ev")
    [(_id, fields)] = entries
    assert fields == {"type": "verdict", "client": "7"}


def test_a_repeated_verdict_replaces_the_first_and_adds_an_event(r: redis.Redis) -> None:
    run(r, "record_verdict", ["d:v:7", "d:ev"], ['{"ok": true}', 7, 60])
    assert run(r, "record_verdict", ["d:v:7", "d:ev"], ['{"ok": false}', 7, 60]) == 1
    assert r.get("d:v:7") == '{"ok": false}'
    assert r.xlen("d:ev") == 2


# -- quota.py ------------------------------------------------------------------------------------
def admit(r: redis.Redis, member: str, now: float, limit: int, drop_before: float = 0, ttl: int = 0) -> Any:
    return run(r, "admit_slot", ["slots"], [member, repr(now), limit, repr(drop_before), ttl])


def test_a_free_slot_is_taken_and_a_held_one_is_held_again(r: redis.Redis) -> None:
    assert admit(r, "a", 1.0, 1) == 1
    assert admit(r, "a", 2.0, 1) == 1  # repeated: it holds its slot, nothing else changes
    assert r.zrange("slots", 0, -1, withscores=True) == [("a", 1.0)]


def test_no_slot_is_taken_when_every_slot_is_taken(r: redis.Redis) -> None:
    admit(r, "a", 1.0, 2)
    admit(r, "b", 2.0, 2)
    assert admit(r, "c", 3.0, 2) == 0
    assert r.zrange("slots", 0, -1) == ["a", "b"]


def test_slots_taken_before_the_drop_time_are_freed_first(r: redis.Redis) -> None:
    admit(r, "a", 1.0, 1)
    assert admit(r, "b", 5.0, 1, drop_before=2.0) == 1
    assert r.zrange("slots", 0, -1) == ["b"]


def test_the_slots_expire_only_when_a_lifetime_is_given(r: redis.Redis) -> None:
    admit(r, "a", 1.0, 3)
    assert r.ttl("slots") == -1
    admit(r, "b", 1.0, 3, ttl=30)
    assert 0 < r.ttl("slots") <= 30
