"""Small Numba kernels for levels: crossings and extremes over per-strike segments.

Each segment is one (underlying, bucket) slice of a per-strike table sorted by strike.
"""

from __future__ import annotations

import numpy as np

from fastgex._jit import kernel


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
