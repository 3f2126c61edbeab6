"""Small Numba kernels for levels: crossings and extremes over per-strike segments.

Each segment is one (underlying, bucket) slice of a per-strike table sorted by strike.
:func:`moneyness_vols` moves implied vols with the spot for the sticky-moneyness
profile.
"""

from __future__ import annotations

import numba
import numpy as np

from fastgex._jit import kernel, scalar_function


@kernel(parallel=False)
def segment_crossings(positions, values, starts):
    """Every zero crossing of ``values`` over ascending ``positions``, per segment.

    A crossing is a change of strict sign between consecutive nonzero points: linear
    interpolation between them when they are neighbours, else the middle of the run of
    exact zeros between them. Touching zero without changing sign is not a crossing.
    Returns ``(segment, location)`` arrays in segment order, locations ascending.
    """
    n_points = values.size
    n_segments = starts.size
    segment_out = np.empty(n_points, dtype=np.int64)
    location_out = np.empty(n_points)
    found = 0
    for segment in range(n_segments):
        start = starts[segment]
        stop = starts[segment + 1] if segment + 1 < n_segments else n_points
        last = -1  # index of the last nonzero point
        for index in range(start, stop):
            value = values[index]
            if value == 0.0:
                continue
            if last >= 0 and (values[last] < 0.0) != (value < 0.0):
                if last == index - 1:
                    weight = values[last] / (values[last] - value)
                    location = positions[last] + weight * (positions[index] - positions[last])
                else:
                    location = 0.5 * (positions[last + 1] + positions[index - 1])
                segment_out[found] = segment
                location_out[found] = location
                found += 1
            last = index
    return segment_out[:found], location_out[:found]


@kernel(parallel=False)
def segment_argmax(values, starts, mask):
    """Index of the largest positive ``values`` entry per segment among ``mask`` (-1 if none).

    Ties keep the first (lowest strike) entry; a segment with no positive entry (no
    gamma at all) gives -1, so the level is null rather than an arbitrary strike.
    """
    n_points = values.size
    n_segments = starts.size
    out = np.full(n_segments, -1, dtype=np.int64)
    for segment in range(n_segments):
        start = starts[segment]
        stop = starts[segment + 1] if segment + 1 < n_segments else n_points
        best = 0.0
        for index in range(start, stop):
            if mask[index] and values[index] > best:
                best = values[index]
                out[segment] = index
    return out


@kernel(parallel=False)
def segment_top(values, starts, count):
    """Indices of the ``count`` largest positive ``values`` per segment (-1 pads)."""
    n_points = values.size
    n_segments = starts.size
    out = np.full((n_segments, count), -1, dtype=np.int64)
    for segment in range(n_segments):
        start = starts[segment]
        stop = starts[segment + 1] if segment + 1 < n_segments else n_points
        for rank in range(count):
            best = 0.0
            chosen = -1
            for index in range(start, stop):
                taken = False
                for earlier in range(rank):
                    taken = taken or out[segment, earlier] == index
                if not taken and values[index] > best:
                    best = values[index]
                    chosen = index
            out[segment, rank] = chosen
    return out


@kernel(parallel=False)
def refine_brackets(lower, upper, lower_values, points, point_values):
    """Narrow each bracket to the first sub-interval whose ends differ in sign.

    ``points[b]`` are interior points of bracket ``b`` in ascending order with values
    ``point_values[b]``; ``lower_values[b]`` is the value at ``lower[b]``. Updated in place.
    """
    for bracket in range(lower.size):
        left = lower[bracket]
        left_value = lower_values[bracket]
        for index in range(points.shape[1]):
            value = point_values[bracket, index]
            if left_value == 0.0:
                break
            if (left_value < 0.0) != (value < 0.0) or value == 0.0:
                upper[bracket] = points[bracket, index]
                break
            left = points[bracket, index]
            left_value = value
        lower[bracket] = left
        lower_values[bracket] = left_value


@scalar_function
def _smile_at(smile_strike, smile_vol, start, stop, strike):
    """The smile ``smile_vol[start:stop]`` over ``smile_strike`` at ``strike``.

    Linear in strike between points, flat beyond the ends.
    """
    if strike <= smile_strike[start]:
        return smile_vol[start]
    if strike >= smile_strike[stop - 1]:
        return smile_vol[stop - 1]
    upper = start + np.searchsorted(smile_strike[start:stop], strike)
    lower = upper - 1
    weight = (strike - smile_strike[lower]) / (smile_strike[upper] - smile_strike[lower])
    return smile_vol[lower] + weight * (smile_vol[upper] - smile_vol[lower])


@kernel
def moneyness_vols(strike, vol, slot, slot_ratio, smile_start, smile_strike, smile_vol):
    """Implied vols at spot ``ratio x spot`` under sticky moneyness.

    Each row keeps its own vol scaled by the move of its slot's smile:
    ``vol * smile(strike / ratio) / smile(strike)``, so the vol of a strike follows its
    moneyness and ``ratio = 1`` gives the rows' own vols. Rows of slots without a smile,
    or with an invalid vol, keep their vol.
    """
    n_rows = strike.size
    out = np.empty(n_rows)
    for row in numba.prange(n_rows):
        current = slot[row]
        start = smile_start[current]
        stop = smile_start[current + 1]
        own = vol[row]
        ratio = slot_ratio[current]
        if stop == start or not (own > 0.0) or not (ratio > 0.0):
            out[row] = own
            continue
        here = _smile_at(smile_strike, smile_vol, start, stop, strike[row])
        moved = _smile_at(smile_strike, smile_vol, start, stop, strike[row] / ratio)
        out[row] = own * moved / here if here > 0.0 else own
    return out
