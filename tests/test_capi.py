"""libfastgex (the C ABI): built once, driven from C, C++ and ctypes, against the Python API.

The library is built into a temporary prefix with ``python -m fastgex.capi build`` (the
documented command), and the C/C++ programs compiled are exactly the files under
docs/examples/embedding/ and tests/c/. Skips only when no C compiler, no Python headers
or no shared libpython exist.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgex
from conftest import C_TESTS, EXAMPLES, _run
from fastgex import reference
from fastgex.capi import HEADER, _embedded, _raw

STATUS_NAMES = {
    0: "FASTGEX_OK",
    1: "FASTGEX_ERROR_NOT_INITIALIZED",
    2: "FASTGEX_ERROR_PYTHON_START",
    3: "FASTGEX_ERROR_NULL_POINTER",
    4: "FASTGEX_ERROR_INVALID_ARGUMENT",
    5: "FASTGEX_ERROR_ARROW",
    6: "FASTGEX_ERROR_CHAIN",
    7: "FASTGEX_ERROR_INVALID_ROWS",
    8: "FASTGEX_ERROR_INTERNAL",
}


def _lines(output: str, tag: str) -> list[list[str]]:
    return [line.split()[1:] for line in output.splitlines() if line.startswith(tag + " ")]


def _chain_from_rows(rows: list[list[str]]) -> pa.Table:
    return pa.table(
        {
            "underlying": [row[0] for row in rows],
            "strike": [float(row[1]) for row in rows],
            "option_type": [row[2] for row in rows],
            "implied_vol": [float(row[3]) for row in rows],
            "time_to_expiry": [float(row[4]) for row in rows],
            "open_interest": [float(row[5]) for row in rows],
        }
    )


# ---- the build -------------------------------------------------------------------------


def test_build_writes_library_header_and_package_files(capi):
    prefix = capi["prefix"]
    assert (prefix / "lib" / "libfastgex.so").is_file()
    assert (prefix / "include" / "fastgex.h").read_text() == HEADER.read_text()
    pc = (prefix / "lib" / "pkgconfig" / "fastgex.pc").read_text()
    assert f"prefix={prefix}" in pc
    assert f"Version: {fastgex.__version__}" in pc
    cmake = (prefix / "lib" / "cmake" / "fastgex" / "fastgexConfig.cmake").read_text()
    assert "fastgex::fastgex" in cmake
    exported = _run(["nm", "-D", "--defined-only", prefix / "lib" / "libfastgex.so"])
    if exported.returncode == 0:
        for name in ("fastgex_init", "fastgex_gex", "fastgex_levels", "fastgex_gamma_function"):
            assert f" {name}\n" in exported.stdout + "\n"


def test_pkg_config_flags(capi):
    if shutil.which("pkg-config") is None:
        pytest.skip("pkg-config is not installed")
    env = {**os.environ, "PKG_CONFIG_PATH": str(capi["prefix"] / "lib" / "pkgconfig")}
    flags = _run(["pkg-config", "--cflags", "--libs", "fastgex"], env=env)
    assert flags.returncode == 0, flags.stderr
    assert f"-I{capi['prefix'] / 'include'}" in flags.stdout
    assert "-lfastgex" in flags.stdout


def test_header_is_package_data():
    assert HEADER.is_file()
    text = HEADER.read_text()
    assert "#define FASTGEX_ABI_VERSION 1" in text
    assert "struct ArrowArrayStream" in text


# ---- C: a chain built by hand in C -------------------------------------------------------


def test_c_example_matches_python_api(capi):
    ran = _run([capi["gex_example"]])
    assert ran.returncode == 0, ran.stderr
    assert _lines(ran.stdout, "VERSION") == [[fastgex.__version__, "ABI", "1"]]
    chain = _chain_from_rows(_lines(ran.stdout, "ROW"))
    assert chain.num_rows == 8
    spot = {"AAA": 100.0, "BBB": 50.0}
    expected = fastgex.gex(chain, spot=spot, convention="long_calls_short_puts")
    totals = _lines(ran.stdout, "TOTAL")
    assert [row[0] for row in totals] == expected.by_underlying.column("underlying").to_pylist()
    for row, want in zip(totals, expected.by_underlying.to_pylist(), strict=True):
        assert float(row[1]) == want["spot"]
        for index, key in enumerate(("total_gex", "call_gex", "put_gex"), start=2):
            assert float(row[index]) == pytest.approx(want[key], rel=1e-13)
        assert int(row[5]) == want["contracts"]
    strikes = _lines(ran.stdout, "STRIKE")
    assert len(strikes) == expected.by_strike.num_rows
    for row, want in zip(strikes, expected.by_strike.to_pylist(), strict=True):
        assert (row[0], float(row[1])) == (want["underlying"], want["strike"])
        assert float(row[2]) == pytest.approx(want["net_gex"], rel=1e-13)
        assert float(row[3]) == pytest.approx(want["cumulative_net_gex"], rel=1e-13)
    # and the slow row-by-row oracle agrees with both
    rows = [
        {**row, "spot": spot[row["underlying"]]}
        for row in chain.to_pylist()  # time_to_expiry >= 0.02y: above any floor
    ]
    oracle = reference.gex_reference(rows, convention="long_calls_short_puts")
    for row in totals:
        assert float(row[2]) == pytest.approx(oracle.by_underlying[row[0]]["total"], rel=1e-10)


def test_examples_build_with_cmake(capi, tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None or (shutil.which("g++") or shutil.which("c++")) is None:
        pytest.skip("cmake or a C++ compiler is not installed")
    build = tmp_path / "build"
    configured = _run([cmake, "-S", EXAMPLES, "-B", build, f"-DCMAKE_PREFIX_PATH={capi['prefix']}"])
    assert configured.returncode == 0, configured.stdout + configured.stderr
    built = _run([cmake, "--build", build])
    assert built.returncode == 0, built.stdout + built.stderr
    ran = _run([build / "gex_example"])  # find_package(fastgex) set the rpath
    assert ran.returncode == 0, ran.stderr
    reference_run = _run([capi["gex_example"]])
    assert _lines(ran.stdout, "TOTAL") == _lines(reference_run.stdout, "TOTAL")


# ---- C++: raw arrays, the compiled function, levels ---------------------------------------


def test_cpp_example_matches_reference_and_levels(capi):
    if "levels_example" not in capi:
        pytest.skip("no C++ compiler (g++/c++) on PATH")
    ran = _run([capi["levels_example"]])
    assert ran.returncode == 0, ran.stderr
    chain = _chain_from_rows(_lines(ran.stdout, "ROW"))
    rows = chain.to_pylist()
    exact = [
        reference.bsm_gamma(100.0, row["strike"], row["implied_vol"], row["time_to_expiry"])
        for row in rows
    ]
    gammas = [float(row[1]) for row in _lines(ran.stdout, "GAMMA")]
    np.testing.assert_allclose(gammas, exact, rtol=1e-11)
    (cfunc_sum,) = _lines(ran.stdout, "CFUNC_SUM")
    assert float(cfunc_sum[0]) == pytest.approx(math.fsum(exact), rel=1e-11)
    signs = {"C": -1.0, "P": 1.0}  # short_calls_long_puts
    expected_total = math.fsum(
        reference.contract_gex(value, signs[row["option_type"]] * row["open_interest"], 100, 100.0)
        for value, row in zip(exact, rows, strict=True)
    )
    ((total, invalid),) = _lines(ran.stdout, "CONTRACT_TOTAL")
    assert float(total) == pytest.approx(expected_total, rel=1e-11)
    assert invalid == "0"
    levels = fastgex.levels(chain, spot=100.0, n_levels=41, level_range=(0.8, 1.2))
    (want,) = levels.levels.to_pylist()
    got = {name: value for name, value in _lines(ran.stdout, "LEVEL")}
    assert want["zero_gamma"] is not None  # the example chain does cross zero
    for name, value in got.items():
        if value == "null" or want[name] is None:
            assert value == "null" and want[name] is None, name
        else:  # another process (the embedded interpreter): equal to rounding
            assert float(value) == pytest.approx(want[name], rel=1e-10), name


# ---- C: bad input, failed start-up, threads ----------------------------------------------


#: case -> (status, a piece of the message)
EXPECTED_ERRORS = {
    "before_init_gamma": ("FASTGEX_ERROR_NOT_INITIALIZED", "fastgex_init() has not been called"),
    "before_init_function": ("FASTGEX_ERROR_NOT_INITIALIZED", "has not been called"),
    "before_init_gex": ("FASTGEX_ERROR_NOT_INITIALIZED", "has not been called"),
    "init": ("FASTGEX_OK", ""),
    "init_again": ("FASTGEX_OK", ""),
    "gamma_null_strike": ("FASTGEX_ERROR_NULL_POINTER", "strike is NULL"),
    "gamma_null_out": ("FASTGEX_ERROR_NULL_POINTER", "gamma is NULL"),
    "gamma_negative_n": ("FASTGEX_ERROR_INVALID_ARGUMENT", "n is negative"),
    "gamma_zero_n_null": ("FASTGEX_OK", ""),
    "gamma_bad_spot": ("FASTGEX_ERROR_INVALID_ARGUMENT", "spot must be positive"),
    "gamma_nan_rate": ("FASTGEX_ERROR_INVALID_ARGUMENT", "rate must be finite"),
    "gamma_invalid_rows": ("FASTGEX_OK", ""),
    "contract_gex_null_total": ("FASTGEX_ERROR_NULL_POINTER", "total is NULL"),
    "contract_gex_null_flags": ("FASTGEX_ERROR_NULL_POINTER", "is_call is NULL"),
    "contract_gex_bad_convention": ("FASTGEX_ERROR_INVALID_ARGUMENT", "convention 7"),
    "contract_gex_bad_unit": ("FASTGEX_ERROR_INVALID_ARGUMENT", "unit -1"),
    "contract_gex_bad_multiplier": ("FASTGEX_ERROR_INVALID_ARGUMENT", "multiplier must be"),
    "contract_gex_invalid_rows": ("FASTGEX_OK", ""),
    "function_null_out": ("FASTGEX_ERROR_NULL_POINTER", "out is NULL"),
    "black76_function_null_out": ("FASTGEX_ERROR_NULL_POINTER", "out is NULL"),
    "gex_null_chain": ("FASTGEX_ERROR_NULL_POINTER", "chain is NULL"),
    "gex_null_output": ("FASTGEX_ERROR_NULL_POINTER", "by_underlying output is NULL"),
    "gex_released_stream": ("FASTGEX_ERROR_NULL_POINTER", "already released"),
    "batch_null_schema": ("FASTGEX_ERROR_NULL_POINTER", "schema is NULL"),
    "levels_null_chain": ("FASTGEX_ERROR_NULL_POINTER", "chain is NULL"),
    "gex_no_spot": ("FASTGEX_ERROR_CHAIN", "no spot"),
    "gex_strike_as_text": ("FASTGEX_ERROR_CHAIN", "column 'strike' has type string"),
    "gex_missing_open_interest": ("FASTGEX_ERROR_CHAIN", "missing required column 'open_interest'"),
    "gex_short_column": ("FASTGEX_ERROR_ARROW", "expected length 8 but got length 5"),
    "gex_bad_format": ("FASTGEX_ERROR_ARROW", "format string"),
    "gex_bad_buffer_count": ("FASTGEX_ERROR_ARROW", "Expected 2 buffers"),
    "options_bad_version": ("FASTGEX_ERROR_INVALID_ARGUMENT", "version is 99"),
    "options_bad_convention": ("FASTGEX_ERROR_INVALID_ARGUMENT", "convention 5"),
    "options_negative_spot": ("FASTGEX_ERROR_INVALID_ARGUMENT", "spot must be positive"),
    "options_unknown_key": ("FASTGEX_ERROR_INVALID_ARGUMENT", "unknown option 'colour'"),
    "options_levels_key_in_gex": ("FASTGEX_ERROR_INVALID_ARGUMENT", "only for fastgex_levels"),
    "options_bad_number": ("FASTGEX_ERROR_INVALID_ARGUMENT", "option rate='abc'"),
    "options_bad_on_invalid": ("FASTGEX_ERROR_INVALID_ARGUMENT", "on_invalid must be"),
    "options_rate_ok": ("FASTGEX_OK", ""),
    "gex_invalid_rows_raise": ("FASTGEX_ERROR_INVALID_ROWS", "invalid_implied_vol"),
    "gex_invalid_rows_dropped": ("FASTGEX_OK", ""),
}


def test_bad_input_gets_status_codes_and_messages(capi):
    ran = _run([capi["capi_test"], "errors"])
    assert ran.returncode == 0, ran.stdout + ran.stderr
    cases = {}
    for line in ran.stdout.splitlines():
        if line.startswith("CASE "):
            _, name, status, *message = line.split(" ")
            cases[name] = (status, " ".join(message))
    assert set(cases) == set(EXPECTED_ERRORS)
    for name, (status, fragment) in EXPECTED_ERRORS.items():
        assert cases[name][0] == status, (name, cases[name])
        assert fragment in cases[name][1], (name, cases[name])
    checks = {row[0]: row[1:] for row in _lines(ran.stdout, "CHECK")}
    assert checks["before_init_stream_released"] == ["1"]  # inputs consumed even then
    assert checks["before_init_output_cleared"] == ["1"]
    assert checks["version"] == [fastgex.__version__]
    assert checks["gamma_invalid_count"] == ["3", "nan", "1", "1", "1", "finite", "1"]
    assert checks["contract_gex_invalid_count"] == ["2", "total_finite", "1", "zero", "1", "1"]
    assert checks["null_output_stream_released"] == ["1"]
    assert checks["null_schema_array_released"] == ["1"]
    assert checks["wrong_type_inputs_released"] == ["1", "1"]
    # The rate option reached gex(): compare with Python on the same chain.
    chain = pa.table(
        {
            "underlying": ["AAA"] * 8,
            "strike": [90.0, 95, 100, 105, 90, 95, 100, 105],
            "option_type": ["C"] * 4 + ["P"] * 4,
            "implied_vol": [0.3, 0.25, 0.2, 0.22, 0.35, 0.3, 0.24, 0.2],
            "time_to_expiry": [0.1] * 4 + [0.5] * 4,
            "open_interest": [100.0, 200, 300, 400, 500, 600, 700, 800],
        }
    )
    expected = fastgex.gex(chain, spot=100.0, rate=0.05, dividend_yield=0.01).total("AAA")
    assert float(checks["rate_total"][0]) == pytest.approx(expected, rel=1e-13)
    assert expected != pytest.approx(fastgex.gex(chain, spot=100.0).total("AAA"), rel=1e-6)


def test_failed_python_start_is_a_status(capi):
    env = {**os.environ, "FASTGEX_PYTHONHOME": "/nonexistent/fastgex-home"}
    ran = _run([capi["capi_test"], "init"], env=env)
    assert ran.returncode == 3, ran.stdout + ran.stderr  # the program's exit, not a signal
    cases = {row[0]: row[1:] for row in _lines(ran.stdout, "CASE")}
    assert cases["init"][0] == "FASTGEX_ERROR_PYTHON_START"
    assert "did not start" in " ".join(cases["init"])
    assert cases["after_failed_init"][0] == "FASTGEX_ERROR_NOT_INITIALIZED"


def test_fastgex_missing_from_path_is_a_status(capi, tmp_path):
    # This environment's python3 first on PATH: left to itself the embedded interpreter
    # would find it and take its virtualenv's site-packages (which hold fastgex).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "FASTGEX_PYTHONPATH": str(tmp_path), "PATH": path}
    env.pop("PYTHONPATH", None)
    base = Path(sys.base_prefix) / "bin" / "python3"
    if base.exists() and _run([base, "-c", "import fastgex"]).returncode == 0:
        pytest.skip(f"{base} itself can import fastgex")
    ran = _run([capi["capi_test"], "init"], env=env)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    cases = {row[0]: " ".join(row[1:]) for row in _lines(ran.stdout, "CASE")}
    assert cases["init"].startswith("FASTGEX_ERROR_PYTHON_START")


def test_calls_from_many_threads(capi):
    ran = _run([capi["capi_test"], "threads"])
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (summary,) = _lines(ran.stdout, "THREADS")
    fields = dict(item.split("=") for item in summary)
    assert fields["mismatches"] == "0"
    assert int(fields["threads"]) * int(fields["rounds"]) >= 100
    chain = pa.table(
        {
            "underlying": ["AAA"] * 8,
            "strike": [90.0, 95, 100, 105, 90, 95, 100, 105],
            "option_type": ["C"] * 4 + ["P"] * 4,
            "implied_vol": [0.3, 0.25, 0.2, 0.22, 0.35, 0.3, 0.24, 0.2],
            "time_to_expiry": [0.1] * 4 + [0.5] * 4,
            "open_interest": [100.0, 200, 300, 400, 500, 600, 700, 800],
        }
    )
    expected = fastgex.gex(chain, spot=100.0).total("AAA")
    assert float(fields["total"]) == pytest.approx(expected, rel=1e-13)
    assert float(fields["contract_total"]) == pytest.approx(expected, rel=1e-12)


# ---- Python -> C ABI: chains streamed from pyarrow, polars, DuckDB ------------------------


def test_chains_streamed_from_python(capi):
    library = capi["prefix"] / "lib" / "libfastgex.so"
    ran = _run([sys.executable, C_TESTS / "stream_from_python.py", library])
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    expected = report["expected"]
    for source in ("pyarrow", "polars", "duckdb"):
        got = report[source]
        assert got["status"] == 0, got
        assert got["input_released"]
        assert got["by_underlying"] == expected["by_underlying"], source
        assert got["by_strike"] == expected["by_strike"], source
    levels = report["levels"]
    assert levels["status"] == 0, levels
    assert levels["got"] == levels["expected"]
    assert levels["profile"] == levels["expected_profile"]
    assert levels["by_strike"] == levels["expected_by_strike"]
    assert len(levels["by_strike"]) > 10


# ---- the Python side without C: options parsing and the raw kernels ----------------------


def test_parse_extra():
    parsed = _embedded.parse_extra(
        "rate=0.05; dividend_yield=SPX:0.01,NDX:0.02\nviews=all,ex_next_expiry;buckets=default",
        levels=False,
    )
    assert parsed == {
        "rate": 0.05,
        "dividend_yield": {"SPX": 0.01, "NDX": 0.02},
        "views": ("all", "ex_next_expiry"),
        "buckets": "default",
    }
    levels = _embedded.parse_extra(
        "n_levels=11;level_range=0.9,1.1;walls_relative_to_spot=true", levels=True
    )
    assert levels == {"n_levels": 11, "level_range": (0.9, 1.1), "walls_relative_to_spot": True}
    for bad in ("nokey", "colour=red", "walls_relative_to_spot=maybe", "rate=x"):
        with pytest.raises(ValueError):
            _embedded.parse_extra(bad, levels=True)


_finite = st.floats(min_value=1e-3, max_value=5.0, allow_nan=False)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.floats(min_value=20.0, max_value=300.0),
            st.floats(min_value=0.03, max_value=1.5),
            _finite,
            st.floats(min_value=0.0, max_value=1e5),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    ),
    convention=st.integers(0, 2),
    unit=st.integers(0, 2),
)
def test_raw_kernels_match_reference(rows, convention, unit):
    spot, multiplier = 100.0, 50.0
    strike, vol, time, quantity, calls = (np.array(column) for column in zip(*rows, strict=True))
    flags = calls.astype(np.int8)
    gamma = np.empty(strike.size)
    assert _raw.gamma_rows(spot, strike, vol, time, 0.01, 0.02, gamma) == 0
    serial = np.empty(strike.size)
    assert _raw.gamma_rows_serial(spot, strike, vol, time, 0.01, 0.02, serial) == 0
    # Two compiled kernels, so equal to the last bit or two only: separate compilations
    # (and one loaded from Numba's disk cache) may round differently, ~1e-16 per row
    # (docs/reliability.md). Seen in CI: one row 1 ulp apart.
    np.testing.assert_allclose(serial, gamma, rtol=1e-15, atol=0.0)
    exact = [
        reference.bsm_gamma(spot, *values, 0.01, 0.02)
        for values in zip(strike, vol, time, strict=True)
    ]
    # below ~1e-290 the fast exp flushes to zero (as in gex()); physically zero anyway
    np.testing.assert_allclose(gamma, exact, rtol=1e-11, atol=1e-290)
    call_sign, put_sign = _raw.CONVENTION_SIGNS[convention]
    out = np.empty(strike.size)
    total, invalid = _raw.contract_gex(
        spot, strike, vol, time, quantity, flags, multiplier, 0.01, 0.02, convention, unit, out
    )
    expected = [
        reference.contract_gex(
            value, (call_sign if call else put_sign) * oi, multiplier, spot, _raw.UNIT_CODES[unit]
        )
        for value, oi, call in zip(exact, quantity, calls, strict=True)
    ]
    assert invalid == 0
    np.testing.assert_allclose(out, expected, rtol=1e-11, atol=1e-270)
    scale = math.fsum(abs(value) for value in expected)
    assert abs(total - math.fsum(expected)) <= 1e-11 * scale


def test_cfuncs_match_reference_and_reject_bad_input():
    gamma = _raw.gamma_cfunc.ctypes
    black76 = _raw.black76_gamma_cfunc.ctypes
    assert gamma(100.0, 95.0, 0.2, 0.25, 0.01, 0.0) == pytest.approx(
        reference.bsm_gamma(100.0, 95.0, 0.2, 0.25, 0.01, 0.0), rel=1e-12
    )
    assert black76(100.0, 95.0, 0.2, 0.25, 0.01) == pytest.approx(
        reference.black76_gamma(100.0, 95.0, 0.2, 0.25, 0.01), rel=1e-12
    )
    for bad in ((0.0, 95, 0.2, 0.25), (100, -1, 0.2, 0.25), (100, 95, math.nan, 0.25)):
        assert math.isnan(gamma(*bad, 0.0, 0.0))
        assert math.isnan(black76(*bad, 0.0))
    assert math.isnan(gamma(100, 95, 0.2, math.inf, 0.0, 0.0))


def _frozen(*values, dtype=np.float64) -> list[np.ndarray]:
    """Arrays as the C calls pass them (writable views: the specialization init compiled)."""
    return [np.array(value, dtype=dtype) for value in values]


def test_raw_kernels_count_invalid_rows():
    strike, vol, time, quantity = _frozen(
        [100.0, -1.0, 100.0, 100.0, 100.0],
        [0.2, 0.2, math.nan, 0.2, 0.2],
        [0.1, 0.1, 0.1, 0.0, 0.1],
        [10.0, 10.0, 10.0, 10.0, math.inf],
    )
    (flags,) = _frozen([1, 1, 1, 1, 1], dtype=np.int8)
    gamma = np.empty(5)
    assert _raw.gamma_rows(100.0, strike, vol, time, 0.0, 0.0, gamma) == 3
    assert _raw.gamma_rows_serial(100.0, strike, vol, time, 0.0, 0.0, np.empty(5)) == 3
    assert np.isnan(gamma[1:4]).all() and np.isfinite(gamma[[0, 4]]).all()
    out = np.empty(5)
    total, invalid = _raw.contract_gex(
        100.0, strike, vol, time, quantity, flags, 1.0, 0.0, 0.0, 0, 0, out
    )
    assert invalid == 4
    assert total == out[0] and math.isfinite(total) and total < 0  # a call, dealers short
    assert (out[1:] == 0.0).all()
    (bad_flags,) = _frozen([1, 2, -1, 0, 1], dtype=np.int8)
    strikes, good, quantity = _frozen([100.0] * 5, [0.2] * 5, [10.0] * 5)
    total, invalid = _raw.contract_gex(
        100.0, strikes, good, good, quantity, bad_flags, 1.0, 0.0, 0.0, 0, 0, out
    )
    assert invalid == 2 and out[1] == out[2] == 0.0


# ---- Python interchange: Arrow PyCapsule objects in, Arrow tables out --------------------


class _StreamOnly:
    """Exposes nothing but ``__arrow_c_stream__`` (like a nanoarrow stream)."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)


class _ArrayOnly:
    """Exposes nothing but ``__arrow_c_array__`` (one record batch)."""

    def __init__(self, table: pa.Table) -> None:
        self._batch = table.combine_chunks().to_batches()[0]

    def __arrow_c_array__(self, requested_schema=None):
        return self._batch.__arrow_c_array__(requested_schema)


@pytest.fixture(scope="module")
def interchange_chain() -> pa.Table:
    from fastgex.sample import sample_chain

    return sample_chain(underlying="SPX", spot=4700.0, seed=5)


def _sources(table: pa.Table) -> dict:
    import duckdb
    import polars as pl

    return {
        "polars": pl.from_arrow(table),
        "duckdb": duckdb.from_arrow(table),
        "reader": table.to_reader(),
        "stream_only": _StreamOnly(table),
        "array_only": _ArrayOnly(table),
    }


def test_gex_levels_profile_accept_arrow_capsule_objects(interchange_chain):
    expected_gex = fastgex.gex(interchange_chain)
    expected_levels = fastgex.levels(interchange_chain, n_levels=11)
    expected_profile = fastgex.profile(interchange_chain, n_levels=11)
    for name, source in _sources(interchange_chain).items():
        got = fastgex.gex(source)
        assert got.by_underlying.equals(expected_gex.by_underlying), name
        assert got.by_strike.equals(expected_gex.by_strike), name
    for name, source in _sources(interchange_chain).items():
        assert fastgex.levels(source, n_levels=11).levels.equals(expected_levels.levels), name
    for name, source in _sources(interchange_chain).items():
        got_profile = fastgex.profile(source, n_levels=11)
        assert got_profile.table.equals(expected_profile.table), name


def test_spot_as_a_polars_frame(interchange_chain):
    import polars as pl

    spots = pl.DataFrame({"underlying": ["SPX"], "spot": [4650.0]})
    got = fastgex.gex(interchange_chain, spot=spots).total("SPX")
    assert got == fastgex.gex(interchange_chain, spot=4650.0).total("SPX")


def test_results_export_through_the_capsule_interface(interchange_chain):
    import duckdb
    import polars as pl

    result = fastgex.gex(interchange_chain)
    levels = fastgex.levels(interchange_chain, n_levels=11)
    for table in (result.by_underlying, result.by_strike, result.dropped, levels.levels):
        assert hasattr(table, "__arrow_c_stream__")
        assert pa.RecordBatchReader.from_stream(table).read_all().equals(table)
    frame = pl.DataFrame(result.by_strike)  # polars reads __arrow_c_stream__
    assert frame["net_gex"].to_list() == result.by_strike.column("net_gex").to_pylist()
    connection = duckdb.connect()
    connection.register("by_underlying", result.by_underlying)
    (total,) = connection.execute("select sum(total_gex) from by_underlying").fetchone()
    assert total == pytest.approx(result.total(), rel=1e-12)
