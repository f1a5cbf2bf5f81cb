"""Shared fixtures: the location of ``../shared/data`` and tiny synthetic media."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FFV_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it are skipped, with the reason, when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set FFV_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_videos(shared_data: Path) -> Path:
    path = shared_data / "videos"
    if not path.is_dir():
        pytest.skip(f"shared videos not found at {path}")
    return path
