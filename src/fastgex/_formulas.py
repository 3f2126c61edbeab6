"""Scalar Black-Scholes-Merton and Black-76 formulas, written once.

These are plain functions: the CPU kernels inline them (see :mod:`fastgex._jit`) and
a ``numba.cuda`` path can compile the same bodies as device functions. They assume
validated inputs (positive price, strike, vol and time); validation lives in the
kernels so that bad rows are counted, not silently turned into NaN.
"""

from __future__ import annotations

import math

from fastgex._fastmath import (
    _EXPONENT_BIAS,
    _LN2_HIGH,
    _LN2_LOW,
    _MANTISSA_MASK,
    _SMALLEST_NORMAL,
    _TWO_POW_54,
    atanh_series,
    bits_float,
    exp_of_number,
    float_bits,
)
from fastgex._jit import scalar_function

INV_SQRT_TWO_PI = 0.3989422804014327
_SQRT_TWO = 1.4142135623730951
_SQRT_HALF = 0.7071067811865476


@scalar_function
def _exponent_mantissa(value: float) -> tuple[float, float]:
    """``value = 2**exponent * mantissa`` with ``mantissa`` in ``[1, 2)`` (positive, finite).

    Branch-free (subnormals are scaled into the normal range with a select).
    """
    is_subnormal = value < _SMALLEST_NORMAL
    scaled = value * _TWO_POW_54 if is_subnormal else value
    bits = float_bits(scaled)
    exponent = ((bits >> 52) & 0x7FF) - _EXPONENT_BIAS - (54 if is_subnormal else 0)
    mantissa = bits_float((bits & _MANTISSA_MASK) | (_EXPONENT_BIAS << 52))
    return float(exponent), mantissa


@scalar_function
def _log_ratio_parts(numerator: float, denominator: float) -> tuple[float, float, float]:
    """Split ``ln(numerator / denominator)`` as ``offset + 2 atanh(top / bottom)``.

    With ``a = 2**i m`` and ``b = 2**j n`` (mantissas in ``[1, 2)``),
    ``ln(a/b) = (i - j) ln2 + ln(m/n')`` where ``n'`` is ``n``, ``2n`` or ``n/2`` so that
    ``m/n'`` lies in ``[sqrt(1/2), sqrt(2)]``; ``ln(m/n') = 2 atanh((m - n')/(m + n'))``.
    ``m - n'`` is exact (Sterbenz), so there is no cancellation near ``a = b`` and no
    division ``a/b``: the caller folds ``1/bottom`` into a division it needs anyway.
    """
    exponent_a, mantissa_a = _exponent_mantissa(numerator)
    exponent_b, mantissa_b = _exponent_mantissa(denominator)
    # Only one of the two shifts can apply for a given numerator mantissa, so with the
    # numerator loop-invariant (spot) the choice below is hoisted and a row pays one
    # compare and two selects.
    numerator_high = mantissa_a >= _SQRT_TWO
    shift_sign = 1.0 if numerator_high else -1.0
    threshold = mantissa_a * (_SQRT_HALF if numerator_high else -_SQRT_TWO)
    shift = shift_sign * mantissa_b < threshold
    mantissa_b = mantissa_b * ((2.0 if numerator_high else 0.5) if shift else 1.0)
    exponent = (exponent_a - exponent_b) + (shift_sign if shift else 0.0)
    return exponent, mantissa_a - mantissa_b, mantissa_a + mantissa_b


@scalar_function
def _log_from_parts(exponent: float, ratio: float) -> float:
    """``exponent ln2 + 2 atanh(ratio)`` for ``|ratio| <= 0.1716``."""
    series = atanh_series(ratio * ratio)
    return (exponent * _LN2_HIGH + 2.0 * ratio * series) + exponent * _LN2_LOW


@scalar_function
def bsm_gamma_parts(
    spot: float,
    strike: float,
    vol: float,
    time_to_expiry: float,
    rate: float,
    dividend_yield: float,
) -> tuple[float, float]:
    """Black-Scholes-Merton gamma as ``factor * exp(exponent)``: returns ``(exponent, factor)``.

    ``gamma = exp(-q T) * pdf(d1) / (S * vol * sqrt(T))`` with
    ``d1 = (ln(S/K) + (r - q + vol**2/2) T) / (vol sqrt(T))``, so
    ``exponent = -q T - d1**2 / 2`` and ``factor = 1 / (sqrt(2 pi) S vol sqrt(T))``: the
    discount factor and the normal density share one ``exp``. Kernels that are bound by
    the length of this dependency chain compute the parts of many rows first and the
    ``exp`` of them in a second loop (see :func:`fastgex._gex_kernel.segment_sums`).
    ``ln(S/K)`` comes from the exponents and mantissas of ``S`` and ``K`` (see
    :func:`_log_ratio_parts`): no cancellation near the money and no division ``S/K``.
    The one division left per row is shared by ``1/(vol sqrt(T))`` and the atanh
    argument; ``1/S`` is loop-invariant per underlying. Assumes validated (positive,
    finite) inputs.
    """
    vol_sqrt_time = vol * math.sqrt(time_to_expiry)
    log_exponent, top, bottom = _log_ratio_parts(spot, strike)
    shared = 1.0 / (bottom * vol_sqrt_time)
    inverse_vol_sqrt_time = bottom * shared
    log_moneyness = _log_from_parts(log_exponent, top * vol_sqrt_time * shared)
    d1 = (
        log_moneyness + (rate - dividend_yield + 0.5 * vol * vol) * time_to_expiry
    ) * inverse_vol_sqrt_time
    exponent = -dividend_yield * time_to_expiry - 0.5 * d1 * d1
    # Grouped so the spot's part is loop-invariant: kernels keep the written order.
    return exponent, inverse_vol_sqrt_time * (INV_SQRT_TWO_PI / spot)


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

    ``exp(-q T) * pdf(d1) / (S * vol * sqrt(T))``; see :func:`bsm_gamma_parts`.
    Assumes validated (positive, finite) inputs.
    """
    exponent, factor = bsm_gamma_parts(spot, strike, vol, time_to_expiry, rate, dividend_yield)
    return factor * exp_of_number(exponent)


@scalar_function
def black76_gamma_parts(
    forward: float, strike: float, vol: float, time_to_expiry: float, rate: float
) -> tuple[float, float]:
    """Black-76 gamma as ``factor * exp(exponent)``: returns ``(exponent, factor)``.

    ``gamma = exp(-r T) * pdf(d1) / (F * vol * sqrt(T))`` with
    ``d1 = (ln(F/K) + vol**2 T / 2) / (vol sqrt(T))``; same one-division scheme as
    :func:`bsm_gamma_parts`, with ``1/F`` folded into the shared division.
    """
    vol_sqrt_time = vol * math.sqrt(time_to_expiry)
    log_exponent, top, bottom = _log_ratio_parts(forward, strike)
    shared = 1.0 / (bottom * vol_sqrt_time * forward)
    inverse_vol_sqrt_time = bottom * forward * shared
    log_moneyness = _log_from_parts(log_exponent, top * vol_sqrt_time * forward * shared)
    d1 = (log_moneyness + 0.5 * vol * vol * time_to_expiry) * inverse_vol_sqrt_time
    exponent = -rate * time_to_expiry - 0.5 * d1 * d1
    return exponent, INV_SQRT_TWO_PI * bottom * shared


@scalar_function
def black76_gamma(
    forward: float, strike: float, vol: float, time_to_expiry: float, rate: float
) -> float:
    """Black-76 gamma per unit of the forward (futures options).

    ``exp(-r T) * pdf(d1) / (F * vol * sqrt(T))``; see :func:`black76_gamma_parts`.
    """
    exponent, factor = black76_gamma_parts(forward, strike, vol, time_to_expiry, rate)
    return factor * exp_of_number(exponent)
