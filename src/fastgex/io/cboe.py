"""Read CBOE delayed-quote option chains into Arrow tables.

Two inputs are supported:

* the "quotedata" CSV that CBOE's delayed-quote page downloads: a short header with the
  underlying's name, spot (``Last:``) and snapshot time (``Date:``), then one row per
  (expiration, strike) with the call and the put side by side;
* CBOE's JSON feed (``{"timestamp": ..., "data": {"current_price": ..., "options": [...]}}``),
  one object per option.

Both become the same table, one row per contract, described by :data:`CBOE_SCHEMA`. Values are
copied as CBOE wrote them: implied volatility stays a fraction and zeros stay zeros, because
validating quotes is a later step, not the reader's.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import IO, Any, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from fastgex.io.symbols import _osi_fields

__all__ = [
    "CBOE_SCHEMA",
    "ROOT_TO_UNDERLYING",
    "CboeSource",
    "read_cboe",
    "read_cboe_csv",
    "read_cboe_json",
]

CboeSource: TypeAlias = str | os.PathLike[str] | IO[bytes] | IO[str]
"""A path, or a binary or text file-like object opened for reading."""

CBOE_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("underlying", pa.string()),
        pa.field("root", pa.string()),
        pa.field("symbol", pa.string()),
        pa.field("expiration", pa.date32()),
        pa.field("strike", pa.float64()),
        pa.field("option_type", pa.string()),
        pa.field("open_interest", pa.float64()),
        pa.field("implied_vol", pa.float64()),
        pa.field("gamma", pa.float64()),
        pa.field("delta", pa.float64()),
        pa.field("bid", pa.float64()),
        pa.field("ask", pa.float64()),
        pa.field("last", pa.float64()),
        pa.field("volume", pa.float64()),
        pa.field("spot", pa.float64()),
        pa.field("snapshot_time", pa.timestamp("us", tz="UTC")),
        pa.field("multiplier", pa.float64()),
    ]
)
"""Columns and types of the tables returned by :func:`read_cboe` (without the metadata)."""

ROOT_TO_UNDERLYING: Mapping[str, str] = MappingProxyType(
    {"SPXW": "SPX", "NDXP": "NDX", "RUTW": "RUT", "VIXW": "VIX", "XSPW": "XSP"}
)
"""OSI roots of weekly / PM-settled series and the index they are written on.

Roots not listed here (``SPX``, ``SPY``, ``XSP``, ...) are their own underlying.
"""

_NEW_YORK = ZoneInfo("America/New_York")
_CONTRACT_MULTIPLIER = 100.0
# The column header is found by content; a real file has at most a few lines above it.
_MAX_PREAMBLE_LINES = 50
# CBOE writes zeros, not blanks, for missing quotes, but hand-edited files use these too.
_NULL_VALUES = ["", "-", "--", "N/A", "n/a", "NA", "NaN", "nan", "null", "NULL", "None"]

# OSI option symbol: root, YYMMDD, C/P, strike x 1000 in 8 digits (matched after trimming).
# The tail is fixed-width (cut by position in fastgex.io.symbols); OCC pads the root.
_OSI_PATTERN = r"^[A-Za-z0-9./_]+\s*\d{6}[CP]\d{8}$"

_SPOT_FIELD_RE = re.compile(r"^\s*Last\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)
_DATE_FIELD_RE = re.compile(r"^\s*Date\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)
_NUMBER_RE = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_US_DATE_RE = re.compile(
    r"(?P<month>[A-Za-z]{3,9})\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>\d{4})",
    re.IGNORECASE,
)
_EU_DATE_RE = re.compile(
    r"(?P<day>\d{1,2})(?:st|nd|rd|th)?\.?\s+(?P<month>[A-Za-z]{3,9})\.?,?\s+(?P<year>\d{4})",
    re.IGNORECASE,
)
_TIME_RE = re.compile(
    r"^\s*,?\s*(?:at\s+)?(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?"
    r"\s*(?P<meridiem>[AP]\.?M\.?)?\s*(?P<zone>[A-Z]{1,5})?\s*$",
    re.IGNORECASE,
)
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_NEW_YORK_ZONES = frozenset({"EST", "EDT", "ET"})
_UTC_ZONES = frozenset({"UTC", "GMT", "Z"})

# Header names (lower-cased) of one side of the CSV -> output column.
_SIDE_FIELDS = {
    "last sale": "last",
    "bid": "bid",
    "ask": "ask",
    "volume": "volume",
    "iv": "implied_vol",
    "delta": "delta",
    "gamma": "gamma",
    "open interest": "open_interest",
}
# JSON option keys -> output column.
_JSON_FIELDS = {
    "open_interest": "open_interest",
    "iv": "implied_vol",
    "gamma": "gamma",
    "delta": "delta",
    "bid": "bid",
    "ask": "ask",
    "last_trade_price": "last",
    "volume": "volume",
}
_NUMERIC_COLUMNS = (
    "open_interest",
    "implied_vol",
    "gamma",
    "delta",
    "bid",
    "ask",
    "last",
    "volume",
)


def read_cboe(
    source: CboeSource, *, format: str = "auto", underlying: str | None = None
) -> pa.Table:
    """Read a CBOE delayed-quote chain (quotedata CSV or JSON feed) into an Arrow table.

    Parameters
    ----------
    source : str, os.PathLike or file-like
        Path to the file, or a binary or text file-like object (read to the end).
    format : {"auto", "csv", "json"}, default "auto"
        Input format. ``"auto"`` reads JSON when the first non-blank byte is ``{`` and the
        quotedata CSV otherwise.
    underlying : str, optional
        Name written to the ``underlying`` column. By default it is derived from each
        symbol's OSI root through :data:`ROOT_TO_UNDERLYING` (``SPXW`` -> ``SPX``, ...);
        other roots are their own underlying.

    Returns
    -------
    pyarrow.Table
        One row per contract with the columns of :data:`CBOE_SCHEMA`, in that order. The
        schema metadata holds ``fastgex.format`` (``cboe-csv`` or ``cboe-json``),
        ``fastgex.spot``, ``fastgex.snapshot_time`` (ISO 8601, UTC) and
        ``fastgex.description`` (the underlying's name as the file gives it).

    Raises
    ------
    ValueError
        If the input is not a CBOE chain, its header lacks the spot or the snapshot time,
        it has no option rows, or a value cannot be read; the message names what was
        expected, what was found and where.
    TypeError
        If ``source`` is neither a path nor a readable file-like object.

    See Also
    --------
    read_cboe_csv, read_cboe_json

    Examples
    --------
    >>> table = read_cboe("spx_quotedata.csv")  # doctest: +SKIP
    >>> table.schema.metadata[b"fastgex.spot"]  # doctest: +SKIP
    b'4697.2402'
    """
    if format not in ("auto", "csv", "json"):
        raise ValueError(f"format must be 'auto', 'csv' or 'json'; got {format!r}")
    data, label = _read_source(source)
    if format == "auto":
        format = _sniff_format(data)
    if format == "json":
        return _read_json_bytes(data, label, underlying)
    return _read_csv_bytes(data, label, underlying)


def read_cboe_csv(source: CboeSource, *, underlying: str | None = None) -> pa.Table:
    """Read a CBOE delayed-quote "quotedata" CSV into an Arrow table.

    The header is parsed by content: an optional blank or ``---Example Data---`` first line,
    a line ``NAME,Last: SPOT,Change: ...`` and a line ``"Date: <time> EST|EDT",Bid: ...``
    (trailing commas and quoted fields are allowed). The time is New York wall-clock time
    and is converted to UTC. The body is parsed with :mod:`pyarrow.csv`; each row becomes two
    contracts, the call then the put. Expiration, strike and option type come from the
    ``Expiration Date`` and ``Strike`` columns and the side; the root from the OSI symbol.
    A side whose symbol is blank is not a contract and is dropped; a symbol that is not an
    OSI symbol keeps its row with a null ``root`` (and ``underlying``, unless given); blank
    numbers become nulls. A malformed last line (a truncated download) is ignored.

    Parameters
    ----------
    source : str, os.PathLike or file-like
        Path to the file, or a binary or text file-like object.
    underlying : str, optional
        Override for the ``underlying`` column; see :func:`read_cboe`.

    Returns
    -------
    pyarrow.Table
        Columns of :data:`CBOE_SCHEMA`; metadata ``fastgex.format`` is ``cboe-csv``.

    Raises
    ------
    ValueError
        If the file is not a CBOE quotedata CSV, the header lacks ``Last:`` or ``Date:``,
        the body is empty, or a row or value cannot be read (the message names the line).
    TypeError
        If ``source`` is neither a path nor a readable file-like object.
    """
    data, label = _read_source(source)
    return _read_csv_bytes(data, label, underlying)


def read_cboe_json(source: CboeSource, *, underlying: str | None = None) -> pa.Table:
    """Read CBOE's JSON option-chain feed into an Arrow table.

    The document is ``{"timestamp": "YYYY-MM-DD HH:MM:SS", "data": {"current_price": spot,
    "options": [{"option": OSI symbol, "iv": ..., "open_interest": ..., ...}, ...]}}``.
    Expiration, strike and option type come from the OSI symbol; ``last`` is
    ``last_trade_price``. The feed does not say which time zone ``timestamp`` is in: a time
    without an offset is assumed to be America/New_York (CBOE's) and converted to UTC.
    Missing keys and ``null`` values become nulls.

    Parameters
    ----------
    source : str, os.PathLike or file-like
        Path to the file, or a binary or text file-like object.
    underlying : str, optional
        Override for the ``underlying`` column; see :func:`read_cboe`.

    Returns
    -------
    pyarrow.Table
        Columns of :data:`CBOE_SCHEMA`; metadata ``fastgex.format`` is ``cboe-json`` and
        ``fastgex.description`` is ``data.symbol`` (e.g. ``^RUT``).

    Raises
    ------
    ValueError
        If the input is not JSON of that shape, lacks ``timestamp`` or
        ``data.current_price``, has no options, or an option has a malformed symbol or a
        non-numeric value (the message names the option).
    TypeError
        If ``source`` is neither a path nor a readable file-like object.
    """
    data, label = _read_source(source)
    return _read_json_bytes(data, label, underlying)


# --------------------------------------------------------------------------- input


def _read_source(source: CboeSource) -> tuple[bytes, str]:
    """Return the whole content of ``source`` as bytes and a name to use in messages."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        with open(path, "rb") as handle:
            data = handle.read()
        label = path
    elif isinstance(source, (bytes, bytearray)):
        # bytes could be a path or the content; refuse to guess.
        raise TypeError("source is bytes: pass a path as str, or the content as io.BytesIO")
    else:
        read = getattr(source, "read", None)
        if not callable(read):
            raise TypeError(
                f"source must be a path or a readable file-like object; got {type(source).__name__}"
            )
        content = read()
        if isinstance(content, str):
            data = content.encode("utf-8")
        elif isinstance(content, (bytes, bytearray, memoryview)):
            data = bytes(content)
        else:
            raise TypeError(f"source.read() must return bytes or str; got {type(content).__name__}")
        name = getattr(source, "name", None)
        label = (
            os.fsdecode(name) if isinstance(name, (str, bytes)) else f"<{type(source).__name__}>"
        )
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    return data, label


def _sniff_format(data: bytes) -> str:
    """Return ``"json"`` if the first non-blank byte is ``{``, else ``"csv"``."""
    start = re.match(rb"\s*", data).end()  # type: ignore[union-attr]  # always matches
    return "json" if data[start : start + 1] == b"{" else "csv"


# --------------------------------------------------------------------------- csv


@dataclass(frozen=True)
class _CsvLayout:
    """Positions of the columns the reader needs, from the CSV column header."""

    names: tuple[str, ...]  # generated unique names given to pyarrow, one per field
    header: tuple[str, ...]  # the file's own column names, for messages
    expiration: int
    strike: int
    call_symbol: int
    put_symbol: int
    call_fields: Mapping[str, int]  # output column -> field position
    put_fields: Mapping[str, int]


def _read_csv_bytes(data: bytes, label: str, underlying: str | None) -> pa.Table:
    """Parse a quotedata CSV held in memory."""
    preamble, header_fields, header_line, body = _split_preamble(data, label)
    description, spot, snapshot = _parse_preamble(preamble, header_line, label)
    layout = _csv_layout(header_fields, body, header_line, label)
    # pyarrow reports an empty body as "Empty CSV file"; say which line it follows instead.
    raw = _parse_csv_body(body, layout, header_line, label) if _first_line(body) else None
    if raw is None or raw.num_rows == 0:
        raise ValueError(
            f"{label}: expected option rows after the column header on line {header_line}; "
            "found none (empty body)"
        )

    expiration = _parse_expirations(
        raw.column(layout.names[layout.expiration]), body, header_line, label
    )
    strike = raw.column(layout.names[layout.strike])
    sides = []
    for symbol_pos, fields, option_type in (
        (layout.call_symbol, layout.call_fields, "C"),
        (layout.put_symbol, layout.put_fields, "P"),
    ):
        columns = {
            "symbol": raw.column(layout.names[symbol_pos]),
            "expiration": expiration,
            "strike": strike,
            "option_type": pa.repeat(pa.scalar(option_type, pa.string()), raw.num_rows),
        }
        for output in _NUMERIC_COLUMNS:
            columns[output] = raw.column(layout.names[fields[output]])
        sides.append(pa.table(columns))

    # File order, each call followed by its put: gather from the stacked [calls; puts].
    count = raw.num_rows
    order = np.empty(2 * count, dtype=np.int64)
    order[0::2] = np.arange(count)
    order[1::2] = np.arange(count, 2 * count)
    contracts = pa.concat_tables(sides).take(pa.array(order))
    symbol = contracts.column("symbol")
    if symbol.null_count:
        contracts = contracts.filter(pc.is_valid(symbol))
        if contracts.num_rows == 0:
            raise ValueError(
                f"{label}: expected option symbols in the Calls/Puts columns after line "
                f"{header_line}; found only blanks"
            )

    return _assemble(
        contracts,
        underlying=underlying,
        spot=spot,
        snapshot=snapshot,
        file_format="cboe-csv",
        description=description,
        label=label,
    )


def _split_preamble(
    data: bytes, label: str
) -> tuple[list[tuple[int, str, list[str]]], list[str], int, bytes]:
    """Split off the lines above the column header.

    Returns the non-blank header lines as ``(line number, text, fields)``, the column header's
    fields, its 1-based line number and the bytes after it (the body).
    """
    preamble: list[tuple[int, str, list[str]]] = []
    position = 0
    line_number = 0
    while position < len(data) and line_number < _MAX_PREAMBLE_LINES:
        end = data.find(b"\n", position)
        if end < 0:
            end = len(data)
        line = data[position:end].rstrip(b"\r").decode("utf-8", errors="replace")
        position = end + 1
        line_number += 1
        fields = _split_line(line)
        if fields and fields[0].lower() == "expiration date":
            return preamble, fields, line_number, data[position:]
        if fields:
            preamble.append((line_number, line, fields))
    if not preamble:
        found = "an empty file" if not data else f"only blank lines ({line_number})"
    else:
        found = "; ".join(f"line {number}: {_show(line)}" for number, line, _ in preamble[:3])
    raise ValueError(
        f"{label}: not a CBOE quote file: expected a column header line starting with "
        f"'Expiration Date' within the first {_MAX_PREAMBLE_LINES} lines; found {found}"
    )


def _csv_fields(line: str) -> list[str]:
    """Split one CSV line into its fields, as written."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error:  # e.g. a NUL byte in a binary file: still report the line, not crash
        return line.split(",")


def _split_line(line: str) -> list[str]:
    """Split one CSV line into stripped fields, dropping trailing empty ones."""
    fields = [field.strip() for field in _csv_fields(line)]
    while fields and not fields[-1]:
        fields.pop()
    return fields


def _parse_preamble(
    preamble: Sequence[tuple[int, str, list[str]]], header_line: int, label: str
) -> tuple[str, float, datetime]:
    """Find the description, spot and snapshot time (UTC) in the header lines."""
    spot: float | None = None
    description = ""
    snapshot: datetime | None = None
    for line_number, _, fields in preamble:
        for position, field in enumerate(fields):
            spot_match = _SPOT_FIELD_RE.match(field)
            if spot is None and spot_match:
                text = spot_match["value"].replace(",", "")
                value = float(text) if _NUMBER_RE.match(text) else math.nan
                if not (math.isfinite(value) and value > 0):
                    raise ValueError(
                        f"{label}: line {line_number}: expected the spot as 'Last: <positive "
                        f"number>'; found {_show(field)}"
                    )
                spot = value
                # The name is the field before "Last:" on the same line, when there is one.
                description = fields[0] if position > 0 else ""
            date_match = _DATE_FIELD_RE.match(field)
            if snapshot is None and date_match:
                try:
                    snapshot = _parse_snapshot_text(date_match["value"])
                except ValueError as err:
                    raise ValueError(
                        f"{label}: line {line_number}: expected the snapshot time like "
                        f"'Date: January 7, 2024 at 10:52 AM EST'; found {_show(field)} ({err})"
                    ) from err
    found = (
        "; ".join(f"line {number}: {_show(line)}" for number, line, _ in preamble)
        if preamble
        else "no header lines"
    )
    if spot is None:
        raise ValueError(
            f"{label}: expected the spot as 'Last: <price>' in the header above the column "
            f"header on line {header_line}; found {found}"
        )
    if snapshot is None:
        raise ValueError(
            f"{label}: expected the snapshot time as 'Date: <date and time>' in the header "
            f"above the column header on line {header_line}; found {found}"
        )
    return description, spot, snapshot


def _parse_snapshot_text(text: str) -> datetime:
    """Parse CBOE's snapshot wording (e.g. ``January 7, 2024 at 10:52 AM EST``) to UTC.

    Accepts month-first and day-first dates, full or abbreviated English month names, an
    optional ``at``, 12- or 24-hour clocks and an optional zone. EST/EDT/ET (or no zone) are
    America/New_York wall-clock time; UTC/GMT are UTC.
    """
    date_match = _US_DATE_RE.search(text) or _EU_DATE_RE.search(text)
    if date_match is None:
        raise ValueError("no date like 'January 7, 2024'")
    month = _month_number(date_match["month"])
    time_match = _TIME_RE.match(text[date_match.end() :])
    if time_match is None:
        raise ValueError("no time like '10:52 AM EST' after the date")
    hour = int(time_match["hour"])
    meridiem = (time_match["meridiem"] or "").replace(".", "").upper()
    if meridiem:
        if not 1 <= hour <= 12:
            raise ValueError(f"hour {hour} is not on a 12-hour clock")
        hour = hour % 12 + (12 if meridiem == "PM" else 0)
    zone = (time_match["zone"] or "ET").upper()
    if zone in _NEW_YORK_ZONES:
        tzinfo: Any = _NEW_YORK
    elif zone in _UTC_ZONES:
        tzinfo = timezone.utc
    else:
        raise ValueError(f"unsupported time zone {zone!r} (expected EST, EDT, ET, UTC or GMT)")
    local = datetime(
        int(date_match["year"]),
        month,
        int(date_match["day"]),
        hour,
        int(time_match["minute"]),
        int(time_match["second"] or 0),
        tzinfo=tzinfo,
        # In the repeated hour of November the label tells which of the two is meant.
        fold=1 if zone == "EST" else 0,
    )
    return local.astimezone(timezone.utc)


def _month_number(name: str) -> int:
    """Return 1-12 for an English month name or an abbreviation of one (``Sep``, ``Sept``)."""
    lowered = name.lower()
    for number, month in enumerate(_MONTHS, start=1):
        if len(lowered) >= 3 and month.startswith(lowered):
            return number
    raise ValueError(f"unknown month {name!r}")


def _csv_layout(header_fields: list[str], body: bytes, header_line: int, label: str) -> _CsvLayout:
    """Locate the needed columns in the column header by name."""
    lowered = [field.lower() for field in header_fields]
    shown = _show(",".join(header_fields))
    if "strike" not in lowered:
        raise ValueError(
            f"{label}: line {header_line}: expected a 'Strike' column between the calls and the "
            f"puts; found {shown}"
        )
    strike = lowered.index("strike")
    sides = []
    for side, symbol_name, start, stop in (
        ("call", "calls", 1, strike),
        ("put", "puts", strike + 1, len(lowered)),
    ):
        positions: dict[str, int] = {}
        for position in range(start, stop):
            positions.setdefault(lowered[position], position)
        missing = [name for name in (symbol_name, *_SIDE_FIELDS) if name not in positions]
        if missing:
            raise ValueError(
                f"{label}: line {header_line}: expected {side} columns "
                f"{', '.join(repr(name) for name in missing)} on the {side} side of 'Strike'; "
                f"found {shown}"
            )
        fields = {output: positions[name] for name, output in _SIDE_FIELDS.items()}
        sides.append((positions[symbol_name], fields))
    # Rows may carry more (empty) trailing fields than the header; name them too.
    first_row = _first_line(body).decode("utf-8", errors="replace")
    width = max(len(header_fields), len(_csv_fields(first_row)))
    return _CsvLayout(
        names=tuple(f"field{position}" for position in range(width)),
        header=tuple(header_fields),
        expiration=0,
        strike=strike,
        call_symbol=sides[0][0],
        put_symbol=sides[1][0],
        call_fields=sides[0][1],
        put_fields=sides[1][1],
    )


def _parse_csv_body(body: bytes, layout: _CsvLayout, header_line: int, label: str) -> pa.Table:
    """Parse the body with pyarrow.csv; keep only the needed columns, typed."""
    string_positions = (layout.expiration, layout.call_symbol, layout.put_symbol)
    numeric_positions = (
        layout.strike,
        *layout.call_fields.values(),
        *layout.put_fields.values(),
    )
    column_types = {layout.names[position]: pa.string() for position in string_positions}
    column_types.update({layout.names[position]: pa.float64() for position in numeric_positions})
    last_line = _last_line(body)
    bad_rows: list[tuple[str, int, int]] = []

    def on_invalid_row(row: Any) -> str:
        text = row.text.rstrip("\r\n")
        # Whitespace-only lines are blank; a malformed last line is a truncated download.
        if not text.strip() or text == last_line:
            return "skip"
        bad_rows.append((text, row.expected_columns, row.actual_columns))
        return "error"

    def read(use_threads: bool) -> pa.Table:
        return pa_csv.read_csv(
            pa.py_buffer(body),
            read_options=pa_csv.ReadOptions(
                column_names=list(layout.names), use_threads=use_threads
            ),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pa_csv.ConvertOptions(
                column_types=column_types,
                include_columns=list(column_types),
                null_values=_NULL_VALUES,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )

    try:
        return read(use_threads=True)
    except pa.ArrowInvalid as err:
        if bad_rows:
            text, expected, actual = bad_rows[0]
            line = _find_line(body, text, header_line)
            raise ValueError(
                f"{label}: line {line}: expected {expected} comma-separated fields as in the "
                f"column header on line {header_line}; found {actual}: {_show(text)}"
            ) from err
        detail = str(err)
    # A conversion error; the single-threaded reader also reports the row number.
    try:
        read(use_threads=False)
    except pa.ArrowInvalid as err:
        detail = str(err)
    column = re.search(r"column #(\d+)", detail)
    row = re.search(r"Row #(\d+)", detail)
    where = f"line {_row_line(body, int(row[1]) - 1, header_line)}" if row else "the body"
    what = "a column"
    if column and int(column[1]) < len(layout.header):
        position = int(column[1])
        side = "call" if position < layout.strike else "put"
        what = f"column {position + 1} ({side} {layout.header[position]!r})"
    if "conversion error to double" in detail:
        raise ValueError(f"{label}: {where}: expected a number in {what}; found {detail}")
    raise ValueError(f"{label}: {where}: could not read {what} of the option rows: {detail}")


def _parse_expirations(
    values: pa.ChunkedArray, body: bytes, header_line: int, label: str
) -> pa.ChunkedArray:
    """Parse ``Fri Jan 05 2024`` strings to date32; unreadable non-blank values raise."""
    # A chain has a few dozen distinct expirations: parse each once, then gather.
    encoded = pc.dictionary_encode(values.combine_chunks())
    parsed = pc.strptime(encoded.dictionary, format="%a %b %d %Y", unit="s", error_is_null=True)
    if parsed.null_count:
        bad_value = encoded.dictionary[pc.index(pc.is_null(parsed), True).as_py()]
        index = pc.index(values, bad_value).as_py()
        raise ValueError(
            f"{label}: line {_row_line(body, index, header_line)}: expected an expiration date "
            f"like 'Fri Jan 05 2024'; found {_show(str(bad_value.as_py()))}"
        )
    return pa.chunked_array([parsed.cast(pa.date32()).take(encoded.indices)])


def _first_line(body: bytes) -> bytes:
    """Return the first non-blank line of ``body`` (without copying the rest)."""
    start = 0
    while start < len(body):
        end = body.find(b"\n", start)
        end = len(body) if end < 0 else end
        if body[start:end].strip():
            return body[start:end].rstrip(b"\r")
        start = end + 1
    return b""


def _last_line(body: bytes) -> str:
    """Return the last non-blank line of ``body``, decoded, without its line break."""
    end = len(body)
    while True:
        start = body.rfind(b"\n", 0, end)
        line = body[start + 1 : end]
        if line.strip() or start < 0:
            return line.rstrip(b"\r").decode("utf-8", errors="replace")
        end = start


def _body_lines(body: bytes, header_line: int) -> list[tuple[int, str]]:
    """Return the body's non-blank lines with their file line numbers (error path only)."""
    lines = body.decode("utf-8", errors="replace").split("\n")
    return [
        (header_line + 1 + offset, line.rstrip("\r"))
        for offset, line in enumerate(lines)
        if line.strip()
    ]


def _row_line(body: bytes, row_index: int, header_line: int) -> int:
    """Map a 0-based parsed-row index to its 1-based line number in the file."""
    lines = _body_lines(body, header_line)
    return lines[row_index][0] if 0 <= row_index < len(lines) else header_line + 1 + row_index


def _find_line(body: bytes, text: str, header_line: int) -> int | str:
    """Return the file line number of the first body line equal to ``text``."""
    for number, line in _body_lines(body, header_line):
        if line == text:
            return number
    return "?"


def _show(text: str, limit: int = 120) -> str:
    """Quote ``text`` for an error message, shortened to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _show_value(value: object, limit: int = 120) -> str:
    """Show any value (its repr) in an error message, shortened to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- json


def _read_json_bytes(data: bytes, label: str, underlying: str | None) -> pa.Table:
    """Parse CBOE's JSON feed held in memory."""
    try:
        document = json.loads(data)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(
            f"{label}: expected a CBOE JSON document; found invalid JSON ({err})"
        ) from err
    payload = document.get("data") if isinstance(document, dict) else None
    options = payload.get("options") if isinstance(payload, dict) else None
    if (
        not isinstance(document, dict)
        or not isinstance(payload, dict)
        or not isinstance(options, list)
    ):
        found = (
            f"top-level keys {sorted(document)}"
            if isinstance(document, dict)
            else type(document).__name__
        )
        raise ValueError(f"{label}: expected a CBOE JSON object with data.options[]; found {found}")
    if not options:
        raise ValueError(f"{label}: expected option objects in data.options; found an empty list")
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            raise ValueError(
                f"{label}: data.options[{index}]: expected an object; found {_show_value(option)}"
            )

    spot = payload.get("current_price")
    if (
        isinstance(spot, bool)
        or not isinstance(spot, (int, float))
        or not (math.isfinite(spot) and spot > 0)
    ):
        raise ValueError(
            f"{label}: expected the spot as a positive number in data.current_price; "
            f"found {_show_value(spot)}"
        )
    snapshot = _parse_json_timestamp(document.get("timestamp"), label)
    description = payload.get("symbol") or document.get("symbol") or ""

    symbols = [option.get("option") for option in options]
    bad_symbol = next(
        (index for index, symbol in enumerate(symbols) if not isinstance(symbol, str)), None
    )
    if bad_symbol is not None:
        raise ValueError(
            f"{label}: data.options[{bad_symbol}].option: expected an OSI symbol like "
            f"'RUTW231020C01800000'; found {_show_value(symbols[bad_symbol])}"
        )
    symbol = pa.chunked_array([pa.array(symbols, type=pa.string())])
    trimmed, valid = _osi_symbols(symbol)
    if not pc.all(valid).as_py():
        index = pc.index(valid, False).as_py()
        raise ValueError(
            f"{label}: data.options[{index}].option: expected an OSI symbol like "
            f"'RUTW231020C01800000'; found {_show(symbols[index])}"
        )
    _, date_text, option_type, strike_digits = _osi_fields(trimmed)
    # The OSI shape does not make a date (month 00): name the symbol, not an ArrowInvalid.
    expiration = pc.strptime(date_text, format="%Y%m%d", unit="s", error_is_null=True)
    if expiration.null_count:
        index = pc.index(pc.is_null(expiration), True).as_py()
        raise ValueError(
            f"{label}: data.options[{index}].option: the date in {_show(symbols[index])} "
            "is not a calendar date"
        )
    columns: dict[str, Any] = {
        "symbol": symbol,
        "expiration": expiration.cast(pa.date32()),
        "strike": pc.divide(strike_digits.cast(pa.int64()).cast(pa.float64()), 1000.0),
        "option_type": option_type,
    }
    for key, output in _JSON_FIELDS.items():
        values = [option.get(key) for option in options]
        try:
            columns[output] = pa.array(values, type=pa.float64())
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            index = next(
                index
                for index, value in enumerate(values)
                if value is not None
                and (isinstance(value, bool) or not isinstance(value, (int, float)))
            )
            raise ValueError(
                f"{label}: data.options[{index}].{key}: expected a number or null; "
                f"found {_show_value(values[index])}"
            ) from err

    return _assemble(
        pa.table(columns),
        underlying=underlying,
        spot=float(spot),
        snapshot=snapshot,
        file_format="cboe-json",
        description=str(description),
        label=label,
    )


def _parse_json_timestamp(value: object, label: str) -> datetime:
    """Parse the feed's ``timestamp``; without an offset it is taken as New York time."""
    if not isinstance(value, str):
        raise ValueError(
            f"{label}: expected the snapshot time as a string in the top-level 'timestamp'; "
            f"found {_show_value(value)}"
        )
    text = value.strip()
    try:
        # Python 3.10's fromisoformat does not read a trailing "Z".
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError as err:
        raise ValueError(
            f"{label}: expected 'timestamp' like '2023-09-21 03:17:42'; found {_show(value)}"
        ) from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_NEW_YORK)
    return moment.astimezone(timezone.utc)


# --------------------------------------------------------------------------- output


def _assemble(
    contracts: pa.Table,
    *,
    underlying: str | None,
    spot: float,
    snapshot: datetime,
    file_format: str,
    description: str,
    label: str,
) -> pa.Table:
    """Add root, underlying and the constant columns; order and type as CBOE_SCHEMA."""
    count = contracts.num_rows
    trimmed, valid = _osi_symbols(contracts.column("symbol"))
    root = pc.if_else(valid, _osi_fields(trimmed)[0], pa.scalar(None, pa.string()))
    if underlying is not None:
        if not isinstance(underlying, str) or not underlying.strip():
            raise ValueError(f"underlying must be a non-empty string; got {underlying!r}")
        underlying_column: Any = pa.repeat(pa.scalar(underlying, pa.string()), count)
    else:
        if root.null_count == count:
            raise ValueError(
                f"{label}: expected OSI symbols like 'SPXW240105C01200000' to derive the "
                f"underlying from; found {_show(str(contracts.column('symbol')[0].as_py()))}; "
                "pass underlying="
            )
        index = pc.index_in(root, value_set=pa.array(list(ROOT_TO_UNDERLYING), pa.string()))
        mapped = pc.take(pa.array(list(ROOT_TO_UNDERLYING.values()), pa.string()), index)
        underlying_column = pc.coalesce(mapped, root)

    columns = {
        "underlying": underlying_column,
        "root": root,
        **{
            name: contracts.column(name)
            for name in ("symbol", "expiration", "strike", "option_type")
        },
        **{name: contracts.column(name) for name in _NUMERIC_COLUMNS},
        "spot": pa.repeat(pa.scalar(spot, pa.float64()), count),
        "snapshot_time": pa.repeat(
            pa.scalar(snapshot, CBOE_SCHEMA.field("snapshot_time").type), count
        ),
        "multiplier": pa.repeat(pa.scalar(_CONTRACT_MULTIPLIER, pa.float64()), count),
    }
    metadata = {
        b"fastgex.format": file_format.encode(),
        b"fastgex.spot": repr(spot).encode(),
        b"fastgex.snapshot_time": snapshot.isoformat().encode(),
        b"fastgex.description": description.encode(),
    }
    arrays = [_as_chunked(columns[field.name]).cast(field.type) for field in CBOE_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=CBOE_SCHEMA.with_metadata(metadata))


def _osi_symbols(symbol: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Return the trimmed symbols and whether each is an OSI symbol (null stays null)."""
    trimmed = pc.utf8_trim_whitespace(symbol)
    return trimmed, pc.match_substring_regex(trimmed, _OSI_PATTERN)


def _as_chunked(values: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """Wrap an Array in a ChunkedArray so all columns take the same path."""
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
