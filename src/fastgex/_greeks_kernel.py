"""The fused per-contract greeks kernel (CPU): validation, price and nine greeks in one pass.

Its compile-time switches are the globals below (Numba freezes module globals as
constants, so each ``if BLACK76:`` disappears at compile time). The default
configuration is this module; the others are copies of this file with the switch
lines rewritten (:func:`greeks_kernel`, through :mod:`fastgex._variants`), ordinary
files that Numba's disk cache can hold.

Layout of the hot loop (why it looks the way it does):

* Rows are split in strips of ``STRIP_ROWS`` (the parallel unit). A strip is cut in
  runs of one underlying; each run's loops are flat and branch-free, with that
  underlying's spot / rate / dividend yield hoisted. Gathers (``spot[underlying]``
  per row) are what LLVM refuses to vectorize on this machine, so there are none.
* Which greeks are stored is the compile-time bitmask ``STORED`` (bit ``i`` for
  ``GREEK_ORDER[i]``), one variant per requested set: LLVM then drops the work of
  the others. Runtime flags measured 2x slower for a subset than for all ten (the
  loop with conditional stores did not vectorize). An invalid row stores NaN.
* Each run is two loops: ``d1`` and the scales of every row (log, square root,
  division) into a scratch, then the exponentials, tails and greeks. The fused loop
  was bound by its dependency chain; split, it ran 8-14% faster on 1e6 rows (A/B,
  alternating processes).
* When a run had invalid rows they are walked again one by one to name each reason:
  no NaN leaves the kernel without a status code.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import numba
import numpy as np

from fastgex._greeks_formulas import GREEK_ORDER, bsm_d1, bsm_greeks_at
from fastgex._jit import ROW_FLAGS, kernel, loop_body, outlined, scalar_function
from fastgex._kernel_common import (
    _BAD_FORWARD,
    _BAD_RATE,
    _BAD_STRIKE,
    _BAD_TIME,
    _BAD_VOL,
    _EXPIRED,
    _MISSING,
    _NON_FINITE,
    _UNKNOWN_TYPE,
    CALL_CODE,
    MISSING_CODE,
    PUT_CODE,
    _finite,
    _segment_stop,
)
from fastgex._variants import load_variant, rewrite_switches

# --- compile-time switches (rewritten in generated copies; keep one per line) ---
BLACK76 = False
ROW_CARRY = False
STORED = 1023
# --- end of switches ---

#: Rows per strip, the parallel unit (the GEX kernel's are 512). Each run of one
#: underlying within a strip is two loops over all its rows (:func:`_run_segment`), and
#: each vectorized loop starts with LLVM's runtime check that none of the ten outputs,
#: the inputs and the scratch overlap, so longer runs pay it less often: on an AMD EPYC
#: Zen 5, two loops per 128 rows to two per run gave 12-24% more rows/s on one thread,
#: and 512-row strips to 2,048 another 9-22% at 1e6 rows (docs/benchmarks.md, session
#: 18). The ``(4, STRIP_ROWS)`` scratch of the first loop is 64 KiB.
STRIP_ROWS = 2048


@scalar_function
def _row_inputs(row, columns, segment):
    """One row's operands: ``(code, price, strike, vol, time, rate, dividend_yield)``.

    ``columns`` is ``(strike, vol, time_to_expiry, option_code, forward, rate,
    dividend_yield)`` (per row; ``rate`` / ``dividend_yield`` per underlying unless
    ``ROW_CARRY``), ``segment`` is ``(spot, rate, dividend_yield, min_time)`` of the
    row's underlying. The time is as given (not floored); no load is under a condition.
    """
    strike, vol, time_to_expiry, option_code, forward, rate, dividend_yield = columns
    spot_value, rate_value, dividend_value, _ = segment
    price = forward[row] if BLACK76 else spot_value
    if ROW_CARRY:
        row_rate = rate[row]
        row_dividend = dividend_yield[row]
    else:
        row_rate = rate_value
        row_dividend = dividend_value
    if BLACK76:
        row_dividend = row_rate
    return (option_code[row], price, strike[row], vol[row], time_to_expiry[row], row_rate,
            row_dividend)  # fmt: skip


@scalar_function
def _floored_time(row_time, segment):
    """The time to expiry the formulas use: at least the segment's ``min_time``."""
    min_time = segment[3]
    return row_time if row_time > min_time else min_time


@scalar_function
def _row_first_half(row, columns, segment):
    """:func:`bsm_d1` of one row, with ``d1`` NaN when its inputs are not valid.

    Branch-free on purpose: selects, not ``max()`` (whose NaN handling blocks SIMD).
    """
    code, price, row_strike, row_vol, row_time, row_rate, row_dividend = _row_inputs(
        row, columns, segment
    )
    # uint8 codes: the negative read-time reasons wrap above 1, so one compare checks
    # the type; NaN fails every ``>``.
    valid = (code <= CALL_CODE) & (row_strike > 0.0) & (row_vol > 0.0) & (row_time > 0.0)
    valid = valid & (price > 0.0)
    largest = row_strike if row_strike > row_vol else row_vol
    largest = row_time if row_time > largest else largest
    largest = price if price > largest else largest
    valid = valid & (largest < np.inf) & _finite(row_rate) & _finite(row_dividend)
    d1, sqrt_time, inverse_vol_sqrt_time, inverse_spot = bsm_d1(
        price, row_strike, row_vol, _floored_time(row_time, segment), row_rate, row_dividend
    )
    return (d1 if valid else np.nan), sqrt_time, inverse_vol_sqrt_time, inverse_spot


@scalar_function
def _row_second_half(
    row,
    columns,
    segment,
    d1,
    sqrt_time,
    inverse_vol_sqrt_time,
    inverse_spot,
):
    """Validity (inputs valid and the stored results finite) and raw values of one row.

    From the outputs of :func:`_row_first_half`; a NaN ``d1`` (invalid inputs) makes
    the stored values NaN, so the row is not valid.
    """
    code, price, row_strike, row_vol, row_time, row_rate, row_dividend = _row_inputs(
        row, columns, segment
    )
    used_time = _floored_time(row_time, segment)
    values = bsm_greeks_at(
        price,
        row_strike,
        row_vol,
        used_time,
        row_rate,
        row_dividend,
        code == CALL_CODE,
        d1,
        sqrt_time,
        inverse_vol_sqrt_time,
        inverse_spot,
    )
    value_price, delta, gamma, vega, theta, rho, vanna, charm, vomma, speed = values
    if BLACK76:  # the forward is held fixed when the rate moves
        rho = -used_time * value_price
    # One finiteness test for the stored values (inf - inf is NaN, so nothing slips
    # through); the others are never formed, so they cannot invalidate a row.
    total = 0.0
    if STORED & 1:
        total += value_price
    if STORED & 2:
        total += delta
    if STORED & 4:
        total += gamma
    if STORED & 8:
        total += vega
    if STORED & 16:
        total += theta
    if STORED & 32:
        total += rho
    if STORED & 64:
        total += vanna
    if STORED & 128:
        total += charm
    if STORED & 256:
        total += vomma
    if STORED & 512:
        total += speed
    valid = _finite(total)
    return valid, value_price, delta, gamma, vega, theta, rho, vanna, charm, vomma, speed


@scalar_function
def _row_values(row, columns, segment):
    """Validity and raw values of one row: both halves in one call."""
    d1, sqrt_time, inverse_vol_sqrt_time, inverse_spot = _row_first_half(row, columns, segment)
    return _row_second_half(
        row,
        columns,
        segment,
        d1,
        sqrt_time,
        inverse_vol_sqrt_time,
        inverse_spot,
    )


# The row-by-row fallback's copy: not inlined, one compiled body less to optimize.
_row_values_row = outlined(_row_values, flags=ROW_FLAGS)


@scalar_function
def row_status(row, columns, segment):
    """Reason code of one row (0 = inputs valid); the first failing rule wins.

    ``columns`` and ``segment`` as in :func:`_row_inputs`.
    """
    strike, vol, time_to_expiry, option_code, forward, rate, dividend_yield = columns
    rate_value = segment[1]
    dividend_value = segment[2]
    code = np.int8(option_code[row])
    if code == MISSING_CODE:
        return _MISSING
    if code != CALL_CODE and code != PUT_CODE:
        return _UNKNOWN_TYPE
    if not (strike[row] > 0.0 and _finite(strike[row])):
        return _BAD_STRIKE
    if not (vol[row] > 0.0 and _finite(vol[row])):
        return _BAD_VOL
    if not _finite(time_to_expiry[row]):
        return _BAD_TIME
    if time_to_expiry[row] <= 0.0:
        return _EXPIRED
    if BLACK76 and not (forward[row] > 0.0 and _finite(forward[row])):
        return _BAD_FORWARD
    if ROW_CARRY:
        if not (_finite(rate[row]) and _finite(dividend_yield[row])):
            return _BAD_RATE
    elif not (_finite(rate_value) and _finite(dividend_value)):
        return _BAD_RATE
    return 0


@scalar_function
def _run_segment(
    base,
    length,
    columns,
    segment,
    scales,
    outputs,
    halves,
):
    """One underlying's rows ``base .. base+length`` (within one strip): invalid count.

    Two loops: :func:`_row_first_half` of every row into ``halves`` (a
    ``(4, STRIP_ROWS)`` scratch), then :func:`_second_half`. One fused loop is bound by
    the length of its dependency chain (log, division, then the exponentials and
    tails), not by the arithmetic units; split in two, the out-of-order core holds more
    rows of each half in flight.
    """
    for offset in range(length):
        d1, sqrt_time, inverse_vol_sqrt_time, inverse_spot = _row_first_half(
            base + offset, columns, segment
        )
        halves[0, offset] = d1
        halves[1, offset] = sqrt_time
        halves[2, offset] = inverse_vol_sqrt_time
        halves[3, offset] = inverse_spot
    return _second_half(base, length, columns, segment, scales, outputs, halves)


@scalar_function
def _second_half(
    base,
    length,
    columns,
    segment,
    scales,
    outputs,
    halves,
):
    """The second loop of :func:`_run_segment`: greeks of its rows into the outputs."""
    (out_price, out_delta, out_gamma, out_vega, out_theta,
     out_rho, out_vanna, out_charm, out_vomma, out_speed) = outputs  # fmt: skip
    (scale_price, scale_delta, scale_gamma, scale_vega, scale_theta,
     scale_rho, scale_vanna, scale_charm, scale_vomma, scale_speed) = scales  # fmt: skip
    invalid = 0
    for offset in range(length):
        row = base + offset
        valid, price, delta, gamma, vega, theta, rho, vanna, charm, vomma, speed = _row_second_half(
            row,
            columns,
            segment,
            halves[0, offset],
            halves[1, offset],
            halves[2, offset],
            halves[3, offset],
        )
        # 0.0 for a valid row, NaN for another: one multiply-add per stored value puts
        # either the scaled value or NaN in place, where a select would cost one more
        # vector operation on the same pipes as the formulas.
        poison = 0.0 if valid else np.nan
        if STORED & 1:
            out_price[row] = price * scale_price + poison
        if STORED & 2:
            out_delta[row] = delta * scale_delta + poison
        if STORED & 4:
            out_gamma[row] = gamma * scale_gamma + poison
        if STORED & 8:
            out_vega[row] = vega * scale_vega + poison
        if STORED & 16:
            out_theta[row] = theta * scale_theta + poison
        if STORED & 32:
            out_rho[row] = rho * scale_rho + poison
        if STORED & 64:
            out_vanna[row] = vanna * scale_vanna + poison
        if STORED & 128:
            out_charm[row] = charm * scale_charm + poison
        if STORED & 256:
            out_vomma[row] = vomma * scale_vomma + poison
        if STORED & 512:
            out_speed[row] = speed * scale_speed + poison
        invalid += 1 - np.int64(valid)
    return invalid


@loop_body(flags=ROW_FLAGS)
def _strip_greeks(
    strip, strike, vol, time_to_expiry, option_code, underlying_id, spot, forward, rate,
    dividend_yield, min_time, scale_values, outputs, status_out,
):  # fmt: skip
    """One strip of :func:`run`: its runs of one underlying, then the reasons of bad rows.

    Returns the strip's invalid rows.
    """
    n_rows = strike.size
    # Unsigned indices: no negative-index wraparound checks, so loops vectorize.
    base = numba.uint64(strip * STRIP_ROWS)
    length = numba.uint64(min(STRIP_ROWS, n_rows - strip * STRIP_ROWS))
    first_underlying = underlying_id[base]
    mixed = 0
    for offset in range(length):
        mixed += underlying_id[base + offset] != first_underlying
        status_out[base + offset] = 0
    strip_invalid = 0
    halves = np.empty((4, STRIP_ROWS))
    columns = (strike, vol, time_to_expiry, option_code, forward, rate, dividend_yield)
    start = numba.uint64(0)
    while start < length:
        underlying = underlying_id[base + start]
        stop = _segment_stop(underlying_id, base, start, length, mixed)
        spot_value = 1.0 if BLACK76 else spot[underlying]
        rate_value = 0.0 if ROW_CARRY else rate[underlying]
        dividend_value = 0.0 if ROW_CARRY else dividend_yield[underlying]
        segment = (spot_value, rate_value, dividend_value, min_time)
        invalid = _run_segment(
            base + start,
            stop - start,
            columns,
            segment,
            scale_values,
            outputs,
            halves,
        )
        if invalid != 0:  # name the reason of each invalid row, one by one
            for offset in range(start, stop):
                row = base + offset
                row_flags = _row_values_row(row, columns, segment)
                if row_flags[0]:
                    continue
                status = row_status(row, columns, segment)
                # Valid inputs but no finite result.
                status_out[row] = _NON_FINITE if status == 0 else status
        strip_invalid += invalid
        start = stop
    return strip_invalid


@kernel(flags=ROW_FLAGS)
def run(
    strike,
    vol,
    time_to_expiry,
    option_code,
    underlying_id,
    spot,
    forward,
    rate,
    dividend_yield,
    min_time,
    scales,
    out_price,
    out_delta,
    out_gamma,
    out_vega,
    out_theta,
    out_rho,
    out_vanna,
    out_charm,
    out_vomma,
    out_speed,
    status_out,
):
    """Greeks of every row into the ``out_*`` arrays whose bit is set in ``STORED``.

    Every ``out_*`` must be its own array of the row count, also those not stored
    (``np.empty``: they are never written, so never touched): LLVM vectorizes the loop
    behind a runtime check that no two arrays overlap, and an overlap (one scratch array
    passed twice, or short arrays next to each other) sends it to the scalar loop.
    ``spot`` is per underlying (unused with ``BLACK76``, whose rows read ``forward``);
    ``rate`` / ``dividend_yield`` are per row with ``ROW_CARRY``, else per underlying.
    ``scales`` (10 floats) follow ``GREEK_ORDER``.
    ``status_out`` (int8 per row) gets 0 for valid rows and the reason code of each
    invalid row, whose outputs are NaN. Returns the number of invalid rows.
    """
    n_rows = strike.size
    n_strips = (n_rows + STRIP_ROWS - 1) // STRIP_ROWS
    outputs = (out_price, out_delta, out_gamma, out_vega, out_theta,
               out_rho, out_vanna, out_charm, out_vomma, out_speed)  # fmt: skip
    scale_values = (scales[0], scales[1], scales[2], scales[3], scales[4],
                    scales[5], scales[6], scales[7], scales[8], scales[9])  # fmt: skip
    invalid_per_strip = np.zeros(n_strips, dtype=np.int64)
    for strip in numba.prange(n_strips):
        # np.int64 index: see fastgex._jit.loop_body
        invalid_per_strip[strip] = _strip_greeks(
            np.int64(strip), strike, vol, time_to_expiry, option_code, underlying_id, spot,
            forward, rate, dividend_yield, min_time, scale_values, outputs, status_out,
        )  # fmt: skip
    return invalid_per_strip.sum()


_SWITCH_NAMES = ("BLACK76", "ROW_CARRY", "STORED")

#: ``STORED`` of the default module: all ten values.
ALL_STORED = (1 << len(GREEK_ORDER)) - 1


def stored_mask(names: Iterable[str]) -> int:
    """The ``STORED`` bitmask of a set of :data:`GREEK_ORDER` names."""
    mask = 0
    for name in names:
        mask |= 1 << GREEK_ORDER.index(name)
    return mask


@functools.cache
def greeks_kernel(black76: bool, row_carry: bool, stored: int = ALL_STORED):
    """The compiled kernel (``run``) for a layout and the set of greeks it stores.

    ``black76``: rows read forwards; ``row_carry``: rate and dividend yield per row;
    ``stored``: a :func:`stored_mask`. The default (BSM, per-underlying carry, all
    ten) is this module; the others are copies of this file with the switch lines
    rewritten, written once next to the GEX kernel variants
    (:func:`fastgex._variants.generated_dir`) so Numba's disk cache keeps them.
    """
    if not 0 < stored <= ALL_STORED:
        raise ValueError(f"stored must be a non-empty mask of GREEK_ORDER, not {stored!r}")
    if not black76 and not row_carry and stored == ALL_STORED:
        return run
    source = rewrite_switches(
        Path(__file__).read_text(encoding="utf-8"),
        dict(zip(_SWITCH_NAMES, (black76, row_carry, stored), strict=True)),
        "greeks kernel",
    )
    module = load_variant(source, "fastgex_greeks_kernel")
    return module.run
