"""On-board half of federated learning, written as custom code (the paper's section 3.4).

In ``federated`` mode x is {"data": {signal: [readings]}, "model": the fleet's model from the
previous iteration, or None in the first}. The last signal is the target, the others are the
features. Each vehicle fits a linear model (a weight per feature, then a bias) to its own data
by gradient descent, starting from the fleet's model, and returns its weights: its readings
never leave the vehicle.
"""

import numpy as np

# Features and target are divided by a fixed scale per signal so that one step size fits all.
SCALE = {
    "speed": 100.0,
    "rpm": 3000.0,
    "fuel_rate": 10.0,
    "engine_temp": 100.0,
    "acceleration": 3.0,
    "battery_voltage": 14.0,
}
STEPS = 10
STEP_SIZE = 0.1


def custom_code(x):
    data, model = x["data"], x["model"]
    names = list(data)
    columns = [np.asarray(data[n], dtype=float) / SCALE.get(n, 1.0) for n in names[:-1]]
    target = np.asarray(data[names[-1]], dtype=float) / SCALE.get(names[-1], 1.0)
    design = np.column_stack([*columns, np.ones(len(target))])
    weights = np.zeros(design.shape[1])
    if model and len(model.get("weights", [])) == len(weights):  # else: start afresh
        weights = np.asarray(model["weights"], dtype=float)
    start = weights.tolist()
    start_loss = float(np.mean((design @ weights - target) ** 2))
    for step in range(STEPS):  # noqa: B007
        gradient = 2.0 * design.T @ (design @ weights - target) / len(target)
        weights = weights - STEP_SIZE * gradient
    loss = float(np.mean((design @ weights - target) ** 2))
    return {
        "weights": weights.tolist(),
        "loss": loss,  # mean squared error after training, in scaled units
        "start_loss": start_loss,  # the same for the model received
        "n": len(target),
        "start": start,  # the weights received, to show that the fleet's model was passed on
    }
