"""cutting.py: the restorer's cutter, decided once from its scale, and the FaceCuts both roads give."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from framefusion_video.faces.alignment import template
from framefusion_video.restore.blending import upscale_frame
from framefusion_video.restore.cutting import CropCutter, WindowCutter, cutter_for
from framefusion_video.restore.safety import LEFT_ALONE, REFUSED, SafetyConfig


def _face(x0: float, y0: float, side: float, track_id: int | None = 1, landmarks: np.ndarray | None = None):
    """A tracked face in the box (x0, y0, side): the alignment template scaled into it."""
    points = template(1) * np.float32(side) + np.float32([x0, y0]) if landmarks is None else landmarks
    return SimpleNamespace(face=SimpleNamespace(box=(x0, y0, x0 + side, y0 + side), landmarks=points),
                           track_id=track_id)


def _frame(h: int = 96, w: int = 128) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_the_cutter_follows_the_restorers_own_scale() -> None:
    assert cutter_for(SimpleNamespace(crop_size=128), 1) == CropCutter(128, 1)
    assert cutter_for(SimpleNamespace(crop_size=128, scale=1), 2) == CropCutter(128, 2)
    assert cutter_for(SimpleNamespace(crop_size=None, scale=4), 4) == WindowCutter(None, 4)
    assert cutter_for(SimpleNamespace(crop_size=64, scale=2), 2) == WindowCutter(64, 2)


def test_aligned_crops_and_windows_come_as_one_type_with_the_frame_to_paste_into() -> None:
    frame = _frame()
    faces = [_face(30, 20, 48), _face(0, 0, 40, track_id=2, landmarks=np.full((5, 2), 200, np.float32))]
    crops = CropCutter(32).cut(frame, faces, SafetyConfig())
    assert not crops.windowed and crops.base is frame
    assert [c.shape for c in crops.inputs] == [(32, 32, 3)] and crops.inputs[0].dtype == np.float32
    assert len(crops.matrices) == 1 and crops.rects == [] and crops.track_ids == [1]
    assert [o.status for o in crops.outcomes] == [REFUSED]  # landmarks outside their box

    windows = WindowCutter(None, 2).cut(frame, faces, SafetyConfig())
    assert windows.windowed and np.array_equal(windows.base, upscale_frame(frame, 2))
    assert len(windows.inputs) == len(windows.rects) == len(windows.boxes) == 1 and windows.matrices == []
    x0, y0, x1, y1 = windows.rects[0]
    assert windows.inputs[0].shape == (y1 - y0, x1 - x0, 3)
    assert [o.status for o in windows.outcomes] == [REFUSED]


def test_a_face_too_large_for_a_fixed_size_network_is_left_alone_and_no_track_means_no_ids() -> None:
    cuts = WindowCutter(16, 4).cut(_frame(), [_face(30, 20, 48, track_id=None)])
    assert cuts.inputs == [] and [o.status for o in cuts.outcomes] == [LEFT_ALONE]
    assert CropCutter(32, 2).cut(_frame(), [_face(30, 20, 48, track_id=None)]).track_ids == []


def test_a_frame_without_faces_is_cut_into_nothing_but_its_base() -> None:
    frame = _frame()
    assert CropCutter(32).cut(frame, []).base is frame
    empty = WindowCutter(None, 2).cut(frame, [])
    assert empty.inputs == [] and empty.base.shape == (192, 256, 3)
