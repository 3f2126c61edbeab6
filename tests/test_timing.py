"""Time to expiry from timestamps: settlement times, zones, day counts, expiry, 0DTE."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

import fastgex
from fastgex.conventions import DayCount

NEW_YORK = ZoneInfo("America/New_York")
YEAR_SECONDS = 365.0 * 86400.0


def _seconds(later: dt.datetime, earlier: dt.datetime) -> float:
    """Elapsed seconds. In UTC: Python subtracts same-tzinfo datetimes as wall-clock time,
    which is an hour off across a DST change."""
    return (later.astimezone(dt.timezone.utc) - earlier.astimezone(dt.timezone.utc)).total_seconds()


def _chain(expirations, snapshot=None, **extra) -> pa.Table:
    n = len(expirations)
    columns = {
        "underlying": ["SPX"] * n,
        "strike": [4700.0] * n,
        "option_type": ["C"] * n,
        "open_interest": [100.0] * n,
        "implied_vol": [0.2] * n,
        "expiration": expirations,
        "spot": [4700.0] * n,
    }
    if snapshot is not None:
        columns["snapshot_time"] = pa.array([snapshot] * n, pa.timestamp("us", tz="UTC"))
    columns.update(extra)
    return pa.table(columns)


def _years(table, **kwargs):
    result = fastgex.gex(table, per_contract=True, **kwargs)
    return result, result.per_contract.column("time_to_expiry").to_pylist()


def test_act365_uses_exact_seconds_to_pm_settlement():
    snapshot = dt.datetime(2024, 1, 8, 10, 30, tzinfo=NEW_YORK)
    expiries = [dt.date(2024, 1, 8), dt.date(2024, 1, 19), dt.date(2024, 3, 15)]
    _, years = _years(_chain(expiries), snapshot_time=snapshot)
    for expiry, got in zip(expiries, years, strict=True):
        settle = dt.datetime.combine(expiry, dt.time(16), NEW_YORK)
        assert got == pytest.approx(_seconds(settle, snapshot) / YEAR_SECONDS, rel=1e-12)
    assert years[0] == pytest.approx(5.5 * 3600 / YEAR_SECONDS, rel=1e-12)  # 0DTE: 5.5 hours


def test_am_settlement_and_custom_zone():
    snapshot = dt.datetime(2024, 1, 8, 6, 0, tzinfo=dt.timezone.utc)
    _, years = _years(_chain([dt.date(2024, 1, 10)]), snapshot_time=snapshot, settlement="am")
    settle = dt.datetime(2024, 1, 10, 9, 30, tzinfo=NEW_YORK)
    assert years[0] == pytest.approx(_seconds(settle, snapshot) / YEAR_SECONDS)
    # Deribit: 08:00 UTC.
    _, years = _years(
        _chain([dt.date(2024, 1, 10)]),
        snapshot_time=snapshot,
        settlement="08:00",
        settlement_tz="UTC",
    )
    assert years[0] == pytest.approx(50 * 3600 / YEAR_SECONDS)  # 06:00 -> 08:00 two days on


def test_timestamp_expirations_are_exact_instants():
    snapshot = dt.datetime(2024, 1, 8, 12, 0, tzinfo=dt.timezone.utc)
    instant = dt.datetime(2024, 1, 9, 8, 0, tzinfo=dt.timezone.utc)
    table = _chain(pa.array([instant], pa.timestamp("us", tz="UTC")), snapshot)
    _, years = _years(table)
    assert years[0] == pytest.approx(20 * 3600 / YEAR_SECONDS)


def test_snapshot_column_and_naive_values_are_new_york_time():
    naive_snapshot = dt.datetime(2024, 1, 8, 10, 30)
    table = _chain([dt.date(2024, 1, 9)])
    _, from_arg = _years(table, snapshot_time=naive_snapshot)
    _, from_text = _years(table, snapshot_time="2024-01-08T10:30:00-05:00")
    assert from_arg == pytest.approx(from_text)
    with pytest.raises(fastgex.ChainError, match="snapshot_time"):
        fastgex.gex(table)


def test_expired_contracts_are_dropped_and_counted():
    snapshot = dt.datetime(2024, 1, 7, 10, 52, tzinfo=NEW_YORK)  # a Sunday
    table = _chain([dt.date(2024, 1, 5), dt.date(2024, 1, 5), dt.date(2024, 1, 8)], snapshot)
    result = fastgex.gex(table)
    assert result.dropped.to_pylist() == [{"underlying": "SPX", "reason": "expired", "count": 2}]
    assert result.by_underlying.column("contracts").to_pylist() == [1]


def test_zero_dte_after_the_bell_is_expired_and_before_is_floored():
    close = dt.datetime(2024, 1, 8, 16, 0, tzinfo=NEW_YORK)
    table = _chain([dt.date(2024, 1, 8)])
    assert fastgex.gex(table, snapshot_time=close + dt.timedelta(seconds=1)).dropped_count == 1
    seconds_before = close - dt.timedelta(seconds=5)
    result, years = _years(table, snapshot_time=seconds_before)
    assert years[0] == pytest.approx(5 / YEAR_SECONDS)
    # Gamma uses the one-minute floor: finite, equal to gamma at exactly one minute.
    floored = result.per_contract.column("gamma")[0].as_py()
    from fastgex.reference import bsm_gamma

    assert floored == pytest.approx(bsm_gamma(4700, 4700, 0.2, 60 / YEAR_SECONDS), rel=1e-12)


def test_business_day_counts_follow_the_public_script():
    snapshot = dt.datetime(2024, 1, 7, 10, 52, tzinfo=NEW_YORK)  # Sunday
    expiries = [dt.date(2024, 1, 8), dt.date(2024, 1, 12), dt.date(2024, 2, 16)]
    _, years = _years(_chain(expiries, snapshot), day_count="bus262")
    counts = np.busday_count(np.datetime64("2024-01-07"), np.array(expiries, dtype="datetime64[D]"))
    expected = np.maximum(counts, 1) / 262.0
    np.testing.assert_allclose(years, expected, rtol=1e-15)
    _, years = _years(
        _chain(expiries, snapshot), day_count=DayCount("business", 252, ("2024-01-15",))
    )
    counts = np.busday_count(
        np.datetime64("2024-01-07"),
        np.array(expiries, dtype="datetime64[D]"),
        holidays=["2024-01-15"],
    )
    np.testing.assert_allclose(years, np.maximum(counts, 1) / 252.0, rtol=1e-15)


def test_day_count_names():
    assert DayCount.parse("act365") == DayCount()
    assert DayCount.parse("bus262").year_length == 262.0
    assert DayCount.parse("BUS252").kind == "business"
    with pytest.raises(ValueError, match="act365"):
        DayCount.parse("30/360")


def test_string_expirations():
    snapshot = dt.datetime(2024, 1, 8, 10, 30, tzinfo=NEW_YORK)
    _, years = _years(_chain(["2024-01-19"]), snapshot_time=snapshot)
    settle = dt.datetime(2024, 1, 19, 16, tzinfo=NEW_YORK)
    assert years[0] == pytest.approx(_seconds(settle, snapshot) / YEAR_SECONDS)
    with pytest.raises(ValueError, match="expiration"):
        fastgex.gex(_chain(["19/01/2024"]), snapshot_time=snapshot)


# Regressions from review: each of these once gave a silently wrong time to expiry.


def test_null_snapshot_row_is_missing_under_business_days():
    snapshots = pa.array([dt.datetime(2024, 1, 5, 15, tzinfo=dt.timezone.utc), None])
    table = _chain([dt.date(2024, 1, 19)] * 2).append_column(
        "snapshot_time", snapshots.cast(pa.timestamp("us", tz="UTC"))
    )
    for day_count in ("act365", "bus252"):
        result = fastgex.gex(table, day_count=day_count)
        assert result.dropped.to_pylist() == [
            {"underlying": "SPX", "reason": "missing_value", "count": 1}
        ]


def test_numpy_datetime64_snapshot_is_local_time():
    table = _chain([dt.date(2024, 1, 19)])
    _, from_numpy = _years(table, snapshot_time=np.datetime64("2024-01-19T10:00"))
    _, from_text = _years(table, snapshot_time="2024-01-19T10:00")
    assert from_numpy == pytest.approx(from_text) and from_numpy[0] == pytest.approx(
        6 * 3600 / YEAR_SECONDS
    )


def test_aware_midnight_expiration_is_a_date():
    snapshot = dt.datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK)
    midnight = pa.array([dt.datetime(2024, 1, 19, 0, 0, tzinfo=NEW_YORK)]).cast(
        pa.timestamp("ns", tz="America/New_York")
    )
    _, years = _years(_chain(midnight), snapshot_time=snapshot)
    assert years[0] == pytest.approx(6 * 3600 / YEAR_SECONDS)


@pytest.mark.parametrize(
    "expirations",
    [
        pa.array(["2024-01-19"]).dictionary_encode(),
        pa.array([20240119]),
        pa.array(["2024-01-19T21:00:00Z"]),
        pa.array(["2024-01-19T16:00:00-05:00"]),
    ],
    ids=["categorical", "yyyymmdd-int", "iso-z", "iso-offset"],
)
def test_more_expiration_encodings(expirations):
    snapshot = dt.datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK)
    _, years = _years(_chain(expirations), snapshot_time=snapshot)
    assert years[0] == pytest.approx(6 * 3600 / YEAR_SECONDS)


def test_null_inside_a_dictionary_is_a_missing_value():
    underlying = pa.DictionaryArray.from_arrays(
        pa.array([0, 1], pa.int32()), pa.array(["SPX", None])
    )
    table = _chain([dt.date(2024, 1, 19)] * 2).set_column(0, "underlying", underlying)
    result = fastgex.gex(table, snapshot_time=dt.datetime(2024, 1, 18, 12, tzinfo=NEW_YORK))
    assert result.dropped.to_pylist() == [
        {"underlying": None, "reason": "missing_value", "count": 1}
    ]
