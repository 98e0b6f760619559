"""What every example shares: connect to a running system, or start a local one for the run.

``python examples/<name>.py --redis-url redis://... --token ...`` uses that system (so do a set
``OODIDA_REDIS_URL`` and ``OODIDA_TOKEN``; the user is ``--user``); without a URL, the example
starts a LocalSystem of its own (an embedded Redis, a cloud worker and simulated vehicles in a
temporary directory), issues a token for its user there, and stops it at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from oodida_ops.local import LocalSystem
from oodida_user import Oodida

MODULES = Path(__file__).resolve().parent / "modules"


def module(name: str) -> Path:
    """The path of a custom module shipped with the examples (examples/modules/<name>)."""
    return MODULES / name


def short(version: str) -> str:
    """A code version as people read it: 'sha256:' and the first 12 hex digits."""
    return version[:19]


def halves(ids: list[int]) -> tuple[list[int], list[int]]:
    """The first and the second half of a list of client ids (the first half is the smaller)."""
    ids = sorted(ids)
    middle = len(ids) // 2
    return ids[:middle], ids[middle:]


@contextmanager
def connect(description: str, default_clients: int = 6, tags: tuple[str, ...] = ()) -> Iterator[Oodida]:
    """Parse the example's command line and yield a connected Oodida for the run; ``tags``:
    the vehicles' tags in a local system (``oodida up --tag`` items)."""
    script = Path(sys.argv[0]).stem or "example"
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("OODIDA_REDIS_URL"),
        help="a running OODIDA system (default: $OODIDA_REDIS_URL, else start a local one)",
    )
    parser.add_argument("--user", default=f"examples-{script}", help="the analyst (default: %(default)s)")
    parser.add_argument(
        "--token",
        default=os.environ.get("OODIDA_TOKEN"),
        help="the analyst's token, from `oodida users add` (default: $OODIDA_TOKEN)",
    )
    parser.add_argument(
        "--clients", type=int, default=default_clients, help="vehicles of a local system (default: 6)"
    )
    args = parser.parse_args()
    if args.redis_url:
        with Oodida(args.redis_url, user=args.user, token=args.token) as o:
            yield o
        return
    data_dir = tempfile.mkdtemp(prefix=f"oodida-{script}-")
    started = time.monotonic()
    try:
        with LocalSystem(args.clients, data_dir=data_dir, tags=tags) as system:
            took = time.monotonic() - started
            print(f"(started a local system with {args.clients} simulated vehicles in {took:.1f}s)")
            with Oodida(system.url, user=args.user, token=system.token(args.user)) as o:
                yield o
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def live_clients(o: Oodida) -> list[int]:
    """Ids of the live clients, sorted."""
    return sorted(c.client_id for c in o.clients())
