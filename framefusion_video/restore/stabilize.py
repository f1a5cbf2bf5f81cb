"""Temporal stabilisation of restored face crops: static detail stays static, motion stays sharp.

A per-frame restorer invents detail (skin texture, eyelashes, hair) independently in every frame,
so a face that does not move still shimmers. For each face track this module blends the restored
crop with the previous *stabilised* crop of the same track, motion-compensated in the aligned crop
space, and weighted by how much the *input* changed there::

    f      = flow(input_{t-1} -> input_t)                 DIS optical flow on grey crops (~0.1 ms)
    d      = blur(|grey(input_t) - warp(grey(input_{t-1}), f)|)
    w      = alpha * exp(-d / tau)                        high where the input did not change
    out_t  = (1 - w) * restored_t + w * warp(out_{t-1}, f)

Where the input is unchanged (after motion compensation) the output is a running average over
about ``1 / (1 - alpha)`` frames, which removes the restorer's frame-to-frame noise; where the input
moved in a way the flow does not explain (mouth opening, eyes blinking, occlusion) or changed
(lighting, a cut the tracker missed) ``w`` falls to ~0 and the fresh restoration is used, so there is
no ghosting and no lag. Crops are aligned, so the residual motion is small and the flow is cheap.

A face the restorer leaves alone (its output is the input crop, bit-identical: the generator's gate
does this where restoring would not help) is not smoothed: its output is the input crop, so the
paste-back keeps its pixels; only what earlier restorations of the track added fades out the same way.

State is explicit: :func:`stabilize_tracks` takes the previous frame's ``{track_id: TrackState}``
and returns the new one. A track that is absent from a frame (ended, or the frame was not
restored) drops out, and a new ``track_id`` (the tracker issues new ids after a scene cut) starts
fresh, so nothing is carried across a cut or a gap.

Arrays: crops are float32 RGB (S, S, 3) in [0, 1] (the model boundary of ``DEVELOPERS.md``);
flows float32 (S, S, 2), displacements (x, y) in crop pixels; weights float32 (S, S) in [0, alpha].
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from framefusion_video.base.pixels import to_unit_float

log = logging.getLogger(__name__)

#: DIS presets by name, for :class:`StabilizeConfig.flow_preset`.
FLOW_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass(frozen=True)
class StabilizeConfig:
    """Options of the temporal term.

    Attributes:
        enable: False = crops pass through unchanged and no state is kept.
        alpha: weight of the previous (warped) output where the input did not change, in [0, 1).
            0 = off; 0.7 averages over ~3 frames: the noise of an exponential average falls by
            sqrt((1 - a) / (1 + a)), 0.42x at 0.7.
        tau: input change (mean |difference| of grey levels in [0, 1], after motion compensation)
            at which the weight has fallen to alpha / e. Where input and restoration change by
            ``d``, the output lags by ``w * d = alpha * d * exp(-d / tau)``, at most about
            ``alpha * tau / e`` (~2.6 grey levels at 0.7 and 0.04), so a change is never smeared
            visibly; 0.04 sits above the compression noise of real clips.
        blur: side (pixels, odd) of the box filter applied to the input difference, so that a noisy
            pixel does not make a noisy weight; 1 = none.
        flow_preset: DIS optical flow preset, "ultrafast" (~0.1 ms on 128 px), "fast" or "medium".
    """

    enable: bool = True
    alpha: float = 0.7
    tau: float = 0.04
    blur: int = 5
    flow_preset: str = "ultrafast"

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.alpha < 1.0:
            problems.append(f"alpha must be in [0, 1), got {self.alpha}")
        if self.tau <= 0.0:
            problems.append(f"tau must be positive, got {self.tau}")
        if self.blur < 1 or self.blur % 2 == 0:
            problems.append(f"blur must be an odd number of pixels, got {self.blur}")
        if self.flow_preset not in FLOW_PRESETS:
            problems.append(f"flow_preset must be one of {sorted(FLOW_PRESETS)}, got {self.flow_preset!r}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def active(self) -> bool:
        """Whether the term does anything (enabled with a non-zero alpha)."""
        return self.enable and self.alpha > 0.0


@dataclass(frozen=True, eq=False)
class TrackState:
    """What a track remembers of its previous frame.

    Attributes:
        index: the frame index it comes from; only the very next frame uses it.
        grey: the aligned input crop in grey, float32 (S, S) in [0, 1] (flow and change).
        output: the stabilised restored crop, float32 (S, S, 3) in [0, 1].
        excess: ``output`` minus the input crop, float32 (S, S, 3), or None where the output was
            the input crop itself (the restorer, e.g. the generator's gate, left the face alone).
    """

    index: int
    grey: np.ndarray
    output: np.ndarray
    excess: np.ndarray | None = None


# --------------------------------------------------------------------------- pure maths


def to_grey(crop: np.ndarray) -> np.ndarray:
    """float32 (S, S) in [0, 1] from an RGB crop, float in [0, 1] or uint8 in [0, 255]."""
    crop = np.asarray(crop)
    if crop.dtype == np.uint8:
        return to_unit_float(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY))
    return cv2.cvtColor(crop.astype(np.float32, copy=False), cv2.COLOR_RGB2GRAY)


def _as_float(crop: np.ndarray) -> np.ndarray:
    """An RGB crop as float32 in [0, 1] (uint8 crops are scaled as ``restore`` scales them)."""
    crop = np.asarray(crop)
    if crop.dtype == np.uint8:
        return to_unit_float(crop)
    return crop.astype(np.float32, copy=False)


def crop_flow(prev_grey: np.ndarray, grey: np.ndarray, preset: str = "ultrafast") -> np.ndarray:
    """Flow that brings ``prev_grey`` onto ``grey`` (both float32 (S, S) in [0, 1]).

    Returns float32 (S, S, 2) on ``grey``'s grid: ``grey[y, x] ~ prev_grey[y + f[..., 1], x + f[..., 0]]``,
    i.e. ``warp_crop(prev, f) ~ current`` (the convention of ``flicker.flow``).
    """
    a = np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)
    b = np.clip(prev_grey * 255.0 + 0.5, 0, 255).astype(np.uint8)
    dis = cv2.DISOpticalFlow_create(FLOW_PRESETS[preset])
    return dis.calc(a, b, None)  # DIS: a(x) ~ b(x + f(x))


def warp_crop(img: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Backward warp ``out[y, x] = img[y + f[y, x, 1], x + f[y, x, 0]]``, bilinear, border replicated.

    ``img`` float32 (S, S[, C]); ``f`` float32 (S, S, 2). Same shape and dtype as ``img``.
    """
    return _remap(img, _maps(f))


def _maps(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute sampling maps (float32 (S, S) each) of a flow, for ``cv2.remap``."""
    h, w = f.shape[:2]
    return f[..., 0] + np.arange(w, dtype=np.float32)[None, :], f[..., 1] + np.arange(h, dtype=np.float32)[:, None]


def _remap(img: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return cv2.remap(img, maps[0], maps[1], interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def blend_weight(grey: np.ndarray, warped_prev_grey: np.ndarray, config: StabilizeConfig) -> np.ndarray:
    """Per-pixel weight of the previous output: ``alpha * exp(-blur(|grey - warped_prev|) / tau)``.

    Both inputs float32 (S, S) in [0, 1]; returns float32 (S, S) in [0, alpha]: ~alpha where the
    input is unchanged after motion compensation, ~0 where it changed by several ``tau``.
    """
    diff = cv2.absdiff(grey, warped_prev_grey)
    if config.blur > 1:
        diff = cv2.blur(diff, (config.blur, config.blur))
    return cv2.exp(diff * np.float32(-1.0 / config.tau)) * np.float32(config.alpha)


def stabilize_crop(
    state: TrackState | None,
    index: int,
    input_crop: np.ndarray,
    restored: np.ndarray,
    config: StabilizeConfig = StabilizeConfig(),
    left_alone: bool | None = None,
) -> tuple[np.ndarray, TrackState]:
    """One track's output for frame ``index`` and its new state.

    Args:
        state: the track's state from the previous frame, or None (first frame of the track).
            A state from another frame than ``index - 1``, or of another crop size, is ignored.
        input_crop: the aligned input crop, float32 (S, S, 3) in [0, 1] (or uint8).
        restored: the restorer's output for it, float32 (S, S, 3) in [0, 1].
        left_alone: whether the generator's gate left the face alone (``restored`` is the input
            crop); None: read from the crops with ``inference.left_alone``.

    Returns:
        ``(output float32 (S, S, 3) in [0, 1], new state)``. The output is ``restored`` itself when
        there is no usable state or the term is off. A face the restorer left alone is not blended with older inputs: its output is the
        input crop itself, so the paste-back keeps its original pixels, except that what earlier
        restorations of the track added fades out with the usual weight (a face that stops being
        restored returns to the input without a jump) until it is under half a grey level.
    """
    grey = to_grey(input_crop)
    restored = np.asarray(restored, dtype=np.float32)
    original = _as_float(input_crop)
    if left_alone is None:
        from framefusion_video.restore.inference import left_alone as gate_left_alone

        left_alone = bool(gate_left_alone(restored[None], original[None])[0])
    usable = (config.active and state is not None and state.index == index - 1
              and state.grey.shape == grey.shape and state.output.shape == restored.shape)
    if not usable or (left_alone and state.excess is None):
        return restored, TrackState(index, grey, restored, None if left_alone else restored - original)
    maps = _maps(crop_flow(state.grey, grey, config.flow_preset))
    w = blend_weight(grey, _remap(state.grey, maps), config)[..., None]
    if left_alone:
        # Only what earlier restorations added fades out; the input itself is not smoothed.
        fade = w * _remap(state.excess, maps)
        if float(np.max(np.abs(fade))) < 0.5 / 255.0:
            return restored, TrackState(index, grey, restored, None)
        out = np.clip(original + fade, 0.0, 1.0)
    else:
        # (1 - w) * restored + w * previous, written as restored + w * (previous - restored).
        out = restored + w * (_remap(state.output, maps) - restored)
    return out, TrackState(index, grey, out, out - original)


def stabilize_tracks(
    states: Mapping[int, TrackState],
    index: int,
    track_ids: Sequence[int],
    input_crops: Sequence[np.ndarray],
    restored: Sequence[np.ndarray],
    config: StabilizeConfig = StabilizeConfig(),
    left_alone: Sequence[bool] | None = None,
) -> tuple[list[np.ndarray], dict[int, TrackState]]:
    """Stabilise the restored crops of one frame.

    Args:
        states: ``{track_id: TrackState}`` returned for the previous frame (``{}`` to start).
        index: this frame's index in the clip.
        track_ids, input_crops, restored: one entry per face of this frame, in the same order.
        left_alone: per face, whether the generator's gate left it alone (None: read from the
            crops, see :func:`stabilize_crop`).

    Returns:
        ``(outputs, new_states)``: the stabilised crops (same order) and the states of exactly this
        frame's tracks, so tracks that ended are forgotten. With the term off, ``restored`` is
        returned unchanged and the state stays empty.
    """
    if not (len(track_ids) == len(input_crops) == len(restored)):
        raise ValueError(f"got {len(track_ids)} track ids, {len(input_crops)} input crops and "
                         f"{len(restored)} restored crops for frame {index}")
    if not config.active:
        return list(restored), {}
    outputs, new_states = [], {}
    flags = [None] * len(restored) if left_alone is None else list(left_alone)
    for track_id, inp, out, alone in zip(track_ids, input_crops, restored, flags):
        if track_id in new_states:  # two faces with one id: keep the first's history only
            outputs.append(np.asarray(out, dtype=np.float32))
            continue
        out, new_states[track_id] = stabilize_crop(states.get(track_id), index, inp, out, config, alone)
        outputs.append(out)
    return outputs, new_states
