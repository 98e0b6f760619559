"""The clients' models as the federated strategies read them, checked once for all of them.

A client's model is a dict with 'weights' (a list of numbers, or nested lists of one shape) and
'n_samples' (how many samples it trained on), as on-board `train` returns, or custom code that
returns the same. `client_models` turns the kept values into arrays, refusing with an
`AggregationError` what no strategy can combine: a value that is no model, a bad n_samples,
weights that are not numbers, clients that disagree on the shape, features or target.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import MODEL, AggregationError, Item, OnboardMethod
from oodida_core.methods.combine import clients, describe, is_int, kind, most, odd_ones, short

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["SERVER_KEY", "ClientModels", "client_models", "model_result"]

MAX_N_SAMPLES = 2**53
"""The largest n_samples a client may report: exact as a 64-bit float, and no sum of them
overflows (a client's 10**400 raised OverflowError out of the cloud's task, red team)."""

SERVER_KEY = "server"
"""The key of a strategy's own state in the value it returns (FedAdam's moments, ...): the next
iteration's model input carries it, and on-board `train` ignores it."""


@dataclass(frozen=True)
class ClientModels:
    """The models of the clients that trained on at least one sample, in client order."""

    strategy: str
    ids: tuple[int, ...]
    weights: FloatArray
    """One row per client: shape (clients, *the model's shape)."""
    n_samples: FloatArray
    losses: FloatArray | None
    """Each client's loss, when every one reported a number."""
    meta: dict[str, Any]
    """What the result keeps besides the weights: features and target ('train'), or the first
    client's other keys (custom code)."""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.weights.shape[1:])


def client_models(strategy: str, items: list[Item], onboard: OnboardMethod | None) -> ClientModels | None:
    """The kept values as models (None when there is none); AggregationError if they are not."""
    import numpy as np

    if not items:
        return None
    trained = onboard is not None and onboard.output == MODEL
    used: list[Item] = []
    for cid, v in items:
        if not isinstance(v, dict) or "weights" not in v or "n_samples" not in v:
            raise AggregationError(
                f"{strategy} combines models, but client {cid} sent {describe(v)}; use onboard "
                "'train', or custom code that returns a dict with 'weights' (a list of numbers) "
                "and 'n_samples' (the number of samples it trained on)"
            )
        n = v["n_samples"]
        if not is_int(n) or not 0 <= n <= MAX_N_SAMPLES:
            raise AggregationError(
                f"{strategy}: client {cid} reported n_samples {short(n)}; it must be an integer "
                "from 0 to 2**53"
            )
        if n > 0:
            used.append((cid, v))
    if not used:
        raise AggregationError(
            f"{strategy} has nothing to combine: every client ({clients([c for c, _ in items])}) "
            "reported n_samples 0"
        )
    arrays: dict[int, Any] = {}
    for cid, v in used:
        try:
            array = np.asarray(v["weights"])
        except (ValueError, TypeError):
            array = np.asarray(None)
        if not isinstance(v["weights"], (list, tuple)) or array.dtype.kind not in "iuf":
            raise AggregationError(
                f"{strategy}: client {cid}'s 'weights' must be a list of numbers, got {short(v['weights'])}"
            )
        arrays[cid] = array.astype(np.float64)
    shapes = {c: a.shape[0] if a.ndim == 1 else a.shape for c, a in arrays.items()}
    agree(strategy, "number of weights", shapes)
    meta: dict[str, Any]
    if trained:
        feats = agree(strategy, "features", {cid: tuple(v.get("features", ())) for cid, v in used})
        target = agree(strategy, "target", {cid: v.get("target") for cid, v in used})
        meta = {"features": list(feats), "target": target}
    else:  # custom code: its other keys, as the first client sent them (never a strategy's state)
        meta = {k: x for k, x in used[0][1].items() if k not in ("weights", "n_samples", "loss", SERVER_KEY)}
    losses = [v.get("loss") for _, v in used]
    numbers = all(kind(x) == "number" and _fits_float(x) for x in losses)
    if trained and not numbers:
        raise AggregationError(f"{strategy}: every 'train' result must report its loss as a number")
    return ClientModels(
        strategy=strategy,
        ids=tuple(cid for cid, _ in used),
        weights=np.stack(list(arrays.values())),
        n_samples=np.asarray([v["n_samples"] for _, v in used], dtype=np.float64),
        losses=np.asarray(losses, dtype=np.float64) if numbers else None,
        meta=meta,
    )


def _fits_float(x: object) -> bool:
    """Whether a number converts to a 64-bit float (an integer such as 10**400 does not)."""
    try:
        float(x)  # type: ignore[arg-type]
    except (OverflowError, TypeError, ValueError):
        return False
    return True


def model_result(
    models: ClientModels, weights: FloatArray, loss: float | None, **extra: object
) -> dict[str, Any]:
    """The strategy's value: the meta, the new weights, the clients' total n_samples, the loss
    (when every client reported one) and how many clients took part, then `extra`."""
    result: dict[str, Any] = dict(models.meta)
    result.update(weights=weights.tolist(), n_samples=int(models.n_samples.sum()))
    if loss is not None:
        result["loss"] = float(loss)
    result["clients"] = len(models.ids)
    result.update(extra)
    return result


def weighted_mean(rows: FloatArray, n_samples: FloatArray) -> FloatArray:
    """The rows averaged over axis 0, each weighted by its n_samples (flwr's `aggregate`)."""
    import numpy as np

    with np.errstate(all="ignore"):  # an overflow shows up as a non-finite result, reported by aggregate
        out: FloatArray = np.tensordot(n_samples, rows, axes=1) / n_samples.sum()
    return out


def agree(strategy: str, what: str, found: dict[int, Hashable]) -> Any:
    """The value every client has; AggregationError naming the odd ones out."""
    common, odd = odd_ones(found)
    if odd:
        others = ", ".join(f"client {cid} has {short(x)}" for cid, x in odd.items())
        raise AggregationError(
            f"{strategy} needs the same {what} on every client: {most(odd, found)} have "
            f"{short(common)}, but {others}"
        )
    return common
