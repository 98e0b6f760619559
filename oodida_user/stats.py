"""The statistics of an experiment: a group's summary, and whether two groups differ.

Every number here comes from numpy or ``scipy.stats``; nothing is computed by hand.

* ``welch``: Welch's t-test (``scipy.stats.ttest_ind(..., equal_var=False)``); the difference
  is of the means (variant minus control) and its interval is the test's own
  ``confidence_interval``.
* ``mannwhitney``: the Mann-Whitney U test (``scipy.stats.mannwhitneyu``, two-sided); the
  difference is of the medians and its interval a percentile bootstrap
  (``scipy.stats.bootstrap``, 2,000 resamples, seeded, so the same values give the same interval).

scipy is the ``stats`` extra (``pip install 'oodida[stats]'``), imported at the first use.
Pure and typed: canary deployments use ``compare`` too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from oodida_core.protocol.errors import SpecError

Test = Literal["welch", "mannwhitney"]
TESTS: tuple[Test, ...] = ("welch", "mannwhitney")
TEST_NAMES = {"welch": "Welch's t-test", "mannwhitney": "Mann-Whitney U"}
EXTRA = "pip install 'oodida[stats]'"
BOOTSTRAP_RESAMPLES = 2000


def scipy_stats() -> Any:
    """``scipy.stats``, or ImportError naming the extra that installs it."""
    try:
        import scipy.stats
    except ImportError:
        raise ImportError(f"experiment statistics need scipy: {EXTRA}") from None
    return scipy.stats


def check_test(test: object) -> Test:
    """``welch`` or ``mannwhitney`` (any case, ``mann-whitney`` too); SpecError otherwise."""
    name = test.lower().replace("-", "").replace("_", "") if isinstance(test, str) else test
    if name not in TESTS:
        raise SpecError.single("test", test, f"must be one of {', '.join(TESTS)}")
    return "welch" if name == "welch" else "mannwhitney"


def check_confidence(confidence: object) -> float:
    """A confidence level from 0.5 up to, not including, 1; SpecError otherwise."""
    ok = isinstance(confidence, (int, float)) and not isinstance(confidence, bool)
    if not ok or not 0.5 <= float(confidence) < 1:  # type: ignore[arg-type]
        raise SpecError.single("confidence", confidence, "must be a number from 0.5 up to, not including, 1")
    return float(confidence)  # type: ignore[arg-type]


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class Summary:
    """One group's values: how many, their mean, sample standard deviation (ddof 1) and median
    (None where there are too few values)."""

    n: int
    mean: float | None
    std: float | None
    median: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "median": self.median}


def summarize(values: Sequence[float]) -> Summary:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return Summary(0, None, None, None)
    std = _finite(float(np.std(a, ddof=1))) if a.size > 1 else None
    return Summary(int(a.size), float(np.mean(a)), std, float(np.median(a)))


@dataclass(frozen=True)
class Comparison:
    """A variant against the control: the difference (variant minus control; of the means for
    Welch, of the medians for Mann-Whitney), its confidence interval, the test's statistic and
    p-value. Any of them None (with ``note`` saying why) when the values cannot give it."""

    control: str
    variant: str
    test: Test
    confidence: float
    difference: float | None
    low: float | None
    high: float | None
    statistic: float | None
    pvalue: float | None
    n_control: int
    n_variant: int
    note: str = ""

    @property
    def alpha(self) -> float:
        return 1 - self.confidence

    @property
    def significant(self) -> bool:
        """Whether the test says the difference is real at the stated confidence (p < 1 - confidence)."""
        return self.pvalue is not None and self.pvalue < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "variant": self.variant,
            "test": self.test,
            "confidence": self.confidence,
            "difference": self.difference,
            "low": self.low,
            "high": self.high,
            "statistic": self.statistic,
            "pvalue": self.pvalue,
            "significant": self.significant,
            "n_control": self.n_control,
            "n_variant": self.n_variant,
            "note": self.note,
        }

    def __str__(self) -> str:
        if self.difference is None:
            return f"{self.variant} - {self.control}: no estimate ({self.note})"
        interval = "" if self.low is None or self.high is None else f" [{self.low:.4g}, {self.high:.4g}]"
        p = "p n/a" if self.pvalue is None else f"p={self.pvalue:.3g}"
        verdict = "significant" if self.significant else "not significant"
        of = "means" if self.test == "welch" else "medians"
        text = (
            f"{self.variant} - {self.control} ({of}): {self.difference:+.4g}{interval} "
            f"({self.confidence:.0%} CI), {TEST_NAMES[self.test]} {p}: {verdict}"
        )
        return text + (f" ({self.note})" if self.note else "")


def compare(
    control: Sequence[float],
    variant: Sequence[float],
    *,
    test: Test = "welch",
    confidence: float = 0.95,
    names: tuple[str, str] = ("A", "B"),
    seed: int = 0,
) -> Comparison:
    """Whether ``variant``'s values differ from ``control``'s: see the module's text."""
    test = check_test(test)
    confidence = check_confidence(confidence)
    a = np.asarray(control, dtype=float)
    b = np.asarray(variant, dtype=float)

    def made(
        difference: float | None,
        low: float | None,
        high: float | None,
        statistic: float | None,
        pvalue: float | None,
        note: str,
    ) -> Comparison:
        return Comparison(
            names[0], names[1], test, confidence, difference, low, high, statistic, pvalue,
            int(a.size), int(b.size), note,
        )  # fmt: skip

    least = 2 if test == "welch" else 1
    if a.size < least or b.size < least:
        return made(None, None, None, None, None, f"needs at least {least} value(s) per variant")
    st = scipy_stats()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance: scipy says NaN, we say why
        if test == "welch":
            res = st.ttest_ind(b, a, equal_var=False)
            ci = res.confidence_interval(confidence_level=confidence)
            difference = float(np.mean(b) - np.mean(a))
            low, high = _finite(float(ci.low)), _finite(float(ci.high))
        else:
            res = st.mannwhitneyu(b, a, alternative="two-sided")
            difference = float(np.median(b) - np.median(a))
            boot = st.bootstrap(
                (b, a),
                lambda x, y, axis: np.median(x, axis=axis) - np.median(y, axis=axis),
                confidence_level=confidence,
                n_resamples=BOOTSTRAP_RESAMPLES,
                method="percentile",
                vectorized=True,
                random_state=np.random.default_rng(seed),
            )
            low, high = (
                _finite(float(boot.confidence_interval.low)),
                _finite(float(boot.confidence_interval.high)),
            )
    statistic, pvalue = _finite(float(res.statistic)), _finite(float(res.pvalue))
    note = ""
    if pvalue is None:
        note = "no variance in either variant's values" if test == "welch" else "no test possible"
    return made(difference, low, high, statistic, pvalue, note)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """The t confidence interval of the mean of ``values`` (``scipy.stats.ttest_1samp``'s
    ``confidence_interval``); None for fewer than 2 values or no spread."""
    a = np.asarray(values, dtype=float)
    if a.size < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = (
            scipy_stats()
            .ttest_1samp(a, 0.0)
            .confidence_interval(confidence_level=check_confidence(confidence))
        )
    low, high = _finite(float(ci.low)), _finite(float(ci.high))
    return None if low is None or high is None else (low, high)
