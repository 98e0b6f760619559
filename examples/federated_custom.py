"""Federated learning written purely as custom code (the paper's section 3.4, without the
analyst redeploying the weights by hand).

    python examples/federated_custom.py [--redis-url URL]

On-board (examples/modules/fed_train.py): each vehicle fits a linear model of its fuel rate on
its speed and rpm, starting from the fleet's model it receives. Off-board
(examples/modules/fed_average.py): the cloud averages the vehicles' weights. In ``federated``
mode the off-board value of iteration i is the ``model`` every vehicle gets in iteration i+1.
"""

from __future__ import annotations

from common import connect, module, short

ITERATIONS = 6


def main() -> None:
    with connect(__doc__ or "") as o:
        on = o.deploy_onboard(module("fed_train.py"), clients="all").wait(timeout=60)
        off = o.deploy_offboard(module("fed_average.py")).wait(timeout=60)
        print(f"on-board fed_train.py {short(on.version)} on clients {list(on.accepted)}")
        print(f"off-board fed_average.py {short(off.version)} in the cloud")
        a = o.submit(
            {
                "name": "Federated fuel model (custom code)",
                "mode": "federated",
                "clients": "all",
                "signals": ["speed", "rpm", "fuel_rate"],  # features, then the target
                "onboard": "custom",
                "offboard": "custom",
                "frequency": 10,
                "samples": 2000,
                "iterations": ITERATIONS,
            }
        )
        print("iteration  loss of the model received  after local training  fleet weights [speed, rpm, bias]")
        previous = None
        passed_on = True
        for it in a.iterations(timeout=180):
            expected = previous["weights"] if previous else [0.0, 0.0, 0.0]
            passed_on = passed_on and all(v["start"] == expected for v in it.onboard.values())
            weights = ", ".join(f"{w:+.4f}" for w in it.value["weights"])
            print(f"{it.index:>9}  {it.value['start_loss']:26.4f}  {it.value['loss']:20.4f}  [{weights}]")
            previous = it.value
        result = a.result()
        print(
            f"federated learning as custom code: {result.status}, {len(result.iterations)} iterations; "
            f"every vehicle started from the previous iteration's fleet model: {'yes' if passed_on else 'no'}"
        )
        if not passed_on or result.status != "done":
            raise SystemExit(1)


if __name__ == "__main__":
    main()
