"""Atheris harness: OSI and Deribit symbol parsers (fastgex.io.symbols).

Run: ``python tests/fuzz/fuzz_osi.py -atheris_runs=200000`` (libFuzzer flags work:
``-max_total_time=60``, ``-timeout=10``, a corpus folder). The parsers never raise on
any string; a row they call valid must agree with an independent reading of the symbol.
"""

from __future__ import annotations

import datetime as dt
import re
import sys

import atheris

with atheris.instrument_imports(include=["fastgex.io.symbols"]):
    from fastgex.io.symbols import parse_deribit, parse_osi

OSI = re.compile(r"^(?:[Oo]:)?([A-Za-z0-9./_]{1,6})\s*(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _osi_expected(symbol: str | None):
    """(root, date, type, strike) read with re and datetime, or None when not a symbol."""
    match = OSI.match(symbol.strip()) if symbol is not None else None
    if match is None:
        return None
    root, year, month, day, side, digits = match.groups()
    try:
        date = dt.date(2000 + int(year), int(month), int(day))
    except ValueError:
        return None
    return root, date, side, int(digits) / 1000.0


def check_osi(symbols: list[str | None]) -> None:
    table = parse_osi(symbols)
    assert table.num_rows == len(symbols)
    for symbol, row in zip(symbols, table.to_pylist(), strict=True):
        expected = _osi_expected(symbol)
        if expected is None:
            assert not row["valid"], (symbol, row)
            continue
        assert row["valid"], (symbol, row)
        assert (row["root"], row["expiration"], row["option_type"], row["strike"]) == expected


def check_deribit(names: list[str | None]) -> None:
    table = parse_deribit(names)
    assert table.num_rows == len(names)
    for name, row in zip(names, table.to_pylist(), strict=True):
        if not row["valid"]:
            assert row["strike"] is None and row["underlying"] is None, (name, row)
            continue
        text = name.strip()
        assert text.startswith(row["underlying"] + "-"), (name, row)
        assert text.endswith("-" + row["option_type"]) and row["option_type"] in ("C", "P")
        day, month, year = re.match(r"^(\d{1,2})([A-Z]{3})(\d{2})$", text.split("-")[1]).groups()
        expiry = dt.datetime(2000 + int(year), MONTHS.index(month) + 1, int(day), 8, tzinfo=dt.UTC)
        assert row["expiration"] == expiry, (name, row)
        strike = float(text.split("-")[2].replace("d", "."))
        assert row["strike"] == strike and strike == strike, (name, row)  # not NaN


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    which = provider.ConsumeIntInRange(0, 1)
    count = provider.ConsumeIntInRange(1, 4)
    values: list[str | None] = []
    for _ in range(count):
        if provider.ConsumeIntInRange(0, 15) == 0:
            values.append(None)
        else:
            values.append(provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 40)))
    (check_deribit if which else check_osi)(values)


SEEDS = (
    b"\x00\x01SPXW  241220C05000000",
    b"\x00\x01O:SPXW241220C05000000",
    b"\x01\x01BTC-27DEC24-65000-C",
    b"\x01\x01XRP_USDC-30JUN23-0d625-P",
)


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from fuzzlib import run_atheris

    run_atheris(test_one_input, SEEDS, "osi")
