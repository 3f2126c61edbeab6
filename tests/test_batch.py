"""Streaming GEX in bounded memory, resumable batch jobs, the progress line and the CLI."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import fastgex
from conftest import assert_tables_close
from fastgex import batch, sample
from fastgex._progress import Progress
from fastgex.cli import main

#: Streamed and in-memory sums differ only in how compensated partial sums are combined
#: (per batch here, per record batch and kernel block there): each partial sum is within
#: an ulp or two of exact, so totals agree to a few ulps of the magnitudes summed.
#: 1e-12 of |call| + |put| leaves a thousandfold margin over the ~1e-15 measured and is
#: still far below any error that matters (a lost or doubled row moves totals by > 1e-6).
RELATIVE_TOLERANCE = 1e-12


def _snapshot(day: dt.date, hour: int = 15, minute: int = 30) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.timezone.utc)


def _with_bad_rows(table: pa.Table) -> pa.Table:
    """Every 97th row gets a NaN vol and every 89th a negative open interest (dropped)."""
    vol = table.column("implied_vol").to_numpy().copy()
    open_interest = table.column("open_interest").to_numpy().copy()
    vol[::97] = np.nan
    open_interest[5::89] = -1.0
    table = table.set_column(table.schema.get_field_index("implied_vol"), "implied_vol", [vol])
    index = table.schema.get_field_index("open_interest")
    return table.set_column(index, "open_interest", [open_interest])


def _assert_close_to(streamed: fastgex.GexResult, expected: fastgex.GexResult) -> None:
    got, want = streamed.by_underlying, expected.by_underlying
    assert got.column("underlying").to_pylist() == want.column("underlying").to_pylist()
    for name in ("spot", "contracts", "dropped"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    scale = np.abs(want.column("call_gex").to_numpy()) + np.abs(want.column("put_gex").to_numpy())
    for name in ("total_gex", "call_gex", "put_gex"):
        difference = np.abs(got.column(name).to_numpy() - want.column(name).to_numpy())
        assert (difference <= RELATIVE_TOLERANCE * scale).all(), name
    assert sorted(streamed.dropped.to_pylist(), key=str) == sorted(
        expected.dropped.to_pylist(), key=str
    )
    got, want = streamed.by_strike, expected.by_strike
    for name in ("underlying", "strike", "contracts"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    # per underlying scale: the cumulative column is a running sum over its strikes
    names = np.array(want.column("underlying").to_pylist())
    magnitude = np.abs(want.column("call_gex").to_numpy()) + np.abs(
        want.column("put_gex").to_numpy()
    )
    per_underlying = {name: magnitude[names == name].sum() for name in set(names.tolist())}
    scale = np.array([per_underlying[name] for name in names])
    for name in ("call_gex", "put_gex", "net_gex", "cumulative_net_gex"):
        difference = np.abs(got.column(name).to_numpy() - want.column(name).to_numpy())
        assert (difference <= RELATIVE_TOLERANCE * scale).all(), name


@pytest.fixture(scope="module")
def market() -> pa.Table:
    return _with_bad_rows(sample.sample_market(30_000, n_underlyings=20, seed=11))


@pytest.fixture(scope="module")
def market_dir(tmp_path_factory, market) -> Path:
    path = tmp_path_factory.mktemp("market")
    ds.write_dataset(
        market, path, format="parquet", max_rows_per_group=3000, max_rows_per_file=9000
    )
    return path


# --------------------------------------------------------------------------- streaming


def test_stream_parquet_dataset_matches_in_memory(market, market_dir):
    assert len(list(market_dir.glob("*.parquet"))) >= 3  # many files, many row groups
    expected = fastgex.gex(market)
    streamed = batch.stream_gex(market_dir, batch_size=4096)
    assert streamed.settings["batches"] >= 8
    assert streamed.dropped_count == expected.dropped_count > 0
    _assert_close_to(streamed, expected)


def test_stream_reader_and_iterables_match_in_memory(market):
    expected = fastgex.gex(market, convention="long_calls_short_puts", unit="dollars_per_point")
    options = {"convention": "long_calls_short_puts", "unit": "dollars_per_point"}
    reader = pa.RecordBatchReader.from_batches(market.schema, market.to_batches(max_chunksize=4999))
    _assert_close_to(batch.stream_gex(reader, batch_size=7000, **options), expected)
    tables = [market.slice(start, 9321) for start in range(0, market.num_rows, 9321)]
    _assert_close_to(batch.stream_gex(tables, batch_size=5000, **options), expected)


def test_stream_with_hive_keys_and_time_to_expiry(tmp_path):
    """Hive keys become columns (here the underlying); time_to_expiry chains need no dates."""
    table = sample.sample_market(6000, n_underlyings=6, seed=2)
    gex_result = fastgex.gex(table, per_contract=True)
    chain = pa.table(
        {
            "underlying": table.column("underlying").cast(pa.string()),
            "strike": table.column("strike"),
            "option_type": table.column("option_type"),
            "open_interest": table.column("open_interest"),
            "implied_vol": table.column("implied_vol"),
            "spot": table.column("spot"),
            "time_to_expiry": gex_result.per_contract.column("time_to_expiry"),
        }
    )
    ds.write_dataset(
        chain, tmp_path, format="parquet", partitioning=["underlying"], partitioning_flavor="hive"
    )
    assert (tmp_path / "underlying=SPX").is_dir()
    _assert_close_to(batch.stream_gex(tmp_path, batch_size=700), fastgex.gex(chain))


def test_stream_many_snapshots_match_in_memory(tmp_path):
    """Snapshots per row: the merged settings say so, as the in-memory call does."""
    day = dt.date(2024, 1, 8)
    parts = [
        sample.sample_market(3000, n_underlyings=5, seed=4, snapshot_time=_snapshot(day, 15, m))
        for m in (0, 20, 40)
    ]
    table = pa.concat_tables(parts)
    expected = fastgex.gex(table)
    streamed = batch.stream_gex(table, batch_size=1000)
    assert expected.settings["snapshot_time"] is None
    assert streamed.settings["snapshot_time"] is None
    _assert_close_to(streamed, expected)
    one = batch.stream_gex(parts[0], batch_size=1000)
    assert one.settings["snapshot_time"] == fastgex.gex(parts[0]).settings["snapshot_time"]


def test_stream_rejects_whole_chain_options_and_bad_input(market):
    for option in ({"per_contract": True}, {"buckets": "default"}, {"views": ["all"]}):
        with pytest.raises(ValueError, match="whole chain"):
            batch.stream_gex(market, **option)
    with pytest.raises(ValueError, match="batch_size"):
        batch.stream_gex(market, batch_size=0)
    with pytest.raises(fastgex.ChainError, match="no rows"):
        batch.stream_gex(market.slice(0, 0))
    with pytest.raises(TypeError, match="stream source"):
        batch.stream_gex(12)
    # a spot that changes between batches would be a ChainError in memory too
    spx = market.filter(pc.equal(market.column("underlying").cast(pa.string()), "SPX"))
    moved = spx.set_column(
        spx.schema.get_field_index("spot"), "spot", [pc.add(spx.column("spot"), 1.0)]
    )
    with pytest.raises(fastgex.ChainError, match="spot"):
        fastgex.gex(pa.concat_tables([spx, moved]))
    with pytest.raises(fastgex.ChainError, match="spot of 'SPX' differs"):
        batch.stream_gex([spx, moved])


def test_stream_without_strikes(market):
    streamed = batch.stream_gex(market, batch_size=4096, by_strike=False)
    assert streamed.by_strike is None
    assert streamed.total() == pytest.approx(fastgex.gex(market).total(), rel=1e-12)


MEMORY_PROBE = r"""
import json, os, sys, tracemalloc
import pyarrow as pa, pyarrow.dataset as ds
import fastgex
from fastgex import batch

path, mode, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
warm = ds.dataset(path, format="parquet").head(2000)
batch.stream_gex(warm, batch_size=500)  # imports and kernel loads before measuring
fastgex.gex(warm)
proxy = pa.proxy_memory_pool(pa.default_memory_pool())
pa.set_memory_pool(proxy)  # every Arrow allocation from here on is counted
tracemalloc.start()  # Python objects and numpy buffers
if mode == "stream":
    total = batch.stream_gex(path, batch_size=batch_size).total()
elif mode == "keys":  # the job's listing of partitions by two data columns
    keys = batch._partition_keys(
        ds.dataset(path, format="parquet"), ["snapshot_time", "underlying"]
    )
    total = sum(rows for _, rows, _ in keys)
else:
    total = fastgex.gex(ds.dataset(path, format="parquet").to_table()).total()
peak = tracemalloc.get_traced_memory()[1] + proxy.max_memory()
print(json.dumps({"peak": peak, "total": total}))
sys.stdout.flush()
os._exit(0)  # the proxy pool must outlive every buffer: skip interpreter teardown
"""


def _peak(path: Path, mode: str, batch_size: int) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path), mode, str(batch_size)],
        capture_output=True,
        text=True,
        timeout=900,  # a cold kernel cache compiles in the probe
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_stream_peak_memory_is_bounded_by_the_batch(tmp_path):
    """A dataset 10x the memory cap streams under the cap; reading it whole does not.

    Measured in a fresh process: Arrow's pool peak (decoded Parquet, Arrow compute) plus
    tracemalloc's peak (numpy buffers, Python objects). Numba's own allocations (per-batch
    group sums, O(groups)) are not traced. The data repeat one chain at 20 intraday
    snapshots, so the per-strike state (O(distinct strikes)) stays small beside the rows.
    """
    day = dt.date(2024, 1, 8)
    base = sample.sample_market(30_000, n_underlyings=4, seed=8)
    parts = []
    for minute in range(20):
        times = pa.array(
            [_snapshot(day, 15, minute)] * base.num_rows, base.schema.field("snapshot_time").type
        )
        parts.append(
            base.set_column(base.schema.get_field_index("snapshot_time"), "snapshot_time", times)
        )
    table = pa.concat_tables(parts)
    ds.write_dataset(
        table, tmp_path, format="parquet", max_rows_per_group=8192, max_rows_per_file=100_000
    )
    cap = table.nbytes // 10
    streamed = _peak(tmp_path, "stream", 8192)
    in_memory = _peak(tmp_path, "memory", 8192)
    assert streamed["total"] == pytest.approx(in_memory["total"], rel=1e-12)
    assert streamed["peak"] < cap, (streamed["peak"], cap)
    assert in_memory["peak"] > cap * 5, (in_memory["peak"], cap)  # the probe sees the data
    # listing a job's partitions by data columns reads them a batch at a time too (the
    # whole key columns alone, snapshot_time and underlying, are over the cap)
    listed = _peak(tmp_path, "keys", 8192)
    assert listed["total"] == table.num_rows
    key_bytes = table.select(["snapshot_time", "underlying"]).nbytes
    assert listed["peak"] < cap < key_bytes, (listed["peak"], cap, key_bytes)


# --------------------------------------------------------------------------- batch jobs

DAYS = [dt.date(2024, 1, 8) + dt.timedelta(days=offset) for offset in range(4)]
JOB_OPTIONS = {"buckets": "default", "n_levels": 21}


def _history(days, rows: int, n_underlyings: int) -> pa.Table:
    tables = []
    for index, day in enumerate(days):
        table = sample.sample_market(
            rows, n_underlyings=n_underlyings, seed=index, snapshot_time=_snapshot(day)
        )
        tables.append(table.append_column("date", pa.array([day] * table.num_rows, pa.date32())))
    return pa.concat_tables(tables, promote_options="permissive")


def _write_history(path: Path, table: pa.Table) -> Path:
    ds.write_dataset(
        table, path, format="parquet", partitioning=["date"], partitioning_flavor="hive"
    )
    return path


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, pa.Table]:
    table = _history(DAYS, 3000, 6)
    return _write_history(tmp_path_factory.mktemp("history"), table), table


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, history) -> Path:
    out = tmp_path_factory.mktemp("clean")
    report = batch.run_batch(history[0], out, **JOB_OPTIONS)
    assert report.ok and report.done == len(DAYS) and report.skipped == 0
    assert report.rows == history[1].num_rows
    return out


def _part_files(out: Path) -> list[str]:
    return sorted(str(path.relative_to(out)) for path in out.rglob("*.parquet"))


def _all_tables(out: Path) -> dict[str, pa.Table]:
    return {
        name: batch.read_results(out, name).sort_by([("date", "ascending")])
        for name in (*batch.RESULT_TABLES,)
    }


def test_batch_job_writes_every_table_per_partition(history, clean_run):
    path, table = history
    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    totals = batch.read_results(clean_run, "totals")
    levels_table = batch.read_results(clean_run, "levels")
    assert sorted(set(totals.column("date").to_pylist())) == DAYS  # typed as in the input
    for day in DAYS:
        partition = dataset.to_table(filter=pc.field("date") == str(day))
        expected = batch.compute_partition(partition, **JOB_OPTIONS)
        for name, expected_table in expected.items():
            got = batch.read_results(clean_run, name)
            got = got.filter(pc.field("date") == day).drop_columns(["date"])
            assert got.equals(
                expected_table.drop_columns(
                    ["date"],
                )
                if "date" in expected_table.column_names
                else expected_table
            ), name
        # and the totals are those of the plain in-memory call on that day
        in_memory = fastgex.gex(table.filter(pc.field("date") == day))
        day_totals = totals.filter(pc.field("date") == day)
        assert (
            day_totals.column("underlying").to_pylist()
            == in_memory.by_underlying.column("underlying").to_pylist()
        )
        np.testing.assert_allclose(
            day_totals.column("total_gex").to_numpy(),
            in_memory.by_underlying.column("total_gex").to_numpy(),
            rtol=RELATIVE_TOLERANCE,
        )
    buckets = set(levels_table.column("bucket").to_pylist())
    assert {"all", "monthly"} <= buckets
    markers = sorted((clean_run / "_done").rglob("_SUCCESS.json"))
    assert [json.loads(marker.read_text())["partition"] for marker in markers] == [
        f"date={day}" for day in DAYS
    ]


def test_batch_rerun_skips_done_partitions(history, clean_run, tmp_path):
    before = {name: (clean_run / name).stat().st_mtime_ns for name in _part_files(clean_run)}
    report = batch.run_batch(history[0], clean_run, **JOB_OPTIONS)
    assert (report.done, report.skipped, report.rows, report.ok) == (0, len(DAYS), 0, True)
    after = {name: (clean_run / name).stat().st_mtime_ns for name in _part_files(clean_run)}
    assert after == before
    with pytest.raises(ValueError, match="other options"):
        batch.run_batch(history[0], clean_run, buckets=None)
    with pytest.raises(ValueError, match="other options"):
        batch.run_batch(history[0], clean_run, partition_by=["date", "underlying"], **JOB_OPTIONS)
    # the same options spelled differently (enum or string, defaults given) resume the job
    same = {
        **JOB_OPTIONS,
        "convention": fastgex.Convention.SHORT_CALLS_LONG_PUTS,
        "unit": "dollars_per_1pct",
    }
    assert batch.run_batch(history[0], clean_run, **same).skipped == len(DAYS)
    with pytest.raises(ValueError, match="scheduler"):
        batch.run_batch(history[0], tmp_path, scheduler="spark")
    with pytest.raises(ValueError, match="not in the dataset"):
        batch.run_batch(history[0], tmp_path / "x", partition_by=["nope"])
    flat = tmp_path / "flat"
    pq.write_table(history[1].slice(0, 100), tmp_path / "flat.parquet")
    with pytest.raises(ValueError, match="partition_by"):
        batch.run_batch(tmp_path / "flat.parquet", flat)


def test_batch_by_date_and_dictionary_underlying(history, clean_run, tmp_path):
    """Partitions by a hive key and a dictionary-typed data column; same numbers."""
    report = batch.run_batch(
        history[0], tmp_path, partition_by=["date", "underlying"], **JOB_OPTIONS
    )
    pairs = history[1].group_by(["date", "underlying"]).aggregate([])
    assert report.ok and report.done == report.partitions == pairs.num_rows
    fine = batch.read_results(tmp_path, "totals").sort_by(
        [("date", "ascending"), ("underlying", "ascending")]
    )
    coarse = batch.read_results(clean_run, "totals").sort_by(
        [("date", "ascending"), ("underlying", "ascending")]
    )
    assert fine.column("underlying").to_pylist() == coarse.column("underlying").to_pylist()
    assert fine.column("contracts").to_pylist() == coarse.column("contracts").to_pylist()
    np.testing.assert_allclose(
        fine.column("total_gex").to_numpy(), coarse.column("total_gex").to_numpy(), rtol=1e-12
    )


def test_batch_by_data_column_reads_only_the_files_holding_each_key(tmp_path):
    """Partitions by a column inside the files: each is read from its own files only."""
    table = sample.sample_market(6000, n_underlyings=6, seed=3)
    names = pc.cast(table.column("underlying"), pa.string())
    table = table.set_column(table.schema.get_field_index("underlying"), "underlying", names)
    table = table.sort_by("underlying")  # so each file holds one or two underlyings
    ds.write_dataset(table, tmp_path / "data", format="parquet", max_rows_per_file=1000,
                     max_rows_per_group=1000)  # fmt: skip
    dataset = ds.dataset(tmp_path / "data", format="parquet")
    files = {fragment.path for fragment in dataset.get_fragments()}
    listed = batch._partition_keys(dataset, ["underlying"])
    names = sorted(set(table.column("underlying").to_pylist()))
    assert [key for key, _, _ in listed] == [(("underlying", name),) for name in names]
    for key, rows, paths in listed:
        holding = {
            fragment.path
            for fragment in dataset.get_fragments()
            if key[0][1]
            in pq.read_table(fragment.path, columns=["underlying"]).column("underlying").to_pylist()
        }
        assert set(paths) == holding and len(holding) < len(files)
        assert rows == pc.sum(pc.equal(table.column("underlying"), key[0][1])).as_py()
    report = batch.run_batch(
        tmp_path / "data", tmp_path / "out", partition_by=["underlying"], n_levels=11
    )
    assert report.ok and report.done == len(names) and report.rows == table.num_rows
    totals = batch.read_results(tmp_path / "out", "totals").sort_by("underlying")
    expected = fastgex.gex(table).by_underlying
    assert totals.column("underlying").to_pylist() == expected.column("underlying").to_pylist()
    assert totals.column("contracts").equals(expected.column("contracts"))
    np.testing.assert_allclose(
        totals.column("total_gex").to_numpy(), expected.column("total_gex").to_numpy(), rtol=1e-12
    )
    # a file gone between the listing and the work: that partition fails, clearly
    gone = batch._process_partition(
        os.fspath(tmp_path / "data"), listed[0][0], os.fspath(tmp_path / "gone"), {},
        (*listed[0][2], "/nowhere/part-9.parquet"),
    )  # fmt: skip
    assert gone["status"] == "failed" and "gone from the dataset" in gone["error"]


def test_batch_keys_keep_their_types(tmp_path):
    """Date and timestamp hive keys are typed; results read back with the input's types."""
    rows = []
    for index, (day, hour) in enumerate([(8, 15), (8, 20), (9, 15)]):
        snapshot = dt.datetime(2024, 1, day, hour, 30, tzinfo=dt.timezone.utc)
        part = sample.sample_market(600, n_underlyings=2, seed=index, snapshot_time=snapshot)
        columns = {
            "date": pa.array([snapshot.date()] * part.num_rows, pa.date32()),
            "taken": pa.array([snapshot] * part.num_rows, pa.timestamp("us", tz="UTC")),
            "venue": pa.array([index % 2] * part.num_rows, pa.int64()),
        }
        for name, column in columns.items():
            part = part.append_column(name, column)
        rows.append(part)
    table = pa.concat_tables(rows)
    ds.write_dataset(table, tmp_path / "data", format="parquet", partitioning=["date", "taken"],
                     partitioning_flavor="hive")  # fmt: skip
    opened = batch._open_dataset(tmp_path / "data")
    assert opened.schema.field("date").type == pa.date32()
    assert opened.schema.field("taken").type == pa.timestamp("us", tz="UTC")
    report = batch.run_batch(
        tmp_path / "data", tmp_path / "out", partition_by=["date", "taken", "venue"], n_levels=11
    )
    assert report.ok and report.done == 3
    totals = batch.read_results(tmp_path / "out", "totals")
    assert totals.schema.field("date").type == pa.date32()
    assert totals.schema.field("taken").type == pa.timestamp("us", tz="UTC")
    assert totals.schema.field("venue").type == pa.int64()
    got = totals.group_by(["date", "taken", "venue"]).aggregate([("contracts", "sum")])
    want = table.group_by(["date", "taken", "venue"]).aggregate([])
    assert got.sort_by("taken").select(["date", "taken", "venue"]).equals(want.sort_by("taken"))
    # text that only looks like a date stays text
    for value in ("2024-01-08", "2024-13-45"):
        directory = tmp_path / "odd" / f"day={value}"
        directory.mkdir(parents=True)
        pq.write_table(table.slice(0, 10).drop_columns(["date", "taken"]), directory / "a.parquet")
    assert batch._open_dataset(tmp_path / "odd").schema.field("day").type == pa.string()


def test_batch_injected_failure_then_resume(history, clean_run, tmp_path, monkeypatch):
    """A partition that raises (any error) or cannot be written is reported, as on Dask;
    the others complete, and a rerun computes only the failed ones."""
    real_compute, real_write = batch.compute_partition, batch._atomic_write
    calls, writes = [], []

    def failing(table, **options):
        calls.append(table.num_rows)
        if len(calls) == 3:
            raise RuntimeError("injected crash")
        return real_compute(table, **options)

    def full_disk(path, write):
        writes.append(path)
        if len(writes) == 3 + 2:  # the job file, the keys file, then a partition's 3rd table
            raise OSError(28, "No space left on device")
        return real_write(path, write)

    monkeypatch.setattr(batch, "compute_partition", failing)
    monkeypatch.setattr(batch, "_atomic_write", full_disk)
    report = batch.run_batch(history[0], tmp_path, **JOB_OPTIONS)
    assert (report.done, len(report.failed), report.ok) == (len(DAYS) - 2, 2, False)
    assert dict(report.failed) == {
        f"date={DAYS[0]}": "OSError: [Errno 28] No space left on device",
        f"date={DAYS[2]}": "RuntimeError: injected crash",
    }
    done = {marker.parent.name for marker in (tmp_path / "_done").rglob("_SUCCESS.json")}
    assert done == {f"date={DAYS[1]}", f"date={DAYS[3]}"}
    monkeypatch.setattr(batch, "compute_partition", real_compute)
    monkeypatch.setattr(batch, "_atomic_write", real_write)
    report = batch.run_batch(history[0], tmp_path, **JOB_OPTIONS)
    assert (report.done, report.skipped, report.ok) == (2, len(DAYS) - 2, True)
    assert _part_files(tmp_path) == _part_files(clean_run)
    for name, table in _all_tables(tmp_path).items():
        assert_tables_close(table, _all_tables(clean_run)[name], label=name)


def test_batch_unknown_option_fails_before_any_work(history, tmp_path):
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['n_level'\]"):
        batch.run_batch(history[0], tmp_path / "out", n_level=21)
    assert not (tmp_path / "out").exists()


def test_batch_bad_partition_is_reported_not_fatal(tmp_path):
    table = _history(DAYS[:3], 1000, 3)
    spot = table.column("spot").to_numpy().copy()
    bad_day = np.asarray(table.column("date").to_pylist()) == DAYS[1]
    spot[bad_day] = -1.0
    table = table.set_column(table.schema.get_field_index("spot"), "spot", [spot])
    path = _write_history(tmp_path / "data", table)
    report = batch.run_batch(path, tmp_path / "out", n_levels=11)
    assert report.done == 2 and not report.ok
    assert [where for where, _ in report.failed] == [f"date={DAYS[1]}"]
    assert "spot" in report.failed[0][1]
    assert not (tmp_path / "out" / "_done" / f"date={DAYS[1]}").exists()
    assert main(["batch", str(path), "--out", str(tmp_path / "out"), "--levels", "11"]) == 1


KILLER = r"""
import os, signal, sys
from fastgex import batch
from fastgex.cli import main

replace, calls = os.replace, []


def killing_replace(source, target):
    calls.append(target)
    if len(calls) == int(sys.argv[1]):  # SIGKILL between writing a temp file and renaming it
        os.kill(os.getpid(), signal.SIGKILL)
    replace(source, target)


batch.os.replace = killing_replace
sys.exit(main(sys.argv[2:]))
"""


def test_batch_killed_process_resumes_without_loss_or_duplicates(tmp_path):
    days = [dt.date(2024, 2, 5) + dt.timedelta(days=offset) for offset in range(6)]
    path = _write_history(tmp_path / "data", _history(days, 3000, 6))
    out, clean = tmp_path / "out", tmp_path / "clean"
    arguments = ["batch", str(path), "--buckets", "--levels", "21", "--no-progress"]
    # the job and keys files, then 7 tables and a marker per partition: die inside the 3rd
    per_partition = len(batch.RESULT_TABLES) + 1
    kill_at = 2 + 2 * per_partition + 3
    # The clean run first: it also compiles (and caches on disk) every kernel the job
    # needs, so the killed process does not compile them again under a timeout.
    assert main([*arguments, "--out", str(clean)]) == 0
    completed = subprocess.run(
        [sys.executable, "-c", KILLER, str(kill_at), *arguments, "--out", str(out)],
        capture_output=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == -signal.SIGKILL, completed.stderr[-2000:]
    markers = sorted((out / "_done").rglob("_SUCCESS.json"))
    assert [marker.parent.name for marker in markers] == [f"date={day}" for day in days[:2]]
    torn = [path for path in out.rglob(".part-0.parquet.tmp-*")]
    assert len(torn) == 1 and f"date={days[2]}" in str(torn[0])  # the killed write
    assert len(list(out.glob(f"*/date={days[2]}/part-0.parquet"))) == 2  # no marker though
    # the killed partition's finished files do not count until its marker exists
    assert set(batch.read_results(out, "totals").column("date").to_pylist()) == set(days[:2])
    assert main([*arguments, "--out", str(out), "--json"]) == 0
    assert _part_files(out) == _part_files(clean)
    for name, table in _all_tables(out).items():
        assert_tables_close(table, _all_tables(clean)[name], label=name)
    # a plain reader of the output dataset sees no torn or duplicate file
    plain = ds.dataset(out / "totals", format="parquet", partitioning="hive").to_table()
    assert plain.num_rows == batch.read_results(clean, "totals").num_rows


def test_cli_batch_summary(history, tmp_path, capsys):
    arguments = ["batch", str(history[0]), "--out", str(tmp_path), "--levels", "11", "--json"]
    assert main(arguments) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["partitions"], first["done"], first["skipped"]) == (len(DAYS), len(DAYS), 0)
    assert first["rows"] == history[1].num_rows and first["failed"] == []
    assert main(arguments[:-1]) == 0
    assert f"0 done, {len(DAYS)} already done" in capsys.readouterr().out


# --------------------------------------------------------------------------- progress


def test_progress_quiet_off_terminal_and_drawn_on_one():
    quiet = io.StringIO()
    progress = Progress(1000, 4, stream=quiet)
    progress.update(rows=500, partitions=2)
    progress.close()
    assert quiet.getvalue() == "" and not progress.enabled
    shown = io.StringIO()
    progress = Progress(1000, 4, stream=shown, enabled=True)
    progress.update(rows=250, partitions=1)
    progress.close()
    text = shown.getvalue()
    assert text.startswith("\r[#####---------------] 1/4 partitions  250/1.0k rows")
    assert "rows/s" in text and "ETA 0:" in text and text.endswith("\n")


# --------------------------------------------------------------------------- engines


def test_partition_function_matches_the_job(history, clean_run):
    """The Arrow-in / Arrow-out function that Spark's applyInArrow calls."""
    dataset = ds.dataset(history[0], format="parquet", partitioning="hive")
    function = batch.partition_function("levels", ["date"], **JOB_OPTIONS)
    day = str(DAYS[1])  # a plain hive dataset reads date=... directories as text
    got = function(dataset.to_table(filter=pc.field("date") == day))
    written = batch.read_results(clean_run, "levels").filter(pc.field("date") == DAYS[1])
    assert got.column_names[0] == "date" and set(got.column("date").to_pylist()) == {day}
    assert got.drop_columns(["date"]).equals(written.drop_columns(["date"]))
    with pytest.raises(ValueError, match="table_name"):
        batch.partition_function("nope", ["date"])


def test_spark_apply_in_arrow_matches_the_job(history, clean_run, monkeypatch):
    """The scaling guide's Spark recipe (nox -s spark installs pyspark; skipped otherwise)."""
    pytest.importorskip("pyspark", reason="pyspark is not installed (run: nox -s spark)")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # Python workers: this interpreter
    from pyspark.sql import SparkSession
    from pyspark.sql.pandas.types import from_arrow_schema

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        frame = spark.read.parquet(str(history[0]))  # date=... directories: a date column
        function = batch.partition_function("totals", ["date"], **JOB_OPTIONS)
        sample_day = frame.filter(frame.date == DAYS[0]).toArrow()
        schema = from_arrow_schema(function(sample_day).schema)
        result = frame.groupBy("date").applyInArrow(function, schema).toArrow()
    finally:
        spark.stop()
    assert result.schema.field("date").type == pa.date32()  # Spark types date=... as dates
    keys = [("date", "ascending"), ("underlying", "ascending")]
    expected = batch.read_results(clean_run, "totals")
    expected = expected.select(result.column_names).sort_by(keys)
    result = result.sort_by(keys)
    assert result.column("underlying").equals(expected.column("underlying"))
    assert result.column("contracts").equals(expected.column("contracts"))
    np.testing.assert_allclose(
        result.column("total_gex").to_numpy(),
        expected.column("total_gex").to_numpy(),
        rtol=RELATIVE_TOLERANCE,
    )
