"""On-board "map" of a MapReduce-style count: how many speed readings fall in each band.

x is the list of speed readings (km/h) of one iteration; the result is {band: count}.
"""

BANDS = [(0, 30), (30, 60), (60, 90), (90, 120), (120, 1000)]


def custom_code(x):
    counts = {}
    for low, high in BANDS:
        name = f"{low}-{high}" if high < 1000 else f"{low}+"
        counts[name] = sum(1 for v in x if low <= v < high)
    return counts
