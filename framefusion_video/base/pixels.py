"""The two pixel conversions: uint8 (video and image files) <-> float32 in [0, 1] (the model)."""

from __future__ import annotations

import numpy as np


def to_unit_float(img: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) -> float32 in [0, 1], the same shape."""
    return img.astype(np.float32) * np.float32(1.0 / 255.0)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] -> uint8, rounded to the nearest level (values outside [0, 1] clipped)."""
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
