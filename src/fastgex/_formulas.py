"""Scalar Black-Scholes-Merton and Black-76 formulas, written once.

These are plain functions: the CPU kernels inline them (see :mod:`fastgex._jit`) and
a ``numba.cuda`` path can compile the same bodies as device functions. They assume
validated inputs (positive price, strike, vol and time); validation lives in the
kernels so that bad rows are counted, not silently turned into NaN.
"""

from __future__ import annotations

import math

from fastgex._fastmath import fast_exp, fast_log
from fastgex._jit import scalar_function

INV_SQRT_TWO_PI = 0.3989422804014327


@scalar_function
def bsm_gamma(
    spot: float,
    strike: float,
    vol: float,
    time_to_expiry: float,
    rate: float,
    dividend_yield: float,
) -> float:
    """Black-Scholes-Merton gamma per share (calls and puts alike).

    ``exp(-q T) * pdf(d1) / (S * vol * sqrt(T))`` with
    ``d1 = (ln(S/K) + (r - q + vol**2/2) T) / (vol sqrt(T))``. The discount factor and
    the normal density share one ``exp``; ``ln(S/K)`` is taken as the log of a ratio
    (not a difference of logs) to avoid cancellation near the money.
    """
    inverse_vol_sqrt_time = 1.0 / (vol * math.sqrt(time_to_expiry))
    d1 = (
        fast_log(spot / strike) + (rate - dividend_yield + 0.5 * vol * vol) * time_to_expiry
    ) * inverse_vol_sqrt_time
    density = fast_exp(-dividend_yield * time_to_expiry - 0.5 * d1 * d1)
    return INV_SQRT_TWO_PI * density * inverse_vol_sqrt_time / spot


@scalar_function
def black76_gamma(
    forward: float, strike: float, vol: float, time_to_expiry: float, rate: float
) -> float:
    """Black-76 gamma per unit of the forward (futures options).

    ``exp(-r T) * pdf(d1) / (F * vol * sqrt(T))`` with
    ``d1 = (ln(F/K) + vol**2 T / 2) / (vol sqrt(T))``.
    """
    inverse_vol_sqrt_time = 1.0 / (vol * math.sqrt(time_to_expiry))
    d1 = (fast_log(forward / strike) + 0.5 * vol * vol * time_to_expiry) * inverse_vol_sqrt_time
    density = fast_exp(-rate * time_to_expiry - 0.5 * d1 * d1)
    return INV_SQRT_TWO_PI * density * inverse_vol_sqrt_time / forward
