"""Soft faces restored again at their effective resolution (``restore/soft_faces.py``)."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from framefusion_video.restore.config import RestoreConfig
from framefusion_video.restore.cutting import FaceOutcome
from framefusion_video.restore.pipeline import RestoredFrame, restore_frames
from framefusion_video.restore.soft_faces import SoftFaceConfig, SoftTracks, WithSoftFaces, merged, softness
from test_windows import SizelessBlockySuperResolution as _Nearest  # a x2 nearest-neighbour fake


class _Darker:
    """A fake ×2 network of any input size that enlarges by nearest neighbour and darkens."""

    crop_size, scale = None, 2

    def restore(self, crops: np.ndarray) -> np.ndarray:
        return np.clip(np.repeat(np.repeat(crops, 2, axis=1), 2, axis=2) - 0.2, 0.0, 1.0)


class _Crops:
    """A fake same-size restorer of 32 px aligned crops that leaves every crop alone."""

    crop_size, scale = 32, 1

    def restore(self, crops: np.ndarray) -> np.ndarray:
        return crops.copy()


def _face(box, track_id=0):
    x0, y0, x1, y1 = box
    w = x1 - x0
    landmarks = np.float32([[x0 + 0.3 * w, y0 + 0.4 * w], [x0 + 0.7 * w, y0 + 0.4 * w], [x0 + 0.5 * w, y0 + 0.6 * w],
                            [x0 + 0.35 * w, y0 + 0.8 * w], [x0 + 0.65 * w, y0 + 0.8 * w]])
    return SimpleNamespace(track_id=track_id, carried=False, face=SimpleNamespace(box=box, landmarks=landmarks))


def _soft_and_sharp_frame() -> np.ndarray:
    """A frame whose left half is heavily blurred noise and right half is sharp noise."""
    rng = np.random.default_rng(0)
    frame = rng.integers(40, 216, (240, 480, 3), dtype=np.uint8)
    frame[:, :240] = cv2.GaussianBlur(frame[:, :240], (0, 0), 4.0)
    return frame


def test_softness_is_higher_for_a_blurred_face_than_for_a_sharp_one():
    frame = _soft_and_sharp_frame()
    soft, sharp = softness(frame[40:200, 40:200], 2), softness(frame[40:200, 280:440], 2)
    assert soft > sharp + 10
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert softness(flat, 2) == pytest.approx(10 * np.log10(255.0**2 / 1e-6))


def test_a_tracks_road_follows_the_mean_softness_of_its_faces_so_far():
    frame = _soft_and_sharp_frame()
    sharp_box, soft_box = (280.0, 40.0, 440.0, 200.0), (40.0, 40.0, 200.0, 200.0)
    threshold = 0.5 * (softness(frame[40:200, 40:200], 2) + softness(frame[40:200, 280:440], 2))
    tracks = SoftTracks(SoftFaceConfig(reduction=2, threshold=threshold))
    assert tracks.is_soft(frame, _face(soft_box, 1))
    assert not tracks.is_soft(frame, _face(sharp_box, 2))
    # One sharp frame after two soft ones keeps the track soft: its mean is still above.
    assert tracks.is_soft(frame, _face(soft_box, 1))
    assert tracks.is_soft(frame, _face(sharp_box, 1))
    assert not tracks.is_soft(frame, _face((40.0, 40.0, 70.0, 70.0), 3))  # below min_side: the crops' road


def test_a_reduced_restorer_restores_a_window_at_its_own_size_from_its_reduced_copy():
    from framefusion_video.restore.inference import ReducedRestorer, reduced

    network = _Nearest()
    restorer = ReducedRestorer(network, 2)
    crops = np.random.default_rng(1).random((2, 40, 64, 3), dtype=np.float32)
    out = restorer.restore(crops)
    assert out.shape == crops.shape and out.dtype == np.float32 and (restorer.scale, restorer.crop_size) == (1, None)
    assert network.shapes == [(2, 20, 32, 3)]
    np.testing.assert_allclose(out[0], np.repeat(np.repeat(reduced(crops[0], 2), 2, axis=0), 2, axis=1), atol=1e-6)
    assert ReducedRestorer(network, 3).restore(crops).shape == crops.shape  # enlarged back by bicubic
    for bad, reduction in [(_Crops(), 2), (network, 1)]:
        with pytest.raises(ValueError):
            ReducedRestorer(bad, reduction)


def test_soft_faces_are_restored_again_on_their_window_and_sharp_ones_are_not():
    from framefusion_video.restore.inference import ReducedRestorer

    frame = _soft_and_sharp_frame()
    soft_box, sharp_box = (60.0, 50.0, 180.0, 170.0), (300.0, 50.0, 420.0, 170.0)
    faces = [_face(soft_box, 0), _face(sharp_box, 1)]
    config = SoftFaceConfig(reduction=2, threshold=0.5 * (softness(frame[50:170, 60:180], 2)
                                                          + softness(frame[50:170, 300:420], 2)))
    restorer = WithSoftFaces(_Crops(), ReducedRestorer(_Darker(), 2), config)
    before = frame.copy()
    out = next(restore_frames(iter([(frame, faces)]), restorer, RestoreConfig(safety=False, temporal=0.0)))
    np.testing.assert_array_equal(frame, before)
    statuses = {o.box: o.status for o in out.outcomes}
    assert statuses == {soft_box: "restored", sharp_box: "left alone"} and out.restored_faces == 1
    inner = np.s_[70:150, 80:160]
    assert (out.restored[inner].astype(int) - frame[inner]).mean() < -40  # the darkening network's window
    np.testing.assert_array_equal(out.restored[:, 240:], frame[:, 240:])  # the sharp face: the crops' road alone


def test_a_soft_face_restorer_needs_same_size_restorers():
    from framefusion_video.restore.inference import ReducedRestorer

    with pytest.raises(ValueError):
        WithSoftFaces(_Nearest(), ReducedRestorer(_Nearest(), 2))
    with pytest.raises(ValueError):
        WithSoftFaces(_Crops(), _Crops())
    both = WithSoftFaces(_Crops(), ReducedRestorer(_Nearest(), 2))
    assert (both.crop_size, both.scale) == (32, 1)


def test_a_face_restored_on_its_window_counts_as_restored_and_one_refused_there_keeps_its_outcome():
    a, b, c = (0.0, 0.0, 10.0, 10.0), (20.0, 0.0, 30.0, 10.0), (40.0, 0.0, 50.0, 10.0)
    frame = np.zeros((4, 4, 3), np.uint8)
    first = RestoredFrame(0, frame, frame, [], 1, [b], [FaceOutcome(a, "left alone", 0), FaceOutcome(b, "restored", 1),
                                                         FaceOutcome(c, "refused", 2, "why")])
    second_out = np.ones_like(frame)
    second = RestoredFrame(0, frame, second_out, [], 1, [a], [FaceOutcome(a, "restored", 0),
                                                               FaceOutcome(c, "refused", 2, "other")])
    out = merged(first, second)
    assert [o.status for o in out.outcomes] == ["restored", "restored", "refused"]
    assert out.outcomes[2].reason == "why" and out.restored is second_out and out.restored_faces == 2


def test_the_default_restorer_carries_the_soft_face_road_only_when_asked():
    from framefusion_video.restore.clip import load_default_restorer
    from framefusion_video.restore.inference import SOFT_FACE_MODEL, ReducedRestorer, shipped_weights_dir

    assert not isinstance(load_default_restorer(RestoreConfig()), WithSoftFaces)
    restorer = load_default_restorer(RestoreConfig(soft_faces=True))
    assert isinstance(restorer, WithSoftFaces) and isinstance(restorer.soft, ReducedRestorer)
    assert restorer.soft.network.path == shipped_weights_dir() / SOFT_FACE_MODEL
    assert restorer.soft.reduction == SoftFaceConfig().reduction
    assert not isinstance(load_default_restorer(RestoreConfig(soft_faces=True, upscale=2)), WithSoftFaces)


def test_restore_video_runs_the_soft_road_after_the_crops(tmp_path):
    """Through a whole clip (decode, track, restore, encode): the faces the crops' road leaves
    alone are restored on their windows, and counted as restored."""
    from skimage import data

    from framefusion_video.restore.clip import restore_video
    from framefusion_video.restore.inference import ReducedRestorer
    from media import make_clip
    from test_restore import decode

    src = make_clip(tmp_path / "face.mp4", size=(160, 160), frames=6, face_image=data.astronaut())
    restorer = WithSoftFaces(_Crops(), ReducedRestorer(_Darker(), 2), SoftFaceConfig(threshold=0.0, min_side=16))
    result = restore_video(src, tmp_path / "out.mp4", RestoreConfig(temporal=0.0, safety=False), restorer=restorer)
    assert (result.status, result.frames) == ("done", 6) and result.faces >= 5 and result.faces_left_alone == 0
    before, after = decode(src), decode(tmp_path / "out.mp4")
    centre = np.s_[25:50, 62:84]  # inside the astronaut's face
    assert np.mean([b[centre].astype(float).mean() - a[centre].mean() for b, a in zip(before, after)]) > 30
