"""Vectorized implied volatility from option prices (Black-76 form; BSM through its forward).

Method (per row, in normalized units; see :func:`fastgex._greeks_formulas.normalized_black_otm`):

1. ``x = ln(F/K)``, ``beta = price / (D sqrt(F K))`` with ``D = e^{-rT}`` (both
   computed in the kernel, ``F = S e^{(r-q)T}`` for BSM rows);
   in-the-money options lose their intrinsic value and puts become calls at ``-x``
   (parity), so every row solves ``b(x, s) = beta`` with ``x <= 0`` for the total vol
   ``s = vol sqrt(T)``. ``beta <= 0`` (no time value) and ``beta >= e^{x/2}`` (above the
   no-arbitrage bound) have no solution: NaN with a reason.
2. ``b`` is convex in ``s`` below ``s_c = sqrt(2|x|)`` and concave above. Below
   (``beta < b(x, s_c)``), ``ln b`` is nearly linear in ``u = 1/s^2`` (``ln b ~ -x^2 u/2``),
   so the iteration is Householder's third-order method on ``ln b - ln beta`` in ``u``,
   from ``s_c``. Above, it is the same method on ``b - beta`` in ``s``, from the larger
   of ``s_c`` and an asymptotic guess ``2 z`` with ``N(-z) = (e^{x/2} - beta) /
   (e^{x/2} + e^{-x/2})`` (Abramowitz & Stegun 26.2.23 for ``z``).
3. Every step keeps a bracket ``[low, high]`` of the root (from the sign of
   ``b - beta``) and bisects when a step would leave it, so it cannot diverge.

Rows are solved in strips of ``STRIP_ROWS``: each iteration is one vectorized pass
over the strip's unconverged state, and a strip stops when every row's last step was
below ``STEP_TOLERANCE`` (relative), so rows cost the iterations their strip needs
(typically 2-4) and the loop has no per-row branches.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fastgex._fastmath import fast_exp, fast_log
from fastgex._greeks_formulas import normalized_black_otm
from fastgex._jit import kernel, scalar_function
from fastgex._kernel_common import (
    _BAD_FORWARD,
    _BAD_RATE,
    _BAD_STRIKE,
    _BAD_TIME,
    _EXPIRED,
    _MISSING,
    _UNKNOWN_TYPE,
    CALL_CODE,
    MISSING_CODE,
    PUT_CODE,
    REASONS,
    STRIP_ROWS,
    _finite,
)

#: Implied-vol reasons; their codes follow the shared :data:`REASONS` codes.
IV_REASONS: tuple[str, ...] = (
    "invalid_price",
    "price_below_intrinsic",
    "price_above_upper_bound",
    "not_converged",
    "invalid_spot",
)
_BAD_PRICE = len(REASONS) + 1
_BELOW_INTRINSIC = len(REASONS) + 2
_ABOVE_BOUND = len(REASONS) + 3
_NOT_CONVERGED = len(REASONS) + 4
_BAD_SPOT = len(REASONS) + 5

#: A strip stops iterating when every row's last step is below this (relative to s).
STEP_TOLERANCE = 1e-12
#: After a third-order step of relative size h the relative error is about
#: ``CUBIC_SAFETY * h**3`` (a generous constant), which counts as the step size: a row
#: whose step was below ~1e-5 needs no confirming step.
CUBIC_SAFETY = 1e3
#: Iterations before a row that has not met the tolerance is reported not converged.
MAX_ITERATIONS = 60
#: A last step up to this (relative) still counts as converged at the iteration limit.
ACCEPT_TOLERANCE = 1e-9

_AS_C0 = 2.515517
_AS_C1 = 0.802853
_AS_C2 = 0.010328
_AS_D1 = 1.432788
_AS_D2 = 0.189269
_AS_D3 = 0.001308


@scalar_function
def _tail_quantile(probability):
    """``z`` with ``N(-z) ~ probability`` for ``probability`` in ``(0, 0.5]`` (error < 4.5e-4)."""
    t = math.sqrt(-2.0 * fast_log(probability))
    numerator = _AS_C0 + t * (_AS_C1 + t * _AS_C2)
    denominator = 1.0 + t * (_AS_D1 + t * (_AS_D2 + t * _AS_D3))
    return t - numerator / denominator


@scalar_function
def _setup(price, strike, forward, discount, is_call):
    """Normalized problem of one row: ``(x, beta)`` with ``x <= 0``, and its status.

    ``beta`` is the time value over ``D sqrt(F K)``; the status is 0 (solvable) or a
    price reason.
    """
    log_moneyness = fast_log(forward / strike)
    scale = 1.0 / (discount * math.sqrt(forward * strike))
    # Intrinsic value and bound in price units, so a price exactly at either is caught.
    intrinsic = discount * (forward - strike if is_call else strike - forward)
    intrinsic = intrinsic if intrinsic > 0.0 else 0.0
    bound = discount * (forward if is_call else strike)
    time_value = (price - intrinsic) * scale
    status = 0
    if not (price > intrinsic):
        status = _BELOW_INTRINSIC
    if not (price < bound):
        status = _ABOVE_BOUND
    if not (price > 0.0 and price < np.inf):
        status = _BAD_PRICE
    otm_moneyness = -abs(log_moneyness)
    return otm_moneyness, time_value, status


@scalar_function
def _householder_factor(first, second):
    """Householder's third-order correction factor of a Newton step ``nu``.

    ``first = nu g2 / g1`` and ``second = nu**2 g3 / g1`` (``g1, g2, g3`` the
    derivatives). Far from the root the correction is not to be trusted (it can even
    flip the step): plain Newton there.
    """
    factor = (1.0 + 0.5 * first) / (1.0 + first + second / 6.0)
    trusted = (abs(first) < 0.5) & (abs(second) < 0.5) & (factor > 0.0)
    return (factor if trusted else 1.0), trusted


@scalar_function
def _step(log_moneyness, target, log_target, total_vol, low, high, lower_region):
    """One safeguarded Householder step: ``(new total vol, new low, new high, cubic)``.

    ``cubic`` says the step was a third-order step inside the bracket, so its error is
    about the cube of its size (the caller can stop without a confirming step).
    """
    price, log_price, _, log_vega, vega = normalized_black_otm(log_moneyness, total_vol)
    below = price < target
    low = total_vol if below and total_vol > low else low
    high = total_vol if (not below) and total_vol < high else high
    inverse = 1.0 / total_vol
    x_squared = log_moneyness * log_moneyness
    inverse_sq = inverse * inverse
    # b''/b' and b'''/b' of the normalized price in s.
    eta = x_squared * inverse_sq * inverse - 0.25 * total_vol
    tau = eta * eta - 3.0 * x_squared * inverse_sq * inverse_sq - 0.25
    if lower_region:
        # g = ln b - ln beta in u = 1/s^2, derivatives by the chain rule, all over g_s.
        ratio = fast_exp(log_vega - log_price)  # b'/b, finite where b underflows
        objective = log_price - log_target
        s_sq = total_vol * total_vol
        ds_du = -0.5 * s_sq * total_vol
        d2s_du2 = 0.75 * s_sq * s_sq * total_vol
        d3s_du3 = -1.875 * s_sq * s_sq * s_sq * total_vol
        newton = -objective / (ratio * ds_du)
        second = (eta - ratio) * ds_du + d2s_du2 / ds_du
        third = (
            (tau - 3.0 * eta * ratio + 2.0 * ratio * ratio) * ds_du * ds_du
            + 3.0 * (eta - ratio) * d2s_du2
            + d3s_du3 / ds_du
        )
        factor, trusted = _householder_factor(newton * second, newton * newton * third)
        step_u = newton * factor
        new_u = inverse_sq + step_u
        candidate = 1.0 / math.sqrt(new_u) if new_u > 0.0 else -1.0
    else:
        newton = -(price - target) / vega
        factor, trusted = _householder_factor(newton * eta, newton * newton * tau)
        step_s = newton * factor
        candidate = total_vol + step_s
    # A step that small is convergence, even if rounding puts it just outside the bracket.
    settled = abs(candidate - total_vol) <= 1e-9 * total_vol
    inside = ((candidate > low) & (candidate < high)) | settled
    bisected = 0.5 * (low + high) if high < np.inf else 2.0 * total_vol
    return (candidate if inside else bisected), low, high, trusted & inside


@scalar_function
def _start(log_moneyness, target):
    """Region and starting point: ``(lower_region, s0, low, high)``."""
    critical = math.sqrt(-2.0 * log_moneyness)
    critical_price = normalized_black_otm(log_moneyness, critical)[0]
    lower_region = target < critical_price
    upper = fast_exp(0.5 * log_moneyness)
    spread = upper + fast_exp(-0.5 * log_moneyness)
    probability = (upper - target) / spread
    probability = probability if probability < 0.5 else 0.5
    guess = 2.0 * _tail_quantile(probability)
    guess = guess if guess > critical else critical
    start = critical if lower_region else guess
    start = start if start > 0.0 else 1e-8  # x = 0: s_c = 0
    low = 0.0 if lower_region else critical
    high = critical if lower_region else np.inf
    return lower_region, start, low, high


@scalar_function
def _forward_discount(underlying_price, rate, dividend_yield, time_to_expiry, black76):
    """``(F, D)``: the row's forward and discount factor ``e^{-rT}``."""
    discount = fast_exp(-rate * time_to_expiry)
    growth = fast_exp((rate - dividend_yield) * time_to_expiry)
    forward = underlying_price if black76 else underlying_price * growth
    return forward, discount


@scalar_function
def row_status(row, price, strike, time_to_expiry, option_code, underlying, rate,
               dividend_yield, black76):  # fmt: skip
    """Reason code of a row whose inputs are invalid (0 when the inputs are fine)."""
    code = np.int8(option_code[row])
    if code == MISSING_CODE:
        return _MISSING
    if code != CALL_CODE and code != PUT_CODE:
        return _UNKNOWN_TYPE
    if not (strike[row] > 0.0 and _finite(strike[row])):
        return _BAD_STRIKE
    if not _finite(time_to_expiry[row]):
        return _BAD_TIME
    if time_to_expiry[row] <= 0.0:
        return _EXPIRED
    if not (underlying[row] > 0.0 and _finite(underlying[row])):
        return _BAD_FORWARD if black76 else _BAD_SPOT
    if not (_finite(rate[row]) and (black76 or _finite(dividend_yield[row]))):
        return _BAD_RATE
    if not (price[row] > 0.0 and _finite(price[row])):
        return _BAD_PRICE
    forward, discount = _forward_discount(
        underlying[row], rate[row], dividend_yield[row], time_to_expiry[row], black76
    )
    if not (_finite(forward) and discount > 0.0 and _finite(discount)):
        return _BAD_RATE  # finite inputs, but e^{-rT} or the forward overflows
    return 0


@kernel
def run(price, strike, time_to_expiry, option_code, underlying, rate, dividend_yield, black76,
        vol_out, status_out, iterations_out):  # fmt: skip
    """Implied vol of every row into ``vol_out`` (NaN and a status code where none).

    Every input is per row: ``underlying`` is the spot (BSM: ``F = S e^{(r-q)T}``) or,
    with ``black76``, the forward (``dividend_yield`` unused). ``iterations_out`` (one
    int per strip) gets the iterations each strip ran. Returns the number of rows
    without a vol.
    """
    n_rows = strike.size
    n_strips = (n_rows + STRIP_ROWS - 1) // STRIP_ROWS
    failed_per_strip = np.zeros(n_strips, dtype=np.int64)
    for strip in numba.prange(n_strips):
        base = numba.uint64(strip * STRIP_ROWS)
        length = numba.uint64(min(STRIP_ROWS, n_rows - strip * STRIP_ROWS))
        moneyness = np.empty(STRIP_ROWS)
        target = np.empty(STRIP_ROWS)
        log_target = np.empty(STRIP_ROWS)
        total_vol = np.empty(STRIP_ROWS)
        low = np.empty(STRIP_ROWS)
        high = np.empty(STRIP_ROWS)
        lower = np.empty(STRIP_ROWS, dtype=np.bool_)
        solvable = np.empty(STRIP_ROWS, dtype=np.bool_)
        last_step = np.empty(STRIP_ROWS)
        n_solvable = 0
        for offset in range(length):
            row = base + offset
            code = option_code[row]
            row_strike = strike[row]
            row_time = time_to_expiry[row]
            row_forward, row_discount = _forward_discount(
                underlying[row], rate[row], dividend_yield[row], row_time, black76
            )
            inputs_ok = (code <= CALL_CODE) & (row_strike > 0.0) & (row_forward > 0.0)
            inputs_ok = inputs_ok & (row_discount > 0.0) & (row_time > 0.0)
            largest = row_strike if row_strike > row_forward else row_forward
            largest = row_discount if row_discount > largest else largest
            largest = row_time if row_time > largest else largest
            inputs_ok = inputs_ok & (largest < np.inf)
            x, value, status = _setup(
                price[row], row_strike, row_forward, row_discount, code == CALL_CODE
            )
            ok = inputs_ok & (status == 0)
            # Harmless stand-ins for rows that are not solved keep the loops branch-free.
            x = x if ok else -1.0
            value = value if ok else 0.1
            moneyness[offset] = x
            target[offset] = value
            log_target[offset] = fast_log(value)
            is_lower, start, start_low, start_high = _start(x, value)
            lower[offset] = is_lower
            total_vol[offset] = start
            low[offset] = start_low
            high[offset] = start_high
            solvable[offset] = ok
            last_step[offset] = np.inf
            n_solvable += np.int64(ok)
        iterations = 0
        while n_solvable > 0 and iterations < MAX_ITERATIONS:
            iterations += 1
            unconverged = 0
            for offset in range(length):
                new_vol, new_low, new_high, cubic = _step(
                    moneyness[offset],
                    target[offset],
                    log_target[offset],
                    total_vol[offset],
                    low[offset],
                    high[offset],
                    lower[offset],
                )
                step = abs(new_vol - total_vol[offset])
                relative = step / total_vol[offset]
                predicted = CUBIC_SAFETY * relative * relative * step
                step = predicted if cubic and predicted < step else step
                # Converged rows stay put (rounding noise must not move them again).
                done = last_step[offset] <= STEP_TOLERANCE * total_vol[offset]
                total_vol[offset] = total_vol[offset] if done else new_vol
                low[offset] = new_low
                high[offset] = new_high
                last_step[offset] = last_step[offset] if done else step
                unconverged += np.int64(
                    solvable[offset] & (last_step[offset] > STEP_TOLERANCE * total_vol[offset])
                )
            if unconverged == 0:
                break
        iterations_out[strip] = iterations
        failed = 0
        for offset in range(length):
            row = base + offset
            converged = last_step[offset] <= ACCEPT_TOLERANCE * total_vol[offset]
            good = solvable[offset] & converged & (total_vol[offset] > 0.0)
            vol_out[row] = total_vol[offset] / math.sqrt(time_to_expiry[row]) if good else np.nan
            status_out[row] = 0
            failed += 1 - np.int64(good)
        failed_per_strip[strip] = failed
        if failed != 0:
            for offset in range(length):
                row = base + offset
                if vol_out[row] == vol_out[row]:
                    continue
                status = row_status(
                    row, price, strike, time_to_expiry, option_code, underlying, rate,
                    dividend_yield, black76,
                )  # fmt: skip
                if status == 0:
                    code = option_code[row]
                    row_forward, row_discount = _forward_discount(
                        underlying[row], rate[row], dividend_yield[row], time_to_expiry[row],
                        black76,
                    )  # fmt: skip
                    status = _setup(
                        price[row], strike[row], row_forward, row_discount, code == CALL_CODE
                    )[2]
                status_out[row] = _NOT_CONVERGED if status == 0 else status
    return failed_per_strip.sum()
