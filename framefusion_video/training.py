"""``ffv train``: the generator trained as a PatchGAN GAN on synthetically damaged aligned faces.

Losses: Charbonnier + (1 - SSIM) + a small non-saturating adversarial term from a PatchGAN critic
regularised with a lazy R1 gradient penalty (+ optionally per-image log-MSE, the PSNR that
``ffv eval`` averages). Checkpoints hold everything needed to resume exactly:
weights and optimiser state of both networks and the step (the data stream is a pure function of
the seed and the step, see :class:`~framefusion_video.dataset.BatchSampler`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Collection

import numpy as np

from .model import DiscriminatorConfig, GeneratorConfig

log = logging.getLogger(__name__)


#: What a resume may change; the model, data and losses stay as saved.
RUN_LENGTH_SETTINGS = ("max_steps", "max_minutes", "checkpoint_minutes", "lr_scale", "snapshot_every")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in each checkpoint."""

    data_dir: str = ""
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
    # default: at 0.05 it helped single kinds but made mixed damage worse (models/README.md,
    # "Phase 10").
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
    init_from: str | None = None  # a generator .keras file whose weights start a new run (fine-tuning)
    lr_scale: float = 1.0  # multiplies both learning rates from the start (or the resume) on: a late decay
    seed: int = 0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        # Runs saved before these settings existed trained without them.
        data = {"psnr_weight": 0.0, "init_from": None, **data}
        data["generator"] = GeneratorConfig.from_dict(data["generator"])
        data["discriminator"] = DiscriminatorConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                       for k, v in data["discriminator"].items()})
        return cls(**data)


def charbonnier(x, y, eps: float = 1e-3):
    """Mean robust L1 distance."""
    import tensorflow as tf

    return tf.reduce_mean(tf.sqrt(tf.square(x - y) + eps * eps))


def log_mse(x, y, eps: float = 1e-10):
    """Mean over the batch of each image's log10(MSE + eps): -PSNR/10 for images in [0, 1].

    ``eps`` caps a perfect image at 100 dB, as ``evaluation.PSNR_CAP_DB`` does.
    """
    import tensorflow as tf

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
    import keras

    from .errors import FfvError

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


def build_gan(config: TrainConfig):
    """The compiled :class:`RestorationGAN` (generator, critic and both optimisers)."""
    import keras
    import tensorflow as tf

    from .model import build_discriminator, build_generator

    class RestorationGAN(keras.Model):
        """Generator + PatchGAN critic; ``train_step`` on (damaged, clean) returns named losses."""

        def __init__(self, generator, discriminator, cfg: TrainConfig):
            super().__init__()
            self.generator = generator
            self.discriminator = discriminator
            self.cfg = cfg
            self.batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches")
            names = ("g_loss", "pixel", "ssim", "psnr", "adv", "d_loss", "r1")
            self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

        def compile(self, g_optimizer, d_optimizer):
            super().compile()
            self.g_optimizer = g_optimizer
            self.d_optimizer = d_optimizer

        @property
        def metrics(self):
            return list(self.trackers.values())

        def call(self, inputs, training=False):
            return self.generator(inputs, training=training)

        def train_step(self, data):
            damaged, clean, _ = keras.utils.unpack_x_y_sample_weight(data)
            cfg = self.cfg
            adv_on = tf.cast(self.batches >= cfg.adv_start, tf.float32)
            with tf.GradientTape() as tape:
                restored = self.generator(damaged, training=True)
                pixel = charbonnier(restored, clean)
                ssim = 1.0 - tf.reduce_mean(tf.image.ssim(restored, clean, max_val=1.0))
                lmse = log_mse(restored, clean)
                fake_logits = self.discriminator(restored, training=True)
                adv = tf.reduce_mean(tf.nn.softplus(-fake_logits))
                g_loss = pixel + cfg.ssim_weight * ssim + cfg.psnr_weight * lmse + adv_on * cfg.adv_weight * adv
            g_grads = tape.gradient(g_loss, self.generator.trainable_variables)
            self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables))

            do_r1 = tf.cast(tf.equal(self.batches % cfg.r1_every, 0), tf.float32)

            def critic_step():
                with tf.GradientTape() as tape:
                    with tf.GradientTape() as r1_tape:
                        r1_tape.watch(clean)
                        real_logits = self.discriminator(clean, training=True)
                        real_sum = tf.reduce_sum(real_logits)
                    real_grads = r1_tape.gradient(real_sum, clean)
                    r1 = tf.reduce_mean(tf.reduce_sum(tf.square(real_grads), axis=[1, 2, 3]))
                    fake_logits = self.discriminator(tf.stop_gradient(restored), training=True)
                    d_adv = (tf.reduce_mean(tf.nn.softplus(fake_logits))
                             + tf.reduce_mean(tf.nn.softplus(-real_logits)))
                    d_loss = d_adv + do_r1 * cfg.r1_every * 0.5 * cfg.r1_gamma * r1
                d_grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
                self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
                return d_adv, r1

            # Before the critic matters it is not trained: that halves the cost of early batches.
            d_adv, r1 = tf.cond(self.batches >= cfg.adv_start - cfg.critic_warmup, critic_step,
                                lambda: (tf.constant(0.0), tf.constant(0.0)))
            self.batches.assign_add(1)

            for name, value in (("g_loss", g_loss), ("pixel", pixel), ("ssim", ssim), ("psnr", -10.0 * lmse), ("adv", adv),
                                ("d_loss", d_adv), ("r1", r1)):
                self.trackers[name].update_state(value)
            return {name: t.result() for name, t in self.trackers.items()}

    generator = build_generator(replace(config.generator))
    # The residual gate stays at a gain of 1 here and is fitted afterwards (`ffv fit-gate`): trained
    # jointly it shut the correction off for most faces within 500 batches, and a shut gate passes
    # no gradient back to the rest of the network.
    if config.generator.gate:
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
    return gan


# --- checkpoints -------------------------------------------------------------------------------

def _named_arrays(group: str, variables) -> dict[str, np.ndarray]:
    """``{"<group>/0000": array, ...}``: the key format of checkpoints and snapshots."""
    return {f"{group}/{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}


def _state_arrays(gan) -> dict[str, np.ndarray]:
    groups = {
        "g": gan.generator.weights,
        "d": gan.discriminator.weights,
        "og": gan.g_optimizer.variables,
        "od": gan.d_optimizer.variables,
    }
    arrays = {k: a for g, vs in groups.items() for k, a in _named_arrays(g, vs).items()}
    arrays["batches"] = np.asarray(int(gan.batches.numpy()))
    return arrays


def save_checkpoint(gan, out_dir: str | os.PathLike, step: int, extra: dict[str, Any] | None = None) -> Path:
    """Write ``checkpoint.npz`` + ``checkpoint.json`` atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "checkpoint.npz"
    tmp = out_dir / "checkpoint.tmp.npz"
    np.savez(tmp, **_state_arrays(gan))
    meta = {"step": int(step), "config": gan.cfg.to_dict(), "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
            **(extra or {})}
    (out_dir / "checkpoint.tmp.json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)
    os.replace(out_dir / "checkpoint.tmp.json", out_dir / "checkpoint.json")
    return path


def load_checkpoint(gan, out_dir: str | os.PathLike) -> int:
    """Restore weights, optimiser state and the batch counter from ``out_dir``; returns the step."""
    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "checkpoint.json").read_text())
    with np.load(out_dir / "checkpoint.npz") as data:
        groups = {"g": gan.generator.weights, "d": gan.discriminator.weights,
                  "og": gan.g_optimizer.variables, "od": gan.d_optimizer.variables}
        for g, variables in groups.items():
            for i, v in enumerate(variables):
                v.assign(data[f"{g}/{i:04d}"])
        gan.batches.assign(int(data["batches"]))
    return int(meta["step"])


def save_snapshot(generator, out_dir: str | os.PathLike, step: int) -> Path:
    """Write the generator's weights alone to ``out_dir/snapshots/step_NNNNNNN.npz`` (atomically)."""
    folder = Path(out_dir) / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:07d}.npz"
    tmp = folder / f"step_{step:07d}.tmp.npz"
    np.savez(tmp, **_named_arrays("g", generator.weights))
    os.replace(tmp, path)
    return path


def snapshot_paths(out_dir: str | os.PathLike) -> list[Path]:
    """The snapshots of a run, oldest first."""
    return sorted(p for p in (Path(out_dir) / "snapshots").glob("step_*.npz") if not p.name.endswith(".tmp.npz"))


def average_snapshots(generator, paths: list[Path]) -> None:
    """Set ``generator``'s weights to the mean of the snapshots at ``paths`` (float64 sums)."""
    from .errors import FfvError

    total = [np.zeros(v.shape, np.float64) for v in generator.weights]
    for path in paths:
        with np.load(path) as data:
            if len(data.files) != len(total):
                raise FfvError(path, f"holds {len(data.files)} weights, the generator has {len(total)}")
            for i, acc in enumerate(total):
                array = data[f"g/{i:04d}"]
                if array.shape != acc.shape:
                    raise FfvError(path, f"weight {i} has shape {array.shape}, the generator's is {acc.shape}")
                acc += array
    for v, acc in zip(generator.weights, total):
        v.assign((acc / len(paths)).astype(v.dtype))


def read_checkpoint_config(out_dir: str | os.PathLike) -> TrainConfig:
    return TrainConfig.from_dict(json.loads((Path(out_dir) / "checkpoint.json").read_text())["config"])


def export_generator(out_dir: str | os.PathLike, model_path: str | os.PathLike, *, tflite: bool = True,
                     average: int = 0) -> Path:
    """Write the generator of the checkpoint in ``out_dir`` as a ``.keras`` file and, with
    ``tflite``, its LiteRT conversion beside it (same name, ``.tflite``: what ``ffv restore`` runs).

    With ``average`` = K > 0 the weights are the mean of the run's last K snapshots
    (``snapshot_every``) instead of the checkpoint's."""
    from .errors import FfvError
    from .inference import export_tflite

    config = read_checkpoint_config(out_dir)
    paths = snapshot_paths(out_dir)[-average:] if average > 0 else []
    if len(paths) < average:
        raise FfvError(out_dir, f"{len(paths)} snapshots to average, {average} asked "
                                "(train with --snapshot-every N to keep them)")
    gan = build_gan(config)
    if paths:  # the snapshots replace every generator weight: the checkpoint's are not needed
        average_snapshots(gan.generator, paths)
        log.info("averaged %d snapshots: %s .. %s", average, paths[0].name, paths[-1].name)
    else:
        load_checkpoint(gan, out_dir)
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = model_path.with_name(model_path.stem + ".tmp.keras")
    gan.generator.save(tmp)
    os.replace(tmp, model_path)
    if tflite:
        export_tflite(gan.generator, model_path.with_suffix(".tflite"))
    return model_path


# --- the loop ----------------------------------------------------------------------------------

def _prefetch(sampler, start: int, stop: int, depth: int = 3):
    """Batches ``start..stop-1`` made in a background thread (OpenCV releases the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    halt = threading.Event()

    def work():
        for step in range(start, stop):
            if halt.is_set():
                return
            q.put((step, sampler.batch(step)))
        q.put(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not None:
            yield item
    finally:
        halt.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _write_sample_grid(path: Path, damaged: np.ndarray, restored: np.ndarray, clean: np.ndarray, n: int = 6) -> None:
    import cv2

    rows = [np.concatenate([damaged[i], restored[i], clean[i]], axis=1) for i in range(min(n, len(clean)))]
    grid = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def validation_set(val_crops: np.ndarray, n: int, seed: int, degrade) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded (damaged, clean) set from the first ``n`` validation crops."""
    clean = val_crops[:n].astype(np.float32) / 255.0
    damaged = np.stack([degrade(c, np.random.default_rng([seed, 99991, i])) for i, c in enumerate(clean)])
    return damaged.astype(np.float32), clean


def train(config: TrainConfig, *, resume: bool = False, keep_saved: Collection[str] = ()) -> Path:
    """Train (or resume) until ``max_steps`` or ``max_minutes``; returns the checkpoint folder.

    On resume the saved configuration wins, except for the run-length settings, which come from
    ``config`` unless named in ``keep_saved`` (the CLI names those the user did not give, so a
    plain ``--resume`` continues with the run's own rate and snapshot interval)."""
    import tensorflow as tf

    from .dataset import BatchSampler, load_aligned_crops
    from .degradations import DegradationConfig, degrade, degrade_for_training

    out_dir = Path(config.out_dir)
    if resume:
        if not (out_dir / "checkpoint.json").is_file():
            from .errors import FfvError

            raise FfvError(out_dir, "no checkpoint to resume from")
        saved = read_checkpoint_config(out_dir)
        changes = {name: getattr(config, name) for name in RUN_LENGTH_SETTINGS if name not in keep_saved}
        config = replace(saved, **changes)
    crop = config.generator.crop_size
    deg_cfg = DegradationConfig()

    def train_damage(img, rng):
        return degrade_for_training(img, rng, deg_cfg, config.single_prob, config.clean_prob)

    def val_damage(img, rng):
        return degrade(img, rng, deg_cfg)

    train_crops = load_aligned_crops(config.data_dir, crop, limit=config.limit_images, progress=True)
    sampler = BatchSampler(train_crops, config.batch_size, config.seed, train_damage)
    val = None
    if config.val_dir:
        val_crops = load_aligned_crops(config.val_dir, crop, progress=True)
        val = validation_set(val_crops, config.val_images, config.seed, val_damage)

    gan = build_gan(config)
    step = load_checkpoint(gan, out_dir) if resume else 0
    if config.init_from and not resume:
        fresh = init_generator_from(gan.generator, config.init_from)
        log.info("generator initialised from %s; new layers: %s", config.init_from, ", ".join(fresh) or "none")
    gan.g_optimizer.learning_rate.assign(config.lr_g * config.lr_scale)
    gan.d_optimizer.learning_rate.assign(config.lr_d * config.lr_scale)
    log.info("training from step %d on %d faces (%s)", step, len(train_crops), config.data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        (out_dir / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1))
    writer = tf.summary.create_file_writer(str(out_dir / "logs"))
    curve = out_dir / "curve.jsonl"

    stop = config.max_steps if config.max_steps is not None else 10**9
    started = last_ckpt = time.monotonic()
    logs: dict[str, float] = {}
    for step_i, (damaged, clean) in _prefetch(sampler, step, stop):
        logs = {k: float(v) for k, v in gan.train_on_batch(damaged, clean, return_dict=True).items()}
        step = step_i + 1
        if step % 50 == 0:
            with writer.as_default(step=step):
                for k, v in logs.items():
                    tf.summary.scalar(f"train/{k}", v)
            log.info("step %d %s", step, " ".join(f"{k}={v:.4f}" for k, v in logs.items()))
        if val is not None and step % config.val_every == 0:
            restored = gan.generator.predict(val[0], batch_size=16, verbose=0)
            figures = {"step": step, "psnr": float(tf.reduce_mean(tf.image.psnr(restored, val[1], 1.0))),
                       "ssim": float(tf.reduce_mean(tf.image.ssim(restored, val[1], 1.0))),
                       "psnr_input": float(tf.reduce_mean(tf.image.psnr(val[0], val[1], 1.0))),
                       "ssim_input": float(tf.reduce_mean(tf.image.ssim(val[0], val[1], 1.0))),
                       "minutes": round((time.monotonic() - started) / 60, 2),
                       **{f"train_{k}": v for k, v in logs.items()}}
            with curve.open("a") as fh:
                fh.write(json.dumps(figures) + "\n")
            with writer.as_default(step=step):
                tf.summary.scalar("val/psnr", figures["psnr"])
                tf.summary.scalar("val/ssim", figures["ssim"])
            log.info("validation at step %d: PSNR %.2f dB (input %.2f), SSIM %.4f",
                     step, figures["psnr"], figures["psnr_input"], figures["ssim"])
        if config.snapshot_every and step % config.snapshot_every == 0:
            save_snapshot(gan.generator, out_dir, step)
        if step % config.sample_every == 0:
            restored = gan.generator.predict(damaged[:6], verbose=0)
            _write_sample_grid(out_dir / "samples" / f"step_{step:07d}.png", damaged, restored, clean)
        elapsed = (time.monotonic() - started) / 60
        out_of_time = config.max_minutes is not None and elapsed >= config.max_minutes
        if time.monotonic() - last_ckpt >= config.checkpoint_minutes * 60 or out_of_time:
            save_checkpoint(gan, out_dir, step, {"logs": logs})
            last_ckpt = time.monotonic()
        if out_of_time:
            break
    save_checkpoint(gan, out_dir, step, {"logs": logs})
    log.info("stopped at step %d; checkpoint in %s", step, out_dir)
    return out_dir
