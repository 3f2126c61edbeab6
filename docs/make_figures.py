"""Draw the documentation's figures with :mod:`fastgex.plot` (run by ``conf.py``).

Every figure in the docs comes from this script, on fastgex's own seeded sample
chain, so the pictures always show what the code computes. Output: ``docs/figures``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pyarrow as pa

import fastgex
from fastgex import plot
from fastgex.sample import sample_chain

FIGURES = Path(__file__).resolve().parent / "figures"


def main() -> list[Path]:
    FIGURES.mkdir(exist_ok=True)
    chain = sample_chain("SPX", 4700.0, seed=0)
    result = fastgex.levels(chain, buckets="default")
    written = [plot.save(plot.plot(result, kind), FIGURES / f"{kind}.png") for kind in plot.KINDS]
    # A regime series: the same chain's total GEX as the spot drifts over ten sessions.
    start = dt.datetime(2024, 1, 8, 15, 30, tzinfo=dt.timezone.utc)
    rows = []
    for day, spot in enumerate((4700, 4660, 4620, 4580, 4560, 4600, 4650, 4700, 4740, 4760)):
        totals = fastgex.gex(chain, spot=float(spot), by_strike=False).by_underlying
        total = totals.column("total_gex")[0].as_py()
        rows.append((start + dt.timedelta(days=day), total))
    series = pa.table(
        {
            "snapshot_time": [when for when, _ in rows],
            "total_gex": [total for _, total in rows],
            "regime": ["short_gamma" if total < 0 else "long_gamma" for _, total in rows],
        }
    )
    written.append(plot.save(plot.plot_series(series), FIGURES / "series.png"))
    return written


if __name__ == "__main__":
    for path in main():
        print(path)
