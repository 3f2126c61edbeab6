"""Options on futures (ES, NQ, RTY, CL, GC, ...): Black-76 on the futures price.

A chain of futures options is an ordinary chain with a ``forward`` column (the price
of the future each option is written on): every such row is priced with Black-76,
and the forward is the price in the unit. What differs between products is the
contract size, so :func:`futures_chain` fills the ``multiplier`` column from the
product's root.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fastgex._chain import read_chain
from fastgex._errors import ChainError

__all__ = ["FUTURES_MULTIPLIERS", "futures_chain"]

FUTURES_MULTIPLIERS: Mapping[str, float] = MappingProxyType(
    {
        "ES": 50.0,  # E-mini S&P 500: $50 x index
        "MES": 5.0,  # Micro E-mini S&P 500
        "NQ": 20.0,  # E-mini Nasdaq-100
        "MNQ": 2.0,  # Micro E-mini Nasdaq-100
        "RTY": 50.0,  # E-mini Russell 2000
        "M2K": 5.0,  # Micro E-mini Russell 2000
        "YM": 5.0,  # E-mini Dow
        "CL": 1000.0,  # WTI crude oil: 1,000 barrels
        "GC": 100.0,  # gold: 100 troy ounces
        "SI": 5000.0,  # silver: 5,000 troy ounces
        "NG": 10000.0,  # natural gas: 10,000 MMBtu
        "ZN": 1000.0,  # 10-year T-note: $100,000 face, quoted in points of 1%
    }
)
"""Contract multiplier (units of the underlying future per option) by product root."""


def futures_chain(
    source: Any,
    *,
    multipliers: Mapping[str, float] | None = None,
    columns: Mapping[str, str] | None = None,
) -> pa.Table:
    """A futures-option chain ready for :func:`fastgex.gex`: multipliers by product.

    Parameters
    ----------
    source : table-like or path
        Anything :func:`fastgex.read_chain` accepts, with the canonical columns and a
        ``forward`` column (the futures price of each row; ``futures_price`` and
        ``f`` are accepted aliases). ``underlying`` holds the product root (``ES``,
        ``CL``...).
    multipliers : mapping, optional
        Extra or overriding contract sizes by root, on top of
        :data:`FUTURES_MULTIPLIERS`.
    columns : mapping, optional
        Renames from your column names to canonical ones.

    Returns
    -------
    pyarrow.Table
        The chain with a ``multiplier`` column: the chain's own value where given (not
        null), else the product's size.

    Raises
    ------
    fastgex.ChainError
        No ``forward`` column, or a root with neither a known size nor a multiplier.
    """
    table = read_chain(source, columns=columns)
    if "forward" not in table.column_names:
        raise ChainError(
            "options on futures need the futures price of each row in a 'forward' "
            "column (aliases: futures_price, f); they are priced with Black-76 on it"
        )
    if "underlying" not in table.column_names:
        raise ChainError("futures_chain needs an 'underlying' column with the product root")
    sizes = {**FUTURES_MULTIPLIERS, **(multipliers or {})}
    roots = table.column("underlying")
    if pa.types.is_dictionary(roots.type):
        roots = roots.cast(roots.type.value_type)
    names = list(sizes)
    known = pc.take(
        pa.array([float(sizes[name]) for name in names]),
        pc.index_in(pc.utf8_upper(roots), value_set=pa.array(names, pa.string())),
    )
    given = None
    if "multiplier" in table.column_names:
        given = table.column("multiplier").cast(pa.float64())
        known = pc.coalesce(given, known)
    missing = pc.and_(pc.is_null(known), pc.is_valid(roots))
    if pc.any(missing).as_py():
        unknown = sorted(set(pc.filter(roots, missing).to_pylist()))
        raise ChainError(
            f"no contract multiplier for futures roots {unknown[:10]}: pass "
            f"multipliers={{{unknown[0]!r}: ...}} or a 'multiplier' column"
        )
    if given is not None:
        return table.set_column(table.column_names.index("multiplier"), "multiplier", known)
    return table.append_column("multiplier", known)
