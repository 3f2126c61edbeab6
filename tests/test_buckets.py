"""Exchange calendar, standard monthly expiries, expiry buckets and views."""

from __future__ import annotations

import datetime
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgex.buckets import (
    DEFAULT_BUCKETS,
    EXPIRED,
    LONG_DATED_DAYS,
    SPECIAL_CLOSURES,
    VIEWS,
    bucket_names,
    easter_sunday,
    expiry_buckets,
    is_business_day,
    is_standard_monthly,
    next_expiry,
    next_monthly,
    nyse_holidays,
    nyse_holidays_between,
    previous_business_day,
    standard_monthly_expiry,
    third_friday,
    view_excludes,
)

D = datetime.date


def _dates(*isos: str) -> set[datetime.date]:
    return {D.fromisoformat(iso) for iso in isos}


# Published NYSE holiday calendars (nyse.com "Holidays & Trading Hours" and its archives).
PUBLISHED_HOLIDAYS = {
    2001: _dates(
        "2001-01-01", "2001-01-15", "2001-02-19", "2001-04-13", "2001-05-28", "2001-07-04",
        "2001-09-03", "2001-09-11", "2001-09-12", "2001-09-13", "2001-09-14", "2001-11-22",
        "2001-12-25",
    ),
    2011: _dates(  # New Year's Day on a Saturday: no weekday holiday
        "2011-01-17", "2011-02-21", "2011-04-22", "2011-05-30", "2011-07-04", "2011-09-05",
        "2011-11-24", "2011-12-26",
    ),
    2012: _dates(
        "2012-01-02", "2012-01-16", "2012-02-20", "2012-04-06", "2012-05-28", "2012-07-04",
        "2012-09-03", "2012-10-29", "2012-10-30", "2012-11-22", "2012-12-25",
    ),
    2018: _dates(
        "2018-01-01", "2018-01-15", "2018-02-19", "2018-03-30", "2018-05-28", "2018-07-04",
        "2018-09-03", "2018-11-22", "2018-12-05", "2018-12-25",
    ),
    2021: _dates(  # Christmas on a Saturday: observed Friday Dec 24
        "2021-01-01", "2021-01-18", "2021-02-15", "2021-04-02", "2021-05-31", "2021-07-05",
        "2021-09-06", "2021-11-25", "2021-12-24",
    ),
    2022: _dates(  # no New Year holiday; first Juneteenth, a Sunday -> Monday Jun 20
        "2022-01-17", "2022-02-21", "2022-04-15", "2022-05-30", "2022-06-20", "2022-07-04",
        "2022-09-05", "2022-11-24", "2022-12-26",
    ),
    2023: _dates(
        "2023-01-02", "2023-01-16", "2023-02-20", "2023-04-07", "2023-05-29", "2023-06-19",
        "2023-07-04", "2023-09-04", "2023-11-23", "2023-12-25",
    ),
    2024: _dates(
        "2024-01-01", "2024-01-15", "2024-02-19", "2024-03-29", "2024-05-27", "2024-06-19",
        "2024-07-04", "2024-09-02", "2024-11-28", "2024-12-25",
    ),
    2025: _dates(
        "2025-01-01", "2025-01-09", "2025-01-20", "2025-02-17", "2025-04-18", "2025-05-26",
        "2025-06-19", "2025-07-04", "2025-09-01", "2025-11-27", "2025-12-25",
    ),
    2026: _dates(  # Independence Day on a Saturday: observed Friday Jul 3
        "2026-01-01", "2026-01-19", "2026-02-16", "2026-04-03", "2026-05-25", "2026-06-19",
        "2026-07-03", "2026-09-07", "2026-11-26", "2026-12-25",
    ),
    2027: _dates(  # Juneteenth and Christmas on Saturdays -> Fridays
        "2027-01-01", "2027-01-18", "2027-02-15", "2027-03-26", "2027-05-31", "2027-06-18",
        "2027-07-05", "2027-09-06", "2027-11-25", "2027-12-24",
    ),
}  # fmt: skip


@pytest.mark.parametrize("year", sorted(PUBLISHED_HOLIDAYS))
def test_holidays_match_published_calendars(year):
    assert nyse_holidays(year) == PUBLISHED_HOLIDAYS[year]


def test_holiday_rule_details():
    assert D(2022, 6, 20) in nyse_holidays(2022)
    assert D(2021, 12, 24) in nyse_holidays(2021)
    # 2022-01-01 is a Saturday: neither Friday Dec 31, 2021 nor Monday Jan 3 closes.
    assert not any(day.month == 1 and day.day <= 3 for day in nyse_holidays(2022))
    assert D(2021, 12, 31) not in nyse_holidays(2021)
    assert is_business_day(D(2021, 12, 31))
    # Juneteenth starts in 2022, MLK Day in 1998.
    assert D(2021, 6, 18) not in nyse_holidays(2021)
    assert all(day.month != 6 for day in nyse_holidays(2021))
    assert D(1997, 1, 20) not in nyse_holidays(1997)
    assert D(1998, 1, 19) in nyse_holidays(1998)


def test_holidays_are_weekdays_cached_and_include_special_closures():
    for year in range(1990, 2051):
        days = nyse_holidays(year)
        assert all(day.weekday() < 5 and day.year == year for day in days)
        assert nyse_holidays(year) is days  # cached per year
    for day in SPECIAL_CLOSURES:
        assert day in nyse_holidays(day.year)
        assert not is_business_day(day)


@pytest.mark.parametrize(
    ("year", "easter"),
    [
        (1818, D(1818, 3, 22)),  # earliest possible
        (1943, D(1943, 4, 25)),  # latest possible
        (2000, D(2000, 4, 23)),
        (2008, D(2008, 3, 23)),
        (2019, D(2019, 4, 21)),
        (2024, D(2024, 3, 31)),
        (2025, D(2025, 4, 20)),
        (2026, D(2026, 4, 5)),
        (2038, D(2038, 4, 25)),
    ],
)
def test_easter(year, easter):
    assert easter_sunday(year) == easter


def test_holidays_between_feeds_numpy_busday_functions():
    holidays = nyse_holidays_between(2024, 2025)
    assert holidays.dtype == np.dtype("datetime64[D]")
    assert list(holidays) == sorted(holidays)
    assert len(holidays) == len(PUBLISHED_HOLIDAYS[2024]) + len(PUBLISHED_HOLIDAYS[2025])
    # 2024 had 252 NYSE trading days, 2025 has 250.
    assert np.busday_count("2024-01-01", "2025-01-01", holidays=holidays) == 252
    assert np.busday_count("2025-01-01", "2026-01-01", holidays=holidays) == 250


def test_business_days():
    assert is_business_day(D(2024, 7, 5))
    assert not is_business_day(D(2024, 7, 4))
    assert not is_business_day(D(2024, 7, 6))  # Saturday
    assert is_business_day(datetime.datetime(2024, 7, 5, 15, 30))  # a datetime counts by date
    assert previous_business_day(D(2024, 7, 5)) == D(2024, 7, 3)
    assert previous_business_day(D(2024, 7, 8)) == D(2024, 7, 5)  # over the weekend
    assert previous_business_day(D(2001, 9, 17)) == D(2001, 9, 10)  # over 9/11 and a weekend
    assert previous_business_day(D(2025, 1, 2)) == D(2024, 12, 31)
    with pytest.raises(TypeError, match=r"datetime\.date"):
        is_business_day("2024-07-05")


def test_third_friday_and_holiday_adjusted_monthlies():
    assert third_friday(2025, 4) == D(2025, 4, 18)
    assert standard_monthly_expiry(2025, 4) == D(2025, 4, 17)  # Good Friday
    assert third_friday(2026, 6) == D(2026, 6, 19)
    assert standard_monthly_expiry(2026, 6) == D(2026, 6, 18)  # Juneteenth
    assert standard_monthly_expiry(2027, 6) == D(2027, 6, 17)  # Juneteenth observed Fri 18th
    assert standard_monthly_expiry(2024, 12) == D(2024, 12, 20)
    assert standard_monthly_expiry(2025, 3) == D(2025, 3, 21)
    assert is_standard_monthly(D(2025, 4, 17))
    assert not is_standard_monthly(D(2025, 4, 18))
    assert not is_standard_monthly(D(2025, 4, 16))


def test_pre_2015_saturday_expirations_are_standard_monthlies():
    assert is_standard_monthly(D(2014, 12, 20))  # Saturday after Friday Dec 19, 2014
    assert is_standard_monthly(D(2014, 4, 19))  # Saturday after Good Friday Apr 18, 2014
    assert not is_standard_monthly(D(2014, 12, 13))  # another Saturday
    assert not is_standard_monthly(D(2014, 12, 27))


def test_every_month_2015_2030_has_one_standard_monthly():
    thursdays = set()
    for year in range(2015, 2031):
        for month in range(1, 13):
            expiry = standard_monthly_expiry(year, month)
            assert (expiry.year, expiry.month) == (year, month)
            assert is_business_day(expiry)
            assert expiry.weekday() in (3, 4)  # Friday, or Thursday before a Friday holiday
            if expiry.weekday() == 3:
                assert not is_business_day(expiry + datetime.timedelta(days=1))
                thursdays.add(expiry)
            first = D(year, month, 1)
            days = [first + datetime.timedelta(days=offset) for offset in range(31)]
            hits = [day for day in days if day.month == month and is_standard_monthly(day)]
            weekday_hits = [day for day in hits if day.weekday() < 5]
            assert weekday_hits == [expiry]
            # Plus only the pre-2015-style Saturday after the third Friday.
            assert set(hits) - {expiry} == {third_friday(year, month) + datetime.timedelta(1)}
    assert thursdays == _dates(
        "2019-04-18", "2022-04-14", "2025-04-17", "2026-06-18", "2027-06-17", "2030-04-18"
    )


# --------------------------------------------------------------------------- buckets

SNAPSHOT = D(2025, 3, 17)  # a Monday, the week of the March 2025 quarterly expiry

# SPX-style listings around the snapshot: dailies, weeklies, end-of-month and quarter-end,
# monthlies (April's moved to Thursday by Good Friday), quarterlies and LEAPS.
SPX_EXPIRIES = {
    D(2025, 3, 14): EXPIRED,  # last Friday: still in a stale feed
    D(2025, 3, 17): "0dte",
    D(2025, 3, 18): "weekly",  # Tuesday daily
    D(2025, 3, 19): "weekly",  # Wednesday
    D(2025, 3, 20): "weekly",  # Thursday daily
    D(2025, 3, 21): "quarterly",  # third Friday of March
    D(2025, 3, 24): "weekly",  # Monday
    D(2025, 3, 28): "weekly",  # Friday weekly
    D(2025, 3, 31): "weekly",  # quarter-end (Monday)
    D(2025, 4, 17): "monthly",  # April monthly, Thursday (Good Friday on the 18th)
    D(2025, 4, 30): "weekly",  # end of month
    D(2025, 5, 16): "monthly",
    D(2025, 6, 20): "quarterly",  # Juneteenth is Thursday the 19th: Friday stays
    D(2025, 6, 30): "weekly",  # quarter-end
    D(2025, 9, 19): "quarterly",
    D(2025, 12, 19): "quarterly",
    D(2026, 1, 16): "monthly",  # 305 days
    D(2026, 3, 16): "weekly",  # 364 days
    D(2026, 3, 17): "weekly",  # exactly LONG_DATED_DAYS: not long-dated
    D(2026, 3, 18): "long_dated",  # 366 days
    D(2026, 3, 20): "long_dated",  # a quarterly, but more than a year out
    D(2026, 12, 18): "long_dated",
    D(2027, 12, 17): "long_dated",
}


def test_default_buckets_on_spx_listings():
    assert (D(2026, 3, 17) - SNAPSHOT).days == LONG_DATED_DAYS
    expirations = list(SPX_EXPIRIES)
    assert expiry_buckets(expirations, SNAPSHOT) == list(SPX_EXPIRIES.values())
    assert expiry_buckets(expirations, SNAPSHOT, "default") == list(SPX_EXPIRIES.values())
    assert bucket_names() == bucket_names("default") == DEFAULT_BUCKETS


def test_expiry_input_forms():
    values = [
        None,
        D(2025, 3, 21),
        datetime.datetime(2025, 3, 21, 16, 0),
        np.datetime64("2025-03-21"),
        np.datetime64("2025-03-21T20:00:00", "ns"),
        np.datetime64("NaT"),
        D(2025, 3, 17),
    ]
    assert expiry_buckets(values, SNAPSHOT) == [
        None, "quarterly", "quarterly", "quarterly", "quarterly", None, "0dte",
    ]  # fmt: skip
    # numpy arrays and generators are iterables too
    array = np.array(["2025-03-17", "2025-04-17", "NaT"], dtype="datetime64[D]")
    assert expiry_buckets(array, SNAPSHOT) == ["0dte", "monthly", None]
    assert expiry_buckets(iter([D(2025, 3, 18)]), SNAPSHOT) == ["weekly"]
    assert expiry_buckets([], SNAPSHOT) == []
    with pytest.raises(TypeError, match=r"datetime\.date"):
        expiry_buckets(["2025-03-21"], SNAPSHOT)
    with pytest.raises(TypeError, match=r"datetime\.date"):
        expiry_buckets([D(2025, 3, 21)], "2025-03-17")


def test_pandas_timestamps_and_nat():
    pd = pytest.importorskip("pandas")
    values = [pd.Timestamp("2025-03-21 16:00"), pd.NaT]
    assert expiry_buckets(values, SNAPSHOT) == ["quarterly", None]


EDGES = {"0-7d": 7, "8-30d": 30, "31-90d": 90, "90d+": math.inf}


def test_user_edges():
    expirations = [
        D(2025, 3, 10), D(2025, 3, 17), D(2025, 3, 24), D(2025, 3, 25), D(2025, 4, 16),
        D(2025, 4, 17), D(2025, 6, 15), D(2025, 6, 16), D(2030, 1, 1), None,
    ]  # fmt: skip
    assert [(day - SNAPSHOT).days for day in expirations[:-1]] == [
        -7, 0, 7, 8, 30, 31, 90, 91, 1751,
    ]  # fmt: skip
    assert expiry_buckets(expirations, SNAPSHOT, EDGES) == [
        EXPIRED, "0-7d", "0-7d", "8-30d", "8-30d", "31-90d", "31-90d", "90d+", "90d+", None,
    ]  # fmt: skip
    assert bucket_names(EDGES) == ("0-7d", "8-30d", "31-90d", "90d+")
    # Pairs work too; a zero edge makes a 0DTE bucket; beyond the last finite edge -> None.
    pairs = [("0dte", 0), ("week", 7.5), ("quarter", 91)]
    assert bucket_names(pairs) == ("0dte", "week", "quarter")
    assert expiry_buckets(expirations, SNAPSHOT, pairs) == [
        EXPIRED, "0dte", "week", "quarter", "quarter", "quarter", "quarter", "quarter", None,
        None,
    ]  # fmt: skip
    assert expiry_buckets([D(2025, 3, 18)], SNAPSHOT, {"d": np.int64(1)}) == ["d"]


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ({}, "at least one"),
        ({"a": 7, "b": 7}, "strictly ascending"),
        ({"a": 30, "b": 7}, "strictly ascending"),
        ({"a": -1}, ">= 0"),
        ({"a": math.nan}, ">= 0"),
        ({"a": "7"}, "number of days"),
        ({"a": True}, "number of days"),
        ({"a": None}, "number of days"),
        ({"": 7}, "non-empty"),
        ({3: 7}, "non-empty strings"),
        ({EXPIRED: 7}, "reserved"),
        ([("a", 7), ("a", 30)], "twice"),
        ([("a", 7, 1)], "pairs"),
        ([7], "pairs"),
    ],
)
def test_user_edges_validation(edges, message):
    with pytest.raises(ValueError, match=message):
        bucket_names(edges)
    with pytest.raises(ValueError, match=message):
        expiry_buckets([SNAPSHOT], SNAPSHOT, edges)


def test_bad_specs():
    with pytest.raises(ValueError, match="unknown bucket spec 'weekly'"):
        expiry_buckets([SNAPSHOT], SNAPSHOT, "weekly")
    with pytest.raises(TypeError, match="int"):
        bucket_names(7)


def test_callable_buckets():
    calls = []

    def by_weekday(expiry, snapshot):
        calls.append(expiry)
        return None if expiry.weekday() == 0 else expiry.strftime("%a")

    expirations = [D(2025, 3, 14), D(2025, 3, 17), D(2025, 3, 19), D(2025, 3, 19), D(2025, 3, 21)]
    assert expiry_buckets(expirations, SNAPSHOT, by_weekday) == [
        EXPIRED, None, "Wed", "Wed", "Fri",
    ]  # fmt: skip
    # Once per distinct live expiry; never for expired ones.
    assert calls == [D(2025, 3, 17), D(2025, 3, 19), D(2025, 3, 21)]
    assert bucket_names(by_weekday) is None

    with pytest.raises(TypeError, match="must return a str or None"):
        expiry_buckets([SNAPSHOT], SNAPSHOT, lambda expiry, snapshot: 3)


# --------------------------------------------------------------------------- views


def test_views():
    expirations = [*SPX_EXPIRIES, None]
    assert VIEWS == ("all", "ex_next_expiry", "ex_next_monthly")
    assert next_expiry(expirations, SNAPSHOT) == D(2025, 3, 17)  # 0DTE counts
    assert next_expiry(expirations, D(2025, 3, 15)) == D(2025, 3, 17)
    assert next_monthly(expirations, SNAPSHOT) == D(2025, 3, 21)
    assert next_monthly(expirations, D(2025, 3, 22)) == D(2025, 4, 17)
    assert next_monthly(expirations, D(2025, 4, 17)) == D(2025, 4, 17)  # on the day
    assert view_excludes("all", expirations, SNAPSHOT) == set()
    assert view_excludes("ex_next_expiry", expirations, SNAPSHOT) == {D(2025, 3, 17)}
    assert view_excludes("ex_next_monthly", expirations, SNAPSHOT) == {D(2025, 3, 21)}
    # Nothing to leave out: empty sets, not errors.
    weeklies = [D(2025, 3, 18), D(2025, 3, 24)]
    assert next_monthly(weeklies, SNAPSHOT) is None
    assert view_excludes("ex_next_monthly", weeklies, SNAPSHOT) == set()
    assert next_expiry([], SNAPSHOT) is None
    assert view_excludes("ex_next_expiry", [D(2025, 3, 14)], SNAPSHOT) == set()
    # datetime64 input gives plain dates back
    array = np.array(["2025-04-17", "2025-03-19"], dtype="datetime64[D]")
    assert view_excludes("ex_next_expiry", array, SNAPSHOT) == {D(2025, 3, 19)}
    assert view_excludes("ex_next_monthly", array, SNAPSHOT) == {D(2025, 4, 17)}


def test_unknown_view_lists_valid_ones():
    with pytest.raises(ValueError, match="all, ex_next_expiry, ex_next_monthly"):
        view_excludes("ex_front", [SNAPSHOT], SNAPSHOT)


# --------------------------------------------------------------------------- properties

day_2015_2030 = st.dates(min_value=D(2015, 1, 1), max_value=D(2030, 12, 31))


@settings(derandomize=True, max_examples=300)
@given(snapshot=day_2015_2030, expirations=st.lists(day_2015_2030 | st.none(), max_size=40))
def test_every_live_expiry_gets_one_default_name(snapshot, expirations):
    names = expiry_buckets(expirations, snapshot)
    assert len(names) == len(expirations)
    for expiry, name in zip(expirations, names, strict=True):
        if expiry is None:
            assert name is None
        elif expiry < snapshot:
            assert name == EXPIRED
        else:
            assert name in DEFAULT_BUCKETS
            assert (name == "0dte") == (expiry == snapshot)
            if is_standard_monthly(expiry):
                assert name != "weekly"
            if name in ("monthly", "quarterly"):
                assert is_standard_monthly(expiry)
                assert (name == "quarterly") == (expiry.month in (3, 6, 9, 12))


@settings(derandomize=True, max_examples=200)
@given(
    snapshot=day_2015_2030,
    offsets=st.lists(st.integers(-30, 2000), max_size=30),
    edges=st.lists(st.integers(0, 1500), min_size=1, max_size=6, unique=True).map(sorted),
    open_ended=st.booleans(),
)
def test_edges_match_a_naive_reference(snapshot, offsets, edges, open_ended):
    spec = {f"b{index}": float(edge) for index, edge in enumerate(edges)}
    if open_ended:
        spec["rest"] = math.inf
    expirations = [snapshot + datetime.timedelta(days=offset) for offset in offsets]
    names = expiry_buckets(expirations, snapshot, spec)
    for offset, name in zip(offsets, names, strict=True):
        if offset < 0:
            expected = EXPIRED
        else:
            expected = next((key for key, edge in spec.items() if offset <= edge), None)
        assert name == expected
        if offset >= 0 and (open_ended or offset <= edges[-1]):
            assert name in bucket_names(spec)


@settings(derandomize=True, max_examples=200)
@given(day=st.dates(min_value=D(1998, 1, 1), max_value=D(2060, 12, 31)))
def test_previous_business_day_is_the_nearest_earlier_open_day(day):
    previous = previous_business_day(day)
    assert previous < day
    assert is_business_day(previous)
    between = [previous + datetime.timedelta(days=k) for k in range(1, (day - previous).days)]
    assert not any(is_business_day(other) for other in between)
    assert is_business_day(day) == bool(
        np.is_busday(np.datetime64(day), holidays=nyse_holidays_between(day.year, day.year))
    )


@settings(derandomize=True, max_examples=200)
@given(year=st.integers(1998, 2100), month=st.integers(1, 12))
def test_standard_monthly_is_in_the_third_friday_week(year, month):
    expiry = standard_monthly_expiry(year, month)
    friday = third_friday(year, month)
    assert friday.weekday() == 4 and 15 <= friday.day <= 21
    assert 0 <= (friday - expiry).days <= 4
    assert is_business_day(expiry)
    assert is_standard_monthly(expiry)
