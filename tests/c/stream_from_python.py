"""Drive libfastgex from Python through ctypes: chains streamed over the Arrow C stream.

Run by tests/test_capi.py in a fresh interpreter (``python stream_from_python.py LIB``).
The chains come from pyarrow, polars and DuckDB, exported through their
``__arrow_c_stream__``; the results are imported back and printed as JSON together with
``fastgex.gex`` / ``fastgex.levels`` on the same chains, for the test to compare.
"""

from __future__ import annotations

import ctypes
import json
import sys

import duckdb
import polars as pl
import pyarrow as pa
from pyarrow.cffi import ffi

import fastgex
from fastgex.sample import sample_chain


class Options(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint32),
        ("convention", ctypes.c_int32),
        ("unit", ctypes.c_int32),
        ("gamma_source", ctypes.c_int32),
        ("spot", ctypes.c_double),
        ("snapshot_time_ns", ctypes.c_int64),
        ("extra", ctypes.c_char_p),
    ]


def main(library_path: str) -> None:
    library = ctypes.CDLL(library_path)
    library.fastgex_last_error.restype = ctypes.c_char_p
    status = library.fastgex_init()
    if status != 0:
        raise SystemExit(f"init {status}: {library.fastgex_last_error().decode()}")

    def address(struct) -> ctypes.c_void_p:
        return ctypes.c_void_p(int(ffi.cast("uintptr_t", struct)))

    def call_gex(source, options) -> tuple[int, dict]:
        chain = ffi.new("struct ArrowArrayStream*")
        pa.RecordBatchReader.from_stream(source)._export_to_c(int(ffi.cast("uintptr_t", chain)))
        totals = ffi.new("struct ArrowArrayStream*")
        strikes = ffi.new("struct ArrowArrayStream*")
        status = library.fastgex_gex(
            address(chain), ctypes.byref(options), address(totals), address(strikes), None
        )
        if status != 0:
            return status, {"error": library.fastgex_last_error().decode()}
        by_underlying = pa.RecordBatchReader._import_from_c(int(ffi.cast("uintptr_t", totals)))
        by_strike = pa.RecordBatchReader._import_from_c(int(ffi.cast("uintptr_t", strikes)))
        return status, {
            "by_underlying": by_underlying.read_all().to_pylist(),
            "by_strike": by_strike.read_all().to_pylist(),
            "input_released": chain.release == ffi.NULL,
        }

    chain = sample_chain(underlying="SPX", spot=4700.0, seed=3)
    options = Options(1, 1, 0, 0, float("nan"), -(2**63), None)
    expected = fastgex.gex(chain, convention="long_calls_short_puts")
    report: dict = {
        "expected": {
            "by_underlying": expected.by_underlying.to_pylist(),
            "by_strike": expected.by_strike.to_pylist(),
        }
    }
    sources = {
        "pyarrow": chain,
        "polars": pl.from_arrow(chain),
        "duckdb": duckdb.from_arrow(chain),
    }
    for name, source in sources.items():
        status, result = call_gex(source, options)
        report[name] = {"status": status, **result}

    levels_options = Options(1, 0, 0, 0, float("nan"), -(2**63), b"n_levels=21")
    stream = ffi.new("struct ArrowArrayStream*")
    chain.__arrow_c_stream__  # noqa: B018 (the protocol the test is about)
    pa.RecordBatchReader.from_stream(chain)._export_to_c(int(ffi.cast("uintptr_t", stream)))
    levels_out = ffi.new("struct ArrowArrayStream*")
    strikes_out = ffi.new("struct ArrowArrayStream*")
    profile_out = ffi.new("struct ArrowArrayStream*")
    status = library.fastgex_levels(
        address(stream), ctypes.byref(levels_options), address(levels_out),
        address(strikes_out), address(profile_out),
    )  # fmt: skip
    report["levels"] = {"status": status}
    if status == 0:
        levels_table = pa.RecordBatchReader._import_from_c(int(ffi.cast("uintptr_t", levels_out)))
        profile = pa.RecordBatchReader._import_from_c(int(ffi.cast("uintptr_t", profile_out)))
        strikes = pa.RecordBatchReader._import_from_c(int(ffi.cast("uintptr_t", strikes_out)))
        expected_levels = fastgex.levels(chain, n_levels=21)
        report["levels"].update(
            got=levels_table.read_all().to_pylist(),
            expected=expected_levels.levels.to_pylist(),
            profile=profile.read_all().to_pylist(),
            expected_profile=expected_levels.profile.to_pylist(),
            by_strike=strikes.read_all().to_pylist(),
            expected_by_strike=expected_levels.by_strike.to_pylist(),
        )
    else:
        report["levels"]["error"] = library.fastgex_last_error().decode()
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
