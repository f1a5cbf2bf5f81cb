"""The restore-or-leave-alone gate: its training data, its fit and ``ffv fit-gate``."""

from __future__ import annotations

import json

from dataclasses import replace

import numpy as np
import pytest

from framefusion_video.data.degradations import degrade_for_training, training_damage
from framefusion_video.evaluation.images import per_image_psnr, psnr
from framefusion_video.training.gating import (CATEGORIES, _split, GateData, GateFitConfig, decision_weights, fit_gate)
from framefusion_video.training.model import GeneratorConfig, build_generator

TINY = GeneratorConfig(crop_size=32, widths=(8, 8, 16), blocks=(0, 1, 1), expansion=2)


def test_per_image_psnr_matches_eval_and_caps_identical_images():
    rng = np.random.default_rng(0)
    clean = rng.random((3, 8, 8, 3)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    noisy[2] = clean[2]
    got = per_image_psnr(noisy, clean)
    assert got[:2] == pytest.approx([psnr(noisy[0], clean[0]), psnr(noisy[1], clean[1])])
    assert got[2] == 100.0


def test_gate_data_damage_is_the_training_damage():
    # The fit must see exactly the damage ffv train trains on, with its category known.
    img = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
    seen = set()
    for i in range(40):
        category, damaged = training_damage(img, np.random.default_rng([5, i]), single_prob=0.5, clean_prob=0.1)
        seen.add(category)
        expected = degrade_for_training(img, np.random.default_rng([5, i]), single_prob=0.5, clean_prob=0.1)
        np.testing.assert_array_equal(damaged, expected)
        if category == "clean":
            np.testing.assert_array_equal(damaged, img)
    assert seen <= set(CATEGORIES) and {"clean", "mixed"} <= seen and len(seen) > 4
    assert training_damage(img, np.random.default_rng(0), single_prob=0.0, clean_prob=1.0)[0] == "clean"


def _data(n: int = 400, dim: int = 24) -> GateData:
    """Faces whose first feature says whether the correction helps (+3 dB) or hurts (-20 dB)."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(n, dim)).astype(np.float32)
    features[:, 0] += np.sign(features[:, 0])  # a margin between the two kinds of face
    helps = features[:, 0] > 0
    p_in = rng.uniform(25, 40, n)
    p_out = np.where(helps, p_in + 3.0, p_in - 20.0)
    category = np.array([CATEGORIES[i % len(CATEGORIES)] for i in range(n)])
    return GateData(features, category, p_in, p_out)


def test_decision_weights_are_the_db_at_stake_over_the_category_size():
    data = _data()
    data.category[:50] = "clean"  # a larger category: each of its faces weighs less
    index = np.arange(len(data.features))
    weights = decision_weights(data, index)
    at_stake = np.abs(data.psnr_restored - data.psnr_input)
    sizes = np.array([(data.category == c).sum() for c in data.category])
    np.testing.assert_allclose(weights / weights[0], (at_stake / sizes) / (at_stake[0] / sizes[0]), rtol=1e-5)
    assert weights.mean() == pytest.approx(1.0, rel=1e-5)


def test_fit_gate_learns_the_decision_and_writes_an_exact_step_into_the_network():
    gen = build_generator(TINY)
    data = _data()
    config = GateFitConfig(epochs=1000, seed=0)
    report = fit_gate(gen, data, config)
    _, held = _split(len(data.features), config)
    best = np.maximum(data.psnr_input, data.psnr_restored)[held]
    for category, row in report.items():  # held-out faces: restored where that helps, else left alone
        assert row["gated"] == pytest.approx(best[data.category[held] == category].mean(), abs=0.5)
        assert row["gated"] > min(row["input"], row["ungated"]) + 1.0
    layers = [gen.get_layer(n) for n in ("gate_hidden", "gate_hidden_relu", "gate_logit", "gate_scale", "gate_relu")]
    probe = np.array([[2.0] + [0.0] * 23, [-2.0] + [0.0] * 23], np.float32)
    out = probe
    for layer in layers:
        out = layer(out)
    np.testing.assert_array_equal(np.asarray(out)[:, 0], [1.0, 0.0])


def test_ffv_fit_gate_writes_a_gated_model_and_keeps_the_input(face_folder, tmp_path):
    from click.testing import CliRunner

    from framefusion_video.cli import main

    source = tmp_path / "plain.keras"
    plain = build_generator(GeneratorConfig(gate=False))
    plain.save(source)
    before = source.read_bytes()
    out = tmp_path / "gated.keras"
    result = CliRunner().invoke(main, ["-q", "fit-gate", str(source), str(face_folder), "-o", str(out),
                                       "--samples", "16"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.with_suffix(".tflite").is_file() and source.read_bytes() == before
    assert "mixed" in result.output or "blur" in result.output
    bad = CliRunner().invoke(main, ["fit-gate", str(source), str(tmp_path / "nofaces"), "-o", str(out)])
    assert bad.exit_code != 0 and "nofaces" in bad.output
    # On real video damage: aligned pairs of other draws than a training run's (seed + 1).
    video = CliRunner().invoke(main, ["-q", "fit-gate", str(source), str(face_folder), "-o", str(out),
                                      "--video-damage", "12"])
    assert video.exit_code == 0, video.output
    assert "video:" in video.output and "blur" not in video.output
    recipe = json.loads(next((tmp_path / "cache").glob("video_damage/*_aligned_p128_*/recipe.json")).read_text())
    assert recipe["seed"] == 1 and recipe["aligned"]
    # Both: the video pairs and ffv eval's synthetic kinds, each a category of the fit.
    both = CliRunner().invoke(main, ["-q", "fit-gate", str(source), str(face_folder), "-o", str(out),
                                     "--video-damage", "12", "--samples", "40", "--with-synthetic"])
    assert both.exit_code == 0, both.output
    assert "video:" in both.output and ("mixed:" in both.output or "blur:" in both.output)
    alone = CliRunner().invoke(main, ["fit-gate", str(source), str(face_folder), "-o", str(out), "--with-synthetic"])
    assert alone.exit_code != 0 and "--video-damage" in alone.output


def test_ffv_fit_gate_keeps_the_networks_shape(face_folder, tmp_path):
    # fit-gate once rebuilt the default network and silently dropped a deeper one's extra blocks.
    import keras
    from click.testing import CliRunner

    from framefusion_video.cli import main
    from framefusion_video.training.model import generator_config_of

    deeper = GeneratorConfig(blocks=(0, 1, 2, 3, 4), gate=False)
    rng = np.random.default_rng(0)
    plain = build_generator(deeper)
    plain.set_weights([w + rng.normal(0, 0.02, w.shape).astype(w.dtype) for w in plain.get_weights()])
    plain.save(tmp_path / "deep.keras")
    out = tmp_path / "gated.keras"
    result = CliRunner().invoke(main, ["-q", "fit-gate", str(tmp_path / "deep.keras"), str(face_folder), "-o", str(out),
                                       "--samples", "16"])
    assert result.exit_code == 0, result.output
    gated = keras.models.load_model(out, compile=False)
    assert generator_config_of(gated) == replace(deeper, gate=True)
    kept = {w.path: w.numpy() for w in plain.weights}
    for w in gated.weights:
        if w.path in kept:
            np.testing.assert_array_equal(w.numpy(), kept[w.path])


def test_generator_config_of_reads_back_every_shape():
    from framefusion_video.training.model import generator_config_of

    for config in (GeneratorConfig(), GeneratorConfig(crop_size=64, widths=(8, 16, 24), blocks=(1, 0, 2), expansion=2,
                                                      gate=False)):
        assert generator_config_of(build_generator(config)) == config
