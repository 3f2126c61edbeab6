"""Compensated, deterministic sums of per-contract exposures per underlying and group."""

from __future__ import annotations

import numpy as np

from fastgex._jit import kernel
from fastgex._kernel_common import _neumaier_add


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
