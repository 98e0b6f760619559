"""On-board: the mean battery voltage (V), rewritten with the statistics module; the same
figures as voltage_mean.py, a new version."""

import statistics


def custom_code(x):
    return statistics.fmean(x)
