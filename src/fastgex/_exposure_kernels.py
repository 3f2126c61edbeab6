"""Compensated, deterministic sums of per-contract exposures per underlying and group.

* :func:`side_sums` - Neumaier sums of given values per (underlying, side) and group.
* :func:`exposure_rows` - per-row exposures and drop reasons from a greek, and their
  sums, in parallel blocks combined in a fixed order.
"""

from __future__ import annotations

import numba
import numpy as np

from fastgex._jit import kernel, loop_body, scalar_function
from fastgex._kernel_common import (
    _BAD_MULTIPLIER,
    _BAD_OI,
    _BAD_POSITION,
    _BAD_STRIKE,
    _BAD_TIME,
    _BAD_VOL,
    _EXPIRED,
    _MISSING,
    _NEGATIVE_OI,
    _NON_FINITE,
    _UNKNOWN_TYPE,
    CALL_CODE,
    GROUP_CHUNK,
    _finite,
    _id_range,
    _merge_group_chunk,
    _neumaier_add,
)


@kernel(parallel=False)
def side_sums(values, is_call, valid, underlying_id, group_id, n_underlyings, n_groups):
    """Neumaier sums of ``values`` per (underlying, side) and per (group, side).

    Rows are added in input order (one thread), so the sums do not depend on the
    thread count. Side 0 is calls, 1 puts. Rows with ``valid`` false are skipped;
    ``group_id`` may be empty (no per-group sums). Returns ``(sums, group_sums,
    group_counts)``: compensated totals (compensation added in) and valid rows per group.
    """
    sums = np.zeros((n_underlyings, 2))
    compensation = np.zeros((n_underlyings, 2))
    group_sums = np.zeros((n_groups, 2))
    group_compensation = np.zeros((n_groups, 2))
    group_counts = np.zeros(n_groups, dtype=np.int64)
    with_groups = group_id.size == values.size
    for row in range(values.size):
        if not valid[row]:
            continue
        side = 0 if is_call[row] else 1
        slot = underlying_id[row]
        total, comp = _neumaier_add(sums[slot, side], compensation[slot, side], values[row])
        sums[slot, side] = total
        compensation[slot, side] = comp
        if with_groups:
            group = group_id[row]
            total, comp = _neumaier_add(
                group_sums[group, side], group_compensation[group, side], values[row]
            )
            group_sums[group, side] = total
            group_compensation[group, side] = comp
            group_counts[group] += 1
    return sums + compensation, group_sums + group_compensation, group_counts


@scalar_function
def _row_exposure(row, greek, greek_status, quantity, multiplier, option_code, underlying_id,
                  price, dealer_position, call_sign, put_sign, scale, price_power):  # fmt: skip
    """``(value, reason)`` of one row: its exposure (NaN when not counted) and reason code.

    ``value = sign * quantity * multiplier * greek * scale * price**price_power`` with
    ``sign`` the convention's (1 with ``dealer_position``). ``multiplier`` and ``price``
    are per row when they have one entry per row, else per underlying. The reason
    follows the GEX kernel's precedence: the greeks kernel's input checks (missing
    value, option type, strike, vol), then the quantity, then its time checks, then the
    multiplier, then its other checks; a counted row whose value is not finite is
    ``non_finite_result``.
    """
    underlying = underlying_id[row]
    reason = greek_status[row]
    amount = quantity[row]
    if dealer_position:
        amount_reason = 0 if _finite(amount) else _BAD_POSITION
    elif amount != amount:
        amount_reason = _MISSING
    elif amount < 0.0:
        amount_reason = _NEGATIVE_OI
    elif not _finite(amount):
        amount_reason = _BAD_OI
    else:
        amount_reason = 0
    row_multiplier = multiplier.size == greek.size
    contract_multiplier = multiplier[row] if row_multiplier else multiplier[underlying]
    early = (
        reason == _MISSING or reason == _UNKNOWN_TYPE or reason == _BAD_STRIKE
        or reason == _BAD_VOL
    )  # fmt: skip
    if not early:
        if amount_reason != 0:
            reason = amount_reason
        elif (
            reason != _BAD_TIME and reason != _EXPIRED
            and not (contract_multiplier > 0.0 and _finite(contract_multiplier))
        ):  # fmt: skip
            reason = _BAD_MULTIPLIER
    value = np.nan
    if reason == 0:
        is_call = option_code[row] == CALL_CODE
        sign = 1.0 if dealer_position else (call_sign if is_call else put_sign)
        level = price[row] if price.size == greek.size else price[underlying]
        factor = 1.0
        if price_power == 1:
            factor = level
        elif price_power == 2:
            factor = level * level
        value = sign * amount * contract_multiplier * greek[row] * scale * factor
        if not _finite(value):
            reason = _NON_FINITE
            value = np.nan
    return value, reason


@loop_body
def _exposure_block(
    block, block_rows, greek, greek_status, quantity, multiplier, option_code, underlying_id,
    price, dealer_position, call_sign, put_sign, scale, price_power, group_id, with_groups,
    block_first, block_offset, group_first, group_offset, values, status, part_sums,
    part_reasons, part_groups, part_group_counts,
):  # fmt: skip
    """One block of :func:`exposure_rows`: its rows' values and reasons, and its partials."""
    n_rows = greek.size
    start = block * block_rows
    stop = min(n_rows, start + block_rows)
    # Zeroed by the block that owns them: first touch on every thread at once.
    part_sums[block_offset[block] : block_offset[block + 1]] = 0.0
    part_reasons[block_offset[block] : block_offset[block + 1]] = 0
    part_groups[group_offset[block] : group_offset[block + 1]] = 0.0
    part_group_counts[group_offset[block] : group_offset[block + 1]] = 0
    slot_base = block_offset[block] - block_first[block]
    group_base = group_offset[block] - group_first[block]
    for row in range(start, stop):
        value, reason = _row_exposure(row, greek, greek_status, quantity, multiplier,
                                      option_code, underlying_id, price, dealer_position,
                                      call_sign, put_sign, scale, price_power)  # fmt: skip
        values[row] = value
        status[row] = reason
        slot = slot_base + underlying_id[row]
        part_reasons[slot, reason] += 1
        if reason != 0:
            continue
        side = 0 if option_code[row] == CALL_CODE else 1
        total, comp = _neumaier_add(part_sums[slot, 2 * side], part_sums[slot, 2 * side + 1], value)
        part_sums[slot, 2 * side] = total
        part_sums[slot, 2 * side + 1] = comp
        if with_groups:
            group = group_base + group_id[row]
            total, comp = _neumaier_add(
                part_groups[group, side], part_groups[group, 2 + side], value
            )
            part_groups[group, side] = total
            part_groups[group, 2 + side] = comp
            part_groups[group, 4 + side] += quantity[row]
            part_group_counts[group] += 1


@kernel
def exposure_rows(
    greek,
    greek_status,
    quantity,
    multiplier,
    option_code,
    underlying_id,
    price,
    dealer_position,
    call_sign,
    put_sign,
    scale,
    price_power,
    group_id,
    n_underlyings,
    n_groups,
    n_codes,
    rows_per_block,
):
    """Per-row exposures (:func:`_row_exposure`), final drop reasons and their sums.

    Rows are cut in blocks of ``rows_per_block`` (the parallel unit, a function of the
    data's shape only). Each block sums its rows in input order, with Neumaier
    compensation, into partial sums kept for the range of underlyings (and groups) it
    touches; the partials are then combined in block order, so results do not depend on
    the thread count. When the blocks' group ranges would hold more than a few times
    the groups (rows far from grouped by underlying), one block takes every row.

    Returns ``(values, status, sums, group_sums, group_quantity, group_counts,
    reason_counts)``: NaN for rows not counted; per (underlying, side) and (group,
    side) sums (side 0 calls), the group's quantity per side and its counted rows;
    ``reason_counts[u, code]`` rows of underlying ``u`` per code (0: counted).
    """
    n_rows = greek.size
    with_groups = group_id.size == n_rows and n_groups > 0
    block_rows = max(1, rows_per_block)
    n_blocks = max(1, (n_rows + block_rows - 1) // block_rows)
    block_first = np.zeros(n_blocks, dtype=np.int64)
    block_span = np.zeros(n_blocks, dtype=np.int64)
    group_first = np.zeros(n_blocks, dtype=np.int64)
    group_span = np.zeros(n_blocks, dtype=np.int64)
    for block in numba.prange(n_blocks):
        start = block * block_rows
        stop = min(n_rows, start + block_rows)
        first, span = _id_range(underlying_id, start, stop, n_underlyings)
        block_first[block] = first
        block_span[block] = span
        if with_groups:
            first_group, group_count = _id_range(group_id, start, stop, n_groups)
            group_first[block] = first_group
            group_span[block] = group_count
    if n_blocks > 1 and group_span.sum() > 4 * n_groups + n_blocks:
        # Rows far from grouped: one block (one thread) rather than partials that
        # would each span most groups.
        block_rows = max(1, n_rows)
        n_blocks = 1
        block_first = np.zeros(1, dtype=np.int64)
        block_span = np.zeros(1, dtype=np.int64)
        group_first = np.zeros(1, dtype=np.int64)
        group_span = np.zeros(1, dtype=np.int64)
        block_first[0], block_span[0] = _id_range(underlying_id, 0, n_rows, n_underlyings)
        if with_groups:
            group_first[0], group_span[0] = _id_range(group_id, 0, n_rows, n_groups)
    block_offset = np.zeros(n_blocks + 1, dtype=np.int64)
    group_offset = np.zeros(n_blocks + 1, dtype=np.int64)
    for block in range(n_blocks):
        block_offset[block + 1] = block_offset[block] + block_span[block]
        group_offset[block + 1] = group_offset[block] + group_span[block]
    values = np.empty(n_rows)
    status = np.empty(n_rows, dtype=np.int8)
    # Per (block, underlying): call, its compensation, put, its compensation; reasons.
    part_sums = np.empty((block_offset[n_blocks], 4))
    part_reasons = np.empty((block_offset[n_blocks], n_codes), dtype=np.int64)
    # Per (block, group): call and put sums, their compensations, call and put
    # quantity (the GEX kernel's layout, merged by the same code); counted rows.
    part_groups = np.empty((group_offset[n_blocks], 6))
    part_group_counts = np.empty(group_offset[n_blocks], dtype=np.int64)
    for block in numba.prange(n_blocks):
        # np.int64 index: see fastgex._jit.loop_body
        _exposure_block(np.int64(block), block_rows, greek, greek_status, quantity,
                        multiplier, option_code, underlying_id, price, dealer_position,
                        call_sign, put_sign, scale, price_power, group_id, with_groups,
                        block_first, block_offset, group_first, group_offset, values, status,
                        part_sums, part_reasons, part_groups,
                        part_group_counts)  # fmt: skip
    sums, reason_counts = _merge_underlyings(block_first[:n_blocks], block_offset, part_sums,
                                             part_reasons, n_underlyings, n_codes)  # fmt: skip
    n_out_groups = n_groups if with_groups else 0
    group_sums = np.empty((n_out_groups, 2))
    group_quantity = np.empty((n_out_groups, 2))
    group_counts = np.empty(n_out_groups, dtype=np.int64)
    # Each chunk of groups is merged by one thread, from every block in block order.
    n_chunks = (n_out_groups + GROUP_CHUNK - 1) // GROUP_CHUNK
    for chunk in numba.prange(n_chunks):
        _merge_group_chunk(chunk * GROUP_CHUNK, min(n_out_groups, (chunk + 1) * GROUP_CHUNK),
                           group_first[:n_blocks], group_span, group_offset, part_groups,
                           part_group_counts, group_sums, group_quantity,
                           group_counts)  # fmt: skip
    return values, status, sums, group_sums, group_quantity, group_counts, reason_counts


@scalar_function
def _merge_underlyings(block_first, block_offset, part_sums, part_reasons, n_underlyings,
                       n_codes):  # fmt: skip
    """Per-underlying sums (compensation added in) and reason counts, blocks in order.

    ``part_sums[slot]`` is (call, its compensation, put, its compensation).
    """
    merged = np.zeros((n_underlyings, 4))
    reason_counts = np.zeros((n_underlyings, n_codes), dtype=np.int64)
    for block in range(block_first.size):
        for slot in range(block_offset[block], block_offset[block + 1]):
            underlying = block_first[block] + slot - block_offset[block]
            for side in range(2):
                merged[underlying, 2 * side + 1] += part_sums[slot, 2 * side + 1]
                total, comp = _neumaier_add(
                    merged[underlying, 2 * side],
                    merged[underlying, 2 * side + 1],
                    part_sums[slot, 2 * side],
                )
                merged[underlying, 2 * side] = total
                merged[underlying, 2 * side + 1] = comp
            for code in range(n_codes):
                reason_counts[underlying, code] += part_reasons[slot, code]
    sums = np.empty((n_underlyings, 2))
    for underlying in range(n_underlyings):
        sums[underlying, 0] = merged[underlying, 0] + merged[underlying, 1]
        sums[underlying, 1] = merged[underlying, 2] + merged[underlying, 3]
    return sums, reason_counts
