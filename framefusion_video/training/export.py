"""A training run turned into a generator file: the checkpoint's (or the mean of its last
snapshots') weights, saved as ``.keras`` and converted for LiteRT (what ``ffv restore`` runs)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from framefusion_video.base.errors import FfvError
from framefusion_video.base.outputs import atomic_path, check_new_file, os_reason
from framefusion_video.training.checkpoints import average_snapshots, load_checkpoint, read_run_record, snapshot_paths

log = logging.getLogger(__name__)

#: The suffixes Keras saves a model under (``keras.Model.save``).
MODEL_SUFFIXES = (".keras", ".h5")


def export_generator(out_dir: str | os.PathLike, model_path: str | os.PathLike, *, tflite: bool = True,
                     average: int = 0, snapshot: int | None = None, input_size: int | None = None) -> Path:
    """Write the generator of the checkpoint in ``out_dir`` as a ``.keras`` file and, with
    ``tflite``, its LiteRT conversion beside it (same name, ``.tflite``: what ``ffv restore`` runs).

    With ``average`` = K > 0 the weights are the mean of the run's last K snapshots
    (``snapshot_every``) instead of the checkpoint's; with ``snapshot`` = N, those of the snapshot
    taken at batch N (e.g. to compare a run before and after its critic joined). A SPAN network
    (``--span 1|2|4``) is fully convolutional: it is exported for inputs of any size (what ``ffv
    restore`` gives it: a window sized to each face, enlarged at ``--upscale 2|4``), or of
    ``input_size`` px."""
    model_path = Path(model_path)
    check_export_paths(out_dir, model_path, tflite)
    record = read_run_record(out_dir)

    from framefusion_video.restore.inference import export_tflite
    from framefusion_video.training.trainer import TrainConfig, build_gan

    config = TrainConfig.from_dict(record["config"])
    paths = snapshot_paths(out_dir)[-average:] if average > 0 else []
    if snapshot is not None:
        if average:
            raise ValueError("give average or snapshot, not both")
        paths = [p for p in snapshot_paths(out_dir) if p.name == f"step_{snapshot:07d}.npz"]
        if not paths:
            raise FfvError(out_dir, f"no snapshot taken at batch {snapshot} "
                                    f"(snapshots: {', '.join(p.stem[5:].lstrip('0') for p in snapshot_paths(out_dir)) or 'none'})")
    if len(paths) < average:
        raise FfvError(out_dir, f"{len(paths)} snapshots to average, {average} asked "
                                "(train with --snapshot-every N to keep them)")
    gan = build_gan(config)
    if paths:  # the snapshots replace every generator weight: the checkpoint's are not needed
        average_snapshots(gan.generator, paths)
        log.info("weights of %d snapshot(s): %s .. %s", len(paths), paths[0].name, paths[-1].name)
    else:
        load_checkpoint(gan, out_dir)
    generator = gan.generator
    if input_size is not None and config.span is None:
        raise FfvError(out_dir, "only a SPAN (--span 1, 2 or 4) run can be exported at another input size")
    if config.span is not None:
        from framefusion_video.training.span import resize_span

        generator = resize_span(generator, config.span, input_size)
    try:
        with atomic_path(model_path) as tmp:
            generator.save(tmp)
        if tflite:
            export_tflite(generator, model_path.with_suffix(".tflite"))
    except OSError as exc:
        raise FfvError(model_path, f"cannot write the model ({os_reason(exc)})") from exc
    return model_path


def check_model_suffix(model_path: Path) -> None:
    """Raise FfvError when Keras cannot save a model under ``model_path``'s suffix
    (``MODEL_SUFFIXES``): checked before the work, which would otherwise fail only at the end."""
    if model_path.suffix.lower() not in MODEL_SUFFIXES:
        raise FfvError(model_path, f"a model is saved as {' or '.join(MODEL_SUFFIXES)}; "
                                   f"name the output {model_path.stem or 'model'}.keras")


def check_export_paths(out_dir: str | os.PathLike, model_path: Path, tflite: bool) -> None:
    """Raise FfvError, before any work, when the model file (and its ``.tflite`` twin) cannot be
    written at ``model_path`` or would replace a file of the run in ``out_dir``, or when Keras cannot
    save a model under its suffix (``MODEL_SUFFIXES``): that would fail only after the work."""
    check_model_suffix(model_path)
    run = [Path(out_dir) / name for name in ("checkpoint.json", "checkpoint.npz")]
    for path in [model_path] + ([model_path.with_suffix(".tflite")] if tflite else []):
        check_new_file(path, "model", run)
