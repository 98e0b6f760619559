"""Federated learning with each of the built-in strategies, side by side (flwr's definitions).

    python examples/federated_strategies.py [--redis-url URL]

The same task (a linear model of the fuel rate on speed and rpm, trained on board with `train`)
runs once per off-board strategy: `fedavg`, `fedavgm` (server momentum), `fedadam` and
`fedyogi` (server optimisers), `fedmedian`, `fedtrimmedavg` and `krum` (robust aggregation),
plus FedProx: `train` with `proximal_mu`, averaged by `fedavg`. The server optimisers keep their
state in the value they return (under "server"); each round's value is the model every vehicle
starts from in the next round.
"""

from __future__ import annotations

from typing import Any

from common import connect

ROUNDS = 4
TASK: dict[str, Any] = {
    "mode": "federated",
    "clients": "all",
    "signals": ["speed", "rpm", "fuel_rate"],  # the features, then the target
    "onboard": "train",
    "frequency": 10,
    "samples": 1000,
    "iterations": ROUNDS,
}
RUNS: dict[str, dict[str, Any]] = {
    "fedavg": {"offboard": "fedavg"},
    "fedprox": {"offboard": "fedavg", "proximal_mu": 0.5},
    "fedavgm": {"offboard": "fedavgm", "server_momentum": 0.5},
    "fedadam": {"offboard": "fedadam", "eta": 0.05},
    "fedyogi": {"offboard": "fedyogi", "eta": 0.05},
    "fedmedian": {"offboard": "fedmedian"},
    "fedtrimmedavg": {"offboard": "fedtrimmedavg", "beta": 0.2},
    "krum": {"offboard": "krum", "num_malicious_clients": 1, "num_clients_to_keep": 3},
}


def main() -> None:
    with connect(__doc__ or "") as o:
        started = {
            name: o.submit({**TASK, **extra, "name": f"fuel model, {name}"}) for name, extra in RUNS.items()
        }
        header = "strategy       loss per round (the vehicles' mean)"
        print(f"{header:<55}  fleet weights [bias, speed, rpm]  server state")
        done = 0
        for name, assignment in started.items():
            result = assignment.wait(timeout=180)
            losses = " ".join(f"{it.value['loss']:.4f}" for it in result.iterations)
            model = result.value
            weights = ", ".join(f"{w:+.4f}" for w in model["weights"])
            server = model.get("server")
            state = f"round {server['round']}" if server else ""
            if "selected" in model:
                state = f"kept vehicles {model['selected']}"
            print(f"{name:<13}  {losses:<40}  [{weights}]  {state}")
            done += result.status == "done" and len(result.iterations) == ROUNDS
        vehicles = len(started["fedavg"].result().clients)
        runs = f"{done} of {len(RUNS)} runs done"
        print(f"federated strategies: {runs}, {ROUNDS} rounds each on {vehicles} vehicles")
        adam = started["fedadam"].result().value["server"]
        print(f"fedadam carried its optimiser state through round {adam['round']}")
        if done != len(RUNS):
            raise SystemExit(1)


if __name__ == "__main__":
    main()
