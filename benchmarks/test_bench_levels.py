"""Profile throughput, whole-market levels, and the cost of buckets (issue 3).

Targets: profile >= 1.5e9 gamma evaluations/s on the 2-core machine and >= 10x a numpy
broadcast implementation, same run; the per-level pandas loop of the public script as
the naive baseline; buckets add < 25% over the plain GEX pass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import best_of, interleaved_best, kernel_inputs, record
from fastgex import _kernels, _profile_kernel
from fastgex._gex import _engine, _run, gex
from fastgex._levels import levels, profile
from fastgex._targets import resolve_targets
from fastgex.reference import gex_pandas_scipy
from fastgex.sample import sample_chain, sample_market

SIZES = [(100_000, 60), (1_000_000, 60), (1_000_000, 200), (10_000_000, 60)]


def _profile_inputs(inputs, n_levels):
    arrays = inputs["arrays"]
    n_slots = inputs["n_underlyings"]
    ratios = np.linspace(0.8, 1.2, n_levels)
    log_ratio = np.broadcast_to(np.log(ratios), (n_slots, n_levels)).copy()
    factor = np.broadcast_to(0.01 * ratios, (n_slots, n_levels)).copy()
    zeros = np.zeros(n_slots)
    multiplier = np.full(n_slots, 100.0)
    empty = np.empty(0)
    for array in (log_ratio, factor, zeros, multiplier, empty):
        array.flags.writeable = False
    args = (
        arrays["strike"], arrays["vol"], arrays["time_to_expiry"], arrays["quantity"],
        arrays["option_code"], arrays["underlying_id"], empty, empty, empty, empty,
        inputs["spot"], zeros, zeros, multiplier, False, False, False, False, -1.0, 1.0,
        1e-6, 2, log_ratio, factor, n_slots,
        _kernels.rows_per_block(arrays["strike"].size, n_slots),
    )  # fmt: skip
    return args, ratios


def _numpy_profile(inputs, ratios, rows):
    """numpy broadcast: (rows x levels) temporaries, then per-underlying bincount."""
    arrays = inputs["arrays"]
    underlying = arrays["underlying_id"][:rows]
    spot = inputs["spot"][underlying]
    strike, vol, years = (
        arrays["strike"][:rows],
        arrays["vol"][:rows],
        arrays["time_to_expiry"][:rows],
    )
    levels_abs = spot[:, None] * ratios[None, :]
    vol_sqrt_time = (vol * np.sqrt(years))[:, None]
    d1 = (np.log(levels_abs / strike[:, None]) + 0.5 * (vol * vol * years)[:, None]) / vol_sqrt_time
    gamma = np.exp(-0.5 * d1 * d1) / (np.sqrt(2 * np.pi) * levels_abs * vol_sqrt_time)
    sign = np.where(arrays["option_code"][:rows] == 1, -1.0, 1.0)
    value = (sign * arrays["quantity"][:rows] * 100.0)[:, None] * gamma * levels_abs**2 * 0.01
    out = np.zeros((inputs["n_underlyings"], ratios.size))
    np.add.at(out, underlying, value)
    return out


@pytest.mark.parametrize(("rows", "n_levels"), SIZES)
def test_profile_throughput(benchmark, rows, n_levels):
    inputs = kernel_inputs(rows, max(1, rows // 2500))
    args, ratios = _profile_inputs(inputs, n_levels)
    _profile_kernel.profile(*args)  # compile / load from cache outside the timing
    ours = benchmark.pedantic(_profile_kernel.profile, args=args, rounds=3, iterations=1)
    ours_time = benchmark.stats.stats.min
    numpy_rows = min(rows, 100_000)  # (rows x levels) temporaries: keep memory bounded
    numpy_time = best_of(lambda: _numpy_profile(inputs, ratios, numpy_rows), repeat=2)
    evals_per_s = rows * n_levels / ours_time
    numpy_evals_per_s = numpy_rows * n_levels / numpy_time
    ratios_out = {
        "evals_per_s": evals_per_s,
        "numpy_evals_per_s": numpy_evals_per_s,
        "vs_numpy": evals_per_s / numpy_evals_per_s,
    }
    benchmark.extra_info.update(ratios_out)
    record(f"profile {rows:.0e} rows x {n_levels} levels", **ratios_out)
    # Same answer as numpy on the rows numpy did (a benchmark that asserts its result).
    if numpy_rows == rows:
        np.testing.assert_allclose(ours, _numpy_profile(inputs, ratios, rows), rtol=1e-9,
                                   atol=1e-9 * np.abs(ours).max())  # fmt: skip


def _script_profile(frame: pd.DataFrame, spot: float, ratios: np.ndarray) -> np.ndarray:
    """The public script's profile: one full pandas/scipy GEX pass per level."""
    totals = []
    for ratio in ratios:
        totals.append(gex_pandas_scipy(frame, spot * ratio).attrs["total"])
    return np.array(totals)


def test_sticky_moneyness_profile(benchmark):
    """The profile under sticky moneyness vs sticky strike, same chain and grid.

    Sticky moneyness recomputes every contract's vol (a smile lookup) and the row
    constants at each level: one kernel pass per level. Reported, no target.
    """
    market = sample_market(300_000, seed=2)
    sticky_strike = best_of(lambda: profile(market), repeat=3)
    profile(market, vol_model="sticky_moneyness")
    benchmark.pedantic(
        lambda: profile(market, vol_model="sticky_moneyness"), rounds=3, iterations=1
    )
    moving = benchmark.stats.stats.min
    evaluations = market.num_rows * 60
    record(
        "profile, sticky moneyness vs sticky strike (300k-contract market, 60 levels)",
        sticky_strike_seconds=sticky_strike,
        sticky_moneyness_seconds=moving,
        sticky_moneyness_evals_per_second=evaluations / moving,
        slowdown=moving / sticky_strike,
    )


def test_profile_vs_pandas_script(benchmark):
    chain = sample_chain(seed=3)
    snapshot_rows = 2_000
    result = _engine(chain.slice(0, snapshot_rows), per_contract=True, by_strike=False)
    contracts = result.result.per_contract.to_pandas()
    frame = pd.DataFrame(
        {
            "strike": contracts["strike"],
            "option_type": contracts["option_type"].str.upper().str[0],
            "open_interest": chain.slice(0, snapshot_rows).column("open_interest").to_numpy(),
            "implied_vol": chain.slice(0, snapshot_rows).column("implied_vol").to_numpy(),
            "time_to_expiry": contracts["time_to_expiry"],
        }
    )
    frame = frame[contracts["drop_reason"].isna()]
    spot = float(result.result.by_underlying.column("spot")[0].as_py())
    ratios = np.linspace(0.8, 1.2, 6)  # the script is slow: 6 levels are enough to time it
    script_time = best_of(lambda: _script_profile(frame, spot, ratios), repeat=1)
    script_evals_per_s = len(frame) * ratios.size / script_time
    sliced = chain.slice(0, snapshot_rows)
    levels(sliced)  # compile
    ours = benchmark(lambda: levels(sliced, n_levels=60))
    ours_evals_per_s = len(frame) * 60 / benchmark.stats.stats.min
    record(
        "profile+levels vs per-level pandas script (2k rows)",
        script_evals_per_s=script_evals_per_s,
        ours_evals_per_s_including_levels=ours_evals_per_s,
        vs_script=ours_evals_per_s / script_evals_per_s,
    )
    assert ours.levels.num_rows == 1


def test_levels_whole_market(benchmark):
    market = sample_market()
    levels(market.slice(0, 50_000), buckets="default")  # compile
    result = benchmark.pedantic(
        lambda: levels(
            market, buckets="default", views=("all", "ex_next_expiry", "ex_next_monthly")
        ),
        rounds=2,
        iterations=1,
    )
    record(
        "levels whole market (all buckets and views)",
        rows=market.num_rows,
        seconds=benchmark.stats.stats.min,
        level_rows=result.levels.num_rows,
    )


@pytest.mark.parametrize(
    "views", [None, ("all", "ex_next_expiry", "ex_next_monthly")], ids=["buckets", "buckets+views"]
)
def test_bucket_overhead(benchmark, views):
    """``gex(market, buckets="default")`` vs plain ``gex(market)``, same run, whole market.

    Both end to end (read, validate, time to expiry, the fused kernel, tables). The
    bucketed call adds per-(underlying, strike, target class) groups in the kernel, the
    bucket of each (underlying, expiry) pair decided once, the per-bucket totals, and
    the plain per-strike table from the finer groups; its per-(bucket, strike) table is
    built on first access, timed here too ("with the per-bucket strike table"). The
    calls alternate, so a slow spell of the machine hits all of them. Target: < 25%
    over the plain call.
    """
    market = sample_market()
    calls = {
        "plain": lambda: gex(market),
        "bucketed": lambda: gex(market, buckets="default", views=views),
        "with_table": lambda: gex(market, buckets="default", views=views).by_strike_bucket,
    }
    best = interleaved_best(calls, repeat=9)
    benchmark.pedantic(calls["bucketed"], rounds=3, iterations=1)
    name = f"gex with default buckets{' and all views' if views else ''} over plain gex"
    record(
        f"{name} (whole market, end to end)",
        plain_seconds=best["plain"],
        bucketed_seconds=best["bucketed"],
        overhead=best["bucketed"] / best["plain"] - 1.0,
        with_table_seconds=best["with_table"],
        with_table_overhead=best["with_table"] / best["plain"] - 1.0,
    )


@pytest.mark.parametrize("keyed_by", ["class", "expiry"])
def test_expiry_group_overhead(benchmark, keyed_by):
    """The fused GEX pass alone: bucket groups vs per-strike groups.

    Both time :func:`fastgex._gex._run` (group ids + the fused kernel) on one prepared
    whole market: the kernel-level share of the bucket cost. ``class`` keys groups by
    (underlying, strike, target class), as ``gex(buckets="default")`` does; ``expiry``
    by (underlying, strike, expiry), as ``levels`` does for its strike x expiry surface.
    """
    market = sample_market()
    engine = _engine(market, by_expiry=True)
    prepared, config = engine.prepared, engine.kernel_config
    result = engine.result
    targets = None
    if keyed_by == "class":
        targets = resolve_targets(prepared, prepared.work, "default", ("all",))

    def run(by_expiry):
        return _run(prepared, config, result.convention, result.unit, engine.min_time,
                    True, False, by_expiry, targets if by_expiry else None)  # fmt: skip

    plain = best_of(lambda: run(False), repeat=5)
    run(True)
    benchmark.pedantic(run, args=(True,), rounds=5, iterations=1)
    with_buckets = benchmark.stats.stats.min
    record(
        f"bucket groups keyed by {keyed_by} over per-strike groups in the fused GEX pass "
        "(whole market)",
        plain_seconds=plain,
        bucketed_seconds=with_buckets,
        overhead=with_buckets / plain - 1.0,
        groups=prepared.n_groups,
    )
