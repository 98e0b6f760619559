"""Monitoring a threshold: which vehicles drive faster than 120 km/h, and when.

    python examples/monitoring_threshold.py [--redis-url URL]

Built-in methods only: ``monitoring`` mode with the on-board ``threshold`` method reports the
readings above the limit (their index in the batch and value); ``collect`` brings them home.
Three iterations are three consecutive rounds of checks.
"""

from __future__ import annotations

from common import connect

LIMIT = 120.0


def main() -> None:
    with connect(__doc__ or "") as o:
        result = o.submit(
            {
                "name": "Speeding",
                "mode": "monitoring",
                "clients": "all",
                "signals": "speed",
                "onboard": "threshold",
                "threshold": LIMIT,
                "direction": "above",
                "offboard": "collect",
                "frequency": 10,
                "samples": 600,  # a minute of readings at 10 Hz per round
                "iterations": 3,
            }
        ).wait(timeout=120, progress=False)
        flagged: set[int] = set()
        for it in result.iterations:
            print(f"round {it.index}:")
            for cid, value in sorted(it.value.items()):
                hits = value["speed"]
                if hits:
                    flagged.add(cid)
                    top = max(h["value"] for h in hits)
                    first = hits[0]["index"] / 10
                    print(
                        f"  vehicle {cid}: {len(hits):>3} readings above {LIMIT:.0f} km/h, "
                        f"first after {first:.1f}s, top {top:.1f} km/h"
                    )
                else:
                    print(f"  vehicle {cid}: no reading above {LIMIT:.0f} km/h")
        print(f"monitoring done ({result.status}): vehicles over {LIMIT:.0f} km/h: {sorted(flagged)}")


if __name__ == "__main__":
    main()
