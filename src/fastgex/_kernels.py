"""Private Numba kernels: per-contract signed GEX with fused, counted validation.

Layout of the hot loop (why it looks the way it does):

* Rows are split in fixed-size *blocks* (the parallel unit). The block size depends
  only on the row and underlying counts, never on the thread count, so totals are
  bitwise identical for any ``NUMBA_NUM_THREADS``.
* Each block walks *strips* of ``STRIP_ROWS`` rows. A strip is first computed into a
  small buffer by a branch-free loop that LLVM vectorizes (this is where the
  polynomial ``exp``/``log`` pay off), then scattered into per-underlying sums. When a
  strip holds a single underlying (the common, sorted case) the scatter is a
  vectorized masked sum.
* Strip sums enter the block sums with Neumaier compensation; blocks are combined in
  order, also compensated.
* Invalid rows contribute exactly 0.0 and get a status code, so nothing is dropped
  silently and no NaN reaches a total.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numba
import numpy as np

from fastgex._formulas import black76_gamma, bsm_gamma
from fastgex._jit import kernel, scalar_function

#: Drop reasons; a row's status code is its index here plus one (0 = valid).
REASONS: tuple[str, ...] = (
    "missing_value",
    "unknown_option_type",
    "invalid_strike",
    "invalid_implied_vol",
    "negative_open_interest",
    "invalid_open_interest",
    "invalid_dealer_position",
    "invalid_time_to_expiry",
    "expired",
    "invalid_gamma",
    "invalid_multiplier",
    "invalid_forward",
    "invalid_rate",
    "non_finite_result",
)
STATUS = {reason: code for code, reason in enumerate(REASONS, start=1)}

#: Option codes carried per row (int8). Negative codes are reasons found while reading.
CALL_CODE = 1
PUT_CODE = 0
UNKNOWN_TYPE_CODE = -1
MISSING_CODE = -2

STRIP_ROWS = 512
BLOCK_ROWS = 1 << 16
#: Upper bound on per-block partial sums held at once (blocks x underlyings).
MAX_BLOCK_PARTIALS = 1 << 22

_MISSING = STATUS["missing_value"]
_UNKNOWN_TYPE = STATUS["unknown_option_type"]
_BAD_STRIKE = STATUS["invalid_strike"]
_BAD_VOL = STATUS["invalid_implied_vol"]
_NEGATIVE_OI = STATUS["negative_open_interest"]
_BAD_OI = STATUS["invalid_open_interest"]
_BAD_POSITION = STATUS["invalid_dealer_position"]
_BAD_TIME = STATUS["invalid_time_to_expiry"]
_EXPIRED = STATUS["expired"]
_BAD_GAMMA = STATUS["invalid_gamma"]
_BAD_MULTIPLIER = STATUS["invalid_multiplier"]
_BAD_FORWARD = STATUS["invalid_forward"]
_BAD_RATE = STATUS["invalid_rate"]
_NON_FINITE = STATUS["non_finite_result"]


@dataclass(frozen=True)
class KernelConfig:
    """Compile-time choices; each distinct config is one specialized, cached kernel.

    Attributes
    ----------
    black76 : bool
        Price each row on its own ``forward`` (Black-76) instead of the underlying spot.
    vendor_gamma : bool
        Take gamma from the chain's column instead of the model.
    dealer_position : bool
        The quantity column holds signed dealer contracts (no convention sign applied).
    row_carry : bool
        ``rate``/``dividend_yield`` arrays are per row (else per underlying).
    row_multiplier : bool
        ``multiplier`` is per row (else per underlying).
    has_time : bool
        A time-to-expiry array is present (always, unless vendor gamma without dates).
    unit_power : int
        Power of the price in the unit factor: 2 ($ per 1%), 1 ($ per point), 0 (shares).
    """

    black76: bool = False
    vendor_gamma: bool = False
    dealer_position: bool = False
    row_carry: bool = False
    row_multiplier: bool = False
    has_time: bool = True
    unit_power: int = 2


@scalar_function
def _finite(value: float) -> bool:
    return abs(value) < np.inf


@scalar_function
def _neumaier_add(total: float, compensation: float, value: float) -> tuple[float, float]:
    """One step of Neumaier (improved Kahan) summation."""
    new_total = total + value
    if abs(total) >= abs(value):
        compensation += (total - new_total) + value
    else:
        compensation += (value - new_total) + total
    return new_total, compensation


@scalar_function
def _add_to(sums, compensation, block, underlying, side, value):
    """Compensated ``sums[block, underlying, side] += value``."""
    total, comp = _neumaier_add(
        sums[block, underlying, side], compensation[block, underlying, side], value
    )
    sums[block, underlying, side] = total
    compensation[block, underlying, side] = comp


@cache
def gex_kernel(config: KernelConfig):
    """Return the compiled fused GEX kernel for ``config`` (compiled lazily, cached)."""
    black76 = config.black76
    vendor_gamma = config.vendor_gamma
    dealer_position = config.dealer_position
    row_carry = config.row_carry
    row_multiplier = config.row_multiplier
    has_time = config.has_time
    unit_power = config.unit_power

    @scalar_function
    def row_status(
        row, strike, vol, time_to_expiry, quantity, option_code, underlying_id, rate,
        dividend_yield, forward, gamma_column, multiplier,
    ):  # fmt: skip
        """Reason code of one row (0 = valid); the first failing rule wins.

        Only called for rows the fast path found invalid, so clarity beats speed here.
        """
        code = np.int8(option_code[row])  # back to the signed codes
        if code == MISSING_CODE:
            return _MISSING
        if code != CALL_CODE and code != PUT_CODE:
            return _UNKNOWN_TYPE
        underlying = underlying_id[row]
        if not (strike[row] > 0.0 and _finite(strike[row])):
            return _BAD_STRIKE
        if not vendor_gamma and not (vol[row] > 0.0 and _finite(vol[row])):
            return _BAD_VOL
        amount = quantity[row]
        if dealer_position:
            if not _finite(amount):
                return _BAD_POSITION
        elif amount != amount:
            return _MISSING
        elif amount < 0.0:
            return _NEGATIVE_OI
        elif not _finite(amount):
            return _BAD_OI
        if has_time:
            if not _finite(time_to_expiry[row]):
                return _BAD_TIME
            if time_to_expiry[row] <= 0.0:
                return _EXPIRED
        if vendor_gamma and not (gamma_column[row] >= 0.0 and _finite(gamma_column[row])):
            return _BAD_GAMMA
        row_mult = multiplier[row] if row_multiplier else multiplier[underlying]
        if not (row_mult > 0.0 and _finite(row_mult)):
            return _BAD_MULTIPLIER
        if black76 and not (forward[row] > 0.0 and _finite(forward[row])):
            return _BAD_FORWARD
        if row_carry:
            row_rate = rate[row]
            row_dividend = dividend_yield[row]
        else:
            row_rate = rate[underlying]
            row_dividend = dividend_yield[underlying]
        if not (_finite(row_rate) and _finite(row_dividend)):
            return _BAD_RATE
        return 0

    @scalar_function
    def contract_value(
        row, strike, vol, time_to_expiry, quantity, option_code, rate, dividend_yield,
        forward, gamma_column, multiplier, spot_value, rate_value, dividend_value,
        multiplier_value, call_sign, put_sign, unit_scale, min_time,
    ):  # fmt: skip
        """Signed GEX of one row and whether the row is valid.

        Branch-free on purpose (``&``, not ``and``, and selects) so the loop vectorizes.

        Invalid rows give exactly 0.0; :func:`row_status` says why.
        """
        # Codes arrive as uint8, so the negative "read-time" reasons wrap above 1 and one
        # unsigned compare validates the type.
        code = option_code[row]
        row_strike = strike[row]
        valid = (code <= CALL_CODE) & (row_strike > 0.0)
        valid = valid & _finite(row_strike)
        row_vol = 1.0
        if not vendor_gamma:
            row_vol = vol[row]
            valid = valid & (row_vol > 0.0) & _finite(row_vol)
        amount = quantity[row]
        if dealer_position:
            valid = valid & _finite(amount)
        else:
            valid = valid & (amount >= 0.0) & _finite(amount)
        row_time = 1.0
        if has_time:
            row_time = time_to_expiry[row]
            valid = valid & (row_time > 0.0) & _finite(row_time)
            row_time = max(row_time, min_time)
        row_gamma = 0.0
        if vendor_gamma:
            row_gamma = gamma_column[row]
            valid = valid & (row_gamma >= 0.0) & _finite(row_gamma)
        row_mult = multiplier[row] if row_multiplier else multiplier_value
        valid = valid & (row_mult > 0.0) & _finite(row_mult)
        if row_carry:
            row_rate = rate[row]
            row_dividend = dividend_yield[row]
        else:
            row_rate = rate_value
            row_dividend = dividend_value
        valid = valid & _finite(row_rate) & _finite(row_dividend)
        if black76:
            price = forward[row]
            valid = valid & (price > 0.0) & _finite(price)
        else:
            price = spot_value
        if not vendor_gamma:
            if black76:
                row_gamma = black76_gamma(price, row_strike, row_vol, row_time, row_rate)
            else:
                row_gamma = bsm_gamma(
                    price, row_strike, row_vol, row_time, row_rate, row_dividend
                )
        if dealer_position:
            signed_amount = amount
        else:
            call_weight = np.float64(code)
            signed_amount = amount * (put_sign + (call_sign - put_sign) * call_weight)
        unit = unit_scale
        if unit_power >= 1:
            unit = unit * price
        if unit_power >= 2:
            unit = unit * price
        value = row_gamma * signed_amount * row_mult * unit
        return value if valid else np.nan

    @kernel
    def run(
        strike, vol, time_to_expiry, quantity, option_code, underlying_id, spot, rate,
        dividend_yield, forward, gamma_column, multiplier, call_sign, put_sign, unit_scale,
        min_time, n_underlyings, rows_per_block, values_out, status_out,
    ):  # fmt: skip
        """Accumulate call and put GEX per underlying; optionally write per-row values.

        Returns ``(sums, dropped, reasons)``: ``sums[u, 0]`` calls and ``sums[u, 1]``
        puts of underlying ``u``; ``dropped[u]`` invalid rows of ``u``; ``reasons[c]``
        rows with status code ``c`` (index 0 unused). ``values_out`` is written when its
        length equals the row count; ``status_out`` (zero-filled by the caller) gets the
        code of each invalid row. Pass empty arrays to skip either.
        """
        n_rows = strike.size
        n_blocks = max(1, (n_rows + rows_per_block - 1) // rows_per_block)
        block_sums = np.zeros((n_blocks, n_underlyings, 2))
        block_compensation = np.zeros((n_blocks, n_underlyings, 2))
        block_dropped = np.zeros((n_blocks, n_underlyings), dtype=np.int64)
        block_reasons = np.zeros((n_blocks, len(REASONS) + 1), dtype=np.int64)
        write_values = values_out.size == n_rows
        write_status = status_out.size == n_rows
        for block in numba.prange(n_blocks):
            block_start = block * rows_per_block
            block_stop = min(n_rows, block_start + rows_per_block)
            for strip_start in range(block_start, block_stop, STRIP_ROWS):
                # Unsigned indices: numba then skips its negative-index wraparound
                # check, which otherwise stops LLVM from vectorizing these loops.
                base = numba.uint64(strip_start)
                length = numba.uint64(min(STRIP_ROWS, block_stop - strip_start))
                first_underlying = underlying_id[base]
                mixed = 0
                for offset in range(length):
                    mixed += underlying_id[base + offset] != first_underlying
                clean = False
                if mixed == 0:
                    # Fast path, one underlying: its parameters are scalars (no gathers)
                    # and the call/put sums are fused into one vectorized loop. An
                    # invalid row yields NaN, which poisons the sums and sends the strip
                    # to the careful path below.
                    spot_value = spot[first_underlying]
                    rate_value = rate[first_underlying] if not row_carry else 0.0
                    dividend_value = dividend_yield[first_underlying] if not row_carry else 0.0
                    multiplier_value = multiplier[first_underlying] if not row_multiplier else 0.0
                    call_total = 0.0
                    put_total = 0.0
                    for offset in range(length):
                        value = contract_value(
                            base + offset, strike, vol, time_to_expiry, quantity,
                            option_code, rate, dividend_yield, forward, gamma_column,
                            multiplier, spot_value, rate_value, dividend_value,
                            multiplier_value, call_sign, put_sign, unit_scale, min_time,
                        )  # fmt: skip
                        if write_values:
                            values_out[base + offset] = value
                        # Arithmetic split, not a select: it keeps the loop vectorized.
                        call_weight = np.float64(option_code[base + offset])
                        call_total += value * call_weight
                        put_total += value * (1.0 - call_weight)
                    clean = _finite(call_total) & _finite(put_total)
                    if clean:
                        _add_to(block_sums, block_compensation, block, first_underlying, 0, call_total)
                        _add_to(block_sums, block_compensation, block, first_underlying, 1, put_total)
                if not clean:
                    # Careful path (several underlyings, or invalid rows): row by row,
                    # naming the reason of every row that cannot count.
                    for offset in range(length):
                        row = base + offset
                        underlying = underlying_id[row]
                        value = contract_value(
                            row, strike, vol, time_to_expiry, quantity, option_code, rate,
                            dividend_yield, forward, gamma_column, multiplier,
                            spot[underlying],
                            rate[underlying] if not row_carry else 0.0,
                            dividend_yield[underlying] if not row_carry else 0.0,
                            multiplier[underlying] if not row_multiplier else 0.0,
                            call_sign, put_sign, unit_scale, min_time,
                        )  # fmt: skip
                        if not _finite(value):
                            value = 0.0
                            status = row_status(
                                row, strike, vol, time_to_expiry, quantity, option_code,
                                underlying_id, rate, dividend_yield, forward, gamma_column,
                                multiplier,
                            )  # fmt: skip
                            if status == 0:  # valid inputs, but the result overflowed
                                status = _NON_FINITE
                            block_reasons[block, status] += 1
                            block_dropped[block, underlying] += 1
                            if write_status:
                                status_out[row] = status
                        if write_values:
                            values_out[row] = value
                        side = 0 if option_code[row] == CALL_CODE else 1
                        _add_to(block_sums, block_compensation, block, underlying, side, value)
        sums = np.zeros((n_underlyings, 2))
        compensation = np.zeros((n_underlyings, 2))
        dropped = np.zeros(n_underlyings, dtype=np.int64)
        reasons = np.zeros(len(REASONS) + 1, dtype=np.int64)
        for block in range(n_blocks):
            reasons += block_reasons[block]
            for underlying in range(n_underlyings):
                dropped[underlying] += block_dropped[block, underlying]
                for side in range(2):
                    compensation[underlying, side] += block_compensation[block, underlying, side]
                    total, comp = _neumaier_add(
                        sums[underlying, side],
                        compensation[underlying, side],
                        block_sums[block, underlying, side],
                    )
                    sums[underlying, side] = total
                    compensation[underlying, side] = comp
        return sums + compensation, dropped, reasons

    return run


def rows_per_block(n_rows: int, n_underlyings: int) -> int:
    """Block size for ``n_rows`` rows: depends on the data shape only (determinism)."""
    blocks_allowed = max(1, MAX_BLOCK_PARTIALS // max(1, n_underlyings))
    needed = -(-n_rows // blocks_allowed)
    return max(BLOCK_ROWS, needed)


@kernel(parallel=False)
def group_sums(values, option_code, group_id, n_groups):
    """Compensated call/put sums of per-row values by group (input order, deterministic)."""
    sums = np.zeros((n_groups, 2))
    compensation = np.zeros((n_groups, 2))
    for row in range(values.size):
        group = group_id[row]
        side = 0 if option_code[row] == 1 else 1
        total, comp = _neumaier_add(sums[group, side], compensation[group, side], values[row])
        sums[group, side] = total
        compensation[group, side] = comp
    return sums + compensation
