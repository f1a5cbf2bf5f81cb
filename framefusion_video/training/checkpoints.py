"""Training state on disk: checkpoints that resume a run exactly, and weight snapshots.

A checkpoint is ``checkpoint.npz`` (weights and optimiser state of both networks, and the batch
counter) plus ``checkpoint.json`` (the step and the run's ``TrainConfig``); the data stream is a
pure function of the seed and the step (:class:`~framefusion_video.data.dataset.BatchSampler`), so
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

from framefusion_video.base.outputs import atomic_path

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


def _named_arrays(group: str, variables) -> dict[str, np.ndarray]:
    """``{"<group>/0000": array, ...}``: the key format of checkpoints and snapshots."""
    return {f"{group}/{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}


def _state_groups(gan: keras.Model) -> dict[str, list]:
    return {"g": gan.generator.weights, "d": gan.discriminator.weights,
            "og": gan.g_optimizer.variables, "od": gan.d_optimizer.variables}


def save_checkpoint(gan: keras.Model, out_dir: str | os.PathLike, step: int,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``checkpoint.npz`` + ``checkpoint.json`` atomically into ``out_dir``.

    ``gan``: a ``training.RestorationGAN`` (its networks, optimisers, batch counter and ``cfg``)."""
    out_dir = Path(out_dir)
    path = out_dir / "checkpoint.npz"
    arrays = {k: a for g, vs in _state_groups(gan).items() for k, a in _named_arrays(g, vs).items()}
    arrays["batches"] = np.asarray(int(gan.batches.numpy()))
    meta = {"step": int(step), "config": gan.cfg.to_dict(), "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
            **(extra or {})}
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    with atomic_path(out_dir / "checkpoint.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    return path


def load_checkpoint(gan: keras.Model, out_dir: str | os.PathLike) -> int:
    """Restore weights, optimiser state and the batch counter from ``out_dir``; returns the step."""
    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "checkpoint.json").read_text())
    with np.load(out_dir / "checkpoint.npz") as data:
        for g, variables in _state_groups(gan).items():
            for i, v in enumerate(variables):
                v.assign(data[f"{g}/{i:04d}"])
        gan.batches.assign(int(data["batches"]))
    return int(meta["step"])


def read_run_record(out_dir: str | os.PathLike) -> dict[str, Any]:
    """``checkpoint.json`` of the run in ``out_dir``: its step and its ``TrainConfig`` as a dict
    (``training.TrainConfig.from_dict``).

    Raises:
        FfvError: naming the file, when it cannot be read or is not a checkpoint record.
    """
    from framefusion_video.base.errors import FfvError

    path = Path(out_dir) / "checkpoint.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FfvError(path, f"cannot read the run's checkpoint record ({exc.strerror or exc})") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise FfvError(path, f"not a valid checkpoint record, the file is damaged ({exc})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict) or "step" not in record:
        raise FfvError(path, "not a valid checkpoint record (no step or config in it)")
    return record


def save_snapshot(generator, out_dir: str | os.PathLike, step: int) -> Path:
    """Write the generator's weights alone to ``out_dir/snapshots/step_NNNNNNN.npz`` (atomically)."""
    path = Path(out_dir) / "snapshots" / f"step_{step:07d}.npz"
    with atomic_path(path) as tmp:
        np.savez(tmp, **_named_arrays("g", generator.weights))
    return path


def snapshot_paths(out_dir: str | os.PathLike) -> list[Path]:
    """The snapshots of a run, oldest first."""
    # Temporaries are hidden (".step_..."); "step_*.tmp.npz" are those of runs killed mid-write
    # by older versions.
    return sorted(p for p in (Path(out_dir) / "snapshots").glob("step_*.npz") if not p.name.endswith(".tmp.npz"))


def average_snapshots(generator, paths: list[Path]) -> None:
    """Set ``generator``'s weights to the mean of the snapshots at ``paths`` (float64 sums)."""
    from framefusion_video.base.errors import FfvError

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
