"""Charts of GEX results (``pip install fastgex[plot]``: matplotlib).

Every function takes a result of :func:`fastgex.levels` (and :func:`plot_series` a
table with one row per snapshot), draws on a new figure or on the ``ax`` given, and
returns the :class:`matplotlib.figure.Figure`; :func:`save` writes it. Nothing here
computes GEX: the charts show the result's own numbers.

The figures say how dealer hedging behaves if the market moves, never which way it
will move.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from fastgex._levels import LevelsResult

__all__ = ["KINDS", "plot", "plot_buckets", "plot_profile", "plot_series", "plot_strikes",
           "plot_surface", "save"]  # fmt: skip

#: Chart kinds of :func:`plot` (and ``fastgex plot --kind``).
KINDS = ("strikes", "profile", "surface", "buckets")

_CALL_COLOUR = "#2b83ba"
_PUT_COLOUR = "#d7191c"
_NET_COLOUR = "#1a1a1a"
_MARKERS = {  # level column -> (label, colour, line style)
    "zero_gamma": ("zero gamma", "#7b3294", "--"),
    "flip_strike": ("flip strike", "#008837", "-."),
    "call_wall": ("call wall", _CALL_COLOUR, ":"),
    "put_wall": ("put wall", _PUT_COLOUR, ":"),
}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - exercised without the extra
        raise ImportError("fastgex's charts need matplotlib: pip install 'fastgex[plot]'") from err
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo"):
        import os

        if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg")  # headless: files only
    import matplotlib.pyplot as plt

    return plt


def _axes(ax: Axes | None, size: tuple[float, float] = (10.0, 5.5)) -> tuple[Figure, Axes]:
    plt = _pyplot()
    if ax is not None:
        return ax.figure, ax
    figure, new_ax = plt.subplots(figsize=size, layout="constrained")
    return figure, new_ax


def _pick_underlying(result: LevelsResult, underlying: str | None) -> str:
    names = list(dict.fromkeys(result.levels.column("underlying").to_pylist()))
    if not names:
        raise ValueError("the result has no underlyings to plot")
    if underlying is None:
        if len(names) > 1:
            totals = result.gex.by_underlying
            largest = int(np.argmax(np.abs(totals.column("total_gex").to_numpy())))
            return str(totals.column("underlying")[largest].as_py())
        return str(names[0])
    if underlying not in names:
        raise KeyError(f"no underlying {underlying!r} in the result; it has {names[:10]}")
    return underlying


def _levels_row(result: LevelsResult, underlying: str, bucket: str) -> dict[str, Any]:
    mask = pc.and_(
        pc.equal(result.levels.column("underlying"), underlying),
        pc.equal(result.levels.column("bucket"), bucket),
    )
    rows = result.levels.filter(mask).to_pylist()
    if not rows:
        buckets = sorted(set(result.levels.column("bucket").to_pylist()))
        raise KeyError(f"no bucket {bucket!r} for {underlying!r}; it has {buckets}")
    return rows[0]


def _in_range(strikes: np.ndarray, strike_range: Any, spot: float) -> np.ndarray:
    """Strikes to show: ``strike_range``, else 0.8 to 1.2 x spot (all without a spot)."""
    if strike_range is not None:
        low, high = strike_range
    elif spot is not None and np.isfinite(spot):
        low, high = 0.8 * spot, 1.2 * spot
    else:
        low, high = -np.inf, np.inf
    return (strikes >= low) & (strikes <= high)


def _unit_label(result: LevelsResult) -> str:
    unit = result.gex.unit.value
    return {
        "dollars_per_1pct": "GEX ($ per 1% move)",
        "dollars_per_point": "GEX ($ per point)",
        "shares_per_dollar": "GEX (units per $1)",
        "units_per_1pct": "GEX (units per 1% move)",
    }.get(unit, f"GEX ({unit})")


def _mark_levels(ax: Axes, row: dict[str, Any], names: tuple[str, ...]) -> None:
    spot = row.get("spot")
    if spot is not None and np.isfinite(spot):
        ax.axvline(spot, color="#444444", linewidth=1.2, label=f"spot {spot:,.2f}")
    for name in names:
        value = row.get(name)
        if value is None or not np.isfinite(value):
            continue  # a level that does not exist is not drawn as a number
        label, colour, style = _MARKERS[name]
        ax.axvline(value, color=colour, linestyle=style, linewidth=1.2,
                   label=f"{label} {value:,.2f}")  # fmt: skip


def plot_strikes(
    result: LevelsResult,
    underlying: str | None = None,
    *,
    bucket: str = "all",
    strike_range: tuple[float, float] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Per-strike call, put and net GEX, with spot, flip strike, zero gamma and walls.

    Parameters
    ----------
    result : LevelsResult
        From :func:`fastgex.levels`.
    underlying : str, optional
        Which underlying; default the only one, or the one whose total is largest in
        absolute value.
    bucket : str
        A view or bucket of the result (default ``all``).
    strike_range : (float, float), optional
        Strikes shown; default 0.8 to 1.2 x spot.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    name = _pick_underlying(result, underlying)
    row = _levels_row(result, name, bucket)
    table = result.by_strike.filter(
        pc.and_(
            pc.equal(result.by_strike.column("underlying"), name),
            pc.equal(result.by_strike.column("bucket"), bucket),
        )
    )
    strikes = table.column("strike").to_numpy()
    spot = row["spot"]
    keep = _in_range(strikes, strike_range, spot)
    strikes = strikes[keep]
    figure, ax = _axes(ax)
    width = 0.8 * float(np.min(np.diff(strikes))) if strikes.size > 1 else 1.0
    ax.bar(strikes, table.column("call_gex").to_numpy()[keep], width=width,
           color=_CALL_COLOUR, alpha=0.7, label="calls")  # fmt: skip
    ax.bar(strikes, table.column("put_gex").to_numpy()[keep], width=width,
           color=_PUT_COLOUR, alpha=0.7, label="puts")  # fmt: skip
    ax.plot(strikes, table.column("net_gex").to_numpy()[keep], color=_NET_COLOUR,
            linewidth=1.0, marker=".", markersize=3, label="net")  # fmt: skip
    ax.axhline(0.0, color="#888888", linewidth=0.8)
    _mark_levels(ax, row, ("flip_strike", "zero_gamma", "call_wall", "put_wall"))
    ax.set_xlabel("strike")
    ax.set_ylabel(_unit_label(result))
    ax.set_title(f"{name} GEX by strike ({bucket}; {result.gex.convention.value})")
    ax.legend(loc="best", fontsize="small")
    return figure


def plot_profile(
    result: LevelsResult,
    underlying: str | None = None,
    *,
    buckets: tuple[str, ...] = ("all",),
    ax: Axes | None = None,
) -> Figure:
    """Total GEX at hypothetical spot levels (the profile), zero gamma marked.

    Parameters
    ----------
    result : LevelsResult
        From :func:`fastgex.levels`.
    underlying : str, optional
        As in :func:`plot_strikes`.
    buckets : tuple of str
        Views or buckets drawn as one curve each (default ``("all",)``).
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    name = _pick_underlying(result, underlying)
    levels, names, matrix = result.profile_surface(name)
    figure, ax = _axes(ax)
    for bucket in buckets:
        if bucket not in names:
            raise KeyError(f"no bucket {bucket!r} in the profile; it has {names}")
        ax.plot(levels, matrix[:, names.index(bucket)], linewidth=1.5, label=f"{bucket}")
    ax.axhline(0.0, color="#888888", linewidth=0.8)
    _mark_levels(ax, _levels_row(result, name, buckets[0]), ("zero_gamma",))
    ax.set_xlabel("hypothetical spot")
    ax.set_ylabel(_unit_label(result))
    ax.set_title(f"{name} GEX profile")
    ax.legend(loc="best", fontsize="small")
    return figure


def plot_surface(
    result: LevelsResult,
    underlying: str | None = None,
    *,
    by: str = "expiry",
    strike_range: tuple[float, float] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Net GEX heatmap, strikes x expiries (or x buckets), centred on zero.

    Parameters
    ----------
    result : LevelsResult
        From :func:`fastgex.levels`.
    underlying : str, optional
        As in :func:`plot_strikes`.
    by : {"expiry", "bucket"}
        Columns of the map.
    strike_range : (float, float), optional
        Strikes shown; default 0.8 to 1.2 x spot.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    name = _pick_underlying(result, underlying)
    strikes, columns, matrix = result.surface(name, by=by)
    spot = _levels_row(result, name, "all")["spot"] if "all" in _buckets(result) else None
    keep = _in_range(strikes, strike_range, spot)
    strikes, matrix = strikes[keep], matrix[keep]
    figure, ax = _axes(ax, (10.0, 6.0))
    # A few huge cells would wash the map out: the colour scale stops at the 99th
    # percentile of |net GEX| (cells beyond it show at full colour).
    nonzero = np.abs(matrix[matrix != 0.0])
    limit = float(np.percentile(nonzero, 99.0)) if nonzero.size else 1.0
    image = ax.imshow(matrix, aspect="auto", origin="lower", cmap="RdBu",
                      vmin=-limit, vmax=limit, interpolation="nearest")  # fmt: skip
    labels = [str(column) for column in columns]
    step = max(1, len(labels) // 12)
    ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=45, ha="right")
    ticks = np.linspace(0, max(0, strikes.size - 1), min(10, strikes.size)).astype(int)
    ax.set_yticks(ticks, [f"{strikes[tick]:,.0f}" for tick in ticks])
    ax.set_xlabel(by)
    ax.set_ylabel("strike")
    ax.set_title(f"{name} net GEX, strike x {by}")
    figure.colorbar(image, ax=ax, label=_unit_label(result))
    return figure


def _buckets(result: LevelsResult) -> set[str]:
    return set(result.levels.column("bucket").to_pylist())


def plot_buckets(
    result: LevelsResult, underlying: str | None = None, *, ax: Axes | None = None
) -> Figure:
    """Call, put and total GEX per view and expiry bucket.

    Parameters
    ----------
    result : LevelsResult
        From :func:`fastgex.levels` (with ``buckets=`` for more than the ``all`` view).
    underlying : str, optional
        As in :func:`plot_strikes`.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    name = _pick_underlying(result, underlying)
    rows = result.levels.filter(pc.equal(result.levels.column("underlying"), name)).to_pylist()
    labels = [row["bucket"] for row in rows]
    positions = np.arange(len(rows))
    figure, ax = _axes(ax)
    ax.bar(positions - 0.27, [row["call_gex"] for row in rows], width=0.27,
           color=_CALL_COLOUR, label="calls")  # fmt: skip
    ax.bar(positions, [row["put_gex"] for row in rows], width=0.27,
           color=_PUT_COLOUR, label="puts")  # fmt: skip
    ax.bar(positions + 0.27, [row["total_gex"] for row in rows], width=0.27,
           color=_NET_COLOUR, label="total")  # fmt: skip
    ax.axhline(0.0, color="#888888", linewidth=0.8)
    ax.set_xticks(positions, labels, rotation=20)
    ax.set_ylabel(_unit_label(result))
    ax.set_title(f"{name} GEX by view and expiry bucket")
    ax.legend(loc="best", fontsize="small")
    return figure


def plot_series(
    table: Any,
    *,
    time: str = "snapshot_time",
    value: str = "total_gex",
    regime: str | None = "regime",
    label: str | None = None,
    underlying: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """A time series (total GEX, a flow...) with short-gamma stretches shaded.

    Parameters
    ----------
    table : pyarrow.Table or table-like
        One row per snapshot, with the ``time`` and ``value`` columns and optionally
        ``regime`` (``long_gamma`` / ``short_gamma``, as :func:`fastgex.regime.classify_regime`
        tags it).
    time, value, regime : str
        Column names (``regime=None`` for no shading).
    label : str, optional
        The y-axis label (default: the value column's name).
    underlying : str, optional
        With an ``underlying`` column (e.g. :func:`fastgex.flow_series`, plotted with
        ``time="current_snapshot_time", value="hedge_flow", regime=None``): the one to
        draw; required when the table holds several.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(table, pa.Table):
        from fastgex._chain import _to_table

        table = _to_table(table, "auto")
    if "underlying" in table.column_names:
        names = list(dict.fromkeys(table.column("underlying").to_pylist()))
        if underlying is None and len(names) > 1:
            raise ValueError(f"the series holds several underlyings {names[:10]}: pass underlying=")
        if underlying is not None:
            if underlying not in names:
                raise KeyError(f"no underlying {underlying!r} in the series; it has {names[:10]}")
            table = table.filter(pc.equal(table.column("underlying"), underlying))
    table = table.sort_by(time)
    times = table.column(time).to_pylist()
    values = table.column(value).to_numpy(zero_copy_only=False)
    figure, ax = _axes(ax, (10.0, 4.5))
    ax.plot(times, values, color=_NET_COLOUR, linewidth=1.3, label=value)
    ax.axhline(0.0, color="#888888", linewidth=0.8)
    if regime is not None and regime in table.column_names:
        short = [tag == "short_gamma" for tag in table.column(regime).to_pylist()]
        for index, is_short in enumerate(short):
            if is_short:
                end = times[index + 1] if index + 1 < len(times) else times[index]
                ax.axvspan(times[index], end, color=_PUT_COLOUR, alpha=0.12, linewidth=0)
        ax.plot([], [], color=_PUT_COLOUR, alpha=0.3, linewidth=6, label="short gamma")
    ax.set_ylabel(label or value)
    ax.set_title(f"{label or value} over time")
    ax.legend(loc="best", fontsize="small")
    figure.autofmt_xdate()
    return figure


def plot(result: LevelsResult, kind: str = "strikes", underlying: str | None = None) -> Figure:
    """One chart of :data:`KINDS` for ``result`` (the CLI's ``fastgex plot``)."""
    drawers = {
        "strikes": plot_strikes,
        "profile": plot_profile,
        "surface": plot_surface,
        "buckets": plot_buckets,
    }
    if kind not in drawers:
        raise ValueError(f"unknown chart kind {kind!r}: choose one of {', '.join(KINDS)}")
    return drawers[kind](result, underlying)


def save(figure: Figure, path: str | Path, *, dpi: int = 130) -> Path:
    """Write ``figure`` (PNG, SVG, PDF... by extension) and close it; returns the path."""
    plt = _pyplot()
    target = Path(path)
    figure.savefig(target, dpi=dpi)
    plt.close(figure)
    return target
