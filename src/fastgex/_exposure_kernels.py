"""Compensated, deterministic sums of per-contract exposures per underlying and group."""

from __future__ import annotations

import numpy as np

from fastgex._jit import kernel
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
    _finite,
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


@kernel(parallel=False)
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
):
    """Per-row exposures, final drop reasons and their sums, in one input-order pass.

    ``value = sign * quantity * multiplier * greek * scale * price**price_power`` with
    ``sign`` the convention's (1 with ``dealer_position``). ``multiplier`` and ``price``
    are per row when they have one entry per row, else per underlying. A row's reason
    follows the GEX kernel's precedence: the greeks kernel's input checks (missing
    value, option type, strike, vol), then the quantity, then its time checks, then the
    multiplier, then its other checks; a counted row whose value is not finite is
    ``non_finite_result``. Sums are Neumaier sums in input order (thread-count free).

    Returns ``(values, status, sums, group_sums, group_quantity, group_counts,
    reason_counts)``: NaN for rows not counted; per (underlying, side) and (group,
    side) sums (side 0 calls), the group's quantity per side and its counted rows;
    ``reason_counts[u, code]`` rows of underlying ``u`` per code (0: counted).
    """
    n_rows = greek.size
    values = np.empty(n_rows)
    status = np.empty(n_rows, dtype=np.int8)
    sums = np.zeros((n_underlyings, 2))
    compensation = np.zeros((n_underlyings, 2))
    group_sums = np.zeros((n_groups, 2))
    group_compensation = np.zeros((n_groups, 2))
    group_quantity = np.zeros((n_groups, 2))
    group_counts = np.zeros(n_groups, dtype=np.int64)
    reason_counts = np.zeros((n_underlyings, n_codes), dtype=np.int64)
    with_groups = group_id.size == n_rows
    row_multiplier = multiplier.size == n_rows
    row_price = price.size == n_rows
    for row in range(n_rows):
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
            level = price[row] if row_price else price[underlying]
            factor = 1.0
            if price_power == 1:
                factor = level
            elif price_power == 2:
                factor = level * level
            value = sign * amount * contract_multiplier * greek[row] * scale * factor
            if not _finite(value):
                reason = _NON_FINITE
                value = np.nan
            else:
                side = 0 if is_call else 1
                total, comp = _neumaier_add(
                    sums[underlying, side], compensation[underlying, side], value
                )
                sums[underlying, side] = total
                compensation[underlying, side] = comp
                if with_groups:
                    group = group_id[row]
                    total, comp = _neumaier_add(
                        group_sums[group, side], group_compensation[group, side], value
                    )
                    group_sums[group, side] = total
                    group_compensation[group, side] = comp
                    group_quantity[group, side] += amount
                    group_counts[group] += 1
        values[row] = value
        status[row] = reason
        reason_counts[underlying, reason] += 1
    return (
        values,
        status,
        sums + compensation,
        group_sums + group_compensation,
        group_quantity,
        group_counts,
        reason_counts,
    )
