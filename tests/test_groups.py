"""Group numbering, ordering and bucket/view reductions against pure-Python references.

* :func:`fastgex._group_kernels.group_ids` vs a dict keyed by (underlying, strike,
  expiry) numbered by first appearance (exact).
* :func:`fastgex._group_kernels.order_groups` vs Python's sort (exact).
* ``gex(buckets=..., views=...)`` vs pandas group-bys of the per-contract GEX with each
  row's bucket decided by :func:`fastgex.buckets.expiry_buckets` (sums to ``1e-12`` of
  the sum of absolute values: the same numbers added in another order).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgex
from fastgex import _group_kernels
from fastgex.buckets import DEFAULT_BUCKETS, expiry_buckets
from fastgex.sample import sample_chain, sample_market

NEW_YORK = ZoneInfo("America/New_York")
fixed = settings(derandomize=True, database=None, deadline=None, max_examples=40)


def _reference_ids(underlying, strike, expiry):
    seen: dict[tuple, int] = {}
    ids = []
    for key in zip(underlying.tolist(), (strike + 0.0).tolist(), expiry.tolist(), strict=True):
        ids.append(seen.setdefault(key, len(seen)))
    return np.array(ids), list(seen)


@fixed
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.sampled_from([0.0, -0.0, 1.0, 2.5, 100.0, 4700.0, 1e-300, 3e9]),
            st.integers(0, 4),
        ),
        max_size=300,
    ),
    st.booleans(),
)
def test_group_ids_match_first_appearance_numbering(rows, with_expiry):
    underlying = np.array([row[0] for row in rows], dtype=np.int32)
    strike = np.array([row[1] for row in rows], dtype=np.float64)
    expiry = np.array([row[2] if with_expiry else 0 for row in rows], dtype=np.int32)
    ids, underlyings, strike_bits, expiries = _group_kernels.group_ids(
        underlying, strike.view(np.uint64), expiry if with_expiry else expiry[:0], 4
    )
    expected_ids, keys = _reference_ids(underlying, strike, expiry)
    np.testing.assert_array_equal(ids, expected_ids)
    assert list(zip(underlyings.tolist(), strike_bits.view(np.float64).tolist(),
                    expiries.tolist(), strict=True)) == keys  # fmt: skip


def test_group_ids_keep_nan_strikes_apart_from_numbers():
    strike = np.array([np.nan, 1.0, np.nan, 1.0])
    ids, _, bits, _ = _group_kernels.group_ids(
        np.zeros(4, np.int32), strike.view(np.uint64), np.empty(0, np.int32), 1
    )
    assert ids.tolist() == [0, 1, 0, 1]
    assert np.isnan(bits.view(np.float64)[0])


def test_group_ids_many_round_strikes_in_one_underlying():
    """Round strikes have all-zero low mantissa bits: the hash must still spread them."""
    strike = np.repeat(np.arange(1.0, 20001.0) * 5.0, 2)
    ids, _, bits, _ = _group_kernels.group_ids(
        np.zeros(strike.size, np.int32), strike.view(np.uint64), np.empty(0, np.int32), 1
    )
    np.testing.assert_array_equal(ids, np.repeat(np.arange(20000), 2))
    np.testing.assert_array_equal(bits.view(np.float64), strike[::2])


@fixed
@given(
    st.lists(st.tuples(st.integers(0, 5), st.sampled_from([1.0, 2.0, 3.0, 10.0])), max_size=80),
    st.integers(0, 6),
)
def test_order_groups_sorts_by_rank_then_strike(groups, n_ranks):
    rank = np.array([group[0] for group in groups], dtype=np.int64)
    strike = np.array([group[1] for group in groups])
    order, run_starts = _group_kernels.order_groups(rank, strike, n_ranks)
    kept = [index for index in range(len(groups)) if rank[index] < n_ranks]
    expected = sorted(kept, key=lambda index: (rank[index], strike[index], index))
    assert order.tolist() == expected
    keys = [(rank[index], strike[index]) for index in expected]
    starts = [position for position in range(len(keys)) if position == 0
              or keys[position] != keys[position - 1]]  # fmt: skip
    assert run_starts.tolist() == [*starts, len(keys)]


@pytest.mark.parametrize("count", [1, 15, 16, 17, 33, 1000, 4099])
def test_order_groups_long_ranks_match_a_stable_sort(count):
    """Ranks longer than the insertion runs go through every merge width; NaN sorts last."""
    generator = np.random.default_rng(count)
    tied = generator.choice([np.nan, 5.0, 10.0, 12.5, 100.0], size=count)  # many ties
    strike = np.where(generator.random(count) < 0.5, tied, generator.uniform(1.0, 5e3, count))
    rank = generator.integers(0, 3, size=count)
    order, _ = _group_kernels.order_groups(rank, strike, 3)
    nan = np.isnan(strike)
    expected = sorted(
        range(count),
        key=lambda index: (rank[index], nan[index], 0.0 if nan[index] else strike[index], index),
    )
    assert order.tolist() == expected


# --------------------------------------------------------------------------- gex(buckets=)


@pytest.fixture(scope="module")
def chain() -> pa.Table:
    return sample_chain("SPX", 4700.0, seed=3)


def _labelled_contracts(table: pa.Table, buckets="default") -> pd.DataFrame:
    """Per-contract GEX of the rows that count, with each row's bucket."""
    result = fastgex.gex(table, per_contract=True)
    frame = result.per_contract.to_pandas()
    frame = frame[frame["drop_reason"].isna()].copy()
    snapshot = table.column("snapshot_time")[0].as_py().astimezone(NEW_YORK)
    dates = sorted(set(frame["expiration"]))
    names = dict(zip(dates, expiry_buckets(dates, snapshot.date(), buckets), strict=True))
    frame["bucket"] = frame["expiration"].map(names)
    frame["call_gex"] = np.where(frame["option_type"] == "C", frame["gex"], 0.0)
    frame["put_gex"] = np.where(frame["option_type"] == "C", 0.0, frame["gex"])
    return frame


def test_gex_buckets_match_pandas(chain):
    result = fastgex.gex(chain, buckets="default")
    frame = _labelled_contracts(chain)
    scale = 1e-12 * float(np.abs(frame["gex"]).sum())
    by_bucket = result.by_bucket.to_pandas().set_index(["underlying", "bucket"])
    assert list(by_bucket.index.get_level_values("bucket")) == [
        "all",
        *[name for name in DEFAULT_BUCKETS if name in set(frame["bucket"])],
    ]
    expected = frame.groupby("bucket")[["call_gex", "put_gex"]].sum()
    for name, row in expected.iterrows():
        got = by_bucket.loc[("SPX", name)]
        assert abs(got["call_gex"] - row["call_gex"]) <= scale
        assert abs(got["put_gex"] - row["put_gex"]) <= scale
        assert got["contracts"] == int((frame["bucket"] == name).sum())
    total = by_bucket.loc[("SPX", "all")]
    assert abs(total["total_gex"] - result.total("SPX")) <= scale
    assert total["contracts"] == len(frame)
    # per (bucket, strike)
    strikes = result.by_strike_bucket.to_pandas()
    expected_strikes = frame.groupby(["bucket", "strike"])[["call_gex", "put_gex"]].sum()
    got = strikes[strikes["bucket"] != "all"].set_index(["bucket", "strike"]).sort_index()
    assert list(got.index) == list(expected_strikes.index)
    np.testing.assert_allclose(got["call_gex"], expected_strikes["call_gex"], rtol=0, atol=scale)
    np.testing.assert_allclose(got["put_gex"], expected_strikes["put_gex"], rtol=0, atol=scale)
    for _, part in strikes.groupby("bucket", sort=False):
        assert part["strike"].is_monotonic_increasing
        np.testing.assert_allclose(
            part["cumulative_net_gex"], np.cumsum(part["net_gex"]), rtol=0, atol=scale
        )


def test_gex_buckets_keep_the_plain_strike_table(chain):
    plain = fastgex.gex(chain)
    bucketed = fastgex.gex(chain, buckets="default", views=("ex_next_expiry",))
    assert bucketed.by_strike.schema == plain.by_strike.schema
    assert bucketed.by_strike.column("strike").equals(plain.by_strike.column("strike"))
    scale = 1e-12 * float(np.abs(plain.by_strike.column("net_gex").to_numpy()).sum())
    np.testing.assert_allclose(
        bucketed.by_strike.column("net_gex").to_numpy(),
        plain.by_strike.column("net_gex").to_numpy(),
        rtol=0,
        atol=scale,
    )
    assert bucketed.by_underlying.equals(plain.by_underlying)
    assert "all" not in bucketed.by_bucket.column("bucket").to_pylist()
    assert plain.by_bucket is None and plain.by_strike_bucket is None


def test_gex_views_match_levels(chain):
    views = ("all", "ex_next_expiry", "ex_next_monthly")
    result = fastgex.gex(chain, buckets="default", views=views)
    levels = fastgex.levels(chain, buckets="default", views=views)
    ours = result.by_bucket.to_pandas().set_index("bucket")
    theirs = levels.levels.to_pandas().set_index("bucket")
    for name in ours.index:
        assert ours.loc[name, "total_gex"] == pytest.approx(theirs.loc[name, "total_gex"], 1e-12)
        assert ours.loc[name, "contracts"] == theirs.loc[name, "contracts"]
    # Same rows; the values agree to rounding (gex groups expiries by target class, levels
    # keeps every expiry for its strike x expiry surface, so the sums run in another order).
    ours_table, theirs_table = result.by_strike_bucket, levels.by_strike
    assert ours_table.schema == theirs_table.schema
    for name in ("underlying", "bucket", "strike", "contracts"):
        assert ours_table.column(name).equals(theirs_table.column(name))
    for name in ("call_gex", "put_gex", "net_gex", "cumulative_net_gex"):
        mine = ours_table.column(name).to_numpy()
        scale = float(np.abs(mine).max())
        np.testing.assert_allclose(mine, theirs_table.column(name).to_numpy(), atol=1e-13 * scale)
    for name in ("call_open_interest", "put_open_interest"):  # integer counts: exact
        assert ours_table.column(name).equals(theirs_table.column(name))


def test_gex_buckets_on_the_whole_market_match_per_underlying_runs():
    market = sample_market(20_000, n_underlyings=12, seed=5)
    whole = fastgex.gex(market, buckets="default")
    for name in ("SPX", whole.by_underlying.column("underlying")[-1].as_py()):
        alone = fastgex.gex(market.filter(pc.equal(market.column("underlying"), name)),
                            buckets="default")  # fmt: skip
        mine = whole.by_bucket.filter(pc.equal(whole.by_bucket.column("underlying"), name))
        assert mine.column("bucket").equals(alone.by_bucket.column("bucket"))
        np.testing.assert_allclose(
            mine.column("total_gex").to_numpy(),
            alone.by_bucket.column("total_gex").to_numpy(),
            rtol=1e-12,
        )


def test_gex_buckets_need_dates(chain):
    only_time = chain.drop_columns(["expiration"]).append_column(
        "time_to_expiry", pa.array(np.full(chain.num_rows, 0.1))
    )
    with pytest.raises(fastgex.ChainError, match="expiration dates"):
        fastgex.gex(only_time, buckets="default")
    # the "all" view alone needs no dates
    result = fastgex.gex(only_time, views=("all",))
    assert result.by_bucket.column("total_gex")[0].as_py() == pytest.approx(
        result.total("SPX"), rel=1e-12
    )


def test_gex_unknown_view_is_a_clear_error(chain):
    with pytest.raises(ValueError, match="unknown views"):
        fastgex.gex(chain, views=("next_week",))


def test_gex_user_edge_buckets(chain):
    result = fastgex.gex(chain, buckets={"near": 30, "far": 3650})
    frame = _labelled_contracts(chain, {"near": 30, "far": 3650})
    got = result.by_bucket.to_pandas().set_index("bucket")["contracts"]
    expected = frame.groupby("bucket").size()
    for name, count in expected.items():
        assert got[name] == count
    assert got["all"] == len(frame)


def test_empty_chain_with_buckets(chain):
    result = fastgex.gex(chain.slice(0, 0), buckets="default")
    assert result.by_bucket.num_rows == 0
    assert result.by_strike_bucket.num_rows == 0


def test_snapshot_is_after_some_expiries(chain):
    """Expired rows are dropped and counted; they belong to no bucket."""
    later = dt.datetime(2024, 1, 10, 17, 0, tzinfo=NEW_YORK)
    result = fastgex.gex(chain, buckets="default", snapshot_time=later)
    assert result.dropped_count > 0
    buckets = result.by_bucket.to_pandas().set_index("bucket")
    assert buckets.loc["all", "contracts"] == chain.num_rows - result.dropped_count
    assert "expired" not in buckets.index


def test_buckets_without_the_strike_table(chain):
    """``by_strike=False`` still sums per bucket (the groups are needed for the buckets)."""
    without = fastgex.gex(chain, buckets="default", by_strike=False)
    with_table = fastgex.gex(chain, buckets="default")
    assert without.by_strike is None
    assert without.by_bucket.equals(with_table.by_bucket)
    assert without.by_strike_bucket.equals(with_table.by_strike_bucket)


def test_expiries_sharing_targets_are_grouped_once(chain):
    """Groups are keyed by target class: fewer groups than (strike, expiry) pairs, same sums."""
    from fastgex._gex import _engine

    engine = _engine(chain, buckets="default", views=("all", "ex_next_expiry"))
    prepared = engine.prepared
    strike_expiry_pairs = len(
        set(
            zip(
                chain.column("strike").to_pylist(),
                chain.column("expiration").to_pylist(),
                strict=True,
            )
        )
    )
    assert prepared.group_class_bits is not None
    assert prepared.n_groups < strike_expiry_pairs
    frame = _labelled_contracts(chain)
    by_bucket = engine.result.by_bucket.to_pandas().set_index("bucket")
    expected = frame.groupby("bucket")["gex"].sum()
    scale = 1e-12 * float(np.abs(frame["gex"]).sum())
    for name, total in expected.items():
        assert abs(by_bucket.loc[name, "total_gex"] - total) <= scale


def test_the_per_bucket_strike_table_is_built_on_first_access(chain):
    """``by_strike_bucket`` is deferred: built once, on access, from the pass's groups."""
    import pickle
    import threading

    from fastgex._targets import DeferredStrikeTable, resolve_targets, target_sums

    result = fastgex.gex(chain, buckets="default", views=("all", "ex_next_monthly"))
    source = result.strike_bucket_source
    assert isinstance(source, DeferredStrikeTable) and source._table is None
    assert result.by_bucket is not None and result.by_strike is not None
    tables = []
    threads = [threading.Thread(target=lambda: tables.append(result.by_strike_bucket))]
    threads += [threading.Thread(target=lambda: tables.append(result.by_strike_bucket))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tables[0] is tables[1] is result.by_strike_bucket  # built once
    assert source._inputs is None  # the group arrays are released
    # The same table as the eager reduction of the same groups.
    from fastgex._gex import _engine, reported_underlyings

    engine = _engine(chain, buckets="default", views=("all", "ex_next_monthly"))
    prepared, accumulated = engine.prepared, engine.accumulated
    order = reported_underlyings(prepared.names, accumulated.rows)
    targets = resolve_targets(prepared, prepared.work, "default", ("all", "ex_next_monthly"))
    bits = prepared.group_class_bits[prepared.group_expiry]
    eager = target_sums(prepared, accumulated, targets, order, bits)
    assert result.by_strike_bucket.equals(eager.strike_table)
    # Pickling builds the table and carries it; results compare by their tables.
    fresh = fastgex.gex(chain, buckets="default")
    copy = pickle.loads(pickle.dumps(fresh))
    assert copy.by_strike_bucket.equals(fastgex.gex(chain, buckets="default").by_strike_bucket)
    assert copy == fresh == fastgex.gex(chain, buckets="default")
    assert fresh != fastgex.gex(chain, buckets="default", views=("all", "ex_next_monthly"))
    # A result pickled while by_strike_bucket was a plain field still loads it.
    legacy_state = dict(vars(fresh))
    legacy_state["by_strike_bucket"] = legacy_state.pop("strike_bucket_source").table()
    legacy = fastgex.GexResult.__new__(fastgex.GexResult)
    legacy.__setstate__(legacy_state)
    assert legacy.by_strike_bucket.equals(fresh.by_strike_bucket)


@fixed
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # rank (3 = not reported)
            st.sampled_from([90.0, 100.0, 110.0, 125.0]),
            st.integers(0, 7),  # target mask
            st.floats(-1e6, 1e6),
            st.floats(-1e6, 1e6),
            st.integers(0, 3),  # counted rows (0: a group of dropped rows)
        ),
        max_size=120,
    )
)
def test_strike_runs_match_the_per_target_reduction(groups):
    """The plain per-strike rows and per-target totals equal :func:`target_strike_table`'s.

    Rows: exactly (same run order and the same compensated sums for the "all" target).
    Totals: the same numbers added group by group instead of strike by strike, so to
    1e-12 of their sum of magnitudes.
    """
    n_ranks, n_targets = 3, 3
    rank = np.array([g[0] for g in groups], dtype=np.int64)
    strike = np.array([g[1] for g in groups])
    bits = np.array([g[2] for g in groups], dtype=np.uint64)
    sums = np.array([[g[3], g[4]] for g in groups]).reshape(-1, 2)
    counts = np.array([g[5] for g in groups], dtype=np.int64)
    sums[counts == 0] = 0.0  # rows that do not count add exactly 0.0
    quantity = np.zeros_like(sums)
    order, run_starts = _group_kernels.order_groups(rank, strike, n_ranks)
    run_rank = rank[order[run_starts[:-1]]]
    out_rank, values, contracts, totals, total_contracts = _group_kernels.strike_runs(
        order, run_starts, run_rank, strike, sums, counts, bits, n_targets, n_ranks
    )
    every = np.ones(rank.size, dtype=np.uint64)
    plain = _group_kernels.target_strike_table(
        order, run_starts, run_rank, every, strike, sums, quantity, counts, 1, n_ranks, -1
    )
    np.testing.assert_array_equal(out_rank, plain[0])
    np.testing.assert_array_equal(values, plain[2][:5])
    np.testing.assert_array_equal(contracts, plain[3])
    by_target = _group_kernels.target_strike_table(
        order, run_starts, run_rank, bits, strike, sums, quantity, counts, n_targets, n_ranks, -1
    )
    np.testing.assert_array_equal(total_contracts, by_target[5])
    scale = 1e-12 * (float(np.abs(sums).sum()) + 1.0)
    np.testing.assert_allclose(totals, by_target[4], rtol=0, atol=scale)
    # And against plain Python: per (rank, target) sums of the member groups.
    for rank_value in range(n_ranks):
        for target in range(n_targets):
            member = (rank == rank_value) & ((bits >> np.uint64(target)) & np.uint64(1) == 1)
            member &= counts > 0
            assert total_contracts[rank_value, target] == counts[member].sum()
            for side in range(2):
                expected = float(np.sum(sums[member, side]))
                assert abs(totals[rank_value, target, side] - expected) <= scale
