"""The options of a restoration run: :class:`RestoreConfig` and the speed presets.

``ffv restore`` and ``ffv preview`` map their flags onto these fields; every other module reads
the options from here, so that the defaults are written once.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import Field, dataclass, field, fields

#: The factors ``--upscale`` takes: 1 restores faces in place, 2 and 4 enlarge the frame and
#: super-resolve its faces (``inference.SR_MODEL_NAMES``).
UPSCALE_FACTORS = (1, 2, 4)
#: Most face crops per model call: a bigger batch only costs memory (LiteRT cannot allocate it).
MAX_BATCH_SIZE = 256
#: x264's speed presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
#: The Python types each kind of RestoreConfig field takes (bool is not a number here).
_FIELD_TYPES = {"int": numbers.Integral, "float": numbers.Real, "bool": bool, "str": str}


@dataclass(frozen=True)
class Spec:
    """The range of one :class:`RestoreConfig` field and its command-line help, kept in the field's
    metadata so that the CLI's options (``cli/options.py``) and the checks are derived from it.

    Attributes:
        low, high: inclusive bounds (None: unbounded); ``high_open``: ``high`` itself is excluded.
        choices: the only values allowed (None: any within the bounds).
        help: the flag's help text; None: the field has no flag (library callers only).
        flag: the flag's name where it is not the field's (``--model`` for ``model_path``).
    """

    low: float | None = None
    high: float | None = None
    high_open: bool = False
    choices: tuple | None = None
    help: str | None = None
    flag: str | None = None

    def problem(self, value) -> str | None:
        """Why ``value`` is out of range ("must be ..., got ..."), or None when it is in range."""
        if self.choices is not None:
            return None if value in self.choices else \
                f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        low_ok = self.low is None or value >= self.low
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        if low_ok and high_ok:
            return None
        if self.high is None:
            return f"must be {self.low} or more, got {value}"
        if self.high_open:
            return f"must be at least {self.low} and below {self.high}, got {value}"
        return f"must be between {self.low} and {self.high}, got {value}"


def option(default, **spec) -> Field:
    """A :class:`RestoreConfig` field with ``default`` and its :class:`Spec` (``spec``)."""
    return field(default=default, metadata={"spec": Spec(**spec)})


def spec_of(f: Field) -> Spec:
    """The :class:`Spec` of a :class:`RestoreConfig` field."""
    return f.metadata["spec"]


@dataclass(frozen=True)
class RestoreConfig:
    """Options of ``ffv restore`` and ``ffv preview``; the CLI flags are derived from these fields
    (each one's default here, its range and help in its :class:`Spec`).

    Attributes:
        model_path: generator weights; None = the shipped default (``framefusion_video/weights/``).
        batch_size: face crops per call to the restorer (crops are gathered across frames), 1 to
            :data:`MAX_BATCH_SIZE`.
        strength: 0 keeps the original face, 1 pastes the restored face fully; at 0 frames pass
            through without face detection (:attr:`passes_through`).
        upscale: one of :data:`UPSCALE_FACTORS`; the whole frame is resized and faces are pasted
            at that resolution.
        min_face: ignore faces smaller than this many pixels (0 = no limit).
        max_faces: restore at most this many faces per frame, largest first (0 = all).
        crf, preset: x264 quality (lower crf = better, bigger) and speed preset of the output.
        detect_every: run the face detector every N frames, tracking in between (1 = every frame).
        colour_match: match the restored face's colours to the original's before pasting.
        min_confidence: face detector score threshold in [0, 1].
        temporal: weight in [0, 1) of the previous frame's restored face where the input did not
            change (motion-compensated, ``stabilize.py``): removes the restorer's flicker; 0 = off.
        model_threads: LiteRT (XNNPACK) threads of the generator; 0 = :meth:`auto_model_threads`.
        safety: leave alone faces whose landmarks do not fit their box, and refuse restored faces
            that change their input by more than its estimated damage explains (``safety.py``).
        soft_faces: at ``upscale`` 1, restore faces much softer than their pixels (a track's mean
            ``soft_faces.softness``) again at their effective resolution (``soft_faces.py``). Off by
            default: on sharp studio faces it loses their finest texture (``models/README.md``).
    """

    model_path: str | None = option(
        None, flag="--model",
        help="Generator weights (.tflite or .keras). Default: the shipped generator (ffv_generator.tflite in the "
             "package's weights/ folder; with --upscale 2, the shipped super-resolution generators ffv_span2.tflite, "
             "and ffv_span2_sized.tflite on small faces; with 4, ffv_span2_sized.tflite then bicubic).")
    batch_size: int = option(8, low=1, high=MAX_BATCH_SIZE, help="Face crops per model call.")
    strength: float = option(1.0, low=0.0, high=1.0,
                             help="0 keeps the original faces (frames pass through, no face is looked at), "
                                  "1 pastes the restored faces fully.")
    upscale: int = option(1, choices=UPSCALE_FACTORS,
                          help="Enlarge the frames by this factor (bicubic); at 2 and 4 every face, whatever its "
                               "size, is super-resolved from its own pixels.")
    min_face: int = option(0, low=0, help="Ignore faces smaller than this many pixels (0: no limit).")
    max_faces: int = option(0, low=0, help="Restore at most this many faces per frame, largest first (0: all).")
    crf: int = option(18, low=0, high=51, help="x264 quality: lower is better and bigger.")
    preset: str = option("veryfast", choices=X264_PRESETS, help="x264 speed preset.")
    detect_every: int = option(2, low=1, help="Run the face detector every N frames and track in between.")
    colour_match: bool = option(True, help="Match restored colours to the original's, except a move back from "
                                           "colours no well-lit face has (a lighting or colour-cast repair), "
                                           "which is kept.")
    min_confidence: float = option(0.5, low=0.0, high=1.0)
    temporal: float = option(0.7, low=0.0, high=1.0, high_open=True,
                             help="Blend each restored face with the previous frame's where the input did not "
                                  "change (motion-compensated): removes flicker. 0: off.")
    model_threads: int = option(0, low=0)
    safety: bool = option(True, help="Leave alone faces whose landmarks do not fit them, and refuse restored "
                                     "faces that change more than their input's damage explains. --no-safety "
                                     "pastes every face.")
    soft_faces: bool = option(False, help="For soft footage (old TV, soft lenses), without --upscale: restore faces "
                                          "much softer than their pixels again at their effective resolution, "
                                          "reduced by 2 and super-resolved back by a x2 network that learnt to "
                                          "deblur. Visibly sharper there; slower on such faces, and it smooths the "
                                          "fine skin texture of sharp ones (off by default).")

    def __post_init__(self) -> None:
        self._check_types()
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            problem = None if value is None else spec_of(f).problem(value)
            if problem is not None:
                problems.append(f"{f.name} {problem}")
        if problems:
            raise ValueError("; ".join(problems))

    def auto_model_threads(self, super_resolving: bool | None = None) -> int:
        """The generator's threads: ``model_threads``, or by default half the cores (at least one)
        at the same size, where the model has a thread of its own beside decoding, tracking, the
        paste-back and x264 and a second XNNPACK thread mostly spins waiting for a busy core; every
        core when super-resolving (``upscale`` > 1, or ``super_resolving``: the soft faces' ×2
        network), where the network is most of the work (``benchmarks/bench_upscale.py``; the TV
        interview with ``--soft-faces`` in 38 s instead of 64)."""
        cores = os.cpu_count() or 1
        sr = self.upscale > 1 if super_resolving is None else super_resolving
        return self.model_threads or (cores if sr else max(1, cores // 2))

    @property
    def passes_through(self) -> bool:
        """Whether frames pass through untouched (upscaled if asked): at ``strength`` 0 nothing
        would be pasted, so no face is detected, restored or reviewed."""
        return self.strength == 0.0

    def _check_types(self) -> None:
        """Raise TypeError naming the first field whose value has the wrong type; a path object
        as ``model_path`` is kept as its string (the report is JSON)."""
        if isinstance(self.model_path, os.PathLike):
            object.__setattr__(self, "model_path", os.fspath(self.model_path))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "model_path":
                ok, wanted = value is None or isinstance(value, str), "a path (str or os.PathLike) or None"
            else:
                kind = f.type if isinstance(f.type, str) else f.type.__name__
                ok = isinstance(value, _FIELD_TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))
                wanted = {"int": "a whole number", "float": "a number", "bool": "True or False",
                          "str": "a string"}[kind]
            if not ok:
                raise TypeError(f"RestoreConfig.{f.name} must be {wanted}, got {value!r} "
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
