"""Readers that turn option-chain files into Arrow tables."""

from fastgex.io.cboe import read_cboe, read_cboe_csv, read_cboe_json

__all__ = ["read_cboe", "read_cboe_csv", "read_cboe_json"]
