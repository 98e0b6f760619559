"""A custom on-board module: the quartiles of each vehicle's speed, computed on the vehicle.

    python examples/custom_onboard.py [--redis-url URL]

Deploys examples/modules/speed_iqr.py to every client, then runs an assignment with on-board
``custom``: each vehicle runs the module on its own readings; the cloud collects the results.
"""

from __future__ import annotations

from common import connect, module, short


def main() -> None:
    with connect(__doc__ or "") as o:
        report = o.deploy_onboard(module("speed_iqr.py"), clients="all").wait(timeout=60)
        print(f"deployed speed_iqr.py {short(report.version)} to clients {list(report.accepted)}")
        result = o.submit(
            {
                "name": "Speed quartiles",
                "mode": "measurement",
                "clients": "all",
                "signals": "speed",
                "onboard": "custom",
                "offboard": "collect",
                "frequency": 10,
                "samples": 3000,
                "iterations": 1,
            }
        ).wait(timeout=120, progress=False)
        it = result.iterations[0]
        print("vehicle  q1 km/h  median  q3 km/h    IQR  above 100 km/h  code")
        for cid, v in sorted(it.value.items()):
            print(
                f"{cid:>7}  {v['q1']:7.1f}  {v['median']:6.1f}  {v['q3']:7.1f}  {v['iqr']:5.1f}"
                f"  {v['share_above_100']:14.1%}  {short(it.versions[cid])}"
            )
        print(f"custom on-board ran on {len(it.onboard)} vehicles: {result.status}")


if __name__ == "__main__":
    main()
