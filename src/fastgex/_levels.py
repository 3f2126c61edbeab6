"""Levels, the GEX profile, expiry buckets and surfaces: the ``levels``/``profile`` façade.

One call runs the fused GEX kernel once with per-(underlying, strike, expiry) groups and
the profile kernel once over the same rows; every bucket, view, per-strike table,
profile and level is then a cheap reduction of those two results. The bucket of each
expiry is decided once (:mod:`fastgex.buckets`), never per row.

Where each number comes from:

* per-strike sums, OI, walls, key strikes - :mod:`fastgex._gex_kernel` (group sums);
* profile and zero gamma - :mod:`fastgex._profile_kernel`, refined by
  :func:`fastgex._levels_kernels.refine_brackets`;
* crossings and extremes - :mod:`fastgex._levels_kernels`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastgex import _kernels, _levels_kernels, _profile_kernel
from fastgex._errors import ChainError
from fastgex._gex import (
    GexResult,
    _column_numpy,
    _engine,
    _jsonable,
    _numpy,
    _readonly,
    reported_underlyings,
)
from fastgex._targets import TargetSums, resolve_targets, target_sums
from fastgex.buckets import VIEWS
from fastgex.conventions import GammaSource, parse_gamma_source
from fastgex.regime import RegimeThresholds, classify_regime

#: Default profile grid: 60 levels from 0.8 to 1.2 x spot (the public script's grid).
DEFAULT_LEVELS = 60
DEFAULT_RANGE = (0.8, 1.2)
#: Interior points per bracket and refinement rounds for the exact zero gamma: each round
#: shrinks a bracket 8x, so 6 rounds take a grid interval (0.7% of spot by default) to
#: ~3e-8 x spot, where the final linear interpolation is exact to ~1e-15 x spot (the
#: profile is smooth: its curvature error scales with the bracket width squared).
_REFINE_POINTS = 7
_REFINE_ROUNDS = 6
#: Vol models of the profile.
VOL_MODELS = ("sticky_strike", "sticky_moneyness")

LEVELS_SCHEMA = pa.schema(
    [
        ("underlying", pa.string()),
        ("bucket", pa.string()),
        ("spot", pa.float64()),
        ("total_gex", pa.float64()),
        ("call_gex", pa.float64()),
        ("put_gex", pa.float64()),
        ("contracts", pa.int64()),
        ("flip_strike", pa.float64()),
        ("flip_strike_reason", pa.string()),
        ("zero_gamma", pa.float64()),
        ("zero_gamma_grid", pa.float64()),
        ("zero_gamma_reason", pa.string()),
        ("key_gamma_strike", pa.float64()),
        ("key_gamma_gex", pa.float64()),
        ("call_wall", pa.float64()),
        ("put_wall", pa.float64()),
        ("absolute_gamma_strike", pa.float64()),
        ("top_call_oi_strikes", pa.list_(pa.float64())),
        ("top_put_oi_strikes", pa.list_(pa.float64())),
        ("regime", pa.string()),
        ("regime_triggers", pa.list_(pa.string())),
    ]
)
CROSSINGS_SCHEMA = pa.schema(
    [
        ("underlying", pa.string()),
        ("bucket", pa.string()),
        ("kind", pa.string()),
        ("value", pa.float64()),
        ("grid_value", pa.float64()),
        ("primary", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class LevelsResult:
    """Levels, profile, per-bucket strike tables and surfaces of a chain.

    Attributes
    ----------
    levels : pyarrow.Table
        One row per (underlying, bucket), where ``bucket`` is a view (``all``,
        ``ex_next_expiry``, ``ex_next_monthly``) or an expiry bucket. Columns are
        described in the docs (levels page); a level that does not exist is null
        with its ``*_reason``.
    crossings : pyarrow.Table
        Every crossing: ``kind`` is ``flip_strike`` or ``zero_gamma``; ``value`` the
        level (exact root for zero gamma), ``grid_value`` the grid-interpolated one
        (zero gamma) and ``primary`` marks the crossing nearest spot.
    profile : pyarrow.Table
        ``underlying``, ``bucket``, ``level`` (hypothetical spot), ``ratio`` (level /
        spot) and ``total_gex`` at that level.
    by_strike : pyarrow.Table
        Per (underlying, bucket, strike): call/put/net GEX, cumulative net over
        ascending strikes, call/put open interest and contracts.
    by_strike_expiry : pyarrow.Table or None
        Per (underlying, expiry, strike) with the expiry's bucket: the strike x expiry
        surface in long form (None when the chain has no expiration dates).
    gex : GexResult
        The plain GEX result of the same run (totals, drops, provenance).
    """

    levels: pa.Table
    crossings: pa.Table
    profile: pa.Table
    by_strike: pa.Table
    by_strike_expiry: pa.Table | None
    gex: GexResult
    settings: dict[str, Any] = field(default_factory=dict)

    def surface(self, underlying: str, by: str = "bucket") -> tuple[np.ndarray, list, np.ndarray]:
        """Dense net-GEX surface of one underlying: strikes x buckets (or expiries).

        Parameters
        ----------
        underlying : str
            The underlying's name.
        by : {"bucket", "expiry"}
            Columns are the buckets (and views) or the expiry dates.

        Returns
        -------
        strikes : numpy.ndarray
            Ascending strikes (rows).
        columns : list
            Bucket names or expiry dates (columns).
        matrix : numpy.ndarray
            ``matrix[i, j]`` net GEX at ``strikes[i]`` in ``columns[j]``; 0.0 where no
            contract exists.
        """
        return dense_surface(self.by_strike, self.by_strike_expiry, underlying, by, "net_gex")

    def profile_surface(self, underlying: str) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Dense profile of one underlying: levels x buckets.

        Returns
        -------
        levels : numpy.ndarray
            The hypothetical spot levels (rows).
        buckets : list of str
            Views and buckets (columns).
        matrix : numpy.ndarray
            Total GEX at each level in each bucket.
        """
        table = self.profile.filter(pc.equal(self.profile.column("underlying"), underlying))
        if table.num_rows == 0:
            raise KeyError(f"no underlying {underlying!r} in the result")
        buckets = list(dict.fromkeys(table.column("bucket").to_pylist()))
        n_levels = table.num_rows // len(buckets)
        matrix = table.column("total_gex").to_numpy().reshape(len(buckets), n_levels).T
        levels = table.column("level").to_numpy()[:n_levels]
        return levels, buckets, matrix

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready levels: ``{"underlyings": [{..., "buckets": {name: {...}}}], ...}``.

        Each underlying's entry holds the ``all`` view's levels; ``buckets`` holds the
        same fields for every other view and bucket.
        """
        # Crossing values per (underlying, bucket, kind), gathered once.
        crossings: dict[tuple, list[float]] = {}
        for item in self.crossings.to_pylist():
            key = (item["underlying"], item["bucket"], item["kind"])
            crossings.setdefault(key, []).append(item["value"])
        entries: dict[str, dict[str, Any]] = {}
        for row in self.levels.to_pylist():
            clean = {key: _jsonable_deep(value) for key, value in row.items()}
            name = clean["underlying"]
            bucket = clean.pop("bucket")
            clean["flip_strikes"] = crossings.get((name, bucket, "flip_strike"), [])
            clean["zero_gammas"] = crossings.get((name, bucket, "zero_gamma"), [])
            entry = entries.setdefault(name, {"buckets": {}})
            if bucket == "all":
                entry.update(clean)
            else:
                entry["buckets"][bucket] = clean
        return {
            "underlyings": [
                {"underlying": name, **{k: v for k, v in entry.items() if k != "underlying"}}
                for name, entry in entries.items()
            ],
            "unit": self.gex.unit.value,
            "convention": self.gex.convention.value,
            "settings": {key: _jsonable_deep(value) for key, value in self.settings.items()},
        }


def dense_surface(
    by_strike_bucket: pa.Table | None,
    by_strike_expiry: pa.Table | None,
    underlying: str,
    by: str,
    value_column: str,
) -> tuple[np.ndarray, list, np.ndarray]:
    """Strikes x buckets (or expiries) matrix of ``value_column`` for one underlying.

    Shared by :meth:`LevelsResult.surface` and :meth:`fastgex.ExposureResult.surface`;
    the tables are the long forms (``bucket`` or ``expiry`` column, ``strike``).
    """
    if by == "bucket":
        if by_strike_bucket is None:
            raise ValueError("no per-bucket table: pass buckets= or views= for a bucket surface")
        table = by_strike_bucket.filter(pc.equal(by_strike_bucket.column("underlying"), underlying))
        column = "bucket"
    elif by == "expiry":
        if by_strike_expiry is None:
            raise ValueError("this chain has no expiration dates: no strike x expiry surface")
        table = by_strike_expiry.filter(pc.equal(by_strike_expiry.column("underlying"), underlying))
        column = "expiry"
    else:
        raise ValueError(f"by must be 'bucket' or 'expiry', not {by!r}")
    if table.num_rows == 0:
        raise KeyError(f"no underlying {underlying!r} in the result")
    strikes = np.unique(table.column("strike").to_numpy())
    labels = table.column(column).to_pylist()
    columns = list(dict.fromkeys(labels)) if by == "bucket" else sorted(set(labels))
    matrix = np.zeros((strikes.size, len(columns)))
    rows = np.searchsorted(strikes, table.column("strike").to_numpy())
    index = {label: position for position, label in enumerate(columns)}
    cols = np.array([index[label] for label in labels], dtype=np.int64)
    np.add.at(matrix, (rows, cols), table.column(value_column).to_numpy())
    return strikes, columns, matrix


def strike_expiry_table(
    prepared: Any,
    group_sums: np.ndarray,
    group_counts: np.ndarray,
    expiry_dates: list[dt.date | None],
    expiry_bucket: list[str | None],
) -> pa.Table | None:
    """Per (underlying, expiry, strike) sums of (underlying, strike, expiry) groups.

    Columns ``underlying, expiry, bucket, strike, call_gex, put_gex, net_gex,
    contracts``, groups with counted rows only; None when the chain has no dates.
    """
    if prepared.group_expiry is None or not expiry_dates:
        return None
    keep = np.flatnonzero(group_counts > 0)
    # Per-group labels gathered from the per-code (and per-underlying) lists.
    expiry = pa.array(prepared.group_expiry[keep])
    names = pa.array(prepared.names, pa.string())
    table = pa.table(
        {
            "underlying": pc.take(names, pa.array(prepared.group_underlying[keep])),
            "expiry": pc.take(pa.array([*expiry_dates, None], pa.date32()), expiry),
            "bucket": pc.take(pa.array([*expiry_bucket, None], pa.string()), expiry),
            "strike": prepared.group_strike[keep],
            "call_gex": group_sums[keep, 0],
            "put_gex": group_sums[keep, 1],
            "net_gex": group_sums[keep, 0] + group_sums[keep, 1],
            "contracts": group_counts[keep],
        }
    )
    return table.sort_by([("underlying", "ascending"), ("expiry", "ascending"),
                          ("strike", "ascending")])  # fmt: skip


def _jsonable_deep(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable_deep(item) for item in value]
    if isinstance(value, tuple):
        return [_jsonable_deep(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable_deep(item) for key, item in value.items()}
    return _jsonable(value)


@dataclass(frozen=True)
class ProfileResult:
    """Total GEX recomputed at hypothetical spot levels.

    Attributes
    ----------
    table : pyarrow.Table
        ``underlying``, ``bucket``, ``level``, ``ratio``, ``total_gex`` (long form).
    gex : GexResult
        The plain GEX result of the same run.
    """

    table: pa.Table
    gex: GexResult
    settings: dict[str, Any] = field(default_factory=dict)

    def array(self, underlying: str, bucket: str = "all") -> tuple[np.ndarray, np.ndarray]:
        """``(levels, total_gex)`` of one underlying and bucket as numpy arrays."""
        mask = pc.and_(
            pc.equal(self.table.column("underlying"), underlying),
            pc.equal(self.table.column("bucket"), bucket),
        )
        table = self.table.filter(mask)
        if table.num_rows == 0:
            raise KeyError(f"no profile for underlying {underlying!r}, bucket {bucket!r}")
        return table.column("level").to_numpy(), table.column("total_gex").to_numpy()


# --------------------------------------------------------------------------- public calls


def levels(
    chain: Any,
    *,
    buckets: str | Mapping[str, float] | Callable | None = None,
    views: Sequence[str] = ("all",),
    exclude: str | None = None,
    n_levels: int = DEFAULT_LEVELS,
    level_range: tuple[float, float] = DEFAULT_RANGE,
    level_list: Sequence[float] | None = None,
    vol_model: str = "sticky_strike",
    walls_relative_to_spot: bool = False,
    oi_cluster_count: int = 3,
    skew_z: float | Mapping[str, float] | None = None,
    regime_thresholds: RegimeThresholds | None = None,
    **gex_options: Any,
) -> LevelsResult:
    """Levels traders read off the gamma distribution, per underlying and bucket.

    Parameters
    ----------
    chain : table-like or path
        Anything :func:`fastgex.read_chain` accepts (one or many underlyings).
    buckets : "default", mapping, callable or None
        Expiry buckets (see :mod:`fastgex.buckets`): ``"default"`` (0dte, weekly,
        monthly, quarterly, long_dated), ``{name: upper_edge_days}`` or
        ``f(expiry_date, snapshot_date) -> name``. None: no buckets.
    views : sequence of str
        Views over all expiries: ``all``, ``ex_next_expiry``, ``ex_next_monthly``.
    exclude : {"next-expiry", "next-monthly"}, optional
        Shorthand adding the matching ``ex_...`` view.
    n_levels, level_range, level_list
        The profile grid: ``n_levels`` levels evenly spaced over ``level_range`` x spot,
        or explicit absolute ``level_list`` (one underlying) levels.
    vol_model : {"sticky_strike", "sticky_moneyness"}
        How implied vol moves with the hypothetical spot. Sticky strike (default): each
        contract keeps its implied vol. Sticky moneyness: at spot ``r x S`` a contract's
        vol is scaled by its expiry's smile move, ``vol * smile(K / r) / smile(K)``
        (smile: mean implied vol per strike, linear in strike, flat beyond the ends);
        one kernel pass per level, so slower.
    walls_relative_to_spot : bool
        Restrict the call wall to strikes at or above spot and the put wall to strikes
        at or below spot.
    oi_cluster_count : int
        How many top open-interest strikes to list per side.
    skew_z : float or mapping, optional
        A skew z-score per underlying (see :func:`fastgex.regime.skew_zscore`) for the
        regime's crushed-skew trigger.
    regime_thresholds : RegimeThresholds, optional
        Regime trigger thresholds.
    **gex_options
        Any keyword of :func:`fastgex.gex` (spot, snapshot_time, convention, unit, ...).

    Returns
    -------
    LevelsResult
        Levels, every crossing, the profile, per-bucket strike tables and surfaces.

    Raises
    ------
    fastgex.ChainError
        Bad columns, missing spot, or buckets/views that need expiration dates on a
        chain that has only ``time_to_expiry``.
    ValueError
        Bad options (unknown view, empty or inverted level range, ...).
    """
    analysis = _analyze(
        chain,
        buckets=buckets,
        views=_views(views, exclude),
        grid=(n_levels, level_range, level_list),
        vol_model=vol_model,
        gex_options=gex_options,
    )
    return analysis.levels_result(
        walls_relative_to_spot=walls_relative_to_spot,
        oi_cluster_count=oi_cluster_count,
        skew_z=skew_z,
        thresholds=regime_thresholds or RegimeThresholds(),
    )


def profile(
    chain: Any,
    *,
    n_levels: int = DEFAULT_LEVELS,
    level_range: tuple[float, float] = DEFAULT_RANGE,
    level_list: Sequence[float] | None = None,
    buckets: str | Mapping[str, float] | Callable | None = None,
    views: Sequence[str] = ("all",),
    vol_model: str = "sticky_strike",
    **gex_options: Any,
) -> ProfileResult:
    """Total GEX recomputed at hypothetical spot levels (the GEX profile).

    Parameters
    ----------
    chain : table-like or path
        Anything :func:`fastgex.read_chain` accepts.
    n_levels : int
        Number of levels (default 60), evenly spaced over ``level_range``.
    level_range : (float, float)
        Lowest and highest level as multiples of spot (default 0.8 to 1.2).
    level_list : sequence of float, optional
        Explicit absolute levels instead (ascending; one underlying, or the same
        levels for every underlying).
    buckets, views
        As in :func:`levels`: one profile per view and bucket.
    vol_model : {"sticky_strike", "sticky_moneyness"}
        As in :func:`levels`.
    **gex_options
        Any keyword of :func:`fastgex.gex`.

    Returns
    -------
    ProfileResult
        The profile table and the plain GEX result.
    """
    analysis = _analyze(
        chain,
        buckets=buckets,
        views=_views(views, None),
        grid=(n_levels, level_range, level_list),
        vol_model=vol_model,
        gex_options=gex_options,
    )
    return ProfileResult(analysis.profile_table(), analysis.engine.result, analysis.settings)


def _views(views: Sequence[str], exclude: str | None) -> tuple[str, ...]:
    chosen = list(dict.fromkeys(views))
    if exclude is not None:
        name = {"next-expiry": "ex_next_expiry", "next-monthly": "ex_next_monthly"}.get(
            str(exclude).replace("_", "-")
        )
        if name is None:
            raise ValueError(f"exclude must be 'next-expiry' or 'next-monthly', not {exclude!r}")
        if name not in chosen:
            chosen.append(name)
    for view in chosen:
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; valid views: {', '.join(VIEWS)}")
    if not chosen:
        raise ValueError("at least one view is needed (e.g. views=('all',))")
    return tuple(chosen)


def _grid_ratios(grid, spot: np.ndarray) -> np.ndarray:
    """Level ratios per underlying, shape (underlyings, levels)."""
    n_levels, level_range, level_list = grid
    if level_list is not None:
        levels_abs = np.asarray(level_list, dtype=np.float64)
        if levels_abs.ndim != 1 or levels_abs.size == 0:
            raise ValueError("level_list must be a non-empty list of levels")
        if not (np.all(np.isfinite(levels_abs)) and np.all(levels_abs > 0)):
            raise ValueError("level_list must hold positive, finite levels")
        if np.any(np.diff(levels_abs) <= 0):
            raise ValueError("level_list must be strictly ascending")
        with np.errstate(invalid="ignore", divide="ignore"):
            return levels_abs[None, :] / spot[:, None]
    if int(n_levels) != n_levels or n_levels < 2:
        raise ValueError(f"n_levels must be an integer >= 2, not {n_levels!r}")
    low, high = (float(value) for value in level_range)
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise ValueError(
            f"level_range must be (low, high) multiples of spot with 0 < low < high, "
            f"not {level_range!r}"
        )
    ratios = np.linspace(low, high, int(n_levels))
    return np.broadcast_to(ratios, (spot.size, ratios.size)).copy()


# --------------------------------------------------------------------------- the engine


@dataclass
class _Analysis:
    engine: Any
    names: list[str | None]
    spot: np.ndarray
    targets: list[str]  # views then buckets
    # per profile slot: underlying, membership in each target
    slot_underlying: np.ndarray
    slot_member: np.ndarray  # (slots, targets) bool
    ratios: np.ndarray  # (underlyings, levels)
    profile_values: np.ndarray  # (targets, underlyings, levels)
    order: list[int]  # reported underlying ids (named, with rows), by name
    target_sums: TargetSums  # per-target totals (by position in order) and strike table
    expiry_dates: list[dt.date | None]
    expiry_bucket: list[str | None]
    settings: dict[str, Any]
    exact_inputs: Any

    # ------------------------------------------------------------------ profile table
    def underlying_order(self) -> list[int]:
        """Ids of the named underlyings that have rows (valid or not), by name."""
        return self.order

    def profile_table(self) -> pa.Table:
        order = self.underlying_order()
        n_levels = self.ratios.shape[1]
        names, buckets, level, ratio, total = [], [], [], [], []
        for index in order:
            for target_index, target in enumerate(self.targets):
                names.extend([self.names[index]] * n_levels)
                buckets.extend([target] * n_levels)
                level.append(self.ratios[index] * self.spot[index])
                ratio.append(self.ratios[index])
                total.append(self.profile_values[target_index, index])
        concat = lambda parts: np.concatenate(parts) if parts else np.empty(0)  # noqa: E731
        return pa.table(
            {
                "underlying": pa.array(names, pa.string()),
                "bucket": pa.array(buckets, pa.string()),
                "level": pa.array(concat(level), pa.float64(), from_pandas=True),
                "ratio": concat(ratio),
                "total_gex": concat(total),
            }
        )

    # ------------------------------------------------------------------ strike tables
    def strike_table(self) -> pa.Table:
        return self.target_sums.strike_table

    def strike_expiry_table(self) -> pa.Table | None:
        acc = self.engine.accumulated
        return strike_expiry_table(self.engine.prepared, acc.group_sums, acc.group_counts,
                                   self.expiry_dates, self.expiry_bucket)  # fmt: skip

    # ------------------------------------------------------------------ levels
    def levels_result(self, *, walls_relative_to_spot, oi_cluster_count, skew_z, thresholds):
        if int(oi_cluster_count) != oi_cluster_count or oi_cluster_count < 0:
            raise ValueError("oi_cluster_count must be a non-negative integer")
        strike_table = self.strike_table()
        order = self.underlying_order()
        # Segments: one per (underlying, target) present in the strike table.
        seg_names = strike_table.column("underlying").to_pylist()
        seg_targets = strike_table.column("bucket").to_pylist()
        keys = list(zip(seg_names, seg_targets, strict=True))
        starts = np.array(
            [index for index in range(len(keys)) if index == 0 or keys[index] != keys[index - 1]],
            dtype=np.int64,
        )
        segment_of = {keys[start]: position for position, start in enumerate(starts)}
        strikes = strike_table.column("strike").to_numpy()
        net = strike_table.column("net_gex").to_numpy()
        calls = strike_table.column("call_gex").to_numpy()
        puts = strike_table.column("put_gex").to_numpy()
        cumulative = strike_table.column("cumulative_net_gex").to_numpy()
        call_oi = strike_table.column("call_open_interest").to_numpy()
        put_oi = strike_table.column("put_open_interest").to_numpy()
        name_index = {self.names[index]: index for index in order}
        segment_spot = np.array(
            [self.spot[name_index[keys[start][0]]] for start in starts], dtype=np.float64
        )
        row_spot = (
            np.repeat(segment_spot, np.diff(np.r_[starts, len(keys)]))
            if starts.size
            else np.empty(0)
        )
        everywhere = np.ones(strikes.size, dtype=np.bool_)
        above = (strikes >= row_spot) if walls_relative_to_spot else everywhere
        below = (strikes <= row_spot) if walls_relative_to_spot else everywhere
        key_index = _levels_kernels.segment_argmax(np.abs(net), starts, everywhere)
        call_index = _levels_kernels.segment_argmax(np.abs(calls), starts, above)
        put_index = _levels_kernels.segment_argmax(np.abs(puts), starts, below)
        absolute_index = _levels_kernels.segment_argmax(
            np.abs(calls) + np.abs(puts), starts, everywhere
        )
        count = int(oi_cluster_count)
        top_calls = _levels_kernels.segment_top(call_oi, starts, count)
        top_puts = _levels_kernels.segment_top(put_oi, starts, count)
        flip_segment, flip_value = _levels_kernels.segment_crossings(strikes, cumulative, starts)
        zero_rows = self.zero_gamma_crossings()

        crossing_rows: dict[str, list] = {name: [] for name in CROSSINGS_SCHEMA.names}
        rows: dict[str, list] = {name: [] for name in LEVELS_SCHEMA.names}
        skew_lookup = skew_z if isinstance(skew_z, Mapping) else None
        for position, index in enumerate(order):
            name = self.names[index]
            spot = float(self.spot[index])
            for target_index, target in enumerate(self.targets):
                call_total, put_total, net_total = self.target_sums.totals[position, target_index]
                contracts = int(self.target_sums.contracts[position, target_index])
                segment = segment_of.get((name, target))
                flips = (
                    flip_value[
                        np.searchsorted(flip_segment, segment, "left") : np.searchsorted(
                            flip_segment, segment, "right"
                        )
                    ]
                    if segment is not None
                    else np.empty(0)
                )
                flip, flip_reason = _primary(flips, spot, "cumulative net GEX over strikes")
                for value in flips:
                    _add_crossing(crossing_rows, name, target, "flip_strike", value, None,
                                  value == flip)  # fmt: skip
                exact, grid = zero_rows.get((index, target_index), (np.empty(0), np.empty(0)))
                zero, zero_reason = _primary(exact, spot, "the GEX profile over the grid")
                zero_grid = None
                if zero is not None:
                    zero_grid = float(grid[int(np.argmin(np.abs(exact - spot)))])
                for exact_value, grid_value in zip(exact, grid, strict=True):
                    _add_crossing(crossing_rows, name, target, "zero_gamma", exact_value,
                                  grid_value, exact_value == zero)  # fmt: skip
                if contracts == 0:
                    flip_reason = zero_reason = "no valid contracts"
                rows["underlying"].append(name)
                rows["bucket"].append(target)
                rows["spot"].append(spot if math.isfinite(spot) else None)
                rows["total_gex"].append(net_total)  # from the unrounded sides
                rows["call_gex"].append(call_total)
                rows["put_gex"].append(put_total)
                rows["contracts"].append(contracts)
                rows["flip_strike"].append(flip)
                rows["flip_strike_reason"].append(flip_reason)
                rows["zero_gamma"].append(zero)
                rows["zero_gamma_grid"].append(zero_grid)
                rows["zero_gamma_reason"].append(zero_reason)

                def pick(positions, values=None, segment=segment):
                    if segment is None or positions[segment] < 0:
                        return None
                    chosen = positions[segment]
                    return float(strikes[chosen] if values is None else values[chosen])

                rows["key_gamma_strike"].append(pick(key_index))
                rows["key_gamma_gex"].append(pick(key_index, net))
                rows["call_wall"].append(pick(call_index))
                rows["put_wall"].append(pick(put_index))
                rows["absolute_gamma_strike"].append(pick(absolute_index))
                rows["top_call_oi_strikes"].append(
                    []
                    if segment is None
                    else [float(strikes[i]) for i in top_calls[segment] if i >= 0]
                )
                rows["top_put_oi_strikes"].append(
                    []
                    if segment is None
                    else [float(strikes[i]) for i in top_puts[segment] if i >= 0]
                )
                this_skew = skew_lookup.get(name) if skew_lookup is not None else skew_z
                if contracts and math.isfinite(spot):
                    regime = classify_regime(
                        total_gex=call_total + put_total,
                        spot=spot,
                        flip=flip,
                        skew_z=this_skew,
                        thresholds=thresholds,
                    )
                    rows["regime"].append(regime.regime)
                    rows["regime_triggers"].append(list(regime.triggers))
                else:
                    rows["regime"].append(None)
                    rows["regime_triggers"].append([])
        return LevelsResult(
            levels=pa.table(rows, schema=LEVELS_SCHEMA),
            crossings=pa.table(crossing_rows, schema=CROSSINGS_SCHEMA),
            profile=self.profile_table(),
            by_strike=strike_table,
            by_strike_expiry=self.strike_expiry_table(),
            gex=self.engine.result,
            settings=self.settings,
        )

    def zero_gamma_crossings(self) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        """Per (underlying, target): exact roots and grid-interpolated roots, ascending."""
        n_targets, n_underlyings, n_levels = self.profile_values.shape
        levels_abs = self.ratios * self.spot[:, None]
        flat = self.profile_values.reshape(n_targets * n_underlyings, n_levels)
        positions = np.broadcast_to(levels_abs, (n_targets, n_underlyings, n_levels)).reshape(
            n_targets * n_underlyings, n_levels
        )
        valid_rows = np.all(np.isfinite(positions), axis=1)
        starts = np.arange(flat.shape[0], dtype=np.int64) * n_levels
        segment, grid_roots = _levels_kernels.segment_crossings(
            np.where(valid_rows[:, None], positions, 0.0).ravel(),
            np.where(valid_rows[:, None], flat, 0.0).ravel(),
            starts,
        )
        # Brackets: the grid interval holding each grid crossing.
        lower = np.empty(segment.size)
        upper = np.empty(segment.size)
        for position, (row, root) in enumerate(zip(segment, grid_roots, strict=True)):
            grid = positions[row]
            right = int(np.searchsorted(grid, root, side="left"))
            right = min(max(right, 1), n_levels - 1)
            lower[position] = grid[right - 1]
            upper[position] = grid[right]
            if grid[right] == root or grid[right - 1] == root:
                lower[position] = upper[position] = root
        exact = self._refine(segment // n_underlyings, segment % n_underlyings, lower, upper)
        out: dict[tuple[int, int], tuple[list, list]] = {}
        for row, root, grid_root in zip(segment, exact, grid_roots, strict=True):
            key = (int(row % n_underlyings), int(row // n_underlyings))
            out.setdefault(key, ([], []))
            out[key][0].append(root)
            out[key][1].append(grid_root)
        return {key: (np.array(a), np.array(b)) for key, (a, b) in out.items()}

    def _refine(self, target, underlying, lower, upper) -> np.ndarray:
        """Exact roots of the true profile inside each bracket (multi-point bisection)."""
        if lower.size == 0:
            return lower
        lower = lower.copy()
        upper = upper.copy()
        lower_values = self._evaluate(target, underlying, lower[:, None])[:, 0]
        for _ in range(_REFINE_ROUNDS):
            open_brackets = upper > lower
            if not open_brackets.any():
                break
            fractions = np.arange(1, _REFINE_POINTS + 1) / (_REFINE_POINTS + 1)
            points = lower[:, None] + (upper - lower)[:, None] * fractions[None, :]
            values = self._evaluate(target, underlying, points)
            _levels_kernels.refine_brackets(lower, upper, lower_values, points, values)
            if np.all(upper - lower <= 4e-16 * np.abs(upper)):
                break
        upper_values = self._evaluate(target, underlying, upper[:, None])[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = lower_values / (lower_values - upper_values)
        weight = np.where(np.isfinite(weight) & (weight >= 0) & (weight <= 1), weight, 0.0)
        return lower + weight * (upper - lower)

    def target_families(self) -> list[list[int]]:
        """Targets grouped so that no slot belongs to two targets of one group."""
        buckets = [index for index, name in enumerate(self.targets) if name not in VIEWS]
        views = [[index] for index, name in enumerate(self.targets) if name in VIEWS]
        return views + ([buckets] if buckets else [])

    def slot_family_target(self, family: list[int]) -> np.ndarray:
        """Per slot, its position in ``family`` (-1 if in none of its targets)."""
        out = np.full(self.slot_underlying.size, -1, dtype=np.int64)
        for position, index in enumerate(family):
            out[self.slot_member[:, index]] = position
        return out

    def _evaluate(self, target, underlying, points) -> np.ndarray:
        """True total GEX of (target, underlying) brackets at ``points`` (absolute levels)."""
        return self.exact_inputs.evaluate(target, underlying, points, self)


@dataclass
class _ProfileInputs:
    """Everything the profile kernel needs, in kernel order, to evaluate any levels."""

    batches: list[dict[str, np.ndarray]]
    slot_price: np.ndarray
    slot_rate: np.ndarray
    slot_dividend: np.ndarray
    slot_multiplier: np.ndarray
    n_slots: int
    options: dict[str, Any]
    unit_scale: float
    unit_power: int
    #: Sticky moneyness: per slot, ``(start, strikes, vols)`` of its smile; None: sticky strike.
    smile: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    #: The profile kernel: None for the CPU's, or a CUDA runner with the same arguments.
    kernel: Any = None

    def run(self, slot_ratios: np.ndarray) -> np.ndarray:
        """Profile per slot at ``slot_ratios[slot, m]`` (levels / slot spot)."""
        if self.smile is None:
            return self._run(slot_ratios, None)
        # Vols move with the level: one pass per level, every row's vol recomputed.
        columns = [self._run(slot_ratios[:, [level]], slot_ratios[:, level])
                   for level in range(slot_ratios.shape[1])]  # fmt: skip
        return np.concatenate(columns, axis=1) if columns else self._run(slot_ratios, None)

    def _vols(self, batch: dict[str, np.ndarray], slot_ratio: np.ndarray | None) -> np.ndarray:
        if slot_ratio is None:  # sticky strike
            return batch["vol"]
        start, strikes, vols = self.smile
        return _levels_kernels.moneyness_vols(
            batch["strike"], batch["vol"], batch["slot"],
            _readonly(np.ascontiguousarray(slot_ratio)), start, strikes, vols,
        )  # fmt: skip

    def _run(self, slot_ratios: np.ndarray, slot_ratio: np.ndarray | None) -> np.ndarray:
        n_levels = slot_ratios.shape[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.log(slot_ratios)
            factor = self.unit_scale * slot_ratios ** (self.unit_power - 1)
        bad = ~np.isfinite(log_ratio) | ~np.isfinite(factor)
        log_ratio = np.where(bad, 0.0, log_ratio)
        factor = np.where(bad, 0.0, factor)
        total = np.zeros((self.n_slots, n_levels))
        for batch in self.batches:
            total += (self.kernel or _profile_kernel.profile)(
                batch["strike"],
                self._vols(batch, slot_ratio),
                batch["time"],
                batch["quantity"],
                batch["code"],
                batch["slot"],
                batch["forward"],
                batch["rate"],
                batch["dividend_yield"],
                batch["multiplier"],
                self.slot_price,
                self.slot_rate,
                self.slot_dividend,
                self.slot_multiplier,
                self.options["row_carry"],
                self.options["row_multiplier"],
                self.options["black76"],
                self.options["dealer_position"],
                self.options["call_sign"],
                self.options["put_sign"],
                self.options["min_time"],
                self.unit_power,
                _readonly(np.ascontiguousarray(log_ratio)),
                _readonly(np.ascontiguousarray(factor)),
                self.n_slots,
                _kernels.rows_per_block(batch["strike"].size, self.n_slots),
            )
        return np.where(bad, np.nan, total)

    def evaluate(self, target, underlying, points, analysis: _Analysis) -> np.ndarray:
        """Per bracket ``b``: total of the slots of ``(target[b], underlying[b])`` at points.

        Targets that no slot shares (the buckets) are evaluated in one kernel call; each
        view is one more call. Several brackets of one (underlying, target) (several
        crossings) sit side by side in the level axis.
        """
        n_brackets, n_points = points.shape
        result = np.zeros((n_brackets, n_points))
        n_names = len(analysis.names)
        for family in analysis.target_families():
            family = [index for index in family if np.any(target == index)]
            if not family:
                continue
            family_position = np.full(len(analysis.targets), -1, dtype=np.int64)
            family_position[family] = np.arange(len(family))
            chosen = np.flatnonzero(family_position[target] >= 0)
            pair = underlying[chosen] * len(family) + family_position[target[chosen]]
            # rank of each bracket among the brackets of its (underlying, target) pair
            order = np.argsort(pair, kind="stable")
            sorted_pair = pair[order]
            first = np.searchsorted(sorted_pair, sorted_pair, side="left")
            rank = np.empty(chosen.size, dtype=np.int64)
            rank[order] = np.arange(chosen.size) - first
            width = int(rank.max() + 1) * n_points
            pair_ratios = np.ones((n_names * len(family), width))
            columns = rank[:, None] * n_points + np.arange(n_points)[None, :]
            pair_ratios[pair[:, None], columns] = (
                points[chosen] / analysis.spot[underlying[chosen]][:, None]
            )
            slot_family = analysis.slot_family_target(family)
            member = slot_family >= 0
            slot_pair = analysis.slot_underlying * len(family) + np.where(member, slot_family, 0)
            slot_ratios = np.where(member[:, None], pair_ratios[slot_pair], 1.0)
            values = np.where(member[:, None], self.run(slot_ratios), 0.0)
            pair_values = np.zeros((n_names * len(family), width))
            np.add.at(pair_values, slot_pair[member], values[member])
            result[chosen] = pair_values[pair[:, None], columns]
        return result


def _primary(values: np.ndarray, spot: float, what: str) -> tuple[float | None, str | None]:
    if values.size == 0:
        return None, f"no zero crossing of {what}"
    if not math.isfinite(spot):
        return float(values[0]), None
    return float(values[int(np.argmin(np.abs(values - spot)))]), None


def _add_crossing(rows, name, target, kind, value, grid_value, primary) -> None:
    rows["underlying"].append(name)
    rows["bucket"].append(target)
    rows["kind"].append(kind)
    rows["value"].append(float(value))
    rows["grid_value"].append(None if grid_value is None else float(grid_value))
    rows["primary"].append(bool(primary))


def _smiles(batches, n_slots) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per profile slot (underlying, expiry): mean implied vol per distinct strike.

    Only rows with a positive finite vol and strike count. Returns ``(start, strikes,
    vols)``: slot ``s`` owns ``strikes[start[s]:start[s + 1]]`` (ascending).
    """
    if batches:
        strike = np.concatenate([batch["strike"] for batch in batches])
        vol = np.concatenate([batch["vol"] for batch in batches])
        slot = np.concatenate([batch["slot"] for batch in batches]).astype(np.int64)
    else:
        strike = vol = np.empty(0)
        slot = np.empty(0, np.int64)
    with np.errstate(invalid="ignore"):
        valid = (vol > 0) & np.isfinite(vol) & (strike > 0) & np.isfinite(strike)
    strike, vol, slot = strike[valid], vol[valid], slot[valid]
    order = np.lexsort((strike, slot))
    strike, vol, slot = strike[order], vol[order], slot[order]
    new = np.r_[True, (slot[1:] != slot[:-1]) | (strike[1:] != strike[:-1])][: strike.size]
    first = np.flatnonzero(new)
    counts = np.diff(np.r_[first, strike.size])
    mean_vol = np.add.reduceat(vol, first) / counts if first.size else np.empty(0)
    point_slot = slot[first]
    start = np.searchsorted(point_slot, np.arange(n_slots + 1)).astype(np.int64)
    return (
        _readonly(start),
        _readonly(np.ascontiguousarray(strike[first])),
        _readonly(np.ascontiguousarray(mean_vol)),
    )


def _profile_runner(settings: dict[str, Any]) -> Any:
    """The CUDA profile runner when the GEX pass ran on CUDA (its times join the GEX's)."""
    if settings.get("device") != "cuda":
        return None
    from fastgex._cuda_kernels import ProfileRunner

    runner = ProfileRunner()
    runner.timing = settings["device_timing"]
    return runner


def _analyze(chain, *, buckets, views, grid, vol_model, gex_options) -> _Analysis:
    if vol_model not in VOL_MODELS:
        raise ValueError(f"vol_model must be one of {VOL_MODELS}, not {vol_model!r}")
    for forbidden in ("by_strike", "per_contract", "by_expiry"):
        if forbidden in gex_options:
            raise TypeError(f"levels()/profile() do not take {forbidden}=")
    if parse_gamma_source(gex_options.get("gamma_source", "model")) is not GammaSource.MODEL:
        raise ValueError(
            "the profile recomputes gamma at other spot levels, so it needs the model: "
            "use gamma_source='model' (the chain's own gamma column fits only the current spot)"
        )
    engine = _engine(chain, by_strike=True, by_expiry=True, **gex_options)
    prepared = engine.prepared
    accumulated = engine.accumulated
    names = prepared.names
    n_underlyings = len(names)
    spot = prepared.spot.copy()
    work = accumulated.work
    target_info = resolve_targets(prepared, work, buckets, views)
    targets = target_info.names
    n_targets = len(targets)
    n_expiries = target_info.n_expiries  # the last code: no expiration
    dated = prepared.expiry_instants is not None and "expiry" in work.column_names

    # Slots for the profile: (underlying, expiry) pairs, numbered underlying-major.
    uid_all = _column_numpy(work, "uid", np.int32, 0)
    if dated:
        expiry_all = _column_numpy(work, "expiry", np.int64, n_expiries - 1)
    else:
        expiry_all = np.full(uid_all.size, n_expiries - 1, dtype=np.int64)
    pair_key = uid_all.astype(np.int64) * n_expiries + expiry_all
    slot_keys, slot_all = (
        np.unique(pair_key, return_inverse=True)
        if pair_key.size
        else (np.empty(0, np.int64), np.empty(0, np.int64))
    )
    slot_all = slot_all.astype(np.int32)
    slot_underlying = (slot_keys // n_expiries).astype(np.int64)
    slot_expiry = (slot_keys % n_expiries).astype(np.int64)
    n_slots = slot_keys.size

    slot_member = target_info.members(slot_underlying, slot_expiry)
    order = reported_underlyings(names, accumulated.rows)
    sums = target_sums(prepared, accumulated, target_info, order)

    with_rows = [index for index, name in enumerate(names) if name is not None
                 and accumulated.rows[index]]  # fmt: skip
    no_spot = [names[index] for index in with_rows if not math.isfinite(spot[index])]
    if no_spot:
        raise ChainError(
            f"the profile and levels need a spot per underlying (Black-76 chains too: the "
            f"grid is spot x ratio); none for {no_spot[:10]}: pass spot="
        )
    ratios = _grid_ratios(grid, spot)
    config = engine.kernel_config
    call_sign, put_sign = engine.result.convention.signs
    unit = engine.result.unit
    slot_price = spot[slot_underlying] if n_slots else np.empty(0)
    batches = []
    offset = 0
    for batch in work.to_batches():
        n_rows = batch.num_rows
        if n_rows == 0:
            continue
        slot_batch = _readonly(slot_all[offset : offset + n_rows])
        offset += n_rows
        batches.append(
            {
                "strike": _numpy(batch, "strike", np.float64),
                "vol": _numpy(batch, "vol", np.float64),
                "time": _numpy(batch, "time", np.float64),
                "quantity": _numpy(batch, "quantity", np.float64),
                "code": _numpy(batch, "code", np.uint8),
                "slot": slot_batch,
                "forward": _numpy(batch, "forward", np.float64),
                "rate": _numpy(batch, "rate", np.float64),
                "dividend_yield": _numpy(batch, "dividend_yield", np.float64),
                "multiplier": _numpy(batch, "multiplier", np.float64),
            }
        )
    inputs = _ProfileInputs(
        batches=batches,
        slot_price=_readonly(np.nan_to_num(slot_price, nan=1.0)),
        slot_rate=_readonly(prepared.rate[slot_underlying]),
        slot_dividend=_readonly(prepared.dividend_yield[slot_underlying]),
        slot_multiplier=_readonly(prepared.multiplier[slot_underlying]),
        n_slots=n_slots,
        options={
            "row_carry": config.row_carry,
            "row_multiplier": config.row_multiplier,
            "black76": config.black76,
            "dealer_position": config.dealer_position,
            "call_sign": call_sign,
            "put_sign": put_sign,
            "min_time": engine.min_time,
        },
        unit_scale=unit.scale,
        unit_power=unit.price_power,
        smile=_smiles(batches, n_slots) if vol_model == "sticky_moneyness" else None,
        kernel=_profile_runner(engine.result.settings),
    )
    slot_values = inputs.run(ratios[slot_underlying]) if n_slots else np.zeros((0, ratios.shape[1]))
    profile_values = np.zeros((n_targets, n_underlyings, ratios.shape[1]))
    for position in range(n_targets):
        member = slot_member[:, position]
        np.add.at(profile_values[position], slot_underlying[member], slot_values[member])
    settings = {
        **engine.result.settings,
        "buckets": buckets if isinstance(buckets, (str, type(None))) else repr(buckets),
        "views": list(views),
        "levels": int(ratios.shape[1]),
        "level_range": list(grid[1]) if grid[2] is None else None,
        "vol_model": vol_model,
        "snapshot_date": target_info.snapshot_date,
    }
    return _Analysis(
        engine=engine,
        names=names,
        spot=spot,
        targets=targets,
        slot_underlying=slot_underlying,
        slot_member=slot_member,
        ratios=ratios,
        profile_values=profile_values,
        order=order,
        target_sums=sums,
        expiry_dates=target_info.expiry_dates,
        expiry_bucket=target_info.expiry_bucket,
        settings=settings,
        exact_inputs=inputs,
    )
