"""Vectorized parsers for option symbols: OCC/OSI and Deribit instrument names.

Both work on whole Arrow columns with :mod:`pyarrow.compute` (no per-row Python), and
neither raises on a bad symbol: its row gets nulls and ``valid = False``, so callers
can count and report it.

* OCC/OSI: root (left-justified to 6 characters by OCC, unpadded as CBOE writes it,
  or behind a Polygon-style ``O:`` prefix), ``YYMMDD``, ``C``/``P``, strike x 1000 in 8
  digits: ``SPXW  241220C05000000``, ``SPXW241220C05000000``, ``O:SPXW241220C05000000``.
* Deribit: ``BASE-DMMMYY-STRIKE-C|P`` such as ``BTC-27DEC24-65000-C``; linear (USDC)
  options name the pair (``XRP_USDC``) and write the decimal point of the strike as
  ``d`` (``XRP_USDC-30JUN23-0d625-C``). Deribit options expire at 08:00 UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DERIBIT_EXPIRY_TIME",
    "DERIBIT_SCHEMA",
    "OSI_SCHEMA",
    "parse_deribit",
    "parse_osi",
]

OSI_SCHEMA = pa.schema(
    [
        ("root", pa.string()),
        ("expiration", pa.date32()),
        ("option_type", pa.string()),
        ("strike", pa.float64()),
        ("valid", pa.bool_()),
    ]
)
"""Columns of :func:`parse_osi`."""

DERIBIT_SCHEMA = pa.schema(
    [
        ("underlying", pa.string()),
        ("expiration", pa.timestamp("s", tz="UTC")),
        ("option_type", pa.string()),
        ("strike", pa.float64()),
        ("valid", pa.bool_()),
    ]
)
"""Columns of :func:`parse_deribit`."""

#: Deribit options (and futures) settle at 08:00 UTC on the expiry date.
DERIBIT_EXPIRY_TIME = dt.time(8, 0)

# After the optional "O:" prefix and trimming: root, then the fixed-width 15-character tail.
_OSI_PATTERN = r"^[A-Za-z0-9./_]{1,6}\s*\d{6}[CP]\d{8}$"
_OSI_TAIL = 15
_POLYGON_PREFIX = r"^[Oo]:"
_DERIBIT_PATTERN = (
    r"^(?P<base>[A-Z0-9]+(?:_[A-Z0-9]+)?)-(?P<day>\d{1,2})(?P<month>[A-Z]{3})(?P<year>\d{2})"
    r"-(?P<strike>\d+(?:d\d+)?)-(?P<side>[CP])$"
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _as_strings(symbols: Any) -> pa.ChunkedArray:
    """A string column from a list, array or chunked array (dictionaries decoded)."""
    if isinstance(symbols, pa.ChunkedArray):
        column = symbols
    elif isinstance(symbols, pa.Array):
        column = pa.chunked_array([symbols])
    else:
        column = pa.chunked_array([pa.array(list(symbols), type=pa.string())])
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_large_string(column.type) or pa.types.is_string_view(column.type):
        column = column.cast(pa.string())
    if not pa.types.is_string(column.type):
        raise TypeError(f"option symbols must be strings, not {column.type}")
    return column


def parse_osi(symbols: Any) -> pa.Table:
    """Split OCC/OSI option symbols into root, expiration, type and strike.

    Parameters
    ----------
    symbols : pyarrow array, chunked array or sequence of str
        Padded (``SPXW  241220C05000000``), unpadded (``SPXW241220C05000000``) or
        ``O:``-prefixed symbols, in any mix. Surrounding whitespace is ignored.

    Returns
    -------
    pyarrow.Table
        :data:`OSI_SCHEMA`: ``root`` (trimmed), ``expiration`` (``20YY-MM-DD``),
        ``option_type`` (``C``/``P``), ``strike`` (the 8 digits / 1000) and ``valid``.
        A null or malformed symbol (or an impossible date such as month 13) gives
        nulls and ``valid = False``; nothing is raised.
    """
    column = _as_strings(symbols)
    trimmed = pc.utf8_trim_whitespace(pc.replace_substring_regex(column, _POLYGON_PREFIX, ""))
    shaped = pc.fill_null(pc.match_substring_regex(trimmed, _OSI_PATTERN), False)
    root, date_text, option_type, strike_digits = _osi_fields(trimmed)
    date_text = pc.if_else(shaped, date_text, None)
    expiration = pc.strptime(date_text, format="%Y%m%d", unit="s", error_is_null=True).cast(
        pa.date32()
    )
    # strptime rolls impossible days over (Feb 31 -> Mar 2): keep only dates that round-trip.
    written_day = pc.utf8_slice_codeunits(date_text, 6, 8).cast(pa.int64())
    valid = pc.fill_null(pc.and_(shaped, pc.equal(pc.day(expiration), written_day)), False)
    strike = pc.divide(
        pc.if_else(valid, strike_digits, None).cast(pa.int64()).cast(pa.float64()), 1000.0
    )
    null = pa.scalar(None, pa.string())
    return pa.Table.from_arrays(
        [
            pc.if_else(valid, root, null),
            pc.if_else(valid, expiration, pa.scalar(None, pa.date32())),
            pc.if_else(valid, option_type, null),
            strike,
            valid,
        ],
        schema=OSI_SCHEMA,
    )


def _osi_fields(trimmed: Any) -> tuple[Any, Any, Any, Any]:
    """The fixed-width parts of trimmed OSI symbols, unvalidated (shared with the CBOE reader).

    Returns ``(root, date_text, option_type, strike_digits)``: the root with its padding
    removed, ``20YYMMDD`` (OSI years are 20YY; ``%y`` would put 69-99 in the 1900s), ``C``
    or ``P``, and the strike x 1000 as 8 digits.
    """
    return (
        pc.utf8_rtrim_whitespace(pc.utf8_slice_codeunits(trimmed, 0, -_OSI_TAIL)),
        pc.binary_join_element_wise("20", pc.utf8_slice_codeunits(trimmed, -_OSI_TAIL, -9), ""),
        pc.utf8_slice_codeunits(trimmed, -9, -8),
        pc.utf8_slice_codeunits(trimmed, -8),
    )


def parse_deribit(names: Any) -> pa.Table:
    """Split Deribit option instrument names into underlying, expiry, type and strike.

    Parameters
    ----------
    names : pyarrow array, chunked array or sequence of str
        Names such as ``BTC-27DEC24-65000-C``, ``ETH-5JAN24-2300-P`` or the linear
        ``XRP_USDC-30JUN23-0d625-C`` (``d`` is the decimal point).

    Returns
    -------
    pyarrow.Table
        :data:`DERIBIT_SCHEMA`: ``underlying`` (the base currency, ``BTC``; for linear
        options the pair, ``XRP_USDC``), ``expiration`` (the settlement instant,
        08:00 UTC on the expiry date), ``option_type`` (``C``/``P``), ``strike`` and
        ``valid``. Futures, perpetuals, malformed names and impossible dates give
        nulls and ``valid = False``.
    """
    column = pc.utf8_trim_whitespace(_as_strings(names))
    parts = pc.extract_regex(column, _DERIBIT_PATTERN)
    shaped = pc.is_valid(parts)
    month_index = pc.index_in(pc.struct_field(parts, "month"), value_set=pa.array(_MONTHS))
    month = pc.add(month_index, 1).cast(pa.string())
    date_text = pc.binary_join_element_wise(
        "20",
        pc.struct_field(parts, "year"),
        "-",
        month,
        "-",
        pc.struct_field(parts, "day"),
        f" {DERIBIT_EXPIRY_TIME:%H:%M:%S}",
        "",
    )
    instant = pc.strptime(date_text, format="%Y-%m-%d %H:%M:%S", unit="s", error_is_null=True)
    written_day = pc.struct_field(parts, "day").cast(pa.int64())
    valid = pc.fill_null(pc.and_(shaped, pc.equal(pc.day(instant), written_day)), False)
    strike_text = pc.replace_substring(pc.struct_field(parts, "strike"), "d", ".")
    strike = pc.if_else(valid, strike_text, None).cast(pa.float64())
    null = pa.scalar(None, pa.string())
    return pa.Table.from_arrays(
        [
            pc.if_else(valid, pc.struct_field(parts, "base"), null),
            pc.if_else(valid, instant, pa.scalar(None, pa.timestamp("s"))).cast(
                pa.timestamp("s", tz="UTC")
            ),
            pc.if_else(valid, pc.struct_field(parts, "side"), null),
            strike,
            valid,
        ],
        schema=DERIBIT_SCHEMA,
    )
