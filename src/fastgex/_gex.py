"""The ``gex`` façade: validate and prepare Arrow columns, run the kernels, build tables.

Preparation happens per distinct value where it can (underlyings, option types,
expirations) and per Arrow record batch for the kernels, so chunked and read-only
input is used in place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastgex import _group_kernels, _kernels
from fastgex._chain import ALIASES, read_chain
from fastgex._errors import ChainError, InvalidRowsError
from fastgex._targets import (
    DeferredStrikeTable,
    StrikeRuns,
    Targets,
    resolve_targets,
    strike_runs,
)
from fastgex._timing import (
    parse_settlement,
    settlement_codes,
    snapshot_nanos,
    time_to_expiry,
)
from fastgex.conventions import (
    Convention,
    DayCount,
    GammaSource,
    Unit,
    parse_convention,
    parse_gamma_source,
    parse_unit,
)
from fastgex.device import resolve_device

#: Default multiplier when the chain has no ``multiplier`` column.
DEFAULT_MULTIPLIER = 100.0
#: Floor on time to expiry (one minute, in years) so 0DTE gamma stays finite.
DEFAULT_MIN_TIME_TO_EXPIRY = 60.0 / (365.0 * 86_400.0)

#: Read-time reasons as the kernel sees them (uint8: the negative codes wrap above 1).
_MISSING_U8 = np.uint8(_kernels.MISSING_CODE & 0xFF)
_UNKNOWN_TYPE_U8 = np.uint8(_kernels.UNKNOWN_TYPE_CODE & 0xFF)

_CALL_NAMES = {"c", "call", "calls"}
_PUT_NAMES = {"p", "put", "puts"}

BY_UNDERLYING_SCHEMA = pa.schema(
    [
        ("underlying", pa.string()),
        ("spot", pa.float64()),
        ("total_gex", pa.float64()),
        ("call_gex", pa.float64()),
        ("put_gex", pa.float64()),
        ("contracts", pa.int64()),
        ("dropped", pa.int64()),
    ]
)
BY_STRIKE_SCHEMA = pa.schema(
    [
        ("underlying", pa.string()),
        ("strike", pa.float64()),
        ("call_gex", pa.float64()),
        ("put_gex", pa.float64()),
        ("net_gex", pa.float64()),
        ("cumulative_net_gex", pa.float64()),
        ("contracts", pa.int64()),
    ]
)
BY_BUCKET_SCHEMA = pa.schema(
    [
        ("underlying", pa.string()),
        ("bucket", pa.string()),
        ("total_gex", pa.float64()),
        ("call_gex", pa.float64()),
        ("put_gex", pa.float64()),
        ("contracts", pa.int64()),
    ]
)
DROPPED_SCHEMA = pa.schema(
    [("underlying", pa.string()), ("reason", pa.string()), ("count", pa.int64())]
)


@dataclass(frozen=True)
class GexResult:
    """Dealer gamma exposure of a chain.

    Attributes
    ----------
    by_underlying : pyarrow.Table
        One row per underlying: ``underlying``, ``spot``, ``total_gex``, ``call_gex``,
        ``put_gex``, ``contracts`` (rows counted), ``dropped`` (rows not counted).
    by_strike : pyarrow.Table or None
        One row per (underlying, strike), ascending strikes: ``call_gex``, ``put_gex``,
        ``net_gex``, ``cumulative_net_gex`` (running sum of ``net_gex`` over ascending
        strikes within the underlying) and ``contracts``. None if not requested.
    per_contract : pyarrow.Table or None
        The input rows' key columns with ``time_to_expiry``, ``gamma``, ``gex`` and
        ``drop_reason`` (null for counted rows), in input order. None unless requested.
    dropped : pyarrow.Table
        Rows not counted, per ``underlying`` and ``reason``.
    unit, convention, gamma_source, day_count
        The choices that produced the numbers.
    settings : dict
        Every other setting, for provenance.
    by_bucket : pyarrow.Table or None
        With ``buckets=`` / ``views=``: one row per (underlying, bucket) present, views
        first: ``total_gex``, ``call_gex``, ``put_gex``, ``contracts``.
    by_strike_bucket : pyarrow.Table or None
        With ``buckets=`` / ``views=``: one row per (underlying, bucket, strike):
        ``call_gex``, ``put_gex``, ``net_gex``, ``cumulative_net_gex``,
        ``call_open_interest``, ``put_open_interest``, ``contracts``. Built from the
        pass's group sums on first access (no second pass over the contracts), then
        kept: callers that only want the bucket totals do not pay for it.
    """

    by_underlying: pa.Table
    by_strike: pa.Table | None
    per_contract: pa.Table | None
    dropped: pa.Table
    unit: Unit
    convention: Convention
    gamma_source: GammaSource
    day_count: DayCount
    settings: dict[str, Any] = field(default_factory=dict)
    by_bucket: pa.Table | None = None
    #: The table behind :attr:`by_strike_bucket`, or what builds it on first access.
    #: (``by_strike_bucket`` is a property: construct or ``dataclasses.replace`` with this.)
    strike_bucket_source: pa.Table | DeferredStrikeTable | None = field(default=None, repr=False)

    @property
    def by_strike_bucket(self) -> pa.Table | None:
        """Per (underlying, bucket, strike) table (see the class docstring), or None."""
        source = self.strike_bucket_source
        return source.table() if isinstance(source, DeferredStrikeTable) else source

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also results pickled while ``by_strike_bucket`` was a plain field."""
        state = dict(state)
        if "by_strike_bucket" in state:
            state.setdefault("strike_bucket_source", state.pop("by_strike_bucket"))
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def total(self, underlying: str | None = None) -> float:
        """Total GEX of one underlying, or of every underlying when ``None``.

        Parameters
        ----------
        underlying : str, optional
            The underlying's name.

        Returns
        -------
        float
            The total, in the result's ``unit``.
        """
        names = self.by_underlying.column("underlying").to_pylist()
        totals = self.by_underlying.column("total_gex").to_pylist()
        if underlying is None:
            return math.fsum(totals)
        if underlying not in names:
            raise KeyError(f"no underlying {underlying!r} in the result; have {names[:20]}")
        return totals[names.index(underlying)]

    @property
    def dropped_count(self) -> int:
        """Number of input rows that were not counted."""
        return int(pc.sum(self.dropped.column("count")).as_py() or 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: ``{"underlyings": [...], "unit": ..., ...}``."""
        underlyings = []
        dropped_rows = self.dropped.to_pylist()
        for row in self.by_underlying.to_pylist():
            reasons = {
                entry["reason"]: entry["count"]
                for entry in dropped_rows
                if entry["underlying"] == row["underlying"]
            }
            clean = {key: _jsonable(value) for key, value in row.items()}
            underlyings.append({**clean, "dropped_reasons": reasons})
        return {
            "underlyings": underlyings,
            "unit": self.unit.value,
            "convention": self.convention.value,
            "gamma_source": self.gamma_source.value,
            "day_count": self.day_count.name,
            "dropped_total": self.dropped_count,
            "settings": {key: _jsonable(value) for key, value in self.settings.items()},
        }


def _check_finite(prepared, accumulated) -> None:
    """Sums of finite values can still overflow float64: say so instead of returning inf/NaN."""
    with np.errstate(invalid="ignore", over="ignore"):
        bad_underlyings = ~np.isfinite(accumulated.sums).all(axis=1)
        # all() over the whole array first: a per-row all(axis=1) is slow on many groups.
        group_sums = accumulated.group_sums
        finite = np.isfinite(group_sums) if group_sums is not None else None
        if finite is not None and not finite.all():
            bad_underlyings[prepared.group_underlying[~finite.all(axis=1)]] = True
    if bad_underlyings.any():
        names = [prepared.names[index] for index in np.flatnonzero(bad_underlyings)]
        raise ChainError(
            f"GEX of {names[:10]} overflows float64 (every row is finite but their sum is "
            "not): check open_interest / multiplier / spot magnitudes"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def gex(
    chain: Any,
    *,
    spot: float | Mapping[str, float] | Any | None = None,
    snapshot_time: Any | None = None,
    convention: str | Convention = Convention.SHORT_CALLS_LONG_PUTS,
    unit: str | Unit = Unit.DOLLARS_PER_1PCT,
    gamma_source: str | GammaSource = GammaSource.MODEL,
    rate: float | Mapping[str, float] | None = None,
    dividend_yield: float | Mapping[str, float] | None = None,
    day_count: str | DayCount = "act365",
    settlement: str | dt.time = "pm",
    settlement_tz: str = "America/New_York",
    min_time_to_expiry: float = DEFAULT_MIN_TIME_TO_EXPIRY,
    per_contract: bool = False,
    by_strike: bool = True,
    on_invalid: str = "drop",
    columns: Mapping[str, str] | None = None,
    format: str = "auto",
    buckets: Any = None,
    views: Sequence[str] | None = None,
    device: str = "cpu",
) -> GexResult:
    """Signed dealer gamma exposure of every contract, aggregated per underlying and strike.

    Parameters
    ----------
    chain : table-like or path
        Anything :func:`fastgex.read_chain` accepts (one or many underlyings).
    spot : float, mapping, table or None
        Spot per underlying: a scalar (one underlying), a mapping ``{name: spot}``, or a
        table / DataFrame with ``underlying`` and ``spot`` columns. Default: the
        chain's ``spot`` column, which must be constant within each underlying.
    snapshot_time : datetime or str, optional
        When the chain was observed; naive values are in ``settlement_tz``. Default:
        the chain's ``snapshot_time`` column. Needed only with ``expiration``.
    convention : str or Convention
        Dealer sign convention (ignored for rows of a ``dealer_position`` column).
    unit : str or Unit
        ``dollars_per_1pct`` (default), ``dollars_per_point`` or ``shares_per_dollar``.
    gamma_source : {"model", "column"}
        Black-Scholes-Merton / Black-76 gamma from ``implied_vol`` (default), or the
        chain's own ``gamma`` column.
    rate, dividend_yield : float or mapping, optional
        Continuously compounded, as fractions; scalar or per underlying. Default: the
        chain's columns if present (may vary per row), else 0.
    day_count : str or DayCount
        ``act365`` (default), ``bus252``, ``bus262``, or a :class:`DayCount`.
    settlement : {"pm", "am"} or "HH:MM" or datetime.time
        Local settlement time of plain expiration dates (PM = 16:00, AM = 09:30).
    settlement_tz : str
        Time zone of settlement times (``UTC`` with ``settlement="08:00"`` for Deribit).
    min_time_to_expiry : float
        Floor, in years, on the time used in gamma (default one minute) so contracts
        minutes from expiry keep a finite gamma. Expired contracts are dropped.
    per_contract : bool
        Also return per-contract values.
    by_strike : bool
        Also return the per-strike table (default True).
    on_invalid : {"drop", "raise"}
        Drop and count invalid rows (default), or raise :class:`fastgex.InvalidRowsError`.
    columns : mapping, optional
        Renames from your column names to canonical ones.
    format : str
        File format when ``chain`` is a path (see :func:`fastgex.read_chain`).
    buckets : None, "default", sequence of day edges, mapping or callable
        Also sum per expiry bucket (see :func:`fastgex.buckets.expiry_buckets`): fills
        ``by_bucket`` and ``by_strike_bucket``. Needs ``expiration`` dates.
    views : sequence of str, optional
        Views to add to the buckets: ``all``, ``ex_next_expiry``, ``ex_next_monthly``.
        Default with ``buckets``: ``("all",)``.
    device : {"cpu", "cuda", "auto"}
        Where the per-contract pass runs (see :doc:`/gpu`): ``cuda`` on an NVIDIA GPU
        (host data copied once; copy and kernel times in ``settings["device_timing"]``),
        ``auto`` on a GPU when one is present, else the CPU.

    Returns
    -------
    GexResult
        Totals per underlying, the per-strike table, drop counts and provenance; per
        bucket and view when asked.

    Raises
    ------
    fastgex.ChainError
        A required column is missing or has the wrong type, or a spot is missing or
        invalid for an underlying.
    fastgex.InvalidRowsError
        With ``on_invalid="raise"``, when any row is invalid.
    """
    return _engine(
        chain,
        spot=spot,
        snapshot_time=snapshot_time,
        convention=convention,
        unit=unit,
        gamma_source=gamma_source,
        rate=rate,
        dividend_yield=dividend_yield,
        day_count=day_count,
        settlement=settlement,
        settlement_tz=settlement_tz,
        min_time_to_expiry=min_time_to_expiry,
        per_contract=per_contract,
        by_strike=by_strike,
        on_invalid=on_invalid,
        columns=columns,
        format=format,
        buckets=buckets,
        views=views,
        device=device,
    ).result


@dataclass
class _Engine:
    """One GEX run with its intermediate state, for callers that build on it (levels)."""

    result: GexResult
    prepared: _Prepared
    accumulated: _Accumulated
    kernel_config: _kernels.KernelConfig
    min_time: float


def _engine(
    chain: Any,
    *,
    spot: Any = None,
    snapshot_time: Any = None,
    convention: str | Convention = Convention.SHORT_CALLS_LONG_PUTS,
    unit: str | Unit = Unit.DOLLARS_PER_1PCT,
    gamma_source: str | GammaSource = GammaSource.MODEL,
    rate: Any = None,
    dividend_yield: Any = None,
    day_count: str | DayCount = "act365",
    settlement: str | dt.time = "pm",
    settlement_tz: str = "America/New_York",
    min_time_to_expiry: float = DEFAULT_MIN_TIME_TO_EXPIRY,
    per_contract: bool = False,
    by_strike: bool = True,
    on_invalid: str = "drop",
    columns: Mapping[str, str] | None = None,
    format: str = "auto",
    by_expiry: bool = False,
    buckets: Any = None,
    views: Sequence[str] | None = None,
    device: str = "cpu",
) -> _Engine:
    """:func:`gex` with its intermediate state (see there for the parameters).

    ``by_expiry`` makes the per-strike groups (underlying, strike, expiry); the result's
    ``by_strike`` is then None (the caller aggregates the groups itself).
    """
    if on_invalid not in ("drop", "raise"):
        raise ValueError(f"on_invalid must be 'drop' or 'raise', not {on_invalid!r}")
    device = resolve_device(device)
    if isinstance(views, str):
        views = (views,)
    with_targets = buckets is not None or views is not None
    if with_targets:
        views = ("all",) if views is None else tuple(views)
        by_expiry = True
    convention = parse_convention(convention)
    unit = parse_unit(unit)
    gamma_source = parse_gamma_source(gamma_source)
    day_count = DayCount.parse(day_count)
    settlement_time = parse_settlement(settlement)
    zone = ZoneInfo(settlement_tz)
    if not (min_time_to_expiry > 0 and math.isfinite(min_time_to_expiry)):
        raise ValueError("min_time_to_expiry must be a positive number of years")
    table = read_chain(chain, format=format, columns=columns)
    prepared = _prepare(
        table,
        spot=spot,
        snapshot_time=snapshot_time,
        gamma_source=gamma_source,
        rate=rate,
        dividend_yield=dividend_yield,
        day_count=day_count,
        settlement=settlement_time,
        zone=zone,
    )
    settings = {
        "rate": rate if not isinstance(rate, Mapping) else dict(rate),
        "dividend_yield": (
            dividend_yield if not isinstance(dividend_yield, Mapping) else dict(dividend_yield)
        ),
        "on_invalid": on_invalid,
        "settlement": settlement_time,
        "settlement_tz": settlement_tz,
        "min_time_to_expiry": min_time_to_expiry,
        "snapshot_time": prepared.snapshot,
        "dealer_position": prepared.config.dealer_position,
        "model": "black76" if prepared.config.black76 else "bsm",
        "device": device,
    }
    config = dataclasses.replace(prepared.config, unit_power=unit.price_power)
    # The one dispatch point: the CUDA runner takes the CPU kernel's arguments.
    kernel = None
    if device == "cuda":
        from fastgex._cuda_kernels import GexRunner

        kernel = GexRunner(config)
        settings["device_timing"] = kernel.timing
    # Buckets and views are decided before the pass, so its groups are keyed by target
    # class (fewer groups than expiries).
    targets = resolve_targets(prepared, prepared.work, buckets, views) if with_targets else None
    accumulated = _run(
        prepared,
        config,
        convention,
        unit,
        min_time_to_expiry,
        by_strike or with_targets,
        per_contract,
        by_expiry,
        targets,
        kernel,
    )
    _check_finite(prepared, accumulated)
    order = reported_underlyings(prepared.names, accumulated.rows)  # every table's order
    result = _assemble(
        prepared,
        accumulated,
        order,
        by_strike and not by_expiry,  # groups by expiry: callers build their own tables
        per_contract,
        unit,
        convention,
        gamma_source,
        day_count,
        settings,
    )
    if with_targets:
        result = dataclasses.replace(
            result,
            **_target_tables(
                result, prepared, accumulated, order, targets, buckets, views, by_strike
            ),
        )
    if on_invalid == "raise" and result.dropped_count:
        summary = ", ".join(
            f"{row['underlying']}/{row['reason']}: {row['count']}"
            for row in result.dropped.to_pylist()[:10]
        )
        raise InvalidRowsError(f"{result.dropped_count} invalid rows ({summary})", result.dropped)
    return _Engine(result, prepared, accumulated, config, min_time_to_expiry)


def reported_underlyings(names: list[str | None], rows: np.ndarray) -> list[int]:
    """Ids of the named underlyings with rows (valid or not), ordered by name.

    The order of ``by_underlying`` and of every per-underlying table built beside it.
    """
    real = [index for index, name in enumerate(names) if name is not None and rows[index]]
    return sorted(real, key=lambda index: names[index])


def _target_tables(
    result, prepared, accumulated, order, targets, buckets, views, by_strike
) -> dict[str, Any]:
    """The bucket fields of a result from the pass's groups, for ``dataclasses.replace``.

    ``by_bucket``, ``by_strike`` (when asked), ``settings`` with the buckets and views,
    and ``strike_bucket_source``: the per-bucket strike table deferred to first access
    (:class:`fastgex._targets.DeferredStrikeTable`).
    """
    bits = None
    if prepared.group_class_bits is not None:
        bits = prepared.group_class_bits[prepared.group_expiry]
    runs = strike_runs(prepared, accumulated, order, targets, bits)
    totals, contracts = runs.totals, runs.total_contracts
    position, target = np.nonzero(contracts)  # (underlying, target) order
    order_ids = np.asarray(order, dtype=np.int64)
    by_bucket = pa.table(
        {
            "underlying": pc.take(
                pa.array(prepared.names, pa.string()), pa.array(order_ids[position])
            ),
            "bucket": pc.take(pa.array(targets.names, pa.string()), pa.array(target)),
            "total_gex": totals[position, target, 2],  # from the unrounded sides
            "call_gex": totals[position, target, 0],
            "put_gex": totals[position, target, 1],
            "contracts": contracts[position, target],
        },
        schema=BY_BUCKET_SCHEMA,
    )
    settings = {
        **result.settings,
        "buckets": buckets if isinstance(buckets, (str, type(None))) else repr(buckets),
        "views": list(views),
    }
    # The plain per-strike table: every group, whatever its targets.
    by_strike_table = _runs_table(prepared.names, order, runs) if by_strike else None
    return {
        "by_strike": by_strike_table,
        "by_bucket": by_bucket,
        "strike_bucket_source": DeferredStrikeTable(
            prepared, accumulated, targets, order, bits, runs.grouping
        ),
        "settings": settings,
    }


@dataclass
class _Prepared:
    """Everything the kernels need, as Arrow columns and per-underlying numpy arrays."""

    source: pa.Table
    work: pa.Table
    names: list[str | None]  # per underlying id; a trailing None collects null underlyings
    spot: np.ndarray
    rate: np.ndarray
    dividend_yield: np.ndarray
    multiplier: np.ndarray
    config: _kernels.KernelConfig  # unit_power is set by the caller
    uid_values: np.ndarray  # underlying id per row, contiguous
    snapshot: dt.datetime | None
    #: Distinct settlement instants (epoch ns) that ``work["expiry"]`` indexes, if dated.
    expiry_instants: np.ndarray | None = None
    zone: ZoneInfo | None = None
    n_groups: int = 0
    group_underlying: np.ndarray | None = None
    group_strike: np.ndarray | None = None
    group_expiry: np.ndarray | None = None
    #: With groups keyed by target class: each class's target mask (else None).
    group_class_bits: np.ndarray | None = None


def _require(table: pa.Table, name: str, why: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        aliases = ", ".join(ALIASES.get(name, (name,)))
        raise ChainError(
            f"missing required column {name!r} ({why}); accepted names: {aliases}; or map "
            f"yours with columns={{'your_name': {name!r}}}. The chain has: {table.column_names}"
        )
    return table.column(name)


def _as_float(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    kind = column.type
    # safe=False: an integer beyond 2**53 becomes the nearest float64 (a safe cast raises)
    if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        return column if kind == pa.float64() else pc.cast(column, pa.float64(), safe=False)
    if pa.types.is_dictionary(kind) and (
        pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)
    ):
        return pc.cast(column, pa.float64(), safe=False)
    if pa.types.is_null(kind):
        return pa.chunked_array([pa.nulls(len(column), pa.float64())])
    raise ChainError(f"column {name!r} has type {kind}; expected a number")


def _prepare(
    table, *, spot, snapshot_time, gamma_source, rate, dividend_yield, day_count, settlement, zone
) -> _Prepared:
    vendor = gamma_source is GammaSource.COLUMN
    has_position = "dealer_position" in table.column_names
    black76 = "forward" in table.column_names
    underlying = _require(table, "underlying", "the name of each contract's underlying")
    strike = _as_float(_require(table, "strike", "strike price"), "strike")
    option_type = _require(table, "option_type", "C/P or call/put")
    if has_position:
        quantity = _as_float(table.column("dealer_position"), "dealer_position")
    else:
        quantity = _as_float(
            _require(table, "open_interest", "contracts outstanding, or give dealer_position"),
            "open_interest",
        )
    columns: dict[str, pa.ChunkedArray] = {"strike": strike, "quantity": quantity}
    required_for_nulls = [underlying, strike, option_type, quantity]
    if vendor:
        columns["gamma"] = _as_float(_require(table, "gamma", "gamma_source='column'"), "gamma")
        required_for_nulls.append(columns["gamma"])
    else:
        columns["vol"] = _as_float(
            _require(table, "implied_vol", "model gamma needs implied vol as a fraction"),
            "implied_vol",
        )
        required_for_nulls.append(columns["vol"])
    if black76:
        columns["forward"] = _as_float(table.column("forward"), "forward")
        required_for_nulls.append(columns["forward"])

    snapshot_dt: dt.datetime | None = None
    expiry_instants = None
    has_time = True
    if "time_to_expiry" in table.column_names:
        columns["time"] = _as_float(table.column("time_to_expiry"), "time_to_expiry")
    elif "expiration" in table.column_names:
        snapshot_column = (
            table.column("snapshot_time") if "snapshot_time" in table.column_names else None
        )
        snapshot = snapshot_nanos(snapshot_time, snapshot_column, zone)
        if isinstance(snapshot, int):
            snapshot_dt = dt.datetime.fromtimestamp(snapshot / 1e9, tz=dt.timezone.utc)
        expiry_code, expiry_instants = settlement_codes(
            table.column("expiration"), settlement, zone
        )
        settle = pa.chunked_array([pc.take(pa.array(expiry_instants), expiry_code)])
        columns["time"] = time_to_expiry(
            settle, snapshot, day_count, settlement, zone, settled=True
        )
        columns["expiry"] = pa.chunked_array([expiry_code.cast(pa.int32())])
    elif vendor:
        has_time = False  # vendor gamma needs no time; nothing to check expiry against
    else:
        raise ChainError(
            "missing time to expiry: give 'expiration' (with snapshot_time; accepted names: "
            f"{', '.join(ALIASES['expiration'])}) or 'time_to_expiry' in years (accepted "
            f"names: {', '.join(ALIASES['time_to_expiry'])}); or map yours with columns=. "
            f"The chain has: {table.column_names}"
        )
    if has_time:
        required_for_nulls.append(columns["time"])

    # Underlyings: one id per distinct name; nulls get a trailing slot of their own.
    indices, distinct = _encode(underlying)
    required_for_nulls[0] = indices  # nulls after decoding (dictionary nulls too)
    names = [None if name is None else str(name) for name in distinct]
    null_slot = len(names)
    uid = pc.fill_null(indices, null_slot).cast(pa.int32())
    names.append(None)
    n_underlyings = len(names)
    # Dictionary columns may list names that no row uses (e.g. after slicing): only
    # underlyings that occur need a spot or appear in the result.
    uid_values = np.asarray(uid.combine_chunks().to_numpy(zero_copy_only=False))
    present = np.bincount(uid_values, minlength=n_underlyings) > 0

    codes = _option_codes(option_type)
    missing = None
    for column in required_for_nulls:
        if column.null_count:
            is_null = pc.is_null(column)
            missing = is_null if missing is None else pc.or_(missing, is_null)
    if missing is not None:
        codes = pc.if_else(missing, pa.scalar(_MISSING_U8), codes)

    spot_array = _per_underlying_spot(table, spot, names, uid, black76, present)
    rate_array, row_rate = _carry(table, "rate", rate, names, columns)
    div_array, row_div = _carry(table, "dividend_yield", dividend_yield, names, columns)
    row_carry = row_rate or row_div
    if row_carry:
        for name, values in (("rate", rate_array), ("dividend_yield", div_array)):
            if name not in columns:
                columns[name] = pc.take(pa.array(values), uid)
    mult_array, row_multiplier = _column_per_underlying(
        table, "multiplier", DEFAULT_MULTIPLIER, n_underlyings, columns
    )
    for name in ("multiplier", "rate", "dividend_yield"):
        if name in columns and columns[name].null_count:
            is_null = pc.is_null(columns[name])
            codes = pc.if_else(is_null, pa.scalar(_MISSING_U8), codes)
    columns["uid"] = uid
    columns["code"] = codes
    work = pa.table(columns)
    return _Prepared(
        source=table,
        work=work,
        names=names,
        spot=spot_array,
        rate=rate_array,
        dividend_yield=div_array,
        multiplier=mult_array,
        config=_kernels.KernelConfig(
            black76=black76,
            vendor_gamma=vendor,
            dealer_position=has_position,
            row_carry=row_carry,
            row_multiplier=row_multiplier,
            has_time=has_time,
        ),
        uid_values=uid_values,
        snapshot=snapshot_dt,
        expiry_instants=expiry_instants,
        zone=zone,
    )


def _encode(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, list]:
    """Integer codes per row and the distinct values they index (nulls stay null).

    Dictionary columns (polars categoricals, the sample market) are used as they are:
    their dictionaries are unified across chunks and deduplicated, never decoded.
    """
    kind = column.type
    if pa.types.is_dictionary(kind) and column.num_chunks:
        column = column.unify_dictionaries()
        values = column.chunk(0).dictionary.to_pylist()
        indices = pa.chunked_array([chunk.indices for chunk in column.chunks], kind.index_type)
        first_index: dict = {}
        # A null *value* in the dictionary is a missing value like a null index.
        remap = [None if value is None else first_index.setdefault(value, len(first_index))
                 for value in values]  # fmt: skip
        if len(first_index) != len(values):  # repeated or null dictionary values
            indices = pc.take(pa.array(remap, pa.int32()), indices)
        return indices, list(first_index)
    try:
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
        elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            column = pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:  # binary not UTF-8, lists
        raise ChainError(f"a {kind} column where text is expected: {error}") from error
    encoded = column.dictionary_encode().combine_chunks()
    return pa.chunked_array([encoded.indices]), encoded.dictionary.to_pylist()


def _option_codes(option_type: pa.ChunkedArray) -> pa.ChunkedArray:
    """uint8 code per row: 1 call, 0 put, 255 unknown (-1), 254 missing (-2)."""
    unknown = _UNKNOWN_TYPE_U8
    missing = _MISSING_U8
    if pa.types.is_boolean(option_type.type):  # is_call flags
        codes = pc.cast(option_type, pa.uint8())
        return pc.fill_null(codes, missing)
    indices, distinct = _encode(option_type)
    lookup = np.full(len(distinct) + 1, missing, dtype=np.uint8)
    for index, name in enumerate(distinct):
        text = str(name).strip().lower()
        lookup[index] = 1 if text in _CALL_NAMES else 0 if text in _PUT_NAMES else unknown
    return pc.take(pa.array(lookup), pc.fill_null(indices, len(distinct)))


def _per_underlying_spot(table, spot, names, uid, black76, present) -> np.ndarray:
    n_underlyings = len(names)
    values = np.full(n_underlyings, np.nan)
    real = [index for index, name in enumerate(names) if name is not None and present[index]]
    if spot is None:
        if "spot" not in table.column_names:
            if black76:
                return values  # Black-76 rows are priced on their own forward
            raise ChainError(
                "no spot: pass spot= (a number, a mapping {underlying: spot}, or a table) "
                "or add a 'spot' column"
            )
        column = _as_float(table.column("spot"), "spot")
        varies = np.zeros(n_underlyings, dtype=np.bool_)
        for batch in pa.table({"uid": uid, "spot": column}).to_batches():
            _kernels.spot_by_underlying(
                _numpy(batch, "uid", np.int32), _numpy(batch, "spot", np.float64), values, varies
            )
        varying = [names[index] for index in np.flatnonzero(varies) if names[index] is not None]
        if varying:
            raise ChainError(
                f"the 'spot' column varies within underlying(s) {varying[:5]}; GEX needs one "
                "spot per underlying: pass spot= explicitly"
            )
    elif isinstance(spot, Mapping):
        for index in real:
            if names[index] in spot:
                values[index] = float(spot[names[index]])
    elif hasattr(spot, "column_names") or hasattr(spot, "columns"):
        spot_table = read_chain(spot)
        mapping = dict(
            zip(
                spot_table.column("underlying").to_pylist(),
                spot_table.column("spot").to_pylist(),
                strict=True,
            )
        )
        return _per_underlying_spot(table, mapping, names, uid, black76, present)
    else:
        if len(real) > 1:
            raise ChainError(
                f"a single spot was given for {len(real)} underlyings "
                f"({[names[i] for i in real][:5]}...): pass a mapping {{underlying: spot}}"
            )
        values[real] = float(spot)
    # With Black-76 rows priced on their forward a spot is optional (NaN = not given),
    # but a spot that is given must be valid either way.
    checked = [index for index in real if not (black76 and math.isnan(values[index]))]
    # A subnormal spot is not a price, and the kernels' vectorized and row-by-row paths
    # disagree on whether its rows are finite (rows went uncounted): refuse it here.
    bad = [
        names[index]
        for index in checked
        if not (values[index] >= sys.float_info.min and math.isfinite(values[index]))
    ]
    if bad:
        raise ChainError(f"missing or invalid spot for underlying(s) {bad[:10]}")
    return values


def _constant(column: pa.ChunkedArray) -> float | None:
    """The single value of a float column, or None if it varies or has nulls/NaN."""
    if column.null_count or len(column) == 0:
        return None
    if pc.any(pc.is_nan(column)).as_py():
        return None  # min_max skips NaN: a NaN row must stay a row, to be counted
    low, high = pc.min_max(column).values()
    return low.as_py() if low.as_py() == high.as_py() else None


def _column_per_underlying(table, name, default, n_underlyings, columns):
    """``(values, per_row)`` for an optional numeric column.

    A column holding one value (no nulls, no NaN) becomes that value for every
    underlying, so the kernel reads no per-row array; a varying column goes to the
    kernel per row (``columns[name]``); no column gives ``default``.
    """
    values = np.full(n_underlyings, default)
    if name not in table.column_names:
        return values, False
    column = _as_float(table.column(name), name)
    constant = _constant(column)
    if constant is not None:
        values[:] = constant
        return values, False
    columns[name] = column
    return values, True


def _carry(table, name, given, names, columns) -> tuple[np.ndarray, bool]:
    """Per-underlying values of ``rate`` / ``dividend_yield``, or a per-row column."""
    if given is None:
        return _column_per_underlying(table, name, 0.0, len(names), columns)
    values = np.zeros(len(names))
    if isinstance(given, Mapping):
        for index, underlying in enumerate(names):
            if underlying in given:
                values[index] = float(given[underlying])
    else:
        values[:] = float(given)
    if not np.all(np.isfinite(values)):
        raise ChainError(f"{name} must be finite")
    return values, False


_EMPTY = np.empty(0)
_EMPTY.flags.writeable = False


def _readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view, so every call compiles (and caches) one signature only."""
    if not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


def _numpy(batch: pa.RecordBatch, name: str, dtype) -> np.ndarray:
    if name not in batch.schema.names:
        return _EMPTY if dtype == np.float64 else np.empty(0, dtype=dtype)
    column = batch.column(name)
    if column.null_count:
        column = column.fill_null(np.nan if dtype == np.float64 else 0)
    return _readonly(np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype))


@dataclass
class _Accumulated:
    sums: np.ndarray  # [underlying, call/put], each within sum_error_bound of exact
    net: np.ndarray  # [underlying] calls + puts, from the unrounded compensated sums
    sizes: np.ndarray  # [underlying, call/put] sums of |per-contract GEX|
    rows: np.ndarray
    drops: np.ndarray  # [underlying, reason code]
    group_sums: np.ndarray | None
    group_quantity: np.ndarray
    group_counts: np.ndarray
    values: list[np.ndarray]
    statuses: list[np.ndarray]
    order: np.ndarray | None  # row permutation applied before the kernel, if any
    work: pa.Table | None = None  # the prepared columns in kernel order


#: Below this average run length (rows of one underlying in a row), rows are grouped by
#: underlying before the kernel: its fast path works on runs of one underlying, and a
#: stable sort plus a copy of the columns is far cheaper than row-by-row processing.
MIN_AVERAGE_RUN = 256


def _grouping_order(ids: np.ndarray) -> np.ndarray | None:
    """A stable permutation grouping rows by underlying, or None if already grouped."""
    if ids.size < 2:
        return None
    runs = 1 + int(np.count_nonzero(ids[1:] != ids[:-1]))
    if runs * MIN_AVERAGE_RUN <= ids.size:
        return None
    return np.argsort(ids, kind="stable")


def _unpermute(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    restored = np.empty_like(values)
    restored[order] = values
    return restored


def _compensated_add(total: np.ndarray, compensation: np.ndarray, values: np.ndarray) -> None:
    """Neumaier step, elementwise and in place."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by the caller
        new_total = total + values
        bigger = np.abs(total) >= np.abs(values)
        compensation += np.where(bigger, (total - new_total) + values, (values - new_total) + total)
    total[...] = new_total


def _assign_groups(
    prepared: _Prepared, work: pa.Table, by_expiry: bool, targets: Targets | None = None
) -> pa.ChunkedArray:
    """Group id per row for (underlying, strike) or (underlying, strike, expiry).

    ``work`` is in kernel order (grouped by underlying), so ids numbered by first
    appearance keep each kernel block's range of group ids tight. Rows without an
    expiration share the expiry code ``n_expiries``. With ``targets`` (and dates) the
    third key is the row's target class instead of its expiry, and
    ``prepared.group_class_bits`` gets each class's target mask.
    """
    uid = _column_numpy(work, "uid", np.int32, 0)
    strike = _column_numpy(work, "strike", np.float64, np.nan)
    expiry = np.empty(0, dtype=np.int32)
    prepared.group_class_bits = None
    if by_expiry and prepared.expiry_instants is not None:
        expiry = _column_numpy(work, "expiry", np.int32, len(prepared.expiry_instants))
        if targets is not None:
            expiry, prepared.group_class_bits = targets.row_classes(uid, expiry)
    group_id, underlying, strike_bits, group_expiry = _group_kernels.group_ids(
        uid, strike.view(np.uint64), expiry, max(1, len(prepared.names))
    )
    prepared.n_groups = len(underlying)
    prepared.group_underlying = underlying
    prepared.group_strike = strike_bits.view(np.float64)
    prepared.group_expiry = group_expiry
    return pa.chunked_array([pa.array(group_id)])


def _column_numpy(table: pa.Table, name: str, dtype, fill) -> np.ndarray:
    """One column as a contiguous numpy array (nulls replaced by ``fill``)."""
    column = table.column(name)
    if column.null_count:
        column = column.fill_null(fill)
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return np.ascontiguousarray(array.to_numpy(zero_copy_only=False), dtype=dtype)


def _check_rows_accounted(names, uid, batch_rows, n_underlyings) -> None:
    """Every row of a batch must be counted or dropped; raise rather than lose one.

    At the edge of the float64 range (e.g. spot 1e-300 with open interest 1e300) the
    kernel's vectorized and row-by-row evaluations can disagree on whether a row's
    product is finite, and such a row is then neither counted nor dropped.
    """
    if int(batch_rows.sum()) == uid.size:
        return
    missing = np.bincount(uid, minlength=n_underlyings) - batch_rows.sum(axis=1)
    lost = [names[index] for index in np.flatnonzero(missing)]
    raise ChainError(
        f"GEX of {lost[:10]} is at the edge of float64 range (a product of open_interest, "
        "multiplier, gamma and spot both overflows and does not, depending on the order "
        "of evaluation): rescale those inputs"
    )


def _run(
    prepared,
    config,
    convention,
    unit,
    min_time,
    by_strike,
    per_contract,
    by_expiry=False,
    targets=None,
    kernel=None,
) -> _Accumulated:
    kernel = kernel or _kernels.gex_kernel(config)
    work = prepared.work
    order = _grouping_order(prepared.uid_values)
    if order is not None:
        work = work.take(order)
    if by_strike:
        work = work.append_column("gid", _assign_groups(prepared, work, by_expiry, targets))
    call_sign, put_sign = convention.signs
    spot = _readonly(prepared.spot)
    rate = _readonly(prepared.rate)
    dividend = _readonly(prepared.dividend_yield)
    multiplier_u = _readonly(prepared.multiplier)
    n_groups = prepared.n_groups if by_strike else 0

    def accumulate(exact_slots: np.ndarray) -> _Accumulated:
        return _accumulate_batches(
            prepared, config, kernel, work, order, by_strike, per_contract, n_groups,
            (call_sign, put_sign, unit.scale, min_time), (spot, rate, dividend, multiplier_u),
            exact_slots,
        )  # fmt: skip

    accumulated = accumulate(_NO_EXACT_SLOTS)
    loose_sides, loose_net = _kernels.loose_totals(
        accumulated.sums, accumulated.net, accumulated.sizes
    )
    loose = loose_sides.any(axis=1) | loose_net
    if loose.any():
        # Heavy cancellation (mixed-sign dealer positions, or calls against puts near
        # the flip): the flagged underlyings' rows again, summed row by row; from the
        # per-contract values when they were kept, so the totals are exact sums of them.
        exact = (
            _exact_from_values(accumulated, loose)
            if per_contract
            else accumulate(loose.astype(np.uint8))
        )
        # Only the totals that failed their bound are replaced: a side that passed keeps
        # its fast sum, so e.g. flipping one side's sign (short_all against the default)
        # still flips the reported call or put total exactly.
        accumulated.sums[loose_sides] = exact.sums[loose_sides]
        accumulated.net[loose] = exact.net[loose]
    return accumulated


_NO_EXACT_SLOTS = np.zeros(0, dtype=np.uint8)


def _exact_from_values(accumulated: _Accumulated, loose: np.ndarray) -> _Accumulated:
    """The exact pass from kept per-contract values: only ``sums`` and ``net`` are set."""
    slots = loose.astype(np.uint8)
    sums = np.zeros((loose.size, 2))
    compensation = np.zeros((loose.size, 2))
    batches = [batch for batch in accumulated.work.to_batches() if batch.num_rows]
    for batch, values in zip(batches, accumulated.values, strict=True):
        _kernels.exact_sums_of_values(
            values,
            _numpy(batch, "code", np.uint8),
            _numpy(batch, "uid", np.int32),
            slots,
            sums,
            compensation,
        )
    with np.errstate(over="ignore", invalid="ignore"):
        return dataclasses.replace(
            accumulated, sums=sums + compensation, net=_kernels.net_of(sums, compensation)
        )


_NO_GROUP_IDS = np.zeros(0, dtype=np.int32)


def _accumulate_batches(
    prepared, config, kernel, work, order, by_strike, per_contract, n_groups, scalars,
    per_underlying, exact_slots,
) -> _Accumulated:  # fmt: skip
    """One pass of the GEX kernel over the prepared rows, batch by batch."""
    n_underlyings = len(prepared.names)
    exact_pass = exact_slots.size > 0  # sums only: no groups, values or statuses
    per_contract = per_contract and not exact_pass
    by_strike = by_strike and not exact_pass
    n_groups = n_groups if by_strike else 0
    call_sign, put_sign, unit_scale, min_time = scalars
    spot, rate, dividend, multiplier_u = per_underlying
    sums = np.zeros((n_underlyings, 2))
    compensation = np.zeros((n_underlyings, 2))
    sizes = np.zeros((n_underlyings, 2))
    rows = np.zeros(n_underlyings, dtype=np.int64)
    drops = np.zeros((n_underlyings, len(_kernels.REASONS) + 1), dtype=np.int64)
    group_sums = group_comp = group_quantity = group_counts = None
    values_kept: list[np.ndarray] = []
    statuses_kept: list[np.ndarray] = []
    for batch in work.to_batches():
        n_rows = batch.num_rows
        if n_rows == 0:
            continue
        uid = _numpy(batch, "uid", np.int32)
        code = _numpy(batch, "code", np.uint8)
        # Outputs stay writable (an empty array means "not wanted").
        values = np.empty(n_rows if per_contract else 0)
        status = np.zeros(n_rows if per_contract else 0, dtype=np.int8)
        gid = _numpy(batch, "gid", np.int32) if by_strike else _NO_GROUP_IDS
        block_rows = _kernels.rows_per_block(n_rows, n_underlyings)
        if by_strike:
            block_rows = _kernels.group_rows_per_block(gid, block_rows)
        multiplier = (
            _numpy(batch, "multiplier", np.float64) if config.row_multiplier else multiplier_u
        )
        outputs = kernel(
            _numpy(batch, "strike", np.float64),
            _numpy(batch, "vol", np.float64),
            _numpy(batch, "time", np.float64),
            _numpy(batch, "quantity", np.float64),
            code,
            uid,
            spot,
            _numpy(batch, "rate", np.float64) if config.row_carry else rate,
            _numpy(batch, "dividend_yield", np.float64) if config.row_carry else dividend,
            _numpy(batch, "forward", np.float64),
            _numpy(batch, "gamma", np.float64),
            multiplier,
            call_sign,
            put_sign,
            unit_scale,
            min_time,
            n_underlyings,
            block_rows,
            values,
            status,
            gid,
            n_groups,
            exact_slots,
        )
        batch_sums, batch_rows, batch_group_sums, batch_quantity, batch_group_rows, details = (
            outputs
        )
        if not exact_pass:  # (the exact pass visits the marked underlyings only)
            _check_rows_accounted(prepared.names, uid, batch_rows, n_underlyings)
        _compensated_add(sums, compensation, batch_sums)
        compensation += details[:, :2]
        sizes += details[:, 2:]
        rows += batch_rows.sum(axis=1)
        drops += batch_rows
        if group_sums is None:  # the first batch's arrays become the totals
            group_sums, group_quantity, group_counts = (
                batch_group_sums,
                batch_quantity,
                batch_group_rows,
            )
        else:
            if group_comp is None:
                group_comp = np.zeros_like(group_sums)
            _compensated_add(group_sums, group_comp, batch_group_sums)
            group_quantity += batch_quantity
            group_counts += batch_group_rows
        if per_contract:
            values_kept.append(values)
            statuses_kept.append(status)
    drops[:, 0] = 0  # column 0 held the rows that count; keep only drops
    if group_sums is None:  # no batch had rows
        group_sums, group_quantity = np.zeros((n_groups, 2)), np.zeros((n_groups, 2))
        group_counts = np.zeros(n_groups, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by the caller
        totals = sums + compensation
        net = _kernels.net_of(sums, compensation)
    return _Accumulated(
        sums=totals,
        net=net,
        sizes=sizes,
        rows=rows,
        drops=drops,
        group_sums=(group_sums if group_comp is None else group_sums + group_comp)
        if by_strike
        else None,
        group_quantity=group_quantity,
        group_counts=group_counts,
        values=values_kept,
        statuses=statuses_kept,
        order=order,
        work=work,
    )


def _assemble(
    prepared,
    accumulated,
    real,
    by_strike,
    per_contract,
    unit,
    convention,
    gamma_source,
    day_count,
    settings,
) -> GexResult:
    names = prepared.names
    dropped_per = accumulated.drops.sum(axis=1)
    sums = accumulated.sums
    by_underlying = pa.table(
        {
            "underlying": pa.array([names[i] for i in real], pa.string()),
            "spot": pa.array([prepared.spot[i] for i in real], pa.float64(), from_pandas=True),
            "total_gex": pa.array([accumulated.net[i] for i in real], pa.float64()),
            "call_gex": pa.array([sums[i, 0] for i in real], pa.float64()),
            "put_gex": pa.array([sums[i, 1] for i in real], pa.float64()),
            "contracts": pa.array([accumulated.rows[i] - dropped_per[i] for i in real], pa.int64()),
            "dropped": pa.array([dropped_per[i] for i in real], pa.int64()),
        },
        schema=BY_UNDERLYING_SCHEMA,
    )
    dropped_rows = {"underlying": [], "reason": [], "count": []}
    for index, code in zip(*np.nonzero(accumulated.drops), strict=True):
        dropped_rows["underlying"].append(names[index])
        dropped_rows["reason"].append(_kernels.REASONS[code - 1])
        dropped_rows["count"].append(int(accumulated.drops[index, code]))
    dropped = pa.table(dropped_rows, schema=DROPPED_SCHEMA)
    strike_table = _strike_table(prepared, accumulated) if by_strike else None
    min_time = settings["min_time_to_expiry"]
    contract_table = _contract_table(prepared, accumulated, min_time) if per_contract else None
    return GexResult(
        by_underlying=by_underlying,
        by_strike=strike_table,
        per_contract=contract_table,
        dropped=dropped,
        unit=unit,
        convention=convention,
        gamma_source=gamma_source,
        day_count=day_count,
        settings=settings,
    )


def _strike_table(prepared: _Prepared, accumulated: _Accumulated) -> pa.Table:
    """``by_strike``: every underlying by name (null names last), then ascending strike."""
    names = prepared.names
    order = sorted(range(len(names)), key=lambda index: (names[index] is None, names[index] or ""))
    return _runs_table(names, order, strike_runs(prepared, accumulated, order))


def _runs_table(names: list[str | None], order: list[int], runs: StrikeRuns) -> pa.Table:
    """A BY_STRIKE_SCHEMA table over :func:`fastgex._targets.strike_runs`' rows."""
    values = runs.values
    ordered = np.asarray(order, dtype=np.int64)
    return pa.table(
        {
            "underlying": pc.take(pa.array(names, pa.string()), pa.array(ordered[runs.rank])),
            "strike": values[_group_kernels.STRIKE],
            "call_gex": values[_group_kernels.CALL],
            "put_gex": values[_group_kernels.PUT],
            "net_gex": values[_group_kernels.NET],
            "cumulative_net_gex": values[_group_kernels.CUMULATIVE],
            "contracts": runs.contracts,
        },
        schema=BY_STRIKE_SCHEMA,
    )


def _contract_table(prepared: _Prepared, accumulated: _Accumulated, min_time: float) -> pa.Table:
    source = prepared.source
    values = np.concatenate(accumulated.values) if accumulated.values else np.empty(0)
    status = np.concatenate(accumulated.statuses) if accumulated.statuses else np.empty(0, np.int8)
    if accumulated.order is not None:  # back to input order
        values, status = (
            _unpermute(values, accumulated.order),
            _unpermute(status, accumulated.order),
        )
    reason_names = pa.array([None, *_kernels.REASONS], pa.string())
    reasons = pc.take(reason_names, pa.array(status.astype(np.int64)))
    columns = {
        name: source.column(name)
        for name in ("underlying", "expiration", "strike", "option_type")
        if name in source.column_names
    }
    if "time" in prepared.work.column_names:
        columns["time_to_expiry"] = prepared.work.column("time")
    columns["gamma"] = _contract_gamma(prepared, min_time)
    columns["gex"] = pa.array(values)
    columns["drop_reason"] = reasons
    return pa.table(columns)


def _contract_gamma(prepared: _Prepared, min_time: float) -> pa.ChunkedArray:
    work = prepared.work
    if "gamma" in work.column_names:
        return work.column("gamma")
    pieces = []
    for batch in work.to_batches():
        row_carry = prepared.config.row_carry
        pieces.append(
            _kernels.contract_gamma(
                _numpy(batch, "strike", np.float64),
                _numpy(batch, "vol", np.float64),
                _numpy(batch, "time", np.float64),
                _numpy(batch, "uid", np.int32),
                _readonly(prepared.spot),
                _numpy(batch, "rate", np.float64) if row_carry else _readonly(prepared.rate),
                _numpy(batch, "dividend_yield", np.float64)
                if row_carry
                else _readonly(prepared.dividend_yield),
                _numpy(batch, "forward", np.float64),
                min_time,
                prepared.config.black76,
                row_carry,
            )
        )
    return (
        pa.chunked_array(pieces, type=pa.float64())
        if pieces
        else pa.chunked_array([], pa.float64())
    )
