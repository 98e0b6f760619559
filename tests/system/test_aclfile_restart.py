"""A Redis 7 server with the fleet's aclfile and an append-only file keeps every transaction
across a restart.

Redis 7 replays a MULTI/EXEC block of its append-only file as the ``default`` user and checks
that user's ACL again at EXEC (redis/redis#14541, valkey-io/valkey#3983). With ``default``
switched off, as a hardened aclfile usually has it, every transaction (an assignment's start,
an iteration's result, a deployment) is dropped at the restart, silently. Seen first in the
docker fleet's test; ``acl.default_user_rules`` locks the default user with a random password
instead, and ``oodida acl --apply --lock-default`` does the same.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from oodida_core.protocol.keys import Keys
from oodida_core.security import acl
from oodida_ops.redis_server import EmbeddedRedis

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("redis-server"), reason="no Redis 7 redis-server on PATH"),
]


def _restart_keeps(tmp_path: Path, default_line: str) -> list[bytes | None]:
    keys = Keys()
    role = acl.roles(keys)["cloud"]
    aclfile = tmp_path / "users.acl"
    aclfile.write_text(default_line + "\n" + acl.acl_lines([role], {"cloud": "pw"}, "oodida")[1] + "\n")
    server = EmbeddedRedis(
        tmp_path, binary=shutil.which("redis-server"), extra_config={"aclfile": str(aclfile)}
    )
    try:
        server.start()
        cloud = redis.Redis(port=server.port, username="oodida-cloud", password="pw")
        pipe = cloud.pipeline(transaction=True)
        pipe.set("a", "1")
        pipe.set("b", "2")
        pipe.execute()
        cloud.set("c", "3")
        cloud.close()
        server.stop()
        server.start()
        cloud = redis.Redis(port=server.port, username="oodida-cloud", password="pw")
        values = cloud.mget("a", "b", "c")
        cloud.close()
        return values
    finally:
        server.stop()


def test_a_switched_off_default_user_loses_transactions_at_a_restart(tmp_path: Path) -> None:
    """The attack surface we avoid: Redis 7's behaviour, reproduced (if a Redis release fixes
    it, this test says so and the workaround can go)."""
    assert _restart_keeps(tmp_path, "user default off resetchannels -@all") == [None, None, b"3"]


def test_the_fleets_locked_default_user_keeps_every_transaction(tmp_path: Path) -> None:
    line = acl.acl_lines([], {}, "oodida")[0]
    assert _restart_keeps(tmp_path, line) == [b"1", b"2", b"3"]
    with pytest.raises(redis.exceptions.AuthenticationError):  # nobody logs in as the default user
        _locked(tmp_path, line)


def _locked(tmp_path: Path, line: str) -> None:
    aclfile = tmp_path / "locked.acl"
    aclfile.write_text(line + "\n")
    server = EmbeddedRedis(
        tmp_path / "locked", binary=shutil.which("redis-server"), extra_config={"aclfile": str(aclfile)}
    )
    try:
        server.start()
        redis.Redis(port=server.port).get("a")
    finally:
        server.stop()
