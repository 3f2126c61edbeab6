"""Invariants of ``fastgex.gex`` that hold for any valid chain (hypothesis, derandomized).

Tolerances: sums of values of one sign (call or put parts under the default convention)
are compared at 1e-12 relative; a total that adds parts of both signs is compared at
1e-12 of the sum of the parts' magnitudes, since no summation order can promise more
when the parts cancel.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fastgex
from fastgex import gex
from fastgex.reference import bsm_gamma

RTOL = 1e-12
#: fast_exp flushes results below exp(-708) to zero (documented); the reference keeps
#: subnormals. With spot >= 1, vol >= 0.01 and T >= 1 hour the flushed gamma is < 1e-303.
GAMMA_ABS_TOL = 1e-300

SPOTS = {"A": 100.0, "B": 7.25, "C": 4700.0, "D": 0.9, "E": 123456.0}
STRIKE_RATIOS = (0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 2.0)

fixed = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow],
)
#: For tests that call ``gex`` several times per example.
fewer = settings(fixed, max_examples=15)


# ------------------------------------------------------------------- strategies


@st.composite
def chains(draw, underlyings=("A",), min_rows=1, max_rows=40):
    """A valid chain: repeated strikes from a small grid, calls and puts, whole OI."""
    n = draw(st.integers(min_value=min_rows, max_value=max_rows))
    names = draw(st.lists(st.sampled_from(underlyings), min_size=n, max_size=n))
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(STRIKE_RATIOS),
                st.sampled_from(["C", "P"]),
                st.integers(min_value=0, max_value=200_000),
                st.floats(min_value=0.05, max_value=1.5),
                st.floats(min_value=1.0 / 365.0, max_value=3.0),
            ),
            min_size=n,
            max_size=n,
        )
    )
    return pa.table(
        {
            "underlying": pa.array(names, pa.string()),
            "strike": pa.array(
                [round(SPOTS[u] * r[0], 4) for u, r in zip(names, rows, strict=True)], pa.float64()
            ),
            "option_type": pa.array([r[1] for r in rows], pa.string()),
            "open_interest": pa.array([float(r[2]) for r in rows], pa.float64()),
            "implied_vol": pa.array([r[3] for r in rows], pa.float64()),
            "time_to_expiry": pa.array([r[4] for r in rows], pa.float64()),
            "spot": pa.array([SPOTS[u] for u in names], pa.float64()),
        }
    )


def _scale(row: dict) -> float:
    return abs(row["call_gex"]) + abs(row["put_gex"])


def _close(actual: float, expected: float, scale: float, rtol: float = RTOL) -> bool:
    return abs(actual - expected) <= rtol * max(abs(expected), scale)


def assert_parts_close(actual: dict, expected: dict, factor: float = 1.0) -> None:
    """call/put parts at ``rtol``; the signed total at ``rtol`` of the parts' sizes."""
    for name in ("call_gex", "put_gex"):
        assert math.isclose(actual[name], expected[name] * factor, rel_tol=RTOL, abs_tol=0.0), (
            name, actual[name], expected[name] * factor,
        )  # fmt: skip
    assert _close(
        actual["total_gex"], expected["total_gex"] * factor, _scale(expected) * abs(factor)
    )


def by_name(result: fastgex.GexResult) -> dict:
    return {row["underlying"]: row for row in result.by_underlying.to_pylist()}


def by_key(result: fastgex.GexResult) -> dict:
    return {(row["underlying"], row["strike"]): row for row in result.by_strike.to_pylist()}


def assert_results_close(actual: fastgex.GexResult, expected: fastgex.GexResult, factor=1.0):
    got, want = by_name(actual), by_name(expected)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name]["contracts"] == want[name]["contracts"]
        assert_parts_close(got[name], want[name], factor)
    got_strikes, want_strikes = by_key(actual), by_key(expected)
    assert got_strikes.keys() == want_strikes.keys()
    for key, row in want_strikes.items():
        other = got_strikes[key]
        assert other["contracts"] == row["contracts"]
        for name in ("call_gex", "put_gex"):
            assert math.isclose(other[name], row[name] * factor, rel_tol=RTOL, abs_tol=0.0), key
        assert _close(other["net_gex"], row["net_gex"] * factor, _scale(row) * abs(factor)), key


def totals_bits(result: fastgex.GexResult) -> tuple:
    """Every float of the aggregate tables, as exact bit patterns."""
    floats = []
    for table in (result.by_underlying, result.by_strike):
        for name in table.column_names:
            if pa.types.is_floating(table.schema.field(name).type):
                floats.append(table.column(name).to_numpy().tobytes())
    return tuple(floats)


# ------------------------------------------------------------------- model gamma


@settings(fixed, max_examples=60)
@given(
    spot=st.floats(min_value=1.0, max_value=1e5),
    contracts=st.lists(
        st.tuples(
            st.floats(min_value=0.2, max_value=5.0),  # strike / spot
            st.floats(min_value=0.01, max_value=3.0),  # vol
            st.floats(min_value=1.0 / (365.0 * 24.0), max_value=5.0),  # years
        ),
        min_size=1,
        max_size=8,
    ),
    rate=st.floats(min_value=-0.02, max_value=0.1),
    dividend=st.floats(min_value=0.0, max_value=0.05),
)
def test_model_gamma_matches_reference_and_put_equals_call(spot, contracts, rate, dividend):
    strikes = [spot * ratio for ratio, _, _ in contracts]
    vols = [vol for _, vol, _ in contracts]
    times = [time for _, _, time in contracts]
    table = pa.table(
        {
            "underlying": ["X"] * (2 * len(contracts)),
            "strike": strikes + strikes,
            "option_type": ["C"] * len(contracts) + ["P"] * len(contracts),
            "open_interest": [1.0] * (2 * len(contracts)),
            "implied_vol": vols + vols,
            "time_to_expiry": times + times,
        }
    )
    result = gex(table, spot=spot, rate=rate, dividend_yield=dividend, per_contract=True)
    gamma = result.per_contract.column("gamma").to_pylist()
    calls, puts = gamma[: len(contracts)], gamma[len(contracts) :]
    assert calls == puts  # exactly: same inputs, same formula
    for value, strike, vol, time in zip(calls, strikes, vols, times, strict=True):
        expected = bsm_gamma(spot, strike, vol, time, rate, dividend)
        assert math.isclose(value, expected, rel_tol=RTOL, abs_tol=GAMMA_ABS_TOL), (
            value, expected, spot, strike, vol, time, rate, dividend,
        )  # fmt: skip


@fixed
@given(table=chains(underlyings=("A", "B")))
def test_per_contract_gex_is_signed_oi_times_gamma(table):
    result = gex(table, per_contract=True, unit="dollars_per_1pct")
    contracts = result.per_contract.to_pylist()
    spots = {name: SPOTS[name] for name in ("A", "B")}
    source = table.to_pylist()
    for row, contract in zip(source, contracts, strict=True):
        sign = -1.0 if row["option_type"] == "C" else 1.0
        spot = spots[row["underlying"]]
        expected = sign * row["open_interest"] * 100.0 * contract["gamma"] * spot * spot * 0.01
        assert contract["drop_reason"] is None
        assert math.isclose(contract["gex"], expected, rel_tol=RTOL, abs_tol=0.0)


def _precise_bsm_gamma(spot, strike, vol, years):
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(50):
        spot, strike, vol, years = (mpmath.mpf(v) for v in (spot, strike, vol, years))
        vol_sqrt_time = vol * mpmath.sqrt(years)
        d1 = (mpmath.log(spot / strike) + vol * vol * years / 2) / vol_sqrt_time
        density = mpmath.exp(-d1 * d1 / 2) / mpmath.sqrt(2 * mpmath.pi)
        return float(density / (spot * vol_sqrt_time))


def test_per_contract_gamma_below_default_floor():
    """Below the one-minute floor, gamma and gex use the floored time consistently."""
    table = pa.table(
        {
            "underlying": ["A", "A"], "strike": [100.0, 101.0], "option_type": ["C", "P"],
            "open_interest": [10.0, 10.0], "implied_vol": [0.2, 0.2],
            "time_to_expiry": [1e-9, 1e-9],
        }
    )  # fmt: skip
    result = gex(table, spot=100.0, per_contract=True, unit="shares_per_dollar")
    floor = fastgex._gex.DEFAULT_MIN_TIME_TO_EXPIRY
    for contract, sign in zip(result.per_contract.to_pylist(), (-1.0, 1.0), strict=True):
        # d1 is about -36 for the 101 strike, which magnifies any rounding of d1 about
        # 1300x in gamma: a math-based gamma is itself ~1e-12 off there, so the oracle
        # is a 50-digit mpmath evaluation.
        expected_gamma = _precise_bsm_gamma(100.0, contract["strike"], 0.2, floor)
        assert math.isclose(contract["gamma"], expected_gamma, rel_tol=RTOL)
        assert math.isclose(contract["gex"], sign * 10.0 * 100.0 * contract["gamma"], rel_tol=RTOL)


def test_per_contract_gamma_uses_the_callers_time_floor():
    table = pa.table(
        {
            "underlying": ["A", "A"], "strike": [100.0, 101.0], "option_type": ["C", "P"],
            "open_interest": [10.0, 10.0], "implied_vol": [0.2, 0.2],
            "time_to_expiry": [1e-4, 1e-4],
        }
    )  # fmt: skip
    floor = 0.01
    result = gex(
        table, spot=100.0, per_contract=True, unit="shares_per_dollar", min_time_to_expiry=floor
    )
    for contract, sign in zip(result.per_contract.to_pylist(), (-1.0, 1.0), strict=True):
        assert math.isclose(contract["gex"], sign * 10.0 * 100.0 * contract["gamma"], rel_tol=RTOL)
        expected_gamma = bsm_gamma(100.0, contract["strike"], 0.2, floor)
        assert math.isclose(contract["gamma"], expected_gamma, rel_tol=RTOL)


# ------------------------------------------------------------------- linearity, signs, units


@fixed
@given(table=chains(underlyings=("A", "B", "C")), k=st.integers(min_value=2, max_value=50))
def test_gex_is_linear_in_open_interest(table, k):
    base = gex(table)
    oi = pc.multiply(table.column("open_interest"), float(k))
    scaled = gex(table.set_column(3, "open_interest", oi))
    assert_results_close(scaled, base, factor=float(k))


#: Found by CI: calls cancel puts closely enough that the default convention takes the
#: exact pass for the net total while short_all does not; the sides must still match.
_NEAR_FLIP = pa.table(
    {
        "underlying": ["A"] * 8,
        "strike": [50.0, 50, 80, 80, 80, 80, 90, 105],
        "option_type": ["C", "P", "C", "C", "P", "P", "C", "P"],
        "open_interest": [0.0, 77, 9889, 23717, 1, 14081, 10677, 51100],
        "implied_vol": [1.0, 1, 1, 0.25, 1, 1, 0.125, 0.5],
        "time_to_expiry": [1.0, 1, 0.5, 2, 1, 1, 1, 1],
        "spot": [100.0] * 8,
    }
)


@fewer
@given(table=chains(underlyings=("A", "B")))
@example(table=_NEAR_FLIP)
def test_conventions_flip_signs_exactly(table):
    default = gex(table, convention="short_calls_long_puts")
    flipped = gex(table, convention="long_calls_short_puts")
    short_all = gex(table, convention="short_all")
    for name, row in by_name(default).items():
        other = by_name(flipped)[name]
        assert other["total_gex"] == -row["total_gex"]
        assert other["call_gex"] == -row["call_gex"]
        assert other["put_gex"] == -row["put_gex"]
        both_short = by_name(short_all)[name]
        assert both_short["call_gex"] == row["call_gex"]
        assert both_short["put_gex"] == -row["put_gex"]
        assert row["call_gex"] <= 0.0 <= row["put_gex"]
    for key, row in by_key(default).items():
        other = by_key(flipped)[key]
        assert other["call_gex"] == -row["call_gex"]
        assert other["put_gex"] == -row["put_gex"]
        assert other["net_gex"] == -row["net_gex"]
        both_short = by_key(short_all)[key]
        assert both_short["call_gex"] == row["call_gex"]
        assert both_short["put_gex"] == -row["put_gex"]
    assert flipped.convention is fastgex.Convention.LONG_CALLS_SHORT_PUTS


@fewer
@given(table=chains(underlyings=("A", "B", "C", "D", "E")))
def test_units_scale_by_spot(table):
    shares = gex(table, unit="shares_per_dollar")
    per_point = gex(table, unit="dollars_per_point")
    per_pct = gex(table, unit="dollars_per_1pct")
    units_pct = gex(table, unit="units_per_1pct")
    for name, row in by_name(shares).items():
        spot = SPOTS[name]
        assert_parts_close(by_name(per_point)[name], row, factor=spot)
        assert_parts_close(by_name(per_pct)[name], row, factor=spot * spot * 0.01)
        assert_parts_close(by_name(units_pct)[name], row, factor=spot * 0.01)
    for key, row in by_key(shares).items():
        spot = SPOTS[key[0]]
        for name in ("call_gex", "put_gex"):
            assert math.isclose(by_key(per_point)[key][name], row[name] * spot, rel_tol=RTOL)
            assert math.isclose(
                by_key(per_pct)[key][name], row[name] * spot * spot * 0.01, rel_tol=RTOL
            )
    assert per_pct.unit is fastgex.Unit.DOLLARS_PER_1PCT


# ------------------------------------------------------------------- layout of the input


@fixed
@given(data=st.data(), table=chains(underlyings=("A", "B", "C"), min_rows=2))
def test_row_order_does_not_matter(data, table):
    order = data.draw(st.permutations(range(table.num_rows)))
    shuffled = table.take(pa.array(order, pa.int64()))
    assert_results_close(gex(shuffled), gex(table))


def test_row_order_large_random_chain():
    """Several strips and mixed underlyings (fast and careful kernel paths)."""
    rng = np.random.default_rng(3)
    n = 20_000
    names = rng.choice(list(SPOTS), n)
    table = pa.table(
        {
            "underlying": names,
            "strike": [
                round(SPOTS[u] * r, 4)
                for u, r in zip(names, rng.choice(STRIKE_RATIOS, n), strict=True)
            ],
            "option_type": rng.choice(["C", "P"], n),
            "open_interest": rng.integers(0, 100_000, n).astype(float),
            "implied_vol": rng.uniform(0.05, 1.5, n),
            "time_to_expiry": rng.uniform(1 / 365, 3, n),
            "spot": [SPOTS[u] for u in names],
        }
    )
    sorted_table = table.sort_by([("underlying", "ascending"), ("strike", "ascending")])
    shuffled = table.take(pa.array(rng.permutation(n)))
    base = gex(table)
    assert_results_close(gex(sorted_table), base)
    assert_results_close(gex(shuffled), base)


def test_per_strike_sums_are_compensated():
    """Exactly representable values: 1e16 and 1000 x 1 in puts, 1e16 in calls -> net 1000."""
    n = 1002
    open_interest = [1e16] + [1.0] * 1000 + [1e16]
    option_type = ["P"] * 1001 + ["C"]
    table = pa.table(
        {
            "underlying": ["A"] * n, "strike": [100.0] * n, "option_type": option_type,
            "open_interest": open_interest, "gamma": [1.0] * n, "multiplier": [1.0] * n,
        }
    )  # fmt: skip
    exact = math.fsum([1e16, *[1.0] * 1000, -1e16])
    assert exact == 1000.0
    for chain in (table, table.take(pa.array(np.arange(n)[::-1]))):
        result = gex(chain, spot=100.0, gamma_source="column", unit="shares_per_dollar")
        (row,) = result.by_strike.to_pylist()
        assert row["put_gex"] == 1e16 + 1000.0
        assert row["net_gex"] == exact
        assert row["cumulative_net_gex"] == exact


def test_strip_sums_enter_totals_compensated():
    strips = 100
    open_interest = np.zeros(512 * (strips + 1))  # STRIP_ROWS = 512
    open_interest[0] = 1e16
    open_interest[512::512] = 1.0
    n = open_interest.size
    table = pa.table(
        {
            "underlying": ["A"] * n, "strike": [100.0] * n, "option_type": ["P"] * n,
            "open_interest": open_interest, "gamma": np.ones(n), "multiplier": np.ones(n),
        }
    )  # fmt: skip
    result = gex(table, spot=100.0, gamma_source="column", unit="shares_per_dollar")
    assert result.by_underlying.column("put_gex").to_pylist() == [1e16 + strips]


@fewer
@given(table=chains(underlyings=("A", "B", "C"), min_rows=1), chunks=st.integers(1, 7))
def test_chunked_input(table, chunks):
    size = max(1, -(-table.num_rows // chunks))
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=size))
    assert chunked.column("strike").num_chunks == -(-table.num_rows // size)
    assert_results_close(gex(chunked), gex(table))


def test_chunked_columns_with_different_boundaries():
    rng = np.random.default_rng(11)
    n = 3000
    names = rng.choice(["A", "B"], n)
    columns = {
        "underlying": names.tolist(),
        "strike": [SPOTS[u] * r for u, r in zip(names, rng.choice(STRIKE_RATIOS, n), strict=True)],
        "option_type": rng.choice(["C", "P"], n).tolist(),
        "open_interest": rng.integers(0, 5000, n).astype(float).tolist(),
        "implied_vol": rng.uniform(0.1, 0.9, n).tolist(),
        "time_to_expiry": rng.uniform(0.01, 2.0, n).tolist(),
        "spot": [SPOTS[u] for u in names],
    }
    plain = pa.table(columns)
    ragged = {}
    for index, (name, values) in enumerate(columns.items()):
        cut = 1 + 397 * (index + 1) % (n - 1)
        ragged[name] = pa.chunked_array([values[:cut], values[cut:]])
    ragged_table = pa.table(ragged)
    assert_results_close(gex(ragged_table), gex(plain))


def test_pandas_source_read_only_data():
    pandas = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    n = 2000
    names = rng.choice(["A", "C"], n)
    strikes = np.array([SPOTS[u] for u in names]) * rng.choice(STRIKE_RATIOS, n)
    frame = pandas.DataFrame(
        {
            "underlying": names,
            "strike": strikes,
            "option_type": rng.choice(["C", "P"], n),
            "open_interest": rng.integers(0, 5000, n).astype(float),
            "implied_vol": rng.uniform(0.1, 0.9, n),
            "time_to_expiry": rng.uniform(0.01, 2.0, n),
            "spot": [SPOTS[u] for u in names],
        }
    )
    base = gex(pa.Table.from_pandas(frame, preserve_index=False))
    assert_results_close(gex(frame), base)
    arrays = {}
    for name in frame.columns:
        array = np.array(frame[name])
        array.flags.writeable = False
        arrays[name] = pa.array(array)
    read_only = pa.table(arrays)
    assert_results_close(gex(read_only), base)


# ------------------------------------------------------------------- determinism


def _big_chain(n=150_000) -> pa.Table:
    """More rows than one kernel block (65536), so several blocks run in parallel."""
    rng = np.random.default_rng(17)
    names = np.sort(rng.choice(["A", "B", "C"], n))
    return pa.table(
        {
            "underlying": names,
            "strike": np.array([SPOTS[u] for u in names]) * rng.choice(STRIKE_RATIOS, n),
            "option_type": rng.choice(["C", "P"], n),
            "open_interest": rng.integers(0, 100_000, n).astype(float),
            "implied_vol": rng.uniform(0.05, 1.5, n),
            "time_to_expiry": rng.uniform(1 / 365, 3, n),
            "spot": [SPOTS[u] for u in names],
        }
    )


@fewer
@given(table=chains(underlyings=("A", "B", "C")))
def test_same_call_twice_is_bitwise_identical(table):
    assert totals_bits(gex(table)) == totals_bits(gex(table))


def test_thread_count_does_not_change_bits():
    table = _big_chain()
    default_threads = numba.get_num_threads()
    first = gex(table)
    try:
        numba.set_num_threads(1)
        single = gex(table)
    finally:
        numba.set_num_threads(default_threads)
    again = gex(table)
    assert numba.get_num_threads() == default_threads
    assert totals_bits(single) == totals_bits(first)
    assert totals_bits(again) == totals_bits(first)
    assert first.by_underlying.column("contracts").to_pylist() == [
        int(count)
        for count in np.unique(table.column("underlying").to_numpy(), return_counts=True)[1]
    ]


# ------------------------------------------------------------------- per-strike table


@fixed
@given(table=chains(underlyings=("A", "B", "C")))
def test_cumulative_is_running_sum_of_net(table):
    result = gex(table)
    totals = by_name(result)
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in result.by_strike.to_pylist():
        groups[row["underlying"]].append(row)
    assert list(groups) == sorted(groups)  # underlyings in order, each one contiguous
    assert set(groups) == set(totals)
    for name, rows in groups.items():
        strikes = [row["strike"] for row in rows]
        assert strikes == sorted(strikes) and len(set(strikes)) == len(strikes)
        running, magnitude = [], 0.0
        for row in rows:
            assert row["net_gex"] == row["call_gex"] + row["put_gex"]
            running.append(row["net_gex"])
            magnitude += abs(row["call_gex"]) + abs(row["put_gex"])
            assert _close(row["cumulative_net_gex"], math.fsum(running), magnitude)
        total = totals[name]
        assert _close(rows[-1]["cumulative_net_gex"], total["total_gex"], _scale(total))
        assert sum(row["contracts"] for row in rows) == total["contracts"]
        assert math.isclose(
            math.fsum(row["call_gex"] for row in rows), total["call_gex"], rel_tol=RTOL, abs_tol=0.0
        )
        assert math.isclose(
            math.fsum(row["put_gex"] for row in rows), total["put_gex"], rel_tol=RTOL, abs_tol=0.0
        )


# ------------------------------------------------------------------- many underlyings


@fewer
@given(table=chains(underlyings=tuple(SPOTS), max_rows=60))
def test_each_underlying_as_if_alone(table):
    together = gex(table)
    names = sorted(set(table.column("underlying").to_pylist()))
    assert together.by_underlying.column("underlying").to_pylist() == names
    for name in names:
        alone = gex(table.filter(pc.equal(table["underlying"], name)))
        assert_parts_close(by_name(together)[name], by_name(alone)[name])
        assert by_name(together)[name]["contracts"] == by_name(alone)[name]["contracts"]
        assert together.total(name) == by_name(together)[name]["total_gex"]
        mine = {key: row for key, row in by_key(together).items() if key[0] == name}
        assert mine.keys() == by_key(alone).keys()
        for key, row in by_key(alone).items():
            for column in ("call_gex", "put_gex"):
                assert math.isclose(mine[key][column], row[column], rel_tol=RTOL, abs_tol=0.0)


def test_many_underlyings_interleaved_large():
    rng = np.random.default_rng(23)
    n = 12_000
    names = rng.choice(list(SPOTS), n)  # interleaved: every strip mixes underlyings
    table = pa.table(
        {
            "underlying": names,
            "strike": np.array([SPOTS[u] for u in names]) * rng.choice(STRIKE_RATIOS, n),
            "option_type": rng.choice(["C", "P"], n),
            "open_interest": rng.integers(0, 100_000, n).astype(float),
            "implied_vol": rng.uniform(0.05, 1.5, n),
            "time_to_expiry": rng.uniform(1 / 365, 3, n),
        }
    )
    together = gex(table, spot=SPOTS)
    for name in SPOTS:
        alone = gex(table.filter(pc.equal(table["underlying"], name)), spot=SPOTS[name])
        assert_parts_close(by_name(together)[name], by_name(alone)[name])
    assert math.isclose(
        together.total(), math.fsum(row["total_gex"] for row in together.by_underlying.to_pylist())
    )
