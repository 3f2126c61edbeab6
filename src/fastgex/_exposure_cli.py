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
from fastgex._exposures import EXPOSURE_UNIT_FACTORS, ExposureKind
from fastgex._gex import _jsonable
from fastgex.cli import (
    _add_chain_options,
    _add_grid_options,
    _grid_options,
    _money,
    _out_path,
    _spot_arg,
    _write_table,
)
from fastgex.conventions import Convention

#: Every unit of some exposure kind (``exposures`` checks the kind's own).
_EXPOSURE_UNITS = list(dict.fromkeys(unit for units in EXPOSURE_UNIT_FACTORS.values()
                                     for unit in units))  # fmt: skip


def _options(args: argparse.Namespace) -> dict:
    """Keywords of :func:`fastgex.exposures` from the shared chain options."""
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
    from fastgex import exposure_profile
    from fastgex._exposures import exposures

    out_path = _out_path(args.out)
    options = _options(args)  # first: its errors name exposures, not the profile
    grid = _grid_options(args)
    unit = {"unit": args.unit}
    if args.profile:
        profiled = exposure_profile(Path(args.chain), kind=args.kind, **unit, **grid,
                                    **options)  # fmt: skip
        if out_path is not None:
            _write_table(profiled.table, out_path)
        if args.json:
            json.dump(_profile_dict(profiled), sys.stdout, default=str)
            print()
        else:
            _print_profile(profiled, args.top)
        return 0
    targets = {"buckets": grid["buckets"], "views": grid["views"]}
    if targets["buckets"] is None and targets["views"] == ("all",):
        targets = {}  # plain per-strike tables, as fastgex gex
    result = exposures(Path(args.chain), kind=args.kind, **unit, **targets, **options)
    if out_path is not None:
        table = result.by_strike_bucket if targets else result.by_strike
        _write_table(table, out_path)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, default=str)
        print()
        return 0
    kind = result.kind.value
    print(f"{kind.upper()} ({result.unit}, convention {result.convention.value})")
    rows = sorted(result.by_underlying.to_pylist(), key=lambda row: -abs(row[f"total_{kind}"]))
    per_bucket: dict[str, list[dict]] = {}
    for row in result.by_bucket.to_pylist() if result.by_bucket is not None else ():
        per_bucket.setdefault(row["underlying"], []).append(row)
    for row in rows[: args.top]:
        print(f"  {row['underlying']:<10} total {_value(row[f'total_{kind}'], result.unit):>14}  "
              f"calls {_value(row[f'call_{kind}'], result.unit):>14}  "
              f"puts {_value(row[f'put_{kind}'], result.unit):>14}"
              f"  ({row['contracts']} contracts, {row['dropped']} dropped)")  # fmt: skip
        for part in per_bucket.get(row["underlying"], ()):
            print(f"    {part['bucket']:<16} {_value(part[f'total_{kind}'], result.unit):>14}"
                  f"  ({part['contracts']} contracts)")  # fmt: skip
    if result.dropped_count:
        print(f"Dropped {result.dropped_count} rows:")
        for entry in result.dropped.to_pylist()[: args.top]:
            print(f"  {entry['underlying']}: {entry['reason']} x{entry['count']}")
    if out_path is not None:
        print(f"\nPer-strike table written to {out_path}")
    return 0


def _value(value: float, unit: str) -> str:
    """An exposure in its unit: $ amounts as $-1.20bn, units of the underlying as 1.20bn."""
    text = _money(value)
    return text if unit.startswith("dollars") else text.replace("$", "")


def _profile_dict(profiled) -> dict:
    """JSON-ready exposure profile: per underlying, its levels and one list per bucket."""
    column = f"total_{profiled.kind.value}"
    spots = {row["underlying"]: row["spot"]
             for row in profiled.exposures.by_underlying.to_pylist()}  # fmt: skip
    underlyings: dict[str, dict] = {}
    for row in profiled.table.to_pylist():
        entry = underlyings.setdefault(
            row["underlying"],
            {"underlying": row["underlying"], "spot": spots.get(row["underlying"]),
             "level": [], "ratio": [], column: {}},
        )  # fmt: skip
        values = entry[column].setdefault(row["bucket"], [])
        if len(values) == len(entry["level"]):  # the first bucket adds the levels
            entry["level"].append(row["level"])
            entry["ratio"].append(row["ratio"])
        values.append(row[column])
    return {
        "kind": profiled.kind.value,
        "unit": profiled.unit,
        "convention": profiled.exposures.convention.value,
        "underlyings": list(underlyings.values()),
        "settings": {key: _jsonable(value) for key, value in profiled.settings.items()},
    }


def _print_profile(profiled, top: int) -> None:
    payload = _profile_dict(profiled)
    column = f"total_{profiled.kind.value}"
    print(f"{profiled.kind.value.upper()} profile ({profiled.unit}, convention "
          f"{payload['convention']}; {payload['settings']['levels']} levels)")  # fmt: skip
    totals = {row["underlying"]: abs(row[column] or 0.0)
              for row in profiled.exposures.by_underlying.to_pylist()}  # fmt: skip
    entries = sorted(payload["underlyings"], key=lambda entry: -totals[entry["underlying"]])
    for entry in entries[:top]:
        buckets = list(entry[column])
        print(f"\n{entry['underlying']}  spot {entry['spot']}")
        print(f"{'level':>12}{'x spot':>8}" + "".join(f"{bucket:>16}" for bucket in buckets))
        for position, level in enumerate(entry["level"]):
            ratio = entry["ratio"][position]
            values = "".join(f"{_value(entry[column][bucket][position], profiled.unit):>16}"
                             for bucket in buckets)  # fmt: skip
            print(f"{level:>12,.2f}{ratio:>8.3f}{values}")


def _moves(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) / 100.0 for item in text.split(",") if item.strip())
    except ValueError:
        raise ValueError(f"--moves {text!r}: give percent moves separated by commas") from None


def _cmd_hedge_flow(args: argparse.Namespace) -> int:
    from fastgex._exposures import hedge_flow

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
    from fastgex._flow import flow, flow_series

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
    _add_chain_options(exposures_cmd, gex_unit=False)
    _add_grid_options(exposures_cmd)
    exposures_cmd.add_argument("--kind", choices=[kind.value for kind in ExposureKind],
                               default="dex", help="which exposure (default dex)")  # fmt: skip
    exposures_cmd.add_argument(
        "--unit",
        choices=_EXPOSURE_UNITS,
        default=None,
        help="a unit of the kind (default: dollars_delta, dollars_per_1pct, "
        "dollars_delta_per_vol_point, dollars_delta_per_day, dollars_per_vol_point)",
    )
    exposures_cmd.add_argument(
        "--profile",
        action="store_true",
        help="the exposure at hypothetical spot levels (--levels, --range) instead",
    )
    exposures_cmd.add_argument(
        "--out",
        help="write the per-strike table (per bucket with --buckets / --exclude; the "
        "profile with --profile) as .parquet or .csv",
    )
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
