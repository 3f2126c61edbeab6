"""GPU benchmarks (issue 5); skipped without a real CUDA GPU.

One command on a machine with a GPU: ``nox -s bench_cuda`` (or
``pytest benchmarks/test_bench_cuda.py --benchmark-only -rs``). Targets, as ratios
measured in the same run:

* GEX per contract with per-underlying totals, inputs resident on the device: the
  input bytes read per second >= 50% of the device's bandwidth, measured as a
  device-to-device copy of the same bytes (read + write) in the same run;
* profile: >= 1e11 gamma evaluations/s in float64 on an H100-class GPU; float32 too;
* host-to-device transfer timed on its own (GB/s);
* break-even size against the CPU kernel (smallest size where the GPU, with its
  transfer, beats the CPU).

Every benchmark also checks its answer against the CPU kernels.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import best_of, kernel_inputs, record


def _gpu_present() -> bool:
    from fastgex.device import cuda_available

    return cuda_available()


if not _gpu_present():
    pytest.skip(
        "GPU benchmarks need a real CUDA GPU (none found; the simulator does not count)",
        allow_module_level=True,
    )

from numba import cuda  # noqa: E402

from fastgex import _cuda_kernels, _gex_kernel, _kernels, _profile_kernel  # noqa: E402
from fastgex._kernel_common import KernelConfig  # noqa: E402

# Small launches (the break-even sizes) trigger numba's occupancy warning; matched by
# message, since numba and numba-cuda define their own warning classes.
pytestmark = pytest.mark.filterwarnings("ignore:Grid size .* will likely result in GPU under")

GEX_SIZES = [1_000_000, 10_000_000, 30_000_000]
PROFILE_SIZES = [(1_000_000, 200), (4_000_000, 200)]
BREAK_EVEN_SIZES = [1_000, 10_000, 100_000, 1_000_000, 10_000_000]


def _device_name() -> str:
    if not hasattr(cuda, "get_current_device"):  # the simulator (smoke runs only)
        return "simulator"
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def _synchronized(function):
    def run():
        result = function()
        cuda.synchronize()
        return result

    return run


def _gex_setup(rows: int, n_underlyings: int):
    inputs = kernel_inputs(rows, n_underlyings)
    host = inputs["arrays"]
    spot = inputs["spot"]
    zeros = np.zeros(n_underlyings)
    arrays = {
        "strike": cuda.to_device(host["strike"]),
        "vol": cuda.to_device(host["vol"]),
        "time": cuda.to_device(host["time_to_expiry"]),
        "quantity": cuda.to_device(host["quantity"]),
        "code": cuda.to_device(host["option_code"]),
        "uid": cuda.to_device(host["underlying_id"]),
        "spot": cuda.to_device(spot),
        "rate": cuda.to_device(zeros),
        "dividend_yield": cuda.to_device(zeros),
        "forward": cuda.to_device(np.zeros(1)),
        "gamma": cuda.to_device(np.zeros(1)),
        "multiplier": cuda.to_device(np.full(n_underlyings, 100.0)),
    }
    scalars = {"call_sign": -1.0, "put_sign": 1.0, "unit_scale": 0.01, "min_time": 1e-6}
    plan = _cuda_kernels.plan_to_device(
        _cuda_kernels.tile_plan(host["underlying_id"], n_underlyings, _cuda_kernels.gex_tile_rows())
    )
    return inputs, arrays, scalars, plan


def _cpu_totals(inputs) -> np.ndarray:
    host = inputs["arrays"]
    n_underlyings = inputs["n_underlyings"]
    zeros = np.zeros(n_underlyings)
    empty = np.empty(0)
    sums, *_ = _gex_kernel.run(
        host["strike"], host["vol"], host["time_to_expiry"], host["quantity"],
        host["option_code"], host["underlying_id"], inputs["spot"], zeros, zeros, empty, empty,
        np.full(n_underlyings, 100.0), -1.0, 1.0, 0.01, 1e-6, n_underlyings,
        _kernels.rows_per_block(host["strike"].size, n_underlyings), empty,
        np.zeros(0, np.int8), np.zeros(0, np.int32), 0, np.zeros(0, np.uint8),
    )  # fmt: skip
    return sums


@pytest.mark.parametrize("per_contract", [False, True])
@pytest.mark.parametrize("rows", GEX_SIZES)
def test_cuda_gex_bandwidth(benchmark, rows, per_contract):
    """Input bytes read per second vs a device copy; ``per_contract`` also writes 9 B/row."""
    inputs, arrays, scalars, plan = _gex_setup(rows, max(1, rows // 2500))
    config = KernelConfig()
    run = _synchronized(
        lambda: _cuda_kernels.gex_on_device(config, arrays, scalars, plan, per_contract)
    )
    run()  # compile outside the timing
    benchmark.pedantic(run, rounds=5, iterations=1)
    ours = benchmark.stats.stats.min
    columns = ("strike", "vol", "time", "quantity", "code", "uid")
    n_bytes = sum(arrays[name].nbytes for name in columns)
    copies = {name: cuda.device_array_like(arrays[name]) for name in columns}

    def copy_all():
        for name in columns:
            copies[name].copy_to_device(arrays[name])  # device to device
        cuda.synchronize()

    copy_time = best_of(copy_all, repeat=5)
    device_bandwidth = 2 * n_bytes / copy_time  # a copy reads and writes every byte
    ours_bandwidth = n_bytes / ours
    ratios = {
        "device": _device_name(),
        "input_GBps": ours_bandwidth / 1e9,
        "copy_GBps": device_bandwidth / 1e9,
        "fraction_of_bandwidth": ours_bandwidth / device_bandwidth,
        "target": 0.5,
    }
    benchmark.extra_info.update(ratios)
    what = "values + totals" if per_contract else "totals"
    record(f"cuda gex {rows:.0e} rows, {what} (device-resident)", **ratios)
    sums = run()[0].copy_to_host()
    np.testing.assert_allclose(sums, _cpu_totals(inputs), rtol=1e-11, atol=1e-9)


def _profile_setup(rows: int, n_levels: int):
    inputs = kernel_inputs(rows, max(1, rows // 2500))
    host = inputs["arrays"]
    n_slots = inputs["n_underlyings"]
    ratios = np.linspace(0.8, 1.2, n_levels)
    log_ratio = np.broadcast_to(np.log(ratios), (n_slots, n_levels)).copy()
    factor = np.broadcast_to(0.01 * ratios, (n_slots, n_levels)).copy()
    zeros = np.zeros(n_slots)
    multiplier = np.full(n_slots, 100.0)
    empty = np.empty(0)
    args = (
        host["strike"], host["vol"], host["time_to_expiry"], host["quantity"],
        host["option_code"], host["underlying_id"], empty, empty, empty, empty,
        inputs["spot"], zeros, zeros, multiplier, False, False, False, False, -1.0, 1.0,
        1e-6, 2, log_ratio, factor, n_slots, _kernels.rows_per_block(rows, n_slots),
    )  # fmt: skip
    device_arrays = {
        "strike": cuda.to_device(host["strike"]),
        "vol": cuda.to_device(host["vol"]),
        "time": cuda.to_device(host["time_to_expiry"]),
        "quantity": cuda.to_device(host["quantity"]),
        "code": cuda.to_device(host["option_code"]),
        "slot": cuda.to_device(host["underlying_id"]),
        "forward": cuda.to_device(np.zeros(1)),
        "rate": cuda.to_device(np.zeros(1)),
        "dividend_yield": cuda.to_device(np.zeros(1)),
        "multiplier": cuda.to_device(np.zeros(1)),
        "slot_price": cuda.to_device(inputs["spot"]),
        "slot_rate": cuda.to_device(zeros),
        "slot_dividend": cuda.to_device(zeros),
        "slot_multiplier": cuda.to_device(multiplier),
    }
    options = {
        "row_carry": False, "row_multiplier": False, "black76": False,
        "dealer_position": False, "call_sign": -1.0, "put_sign": 1.0, "min_time": 1e-6,
        "unit_power": 2,
    }  # fmt: skip
    plan = _cuda_kernels.plan_to_device(_cuda_kernels.tile_plan(host["underlying_id"], n_slots))
    return args, device_arrays, options, log_ratio, factor, plan


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize(("rows", "n_levels"), PROFILE_SIZES)
def test_cuda_profile_throughput(benchmark, rows, n_levels, precision):
    args, arrays, options, log_ratio, factor, plan = _profile_setup(rows, n_levels)
    float32 = precision == "float32"
    device_log = cuda.to_device(log_ratio.astype(np.float32 if float32 else np.float64))
    device_factor = cuda.to_device(factor)
    run = _synchronized(
        lambda: _cuda_kernels.profile_on_device(
            arrays, options, device_log, device_factor, plan, float32
        )
    )
    run()
    benchmark.pedantic(run, rounds=5, iterations=1)
    evals_per_s = rows * n_levels / benchmark.stats.stats.min
    ratios = {
        "device": _device_name(),
        "precision": precision,
        "evals_per_s": evals_per_s,
        "target_float64": 1e11,
    }
    benchmark.extra_info.update(ratios)
    record(f"cuda profile {rows:.0e} rows x {n_levels} levels {precision}", **ratios)
    cpu = _profile_kernel.profile(*args)
    gross_args = list(args)
    gross_args[18] = 1.0  # calls counted positive too: the sum of |terms|, the error scale
    gross = _profile_kernel.profile(*gross_args)
    ours = run().copy_to_host()
    tolerance = 2e-5 if float32 else 1e-12  # see tests/test_cuda_sim.py and docs/gpu.md
    assert np.all(np.abs(ours - cpu) <= tolerance * gross + 1e-300)


@pytest.mark.parametrize("rows", [10_000_000])
def test_cuda_host_to_device_transfer(benchmark, rows):
    host = kernel_inputs(rows, 1000)["arrays"]
    pinned = {name: cuda.pinned_array(value.shape, value.dtype) for name, value in host.items()}
    for name, value in host.items():
        pinned[name][:] = value
    n_bytes = sum(value.nbytes for value in host.values())

    def pageable():
        return [cuda.to_device(value) for value in host.values()]

    def from_pinned():
        return [cuda.to_device(value) for value in pinned.values()]

    pageable()
    benchmark.pedantic(_synchronized(pageable), rounds=5, iterations=1)
    pageable_time = benchmark.stats.stats.min
    pinned_time = best_of(_synchronized(from_pinned), repeat=5)
    ratios = {
        "device": _device_name(),
        "pageable_GBps": n_bytes / pageable_time / 1e9,
        "pinned_GBps": n_bytes / pinned_time / 1e9,
    }
    benchmark.extra_info.update(ratios)
    record(f"cuda host-to-device {n_bytes / 1e6:.0f} MB", **ratios)
    copied = pageable()
    assert np.array_equal(copied[0].copy_to_host(), host["strike"])


def test_cuda_break_even(benchmark):
    """Smallest size from which the GPU (host data, transfer included) beats the CPU kernel."""
    sizes = BREAK_EVEN_SIZES
    rows_table = []
    break_even = None
    runner = _cuda_kernels.GexRunner(KernelConfig())
    for rows in sizes:
        inputs = kernel_inputs(rows, max(1, rows // 2500))
        host = inputs["arrays"]
        n_underlyings = inputs["n_underlyings"]
        zeros = np.zeros(n_underlyings)
        empty = np.empty(0)
        args = (
            host["strike"], host["vol"], host["time_to_expiry"], host["quantity"],
            host["option_code"], host["underlying_id"], inputs["spot"], zeros, zeros, empty,
            empty, np.full(n_underlyings, 100.0), -1.0, 1.0, 0.01, 1e-6, n_underlyings,
            _kernels.rows_per_block(rows, n_underlyings), empty, np.zeros(0, np.int8),
            np.zeros(0, np.int32), 0, np.zeros(0, np.uint8),
        )  # fmt: skip
        cpu_time = best_of(lambda args=args: _gex_kernel.run(*args), repeat=3)
        gpu_time = best_of(lambda args=args: runner(*args), repeat=3)
        np.testing.assert_allclose(runner(*args)[0], _gex_kernel.run(*args)[0], rtol=1e-11)
        rows_table.append((rows, cpu_time, gpu_time))
    # The smallest size from which the GPU wins at every larger size too.
    for rows, cpu_time, gpu_time in reversed(rows_table):
        if gpu_time >= cpu_time:
            break
        break_even = rows
    started = time.perf_counter()
    benchmark.pedantic(lambda: runner(*args), rounds=3, iterations=1)
    ratios = {
        "device": _device_name(),
        "break_even_rows": break_even if break_even is not None else f"> {sizes[-1]}",
        "cpu_over_gpu_at_largest": rows_table[-1][1] / rows_table[-1][2],
        "sizes": ";".join(f"{r}:{c * 1e3:.2f}ms/{g * 1e3:.2f}ms" for r, c, g in rows_table),
        "seconds": time.perf_counter() - started,
    }
    benchmark.extra_info.update(ratios)
    record("cuda break-even vs CPU kernel (GEX, with transfer)", **ratios)
