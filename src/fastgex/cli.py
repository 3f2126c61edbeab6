"""The ``fastgex`` command line: ``demo``, ``gex``, ``levels`` and ``profile``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastgex._chain import FORMATS
from fastgex.conventions import Convention, GammaSource, Unit
from fastgex.plot import KINDS as PLOT_KINDS


def _money(value: float) -> str:
    """Human-readable dollars: $-11.00bn, $350.2m."""
    if value is None or not math.isfinite(value):
        return "n/a"
    magnitude = abs(value)
    for threshold, suffix in ((1e9, "bn"), (1e6, "m"), (1e3, "k")):
        if magnitude >= threshold:
            return f"${value / threshold:,.2f}{suffix}"
    return f"${value:,.2f}"


def _format_value(value: float, unit: Unit) -> str:
    if unit is Unit.SHARES_PER_DOLLAR:
        return f"{value:,.0f} sh/$"
    if unit is Unit.UNITS_PER_1PCT:
        return f"{value:,.0f} units/1%"
    return _money(value) + (" /1%" if unit is Unit.DOLLARS_PER_1PCT else " /pt")


def _largest_rows(table: pa.Table, column: str, top: int) -> list[dict]:
    """The ``top`` rows of ``table`` by ``|column|``, largest first (ties in table order).

    Ranked in numpy and converted to Python only for the rows printed: the per-strike
    table of the demo's market has about 150,000 rows, and ``to_pylist`` of all of them
    took a tenth of the demo's wall time.
    """
    magnitude = np.abs(table.column(column).to_numpy(zero_copy_only=False))
    order = np.argsort(-magnitude, kind="stable")[: max(top, 0)]
    return table.take(pa.array(order)).to_pylist()


def _print_result(result, top: int, out=None) -> None:
    out = sys.stdout if out is None else out
    unit = result.unit
    table = result.by_underlying
    rows = _largest_rows(table, "total_gex", top)
    print(
        f"GEX ({unit.value}, convention {result.convention.value}, gamma from "
        f"{result.gamma_source.value}, day count {result.day_count.name})",
        file=out,
    )
    print(
        f"{'underlying':<12}{'spot':>12}{'total':>20}{'calls':>20}{'puts':>20}"
        f"{'contracts':>11}{'dropped':>9}",
        file=out,
    )
    for row in rows:
        spot = "n/a" if row["spot"] is None else f"{row['spot']:,.2f}"
        print(
            f"{row['underlying']:<12}{spot:>12}{_format_value(row['total_gex'], unit):>20}"
            f"{_format_value(row['call_gex'], unit):>20}{_format_value(row['put_gex'], unit):>20}"
            f"{row['contracts']:>11,}{row['dropped']:>9,}",
            file=out,
        )
    if table.num_rows > top:
        more = table.num_rows - top
        print(f"... {more} more underlyings (use --json or --out for all)", file=out)
    if result.by_strike is not None and result.by_strike.num_rows:
        strikes = _largest_rows(result.by_strike, "net_gex", top)
        print(f"\nLargest |net GEX| strikes (top {len(strikes)}):", file=out)
        print(f"{'underlying':<12}{'strike':>12}{'net':>20}{'calls':>20}{'puts':>20}", file=out)
        for row in strikes:
            print(
                f"{row['underlying']:<12}{row['strike']:>12,.2f}"
                f"{_format_value(row['net_gex'], unit):>20}"
                f"{_format_value(row['call_gex'], unit):>20}"
                f"{_format_value(row['put_gex'], unit):>20}",
                file=out,
            )
    _print_dropped(result, out)


def _print_dropped(result, out) -> None:
    """Rows the run dropped, per reason (nothing when none were)."""
    if result.dropped_count:
        print(f"\nDropped rows: {result.dropped_count:,}", file=out)
        totals: dict[str, int] = {}
        for row in result.dropped.to_pylist():
            totals[row["reason"]] = totals.get(row["reason"], 0) + row["count"]
        for reason, count in sorted(totals.items(), key=lambda item: -item[1]):
            print(f"  {reason:<26}{count:>10,}", file=out)


_OUT_SUFFIXES = (".parquet", ".pq", ".csv")


def _out_path(text: str | None) -> Path | None:
    """The ``--out`` path, checked before any work is done."""
    if text is None:
        return None
    path = Path(text)
    if path.suffix.lower() not in _OUT_SUFFIXES:
        raise ValueError(f"--out must end in .parquet or .csv, not {path.name!r}")
    return path


def _flatten_lists(table: pa.Table) -> pa.Table:
    """List columns as ``;``-joined strings (CSV has no lists); other columns unchanged."""
    for index, column_field in enumerate(table.schema):
        if pa.types.is_list(column_field.type) or pa.types.is_large_list(column_field.type):
            joined = [
                None if items is None else ";".join(str(item) for item in items)
                for items in table.column(index).to_pylist()
            ]
            table = table.set_column(index, column_field.name, pa.array(joined, pa.string()))
    return table


def _write_table(table: pa.Table, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(_flatten_lists(table), path)
    else:
        raise ValueError(f"--out must end in .parquet or .csv, not {path.name!r}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from fastgex import gex
    from fastgex.sample import sample_market

    started = time.perf_counter()
    market = sample_market(args.contracts, seed=args.seed)
    built = time.perf_counter()
    result = gex(market)
    finished = time.perf_counter()
    if args.json:
        payload = result.to_dict()
        payload["timing_seconds"] = {"sample": built - started, "gex": finished - built}
        json.dump(payload, sys.stdout, default=str)
        print()
        return 0
    print(
        f"Sample market: {market.num_rows:,} contracts, "
        f"{result.by_underlying.num_rows:,} underlyings (seed {args.seed}); "
        f"built in {built - started:.2f} s, GEX in {finished - built:.2f} s\n"
    )
    _print_result(result, args.top)
    print(
        "\nGEX says how the market behaves if it moves (dealers long gamma dampen moves, "
        "short gamma amplify them), not which way it moves."
    )
    if args.chart:
        chart = _demo_chart(market, result, args.chart)
        if chart is None:
            print("(no chart: pip install 'fastgex[plot]' for one)")
        else:
            print(f"Chart: {chart}")
    return 0


def _spot_arg(text: str | None):
    if text is None:
        return None
    try:
        if "=" in text:  # SPX=4700,NDX=15000
            pairs = [item.split("=", 1) for item in text.split(",") if item]
            return {name.strip(): float(value) for name, value in pairs}
        return float(text)
    except ValueError:
        raise ValueError(
            f"--spot {text!r}: give a number, or NAME=SPOT pairs separated by commas"
        ) from None


def _gex_options(args: argparse.Namespace) -> dict:
    """Keywords of :func:`fastgex.gex` from the shared chain options."""
    return {
        "format": args.format,
        "spot": _spot_arg(args.spot),
        "snapshot_time": args.snapshot_time,
        "convention": args.convention,
        "unit": args.unit,
        "gamma_source": args.gamma_source,
        "rate": args.rate,
        "dividend_yield": args.dividend_yield,
        "day_count": args.day_count,
        "settlement": args.settlement,
        "settlement_tz": args.settlement_tz,
        "device": args.device,
    }


def _cmd_gex(args: argparse.Namespace) -> int:
    from fastgex import gex

    out_path = _out_path(args.out)
    result = gex(Path(args.chain), **_gex_options(args))
    if out_path is not None:
        _write_table(result.by_strike, out_path)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, default=str)
        print()
    else:
        _print_result(result, args.top)
        if out_path is not None:
            print(f"\nPer-strike table written to {out_path}")
    return 0


# ------------------------------------------------------------------ levels and profile


def _views(args: argparse.Namespace) -> tuple[str, ...]:
    """``all`` plus one ``ex_...`` view per ``--exclude``."""
    excluded = ["ex_" + name.replace("-", "_") for name in args.exclude or ()]
    return tuple(dict.fromkeys(["all", *excluded]))


def _grid_options(args: argparse.Namespace) -> dict:
    """Profile grid, buckets and views shared by ``levels`` and ``profile``."""
    if args.gamma_source != GammaSource.MODEL.value:
        raise ValueError(
            f"--gamma-source {args.gamma_source}: {args.command} recomputes gamma at other "
            "spot levels, so it needs --gamma-source model (a gamma column fits only the "
            "current spot)"
        )
    low, high = args.range
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise ValueError(f"--range {low:g} {high:g}: give LO HI as multiples of spot, 0 < LO < HI")
    if args.n_levels < 2:
        raise ValueError(f"--levels {args.n_levels}: the profile needs at least 2 levels")
    return {
        "n_levels": args.n_levels,
        "level_range": tuple(args.range),
        "buckets": "default" if args.buckets else None,
        "views": _views(args),
    }


def _number(value, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _compact(value: float, unit: Unit) -> str:
    """A GEX value without its unit (the header names it): $-11.00bn, 350.2m sh/$."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if abs(value) < 0.005:
        value = 0.0
    if unit in (Unit.SHARES_PER_DOLLAR, Unit.UNITS_PER_1PCT):
        return _money(value).replace("$", "") + " sh"
    return _money(value)


def _unit_label(unit: Unit) -> str:
    return {
        Unit.DOLLARS_PER_1PCT: "$ per 1% move",
        Unit.DOLLARS_PER_POINT: "$ per point",
        Unit.SHARES_PER_DOLLAR: "shares per $1",
    }.get(unit, unit.value)


def _grouped(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped by underlying, in their order."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["underlying"], []).append(row)
    return groups


def _largest_first(gex_result, names: Sequence[str], top: int) -> list[str]:
    """The ``top`` underlyings with the largest absolute total GEX."""
    totals = {
        row["underlying"]: abs(row["total_gex"])
        for row in gex_result.by_underlying.to_pylist()
        if row["total_gex"] is not None and math.isfinite(row["total_gex"])
    }
    return sorted(names, key=lambda name: -totals.get(name, 0.0))[:top]


def _header(kind: str, result, settings: dict) -> str:
    grid = f"{settings.get('levels')} levels"
    if settings.get("level_range"):
        low, high = settings["level_range"]
        grid += f" over {low:g}-{high:g} x spot"
    return (
        f"{kind} (GEX in {_unit_label(result.unit)}, convention {result.convention.value}, "
        f"day count {result.day_count.name}; grid {grid})"
    )


def _print_levels(result, top: int, out=None) -> None:
    out = sys.stdout if out is None else out
    unit = result.gex.unit
    print(_header("Levels", result.gex, result.settings), file=out)
    groups = _grouped(result.levels.to_pylist())
    shown = _largest_first(result.gex, list(groups), top)
    columns = ("zero gamma", "flip strike", "key gamma", "call wall", "put wall")
    width = max([16, *(len(row["bucket"]) + 2 for rows in groups.values() for row in rows)])
    for name in shown:
        rows = groups[name]
        print(f"\n{name}  spot {_number(rows[0]['spot'])}", file=out)
        print(
            f"{'bucket':<{width}}{'contracts':>10}{'total GEX':>14}"
            + "".join(f"{column:>13}" for column in columns)
            + "  regime",
            file=out,
        )
        notes = []
        for row in rows:
            regime = row["regime"] or "n/a"
            if row["regime_triggers"]:
                regime += f" ({', '.join(row['regime_triggers'])})"
            print(
                f"{row['bucket']:<{width}}{row['contracts']:>10,}"
                f"{_compact(row['total_gex'], unit):>14}"
                f"{_number(row['zero_gamma']):>13}{_number(row['flip_strike']):>13}"
                f"{_number(row['key_gamma_strike']):>13}{_number(row['call_wall']):>13}"
                f"{_number(row['put_wall']):>13}  {regime}",
                file=out,
            )
            for level in ("zero_gamma", "flip_strike"):
                reason = row[f"{level}_reason"]
                if row[level] is None and reason:
                    notes.append(f"  {row['bucket']}: no {level.replace('_', ' ')} ({reason})")
        for note in dict.fromkeys(notes):
            print(note, file=out)
    if len(groups) > len(shown):
        print(
            f"\n... {len(groups) - len(shown)} more underlyings (use --json or --out for all)",
            file=out,
        )
    _print_dropped(result.gex, out)


def _cmd_levels(args: argparse.Namespace) -> int:
    from fastgex import levels

    out_path = _out_path(args.out)
    result = levels(
        Path(args.chain),
        walls_relative_to_spot=args.walls_relative_to_spot,
        **_grid_options(args),
        **_gex_options(args),
    )
    if out_path is not None:
        _write_table(result.levels, out_path)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        _print_levels(result, args.top)
        if out_path is not None:
            print(f"\nLevels table written to {out_path}")
    return 0


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _profile_dict(result) -> dict:
    """JSON-ready profile: per underlying, its levels and one total-GEX list per bucket."""
    spots = {row["underlying"]: row["spot"] for row in result.gex.by_underlying.to_pylist()}
    underlyings = []
    for name, rows in _grouped(result.table.to_pylist()).items():
        per_bucket: dict[str, list] = {}
        levels: list = []
        ratios: list = []
        for row in rows:
            if not per_bucket or row["bucket"] == next(iter(per_bucket)):
                levels.append(row["level"])
                ratios.append(row["ratio"])
            per_bucket.setdefault(row["bucket"], []).append(row["total_gex"])
        underlyings.append(
            {
                "underlying": name,
                "spot": spots.get(name),
                "level": levels,
                "ratio": ratios,
                "total_gex": per_bucket,
            }
        )
    return _jsonable(
        {
            "underlyings": underlyings,
            "unit": result.gex.unit.value,
            "convention": result.gex.convention.value,
            "settings": result.settings,
        }
    )


def _print_profile(result, top: int, out=None) -> None:
    out = sys.stdout if out is None else out
    unit = result.gex.unit
    print(_header("GEX profile", result.gex, result.settings), file=out)
    payload = _profile_dict(result)
    entries = {entry["underlying"]: entry for entry in payload["underlyings"]}
    for name in _largest_first(result.gex, list(entries), top):
        entry = entries[name]
        buckets = list(entry["total_gex"])
        widths = [max(14, len(bucket) + 2) for bucket in buckets]
        print(f"\n{name}  spot {_number(entry['spot'])}", file=out)
        print(
            f"{'level':>12}{'x spot':>8}"
            + "".join(f"{bucket:>{w}}" for bucket, w in zip(buckets, widths, strict=True)),
            file=out,
        )
        for position, (level, ratio) in enumerate(zip(entry["level"], entry["ratio"], strict=True)):
            values = (entry["total_gex"][bucket][position] for bucket in buckets)
            print(
                f"{_number(level):>12}{_number(ratio, 3):>8}"
                + "".join(
                    f"{_compact(value, unit):>{w}}" for value, w in zip(values, widths, strict=True)
                ),
                file=out,
            )
    if len(entries) > top:
        print(
            f"\n... {len(entries) - top} more underlyings (use --json or --out for all)",
            file=out,
        )
    _print_dropped(result.gex, out)


def _cmd_profile(args: argparse.Namespace) -> int:
    from fastgex import profile

    out_path = _out_path(args.out)
    result = profile(Path(args.chain), **_grid_options(args), **_gex_options(args))
    if out_path is not None:
        _write_table(result.table, out_path)
    if args.json:
        print(json.dumps(_profile_dict(result)))
    else:
        _print_profile(result, args.top)
        if out_path is not None:
            print(f"\nProfile table written to {out_path}")
    return 0


# ------------------------------------------------------------------ the parser


def _add_chain_options(command: argparse.ArgumentParser, gex_unit: bool = True) -> None:
    """CHAIN and the options that map onto :func:`fastgex.gex` (gex, levels, profile).

    ``gex_unit=False`` leaves ``--unit`` out (commands whose units are not GEX's).
    """
    command.add_argument("chain", help="Parquet, Arrow IPC, CSV or CBOE quote file")
    command.add_argument("--format", choices=FORMATS, default="auto")
    command.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where the kernels run: cpu (default), cuda (NVIDIA GPU) or auto",
    )
    command.add_argument("--spot", help="spot (one underlying) or NAME=SPOT,NAME=SPOT")
    command.add_argument("--snapshot-time", help="ISO 8601 time of the snapshot")
    command.add_argument(
        "--convention",
        choices=[c.value for c in Convention],
        default=Convention.SHORT_CALLS_LONG_PUTS.value,
    )
    if gex_unit:
        command.add_argument(
            "--unit", choices=[u.value for u in Unit], default=Unit.DOLLARS_PER_1PCT.value
        )
    command.add_argument(
        "--gamma-source", choices=[g.value for g in GammaSource], default=GammaSource.MODEL.value
    )
    command.add_argument("--rate", type=float, default=None, help="risk-free rate (fraction)")
    command.add_argument(
        "--dividend-yield", type=float, default=None, help="dividend yield (fraction)"
    )
    command.add_argument("--day-count", default="act365", help="act365 (default), bus252, bus262")
    command.add_argument("--settlement", default="pm", help="pm (16:00), am (09:30) or HH:MM")
    command.add_argument("--settlement-tz", default="America/New_York")
    command.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    command.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_grid_options(command: argparse.ArgumentParser) -> None:
    """Profile grid, buckets and views (levels, profile)."""
    command.add_argument(
        "--levels",
        dest="n_levels",
        type=int,
        default=60,
        metavar="N",
        help="profile levels (default 60)",
    )
    command.add_argument(
        "--range",
        nargs=2,
        type=float,
        default=(0.8, 1.2),
        metavar=("LO", "HI"),
        help="profile range as multiples of spot (default 0.8 1.2)",
    )
    command.add_argument(
        "--buckets",
        action="store_true",
        help="also per expiry bucket (0dte, weekly, monthly, quarterly, long_dated)",
    )
    command.add_argument(
        "--exclude",
        action="append",
        choices=("next-expiry", "next-monthly"),
        help="add a view without the next expiry / next monthly (repeatable)",
    )


# ------------------------------------------------------------------ batch


def _cmd_batch(args: argparse.Namespace) -> int:
    from fastgex.batch import run_batch

    options = {
        **_gex_options_batch(args),
        **_grid_options(args),
    }
    partition_by = args.partition_by.split(",") if args.partition_by else None
    report = run_batch(
        args.dataset,
        args.out,
        partition_by=partition_by,
        scheduler=args.scheduler,
        address=args.address,
        n_workers=args.workers,
        progress=False if args.no_progress else None,
        **options,
    )
    summary = {
        "out": str(report.out),
        "partitions": report.partitions,
        "done": report.done,
        "skipped": report.skipped,
        "failed": [{"partition": where, "error": error} for where, error in report.failed],
        "rows": report.rows,
        "seconds": round(report.seconds, 3),
        "rows_per_second": round(report.rows_per_second),
    }
    if args.json:
        json.dump(summary, sys.stdout)
        print()
    else:
        print(
            f"{report.partitions} partitions: {report.done} done, {report.skipped} already "
            f"done, {len(report.failed)} failed; {report.rows:,} rows in {report.seconds:.1f} s "
            f"({report.rows_per_second:,.0f} rows/s) -> {report.out}"
        )
        for where, error in report.failed:
            print(f"  failed {where}: {error}", file=sys.stderr)
    return 0 if report.ok else 1


def _gex_options_batch(args: argparse.Namespace) -> dict:
    return {
        "convention": args.convention,
        "unit": args.unit,
        "gamma_source": args.gamma_source,
        "rate": args.rate,
        "dividend_yield": args.dividend_yield,
        "day_count": args.day_count,
        "settlement": args.settlement,
        "settlement_tz": args.settlement_tz,
    }


def _add_batch_command(commands) -> None:
    batch_cmd = commands.add_parser(
        "batch",
        help="resumable per-partition totals, levels, profiles and surfaces of a dataset",
    )
    batch_cmd.add_argument("dataset", help="Parquet dataset directory (hive partitions)")
    batch_cmd.add_argument("--out", required=True, help="output directory (resumable)")
    batch_cmd.add_argument("--scheduler", choices=("local", "dask"), default="local")
    batch_cmd.add_argument("--address", help="Dask scheduler address (default: a LocalCluster)")
    batch_cmd.add_argument("--workers", type=int, default=None, help="LocalCluster workers")
    batch_cmd.add_argument(
        "--partition-by", help="comma-separated key columns (default: the hive keys)"
    )
    batch_cmd.add_argument(
        "--convention",
        choices=[c.value for c in Convention],
        default=Convention.SHORT_CALLS_LONG_PUTS.value,
    )
    batch_cmd.add_argument(
        "--unit", choices=[u.value for u in Unit], default=Unit.DOLLARS_PER_1PCT.value
    )
    batch_cmd.add_argument(
        "--gamma-source", choices=[g.value for g in GammaSource], default=GammaSource.MODEL.value
    )
    batch_cmd.add_argument("--rate", type=float, default=None, help="risk-free rate (fraction)")
    batch_cmd.add_argument(
        "--dividend-yield", type=float, default=None, help="dividend yield (fraction)"
    )
    batch_cmd.add_argument("--day-count", default="act365", help="act365, bus252, bus262")
    batch_cmd.add_argument("--settlement", default="pm", help="pm (16:00), am (09:30) or HH:MM")
    batch_cmd.add_argument("--settlement-tz", default="America/New_York")
    _add_grid_options(batch_cmd)
    batch_cmd.add_argument("--no-progress", action="store_true", help="no progress line")
    batch_cmd.add_argument("--json", action="store_true", help="print the summary as JSON")
    batch_cmd.set_defaults(handler=_cmd_batch)


def _cmd_plot(args: argparse.Namespace) -> int:
    from fastgex import levels
    from fastgex.plot import plot, save

    options = _grid_options(args)
    if args.kind == "buckets":  # the bucket chart needs buckets
        options["buckets"] = "default"
    result = levels(Path(args.chain), **options, **_gex_options(args))
    path = save(plot(result, args.kind, args.underlying), args.out)
    print(f"wrote {path}")
    return 0


def _demo_chart(market, result, path: str) -> str | None:
    """The demo's chart: per-strike GEX of the largest underlying (needs matplotlib)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return None
    from fastgex import levels
    from fastgex.plot import plot_strikes, save

    totals = result.by_underlying  # the demo's own gex() result: no second pass
    largest = totals.column("underlying")[
        int(abs(totals.column("total_gex").to_numpy()).argmax())
    ].as_py()
    rows = market.filter(pc.equal(market.column("underlying"), largest))
    return str(save(plot_strikes(levels(rows)), path))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="fastgex",
        description="Dealer gamma exposure (GEX) of option chains, fast.",
    )
    from fastgex import __version__

    parser.add_argument("--version", action="version", version=f"fastgex {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="GEX of a generated sample market")
    demo.add_argument("--contracts", type=int, default=1_500_000, help="rows (default 1.5M)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    demo.add_argument("--json", action="store_true", help="print JSON instead of a table")
    demo.add_argument(
        "--chart",
        default="fastgex_demo.png",
        help="per-strike chart of the largest underlying (default fastgex_demo.png; "
        "needs the plot extra; '' for none)",
    )
    demo.set_defaults(handler=_cmd_demo)

    gex_cmd = commands.add_parser("gex", help="GEX of a chain file")
    _add_chain_options(gex_cmd)
    gex_cmd.add_argument("--out", help="write the per-strike table (.parquet or .csv)")
    gex_cmd.set_defaults(handler=_cmd_gex)

    levels_cmd = commands.add_parser(
        "levels", help="zero gamma, flip strike, walls and regime of a chain file"
    )
    _add_chain_options(levels_cmd)
    _add_grid_options(levels_cmd)
    levels_cmd.add_argument(
        "--walls-relative-to-spot",
        action="store_true",
        help="call wall at or above spot, put wall at or below spot",
    )
    levels_cmd.add_argument("--out", help="write the levels table (.parquet or .csv)")
    levels_cmd.set_defaults(handler=_cmd_levels)

    profile_cmd = commands.add_parser(
        "profile", help="total GEX at hypothetical spot levels of a chain file"
    )
    _add_chain_options(profile_cmd)
    _add_grid_options(profile_cmd)
    profile_cmd.add_argument("--out", help="write the profile table (.parquet or .csv)")
    profile_cmd.set_defaults(handler=_cmd_profile)
    _add_batch_command(commands)
    from fastgex._exposure_cli import add_commands as _add_exposure_commands

    _add_exposure_commands(commands)

    plot_cmd = commands.add_parser(
        "plot", help="chart of a chain file: strikes, profile, surface or buckets (PNG/SVG/PDF)"
    )
    _add_chain_options(plot_cmd)
    _add_grid_options(plot_cmd)
    plot_cmd.add_argument("--kind", choices=PLOT_KINDS,
                          default="strikes", help="the chart (default strikes)")  # fmt: skip
    plot_cmd.add_argument("--underlying", help="which underlying (default the largest |GEX|)")
    plot_cmd.add_argument("--out", required=True, help="image file (.png, .svg, .pdf)")
    plot_cmd.set_defaults(handler=_cmd_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:
        # The reader went away (``fastgex demo | head``): stop quietly, with the status a
        # process killed by SIGPIPE has, and keep the exit-time flush from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13
    except (ValueError, TypeError, KeyError, OSError, ImportError) as error:
        print(f"fastgex: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
