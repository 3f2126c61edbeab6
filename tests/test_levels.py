"""fastgex.levels / fastgex.profile against slow, obviously correct computations.

The profile oracle (``_oracle_at``) recomputes the total GEX at a hypothetical spot ``S``
one row at a time: ``position * multiplier * gamma(S) * unit_factor(price)`` with the
scalar ``bsm_gamma`` / ``black76_gamma`` of :mod:`fastgex.reference` (``math.exp`` /
``math.log``) and ``math.fsum``. Times to expiry are computed here (ACT/365 to 16:00
New York), independently of ``fastgex._timing``. Black-76 rows move their forward with
the level: ``F(S) = F * S / spot``.

Tolerances, and why:

* profile vs oracle: ``1e-9 * max(|total|, sum of |terms|)`` at each level. The profile is
  a signed sum that passes through zero near zero gamma, where no bound relative to the
  total itself is meaningful; away from cancellation this is a plain 1e-9 relative bound.
  Observed errors are ~1e-15.
* the same numbers grouped differently (bucket sums vs ``all``, per-strike sums, profile at
  ratio 1 vs ``gex``): ``1e-12`` of the magnitude (sum of |call| and |put| parts).
* zero gamma: ``|profile(root)| <= 1e-9 * max |profile over the grid|`` (the refinement
  is specified to ~1e-15 x spot; 1e-9 leaves room for the profile's slope).
* interpolations done by hand (grid zero gamma, flip strike): ``1e-12`` relative.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from zoneinfo import ZoneInfo

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastgex
from fastgex import reference
from fastgex.buckets import DEFAULT_BUCKETS, VIEWS, expiry_buckets, is_standard_monthly
from fastgex.io.cboe import read_cboe
from fastgex.sample import DEFAULT_SNAPSHOT, sample_chain, sample_market

NEW_YORK = ZoneInfo("America/New_York")
YEAR_SECONDS = 365.0 * 86400.0
#: fastgex's documented default floor on the time used in gamma (one minute).
MIN_TIME = 60.0 / YEAR_SECONDS
SPOT = 4700.0
ALL_VIEWS = ("all", "ex_next_expiry", "ex_next_monthly")
CONVENTIONS = tuple(reference.CONVENTIONS)
UNITS = reference.UNITS
#: fast_exp flushes results below exp(-708) to 0 (documented); the reference keeps
#: subnormals, so allow a negligible absolute difference on levels where everything underflows.
TINY = 1e-250
LEVEL_FLOATS = (
    "spot",
    "total_gex",
    "call_gex",
    "put_gex",
    "flip_strike",
    "zero_gamma",
    "zero_gamma_grid",
    "key_gamma_strike",
    "key_gamma_gex",
    "call_wall",
    "put_wall",
    "absolute_gamma_strike",
)

fixed = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=12,
    suppress_health_check=[HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- the oracle


def _years(expiration: dt.date, snapshot: dt.datetime) -> float:
    settle = dt.datetime.combine(expiration, dt.time(16, 0), NEW_YORK)
    return (settle - snapshot).total_seconds() / YEAR_SECONDS


def _oracle_rows(
    table: pa.Table,
    *,
    convention: str = "short_calls_long_puts",
    rate: float = 0.0,
    dividend_yield: float = 0.0,
    keep=None,
) -> list[dict]:
    """The rows that count, with everything gamma needs (per-row columns win)."""
    call_sign, put_sign = reference.CONVENTIONS[convention]
    out = []
    for row in table.to_pylist():
        if keep is not None and not keep(row):
            continue
        years = _years(row["expiration"], row["snapshot_time"])
        vol = row["implied_vol"]
        if not (years > 0 and vol is not None and vol > 0):
            continue
        if "dealer_position" in row:
            position = row["dealer_position"]
        else:
            sign = call_sign if row["option_type"] == "C" else put_sign
            position = sign * row["open_interest"]
        out.append(
            {
                "strike": row["strike"],
                "vol": vol,
                "years": max(years, MIN_TIME),
                "position": position,
                "multiplier": row.get("multiplier") or 100.0,
                "rate": row.get("rate", rate),
                "dividend_yield": row.get("dividend_yield", dividend_yield),
                "spot": row["spot"],
                "forward": row.get("forward"),
            }
        )
    return out


def _oracle_at(rows: list[dict], level: float, unit: str) -> tuple[float, float]:
    """(total GEX at spot ``level``, sum of |terms|)."""
    terms = []
    for row in rows:
        if row["forward"] is None:
            price = level
            gamma = reference.bsm_gamma(
                level, row["strike"], row["vol"], row["years"], row["rate"], row["dividend_yield"]
            )
        else:
            price = row["forward"] * level / row["spot"]
            gamma = reference.black76_gamma(
                price, row["strike"], row["vol"], row["years"], row["rate"]
            )
        terms.append(reference.contract_gex(gamma, row["position"], row["multiplier"], price, unit))
    return math.fsum(terms), math.fsum(abs(term) for term in terms)


def _oracle_profile(rows, levels, unit="dollars_per_1pct") -> tuple[np.ndarray, np.ndarray]:
    pairs = [_oracle_at(rows, float(level), unit) for level in levels]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _assert_profile_matches(ours, exact, magnitude, rtol=1e-9) -> None:
    ours, exact, magnitude = (np.asarray(x, dtype=float) for x in (ours, exact, magnitude))
    assert ours.shape == exact.shape
    bound = rtol * np.maximum(np.abs(exact), magnitude) + TINY
    error = np.abs(ours - exact)
    assert np.all(error <= bound), (np.max(error / np.maximum(bound, TINY)), ours, exact)


def _close(ours: float, exact: float, magnitude: float, rtol: float = 1e-12) -> bool:
    return abs(ours - exact) <= rtol * max(abs(exact), magnitude) + TINY


# --------------------------------------------------------------------------- chains


@pytest.fixture(scope="module")
def chain() -> pa.Table:
    """The sample SPX chain: 13k rows, 37 expiries covering every default bucket."""
    return sample_chain("SPX", SPOT, seed=3)


@pytest.fixture(scope="module")
def small(chain) -> pa.Table:
    """Every 23rd row (575 rows, every default bucket): small enough for the oracle."""
    return chain.take(np.arange(0, chain.num_rows, 23))


@pytest.fixture(scope="module")
def full_levels(chain) -> fastgex.LevelsResult:
    return fastgex.levels(chain, buckets="default", views=ALL_VIEWS)


def _snapshot(table: pa.Table) -> dt.datetime:
    return table.column("snapshot_time")[0].as_py()


def _with_dealer_position(table: pa.Table) -> pa.Table:
    rng = np.random.default_rng(7)
    positions = rng.integers(-500, 501, table.num_rows).astype(np.float64)
    return table.append_column("dealer_position", pa.array(positions))


def _with_forward(table: pa.Table, carry: float = 0.02) -> pa.Table:
    snapshot = _snapshot(table)
    spots = table.column("spot").to_pylist()
    forwards = [
        spot * math.exp(carry * _years(expiry, snapshot))
        for spot, expiry in zip(spots, table.column("expiration").to_pylist(), strict=True)
    ]
    return table.append_column("forward", pa.array(forwards, pa.float64()))


def _with_carry_columns(table: pa.Table) -> pa.Table:
    index = np.arange(table.num_rows)
    return table.append_column("rate", pa.array(0.01 + 0.01 * (index % 3))).append_column(
        "dividend_yield", pa.array(0.004 * (index % 2))
    )


def _filter_expiry(table: pa.Table, keep) -> pa.Table:
    mask = pa.array([bool(keep(day)) for day in table.column("expiration").to_pylist()])
    return table.filter(mask)


def _next_live_expiry(table: pa.Table, monthly: bool = False) -> dt.date:
    """The earliest expiry that settles after the snapshot (16:00 New York)."""
    snapshot = _snapshot(table)
    live = {day for day in table.column("expiration").to_pylist() if _years(day, snapshot) > 0}
    if monthly:
        live = {day for day in live if is_standard_monthly(day)}
    return min(live)


def _rows_by_key(table: pa.Table) -> dict[tuple, dict]:
    return {(row["underlying"], row["bucket"]): row for row in table.to_pylist()}


def _profile_of(result, underlying: str, bucket: str) -> tuple[np.ndarray, np.ndarray]:
    table = result.profile if isinstance(result, fastgex.LevelsResult) else result.table
    mask = pc.and_(
        pc.equal(table.column("underlying"), underlying), pc.equal(table.column("bucket"), bucket)
    )
    part = table.filter(mask)
    return part.column("level").to_numpy(), part.column("total_gex").to_numpy()


def _strikes_of(result: fastgex.LevelsResult, underlying: str, bucket: str) -> pd.DataFrame:
    table = result.by_strike
    mask = pc.and_(
        pc.equal(table.column("underlying"), underlying), pc.equal(table.column("bucket"), bucket)
    )
    return table.filter(mask).to_pandas()


def _magnitude(row: dict) -> float:
    return abs(row["call_gex"]) + abs(row["put_gex"])


# --------------------------------------------------------------------------- 1. oracle


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("unit", UNITS)
def test_profile_matches_oracle_per_convention_and_unit(small, convention, unit):
    result = fastgex.profile(
        small, convention=convention, unit=unit, rate=0.03, dividend_yield=0.01
    )
    levels, totals = result.array("SPX")
    # The default grid: 60 levels, 0.8 to 1.2 x spot.
    np.testing.assert_allclose(levels, SPOT * np.linspace(0.8, 1.2, 60), rtol=1e-15)
    ratios = result.table.column("ratio").to_numpy()
    np.testing.assert_allclose(ratios, np.linspace(0.8, 1.2, 60), rtol=1e-15)
    rows = _oracle_rows(small, convention=convention, rate=0.03, dividend_yield=0.01)
    assert len(rows) == small.num_rows
    exact, magnitude = _oracle_profile(rows, levels, unit)
    _assert_profile_matches(totals, exact, magnitude)


def test_profile_matches_oracle_with_per_row_rate_and_dividend(small):
    table = _with_carry_columns(small)
    levels, totals = fastgex.profile(table, n_levels=25, level_range=(0.7, 1.3)).array("SPX")
    np.testing.assert_allclose(levels, SPOT * np.linspace(0.7, 1.3, 25), rtol=1e-15)
    exact, magnitude = _oracle_profile(_oracle_rows(table), levels)
    _assert_profile_matches(totals, exact, magnitude)


@pytest.mark.parametrize("convention", ["short_calls_long_puts", "short_all"])
def test_profile_matches_oracle_with_dealer_position(small, convention):
    """A dealer_position column is the signed position: the convention does not apply."""
    table = _with_dealer_position(small)
    levels, totals = fastgex.profile(table, convention=convention, rate=0.02, n_levels=30).array(
        "SPX"
    )
    exact, magnitude = _oracle_profile(_oracle_rows(table, rate=0.02), levels)
    _assert_profile_matches(totals, exact, magnitude)


@pytest.mark.parametrize("unit", UNITS)
def test_profile_matches_oracle_black76_forward(small, unit):
    """Black-76 rows: the forward moves with the level (F * level / spot)."""
    table = _with_forward(small)
    levels, totals = fastgex.profile(table, unit=unit, rate=0.03, n_levels=30).array("SPX")
    rows = _oracle_rows(table, rate=0.03)
    assert all(row["forward"] is not None for row in rows)
    exact, magnitude = _oracle_profile(rows, levels, unit)
    _assert_profile_matches(totals, exact, magnitude)


def test_profile_matches_oracle_at_explicit_levels(small):
    level_list = [3000.0, 4500.0, 4650.5, 4699.99, SPOT, 4812.25, 5000.0, 7000.0]
    result = fastgex.profile(small, level_list=level_list, rate=0.04, dividend_yield=0.015)
    levels, totals = result.array("SPX")
    np.testing.assert_allclose(levels, level_list, rtol=1e-15)
    exact, magnitude = _oracle_profile(
        _oracle_rows(small, rate=0.04, dividend_yield=0.015), level_list
    )
    _assert_profile_matches(totals, exact, magnitude)


def _sticky_moneyness_oracle(table: pa.Table, levels, unit="dollars_per_1pct"):
    """Total GEX at each level with vols moved by the expiry's smile (docs/levels.md).

    smile(K): mean implied vol of the expiry's valid rows at strike K, linear in strike,
    flat beyond the ends (``np.interp``); vol'(K) = vol(K) * smile(K / r) / smile(K).
    """
    rows = [row for row in table.to_pylist()
            if row["implied_vol"] and row["implied_vol"] > 0
            and _years(row["expiration"], row["snapshot_time"]) > 0]  # fmt: skip
    smiles = {}
    for expiration in {row["expiration"] for row in rows}:
        per_strike: dict[float, list[float]] = {}
        for row in rows:
            if row["expiration"] == expiration:
                per_strike.setdefault(row["strike"], []).append(row["implied_vol"])
        strikes = sorted(per_strike)
        smiles[expiration] = (strikes, [sum(per_strike[k]) / len(per_strike[k]) for k in strikes])
    totals, magnitudes = [], []
    for level in levels:
        ratio = level / SPOT
        moved = []
        for row in rows:
            strikes, vols = smiles[row["expiration"]]
            here = np.interp(row["strike"], strikes, vols)
            there = np.interp(row["strike"] / ratio, strikes, vols)
            moved.append({**row, "implied_vol": row["implied_vol"] * there / here})
        total, magnitude = _oracle_at(_oracle_rows(pa.Table.from_pylist(moved)), level, unit)
        totals.append(total)
        magnitudes.append(magnitude)
    return np.array(totals), np.array(magnitudes)


def test_sticky_moneyness_profile_matches_oracle(small):
    result = fastgex.profile(small, vol_model="sticky_moneyness", n_levels=9)
    levels, totals = result.array("SPX")
    exact, magnitude = _sticky_moneyness_oracle(small, levels)
    _assert_profile_matches(totals, exact, magnitude)
    # it is a different model: away from spot the profile differs from sticky strike
    _, sticky_strike = fastgex.profile(small, n_levels=9).array("SPX")
    assert np.max(np.abs(totals - sticky_strike)) > 1e-6 * np.max(np.abs(sticky_strike))


def test_sticky_moneyness_at_spot_is_the_gex_total(small):
    result = fastgex.profile(small, vol_model="sticky_moneyness", level_list=[SPOT])
    _, totals = result.array("SPX")
    total = fastgex.gex(small).total("SPX")
    assert totals[0] == pytest.approx(total, rel=1e-12)


def test_sticky_moneyness_zero_gamma_is_a_root_of_its_profile(chain):
    result = fastgex.levels(chain, vol_model="sticky_moneyness")
    row = result.levels.to_pylist()[0]
    assert row["zero_gamma"] is not None
    roots = [row["zero_gamma"], row["zero_gamma"] * (1 + 1e-6)]
    _, values = fastgex.profile(chain, vol_model="sticky_moneyness", level_list=roots).array("SPX")
    _, grid_values = _profile_of(result, "SPX", "all")
    assert abs(values[0]) <= 1e-9 * np.max(np.abs(grid_values))
    assert result.settings["vol_model"] == "sticky_moneyness"


def test_bucket_and_view_profiles_match_oracle(small):
    """Each bucket's / view's profile is the oracle over that bucket's / view's rows."""
    snapshot_date = _snapshot(small).astimezone(NEW_YORK).date()
    result = fastgex.profile(small, buckets="default", views=ALL_VIEWS, n_levels=15)
    names = set(result.table.column("bucket").to_pylist())
    assert names == set(ALL_VIEWS) | set(DEFAULT_BUCKETS)
    next_expiry = _next_live_expiry(small)
    next_monthly = _next_live_expiry(small, monthly=True)
    selections = {
        "all": lambda row: True,
        "ex_next_expiry": lambda row: row["expiration"] != next_expiry,
        "ex_next_monthly": lambda row: row["expiration"] != next_monthly,
    }
    for name in DEFAULT_BUCKETS:
        selections[name] = lambda row, name=name: (
            expiry_buckets([row["expiration"]], snapshot_date)[0] == name
        )
    for name, keep in selections.items():
        levels, totals = result.array("SPX", name)
        exact, magnitude = _oracle_profile(_oracle_rows(small, keep=keep), levels)
        _assert_profile_matches(totals, exact, magnitude)


# --------------------------------------------------------------------------- 2. ratio 1


@pytest.mark.parametrize("variant", ["plain", "dealer_position", "forward", "carry"])
@pytest.mark.parametrize("unit", ["dollars_per_1pct", "shares_per_dollar"])
def test_profile_at_spot_equals_gex_total(small, variant, unit):
    table = {
        "plain": small,
        "dealer_position": _with_dealer_position(small),
        "forward": _with_forward(small),
        "carry": _with_carry_columns(small),
    }[variant]
    options = {"unit": unit, "rate": 0.02} if variant != "carry" else {"unit": unit}
    gex_result = fastgex.gex(table, **options)
    row = gex_result.by_underlying.to_pylist()[0]
    _, at_spot = fastgex.profile(table, level_list=[SPOT], **options).array("SPX")
    # 1e-12 relative; the totals here are far from zero (|total| > 1% of the magnitude).
    assert abs(row["total_gex"]) > 0.01 * _magnitude(row)
    assert at_spot[0] == pytest.approx(row["total_gex"], rel=1e-12, abs=0.0)


def test_profile_at_spot_equals_level_totals_per_bucket(chain, full_levels):
    at_spot = fastgex.profile(chain, level_list=[SPOT], buckets="default", views=ALL_VIEWS)
    for (name, bucket), row in _rows_by_key(full_levels.levels).items():
        _, value = _profile_of(at_spot, name, bucket)
        assert _close(value[0], row["total_gex"], _magnitude(row)), (bucket, value, row)


# --------------------------------------------------------------------------- 3. buckets


def test_levels_all_matches_gex(chain, full_levels):
    plain = fastgex.gex(chain)
    expected = plain.by_underlying.to_pylist()[0]
    row = _rows_by_key(full_levels.levels)[("SPX", "all")]
    for column in ("total_gex", "call_gex", "put_gex"):
        assert _close(row[column], expected[column], _magnitude(row)), column
    assert row["contracts"] == expected["contracts"] == chain.num_rows
    ours = _strikes_of(full_levels, "SPX", "all")
    theirs = plain.by_strike.to_pandas()
    np.testing.assert_array_equal(ours["strike"], theirs["strike"])
    scale = 1e-12 * _magnitude(row)
    for column in ("call_gex", "put_gex", "net_gex", "cumulative_net_gex"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=0, atol=scale)
    np.testing.assert_array_equal(ours["contracts"], theirs["contracts"])


def test_bucket_totals_sum_to_all(full_levels):
    rows = _rows_by_key(full_levels.levels)
    everything = rows[("SPX", "all")]
    buckets = [row for (_, name), row in rows.items() if name not in VIEWS]
    assert [row["bucket"] for row in buckets] == list(DEFAULT_BUCKETS)
    scale = _magnitude(everything)
    for column in ("total_gex", "call_gex", "put_gex"):
        summed = math.fsum(row[column] for row in buckets)
        assert _close(summed, everything[column], scale), column
    assert sum(row["contracts"] for row in buckets) == everything["contracts"]


def test_bucket_profiles_sum_to_all(full_levels):
    levels_all, profile_all = _profile_of(full_levels, "SPX", "all")
    summed = np.zeros_like(profile_all)
    for name in DEFAULT_BUCKETS:
        levels, values = _profile_of(full_levels, "SPX", name)
        np.testing.assert_array_equal(levels, levels_all)
        summed += values
    scale = np.max(np.abs(profile_all))
    np.testing.assert_allclose(summed, profile_all, rtol=0, atol=1e-12 * scale)


def test_bucket_strike_tables_sum_to_all(full_levels):
    everything = _strikes_of(full_levels, "SPX", "all").set_index("strike")
    parts = pd.concat(
        [_strikes_of(full_levels, "SPX", name) for name in DEFAULT_BUCKETS], ignore_index=True
    )
    summed = parts.groupby("strike").sum(numeric_only=True)
    assert list(summed.index) == list(everything.index)
    scale = 1e-12 * float(
        np.abs(everything["call_gex"]).sum() + np.abs(everything["put_gex"]).sum()
    )
    for column in ("call_gex", "put_gex", "net_gex"):
        np.testing.assert_allclose(summed[column], everything[column], rtol=0, atol=scale)
    for column in ("call_open_interest", "put_open_interest", "contracts"):
        np.testing.assert_array_equal(summed[column], everything[column])
    # cumulative_net_gex is the running sum of net_gex within each bucket
    for name in (*DEFAULT_BUCKETS, *ALL_VIEWS):
        table = _strikes_of(full_levels, "SPX", name)
        assert table["strike"].is_monotonic_increasing and table["strike"].is_unique
        np.testing.assert_allclose(
            table["cumulative_net_gex"], np.cumsum(table["net_gex"]), rtol=0, atol=scale
        )


@pytest.mark.parametrize("view", ["ex_next_expiry", "ex_next_monthly"])
def test_views_exclude_the_next_expiry(chain, full_levels, view):
    excluded = _next_live_expiry(chain, monthly=view == "ex_next_monthly")
    assert excluded == (dt.date(2024, 1, 8) if view == "ex_next_expiry" else dt.date(2024, 1, 19))
    rows = _rows_by_key(full_levels.levels)
    everything, row = rows[("SPX", "all")], rows[("SPX", view)]
    only = fastgex.gex(_filter_expiry(chain, lambda day: day == excluded))
    others = _filter_expiry(chain, lambda day: day != excluded)
    scale = _magnitude(everything)
    assert _close(row["total_gex"], everything["total_gex"] - only.total("SPX"), scale)
    assert _close(row["total_gex"], fastgex.gex(others).total("SPX"), scale)
    assert row["contracts"] == others.num_rows
    # The view's profile is the profile of the chain without that expiry.
    _, values = _profile_of(full_levels, "SPX", view)
    _, expected = fastgex.profile(others).array("SPX")
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12 * np.max(np.abs(expected)))


def test_user_edge_buckets(chain):
    snapshot_date = _snapshot(chain).astimezone(NEW_YORK).date()
    result = fastgex.levels(chain, buckets={"short": 7, "long": math.inf})
    rows = _rows_by_key(result.levels)
    assert [bucket for _, bucket in rows] == ["all", "short", "long"]
    short = _filter_expiry(chain, lambda day: (day - snapshot_date).days <= 7)
    assert rows[("SPX", "short")]["contracts"] == short.num_rows
    scale = _magnitude(rows[("SPX", "all")])
    assert _close(rows[("SPX", "short")]["total_gex"], fastgex.gex(short).total("SPX"), scale)
    summed = rows[("SPX", "short")]["total_gex"] + rows[("SPX", "long")]["total_gex"]
    assert _close(summed, rows[("SPX", "all")]["total_gex"], scale)
    # Edges that stop short: expiries beyond the last edge are in no bucket.
    capped = fastgex.levels(chain, buckets={"short": 7, "mid": 30})
    capped_rows = _rows_by_key(capped.levels)
    within = _filter_expiry(chain, lambda day: (day - snapshot_date).days <= 30)
    summed = capped_rows[("SPX", "short")]["total_gex"] + capped_rows[("SPX", "mid")]["total_gex"]
    assert _close(summed, fastgex.gex(within).total("SPX"), scale)
    assert (
        capped_rows[("SPX", "short")]["contracts"] + capped_rows[("SPX", "mid")]["contracts"]
        == within.num_rows
    )


def test_ex_next_expiry_after_the_close_excludes_the_next_live_expiry(chain):
    after_close = dt.datetime(2024, 1, 8, 16, 30, tzinfo=NEW_YORK)
    result = fastgex.levels(chain, snapshot_time=after_close, views=("all", "ex_next_expiry"))
    rows = _rows_by_key(result.levels)
    # 2024-01-08 settled at 16:00: its rows are expired; the next live expiry is 2024-01-09.
    assert result.gex.dropped.to_pylist() == [
        {"underlying": "SPX", "reason": "expired", "count": 188}
    ]
    survivors = _filter_expiry(chain, lambda day: day > dt.date(2024, 1, 9))
    expected = fastgex.gex(survivors, snapshot_time=after_close).total("SPX")
    row = rows[("SPX", "ex_next_expiry")]
    assert row["contracts"] == survivors.num_rows
    assert _close(row["total_gex"], expected, _magnitude(rows[("SPX", "all")]))


# --------------------------------------------------------------------------- 4. zero gamma


def _hand_crossings(positions, values) -> list[float]:
    """Sign changes between consecutive nonzero values: linear interpolation between
    neighbours, else the middle of the run of exact zeros between them."""
    out = []
    last = None
    for index, value in enumerate(values):
        if value == 0.0:
            continue
        if last is not None and (values[last] < 0) != (value < 0):
            if last == index - 1:
                weight = values[last] / (values[last] - value)
                out.append(positions[last] + weight * (positions[index] - positions[last]))
            else:
                out.append(0.5 * (positions[last + 1] + positions[index - 1]))
        last = index
    return out


def _check_zero_gamma(chain, result: fastgex.LevelsResult, **options) -> None:
    """Every zero gamma crossing is a root of the profile inside its grid bracket."""
    crossings = result.crossings.to_pylist()
    zero = [item for item in crossings if item["kind"] == "zero_gamma"]
    roots = sorted({item["value"] for item in zero})
    at_roots = (
        fastgex.profile(chain, level_list=roots, **options) if roots else None
    )  # one call evaluates every root of every bucket
    for item in zero:
        grid, values = _profile_of(result, item["underlying"], item["bucket"])
        scale = np.max(np.abs(values))
        _, root_values = _profile_of(at_roots, item["underlying"], item["bucket"])
        value = root_values[roots.index(item["value"])]
        assert abs(value) <= 1e-9 * scale, (item, value, scale)
        # the grid value is the hand interpolation of a sign change of the grid profile
        hand = _hand_crossings(grid, values)
        assert any(abs(h - item["grid_value"]) <= 1e-12 * abs(h) for h in hand), (item, hand)
        right = int(np.searchsorted(grid, item["grid_value"], side="left"))
        lower, upper = grid[max(right - 1, 0)], grid[min(right, grid.size - 1)]
        assert lower <= item["value"] <= upper, (item, lower, upper)
    for (name, bucket), row in _rows_by_key(result.levels).items():
        grid, values = _profile_of(result, name, bucket)
        hand = _hand_crossings(grid, values)
        mine = [item for item in zero if item["underlying"] == name and item["bucket"] == bucket]
        assert len(mine) == len(hand)
        np.testing.assert_allclose([item["grid_value"] for item in mine], hand, rtol=1e-12)
        if not mine:
            assert row["zero_gamma"] is None and row["zero_gamma_grid"] is None
            assert row["zero_gamma_reason"]
            continue
        nearest = min(mine, key=lambda item: abs(item["value"] - row["spot"]))
        assert row["zero_gamma"] == nearest["value"]
        assert row["zero_gamma_grid"] == nearest["grid_value"]
        assert row["zero_gamma_reason"] is None
        assert [item["primary"] for item in mine] == [item is nearest for item in mine]
        assert [item["value"] for item in mine] == sorted(item["value"] for item in mine)


def test_zero_gamma_crossings_are_roots(chain, full_levels):
    assert full_levels.crossings.num_rows > 0
    _check_zero_gamma(chain, full_levels, buckets="default", views=ALL_VIEWS)


def test_zero_gamma_roots_are_roots_of_the_oracle(small):
    result = fastgex.levels(small, rate=0.02, dividend_yield=0.01)
    zero = [row for row in result.crossings.to_pylist() if row["kind"] == "zero_gamma"]
    assert zero
    rows = _oracle_rows(small, rate=0.02, dividend_yield=0.01)
    for item in zero:
        value, magnitude = _oracle_at(rows, item["value"], "dollars_per_1pct")
        assert abs(value) <= 1e-9 * magnitude, (item, value, magnitude)


def _check_flips(result: fastgex.LevelsResult) -> None:
    flips = [row for row in result.crossings.to_pylist() if row["kind"] == "flip_strike"]
    for (name, bucket), row in _rows_by_key(result.levels).items():
        table = _strikes_of(result, name, bucket)
        hand = _hand_crossings(table["strike"].to_numpy(), table["cumulative_net_gex"].to_numpy())
        mine = [item for item in flips if item["underlying"] == name and item["bucket"] == bucket]
        assert len(mine) == len(hand), (bucket, mine, hand)
        np.testing.assert_allclose([item["value"] for item in mine], hand, rtol=1e-12)
        assert all(item["grid_value"] is None for item in mine)
        if not hand:
            assert row["flip_strike"] is None and row["flip_strike_reason"]
            continue
        nearest = min(hand, key=lambda value: abs(value - row["spot"]))
        assert row["flip_strike"] == pytest.approx(nearest, rel=1e-12)
        assert row["flip_strike_reason"] is None
        assert sum(item["primary"] for item in mine) == 1


def test_flip_strikes_match_hand_computation(full_levels):
    _check_flips(full_levels)


def test_flip_strike_on_a_hand_built_chain():
    """Three strikes, gamma from the reference: the flip is the hand interpolation."""
    snapshot = DEFAULT_SNAPSHOT
    expiry = dt.date(2024, 2, 16)
    rows = [  # strike, type, open interest
        (90.0, "P", 1000.0),
        (100.0, "C", 300.0),
        (100.0, "P", 100.0),
        (110.0, "C", 2000.0),
    ]
    table = pa.table(
        {
            "underlying": ["X"] * 4,
            "strike": [r[0] for r in rows],
            "option_type": [r[1] for r in rows],
            "expiration": pa.array([expiry] * 4, pa.date32()),
            "open_interest": [r[2] for r in rows],
            "implied_vol": [0.25] * 4,
            "spot": [100.0] * 4,
            "snapshot_time": pa.array([snapshot] * 4, pa.timestamp("us", tz="UTC")),
        }
    )
    years = _years(expiry, snapshot)
    net: dict[float, float] = {}
    for strike, kind, oi in rows:
        sign = -1.0 if kind == "C" else 1.0  # short calls, long puts
        gamma = reference.bsm_gamma(100.0, strike, 0.25, years)
        net[strike] = net.get(strike, 0.0) + reference.contract_gex(gamma, sign * oi, 100.0, 100.0)
    strikes = sorted(net)
    cumulative = np.cumsum([net[k] for k in strikes])
    assert cumulative[0] > 0 and cumulative[-1] < 0
    i = int(np.flatnonzero(np.sign(cumulative[:-1]) != np.sign(cumulative[1:]))[0])
    expected = strikes[i] + cumulative[i] / (cumulative[i] - cumulative[i + 1]) * (
        strikes[i + 1] - strikes[i]
    )
    result = fastgex.levels(table)
    row = result.levels.to_pylist()[0]
    assert row["flip_strike"] == pytest.approx(expected, rel=1e-12)
    assert strikes[i] < row["flip_strike"] < strikes[i + 1]
    strike_rows = result.by_strike.to_pylist()
    assert [r["strike"] for r in strike_rows] == strikes
    for item, strike in zip(strike_rows, strikes, strict=True):
        assert item["net_gex"] == pytest.approx(net[strike], rel=1e-12)


# --------------------------------------------------------------------------- 5. strikes


def _expected_strike_levels(table: pd.DataFrame, spot: float, relative: bool, count: int):
    """Key strike, walls, absolute gamma strike and OI clusters, the obvious way."""
    if table.empty:
        return dict.fromkeys(
            ("key_gamma_strike", "key_gamma_gex", "call_wall", "put_wall", "absolute_gamma_strike")
        ) | {"top_call_oi_strikes": [], "top_put_oi_strikes": []}
    calls = table if not relative else table[table["strike"] >= spot]
    puts = table if not relative else table[table["strike"] <= spot]
    key = table["net_gex"].abs().idxmax()  # first (lowest strike) on ties

    def top(column: str) -> list[float]:
        positive = table[table[column] > 0]
        return positive.nlargest(count, column, keep="first")["strike"].tolist()

    return {
        "key_gamma_strike": table.loc[key, "strike"],
        "key_gamma_gex": table.loc[key, "net_gex"],
        "call_wall": calls.loc[calls["call_gex"].abs().idxmax(), "strike"] if len(calls) else None,
        "put_wall": puts.loc[puts["put_gex"].abs().idxmax(), "strike"] if len(puts) else None,
        "absolute_gamma_strike": table.loc[
            (table["call_gex"].abs() + table["put_gex"].abs()).idxmax(), "strike"
        ],
        "top_call_oi_strikes": top("call_open_interest"),
        "top_put_oi_strikes": top("put_open_interest"),
    }


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("count", [3, 5])
def test_strike_levels_match_pandas(chain, full_levels, relative, count):
    result = (
        full_levels
        if not relative and count == 3
        else fastgex.levels(
            chain,
            buckets="default",
            views=ALL_VIEWS,
            walls_relative_to_spot=relative,
            oi_cluster_count=count,
        )
    )
    for (name, bucket), row in _rows_by_key(result.levels).items():
        table = _strikes_of(result, name, bucket)
        expected = _expected_strike_levels(table, row["spot"], relative, count)
        for key, value in expected.items():
            assert row[key] == value, (bucket, key, row[key], value)
        if relative:
            assert row["call_wall"] is None or row["call_wall"] >= row["spot"]
            assert row["put_wall"] is None or row["put_wall"] <= row["spot"]


def test_open_interest_per_strike_matches_the_chain(chain, full_levels):
    frame = chain.to_pandas()
    sums = frame.pivot_table(
        index="strike", columns="option_type", values="open_interest", aggfunc="sum", fill_value=0
    )
    table = _strikes_of(full_levels, "SPX", "all").set_index("strike")
    np.testing.assert_array_equal(table["call_open_interest"], sums.loc[table.index, "C"])
    np.testing.assert_array_equal(table["put_open_interest"], sums.loc[table.index, "P"])
    counts = frame.groupby("strike").size()
    np.testing.assert_array_equal(table["contracts"], counts.loc[table.index])
    row = _rows_by_key(full_levels.levels)[("SPX", "all")]
    calls = sums["C"][sums["C"] > 0].sort_values(ascending=False, kind="stable")
    assert row["top_call_oi_strikes"] == calls.index[:3].tolist()
    puts = sums["P"][sums["P"] > 0].sort_values(ascending=False, kind="stable")
    assert row["top_put_oi_strikes"] == puts.index[:3].tolist()


def test_oi_cluster_count_zero_and_negative(small):
    row = fastgex.levels(small, oi_cluster_count=0).levels.to_pylist()[0]
    assert row["top_call_oi_strikes"] == [] and row["top_put_oi_strikes"] == []
    with pytest.raises(ValueError, match="oi_cluster_count"):
        fastgex.levels(small, oi_cluster_count=-1)


# --------------------------------------------------------------------------- 6. real data


REAL_FILES = [
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


def _assert_presentable(result: fastgex.LevelsResult) -> None:
    """No NaN presented as a number: finite or null, and a null level has a reason."""
    for row in result.levels.to_pylist():
        for column in LEVEL_FLOATS:
            value = row[column]
            assert value is None or math.isfinite(value), (row["bucket"], column, value)
        assert (row["zero_gamma"] is None) == (row["zero_gamma_reason"] is not None)
        assert (row["zero_gamma"] is None) == (row["zero_gamma_grid"] is None)
        assert (row["flip_strike"] is None) == (row["flip_strike_reason"] is not None)
        if row["contracts"]:
            assert row["total_gex"] is not None
            # A strike level exists where there is gamma; with none (all OI zero) it is null.
            has_gamma = bool(row["call_gex"] or row["put_gex"])
            assert (row["absolute_gamma_strike"] is not None) == has_gamma, row["bucket"]
        else:
            assert row["total_gex"] == 0.0
            assert row["zero_gamma_reason"] == row["flip_strike_reason"] == "no valid contracts"
        for strikes in (row["top_call_oi_strikes"], row["top_put_oi_strikes"]):
            assert all(math.isfinite(value) for value in strikes)
    for table, columns in (
        (result.profile, ("level", "ratio", "total_gex")),
        (result.crossings, ("value",)),
        (result.by_strike, ("strike", "call_gex", "put_gex", "net_gex", "cumulative_net_gex")),
    ):
        for column in columns:
            values = table.column(column).to_numpy()
            assert np.all(np.isfinite(values)), column
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.realdata
def test_real_spx_zero_gamma_matches_the_published_level(chains_dir):
    """phammings' SPX 2024-01-07 chain: the public script's zero gamma is about 4734."""
    chain = read_cboe(chains_dir / "phammings_spx_quotedata_2024-01-07.csv")
    result = fastgex.levels(chain, day_count="bus262")
    row = result.levels.to_pylist()[0]
    assert result.settings["levels"] == 60
    assert abs(row["zero_gamma_grid"] - 4734.0) <= 3.0, row["zero_gamma_grid"]
    assert abs(row["zero_gamma"] - 4734.0) <= 3.0, row["zero_gamma"]
    _assert_presentable(result)


@pytest.mark.realdata
def test_real_file_list_is_complete(chains_dir):
    present = {path.name for path in chains_dir.glob("*_quotedata_*.csv")}
    present |= {path.name for path in chains_dir.glob("*.json")}
    assert present == set(REAL_FILES)


@pytest.mark.realdata
@pytest.mark.parametrize("name", REAL_FILES)
def test_every_real_chain_levels_end_to_end(chains_dir, name):
    chain = read_cboe(chains_dir / name)
    result = fastgex.levels(chain, buckets="default", views=ALL_VIEWS)
    _assert_presentable(result)
    rows = _rows_by_key(result.levels)
    (underlying,) = {key[0] for key in rows}
    everything = rows[(underlying, "all")]
    assert everything["contracts"] > 0
    buckets = [row for (_, bucket), row in rows.items() if bucket not in VIEWS]
    assert sum(row["contracts"] for row in buckets) == everything["contracts"]
    summed = math.fsum(row["total_gex"] for row in buckets)
    assert _close(summed, everything["total_gex"], _magnitude(everything))
    _check_zero_gamma(chain, result, buckets="default", views=ALL_VIEWS)
    _check_flips(result)


@pytest.mark.realdata
def test_real_chain_after_the_close_ex_next_expiry(chains_dir):
    chain = read_cboe(chains_dir / "carlos_spx_quotedata_2023-09-14.csv")
    rows = _rows_by_key(fastgex.levels(chain, views=("all", "ex_next_expiry")).levels)
    nxt = fastgex.gex(_filter_expiry(chain, lambda day: day == dt.date(2023, 9, 15)))
    next_contracts = nxt.by_underlying.column("contracts")[0].as_py()
    assert next_contracts > 0
    expected = rows[("SPX", "all")]["contracts"] - next_contracts
    assert rows[("SPX", "ex_next_expiry")]["contracts"] == expected


# --------------------------------------------------------------------------- 7. bad input


def _one_row(**overrides) -> dict:
    row = {
        "underlying": "X",
        "strike": 100.0,
        "option_type": "C",
        "expiration": dt.date(2024, 2, 16),
        "open_interest": 100.0,
        "implied_vol": 0.2,
        "spot": 100.0,
        "snapshot_time": DEFAULT_SNAPSHOT,
    }
    row.update(overrides)
    return row


def _table(rows: list[dict]) -> pa.Table:
    schema = pa.schema(
        [
            ("underlying", pa.string()),
            ("strike", pa.float64()),
            ("option_type", pa.string()),
            ("expiration", pa.date32()),
            ("open_interest", pa.float64()),
            ("implied_vol", pa.float64()),
            ("spot", pa.float64()),
            ("snapshot_time", pa.timestamp("us", tz="UTC")),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def test_one_strike(chain):
    table = chain.filter(pc.equal(chain.column("strike"), SPOT))
    result = fastgex.levels(table, buckets="default", views=ALL_VIEWS)
    _assert_presentable(result)
    for row in result.levels.to_pylist():
        assert row["flip_strike"] is None  # one strike: cumulative net cannot cross zero
        if row["contracts"]:
            assert row["key_gamma_strike"] == row["absolute_gamma_strike"] == SPOT


@pytest.mark.parametrize("side", ["C", "P"])
def test_only_one_side(chain, side):
    table = chain.filter(pc.equal(chain.column("option_type"), side))
    result = fastgex.levels(table, buckets="default")
    _assert_presentable(result)
    for row in result.levels.to_pylist():
        # one sign everywhere: no flip, no zero gamma
        assert row["flip_strike"] is None and row["zero_gamma"] is None
        assert (row["total_gex"] < 0) == (side == "C")
        assert row["put_gex" if side == "C" else "call_gex"] == 0.0


@pytest.mark.parametrize("side", ["C", "P"])
def test_wall_of_a_missing_side_is_null(chain, side):
    table = chain.filter(pc.equal(chain.column("option_type"), side))
    row = fastgex.levels(table).levels.to_pylist()[0]
    missing = "put_wall" if side == "C" else "call_wall"
    assert row[missing] is None, (missing, row[missing])


def test_all_zero_open_interest(chain):
    zero = pa.array(np.zeros(chain.num_rows))
    table = chain.set_column(chain.schema.get_field_index("open_interest"), "open_interest", zero)
    result = fastgex.levels(table, buckets="default", views=ALL_VIEWS)
    _assert_presentable(result)
    assert np.all(result.profile.column("total_gex").to_numpy() == 0.0)
    assert result.crossings.num_rows == 0
    for row in result.levels.to_pylist():
        assert row["total_gex"] == 0.0
        assert row["zero_gamma"] is None and row["flip_strike"] is None
        assert row["top_call_oi_strikes"] == [] and row["top_put_oi_strikes"] == []


def test_all_zero_open_interest_has_no_key_strikes(chain):
    zero = pa.array(np.zeros(chain.num_rows))
    table = chain.set_column(chain.schema.get_field_index("open_interest"), "open_interest", zero)
    row = fastgex.levels(table).levels.to_pylist()[0]
    for column in ("key_gamma_strike", "call_wall", "put_wall", "absolute_gamma_strike"):
        assert row[column] is None, (column, row[column])


def test_underlying_without_valid_contracts_next_to_a_good_one(chain):
    good = chain.slice(0, 3000)
    bad = _table([_one_row(underlying="BAD", implied_vol=0.0, strike=float(k)) for k in (90, 100)])
    both = pa.concat_tables([good.select(bad.column_names), bad])
    result = fastgex.levels(both, buckets="default", views=ALL_VIEWS)
    _assert_presentable(result)
    rows = _rows_by_key(result.levels)
    targets = [bucket for name, bucket in rows if name == "SPX"]
    assert [bucket for name, bucket in rows if name == "BAD"] == targets
    for (name, _), row in rows.items():
        if name == "BAD":
            assert row["contracts"] == 0 and row["total_gex"] == 0.0
            assert row["zero_gamma"] is None and row["key_gamma_strike"] is None
            assert row["regime"] is None
    _, values = _profile_of(result, "BAD", "all")
    assert np.all(values == 0.0)
    alone = _rows_by_key(fastgex.levels(good, buckets="default", views=ALL_VIEWS).levels)
    for key, row in alone.items():
        for column in LEVEL_FLOATS:
            assert rows[key][column] == row[column], (key, column)


def _time_to_expiry_chain(table: pa.Table) -> pa.Table:
    """The same chain with time_to_expiry (years, computed here) instead of dates."""
    snapshot = _snapshot(table)
    years = [_years(day, snapshot) for day in table.column("expiration").to_pylist()]
    return table.drop_columns(["expiration", "snapshot_time"]).append_column(
        "time_to_expiry", pa.array(years, pa.float64())
    )


@pytest.mark.parametrize(
    ("call", "options"),
    [
        ("profile", {}),
        ("levels", {}),
        ("levels", {"buckets": "default", "views": ALL_VIEWS}),
    ],
)
def test_empty_chain_with_dates(small, call, options):
    result = getattr(fastgex, call)(small.slice(0, 0), **options)
    table = result.levels if call == "levels" else result.table
    assert table.num_rows == 0


def test_empty_chain_profile(small):
    result = fastgex.profile(_time_to_expiry_chain(small).slice(0, 0))
    assert result.table.num_rows == 0
    assert result.table.column_names == ["underlying", "bucket", "level", "ratio", "total_gex"]


def test_empty_chain_levels(small):
    result = fastgex.levels(_time_to_expiry_chain(small).slice(0, 0))
    assert result.levels.num_rows == 0
    assert result.crossings.num_rows == 0 and result.by_strike.num_rows == 0


def test_chain_with_only_time_to_expiry(small):
    """Without dates: no surface by expiry, and the same levels as the dated chain."""
    result = fastgex.levels(_time_to_expiry_chain(small))
    dated = fastgex.levels(small)
    assert result.by_strike_expiry is None
    with pytest.raises(ValueError, match="expiration"):
        result.surface("SPX", by="expiry")
    ours, theirs = result.levels.to_pylist()[0], dated.levels.to_pylist()[0]
    for column in ("total_gex", "zero_gamma", "zero_gamma_grid", "flip_strike"):
        assert ours[column] == pytest.approx(theirs[column], rel=1e-9), column
    for column in ("key_gamma_strike", "call_wall", "put_wall", "absolute_gamma_strike"):
        assert ours[column] == theirs[column], column
    levels, totals = _profile_of(result, "SPX", "all")
    exact, magnitude = _oracle_profile(_oracle_rows(small), levels)
    _assert_profile_matches(totals, exact, magnitude)


@pytest.mark.parametrize("options", [{"buckets": "default"}, {"views": ("all", "ex_next_expiry")}])
@pytest.mark.parametrize("call", ["levels", "profile"])
def test_buckets_need_expiration_dates(small, options, call):
    with pytest.raises(fastgex.ChainError, match="expiration"):
        getattr(fastgex, call)(_time_to_expiry_chain(small), **options)


def test_duplicate_rows_aggregate(small):
    doubled = pa.concat_tables([small, small])
    once = fastgex.levels(small, buckets="default")
    twice = fastgex.levels(doubled, buckets="default")
    rows_once, rows_twice = _rows_by_key(once.levels), _rows_by_key(twice.levels)
    assert rows_once.keys() == rows_twice.keys()
    for key, row in rows_once.items():
        other = rows_twice[key]
        assert other["contracts"] == 2 * row["contracts"]
        for column in ("total_gex", "call_gex", "put_gex"):
            assert _close(other[column], 2 * row[column], 2 * _magnitude(row)), column
        for column in ("key_gamma_strike", "call_wall", "put_wall", "absolute_gamma_strike"):
            assert other[column] == row[column]
        assert other["top_call_oi_strikes"] == row["top_call_oi_strikes"]
        for column in ("zero_gamma", "flip_strike"):
            assert (other[column] is None) == (row[column] is None)
            if row[column] is not None:
                assert other[column] == pytest.approx(row[column], rel=1e-9)
    a, b = once.by_strike.to_pandas(), twice.by_strike.to_pandas()
    assert a["strike"].tolist() == b["strike"].tolist()
    np.testing.assert_array_equal(2 * a["call_open_interest"], b["call_open_interest"])
    np.testing.assert_array_equal(2 * a["contracts"], b["contracts"])
    np.testing.assert_allclose(2 * a["net_gex"], b["net_gex"], rtol=1e-12, atol=1e-3)
    p1 = once.profile.column("total_gex").to_numpy()
    p2 = twice.profile.column("total_gex").to_numpy()
    np.testing.assert_allclose(p2, 2 * p1, rtol=0, atol=1e-12 * np.max(np.abs(p1)))


def test_repeated_strikes_in_one_expiry_aggregate():
    rows = [
        _one_row(strike=100.0, option_type="C", open_interest=10.0),
        _one_row(strike=100.0, option_type="C", open_interest=30.0),
        _one_row(strike=100.0, option_type="P", open_interest=5.0),
        _one_row(strike=105.0, option_type="P", open_interest=7.0),
    ]
    merged = [
        _one_row(strike=100.0, option_type="C", open_interest=40.0),
        _one_row(strike=100.0, option_type="P", open_interest=5.0),
        _one_row(strike=105.0, option_type="P", open_interest=7.0),
    ]
    a = fastgex.levels(_table(rows))
    b = fastgex.levels(_table(merged))
    assert a.by_strike.column("strike").to_pylist() == [100.0, 105.0]
    assert a.by_strike.column("call_open_interest").to_pylist() == [40.0, 0.0]
    assert a.by_strike.column("contracts").to_pylist() == [3, 1]
    np.testing.assert_allclose(
        a.by_strike.column("net_gex").to_numpy(),
        b.by_strike.column("net_gex").to_numpy(),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        a.profile.column("total_gex").to_numpy(),
        b.profile.column("total_gex").to_numpy(),
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"level_range": (1.2, 0.8)}, "level_range"),
        ({"level_range": (1.0, 1.0)}, "level_range"),
        ({"level_range": (0.0, 1.2)}, "level_range"),
        ({"level_range": (0.8, math.nan)}, "level_range"),
        ({"level_range": (0.8, math.inf)}, "level_range"),
        ({"n_levels": 1}, "n_levels"),
        ({"n_levels": 0}, "n_levels"),
        ({"n_levels": 2.5}, "n_levels"),
        ({"level_list": [4800.0, 4700.0]}, "ascending"),
        ({"level_list": [4700.0, 4700.0]}, "ascending"),
        ({"level_list": []}, "level_list"),
        ({"level_list": [-1.0, 4700.0]}, "level_list"),
        ({"level_list": [4700.0, math.nan]}, "level_list"),
        ({"gamma_source": "column"}, "model"),
        ({"vol_model": "sticky_delta"}, "vol_model"),
        ({"views": ("all", "ex_next_week")}, "view"),
        ({"views": ()}, "view"),
    ],
)
@pytest.mark.parametrize("call", ["levels", "profile"])
def test_bad_options_raise_value_error(small, options, message, call):
    with pytest.raises(ValueError, match=message):
        getattr(fastgex, call)(small, **options)


def test_exclude_adds_the_view(small):
    result = fastgex.levels(small, exclude="next-expiry")
    assert result.levels.column("bucket").to_pylist() == ["all", "ex_next_expiry"]
    with pytest.raises(ValueError, match="exclude"):
        fastgex.levels(small, exclude="next-week")
    with pytest.raises(TypeError, match="by_strike"):
        fastgex.levels(small, by_strike=False)


def test_black76_without_spot_with_spot_given(small):
    """A forward-only chain runs; with spot= the grid is spot-based and matches the oracle."""
    table = _with_forward(small).drop_columns(["spot"])
    result = fastgex.levels(table, spot=SPOT, rate=0.01, n_levels=20)
    _assert_presentable(result)
    levels, totals = _profile_of(result, "SPX", "all")
    rows = _oracle_rows(_with_forward(small), rate=0.01)
    exact, magnitude = _oracle_profile(rows, levels)
    _assert_profile_matches(totals, exact, magnitude)


def test_black76_without_spot_is_a_clear_error(small):
    # The profile grid is spot x ratio: without a spot there is no grid to present, so
    # levels() and profile() say so instead of returning NaN levels.
    table = _with_forward(small).drop_columns(["spot"])
    with pytest.raises(fastgex.ChainError, match="spot"):
        fastgex.levels(table)
    with pytest.raises(fastgex.ChainError, match="spot"):
        fastgex.profile(table, level_list=[4600.0, 4700.0, 4800.0])


# --------------------------------------------------------------------------- 8. threads


def test_thread_count_does_not_change_results():
    market = sample_market(150_000, n_underlyings=40)  # > one 65536-row kernel block
    options = {"buckets": "default", "views": ("all", "ex_next_expiry")}
    default = fastgex.levels(market, **options)
    default_profile = fastgex.profile(market, n_levels=33, **options)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = fastgex.levels(market, **options)
        single_profile = fastgex.profile(market, n_levels=33, **options)
    finally:
        numba.set_num_threads(previous)
    assert single.levels.equals(default.levels)
    assert single.crossings.equals(default.crossings)
    assert single.by_strike.equals(default.by_strike)
    for a, b in ((single.profile, default.profile), (single_profile.table, default_profile.table)):
        bits_a = a.column("total_gex").to_numpy().view(np.int64)
        bits_b = b.column("total_gex").to_numpy().view(np.int64)
        np.testing.assert_array_equal(bits_a, bits_b)


# --------------------------------------------------------------------------- 9. surfaces


def test_surface_by_bucket_matches_by_strike(full_levels):
    strikes, columns, matrix = full_levels.surface("SPX", by="bucket")
    assert columns == [*ALL_VIEWS, *DEFAULT_BUCKETS]
    assert np.all(np.diff(strikes) > 0)
    for position, bucket in enumerate(columns):
        table = _strikes_of(full_levels, "SPX", bucket)
        expected = np.zeros(strikes.size)
        expected[np.searchsorted(strikes, table["strike"])] = table["net_gex"]
        np.testing.assert_array_equal(matrix[:, position], expected)
    scale = 1e-12 * np.abs(matrix[:, 0]).sum()
    buckets = [columns.index(name) for name in DEFAULT_BUCKETS]
    np.testing.assert_allclose(matrix[:, buckets].sum(axis=1), matrix[:, 0], atol=scale, rtol=0)


def test_surface_by_expiry_matches_by_strike_expiry(chain, full_levels):
    strikes, expiries, matrix = full_levels.surface("SPX", by="expiry")
    assert expiries == sorted(set(chain.column("expiration").to_pylist()))
    everything = _strikes_of(full_levels, "SPX", "all")
    np.testing.assert_array_equal(strikes, everything["strike"])
    scale = 1e-12 * np.abs(everything["net_gex"]).sum()
    np.testing.assert_allclose(matrix.sum(axis=1), everything["net_gex"], rtol=0, atol=scale)
    long_form = full_levels.by_strike_expiry.to_pandas()
    assert long_form["net_gex"].sum() == pytest.approx(matrix.sum(), rel=1e-12)
    # per expiry: the chain's own GEX for that expiry, and its default bucket
    snapshot_date = _snapshot(chain).astimezone(NEW_YORK).date()
    names = expiry_buckets(expiries, snapshot_date)
    for position, (expiry, name) in enumerate(zip(expiries[:6], names, strict=False)):
        alone = fastgex.gex(_filter_expiry(chain, lambda day, expiry=expiry: day == expiry))
        total = alone.total("SPX")
        assert matrix[:, position].sum() == pytest.approx(total, rel=1e-9)
        assert set(long_form.loc[long_form["expiry"] == expiry, "bucket"]) == {name}
    # per bucket: by_strike_expiry summed over the bucket's expiries is by_strike's bucket
    for bucket in DEFAULT_BUCKETS:
        part = long_form[long_form["bucket"] == bucket].groupby("strike")["net_gex"].sum()
        table = _strikes_of(full_levels, "SPX", bucket).set_index("strike")["net_gex"]
        assert list(part.index) == list(table.index)
        np.testing.assert_allclose(part, table, rtol=0, atol=scale)


def test_profile_surface_matches_profile_table(full_levels):
    levels, buckets, matrix = full_levels.profile_surface("SPX")
    assert buckets == [*ALL_VIEWS, *DEFAULT_BUCKETS]
    assert matrix.shape == (60, len(buckets))
    for position, bucket in enumerate(buckets):
        grid, values = _profile_of(full_levels, "SPX", bucket)
        np.testing.assert_array_equal(levels, grid)
        np.testing.assert_array_equal(matrix[:, position], values)
    with pytest.raises(KeyError):
        full_levels.profile_surface("NOPE")
    with pytest.raises(ValueError, match="by"):
        full_levels.surface("SPX", by="strike")


def test_whole_market_one_row_per_underlying_and_bucket():
    market = sample_market(20_000, n_underlyings=12)
    result = fastgex.levels(market, buckets="default", views=ALL_VIEWS)
    _assert_presentable(result)
    names = sorted({str(name) for name in market.column("underlying").to_pylist()})
    keys = [(row["underlying"], row["bucket"]) for row in result.levels.to_pylist()]
    targets = list(dict.fromkeys(bucket for _, bucket in keys))
    assert targets[:3] == list(ALL_VIEWS)
    assert set(targets[3:]) <= set(DEFAULT_BUCKETS)
    assert keys == [(name, bucket) for name in names for bucket in targets]
    assert Counter(result.profile.column("underlying").to_pylist()) == {
        name: 60 * len(targets) for name in names
    }
    _check_zero_gamma(market, result, buckets="default", views=ALL_VIEWS)
    _check_flips(result)
    # every underlying's levels are those of its own chain run alone
    rows = _rows_by_key(result.levels)
    for name in names[:2] + names[-1:]:
        alone_chain = market.filter(
            pc.equal(pc.cast(market.column("underlying"), pa.string()), name)
        )
        alone = _rows_by_key(fastgex.levels(alone_chain, buckets="default", views=ALL_VIEWS).levels)
        for (_, bucket), row in alone.items():
            mine = rows[(name, bucket)]
            assert mine["contracts"] == row["contracts"]
            assert _close(mine["total_gex"], row["total_gex"], _magnitude(row))
            for column in ("key_gamma_strike", "call_wall", "put_wall", "absolute_gamma_strike"):
                assert mine[column] == row[column], (name, bucket, column)
            for column in ("flip_strike", "zero_gamma"):
                assert (mine[column] is None) == (row[column] is None), (name, bucket, column)
                if row[column] is not None:
                    assert mine[column] == pytest.approx(row[column], rel=1e-9)


# --------------------------------------------------------------------------- properties

DAY_OFFSETS = (0, 1, 2, 4, 8, 11, 39, 70, 400)
STRIKE_RATIOS = (0.7, 0.85, 0.95, 1.0, 1.05, 1.15, 1.3)


@st.composite
def small_chains(draw):
    """A valid one-underlying chain with dates, spot 100, snapshot DEFAULT_SNAPSHOT."""
    n = draw(st.integers(min_value=2, max_value=25))
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(STRIKE_RATIOS),
                st.sampled_from(["C", "P"]),
                st.integers(min_value=0, max_value=50_000),
                st.floats(min_value=0.08, max_value=1.0),
                st.sampled_from(DAY_OFFSETS),
            ),
            min_size=n,
            max_size=n,
        )
    )
    start = dt.date(2024, 1, 8)
    return _table(
        [
            _one_row(
                strike=100.0 * ratio,
                option_type=kind,
                open_interest=float(oi),
                implied_vol=vol,
                expiration=start + dt.timedelta(days=days),
            )
            for ratio, kind, oi, vol, days in rows
        ]
    )


@fixed
@given(table=small_chains(), convention=st.sampled_from(CONVENTIONS))
def test_property_profile_buckets_and_zero_gamma(table, convention):
    result = fastgex.levels(
        table, convention=convention, buckets="default", views=ALL_VIEWS, n_levels=21
    )
    _assert_presentable(result)
    levels, totals = _profile_of(result, "X", "all")
    exact, magnitude = _oracle_profile(_oracle_rows(table, convention=convention), levels)
    _assert_profile_matches(totals, exact, magnitude)
    summed = np.zeros_like(totals)
    for (_, bucket), _row in _rows_by_key(result.levels).items():
        if bucket not in VIEWS:
            summed += _profile_of(result, "X", bucket)[1]
    np.testing.assert_allclose(summed, totals, rtol=0, atol=1e-12 * magnitude.max() + TINY)
    _check_zero_gamma(table, result, convention=convention, buckets="default", views=ALL_VIEWS)
    _check_flips(result)
    rows = _oracle_rows(table, convention=convention)
    for item in result.crossings.to_pylist():
        if item["kind"] == "zero_gamma" and item["bucket"] == "all":
            value, size = _oracle_at(rows, item["value"], "dollars_per_1pct")
            assert abs(value) <= 1e-9 * size + TINY, (item, value, size)
