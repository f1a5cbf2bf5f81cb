"""Tests for blending.py: face masks, colour matching, paste-back and upscaling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framefusion_video.faces import alignment
from framefusion_video.restore.blending import (
    BlendConfig, face_colour_range, face_mask, match_colour, match_face_colour, paste_faces, paste_mask, scale_matrix,
    upscale_frame,
)

S = 128


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """scikit-image's astronaut photo, uint8 RGB (512, 512, 3): real skin, hair and edges."""
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    """Frame->crop matrix for the astronaut's face (key points measured once with MediaPipe)."""
    landmarks = alignment.five_points_from_keypoints(
        (202.8, 103.5), (248.0, 105.9), (224.0, 132.3), (222.6, 148.5)
    )
    return alignment.estimate_alignment(landmarks, S)


def _crop(frame: np.ndarray, matrix: np.ndarray, size: int = S) -> np.ndarray:
    return alignment.warp_to_crop(frame, matrix, size).astype(np.float32) / 255.0


def _alpha(matrix: np.ndarray, frame: np.ndarray, config: BlendConfig = BlendConfig(), size: int = S):
    """The paste mask warped into frame space, as paste_faces uses it."""
    height, width = frame.shape[:2]
    return alignment.warp_to_frame(paste_mask(size, config), matrix, (width, height))


def _similarity(centre: tuple[float, float], face_px: float, angle_deg: float = 0.0) -> np.ndarray:
    """Frame->crop matrix putting a face of eye distance ``face_px`` at frame point ``centre``."""
    tpl = alignment.template(S).astype(np.float64)
    scale = face_px / np.linalg.norm(tpl[1] - tpl[0])
    rot = cv2.getRotationMatrix2D((0.0, 0.0), angle_deg, 1.0)[:, :2]
    points = (tpl - tpl.mean(0)) @ rot.T * scale + np.asarray(centre)
    return alignment.estimate_alignment(points, S)


@pytest.mark.parametrize("size", [64, 128, 256])
@pytest.mark.parametrize(
    "config", [BlendConfig(), BlendConfig(erode=0.0, feather=0.3), BlendConfig(erode=0.1, feather=0.0)]
)
def test_face_mask_shape_range_border_and_symmetry(size: int, config: BlendConfig) -> None:
    mask = face_mask(size, config)
    assert mask.shape == (size, size) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() == 1.0
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert np.all(border == 0.0)
    np.testing.assert_allclose(mask, mask[:, ::-1], atol=1e-6)
    assert not mask.flags.writeable  # cached: callers must not be able to corrupt it


@pytest.mark.parametrize("size", [64, 128, 512])
def test_default_mask_keeps_eyes_nose_and_mouth_whole(size: int) -> None:
    # They are what the restoration is for: the default mask must not fade them.
    mask = face_mask(size)
    points = np.rint(alignment.template(size)).astype(int)
    assert np.all(mask[points[:, 1], points[:, 0]] == 1.0)


def test_the_paste_mask_holds_the_face_mask_and_the_whole_face_box() -> None:
    face, head = face_mask(S), paste_mask(S)
    assert np.all(head >= face - 1e-6) and head.sum() > 1.3 * face.sum()
    assert np.all(head[0] == 0) and np.all(head[-1] == 0) and np.all(head[:, 0] == 0) and np.all(head[:, -1] == 0)
    # The face box a detector draws: about an eye-to-mouth distance above the eyes, down to the
    # chin, a little beyond the eyes' outer corners; the face ellipse leaves its rim out.
    tpl = alignment.template(S)
    eye_y, mouth_y = tpl[:2, 1].mean(), tpl[3:, 1].mean()
    x0, x1 = int(tpl[0, 0] - 0.45 * (tpl[1, 0] - tpl[0, 0])), int(tpl[1, 0] + 0.45 * (tpl[1, 0] - tpl[0, 0]))
    y0, y1 = int(eye_y - 0.8 * (mouth_y - eye_y)), int(mouth_y + 0.5 * (mouth_y - eye_y))
    assert head[y0:y1, x0:x1].mean() > 0.97 > face[y0:y1, x0:x1].mean()


def test_face_mask_erode_shrinks_and_feather_softens() -> None:
    base = face_mask(S, BlendConfig(erode=0.0, feather=0.05))
    eroded = face_mask(S, BlendConfig(erode=0.08, feather=0.05))
    soft = face_mask(S, BlendConfig(erode=0.0, feather=0.25))
    assert eroded.sum() < base.sum()
    assert np.all(eroded <= base + 1e-6)
    partial = lambda m: np.count_nonzero((m > 0.0) & (m < 1.0))  # noqa: E731
    assert partial(soft) > 2 * partial(base)


def test_strength_zero_returns_an_equal_new_frame(portrait: np.ndarray, matrix: np.ndarray) -> None:
    noise = np.random.default_rng(0).random((S, S, 3), dtype=np.float32)
    out = paste_faces(portrait, [(noise, matrix)], config=BlendConfig(strength=0.0))
    assert out is not portrait
    np.testing.assert_array_equal(out, portrait)


def test_pixels_outside_the_mask_are_bit_identical(portrait: np.ndarray, matrix: np.ndarray) -> None:
    before = portrait.copy()
    noise = np.random.default_rng(1).random((S, S, 3), dtype=np.float32)
    out = paste_faces(portrait, [(noise, matrix)])
    np.testing.assert_array_equal(portrait, before)  # the input is not modified
    assert out.dtype == np.uint8 and out.shape == portrait.shape
    alpha = _alpha(matrix, portrait)
    np.testing.assert_array_equal(out[alpha == 0.0], portrait[alpha == 0.0])
    changed = np.any(out != portrait, axis=2)
    assert changed[alpha > 0.5].mean() > 0.9  # and the face itself was replaced


def test_identity_restoration_leaves_the_frame_exactly_as_it_was(portrait, matrix) -> None:
    # Only what the restorer changed is warped back: a face it returns as it got it is not
    # resampled, whether the original crops are given or cut from the frame.
    crop = _crop(portrait, matrix)
    np.testing.assert_array_equal(paste_faces(portrait, [(crop, matrix)]), portrait)
    np.testing.assert_array_equal(paste_faces(portrait, [(crop.copy(), matrix)], original_crops=[crop]), portrait)
    touched = crop.copy()
    touched[64, 64] += 0.2
    assert np.any(paste_faces(portrait, [(touched, matrix)], original_crops=[crop]) != portrait)


def test_a_face_larger_than_the_crop_keeps_its_own_detail(portrait, matrix) -> None:
    # The astronaut's face spans about 150 px of the frame, more than the 64 px crop: a resampled
    # face would lose the detail between the two resolutions; the correction pasted onto the
    # frame's own pixels keeps it, and still carries the change (here: 0.1 brighter).
    small = alignment.estimate_alignment(alignment.transform_points(
        alignment.template(S), alignment.invert_affine(matrix)), 64)
    crop = _crop(portrait, small, 64)
    brighter = np.clip(crop + 0.1, 0, 1)
    out = paste_faces(portrait, [(brighter, small)]).astype(np.float32)
    inside = _alpha(small, portrait, BlendConfig(), 64) == 1.0
    frame = portrait.astype(np.float32)

    def detail(img: np.ndarray) -> np.ndarray:
        return img - cv2.GaussianBlur(img, (0, 0), 2.0)

    lost = np.abs(detail(out) - detail(frame))[inside].mean()
    assert lost < 1.0  # grey levels of fine detail changed (where +0.1 clips): the frame's detail is there
    resampled = alignment.warp_to_frame(alignment.warp_to_crop(portrait, small, 64), small, portrait.shape[1::-1])
    assert np.abs(detail(resampled.astype(np.float32)) - detail(frame))[inside].mean() > 10 * lost
    assert 20.0 < (out - frame)[inside].mean() < 30.0  # the restorer's change itself got through


def _weighted_mean(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (crop * mask[..., None]).sum((0, 1)) / mask.sum()


def test_match_colour_moves_the_mean_colour_to_the_original(portrait: np.ndarray, matrix: np.ndarray) -> None:
    original = _crop(portrait, matrix)
    tint = np.array([0.8, 1.0, 1.1], np.float32), np.array([0.02, -0.05, 0.06], np.float32)
    cast = np.clip(original * tint[0] + tint[1], 0, 1)
    mask = face_mask(S)
    matched = match_colour(cast, original, mask)
    assert matched.dtype == np.float32 and matched.shape == original.shape
    assert matched.min() >= 0.0 and matched.max() <= 1.0
    before = np.abs(_weighted_mean(cast, mask) - _weighted_mean(original, mask))
    after = np.abs(_weighted_mean(matched, mask) - _weighted_mean(original, mask))
    assert np.all(after < 0.2 * before)
    assert after.max() < 0.01
    # No weight at all: nothing to match, the crop comes back as it was.
    np.testing.assert_array_equal(match_colour(cast, original, np.zeros((S, S), np.float32)), cast)


def test_paste_takes_colours_as_given_and_match_face_colour_keeps_the_skin_tone(portrait, matrix) -> None:
    """The one colour rule (``match_face_colour``, as ``ffv restore`` applies it) before the paste."""
    crop = _crop(portrait, matrix)
    cast = np.clip(crop * np.array([0.75, 1.0, 1.0], np.float32) + np.array([0.0, 0.08, 0.08], np.float32), 0, 1)
    inside = _alpha(matrix, portrait) > 0.99
    target = portrait[inside].mean(0)
    plain = paste_faces(portrait, [(cast, matrix)])[inside].mean(0)
    assert np.abs(plain - target).max() > 10.0  # the cast is pasted as it is
    matched_crop = match_face_colour(cast, crop, face_colour_range(portrait, (180.0, 60.0, 270.0, 180.0)))
    matched = paste_faces(portrait, [(matched_crop, matrix)], original_crops=[crop])[inside].mean(0)
    assert np.abs(matched - target).max() < 0.2 * np.abs(plain - target).max()


def test_overlapping_faces_are_pasted_in_order() -> None:
    frame = np.full((240, 320, 3), 90, np.uint8)
    first, second = _similarity((130.0, 120.0), 40.0), _similarity((185.0, 125.0), 40.0, angle_deg=10.0)
    red = np.zeros((S, S, 3), np.float32)
    red[..., 0] = 1.0
    blue = np.zeros((S, S, 3), np.float32)
    blue[..., 2] = 1.0
    out = paste_faces(frame, [(red, first), (blue, second)])
    a1, a2 = _alpha(first, frame), _alpha(second, frame)
    only_first = (a1 == 1.0) & (a2 == 0.0)
    both = (a1 == 1.0) & (a2 == 1.0)
    neither = (a1 == 0.0) & (a2 == 0.0)
    assert only_first.any() and both.any()
    assert np.all(out[only_first] == (255, 0, 0))
    assert np.all(out[both] == (0, 0, 255))  # the later face is on top
    assert np.all(out[neither] == frame[neither])


def test_scale_matrix_maps_points_and_pixels_the_same_way(portrait: np.ndarray, matrix: np.ndarray) -> None:
    points = np.array([[0.0, 0.0], [10.5, 300.25], [511.0, 511.0], [224.0, 132.0]])
    for factor in (2, 4, 1.5):
        upscaled = (points + 0.5) * factor - 0.5  # OpenCV's resize convention
        np.testing.assert_allclose(
            alignment.transform_points(upscaled, scale_matrix(matrix, factor)),
            alignment.transform_points(points, matrix), atol=1e-9,
        )
    big = upscale_frame(portrait, 2)
    assert big.shape == (1024, 1024, 3) and big.dtype == np.uint8
    same = np.abs(_crop(big, scale_matrix(matrix, 2)) - _crop(portrait, matrix)).mean()
    naive = matrix.copy()
    naive[:, :2] /= 2  # ignores the half-pixel shift of pixel centres
    assert same < np.abs(_crop(big, naive) - _crop(portrait, matrix)).mean()
    assert upscale_frame(portrait, 1) is portrait


def test_paste_at_higher_resolution_leaves_the_rest_untouched(portrait: np.ndarray, matrix: np.ndarray) -> None:
    big = upscale_frame(portrait, 2)
    big_matrix = scale_matrix(matrix, 2)
    crop = _crop(portrait, matrix)
    out = paste_faces(big, [(crop, big_matrix)])
    alpha = _alpha(big_matrix, big)
    np.testing.assert_array_equal(out[alpha == 0.0], big[alpha == 0.0])
    assert np.abs(out.astype(np.float32) - big)[alpha > 0.5].mean() < 5.0


def _seam_and_detail(portrait: np.ndarray, matrix: np.ndarray, config: BlendConfig) -> tuple[float, float]:
    """Gradient the paste adds across the mask edge, and the face's own typical gradient.

    The restored face is the identity crop made 15% brighter, a mismatch a hard edge would show
    as a step; subtracting the identity paste leaves only what the brightening added.
    """
    crop = _crop(portrait, matrix)
    brighter = paste_faces(portrait, [(np.clip(crop + 0.15, 0, 1), matrix)], config=config)
    identity = paste_faces(portrait, [(crop, matrix)], config=config)
    added = brighter.astype(np.float32).mean(2) - identity.astype(np.float32).mean(2)
    seam = np.hypot(*np.gradient(added))
    detail = np.hypot(*np.gradient(portrait.astype(np.float32).mean(2)))
    alpha = _alpha(matrix, portrait, config)
    band = (alpha > 0.02) & (alpha < 0.98)
    inside = cv2.erode((alpha == 1.0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return float(np.percentile(seam[band], 99)), float(np.median(detail[inside]))


def test_no_visible_seam_at_the_mask_edge(portrait: np.ndarray, matrix: np.ndarray) -> None:
    seam, detail = _seam_and_detail(portrait, matrix, BlendConfig())
    assert seam < detail
    # The measure does see a hard edge: without feathering the same paste leaves a seam.
    hard_seam, _ = _seam_and_detail(portrait, matrix, BlendConfig(feather=0.0))
    assert hard_seam > detail


def test_invalid_arguments_are_rejected(portrait: np.ndarray, matrix: np.ndarray) -> None:
    with pytest.raises(ValueError):
        BlendConfig(strength=1.5)
    with pytest.raises(ValueError):
        paste_faces(portrait.astype(np.float32), [])
    with pytest.raises(ValueError):
        paste_faces(portrait, [(np.zeros((S, S), np.float32), matrix)])
    with pytest.raises(ValueError):
        upscale_frame(portrait, 0)
