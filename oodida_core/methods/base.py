"""What a method is: its name, aliases, parameters, the modes it is allowed in, what it
combines with, and its function.

An on-board method turns one client's readings into a value (`per_signal`: one signal's
readings at a time; `whole`: all of them at once, as `train` does); an off-board method
combines the kept on-board values of one iteration (`combine`). What fits what is a matter of
kinds: an on-board method names the kind of value it `output`s, an off-board method the kinds
it `accepts` (`ANY` on either side fits everything: custom code). A method whose function runs
elsewhere (`custom`: the sandbox) has no function here, only the text that says so.

numpy is imported inside the functions, never at module level: the spec check, which the
analyst's library runs, reads these objects without loading numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from oodida_core.methods.values import bad, choice, integer, number
from oodida_core.protocol.errors import OodidaError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

__all__ = [
    "ANALYTIC_MODES",
    "ANY",
    "EVENTS",
    "HISTOGRAM",
    "MODEL",
    "NUMBERS",
    "AggregationError",
    "Item",
    "OffboardMethod",
    "OnboardError",
    "OnboardMethod",
    "OnboardParams",
    "Parameter",
]

ANALYTIC_MODES = ("measurement", "monitoring", "federated")
"""The spec's analytic modes (re-exported by `oodida_core.spec.fields`)."""

# Kinds of on-board output.
NUMBERS = "numbers"  # per signal: a number, or a list of numbers
HISTOGRAM = "histogram"  # per signal: {"edges", "counts"}
EVENTS = "events"  # per signal: a list of events that differ from client to client
MODEL = "model"  # one model: {"weights", "n_samples", ...}
ANY = "any"  # whatever custom code returns; fits every method on the other side

Item = tuple[int, Any]
"""One client's kept on-board value: (client id, value)."""


class OnboardError(OodidaError, ValueError):
    """An on-board method cannot run as asked; the message says what to change."""


class AggregationError(OodidaError):
    """The kept on-board values cannot be combined by the chosen off-board method."""


@dataclass(frozen=True)
class OnboardParams:
    """What to compute on board: the method, the signals and the method's parameters."""

    method: str
    signals: tuple[str, ...]
    threshold: float | None = None
    direction: str = "above"
    sample_size: int | None = None
    bins: int | None = None
    q: float | None = None
    seed: int = 0
    proximal_mu: float | None = None

    def __post_init__(self) -> None:
        # Accept a single name or any sequence of names; store a tuple (hashable, immutable).
        signals: Any = self.signals
        if isinstance(signals, str):
            object.__setattr__(self, "signals", (signals,))
        elif not isinstance(signals, tuple):
            object.__setattr__(self, "signals", tuple(signals))


@dataclass(frozen=True)
class Parameter:
    """One spec key a method takes: its type and range, default, and the rules it follows.

    `default` is set when the method is used and the key is not given, or `default_from`
    computes it from the spec's valid fields (those named in `needs` must be valid for it, and
    for `bound`, a rule against other fields that returns what is wrong, or None)."""

    name: str
    kind: Literal["integer", "number", "choice"]
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    default: object = None
    default_from: Callable[[Mapping[str, Any]], object] | None = None
    needs: tuple[str, ...] = ()
    bound: Callable[[Any, Mapping[str, Any]], str | None] | None = None
    hi_open: bool = False
    """The range excludes `hi` (beta_1 < 1); a number's range only."""
    lo_open: bool = False
    """The range excludes `lo` (tau > 0); a number's range only."""

    def check(self, value: object) -> object:
        """The value in canonical form, or `Bad` naming the rule it broke."""
        if self.kind == "integer":
            assert self.lo is not None and self.hi is not None
            return integer(value, int(self.lo), int(self.hi))
        if self.kind == "choice":
            return choice(value, self.choices, self.name)
        if self.lo is None or self.hi is None:
            return number(value, "must be a finite number")
        rule = f"must be a number from {self.lo:g}{' (excluded)' if self.lo_open else ''} to {self.hi:g}"
        rule += " (excluded)" if self.hi_open else ""
        out = number(value, rule)
        if (
            not self.lo <= out <= self.hi
            or (self.lo_open and out == self.lo)
            or (self.hi_open and out == self.hi)
        ):
            raise bad(rule)
        return out

    def default_for(self, fields: Mapping[str, Any]) -> object:
        return self.default_from(fields) if self.default_from else self.default

    def field(self) -> Any:
        """The pydantic field of the spec model: optional, with this range and help."""
        lo, hi = (None, self.lo) if self.lo_open else (self.lo, None)
        below, top = (self.hi, None) if self.hi_open else (None, self.hi)
        return Field(default=None, ge=lo, gt=hi, lt=below, le=top, description=self.help)


PerSignal = Callable[["FloatArray", str, OnboardParams], object]
Whole = Callable[[OnboardParams, "list[FloatArray]", object], object]
Combine = Callable[[list[Item], "OnboardMethod | None", Mapping[str, Any]], object]
CombineFrom = Callable[[list[Item], "OnboardMethod | None", Mapping[str, Any], object], object]
"""A combine that also reads the previous iteration's value: the model the clients trained from
(None at the first iteration), as the cloud stored it, never as a client reports it."""


@dataclass(frozen=True)
class OnboardMethod:
    """A method run on each client over its readings."""

    name: str
    summary: str
    output: str
    modes: tuple[str, ...] = ("measurement",)
    aliases: tuple[str, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    per_signal: PerSignal | None = None
    whole: Whole | None = None
    elsewhere: str = ""
    """Why there is no function here (where it runs instead)."""
    no_reduction: str = ""
    """Why its values have no average, sum, ... ('{op}' is the off-board method), if they have not."""
    one_iteration_with: tuple[str, ...] = ()
    """Off-board methods whose result cannot feed the next iteration (iterations must be 1)."""
    one_iteration_rule: str = ""
    least_signals: int = 1
    """The fewest signals it takes (train: a feature and the target)."""
    least_signals_rule: str = ""

    def compute(self, params: OnboardParams, columns: list[FloatArray], model: object) -> object:
        """`{signal: value}` in `params.signals` order, or what `whole` returns."""
        if self.whole is not None:
            return self.whole(params, columns, model)
        if self.per_signal is None:
            raise OnboardError(self.elsewhere or f"{self.name!r} has no on-board function")
        run = self.per_signal
        return {s: run(x, s, params) for s, x in zip(params.signals, columns, strict=True)}


@dataclass(frozen=True)
class OffboardMethod:
    """A method run in the cloud over the kept on-board values of one iteration."""

    name: str
    summary: str
    accepts: tuple[str, ...]
    modes: tuple[str, ...] = ANALYTIC_MODES
    aliases: tuple[str, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    combine: Combine | None = None
    combine_from: CombineFrom | None = None
    """Instead of `combine`: a server strategy that also reads the previous iteration's value."""
    elsewhere: str = ""

    @property
    def runs_here(self) -> bool:
        """Whether it has a function here (not 'custom', which runs in the sandbox)."""
        return not self.elsewhere and (self.combine is not None or self.combine_from is not None)

    def run(
        self,
        items: list[Item],
        onboard: OnboardMethod | None,
        parameters: Mapping[str, Any],
        previous: object,
    ) -> object:
        """Combine the kept values; `previous` is the previous iteration's value (None at first)."""
        if self.combine_from is not None:
            return self.combine_from(items, onboard, parameters, previous)
        if self.combine is None:
            raise AggregationError(self.elsewhere or f"{self.name!r} has no off-board function")
        return self.combine(items, onboard, parameters)

    def fits(self, onboard: OnboardMethod) -> bool:
        """Whether this method can combine what `onboard` outputs."""
        return ANY in self.accepts or onboard.output == ANY or onboard.output in self.accepts
