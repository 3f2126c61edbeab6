"""Deribit option book summaries (``public/get_book_summary_by_currency``) as a chain.

Deribit quotes crypto options on a forward: ``underlying_price`` is the price the
exchange uses for each option's implied volatility (the future of that expiry, or a
synthetic forward), so every row gets a ``forward`` column and fastgex prices it with
Black-76. ``mark_iv`` is in percent; options settle at 08:00 UTC; one contract is one
coin of the base currency (inverse options), so the multiplier is 1 unless told
otherwise (linear USDC options have other contract sizes: pass ``multiplier=``).

GEX in USD is the default unit (``dollars_per_1pct``: USD of the coin dealers trade
after a 1% move); ``unit="units_per_1pct"`` gives the same in coins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fastgex.io.symbols import parse_deribit

__all__ = ["DERIBIT_FIELDS", "read_deribit"]

#: Book-summary fields read (others are ignored); :func:`read_deribit` says what each becomes.
DERIBIT_FIELDS: tuple[str, ...] = (
    "instrument_name",
    "open_interest",
    "mark_iv",
    "underlying_price",
    "estimated_delivery_price",
    "mark_price",
    "bid_price",
    "ask_price",
    "creation_timestamp",
)


def read_deribit(
    source: Any,
    *,
    multiplier: float | Mapping[str, float] = 1.0,
) -> pa.Table:
    """Read a Deribit book summary into a canonical chain.

    Parameters
    ----------
    source : path, str, bytes, sequence of mappings or pyarrow.Table
        The JSON-RPC response (``{"result": [...]}``) or its ``result`` list, as a file
        path, JSON text, parsed Python objects, or a table with the book-summary fields.
    multiplier : float or mapping
        Coins per contract: one number, or per underlying (``{"XRP_USDC": ...}``).

    Returns
    -------
    pyarrow.Table
        One row per option: ``underlying`` (``BTC``, ``ETH``, ``XRP_USDC``...), ``symbol``,
        ``strike``, ``option_type``, ``expiration`` (the 08:00 UTC settlement instant),
        ``open_interest``, ``implied_vol`` (``mark_iv / 100``), ``forward``,
        ``index_price``, ``mark_price``, ``bid``, ``ask`` (in coin), ``multiplier`` and
        ``snapshot_time`` (the latest ``creation_timestamp``, one instant for the
        whole summary). Futures and perpetuals in the summary are left out and
        counted in the table metadata (``fastgex.skipped_instruments``); option names
        that cannot be parsed raise.

    Raises
    ------
    ValueError
        No book-summary rows, a missing field, or an option name that is not Deribit's.
    """
    records = _records(source)
    missing = [name for name in ("instrument_name", "open_interest") if name not in records]
    if missing:
        raise ValueError(f"Deribit book summary: missing fields {missing}")
    names = records["instrument_name"]
    parsed = parse_deribit(names)
    trimmed = pc.utf8_trim_whitespace(names)  # as parse_deribit reads them
    is_option = pc.fill_null(pc.match_substring_regex(trimmed, r"-[CP]$"), False)
    bad = pc.and_(is_option, pc.invert(parsed.column("valid")))
    if pc.any(bad).as_py():
        index = pc.index(bad, True).as_py()
        raise ValueError(
            f"Deribit book summary: instrument_name {names[index].as_py()!r} at row {index} "
            "is not an option name like 'BTC-27DEC24-65000-C'"
        )
    keep = parsed.column("valid")
    skipped = len(names) - pc.sum(keep.cast(pa.int64())).as_py()
    options = parsed.filter(keep)
    kept = {name: column.filter(keep) for name, column in records.items()}
    if options.num_rows == 0:
        raise ValueError("Deribit book summary: no option rows")
    underlying = options.column("underlying")
    snapshot = None
    if "creation_timestamp" in kept:
        latest = pc.max(kept["creation_timestamp"].cast(pa.int64())).as_py()
        snapshot = pa.scalar(latest * 1000, pa.timestamp("us", tz="UTC"))
    columns: dict[str, Any] = {
        "underlying": underlying,
        "symbol": kept["instrument_name"],
        "strike": options.column("strike"),
        "option_type": options.column("option_type"),
        "expiration": options.column("expiration"),
        "open_interest": kept["open_interest"].cast(pa.float64()),
        "implied_vol": pc.divide(_numbers(kept, "mark_iv"), 100.0),
        "forward": _numbers(kept, "underlying_price"),
        "index_price": _numbers(kept, "estimated_delivery_price"),
        "mark_price": _numbers(kept, "mark_price"),
        "bid": _numbers(kept, "bid_price"),
        "ask": _numbers(kept, "ask_price"),
        "multiplier": _multipliers(underlying, multiplier),
    }
    if snapshot is not None:
        columns["snapshot_time"] = pa.repeat(snapshot, options.num_rows)
    table = pa.table({name: _chunked(values) for name, values in columns.items()})
    metadata = {
        b"fastgex.format": b"deribit",
        b"fastgex.skipped_instruments": str(skipped).encode(),
    }
    return table.replace_schema_metadata(metadata)


def _records(source: Any) -> dict[str, pa.ChunkedArray]:
    """The book-summary rows as columns, from any of the accepted forms."""
    if isinstance(source, pa.Table):
        return {name: source.column(name) for name in source.column_names}
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and not source.lstrip().startswith(("{", "["))
    ):
        source = Path(source).read_bytes()
    if isinstance(source, (bytes, str)):
        try:
            source = json.loads(source)
        except ValueError as err:  # JSONDecodeError, and UnicodeDecodeError for bytes
            raise ValueError(f"Deribit book summary: not JSON ({err})") from err
    if isinstance(source, Mapping):
        if "result" not in source:
            raise ValueError("Deribit book summary: expected a 'result' list in the response")
        source = source["result"]
    if not isinstance(source, Sequence) or isinstance(source, (str, bytes)):
        raise ValueError("Deribit book summary: expected a list of instrument records")
    rows = [row for row in source if isinstance(row, Mapping)]
    if len(rows) != len(source):
        raise ValueError("Deribit book summary: every record must be a JSON object")
    if not rows:
        raise ValueError("Deribit book summary: no rows")
    fields = [name for name in DERIBIT_FIELDS if any(name in row for row in rows)]
    columns: dict[str, pa.ChunkedArray] = {}
    for name in fields:
        values = [row.get(name) for row in rows]
        kind = pa.string() if name == "instrument_name" else None
        try:
            array = pa.array(values, type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ValueError(f"Deribit book summary: field {name!r} has mixed types") from err
        columns[name] = pa.chunked_array([array])
    return columns


def _numbers(columns: Mapping[str, pa.ChunkedArray], name: str) -> pa.ChunkedArray:
    """A float64 column, or nulls when the summary lacks the field."""
    length = len(next(iter(columns.values())))
    if name not in columns:
        return pa.chunked_array([pa.nulls(length, pa.float64())])
    return columns[name].cast(pa.float64())


def _multipliers(underlying: pa.ChunkedArray, multiplier: Any) -> pa.Array:
    if isinstance(multiplier, Mapping):
        names = list(multiplier)
        index = pc.index_in(underlying, value_set=pa.array(names, pa.string()))
        values = pc.take(pa.array([float(multiplier[name]) for name in names]), index)
        return pc.fill_null(values, 1.0)
    return pa.repeat(pa.scalar(float(multiplier), pa.float64()), len(underlying))


def _chunked(values: Any) -> pa.ChunkedArray:
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
