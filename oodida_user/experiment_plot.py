"""``ExperimentResult.plot()``: two panels.

Left: each variant's mean metric per iteration, with a band for the t confidence interval of
that mean (``stats.mean_interval``). Right: the overall difference of each variant from the
control (one value per vehicle) with its confidence interval, and the line of no difference.
matplotlib is the ``analysis`` extra; scipy (the bands) the ``stats`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .analysis import EXTRA
from .stats import TEST_NAMES, mean_interval

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .experiment_result import ExperimentResult


def plot_experiment(result: ExperimentResult) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"ExperimentResult.plot() needs matplotlib: {EXTRA}") from None
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[2, 1])
    fig.suptitle(f"experiment {result.id}: {result.metric} ({TEST_NAMES[result.test]})")
    names = [v.name for v in result.variants]
    for name in names:
        xs, means, lows, highs = [], [], [], []
        for stage in result.iterations:
            values = [
                r.metric
                for r in result.rows
                if r.variant == name and r.iteration == stage.index and r.metric is not None
            ]
            s = stage.summaries[name]
            if s.mean is None:
                continue
            band = mean_interval(values, result.confidence) or (s.mean, s.mean)
            xs.append(stage.index)
            means.append(s.mean)
            lows.append(band[0])
            highs.append(band[1])
        (line,) = left.plot(xs, means, marker="o", label=f"{name} (n={len(result.groups[name])})")
        left.fill_between(xs, lows, highs, alpha=0.2, color=line.get_color())
    from matplotlib.ticker import MaxNLocator

    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("iteration")
    left.set_ylabel(f"mean of {result.metric}")
    left.set_title(f"per iteration, {result.confidence:.0%} interval of each mean")
    if result.iterations:
        left.legend()
    comparisons = [c for c in result.overall.comparisons if c.difference is not None]
    for y, c in enumerate(comparisons):
        d = c.difference if c.difference is not None else 0.0
        low = c.low if c.low is not None else d
        high = c.high if c.high is not None else d
        right.errorbar(
            [d],
            [y],
            xerr=[[d - low], [high - d]],
            fmt="o",
            capsize=4,
            color="tab:red" if c.significant else "tab:gray",
        )
        p = "p n/a" if c.pvalue is None else f"p={c.pvalue:.2g}"
        right.annotate(p, (d, y), textcoords="offset points", xytext=(0, 8), ha="center")
    right.axvline(0, color="black", linewidth=0.8, linestyle="--")
    right.set_yticks(range(len(comparisons)), [f"{c.variant} - {c.control}" for c in comparisons])
    right.set_ylim(-0.8, max(len(comparisons), 1) - 0.2)
    right.set_xlabel(f"difference of {'means' if result.test == 'welch' else 'medians'}")
    right.set_title(f"overall (one value per vehicle), {result.confidence:.0%} CI")
    return fig
