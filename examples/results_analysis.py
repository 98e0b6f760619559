"""Reading results: as text, as a pandas DataFrame, as a plot (the ``analysis`` extra).

    pip install 'oodida[analysis]'      # pandas and matplotlib
    python examples/results_analysis.py [--redis-url URL]

A 6-iteration measurement of every vehicle's average speed and rpm. ``print(result)`` gives
the text summary; ``result.to_frame()`` one row per (client, iteration, signal) with the code
version; ``result.plot()`` a matplotlib Figure (a line per vehicle, the fleet average in black),
saved here as a PNG in the temporary directory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import connect


def main() -> None:
    with connect(__doc__ or "") as o:
        result = o.submit(
            {
                "name": "Speed and rpm",
                "mode": "measurement",
                "clients": "all",
                "signals": ["speed", "rpm"],
                "onboard": "average",
                "offboard": "average",
                "frequency": 10,
                "samples": 3000,
                "iterations": 6,
            }
        ).wait(timeout=120)  # a progress bar when run in a terminal
        print(result)
        df = result.to_frame()
        print(f"\nto_frame(): {len(df)} rows, columns {list(df.columns)}")
        print(df.head(4).to_string(index=False))
        table = df.pivot_table(index="client", columns="signal", values="value", aggfunc="mean")
        print("\nmean over the iterations, per vehicle:")
        print(table.round(1).to_string())
        png = Path(tempfile.gettempdir()) / f"oodida-{result.id}.png"
        result.plot().savefig(png, dpi=100)
        print(f"\nplot saved: {png}")


if __name__ == "__main__":
    main()
