"""Video-damage training pairs: aligned with their clean side, through a real codec, reproducible;
``ffv train --video-damage`` trains on them."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from framefusion_video.data.dataset import PairSampler
from framefusion_video.data.kinds import VIDEO_DAMAGE_MIXES
from framefusion_video.data.video_damage import (ClipDamage, VideoDamageConfig, aligned_pair, build_pair_cache,
                                                 damage_clip, damage_mix, damaged_pair, encode_decode, face_patch,
                                                 frame_grid, lit_frames, load_pair_cache, make_clip, sample_damage)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A sharp 256 x 200 portrait (the public-domain astronaut), uint8 RGB."""
    from skimage import data

    return np.ascontiguousarray(cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)[:200])


ASTRONAUT_FACE = (85.0, 20.0, 150.0, 100.0)  # at 256 px
# Rough five landmarks of that face (eyes, nose tip, mouth corners), px at 256.
ASTRONAUT_MARKS = np.float64([[103, 50], [130, 48], [117, 63], [106, 78], [129, 77]])


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float32) - b.astype(np.float32))))


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_the_damaged_frame_lies_on_the_clean_grid_reduced_by_scale(photo, scale):
    h, w = frame_grid(photo.shape, scale)
    clean = photo[:h, :w]
    frames = make_clip(clean, 3, np.random.default_rng(0), pan=1.5, zoom=0.01)
    assert np.array_equal(frames[1], clean)  # the kept middle frame is the photo, unresampled
    undamaged = ClipDamage(blur=None, area=True, soften=1.0, noise_sigma=None, grey_noise=False, codec="libx264",
                           crf=1, preset="medium")
    out = damage_clip(frames, scale, undamaged, np.random.default_rng(1))[1]
    reduced = cv2.resize(clean, (w // scale, h // scale), interpolation=cv2.INTER_AREA)
    # On luma: 4:2:0 video keeps colour at half resolution, which no alignment would undo.
    out, reduced = (cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) for img in (out, reduced))
    aligned = _mae(out[2:-2, 2:-2], reduced[2:-2, 2:-2])
    shifted = _mae(out[2:-2, 3:-1], reduced[2:-2, 2:-2])
    assert aligned < 1.0 and shifted > 4 * aligned, (aligned, shifted)


def test_a_pair_is_a_patch_of_the_frame_and_the_clean_patch_at_the_same_place(photo, monkeypatch):
    from framefusion_video.data import video_damage

    # Without the codec, noise and blur, the damaged patch is the clean patch reduced by area.
    monkeypatch.setattr(video_damage, "encode_decode", lambda frames, *args: list(frames))
    config = VideoDamageConfig(blur_prob=0, noise_prob=0, soften_prob=0, area_prob=1)
    low, high = damaged_pair(photo, ASTRONAUT_FACE, 2, 24, np.random.default_rng(3), config)
    assert low.shape == (24, 24, 3) and high.shape == (48, 48, 3) and low.dtype == high.dtype == np.uint8
    assert _mae(low, cv2.resize(high, (24, 24), interpolation=cv2.INTER_AREA)) < 0.6


def test_the_window_is_around_the_face_and_inside_the_frame():
    rng = np.random.default_rng(0)
    for _ in range(50):
        y0, x0 = face_patch((100, 60, 180, 160), (100, 120), 2, 32, rng)
        assert 0 <= y0 <= 100 - 32 and 0 <= x0 <= 120 - 32
        # The face box at x2 is (50, 30)-(90, 80); the window (1.2-1.8x) reaches at most 45 px out.
        assert 50 + 20 - 45 - 32 <= x0 <= 50 + 20 + 45 and 30 + 25 - 45 - 32 <= y0 <= 30 + 25 + 45


@pytest.mark.parametrize("codec", ["libx264", "libx265", "mpeg4"])
def test_the_codec_really_runs_and_keeps_every_frame(photo, codec):
    frames = make_clip(photo[:96, :128], 5, np.random.default_rng(0), pan=1.0)
    out = encode_decode(frames, codec, crf=20 if codec == "mpeg4" else 35, preset="ultrafast")
    assert len(out) == 5 and out[2].shape == (96, 128, 3) and out[2].dtype == np.uint8
    assert 1.0 < _mae(out[2], frames[2]) < 20.0


def test_pairs_are_a_pure_function_of_the_seed(photo):
    a = damaged_pair(photo, ASTRONAUT_FACE, 2, 24, np.random.default_rng([7, 1]))
    b = damaged_pair(photo, ASTRONAUT_FACE, 2, 24, np.random.default_rng([7, 1]))
    c = damaged_pair(photo, ASTRONAUT_FACE, 2, 24, np.random.default_rng([7, 2]))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_the_sized_mix_draws_faces_of_clip_sizes_in_a_frame_a_window_fits(photo, monkeypatch):
    from framefusion_video.data import video_damage

    sized = damage_mix("sized")
    assert sized.window_face_size and replace(sized, window_face_size=False) == damage_mix("light")
    # The light mix's cache keeps its key (its pairs draw as they did: nothing is drawn when off).
    assert "window_face_size" not in damage_mix("light").cache_key() and sized.cache_key()["window_face_size"]
    sides, shapes = [], []
    real = video_damage._reduced_to_face_size

    def spy(*args):
        reduced, box = real(*args)
        sides.append(max(box[2] - box[0], box[3] - box[1]))
        shapes.append(reduced.shape)
        return reduced, box

    monkeypatch.setattr(video_damage, "_reduced_to_face_size", spy)
    monkeypatch.setattr(video_damage, "encode_decode", lambda frames, *args: list(frames))
    for i in range(12):
        low, high = damaged_pair(photo, ASTRONAUT_FACE, 2, 48, np.random.default_rng([5, i]), sized)
        assert low.shape == (48, 48, 3) and high.shape == (96, 96, 3)
    # The astronaut's face is 80 px: reduced to 40-80, never enlarged; the frame still holds a window.
    assert min(sides) < 55 and max(sides) <= 80.0 + 1e-6 and all(min(s[:2]) >= 2 * 50 for s in shapes)


def test_the_windows_mix_is_the_restorer_mix_on_faces_of_clip_sizes():
    windows = damage_mix("windows")
    assert windows.window_face_size and replace(windows, window_face_size=False) == damage_mix("restorer")


def test_the_single_mix_gives_each_clip_one_damage_over_its_codec(photo, monkeypatch):
    from framefusion_video.data import video_damage

    single = damage_mix("single")
    assert single.window_face_size and single.one_damage
    draws = [sample_damage(np.random.default_rng([7, i]), 1, single) for i in range(500)]
    damages = [(d.blur is not None) + (d.soften > 1.0) + (d.noise_sigma is not None)
               + (d.codec == "mpeg4" or d.crf > single.crf[1]) for d in draws]
    assert set(damages) == {0, 1}  # never two at once
    assert 0.12 < damages.count(0) / len(draws) < 0.28  # "none": a fifth of the clips
    light = [d for d in draws if d.codec != "mpeg4" and d.crf <= single.crf[1]]
    assert all(single.crf[0] <= d.crf for d in light)
    assert any(d.codec == "mpeg4" for d in draws) and any(d.crf >= single.heavy_crf[0] for d in draws)
    # Windows blur in proportion to the face: the 80 px astronaut face reduced to 40-80 px.
    seen = []
    monkeypatch.setattr(video_damage, "damage_clip", lambda frames, scale, damage, rng: seen.append(damage) or frames)
    monkeypatch.setattr(video_damage, "_reduced_to_face_size", lambda photo, box, least, rng, config: (photo, box))
    for i in range(40):
        damaged_pair(photo, ASTRONAUT_FACE, 1, 48, np.random.default_rng(i), single)
    sigmas = [max(d.blur[:2]) for d in seen if d.blur]
    assert sigmas and min(sigmas) >= 0.005 * 80 - 1e-6 and max(sigmas) <= 0.025 * 80 + 1e-6
    assert "one_damage" not in damage_mix("windows").cache_key()  # the windows cache keeps its key


def test_the_light_mix_blurs_fewer_clips_less_with_the_same_codecs():
    full, light = damage_mix("full"), damage_mix("light")
    assert full == VideoDamageConfig()
    assert set(VIDEO_DAMAGE_MIXES) == {"full", "light", "restorer", "encoded", "sized", "windows", "single", "soft"}
    draws = {name: [sample_damage(np.random.default_rng([3, i]), 2, damage_mix(name)) for i in range(400)]
             for name in ("full", "light")}
    blurred = {name: [d.blur[0] for d in found if d.blur] for name, found in draws.items()}
    assert len(blurred["light"]) < 0.6 * len(blurred["full"])
    assert max(blurred["light"]) <= 2 * light.blur_sigma[1] < max(blurred["full"])  # clean-grid sigma at x2
    assert {d.crf for d in draws["light"]} == {d.crf for d in draws["full"]}  # every CRF of the range, both
    with pytest.raises(ValueError, match="unknown damage mix"):
        damage_mix("heavy")


def test_the_soft_mix_blurs_as_the_full_one_with_little_noise_and_milder_codecs():
    soft = damage_mix("soft")
    assert soft.window_face_size and (soft.blur_prob, soft.blur_sigma) == (damage_mix("full").blur_prob,
                                                                          damage_mix("full").blur_sigma)
    draws = [sample_damage(np.random.default_rng([5, i]), 2, soft) for i in range(400)]
    assert 0.6 < np.mean([d.blur is not None for d in draws]) < 0.8
    assert np.mean([d.noise_sigma is not None for d in draws]) < 0.2
    assert max(d.noise_sigma or 0 for d in draws) <= 3.0 and max(d.crf for d in draws if d.codec != "mpeg4") <= 28


def test_an_aligned_pair_is_the_pipelines_crop_of_the_reduced_frame(photo, monkeypatch):
    from framefusion_video.data import video_damage
    from framefusion_video.faces.alignment import estimate_alignment, warp_to_crop

    monkeypatch.setattr(video_damage, "encode_decode", lambda frames, *args: list(frames))
    undamaged = VideoDamageConfig(blur_prob=0, noise_prob=0, restorer_soften_prob=0, face_size=(40, 41))
    low, high = aligned_pair(photo, ASTRONAUT_FACE, ASTRONAUT_MARKS, 64, np.random.default_rng(0), undamaged)
    assert low.shape == high.shape == (64, 64, 3) and low.dtype == np.uint8
    assert _mae(low, high) < 0.01  # no damage drawn: the codec stubbed, nothing else
    # The 80 px face reduced to 40 px, then aligned: the pipeline's crop of the photo itself, softer.
    direct = warp_to_crop(photo, estimate_alignment(ASTRONAUT_MARKS, 64), 64)
    assert _mae(high, direct) < 6.0 and _mae(high, np.roll(direct, 1, axis=1)) > _mae(high, direct) + 4.0
    damaged, _ = aligned_pair(photo, ASTRONAUT_FACE, ASTRONAUT_MARKS, 64, np.random.default_rng(0),
                              VideoDamageConfig(blur_prob=1, blur_sigma=(2.0, 2.5), noise_prob=0))
    assert _mae(damaged, high) > 2.0


def test_lighting_damage_is_drawn_once_per_clip_and_only_where_asked(photo):
    frames = make_clip(photo[:96, :128], 3, np.random.default_rng(0), pan=1.0)
    kept = lit_frames(frames, np.random.default_rng(0), VideoDamageConfig())
    assert all(a is b or np.array_equal(a, b) for a, b in zip(kept, frames))
    lit = lit_frames(frames, np.random.default_rng(1), VideoDamageConfig(lighting_prob=1.0))
    shifts = [np.mean(b.astype(np.float32) - a, axis=(0, 1)) for a, b in zip(frames, lit)]
    assert np.abs(shifts[0]).max() > 2.0 and np.allclose(shifts[0], shifts[2], atol=1.5)
    # Caches made before the lighting and face-size settings keep their key while those are unset.
    assert "lighting_prob" not in VideoDamageConfig().cache_key()
    assert damage_mix("restorer").cache_key()["lighting_prob"] == 0.25


def test_the_restorer_mix_blurs_in_proportion_to_the_face_and_draws_mpeg4(photo, monkeypatch):
    from framefusion_video.data import video_damage

    seen = []
    monkeypatch.setattr(video_damage, "damage_clip", lambda frames, scale, damage, rng: seen.append(damage) or frames)
    mix = damage_mix("restorer")
    for i in range(60):
        aligned_pair(photo, ASTRONAUT_FACE, ASTRONAUT_MARKS, 32, np.random.default_rng(i), mix)
    # The face is drawn at 40-80 px (never enlarged from its 80): the larger sigma at most 2.5% of it.
    sigmas = [max(d.blur[:2]) for d in seen if d.blur]
    assert sigmas and max(sigmas) <= 0.025 * 80 + 1e-6 and min(sigmas) >= 0.002 * 40 - 1e-6
    assert {d.codec for d in seen} == {"libx264", "libx265", "mpeg4"}
    assert all(4 <= d.crf <= 25 for d in seen if d.codec == "mpeg4")
    seen.clear()
    for i in range(20):
        aligned_pair(photo, ASTRONAUT_FACE, ASTRONAUT_MARKS, 32, np.random.default_rng(i), damage_mix("encoded"))
    assert all(d.blur is None and d.noise_sigma is None and d.soften == 1.0 and d.codec == "libx264"
               and 12 <= d.crf <= 20 for d in seen)


def test_the_cache_is_built_once_resumes_and_samples_aligned_patches(face_folder, tmp_path):
    cache = build_pair_cache(face_folder, 2, 3, 24, seed=1, cache_dir=tmp_path / "vd")
    low, high = load_pair_cache(cache, 3)
    assert low.shape == (3, 24, 24, 3) and high.shape == (3, 48, 48, 3)
    assert json.loads((cache / "recipe.json").read_text())["scale"] == 2
    shard = next(cache.glob("shard_*.npz"))
    stamp = shard.stat().st_mtime_ns
    assert build_pair_cache(face_folder, 2, 3, 24, seed=1, cache_dir=tmp_path / "vd") == cache
    assert shard.stat().st_mtime_ns == stamp  # found, not made again
    sampler = PairSampler(low, high, batch_size=2, seed=0, patch=16)
    damaged, clean = sampler.batch(4)
    assert damaged.shape == (2, 16, 16, 3) and clean.shape == (2, 32, 32, 3) and damaged.dtype == np.float32
    np.testing.assert_array_equal(sampler.batch(4)[0], damaged)
    val_low, val_high = sampler.centre(3)
    np.testing.assert_array_equal(val_low[0], low[0, 4:20, 4:20] / np.float32(255))
    np.testing.assert_array_equal(val_high[0], high[0, 8:40, 8:40] / np.float32(255))


def test_ffv_train_span_on_video_damage_then_resume(face_folder, tmp_path):
    from click.testing import CliRunner

    from framefusion_video.cli import main

    out = tmp_path / "run"
    args = ["-q", "train", str(face_folder), "--out", str(out), "--batch-size", "2"]
    result = CliRunner().invoke(main, [*args, "--span", "2", "--video-damage", "4", "--max-steps", "1",
                                       "--adv-start", "1"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["step"] == 1 and meta["config"]["video_damage"] == 4 and meta["config"]["video_damage_mix"] == "full"
    resumed = CliRunner().invoke(main, [*args, "--resume", "--max-steps", "2"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 2
    light = tmp_path / "light"
    result = CliRunner().invoke(main, ["-q", "train", str(face_folder), "--out", str(light), "--batch-size", "2",
                                       "--span", "2", "--video-damage", "4", "--video-damage-mix", "light",
                                       "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((light / "checkpoint.json").read_text())["config"]["video_damage_mix"] == "light"
    unet = tmp_path / "unet"
    result = CliRunner().invoke(main, ["-q", "train", str(face_folder), "--out", str(unet), "--batch-size", "2",
                                       "--video-damage", "4", "--video-damage-mix", "restorer", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    recipe = json.loads(next((tmp_path / "cache").glob("video_damage/*_aligned_p128_*/recipe.json")).read_text())
    assert recipe["aligned"] and recipe["scale"] == 1 and recipe["config"]["lighting_prob"] == 0.25
    mixed = CliRunner().invoke(main, [*args, "--span", "2", "--video-damage", "4", "--extra", str(face_folder)])
    assert mixed.exit_code != 0 and "--extra" in mixed.output
    native = tmp_path / "native"
    result = CliRunner().invoke(main, ["-q", "train", str(face_folder), "--out", str(native), "--batch-size", "2",
                                       "--span", "1", "--unshuffle", "2", "--video-damage", "4",
                                       "--video-damage-mix", "windows", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    config = json.loads((native / "checkpoint.json").read_text())["config"]
    assert config["span"]["unshuffle"] == 2 and config["video_damage_mix"] == "windows"
    wrong = CliRunner().invoke(main, [*args, "--span", "2", "--unshuffle", "2", "--video-damage", "4"])
    assert wrong.exit_code != 0 and "--unshuffle" in wrong.output
