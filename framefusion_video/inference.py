"""Loading the generator and restoring batches of aligned face crops on the CPU."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .errors import FfvError

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL_NAME = "ffv_generator.keras"


def default_model_path() -> Path:
    """The shipped generator: ``$FFV_MODEL`` if set, else ``models/ffv_generator.keras``."""
    env = os.environ.get("FFV_MODEL")
    return Path(env) if env else MODELS_DIR / DEFAULT_MODEL_NAME


class Restorer:
    """Runs a generator on batches of crops: float32 (N, S, S, 3) in [0, 1] -> the same.

    The batch is padded to a fixed size so the compiled graph is traced once.
    """

    def __init__(self, model, batch_size: int = 8) -> None:
        import tensorflow as tf

        self.model = model
        self.crop_size = int(model.input_shape[1])
        self.batch_size = max(1, int(batch_size))
        spec = tf.TensorSpec((self.batch_size, self.crop_size, self.crop_size, 3), tf.float32)
        self._run = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def restore(self, crops: np.ndarray) -> np.ndarray:
        """Restore ``crops`` (float32 (N, S, S, 3), [0, 1]); N may be any size, even 0."""
        crops = np.asarray(crops, dtype=np.float32)
        if crops.ndim != 4 or crops.shape[1:] != (self.crop_size, self.crop_size, 3):
            raise ValueError(f"expected crops of shape (N, {self.crop_size}, {self.crop_size}, 3), got {crops.shape}")
        out = np.empty_like(crops)
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), np.float32)])
            out[start:start + n] = self._run(chunk).numpy()[:n]
        return out


def load_generator(path: str | os.PathLike | None = None):
    """The Keras generator stored at ``path`` (default: the shipped model)."""
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        hint = " (the default weights ship in models/; pass --model PATH)" if path == default_model_path() else ""
        raise FfvError(path, f"model file not found{hint}")
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for a bad file; report it as one line
        raise FfvError(path, f"not a loadable ffv generator ({type(exc).__name__}: {exc})") from exc


def load_restorer(model_path: str | os.PathLike | None = None, batch_size: int = 8) -> Restorer:
    """A :class:`Restorer` around the generator at ``model_path`` (default: the shipped one)."""
    model = load_generator(model_path)
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise FfvError(model_path or default_model_path(), f"unexpected generator input shape {shape}")
    log.debug("loaded generator %s (%d px crops)", model_path or default_model_path(), shape[1])
    return Restorer(model, batch_size=batch_size)
