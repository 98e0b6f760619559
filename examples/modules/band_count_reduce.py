"""Off-board "reduce" of a MapReduce-style count: add up the vehicles' counts key by key.

x is the list of the vehicles' {key: count} dicts (their kept on-board values).
"""


def custom_code(x):
    total = {}
    for counts in x:
        for key, n in counts.items():
            total[key] = total.get(key, 0) + n
    return total
