"""``ffv train``: the generator trained as a PatchGAN GAN on synthetically damaged aligned faces.

Losses: Charbonnier + (1 - SSIM) + a small non-saturating adversarial term from a PatchGAN critic
regularised with a lazy R1 gradient penalty (+ optionally per-image log-MSE, the PSNR that
``ffv eval`` averages). Checkpoints hold everything needed to resume exactly:
weights and optimiser state of both networks and the step (the data stream is a pure function of
the seed and the step, see :class:`~framefusion_video.data.dataset.BatchSampler`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Collection

import keras
import numpy as np
import tensorflow as tf

from framefusion_video.base.errors import FfvError
from framefusion_video.base.outputs import append_line, check_folder_can_be_made, os_reason, write_atomic, write_image
from framefusion_video.base.pixels import to_uint8
from framefusion_video.data.dataset import BatchSampler, PairSampler
from framefusion_video.training.checkpoints import load_checkpoint, read_run_record, save_checkpoint, save_snapshot
from framefusion_video.training.model import DiscriminatorConfig, GeneratorConfig
from framefusion_video.training.span import SpanConfig

log = logging.getLogger(__name__)


#: The sub-folders a run writes into (snapshots, sample grids, TensorBoard logs).
RUN_SUBFOLDERS = ("snapshots", "samples", "logs")
#: What a resume may change; the model, data and losses stay as saved.
RUN_LENGTH_SETTINGS = ("max_steps", "max_minutes", "checkpoint_minutes", "lr_scale", "snapshot_every")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in each checkpoint."""

    data_dir: str = ""
    # More folders of faces, each crop of them seen `extra_repeat` times per epoch: a small set of
    # sharp, varied faces beside a large one of a single look.
    extra_dirs: tuple[str, ...] = ()
    extra_repeat: int = 1
    val_dir: str | None = None
    out_dir: str = "runs/ffv"
    batch_size: int = 16
    accum: int = 1  # gradient accumulation: optimiser steps every `accum` batches
    lr_g: float = 5e-4
    # Critic rate: at 1e-3 a fresh critic stayed at 2 ln 2 on restored-vs-clean UTKFace crops for
    # 150 batches; at 2e-4 its loss fell (1.386 -> 1.335).
    lr_d: float = 2e-4
    ssim_weight: float = 0.2
    # Mean per-image log10(MSE), i.e. -PSNR/10: what `ffv eval` averages. Unlike L1 it weighs an
    # error on a nearly clean face as much as the same relative error on a ruined one. Off by
    # default: at 0.05 it helped single kinds of damage but made mixed damage worse.
    psnr_weight: float = 0.0
    adv_weight: float = 0.003
    adv_start: int = 4000  # batches of reconstruction only before the critic's opinion counts
    critic_warmup: int = 300  # the critic starts training this many batches before adv_start
    # R1 weight for [0, 1] images: with 1.0 the critic could not separate restored from clean
    # crops at all (its loss stayed at 2 ln 2), so the adversarial term did nothing.
    r1_gamma: float = 0.01
    r1_every: int = 4  # lazy R1: penalty every N batches, scaled by N
    single_prob: float = 0.5  # share of training samples with one kind of damage alone
    clean_prob: float = 0.1  # share of undamaged (identity) pairs: a good face must come out as it went in
    max_steps: int | None = None
    max_minutes: float | None = None
    checkpoint_minutes: float = 5.0
    # Every N batches keep the generator's weights in snapshots/ (0 = never), so that
    # `ffv export --average K` can ship the mean of the last K: late in a run the weights wander
    # around a basin, and their mean sits nearer its centre than any one of them.
    snapshot_every: int = 0
    val_every: int = 250
    val_images: int = 64
    sample_every: int = 1000
    limit_images: int | None = None  # use only the first N training photos (quick runs, tests)
    # Train on this many pairs of data_dir's photos through real video damage
    # (``video_damage``: a clip blurred, reduced, noised per frame, through x264/x265, cut around the
    # face), validated on as many of val_dir's as ``val_images``; 0 = synthetic damage on aligned crops.
    video_damage: int = 0
    video_damage_mix: str = "full"  # its damage: ``video_damage.damage_mix``'s name
    init_from: str | None = None  # a generator .keras file whose weights start a new run (fine-tuning)
    lr_scale: float = 1.0  # multiplies both learning rates from the start (or the resume) on: a late decay
    seed: int = 0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    # A SPAN super-resolution generator instead of the U-Net: damaged crops are shrunk to
    # crop_size / scale px and it restores them to crop_size (``span.input_size`` follows).
    span: SpanConfig | None = None
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self) -> None:
        if not (0.0 <= self.clean_prob and 0.0 <= self.single_prob and self.clean_prob + self.single_prob <= 1.0):
            raise ValueError(f"clean_prob + single_prob must be at most 1, got {self.clean_prob} + {self.single_prob}")
        if self.span is not None and self.span.output_size != self.generator.crop_size:
            raise ValueError(f"SPAN x{self.span.scale} from {self.span.input_size} px gives "
                             f"{self.span.output_size} px crops, training uses {self.generator.crop_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        # Runs saved before these settings existed trained without them.
        data = {"psnr_weight": 0.0, "init_from": None, "video_damage": 0, "video_damage_mix": "full", **data}
        data["extra_dirs"] = tuple(data.get("extra_dirs", ()))
        data["span"] = SpanConfig.from_dict(data["span"]) if data.get("span") else None
        data["generator"] = GeneratorConfig.from_dict(data["generator"])
        data["discriminator"] = DiscriminatorConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                       for k, v in data["discriminator"].items()})
        return cls(**data)


def charbonnier(x, y, eps: float = 1e-3):
    """Mean robust L1 distance."""
    return tf.reduce_mean(tf.sqrt(tf.square(x - y) + eps * eps))


def log_mse(x, y, eps: float = 1e-10):
    """Mean over the batch of each image's log10(MSE + eps): -PSNR/10 for images in [0, 1].

    ``eps`` caps a perfect image at 100 dB, as ``evaluation.PSNR_CAP_DB`` does.
    """
    mse = tf.reduce_mean(tf.square(x - y), axis=[1, 2, 3])
    return tf.reduce_mean(tf.math.log(mse + eps)) / tf.math.log(10.0)


def init_generator_from(generator, model_path: str | os.PathLike) -> list[str]:
    """Copy the weights of the generator saved at ``model_path`` into ``generator``, layer by layer
    by name; returns the names of the layers with weights that kept their initialisation.

    This is how a run starts from the shipped weights (``ffv train --init-from``), including
    when the new network has layers the old one lacks: a gate, or more inverted residual blocks
    (``--blocks``), which start as the identity (their projection is zero-initialised), so the
    larger network starts from the old one's outputs. The gate is never copied.
    """
    from framefusion_video.base.errors import FfvError

    try:
        source = keras.models.load_model(model_path, compile=False)
    except (OSError, ValueError) as exc:
        raise FfvError(model_path, f"cannot load a generator: {exc}") from exc
    fresh, copied = [], 0
    for layer in generator.layers:
        if not layer.weights:
            continue
        # A fitted gate shuts some faces off; training holds the gain at 1 (``build_gan``), so the
        # new run's gate keeps its initial weights and ``ffv fit-gate`` fits it again afterwards.
        if layer.name.startswith("gate_"):
            fresh.append(layer.name)
            continue
        try:
            src = source.get_layer(layer.name)
        except ValueError:
            fresh.append(layer.name)
            continue
        shapes = [tuple(w.shape) for w in src.weights], [tuple(w.shape) for w in layer.weights]
        if shapes[0] != shapes[1]:
            raise FfvError(model_path, f"layer {layer.name} has weights {shapes[0]}, this network needs {shapes[1]}")
        layer.set_weights(src.get_weights())
        copied += 1
    if not copied:
        raise FfvError(model_path, "no layer of this generator matches the network being trained")
    return fresh


def _gaussian_taps(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def batch_ssim(x, y, max_val: float = 1.0):
    """Per-image SSIM of two (N, H, W, C) batches: what ``tf.image.ssim`` gives (11-tap gaussian,
    sigma 1.5, K1 0.01, K2 0.03, valid window), computed with two 1-D passes over the five local
    statistics stacked along the channels rather than 11x11 depthwise filters, whose gradients
    are slow on a CPU."""
    channels = x.shape[-1]
    taps = tf.constant(_gaussian_taps())
    stats = tf.concat([x, y, x * x, y * y, x * y], axis=-1)
    width = 5 * channels
    vertical = tf.tile(tf.reshape(taps, (-1, 1, 1, 1)), (1, 1, width, 1))
    horizontal = tf.tile(tf.reshape(taps, (1, -1, 1, 1)), (1, 1, width, 1))
    blurred = tf.nn.depthwise_conv2d(stats, vertical, (1, 1, 1, 1), "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, horizontal, (1, 1, 1, 1), "VALID")
    mx, my, mxx, myy, mxy = tf.split(blurred, 5, axis=-1)
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    luminance = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    contrast = (2 * cxy + c2) / (vx + vy + c2)
    return tf.reduce_mean(luminance * contrast, axis=[1, 2, 3])


class RestorationGAN(keras.Model):
    """Generator + PatchGAN critic; ``train_step`` on (damaged, clean) returns named losses.

    Two phases, fixed when the step function is traced (:meth:`set_critic`): before the critic
    starts, only the reconstruction losses are computed; after, the critic is trained too and its
    opinion enters the generator's loss from ``adv_start`` on. A phase that skips the critic
    entirely (rather than a ``tf.cond`` inside one graph) is what lets TensorFlow spread the
    generator's step over every core.
    """

    LOSSES = ("g_loss", "pixel", "ssim", "psnr", "adv", "d_loss", "r1")

    def __init__(self, generator, discriminator, cfg: TrainConfig, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.cfg = cfg
        self.batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches")
        self.trackers = {n: keras.metrics.Mean(name=n) for n in self.LOSSES}
        self.critic_on = False

    def compile(self, g_optimizer, d_optimizer):  # noqa: D102 (keras' own)
        # XLA (jit_compile="auto" may pick it) was 25x slower on a CPU for this network.
        super().compile(jit_compile=False)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    def set_critic(self, on: bool) -> None:
        """Switch between the phases; the next step traces the new phase's graph."""
        if on != self.critic_on:
            self.critic_on = on
            self.train_function = None
            self.make_train_function(force=True)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def _generator_losses(self, restored, clean):
        cfg = self.cfg
        pixel = charbonnier(restored, clean)
        ssim_loss = 1.0 - tf.reduce_mean(batch_ssim(restored, clean))
        lmse = log_mse(restored, clean)
        loss = pixel + cfg.ssim_weight * ssim_loss + cfg.psnr_weight * lmse
        return loss, {"pixel": pixel, "ssim": ssim_loss, "psnr": -10.0 * lmse}

    def _critic_step(self, restored, clean):
        cfg = self.cfg
        do_r1 = tf.cast(tf.equal(self.batches % cfg.r1_every, 0), tf.float32)
        with tf.GradientTape() as tape:
            with tf.GradientTape() as r1_tape:
                r1_tape.watch(clean)
                real_logits = self.discriminator(clean, training=True)
                real_sum = tf.reduce_sum(real_logits)
            real_grads = r1_tape.gradient(real_sum, clean)
            r1 = tf.reduce_mean(tf.reduce_sum(tf.square(real_grads), axis=[1, 2, 3]))
            fake_logits = self.discriminator(tf.stop_gradient(restored), training=True)
            d_adv = tf.reduce_mean(tf.nn.softplus(fake_logits)) + tf.reduce_mean(tf.nn.softplus(-real_logits))
            d_loss = d_adv + do_r1 * cfg.r1_every * 0.5 * cfg.r1_gamma * r1
        d_grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
        return d_adv, r1

    def train_step(self, data):
        damaged, clean, _ = keras.utils.unpack_x_y_sample_weight(data)
        cfg = self.cfg
        zero = tf.constant(0.0)
        with tf.GradientTape() as tape:
            restored = self.generator(damaged, training=True)
            g_loss, parts = self._generator_losses(restored, clean)
            adv = zero
            if self.critic_on:
                fake_logits = self.discriminator(restored, training=True)
                adv = tf.reduce_mean(tf.nn.softplus(-fake_logits))
                adv_on = tf.cast(self.batches >= cfg.adv_start, tf.float32)
                g_loss = g_loss + adv_on * cfg.adv_weight * adv
        g_grads = tape.gradient(g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables))
        d_adv, r1 = self._critic_step(restored, clean) if self.critic_on else (zero, zero)
        self.batches.assign_add(1)
        values = {"g_loss": g_loss, **parts, "adv": adv, "d_loss": d_adv, "r1": r1}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}

    def test_step(self, data):
        damaged, clean, _ = keras.utils.unpack_x_y_sample_weight(data)
        restored = self.generator(damaged, training=False)
        g_loss, parts = self._generator_losses(restored, clean)
        for name, value in {"g_loss": g_loss, **parts}.items():
            self.trackers[name].update_state(value)
        return {name: self.trackers[name].result() for name in ("g_loss", "pixel", "ssim", "psnr")}


def critic_starts(config: TrainConfig) -> int:
    """The batch from which the critic is trained (``critic_warmup`` batches before ``adv_start``)."""
    return max(0, config.adv_start - config.critic_warmup)


def build_gan(config: TrainConfig) -> RestorationGAN:
    """The compiled :class:`RestorationGAN` (generator, critic and both optimisers), in the phase of
    batch 0 (call ``set_critic`` for another)."""
    from framefusion_video.training.model import build_discriminator, build_generator
    from framefusion_video.training.span import build_span

    generator = build_span(config.span) if config.span else build_generator(replace(config.generator))
    # The residual gate stays at a gain of 1 here and is fitted afterwards (`ffv fit-gate`): trained
    # jointly it shut the correction off for most faces within 500 batches, and a shut gate passes
    # no gradient back to the rest of the network.
    if config.generator.gate and not config.span:
        for name in ("gate_hidden", "gate_logit"):
            generator.get_layer(name).trainable = False
    discriminator = build_discriminator(replace(config.discriminator, crop_size=config.generator.crop_size))
    gan = RestorationGAN(generator, discriminator, config)
    accum = config.accum if config.accum > 1 else None
    gan.compile(
        # Clipping the global norm keeps one extreme batch from wrecking the generator.
        g_optimizer=keras.optimizers.Adam(config.lr_g, beta_1=0.9, beta_2=0.99, global_clipnorm=1.0,
                                          gradient_accumulation_steps=accum),
        d_optimizer=keras.optimizers.Adam(config.lr_d, beta_1=0.5, beta_2=0.99, gradient_accumulation_steps=accum),
    )
    gan.g_optimizer.build(generator.trainable_variables)
    gan.d_optimizer.build(discriminator.trainable_variables)
    gan.critic_on = critic_starts(config) <= 0
    return gan


# --- data --------------------------------------------------------------------------------------

class TrainingBatches(keras.utils.PyDataset):
    """Batches ``start .. stop-1`` of a :class:`BatchSampler` (or :class:`PairSampler`) for ``fit``,
    made by two threads (OpenCV releases the GIL) while the step runs."""

    def __init__(self, sampler: BatchSampler | PairSampler, start: int, stop: int, workers: int = 2):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
        self.sampler, self.start, self.stop = sampler, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int):
        return self.sampler.batch(self.start + index)


def as_output_size(damaged: np.ndarray, size: int) -> np.ndarray:
    """``damaged`` crops at the generator's output size: super-resolution inputs scaled up by
    bicubic interpolation (the baseline a restorer must beat), other crops as they are."""
    if damaged.shape[1] == size:
        return damaged
    from framefusion_video.evaluation.images import upscale_bicubic

    return upscale_bicubic(damaged, size // damaged.shape[1])


def validation_set(val_crops: np.ndarray, n: int, seed: int, degrade) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded (damaged, clean) set from the first ``n`` validation crops."""
    clean = val_crops[:n].astype(np.float32) / 255.0
    damaged = np.stack([degrade(c, np.random.default_rng([seed, 99991, i])) for i, c in enumerate(clean)])
    return damaged.astype(np.float32), clean


def video_damage_pairs(config: TrainConfig) -> tuple[PairSampler, tuple[np.ndarray, np.ndarray] | None]:
    """The sampler of ``config.video_damage`` pairs of ``data_dir``'s photos and the validation set
    (the centred patches of ``val_images`` pairs of ``val_dir``'s), their caches built first if
    missing (minutes; resumable).

    A super-resolution network's pairs are windows stored at 1.5 x its input side, so that each
    gives many patches; the U-Net's are aligned crops of its size, cut as the pipeline cuts faces
    for it (``video_damage.aligned_pair``).
    """
    from framefusion_video.data.video_damage import build_pair_cache, damage_mix, load_pair_cache

    scale = config.span.scale if config.span else 1
    patch = config.span.input_size if config.span else config.generator.crop_size
    aligned = config.span is None
    stored = patch if aligned else patch * 3 // 2

    def pairs(folder: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        cache = build_pair_cache(folder, scale, n, stored, seed=config.seed, config=damage_mix(config.video_damage_mix),
                                 progress=True, aligned=aligned)
        log.info("%d video-damage pairs of %s (x%d) from %s", n, folder, scale, cache)
        return load_pair_cache(cache, n)

    sampler = PairSampler(*pairs(config.data_dir, config.video_damage), config.batch_size, config.seed, patch)
    val = None
    if config.val_dir:
        val = PairSampler(*pairs(config.val_dir, config.val_images), 1, config.seed, patch).centre(config.val_images)
    return sampler, val


def training_crops(config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 crops of every training folder, how many times each appears per epoch)."""
    from framefusion_video.data.dataset import load_aligned_crops

    crop = config.generator.crop_size
    folders = [(config.data_dir, 1), *[(d, config.extra_repeat) for d in config.extra_dirs]]
    crops, repeats = [], []
    for folder, repeat in folders:
        found = load_aligned_crops(folder, crop, limit=config.limit_images, progress=True)
        crops.append(found)
        repeats.append(np.full(len(found), repeat, np.int64))
        log.info("%d faces from %s (x%d per epoch)", len(found), folder, repeat)
    return np.concatenate(crops), np.concatenate(repeats)


# --- callbacks ---------------------------------------------------------------------------------

def _write_sample_grid(path: Path, damaged: np.ndarray, restored: np.ndarray, clean: np.ndarray, n: int = 6) -> None:
    """A PNG of up to ``n`` rows of damaged | restored | clean crops (float32 [0, 1])."""
    rows = [np.concatenate([damaged[i], restored[i], clean[i]], axis=1) for i in range(min(n, len(clean)))]
    write_image(path, to_uint8(np.concatenate(rows, axis=0)))


class _StepCallback(keras.callbacks.Callback):
    """A callback that knows the run's batch count (the model's ``batches``, which resumes)."""

    def step(self) -> int:
        return int(self.model.batches.numpy())


class ScalarLog(_StepCallback):
    """Every ``every`` batches: the mean losses since the last write, to TensorBoard and the log."""

    def __init__(self, writer, every: int = 50):
        super().__init__()
        self.writer, self.every = writer, every
        self.latest: dict[str, float] = {}

    def on_train_batch_end(self, batch, logs=None):
        step = self.step()
        if step % self.every:
            return
        self.latest = {k: float(v) for k, v in (logs or {}).items()}
        with self.writer.as_default(step=step):
            for k, v in self.latest.items():
                tf.summary.scalar(f"train/{k}", v)
        log.info("step %d %s", step, " ".join(f"{k}={v:.4f}" for k, v in self.latest.items()))
        self.model.reset_metrics()


class Validation(_StepCallback):
    """Before a new run's first batch and every ``every`` batches: PSNR/SSIM on the fixed validation
    set, to ``curve.jsonl`` and TensorBoard; every ``sample_every`` batches a grid of
    (damaged | restored | clean) crops."""

    def __init__(self, val: tuple[np.ndarray, np.ndarray], out_dir: Path, writer, every: int, sample_every: int,
                 scalars: ScalarLog, started: float):
        super().__init__()
        self.val, self.out_dir, self.writer = val, out_dir, writer
        self.every, self.sample_every, self.scalars, self.started = every, sample_every, scalars, started
        self.baseline = as_output_size(val[0], val[1].shape[1])

    def on_train_begin(self, logs=None):
        # A new run's starting point (e.g. the --init-from network) is the curve's first figure.
        if self.every and self.step() == 0:
            self.validate(0)

    def on_train_batch_end(self, batch, logs=None):
        step = self.step()
        if self.every and step % self.every == 0:
            self.validate(step)
        if self.sample_every and step % self.sample_every == 0:
            restored = self.model.generator.predict(self.val[0][:6], verbose=0)
            _write_sample_grid(self.out_dir / "samples" / f"step_{step:07d}.png", self.baseline, restored, self.val[1])

    def validate(self, step: int) -> None:
        """Append the figures at ``step`` to ``curve.jsonl`` (and TensorBoard, and the log)."""
        restored = self.model.generator.predict(self.val[0], batch_size=16, verbose=0)
        figures = {"step": step, "psnr": float(tf.reduce_mean(tf.image.psnr(restored, self.val[1], 1.0))),
                   "ssim": float(tf.reduce_mean(tf.image.ssim(restored, self.val[1], 1.0))),
                   "psnr_input": float(tf.reduce_mean(tf.image.psnr(self.baseline, self.val[1], 1.0))),
                   "ssim_input": float(tf.reduce_mean(tf.image.ssim(self.baseline, self.val[1], 1.0))),
                   "minutes": round((time.monotonic() - self.started) / 60, 2),
                   **{f"train_{k}": v for k, v in self.scalars.latest.items()}}
        append_line(self.out_dir / "curve.jsonl", json.dumps(figures), "learning curve")
        with self.writer.as_default(step=step):
            tf.summary.scalar("val/psnr", figures["psnr"])
            tf.summary.scalar("val/ssim", figures["ssim"])
        log.info("validation at step %d: PSNR %.2f dB (input %.2f), SSIM %.4f",
                 step, figures["psnr"], figures["psnr_input"], figures["ssim"])


class Snapshots(_StepCallback):
    """Every ``every`` batches, the generator's weights to ``snapshots/`` (``ffv export --average``)."""

    def __init__(self, out_dir: Path, every: int):
        super().__init__()
        self.out_dir, self.every = out_dir, every

    def on_train_batch_end(self, batch, logs=None):
        if self.every and self.step() % self.every == 0:
            save_snapshot(self.model.generator, self.out_dir, self.step())


class Checkpoints(_StepCallback):
    """A checkpoint every ``minutes`` and when training stops; stops training after
    ``max_minutes`` (counted from ``started``)."""

    def __init__(self, out_dir: Path, minutes: float, max_minutes: float | None, started: float, scalars: ScalarLog):
        super().__init__()
        self.out_dir, self.minutes, self.max_minutes = out_dir, minutes, max_minutes
        self.started, self.scalars = started, scalars
        self.last = time.monotonic()

    def save(self) -> None:
        """Write the checkpoint; a full disk or a folder gone read-only is an FfvError naming the run."""
        try:
            save_checkpoint(self.model, self.out_dir, self.step(), {"logs": self.scalars.latest})
        except OSError as exc:
            raise FfvError(self.out_dir, f"cannot write the checkpoint ({os_reason(exc)})") from exc
        self.last = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        out_of_time = self.max_minutes is not None and (now - self.started) / 60 >= self.max_minutes
        if out_of_time:
            self.model.stop_training = True
        if out_of_time or now - self.last >= self.minutes * 60:
            self.save()


# --- the run -----------------------------------------------------------------------------------

def train(config: TrainConfig, *, resume: bool = False, keep_saved: Collection[str] = ()) -> Path:
    """Train (or resume) until ``max_steps`` or ``max_minutes``; returns the checkpoint folder.

    On resume the saved configuration wins, except for the run-length settings, which come from
    ``config`` unless named in ``keep_saved`` (the CLI names those the user did not give, so a
    plain ``--resume`` continues with the run's own rate and snapshot interval)."""
    from framefusion_video.data.degradations import DegradationConfig, degrade, degrade_for_training
    from framefusion_video.evaluation.images import downscale_area

    out_dir = Path(config.out_dir)
    check_folder_can_be_made(out_dir, "run folder")
    for sub in RUN_SUBFOLDERS:  # a link there would have files replaced in another folder
        if (out_dir / sub).is_symlink():
            raise FfvError(out_dir / sub, "is a link, which ffv train never writes through; remove it")
    if resume:
        if not (out_dir / "checkpoint.json").is_file():
            raise FfvError(out_dir, "no checkpoint to resume from")
        saved = TrainConfig.from_dict(read_run_record(out_dir)["config"])
        changes = {name: getattr(config, name) for name in RUN_LENGTH_SETTINGS if name not in keep_saved}
        config = replace(saved, **changes)
    deg_cfg = DegradationConfig()

    def small(img):
        # Super-resolution input: the damaged crop reduced by area, as ffv eval's SR rows reduce it.
        return img if config.span is None or config.span.is_restorer else downscale_area(img[None], config.span.scale)[0]

    def train_damage(img, rng):
        return small(degrade_for_training(img, rng, deg_cfg, config.single_prob, config.clean_prob))

    def val_damage(img, rng):
        return small(degrade(img, rng, deg_cfg))

    if config.video_damage:
        sampler, val = video_damage_pairs(config)
        faces = len(sampler.low)
    else:
        crops, repeats = training_crops(config)
        sampler = BatchSampler(crops, config.batch_size, config.seed, train_damage, repeats=repeats)
        faces = len(crops)
        val = None
        if config.val_dir:
            from framefusion_video.data.dataset import load_aligned_crops

            val_crops = load_aligned_crops(config.val_dir, config.generator.crop_size, progress=True)
            val = validation_set(val_crops, config.val_images, config.seed, val_damage)

    gan = build_gan(config)
    step = load_checkpoint(gan, out_dir) if resume else 0
    if config.init_from and not resume:
        fresh = init_generator_from(gan.generator, config.init_from)
        log.info("generator initialised from %s; new layers: %s", config.init_from, ", ".join(fresh) or "none")
    gan.g_optimizer.learning_rate.assign(config.lr_g * config.lr_scale)
    gan.d_optimizer.learning_rate.assign(config.lr_d * config.lr_scale)
    log.info("training from step %d on %d faces", step, faces)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        try:
            write_atomic(out_dir / "train_config.json", json.dumps(config.to_dict(), indent=1).encode("utf-8"))
        except OSError as exc:
            raise FfvError(out_dir, f"cannot write the run folder ({os_reason(exc)})") from exc

    writer = tf.summary.create_file_writer(str(out_dir / "logs"))
    started = time.monotonic()
    scalars = ScalarLog(writer)
    checkpoints = Checkpoints(out_dir, config.checkpoint_minutes, config.max_minutes, started, scalars)
    callbacks = [scalars, Snapshots(out_dir, config.snapshot_every), checkpoints]
    if val is not None:
        callbacks.insert(1, Validation(val, out_dir, writer, config.val_every, config.sample_every, scalars, started))
    for callback in callbacks:
        callback.set_model(gan)
    stop = config.max_steps if config.max_steps is not None else 10**9
    critic_from = critic_starts(config)
    while step < stop and not gan.stop_training:
        # One fit per phase: the critic's phase traces a graph of its own.
        phase_end = critic_from if step < critic_from else stop
        gan.set_critic(step >= critic_from)
        # shuffle=False: batch i is the sampler's batch i, in order (and keras would list every index).
        gan.fit(TrainingBatches(sampler, step, min(phase_end, stop)), epochs=1, verbose=0, callbacks=callbacks,
                shuffle=False)
        step = int(gan.batches.numpy())
    checkpoints.save()
    log.info("stopped at step %d; checkpoint in %s", step, out_dir)
    return out_dir
