"""Synthetic degradations: determinism, array contract, the effect of each primitive, files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from framefusion_video.base.errors import FfvError
from framefusion_video.data import degradations as D
from framefusion_video.data.degrade_files import degrade_path
from framefusion_video.video.decode import read_frames
from framefusion_video.video.ffmpeg import ffmpeg_exe
from framefusion_video.video.probe import probe


def _smooth_image(size: int = 64, seed: int = 0) -> np.ndarray:
    """A float32 RGB test image with edges and texture (so blur and JPEG have something to do)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([xx, yy, 0.5 + 0.4 * np.sin(8 * xx + 5 * yy)], axis=-1)
    img[size // 4: size // 2, size // 4: 3 * size // 4] = (0.9, 0.2, 0.1)
    img += 0.15 * rng.random((size, size, 3), dtype=np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def img() -> np.ndarray:
    return _smooth_image()


def _high_freq_energy(x: np.ndarray) -> float:
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return float(np.mean(cv2.Laplacian(grey, cv2.CV_32F) ** 2))


def _assert_contract(out: np.ndarray, ref: np.ndarray) -> None:
    assert out.shape == ref.shape
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


TRIANGLE = D.OcclusionParams("polygon", "noise", polygons=(((0.1, 0.1), (0.5, 0.2), (0.3, 0.6)),))
PRIMITIVES = {
    "gaussian_blur": lambda x, rng: D.gaussian_blur(x, 1.5),
    "anisotropic_blur": lambda x, rng: D.apply_kernel(x, D.anisotropic_gaussian_kernel(3.0, 0.7, 0.6)),
    "motion_blur": lambda x, rng: D.apply_kernel(x, D.motion_blur_kernel(7.0, 30.0)),
    "downscale": lambda x, rng: D.downscale(x, 4.0, "area", "cubic"),
    "gaussian_noise": lambda x, rng: D.gaussian_noise(x, rng, 10 / 255),
    "grey_noise": lambda x, rng: D.gaussian_noise(x, rng, 10 / 255, grey=True),
    "poisson_noise": lambda x, rng: D.poisson_noise(x, rng, 100.0),
    "grey_poisson_noise": lambda x, rng: D.poisson_noise(x, rng, 100.0, grey=True),
    "jpeg": lambda x, rng: D.jpeg(x, 40),
    "video_compression": lambda x, rng: D.video_compression(x, 34),
    "occlusion": lambda x, rng: D.occlude(x, TRIANGLE, rng),
    "low_light": lambda x, rng: D.low_light(x, rng, 0.3, 1.2, 5 / 255),
    "gamma": lambda x, rng: D.adjust_gamma(x, 1.5),
    "colour_cast": lambda x, rng: D.colour_cast(x, (1.1, 0.95, 0.85)),
    "uneven_lighting": lambda x, rng: D.uneven_lighting(x, 45.0, 0.5, 0.3),
    "shift": lambda x, rng: D.shift(x, 1.5, -0.7, 1.0, 1.01),
}


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_keeps_contract_and_changes_image(img, name):
    before = img.copy()
    out = PRIMITIVES[name](img, np.random.default_rng(1))
    _assert_contract(out, img)
    np.testing.assert_array_equal(img, before)  # the input is not modified in place
    assert np.abs(out - img).mean() > 1e-3, f"{name} left the image (almost) unchanged"


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_is_deterministic_for_a_seed(img, name):
    a = PRIMITIVES[name](img, np.random.default_rng(7))
    b = PRIMITIVES[name](img, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", D.KINDS)
def test_degrade_kind_deterministic_and_keeps_contract(img, kind):
    outs = [D.degrade_kind(img, kind, np.random.default_rng(s)) for s in (3, 3, 4)]
    for out in outs:
        _assert_contract(out, img)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2]), "different seeds gave the same damage"


def test_mixed_always_damages_and_varies(img):
    params = [D.sample_params(np.random.default_rng(s)) for s in range(40)]
    assert all(any(getattr(p, f) is not None for f in ("blur", "resize", "noise", "compression")) for p in params)
    assert len({p.blur.kind for p in params if p.blur is not None}) == 3
    for s in range(5):
        assert np.abs(D.degrade(img, np.random.default_rng(s)) - img).mean() > 1e-3


def test_training_damage_mixes_clean_single_and_mixed_samples(img):
    # Each sample is the clean image, one kind of damage or the mixture, in the requested shares.
    outs = [D.degrade_for_training(img, np.random.default_rng(i), single_prob=0.5, clean_prob=0.2) for i in range(60)]
    clean = sum(np.array_equal(o, img) for o in outs)
    assert 4 <= clean <= 24
    assert all(o.shape == img.shape and o.dtype == np.float32 for o in outs)
    again = D.degrade_for_training(img, np.random.default_rng(7), single_prob=0.5, clean_prob=0.2)
    np.testing.assert_array_equal(again, outs[7])
    with pytest.raises(ValueError):
        D.degrade_for_training(img, np.random.default_rng(0), single_prob=0.8, clean_prob=0.3)


def test_named_kind_applies_only_its_stage():
    expected = {"blur": "blur", "motion_blur": "blur", "noise": "noise", "jpeg": "compression",
                "lowres": "resize", "occlusion": "occlusion", "lighting": "lighting"}
    stages = ("shift", "occlusion", "lighting", "blur", "resize", "noise", "compression")
    for kind, stage in expected.items():
        p = D.sample_params(np.random.default_rng(0), kind=kind)
        assert [s for s in stages if getattr(p, s) is not None] == [stage], kind
    assert D.sample_params(np.random.default_rng(0), kind="motion_blur").blur.kind == "motion"
    with pytest.raises(ValueError):
        D.sample_params(np.random.default_rng(0), kind="sepia")


def test_blur_lowers_high_frequency_energy(img):
    base = _high_freq_energy(img)
    assert _high_freq_energy(D.gaussian_blur(img, 2.0)) < 0.5 * base
    assert _high_freq_energy(D.gaussian_blur(img, 3.0)) < _high_freq_energy(D.gaussian_blur(img, 1.0))
    assert _high_freq_energy(D.apply_kernel(img, D.motion_blur_kernel(9.0, 0.0))) < 0.5 * base
    assert _high_freq_energy(D.downscale(img, 4.0)) < 0.5 * base


def test_kernels_are_normalised_and_oriented():
    for k in (D.anisotropic_gaussian_kernel(4.0, 0.5, 0.0), D.motion_blur_kernel(9.0, 0.0)):
        assert k.dtype == np.float32 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        assert abs(float(k.sum()) - 1.0) < 1e-5
        # theta = 0 / angle 0: spread along x (columns), not along y (rows).
        c = k.shape[0] // 2
        assert k[c, :].sum() > 3 * k[:, c].sum() - 1e-6
    vertical = D.motion_blur_kernel(9.0, 90.0)
    c = vertical.shape[0] // 2
    assert vertical[:, c].sum() > 3 * vertical[c, :].sum()


def test_jpeg_quality_ordering(img):
    errors = [np.abs(D.jpeg(img, q) - img).mean() for q in (30, 60, 95)]
    assert errors[0] > errors[1] > errors[2]
    video = [np.abs(D.video_compression(img, qp) - img).mean() for qp in (40, 30, 20)]
    assert video[0] > video[1] > video[2]


def test_noise_levels_order(img):
    rng = np.random.default_rng
    assert (np.std(D.gaussian_noise(img, rng(0), 0.08) - img) > np.std(D.gaussian_noise(img, rng(0), 0.02) - img))
    assert (np.std(D.poisson_noise(img, rng(0), 50.0) - img) > np.std(D.poisson_noise(img, rng(0), 2000.0) - img))
    grey = D.gaussian_noise(np.full((16, 16, 3), 0.5, np.float32), rng(0), 0.05, grey=True)
    np.testing.assert_allclose(grey[..., 0], grey[..., 1])


def test_occlusion_changes_only_its_region(img):
    rng = np.random.default_rng(5)
    for s in range(6):
        occ = D._sample_occlusion(np.random.default_rng(s), D.DegradationConfig())
        out = D.occlude(img, occ, rng)
        mask = D.occlusion_mask(img.shape[:2], occ)
        assert 0 < mask.mean() < 0.9
        # Hands have a soft 2-pixel edge: allow 3 pixels around the hard mask.
        near = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        changed = np.abs(out - img).max(axis=-1) > 1e-6
        assert not changed[~near].any(), f"{occ.shape} changed pixels outside its region"
        assert changed[mask].mean() > 0.5


def test_reference_size_scales_pixel_sizes():
    big = cv2.resize(_smooth_image(64), (256, 256), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA)
    params = D.DegradationParams(blur=D.BlurParams("gaussian", sigma_x=8.0), reference_size=256)
    out_big = D.apply_degradation(big, params, np.random.default_rng(0))
    out_small = D.apply_degradation(small, params, np.random.default_rng(0))
    # The same relative blur: blurring the big image then shrinking ~ shrinking then blurring.
    shrunk = cv2.resize(out_big, (64, 64), interpolation=cv2.INTER_AREA)
    unscaled = D.apply_degradation(small, replace(params, reference_size=None), np.random.default_rng(0))
    assert np.abs(shrunk - out_small).mean() < 0.5 * np.abs(shrunk - unscaled).mean()


def test_video_params_give_same_damage_with_fresh_noise(img):
    params = D.DegradationParams(blur=D.BlurParams("gaussian", sigma_x=20.0),
                                 noise=D.NoiseParams("gaussian", sigma=0.05))
    rng = np.random.default_rng(0)
    a, b = D.apply_degradation(img, params, rng), D.apply_degradation(img, params, rng)
    assert not np.array_equal(a, b)  # fresh noise per frame
    assert abs(float(a.mean()) - float(b.mean())) < 0.01  # but the same damage


def test_rejects_wrong_dtype(img):
    with pytest.raises(ValueError, match="float32"):
        D.gaussian_blur(img.astype(np.float64), 1.0)


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def _write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor((img * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))


def test_degrade_path_mirrors_a_folder(tmp_path):
    src = tmp_path / "in"
    _write_png(src / "a.png", _smooth_image(48, 1))
    _write_png(src / "sub" / "b.png", _smooth_image(48, 2))
    cv2.imwrite(str(src / "c.jpg"), (255 * _smooth_image(48, 3)).astype(np.uint8))
    (src / "notes.txt").write_text("not an image")
    written = degrade_path(src, tmp_path / "out", seed=3, kind="noise")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == ["a.png", "c.jpg", "sub/b.png"]
    original = cv2.imread(str(src / "a.png"))
    damaged = cv2.imread(str(tmp_path / "out" / "a.png"))
    assert damaged.shape == original.shape and not np.array_equal(damaged, original)
    # Same seed, same result; existing outputs are kept unless told otherwise.
    with pytest.raises(FfvError, match="already exists"):
        degrade_path(src, tmp_path / "out", seed=3, kind="noise")
    degrade_path(src, tmp_path / "again", seed=3, kind="noise")
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "again" / "a.png")), damaged)
    degrade_path(src, tmp_path / "out", seed=4, kind="noise", overwrite=True)
    assert not np.array_equal(cv2.imread(str(tmp_path / "out" / "a.png")), damaged)


def test_degrade_path_single_image_and_refusals(tmp_path):
    src = tmp_path / "face.png"
    _write_png(src, _smooth_image(32))
    before = src.read_bytes()
    assert degrade_path(src, tmp_path / "damaged.png", seed=0) == [tmp_path / "damaged.png"]
    assert degrade_path(src, tmp_path / "dir", seed=0) == [tmp_path / "dir" / "face.png"]
    with pytest.raises(FfvError, match="output is the input"):
        degrade_path(src, src, seed=0, overwrite=True)
    with pytest.raises(FfvError, match="replace an input"):
        degrade_path(src, tmp_path, seed=0, overwrite=True)
    assert src.read_bytes() == before
    with pytest.raises(FfvError, match="no such file"):
        degrade_path(tmp_path / "missing.png", tmp_path / "x.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(FfvError, match="not a readable image"):
        degrade_path(tmp_path / "bad.png", tmp_path / "bad_out.png")


def test_cli_degrade_calls_library(tmp_path):
    from click.testing import CliRunner

    from framefusion_video.cli.degrade import degrade

    src = tmp_path / "face.png"
    _write_png(src, _smooth_image(32))
    runner = CliRunner()
    result = runner.invoke(degrade, [str(src), str(tmp_path / "out.png"), "--kind", "jpeg", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").is_file()
    result = runner.invoke(degrade, [str(src), str(tmp_path / "out.png")])
    assert result.exit_code != 0 and "already exists" in result.output


def test_degrade_path_tiny_clip(tmp_path):
    import imageio_ffmpeg

    src = tmp_path / "clip.mp4"
    frames = [(255 * np.roll(_smooth_image(64), 2 * i, axis=1)).astype(np.uint8) for i in range(6)]
    writer = imageio_ffmpeg.write_frames(str(src), (64, 64), fps=12, macro_block_size=1, quality=9)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()

    written = degrade_path(src, tmp_path / "out", seed=1, kind="occlusion")
    assert written == [tmp_path / "out" / "clip.mp4"]
    out = list(read_frames(written[0]))
    original = list(read_frames(src))
    assert len(out) == len(original) and out[0].shape == original[0].shape
    # One occluder for the whole clip: the damaged region is the same on every frame.
    changed = [np.abs(o.astype(int) - f.astype(int)).max(axis=-1) > 40 for o, f in zip(out, original)]
    assert changed[0].mean() > 0.01
    overlap = (changed[0] & changed[-1]).sum() / max(1, (changed[0] | changed[-1]).sum())
    assert overlap > 0.6


def test_degrade_shared_clip_keeps_audio_and_timing(tmp_path, shared_videos):
    import subprocess

    src = shared_videos / "closeup_audio-first-stream_410x412.mp4"
    if not src.is_file():
        pytest.skip(f"{src} is missing")
    # Half a second only, cut without re-encoding, to keep the test fast.
    short = tmp_path / "short.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(src), "-t", "0.5", "-map", "0", "-c", "copy",
                    str(short)], check=True)
    written = degrade_path(short, tmp_path / "damaged.mp4", seed=0, kind="mixed")
    before, after = probe(short), probe(written[0])
    assert after.size == before.size
    assert after.n_frames == before.n_frames
    assert before.has_audio and after.has_audio
    first = next(read_frames(written[0]))
    assert not np.array_equal(first, next(read_frames(short)))
