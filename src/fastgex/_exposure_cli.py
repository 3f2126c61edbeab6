"""The ``fastgex exposures``, ``fastgex hedge-flow`` and ``fastgex flow`` subcommands.

Kept apart from :mod:`fastgex.cli` so that module only registers them
(:func:`add_commands`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastgex._chain import FORMATS
from fastgex.cli import _add_chain_options, _money, _out_path, _spot_arg, _write_table
from fastgex.conventions import Convention
from fastgex.exposures import ExposureKind


def _options(args: argparse.Namespace) -> dict:
    """Keywords of :func:`fastgex.exposures.exposures` from the shared chain options."""
    if args.gamma_source != "model":
        raise ValueError("exposures use model greeks: --gamma-source column is not supported")
    if args.device != "cpu":
        raise ValueError("exposures run on the CPU only (no --device)")
    return {
        "format": args.format,
        "spot": _spot_arg(args.spot),
        "snapshot_time": args.snapshot_time,
        "convention": args.convention,
        "rate": args.rate,
        "dividend_yield": args.dividend_yield,
        "day_count": args.day_count,
        "settlement": args.settlement,
        "settlement_tz": args.settlement_tz,
    }


def _cmd_exposures(args: argparse.Namespace) -> int:
    from fastgex.exposures import exposures

    out_path = _out_path(args.out)
    result = exposures(Path(args.chain), kind=args.kind, **_options(args))
    if out_path is not None:
        _write_table(result.by_strike, out_path)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, default=str)
        print()
        return 0
    kind = result.kind.value
    print(f"{kind.upper()} ({result.unit}, convention {result.convention.value})")
    rows = sorted(result.by_underlying.to_pylist(), key=lambda row: -abs(row[f"total_{kind}"]))
    for row in rows[: args.top]:
        print(f"  {row['underlying']:<10} total {_money(row[f'total_{kind}']):>14}  "
              f"calls {_money(row[f'call_{kind}']):>14}  puts {_money(row[f'put_{kind}']):>14}"
              f"  ({row['contracts']} contracts, {row['dropped']} dropped)")  # fmt: skip
    if result.dropped_count:
        print(f"Dropped {result.dropped_count} rows:")
        for entry in result.dropped.to_pylist()[: args.top]:
            print(f"  {entry['underlying']}: {entry['reason']} x{entry['count']}")
    if out_path is not None:
        print(f"\nPer-strike table written to {out_path}")
    return 0


def _moves(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) / 100.0 for item in text.split(",") if item.strip())
    except ValueError:
        raise ValueError(f"--moves {text!r}: give percent moves separated by commas") from None


def _cmd_hedge_flow(args: argparse.Namespace) -> int:
    from fastgex.exposures import hedge_flow

    result = hedge_flow(Path(args.chain), _moves(args.moves), **_options(args))
    if args.json:
        rows = result.flows.to_pylist()
        json.dump({"flows": rows, "convention": result.convention.value,
                   "dropped": result.dropped.to_pylist()}, sys.stdout, default=str)  # fmt: skip
        print()
        return 0
    print(f"Dealer hedge flow, $ bought (+) / sold (-) (convention {result.convention.value})")
    for row in result.flows.to_pylist():
        print(f"  {row['underlying']:<10} {row['move']:+.2%}  exact {_money(row['hedge_flow']):>14}"
              f"  linear (GEX) {_money(row['linear_hedge_flow']):>14}")  # fmt: skip
    return 0


def _cmd_flow(args: argparse.Namespace) -> int:
    from fastgex.flow import flow, flow_series

    if len(args.snapshots) < 2:
        raise ValueError("flow needs two snapshots (PREV CURR), or more for a series")
    if len(args.snapshots) > 2:
        if any((args.previous_spot, args.current_spot, args.previous_snapshot_time,
                args.current_snapshot_time)):  # fmt: skip
            raise ValueError("a series of snapshots takes spots and times from the chains")
        series = flow_series(
            [Path(path) for path in args.snapshots], convention=args.convention,
            rate=args.rate, dividend_yield=args.dividend_yield, day_count=args.day_count,
            settlement=args.settlement, settlement_tz=args.settlement_tz, format=args.format,
        )  # fmt: skip
        if args.out:
            _write_table(series, _out_path(args.out))
        if args.json:
            json.dump(series.to_pylist(), sys.stdout, default=str)
            print()
        else:
            for row in series.to_pylist():
                change, hedge = _money(row["delta_change"]), _money(row["hedge_flow"])
                print(f"  step {row['step']}  {row['underlying']:<10} change {change}  "
                      f"hedge flow {hedge}")  # fmt: skip
        return 0
    result = flow(
        Path(args.snapshots[0]),
        Path(args.snapshots[1]),
        previous_spot=_spot_arg(args.previous_spot),
        current_spot=_spot_arg(args.current_spot),
        previous_snapshot_time=args.previous_snapshot_time,
        current_snapshot_time=args.current_snapshot_time,
        convention=args.convention,
        rate=args.rate,
        dividend_yield=args.dividend_yield,
        day_count=args.day_count,
        settlement=args.settlement,
        settlement_tz=args.settlement_tz,
        format=args.format,
    )
    if args.json:
        json.dump(result.to_dict(), sys.stdout, default=str)
        print()
        return 0
    print(f"Dealer delta change between snapshots, $ (convention {result.convention.value})")
    for row in result.by_underlying.to_pylist():
        names = ("gamma", "vanna", "charm", "position", "residual")
        parts = "  ".join(f"{name} {_money(row[name])}" for name in names)
        print(f"  {row['underlying']:<10} change {_money(row['delta_change'])}  ({parts})  "
              f"hedge flow {_money(row['hedge_flow'])}")  # fmt: skip
    return 0


def add_commands(commands) -> None:
    """Register the subcommands on ``fastgex``'s subparsers."""
    exposures_cmd = commands.add_parser(
        "exposures", help="dealer delta / gamma / vanna / charm / vega exposure of a chain file"
    )
    _add_chain_options(exposures_cmd)
    exposures_cmd.add_argument("--kind", choices=[kind.value for kind in ExposureKind],
                               default="dex", help="which exposure (default dex)")  # fmt: skip
    exposures_cmd.add_argument("--out", help="write the per-strike table (.parquet or .csv)")
    exposures_cmd.set_defaults(handler=_cmd_exposures)

    hedge_cmd = commands.add_parser(
        "hedge-flow", help="$ dealers buy or sell to re-hedge after hypothetical spot moves"
    )
    _add_chain_options(hedge_cmd)
    hedge_cmd.add_argument(
        "--moves", default="-2,-1,1,2", help="percent moves, e.g. --moves=-2,-1,1,2 (the default)"
    )
    hedge_cmd.set_defaults(handler=_cmd_hedge_flow)

    flow_cmd = commands.add_parser(
        "flow", help="dealer delta change between two snapshots: gamma, vanna, charm, position"
    )
    flow_cmd.add_argument(
        "snapshots", nargs="+", help="PREV CURR chain files (three or more: a series)"
    )
    flow_cmd.add_argument("--out", help="series mode: write the series (.parquet or .csv)")
    flow_cmd.add_argument("--format", choices=FORMATS, default="auto")
    for when in ("previous", "current"):
        flow_cmd.add_argument(f"--{when}-spot", help="spot, or NAME=SPOT,NAME=SPOT")
        flow_cmd.add_argument(f"--{when}-snapshot-time", help="ISO 8601 time of the snapshot")
    flow_cmd.add_argument("--convention", choices=[c.value for c in Convention],
                          default=Convention.SHORT_CALLS_LONG_PUTS.value)  # fmt: skip
    flow_cmd.add_argument("--rate", type=float, default=None, help="risk-free rate (fraction)")
    flow_cmd.add_argument("--dividend-yield", type=float, default=None, help="dividend yield")
    flow_cmd.add_argument("--day-count", default="act365", help="act365 (default), bus252, bus262")
    flow_cmd.add_argument("--settlement", default="pm", help="pm (16:00), am (09:30) or HH:MM")
    flow_cmd.add_argument("--settlement-tz", default="America/New_York")
    flow_cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    flow_cmd.set_defaults(handler=_cmd_flow)
