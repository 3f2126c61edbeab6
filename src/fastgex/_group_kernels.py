"""Kernels that number groups and reduce group sums to buckets and views.

* :func:`group_ids` - the (underlying, strike[, expiry]) group of every row, before the
  GEX kernel sums per group.
* :func:`pair_ids` - the distinct (underlying, expiry) pairs of the rows, whose bucket and
  view membership is then decided once per pair.
* :func:`order_groups` - groups ordered by underlying then strike, cut into runs of one
  (underlying, strike).
* :func:`target_strike_table` - per (underlying, bucket / view, strike) and per
  (underlying, bucket / view) sums of the groups that belong to each target.
* :func:`strike_runs` - the plain per-(underlying, strike) table from any finer groups,
  with the per (underlying, bucket / view) totals alone in the same walk.
"""

from __future__ import annotations

import numba
import numpy as np

from fastgex._jit import exact_function, kernel, loop_body, scalar_function
from fastgex._kernel_common import _neumaier_add, _two_sum

_MIX_FIRST = numba.uint64(0xBF58476D1CE4E5B9)
_MIX_SECOND = numba.uint64(0x94D049BB133111EB)
_EXPIRY_MULTIPLIER = numba.uint64(0x9E3779B97F4A7C15)
_NEGATIVE_ZERO_BITS = numba.uint64(1 << 63)


@kernel(parallel=False)
def group_ids(underlying_id, strike_bits, expiry, n_underlyings):
    """Number the distinct (underlying, strike, expiry) keys of the rows by first appearance.

    ``strike_bits`` is the strike column viewed as uint64 (keys compare bit for bit,
    with -0.0 folded into 0.0); ``expiry`` is an int32 code per row, or empty for
    groups by (underlying, strike). Each underlying gets its own open-addressing
    table sized from its row count, so lookups for a chain grouped by underlying stay
    in cache and no key can collide across underlyings.

    Returns ``(group_id, group_underlying, group_strike_bits, group_expiry)``: the
    int32 group of each row and, per group, its key.
    """
    n_rows = underlying_id.size
    with_expiry = expiry.size == n_rows
    counts = np.zeros(n_underlyings, dtype=np.int64)
    for row in range(n_rows):
        counts[underlying_id[row]] += 1
    table_start = np.empty(n_underlyings, dtype=np.int64)
    table_mask = np.empty(n_underlyings, dtype=np.uint64)
    total = 0
    for underlying in range(n_underlyings):
        # A power of two at least 1.5 x the rows: load factor <= 2/3 in the worst case.
        needed = counts[underlying] + (counts[underlying] >> 1) + 1
        size = 1
        while size < needed:
            size <<= 1
        table_start[underlying] = total
        table_mask[underlying] = numba.uint64(size - 1)
        total += size
    table = np.full(total, -1, dtype=np.int32)
    group_id = np.empty(n_rows, dtype=np.int32)
    group_underlying = np.empty(n_rows, dtype=np.int64)
    group_strike_bits = np.empty(n_rows, dtype=np.uint64)
    group_expiry = np.empty(n_rows, dtype=np.int64)
    n_groups = 0
    for row in range(n_rows):
        underlying = underlying_id[row]
        bits = strike_bits[row]
        if bits == _NEGATIVE_ZERO_BITS:
            bits = numba.uint64(0)
        expiry_code = numba.int64(expiry[row]) if with_expiry else numba.int64(0)
        # splitmix64's finalizer: round strikes have all-zero low bits, so every bit
        # of the key must reach the low bits the table index uses.
        mixed = bits ^ (numba.uint64(expiry_code) * _EXPIRY_MULTIPLIER)
        mixed = (mixed ^ (mixed >> numba.uint64(30))) * _MIX_FIRST
        mixed = (mixed ^ (mixed >> numba.uint64(27))) * _MIX_SECOND
        mixed ^= mixed >> numba.uint64(31)
        mask = table_mask[underlying]
        position = mixed & mask
        start = table_start[underlying]
        while True:
            found = table[start + position]
            if found < 0:
                found = n_groups
                table[start + position] = found
                group_underlying[found] = underlying
                group_strike_bits[found] = bits
                group_expiry[found] = expiry_code
                n_groups += 1
                break
            if (group_strike_bits[found] == bits) & (group_expiry[found] == expiry_code):
                break
            position = (position + numba.uint64(1)) & mask
        group_id[row] = found
    return (
        group_id,
        group_underlying[:n_groups],
        group_strike_bits[:n_groups],
        group_expiry[:n_groups],
    )


@kernel(parallel=False)
def pair_ids(key_underlying, key_expiry, n_expiries, n_cells):
    """Number the distinct ``underlying * n_expiries + expiry`` keys by first appearance.

    One pass with a dense ``n_cells`` table (the caller bounds it). Returns
    ``(pair_of_key, pair_keys)``: the int32 pair of each key and each pair's key.
    """
    where = np.full(n_cells, -1, dtype=np.int32)
    n_keys = key_underlying.size
    pair_of_key = np.empty(n_keys, dtype=np.int32)
    pair_keys = np.empty(n_keys, dtype=np.int64)
    n_pairs = 0
    for index in range(n_keys):
        key = numba.int64(key_underlying[index]) * n_expiries + key_expiry[index]
        pair = where[key]
        if pair < 0:
            pair = n_pairs
            where[key] = pair
            pair_keys[pair] = key
            n_pairs += 1
        pair_of_key[index] = pair
    return pair_of_key, pair_keys[:n_pairs].copy()


@kernel
def take_int32(values, index):
    """``values[index]`` in parallel (a per-row gather from a small table)."""
    out = np.empty(index.size, dtype=np.int32)
    for row in numba.prange(index.size):
        out[row] = values[index[row]]
    return out


#: Rows sorted by insertion before :func:`_order_rank`'s merges begin.
_INSERTION_RUN = 16


@scalar_function
def _strike_before(strike, other):
    """``strike`` sorts strictly before ``other``: ascending, NaN last (numpy's order)."""
    return strike < other or (other != other and strike == strike)


@loop_body
def _order_rank(order, new_run, group_strike, first, stop):
    """Sort ``order[first:stop]`` by strike (stable) and mark where each strike starts.

    :func:`order_groups`' per-rank step. A plain bottom-up merge sort (insertion-sorted
    runs, then merges that take the right side only when strictly smaller): Numba's
    ``argsort(kind="mergesort")`` gives the same order but added about 1.5 s to the
    cold compile.
    """
    count = stop - first
    if count == 0:
        return
    source = order[first:stop].copy()
    spare = np.empty(count, dtype=np.int64)
    for run_start in range(0, count, _INSERTION_RUN):
        run_stop = min(count, run_start + _INSERTION_RUN)
        for position in range(run_start + 1, run_stop):
            item = source[position]
            slot = position
            while slot > run_start and _strike_before(
                group_strike[item], group_strike[source[slot - 1]]
            ):
                source[slot] = source[slot - 1]
                slot -= 1
            source[slot] = item
    width = _INSERTION_RUN
    while width < count:
        for left in range(0, count, 2 * width):
            middle = min(count, left + width)
            right = min(count, left + 2 * width)
            from_left, from_right = left, middle
            for out in range(left, right):
                take_right = from_right < right and (
                    from_left == middle
                    or _strike_before(
                        group_strike[source[from_right]], group_strike[source[from_left]]
                    )
                )
                if take_right:
                    spare[out] = source[from_right]
                    from_right += 1
                else:
                    spare[out] = source[from_left]
                    from_left += 1
        source, spare = spare, source
        width *= 2
    for position in range(count):
        order[first + position] = source[position]
    new_run[first] = True
    for position in range(first + 1, stop):
        previous = group_strike[order[position - 1]]
        new_run[position] = group_strike[order[position]] != previous


@kernel
def order_groups(group_rank, group_strike, n_ranks):
    """Groups by ``group_rank`` (stable), then ascending strike; runs of equal strikes.

    Groups whose rank is ``n_ranks`` or more are left out. Returns ``(order,
    run_starts)``: ``order`` lists group indices, ``run_starts[i]`` is where run ``i``
    of one (rank, strike) starts in it, with a final entry ``order.size``.
    """
    n_groups = group_rank.size
    starts = np.zeros(n_ranks + 1, dtype=np.int64)
    for group in range(n_groups):
        if group_rank[group] < n_ranks:
            starts[group_rank[group] + 1] += 1
    for rank in range(n_ranks):
        starts[rank + 1] += starts[rank]
    order = np.empty(starts[n_ranks], dtype=np.int64)
    filled = starts[:-1].copy()
    for group in range(n_groups):  # counting sort: O(groups), stable
        rank = group_rank[group]
        if rank < n_ranks:
            order[filled[rank]] = group
            filled[rank] += 1
    new_run = np.zeros(order.size, dtype=np.bool_)
    for rank in numba.prange(n_ranks):
        _order_rank(order, new_run, group_strike, starts[rank], starts[rank + 1])
    n_runs = 0
    for position in range(order.size):
        n_runs += new_run[position]
    run_starts = np.empty(n_runs + 1, dtype=np.int64)
    run = 0
    for position in range(order.size):
        if new_run[position]:
            run_starts[run] = position
            run += 1
    run_starts[run] = order.size
    return order, run_starts


@exact_function
def _net_of_sides(call: float, call_low: float, put: float, put_low: float) -> float:
    """Call plus put from their unrounded (compensated) sums.

    Adds the two sides before either is rounded, so no side's rounding error lands in a
    net that calls and puts cancel (adding the rounded sides can be off by 1e-3 relative
    there); what remains is the rounding of the group sums themselves.
    """
    net, net_low = _two_sum(call, put)
    return net + (net_low + (call_low + put_low))


@scalar_function
def _rank_first_runs(run_rank, n_ranks):
    """Where each rank's runs start (``run_rank`` non-decreasing), with a final entry.

    A rank without runs starts where the next one does, so ``first[r] .. first[r+1]``
    is always rank ``r``'s (possibly empty) range.
    """
    n_runs = run_rank.size
    first = np.full(n_ranks + 1, n_runs, dtype=np.int64)
    for run in range(n_runs - 1, -1, -1):
        first[run_rank[run]] = run
    for rank in range(n_ranks - 1, -1, -1):
        if first[rank] > first[rank + 1]:
            first[rank] = first[rank + 1]
    return first


#: Rows of the ``values`` matrix of :func:`target_strike_table` (each row a column).
STRIKE, CALL, PUT, NET, CUMULATIVE, CALL_OI, PUT_OI = range(7)


@kernel
def target_strike_table(
    order,
    run_starts,
    run_rank,
    target_bits,
    group_strike,
    group_sums,
    group_quantity,
    group_counts,
    n_targets,
    n_ranks,
    copy_target,
):
    """Per (rank, target, strike run) sums, compensated, rows with contracts only.

    ``target_bits[g]`` has bit ``t`` set when group ``g`` belongs to target ``t``;
    ``run_rank`` (non-decreasing) is the output rank of each run's underlying. Output
    rows are ordered by rank, target, strike and computed in that order by one thread
    per underlying, so results do not depend on the thread count. The rows of target
    ``copy_target`` (-1: none) are also written to a table of their own (the plain
    per-strike table is the "all" view's), so no caller filters the big one.

    Returns ``(rank, target, values, contracts, totals, total_contracts, copy_rank,
    copy_values, copy_contracts)``: per output row its rank and target; ``values`` is
    (7, rows), one contiguous row per column (strike, call GEX, put GEX, net GEX, the
    running net GEX over ascending strikes, call OI, put OI: see :data:`STRIKE` ...),
    so each column reaches Arrow without a copy; per (rank, target) the call, put and
    net totals (net from the compensated sides: :func:`_net_of_sides`) and contracts;
    then the copied target's rows in the same layout.
    """
    n_runs = run_starts.size - 1
    # Which targets each run has counted rows in: decides every output position.
    run_mask = np.zeros(n_runs, dtype=np.uint64)
    for run in numba.prange(n_runs):
        mask = numba.uint64(0)
        for position in range(run_starts[run], run_starts[run + 1]):
            group = order[position]
            if group_counts[group] > 0:
                mask |= target_bits[group]
        run_mask[run] = mask
    cell_rows = np.zeros((n_ranks, n_targets), dtype=np.int64)
    one = numba.uint64(1)
    for run in range(n_runs):
        for target in range(n_targets):
            cell_rows[run_rank[run], target] += (run_mask[run] >> numba.uint64(target)) & one
    rank_first = _rank_first_runs(run_rank, n_ranks)
    cell_start = np.empty((n_ranks, n_targets), dtype=np.int64)
    copy_start = np.zeros(n_ranks, dtype=np.int64)
    n_out = 0
    n_copy = 0
    for rank in range(n_ranks):
        copy_start[rank] = n_copy
        if copy_target >= 0:
            n_copy += cell_rows[rank, copy_target]
        for target in range(n_targets):
            cell_start[rank, target] = n_out
            n_out += cell_rows[rank, target]
    out_rank = np.empty(n_out, dtype=np.int64)
    out_target = np.empty(n_out, dtype=np.int64)
    values = np.empty((7, n_out))
    contracts = np.empty(n_out, dtype=np.int64)
    copy_rank = np.empty(n_copy, dtype=np.int64)
    copy_values = np.empty((7, n_copy))
    copy_contracts = np.empty(n_copy, dtype=np.int64)
    totals = np.zeros((n_ranks, n_targets, 3))
    total_contracts = np.zeros((n_ranks, n_targets), dtype=np.int64)
    for rank in numba.prange(n_ranks):
        for target in range(n_targets):
            bit = numba.uint64(1) << numba.uint64(target)
            out = cell_start[rank, target]
            copy_out = copy_start[rank]
            net_total, net_correction = 0.0, 0.0
            call_total, call_correction = 0.0, 0.0
            put_total, put_correction = 0.0, 0.0
            for run in range(rank_first[rank], rank_first[rank + 1]):
                if (run_mask[run] & bit) == 0:
                    continue
                call, call_fix, put, put_fix = 0.0, 0.0, 0.0, 0.0
                call_oi, put_oi = 0.0, 0.0
                rows = 0
                for position in range(run_starts[run], run_starts[run + 1]):
                    group = order[position]
                    if target_bits[group] & bit:
                        call, call_fix = _neumaier_add(call, call_fix, group_sums[group, 0])
                        put, put_fix = _neumaier_add(put, put_fix, group_sums[group, 1])
                        call_oi += group_quantity[group, 0]
                        put_oi += group_quantity[group, 1]
                        rows += group_counts[group]
                call += call_fix
                put += put_fix
                net_total, net_correction = _neumaier_add(net_total, net_correction, call + put)
                call_total, call_correction = _neumaier_add(call_total, call_correction, call)
                put_total, put_correction = _neumaier_add(put_total, put_correction, put)
                out_rank[out] = rank
                out_target[out] = target
                values[STRIKE, out] = group_strike[order[run_starts[run]]]
                values[CALL, out] = call
                values[PUT, out] = put
                values[NET, out] = call + put
                values[CUMULATIVE, out] = net_total + net_correction
                values[CALL_OI, out] = call_oi
                values[PUT_OI, out] = put_oi
                contracts[out] = rows
                total_contracts[rank, target] += rows
                if target == copy_target:
                    copy_rank[copy_out] = rank
                    for column in range(7):
                        copy_values[column, copy_out] = values[column, out]
                    copy_contracts[copy_out] = rows
                    copy_out += 1
                out += 1
            totals[rank, target, 0] = call_total + call_correction
            totals[rank, target, 1] = put_total + put_correction
            totals[rank, target, 2] = _net_of_sides(
                call_total, call_correction, put_total, put_correction
            )
    return (
        out_rank,
        out_target,
        values,
        contracts,
        totals,
        total_contracts,
        copy_rank,
        copy_values,
        copy_contracts,
    )


@loop_body
def _rank_strike_rows(
    rank, rank_first, run_rows, run_starts, order, group_strike, group_sums, group_counts,
    target_bits, n_targets, out_of_run, out_rank, values, contracts, sides, total_contracts,
):  # fmt: skip
    """One rank's rows of :func:`strike_runs`, and its per-target sides and contracts."""
    net_total, net_correction = 0.0, 0.0
    for run in range(rank_first[rank], rank_first[rank + 1]):
        if run_rows[run] == 0:
            continue
        call, call_fix, put, put_fix = 0.0, 0.0, 0.0, 0.0
        for position in range(run_starts[run], run_starts[run + 1]):
            group = order[position]
            call, call_fix = _neumaier_add(call, call_fix, group_sums[group, 0])
            put, put_fix = _neumaier_add(put, put_fix, group_sums[group, 1])
            if n_targets > 0 and group_counts[group] > 0:
                mask = target_bits[group]
                target = 0
                while mask != numba.uint64(0):
                    if mask & numba.uint64(1):
                        side = sides[rank, target]
                        side[0], side[1] = _neumaier_add(side[0], side[1], group_sums[group, 0])
                        side[2], side[3] = _neumaier_add(side[2], side[3], group_sums[group, 1])
                        total_contracts[rank, target] += group_counts[group]
                    mask >>= numba.uint64(1)
                    target += 1
        call += call_fix
        put += put_fix
        net_total, net_correction = _neumaier_add(net_total, net_correction, call + put)
        out = out_of_run[run]
        out_rank[out] = rank
        values[STRIKE, out] = group_strike[order[run_starts[run]]]
        values[CALL, out] = call
        values[PUT, out] = put
        values[NET, out] = call + put
        values[CUMULATIVE, out] = net_total + net_correction
        contracts[out] = run_rows[run]


@kernel
def strike_runs(
    order, run_starts, run_rank, group_strike, group_sums, group_counts, target_bits, n_targets,
    n_ranks,
):  # fmt: skip
    """The plain per-(rank, strike) table, and per-target totals, from ordered groups.

    ``order`` and ``run_starts`` come from :func:`order_groups`; ``run_rank`` is each
    run's rank. Each run of groups with one (rank, strike) becomes a row when it has
    counted rows: call and put GEX (compensated over the run's groups, which differ in
    expiry or target class), their net, the running net over ascending strikes within
    the rank (compensated) and the contracts. In the same walk each group is added to
    the targets of its mask ``target_bits[g]`` (``n_targets`` 0: no totals), which
    gives the per-(rank, target) totals of :func:`target_strike_table` without its
    per-target table. One thread per rank, groups in a fixed order: results do not
    depend on the thread count.

    Returns ``(rank, values, contracts, totals, total_contracts)``: per row its rank;
    ``values`` (5, rows) holds strike, call, put, net and running net (the first five
    rows of :func:`target_strike_table`'s layout); per (rank, target) the call, put and
    net totals (net from the unrounded sides: :func:`_net_of_sides`) and contracts.
    """
    n_runs = run_starts.size - 1
    run_rows = np.zeros(n_runs, dtype=np.int64)
    # Serial: a few reads per run, cheaper than what a parallel loop adds to the compile.
    for run in range(n_runs):
        rows = 0
        for position in range(run_starts[run], run_starts[run + 1]):
            rows += group_counts[order[position]]
        run_rows[run] = rows
    out_of_run = np.empty(n_runs + 1, dtype=np.int64)
    n_out = 0
    for run in range(n_runs):
        out_of_run[run] = n_out
        n_out += run_rows[run] > 0
    out_of_run[n_runs] = n_out
    rank_first = _rank_first_runs(run_rank, n_ranks)
    out_rank = np.empty(n_out, dtype=np.int64)
    values = np.empty((5, n_out))
    contracts = np.empty(n_out, dtype=np.int64)
    # Per (rank, target): call, its compensation, put, its compensation.
    sides = np.zeros((n_ranks, n_targets, 4))
    total_contracts = np.zeros((n_ranks, n_targets), dtype=np.int64)
    for rank in numba.prange(n_ranks):
        # np.int64 index: see fastgex._jit.loop_body
        _rank_strike_rows(np.int64(rank), rank_first, run_rows, run_starts, order,
                          group_strike, group_sums, group_counts, target_bits, n_targets,
                          out_of_run, out_rank, values, contracts, sides,
                          total_contracts)  # fmt: skip
    totals = np.empty((n_ranks, n_targets, 3))
    for rank in range(n_ranks):  # serial: small, see above
        for target in range(n_targets):
            call, call_low = sides[rank, target, 0], sides[rank, target, 1]
            put, put_low = sides[rank, target, 2], sides[rank, target, 3]
            totals[rank, target, 0] = call + call_low
            totals[rank, target, 1] = put + put_low
            totals[rank, target, 2] = _net_of_sides(call, call_low, put, put_low)
    return out_rank, values, contracts, totals, total_contracts
