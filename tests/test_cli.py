"""The console script: fastgex demo and fastgex gex."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastgex.cli import _largest_rows, main
from fastgex.sample import sample_chain


def test_demo_prints_totals_and_strikes(capsys):
    assert main(["demo", "--contracts", "20000", "--top", "5", "--chart", ""]) == 0
    out = capsys.readouterr().out
    assert "SPX" in out and "Largest |net GEX| strikes" in out and "not which way" in out


def test_largest_rows_by_magnitude_ties_in_table_order():
    table = pa.table({"name": list("abcdef"), "net": [1.0, -5.0, 3.0, 5.0, -3.0, 0.0]})
    names = [row["name"] for row in _largest_rows(table, "net", 4)]
    assert names == ["b", "d", "c", "e"]  # |-5| = |5| and |3| = |-3| keep table order
    assert [row["name"] for row in _largest_rows(table, "net", 10)] == list("bdceaf")
    assert _largest_rows(table, "net", 0) == []
    assert _largest_rows(table.slice(0, 0), "net", 3) == []


def test_demo_json(capsys):
    assert main(["demo", "--contracts", "20000", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["underlyings"]) > 1
    assert {
        "underlying",
        "spot",
        "total_gex",
        "call_gex",
        "put_gex",
        "contracts",
        "dropped",
    } <= set(payload["underlyings"][0])


def test_output_cut_by_the_reader_is_not_an_error():
    """``fastgex demo | head``: a closed pipe ends the command quietly (status 141, SIGPIPE's)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fastgex", "demo", "--contracts", "2000", "--chart", ""],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # before the first write, so the write must fail
    with process.stderr:
        stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141
    assert stderr == ""


@pytest.fixture
def chain_file(tmp_path):
    path = tmp_path / "chain.parquet"
    pq.write_table(sample_chain("SPX", 4700.0, seed=1), path)
    return path


def test_gex_json_and_out(chain_file, tmp_path, capsys):
    out_csv = tmp_path / "strikes.csv"
    code = main(["gex", str(chain_file), "--json", "--convention", "long_calls_short_puts",
                 "--out", str(out_csv)])  # fmt: skip
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    (entry,) = payload["underlyings"]
    assert entry["underlying"] == "SPX" and entry["spot"] == 4700.0
    assert entry["total_gex"] == pytest.approx(entry["call_gex"] + entry["put_gex"], rel=1e-12)
    assert payload["convention"] == "long_calls_short_puts"
    assert out_csv.read_text().startswith('"underlying","strike"')
    out_parquet = tmp_path / "strikes.parquet"
    assert (
        main(["gex", str(chain_file), "--out", str(out_parquet), "--unit", "shares_per_dollar"])
        == 0
    )
    assert pq.read_table(out_parquet).num_rows > 100


def test_gex_errors_are_clear(tmp_path, capsys):
    assert main(["gex", str(tmp_path / "missing.parquet")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gex", "x.csv", "--unit", "furlongs"])


def test_console_script_entry_point():
    completed = subprocess.run(
        [sys.executable, "-m", "fastgex", "--version"], capture_output=True, text=True, check=True
    )
    assert completed.stdout.startswith("fastgex ")


def test_cli_reports_bad_paths_and_spots(tmp_path, capsys):
    assert main(["gex", str(tmp_path)]) == 2  # a directory: an error line, no traceback
    assert "error" in capsys.readouterr().err
    chain = tmp_path / "chain.parquet"
    pq.write_table(sample_chain("SPX", 4700.0, seed=1).drop_columns(["spot"]), chain)
    assert main(["gex", str(chain), "--spot", "SPX=4700,NDX"]) == 2
    assert "NAME=SPOT" in capsys.readouterr().err
