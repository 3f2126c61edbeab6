"""Shared fixtures: where the real chains are, and small canonical chains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Real chains live beside the project (``../shared/data/chains``); never copied in.
CHAINS_DIR = Path(
    os.environ.get(
        "FASTGEX_CHAINS_DIR",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chains",
    )
)


@pytest.fixture(scope="session")
def chains_dir() -> Path:
    """The real-chain folder; tests using it skip with a clear reason when it is absent."""
    if not CHAINS_DIR.is_dir():
        pytest.skip(f"real chains not found at {CHAINS_DIR} (set FASTGEX_CHAINS_DIR)")
    return CHAINS_DIR
