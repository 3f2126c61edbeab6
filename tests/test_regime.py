"""Regime tools: measure_skew against a scipy oracle, skew_zscore, classify_regime.

The skew oracle solves for the strike whose own-vol delta is exactly 25 (scipy brentq on
a smile known in closed form) and reads the smile there. measure_skew interpolates the
vol linearly in delta between listed strikes, so on a 0.25-wide strike grid (spot 100) it
agrees to within SKEW_TOLERANCE = 1e-5: the interpolation error measured for 10-40 delta
at 20-45 days is 1e-6 to 6e-6 (vol is convex in delta, so the error is one-signed), far
below the 1e-4 (0.01 vol point) that matters in practice.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from zoneinfo import ZoneInfo

import mpmath
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import norm

from fastgex.io.cboe import read_cboe
from fastgex.regime import (
    SKEW_SCHEMA,
    TRIGGERS,
    Regime,
    RegimeThresholds,
    classify_regime,
    measure_skew,
    skew_zscore,
)
from fastgex.sample import sample_chain

SKEW_TOLERANCE = 1e-5
NEW_YORK = ZoneInfo("America/New_York")
fixed = settings(derandomize=True, deadline=None, max_examples=40)
fewer = settings(fixed, max_examples=12)  # each example runs gex on ~2k rows, twice

SPOT = 100.0
STRIKES = np.arange(40.0, 160.0 + 1e-9, 0.25)


def linear_smile(strike, atm: float = 0.20, slope: float = 0.25):
    """Vol falling linearly with strike: puts (low strikes) richer than calls."""
    return atm - slope * (np.asarray(strike) - SPOT) / SPOT


def oracle_wing(years, smile, *, call: bool, rate=0.0, dividend=0.0, target=0.25, forward=None):
    """Vol at the strike whose own-vol |delta| equals ``target`` (scipy as the oracle)."""
    if forward is None:
        forward = SPOT * math.exp((rate - dividend) * years)
        discount = math.exp(-dividend * years)
    else:
        discount = math.exp(-rate * years)

    def excess(strike: float) -> float:
        vol = float(smile(strike))
        root = vol * math.sqrt(years)
        d1 = (math.log(forward / strike) + 0.5 * root * root) / root
        return discount * norm.cdf(d1 if call else -d1) - target

    bounds = (SPOT, STRIKES[-1]) if call else (STRIKES[0], SPOT)
    return float(smile(brentq(excess, *bounds, xtol=1e-13, rtol=1e-15)))


def synthetic_chain(
    days=(20.0, 45.0),
    smile=linear_smile,
    *,
    rate=0.03,
    dividend=0.01,
    underlying="TEST",
    spot=SPOT,
    carry_columns=True,
) -> pa.Table:
    """One call and one put per strike and expiry, vols from ``smile``, years given."""
    rows: dict[str, list] = {
        key: [] for key in ("underlying", "strike", "option_type", "open_interest", "implied_vol")
    }
    rows["time_to_expiry"] = []
    for day in days:
        for strike in STRIKES:
            for side in ("C", "P"):
                rows["underlying"].append(underlying)
                rows["strike"].append(float(strike))
                rows["option_type"].append(side)
                rows["open_interest"].append(10.0)
                rows["implied_vol"].append(float(smile(strike)))
                rows["time_to_expiry"].append(day / 365.0)
    table = pa.table(rows)
    table = table.append_column("spot", pa.array(np.full(table.num_rows, spot)))
    if carry_columns:
        table = table.append_column("rate", pa.array(np.full(table.num_rows, rate)))
        table = table.append_column("dividend_yield", pa.array(np.full(table.num_rows, dividend)))
    return table


def only(table: pa.Table) -> dict:
    assert table.schema == SKEW_SCHEMA
    assert table.num_rows == 1
    return table.to_pylist()[0]


# ---------------------------------------------------------------------------
# measure_skew on synthetic chains
# ---------------------------------------------------------------------------


def test_linear_smile_matches_oracle_at_a_listed_expiry():
    row = only(measure_skew(synthetic_chain(days=(30.0,)), target_days=30.0))
    years = 30.0 / 365.0
    put_iv = oracle_wing(years, linear_smile, call=False, rate=0.03, dividend=0.01)
    call_iv = oracle_wing(years, linear_smile, call=True, rate=0.03, dividend=0.01)
    assert row["method"] == "interpolated"
    assert row["reason"] is None
    assert row["tenor_days"] == pytest.approx(30.0, rel=1e-12)
    assert row["put_iv"] == pytest.approx(put_iv, abs=SKEW_TOLERANCE)
    assert row["call_iv"] == pytest.approx(call_iv, abs=SKEW_TOLERANCE)
    assert row["skew"] == pytest.approx(put_iv - call_iv, abs=SKEW_TOLERANCE)
    assert row["skew"] > 0.015  # a steep smile: puts well above calls
    assert row["skew"] == row["put_iv"] - row["call_iv"]


def test_linear_smile_interpolates_linearly_in_time():
    row = only(measure_skew(synthetic_chain(days=(20.0, 45.0)), target_days=30.0))
    low, high = 20.0 / 365.0, 45.0 / 365.0
    weight = (30.0 - 20.0) / (45.0 - 20.0)
    expected = {}
    for name, call in (("put_iv", False), ("call_iv", True)):
        near = oracle_wing(low, linear_smile, call=call, rate=0.03, dividend=0.01)
        far = oracle_wing(high, linear_smile, call=call, rate=0.03, dividend=0.01)
        expected[name] = near + weight * (far - near)
        assert row[name] == pytest.approx(expected[name], abs=SKEW_TOLERANCE)
    assert row["skew"] == pytest.approx(
        expected["put_iv"] - expected["call_iv"], abs=SKEW_TOLERANCE
    )
    assert row["method"] == "interpolated"
    assert row["tenor_days"] == pytest.approx(30.0, rel=1e-12)


@pytest.mark.parametrize(("target", "used"), [(5.0, 20.0), (100.0, 45.0)])
def test_target_outside_the_expiries_uses_the_nearest(target, used):
    row = only(measure_skew(synthetic_chain(days=(20.0, 45.0)), target_days=target))
    years = used / 365.0
    expected = oracle_wing(years, linear_smile, call=False, rate=0.03, dividend=0.01)
    expected -= oracle_wing(years, linear_smile, call=True, rate=0.03, dividend=0.01)
    assert row["method"] == "nearest"
    assert row["tenor_days"] == pytest.approx(used, rel=1e-12)
    assert row["skew"] == pytest.approx(expected, abs=SKEW_TOLERANCE)


@pytest.mark.parametrize("wing", [0.10, 0.25, 0.40])
def test_other_deltas_match_oracle(wing):
    row = only(measure_skew(synthetic_chain(days=(30.0,)), delta=wing))
    years = 30.0 / 365.0
    put_iv = oracle_wing(years, linear_smile, call=False, rate=0.03, dividend=0.01, target=wing)
    call_iv = oracle_wing(years, linear_smile, call=True, rate=0.03, dividend=0.01, target=wing)
    assert row["skew"] == pytest.approx(put_iv - call_iv, abs=SKEW_TOLERANCE)


def test_rate_and_dividend_arguments_match_columns():
    with_columns = measure_skew(synthetic_chain(rate=0.05, dividend=0.02))
    bare = synthetic_chain(carry_columns=False)
    scalar = measure_skew(bare, rate=0.05, dividend_yield=0.02)
    mapping = measure_skew(bare, rate={"TEST": 0.05}, dividend_yield={"TEST": 0.02})
    assert with_columns.equals(scalar)
    assert with_columns.equals(mapping)
    assert not measure_skew(bare).equals(scalar)  # the carry does enter the deltas


def test_black76_forward_column_matches_oracle():
    years = 30.0 / 365.0
    forward = 103.0
    table = synthetic_chain(days=(30.0,), rate=0.04, dividend=0.0)
    table = table.append_column("forward", pa.array(np.full(table.num_rows, forward)))
    row = only(measure_skew(table))
    put_iv = oracle_wing(years, linear_smile, call=False, rate=0.04, forward=forward)
    call_iv = oracle_wing(years, linear_smile, call=True, rate=0.04, forward=forward)
    assert row["skew"] == pytest.approx(put_iv - call_iv, abs=SKEW_TOLERANCE)


def test_flat_smile_has_zero_skew():
    row = only(measure_skew(synthetic_chain(smile=lambda strike: 0.2 + 0.0 * strike)))
    assert abs(row["skew"]) <= 1e-12
    assert row["put_iv"] == pytest.approx(0.2, abs=1e-12)


@fewer
@given(
    vol=st.floats(0.05, 1.5),
    rate=st.floats(-0.01, 0.08),
    dividend=st.floats(0.0, 0.05),
    near=st.floats(3.0, 60.0),
    gap=st.floats(1.0, 200.0),
    target=st.floats(1.0, 400.0),
)
def test_flat_smile_zero_skew_property(vol, rate, dividend, near, gap, target):
    table = synthetic_chain(
        days=(near, near + gap),
        smile=lambda strike: vol + 0.0 * strike,
        rate=rate,
        dividend=dividend,
    )
    row = only(measure_skew(table, target_days=target))
    if row["skew"] is None:  # very wide vols on a short expiry may not reach 25 delta
        assert "bracketed" in row["reason"]
    else:
        assert abs(row["skew"]) <= 1e-12


@fewer
@given(slope=st.floats(-0.3, 0.3), seed=st.integers(0, 2**32 - 1))
def test_sign_follows_slope_and_row_order_does_not_matter(slope, seed):
    table = synthetic_chain(days=(10.0, 40.0), smile=lambda k: linear_smile(k, slope=slope))
    row = only(measure_skew(table))
    if abs(slope) < 1e-9:
        assert abs(row["skew"]) <= 1e-12
    else:
        assert math.copysign(1.0, row["skew"]) == math.copysign(1.0, slope)
    shuffled = table.take(np.random.default_rng(seed).permutation(table.num_rows))
    assert measure_skew(shuffled).equals(measure_skew(table))


def test_unmeasurable_gives_null_with_reason():
    calls_only = synthetic_chain().filter(pc.equal(pc.field("option_type"), "C"))
    row = only(measure_skew(calls_only))
    assert row["skew"] is None and row["put_iv"] is None and row["method"] is None
    assert row["reason"] == "no expiry with both 25-delta sides bracketed"

    table = synthetic_chain()
    no_vol = table.set_column(
        table.column_names.index("implied_vol"),
        "implied_vol",
        pa.array(np.zeros(table.num_rows)),
    )
    result = measure_skew(no_vol)
    row = only(result)
    assert row["skew"] is None and "no rows" in row["reason"]
    assert result.column("skew").null_count == 1  # null, not NaN


def test_narrow_strike_range_cannot_bracket():
    table = synthetic_chain(days=(30.0,))
    near_money = table.filter((pc.field("strike") > 98.0) & (pc.field("strike") < 102.0))
    row = only(measure_skew(near_money, delta=0.10))
    assert row["skew"] is None
    assert row["reason"] == "no expiry with both 10-delta sides bracketed"


def test_skipped_expiry_does_not_count_for_interpolation():
    # The 20-day expiry keeps only near-the-money strikes, so only the 45-day one counts.
    table = synthetic_chain(days=(20.0, 45.0))
    longer = pc.field("time_to_expiry") > 30.0 / 365.0
    near_money = (pc.field("strike") > 99.0) & (pc.field("strike") < 101.0)
    trimmed = table.filter(longer | near_money)
    row = only(measure_skew(trimmed))
    assert row["method"] == "nearest"
    assert row["tenor_days"] == pytest.approx(45.0)


def test_several_underlyings_with_a_spot_mapping():
    first = synthetic_chain(underlying="AAA", carry_columns=False).drop_columns(["spot"])
    second = synthetic_chain(
        underlying="BBB", smile=lambda k: 0.3 + 0.0 * k, carry_columns=False
    ).drop_columns(["spot"])
    result = measure_skew(pa.concat_tables([second, first]), spot={"AAA": SPOT, "BBB": SPOT})
    rows = result.to_pylist()
    assert [row["underlying"] for row in rows] == ["AAA", "BBB"]
    assert rows[0]["skew"] > 0.015
    assert abs(rows[1]["skew"]) <= 1e-12
    alone = only(measure_skew(first, spot=SPOT))
    assert rows[0]["skew"] == alone["skew"]


def test_dropped_rows_are_not_used():
    table = synthetic_chain(days=(30.0,))
    clean = only(measure_skew(table))
    # Negative open interest makes gex drop the row; its absurd vol must not leak in.
    bad = pa.table(
        {
            name: pa.array([value], table.schema.field(name).type)
            for name, value in {
                "underlying": "TEST",
                "strike": 95.0,
                "option_type": "P",
                "open_interest": -1.0,
                "implied_vol": 0.9,
                "time_to_expiry": 30.0 / 365.0,
                "spot": SPOT,
                "rate": 0.03,
                "dividend_yield": 0.01,
            }.items()
        }
    )
    assert only(measure_skew(pa.concat_tables([table, bad]))) == clean


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_days": 0.0},
        {"target_days": -3.0},
        {"target_days": math.nan},
        {"target_days": math.inf},
        {"delta": 0.0},
        {"delta": 1.0},
        {"delta": math.nan},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        measure_skew(synthetic_chain(days=(30.0,)), **kwargs)


# ---------------------------------------------------------------------------
# measure_skew on sample and real chains
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("SPX", 4700.0), {}),
        (("AAPL", 185.0), {"kind": "equity", "atm_vol": 0.25}),
    ],
)
def test_sample_chain_has_positive_skew(args, kwargs):
    row = only(measure_skew(sample_chain(*args, seed=2, **kwargs)))
    assert row["method"] == "interpolated"
    assert 0.0 < row["skew"] < 0.2


def test_tenor_is_in_the_day_counts_days():
    row = only(measure_skew(sample_chain(seed=1), day_count="bus252", target_days=21.0))
    assert row["method"] == "interpolated"
    assert row["tenor_days"] == pytest.approx(21.0)
    assert row["skew"] > 0.0


def _cboe_delta_skew(table: pa.Table) -> float:
    """30-day 25-delta skew from the file's own delta column (a cross-check, not an oracle).

    Same interpolation scheme and clock (16:00 New York settlement), but CBOE's deltas
    (their rate, dividend and time) instead of ours.
    """
    snapshot = table.column("snapshot_time")[0].as_py()
    frame = table.select(["expiration", "option_type", "implied_vol", "delta"]).to_pandas()
    frame = frame[(frame["implied_vol"] > 0) & frame["delta"].notna()]
    wings = []
    for expiry, group in frame.groupby("expiration"):
        settle = dt.datetime.combine(expiry, dt.time(16, 0), NEW_YORK)
        days = (settle - snapshot).total_seconds() / 86_400.0
        if days <= 0:
            continue
        sides = []
        for side in ("P", "C"):
            part = group[group["option_type"] == side]
            part = part.assign(abs_delta=part["delta"].abs()).sort_values(
                ["abs_delta", "implied_vol"]
            )
            values = part["abs_delta"].to_numpy()
            if not (values.size and values[0] < 0.25 < values[-1]):
                break
            sides.append(np.interp(0.25, values, part["implied_vol"].to_numpy()))
        if len(sides) == 2:
            wings.append((days, sides[0] - sides[1]))
    days, skews = np.array(wings).T
    return float(np.interp(30.0, days, skews))


@pytest.mark.realdata
def test_real_cboe_chains(chains_dir: Path):
    paths = sorted(chains_dir.glob("*_quotedata_*.csv"))
    if not paths:
        pytest.skip(f"no *_quotedata_*.csv chains in {chains_dir}")
    for path in paths:
        table = read_cboe(path)
        result = measure_skew(table, day_count="act365")
        assert result.schema == SKEW_SCHEMA
        assert result.num_rows == len(set(table.column("underlying").to_pylist()))
        for row in result.to_pylist():
            if row["skew"] is None:
                assert row["reason"], path.name
                continue
            assert math.isfinite(row["skew"]), path.name
            assert row["reason"] is None
            assert row["method"] in ("interpolated", "nearest")
            # 30-day equity-index risk reversals: a few vol points, puts over calls.
            assert 0.0 < row["skew"] < 0.2, (path.name, row)
            # Same scheme on CBOE's own deltas: measured 0.02-0.36 vol points apart, from
            # their rate and dividend (ours default to 0; with rate=0.053 the 2023-09-14
            # SPX chain agrees to 0.003 vol points).
            assert row["skew"] == pytest.approx(_cboe_delta_skew(table), abs=0.006), path.name


# ---------------------------------------------------------------------------
# skew_zscore
# ---------------------------------------------------------------------------


def test_zscore_matches_numpy():
    history = np.random.default_rng(5).normal(0.05, 0.01, size=300)
    expected = (0.02 - history.mean()) / history.std(ddof=1)
    assert skew_zscore(0.02, history) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "convert",
    [list, tuple, np.asarray, pa.array, pd.Series, lambda values: pa.chunked_array([values])],
)
def test_zscore_accepts_containers(convert):
    history = [float(value) for value in np.linspace(-1.0, 3.0, 41)]
    expected = (1.5 - np.mean(history)) / np.std(history, ddof=1)
    assert skew_zscore(1.5, convert(history)) == pytest.approx(expected, rel=1e-12)


def test_zscore_ignores_missing_values():
    values = np.random.default_rng(7).normal(size=50)
    expected = skew_zscore(0.3, values)
    with_gaps = [*values[:10], None, *values[10:30], math.nan, *values[30:], math.inf]
    assert skew_zscore(0.3, with_gaps) == pytest.approx(expected, rel=1e-14)
    assert skew_zscore(0.3, pa.array(with_gaps[:-1], pa.float64())) == pytest.approx(
        expected, rel=1e-14
    )
    series = pd.Series(with_gaps[:-1], dtype="Float64")  # pd.NA for the gap
    assert skew_zscore(0.3, series) == pytest.approx(expected, rel=1e-14)


def test_zscore_none_cases():
    assert skew_zscore(1.0, np.arange(19.0)) is None  # too short
    assert skew_zscore(1.0, np.arange(20.0)) is not None
    assert skew_zscore(1.0, [*np.arange(19.0), math.nan]) is None  # 19 valid
    assert skew_zscore(1.0, np.arange(5.0), min_history=5) is not None
    assert skew_zscore(1.0, [1.0], min_history=0) is None  # a std needs two values
    assert skew_zscore(1.0, np.full(100, 0.1)) is None  # no spread
    assert skew_zscore(math.nan, np.arange(50.0)) is None
    assert skew_zscore(None, np.arange(50.0)) is None
    assert skew_zscore(1.0, []) is None


# Wide ranges, tiny magnitudes, and nearly equal values (where a naive std cancels).
zscore_bands = st.sampled_from([(-1e300, 1e300), (-1e-300, 1e-300), (1e300, 1.0000000001e300)])


@fixed
@given(
    zscore_bands.flatmap(
        lambda band: st.tuples(
            st.lists(st.floats(*band), min_size=2, max_size=80), st.floats(*band)
        )
    )
)
def test_zscore_property_against_mpmath(case):
    history, current = case
    ours = skew_zscore(current, history, min_history=2)
    if min(history) == max(history):
        assert ours is None
        return
    with mpmath.workdps(60):  # exact enough at any float64 magnitude
        values = [mpmath.mpf(value) for value in history]
        mean = mpmath.fsum(values) / len(values)
        std = mpmath.sqrt(mpmath.fsum((value - mean) ** 2 for value in values) / (len(values) - 1))
        expected = float((mpmath.mpf(current) - mean) / std)
    assert ours == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_zscore_extreme_magnitudes():
    assert skew_zscore(0.0, [0.0, 1e-300, 2e-300], min_history=3) == pytest.approx(-1.0)
    assert skew_zscore(3e300, [-1e300, 0.0, 1e300], min_history=3) == pytest.approx(3.0)
    step = math.ulp(1e300)  # nearly equal values: no cancellation
    assert skew_zscore(1e300, [1e300, 1e300 + step, 1e300 + 2 * step], min_history=3) == -1.0


@pytest.mark.realdata
def test_zscore_on_squeezemetrics_gex(chains_dir: Path):
    path = chains_dir / "nickkxsper_squeezemetrics_dix_gex_2011-2022.csv"
    if not path.exists():
        pytest.skip(f"{path.name} not in {chains_dir}")
    frame = pd.read_csv(path)
    values = frame["gex"]
    current, window = float(values.iloc[-1]), values.iloc[-253:-1]
    assert window.size == 252
    by_pandas = (current - window.mean()) / window.std(ddof=1)
    by_numpy = (current - window.to_numpy().mean()) / window.to_numpy().std(ddof=1)
    ours = skew_zscore(current, window)
    assert ours == pytest.approx(by_pandas, rel=1e-10)
    assert ours == pytest.approx(by_numpy, rel=1e-10)
    assert ours == skew_zscore(current, pa.array(window.to_numpy()))
    assert ours < 0  # the last value (2022-02-18) is negative GEX, below its year


# ---------------------------------------------------------------------------
# classify_regime
# ---------------------------------------------------------------------------


def test_no_trigger_is_long_gamma():
    result = classify_regime(total_gex=1e9, spot=4500.0, flip=4400.0, skew_z=0.5)
    assert result == Regime(
        regime="long_gamma",
        triggers=(),
        total_gex=1e9,
        spot=4500.0,
        flip=4400.0,
        skew_z=0.5,
        evaluated=TRIGGERS,
    )


@pytest.mark.parametrize(
    ("kwargs", "fired"),
    [
        ({"total_gex": -1.0}, ("total_gex_negative",)),
        ({"flip": 4600.0}, ("spot_below_flip",)),
        ({"skew_z": -2.0}, ("skew_crushed",)),  # at the threshold counts
        ({"skew_z": -3.5}, ("skew_crushed",)),
        ({"total_gex": -5e9, "flip": 4600.0}, ("total_gex_negative", "spot_below_flip")),
        ({"total_gex": -5e9, "skew_z": -2.5}, ("total_gex_negative", "skew_crushed")),
        ({"flip": 4501.0, "skew_z": -9.0}, ("spot_below_flip", "skew_crushed")),
        ({"total_gex": -1.0, "flip": 4600.0, "skew_z": -2.1}, TRIGGERS),
    ],
)
def test_triggers(kwargs, fired):
    inputs = {"total_gex": 2e9, "spot": 4500.0, "flip": 4400.0, "skew_z": 0.0, **kwargs}
    result = classify_regime(**inputs)
    assert result.regime == "short_gamma"
    assert result.triggers == fired


def test_boundaries():
    assert classify_regime(total_gex=0.0, spot=100.0).regime == "long_gamma"
    assert classify_regime(total_gex=-1e-300, spot=100.0).triggers == ("total_gex_negative",)
    assert classify_regime(total_gex=1.0, spot=100.0, flip=100.0).regime == "long_gamma"
    assert classify_regime(total_gex=1.0, spot=100.0, skew_z=-1.999).regime == "long_gamma"


def test_threshold_changes():
    loose = RegimeThresholds(total_gex_below=5e9, skew_z_below=-1.0, use_flip=False)
    inputs = {"total_gex": 1e9, "spot": 4500.0, "flip": 4600.0, "skew_z": -1.5}
    assert classify_regime(**inputs).triggers == ("spot_below_flip",)
    result = classify_regime(**inputs, thresholds=loose)
    assert result.triggers == ("total_gex_negative", "skew_crushed")
    assert result.evaluated == ("total_gex_negative", "skew_crushed")
    strict = RegimeThresholds(total_gex_below=-1e10, skew_z_below=-3.0)
    assert classify_regime(total_gex=-1e9, spot=1.0, skew_z=-2.5, thresholds=strict).regime == (
        "long_gamma"
    )


def test_skew_z_from_history():
    history = np.random.default_rng(1).normal(0.06, 0.01, size=252)
    crushed = float(history.mean() - 3 * history.std(ddof=1))
    result = classify_regime(total_gex=1.0, spot=10.0, skew=crushed, skew_history=history)
    assert result.triggers == ("skew_crushed",)
    assert result.skew_z == pytest.approx(skew_zscore(crushed, history))
    assert result.skew_z == pytest.approx(-3.0, rel=1e-12)
    # An explicit skew_z wins over skew/history.
    calm = classify_regime(total_gex=1.0, spot=10.0, skew=crushed, skew_history=history, skew_z=0.0)
    assert calm.regime == "long_gamma" and calm.skew_z == 0.0


def test_missing_optional_inputs_never_fire():
    for flip in (None, math.nan):
        for skew_z in (None, math.nan):
            result = classify_regime(total_gex=1.0, spot=10.0, flip=flip, skew_z=skew_z)
            assert result.regime == "long_gamma"
            assert result.evaluated == ("total_gex_negative",)
            assert result.flip is None and result.skew_z is None
    short_history = classify_regime(total_gex=1.0, spot=10.0, skew=-5.0, skew_history=[1.0, 2.0])
    assert short_history.skew_z is None and short_history.regime == "long_gamma"
    skew_only = classify_regime(total_gex=1.0, spot=10.0, skew=-5.0)
    assert skew_only.evaluated == ("total_gex_negative",)
    no_flip_check = classify_regime(
        total_gex=1.0, spot=10.0, flip=20.0, thresholds=RegimeThresholds(use_flip=False)
    )
    assert no_flip_check.regime == "long_gamma" and no_flip_check.flip == 20.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"total_gex": math.nan, "spot": 1.0},
        {"total_gex": None, "spot": 1.0},
        {"total_gex": math.inf, "spot": 1.0},
        {"total_gex": 1.0, "spot": math.nan},
        {"total_gex": 1.0, "spot": None},
        {"total_gex": 1.0, "spot": 0.0},
        {"total_gex": 1.0, "spot": -3.0},
    ],
)
def test_invalid_required_inputs_raise(kwargs):
    with pytest.raises(ValueError, match=r"total_gex|spot"):
        classify_regime(**kwargs)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_invalid_thresholds_raise(bad):
    with pytest.raises(ValueError):
        RegimeThresholds(total_gex_below=bad)
    with pytest.raises(ValueError):
        RegimeThresholds(skew_z_below=bad)


def test_to_dict_is_json_safe():
    result = classify_regime(total_gex=np.float64(-2.5e9), spot=np.float32(4500.0), skew_z=math.nan)
    payload = result.to_dict()
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    assert payload == {
        "regime": "short_gamma",
        "triggers": ["total_gex_negative"],
        "total_gex": -2.5e9,
        "spot": 4500.0,
        "flip": None,
        "skew_z": None,
        "evaluated": ["total_gex_negative"],
    }
    assert type(payload["spot"]) is float


optional_flip = st.one_of(st.none(), st.just(math.nan), st.floats(1.0, 1e4))
optional_z = st.one_of(st.none(), st.just(math.nan), st.floats(-10.0, 10.0))
gex_values = st.floats(-1e12, 1e12)


@fixed
@given(total_gex=gex_values, spot=st.floats(1.0, 1e4), flip=optional_flip, skew_z=optional_z)
def test_short_exactly_when_a_trigger_fires(total_gex, spot, flip, skew_z):
    result = classify_regime(total_gex=total_gex, spot=spot, flip=flip, skew_z=skew_z)
    assert (result.regime == "short_gamma") == bool(result.triggers)
    assert set(result.triggers) <= set(result.evaluated) <= set(TRIGGERS)
    assert list(result.triggers) == [name for name in TRIGGERS if name in result.triggers]
    expected = {
        "total_gex_negative": total_gex < 0,
        "spot_below_flip": flip is not None and not math.isnan(flip) and spot < flip,
        "skew_crushed": skew_z is not None and not math.isnan(skew_z) and skew_z <= -2.0,
    }
    assert set(result.triggers) == {name for name, fired in expected.items() if fired}


@fixed
@given(
    total_gex=gex_values,
    spot=st.floats(1.0, 1e4),
    flip=optional_flip,
    skew_z=optional_z,
    extra=st.sampled_from(TRIGGERS),
)
def test_adding_a_fired_trigger_never_turns_short_into_long(total_gex, spot, flip, skew_z, extra):
    before = classify_regime(total_gex=total_gex, spot=spot, flip=flip, skew_z=skew_z)
    changed = {"total_gex": total_gex, "spot": spot, "flip": flip, "skew_z": skew_z}
    if extra == "total_gex_negative":
        changed["total_gex"] = -abs(total_gex) - 1.0
    elif extra == "spot_below_flip":
        changed["flip"] = spot * 2.0
    else:
        changed["skew_z"] = -5.0
    after = classify_regime(**changed)
    assert after.regime == "short_gamma"
    assert set(before.triggers) <= set(after.triggers) | {extra}
    assert extra in after.triggers


@fixed
@given(
    total_gex=gex_values,
    lower=st.floats(-1e12, 1e12),
    raise_by=st.floats(0.0, 1e12),
    skew_z=st.floats(-10.0, 10.0),
    z_threshold=st.floats(-10.0, 10.0),
)
def test_higher_thresholds_are_never_less_short(total_gex, lower, raise_by, skew_z, z_threshold):
    tight = RegimeThresholds(total_gex_below=lower, skew_z_below=z_threshold)
    loose = RegimeThresholds(total_gex_below=lower + raise_by, skew_z_below=z_threshold + 1.0)
    first = classify_regime(total_gex=total_gex, spot=1.0, skew_z=skew_z, thresholds=tight)
    second = classify_regime(total_gex=total_gex, spot=1.0, skew_z=skew_z, thresholds=loose)
    assert set(first.triggers) <= set(second.triggers)
