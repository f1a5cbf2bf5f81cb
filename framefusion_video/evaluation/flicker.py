"""Temporal stability (flicker) of a restored video, measured against its input.

The *warping error* of a pair of consecutive frames is the mean absolute difference between frame
``t`` and frame ``t - 1`` warped onto it with optical flow, over the pixels where the flow can be
trusted (forward-backward consistent, so not occluded, and landing inside the frame). A restorer
that flickers (a face that changes from frame to frame more than the input does) raises it.

:func:`measure` computes the flow on the **input** frames only, then the warping error of the
restored pair and of the input pair with that same flow, mask and region, and reports

    ratio = sum of restored errors / sum of input errors

over the clip (and per face track): 1.0 = as stable as the input, > 1 = the restoration adds
flicker, < 1 = the restoration is smoother than the input. Pairs across a scene cut are skipped.

It also reports how often a visible face was left unrestored: a face detected in an input frame is
*unrestored* when the restored frame is, inside that face's box, no more different from the input
than the rest of the frame is (the re-encoding noise floor) plus ``unrestored_threshold`` grey
levels; see :func:`is_unrestored`. That estimate needs only the two videos, but it mistakes a face
the model changed very little for an unrestored one; when the pipeline's own record of which faces
it restored is at hand (``RestoredFrame.restored_boxes``), :func:`restoration_coverage` counts
the visible faces left unrestored exactly.

With ``FlickerConfig.identity`` (the optional extra ``identity``, dlib) it also reports identity
drift along each face track, on every ``identity_every``-th frame's visible faces: the identity
distance (``identity.py``; < 0.6 = the same person) of the restored face to the same frame's input
face, and of the restored face to the track's first measured restored face, beside the same drift of
the input itself (a turning head moves the descriptor too; a restorer should not add to it).

Frames are uint8 RGB (H, W, 3); flows are float32 (H, W, 2) displacements (x, y) in pixels.
Everything is streamed: at most two frames of each video are held.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from framefusion_video.base.errors import FfvError
from framefusion_video.faces.detection import box_iou

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class FlickerConfig:
    """Options of :func:`measure`.

    Attributes:
        flow_max_side: the flow is computed on grey copies whose longer side is at most this many
            pixels, then resized (and its vectors rescaled) to the frame size: DIS flow on a 640 px
            frame takes ~15 ms, and faces move smoothly enough for that resolution.
        consistency_alpha, consistency_beta: a pixel's flow ``w`` is trusted when the flow back from
            where it lands, ``w'``, satisfies ``|w + w'|^2 < alpha (|w|^2 + |w'|^2) + beta``
            (Sundaram et al. 2010, as in Lai et al. 2018's temporal warping error).
        box_scale: face boxes are enlarged by this factor about their centre for the warping error,
            so that the forehead, chin and the pasted mask's feathered edge are included.
        unrestored_threshold: grey levels (0-255) above the noise floor that a face must differ by
            from the input to count as restored (:func:`is_unrestored`).
        skip_scene_cuts: do not measure pairs across a scene cut (the flow is meaningless there).
        scene_cut_threshold: histogram distance above which a pair is a cut
            (:func:`framefusion_video.faces.tracking.is_scene_cut`).
        identity: also measure identity drift along each face track (needs dlib; see the module
            docstring).
        identity_every: measure identity on every n-th frame only (each face costs two dlib
            descriptors, ~0.1-0.2 s on a CPU core).
    """

    flow_max_side: int = 640
    consistency_alpha: float = 0.01
    consistency_beta: float = 0.5
    box_scale: float = 1.25
    unrestored_threshold: float = 1.5
    skip_scene_cuts: bool = True
    scene_cut_threshold: float = 0.3
    identity: bool = False
    identity_every: int = 1

    def __post_init__(self) -> None:
        if self.flow_max_side < 16:
            raise ValueError(f"flow_max_side must be at least 16 pixels, got {self.flow_max_side}")
        if self.box_scale <= 0:
            raise ValueError(f"box_scale must be positive, got {self.box_scale}")
        if self.unrestored_threshold < 0:
            raise ValueError(f"unrestored_threshold must be 0 or more, got {self.unrestored_threshold}")
        if self.identity_every < 1:
            raise ValueError(f"identity_every must be at least 1, got {self.identity_every}")


@dataclass(frozen=True)
class FaceRegion:
    """A face in one frame, as the metric sees it.

    Attributes:
        track_id: identity across frames (per-track results are keyed by it).
        box: (x0, y0, x1, y1), float frame pixels.
        visible: True when the detector found the face in this very frame (not interpolated or
            carried by the tracker): only visible faces are checked for being unrestored.
    """

    track_id: int
    box: Box
    visible: bool = True


# --------------------------------------------------------------------------- pure maths


def _grey(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def flow(prev: np.ndarray, cur: np.ndarray, max_side: int = 640) -> np.ndarray:
    """Dense optical flow that brings ``prev`` onto ``cur``: float32 (H, W, 2) on ``cur``'s grid.

    ``cur[y, x] ~ prev[y + f[y, x, 1], x + f[y, x, 0]]``, i.e. ``warp(prev, flow(prev, cur)) ~ cur``.
    ``prev`` and ``cur`` are uint8 RGB (H, W, 3) or grey (H, W) of the same size. OpenCV's DIS flow
    (fast preset) on grey copies downscaled so the longer side is at most ``max_side``; the flow is
    resized back and its vectors multiplied by the scale.
    """
    if prev.shape[:2] != cur.shape[:2]:
        raise ValueError(f"frames differ in size: {prev.shape[:2]} vs {cur.shape[:2]}")
    h, w = cur.shape[:2]
    a, b = _grey(cur), _grey(prev)
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    # DIS: a(x) ~ b(x + f(x)), with a = cur and b = prev.
    f = dis.calc(np.ascontiguousarray(a), np.ascontiguousarray(b), None)
    if scale < 1.0:
        sx, sy = w / a.shape[1], h / a.shape[0]
        f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
        f[..., 0] *= sx
        f[..., 1] *= sy
    return f.astype(np.float32, copy=False)


def _sample_grid(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = f.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return xs + f[..., 0], ys + f[..., 1]


def warp(img: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Backward warp: ``out[y, x] = img[y + f[y, x, 1], x + f[y, x, 0]]`` (bilinear).

    ``img`` is any (H, W[, C]) array OpenCV can remap (uint8 frames, float32 flows); ``f`` float32
    (H, W, 2). Samples outside ``img`` replicate its border (they are masked out by
    :func:`valid_flow_mask` anyway). Same dtype and shape as ``img``.
    """
    map_x, map_y = _sample_grid(f)
    return cv2.remap(img, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def valid_flow_mask(flow_fw: np.ndarray, flow_bw: np.ndarray, alpha: float = 0.01, beta: float = 0.5) -> np.ndarray:
    """Pixels where ``flow_fw`` can be trusted: bool (H, W), True = valid.

    ``flow_fw`` (float32 (H, W, 2)) maps each pixel ``x`` of frame A to its match ``x + w(x)`` in
    frame B; ``flow_bw`` maps frame B's pixels back to A. Where ``x`` is visible in both frames the
    flow back from its match returns to it: ``w'(x) = flow_bw(x + w(x)) ~ -w(x)``. A pixel is valid
    when ``|w + w'|^2 < alpha (|w|^2 + |w'|^2) + beta`` and ``x + w(x)`` lies inside the frame;
    occluded, disoccluded and badly matched pixels fail the check.
    """
    h, w = flow_fw.shape[:2]
    back = warp(flow_bw, flow_fw)
    total = flow_fw + back
    lhs = (total**2).sum(-1)
    rhs = alpha * ((flow_fw**2).sum(-1) + (back**2).sum(-1)) + beta
    map_x, map_y = _sample_grid(flow_fw)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return (lhs < rhs) & inside


def box_mask(shape: tuple[int, int], boxes: Iterable[Box], scale: float = 1.0) -> np.ndarray:
    """bool (H, W) mask of the union of ``boxes`` (x0, y0, x1, y1), each scaled about its centre
    by ``scale`` and clipped to the frame of ``shape`` = (H, W)."""
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, scale * (x1 - x0) / 2, scale * (y1 - y0) / 2
        c0, r0 = max(0, math.floor(cx - hw)), max(0, math.floor(cy - hh))
        c1, r1 = min(w, math.ceil(cx + hw)), min(h, math.ceil(cy + hh))
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = True
    return mask


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel mean over channels of |a - b|, float32 (H, W), in grey levels."""
    d = cv2.absdiff(a, b).astype(np.float32)
    return d.mean(-1) if d.ndim == 3 else d


def warping_errors(prev: np.ndarray, cur: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Per-pixel warping error, float32 (H, W) in grey levels (0-255, averaged over channels):
    |``cur`` - ``prev`` warped by ``f``| (``f``: :func:`flow` of the pair). The measure pools it
    over the pixels valid in :func:`valid_flow_mask` and inside the face regions."""
    return _abs_diff(warp(prev, f), cur)


def is_unrestored(face_diff: float, noise_floor: float, threshold: float) -> bool:
    """Whether a face was left unrestored.

    ``face_diff`` is the mean |restored - input| (grey levels) inside the face's box,
    ``noise_floor`` the same outside every face (what re-encoding alone changes). The face is
    unrestored when ``face_diff < noise_floor + threshold``: a restored face differs from the input
    by several grey levels more than the background, an untouched one only by the encoder's noise.
    """
    return face_diff < noise_floor + threshold


@dataclass(frozen=True)
class CoverageReport:
    """Visible faces against the faces the pipeline restored (:func:`restoration_coverage`).

    Attributes:
        face_frames: frames with at least one visible face.
        missed_frames: those of them where a visible face had no restored face over it.
        longest_miss: the longest run of consecutive frames with a missed face (a face detected
            in the frames around should miss at most 2).
    """

    face_frames: int
    missed_frames: int
    longest_miss: int

    @property
    def missed_fraction(self) -> float | None:
        return self.missed_frames / self.face_frames if self.face_frames else None


def restoration_coverage(visible: Sequence[Sequence[Box]], restored: Sequence[Sequence[Box]],
                         min_iou: float = 0.3) -> CoverageReport:
    """Which visible faces were restored, frame by frame.

    ``visible[t]`` are the boxes of the faces found in input frame ``t`` (by any detector),
    ``restored[t]`` the boxes of the faces the pipeline restored in it. A visible face counts as
    restored when a restored box overlaps it with IoU >= ``min_iou`` (the two boxes come from
    different passes of the detector, or from the tracker, so they never match exactly).
    """
    if len(visible) != len(restored):
        raise ValueError(f"{len(visible)} frames of visible faces but {len(restored)} of restored faces")
    face_frames = missed = longest = run = 0
    for seen, done in zip(visible, restored):
        miss = any(max((box_iou(v, r) for r in done), default=0.0) < min_iou for v in seen)
        face_frames += bool(seen)
        missed += miss
        run = run + 1 if miss else 0
        longest = max(longest, run)
    return CoverageReport(face_frames, missed, longest)


# --------------------------------------------------------------------------- the report


def _ratio(restored: float, inp: float) -> float | None:
    return restored / inp if inp > 0 else None


@dataclass
class TrackReport:
    """Results of one face track (see :class:`TemporalReport` for the meaning of the fields)."""

    frames: int = 0
    visible_frames: int = 0
    unrestored_frames: int = 0
    pairs: int = 0
    restored_error: float | None = 0.0  # sums while measuring; means (None: no pixel) when complete
    input_error: float | None = 0.0
    pixels: int = 0
    ratio: float | None = None
    identity_frames: int = 0
    identity_to_input: float | None = None  # sums while measuring; means when complete
    identity_drift: float | None = None
    input_identity_drift: float | None = None

    @property
    def unrestored_fraction(self) -> float | None:
        return self.unrestored_frames / self.visible_frames if self.visible_frames else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["unrestored_fraction"] = self.unrestored_fraction
        return out


@dataclass
class TemporalReport:
    """Temporal stability of a restored clip against its input (:func:`measure`).

    Attributes:
        frames: frames compared.
        pairs: consecutive pairs measured (with a region to measure and not across a scene cut).
        scene_cuts: pairs skipped as scene cuts.
        ratio: restored warping error / input warping error, pooled over all measured pixels of the
            clip; None when the input's error is 0 or nothing could be measured.
        restored_error, input_error: mean warping errors (grey levels) over those pixels.
        pixels: number of pixel samples pooled.
        per_track: :class:`TrackReport` per face track id (empty when measured on whole frames).
        face_frames: frames with at least one visible (detected) face.
        unrestored_frames: those of them where at least one visible face was left unrestored.
        unrestored_fraction: ``unrestored_frames / face_frames`` (None without faces).
        identity_frames: face-frames whose identity was measured (``FlickerConfig.identity``).
        identity_to_input: mean identity distance of each restored face to the same frame's input
            face (0 = the restorer kept the descriptor exactly).
        identity_drift: mean identity distance of each restored face to its track's first measured
            restored face.
        input_identity_drift: the same of the input's faces (the drift pose and light give anyway);
            identity fields are None when not measured.
    """

    frames: int = 0
    pairs: int = 0
    scene_cuts: int = 0
    ratio: float | None = None
    restored_error: float | None = None
    input_error: float | None = None
    pixels: int = 0
    per_track: dict[int, TrackReport] = field(default_factory=dict)
    face_frames: int = 0
    unrestored_frames: int = 0
    identity_frames: int = 0
    identity_to_input: float | None = None
    identity_drift: float | None = None
    input_identity_drift: float | None = None

    @property
    def unrestored_fraction(self) -> float | None:
        return self.unrestored_frames / self.face_frames if self.face_frames else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (track ids as strings, floats rounded to 4 decimals)."""

        def rnd(v):
            return round(v, 4) if isinstance(v, float) else v

        out = {k: rnd(v) for k, v in asdict(self).items() if k != "per_track"}
        out["unrestored_fraction"] = rnd(self.unrestored_fraction)
        out["per_track"] = {str(k): {kk: rnd(vv) for kk, vv in t.to_dict().items()}
                            for k, t in sorted(self.per_track.items())}
        return out

    def to_markdown(self) -> str:
        """A markdown table: the whole clip, then one row per track."""

        def fmt(v: float | None, digits: int = 3) -> str:
            return "n/a" if v is None else f"{v:.{digits}f}"

        with_id = self.identity_frames > 0

        def ident(r: TemporalReport | TrackReport) -> str:
            return (f" {fmt(r.identity_to_input)} | {fmt(r.identity_drift)} | {fmt(r.input_identity_drift)} |"
                    if with_id else "")

        rows = ["| region | frames | pairs | warping error restored | input | ratio | unrestored |"
                + (" identity vs input | identity drift | input's drift |" if with_id else ""),
                "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" * 3 if with_id else ""),
                f"| all | {self.frames} | {self.pairs} | {fmt(self.restored_error, 2)} | {fmt(self.input_error, 2)} "
                f"| {fmt(self.ratio)} | {fmt(self.unrestored_fraction)} |" + ident(self)]
        for k, t in sorted(self.per_track.items()):
            rows.append(f"| track {k} | {t.frames} | {t.pairs} | {fmt(t.restored_error, 2)} "
                        f"| {fmt(t.input_error, 2)} | {fmt(t.ratio)} "
                        f"| {fmt(t.unrestored_fraction)} |" + ident(t))
        return "\n".join(rows)


# --------------------------------------------------------------------------- streaming measure


def measure(
    input_frames: Iterable[np.ndarray],
    restored_frames: Iterable[np.ndarray],
    face_regions: Iterable[Sequence[FaceRegion]] | None = None,
    config: FlickerConfig = FlickerConfig(),
) -> TemporalReport:
    """Warping-error ratio of ``restored_frames`` against ``input_frames``, streamed in lock-step.

    Args:
        input_frames, restored_frames: uint8 RGB (H, W, 3) frames of the same size and count.
        face_regions: per input frame, the :class:`FaceRegion` list of its faces; the error is then
            measured inside the (enlarged) face boxes of frame ``t`` for each pair (t-1, t), overall
            and per track, and unrestored faces are counted. None = whole frames, no face results.
        config: see :class:`FlickerConfig`; ``config.identity`` needs ``face_regions``.

    Raises:
        ValueError: the streams differ in frame size or in length (callers with files turn this
            into an FfvError naming the file).
        identity.IdentityUnavailable: ``config.identity`` without dlib or its weights.
    """
    from framefusion_video.faces.tracking import is_scene_cut

    if config.identity:
        if face_regions is None:
            raise ValueError("identity drift is measured on faces: give face_regions")
        from framefusion_video.evaluation.identity import check_available

        check_available()
    report = TemporalReport()
    drift = _IdentityDrift() if config.identity else None
    sums = [0.0, 0.0]  # restored, input
    regions_iter: Iterator = iter(face_regions) if face_regions is not None else itertools.repeat(None)
    prev_in = prev_out = None
    sentinel = object()
    for t, (inp, out, regions) in enumerate(itertools.zip_longest(input_frames, restored_frames, regions_iter,
                                                                  fillvalue=sentinel)):
        if inp is sentinel or out is sentinel:
            if inp is sentinel and out is sentinel:
                break  # regions longer than the frames: ignore the rest
            which = "restored" if inp is sentinel else "input"
            raise ValueError(f"the {which} video has more frames than the other (from frame {t})")
        if regions is sentinel:
            raise ValueError(f"no face regions for frame {t}")
        if inp.shape != out.shape:
            raise ValueError(f"frame {t}: input is {inp.shape[1]}x{inp.shape[0]}, restored is "
                             f"{out.shape[1]}x{out.shape[0]}")
        report.frames += 1
        if regions is not None:
            _count_unrestored(report, inp, out, regions, config)
            if drift is not None and t % config.identity_every == 0:
                drift.add(report, inp, out, regions)
        if prev_in is not None and (regions is None or regions):
            if config.skip_scene_cuts and is_scene_cut(prev_in, inp, config.scene_cut_threshold):
                report.scene_cuts += 1
            else:
                _measure_pair(report, sums, prev_in, inp, prev_out, out, regions, config)
        prev_in, prev_out = inp, out
    report.ratio = _ratio(*sums)
    if report.pixels:
        report.restored_error, report.input_error = sums[0] / report.pixels, sums[1] / report.pixels
    if drift is not None:
        drift.finish(report)
    for track in report.per_track.values():
        track.ratio = _ratio(track.restored_error, track.input_error)
        if track.pixels:
            track.restored_error /= track.pixels
            track.input_error /= track.pixels
        else:
            track.restored_error = track.input_error = None
    log.debug("flicker: %d frames, %d pairs, ratio %s", report.frames, report.pairs, report.ratio)
    return report


def _measure_pair(report: TemporalReport, sums: list[float], prev_in, inp, prev_out, out,
                  regions: Sequence[FaceRegion] | None, cfg: FlickerConfig) -> None:
    """Add one pair's warping errors (flow, mask and regions from the input) to the report."""
    f_bw = flow(prev_in, inp, cfg.flow_max_side)   # on inp's grid, towards prev_in
    f_fw = flow(inp, prev_in, cfg.flow_max_side)   # on prev_in's grid, towards inp
    mask = valid_flow_mask(f_bw, f_fw, cfg.consistency_alpha, cfg.consistency_beta)
    shape = inp.shape[:2]
    region = None if regions is None else box_mask(shape, [r.box for r in regions], cfg.box_scale)
    valid = mask if region is None else mask & region
    n = int(valid.sum())
    if n == 0:
        return
    err_out = warping_errors(prev_out, out, f_bw)
    err_in = warping_errors(prev_in, inp, f_bw)
    report.pairs += 1
    report.pixels += n
    sums[0] += float(err_out[valid].sum(dtype=np.float64))
    sums[1] += float(err_in[valid].sum(dtype=np.float64))
    for r in regions or ():
        track_valid = mask & box_mask(shape, [r.box], cfg.box_scale)
        k = int(track_valid.sum())
        if k == 0:
            continue
        track = report.per_track.setdefault(r.track_id, TrackReport())
        track.pairs += 1
        track.pixels += k
        track.restored_error += float(err_out[track_valid].sum(dtype=np.float64))
        track.input_error += float(err_in[track_valid].sum(dtype=np.float64))


class _IdentityDrift:
    """Identity distances of one measurement, frame by frame: each track's first restored and input
    descriptors (the references of the drift) and the running sums, overall and per track."""

    def __init__(self) -> None:
        self.first: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.sums = np.zeros(3)  # to input, drift, input's drift

    def add(self, report: TemporalReport, inp: np.ndarray, out: np.ndarray, regions: Sequence[FaceRegion]) -> None:
        from framefusion_video.evaluation.identity import descriptor, distance

        h, w = inp.shape[:2]
        for r in regions:
            x0, y0, x1, y1 = r.box
            if not r.visible or min(x1, w) - max(x0, 0) < 8 or min(y1, h) - max(y0, 0) < 8:  # mostly outside
                continue
            d_in, d_out = descriptor(inp, r.box), descriptor(out, r.box)
            first_out, first_in = self.first.setdefault(r.track_id, (d_out, d_in))
            values = [distance(d_out, d_in), distance(d_out, first_out), distance(d_in, first_in)]
            track = report.per_track.setdefault(r.track_id, TrackReport())
            if track.identity_frames == 0:
                track.identity_to_input = track.identity_drift = track.input_identity_drift = 0.0
            track.identity_frames += 1
            track.identity_to_input += values[0]
            track.identity_drift += values[1]
            track.input_identity_drift += values[2]
            report.identity_frames += 1
            self.sums += values

    def finish(self, report: TemporalReport) -> None:
        """Turn the sums into means."""
        if report.identity_frames:
            report.identity_to_input, report.identity_drift, report.input_identity_drift = (
                float(v) for v in self.sums / report.identity_frames)
        for track in report.per_track.values():
            if track.identity_frames:
                n = track.identity_frames
                track.identity_to_input /= n
                track.identity_drift /= n
                track.input_identity_drift /= n


def _count_unrestored(report: TemporalReport, inp: np.ndarray, out: np.ndarray,
                      regions: Sequence[FaceRegion], cfg: FlickerConfig) -> None:
    """Update the per-track frame counts and the unrestored counts of one frame."""
    shape = inp.shape[:2]
    diff = _abs_diff(out, inp)
    outside = ~box_mask(shape, [r.box for r in regions], cfg.box_scale)
    floor = float(diff[outside].mean()) if outside.any() else 0.0
    any_visible = any_unrestored = False
    for r in regions:
        track = report.per_track.setdefault(r.track_id, TrackReport())
        track.frames += 1
        if not r.visible:
            continue
        inside = box_mask(shape, [r.box])
        if not inside.any():
            continue
        any_visible = True
        track.visible_frames += 1
        if is_unrestored(float(diff[inside].mean()), floor, cfg.unrestored_threshold):
            track.unrestored_frames += 1
            any_unrestored = True
    report.face_frames += any_visible
    report.unrestored_frames += any_unrestored


# --------------------------------------------------------------------------- files


def regions_from_tracked(faces: Iterable) -> list[FaceRegion]:
    """:class:`FaceRegion` values from ``tracking.TrackedFace`` values (visible = detected)."""
    from framefusion_video.faces.tracking import DETECTED

    return [FaceRegion(tf.track_id, tf.face.box, tf.source == DETECTED) for tf in faces]


def measure_videos(
    input_path: str | os.PathLike,
    restored_path: str | os.PathLike,
    config: FlickerConfig = FlickerConfig(),
    *,
    faces: bool = True,
    detector=None,
) -> TemporalReport:
    """:func:`measure` on two video files, decoded in lock-step (two frames of each held).

    Faces are detected and tracked on the input (``tracking.track_faces`` with its default
    configuration); ``faces=False`` measures whole frames instead. ``detector`` (anything with
    ``detect(frame) -> [Face]``) is borrowed if given, else a ``faces.FaceDetector`` is opened.

    Raises:
        FfvError: either file cannot be read, or they differ in frame size or frame count (the
            restored video must be the input restored at upscale 1).
    """
    from framefusion_video.video.decode import read_frames
    from framefusion_video.video.probe import probe

    info_in, info_out = probe(input_path), probe(restored_path)
    if (info_in.width, info_in.height) != (info_out.width, info_out.height):
        raise FfvError(restored_path, f"frame size {info_out.width}x{info_out.height} differs from the input's "
                                      f"{info_in.width}x{info_in.height} (compare at upscale 1)")
    if info_in.n_frames is not None and info_out.n_frames is not None and info_in.n_frames != info_out.n_frames:
        raise FfvError(restored_path, f"has {info_out.n_frames} frames, the input {input_path} has {info_in.n_frames}")
    owned = None
    inputs = read_frames(input_path, info_in)
    restored = read_frames(restored_path, info_out)
    tracked = None
    try:
        regions = None
        if faces:
            from framefusion_video.faces.tracking import TrackingConfig, track_faces

            if detector is None:
                from framefusion_video.faces.detection import FaceDetector

                owned = detector = FaceDetector()
            tracked = track_faces(inputs, detector, TrackingConfig())
            # tee holds at most one item: measure() consumes both copies in lock-step.
            frames_copy, faces_copy = itertools.tee(tracked)
            inputs_for_measure = (frame for frame, _ in frames_copy)
            regions = (regions_from_tracked(fs) for _, fs in faces_copy)
        else:
            inputs_for_measure = inputs
        try:
            return measure(inputs_for_measure, restored, regions, config)
        except ValueError as exc:
            raise FfvError(restored_path, f"does not match the input {input_path}: {exc}") from exc
    finally:
        if tracked is not None:
            tracked.close()
        inputs.close()
        restored.close()
        if owned is not None:
            owned.close()
