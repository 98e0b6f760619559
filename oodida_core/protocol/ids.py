"""Client id sets written as ranges: ``"1-20"``, ``"1,3,5-7"``."""

from __future__ import annotations

from collections.abc import Iterable

MAX_IDS = 100_000


def parse_id_ranges(text: str) -> list[int]:
    """``"1,3,5-7"`` -> [1, 3, 5, 6, 7]; ValueError with a readable message otherwise."""
    ids: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            raise ValueError(f"empty entry in client list {text!r}")
        low, sep, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise ValueError(f"{part!r} is not a client id or a range like 1-20") from None
        if first < 1 or last < first:
            raise ValueError(f"{part!r}: ids are positive and ranges go up (like 1-20)")
        if last - first + len(ids) >= MAX_IDS:
            raise ValueError(f"{text!r} names more than {MAX_IDS} clients")
        ids.update(range(first, last + 1))
    return sorted(ids)


def format_ranges(ids: Iterable[int]) -> str:
    """[1, 2, 3, 5] -> ``"1-3,5"``."""
    ordered = sorted(set(ids))
    out: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)
