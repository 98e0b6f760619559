"""Off-board: fleet-wide percentiles of every signal, from the readings the vehicles sampled.

x is the list of kept on-board values, one per vehicle in client-id order. With the built-in
on-board ``sample`` each is {signal: [readings]}; a single number per signal works too.
"""

import numpy as np


def custom_code(x):
    pooled = {}
    for value in x:
        for signal, readings in value.items():
            more = readings if isinstance(readings, list) else [readings]
            pooled[signal] = pooled.get(signal, []) + more
    summary = {}
    for signal, readings in pooled.items():
        p10, p50, p90, p99 = np.percentile(np.asarray(readings, dtype=float), [10, 50, 90, 99])
        summary[signal] = {
            "readings": len(readings),
            "vehicles": len(x),
            "p10": float(p10),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
        }
    return summary
