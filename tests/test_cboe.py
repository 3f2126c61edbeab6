"""Tests for the CBOE delayed-quote reader (fastgex.io.cboe)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgex.io import read_cboe, read_cboe_csv, read_cboe_json
from fastgex.io.cboe import CBOE_SCHEMA, ROOT_TO_UNDERLYING

NEW_YORK = ZoneInfo("America/New_York")
CHAINS_DIR = Path(
    os.environ.get(
        "FASTGEX_CHAINS_DIR",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chains",
    )
)
realdata = pytest.mark.realdata
needs_chains = pytest.mark.skipif(
    not CHAINS_DIR.is_dir(), reason=f"real chains not found at {CHAINS_DIR}"
)

# From shared/data/README.md: underlying and spot as the table gives them (rounded there to
# 2 or 4 decimals); the snapshot minute is the one in each file's "Date:" line, which is more
# precise than the table. Two differ from the table by a minute: gflows NDX says 8:31 PM (table
# 20:30) and carlos SPX/SPY say 4:31 PM (table "16:30 ... same minute"; only XSP is 4:30).
REAL_CSV = {
    "phammings_spx_quotedata_2024-01-07.csv": ("SPX", 4697.2402, datetime(2024, 1, 7, 10, 52)),
    "phammings_spx_quotedata_2022-06-11.csv": ("SPX", 3900.8601, datetime(2022, 6, 11, 20, 47)),
    "luca_ndx_quotedata_2022-02-05.csv": ("NDX", 14694.3506, datetime(2022, 2, 5, 20, 26)),
    "luca_spx_quotedata_2022-02-05.csv": ("SPX", 4500.5298, datetime(2022, 2, 5, 20, 9)),
    "nickkxsper_spx_quotedata_2022-02-19.csv": ("SPX", 4348.8701, datetime(2022, 2, 19, 16, 17)),
    "nickkxsper_spx_quotedata_2022-07-12.csv": ("SPX", 3856.28, datetime(2022, 7, 12, 11, 55)),
    "carlos_spx_quotedata_2023-09-14.csv": ("SPX", 4505.10, datetime(2023, 9, 14, 16, 31)),
    "carlos_spy_quotedata_2023-09-14.csv": ("SPY", 450.81, datetime(2023, 9, 14, 16, 31)),
    "carlos_xsp_quotedata_2023-09-14.csv": ("XSP", 450.51, datetime(2023, 9, 14, 16, 30)),
    "gflows_spx_quotedata_2022-12-12.csv": ("SPX", 3990.56, datetime(2022, 12, 12, 20, 30)),
    "gflows_ndx_quotedata_2022-12-12.csv": ("NDX", 11706.44, datetime(2022, 12, 12, 20, 31)),
    "gflows_rut_quotedata_2022-12-12.csv": ("RUT", 1817.49, datetime(2022, 12, 12, 20, 30)),
}
REAL_JSON = "gflows_rut_cboe_api_2023-09-21.json"
# The feed's timestamp has no zone; the reader documents it as New York time.
REAL_JSON_EXPECTED = ("RUT", 1806.1193, datetime(2023, 9, 21, 3, 17, 42))

OSI = re.compile(r"(?P<root>[A-Z0-9]+)(?P<ymd>\d{6})(?P<cp>[CP])(?P<strike>\d{8})")
COLUMNS = [
    "Expiration Date",
    "Calls",
    "Last Sale",
    "Net",
    "Bid",
    "Ask",
    "Volume",
    "IV",
    "Delta",
    "Gamma",
    "Open Interest",
    "Strike",
    "Puts",
    "Last Sale",
    "Net",
    "Bid",
    "Ask",
    "Volume",
    "IV",
    "Delta",
    "Gamma",
    "Open Interest",
]
# Per side: output column -> position in the CSV row (call side, then put side = +12).
SIDE_POSITIONS = {
    "last": 2,
    "bid": 4,
    "ask": 5,
    "volume": 6,
    "implied_vol": 7,
    "delta": 8,
    "gamma": 9,
    "open_interest": 10,
}


def _utc(local: datetime) -> datetime:
    return local.replace(tzinfo=NEW_YORK).astimezone(timezone.utc)


def _osi_date(ymd: str) -> date:
    return date(2000 + int(ymd[:2]), int(ymd[2:4]), int(ymd[4:]))


def _body_rows(path: Path) -> list[list[str]]:
    """The rows below the column header, read independently with the csv module."""
    with path.open(newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    start = next(i for i, fields in enumerate(lines) if fields and fields[0] == "Expiration Date")
    return [fields for fields in lines[start + 1 :] if any(field.strip() for field in fields)]


def _check_schema(table: pa.Table, file_format: str) -> None:
    assert table.schema.names == CBOE_SCHEMA.names
    assert [field.type for field in table.schema] == [field.type for field in CBOE_SCHEMA]
    assert table.schema.field("snapshot_time").type == pa.timestamp("us", tz="UTC")
    metadata = table.schema.metadata
    assert set(metadata) == {
        b"fastgex.format",
        b"fastgex.spot",
        b"fastgex.snapshot_time",
        b"fastgex.description",
    }
    assert metadata[b"fastgex.format"] == file_format.encode()
    if table.num_rows:
        assert float(metadata[b"fastgex.spot"]) == table.column("spot")[0].as_py()
        assert (
            datetime.fromisoformat(metadata[b"fastgex.snapshot_time"].decode())
            == table.column("snapshot_time")[0].as_py()
        )


# --------------------------------------------------------------------------- real files


@realdata
@needs_chains
@pytest.mark.parametrize("name", sorted(REAL_CSV))
def test_real_csv_header_and_shape(name: str) -> None:
    path = CHAINS_DIR / name
    underlying, spot, snapshot = REAL_CSV[name]
    table = read_cboe(path)
    _check_schema(table, "cboe-csv")

    assert table.num_rows == 2 * len(_body_rows(path))
    spots = set(table.column("spot").to_pylist())
    assert len(spots) == 1
    assert spots.pop() == pytest.approx(spot, abs=5e-3)
    assert set(table.column("snapshot_time").to_pylist()) == {_utc(snapshot)}
    assert set(table.column("underlying").to_pylist()) == {underlying}
    assert set(table.column("multiplier").to_pylist()) == {100.0}
    assert table.column("option_type").to_pylist() == ["C", "P"] * (table.num_rows // 2)
    assert min(table.column("strike").to_pylist()) > 0
    assert table.schema.metadata[b"fastgex.description"]
    for column in ("symbol", "root", "expiration", "strike", "option_type"):
        assert table.column(column).null_count == 0, column


@realdata
@needs_chains
@pytest.mark.parametrize("name", sorted(REAL_CSV))
def test_real_csv_columns_agree_with_osi_symbol(name: str) -> None:
    table = read_cboe(CHAINS_DIR / name)
    rows = table.select(["underlying", "root", "symbol", "expiration", "strike", "option_type"])
    for underlying, root, symbol, expiration, strike, option_type in zip(
        *(column.to_pylist() for column in rows.columns), strict=True
    ):
        match = OSI.fullmatch(symbol)
        assert match, symbol
        assert root == match["root"]
        assert underlying == ROOT_TO_UNDERLYING.get(root, root)
        assert expiration == _osi_date(match["ymd"]), symbol
        assert round(strike * 1000) == int(match["strike"]), symbol
        assert option_type == match["cp"], symbol


@realdata
@needs_chains
@pytest.mark.parametrize("name", sorted(REAL_CSV))
def test_real_csv_values_match_an_independent_parse(name: str) -> None:
    path = CHAINS_DIR / name
    table = read_cboe(path)
    got = table.to_pydict()
    row = 0
    for fields in _body_rows(path):
        for offset in (0, 11):  # call side, then put side
            assert got["symbol"][row] == fields[1 + offset]
            assert got["expiration"][row] == datetime.strptime(fields[0], "%a %b %d %Y").date()
            assert got["strike"][row] == float(fields[11])
            for column, position in SIDE_POSITIONS.items():
                assert got[column][row] == float(fields[position + offset]), (column, row)
            row += 1
    assert row == table.num_rows


@realdata
@needs_chains
def test_real_csv_first_rows_of_published_file() -> None:
    table = read_cboe(CHAINS_DIR / "phammings_spx_quotedata_2024-01-07.csv")
    first_call, first_put = table.slice(0, 2).to_pylist()
    assert first_call["symbol"] == "SPXW240105C01200000"
    assert first_call["root"] == "SPXW"
    assert first_call["expiration"] == date(2024, 1, 5)
    assert first_call["open_interest"] == 24.0
    assert (first_call["bid"], first_call["ask"], first_call["last"]) == (3492.4, 3501.3, 3499.25)
    assert first_put["symbol"] == "SPXW240105P01200000"
    assert (first_put["volume"], first_put["open_interest"]) == (2.0, 0.0)
    assert table.schema.metadata[b"fastgex.description"] == b"S&P 500 INDEX"
    assert table.schema.metadata[b"fastgex.snapshot_time"] == b"2024-01-07T15:52:00+00:00"


@realdata
@needs_chains
def test_real_json() -> None:
    path = CHAINS_DIR / REAL_JSON
    underlying, spot, snapshot = REAL_JSON_EXPECTED
    table = read_cboe(path)
    _check_schema(table, "cboe-json")
    options = json.loads(path.read_text())["data"]["options"]

    assert table.num_rows == len(options)
    assert set(table.column("spot").to_pylist()) == {spot}
    assert set(table.column("snapshot_time").to_pylist()) == {_utc(snapshot)}
    assert set(table.column("underlying").to_pylist()) == {underlying}
    assert set(table.column("option_type").to_pylist()) == {"C", "P"}
    assert min(table.column("strike").to_pylist()) > 0
    assert table.schema.metadata[b"fastgex.description"] == b"^RUT"
    got = table.to_pydict()
    for row, option in enumerate(options):
        match = OSI.fullmatch(option["option"])
        assert match
        assert got["symbol"][row] == option["option"]
        assert got["root"][row] == match["root"]
        assert got["expiration"][row] == _osi_date(match["ymd"])
        assert round(got["strike"][row] * 1000) == int(match["strike"])
        assert got["option_type"][row] == match["cp"]
        assert got["implied_vol"][row] == option["iv"]
        assert got["open_interest"][row] == option["open_interest"]
        assert got["gamma"][row] == option["gamma"]
        assert got["last"][row] == option["last_trade_price"]


@realdata
@needs_chains
def test_real_files_read_from_file_objects_and_format_flags() -> None:
    csv_path = CHAINS_DIR / "nickkxsper_spx_quotedata_2022-07-12.csv"
    json_path = CHAINS_DIR / REAL_JSON
    by_path = read_cboe(csv_path)
    with csv_path.open("rb") as handle:
        assert read_cboe(handle).equals(by_path, check_metadata=True)
    with csv_path.open(encoding="utf-8") as handle:
        assert read_cboe(handle, format="csv").equals(by_path, check_metadata=True)
    assert read_cboe_csv(str(csv_path)).equals(by_path)
    assert read_cboe(json_path, format="json").equals(read_cboe_json(json_path))
    with pytest.raises(ValueError, match="Expiration Date"):
        read_cboe(json_path, format="csv")
    with pytest.raises(ValueError, match="invalid JSON"):
        read_cboe(csv_path, format="json")


@realdata
@needs_chains
def test_real_squeezemetrics_history_is_not_a_quote_file() -> None:
    path = CHAINS_DIR / "nickkxsper_squeezemetrics_dix_gex_2011-2022.csv"
    with pytest.raises(ValueError, match=r"not a CBOE quote file.*line 1: 'date,price,dix,gex'"):
        read_cboe(path)


@realdata
@needs_chains
def test_real_largest_csv_reads_fast() -> None:
    path = max(CHAINS_DIR.glob("*quotedata*.csv"), key=lambda item: item.stat().st_size)
    read_cboe(path)  # warm up pyarrow's compute kernels
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        read_cboe(path)
        best = min(best, time.perf_counter() - start)
    assert best < 0.5, f"{path.name} took {best:.3f} s"


# --------------------------------------------------------------------------- synthetic CSV

NAME_LINE = "S&P 500 INDEX,Last: 4697.2402,Change:  8.5602"
DATE_LINE = (
    '"Date: January 7, 2024 at 10:52 AM EST",Bid: 4645.23,Ask: 4753.8999,Size: 1*1,Volume: 0'
)
ROWS = [
    "Fri Jan 05 2024,SPXW240105C04700000,10.5,0.5,10,11,100,0.15,0.52,0.002,1000,4700.00,"
    "SPXW240105P04700000,9.5,-0.5,9,10,200,0.16,-0.48,0.0021,2000",
    "Fri Jan 19 2024,SPX240119C04750000,20,0,19.5,20.5,5,0,0.45,0.0015,300,4750.00,"
    "SPX240119P04750000,25,0,24.5,25.5,7,0.17,-0.55,0.0016,400",
]


def make_csv(
    *,
    first: str = "",
    name_line: str | None = NAME_LINE,
    date_line: str | None = DATE_LINE,
    rows: list[str] = ROWS,
    trailing: str = "",
    newline: str = "\n",
) -> bytes:
    lines = [first]
    lines += [line + trailing for line in (name_line, date_line) if line is not None]
    lines += [",".join(COLUMNS), *rows]
    return (newline.join(lines) + newline).encode("utf-8")


def test_synthetic_csv_basic_rows_and_types() -> None:
    table = read_cboe(io.BytesIO(make_csv()))
    _check_schema(table, "cboe-csv")
    assert table.num_rows == 4
    got = table.to_pydict()
    assert got["symbol"] == [
        "SPXW240105C04700000",
        "SPXW240105P04700000",
        "SPX240119C04750000",
        "SPX240119P04750000",
    ]
    assert got["root"] == ["SPXW", "SPXW", "SPX", "SPX"]
    assert got["underlying"] == ["SPX"] * 4
    assert got["option_type"] == ["C", "P", "C", "P"]
    assert got["expiration"] == [date(2024, 1, 5)] * 2 + [date(2024, 1, 19)] * 2
    assert got["strike"] == [4700.0, 4700.0, 4750.0, 4750.0]
    assert got["open_interest"] == [1000.0, 2000.0, 300.0, 400.0]
    assert got["implied_vol"] == [0.15, 0.16, 0.0, 0.17]  # 0 stays 0
    assert got["gamma"] == [0.002, 0.0021, 0.0015, 0.0016]
    assert got["delta"] == [0.52, -0.48, 0.45, -0.55]
    assert got["bid"] == [10.0, 9.0, 19.5, 24.5]
    assert got["ask"] == [11.0, 10.0, 20.5, 25.5]
    assert got["last"] == [10.5, 9.5, 20.0, 25.0]
    assert got["volume"] == [100.0, 200.0, 5.0, 7.0]
    assert got["spot"] == [4697.2402] * 4
    assert got["multiplier"] == [100.0] * 4
    assert got["snapshot_time"] == [datetime(2024, 1, 7, 15, 52, tzinfo=timezone.utc)] * 4
    metadata = table.schema.metadata
    assert metadata[b"fastgex.spot"] == b"4697.2402"
    assert metadata[b"fastgex.snapshot_time"] == b"2024-01-07T15:52:00+00:00"
    assert metadata[b"fastgex.description"] == b"S&P 500 INDEX"


@pytest.mark.parametrize(
    ("wording", "expected_utc"),
    [
        ("January 7, 2024 at 10:52 AM EST", datetime(2024, 1, 7, 15, 52)),
        ("February 5 2022, 8:26 PM EST", datetime(2022, 2, 6, 1, 26)),
        ("July 12, 2022, 11:55 AM EDT", datetime(2022, 7, 12, 15, 55)),
        ("September 14, 2023 at 4:31 PM EDT", datetime(2023, 9, 14, 20, 31)),
        ("Sept 14, 2023 at 4:31 p.m. ET", datetime(2023, 9, 14, 20, 31)),
        ("7 January 2024 at 10:52 EST", datetime(2024, 1, 7, 15, 52)),
        ("14 September 2023, 16:31:05 EDT", datetime(2023, 9, 14, 20, 31, 5)),
        ("January 7, 2024 at 12:05 AM EST", datetime(2024, 1, 7, 5, 5)),
        ("January 7, 2024 at 12:05 PM EST", datetime(2024, 1, 7, 17, 5)),
        ("January 7, 2024 at 10:52 AM", datetime(2024, 1, 7, 15, 52)),
        ("January 7, 2024 at 15:52 UTC", datetime(2024, 1, 7, 15, 52)),
        # The repeated hour when DST ends: the zone label picks which one.
        ("November 5, 2023 at 1:30 AM EDT", datetime(2023, 11, 5, 5, 30)),
        ("November 5, 2023 at 1:30 AM EST", datetime(2023, 11, 5, 6, 30)),
    ],
)
def test_synthetic_date_wordings(wording: str, expected_utc: datetime) -> None:
    date_line = f'"Date: {wording}",Bid: 0,Ask: 0,Size: 0*0,Volume: 0'
    table = read_cboe(io.BytesIO(make_csv(date_line=date_line)))
    assert table.column("snapshot_time")[0].as_py() == expected_utc.replace(tzinfo=timezone.utc)


@given(
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31)),
    style=st.sampled_from(["at", "comma", "eu"]),
)
@settings(max_examples=60, deadline=None)
def test_synthetic_date_round_trip(moment: datetime, style: str) -> None:
    moment = moment.replace(second=0, microsecond=0)
    local = moment.replace(tzinfo=NEW_YORK)
    zone = local.tzname()  # EST or EDT, as CBOE writes it
    clock = f"{(moment.hour - 1) % 12 + 1}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"
    month = moment.strftime("%B")
    if style == "at":
        wording = f"{month} {moment.day}, {moment.year} at {clock} {zone}"
    elif style == "comma":
        wording = f"{month} {moment.day} {moment.year}, {clock} {zone}"
    else:
        wording = f"{moment.day} {month} {moment.year} {moment:%H:%M} {zone}"
    table = read_cboe(io.BytesIO(make_csv(date_line=f'"Date: {wording}",Bid: 0')))
    got = table.column("snapshot_time")[0].as_py()
    # Wall-clock times skipped by the spring-forward jump have no exact answer; others do.
    if local.astimezone(timezone.utc).astimezone(NEW_YORK).replace(tzinfo=None) == moment:
        assert got.astimezone(NEW_YORK).replace(tzinfo=None) == moment
        assert got.astimezone(NEW_YORK).tzname() == zone


def test_synthetic_example_data_first_line_and_trailing_commas() -> None:
    expected = read_cboe(io.BytesIO(make_csv()))
    example = read_cboe(io.BytesIO(make_csv(first="---Example Data---")))
    no_blank = read_cboe(io.BytesIO(make_csv()[1:]))  # no first line at all
    trailing = read_cboe(io.BytesIO(make_csv(trailing="," * 19)))
    for table in (example, no_blank, trailing):
        assert table.equals(expected, check_metadata=True)


def test_synthetic_trailing_commas_on_every_line() -> None:
    data = make_csv(trailing=",,", rows=[row + ",," for row in ROWS])
    data = data.replace(
        b",".join(c.encode() for c in COLUMNS), b",".join(c.encode() for c in COLUMNS) + b",,"
    )
    assert read_cboe(io.BytesIO(data)).equals(read_cboe(io.BytesIO(make_csv())))


def test_synthetic_quoted_numbers_with_thousands_separators() -> None:
    name_line = 'SPDR S&P 500 ETF Trust,"Last: 4,697.25",Change:  3.85'
    date_line = '"Date: September 14, 2023 at 4:31 PM EDT",Bid: 450.81,"Volume: 71,039,449"'
    table = read_cboe(io.BytesIO(make_csv(name_line=name_line, date_line=date_line)))
    assert table.column("spot")[0].as_py() == 4697.25
    assert table.schema.metadata[b"fastgex.description"] == b"SPDR S&P 500 ETF Trust"


def test_synthetic_crlf_bom_blank_and_odd_last_lines() -> None:
    expected = read_cboe(io.BytesIO(make_csv()))
    crlf = b"\xef\xbb\xbf" + make_csv(newline="\r\n")
    assert read_cboe(io.BytesIO(crlf)).equals(expected, check_metadata=True)
    blank_tail = make_csv() + b"\n\n   \n"
    assert read_cboe(io.BytesIO(blank_tail)).equals(expected, check_metadata=True)
    truncated_tail = make_csv() + b"Fri Jan 19 2024,SPX240119C048"
    assert read_cboe(io.BytesIO(truncated_tail)).equals(expected, check_metadata=True)


def test_synthetic_inputs_paths_and_file_objects(tmp_path: Path) -> None:
    data = make_csv()
    path = tmp_path / "spx_quotedata.csv"
    path.write_bytes(data)
    expected = read_cboe(io.BytesIO(data))
    assert read_cboe(path).equals(expected, check_metadata=True)
    assert read_cboe(str(path)).equals(expected, check_metadata=True)
    assert read_cboe(io.StringIO(data.decode())).equals(expected, check_metadata=True)
    with path.open("rb") as handle:
        assert read_cboe_csv(handle).equals(expected, check_metadata=True)
    with path.open(encoding="utf-8") as handle:
        assert read_cboe(handle).equals(expected, check_metadata=True)


def test_synthetic_missing_numbers_become_nulls() -> None:
    rows = [
        "Fri Jan 05 2024,SPXW240105C04700000,,0.5,10,11,,,0.52,NaN,1000,4700.00,"
        "SPXW240105P04700000,9.5,-0.5,9,10,200,0.16,-0.48,0.0021,",
    ]
    table = read_cboe(io.BytesIO(make_csv(rows=rows)))
    call, put = table.to_pylist()
    assert (call["last"], call["volume"], call["implied_vol"], call["gamma"]) == (None,) * 4
    assert call["delta"] == 0.52
    assert put["open_interest"] is None
    assert put["implied_vol"] == 0.16


def test_synthetic_blank_symbol_side_is_dropped() -> None:
    rows = [
        "Fri Jan 05 2024,SPXW240105C04700000,10.5,0.5,10,11,100,0.15,0.52,0.002,1000,4700.00,"
        ",,,,,,,,,",
        ROWS[1],
    ]
    table = read_cboe(io.BytesIO(make_csv(rows=rows)))
    assert table.column("symbol").to_pylist() == [
        "SPXW240105C04700000",
        "SPX240119C04750000",
        "SPX240119P04750000",
    ]


def test_synthetic_non_osi_symbol_keeps_row_with_null_root() -> None:
    rows = [ROWS[0].replace("SPXW240105C04700000", "WEIRD"), ROWS[1]]
    table = read_cboe(io.BytesIO(make_csv(rows=rows)))
    assert table.column("root").to_pylist() == [None, "SPXW", "SPX", "SPX"]
    assert table.column("underlying").to_pylist() == [None, "SPX", "SPX", "SPX"]
    assert table.column("strike")[0].as_py() == 4700.0


@pytest.mark.parametrize(
    ("root", "underlying"),
    [*ROOT_TO_UNDERLYING.items(), ("SPX", "SPX"), ("SPY", "SPY"), ("NDX", "NDX")],
)
def test_synthetic_underlying_mapping(root: str, underlying: str) -> None:
    rows = [row.replace("SPXW", root).replace("SPX2", f"{root}2") for row in ROWS]
    table = read_cboe(io.BytesIO(make_csv(rows=rows)))
    assert table.column("root").to_pylist() == [root] * 4
    assert table.column("underlying").to_pylist() == [underlying] * 4


def test_synthetic_underlying_override() -> None:
    table = read_cboe(io.BytesIO(make_csv()), underlying="SPX-INDEX")
    assert table.column("underlying").to_pylist() == ["SPX-INDEX"] * 4
    assert table.column("root").to_pylist() == ["SPXW", "SPXW", "SPX", "SPX"]
    with pytest.raises(ValueError, match="underlying must be a non-empty string"):
        read_cboe(io.BytesIO(make_csv()), underlying=" ")


# --------------------------------------------------------------------------- synthetic JSON


def make_json(**overrides: object) -> dict:
    document: dict = {
        "timestamp": "2023-09-21 03:17:42",
        "data": {
            "symbol": "^RUT",
            "current_price": 1806.1193,
            "options": [
                {
                    "option": "RUTW231020C01800000",
                    "bid": 40.0,
                    "ask": 41.0,
                    "iv": 0.18,
                    "open_interest": 12.0,
                    "volume": 3.0,
                    "delta": 0.55,
                    "gamma": 0.004,
                    "last_trade_price": 40.5,
                },
                {"option": "RUT231020P01805000", "iv": 0.0, "open_interest": None, "gamma": 1},
            ],
        },
        "symbol": "_RUT",
    }
    document.update(overrides)
    return document


def test_synthetic_json() -> None:
    table = read_cboe(io.BytesIO(json.dumps(make_json()).encode()))
    _check_schema(table, "cboe-json")
    first, second = table.to_pylist()
    assert first["underlying"] == second["underlying"] == "RUT"
    assert (first["root"], second["root"]) == ("RUTW", "RUT")
    assert (first["expiration"], first["strike"], first["option_type"]) == (
        date(2023, 10, 20),
        1800.0,
        "C",
    )
    assert (second["strike"], second["option_type"]) == (1805.0, "P")
    assert (first["implied_vol"], first["last"], first["volume"]) == (0.18, 40.5, 3.0)
    assert (second["implied_vol"], second["open_interest"], second["bid"]) == (0.0, None, None)
    assert second["gamma"] == 1.0
    assert first["snapshot_time"] == datetime(2023, 9, 21, 7, 17, 42, tzinfo=timezone.utc)
    assert table.schema.metadata[b"fastgex.description"] == b"^RUT"


def test_synthetic_json_sniffing_and_timestamp_with_offset() -> None:
    text = "\n  " + json.dumps(make_json(timestamp="2023-09-21T03:17:42Z"))
    table = read_cboe(io.StringIO(text))
    assert table.schema.metadata[b"fastgex.format"] == b"cboe-json"
    assert table.column("snapshot_time")[0].as_py() == datetime(
        2023, 9, 21, 3, 17, 42, tzinfo=timezone.utc
    )
    assert read_cboe(io.StringIO(text), underlying="R2K").column("underlying")[0].as_py() == "R2K"


# --------------------------------------------------------------------------- errors


def test_error_not_a_cboe_file() -> None:
    data = b"date,price,dix,gex\n2011-05-02,1361.2,0.37,1897312571.4\n"
    with pytest.raises(ValueError, match=r"Expiration Date.*found line 1: 'date,price,dix,gex'"):
        read_cboe(io.BytesIO(data))
    with pytest.raises(ValueError, match=r"not a CBOE quote file.*line 1: '\[1, 2\]'"):
        read_cboe(io.BytesIO(b"[1, 2]"))  # only '{' is sniffed as JSON
    with pytest.raises(ValueError, match="found an empty file"):
        read_cboe(io.BytesIO(b""))
    with pytest.raises(ValueError, match="found only blank lines"):
        read_cboe(io.BytesIO(b"\n\n  \n"))


def test_error_header_without_spot() -> None:
    with pytest.raises(ValueError, match=r"expected the spot as 'Last: <price>'.*line 4.*line 2"):
        read_cboe(io.BytesIO(make_csv(name_line="S&P 500 INDEX,Change:  8.56")))
    with pytest.raises(ValueError, match=r"line 2: expected the spot.*found 'Last: n/a'"):
        read_cboe(io.BytesIO(make_csv(name_line="S&P 500 INDEX,Last: n/a")))
    with pytest.raises(ValueError, match=r"line 2: expected the spot.*'Last: 0'"):
        read_cboe(io.BytesIO(make_csv(name_line="S&P 500 INDEX,Last: 0")))


def test_error_header_without_date() -> None:
    with pytest.raises(ValueError, match=r"expected the snapshot time as 'Date: .*line 3"):
        read_cboe(io.BytesIO(make_csv(date_line=None)))
    with pytest.raises(ValueError, match=r"line 3: expected the snapshot time.*'Date: soon'"):
        read_cboe(io.BytesIO(make_csv(date_line='"Date: soon",Bid: 0')))
    with pytest.raises(ValueError, match=r"line 3: .*unsupported time zone 'PST'"):
        read_cboe(io.BytesIO(make_csv(date_line='"Date: July 12, 2022, 8:55 AM PST"')))
    with pytest.raises(ValueError, match=r"line 3: .*unknown month 'Smarch'"):
        read_cboe(io.BytesIO(make_csv(date_line='"Date: Smarch 12, 2022, 8:55 AM EST"')))
    with pytest.raises(ValueError, match=r"line 3: .*day is out of range"):
        read_cboe(io.BytesIO(make_csv(date_line='"Date: February 30, 2022, 8:55 AM EST"')))


def test_error_empty_body() -> None:
    with pytest.raises(ValueError, match=r"option rows after the column header on line 4.*empty"):
        read_cboe(io.BytesIO(make_csv(rows=[])))
    with pytest.raises(ValueError, match="only blanks"):
        read_cboe(io.BytesIO(make_csv(rows=[",,,,,,,,,,,,,,,,,,,,,"])))


def test_error_bad_rows_name_the_line() -> None:
    short = ["Fri Jan 05 2024,SPXW240105C04700000,1,2", ROWS[1]]
    with pytest.raises(ValueError, match=r"line 5: expected 22 comma-separated fields.*found 4"):
        read_cboe(io.BytesIO(make_csv(rows=short)))
    word = [ROWS[0], ROWS[1].replace(",0.45,", ",abc,")]
    with pytest.raises(
        ValueError, match=r"line 6: expected a number in column 9 \(call 'Delta'\).*'abc'"
    ):
        read_cboe(io.BytesIO(make_csv(rows=word)))
    expiry = [ROWS[0], ROWS[1].replace("Fri Jan 19 2024", "2024-01-19")]
    with pytest.raises(ValueError, match=r"line 6: expected an expiration date.*'2024-01-19'"):
        read_cboe(io.BytesIO(make_csv(rows=expiry)))


def test_error_bad_column_header() -> None:
    data = make_csv().replace(b",Strike,", b",Price,")
    with pytest.raises(ValueError, match=r"line 4: expected a 'Strike' column"):
        read_cboe(io.BytesIO(data))
    data = make_csv().replace(b",Gamma,Open Interest\n", b",Open Interest\n")
    with pytest.raises(ValueError, match=r"line 4: expected put columns 'gamma'"):
        read_cboe(io.BytesIO(data))


def test_error_unreadable_symbols_need_underlying() -> None:
    rows = [ROWS[0].replace("SPXW240105", "X")]
    with pytest.raises(ValueError, match="pass underlying="):
        read_cboe(io.BytesIO(make_csv(rows=rows)))
    table = read_cboe(io.BytesIO(make_csv(rows=rows)), underlying="SPX")
    assert table.column("root").null_count == 2


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1, 2], r"data.options\[\]; found list"),
        ({"data": {}}, r"data.options\[\]; found top-level keys \['data'\]"),
        (make_json(data={"current_price": 1.0, "options": []}), "found an empty list"),
        (make_json(data={"options": make_json()["data"]["options"]}), "data.current_price"),
        (make_json(timestamp=None), "top-level 'timestamp'; found None"),
        (make_json(timestamp="yesterday"), "'timestamp' like .*found 'yesterday'"),
        (
            make_json(data={**make_json()["data"], "options": [{"option": "RUT"}]}),
            r"data.options\[0\].option: expected an OSI symbol.*'RUT'",
        ),
        (
            make_json(data={**make_json()["data"], "options": [{"option": None}]}),
            r"data.options\[0\].option: expected an OSI symbol.*None",
        ),
        (
            make_json(
                data={
                    **make_json()["data"],
                    "options": [{"option": "RUTW231020C01800000", "iv": "0.2"}],
                }
            ),
            r"data.options\[0\].iv: expected a number or null; found '0.2'",
        ),
        (
            make_json(data={**make_json()["data"], "options": ["RUTW231020C01800000"]}),
            r"data.options\[0\]: expected an object",
        ),
    ],
)
def test_error_json(document: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_cboe(io.BytesIO(json.dumps(document).encode()), format="json")


def test_error_json_invalid_text() -> None:
    with pytest.raises(ValueError, match="expected a CBOE JSON document; found invalid JSON"):
        read_cboe(io.BytesIO(b'{"timestamp": '))


def test_error_arguments() -> None:
    with pytest.raises(ValueError, match="format must be 'auto', 'csv' or 'json'; got 'xml'"):
        read_cboe(io.BytesIO(make_csv()), format="xml")
    with pytest.raises(TypeError, match="path or a readable file-like object; got int"):
        read_cboe(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"io\.BytesIO"):
        read_cboe(make_csv())  # type: ignore[arg-type]


def test_expired_weekend_rows_are_kept() -> None:
    # Validation (expired contracts, zero IV) is a later step: the reader keeps every row.
    table = read_cboe(io.BytesIO(make_csv()))
    snapshot_day = table.column("snapshot_time")[0].as_py().date()
    assert table.column("expiration")[0].as_py() < snapshot_day - timedelta(days=1)
