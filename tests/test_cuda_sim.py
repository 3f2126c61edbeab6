"""The CUDA kernels against the CPU kernels, under Numba's CUDA simulator (or a real GPU).

The simulator must be switched on before numba is imported, so this file runs in its
own process: ``nox -s cuda_sim`` (``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_sim.py``).
In the plain test session it is skipped unless a real GPU is present, in which case
the same comparisons run on the hardware (and the ``gpu`` tests with them).

Inputs stay small (tens to a few hundred rows): the simulator runs every CUDA thread
as a Python thread. Tolerances: the CUDA path evaluates the same scalar functions in
the same float64 arithmetic, only the order of the additions differs (tiles of
``LAUNCH.threads_per_block`` rows instead of the CPU's blocks and strips), so totals agree to
``1e-12`` relative to the sum of the absolute contributions; counts and reasons agree
exactly.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM", "") == "1"


def _real_gpu() -> bool:
    if SIMULATED:
        return False
    from fastgex.device import cuda_available

    return cuda_available()


REAL_GPU = _real_gpu()
if not (SIMULATED or REAL_GPU):
    pytest.skip(
        "CUDA kernel tests need NUMBA_ENABLE_CUDASIM=1 set before numba is imported "
        "(run `nox -s cuda_sim`) or a real CUDA GPU",
        allow_module_level=True,
    )

import fastgex  # noqa: E402
from fastgex import _cuda_kernels, _kernels, _profile_kernel, device  # noqa: E402
from fastgex.cli import main as cli_main  # noqa: E402

# On a real GPU the tiny launches here trigger numba's occupancy warning (by message:
# numba and numba-cuda define their own warning classes).
pytestmark = pytest.mark.filterwarnings("ignore:Grid size .* will likely result in GPU under")
gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not REAL_GPU, reason="needs a real CUDA GPU (none here)")

RELATIVE = 1e-12
SPOT = {"AAA": 100.0, "BBB": 50.0, "CCC": 2000.0}


@pytest.fixture(autouse=True)
def small_launch(monkeypatch):
    """Few threads and short tiles: several blocks and tiles even on tiny inputs."""
    monkeypatch.setattr(
        _cuda_kernels,
        "LAUNCH",
        _cuda_kernels.LaunchConfig(threads_per_block=16, max_blocks=3, tile_rows=8),
    )


def _chain(n_rows: int = 150, seed: int = 1, bad: bool = True, interleave: bool = True):
    """Three underlyings, interleaved rows, and (with ``bad``) one row of each reason."""
    rng = np.random.default_rng(seed)
    names = np.array(list(SPOT))
    underlying = (
        names[np.arange(n_rows) % 3] if interleave else np.sort(names[rng.integers(0, 3, n_rows)])
    )
    spot = np.array([SPOT[name] for name in underlying])
    strike = np.round(spot * rng.uniform(0.7, 1.3, n_rows), 1)
    vol = rng.uniform(0.08, 0.9, n_rows)
    open_interest = rng.integers(0, 20_000, n_rows).astype(float)
    time_to_expiry = rng.uniform(1e-5, 2.0, n_rows)
    option_type = np.where(rng.random(n_rows) < 0.5, "C", "P").astype(object)
    if bad:
        vol[3], vol[4] = np.nan, -0.2
        strike[6] = -5.0
        open_interest[7], open_interest[8] = -1.0, np.nan
        time_to_expiry[9], time_to_expiry[10] = -0.1, np.inf
        option_type[11] = "straddle"
        option_type[12] = None
    return pa.table(
        {
            "underlying": underlying,
            "strike": strike,
            "option_type": pa.array(list(option_type), pa.string()),
            "open_interest": open_interest,
            "implied_vol": vol,
            "time_to_expiry": time_to_expiry,
        }
    )


def _scale(result) -> float:
    """Sum of |call| + |put| totals: the yardstick of the relative tolerances."""
    table = result.by_underlying
    return float(
        np.abs(table.column("call_gex").to_numpy()).sum()
        + np.abs(table.column("put_gex").to_numpy()).sum()
    )


def _assert_same_gex(cpu, gpu, per_contract: bool = False, strikes: bool = True) -> None:
    scale = _scale(cpu)
    for column in ("underlying", "contracts", "dropped"):
        assert (
            gpu.by_underlying.column(column).to_pylist()
            == cpu.by_underlying.column(column).to_pylist()
        )
    for column in ("total_gex", "call_gex", "put_gex"):
        np.testing.assert_allclose(
            gpu.by_underlying.column(column).to_numpy(),
            cpu.by_underlying.column(column).to_numpy(),
            rtol=0,
            atol=RELATIVE * scale,
        )
    assert gpu.dropped.to_pylist() == cpu.dropped.to_pylist()
    if strikes:
        for column in ("underlying", "strike", "contracts"):
            assert (
                gpu.by_strike.column(column).to_pylist() == cpu.by_strike.column(column).to_pylist()
            )
        for column in ("call_gex", "put_gex", "net_gex", "cumulative_net_gex"):
            np.testing.assert_allclose(
                gpu.by_strike.column(column).to_numpy(),
                cpu.by_strike.column(column).to_numpy(),
                rtol=0,
                atol=RELATIVE * scale,
            )
    if per_contract:
        assert (
            gpu.per_contract.column("drop_reason").to_pylist()
            == cpu.per_contract.column("drop_reason").to_pylist()
        )
        cpu_values = cpu.per_contract.column("gex").to_numpy(zero_copy_only=False)
        # Relative per row, plus a floor far below any total for the tiny far-OTM values
        # (ulp-level differences of exp's argument, e.g. from FMA contraction on a GPU).
        np.testing.assert_allclose(
            gpu.per_contract.column("gex").to_numpy(zero_copy_only=False),
            cpu_values,
            rtol=RELATIVE,
            atol=1e-15 * np.nanmax(np.abs(cpu_values)),
        )


# --------------------------------------------------------------------------- GEX


def test_gex_matches_cpu_with_every_reason():
    chain = _chain()
    cpu = fastgex.gex(chain, spot=SPOT, per_contract=True)
    gpu = fastgex.gex(chain, spot=SPOT, per_contract=True, device="cuda")
    assert cpu.dropped_count == 9  # the planted rows (a check of the input itself)
    assert set(cpu.dropped.column("reason").to_pylist()) >= {
        "missing_value",
        "unknown_option_type",
        "invalid_strike",
        "invalid_implied_vol",
        "negative_open_interest",
        "expired",
        "invalid_time_to_expiry",
    }
    _assert_same_gex(cpu, gpu, per_contract=True)
    assert gpu.settings["device"] == "cuda" and cpu.settings["device"] == "cpu"
    timing = gpu.settings["device_timing"]
    assert set(timing) == {"host_to_device_s", "kernel_s", "device_to_host_s"}
    assert all(value >= 0.0 for value in timing.values()) and timing["kernel_s"] > 0.0


def _variant_chain(variant: str) -> tuple[pa.Table, dict, set[str]]:
    """The chain of a kernel variant, its options and the reasons planted for it.

    Two variants cover every compile-time switch (each is one more CPU kernel to
    compile, so they are combined): ``futures`` is Black-76 on per-row forwards with
    per-row rate, dividend yield and multiplier, in $ per point; ``dealer`` is signed
    dealer positions with the chain's own gamma column, in shares per $.
    """
    chain = _chain(n_rows=90, seed=2)
    n_rows = chain.num_rows
    rng = np.random.default_rng(3)
    if variant == "futures":
        forward = chain.column("strike").to_numpy() * rng.uniform(0.9, 1.1, n_rows)
        forward[20] = np.nan
        rate = rng.uniform(0.0, 0.06, n_rows)
        rate[22] = np.nan
        multiplier = rng.choice([10.0, 100.0], n_rows)
        multiplier[23] = 0.0
        for name, values in (
            ("forward", forward),
            ("rate", rate),
            ("dividend_yield", rng.uniform(0, 0.03, n_rows)),
            ("multiplier", multiplier),
        ):
            chain = chain.append_column(name, pa.array(values))
        return (
            chain,
            {"unit": "dollars_per_point"},
            {"invalid_forward", "invalid_rate", "invalid_multiplier"},
        )
    position = rng.normal(0, 3000, n_rows)
    position[21] = np.inf
    gamma = rng.uniform(0.0, 0.05, n_rows)
    gamma[24] = -1.0
    chain = chain.drop_columns(["open_interest"])
    chain = chain.append_column("dealer_position", pa.array(position))
    chain = chain.append_column("gamma", pa.array(gamma))
    options = {"gamma_source": "column", "unit": "shares_per_dollar"}
    return chain, options, {"invalid_dealer_position", "invalid_gamma"}


@pytest.mark.parametrize("variant", ["futures", "dealer"])
def test_gex_kernel_variants_match_cpu(variant):
    chain, options, planted = _variant_chain(variant)
    cpu = fastgex.gex(chain, spot=SPOT, per_contract=True, **options)
    gpu = fastgex.gex(chain, spot=SPOT, per_contract=True, device="cuda", **options)
    # The variant's own planted bad rows are seen (a check of the input itself).
    assert planted <= set(cpu.dropped.column("reason").to_pylist())
    _assert_same_gex(cpu, gpu, per_contract=True)


def test_profile_futures_variant_matches_cpu():
    """The profile's runtime switches: Black-76, per-row carry and multiplier."""
    chain, options, _ = _variant_chain("futures")
    cpu = fastgex.profile(chain, spot=SPOT, n_levels=5, **options)
    gpu = fastgex.profile(chain, spot=SPOT, n_levels=5, device="cuda", **options)
    _assert_same_profile(cpu, gpu, RELATIVE)


def test_gex_without_by_strike_matches_cpu():
    chain = _chain(n_rows=60, seed=4, bad=False)
    # The CPU reference with its default by_strike: by_strike=False would be one more
    # CPU kernel specialization to compile, and the totals are the same either way.
    cpu = fastgex.gex(chain, spot=SPOT)
    gpu = fastgex.gex(chain, spot=SPOT, by_strike=False, device="cuda")
    assert gpu.by_strike is None
    _assert_same_gex(cpu, gpu, strikes=False)


def test_gex_buckets_match_cpu():
    """Expiry buckets and views: groups keyed by target class, summed from GPU row values."""
    from fastgex.sample import sample_chain

    chain = sample_chain(seed=1)
    chain = chain.take(np.sort(np.random.default_rng(0).choice(chain.num_rows, 200, replace=False)))
    cpu = fastgex.gex(chain, buckets="default")
    gpu = fastgex.gex(chain, buckets="default", device="cuda")
    scale = _scale(cpu)
    assert cpu.by_bucket.num_rows >= 3
    for name in ("by_bucket", "by_strike_bucket"):
        cpu_table, gpu_table = getattr(cpu, name), getattr(gpu, name)
        assert gpu_table.schema == cpu_table.schema
        for column in cpu_table.column_names:
            if column.endswith("_gex"):
                np.testing.assert_allclose(
                    gpu_table.column(column).to_numpy(),
                    cpu_table.column(column).to_numpy(),
                    rtol=0,
                    atol=RELATIVE * scale,
                )
            else:
                assert gpu_table.column(column).to_pylist() == cpu_table.column(column).to_pylist()


def test_gex_totals_do_not_depend_on_the_grid(monkeypatch):
    """Same plan, any number of blocks: bitwise the same totals (no atomics, fixed order)."""
    chain = _chain(n_rows=120, seed=5)
    results = []
    for blocks in (1, 2, 7):
        launch = _cuda_kernels.LaunchConfig(threads_per_block=16, max_blocks=blocks, tile_rows=8)
        monkeypatch.setattr(_cuda_kernels, "LAUNCH", launch)
        result = fastgex.gex(chain, spot=SPOT, by_strike=False, device="cuda")
        results.append(result.by_underlying.select(["call_gex", "put_gex"]).to_pylist())
    repeat = fastgex.gex(chain, spot=SPOT, by_strike=False, device="cuda")
    results.append(repeat.by_underlying.select(["call_gex", "put_gex"]).to_pylist())
    assert all(result == results[0] for result in results)  # exact equality


def test_gex_tiles_follow_the_block_size(monkeypatch):
    """Tiles as long as the blocks (16 or 32 rows): the same totals to rounding."""
    chain = _chain(n_rows=120, seed=5)
    cpu = fastgex.gex(chain, spot=SPOT)
    monkeypatch.setattr(_cuda_kernels, "LAUNCH", _cuda_kernels.LaunchConfig(32, 2, 8))
    gpu = fastgex.gex(chain, spot=SPOT, by_strike=False, device="cuda")
    _assert_same_gex(cpu, gpu, strikes=False)
    monkeypatch.setattr(_cuda_kernels, "LAUNCH", _cuda_kernels.LaunchConfig(12, 2, 8))
    with pytest.raises(ValueError, match="power of two"):
        fastgex.gex(chain, spot=SPOT, by_strike=False, device="cuda")
    plan = _cuda_kernels.plan_to_device(_cuda_kernels.tile_plan(np.zeros(40, np.int32), 1, 40))
    monkeypatch.setattr(_cuda_kernels, "LAUNCH", _cuda_kernels.LaunchConfig(16, 2, 8))
    with pytest.raises(ValueError, match="at most 16"):
        _cuda_kernels.gex_on_device(_kernels.KernelConfig(), {}, {}, plan)


def test_gex_on_invalid_raise():
    chain = _chain(n_rows=30, seed=6)
    with pytest.raises(fastgex.InvalidRowsError):
        fastgex.gex(chain, spot=SPOT, on_invalid="raise", device="cuda")


# --------------------------------------------------------------------------- the plan


def _reference_plan(ids, n_ids, tile_rows):
    """Tiles by a plain loop: cut at every id change and every ``tile_rows`` rows."""
    starts = []
    for row in range(len(ids)):
        if row == 0 or ids[row] != ids[row - 1] or row - starts[-1] >= tile_rows:
            starts.append(row)
    tile_id = [int(ids[start]) for start in starts]
    per_id = [
        [tile for tile, value in enumerate(tile_id) if value == target] for target in range(n_ids)
    ]
    return [*starts, len(ids)], tile_id, per_id


@pytest.mark.parametrize("seed", range(6))
def test_tile_plan_matches_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    n_ids = int(rng.integers(1, 5))
    ids = np.repeat(rng.integers(0, n_ids, 12), rng.integers(1, 9, 12)).astype(np.int32)
    tile_rows = int(rng.integers(1, 6))
    plan = _cuda_kernels.tile_plan(ids, n_ids, tile_rows)
    starts, tile_id, per_id = _reference_plan(ids, n_ids, tile_rows)
    assert plan.tile_start.tolist() == starts
    assert plan.tile_id.tolist() == tile_id
    assert [
        plan.id_tiles[plan.id_offsets[target] : plan.id_offsets[target + 1]].tolist()
        for target in range(n_ids)
    ] == per_id
    assert np.diff(plan.tile_start).max() <= tile_rows


def test_tile_plan_of_no_rows():
    plan = _cuda_kernels.tile_plan(np.zeros(0, np.int32), 2)
    assert plan.n_tiles == 0 and plan.tile_start.tolist() == [0]
    assert plan.id_offsets.tolist() == [0, 0, 0]


# --------------------------------------------------------------------------- device arrays


def _arrays(n_rows: int = 80, seed: int = 7):
    rng = np.random.default_rng(seed)
    uid = rng.integers(0, 3, n_rows).astype(np.int32)  # unsorted on purpose
    spot = np.array([100.0, 50.0, 2000.0])
    strike = spot[uid] * rng.uniform(0.7, 1.3, n_rows)
    vol = rng.uniform(0.1, 0.8, n_rows)
    vol[2] = np.nan
    time_to_expiry = rng.uniform(0.001, 1.0, n_rows)
    quantity = rng.integers(0, 9000, n_rows).astype(float)
    code = (rng.random(n_rows) < 0.5).astype(np.uint8)
    code[5] = 7  # unknown type
    return strike, vol, time_to_expiry, quantity, code, uid, spot


def _table_of(strike, vol, time_to_expiry, quantity, code, uid, spot):
    names = [f"U{index}" for index in range(spot.size)]
    kinds = {1: "C", 0: "P"}
    return pa.table(
        {
            "underlying": [names[index] for index in uid],
            "strike": strike,
            "option_type": [kinds.get(int(value), "weird") for value in code],
            "open_interest": quantity,
            "implied_vol": vol,
            "time_to_expiry": time_to_expiry,
        }
    ), dict(zip(names, spot.tolist(), strict=True))


def test_gex_arrays_host_and_device_inputs_match_cpu():
    from numba import cuda

    columns = _arrays()
    table, spots = _table_of(*columns)
    cpu = fastgex.gex(table, spot=spots)
    host = device.gex_arrays(*columns)
    on_device = device.gex_arrays(*[cuda.to_device(column) for column in columns[:6]], columns[6])
    scale = _scale(cpu)
    for result in (host, on_device):
        for column in ("total_gex", "call_gex", "put_gex"):
            np.testing.assert_allclose(
                result.by_underlying.column(column).to_numpy(),
                cpu.by_underlying.column(column).to_numpy(),
                rtol=0,
                atol=RELATIVE * scale,
            )
        assert (
            result.by_underlying.column("contracts").to_pylist()
            == cpu.by_underlying.column("contracts").to_pylist()
        )
        assert (
            result.dropped.column("reason").to_pylist() == cpu.dropped.column("reason").to_pylist()
        )
    # Device inputs are used in place: bitwise the same totals as the host copy.
    assert on_device.by_underlying.to_pylist() == host.by_underlying.to_pylist()


def test_gex_arrays_results_can_stay_on_the_device():
    columns = _arrays(n_rows=40, seed=8)
    plan = _cuda_kernels.tile_plan(columns[5], 3, _cuda_kernels.gex_tile_rows())
    kept = device.gex_arrays(*columns, plan=plan, keep_on_device=True, per_contract=True)
    assert kept.by_underlying is None and kept.dropped is None
    assert _cuda_kernels.is_device_array(kept.device_sums)
    assert _cuda_kernels.is_device_array(kept.values)
    arrow = device.gex_arrays(*columns, plan=plan)
    sums = kept.device_sums.copy_to_host()
    assert (sums[:, 0] + sums[:, 1]).tolist() == arrow.by_underlying.column("total_gex").to_pylist()
    values = kept.values.copy_to_host()
    status = kept.status.copy_to_host()
    assert status[2] == _kernels.STATUS["invalid_implied_vol"] and values[2] == 0.0
    assert status[5] == _kernels.STATUS["unknown_option_type"]
    counts = kept.device_counts.copy_to_host()
    assert counts.sum() == columns[0].size


# --------------------------------------------------------------------------- profile


def _assert_same_profile(cpu, gpu, tolerance: float) -> None:
    cpu_values = cpu.table.column("total_gex").to_numpy()
    gpu_values = gpu.table.column("total_gex").to_numpy()
    assert (
        cpu.table.select(["underlying", "bucket", "level"]).to_pylist()
        == gpu.table.select(["underlying", "bucket", "level"]).to_pylist()
    )
    scale = np.abs(cpu_values).max()
    np.testing.assert_allclose(gpu_values, cpu_values, rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("vol_model", ["sticky_strike", "sticky_moneyness"])
def test_profile_matches_cpu(vol_model):
    chain = _chain(n_rows=120, seed=9)
    cpu = fastgex.profile(chain, spot=SPOT, n_levels=7, vol_model=vol_model)
    gpu = fastgex.profile(chain, spot=SPOT, n_levels=7, vol_model=vol_model, device="cuda")
    _assert_same_profile(cpu, gpu, RELATIVE)
    assert gpu.settings["device"] == "cuda"
    assert gpu.settings["device_timing"]["kernel_s"] > 0.0


def test_levels_match_cpu():
    chain = _chain(n_rows=120, seed=10, bad=False)
    cpu = fastgex.levels(chain, spot=SPOT, n_levels=9)
    gpu = fastgex.levels(chain, spot=SPOT, n_levels=9, device="cuda")
    for table in ("levels", "crossings"):
        cpu_table, gpu_table = getattr(cpu, table), getattr(gpu, table)
        assert cpu_table.num_rows > 0 and gpu_table.schema == cpu_table.schema
        _assert_tables_close(cpu_table, gpu_table)


def _assert_tables_close(cpu_table, gpu_table) -> None:
    for column in cpu_table.column_names:
        cpu_values = cpu_table.column(column).to_pylist()
        gpu_values = gpu_table.column(column).to_pylist()
        if cpu_table.schema.field(column).type == pa.float64():
            np.testing.assert_allclose(
                np.array(gpu_values, dtype=float), np.array(cpu_values, dtype=float), rtol=1e-9
            )
        else:
            assert gpu_values == cpu_values, column


def _profile_arguments(seed: int = 11, n_rows: int = 96, n_levels: int = 5, signed: bool = True):
    """Arguments of the CPU profile kernel for a small two-slot chain."""
    rng = np.random.default_rng(seed)
    slot = np.repeat(np.arange(2, dtype=np.int32), n_rows // 2)
    price = np.array([100.0, 4000.0])
    strike = price[slot] * rng.uniform(0.7, 1.3, n_rows)
    vol = rng.uniform(0.1, 0.6, n_rows)
    time_to_expiry = rng.uniform(0.002, 1.0, n_rows)
    quantity = rng.integers(1, 9000, n_rows).astype(float)
    code = (rng.random(n_rows) < 0.5).astype(np.uint8)
    ratios = np.linspace(0.8, 1.2, n_levels)
    log_ratio = np.tile(np.log(ratios), (2, 1))
    factor = np.tile(0.01 * ratios, (2, 1))
    zeros = np.zeros(n_rows)
    signs = (-1.0, 1.0) if signed else (1.0, 1.0)
    slot_rate, slot_dividend, slot_multiplier = (
        np.full(2, 0.03),
        np.full(2, 0.01),
        np.full(2, 100.0),
    )
    arrays = [strike, vol, time_to_expiry, quantity, code, slot, zeros, price, log_ratio, factor,
              slot_rate, slot_dividend, slot_multiplier]  # fmt: skip
    for array in arrays:
        array.flags.writeable = False  # as the façade passes them: no new CPU specialization
    return (
        strike, vol, time_to_expiry, quantity, code, slot, zeros, zeros, zeros, zeros,
        price, slot_rate, slot_dividend, slot_multiplier,
        False, False, False, False, *signs, 1e-6, 2, log_ratio, factor, 2, 1 << 16,
    )  # fmt: skip


def test_profile_float32_accuracy():
    """float32: within 2e-5 of the float64 CPU profile, relative to the gross (|term|) sum.

    Row constants are rounded to float32 (relative 6e-8 each, so the exponent
    -d1**2/2 is off by about d1**2 * 1e-7) and each tile sums in float32; tiles combine
    in float64. The gross sum is the same profile with every term counted positive.
    """
    arguments = _profile_arguments()
    cpu = _profile_kernel.profile(*arguments)
    gross = _profile_kernel.profile(*_profile_arguments(signed=False))
    runner64 = _cuda_kernels.ProfileRunner()
    runner32 = _cuda_kernels.ProfileRunner(float32=True)
    values64 = runner64(*arguments)
    values32 = runner32(*arguments)
    np.testing.assert_allclose(values64, cpu, rtol=0, atol=RELATIVE * gross.max())
    error32 = np.abs(values32 - cpu) / gross
    assert error32.max() <= 2e-5
    assert error32.max() > 1e-12  # float32 really was used (not silently float64)


def test_profile_runner_copies_rows_once():
    arguments = _profile_arguments(n_rows=32, n_levels=3)
    runner = _cuda_kernels.ProfileRunner()
    first = runner(*arguments)
    copies = dict(runner._copies)
    second = runner(*arguments)
    assert runner._copies.keys() == copies.keys()
    assert all(runner._copies[key][1] is copies[key][1] for key in copies)
    assert first.tolist() == second.tolist()


# --------------------------------------------------------------------------- selection


def test_auto_never_picks_the_simulator():
    if SIMULATED:
        assert device.resolve_device("auto") == "cpu"
        assert device.cuda_available(simulator=True)
        assert not device.cuda_available()
    else:
        assert device.resolve_device("auto") == "cuda"
    assert device.resolve_device("cpu") == "cpu"
    assert device.resolve_device("cuda") == "cuda"


def test_bad_device_names_are_refused():
    with pytest.raises(ValueError, match="device must be one of"):
        device.resolve_device("gpu")
    with pytest.raises(ValueError, match="device must be one of"):
        fastgex.gex(_chain(n_rows=6, bad=False), spot=SPOT, device="tpu")


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(device, "_cuda_state", lambda: (False, False, "no CUDA GPU found"))
    with pytest.raises(device.DeviceUnavailableError, match=r"fastgex\[cuda\]"):
        fastgex.gex(_chain(n_rows=6, bad=False), spot=SPOT, device="cuda")
    with pytest.raises(device.DeviceUnavailableError, match="no CUDA GPU found"):
        device.gex_arrays(*_arrays(n_rows=8))
    assert device.resolve_device("auto") == "cpu"


def test_cli_device_option(tmp_path, capsys):
    path = tmp_path / "chain.parquet"
    pq.write_table(_chain(n_rows=45, seed=12), path)
    spots = ",".join(f"{name}={value}" for name, value in SPOT.items())
    outputs = {}
    for name in ("cpu", "cuda"):
        assert cli_main(["gex", str(path), "--spot", spots, "--json", "--device", name]) == 0
        outputs[name] = json.loads(capsys.readouterr().out)
    assert outputs["cuda"]["settings"]["device"] == "cuda"
    for cpu_row, gpu_row in zip(
        outputs["cpu"]["underlyings"], outputs["cuda"]["underlyings"], strict=True
    ):
        assert gpu_row["dropped_reasons"] == cpu_row["dropped_reasons"]
        assert gpu_row["total_gex"] == pytest.approx(cpu_row["total_gex"], rel=1e-12)


def test_device_functions_are_the_cpu_bodies():
    from fastgex._formulas import bsm_gamma
    from fastgex._jit import device_function

    device_bsm = device_function(bsm_gamma)
    assert device_function(bsm_gamma) is device_bsm  # one device version per function
    assert device_bsm.py_func.__code__ is bsm_gamma.py_func.__code__  # same source


# --------------------------------------------------------------------------- real GPU only


@gpu
@needs_gpu
def test_gpu_whole_market_matches_cpu(monkeypatch):  # pragma: no cover - needs a GPU
    """On hardware: a sample market through the compiled kernels (default launch)."""
    from fastgex.sample import sample_market

    monkeypatch.setattr(_cuda_kernels, "LAUNCH", _cuda_kernels.LaunchConfig())
    market = sample_market(200_000)
    cpu = fastgex.gex(market, per_contract=True)
    gpu_result = fastgex.gex(market, per_contract=True, device="cuda")
    _assert_same_gex(cpu, gpu_result, per_contract=True)
    cpu_profile = fastgex.profile(market, n_levels=20)
    gpu_profile = fastgex.profile(market, n_levels=20, device="cuda")
    _assert_same_profile(cpu_profile, gpu_profile, 1e-11)
