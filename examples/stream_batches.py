"""Batch and stream processing: stream processing as a run of small batches (iterations).

    python examples/stream_batches.py [--redis-url URL]

Built-in methods only. First one batch: ten minutes of readings at 10 Hz, averaged on board
and over the fleet. Then a stream: an assignment with ``iterations: 0`` runs until cancelled,
each iteration a one-minute batch; the analyst reads each iteration as soon as it is finished
(``a.iterations()``), keeps a moving average over the last batches, and cancels after a while.
"""

from __future__ import annotations

from collections import deque

from common import connect

BASE = {
    "mode": "measurement",
    "clients": "all",
    "signals": ["speed", "fuel_rate"],
    "onboard": "average",
    "offboard": "average",
    "frequency": 10,
}
BATCHES = 6
WINDOW = 3


def main() -> None:
    with connect(__doc__ or "") as o:
        batch = o.submit({**BASE, "name": "One batch", "samples": 6000, "iterations": 1})
        value = batch.wait(timeout=120, progress=False).value
        print(
            f"batch: 10 minutes of readings, fleet average {value['speed']:.1f} km/h, "
            f"{value['fuel_rate']:.2f} l/h"
        )

        stream = o.submit({**BASE, "name": "Stream", "samples": 600, "iterations": 0})
        window: deque[float] = deque(maxlen=WINDOW)
        print(f"stream: one-minute batches, moving average over the last {WINDOW}")
        for it in stream.iterations(timeout=120):
            if it.ended_by == "cancel" or it.value is None:
                continue  # the batch under way when the stream was cancelled
            window.append(it.value["speed"])
            print(
                f"  batch {it.index}: {it.value['speed']:6.1f} km/h, moving average "
                f"{sum(window) / len(window):6.1f} km/h ({len(it.onboard)} vehicles)"
            )
            if it.index + 1 == BATCHES:
                stream.cancel()  # stops after the running batch; the loop ends with the stream
        result = stream.result()
        complete = sum(1 for i in result.iterations if i.ended_by == "complete")
        print(f"stream {result.status} after {complete} complete batches")


if __name__ == "__main__":
    main()
