"""Shared fixtures: where the real chains are, and small canonical chains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
