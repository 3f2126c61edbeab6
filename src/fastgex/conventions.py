"""Named choices that change the numbers: dealer sign conventions, units, day counts.

Every choice that public GEX tools disagree on is a named value here, so a result
always says which one produced it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Convention(str, Enum):
    """Which side dealers are assumed to hold, as signs applied to open interest.

    ``SHORT_CALLS_LONG_PUTS`` (default) is the seed lesson's "dealers short
    customer-preferred flow": calls -1, puts +1. ``LONG_CALLS_SHORT_PUTS`` (calls +1,
    puts -1) is the SqueezeMetrics-style convention of most public scripts.
    ``SHORT_ALL`` (-1, -1) assumes customers buy every option. A ``dealer_position``
    column, when present, replaces the convention row by row.
    """

    SHORT_CALLS_LONG_PUTS = "short_calls_long_puts"
    LONG_CALLS_SHORT_PUTS = "long_calls_short_puts"
    SHORT_ALL = "short_all"

    @property
    def signs(self) -> tuple[float, float]:
        """``(call_sign, put_sign)`` applied to open interest."""
        return _CONVENTION_SIGNS[self]


_CONVENTION_SIGNS = {
    Convention.SHORT_CALLS_LONG_PUTS: (-1.0, 1.0),
    Convention.LONG_CALLS_SHORT_PUTS: (1.0, -1.0),
    Convention.SHORT_ALL: (-1.0, -1.0),
}


class Unit(str, Enum):
    """Unit of a GEX number (``P`` is the spot, or the forward for Black-76 rows).

    ``DOLLARS_PER_1PCT`` (default): ``sign * OI * m * gamma * P**2 * 0.01``, dollars
    of underlying dealers trade for a 1% move. ``DOLLARS_PER_POINT``:
    ``sign * OI * m * gamma * P``. ``SHARES_PER_DOLLAR``: ``sign * OI * m * gamma``.
    ``UNITS_PER_1PCT``: ``sign * OI * m * gamma * P * 0.01``, units of the underlying
    (shares, or coins for crypto options) dealers trade for a 1% move. "Dollars" are
    the currency the prices are quoted in (USD for Deribit).
    """

    DOLLARS_PER_1PCT = "dollars_per_1pct"
    DOLLARS_PER_POINT = "dollars_per_point"
    SHARES_PER_DOLLAR = "shares_per_dollar"
    UNITS_PER_1PCT = "units_per_1pct"

    @property
    def price_power(self) -> int:
        """Power of the price in the unit factor."""
        return _UNIT_FACTORS[self][0]

    @property
    def scale(self) -> float:
        """Constant factor of the unit (0.01 for a 1% move)."""
        return _UNIT_FACTORS[self][1]


_UNIT_FACTORS = {
    Unit.DOLLARS_PER_1PCT: (2, 0.01),
    Unit.DOLLARS_PER_POINT: (1, 1.0),
    Unit.SHARES_PER_DOLLAR: (0, 1.0),
    Unit.UNITS_PER_1PCT: (1, 0.01),
}


class GammaSource(str, Enum):
    """Where gamma comes from: the model (from implied vol) or the chain's column."""

    MODEL = "model"
    COLUMN = "column"


@dataclass(frozen=True)
class DayCount:
    """How time to expiry is measured, in years.

    Parameters
    ----------
    kind : {"calendar", "business"}
        ``calendar``: exact elapsed seconds between the snapshot and the settlement
        instant divided by ``year_length`` days. ``business``: whole weekdays from the
        snapshot date to the expiry date (``numpy.busday_count``, minus ``holidays``),
        divided by ``year_length``, with a one-day floor for contracts expiring later
        the same day, as the widely copied public script does.
    year_length : float
        Days in a year (365 for ACT/365; 252 or 262 for business days).
    holidays : tuple of str
        ISO dates excluded from business-day counts.
    """

    kind: str = "calendar"
    year_length: float = 365.0
    holidays: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("calendar", "business"):
            raise ValueError(f"day count kind must be 'calendar' or 'business', not {self.kind!r}")
        if not self.year_length > 0:
            raise ValueError(f"year_length must be positive, not {self.year_length!r}")

    @property
    def name(self) -> str:
        """Short name: ``act365``, ``bus252``, ``bus262`` or e.g. ``bus250``."""
        prefix = "act" if self.kind == "calendar" else "bus"
        return f"{prefix}{self.year_length:g}"

    @classmethod
    def parse(cls, value: str | DayCount) -> DayCount:
        """Build from a name: ``act365`` (default), ``bus252``, ``bus262``, ``actN``, ``busN``.

        Parameters
        ----------
        value : str or DayCount
            The name, or an existing day count (returned unchanged).

        Returns
        -------
        DayCount
            The parsed day count.
        """
        if isinstance(value, DayCount):
            return value
        match = re.fullmatch(r"(act|bus)[:/_-]?(\d+(?:\.\d+)?)", str(value).strip().lower())
        if not match:
            raise ValueError(
                f"unknown day count {value!r}: use act365, bus252, bus262, actN or busN"
            )
        kind = "calendar" if match.group(1) == "act" else "business"
        return cls(kind=kind, year_length=float(match.group(2)))


def parse_convention(value: str | Convention) -> Convention:
    """Return the :class:`Convention` named ``value`` (a clear error otherwise)."""
    return _parse_enum(Convention, value, "convention")


def parse_unit(value: str | Unit) -> Unit:
    """Return the :class:`Unit` named ``value`` (a clear error otherwise)."""
    return _parse_enum(Unit, value, "unit")


def parse_gamma_source(value: str | GammaSource) -> GammaSource:
    """Return the :class:`GammaSource` named ``value`` (a clear error otherwise)."""
    return _parse_enum(GammaSource, value, "gamma_source")


def _parse_enum(enum_type, value, what):
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(str(value).strip().lower().replace("-", "_"))
    except ValueError:
        names = ", ".join(member.value for member in enum_type)
        raise ValueError(f"unknown {what} {value!r}: choose one of {names}") from None
