"""The Redis Lua scripts of the stores, one ``<name>.lua`` file each.

Every file opens with a header: its first line names the file and what the script does, then
one ``-- KEYS[i]`` line per key and one ``-- ARGV[i]`` line per argument (``-- ARGV     none``
when it takes none; ``KEYS[1..n]`` for a variable number), and a ``-- Returns`` paragraph
(tests/unit/test_lua_scripts.py holds every file to it).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

HERE = Path(__file__).parent


@cache
def load(name: str) -> str:
    """The text of script ``<name>.lua`` (read once per process)."""
    return (HERE / f"{name}.lua").read_text()
