"""Loading the generator and restoring batches of aligned face crops on the CPU.

The generator ships twice: ``ffv_generator.keras`` (what training writes and fine-tuning loads) and
``ffv_generator.tflite``, the same weights converted for the LiteRT runtime. ``ffv restore`` uses the
``.tflite`` file by default: LiteRT's XNNPACK kernels are as fast as TensorFlow's on these small
convolutions, its outputs match the Keras model's within 1e-4 per pixel (the tolerance
``tests/test_model.py`` checks), and it loads in a fraction of a second,
where importing TensorFlow alone takes several (most of a short clip's run time).
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

import numpy as np

from framefusion_video.base.errors import FfvError, read_head
from framefusion_video.base.outputs import write_atomic
from framefusion_video.restore.config import UPSCALE_FACTORS

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "ffv_generator.tflite"
KERAS_MODEL_NAME = "ffv_generator.keras"
#: The shipped super-resolution generator of each ``--upscale`` factor, run on faces when no
#: --model is given (:func:`shipped_sr_restorer`): two ×2 networks, ``--upscale 4`` enlarging its
#: one's output by bicubic ×2 (:class:`EnlargedRestorer`). ``ffv_span2_sized`` learnt faces of
#: every size a clip holds: better on small faces, worse than ``ffv_span2`` on large real ones at
#: ×2 (``models/README.md``), so ``--upscale 2`` gives it the small windows alone
#: (:data:`SMALL_WINDOW_MODEL`).
SR_MODEL_NAMES = {2: "ffv_span2.tflite", 4: "ffv_span2_sized.tflite"}
#: At ``--upscale 2``, the network for windows whose longer side is at most the given input px
#: (faces up to about 50 px before enlarging): on the synthetic clip of ``pixabay/val`` faces
#: reduced by 2 it gains +0.72 dB over bicubic, against +0.58 with ``ffv_span2`` alone; on three
#: real clips kept for choosing it is level (+0.30 against +0.31), where larger windows lose (a
#: 130 px face −0.43 dB from 80 px windows up; ``docs/what-we-tried.md``).
SMALL_WINDOW_MODEL = {2: ("ffv_span2_sized.tflite", 64)}
#: The ×2 network of ``--upscale 1``'s soft faces (``soft_faces.py``): the full-mix run, which learnt to
#: deblur as it enlarges (blur on 70% of its clips), where the shipped ``--upscale 2`` networks
#: learnt to keep sharp faces sharp.
SOFT_FACE_MODEL = "ffv_span2_deblur.tflite"


def shipped_weights_dir() -> Path:
    """The folder of the shipped generator files: the package data ``framefusion_video/weights``,
    wherever the package is installed (a wheel, an editable checkout)."""
    return Path(os.fspath(resources.files("framefusion_video.weights")))


def default_model_path() -> Path:
    """The shipped generator: ``$FFV_MODEL`` if set, else ``ffv_generator.tflite`` in
    :func:`shipped_weights_dir`, or the ``.keras`` file when no ``.tflite`` conversion is there."""
    env = os.environ.get("FFV_MODEL")
    if env:
        return Path(env)
    folder = shipped_weights_dir()
    lite, full = folder / DEFAULT_MODEL_NAME, folder / KERAS_MODEL_NAME
    return lite if lite.is_file() or not full.is_file() else full


def default_sr_model_path(scale: int) -> Path | None:
    """The shipped ×``scale`` super-resolution generator, or None where none ships."""
    name = SR_MODEL_NAMES.get(int(scale))
    path = shipped_weights_dir() / name if name else None
    return path if path is not None and path.is_file() else None


def shipped_sr_restorer(upscale: int, batch_size: int = 8, threads: int | None = None):
    """The shipped super-resolution restorer of ``upscale`` (:data:`SR_MODEL_NAMES`): at ×2 the ×2
    network, with :data:`SMALL_WINDOW_MODEL`'s for small windows (:class:`RoutedRestorer`); at ×4
    a ×2 network enlarged by bicubic (:class:`EnlargedRestorer`). None where none ships."""
    path = default_sr_model_path(upscale)
    if path is None:
        return None
    restorer = load_restorer(path, batch_size=batch_size, threads=threads)
    small = SMALL_WINDOW_MODEL.get(int(upscale))
    if small is not None:
        restorer = RoutedRestorer(load_restorer(shipped_weights_dir() / small[0], batch_size=batch_size,
                                                threads=threads), restorer, small[1])
    if 1 < restorer.scale < upscale:
        restorer = EnlargedRestorer(restorer, upscale)
    return restorer


def _as_crops(crops: np.ndarray, crop_size: int | None) -> np.ndarray:
    """``crops`` as float32 (N, crop_size, crop_size, 3), or (N, H, W, 3) when ``crop_size`` is
    None (a fully convolutional network); ValueError for any other shape."""
    crops = np.asarray(crops, dtype=np.float32)
    if crop_size is None:
        if crops.ndim != 4 or crops.shape[3] != 3 or min(crops.shape[1:3]) < 1:
            raise ValueError(f"expected RGB crops of shape (N, H, W, 3), got {crops.shape}")
    elif crops.ndim != 4 or crops.shape[1:] != (crop_size, crop_size, 3):
        raise ValueError(f"expected crops of shape (N, {crop_size}, {crop_size}, 3), got {crops.shape}")
    return crops


def _pad_and_run(crops: np.ndarray, crop_size: int, batch_size: int, run, scale: int = 1) -> np.ndarray:
    """``run`` over ``crops`` in fixed-size batches (the last one zero-padded); same order.
    Outputs are ``scale`` times the crops' side."""
    crops = _as_crops(crops, crop_size)
    out = np.empty((len(crops), crop_size * scale, crop_size * scale, 3), np.float32)
    for start in range(0, len(crops), batch_size):
        chunk = crops[start:start + batch_size]
        n = len(chunk)
        if n < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]), np.float32)])
        out[start:start + n] = run(np.ascontiguousarray(chunk))[:n]
    return out


#: The input side at which the scale of a generator that takes inputs of any size is read.
_PROBE_SIDE = 16


def _scale_of(path, input_side: int, output_shape: tuple[int, ...]) -> int:
    """The generator's ``scale`` (output side / input side: one of ``config.UPSCALE_FACTORS``) from
    its input side and output shape (N, H, W, 3)."""
    side = int(output_shape[1]) if len(output_shape) == 4 else 0
    if len(output_shape) != 4 or output_shape[1] != output_shape[2] or output_shape[3] != 3 \
            or side % input_side or side // input_side not in UPSCALE_FACTORS:
        raise FfvError(path, f"not an ffv generator (input side {input_side}, output {list(output_shape)})")
    return side // input_side


class KerasRestorer:
    """Runs a generator on batches of crops: float32 (N, S, S, 3) in [0, 1] -> (N, scale * S,
    scale * S, 3).

    The batch is padded to a fixed size so the compiled graph is traced once. ``crop_size`` is the
    input side S, ``scale`` the output side over S (1 for a same-size restorer); a fully
    convolutional super-resolution network has ``crop_size`` None and takes inputs of any size.
    """

    def __init__(self, model, batch_size: int = 8) -> None:
        import tensorflow as tf

        self.model = model
        side = model.input_shape[1]
        self.crop_size = None if side is None else int(side)
        probe = tuple(int(v) for v in model.compute_output_shape((1, _PROBE_SIDE, _PROBE_SIDE, 3))) \
            if side is None else tuple(model.output_shape)
        self.scale = _scale_of("the model", self.crop_size or _PROBE_SIDE, probe)
        self.batch_size = max(1, int(batch_size))
        shape = (None, None, None, 3) if side is None else (self.batch_size, side, side, 3)
        self._run = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec(shape, tf.float32)])

    def restore(self, crops: np.ndarray) -> np.ndarray:
        """Restore ``crops`` (float32 (N, S, S, 3), [0, 1]); N may be any size, even 0."""
        if self.crop_size is None:
            crops = _as_crops(crops, None)
            return self._run(crops).numpy() if len(crops) else crops[:, :0, :0]
        return _pad_and_run(crops, self.crop_size, self.batch_size, lambda x: self._run(x).numpy(), self.scale)


class LiteRestorer:
    """Runs a ``.tflite`` generator with LiteRT (XNNPACK) without importing TensorFlow.

    Same contract as :class:`KerasRestorer`, but nothing is padded: ``batch_size`` crops go through
    the interpreter at a time and the rest of a call one by one, through a second, batch-1
    interpreter, so that no work is spent on padding. A crop comes out the same whatever the
    batch (``tests/test_restore.py``). A file exported for inputs of any size (a super-resolution
    network: ``crop_size`` None) runs each call's inputs as they come, its interpreter resized to
    their shape. ``threads``: XNNPACK threads, default one per core. Not thread-safe: one per thread.
    """

    def __init__(self, path: str | os.PathLike, batch_size: int = 1, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads or os.cpu_count() or 1
        self.batch_size = max(1, int(batch_size))
        self._batched, self.crop_size, self.scale = self._open(self.batch_size)
        self._single = self._batched if self.batch_size == 1 else None

    def _open(self, batch: int):
        """(interpreter, input index, output index) of ``self.path`` for ``batch`` crops, the crop
        size and the scale."""
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
            inp = interpreter.get_input_details()
            outp = interpreter.get_output_details()
        except (ValueError, RuntimeError) as exc:
            raise FfvError(self.path, f"not a loadable TensorFlow Lite model ({exc})") from exc
        shape = tuple(int(v) for v in inp[0]["shape_signature"]) if len(inp) == 1 else ()
        if len(outp) != 1 or len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise FfvError(self.path, f"not an ffv generator (input {[d['shape'].tolist() for d in inp]}, "
                                      f"output {[d['shape'].tolist() for d in outp]})")
        side = None if shape[1] < 0 else shape[1]
        interpreter.resize_tensor_input(inp[0]["index"], [batch, side or _PROBE_SIDE, side or _PROBE_SIDE, 3])
        interpreter.allocate_tensors()
        output_shape = tuple(int(v) for v in outp[0]["shape"])
        if side is None:  # a sizeless output's shape is known once the network has run
            probe = np.zeros((batch, _PROBE_SIDE, _PROBE_SIDE, 3), np.float32)
            output_shape = self._invoke((interpreter, inp[0]["index"], outp[0]["index"]), probe).shape
        scale = _scale_of(self.path, side or _PROBE_SIDE, output_shape)
        return (interpreter, inp[0]["index"], outp[0]["index"]), side, scale

    @staticmethod
    def _invoke(runner, batch: np.ndarray) -> np.ndarray:
        interpreter, inp, outp = runner
        interpreter.set_tensor(inp, batch)
        interpreter.invoke()
        return interpreter.get_tensor(outp)

    @staticmethod
    def _resized(runner, shape: tuple[int, ...]):
        """``runner`` with its input resized to ``shape`` (reallocated only when it changes)."""
        interpreter, inp, _ = runner
        if tuple(interpreter.get_input_details()[0]["shape"]) != tuple(shape):
            interpreter.resize_tensor_input(inp, list(shape))
            interpreter.allocate_tensors()
        return runner

    def restore(self, crops: np.ndarray) -> np.ndarray:
        """Restore ``crops`` (float32 (N, S, S, 3), [0, 1]); N may be any size, even 0. A network
        of any input size takes (N, H, W, 3) and returns (N, scale·H, scale·W, 3)."""
        crops = _as_crops(crops, self.crop_size)
        if self.crop_size is None:
            if not len(crops):
                return np.empty((0, 0, 0, 3), np.float32)
            return self._invoke(self._resized(self._batched, crops.shape), np.ascontiguousarray(crops)).copy()
        side = self.crop_size * self.scale
        out = np.empty((len(crops), side, side, 3), np.float32)
        full = len(crops) - len(crops) % self.batch_size
        for start in range(0, full, self.batch_size):
            stop = start + self.batch_size
            out[start:stop] = self._invoke(self._batched, np.ascontiguousarray(crops[start:stop]))
        if full < len(crops) and self._single is None:
            self._single, _, _ = self._open(1)
        for i in range(full, len(crops)):
            out[i:i + 1] = self._invoke(self._single, np.ascontiguousarray(crops[i:i + 1]))
        return out


class EnlargedRestorer:
    """A ×k super-resolution network of inputs of any size, its output enlarged by bicubic to
    ×``scale`` (a multiple of k): ``ffv restore --upscale 4``'s default, ``ffv_span2_sized`` then
    bicubic ×2, for every window.

    On the synthetic clip of ``pixabay/val`` faces reduced by 4 (``benchmarks/quality_clip.py
    --upscale 4 --faces ../shared/data/faces/pixabay/val``) the ×2 network then bicubic gained as
    much or more, at every face size, than a ×4 network on windows up to 32-96 px with this for
    larger ones (+1.04 dB over bicubic against +1.02 at best; ``docs/what-we-tried.md``): SPAN ×4,
    fine-tuned on clean 32 px reductions, invents blotches on larger faces and keeps the codec's
    damage. Same contract as :class:`LiteRestorer`.
    """

    crop_size = None

    def __init__(self, network, scale: int) -> None:
        factor = int(getattr(network, "scale", 1))
        if factor < 2 or int(scale) % factor or int(scale) == factor or network.crop_size is not None:
            raise ValueError(f"cannot enlarge a x{factor} network of crop size {network.crop_size} to x{scale}")
        self.network, self.scale, self.path = network, int(scale), getattr(network, "path", None)

    def restore(self, crops: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, 3) in [0, 1] -> (N, scale H, scale W, 3)."""
        from framefusion_video.restore.blending import upscale_frame

        crops = _as_crops(crops, None)
        if not len(crops):
            return np.empty((0, self.scale * crops.shape[1], self.scale * crops.shape[2], 3), np.float32)
        out = np.clip(self.network.restore(crops), 0.0, 1.0)
        return np.stack([upscale_frame(o, self.scale // self.network.scale) for o in out])


class RoutedRestorer:
    """Two networks of one scale that take inputs of any size: windows whose longer side is at
    most ``largest_small`` px go to ``small``, the others to ``large``. A call's windows share one
    size (``pipeline.restore_in_batches``). Same contract as :class:`LiteRestorer`."""

    crop_size = None

    def __init__(self, small, large, largest_small: int) -> None:
        if small.crop_size is not None or large.crop_size is not None or small.scale != large.scale:
            raise ValueError(f"cannot route between a x{small.scale} network of crop size {small.crop_size} "
                             f"and a x{large.scale} one of crop size {large.crop_size}")
        self.small, self.large, self.largest_small = small, large, int(largest_small)
        self.scale, self.path = large.scale, getattr(large, "path", None)

    def restore(self, crops: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, 3) in [0, 1] -> (N, scale H, scale W, 3)."""
        crops = _as_crops(crops, None)
        return (self.small if max(crops.shape[1:3]) <= self.largest_small else self.large).restore(crops)


class ReducedRestorer:
    """A same-size restorer of windows at their effective resolution: each window reduced by
    ``reduction`` (area), enlarged back by a ×k super-resolution network of inputs of any size,
    then brought to the window's own size (bicubic). For faces whose detail lies well below their
    pixel count (``soft_faces.py``), which hold no more than the reduced copy does. Same contract
    as :class:`LiteRestorer`, at scale 1."""

    crop_size = None
    scale = 1

    def __init__(self, network, reduction: int) -> None:
        if int(getattr(network, "scale", 1)) < 2 or network.crop_size is not None or int(reduction) < 2:
            raise ValueError(f"cannot restore at 1/{reduction} with a x{getattr(network, 'scale', 1)} network "
                             f"of crop size {network.crop_size}")
        self.network, self.reduction, self.path = network, int(reduction), getattr(network, "path", None)

    def restore(self, crops: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, 3) in [0, 1] -> the same shape."""
        import cv2

        crops = _as_crops(crops, None)
        n, height, width = crops.shape[:3]
        if not n:
            return crops.copy()
        small = np.stack([reduced(c, self.reduction) for c in crops])
        out = np.clip(self.network.restore(small), 0.0, 1.0)
        return np.stack([cv2.resize(o, (width, height), interpolation=cv2.INTER_CUBIC) for o in out]).clip(0.0, 1.0)


def reduced(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` (H, W, C) reduced by ``factor`` by area, to whole pixels (at least 1 px a side)."""
    import cv2

    height, width = image.shape[:2]
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def shipped_soft_face_restorer(reduction: int, batch_size: int = 8, threads: int | None = None) -> ReducedRestorer:
    """:data:`SOFT_FACE_MODEL` at 1/``reduction`` (:class:`ReducedRestorer`)."""
    network = load_restorer(shipped_weights_dir() / SOFT_FACE_MODEL, batch_size=batch_size, threads=threads)
    return ReducedRestorer(network, reduction)


def left_alone(restored: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """Per crop, whether the generator's gate left it alone: bool (N,).

    The gate says "leave this face alone" by returning its crop bit-identical; this is the one
    place that reads it, right after the restorer, so that stabilisation, the review and the
    paste-back receive it as a flag. ``restored`` and ``crops``: float32 (N, S, S, 3) in [0, 1];
    a super-resolution network's larger outputs are never its crops.
    """
    return np.array([r.shape == c.shape and np.array_equal(r, c) for r, c in zip(restored, crops)], dtype=bool)


def export_tflite(model, path: str | os.PathLike) -> Path:
    """Convert the Keras generator ``model`` to a float32 ``.tflite`` file at ``path`` (atomically)."""
    import tempfile

    import keras
    import tensorflow as tf

    path = Path(path)
    size = model.input_shape[1]  # None: a fully convolutional network, exported for any input size
    inp = keras.Input((size, size, 3))
    with tempfile.TemporaryDirectory() as tmp:
        keras.Model(inp, model(inp)).export(tmp, format="tf_saved_model", verbose=False)
        flat = tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
    write_atomic(path, flat)
    return path


def check_model_file(model_path: str | os.PathLike | None = None) -> Path:
    """The model file ``model_path`` (None = the shipped default), checked cheaply, without
    loading it: it exists, is a readable file, and is a ``.tflite`` or ``.keras`` file by its
    name and its first bytes.

    Raises:
        FfvError: naming the file and what is wrong with it.
    """
    path = Path(model_path) if model_path is not None else default_model_path()
    hint = " (the default weights ship in framefusion_video/weights/; pass --model PATH)" if model_path is None else ""
    head = read_head(path, 8, "model file", missing=f"model file not found{hint}")
    suffix = path.suffix.lower()
    if suffix not in (".tflite", ".keras"):
        raise FfvError(path, "not a valid model: expected a .tflite or .keras file")
    if suffix == ".keras" and not head.startswith(b"PK\x03\x04"):
        raise FfvError(path, "not a valid model: a .keras model is a zip archive, this file is not")
    if suffix == ".tflite" and head[4:8] != b"TFL3":
        raise FfvError(path, "not a valid model: not a TensorFlow Lite flatbuffer")
    return path


def load_generator(path: str | os.PathLike | None = None):
    """The Keras generator stored at ``path`` (default: the shipped model)."""
    path = check_model_file(path)  # a .keras zip, or a clear reason why not
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for a bad file; report it as one line
        raise FfvError(path, f"not a loadable ffv generator ({type(exc).__name__}: {exc})") from exc


def load_restorer(model_path: str | os.PathLike | None = None, batch_size: int = 8,
                  threads: int | None = None) -> KerasRestorer | LiteRestorer:
    """A restorer for the generator at ``model_path`` (default: the shipped one), running
    ``batch_size`` crops per call of the model: a :class:`LiteRestorer` for ``.tflite`` files
    (``threads`` XNNPACK threads, default one per core), a :class:`KerasRestorer` for ``.keras`` files."""
    path = check_model_file(model_path)
    if path.suffix.lower() == ".tflite":
        restorer = LiteRestorer(path, batch_size=batch_size, threads=threads)
        log.debug("loaded generator %s (%s px crops, LiteRT)", path, restorer.crop_size or "any")
        return restorer
    model = load_generator(path)
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise FfvError(path, f"unexpected generator input shape {shape}")
    log.debug("loaded generator %s (%s px crops)", path, shape[1] or "any")
    try:
        return KerasRestorer(model, batch_size=batch_size)
    except FfvError as exc:
        raise FfvError(path, exc.reason) from exc
