"""Training: loss goes down, checkpoints resume exactly, export loads, ``ffv train`` runs."""

from __future__ import annotations

from dataclasses import replace

import cv2
import keras
import numpy as np
import pytest

from framefusion_video.base.errors import FfvError
from framefusion_video.base.filetypes import IMAGE_EXTENSIONS
from framefusion_video.data.dataset import BatchSampler, list_images
from framefusion_video.training.checkpoints import load_checkpoint, save_checkpoint, save_snapshot, snapshot_paths
from framefusion_video.training.export import export_generator
from framefusion_video.training.model import DiscriminatorConfig, GeneratorConfig
from framefusion_video.training.trainer import TrainConfig, build_gan

TINY = TrainConfig(batch_size=4, adv_start=0, lr_g=2e-3,
                   generator=GeneratorConfig(crop_size=32, widths=(8, 8, 16), blocks=(0, 1, 1), expansion=2),
                   discriminator=DiscriminatorConfig(crop_size=32, widths=(8, 8, 8, 8)))


def _blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), 1.5)


def _crops(n: int = 8, size: int = 32) -> np.ndarray:
    from skimage import data

    img = cv2.resize(data.astronaut(), (size * 4, size * 4))
    return np.stack([img[(i % 4) * size:(i % 4 + 1) * size, (i // 4) * size:(i // 4 + 1) * size] for i in range(n)])


def test_training_folders_take_the_image_extensions_of_filetypes(tmp_path):
    # One list of image extensions (filetypes.py) for training, evaluation and ffv degrade.
    for i, ext in enumerate(IMAGE_EXTENSIONS):  # below the folder too, and in upper case
        folder = tmp_path / "sub" if i % 2 else tmp_path
        folder.mkdir(exist_ok=True)
        (folder / f"face{i}{ext.upper() if i % 3 == 0 else ext}").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    (tmp_path / "clip.mp4").write_bytes(b"")
    found = list_images(tmp_path)
    assert len(found) == len(IMAGE_EXTENSIONS) and found == sorted(found)
    assert {p.suffix.lower() for p in found} == set(IMAGE_EXTENSIONS)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "clip.mp4").write_bytes(b"")
    with pytest.raises(FfvError, match="no images found"):
        list_images(tmp_path / "empty")


def test_batches_are_a_pure_function_of_seed_and_step():
    sampler = BatchSampler(_crops(), 4, seed=3, degrade=lambda x, rng: np.clip(x + rng.normal(0, .1, x.shape), 0, 1).astype(np.float32))
    a, b = sampler.batch(5), sampler.batch(5)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(sampler.batch(5)[0], sampler.batch(6)[0])
    assert a[0].dtype == np.float32 and a[0].shape == (4, 32, 32, 3)


def test_a_few_steps_reduce_the_loss():
    gan = build_gan(TINY)
    sampler = BatchSampler(_crops(4), 4, seed=0, degrade=_blur)
    damaged, clean = sampler.batch(0)
    first = float(gan.train_on_batch(damaged, clean, return_dict=True)["pixel"])
    for _ in range(30):
        last = float(gan.train_on_batch(damaged, clean, return_dict=True)["pixel"])
    assert last < first


def test_checkpoint_resume_restores_step_weights_and_optimiser(tmp_path):
    gan = build_gan(TINY)
    sampler = BatchSampler(_crops(), 4, seed=0, degrade=_blur)
    for step in range(3):
        gan.train_on_batch(*sampler.batch(step))
    save_checkpoint(gan, tmp_path, step=3)

    resumed = build_gan(TINY)
    assert load_checkpoint(resumed, tmp_path) == 3
    for a, b in zip(gan.generator.weights + gan.g_optimizer.variables,
                    resumed.generator.weights + resumed.g_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Continuing both runs with the same batch gives the same weights: the state is complete.
    gan.train_on_batch(*sampler.batch(3))
    resumed.train_on_batch(*sampler.batch(3))
    for a, b in zip(gan.generator.weights, resumed.generator.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_export_then_load_gives_the_same_outputs(tmp_path):
    from framefusion_video.restore.inference import load_restorer

    gan = build_gan(TINY)
    sampler = BatchSampler(_crops(), 4, seed=0, degrade=_blur)
    gan.train_on_batch(*sampler.batch(0))
    save_checkpoint(gan, tmp_path / "run", step=1)
    path = export_generator(tmp_path / "run", tmp_path / "g.keras")
    x = sampler.batch(1)[0]
    np.testing.assert_allclose(load_restorer(path, batch_size=4).restore(x), gan.generator.predict(x, verbose=0),
                               atol=1e-5)


def test_export_average_is_the_mean_of_the_last_snapshots(tmp_path):
    from framefusion_video.base.errors import FfvError

    gan = build_gan(TINY)
    sampler = BatchSampler(_crops(), 4, seed=0, degrade=_blur)
    kept = []
    for step in range(3):
        gan.train_on_batch(*sampler.batch(step))
        save_snapshot(gan.generator, tmp_path / "run", step + 1)
        kept.append([v.numpy().copy() for v in gan.generator.weights])
    save_checkpoint(gan, tmp_path / "run", step=3)
    assert [p.name for p in snapshot_paths(tmp_path / "run")] == [f"step_000000{i}.npz" for i in (1, 2, 3)]

    path = export_generator(tmp_path / "run", tmp_path / "g.keras", tflite=False, average=2)
    exported = keras.models.load_model(path, compile=False).weights
    assert len(exported) == len(kept[0])
    for i, v in enumerate(exported):
        np.testing.assert_allclose(v.numpy(), (kept[1][i] + kept[2][i]) / 2, rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(kept[1][i], kept[2][i]) for i in range(len(exported)))  # a real mean
    with pytest.raises(FfvError, match="3 snapshots to average, 4 asked"):
        export_generator(tmp_path / "run", tmp_path / "h.keras", tflite=False, average=4)
    second = keras.models.load_model(export_generator(tmp_path / "run", tmp_path / "s.keras", tflite=False,
                                                      snapshot=2), compile=False).weights
    for v, w in zip(second, kept[1]):
        np.testing.assert_array_equal(v.numpy(), w)  # exactly the snapshot taken at batch 2
    with pytest.raises(FfvError, match="no snapshot taken at batch 5 .snapshots: 1, 2, 3"):
        export_generator(tmp_path / "run", tmp_path / "t.keras", tflite=False, snapshot=5)
    with pytest.raises(FfvError, match="only a SPAN"):  # the U-Net's crop size is part of its graph
        export_generator(tmp_path / "run", tmp_path / "u.keras", tflite=False, input_size=64)


def test_ffv_train_two_steps_then_export(face_folder, tmp_path):
    from click.testing import CliRunner

    from framefusion_video.cli import main

    out = tmp_path / "run"
    model = tmp_path / "model.keras"
    result = CliRunner().invoke(main, ["-q", "train", str(face_folder), "--out", str(out), "--max-steps", "2",
                                       "--batch-size", "2", "--snapshot-every", "1", "--export", str(model)])
    assert result.exit_code == 0, result.output
    assert (out / "checkpoint.json").is_file() and model.is_file()
    assert len(list((out / "snapshots").glob("step_*.npz"))) == 2
    averaged = CliRunner().invoke(main, ["-q", "export", str(out), "--average", "2", "--no-tflite",
                                         "-o", str(tmp_path / "avg.keras")])
    assert averaged.exit_code == 0, averaged.output
    assert (tmp_path / "avg.keras").is_file()
    too_many = CliRunner().invoke(main, ["-q", "export", str(out), "--average", "3", "-o", str(tmp_path / "x.keras")])
    assert too_many.exit_code != 0 and "2 snapshots to average, 3 asked" in too_many.output
    assert not (tmp_path / "x.keras").exists()
    resumed = CliRunner().invoke(main, ["-q", "train", str(face_folder), "--out", str(out), "--resume",
                                        "--max-steps", "3", "--lr-scale", "0.5"])
    assert resumed.exit_code == 0, resumed.output
    import json

    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["step"] == 3 and meta["config"]["lr_scale"] == 0.5
    # Options not given on a resume keep the run's own: the snapshot interval set by the first run here,
    # and the rate set by the previous resume next.
    assert meta["config"]["snapshot_every"] == 1
    assert len(list((out / "snapshots").glob("step_*.npz"))) == 3
    again = CliRunner().invoke(main, ["-q", "train", str(face_folder), "--out", str(out), "--resume", "--max-steps", "4"])
    assert again.exit_code == 0, again.output
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["step"] == 4 and meta["config"]["lr_scale"] == 0.5 and meta["config"]["snapshot_every"] == 1


def test_ffv_train_reports_a_missing_folder(tmp_path):
    from click.testing import CliRunner

    from framefusion_video.cli import main

    result = CliRunner().invoke(main, ["train", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "nope" in result.output


def test_ffv_eval_measures_input_baseline_and_model(face_folder, tmp_path):
    import json

    from click.testing import CliRunner

    from framefusion_video.cli import main
    from framefusion_video.training.model import build_generator

    model = tmp_path / "g.keras"
    build_generator(GeneratorConfig(crop_size=32, widths=(8, 8, 16), blocks=(0, 1, 1), expansion=2)).save(model)
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["-q", "eval", str(face_folder), "--model", str(model), "--kind", "noise",
                                       "--kind", "jpeg", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["kinds"]) == {"noise", "jpeg"}
    noise = report["kinds"]["noise"]["psnr"]
    # An untrained generator is the identity, so it scores what the damaged input scores.
    assert noise["model"] == pytest.approx(noise["input"], abs=0.05)
    assert "noise" in result.output


def test_the_critic_learns_to_tell_clean_from_damaged():
    # With the default critic settings, a few hundred batches separate sharp crops from blurred
    # ones (its loss falls below 2 ln 2, the loss of a critic that cannot tell them apart). Over
    # seeds 0-3, batches 270-300 average 1.19-1.30.
    keras.utils.set_random_seed(0)
    gan = build_gan(replace(TINY, lr_g=1e-9, adv_start=0, critic_warmup=0,
                            lr_d=TrainConfig.lr_d, r1_gamma=TrainConfig.r1_gamma))
    sampler = BatchSampler(_crops(8), 4, seed=0, degrade=lambda x, rng: cv2.GaussianBlur(x, (0, 0), 2.0))
    losses = [float(gan.train_on_batch(*sampler.batch(i), return_dict=True)["d_loss"]) for i in range(300)]
    assert np.mean(losses[-10:]) < 2 * np.log(2) - 0.05


def test_log_mse_is_minus_a_tenth_of_the_mean_psnr():
    from framefusion_video.evaluation.images import psnr
    from framefusion_video.training.trainer import log_mse

    rng = np.random.default_rng(4)
    clean = rng.random((3, 16, 16, 3)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, [[[[0.01]]], [[[0.05]]], [[[0.2]]]], clean.shape), 0, 1).astype(np.float32)
    expected = -np.mean([psnr(a, b) for a, b in zip(noisy, clean)]) / 10.0
    assert float(log_mse(noisy, clean)) == pytest.approx(expected, abs=1e-4)
    assert float(log_mse(clean, clean)) == pytest.approx(-10.0)  # a perfect image counts as 100 dB


def test_init_from_copies_an_ungated_generator_into_a_gated_one(tmp_path):
    from framefusion_video.base.errors import FfvError
    from framefusion_video.training.model import build_generator
    from framefusion_video.training.trainer import init_generator_from

    ungated = build_generator(replace(TINY.generator, gate=False))
    rng = np.random.default_rng(0)
    ungated.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in ungated.get_weights()])
    ungated.save(tmp_path / "old.keras")
    gated = build_generator(TINY.generator)
    assert init_generator_from(gated, tmp_path / "old.keras") == ["gate_hidden", "gate_logit"]
    x = rng.random((2, 32, 32, 3)).astype(np.float32)
    # The gate starts at a gain of exactly 1: the fine-tuning run starts from the old model's outputs.
    np.testing.assert_allclose(gated.predict(x, verbose=0), ungated.predict(x, verbose=0), atol=1e-6)
    wider = build_generator(replace(TINY.generator, widths=(8, 12, 16)))
    with pytest.raises(FfvError, match="old.keras"):
        init_generator_from(wider, tmp_path / "old.keras")


def test_init_from_grows_a_deeper_network_and_leaves_the_gate_at_one(tmp_path):
    from framefusion_video.training.model import build_generator
    from framefusion_video.training.trainer import init_generator_from

    rng = np.random.default_rng(1)
    old = build_generator(TINY.generator)
    old.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in old.get_weights()])
    # A gate fitted to shut faces off: a run started from this file must not train behind it.
    old.get_layer("gate_logit").set_weights([np.zeros((32, 1), np.float32), np.array([-1.0], np.float32)])
    old.save(tmp_path / "old.keras")
    deeper = build_generator(replace(TINY.generator, blocks=(0, 2, 3)))
    fresh = init_generator_from(deeper, tmp_path / "old.keras")
    assert set(fresh) == {"gate_hidden", "gate_logit", "enc1_1_expand", "enc1_1_dw", "enc1_1_project",
                          "enc2_1_expand", "enc2_1_dw", "enc2_1_project", "enc2_2_expand", "enc2_2_dw",
                          "enc2_2_project", "dec1_1_expand", "dec1_1_dw", "dec1_1_project"}
    x = rng.random((2, 32, 32, 3)).astype(np.float32)
    ungated = build_generator(replace(TINY.generator, gate=False))
    init_generator_from(ungated, tmp_path / "old.keras")
    out = deeper.predict(x, verbose=0)
    assert np.abs(out - x).max() > 1e-3  # the old residual is applied, not shut off by the old gate
    np.testing.assert_allclose(out, ungated.predict(x, verbose=0), atol=1e-5)


def test_ffv_train_blocks_and_widths_shape_a_new_run(face_folder, tmp_path):
    import json

    from click.testing import CliRunner

    from framefusion_video.cli import main

    out = tmp_path / "run"
    args = ["-q", "train", str(face_folder), "--out", str(out), "--max-steps", "1", "--batch-size", "2"]
    result = CliRunner().invoke(main, args + ["--widths", "8,16,24", "--blocks", "0,1,3"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "checkpoint.json").read_text())["config"]["generator"]
    assert saved["widths"] == [8, 16, 24] and saved["blocks"] == [0, 1, 3]
    for bad, message in ((["--blocks", "0,1"], "levels"), (["--blocks", "0,x,1"], "comma-separated"),
                         (["--resume", "--blocks", "0,1,2,2,3"], "new run"), (["--widths", "0,8,8,8,8"], "channel"),
                         (["--widths", "8,8,8,8,8,8,8,8,8", "--blocks", "0,0,0,0,0,0,0,0,0"], "at most 8")):
        result = CliRunner().invoke(main, args + bad)
        assert result.exit_code != 0 and message in result.output, result.output


def test_ffv_train_init_from_starts_a_run_from_a_generator(face_folder, tmp_path):
    import json

    from click.testing import CliRunner

    from framefusion_video.cli import main
    from framefusion_video.training.model import build_generator

    source = tmp_path / "start.keras"
    build_generator().save(source)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["-q", "train", str(face_folder), "--out", str(out), "--max-steps", "1",
                                       "--batch-size", "2", "--init-from", str(source)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "checkpoint.json").read_text())["config"]["init_from"] == str(source)
    bad = CliRunner().invoke(main, ["train", str(face_folder), "--out", str(tmp_path / "r2"), "--init-from",
                                    str(tmp_path / "missing.keras")])
    assert bad.exit_code != 0 and "missing.keras" in bad.output


def test_training_keeps_the_gate_at_a_gain_of_one():
    # The gate is fitted by ffv fit-gate; ffv train must not move it (a shut gate stops learning).
    gan = build_gan(TINY)
    before = [w.numpy().copy() for w in gan.generator.get_layer("gate_logit").weights]
    sampler = BatchSampler(_crops(4), 4, seed=0, degrade=_blur)
    for step in range(3):
        gan.train_on_batch(*sampler.batch(step))
    for a, b in zip(before, gan.generator.get_layer("gate_logit").weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_batch_ssim_equals_tensorflows():
    import tensorflow as tf

    from framefusion_video.training.trainer import batch_ssim

    rng = np.random.default_rng(0)
    x = rng.random((3, 40, 36, 3), dtype=np.float32)
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(batch_ssim(x, y).numpy(), tf.image.ssim(x, y, max_val=1.0).numpy(), atol=2e-5)
    np.testing.assert_allclose(batch_ssim(x, x).numpy(), 1.0, atol=1e-5)


def test_repeats_show_a_crop_that_often_per_epoch_with_damage_of_its_own():
    noisy = lambda x, rng: np.clip(x + rng.normal(0, .1, x.shape), 0, 1).astype(np.float32)  # noqa: E731
    crops = _crops(6)
    repeats = np.array([1, 1, 1, 1, 3, 1])
    sampler = BatchSampler(crops, 2, seed=0, degrade=noisy, repeats=repeats)
    seen = np.concatenate([sampler.indices(step)[1] for step in range(4)])  # one epoch: 8 samples
    assert sorted(seen.tolist()) == [0, 1, 2, 3, 4, 4, 4, 5]
    damaged = np.concatenate([sampler.batch(step)[0] for step in range(4)])
    fours = damaged[seen == 4]
    assert not np.array_equal(fours[0], fours[1]) and not np.array_equal(fours[1], fours[2])
    np.testing.assert_array_equal(sampler.batch(3)[0], sampler.batch(3)[0])


def test_before_the_critic_starts_it_is_neither_run_nor_trained():
    gan = build_gan(replace(TINY, adv_start=10, critic_warmup=5))
    assert not gan.critic_on
    critic = [w.numpy().copy() for w in gan.discriminator.weights]
    sampler = BatchSampler(_crops(4), 4, seed=0, degrade=_blur)
    logs = gan.train_on_batch(*sampler.batch(0), return_dict=True)
    assert float(logs["d_loss"]) == 0.0 and float(logs["adv"]) == 0.0
    for a, b in zip(critic, gan.discriminator.weights):
        np.testing.assert_array_equal(a, b.numpy())
    gan.set_critic(True)
    gan.train_on_batch(*sampler.batch(1))
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(critic, gan.discriminator.weights))


def test_train_switches_phase_where_the_critic_starts_and_resumes_there(tmp_path, monkeypatch):
    from framefusion_video.training import trainer as training

    monkeypatch.setattr(training, "training_crops", lambda config: (_crops(8), np.ones(8, np.int64)))
    config = replace(TINY, adv_start=3, critic_warmup=1, out_dir=str(tmp_path / "run"), max_steps=2, seed=1)
    training.train(config)
    gan = build_gan(config)
    assert load_checkpoint(gan, tmp_path / "run") == 2
    critic = [w.numpy().copy() for w in gan.discriminator.weights]
    assert not np.any(gan.d_optimizer.iterations.numpy())  # the critic has not been trained yet
    training.train(replace(config, max_steps=4), resume=True)
    load_checkpoint(gan, tmp_path / "run")
    assert int(gan.batches.numpy()) == 4 and int(gan.d_optimizer.iterations.numpy()) == 2
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(critic, gan.discriminator.weights))


def test_train_visits_batches_in_order(tmp_path, monkeypatch):
    # Batch i is the sampler's batch i: fit must not shuffle them (keras would also list every
    # index of an open-ended phase first: memory that grows with the length of the run).
    from framefusion_video.training import trainer as training

    monkeypatch.setattr(training, "training_crops", lambda config: (_crops(8), np.ones(8, np.int64)))
    seen: list[int] = []
    item = training.TrainingBatches.__getitem__
    monkeypatch.setattr(training.TrainingBatches, "__getitem__",
                        lambda self, index: seen.append(self.start + index) or item(self, index))
    training.train(replace(TINY, adv_start=100, out_dir=str(tmp_path / "run"), max_steps=24))
    order = list(dict.fromkeys(seen))  # keras reads the first batches once more for their shapes
    assert sorted(order) == list(range(24))
    assert max(abs(step - k) for k, step in enumerate(order)) <= 2  # two threads make them, in order


def test_a_span_generator_trains_on_shrunk_crops_and_exports(tmp_path, monkeypatch):
    from framefusion_video.training import trainer as training
    from framefusion_video.restore.inference import load_restorer
    from framefusion_video.training.span import SpanConfig

    monkeypatch.setattr(training, "training_crops", lambda config: (_crops(8), np.ones(8, np.int64)))
    config = replace(TINY, span=SpanConfig(scale=2, channels=8, blocks=1, input_size=16), adv_start=1,
                     critic_warmup=0, out_dir=str(tmp_path / "run"), max_steps=2)
    training.train(config)
    path = export_generator(tmp_path / "run", tmp_path / "sr.keras")
    model = keras.models.load_model(path, compile=False, safe_mode=True)
    assert model.input_shape == model.output_shape == (None, None, None, 3)  # any size: a window per face
    wide = keras.models.load_model(export_generator(tmp_path / "run", tmp_path / "sr24.keras", tflite=False,
                                                    input_size=24), compile=False)
    assert wide.input_shape == (None, 24, 24, 3) and wide.output_shape == (None, 48, 48, 3)
    x = np.random.default_rng(3).random((2, 24, 24, 3), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), wide.predict(x, verbose=0), atol=1e-6)  # one network
    lite = load_restorer(path.with_suffix(".tflite"))
    assert (lite.crop_size, lite.scale) == (None, 2)
    for shape in ((1, 24, 24, 3), (2, 10, 14, 3), (1, 24, 24, 3)):  # resized as the windows come
        y = np.random.default_rng(4).random(shape, dtype=np.float32)
        np.testing.assert_allclose(lite.restore(y), model.predict(y, verbose=0), atol=1e-4)
    with pytest.raises(ValueError, match="gives 64 px crops, training uses 32"):
        replace(TINY, span=SpanConfig(scale=4, channels=8, blocks=1, input_size=16))


def test_a_span_restorer_trains_on_full_size_crops(tmp_path, monkeypatch):
    from framefusion_video.training import trainer as training
    from framefusion_video.training.span import SpanConfig

    monkeypatch.setattr(training, "training_crops", lambda config: (_crops(8), np.ones(8, np.int64)))
    config = replace(TINY, span=SpanConfig(scale=1, channels=8, blocks=1, input_size=32, unshuffle=4),
                     out_dir=str(tmp_path / "run"), max_steps=2)
    training.train(config)
    model = keras.models.load_model(export_generator(tmp_path / "run", tmp_path / "r.keras", tflite=False),
                                    compile=False)
    # Exported for windows of any size (sides multiples of its unshuffle), or of one size if asked.
    assert model.input_shape == model.output_shape == (None, None, None, 3)
    assert model.predict(np.zeros((1, 24, 40, 3), np.float32), verbose=0).shape == (1, 24, 40, 3)
    assert np.abs(model.get_layer("residual").get_weights()[0]).max() > 0  # it learnt a correction
    fixed = keras.models.load_model(export_generator(tmp_path / "run", tmp_path / "r64.keras", tflite=False,
                                                     input_size=64), compile=False)
    assert fixed.input_shape == (None, 64, 64, 3)
    with pytest.raises(ValueError, match="not a multiple of unshuffle 4"):
        export_generator(tmp_path / "run", tmp_path / "r30.keras", tflite=False, input_size=30)


def test_ffv_train_rejects_what_a_resume_cannot_change(face_folder, tmp_path):
    from click.testing import CliRunner

    from framefusion_video.cli import main

    for extra in (["--span", "4"], ["--extra", str(face_folder)], ["--clean-prob", "0.3"]):
        result = CliRunner().invoke(main, ["train", str(face_folder), "--out", str(tmp_path), "--resume", *extra])
        assert result.exit_code == 2 and "a resumed run keeps its own" in result.output
    both = CliRunner().invoke(main, ["train", str(face_folder), "--out", str(tmp_path), "--clean-prob", "0.6",
                                     "--single-prob", "0.6"])
    assert both.exit_code == 2 and "at most 1" in both.output
