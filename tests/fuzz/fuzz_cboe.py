"""Atheris harness: the CBOE delayed-quote CSV / JSON reader (fastgex.io.cboe.read_cboe).

Run: ``python tests/fuzz/fuzz_cboe.py -atheris_runs=20000`` (or ``-max_total_time=120``).
Bytes go to :func:`fastgex.io.read_cboe` as they are (format sniffed from the content),
seeded with a small valid CSV and JSON file. Each input must give a table with the CBOE
schema or a clear error; a table that reads then goes through :func:`fastgex.gex`.
"""

from __future__ import annotations

import io
import sys

import fastgex

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fuzzlib import CBOE_CSV, CBOE_JSON, check_gex_result, instrumented, is_clear_error

_symbols, _cboe = instrumented("fastgex.io.symbols", "fastgex.io.cboe")
CBOE_SCHEMA, read_cboe = _cboe.CBOE_SCHEMA, _cboe.read_cboe


def test_one_input(data: bytes) -> None:
    try:
        table = read_cboe(io.BytesIO(data))
    except Exception as error:
        if is_clear_error(error):
            return
        raise
    assert table.schema.names == CBOE_SCHEMA.names, table.schema
    try:
        result = fastgex.gex(table)
    except Exception as error:
        if is_clear_error(error):
            return
        raise
    check_gex_result(result, table.num_rows)


if __name__ == "__main__":
    from fuzzlib import run_atheris

    run_atheris(test_one_input, [CBOE_CSV, CBOE_JSON], "cboe")
