"""Whole-market batch work at scale: streaming GEX in bounded memory and resumable jobs.

Two tools:

:func:`stream_gex`
    The GEX of a dataset larger than memory (a Parquet dataset of many files, a
    ``RecordBatchReader``, any iterable of record batches), read batch by batch. Totals
    and per-strike tables are merged across batches by key with compensated
    (Neumaier) sums, so the result equals the in-memory :func:`fastgex.gex` call to
    rounding while memory stays bounded by the batch (plus the per-strike state).

:func:`run_batch`
    A job over a partitioned dataset: for each partition (by default the dataset's
    hive keys, e.g. ``date`` and ``underlying``) it computes totals, drops, levels,
    crossings, profiles and bucket surfaces with :func:`fastgex.levels` and writes each
    as a hive-partitioned Parquet dataset under ``out``. Every file is written to a
    temporary name, fsynced and renamed; a partition counts as done only when its
    marker ``out/_done/<partition>/_SUCCESS.json`` exists, written last. A rerun skips
    done partitions, so a killed job resumes without losing or duplicating anything.
    Locally (one process) or on Dask (one Arrow-in / Arrow-out task per partition).
"""

from __future__ import annotations

import enum
import inspect
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from fastgex import _kernels
from fastgex._errors import ChainError
from fastgex._gex import (
    BY_STRIKE_SCHEMA,
    BY_UNDERLYING_SCHEMA,
    DROPPED_SCHEMA,
    GexResult,
    _compensated_add,
    gex,
)
from fastgex._levels import levels
from fastgex._progress import Progress

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "RESULT_TABLES",
    "BatchReport",
    "compute_partition",
    "iter_batches",
    "local_cluster",
    "partition_function",
    "partition_path",
    "read_results",
    "run_batch",
    "stream_gex",
]

#: Rows per record batch read (about 6 MB of chain columns).
DEFAULT_BATCH_SIZE = 65_536
#: Options of :func:`fastgex.gex` that need the whole chain at once.
_WHOLE_CHAIN_OPTIONS = ("per_contract", "buckets", "views")
#: The hive directory name of a null partition value (what pyarrow reads back as null).
_NULL_SEGMENT = "__HIVE_DEFAULT_PARTITION__"
_DONE = "_done"
_MARKER = "_SUCCESS.json"
_JOB_FILE = "_job.json"
#: The partition keys' Arrow types (a schema, no rows), so results read back typed.
_KEYS_FILE = "_keys.arrow"
_PART_FILE = "part-0.parquet"
#: The tables a batch job writes (``by_strike_expiry`` only for chains with dates).
RESULT_TABLES = (
    "totals",
    "dropped",
    "levels",
    "crossings",
    "profile",
    "by_strike",
    "by_strike_expiry",
)


# --------------------------------------------------------------------------- reading


def _open_dataset(source: Any) -> ds.Dataset:
    if isinstance(source, ds.Dataset):
        return source
    path = os.fspath(source)
    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    typed = _typed_hive_schema(dataset)
    if typed is None:
        return dataset
    return ds.dataset(path, format="parquet", partitioning=ds.partitioning(typed, flavor="hive"))


#: Hive values read as dates (``2024-01-08``) or timestamps (``2024-01-08 15:30:00+00:00``).
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?P<zone>Z|[+-]\d{2}:\d{2})?"
)


def _hive_text_type(values: set[str]) -> pa.DataType | None:
    """``date32`` or ``timestamp[us]`` when every value parses as one, else None."""
    if not values:
        return None
    if all(_DATE_TEXT.fullmatch(value) for value in values):
        kind = pa.date32()
    elif all(_TIMESTAMP_TEXT.fullmatch(value) for value in values):
        zoned = {_TIMESTAMP_TEXT.fullmatch(value)["zone"] is not None for value in values}
        if len(zoned) > 1:  # a mix of zoned and naive times: left as text
            return None
        kind = pa.timestamp("us", tz="UTC" if zoned.pop() else None)
    else:
        return None
    try:
        pc.cast(pa.array(sorted(values)), kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # e.g. 2024-13-45: not a date after all
    return kind


def _typed_hive_schema(dataset: ds.Dataset) -> pa.Schema | None:
    """The hive key schema with date-like string keys typed, or None if none is.

    pyarrow infers hive keys as int32 or string only, so ``date=2024-01-08`` would come
    back as text; a key whose every value is an ISO date (or timestamp) becomes
    ``date32`` (or ``timestamp[us]``, in UTC when the values carry an offset).
    """
    partitioning = getattr(dataset, "partitioning", None)
    if partitioning is None or not isinstance(dataset, ds.FileSystemDataset):
        return None
    schema = partitioning.schema
    texts: dict[str, set[str]] = {
        item.name: set() for item in schema if pa.types.is_string(item.type)
    }
    if not texts:
        return None
    for fragment in dataset.get_fragments():
        for name, value in ds.get_partition_keys(fragment.partition_expression).items():
            if name in texts and value is not None:
                texts[name].add(value)
    kinds = {name: _hive_text_type(values) for name, values in texts.items()}
    if not any(kinds.values()):
        return None
    return pa.schema([item.with_type(kinds.get(item.name) or item.type) for item in schema])


@dataclass(frozen=True)
class _DatasetPath:
    """A Parquet dataset directory as the job's workers open it: listed once, by the job.

    Carries what the listing found (file system, base path, schema with typed hive
    keys), so a worker opens just its partition's files without listing the directory
    tree again.
    """

    filesystem: Any
    root: str
    schema: pa.Schema
    hive_schema: pa.Schema

    @classmethod
    def of(cls, path: str | os.PathLike, opened: ds.FileSystemDataset) -> _DatasetPath:
        text = os.fspath(path)
        try:  # a URI (s3://bucket/x) or absolute path: fragments are relative to its path
            root = pafs.FileSystem.from_uri(text)[1]
        except (ValueError, pa.ArrowInvalid):  # a relative local path, as fragments see it
            root = text
        return cls(opened.filesystem, root, opened.schema, opened.partitioning.schema)

    def files(self, paths: Sequence[str]) -> ds.Dataset:
        """The dataset of just these files, with the hive keys of their paths."""
        return ds.dataset(
            list(paths),
            schema=self.schema,
            format="parquet",
            filesystem=self.filesystem,
            partitioning=ds.partitioning(self.hive_schema, flavor="hive"),
            partition_base_dir=self.root,
        )


def iter_batches(source: Any, *, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[pa.RecordBatch]:
    """Record batches of a dataset, reader, table or iterable, at most ``batch_size`` rows.

    Parameters
    ----------
    source : path, pyarrow.dataset.Dataset, RecordBatchReader, Table or iterable
        A Parquet file or directory (hive partitions become columns), a dataset, a
        reader, a table, or an iterable of record batches / tables.
    batch_size : int
        Most rows per batch. Parquet is decoded a row group at a time, so memory is
        bounded by the larger of ``batch_size`` rows and one row group.

    Yields
    ------
    pyarrow.RecordBatch
        The rows, in order; batches larger than ``batch_size`` are sliced.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(source, (str, os.PathLike, ds.Dataset)):
        dataset = _open_dataset(source)
        pieces: Iterable[Any]
        if isinstance(dataset, ds.FileSystemDataset) and isinstance(
            dataset.format, ds.ParquetFileFormat
        ):
            pieces = _parquet_batches(dataset, batch_size)
        else:  # no readahead and no threads: a threaded scan reads ahead without bound
            pieces = dataset.to_batches(
                batch_size=batch_size, batch_readahead=0, fragment_readahead=0, use_threads=False
            )
    elif isinstance(source, pa.Table):
        pieces = source.to_batches(max_chunksize=batch_size)
    elif isinstance(source, pa.RecordBatch):
        pieces = [source]
    else:
        try:
            pieces = iter(source)
        except TypeError:
            raise TypeError(
                "stream source must be a path, a pyarrow dataset, a RecordBatchReader, a "
                f"table or an iterable of record batches, got {type(source).__name__}"
            ) from None
    for piece in pieces:
        if isinstance(piece, pa.Table):
            yield from piece.to_batches(max_chunksize=batch_size)
        elif isinstance(piece, pa.RecordBatch):
            for start in range(0, piece.num_rows, batch_size):
                yield piece.slice(start, batch_size)
        else:
            raise TypeError(f"expected record batches, got {type(piece).__name__}")


def _parquet_batches(dataset: ds.FileSystemDataset, batch_size: int) -> Iterator[pa.RecordBatch]:
    """Batches of each Parquet file in turn, with its hive keys as constant columns.

    Reads one file at a time with :meth:`pyarrow.parquet.ParquetFile.iter_batches`: the
    dataset scanner decodes ahead of a slow consumer without bound when threaded (the
    whole dataset, measured), and holds several row groups when not.
    """
    for fragment in dataset.get_fragments():
        keys = ds.get_partition_keys(fragment.partition_expression)
        with fragment.filesystem.open_input_file(fragment.path) as handle:
            parquet = pq.ParquetFile(handle)
            for batch in parquet.iter_batches(batch_size=batch_size, use_threads=False):
                if not keys:
                    yield batch
                    continue
                columns, names = list(batch.columns), list(batch.schema.names)
                zeros = pa.array(np.zeros(batch.num_rows, np.int32))
                for name, value in keys.items():
                    if name in names:
                        continue
                    field_type = dataset.schema.field(name).type
                    columns.append(pc.take(pa.array([value], field_type), zeros))
                    names.append(name)
                yield pa.RecordBatch.from_arrays(columns, names=names)


# --------------------------------------------------------------------------- streaming


class _GexMerger:
    """Per-underlying, per-strike and per-reason state merged over batch results."""

    def __init__(self, by_strike: bool) -> None:
        self.by_strike = by_strike
        self.ids: dict[str, int] = {}
        self.spot: list[float] = []
        self.sums = np.zeros((0, 2))
        self.compensation = np.zeros((0, 2))
        self.contracts = np.zeros(0, np.int64)
        self.dropped = np.zeros(0, np.int64)
        self.drop_counts: dict[tuple[str, str], int] = {}
        # per underlying id: [ascending strikes, sums (n, 2), compensations, contracts]
        self.strikes: dict[int, list[np.ndarray]] = {}
        self.first: GexResult | None = None
        self.snapshot: Any = None
        self.batches = 0

    def _grow(self, names: list[str]) -> np.ndarray:
        for name in names:
            if name not in self.ids:
                self.ids[name] = len(self.ids)
                self.spot.append(np.nan)
        extra = len(self.ids) - self.contracts.size
        if extra:
            self.sums = np.vstack([self.sums, np.zeros((extra, 2))])
            self.compensation = np.vstack([self.compensation, np.zeros((extra, 2))])
            self.contracts = np.concatenate([self.contracts, np.zeros(extra, np.int64)])
            self.dropped = np.concatenate([self.dropped, np.zeros(extra, np.int64)])
        return np.array([self.ids[name] for name in names], dtype=np.int64)

    def add(self, result: GexResult) -> None:
        if self.first is None:
            self.first = result
            self.snapshot = result.settings.get("snapshot_time")
        else:
            changed = sorted(
                key
                for key in result.settings
                if key not in ("snapshot_time", "device_timing")
                and result.settings[key] != self.first.settings.get(key)
            )
            if changed:  # derived from the options, so only a change in the data does this
                raise ChainError(
                    f"batch {self.batches} has other settings than the first: {changed}"
                )
            if result.settings.get("snapshot_time") != self.snapshot:
                self.snapshot = None  # per-row snapshots, as the in-memory call reports them
        self.batches += 1
        table = result.by_underlying
        names = table.column("underlying").to_pylist()
        ids = self._grow(names)
        for index, spot in zip(ids, table.column("spot").to_pylist(), strict=True):
            known = self.spot[index]
            spot = np.nan if spot is None else spot
            if np.isnan(known) and not self.contracts[index] and not self.dropped[index]:
                self.spot[index] = spot
            elif not (known == spot or (np.isnan(known) and np.isnan(spot))):
                raise ChainError(
                    f"spot of {names[list(ids).index(index)]!r} differs between batches "
                    f"({known} then {spot}): give one spot per underlying (spot=...)"
                )
        batch_sums = np.zeros_like(self.sums)
        batch_sums[ids, 0] = table.column("call_gex").to_numpy()
        batch_sums[ids, 1] = table.column("put_gex").to_numpy()
        _compensated_add(self.sums, self.compensation, batch_sums)
        self.contracts[ids] += table.column("contracts").to_numpy()
        self.dropped[ids] += table.column("dropped").to_numpy()
        for row in result.dropped.to_pylist():
            key = (row["underlying"], row["reason"])
            self.drop_counts[key] = self.drop_counts.get(key, 0) + row["count"]
        if self.by_strike and result.by_strike is not None:
            self._add_strikes(result.by_strike)

    def _add_strikes(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        encoded = pc.dictionary_encode(table.column("underlying")).combine_chunks()
        lookup = self._grow(encoded.dictionary.to_pylist())
        uid = lookup[encoded.indices.to_numpy()]
        strikes = table.column("strike").to_numpy()
        sums = np.column_stack(
            [table.column("call_gex").to_numpy(), table.column("put_gex").to_numpy()]
        )
        contracts = table.column("contracts").to_numpy()
        # gex() lists strikes grouped by underlying, ascending and unique within it: merge
        # each underlying's run into its own sorted state (1-D searches, no global sort)
        starts = np.flatnonzero(np.r_[True, uid[1:] != uid[:-1]])
        stops = np.r_[starts[1:], uid.size]
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            self._merge_underlying(
                int(uid[start]), strikes[start:stop], sums[start:stop], contracts[start:stop]
            )

    def _merge_underlying(self, uid, strikes, sums, contracts) -> None:
        state = self.strikes.get(uid)
        if state is None:
            self.strikes[uid] = [strikes.copy(), sums.copy(), np.zeros_like(sums), contracts.copy()]
            return
        known, known_sums, known_compensation, known_contracts = state
        if not np.array_equal(known, strikes):
            merged = np.union1d(known, strikes)
            if merged.size != known.size:  # new strikes: widen the state
                at = np.searchsorted(merged, known)
                wider_sums = np.zeros((merged.size, 2))
                wider_compensation = np.zeros((merged.size, 2))
                wider_contracts = np.zeros(merged.size, np.int64)
                wider_sums[at], wider_compensation[at] = known_sums, known_compensation
                wider_contracts[at] = known_contracts
                known, known_sums = merged, wider_sums
                known_compensation, known_contracts = wider_compensation, wider_contracts
            at = np.searchsorted(known, strikes)
            aligned = np.zeros_like(known_sums)
            aligned[at] = sums
            sums = aligned
            aligned_contracts = np.zeros_like(known_contracts)
            aligned_contracts[at] = contracts
            contracts = aligned_contracts
        _compensated_add(known_sums, known_compensation, sums)
        known_contracts += contracts
        self.strikes[uid] = [known, known_sums, known_compensation, known_contracts]

    def result(self) -> GexResult:
        assert self.first is not None
        names = sorted(self.ids, key=lambda name: self.ids[name])
        order = sorted(range(len(names)), key=lambda index: names[index])
        sums = self.sums + self.compensation
        by_underlying = pa.table(
            {
                "underlying": pa.array([names[i] for i in order], pa.string()),
                "spot": pa.array([self.spot[i] for i in order], pa.float64(), from_pandas=True),
                "total_gex": pa.array(sums[order, 0] + sums[order, 1], pa.float64()),
                "call_gex": pa.array(sums[order, 0], pa.float64()),
                "put_gex": pa.array(sums[order, 1], pa.float64()),
                "contracts": pa.array(self.contracts[order], pa.int64()),
                "dropped": pa.array(self.dropped[order], pa.int64()),
            },
            schema=BY_UNDERLYING_SCHEMA,
        )
        reason_rank = {reason: rank for rank, reason in enumerate(_kernels.REASONS)}
        drop_keys = sorted(self.drop_counts, key=lambda key: (key[0], reason_rank.get(key[1], 0)))
        dropped = pa.table(
            {
                "underlying": [key[0] for key in drop_keys],
                "reason": [key[1] for key in drop_keys],
                "count": [self.drop_counts[key] for key in drop_keys],
            },
            schema=DROPPED_SCHEMA,
        )
        by_strike = self._strike_table(names) if self.by_strike else None
        settings = {**self.first.settings, "snapshot_time": self.snapshot, "batches": self.batches}
        return GexResult(
            by_underlying=by_underlying,
            by_strike=by_strike,
            per_contract=None,
            dropped=dropped,
            unit=self.first.unit,
            convention=self.first.convention,
            gamma_source=self.first.gamma_source,
            day_count=self.first.day_count,
            settings=settings,
        )

    def _strike_table(self, names: list[str]) -> pa.Table:
        order = [uid for uid in sorted(self.strikes, key=lambda uid: names[uid])]
        states = [self.strikes[uid] for uid in order]
        sizes = np.array([state[0].size for state in states], np.int64)
        uid = np.repeat(np.array(order, np.int64), sizes)
        sums = (
            np.concatenate([state[1] + state[2] for state in states])
            if states
            else np.zeros((0, 2))
        )
        calls, puts = sums[:, 0].copy(), sums[:, 1].copy()
        net = calls + puts
        starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64) if states else uid
        cumulative = _kernels.segmented_cumsum(net, starts)
        return pa.table(
            {
                "underlying": pc.take(pa.array(names, pa.string()), pa.array(uid)),
                "strike": np.concatenate([state[0] for state in states]) if states else calls,
                "call_gex": calls,
                "put_gex": puts,
                "net_gex": net,
                "cumulative_net_gex": cumulative,
                "contracts": np.concatenate([state[3] for state in states]) if states else uid,
            },
            schema=BY_STRIKE_SCHEMA,
        )


def stream_gex(
    source: Any, *, batch_size: int = DEFAULT_BATCH_SIZE, **gex_options: Any
) -> GexResult:
    """GEX of a dataset larger than memory, read and computed batch by batch.

    Equals ``fastgex.gex(whole_table, **gex_options)`` to rounding: the totals and the
    per-strike table are merged across batches by (underlying, strike) with compensated
    sums, so they differ from the in-memory call only in the last few bits (the order
    the compensated partial sums are combined in). Memory is bounded by one batch plus
    the per-strike state (one row per distinct (underlying, strike)).

    Parameters
    ----------
    source : path, pyarrow.dataset.Dataset, RecordBatchReader, Table or iterable
        Anything :func:`iter_batches` reads.
    batch_size : int
        Most rows per batch (see :func:`iter_batches` for Parquet row groups).
    **gex_options
        Keywords of :func:`fastgex.gex`, except those that need the whole chain at once
        (``per_contract``, ``buckets``, ``views``: use :func:`run_batch`, whose
        partitions each fit in memory).

    Returns
    -------
    GexResult
        ``by_underlying``, ``by_strike`` (unless ``by_strike=False``) and ``dropped``;
        ``settings["batches"]`` is the number of non-empty batches.

    Raises
    ------
    ValueError
        A whole-chain option, or a bad ``batch_size``.
    fastgex.ChainError
        As :func:`fastgex.gex` for any batch; also when batches disagree on an
        underlying's spot or on the snapshot time, or the source has no rows.
    """
    for name in _WHOLE_CHAIN_OPTIONS:
        if gex_options.get(name) not in (None, False):
            raise ValueError(
                f"stream_gex does not support {name}= (it needs the whole chain at once); "
                "run_batch computes it per partition"
            )
        gex_options.pop(name, None)
    by_strike = bool(gex_options.pop("by_strike", True))
    merger = _GexMerger(by_strike)
    for batch in iter_batches(source, batch_size=batch_size):
        if batch.num_rows:
            merger.add(gex(pa.Table.from_batches([batch]), by_strike=by_strike, **gex_options))
    if merger.first is None:
        raise ChainError("the stream has no rows")
    return merger.result()


# --------------------------------------------------------------------------- batch jobs


def compute_partition(table: pa.Table, **levels_options: Any) -> dict[str, pa.Table]:
    """Every result table of one partition (Arrow in, Arrow out).

    Parameters
    ----------
    table : pyarrow.Table
        The partition's chain (one snapshot; any number of underlyings).
    **levels_options
        Keywords of :func:`fastgex.levels` (and through it :func:`fastgex.gex`).

    Returns
    -------
    dict of str to pyarrow.Table
        ``totals`` (per underlying), ``dropped``, ``levels`` (per underlying and
        bucket), ``crossings``, ``profile``, ``by_strike`` (per underlying, bucket and
        strike) and, with expiration dates, ``by_strike_expiry`` (the strike x expiry
        surface).
    """
    result = levels(table, **levels_options)
    tables = {
        "totals": result.gex.by_underlying,
        "dropped": result.gex.dropped,
        "levels": result.levels,
        "crossings": result.crossings,
        "profile": result.profile,
        "by_strike": result.by_strike,
    }
    if result.by_strike_expiry is not None:
        tables["by_strike_expiry"] = result.by_strike_expiry
    return tables


def partition_function(
    table_name: str, keys: Sequence[str], **levels_options: Any
) -> Callable[[pa.Table], pa.Table]:
    """An Arrow-in / Arrow-out function of one partition, for engines that group for you.

    For Spark's ``df.groupBy(*keys).applyInArrow(function, schema)`` (see the scaling
    guide) or any engine that hands over one partition as a :class:`pyarrow.Table`.

    Parameters
    ----------
    table_name : str
        Which table of :func:`compute_partition` to return (see :data:`RESULT_TABLES`).
    keys : sequence of str
        The grouping columns: their values (constant within a partition) are put first
        in the output, as in :func:`read_results`.
    **levels_options
        Keywords of :func:`fastgex.levels` and :func:`fastgex.gex`.

    Returns
    -------
    callable
        ``function(table) -> table``.
    """
    if table_name not in RESULT_TABLES:
        raise ValueError(f"table_name must be one of {RESULT_TABLES}, got {table_name!r}")
    keys = list(keys)

    def function(table: pa.Table) -> pa.Table:
        result = compute_partition(table, **levels_options).get(table_name)
        if result is None:
            raise ChainError(f"no {table_name!r} table for this partition (no expiration dates)")
        result = result.drop_columns([name for name in keys if name in result.column_names])
        zeros = pa.array(np.zeros(result.num_rows, np.int32))
        for position, name in enumerate(keys):
            column = table.column(name).slice(0, 1).combine_chunks()
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            result = result.add_column(position, name, pc.take(column, zeros))
        return result

    return function


@dataclass(frozen=True)
class BatchReport:
    """What a :func:`run_batch` call did.

    Attributes
    ----------
    out : pathlib.Path
        The output directory.
    partitions : int
        Partitions in the dataset.
    done : int
        Partitions computed and written by this call.
    skipped : int
        Partitions already done by an earlier call (not recomputed).
    failed : list of (str, str)
        Partitions that could not be computed (bad data), with the error; rerun to retry.
    rows : int
        Input rows of the partitions this call computed.
    seconds : float
        Wall time of the call.
    """

    out: Path
    partitions: int
    done: int
    skipped: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every partition is done."""
        return not self.failed and self.done + self.skipped == self.partitions

    @property
    def rows_per_second(self) -> float:
        """Input rows computed per second of wall time."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _segment(name: str, value: Any) -> str:
    text = _NULL_SEGMENT if value is None else quote(str(value), safe="")
    return f"{name}={text}"


def partition_path(key: Sequence[tuple[str, Any]]) -> str:
    """The hive path (``date=2024-01-08/underlying=SPX``) of a partition key."""
    return "/".join(_segment(name, value) for name, value in key)


def _filter(dataset: ds.Dataset, key: Sequence[tuple[str, Any]]) -> ds.Expression:
    expression = None
    for name, value in key:
        column = pc.field(name)
        field_type = dataset.schema.field(name).type
        if pa.types.is_dictionary(field_type):
            field_type = field_type.value_type
            column = column.cast(field_type)
        term = column.is_null() if value is None else column == pa.scalar(value, field_type)
        expression = term if expression is None else expression & term
    assert expression is not None
    return expression


#: One partition of a job: its key, its row count and the files holding its rows
#: (None for an in-memory dataset).
_Partition = tuple[tuple[tuple[str, Any], ...], int, "tuple[str, ...] | None"]


def _partition_keys(dataset: ds.Dataset, partition_by: Sequence[str]) -> list[_Partition]:
    """Every distinct partition key with its row count and files, in sorted key order.

    Memory is bounded by one batch of the key columns plus one entry per distinct key:
    a file whose hive path fixes every key is counted from its Parquet footer without
    reading a row; other files have only their key columns read, a batch at a time.
    """
    names = list(partition_by)
    found: dict[tuple[Any, ...], list[Any]] = {}  # key values -> [rows, {paths}]

    def add(values: tuple[Any, ...], rows: int, path: str | None) -> None:
        entry = found.setdefault(values, [0, set()])
        entry[0] += rows
        if path is not None:
            entry[1].add(path)

    def scan(part: ds.Dataset, path: str | None) -> None:
        for piece in part.to_batches(
            columns=names, batch_readahead=0, fragment_readahead=0, use_threads=False
        ):
            columns = {}
            for name in names:
                column = piece.column(name)
                if pa.types.is_dictionary(column.type):
                    column = column.cast(column.type.value_type)
                columns[name] = column
            counts = pa.table(columns).group_by(names).aggregate([([], "count_all")])
            for row in counts.to_pylist():
                add(tuple(row[name] for name in names), row["count_all"], path)

    if isinstance(dataset, ds.FileSystemDataset):
        for fragment in dataset.get_fragments():
            values = ds.get_partition_keys(fragment.partition_expression)
            if set(names) <= set(values):  # the path fixes every key: count from the footer
                add(tuple(values[name] for name in names), fragment.count_rows(), fragment.path)
                continue
            one_file = ds.FileSystemDataset(
                [fragment], dataset.schema, dataset.format, dataset.filesystem
            )
            scan(one_file, fragment.path)
    else:
        scan(dataset, None)
    ordered = sorted(found.items(), key=lambda item: [(value is None, value) for value in item[0]])
    return [
        (
            tuple(zip(names, values, strict=True)),
            rows,
            tuple(sorted(paths)) if isinstance(dataset, ds.FileSystemDataset) else None,
        )
        for values, (rows, paths) in ordered
    ]


def _partition_dataset(source: Any, paths: Sequence[str] | None) -> ds.Dataset:
    """The dataset of the files that hold a partition's rows (all of them without paths).

    ``source`` is the job's :class:`_DatasetPath`, a dataset or a path; ``paths`` come
    from :func:`_partition_keys` (None for an in-memory dataset).
    """
    if isinstance(source, (str, os.PathLike)):
        opened = _open_dataset(source)
        if paths is None:
            return opened
        source = _DatasetPath.of(source, opened)
    if paths is None or not isinstance(source, (_DatasetPath, ds.FileSystemDataset)):
        return source
    gone = [
        info.path
        for info in source.filesystem.get_file_info(list(paths))
        if info.type == pafs.FileType.NotFound
    ]
    if gone:
        raise ChainError(
            f"{len(gone)} file(s) of this partition are gone from the dataset since the job "
            f"listed it: {gone[:3]}"
        )
    if isinstance(source, _DatasetPath):
        return source.files(paths)
    wanted = set(paths)
    fragments = [fragment for fragment in source.get_fragments() if fragment.path in wanted]
    return ds.FileSystemDataset(fragments, source.schema, source.format, source.filesystem)


def _hive_keys(dataset: ds.Dataset) -> list[str]:
    """The partition key names of a dataset's files, in path order."""
    names: dict[str, None] = {}
    if isinstance(dataset, ds.FileSystemDataset):
        for fragment in dataset.get_fragments():
            names.update(dict.fromkeys(ds.get_partition_keys(fragment.partition_expression)))
    return list(names)


def _fsync_directory(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _atomic_write(path: Path, write) -> None:
    """Write with ``write(temp_path)``, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        write(temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    _fsync_directory(path.parent)


def _write_json(path: Path, payload: dict) -> None:
    def write(temp: Path) -> None:
        temp.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n")

    _atomic_write(path, write)


def _option_defaults() -> dict[str, Any]:
    """The keywords a job accepts (those of :func:`fastgex.levels` and :func:`fastgex.gex`)."""
    defaults: dict[str, Any] = {}
    for function in (gex, levels):
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                defaults[name] = parameter.default
    return defaults


def _options_record(levels_options: dict[str, Any]) -> dict[str, Any]:
    """The job's effective options (defaults filled in, enums by value) as JSON data."""
    merged = _option_defaults()
    merged.update(levels_options)

    def plain(value: Any) -> Any:
        return value.value if isinstance(value, enum.Enum) else repr(value)

    return json.loads(json.dumps(merged, sort_keys=True, default=plain))


def _failure(where: str, error: BaseException) -> dict[str, Any]:
    """The summary of a failed partition: the same wording locally and on Dask."""
    return {
        "partition": where,
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "rows": 0,
    }


def _process_partition(
    source: Any,
    key: tuple[tuple[str, Any], ...],
    out: str,
    levels_options: dict[str, Any],
    paths: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Read, compute and write one partition; the unit of work locally and on Dask.

    Any error of the partition's own (bad data, a file gone, a full disk) is returned as
    a failed summary, so one bad partition never stops the others; a rerun retries it.
    """
    out_path = Path(out)
    where = partition_path(key)
    marker = out_path / _DONE / where / _MARKER
    if marker.exists():  # done by an attempt that died before reporting back
        return {"partition": where, "status": "skipped", "rows": 0}
    started = time.perf_counter()
    try:
        dataset = _partition_dataset(source, paths)
        table = dataset.to_table(filter=_filter(dataset, key))
        tables = compute_partition(table, **levels_options)
        names = [name for name, _ in key]
        for table_name, result in tables.items():
            result = result.drop_columns([name for name in names if name in result.column_names])
            _atomic_write(
                out_path / table_name / where / _PART_FILE,
                lambda temp, result=result: pq.write_table(result, temp),
            )
    except Exception as error:  # reported per partition: see the docstring
        return _failure(where, error)
    _write_json(
        marker,
        {
            "partition": where,
            "rows": table.num_rows,
            "tables": sorted(tables),
            "seconds": time.perf_counter() - started,
        },
    )
    return {"partition": where, "status": "done", "rows": table.num_rows}


def _check_job(out: Path, record: dict[str, Any]) -> None:
    job_file = out / _JOB_FILE
    if job_file.exists():
        previous = json.loads(job_file.read_text())
        # an option added to fastgex since the job began matches when left at its default
        defaults = _options_record({})
        options = {
            key: value
            for key, value in record["options"].items()
            if key in previous.get("options", {}) or value != defaults.get(key)
        }
        if previous != {**record, "options": options}:
            raise ValueError(
                f"{out} holds a job with other options ({previous}); resume it with the "
                "same options or write to a new --out"
            )
    else:
        _write_json(job_file, record)


def _write_key_schema(out: Path, schema: pa.Schema, partition_by: Sequence[str]) -> None:
    """Record the keys' types once, for :func:`read_results` (hive paths are text)."""
    path = out / _KEYS_FILE
    if path.exists():
        return
    fields = []
    for name in partition_by:
        item = schema.field(name)
        if pa.types.is_dictionary(item.type):
            item = item.with_type(item.type.value_type)
        fields.append(item)

    def write(temp: Path) -> None:
        with pa.OSFile(os.fspath(temp), "wb") as sink, pa.ipc.new_file(sink, pa.schema(fields)):
            pass

    _atomic_write(path, write)


def run_batch(
    dataset: Any,
    out: str | os.PathLike,
    *,
    partition_by: Sequence[str] | None = None,
    scheduler: str = "local",
    address: str | None = None,
    client: Any = None,
    n_workers: int | None = None,
    progress: bool | None = None,
    **levels_options: Any,
) -> BatchReport:
    """Resumable per-partition job: totals, levels, profiles and surfaces as Parquet.

    Parameters
    ----------
    dataset : path or pyarrow.dataset.Dataset
        A Parquet dataset (hive directories such as ``date=2024-01-08/`` become keys).
        On Dask, workers open it themselves, so a path must be reachable from them.
    out : path
        Output directory: ``out/<table>/<key=value>/.../part-0.parquet`` per table
        (see :func:`compute_partition`) and ``out/_done/<partition>/_SUCCESS.json``
        per finished partition. Read it back with :func:`read_results`.
    partition_by : sequence of str, optional
        Columns whose distinct values make the partitions (the unit of work and of
        resumption). Default: the dataset's hive partition keys.
    scheduler : {"local", "dask"}
        One process, or one Dask task per partition.
    address : str, optional
        With ``scheduler="dask"``: a scheduler address; default a new LocalCluster.
    client : distributed.Client, optional
        With ``scheduler="dask"``: an existing client (overrides ``address``).
    n_workers : int, optional
        Workers of the LocalCluster (default 2).
    progress : bool, optional
        Draw a progress line on stderr; default only when stderr is a terminal.
    **levels_options
        Keywords of :func:`fastgex.levels` (``buckets``, ``views``, ``n_levels``, ...)
        and :func:`fastgex.gex`. A rerun into the same ``out`` must use the same ones.

    Returns
    -------
    BatchReport
        Partitions done, skipped (already done) and failed, rows and time.

    Raises
    ------
    ValueError
        No partition keys, an unknown scheduler, or ``out`` holds a job with other
        options.
    """
    started = time.perf_counter()
    if scheduler not in ("local", "dask"):
        raise ValueError(f"scheduler must be 'local' or 'dask', got {scheduler!r}")
    opened = _open_dataset(dataset)
    if partition_by is None:
        partition_by = _hive_keys(opened)
        if not partition_by:
            raise ValueError(
                "the dataset has no hive partition keys: give partition_by=, e.g. "
                "('snapshot_time',) or ('date', 'underlying')"
            )
    partition_by = list(partition_by)
    missing = [name for name in partition_by if name not in opened.schema.names]
    if missing:
        raise ValueError(f"partition_by columns {missing} are not in the dataset")
    unknown = sorted(set(levels_options) - set(_option_defaults()))
    if unknown:  # caught here, not once per partition on the workers
        raise TypeError(
            f"unknown option(s) {unknown}: a batch job takes the keywords of fastgex.levels "
            "and fastgex.gex"
        )
    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    _check_job(out_path, {"partition_by": partition_by, "options": _options_record(levels_options)})
    _write_key_schema(out_path, opened.schema, partition_by)
    keys = _partition_keys(opened, partition_by)
    pending = [
        partition
        for partition in keys
        if not (out_path / _DONE / partition_path(partition[0]) / _MARKER).exists()
    ]
    skipped = len(keys) - len(pending)
    bar = Progress(sum(rows for _, rows, _ in pending), len(pending), enabled=progress)
    source = opened  # workers open the files of their partition from the job's listing
    if not isinstance(dataset, ds.Dataset) and isinstance(opened, ds.FileSystemDataset):
        source = _DatasetPath.of(dataset, opened)
    if scheduler == "local":
        summaries = _run_local(pending, source, out_path, levels_options, bar)
    else:
        summaries = _run_dask(
            pending, source, out_path, levels_options, bar, address, client, n_workers
        )
    bar.close()
    done = sum(1 for summary in summaries if summary["status"] == "done")
    skipped += sum(1 for summary in summaries if summary["status"] == "skipped")
    failed = [
        (summary["partition"], summary["error"])
        for summary in summaries
        if summary["status"] == "failed"
    ]
    return BatchReport(
        out=out_path,
        partitions=len(keys),
        done=done,
        skipped=skipped,
        failed=failed,
        rows=sum(summary["rows"] for summary in summaries),
        seconds=time.perf_counter() - started,
    )


def _run_local(pending, source, out: Path, levels_options, bar: Progress) -> list[dict]:
    summaries = []
    for key, rows, paths in pending:
        summaries.append(_process_partition(source, key, os.fspath(out), levels_options, paths))
        bar.update(rows=rows, partitions=1)
    return summaries


def local_cluster(n_workers: int = 2) -> Any:
    """A Dask LocalCluster sized for fastgex jobs on this machine.

    Worker processes with one task thread each (the kernels are Numba-parallel) and the
    machine's cores split between them (``NUMBA_NUM_THREADS`` = cores // workers, at
    least 1; a ``NUMBA_NUM_THREADS`` already set in the environment is kept), so the
    workers do not oversubscribe the cores.

    Parameters
    ----------
    n_workers : int
        Worker processes.

    Returns
    -------
    distributed.LocalCluster
        Close it (or use it as a context manager) when done.
    """
    import distributed

    threads = os.environ.get("NUMBA_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // n_workers))
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: 8787 may be taken by another cluster
        env={"NUMBA_NUM_THREADS": threads},
    )


def _run_dask(
    pending, source, out: Path, levels_options, bar, address, client, n_workers
) -> list[dict]:
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "scheduler='dask' needs dask.distributed: pip install 'fastgex[dask]'"
        ) from None
    cluster = None
    own_client = client is None
    if client is None:
        if address is None:
            cluster = local_cluster(n_workers or 2)
            client = distributed.Client(cluster)
        else:
            client = distributed.Client(address)
    try:
        run = uuid.uuid4().hex[:8]
        futures = {
            client.submit(
                _process_partition,
                source,
                key,
                os.fspath(out),
                levels_options,
                paths,
                key=f"fastgex-partition-{run}-{index}",
                pure=False,
            ): (key, rows)
            for index, (key, rows, paths) in enumerate(pending)
        }
        summaries = []
        for future in distributed.as_completed(futures):
            key, rows = futures[future]
            try:
                summaries.append(future.result())
            except Exception as error:  # e.g. KilledWorker: the others go on; a rerun retries
                summaries.append(_failure(partition_path(key), error))
            bar.update(rows=rows, partitions=1)
        return summaries
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


def read_results(out: str | os.PathLike, table: str) -> pa.Table:
    """One result table of a batch job, over its done partitions only.

    Parameters
    ----------
    out : path
        The job's output directory.
    table : str
        ``totals``, ``dropped``, ``levels``, ``crossings``, ``profile``, ``by_strike``
        or ``by_strike_expiry``.

    Returns
    -------
    pyarrow.Table
        The rows of every done partition, with the partition keys as columns (read
        from the hive paths, with the types the keys had in the input dataset),
        partitions in sorted order.
    """
    out_path = Path(out)
    done_root = out_path / _DONE
    markers = sorted(done_root.rglob(_MARKER)) if done_root.exists() else []
    files = []
    for marker in markers:
        where = marker.parent.relative_to(done_root)
        path = out_path / table / where / _PART_FILE
        if path.exists():
            files.append(os.fspath(path))
    if not files:
        raise FileNotFoundError(f"no done partition of {table!r} under {out_path}")
    keys_file = out_path / _KEYS_FILE
    if keys_file.exists():  # the keys' own types; a job written before this file: inferred
        with pa.OSFile(os.fspath(keys_file), "rb") as source:
            partitioning = ds.partitioning(pa.ipc.open_file(source).schema, flavor="hive")
    else:
        partitioning = ds.partitioning(flavor="hive")
    dataset = ds.dataset(
        files,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=os.fspath(out_path / table),
    )
    return dataset.to_table()
