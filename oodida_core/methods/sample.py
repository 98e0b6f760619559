"""`sample`: `sample_size` readings of each signal, drawn without replacement, in reading order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import NUMBERS, OnboardError, OnboardMethod, OnboardParams, Parameter
from oodida_core.methods.readings import finite_list, positive_int

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["ONBOARD"]


def _sample(x: FloatArray, signal: str, params: OnboardParams) -> object:
    import numpy as np

    size = positive_int(params.sample_size, "sample_size", "sample")
    if size > x.size:
        raise OnboardError(
            f"sample_size {size} is larger than the {x.size} readings of {signal!r}; "
            f"ask for at most {x.size} (samples are drawn without replacement)"
        )
    rng = np.random.default_rng(params.seed)
    idx = np.sort(rng.choice(x.size, size=size, replace=False))
    return finite_list(x[idx], f"the sample of {signal!r}")


def _at_most_samples(size: int, fields: Mapping[str, Any]) -> str | None:
    return f"must be at most samples ({fields['samples']:,})" if size > fields["samples"] else None


SAMPLE_SIZE = Parameter(
    "sample_size",
    "integer",
    "Readings kept by onboard 'sample' (default 10).",
    lo=1,
    hi=1_000_000,
    default_from=lambda fields: min(10, fields["samples"]),
    needs=("samples",),
    bound=_at_most_samples,
)

ONBOARD = OnboardMethod(
    "sample",
    "sample_size readings of each signal, drawn at random without replacement",
    NUMBERS,
    parameters=(SAMPLE_SIZE,),
    per_signal=_sample,
)
