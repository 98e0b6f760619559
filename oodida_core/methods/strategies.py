"""Robust aggregation of the clients' models, as flwr defines it (flwr.server.strategy):
`fedmedian` (coordinate-wise median, FedMedian), `fedtrimmedavg` (coordinate-wise trimmed mean,
FedTrimmedAvg) and `krum` (Krum and multi-Krum). None of them weights clients by n_samples
except multi-Krum's average of the clients it keeps, as in flwr.

Being robust, they leave a malformed model out (NaN or infinite weights, a shape, features or
target other than most clients', a value that is no model) and name its client under "dropped"
in the value ({client id as a string: why}); `models.client_models(..., drop_malformed=True)`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import MODEL, AggregationError, Item, OffboardMethod, OnboardMethod, Parameter
from oodida_core.methods.combine import clients
from oodida_core.methods.models import (
    ClientModels,
    client_models,
    dropped_text,
    model_result,
    parameter,
    weighted_mean,
)

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

    models = client_models("fedmedian", items, onboard, drop_malformed=True)
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
    beta = float(parameter("fedtrimmedavg", parameters, BETA))
    models = client_models("fedtrimmedavg", items, onboard, drop_malformed=True)
    if models is None:
        return None
    weights = trim_mean(models.weights, beta)
    cut = int(beta * len(models.ids))
    return model_result(
        models,
        weights,
        _losses(models, lambda x: trim_mean(x, beta)),
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


def distance_blocks(rows: FloatArray, block_bytes: int = 2**25) -> Iterator[tuple[slice, FloatArray]]:
    """The squared Euclidean distances between the (flattened) rows, flwr's
    `np.linalg.norm(a - b) ** 2` for every pair, a block of rows at a time (about `block_bytes`
    each, so that 10,000 clients never hold the whole n x n matrix).

    Each block is one matrix product, ||a||^2 + ||b||^2 - 2 a.b, of the rows centred at their
    coordinate-wise median: a shift changes no distance and keeps the cancellation small. Equal
    rows are exactly 0 apart, as in flwr; an entry that overflows that way (weights near 1e154
    and beyond) is computed directly, as flwr does."""
    import numpy as np

    flat = rows.reshape(rows.shape[0], -1)
    n = len(flat)
    if n == 0:
        return
    labels = np.unique(flat, axis=0, return_inverse=True)[1].reshape(-1)
    with np.errstate(all="ignore"):  # an overflow shows up as a non-finite entry, redone below
        centred = flat - np.median(flat, axis=0) if flat.size else flat
        norms = np.einsum("ij,ij->i", centred, centred)
    step = max(1, block_bytes // (8 * n))
    for start in range(0, n, step):
        part = slice(start, min(n, start + step))
        with np.errstate(all="ignore"):
            block: FloatArray = norms[part, None] + norms[None, :] - 2.0 * (centred[part] @ centred.T)
            np.maximum(block, 0.0, out=block)  # rounding may leave -1e-16 for near rows
            block[labels[part, None] == labels[None, :]] = 0.0  # equal rows, each row and itself
            for i in np.flatnonzero(~np.isfinite(block).all(axis=1)):
                bad = ~np.isfinite(block[i])
                block[i, bad] = np.sum((flat[bad] - flat[start + i]) ** 2, axis=1)
        yield part, block


def squared_distances(rows: FloatArray, block_bytes: int = 2**25) -> FloatArray:
    """The n x n matrix of `distance_blocks`."""
    import numpy as np

    out = np.zeros((rows.shape[0], rows.shape[0]))
    for part, block in distance_blocks(rows, block_bytes):
        out[part] = block
    return out


def krum_choice(rows: FloatArray, num_malicious: int, to_keep: int) -> list[int]:
    """The rows Krum keeps (flwr's `aggregate_krum`): each row's score is the sum of its squared
    distances to its n - f - 2 nearest rows; Krum keeps the lowest score, multi-Krum the
    `to_keep` lowest (in flwr's order)."""
    import numpy as np

    n = rows.shape[0]
    closest = min(max(1, n - num_malicious - 2), n - 1)
    scores = np.zeros(n)
    for part, block in distance_blocks(rows):
        # the closest + 1 smallest of each row: the row itself (0) and its `closest` nearest
        block.partition(closest, axis=1)
        nearest = block[:, : closest + 1]
        scores[part] = nearest.sum(axis=1) - nearest.min(axis=1)
    if to_keep > 0:
        return [int(i) for i in np.argsort(scores)[::-1][n - to_keep :]]
    return [int(np.argmin(scores))]


def _left_out(models: ClientModels) -> str:
    return f", leaving out as malformed {dropped_text(models.dropped)}" if models.dropped else ""


def _krum(items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any]) -> object:
    f, keep = (int(parameter("krum", parameters, p)) for p in (NUM_MALICIOUS_CLIENTS, NUM_CLIENTS_TO_KEEP))
    models = client_models("krum", items, onboard, drop_malformed=True)
    if models is None:
        return None
    n = len(models.ids)
    if n < 2 * f + 3:
        raise AggregationError(
            f"krum with num_malicious_clients {f} needs at least {2 * f + 3} clients (2f + 3) with "
            f"models, got {n} ({clients(list(models.ids))}){_left_out(models)}; select more "
            "clients or lower num_malicious_clients"
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
