"""Quorum: an iteration closes as soon as ``min_clients`` of its vehicles answered.

    python examples/quorum.py [--redis-url URL]

In a fleet some vehicles are always slow (poor coverage, a busy on-board unit). With
``min_clients`` an iteration does not wait for them: it closes as soon as that many of the
selected vehicles answered, and the others are listed as ``late``; whatever they send
afterwards is kept out of that iteration (``missing`` is for an iteration that ran into its
``timeout``). The next iteration goes to every selected vehicle again.
To see late vehicles, add a few slow ones to a running system:
``OODIDA_EDGE_DELAY=2 oodida-edge --clients 7-8`` (each task waits 2 s: a test aid).
"""

from __future__ import annotations

from common import connect


def main() -> None:
    with connect(__doc__ or "") as o:
        quorum = max(1, 2 * len(o.clients()) // 3)
        result = o.submit(
            {
                "name": "Top speed, quorum",
                "mode": "measurement",
                "clients": "all",
                "min_clients": quorum,
                "signals": "speed",
                "onboard": "max",
                "offboard": "max",
                "frequency": 10,
                "samples": 600,
                "iterations": 5,
            }
        ).wait(timeout=120, progress=False)
        n = len(result.clients)
        print(f"min_clients {quorum} of {n} vehicles")
        for it in result.iterations:
            took = it.finished_at - it.started_at
            print(
                f"  iteration {it.index}: ended by {it.ended_by:8} kept {len(it.onboard)}, "
                f"late {list(it.late)}, {took:.2f}s, top speed {it.value['speed']:.1f} km/h"
            )
        held = all(
            len(it.onboard) + len(it.failed) >= quorum and not set(it.late) & set(it.onboard)
            for it in result.iterations
        )
        print(
            f"every iteration closed with at least {quorum} answers, late ones kept out: "
            f"{'yes' if held else 'no'} ({result.status})"
        )


if __name__ == "__main__":
    main()
