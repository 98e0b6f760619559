"""Off-board half of federated learning, written as custom code: the cloud averages the models.

x is the list of the vehicles' on-board values (dicts such as {"weights": [...], "loss": ...,
"n": ...}). Every numeric field is averaged, element by element, each vehicle weighted by its
number of samples ``n``; the result is the fleet's model, which the next iteration hands to
every vehicle as its ``model``.
"""

import numpy as np


def custom_code(x):
    models = [m for m in x if isinstance(m, dict)]
    counts = [float(m.get("n", 1)) for m in models]
    total = sum(counts)
    fleet = {"n": int(total), "vehicles": len(models)}
    for key in models[0]:
        if key in ("n", "start"):
            continue
        values = np.asarray([m[key] for m in models], dtype=float)
        fleet[key] = np.average(values, axis=0, weights=counts).tolist()
    return fleet
