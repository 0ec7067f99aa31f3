"""Shared fixtures: where the real sample data lives, and a fixed torch thread count for tests."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA
