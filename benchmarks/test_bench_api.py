"""End-to-end ``fastgex.gex`` on Arrow tables, and JIT cost (cold compile, warm demo)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest

import fastgex
from conftest import record
from fastgex.sample import sample_market


@pytest.fixture(scope="module")
def whole_market():
    return sample_market(1_500_000, seed=0)


@pytest.mark.parametrize("by_strike", [False, True], ids=["totals", "totals+strikes"])
def test_gex_whole_market(benchmark, whole_market, by_strike):
    fastgex.gex(whole_market, by_strike=by_strike)
    result = benchmark(fastgex.gex, whole_market, by_strike=by_strike)
    rows_per_s = whole_market.num_rows / benchmark.stats.stats.min
    benchmark.extra_info["rows_per_s"] = rows_per_s
    record(
        f"gex() whole market 1.5M ({'with' if by_strike else 'no'} strikes)", rows_per_s=rows_per_s
    )
    assert result.dropped_count == 0 and result.by_underlying.num_rows > 1000


def test_gex_ten_million_rows(benchmark):
    table = sample_market(10_000_000, seed=1)
    fastgex.gex(table, by_strike=False)
    benchmark.pedantic(fastgex.gex, args=(table,), kwargs={"by_strike": False}, rounds=3)
    rows_per_s = table.num_rows / benchmark.stats.stats.min
    record("gex() 1e7 rows, totals", rows_per_s=rows_per_s)


def _timed(command, env):
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def test_jit_cold_and_warm_demo(benchmark):
    """Cold: empty Numba cache, first `gex` call in a new process. Warm: `fastgex demo`.

    Targets (issue 2): cold < 30 s, warm `fastgex demo` wall time < 2 s.
    """
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "FASTGEX_KERNEL_DIR": cache}
        probe = (
            "import fastgex; from fastgex.sample import sample_chain; fastgex.gex(sample_chain())"
        )
        cold = _timed([sys.executable, "-c", probe], env)
        warm_first_call = _timed([sys.executable, "-c", probe], env)
        demo = [sys.executable, "-m", "fastgex", "demo", "--chart", ""]  # text only
        # Warm includes Python's bytecode cache, as after a pip install: with
        # PYTHONDONTWRITEBYTECODE set (some CI images set it) every process compiles
        # fastgex's modules from source again, about 0.15 s of the demo.
        warm_env = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
        _timed(demo, warm_env)  # compiles anything the demo needs beyond the probe
        benchmark.pedantic(_timed, args=(demo, warm_env), rounds=3, iterations=1)
    warm_demo = benchmark.stats.stats.min
    benchmark.extra_info.update(cold_first_call_s=cold, warm_demo_wall_s=warm_demo)
    record(
        "JIT", cold_first_call_s=cold, warm_first_call_s=warm_first_call, warm_demo_wall_s=warm_demo
    )
