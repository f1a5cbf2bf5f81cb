"""The synthetic quality clip (``benchmarks/synthetic_clip.py``) and its benchmark script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from framefusion_video.evaluation.identity import available as identity_available
from framefusion_video.video.probe import probe

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the clip is a benchmark helper, outside the package
try:
    from synthetic_clip import ClipConfig, SyntheticClip, build_clip, read_video, score_videos
finally:
    sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory) -> Path:
    """Two face photos made from the astronaut portrait (no shared data needed)."""
    import cv2
    from skimage import data

    folder = tmp_path_factory.mktemp("faces")
    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    for i, scale in enumerate((1.0, 0.8)):
        m = np.float32([[scale, 0, 20 * i], [0, scale, 10 * i]])
        cv2.imwrite(str(folder / f"face_{i}.png"), cv2.warpAffine(img, m, (512, 512), borderMode=cv2.BORDER_REFLECT))
    return folder


@pytest.fixture(scope="module")
def small_clip(faces_dir: Path, tmp_path_factory) -> SyntheticClip:
    """A --small clip of undamaged and dark faces."""
    return build_clip(faces_dir, tmp_path_factory.mktemp("clip"), ClipConfig.small(kinds=("none", "dark")))


def test_small_clip_files_faces_and_manifest(small_clip: SyntheticClip) -> None:
    cfg = small_clip.config
    for path in (small_clip.damaged, small_clip.clean_x264):
        info = probe(path)
        assert (info.width, info.height, info.n_frames) == (cfg.width, cfg.height, cfg.n_frames)
        assert info.color_matrix == "bt709"
    assert len(small_clip.faces) == cfg.segments * cfg.faces_per_segment
    assert {f.kind for f in small_clip.faces} == {"none", "dark"}
    for index in range(cfg.n_frames):
        for plan, (x0, y0, x1, y1) in small_clip.faces_in_frame(index):
            assert 0 <= x0 < x1 <= cfg.width and 0 <= y0 < y1 <= cfg.height
            assert cfg.min_face * 0.5 <= plan.size <= cfg.max_face
    assert SyntheticClip.load(small_clip.folder) == small_clip


def test_same_seed_same_frames(faces_dir: Path, small_clip: SyntheticClip, tmp_path) -> None:
    again = build_clip(faces_dir, tmp_path, small_clip.config)
    size = (small_clip.config.width, small_clip.config.height)
    first = next(read_video(small_clip.clean, size))
    assert np.array_equal(first, next(read_video(again.clean, size)))
    assert again.faces == small_clip.faces


def test_scores_are_exact_on_the_clean_frames_and_see_the_damage(small_clip: SyntheticClip) -> None:
    scores = score_videos(small_clip, {"truth": small_clip.clean, "damaged": small_clip.damaged,
                                       "clean": small_clip.clean_x264}, classical_from="damaged")
    s = scores["summary"]
    assert s["faces"]["truth"]["psnr"] == 100.0 and s["frames"]["truth"] == 100.0
    assert s["faces"]["truth"]["ssim"] == pytest.approx(1.0)
    assert s["kinds"]["dark"]["damaged"]["psnr"] < s["kinds"]["none"]["damaged"]["psnr"]
    assert s["faces"]["damaged"]["psnr"] < s["faces"]["clean"]["psnr"]
    # The classical baseline knows the dark faces are dark: auto levels brighten them.
    assert s["kinds"]["dark"]["classical"]["psnr"] > s["kinds"]["dark"]["damaged"]["psnr"]
    assert s["loss"]["damaged"]["truth"]["faces_losing"] == len(small_clip.faces)


@pytest.mark.skipif(not identity_available(), reason="dlib or its weights not installed (pip install -e '.[identity]')")
def test_identity_distances_are_zero_on_the_clean_frames_and_grow_with_the_damage(small_clip: SyntheticClip) -> None:
    scores = score_videos(small_clip, {"truth": small_clip.clean, "damaged": small_clip.damaged},
                          with_ssim=False, identity=True)
    s = scores["summary"]
    assert s["faces"]["truth"]["identity"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < s["kinds"]["dark"]["damaged"]["identity"] < 0.6
    assert set(scores["face_frames"][0]["identity"]) == {"truth", "damaged"}
    assert score_videos(small_clip, {"truth": small_clip.clean}, with_ssim=False)["summary"]["faces"]["truth"][
        "identity"] is None


def test_strength_zero_is_as_faithful_as_a_plain_transcode(faces_dir: Path, tmp_path, capsys) -> None:
    """Through the benchmark script: ``ffv restore --strength 0`` of the damaged (CRF 30) and the
    clean (CRF 12) clip scores within 0.05 dB of ``libx264 -preset veryfast -crf 18`` of the same
    clip, on the faces and on whole frames."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import quality_clip as bench
    finally:
        sys.path.remove(str(BENCHMARKS))
    out = tmp_path / "scores.json"
    assert bench.main(["--faces", str(faces_dir), "--small", "--no-ssim", "--restore", "strength=0",
                       "--json", str(out), "--work", str(tmp_path / "work")]) == 0
    results = json.loads(out.read_text())
    assert results["restore_options"] == {"strength": "0"}
    for name in ("damaged", "clean"):
        s = results["inputs"][name]["summary"]
        assert set(s["faces"]) >= {"n", "input", "transcode", "ffv", "classical"}
        report = results["inputs"][name]["report"]  # at strength 0 no face is looked at
        assert report["faces"] == report["faces_left_alone"] == report["faces_refused"] == 0
        assert sum(g["n"] for g in s["sizes"].values()) == s["faces"]["n"]
        assert abs(s["faces"]["ffv"]["psnr"] - s["faces"]["transcode"]["psnr"]) <= 0.05
        assert abs(s["frames"]["ffv"] - s["frames"]["transcode"]) <= 0.05
    printed = capsys.readouterr().out
    assert "| damage kind |" in printed and "**clean clip**" in printed


def test_the_super_resolution_benchmark_scores_a_reduced_clip_at_full_size(faces_dir: Path, tmp_path) -> None:
    """``--upscale 2``: each input is reduced by 2 and restored with upscale 2; at strength 0 ffv
    gives a plain bicubic enlargement, which must score like ffmpeg's bicubic baseline."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import quality_clip as bench
    finally:
        sys.path.remove(str(BENCHMARKS))
    out = tmp_path / "scores.json"
    assert bench.main(["--faces", str(faces_dir), "--small", "--no-ssim", "--upscale", "2", "--inputs", "clean",
                       "--min-face", "50", "--max-face", "100",
                       "--restore", "strength=0", "--json", str(out), "--work", str(tmp_path / "work")]) == 0
    results = json.loads(out.read_text())
    assert results["restore_options"] == {"strength": "0", "upscale": "2"}
    config = results["clip"]["config"]
    assert (config["min_face"], config["max_face"]) == (50, 100)
    assert all(50 <= f["size"] <= 100 for f in results["inputs"]["clean"]["face_frames"])
    s = results["inputs"]["clean"]["summary"]
    assert "classical" not in s["faces"]
    assert s["faces"]["input"]["psnr"] == s["faces"]["transcode"]["psnr"] < 40.0  # the enlargement loses detail
    assert abs(s["faces"]["ffv"]["psnr"] - s["faces"]["transcode"]["psnr"]) <= 0.5
