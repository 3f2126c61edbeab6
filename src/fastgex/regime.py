"""Gamma regime: risk-reversal skew, its z-score, and the long/short gamma classifier.

A regime describes how the market behaves *if* it moves: dealers long gamma trade
against moves (dampening, mean reversion, pinning), dealers short gamma trade with
them (amplifying, trends, squeezes). It never says *which way* the market moves.

The classifier follows the seed lesson's ``classify_regime``: the short-gamma tag is set
when total GEX is negative, when spot is below the gamma flip, or when the skew
z-score is crushed. :func:`measure_skew` measures the skew from a chain, and
:func:`skew_zscore` puts it against its own history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastgex._chain import read_chain
from fastgex._gex import gex
from fastgex.conventions import DayCount

__all__ = [
    "SKEW_SCHEMA",
    "TRIGGERS",
    "Regime",
    "RegimeThresholds",
    "classify_regime",
    "measure_skew",
    "skew_zscore",
]

#: Columns of the table returned by :func:`measure_skew`.
SKEW_SCHEMA = pa.schema(
    [
        ("underlying", pa.string()),
        ("skew", pa.float64()),
        ("put_iv", pa.float64()),
        ("call_iv", pa.float64()),
        ("tenor_days", pa.float64()),
        ("method", pa.string()),
        ("reason", pa.string()),
    ]
)

#: Names of the short-gamma triggers, in the order they are checked and reported.
TRIGGERS: tuple[str, ...] = ("total_gex_negative", "spot_below_flip", "skew_crushed")

_CALL_NAMES = ("c", "call", "calls")
_PUT_NAMES = ("p", "put", "puts")
_SQRT_HALF = math.sqrt(0.5)
_normal_upper_tail = np.frompyfunc(math.erfc, 1, 1)


def _normal_cdf(values: np.ndarray) -> np.ndarray:
    """Standard normal CDF via ``erfc`` (accurate in both tails, unlike ``1 + erf``)."""
    return 0.5 * _normal_upper_tail(-values * _SQRT_HALF).astype(np.float64)


# ---------------------------------------------------------------------------
# Skew
# ---------------------------------------------------------------------------


def measure_skew(
    chain: Any,
    *,
    target_days: float = 30.0,
    delta: float = 0.25,
    spot: float | Mapping[str, float] | Any | None = None,
    snapshot_time: Any | None = None,
    rate: float | Mapping[str, float] | None = None,
    dividend_yield: float | Mapping[str, float] | None = None,
    day_count: str | DayCount = "act365",
    columns: Mapping[str, str] | None = None,
    format: str = "auto",
) -> pa.Table:
    """Risk-reversal skew per underlying at a constant tenor.

    The skew is the implied vol of the ``delta``-delta put minus the implied vol of the
    ``delta``-delta call (fractions: 0.05 is five vol points). It is positive in normal
    equity markets, where downside protection is bid; a collapsing put skew is what the
    regime classifier calls "crushed" (see :class:`RegimeThresholds`).

    Method:

    1. The chain goes through :func:`fastgex.gex` with the same ``spot``,
       ``snapshot_time``, ``rate``, ``dividend_yield`` and ``day_count``, so rows,
       spots and times to expiry are validated exactly as for GEX. Only rows that count
       there (null ``drop_reason``) with a positive, finite ``implied_vol`` are used.
    2. Each row's delta comes from its own implied vol and time to expiry ``T`` (years,
       floored as in :func:`fastgex.gex`): ``d1 = (ln(F/K) + vol**2 T / 2) / (vol sqrt(T))``
       with ``F = S exp((r - q) T)``; call delta ``exp(-q T) N(d1)``, put delta
       ``-exp(-q T) N(-d1)`` (Black-Scholes-Merton spot delta). Chains with a ``forward``
       column use that forward and Black-76 deltas, with ``exp(-r T)`` as the factor.
       ``N`` is computed with ``math.erfc``.
    3. Per (underlying, expiry), the put rows and the call rows are each sorted by
       ``|delta|``; the vol at ``|delta| = delta`` is interpolated linearly in delta
       between the two rows whose deltas bracket it (the row itself on an exact hit).
       All puts and all calls are used, in- or out-of-the-money; on a clean smile delta
       is monotone in strike, so the bracketing rows are neighbouring strikes. Series
       sharing an expiry (SPX and SPXW on a monthly date, which :func:`fastgex.gex`
       times alike) are pooled. An expiry where either side cannot be bracketed is
       skipped.
    4. Across the remaining expiries, the put and call vols are interpolated linearly
       in time between the two expiries bracketing ``target_days`` (``method`` is
       ``"interpolated"``, ``tenor_days`` is the target). When the target lies outside
       them, the nearest expiry is used as it is (``method`` is ``"nearest"``,
       ``tenor_days`` is that expiry's). ``skew`` is ``put_iv - call_iv``.

    Parameters
    ----------
    chain : table-like or path
        Anything :func:`fastgex.read_chain` accepts; needs the columns
        :func:`fastgex.gex` needs (including ``open_interest``, which the skew ignores).
    target_days : float, default 30.0
        The constant tenor, in the day count's days (calendar days for ``act365``,
        business days for ``bus252``): ``target_days / year_length`` years.
    delta : float, default 0.25
        Absolute delta of the two wings, in ``(0, 1)``.
    spot, snapshot_time, rate, dividend_yield, day_count, columns, format
        As in :func:`fastgex.gex`.

    Returns
    -------
    pyarrow.Table
        One row per underlying (those in ``GexResult.by_underlying``), with
        the columns of :data:`SKEW_SCHEMA`: ``underlying``, ``skew``, ``put_iv``,
        ``call_iv``, ``tenor_days``, ``method`` (``"interpolated"``, ``"nearest"``, or
        null when not measured) and ``reason`` (null when measured, else why not).
        ``skew``, ``put_iv``, ``call_iv`` and ``tenor_days`` are null, never NaN, when
        the skew cannot be measured.

    Raises
    ------
    ValueError
        On a ``target_days`` that is not positive and finite, or a ``delta`` outside
        ``(0, 1)``.
    fastgex.ChainError
        As :func:`fastgex.gex` (missing columns, missing spot, ...).

    Notes
    -----
    The carry matters: deltas, and so the strikes read, move with ``rate`` and
    ``dividend_yield`` (0 unless given or in the chain). On CBOE's 2023-09-14 SPX chain
    the 30-day 25-delta skew is 3.00 vol points with both at 0 and 2.66 with
    ``rate=0.053``, which matches the skew read off CBOE's own delta column.
    """
    if not (math.isfinite(target_days) and target_days > 0):
        raise ValueError(f"target_days must be positive and finite, not {target_days!r}")
    if not (0.0 < delta < 1.0):
        raise ValueError(f"delta must lie strictly between 0 and 1, not {delta!r}")
    table = read_chain(chain, columns=columns, format=format)
    result = gex(
        table,
        per_contract=True,
        by_strike=False,
        spot=spot,
        snapshot_time=snapshot_time,
        rate=rate,
        dividend_yield=dividend_yield,
        day_count=day_count,
    )
    year_length = result.day_count.year_length
    target_years = target_days / year_length
    names = result.by_underlying.column("underlying").to_pylist()
    spots = dict(zip(names, result.by_underlying.column("spot").to_pylist(), strict=True))
    rows = _usable_rows(table, result.per_contract, names, spots, rate, dividend_yield)
    # The same floor as the gamma, so a contract minutes from expiry has a finite delta.
    time_floor = float(result.settings.get("min_time_to_expiry", 0.0))
    wings = _expiry_wings(rows, time_floor, delta)
    label = f"{delta * 100:g}-delta"
    out: dict[str, list] = {name: [] for name in SKEW_SCHEMA.names}
    has_rows = np.bincount(rows["uid"], minlength=len(names)) > 0
    for index, name in enumerate(names):
        if not has_rows[index]:
            measured = (None, None, None, None, None, "no rows with a positive implied vol")
        else:
            measured = _across_expiries(wings.get(index, []), target_years, year_length, label)
        skew, put_iv, call_iv, tenor_days, method, reason = measured
        out["underlying"].append(name)
        out["skew"].append(skew)
        out["put_iv"].append(put_iv)
        out["call_iv"].append(call_iv)
        out["tenor_days"].append(tenor_days)
        out["method"].append(method)
        out["reason"].append(reason)
    return pa.table(out, schema=SKEW_SCHEMA)


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    column = pc.cast(table.column(name), pa.float64())
    return np.asarray(pc.fill_null(column, math.nan).to_numpy(), dtype=np.float64)


def _per_row_carry(
    table: pa.Table,
    name: str,
    given: float | Mapping[str, float] | None,
    uid: np.ndarray,
    names: list[str],
) -> np.ndarray:
    """Per-row rate or dividend yield, resolved as :func:`fastgex.gex` resolves it."""
    if given is None:
        if name in table.column_names:
            return _float_column(table, name)
        return np.zeros(len(uid))
    if isinstance(given, Mapping):
        # Rows of underlyings not in the result keep uid -1 and are filtered out later.
        per_underlying = np.array([float(given.get(u, 0.0)) for u in names] + [0.0])
        return per_underlying[uid]
    return np.full(len(uid), float(given))


def _option_sides(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(is_call, is_put)`` masks from C/P or call/put strings or is-call booleans."""
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if pa.types.is_boolean(column.type):
        flags = np.asarray(pc.fill_null(column, False).to_numpy(zero_copy_only=False))
        known = np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False))
        return flags & known, ~flags & known
    text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(column, pa.string())))
    is_call = pc.fill_null(pc.is_in(text, value_set=pa.array(_CALL_NAMES)), False)
    is_put = pc.fill_null(pc.is_in(text, value_set=pa.array(_PUT_NAMES)), False)
    return (
        np.asarray(is_call.to_numpy(zero_copy_only=False)),
        np.asarray(is_put.to_numpy(zero_copy_only=False)),
    )


def _usable_rows(
    table: pa.Table,
    per_contract: pa.Table,
    names: list[str],
    spots: dict[str, float],
    rate: float | Mapping[str, float] | None,
    dividend_yield: float | Mapping[str, float] | None,
) -> dict[str, np.ndarray]:
    """Numpy columns of the rows that count and have a positive finite implied vol."""
    # per_contract is in input order, so the source's columns line up row for row.
    underlying = pc.cast(per_contract.column("underlying"), pa.string())
    lookup = pa.array(names, pa.string())
    uid = np.asarray(
        pc.fill_null(pc.index_in(underlying, value_set=lookup), -1).to_numpy(), dtype=np.int64
    )
    counted = np.asarray(pc.is_null(per_contract.column("drop_reason")).to_numpy())
    vol = _float_column(table, "implied_vol")
    time = _float_column(per_contract, "time_to_expiry")
    strike = _float_column(table, "strike")
    is_call, is_put = _option_sides(table.column("option_type"))
    carry_rate = _per_row_carry(table, "rate", rate, uid, names)
    carry_div = _per_row_carry(table, "dividend_yield", dividend_yield, uid, names)
    if "forward" in table.column_names:
        forward = _float_column(table, "forward")
        black76 = True
    else:
        spot_per = np.array([spots[name] for name in names] + [math.nan], dtype=np.float64)
        forward = spot_per[uid]  # spot for now; carried forward below
        black76 = False
    with np.errstate(invalid="ignore"):
        keep = (
            counted
            & (uid >= 0)
            & (is_call | is_put)
            & np.isfinite(vol)
            & (vol > 0)
            & np.isfinite(time)
            & (time > 0)
            & np.isfinite(strike)
            & (strike > 0)
            & np.isfinite(forward)
            & (forward > 0)
            & np.isfinite(carry_rate)
            & np.isfinite(carry_div)
        )
    return {
        "uid": uid[keep],
        "vol": vol[keep],
        "time": time[keep],
        "strike": strike[keep],
        "is_call": is_call[keep],
        "price": forward[keep],
        "rate": carry_rate[keep],
        "dividend_yield": carry_div[keep],
        "black76": np.full(int(keep.sum()), black76),
    }


def _abs_deltas(rows: dict[str, np.ndarray], time_floor: float) -> np.ndarray:
    """``|delta|`` of each row from its own implied vol (BSM, or Black-76 on a forward)."""
    years = np.maximum(rows["time"], time_floor)
    black76 = rows["black76"]
    forward = np.where(
        black76,
        rows["price"],
        rows["price"] * np.exp((rows["rate"] - rows["dividend_yield"]) * years),
    )
    discount = np.exp(-np.where(black76, rows["rate"], rows["dividend_yield"]) * years)
    root = rows["vol"] * np.sqrt(years)
    d1 = (np.log(forward / rows["strike"]) + 0.5 * root * root) / root
    return discount * _normal_cdf(np.where(rows["is_call"], d1, -d1))


def _wing_vol(abs_delta: np.ndarray, vol: np.ndarray, target: float) -> float | None:
    """Vol at ``|delta| = target`` by linear interpolation in delta, or None if not bracketed.

    ``abs_delta`` is ascending (ties by ascending vol, so row order never matters).
    """
    position = int(np.searchsorted(abs_delta, target, side="left"))
    if position < len(abs_delta) and abs_delta[position] == target:
        return float(vol[abs_delta == target].mean())
    if position == 0 or position == len(abs_delta):
        return None
    low, high = position - 1, position
    weight = (target - abs_delta[low]) / (abs_delta[high] - abs_delta[low])
    return float(vol[low] + weight * (vol[high] - vol[low]))


def _expiry_wings(
    rows: dict[str, np.ndarray], time_floor: float, target: float
) -> dict[int, list[tuple[float, float, float]]]:
    """``(years, put_iv, call_iv)`` per underlying id, for expiries with both wings bracketed.

    One sort by (underlying, expiry, side, ``|delta|``, vol) puts every wing's rows in a
    contiguous, delta-ordered run, so a whole market costs one ``lexsort``.
    """
    abs_delta = _abs_deltas(rows, time_floor)
    uid, times, is_call, vol = rows["uid"], rows["time"], rows["is_call"], rows["vol"]
    order = np.lexsort((vol, abs_delta, is_call, times, uid))
    uid, times, is_call = uid[order], times[order], is_call[order]
    abs_delta, vol = abs_delta[order], vol[order]
    new_expiry = np.r_[True, (uid[1:] != uid[:-1]) | (times[1:] != times[:-1])]
    starts = np.flatnonzero(new_expiry)
    ends = np.r_[starts[1:], uid.size]
    wings: dict[int, list[tuple[float, float, float]]] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        # Puts (is_call False) sort before calls within an expiry.
        split = start + int(np.searchsorted(is_call[start:end], True))
        put_iv = _wing_vol(abs_delta[start:split], vol[start:split], target)
        call_iv = _wing_vol(abs_delta[split:end], vol[split:end], target)
        if put_iv is not None and call_iv is not None:
            wings.setdefault(int(uid[start]), []).append((float(times[start]), put_iv, call_iv))
    return wings


def _across_expiries(
    wings: list[tuple[float, float, float]],
    target_years: float,
    year_length: float,
    label: str,
) -> tuple[float | None, float | None, float | None, float | None, str | None, str | None]:
    """``(skew, put_iv, call_iv, tenor_days, method, reason)`` at the target tenor."""
    if not wings:
        return None, None, None, None, None, f"no expiry with both {label} sides bracketed"
    times = [years for years, _, _ in wings]
    if target_years < times[0] or target_years > times[-1]:
        years, put_iv, call_iv = wings[0] if target_years < times[0] else wings[-1]
        return put_iv - call_iv, put_iv, call_iv, years * year_length, "nearest", None
    high = int(np.searchsorted(times, target_years, side="left"))
    if times[high] == target_years:
        _, put_iv, call_iv = wings[high]
    else:
        (low_years, low_put, low_call), (high_years, high_put, high_call) = wings[
            high - 1 : high + 1
        ]
        weight = (target_years - low_years) / (high_years - low_years)
        put_iv = low_put + weight * (high_put - low_put)
        call_iv = low_call + weight * (high_call - low_call)
    return put_iv - call_iv, put_iv, call_iv, target_years * year_length, "interpolated", None


# ---------------------------------------------------------------------------
# Z-score
# ---------------------------------------------------------------------------


def _as_float_array(values: Any) -> np.ndarray:
    """1-D float64 array with nulls as NaN, from a sequence, numpy, pyarrow or pandas."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pc.fill_null(pc.cast(values, pa.float64()), math.nan).to_numpy()
    elif type(values).__module__.startswith("pandas") and hasattr(values, "to_numpy"):
        values = values.to_numpy(dtype=np.float64, na_value=math.nan)
    elif not isinstance(values, np.ndarray):
        values = [math.nan if value is None else value for value in values]
    return np.asarray(values, dtype=np.float64).ravel()


def skew_zscore(current: float, history: Any, *, min_history: int = 20) -> float | None:
    """Z-score of ``current`` against ``history``: ``(current - mean) / std``.

    Parameters
    ----------
    current : float
        Today's value (e.g. the ``skew`` from :func:`measure_skew`).
    history : sequence, numpy array, pyarrow array or pandas Series
        Past values. NaN, null (``None``, ``pd.NA``, Arrow nulls) and infinite values
        are ignored. Whether ``current`` belongs in it is the caller's choice; it is
        used as given.
    min_history : int, default 20
        Fewest valid values needed.

    Returns
    -------
    float or None
        The z-score with the sample mean and the sample standard deviation
        (``ddof=1``) of the valid history. None when ``current`` is None or not finite,
        when fewer than ``max(min_history, 2)`` values are valid, or when they are all
        equal (zero spread: no scale to measure against).
    """
    if current is None or not math.isfinite(current):
        return None
    values = _as_float_array(history)
    values = values[np.isfinite(values)]
    if values.size < max(min_history, 2) or values.min() == values.max():
        return None
    # Scale by a power of two (exact) so squares neither overflow nor underflow, and
    # centre on the median so nearly equal values keep their differences.
    scale = math.ldexp(1.0, math.frexp(float(np.abs(values).max()))[1])
    scaled = values / scale
    centre = float(np.median(scaled))
    centred = scaled - centre
    mean = math.fsum(centred) / centred.size
    deviations = centred - mean
    std = math.sqrt(math.fsum(deviations * deviations) / (centred.size - 1))
    if std == 0.0:
        return None
    return ((float(current) / scale - centre) - mean) / std


# ---------------------------------------------------------------------------
# Classifier
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RegimeThresholds:
    """Where the short-gamma triggers fire.

    Attributes
    ----------
    total_gex_below : float, default 0.0
        ``total_gex_negative`` fires when total GEX is strictly below this (in the GEX
        unit used, e.g. $ per 1% move).
    skew_z_below : float, default -2.0
        ``skew_crushed`` fires when the skew z-score is at or below this. A collapsing
        put skew (puts no longer bid over calls relative to their history) is what the
        seed lesson calls a crushed skew.
    use_flip : bool, default True
        Whether ``spot_below_flip`` is evaluated (spot strictly below the gamma flip).
    """

    total_gex_below: float = 0.0
    skew_z_below: float = -2.0
    use_flip: bool = True

    def __post_init__(self) -> None:
        for name in ("total_gex_below", "skew_z_below"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")


@dataclass(frozen=True)
class Regime:
    """The gamma regime and what decided it.

    A regime describes how moves behave (dampened when long gamma, amplified when
    short gamma), not which way the market moves.

    Attributes
    ----------
    regime : str
        ``"long_gamma"`` or ``"short_gamma"``.
    triggers : tuple of str
        The short-gamma triggers that fired, in :data:`TRIGGERS` order; empty when
        long gamma.
    total_gex : float
        Total GEX used.
    spot : float
        Spot used.
    flip : float or None
        Gamma flip used; None when not given (or NaN).
    skew_z : float or None
        Skew z-score used; None when the skew trigger was not evaluated.
    evaluated : tuple of str
        The triggers that could be evaluated with the inputs given.
    """

    regime: str
    triggers: tuple[str, ...]
    total_gex: float
    spot: float
    flip: float | None
    skew_z: float | None
    evaluated: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists for tuples, None for missing values)."""
        return {
            "regime": self.regime,
            "triggers": list(self.triggers),
            "total_gex": self.total_gex,
            "spot": self.spot,
            "flip": self.flip,
            "skew_z": self.skew_z,
            "evaluated": list(self.evaluated),
        }


def _optional_number(value: float | None) -> float | None:
    """``float(value)``, or None for None and NaN (an input that was not measured)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _required_number(name: str, value: float | None) -> float:
    number = math.nan if value is None else float(value)
    if not math.isfinite(number):
        raise ValueError(
            f"{name} must be a finite number, not {value!r}: a regime cannot be classified "
            f"without it"
        )
    return number


_DEFAULT_THRESHOLDS = RegimeThresholds()


def classify_regime(
    *,
    total_gex: float,
    spot: float,
    flip: float | None = None,
    skew: float | None = None,
    skew_history: Any = None,
    skew_z: float | None = None,
    thresholds: RegimeThresholds = _DEFAULT_THRESHOLDS,
) -> Regime:
    """Tag the dealer gamma regime: short gamma when any trigger fires, else long gamma.

    A regime describes how moves behave, not their direction: long gamma means dealer
    hedging dampens moves (selling rallies, buying dips), short gamma means it amplifies
    them (buying rallies, selling dips). Neither says which way the market will go.

    Triggers (see :class:`RegimeThresholds`):

    * ``total_gex_negative``: ``total_gex < thresholds.total_gex_below``;
    * ``spot_below_flip``: ``spot < flip``, evaluated when ``flip`` is given and
      ``thresholds.use_flip``;
    * ``skew_crushed``: skew z-score ``<= thresholds.skew_z_below``, with the z-score
      from ``skew_z`` when given, else :func:`skew_zscore` of ``skew`` against
      ``skew_history``; not evaluated when neither yields one.

    Optional inputs that are None or NaN are treated as not given: their trigger is not
    evaluated (it never fires on a missing value), and ``Regime.evaluated`` says
    which triggers were.

    Parameters
    ----------
    total_gex : float
        Total GEX (any unit, consistent with ``thresholds.total_gex_below``).
    spot : float
        Spot of the underlying.
    flip : float, optional
        Gamma flip level (strike or spot) to compare spot with.
    skew : float, optional
        Current skew (e.g. :func:`measure_skew`'s ``skew``).
    skew_history : sequence, array or Series, optional
        Past skews, for the z-score of ``skew``.
    skew_z : float, optional
        A precomputed skew z-score; takes precedence over ``skew``/``skew_history``.
    thresholds : RegimeThresholds, optional
        Where the triggers fire.

    Returns
    -------
    Regime
        The regime, the triggers that fired and the inputs used.

    Raises
    ------
    ValueError
        When ``total_gex`` or ``spot`` is None, NaN or infinite, or ``spot`` is not
        positive.
    """
    gex_value = _required_number("total_gex", total_gex)
    spot_value = _required_number("spot", spot)
    if spot_value <= 0:
        raise ValueError(f"spot must be positive, not {spot!r}")
    flip_value = _optional_number(flip)
    z_value = _optional_number(skew_z)
    skew_value = _optional_number(skew)
    if z_value is None and skew_value is not None and skew_history is not None:
        z_value = skew_zscore(skew_value, skew_history)

    evaluated = ["total_gex_negative"]
    fired = []
    if gex_value < thresholds.total_gex_below:
        fired.append("total_gex_negative")
    if flip_value is not None and thresholds.use_flip:
        evaluated.append("spot_below_flip")
        if spot_value < flip_value:
            fired.append("spot_below_flip")
    if z_value is not None:
        evaluated.append("skew_crushed")
        if z_value <= thresholds.skew_z_below:
            fired.append("skew_crushed")
    return Regime(
        regime="short_gamma" if fired else "long_gamma",
        triggers=tuple(fired),
        total_gex=gex_value,
        spot=spot_value,
        flip=flip_value,
        skew_z=z_value,
        evaluated=tuple(evaluated),
    )
