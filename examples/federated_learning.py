"""Federated learning with the built-in methods (the paper's section 3.4).

    python examples/federated_learning.py [--redis-url URL]

``federated`` mode with on-board ``train`` and off-board ``fedavg``: every vehicle fits a
linear model of its fuel rate on its speed and rpm from the fleet model it receives, on its
own readings, which never leave the vehicle; the cloud averages the vehicles' weights, weighted
by their number of samples. The off-board value of round i (the fleet model) is the ``model``
every vehicle starts from in round i+1.
"""

from __future__ import annotations

from common import connect

ROUNDS = 5


def main() -> None:
    with connect(__doc__ or "") as o:
        a = o.submit(
            {
                "name": "Federated fuel model",
                "mode": "federated",
                "clients": "all",
                "signals": ["speed", "rpm", "fuel_rate"],  # the features, then the target
                "onboard": "train",
                "offboard": "fedavg",
                "frequency": 10,
                "samples": 2000,
                "iterations": ROUNDS,
            }
        )
        print("round  vehicles  samples  fleet loss  weights [bias, speed, rpm]")
        losses = []
        for it in a.iterations(timeout=180):
            model = it.value
            losses.append(model["loss"])
            weights = ", ".join(f"{w:+.4f}" for w in model["weights"])
            counts = f"{model['clients']:>8}  {model['n_samples']:>7}"
            print(f"{it.index:>5}  {counts}  {model['loss']:10.5f}  [{weights}]")
        result = a.result()
        model = result.value
        features = ", ".join(model["features"])
        print(
            f"fleet model of {model['target']} from {features}: "
            f"loss {losses[0]:.5f} in round 0, {losses[-1]:.5f} in round {len(losses) - 1}"
        )
        rounds, vehicles = len(result.iterations), len(result.clients)
        print(f"federated learning done ({result.status}): {rounds} rounds on {vehicles} vehicles")
        if result.status != "done" or len(losses) != ROUNDS:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
