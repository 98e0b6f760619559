"""Asynchronous federated learning (FedBuff): aggregate every ``buffer`` answers.

    python examples/fedbuff.py [--redis-url URL]

With ``buffer`` no round waits for the slowest vehicle. Every time that many answers are
waiting, the cloud averages them (``fedavg``) into the next model version and sends it to those
vehicles only; the others go on training on the version they had. Each iteration is one
aggregation, and ``staleness`` says per vehicle how many versions old the model it trained on
was. To see stale models, add a slow vehicle to a running system:
``OODIDA_EDGE_DELAY=1 oodida-edge --clients 7`` (each task waits 1 s: a test aid).
"""

from __future__ import annotations

from common import connect


def main() -> None:
    with connect(__doc__ or "") as o:
        result = o.submit(
            {
                "name": "Fuel model, asynchronous",
                "mode": "federated",
                "clients": "all",
                "signals": ["speed", "rpm", "fuel_rate"],
                "onboard": "train",
                "offboard": "fedavg",
                "buffer": 2,
                "frequency": 10,
                "samples": 600,
                "iterations": 8,
            }
        ).wait(timeout=120, progress=False)
        for it in result.iterations:
            loss = it.value["loss"]
            vehicles = sorted(it.onboard)
            print(f"  aggregation {it.index}: vehicles {vehicles}, staleness {it.staleness}, loss {loss:.3g}")
        each = all(len(it.onboard) >= 2 and set(it.staleness) == set(it.onboard) for it in result.iterations)
        print(
            f"asynchronous federated learning ({result.status}): {len(result.iterations)} aggregations "
            f"of at least 2 answers each; staleness recorded: {'yes' if each else 'no'}"
        )


if __name__ == "__main__":
    main()
