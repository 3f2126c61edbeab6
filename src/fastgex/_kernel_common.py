"""Status codes, the kernel configuration and small compensated-sum helpers."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from fastgex._jit import exact_function, scalar_function

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
#: Rows per plain (SIMD) partial sum inside a strip; the partials are added compensated.
SUM_CHUNK = 128
#: Bound on the error of a fast compensated total, per unit of its sum of magnitudes:
#: each plain chunk sum of m <= SUM_CHUNK terms is off by at most (m - 1) * 2**-53 of the
#: chunk's magnitudes, in any order of addition; the compensated additions after it add
#: about 2 * 2**-53 of the total itself (see fastgex._kernels.sum_error_bound).
SUM_ERROR_PER_SIZE = SUM_CHUNK * 2.0**-53
BLOCK_ROWS = 1 << 16
#: Groups merged per parallel task when per-block group partials are combined.
GROUP_CHUNK = 4096
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
def _segment_stop(ids, base, start, length, mixed):
    """Where the run of equal ``ids`` that starts at ``base + start`` ends, as an offset.

    Kernels walk strips of ``length`` rows from ``base`` in runs of one id (one
    underlying); ``mixed`` is 0 when the whole strip holds one id, the common sorted
    case, and then the run is the rest of the strip. Offsets are unsigned (see the
    kernels: no wraparound checks).
    """
    if mixed == 0:
        return length
    stop = start + numba.uint64(1)
    while stop < length and ids[base + stop] == ids[base + start]:
        stop += numba.uint64(1)
    return stop


@exact_function
def _neumaier_add(total: float, compensation: float, value: float) -> tuple[float, float]:
    """One step of Neumaier (improved Kahan) summation."""
    new_total = total + value
    if abs(total) >= abs(value):
        compensation += (total - new_total) + value
    else:
        compensation += (value - new_total) + total
    return new_total, compensation


@exact_function
def _two_sum(first: float, second: float) -> tuple[float, float]:
    """``(total, low)`` with ``total = fl(first + second)`` and ``total + low`` exact (Knuth)."""
    total = first + second
    second_part = total - first
    low = (first - (total - second_part)) + (second - second_part)
    return total, low


@scalar_function
def _add_to(sums, compensation, slot, side, value):
    """Compensated ``sums[slot, side] += value``."""
    total, comp = _neumaier_add(sums[slot, side], compensation[slot, side], value)
    sums[slot, side] = total
    compensation[slot, side] = comp


@exact_function  # not inlined: inlined into a prange body, numba's parfor pass rejects it
def _id_range(ids, start, stop, empty_value):
    """``(first, span)`` of the ids in ``ids[start:stop]``; ``(0, 0)`` when there are none."""
    lowest = empty_value
    highest = 0
    for row in range(numba.uint64(start), numba.uint64(stop)):
        value = ids[row]
        lowest = value if value < lowest else lowest
        highest = value if value > highest else highest
    empty = lowest > highest
    return (0 if empty else lowest), (0 if empty else highest - lowest + 1)


@scalar_function
def _combine(first, offset, partial_sums, partial_compensation, sums, compensation):
    """Add per-block partial sums into ``sums`` in block order (deterministic, compensated).

    Block ``b`` holds slots ``first[b] ..`` at rows ``offset[b] .. offset[b+1]`` of the
    partial arrays (call and put columns).
    """
    for block in range(first.size):
        for slot in range(offset[block], offset[block + 1]):
            target = first[block] + slot - offset[block]
            for side in range(2):
                compensation[target, side] += partial_compensation[slot, side]
                total, comp = _neumaier_add(
                    sums[target, side], compensation[target, side], partial_sums[slot, side]
                )
                sums[target, side] = total
                compensation[target, side] = comp


@exact_function
def _merge_group_chunk(chunk_first, chunk_stop, group_first, group_span, group_offset,
                       partial_group, partial_group_rows, group_sums, group_quantity,
                       group_rows):  # fmt: skip
    """Groups ``chunk_first .. chunk_stop`` from every block's partials, in block order.

    ``partial_group[slot]`` holds call and put sums, their compensations, then call and
    put quantity; block ``b`` holds groups ``group_first[b] ..`` (``group_span[b]`` of
    them) from row ``group_offset[b]``. Writes the compensated sums, the quantities and
    the counted rows of those groups. One call per chunk, from a parallel loop over
    chunks: deterministic, and the output memory is first touched in parallel.
    """
    correction = np.zeros((chunk_stop - chunk_first, 2))
    group_sums[chunk_first:chunk_stop] = 0.0
    group_quantity[chunk_first:chunk_stop] = 0.0
    group_rows[chunk_first:chunk_stop] = 0
    for block in range(group_first.size):
        lowest = max(chunk_first, group_first[block])
        highest = min(chunk_stop, group_first[block] + group_span[block])
        for group in range(lowest, highest):
            slot = group_offset[block] + group - group_first[block]
            local = group - chunk_first
            for side in range(2):
                correction[local, side] += partial_group[slot, 2 + side]
                group_total, group_correction = _neumaier_add(
                    group_sums[group, side], correction[local, side], partial_group[slot, side]
                )
                group_sums[group, side] = group_total
                correction[local, side] = group_correction
                group_quantity[group, side] += partial_group[slot, 4 + side]
            group_rows[group] += partial_group_rows[slot]
    for group in range(chunk_first, chunk_stop):
        for side in range(2):
            group_sums[group, side] += correction[group - chunk_first, side]
