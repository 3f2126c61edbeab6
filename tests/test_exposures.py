"""Dealer exposures (DEX/GEX/VEX/CEX/vega) and hedge flow for moves, against plain Python.

The references are per-row loops over :mod:`fastgex.reference_greeks` (closed forms in
``math``), summed with ``math.fsum``. Tolerances: 1e-10 relative on totals (the kernel's
vectorized exp/log agree with ``math`` to a few ulp per row; sums are compensated).
"""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastgex
from conftest import one_run_and_alone, random_contracts
from fastgex import EXPOSURE_UNITS, ExposureKind, exposures, hedge_flow
from fastgex import reference_greeks as ref
from fastgex.sample import sample_chain, sample_market

RTOL = 1e-10
fixed = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=15,
    suppress_health_check=[HealthCheck.too_slow],
)

SPOTS = {"AAA": 100.0, "BBB": 4700.0}


def _chain(seed: int = 0, n_rows: int = 60) -> pa.Table:
    rng = np.random.default_rng(seed)
    names = rng.choice(list(SPOTS), n_rows)
    spot = np.array([SPOTS[name] for name in names])
    return pa.table(
        {
            "underlying": names,
            "strike": np.round(spot * rng.choice([0.8, 0.9, 0.95, 1.0, 1.05, 1.2], n_rows), 2),
            "option_type": rng.choice(["C", "P"], n_rows),
            "open_interest": rng.integers(0, 5000, n_rows).astype(float),
            "implied_vol": rng.uniform(0.1, 0.6, n_rows),
            "time_to_expiry": rng.uniform(2.0 / 365, 1.5, n_rows),
            "spot": spot,
        }
    )


def _reference_values(table: pa.Table, kind: str, signs=(-1.0, 1.0), rate=0.01, div=0.02):
    """Per-row exposure in plain Python: ``sign * OI * m * greek * scale``."""
    rows = table.to_pylist()
    out = []
    for row in rows:
        is_call = row["option_type"] == "C"
        price = row["spot"]
        values = ref.bsm_greeks(price, row["strike"], row["implied_vol"], row["time_to_expiry"],
                                rate, div, is_call)  # fmt: skip
        shares = (signs[0] if is_call else signs[1]) * row["open_interest"] * 100.0
        factor = {
            "dex": values["delta"] * price,
            "gex": values["gamma"] * price * price * 0.01,
            "vex": values["vanna"] * 0.01 * price,
            "cex": values["charm"] / 365.0 * price,
            "vega": values["vega"] * 0.01,
        }[kind]
        out.append((row["underlying"], row["strike"], is_call, shares * factor))
    return out


@pytest.mark.parametrize("kind", [kind.value for kind in ExposureKind])
def test_totals_and_strikes_match_plain_python(kind):
    table = _chain(1)
    result = exposures(table, kind=kind, rate=0.01, dividend_yield=0.02)
    expected = _reference_values(table, kind)
    for row in result.by_underlying.to_pylist():
        name = row["underlying"]
        calls = math.fsum(value for u, _, c, value in expected if u == name and c)
        puts = math.fsum(value for u, _, c, value in expected if u == name and not c)
        assert row[f"call_{kind}"] == pytest.approx(calls, rel=RTOL, abs=1e-6)
        assert row[f"put_{kind}"] == pytest.approx(puts, rel=RTOL, abs=1e-6)
        assert row[f"total_{kind}"] == pytest.approx(calls + puts, rel=RTOL, abs=1e-6)
    assert result.unit == EXPOSURE_UNITS[ExposureKind(kind)]
    strikes = result.by_strike.to_pylist()
    for row in strikes:
        net = math.fsum(value for u, k, _, value in expected
                        if u == row["underlying"] and k == row["strike"])  # fmt: skip
        assert row[f"net_{kind}"] == pytest.approx(net, rel=RTOL, abs=1e-6)
    for name in SPOTS:  # cumulative net runs over ascending strikes within an underlying
        mine = [row for row in strikes if row["underlying"] == name]
        assert [row["strike"] for row in mine] == sorted(row["strike"] for row in mine)
        np.testing.assert_allclose(
            [row[f"cumulative_net_{kind}"] for row in mine],
            np.cumsum([row[f"net_{kind}"] for row in mine]),
            rtol=1e-12,
            atol=1e-6,
        )


def test_kind_gex_equals_gex():
    market = sample_market(4000, seed=3)
    mine = exposures(market, kind="gex")
    theirs = fastgex.gex(market)
    assert mine.by_underlying.column_names == theirs.by_underlying.column_names
    assert mine.by_strike.schema.equals(theirs.by_strike.schema)
    for name in ("total_gex", "call_gex", "put_gex"):
        np.testing.assert_allclose(
            mine.by_underlying.column(name).to_numpy(),
            theirs.by_underlying.column(name).to_numpy(),
            rtol=1e-11,
        )
    for name in ("contracts", "dropped", "underlying"):
        assert mine.by_underlying.column(name).equals(theirs.by_underlying.column(name))
    assert mine.by_strike.column("strike").equals(theirs.by_strike.column("strike"))
    scale = np.abs(theirs.by_strike.column("net_gex").to_numpy()).max()
    np.testing.assert_allclose(mine.by_strike.column("net_gex").to_numpy(),
                               theirs.by_strike.column("net_gex").to_numpy(),
                               rtol=1e-10, atol=1e-12 * scale)  # fmt: skip


def _bad_chain() -> pa.Table:
    good = _chain(2, 20).to_pylist()
    bad = [
        {"implied_vol": float("nan")},
        {"implied_vol": -0.2},
        {"open_interest": -5.0},
        {"open_interest": None},
        {"open_interest": float("inf")},
        {"strike": 0.0},
        {"time_to_expiry": -0.1},
        {"time_to_expiry": float("nan")},
        {"option_type": "X"},
        {"option_type": None},
        {"multiplier": 0.0},
        {"multiplier": float("nan")},
        {"open_interest": -1.0, "implied_vol": float("nan")},  # vol is checked first
        {"open_interest": -1.0, "time_to_expiry": -1.0},  # open interest first
        {"multiplier": -1.0, "time_to_expiry": -1.0},  # time first
    ]
    rows = []
    for index, change in enumerate(bad):
        rows.append({**good[index % len(good)], "multiplier": 100.0, **change})
    rows += [{**row, "multiplier": 100.0} for row in good]
    return pa.Table.from_pylist(rows)


@pytest.mark.parametrize("kind", ["dex", "gex", "vex"])
def test_bad_rows_are_counted_like_gex(kind):
    table = _bad_chain()
    result = exposures(table, kind=kind)
    reference = fastgex.gex(table)
    assert result.dropped.sort_by([("underlying", "ascending"), ("reason", "ascending")]).equals(
        reference.dropped.sort_by([("underlying", "ascending"), ("reason", "ascending")])
    )
    assert result.dropped_count == 15
    totals = result.by_underlying.column(f"total_{kind}").to_numpy()
    assert np.isfinite(totals).all()
    clean = exposures(pa.Table.from_pylist(table.to_pylist()[15:]), kind=kind)
    np.testing.assert_allclose(totals, clean.by_underlying.column(f"total_{kind}").to_numpy(),
                               rtol=1e-12)  # fmt: skip
    contracts = exposures(table, kind=kind, per_contract=True).per_contract
    reasons = contracts.column("drop_reason").to_pylist()
    values = contracts.column(kind).to_numpy()
    assert all(
        (reason is None) == np.isfinite(value)
        for reason, value in zip(reasons, values, strict=True)
    )
    with pytest.raises(fastgex.InvalidRowsError):
        exposures(table, kind=kind, on_invalid="raise")


def test_errors_are_clear():
    with pytest.raises(ValueError, match="unknown exposure kind"):
        exposures(_chain(), kind="theta")
    with pytest.raises(fastgex.ChainError, match="spot"):
        exposures(_chain().drop_columns(["spot"]))
    with pytest.raises(ValueError, match="moves"):
        hedge_flow(_chain(), moves=(float("nan"),))
    with pytest.raises(ValueError, match="moves"):
        hedge_flow(_chain(), moves=(-1.5,))
    # Every row finite, their sum not: a clear error, never inf in a total.
    huge = _chain().set_column(3, "open_interest", pa.array(np.full(60, 3e302)))
    with pytest.raises(fastgex.ChainError, match="overflow"):
        exposures(huge, kind="dex")
    # A row whose own exposure overflows is a counted drop.
    one_huge = _chain().set_column(3, "open_interest", pa.array([1e307] + [1.0] * 59))
    result = exposures(one_huge, kind="dex")
    assert result.dropped.to_pylist()[0]["reason"] == "non_finite_result"
    assert result.dropped_count == 1


@fixed
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([0.5, 2.0, 3.0, 10.0]),
       kind=st.sampled_from([kind.value for kind in ExposureKind]))  # fmt: skip
def test_linear_in_open_interest_and_convention_flips_sign(seed, scale, kind):
    table = _chain(seed, 30)
    base = exposures(table, kind=kind, by_strike=False)
    scaled_oi = pa.array(table.column("open_interest").to_numpy() * scale)
    scaled = exposures(table.set_column(3, "open_interest", scaled_oi), kind=kind,
                       by_strike=False)  # fmt: skip
    column = f"total_{kind}"
    np.testing.assert_allclose(scaled.by_underlying.column(column).to_numpy(),
                               scale * base.by_underlying.column(column).to_numpy(),
                               rtol=1e-12, atol=1e-9)  # fmt: skip
    flipped = exposures(table, kind=kind, convention="long_calls_short_puts", by_strike=False)
    np.testing.assert_allclose(
        flipped.by_underlying.column(column).to_numpy(),
        -base.by_underlying.column(column).to_numpy(),
        rtol=1e-15,
    )


def test_dealer_position_ignores_convention():
    table = _chain(4)
    signs = np.where(np.array(table.column("option_type").to_pylist()) == "C", -1.0, 1.0)
    position = table.append_column(
        "dealer_position", pa.array(signs * table.column("open_interest").to_numpy())
    )
    for convention in ("short_calls_long_puts", "long_calls_short_puts", "short_all"):
        mine = exposures(position, kind="dex", convention=convention)
        assert mine.total() == pytest.approx(exposures(table, kind="dex").total(), rel=1e-12)


# ------------------------------------------------------------------------ hedge flow


def test_hedge_flow_matches_exact_delta_change_in_plain_python():
    table = _chain(5)
    moves = (-0.05, -0.01, 0.01, 0.05)
    result = hedge_flow(table, moves, rate=0.01, dividend_yield=0.02)
    rows = table.to_pylist()
    for flow in result.flows.to_pylist():
        name, move = flow["underlying"], flow["move"]
        spot = SPOTS[name]
        moved = spot * (1 + move)
        change, gamma = [], []
        for row in rows:
            if row["underlying"] != name:
                continue
            is_call = row["option_type"] == "C"
            shares = (-1.0 if is_call else 1.0) * row["open_interest"] * 100.0
            args = (row["strike"], row["implied_vol"], row["time_to_expiry"], 0.01, 0.02, is_call)
            before = ref.bsm_greeks(spot, *args)
            after = ref.bsm_greeks(moved, *args)
            change.append(shares * (after["delta"] - before["delta"]))
            gamma.append(shares * before["gamma"])
        exact = -math.fsum(change) * moved
        linear = -math.fsum(gamma) * (moved - spot) * moved
        scale = math.fsum(abs(value) for value in change) * moved
        assert flow["hedge_flow"] == pytest.approx(exact, rel=1e-9, abs=1e-10 * scale)
        assert flow["linear_hedge_flow"] == pytest.approx(linear, rel=1e-10)
        assert flow["moved_spot"] == moved


def test_hedge_flow_tends_to_the_linear_term_for_small_moves():
    chain = sample_chain("SPX", 4700.0, seed=2)
    moves = (-1e-3, -1e-4, 1e-4, 1e-3)
    flows = hedge_flow(chain, moves).flows.to_pylist()
    gaps = {row["move"]: abs(row["hedge_flow"] / row["linear_hedge_flow"] - 1) for row in flows}
    # The convexity gap is first order in the move: 10x smaller move, ~10x smaller gap.
    assert gaps[1e-4] < 0.2 * gaps[1e-3] and gaps[-1e-4] < 0.2 * gaps[-1e-3]
    assert gaps[1e-4] < 0.05


def test_exposures_cli(tmp_path):
    path = tmp_path / "chain.parquet"
    import pyarrow.parquet as pq

    pq.write_table(_chain(6), path)
    out = tmp_path / "strikes.csv"
    done = subprocess.run(
        [sys.executable, "-m", "fastgex", "exposures", str(path), "--kind", "vex", "--json",
         "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    import json

    summary = json.loads(done.stdout)
    expected = exposures(_chain(6), kind="vex")
    assert summary["kind"] == "vex"
    assert [row["total_vex"] for row in summary["underlyings"]] == pytest.approx(
        expected.by_underlying.column("total_vex").to_pylist(), rel=1e-12
    )
    assert out.exists() and "net_vex" in out.read_text().splitlines()[0]


def test_hedge_flow_per_bucket_adds_up_to_the_underlying():
    chain = sample_market(3000, seed=4)
    moves = (-0.01, 0.02)
    edges = {"0-7d": 7, "8-30d": 30, "31d+": math.inf}  # every live expiry in one bucket
    result = hedge_flow(chain, moves, buckets=edges)
    plain = hedge_flow(chain, moves)
    assert result.flows.equals(plain.flows)
    assert set(result.by_bucket.column("bucket").to_pylist()) <= set(edges)
    for row in plain.flows.to_pylist():
        key = (row["underlying"], row["move"])
        parts = [part for part in result.by_bucket.to_pylist()
                 if (part["underlying"], part["move"]) == key]  # fmt: skip
        assert sum(part["contracts"] for part in parts) == row["contracts"]
        total = math.fsum(part["hedge_flow"] for part in parts)
        scale = math.fsum(abs(part["hedge_flow"]) for part in parts)
        assert total == pytest.approx(row["hedge_flow"], rel=1e-9, abs=1e-9 * scale)
        linear = math.fsum(part["linear_hedge_flow"] for part in parts)
        assert linear == pytest.approx(row["linear_hedge_flow"], rel=1e-9, abs=1e-9 * scale)
    with pytest.raises(fastgex.ChainError, match="expiration"):
        hedge_flow(_chain(), moves, buckets="default")


def test_cli_text_and_hedge_flow(tmp_path, capsys):
    import json

    import pyarrow.parquet as pq

    from fastgex.cli import main

    path = tmp_path / "chain.parquet"
    pq.write_table(_chain(7), path)
    assert main(["exposures", str(path), "--kind", "cex"]) == 0
    text = capsys.readouterr().out
    assert "CEX (dollars_delta_per_day" in text and "AAA" in text and "BBB" in text
    assert main(["hedge-flow", str(path), "--moves=-1,2", "--json"]) == 0  # "=": starts with -
    rows = json.loads(capsys.readouterr().out)["flows"]
    expected = hedge_flow(_chain(7), (-0.01, 0.02)).flows.to_pylist()
    assert [(row["underlying"], row["move"]) for row in rows] == [
        (row["underlying"], row["move"]) for row in expected
    ]
    assert [row["hedge_flow"] for row in rows] == pytest.approx(
        [row["hedge_flow"] for row in expected], rel=1e-12
    )
    assert main(["hedge-flow", str(path), "--moves", "x"]) == 2
    assert main(["exposures", str(path), "--gamma-source", "column"]) == 2


def test_black76_rows_use_their_forward():
    table = _chain(8).drop_columns(["spot"])
    rng = np.random.default_rng(8)
    forward = np.array([SPOTS[name] for name in table.column("underlying").to_pylist()])
    forward = forward * rng.uniform(0.98, 1.02, table.num_rows)
    table = table.append_column("forward", pa.array(forward))
    for kind in ("dex", "gex", "vex", "cex", "vega"):
        result = exposures(table, kind=kind, rate=0.03)
        for row in result.by_underlying.to_pylist():
            expected = []
            for item in table.to_pylist():
                if item["underlying"] != row["underlying"]:
                    continue
                is_call = item["option_type"] == "C"
                values = ref.black76_greeks(item["forward"], item["strike"], item["implied_vol"],
                                            item["time_to_expiry"], 0.03, is_call)  # fmt: skip
                price = item["forward"]
                factor = {"dex": values["delta"] * price,
                          "gex": values["gamma"] * price * price * 0.01,
                          "vex": values["vanna"] * 0.01 * price,
                          "cex": values["charm"] / 365.0 * price,
                          "vega": values["vega"] * 0.01}[kind]  # fmt: skip
                expected.append((-1.0 if is_call else 1.0) * item["open_interest"] * 100 * factor)
            assert row[f"total_{kind}"] == pytest.approx(math.fsum(expected), rel=RTOL)
    gex_total = exposures(table, kind="gex", rate=0.03).total()
    assert gex_total == pytest.approx(fastgex.gex(table, rate=0.03).total(), rel=1e-11)
    # Moves shift each forward; with no spot the $ reference is missing: a clear error.
    with pytest.raises(fastgex.ChainError, match="spot"):
        hedge_flow(table)


# ------------------------------------------------------------------ units, buckets, surfaces

SNAPSHOT = dt.datetime(2024, 3, 4, 15, 0, tzinfo=ZoneInfo("America/New_York"))
EXPIRIES = [dt.date(2024, 3, 4), dt.date(2024, 3, 8), dt.date(2024, 3, 15), dt.date(2024, 6, 21),
            dt.date(2025, 6, 20)]  # fmt: skip  # 0dte, weekly, monthly, quarterly, long_dated


def _dated_chain(seed: int, n_rows: int = 80) -> pa.Table:
    """Two underlyings over five expiries, one of each default bucket."""
    table = _chain(seed, n_rows).drop_columns(["time_to_expiry"])
    rng = np.random.default_rng(seed + 1)
    expiration = [EXPIRIES[index] for index in rng.integers(0, len(EXPIRIES), n_rows)]
    return table.append_column("expiration", pa.array(expiration, pa.date32()))


def _years_to(expiry: dt.date) -> float:
    """Plain-Python time to a PM (16:00 New York) settlement, act/365, floored at 1 min."""
    settle = dt.datetime.combine(expiry, dt.time(16, 0), tzinfo=ZoneInfo("America/New_York"))
    # In UTC: Python subtracts datetimes sharing one tzinfo as wall times (DST ignored).
    seconds = settle.astimezone(dt.timezone.utc) - SNAPSHOT.astimezone(dt.timezone.utc)
    return max(seconds.total_seconds() / (365 * 86_400), 60 / (365 * 86_400))


#: Per-kind units written out by hand: (unit, greek, constant, power of the price).
HAND_UNITS = [
    ("dex", "units_delta", "delta", 1.0, 0),
    ("vex", "units_delta_per_vol_point", "vanna", 0.01, 0),
    ("cex", "units_delta_per_day", "charm", 1 / 365, 0),
    ("vega", "dollars_per_vol_point", "vega", 0.01, 0),
    ("gex", "dollars_per_point", "gamma", 1.0, 1),
    ("gex", "shares_per_dollar", "gamma", 1.0, 0),
    ("gex", "units_per_1pct", "gamma", 0.01, 1),
]


@pytest.mark.parametrize(("kind", "unit", "greek", "constant", "power"), HAND_UNITS)
def test_units_match_plain_python(kind, unit, greek, constant, power):
    table = _chain(11)
    result = exposures(table, kind=kind, unit=unit, rate=0.01, dividend_yield=0.02)
    assert result.unit == unit
    for row in result.by_underlying.to_pylist():
        expected = []
        for item in table.to_pylist():
            if item["underlying"] != row["underlying"]:
                continue
            is_call = item["option_type"] == "C"
            values = ref.bsm_greeks(item["spot"], item["strike"], item["implied_vol"],
                                    item["time_to_expiry"], 0.01, 0.02, is_call)  # fmt: skip
            shares = (-1.0 if is_call else 1.0) * item["open_interest"] * 100.0
            expected.append(shares * values[greek] * constant * item["spot"] ** power)
        assert row[f"total_{kind}"] == pytest.approx(math.fsum(expected), rel=RTOL, abs=1e-9)
    if kind == "gex":  # and the same number as gex() in that unit
        assert result.total() == pytest.approx(
            fastgex.gex(table, unit=unit, rate=0.01, dividend_yield=0.02).total(), rel=1e-11
        )


def test_bad_units_name_the_allowed_ones():
    with pytest.raises(ValueError, match=r"not a unit of vega exposure.*dollars_per_vol_point"):
        exposures(_chain(), kind="vega", unit="units_delta")
    with pytest.raises(ValueError, match="dollars_delta, units_delta"):
        exposures(_chain(), kind="dex", unit="dollars_per_1pct")
    with pytest.raises(ValueError, match="dollars_per_1pct"):
        exposures(_chain(), kind="gex", unit="dollars_delta")
    # The Unit enum is accepted for gex.
    assert exposures(_chain(), kind="gex", unit=fastgex.Unit.SHARES_PER_DOLLAR).unit == (
        "shares_per_dollar"
    )


@pytest.mark.parametrize("views", [None, ("all", "ex_next_expiry", "ex_next_monthly")])
def test_kind_gex_buckets_equal_gex(views):
    market = sample_market(6000, seed=5)
    mine = exposures(market, kind="gex", buckets="default", views=views)
    theirs = fastgex.gex(market, buckets="default", views=views)
    for name in ("by_bucket", "by_strike_bucket", "by_strike"):
        ours, reference = getattr(mine, name), getattr(theirs, name)
        assert ours.schema.equals(reference.schema), name
        for column in reference.column_names:
            expected = reference.column(column).to_numpy(zero_copy_only=False)
            got = ours.column(column).to_numpy(zero_copy_only=False)
            if expected.dtype.kind == "f":
                scale = np.abs(expected).max()
                np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12 * scale)
            else:
                assert (got == expected).all(), (name, column)


def _reference_buckets(table: pa.Table, kind: str) -> dict[tuple[str, str], float]:
    """Plain-Python exposure per (underlying, default bucket), rate and yield 0."""
    from fastgex.buckets import expiry_buckets

    labels = dict(zip(EXPIRIES, expiry_buckets(EXPIRIES, SNAPSHOT.date(), "default"),
                      strict=True))  # fmt: skip
    parts: dict[tuple[str, str], list[float]] = {}
    for row in table.to_pylist():
        is_call = row["option_type"] == "C"
        price = row["spot"]
        values = ref.bsm_greeks(price, row["strike"], row["implied_vol"],
                                _years_to(row["expiration"]), 0.0, 0.0, is_call)  # fmt: skip
        factor = {"dex": values["delta"] * price, "vex": values["vanna"] * 0.01 * price,
                  "cex": values["charm"] / 365.0 * price, "vega": values["vega"] * 0.01,
                  "gex": values["gamma"] * price * price * 0.01}[kind]  # fmt: skip
        shares = (-1.0 if is_call else 1.0) * row["open_interest"] * 100.0
        key = (row["underlying"], labels[row["expiration"]])
        parts.setdefault(key, []).append(shares * factor)
    return {key: math.fsum(values) for key, values in parts.items()}


@pytest.mark.parametrize("kind", ["dex", "vex", "cex", "vega"])
def test_buckets_match_plain_python(kind):
    table = _dated_chain(12)
    result = exposures(table, kind=kind, snapshot_time=SNAPSHOT, buckets="default")
    expected = _reference_buckets(table, kind)
    rows = result.by_bucket.to_pylist()
    assert {(row["underlying"], row["bucket"]) for row in rows if row["bucket"] != "all"} == set(
        expected
    )
    for row in rows:
        if row["bucket"] == "all":
            total = math.fsum(value for (name, _), value in expected.items()
                              if name == row["underlying"])  # fmt: skip
            assert row[f"total_{kind}"] == pytest.approx(total, rel=RTOL, abs=1e-6)
        else:
            assert row[f"total_{kind}"] == pytest.approx(
                expected[(row["underlying"], row["bucket"])], rel=RTOL, abs=1e-6
            )


@fixed
@given(seed=st.integers(0, 10_000), kind=st.sampled_from([kind.value for kind in ExposureKind]))
def test_buckets_and_surfaces_add_up(seed, kind):
    table = _dated_chain(seed, 60)
    result = exposures(table, kind=kind, snapshot_time=SNAPSHOT, buckets="default")
    plain = exposures(table, kind=kind, snapshot_time=SNAPSHOT, by_expiry=True)
    net = f"net_{kind}"
    for row in result.by_underlying.to_pylist():
        name = row["underlying"]
        parts = [part for part in result.by_bucket.to_pylist() if part["underlying"] == name]
        everything = [part for part in parts if part["bucket"] == "all"]
        buckets = [part for part in parts if part["bucket"] != "all"]
        scale = math.fsum(abs(part[f"total_{kind}"]) for part in buckets) + 1e-300
        # Every row is in one default bucket: the buckets add up to the underlying.
        assert math.fsum(part[f"total_{kind}"] for part in buckets) == pytest.approx(
            row[f"total_{kind}"], rel=1e-12, abs=1e-12 * scale
        )
        assert sum(part["contracts"] for part in buckets) == row["contracts"]
        assert everything[0][f"total_{kind}"] == pytest.approx(row[f"total_{kind}"], rel=1e-13)
        # Surfaces: bucket columns add up to the "all" column, which is the per-strike table;
        # expiry columns add up to it too.
        strikes, columns, matrix = result.surface(name, by="bucket")
        mine = result.by_strike.filter(pc.equal(result.by_strike.column("underlying"), name))
        assert strikes.tolist() == mine.column("strike").to_pylist()
        width = np.abs(matrix).max() + 1e-300
        np.testing.assert_allclose(matrix[:, columns.index("all")], mine.column(net).to_numpy(),
                                   rtol=1e-12, atol=1e-12 * width)  # fmt: skip
        bucket_columns = [columns.index(part["bucket"]) for part in buckets]
        np.testing.assert_allclose(matrix[:, bucket_columns].sum(axis=1),
                                   mine.column(net).to_numpy(), rtol=1e-12,
                                   atol=1e-12 * width)  # fmt: skip
        expiry_strikes, expiries, by_expiry = plain.surface(name, by="expiry")
        assert expiry_strikes.tolist() == strikes.tolist()
        assert expiries == sorted(expiries)
        np.testing.assert_allclose(by_expiry.sum(axis=1), mine.column(net).to_numpy(),
                                   rtol=1e-12, atol=1e-12 * width)  # fmt: skip
    assert result.by_strike.equals(plain.by_strike)


def test_bucket_and_surface_errors():
    with pytest.raises(fastgex.ChainError, match="expiration"):
        exposures(_chain(), buckets="default")
    with pytest.raises(fastgex.ChainError, match="expiration"):
        exposures(_chain(), by_expiry=True)
    with pytest.raises(ValueError, match="unknown views"):
        exposures(_dated_chain(1), snapshot_time=SNAPSHOT, views=("sideways",))
    plain = exposures(_dated_chain(1), snapshot_time=SNAPSHOT)
    assert plain.by_bucket is None and plain.by_strike_expiry is None
    with pytest.raises(ValueError, match="buckets="):
        plain.surface("AAA", by="bucket")
    with pytest.raises(ValueError, match="by_expiry=True"):
        plain.surface("AAA", by="expiry")
    with pytest.raises(KeyError):
        exposures(_dated_chain(1), snapshot_time=SNAPSHOT, by_expiry=True).surface("ZZZ", "expiry")


# ------------------------------------------------------------------ exposure profiles


@pytest.mark.parametrize("vol_model", ["sticky_strike", "sticky_moneyness"])
def test_profile_kind_gex_equals_gex_profile(vol_model):
    market = sample_market(4000, seed=6)
    mine = fastgex.exposure_profile(market, kind="gex", n_levels=9, buckets="default",
                                    views=("all", "ex_next_expiry"),
                                    vol_model=vol_model)  # fmt: skip
    theirs = fastgex.profile(market, n_levels=9, buckets="default",
                             views=("all", "ex_next_expiry"), vol_model=vol_model)  # fmt: skip
    for column in ("underlying", "bucket"):
        assert mine.table.column(column).equals(theirs.table.column(column))
    for column in ("level", "ratio", "total_gex"):
        expected = theirs.table.column(column).to_numpy()
        np.testing.assert_allclose(mine.table.column(column).to_numpy(), expected,
                                   rtol=1e-10, atol=1e-12 * np.abs(expected).max())  # fmt: skip


@pytest.mark.parametrize("kind", ["dex", "vex", "cex", "vega"])
def test_profile_matches_plain_python_at_moved_spots(kind):
    table = _chain(13, 40)
    result = fastgex.exposure_profile(table, kind=kind, n_levels=3,
                                      level_range=(0.85, 1.15), rate=0.01)  # fmt: skip
    ratios = [0.85, 1.0, 1.15]
    rows = table.to_pylist()
    for row in result.table.to_pylist():
        spot = SPOTS[row["underlying"]]
        ratio = ratios[int(np.argmin([abs(row["ratio"] - value) for value in ratios]))]
        assert row["level"] == pytest.approx(spot * ratio, rel=1e-15)
        expected = []
        for item in rows:
            if item["underlying"] != row["underlying"]:
                continue
            is_call = item["option_type"] == "C"
            level = spot * ratio
            values = ref.bsm_greeks(level, item["strike"], item["implied_vol"],
                                    item["time_to_expiry"], 0.01, 0.0, is_call)  # fmt: skip
            factor = {"dex": values["delta"] * level, "vex": values["vanna"] * 0.01 * level,
                      "cex": values["charm"] / 365.0 * level,
                      "vega": values["vega"] * 0.01}[kind]  # fmt: skip
            expected.append((-1.0 if is_call else 1.0) * item["open_interest"] * 100.0 * factor)
        assert row[f"total_{kind}"] == pytest.approx(math.fsum(expected), rel=1e-9, abs=1e-6)
        assert row["contracts"] == len(expected)
    # At the current spot the profile is the exposure itself.
    at_spot = result.table.filter(pc.equal(result.table.column("ratio"), 1.0))
    assert at_spot.column(f"total_{kind}").to_pylist() == pytest.approx(
        result.exposures.by_underlying.column(f"total_{kind}").to_pylist(), rel=1e-12
    )


def test_profile_black76_moves_forwards_and_errors():
    table = _chain(14, 30)
    rng = np.random.default_rng(14)
    spot = np.array(table.column("spot").to_pylist())
    table = table.append_column("forward", pa.array(spot * rng.uniform(0.98, 1.02, 30)))
    result = fastgex.exposure_profile(table, kind="dex", n_levels=2, level_range=(0.9, 1.1),
                                      rate=0.02)  # fmt: skip
    for row in result.table.to_pylist():
        expected = []
        for item in table.to_pylist():
            if item["underlying"] != row["underlying"]:
                continue
            is_call = item["option_type"] == "C"
            forward = item["forward"] * row["ratio"]
            values = ref.black76_greeks(forward, item["strike"], item["implied_vol"],
                                        item["time_to_expiry"], 0.02, is_call)  # fmt: skip
            expected.append((-1.0 if is_call else 1.0) * item["open_interest"] * 100.0
                            * values["delta"] * forward)  # fmt: skip
        assert row["total_dex"] == pytest.approx(math.fsum(expected), rel=1e-9)
    levels, totals = result.array("AAA")
    assert levels.size == 2 and totals.size == 2
    assert result.surface("AAA")[2].shape == (2, 1)
    with pytest.raises(fastgex.ChainError, match="spot"):
        fastgex.exposure_profile(table.drop_columns(["spot"]), kind="dex")
    with pytest.raises(ValueError, match="sticky_moneyness"):
        fastgex.exposure_profile(table, vol_model="sticky_delta")
    with pytest.raises(ValueError, match="level_range"):
        fastgex.exposure_profile(table, level_range=(1.2, 0.8))
    with pytest.raises(TypeError, match="by_strike"):
        fastgex.exposure_profile(table, by_strike=False)
    with pytest.raises(KeyError):
        result.array("AAA", bucket="weekly")


def test_exposures_cli_units_buckets_and_profile(tmp_path, capsys):
    import json

    import pyarrow.parquet as pq

    from fastgex.cli import main

    path = tmp_path / "chain.parquet"
    table = _dated_chain(15).append_column(
        "snapshot_time", pa.array([SNAPSHOT] * 80, pa.timestamp("us", tz="UTC"))
    )
    pq.write_table(table, path)
    assert main(["exposures", str(path), "--kind", "vex", "--unit",
                 "units_delta_per_vol_point", "--buckets", "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    expected = exposures(table, kind="vex", unit="units_delta_per_vol_point", buckets="default")
    assert summary["unit"] == "units_delta_per_vol_point"
    for entry in summary["underlyings"]:
        for row in expected.by_bucket.to_pylist():
            if row["underlying"] == entry["underlying"]:
                assert entry["buckets"][row["bucket"]]["total_vex"] == pytest.approx(
                    row["total_vex"], rel=1e-12
                )
    out = tmp_path / "profile.csv"
    assert main(["exposures", str(path), "--kind", "dex", "--profile", "--levels", "5",
                 "--json", "--out", str(out)]) == 0  # fmt: skip
    profiled = json.loads(capsys.readouterr().out)
    reference = fastgex.exposure_profile(table, kind="dex", n_levels=5)
    assert profiled["underlyings"][0]["total_dex"]["all"] == pytest.approx(
        reference.array(profiled["underlyings"][0]["underlying"])[1].tolist(), rel=1e-12
    )
    assert "total_dex" in out.read_text().splitlines()[0]
    assert main(["exposures", str(path), "--kind", "cex", "--buckets"]) == 0
    assert "weekly" in capsys.readouterr().out
    assert main(["exposures", str(path), "--kind", "vega", "--unit", "units_delta"]) == 2
    assert "dollars_per_vol_point" in capsys.readouterr().err


@fixed
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 4),  # underlying
            st.integers(0, 9),  # group within the underlying
            st.sampled_from([0, 0, 0, 3, 5, 9]),  # greeks-kernel status (0: valid)
            st.floats(-2.0, 2.0),  # greek
            st.sampled_from([0.0, 1.0, 250.0, -3.0, float("nan"), float("inf")]),  # OI
            st.booleans(),  # call
        ),
        max_size=150,
    ),
    rows_per_block=st.integers(1, 40),
    sorted_rows=st.booleans(),
    dealer_position=st.booleans(),
)
def test_exposure_blocks_give_the_one_block_result(
    rows, rows_per_block, sorted_rows, dealer_position
):
    """The exposure pass in many blocks against one block (the input-order walk).

    Per row values and reasons, reason counts, group quantities and counts: exact.
    Sums: within 1e-13 of ``math.fsum`` of the counted values (Neumaier sums in another
    grouping). Unsorted rows with small blocks take the one-block fallback; sorted rows
    the block partials.
    """
    import math

    from fastgex import _exposure_kernels
    from fastgex._kernel_common import REASONS

    if sorted_rows:
        rows = sorted(rows, key=lambda row: (row[0], row[1]))
    uid = np.array([row[0] for row in rows], dtype=np.int32)
    gid = np.array([row[0] * 10 + row[1] for row in rows], dtype=np.int32)
    status = np.array([row[2] for row in rows], dtype=np.int8)
    greek = np.array([row[3] for row in rows])
    quantity = np.array([row[4] for row in rows])
    code = np.array([1 if row[5] else 0 for row in rows], dtype=np.uint8)
    multiplier = np.full(5, 100.0)
    price = np.array([10.0, 20.0, 4700.0, 1.5, 300.0])

    def run(block_rows):
        return _exposure_kernels.exposure_rows(
            greek, status, quantity, multiplier, code, uid, price, dealer_position, -1.0, 1.0,
            0.01, 2, gid, 5, 50, len(REASONS) + 1, block_rows,
        )  # fmt: skip

    blocks, one = run(rows_per_block), run(max(1, len(rows)))
    np.testing.assert_array_equal(blocks[0], one[0])  # values (NaN where not counted)
    for index in (1, 4, 5, 6):  # status, group quantity and counts, reason counts
        np.testing.assert_array_equal(blocks[index], one[index])
    values, reasons = one[0], one[1]
    for underlying in range(5):
        for side, is_call in ((0, 1), (1, 0)):
            member = (uid == underlying) & (code == is_call) & (reasons == 0)
            expected = math.fsum(values[member])
            scale = 1e-13 * (math.fsum(np.abs(values[member])) + 1e-300)
            assert abs(blocks[2][underlying, side] - expected) <= scale
            assert abs(one[2][underlying, side] - expected) <= scale
    for group in range(50):
        for side, is_call in ((0, 1), (1, 0)):
            member = (gid == group) & (code == is_call) & (reasons == 0)
            expected = math.fsum(values[member])
            assert abs(blocks[3][group, side] - expected) <= 1e-13 * (
                math.fsum(np.abs(values[member])) + 1e-300
            )
    assert int(one[6].sum()) == len(rows)


@pytest.mark.parametrize("kind", ["dex", "vex", "cex"])
def test_a_rows_exposure_does_not_depend_on_its_place_in_a_run(kind):
    """Bitwise the same per-contract exposure for a row in a long run of its underlying
    and alone in its run (docs/methodology.md, "Summation")."""
    one_run, each_alone = one_run_and_alone(random_contracts(20_000, seed=23))
    options = {"kind": kind, "rate": 0.03, "dividend_yield": 0.01, "per_contract": True}
    together = exposures(one_run, spot=100.0, **options)
    alone = exposures(each_alone, **options)
    first = together.per_contract.column(kind).to_numpy()
    second = alone.per_contract.column(kind).to_numpy()
    assert np.isfinite(first).all() and (first != 0.0).mean() > 0.9
    assert np.array_equal(first, second), int((first != second).sum())
