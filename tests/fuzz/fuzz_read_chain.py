"""Atheris harness: corrupted CSV, JSON, Parquet and Arrow IPC bytes through read_chain and gex.

Run: ``python tests/fuzz/fuzz_read_chain.py -atheris_runs=20000`` (or
``-max_total_time=120``). The first input byte picks the file suffix (so the format
``read_chain`` sniffs); the rest is the file. Seeds: a valid file of each format
(tests/fuzz/fuzzlib.py). Each input must read and give finite, fully accounted totals,
or raise a clear error (fastgex.ChainError or a plain ValueError with a message).
"""

from __future__ import annotations

import sys
import tempfile

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fuzzlib import SUFFIXES, instrumented, read_bytes, seed_files

# the readers read_chain dispatches to, instrumented (imported lazily by read_chain)
instrumented("fastgex.io.symbols", "fastgex.io.cboe", "fastgex.io.deribit")
(_chain,) = instrumented("fastgex._chain")

DIRECTORY = tempfile.mkdtemp(prefix="fastgex-fuzz-read-")

SUFFIX_OF = {"csv": ".csv", "json": ".json", "parquet": ".parquet", "arrow": ".arrow",
             "arrows": ".arrows"}  # fmt: skip


def test_one_input(data: bytes) -> None:
    if not data:
        return
    read_bytes(data[1:], SUFFIXES[data[0] % len(SUFFIXES)], DIRECTORY, _chain.read_chain)


def seeds() -> list[bytes]:
    found = []
    for name, content in seed_files().items():
        suffix = SUFFIX_OF[name.rsplit(".", 1)[1]]
        found.append(bytes([SUFFIXES.index(suffix)]) + content)
    return found


if __name__ == "__main__":
    from fuzzlib import run_atheris

    run_atheris(test_one_input, seeds(), "read_chain")
