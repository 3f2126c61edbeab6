"""The ``fastgex exposures``, ``fastgex hedge-flow`` and ``fastgex flow`` subcommands.

Kept apart from :mod:`fastgex.cli` so that module only registers them
(:func:`add_commands`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastgex.cli import _add_chain_options, _money, _out_path, _spot_arg, _write_table
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
