"""Time to expiry from timestamps: settlement instants, snapshot times and day counts.

Work is done once per distinct expiration (a chain has a few hundred at most) and then
broadcast to rows with an Arrow ``take``, so this stays cheap for millions of rows.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastgex._errors import ChainError
from fastgex.conventions import DayCount

SECONDS_PER_DAY = 86_400.0
_NANOS_PER_SECOND = 1_000_000_000

#: Named settlement times of day (local to ``settlement_tz``).
SETTLEMENT_TIMES = {"pm": dt.time(16, 0), "am": dt.time(9, 30)}


def parse_settlement(settlement: str | dt.time) -> dt.time:
    """Settlement time of day from ``"pm"`` (16:00), ``"am"`` (09:30), ``"HH:MM"`` or a time.

    Parameters
    ----------
    settlement : str or datetime.time
        The settlement time.

    Returns
    -------
    datetime.time
        The local time of day at which contracts settle.
    """
    if isinstance(settlement, dt.time):
        return settlement
    text = str(settlement).strip().lower()
    if text in SETTLEMENT_TIMES:
        return SETTLEMENT_TIMES[text]
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"unknown settlement {settlement!r}: use 'pm' (16:00), 'am' (09:30) or 'HH:MM'"
        ) from None


def parse_snapshot(value: object, zone: ZoneInfo) -> dt.datetime:
    """An aware UTC datetime from a datetime, date, ISO string or pandas Timestamp.

    Naive values are read as local time in ``zone`` (the settlement time zone).
    """
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"cannot read snapshot_time {value!r}: use ISO 8601") from None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, np.datetime64):  # naive by nature: local time in ``zone``
        value = value.astype("datetime64[us]").astype(dt.datetime)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(0, 0), zone).astimezone(dt.timezone.utc)
    raise TypeError(f"snapshot_time must be a datetime or ISO string, not {type(value).__name__}")


def settlement_nanos(
    expiration: pa.ChunkedArray, settlement: dt.time, zone: ZoneInfo
) -> pa.ChunkedArray:
    """Settlement instant of each row as int64 nanoseconds since the epoch (UTC).

    See :func:`settlement_codes` for how expirations are read.
    """
    codes, instants = settlement_codes(expiration, settlement, zone)
    return pc.take(pa.array(instants), codes)


def settlement_codes(
    expiration: pa.ChunkedArray, settlement: dt.time, zone: ZoneInfo
) -> tuple[pa.Array, np.ndarray]:
    """Each row's index into the distinct settlement instants, and those instants.

    Instants are int64 nanoseconds since the epoch (UTC); indices are null where the
    expiration is null. Work is done once per distinct expiration.

    Dates settle at ``settlement`` local time in ``zone``. Timestamps with a time of day
    are exact instants (naive ones are local times in ``zone``); a timestamp at exactly
    midnight (in its own time zone, or naive) is read as a plain date. Strings must be
    ISO dates or date-times.
    """
    kind = expiration.type
    if pa.types.is_dictionary(kind):  # e.g. pandas/polars categoricals: decode first
        expiration = expiration.cast(kind.value_type)
        kind = expiration.type
    if pa.types.is_integer(kind):  # YYYYMMDD integers (ThetaData's ``exp``)
        expiration = pc.cast(expiration, pa.string())
        kind = expiration.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        expiration = _parse_string_expirations(expiration)
        kind = expiration.type
    if not (pa.types.is_date(kind) or pa.types.is_timestamp(kind)):
        raise ChainError(
            f"column 'expiration' has type {kind}; expected a date, a timestamp or ISO strings"
        )
    encoded = expiration.combine_chunks().dictionary_encode()  # also fine with 0 rows
    uniques = encoded.dictionary
    instants = np.empty(len(uniques), dtype=np.int64)
    try:
        values = uniques.to_pylist()
        for index, value in enumerate(values):
            instants[index] = _settlement_instant(value, kind, settlement, zone)
    except OverflowError as error:  # a date before year 1 or after 9999, or beyond 2262
        raise ChainError(f"an 'expiration' out of range: {error}") from error
    return encoded.indices, instants


def _settlement_instant(value, kind, settlement: dt.time, zone: ZoneInfo) -> int:
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):  # a date stored as a timestamp
            instant = dt.datetime.combine(value.date(), settlement, zone)
        elif value.tzinfo is not None:
            instant = value
        else:
            instant = value.replace(tzinfo=zone)
    else:
        instant = dt.datetime.combine(value, settlement, zone)
    return epoch_nanos(instant)


def _parse_string_expirations(expiration: pa.ChunkedArray) -> pa.ChunkedArray:
    formats = (
        "%Y-%m-%d",
        "%Y%m%d",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S%z",
    )
    for fmt in formats:
        try:
            parsed = pc.strptime(expiration, format=fmt, unit="us", error_is_null=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return parsed
    sample = pc.drop_null(expiration)[:1].to_pylist()
    raise ChainError(
        f"cannot read column 'expiration' as dates: e.g. {sample}; "
        "use ISO dates (YYYY-MM-DD), YYYYMMDD, or an Arrow date/timestamp column"
    )


def snapshot_nanos(
    snapshot_time: object | None, column: pa.ChunkedArray | None, zone: ZoneInfo
) -> int | pa.ChunkedArray:
    """The snapshot instant: the argument if given, else the ``snapshot_time`` column."""
    if snapshot_time is not None:
        instant = parse_snapshot(snapshot_time, zone)
        return epoch_nanos(instant)
    if column is None:
        raise ChainError(
            "snapshot_time is required to turn 'expiration' into time to expiry: pass "
            "snapshot_time=..., add a 'snapshot_time' column, or give 'time_to_expiry' in years"
        )
    kind = column.type
    if not pa.types.is_timestamp(kind):
        raise ChainError(f"column 'snapshot_time' has type {kind}; expected a timestamp")
    if kind.tz is None:
        # Naive timestamps are local times in the settlement zone.
        # Ambiguous/nonexistent local times (DST changes) take the earlier reading,
        # as a naive snapshot_time argument does (fold=0).
        column = pc.assume_timezone(
            column, timezone=zone.key, ambiguous="earliest", nonexistent="earliest"
        )
    try:
        return pc.cast(pc.cast(column, pa.timestamp("ns", tz="UTC")), pa.int64())
    except pa.ArrowInvalid as error:  # nanoseconds since 1970 cover 1677-2262 only
        raise ChainError(f"snapshot_time outside 1677-2262: {error}") from error


def epoch_nanos(instant: dt.datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime."""
    delta = instant - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * _NANOS_PER_SECOND + delta.microseconds * 1000


def time_to_expiry(
    expiration: pa.ChunkedArray | pa.Array,
    snapshot: int | pa.ChunkedArray,
    day_count: DayCount,
    settlement: dt.time,
    zone: ZoneInfo,
    *,
    settled: bool = False,
) -> pa.ChunkedArray:
    """Years from the snapshot to each row's settlement (<= 0 means expired).

    Parameters
    ----------
    expiration : pyarrow.ChunkedArray
        Expiration dates or timestamps.
    snapshot : int or pyarrow.ChunkedArray
        Snapshot instant(s) in nanoseconds since the epoch (UTC).
    day_count : DayCount
        Calendar (exact seconds) or business days.
    settlement : datetime.time
        Local settlement time for plain dates.
    zone : zoneinfo.ZoneInfo
        Time zone of settlement times and business dates.
    settled : bool
        ``expiration`` already holds settlement instants (from :func:`settlement_nanos`).

    Returns
    -------
    pyarrow.ChunkedArray
        float64 years; null where the expiration is null.
    """
    settle = expiration if settled else settlement_nanos(expiration, settlement, zone)
    if day_count.kind == "calendar":
        # int64 nanoseconds to float64 rounds by at most a few ns (not an error here).
        elapsed = pc.cast(pc.subtract(settle, snapshot), pa.float64(), safe=False)
        seconds = pc.divide(elapsed, 1e9)
        return _as_chunked(pc.divide(seconds, SECONDS_PER_DAY * day_count.year_length))
    return _business_years(settle, snapshot, day_count, zone)


def _business_years(settle, snapshot, day_count: DayCount, zone: ZoneInfo) -> pa.ChunkedArray:
    settle_np = _to_numpy_int(settle)
    snapshot_np = np.broadcast_to(
        _to_numpy_int(snapshot) if not isinstance(snapshot, int) else np.int64(snapshot),
        settle_np.shape,
    )
    missing = np.iinfo(np.int64).min  # how _to_numpy_int marks nulls
    valid = (settle_np != missing) & (snapshot_np != missing)
    expired = settle_np <= snapshot_np
    settle_dates = _local_dates(settle_np, zone)
    snapshot_dates = _local_dates(snapshot_np, zone)
    holidays = np.array(day_count.holidays, dtype="datetime64[D]")
    days = np.busday_count(snapshot_dates, settle_dates, holidays=holidays).astype(np.float64)
    # A contract that settles later the same (or a non-business) day counts one day.
    days = np.where(days < 1.0, 1.0, days)
    years = days / day_count.year_length
    years = np.where(expired, -1.0, years)
    mask = ~valid
    return pa.chunked_array([pa.array(years, mask=mask if mask.any() else None)])


def _local_dates(nanos: np.ndarray, zone: ZoneInfo) -> np.ndarray:
    """Calendar dates in ``zone`` of epoch nanoseconds (via the few distinct days)."""
    day_keys, inverse = np.unique(nanos // (_NANOS_PER_SECOND * 3600), return_inverse=True)
    dates = np.empty(len(day_keys), dtype="datetime64[D]")
    for index, hour_key in enumerate(day_keys):
        instant = dt.datetime.fromtimestamp(int(hour_key) * 3600, tz=dt.timezone.utc)
        dates[index] = np.datetime64(instant.astimezone(zone).date(), "D")
    return dates[inverse]


def _to_numpy_int(values) -> np.ndarray:
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return np.asarray(array.fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False))


def _as_chunked(values) -> pa.ChunkedArray:
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
