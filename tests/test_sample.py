"""Tests of the seeded chain / market generators in fastgex.sample."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgex.sample import (
    CHAIN_SCHEMA,
    DEFAULT_SNAPSHOT,
    expiration_calendar,
    sample_chain,
    sample_market,
)

NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.timezone.utc

EXPECTED_FIELDS = [
    ("underlying", pa.string()),
    ("strike", pa.float64()),
    ("option_type", pa.string()),
    ("expiration", pa.date32()),
    ("open_interest", pa.float64()),
    ("implied_vol", pa.float64()),
    ("spot", pa.float64()),
    ("multiplier", pa.float64()),
    ("snapshot_time", pa.timestamp("us", tz="UTC")),
]


@pytest.fixture(scope="module")
def spx() -> pa.Table:
    return sample_chain("SPX", 4700.0, seed=7)


@pytest.fixture(scope="module")
def market() -> pa.Table:
    return sample_market(150_000, seed=11)


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def settlement(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(16), tzinfo=NEW_YORK)


def tenor_years(day: dt.date, snapshot: dt.datetime) -> float:
    return (settlement(day) - snapshot).total_seconds() / (365.0 * 86400.0)


def norm_cdf(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in values]))


def third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)


def as_dates(values: np.ndarray) -> set[dt.date]:
    return {day.item() for day in values}


# ---------------------------------------------------------------------------
# Snapshot and calendar
# ---------------------------------------------------------------------------


def test_default_snapshot_is_monday_morning_new_york_in_utc():
    assert DEFAULT_SNAPSHOT.tzinfo is not None
    assert DEFAULT_SNAPSHOT.utcoffset() == dt.timedelta(0)
    assert DEFAULT_SNAPSHOT == dt.datetime(2024, 1, 8, 15, 30, tzinfo=UTC)
    local = DEFAULT_SNAPSHOT.astimezone(NEW_YORK)
    assert (local.weekday(), local.hour, local.minute) == (0, 10, 30)


@pytest.mark.parametrize("kind", ["index", "equity"])
def test_calendar_sorted_unique_and_not_expired(kind):
    cal = expiration_calendar(DEFAULT_SNAPSHOT, kind=kind)
    assert cal.dtype == np.dtype("datetime64[D]")
    assert len(cal) > 5
    assert np.all(np.diff(cal.astype(np.int64)) > 0)
    assert cal[0] >= np.datetime64("2024-01-08")
    assert all(settlement(day) > DEFAULT_SNAPSHOT for day in as_dates(cal))
    assert all(day.weekday() < 5 for day in as_dates(cal))
    assert cal[-1] <= np.datetime64("2027-01-08")


def test_index_calendar_contents():
    cal = as_dates(expiration_calendar(DEFAULT_SNAPSHOT))
    # 0DTE: the Monday snapshot date itself (settles 16:00 NY, after 10:30).
    assert dt.date(2024, 1, 8) in cal
    # dailies for ~2 weeks, skipping MLK day (2024-01-15).
    assert {dt.date(2024, 1, d) for d in (9, 10, 11, 12, 16, 17, 18, 19, 22)} <= cal
    assert dt.date(2024, 1, 15) not in cal
    # weeklies (Fridays) to ~2 months, none past that except monthlies etc.
    assert {dt.date(2024, 2, 2), dt.date(2024, 2, 23), dt.date(2024, 3, 8)} <= cal
    assert dt.date(2024, 4, 5) not in cal
    # quarterly: last trading day of March 2024 is Thursday 28 (Good Friday 29).
    assert dt.date(2024, 3, 28) in cal and dt.date(2024, 3, 29) not in cal
    assert {dt.date(2024, 6, 28), dt.date(2024, 9, 30), dt.date(2024, 12, 31)} <= cal
    # December LEAPS out to max_years.
    assert {dt.date(2024, 12, 20), dt.date(2025, 12, 19), dt.date(2026, 12, 18)} <= cal
    short = as_dates(expiration_calendar(DEFAULT_SNAPSHOT, max_years=1.0))
    assert max(short) <= dt.date(2025, 1, 8)
    assert dt.date(2025, 12, 19) not in short


def test_equity_calendar_contents():
    cal = as_dates(expiration_calendar(DEFAULT_SNAPSHOT, kind="equity"))
    assert dt.date(2024, 1, 8) not in cal  # no dailies for single stocks
    assert {dt.date(2024, 1, 12), dt.date(2024, 2, 9)} <= cal  # weeklies ~5 weeks
    assert dt.date(2024, 2, 23) not in cal
    assert {third_friday(2024, m) for m in range(1, 10)} <= cal  # monthlies ~9 months
    assert {dt.date(2025, 1, 17), dt.date(2026, 1, 16)} <= cal  # January LEAPS
    assert max(cal) == dt.date(2026, 1, 16)


@pytest.mark.parametrize("kind", ["index", "equity"])
def test_monthlies_are_third_fridays_with_holiday_rule(kind):
    snapshot = dt.datetime(2025, 1, 6, 9, 45, tzinfo=NEW_YORK)
    cal = as_dates(expiration_calendar(snapshot, kind=kind))
    holidays = {dt.date(2025, 4, 18)}  # Good Friday 2025 is the April third Friday
    n_months = 12 if kind == "index" else 9
    for month in range(1, n_months + 1):
        friday = third_friday(2025, month)
        expected = friday - dt.timedelta(days=1) if friday in holidays else friday
        assert expected in cal, (kind, month)
    assert dt.date(2025, 4, 17) in cal
    assert dt.date(2025, 4, 18) not in cal


def test_juneteenth_third_friday_rolls_to_thursday():
    snapshot = dt.datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
    cal = as_dates(expiration_calendar(snapshot))
    assert dt.date(2026, 6, 19) not in cal  # Juneteenth, a Friday
    assert dt.date(2026, 6, 18) in cal


def test_zero_dte_dropped_after_the_close_and_on_weekends():
    after_close = dt.datetime(2024, 1, 8, 16, 30, tzinfo=NEW_YORK)
    assert expiration_calendar(after_close)[0] == np.datetime64("2024-01-09")
    saturday = dt.datetime(2024, 1, 6, 12, 0, tzinfo=UTC)
    assert expiration_calendar(saturday)[0] == np.datetime64("2024-01-08")


def test_naive_snapshot_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        expiration_calendar(dt.datetime(2024, 1, 8, 10, 30))
    with pytest.raises(ValueError, match="timezone-aware"):
        sample_chain(snapshot_time=dt.datetime(2024, 1, 8, 10, 30))


# ---------------------------------------------------------------------------
# sample_chain
# ---------------------------------------------------------------------------


def test_chain_schema_exact(spx):
    assert [(f.name, f.type) for f in spx.schema] == EXPECTED_FIELDS
    assert spx.schema.equals(CHAIN_SCHEMA)
    assert spx.num_rows > 5000


def test_chain_constant_columns(spx):
    assert pc.unique(spx["underlying"]).to_pylist() == ["SPX"]
    assert pc.unique(spx["spot"]).to_pylist() == [4700.0]
    assert pc.unique(spx["multiplier"]).to_pylist() == [100.0]
    assert pc.unique(spx["snapshot_time"]).to_pylist() == [DEFAULT_SNAPSHOT]
    assert set(pc.unique(spx["option_type"]).to_pylist()) == {"C", "P"}


def test_chain_deterministic_per_seed():
    first = sample_chain(seed=3)
    again = sample_chain(seed=3)
    assert ipc_bytes(first) == ipc_bytes(again)
    other = sample_chain(seed=4)
    assert first["strike"].equals(other["strike"])  # the grid does not depend on the seed
    assert not first["open_interest"].equals(other["open_interest"])


def test_chain_no_expired_contracts(spx):
    expiries = {day for day in pc.unique(spx["expiration"]).to_pylist()}
    assert min(expiries) == dt.date(2024, 1, 8)
    assert all(settlement(day) > DEFAULT_SNAPSHOT for day in expiries)
    late = sample_chain(snapshot_time=dt.datetime(2024, 1, 8, 21, 5, tzinfo=UTC))
    assert pc.min(late["expiration"]).as_py() == dt.date(2024, 1, 9)


def every_strike_has_call_and_put(table: pa.Table) -> bool:
    plain = table.select(["underlying", "expiration", "strike", "option_type"])
    if pa.types.is_dictionary(plain.schema.field("option_type").type):
        plain = plain.set_column(3, "option_type", pc.cast(plain["option_type"], pa.string()))
    if pa.types.is_dictionary(plain.schema.field("underlying").type):
        plain = plain.set_column(0, "underlying", pc.cast(plain["underlying"], pa.string()))
    plain = plain.append_column("is_call", pc.equal(plain["option_type"], "C"))
    grouped = plain.group_by(["underlying", "expiration", "strike"]).aggregate(
        [("option_type", "count"), ("is_call", "sum")]
    )
    counts = grouped["option_type_count"].to_numpy()
    calls = grouped["is_call_sum"].to_numpy()
    return bool(np.all(counts == 2) and np.all(calls == 1))


def test_chain_every_strike_has_call_and_put(spx):
    assert every_strike_has_call_and_put(spx)
    assert spx.num_rows % 2 == 0


def test_chain_iv_range_and_open_interest_values(spx):
    vol = spx["implied_vol"].to_numpy()
    assert np.all(np.isfinite(vol)) and vol.min() >= 0.03 and vol.max() <= 3.0
    oi = spx["open_interest"].to_numpy()
    assert np.all(oi >= 0) and np.all(oi == np.round(oi))
    assert np.any(oi == 0)  # some zeros in the wings
    strike = spx["strike"].to_numpy()
    assert np.all(strike > 0)
    assert np.all(np.abs(strike / 5.0 - np.round(strike / 5.0)) < 1e-9)  # SPX-like 5-pt grid


def expiry_slice(table: pa.Table, day: dt.date) -> dict[str, np.ndarray]:
    part = table.filter(pc.equal(table["expiration"], pa.scalar(day, pa.date32())))
    return {
        "strike": part["strike"].to_numpy(),
        "is_put": pc.equal(part["option_type"], "P").to_numpy(zero_copy_only=False),
        "vol": part["implied_vol"].to_numpy(),
        "oi": part["open_interest"].to_numpy(),
    }


@pytest.mark.parametrize("day", [dt.date(2024, 1, 12), dt.date(2024, 2, 16), dt.date(2024, 12, 20)])
def test_chain_skew_25_delta_put_richer_than_call(spx, day):
    data = expiry_slice(spx, day)
    tenor = tenor_years(day, DEFAULT_SNAPSHOT)
    vol, strike = data["vol"], data["strike"]
    d1 = (np.log(4700.0 / strike) + 0.5 * vol * vol * tenor) / (vol * math.sqrt(tenor))
    delta = norm_cdf(d1) - data["is_put"]
    puts = np.flatnonzero(data["is_put"])
    calls = np.flatnonzero(~data["is_put"])
    put_25 = puts[np.argmin(np.abs(delta[puts] + 0.25))]
    call_25 = calls[np.argmin(np.abs(delta[calls] - 0.25))]
    assert strike[put_25] < 4700.0 < strike[call_25]
    assert vol[put_25] > vol[call_25] + 0.005
    # put wing: vol rises monotonically as the strike falls below spot
    below = np.unique(strike[strike < 4700.0])
    vol_below = np.array([vol[strike == k][0] for k in below])
    assert np.all(np.diff(vol_below) < 0)


def test_chain_term_structure_and_strike_width(spx):
    short = expiry_slice(spx, dt.date(2024, 1, 12))
    long = expiry_slice(spx, dt.date(2025, 12, 19))
    short_atm = short["vol"][np.argmin(np.abs(short["strike"] - 4700.0))]
    long_atm = long["vol"][np.argmin(np.abs(long["strike"] - 4700.0))]
    assert short_atm < 0.14 < long_atm  # documented contango for indices
    assert np.ptp(long["strike"]) > 4 * np.ptp(short["strike"])  # width grows with sqrt(T)
    assert np.min(np.diff(np.unique(long["strike"]))) > 5.0  # coarser steps far out
    for part in (short, long):  # at least +-5% around spot
        assert part["strike"].min() <= 4700.0 * math.exp(-0.05) + 5.0
        assert part["strike"].max() >= 4700.0 * math.exp(0.05) - 5.0


def test_chain_open_interest_shape(spx):
    strike = spx["strike"].to_numpy()
    oi = spx["open_interest"].to_numpy()
    is_put = pc.equal(spx["option_type"], "P").to_numpy(zero_copy_only=False)
    log_moneyness = np.abs(np.log(strike / 4700.0))
    days = spx["expiration"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
    tenor = np.array([tenor_years(day.item(), DEFAULT_SNAPSHOT) for day in days])
    deviations = log_moneyness / (0.14 * np.sqrt(np.maximum(tenor, 7 / 365)))
    near = oi[deviations < 0.5].mean()
    far = oi[deviations > 3.0].mean()
    assert near > 10 * far
    assert oi[log_moneyness < 0.02].mean() > 2 * oi[log_moneyness > 0.25].mean()
    below, above = strike < 4700.0, strike > 4700.0
    assert oi[below & is_put].sum() > 2 * oi[below & ~is_put].sum()
    assert oi[above & ~is_put].sum() > 2 * oi[above & is_put].sum()
    # round strikes (multiples of 100) carry more OI than other near-the-money strikes
    near_mask = log_moneyness < 0.05
    round_mask = np.abs(strike / 100.0 - np.round(strike / 100.0)) < 1e-9
    assert oi[near_mask & round_mask].mean() > 1.5 * oi[near_mask & ~round_mask].mean()


def test_chain_monthly_heavier_than_daily(spx):
    monthly = expiry_slice(spx, dt.date(2024, 1, 19))
    daily = expiry_slice(spx, dt.date(2024, 1, 18))
    in_band = lambda part: np.abs(np.log(part["strike"] / 4700.0)) < 0.03  # noqa: E731
    assert monthly["oi"][in_band(monthly)].sum() > 2 * daily["oi"][in_band(daily)].sum()


def test_chain_equity_kind_and_parameters():
    table = sample_chain("AAPL", 185.0, kind="equity", atm_vol=0.25, multiplier=10.0, seed=1)
    assert table.schema.equals(CHAIN_SCHEMA)
    assert every_strike_has_call_and_put(table)
    assert pc.unique(table["multiplier"]).to_pylist() == [10.0]
    strike = table["strike"].to_numpy()
    assert np.all(np.abs(strike / 2.5 - np.round(strike / 2.5)) < 1e-9)
    custom = sample_chain("SPX", 4700.0, strike_step=25.0)
    assert np.all(custom["strike"].to_numpy() % 25.0 == 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spot": 0.0},
        {"spot": float("nan")},
        {"atm_vol": -0.1},
        {"strike_step": 0.0},
        {"multiplier": 0.0},
        {"kind": "future"},
    ],
)
def test_chain_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        sample_chain(**kwargs)


# ---------------------------------------------------------------------------
# sample_market
# ---------------------------------------------------------------------------


def test_market_schema(market):
    types = {field.name: field.type for field in market.schema}
    assert market.schema.names == [name for name, _ in EXPECTED_FIELDS]
    assert types["underlying"] == pa.dictionary(pa.int32(), pa.string())
    assert types["option_type"] in (pa.string(), pa.dictionary(pa.int8(), pa.string()))
    for name, expected in EXPECTED_FIELDS:
        if name not in ("underlying", "option_type"):
            assert types[name] == expected, name


def test_market_size_and_underlyings(market):
    assert abs(market.num_rows - 150_000) <= 0.05 * 150_000
    names = pc.unique(pc.cast(market["underlying"], pa.string())).to_pylist()
    assert len(names) == 400  # default: n_contracts / 375
    assert {"SPX", "SPY", "QQQ", "NDX", "IWM", "RUT"} <= set(names)
    stocks = [name for name in names if name.startswith("STK")]
    assert len(stocks) > 350 and "STK0001" in stocks


def test_market_invariants(market):
    assert every_strike_has_call_and_put(market)
    vol = market["implied_vol"].to_numpy()
    assert vol.min() >= 0.03 and vol.max() <= 3.0
    oi = market["open_interest"].to_numpy()
    assert oi.min() >= 0 and np.all(oi == np.round(oi)) and np.any(oi == 0)
    assert pc.min(market["strike"]).as_py() > 0
    assert pc.unique(market["multiplier"]).to_pylist() == [100.0]
    assert pc.unique(market["snapshot_time"]).to_pylist() == [DEFAULT_SNAPSHOT]
    expiries = pc.unique(market["expiration"]).to_pylist()
    assert all(settlement(day) > DEFAULT_SNAPSHOT for day in expiries)


def test_market_zipf_like_open_interest(market):
    names = pc.cast(market["underlying"], pa.string())
    totals = (
        market.append_column("name", names)
        .group_by("name")
        .aggregate([("open_interest", "sum"), ("strike", "count")])
    )
    oi_by_name = dict(
        zip(totals["name"].to_pylist(), totals["open_interest_sum"].to_pylist(), strict=True)
    )
    rows_by_name = dict(
        zip(totals["name"].to_pylist(), totals["strike_count"].to_pylist(), strict=True)
    )
    stock_oi = np.array([v for k, v in oi_by_name.items() if k.startswith("STK")])
    assert oi_by_name["STK0001"] > 20 * np.median(stock_oi)
    assert oi_by_name["SPX"] > np.median(stock_oi)
    assert rows_by_name["STK0001"] > 5 * rows_by_name["STK0390"]  # fewer strikes for small names


def test_market_spot_constant_per_underlying(market):
    codes = market["underlying"].combine_chunks().indices.to_numpy()
    spot = market["spot"].to_numpy()
    first = np.full(codes.max() + 1, np.nan)
    first[codes[::-1]] = spot[::-1]
    assert np.all(spot == first[codes])


def test_market_deterministic_per_seed():
    first = sample_market(20_000, seed=5)
    assert ipc_bytes(first) == ipc_bytes(sample_market(20_000, seed=5))
    assert ipc_bytes(first) != ipc_bytes(sample_market(20_000, seed=6))


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    n_contracts=st.integers(min_value=200, max_value=40_000),
    fraction=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_market_row_count_property(n_contracts, fraction, seed):
    n_underlyings = max(1, int(fraction * (n_contracts // 20)))
    table = sample_market(n_contracts, n_underlyings=n_underlyings, seed=seed)
    assert abs(table.num_rows - n_contracts) <= max(1, 0.05 * n_contracts)
    assert len(pc.unique(table["underlying"].combine_chunks().indices)) == n_underlyings
    assert every_strike_has_call_and_put(table)
    assert pc.min(table["strike"]).as_py() > 0


@pytest.mark.parametrize(
    ("n_contracts", "n_underlyings"), [(100, None), (1000, 0), (1000, 51), (10_000, -3)]
)
def test_market_invalid_arguments(n_contracts, n_underlyings):
    with pytest.raises(ValueError):
        sample_market(n_contracts, n_underlyings=n_underlyings)
