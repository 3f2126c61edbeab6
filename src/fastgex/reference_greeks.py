"""Slow, obviously correct Black-Scholes-Merton / Black-76 prices, greeks and implied vol.

The oracle that the greeks and implied-vol kernels are tested against: textbook closed
forms, one contract at a time, with :func:`math.erfc` for the normal distribution. Like
``fastgex.reference`` it imports nothing from the rest of ``fastgex``, so a bug
in a shared helper cannot hide on both sides of a comparison.

Formulas (spot ``S``, strike ``K``, vol ``v``, years ``T``, rate ``r``, dividend yield
``q``; ``N`` and ``n`` the standard normal CDF and density)::

    d1 = (ln(S/K) + (r - q + v^2/2) T) / (v sqrt(T)),   d2 = d1 - v sqrt(T)
    call = S e^-qT N(d1) - K e^-rT N(d2),   put = K e^-rT N(-d2) - S e^-qT N(-d1)
    delta  = e^-qT N(d1) (call),  -e^-qT N(-d1) (put)
    gamma  = e^-qT n(d1) / (S v sqrt(T))
    vega   = S e^-qT n(d1) sqrt(T)
    theta  = -S e^-qT n(d1) v / (2 sqrt(T)) - r K e^-rT N(d2) + q S e^-qT N(d1)  (call)
             -S e^-qT n(d1) v / (2 sqrt(T)) + r K e^-rT N(-d2) - q S e^-qT N(-d1) (put)
    rho    = K T e^-rT N(d2) (call),  -K T e^-rT N(-d2) (put)
    vanna  = -e^-qT n(d1) d2 / v
    charm  = q e^-qT N(d1) - e^-qT n(d1) (2 (r - q) T - d2 v sqrt(T)) / (2 T v sqrt(T))
             (call; put: -q e^-qT N(-d1) - the same second term)
    vomma  = vega d1 d2 / v
    speed  = -gamma / S (d1 / (v sqrt(T)) + 1)

``theta`` and ``charm`` are rates of change as calendar time passes (``-d/dT``), per
year. Black-76 (forward ``F``) is the same with ``S = F`` and ``q = r``, except
``rho = -T V`` (the forward is held fixed when the rate moves).
"""

from __future__ import annotations

import math

__all__ = [
    "GREEKS",
    "black76_greeks",
    "black76_price",
    "bsm_greeks",
    "bsm_price",
    "implied_vol_bisection",
    "norm_cdf",
    "norm_pdf",
]

GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "charm", "vomma", "speed")


def norm_cdf(x: float) -> float:
    """Standard normal CDF through :func:`math.erfc` (accurate in the left tail)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def norm_pdf(x: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _check(spot: float, strike: float, vol: float, time_to_expiry: float) -> None:
    for name, value in (("spot", spot), ("strike", strike), ("vol", vol),
                        ("time_to_expiry", time_to_expiry)):  # fmt: skip
        if not (value > 0.0 and math.isfinite(value)):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")


def bsm_price(
    spot: float,
    strike: float,
    vol: float,
    time_to_expiry: float,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
    is_call: bool = True,
) -> float:
    """Black-Scholes-Merton price of a European call or put."""
    return bsm_greeks(spot, strike, vol, time_to_expiry, rate, dividend_yield, is_call)["price"]


def bsm_greeks(
    spot: float,
    strike: float,
    vol: float,
    time_to_expiry: float,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
    is_call: bool = True,
) -> dict[str, float]:
    """Price and the nine greeks (raw units: per 1.0 vol, per year, per 1.0 rate)."""
    _check(spot, strike, vol, time_to_expiry)
    sqrt_time = math.sqrt(time_to_expiry)
    vol_sqrt_time = vol * sqrt_time
    d1 = (
        math.log(spot / strike) + (rate - dividend_yield + 0.5 * vol * vol) * time_to_expiry
    ) / vol_sqrt_time
    d2 = d1 - vol_sqrt_time
    dividend_discount = math.exp(-dividend_yield * time_to_expiry)
    rate_discount = math.exp(-rate * time_to_expiry)
    density = norm_pdf(d1)
    gamma = dividend_discount * density / (spot * vol_sqrt_time)
    vega = spot * dividend_discount * density * sqrt_time
    decay = -spot * dividend_discount * density * vol / (2.0 * sqrt_time)
    vanna = -dividend_discount * density * d2 / vol
    charm_common = (
        -dividend_discount
        * density
        * (2.0 * (rate - dividend_yield) * time_to_expiry - d2 * vol_sqrt_time)
        / (2.0 * time_to_expiry * vol_sqrt_time)
    )
    vomma = vega * d1 * d2 / vol
    speed = -gamma / spot * (d1 / vol_sqrt_time + 1.0)
    if is_call:
        price = spot * dividend_discount * norm_cdf(d1) - strike * rate_discount * norm_cdf(d2)
        delta = dividend_discount * norm_cdf(d1)
        theta = (
            decay
            - rate * strike * rate_discount * norm_cdf(d2)
            + dividend_yield * spot * dividend_discount * norm_cdf(d1)
        )
        rho = strike * time_to_expiry * rate_discount * norm_cdf(d2)
        charm = dividend_yield * dividend_discount * norm_cdf(d1) + charm_common
    else:
        price = strike * rate_discount * norm_cdf(-d2) - spot * dividend_discount * norm_cdf(-d1)
        delta = -dividend_discount * norm_cdf(-d1)
        theta = (
            decay
            + rate * strike * rate_discount * norm_cdf(-d2)
            - dividend_yield * spot * dividend_discount * norm_cdf(-d1)
        )
        rho = -strike * time_to_expiry * rate_discount * norm_cdf(-d2)
        charm = -dividend_yield * dividend_discount * norm_cdf(-d1) + charm_common
    return {
        "price": price,
        "delta": delta,
        "gamma": gamma,
        "vega": vega,
        "theta": theta,
        "rho": rho,
        "vanna": vanna,
        "charm": charm,
        "vomma": vomma,
        "speed": speed,
    }


def black76_price(
    forward: float,
    strike: float,
    vol: float,
    time_to_expiry: float,
    rate: float = 0.0,
    is_call: bool = True,
) -> float:
    """Black-76 price of a European option on a forward / future."""
    return black76_greeks(forward, strike, vol, time_to_expiry, rate, is_call)["price"]


def black76_greeks(
    forward: float,
    strike: float,
    vol: float,
    time_to_expiry: float,
    rate: float = 0.0,
    is_call: bool = True,
) -> dict[str, float]:
    """Black-76 price and greeks: BSM with ``S = F``, ``q = r``; ``rho = -T V``."""
    values = bsm_greeks(forward, strike, vol, time_to_expiry, rate, rate, is_call)
    values["rho"] = -time_to_expiry * values["price"]
    return values


def implied_vol_bisection(
    price: float,
    spot: float,
    strike: float,
    time_to_expiry: float,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
    is_call: bool = True,
    *,
    low: float = 1e-6,
    high: float = 20.0,
    iterations: int = 200,
) -> float:
    """Implied vol by plain bisection on the BSM price (NaN when not bracketed).

    Slow and simple on purpose: the price is increasing in vol, so halving the bracket
    ``iterations`` times pins the root to ``(high - low) / 2**iterations`` unless the
    price itself cannot resolve it.
    """

    def value(vol: float) -> float:
        return bsm_price(spot, strike, vol, time_to_expiry, rate, dividend_yield, is_call)

    if not (value(low) <= price <= value(high)):
        return math.nan
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if value(middle) < price:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)
