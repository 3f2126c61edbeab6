"""C ABI fuzz driver: random chains through libfastgex's fastgex_gex, against fastgex.gex.

Run: ``python tests/fuzz/fuzz_capi.py LIBFASTGEX.so N [FIRST_SEED]`` (build the library
with ``python -m fastgex.capi build --out DIR``). Each seed's chain (fuzzlib.random_table)
goes over the Arrow C stream; the status must be FASTGEX_OK with the Python API's totals
when ``fastgex.gex`` succeeds, and FASTGEX_ERROR_CHAIN / _INVALID_ROWS / _INVALID_ARGUMENT
(with a message) when it raises a clear error. FASTGEX_ERROR_INTERNAL, a crash or a
mismatch is a bug. Prints one JSON summary line.
"""

from __future__ import annotations

import ctypes
import json
import math
import sys

import numpy as np
import pyarrow as pa
from pyarrow.cffi import ffi

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import fuzzlib

import fastgex

CONVENTIONS = ("short_calls_long_puts", "long_calls_short_puts", "short_all")
UNITS = ("dollars_per_1pct", "dollars_per_point", "shares_per_dollar")


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


def _close(got: pa.Table, expected: pa.Table) -> bool:
    """Same rows; totals equal to 1e-12 of their magnitude (rounding may differ)."""
    if got.num_rows != expected.num_rows or got.column("underlying") != expected.column(
        "underlying"
    ):
        return False
    for name in ("total_gex", "call_gex", "put_gex"):
        for a, b in zip(
            got.column(name).to_pylist(), expected.column(name).to_pylist(), strict=True
        ):
            if not math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300):
                return False
    return got.column("contracts").equals(expected.column("contracts"))


def main(library_path: str, n: int, first: int = 0) -> dict:
    library = ctypes.CDLL(library_path)
    library.fastgex_last_error.restype = ctypes.c_char_p
    assert library.fastgex_init() == 0, library.fastgex_last_error()

    def address(struct) -> ctypes.c_void_p:
        return ctypes.c_void_p(int(ffi.cast("uintptr_t", struct)))

    counts = {"ok": 0, "clear_error": 0, "arrow_error": [], "mismatch": [], "internal": []}
    for seed in range(first, first + n):
        rng = np.random.default_rng(seed)
        table = fuzzlib.random_table(rng)
        convention, unit = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        spot = float(rng.choice([math.nan, 100.0, 0.0, -1.0, 1e-310]))
        kwargs = {"convention": CONVENTIONS[convention], "unit": UNITS[unit]}
        if not math.isnan(spot):
            kwargs["spot"] = spot
        try:
            expected = fastgex.gex(table, **kwargs).by_underlying
        except Exception as error:
            expected = error
        stream = ffi.new("struct ArrowArrayStream*")
        pa.RecordBatchReader.from_batches(table.schema, table.to_batches())._export_to_c(
            int(ffi.cast("uintptr_t", stream))
        )
        totals = ffi.new("struct ArrowArrayStream*")
        options = Options(1, convention, unit, 0, spot, -(2**63), None)
        status = library.fastgex_gex(
            address(stream), ctypes.byref(options), address(totals), None, None
        )
        message = (library.fastgex_last_error() or b"").decode()
        if status == 8:
            counts["internal"].append((seed, message[:300]))
        elif status == 0:
            reader = pa.RecordBatchReader._import_from_c(int(ffi.cast("uintptr_t", totals)))
            got = reader.read_all()
            same = isinstance(expected, pa.Table) and _close(got, expected)
            finite = all(math.isfinite(value) for value in got.column("total_gex").to_pylist())
            if same and finite:
                counts["ok"] += 1
            else:
                counts["mismatch"].append((seed, 0, repr(expected)[:200]))
        elif status == 4 and "spot must be" in message:  # the C options check spot first
            counts["clear_error"] += 1
        elif status == 5:  # Arrow import failed: a clear status, but Python read the chain
            counts["arrow_error"].append((seed, message[:200]))
        elif (
            status in (4, 6, 7)
            and message
            and isinstance(expected, Exception)
            and fuzzlib.is_clear_error(expected)
        ):
            counts["clear_error"] += 1
        else:
            counts["mismatch"].append((seed, status, message[:200], repr(expected)[:200]))
    return counts


if __name__ == "__main__":
    arguments = sys.argv[1:]
    report = main(arguments[0], int(arguments[1]), int(arguments[2]) if len(arguments) > 2 else 0)
    print(json.dumps(report))
