"""The options of a restoration run: :class:`RestoreConfig` and the speed presets.

``ffv restore`` and ``ffv preview`` map their flags onto these fields; every other module reads
the options from here, so that the defaults are written once.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, fields

UPSCALE_FACTORS = (1, 2, 4)
#: Most face crops per model call: a bigger batch only costs memory (LiteRT cannot allocate it).
MAX_BATCH_SIZE = 256
#: The Python types each kind of RestoreConfig field takes (bool is not a number here).
_FIELD_TYPES = {"int": numbers.Integral, "float": numbers.Real, "bool": bool, "str": str}


@dataclass(frozen=True)
class RestoreConfig:
    """Options of ``ffv restore`` and ``ffv preview``; the CLI flags map onto these fields.

    Attributes:
        model_path: generator weights; None = the shipped default (``framefusion_video/weights/``).
        batch_size: face crops per call to the restorer (crops are gathered across frames), 1 to
            :data:`MAX_BATCH_SIZE`.
        strength: 0 keeps the original face, 1 pastes the restored face fully.
        upscale: 1, 2 or 4; the whole frame is resized and faces are pasted at that resolution.
        min_face: ignore faces smaller than this many pixels (0 = no limit).
        max_faces: restore at most this many faces per frame, largest first (0 = all).
        crf, preset: x264 quality (lower crf = better, bigger) and speed preset of the output.
        detect_every: run the face detector every N frames, tracking in between (1 = every frame).
        colour_match: match the restored face's colours to the original's before pasting.
        min_confidence: face detector score threshold in [0, 1].
        temporal: weight in [0, 1) of the previous frame's restored face where the input did not
            change (motion-compensated, ``stabilize.py``): removes the restorer's flicker; 0 = off.
        model_threads: LiteRT (XNNPACK) threads of the generator; 0 = half the cores, at least
            one: the model has a thread of its own beside decoding, tracking, the paste-back and
            x264, and a second XNNPACK thread mostly spins waiting for a busy core.
        safety: leave alone faces whose landmarks do not fit their box, and refuse restored faces
            that change their input by more than its estimated damage explains (``safety.py``).
    """

    model_path: str | None = None
    batch_size: int = 8
    strength: float = 1.0
    upscale: int = 1
    min_face: int = 0
    max_faces: int = 0
    crf: int = 18
    preset: str = "veryfast"
    detect_every: int = 2
    colour_match: bool = True
    min_confidence: float = 0.5
    temporal: float = 0.7
    model_threads: int = 0
    safety: bool = True

    def __post_init__(self) -> None:
        self._check_types()
        problems = []
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            problems.append(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {self.batch_size}")
        if not 0.0 <= self.strength <= 1.0:
            problems.append(f"strength must be between 0 and 1, got {self.strength}")
        if self.upscale not in UPSCALE_FACTORS:
            problems.append(f"upscale must be 1, 2 or 4, got {self.upscale}")
        if self.min_face < 0:
            problems.append(f"min_face must be 0 or more pixels, got {self.min_face}")
        if self.max_faces < 0:
            problems.append(f"max_faces must be 0 (all) or more, got {self.max_faces}")
        if not 0 <= self.crf <= 51:
            problems.append(f"crf must be between 0 and 51, got {self.crf}")
        if self.detect_every < 1:
            problems.append(f"detect_every must be at least 1, got {self.detect_every}")
        if not 0.0 <= self.min_confidence <= 1.0:
            problems.append(f"min_confidence must be between 0 and 1, got {self.min_confidence}")
        if self.model_threads < 0:
            problems.append(f"model_threads must be 0 (auto) or more, got {self.model_threads}")
        if not 0.0 <= self.temporal < 1.0:
            problems.append(f"temporal must be at least 0 and below 1, got {self.temporal}")
        if problems:
            raise ValueError("; ".join(problems))

    def _check_types(self) -> None:
        """Raise TypeError naming the first field whose value has the wrong type; a path object
        as ``model_path`` is kept as its string (the report is JSON)."""
        if isinstance(self.model_path, os.PathLike):
            object.__setattr__(self, "model_path", os.fspath(self.model_path))
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "model_path":
                ok, wanted = value is None or isinstance(value, str), "a path (str or os.PathLike) or None"
            else:
                kind = field.type if isinstance(field.type, str) else field.type.__name__
                ok = isinstance(value, _FIELD_TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))
                wanted = {"int": "a whole number", "float": "a number", "bool": "True or False",
                          "str": "a string"}[kind]
            if not ok:
                raise TypeError(f"RestoreConfig.{field.name} must be {wanted}, got {value!r} "
                                f"({type(value).__name__})")


#: Speed/quality presets of ``ffv restore --fast`` / ``--quality``: RestoreConfig fields they set
#: (options given explicitly on the command line still win). The default sits between the two.
PRESETS: dict[str, dict[str, object]] = {
    "fast": {"detect_every": 4, "batch_size": 16, "preset": "superfast", "crf": 20},
    "default": {},
    "quality": {"detect_every": 1, "preset": "medium", "crf": 16},
}


def preset_config(name: str, **overrides) -> RestoreConfig:
    """The RestoreConfig of preset ``name`` (``fast``, ``default``, ``quality``) with ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return RestoreConfig(**{**PRESETS[name], **overrides})
