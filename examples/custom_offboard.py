"""A custom off-board module over built-in on-board results: fleet-wide speed percentiles.

    python examples/custom_offboard.py [--redis-url URL]

Every vehicle draws a uniform sample of its speed readings with the built-in on-board
``sample``; the cloud pools the kept samples and computes percentiles with
examples/modules/fleet_percentiles.py, deployed as this user's off-board code.
"""

from __future__ import annotations

from common import connect, module, short


def main() -> None:
    with connect(__doc__ or "") as o:
        report = o.deploy_offboard(module("fleet_percentiles.py")).wait(timeout=60)
        print(f"deployed fleet_percentiles.py {short(report.version)} to the cloud")
        result = o.submit(
            {
                "name": "Fleet speed percentiles",
                "mode": "measurement",
                "clients": "all",
                "signals": ["speed", "rpm"],
                "onboard": "sample",
                "sample_size": 200,
                "offboard": "custom",
                "frequency": 10,
                "samples": 3000,
                "iterations": 1,
            }
        ).wait(timeout=120, progress=False)
        it = result.iterations[0]
        print(f"on-board: built-in sample of 200 readings on vehicles {sorted(it.onboard)}")
        print(f"off-board: {short(it.offboard_version)}")
        for signal, s in it.value.items():
            print(
                f"  {signal:6} over {s['readings']} readings of {s['vehicles']} vehicles: "
                f"p10 {s['p10']:.1f}, median {s['p50']:.1f}, p90 {s['p90']:.1f}, p99 {s['p99']:.1f}"
            )
        print(f"custom off-board combined {len(it.onboard)} vehicles: {result.status}")


if __name__ == "__main__":
    main()
