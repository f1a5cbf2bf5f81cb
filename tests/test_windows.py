"""Super-resolution windows: sized to each face, pasted on the grid they were cut from."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from framefusion_video.restore.config import RestoreConfig
from framefusion_video.restore.pipeline import restore_frames
from framefusion_video.restore.windows import (MIN_MARGIN, SAME_SIZE_MULTIPLE, WINDOW_MARGIN, box_weights, cut_window,
                                               feather_mask, grown_box, paste_window, reduce_output, window_rect)


def test_a_window_is_the_face_box_and_its_margin_clipped_to_the_frame():
    box = (100.0, 50.0, 180.0, 150.0)  # 80 x 100: a margin of WINDOW_MARGIN x 100 on each side
    m = WINDOW_MARGIN * 100
    assert window_rect(box, (720, 1280)) == (int(100 - m), int(50 - m), int(180 + m), int(150 + m))
    assert window_rect((2.0, 3.0, 12.0, 13.0), (720, 1280)) == (0, 0, 12 + MIN_MARGIN, 13 + MIN_MARGIN)
    assert window_rect((1200.0, 600.0, 1290.0, 730.0), (720, 1280))[2:] == (1280, 720)


@pytest.mark.parametrize("box", [(100.0, 50.0, 181.0, 151.0), (0.0, 3.0, 37.0, 30.0), (1230.0, 690.0, 1279.0, 719.0)])
def test_a_same_size_restorers_window_holds_the_face_in_sides_of_whole_multiples(box):
    plain = window_rect(box, (720, 1280))
    x0, y0, x1, y1 = window_rect(box, (720, 1280), multiple=SAME_SIZE_MULTIPLE)
    assert (x1 - x0) % SAME_SIZE_MULTIPLE == 0 and (y1 - y0) % SAME_SIZE_MULTIPLE == 0
    assert 0 <= x0 <= plain[0] and 0 <= y0 <= plain[1] and plain[2] <= x1 <= 1280 and plain[3] <= y1 <= 720
    assert x1 - x0 < plain[2] - plain[0] + SAME_SIZE_MULTIPLE and y1 - y0 < plain[3] - plain[1] + SAME_SIZE_MULTIPLE
    assert window_rect((0.0, 0.0, 5.0, 5.0), (6, 6), multiple=8) is None  # the frame is smaller


def test_a_window_of_fixed_size_is_centred_inside_the_frame_or_refused():
    assert window_rect((40.0, 40.0, 60.0, 60.0), (200, 300), side=64) == (18, 18, 82, 82)
    assert window_rect((0.0, 0.0, 20.0, 20.0), (200, 300), side=64) == (0, 0, 64, 64)  # moved inside
    assert window_rect((40.0, 40.0, 100.0, 100.0), (200, 300), side=64) is None  # face and margin exceed it
    assert window_rect((10.0, 10.0, 20.0, 20.0), (50, 300), side=64) is None  # frame smaller than the window


@pytest.mark.parametrize("scale", [2, 4])
def test_the_paste_mask_covers_the_face_and_fades_out_at_the_window_edge(scale):
    box = (100.0, 50.0, 180.0, 150.0)
    rect = window_rect(box, (720, 1280))
    mask = feather_mask(rect, (720, 1280), box, scale)
    assert mask.shape == (scale * (rect[3] - rect[1]), scale * (rect[2] - rect[0]))
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    fy0, fx0 = (scale * (v - o) for v, o in ((box[1], rect[1]), (box[0], rect[0])))
    fy1, fx1 = (scale * (v - o) for v, o in ((box[3], rect[1]), (box[2], rect[0])))
    assert mask[int(fy0):int(fy1), int(fx0):int(fx1)].min() == 1.0  # the whole face is the network's
    assert max(mask[0].max(), mask[-1].max(), mask[:, 0].max(), mask[:, -1].max()) < 0.05  # no seam at the edge


def test_the_paste_mask_keeps_full_weight_where_the_window_meets_the_frame_border():
    box = (0.0, 0.0, 40.0, 40.0)
    rect = window_rect(box, (100, 100))
    mask = feather_mask(rect, (100, 100), box, 2)
    assert mask[0, :40].min() == 1.0 and mask[:40, 0].min() == 1.0
    assert mask[-1].max() < 0.05


def test_grown_box_takes_the_larger_side_for_its_margin():
    m = WINDOW_MARGIN * 100
    assert grown_box((0.0, 0.0, 100.0, 40.0)) == (-m, -m, 100 + m, 40 + m)


def test_paste_window_blends_by_strength_and_leaves_the_rest_of_the_frame():
    base = np.full((40, 60, 3), 100, np.uint8)
    rect = (5, 4, 15, 12)
    restored = np.full((16, 20, 3), 200 / 255, np.float32)
    mask = np.ones((16, 20), np.float32)
    half = base.copy()
    paste_window(half, restored, rect, mask, 2, strength=0.5)
    assert (half[8:24, 10:30] == 150).all()
    outside = np.ones(base.shape[:2], bool)
    outside[8:24, 10:30] = False
    assert (half[outside] == 100).all()
    none = base.copy()
    paste_window(none, restored, rect, mask, 2, strength=0.0)
    np.testing.assert_array_equal(none, base)


def test_a_window_round_trips_through_an_exact_upscale():
    frame = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    window = cut_window(frame, (3, 4, 23, 20))
    blocky = np.repeat(np.repeat(window, 4, axis=0), 4, axis=1)
    np.testing.assert_allclose(reduce_output(blocky, 4), window, atol=1e-6)
    weights = box_weights((3, 4, 23, 20), (8.0, 8.0, 18.0, 16.0))
    assert weights.shape == window.shape[:2] and abs(weights.sum() - 1.0) < 1e-5 and weights[0, 0] == 0


class SizelessBlockySuperResolution:
    """A fully convolutional x2 "network" (nearest-neighbour), taking windows of any size."""

    crop_size, scale = None, 2

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def restore(self, crops: np.ndarray) -> np.ndarray:
        self.shapes.append(crops.shape)
        return np.repeat(np.repeat(crops, 2, axis=1), 2, axis=2)


def test_a_network_of_any_input_size_super_resolves_faces_of_every_size():
    """No face is too large: each is given a window sized to it, and the outputs are pasted."""
    from framefusion_video.restore.blending import upscale_frame

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    boxes = [(20.0, 30.0, 44.0, 60.0), (300.0, 40.0, 560.0, 330.0)]  # a 30 px and a 290 px face
    faces = []
    for k, box in enumerate(boxes):
        x0, y0, x1, y1 = box
        w = x1 - x0
        landmarks = np.float32([[x0 + 0.3 * w, y0 + 0.4 * w], [x0 + 0.7 * w, y0 + 0.4 * w], [x0 + 0.5 * w, y0 + 0.6 * w],
                                [x0 + 0.35 * w, y0 + 0.8 * w], [x0 + 0.65 * w, y0 + 0.8 * w]])
        faces.append(SimpleNamespace(track_id=k, carried=False, face=SimpleNamespace(box=box, landmarks=landmarks)))
    restorer = SizelessBlockySuperResolution()
    out = next(restore_frames(iter([(frame, faces)]), restorer, RestoreConfig(upscale=2, temporal=0.0)))
    assert out.count("restored") == 2
    assert sorted(s[1:3] for s in restorer.shapes) == sorted(
        (r[3] - r[1], r[2] - r[0]) for r in (window_rect(b, frame.shape[:2]) for b in boxes))
    blocky = np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1)
    assert not np.array_equal(out.restored, upscale_frame(frame, 2))
    for x0, y0, x1, y1 in boxes:  # each face is the network's output, at its full size
        inner = np.s_[int(2 * y0):int(2 * y1), int(2 * x0):int(2 * x1)]
        assert np.abs(out.restored[inner].astype(int) - blocky[inner]).max() <= 1


class _Brighter:
    """A fake same-size network of any input size: brightens, recording the shapes it is given."""

    crop_size = None
    scale = 1

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def restore(self, crops: np.ndarray) -> np.ndarray:
        self.shapes.append(crops.shape)
        return np.clip(crops + 0.2, 0.0, 1.0)


def test_a_same_size_restorer_of_any_input_size_restores_each_face_in_its_own_window():
    """No aligned crop: each face at the frame's own resolution, pasted into a copy of the frame."""
    from framefusion_video.restore.clip import checked_restorer
    from framefusion_video.base.errors import FfvError

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 200, (360, 640, 3), dtype=np.uint8)
    before = frame.copy()
    box = (300.0, 40.0, 561.0, 331.0)
    x0, y0, x1, y1 = box
    w = x1 - x0
    landmarks = np.float32([[x0 + 0.3 * w, y0 + 0.4 * w], [x0 + 0.7 * w, y0 + 0.4 * w], [x0 + 0.5 * w, y0 + 0.6 * w],
                            [x0 + 0.35 * w, y0 + 0.8 * w], [x0 + 0.65 * w, y0 + 0.8 * w]])
    face = SimpleNamespace(track_id=0, carried=False, face=SimpleNamespace(box=box, landmarks=landmarks))
    restorer = checked_restorer(_Brighter(), 1, "brighter")
    out = next(restore_frames(iter([(frame, [face])]), restorer, RestoreConfig(safety=False)))
    np.testing.assert_array_equal(frame, before)  # the input frame is never pasted into
    assert out.count("restored") == 1
    rx0, ry0, rx1, ry1 = window_rect(box, frame.shape[:2], multiple=SAME_SIZE_MULTIPLE)
    assert restorer.shapes == [(1, ry1 - ry0, rx1 - rx0, 3)]
    inner = np.s_[int(y0) + 10:int(y1) - 10, int(x0) + 10:int(x1) - 10]
    np.testing.assert_allclose(out.restored[inner].astype(int) - frame[inner], 51, atol=1)
    outside = np.ones(frame.shape[:2], bool)
    outside[ry0:ry1, rx0:rx1] = False
    np.testing.assert_array_equal(out.restored[outside], frame[outside])
    with pytest.raises(FfvError, match="restore without --upscale"):
        checked_restorer(_Brighter(), 2, "brighter")


class _Scaled:
    """A fake network of any input size: nearest-neighbour upscaling by ``scale``, counting calls."""

    crop_size = None

    def __init__(self, scale: int) -> None:
        self.scale, self.calls = scale, 0

    def restore(self, crops: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.repeat(np.repeat(crops, self.scale, axis=1), self.scale, axis=2)


def test_an_enlarged_restorer_runs_the_x2_network_once_then_bicubic_on_every_window():
    from framefusion_video.restore.blending import upscale_frame
    from framefusion_video.restore.inference import EnlargedRestorer

    x2 = _Scaled(2)
    enlarged = EnlargedRestorer(x2, 4)
    for seed, shape in enumerate([(1, 40, 64, 3), (2, 65, 50, 3)]):
        crops = np.random.default_rng(seed).random(shape, dtype=np.float32)
        out = enlarged.restore(crops)
        assert out.shape == (shape[0], 4 * shape[1], 4 * shape[2], 3) and out.dtype == np.float32
        np.testing.assert_array_equal(out[-1], upscale_frame(np.repeat(np.repeat(crops[-1], 2, axis=0), 2, axis=1), 2))
    assert x2.calls == 2 and (enlarged.scale, enlarged.crop_size) == (4, None)
    assert enlarged.restore(np.zeros((0, 8, 6, 3), np.float32)).shape == (0, 32, 24, 3)
    for network, scale in [(x2, 2), (x2, 3), (_Scaled(1), 4)]:
        with pytest.raises(ValueError):
            EnlargedRestorer(network, scale)


def test_a_bicubic_x2_of_a_float_image_doubles_each_side_and_keeps_a_flat_image():
    from framefusion_video.restore.blending import upscale_frame

    flat = np.full((5, 7, 3), 0.25, np.float32)
    np.testing.assert_allclose(upscale_frame(flat, 2), np.full((10, 14, 3), 0.25, np.float32), atol=1e-6)


def test_the_shipped_x4_restorer_is_a_shipped_x2_network_then_bicubic():
    from framefusion_video.restore.inference import EnlargedRestorer, default_sr_model_path
    from framefusion_video.restore.clip import load_default_restorer

    restorer = load_default_restorer(RestoreConfig(upscale=4))
    assert isinstance(restorer, EnlargedRestorer) and (restorer.scale, restorer.crop_size) == (4, None)
    assert (restorer.network.scale, restorer.network.path) == (2, default_sr_model_path(4))


def test_the_shipped_x2_restorer_gives_small_windows_to_the_sized_network():
    from framefusion_video.restore.clip import load_default_restorer
    from framefusion_video.restore.inference import (SMALL_WINDOW_MODEL, RoutedRestorer, default_sr_model_path,
                                                     shipped_weights_dir)

    restorer = load_default_restorer(RestoreConfig(upscale=2))
    name, largest = SMALL_WINDOW_MODEL[2]
    assert isinstance(restorer, RoutedRestorer) and (restorer.scale, restorer.crop_size) == (2, None)
    assert (restorer.small.path, restorer.large.path) == (shipped_weights_dir() / name, default_sr_model_path(2))
    assert restorer.largest_small == largest


def test_a_routed_restorer_sends_each_window_by_its_longer_side():
    small, large = _Scaled(2), _Scaled(2)
    large.restore = lambda crops: np.zeros((len(crops), 2 * crops.shape[1], 2 * crops.shape[2], 3), np.float32)
    from framefusion_video.restore.inference import RoutedRestorer

    routed = RoutedRestorer(small, large, 40)
    window = np.full((1, 40, 24, 3), 0.5, np.float32)
    assert routed.restore(window).shape == (1, 80, 48, 3) and routed.restore(window).max() == 0.5
    assert small.calls == 2
    assert routed.restore(np.full((1, 24, 41, 3), 0.5, np.float32)).max() == 0.0 and small.calls == 2
    with pytest.raises(ValueError, match="cannot route"):
        RoutedRestorer(_Scaled(2), _Scaled(4), 40)


def test_the_review_lets_a_repair_of_the_finest_detail_through_but_not_a_different_face():
    from framefusion_video.restore.pipeline import review_windows
    from framefusion_video.restore.safety import REFUSED, RESTORED, SafetyConfig

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float32)
    face = 0.5 + 0.2 * np.sin(xx / 5)[..., None] * np.cos(yy / 7)[..., None] * np.ones(3, np.float32)
    # The input: the face with 8x8 blocking of about 3 grey levels, all in the finest band.
    blocks = np.kron(rng.choice([-1.0, 1.0], size=(6, 6)), np.ones((8, 8)))
    window = np.clip(face + np.float32(3 / 255) * blocks[..., None] * np.where((xx + yy) % 2, 1, -1)[..., None],
                     0, 1).astype(np.float32)
    deblocked = np.repeat(np.repeat(face, 2, 0), 2, 1)  # a x2 output that removed the blocking
    other = np.repeat(np.repeat(np.clip(face + 0.1 * np.sin(yy / 3)[..., None], 0, 1), 2, 0), 2, 1)  # not the face
    rect, box = (0, 0, 48, 48), (8.0, 8.0, 40.0, 40.0)
    review = SafetyConfig()
    statuses, _ = review_windows([deblocked, other], [window, window], [rect, rect], [box, box], 2, safety=review)
    assert statuses == [RESTORED, REFUSED]
    fine_only = SafetyConfig(window_band=0.0)  # compared as they are, the repair reads as a change
    assert review_windows([deblocked], [window], [rect], [box], 2, safety=fine_only)[0] == [REFUSED]
    with pytest.raises(ValueError):
        SafetyConfig(window_band=-1.0)
