"""Canary deployments: a new on-board module goes to a random few vehicles first; a guard
assignment runs it there and, at the same time, the current version on the other vehicles;
then the library promotes it to every vehicle or rolls the few back, by the analyst's rules.

    python examples/canary.py [--redis-url URL]

The fleet runs examples/modules/voltage_mean.py. The first candidate,
voltage_calibrated.py, fails on vehicles whose alternator charges under 14.05 V (vehicle 1 of
the simulated fleet is one): it is rolled back on the canary and never reaches the others. The
second, voltage_mean_v2.py, computes the same figures: it is promoted to every vehicle.
"""

from __future__ import annotations

from common import connect, module, short

from oodida_user import Guard
from oodida_user.canary_rules import canary_size, pick_canary

GUARD = Guard(
    spec={
        "name": "battery voltage guard",
        "mode": "measurement",
        "signals": ["battery_voltage"],
        "onboard": "custom",
        "frequency": 1,
        "samples": 120,
        "timeout": 30,
    },
    iterations=3,
    max_failure_rate=0.0,  # any failure on a canary vehicle rolls it back
    tolerance=1.5,  # volts between the canary's mean and the others' (vehicles differ)
)
CANARY = 0.5


def main() -> None:
    with connect(__doc__ or "") as o:
        base = o.deploy_onboard(module("voltage_mean.py"), clients="all").wait(timeout=60)
        live = sorted(int(c) for c in base.accepted)
        print(f"the fleet runs voltage_mean.py {short(base.version)} on vehicles {live}")

        # The canary is drawn at random from a seed (recorded in the report); this one puts
        # vehicle 1 in it, so that the broken candidate meets a vehicle it fails on.
        size = canary_size(CANARY, len(live))
        seed = next(s for s in range(1000) if 1 in pick_canary(live, size, s)[0])
        report = o.deploy_onboard(
            module("voltage_calibrated.py"), clients="all", canary=CANARY, guard=GUARD, seed=seed
        )
        print(report)
        now = o.code_versions(live)["onboard"]
        reached = [c for c, v in now.items() if v == report.version]
        print(f"voltage_calibrated.py: {report.outcome}; on vehicles now: {reached or 'none'}")
        back = set(now.values()) == {base.version}
        print(f"canary vehicles back at voltage_mean.py: {'yes' if back else 'NO'}")
        print(f"never reached the others: {'yes' if 'promotion' not in report.deploy_reports else 'NO'}")

        report = o.deploy_onboard(module("voltage_mean_v2.py"), clients="all", canary=CANARY, guard=GUARD)
        print(report)
        now = o.code_versions(live)["onboard"]
        every = all(v == report.version for v in now.values())
        print(f"voltage_mean_v2.py: {report.outcome}; every vehicle runs it: {'yes' if every else 'NO'}")


if __name__ == "__main__":
    main()
