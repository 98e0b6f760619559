"""The clients' models as the federated strategies read them, checked once for all of them.

A client's model is a dict with 'weights' (a list of numbers, or nested lists of one shape) and
'n_samples' (how many samples it trained on), as on-board `train` returns, or custom code that
returns the same. `client_models` turns the kept values into arrays, refusing with an
`AggregationError` what no strategy can combine: a value that is no model, a bad n_samples,
weights that are not numbers, clients that disagree on the shape, features or target.

The robust strategies (fedmedian, fedtrimmedavg, krum) ask with `drop_malformed=True`: a
client whose model is malformed (any of the above, non-finite weights or loss, or a shape,
features or target other than the one most clients share) is left out and named in
`ClientModels.dropped` instead, so that one hostile vehicle cannot fail the iteration they exist
to protect; only when no model is left is there an `AggregationError`. The other strategies
(fedavg and the server optimisers) promise no robustness: one bad model would silently skew
their average, so they refuse it loudly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import MODEL, AggregationError, Item, OnboardMethod, Parameter
from oodida_core.methods.combine import clients, describe, is_int, kind, most, odd_ones, short
from oodida_core.methods.values import Bad

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["SERVER_KEY", "ClientModels", "client_models", "model_result", "parameter"]

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
    dropped: dict[int, str] | None = None
    """With `drop_malformed`: the clients left out as malformed, with why (None otherwise)."""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.weights.shape[1:])


def parameter(strategy: str, parameters: Mapping[str, Any], p: Parameter) -> Any:
    """The strategy's parameter `p` (its default when not given), checked by the rule the spec
    checks it with (`Parameter.check`); AggregationError naming that rule."""
    value = parameters.get(p.name)
    if value is None:
        value = p.default_for({"offboard": strategy})
    try:
        return p.check(value)
    except Bad as exc:
        rule = exc.problems[0][1]
        raise AggregationError(f"{strategy}: {p.name} {rule}, got {short(value)}") from None


def client_models(
    strategy: str, items: list[Item], onboard: OnboardMethod | None, *, drop_malformed: bool = False
) -> ClientModels | None:
    """The kept values as models (None when there is none); AggregationError if they are not,
    or, with `drop_malformed`, the well-formed ones and the others in `dropped`."""
    import numpy as np

    if not items:
        return None
    trained = onboard is not None and onboard.output == MODEL
    dropped: dict[int, str] = {}

    def refuse(cid: int, reason: str, message: str) -> None:
        if not drop_malformed:
            raise AggregationError(message)
        dropped[cid] = reason

    used: list[Item] = []
    for cid, v in items:
        if not isinstance(v, dict) or "weights" not in v or "n_samples" not in v:
            refuse(
                cid,
                f"sent {describe(v)}, not a dict with 'weights' and 'n_samples'",
                f"{strategy} combines models, but client {cid} sent {describe(v)}; use onboard "
                "'train', or custom code that returns a dict with 'weights' (a list of numbers) "
                "and 'n_samples' (the number of samples it trained on)",
            )
            continue
        n = v["n_samples"]
        if not is_int(n) or not 0 <= n <= MAX_N_SAMPLES:
            why = f"reported n_samples {short(n)}; it must be an integer from 0 to 2**53"
            refuse(cid, why, f"{strategy}: client {cid} {why}")
        elif n > 0:
            used.append((cid, v))
    arrays: dict[int, Any] = {}
    for cid, v in used:
        try:
            array = np.asarray(v["weights"])
        except (ValueError, TypeError):
            array = np.asarray(None)
        if not isinstance(v["weights"], (list, tuple)) or array.dtype.kind not in "iuf":
            why = f"'weights' must be a list of numbers, got {short(v['weights'])}"
            refuse(cid, why, f"{strategy}: client {cid}'s {why}")
        elif drop_malformed and not np.isfinite(array).all():
            dropped[cid] = "'weights' contain NaN or infinite values"
        elif drop_malformed and not _loss_ok(v.get("loss"), trained):
            dropped[cid] = f"reported loss {short(v.get('loss'))}, not a finite number"
        else:
            arrays[cid] = array.astype(np.float64)
    used = [(cid, v) for cid, v in used if cid in arrays]
    if not used:
        _nothing(strategy, items, dropped)
    shapes = {c: a.shape[0] if a.ndim == 1 else a.shape for c, a in arrays.items()}
    _majority(strategy, "number of weights", shapes, dropped if drop_malformed else None)
    used = [(cid, v) for cid, v in used if cid not in dropped]
    meta: dict[str, Any]
    if trained:
        found = {cid: _hashable(v.get("features", ())) for cid, v in used}
        feats = _majority(strategy, "features", found, dropped if drop_malformed else None)
        used = [(cid, v) for cid, v in used if cid not in dropped]
        found = {cid: _hashable(v.get("target")) for cid, v in used}
        target = _majority(strategy, "target", found, dropped if drop_malformed else None)
        used = [(cid, v) for cid, v in used if cid not in dropped]
        meta = {"features": list(feats) if isinstance(feats, tuple) else feats, "target": target}
    else:  # custom code: its other keys, as the first client sent them (never a strategy's state)
        meta = {k: x for k, x in used[0][1].items() if k not in ("weights", "n_samples", "loss", SERVER_KEY)}
    losses = [v.get("loss") for _, v in used]
    numbers = all(kind(x) == "number" and _fits_float(x) for x in losses)
    if trained and not numbers:
        raise AggregationError(f"{strategy}: every 'train' result must report its loss as a number")
    return ClientModels(
        strategy=strategy,
        ids=tuple(cid for cid, _ in used),
        weights=np.stack([arrays[cid] for cid, _ in used]),
        n_samples=np.asarray([v["n_samples"] for _, v in used], dtype=np.float64),
        losses=np.asarray(losses, dtype=np.float64) if numbers else None,
        meta=meta,
        dropped=dict(sorted(dropped.items())) if drop_malformed else None,
    )


def _hashable(x: object) -> Hashable:
    """A client's features or target as a value to compare: a list as a tuple, and what cannot
    be hashed (a vehicle's nested lists or dicts) as its short text, never a TypeError."""
    if isinstance(x, list):
        x = tuple(x)
    try:
        hash(x)
    except TypeError:
        return f"<{short(x)}>"
    return x


def _loss_ok(loss: object, trained: bool) -> bool:
    """Whether a client's loss can be combined: a finite number ('train' must report one;
    custom code may report none, or something that is not a number, then no loss is combined)."""
    if kind(loss) != "number":
        return not trained
    return _fits_float(loss) and math.isfinite(float(loss))  # type: ignore[arg-type]


def _nothing(strategy: str, items: list[Item], dropped: dict[int, str]) -> None:
    """AggregationError: no client has a model that trained on a sample (and is well formed)."""
    if not dropped:
        raise AggregationError(
            f"{strategy} has nothing to combine: every client ({clients([c for c, _ in items])}) "
            "reported n_samples 0"
        )
    raise AggregationError(
        f"{strategy} has nothing to combine: every client's model is malformed or trained on no "
        f"sample ({dropped_text(dropped)})"
    )


def dropped_text(dropped: dict[int, str], limit: int = 5) -> str:
    """The malformed clients and why, the first `limit` of them."""
    shown = "; ".join(f"client {cid} {why}" for cid, why in list(dropped.items())[:limit])
    more = len(dropped) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


def _majority(
    strategy: str, what: str, values: Mapping[int, Hashable], dropped: dict[int, str] | None
) -> Any:
    """The value most clients have. Loud (`dropped` None): AggregationError naming the odd
    ones out; else they go into `dropped`, unless no value is shared by more clients than any
    other (a tie names no culprit: AggregationError too)."""
    found: dict[int, Hashable] = dict(values)
    if dropped is None or not found:
        return agree(strategy, what, found) if found else None
    common, odd = odd_ones(found)
    if odd:
        top = Counter(found.values()).most_common(2)
        if top[0][1] == top[1][1]:
            agree(strategy, what, found)  # raises
        for cid, x in odd.items():
            dropped[cid] = f"has {what} {short(x)}, but {most(odd, found)} have {short(common)}"
    return common


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
    if models.dropped is not None:  # JSON keys: strings, as the cloud's store gives them back
        result["dropped"] = {str(cid): why for cid, why in models.dropped.items()}
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
