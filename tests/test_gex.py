"""fastgex.gex against the slow reference (fastgex.reference), configuration by configuration.

Tolerances: per-contract values within 1e-12 relative (the vectorized exp/log are within
~5e-14 of libm); sums within 1e-12 of the sum of absolute values (the reference sums
exactly with math.fsum).
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import fastgex
from conftest import one_run_and_alone, random_contracts
from fastgex import reference
from fastgex.sample import sample_chain, sample_market

NEW_YORK = ZoneInfo("America/New_York")


def _with_years(table: pa.Table) -> pa.Table:
    """Replace expiration/snapshot by time_to_expiry computed here, independently (ACT/365)."""
    snapshot = table.column("snapshot_time")[0].as_py()
    years = {}
    for expiry in set(table.column("expiration").to_pylist()):
        settle = dt.datetime.combine(expiry, dt.time(16, 0), NEW_YORK)
        years[expiry] = (settle - snapshot).total_seconds() / (365.0 * 86400.0)
    column = pa.array([years[e] for e in table.column("expiration").to_pylist()], pa.float64())
    return table.drop_columns(["expiration", "snapshot_time"]).append_column(
        "time_to_expiry", column
    )


@pytest.fixture(scope="module")
def chain() -> pa.Table:
    return _with_years(sample_chain("SPX", 4700.0, seed=3))


def _rows(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    for row in rows:
        row["underlying"] = str(row["underlying"])
        row["option_type"] = str(row["option_type"])
    return rows


def _assert_sums_close(ours: float, exact: float, magnitude: float) -> None:
    assert abs(ours - exact) <= 1e-12 * magnitude + 1e-300, (ours, exact)


def _compare(result: fastgex.GexResult, expected: reference.ReferenceResult) -> None:
    per_contract = result.per_contract.column("gex").to_numpy()
    oracle = np.array(expected.per_contract)
    np.testing.assert_allclose(per_contract, oracle, rtol=1e-12, atol=0.0)
    magnitude = math.fsum(abs(value) for value in oracle)
    for row in result.by_underlying.to_pylist():
        exact = expected.by_underlying[row["underlying"]]
        _assert_sums_close(row["total_gex"], exact["total"], magnitude)
        _assert_sums_close(row["call_gex"], exact["calls"], magnitude)
        _assert_sums_close(row["put_gex"], exact["puts"], magnitude)
        assert row["contracts"] == exact["contracts"]
    strikes = result.by_strike.to_pylist()
    oracle_strikes = [
        (name, entry) for name, entries in sorted(expected.by_strike.items()) for entry in entries
    ]
    assert len(strikes) == len(oracle_strikes)
    for ours, (name, exact) in zip(strikes, oracle_strikes, strict=True):
        assert ours["underlying"] == name and ours["strike"] == exact["strike"]
        _assert_sums_close(ours["net_gex"], exact["net"], magnitude)
        _assert_sums_close(ours["cumulative_net_gex"], exact["cumulative_net"], magnitude)


@pytest.mark.parametrize(
    "convention", ["short_calls_long_puts", "long_calls_short_puts", "short_all"]
)
@pytest.mark.parametrize("unit", ["dollars_per_1pct", "dollars_per_point", "shares_per_dollar"])
def test_model_gamma_matches_reference(chain, convention, unit):
    result = fastgex.gex(chain, convention=convention, unit=unit, per_contract=True)
    expected = reference.gex_reference(_rows(chain), convention=convention, unit=unit)
    _compare(result, expected)
    assert result.dropped_count == 0


def test_rate_and_dividend_yield(chain):
    result = fastgex.gex(chain, rate=0.05, dividend_yield=0.013, per_contract=True)
    rows = [{**row, "rate": 0.05, "dividend_yield": 0.013} for row in _rows(chain)]
    _compare(result, reference.gex_reference(rows))


def test_per_row_rate_and_multiplier_columns(chain):
    rng = np.random.default_rng(5)
    varied = chain.append_column("rate", pa.array(rng.uniform(0.0, 0.06, chain.num_rows)))
    varied = varied.set_column(
        varied.column_names.index("multiplier"),
        "multiplier",
        pa.array(rng.choice([10.0, 100.0], chain.num_rows)),
    )
    result = fastgex.gex(varied, per_contract=True)
    _compare(result, reference.gex_reference(_rows(varied)))


def test_vendor_gamma_column(chain):
    vendor = pa.array(np.random.default_rng(2).uniform(0, 1e-3, chain.num_rows))
    with_gamma = chain.append_column("gamma", vendor)
    result = fastgex.gex(with_gamma, gamma_source="column", per_contract=True)
    _compare(result, reference.gex_reference(_rows(with_gamma), gamma_source="column"))


def test_dealer_position_overrides_convention(chain):
    positions = np.random.default_rng(9).integers(-500, 500, chain.num_rows).astype(float)
    positioned = chain.append_column("dealer_position", pa.array(positions))
    for convention in ("short_calls_long_puts", "long_calls_short_puts"):
        result = fastgex.gex(positioned, convention=convention, per_contract=True)
        _compare(result, reference.gex_reference(_rows(positioned)))


def test_black76_forward_column(chain):
    forward = pc.multiply(chain.column("spot"), 1.01)
    futures = chain.drop_columns(["spot"]).append_column("forward", forward)
    result = fastgex.gex(futures, rate=0.03, per_contract=True)
    rows = [{**row, "rate": 0.03} for row in _rows(futures)]
    _compare(result, reference.gex_reference(rows))


def test_whole_market_many_underlyings():
    market = sample_market(30_000, n_underlyings=60, seed=11)
    market = _with_years(market.cast(_plain_schema(market.schema)))
    result = fastgex.gex(market, per_contract=True)
    expected = reference.gex_reference(_rows(market))
    _compare(result, expected)
    assert result.by_underlying.num_rows == 60


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [
            pa.field(
                field.name,
                field.type.value_type if pa.types.is_dictionary(field.type) else field.type,
            )
            for field in schema
        ]
    )


def test_spot_as_mapping_and_table(chain):
    no_spot = chain.drop_columns(["spot"])
    from_column = fastgex.gex(chain).total()
    assert fastgex.gex(no_spot, spot=4700.0).total() == from_column
    assert fastgex.gex(no_spot, spot={"SPX": 4700.0}).total() == from_column
    spot_table = pa.table({"underlying": ["SPX"], "spot": [4700.0]})
    assert fastgex.gex(no_spot, spot=spot_table).total() == from_column


def test_inputs_of_every_kind_agree(chain, tmp_path):
    import pyarrow.csv as pacsv
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    expected = fastgex.gex(chain).total()
    pq.write_table(chain, tmp_path / "chain.parquet")
    feather.write_feather(chain, tmp_path / "chain.arrow")
    pacsv.write_csv(chain, tmp_path / "chain.csv")
    sources = [
        chain.to_batches()[0] if chain.num_rows == chain.to_batches()[0].num_rows else chain,
        pa.RecordBatchReader.from_batches(chain.schema, chain.to_batches(max_chunksize=1000)),
        chain.to_pandas(),
        tmp_path / "chain.parquet",
        str(tmp_path / "chain.arrow"),
        tmp_path / "chain.csv",
    ]
    for source in sources:
        assert fastgex.gex(source).total() == pytest.approx(expected, rel=1e-12)


def test_arrow_c_stream_objects(chain):
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    expected = fastgex.gex(chain).total()
    frame = polars.from_arrow(chain)
    assert fastgex.gex(frame).total() == pytest.approx(expected, rel=1e-12)
    relation = duckdb.from_arrow(chain)
    assert fastgex.gex(relation).total() == pytest.approx(expected, rel=1e-12)


def test_columns_mapping_and_aliases(chain):
    user_names = {
        "underlying": "Ticker",
        "strike": "Strike Px",
        "option_type": "cp",
        "open_interest": "OI",
        "implied_vol": "IV",
    }
    renamed = chain.rename_columns([user_names.get(n, n) for n in chain.column_names])
    expected = fastgex.gex(chain).total()
    assert fastgex.gex(renamed, columns={"Strike Px": "strike"}).total() == expected
    with pytest.raises(fastgex.ChainError, match="strike"):
        fastgex.gex(renamed)


def test_zero_copy_for_float64_columns(chain):
    prepared = fastgex._gex._prepare(
        chain,
        spot=None,
        snapshot_time=None,
        gamma_source=fastgex.GammaSource.MODEL,
        rate=None,
        dividend_yield=None,
        day_count=fastgex.DayCount(),
        settlement=dt.time(16),
        zone=NEW_YORK,
    )
    source = chain.column("strike").chunk(0).buffers()[1]
    used = prepared.work.column("strike").chunk(0).buffers()[1]
    assert source.address == used.address  # the kernel reads the caller's buffer


def test_unused_dictionary_entries_need_no_spot():
    """A slice of a dictionary-encoded market keeps every name in its dictionary."""
    market = sample_market(20_000, n_underlyings=40, seed=4)
    first_rows = market.slice(0, 300)
    result = fastgex.gex(first_rows, by_strike=False)
    used = set(pc.unique(first_rows.column("underlying").cast(pa.string())).to_pylist())
    assert set(result.by_underlying.column("underlying").to_pylist()) == used


def test_interleaved_underlyings_keep_input_order_per_contract():
    market = sample_market(20_000, n_underlyings=40, seed=5)
    permutation = np.random.default_rng(0).permutation(market.num_rows)
    shuffled = market.take(pa.array(permutation))
    grouped = fastgex.gex(market, per_contract=True)
    interleaved = fastgex.gex(shuffled, per_contract=True)
    np.testing.assert_allclose(
        interleaved.per_contract.column("gex").to_numpy(),
        grouped.per_contract.column("gex").to_numpy()[permutation],
        rtol=1e-13,
    )
    np.testing.assert_allclose(
        interleaved.by_underlying.column("total_gex").to_numpy(),
        grouped.by_underlying.column("total_gex").to_numpy(),
        rtol=1e-12,
    )


def test_a_rows_gex_does_not_depend_on_its_place_in_a_run():
    """Bitwise the same per-contract GEX for a row in a long run of its underlying (the
    vectorized loop) and alone in its run (the scalar remainder): the kernel's formulas
    are compiled without reassociation (``_jit.ROW_FLAGS``), only its sums reassociate.
    With reassociation everywhere, LLVM rewrote the two copies differently."""
    one_run, each_alone = one_run_and_alone(random_contracts(60_000, seed=22))
    options = {"rate": 0.03, "dividend_yield": 0.01, "per_contract": True, "by_strike": False}
    together = fastgex.gex(one_run, spot=100.0, **options)
    alone = fastgex.gex(each_alone, **options)
    first = together.per_contract.column("gex").to_numpy()
    second = alone.per_contract.column("gex").to_numpy()
    assert np.isfinite(first).all() and (first != 0.0).mean() > 0.9
    assert np.array_equal(first, second), int((first != second).sum())
