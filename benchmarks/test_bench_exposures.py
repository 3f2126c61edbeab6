"""Exposures and hedge flow end to end, as same-run ratios against a numpy baseline.

The baseline is what a careful numpy user writes: delta (scipy's ``ndtr``) and the $
exposure per row with whole-array temporaries, then ``np.bincount`` per underlying
(uncompensated), with the times to expiry handed to it. Ours: :func:`fastgex.exposures`
from the Arrow table (validation, times from expirations, the fused greeks kernel,
compensated per-underlying and per-strike sums). The exposure profile is compared with
the same numpy code run once per spot level. No speed target is asserted yet.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
from scipy.special import ndtr

from conftest import best_of, record
from fastgex import exposure_profile, exposures, greeks, hedge_flow
from fastgex.sample import sample_market

ROWS = 1_500_000
MOVES = (-0.02, -0.01, 0.01, 0.02)


def _columns(market):
    ids = pc.dictionary_encode(market.column("underlying")).combine_chunks()
    names = ids.dictionary.to_pylist()
    columns = {
        name: np.asarray(market.column(name).to_numpy(), dtype=np.float64)
        for name in ("strike", "open_interest", "implied_vol", "spot", "multiplier")
    }
    columns["call"] = np.isin(np.asarray(market.column("option_type").to_pylist()), ["C", "call"])
    columns["id"] = ids.indices.to_numpy()
    return names, columns


def _numpy_delta(columns, years, spot):
    strike, vol = columns["strike"], columns["implied_vol"]
    d1 = (np.log(spot / strike) + 0.5 * vol * vol * years) / (vol * np.sqrt(years))
    return np.where(columns["call"], ndtr(d1), ndtr(d1) - 1.0)


def _numpy_dex(columns, years, n_names, spot=None):
    spot = columns["spot"] if spot is None else spot
    sign = np.where(columns["call"], -1.0, 1.0)
    shares = sign * columns["open_interest"] * columns["multiplier"]
    values = shares * _numpy_delta(columns, years, spot) * spot
    return np.bincount(columns["id"], weights=values, minlength=n_names)


def _years(market):
    """fastgex's times (from expirations and the snapshot), floored at one minute."""
    times = greeks(market, greeks="delta").table.column("time_to_expiry").to_numpy()
    return np.maximum(times, 60.0 / (365.0 * 86_400.0))


def test_exposures_vs_numpy(benchmark):
    market = sample_market(ROWS, seed=0)
    names, columns = _columns(market)
    years = _years(market)
    exposures(market, kind="dex")  # compile / load from cache outside the timing
    result = benchmark(exposures, market, kind="dex")
    ours = benchmark.stats.stats.min
    baseline = best_of(lambda: _numpy_dex(columns, years, len(names)), repeat=3)
    # The baseline makes no per-strike table and is handed the times: also without ours.
    totals_only = best_of(lambda: exposures(market, kind="dex", by_strike=False), repeat=3)
    ratios = {
        "rows_per_s": ROWS / ours,
        "vs_numpy": baseline / ours,
        "totals_only_vs_numpy": baseline / totals_only,
    }
    benchmark.extra_info.update(ratios)
    record(f"exposures dex {ROWS} rows (with per-strike table)", **ratios)
    expected = dict(zip(names, _numpy_dex(columns, years, len(names)), strict=True))
    for row in result.by_underlying.to_pylist():
        assert row["total_dex"] == pytest.approx(expected[row["underlying"]], rel=1e-8, abs=1e-3)


def test_hedge_flow_vs_numpy(benchmark):
    market = sample_market(ROWS, seed=1)
    names, columns = _columns(market)
    years = _years(market)

    def numpy_flows():
        flows = []
        for move in MOVES:
            moved = columns["spot"] * (1 + move)
            sign = np.where(columns["call"], -1.0, 1.0) * columns["open_interest"]
            sign = sign * columns["multiplier"]
            change = sign * (
                _numpy_delta(columns, years, moved) - _numpy_delta(columns, years, columns["spot"])
            )
            flows.append(-np.bincount(columns["id"], weights=change * moved, minlength=len(names)))
        return flows

    hedge_flow(market, MOVES)
    result = benchmark(hedge_flow, market, MOVES)
    ours = benchmark.stats.stats.min
    baseline = best_of(numpy_flows, repeat=2)
    ratios = {"rows_x_moves_per_s": ROWS * len(MOVES) / ours, "vs_numpy": baseline / ours}
    benchmark.extra_info.update(ratios)
    record(f"hedge_flow {ROWS} rows x {len(MOVES)} moves", **ratios)
    flows = numpy_flows()
    index = {name: position for position, name in enumerate(names)}
    for row in result.flows.to_pylist():
        expected = flows[MOVES.index(row["move"])][index[row["underlying"]]]
        assert abs(row["hedge_flow"] - expected) <= 1e-7 * abs(expected) + 1e-2


PROFILE_ROWS = 300_000
PROFILE_LEVELS = 20


def test_exposure_profile_vs_numpy(benchmark):
    """DEX at 20 spot levels: per level, delta at the moved spot and a per-underlying sum."""
    market = sample_market(PROFILE_ROWS, seed=2)
    names, columns = _columns(market)
    years = _years(market)
    ratios = np.linspace(0.8, 1.2, PROFILE_LEVELS)

    def numpy_profile():
        return [_numpy_dex(columns, years, len(names), columns["spot"] * ratio)
                for ratio in ratios]  # fmt: skip

    options = {"kind": "dex", "n_levels": PROFILE_LEVELS}
    exposure_profile(market, **options)
    result = benchmark(exposure_profile, market, **options)
    ours = benchmark.stats.stats.min
    baseline = best_of(numpy_profile, repeat=2)
    ratios_out = {
        "rows_x_levels_per_s": PROFILE_ROWS * PROFILE_LEVELS / ours,
        "vs_numpy": baseline / ours,
    }
    benchmark.extra_info.update(ratios_out)
    record(f"exposure_profile dex {PROFILE_ROWS} rows x {PROFILE_LEVELS} levels", **ratios_out)
    expected = np.array(numpy_profile())  # (levels, underlyings)
    index = {name: position for position, name in enumerate(names)}
    table = result.table
    got = table.column("total_dex").to_numpy()
    want = expected[
        np.tile(np.arange(PROFILE_LEVELS), table.num_rows // PROFILE_LEVELS),
        [index[name] for name in table.column("underlying").to_pylist()],
    ]
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-3)
