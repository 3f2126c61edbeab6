"""Private Numba kernels behind :func:`fastgex.gex`, and where to find each one.

* :mod:`fastgex._gex_kernel` - the fused per-contract GEX kernel (validation, gamma,
  signed exposure, per-underlying sums). :func:`gex_kernel` returns it for a
  :class:`~fastgex._kernel_common.KernelConfig`.
* :mod:`fastgex._group_kernels` - group ids per (underlying, strike[, expiry]) and
  their reduction to expiry buckets / views.
* :func:`segmented_cumsum` - cumulative net GEX over ascending strikes.
* :func:`gamma_kernel` - per-contract gamma for the per-contract table.
* The scalar formulas are in :mod:`fastgex._formulas`, exp/log in
  :mod:`fastgex._fastmath`, compile options in :mod:`fastgex._jit`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from types import ModuleType

import numba
import numpy as np

from fastgex import _gex_kernel
from fastgex._formulas import black76_gamma, bsm_gamma
from fastgex._jit import exact_function, kernel
from fastgex._kernel_common import (
    BLOCK_ROWS,
    CALL_CODE,
    MAX_BLOCK_PARTIALS,
    MISSING_CODE,
    REASONS,
    STATUS,
    SUM_ERROR_PER_SIZE,
    UNKNOWN_TYPE_CODE,
    KernelConfig,
    _add_to,
    _id_range,
    _neumaier_add,
)
from fastgex._variants import load_variant, rewrite_switches

__all__ = [
    "MISSING_CODE",
    "REASONS",
    "STATUS",
    "SUM_ERROR_PER_SIZE",
    "SUM_RELATIVE_TOLERANCE",
    "UNKNOWN_TYPE_CODE",
    "KernelConfig",
    "contract_gamma",
    "gex_kernel",
    "group_rows_per_block",
    "loose_totals",
    "needs_exact_sums",
    "net_of",
    "rows_per_block",
    "segmented_cumsum",
    "spot_by_underlying",
    "sum_error_bound",
]

_SWITCHES = {
    "BLACK76": "black76",
    "VENDOR_GAMMA": "vendor_gamma",
    "DEALER_POSITION": "dealer_position",
    "ROW_CARRY": "row_carry",
    "ROW_MULTIPLIER": "row_multiplier",
    "HAS_TIME": "has_time",
    "UNIT_POWER": "unit_power",
}


#: Fast totals whose error bound exceeds this fraction of their value are summed again,
#: row by row with compensation: the totals' promised accuracy is 1e-12 relative to the
#: exact sum of the per-contract values (math.fsum), this leaves a margin for the
#: final roundings.
SUM_RELATIVE_TOLERANCE = 5e-13


def sum_error_bound(size: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Bound on the error of the kernel's fast compensated totals.

    Parameters
    ----------
    size : numpy.ndarray
        Sums of |per-contract GEX| (the kernel's ``sum_details`` sizes).
    total : numpy.ndarray
        The totals themselves.

    Returns
    -------
    numpy.ndarray
        ``SUM_ERROR_PER_SIZE * size + 4 * 2**-53 * |total|``: the plain chunk sums'
        worst case plus the compensated additions that follow.
    """
    return SUM_ERROR_PER_SIZE * size + 4 * 2.0**-53 * np.abs(total)


def loose_totals(
    sums: np.ndarray, net: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The totals that may be off by more than :data:`SUM_RELATIVE_TOLERANCE` of themselves.

    Returns ``(loose_sides, loose_net)``: flags for the call/put totals (slots x 2) and
    for the net totals (slots).

    Slots with no magnitude (no rows, or all zero) and non-finite sizes (overflow, an
    error reported elsewhere) are never loose.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported elsewhere
        side_bound = sum_error_bound(sizes, sums)
        checkable = np.isfinite(sizes).all(axis=1) & (sizes.sum(axis=1) > 0)
        loose_sides = (side_bound > SUM_RELATIVE_TOLERANCE * np.abs(sums)) & checkable[:, None]
        loose_net = (side_bound.sum(axis=1) > SUM_RELATIVE_TOLERANCE * np.abs(net)) & checkable
    return loose_sides, loose_net


def needs_exact_sums(sums: np.ndarray, net: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Slots whose call, put or net total may be off by more than the tolerance."""
    loose_sides, loose_net = loose_totals(sums, net, sizes)
    return loose_sides.any(axis=1) | loose_net


def net_of(sums: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Calls + puts from two double-double sides (high ``sums``, ``low`` parts), rounded once."""
    with np.errstate(over="ignore", invalid="ignore"):
        high = sums[:, 0] + sums[:, 1]
        call_part = high - sums[:, 0]
        error = (sums[:, 0] - (high - call_part)) + (sums[:, 1] - call_part)
        return high + (error + (low[:, 0] + low[:, 1]))


@cache
def gex_kernel(config: KernelConfig):
    """The compiled fused GEX kernel for ``config`` (the ``run`` function).

    The default configuration is :mod:`fastgex._gex_kernel` itself. Any other is a
    copy of that file with its switch lines rewritten, written once to
    :func:`fastgex._variants.generated_dir` and imported from there, so Numba's disk cache keeps it
    between processes (closures over flags would recompile every time).
    """
    if config == KernelConfig():
        return _gex_kernel.run
    return _load_variant(config).run


def _variant_source(config: KernelConfig) -> str:
    source = Path(_gex_kernel.__file__).read_text(encoding="utf-8")
    switches = {switch: getattr(config, attribute) for switch, attribute in _SWITCHES.items()}
    return rewrite_switches(source, switches, "kernel")


def _load_variant(config: KernelConfig) -> ModuleType:
    return load_variant(_variant_source(config), "fastgex_gex_kernel")


def rows_per_block(n_rows: int, n_underlyings: int) -> int:
    """Block size for ``n_rows`` rows: depends on the data shape only (determinism)."""
    blocks_allowed = max(1, MAX_BLOCK_PARTIALS // max(1, n_underlyings))
    needed = -(-n_rows // blocks_allowed)
    return max(BLOCK_ROWS, needed)


#: Upper bound on per-block partial group entries (see :func:`group_rows_per_block`).
MAX_GROUP_PARTIALS = 1 << 23


@kernel
def _block_span_total(ids, rows_per_block):
    """Sum over blocks of (largest - smallest id + 1): the partial entries the kernel needs."""
    n_rows = ids.size
    n_blocks = max(1, (n_rows + rows_per_block - 1) // rows_per_block)
    spans = np.zeros(n_blocks, dtype=np.int64)
    for block in numba.prange(n_blocks):
        block_start = block * rows_per_block
        _, span = _id_range(ids, block_start, min(n_rows, block_start + rows_per_block), 1 << 62)
        spans[block] = span
    return spans.sum()


def group_rows_per_block(group_id: np.ndarray, rows_per_block_: int) -> int:
    """Block size for a run with groups: ``rows_per_block_``, doubled while partials are too many.

    Blocks keep partial sums for the range of group ids they touch. Group ids numbered
    in row order keep those ranges tight; a chain whose groups are scattered over many
    blocks gets larger blocks instead of an unbounded allocation. The choice depends on
    the data only, so totals stay identical for any thread count.
    """
    size = max(1, int(rows_per_block_))
    while size < group_id.size and _block_span_total(group_id, size) > MAX_GROUP_PARTIALS:
        size *= 2
    return size


@kernel
def contract_gamma(
    strike,
    vol,
    time_to_expiry,
    underlying_id,
    spot,
    rate,
    dividend_yield,
    forward,
    min_time,
    black76,
    row_carry,
):
    """Per-contract model gamma (per unit of the underlying price) for result tables."""
    n_rows = strike.size
    out = np.empty(n_rows)
    for row in numba.prange(n_rows):
        underlying = underlying_id[row]
        row_rate = rate[row] if row_carry else rate[underlying]
        row_dividend = dividend_yield[row] if row_carry else dividend_yield[underlying]
        row_time = max(time_to_expiry[row], min_time)
        if black76:
            out[row] = black76_gamma(forward[row], strike[row], vol[row], row_time, row_rate)
        else:
            out[row] = bsm_gamma(
                spot[underlying], strike[row], vol[row], row_time, row_rate, row_dividend
            )
    return out


@kernel(parallel=False)
def spot_by_underlying(underlying_id, spot, values, varies):
    """Record each underlying's spot in ``values`` (NaN = none yet); flag any that vary.

    A NaN spot row is skipped here: the row still counts with its underlying's spot.
    """
    for row in range(spot.size):
        underlying = underlying_id[row]
        value = spot[row]
        if value != value:
            continue
        known = values[underlying]
        if known != known:
            values[underlying] = value
        elif abs(value - known) > 1e-12 * abs(known):
            varies[underlying] = True


@kernel(parallel=False)
def segmented_cumsum(values, segment_starts):
    """Running sums of ``values`` restarting at each index in ``segment_starts``."""
    out = np.empty(values.size)
    n_segments = segment_starts.size
    for segment in range(n_segments):
        start = segment_starts[segment]
        stop = segment_starts[segment + 1] if segment + 1 < n_segments else values.size
        total = 0.0
        compensation = 0.0
        for index in range(start, stop):
            total, compensation = _neumaier_add(total, compensation, values[index])
            out[index] = total + compensation
    return out


@exact_function
def exact_sums_of_values(values, option_code, underlying_id, slots, sums, compensation):
    """Neumaier sums of computed per-contract values, for the underlyings marked in ``slots``.

    Adds each row's value to ``sums[underlying, side]`` (side 0 calls, 1 puts) with its
    error in ``compensation``, in row order. Invalid rows hold 0.0, so they add nothing.
    Used for the exact pass when per-contract values were kept: the totals are then the
    exact sums of the very values reported, not of values computed again (whose last
    bit can differ between the vectorized loop and its scalar remainder).
    """
    for row in range(values.size):
        slot = underlying_id[row]
        if slots[slot] != 0:
            _add_to(
                sums, compensation, slot, 0 if option_code[row] == CALL_CODE else 1, values[row]
            )
