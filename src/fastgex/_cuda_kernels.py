"""CUDA kernels (``numba.cuda``) for the fused GEX pass and the GEX profile.

The math is the CPU kernels' own: :func:`fastgex._jit.device_function` compiles the
bodies of :func:`fastgex._gex_kernel.row_status`, :func:`~fastgex._gex_kernel.contract_parts`,
:func:`~fastgex._gex_kernel.finish_value` (and through them
:func:`fastgex._formulas.bsm_gamma_parts` / ``black76_gamma_parts`` and
:mod:`fastgex._fastmath`) and :func:`fastgex._profile_kernel._row_constants` as device
functions. Only the loops and the reductions are written here.

Determinism (no floating-point atomics anywhere):

* rows are cut into *tiles*: runs of one underlying (or profile slot), at most
  ``LAUNCH.threads_per_block`` (GEX) or ``LAUNCH.tile_rows`` (profile) long, planned
  on the host from the row ids (:func:`tile_plan`); the plan depends on the data and
  that length only, never on the GPU or the number of blocks;
* GEX: one block reads one tile, one row per thread (coalesced), and adds the rows by
  a fixed pairwise tree in shared memory into the tile's slot of a ``tiles x 2``
  array; status counts are integer atomics (exact). Profile: one thread sums one
  (tile, level) in row order into a ``tiles x levels`` array;
* one thread per underlying (or per slot and level) adds its tiles' partials in a fixed
  order (tile order within the underlying). So the same input gives bitwise the same
  totals on every run and every grid size.

This module (and with it ``numba.cuda``) is imported only when a CUDA path is used.
Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same kernels run as
Python, which is how CI checks them; on a real GPU the float/bit reinterpretation uses libdevice
(``__nv_double_as_longlong`` / ``__nv_longlong_as_double``) instead of the CPU
``@intrinsic``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numba import cuda  # this module is imported only when a CUDA path is used

from fastgex import _fastmath, _gex_kernel, _kernels, _profile_kernel
from fastgex._jit import device_function
from fastgex._kernel_common import CALL_CODE, REASONS, STATUS, KernelConfig, _neumaier_add


@dataclass(frozen=True)
class LaunchConfig:
    """Launch shape of every CUDA kernel; tests patch :data:`LAUNCH` to small values.

    Attributes
    ----------
    threads_per_block : int
        Threads per CUDA block (a power of two >= 16); also the longest GEX tile.
    max_blocks : int
        Upper bound on blocks per launch (the loops are grid-stride, so any grid
        covers the work and the result does not depend on it).
    tile_rows : int
        Longest profile tile (the rows one thread sums per level). Tile lengths are
        part of the plan, so they fix the order of the sums.
    """

    threads_per_block: int = 256
    max_blocks: int = 8192
    tile_rows: int = 256


LAUNCH = LaunchConfig()

_N_CODES = len(REASONS) + 1
_NON_FINITE = STATUS["non_finite_result"]


def _grid(n_items: int) -> tuple[int, int]:
    threads = LAUNCH.threads_per_block
    blocks = max(1, min(LAUNCH.max_blocks, -(-max(1, n_items) // threads)))
    return blocks, threads


def _simulated() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)


@cache
def _substitutes() -> dict[Any, Any]:
    """CUDA versions of the functions whose CPU versions are ``@overload``-compiled."""
    if _simulated():  # the simulator runs the pure Python (struct) bodies
        return {}
    from numba.cuda import libdevice

    @cuda.jit(device=True)
    def float_bits_cuda(value):  # pragma: no cover - needs a GPU
        return libdevice.double_as_longlong(value)

    @cuda.jit(device=True)
    def bits_float_cuda(bits):  # pragma: no cover - needs a GPU
        return libdevice.longlong_as_double(bits)

    @cuda.jit(device=True)
    def floor_float_cuda(value):  # pragma: no cover - needs a GPU
        return libdevice.floor(value)

    return {
        _fastmath.float_bits: float_bits_cuda,
        _fastmath.bits_float: bits_float_cuda,
        _fastmath.floor_float: floor_float_cuda,
    }


def _device(function: Any) -> Any:
    return device_function(function, _substitutes())


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class TilePlan:
    """Tiles of a row-id array: runs of one id, at most ``tile_rows`` rows each.

    Attributes
    ----------
    tile_start : numpy.ndarray
        ``int64[n_tiles + 1]``: tile ``t`` holds rows ``tile_start[t]:tile_start[t + 1]``.
    tile_id : numpy.ndarray
        ``int64[n_tiles]``: the id (underlying or slot) of each tile.
    id_offsets, id_tiles : numpy.ndarray
        Tiles per id in a fixed order: id ``u`` owns tiles
        ``id_tiles[id_offsets[u]:id_offsets[u + 1]]`` (ascending).
    n_ids : int
        Number of ids (underlyings or slots).
    """

    tile_start: np.ndarray
    tile_id: np.ndarray
    id_offsets: np.ndarray
    id_tiles: np.ndarray
    n_ids: int

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return int(self.tile_id.size)


def tile_plan(ids: np.ndarray, n_ids: int, tile_rows: int | None = None) -> TilePlan:
    """Plan the tiles of ``ids`` (host array); rows need not be sorted.

    Parameters
    ----------
    ids : numpy.ndarray
        Id per row, ``0 <= id < n_ids``.
    n_ids : int
        Number of ids.
    tile_rows : int, optional
        Longest tile (default ``LAUNCH.tile_rows``).

    Returns
    -------
    TilePlan
        The plan (a pure function of ``ids``, ``n_ids`` and ``tile_rows``).
    """
    ids = np.asarray(ids)
    rows = int(tile_rows or LAUNCH.tile_rows)
    n_rows = ids.size
    if n_rows == 0:
        empty = np.zeros(0, np.int64)
        return TilePlan(np.zeros(1, np.int64), empty, np.zeros(n_ids + 1, np.int64), empty, n_ids)
    run_start = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    run_length = np.diff(np.r_[run_start, n_rows])
    pieces = -(-run_length // rows)
    first_piece = np.cumsum(pieces) - pieces
    piece_index = np.arange(int(pieces.sum())) - np.repeat(first_piece, pieces)
    tile_start = np.repeat(run_start, pieces) + piece_index * rows
    tile_id = ids[tile_start].astype(np.int64)
    id_tiles = np.argsort(tile_id, kind="stable").astype(np.int64)
    id_offsets = np.searchsorted(tile_id[id_tiles], np.arange(n_ids + 1)).astype(np.int64)
    return TilePlan(
        np.r_[tile_start, n_rows].astype(np.int64), tile_id, id_offsets, id_tiles, n_ids
    )


# --------------------------------------------------------------------------- GEX kernels


@cache
def gex_kernels(config: KernelConfig, threads: int) -> tuple[Any, Any]:
    """``(tiles, combine)`` CUDA kernels of the fused GEX pass for ``config``.

    ``threads`` (threads per block, a power of two >= 16) is also the longest tile: one
    block reduces one tile at a time, one row per thread.
    """
    module = _gex_kernel if config == KernelConfig() else _kernels._load_variant(config)
    status_of = _device(module.row_status)
    parts_of = _device(module.contract_parts)
    finish_of = _device(module.finish_value)
    neumaier = _device(_neumaier_add)
    black76 = config.black76
    row_carry = config.row_carry
    row_multiplier = config.row_multiplier
    non_finite = _NON_FINITE
    call_code = CALL_CODE
    n_codes = _N_CODES

    @cuda.jit(device=True)
    def row_value(
        row,
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
    ):
        """``(signed GEX, status code)`` of one row; 0.0 unless the code is 0."""
        underlying = underlying_id[row]
        # Validate first and evaluate only valid rows (the CPU kernel names reasons
        # after its vectorized pass; the outcome per row is the same).
        code = status_of(
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
        value = 0.0
        if code == 0:
            spot_value = spot[underlying]
            if black76 or (spot_value > 0.0 and abs(spot_value) < math.inf):
                exponent, factor = parts_of(
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
                    0.0 if row_carry else rate[underlying],
                    0.0 if row_carry else dividend_yield[underlying],
                    0.0 if row_multiplier else multiplier[underlying],
                    call_sign,
                    put_sign,
                    unit_scale,
                    min_time,
                )
                value, valid = finish_of(exponent, factor)
                if valid == 0:
                    code = non_finite
                    value = 0.0
            else:  # no usable spot: the CPU kernel counts these as non-finite results
                code = non_finite
        return value, code

    @cuda.jit
    def tiles_kernel(
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
        tile_start,
        partial_sums,
        partial_counts,
        values,
        status,
        write_rows,
    ):
        """One block per tile, one row per thread: call/put sums and rows per status.

        Rows are read once, coalesced. The block adds its rows by a fixed pairwise tree
        in shared memory (the same tree for every launch: deterministic); status counts
        are integer atomics (exact in any order).
        """
        call_shared = cuda.shared.array(threads, np.float64)
        put_shared = cuda.shared.array(threads, np.float64)
        counts_shared = cuda.shared.array(n_codes, np.int32)
        lane = cuda.threadIdx.x
        n_tiles = tile_start.size - 1
        for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            if lane < n_codes:
                counts_shared[lane] = 0
            cuda.syncthreads()
            row = tile_start[tile] + lane
            call_value = 0.0
            put_value = 0.0
            if row < tile_start[tile + 1]:
                value, code = row_value(
                    row,
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
                )
                if option_code[row] == call_code:
                    call_value = value
                else:
                    put_value = value
                cuda.atomic.add(counts_shared, code, 1)
                if write_rows:
                    values[row] = value
                    status[row] = code
            call_shared[lane] = call_value
            put_shared[lane] = put_value
            cuda.syncthreads()
            stride = threads // 2
            while stride > 0:
                if lane < stride:
                    call_shared[lane] += call_shared[lane + stride]
                    put_shared[lane] += put_shared[lane + stride]
                cuda.syncthreads()
                stride //= 2
            if lane == 0:
                partial_sums[tile, 0] = call_shared[0]
                partial_sums[tile, 1] = put_shared[0]
            if lane < n_codes:
                partial_counts[tile, lane] = counts_shared[lane]
            cuda.syncthreads()  # the shared arrays are reused by the next tile

    @cuda.jit
    def combine_kernel(id_offsets, id_tiles, partial_sums, partial_counts, sums, counts):
        """One thread per underlying: its tiles' sums added in tile order (compensated)."""
        n_ids = id_offsets.size - 1
        for underlying in range(cuda.grid(1), n_ids, cuda.gridsize(1)):
            for side in range(2):
                total = 0.0
                compensation = 0.0
                for index in range(id_offsets[underlying], id_offsets[underlying + 1]):
                    total, compensation = neumaier(
                        total, compensation, partial_sums[id_tiles[index], side]
                    )
                sums[underlying, side] = total + compensation
            for code in range(n_codes):
                count = 0
                for index in range(id_offsets[underlying], id_offsets[underlying + 1]):
                    count += partial_counts[id_tiles[index], code]
                counts[underlying, code] = count

    return tiles_kernel, combine_kernel


def gex_tile_rows() -> int:
    """Longest GEX tile: one block reduces one tile, so it is the threads per block."""
    threads = LAUNCH.threads_per_block
    if threads < _N_CODES or threads & (threads - 1):
        raise ValueError(f"threads_per_block must be a power of two >= 16, not {threads}")
    return threads


def gex_on_device(
    config: KernelConfig,
    arrays: dict[str, Any],
    scalars: dict[str, float],
    plan: dict[str, Any],
    write_rows: bool = True,
):
    """Run the GEX kernels on device arrays; everything stays on the device.

    ``arrays`` holds device arrays (``strike``, ``vol``, ``time``, ``quantity``,
    ``code``, ``uid``, ``spot``, ``rate``, ``dividend_yield``, ``forward``, ``gamma``,
    ``multiplier``) in the CPU kernel's layout; ``plan`` is the :class:`TilePlan` of
    ``uid`` (tiles of at most :func:`gex_tile_rows` rows) with its arrays on the device
    (see :func:`plan_to_device`).

    Returns ``(sums, counts, values, status)`` device arrays: ``sums[u]`` call/put GEX,
    ``counts[u, c]`` rows with status ``c`` (0 = counted), and with ``write_rows`` the
    per-row values and codes (else None).
    """
    threads = gex_tile_rows()
    if plan["max_tile_rows"] > threads:
        raise ValueError(
            f"the plan has tiles of {plan['max_tile_rows']} rows; the GEX kernel takes at "
            f"most {threads} (plan with tile_plan(ids, n, {threads}))"
        )
    tiles_kernel, combine_kernel = gex_kernels(config, threads)
    n_rows = arrays["strike"].shape[0]
    values = cuda.device_array(n_rows if write_rows else 1, dtype=np.float64)
    status = cuda.device_array(n_rows if write_rows else 1, dtype=np.int8)
    n_tiles = plan["n_tiles"]
    partial_sums = cuda.device_array((max(1, n_tiles), 2), dtype=np.float64)
    partial_counts = cuda.device_array((max(1, n_tiles), _N_CODES), dtype=np.int32)
    n_ids = plan["n_ids"]
    sums = cuda.device_array((n_ids, 2), dtype=np.float64)
    counts = cuda.device_array((n_ids, _N_CODES), dtype=np.int64)
    if n_tiles:
        blocks = max(1, min(LAUNCH.max_blocks, n_tiles))
        tiles_kernel[blocks, threads](
            arrays["strike"],
            arrays["vol"],
            arrays["time"],
            arrays["quantity"],
            arrays["code"],
            arrays["uid"],
            arrays["spot"],
            arrays["rate"],
            arrays["dividend_yield"],
            arrays["forward"],
            arrays["gamma"],
            arrays["multiplier"],
            scalars["call_sign"],
            scalars["put_sign"],
            scalars["unit_scale"],
            scalars["min_time"],
            plan["tile_start"],
            partial_sums,
            partial_counts,
            values,
            status,
            write_rows,
        )
    if n_ids:
        combine_kernel[_grid(n_ids)](
            plan["id_offsets"], plan["id_tiles"], partial_sums, partial_counts, sums, counts
        )
    return sums, counts, (values if write_rows else None), (status if write_rows else None)


def plan_to_device(plan: TilePlan) -> dict[str, Any]:
    """The plan's arrays copied to the device (small: a few integers per tile)."""
    return {
        "tile_start": cuda.to_device(plan.tile_start),
        "tile_id": cuda.to_device(plan.tile_id if plan.n_tiles else np.zeros(1, np.int64)),
        "id_offsets": cuda.to_device(plan.id_offsets),
        "id_tiles": cuda.to_device(plan.id_tiles if plan.n_tiles else np.zeros(1, np.int64)),
        "n_tiles": plan.n_tiles,
        "n_ids": plan.n_ids,
        "max_tile_rows": int(np.diff(plan.tile_start).max()) if plan.n_tiles else 0,
    }


def _to_device(array: Any, dtype=None) -> Any:
    """A device array of ``array``: copied from the host, or used in place if on device."""
    if is_device_array(array):
        return as_device_array(array)
    return cuda.to_device(np.ascontiguousarray(array, dtype=dtype))


def is_device_array(array: Any) -> bool:
    """Whether ``array`` lives on the device (CUDA Array Interface, or a simulator array)."""
    if hasattr(array, "__cuda_array_interface__"):
        return True
    if _simulated():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        return isinstance(array, FakeCUDAArray)
    return False


def as_device_array(array: Any) -> Any:
    """A numba device array view of a device array (zero copy)."""
    if _simulated():
        return array
    return cuda.as_cuda_array(array)  # pragma: no cover - needs a GPU


def _synchronize() -> None:
    cuda.synchronize()


class GexRunner:
    """Drop-in for the CPU GEX kernel (same arguments, same returns) running on CUDA.

    Host arrays are copied to the device once per call; the time spent in copies to
    the device, in the kernels and in copies back is added up in :attr:`timing`
    (seconds). Per-strike group sums (when asked) are added on the host from the
    per-row values the device computed (``numpy.bincount``, in row order: still
    deterministic, not compensated). It does not report the sums of magnitudes that
    bound the CPU kernel's error (its ``sum_details`` are zeros), so the CPU path's
    exact second pass under heavy cancellation does not run here.
    """

    def __init__(self, config: KernelConfig) -> None:
        self.config = config
        self.timing = {"host_to_device_s": 0.0, "kernel_s": 0.0, "device_to_host_s": 0.0}

    def __call__(
        self,
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
        """Same contract as :func:`fastgex._gex_kernel.run`.

        ``rows_per_block`` and ``exact_slots`` are unused.
        """
        n_rows = strike.size
        started = time.perf_counter()
        plan = tile_plan(underlying_id, n_underlyings, gex_tile_rows())
        want_groups = group_id.size == n_rows and n_groups > 0
        need_rows = want_groups or values_out.size == n_rows or status_out.size == n_rows
        host = {
            "strike": strike,
            "vol": vol,
            "time": time_to_expiry,
            "quantity": quantity,
            "code": option_code,
            "uid": underlying_id,
            "spot": spot,
            "rate": rate,
            "dividend_yield": dividend_yield,
            "forward": forward,
            "gamma": gamma_column,
            "multiplier": multiplier,
        }
        arrays = {name: _to_device(array) for name, array in host.items()}
        device_plan = plan_to_device(plan)
        _synchronize()
        copied = time.perf_counter()
        sums, counts, values, status = gex_on_device(
            self.config,
            arrays,
            {
                "call_sign": float(call_sign),
                "put_sign": float(put_sign),
                "unit_scale": float(unit_scale),
                "min_time": float(min_time),
            },
            device_plan,
            need_rows,
        )
        _synchronize()
        computed = time.perf_counter()
        sums_host = sums.copy_to_host()
        counts_host = counts.copy_to_host()
        row_values = values.copy_to_host() if need_rows else None
        row_status = status.copy_to_host() if need_rows else None
        self.timing["host_to_device_s"] += copied - started
        self.timing["kernel_s"] += computed - copied
        self.timing["device_to_host_s"] += time.perf_counter() - computed
        if values_out.size == n_rows:
            values_out[:] = row_values
        if status_out.size == n_rows:
            status_out[:] = row_status
        n_out = n_groups if want_groups else 0
        group_sums = np.zeros((n_out, 2))
        group_quantity = np.zeros((n_out, 2))
        group_rows = np.zeros(n_out, dtype=np.int64)
        if want_groups:
            counted = row_status == 0
            groups = group_id[counted].astype(np.int64)
            side = (option_code[counted] != CALL_CODE).astype(np.int64)
            index = groups * 2 + side
            group_sums = np.bincount(index, row_values[counted], 2 * n_out).reshape(n_out, 2)
            group_quantity = np.bincount(index, quantity[counted], 2 * n_out).reshape(n_out, 2)
            group_rows = np.bincount(groups, minlength=n_out).astype(np.int64)
        sum_details = np.zeros((n_underlyings, 4))
        return sums_host, counts_host, group_sums, group_quantity, group_rows, sum_details


# --------------------------------------------------------------------------- profile


@cache
def profile_kernels(float32: bool) -> tuple[Any, Any, Any]:
    """``(constants, evaluate, combine)`` CUDA kernels of the GEX profile."""
    row_constants = _device(_profile_kernel._row_constants)
    if float32:
        scalar = np.float32
        minus_half = np.float32(-0.5)

        @cuda.jit(device=True)
        def density(argument):
            return np.float32(math.exp(argument))  # the device's expf

    else:
        scalar = np.float64
        minus_half = -0.5
        density = _device(_fastmath.fast_exp)

    @cuda.jit
    def constants_kernel(
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
        inverse_out,
        shift_out,
        coefficient_out,
    ):
        """Per row the three constants of :func:`fastgex._profile_kernel._row_constants`."""
        for row in range(cuda.grid(1), strike.size, cuda.gridsize(1)):
            slot = slot_id[row]
            row_rate = rate[row] if row_carry else slot_rate[slot]
            row_dividend = dividend_yield[row] if row_carry else slot_dividend[slot]
            row_mult = multiplier[row] if row_multiplier else slot_multiplier[slot]
            inverse = 0.0
            shift = 0.0
            coefficient = 0.0
            # A row with a non-finite carry is invalid (zero constants) either way;
            # skipping the call keeps the exponentials' arguments finite.
            if abs(row_rate) < math.inf and abs(row_dividend) < math.inf:
                inverse, shift, coefficient = row_constants(
                    row,
                    strike,
                    vol,
                    time_to_expiry,
                    quantity,
                    option_code,
                    forward,
                    slot_price[slot],
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
            inverse_out[row] = scalar(inverse)
            shift_out[row] = scalar(shift)
            coefficient_out[row] = scalar(coefficient)

    @cuda.jit
    def evaluate_kernel(inverse, shift, coefficient, tile_start, tile_id, log_ratio, partial):
        """One thread per (tile, level): the tile's rows summed in order.

        Consecutive threads take consecutive levels of one tile, so a warp reads each
        row's constants once (a broadcast) and the work is arithmetic.
        """
        n_levels = log_ratio.shape[1]
        n_items = (tile_start.size - 1) * n_levels
        for item in range(cuda.grid(1), n_items, cuda.gridsize(1)):
            tile = item // n_levels
            level = item - tile * n_levels
            level_log = log_ratio[tile_id[tile], level]
            total = scalar(0.0)
            for row in range(tile_start[tile], tile_start[tile + 1]):
                d1 = level_log * inverse[row] + shift[row]
                total = scalar(total + coefficient[row] * density(minus_half * d1 * d1))
            partial[tile, level] = total

    @cuda.jit
    def combine_kernel(id_offsets, id_tiles, partial, level_factor, out):
        """One thread per (slot, level): tiles of the slot in order, in float64."""
        n_levels = level_factor.shape[1]
        n_items = (id_offsets.size - 1) * n_levels
        for item in range(cuda.grid(1), n_items, cuda.gridsize(1)):
            slot = item // n_levels
            level = item - slot * n_levels
            factor = level_factor[slot, level]
            total = 0.0
            for index in range(id_offsets[slot], id_offsets[slot + 1]):
                total += np.float64(partial[id_tiles[index], level]) * factor
            out[slot, level] = total

    return constants_kernel, evaluate_kernel, combine_kernel


def profile_on_device(
    arrays: dict[str, Any],
    options: dict[str, Any],
    log_ratio: Any,
    level_factor: Any,
    plan: dict[str, Any],
    float32: bool = False,
):
    """Profile per slot and level, ``out[slot, m]``, as a device array.

    ``arrays`` are device arrays in the CPU profile kernel's layout (``strike``,
    ``vol``, ``time``, ``quantity``, ``code``, ``slot``, ``forward``, ``rate``,
    ``dividend_yield``, ``multiplier``, ``slot_price``, ``slot_rate``,
    ``slot_dividend``, ``slot_multiplier``); ``options`` the CPU kernel's flags and
    signs; ``log_ratio`` and ``level_factor`` ``(slots, levels)``; ``plan`` the tile
    plan of ``slot`` on the device. With ``float32`` the row constants are rounded to
    float32 and each tile's evaluations and sum run in float32 (tiles are combined in
    float64).
    """
    constants_kernel, evaluate_kernel, combine_kernel = profile_kernels(float32)
    n_rows = arrays["strike"].shape[0]
    dtype = np.float32 if float32 else np.float64
    inverse = cuda.device_array(max(1, n_rows), dtype=dtype)
    shift = cuda.device_array(max(1, n_rows), dtype=dtype)
    coefficient = cuda.device_array(max(1, n_rows), dtype=dtype)
    if n_rows:
        constants_kernel[_grid(n_rows)](
            arrays["strike"],
            arrays["vol"],
            arrays["time"],
            arrays["quantity"],
            arrays["code"],
            arrays["slot"],
            arrays["forward"],
            arrays["rate"],
            arrays["dividend_yield"],
            arrays["multiplier"],
            arrays["slot_price"],
            arrays["slot_rate"],
            arrays["slot_dividend"],
            arrays["slot_multiplier"],
            bool(options["row_carry"]),
            bool(options["row_multiplier"]),
            bool(options["black76"]),
            bool(options["dealer_position"]),
            float(options["call_sign"]),
            float(options["put_sign"]),
            float(options["min_time"]),
            int(options["unit_power"]),
            inverse,
            shift,
            coefficient,
        )
    n_levels = log_ratio.shape[1]
    n_tiles = plan["n_tiles"]
    n_ids = plan["n_ids"]
    partial = cuda.device_array((max(1, n_tiles), n_levels), dtype=dtype)
    out = cuda.to_device(np.zeros((n_ids, n_levels)))
    if n_tiles and n_levels:
        evaluate_kernel[_grid(n_tiles * n_levels)](
            inverse, shift, coefficient, plan["tile_start"], plan["tile_id"], log_ratio, partial
        )
        combine_kernel[_grid(n_ids * n_levels)](
            plan["id_offsets"], plan["id_tiles"], partial, level_factor, out
        )
    return out


class ProfileRunner:
    """Drop-in for :func:`fastgex._profile_kernel.profile` running on CUDA.

    Row columns are copied to the device once and kept (keyed by the host arrays,
    which are held, so repeated calls, e.g. zero-gamma refinement, copy only the
    levels). Copy and kernel times add up in :attr:`timing` (seconds).
    """

    def __init__(self, float32: bool = False) -> None:
        self.float32 = float32
        self.timing = {"host_to_device_s": 0.0, "kernel_s": 0.0, "device_to_host_s": 0.0}
        self._copies: dict[int, tuple[np.ndarray, Any]] = {}
        self._plans: dict[int, tuple[np.ndarray, Any]] = {}

    def _copy(self, array: np.ndarray, dtype=None) -> Any:
        if is_device_array(array):
            return as_device_array(array)
        held = self._copies.get(id(array))
        if held is None or held[0] is not array:
            held = (array, _to_device(array, dtype))
            self._copies[id(array)] = held
        return held[1]

    def __call__(
        self,
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
        """Same contract as :func:`fastgex._profile_kernel.profile` (``rows_per_block`` unused)."""
        started = time.perf_counter()
        host = {
            "strike": strike,
            "vol": vol,
            "time": time_to_expiry,
            "quantity": quantity,
            "code": option_code,
            "slot": slot_id,
            "forward": forward,
            "rate": rate,
            "dividend_yield": dividend_yield,
            "multiplier": multiplier,
            "slot_price": slot_price,
            "slot_rate": slot_rate,
            "slot_dividend": slot_dividend,
            "slot_multiplier": slot_multiplier,
        }
        arrays = {name: self._copy(array) for name, array in host.items()}
        held = self._plans.get(id(slot_id))
        if held is None or held[0] is not slot_id:
            held = (slot_id, plan_to_device(tile_plan(slot_id, n_slots)))
            self._plans[id(slot_id)] = held
        level_dtype = np.float32 if self.float32 else np.float64
        device_log_ratio = cuda.to_device(np.ascontiguousarray(log_ratio, dtype=level_dtype))
        device_factor = cuda.to_device(np.ascontiguousarray(level_factor, dtype=np.float64))
        _synchronize()
        copied = time.perf_counter()
        options = {
            "row_carry": row_carry,
            "row_multiplier": row_multiplier,
            "black76": black76,
            "dealer_position": dealer_position,
            "call_sign": call_sign,
            "put_sign": put_sign,
            "min_time": min_time,
            "unit_power": unit_power,
        }
        out = profile_on_device(
            arrays, options, device_log_ratio, device_factor, held[1], self.float32
        )
        _synchronize()
        computed = time.perf_counter()
        result = out.copy_to_host()
        self.timing["host_to_device_s"] += copied - started
        self.timing["kernel_s"] += computed - copied
        self.timing["device_to_host_s"] += time.perf_counter() - computed
        return result
