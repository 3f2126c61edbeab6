"""The batch job on Dask: identical to the local run, and a killed worker loses nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from conftest import assert_tables_close
from fastgex import batch, sample
from fastgex.cli import main

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install 'fastgex[dask]')"
)

DAYS = [dt.date(2024, 3, 4) + dt.timedelta(days=offset) for offset in range(6)]
OPTIONS = {"buckets": "default", "n_levels": 21}
TABLES = batch.RESULT_TABLES


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    tables = []
    for index, day in enumerate(DAYS):
        snapshot = dt.datetime(day.year, day.month, day.day, 15, 30, tzinfo=dt.timezone.utc)
        table = sample.sample_market(2000, n_underlyings=5, seed=index, snapshot_time=snapshot)
        tables.append(table.append_column("date", pa.array([day] * table.num_rows, pa.date32())))
    path = tmp_path_factory.mktemp("history")
    ds.write_dataset(
        pa.concat_tables(tables),
        path,
        format="parquet",
        partitioning=["date"],
        partitioning_flavor="hive",
    )
    return path


@pytest.fixture(scope="module")
def local_run(history, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    assert batch.run_batch(history, out, **OPTIONS).ok
    return out


@pytest.fixture(scope="module")
def client():
    # Worker processes (not threads): the kernels are Numba-parallel, one task per worker.
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        yield dask_client


def _tables(out: Path) -> dict[str, pa.Table]:
    return {name: batch.read_results(out, name).sort_by([("date", "ascending")]) for name in TABLES}


def _files(out: Path) -> list[str]:
    return sorted(str(path.relative_to(out)) for path in out.rglob("*.parquet"))


def test_dask_run_is_identical_to_the_local_run(history, local_run, client, tmp_path):
    report = batch.run_batch(history, tmp_path, scheduler="dask", client=client, **OPTIONS)
    assert report.ok and report.done == len(DAYS)
    partitions = {
        json.loads(marker.read_text())["partition"]
        for marker in (tmp_path / "_done").rglob("_SUCCESS.json")
    }
    assert len(partitions) == len(DAYS)
    assert _files(tmp_path) == _files(local_run)
    for name, table in _tables(tmp_path).items():
        assert_tables_close(table, _tables(local_run)[name], label=name)
    again = batch.run_batch(history, tmp_path, scheduler="dask", client=client, **OPTIONS)
    assert (again.done, again.skipped) == (0, len(DAYS))


def test_cli_dask_by_address(history, local_run, client, tmp_path, capsys):
    address = client.scheduler.address
    arguments = ["batch", str(history), "--out", str(tmp_path), "--buckets", "--levels", "21"]
    assert main([*arguments, "--scheduler", "dask", "--address", address, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["done"], summary["failed"]) == (len(DAYS), [])
    for name, table in _tables(tmp_path).items():
        assert_tables_close(table, _tables(local_run)[name], label=name)


def _kill_on_third_rename(out: str) -> int:
    """Runs on one worker: SIGKILL it between writing a temp file and renaming it."""
    import os
    import signal

    from fastgex import batch as worker_batch

    replace, calls = os.replace, []

    def killing_replace(source, target):
        if str(target).startswith(out):
            calls.append(target)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        replace(source, target)

    worker_batch.os.replace = killing_replace
    return os.getpid()


def test_dask_worker_killed_mid_job_loses_and_duplicates_nothing(
    history, local_run, client, tmp_path
):
    client.wait_for_workers(2)
    victim = sorted(client.scheduler_info()["workers"])[0]
    client.run(_kill_on_third_rename, str(tmp_path), workers=[victim])
    report = batch.run_batch(history, tmp_path, scheduler="dask", client=client, **OPTIONS)
    assert report.ok and report.done + report.skipped == len(DAYS)
    assert victim not in client.scheduler_info()["workers"]  # it did die (and was replaced)
    torn = list(tmp_path.rglob(".part-0.parquet.tmp-*"))
    assert len(torn) == 1  # the killed write, ignored by every reader
    assert _files(tmp_path) == _files(local_run)
    for name, table in _tables(tmp_path).items():
        assert_tables_close(table, _tables(local_run)[name], label=name)
    plain = ds.dataset(tmp_path / "totals", format="parquet", partitioning="hive").to_table()
    assert plain.num_rows == batch.read_results(local_run, "totals").num_rows


def _fail_one_day(day: str) -> None:
    """Runs on every worker: an unexpected error in one partition's computation."""
    from fastgex import batch as worker_batch

    real = worker_batch.compute_partition

    def failing(table, **options):
        if str(table.column("date")[0]) == day:
            raise RuntimeError("injected worker error")
        return real(table, **options)

    worker_batch.compute_partition = failing


def test_dask_task_error_is_reported_and_the_rest_completes(history, local_run, client, tmp_path):
    client.wait_for_workers(2)
    client.run(_fail_one_day, str(DAYS[2]))
    try:
        report = batch.run_batch(history, tmp_path, scheduler="dask", client=client, **OPTIONS)
    finally:
        client.restart()  # fresh workers without the patch
    assert report.done == len(DAYS) - 1 and not report.ok
    assert report.failed == [(f"date={DAYS[2]}", "RuntimeError: injected worker error")]
    again = batch.run_batch(history, tmp_path, scheduler="dask", client=client, **OPTIONS)
    assert (again.done, again.skipped) == (1, len(DAYS) - 1)
    for name, table in _tables(tmp_path).items():
        assert_tables_close(table, _tables(local_run)[name], label=name)


def test_dask_default_local_cluster(history, local_run, tmp_path):
    """No client and no address: run_batch starts (and closes) its own LocalCluster
    (two workers, one Numba thread each here): the same tables as the local run."""
    report = batch.run_batch(history, tmp_path, scheduler="dask", n_workers=2, **OPTIONS)
    assert report.ok and report.done == len(DAYS)
    for name, table in _tables(tmp_path).items():
        assert_tables_close(table, _tables(local_run)[name], label=name)


def test_local_cluster_splits_the_cores_between_workers(monkeypatch):
    """The job's own LocalCluster gives each worker cores // workers Numba threads."""
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    with batch.local_cluster(2) as cluster, distributed.Client(cluster) as dask_client:
        threads = dask_client.run(lambda: __import__("numba").config.NUMBA_NUM_THREADS)
    assert len(threads) == 2
    assert set(threads.values()) == {max(1, (os.cpu_count() or 1) // 2)}
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")  # a setting of the user's is kept
    with batch.local_cluster(1) as cluster, distributed.Client(cluster) as dask_client:
        assert set(
            dask_client.run(lambda: __import__("numba").config.NUMBA_NUM_THREADS).values()
        ) == {1}
