"""Sampling: a few raw readings from a few vehicles, instead of everything from everyone.

    python examples/sampling.py [--redis-url URL]

Built-in methods only. ``clients: 3`` picks three live vehicles at random; the on-board
``sample`` method draws ``sample_size`` readings of each signal uniformly without replacement
from the iteration's batch, so only those leave the vehicle.
"""

from __future__ import annotations

from common import connect


def main() -> None:
    with connect(__doc__ or "") as o:
        result = o.submit(
            {
                "name": "Raw samples",
                "mode": "measurement",
                "clients": 3,
                "signals": ["speed", "rpm"],
                "onboard": "sample",
                "sample_size": 5,
                "offboard": "collect",
                "frequency": 10,
                "samples": 6000,
                "iterations": 1,
            }
        ).wait(timeout=120, progress=False)
        it = result.iterations[0]
        print(f"3 vehicles picked at random: {sorted(it.value)}; 5 of 6000 readings of each signal")
        for cid, signals in sorted(it.value.items()):
            for signal, readings in signals.items():
                print(f"  vehicle {cid} {signal:5}: {', '.join(f'{r:7.1f}' for r in readings)}")
        sent = sum(len(r) for signals in it.value.values() for r in signals.values())
        print(f"sampled {sent} readings from {len(it.value)} vehicles ({result.status})")


if __name__ == "__main__":
    main()
