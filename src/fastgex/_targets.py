"""Expiry buckets and views as aggregation targets of one GEX pass.

A *target* is a view (``all``, ``ex_next_expiry``, ``ex_next_monthly``) or a bucket
(``0dte``, ``weekly``, ...). Membership is decided once per (underlying, expiry) pair,
never per row; every per-target total and per-strike table is then a reduction of the
GEX kernel's (underlying, strike, expiry) group sums
(:func:`fastgex._group_kernels.target_strike_sums`). Used by :func:`fastgex.gex` (``buckets=``,
``views=``) and by :func:`fastgex.levels` / :func:`fastgex.profile`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastgex import _group_kernels
from fastgex._errors import ChainError
from fastgex._timing import _local_dates
from fastgex.buckets import VIEWS, bucket_names, expiry_buckets, is_standard_monthly

BY_STRIKE_BUCKET_SCHEMA = pa.schema(
    [
        ("underlying", pa.string()),
        ("bucket", pa.string()),
        ("strike", pa.float64()),
        ("call_gex", pa.float64()),
        ("put_gex", pa.float64()),
        ("net_gex", pa.float64()),
        ("cumulative_net_gex", pa.float64()),
        ("call_open_interest", pa.float64()),
        ("put_open_interest", pa.float64()),
        ("contracts", pa.int64()),
    ]
)

_NEVER = np.iinfo(np.int64).max


@dataclass
class Targets:
    """Views then buckets, and what decides which (underlying, expiry) pairs belong to each."""

    names: list[str]
    expiry_dates: list[dt.date | None]  # per expiry code; the last code has no date
    expiry_bucket: list[str | None]  # bucket name per expiry code (None: no buckets)
    snapshot_date: dt.date | None
    ordinals: np.ndarray  # per expiry code (+1 for "no expiration"): proleptic ordinal or -1
    monthly: np.ndarray  # per expiry code: a standard monthly (third Friday) expiry
    settled: np.ndarray  # per expiry code: settled at the snapshot
    expiry_label: np.ndarray  # per expiry code: index into label_codes, -1 for none
    label_codes: dict[str | None, int]

    @property
    def n_expiries(self) -> int:
        """Expiry codes, the last one meaning "no expiration"."""
        return len(self.expiry_dates) + 1

    def members(self, pair_underlying: np.ndarray, pair_expiry: np.ndarray) -> np.ndarray:
        """``(pairs, targets)`` membership of (underlying, expiry code) pairs.

        The "next" expiry of a view is per underlying, among the pairs given: the
        earliest one not yet settled at the snapshot.
        """
        member = np.zeros((pair_underlying.size, len(self.names)), dtype=np.bool_)
        days = self.ordinals[pair_expiry]
        anything = np.ones(self.ordinals.size, dtype=np.bool_)
        n_underlyings = int(pair_underlying.max()) + 1 if pair_underlying.size else 0
        snapshot_ordinal = self.snapshot_date.toordinal() if self.snapshot_date else 0
        for position, target in enumerate(self.names):
            if target == "all":
                member[:, position] = True
            elif target in VIEWS:
                eligible = anything if target == "ex_next_expiry" else self.monthly
                usable = (
                    eligible[pair_expiry] & (days >= snapshot_ordinal) & ~self.settled[pair_expiry]
                )
                excluded = np.full(n_underlyings, _NEVER, dtype=np.int64)
                np.minimum.at(excluded, pair_underlying[usable], days[usable])
                member[:, position] = days != excluded[pair_underlying]
            else:
                code = self.label_codes.get(target, -2)
                member[:, position] = self.expiry_label[pair_expiry] == code
        return member

    def pair_bits(
        self, key_underlying: np.ndarray, key_expiry: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Membership of (underlying, expiry code) keys, as uint64 bit masks per pair.

        Returns ``(pair_of_key, bits)``: the distinct pair of each key and each pair's
        mask (bit ``t`` for target ``t``). Decided once per distinct pair (found with a
        dense table when small), never per key.
        """
        n_expiries = self.n_expiries
        n_underlyings = int(key_underlying.max()) + 1 if key_underlying.size else 0
        cells = n_underlyings * n_expiries
        if cells <= _DENSE_PAIRS:
            pair_of_key, pairs = _group_kernels.pair_ids(
                key_underlying, key_expiry, n_expiries, cells
            )
        else:
            keys = key_underlying.astype(np.int64) * n_expiries + key_expiry
            pairs, pair_of_key = np.unique(keys, return_inverse=True)
        member = self.members(pairs // n_expiries, pairs % n_expiries)
        return pair_of_key, _bit_masks(member, len(self.names))

    def group_bits(self, group_underlying: np.ndarray, group_expiry: np.ndarray) -> np.ndarray:
        """Membership of each (underlying, strike, expiry) group as a uint64 bit mask."""
        pair_of_group, bits = self.pair_bits(group_underlying, group_expiry)
        return bits[pair_of_group]

    def row_classes(self, uid: np.ndarray, expiry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row the *class* of its (underlying, expiry) pair, and per class its bits.

        A class is a distinct membership mask: every expiry of one underlying that
        falls in the same buckets and views. Grouping rows by (underlying, strike,
        class) instead of (underlying, strike, expiry) gives the same per-target sums
        with fewer groups (the sample market: 2.1-2.4x fewer), which is what the group
        steps after the kernel scale with.
        """
        if not any(name in VIEWS and name != "all" for name in self.names):
            # Without "ex next" views membership depends on the expiry alone: classes
            # per expiry code, no (underlying, expiry) pairs to find.
            codes = np.arange(self.n_expiries, dtype=np.int64)
            member = self.members(np.zeros(codes.size, dtype=np.int64), codes)
            bits = _bit_masks(member, len(self.names))
            class_bits, code_class = np.unique(bits, return_inverse=True)
            return _group_kernels.take_int32(code_class.astype(np.int32), expiry), class_bits
        pair_of_row, bits = self.pair_bits(uid, expiry)
        class_bits, pair_class = np.unique(bits, return_inverse=True)
        return _group_kernels.take_int32(pair_class.astype(np.int32), pair_of_row), class_bits


def _bit_masks(member: np.ndarray, n_targets: int) -> np.ndarray:
    """Each row of a (keys, targets) boolean membership as a uint64 mask."""
    weights = np.left_shift(np.uint64(1), np.arange(n_targets, dtype=np.uint64))
    return (member.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


#: Largest (underlyings x expiries) table used to find the distinct pairs without sorting.
_DENSE_PAIRS = 1 << 24
#: Targets are bits of a uint64 mask.
MAX_TARGETS = 64


def resolve_targets(prepared: Any, work: pa.Table, buckets: Any, views: Sequence[str]) -> Targets:
    """Targets for a prepared chain: the views, then the buckets present (spec order).

    Raises
    ------
    fastgex.ChainError
        Buckets or ex-next views on a chain without expiration dates or one snapshot time.
    ValueError
        An unknown view, or more than 64 targets.
    """
    views = list(dict.fromkeys(views))
    unknown = [view for view in views if view not in VIEWS]
    if unknown:
        raise ValueError(f"unknown views {unknown}; choose from {list(VIEWS)}")
    dated = prepared.expiry_instants is not None and "expiry" in work.column_names
    needs_dates = buckets is not None or any(view != "all" for view in views)
    if needs_dates and not dated:
        raise ChainError(
            "expiry buckets and the ex-next-expiry views need expiration dates: give an "
            "'expiration' column (with a snapshot time), not only 'time_to_expiry'"
        )
    snapshot_date = None
    expiry_dates: list[dt.date | None] = []
    expiry_bucket: list[str | None] = []
    settled = np.zeros(1, dtype=np.bool_)
    if dated:
        expiry_dates = list(_local_dates(prepared.expiry_instants, prepared.zone).astype(object))
        settled = np.zeros(len(expiry_dates) + 1, dtype=np.bool_)
        if needs_dates and work.num_rows:  # an empty chain has no expiries to tag
            instant = snapshot_instant(prepared)
            snapshot_date = instant.astimezone(prepared.zone).date()
            # After the close on an expiry day, that day's expiry is no longer "next".
            settled[:-1] = prepared.expiry_instants <= int(instant.timestamp() * 1e9)
        if buckets is not None and snapshot_date is not None:
            expiry_bucket = list(expiry_buckets(expiry_dates, snapshot_date, buckets))
        else:
            expiry_bucket = [None] * len(expiry_dates)
    names = list(views)
    if buckets is not None:
        known = bucket_names(buckets)
        present = {name for name in expiry_bucket if name is not None and name != "expired"}
        if known is None:
            bucket_targets = sorted(present)
        else:
            bucket_targets = [name for name in known if name in present]
        names.extend(name for name in bucket_targets if name not in names)
    if len(names) > MAX_TARGETS:
        raise ValueError(f"at most {MAX_TARGETS} buckets and views, not {len(names)}")
    label_codes = {name: code for code, name in enumerate(dict.fromkeys(expiry_bucket))}
    return Targets(
        names=names,
        expiry_dates=expiry_dates,
        expiry_bucket=expiry_bucket,
        snapshot_date=snapshot_date,
        ordinals=np.array(
            [day.toordinal() if day is not None else -1 for day in expiry_dates] + [-1],
            dtype=np.int64,
        ),
        monthly=np.array(
            [day is not None and is_standard_monthly(day) for day in expiry_dates] + [False]
        ),
        settled=settled,
        expiry_label=np.array([label_codes[name] for name in expiry_bucket] + [-1], dtype=np.int64),
        label_codes=label_codes,
    )


def snapshot_instant(prepared: Any) -> dt.datetime:
    """The chain's one snapshot time (aware)."""
    if prepared.snapshot is not None:
        return prepared.snapshot
    source = prepared.source
    if "snapshot_time" in source.column_names:
        column = source.column("snapshot_time")
        if pa.types.is_timestamp(column.type) and column.null_count == 0 and len(column):
            low, high = pc.min_max(column).values()
            if low.as_py() == high.as_py():
                value = low.as_py()
                if value.tzinfo is None:
                    value = value.replace(tzinfo=prepared.zone)
                return value
    raise ChainError(
        "expiry buckets and views need one snapshot time for the chain: pass snapshot_time="
    )


def underlying_ranks(names: Sequence[str | None], order: Sequence[int]) -> np.ndarray:
    """Rank of each underlying id in ``order``; ids not in it rank past the end."""
    rank = np.full(len(names), len(order), dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    return rank


@dataclass
class TargetSums:
    """Per-target totals and the per-(underlying, target, strike) table."""

    totals: np.ndarray  # (len(order), targets, 3): call / put / net GEX per reported underlying
    contracts: np.ndarray  # (len(order), targets)
    strike_table: pa.Table  # BY_STRIKE_BUCKET_SCHEMA, ordered underlying, target, strike


def _strike_bucket_table(names, ordered, rank, bucket, values, contracts) -> pa.Table:
    """A BY_STRIKE_BUCKET_SCHEMA table over the kernel's contiguous output columns."""
    kernels = _group_kernels
    return pa.table(
        {
            "underlying": pc.take(names, pa.array(ordered[rank])),
            "bucket": bucket,
            "strike": values[kernels.STRIKE],
            "call_gex": values[kernels.CALL],
            "put_gex": values[kernels.PUT],
            "net_gex": values[kernels.NET],
            "cumulative_net_gex": values[kernels.CUMULATIVE],
            "call_open_interest": values[kernels.CALL_OI],
            "put_open_interest": values[kernels.PUT_OI],
            "contracts": contracts,
        },
        schema=BY_STRIKE_BUCKET_SCHEMA,
    )


def _group_bits(prepared: Any, targets: Targets, bits: np.ndarray | None) -> np.ndarray:
    """Each group's target mask: ``bits`` when given (groups keyed by class), else from expiries."""
    if bits is not None:
        return bits
    group_expiry = prepared.group_expiry
    if group_expiry is None:  # chains without dates: every group has "no expiration"
        group_expiry = np.full(
            prepared.group_underlying.size, targets.n_expiries - 1, dtype=np.int64
        )
    return targets.group_bits(prepared.group_underlying, group_expiry)


@dataclass
class StrikeRuns:
    """The plain per-(underlying, strike) rows of a pass, and its per-target totals."""

    rank: np.ndarray  # per row: position of its underlying in ``order``
    values: np.ndarray  # (5, rows): strike, call, put, net, running net (STRIKE ... CUMULATIVE)
    contracts: np.ndarray  # per row
    totals: np.ndarray  # (len(order), targets, 3): call / put / net GEX
    total_contracts: np.ndarray  # (len(order), targets)
    #: :func:`fastgex._group_kernels.order_groups`' ``(order, run_starts)``, for reuse.
    grouping: tuple[np.ndarray, np.ndarray] | None = None


def strike_runs(
    prepared: Any,
    accumulated: Any,
    order: Sequence[int],
    targets: Targets | None = None,
    bits: np.ndarray | None = None,
) -> StrikeRuns:
    """The plain per-strike rows from any finer groups, with the per-target totals.

    What :func:`target_sums` gives for the "all" view and for the totals, without a
    per-target table: groups ordered by ``order`` (underlyings with other ids are left
    out) then strike (:func:`fastgex._group_kernels.strike_runs`). ``targets`` None:
    no totals. Totals are summed group by group, not strike by strike, so they can
    differ from :func:`target_sums`' in the last bits; both are compensated sums.
    """
    rank = underlying_ranks(prepared.names, order)
    group_rank = rank[prepared.group_underlying]
    group_order, run_starts = _group_kernels.order_groups(
        group_rank, prepared.group_strike, len(order)
    )
    if targets is None:
        group_bits, n_targets = np.zeros(0, dtype=np.uint64), 0
    else:
        group_bits, n_targets = _group_bits(prepared, targets, bits), len(targets.names)
    return StrikeRuns(
        *_group_kernels.strike_runs(
            group_order,
            run_starts,
            group_rank[group_order[run_starts[:-1]]],
            prepared.group_strike,
            accumulated.group_sums,
            accumulated.group_counts,
            group_bits,
            n_targets,
            len(order),
        ),
        grouping=(group_order, run_starts),
    )


class DeferredStrikeTable:
    """A pass's per-(underlying, target, strike) table, built on first use.

    :func:`fastgex.gex` with buckets returns the per-target totals at once and keeps
    the pass's group sums here: the table (three times the rows of the plain per-strike
    table on a whole market) costs about a third of the bucketed call, and many callers
    want the totals only. :meth:`table` builds it once, under a lock, with
    :func:`target_sums` (reusing the strike order of :func:`strike_runs`), then drops
    the group arrays. Until then the result holds about 84 bytes per group (26 MB for
    the 1.5M-contract sample market; three of the arrays are views into row-sized
    allocations whose untouched tails take address space only), never the input
    chain. Pickling builds it; equality compares the built tables.
    """

    def __init__(
        self, prepared: Any, accumulated: Any, targets: Targets, order, bits, grouping=None
    ):
        # Only what target_sums reads, so the result does not keep the input chain alive.
        self._inputs: tuple | None = (
            SimpleNamespace(
                names=prepared.names,
                group_underlying=prepared.group_underlying,
                group_strike=prepared.group_strike,
                group_expiry=prepared.group_expiry,
            ),
            SimpleNamespace(
                group_sums=accumulated.group_sums,
                group_quantity=accumulated.group_quantity,
                group_counts=accumulated.group_counts,
            ),
            targets,
            list(order),
            bits,
            grouping,
        )
        self._table: pa.Table | None = None
        self._lock = threading.Lock()

    def table(self) -> pa.Table:
        """The BY_STRIKE_BUCKET_SCHEMA table (built on the first call)."""
        with self._lock:
            if self._table is None:
                assert self._inputs is not None
                self._table = target_sums(*self._inputs).strike_table
                self._inputs = None
            return self._table

    def __reduce__(self):
        return (_built_table, (self.table(),))

    def __eq__(self, other: object) -> bool:
        """Equal to another deferred table or a table with the same rows (builds both)."""
        if isinstance(other, DeferredStrikeTable):
            other = other.table()
        if not isinstance(other, pa.Table):
            return NotImplemented
        return self.table().equals(other)

    __hash__ = None  # type: ignore[assignment]  # mutable cache; tables are not hashable


def _built_table(table: pa.Table) -> DeferredStrikeTable:
    """A DeferredStrikeTable already holding ``table`` (what unpickling gives)."""
    deferred = DeferredStrikeTable.__new__(DeferredStrikeTable)
    deferred._inputs = None
    deferred._table = table
    deferred._lock = threading.Lock()
    return deferred


def target_sums(
    prepared: Any,
    accumulated: Any,
    targets: Targets,
    order: Sequence[int],
    bits: np.ndarray | None = None,
    grouping: tuple[np.ndarray, np.ndarray] | None = None,
) -> TargetSums:
    """Reduce the (underlying, strike, expiry or class) group sums to every target.

    ``order`` lists the underlying ids to report, in output order; totals are indexed
    by position in it. ``bits`` is each group's target mask when the groups are keyed
    by class (:meth:`Targets.row_classes`); by default it comes from their expiries.
    ``grouping``
    is :func:`fastgex._group_kernels.order_groups`' result for these groups and ``order``
    when the caller has it (:attr:`StrikeRuns.grouping`).
    """
    bits = _group_bits(prepared, targets, bits)
    rank = underlying_ranks(prepared.names, order)
    group_rank = rank[prepared.group_underlying]
    if grouping is None:
        grouping = _group_kernels.order_groups(group_rank, prepared.group_strike, len(order))
    group_order, run_starts = grouping
    out_rank, out_target, values, contracts, totals, total_contracts, *_ = (
        _group_kernels.target_strike_table(
            group_order,
            run_starts,
            group_rank[group_order[run_starts[:-1]]],
            bits,
            prepared.group_strike,
            accumulated.group_sums,
            accumulated.group_quantity,
            accumulated.group_counts,
            len(targets.names),
            len(order),
            -1,  # no copied target: the plain per-strike table comes from strike_runs
        )
    )
    ordered = np.asarray(order, dtype=np.int64)
    names = pa.array(prepared.names, pa.string())
    bucket_names = pa.array(targets.names, pa.string())
    table = _strike_bucket_table(
        names, ordered, out_rank, pc.take(bucket_names, pa.array(out_target)), values, contracts
    )
    return TargetSums(totals=totals, contracts=total_contracts, strike_table=table)
