"""Slow, obviously correct reference implementation of option gamma and dealer GEX.

This module is the single oracle that the tests compare the fast kernels against, and
the naive baseline that the benchmarks time. It is written for clarity, not speed:
every row is computed with the standard library :mod:`math` module, one at a time, and
every sum uses :func:`math.fsum` (correctly rounded), so its totals do not depend on the
order of the rows.

It imports nothing from the rest of :mod:`fastgex` on purpose, so that a bug in a shared
helper cannot hide by appearing on both sides of a comparison.

Formulas
--------
Black-Scholes-Merton gamma per share (spot ``S``, strike ``K``, volatility ``sigma``,
time to expiry ``T`` in years, continuously compounded rate ``r`` and dividend yield
``q``)::

    d1    = (ln(S / K) + (r - q + sigma^2 / 2) T) / (sigma sqrt(T))
    gamma = exp(-q T) pdf(d1) / (S sigma sqrt(T))

Black-76 gamma per unit of the forward ``F`` (options on futures)::

    d1    = (ln(F / K) + sigma^2 T / 2) / (sigma sqrt(T))
    gamma = exp(-r T) pdf(d1) / (F sigma sqrt(T))

Gamma is the same for a call and a put with the same inputs (put-call parity makes the
difference of their prices linear in the underlying).

Dealer gamma exposure of one contract line, with ``position`` the signed number of
contracts that dealers hold (``sign * open_interest`` under a named convention, or a
given dealer position) and ``m`` the contract multiplier::

    shares_per_dollar   position * m * gamma
    dollars_per_point   position * m * gamma * price
    dollars_per_1pct    position * m * gamma * price^2 * 0.01

where ``price`` is the spot (BSM rows) or the forward (Black-76 rows).

GEX says how dealers' hedging will push the market *if* it moves (long gamma damps
moves, short gamma amplifies them); it never says which way the market will move.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas

__all__ = [
    "CONVENTIONS",
    "DEFAULT_MULTIPLIER",
    "GAMMA_SOURCES",
    "UNITS",
    "ReferenceResult",
    "black76_gamma",
    "bsm_gamma",
    "contract_gex",
    "gex_pandas_scipy",
    "gex_reference",
    "norm_pdf",
    "unit_factor",
]

CONVENTIONS: dict[str, tuple[float, float]] = {
    # Dealers are short what customers prefer to buy (calls) and long what they sell
    # (puts): the seed lesson's convention and this package's default.
    "short_calls_long_puts": (-1.0, 1.0),
    # Dealers long calls, short puts: SqueezeMetrics-style tools, Perfiliev's widely
    # copied script, gflows, FlashAlpha, SpotGamma on indices.
    "long_calls_short_puts": (1.0, -1.0),
    # Customers buy everything, dealers are short everything (SpotGamma single stocks).
    "short_all": (-1.0, -1.0),
}
"""Named dealer sign conventions: ``name -> (call_sign, put_sign)``."""

UNITS: tuple[str, ...] = (
    "dollars_per_1pct",
    "dollars_per_point",
    "shares_per_dollar",
    "units_per_1pct",
)
"""Names of the GEX units, see :func:`unit_factor`."""

GAMMA_SOURCES: tuple[str, ...] = ("model", "column")
"""Where :func:`gex_reference` takes gamma from: the pricing model, or each row's ``gamma``."""

DEFAULT_MULTIPLIER: float = 100.0
"""Contract multiplier used when a row carries none (US equity and index options)."""

_INV_SQRT_2PI: float = 1.0 / math.sqrt(2.0 * math.pi)


def norm_pdf(x: float) -> float:
    """Evaluate the standard normal probability density.

    Parameters
    ----------
    x : float
        Point at which to evaluate the density.

    Returns
    -------
    float
        ``exp(-x**2 / 2) / sqrt(2 pi)``.
    """
    return math.exp(-0.5 * x * x) * _INV_SQRT_2PI


def _check_positive(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number greater than zero."""
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def _check_finite(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number."""
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


def bsm_gamma(
    spot: float,
    strike: float,
    vol: float,
    time_to_expiry: float,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
) -> float:
    """Black-Scholes-Merton gamma per share (the same for calls and puts).

    Parameters
    ----------
    spot : float
        Price of the underlying, > 0.
    strike : float
        Strike price, > 0.
    vol : float
        Implied volatility as a decimal (0.2 for 20 %), > 0.
    time_to_expiry : float
        Time to expiry in years, > 0.
    rate : float, default 0.0
        Continuously compounded risk-free rate.
    dividend_yield : float, default 0.0
        Continuously compounded dividend (or borrow) yield.

    Returns
    -------
    float
        ``exp(-q T) pdf(d1) / (S sigma sqrt(T))`` with
        ``d1 = (ln(S/K) + (r - q + sigma^2/2) T) / (sigma sqrt(T))``.

    Raises
    ------
    ValueError
        If spot, strike, vol or time to expiry is not finite and positive, or if the
        rate or the dividend yield is not finite.
    """
    _check_positive("spot", spot)
    _check_positive("strike", strike)
    _check_positive("vol", vol)
    _check_positive("time_to_expiry", time_to_expiry)
    _check_finite("rate", rate)
    _check_finite("dividend_yield", dividend_yield)
    vol_sqrt_time = vol * math.sqrt(time_to_expiry)
    d1 = (
        math.log(spot / strike) + (rate - dividend_yield + 0.5 * vol * vol) * time_to_expiry
    ) / vol_sqrt_time
    return math.exp(-dividend_yield * time_to_expiry) * norm_pdf(d1) / (spot * vol_sqrt_time)


def black76_gamma(
    forward: float,
    strike: float,
    vol: float,
    time_to_expiry: float,
    rate: float = 0.0,
) -> float:
    """Black-76 gamma per unit of the forward (options on futures; calls and puts alike).

    Parameters
    ----------
    forward : float
        Forward (futures) price, > 0.
    strike : float
        Strike price, > 0.
    vol : float
        Implied volatility as a decimal, > 0.
    time_to_expiry : float
        Time to expiry in years, > 0.
    rate : float, default 0.0
        Continuously compounded rate used to discount the payoff.

    Returns
    -------
    float
        ``exp(-r T) pdf(d1) / (F sigma sqrt(T))`` with
        ``d1 = (ln(F/K) + sigma^2 T / 2) / (sigma sqrt(T))``.

    Raises
    ------
    ValueError
        If forward, strike, vol or time to expiry is not finite and positive, or if the
        rate is not finite.

    Notes
    -----
    With ``F = S exp((r - q) T)`` the BSM price is the Black-76 price as a function of
    ``F(S)``, so ``bsm_gamma(S, ...) = black76_gamma(F, ...) * exp(2 (r - q) T)``.
    """
    _check_positive("forward", forward)
    _check_positive("strike", strike)
    _check_positive("vol", vol)
    _check_positive("time_to_expiry", time_to_expiry)
    _check_finite("rate", rate)
    vol_sqrt_time = vol * math.sqrt(time_to_expiry)
    d1 = (math.log(forward / strike) + 0.5 * vol * vol * time_to_expiry) / vol_sqrt_time
    return math.exp(-rate * time_to_expiry) * norm_pdf(d1) / (forward * vol_sqrt_time)


def unit_factor(price: float, unit: str) -> float:
    """Factor that turns ``position * multiplier * gamma`` into the requested unit.

    Parameters
    ----------
    price : float
        Price of the underlying the gamma refers to (spot, or forward for Black-76).
    unit : str
        One of :data:`UNITS`:

        - ``"dollars_per_1pct"``: dollars of delta per 1 % move, ``price**2 * 0.01``;
        - ``"dollars_per_point"``: dollars of delta per 1-point move, ``price``;
        - ``"shares_per_dollar"``: shares (units) of delta per 1-point move, ``1``;
        - ``"units_per_1pct"``: shares (units, coins) of delta per 1 % move, ``price * 0.01``.

    Returns
    -------
    float
        The factor.

    Raises
    ------
    ValueError
        If ``unit`` is not one of :data:`UNITS`.
    """
    if unit == "dollars_per_1pct":
        return price * price * 0.01
    if unit == "dollars_per_point":
        return price
    if unit == "shares_per_dollar":
        return 1.0
    if unit == "units_per_1pct":
        return price * 0.01
    raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")


def contract_gex(
    gamma: float,
    position: float,
    multiplier: float,
    price: float,
    unit: str = "dollars_per_1pct",
) -> float:
    """Gamma exposure of one contract line.

    Parameters
    ----------
    gamma : float
        Gamma per share (per unit of the underlying).
    position : float
        Signed number of contracts that dealers hold: ``sign * open_interest`` under a
        convention, or a known dealer position. Positive means dealers are long gamma.
    multiplier : float
        Contract multiplier (shares per contract), e.g. 100.
    price : float
        Price of the underlying the gamma refers to (spot, or forward for Black-76).
    unit : str, default "dollars_per_1pct"
        One of :data:`UNITS`, see :func:`unit_factor`.

    Returns
    -------
    float
        ``position * multiplier * gamma * unit_factor(price, unit)``.
    """
    return position * multiplier * gamma * unit_factor(price, unit)


@dataclass(frozen=True)
class ReferenceResult:
    """Result of :func:`gex_reference`.

    Attributes
    ----------
    by_underlying : dict of str to dict
        Per underlying: ``{"total", "calls", "puts", "contracts"}``; ``total`` is the
        sum of every contract line's GEX, ``calls`` and ``puts`` the sums over call and
        put lines, ``contracts`` the number of contract lines (rows).
    by_strike : dict of str to list of dict
        Per underlying, one entry per distinct strike, sorted ascending by strike:
        ``{"strike", "call", "put", "net", "cumulative_net"}``; ``net`` sums every line
        at that strike and ``cumulative_net`` sums the nets from the lowest strike up to
        and including this one.
    per_contract : list of float
        GEX of each input row, in input order.
    """

    by_underlying: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_strike: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    per_contract: list[float] = field(default_factory=list)


def _optional(row: Mapping[str, Any], key: str, default: Any) -> Any:
    """Return ``row[key]``, or ``default`` when the key is absent or holds ``None``."""
    value = row.get(key)
    return default if value is None else value


def _row_gamma(row: Mapping[str, Any], gamma_source: str) -> tuple[float, float]:
    """Return ``(gamma, price)`` for one row: the gamma and the price it refers to."""
    forward = row.get("forward")
    price = float(row["spot"]) if forward is None else float(forward)
    if gamma_source == "column":
        return float(row["gamma"]), price
    strike = float(row["strike"])
    vol = float(row["implied_vol"])
    time_to_expiry = float(row["time_to_expiry"])
    rate = float(_optional(row, "rate", 0.0))
    if forward is not None:
        return black76_gamma(price, strike, vol, time_to_expiry, rate), price
    dividend_yield = float(_optional(row, "dividend_yield", 0.0))
    return bsm_gamma(price, strike, vol, time_to_expiry, rate, dividend_yield), price


def gex_reference(
    rows: Iterable[Mapping[str, Any]],
    *,
    convention: str = "short_calls_long_puts",
    unit: str = "dollars_per_1pct",
    gamma_source: str = "model",
) -> ReferenceResult:
    """Dealer gamma exposure of an option chain, row by row, in plain Python.

    Parameters
    ----------
    rows : iterable of mapping
        One mapping per contract line with keys ``underlying``, ``strike``,
        ``option_type`` (``"C"`` or ``"P"``), ``open_interest``, ``implied_vol``,
        ``time_to_expiry`` (years) and ``spot``; optionally ``multiplier`` (default
        100), ``rate`` and ``dividend_yield`` (default 0), ``forward`` (when present and
        not None: Black-76 gamma on that forward, and the forward is the price in the
        unit factor), ``gamma`` (used when ``gamma_source="column"``) and
        ``dealer_position`` (when present and not None: the signed dealer position,
        used instead of ``sign * open_interest``). Rows are assumed valid.
    convention : str, default "short_calls_long_puts"
        Dealer sign convention, a key of :data:`CONVENTIONS`.
    unit : str, default "dollars_per_1pct"
        One of :data:`UNITS`.
    gamma_source : {"model", "column"}, default "model"
        ``"model"`` computes gamma (BSM, or Black-76 for rows with a forward);
        ``"column"`` takes each row's ``gamma``.

    Returns
    -------
    ReferenceResult
        Per-underlying totals, per-strike profile and per-contract GEX.

    Raises
    ------
    ValueError
        On an unknown convention, unit, gamma source or option type, or inputs that the
        gamma formulas reject.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {tuple(CONVENTIONS)}")
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")
    if gamma_source not in GAMMA_SOURCES:
        raise ValueError(f"unknown gamma_source {gamma_source!r}; expected one of {GAMMA_SOURCES}")
    call_sign, put_sign = CONVENTIONS[convention]

    per_contract: list[float] = []
    # underlying -> {"calls": [...], "puts": [...]} of per-contract GEX values
    parts_by_underlying: dict[str, dict[str, list[float]]] = {}
    # underlying -> strike -> {"call": [...], "put": [...]}
    parts_by_strike: dict[str, dict[float, dict[str, list[float]]]] = {}

    for row in rows:
        option_type = row["option_type"]
        if option_type == "C":
            side, sign = "call", call_sign
        elif option_type == "P":
            side, sign = "put", put_sign
        else:
            raise ValueError(f"option_type must be 'C' or 'P', got {option_type!r}")

        dealer_position = row.get("dealer_position")
        if dealer_position is None:
            position = sign * float(row["open_interest"])
        else:
            position = float(dealer_position)
        multiplier = float(_optional(row, "multiplier", DEFAULT_MULTIPLIER))
        gamma, price = _row_gamma(row, gamma_source)
        value = contract_gex(gamma, position, multiplier, price, unit)
        per_contract.append(value)

        underlying = str(row["underlying"])
        strike = float(row["strike"])
        totals = parts_by_underlying.setdefault(underlying, {"call": [], "put": []})
        totals[side].append(value)
        strikes = parts_by_strike.setdefault(underlying, {})
        strikes.setdefault(strike, {"call": [], "put": []})[side].append(value)

    by_underlying: dict[str, dict[str, Any]] = {}
    for underlying, totals in parts_by_underlying.items():
        by_underlying[underlying] = {
            "total": math.fsum(totals["call"] + totals["put"]),
            "calls": math.fsum(totals["call"]),
            "puts": math.fsum(totals["put"]),
            "contracts": len(totals["call"]) + len(totals["put"]),
        }

    by_strike: dict[str, list[dict[str, float]]] = {}
    for underlying, strikes in parts_by_strike.items():
        profile: list[dict[str, float]] = []
        nets_so_far: list[float] = []
        for strike in sorted(strikes):
            parts = strikes[strike]
            net = math.fsum(parts["call"] + parts["put"])
            nets_so_far.append(net)
            profile.append(
                {
                    "strike": strike,
                    "call": math.fsum(parts["call"]),
                    "put": math.fsum(parts["put"]),
                    "net": net,
                    "cumulative_net": math.fsum(nets_so_far),
                }
            )
        by_strike[underlying] = profile

    return ReferenceResult(
        by_underlying=by_underlying, by_strike=by_strike, per_contract=per_contract
    )


def gex_pandas_scipy(
    frame: pandas.DataFrame,
    spot: float,
    *,
    convention: str = "long_calls_short_puts",
    unit: str = "dollars_per_1pct",
) -> pandas.DataFrame:
    """GEX by strike the way the widely copied public script computes it (naive baseline).

    This follows Perfiliev's SPX gamma exposure script: gamma is computed one row at a
    time with ``DataFrame.apply(..., axis=1)`` and :func:`scipy.stats.norm.pdf`
    (r = q = 0, as in the script), ``CallGEX`` / ``PutGEX`` columns are formed, and they
    are summed per strike with ``groupby``. It exists as the slow baseline the benchmarks
    time and as a second, independent implementation for the tests. pandas and scipy are
    imported here, lazily: they are test and benchmark extras, not runtime dependencies.

    Parameters
    ----------
    frame : pandas.DataFrame
        One underlying's chain, one row per contract line, with columns ``strike``,
        ``option_type`` (``"C"`` / ``"P"``), ``open_interest``, ``implied_vol``,
        ``time_to_expiry`` (years) and optionally ``multiplier`` (default 100).
    spot : float
        Spot price of the underlying.
    convention : str, default "long_calls_short_puts"
        Dealer sign convention, a key of :data:`CONVENTIONS` (the script's own is
        dealers long calls, short puts).
    unit : str, default "dollars_per_1pct"
        One of :data:`UNITS`.

    Returns
    -------
    pandas.DataFrame
        Columns ``strike``, ``call_gex``, ``put_gex``, ``net_gex``, one row per strike,
        ascending. ``.attrs`` holds ``"total"`` (sum of ``net_gex``), ``"calls"``,
        ``"puts"``, ``"convention"`` and ``"unit"``.

    Raises
    ------
    ValueError
        On an unknown convention or unit.

    Notes
    -----
    Like the script, a row with zero time to expiry or zero volatility gets gamma 0 (CBOE
    publishes IV = 0 for deep or illiquid lines); :func:`gex_reference` rejects such rows
    instead, so compare the two on valid chains only. Totals are plain floating-point
    sums (pandas), not :func:`math.fsum`.
    """
    import numpy as np
    import pandas as pd
    from scipy.stats import norm

    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {tuple(CONVENTIONS)}")
    call_sign, put_sign = CONVENTIONS[convention]
    factor = unit_factor(float(spot), unit)

    def calc_gamma(row: pandas.Series) -> float:
        # Black-Scholes European-option gamma, as in the script's calcGammaEx (r = q = 0).
        strike = row["strike"]
        vol = row["implied_vol"]
        time_to_expiry = row["time_to_expiry"]
        if time_to_expiry == 0 or vol == 0:
            return 0.0
        d1 = (np.log(spot / strike) + 0.5 * vol**2 * time_to_expiry) / (
            vol * np.sqrt(time_to_expiry)
        )
        return float(norm.pdf(d1) / (spot * vol * np.sqrt(time_to_expiry)))

    df = frame.copy()
    if "multiplier" not in df.columns:
        df["multiplier"] = DEFAULT_MULTIPLIER
    df["gamma"] = df.apply(calc_gamma, axis=1)
    is_call = df["option_type"] == "C"
    is_put = df["option_type"] == "P"
    exposure = df["gamma"] * df["open_interest"] * df["multiplier"] * factor
    df["CallGEX"] = (exposure * call_sign).where(is_call, 0.0)
    df["PutGEX"] = (exposure * put_sign).where(is_put, 0.0)
    df["TotalGEX"] = df["CallGEX"] + df["PutGEX"]

    by_strike = df.groupby("strike", sort=True)[["CallGEX", "PutGEX", "TotalGEX"]].sum()
    result = pd.DataFrame(
        {
            "strike": by_strike.index.to_numpy(dtype=float),
            "call_gex": by_strike["CallGEX"].to_numpy(dtype=float),
            "put_gex": by_strike["PutGEX"].to_numpy(dtype=float),
            "net_gex": by_strike["TotalGEX"].to_numpy(dtype=float),
        }
    )
    result.attrs["total"] = float(df["TotalGEX"].sum())
    result.attrs["calls"] = float(df["CallGEX"].sum())
    result.attrs["puts"] = float(df["PutGEX"].sum())
    result.attrs["convention"] = convention
    result.attrs["unit"] = unit
    return result
