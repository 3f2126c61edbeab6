"""Reading chains from what users have into one Arrow table with canonical names.

Accepted sources: pyarrow Table / RecordBatch / RecordBatchReader, any object with
``__arrow_c_stream__`` or ``__arrow_c_array__`` (polars, DuckDB, nanoarrow), a pandas
DataFrame, and paths to Parquet, Arrow IPC (Feather) and CSV files, including CBOE
delayed-quote CSV/JSON. Columns are renamed to the canonical schema through the
``columns=`` mapping and a table of common aliases; column data is never copied here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from fastgex._errors import ChainError

#: Canonical column names, required ones first.
CANONICAL_COLUMNS: tuple[str, ...] = (
    "underlying",
    "strike",
    "option_type",
    "open_interest",
    "implied_vol",
    "expiration",
    "snapshot_time",
    "time_to_expiry",
    "multiplier",
    "spot",
    "rate",
    "dividend_yield",
    "forward",
    "gamma",
    "dealer_position",
)

#: Names accepted without a mapping (compared case-insensitively, ignoring ``_``/space).
ALIASES: dict[str, tuple[str, ...]] = {
    "underlying": ("underlying", "symbol", "ticker", "root", "underlying_symbol", "act_symbol"),
    "strike": ("strike", "strike_price", "k", "strikeprice"),
    "option_type": ("option_type", "type", "right", "cp", "call_put", "put_call", "cp_flag"),
    "open_interest": ("open_interest", "oi", "openinterest", "open_int"),
    "implied_vol": (
        "implied_vol",
        "iv",
        "vol",
        "volatility",
        "impliedvolatility",
        "implied_volatility",
        "mark_iv_fraction",
    ),
    "expiration": (
        "expiration",
        "expiry",
        "expiration_date",
        "exp",
        "expiry_date",
        "expirationdate",
    ),
    "snapshot_time": ("snapshot_time", "quote_time", "quote_datetime", "timestamp", "as_of"),
    "time_to_expiry": ("time_to_expiry", "dte_years", "t", "tte", "years_to_expiry"),
    "multiplier": ("multiplier", "contract_multiplier", "contract_size"),
    "spot": ("spot", "underlying_price", "s", "spot_price", "underlying_last"),
    "rate": ("rate", "risk_free_rate", "interest_rate", "r"),
    "dividend_yield": ("dividend_yield", "q", "div_yield", "dividend"),
    "forward": ("forward", "forward_price", "futures_price", "f"),
    "gamma": ("gamma",),
    "dealer_position": ("dealer_position", "dealer_contracts", "position"),
}

FORMATS = ("auto", "cboe", "deribit", "parquet", "arrow", "csv")


def _squash(name: str) -> str:
    return name.strip().lower().replace("_", "").replace(" ", "").replace("-", "")


_ALIAS_LOOKUP = {
    _squash(alias): canonical for canonical, names in ALIASES.items() for alias in names
}


def read_chain(
    source: Any,
    *,
    format: str = "auto",
    columns: Mapping[str, str] | None = None,
    iv: str = "keep",
    iv_options: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Read an option chain into a :class:`pyarrow.Table` with canonical column names.

    Parameters
    ----------
    source : table-like or path
        A pyarrow Table, RecordBatch or RecordBatchReader; any object exposing
        ``__arrow_c_stream__`` or ``__arrow_c_array__`` (polars, DuckDB, nanoarrow);
        a pandas DataFrame; or a path (str or path-like) to a Parquet, Arrow IPC /
        Feather, CSV, or CBOE delayed-quote CSV / JSON file.
    format : {"auto", "cboe", "deribit", "parquet", "arrow", "csv"}
        File format for paths. ``auto`` uses the extension and sniffs CSV/JSON files
        for the CBOE and Deribit layouts; the format used is in the table's schema
        metadata under ``fastgex.format``.
    columns : mapping of str to str, optional
        Renames from the source's column names to canonical names (e.g.
        ``{"Strike Px": "strike"}``). Unmapped columns are matched against
        the built-in aliases (``fastgex._chain.ALIASES``) case-insensitively.
    iv : {"keep", "solve"}
        ``solve`` fills ``implied_vol`` from option prices with
        :func:`fastgex.implied_vol` (replacing any ``implied_vol`` column) and adds
        ``implied_vol_reason`` (null where solved). It needs what that function needs
        from a chain: prices (``mid`` by default, else ``bid`` + ``ask``), a spot
        (``spot`` column or ``iv_options={"spot": ...}``; not for a ``forward``
        column) and either ``time_to_expiry`` or ``expiration`` with a snapshot time
        (``snapshot_time`` column or ``iv_options={"snapshot_time": ...}``).
    iv_options : mapping, optional
        Keyword arguments for :func:`fastgex.implied_vol` with ``iv="solve"``:
        ``price`` (``mid``, ``bid``, ``ask``, ``last``, ``mark``), ``spot``,
        ``snapshot_time``, ``rate``, ``dividend_yield``, ``day_count``, ``settlement``,
        ``settlement_tz``.

    Returns
    -------
    pyarrow.Table
        The chain, canonical names where known, other columns kept as they are.

    Raises
    ------
    ValueError
        Unknown format, unreadable file (:class:`fastgex.ChainError` for a file that
        pyarrow cannot parse), or two source columns mapping to one name.
    TypeError
        A source of an unsupported type.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    if iv not in ("keep", "solve"):
        raise ValueError(f"iv must be 'keep' or 'solve', not {iv!r}")
    table = canonicalize(_without_empty_chunks(_to_table(source, format)), columns)
    if iv == "solve":
        from fastgex._greeks import implied_vol  # lazy: greeks imports this module

        solved = implied_vol(table, **dict(iv_options or {}))
        if "implied_vol" in table.column_names:
            table = table.drop_columns(["implied_vol"])
        table = table.append_column("implied_vol", pa.array(solved.implied_vol))
        table = table.append_column("implied_vol_reason", solved.reason)
    return table


def canonicalize(table: pa.Table, columns: Mapping[str, str] | None = None) -> pa.Table:
    """Rename ``table``'s columns to canonical names (explicit mapping first, then aliases)."""
    mapping = dict(columns or {})
    unknown = [name for name in mapping if name not in table.column_names]
    if unknown:
        raise ValueError(
            f"columns= maps {unknown} but the chain has no such column; it has {table.column_names}"
        )
    bad_targets = [target for target in mapping.values() if target not in CANONICAL_COLUMNS]
    if bad_targets:
        raise ValueError(
            f"columns= maps to {bad_targets}, which are not canonical names; "
            f"use one of {', '.join(CANONICAL_COLUMNS)}"
        )
    # Precedence: an explicit mapping, then a column already named canonically, then
    # an alias. Two aliases competing for one name is ambiguous and an error.
    claimed = set(mapping.values()) | {
        name for name in table.column_names if name in CANONICAL_COLUMNS and name not in mapping
    }
    alias_sources: dict[str, str] = {}
    new_names = []
    for name in table.column_names:
        if name in mapping:
            new_names.append(mapping[name])
            continue
        target = _ALIAS_LOOKUP.get(_squash(name))
        if target is None or name == target or target in claimed:
            new_names.append(name)
            continue
        if target in alias_sources:
            raise ValueError(
                f"columns {alias_sources[target]!r} and {name!r} could both be {target!r}; "
                f"say which with columns={{{name!r}: {target!r}}} (or the other)"
            )
        alias_sources[target] = name
        new_names.append(target)
    if new_names == table.column_names:
        return table
    # rename_columns drops the schema metadata (which says what format was read): keep it
    return table.rename_columns(new_names).replace_schema_metadata(table.schema.metadata)


def _without_empty_chunks(table: pa.Table) -> pa.Table:
    """``table`` without its zero-length chunks (no data is copied).

    An empty slice that crossed the Arrow C data interface can arrive with an offset but
    no data buffer (found by the C ABI fuzzer); pyarrow's ``take`` and
    ``combine_chunks`` then fail on the column with "buffer slice would exceed buffer
    length". Empty chunks hold nothing, so they are dropped before anything reads them.
    """
    if not any(len(chunk) == 0 for column in table.columns for chunk in column.chunks):
        return table
    columns = [
        pa.chunked_array([chunk for chunk in column.chunks if len(chunk)], type=column.type)
        for column in table.columns
    ]
    return pa.Table.from_arrays(columns, schema=table.schema)


def _to_table(source: Any, format: str) -> pa.Table:
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    if isinstance(source, pa.RecordBatchReader):
        return source.read_all()
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(source), format)
    if _is_pandas(source):
        return pa.Table.from_pandas(source, preserve_index=False)
    if hasattr(source, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(source).read_all()
    if hasattr(source, "__arrow_c_array__"):
        batch = pa.record_batch(source)
        return pa.Table.from_batches([batch])
    if hasattr(source, "to_arrow"):  # e.g. a DuckDB relation on older versions
        return _to_table(source.to_arrow(), format)
    raise TypeError(
        f"cannot read a chain from {type(source).__name__}: pass a pyarrow Table, "
        "RecordBatch(Reader), an object with __arrow_c_stream__, a pandas DataFrame, or a path"
    )


def _is_pandas(source: Any) -> bool:
    module = type(source).__module__
    return module.startswith("pandas") and hasattr(source, "columns")


def _read_path(path: Path, format: str) -> pa.Table:
    table, chosen = _read_path_as(path, format)
    metadata = dict(table.schema.metadata or {})
    metadata.setdefault(b"fastgex.format", chosen.encode())
    return table.replace_schema_metadata(metadata)


def _read_path_as(path: Path, format: str) -> tuple[pa.Table, str]:
    try:
        table, chosen = _read_path_with(path, format)
        # A corrupt file can read into arrays with too-small buffers or offsets past their
        # data; full validation (one pass over the data) turns a later crash into an error.
        table.validate(full=True)
        return table, chosen
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
        # pyarrow's own errors on a corrupt or truncated file (ArrowInvalid, OSError,
        # ArrowTypeError, a header that is not UTF-8...) become one clear error.
        raise ChainError(f"cannot read {path.name!r} as a chain file: {error}") from error


def _read_path_with(path: Path, format: str) -> tuple[pa.Table, str]:
    if not path.exists():
        raise FileNotFoundError(f"chain file not found: {path}")
    suffix = path.suffix.lower()
    if format == "auto":
        if suffix in (".parquet", ".pq"):
            format = "parquet"
        elif suffix in (".arrow", ".feather", ".ipc", ".arrows"):
            format = "arrow"
        elif suffix == ".json" and _looks_like_deribit(path):
            format = "deribit"
        elif suffix == ".json" or _looks_like_cboe(path):
            format = "cboe"
        elif suffix in (".csv", ".txt", ".gz"):
            format = "csv"
        else:
            raise ValueError(
                f"cannot tell the format of {path.name!r} from its extension: pass "
                f"format= one of {', '.join(FORMATS[1:])}"
            )
    if format == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path), format
    if format == "arrow":
        return _read_ipc(path), format
    if format == "cboe":
        from fastgex.io.cboe import read_cboe

        return read_cboe(path), format
    if format == "deribit":
        from fastgex.io.deribit import read_deribit

        return read_deribit(path), format
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(path)
    table.column_names  # noqa: B018 (decodes the header: raises here if it is not UTF-8)
    return table, format


def _read_ipc(path: Path) -> pa.Table:
    import pyarrow.ipc as ipc

    try:
        with ipc.open_file(path) as reader:
            return reader.read_all()
    except pa.ArrowInvalid:
        with ipc.open_stream(path) as reader:
            return reader.read_all()


def _looks_like_deribit(path: Path) -> bool:
    """A Deribit book summary: JSON records named by ``instrument_name``."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    return b'"instrument_name"' in head


def _looks_like_cboe(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4096)
    return (b"Expiration Date" in head and b"Calls" in head) or head.lstrip().startswith(b"{")
