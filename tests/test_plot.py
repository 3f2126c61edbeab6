"""Charts: every kind is written, is a real image with content, and bad requests are errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

import fastgex
from fastgex.cli import main
from fastgex.sample import sample_chain

matplotlib = pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is needed")
matplotlib.use("Agg")
from matplotlib import image as mpimg  # noqa: E402

from fastgex import plot  # noqa: E402


@pytest.fixture(scope="module")
def result():
    chain = sample_chain("SPX", 4700.0, seed=2)
    return fastgex.levels(chain, buckets="default")


def _check_image(path):
    """A PNG of reasonable size whose pixels are not all one colour."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000
    pixels = mpimg.imread(path)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500
    assert np.std(pixels[..., :3]) > 0.05  # bars, curves and labels, not a blank canvas


@pytest.mark.parametrize("kind", plot.KINDS)
def test_every_kind_writes_an_image(result, kind, tmp_path):
    path = plot.save(plot.plot(result, kind), tmp_path / f"{kind}.png")
    _check_image(path)


def test_strike_chart_marks_the_levels(result):
    figure = plot.plot_strikes(result)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    (row,) = [row for row in result.levels.to_pylist() if row["bucket"] == "all"]
    assert any(label.startswith("spot") for label in labels)
    for name, label in (("zero_gamma", "zero gamma"), ("flip_strike", "flip strike")):
        present = row[name] is not None
        assert any(text.startswith(label) for text in labels) is present
    matplotlib.pyplot.close(figure)


def test_series_with_regime_shading(tmp_path):
    values = [3.0, 2.0, -1.0, -2.0, 1.0, 2.0, -3.0, 1.0]
    table = pa.table(
        {
            "snapshot_time": [dt.datetime(2024, 1, day) for day in range(1, 9)],
            "total_gex": values,
            "regime": ["short_gamma" if value < 0 else "long_gamma" for value in values],
        }
    )
    figure = plot.plot_series(table)
    assert len(figure.axes[0].patches) == sum(value < 0 for value in values)
    _check_image(plot.save(figure, tmp_path / "series.png"))


def test_bad_requests(result):
    with pytest.raises(ValueError, match="unknown chart kind"):
        plot.plot(result, "pie")
    with pytest.raises(KeyError, match="no underlying"):
        plot.plot_strikes(result, "NOPE")
    with pytest.raises(KeyError, match="no bucket"):
        plot.plot_strikes(result, bucket="quarterly_but_wrong")
    with pytest.raises(KeyError, match="no bucket"):
        plot.plot_profile(result, buckets=("nope",))


def test_cli_plot_and_demo_chart(tmp_path, monkeypatch, capsys):
    import pyarrow.parquet as pq

    chain_path = tmp_path / "chain.parquet"
    pq.write_table(sample_chain("SPX", 4700.0, seed=4), chain_path)
    out = tmp_path / "profile.png"
    assert main(["plot", str(chain_path), "--kind", "profile", "--out", str(out)]) == 0
    _check_image(out)
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--contracts", "20000", "--top", "2"]) == 0
    assert "Chart: fastgex_demo.png" in capsys.readouterr().out
    _check_image(tmp_path / "fastgex_demo.png")
    with pytest.raises(SystemExit):  # argparse refuses an unknown kind
        main(["plot", str(chain_path), "--kind", "pie", "--out", str(out)])
    assert main(["plot", str(tmp_path / "missing.csv"), "--out", str(out)]) == 2


def test_flow_series_per_underlying(tmp_path):
    """A flow series (one row per step and underlying) is drawn one underlying at a time."""
    steps = [dt.datetime(2024, 1, day, 16) for day in range(2, 7)]
    table = pa.table(
        {
            "underlying": ["SPX"] * 5 + ["NDX"] * 5,
            "current_snapshot_time": steps * 2,
            "hedge_flow": [1e9, -2e9, 5e8, -1e8, 3e9, 2e8, 1e8, -3e8, 4e8, -2e8],
        }
    )
    options = {"time": "current_snapshot_time", "value": "hedge_flow", "regime": None}
    with pytest.raises(ValueError, match="several underlyings"):
        plot.plot_series(table, **options)
    with pytest.raises(KeyError, match="no underlying"):
        plot.plot_series(table, underlying="RUT", **options)
    figure = plot.plot_series(table, underlying="NDX", **options)
    (line,) = [line for line in figure.axes[0].get_lines() if line.get_label() == "hedge_flow"]
    assert list(line.get_ydata()) == [2e8, 1e8, -3e8, 4e8, -2e8]
    _check_image(plot.save(figure, tmp_path / "flow.png"))
