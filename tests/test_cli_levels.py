"""The console script's levels and profile commands."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import fastgex
from fastgex.cli import main
from fastgex.sample import sample_chain

LEVEL_FIELDS = {
    "underlying",
    "spot",
    "total_gex",
    "flip_strike",
    "zero_gamma",
    "key_gamma_strike",
    "call_wall",
    "put_wall",
    "regime",
}


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("chain") / "chain.parquet"
    pq.write_table(sample_chain("SPX", 4700.0, seed=1), path)
    return path


def _run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return json.loads(captured.out)


def _same(left, right, path="payload"):
    """Equal JSON payloads, floats to 1e-12 relative (parallel sums may reorder)."""
    if isinstance(left, float) and isinstance(right, float):
        assert math.isclose(left, right, rel_tol=1e-12, abs_tol=1e-300), path
    elif isinstance(left, dict):
        assert isinstance(right, dict) and list(left) == list(right), path
        for key in left:
            _same(left[key], right[key], f"{path}.{key}")
    elif isinstance(left, list):
        assert isinstance(right, list) and len(left) == len(right), path
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            _same(a, b, f"{path}[{index}]")
    else:
        assert left == right, path


def test_levels_json_matches_the_api(chain_file, capsys):
    payload = _run_json(capsys, ["levels", str(chain_file), "--json"])
    (entry,) = payload["underlyings"]
    assert LEVEL_FIELDS <= set(entry)
    assert entry["underlying"] == "SPX" and entry["spot"] == 4700.0
    assert entry["buckets"] == {}
    expected = json.loads(json.dumps(fastgex.levels(chain_file).to_dict()))
    _same(payload, expected)


def test_levels_options_reach_the_api(chain_file, capsys):
    argv = ["levels", str(chain_file), "--json", "--buckets", "--exclude", "next-expiry",
            "--levels", "41", "--range", "0.9", "1.1", "--walls-relative-to-spot",
            "--convention", "long_calls_short_puts", "--unit", "dollars_per_point",
            "--day-count", "bus252", "--rate", "0.05"]  # fmt: skip
    payload = _run_json(capsys, argv)
    result = fastgex.levels(
        chain_file,
        buckets="default",
        exclude="next-expiry",
        n_levels=41,
        level_range=(0.9, 1.1),
        walls_relative_to_spot=True,
        convention="long_calls_short_puts",
        unit="dollars_per_point",
        day_count="bus252",
        rate=0.05,
    )
    _same(payload, json.loads(json.dumps(result.to_dict())))
    assert payload["unit"] == "dollars_per_point"
    assert payload["convention"] == "long_calls_short_puts"
    (entry,) = payload["underlyings"]
    buckets = entry["buckets"]
    assert "ex_next_expiry" in buckets
    assert {"weekly", "monthly", "quarterly"} <= set(buckets)
    for name, levels in buckets.items():
        assert LEVEL_FIELDS <= set(levels), name
    # the buckets partition the chain: their totals add up to the "all" total
    bucket_total = sum(value["total_gex"] for key, value in buckets.items() if key in
                       ("0dte", "weekly", "monthly", "quarterly", "long_dated"))  # fmt: skip
    assert bucket_total == pytest.approx(entry["total_gex"], rel=1e-9)


def test_levels_exclude_adds_views(chain_file, capsys):
    payload = _run_json(capsys, ["levels", str(chain_file), "--json", "--exclude",
                                 "next-expiry", "--exclude", "next-monthly"])  # fmt: skip
    (entry,) = payload["underlyings"]
    assert set(entry["buckets"]) == {"ex_next_expiry", "ex_next_monthly"}
    assert entry["buckets"]["ex_next_expiry"]["contracts"] < entry["contracts"]
    single = _run_json(capsys, ["levels", str(chain_file), "--json", "--exclude", "next-monthly"])
    assert set(single["underlyings"][0]["buckets"]) == {"ex_next_monthly"}


def test_levels_text_report(chain_file, capsys):
    assert main(["levels", str(chain_file), "--buckets", "--exclude", "next-expiry"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Levels (GEX in $ per 1% move")
    assert "SPX  spot 4,700.00" in out
    for word in ("zero gamma", "flip strike", "call wall", "put wall", "regime"):
        assert word in out
    lines = out.splitlines()
    for bucket in ("all", "ex_next_expiry", "weekly", "monthly", "quarterly", "long_dated"):
        assert any(line.startswith(bucket + " ") for line in lines), bucket
    zero = fastgex.levels(chain_file).levels.column("zero_gamma")[0].as_py()
    assert f"{zero:,.2f}" in out


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_levels_out_round_trips(chain_file, tmp_path, capsys, suffix):
    out = tmp_path / f"levels{suffix}"
    assert main(["levels", str(chain_file), "--buckets", "--out", str(out)]) == 0
    assert f"Levels table written to {out}" in capsys.readouterr().out
    expected = fastgex.levels(chain_file, buckets="default").levels
    if suffix == ".parquet":
        table = pq.read_table(out)
        assert table.schema == expected.schema
        lists = ("top_call_oi_strikes", "top_put_oi_strikes", "regime_triggers")
        assert table.select(lists).equals(expected.select(lists))
    else:
        table = pacsv.read_csv(out)
        assert table.column_names == expected.column_names
        # list columns are ";"-joined in CSV
        joined = table.column("top_call_oi_strikes").to_pylist()
        assert joined == [
            ";".join(str(value) for value in values)
            for values in expected.column("top_call_oi_strikes").to_pylist()
        ]
    assert table.column("bucket").to_pylist() == expected.column("bucket").to_pylist()
    for name in ("total_gex", "zero_gamma", "flip_strike", "call_wall", "put_wall"):
        got = table.column(name).to_pylist()
        want = expected.column(name).to_pylist()
        assert [value is None for value in got] == [value is None for value in want], name
        pairs = [(a, b) for a, b in zip(got, want, strict=True) if b is not None]
        assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in pairs), name


def test_profile_text_json_and_out(chain_file, tmp_path, capsys):
    assert main(["profile", str(chain_file), "--levels", "5", "--range", "0.9", "1.1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GEX profile (") and "5 levels over 0.9-1.1 x spot" in out
    assert "4,700.00   1.000" in out  # the middle level is spot
    payload = _run_json(capsys, ["profile", str(chain_file), "--json", "--levels", "5",
                                 "--range", "0.9", "1.1", "--buckets"])  # fmt: skip
    (entry,) = payload["underlyings"]
    expected = fastgex.profile(chain_file, n_levels=5, level_range=(0.9, 1.1), buckets="default")
    levels, totals = expected.array("SPX", "all")
    assert entry["level"] == pytest.approx(levels.tolist(), rel=1e-15)
    assert entry["ratio"] == pytest.approx([0.9, 0.95, 1.0, 1.05, 1.1])
    assert entry["total_gex"]["all"] == pytest.approx(totals.tolist(), rel=1e-12)
    assert {"all", "weekly", "monthly"} <= set(entry["total_gex"])
    for name, values in entry["total_gex"].items():
        assert len(values) == 5, name
    for suffix, reader in ((".parquet", pq.read_table), (".csv", pacsv.read_csv)):
        path = tmp_path / f"profile{suffix}"
        assert main(["profile", str(chain_file), "--buckets", "--out", str(path)]) == 0
        assert f"Profile table written to {path}" in capsys.readouterr().out
        table = reader(path)
        want = fastgex.profile(chain_file, buckets="default").table
        assert table.column_names == ["underlying", "bucket", "level", "ratio", "total_gex"]
        assert table.num_rows == want.num_rows == 60 * len(set(want.column("bucket").to_pylist()))
        assert table.column("total_gex").to_pylist() == pytest.approx(
            want.column("total_gex").to_pylist(), rel=1e-12
        )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--range", "1.2", "0.8"], "--range 1.2 0.8"),
        (["--range", "0", "1.2"], "0 < LO < HI"),
        (["--levels", "1"], "at least 2 levels"),
        (["--gamma-source", "column"], "--gamma-source model"),
        (["--out", "levels.txt"], ".parquet or .csv"),
        (["--spot", "SPX=4700,NDX"], "NAME=SPOT"),
    ],
)
@pytest.mark.parametrize("command", ["levels", "profile"])
def test_errors_are_one_line_and_exit_2(chain_file, capsys, command, extra, message):
    assert main([command, str(chain_file), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("fastgex: error: ") and message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["levels", str(tmp_path / "missing.parquet")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["profile", str(tmp_path)]) == 2  # a directory
    assert capsys.readouterr().err.startswith("fastgex: error: ")


@pytest.fixture
def undated_file(tmp_path):
    chain = sample_chain("SPX", 4700.0, seed=1)
    days = pa.array([30 / 365.0] * chain.num_rows)
    undated = chain.drop_columns(["expiration", "snapshot_time"]).append_column(
        "time_to_expiry", days
    )
    path = tmp_path / "undated.parquet"
    pq.write_table(undated, path)
    return path


def test_undated_chain_with_buckets_exits_2(undated_file, capsys):
    for argv in (["levels", str(undated_file), "--buckets"],
                 ["profile", str(undated_file), "--exclude", "next-expiry"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("fastgex: error: ") and err.count("\n") == 1


def test_undated_chain(undated_file, capsys):
    assert main(["levels", str(undated_file), "--json"]) == 0  # no buckets: no dates needed
    assert json.loads(capsys.readouterr().out)["underlyings"][0]["underlying"] == "SPX"
    assert main(["levels", str(undated_file), "--buckets"]) == 2
    assert "expiration" in capsys.readouterr().err


def test_bad_choices_are_argparse_errors(chain_file):
    with pytest.raises(SystemExit) as raised:
        main(["levels", str(chain_file), "--exclude", "next-week"])
    assert raised.value.code == 2
    with pytest.raises(SystemExit) as raised:
        main(["profile", str(chain_file), "--range", "0.9"])
    assert raised.value.code == 2


def test_real_spx_zero_gamma(chains_dir, capsys):
    chain = chains_dir / "phammings_spx_quotedata_2024-01-07.csv"
    if not chain.exists():
        pytest.skip(f"{chain.name} not in {chains_dir}")
    payload = _run_json(capsys, ["levels", str(chain), "--day-count", "bus262", "--json"])
    (entry,) = payload["underlyings"]
    assert entry["underlying"] == "SPX"
    assert entry["zero_gamma"] == pytest.approx(4734, abs=3)
    assert entry["zero_gamma_grid"] == pytest.approx(4734.5, abs=1)
    assert LEVEL_FIELDS <= set(entry)
    buckets = _run_json(capsys, ["levels", str(chain), "--day-count", "bus262", "--json",
                                 "--buckets", "--exclude", "next-expiry"])  # fmt: skip
    assert {"ex_next_expiry", "weekly", "monthly"} <= set(buckets["underlyings"][0]["buckets"])
    assert main(["profile", str(chain), "--day-count", "bus262", "--levels", "7"]) == 0
    assert "SPX  spot 4,697.24" in capsys.readouterr().out
