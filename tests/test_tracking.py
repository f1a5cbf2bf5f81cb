"""Tracking: pure helpers on arrays, then :func:`track_faces` with a fake detector (no MediaPipe),
then one run of the real detector on a few frames of a shared clip."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from framefusion_video.faces.alignment import TEMPLATE_5
from framefusion_video.faces.detection import Face
from framefusion_video.faces.tracking import (
    TrackingConfig,
    flow_transform,
    frame_signature,
    interpolate,
    is_scene_cut,
    limit_correction,
    match_boxes,
    signature_distance,
    smooth_at,
    track_faces,
)

H, W = 240, 320


def make_face(cx: float, cy: float, half: float = 40.0, score: float = 0.9) -> Face:
    """A face centred on (cx, cy) whose landmarks follow the template."""
    landmarks = (TEMPLATE_5 - 0.5) * 2 * half + np.float32([cx, cy])
    return Face(box=(cx - half, cy - half, cx + half, cy + half), landmarks=landmarks, score=score)


def stamp(frame: np.ndarray, index: int) -> np.ndarray:
    """Write the frame index into pixel (0, 0) so that the fake detector knows which frame it sees."""
    frame[0, 0, 0], frame[0, 0, 1] = index % 256, index // 256
    return frame


def plain_frames(n: int, colour=lambda i: (90, 120, 150)):
    for i in range(n):
        frame = np.empty((H, W, 3), np.uint8)
        frame[:] = colour(i)
        yield stamp(frame, i)


class FakeDetector:
    """Returns the faces scripted for each frame index; records which frames it was run on."""

    def __init__(self, script: dict[int, list[Face]]) -> None:
        self.script, self.calls = script, []

    def detect(self, frame: np.ndarray) -> list[Face]:
        index = int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1])
        self.calls.append(index)
        return list(self.script.get(index, []))


def run(frames, script, **config):
    detector = FakeDetector(script)
    out = [faces for _, faces in track_faces(frames, detector, TrackingConfig(**config))]
    return out, detector


# --------------------------------------------------------------------------- pure helpers


def test_match_boxes_is_one_to_one_and_respects_threshold():
    tracks = [(0, 0, 10, 10), (100, 100, 120, 120), (50, 0, 60, 10)]
    detections = [(101, 101, 121, 121), (1, 0, 11, 10), (0, 1, 10, 11), (300, 300, 310, 310)]
    pairs = dict(match_boxes(tracks, detections, min_iou=0.3))
    assert pairs[1] == 0
    assert pairs[0] in (1, 2)
    assert 2 not in pairs  # nothing overlaps it
    assert len(set(pairs.values())) == len(pairs)
    assert match_boxes(tracks, detections, min_iou=0.99) == []


def test_interpolate_is_linear():
    a, b = np.zeros((5, 2)), np.full((5, 2), 4.0)
    np.testing.assert_allclose(interpolate(a, b, 0.25), 1.0)
    np.testing.assert_allclose(interpolate(a, b, 0.0), a)
    np.testing.assert_allclose(interpolate(a, b, 1.0), b)


@pytest.mark.parametrize("times", [np.arange(10.0), np.arange(5.0, 9.0), np.array([2.0, 3.0, 5.0, 8.0])])
def test_smooth_at_follows_a_straight_line_without_lag(times):
    values = np.stack([3.0 * times + 7.0, -0.5 * times], axis=1)
    for t in (5.0, 6.0, 8.0):
        np.testing.assert_allclose(smooth_at(times, values, t, radius=3), [3.0 * t + 7.0, -0.5 * t], atol=1e-9)


def test_smooth_at_averages_noise():
    rng = np.random.default_rng(0)
    times = np.arange(200.0)
    noisy = rng.normal(0.0, 1.0, size=(200, 1))
    smoothed = np.array([smooth_at(times, noisy, t, radius=3)[0] for t in times[3:-3]])
    assert smoothed.std() < 0.6 * noisy.std()


def test_smooth_at_ignores_samples_outside_the_radius():
    times = np.array([0.0, 1.0, 10.0])
    values = np.array([[1.0], [1.0], [100.0]])
    np.testing.assert_allclose(smooth_at(times, values, 1.0, radius=2), [1.0])


def test_limit_correction_caps_each_point_shift():
    raw = np.array([[0.0, 0.0], [10.0, 10.0]])
    smoothed = np.array([[0.0, 1.0], [16.0, 18.0]])  # shifts of length 1 and 10
    limited = limit_correction(raw, smoothed, max_shift=2.0)
    np.testing.assert_allclose(limited, [[0.0, 1.0], [11.2, 11.6]])
    np.testing.assert_allclose(limit_correction(raw.ravel(), smoothed.ravel(), 2.0), limited.ravel())


def textured(seed: int = 0, size=(H, W)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(size[0] // 4, size[1] // 4, 3), dtype=np.uint8)
    return cv2.resize(noise, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def test_scene_cut_detects_a_new_shot_but_not_motion():
    frame = textured(0)
    shifted = np.roll(frame, 5, axis=1)
    other = np.zeros_like(frame)
    other[:] = (20, 200, 40)
    assert not is_scene_cut(frame, frame, 0.3)
    assert not is_scene_cut(frame, shifted, 0.3)
    assert is_scene_cut(frame, other, 0.3)
    assert signature_distance(frame_signature(frame), frame_signature(other)) > signature_distance(
        frame_signature(frame), frame_signature(shifted))


def test_flow_transform_recovers_a_translation():
    frame = textured(1)
    moved = np.roll(frame, (2, 3), axis=(0, 1))  # down 2, right 3
    gray0, gray1 = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (frame, moved))
    matrix = flow_transform(gray0, gray1, (100.0, 80.0, 180.0, 160.0))
    assert matrix is not None
    np.testing.assert_allclose(matrix[:, 2], [3.0, 2.0], atol=0.3)
    np.testing.assert_allclose(matrix[:, :2], np.eye(2), atol=0.02)
    flat = np.zeros((H, W), np.uint8)
    assert flow_transform(flat, flat, (100.0, 80.0, 180.0, 160.0)) is None


# --------------------------------------------------------------------------- track_faces, fake detector


def test_ids_are_stable_for_two_moving_faces():
    n = 15
    script = {i: [make_face(80 + i, 100), make_face(230 - i, 130)] for i in range(n)}
    out, _ = run(plain_frames(n), script)
    assert len(out) == n
    ids = [[tf.track_id for tf in faces] for faces in out]
    assert all(frame_ids == ids[0] for frame_ids in ids) and len(set(ids[0])) == 2
    left = next(tf for tf in out[7] if tf.face.box[0] < 160)
    assert not left.carried and left.source == "detected"
    # The track on the left stays on the left face.
    left_id = left.track_id
    assert all(next(tf for tf in faces if tf.track_id == left_id).face.box[0] < 160 for faces in out)


def test_scene_cut_resets_tracks_and_is_not_smoothed_across():
    n, cut = 16, 8
    # Same place before and after the cut (IoU would match), then a jump on the cut frame.
    script = {i: [make_face(150 if i < cut else 170, 120)] for i in range(n)}
    colour = lambda i: (200, 60, 60) if i < cut else (40, 80, 220)  # noqa: E731
    out, _ = run(plain_frames(n, colour), script, iou_match=0.1)
    before = {tf.track_id for faces in out[:cut] for tf in faces}
    after = {tf.track_id for faces in out[cut:] for tf in faces}
    assert len(before) == 1 and len(after) == 1 and before.isdisjoint(after)
    # No pull from the other shot: the frames on either side of the cut are exactly the detections.
    np.testing.assert_allclose(out[cut - 1][0].face.landmarks, script[cut - 1][0].landmarks, atol=1e-4)
    np.testing.assert_allclose(out[cut][0].face.landmarks, script[cut][0].landmarks, atol=1e-4)


def test_same_colour_without_cut_keeps_the_id():
    script = {i: [make_face(150 if i < 8 else 170, 120)] for i in range(16)}
    out, _ = run(plain_frames(16), script, iou_match=0.1)
    assert {tf.track_id for faces in out for tf in faces} == {0}


def test_missed_detection_is_interpolated_and_flagged_carried():
    n, missing = 12, 5
    truth = {i: make_face(100 + 3 * i, 120 + i) for i in range(n)}
    script = {i: [f] for i, f in truth.items() if i != missing}
    out, _ = run(plain_frames(n), script)
    assert all(len(faces) == 1 for faces in out)
    assert len({faces[0].track_id for faces in out}) == 1
    gap = out[missing][0]
    assert gap.carried and gap.source == "interpolated"
    np.testing.assert_allclose(gap.face.landmarks, truth[missing].landmarks, atol=1e-3)
    assert not out[missing - 1][0].carried and not out[missing + 1][0].carried


def test_lost_face_is_carried_for_max_missing_frames_then_dropped():
    n, last_seen = 14, 6
    script = {i: [make_face(150, 120)] for i in range(last_seen + 1)}
    out, _ = run(plain_frames(n), script, max_missing=3, optical_flow=False)
    counts = [len(faces) for faces in out]
    assert counts == [1] * (last_seen + 1) + [1] * 3 + [0] * (n - last_seen - 4)
    held = out[last_seen + 1][0]
    assert held.carried and held.source == "carried"
    np.testing.assert_allclose(held.face.landmarks, out[last_seen][0].face.landmarks, atol=1e-4)


def test_single_false_positive_is_not_carried():
    script = {4: [make_face(150, 120)]}
    out, _ = run(plain_frames(10), script)
    assert [len(faces) for faces in out] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]


def test_smoothing_reduces_jitter_on_a_static_face():
    rng = np.random.default_rng(3)
    n = 60
    base = make_face(160, 120, half=80.0)  # 2 px of noise on a 160 px face
    noisy = [Face(base.box, base.landmarks + rng.normal(0, 2.0, (5, 2)).astype(np.float32)) for _ in range(n)]
    out, _ = run(plain_frames(n), {i: [noisy[i]] for i in range(n)}, smooth_radius=3, lookahead=3)
    raw = np.stack([f.landmarks for f in noisy])
    smooth = np.stack([faces[0].face.landmarks for faces in out])
    raw_err = np.abs(raw - base.landmarks).mean()
    smooth_err = np.abs(smooth - base.landmarks).mean()
    assert smooth_err < 0.6 * raw_err
    unsmoothed, _ = run(plain_frames(n), {i: [noisy[i]] for i in range(n)}, smooth_radius=0)
    np.testing.assert_allclose(np.stack([faces[0].face.landmarks for faces in unsmoothed]), raw, atol=1e-4)


def test_smoothing_follows_linear_motion_without_lag():
    rng = np.random.default_rng(4)
    n = 40
    truth = [make_face(60 + 5 * i, 120 + 1.5 * i) for i in range(n)]
    noisy = [Face(f.box, f.landmarks + rng.normal(0, 0.5, (5, 2)).astype(np.float32)) for f in truth]
    out, _ = run(plain_frames(n), {i: [noisy[i]] for i in range(n)})
    error = np.stack([faces[0].face.landmarks - t.landmarks for faces, t in zip(out, truth)])
    assert np.abs(error.mean(axis=(0, 1))).max() < 0.5  # no systematic lag along the motion
    assert np.abs(error).max() < 2.0


def test_jerky_motion_is_followed_not_smoothed_away():
    n, jump = 20, 10
    truth = [make_face(120 if i < jump else 160, 120) for i in range(n)]  # a sudden 40 px move
    config = TrackingConfig()
    out, _ = run(plain_frames(n), {i: [f] for i, f in enumerate(truth)}, max_correction=config.max_correction)
    limit = config.max_correction * truth[0].size
    for faces, face in zip(out, truth):
        assert np.linalg.norm(faces[0].face.landmarks - face.landmarks, axis=1).max() <= limit + 1e-3
    np.testing.assert_allclose(out[-1][0].face.landmarks, truth[-1].landmarks, atol=1e-3)


def test_detect_every_n_without_flow_interpolates_between_detections():
    n, every = 13, 4
    truth = {i: make_face(100 + 3 * i, 120 - i) for i in range(n)}
    out, detector = run(plain_frames(n), {i: [f] for i, f in truth.items()},
                        detect_every=every, optical_flow=False, lookahead=every - 1)
    assert detector.calls == list(range(0, n, every))
    for i, faces in enumerate(out):
        assert faces[0].source == ("detected" if i % every == 0 else "interpolated")
        np.testing.assert_allclose(faces[0].face.landmarks, truth[i].landmarks, atol=1e-3)


def test_detect_every_n_tracks_with_optical_flow_in_between():
    n, every = 10, 4
    background = textured(2, size=(H + 40, W + 40))

    def frame_at(i):  # the scene moves 2 px right and 1 px down per frame
        return stamp(np.ascontiguousarray(background[20 - i: 20 - i + H, 20 - 2 * i: 20 - 2 * i + W]), i)

    truth = {i: make_face(140 + 2 * i, 110 + i) for i in range(n)}
    out, detector = run((frame_at(i) for i in range(n)), {i: [f] for i, f in truth.items()},
                        detect_every=every, smooth_radius=0)
    assert detector.calls == list(range(0, n, every))
    assert all(len(faces) == 1 for faces in out) and len({faces[0].track_id for faces in out}) == 1
    for i, faces in enumerate(out):
        assert faces[0].source == ("detected" if i % every == 0 else "tracked")
        np.testing.assert_allclose(faces[0].face.landmarks, truth[i].landmarks, atol=1.0)


def test_output_is_streamed_with_bounded_delay():
    pulled = []

    def source():
        for i, frame in enumerate(plain_frames(50)):
            pulled.append(i)
            yield frame

    lookahead = 2
    gen = track_faces(source(), FakeDetector({}), TrackingConfig(lookahead=lookahead))
    for k, (frame, faces) in enumerate(itertools.islice(gen, 10)):
        assert int(frame[0, 0, 0]) == k and faces == []
        assert len(pulled) == k + lookahead + 1


# --------------------------------------------------------------------------- real detector, shared clip


def test_real_clip_keeps_one_identity(shared_videos):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    from framefusion_video.faces.detection import FaceDetector

    reader = imageio_ffmpeg.read_frames(str(shared_videos / "talking_head_vfr_700.mp4"))
    meta = next(reader)
    width, height = meta["size"]
    try:
        frames = [np.frombuffer(b, np.uint8).reshape(height, width, 3) for b in itertools.islice(reader, 12)]
    finally:
        reader.close()
    with FaceDetector() as detector:
        out = list(track_faces(frames, detector, TrackingConfig(detect_every=2)))
    assert [f is g for (f, _), g in zip(out, frames)] == [True] * len(frames)
    assert all(len(faces) == 1 for _, faces in out)
    assert len({faces[0].track_id for _, faces in out}) == 1
    # Consecutive landmarks move smoothly: no jump bigger than a tenth of the face.
    lm = np.stack([faces[0].face.landmarks for _, faces in out])
    assert np.abs(np.diff(lm, axis=0)).max() < 0.1 * out[0][1][0].face.size
