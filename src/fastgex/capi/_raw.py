"""Kernels behind the raw-array calls of the C ABI, and the compiled per-contract functions.

The math is :mod:`fastgex._formulas` (the one source of gamma); these loops only add the
validation the C caller cannot be trusted to have done: an invalid row gets NaN and is
counted, and never reaches a total.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fastgex._formulas import black76_gamma, bsm_gamma
from fastgex._jit import CACHE, kernel, scalar_function

#: Dealer signs (calls, puts) per convention code of ``fastgex.h`` (enum order).
CONVENTION_SIGNS = np.array([[-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
#: Unit codes of ``fastgex.h``.
UNIT_CODES = ("dollars_per_1pct", "dollars_per_point", "shares_per_dollar")


def unit_factor(spot: float, unit_code: int) -> float:
    """``spot**2 / 100``, ``spot`` or ``1`` (see :func:`fastgex.reference.unit_factor`)."""
    return (spot * spot * 0.01, spot, 1.0)[unit_code]


@scalar_function
def _valid_positive(value: float) -> bool:
    return value > 0.0 and value < math.inf


@kernel
def gamma_rows(spot, strike, vol, time_to_expiry, rate, dividend_yield, out):
    """BSM gamma per row into ``out``; NaN for invalid rows. Returns the invalid count."""
    invalid = 0
    for row in numba.prange(strike.size):
        ok = (
            _valid_positive(strike[row])
            and _valid_positive(vol[row])
            and _valid_positive(time_to_expiry[row])
        )
        out[row] = (
            bsm_gamma(spot, strike[row], vol[row], time_to_expiry[row], rate, dividend_yield)
            if ok
            else np.nan
        )
        invalid += 0 if ok else 1
    return invalid


@kernel
def gex_rows(
    spot,
    strike,
    vol,
    time_to_expiry,
    open_interest,
    is_call,
    scale,
    call_sign,
    put_sign,
    rate,
    dividend_yield,
    out,
    write_rows,
):
    """Signed GEX per row (``scale`` = multiplier x unit factor); returns (total, invalid)."""
    total = 0.0
    invalid = 0
    for row in numba.prange(strike.size):
        flag = is_call[row]
        quantity = open_interest[row]
        ok = (
            _valid_positive(strike[row])
            and _valid_positive(vol[row])
            and _valid_positive(time_to_expiry[row])
            and quantity >= 0.0
            and quantity < math.inf
            and (flag == 0 or flag == 1)
        )
        sign = call_sign if flag == 1 else put_sign
        value = np.nan
        if ok:
            gamma = bsm_gamma(
                spot, strike[row], vol[row], time_to_expiry[row], rate, dividend_yield
            )
            value = sign * quantity * scale * gamma
            total += value
        else:
            invalid += 1
        if write_rows:
            out[row] = value
    return total, invalid


_GAMMA_SIGNATURE = numba.float64(
    numba.float64, numba.float64, numba.float64, numba.float64, numba.float64, numba.float64
)
_BLACK76_SIGNATURE = numba.float64(
    numba.float64, numba.float64, numba.float64, numba.float64, numba.float64
)


# numba.cfunc is the one decorator not in fastgex._jit (it makes a C entry point, not a
# kernel); it reuses that module's cache policy.
@numba.cfunc(_GAMMA_SIGNATURE, cache=CACHE, error_model="numpy")
def gamma_cfunc(spot, strike, vol, time_to_expiry, rate, dividend_yield):
    """C-callable BSM gamma: NaN unless spot, strike, vol and time are positive and finite."""
    if not (
        _valid_positive(spot)
        and _valid_positive(strike)
        and _valid_positive(vol)
        and _valid_positive(time_to_expiry)
        and math.isfinite(rate)
        and math.isfinite(dividend_yield)
    ):
        return np.nan
    return bsm_gamma(spot, strike, vol, time_to_expiry, rate, dividend_yield)


@numba.cfunc(_BLACK76_SIGNATURE, cache=CACHE, error_model="numpy")
def black76_gamma_cfunc(forward, strike, vol, time_to_expiry, rate):
    """C-callable Black-76 gamma: NaN unless forward, strike, vol and time are valid."""
    if not (
        _valid_positive(forward)
        and _valid_positive(strike)
        and _valid_positive(vol)
        and _valid_positive(time_to_expiry)
        and math.isfinite(rate)
    ):
        return np.nan
    return black76_gamma(forward, strike, vol, time_to_expiry, rate)
