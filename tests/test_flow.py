"""Flow between two snapshots (:func:`fastgex.flow`) against a plain-Python reference.

The reference matches contracts in a dict and prices them with
:mod:`fastgex.reference_greeks`; times to expiry are computed here from settlement at
16:00 New York (act/365). Tolerance: 1e-9 relative on each part (per-row greeks agree to
a few ulp; the parts are differences of nearby deltas, which costs a few digits).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

import fastgex
from fastgex import flow
from fastgex import reference_greeks as ref

NEW_YORK = ZoneInfo("America/New_York")
PREVIOUS_TIME = dt.datetime(2026, 1, 5, 11, 0, tzinfo=NEW_YORK)
CURRENT_TIME = dt.datetime(2026, 1, 6, 11, 0, tzinfo=NEW_YORK)
EXPIRIES = [dt.date(2026, 1, 16), dt.date(2026, 2, 20), dt.date(2026, 6, 19)]
SPOTS = {"AAA": 100.0, "BBB": 4700.0}


STRIKE_RATIOS = (0.8, 0.85, 0.9, 0.95, 0.975, 1.0, 1.025, 1.05, 1.1, 1.2)


def _snapshot(seed: int = 0, n_rows: int = 80) -> list[dict]:
    """``n_rows`` distinct contracts (of the 120 keys) with random OI and vols."""
    rng = np.random.default_rng(seed)
    rows, seen = [], set()
    while len(rows) < n_rows:
        name = str(rng.choice(list(SPOTS)))
        key = (
            name,
            EXPIRIES[int(rng.integers(3))],
            round(SPOTS[name] * float(rng.choice(STRIKE_RATIOS)), 2),
            str(rng.choice(["C", "P"])),
        )
        if key in seen:
            continue
        seen.add(key)
        rows.append(
            {
                "underlying": key[0],
                "expiration": key[1],
                "strike": key[2],
                "option_type": key[3],
                "open_interest": float(rng.integers(1, 5000)),
                "implied_vol": float(rng.uniform(0.15, 0.5)),
                "spot": SPOTS[name],
            }
        )
    return rows


def _moved(rows, *, spot_move, vol_move, oi_factor=1.0, seed=1):
    rng = np.random.default_rng(seed)
    return [
        {
            **row,
            "spot": row["spot"] * (1 + spot_move),
            "implied_vol": row["implied_vol"] + vol_move,
            "open_interest": round(row["open_interest"] * oi_factor * rng.uniform(0.9, 1.1)),
        }
        for row in rows
    ]


def _years(expiry: dt.date, snapshot: dt.datetime) -> float:
    settle = dt.datetime.combine(expiry, dt.time(16, 0), tzinfo=NEW_YORK)
    # In UTC: aware datetimes sharing a tzinfo subtract as wall clocks (DST ignored).
    elapsed = settle.astimezone(dt.timezone.utc) - snapshot.astimezone(dt.timezone.utc)
    return elapsed.total_seconds() / (365.0 * 86_400.0)


def _reference(previous, current):
    """Per underlying: exact $ delta change and the parts, matched in a dict."""

    def book(rows, snapshot):
        out = {}
        for row in rows:
            is_call = row["option_type"] == "C"
            key = (row["underlying"], row["expiration"], row["strike"], is_call)
            time = _years(row["expiration"], snapshot)
            values = ref.bsm_greeks(row["spot"], row["strike"], row["implied_vol"], time,
                                    0.0, 0.0, is_call)  # fmt: skip
            shares = (-1.0 if is_call else 1.0) * row["open_interest"] * 100.0
            out[key] = (shares, values, row["spot"], row["implied_vol"], time)
        return out

    before, after = book(previous, PREVIOUS_TIME), book(current, CURRENT_TIME)
    totals: dict[str, dict[str, list]] = {}
    for key in before.keys() | after.keys():
        parts = totals.setdefault(
            key[0], {name: [] for name in ("change", "gamma", "vanna", "charm", "position")}
        )
        if key in before and key in after:
            q0, g0, s0, v0, t0 = before[key]
            q1, g1, s1, v1, t1 = after[key]
            parts["change"].append((q1 * g1["delta"] - q0 * g0["delta"]) * s1)
            parts["gamma"].append(q0 * g0["gamma"] * (s1 - s0) * s1)
            parts["vanna"].append(q0 * g0["vanna"] * (v1 - v0) * s1)
            parts["charm"].append(q0 * g0["charm"] * (t0 - t1) * s1)
            parts["position"].append((q1 - q0) * g1["delta"] * s1)
        elif key in before:
            q0, g0, s0, _, _ = before[key]
            parts["change"].append(-q0 * g0["delta"] * s0)
            parts["position"].append(-q0 * g0["delta"] * s0)
        else:
            q1, g1, s1, _, _ = after[key]
            parts["change"].append(q1 * g1["delta"] * s1)
            parts["position"].append(q1 * g1["delta"] * s1)
    return {name: {part: math.fsum(values) for part, values in parts.items()}
            for name, parts in totals.items()}  # fmt: skip


def _run(previous, current, **options):
    return flow(pa.Table.from_pylist(previous), pa.Table.from_pylist(current),
                previous_snapshot_time=PREVIOUS_TIME, current_snapshot_time=CURRENT_TIME,
                **options)  # fmt: skip


def test_flow_matches_plain_python_and_reconciles():
    previous = _snapshot(0)
    current = _moved(previous, spot_move=0.01, vol_move=-0.01)

    def key(row):
        return row["underlying"], row["expiration"], row["strike"], row["option_type"]

    keys = {key(row) for row in previous}
    new = [row for row in _snapshot(7, 110) if key(row) not in keys]
    assert new
    # Five contracts gone, some new.
    current = current[5:] + _moved(new, spot_move=0.01, vol_move=0.0)
    result = _run(previous, current)
    expected = _reference(previous, current)
    for row in result.by_underlying.to_pylist():
        want = expected[row["underlying"]]
        scale = abs(row["delta_change"]) + abs(row["position"]) + abs(row["gamma"])
        assert row["delta_change"] == pytest.approx(want["change"], rel=1e-9, abs=1e-12 * scale)
        for part in ("gamma", "vanna", "charm", "position"):
            assert row[part] == pytest.approx(want[part], rel=1e-9, abs=1e-12 * scale), part
        parts = sum(row[part] for part in ("gamma", "vanna", "charm", "residual", "position"))
        assert parts == pytest.approx(row["delta_change"], rel=1e-12, abs=1e-12 * scale)
        assert row["hedge_flow"] == -row["delta_change"]
        assert row["current_spot"] == pytest.approx(SPOTS[row["underlying"]] * 1.01)
    counts = result.by_underlying.select(["matched", "only_previous", "only_current"])
    assert sum(counts.column("only_previous").to_pylist()) >= 5
    assert sum(counts.column("matched").to_pylist()) == len(previous) - sum(
        counts.column("only_previous").to_pylist()
    )


def test_residual_is_second_order():
    """Halving every move (spot, vol and time step) cuts the residual about four times."""
    previous = _snapshot(3)
    residuals = []
    for move, hours in ((0.004, 4.0), (0.002, 2.0)):
        current = _moved(previous, spot_move=move, vol_move=move, seed=4)
        current = [{**row, "open_interest": old["open_interest"]}
                   for row, old in zip(current, previous, strict=True)]  # fmt: skip
        table = flow(pa.Table.from_pylist(previous), pa.Table.from_pylist(current),
                     previous_snapshot_time=PREVIOUS_TIME,
                     current_snapshot_time=PREVIOUS_TIME + dt.timedelta(hours=hours),
                     ).by_underlying.to_pylist()  # fmt: skip
        for row in table:
            first_order = abs(row["gamma"]) + abs(row["vanna"]) + abs(row["charm"])
            assert row["position"] == 0.0
            # The first-order parts explain the market move to within a few percent.
            assert abs(row["residual"]) < 0.03 * first_order
        residuals.append(np.array([abs(row["residual"]) for row in table]))
    ratio = residuals[1] / residuals[0]
    assert ((ratio > 0.15) & (ratio < 0.35)).all(), ratio


def test_position_change_only():
    previous = _snapshot(5)
    current = [{**row, "open_interest": row["open_interest"] * 2} for row in previous]
    result = flow(
        pa.Table.from_pylist(previous),
        pa.Table.from_pylist(current),
        previous_snapshot_time=PREVIOUS_TIME,
        current_snapshot_time=PREVIOUS_TIME,
    )
    for row in result.by_underlying.to_pylist():
        assert row["gamma"] == row["vanna"] == row["charm"] == 0.0
        assert row["residual"] == 0.0
        assert row["position"] == pytest.approx(row["delta_change"], rel=1e-12)
        assert row["current_dealer_delta"] == pytest.approx(2 * row["previous_dealer_delta"])


def test_bad_input_is_clear():
    previous = _snapshot(6)
    with pytest.raises(fastgex.ChainError, match="repeated contracts"):
        _run(previous, previous + previous[:1])
    timed = [{**{k: v for k, v in row.items() if k != "expiration"}, "time_to_expiry": 0.1}
             for row in previous]  # fmt: skip
    with pytest.raises(fastgex.ChainError, match="expiration"):
        flow(pa.Table.from_pylist(timed), pa.Table.from_pylist(timed))
    broken = [dict(row) for row in previous]
    broken[0]["implied_vol"] = float("nan")
    broken[1]["open_interest"] = -3.0
    result = _run(previous, broken)
    reasons = {row["reason"]: row["count"] for row in result.dropped_current.to_pylist()}
    assert reasons == {"invalid_implied_vol": 1, "negative_open_interest": 1}
    assert result.dropped_previous.num_rows == 0
    values = result.by_underlying.select(["delta_change", "residual", "position"])
    assert all(np.isfinite(column.to_numpy()).all() for column in values.columns)
    # The dropped rows count as gone from the current snapshot.
    assert sum(result.by_underlying.column("only_previous").to_pylist()) == 2


def test_flow_cli(tmp_path):
    import pyarrow.parquet as pq

    previous = _snapshot(8)
    current = _moved(previous, spot_move=-0.01, vol_move=0.01)
    paths = []
    for name, rows, when in (("a", previous, PREVIOUS_TIME), ("b", current, CURRENT_TIME)):
        table = pa.Table.from_pylist(rows)
        table = table.append_column("snapshot_time", pa.array([when] * table.num_rows))
        paths.append(tmp_path / f"{name}.parquet")
        pq.write_table(table, paths[-1])
    done = subprocess.run([sys.executable, "-m", "fastgex", "flow", *map(str, paths), "--json"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    expected = _reference(previous, current)
    for row in summary["underlyings"]:
        assert row["delta_change"] == pytest.approx(expected[row["underlying"]]["change"],
                                                    rel=1e-9)  # fmt: skip


def test_flow_series_is_the_pairwise_flows(tmp_path):
    import pyarrow.parquet as pq

    from fastgex import flow_series
    from fastgex.cli import main

    first = _snapshot(9)
    second = _moved(first, spot_move=0.01, vol_move=0.005, seed=2)
    third = _moved(second, spot_move=-0.02, vol_move=0.01, seed=3)
    times = [PREVIOUS_TIME, CURRENT_TIME, CURRENT_TIME + dt.timedelta(hours=3)]
    tables = []
    for rows, when in zip((first, second, third), times, strict=True):
        table = pa.Table.from_pylist(rows)
        tables.append(table.append_column("snapshot_time", pa.array([when] * table.num_rows)))
    series = flow_series(tables)
    assert series.column("step").to_pylist() == [0, 0, 1, 1]
    for step in (0, 1):
        pair = flow(tables[step], tables[step + 1]).by_underlying
        mine = series.filter(pa.compute.equal(series.column("step"), step))
        assert mine.select(pair.column_names).equals(pair)
        stamps = mine.column("current_snapshot_time").to_pylist()
        assert all(stamp == times[step + 1] for stamp in stamps)
    with pytest.raises(ValueError, match="two snapshots"):
        flow_series(tables[:1])
    paths = []
    for index, table in enumerate(tables):
        paths.append(str(tmp_path / f"s{index}.parquet"))
        pq.write_table(table, paths[-1])
    out = tmp_path / "series.parquet"
    assert main(["flow", *paths, "--out", str(out)]) == 0
    assert pq.read_table(out).column("delta_change").to_pylist() == pytest.approx(
        series.column("delta_change").to_pylist(), rel=1e-12
    )
