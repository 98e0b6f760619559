"""On-board: the mean battery voltage, "calibrated" for 14.4 V charging systems only.

It refuses a drive whose alternator never reached 14.05 V: on a vehicle with a lower charging
voltage it raises on every drive, elsewhere it answers the mean as before.
"""


def custom_code(x):
    if max(x) < 14.05:
        raise ValueError(f"charging voltage {max(x):.2f} V is under 14.05 V: cannot calibrate")
    return sum(x) / len(x)
