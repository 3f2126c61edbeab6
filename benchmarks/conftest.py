"""Shared inputs and a same-run ratio report for the benchmarks.

Speed targets are ratios measured in one run (ours vs a baseline, ours vs the memory
bandwidth of this machine), never absolute timings: shared machines drift 2x.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numba
import numpy as np
import pytest

# fastgex first: its JIT policy picks the vector width when Numba's CPU target is set
# up, which the first njit decoration (the baselines below) would otherwise do.
import fastgex._jit  # noqa: F401

RATIOS: list[dict] = []


def best_of(function, repeat: int = 5) -> float:
    """Best wall time of ``repeat`` calls (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def interleaved_best(functions: dict, repeat: int = 5) -> dict:
    """Best wall time of each function, calling them in turn ``repeat`` times (after a warm-up).

    For ratios between calls on a noisy machine: a slow spell slows every call in it,
    where back-to-back ``best_of`` runs can put it on one side only.
    """
    for function in functions.values():
        function()
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeat):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def ours_and_bound(ours, bound, repeat: int = 30) -> tuple[float, float]:
    """Best wall times of a kernel and of its bound, called in turn ``repeat`` times each.

    For the same-run ratios: on a shared machine whose speed drifts within seconds, a
    slow spell then slows both sides, where the best of a benchmark's many rounds
    against the best of a few bound calls taken afterwards moved GEX's fraction of the
    bandwidth bound from 0.35 to 0.55 between runs of the same code.
    """
    best = interleaved_best({"ours": ours, "bound": bound}, repeat=repeat)
    return best["ours"], best["bound"]


def record(name: str, **values) -> None:
    """Keep a ratio line for the end-of-run summary (and benchmarks/last_ratios.json)."""
    RATIOS.append({"name": name, **values})


@numba.njit(parallel=True, cache=True)
def bandwidth_read(strike, vol, time_to_expiry, quantity, option_code, underlying_id):
    """Read every input byte once (the memory-bandwidth ceiling for the GEX kernel)."""
    total = 0.0
    for row in numba.prange(strike.size):
        total += (
            strike[row] + vol[row] + time_to_expiry[row] + quantity[row]
            + option_code[row] + underlying_id[row]
        )  # fmt: skip
    return total


def kernel_inputs(n_rows: int, n_underlyings: int, seed: int = 0) -> dict:
    """Valid kernel arrays, sorted by underlying like real whole-market tables."""
    rng = np.random.default_rng(seed)
    spot = rng.lognormal(4.0, 1.0, n_underlyings)
    underlying_id = np.sort(rng.integers(0, n_underlyings, n_rows)).astype(np.int32)
    moneyness = rng.lognormal(0.0, 0.15, n_rows)
    arrays = {
        "strike": spot[underlying_id] * moneyness,
        "vol": rng.uniform(0.08, 0.9, n_rows),
        "time_to_expiry": rng.uniform(1 / 365, 2.0, n_rows),
        "quantity": rng.integers(0, 5000, n_rows).astype(np.float64),
        "option_code": (rng.random(n_rows) < 0.5).astype(np.uint8),
        "underlying_id": underlying_id,
    }
    for value in arrays.values():
        value.flags.writeable = False  # Arrow buffers arrive read-only
    return {"arrays": arrays, "spot": spot, "n_underlyings": n_underlyings}


def pytest_terminal_summary(terminalreporter):
    if not RATIOS:
        return
    terminalreporter.section("fastgex same-run ratios")
    for entry in RATIOS:
        fields = ", ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in entry.items()
            if key != "name"
        )
        terminalreporter.write_line(f"{entry['name']}: {fields}")
    out = Path(__file__).with_name("last_ratios.json")
    payload = {
        "threads": numba.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "ratios": RATIOS,
    }
    out.write_text(json.dumps(payload, indent=2))


@pytest.fixture(scope="session")
def threads() -> int:
    return numba.get_num_threads()
