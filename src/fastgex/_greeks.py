"""Per-contract greeks and implied volatility: :func:`greeks` and :func:`implied_vol`.

Both take anything :func:`fastgex.read_chain` accepts and prepare it the way
:func:`fastgex.gex` does (underlyings, option types, time to expiry from expirations
and a snapshot time, spot per underlying, rates, Black-76 rows when the chain has a
``forward`` column). :func:`implied_vol` also takes plain arrays.

Units (:class:`GreekUnits`): ``trader`` (default) quotes vega and vanna per vol point
(0.01), vomma per vol point squared, theta and charm per calendar day (1/365 year)
and rho per 1% of rate; ``raw`` gives the plain derivatives (per 1.0 of vol, per year,
per 1.0 of rate). Price, delta, gamma and speed are the same in both.

Rows that cannot be computed are NaN with a reason (``reason`` column, counts in
``dropped``), never silently.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastgex import _greeks_kernel, _iv_kernel
from fastgex._chain import read_chain
from fastgex._errors import ChainError
from fastgex._gex import DEFAULT_MIN_TIME_TO_EXPIRY, _numpy, _prepare, _readonly
from fastgex._greeks_formulas import GREEK_ORDER
from fastgex._kernel_common import REASONS
from fastgex._timing import parse_settlement
from fastgex.conventions import DayCount, GammaSource

__all__ = [
    "ALL_GREEKS",
    "GREEK_UNITS",
    "GreekUnits",
    "GreeksResult",
    "ImpliedVolResult",
    "greeks",
    "implied_vol",
]

#: The nine greeks, in output order (``price`` may be asked for too).
ALL_GREEKS: tuple[str, ...] = GREEK_ORDER[1:]

#: Every reason a greeks or implied-vol row can carry (code = index + 1).
ALL_REASONS: tuple[str, ...] = REASONS + _iv_kernel.IV_REASONS

#: Price columns :func:`implied_vol` can read, with the names it accepts for each.
PRICE_COLUMNS: dict[str, tuple[str, ...]] = {
    "mid": ("mid", "mid_price", "midpoint"),
    "bid": ("bid", "bid_price"),
    "ask": ("ask", "ask_price"),
    "last": ("last", "last_price", "last_trade_price", "last_sale"),
    "mark": ("mark", "mark_price"),
}


class GreekUnits(str, enum.Enum):
    """How greeks are quoted (a named choice, recorded in every result)."""

    TRADER = "trader"
    RAW = "raw"


#: Scale applied to each raw derivative, per unit choice (keys: ``GREEK_ORDER``).
GREEK_UNITS: dict[GreekUnits, dict[str, float]] = {
    GreekUnits.TRADER: {
        "price": 1.0,
        "delta": 1.0,  # per 1.0 of the underlying price
        "gamma": 1.0,  # delta change per 1.0 of the underlying price
        "vega": 0.01,  # price change per vol point
        "theta": 1.0 / 365.0,  # price change per calendar day
        "rho": 0.01,  # price change per 1% of rate
        "vanna": 0.01,  # delta change per vol point
        "charm": 1.0 / 365.0,  # delta change per calendar day
        "vomma": 1e-4,  # vega (per point) change per vol point
        "speed": 1.0,  # gamma change per 1.0 of the underlying price
    },
    GreekUnits.RAW: dict.fromkeys(GREEK_ORDER, 1.0),
}


@dataclass(frozen=True)
class GreeksResult:
    """Greeks of a chain, one row per input contract, in input order.

    Attributes
    ----------
    table : pyarrow.Table
        The chain's ``underlying``, ``expiration``, ``strike``, ``option_type`` (those
        present), ``time_to_expiry``, one float64 column per requested greek (NaN for
        rows not computed) and ``reason`` (null for computed rows).
    dropped : pyarrow.Table
        Rows not computed, per ``underlying`` and ``reason`` (``count``).
    units : GreekUnits
        How the greeks are quoted.
    model : str
        ``"bsm"`` (spot, rate, dividend yield) or ``"black76"`` (per-row forward).
    settings : dict
        The other choices, for provenance.
    """

    table: pa.Table
    dropped: pa.Table
    units: GreekUnits
    model: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def dropped_count(self) -> int:
        """Number of rows without greeks."""
        return int(pc.sum(self.dropped.column("count")).as_py() or 0)


@dataclass(frozen=True)
class ImpliedVolResult:
    """Implied volatilities, one per input row, in input order.

    Attributes
    ----------
    implied_vol : numpy.ndarray
        float64 vols (annualized, as fractions); NaN where there is none.
    reason : pyarrow.Array
        Why a row has no vol (null where it has one).
    dropped : pyarrow.Table
        Rows without a vol per ``reason`` (``count``); per ``underlying`` too for chains.
    model : str
        ``"bsm"`` or ``"black76"``.
    """

    implied_vol: np.ndarray
    reason: pa.Array
    dropped: pa.Table
    model: str

    @property
    def dropped_count(self) -> int:
        """Number of rows without a vol."""
        return int(pc.sum(self.dropped.column("count")).as_py() or 0)


def _parse_greeks(requested: str | Sequence[str]) -> tuple[str, ...]:
    names = (requested,) if isinstance(requested, str) else tuple(requested)
    if not names:
        raise ValueError(f"no greeks requested: choose from {', '.join(GREEK_ORDER)}")
    unknown = [name for name in names if name not in GREEK_ORDER]
    if unknown:
        raise ValueError(f"unknown greek(s) {unknown}: choose from {', '.join(GREEK_ORDER)}")
    return tuple(name for name in GREEK_ORDER if name in names)


def _parse_units(units: str | GreekUnits) -> GreekUnits:
    try:
        return GreekUnits(units)
    except ValueError:
        raise ValueError(
            f"unknown units {units!r}: use {', '.join(unit.value for unit in GreekUnits)}"
        ) from None


def _model_table(table: pa.Table, need_vol: bool) -> pa.Table:
    """The chain as :func:`fastgex._gex._prepare` wants it for a model without quantities.

    Greeks and implied vols need no open interest: a zero column stands in for it (and
    for a dealer position), so a missing or null open interest never drops a row. For
    implied vols the vol column is a stand-in too (the solver does not read it).
    """
    drop = [name for name in ("open_interest", "dealer_position", "gamma")
            if name in table.column_names]  # fmt: skip
    if not need_vol and "implied_vol" in table.column_names:
        drop.append("implied_vol")
    if drop:
        table = table.drop_columns(drop)
    table = table.append_column("open_interest", pa.array(np.zeros(table.num_rows)))
    if not need_vol:
        table = table.append_column("implied_vol", pa.array(np.ones(table.num_rows)))
    return table


def _prepared(table, need_vol, *, spot, snapshot_time, rate, dividend_yield, day_count,
              settlement, settlement_tz):  # fmt: skip
    return _prepare(
        _model_table(table, need_vol),
        spot=spot,
        snapshot_time=snapshot_time,
        gamma_source=GammaSource.MODEL,
        rate=rate,
        dividend_yield=dividend_yield,
        day_count=DayCount.parse(day_count),
        settlement=parse_settlement(settlement),
        zone=ZoneInfo(settlement_tz),
    )


def _dropped_table(names: list[str | None], uid: np.ndarray, status: np.ndarray) -> pa.Table:
    bad = np.flatnonzero(status)
    n_reasons = len(ALL_REASONS) + 1
    counts = np.bincount(
        uid[bad].astype(np.int64) * n_reasons + status[bad].astype(np.int64),
        minlength=len(names) * n_reasons,
    ).reshape(len(names), n_reasons)
    rows: dict[str, list] = {"underlying": [], "reason": [], "count": []}
    for index, code in zip(*np.nonzero(counts), strict=True):
        rows["underlying"].append(names[index])
        rows["reason"].append(ALL_REASONS[code - 1])
        rows["count"].append(int(counts[index, code]))
    return pa.table(
        rows,
        schema=pa.schema(
            [("underlying", pa.string()), ("reason", pa.string()), ("count", pa.int64())]
        ),
    )


def _reasons(status: np.ndarray) -> pa.Array:
    if not status.any():  # the common case: no take over every row
        return pa.nulls(status.size, pa.string())
    names = pa.array([None, *ALL_REASONS], pa.string())
    return pc.take(names, pa.array(status.astype(np.int64)))


def _joined(pieces: list[np.ndarray], dtype=np.float64) -> np.ndarray:
    """Batches' arrays as one (no copy for a single batch)."""
    if len(pieces) == 1:
        return pieces[0]
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=dtype)


def greeks(
    chain: Any,
    *,
    greeks: str | Sequence[str] = ALL_GREEKS,
    spot: float | Mapping[str, float] | Any | None = None,
    snapshot_time: Any | None = None,
    rate: float | Mapping[str, float] | None = None,
    dividend_yield: float | Mapping[str, float] | None = None,
    units: str | GreekUnits = GreekUnits.TRADER,
    day_count: str | DayCount = "act365",
    settlement: str | dt.time = "pm",
    settlement_tz: str = "America/New_York",
    min_time_to_expiry: float = DEFAULT_MIN_TIME_TO_EXPIRY,
    columns: Mapping[str, str] | None = None,
    format: str = "auto",
) -> GreeksResult:
    """Black-Scholes-Merton (or Black-76) greeks of every contract, in one fused pass.

    Parameters
    ----------
    chain : table-like or path
        Anything :func:`fastgex.read_chain` accepts, with ``underlying``, ``strike``,
        ``option_type``, ``implied_vol`` and ``expiration`` (+ snapshot time) or
        ``time_to_expiry``. A ``forward`` column makes every row Black-76. Open interest
        is not needed.
    greeks : str or sequence of str
        Any of ``delta, gamma, vega, theta, rho, vanna, charm, vomma, speed`` and
        ``price`` (default: the nine greeks), computed in one fused pass. Each set
        runs its own compiled kernel variant (compiled once, then cached on disk), so a
        subset costs only its own work; its values agree with the full set's to
        rounding (about 1e-15 relative), not always bitwise.
    spot, snapshot_time, rate, dividend_yield, day_count, settlement, settlement_tz
        As for :func:`fastgex.gex`.
    units : {"trader", "raw"} or GreekUnits
        How greeks are quoted (the scales are ``fastgex.GREEK_UNITS``).
    min_time_to_expiry : float
        Floor in years on the time used in the formulas (default one minute); expired
        rows (time <= 0) are not computed.
    columns, format
        As for :func:`fastgex.read_chain`.

    Returns
    -------
    GreeksResult
        The per-contract table (with ``reason``) and drop counts.

    Raises
    ------
    fastgex.ChainError
        A required column is missing or has the wrong type, or a spot is missing.
    ValueError
        An unknown greek or unit.
    """
    wanted = _parse_greeks(greeks)
    unit = _parse_units(units)
    if not (min_time_to_expiry > 0 and math.isfinite(min_time_to_expiry)):
        raise ValueError("min_time_to_expiry must be a positive number of years")
    table = read_chain(chain, format=format, columns=columns)
    prepared = _prepared(
        table,
        True,
        spot=spot,
        snapshot_time=snapshot_time,
        rate=rate,
        dividend_yield=dividend_yield,
        day_count=day_count,
        settlement=settlement,
        settlement_tz=settlement_tz,
    )
    config = prepared.config
    run = _greeks_kernel.greeks_kernel(
        config.black76, config.row_carry, _greeks_kernel.stored_mask(wanted)
    )
    scales = _readonly(np.array([GREEK_UNITS[unit][name] for name in GREEK_ORDER]))
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    statuses = []
    for batch in prepared.work.to_batches():
        n_rows = batch.num_rows
        if n_rows == 0:
            continue
        # One array per greek, wanted or not: the unwanted ones are never written, so
        # their pages are never touched (see the kernel on why they must exist).
        arrays = {name: np.empty(n_rows) for name in GREEK_ORDER}
        status = np.zeros(n_rows, dtype=np.int8)
        run(
            _numpy(batch, "strike", np.float64),
            _numpy(batch, "vol", np.float64),
            _numpy(batch, "time", np.float64),
            _numpy(batch, "code", np.uint8),
            _numpy(batch, "uid", np.int32),
            _readonly(prepared.spot),
            _numpy(batch, "forward", np.float64),
            _numpy(batch, "rate", np.float64) if config.row_carry else _readonly(prepared.rate),
            _numpy(batch, "dividend_yield", np.float64)
            if config.row_carry
            else _readonly(prepared.dividend_yield),
            min_time_to_expiry,
            scales,
            *[arrays[name] for name in GREEK_ORDER],
            status,
        )
        for name in wanted:
            outputs[name].append(arrays[name])
        statuses.append(status)
    status = _joined(statuses, np.int8)
    columns_out: dict[str, Any] = {
        name: table.column(name)
        for name in ("underlying", "expiration", "strike", "option_type")
        if name in table.column_names
    }
    columns_out["time_to_expiry"] = prepared.work.column("time")
    for name in wanted:
        columns_out[name] = pa.array(_joined(outputs[name]))
    columns_out["reason"] = _reasons(status)
    dropped = _dropped_table(prepared.names, prepared.uid_values, status)
    return GreeksResult(
        table=pa.table(columns_out),
        dropped=dropped,
        units=unit,
        model="black76" if config.black76 else "bsm",
        settings={
            "rate": rate if not isinstance(rate, Mapping) else dict(rate),
            "dividend_yield": dividend_yield
            if not isinstance(dividend_yield, Mapping)
            else dict(dividend_yield),
            "min_time_to_expiry": min_time_to_expiry,
            "snapshot_time": prepared.snapshot,
            "greeks": wanted,
        },
    )


def _price_column(table: pa.Table, price: str) -> np.ndarray:
    """The option prices to invert: a named column, or mid from bid and ask."""
    if price not in PRICE_COLUMNS:
        raise ValueError(f"unknown price {price!r}: use one of {', '.join(PRICE_COLUMNS)}")
    lookup = {name.lower(): name for name in table.column_names}

    def find(kind: str) -> str | None:
        for alias in PRICE_COLUMNS[kind]:
            if alias in lookup:
                return lookup[alias]
        return None

    def values(name: str) -> np.ndarray:
        column = table.column(name)
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)
                or pa.types.is_decimal(column.type)):  # fmt: skip
            raise ChainError(f"price column {name!r} has type {column.type}; expected a number")
        column = pc.cast(column, pa.float64()).fill_null(np.nan)
        return np.asarray(column.to_numpy(), dtype=np.float64)

    name = find(price)
    if name is not None:
        return values(name)
    if price == "mid":
        bid, ask = find("bid"), find("ask")
        if bid is not None and ask is not None:
            return 0.5 * (values(bid) + values(ask))
    wanted = PRICE_COLUMNS[price] + (("bid + ask",) if price == "mid" else ())
    raise ChainError(
        f"implied vol from {price!r} prices needs a column named one of {list(wanted)}; "
        f"the chain has {table.column_names} (choose another with price=...)"
    )


def implied_vol(
    chain: Any = None,
    *,
    price: str | Any = "mid",
    strike: Any = None,
    time_to_expiry: Any = None,
    option_type: Any = None,
    spot: Any = None,
    forward: Any = None,
    rate: Any = None,
    dividend_yield: Any = None,
    snapshot_time: Any | None = None,
    day_count: str | DayCount = "act365",
    settlement: str | dt.time = "pm",
    settlement_tz: str = "America/New_York",
    columns: Mapping[str, str] | None = None,
    format: str = "auto",
) -> ImpliedVolResult:
    """Implied volatility from option prices (Black-Scholes-Merton or Black-76).

    Two ways to call it:

    * ``implied_vol(chain, price="mid")``: a chain as for :func:`greeks` (no
      ``implied_vol`` needed) with price columns: ``mid`` (default; a ``mid`` column,
      else the mean of ``bid`` and ``ask``), ``bid``, ``ask``, ``last`` or ``mark``.
      Spot, rates and time to expiry come as for :func:`fastgex.gex`.
    * ``implied_vol(price=prices, strike=..., time_to_expiry=..., option_type=...,
      spot=... or forward=..., rate=..., dividend_yield=...)``: arrays (or scalars,
      broadcast); ``option_type`` is booleans (True = call) or ``"C"``/``"P"`` strings.

    Parameters
    ----------
    chain : table-like or path, optional
        The chain (first form).
    price : str or array-like
        Which price column (first form) or the prices (second form).
    strike, time_to_expiry, option_type, spot, forward, rate, dividend_yield : array-like
        Second form. ``forward`` (Black-76) replaces ``spot``; ``rate`` discounts
        either way; ``dividend_yield`` applies to BSM. Rates default to 0.
    snapshot_time, day_count, settlement, settlement_tz, columns, format
        First form, as for :func:`fastgex.gex`.

    Returns
    -------
    ImpliedVolResult
        Vols in input order; a reason (and counts) for each row without one:
        ``invalid_price`` (NaN, zero, negative), ``price_below_intrinsic`` (no time
        value), ``price_above_upper_bound`` (call >= S e^-qT, put >= K e^-rT),
        ``invalid_spot``, input reasons as for greeks, or ``not_converged`` (not
        expected; counted if it happens).
    """
    if chain is not None:
        return _implied_vol_chain(
            chain,
            price=price,
            spot=spot,
            snapshot_time=snapshot_time,
            rate=rate,
            dividend_yield=dividend_yield,
            day_count=day_count,
            settlement=settlement,
            settlement_tz=settlement_tz,
            columns=columns,
            format=format,
        )
    if strike is None or time_to_expiry is None or option_type is None:
        raise ValueError(
            "implied_vol needs a chain, or price=, strike=, time_to_expiry= and option_type= "
            "arrays with spot= (BSM) or forward= (Black-76)"
        )
    if (spot is None) == (forward is None):
        raise ValueError("give exactly one of spot= (BSM) or forward= (Black-76)")
    values = np.broadcast_arrays(
        *[np.asarray(value, dtype=np.float64) for value in
          (price, strike, time_to_expiry, spot if forward is None else forward,
           0.0 if rate is None else rate, 0.0 if dividend_yield is None else dividend_yield)]
    )  # fmt: skip
    codes = _type_codes(np.broadcast_to(np.asarray(option_type), values[0].shape))
    flat = [np.ascontiguousarray(value.ravel()) for value in values]
    prices, strikes, times, underlying, rates, dividends = flat
    black76 = forward is not None
    vols, status = _solve(prices, strikes, times, codes.ravel(), underlying, rates, dividends,
                          black76)  # fmt: skip
    counts = np.bincount(status.astype(np.int64), minlength=len(ALL_REASONS) + 1)
    dropped = pa.table(
        {
            "reason": pa.array([ALL_REASONS[code - 1] for code in np.flatnonzero(counts[1:]) + 1],
                               pa.string()),
            "count": pa.array(counts[1:][counts[1:] > 0], pa.int64()),
        }
    )  # fmt: skip
    return ImpliedVolResult(
        implied_vol=vols.reshape(values[0].shape),
        reason=_reasons(status),
        dropped=dropped,
        model="black76" if black76 else "bsm",
    )


def _type_codes(option_type: np.ndarray) -> np.ndarray:
    """uint8 codes (1 call, 0 put, 255 unknown) from booleans or C/P strings."""
    if option_type.dtype == np.bool_:
        return option_type.astype(np.uint8)
    text = np.char.lower(np.char.strip(option_type.astype(str)))
    codes = np.full(text.shape, 255, dtype=np.uint8)
    codes[np.isin(text, ("c", "call", "calls"))] = 1
    codes[np.isin(text, ("p", "put", "puts"))] = 0
    return codes


def _solve(prices, strikes, times, codes, underlying, rates, dividends, black76):
    """Run the kernel on per-row arrays (forwards and discounts are computed inside)."""
    n_rows = prices.size
    vols = np.empty(n_rows)
    status = np.zeros(n_rows, dtype=np.int8)
    iterations = np.zeros(max(1, -(-n_rows // _iv_kernel.STRIP_ROWS)), dtype=np.int64)

    def ready(values, dtype=np.float64):
        return _readonly(np.ascontiguousarray(values, dtype=dtype))

    _iv_kernel.run(
        ready(prices),
        ready(strikes),
        ready(times),
        ready(codes, np.uint8),
        ready(underlying),
        ready(rates),
        ready(dividends),
        bool(black76),
        vols,
        status,
        iterations,
    )
    return vols, status


def _implied_vol_chain(chain, *, price, spot, snapshot_time, rate, dividend_yield, day_count,
                       settlement, settlement_tz, columns, format) -> ImpliedVolResult:  # fmt: skip
    table = read_chain(chain, format=format, columns=columns)
    prices = _price_column(table, price)
    prepared = _prepared(
        table,
        False,
        spot=spot,
        snapshot_time=snapshot_time,
        rate=rate,
        dividend_yield=dividend_yield,
        day_count=day_count,
        settlement=settlement,
        settlement_tz=settlement_tz,
    )
    work = prepared.work
    uid = prepared.uid_values
    config = prepared.config

    def column(name: str, per_underlying: np.ndarray) -> np.ndarray:
        if name in work.column_names:
            return np.asarray(work.column(name).to_numpy(), dtype=np.float64)
        return per_underlying[uid]

    times = np.asarray(work.column("time").fill_null(np.nan).to_numpy(), dtype=np.float64)
    codes = np.asarray(work.column("code").to_numpy(), dtype=np.uint8)
    strikes = np.asarray(work.column("strike").fill_null(np.nan).to_numpy(), dtype=np.float64)
    rates = column("rate", prepared.rate)
    dividends = column("dividend_yield", prepared.dividend_yield)
    if config.black76:
        underlying = np.asarray(work.column("forward").fill_null(np.nan).to_numpy(), np.float64)
    else:
        underlying = prepared.spot[uid]
    vols, status = _solve(prices, strikes, times, codes, underlying, rates, dividends,
                          config.black76)  # fmt: skip
    return ImpliedVolResult(
        implied_vol=vols,
        reason=_reasons(status),
        dropped=_dropped_table(prepared.names, uid, status),
        model="black76" if config.black76 else "bsm",
    )
