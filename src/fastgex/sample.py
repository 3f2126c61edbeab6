"""Seeded generators of realistic option chains.

The generators produce tables in the package's canonical chain schema (see
:data:`CHAIN_SCHEMA`) and are used by ``fastgex demo``, the tests and the benchmarks.
Everything is pure numpy + pyarrow and vectorized over contracts, so a whole synthetic
market (:func:`sample_market`, 1.5M contracts by default) builds in about a second.

Model summary (all choices are deliberate and documented so results are reproducible):

Expiries (:func:`expiration_calendar`)
    Every expiry settles at 16:00 America/New_York (PM settlement; AM settlement is not
    modelled). An expiry is kept only when its settlement is strictly after the snapshot,
    so the same-day (0DTE) expiry is present for a snapshot before 16:00 New York on a
    trading day and absent after the close. Any expiry that falls on a weekend or on an
    NYSE holiday is rolled to the previous trading day (Good Friday third Friday ->
    Thursday). ``kind="index"``: dailies (every trading day from the snapshot date up to
    14 calendar days later, 0DTE included), Friday weeklies up to 62 days, standard
    monthlies (third Friday) up to 1 year, quarterlies (last trading day of Mar/Jun/Sep/Dec)
    up to 2 years and December LEAPS (third Friday) up to ``max_years``.
    ``kind="equity"``: Friday weeklies up to 35 days, monthlies up to 274 days (~9 months)
    and January LEAPS (third Friday) up to 2.5 years. Everything is capped at ``max_years``.

Implied volatility
    ``atm(T) = atm30 * (1 + slope * (f(T) - f(30/365)))`` with ``f(T) = 1 - exp(-T / 0.5)``:
    ``atm30`` is the 30-day at-the-money vol, ``slope = 0.25`` for indices (contango: 0DTE
    about 4% below ``atm30``, 1y about 18% above) and ``0.10`` for single stocks.
    With ``T_eff = max(T, 2/365)`` and standardized moneyness
    ``z = clip(ln(K/S) / (atm(T) * sqrt(T_eff)), -8, 8)``:
    ``iv = clip(atm(T) * (1 - skew(T) * g(z) + curv * z**2 / (1 + z**2 / 16)), 0.03, 3.0)``
    (the curvature term saturates at ``16 * curv``) where ``g(z) = z`` for ``z <= 0``
    (put wing) and ``tanh(z)`` for ``z > 0`` (flattening call wing),
    ``skew(T) = skew_scale * (0.07 + 0.18 * sqrt(T))`` and ``curv = 0.015`` (indices,
    ``skew_scale = 1``) or ``0.03`` (stocks, ``skew_scale = 0.6``). The slope in
    log-moneyness is ``skew(T) / sqrt(T_eff)``: it grows like ``1/sqrt(T)`` for short
    tenors and is capped by the 2-day floor. The call and the put at a strike share one vol.

Strikes
    :func:`sample_chain` grids run from ``S * exp(-max(4 sd, 5%))`` to
    ``S * exp(max(3 sd, 5%))`` with ``sd = atm(T) * sqrt(T)`` (the call wing beyond 3 sd
    carries no value or OI), on multiples of the step: the base step (SPX-like: 5) for
    T <= 0.1y, then 2x, 5x (T > 0.5y) and 10x (T > 1y), but no coarser than about a tenth
    of the grid's range. Every strike has a call and a put.

Open interest
    Mean OI per contract = ``scale * expiry_weight * tenor_factor * (profile + 0.01) *
    round_bonus``; OI is then drawn from a negative binomial (gamma-Poisson mixture, gamma
    shape 1.5), so zeros appear in the wings. ``profile`` is an asymmetric Gaussian in
    ``z_oi = ln(K/S) / (atm30 * sqrt(max(T, 7/365)))``: puts centred at -0.5 with width 1.5
    below / 0.7 above, calls centred at +0.4 with width 1.2 above / 0.7 below (puts heavier
    below spot, calls above). ``expiry_weight``: monthly 3, LEAPS 2.5, quarterly 2,
    weekly 1, daily 0.6 (largest flag wins). ``tenor_factor = sqrt(min(1, (days + 2) / 21))
    / (1 + T / 2)``. ``round_bonus = 1 + 0.5 [K % u == 0] + 0.75 [K % 2u == 0] +
    1.25 [K % 4u == 0]`` with ``u = 10**floor(log10(S)) / 40`` for indices (SPX: 25/50/100)
    and ``/ 20`` for stocks (a $150 stock: 5/10/20).
"""

from __future__ import annotations

import datetime as _dt
import math
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

__all__ = [
    "CHAIN_SCHEMA",
    "DEFAULT_SNAPSHOT",
    "expiration_calendar",
    "sample_chain",
    "sample_market",
]

_NEW_YORK = ZoneInfo("America/New_York")
_UTC = _dt.timezone.utc
_SECONDS_PER_YEAR = 365.0 * 86400.0
_SETTLEMENT_TIME = _dt.time(16, 0)

DEFAULT_SNAPSHOT: _dt.datetime = _dt.datetime(2024, 1, 8, 10, 30, tzinfo=_NEW_YORK).astimezone(_UTC)
"""Monday 2024-01-08 10:30 America/New_York (15:30 UTC), an aware UTC datetime."""

CHAIN_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("underlying", pa.string()),
        pa.field("strike", pa.float64()),
        pa.field("option_type", pa.string()),
        pa.field("expiration", pa.date32()),
        pa.field("open_interest", pa.float64()),
        pa.field("implied_vol", pa.float64()),
        pa.field("spot", pa.float64()),
        pa.field("multiplier", pa.float64()),
        pa.field("snapshot_time", pa.timestamp("us", tz="UTC")),
    ]
)
"""Canonical chain schema produced by :func:`sample_chain`.

:func:`sample_market` returns the same columns with ``underlying`` as
``dictionary<int32, string>`` and ``option_type`` as ``dictionary<int8, string>``.
"""

# Expiry flags (bit mask).
_DAILY = 1
_WEEKLY = 2
_MONTHLY = 4
_QUARTERLY = 8
_LEAPS = 16

_KINDS = ("index", "equity")

# Big index / ETF underlyings of sample_market: name, spot, strike step, ATM 30d vol,
# OI scale (mean OI of an ATM monthly contract before the random draw).
_INDEX_TABLE: tuple[tuple[str, float, float, float, float], ...] = (
    ("SPX", 4700.0, 5.0, 0.14, 1500.0),
    ("SPY", 470.0, 1.0, 0.14, 2500.0),
    ("QQQ", 405.0, 1.0, 0.18, 1000.0),
    ("NDX", 16400.0, 25.0, 0.18, 70.0),
    ("IWM", 195.0, 1.0, 0.21, 1400.0),
    ("RUT", 1950.0, 5.0, 0.21, 70.0),
    ("DIA", 375.0, 1.0, 0.13, 75.0),
    ("XSP", 470.0, 1.0, 0.14, 45.0),
)


# ---------------------------------------------------------------------------
# Calendar helpers
# ---------------------------------------------------------------------------


def _easter(year: int) -> _dt.date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    golden = year % 19
    century, year_in_century = divmod(year, 100)
    leap_century, century_rem = divmod(century, 4)
    correction = (century + 8) // 25
    moon = (century - correction + 1) // 3
    epact = (19 * golden + century - leap_century - moon + 15) % 30
    leap_year, year_rem = divmod(year_in_century, 4)
    weekday = (32 + 2 * century_rem + 2 * leap_year - epact - year_rem) % 7
    offset = (golden + 11 * epact + 22 * weekday) // 451
    month, day = divmod(epact + weekday - 7 * offset + 114, 31)
    return _dt.date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> _dt.date:
    """Return the ``nth`` (1-based) ``weekday`` (Monday=0) of a month."""
    first = _dt.date(year, month, 1)
    shift = (weekday - first.weekday()) % 7
    return first + _dt.timedelta(days=shift + 7 * (nth - 1))


def _last_weekday(year: int, month: int, weekday: int) -> _dt.date:
    """Return the last ``weekday`` (Monday=0) of a month."""
    last = _last_day_of_month(year, month)
    return last - _dt.timedelta(days=(last.weekday() - weekday) % 7)


def _last_day_of_month(year: int, month: int) -> _dt.date:
    """Return the last calendar day of a month."""
    if month == 12:
        return _dt.date(year, 12, 31)
    return _dt.date(year, month + 1, 1) - _dt.timedelta(days=1)


def _observed(day: _dt.date) -> _dt.date:
    """NYSE observance of a fixed-date holiday: Saturday -> Friday, Sunday -> Monday."""
    if day.weekday() == 5:
        return day - _dt.timedelta(days=1)
    if day.weekday() == 6:
        return day + _dt.timedelta(days=1)
    return day


def _nyse_holidays(year: int) -> set[_dt.date]:
    """Regular NYSE full-day holidays of a year (special closures are not modelled)."""
    days = {
        _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _easter(year) - _dt.timedelta(days=2),  # Good Friday
        _last_weekday(year, 5, 0),  # Memorial Day
        _observed(_dt.date(year, 7, 4)),  # Independence Day
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
        _observed(_dt.date(year, 12, 25)),  # Christmas
    }
    new_year = _dt.date(year, 1, 1)
    if new_year.weekday() != 5:  # NYSE does not close on Friday Dec 31 for a Saturday Jan 1
        days.add(_observed(new_year))
    if year >= 2022:
        days.add(_observed(_dt.date(year, 6, 19)))  # Juneteenth
    return days


class _TradingCalendar:
    """Weekend + NYSE-holiday aware day arithmetic over a range of years."""

    def __init__(self, first_year: int, last_year: int) -> None:
        self.holidays: set[_dt.date] = set()
        for year in range(first_year - 1, last_year + 2):
            self.holidays |= _nyse_holidays(year)

    def is_trading_day(self, day: _dt.date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def roll_back(self, day: _dt.date) -> _dt.date:
        """Latest trading day on or before ``day``."""
        while not self.is_trading_day(day):
            day -= _dt.timedelta(days=1)
        return day


def _third_friday(year: int, month: int) -> _dt.date:
    """Third Friday of a month (the standard monthly expiry before holiday rolling)."""
    return _nth_weekday(year, month, 4, 3)


def _months_from(start: _dt.date, count: int) -> list[tuple[int, int]]:
    """``count`` consecutive (year, month) pairs starting at ``start``'s month."""
    out = []
    year, month = start.year, start.month
    for _ in range(count):
        out.append((year, month))
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return out


def _as_utc(snapshot: _dt.datetime | None) -> _dt.datetime:
    """Validate an aware snapshot datetime and convert it to UTC."""
    if snapshot is None:
        return DEFAULT_SNAPSHOT
    if not isinstance(snapshot, _dt.datetime):
        raise TypeError(f"snapshot_time must be a datetime, got {type(snapshot).__name__}")
    if snapshot.tzinfo is None or snapshot.utcoffset() is None:
        raise ValueError("snapshot_time must be timezone-aware (e.g. tzinfo=datetime.timezone.utc)")
    return snapshot.astimezone(_UTC)


def _settlement_epoch(day: _dt.date) -> float:
    """POSIX seconds of the 16:00 America/New_York settlement on ``day``."""
    return _dt.datetime.combine(day, _SETTLEMENT_TIME, tzinfo=_NEW_YORK).timestamp()


def _calendar(
    snapshot: _dt.datetime, max_years: float, kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expiry dates, flag masks and tenors (years, ACT/365 to 16:00 NY settlement)."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if not (max_years > 0 and math.isfinite(max_years)):
        raise ValueError(f"max_years must be positive and finite, got {max_years!r}")
    snap = _as_utc(snapshot)
    start = snap.astimezone(_NEW_YORK).date()
    horizon = start + _dt.timedelta(days=round(max_years * 365.25))
    cal = _TradingCalendar(start.year, horizon.year + 1)
    flags: dict[_dt.date, int] = {}

    def add(day: _dt.date, flag: int, limit_days: float) -> None:
        rolled = cal.roll_back(day)
        if (rolled - start).days <= limit_days and rolled >= start:
            flags[rolled] = flags.get(rolled, 0) | flag

    def fridays(limit_days: int) -> list[_dt.date]:
        first = start + _dt.timedelta(days=(4 - start.weekday()) % 7)
        return [first + _dt.timedelta(days=7 * week) for week in range(limit_days // 7 + 1)]

    months = _months_from(start, int(max_years * 12) + 3)
    if kind == "index":
        for offset in range(15):
            day = start + _dt.timedelta(days=offset)
            if cal.is_trading_day(day):
                flags[day] = flags.get(day, 0) | _DAILY
        for day in fridays(62):
            add(day, _WEEKLY, 62)
        for year, month in months:
            add(_third_friday(year, month), _MONTHLY, 366)
            if month % 3 == 0:
                add(_last_day_of_month(year, month), _QUARTERLY, 731)
            if month == 12:
                add(_third_friday(year, month), _LEAPS, math.inf)
    else:
        for day in fridays(35):
            add(day, _WEEKLY, 35)
        for year, month in months:
            add(_third_friday(year, month), _MONTHLY, 274)
            if month == 1 and (_third_friday(year, month) - start).days > 274:
                add(_third_friday(year, month), _LEAPS, 2.5 * 365.25)

    snap_epoch = snap.timestamp()
    kept = []
    for day in sorted(flags):
        if day > horizon:
            continue
        settle = _settlement_epoch(day)
        if settle > snap_epoch:
            kept.append((day, flags[day], (settle - snap_epoch) / _SECONDS_PER_YEAR))
    dates = np.array([day for day, _, _ in kept], dtype="datetime64[D]")
    masks = np.array([flag for _, flag, _ in kept], dtype=np.uint8)
    tenors = np.array([tenor for _, _, tenor in kept], dtype=np.float64)
    return dates, masks, tenors


def expiration_calendar(
    snapshot: _dt.datetime, *, max_years: float = 3.0, kind: str = "index"
) -> np.ndarray:
    """Return the listed expiries of a US index or equity option class at a snapshot.

    Parameters
    ----------
    snapshot : datetime.datetime
        Timezone-aware snapshot time. Its New York date is the 0DTE candidate.
    max_years : float, default 3.0
        Horizon: no expiry more than ``max_years`` (x 365.25 days) after the snapshot date.
    kind : {"index", "equity"}, default "index"
        ``"index"`` (SPX-like): 0DTE and dailies for ~2 weeks, Friday weeklies to ~2 months,
        third-Friday monthlies to 1 year, end-of-quarter quarterlies to 2 years and
        December LEAPS to ``max_years``. ``"equity"``: weeklies ~5 weeks, monthlies
        ~9 months and January LEAPS to ~2.5 years.

    Returns
    -------
    numpy.ndarray
        Sorted, unique ``datetime64[D]`` expiry dates whose 16:00 America/New_York
        settlement is strictly after ``snapshot`` (so all are on or after its date).
        Expiries falling on a weekend or NYSE holiday are moved to the previous trading day.

    Raises
    ------
    ValueError
        If ``snapshot`` is naive, ``kind`` is unknown or ``max_years`` is not positive.

    Examples
    --------
    >>> expiration_calendar(DEFAULT_SNAPSHOT)[:3]
    array(['2024-01-08', '2024-01-09', '2024-01-10'], dtype='datetime64[D]')
    """
    return _calendar(snapshot, max_years, kind)[0]


# ---------------------------------------------------------------------------
# Vectorized model pieces
# ---------------------------------------------------------------------------


def _nice_ceil(values: np.ndarray | float) -> np.ndarray:
    """Smallest number of the form {1, 2.5, 5} x 10**k that is >= ``values``."""
    vals = np.maximum(np.asarray(values, dtype=np.float64), 1e-4)
    scale = 10.0 ** np.floor(np.log10(vals))
    mantissa = vals / scale
    mult = np.where(
        mantissa <= 1.0 + 1e-9,
        1.0,
        np.where(mantissa <= 2.5 + 1e-9, 2.5, np.where(mantissa <= 5.0 + 1e-9, 5.0, 10.0)),
    )
    return np.round(mult * scale, 6)


def _nice_round(values: np.ndarray | float) -> np.ndarray:
    """Nearest (in log scale) number of the form {1, 2.5, 5} x 10**k."""
    vals = np.maximum(np.asarray(values, dtype=np.float64), 1e-4)
    scale = 10.0 ** np.floor(np.log10(vals))
    mantissa = vals / scale
    # Geometric midpoints of 1-2.5, 2.5-5 and 5-10.
    mult = np.where(
        mantissa < math.sqrt(2.5),
        1.0,
        np.where(mantissa < math.sqrt(12.5), 2.5, np.where(mantissa < math.sqrt(50.0), 5.0, 10.0)),
    )
    return np.round(mult * scale, 6)


def _grid_for_count(
    low: np.ndarray, high: np.ndarray, n_strikes: np.ndarray, min_step: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Round step and first strike so ``n_strikes`` strikes span about [low, high]."""
    step = np.maximum(_nice_round((high - low) / np.maximum(n_strikes - 1, 1)), min_step)
    extra = np.maximum(n_strikes - 1 - (high - low) / step, 0.0)  # spread any surplus evenly
    first = np.maximum(np.round(low / step - extra / 2.0), 1.0) * step
    return step, first


def _atm_term_structure(atm30: np.ndarray, tenor: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """ATM vol at tenor ``tenor`` given the 30-day ATM vol (see module docstring)."""
    ref = 1.0 - math.exp(-(30.0 / 365.0) / 0.5)
    return atm30 * (1.0 + slope * ((1.0 - np.exp(-tenor / 0.5)) - ref))


def _expiry_weight(masks: np.ndarray) -> np.ndarray:
    """OI weight of an expiry from its flag mask (largest applicable weight)."""
    weight = np.full(masks.shape, 0.6)
    for flag, value in ((_WEEKLY, 1.0), (_QUARTERLY, 2.0), (_LEAPS, 2.5), (_MONTHLY, 3.0)):
        weight = np.where(masks & flag, np.maximum(weight, value), weight)
    return weight


def _strike_widths(atm: np.ndarray, tenors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-moneyness half-widths of a strike grid: 4 sd below spot, 3 sd above, >= 5%."""
    deviation = atm * np.sqrt(tenors)
    return np.maximum(4.0 * deviation, 0.05), np.maximum(3.0 * deviation, 0.05)


def _tenor_step_factor(tenor: np.ndarray) -> np.ndarray:
    """Strike-step multiplier for longer expiries (1, 2, 5, 10)."""
    return np.select([tenor <= 0.1, tenor <= 0.5, tenor <= 1.0], [1.0, 2.0, 5.0], 10.0)


class _Pairs:
    """Column arrays over (underlying, expiry) pairs: everything the row builder needs."""

    def __init__(self, **columns: np.ndarray) -> None:
        self.columns = dict(columns)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        self.columns[name] = value

    @staticmethod
    def concat(parts: list[_Pairs]) -> _Pairs:
        names = parts[0].columns.keys()
        return _Pairs(**{name: np.concatenate([p[name] for p in parts]) for name in names})


def _natural_pairs(
    code: int,
    spot: float,
    dates: np.ndarray,
    masks: np.ndarray,
    tenors: np.ndarray,
    *,
    atm30: float,
    base_step: float,
    kind: str,
    oi_scale: float,
) -> _Pairs:
    """Pairs of one underlying; strikes from -max(4 sd, 5%) to +max(3 sd, 5%) in log K/S."""
    count = len(dates)
    tenor_slope = 0.25 if kind == "index" else 0.10
    atm = _atm_term_structure(np.full(count, atm30), tenors, np.full(count, tenor_slope))
    down, up = _strike_widths(atm, tenors)
    # Coarser steps for long tenors, but never so coarse that the grid has < ~10 strikes.
    price_range = spot * (np.exp(up) - np.exp(-down))
    coarse = np.minimum(base_step * _tenor_step_factor(tenors), _nice_round(price_range / 10.0))
    step = np.maximum(base_step, coarse)
    low = np.maximum(np.ceil(spot * np.exp(-down) / step - 1e-9), 1.0)
    high = np.floor(spot * np.exp(up) / step + 1e-9)
    n_strikes = (high - low + 1).astype(np.int64)
    # Guarantee a handful of strikes around the money even for coarse steps / tiny spots.
    few = n_strikes < 5
    low = np.where(few, np.maximum(np.round(spot / step) - 2.0, 1.0), low)
    n_strikes = np.where(few, 5, n_strikes)
    return _make_pairs(
        code=np.full(count, code, dtype=np.int32),
        spot=np.full(count, spot),
        dates=dates,
        masks=masks,
        tenors=tenors,
        atm30=np.full(count, atm30),
        atm=atm,
        first=low * step,
        step=step,
        n_strikes=n_strikes,
        is_index=np.full(count, kind == "index"),
        oi_scale=np.full(count, oi_scale),
    )


def _make_pairs(
    *,
    code: np.ndarray,
    spot: np.ndarray,
    dates: np.ndarray,
    masks: np.ndarray,
    tenors: np.ndarray,
    atm30: np.ndarray,
    atm: np.ndarray,
    first: np.ndarray,
    step: np.ndarray,
    n_strikes: np.ndarray,
    is_index: np.ndarray,
    oi_scale: np.ndarray,
) -> _Pairs:
    """Assemble pair columns, deriving smile / OI parameters from the kind."""
    days = (dates.astype("datetime64[D]").astype(np.int64)).astype(np.int32)
    skew_scale = np.where(is_index, 1.0, 0.6)
    curvature = np.where(is_index, 0.015, 0.03)
    round_unit = 10.0 ** np.floor(np.log10(spot)) / np.where(is_index, 40.0, 20.0)
    tenor_factor = np.sqrt(np.minimum(1.0, (tenors * 365.0 + 2.0) / 21.0)) / (1.0 + tenors / 2.0)
    return _Pairs(
        code=code.astype(np.int32),
        spot=spot.astype(np.float64),
        days=days,
        tenor=tenors.astype(np.float64),
        atm30=atm30.astype(np.float64),
        atm=atm.astype(np.float64),
        first=first.astype(np.float64),
        step=step.astype(np.float64),
        n_strikes=n_strikes.astype(np.int64),
        skew=skew_scale * (0.07 + 0.18 * np.sqrt(tenors)),
        curvature=curvature,
        round_unit=round_unit,
        oi_mean=oi_scale * _expiry_weight(masks) * tenor_factor,
    )


def _smile(
    log_moneyness: np.ndarray,
    atm: np.ndarray,
    tenor: np.ndarray,
    skew: np.ndarray,
    curvature: np.ndarray,
) -> np.ndarray:
    """Implied vol from the documented smile (vectorized; arrays broadcast)."""
    root_tenor = np.sqrt(np.maximum(tenor, 2.0 / 365.0))
    zscore = np.clip(log_moneyness / (atm * root_tenor), -8.0, 8.0)
    wing = np.where(zscore <= 0.0, zscore, np.tanh(zscore))
    squared = zscore * zscore
    vol = atm * (1.0 - skew * wing + curvature * squared / (1.0 + squared / 16.0))
    return np.clip(vol, 0.03, 3.0)


def _round_bonus(strike: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """OI multiplier for strikes on round numbers (multiples of unit, 2 unit, 4 unit)."""
    bonus = np.ones_like(strike)
    for mult, extra in ((1.0, 0.5), (2.0, 0.75), (4.0, 1.25)):
        ratio = strike / (unit * mult)
        bonus += extra * (np.abs(ratio - np.round(ratio)) < 1e-6)
    return bonus


def _build_rows(pairs: _Pairs, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Expand pairs to strikes and rows (call then put at each strike) as numpy columns."""
    n_strikes = pairs["n_strikes"]
    total_strikes = int(n_strikes.sum())
    n_pairs = len(n_strikes)
    pair_of = np.repeat(np.arange(n_pairs, dtype=np.int32), n_strikes)
    offsets = np.cumsum(n_strikes) - n_strikes
    index_in_pair = np.arange(total_strikes, dtype=np.int64) - np.repeat(offsets, n_strikes)

    step = pairs["step"][pair_of]
    strike = np.round(pairs["first"][pair_of] + step * index_in_pair, 6)
    del step, index_in_pair
    log_moneyness = np.log(strike) - np.log(pairs["spot"])[pair_of]
    tenor = pairs["tenor"][pair_of]
    vol = _smile(
        log_moneyness,
        pairs["atm"][pair_of],
        tenor,
        pairs["skew"][pair_of],
        pairs["curvature"][pair_of],
    )

    # Open-interest profile in z_oi = ln(K/S) / (atm30 * sqrt(max(T, 7 days))).
    oi_root = pairs["atm30"] * np.sqrt(np.maximum(pairs["tenor"], 7.0 / 365.0))
    z_oi = log_moneyness / oi_root[pair_of]
    del tenor, log_moneyness
    base = pairs["oi_mean"][pair_of] * _round_bonus(strike, pairs["round_unit"][pair_of])
    put_dev = (z_oi + 0.5) / np.where(z_oi < -0.5, 1.5, 0.7)
    call_dev = (z_oi - 0.4) / np.where(z_oi > 0.4, 1.2, 0.7)
    del z_oi
    mean = np.empty(2 * total_strikes)
    mean[0::2] = base * (np.exp(-0.5 * call_dev * call_dev) + 0.01)
    mean[1::2] = base * (np.exp(-0.5 * put_dev * put_dev) + 0.01)
    del base, put_dev, call_dev
    shape = 1.5
    open_interest = rng.poisson(rng.gamma(shape, mean / shape)).astype(np.float64)
    del mean

    code_per_strike = pairs["code"][pair_of]
    days_per_strike = pairs["days"][pair_of]
    spot_per_strike = pairs["spot"][pair_of]
    return {
        "code": np.repeat(code_per_strike, 2),
        "strike": np.repeat(strike, 2),
        "is_put": np.tile(np.array([0, 1], dtype=np.int8), total_strikes),
        "days": np.repeat(days_per_strike, 2),
        "open_interest": open_interest,
        "implied_vol": np.repeat(vol, 2),
        "spot": np.repeat(spot_per_strike, 2),
    }


def _to_table(
    rows: dict[str, np.ndarray],
    names: list[str],
    multiplier: float,
    snapshot: _dt.datetime,
    *,
    dictionary: bool,
) -> pa.Table:
    """Arrow table in the canonical column order."""
    n_rows = len(rows["strike"])
    underlying = pa.DictionaryArray.from_arrays(
        pa.array(rows["code"], type=pa.int32()), pa.array(names, type=pa.string())
    )
    option_type = pa.DictionaryArray.from_arrays(
        pa.array(rows["is_put"], type=pa.int8()), pa.array(["C", "P"], type=pa.string())
    )
    snapshot_us = (snapshot - _dt.datetime(1970, 1, 1, tzinfo=_UTC)) // _dt.timedelta(
        microseconds=1
    )
    snapshot_col = pa.array(
        np.full(n_rows, snapshot_us, dtype=np.int64), type=pa.timestamp("us", tz="UTC")
    )
    if not dictionary:
        underlying = underlying.dictionary_decode()
        option_type = option_type.dictionary_decode()
    columns = [
        underlying,
        pa.array(rows["strike"], type=pa.float64()),
        option_type,
        pa.array(rows["days"], type=pa.date32()),
        pa.array(rows["open_interest"], type=pa.float64()),
        pa.array(rows["implied_vol"], type=pa.float64()),
        pa.array(rows["spot"], type=pa.float64()),
        pa.array(np.full(n_rows, float(multiplier)), type=pa.float64()),
        snapshot_col,
    ]
    return pa.Table.from_arrays(columns, names=CHAIN_SCHEMA.names)


# ---------------------------------------------------------------------------
# Public generators
# ---------------------------------------------------------------------------


def sample_chain(
    underlying: str = "SPX",
    spot: float = 4700.0,
    *,
    snapshot_time: _dt.datetime | None = None,
    seed: int = 0,
    atm_vol: float = 0.14,
    strike_step: float | None = None,
    multiplier: float = 100.0,
    kind: str = "index",
) -> pa.Table:
    """Seeded, realistic option chain of one underlying.

    Parameters
    ----------
    underlying : str, default "SPX"
        Name written to the ``underlying`` column.
    spot : float, default 4700.0
        Spot price of the underlying (> 0).
    snapshot_time : datetime.datetime, optional
        Timezone-aware snapshot time; :data:`DEFAULT_SNAPSHOT` when omitted.
    seed : int, default 0
        Seed of the open-interest draws (``numpy.random.default_rng``).
    atm_vol : float, default 0.14
        30-day at-the-money implied vol (fraction); the term structure and smile are
        built around it (see the module docstring).
    strike_step : float, optional
        Strike spacing of short-dated expiries; longer expiries use 2x (T > 0.1y),
        5x (T > 0.5y) and 10x (T > 1y), but never coarser than about a tenth of the grid's
        range. Default: the smallest of {1, 2.5, 5} x 10**k at least ``spot / 1000``
        (index, SPX -> 5) or ``spot / 100`` (equity, at least 0.5; $185 -> 2.5).
    multiplier : float, default 100.0
        Contract multiplier.
    kind : {"index", "equity"}, default "index"
        Listing style (expiry calendar, skew, round-strike spacing).

    Returns
    -------
    pyarrow.Table
        Rows sorted by expiration, strike, then call before put, in :data:`CHAIN_SCHEMA`.
        Every strike has both a call and a put; ``open_interest`` holds whole numbers.

    Raises
    ------
    ValueError
        On a non-positive ``spot``, ``atm_vol``, ``strike_step`` or ``multiplier``, an
        unknown ``kind`` or a naive ``snapshot_time``.

    Examples
    --------
    >>> table = sample_chain("SPX", 4700.0, seed=1)
    >>> table.column_names[:3]
    ['underlying', 'strike', 'option_type']
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    for label, value in (("spot", spot), ("atm_vol", atm_vol), ("multiplier", multiplier)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{label} must be positive and finite, got {value!r}")
    if strike_step is None:
        if kind == "index":
            base_step = float(_nice_ceil(spot / 1000.0))
        else:
            base_step = max(0.5, float(_nice_ceil(spot / 100.0)))
    elif strike_step > 0 and math.isfinite(strike_step):
        base_step = float(strike_step)
    else:
        raise ValueError(f"strike_step must be positive and finite, got {strike_step!r}")
    snap = _as_utc(snapshot_time)
    dates, masks, tenors = _calendar(snap, 3.0, kind)
    oi_scale = 1500.0 if kind == "index" else 2000.0
    pairs = _natural_pairs(
        0,
        float(spot),
        dates,
        masks,
        tenors,
        atm30=float(atm_vol),
        base_step=base_step,
        kind=kind,
        oi_scale=oi_scale,
    )
    rows = _build_rows(pairs, np.random.default_rng(seed))
    return _to_table(rows, [underlying], multiplier, snap, dictionary=False)


def _fit_to_target(pairs: _Pairs, target_strikes: int, min_strikes: int = 1) -> None:
    """Add or trim strikes (symmetrically in each pair) so the strike total is exact."""
    n_strikes = pairs["n_strikes"].copy()
    diff = target_strikes - int(n_strikes.sum())
    if diff == 0:
        return
    if diff > 0:
        capacity = n_strikes.astype(np.float64)
    else:
        capacity = np.maximum(n_strikes - min_strikes, 0).astype(np.float64)
        if capacity.sum() < -diff:
            raise ValueError("n_contracts is too small for this many underlyings")
    share = np.floor(abs(diff) * capacity / capacity.sum()).astype(np.int64)
    share = np.minimum(share, capacity.astype(np.int64)) if diff < 0 else share
    remainder = abs(diff) - int(share.sum())
    if remainder:
        room = capacity - share
        order = np.argsort(-room, kind="stable")
        share[order[:remainder]] += 1
    change = share if diff > 0 else -share
    step = pairs["step"]
    first = pairs["first"] - np.floor_divide(change, 2) * step
    pairs["first"] = np.maximum(first, step)
    pairs["n_strikes"] = n_strikes + change


def sample_market(
    n_contracts: int = 1_500_000,
    *,
    n_underlyings: int | None = None,
    snapshot_time: _dt.datetime | None = None,
    seed: int = 0,
) -> pa.Table:
    """Seeded synthetic whole market: big index/ETF chains plus thousands of stocks.

    Parameters
    ----------
    n_contracts : int, default 1_500_000
        Target number of rows (contracts); the result has exactly this many rows
        (rounded down to an even number).
    n_underlyings : int, optional
        Number of underlyings. Default ``max(10, round(n_contracts / 375))`` (4000 for
        1.5M contracts). The first ``min(8, max(1, n_underlyings // 10))`` are the index /
        ETF names SPX, SPY, QQQ, NDX, IWM, RUT, DIA, XSP; the rest are single stocks named
        ``STK0001``, ``STK0002``, ... in decreasing size.
    snapshot_time : datetime.datetime, optional
        Timezone-aware snapshot time; :data:`DEFAULT_SNAPSHOT` when omitted.
    seed : int, default 0
        Seed of every random draw; the same seed gives the same bytes.

    Returns
    -------
    pyarrow.Table
        :data:`CHAIN_SCHEMA` columns, except ``underlying`` is ``dictionary<int32, string>``
        and ``option_type`` is ``dictionary<int8, string>``. Rows are grouped by underlying,
        then expiration, strike, call before put.

    Raises
    ------
    ValueError
        If ``n_contracts`` < 200, ``n_underlyings`` < 1 or
        ``n_underlyings > n_contracts // 20``, or ``snapshot_time`` is naive.

    Notes
    -----
    Indices keep their natural grids (as :func:`sample_chain`, OI scaled so SPX and SPY
    hold about 18M contracts each), coarsened if they would exceed 12% of the rows (in
    small markets only their heaviest, nearest expiries are kept).
    Stock ``r`` (1 = largest) has a lognormal spot (median ``40 * exp(1.2 * (1 - f)**4)``
    with ``f`` the rank fraction, sd 0.8 in log), a 30-day ATM vol
    ``(0.22 + 0.2 * f) * lognormal(0.3)`` clipped to [0.1, 1.5], a row budget proportional
    to ``(r + 50) ** -0.8`` (about 4000 rows for the largest, 120 for the smallest at the
    default size) and an OI scale ``4000 * r ** -0.7 * lognormal(0.3)`` (Zipf-like,
    megacaps heavier; about 300M contracts of OI in the default market). The top 10% of
    stocks list weeklies, monthlies and January LEAPS, the others monthlies and LEAPS;
    small budgets keep only the nearest monthlies (about 8 strikes per expiry at least).
    Within a stock, strikes are shared out across expiries in proportion to
    ``(T + 0.05) ** 0.3`` and each grid spans 4 sd below to 3 sd above spot (at least 5%)
    with a round step (``{1, 2.5, 5} x 10**k``, at least ``max(0.5, spot / 200)``); a
    surplus of strikes widens the grid evenly. Finally strikes are added or trimmed at
    the wings, in proportion to each grid's size, to hit the row target exactly.
    """
    n_contracts = int(n_contracts)
    if n_contracts < 200:
        raise ValueError(f"n_contracts must be >= 200, got {n_contracts}")
    if n_underlyings is None:
        n_underlyings = max(10, round(n_contracts / 375))
    n_underlyings = int(n_underlyings)
    if n_underlyings < 1 or n_underlyings > n_contracts // 20:
        raise ValueError(
            f"n_underlyings must be in [1, n_contracts // 20 = {n_contracts // 20}], "
            f"got {n_underlyings}"
        )
    snap = _as_utc(snapshot_time)
    rng = np.random.default_rng(seed)
    target_strikes = n_contracts // 2

    n_index = min(len(_INDEX_TABLE), max(1, n_underlyings // 10))
    n_stock = n_underlyings - n_index
    names = [row[0] for row in _INDEX_TABLE[:n_index]]

    # --- index / ETF chains -------------------------------------------------
    idx_dates, idx_masks, idx_tenors = _calendar(snap, 3.0, "index")
    index_cap = target_strikes if n_stock == 0 else int(0.12 * target_strikes)
    keep_count = int(np.clip(index_cap // (10 * n_index), 1, len(idx_dates)))
    if keep_count < len(idx_dates):  # small markets: keep the heaviest, nearest expiries
        order = np.lexsort((idx_tenors, -_expiry_weight(idx_masks)))
        keep = np.sort(order[:keep_count])
        idx_dates, idx_masks, idx_tenors = idx_dates[keep], idx_masks[keep], idx_tenors[keep]
    index_parts = [
        _natural_pairs(
            code,
            spot,
            idx_dates,
            idx_masks,
            idx_tenors,
            atm30=vol,
            base_step=step,
            kind="index",
            oi_scale=scale,
        )
        for code, (_, spot, step, vol, scale) in enumerate(_INDEX_TABLE[:n_index])
    ]
    index_pairs = _Pairs.concat(index_parts)
    index_total = int(index_pairs["n_strikes"].sum())
    if index_total > index_cap:
        old_n = index_pairs["n_strikes"]
        new_n = np.maximum(np.floor(old_n * (index_cap / index_total)), 3).astype(np.int64)
        low = index_pairs["first"]
        high = low + (old_n - 1) * index_pairs["step"]
        index_pairs["step"], index_pairs["first"] = _grid_for_count(low, high, new_n, 0.05)
        index_pairs["n_strikes"] = new_n
    parts = [index_pairs]

    # --- single stocks -----------------------------------------------------------
    if n_stock > 0:
        width = max(4, len(str(n_stock)))
        names.extend(f"STK{rank:0{width}d}" for rank in range(1, n_stock + 1))
        rank = np.arange(1, n_stock + 1, dtype=np.float64)
        rank_fraction = (rank - 1.0) / max(n_stock - 1, 1)
        log_spot = math.log(40.0) + 1.2 * (1.0 - rank_fraction) ** 4
        spot = np.round(np.clip(np.exp(log_spot + rng.normal(0.0, 0.8, n_stock)), 1.0, 3000.0), 2)
        atm30 = np.clip(
            (0.22 + 0.2 * rank_fraction) * np.exp(rng.normal(0.0, 0.3, n_stock)), 0.1, 1.5
        )
        oi_scale = 4000.0 * rank**-0.7 * np.exp(rng.normal(0.0, 0.3, n_stock))
        stock_budget = max(target_strikes - int(index_pairs["n_strikes"].sum()), n_stock)
        share = (rank + 50.0) ** -0.8
        budget = stock_budget * share / share.sum()  # strikes (half-rows) per stock

        eq_dates, eq_masks, eq_tenors = _calendar(snap, 3.0, "equity")
        is_monthly = (eq_masks & (_MONTHLY | _LEAPS)) > 0
        # Priority: monthlies/LEAPS by date first, then weeklies by date.
        priority = np.empty(len(eq_dates), dtype=np.int64)
        order = np.concatenate([np.flatnonzero(is_monthly), np.flatnonzero(~is_monthly)])
        priority[order] = np.arange(len(order))
        top_tier = rank_fraction < 0.10
        listed = np.where(top_tier, len(eq_dates), int(is_monthly.sum()))
        allowed = np.clip(budget // 8, 1, listed).astype(np.int64)
        mask = (priority[None, :] < allowed[:, None]) & (top_tier[:, None] | is_monthly[None, :])
        stock_of, expiry_of = np.nonzero(mask)

        tenors = eq_tenors[expiry_of]
        expiry_share = (tenors + 0.05) ** 0.3
        share_sum = np.bincount(stock_of, weights=expiry_share, minlength=n_stock)
        n_strikes = np.maximum(
            np.round(budget[stock_of] * expiry_share / share_sum[stock_of]), 2
        ).astype(np.int64)
        pair_spot = spot[stock_of]
        pair_atm30 = atm30[stock_of]
        atm = _atm_term_structure(pair_atm30, tenors, np.full(len(tenors), 0.10))
        down, up = _strike_widths(atm, tenors)
        min_step = np.maximum(_nice_round(pair_spot / 200.0), 0.5)
        step, first = _grid_for_count(
            pair_spot * np.exp(-down), pair_spot * np.exp(up), n_strikes, min_step
        )
        parts.append(
            _make_pairs(
                code=(stock_of + n_index).astype(np.int32),
                spot=pair_spot,
                dates=eq_dates[expiry_of],
                masks=eq_masks[expiry_of],
                tenors=tenors,
                atm30=pair_atm30,
                atm=atm,
                first=first,
                step=step,
                n_strikes=n_strikes,
                is_index=np.zeros(len(tenors), dtype=bool),
                oi_scale=oi_scale[stock_of],
            )
        )

    pairs = _Pairs.concat(parts) if len(parts) > 1 else parts[0]
    _fit_to_target(pairs, target_strikes)
    rows = _build_rows(pairs, rng)
    return _to_table(rows, names, 100.0, snap, dictionary=True)
