"""``ffv fit-gate``: teach a trained generator when to leave a face alone.

The generator's residual gate (``model._gate``) scales its correction per face. Fitted here as a
steep step, it decides "restore" (gain 1) or "leave the face bit-identical" (gain 0): a face that
is already clean, or so mildly damaged that the network's correction costs more than it gains,
comes out as it went in. The rest of the network is frozen.

Fitting: damage training faces exactly as ``ffv train`` does, run the frozen network once, and
score each face's PSNR with and without its correction; the gate's small MLP (on the network's
own pooled features) is then fitted by logistic regression to "the correction helps", each face
weighted by how many dB the decision is worth over the number of faces of its category, so the
fit maximises the sum over categories (each kind of damage, and undamaged faces) of the mean
per-image PSNR that ``ffv eval`` reports.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from framefusion_video.base.outputs import atomic_path
from framefusion_video.data.degradations import KINDS, DegradationConfig, training_damage
from framefusion_video.evaluation.images import per_image_psnr

log = logging.getLogger(__name__)

#: Real video damage (``video_damage.aligned_pair``), scored instead of the synthetic kinds.
VIDEO = "video"
#: Categories of training damage: undamaged faces, each single kind, the mixed pipeline, and video.
CATEGORIES = ("clean",) + KINDS + (VIDEO,)


@dataclass(frozen=True)
class GateFitConfig:
    """How many damaged faces to score and how to fit the decision on them."""

    samples: int = 12000
    single_prob: float = 0.5  # the damage mix of ``ffv train`` (TrainConfig.single_prob, clean_prob)
    clean_prob: float = 0.1
    holdout: float = 0.2  # share of the faces kept out of the fit, to report its held-out effect
    epochs: int = 600
    learning_rate: float = 3e-3
    # Gain = clip(steepness x logit, 0, 1): exactly 0 or 1 unless |logit| < 1/steepness.
    steepness: float = 1000.0
    batch_size: int = 64
    seed: int = 0
    #: > 0: score the network on this many aligned video-damage pairs of the faces (the "restorer"
    #: mix of ``ffv train --video-damage``, drawn with seed + 1 so that none was a training pair),
    #: and half as many sharp ones through a light codec alone ("clean"), instead of the synthetic
    #: damage: what the pipeline meets.
    video_damage: int = 0
    #: With ``video_damage``: also score ``samples`` faces of the synthetic damage (``ffv eval``'s
    #: kinds), each kind a category of its own, so that the gate also leaves alone the kinds of
    #: damage the network makes worse.
    with_synthetic: bool = False


@dataclass
class GateData:
    """Per damaged face: the gate's input features, its category and its PSNR before and after
    the (ungated) correction."""

    features: np.ndarray  # float32 (N, F)
    category: np.ndarray  # str (N,), one of CATEGORIES
    psnr_input: np.ndarray  # float64 (N,), capped at PSNR_CAP_DB
    psnr_restored: np.ndarray


def gate_data(generator, crops: np.ndarray, config: GateFitConfig = GateFitConfig(),
              degradations: DegradationConfig = DegradationConfig()) -> GateData:
    """Damage ``config.samples`` faces of ``crops`` (uint8 aligned) and score the frozen ``generator``
    (a gated one, its gain ignored) on each."""
    if len(crops) == 0:
        raise ValueError("no faces to fit the gate on")
    probe = _probe(generator)
    rng = np.random.default_rng(config.seed)
    picks = rng.choice(len(crops), size=config.samples, replace=config.samples > len(crops))
    features, categories, p_in, p_out = [], [], [], []
    for start in range(0, config.samples, config.batch_size):
        batch = picks[start:start + config.batch_size]
        clean = crops[batch].astype(np.float32) / 255.0
        damaged = []
        for offset, img in enumerate(clean):
            face_rng = np.random.default_rng([config.seed, start + offset])
            category, img = training_damage(img, face_rng, degradations, config.single_prob, config.clean_prob)
            categories.append(category)
            damaged.append(img)
        _score(probe, np.stack(damaged).astype(np.float32), clean, features, p_in, p_out)
    return GateData(np.concatenate(features), np.array(categories), np.concatenate(p_in), np.concatenate(p_out))


def _probe(generator):
    """The gate's input features and the ungated correction of ``generator``, as one model."""
    import keras

    return keras.Model(generator.input, [generator.get_layer("gate_features").output,
                                         generator.get_layer("residual").output])


def _score(probe, damaged: np.ndarray, clean: np.ndarray, features: list, p_in: list, p_out: list) -> None:
    """Append one batch's gate features and PSNR without and with the correction."""
    feats, residual = probe.predict(damaged, verbose=0, batch_size=len(damaged))
    features.append(feats.astype(np.float32))
    p_in.append(per_image_psnr(damaged, clean))
    p_out.append(per_image_psnr(np.clip(damaged + residual, 0.0, 1.0), clean))


def pair_gate_data(generator, damaged: np.ndarray, clean: np.ndarray, batch_size: int = 64,
                   category: str = VIDEO) -> GateData:
    """Score the frozen ``generator`` on given (damaged, clean) uint8 crop pairs, all of ``category``."""
    probe = _probe(generator)
    features, p_in, p_out = [], [], []
    for start in range(0, len(damaged), batch_size):
        _score(probe, damaged[start:start + batch_size].astype(np.float32) / 255.0,
               clean[start:start + batch_size].astype(np.float32) / 255.0, features, p_in, p_out)
    return GateData(np.concatenate(features), np.full(len(damaged), category), np.concatenate(p_in),
                    np.concatenate(p_out))


def video_gate_data(generator, data_dir: str | os.PathLike, crop_size: int, config: GateFitConfig) -> GateData:
    """Score the frozen ``generator`` on ``config.video_damage`` aligned pairs of the restorer mix
    (category :data:`VIDEO`) and half as many of the "encoded" mix (category "clean") of
    ``data_dir``'s faces, drawn with seed + 1 (caches built if missing)."""
    from framefusion_video.data.video_damage import build_pair_cache, damage_mix, load_pair_cache

    parts = []
    for mix, n, category in (("restorer", config.video_damage, VIDEO), ("encoded", config.video_damage // 2, "clean")):
        cache = build_pair_cache(data_dir, 1, n, crop_size, seed=config.seed + 1, config=damage_mix(mix),
                                 progress=True, aligned=True)
        log.info("scoring the generator on %d %s pairs from %s", n, mix, cache)
        parts.append(pair_gate_data(generator, *load_pair_cache(cache, n), config.batch_size, category))
    return _joined(parts)


def _joined(parts: list[GateData]) -> GateData:
    """One :class:`GateData` of several, in order."""
    return GateData(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(GateData)))


def _split(n: int, config: GateFitConfig) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([config.seed, 1]).permutation(n)
    n_fit = n - int(round(config.holdout * n))
    return order[:n_fit], order[n_fit:]


def decision_weights(data: GateData, index: np.ndarray) -> np.ndarray:
    """Weight of each face in the fit: the dB its decision is worth, divided by the number of faces
    of its category (``ffv eval`` reports a mean per category), scaled to a mean of 1."""
    weights = np.abs(data.psnr_restored - data.psnr_input)[index].astype(np.float64)
    cats = data.category[index]
    for category in np.unique(cats):
        mask = cats == category
        weights[mask] /= mask.sum()
    return (weights * len(weights) / max(weights.sum(), 1e-12)).astype(np.float32)


def fit_gate(generator, data: GateData, config: GateFitConfig = GateFitConfig()) -> dict[str, dict[str, float]]:
    """Fit ``generator``'s gate layers in place on ``data``; returns, per category, the mean PSNR
    of the held-out faces for the input, the ungated and the gated network."""
    import keras
    import tensorflow as tf

    from framefusion_video.training.model import GATE_LOGIT_SCALE

    fit, held = _split(len(data.features), config)
    mean, std = data.features[fit].mean(0), data.features[fit].std(0) + 1e-6
    x = ((data.features - mean) / std).astype(np.float32)
    helps = (data.psnr_restored > data.psnr_input).astype(np.float32)
    weights = decision_weights(data, fit)

    hidden_layer = generator.get_layer("gate_hidden")
    keras.utils.set_random_seed(config.seed)
    hidden = keras.layers.Dense(hidden_layer.units, kernel_initializer="he_normal")
    act = keras.layers.LeakyReLU(0.1)  # as the network's gate (model._act)
    logit = keras.layers.Dense(1)

    def logits(inputs):
        return logit(act(hidden(inputs)))[:, 0]

    logits(x[:1])
    variables = hidden.trainable_variables + logit.trainable_variables
    optimizer = keras.optimizers.Adam(config.learning_rate)
    x_fit, y_fit, w_fit = tf.constant(x[fit]), tf.constant(helps[fit]), tf.constant(weights)
    for _ in range(config.epochs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(w_fit * tf.nn.sigmoid_cross_entropy_with_logits(y_fit, logits(x_fit)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    # Fold the standardisation into the first layer and the steepness into the last.
    kernel, bias = hidden.get_weights()
    hidden_layer.set_weights([kernel / std[:, None], bias - (mean / std) @ kernel])
    kernel2, bias2 = logit.get_weights()
    scale = config.steepness / GATE_LOGIT_SCALE
    generator.get_layer("gate_logit").set_weights([kernel2 * scale, bias2 * scale])

    gain = np.clip(config.steepness * logits(x[held]).numpy(), 0.0, 1.0)
    gated = np.where(gain > 0.5, data.psnr_restored[held], data.psnr_input[held])
    report = {}
    for category in CATEGORIES:
        mask = data.category[held] == category
        if mask.any():
            report[category] = {"n": int(mask.sum()), "input": float(data.psnr_input[held][mask].mean()),
                                "ungated": float(data.psnr_restored[held][mask].mean()),
                                "gated": float(gated[mask].mean()), "restored_share": float((gain[mask] > 0.5).mean())}
    return report


def fit_gate_file(model_path: str | os.PathLike, data_dir: str | os.PathLike, output: str | os.PathLike,
                  config: GateFitConfig = GateFitConfig(), *, tflite: bool = True) -> tuple[Path, dict]:
    """``ffv fit-gate``: load the generator at ``model_path`` (gated or not), fit its gate on the
    faces of ``data_dir`` and write the gated generator to ``output`` (+ ``.tflite``); ``output``
    may be ``model_path`` itself: it is replaced only once the new file is complete."""
    import keras

    from framefusion_video.data.dataset import load_aligned_crops
    from framefusion_video.base.errors import FfvError
    from framefusion_video.training.export import check_model_suffix
    from framefusion_video.restore.inference import export_tflite
    from framefusion_video.training.model import build_generator, generator_config_of
    from framefusion_video.training.trainer import init_generator_from

    check_model_suffix(Path(output))
    try:
        shape = generator_config_of(keras.models.load_model(model_path, compile=False))
    except (OSError, ValueError) as exc:
        raise FfvError(model_path, f"cannot load a generator: {exc}") from exc
    # The network keeps its own shape (widths, blocks); it gains a gate if it had none.
    generator = build_generator(replace(shape, gate=True))
    init_generator_from(generator, model_path)
    parts = []
    if config.video_damage:
        parts.append(video_gate_data(generator, data_dir, shape.crop_size, config))
    if not config.video_damage or config.with_synthetic:
        crops = load_aligned_crops(data_dir, shape.crop_size, progress=True)
        if len(crops) == 0:
            raise FfvError(data_dir, "no faces found to fit the gate on")
        log.info("scoring the generator on %d damaged faces from %s", config.samples, data_dir)
        parts.append(gate_data(generator, crops, config))
    data = _joined(parts)
    report = fit_gate(generator, data, config)
    output = Path(output)
    with atomic_path(output) as tmp:
        generator.save(tmp)
        if tflite:
            export_tflite(generator, output.with_suffix(".tflite"))
    return output, report
