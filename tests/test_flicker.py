"""Temporal stability metric: flow/warp/occlusion maths, the streamed ratio, ``ffv eval-video``."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from framefusion_video.base.errors import FfvError
from framefusion_video.cli.eval_video import eval_video
from framefusion_video.evaluation import flicker
from framefusion_video.evaluation.flicker import FaceRegion, FlickerConfig
from framefusion_video.evaluation.identity import available as identity_available

from media import ffmpeg, make_clip, short_copy

SHIFT = (2, 1)  # (dx, dy) pixels per frame of the synthetic camera pan


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """A smooth random RGB texture, uint8 (200, 260, 3), full contrast (good for optical flow)."""
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.integers(0, 256, (200, 260, 3)).astype(np.uint8), (0, 0), 2.0)
    return cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)


def pan(texture: np.ndarray, frames: int = 8) -> list[np.ndarray]:
    """Frames (120, 160, 3) of a window moving by SHIFT over ``texture``: frame t+1 (x) = frame t (x + SHIFT)."""
    dx, dy = SHIFT
    return [np.ascontiguousarray(texture[20 + dy * t: 140 + dy * t, 20 + dx * t: 180 + dx * t]) for t in range(frames)]


def add_noise(frames: list[np.ndarray], sigma: float, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]


@pytest.fixture(scope="module")
def noisy_input(texture) -> list[np.ndarray]:
    """The 'input' video: the pan with mild per-frame noise (so that it has some flicker of its own)."""
    return add_noise(pan(texture), 6.0, np.random.default_rng(1))


# --------------------------------------------------------------------------- pure maths


def test_flow_finds_the_shift_and_warp_recovers_the_frame(texture):
    prev, cur = pan(texture, 2)
    f = flicker.flow(prev, cur)
    assert f.shape == (*cur.shape[:2], 2) and f.dtype == np.float32
    inner = (slice(10, -10), slice(10, -10))
    assert np.median(f[inner][..., 0]) == pytest.approx(SHIFT[0], abs=0.3)
    assert np.median(f[inner][..., 1]) == pytest.approx(SHIFT[1], abs=0.3)
    # With the exact flow, the backward warp of prev is cur, away from the border it samples past.
    exact = np.broadcast_to(np.float32(SHIFT), f.shape).copy()
    recovered = flicker.warp(prev, exact)
    assert np.array_equal(recovered[:-SHIFT[1], :-SHIFT[0]], cur[:-SHIFT[1], :-SHIFT[0]])
    assert not np.array_equal(prev, cur)


def test_flow_on_a_downscaled_copy_is_rescaled(texture):
    prev, cur = pan(texture, 2)
    full = flicker.flow(prev, cur, max_side=640)
    small = flicker.flow(prev, cur, max_side=80)  # computed at half size
    assert small.shape == full.shape
    assert np.median(small[..., 0]) == pytest.approx(SHIFT[0], abs=0.5)


def test_valid_flow_mask_rejects_inconsistent_flow():
    h, w = 40, 50
    fw = np.broadcast_to(np.float32([3, -2]), (h, w, 2)).copy()
    bw = -fw
    mask = flicker.valid_flow_mask(fw, bw)
    assert mask.dtype == bool and mask.shape == (h, w)
    assert mask[5:-5, 5:-5].all()
    assert not mask[:, -3:].any() and not mask[:2, :].any()  # lands outside the frame
    bad = bw.copy()
    bad[10:20, 10:20] = [4, 4]  # the flow back from there does not return
    mask_bad = flicker.valid_flow_mask(fw, bad)
    assert not mask_bad[12:22, 7:17].any()  # the pixels (x, y) whose match (x + 3, y - 2) is in the block
    assert mask_bad[12:22, 17:27].all() and mask_bad[22:32, 7:17].all()
    assert mask_bad[25:35, 30:40].all()


def test_warping_errors_are_zero_for_exact_motion_where_the_flow_is_valid(texture):
    prev, cur = pan(texture, 2)
    f = np.broadcast_to(np.float32(SHIFT), (*cur.shape[:2], 2)).copy()
    mask = flicker.valid_flow_mask(f, -f)
    assert mask.any()
    assert flicker.warping_errors(prev, cur, f)[mask].max() == 0.0
    assert flicker.warping_errors(prev, cur, np.zeros_like(f))[mask].mean() > 1.0


def test_box_mask_scales_and_clips():
    mask = flicker.box_mask((20, 30), [(10, 5, 20, 15)], scale=1.0)
    assert mask.sum() == 100 and mask[5:15, 10:20].all()
    bigger = flicker.box_mask((20, 30), [(10, 5, 20, 15), (25, 15, 40, 30)], scale=2.0)
    assert bigger[0:20, 5:25].all() and bigger.sum() > mask.sum()
    assert bigger.shape == (20, 30)


# --------------------------------------------------------------------------- the ratio


def test_video_against_itself_has_ratio_one(noisy_input):
    report = flicker.measure(noisy_input, noisy_input)
    assert report.ratio == pytest.approx(1.0)
    assert report.frames == len(noisy_input) and report.pairs == len(noisy_input) - 1
    assert report.input_error > 0 and report.unrestored_fraction is None


def test_per_frame_noise_raises_the_ratio(noisy_input):
    restored = add_noise(noisy_input, 10.0, np.random.default_rng(2))
    assert flicker.measure(noisy_input, restored).ratio > 1.3


def test_temporal_smoothing_lowers_the_ratio(noisy_input):
    dx, dy = SHIFT
    # Motion-compensated average of each frame with the previous one (np.roll aligns it).
    smoothed = [noisy_input[0]] + [
        ((cur.astype(np.float32) + np.roll(prev, (-dy, -dx), (0, 1))) / 2).round().astype(np.uint8)
        for prev, cur in zip(noisy_input, noisy_input[1:])]
    assert flicker.measure(noisy_input, smoothed).ratio < 0.8


def test_face_regions_give_per_track_ratios_and_unrestored_faces(noisy_input):
    rng = np.random.default_rng(3)
    still, flickering = (10, 10, 60, 60), (90, 40, 150, 100)
    restored = []
    for f in noisy_input:
        g = f.copy()
        x0, y0, x1, y1 = flickering
        g[y0:y1, x0:x1] = np.clip(g[y0:y1, x0:x1] + rng.normal(0, 12, (y1 - y0, x1 - x0, 3)), 0, 255)
        restored.append(g)
    regions = [[FaceRegion(0, still), FaceRegion(1, flickering, visible=t != 3)] for t in range(len(noisy_input))]
    report = flicker.measure(noisy_input, restored, regions, FlickerConfig(box_scale=1.0))
    assert set(report.per_track) == {0, 1}
    assert report.per_track[0].ratio == pytest.approx(1.0)
    assert report.per_track[1].ratio > 1.3
    assert 1.0 < report.ratio < report.per_track[1].ratio
    # Track 0 is identical to the input: unrestored in every frame; track 1 changed: restored.
    assert report.per_track[0].unrestored_fraction == 1.0
    assert report.per_track[1].unrestored_fraction == 0.0
    assert report.per_track[1].visible_frames == len(noisy_input) - 1
    assert report.unrestored_fraction == 1.0 and report.face_frames == len(noisy_input)
    out = json.loads(json.dumps(report.to_dict()))
    assert out["per_track"]["1"]["frames"] == len(noisy_input)
    assert "| track 1 |" in report.to_markdown()


def test_frames_without_faces_are_not_measured(noisy_input):
    regions = [[] for _ in noisy_input]
    report = flicker.measure(noisy_input, noisy_input, regions)
    assert report.pairs == 0 and report.ratio is None and report.unrestored_fraction is None


def test_is_unrestored_uses_the_noise_floor():
    assert flicker.is_unrestored(face_diff=1.0, noise_floor=0.8, threshold=1.5)
    assert not flicker.is_unrestored(face_diff=6.0, noise_floor=0.8, threshold=1.5)
    assert flicker.is_unrestored(face_diff=3.0, noise_floor=2.0, threshold=1.5)


def test_scene_cuts_are_skipped(noisy_input):
    other = [f // 4 for f in noisy_input[:3]]  # a much darker shot
    frames = noisy_input[:4] + other
    report = flicker.measure(frames, frames)
    assert report.scene_cuts == 1 and report.pairs == len(frames) - 2


def test_mismatched_streams_are_errors(noisy_input):
    with pytest.raises(ValueError, match="more frames"):
        flicker.measure(noisy_input, noisy_input[:-1])
    with pytest.raises(ValueError, match="160x120"):
        flicker.measure(noisy_input, [f[:-2] for f in noisy_input])


# --------------------------------------------------------------------------- files and CLI


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 160x120 test pattern clip, a copy with per-frame noise, and a shorter copy."""
    folder = tmp_path_factory.mktemp("flicker")
    src = make_clip(folder / "src.mp4", size=(160, 120), frames=12, fps=12.0, audio=False)
    noisy = folder / "noisy.mp4"
    ffmpeg("-i", str(src), "-vf", "noise=alls=25:allf=t", "-c:v", "libx264", "-preset", "ultrafast",
           "-crf", "10", str(noisy))
    short = folder / "short.mp4"
    ffmpeg("-i", str(src), "-frames:v", "8", "-c:v", "libx264", "-preset", "ultrafast", str(short))
    return src, noisy, short


def test_eval_video_cli_self_and_noisy(clips, tmp_path):
    src, noisy, _ = clips
    out = tmp_path / "self.json"
    result = CliRunner().invoke(eval_video, [str(src), str(src), "--whole-frame", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["ratio"] == pytest.approx(1.0) and data["frames"] == 12
    assert "| all | 12 |" in result.output
    out2 = tmp_path / "noisy.json"
    result = CliRunner().invoke(eval_video, [str(src), str(noisy), "--whole-frame", "--json", str(out2)])
    assert result.exit_code == 0, result.output
    assert json.loads(out2.read_text())["ratio"] > 1.3


def test_eval_video_cli_rejects_different_frame_counts(clips):
    src, _, short = clips
    result = CliRunner().invoke(eval_video, [str(src), str(short), "--whole-frame"])
    assert result.exit_code == 1
    assert "has 8 frames" in result.output and str(short) in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_measure_videos_rejects_a_missing_file(clips, tmp_path):
    src = clips[0]
    with pytest.raises(FfvError, match="no such file"):
        flicker.measure_videos(src, tmp_path / "missing.mp4", faces=False)


def test_measure_videos_on_real_faces(shared_videos, tmp_path):
    """Half a second of a real close-up compared with itself: ratio 1, every visible face unrestored."""
    from framefusion_video.faces.detection import FaceDetector, FaceDetectorConfig

    clip = short_copy(shared_videos / "closeup_audio-first-stream_410x412.mp4", tmp_path / "c.mp4", 0.5)
    with FaceDetector(FaceDetectorConfig(use_mesh=False, full_range=False)) as detector:
        report = flicker.measure_videos(clip, clip, detector=detector)
    assert report.per_track, "no face found in the close-up"
    assert report.pairs > 0 and report.ratio == pytest.approx(1.0)
    assert report.face_frames > 0 and report.unrestored_fraction == 1.0


def test_coverage_counts_visible_faces_left_unrestored_and_the_longest_run():
    face, other = (10, 10, 60, 60), (100, 10, 150, 60)
    near = (12, 11, 62, 59)  # the same face, boxed by another pass of the detector
    visible = [[face], [face, other], [face, other], [face], [], [face], [face]]
    restored = [[near], [near], [near], [], [], [near], [(300, 300, 350, 350)]]
    report = flicker.restoration_coverage(visible, restored)
    # missed: frames 1 and 2 (other), 3 (face), 6 (the restored box is elsewhere)
    assert (report.face_frames, report.missed_frames, report.longest_miss) == (6, 4, 3)
    assert report.missed_fraction == pytest.approx(4 / 6)
    assert flicker.restoration_coverage([[face]] * 3, [[near]] * 3).missed_frames == 0
    assert flicker.restoration_coverage([[]], [[]]).missed_fraction is None
    with pytest.raises(ValueError):
        flicker.restoration_coverage([[face]], [])


@pytest.mark.skipif(not identity_available(), reason="dlib or its weights not installed (pip install -e '.[identity]')")
def test_identity_drift_along_a_track():
    """A still astronaut restored as itself: no distance; restored as a blur: a distance to the input
    but hardly any drift along the track (the same blur every frame); only visible faces count."""
    from skimage import data

    frames = [data.astronaut()] * 3
    box = (175.0, 76.0, 266.0, 167.0)
    regions = [[FaceRegion(1, box)], [FaceRegion(1, box)], [FaceRegion(1, box, visible=False)]]
    config = FlickerConfig(identity=True, skip_scene_cuts=False)
    same = flicker.measure(frames, frames, regions, config)
    assert same.identity_frames == 2 and same.per_track[1].identity_frames == 2
    assert same.identity_to_input == pytest.approx(0.0, abs=1e-6)
    assert same.identity_drift == pytest.approx(0.0, abs=1e-6)
    blurred = [cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames]
    report = flicker.measure(frames, blurred, regions, config)
    assert 0.05 < report.identity_to_input < 0.6
    assert report.identity_drift == pytest.approx(0.0, abs=1e-6)
    assert report.per_track[1].identity_to_input == pytest.approx(report.identity_to_input)
    assert "identity drift" in report.to_markdown()
    assert report.to_dict()["per_track"]["1"]["identity_frames"] == 2
    assert "identity" not in flicker.measure(frames, frames, regions).to_markdown()


def test_eval_video_identity_needs_faces(clips):
    src = clips[0]
    result = CliRunner().invoke(eval_video, [str(src), str(src), "--whole-frame", "--identity"])
    assert result.exit_code == 2 and "--whole-frame" in result.output
    with pytest.raises(ValueError, match="face_regions"):
        flicker.measure([np.zeros((8, 8, 3), np.uint8)], [np.zeros((8, 8, 3), np.uint8)], None,
                        FlickerConfig(identity=True))
