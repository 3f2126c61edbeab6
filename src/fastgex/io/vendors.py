"""Vendor layouts turned into canonical chains: ORATS wide rows, ThetaData, Databento OPRA.

Each reader is a documented mapping of the vendor's columns (its names, units and
encodings) onto the canonical schema; the vendor's other columns are kept as they are.
They take Arrow-compatible tables (pyarrow, pandas, polars, anything
:func:`fastgex.read_chain` reads), not files or network calls: fetch with the vendor's
client, then hand the table here.

============  =====================================  ===================================
vendor        layout                                 mapping
============  =====================================  ===================================
ORATS         one row per (ticker, expiry, strike)   ``ticker``, ``expirDate``, ``strike``,
              with calls and puts side by side       ``call/putOpenInterest``,
                                                     ``call/putMidIv`` (fractions; or
                                                     ``smvVol``), ``stockPrice``,
                                                     ``tradeDate`` (or
                                                     ``snapShotEstTime``)
ThetaData     one row per contract (v2 API)          ``root``, ``expiration`` (YYYYMMDD
                                                     int), ``strike`` (1/10 cent: /1000),
                                                     ``right`` (C/P), ``open_interest``,
                                                     ``implied_vol`` (when present)
Databento     ``definition`` records joined with     ``raw_symbol`` (OSI),
OPRA          ``statistics`` open interest on        ``underlying``, ``strike_price``
              ``instrument_id``                      (int64 x 1e-9), ``expiration`` (ns),
                                                     ``instrument_class`` (C/P);
                                                     ``stat_type == 9`` rows' ``quantity``
============  =====================================  ===================================
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fastgex._chain import _to_table
from fastgex._errors import ChainError

__all__ = ["DATABENTO_OPEN_INTEREST", "read_databento", "read_orats", "read_thetadata"]

#: Databento ``statistics`` ``stat_type`` of open interest.
DATABENTO_OPEN_INTEREST = 9


def _require(table: pa.Table, vendor: str, names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise ChainError(f"{vendor} table: missing columns {missing}; it has {table.column_names}")


def _date_column(column: pa.ChunkedArray, vendor: str, name: str) -> pa.ChunkedArray:
    """Dates from date/timestamp columns or ISO (``2024-01-19``) / ``YYYYMMDD`` text or ints."""
    if pa.types.is_date(column.type):
        return column
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.date32())
    if pa.types.is_integer(column.type):
        column = column.cast(pa.string())
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = pc.utf8_trim_whitespace(column.cast(pa.string()))
        compact = pc.match_substring_regex(text, r"^\d{8}$")
        iso = pc.if_else(
            compact,
            pc.binary_join_element_wise(
                pc.utf8_slice_codeunits(text, 0, 4),
                pc.utf8_slice_codeunits(text, 4, 6),
                pc.utf8_slice_codeunits(text, 6, 8),
                "-",
            ),
            pc.utf8_slice_codeunits(text, 0, 10),
        )
        parsed = pc.strptime(iso, format="%Y-%m-%d", unit="s", error_is_null=True)
        bad = pc.and_(pc.is_valid(text), pc.is_null(parsed))
        if pc.any(bad).as_py():
            value = pc.filter(text, bad)[0].as_py()
            raise ChainError(f"{vendor} table: {name} {value!r} is not a date")
        return parsed.cast(pa.date32())
    raise ChainError(f"{vendor} table: {name} has type {column.type}, not a date")


def read_orats(source: Any) -> pa.Table:
    """ORATS-style wide rows (calls and puts side by side per strike) as a chain.

    Parameters
    ----------
    source : table-like
        Rows with ``ticker``, ``expirDate``, ``strike``, ``callOpenInterest``,
        ``putOpenInterest``, ``stockPrice`` and either ``callMidIv``/``putMidIv`` or
        ``smvVol`` (ORATS' smoothed vol, used for both sides when the mid IVs are
        absent); ``tradeDate`` or ``snapShotEstTime`` becomes the snapshot. ORATS
        quotes IVs as fractions.

    Returns
    -------
    pyarrow.Table
        Two rows per input row (call, then put): ``underlying``, ``expiration``,
        ``strike``, ``option_type``, ``open_interest``, ``implied_vol``, ``spot`` and
        ``snapshot_time`` when known (a trade date is taken at 16:00 New York, the
        close the end-of-day values refer to).
    """
    table = _to_table(source, "auto")
    _require(table, "ORATS", ("ticker", "expirDate", "strike", "callOpenInterest",
                              "putOpenInterest", "stockPrice"))  # fmt: skip
    has_mid = "callMidIv" in table.column_names and "putMidIv" in table.column_names
    if not has_mid and "smvVol" not in table.column_names:
        raise ChainError("ORATS table: give callMidIv/putMidIv or smvVol for the implied vol")
    common = {
        "underlying": table.column("ticker"),
        "expiration": _date_column(table.column("expirDate"), "ORATS", "expirDate"),
        "strike": table.column("strike").cast(pa.float64()),
        "spot": table.column("stockPrice").cast(pa.float64()),
    }
    snapshot = _orats_snapshot(table)
    if snapshot is not None:
        common["snapshot_time"] = snapshot
    sides = []
    for side, option_type in (("call", "C"), ("put", "P")):
        vol = table.column(f"{side}MidIv" if has_mid else "smvVol").cast(pa.float64())
        sides.append(
            pa.table(
                {
                    **common,
                    "option_type": pa.chunked_array([pa.repeat(option_type, table.num_rows)]),
                    "open_interest": table.column(f"{side}OpenInterest").cast(pa.float64()),
                    "implied_vol": vol,
                }
            )
        )
    return pa.concat_tables(sides)


def _orats_snapshot(table: pa.Table) -> pa.ChunkedArray | None:
    if "snapShotEstTime" in table.column_names:
        column = table.column("snapShotEstTime")
        if pa.types.is_timestamp(column.type):
            if column.type.tz is None:
                return pc.assume_timezone(column, "America/New_York")
            return column
    if "tradeDate" in table.column_names:
        days = _date_column(table.column("tradeDate"), "ORATS", "tradeDate")
        midnight = days.cast(pa.timestamp("s"))
        close = pc.add(midnight, pa.scalar(16 * 3600, pa.duration("s")))
        return pc.assume_timezone(close, "America/New_York")
    return None


def read_thetadata(source: Any) -> pa.Table:
    """ThetaData v2 rows (one per contract) as a chain.

    Parameters
    ----------
    source : table-like
        ``root`` (or ``symbol``), ``expiration`` (or ``exp``; ``YYYYMMDD`` integers),
        ``strike`` in tenths of a cent (``4700000`` = 4700.0), ``right`` (``C``/``P``),
        ``open_interest``; ``implied_vol`` (or ``iv``) when the rows carry it.

    Returns
    -------
    pyarrow.Table
        ``underlying``, ``expiration``, ``strike`` (dollars), ``option_type``,
        ``open_interest`` and ``implied_vol`` when given; other columns kept.
    """
    table = _to_table(source, "auto")
    names = {
        "underlying": next((n for n in ("root", "symbol") if n in table.column_names), None),
        "expiration": next((n for n in ("expiration", "exp") if n in table.column_names), None),
    }
    if None in names.values():
        raise ChainError(
            "ThetaData table: needs root (or symbol) and expiration (or exp) columns; "
            f"it has {table.column_names}"
        )
    _require(table, "ThetaData", ("strike", "right", "open_interest"))
    columns = {
        "underlying": table.column(names["underlying"]),
        "expiration": _date_column(table.column(names["expiration"]), "ThetaData", "expiration"),
        "strike": pc.divide(table.column("strike").cast(pa.float64()), 1000.0),
        "option_type": pc.utf8_upper(table.column("right").cast(pa.string())),
        "open_interest": table.column("open_interest").cast(pa.float64()),
    }
    vol_name = next((n for n in ("implied_vol", "iv") if n in table.column_names), None)
    if vol_name is not None:
        columns["implied_vol"] = table.column(vol_name).cast(pa.float64())
    used = {*names.values(), "strike", "right", "open_interest", vol_name}
    rest = {name: table.column(name) for name in table.column_names if name not in used}
    return pa.table({**columns, **{k: v for k, v in rest.items() if k not in columns}})


def read_databento(definitions: Any, statistics: Any) -> pa.Table:
    """Databento OPRA ``definition`` records with open interest from ``statistics``.

    Parameters
    ----------
    definitions : table-like
        ``definition`` schema rows: ``instrument_id``, ``raw_symbol``, ``underlying``,
        ``strike_price`` (fixed-point int64, 1e-9 units; or a float already in
        dollars), ``expiration`` (nanosecond timestamp) and ``instrument_class``
        (``C``/``P``). Non-option classes are left out.
    statistics : table-like
        ``statistics`` schema rows: ``instrument_id``, ``stat_type``, ``quantity``
        and ``ts_ref`` (or ``ts_event``). Open interest is ``stat_type == 9``; the
        latest one per instrument counts.

    Returns
    -------
    pyarrow.Table
        One row per option with its ``open_interest`` (null when the statistics have
        none, which :func:`fastgex.gex` then counts as ``missing_value``):
        ``underlying``, ``symbol``, ``expiration``, ``strike``, ``option_type``,
        ``open_interest``, ``instrument_id``. Implied vols come from elsewhere (a
        vendor column, or :func:`fastgex.implied_vol` on prices).
    """
    defs = _to_table(definitions, "auto")
    stats = _to_table(statistics, "auto")
    definition_columns = ("instrument_id", "raw_symbol", "underlying", "strike_price",
                          "expiration", "instrument_class")  # fmt: skip
    _require(defs, "Databento definition", definition_columns)
    _require(stats, "Databento statistics", ("instrument_id", "stat_type", "quantity"))
    option_class = pc.utf8_upper(defs.column("instrument_class").cast(pa.string()))
    defs = defs.filter(pc.is_in(option_class, value_set=pa.array(["C", "P"])))
    strike = defs.column("strike_price")
    if pa.types.is_integer(strike.type):
        strike = pc.multiply(strike.cast(pa.float64()), 1e-9)
    else:
        strike = strike.cast(pa.float64())
    expiration = defs.column("expiration")
    if pa.types.is_integer(expiration.type):
        expiration = expiration.cast(pa.timestamp("ns", tz="UTC"))
    open_interest = stats.filter(
        pc.equal(stats.column("stat_type").cast(pa.int64()), DATABENTO_OPEN_INTEREST)
    )
    time_name = next((n for n in ("ts_ref", "ts_event") if n in stats.column_names), None)
    if time_name is not None:  # the latest report per instrument
        open_interest = open_interest.sort_by([(time_name, "descending")])
    latest = open_interest.group_by("instrument_id", use_threads=False).aggregate(
        [("quantity", "first")]
    )
    chain = pa.table(
        {
            "instrument_id": defs.column("instrument_id"),
            "underlying": defs.column("underlying"),
            "symbol": defs.column("raw_symbol"),
            "expiration": _expiry_dates(expiration),
            "strike": strike,
            "option_type": pc.utf8_upper(defs.column("instrument_class").cast(pa.string())),
        }
    )
    joined = chain.join(latest, "instrument_id", join_type="left outer", use_threads=False)
    joined = joined.rename_columns(
        ["open_interest" if name == "quantity_first" else name for name in joined.column_names]
    )
    ordered = joined.take(pc.sort_indices(joined, [("instrument_id", "ascending")]))
    position = ordered.column_names.index("open_interest")
    return ordered.set_column(
        position, "open_interest", ordered.column(position).cast(pa.float64())
    )


def _expiry_dates(expiration: pa.ChunkedArray) -> pa.ChunkedArray:
    """Databento's expiration instant as the New York date (settled by the chain's rules)."""
    if pa.types.is_timestamp(expiration.type):
        local = expiration
        if expiration.type.tz is None:
            local = pc.assume_timezone(expiration, "UTC")
        return pc.local_timestamp(local.cast(pa.timestamp("ns", tz="America/New_York"))).cast(
            pa.date32()
        )
    return _date_column(expiration, "Databento", "expiration")
