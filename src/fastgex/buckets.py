"""Expiry buckets and the US options exchange calendar.

The GEX engine tags every *distinct* expiry once (a chain holds at most a few hundred),
so everything here is plain Python on :class:`datetime.date` values: clarity beats speed.

Dates are exchange-local calendar dates. An expiry's date is the local date of its
settlement (for US index and equity options, the New York date); the snapshot date is the
local date of the snapshot in the same zone. Converting instants to local dates is the
caller's job: this module never looks at times of day or time zones.

*Calendar.* :func:`nyse_holidays` computes the NYSE / US options exchanges' full-day
closures by rule, plus a small table of unscheduled closures. The rules are those in force today
(Juneteenth from 2022, Martin Luther King Jr. Day from 1998); years before 1998 use the
same rules and may miss historical closures (Election Days until 1980, the 1968
paperwork-crisis Wednesdays, ...). Early closes (half days) are trading days.

*Buckets.* The default rules, first match wins (``d`` = calendar days from snapshot to expiry):

=============== ===========================================================================
``expired``     ``d < 0`` (not one of the spec's names; the engine drops these rows)
``0dte``        ``d == 0``
``long_dated``  ``d > LONG_DATED_DAYS`` (365)
``quarterly``   a standard monthly expiry in March, June, September or December
``monthly``     any other standard monthly expiry
``weekly``      everything else: Monday-Friday dailies and weeklies, end-of-month and
                quarter-end expiries
=============== ===========================================================================

These are US listed-options rules (third-Friday monthlies). For products with other
cycles (Deribit's last-Friday monthlies, futures options) pass day edges or a callable.
"""

from __future__ import annotations

import datetime
import functools
import math
import operator
import types
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "DEFAULT_BUCKETS",
    "EXPIRED",
    "LONG_DATED_DAYS",
    "SPECIAL_CLOSURES",
    "VIEWS",
    "BucketSpec",
    "bucket_names",
    "easter_sunday",
    "expiry_buckets",
    "is_business_day",
    "is_standard_monthly",
    "next_expiry",
    "next_monthly",
    "nyse_holidays",
    "nyse_holidays_between",
    "previous_business_day",
    "standard_monthly_expiry",
    "third_friday",
    "view_excludes",
]

_Date = datetime.date
_ONE_DAY = datetime.timedelta(days=1)
_MONDAY, _THURSDAY, _FRIDAY, _SATURDAY, _SUNDAY = 0, 3, 4, 5, 6

#: Names the default bucket rules can produce, in display order (short-dated first).
DEFAULT_BUCKETS: tuple[str, ...] = ("0dte", "weekly", "monthly", "quarterly", "long_dated")

#: Name given to expiries before the snapshot date, whatever the bucket spec.
EXPIRED = "expired"

#: Expiries *strictly* more than this many calendar days after the snapshot are long-dated.
LONG_DATED_DAYS = 365

#: Views public tools offer: every expiry, or all but the nearest (monthly) one.
VIEWS: tuple[str, ...] = ("all", "ex_next_expiry", "ex_next_monthly")

#: A bucket specification: ``"default"``, ``{name: upper_edge_days}`` (or a sequence of
#: ``(name, upper_edge_days)`` pairs), or ``f(expiry_date, snapshot_date) -> str | None``.
BucketSpec = (
    str
    | Mapping[str, float]
    | Sequence[tuple[str, float]]
    | Callable[[datetime.date, datetime.date], str | None]
)

#: Unscheduled full-day closures (NYSE and the options exchanges closed together).
#: Read-only, as :func:`nyse_holidays` caches its results.
SPECIAL_CLOSURES: Mapping[datetime.date, str] = types.MappingProxyType(
    {
        _Date(1985, 9, 27): "Hurricane Gloria",
        _Date(1994, 4, 27): "National day of mourning, President Nixon",
        _Date(2001, 9, 11): "September 11 attacks",
        _Date(2001, 9, 12): "September 11 attacks",
        _Date(2001, 9, 13): "September 11 attacks",
        _Date(2001, 9, 14): "September 11 attacks",
        _Date(2004, 6, 11): "National day of mourning, President Reagan",
        _Date(2007, 1, 2): "National day of mourning, President Ford",
        _Date(2012, 10, 29): "Hurricane Sandy",
        _Date(2012, 10, 30): "Hurricane Sandy",
        _Date(2018, 12, 5): "National day of mourning, President George H. W. Bush",
        _Date(2025, 1, 9): "National day of mourning, President Carter",
    }
)


# --------------------------------------------------------------------------- calendar


def easter_sunday(year: int) -> datetime.date:
    """Gregorian Easter Sunday (anonymous Gregorian / Meeus-Jones-Butcher algorithm).

    Parameters
    ----------
    year : int
        Gregorian year (exact for every year from 1583).

    Returns
    -------
    datetime.date
        Easter Sunday of ``year``.
    """
    golden = year % 19  # position in the 19-year Metonic cycle
    century, year_of_century = divmod(year, 100)
    leap_centuries, century_rest = divmod(century, 4)
    moon_correction = (century + 8) // 25
    moon_shift = (century - moon_correction + 1) // 3
    epact = (19 * golden + century - leap_centuries - moon_shift + 15) % 30
    leap_years, year_rest = divmod(year_of_century, 4)
    weekday_shift = (32 + 2 * century_rest + 2 * leap_years - epact - year_rest) % 7
    late_correction = (golden + 11 * epact + 22 * weekday_shift) // 451
    month, day = divmod(epact + weekday_shift - 7 * late_correction + 114, 31)
    return _Date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> datetime.date:
    """The ``nth`` (1-based) ``weekday`` (Monday = 0) of a month."""
    first = _Date(year, month, 1)
    return first + datetime.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))


def _last_weekday(year: int, month: int, weekday: int) -> datetime.date:
    """The last ``weekday`` (Monday = 0) of a month."""
    next_month = _Date(year + month // 12, month % 12 + 1, 1)
    last = next_month - _ONE_DAY
    return last - datetime.timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: datetime.date) -> datetime.date:
    """Weekend fixed-date holiday rule: Saturday -> Friday, Sunday -> Monday."""
    if day.weekday() == _SATURDAY:
        return day - _ONE_DAY
    if day.weekday() == _SUNDAY:
        return day + _ONE_DAY
    return day


@functools.lru_cache(maxsize=256)
def nyse_holidays(year: int) -> frozenset[datetime.date]:
    """Full-day closures of the NYSE and US options exchanges in ``year``.

    Rules: New Year's Day (Sunday -> Monday; on a Saturday there is no weekday holiday, as
    NYSE does not close on the Friday, December 31, before it), Martin Luther King Jr. Day
    (third Monday of January, from 1998), Washington's Birthday (third Monday of February),
    Good Friday (two days before Gregorian Easter), Memorial Day (last Monday of May),
    Juneteenth (June 19, from 2022), Independence Day, Labor Day (first Monday of
    September), Thanksgiving (fourth Thursday of November) and Christmas. Juneteenth,
    Independence Day and Christmas move Saturday -> Friday and Sunday -> Monday. The
    unscheduled closures in :data:`SPECIAL_CLOSURES` are added.

    Parameters
    ----------
    year : int
        Calendar year. Exact from 1998 as far as the rules stay unchanged; earlier years
        use today's rules (see the module notes).

    Returns
    -------
    frozenset of datetime.date
        Closure dates, all on weekdays. Cached per year.
    """
    year = operator.index(year)
    days = {
        _nth_weekday(year, 2, _MONDAY, 3),  # Washington's Birthday
        easter_sunday(year) - 2 * _ONE_DAY,  # Good Friday
        _last_weekday(year, 5, _MONDAY),  # Memorial Day
        _observed(_Date(year, 7, 4)),  # Independence Day
        _nth_weekday(year, 9, _MONDAY, 1),  # Labor Day
        _nth_weekday(year, 11, _THURSDAY, 4),  # Thanksgiving
        _observed(_Date(year, 12, 25)),  # Christmas
    }
    new_year = _Date(year, 1, 1)
    if new_year.weekday() != _SATURDAY:
        days.add(_observed(new_year))
    if year >= 1998:
        days.add(_nth_weekday(year, 1, _MONDAY, 3))  # Martin Luther King Jr. Day
    if year >= 2022:
        days.add(_observed(_Date(year, 6, 19)))  # Juneteenth
    days.update(day for day in SPECIAL_CLOSURES if day.year == year)
    return frozenset(days)


def nyse_holidays_between(first_year: int, last_year: int) -> np.ndarray:
    """Sorted closures of ``first_year..last_year`` as ``datetime64[D]``.

    Ready for the ``holidays=`` argument of :func:`numpy.busday_count` and friends.

    Parameters
    ----------
    first_year, last_year : int
        Inclusive range of calendar years.

    Returns
    -------
    numpy.ndarray
        ``datetime64[D]`` closure dates, ascending.
    """
    days = sorted(day for year in range(first_year, last_year + 1) for day in nyse_holidays(year))
    return np.array(days, dtype="datetime64[D]")


def is_business_day(day: datetime.date) -> bool:
    """Whether the exchanges are open (a weekday that is not a full-day closure).

    Parameters
    ----------
    day : datetime.date
        Exchange-local date; a ``datetime`` counts by its own date field.

    Returns
    -------
    bool
        True on trading days, half days included.
    """
    day = _require_date(day)
    return day.weekday() < _SATURDAY and day not in nyse_holidays(day.year)


def previous_business_day(day: datetime.date) -> datetime.date:
    """The last business day strictly before ``day``.

    Parameters
    ----------
    day : datetime.date
        Exchange-local date.

    Returns
    -------
    datetime.date
        The nearest earlier business day (``day`` itself is never returned).
    """
    day = _require_date(day) - _ONE_DAY
    while not is_business_day(day):
        day -= _ONE_DAY
    return day


def third_friday(year: int, month: int) -> datetime.date:
    """The third Friday of a month (a day from the 15th to the 21st).

    Parameters
    ----------
    year, month : int
        Calendar year and month (1-12).

    Returns
    -------
    datetime.date
        The third Friday, holiday or not.
    """
    return _nth_weekday(operator.index(year), operator.index(month), _FRIDAY, 3)


def standard_monthly_expiry(year: int, month: int) -> datetime.date:
    """The standard monthly expiration date (OCC rules since February 2015).

    The third Friday, or the business day before it when it is an exchange holiday
    (April 2025: Good Friday 2025-04-18 -> Thursday 2025-04-17; June 2026: Juneteenth
    2026-06-19 -> Thursday 2026-06-18).

    Parameters
    ----------
    year, month : int
        Calendar year and month (1-12).

    Returns
    -------
    datetime.date
        The expiration date, always a business day.
    """
    friday = third_friday(year, month)
    return friday if is_business_day(friday) else previous_business_day(friday)


def is_standard_monthly(day: datetime.date) -> bool:
    """Whether ``day`` is a standard monthly expiration date.

    True for :func:`standard_monthly_expiry` of the day's month, and also for the Saturday
    after the third Friday: until February 2015 OCC listed standard options with the
    Saturday as the expiration date (trading ended on the Friday, or on the Thursday
    before a Good Friday), and vendors still carry those dates in historical chains.
    Modern listings never expire on a Saturday, so accepting it in every year is safe.

    Parameters
    ----------
    day : datetime.date
        Exchange-local expiration date.

    Returns
    -------
    bool
        True for the standard monthly expiry (or its pre-2015 Saturday form).
    """
    day = _require_date(day)
    if day.weekday() == _SATURDAY:
        return day - _ONE_DAY == third_friday(day.year, day.month)
    return day == standard_monthly_expiry(day.year, day.month)


# --------------------------------------------------------------------------- buckets


def _default_bucket(expiry: datetime.date, snapshot: datetime.date) -> str:
    """Default rules for an expiry on or after the snapshot date (first match wins)."""
    days = (expiry - snapshot).days
    if days == 0:
        return "0dte"
    if days > LONG_DATED_DAYS:
        return "long_dated"
    if is_standard_monthly(expiry):
        return "quarterly" if expiry.month % 3 == 0 else "monthly"
    return "weekly"


def _parse_edges(
    spec: Mapping[str, float] | Sequence[tuple[str, float]],
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Validate user edges; return ``(names, edges)`` or raise ValueError."""
    pairs = list(spec.items()) if isinstance(spec, Mapping) else list(spec)
    if not pairs:
        raise ValueError("bucket edges must name at least one bucket")
    names: list[str] = []
    edges: list[float] = []
    for pair in pairs:
        try:
            name, edge = pair
        except (TypeError, ValueError):
            raise ValueError(
                f"bucket edges must be (name, upper_edge_days) pairs, not {pair!r}"
            ) from None
        if not isinstance(name, str) or not name:
            raise ValueError(f"bucket names must be non-empty strings, not {name!r}")
        if name == EXPIRED:
            raise ValueError(
                f"bucket name {EXPIRED!r} is reserved for expiries before the snapshot"
            )
        if name in names:
            raise ValueError(f"bucket name {name!r} appears twice")
        # bool is an int subclass: reject it so {"x": True} is not read as a 1-day edge.
        if isinstance(edge, bool) or not isinstance(edge, (int, float, np.integer, np.floating)):
            raise ValueError(
                f"upper edge of bucket {name!r} must be a number of days, not {edge!r}"
            )
        edge = float(edge)
        if math.isnan(edge) or edge < 0:
            raise ValueError(f"upper edge of bucket {name!r} must be >= 0 days, not {edge!r}")
        if edges and edge <= edges[-1]:
            raise ValueError(
                f"bucket upper edges must be strictly ascending: {name!r} has {edge:g} days "
                f"after {names[-1]!r} with {edges[-1]:g}"
            )
        names.append(name)
        edges.append(edge)
    return tuple(names), tuple(edges)


def _classifier(
    buckets: BucketSpec,
) -> tuple[tuple[str, ...] | None, Callable[[datetime.date, datetime.date], str | None]]:
    """Validate a spec once; return its names and a per-expiry function (expiry >= snapshot)."""
    if isinstance(buckets, str):
        if buckets != "default":
            raise ValueError(
                f"unknown bucket spec {buckets!r}: use 'default', a mapping "
                "{name: upper_edge_days} or a callable f(expiry_date, snapshot_date)"
            )
        return DEFAULT_BUCKETS, _default_bucket
    if callable(buckets):
        user = buckets

        def checked(expiry: datetime.date, snapshot: datetime.date) -> str | None:
            name = user(expiry, snapshot)
            if name is not None and not isinstance(name, str):
                raise TypeError(
                    f"bucket callable returned {name!r} for {expiry.isoformat()}; "
                    "it must return a str or None"
                )
            return name

        return None, checked
    if isinstance(buckets, (Mapping, Sequence)):
        names, edges = _parse_edges(buckets)

        def by_edges(expiry: datetime.date, snapshot: datetime.date) -> str | None:
            days = (expiry - snapshot).days
            for name, edge in zip(names, edges, strict=True):
                if days <= edge:
                    return name
            return None  # beyond the last edge

        return names, by_edges
    raise TypeError(
        "buckets must be 'default', a mapping {name: upper_edge_days} or a callable, "
        f"not {type(buckets).__name__}"
    )


def bucket_names(buckets: BucketSpec = "default") -> tuple[str, ...] | None:
    """The ordered bucket names a spec can produce (validating the spec).

    Parameters
    ----------
    buckets : str, mapping, sequence of pairs or callable
        ``"default"``, ``{name: upper_edge_days}`` or ``f(expiry_date, snapshot_date)``;
        see :func:`expiry_buckets`.

    Returns
    -------
    tuple of str or None
        :data:`DEFAULT_BUCKETS` for ``"default"``; the names in edge order for edges;
        None for a callable, whose names are discovered from the data. :data:`EXPIRED`
        is never listed (the engine drops expired rows).

    Raises
    ------
    ValueError
        Unknown spec name or invalid edges (empty, negative, NaN, not strictly ascending,
        duplicate or reserved names).
    TypeError
        A spec of an unsupported type.
    """
    return _classifier(buckets)[0]


def expiry_buckets(
    expirations: Iterable[datetime.date | np.datetime64 | None],
    snapshot_date: datetime.date,
    buckets: BucketSpec = "default",
) -> list[str | None]:
    """Tag each expiry with its bucket name.

    Parameters
    ----------
    expirations : iterable of datetime.date, numpy.datetime64 or None
        Exchange-local settlement dates. ``datetime`` values count by their own date field
        (no time-zone conversion); ``datetime64`` values by their calendar day; None and
        NaT give None.
    snapshot_date : datetime.date
        Exchange-local date of the snapshot.
    buckets : str, mapping, sequence of pairs or callable, default "default"
        ``"default"``: the rules in the module notes. A mapping ``{name: upper_edge_days}``
        (or ``(name, edge)`` pairs) with strictly ascending, non-negative upper edges in
        calendar days, e.g. ``{"0-7d": 7, "8-30d": 30, "31-90d": 90, "90d+": math.inf}``:
        an expiry ``d`` days away goes to the first bucket whose edge is ``>= d``, and to
        None when ``d`` is beyond the last finite edge (end with ``math.inf`` to catch
        all). A callable ``f(expiry_date, snapshot_date) -> str | None`` is called once per
        distinct expiry on or after the snapshot date.

    Returns
    -------
    list of str or None
        One name per expiry, in input order; :data:`EXPIRED` for expiries before the
        snapshot date, whatever the spec.

    Raises
    ------
    ValueError
        Invalid spec (see :func:`bucket_names`).
    TypeError
        A value that is not a date, or a callable returning neither str nor None.
    """
    snapshot = _require_date(snapshot_date)
    _, classify = _classifier(buckets)
    memo: dict[datetime.date, str | None] = {}
    out: list[str | None] = []
    for value in expirations:
        expiry = _as_date(value)
        if expiry is None:
            out.append(None)
            continue
        if expiry not in memo:
            memo[expiry] = EXPIRED if expiry < snapshot else classify(expiry, snapshot)
        out.append(memo[expiry])
    return out


# --------------------------------------------------------------------------- views


def next_expiry(
    expirations: Iterable[datetime.date | np.datetime64 | None], snapshot_date: datetime.date
) -> datetime.date | None:
    """The earliest expiry on or after the snapshot date (a 0DTE expiry counts).

    Parameters
    ----------
    expirations : iterable of datetime.date, numpy.datetime64 or None
        Exchange-local expiry dates of one underlying; None / NaT are skipped.
    snapshot_date : datetime.date
        Exchange-local snapshot date.

    Returns
    -------
    datetime.date or None
        None when no expiry is on or after the snapshot date.
    """
    return min(_live(expirations, snapshot_date), default=None)


def next_monthly(
    expirations: Iterable[datetime.date | np.datetime64 | None], snapshot_date: datetime.date
) -> datetime.date | None:
    """The earliest standard monthly expiry on or after the snapshot date, among the given.

    Parameters
    ----------
    expirations : iterable of datetime.date, numpy.datetime64 or None
        Exchange-local expiry dates of one underlying; None / NaT are skipped.
    snapshot_date : datetime.date
        Exchange-local snapshot date.

    Returns
    -------
    datetime.date or None
        None when no listed expiry on or after the snapshot is a standard monthly
        (see :func:`is_standard_monthly`).
    """
    live = _live(expirations, snapshot_date)
    return min((day for day in live if is_standard_monthly(day)), default=None)


def view_excludes(
    view: str,
    expirations: Iterable[datetime.date | np.datetime64 | None],
    snapshot_date: datetime.date,
) -> set[datetime.date]:
    """The expiry dates a view leaves out.

    Parameters
    ----------
    view : {"all", "ex_next_expiry", "ex_next_monthly"}
        ``all``: nothing left out. ``ex_next_expiry``: drop :func:`next_expiry` (shows the
        positioning that survives the nearest expiration). ``ex_next_monthly``: drop
        :func:`next_monthly`.
    expirations : iterable of datetime.date, numpy.datetime64 or None
        Exchange-local expiry dates of one underlying.
    snapshot_date : datetime.date
        Exchange-local snapshot date.

    Returns
    -------
    set of datetime.date
        Empty for ``all``, or when the view's expiry is absent.

    Raises
    ------
    ValueError
        Unknown view name.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: choose one of {', '.join(VIEWS)}")
    if view == "all":
        return set()
    pick = next_expiry if view == "ex_next_expiry" else next_monthly
    day = pick(expirations, snapshot_date)
    return set() if day is None else {day}


# --------------------------------------------------------------------------- helpers


def _live(
    expirations: Iterable[datetime.date | np.datetime64 | None], snapshot_date: datetime.date
) -> list[datetime.date]:
    """Dates on or after the snapshot date, None / NaT dropped."""
    snapshot = _require_date(snapshot_date)
    days = (_as_date(value) for value in expirations)
    return [day for day in days if day is not None and day >= snapshot]


def _as_date(value: object) -> datetime.date | None:
    """A plain ``date`` from a date, datetime (its own date field), datetime64 or None."""
    # NaT != NaT: catches pandas.NaT, a datetime subclass whose .date() is NaT again.
    if value is None or (isinstance(value, datetime.date) and value != value):
        return None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        # datetime64[D] -> object gives a datetime.date for every representable day.
        return value.astype("datetime64[D]").astype(object)
    return _require_date(value)


def _require_date(value: object) -> datetime.date:
    """Reject non-dates; strip a datetime to its date (datetime != date in set lookups)."""
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    raise TypeError(f"expected a datetime.date, not {type(value).__name__}: {value!r}")
