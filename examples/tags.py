"""Vehicles chosen by tags: the operator tags the vehicles, the analyst chooses by tag.

    python examples/tags.py [--redis-url URL]

Needs a fleet whose vehicles carry the tags below; without a URL the example starts one:

    oodida up --clients 6 --tag region=eu --tag 1-3:powertrain=ev --tag 4-5:powertrain=diesel \\
        --tag 6:powertrain=hybrid --tag 5-6:region=us

It lists the electric vehicles, averages their speed, runs on two of the diesel or hybrid
vehicles picked at random, deploys a module to the vehicles in the us region only, and shows
the error of a filter that no vehicle matches.
"""

from __future__ import annotations

from common import connect, module

from oodida_user import SpecError

FLEET = ("region=eu", "1-3:powertrain=ev", "4-5:powertrain=diesel", "6:powertrain=hybrid", "5-6:region=us")


def speed(clients: object) -> dict[str, object]:
    return {
        "name": "Speed by tag",
        "mode": "measurement",
        "clients": clients,
        "signals": "speed",
        "onboard": "average",
        "offboard": "average",
        "frequency": 10,
        "samples": 600,
        "iterations": 1,
    }


def main() -> None:
    with connect(__doc__ or "", tags=FLEET) as o:
        for c in o.clients():
            print(f"vehicle {c.client_id}: {', '.join(f'{k}={v}' for k, v in sorted(c.tags.items())) or '-'}")
        evs = [c.client_id for c in o.clients(tags={"powertrain": "ev"})]
        print(f"electric vehicles: {evs}")

        result = o.submit(speed({"tags": {"powertrain": "ev"}})).wait(timeout=60, progress=False)
        print(
            f"mean speed of the electric vehicles: {result.value['speed']:.1f} km/h "
            f"on {sorted(result.iterations[0].onboard)} ({result.status})"
        )

        two = o.submit(speed({"tags": {"powertrain": ["diesel", "hybrid"]}, "k": 2})).wait(timeout=60)
        chosen = sorted(two.iterations[0].onboard)
        print(f"k=2 of the diesel or hybrid vehicles: {len(chosen)} chosen, {chosen} ({two.status})")

        report = o.deploy_onboard(module("speed_iqr.py"), clients={"tags": {"region": "us"}}).wait(timeout=60)
        print(f"speed_iqr.py deployed to the vehicles in region us: {sorted(report.accepted)}")

        try:
            o.submit(speed({"tags": {"powertrain": "hydrogen"}})).wait(timeout=30)
        except SpecError as exc:
            print(f"refused: {exc.issues[0].rule}")


if __name__ == "__main__":
    main()
