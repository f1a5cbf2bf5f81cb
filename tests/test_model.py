"""Generator and critic shapes, and the inference wrapper."""

from __future__ import annotations

import numpy as np
import pytest

from framefusion_video.training.model import (DiscriminatorConfig, GeneratorConfig, build_discriminator,
                                              build_generator, count_conv_flops)

TINY = GeneratorConfig(crop_size=32, widths=(8, 8, 16), blocks=(0, 1, 1), expansion=2)


def test_generator_keeps_shape_and_range():
    gen = build_generator(TINY)
    x = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    y = gen.predict(x, verbose=0)
    assert y.shape == x.shape and y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 1.0


def test_untrained_generator_is_identity():
    # The residual head is zero-initialised: training starts from "leave the face alone".
    gen = build_generator(TINY)
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(gen.predict(x, verbose=0), x, atol=1e-6)


def test_discriminator_is_patchwise():
    disc = build_discriminator(DiscriminatorConfig(crop_size=64, widths=(8, 16, 16, 16)))
    out = disc.predict(np.zeros((2, 64, 64, 3), np.float32), verbose=0)
    assert out.shape == (2, 8, 8, 1)


def test_generator_rejects_indivisible_crop():
    with pytest.raises(ValueError):
        build_generator(GeneratorConfig(crop_size=100))


def test_default_generator_is_light():
    # The generator's speed budget: well under a GFLOP per 128 px crop.
    assert count_conv_flops(build_generator(GeneratorConfig())) < 1.0e9


def test_restorer_pads_batches_and_keeps_order(tmp_path):
    from framefusion_video.restore.inference import KerasRestorer, load_restorer

    gen = build_generator(TINY)
    path = tmp_path / "g.keras"
    gen.save(path)
    restorer = load_restorer(path, batch_size=4)
    assert restorer.crop_size == 32
    x = np.random.default_rng(2).random((6, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(restorer.restore(x), gen.predict(x, verbose=0), atol=1e-5)
    assert restorer.restore(np.zeros((0, 32, 32, 3), np.float32)).shape == (0, 32, 32, 3)
    with pytest.raises(ValueError):
        KerasRestorer(gen, batch_size=2).restore(np.zeros((1, 16, 16, 3), np.float32))


def test_load_restorer_reports_bad_files(tmp_path):
    from framefusion_video.base.errors import FfvError
    from framefusion_video.restore.inference import load_restorer

    with pytest.raises(FfvError, match="not found"):
        load_restorer(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    with pytest.raises(FfvError, match="bad.keras"):
        load_restorer(bad)


def _perturbed_generator():
    # An untrained generator is the identity (zero-initialised head); perturb every weight so
    # that a conversion that lost or scrambled weights would show. Seeded: with whatever initial
    # weights earlier tests' draws leave, the perturbed gate could shut and make it the identity.
    import keras

    keras.utils.set_random_seed(0)
    gen = build_generator(TINY)
    rng = np.random.default_rng(0)
    gen.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in gen.get_weights()])
    return gen


def test_tflite_export_gives_the_keras_outputs(tmp_path):
    from framefusion_video.restore.inference import LiteRestorer, export_tflite, load_restorer

    gen = _perturbed_generator()
    path = export_tflite(gen, tmp_path / "g.tflite")
    restorer = load_restorer(path, batch_size=4)
    assert isinstance(restorer, LiteRestorer) and restorer.crop_size == 32
    x = np.random.default_rng(2).random((7, 32, 32, 3), dtype=np.float32)
    expected = gen.predict(x, verbose=0)
    assert np.abs(expected - x).mean() > 1e-3
    np.testing.assert_allclose(restorer.restore(x), expected, atol=1e-5)
    assert restorer.restore(np.zeros((0, 32, 32, 3), np.float32)).shape == (0, 32, 32, 3)
    with pytest.raises(ValueError):
        restorer.restore(np.zeros((1, 16, 16, 3), np.float32))
    # A batched interpreter: full batches of 4, then the rest one by one (no padding); same outputs.
    batched = LiteRestorer(path, batch_size=4)
    np.testing.assert_allclose(batched.restore(x), expected, atol=1e-5)
    assert batched._single is not None and batched._single is not batched._batched


def test_load_restorer_reports_bad_tflite_files(tmp_path):
    from framefusion_video.base.errors import FfvError
    from framefusion_video.restore.inference import load_restorer

    with pytest.raises(FfvError, match="missing.tflite.*not found"):
        load_restorer(tmp_path / "missing.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(FfvError, match="bad.tflite"):
        load_restorer(bad)


def test_shipped_tflite_matches_shipped_keras():
    # ffv restore runs the .tflite file and ffv train/eval the .keras one: they must be one model.
    from framefusion_video.restore.inference import DEFAULT_MODEL_NAME, KERAS_MODEL_NAME, load_restorer, shipped_weights_dir

    lite, full = shipped_weights_dir() / DEFAULT_MODEL_NAME, shipped_weights_dir() / KERAS_MODEL_NAME
    if not (lite.is_file() and full.is_file()):
        pytest.skip("shipped weights not present")
    x = np.random.default_rng(3).random((5, 128, 128, 3), dtype=np.float32)
    np.testing.assert_allclose(load_restorer(lite).restore(x), load_restorer(full).restore(x), atol=1e-4)


def test_restoring_with_litert_does_not_import_tensorflow(tmp_path):
    # The point of the .tflite model: start-up without TensorFlow's import (several seconds).
    import subprocess
    import sys

    from framefusion_video.restore.inference import export_tflite

    path = export_tflite(_perturbed_generator(), tmp_path / "g.tflite")
    code = ("import sys, numpy as np\n"
            "from framefusion_video.faces.detection import FaceDetector\n"
            "from framefusion_video.restore.inference import load_restorer\n"
            "FaceDetector().close()\n"
            f"load_restorer({str(path)!r}).restore(np.zeros((2, 32, 32, 3), np.float32))\n"
            "print('tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_mediapipe_import_defers_matplotlib_until_used():
    # mediapipe's drawing helpers import pyplot (0.45 s of start-up); ffv defers it to first use.
    import subprocess
    import sys

    code = ("import sys\n"
            "from framefusion_video.faces.detection import import_mediapipe\n"
            "mp = import_mediapipe()\n"
            "print('matplotlib' in sys.modules)\n"
            "print(callable(mp.solutions.drawing_utils.plt.figure), 'matplotlib.pyplot' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-2:] == ["False", "True True"]


def _set_gate(gen, gain: float) -> None:
    """Make the gate output ``gain`` for every input (its final layer's kernel zero, bias gain/4)."""
    layer = gen.get_layer("gate_logit")
    kernel, _ = layer.get_weights()
    layer.set_weights([np.zeros_like(kernel), np.full((1,), gain / 4.0, np.float32)])


def test_gate_at_zero_returns_the_input_bit_exact_and_scales_the_residual(tmp_path):
    from framefusion_video.restore.inference import export_tflite, load_restorer

    gen = _perturbed_generator()
    x = np.random.default_rng(5).random((3, 32, 32, 3), dtype=np.float32) * 0.5 + 0.25
    _set_gate(gen, 1.0)
    full = gen.predict(x, verbose=0)
    assert np.abs(full - x).mean() > 1e-3  # the residual is not trivially zero
    _set_gate(gen, 0.5)
    inside = (full > 0) & (full < 1)  # where the output clip did not act, the residual halves
    np.testing.assert_allclose(gen.predict(x, verbose=0)[inside], (x + 0.5 * (full - x))[inside], atol=1e-5)
    _set_gate(gen, -1.0)  # below zero: the ReLU makes the gain exactly 0
    np.testing.assert_array_equal(gen.predict(x, verbose=0), x)
    restorer = load_restorer(export_tflite(gen, tmp_path / "g.tflite"))
    np.testing.assert_array_equal(restorer.restore(x), x)


def test_configs_saved_before_the_gate_build_the_ungated_network():
    old = GeneratorConfig.from_dict({"crop_size": 32, "widths": [8, 8, 16], "blocks": [0, 1, 1], "expansion": 2})
    assert not old.gate and TINY.gate
    names = {layer.name for layer in build_generator(old).layers}
    assert "gated_residual" not in names and "gated_residual" in {layer.name for layer in build_generator(TINY).layers}
