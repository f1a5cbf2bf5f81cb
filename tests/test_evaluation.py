"""PSNR/SSIM against scikit-image, the classical baseline, and the evaluation report."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from framefusion_video.data.degradations import KINDS, degrade_kind
from framefusion_video.evaluation.images import (
    EvalReport,
    classical_baseline,
    downscale_area,
    estimate_noise_sigma,
    evaluate,
    evaluate_super_resolution,
    kind_rng,
    mean_scores,
    psnr,
    ssim,
    upscale_bicubic,
)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """8 float32 (48, 48, 3) crops of scikit-image's sample photos."""
    out = []
    for source in (data.astronaut(), data.chelsea(), data.coffee(), data.rocket()):
        h, w = source.shape[:2]
        for y0, x0 in ((0, 0), (h // 3, w // 3)):
            side = min(h, w) * 2 // 3
            patch = source[y0:y0 + side, x0:x0 + side]
            out.append(cv2.resize(patch, (48, 48), interpolation=cv2.INTER_AREA))
    return np.stack(out).astype(np.float32) / np.float32(255.0)


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + sigma * rng.standard_normal(img.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.2])
def test_psnr_and_ssim_match_skimage(crops, sigma):
    a = crops[0]
    b = _noisy(a, sigma)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-4)
    ref = structural_similarity(a, b, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert ssim(a, b) == pytest.approx(ref, abs=2e-4)
    grey_ref = structural_similarity(a[..., 1], b[..., 1], data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert ssim(a[..., 1], b[..., 1]) == pytest.approx(grey_ref, abs=2e-4)


def test_metric_edge_cases(crops):
    a = crops[1]
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert ssim(a, _noisy(a, 0.2)) < ssim(a, _noisy(a, 0.02))
    with pytest.raises(ValueError):
        psnr(a, a[:10])
    with pytest.raises(ValueError, match="window"):
        ssim(a[:8, :8], a[:8, :8])


def test_noise_estimate_follows_the_noise(crops):
    grey_noise = 0.5 + 0.04 * np.random.default_rng(0).standard_normal((64, 64, 1)).astype(np.float32)
    assert estimate_noise_sigma(np.repeat(grey_noise, 3, axis=-1)) == pytest.approx(0.04, rel=0.15)
    assert estimate_noise_sigma(_noisy(crops[2], 0.08)) > estimate_noise_sigma(_noisy(crops[2], 0.02))


@pytest.mark.parametrize("kind", KINDS)
def test_classical_baseline_keeps_contract(crops, kind):
    damaged = degrade_kind(crops[3], kind, kind_rng(0, kind))
    out = classical_baseline(damaged, kind)
    assert out.shape == damaged.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


def test_classical_baseline_helps_on_noise(crops):
    """Non-local means must beat the noisy input on strong gaussian noise."""
    gains = [psnr(classical_baseline(_noisy(c, 0.08, i), "noise"), c) - psnr(_noisy(c, 0.08, i), c)
             for i, c in enumerate(crops[:4])]
    assert np.mean(gains) > 0


def test_evaluate_identity_model_equals_input(crops):
    calls = []

    def identity(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch.copy()

    report = evaluate(crops, identity, seed=1, batch_size=3)
    assert isinstance(report, EvalReport)
    assert [r.kind for r in report.rows] == list(KINDS)
    assert calls[:3] == [3, 3, 2] and sum(calls) == len(crops) * len(KINDS)
    for row in report.rows:
        assert row.n == len(crops)
        assert row.psnr["model"] == pytest.approx(row.psnr["input"], abs=1e-9)
        assert row.ssim["model"] == pytest.approx(row.ssim["input"], abs=1e-9)
        assert row.psnr["input"] < 100.0 and row.ssim["input"] < 1.0  # every kind damaged something
    # "overall" averages the single kinds; "mixed" stays its own row.
    singles = [r for r in report.rows if r.kind != "mixed"]
    assert report.overall.psnr["input"] == pytest.approx(np.mean([r.psnr["input"] for r in singles]))

    table = report.to_markdown()
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(KINDS) + 1
    assert lines[-1].startswith("| mixed") and "overall" in lines[-2]
    assert "PSNR model" in lines[0] and "SSIM classical" in lines[0]

    as_dict = json.loads(json.dumps(report.to_dict()))
    assert set(as_dict["kinds"]) == set(KINDS)
    assert as_dict["methods"] == ["input", "classical", "model"]
    assert as_dict["kinds"]["jpeg"]["psnr"]["model"] == pytest.approx(report.rows[3].psnr["model"])


def test_evaluate_is_reproducible_and_without_model(crops):
    kinds = ("noise", "mixed")
    a = evaluate(crops[:4], None, kinds=kinds, seed=5)
    b = evaluate(crops[:4], None, kinds=("mixed", "noise"), seed=5)
    assert a.methods == ("input", "classical")
    assert {r.kind: r.psnr for r in a.rows} == {r.kind: r.psnr for r in b.rows}
    assert a.overall.kind == "overall" and "PSNR model" not in a.to_markdown()
    c = evaluate(crops[:4], None, kinds=kinds, seed=6)
    assert {r.kind: r.psnr for r in a.rows} != {r.kind: r.psnr for r in c.rows}


def test_evaluate_checks_inputs(crops):
    with pytest.raises(ValueError, match="float32"):
        evaluate(crops.astype(np.float64), None)
    with pytest.raises(ValueError, match="unknown"):
        evaluate(crops, None, kinds=("sepia",))
    with pytest.raises(ValueError, match="shape"):
        evaluate(crops[:2], lambda b: b[:, :10], kinds=("noise",))


def test_downscale_area_averages_blocks_and_bicubic_restores_the_size(crops):
    small = downscale_area(crops, 4)
    assert small.shape == (8, 12, 12, 3) and small.dtype == np.float32
    blocks = crops.reshape(8, 12, 4, 12, 4, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(small, blocks, atol=1e-6)
    big = upscale_bicubic(small, 4)
    assert big.shape == crops.shape and big.min() >= 0.0 and big.max() <= 1.0
    with pytest.raises(ValueError, match="multiple of 5"):
        downscale_area(crops, 5)


@pytest.mark.parametrize("factor", [2, 4])
def test_evaluate_super_resolution_scores_bicubic_and_the_model(crops, factor):
    seen = []

    def oracle(batch: np.ndarray) -> np.ndarray:  # returns the clean faces: a perfect upscaler
        seen.append(batch.shape)
        start = sum(s[0] for s in seen[:-1])
        return crops[start:start + len(batch)]

    scores = evaluate_super_resolution(crops, oracle, factor, batch_size=3)
    assert scores.kind == f"x{factor}" and scores.n == len(crops)
    assert seen == [(3, 48 // factor, 48 // factor, 3)] * 2 + [(2, 48 // factor, 48 // factor, 3)]
    assert scores.psnr["model"] == 100.0 and scores.ssim["model"] == pytest.approx(1.0)
    bicubic = mean_scores(upscale_bicubic(downscale_area(crops, factor), factor), crops)
    assert (scores.psnr["bicubic"], scores.ssim["bicubic"]) == pytest.approx(bicubic)
    assert 15.0 < scores.psnr["bicubic"] < 40.0

    alone = evaluate_super_resolution(crops, None, factor)
    assert set(alone.psnr) == {"bicubic"} and alone.psnr["bicubic"] == pytest.approx(scores.psnr["bicubic"])
    with pytest.raises(ValueError, match="upscale_fn returned shape"):
        evaluate_super_resolution(crops, lambda batch: batch, factor)  # not upscaled

