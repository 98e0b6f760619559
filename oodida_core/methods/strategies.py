"""Robust aggregation of the clients' models, as flwr defines it (flwr.server.strategy):
`fedmedian` (coordinate-wise median, FedMedian), `fedtrimmedavg` (coordinate-wise trimmed mean,
FedTrimmedAvg) and `krum` (Krum and multi-Krum). None of them weights clients by n_samples
except multi-Krum's average of the clients it keeps, as in flwr."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import MODEL, AggregationError, Item, OffboardMethod, OnboardMethod, Parameter
from oodida_core.methods.combine import clients, is_int, short
from oodida_core.methods.models import ClientModels, client_models, model_result, weighted_mean

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["BETA", "KRUM", "MEDIAN", "NUM_CLIENTS_TO_KEEP", "NUM_MALICIOUS_CLIENTS", "TRIMMED"]

BETA = Parameter(
    "beta",
    "number",
    "offboard 'fedtrimmedavg': the fraction of the clients cut off at each end of every "
    "coordinate before averaging, from 0 to 0.5 (excluded; default 0.2). flwr's "
    "FedTrimmedAvg(beta=...).",
    lo=0,
    hi=0.5,
    hi_open=True,
    default=0.2,
)
NUM_MALICIOUS_CLIENTS = Parameter(
    "num_malicious_clients",
    "integer",
    "offboard 'krum': f, the number of malicious clients to tolerate; Krum needs at least 2f + 3 "
    "clients (default 0). flwr's Krum(num_malicious_clients=...).",
    lo=0,
    hi=100_000,
    default=0,
)
NUM_CLIENTS_TO_KEEP = Parameter(
    "num_clients_to_keep",
    "integer",
    "offboard 'krum': 0 (the default) keeps the one model of the best Krum score; m > 0 is "
    "multi-Krum: the n_samples-weighted average of the m best, at most the clients minus "
    "num_malicious_clients. flwr's Krum(num_clients_to_keep=...).",
    lo=0,
    hi=100_000,
    default=0,
)


def _losses(models: ClientModels, how: Any) -> float | None:
    return None if models.losses is None else float(how(models.losses))


# ---------------------------------------------------------------------------------- median


def _median(items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any]) -> object:
    import numpy as np

    models = client_models("fedmedian", items, onboard)
    if models is None:
        return None
    return model_result(models, np.median(models.weights, axis=0), _losses(models, np.median))


MEDIAN = OffboardMethod(
    "fedmedian",
    "the coordinate-wise median of the clients' models (flwr FedMedian)",
    (MODEL,),
    combine=_median,
)


# ---------------------------------------------------------------------------------- trimmed mean


def trim_mean(rows: FloatArray, beta: float) -> FloatArray:
    """The mean over axis 0 of what remains once int(beta * rows) rows are cut off at each end
    of every coordinate (flwr's `_trim_mean`, after scipy.stats.trim_mean)."""
    import numpy as np

    n = rows.shape[0]
    low = int(beta * n)
    high = n - low
    part = np.partition(rows, (low, high - 1), axis=0)
    out: FloatArray = np.mean(part[low:high], axis=0)
    return out


def _trimmed(items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any]) -> object:

    beta = parameters.get("beta", BETA.default)
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not 0 <= beta < 0.5:
        raise AggregationError(f"fedtrimmedavg: beta must be a number from 0 to 0.5 (excluded), got {beta!r}")
    models = client_models("fedtrimmedavg", items, onboard)
    if models is None:
        return None
    weights = trim_mean(models.weights, float(beta))
    cut = int(beta * len(models.ids))
    return model_result(
        models,
        weights,
        _losses(models, lambda x: trim_mean(x, float(beta))),
        trimmed=cut,
    )


TRIMMED = OffboardMethod(
    "fedtrimmedavg",
    "the coordinate-wise mean of the clients' models once a fraction beta is cut off at each end "
    "(flwr FedTrimmedAvg)",
    (MODEL,),
    parameters=(BETA,),
    combine=_trimmed,
)


# ---------------------------------------------------------------------------------- Krum


def krum_choice(rows: FloatArray, num_malicious: int, to_keep: int) -> list[int]:
    """The rows Krum keeps (flwr's `aggregate_krum`): each row's score is the sum of its squared
    distances to its n - f - 2 nearest rows; Krum keeps the lowest score, multi-Krum the
    `to_keep` lowest (in flwr's order)."""
    import numpy as np

    flat = rows.reshape(rows.shape[0], -1)
    distances = np.zeros((len(flat), len(flat)))
    for i, a in enumerate(flat):
        for j, b in enumerate(flat):
            distances[i, j] = np.linalg.norm(a - b) ** 2
    closest = max(1, len(flat) - num_malicious - 2)
    scores = [np.sum(row[np.argsort(row)[1 : closest + 1].tolist()]) for row in distances]
    if to_keep > 0:
        return [int(i) for i in np.argsort(scores)[::-1][len(scores) - to_keep :]]
    return [int(np.argmin(scores))]


def _count(parameters: Mapping[str, Any], p: Parameter) -> int:
    value = parameters.get(p.name, p.default)
    if not is_int(value) or value < 0:
        raise AggregationError(f"krum: {p.name} must be a non-negative integer, got {short(value)}")
    return int(value)


def _krum(items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any]) -> object:
    f, keep = (_count(parameters, p) for p in (NUM_MALICIOUS_CLIENTS, NUM_CLIENTS_TO_KEEP))
    models = client_models("krum", items, onboard)
    if models is None:
        return None
    n = len(models.ids)
    if n < 2 * f + 3:
        raise AggregationError(
            f"krum with num_malicious_clients {f} needs at least {2 * f + 3} clients (2f + 3) with "
            f"models, got {n} ({clients(list(models.ids))}); select more clients or lower "
            "num_malicious_clients"
        )
    if keep > n - f:
        raise AggregationError(
            f"krum: num_clients_to_keep {keep} is more than the {n} clients minus the {f} "
            f"num_malicious_clients ({n - f}); keep at most {n - f}, or 0 for plain Krum"
        )
    chosen = krum_choice(models.weights, f, keep)
    rows, n_samples = models.weights[chosen], models.n_samples[chosen]
    weights = weighted_mean(rows, n_samples) if keep > 0 else rows[0]
    loss = None
    if models.losses is not None:
        loss = float(weighted_mean(models.losses[chosen], n_samples))
    selected = sorted(models.ids[i] for i in chosen)
    return model_result(models, weights, loss, selected=selected, n_samples=int(n_samples.sum()))


KRUM = OffboardMethod(
    "krum",
    "the client model with the best Krum score, or the average of the best m (multi-Krum; flwr Krum)",
    (MODEL,),
    parameters=(NUM_MALICIOUS_CLIENTS, NUM_CLIENTS_TO_KEEP),
    combine=_krum,
)

OFFBOARD = (MEDIAN, TRIMMED, KRUM)
