"""End to end on the real CBOE chains in ../shared/data/chains (read by path, never copied)."""

from __future__ import annotations

import math

import pytest

import fastgex

pytestmark = pytest.mark.realdata

QUOTE_FILES = [
    "carlos_spx_quotedata_2023-09-14.csv",
    "carlos_spy_quotedata_2023-09-14.csv",
    "carlos_xsp_quotedata_2023-09-14.csv",
    "gflows_ndx_quotedata_2022-12-12.csv",
    "gflows_rut_quotedata_2022-12-12.csv",
    "gflows_spx_quotedata_2022-12-12.csv",
    "luca_ndx_quotedata_2022-02-05.csv",
    "luca_spx_quotedata_2022-02-05.csv",
    "nickkxsper_spx_quotedata_2022-02-19.csv",
    "nickkxsper_spx_quotedata_2022-07-12.csv",
    "phammings_spx_quotedata_2022-06-11.csv",
    "phammings_spx_quotedata_2024-01-07.csv",
    "gflows_rut_cboe_api_2023-09-21.json",
]


def test_published_total_gex_is_reproduced(chains_dir):
    """The public script's published figure: -11.00 $bn per 1% (README of ../shared/data).

    Settings named there: CBOE's gamma column, dealers long calls / short puts,
    gamma x OI x 100 x spot^2 x 0.01, expired contracts excluded.
    """
    result = fastgex.gex(
        chains_dir / "phammings_spx_quotedata_2024-01-07.csv",
        gamma_source="column",
        convention="long_calls_short_puts",
        unit="dollars_per_1pct",
    )
    assert round(result.total("SPX") / 1e9, 2) == -11.00
    assert result.dropped.to_pylist() == [{"underlying": "SPX", "reason": "expired", "count": 446}]


@pytest.mark.parametrize("name", QUOTE_FILES)
@pytest.mark.parametrize("gamma_source", ["model", "column"])
def test_every_real_chain_end_to_end(chains_dir, name, gamma_source):
    result = fastgex.gex(chains_dir / name, gamma_source=gamma_source)
    table = fastgex.read_chain(chains_dir / name)
    by_underlying = result.by_underlying.to_pylist()
    assert by_underlying, name
    for row in by_underlying:
        assert math.isfinite(row["total_gex"]) and math.isfinite(row["call_gex"])
    counted = sum(row["contracts"] + row["dropped"] for row in by_underlying)
    assert counted == table.num_rows  # every row is counted or its drop reported
    strikes = result.by_strike
    assert strikes.num_rows > 0
    last_cumulative = {}
    for row in strikes.to_pylist():
        last_cumulative[row["underlying"]] = row["cumulative_net_gex"]
    for row in by_underlying:
        assert last_cumulative[row["underlying"]] == pytest.approx(
            row["total_gex"], rel=1e-9, abs=1e-6 * abs(row["call_gex"]) + 1e-9
        )
    if gamma_source == "model":
        # CBOE writes IV = 0 for deep and illiquid rows: counted, never silently lost.
        reasons = {row["reason"] for row in result.dropped.to_pylist()}
        assert reasons <= {"invalid_implied_vol", "expired", "missing_value"}
