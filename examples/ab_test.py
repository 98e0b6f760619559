"""A/B testing with o.experiment: module A on one random half of the fleet, module B on the
other, compared with a confidence interval and a test.

    python examples/ab_test.py [--redis-url URL]

A (examples/modules/mean_speed.py) averages every speed reading; B
(examples/modules/moving_mean_speed.py) leaves out the readings taken standing still, so B's
values should come out higher. ``o.experiment`` splits the vehicles at random (seeded), deploys
each module to its group, runs one assignment per variant at the same time, and compares them
per iteration and overall (one value per vehicle; Welch's t-test).
"""

from __future__ import annotations

from common import connect, module

SPEC = {
    "name": "A/B: typical speed",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "custom",
    "offboard": "collect",
    "frequency": 10,
    "samples": 3000,
    "iterations": 3,
}


def main() -> None:
    with connect(__doc__ or "") as o:
        variants = {"A": module("mean_speed.py"), "B": module("moving_mean_speed.py")}
        experiment = o.experiment(SPEC, variants, seed=2019)
        a, b = experiment.groups["A"], experiment.groups["B"]
        print(f"experiment {experiment.id}, seed {experiment.seed}: A on {list(a)}, B on {list(b)}")
        disjoint = "yes" if not set(a) & set(b) else "no"
        print(f"groups: A on {len(a)} vehicles, B on {len(b)} vehicles, disjoint: {disjoint}")

        result = experiment.wait(timeout=180)
        print(result)  # per iteration and overall: n, mean, median, B - A with its interval and p

        c = result.overall.comparisons[0]
        verdict = "a real difference" if c.significant else "no evidence of a difference"
        interval = "n/a" if c.low is None or c.high is None else f"[{c.low:+.1f}, {c.high:+.1f}]"
        p = "n/a" if c.pvalue is None else f"{c.pvalue:.3f}"
        print(
            f"B - A overall: {c.difference:+.1f} km/h, {c.confidence:.0%} CI {interval}, p = {p}: {verdict}"
        )

        # Each variant ran as an assignment of its own: the vote over code versions had one
        # version to count in each, so nothing was discarded, and every row names its variant.
        discarded = sum(len(it.discarded) for r in result.results.values() for it in r.iterations)
        print(f"none discarded by the vote: {'yes' if discarded == 0 else f'no ({discarded})'}")
        frame = result.to_frame()
        print(frame.groupby(["variant", "version"])["metric"].agg(["count", "mean"]).round(1))

        # Found again later (here, or with `oodida experiment results ID`) from the stored assignments.
        again = o.experiment_result(experiment.id)
        same = again.groups == result.groups and again.overall.comparisons[0].pvalue == c.pvalue
        print(f"found again from the stored assignments: {'yes' if same else 'no'}")
        print("A/B test done")


if __name__ == "__main__":
    main()
