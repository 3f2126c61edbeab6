"""Chain-taking public calls read polars and DuckDB objects (Arrow C stream) like pyarrow."""

from __future__ import annotations

import pyarrow as pa
import pytest

import fastgex
from fastgex.sample import sample_chain

polars = pytest.importorskip("polars", reason="polars is in the test extra")
duckdb = pytest.importorskip("duckdb", reason="duckdb is in the test extra")

CALLS = {
    "read_chain": lambda chain: fastgex.read_chain(chain),
    "greeks": lambda chain: fastgex.greeks(chain).table,
    "exposures": lambda chain: fastgex.exposures(chain, kind="vex").by_underlying,
    "hedge_flow": lambda chain: fastgex.hedge_flow(chain).flows,
}


@pytest.fixture(scope="module")
def chain():
    return sample_chain("SPX", 4700.0, seed=7).slice(0, 400)


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("library", ["polars", "duckdb"])
def test_arrow_stream_objects_give_the_pyarrow_result(chain, call, library):
    source = polars.from_arrow(chain) if library == "polars" else duckdb.arrow(chain)
    expected = CALLS[call](chain)
    got = CALLS[call](source)
    # Same process, same kernels: the very same numbers (types may differ in the string
    # and timestamp flavours the other library hands over).
    assert got.num_rows == expected.num_rows
    compared = 0
    for name in expected.column_names:
        if name in got.column_names and expected.column(name).type.equals(got.column(name).type):
            assert got.column(name).equals(expected.column(name)), (call, library, name)
            compared += pa.types.is_floating(expected.column(name).type)
    assert compared >= 1  # the numbers themselves were compared
