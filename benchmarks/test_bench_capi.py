"""libfastgex from C: per-call overhead (cffi path, function pointer) and a 1M-contract call.

The C side is timed by a small C driver (tests/c/bench_capi.c) in the same run as the
Python API calls it is compared with; ratios only, and each result is checked. The Python
side of the ratios is timed in a plain interpreter too (``_PYTHON_TIMINGS``): inside
pytest, small ``gex()`` calls were measured ~100x slower than in a plain process on this
machine, which would flatter the C path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import fastgex
from conftest import record
from fastgex._formulas import bsm_gamma

ROOT = Path(__file__).resolve().parents[1]
N_LARGE = 1_000_000
CALLS = 20_000


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None or not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        pytest.skip("needs a C compiler and a shared libpython")
    prefix = tmp_path_factory.mktemp("libfastgex")
    subprocess.run(
        [sys.executable, "-m", "fastgex.capi", "build", "--out", str(prefix)],
        check=True,
        capture_output=True,
    )
    target = prefix / "bench_capi"
    subprocess.run(
        [
            compiler,
            "-O2",
            str(ROOT / "tests" / "c" / "bench_capi.c"),
            f"-I{prefix / 'include'}",
            f"-I{ROOT / 'docs' / 'examples' / 'embedding'}",
            f"-L{prefix / 'lib'}",
            f"-Wl,-rpath,{prefix / 'lib'}",
            "-lfastgex",
            "-lm",
            "-o",
            str(target),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _run_driver(driver: Path) -> dict[str, tuple[float, float]]:
    ran = subprocess.run(
        [str(driver), str(N_LARGE), str(CALLS)], capture_output=True, text=True, check=True
    )
    results = {}
    for line in ran.stdout.splitlines():
        if line.startswith("BENCH "):
            _, name, seconds, checksum = line.split()
            results[name] = (float(seconds), float(checksum))
    return results


_PYTHON_TIMINGS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from conftest import best_of
import test_bench_capi as bench
import fastgex
from fastgex._formulas import bsm_gamma
small, large = bench._small_chain(), bench._large_chain()
print(json.dumps({
    "small": best_of(lambda: fastgex.gex(small, spot=100.0), repeat=50),
    "large": best_of(lambda: fastgex.gex(large, spot=100.0, by_strike=False), repeat=5),
    "scalar": best_of(lambda: bsm_gamma(100.0, 95.0, 0.2, 0.25, 0.0, 0.0), repeat=5000),
}))
"""


def _python_timings() -> dict[str, float]:
    ran = subprocess.run(
        [sys.executable, "-c", _PYTHON_TIMINGS, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(ran.stdout)


def _small_chain() -> pa.Table:
    return pa.table(
        {
            "underlying": ["AAA"] * 8,
            "strike": [90.0, 95, 100, 105, 90, 95, 100, 105],
            "option_type": ["C"] * 4 + ["P"] * 4,
            "implied_vol": [0.3, 0.25, 0.2, 0.22, 0.35, 0.3, 0.24, 0.2],
            "time_to_expiry": [0.1] * 4 + [0.5] * 4,
            "open_interest": [100.0, 200, 300, 400, 500, 600, 700, 800],
        }
    )


def _large_chain() -> pa.Table:
    """The driver's 1M contracts, built with the same arithmetic."""
    row = np.arange(N_LARGE)
    is_call = (row & 1).astype(bool)
    return pa.table(
        {
            "underlying": pa.array(["AAA"] * N_LARGE).dictionary_encode(),
            "strike": 60.0 + 80.0 * (row % 997).astype(np.float64) / 997.0,
            "option_type": np.where(is_call, "C", "P"),
            "implied_vol": 0.1 + 0.5 * (row % 89).astype(np.float64) / 89.0,
            "time_to_expiry": 0.01 + 1.5 * (row % 53).astype(np.float64) / 53.0,
            "open_interest": (row % 5000).astype(np.float64),
        }
    )


def test_capi_overhead_and_large_call(benchmark, driver):
    results = _run_driver(driver)
    python = _python_timings()
    large = _large_chain()
    expected = benchmark.pedantic(
        fastgex.gex, args=(large,), kwargs={"spot": 100.0, "by_strike": False}, rounds=3
    )
    c_large, c_total = results["cffi_contract_gex_large"]
    assert c_total == pytest.approx(expected.total("AAA"), rel=1e-9)
    c_small, _ = results["cffi_gex_batch_call"]
    c_call, c_gamma = results["cffi_gamma_call"]
    pointer_call, pointer_gamma = results["cfunc_gamma_call"]
    expected_gamma = bsm_gamma(100.0, 95.0, 0.2, 0.25, 0.0, 0.0)
    # (the vectorized kernel and the scalar function may round the last bit differently)
    assert c_gamma == pytest.approx(expected_gamma, rel=1e-14)
    assert pointer_gamma == pytest.approx(expected_gamma, rel=1e-14)

    record(
        "C ABI 1M contracts: fastgex_contract_gex vs Python gex() (plain process)",
        c_ms=c_large * 1e3,
        python_ms=python["large"] * 1e3,
        python_in_pytest_ms=benchmark.stats.stats.min * 1e3,
        speedup=python["large"] / c_large,
        c_contracts_per_s=N_LARGE / c_large,
    )
    record(
        "C ABI 8-row chain per call: fastgex_gex_batch vs Python gex() (plain process)",
        c_us=c_small * 1e6,
        python_us=python["small"] * 1e6,
        c_over_python=c_small / python["small"],
    )
    record(
        "C ABI scalar gamma per call: cffi / cfunc pointer / Python dispatcher",
        cffi_us=c_call * 1e6,
        cfunc_ns=pointer_call * 1e9,
        python_dispatcher_us=python["scalar"] * 1e6,
        cffi_over_cfunc=c_call / pointer_call,
    )
    benchmark.extra_info.update(
        cffi_call_us=c_call * 1e6, cfunc_call_ns=pointer_call * 1e9, c_large_s=c_large
    )
    # The function pointer skips the interpreter entirely: it must be far cheaper.
    assert pointer_call * 20 < c_call
