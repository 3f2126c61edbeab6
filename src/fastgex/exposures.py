"""Dealer exposures beyond gamma (:func:`exposures`) and hedge flow for spot moves.

Every exposure is ``sign * OI * m * greek * scale`` summed per underlying and strike,
with the sign conventions and ``dealer_position`` handling of :func:`fastgex.gex`
(``P`` is the spot, or the row's forward for Black-76 rows):

* ``dex``: dealer delta in $ notional, ``sign * OI * m * delta * P``.
* ``gex``: as :func:`fastgex.gex` (``$ per 1% move``), ``sign * OI * m * gamma * P**2 * 0.01``.
* ``vex``: vanna exposure, $ of delta change per vol point,
  ``sign * OI * m * vanna * 0.01 * P`` (``vanna`` per 1.0 of vol).
* ``cex``: charm exposure, $ of delta change per calendar day,
  ``sign * OI * m * (charm / 365) * P`` (``charm`` per year, ``-d delta / dT``).
* ``vega``: $ of option value per vol point, ``sign * OI * m * vega * 0.01``.

Per-contract greeks come from the fused greeks kernel (one pass); sums are compensated
and in input order, so they do not depend on the thread count.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastgex import _exposure_kernels, _greeks_kernel, _group_kernels
from fastgex._chain import read_chain
from fastgex._errors import ChainError, InvalidRowsError
from fastgex._gex import (
    BY_STRIKE_SCHEMA,
    BY_UNDERLYING_SCHEMA,
    DEFAULT_MIN_TIME_TO_EXPIRY,
    DROPPED_SCHEMA,
    _column_numpy,
    _jsonable,
    _prepare,
    _Prepared,
    _readonly,
    _strike_table,
    reported_underlyings,
)
from fastgex._greeks_formulas import GREEK_ORDER
from fastgex._kernel_common import REASONS, STATUS
from fastgex._timing import parse_settlement
from fastgex.conventions import Convention, DayCount, GammaSource, parse_convention

__all__ = ["ExposureKind", "ExposureResult", "HedgeFlowResult", "exposures", "hedge_flow"]

DAYS_PER_YEAR = 365.0
VOL_POINT = 0.01


class ExposureKind(str, enum.Enum):
    """Which dealer exposure :func:`exposures` sums (units in the module docstring)."""

    DEX = "dex"
    GEX = "gex"
    VEX = "vex"
    CEX = "cex"
    VEGA = "vega"


#: Unit of each kind, as stated in results.
EXPOSURE_UNITS: dict[ExposureKind, str] = {
    ExposureKind.DEX: "dollars_delta",
    ExposureKind.GEX: "dollars_per_1pct",
    ExposureKind.VEX: "dollars_delta_per_vol_point",
    ExposureKind.CEX: "dollars_delta_per_day",
    ExposureKind.VEGA: "dollars_per_vol_point",
}


def _parse_kind(kind: str | ExposureKind) -> ExposureKind:
    try:
        return ExposureKind(kind)
    except ValueError:
        raise ValueError(
            f"unknown exposure kind {kind!r}: use {', '.join(k.value for k in ExposureKind)}"
        ) from None


def _renamed(schema: pa.Schema, kind: str) -> pa.Schema:
    return pa.schema([(name.replace("_gex", f"_{kind}"), schema.field(name).type)
                      for name in schema.names])  # fmt: skip


@dataclass(frozen=True)
class ExposureResult:
    """A dealer exposure of a chain, laid out like :class:`fastgex.GexResult`.

    Attributes
    ----------
    kind : ExposureKind
        Which exposure; column names carry it (``total_dex``, ``call_dex``, ...).
    unit : str
        The exposure's unit (``EXPOSURE_UNITS``).
    by_underlying : pyarrow.Table
        ``underlying``, ``spot``, ``total_<kind>``, ``call_<kind>``, ``put_<kind>``,
        ``contracts`` (rows counted), ``dropped`` (rows not counted), sorted by name.
    by_strike : pyarrow.Table or None
        Per (underlying, strike), ascending strikes: ``call_<kind>``, ``put_<kind>``,
        ``net_<kind>``, ``cumulative_net_<kind>`` and ``contracts``.
    per_contract : pyarrow.Table or None
        Input rows' keys with ``<kind>`` (NaN when dropped) and ``drop_reason``.
    dropped : pyarrow.Table
        Rows not counted, per ``underlying`` and ``reason``.
    convention : Convention
        Dealer sign convention (rows of a ``dealer_position`` column carry their own).
    settings : dict
        The other choices, for provenance.
    """

    kind: ExposureKind
    unit: str
    by_underlying: pa.Table
    by_strike: pa.Table | None
    per_contract: pa.Table | None
    dropped: pa.Table
    convention: Convention
    settings: dict[str, Any] = field(default_factory=dict)

    def total(self, underlying: str | None = None) -> float:
        """Total exposure of one underlying, or of every underlying when ``None``."""
        names = self.by_underlying.column("underlying").to_pylist()
        totals = self.by_underlying.column(f"total_{self.kind.value}").to_pylist()
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
        """JSON-ready summary (per underlying, with drop reasons)."""
        dropped_rows = self.dropped.to_pylist()
        underlyings = []
        for row in self.by_underlying.to_pylist():
            reasons = {entry["reason"]: entry["count"] for entry in dropped_rows
                       if entry["underlying"] == row["underlying"]}  # fmt: skip
            clean = {key: _jsonable(value) for key, value in row.items()}
            underlyings.append({**clean, "dropped_reasons": reasons})
        return {
            "kind": self.kind.value,
            "unit": self.unit,
            "underlyings": underlyings,
            "convention": self.convention.value,
            "dropped_total": self.dropped_count,
            "settings": {key: _jsonable(value) for key, value in self.settings.items()},
        }


@dataclass
class _Contracts:
    """Per-contract state of one chain, in input order (the base of exposures and flows)."""

    prepared: _Prepared
    uid: np.ndarray  # int32 underlying id per row
    is_call: np.ndarray
    price: np.ndarray  # spot of the row's underlying, or its forward (Black-76)
    shares: np.ndarray  # signed dealer units per unit of delta: sign * quantity * multiplier
    status: np.ndarray  # int8 reason code, 0 = counted
    greeks: dict[str, np.ndarray]  # raw units (per 1.0 vol, per year)
    min_time: float
    settings: dict[str, Any]

    @property
    def valid(self) -> np.ndarray:
        return self.status == 0


#: The greek each exposure kind reads.
_KIND_GREEK = {"dex": "delta", "gex": "gamma", "vex": "vanna", "cex": "charm", "vega": "vega"}


def _model_greeks(prepared: _Prepared, min_time: float, wanted: Sequence[str], move: float = 0.0):
    """Raw ``wanted`` greeks of every row (input order), spot / forwards times ``1 + move``."""
    work = prepared.work
    config = prepared.config
    n_rows = work.num_rows
    run = _greeks_kernel.greeks_kernel(config.black76, config.row_carry)
    arrays = {name: np.empty(n_rows) for name in GREEK_ORDER}
    status = np.zeros(n_rows, dtype=np.int8)
    if n_rows == 0:
        return {name: arrays[name] for name in wanted}, status
    forward = (_column_numpy(work, "forward", np.float64, np.nan) * (1.0 + move)
               if config.black76 else np.empty(0))  # fmt: skip

    def per_row(name: str) -> np.ndarray:
        return _readonly(_column_numpy(work, name, np.float64, np.nan))

    run(
        per_row("strike"),
        per_row("vol"),
        per_row("time"),
        _readonly(_column_numpy(work, "code", np.uint8, 254)),
        _readonly(prepared.uid_values.astype(np.int32, copy=False)),
        _readonly(prepared.spot * (1.0 + move)),
        _readonly(forward),
        per_row("rate") if config.row_carry else _readonly(prepared.rate),
        per_row("dividend_yield") if config.row_carry else _readonly(prepared.dividend_yield),
        min_time,
        _readonly(np.ones(len(GREEK_ORDER))),
        # Every greek is stored: with some flags off the kernel measured ~5x slower
        # (1.5M rows: 240 ms for delta alone, 52 ms for all ten).
        _readonly(np.ones(len(GREEK_ORDER), dtype=np.bool_)),
        *[arrays[name] for name in GREEK_ORDER],
        status,
    )
    return {name: arrays[name] for name in wanted}, status


# Greeks-kernel reasons that the GEX rules check before the quantity, and those after it.
_BEFORE_QUANTITY = [STATUS[name] for name in ("missing_value", "unknown_option_type",
                                              "invalid_strike", "invalid_implied_vol")]  # fmt: skip
_TIME_REASONS = [STATUS["invalid_time_to_expiry"], STATUS["expired"]]


def _row_status(prepared: _Prepared, greek_status: np.ndarray, multiplier: np.ndarray):
    """Reason per row with the precedence of the GEX kernel's rules."""
    quantity = _column_numpy(prepared.work, "quantity", np.float64, np.nan)
    quantity_status = np.zeros(quantity.size, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        if prepared.config.dealer_position:
            quantity_status[~np.isfinite(quantity)] = STATUS["invalid_dealer_position"]
        else:
            quantity_status[np.isinf(quantity)] = STATUS["invalid_open_interest"]
            quantity_status[quantity < 0] = STATUS["negative_open_interest"]
            quantity_status[np.isnan(quantity)] = STATUS["missing_value"]
        bad_multiplier = ~((multiplier > 0) & np.isfinite(multiplier))
    status = greek_status.copy()
    if not (quantity_status.any() or bad_multiplier.any()):
        return status, quantity
    late = ~np.isin(greek_status, _BEFORE_QUANTITY)
    use_quantity = late & (quantity_status != 0)
    status[use_quantity] = quantity_status[use_quantity]
    time_ok = late & (quantity_status == 0) & ~np.isin(greek_status, _TIME_REASONS)
    status[time_ok & bad_multiplier] = STATUS["invalid_multiplier"]
    return status, quantity


def _contracts(
    chain: Any,
    *,
    spot: Any,
    snapshot_time: Any,
    convention: Convention,
    rate: Any,
    dividend_yield: Any,
    day_count: str | DayCount,
    settlement: str | dt.time,
    settlement_tz: str,
    min_time_to_expiry: float,
    columns: Mapping[str, str] | None,
    format: str,
    wanted: Sequence[str] = ("delta",),
) -> _Contracts:
    if not (min_time_to_expiry > 0 and math.isfinite(min_time_to_expiry)):
        raise ValueError("min_time_to_expiry must be a positive number of years")
    table = read_chain(chain, format=format, columns=columns)
    if "gamma" in table.column_names:  # exposures use model greeks only
        table = table.drop_columns(["gamma"])
    settlement_time = parse_settlement(settlement)
    prepared = _prepare(
        table,
        spot=spot,
        snapshot_time=snapshot_time,
        gamma_source=GammaSource.MODEL,
        rate=rate,
        dividend_yield=dividend_yield,
        day_count=DayCount.parse(day_count),
        settlement=settlement_time,
        zone=ZoneInfo(settlement_tz),
    )
    config = prepared.config
    uid = prepared.uid_values.astype(np.int32, copy=False)
    greeks, greek_status = _model_greeks(prepared, min_time_to_expiry, wanted)
    multiplier = (_column_numpy(prepared.work, "multiplier", np.float64, np.nan)
                  if config.row_multiplier else prepared.multiplier[uid])  # fmt: skip
    status, quantity = _row_status(prepared, greek_status, multiplier)
    code = _column_numpy(prepared.work, "code", np.uint8, 254)
    is_call = code == 1
    call_sign, put_sign = (1.0, 1.0) if config.dealer_position else convention.signs
    price = (_column_numpy(prepared.work, "forward", np.float64, np.nan)
             if config.black76 else prepared.spot[uid])  # fmt: skip
    with np.errstate(invalid="ignore", over="ignore"):
        shares = np.where(is_call, call_sign, put_sign) * quantity * multiplier
    shares[status != 0] = 0.0
    settings = {
        "rate": rate if not isinstance(rate, Mapping) else dict(rate),
        "dividend_yield": dividend_yield
        if not isinstance(dividend_yield, Mapping)
        else dict(dividend_yield),
        "settlement": settlement_time,
        "settlement_tz": settlement_tz,
        "min_time_to_expiry": min_time_to_expiry,
        "snapshot_time": prepared.snapshot,
        "dealer_position": config.dealer_position,
        "model": "black76" if config.black76 else "bsm",
    }
    return _Contracts(prepared, uid, is_call, price, shares, status, greeks,
                      min_time_to_expiry, settings)  # fmt: skip


def _values(contracts: _Contracts, kind: ExposureKind) -> np.ndarray:
    """Per-row exposure; a valid row whose value is not finite is marked non_finite_result."""
    greeks = contracts.greeks
    price = contracts.price
    with np.errstate(invalid="ignore", over="ignore"):
        if kind is ExposureKind.DEX:
            factor = greeks["delta"] * price
        elif kind is ExposureKind.GEX:
            factor = greeks["gamma"] * price * price * 0.01
        elif kind is ExposureKind.VEX:
            factor = greeks["vanna"] * VOL_POINT * price
        elif kind is ExposureKind.CEX:
            factor = greeks["charm"] / DAYS_PER_YEAR * price
        else:
            factor = greeks["vega"] * VOL_POINT
        values = contracts.shares * factor
    bad = (contracts.status == 0) & ~np.isfinite(values)
    contracts.status[bad] = STATUS["non_finite_result"]
    values[contracts.status != 0] = np.nan
    return values


def _dropped_table(names, uid, status) -> pa.Table:
    if not status.any():
        return DROPPED_SCHEMA.empty_table()
    n_codes = len(REASONS) + 1
    counts = np.bincount(uid.astype(np.int64) * n_codes + status.astype(np.int64),
                         minlength=len(names) * n_codes).reshape(len(names), n_codes)  # fmt: skip
    counts[:, 0] = 0
    rows: dict[str, list] = {"underlying": [], "reason": [], "count": []}
    for index, code in zip(*np.nonzero(counts), strict=True):
        rows["underlying"].append(names[index])
        rows["reason"].append(REASONS[code - 1])
        rows["count"].append(int(counts[index, code]))
    return pa.table(rows, schema=DROPPED_SCHEMA)


def _sums(contracts: _Contracts, values: np.ndarray, by_strike: bool):
    """Per-underlying (and per-group) call/put sums of the valid rows."""
    prepared = contracts.prepared
    n_underlyings = len(prepared.names)
    group_id = np.empty(0, dtype=np.int32)
    groups = None
    if by_strike:
        strike = _column_numpy(prepared.work, "strike", np.float64, np.nan)
        group_id, group_underlying, strike_bits, _ = _group_kernels.group_ids(
            contracts.uid, strike.view(np.uint64), np.empty(0, np.int32), max(1, n_underlyings)
        )
        groups = SimpleNamespace(
            names=prepared.names,
            group_underlying=group_underlying,
            group_strike=strike_bits.view(np.float64),
        )
    n_groups = 0 if groups is None else len(groups.group_underlying)
    sums, group_sums, group_counts = _exposure_kernels.side_sums(
        np.nan_to_num(values, nan=0.0), contracts.is_call, contracts.valid, contracts.uid,
        group_id, n_underlyings, n_groups,
    )  # fmt: skip
    with np.errstate(invalid="ignore", over="ignore"):
        if not (np.isfinite(sums).all() and np.isfinite(group_sums).all()):
            raise ChainError("an exposure total overflows float64: check open_interest / "
                             "multiplier / spot magnitudes")  # fmt: skip
    return sums, groups, SimpleNamespace(group_sums=group_sums, group_counts=group_counts)


def exposures(
    chain: Any,
    *,
    kind: str | ExposureKind = ExposureKind.DEX,
    spot: float | Mapping[str, float] | Any | None = None,
    snapshot_time: Any | None = None,
    convention: str | Convention = Convention.SHORT_CALLS_LONG_PUTS,
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
) -> ExposureResult:
    """Signed dealer exposure (DEX, GEX, VEX, CEX or vega) per underlying and strike.

    Parameters
    ----------
    chain : table-like or path
        Anything :func:`fastgex.read_chain` accepts, as for :func:`fastgex.gex`
        (model greeks from ``implied_vol``; a ``gamma`` column is ignored).
    kind : {"dex", "gex", "vex", "cex", "vega"} or ExposureKind
        Which exposure (definitions and units in :doc:`/exposures`).
    spot, snapshot_time, convention, rate, dividend_yield, day_count, settlement, settlement_tz
        As for :func:`fastgex.gex`.
    min_time_to_expiry : float
        Floor in years on the time used in the greeks (default one minute).
    per_contract, by_strike, on_invalid, columns, format
        As for :func:`fastgex.gex`.

    Returns
    -------
    ExposureResult
        Totals per underlying, the per-strike table and drop counts.

    Raises
    ------
    fastgex.ChainError
        A required column is missing or has the wrong type, a spot is missing, or a
        total overflows.
    fastgex.InvalidRowsError
        With ``on_invalid="raise"``, when any row is invalid.
    """
    kind = _parse_kind(kind)
    if on_invalid not in ("drop", "raise"):
        raise ValueError(f"on_invalid must be 'drop' or 'raise', not {on_invalid!r}")
    convention = parse_convention(convention)
    contracts = _contracts(
        chain, spot=spot, snapshot_time=snapshot_time, convention=convention, rate=rate,
        dividend_yield=dividend_yield, day_count=day_count, settlement=settlement,
        settlement_tz=settlement_tz, min_time_to_expiry=min_time_to_expiry, columns=columns,
        format=format, wanted=(_KIND_GREEK[kind.value],),
    )  # fmt: skip
    values = _values(contracts, kind)
    sums, groups, accumulated = _sums(contracts, values, by_strike)
    prepared = contracts.prepared
    names = prepared.names
    rows = np.bincount(contracts.uid, minlength=len(names))
    dropped_per = np.bincount(contracts.uid, weights=contracts.status != 0, minlength=len(names))
    real = reported_underlyings(names, rows)
    suffix = kind.value
    by_underlying = pa.table(
        {
            "underlying": pa.array([names[i] for i in real], pa.string()),
            "spot": pa.array([prepared.spot[i] for i in real], pa.float64(), from_pandas=True),
            "total": pa.array([sums[i, 0] + sums[i, 1] for i in real], pa.float64()),
            "call": pa.array([sums[i, 0] for i in real], pa.float64()),
            "put": pa.array([sums[i, 1] for i in real], pa.float64()),
            "contracts": pa.array([int(rows[i] - dropped_per[i]) for i in real], pa.int64()),
            "dropped": pa.array([int(dropped_per[i]) for i in real], pa.int64()),
        }
    )
    by_underlying = by_underlying.rename_columns(_renamed(BY_UNDERLYING_SCHEMA, suffix).names).cast(
        _renamed(BY_UNDERLYING_SCHEMA, suffix)
    )
    strike_table = None
    if by_strike:
        strike_table = _strike_table(groups, accumulated)
        strike_table = strike_table.rename_columns(_renamed(BY_STRIKE_SCHEMA, suffix).names)
    dropped = _dropped_table(names, contracts.uid, contracts.status)
    contract_table = None
    if per_contract:
        source = prepared.source
        columns_out = {name: source.column(name)
                       for name in ("underlying", "expiration", "strike", "option_type")
                       if name in source.column_names}  # fmt: skip
        columns_out[suffix] = pa.array(values)
        reason_names = pa.array([None, *REASONS], pa.string())
        columns_out["drop_reason"] = pc.take(reason_names, pa.array(contracts.status, pa.int64()))
        contract_table = pa.table(columns_out)
    result = ExposureResult(
        kind=kind,
        unit=EXPOSURE_UNITS[kind],
        by_underlying=by_underlying,
        by_strike=strike_table,
        per_contract=contract_table,
        dropped=dropped,
        convention=convention,
        settings={**contracts.settings, "on_invalid": on_invalid},
    )
    if on_invalid == "raise" and result.dropped_count:
        summary = ", ".join(f"{row['underlying']}/{row['reason']}: {row['count']}"
                            for row in dropped.to_pylist()[:10])  # fmt: skip
        raise InvalidRowsError(f"{result.dropped_count} invalid rows ({summary})", dropped)
    return result


HEDGE_FLOW_SCHEMA = pa.schema(
    [
        ("underlying", pa.string()),
        ("spot", pa.float64()),
        ("move", pa.float64()),
        ("moved_spot", pa.float64()),
        ("dealer_delta_change", pa.float64()),
        ("hedge_flow", pa.float64()),
        ("linear_hedge_flow", pa.float64()),
        ("contracts", pa.int64()),
    ]
)


@dataclass(frozen=True)
class HedgeFlowResult:
    """Dealer hedge flow for hypothetical spot moves.

    Attributes
    ----------
    flows : pyarrow.Table
        One row per (underlying, move), by name then move: ``spot``, ``move`` (fraction),
        ``moved_spot`` ``S' = S (1 + move)``, ``dealer_delta_change`` (shares:
        ``D(S') - D(S)`` with delta recomputed at ``S'``, vols held),
        ``hedge_flow`` ($ dealers buy (+) or sell (-): ``-(D(S') - D(S)) * S'``),
        ``linear_hedge_flow`` (the GEX term alone: ``-G (S' - S) S'`` with ``G`` the
        dealer gamma in shares per $) and ``contracts`` (rows counted).
    dropped : pyarrow.Table
        Rows not counted, per ``underlying`` and ``reason``.
    convention : Convention
        Dealer sign convention.
    settings : dict
        The other choices, for provenance.
    by_bucket : pyarrow.Table or None
        With ``buckets=``: per (underlying, bucket, move) with contracts in the bucket:
        ``dealer_delta_change``, ``hedge_flow``, ``linear_hedge_flow``, ``contracts``
        (the $ at the underlying's moved spot), by name, then bucket (the spec's
        order), then move as given; rows in no bucket are left out.
    """

    flows: pa.Table
    dropped: pa.Table
    convention: Convention
    settings: dict[str, Any] = field(default_factory=dict)
    by_bucket: pa.Table | None = None

    def flow(self, underlying: str, move: float) -> float:
        """The exact hedge flow of one underlying for one move."""
        for row in self.flows.to_pylist():
            if row["underlying"] == underlying and row["move"] == move:
                return row["hedge_flow"]
        raise KeyError(f"no ({underlying!r}, {move!r}) in the result")


def _per_underlying(contracts: _Contracts, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Compensated total of ``values`` per underlying (calls and puts together)."""
    sums, _, _ = _exposure_kernels.side_sums(
        np.where(valid, values, 0.0), contracts.is_call, valid, contracts.uid,
        np.empty(0, np.int32), len(contracts.prepared.names), 0,
    )  # fmt: skip
    return sums.sum(axis=1)


def hedge_flow(
    chain: Any,
    moves: Sequence[float] = (-0.02, -0.01, 0.01, 0.02),
    *,
    spot: float | Mapping[str, float] | Any | None = None,
    snapshot_time: Any | None = None,
    convention: str | Convention = Convention.SHORT_CALLS_LONG_PUTS,
    rate: float | Mapping[str, float] | None = None,
    dividend_yield: float | Mapping[str, float] | None = None,
    day_count: str | DayCount = "act365",
    settlement: str | dt.time = "pm",
    settlement_tz: str = "America/New_York",
    min_time_to_expiry: float = DEFAULT_MIN_TIME_TO_EXPIRY,
    columns: Mapping[str, str] | None = None,
    format: str = "auto",
    buckets: Any = None,
) -> HedgeFlowResult:
    """$ dealers must trade to stay hedged after spot moves of ``moves`` (fractions).

    The dealer delta ``D(S) = sum sign * OI * m * delta(S)`` is recomputed exactly at
    each moved spot ``S' = S (1 + move)`` (Black-76 rows: forwards moved by the same
    fraction), with vols, times and rates held. Dealers trade against their delta
    change, so the flow is ``-(D(S') - D(S)) * S'`` dollars: positive means buying.
    The linear GEX estimate ``-G (S' - S) S'`` is reported beside it; their difference
    is the convexity (speed and higher terms).

    Parameters
    ----------
    chain : table-like or path
        As for :func:`fastgex.exposures`.
    moves : sequence of float
        Relative spot moves (``0.01`` = +1%); each must be finite and > -1.
    spot, snapshot_time, convention, rate, dividend_yield, day_count, settlement, settlement_tz
        As for :func:`fastgex.gex`.
    min_time_to_expiry, columns, format
        As for :func:`fastgex.exposures`.
    buckets : None, "default", mapping or callable
        Also flows per expiry bucket (``by_bucket``; see
        :func:`fastgex.buckets.expiry_buckets`). Needs ``expiration`` dates.

    Returns
    -------
    HedgeFlowResult
        Flows per (underlying, move), per bucket when asked, and drop counts.
    """
    moves = [float(move) for move in moves]
    if not moves or not all(math.isfinite(move) and move > -1.0 for move in moves):
        raise ValueError(f"moves must be finite fractions > -1 (0.01 = +1%), got {moves!r}")
    convention = parse_convention(convention)
    contracts = _contracts(
        chain, spot=spot, snapshot_time=snapshot_time, convention=convention, rate=rate,
        dividend_yield=dividend_yield, day_count=day_count, settlement=settlement,
        settlement_tz=settlement_tz, min_time_to_expiry=min_time_to_expiry, columns=columns,
        format=format, wanted=("delta", "gamma"),
    )  # fmt: skip
    prepared = contracts.prepared
    names = prepared.names
    per_move = []
    for move in moves:
        moved, moved_status = _model_greeks(prepared, contracts.min_time, ("delta",), move)
        # A row valid at S stays valid at S' (same inputs, positive price); a result
        # that is not finite at S' is counted as non_finite_result.
        lost = contracts.valid & (moved_status != 0)
        contracts.status[lost] = STATUS["non_finite_result"]
        contracts.shares[lost] = 0.0
        per_move.append(moved["delta"])
    valid = contracts.valid
    # Totals per underlying (slot = uid) and, with buckets, per (underlying, bucket).
    slots, n_slots, bucket_labels = contracts.uid, len(names), None
    if buckets is not None:
        bucket_of_row, bucket_labels = _row_buckets(prepared, buckets)
        slots = contracts.uid * len(bucket_labels) + np.maximum(bucket_of_row, 0)
        n_slots = len(names) * len(bucket_labels)
        valid = valid & (bucket_of_row >= 0)

    def totals(values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            sums, _, _ = _exposure_kernels.side_sums(
                np.where(valid, values, 0.0), contracts.is_call, valid,
                slots.astype(np.int32), np.empty(0, np.int32), n_slots, 0,
            )  # fmt: skip
        return sums.sum(axis=1)

    base_delta = totals(contracts.shares * contracts.greeks["delta"])
    gamma = totals(contracts.shares * contracts.greeks["gamma"])
    counted = np.bincount(slots, weights=valid, minlength=n_slots)
    rows = np.bincount(contracts.uid, minlength=len(names))
    real = reported_underlyings(names, rows)
    per_slot = [(index, index, None) for index in real]
    if bucket_labels is not None:
        per_slot = [(index * len(bucket_labels) + position, index, label)
                    for index in real for position, label in enumerate(bucket_labels)
                    if counted[index * len(bucket_labels) + position]]  # fmt: skip
    # Black-76 rows move with their forward; the reported spot is the underlying's.
    base_price = prepared.spot
    out: dict[str, list] = {name: [] for name in HEDGE_FLOW_SCHEMA.names}
    out["bucket"] = []
    changes = [totals(contracts.shares * moved_delta) - base_delta for moved_delta in per_move]
    for slot, index, label in per_slot:
        for move, change in zip(moves, changes, strict=True):
            spot_value = base_price[index]
            moved_spot = spot_value * (1.0 + move)
            out["underlying"].append(names[index])
            out["bucket"].append(label)
            out["spot"].append(spot_value)
            out["move"].append(move)
            out["moved_spot"].append(moved_spot)
            out["dealer_delta_change"].append(change[slot])
            out["hedge_flow"].append(-change[slot] * moved_spot)
            out["linear_hedge_flow"].append(-gamma[slot] * (moved_spot - spot_value) * moved_spot)
            out["contracts"].append(int(counted[slot]))
    labels = out.pop("bucket")
    flows = pa.table(out, schema=HEDGE_FLOW_SCHEMA)
    if not all(np.isfinite(flows.column(name).to_numpy()).all()
               for name in ("hedge_flow", "linear_hedge_flow")):  # fmt: skip
        # A Black-76-only chain without a spot has no $ conversion; never a silent NaN.
        raise ChainError("hedge flow needs a spot for every underlying (pass spot=)")
    by_bucket = None
    if bucket_labels is not None:
        by_bucket = flows.add_column(1, "bucket", pa.array(labels, pa.string()))
        by_bucket = by_bucket.drop_columns(["moved_spot", "spot"])
        flows = hedge_flow(
            chain, moves, spot=spot, snapshot_time=snapshot_time, convention=convention,
            rate=rate, dividend_yield=dividend_yield, day_count=day_count,
            settlement=settlement, settlement_tz=settlement_tz,
            min_time_to_expiry=min_time_to_expiry, columns=columns, format=format,
        ).flows  # fmt: skip
    else:
        flows = flows.sort_by([("underlying", "ascending"), ("move", "ascending")])
    return HedgeFlowResult(
        flows=flows,
        dropped=_dropped_table(names, contracts.uid, contracts.status),
        convention=convention,
        settings={**contracts.settings, "moves": moves, "buckets": _jsonable(buckets)},
        by_bucket=by_bucket,
    )


def _row_buckets(prepared: _Prepared, buckets: Any) -> tuple[np.ndarray, list[str]]:
    """Bucket index per row (-1: no bucket) and the bucket names, in the spec's order."""
    from fastgex._targets import snapshot_instant
    from fastgex.buckets import bucket_names, expiry_buckets

    if prepared.expiry_instants is None:
        raise ChainError("hedge flow per bucket needs an 'expiration' column")
    zone = prepared.zone
    dates = [dt.datetime.fromtimestamp(int(nanos) / 1e9, tz=zone).date()
             for nanos in prepared.expiry_instants]  # fmt: skip
    labels = expiry_buckets(dates, snapshot_instant(prepared).astimezone(zone).date(), buckets)
    order = list(bucket_names(buckets) or ())
    order += [label for label in dict.fromkeys(labels) if label is not None and label not in order]
    position = {label: index for index, label in enumerate(order)}
    per_expiry = np.array([position.get(label, -1) for label in labels] + [-1], dtype=np.int64)
    codes = _column_numpy(prepared.work, "expiry", np.int64, len(labels))
    return per_expiry[codes], order
