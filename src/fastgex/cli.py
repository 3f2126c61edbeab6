"""The ``fastgex`` command line: ``fastgex demo`` and ``fastgex gex CHAIN``."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from fastgex._chain import FORMATS
from fastgex.conventions import Convention, GammaSource, Unit


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
    return _money(value) + (" /1%" if unit is Unit.DOLLARS_PER_1PCT else " /pt")


def _print_result(result, top: int, out=None) -> None:
    out = sys.stdout if out is None else out
    unit = result.unit
    table = result.by_underlying
    rows = sorted(table.to_pylist(), key=lambda row: -abs(row["total_gex"]))
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
    for row in rows[:top]:
        spot = "n/a" if row["spot"] is None else f"{row['spot']:,.2f}"
        print(
            f"{row['underlying']:<12}{spot:>12}{_format_value(row['total_gex'], unit):>20}"
            f"{_format_value(row['call_gex'], unit):>20}{_format_value(row['put_gex'], unit):>20}"
            f"{row['contracts']:>11,}{row['dropped']:>9,}",
            file=out,
        )
    if len(rows) > top:
        print(f"... {len(rows) - top} more underlyings (use --json or --out for all)", file=out)
    if result.by_strike is not None and result.by_strike.num_rows:
        strikes = sorted(result.by_strike.to_pylist(), key=lambda row: -abs(row["net_gex"]))
        print(f"\nLargest |net GEX| strikes (top {min(top, len(strikes))}):", file=out)
        print(f"{'underlying':<12}{'strike':>12}{'net':>20}{'calls':>20}{'puts':>20}", file=out)
        for row in strikes[:top]:
            print(
                f"{row['underlying']:<12}{row['strike']:>12,.2f}"
                f"{_format_value(row['net_gex'], unit):>20}"
                f"{_format_value(row['call_gex'], unit):>20}"
                f"{_format_value(row['put_gex'], unit):>20}",
                file=out,
            )
    if result.dropped_count:
        print(f"\nDropped rows: {result.dropped_count:,}", file=out)
        totals: dict[str, int] = {}
        for row in result.dropped.to_pylist():
            totals[row["reason"]] = totals.get(row["reason"], 0) + row["count"]
        for reason, count in sorted(totals.items(), key=lambda item: -item[1]):
            print(f"  {reason:<26}{count:>10,}", file=out)


def _write_table(table: pa.Table, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        raise SystemExit(f"fastgex: --out must end in .parquet or .csv, not {path.name!r}")


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


def _cmd_gex(args: argparse.Namespace) -> int:
    from fastgex import gex

    chain = Path(args.chain)
    result = gex(
        chain,
        format=args.format,
        spot=_spot_arg(args.spot),
        snapshot_time=args.snapshot_time,
        convention=args.convention,
        unit=args.unit,
        gamma_source=args.gamma_source,
        rate=args.rate,
        dividend_yield=args.dividend_yield,
        day_count=args.day_count,
        settlement=args.settlement,
        settlement_tz=args.settlement_tz,
    )
    if args.out:
        _write_table(result.by_strike, Path(args.out))
    if args.json:
        json.dump(result.to_dict(), sys.stdout, default=str)
        print()
    else:
        _print_result(result, args.top)
        if args.out:
            print(f"\nPer-strike table written to {args.out}")
    return 0


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
    demo.set_defaults(handler=_cmd_demo)

    gex_cmd = commands.add_parser("gex", help="GEX of a chain file")
    gex_cmd.add_argument("chain", help="Parquet, Arrow IPC, CSV or CBOE quote file")
    gex_cmd.add_argument("--format", choices=FORMATS, default="auto")
    gex_cmd.add_argument("--spot", help="spot (one underlying) or NAME=SPOT,NAME=SPOT")
    gex_cmd.add_argument("--snapshot-time", help="ISO 8601 time of the snapshot")
    gex_cmd.add_argument(
        "--convention",
        choices=[c.value for c in Convention],
        default=Convention.SHORT_CALLS_LONG_PUTS.value,
    )
    gex_cmd.add_argument(
        "--unit", choices=[u.value for u in Unit], default=Unit.DOLLARS_PER_1PCT.value
    )
    gex_cmd.add_argument(
        "--gamma-source", choices=[g.value for g in GammaSource], default=GammaSource.MODEL.value
    )
    gex_cmd.add_argument("--rate", type=float, default=None, help="risk-free rate (fraction)")
    gex_cmd.add_argument(
        "--dividend-yield", type=float, default=None, help="dividend yield (fraction)"
    )
    gex_cmd.add_argument("--day-count", default="act365", help="act365 (default), bus252, bus262")
    gex_cmd.add_argument("--settlement", default="pm", help="pm (16:00), am (09:30) or HH:MM")
    gex_cmd.add_argument("--settlement-tz", default="America/New_York")
    gex_cmd.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    gex_cmd.add_argument("--out", help="write the per-strike table (.parquet or .csv)")
    gex_cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    gex_cmd.set_defaults(handler=_cmd_gex)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, KeyError, OSError) as error:
        print(f"fastgex: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
