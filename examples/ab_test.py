"""A/B testing: module A on one half of the fleet, module B on the other, compared.

    python examples/ab_test.py [--redis-url URL]

A (examples/modules/mean_speed.py) averages every speed reading; B
(examples/modules/moving_mean_speed.py) leaves out the readings taken standing still. Each
half runs its own assignment: within one assignment the majority vote over code versions
would keep only one version and discard the other half's results, as the last step shows.
"""

from __future__ import annotations

import statistics

from common import connect, halves, live_clients, module, short

SPEC = {
    "name": "A/B: typical speed",
    "mode": "measurement",
    "signals": "speed",
    "onboard": "custom",
    "offboard": "collect",
    "frequency": 10,
    "samples": 3000,
    "iterations": 3,
}


def main() -> None:
    with connect(__doc__ or "") as o:
        group_a, group_b = halves(live_clients(o))
        a = o.deploy_onboard(module("mean_speed.py"), clients=group_a).wait(timeout=60)
        b = o.deploy_onboard(module("moving_mean_speed.py"), clients=group_b).wait(timeout=60)
        print(f"A = mean_speed.py        {short(a.version)} on clients {list(a.accepted)}")
        print(f"B = moving_mean_speed.py {short(b.version)} on clients {list(b.accepted)}")

        # One assignment per half, running at the same time.
        runs = {
            "A": o.submit({**SPEC, "name": "A/B test: A", "clients": group_a}),
            "B": o.submit({**SPEC, "name": "A/B test: B", "clients": group_b}),
        }
        means = {}
        for arm, handle in runs.items():
            result = handle.wait(timeout=120, progress=False)
            values = [v for it in result.iterations for v in it.onboard.values()]
            failed = sum(len(it.failed) for it in result.iterations)
            versions = {short(v) for it in result.iterations for v in it.versions.values()}
            means[arm] = statistics.mean(values)
            print(
                f"arm {arm}: {len(values)} results, {failed} failed, from vehicles {list(result.clients)} "
                f"on {', '.join(sorted(versions))}: mean {means[arm]:.1f} km/h, "
                f"spread {statistics.pstdev(values):.1f}"
            )
        # The halves are different vehicles: in a real test split the fleet at random, or swap
        # the halves in a second round so that every vehicle runs both versions.
        print(f"compare: A {means['A']:.1f} km/h vs B {means['B']:.1f} km/h ({means['B'] - means['A']:+.1f})")

        # Why not one assignment over the whole fleet: the vote keeps a single version.
        whole = o.submit({**SPEC, "name": "A/B in one assignment", "clients": "all", "iterations": 1})
        it = whole.wait(timeout=120, progress=False).iterations[0]
        kept = {short(v) for c, v in it.versions.items() if c in it.onboard}
        print(
            f"one assignment over both halves keeps only {', '.join(kept)} "
            f"on {sorted(it.onboard)} and discards {sorted(it.discarded)}"
        )
        print("A/B test done")


if __name__ == "__main__":
    main()
