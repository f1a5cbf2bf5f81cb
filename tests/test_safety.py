"""Tests for safety.py (which restored faces to refuse), alignment's landmark check (which
landmarks to trust) and the colour matching that keeps lighting repairs (blending.colour_targets / match_colour)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framefusion_video.faces import alignment
from framefusion_video.faces.alignment import LandmarkLimits, fit_error, landmark_problem
from framefusion_video.restore.blending import (
    PLAUSIBLE_FACE_MEANS, colour_targets, face_mask, match_colour, scene_plausible_means, surround_luma,
)
from framefusion_video.restore.safety import SafetyConfig, change_size, estimate_damage, face_region, refuse

S = 128


@pytest.fixture(scope="module")
def face_crop() -> np.ndarray:
    """The astronaut's aligned face, float32 (S, S, 3) in [0, 1]: real skin, eyes, hair."""
    data = pytest.importorskip("skimage.data")
    landmarks = alignment.five_points_from_keypoints((202.8, 103.5), (248.0, 105.9), (224.0, 132.3), (222.6, 148.5))
    matrix = alignment.estimate_alignment(landmarks, S)
    return alignment.warp_to_crop(data.astronaut(), matrix, S).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def weights() -> np.ndarray:
    mask = face_mask(S)
    return (mask / mask.sum()).astype(np.float32)


def _face(box_side: float = 100.0, x0: float = 50.0, y0: float = 40.0) -> tuple[np.ndarray, tuple]:
    """Template landmarks filling a square box the way a detector's box holds a face."""
    points = alignment.template(S).astype(np.float64) / S * box_side + np.array([x0, y0])
    return points.astype(np.float32), (x0, y0, x0 + box_side, y0 + box_side)


# --------------------------------------------------------------------------- landmarks


def test_landmarks_of_a_face_fit_its_box() -> None:
    points, box = _face()
    assert landmark_problem(points, box) is None
    assert fit_error(points) < 1e-6
    # A head turned or tilted is still a face.
    turned = points.copy()
    turned[[1, 4], 0] -= 12.0  # the far side of the face narrows
    assert landmark_problem(turned, box) is None
    rotation = cv2.getRotationMatrix2D((100.0, 90.0), 25.0, 1.0)
    assert landmark_problem(alignment.transform_points(points, rotation), box) is None


def test_landmarks_that_do_not_fit_their_box_are_not_used() -> None:
    points, box = _face()
    mouth_far_away = points.copy()
    mouth_far_away[4] += (20.0, 90.0)  # a mouth point far outside the box
    assert "outside" in landmark_problem(mouth_far_away, box)
    scattered = points.copy()
    scattered[3] += (-25.0, 10.0)
    scattered[2] += (25.0, -30.0)  # inside the box, but not a face's shape
    assert "shape" in landmark_problem(scattered, box)
    assert fit_error(scattered) > fit_error(points) + 0.2
    tiny = (points - points.mean(0)) * 0.2 + points.mean(0)  # a face a fifth of its box
    assert "eye distance" in landmark_problem(tiny, box)
    upside_down = points[[3, 4, 2, 0, 1]]  # mouth above the eyes
    assert landmark_problem(upside_down, box) is not None
    assert landmark_problem(np.full((5, 2), np.nan), box) is not None


# --------------------------------------------------------------------------- damage and change


ASTRONAUT_BOX = (170.0, 60.0, 280.0, 180.0)  # the face's box in skimage's astronaut photo


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return pytest.importorskip("skimage.data").astronaut()


def test_damage_sees_noise_missing_detail_and_darkness_but_not_a_sharp_face(portrait) -> None:
    def damage(frame: np.ndarray) -> float:
        return estimate_damage(*face_region(frame, ASTRONAUT_BOX))

    rng = np.random.default_rng(0)
    noisy = np.clip(portrait + rng.normal(0, 8, portrait.shape), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(portrait, (0, 0), 2.0)
    dark = (0.4 * 255 * (portrait / 255.0) ** 1.3).astype(np.uint8)
    clean = damage(portrait)
    assert clean < 3.0  # grey levels (the photo has some noise of its own)
    assert damage(noisy) == pytest.approx(8.0, abs=2.5)
    assert damage(blurred) > clean + 2.0
    assert damage(dark) > 10.0


def test_face_region_is_the_box_at_its_own_resolution(portrait) -> None:
    region, weights = face_region(portrait, ASTRONAUT_BOX)
    assert region.shape == (120, 110, 3) and weights.shape == (120, 110)
    np.testing.assert_array_equal(region, portrait[60:180, 170:280].astype(np.float32) * np.float32(1 / 255))
    assert weights.sum() == pytest.approx(1.0) and weights[60, 55] > weights[0, 0] == 0.0
    big, _ = face_region(portrait, (0.0, 0.0, 512.0, 400.0), max_side=160)
    assert big.shape == (125, 160, 3)  # reduced by area averaging
    empty, none = face_region(portrait, (600.0, 600.0, 700.0, 700.0))
    assert empty.size == 0 and estimate_damage(empty, none) == 0.0


def test_change_size_leaves_out_lighting_repairs_but_sees_the_face_change(face_crop, weights) -> None:
    y, x = np.mgrid[0:S, 0:S].astype(np.float32) / S
    dim = face_crop * np.float32(0.6)
    relit = np.clip(dim * np.float32([1.3, 1.2, 1.1]) + 0.03 + 0.05 * x[..., None], 0, 1)
    assert change_size(relit, dim, weights) < 0.5  # grey levels
    smeared = cv2.GaussianBlur(face_crop, (0, 0), 3.0)
    structural = float(np.sqrt((((smeared - face_crop) * 255) ** 2).mean(-1).__mul__(weights).sum()))
    assert change_size(smeared, face_crop, weights) == pytest.approx(structural, rel=0.35)
    assert change_size(1.0 - face_crop, face_crop, weights) > 20.0  # a negative is not a repair
    assert change_size(face_crop, face_crop, weights) < 0.05  # float32 rounding


def test_refuse_a_change_the_input_does_not_explain(face_crop, weights) -> None:
    rng = np.random.default_rng(1)
    invented = np.clip(face_crop + rng.normal(0, 6 / 255, face_crop.shape).astype(np.float32), 0, 1)
    assert refuse(invented, face_crop, weights, damage=0.5)  # a clean face given new texture
    assert not refuse(invented, face_crop, weights, damage=6.0)  # a face that damaged may change so much
    dim = face_crop * np.float32(0.6)
    assert not refuse(dim * np.float32(1.4), dim, weights, damage=0.0)  # brightened: a repair
    assert not refuse(invented, face_crop, weights, damage=0.0, config=SafetyConfig(enable=False))


def test_safety_config_rejects_impossible_values() -> None:
    with pytest.raises(ValueError):
        SafetyConfig(tolerance=-1.0)
    for bad in ({"max_fit_error": 0.0}, {"eyes_to_box": (0.5, 0.2)}, {"box_margin": -0.1}):
        with pytest.raises(ValueError):
            LandmarkLimits(**bad)


# --------------------------------------------------------------------------- colour matching


def _stats(crop: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ycc = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb).reshape(-1, 3)
    mean = weights.reshape(-1) @ ycc
    return mean, np.sqrt(weights.reshape(-1) @ (ycc - mean) ** 2)


def test_colour_targets_undo_drift_but_keep_a_repair() -> None:
    well_lit = np.array([0.5, 0.58, 0.45])
    drifted = well_lit + np.array([0.06, 0.02, -0.01])
    np.testing.assert_allclose(colour_targets(well_lit, drifted), well_lit)  # a well-lit face keeps its colours
    dark = np.array([0.12, 0.52, 0.48])  # luma far below the range, chroma faded towards grey
    repaired = np.array([0.45, 0.57, 0.45])
    np.testing.assert_allclose(colour_targets(dark, repaired), repaired)  # brightening and saturation kept
    darker = np.array([0.08, 0.53, 0.47])
    assert colour_targets(dark, darker)[0] == pytest.approx(0.12)  # darker still: undone
    overshoot = np.array([0.9, 0.58, 0.45])
    assert colour_targets(dark, overshoot)[0] == pytest.approx(PLAUSIBLE_FACE_MEANS[0, 1])
    cast = np.array([0.5, 0.70, 0.45])  # too red
    assert colour_targets(cast, well_lit)[1] == pytest.approx(well_lit[1])  # the cast's repair is kept
    assert colour_targets(cast, cast + np.array([0, 0.03, 0]))[1] == pytest.approx(cast[1])  # redder: undone
    # No range: every channel goes back to the original's mean, repair or not.
    np.testing.assert_allclose(colour_targets(dark, repaired, plausible=None), dark)


def test_a_dark_face_is_not_made_dark_again(face_crop, weights) -> None:
    dark = np.float32(0.4) * np.power(face_crop, np.float32(1.3))
    mask = face_mask(S)
    kept = match_colour(face_crop, dark, mask)  # a restorer that undid the darkening exactly
    undone = match_colour(face_crop, dark, mask, plausible=None)

    def psnr(a: np.ndarray) -> float:
        return float(10 * np.log10(1.0 / (((a - face_crop) ** 2).mean(-1) * weights).sum()))

    assert psnr(kept) > psnr(undone) + 6.0
    assert psnr(kept) > 20.0


def test_colour_matching_moves_means_only(face_crop, weights) -> None:
    # The original's spread is its damage: noise makes it larger, blur smaller. A restorer that
    # removed the noise keeps its result's spread.
    rng = np.random.default_rng(2)
    noisy = np.clip(face_crop + rng.normal(0, 12 / 255, face_crop.shape).astype(np.float32), 0, 1)
    drifted = np.clip(face_crop + np.float32(0.04), 0, 1)
    matched = match_colour(drifted, noisy, face_mask(S))
    assert np.abs(_stats(matched, weights)[0] - _stats(noisy, weights)[0]).max() < 0.004  # drift undone
    np.testing.assert_allclose(_stats(matched, weights)[1], _stats(drifted, weights)[1], atol=0.003)


def test_surround_luma_reads_the_scene_beyond_the_head() -> None:
    frame = np.full((300, 400, 3), 200, np.uint8)
    frame[100:200, 150:250] = 20  # the face and its head: dark
    box = (170.0, 120.0, 230.0, 180.0)  # 60 px: the ring lies 81-102 px from the centre
    assert surround_luma(frame, box) == pytest.approx(200 / 255.0, abs=1e-3)
    frame[:] = 30  # the whole scene dark
    assert surround_luma(frame, box) == pytest.approx(30 / 255.0, abs=1e-3)
    assert surround_luma(frame, (0.0, 0.0, 400.0, 300.0)) is None  # a close-up: no scene around it


def test_a_dark_scene_lowers_where_lit_faces_start() -> None:
    assert scene_plausible_means(None) is PLAUSIBLE_FACE_MEANS
    np.testing.assert_array_equal(scene_plausible_means(0.9), PLAUSIBLE_FACE_MEANS)  # a lit scene: as always
    dark_scene = scene_plausible_means(0.1)
    assert dark_scene[0, 0] == pytest.approx(0.1)
    np.testing.assert_array_equal(dark_scene[1:], PLAUSIBLE_FACE_MEANS[1:])
    face = np.array([0.1, 0.55, 0.46])  # as dark as its scene
    brightened = np.array([0.45, 0.56, 0.46])
    assert colour_targets(face, brightened, dark_scene)[0] == pytest.approx(0.1)  # the brightening is undone
    assert colour_targets(face, brightened)[0] == pytest.approx(0.45)  # in a lit scene it is a repair
