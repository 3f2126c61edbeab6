"""Kernels behind the raw-array calls of the C ABI, and the compiled per-contract functions.

The math is :mod:`fastgex._formulas` (the one source of gamma) and the signed GEX runs
the fused kernel of :func:`fastgex.gex` itself; what is added is the validation the C
caller cannot be trusted to have done: an invalid row is counted and never reaches a
total.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fastgex._formulas import black76_gamma, bsm_gamma
from fastgex._jit import c_function, kernel, scalar_function
from fastgex._kernels import KernelConfig, gex_kernel, needs_exact_sums, net_of, rows_per_block
from fastgex.conventions import Unit

#: Dealer signs (calls, puts) per convention code of ``fastgex.h`` (enum order).
CONVENTION_SIGNS = np.array([[-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
#: Unit codes of ``fastgex.h``.
UNIT_CODES = ("dollars_per_1pct", "dollars_per_point", "shares_per_dollar")


@scalar_function
def _valid_positive(value: float) -> bool:
    return value > 0.0 and value < math.inf


@scalar_function
def _gamma_row(spot, strike, vol, time_to_expiry, rate, dividend_yield, out, row):
    """Gamma of one row into ``out[row]`` (NaN if invalid); returns 1 if invalid.

    Branch-free (selects, invalid rows priced on harmless inputs) so the loop vectorizes.
    """
    row_strike = strike[row]
    row_vol = vol[row]
    row_time = time_to_expiry[row]
    largest = row_strike if row_strike > row_vol else row_vol
    largest = row_time if row_time > largest else largest
    ok = (row_strike > 0.0) & (row_vol > 0.0) & (row_time > 0.0) & (largest < math.inf)
    value = bsm_gamma(
        spot,
        row_strike if ok else 1.0,
        row_vol if ok else 1.0,
        row_time if ok else 1.0,
        rate,
        dividend_yield,
    )
    out[row] = value if ok else np.nan
    return np.int64(not ok)


@kernel
def gamma_rows(spot, strike, vol, time_to_expiry, rate, dividend_yield, out):
    """BSM gamma per row into ``out``; NaN for invalid rows. Returns the invalid count."""
    invalid = 0
    for row in numba.prange(strike.size):
        invalid += _gamma_row(spot, strike, vol, time_to_expiry, rate, dividend_yield, out, row)
    return invalid


@kernel(parallel=False)
def gamma_rows_serial(spot, strike, vol, time_to_expiry, rate, dividend_yield, out):
    """:func:`gamma_rows` on the calling thread (small inputs: no worker wake-up)."""
    invalid = 0
    for row in range(strike.size):
        invalid += _gamma_row(spot, strike, vol, time_to_expiry, rate, dividend_yield, out, row)
    return invalid


# Writable on purpose, like the callers' arrays: numba's dispatch of read-only arrays
# is slow (see fastgex.capi._embedded._input).
_NO_GROUPS = np.empty(0, dtype=np.int32)
_NO_STATUS = np.empty(0, dtype=np.int8)
_EMPTY = np.empty(0)
_NO_EXACT = np.empty(0, dtype=np.uint8)
_EXACT = np.ones(1, dtype=np.uint8)


def _slot(value: float) -> np.ndarray:
    return np.full(1, value)


def contract_gex(
    spot: float,
    strike: np.ndarray,
    vol: np.ndarray,
    time_to_expiry: np.ndarray,
    open_interest: np.ndarray,
    is_call: np.ndarray,
    multiplier: float,
    rate: float,
    dividend_yield: float,
    convention: int,
    unit: int,
    out: np.ndarray,
) -> tuple[float, int]:
    """Signed GEX of one underlying's contracts through the fused kernel of :func:`fastgex.gex`.

    The same compiled kernel, validation and compensated, deterministic sums as the
    chain path, with no floor on the time to expiry. ``is_call`` is int8 1/0, which is
    exactly the kernel's uint8 call/put code (anything else is an invalid row).
    ``out`` (length n, or empty for none) gets each row's GEX, 0.0 for invalid rows.
    Returns ``(total, invalid_rows)``.
    """
    n_rows = strike.size
    unit_choice = Unit(UNIT_CODES[unit])
    run = gex_kernel(KernelConfig(unit_power=unit_choice.price_power))
    call_sign, put_sign = CONVENTION_SIGNS[convention]
    underlying_id = np.zeros(n_rows, dtype=np.int32)
    arguments = (
        strike,
        vol,
        time_to_expiry,
        open_interest,
        is_call.view(np.uint8),
        underlying_id,
        _slot(spot),
        _slot(rate),
        _slot(dividend_yield),
        _EMPTY,
        _EMPTY,
        _slot(multiplier),
        call_sign,
        put_sign,
        unit_choice.scale,
        0.0,
        1,
        rows_per_block(n_rows, 1),
        out,
        _NO_STATUS,
        _NO_GROUPS,
        0,
    )
    sums, rows, _, _, _, details = run(*arguments, _NO_EXACT)
    net = net_of(sums, details[:, :2])
    if needs_exact_sums(sums, net, details[:, 2:])[0]:  # heavy cancellation: exact pass
        sums, rows, _, _, _, details = run(*arguments, _EXACT)
        net = net_of(sums, details[:, :2])
    return float(net[0]), int(n_rows - rows[0, 0])


_GAMMA_SIGNATURE = numba.float64(
    numba.float64, numba.float64, numba.float64, numba.float64, numba.float64, numba.float64
)
_BLACK76_SIGNATURE = numba.float64(
    numba.float64, numba.float64, numba.float64, numba.float64, numba.float64
)


# C entry points through fastgex._jit.c_function: the kernels' cache and floating-point
# policy, so the inlined formula rounds as it does in the kernels.
@c_function(_GAMMA_SIGNATURE)
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


@c_function(_BLACK76_SIGNATURE)
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
