"""Shared fixtures: where the real chains are, and small canonical chains."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

# fastgex before any test module decorates its own Numba function: its JIT policy picks
# the vector width when Numba's CPU target is first set up (docs: methodology).
import fastgex._jit  # noqa: F401

#: Real chains live beside the project (``../shared/data/chains``); never copied in.
CHAINS_DIR = Path(
    os.environ.get(
        "FASTGEX_CHAINS_DIR",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chains",
    )
)


@pytest.fixture(scope="session")
def chains_dir() -> Path:
    """The real-chain folder; tests using it skip with a clear reason when it is absent."""
    if not CHAINS_DIR.is_dir():
        pytest.skip(f"real chains not found at {CHAINS_DIR} (set FASTGEX_CHAINS_DIR)")
    return CHAINS_DIR


def random_contracts(count: int, seed: int) -> dict[str, np.ndarray]:
    """Canonical columns of ``count`` seeded contracts around a spot of 100 (no underlying).

    Strikes log-normal around 100, vols 3%-200%, one day to five years, calls and puts
    half and half, open interest 1-4,999.
    """
    rng = np.random.default_rng(seed)
    strike = 100.0 * np.exp(rng.normal(0.0, 0.35, count))
    vol = rng.uniform(0.03, 2.0, count)
    years = np.exp(rng.uniform(math.log(1 / 365), math.log(5.0), count))
    is_call = rng.random(count) < 0.5
    return {
        "strike": strike,
        "option_type": np.where(is_call, "C", "P"),
        "implied_vol": vol,
        "time_to_expiry": years,
        "open_interest": rng.integers(1, 5_000, count).astype(np.float64),
    }


def one_run_and_alone(columns: dict, spot: float = 100.0) -> tuple[pa.Table, pa.Table]:
    """The same contracts as one underlying's run, and each as an underlying of its own.

    For the tests that a row's values do not depend on its place in a run: the first
    table's rows go through a kernel's vectorized loop, the second's through its scalar
    remainder. The second carries its spot per row; give the first ``spot`` in the call.
    """
    count = len(columns["strike"])
    together = pa.table({"underlying": ["U"] * count, **columns})
    alone = pa.table(
        {"underlying": [f"U{row}" for row in range(count)], "spot": np.full(count, spot),
         **columns}
    )  # fmt: skip
    return together, alone


def assert_tables_close(actual, expected, rel: float = 1e-12, label: str = "") -> None:
    """Same schema and rows; float columns equal to ``rel`` of the column's largest value.

    For results computed in different processes: a kernel compiled in this process and the
    same kernel loaded from Numba's on-disk cache can round differently (last bits, ~1e-16
    per row), so results across processes are equal to rounding, not bit for bit.
    """
    import numpy as np
    import pyarrow as pa

    assert actual.schema.remove_metadata() == expected.schema.remove_metadata(), label
    assert actual.num_rows == expected.num_rows, label
    for name in expected.column_names:
        got, want = actual.column(name), expected.column(name)
        if pa.types.is_floating(want.type):
            got_values = got.to_numpy(zero_copy_only=False)
            want_values = want.to_numpy(zero_copy_only=False)
            assert np.array_equal(np.isnan(got_values), np.isnan(want_values)), (label, name)
            finite = np.isfinite(want_values)
            scale = float(np.max(np.abs(want_values[finite]))) if finite.any() else 0.0
            np.testing.assert_allclose(
                got_values[finite], want_values[finite], rtol=0, atol=rel * scale,
                err_msg=f"{label} {name}",
            )  # fmt: skip
        else:
            assert got.equals(want), (label, name)


# ---- libfastgex (the C ABI), built once per session for tests/test_capi.py and test_fuzz.py

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples" / "embedding"
C_TESTS = Path(__file__).resolve().parent / "c"

WARNINGS = ("-Wall", "-Wextra", "-Werror")


def _why_no_build() -> str | None:
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "no C compiler (gcc/cc) on PATH"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return f"no Python.h in {sysconfig.get_paths()['include']}"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return "this Python has no shared libpython to embed"
    return None


def _run(command, *, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def capi(tmp_path_factory) -> dict[str, Path]:
    """Build the library once; compile the example and test programs against it."""
    reason = _why_no_build()
    if reason:
        pytest.skip(reason)
    prefix = tmp_path_factory.mktemp("libfastgex")
    built = _run([sys.executable, "-m", "fastgex.capi", "build", "--out", prefix])
    assert built.returncode == 0, built.stderr
    compiler = shutil.which("gcc") or shutil.which("cc")
    flags = [
        f"-I{prefix / 'include'}",
        f"-I{EXAMPLES}",
        f"-L{prefix / 'lib'}",
        f"-Wl,-rpath,{prefix / 'lib'}",
    ]
    programs = {"prefix": prefix}
    for name, source in {
        "gex_example": EXAMPLES / "gex_example.c",
        "capi_test": C_TESTS / "capi_test.c",
    }.items():
        target = prefix / name
        compiled = _run(
            [compiler, *WARNINGS, source, *flags, "-lfastgex", "-lpthread", "-lm", "-o", target]
        )
        assert compiled.returncode == 0, compiled.stderr
        programs[name] = target
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is not None:
        target = prefix / "levels_example"
        source = EXAMPLES / "levels_example.cpp"
        compiled = _run([cxx, "-std=c++17", *WARNINGS, source, *flags, "-lfastgex", "-o", target])
        assert compiled.returncode == 0, compiled.stderr
        programs["levels_example"] = target
    return programs
