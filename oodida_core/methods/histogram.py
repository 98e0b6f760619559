"""`histogram`: counts of each signal's readings in `bins` equal bins over the signal's range."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oodida_core.methods.base import HISTOGRAM, OnboardMethod, OnboardParams, Parameter
from oodida_core.methods.readings import finite_list, positive_int, scale
from oodida_core.protocol.signals import SIGNALS, canonical

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["ONBOARD"]


def _histogram(x: FloatArray, signal: str, params: OnboardParams) -> object:
    import numpy as np

    bins = positive_int(params.bins, "bins", "histogram")
    sid = canonical(signal) or signal  # a built-in signal named by its VSS path has its range
    if sid not in SIGNALS:
        scale(signal, "histogram")  # raises with the list of known signals
    sig = SIGNALS[sid]
    if not np.isfinite(x).all():
        finite_list(x, f"signal {signal!r}")  # raises, naming how many are bad
    # Readings outside [low, high] count in the first or last bin. The edges are
    # linspace(low, high, bins + 1): the same for every client, so counts add up in the cloud.
    counts, edges = np.histogram(np.clip(x, sig.low, sig.high), bins=bins, range=(sig.low, sig.high))
    return {"edges": edges.tolist(), "counts": [int(c) for c in counts.tolist()]}


BINS = Parameter(
    "bins", "integer", "Bins of onboard 'histogram' (1-1000, default 10).", lo=1, hi=1000, default=10
)

ONBOARD = OnboardMethod(
    "histogram",
    "{edges, counts} of each signal over its range; the same edges on every client",
    HISTOGRAM,
    parameters=(BINS,),
    per_signal=_histogram,
)
