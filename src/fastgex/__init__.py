"""fastgex: option greeks and dealer gamma exposure (GEX) over whole markets.

GEX describes how the market behaves *if* it moves (dampened when dealers are long
gamma, amplified when short), never *which way* it moves.

The public API: :func:`read_chain`, :func:`gex` and :class:`GexResult`; :func:`levels`,
:func:`profile` and :func:`classify_regime` (expiry buckets in :mod:`fastgex.buckets`);
:func:`greeks` and :func:`implied_vol` (per-contract greeks and implied vols); the named
choices :class:`Convention`, :class:`Unit`, :class:`GammaSource`, :class:`DayCount`,
sample data in :mod:`fastgex.sample`, readers in :mod:`fastgex.io` and the slow
reference implementation in :mod:`fastgex.reference`.
"""

from fastgex._chain import read_chain
from fastgex._errors import ChainError, InvalidRowsError
from fastgex._exposure_profile import ExposureProfileResult, exposure_profile
from fastgex._exposures import (
    EXPOSURE_UNIT_FACTORS,
    EXPOSURE_UNITS,
    ExposureKind,
    ExposureResult,
    HedgeFlowResult,
    exposures,
    hedge_flow,
)
from fastgex._flow import FLOW_SCHEMA, FlowResult, flow, flow_series
from fastgex._gex import GexResult, gex
from fastgex._greeks import (
    ALL_GREEKS,
    GREEK_UNITS,
    GreeksResult,
    GreekUnits,
    ImpliedVolResult,
    greeks,
    implied_vol,
)
from fastgex._levels import LevelsResult, ProfileResult, levels, profile
from fastgex.conventions import Convention, DayCount, GammaSource, Unit
from fastgex.regime import Regime, RegimeThresholds, classify_regime, measure_skew, skew_zscore

__version__ = "0.1.0"

__all__ = [
    "ALL_GREEKS",
    "EXPOSURE_UNITS",
    "EXPOSURE_UNIT_FACTORS",
    "FLOW_SCHEMA",
    "GREEK_UNITS",
    "ChainError",
    "Convention",
    "DayCount",
    "ExposureKind",
    "ExposureProfileResult",
    "ExposureResult",
    "FlowResult",
    "GammaSource",
    "GexResult",
    "GreekUnits",
    "GreeksResult",
    "HedgeFlowResult",
    "ImpliedVolResult",
    "InvalidRowsError",
    "LevelsResult",
    "ProfileResult",
    "Regime",
    "RegimeThresholds",
    "Unit",
    "__version__",
    "classify_regime",
    "exposure_profile",
    "exposures",
    "flow",
    "flow_series",
    "gex",
    "greeks",
    "hedge_flow",
    "implied_vol",
    "levels",
    "measure_skew",
    "profile",
    "read_chain",
    "skew_zscore",
]
