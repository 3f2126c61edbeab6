"""Exposure profiles: a dealer exposure recomputed at hypothetical spot levels.

:func:`exposure_profile` is :func:`fastgex.profile` for any exposure kind: the same
grid (``n_levels`` over ``level_range`` x spot, or explicit ``level_list``), the same
buckets and views, the same vol models (sticky strike: each contract keeps its implied
vol; sticky moneyness: vols move with each expiry's smile). At each level
the fused greeks kernel runs on the moved spot (Black-76 rows: forwards moved by the
same fraction), computing only the kind's greek, and the exposure kernel sums the rows
per (underlying, expiry) slot; every view and bucket is then a sum of slots.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastgex import _levels_kernels
from fastgex._chain import read_chain
from fastgex._errors import ChainError
from fastgex._exposures import (
    ExposureKind,
    ExposureResult,
    _exposure_pass,
    _parse_kind,
    _parse_unit,
    _prepare_chain,
    _RowInputs,
    exposures,
)
from fastgex._gex import _column_numpy, _readonly, reported_underlyings
from fastgex._levels import (
    DEFAULT_LEVELS,
    DEFAULT_RANGE,
    VOL_MODELS,
    _grid_ratios,
    _smiles,
    _views,
)
from fastgex._targets import resolve_targets

__all__ = ["ExposureProfileResult", "exposure_profile"]


@dataclass(frozen=True)
class ExposureProfileResult:
    """A dealer exposure recomputed at hypothetical spot levels.

    Attributes
    ----------
    kind : ExposureKind
        Which exposure.
    unit : str
        Its unit (as in :class:`fastgex.ExposureResult`), with the price ``P`` taken
        at each level.
    table : pyarrow.Table
        Long form, by underlying (name), then bucket (views first), then level:
        ``underlying``, ``bucket``, ``level`` (hypothetical spot), ``ratio`` (level /
        spot), ``total_<kind>``, ``call_<kind>``, ``put_<kind>`` and ``contracts``
        (rows counted at that level).
    exposures : ExposureResult
        The exposure at the current spot (with the same buckets and views).
    settings : dict
        The grid and the other choices, for provenance.
    """

    kind: ExposureKind
    unit: str
    table: pa.Table
    exposures: ExposureResult
    settings: dict[str, Any] = field(default_factory=dict)

    def array(self, underlying: str, bucket: str = "all") -> tuple[np.ndarray, np.ndarray]:
        """``(levels, total)`` of one underlying and bucket as numpy arrays."""
        mask = pc.and_(
            pc.equal(self.table.column("underlying"), underlying),
            pc.equal(self.table.column("bucket"), bucket),
        )
        table = self.table.filter(mask)
        if table.num_rows == 0:
            raise KeyError(f"no profile for underlying {underlying!r}, bucket {bucket!r}")
        return (
            table.column("level").to_numpy(),
            table.column(f"total_{self.kind.value}").to_numpy(),
        )

    def surface(self, underlying: str) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Dense profile of one underlying: levels x buckets (views first).

        Returns
        -------
        levels : numpy.ndarray
            The hypothetical spot levels (rows).
        buckets : list of str
            Views and buckets (columns).
        matrix : numpy.ndarray
            Total exposure at each level in each bucket.
        """
        table = self.table.filter(pc.equal(self.table.column("underlying"), underlying))
        if table.num_rows == 0:
            raise KeyError(f"no underlying {underlying!r} in the result")
        buckets = list(dict.fromkeys(table.column("bucket").to_pylist()))
        n_levels = table.num_rows // len(buckets)
        totals = table.column(f"total_{self.kind.value}").to_numpy()
        matrix = totals.reshape(len(buckets), n_levels).T
        return table.column("level").to_numpy()[:n_levels], buckets, matrix


def exposure_profile(
    chain: Any,
    *,
    kind: str | ExposureKind = ExposureKind.DEX,
    unit: str | None = None,
    n_levels: int = DEFAULT_LEVELS,
    level_range: tuple[float, float] = DEFAULT_RANGE,
    level_list: Sequence[float] | None = None,
    buckets: str | Mapping[str, float] | Callable | None = None,
    views: Sequence[str] = ("all",),
    vol_model: str = "sticky_strike",
    **options: Any,
) -> ExposureProfileResult:
    """A dealer exposure (DEX, GEX, VEX, CEX or vega) at hypothetical spot levels.

    The exposure's analogue of :func:`fastgex.profile`: each level ``L = r x S``
    recomputes every contract's greek at spot ``L`` (Black-76 rows: forward ``r x F``),
    vols, times and rates held, and the $ units take the price at ``L``. With
    ``kind="gex"`` it equals :func:`fastgex.profile` to rounding.

    Parameters
    ----------
    chain : table-like or path
        Anything :func:`fastgex.read_chain` accepts.
    kind : {"dex", "gex", "vex", "cex", "vega"} or ExposureKind
        Which exposure (default ``dex``).
    unit : str, optional
        One of the kind's units (see :func:`fastgex.exposures`); default its first.
    n_levels, level_range, level_list
        The grid, as for :func:`fastgex.profile`: ``n_levels`` (default 60) levels
        evenly spaced over ``level_range`` (default 0.8 to 1.2) x spot, or explicit
        ascending absolute ``level_list`` (one underlying, or the same levels for all).
    buckets, views
        One profile per view and bucket, as for :func:`fastgex.profile`.
    vol_model : {"sticky_strike", "sticky_moneyness"}
        As for :func:`fastgex.profile`: each contract keeps its implied vol (default),
        or its vol moves with its expiry's smile, ``vol * smile(K / r) / smile(K)``.
    **options
        Any other keyword of :func:`fastgex.exposures` (spot, snapshot_time,
        convention, rate, ...), except the table switches.

    Returns
    -------
    ExposureProfileResult
        The profile table and the exposure at the current spot.

    Raises
    ------
    fastgex.ChainError
        An underlying without a spot (the grid is spot x ratio), or buckets or
        ex-next views on a chain without dates.
    ValueError
        A bad grid, kind, unit, view or vol model.
    """
    if vol_model not in VOL_MODELS:
        raise ValueError(f"vol_model must be one of {VOL_MODELS}, not {vol_model!r}")
    for forbidden in ("by_strike", "per_contract", "by_expiry", "on_invalid"):
        if forbidden in options:
            raise TypeError(f"exposure_profile() does not take {forbidden}=")
    kind = _parse_kind(kind)
    unit_name, price_power, factor = _parse_unit(kind, unit)
    views = _views(views, None)
    table = read_chain(chain, format=options.pop("format", "auto"),
                       columns=options.pop("columns", None))  # fmt: skip
    # The plain tables unless buckets or other views are asked for (as fastgex.gex).
    plain = buckets is None and views == ("all",)
    base = exposures(table, kind=kind, unit=unit_name, buckets=buckets,
                     views=None if plain else views, **options)  # fmt: skip
    settings = base.settings
    prepared, _ = _prepare_chain(
        table,
        spot=options.get("spot"),
        snapshot_time=options.get("snapshot_time"),
        rate=options.get("rate"),
        dividend_yield=options.get("dividend_yield"),
        day_count=options.get("day_count", "act365"),
        settlement=options.get("settlement", "pm"),
        settlement_tz=settings["settlement_tz"],
        min_time_to_expiry=settings["min_time_to_expiry"],
        columns=None,
        format="auto",
    )
    work = prepared.work
    targets = resolve_targets(prepared, work, buckets, views)
    n_expiries = targets.n_expiries  # the last code: no expiration
    rows = _RowInputs.of(prepared)
    names = prepared.names
    spot = prepared.spot
    row_counts = np.bincount(rows.uid, minlength=len(names))
    order = reported_underlyings(names, row_counts)
    no_spot = [names[index] for index in order if not math.isfinite(spot[index])]
    if no_spot:
        raise ChainError(
            f"the exposure profile needs a spot per underlying (Black-76 chains too: the "
            f"grid is spot x ratio); none for {no_spot[:10]}: pass spot="
        )
    ratios = _grid_ratios((n_levels, level_range, level_list), spot)
    # Slots: (underlying, expiry) pairs; membership in each target is decided per slot.
    if prepared.expiry_instants is not None and "expiry" in work.column_names:
        expiry = _column_numpy(work, "expiry", np.int64, n_expiries - 1)
    else:
        expiry = np.full(rows.uid.size, n_expiries - 1, dtype=np.int64)
    slot_keys, slot_of_row = np.unique(rows.uid.astype(np.int64) * n_expiries + expiry,
                                       return_inverse=True)  # fmt: skip
    slot_underlying = slot_keys // n_expiries
    member = targets.members(slot_underlying, slot_keys % n_expiries)
    slot_of_row = _readonly(np.ascontiguousarray(slot_of_row.reshape(-1), dtype=np.int32))
    smile = None
    if vol_model == "sticky_moneyness":  # fastgex.profile's smiles, per slot
        strike = _readonly(_column_numpy(work, "strike", np.float64, np.nan))
        vol = _readonly(_column_numpy(work, "vol", np.float64, np.nan))
        smile = _smiles([{"strike": strike, "vol": vol, "slot": slot_of_row}], slot_keys.size)
    signs = (1.0, 1.0) if prepared.config.dealer_position else base.convention.signs
    n_targets, n_levels_out = len(targets.names), ratios.shape[1]
    sums = np.zeros((n_targets, len(names), n_levels_out, 2))
    counts = np.zeros((n_targets, len(names), n_levels_out), dtype=np.int64)
    for level in range(n_levels_out):
        # Underlyings with no rows (or no spot) keep ratio 1: nothing of theirs is read.
        ratio = np.where(np.isfinite(ratios[:, level]), ratios[:, level], 1.0)
        moved_vol = None
        if smile is not None:
            slot_ratio = _readonly(np.ascontiguousarray(ratio[slot_underlying]))
            moved_vol = _levels_kernels.moneyness_vols(strike, vol, slot_of_row, slot_ratio,
                                                       *smile)  # fmt: skip
        done = _exposure_pass(
            prepared, rows, kind=kind, price_power=price_power, factor=factor, signs=signs,
            min_time=settings["min_time_to_expiry"], group_id=slot_of_row,
            n_groups=slot_keys.size, ratio=ratio, vol=moved_vol,
        )  # fmt: skip
        for target in range(n_targets):
            chosen = member[:, target]
            owner = slot_underlying[chosen]
            for side in (0, 1):
                sums[target, :, level, side] = np.bincount(
                    owner, weights=done.group_sums[chosen, side], minlength=len(names)
                )
            counts[target, :, level] = np.bincount(
                owner, weights=done.group_counts[chosen], minlength=len(names)
            )
    suffix = kind.value
    ids = np.repeat(np.asarray(order, dtype=np.int64), n_targets)
    target_ids = np.tile(np.arange(n_targets), len(order))
    per_row = (ids.size, n_levels_out)
    calls = sums[target_ids, ids, :, 0].reshape(-1)
    puts = sums[target_ids, ids, :, 1].reshape(-1)
    out = pa.table(
        {
            "underlying": pc.take(
                pa.array(names, pa.string()), pa.array(np.repeat(ids, n_levels_out))
            ),
            "bucket": pc.take(
                pa.array(targets.names, pa.string()), pa.array(np.repeat(target_ids, n_levels_out))
            ),
            "level": (ratios[ids] * spot[ids][:, None]).reshape(-1),
            "ratio": np.broadcast_to(ratios[ids], per_row).reshape(-1),
            f"total_{suffix}": calls + puts,
            f"call_{suffix}": calls,
            f"put_{suffix}": puts,
            "contracts": counts[target_ids, ids].reshape(-1),
        }
    )
    return ExposureProfileResult(
        kind=kind,
        unit=unit_name,
        table=out,
        exposures=base,
        settings={
            **settings,
            "levels": int(n_levels_out),
            "level_range": list(level_range) if level_list is None else None,
            "vol_model": vol_model,
            "buckets": base.settings.get("buckets"),
            "views": list(views),
        },
    )
