"""The GEX profile kernel (CPU): total GEX of every slot at many hypothetical spot levels.

A *slot* is an underlying, or an (underlying, expiry class) pair; rows arrive grouped by
slot (the same order the GEX kernel uses). For one row, gamma at a hypothetical level
``S_m = S_0 * ratio_m`` needs only

    d1_m = ln(ratio_m) * inverse_vol_sqrt_time + shift,
    value_m = coefficient * exp(-d1_m**2 / 2) * level_factor_m,

where ``inverse_vol_sqrt_time``, ``shift`` and ``coefficient`` depend on the row alone
(sticky strike: each contract keeps its implied vol) and ``level_factor_m`` on the level
alone. So each tile of rows first computes those three row constants once (one pass
over the inputs, vectorized), then, level by level, a vectorized reduction over the
tile: ``N x M`` evaluations cost one ``exp`` and three multiply-adds each, and every
input is read once for all levels. Invalid rows get a zero coefficient, so they add
exactly 0.0 (the GEX kernel counts and names them).

Black-76 rows use the same form with the forward scaled by the level ratio (the
futures price moves with the index).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fastgex._fastmath import fast_exp, fast_log
from fastgex._formulas import INV_SQRT_TWO_PI
from fastgex._jit import ROW_FLAGS, kernel, reorderable_add, scalar_function
from fastgex._kernel_common import CALL_CODE, _id_range

#: Rows per tile: the row constants of one tile (three float64 arrays) stay in L1.
TILE_ROWS = 256


@scalar_function
def _row_constants(
    row,
    strike,
    vol,
    time_to_expiry,
    quantity,
    option_code,
    forward,
    price,
    rate,
    dividend,
    multiplier,
    call_sign,
    put_sign,
    min_time,
    unit_power,
    black76,
    dealer_position,
):
    """``(inverse_vol_sqrt_time, shift, coefficient)`` of one row; all 0.0 if invalid."""
    code = option_code[row]
    row_strike = strike[row]
    row_vol = vol[row]
    amount = quantity[row]
    raw_time = time_to_expiry[row]
    row_price = forward[row] if black76 else price
    valid = (code <= CALL_CODE) & (row_strike > 0.0) & (row_vol > 0.0) & (raw_time > 0.0)
    valid = valid & (row_price > 0.0) & (multiplier > 0.0)
    # Each "< inf" also fails for NaN.
    valid = valid & (row_strike < np.inf) & (row_vol < np.inf) & (raw_time < np.inf)
    valid = valid & (row_price < np.inf) & (multiplier < np.inf) & (abs(amount) < np.inf)
    valid = valid & (abs(rate) < np.inf) & (abs(dividend) < np.inf)
    if not dealer_position:
        valid = valid & (amount >= 0.0)
    # Safe stand-ins keep the arithmetic finite for invalid rows (their result is 0).
    row_strike = row_strike if valid else 1.0
    row_vol = row_vol if valid else 1.0
    row_price = row_price if valid else 1.0
    row_time = raw_time if valid else 1.0
    row_time = row_time if row_time > min_time else min_time
    vol_sqrt_time = row_vol * math.sqrt(row_time)
    inverse = 1.0 / vol_sqrt_time
    if black76:
        drift = 0.5 * row_vol * row_vol
        discount = -rate * row_time
    else:
        drift = rate - dividend + 0.5 * row_vol * row_vol
        discount = -dividend * row_time
    shift = (fast_log(row_price / row_strike) + drift * row_time) * inverse
    if dealer_position:
        signed_amount = amount
    else:
        call_weight = np.float64(code)
        signed_amount = amount * (put_sign + (call_sign - put_sign) * call_weight)
    # gamma * price**p = exp(-carry T) pdf(d1) / (price vol sqrt T) * price**p
    price_power = 1.0
    if unit_power == 0:
        price_power = 1.0 / row_price
    elif unit_power == 2:
        price_power = row_price
    coefficient = (
        signed_amount * multiplier * INV_SQRT_TWO_PI * fast_exp(discount) * inverse * price_power
    )
    # A product that overflows (open interest 1e308) is a row the GEX kernel drops as
    # non_finite_result, and vol 1e308 makes shift inf * 0 = NaN where the GEX kernel's
    # gamma is 0: such rows must add 0.0 here too, not NaN (each "< inf" fails for NaN).
    valid = valid & (abs(coefficient) < np.inf) & (abs(shift) < np.inf)
    coefficient = coefficient if valid else 0.0
    return (inverse if valid else 0.0), (shift if valid else 0.0), coefficient


@kernel(flags=ROW_FLAGS)
def profile(
    strike,
    vol,
    time_to_expiry,
    quantity,
    option_code,
    slot_id,
    forward,
    rate,
    dividend_yield,
    multiplier,
    slot_price,
    slot_rate,
    slot_dividend,
    slot_multiplier,
    row_carry,
    row_multiplier,
    black76,
    dealer_position,
    call_sign,
    put_sign,
    min_time,
    unit_power,
    log_ratio,
    level_factor,
    n_slots,
    rows_per_block,
):
    """Total GEX per slot and level: ``out[slot, m]``.

    ``log_ratio[slot, m]`` is ``ln(S_m / S_0)`` for the slot's underlying and
    ``level_factor[slot, m]`` multiplies the level's sum (``unit_scale * ratio**(p-1)``
    for unit power ``p``). Rows are split in fixed blocks (thread-count independent);
    each block sums into its own slot range, blocks are combined in order, so results
    are bitwise identical for any number of threads. Compiled with ``_jit.ROW_FLAGS``:
    a row's constants and values keep their written order (the same bits in the vector
    loop and its remainder, and in a compiling and a cache-loading process); only the
    level sums may be reordered (:func:`fastgex._jit.reorderable_add`).
    """
    n_rows = strike.size
    n_levels = log_ratio.shape[1]
    n_blocks = max(1, (n_rows + rows_per_block - 1) // rows_per_block)
    # Each block sums into the range of slots its rows touch (see the GEX kernel).
    block_first = np.zeros(n_blocks, dtype=np.int64)
    block_span = np.zeros(n_blocks, dtype=np.int64)
    for block in numba.prange(n_blocks):
        start = block * rows_per_block
        first, span = _id_range(slot_id, start, min(n_rows, start + rows_per_block), n_slots)
        block_first[block] = first
        block_span[block] = span
    block_offset = np.zeros(n_blocks + 1, dtype=np.int64)
    for block in range(n_blocks):
        block_offset[block + 1] = block_offset[block] + block_span[block]
    partial = np.zeros((block_offset[n_blocks], n_levels))
    for block in numba.prange(n_blocks):
        start = block * rows_per_block
        stop = min(n_rows, start + rows_per_block)
        inverse = np.empty(TILE_ROWS)
        shift = np.empty(TILE_ROWS)
        coefficient = np.empty(TILE_ROWS)
        tile_start = start
        while tile_start < stop:
            slot = slot_id[tile_start]
            # A tile is a run of one slot, at most TILE_ROWS long.
            tile_stop = tile_start + 1
            limit = min(stop, tile_start + TILE_ROWS)
            while tile_stop < limit and slot_id[tile_stop] == slot:
                tile_stop += 1
            length = numba.uint64(tile_stop - tile_start)
            base = numba.uint64(tile_start)
            price = slot_price[slot]
            for offset in range(length):
                row = base + offset
                row_rate = rate[row] if row_carry else slot_rate[slot]
                row_dividend = dividend_yield[row] if row_carry else slot_dividend[slot]
                row_mult = multiplier[row] if row_multiplier else slot_multiplier[slot]
                row_inverse, row_shift, row_coefficient = _row_constants(
                    row,
                    strike,
                    vol,
                    time_to_expiry,
                    quantity,
                    option_code,
                    forward,
                    price,
                    row_rate,
                    row_dividend,
                    row_mult,
                    call_sign,
                    put_sign,
                    min_time,
                    unit_power,
                    black76,
                    dealer_position,
                )
                inverse[offset] = row_inverse
                shift[offset] = row_shift
                coefficient[offset] = row_coefficient
            target = block_offset[block] + slot - block_first[block]
            for level in range(n_levels):
                level_log = log_ratio[slot, level]
                total = 0.0
                for offset in range(length):
                    d1 = level_log * inverse[offset] + shift[offset]
                    total = reorderable_add(total, coefficient[offset] * fast_exp(-0.5 * d1 * d1))
                partial[target, level] += total * level_factor[slot, level]
            tile_start = tile_stop
    out = np.zeros((n_slots, n_levels))
    for block in range(n_blocks):
        for index in range(block_offset[block], block_offset[block + 1]):
            slot = block_first[block] + index - block_offset[block]
            for level in range(n_levels):
                out[slot, level] += partial[index, level]
    return out
