"""Exceptions of the public API."""

from __future__ import annotations

from typing import Any


class ChainError(ValueError):
    """A chain that cannot be used as given (missing column, wrong type, bad spot...)."""


class InvalidRowsError(ChainError):
    """Raised with ``on_invalid="raise"`` when rows would be dropped.

    Attributes
    ----------
    dropped : pyarrow.Table
        The rows that would be dropped, per underlying and reason.
    """

    def __init__(self, message: str, dropped: Any) -> None:
        super().__init__(message)
        self.dropped = dropped
