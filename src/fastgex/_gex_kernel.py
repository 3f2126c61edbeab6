"""The fused GEX kernel (CPU). Its compile-time switches are the globals below.

Numba freezes module globals as constants, so every ``if BLACK76:`` is resolved at
compile time and the hot loop stays branch-free and vectorized. The default
configuration is this module itself; other configurations are copies of this file
with the switch lines rewritten (see :func:`fastgex._kernels.gex_kernel`), so each one
is an ordinary file that Numba's on-disk cache can hold.

Layout of the hot loop (why it looks the way it does):

* Rows are split in fixed-size *blocks* (the parallel unit). The block size depends
  only on the row and underlying counts, never on the thread count, so totals are
  bitwise identical for any ``NUMBA_NUM_THREADS``.
* Each block walks *strips* of ``STRIP_ROWS`` rows. A strip holding one underlying
  (the common, sorted case) runs a branch-free loop with that underlying's parameters
  hoisted, and call/put sums fused in; LLVM vectorizes it (this is where the
  polynomial ``exp``/``log`` pay off). A strip holding several underlyings is cut into
  runs of one underlying, each run the same loop. Invalid rows give 0.0 and are
  counted in that loop; a run whose count falls short is walked again row by row to
  name the reason of each bad row.
* Each chunk of ``SUM_CHUNK`` rows is two loops: :func:`contract_parts` (validation,
  log, square root, division) of every row into an L1 scratch, then the ``exp``, the
  values and the sums. One fused loop was bound by its dependency chain, not by the
  arithmetic units; the split made the kernel 10-17% faster per row on cached data
  and 6-8% at 1e7 rows.
* The kernel is compiled with ``_jit.ROW_FLAGS`` (no reassociation): a row's value is
  the same bits wherever the row falls. Only the chunk sums may be reordered (they add
  through ``_jit.reorderable_add``), which is what lets them vectorize.
* Within a strip, rows are summed in plain SIMD chunks of ``SUM_CHUNK`` rows; chunk sums
  enter the strip's sums, and strip sums the block sums, with Neumaier compensation;
  blocks are combined in order, also compensated. The sums of magnitudes returned with
  the totals bound the chunks' error, and the caller re-sums underlyings that fail the
  bound with ``exact_slots`` (docs/methodology.md, "Summation").
* Invalid rows contribute exactly 0.0 and get a status code, so nothing is dropped
  silently and no NaN reaches a total.
"""

from __future__ import annotations

import numba
import numpy as np

from fastgex._fastmath import exp_of_number
from fastgex._formulas import black76_gamma_parts, bsm_gamma_parts
from fastgex._jit import (
    ROW_FLAGS,
    exact_function,
    kernel,
    loop_body,
    outlined,
    reorderable_add,
    scalar_function,
)
from fastgex._kernel_common import (
    _BAD_FORWARD,
    _BAD_GAMMA,
    _BAD_MULTIPLIER,
    _BAD_OI,
    _BAD_POSITION,
    _BAD_RATE,
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
    MISSING_CODE,
    PUT_CODE,
    REASONS,
    STRIP_ROWS,
    SUM_CHUNK,
    _add_to,
    _combine,
    _finite,
    _id_range,
    _merge_group_chunk,
    _neumaier_add,
    _segment_stop,
    _two_sum,
)

# --- compile-time switches (rewritten in generated copies; keep one per line) ---
BLACK76 = False
VENDOR_GAMMA = False
DEALER_POSITION = False
ROW_CARRY = False
ROW_MULTIPLIER = False
HAS_TIME = True
UNIT_POWER = 2
# --- end of switches ---


@scalar_function
def row_status(
    row,
    strike,
    vol,
    time_to_expiry,
    quantity,
    option_code,
    underlying_id,
    rate,
    dividend_yield,
    forward,
    gamma_column,
    multiplier,
):
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
    if not VENDOR_GAMMA and not (vol[row] > 0.0 and _finite(vol[row])):
        return _BAD_VOL
    amount = quantity[row]
    if DEALER_POSITION:
        if not _finite(amount):
            return _BAD_POSITION
    elif amount != amount:
        return _MISSING
    elif amount < 0.0:
        return _NEGATIVE_OI
    elif not _finite(amount):
        return _BAD_OI
    if HAS_TIME:
        if not _finite(time_to_expiry[row]):
            return _BAD_TIME
        if time_to_expiry[row] <= 0.0:
            return _EXPIRED
    if VENDOR_GAMMA and not (gamma_column[row] >= 0.0 and _finite(gamma_column[row])):
        return _BAD_GAMMA
    row_mult = multiplier[row] if ROW_MULTIPLIER else multiplier[underlying]
    if not (row_mult > 0.0 and _finite(row_mult)):
        return _BAD_MULTIPLIER
    if BLACK76 and not (forward[row] > 0.0 and _finite(forward[row])):
        return _BAD_FORWARD
    if ROW_CARRY:
        row_rate = rate[row]
        row_dividend = dividend_yield[row]
    else:
        row_rate = rate[underlying]
        row_dividend = dividend_yield[underlying]
    if not (_finite(row_rate) and _finite(row_dividend)):
        return _BAD_RATE
    return 0


@scalar_function
def contract_parts(
    row,
    strike,
    vol,
    time_to_expiry,
    quantity,
    option_code,
    rate,
    dividend_yield,
    forward,
    gamma_column,
    multiplier,
    spot_value,
    rate_value,
    dividend_value,
    multiplier_value,
    call_sign,
    put_sign,
    unit_scale,
    min_time,
):
    """Signed GEX of one row as ``factor * exp(exponent)``: ``(exponent, factor)``.

    Branch-free on purpose (``&``, not ``and``, and selects) so the loop vectorizes.
    A row with invalid inputs gets a NaN ``factor``, so its value is not finite and
    :func:`finish_value` drops it (a row that does not count gives exactly 0.0);
    :func:`row_status` says why. With the vendor's gamma
    the exponent is 0 and :func:`finish_value` takes the factor as it is.
    """
    # Codes arrive as uint8, so the negative "read-time" reasons wrap above 1 and one
    # unsigned compare validates the type. The other checks are plain compares (NaN
    # fails each), and the "< inf" checks of the columns that must be >= 0 share one
    # compare on their maximum: ``_finite`` per column costs LLVM's integer class test
    # (about six vector instructions) each.
    code = option_code[row]
    row_strike = strike[row]
    valid = (code <= CALL_CODE) & (row_strike > 0.0)
    largest = row_strike
    row_vol = 1.0
    if not VENDOR_GAMMA:
        row_vol = vol[row]
        valid = valid & (row_vol > 0.0)
        largest = row_vol if row_vol > largest else largest
    amount = quantity[row]
    if DEALER_POSITION:
        valid = valid & _finite(amount)
    else:
        valid = valid & (amount >= 0.0)
        largest = amount if amount > largest else largest
    row_time = 1.0
    if HAS_TIME:
        row_time = time_to_expiry[row]
        valid = valid & (row_time > 0.0)
        largest = row_time if row_time > largest else largest
        row_time = max(row_time, min_time)
    row_gamma = 0.0
    if VENDOR_GAMMA:
        row_gamma = gamma_column[row]
        valid = valid & (row_gamma >= 0.0)
        largest = row_gamma if row_gamma > largest else largest
    row_mult = multiplier[row] if ROW_MULTIPLIER else multiplier_value
    valid = valid & (row_mult > 0.0)
    largest = row_mult if row_mult > largest else largest
    # Everything folded into ``largest`` is >= 0 and not NaN when ``valid`` holds, so
    # the max is exact (selects, not ``max()``, whose NaN handling blocks SIMD).
    valid = valid & (largest < np.inf)
    if ROW_CARRY:
        row_rate = rate[row]
        row_dividend = dividend_yield[row]
    else:
        row_rate = rate_value
        row_dividend = dividend_value
    valid = valid & _finite(row_rate) & _finite(row_dividend)
    if BLACK76:
        price = forward[row]
        valid = valid & (price > 0.0) & _finite(price)
    else:
        price = spot_value
    exponent = 0.0
    if not VENDOR_GAMMA:
        if BLACK76:
            exponent, row_gamma = black76_gamma_parts(
                price, row_strike, row_vol, row_time, row_rate
            )
        else:
            exponent, row_gamma = bsm_gamma_parts(
                price, row_strike, row_vol, row_time, row_rate, row_dividend
            )
    if DEALER_POSITION:
        signed_amount = amount
    else:
        call_weight = np.float64(code)
        signed_amount = amount * (put_sign + (call_sign - put_sign) * call_weight)
    unit = unit_scale
    if UNIT_POWER >= 1:
        unit = unit * price
    if UNIT_POWER >= 2:
        unit = unit * price
    # Grouped so a multiplier per underlying makes the second product loop-invariant.
    factor = (row_gamma * signed_amount) * (row_mult * unit)
    # A bad spot is no column's fault: such rows count as non-finite results.
    valid = valid & (price > 0.0) & _finite(price)
    return exponent, (factor if valid else np.nan)


@scalar_function
def finish_value(exponent, factor):
    """``factor * exp(exponent)`` and 1 if it counts; a row that does not gives 0.0."""
    value = factor if VENDOR_GAMMA else factor * exp_of_number(exponent)
    valid = _finite(value)
    return (value if valid else 0.0), np.int64(valid)


#: The row-by-row fallback's copy of :func:`contract_parts`, not inlined: it only runs on
#: segments holding invalid rows, and a third inlined copy of the formula cost about 4 s
#: of the kernel's cold compile. A row's value is :func:`finish_value` of its parts.
contract_parts_row = outlined(contract_parts, flags=ROW_FLAGS)


@scalar_function
def segment_sums(
    base,
    length,
    strike,
    vol,
    time_to_expiry,
    quantity,
    option_code,
    rate,
    dividend_yield,
    forward,
    gamma_column,
    multiplier,
    spot_value,
    rate_value,
    dividend_value,
    multiplier_value,
    call_sign,
    put_sign,
    unit_scale,
    min_time,
    chunk_parts,
    values_out,
    stored_base,
    store_values,
):
    """Compensated call and put sums, their sizes and the counted rows over ``base .. base+length``.

    The rows belong to one underlying, whose parameters come in as scalars: a flat,
    branch-free loop that LLVM vectorizes, cut in chunks of ``SUM_CHUNK`` rows. Within a
    chunk the sums are plain (reassociated SIMD) sums, so each is off by at most
    ``(SUM_CHUNK - 1) * 2**-53`` of the chunk's sum of magnitudes; the chunk sums enter
    the segment's sums with Neumaier compensation. The sums of magnitudes are returned so
    the caller can bound the error afterwards (:data:`SUM_ERROR_PER_SIZE`).

    Each chunk takes two loops: the first computes every row's
    :func:`contract_parts` into ``chunk_parts`` (a ``(2, SUM_CHUNK)`` scratch that stays
    in L1), the second the ``exp`` of them, the values and the sums. One fused loop is
    bound by the length of its dependency chain (log, division, exp, one after the
    other), not by the arithmetic units: split in two, the out-of-order core holds twice
    as many rows of each half in flight.

    Row ``r``'s value goes to ``values_out[r - stored_base]``. Callers pass
    ``store_values`` as a literal, so after inlining the store (and its branch) is
    folded in or out of the loop.

    Returns ``(call_total, call_compensation, put_total, put_compensation, call_size,
    put_size, counted)``.
    """
    call_total = 0.0
    call_compensation = 0.0
    put_total = 0.0
    put_compensation = 0.0
    call_size = 0.0
    put_size = 0.0
    counted = 0
    for chunk_start in range(numba.uint64(0), length, numba.uint64(SUM_CHUNK)):
        chunk_stop = min(length, chunk_start + numba.uint64(SUM_CHUNK))
        call_part = 0.0
        put_part = 0.0
        for offset in range(chunk_start, chunk_stop):
            exponent, factor = contract_parts(
                base + offset,
                strike,
                vol,
                time_to_expiry,
                quantity,
                option_code,
                rate,
                dividend_yield,
                forward,
                gamma_column,
                multiplier,
                spot_value,
                rate_value,
                dividend_value,
                multiplier_value,
                call_sign,
                put_sign,
                unit_scale,
                min_time,
            )
            chunk_parts[0, offset - chunk_start] = exponent
            chunk_parts[1, offset - chunk_start] = factor
        for offset in range(chunk_start, chunk_stop):
            row = base + offset
            value, valid = finish_value(
                chunk_parts[0, offset - chunk_start], chunk_parts[1, offset - chunk_start]
            )
            if store_values:
                values_out[row - stored_base] = value
            # Arithmetic split, not a select: it keeps the loop vectorized. Both
            # products are exact (the weight is 0 or 1).
            call_weight = np.float64(option_code[row])
            call_value = value * call_weight
            put_value = value * (1.0 - call_weight)
            call_part = reorderable_add(call_part, call_value)
            put_part = reorderable_add(put_part, put_value)
            if DEALER_POSITION:
                call_size = reorderable_add(call_size, abs(call_value))
                put_size = reorderable_add(put_size, abs(put_value))
            counted += valid
        if not DEALER_POSITION:
            # A named convention gives every call one sign and every put one sign, so
            # the sums of magnitudes are the sums' magnitudes: no per-row work.
            call_size += abs(call_part)
            put_size += abs(put_part)
        call_total, call_compensation = _neumaier_add(call_total, call_compensation, call_part)
        put_total, put_compensation = _neumaier_add(put_total, put_compensation, put_part)
    return call_total, call_compensation, put_total, put_compensation, call_size, put_size, counted


@exact_function
def _exact_segment_sums(values, option_code, base, length, stored_base):
    """Neumaier sums of stored values, one row at a time.

    For slots whose fast sums fail the error bound (heavy cancellation). The outputs of
    :func:`segment_sums` but the count.
    """
    call_total = 0.0
    call_compensation = 0.0
    put_total = 0.0
    put_compensation = 0.0
    call_size = 0.0
    put_size = 0.0
    for offset in range(length):
        row = base + offset
        value = values[row - stored_base]
        if option_code[row] == CALL_CODE:
            call_total, call_compensation = _neumaier_add(call_total, call_compensation, value)
            call_size += abs(value)
        else:
            put_total, put_compensation = _neumaier_add(put_total, put_compensation, value)
            put_size += abs(value)
    return call_total, call_compensation, put_total, put_compensation, call_size, put_size


@scalar_function
def _add_group_row(partial_group, partial_group_rows, slot, code, value, amount):
    """Add one counted row to its (strike, ...) group: compensated GEX, quantity, count.

    ``partial_group[slot]`` holds call/put GEX, their compensations, call/put quantity.
    """
    side = 0 if code == CALL_CODE else 1
    total, compensation = _neumaier_add(
        partial_group[slot, side], partial_group[slot, 2 + side], value
    )
    partial_group[slot, side] = total
    partial_group[slot, 2 + side] = compensation
    partial_group[slot, 4 + side] += amount
    partial_group_rows[slot] += 1


@loop_body(flags=ROW_FLAGS)
def _block_partials(
    block,
    rows_per_block,
    strike,
    vol,
    time_to_expiry,
    quantity,
    option_code,
    underlying_id,
    spot,
    rate,
    dividend_yield,
    forward,
    gamma_column,
    multiplier,
    call_sign,
    put_sign,
    unit_scale,
    min_time,
    values_out,
    status_out,
    group_id,
    exact_slots,
    want_groups,
    any_exact,
    write_values,
    write_status,
    block_first,
    block_offset,
    group_first,
    group_offset,
    partial_sums,
    partial_compensation,
    partial_size,
    partial_rows,
    partial_group,
    partial_group_rows,
):
    """One block's rows into its partial sums, counts and group rows (see :func:`run`)."""
    n_rows = strike.size
    block_start = block * rows_per_block
    block_stop = min(n_rows, block_start + rows_per_block)
    partial_base = block_offset[block] - block_first[block]
    group_base = group_offset[block] - group_first[block]
    partial_group[group_offset[block] : group_offset[block + 1]] = 0.0
    partial_group_rows[group_offset[block] : group_offset[block + 1]] = 0
    # Where the per-row values go: the caller's array, else (when groups need
    # them) a strip-sized scratch that stays in L1.
    scratch = np.empty(STRIP_ROWS if (want_groups or any_exact) and not write_values else 0)
    stored = values_out if write_values else scratch
    store_values = write_values or want_groups or any_exact
    chunk_parts = np.empty((2, SUM_CHUNK))
    for strip_start in range(block_start, block_stop, STRIP_ROWS):
        # Unsigned indices: numba then skips its negative-index wraparound
        # check, which otherwise stops LLVM from vectorizing these loops.
        base = numba.uint64(strip_start)
        length = numba.uint64(min(STRIP_ROWS, block_stop - strip_start))
        stored_base = numba.uint64(0) if write_values else base
        first_underlying = underlying_id[base]
        mixed = 0
        for offset in range(length):
            mixed += underlying_id[base + offset] != first_underlying
        start = numba.uint64(0)
        while start < length:
            underlying = underlying_id[base + start]
            stop = _segment_stop(underlying_id, base, start, length, mixed)
            if any_exact and exact_slots[underlying] == 0:
                start = stop  # the exact pass sums the marked slots only
                continue
            spot_value = spot[underlying]
            rate_value = rate[underlying] if not ROW_CARRY else 0.0
            dividend_value = dividend_yield[underlying] if not ROW_CARRY else 0.0
            multiplier_value = multiplier[underlying] if not ROW_MULTIPLIER else 0.0
            # Two calls that differ only in the last argument, on purpose: a literal
            # True/False lets the per-row store be compiled out of the hot loop.
            if store_values:
                sums_out = segment_sums(
                    base + start,
                    stop - start,
                    strike,
                    vol,
                    time_to_expiry,
                    quantity,
                    option_code,
                    rate,
                    dividend_yield,
                    forward,
                    gamma_column,
                    multiplier,
                    spot_value,
                    rate_value,
                    dividend_value,
                    multiplier_value,
                    call_sign,
                    put_sign,
                    unit_scale,
                    min_time,
                    chunk_parts,
                    stored,
                    stored_base,
                    True,
                )
            else:
                sums_out = segment_sums(
                    base + start,
                    stop - start,
                    strike,
                    vol,
                    time_to_expiry,
                    quantity,
                    option_code,
                    rate,
                    dividend_yield,
                    forward,
                    gamma_column,
                    multiplier,
                    spot_value,
                    rate_value,
                    dividend_value,
                    multiplier_value,
                    call_sign,
                    put_sign,
                    unit_scale,
                    min_time,
                    chunk_parts,
                    stored,
                    stored_base,
                    False,
                )
            counted = sums_out[6]
            slot = partial_base + underlying
            if counted != stop - start:
                # Some rows did not count: walk the segment row by row, naming the
                # reason of each bad row. Its sums and count come from this walk
                # alone, so every row is counted or dropped in exactly one place even
                # where the two compiled copies of the formula disagree at the edge
                # of float64.
                counted = 0
                walked = np.zeros(6)  # call, its compensation, put, ..., the sizes
                for offset in range(start, stop):
                    row = base + offset
                    exponent, factor = contract_parts_row(
                        row,
                        strike,
                        vol,
                        time_to_expiry,
                        quantity,
                        option_code,
                        rate,
                        dividend_yield,
                        forward,
                        gamma_column,
                        multiplier,
                        spot_value,
                        rate_value,
                        dividend_value,
                        multiplier_value,
                        call_sign,
                        put_sign,
                        unit_scale,
                        min_time,
                    )
                    value, valid = finish_value(exponent, factor)
                    if store_values:
                        stored[row - stored_base] = value if valid != 0 else 0.0
                    if valid != 0:
                        counted += 1
                        side = 0 if option_code[row] == CALL_CODE else 1
                        total, compensation = _neumaier_add(
                            walked[2 * side], walked[2 * side + 1], value
                        )
                        walked[2 * side] = total
                        walked[2 * side + 1] = compensation
                        walked[4 + side] += abs(value)
                        if want_groups:
                            _add_group_row(
                                partial_group,
                                partial_group_rows,
                                group_base + group_id[row],
                                option_code[row],
                                value,
                                quantity[row],
                            )
                        continue
                    status = row_status(
                        row,
                        strike,
                        vol,
                        time_to_expiry,
                        quantity,
                        option_code,
                        underlying_id,
                        rate,
                        dividend_yield,
                        forward,
                        gamma_column,
                        multiplier,
                    )
                    if status == 0:  # valid inputs, but no finite result
                        status = _NON_FINITE
                    partial_rows[slot, status] += 1
                    if write_status:
                        status_out[row] = status
                sums_out = (
                    walked[0], walked[1], walked[2], walked[3], walked[4], walked[5], counted
                )  # fmt: skip
            else:
                if any_exact and exact_slots[underlying] != 0:
                    exact = _exact_segment_sums(
                        stored, option_code, base + start, stop - start, stored_base
                    )
                    sums_out = (
                        exact[0], exact[1], exact[2], exact[3], exact[4], exact[5], counted
                    )  # fmt: skip
                if want_groups:
                    for offset in range(start, stop):
                        row = base + offset
                        _add_group_row(
                            partial_group,
                            partial_group_rows,
                            group_base + group_id[row],
                            option_code[row],
                            stored[row - stored_base],
                            quantity[row],
                        )
            partial_rows[slot, 0] += counted
            call_total, call_low, put_total, put_low, call_size, put_size, _ = sums_out
            _add_to(partial_sums, partial_compensation, slot, 0, call_total)
            _add_to(partial_sums, partial_compensation, slot, 1, put_total)
            partial_compensation[slot, 0] += call_low
            partial_compensation[slot, 1] += put_low
            partial_size[slot, 0] += call_size
            partial_size[slot, 1] += put_size
            start = stop


@kernel(flags=ROW_FLAGS)
def run(
    strike,
    vol,
    time_to_expiry,
    quantity,
    option_code,
    underlying_id,
    spot,
    rate,
    dividend_yield,
    forward,
    gamma_column,
    multiplier,
    call_sign,
    put_sign,
    unit_scale,
    min_time,
    n_underlyings,
    rows_per_block,
    values_out,
    status_out,
    group_id,
    n_groups,
    exact_slots,
):
    """Accumulate call and put GEX per underlying (and per group); optionally per-row values.

    ``underlying_id`` is the *slot* of each row: an underlying, or an (underlying, expiry
    class) pair; ``spot``, ``rate``, ``dividend_yield`` and ``multiplier`` are indexed by
    it. ``group_id`` (any finer key such as (underlying, strike), or empty for none)
    numbers the rows' groups ``0 .. n_groups-1``.

    ``exact_slots`` (one uint8 per slot, or empty for none) asks for the exact pass:
    only the marked slots' rows are visited, and their sums are taken row by row with
    Neumaier compensation instead of in fast SIMD chunks (the caller's second pass for
    slots whose fast sums fail the error bound; the other slots' outputs are zero).

    Returns ``(sums, rows, group_sums, group_quantity, group_rows, sum_details)``:
    ``sums[u, 0]`` calls and ``sums[u, 1]`` puts of slot ``u``; ``rows[u, 0]`` rows of
    ``u`` that count and ``rows[u, c]`` rows dropped with status ``c``; per group the
    call/put GEX, the call/put quantity (open interest or dealer position) and the rows
    that count. ``sum_details[u]`` is ``(call_low, put_low, call_size, put_size)``:
    ``sums[u, side] + low`` is the compensated total before its final rounding, and the
    sizes are the sums of |row GEX| that bound the fast sums' error.
    ``values_out`` is written when its length equals the row count; ``status_out``
    (zero-filled by the caller) gets the code of each invalid row. Pass empty arrays
    to skip either.

    Each strip is cut into segments, runs of one slot (the whole strip when the chain
    is grouped by slot), and each segment is one :func:`segment_sums` loop. Rows that
    do not count give 0.0 there; only when a segment's count falls short are its rows
    walked again, one by one, to name the reasons. Group sums are a scalar scatter over
    the segment's stored values right after the vectorized loop, while they are still
    in L1: the per-strike tables cost no second pass over memory.
    """
    n_rows = strike.size
    n_blocks = max(1, (n_rows + rows_per_block - 1) // rows_per_block)
    want_groups = group_id.size == n_rows and n_groups > 0
    # Each block keeps partial sums only for the range of slots (and groups) it
    # touches; a chain grouped by underlying touches one or two slots per block. A
    # dense blocks x slots array would be mostly zeros, and for a whole market
    # allocating and zeroing it costs more than the GEX itself.
    block_first = np.empty(n_blocks, dtype=np.int64)
    block_span = np.empty(n_blocks, dtype=np.int64)
    group_first = np.zeros(n_blocks, dtype=np.int64)
    group_span = np.zeros(n_blocks, dtype=np.int64)
    for block in numba.prange(n_blocks):
        block_start = block * rows_per_block
        block_stop = min(n_rows, block_start + rows_per_block)
        first, span = _id_range(underlying_id, block_start, block_stop, n_underlyings)
        block_first[block] = first
        block_span[block] = span
        if want_groups:
            first_group, group_count = _id_range(group_id, block_start, block_stop, n_groups)
            group_first[block] = first_group
            group_span[block] = group_count
    block_offset = np.empty(n_blocks + 1, dtype=np.int64)
    group_offset = np.empty(n_blocks + 1, dtype=np.int64)
    block_offset[0] = 0
    group_offset[0] = 0
    for block in range(n_blocks):
        block_offset[block + 1] = block_offset[block] + block_span[block]
        group_offset[block + 1] = group_offset[block] + group_span[block]
    n_partials = block_offset[n_blocks]
    partial_sums = np.zeros((n_partials, 2))
    partial_compensation = np.zeros((n_partials, 2))
    partial_size = np.zeros((n_partials, 2))
    any_exact = exact_slots.size == n_underlyings
    # Rows per (slot, status): column 0 counts the rows that count, column c > 0 the
    # rows dropped with status c. Small (slots x reasons), so every count is exact
    # and no per-row status array is needed unless the caller wants one.
    partial_rows = np.zeros((n_partials, len(REASONS) + 1), dtype=np.int64)
    n_group_partials = group_offset[n_blocks]
    # One row per (block, group): zeroed by the block that owns it, so the first
    # touch of this (group-count sized) memory happens on every thread at once.
    partial_group = np.empty((n_group_partials, 6))
    partial_group_rows = np.empty(n_group_partials, dtype=np.int64)
    write_values = values_out.size == n_rows
    write_status = status_out.size == n_rows
    for block in numba.prange(n_blocks):
        # np.int64 index: see fastgex._jit.loop_body
        _block_partials(np.int64(block), rows_per_block, strike, vol, time_to_expiry, quantity,
                        option_code, underlying_id, spot, rate, dividend_yield, forward,
                        gamma_column, multiplier, call_sign, put_sign, unit_scale,
                        min_time, values_out, status_out, group_id, exact_slots,
                        want_groups, any_exact, write_values, write_status, block_first,
                        block_offset, group_first, group_offset, partial_sums,
                        partial_compensation, partial_size, partial_rows, partial_group,
                        partial_group_rows)  # fmt: skip
    sums = np.zeros((n_underlyings, 2))
    compensation = np.zeros((n_underlyings, 2))
    rows = np.zeros((n_underlyings, len(REASONS) + 1), dtype=np.int64)
    sum_details = np.zeros((n_underlyings, 4))
    _combine(block_first, block_offset, partial_sums, partial_compensation, sums, compensation)
    for block in range(n_blocks):
        for slot in range(block_offset[block], block_offset[block + 1]):
            target = block_first[block] + slot - block_offset[block]
            for reason in range(rows.shape[1]):  # a loop: an array += costs 2 s of compile
                rows[target, reason] += partial_rows[slot, reason]
            sum_details[target, 2] += partial_size[slot, 0]
            sum_details[target, 3] += partial_size[slot, 1]
    totals = np.empty((n_underlyings, 2))
    for target in range(n_underlyings):
        for side in range(2):
            totals[target, side], sum_details[target, side] = _two_sum(
                sums[target, side], compensation[target, side]
            )
    n_out_groups = n_groups if want_groups else 0
    group_sums = np.empty((n_out_groups, 2))
    group_quantity = np.empty((n_out_groups, 2))
    group_rows = np.empty(n_out_groups, dtype=np.int64)
    # Each chunk of groups is merged by one thread, from every block in block order.
    n_chunks = (n_out_groups + GROUP_CHUNK - 1) // GROUP_CHUNK
    for chunk in numba.prange(n_chunks):
        _merge_group_chunk(chunk * GROUP_CHUNK, min(n_out_groups, (chunk + 1) * GROUP_CHUNK),
                           group_first, group_span, group_offset, partial_group,
                           partial_group_rows, group_sums, group_quantity,
                           group_rows)  # fmt: skip
    return (
        totals,
        rows,
        group_sums,
        group_quantity,
        group_rows,
        sum_details,
    )
