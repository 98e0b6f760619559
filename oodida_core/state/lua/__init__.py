"""The Redis Lua scripts of the stores, one ``<name>.lua`` file each.

Every file opens with a header: its first line names the file and what the script does, then
one ``-- KEYS[i]`` line per key and one ``-- ARGV[i]`` line per argument (``-- ARGV     none``
when it takes none; ``KEYS[1..n]`` for a variable number), and a ``-- Returns`` paragraph
(tests/unit/test_lua_scripts.py holds every file to it).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@cache
def load(name: str) -> str:
    """The text of script ``<name>.lua`` (read once per process)."""
    return (HERE / f"{name}.lua").read_text()


def preload(client: Any) -> int:
    """Load every script into the server behind ``client`` (SCRIPT LOAD, in one pipeline), so
    that roles without SCRIPT LOAD (vehicles, readers: ``security/acl.py``) can EVALSHA them;
    Celery's chord scripts too (a vehicle's answer joins its chord with one).
    The cloud does it at start and after a Redis restart empties the script cache; the operator
    when making users; only those missing from the server's cache are sent. The number of
    scripts."""
    from celery.backends import redis as celery_redis  # Celery's chord scripts, run by vehicles

    scripts = [load(path.stem) for path in sorted(HERE.glob("*.lua"))]
    scripts += [
        celery_redis.CHORD_PART_RETURN_LUA,
        celery_redis.CHORD_CLEANUP_LUA,
        celery_redis.CHORD_CLAIM_EXTEND_LUA,
    ]
    shas = [hashlib.sha1(script.encode()).hexdigest() for script in scripts]
    missing = [
        script for script, there in zip(scripts, client.script_exists(*shas), strict=True) if not there
    ]
    if missing:  # after a restart; otherwise one SCRIPT EXISTS is all it costs
        pipe = client.pipeline(transaction=False)
        for script in missing:
            pipe.script_load(script)
        pipe.execute()
    return len(scripts)
