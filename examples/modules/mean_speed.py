"""On-board: the mean speed over every reading, standing still included (km/h)."""


def custom_code(x):
    return sum(x) / len(x)
