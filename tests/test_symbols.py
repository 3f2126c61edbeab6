"""OSI and Deribit symbol parsers, and the Deribit book-summary reader."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgex
from fastgex import reference
from fastgex.io.deribit import read_deribit
from fastgex.io.symbols import parse_deribit, parse_osi

UTC = dt.timezone.utc

# ------------------------------------------------------------------------------ OSI


def test_osi_padded_unpadded_and_prefixed_agree():
    table = parse_osi(
        [
            "SPXW  241220C05000000",
            "SPXW241220C05000000",
            "O:SPXW241220C05000000",
            " SPY241220P00450500 ",
        ]
    )
    rows = table.to_pylist()
    for row in rows[:3]:
        assert row == {
            "root": "SPXW",
            "expiration": dt.date(2024, 12, 20),
            "option_type": "C",
            "strike": 5000.0,
            "valid": True,
        }
    assert rows[3] == {
        "root": "SPY",
        "expiration": dt.date(2024, 12, 20),
        "option_type": "P",
        "strike": 450.5,
        "valid": True,
    }


@pytest.mark.parametrize(
    "symbol",
    [
        None,
        "",
        "garbage",
        "SPXW241320C05000000",  # month 13
        "SPXW240231C05000000",  # February 31st (strptime alone would roll it to March 2)
        "SPXW241220X05000000",  # neither call nor put
        "SPXW241220C0500000",  # 7 strike digits
        "TOOLONGROOT241220C05000000",
        "BTC-27DEC24-65000-C",
    ],
)
def test_osi_bad_symbols_are_invalid_rows_not_errors(symbol):
    row = parse_osi(pa.array([symbol, "AAPL  250117C00150000"], pa.string())).to_pylist()
    assert row[0] == {
        "root": None,
        "expiration": None,
        "option_type": None,
        "strike": None,
        "valid": False,
    }
    assert row[1]["valid"] and row[1]["strike"] == 150.0


def test_osi_accepts_chunked_dictionary_and_large_strings():
    chunked = pa.chunked_array([["SPX   240119C04700000"], ["SPX   240119P04600000"]])
    assert parse_osi(chunked).column("strike").to_pylist() == [4700.0, 4600.0]
    encoded = pa.array(["SPX240119C04700000"] * 3).dictionary_encode()
    assert parse_osi(encoded).column("valid").to_pylist() == [True] * 3
    large = pa.array(["SPX240119C04700000"], pa.large_string())
    assert parse_osi(large).column("root").to_pylist() == ["SPX"]
    with pytest.raises(TypeError, match="strings"):
        parse_osi(pa.array([1, 2]))


osi_parts = st.tuples(
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=6),
    st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)),
    st.sampled_from("CP"),
    st.integers(1, 99_999_999),
    st.sampled_from(["padded", "unpadded", "polygon"]),
)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(osi_parts, min_size=1, max_size=20))
def test_osi_round_trip(parts):
    symbols = []
    for root, day, side, strike_thousandths, style in parts:
        body = f"{day:%y%m%d}{side}{strike_thousandths:08d}"
        if style == "padded":
            symbols.append(f"{root:<6}{body}")
        elif style == "unpadded":
            symbols.append(root + body)
        else:
            symbols.append(f"O:{root}{body}")
    rows = parse_osi(symbols).to_pylist()
    for (root, day, side, strike_thousandths, _), row in zip(parts, rows, strict=True):
        assert row["valid"]
        assert (row["root"], row["expiration"], row["option_type"]) == (root, day, side)
        assert row["strike"] == strike_thousandths / 1000.0


# -------------------------------------------------------------------------- Deribit


def test_deribit_names():
    rows = parse_deribit(
        ["BTC-27DEC24-65000-C", "XRP_USDC-30JUN23-0d625-C", "ETH-5JAN24-2300-P"]
    ).to_pylist()
    assert rows[0] == {
        "underlying": "BTC",
        "expiration": dt.datetime(2024, 12, 27, 8, 0, tzinfo=UTC),
        "option_type": "C",
        "strike": 65000.0,
        "valid": True,
    }
    assert rows[1]["underlying"] == "XRP_USDC" and rows[1]["strike"] == 0.625
    assert rows[2]["expiration"] == dt.datetime(2024, 1, 5, 8, 0, tzinfo=UTC)
    assert rows[2]["option_type"] == "P"


@pytest.mark.parametrize(
    "name",
    [
        None,
        "BTC-PERPETUAL",
        "BTC-27DEC24",
        "BTC-31FEB24-1000-C",
        "BTC-27XYZ24-1000-C",
        "btc-27dec24-1-c",
    ],
)
def test_deribit_non_options_are_invalid(name):
    row = parse_deribit(pa.array([name], pa.string())).to_pylist()[0]
    assert row["valid"] is False and row["strike"] is None and row["underlying"] is None


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    st.sampled_from(["BTC", "ETH", "SOL_USDC", "XRP_USDC"]),
    st.dates(dt.date(2019, 1, 1), dt.date(2099, 12, 31)),
    st.integers(1, 10**7),
    st.integers(0, 999),
    st.sampled_from("CP"),
)
def test_deribit_round_trip(base, day, whole, thousandths, side):
    months = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
    strike_text = (
        f"{whole}d{thousandths:03d}".rstrip("0").rstrip("d") if thousandths else str(whole)
    )
    name = f"{base}-{day.day}{months[day.month - 1]}{day:%y}-{strike_text}-{side}"
    row = parse_deribit([name]).to_pylist()[0]
    assert row["valid"], name
    assert row["underlying"] == base and row["option_type"] == side
    assert row["expiration"] == dt.datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
    assert row["strike"] == float(strike_text.replace("d", "."))


def _book_summary():
    created = 1_733_000_000_000  # ms since the epoch
    return {
        "jsonrpc": "2.0",
        "result": [
            {
                "instrument_name": "BTC-27DEC24-65000-C",
                "open_interest": 1200.5,
                "mark_iv": 55.3,
                "underlying_price": 66_000.0,
                "estimated_delivery_price": 65_500.0,
                "mark_price": 0.05,
                "bid_price": 0.049,
                "ask_price": 0.051,
                "creation_timestamp": created,
            },
            {
                "instrument_name": "BTC-27DEC24-60000-P",
                "open_interest": 800,
                "mark_iv": 60.1,
                "underlying_price": 66_000.0,
                "estimated_delivery_price": 65_500.0,
                "mark_price": 0.02,
                "bid_price": None,
                "ask_price": None,
                "creation_timestamp": created + 123,
            },
            {
                "instrument_name": "BTC-28MAR25-80000-C",
                "open_interest": 300.0,
                "mark_iv": 58.0,
                "underlying_price": 67_500.0,
                "estimated_delivery_price": 65_500.0,
                "mark_price": 0.04,
                "creation_timestamp": created,
            },
            {
                "instrument_name": "BTC-PERPETUAL",
                "open_interest": 5e8,
                "creation_timestamp": created,
            },
            {"instrument_name": "BTC-27DEC24", "open_interest": 1e8, "creation_timestamp": created},
        ],
    }


def test_read_deribit_columns(tmp_path):
    path = tmp_path / "book.json"
    path.write_text(json.dumps(_book_summary()))
    for source in (_book_summary(), _book_summary()["result"], path, str(path), path.read_text()):
        chain = read_deribit(source)
        assert chain.num_rows == 3
        assert chain.schema.metadata[b"fastgex.skipped_instruments"] == b"2"
        assert chain.column("implied_vol").to_pylist() == pytest.approx([0.553, 0.601, 0.58])
        assert chain.column("forward").to_pylist() == [66_000.0, 66_000.0, 67_500.0]
        assert chain.column("multiplier").to_pylist() == [1.0, 1.0, 1.0]
        assert chain.column("snapshot_time")[0].as_py() == dt.datetime(
            2024, 11, 30, 20, 53, 20, 123_000, tzinfo=UTC
        )
    custom = read_deribit(_book_summary(), multiplier={"BTC": 0.1})
    assert custom.column("multiplier").to_pylist() == [0.1, 0.1, 0.1]


def test_deribit_gex_in_usd_and_coin_against_the_reference():
    chain = read_deribit(_book_summary())
    snapshot = chain.column("snapshot_time")[0].as_py()
    expected = {"dollars_per_1pct": 0.0, "units_per_1pct": 0.0}
    for row in chain.to_pylist():
        years = (row["expiration"] - snapshot).total_seconds() / (365.0 * 86_400.0)
        gamma = reference.black76_gamma(row["forward"], row["strike"], row["implied_vol"], years)
        sign = -1.0 if row["option_type"] == "C" else 1.0  # the default convention
        for unit in expected:
            expected[unit] += reference.contract_gex(
                gamma, sign * row["open_interest"], 1.0, row["forward"], unit
            )
    usd = fastgex.gex(chain)
    coin = fastgex.gex(chain, unit="units_per_1pct")
    assert usd.total("BTC") == pytest.approx(expected["dollars_per_1pct"], rel=1e-12)
    assert coin.total("BTC") == pytest.approx(expected["units_per_1pct"], rel=1e-12)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"error": "nope"}, "'result'"),
        ([], "no rows"),
        ("{not json", "not JSON"),
        ([{"instrument_name": "BTC-27DEC24-65000-C"}], "missing fields"),
        ([{"instrument_name": "BTC-PERPETUAL", "open_interest": 1.0}], "no option rows"),
        ([{"instrument_name": "BTC-31FEB24-1000-C", "open_interest": 1.0}], "is not an option"),
        ([1, 2], "JSON object"),
    ],
)
def test_read_deribit_bad_input(source, message):
    with pytest.raises(ValueError, match=message):
        read_deribit(source)


def test_read_chain_sniffs_deribit_and_says_which_format(tmp_path):
    path = tmp_path / "book_summary.json"
    path.write_text(json.dumps(_book_summary()))
    chain = fastgex.read_chain(path)
    assert chain.schema.metadata[b"fastgex.format"] == b"deribit"
    assert fastgex.gex(path).total("BTC") == pytest.approx(fastgex.gex(chain).total("BTC"))
    csv_path = tmp_path / "plain.csv"
    csv_path.write_text("underlying,strike,option_type,open_interest,implied_vol,time_to_expiry\n")
    assert fastgex.read_chain(csv_path).schema.metadata[b"fastgex.format"] == b"csv"


# -------------------------------------------------------------------- futures options


def _futures_rows():
    return pa.table(
        {
            "underlying": ["ES", "ES", "cl", "GC"],
            "strike": [5000.0, 4900.0, 75.0, 2000.0],
            "option_type": ["C", "P", "C", "P"],
            "open_interest": [1000.0, 2000.0, 5000.0, 300.0],
            "implied_vol": [0.15, 0.18, 0.35, 0.16],
            "time_to_expiry": [0.1, 0.1, 0.25, 0.5],
            "futures_price": [5050.0, 5050.0, 76.5, 2010.0],
        }
    )


def test_futures_chain_uses_black76_and_product_multipliers():
    from fastgex.io.futures import futures_chain

    chain = futures_chain(_futures_rows())
    assert chain.column("multiplier").to_pylist() == [50.0, 50.0, 1000.0, 100.0]
    result = fastgex.gex(chain)
    for name in ("ES", "cl", "GC"):
        expected = 0.0
        for row in chain.to_pylist():
            if row["underlying"] != name:
                continue
            gamma = reference.black76_gamma(
                row["forward"], row["strike"], row["implied_vol"], row["time_to_expiry"]
            )
            sign = -1.0 if row["option_type"] == "C" else 1.0
            expected += reference.contract_gex(
                gamma, sign * row["open_interest"], row["multiplier"], row["forward"]
            )
        assert result.total(name) == pytest.approx(expected, rel=1e-12)


def test_futures_chain_multipliers_given_or_missing():
    from fastgex import ChainError
    from fastgex.io.futures import futures_chain

    rows = _futures_rows()
    own = rows.append_column("multiplier", pa.array([None, 25.0, None, None], pa.float64()))
    assert futures_chain(own).column("multiplier").to_pylist() == [50.0, 25.0, 1000.0, 100.0]
    odd = rows.set_column(0, "underlying", pa.array(["ZZ", "ES", "CL", "GC"]))
    with pytest.raises(ChainError, match="ZZ"):
        futures_chain(odd)
    assert futures_chain(odd, multipliers={"ZZ": 10.0}).column("multiplier")[0].as_py() == 10.0
    with pytest.raises(ChainError, match="forward"):
        futures_chain(rows.drop_columns(["futures_price"]))


def test_read_chain_keeps_the_format_when_columns_are_renamed(tmp_path):
    path = tmp_path / "aliased.csv"  # "ticker" and "iv" are aliases: the columns get renamed
    path.write_text("ticker,strike,type,oi,iv,tte\nSPX,4700,C,10,0.2,0.1\n")
    chain = fastgex.read_chain(path)
    assert "underlying" in chain.column_names
    assert chain.schema.metadata[b"fastgex.format"] == b"csv"
