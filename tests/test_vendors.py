"""Vendor layouts (ORATS, ThetaData, Databento OPRA) on small tables the tests build."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

import fastgex
from fastgex import ChainError
from fastgex.io.vendors import read_databento, read_orats, read_thetadata

NEW_YORK = ZoneInfo("America/New_York")


def _long_form_reference():
    """The same three strikes of SPX as a canonical long table (the oracle)."""
    return pa.table(
        {
            "underlying": ["SPX"] * 6,
            "expiration": [dt.date(2024, 1, 19)] * 6,
            "strike": [4600.0, 4700.0, 4800.0] * 2,
            "option_type": ["C"] * 3 + ["P"] * 3,
            "open_interest": [1000.0, 2500.0, 4000.0, 3000.0, 1500.0, 500.0],
            "implied_vol": [0.17, 0.14, 0.12, 0.19, 0.155, 0.13],
        }
    )


def test_orats_wide_rows_match_the_long_table():
    wide = pa.table(
        {
            "ticker": ["SPX"] * 3,
            "tradeDate": ["2024-01-08"] * 3,
            "expirDate": ["2024-01-19"] * 3,
            "strike": [4600, 4700, 4800],
            "stockPrice": [4700.0] * 3,
            "callOpenInterest": [1000, 2500, 4000],
            "putOpenInterest": [3000, 1500, 500],
            "callMidIv": [0.17, 0.14, 0.12],
            "putMidIv": [0.19, 0.155, 0.13],
        }
    )
    chain = read_orats(wide)
    assert chain.num_rows == 6
    snapshot = dt.datetime(2024, 1, 8, 16, 0, tzinfo=NEW_YORK)
    assert chain.column("snapshot_time")[0].as_py() == snapshot
    ours = fastgex.gex(chain).total("SPX")
    reference = fastgex.gex(_long_form_reference(), spot=4700.0, snapshot_time=snapshot)
    assert ours == pytest.approx(reference.total("SPX"), rel=1e-14)
    # smvVol stands in for both sides when there are no mid IVs
    smoothed = wide.drop_columns(["callMidIv", "putMidIv"]).append_column(
        "smvVol", pa.array([0.15] * 3)
    )
    assert read_orats(smoothed).column("implied_vol").to_pylist() == [0.15] * 6


def test_orats_errors():
    with pytest.raises(ChainError, match="missing columns"):
        read_orats(pa.table({"ticker": ["SPX"]}))
    rows = pa.table(
        {name: [1.0] for name in ("strike", "stockPrice", "callOpenInterest", "putOpenInterest")}
        | {"ticker": ["SPX"], "expirDate": ["2024-01-19"]}
    )
    with pytest.raises(ChainError, match="smvVol"):
        read_orats(rows)
    bad_date = rows.append_column("smvVol", pa.array([0.2])).set_column(
        rows.column_names.index("expirDate"), "expirDate", pa.array(["19/01/2024"])
    )
    with pytest.raises(ChainError, match="not a date"):
        read_orats(bad_date)


def test_thetadata_units_and_names():
    rows = pa.table(
        {
            "root": ["SPXW"] * 2,
            "expiration": [20240119, 20240119],
            "strike": [4700000, 4650500],  # tenths of a cent
            "right": ["C", "p"],
            "open_interest": [2500, 800],
            "iv": [0.14, 0.16],
            "bid": [10.0, 12.0],
        }
    )
    chain = read_thetadata(rows)
    assert chain.column("strike").to_pylist() == [4700.0, 4650.5]
    assert chain.column("expiration").to_pylist() == [dt.date(2024, 1, 19)] * 2
    assert chain.column("option_type").to_pylist() == ["C", "P"]
    assert chain.column("implied_vol").to_pylist() == [0.14, 0.16]
    assert "bid" in chain.column_names
    with pytest.raises(ChainError, match="root"):
        read_thetadata(rows.drop_columns(["root"]))


def test_databento_definitions_joined_with_open_interest():
    expiry = dt.datetime(2024, 1, 19, 21, 0, tzinfo=dt.timezone.utc)  # 16:00 New York
    definitions = pa.table(
        {
            "instrument_id": pa.array([11, 12, 13, 14], pa.uint32()),
            "raw_symbol": ["SPXW  240119C04700000", "SPXW  240119P04600000",
                           "SPXW  240119C04800000", "SPX   240119F00000000"],
            "underlying": ["SPX"] * 4,
            "strike_price": pa.array([4700 * 10**9, 4600 * 10**9, 4800 * 10**9, 0], pa.int64()),
            "expiration": pa.array([expiry] * 4, pa.timestamp("ns", tz="UTC")),
            "instrument_class": ["C", "P", "C", "F"],
        }
    )  # fmt: skip
    statistics = pa.table(
        {
            "instrument_id": pa.array([11, 11, 12, 12, 13], pa.uint32()),
            "stat_type": [9, 9, 9, 1, 1],  # 9 = open interest; 1 = opening price
            "quantity": [2000, 2500, 900, 5, 7],
            "ts_ref": pa.array([1, 2, 1, 1, 1], pa.int64()),
        }
    )
    chain = read_databento(definitions, statistics)
    assert chain.column("instrument_id").to_pylist() == [11, 12, 13]  # the future is left out
    assert chain.column("strike").to_pylist() == [4700.0, 4600.0, 4800.0]
    assert chain.column("open_interest").to_pylist() == [2500.0, 900.0, None]  # latest; none
    assert chain.column("expiration").to_pylist() == [dt.date(2024, 1, 19)] * 3
    with_vol = chain.append_column("implied_vol", pa.array([0.14, 0.16, 0.12]))
    result = fastgex.gex(
        with_vol, spot=4700.0, snapshot_time=dt.datetime(2024, 1, 8, 15, 0, tzinfo=NEW_YORK)
    )
    assert result.dropped.to_pylist()[0]["reason"] == "missing_value"  # no OI: counted
    assert result.by_underlying.column("contracts")[0].as_py() == 2
