"""Training state on disk: checkpoints that resume a run exactly, weight snapshots, and export.

A checkpoint is ``checkpoint.npz`` (weights and optimiser state of both networks, and the batch
counter) plus ``checkpoint.json`` (the step and the run's ``TrainConfig``); the data stream is a
pure function of the seed and the step (:class:`~framefusion_video.dataset.BatchSampler`), so
nothing else is needed to continue. Snapshots hold the generator's weights alone, for
``ffv export --average``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .training import RestorationGAN, TrainConfig

log = logging.getLogger(__name__)


def _named_arrays(group: str, variables) -> dict[str, np.ndarray]:
    """``{"<group>/0000": array, ...}``: the key format of checkpoints and snapshots."""
    return {f"{group}/{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}


def _state_groups(gan: "RestorationGAN") -> dict[str, list]:
    return {"g": gan.generator.weights, "d": gan.discriminator.weights,
            "og": gan.g_optimizer.variables, "od": gan.d_optimizer.variables}


def save_checkpoint(gan: "RestorationGAN", out_dir: str | os.PathLike, step: int,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``checkpoint.npz`` + ``checkpoint.json`` atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "checkpoint.npz"
    tmp = out_dir / "checkpoint.tmp.npz"
    arrays = {k: a for g, vs in _state_groups(gan).items() for k, a in _named_arrays(g, vs).items()}
    arrays["batches"] = np.asarray(int(gan.batches.numpy()))
    np.savez(tmp, **arrays)
    meta = {"step": int(step), "config": gan.cfg.to_dict(), "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
            **(extra or {})}
    (out_dir / "checkpoint.tmp.json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)
    os.replace(out_dir / "checkpoint.tmp.json", out_dir / "checkpoint.json")
    return path


def load_checkpoint(gan: "RestorationGAN", out_dir: str | os.PathLike) -> int:
    """Restore weights, optimiser state and the batch counter from ``out_dir``; returns the step."""
    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "checkpoint.json").read_text())
    with np.load(out_dir / "checkpoint.npz") as data:
        for g, variables in _state_groups(gan).items():
            for i, v in enumerate(variables):
                v.assign(data[f"{g}/{i:04d}"])
        gan.batches.assign(int(data["batches"]))
    return int(meta["step"])


def read_checkpoint_config(out_dir: str | os.PathLike) -> "TrainConfig":
    """The ``TrainConfig`` a run in ``out_dir`` was saved with."""
    from .training import TrainConfig

    return TrainConfig.from_dict(json.loads((Path(out_dir) / "checkpoint.json").read_text())["config"])


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


def export_generator(out_dir: str | os.PathLike, model_path: str | os.PathLike, *, tflite: bool = True,
                     average: int = 0) -> Path:
    """Write the generator of the checkpoint in ``out_dir`` as a ``.keras`` file and, with
    ``tflite``, its LiteRT conversion beside it (same name, ``.tflite``: what ``ffv restore`` runs).

    With ``average`` = K > 0 the weights are the mean of the run's last K snapshots
    (``snapshot_every``) instead of the checkpoint's."""
    from .errors import FfvError
    from .inference import export_tflite
    from .training import build_gan

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
