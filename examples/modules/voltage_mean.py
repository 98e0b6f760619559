"""On-board: the mean battery voltage over the readings (V); the version the fleet runs."""


def custom_code(x):
    return sum(x) / len(x)
