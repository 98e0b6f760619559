"""On-board and off-board methods as objects, and the one registry of them.

A method is one object (`base.OnboardMethod`, `base.OffboardMethod`): its name and aliases,
its parameters (spec keys with type, range, default), the modes it is allowed in, what it
combines with, and its function. One module per method or small family (`reductions`,
`collect`, `sample`, `histogram`, `threshold`, `federated`, `server_opt`, `strategies`,
`quantile`, `custom`); `registry`
holds them all. Adding a method is one new module (plus its tests) registered there, or
listed in `OODIDA_EXTRA_METHODS` (see `registry`).
"""

from __future__ import annotations

from oodida_core.methods.base import (
    ANY,
    EVENTS,
    HISTOGRAM,
    MODEL,
    NUMBERS,
    AggregationError,
    OffboardMethod,
    OnboardError,
    OnboardMethod,
    OnboardParams,
    Parameter,
)
from oodida_core.methods.registry import (
    EXTRA_METHODS_ENV,
    OFFBOARD,
    ONBOARD,
    UnknownMethod,
    offboard_method,
    onboard_method,
    parameters,
    register,
    registered,
    resolve,
    unregister,
)

__all__ = [
    "ANY",
    "EVENTS",
    "EXTRA_METHODS_ENV",
    "HISTOGRAM",
    "MODEL",
    "NUMBERS",
    "OFFBOARD",
    "ONBOARD",
    "AggregationError",
    "OffboardMethod",
    "OnboardError",
    "OnboardMethod",
    "OnboardParams",
    "Parameter",
    "UnknownMethod",
    "offboard_method",
    "onboard_method",
    "parameters",
    "register",
    "registered",
    "resolve",
    "unregister",
]
