"""A MapReduce-style count: readings per speed band, over the whole fleet.

    python examples/mapreduce_count.py [--redis-url URL]

The "map" runs on board (examples/modules/band_count_map.py: {band: count} of one vehicle's
readings), the "reduce" in the cloud (examples/modules/band_count_reduce.py: the counts added
up band by band). Only the counts travel, never the readings.
"""

from __future__ import annotations

from common import connect, module, short

SAMPLES = 3000


def main() -> None:
    with connect(__doc__ or "") as o:
        mapper = o.deploy_onboard(module("band_count_map.py"), clients="all").wait(timeout=60)
        reducer = o.deploy_offboard(module("band_count_reduce.py")).wait(timeout=60)
        print(f"map    band_count_map.py    {short(mapper.version)} on clients {list(mapper.accepted)}")
        print(f"reduce band_count_reduce.py {short(reducer.version)} in the cloud")
        result = o.submit(
            {
                "name": "Speed bands",
                "mode": "measurement",
                "clients": "all",
                "signals": "speed",
                "onboard": "custom",
                "offboard": "custom",
                "frequency": 10,
                "samples": SAMPLES,
                "iterations": 1,
            }
        ).wait(timeout=120, progress=False)
        it = result.iterations[0]
        total = sum(it.value.values())
        for band, count in it.value.items():
            bar = "#" * round(40 * count / total)
            print(f"  {band:>8} km/h {count:6d} {bar}")
        expected = SAMPLES * len(it.onboard)
        print(
            f"counted {total} readings from {len(it.onboard)} vehicles "
            f"({'all' if total == expected else f'expected {expected}'}; {result.status})"
        )


if __name__ == "__main__":
    main()
