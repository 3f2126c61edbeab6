"""Readers that turn option-chain files and option symbols into Arrow tables."""

from fastgex.io.cboe import read_cboe, read_cboe_csv, read_cboe_json
from fastgex.io.deribit import read_deribit
from fastgex.io.futures import FUTURES_MULTIPLIERS, futures_chain
from fastgex.io.symbols import parse_deribit, parse_osi
from fastgex.io.vendors import read_databento, read_orats, read_thetadata

__all__ = [
    "FUTURES_MULTIPLIERS",
    "futures_chain",
    "parse_deribit",
    "parse_osi",
    "read_cboe",
    "read_cboe_csv",
    "read_cboe_json",
    "read_databento",
    "read_deribit",
    "read_orats",
    "read_thetadata",
]
