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

import dataclasses
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

from fastgex import _exposure_kernels, _greeks_kernel
from fastgex._chain import read_chain
from fastgex._errors import ChainError, InvalidRowsError
from fastgex._gex import (
    BY_STRIKE_SCHEMA,
    BY_UNDERLYING_SCHEMA,
    DEFAULT_MIN_TIME_TO_EXPIRY,
    DROPPED_SCHEMA,
    _assign_groups,
    _column_numpy,
    _jsonable,
    _prepare,
    _Prepared,
    _readonly,
    _strike_table,
    _target_tables,
    reported_underlyings,
)
from fastgex._greeks_formulas import GREEK_ORDER
from fastgex._kernel_common import REASONS, STATUS
from fastgex._kernels import rows_per_block
from fastgex._levels import strike_expiry_table
from fastgex._targets import resolve_targets, target_sums
from fastgex._timing import parse_settlement
from fastgex.conventions import Convention, DayCount, GammaSource, Unit, parse_convention

__all__ = [
    "EXPOSURE_UNITS",
    "EXPOSURE_UNIT_FACTORS",
    "ExposureKind",
    "ExposureResult",
    "HedgeFlowResult",
    "exposures",
    "hedge_flow",
]

DAYS_PER_YEAR = 365.0
VOL_POINT = 0.01


class ExposureKind(str, enum.Enum):
    """Which dealer exposure :func:`exposures` sums (units: :data:`EXPOSURE_UNIT_FACTORS`)."""

    DEX = "dex"
    GEX = "gex"
    VEX = "vex"
    CEX = "cex"
    VEGA = "vega"


#: Units of each kind: unit name -> (power of the price ``P``, constant factor), so that
#: a row's exposure is ``sign * OI * m * greek * factor * P**power``. The first unit of
#: each kind is its default; ``units_*`` are units of the underlying (shares, or coins).
EXPOSURE_UNIT_FACTORS: dict[ExposureKind, dict[str, tuple[int, float]]] = {
    ExposureKind.DEX: {"dollars_delta": (1, 1.0), "units_delta": (0, 1.0)},
    ExposureKind.GEX: {unit.value: (unit.price_power, unit.scale) for unit in Unit},
    ExposureKind.VEX: {
        "dollars_delta_per_vol_point": (1, VOL_POINT),
        "units_delta_per_vol_point": (0, VOL_POINT),
    },
    ExposureKind.CEX: {
        "dollars_delta_per_day": (1, 1.0 / DAYS_PER_YEAR),
        "units_delta_per_day": (0, 1.0 / DAYS_PER_YEAR),
    },
    ExposureKind.VEGA: {"dollars_per_vol_point": (0, VOL_POINT)},
}
#: Default unit of each kind, as stated in results.
EXPOSURE_UNITS: dict[ExposureKind, str] = {
    kind: next(iter(units)) for kind, units in EXPOSURE_UNIT_FACTORS.items()
}


def _parse_kind(kind: str | ExposureKind) -> ExposureKind:
    try:
        return ExposureKind(kind)
    except ValueError:
        raise ValueError(
            f"unknown exposure kind {kind!r}: use {', '.join(k.value for k in ExposureKind)}"
        ) from None


def _parse_unit(kind: ExposureKind, unit: str | Unit | None) -> tuple[str, int, float]:
    """``(unit name, price power, factor)`` of ``unit`` for ``kind`` (None: the default)."""
    allowed = EXPOSURE_UNIT_FACTORS[kind]
    name = EXPOSURE_UNITS[kind] if unit is None else str(getattr(unit, "value", unit))
    name = name.strip().lower().replace("-", "_")
    if name not in allowed:
        raise ValueError(
            f"unit {unit!r} is not a unit of {kind.value} exposure: choose one of "
            f"{', '.join(allowed)}"
        )
    power, factor = allowed[name]
    return name, power, factor


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
        The exposure's unit (one of ``EXPOSURE_UNIT_FACTORS[kind]``).
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
    by_bucket : pyarrow.Table or None
        With ``buckets=`` / ``views=``: per (underlying, bucket) present, views first:
        ``total_<kind>``, ``call_<kind>``, ``put_<kind>``, ``contracts``.
    by_strike_bucket : pyarrow.Table or None
        With ``buckets=`` / ``views=``: per (underlying, bucket, strike):
        ``call_<kind>``, ``put_<kind>``, ``net_<kind>``, ``cumulative_net_<kind>``,
        ``call_open_interest``, ``put_open_interest``, ``contracts``.
    by_strike_expiry : pyarrow.Table or None
        With ``by_expiry=True`` (or buckets / views) on a dated chain: per (underlying,
        expiry, strike) with the expiry's bucket, ``call_<kind>``, ``put_<kind>``,
        ``net_<kind>``, ``contracts`` (the strike x expiry surface in long form).
    """

    kind: ExposureKind
    unit: str
    by_underlying: pa.Table
    by_strike: pa.Table | None
    per_contract: pa.Table | None
    dropped: pa.Table
    convention: Convention
    settings: dict[str, Any] = field(default_factory=dict)
    by_bucket: pa.Table | None = None
    by_strike_bucket: pa.Table | None = None
    by_strike_expiry: pa.Table | None = None

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

    def surface(self, underlying: str, by: str = "bucket") -> tuple[np.ndarray, list, np.ndarray]:
        """Dense net-exposure surface of one underlying: strikes x buckets (or expiries).

        As :meth:`fastgex.LevelsResult.surface`, for this result's kind and unit.

        Parameters
        ----------
        underlying : str
            The underlying's name.
        by : {"bucket", "expiry"}
            Columns are the views and buckets (needs ``buckets=`` or ``views=``) or the
            expiry dates (needs ``by_expiry=True``, or buckets / views, and dates).

        Returns
        -------
        strikes : numpy.ndarray
            Ascending strikes (rows).
        columns : list
            Bucket names or expiry dates (columns).
        matrix : numpy.ndarray
            ``matrix[i, j]`` net exposure at ``strikes[i]`` in ``columns[j]``; 0.0
            where no contract exists.
        """
        from fastgex._levels import dense_surface

        if by == "expiry" and self.by_strike_expiry is None:
            raise ValueError(
                "no strike x expiry table: pass by_expiry=True (the chain needs expiration dates)"
            )
        return dense_surface(self.by_strike_bucket, self.by_strike_expiry, underlying, by,
                             f"net_{self.kind.value}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (per underlying, with drop reasons and, if any, buckets)."""
        dropped_rows = self.dropped.to_pylist()
        suffix = self.kind.value
        per_bucket: dict[str, dict[str, Any]] = {}
        for row in self.by_bucket.to_pylist() if self.by_bucket is not None else ():
            per_bucket.setdefault(row["underlying"], {})[row["bucket"]] = {
                key: _jsonable(row[key])
                for key in (f"total_{suffix}", f"call_{suffix}", f"put_{suffix}", "contracts")
            }
        underlyings = []
        for row in self.by_underlying.to_pylist():
            reasons = {entry["reason"]: entry["count"] for entry in dropped_rows
                       if entry["underlying"] == row["underlying"]}  # fmt: skip
            clean = {key: _jsonable(value) for key, value in row.items()}
            entry = {**clean, "dropped_reasons": reasons}
            if self.by_bucket is not None:
                entry["buckets"] = per_bucket.get(row["underlying"], {})
            underlyings.append(entry)
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
    run = _greeks_kernel.greeks_kernel(
        config.black76, config.row_carry, _greeks_kernel.stored_mask(wanted)
    )
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


def _prepare_chain(
    chain: Any,
    *,
    spot: Any,
    snapshot_time: Any,
    rate: Any,
    dividend_yield: Any,
    day_count: str | DayCount,
    settlement: str | dt.time,
    settlement_tz: str,
    min_time_to_expiry: float,
    columns: Mapping[str, str] | None,
    format: str,
) -> tuple[_Prepared, dict[str, Any]]:
    """The chain read and prepared for model greeks, and the settings for provenance."""
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
    settings = {
        "rate": rate if not isinstance(rate, Mapping) else dict(rate),
        "dividend_yield": dividend_yield
        if not isinstance(dividend_yield, Mapping)
        else dict(dividend_yield),
        "settlement": settlement_time,
        "settlement_tz": settlement_tz,
        "min_time_to_expiry": min_time_to_expiry,
        "snapshot_time": prepared.snapshot,
        "dealer_position": prepared.config.dealer_position,
        "model": "black76" if prepared.config.black76 else "bsm",
    }
    return prepared, settings


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
    prepared, settings = _prepare_chain(
        chain, spot=spot, snapshot_time=snapshot_time, rate=rate, dividend_yield=dividend_yield,
        day_count=day_count, settlement=settlement, settlement_tz=settlement_tz,
        min_time_to_expiry=min_time_to_expiry, columns=columns, format=format,
    )  # fmt: skip
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
    return _Contracts(prepared, uid, is_call, price, shares, status, greeks,
                      min_time_to_expiry, settings)  # fmt: skip


def _dropped_table(names, uid, status) -> pa.Table:
    if not status.any():
        return DROPPED_SCHEMA.empty_table()
    n_codes = len(REASONS) + 1
    counts = np.bincount(uid.astype(np.int64) * n_codes + status.astype(np.int64),
                         minlength=len(names) * n_codes).reshape(len(names), n_codes)  # fmt: skip
    return _dropped_from_counts(names, counts)


def _dropped_from_counts(names, counts: np.ndarray) -> pa.Table:
    """Drop table from rows per (underlying, reason code); column 0 (counted) is ignored."""
    dropped = counts[:, 1:]
    if not dropped.any():
        return DROPPED_SCHEMA.empty_table()
    index, code = np.nonzero(dropped)
    return pa.table(
        {
            "underlying": [names[position] for position in index],
            "reason": [REASONS[position] for position in code],
            "count": dropped[index, code],
        },
        schema=DROPPED_SCHEMA,
    )


@dataclass
class _RowInputs:
    """Per-row arrays of a prepared chain that every exposure pass reads (input order)."""

    uid: np.ndarray  # int32
    code: np.ndarray  # uint8 option code
    quantity: np.ndarray
    multiplier: np.ndarray  # per row, or per underlying
    forward: np.ndarray | None  # Black-76 rows' forwards, else None

    @classmethod
    def of(cls, prepared: _Prepared) -> _RowInputs:
        work = prepared.work
        config = prepared.config
        return cls(
            uid=_readonly(prepared.uid_values.astype(np.int32, copy=False)),
            code=_readonly(_column_numpy(work, "code", np.uint8, 254)),
            quantity=_readonly(_column_numpy(work, "quantity", np.float64, np.nan)),
            multiplier=_readonly(
                _column_numpy(work, "multiplier", np.float64, np.nan)
                if config.row_multiplier
                else prepared.multiplier
            ),
            forward=_column_numpy(work, "forward", np.float64, np.nan) if config.black76 else None,
        )


@dataclass
class _Pass:
    """One exposure pass: per-row values and reasons, per-underlying and group sums."""

    values: np.ndarray
    status: np.ndarray
    sums: np.ndarray  # (underlyings, 2): calls, puts
    group_sums: np.ndarray  # (groups, 2)
    group_quantity: np.ndarray  # (groups, 2)
    group_counts: np.ndarray
    reason_counts: np.ndarray  # (underlyings, reason codes); column 0: counted rows


def _moved(
    prepared: _Prepared, rows: _RowInputs, ratio: np.ndarray, vol: np.ndarray | None = None
) -> _Prepared:
    """``prepared`` with each underlying's spot (and its rows' forwards) times ``ratio``.

    ``vol``, when given, replaces the rows' implied vols (a vol model's move).
    """
    work = prepared.work
    if vol is not None:
        work = work.set_column(work.column_names.index("vol"), "vol", pa.chunked_array([vol]))
    if rows.forward is not None:
        moved_forward = pa.chunked_array([rows.forward * ratio[rows.uid]])
        work = work.set_column(work.column_names.index("forward"), "forward", moved_forward)
    return dataclasses.replace(prepared, spot=prepared.spot * ratio, work=work)


def _exposure_pass(
    prepared: _Prepared,
    rows: _RowInputs,
    *,
    kind: ExposureKind,
    price_power: int,
    factor: float,
    signs: tuple[float, float],
    min_time: float,
    group_id: np.ndarray,
    n_groups: int,
    ratio: np.ndarray | None = None,
    vol: np.ndarray | None = None,
) -> _Pass:
    """Greeks (only the kind's) and exposures of every row, at spot x ``ratio`` if given.

    ``vol`` replaces the rows' implied vols (with ``ratio``).
    """
    at = prepared if ratio is None else _moved(prepared, rows, ratio, vol)
    greek_name = _KIND_GREEK[kind.value]
    greeks, greek_status = _model_greeks(at, min_time, (greek_name,))
    if rows.forward is not None:
        price = _column_numpy(at.work, "forward", np.float64, np.nan)
    else:
        price = at.spot
    call_sign, put_sign = signs
    with np.errstate(invalid="ignore", over="ignore"):
        outputs = _exposure_kernels.exposure_rows(
            _readonly(greeks[greek_name]),
            _readonly(greek_status),
            rows.quantity,
            rows.multiplier,
            rows.code,
            rows.uid,
            _readonly(np.ascontiguousarray(price, dtype=np.float64)),
            prepared.config.dealer_position,
            call_sign,
            put_sign,
            factor,
            price_power,
            _readonly(group_id),
            len(prepared.names),
            n_groups,
            len(REASONS) + 1,
            rows_per_block(rows.uid.size, len(prepared.names)),
        )
    return _Pass(*outputs)


def _check_sums(done: _Pass) -> None:
    # all() over whole arrays: every row is finite, but a sum may still overflow.
    if not (np.isfinite(done.sums).all() and np.isfinite(done.group_sums).all()):
        raise ChainError("an exposure total overflows float64: check open_interest / "
                         "multiplier / spot magnitudes")  # fmt: skip


def _by_underlying(prepared: _Prepared, done: _Pass, order: list[int], suffix: str) -> pa.Table:
    ids = np.asarray(order, dtype=np.int64)
    counts = done.reason_counts[ids]
    calls, puts = done.sums[ids, 0], done.sums[ids, 1]
    schema = _renamed(BY_UNDERLYING_SCHEMA, suffix)
    return pa.table(
        [
            pa.array([prepared.names[index] for index in order], pa.string()),
            pa.array(prepared.spot[ids], pa.float64(), from_pandas=True),
            pa.array(calls + puts, pa.float64()),
            pa.array(calls, pa.float64()),
            pa.array(puts, pa.float64()),
            pa.array(counts[:, 0], pa.int64()),
            pa.array(counts[:, 1:].sum(axis=1), pa.int64()),
        ],
        schema=schema,
    )


def _rename_table(table: pa.Table | None, suffix: str) -> pa.Table | None:
    if table is None:
        return None
    return table.rename_columns([name.replace("_gex", f"_{suffix}") for name in table.column_names])


def exposures(
    chain: Any,
    *,
    kind: str | ExposureKind = ExposureKind.DEX,
    unit: str | Unit | None = None,
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
    by_expiry: bool = False,
    buckets: Any = None,
    views: Sequence[str] | None = None,
    on_invalid: str = "drop",
    columns: Mapping[str, str] | None = None,
    format: str = "auto",
) -> ExposureResult:
    """Signed dealer exposure (DEX, GEX, VEX, CEX or vega) per underlying, strike and bucket.

    Parameters
    ----------
    chain : table-like or path
        Anything :func:`fastgex.read_chain` accepts, as for :func:`fastgex.gex`
        (model greeks from ``implied_vol``; a ``gamma`` column is ignored).
    kind : {"dex", "gex", "vex", "cex", "vega"} or ExposureKind
        Which exposure (definitions and units in :doc:`/exposures`).
    unit : str, optional
        The kind's unit (``EXPOSURE_UNIT_FACTORS[kind]``): ``dex``: ``dollars_delta``
        (default) or ``units_delta``; ``gex``: any :class:`fastgex.Unit`; ``vex``:
        ``dollars_delta_per_vol_point`` (default) or ``units_delta_per_vol_point``;
        ``cex``: ``dollars_delta_per_day`` (default) or ``units_delta_per_day``;
        ``vega``: ``dollars_per_vol_point``.
    spot, snapshot_time, convention, rate, dividend_yield, day_count, settlement, settlement_tz
        As for :func:`fastgex.gex`.
    min_time_to_expiry : float
        Floor in years on the time used in the greeks (default one minute).
    per_contract, by_strike, on_invalid, columns, format
        As for :func:`fastgex.gex`.
    by_expiry : bool
        Also the per-(underlying, expiry, strike) table ``by_strike_expiry`` (the
        strike x expiry surface in long form). Needs ``expiration`` dates.
    buckets : None, "default", sequence of day edges, mapping or callable
        Also sum per expiry bucket, as :func:`fastgex.gex` (``by_bucket``,
        ``by_strike_bucket``; with dates, ``by_strike_expiry`` too).
    views : sequence of str, optional
        Views to add to the buckets (``all``, ``ex_next_expiry``, ``ex_next_monthly``);
        default with ``buckets``: ``("all",)``.

    Returns
    -------
    ExposureResult
        Totals per underlying, the per-strike table, drop counts; per bucket and view
        and per expiry when asked.

    Raises
    ------
    fastgex.ChainError
        A required column is missing or has the wrong type, a spot is missing, a total
        overflows, or buckets / views / ``by_expiry`` on a chain without dates.
    fastgex.InvalidRowsError
        With ``on_invalid="raise"``, when any row is invalid.
    ValueError
        An unknown kind, a unit the kind does not have, or an unknown view.
    """
    kind = _parse_kind(kind)
    unit_name, price_power, factor = _parse_unit(kind, unit)
    if on_invalid not in ("drop", "raise"):
        raise ValueError(f"on_invalid must be 'drop' or 'raise', not {on_invalid!r}")
    if isinstance(views, str):
        views = (views,)
    with_targets = buckets is not None or views is not None
    views = (("all",) if views is None else tuple(views)) if with_targets else ()
    convention = parse_convention(convention)
    prepared, settings = _prepare_chain(
        chain, spot=spot, snapshot_time=snapshot_time, rate=rate,
        dividend_yield=dividend_yield, day_count=day_count, settlement=settlement,
        settlement_tz=settlement_tz, min_time_to_expiry=min_time_to_expiry, columns=columns,
        format=format,
    )  # fmt: skip
    work = prepared.work
    targets = resolve_targets(prepared, work, buckets, views) if with_targets else None
    if by_expiry and prepared.expiry_instants is None:
        raise ChainError("by_expiry needs an 'expiration' column (dates), not only time_to_expiry")
    # Groups per (underlying, strike), or per (underlying, strike, expiry) for buckets,
    # views and the expiry table (each a reduction of the same group sums).
    per_expiry = with_targets or by_expiry
    group_id = np.empty(0, dtype=np.int32)
    if by_strike or per_expiry:
        group_id = _assign_groups(prepared, work, per_expiry).chunk(0).to_numpy()
    rows = _RowInputs.of(prepared)
    done = _exposure_pass(
        prepared, rows, kind=kind, price_power=price_power, factor=factor,
        signs=(1.0, 1.0) if prepared.config.dealer_position else convention.signs,
        min_time=min_time_to_expiry, group_id=group_id,
        n_groups=prepared.n_groups if group_id.size else 0,
    )  # fmt: skip
    _check_sums(done)
    names = prepared.names
    order = reported_underlyings(names, done.reason_counts.sum(axis=1))
    suffix = kind.value
    groups = SimpleNamespace(group_sums=done.group_sums, group_quantity=done.group_quantity,
                             group_counts=done.group_counts, work=work)  # fmt: skip
    strike_table = None
    if by_strike and not per_expiry:
        strike_table = _rename_table(_strike_table(prepared, groups), suffix)
    contract_table = None
    if per_contract:
        source = prepared.source
        columns_out = {name: source.column(name)
                       for name in ("underlying", "expiration", "strike", "option_type")
                       if name in source.column_names}  # fmt: skip
        columns_out[suffix] = pa.array(done.values)
        reason_names = pa.array([None, *REASONS], pa.string())
        columns_out["drop_reason"] = pc.take(reason_names, pa.array(done.status, pa.int64()))
        contract_table = pa.table(columns_out)
    result = ExposureResult(
        kind=kind,
        unit=unit_name,
        by_underlying=_by_underlying(prepared, done, order, suffix),
        by_strike=strike_table,
        per_contract=contract_table,
        dropped=_dropped_from_counts(names, done.reason_counts),
        convention=convention,
        settings={**settings, "on_invalid": on_invalid, "unit": unit_name},
    )
    if per_expiry:
        result = _per_expiry_tables(result, prepared, groups, order, targets, buckets, views,
                                    by_strike, by_expiry)  # fmt: skip
    if on_invalid == "raise" and result.dropped_count:
        summary = ", ".join(f"{row['underlying']}/{row['reason']}: {row['count']}"
                            for row in result.dropped.to_pylist()[:10])  # fmt: skip
        raise InvalidRowsError(f"{result.dropped_count} invalid rows ({summary})", result.dropped)
    return result


def _per_expiry_tables(
    result, prepared, groups, order, targets, buckets, views, by_strike, by_expiry
) -> ExposureResult:
    """Bucket, per-(bucket, strike), per-strike and per-expiry tables from expiry groups.

    The bucket tables are :func:`fastgex.gex`'s (its ``_target_tables`` on these group
    sums), with ``gex`` in the column names replaced by the kind.
    """
    suffix = result.kind.value
    expiry_targets = targets or resolve_targets(prepared, prepared.work, None, ("all",))
    if targets is not None:
        fields = _target_tables(result, prepared, groups, order, targets, buckets, views, by_strike)
        result = dataclasses.replace(
            result,
            settings=fields["settings"],
            by_strike=_rename_table(fields["by_strike"], suffix),
            by_bucket=_rename_table(fields["by_bucket"], suffix),
            by_strike_bucket=_rename_table(fields["strike_bucket_source"].table(), suffix),
        )
    elif by_strike:  # the per-strike table is the sum over every expiry group
        every_group = np.ones(prepared.n_groups, dtype=np.uint64)
        sums = target_sums(prepared, groups, expiry_targets, order, every_group)
        table = sums.strike_table.select(BY_STRIKE_SCHEMA.names).cast(BY_STRIKE_SCHEMA)
        result = dataclasses.replace(result, by_strike=_rename_table(table, suffix))
    expiry_table = None
    if prepared.expiry_instants is not None:
        expiry_table = strike_expiry_table(prepared, groups.group_sums, groups.group_counts,
                                           expiry_targets.expiry_dates,
                                           expiry_targets.expiry_bucket)  # fmt: skip
    return dataclasses.replace(result, by_strike_expiry=_rename_table(expiry_table, suffix))


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

    def totals(shares: np.ndarray, greek: np.ndarray) -> np.ndarray:
        # Invalid rows may hold NaN/inf greeks; their products are masked out here, so
        # computing them must not warn either (found by fuzzing, docs/reliability.md).
        with np.errstate(invalid="ignore", over="ignore"):
            values = shares * greek
            sums, _, _ = _exposure_kernels.side_sums(
                np.where(valid, values, 0.0), contracts.is_call, valid,
                slots.astype(np.int32), np.empty(0, np.int32), n_slots, 0,
            )  # fmt: skip
        return sums.sum(axis=1)

    base_delta = totals(contracts.shares, contracts.greeks["delta"])
    gamma = totals(contracts.shares, contracts.greeks["gamma"])
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
    changes = [totals(contracts.shares, moved_delta) - base_delta for moved_delta in per_move]
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
