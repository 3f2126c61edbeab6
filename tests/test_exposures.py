"""Dealer exposures (DEX/GEX/VEX/CEX/vega) and hedge flow for moves, against plain Python.

The references are per-row loops over :mod:`fastgex.reference_greeks` (closed forms in
``math``), summed with ``math.fsum``. Tolerances: 1e-10 relative on totals (the kernel's
vectorized exp/log agree with ``math`` to a few ulp per row; sums are compensated).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastgex
from fastgex import reference_greeks as ref
from fastgex.exposures import EXPOSURE_UNITS, ExposureKind, exposures, hedge_flow
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
