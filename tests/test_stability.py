"""Temporal stabilisation: the pure maths of ``stabilize.py``, then the restore pipeline end to end
(``track_faces`` with a scripted detector -> ``restore_frames``) on tiny synthetic clips.

The metric itself is tested in ``test_flicker.py`` and the tracker in ``test_tracking.py``; here
only what the temporal term adds: static faces stop flickering, motion is not smeared, nothing is
carried across a scene cut, and a face missed by the detector in one frame is still restored.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framefusion_video.evaluation.flicker import FaceRegion, measure
from framefusion_video.faces import alignment
from framefusion_video.faces.detection import Face
from framefusion_video.faces.tracking import TrackingConfig, track_faces
from framefusion_video.restore.config import RestoreConfig
from framefusion_video.restore.pipeline import restore_frames
from framefusion_video.restore.stabilize import (
    StabilizeConfig,
    TrackState,
    blend_weight,
    crop_flow,
    stabilize_crop,
    stabilize_tracks,
    to_grey,
    warp_crop,
)

S = 64  # crop size of the fake restorers
H, W = 160, 240


def texture(seed: int, size: tuple[int, int] = (S, S), cell: int = 4) -> np.ndarray:
    """Smooth random RGB texture, float32 (h, w, 3) in [0, 1] (a stand-in for skin and features)."""
    rng = np.random.default_rng(seed)
    small = rng.random((size[0] // cell, size[1] // cell, 3), dtype=np.float32)
    return np.clip(cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def frame_to_frame(frames: list[np.ndarray]) -> float:
    """Mean |frame_t - frame_{t-1}| over a list of same-shape arrays."""
    return float(np.mean([np.abs(b.astype(np.float32) - a.astype(np.float32)).mean()
                          for a, b in zip(frames, frames[1:])]))


# --------------------------------------------------------------------------- pure maths


def test_config_rejects_bad_values():
    for bad in (dict(alpha=1.0), dict(alpha=-0.1), dict(tau=0.0), dict(blur=4), dict(flow_preset="slow")):
        with pytest.raises(ValueError):
            StabilizeConfig(**bad)
    assert not StabilizeConfig(alpha=0.0).active and not StabilizeConfig(enable=False).active
    with pytest.raises(ValueError, match="temporal"):
        RestoreConfig(temporal=1.0)


def test_crop_flow_brings_the_previous_crop_onto_the_current():
    prev = texture(1)
    cur = np.roll(prev, (1, 2), axis=(0, 1))  # down 1, right 2
    f = crop_flow(to_grey(prev), to_grey(cur))
    inner = (slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(np.median(f[inner].reshape(-1, 2), axis=0), [-2.0, -1.0], atol=0.3)
    before = np.abs(prev - cur)[inner].mean()
    after = np.abs(warp_crop(prev, f) - cur)[inner].mean()
    assert after < 0.3 * before


def test_blend_weight_is_alpha_where_unchanged_and_small_where_changed():
    config = StabilizeConfig(alpha=0.7, tau=0.02, blur=1)
    grey = to_grey(texture(2))
    changed = grey.copy()
    changed[:, S // 2:] = to_grey(texture(3))[:, S // 2:]
    w = blend_weight(changed, grey, config)
    assert w.dtype == np.float32 and w.shape == (S, S)
    np.testing.assert_allclose(w[:, : S // 2], 0.7, atol=1e-6)
    assert w[:, S // 2:].mean() < 0.2 * 0.7


def test_static_crop_noise_is_averaged_out():
    rng = np.random.default_rng(0)
    clean, state, raw, out = texture(4), None, [], []
    for t in range(20):
        restored = np.clip(clean + rng.normal(0.0, 0.03, clean.shape).astype(np.float32), 0, 1)
        result, state = stabilize_crop(state, t, clean, restored, StabilizeConfig(alpha=0.6))
        raw.append(restored)
        out.append(result)
    assert out[0] is raw[0] or np.array_equal(out[0], raw[0])  # nothing to blend with yet
    assert frame_to_frame(out[5:]) < 0.6 * frame_to_frame(raw[5:])
    assert np.abs(np.stack(out[5:]) - clean).mean() < 0.7 * np.abs(np.stack(raw[5:]) - clean).mean()


def test_moving_crop_is_followed_without_ghosting():
    """Input and restoration move together 1.5 px a frame: the output stays on the current one."""
    base = texture(5, size=(S + 64, S + 64))
    state, errors, steps = None, [], []
    prev = None
    for t in range(10):
        dx = int(round(1.5 * t))
        crop = np.ascontiguousarray(base[16:16 + S, 32 - dx:32 - dx + S])
        restored = np.clip(crop * 0.9 + 0.05, 0.0, 1.0)  # not the input itself: that is never blended
        out, state = stabilize_crop(state, t, crop, restored)
        if prev is not None:
            inner = (slice(6, -6), slice(6, -6))
            errors.append(np.abs(out - restored)[inner].mean())
            steps.append(np.abs(crop - prev)[inner].mean())
        prev = crop
    assert np.mean(errors) < 0.25 * np.mean(steps)


def test_a_changed_face_is_not_blended_with_the_old_one():
    a, b = texture(6), texture(7)
    _, state = stabilize_crop(None, 0, a, a * 0.9)
    out, _ = stabilize_crop(state, 1, b, b * 0.9)
    assert np.abs(out - b * 0.9).mean() < 0.1 * np.abs(a - b).mean() * 0.9


def test_a_face_left_alone_keeps_its_input_crop_exactly():
    """The restorer returns the input bit-identical (the gate left the face alone): the output is
    the input in every frame, however noisy; smoothing it would only make the paste-back resample
    a face that was meant to stay untouched."""
    rng = np.random.default_rng(3)
    clean, state = texture(12), None
    for t in range(6):
        crop = np.clip(clean + rng.normal(0.0, 0.02, clean.shape).astype(np.float32), 0, 1)
        out, state = stabilize_crop(state, t, crop, crop.copy())
        np.testing.assert_array_equal(out, crop)
        assert state.excess is None
    # uint8 input crops are compared as restore scales them.
    crop8 = (clean * 255).astype(np.uint8)
    out, state = stabilize_crop(state, 6, crop8, crop8.astype(np.float32) * np.float32(1 / 255))
    assert state.excess is None


def test_a_face_no_longer_restored_fades_back_to_its_input():
    """Restored for a while, then left alone: what the restorations added fades out (no jump),
    the input is not smoothed meanwhile, and the output ends as the input crop bit-identical."""
    crop, state = texture(13), None
    brighter = np.clip(crop + 0.2, 0.0, 1.0)
    for t in range(4):
        out, state = stabilize_crop(state, t, crop, brighter)
    outs = []
    for t in range(4, 40):
        out, state = stabilize_crop(state, t, crop, crop.copy())
        outs.append(out)
    gaps = [float(np.abs(o - crop).max()) for o in outs]
    assert 0.0 < gaps[0] < 0.2 and gaps[1] < gaps[0]  # fading, not jumping
    assert all(b <= a + 1e-6 for a, b in zip(gaps, gaps[1:]))
    np.testing.assert_array_equal(outs[-1], crop)
    assert state.excess is None
    # With the term off nothing is carried at all.
    out, _ = stabilize_crop(state, 40, crop, brighter, StabilizeConfig(enable=False))
    np.testing.assert_array_equal(out, brighter)


def test_stabilize_tracks_keeps_state_per_track_and_forgets_ended_ones():
    a, b, noisy = texture(8), texture(9), np.clip(texture(8) + 0.05, 0, 1)
    config = StabilizeConfig()
    outs, states = stabilize_tracks({}, 0, [1, 2], [a, b], [a, b], config)
    assert set(states) == {1, 2} and all(isinstance(s, TrackState) for s in states.values())
    # Track 1 continues (blended), track 3 is new (untouched), track 2 ended (forgotten).
    outs, states = stabilize_tracks(states, 1, [1, 3], [a, b], [noisy, noisy], config)
    assert not np.allclose(outs[0], noisy) and np.abs(outs[0] - a).mean() < np.abs(noisy - a).mean()
    np.testing.assert_array_equal(outs[1], noisy)
    assert set(states) == {1, 3}
    # A state from two frames back (a frame was skipped) is not used.
    outs, _ = stabilize_tracks(states, 3, [1], [a], [noisy], config)
    np.testing.assert_array_equal(outs[0], noisy)
    # Off: crops pass through and no state is kept.
    outs, states = stabilize_tracks(states, 2, [1], [a], [noisy], StabilizeConfig(enable=False))
    assert outs[0] is noisy and states == {}
    with pytest.raises(ValueError):
        stabilize_tracks({}, 0, [1, 2], [a], [a], config)


# --------------------------------------------------------------------------- the pipeline


class NoisyRestorer:
    """A per-frame restorer that flickers: crops blurred (denoised) plus independent noise.

    Seeded, so two runs over the same frames in the same batches get the same noise."""

    def __init__(self, sigma: float = 0.02, seed: int = 0) -> None:
        self.crop_size, self.sigma = S, sigma
        self.rng = np.random.default_rng(seed)

    def restore(self, crops: np.ndarray) -> np.ndarray:
        smooth = np.stack([cv2.GaussianBlur(c, (5, 5), 0) for c in crops])
        return np.clip(smooth + self.rng.normal(0, self.sigma, crops.shape).astype(np.float32), 0, 1)


class InvertingRestorer:
    crop_size = S

    def restore(self, crops: np.ndarray) -> np.ndarray:
        return 1.0 - crops


def face_at(cx: float, cy: float, half: float = 32.0) -> Face:
    landmarks = (alignment.TEMPLATE_5 - 0.5) * 2 * half + np.float32([cx, cy])
    return Face(box=(cx - half, cy - half, cx + half, cy + half), landmarks=landmarks, score=0.9)


def stamped(frame: np.ndarray, index: int) -> np.ndarray:
    """Write the frame index into pixel (0, 0), for :class:`ScriptedDetector`."""
    frame[0, 0, 0], frame[0, 0, 1] = index % 256, index // 256
    return frame


class ScriptedDetector:
    """Returns the faces scripted for the frame index stamped in pixel (0, 0)."""

    def __init__(self, script: dict[int, list[Face]]) -> None:
        self.script = script

    def detect(self, frame: np.ndarray) -> list[Face]:
        return list(self.script.get(int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1]), []))


def static_face_clip(n: int, noise: float = 3.0, seed: int = 1, tint=(1.0, 1.0, 1.0)) -> list[np.ndarray]:
    """A still textured scene (colours scaled by ``tint``) with per-frame sensor noise of ``noise``
    grey levels, uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    scene = texture(10 + seed, size=(H, W), cell=6) * 255.0 * np.float32(tint)
    return [stamped(np.clip(scene + rng.normal(0, noise, scene.shape), 0, 255).astype(np.uint8), i)
            for i in range(n)]


def run_pipeline(frames, script, restorer, temporal: float, safety: bool = True, **tracking):
    tracked = track_faces(frames, ScriptedDetector(script), TrackingConfig(**tracking))
    config = RestoreConfig(batch_size=4, colour_match=False, temporal=temporal, safety=safety)
    return list(restore_frames(tracked, restorer, config))


def test_static_face_restored_frames_differ_less_than_the_input_frames():
    n, centre = 14, (120.0, 80.0)
    frames = static_face_clip(n)
    script = {i: [face_at(*centre)] for i in range(n)}
    box = face_at(*centre).box
    region = (slice(int(box[1]) + 8, int(box[3]) - 8), slice(int(box[0]) + 8, int(box[2]) - 8))
    # The stand-in's invented noise is what the safety check may refuse; the temporal term is tested.
    off = run_pipeline(frames, script, NoisyRestorer(), temporal=0.0, safety=False)
    on = run_pipeline(frames, script, NoisyRestorer(), temporal=0.6, safety=False)
    assert all(o.restored_faces == 1 for o in on)
    diff_in = frame_to_frame([f[region] for f in frames])
    diff_off = frame_to_frame([o.restored[region] for o in off])
    diff_on = frame_to_frame([o.restored[region] for o in on])
    assert diff_off > diff_in  # the stand-in restorer does flicker ...
    assert diff_on < diff_in   # ... and the temporal term brings it below the input's own
    # The flicker metric agrees: from above 1 (more flicker than the input) to below 1.
    regions = [[FaceRegion(0, box)] for _ in range(n)]
    ratio_off = measure(frames, [o.restored for o in off], regions).ratio
    ratio_on = measure(frames, [o.restored for o in on], regions).ratio
    assert ratio_on < 1.0 < ratio_off


class IdentityRestorer:
    """Returns every crop bit-identical, as the generator's gate does for a face it leaves alone."""

    crop_size = S

    def restore(self, crops: np.ndarray) -> np.ndarray:
        return crops.copy()


def test_faces_left_alone_keep_their_pixels_with_the_temporal_term_on():
    n = 8
    frames = static_face_clip(n)  # sensor noise: smoothing it would change the pixels
    script = {i: [face_at(120.0 + i, 80.0)] for i in range(n)}
    out = run_pipeline(frames, script, IdentityRestorer(), temporal=0.7)
    assert [o.restored_faces for o in out] == [0] * n
    assert [[f.status for f in o.outcomes] for o in out] == [["left alone"]] * n
    for o, frame in zip(out, frames):
        np.testing.assert_array_equal(o.restored, frame)


def test_scene_cut_resets_the_temporal_state():
    n, cut = 10, 5
    # Two shots with the face at the same place: a reddish one, then a bluish one.
    frames = static_face_clip(cut, tint=(1.0, 0.5, 0.3)) + static_face_clip(n, seed=2, tint=(0.3, 0.5, 1.0))[cut:]
    frames = [stamped(f, i) for i, f in enumerate(frames)]
    script = {i: [face_at(120.0, 80.0)] for i in range(n)}
    off = run_pipeline(frames, script, NoisyRestorer(), temporal=0.0)
    on = run_pipeline(frames, script, NoisyRestorer(), temporal=0.6)
    ids = [[tf.track_id for tf in o.faces] for o in on]
    assert len({i for f in ids[:cut] for i in f} | {i for f in ids[cut:] for i in f}) == 2
    same = [np.array_equal(a.restored, b.restored) for a, b in zip(off, on)]
    # First frame of each shot: nothing to blend with; every other frame is blended.
    assert same == [i in (0, cut) for i in range(n)]


def test_face_missed_by_the_detector_in_one_frame_is_still_restored():
    n, missing = 10, 4
    frames = static_face_clip(n, noise=0.0)
    truth = {i: face_at(100.0 + 2 * i, 80.0) for i in range(n)}
    script = {i: [f] for i, f in truth.items() if i != missing}
    # An inverted face is what the safety check refuses; here it marks where a face was pasted.
    out = run_pipeline(frames, script, InvertingRestorer(), temporal=0.6, safety=False)
    assert [o.restored_faces for o in out] == [1] * n
    gap = out[missing]
    assert gap.faces[0].source != "detected"
    x0, y0, x1, y1 = (int(v) for v in truth[missing].box)
    centre = (slice(y0 + 20, y1 - 20), slice(x0 + 20, x1 - 20))
    changed = np.abs(gap.restored[centre].astype(np.float32) - gap.original[centre].astype(np.float32)).mean()
    assert changed > 40  # the inverted face is pasted there


def test_restore_cli_passes_temporal_to_the_config(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import framefusion_video.restore.batch as batch_module
    from framefusion_video.cli import main

    seen = []
    monkeypatch.setattr(batch_module, "restore_paths", lambda inputs, output, config, **kw: seen.append(config) or [])
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    result = CliRunner().invoke(main, ["restore", str(clip), "--temporal", "0.3"])
    assert result.exit_code == 0, result.output
    assert seen[0].temporal == 0.3
    assert CliRunner().invoke(main, ["restore", str(clip), "--temporal", "1"]).exit_code == 2
    result = CliRunner().invoke(main, ["restore", str(clip)])
    assert result.exit_code == 0 and seen[-1].temporal == RestoreConfig().temporal
