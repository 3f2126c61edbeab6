"""Scalar Black-Scholes-Merton / Black-76 price and greeks, all in one evaluation.

Plain scalar functions like :mod:`fastgex._formulas`: the CPU kernels inline them and a
``numba.cuda`` path can compile the same bodies (only :mod:`math` and the vectorizable
helpers of :mod:`fastgex._fastmath`). They assume validated inputs (positive price,
strike, vol and time, finite rates); the kernels validate and count.

Everything comes out in *raw* units (per 1.0 of vol, per year, per 1.0 of rate);
:func:`fastgex.greeks` applies the documented unit scales.

The normal CDF never calls ``erfc``: with the Mills ratio ``R`` (see
:func:`fastgex._fastmath.mills_ratio`) ``N(-|d|) = n(d) R(|d|)``, so one exponential
``exp(-q T) n(d1)`` serves the density, both ``N(d1)`` and (through the identity
``K exp(-r T) n(d2) = S exp(-q T) n(d1)``) ``N(d2)``. Tails come out with relative
accuracy instead of as ``1 - (1 - tiny)``.
"""

from __future__ import annotations

import math

from fastgex._fastmath import exp_of_number, fast_exp, fast_log, mills_ratio, mills_ratio_pair
from fastgex._formulas import _log_from_parts, _log_ratio_parts
from fastgex._jit import scalar_function

INV_SQRT_TWO_PI = 0.3989422804014327

#: Order of the values :func:`bsm_greeks` returns (and of the kernel's outputs).
GREEK_ORDER: tuple[str, ...] = (
    "price",
    "delta",
    "gamma",
    "vega",
    "theta",
    "rho",
    "vanna",
    "charm",
    "vomma",
    "speed",
)


@scalar_function
def bsm_d1(spot, strike, vol, time_to_expiry, rate, dividend_yield):
    """The first half of :func:`bsm_greeks`: ``(d1, sqrt(T), 1/(vol sqrt(T)), 1/S)``.

    The log, the square root and the division, whose latencies come one after the
    other; the kernel runs this half over a chunk of rows before the other half
    (:func:`bsm_greeks_at`), so the out-of-order core overlaps more rows of each.
    """
    sqrt_time = math.sqrt(time_to_expiry)
    vol_sqrt_time = vol * sqrt_time
    # ln(S/K) from exponents and mantissas (no cancellation near the money, see
    # fastgex._formulas.bsm_gamma_parts); one shared division gives 1/(vol sqrt(T)),
    # 1/S and the atanh argument.
    log_exponent, top, bottom = _log_ratio_parts(spot, strike)
    shared = 1.0 / (bottom * vol_sqrt_time * spot)
    inverse_vol_sqrt_time = bottom * spot * shared
    inverse_spot = bottom * vol_sqrt_time * shared
    log_moneyness = _log_from_parts(log_exponent, top * vol_sqrt_time * spot * shared)
    carry = rate - dividend_yield
    d1 = (log_moneyness + (carry + 0.5 * vol * vol) * time_to_expiry) * inverse_vol_sqrt_time
    return d1, sqrt_time, inverse_vol_sqrt_time, inverse_spot


@scalar_function
def bsm_greeks(spot, strike, vol, time_to_expiry, rate, dividend_yield, is_call):
    """Price and greeks of one Black-Scholes-Merton option, raw units.

    Returns ``(price, delta, gamma, vega, theta, rho, vanna, charm, vomma, speed)``:
    ``delta = dV/dS``, ``gamma = d2V/dS2``, ``vega = dV/dvol``, ``theta = -dV/dT``
    (per year, calendar time passing), ``rho = dV/dr``, ``vanna = d2V/dS dvol``,
    ``charm = -d delta/dT`` (per year), ``vomma = d2V/dvol2``, ``speed = d3V/dS3``.
    Two divisions: one shared by ``1/(vol sqrt(T))``, ``1/S`` and ``ln(S/K)``
    (:func:`bsm_d1`), one by the two normal tails (:func:`bsm_greeks_at`).
    """
    d1, sqrt_time, inverse_vol_sqrt_time, inverse_spot = bsm_d1(
        spot, strike, vol, time_to_expiry, rate, dividend_yield
    )
    return bsm_greeks_at(
        spot,
        strike,
        vol,
        time_to_expiry,
        rate,
        dividend_yield,
        is_call,
        d1,
        sqrt_time,
        inverse_vol_sqrt_time,
        inverse_spot,
    )


#: Where :func:`near_money_prices` replaces the direct price: ``vol sqrt(T)`` and
#: ``|m| vol sqrt(T)`` (``m`` the midpoint of ``d1`` and ``d2``) both at most this.
NEAR_MONEY_LIMIT = 1e-2


@scalar_function
def _expm1_small(value):
    """``exp(value) - 1`` for ``|value| <= NEAR_MONEY_LIMIT``: Taylor to ``value**7``.

    The first term left out is below ``1e-18`` of the result there.
    """
    tail = 1.0 / 120.0 + value * (1.0 / 720.0 + value / 5040.0)
    return value * (1.0 + value * (0.5 + value * (1.0 / 6.0 + value * (1.0 / 24.0 + value * tail))))


@scalar_function
def near_money_prices(discounted_spot, spot_density, midpoint, vol_sqrt_time):
    """Call and put prices without the cancellation of the direct formula at small ``h``.

    ``h = vol sqrt(T)``; ``discounted_spot = S e^(-qT)`` and ``spot_density =
    S e^(-qT) n(d1)``, which is also ``K e^(-rT) n(d2)``. With ``G = N / n`` the call
    is ``spot_density (G(d1) - G(d2))`` and the put ``spot_density (G(-d2) - G(-d1))``;
    written as ``S e^(-qT) N(d1) - K e^(-rT) N(d2)`` they are differences of nearly
    equal terms, about ``eps / h`` relative at the money (4e-10 one minute from expiry
    at 0.1% vol). On the out-of-the-money side, ``x = -|m|`` with ``midpoint``
    ``m = d1 - h / 2``, the difference is the series ``h G1(x) + h**3 G3(x) / 24 +
    h**5 G5(x) / 1920`` in the odd derivatives ``Gk`` of ``G``, each ``p(x) + q(x) G(x)``
    (from ``G1 = 1 + x G``), and ``G(x) = R(|m|)``, the Mills ratio. The
    in-the-money side adds the forward intrinsic value ``S e^(-qT) (1 - e^(-m h))``
    (``m h = ln(F / K)``): a sum of two positive terms. Valid where ``h`` and ``|m| h``
    are at most ``NEAR_MONEY_LIMIT``, where the series' first term left out is below
    ``1e-16`` of the result.
    """
    distance = abs(midpoint)
    distance_sq = distance * distance
    h_sq = vol_sqrt_time * vol_sqrt_time
    h_fourth = h_sq * h_sq
    # G(x + h/2) - G(x - h/2) at x = -|m|, as p_part + q_part * G(x).
    p_part = vol_sqrt_time * (
        1.0
        + h_sq / 24.0 * (2.0 + distance_sq)
        + h_fourth / 1920.0 * (8.0 + distance_sq * (9.0 + distance_sq))
    )
    q_part = -(distance * vol_sqrt_time) * (
        1.0
        + h_sq / 24.0 * (3.0 + distance_sq)
        + h_fourth / 1920.0 * (15.0 + distance_sq * (10.0 + distance_sq))
    )
    out_of_the_money = spot_density * (p_part + q_part * mills_ratio(distance))
    # S e^-qT - K e^-rT: positive when the call is in the money (m > 0).
    forward_intrinsic = -discounted_spot * _expm1_small(-midpoint * vol_sqrt_time)
    call_itm = midpoint > 0.0
    call = out_of_the_money + (forward_intrinsic if call_itm else 0.0)
    put = out_of_the_money - (0.0 if call_itm else forward_intrinsic)
    return call, put


@scalar_function
def bsm_greeks_at(
    spot,
    strike,
    vol,
    time_to_expiry,
    rate,
    dividend_yield,
    is_call,
    d1,
    sqrt_time,
    inverse_vol_sqrt_time,
    inverse_spot,
):
    """The second half of :func:`bsm_greeks`, from the outputs of :func:`bsm_d1`.

    A NaN ``d1`` makes every value NaN (they all carry the density ``n(d1)``).
    """
    vol_sqrt_time = vol * sqrt_time
    carry = rate - dividend_yield
    d2 = d1 - vol_sqrt_time
    # A NaN argument here (an invalid row) needs no NaN out: the density below carries
    # d1's NaN into every value, so exp_of_number's one select fewer is safe.
    dividend_discount = exp_of_number(-dividend_yield * time_to_expiry)
    rate_discount = exp_of_number(-rate * time_to_expiry)
    # exp(-qT) n(d1); S times it is also K exp(-rT) n(d2).
    weighted_density = INV_SQRT_TWO_PI * fast_exp(-dividend_yield * time_to_expiry - 0.5 * d1 * d1)
    mills_d1, mills_d2 = mills_ratio_pair(abs(d1), abs(d2))
    tail1 = weighted_density * mills_d1  # exp(-qT) N(-|d1|)
    spot_density = spot * weighted_density  # also K exp(-rT) n(d2)
    tail2 = spot_density * mills_d2  # K exp(-rT) N(-|d2|)
    # Each side from its own tail: no 1 - (1 - tiny) cancellation.
    discounted_strike = strike * rate_discount
    below1 = d1 <= 0.0
    below2 = d2 <= 0.0
    dq_cdf_d1 = tail1 if below1 else dividend_discount - tail1  # e^-qT N(d1)
    dq_cdf_minus_d1 = dividend_discount - tail1 if below1 else tail1  # e^-qT N(-d1)
    kr_cdf_d2 = tail2 if below2 else discounted_strike - tail2  # K e^-rT N(d2)
    kr_cdf_minus_d2 = discounted_strike - tail2 if below2 else tail2  # K e^-rT N(-d2)

    gamma = weighted_density * inverse_vol_sqrt_time * inverse_spot
    vega = spot_density * sqrt_time
    inverse_vol = sqrt_time * inverse_vol_sqrt_time
    inverse_time = vol * vol * inverse_vol_sqrt_time * inverse_vol_sqrt_time
    # -S e^-qT n(d1) vol / (2 sqrt(T)), with vol/sqrt(T) = vol^2 / (vol sqrt(T)).
    decay = -0.5 * spot * weighted_density * vol * vol * inverse_vol_sqrt_time
    vanna = -weighted_density * d2 * inverse_vol
    charm_common = -weighted_density * (carry * inverse_vol_sqrt_time - 0.5 * d2 * inverse_time)
    vomma = vega * d1 * d2 * inverse_vol
    speed = -gamma * inverse_spot * (d1 * inverse_vol_sqrt_time + 1.0)
    # Near expiry at the money the direct price cancels (see near_money_prices);
    # selects, so the loop stays vectorized, and compiled out when no price is stored.
    midpoint = d1 - 0.5 * vol_sqrt_time
    near_call, near_put = near_money_prices(
        spot * dividend_discount, spot_density, midpoint, vol_sqrt_time
    )
    near = (vol_sqrt_time <= NEAR_MONEY_LIMIT) & (abs(midpoint) * vol_sqrt_time <= NEAR_MONEY_LIMIT)
    if is_call:
        price = near_call if near else spot * dq_cdf_d1 - kr_cdf_d2
        delta = dq_cdf_d1
        theta = decay - rate * kr_cdf_d2 + dividend_yield * spot * dq_cdf_d1
        rho = time_to_expiry * kr_cdf_d2
        charm = dividend_yield * dq_cdf_d1 + charm_common
    else:
        price = near_put if near else kr_cdf_minus_d2 - spot * dq_cdf_minus_d1
        delta = -dq_cdf_minus_d1
        theta = decay + rate * kr_cdf_minus_d2 - dividend_yield * spot * dq_cdf_minus_d1
        rho = -time_to_expiry * kr_cdf_minus_d2
        charm = -dividend_yield * dq_cdf_minus_d1 + charm_common
    return price, delta, gamma, vega, theta, rho, vanna, charm, vomma, speed


@scalar_function
def black76_greeks(forward, strike, vol, time_to_expiry, rate, is_call):
    """Price and greeks of one Black-76 option (futures options), raw units.

    Black-76 is Black-Scholes-Merton on ``S = F`` with ``q = r``, except rho: with the
    forward held fixed, ``dV/dr = -T V``. Delta, gamma and speed are per unit of the
    forward.
    """
    price, delta, gamma, vega, theta, rho, vanna, charm, vomma, speed = bsm_greeks(
        forward, strike, vol, time_to_expiry, rate, rate, is_call
    )
    rho = -time_to_expiry * price
    return price, delta, gamma, vega, theta, rho, vanna, charm, vomma, speed


# --- Normalized Black prices for the implied-vol solver ----------------------------
#
# With forward F, strike K, x = ln(F/K) and total vol s = vol sqrt(T), the undiscounted
# Black call divided by sqrt(F K) is b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2).
# Puts and in-the-money calls reduce to an out-of-the-money call (x <= 0) by parity and
# the symmetry b_put(x) = b_call(-x), so the solver only needs x <= 0. There the
# normalized vega is A = e^{x/2} n(d1) = exp(-(x/s)^2/2 - s^2/8) / sqrt(2 pi), and
# both N terms are A times a Mills ratio: one exponential, no cancellation of tails.

LOG_SQRT_TWO_PI = 0.9189385332046728


@scalar_function
def normalized_black_otm(log_moneyness, total_vol):
    """``(b, ln b, ln(e^{x/2} - b), ln A, A)`` of an out-of-the-money call, ``x <= 0``.

    ``b`` is the normalized price, ``e^{x/2} - b`` its distance to the upper bound and
    ``A = db/ds`` the normalized vega. Logarithms are formed from their parts (``ln A``
    plus the log of a Mills-ratio sum), so they stay finite where ``b`` underflows.
    """
    ratio = log_moneyness / total_vol
    half = 0.5 * total_vol
    d1 = ratio + half
    log_vega = -0.5 * ratio * ratio - 0.5 * half * half - LOG_SQRT_TWO_PI
    vega = fast_exp(log_vega)
    mills_d1 = mills_ratio(abs(d1))
    mills_d2 = mills_ratio(half - ratio)  # -d2 >= 0 because x <= 0
    # b = A (R(-d1) - R(-d2)) where d1 <= 0, else e^{x/2} - A (R(d1) + R(-d2)).
    difference = mills_d1 - mills_d2
    total = mills_d1 + mills_d2
    upper = fast_exp(0.5 * log_moneyness)
    low = d1 <= 0.0
    price = vega * difference if low else upper - vega * total
    gap = upper - vega * difference if low else vega * total
    log_price = log_vega + fast_log(difference) if low else fast_log(price)
    log_gap = fast_log(gap) if low else log_vega + fast_log(total)
    return price, log_price, log_gap, log_vega, vega
