"""Dealer flow between two snapshots of a market: :func:`flow`.

The dealer delta of an underlying is ``D = sum Q * delta`` over its counted contracts,
with ``Q = sign * OI * m`` (or ``dealer_position * m``) as in :func:`fastgex.gex`.
Contracts are matched by ``(underlying, expiration, strike, option type)``. The change
``D1 - D0`` is split exactly into

* ``market = sum Q0 (delta1 - delta0)`` over matched contracts (positions held), itself
  ``gamma + vanna + charm + residual`` with ``gamma = Q0 Gamma0 (P1 - P0)`` (``P`` the
  spot, or the forward for Black-76 rows), ``vanna = Q0 Vanna0 (vol1 - vol0)``,
  ``charm = Q0 Charm0 (T0 - T1)`` (``Charm = -d delta / dT`` per year; the times are
  those the formulas use, floored at ``min_time_to_expiry``) and ``residual`` the
  higher-order terms and rate changes;
* ``position = sum (Q1 - Q0) delta1`` over matched contracts, plus ``Q1 delta1`` of
  contracts only in the current snapshot and ``-Q0 delta0`` of those only in the
  previous one (expired, delisted or dropped there).

All parts are reported in $ of delta (shares times each contract's current price, or
its previous price for contracts gone), so they add up to ``delta_change``;
``hedge_flow = -delta_change`` is what dealers must buy (+) or sell (-) to stay hedged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastgex import _exposure_kernels
from fastgex._errors import ChainError
from fastgex._exposures import _Contracts, _contracts
from fastgex._gex import DEFAULT_MIN_TIME_TO_EXPIRY, _column_numpy
from fastgex.conventions import Convention, DayCount, parse_convention

__all__ = ["FLOW_SCHEMA", "FlowResult", "flow", "flow_series"]

_KEYS = ["underlying", "expiry", "strike", "is_call"]
_PARTS = ("gamma", "vanna", "charm", "residual", "position")

FLOW_SCHEMA = pa.schema(
    [
        ("underlying", pa.string()),
        ("previous_spot", pa.float64()),
        ("current_spot", pa.float64()),
        ("previous_dealer_delta", pa.float64()),
        ("current_dealer_delta", pa.float64()),
        ("delta_change", pa.float64()),
        ("gamma", pa.float64()),
        ("vanna", pa.float64()),
        ("charm", pa.float64()),
        ("residual", pa.float64()),
        ("position", pa.float64()),
        ("hedge_flow", pa.float64()),
        ("matched", pa.int64()),
        ("only_previous", pa.int64()),
        ("only_current", pa.int64()),
    ]
)


@dataclass(frozen=True)
class FlowResult:
    """Dealer delta change between two snapshots, decomposed (see :doc:`/exposures`).

    Attributes
    ----------
    by_underlying : pyarrow.Table
        One row per underlying in either snapshot, by name: ``previous_spot``,
        ``current_spot``, ``previous_dealer_delta`` and ``current_dealer_delta``
        (shares), then in $ (shares x current price): ``delta_change`` =
        ``gamma + vanna + charm + residual + position``, and ``hedge_flow`` =
        ``-delta_change``; contract counts ``matched``, ``only_previous``,
        ``only_current``.
    dropped_previous, dropped_current : pyarrow.Table
        Rows not counted in each snapshot, per ``underlying`` and ``reason``.
    convention : Convention
        Dealer sign convention.
    settings : dict
        The other choices, for provenance.
    """

    by_underlying: pa.Table
    dropped_previous: pa.Table
    dropped_current: pa.Table
    convention: Convention
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        from fastgex._gex import _jsonable

        return {
            "underlyings": [
                {key: _jsonable(value) for key, value in row.items()}
                for row in self.by_underlying.to_pylist()
            ],
            "convention": self.convention.value,
            "dropped_previous": self.dropped_previous.to_pylist(),
            "dropped_current": self.dropped_current.to_pylist(),
            "settings": {key: _jsonable(value) for key, value in self.settings.items()},
        }


def _snapshot_table(contracts: _Contracts, tag: str) -> pa.Table:
    """Counted rows of one snapshot: match keys and the values the decomposition needs."""
    prepared = contracts.prepared
    if prepared.expiry_instants is None:
        raise ChainError(
            "flow matches contracts by (underlying, expiration, strike, type): both "
            "snapshots need an 'expiration' column (time_to_expiry changes between them)"
        )
    valid = contracts.valid
    work = prepared.work
    expiry = _column_numpy(work, "expiry", np.int32, 0)
    instants = np.asarray(prepared.expiry_instants, dtype=np.int64)
    names = pa.array(prepared.names, pa.string())
    time = np.maximum(_column_numpy(work, "time", np.float64, np.nan), contracts.min_time)
    columns = {
        "underlying": pc.take(names, pa.array(contracts.uid[valid])),
        "expiry": instants[expiry[valid]],
        "strike": _column_numpy(work, "strike", np.float64, np.nan)[valid],
        "is_call": contracts.is_call[valid],
        f"{tag}_shares": contracts.shares[valid],
        f"{tag}_price": contracts.price[valid],
        f"{tag}_vol": _column_numpy(work, "vol", np.float64, np.nan)[valid],
        f"{tag}_time": time[valid],
    }
    for name in ("delta", "gamma", "vanna", "charm"):
        columns[f"{tag}_{name}"] = contracts.greeks[name][valid]
    table = pa.table(columns)
    counts = table.group_by(_KEYS).aggregate([([], "count_all")])
    repeated = pc.greater(counts.column("count_all"), 1)
    if pc.any(repeated).as_py():
        example = counts.filter(repeated).slice(0, 1).to_pylist()[0]
        raise ChainError(
            f"the {tag} snapshot has {pc.sum(repeated).as_py()} repeated contracts (same "
            f"underlying, expiration, strike and type), e.g. {example}: aggregate them first"
        )
    return table


def _totals(values: np.ndarray, ids: np.ndarray, n_ids: int) -> np.ndarray:
    """Compensated sums per id (rows in the given, sorted order)."""
    sums, _, _ = _exposure_kernels.side_sums(
        np.ascontiguousarray(values, dtype=np.float64),
        np.ones(values.size, np.bool_),
        np.ones(values.size, np.bool_),
        ids.astype(np.int32),
        np.empty(0, np.int32),
        n_ids,
        0,
    )
    return sums[:, 0]


def flow(
    previous: Any,
    current: Any,
    *,
    previous_spot: float | Mapping[str, float] | Any | None = None,
    current_spot: float | Mapping[str, float] | Any | None = None,
    previous_snapshot_time: Any | None = None,
    current_snapshot_time: Any | None = None,
    convention: str | Convention = Convention.SHORT_CALLS_LONG_PUTS,
    rate: float | Mapping[str, float] | None = None,
    dividend_yield: float | Mapping[str, float] | None = None,
    day_count: str | DayCount = "act365",
    settlement: str | dt.time = "pm",
    settlement_tz: str = "America/New_York",
    min_time_to_expiry: float = DEFAULT_MIN_TIME_TO_EXPIRY,
    columns: Mapping[str, str] | None = None,
    format: str = "auto",
) -> FlowResult:
    """Dealer delta change between two snapshots, split into gamma, vanna, charm, position.

    Parameters
    ----------
    previous, current : table-like or path
        The two snapshots (anything :func:`fastgex.read_chain` accepts), each with
        ``expiration`` dates so contracts can be matched.
    previous_spot, current_spot, previous_snapshot_time, current_snapshot_time
        Spot and snapshot time of each, as ``spot`` / ``snapshot_time`` of
        :func:`fastgex.gex` (default: the chains' columns).
    convention, rate, dividend_yield, day_count, settlement, settlement_tz
        As for :func:`fastgex.gex` (the same for both snapshots; a rate column in a
        chain is read per snapshot).
    min_time_to_expiry, columns, format
        As for :func:`fastgex.exposures`.

    Returns
    -------
    FlowResult
        Per underlying: the exact dealer delta change and its parts in $, which add up
        to it (the residual is what the first-order parts miss), and drop counts.

    Raises
    ------
    fastgex.ChainError
        A snapshot lacks expirations, repeats a contract, or has no spot.
    """
    convention = parse_convention(convention)
    common = dict(
        convention=convention,
        rate=rate,
        dividend_yield=dividend_yield,
        day_count=day_count,
        settlement=settlement,
        settlement_tz=settlement_tz,
        min_time_to_expiry=min_time_to_expiry,
        columns=columns,
        format=format,
        wanted=("delta", "gamma", "vanna", "charm"),
    )
    before = _contracts(
        previous, spot=previous_spot, snapshot_time=previous_snapshot_time, **common
    )
    after = _contracts(current, spot=current_spot, snapshot_time=current_snapshot_time, **common)
    joined = _snapshot_table(before, "previous").join(
        _snapshot_table(after, "current"), keys=_KEYS, join_type="full outer"
    )
    joined = joined.sort_by([(key, "ascending") for key in _KEYS])
    in_previous = ~np.isnan(joined.column("previous_shares").to_numpy(zero_copy_only=False))
    in_current = ~np.isnan(joined.column("current_shares").to_numpy(zero_copy_only=False))

    def values(name: str) -> np.ndarray:
        return np.nan_to_num(joined.column(name).to_numpy(zero_copy_only=False), nan=0.0)

    shares0, shares1 = values("previous_shares"), values("current_shares")
    delta0, delta1 = values("previous_delta"), values("current_delta")
    matched = in_previous & in_current
    with np.errstate(invalid="ignore", over="ignore"):
        market = np.where(matched, shares0 * (delta1 - delta0), 0.0)
        parts = {
            "gamma": shares0
            * values("previous_gamma")
            * (values("current_price") - values("previous_price")),
            "vanna": shares0
            * values("previous_vanna")
            * (values("current_vol") - values("previous_vol")),
            "charm": shares0
            * values("previous_charm")
            * (values("previous_time") - values("current_time")),
        }
        for name in parts:
            parts[name] = np.where(matched, parts[name], 0.0)
        parts["residual"] = market - parts["gamma"] - parts["vanna"] - parts["charm"]
        parts["position"] = (
            np.where(matched, (shares1 - shares0) * delta1, 0.0)
            + np.where(in_previous & ~in_current, -shares0 * delta0, 0.0)
            + np.where(in_current & ~in_previous, shares1 * delta1, 0.0)
        )
    encoded = joined.column("underlying").combine_chunks().dictionary_encode()
    ids = encoded.indices.to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()
    n_ids = len(names)
    # $ at each row's current price (spot, or forward for Black-76 rows); contracts
    # gone from the current snapshot at their previous price.
    dollars = np.where(in_current, values("current_price"), values("previous_price"))
    out: dict[str, Any] = {
        "underlying": names,
        "previous_spot": _spots(before, names),
        "current_spot": _spots(after, names),
        "previous_dealer_delta": _totals(shares0 * delta0, ids, n_ids),
        "current_dealer_delta": _totals(shares1 * delta1, ids, n_ids),
    }
    with np.errstate(invalid="ignore", over="ignore"):
        out["delta_change"] = _totals((shares1 * delta1 - shares0 * delta0) * dollars, ids, n_ids)
        for name in _PARTS:
            out[name] = _totals(parts[name] * dollars, ids, n_ids)
    if not all(np.isfinite(out[name]).all() for name in ("delta_change", *_PARTS)):
        raise ChainError("a flow total is not finite: check open_interest / multiplier magnitudes")
    out["hedge_flow"] = -out["delta_change"]
    for name, mask in (
        ("matched", matched),
        ("only_previous", in_previous & ~in_current),
        ("only_current", in_current & ~in_previous),
    ):
        out[name] = np.bincount(ids, weights=mask, minlength=n_ids).astype(np.int64)
    table = pa.table(out, schema=FLOW_SCHEMA).sort_by([("underlying", "ascending")])
    from fastgex._exposures import _dropped_table

    return FlowResult(
        by_underlying=table,
        dropped_previous=_dropped_table(before.prepared.names, before.uid, before.status),
        dropped_current=_dropped_table(after.prepared.names, after.uid, after.status),
        convention=convention,
        settings={
            **after.settings,
            "previous_snapshot_time": _instant(before),
            "current_snapshot_time": _instant(after),
        },
    )


def _instant(contracts: _Contracts) -> dt.datetime | None:
    """The snapshot's one time (given or from its column), or None when it has none."""
    from fastgex._targets import snapshot_instant

    try:
        return snapshot_instant(contracts.prepared)
    except ChainError:
        return None


def _spots(contracts: _Contracts, names: list[str]) -> np.ndarray:
    """Spot per name (NaN for names not in the snapshot or without a spot)."""
    lookup = {name: index for index, name in enumerate(contracts.prepared.names)}
    spot = contracts.prepared.spot
    return np.array([spot[lookup[name]] if name in lookup else np.nan for name in names])


def flow_series(
    snapshots: Sequence[Any],
    *,
    snapshot_times: Sequence[Any] | None = None,
    spots: Sequence[Any] | None = None,
    **options: Any,
) -> pa.Table:
    """Flows between consecutive snapshots, as one Arrow time series.

    Parameters
    ----------
    snapshots : sequence of table-like or path
        Two or more snapshots of the same market, oldest first (e.g. a list of files).
    snapshot_times, spots : sequence, optional
        Per snapshot, as ``previous_snapshot_time`` / ``previous_spot`` of :func:`fastgex.flow`
        (default: the chains' own columns).
    **options
        The other keywords of :func:`fastgex.flow` (``convention``, ``rate``, ...).

    Returns
    -------
    pyarrow.Table
        ``step`` (0 for the first pair), ``previous_snapshot_time``,
        ``current_snapshot_time`` (UTC, null when the chains carry no single time) and
        the columns of ``FlowResult.by_underlying``, one row per (step, underlying).
    """
    snapshots = list(snapshots)
    if len(snapshots) < 2:
        raise ValueError("flow_series needs at least two snapshots")
    for name, values in (("snapshot_times", snapshot_times), ("spots", spots)):
        if values is not None and len(values) != len(snapshots):
            raise ValueError(f"{name} must have one entry per snapshot ({len(snapshots)})")
    times = list(snapshot_times) if snapshot_times is not None else [None] * len(snapshots)
    spot_values = list(spots) if spots is not None else [None] * len(snapshots)
    pieces = []
    for step in range(len(snapshots) - 1):
        result = flow(
            snapshots[step],
            snapshots[step + 1],
            previous_snapshot_time=times[step],
            current_snapshot_time=times[step + 1],
            previous_spot=spot_values[step],
            current_spot=spot_values[step + 1],
            **options,
        )
        table = result.by_underlying
        rows = table.num_rows
        stamps = pa.timestamp("us", tz="UTC")
        table = table.add_column(0, "step", pa.array([step] * rows, pa.int64()))
        for position, key in ((1, "previous_snapshot_time"), (2, "current_snapshot_time")):
            instant = result.settings.get(key)
            table = table.add_column(position, key, pa.array([instant] * rows, stamps))
        pieces.append(table)
    return pa.concat_tables(pieces)
