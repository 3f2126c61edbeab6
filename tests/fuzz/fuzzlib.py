"""Shared pieces of the fuzz campaigns (issue 9): the outcome rule, seed files, random chains.

Used by the atheris harnesses next to this file, by the C ABI driver and by
tests/test_fuzz.py. The rule every campaign checks: each input gives a correct result
(finite totals, every row counted or dropped with a reason) or a clear error — a
:class:`fastgex.ChainError` (``InvalidRowsError`` included) or a plain ``ValueError``
raised by fastgex with a message. Anything else (a pyarrow error, ``KeyError``,
``IndexError``, ``UnicodeDecodeError``, a NaN or inf total, a crash or a hang) is a bug.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

import fastgex

# ----------------------------------------------------------------------- the outcome rule


def is_clear_error(error: BaseException) -> bool:
    """A fastgex ChainError, or a plain ValueError (not a subclass such as ArrowInvalid)."""
    clear = isinstance(error, fastgex.ChainError) or type(error) is ValueError
    return clear and bool(str(error).strip())


def check_gex_result(result: fastgex.GexResult, n_rows: int | None = None) -> None:
    """Finite totals and per-strike sums; contracts + dropped accounts for every row."""
    for name in ("total_gex", "call_gex", "put_gex"):
        values = result.by_underlying.column(name).to_pylist()
        assert all(value is not None and math.isfinite(value) for value in values), (name, values)
    if result.by_strike is not None:
        for name in ("call_gex", "put_gex", "net_gex", "cumulative_net_gex"):
            values = result.by_strike.column(name).to_pylist()
            assert all(value is not None and math.isfinite(value) for value in values), name
    if n_rows is not None:
        rows = result.by_underlying.to_pylist()
        counted = sum(row["contracts"] for row in rows)
        assert counted + result.dropped_count == n_rows, (counted, result.dropped_count, n_rows)
        per_underlying = Counter()
        for entry in result.dropped.to_pylist():
            assert entry["count"] > 0 and entry["reason"], entry
            per_underlying[entry["underlying"]] += entry["count"]
        for row in rows:
            assert row["dropped"] == per_underlying[row["underlying"]], row


# ----------------------------------------------------------------------- seed files

CBOE_CSV = b"\n".join(
    [
        b"Standard & Poors 500 Index,Last: 4505.1001,Change:  37.6601",
        (
            b'"Date: September 14, 2023 at 4:31 PM EDT",Bid: 4483.25,Ask: 4526.27,Size: 1*1,'
            b"Volume: 0"
        ),
        (
            b"Expiration Date,Calls,Last Sale,Net,Bid,Ask,Volume,IV,Delta,Gamma,Open Interest,"
            b"Strike,Puts,Last Sale,Net,Bid,Ask,Volume,IV,Delta,Gamma,Open Interest"
        ),
        (
            b"Fri Sep 15 2023,SPXW230915C04400000,0,0,103.1,106.8,0,0.2212,0.95,0.0012,12,"
            b"4400.00,SPXW230915P04400000,0.05,0,0.05,0.1,5,0.2312,-0.05,0.0011,402"
        ),
        (
            b"Fri Sep 15 2023,SPXW230915C04500000,10,0,9.5,10.2,100,0.1412,0.55,0.0101,1200,"
            b"4500.00,SPXW230915P04500000,5.1,0,4.9,5.3,50,0.1512,-0.45,0.0102,900"
        ),
        (
            b"Fri Oct 20 2023,SPX231020C04600000,40,0,39,41,7,0.1312,0.3,0.0021,3000,4600.00,"
            b"SPX231020P04600000,120,0,119,121,3,0.1412,-0.7,0.0020,2000"
        ),
        b"",
    ]
)

CBOE_JSON = json.dumps(
    {
        "timestamp": "2023-09-21 03:17:42",
        "data": {
            "current_price": 1817.49,
            "options": [
                {"option": "RUT231020C01800000", "iv": 0.21, "open_interest": 120.0,
                 "gamma": 0.002, "delta": 0.5, "bid": 40.0, "ask": 41.0},
                {"option": "RUT231020P01700000", "iv": 0.25, "open_interest": 90.0,
                 "gamma": 0.001, "delta": -0.2, "bid": 10.0, "ask": 10.5},
            ],
        },
    }
).encode()  # fmt: skip

DERIBIT_JSON = json.dumps(
    {
        "result": [
            {"instrument_name": "BTC-27DEC24-65000-C", "underlying_price": 64000.0,
             "mark_iv": 55.0, "open_interest": 120.5, "creation_timestamp": 1733000000000,
             "interest_rate": 0.0, "mark_price": 0.05},
            {"instrument_name": "XRP_USDC-30JUN23-0d625-P", "underlying_price": 0.6,
             "mark_iv": 80.0, "open_interest": 1000.0, "creation_timestamp": 1687000000000,
             "interest_rate": 0.0, "mark_price": 0.01},
        ]
    }
).encode()  # fmt: skip


def sample_table(n: int = 24) -> pa.Table:
    """A small valid chain with every common column (the base of the binary seeds)."""
    strikes = np.linspace(80.0, 120.0, n // 2)
    return pa.table(
        {
            "underlying": ["A"] * (n // 2) + ["B"] * (n - n // 2),
            "strike": np.concatenate([strikes, strikes[: n - n // 2] * 2.5]),
            "option_type": ["C", "P"] * (n // 2),
            "open_interest": np.arange(n, dtype=float) * 10.0,
            "implied_vol": np.linspace(0.1, 0.9, n),
            "time_to_expiry": np.linspace(0.001, 2.0, n),
            "spot": [100.0] * (n // 2) + [250.0] * (n - n // 2),
        }
    )


def seed_files() -> dict[str, bytes]:
    """Valid seed inputs, by file suffix-tag (what :func:`read_bytes` takes)."""
    import pyarrow.csv as pacsv
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    table = sample_table()
    seeds: dict[str, bytes] = {"cboe.csv": CBOE_CSV, "cboe.json": CBOE_JSON}
    seeds["deribit.json"] = DERIBIT_JSON
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    seeds["plain.csv"] = sink.getvalue()
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=7)
    seeds["chain.parquet"] = sink.getvalue()
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=9)
    seeds["chain.arrow"] = sink.getvalue()
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=9)
    seeds["stream.arrows"] = sink.getvalue()
    return seeds


#: File suffixes the byte campaigns write, in a fixed order (the selector byte indexes it).
SUFFIXES = (".csv", ".json", ".parquet", ".arrow", ".arrows", ".txt")


def read_bytes(data: bytes, suffix: str, directory: Any, read_chain: Any = None) -> None:
    """Write ``data`` as a ``suffix`` file, read it and run gex on it; check the outcome.

    Raises AssertionError (or the offending exception) when the outcome is not allowed.
    """
    from pathlib import Path

    path = Path(directory) / f"input{suffix}"
    path.write_bytes(data)
    try:
        table = (read_chain or fastgex.read_chain)(path)
    except Exception as error:
        if is_clear_error(error):
            return
        raise
    try:
        result = fastgex.gex(table, spot=100.0 if "spot" not in table.column_names else None)
    except Exception as error:
        if is_clear_error(error):
            return
        raise
    check_gex_result(result, table.num_rows)


# ----------------------------------------------------------------------- random chains

SPECIALS = (0.0, -0.0, -1.0, math.nan, math.inf, -math.inf, 1e-300, 1e308, 5e-324)

#: Extreme but valid ranges (issue 9): low and high end of each numeric column.
RANGES = {
    "time_to_expiry": (1e-9, 100.0),
    "implied_vol": (1e-6, 20.0),
    "strike": (1e-6, 1e9),
    "open_interest": (1e-3, 1e12),
    "spot": (1e-6, 1e9),
    "multiplier": (1e-3, 1e4),
    "rate": (-0.5, 0.5),
    "dividend_yield": (-0.5, 0.5),
    "forward": (1e-6, 1e9),
    "gamma": (1e-12, 1e3),
    "dealer_position": (-1e12, 1e12),
}
NUMERIC = tuple(RANGES)
TEXT = ("underlying", "option_type")
OPTION_TYPES = ("C", "P", "call", "PUT", " c ", "x", "", "straddle")


def _numbers(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    low, high = RANGES[name]
    if low > 0:
        values = np.exp(rng.uniform(math.log(low), math.log(high), n))
    else:
        values = rng.uniform(low, high, n)
    special = rng.random(n) < rng.choice([0.0, 0.05, 0.5])
    values[special] = rng.choice(SPECIALS, int(special.sum()))
    return values


def _mask(rng: np.random.Generator, n: int) -> np.ndarray | None:
    share = rng.choice([0.0, 0.0, 0.1, 0.5, 1.0])
    return None if share == 0.0 else rng.random(n) < share


def _encode_numbers(rng: np.random.Generator, values: np.ndarray) -> pa.Array:
    with np.errstate(all="ignore"):  # float32 overflow and NaN casts are the point
        return _encode_numbers_as(rng, values)


def _encode_numbers_as(rng: np.random.Generator, values: np.ndarray) -> pa.Array:
    mask = _mask(rng, values.size)
    kind = rng.integers(0, 9)
    if kind == 0:
        return pa.array(values.astype(np.float32), mask=mask)
    if kind == 1:
        finite = np.where(np.isfinite(values), values, 0.0)
        return pa.array(np.clip(finite, -(2.0**62), 2.0**62).astype(np.int64), mask=mask)
    if kind == 2:
        finite = np.where(np.isfinite(values), values, 0.0)
        return pa.array(np.clip(finite, -(2.0**31), 2.0**31 - 1).astype(np.int32), mask=mask)
    if kind == 3:  # numbers as text, some not numbers at all
        text = [repr(float(value)) if rng.random() > 0.1 else "n/a" for value in values]
        return pa.array(text, mask=mask)
    if kind == 4:
        return pa.array(values > 0, mask=mask)
    if kind == 5:
        return pa.nulls(values.size)
    if kind == 6:
        return pa.array(values.astype("datetime64[ns]").astype(np.int64), pa.timestamp("ns"))
    return pa.array(values, mask=mask)  # float64, the common case (7, 8)


def _encode_text(rng: np.random.Generator, values: list[str]) -> pa.Array:
    mask = _mask(rng, len(values))
    kind = rng.integers(0, 7)
    plain = pa.array(values, pa.string(), mask=mask)
    if kind == 0:
        return plain.cast(pa.large_string())
    if kind == 1:
        return plain.dictionary_encode()
    if kind == 2:
        return plain.cast(pa.dictionary(pa.int8(), pa.string()))
    if kind == 3:
        return pa.array([value.encode() for value in values], pa.binary(), mask=mask)
    if kind == 4:
        return pa.array(np.arange(len(values)), mask=mask)
    return plain


def _chunked(rng: np.random.Generator, array: pa.Array) -> pa.ChunkedArray:
    n = len(array)
    cuts = sorted(rng.integers(0, n + 1, rng.integers(0, 4))) if n else []
    edges = [0, *cuts, n]
    pieces = [array.slice(start, end - start) for start, end in itertools.pairwise(edges)]
    if pa.types.is_dictionary(array.type) and len(pieces) > 1 and rng.random() < 0.5:
        # a different dictionary per chunk, as readers of many files produce
        pieces = [
            piece.dictionary_decode().dictionary_encode().cast(array.type) for piece in pieces
        ]
    return pa.chunked_array(pieces, array.type)


def random_table(rng: np.random.Generator, max_rows: int = 40) -> pa.Table:
    """A chain with a random schema: columns present or not, any type, nulls, chunks.

    Required columns are present most of the time, so many tables get past the schema
    checks and reach the kernels with extreme values.
    """
    n = int(rng.integers(0, max_rows + 1))
    names = [f"U{index}" for index in range(int(rng.integers(1, 4)))]
    columns: dict[str, pa.ChunkedArray] = {}
    underlying = [str(value) for value in rng.choice(names, n)]
    option_type = [str(value) for value in rng.choice(OPTION_TYPES[:4] * 3 + OPTION_TYPES, n)]
    for name, values in (("underlying", underlying), ("option_type", option_type)):
        if rng.random() < 0.95:
            array = _encode_text(rng, values) if rng.random() < 0.4 else pa.array(values)
            columns[name] = _chunked(rng, array)
    required = ("strike", "open_interest", "implied_vol", "time_to_expiry")
    for name in NUMERIC:
        wanted = 0.95 if name in required else (0.5 if name == "spot" else 0.15)
        if rng.random() >= wanted:
            continue
        values = _numbers(rng, name, n)
        if name == "spot":  # constant per underlying (else a clear error), sometimes <= 0
            per = {u: float(_numbers(rng, "spot", 1)[0]) for u in names}
            values = np.array([per[u] for u in underlying], dtype=float)
        array = _encode_numbers(rng, values) if rng.random() < 0.3 else pa.array(values)
        columns[name] = _chunked(rng, array)
    if rng.random() < 0.1:
        dates = ["2030-01-18", "2024-02-30", "soon", None]
        columns["expiration"] = _chunked(rng, pa.array([dates[i] for i in rng.integers(0, 4, n)]))
    if not columns:
        columns["strike"] = pa.chunked_array([pa.array(np.ones(n))])
    return pa.table(columns)


def gex_options(rng: np.random.Generator, table: pa.Table) -> dict[str, Any]:
    """Random keyword arguments for gex (valid names; spot sometimes absent, 0 or < 0)."""
    options: dict[str, Any] = {
        "convention": str(
            rng.choice(["short_calls_long_puts", "long_calls_short_puts", "short_all"])
        ),
        "unit": str(rng.choice(["dollars_per_1pct", "dollars_per_point", "shares_per_dollar"])),
        "per_contract": bool(rng.random() < 0.5),
    }
    if "gamma" in table.column_names and rng.random() < 0.5:
        options["gamma_source"] = "column"
    if "spot" not in table.column_names or rng.random() < 0.3:
        choice = rng.integers(0, 4)
        if choice == 0:
            options["spot"] = float(rng.choice([100.0, 0.0, -5.0, math.nan, 1e9, 1e-6]))
        elif choice == 1:
            options["spot"] = {
                f"U{index}": float(rng.choice([50.0, 0.0, 1e-6])) for index in range(3)
            }
    if rng.random() < 0.2:
        options["on_invalid"] = "raise"
    return options


# ----------------------------------------------------------------------- atheris driver


def run_atheris(test_one_input: Any, seeds: Any, name: str) -> None:
    """Run an atheris harness with ``sys.argv`` (libFuzzer flags), seeded from ``seeds``.

    Without a corpus folder on the command line the seeds are written to a temporary one.
    At exit it prints ``FUZZ <name> inputs=<n>`` (libFuzzer prints its own run count).
    """
    import atexit
    import sys
    import tempfile
    from pathlib import Path

    import atheris

    counter = {"inputs": 0}

    def counted(data: bytes) -> None:
        counter["inputs"] += 1
        test_one_input(data)

    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix=f"fastgex-fuzz-{name}-"))
        for index, seed in enumerate(seeds):
            (corpus / f"seed{index}").write_bytes(seed)
        argv.append(str(corpus))
    atexit.register(lambda: print(f"FUZZ {name} inputs={counter['inputs']}", flush=True))
    atheris.Setup(argv, counted)
    atheris.Fuzz()


def instrumented(*names: str) -> list[Any]:
    """Fresh copies of the pure-Python modules ``names``, with atheris coverage hooks.

    fastgex itself is imported first, uninstrumented: the Numba kernels compile from
    Python bytecode and must not see the hooks. Each named module is then imported
    again (a new module object, in ``names`` order) inside ``atheris.instrument_imports``.
    """
    import importlib
    import sys

    import atheris

    import fastgex  # noqa: F401 (the kernels, uninstrumented)

    for name in names:
        sys.modules.pop(name, None)
    with atheris.instrument_imports():
        modules = [importlib.import_module(name) for name in names]
    return modules
