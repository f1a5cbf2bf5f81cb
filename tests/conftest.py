"""Shared fixtures: the location of ``../shared/data`` and tiny synthetic media."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

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


@pytest.fixture()
def face_folder(tmp_path, monkeypatch):
    """A few face photos (the public-domain astronaut portrait, shifted and scaled)."""
    import cv2
    from skimage import data

    monkeypatch.setenv("FFV_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "faces"
    folder.mkdir()
    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    for i, scale in enumerate((1.0, 0.8, 0.6, 0.9)):
        m = np.float32([[scale, 0, 20 * i], [0, scale, 10 * i]])
        cv2.imwrite(str(folder / f"face_{i}.jpg"), cv2.warpAffine(img, m, (512, 512), borderMode=cv2.BORDER_REFLECT))
    return folder
