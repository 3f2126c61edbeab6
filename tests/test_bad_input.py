"""Bad input gets a clear error or a counted, reported drop: never a crash, a hang or a NaN.

Every drop reason is exercised alone and mixed with valid rows. A result with dropped
rows must equal the result of the same chain with those rows removed beforehand, its
``dropped`` table must name exactly the bad rows (per underlying and reason), and
``contracts + dropped`` must account for every input row.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastgex
from fastgex import ChainError, InvalidRowsError, gex
from fastgex._chain import ALIASES
from fastgex._kernel_common import REASONS

NAN = math.nan
INF = math.inf
SPOTS = {"A": 100.0, "B": 250.0}
RTOL = 1e-12

FLOAT_COLUMNS = (
    "strike", "open_interest", "implied_vol", "time_to_expiry", "spot",
    "multiplier", "rate", "dividend_yield", "forward", "gamma",
)  # fmt: skip
STRING_COLUMNS = ("underlying", "option_type")
BASE_COLUMNS = (
    "underlying", "strike", "option_type", "open_interest", "implied_vol", "time_to_expiry", "spot",
)  # fmt: skip

fuzz_settings = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
)


# ------------------------------------------------------------------- helpers


def build(rows: list[dict], extra: tuple[str, ...] = ()) -> pa.Table:
    """A chain with explicit types: float64 numbers (NaN kept as NaN), None as null."""
    names = [*BASE_COLUMNS, *extra]
    data = {}
    for name in names:
        values = [row.get(name) for row in rows]
        kind = pa.string() if name in STRING_COLUMNS else pa.float64()
        data[name] = pa.array(values, type=kind)
    return pa.table(data)


def valid_rows(extra: tuple[str, ...] = ()) -> list[dict]:
    """Twelve valid rows: A and B, three strikes each, a call and a put per strike.

    Optional columns get values that vary from row to row, so they stay per-row
    columns after bad rows are filtered away (same kernel configuration both sides).
    """
    rows = []
    for underlying, spot in SPOTS.items():
        for index, ratio in enumerate((0.9, 1.0, 1.1)):
            for option_type in ("C", "P"):
                row = {
                    "underlying": underlying,
                    "strike": round(spot * ratio, 2),
                    "option_type": option_type,
                    "open_interest": float(100 + 37 * index + (option_type == "P") * 11),
                    "implied_vol": 0.18 + 0.03 * index,
                    "time_to_expiry": 0.05 + 0.1 * index,
                    "spot": spot,
                }
                if "multiplier" in extra:
                    row["multiplier"] = 100.0 if index % 2 == 0 else 10.0
                if "rate" in extra:
                    row["rate"] = 0.01 + 0.005 * index
                if "dividend_yield" in extra:
                    row["dividend_yield"] = 0.002 * index
                if "forward" in extra:
                    row["forward"] = spot * (1.0 + 0.01 * index)
                if "gamma" in extra:
                    row["gamma"] = 0.01 + 0.002 * index
                rows.append(row)
    return rows


def bad_row(underlying: str = "A", strike: float = 777.0, **overrides) -> dict:
    """A row that is valid except for ``overrides``; its strike has no valid row."""
    spot = SPOTS.get(underlying, 100.0)
    row = {
        "underlying": underlying,
        "strike": strike,
        "option_type": "C",
        "open_interest": 50.0,
        "implied_vol": 0.3,
        "time_to_expiry": 0.25,
        "spot": spot,
        "multiplier": 100.0,
        "rate": 0.02,
        "dividend_yield": 0.01,
        "forward": spot,
        "gamma": 0.02,
    }
    row.update(overrides)
    return row


def finite_totals(result: fastgex.GexResult) -> None:
    for name in ("total_gex", "call_gex", "put_gex"):
        values = result.by_underlying.column(name).to_pylist()
        assert all(math.isfinite(value) for value in values), (name, values)
    if result.by_strike is not None:
        for name in ("call_gex", "put_gex", "net_gex", "cumulative_net_gex"):
            values = result.by_strike.column(name).to_pylist()
            assert all(math.isfinite(value) for value in values), (name, values)


def rows_per_underlying(table: pa.Table) -> Counter:
    return Counter(table.column("underlying").to_pylist())


def check_accounting(result: fastgex.GexResult, table: pa.Table) -> None:
    """contracts + dropped == rows, per underlying and overall; dropped table agrees."""
    counts = rows_per_underlying(table)
    by_underlying = {row["underlying"]: row for row in result.by_underlying.to_pylist()}
    for name, row in by_underlying.items():
        assert row["contracts"] + row["dropped"] == counts[name], name
    assert set(by_underlying) == {name for name in counts if name is not None}
    dropped_per = Counter()
    for entry in result.dropped.to_pylist():
        assert entry["count"] > 0
        assert entry["reason"] in REASONS
        dropped_per[entry["underlying"]] += entry["count"]
    for name, row in by_underlying.items():
        assert dropped_per[name] == row["dropped"], name
    contracts = sum(row["contracts"] for row in by_underlying.values())
    assert contracts + result.dropped_count == table.num_rows


def close(actual: float, expected: float, scale: float) -> bool:
    """Relative closeness, measured against ``scale`` (the sum of |parts| of a total)."""
    return abs(actual - expected) <= RTOL * max(abs(expected), scale)


def same_totals(result: fastgex.GexResult, clean: fastgex.GexResult) -> None:
    """Totals of ``result`` equal those of ``clean`` (a run on the filtered chain)."""
    got = {row["underlying"]: row for row in result.by_underlying.to_pylist()}
    want = {row["underlying"]: row for row in clean.by_underlying.to_pylist()}
    for name, row in got.items():
        if name not in want:  # every row of this underlying was bad
            assert row["contracts"] == 0
            assert row["total_gex"] == row["call_gex"] == row["put_gex"] == 0.0
            continue
        reference = want[name]
        scale = abs(reference["call_gex"]) + abs(reference["put_gex"])
        assert row["contracts"] == reference["contracts"]
        assert math.isclose(row["call_gex"], reference["call_gex"], rel_tol=RTOL, abs_tol=0.0)
        assert math.isclose(row["put_gex"], reference["put_gex"], rel_tol=RTOL, abs_tol=0.0)
        assert close(row["total_gex"], reference["total_gex"], scale)
    assert set(want) <= set(got)


def same_strikes(result: fastgex.GexResult, clean: fastgex.GexResult) -> None:
    """The per-strike table has exactly the clean chain's (underlying, strike) rows."""
    got = {(row["underlying"], row["strike"]): row for row in result.by_strike.to_pylist()}
    want = {(row["underlying"], row["strike"]): row for row in clean.by_strike.to_pylist()}
    assert set(got) == set(want)
    for key, row in got.items():
        reference = want[key]
        assert row["contracts"] == reference["contracts"] > 0
        for name in ("call_gex", "put_gex"):
            assert math.isclose(row[name], reference[name], rel_tol=RTOL, abs_tol=0.0), key
        scale = abs(reference["call_gex"]) + abs(reference["put_gex"])
        assert close(row["net_gex"], reference["net_gex"], scale), key


def check_drops(
    table: pa.Table, bad: list[bool], expected: Counter, **options
) -> fastgex.GexResult:
    """Run ``gex`` on ``table`` and on ``table`` minus its ``bad`` rows, and compare."""
    result = gex(table, per_contract=True, **options)
    got = Counter(
        {
            (entry["underlying"], entry["reason"]): entry["count"]
            for entry in result.dropped.to_pylist()
        }
    )
    assert got == expected
    finite_totals(result)
    check_accounting(result, table)
    reasons = result.per_contract.column("drop_reason").to_pylist()
    assert [reason is not None for reason in reasons] == bad
    clean_table = table.filter(pa.array([not flag for flag in bad]))
    clean = gex(clean_table, **options)
    assert clean.dropped_count == 0
    same_totals(result, clean)
    same_strikes(result, clean)
    return result


# One case per way a row can be bad: (id, extra columns, gex options, overrides, reason).
CASES = [
    ("iv_nan", (), {}, {"implied_vol": NAN}, "invalid_implied_vol"),
    ("iv_zero", (), {}, {"implied_vol": 0.0}, "invalid_implied_vol"),
    ("iv_negative", (), {}, {"implied_vol": -0.2}, "invalid_implied_vol"),
    ("iv_inf", (), {}, {"implied_vol": INF}, "invalid_implied_vol"),
    ("strike_zero", (), {}, {"strike": 0.0}, "invalid_strike"),
    ("strike_negative", (), {}, {"strike": -100.0}, "invalid_strike"),
    ("strike_nan", (), {}, {"strike": NAN}, "invalid_strike"),
    ("strike_inf", (), {}, {"strike": INF}, "invalid_strike"),
    ("oi_negative", (), {}, {"open_interest": -5.0}, "negative_open_interest"),
    ("oi_nan", (), {}, {"open_interest": NAN}, "missing_value"),
    ("oi_inf", (), {}, {"open_interest": INF}, "invalid_open_interest"),
    ("null_strike", (), {}, {"strike": None}, "missing_value"),
    ("null_option_type", (), {}, {"option_type": None}, "missing_value"),
    ("null_open_interest", (), {}, {"open_interest": None}, "missing_value"),
    ("null_implied_vol", (), {}, {"implied_vol": None}, "missing_value"),
    ("null_time", (), {}, {"time_to_expiry": None}, "missing_value"),
    ("type_x", (), {}, {"option_type": "X"}, "unknown_option_type"),
    ("type_empty", (), {}, {"option_type": ""}, "unknown_option_type"),
    ("type_straddle", (), {}, {"option_type": "straddle"}, "unknown_option_type"),
    ("expired_zero", (), {}, {"time_to_expiry": 0.0}, "expired"),
    ("expired_negative", (), {}, {"time_to_expiry": -0.1}, "expired"),
    ("time_nan", (), {}, {"time_to_expiry": NAN}, "invalid_time_to_expiry"),
    ("time_inf", (), {}, {"time_to_expiry": INF}, "invalid_time_to_expiry"),
    ("gamma_negative", ("gamma",), {"gamma_source": "column"}, {"gamma": -0.01}, "invalid_gamma"),
    ("gamma_nan", ("gamma",), {"gamma_source": "column"}, {"gamma": NAN}, "invalid_gamma"),
    ("gamma_null", ("gamma",), {"gamma_source": "column"}, {"gamma": None}, "missing_value"),
    ("multiplier_zero", ("multiplier",), {}, {"multiplier": 0.0}, "invalid_multiplier"),
    ("multiplier_negative", ("multiplier",), {}, {"multiplier": -100.0}, "invalid_multiplier"),
    ("multiplier_nan", ("multiplier",), {}, {"multiplier": NAN}, "invalid_multiplier"),
    ("forward_zero", ("forward",), {}, {"forward": 0.0}, "invalid_forward"),
    ("forward_negative", ("forward",), {}, {"forward": -100.0}, "invalid_forward"),
    ("forward_nan", ("forward",), {}, {"forward": NAN}, "invalid_forward"),
    ("forward_null", ("forward",), {}, {"forward": None}, "missing_value"),
    ("rate_nan", ("rate", "dividend_yield"), {}, {"rate": NAN}, "invalid_rate"),
    ("rate_inf", ("rate", "dividend_yield"), {}, {"rate": INF}, "invalid_rate"),
    ("dividend_nan", ("rate", "dividend_yield"), {}, {"dividend_yield": NAN}, "invalid_rate"),
]


@pytest.mark.parametrize(
    ("extra", "options", "overrides", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_drop_reason_alone(extra, options, overrides, reason):
    rows = valid_rows(extra)
    bad = [bad_row("A", **overrides), bad_row("B", **overrides), bad_row("B", **overrides)]
    table = build(rows + bad, extra)
    flags = [False] * len(rows) + [True] * len(bad)
    result = check_drops(table, flags, Counter({("A", reason): 1, ("B", reason): 2}), **options)
    assert result.by_strike.filter(pc.equal(result.by_strike["strike"], 777.0)).num_rows == 0


def test_only_bad_rows_in_one_underlying():
    rows = valid_rows()
    bad = [bad_row("C", implied_vol=NAN), bad_row("C", strike=-1.0)]
    table = build(rows + bad)
    expected = Counter({("C", "invalid_implied_vol"): 1, ("C", "invalid_strike"): 1})
    result = check_drops(table, [False] * len(rows) + [True, True], expected)
    row = result.by_underlying.filter(pc.equal(result.by_underlying["underlying"], "C")).to_pylist()
    assert row == [
        {"underlying": "C", "spot": 100.0, "total_gex": 0.0, "call_gex": 0.0, "put_gex": 0.0,
         "contracts": 0, "dropped": 2}
    ]  # fmt: skip
    assert "C" not in result.by_strike.column("underlying").to_pylist()


def test_null_underlying_is_a_counted_drop():
    rows = valid_rows()
    table = build([*rows, bad_row(None), bad_row(None, strike=100.0)])
    result = check_drops(
        table, [False] * len(rows) + [True, True], Counter({(None, "missing_value"): 2})
    )
    assert None not in result.by_underlying.column("underlying").to_pylist()
    assert None not in result.by_strike.column("underlying").to_pylist()


def _mixed_rows():
    """Valid rows interleaved with one bad row of every kind (the last columns' too)."""
    extra = ("multiplier", "rate", "dividend_yield", "forward")
    rows = valid_rows(extra)
    bad_cases = [
        ({"implied_vol": NAN}, "invalid_implied_vol"),
        ({"implied_vol": 0.0}, "invalid_implied_vol"),
        ({"implied_vol": -1.0}, "invalid_implied_vol"),
        ({"strike": 0.0}, "invalid_strike"),
        ({"strike": -5.0}, "invalid_strike"),
        ({"strike": NAN}, "invalid_strike"),
        ({"open_interest": -1.0}, "negative_open_interest"),
        ({"open_interest": NAN}, "missing_value"),
        ({"open_interest": INF}, "invalid_open_interest"),
        ({"strike": None}, "missing_value"),
        ({"option_type": None}, "missing_value"),
        ({"open_interest": None}, "missing_value"),
        ({"implied_vol": None}, "missing_value"),
        ({"time_to_expiry": None}, "missing_value"),
        ({"forward": None}, "missing_value"),
        ({"option_type": "X"}, "unknown_option_type"),
        ({"option_type": ""}, "unknown_option_type"),
        ({"option_type": "straddle"}, "unknown_option_type"),
        ({"time_to_expiry": 0.0}, "expired"),
        ({"time_to_expiry": -1.0}, "expired"),
        ({"time_to_expiry": NAN}, "invalid_time_to_expiry"),
        ({"multiplier": 0.0}, "invalid_multiplier"),
        ({"multiplier": -1.0}, "invalid_multiplier"),
        ({"multiplier": NAN}, "invalid_multiplier"),
        ({"forward": 0.0}, "invalid_forward"),
        ({"forward": -1.0}, "invalid_forward"),
        ({"forward": NAN}, "invalid_forward"),
        ({"rate": NAN}, "invalid_rate"),
        ({"dividend_yield": NAN}, "invalid_rate"),
        ({"open_interest": 1e300, "multiplier": 1e300}, "non_finite_result"),
    ]
    table_rows: list[dict] = []
    flags: list[bool] = []
    expected: Counter = Counter()
    for index, (overrides, reason) in enumerate(bad_cases):
        underlying = "AB"[index % 2]
        table_rows.append(bad_row(underlying, **{"strike": 700.0 + index % 3, **overrides}))
        flags.append(True)
        expected[underlying, reason] += 1
        if index % 3 == 2 and rows:  # a valid row after every third bad one
            table_rows.append(rows.pop(0))
            flags.append(False)
    table_rows.extend(rows)
    flags.extend([False] * len(rows))
    return build(table_rows, extra), flags, expected


def test_every_reason_mixed_in_one_chain():
    table, flags, expected = _mixed_rows()
    assert sum(not flag for flag in flags) == 12
    check_drops(table, flags, expected)


def test_mixed_chain_split_in_many_batches():
    table, flags, expected = _mixed_rows()
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=5))
    assert chunked.column("strike").num_chunks > 1
    check_drops(chunked, flags, expected)


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        ("multiplier", "invalid_multiplier"),
        ("rate", "invalid_rate"),
        ("dividend_yield", "invalid_rate"),
    ],
)
def test_nan_in_otherwise_constant_column(column, reason):
    extra = (column,)
    rows = valid_rows(extra)
    for row in rows:
        row[column] = 100.0 if column == "multiplier" else 0.01
    bad = bad_row("A", **{column: NAN})
    table = build([*rows, bad], extra)
    check_drops(table, [False] * len(rows) + [True], Counter({("A", reason): 1}))


def test_bad_rows_in_a_large_sorted_chain():
    """Bad rows inside long single-underlying runs (the vectorized fast path)."""
    rng = np.random.default_rng(7)
    n = 5000
    strikes = np.round(rng.uniform(50, 150, n), 0)
    table = pa.table(
        {
            "underlying": ["A"] * n,
            "strike": strikes,
            "option_type": rng.choice(["C", "P"], n),
            "open_interest": rng.integers(0, 10_000, n).astype(float),
            "implied_vol": rng.uniform(0.1, 0.6, n),
            "time_to_expiry": rng.uniform(0.01, 2.0, n),
            "spot": np.full(n, 100.0),
        }
    )
    positions = [3, 600, 1023, 1024, 4999]
    vol = table.column("implied_vol").to_numpy().copy()
    vol[positions] = np.nan
    table = table.set_column(4, "implied_vol", pa.array(vol))
    flags = [False] * n
    for position in positions:
        flags[position] = True
    check_drops(table, flags, Counter({("A", "invalid_implied_vol"): len(positions)}))


# ------------------------------------------------------------------- on_invalid


def test_on_invalid_raise_names_the_drops():
    rows = valid_rows()
    table = build([*rows, bad_row("A", implied_vol=NAN), bad_row("B", open_interest=-1.0)])
    with pytest.raises(InvalidRowsError) as caught:
        gex(table, on_invalid="raise")
    assert isinstance(caught.value, ChainError)
    dropped = Counter(
        {
            (entry["underlying"], entry["reason"]): entry["count"]
            for entry in caught.value.dropped.to_pylist()
        }
    )
    assert dropped == Counter({("A", "invalid_implied_vol"): 1, ("B", "negative_open_interest"): 1})
    assert "invalid_implied_vol" in str(caught.value)
    assert "2 invalid rows" in str(caught.value)


def test_on_invalid_raise_quiet_when_all_valid():
    table = build(valid_rows())
    result = gex(table, on_invalid="raise")
    assert result.dropped_count == 0
    assert result.by_underlying.column("contracts").to_pylist() == [6, 6]


def test_on_invalid_unknown_value():
    with pytest.raises(ValueError, match="drop"):
        gex(build(valid_rows()), on_invalid="ignore")


# ------------------------------------------------------------------- empty chain


def test_empty_chain():
    table = build([])
    assert table.num_rows == 0
    result = gex(table, per_contract=True)
    assert result.by_underlying.num_rows == 0
    assert result.by_strike.num_rows == 0
    assert result.per_contract.num_rows == 0
    assert result.dropped.num_rows == 0
    assert result.dropped_count == 0
    assert result.total() == 0.0
    assert result.by_underlying.schema == fastgex._gex.BY_UNDERLYING_SCHEMA
    assert result.by_strike.schema == fastgex._gex.BY_STRIKE_SCHEMA


def test_empty_chain_with_scalar_spot():
    table = build([]).drop_columns(["spot"])
    result = gex(table, spot=100.0)
    assert result.by_underlying.num_rows == 0
    assert result.by_strike.num_rows == 0


# ------------------------------------------------------------------- missing / wrong columns


@pytest.mark.parametrize(
    "column", ["underlying", "strike", "option_type", "open_interest", "implied_vol"]
)
def test_missing_required_column(column):
    table = build(valid_rows()).drop_columns([column])
    with pytest.raises(ChainError) as caught:
        gex(table)
    message = str(caught.value)
    assert repr(column) in message
    for alias in ALIASES[column]:
        assert alias in message


def test_missing_time_names_both_ways():
    table = build(valid_rows()).drop_columns(["time_to_expiry"])
    with pytest.raises(ChainError, match="time_to_expiry") as caught:
        gex(table)
    assert "expiration" in str(caught.value)


def test_missing_time_lists_aliases():
    table = build(valid_rows()).drop_columns(["time_to_expiry"])
    with pytest.raises(ChainError) as caught:
        gex(table)
    message = str(caught.value)
    for alias in (*ALIASES["time_to_expiry"], *ALIASES["expiration"]):
        assert alias in message


@pytest.mark.parametrize("column", ["strike", "open_interest", "implied_vol", "time_to_expiry"])
def test_strings_in_numeric_column(column):
    table = build(valid_rows())
    position = table.column_names.index(column)
    text = pa.array([str(value) for value in table.column(column).to_pylist()])
    table = table.set_column(position, column, text)
    with pytest.raises(ChainError) as caught:
        gex(table)
    message = str(caught.value)
    assert repr(column) in message
    assert "string" in message


def test_all_null_numeric_column_is_counted_not_crashing():
    table = build(valid_rows())
    table = table.set_column(4, "implied_vol", pa.nulls(table.num_rows))
    result = gex(table)
    assert result.dropped.to_pylist() == [
        {"underlying": "A", "reason": "missing_value", "count": 6},
        {"underlying": "B", "reason": "missing_value", "count": 6},
    ]
    finite_totals(result)


# ------------------------------------------------------------------- spot


def test_no_spot_at_all():
    table = build(valid_rows()).drop_columns(["spot"])
    with pytest.raises(ChainError, match="spot"):
        gex(table)


def test_spot_mapping_missing_an_underlying():
    table = build(valid_rows()).drop_columns(["spot"])
    with pytest.raises(ChainError, match="'B'"):
        gex(table, spot={"A": 100.0})


def test_scalar_spot_for_two_underlyings():
    table = build(valid_rows()).drop_columns(["spot"])
    with pytest.raises(ChainError, match="mapping"):
        gex(table, spot=100.0)


def test_spot_column_varying_within_an_underlying():
    rows = valid_rows()
    rows[7]["spot"] = 251.0  # an underlying-B row
    with pytest.raises(ChainError, match=r"varies.*'B'"):
        gex(build(rows))


@pytest.mark.parametrize("value", [0.0, -100.0, NAN, INF])
def test_non_positive_spot(value):
    rows = valid_rows()
    for row in rows:
        if row["underlying"] == "A":
            row["spot"] = value
    with pytest.raises(ChainError, match="'A'"):
        gex(build(rows))
    table = build(valid_rows()).drop_columns(["spot"])
    with pytest.raises(ChainError, match="'A'"):
        gex(table, spot={"A": value, "B": 250.0})
    only_a = table.filter(pc.equal(table["underlying"], "A"))
    with pytest.raises(ChainError, match="'A'"):
        gex(only_a, spot=value)


def test_spot_table_argument():
    table = build(valid_rows())
    spots = pa.table({"underlying": ["A", "B"], "spot": [100.0, 250.0]})
    with_column = gex(table)
    with_table = gex(table.drop_columns(["spot"]), spot=spots)
    assert with_table.by_underlying.equals(with_column.by_underlying)


# ------------------------------------------------------------------- overflow and extremes


def test_product_overflow_is_a_counted_drop():
    rows = valid_rows(("multiplier",))
    overflow = bad_row("A", strike=100.0, open_interest=1e300, multiplier=1e300)
    table = build([*rows, overflow], ("multiplier",))
    result = check_drops(
        table, [False] * len(rows) + [True], Counter({("A", "non_finite_result"): 1})
    )
    assert result.per_contract.column("gex").to_pylist()[-1] == 0.0


def test_sum_overflow_never_gives_nan():
    n = 600
    table = pa.table(
        {
            "underlying": ["A"] * n,
            "strike": [100.0] * n,
            "option_type": ["C"] * n,
            "open_interest": [1e305] * n,  # each row about -3.6e305, finite
            "implied_vol": [0.25] * n,
            "time_to_expiry": [0.2] * n,
            "spot": [100.0] * n,
        }
    )
    # Every row is finite but the sum is not: a clear error, never an inf/NaN total.
    with pytest.raises(ChainError, match="overflows float64"):
        gex(table, unit="shares_per_dollar")


def test_extreme_but_valid_inputs():
    rows = []
    for time in (1e-9, 1.0 / 365.0, 1.0, 30.0):
        for vol in (1e-6, 0.2, 20.0):
            for strike in (1e-6, 100.0, 1e9):
                for oi in (1.0, 1e12):
                    for option_type in ("C", "P"):
                        rows.append(
                            {"underlying": "A", "strike": strike, "option_type": option_type,
                             "open_interest": oi, "implied_vol": vol, "time_to_expiry": time,
                             "spot": 100.0}
                        )  # fmt: skip
    table = build(rows)
    for unit in ("dollars_per_1pct", "shares_per_dollar"):
        result = gex(table, per_contract=True, unit=unit)
        finite_totals(result)
        assert result.dropped_count == 0
        assert result.by_underlying.column("contracts").to_pylist() == [len(rows)]
        gamma = result.per_contract.column("gamma").to_numpy()
        assert np.all(np.isfinite(gamma)) and np.all(gamma >= 0.0)
        assert np.all(np.isfinite(result.per_contract.column("gex").to_numpy()))


def test_extreme_rates_are_finite():
    rows = valid_rows(("rate", "dividend_yield"))
    for row, rate in zip(rows, [5.0, -5.0, 50.0, -50.0] * 3, strict=False):
        row["rate"] = rate
        row["dividend_yield"] = -rate
        row["time_to_expiry"] = 30.0
    result = gex(build(rows, ("rate", "dividend_yield")))
    finite_totals(result)
    check_accounting(result, build(rows, ("rate", "dividend_yield")))


# ------------------------------------------------------------------- string encodings


def _recode(table: pa.Table, column: str, array) -> pa.Table:
    return table.set_column(table.column_names.index(column), column, array)


@pytest.mark.parametrize(
    "encoding", ["dictionary", "large_string", "chunked", "chunked_dictionary"]
)
def test_string_encodings(encoding):
    rows = valid_rows()
    rows.append(bad_row("B", option_type="straddle"))
    table = build(rows)
    plain = gex(table, per_contract=True)
    recoded = table
    for column in STRING_COLUMNS:
        values = table.column(column).to_pylist()
        if encoding == "dictionary":
            array = pa.array(values).dictionary_encode()
        elif encoding == "large_string":
            array = pa.array(values, pa.large_string())
        elif encoding == "chunked":
            array = pa.chunked_array([values[:5], values[5:9], values[9:]], pa.string())
        else:  # different dictionaries per chunk
            array = pa.chunked_array(
                [pa.array(values[:5]).dictionary_encode(), pa.array(values[5:]).dictionary_encode()]
            )
        recoded = _recode(recoded, column, array)
    result = gex(recoded, per_contract=True)
    assert result.by_underlying.equals(plain.by_underlying)
    assert result.by_strike.equals(plain.by_strike)
    assert result.dropped.equals(plain.dropped)
    assert (
        result.per_contract.column("gex").to_pylist()
        == plain.per_contract.column("gex").to_pylist()
    )


def test_option_type_spellings():
    rows = valid_rows()
    spellings = {"C": [" call ", "Calls", "c"], "P": ["PUT", "p ", "puts"]}
    for index, row in enumerate(rows):
        row["option_type"] = spellings[row["option_type"]][index % 3]
    assert gex(build(rows)).by_underlying.equals(gex(build(valid_rows())).by_underlying)


# ------------------------------------------------------------------- unknown names


@pytest.mark.parametrize(
    ("option", "valid"),
    [
        ("convention", ["short_calls_long_puts", "long_calls_short_puts", "short_all"]),
        ("unit", ["dollars_per_1pct", "dollars_per_point", "shares_per_dollar"]),
        ("gamma_source", ["model", "column"]),
        ("day_count", ["act365", "bus252", "bus262"]),
    ],
)
def test_unknown_names(option, valid):
    with pytest.raises(ValueError) as caught:
        gex(build(valid_rows()), **{option: "nonsense"})
    message = str(caught.value)
    assert "nonsense" in message
    for name in valid:
        assert name in message


# ------------------------------------------------------------------- fuzz

GARBAGE = [NAN, INF, -INF, -1.0, -0.0, 0.0, None]


# Valid values per column, and the garbage each column may get instead.
FUZZ_COLUMNS = {
    "underlying": (st.sampled_from(["A", "B", "C"]), [None]),
    "option_type": (st.sampled_from(["C", "P"]), ["X", "", "straddle", None]),
    "strike": (st.sampled_from([80.0, 95.0, 100.0, 105.0, 120.0]), GARBAGE),
    "open_interest": (st.integers(0, 100_000).map(float), GARBAGE),
    "implied_vol": (st.floats(0.01, 3.0), GARBAGE),
    "time_to_expiry": (st.floats(1e-6, 5.0), GARBAGE),
    "multiplier": (st.sampled_from([1.0, 10.0, 100.0]), GARBAGE),
    "rate": (st.floats(-0.05, 0.1), GARBAGE),
    "dividend_yield": (st.floats(0.0, 0.1), GARBAGE),
    "forward": (st.floats(1.0, 500.0), GARBAGE),
}


@st.composite
def fuzz_rows(draw, columns):
    """One row: clean half the time, else garbage in a random subset of its columns."""
    dirty = draw(st.booleans())
    row = {}
    for name in columns:
        valid, garbage = FUZZ_COLUMNS[name]
        if dirty and draw(st.integers(0, 3)) == 0:
            row[name] = draw(st.sampled_from(garbage))
        else:
            row[name] = draw(valid)
    return row


@st.composite
def garbage_chains(draw, forward=False):
    columns = [name for name in FUZZ_COLUMNS if forward or name != "forward"]
    rows = draw(st.lists(fuzz_rows(columns), min_size=0, max_size=30))
    data = {}
    for name in columns:
        kind = pa.string() if name in STRING_COLUMNS else pa.float64()
        data[name] = pa.array([row[name] for row in rows], kind)
    return pa.table(data)


@fuzz_settings
@given(table=garbage_chains())
def test_fuzz_garbage_never_breaks_totals(table):
    spot = {"A": 100.0, "B": 7.5, "C": 3000.0}
    result = gex(table, spot=spot, per_contract=True)
    finite_totals(result)
    check_accounting(result, table)
    reasons = result.per_contract.column("drop_reason").to_pylist()
    assert len(reasons) == table.num_rows
    per_reason: Counter = Counter()
    for entry in result.dropped.to_pylist():
        per_reason[entry["reason"]] += entry["count"]
    assert Counter(reason for reason in reasons if reason is not None) == per_reason
    # The valid rows alone give the same totals.
    keep = pa.array([reason is None for reason in reasons], pa.bool_())
    clean = gex(table.filter(keep), spot=spot)
    assert clean.dropped_count == 0
    same_totals(result, clean)
    same_strikes(result, clean)


@fuzz_settings
@given(table=garbage_chains(forward=True))
def test_fuzz_garbage_black76(table):
    result = gex(table)  # Black-76: each row priced on its forward, no spot needed
    finite_totals(result)
    check_accounting(result, table)
