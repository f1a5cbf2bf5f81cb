"""Face identities across frames, landmark smoothing without lag, carry-over, scene cuts.

:func:`track_faces` is a streaming generator: it reads frames, runs a detector on every
``detect_every``-th one, links the detections of consecutive frames into tracks (greedy IoU
matching) and yields every frame, in order, with its :class:`TrackedFace` list. It holds back
``lookahead`` frames, so that it can

- smooth each track with a *centred* window (a local linear fit over the frames before and after):
  noise is averaged out while a face moving at constant speed is followed with no lag; the
  correction is capped at a few percent of the face size, so that a sudden, jerky movement is
  followed rather than smoothed away (a restored face pasted off the real one is worse than jitter);
- fill a gap of a few frames where the detector missed a face by linear interpolation between the
  detections on either side, instead of letting the restored face blink.

Between detections (``detect_every`` > 1) and for a face the detector lost without finding it again
within the look-ahead, the landmarks follow sparse optical flow (Lucas-Kanade on corners of the
face region) or, when that fails, are held, for at most ``max_missing`` missed detections. All
tracks end at a scene cut (an HSV-histogram jump between consecutive frames), so nothing is
smoothed or carried across a cut. Memory is bounded by the look-ahead, not by the clip length.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from framefusion_video.faces.detection import Box, Face, box_iou

logger = logging.getLogger(__name__)

# Sources of a tracked face's landmarks in one frame.
DETECTED = "detected"          # the detector found it in this frame
TRACKED = "tracked"            # no detection ran on this frame: optical flow from the previous one
INTERPOLATED = "interpolated"  # the detector missed it, found it again later: linear interpolation
CARRIED = "carried"            # missed by the detector (or lost by the flow) and not found again
                               # within the look-ahead: moved by flow, else held


class Detector(Protocol):
    """Anything with ``detect(frame) -> list[Face]`` (:class:`faces.FaceDetector`, or a fake)."""

    def detect(self, frame: np.ndarray) -> list[Face]: ...


@dataclass(frozen=True)
class TrackingConfig:
    """Options of :func:`track_faces`.

    Attributes:
        detect_every: run the detector on one frame in N (and on every scene cut); the frames in
            between follow optical flow, or, where the flow fails or is off, are interpolated
            between detections when ``lookahead >= detect_every - 1`` (else held). 1 = every frame.
        max_missing: consecutive missed detections after which a track ends; until then its face
            is carried over (interpolated when found again within the look-ahead).
        iou_match: minimum IoU between a track's last box and a detection to continue the track.
        lookahead: frames held back (output delay); bounds the centred smoothing window and the
            gaps that can be interpolated. 0 = no delay (causal, then smoothing only looks back).
        smooth_radius: half-width (frames) of the centred smoothing window; 0 = no smoothing.
        max_correction: the most smoothing may move a point away from its observed place, as a
            fraction of the face size. Jitter is a pixel or two; a fast, jerky head movement
            (which a local line does not fit) is followed instead of being smoothed away.
        scene_cut_threshold: Bhattacharyya distance between the HSV histograms of consecutive
            frames above which a scene cut is declared (cuts measure ~0.4-0.6, motion < 0.2).
        optical_flow: follow faces with Lucas-Kanade flow between detections; False = hold them.
        min_hits: a track must have been detected this many times before it is carried over a
            missed detection (a one-frame false positive is not carried).
    """

    detect_every: int = 1
    max_missing: int = 3
    iou_match: float = 0.3
    lookahead: int = 3
    smooth_radius: int = 3
    max_correction: float = 0.04
    scene_cut_threshold: float = 0.3
    optical_flow: bool = True
    min_hits: int = 2

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.lookahead < 0 or self.smooth_radius < 0 or self.max_missing < 0:
            raise ValueError("lookahead, smooth_radius and max_missing must be >= 0")


@dataclass(frozen=True, eq=False)
class TrackedFace:
    """A face in one frame with its identity.

    Attributes:
        track_id: identity, stable while the face is tracked; new after a scene cut or a loss.
        face: the face with smoothed box and landmarks (frame pixels).
        carried: True when the detector did not find this face in this frame (tracked by flow,
            interpolated or held).
        source: one of ``"detected"``, ``"tracked"``, ``"interpolated"``, ``"carried"``.
    """

    track_id: int
    face: Face
    carried: bool = False
    source: str = DETECTED


# --------------------------------------------------------------------------- pure helpers


def match_boxes(track_boxes: Sequence[Box], detection_boxes: Sequence[Box], min_iou: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by IoU: pairs (track index, detection index), best IoU first.

    Pairs with IoU < ``min_iou`` are never made. Greedy is optimal enough here: faces in a frame
    rarely overlap, so each track has at most one plausible detection.
    """
    pairs = [(box_iou(t, d), i, j) for i, t in enumerate(track_boxes) for j, d in enumerate(detection_boxes)]
    pairs.sort(key=lambda p: -p[0])
    used_t, used_d, out = set(), set(), []
    for iou, i, j in pairs:
        if iou < min_iou or iou <= 0.0:
            break
        if i not in used_t and j not in used_d:
            used_t.add(i)
            used_d.add(j)
            out.append((i, j))
    return out


def interpolate(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """Linear interpolation ``(1 - alpha) * a + alpha * b`` of two same-shape arrays (landmarks)."""
    a = np.asarray(a, dtype=np.float64)
    return a + float(alpha) * (np.asarray(b, dtype=np.float64) - a)


def smooth_at(times: np.ndarray, values: np.ndarray, t: float, radius: int) -> np.ndarray:
    """Value at time ``t`` of a weighted local linear fit of ``values`` against ``times``.

    ``times`` (N,) frame indices, ``values`` (N, D); samples farther than ``radius`` from ``t`` are
    ignored, the others weighted by a triangle 1 - |dt| / (radius + 1). A straight line (constant
    speed) is reproduced exactly, whatever the window's asymmetry, so the fit does not lag; noise is
    averaged over up to 2 * radius + 1 samples. Returns float64 (D,).
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64).reshape(len(times), -1)
    dt = times - float(t)
    near = np.abs(dt) <= radius
    if not near.any():
        raise ValueError("no sample within the smoothing radius")
    dt, values = dt[near], values[near]
    w = 1.0 - np.abs(dt) / (radius + 1.0)
    if len(dt) < 2 or np.ptp(dt) == 0:
        return (w[:, None] * values).sum(0) / w.sum()
    # Weighted least squares of values = c0 + c1 * dt; the answer at t is c0.
    sw, swx, swxx = w.sum(), (w * dt).sum(), (w * dt * dt).sum()
    swy, swxy = (w[:, None] * values).sum(0), (w[:, None] * dt[:, None] * values).sum(0)
    det = sw * swxx - swx * swx
    return (swxx * swy - swx * swxy) / det


def limit_correction(raw: np.ndarray, smoothed: np.ndarray, max_shift: float) -> np.ndarray:
    """``smoothed`` points (float (N, 2) or flat (2N,)) pulled back to within ``max_shift`` px of ``raw``.

    Each point keeps the direction of its smoothing correction; only its length is capped.
    """
    raw = np.asarray(raw, dtype=np.float64)
    shift = np.asarray(smoothed, dtype=np.float64).reshape(-1, 2) - raw.reshape(-1, 2)
    norm = np.linalg.norm(shift, axis=1, keepdims=True)
    scale = np.minimum(1.0, max_shift / np.maximum(norm, 1e-12))
    return (raw.reshape(-1, 2) + shift * scale).reshape(raw.shape)


def frame_signature(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour signature of a uint8 RGB frame: normalised H-S (16x8) and V (16) histograms of a
    64x64 thumbnail. Cheap (a fraction of a millisecond) and insensitive to motion."""
    # Every k-th pixel first: an area resize straight from 720p to 64x64 took 3.4 ms a frame.
    step = max(1, min(frame.shape[0], frame.shape[1]) // 128)
    small = cv2.resize(frame[::step, ::step], (64, 64), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hs = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    v = cv2.calcHist([hsv], [2], None, [16], [0, 256])
    return hs / max(1.0, float(hs.sum())), v / max(1.0, float(v.sum()))


def signature_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Bhattacharyya distance in [0, 1] between two :func:`frame_signature` values (max over H-S, V)."""
    return max(float(cv2.compareHist(x, y, cv2.HISTCMP_BHATTACHARYYA)) for x, y in zip(a, b))


def is_scene_cut(prev_frame: np.ndarray, frame: np.ndarray, threshold: float) -> bool:
    """True when ``frame`` starts a new shot after ``prev_frame`` (both uint8 RGB (H, W, 3))."""
    return signature_distance(frame_signature(prev_frame), frame_signature(frame)) > threshold


def flow_transform(prev_gray: np.ndarray, gray: np.ndarray, box: Box, points: np.ndarray | None = None) -> np.ndarray | None:
    """Similarity transform (float64 (2, 3)) following the face in ``box`` from one frame to the next.

    Lucas-Kanade flow of corners found in ``box`` (plus ``points``, e.g. the landmarks), kept when
    the forward-backward error is below a pixel, fitted with RANSAC. Works on a crop around the box,
    so its cost does not depend on the frame size. None when too few points can be followed.
    ``prev_gray`` and ``gray`` are uint8 (H, W) frames of the same size.
    """
    h, w = gray.shape[:2]
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 8.0)
    cx0, cy0 = int(max(0, x0 - 0.5 * side)), int(max(0, y0 - 0.5 * side))
    cx1, cy1 = int(min(w, x1 + 0.5 * side)), int(min(h, y1 + 0.5 * side))
    if cx1 - cx0 < 16 or cy1 - cy0 < 16:
        return None
    a, b = prev_gray[cy0:cy1, cx0:cx1], gray[cy0:cy1, cx0:cx1]
    mask = np.zeros_like(a)
    bx0, by0 = int(max(0, x0 - cx0)), int(max(0, y0 - cy0))
    mask[by0:int(y1 - cy0), bx0:int(x1 - cx0)] = 255
    corners = cv2.goodFeaturesToTrack(a, maxCorners=30, qualityLevel=0.01, minDistance=max(2.0, side / 16), mask=mask)
    pts = [] if corners is None else [corners.reshape(-1, 2)]
    if points is not None:
        pts.append(np.asarray(points, dtype=np.float32).reshape(-1, 2) - np.float32([cx0, cy0]))
    if not pts:
        return None
    p0 = np.concatenate(pts).astype(np.float32).reshape(-1, 1, 2)
    lk = dict(winSize=(15, 15), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **lk)
    good = (st1.ravel() == 1) & (st2.ravel() == 1) & (np.linalg.norm((back - p0).reshape(-1, 2), axis=1) < 1.0)
    if good.sum() < 4:
        return None
    src, dst = p0.reshape(-1, 2)[good] + [cx0, cy0], p1.reshape(-1, 2)[good] + [cx0, cy0]
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0)
    if matrix is None or inliers is None or inliers.sum() < 4:
        return None
    return matrix.astype(np.float64)


def _apply_transform(vec: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """A state vector (10 landmark coordinates + box) moved by a (2, 3) similarity transform."""
    lm = vec[:10].reshape(5, 2) @ matrix[:, :2].T + matrix[:, 2]
    x0, y0, x1, y1 = vec[10:]
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) @ matrix[:, :2].T + matrix[:, 2]
    centre, half = corners.mean(0), 0.5 * np.array([x1 - x0, y1 - y0]) * np.sqrt(abs(np.linalg.det(matrix[:, :2])))
    return np.concatenate([lm.ravel(), centre - half, centre + half])


def _to_vec(face: Face) -> np.ndarray:
    return np.concatenate([face.landmarks.astype(np.float64).ravel(), np.asarray(face.box, dtype=np.float64)])


def _to_face(vec: np.ndarray, score: float) -> Face:
    return Face(box=tuple(vec[10:]), landmarks=vec[:10].reshape(5, 2).astype(np.float32), score=score)


# --------------------------------------------------------------------------- the tracker


@dataclass
class _Obs:
    vec: np.ndarray  # float64 (14,): 5 landmarks (x, y) then the box
    score: float
    source: str


@dataclass
class _Track:
    track_id: int
    obs: dict[int, _Obs] = field(default_factory=dict)
    alive: bool = True
    hits: int = 0
    misses: int = 0
    last_real: int = -1  # frame of the latest detected / tracked / interpolated observation
    last_output: np.ndarray | None = None
    last_output_frame: int = -1

    def latest(self) -> tuple[int, _Obs]:
        t = max(self.obs)
        return t, self.obs[t]


class _Tracker:
    """State of :func:`track_faces`: tracks and the look-ahead buffer. Internal."""

    def __init__(self, detector: Detector, config: TrackingConfig) -> None:
        self.detector, self.cfg = detector, config
        self.tracks: list[_Track] = []
        self.next_id = 0
        self.prev_sig = None
        self.prev_gray: np.ndarray | None = None
        self.last_detection = -(10**9)
        self.emitted = -1  # last frame index yielded

    def ingest(self, t: int, frame: np.ndarray) -> None:
        cfg = self.cfg
        sig = frame_signature(frame)
        cut = self.prev_sig is not None and signature_distance(self.prev_sig, sig) > cfg.scene_cut_threshold
        self.prev_sig = sig
        if cut:
            logger.debug("scene cut at frame %d: ending %d tracks", t, sum(tr.alive for tr in self.tracks))
            for tr in self.tracks:
                tr.alive = False
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if cfg.optical_flow else None
        alive = [tr for tr in self.tracks if tr.alive]
        if cut or t - self.last_detection >= cfg.detect_every:
            self.last_detection = t
            self._on_detection(t, frame, gray, alive)
        else:
            for tr in alive:
                # A face the detector has lost stays "carried" until it is found again.
                self._propagate(tr, t, gray, CARRIED if tr.misses else TRACKED)
        self.prev_gray = gray

    def _on_detection(self, t: int, frame: np.ndarray, gray, alive: list[_Track]) -> None:
        cfg = self.cfg
        faces = self.detector.detect(frame)
        pairs = match_boxes([tuple(tr.latest()[1].vec[10:]) for tr in alive], [f.box for f in faces], cfg.iou_match)
        matched_t = {i for i, _ in pairs}
        for i, j in pairs:
            self._observe(alive[i], t, faces[j])
        for i, tr in enumerate(alive):
            if i in matched_t:
                continue
            tr.misses += 1
            if tr.misses > cfg.max_missing or tr.hits < cfg.min_hits:
                tr.alive = False
            else:
                self._propagate(tr, t, gray, CARRIED)
        for j in sorted(set(range(len(faces))) - {j for _, j in pairs}):
            tr = _Track(self.next_id)
            self.next_id += 1
            self.tracks.append(tr)
            self._observe(tr, t, faces[j])

    def _observe(self, tr: _Track, t: int, face: Face) -> None:
        """A detection of ``tr`` at ``t``: fill the gap since its last real observation."""
        vec = _to_vec(face)
        if tr.last_real >= 0 and t - tr.last_real > 1:
            anchor = tr.obs.get(tr.last_real)
            for g in range(max(tr.last_real + 1, self.emitted + 1), t):
                if anchor is not None and g in tr.obs:
                    alpha = (g - tr.last_real) / (t - tr.last_real)
                    tr.obs[g] = _Obs(interpolate(anchor.vec, vec, alpha), tr.obs[g].score, INTERPOLATED)
        tr.obs[t] = _Obs(vec, face.score, DETECTED)
        tr.hits += 1
        tr.misses = 0
        tr.last_real = t

    def _propagate(self, tr: _Track, t: int, gray, source: str) -> None:
        """Observation of ``tr`` at ``t`` from the previous one, moved by optical flow or held."""
        prev_t, prev = tr.latest()
        vec, matrix = prev.vec, None
        if gray is not None and self.prev_gray is not None and prev_t == t - 1:
            matrix = flow_transform(self.prev_gray, gray, tuple(vec[10:]), vec[:10].reshape(5, 2))
            if matrix is not None:
                vec = _apply_transform(vec, matrix)
        if matrix is None:
            # Lost (or no flow): held for now, interpolated if the next detection comes in time.
            source = CARRIED
        tr.obs[t] = _Obs(vec, prev.score, source)
        if source == TRACKED:
            tr.last_real = t

    def emit(self, t: int, frame: np.ndarray) -> tuple[np.ndarray, list[TrackedFace]]:
        """The faces of frame ``t``, all observations up to ``t + lookahead`` being known."""
        cfg = self.cfg
        out = []
        for tr in self.tracks:
            ob = tr.obs.get(t)
            if ob is None:
                continue
            if ob.source == CARRIED:
                # Not found again in time: follow the flow from the last output, else hold it.
                anchor = tr.obs.get(tr.last_output_frame)
                base = tr.last_output if tr.last_output is not None else ob.vec
                vec = base + (ob.vec - anchor.vec) if anchor is not None else base
            elif cfg.smooth_radius > 0:
                times = [k for k, o in tr.obs.items() if abs(k - t) <= cfg.smooth_radius and o.source != CARRIED]
                vec = smooth_at(np.array(times), np.stack([tr.obs[k].vec for k in times]), t, cfg.smooth_radius)
                vec = limit_correction(ob.vec, vec, cfg.max_correction * _to_face(ob.vec, ob.score).size)
            else:
                vec = ob.vec
            if ob.source != CARRIED:
                tr.last_output, tr.last_output_frame = vec, t
            out.append(TrackedFace(tr.track_id, _to_face(vec, ob.score), ob.source != DETECTED, ob.source))
        self.emitted = t
        self._prune(t)
        return frame, out

    def _prune(self, t: int) -> None:
        """Forget what no later frame can need: bounded memory."""
        keep_from = t - max(self.cfg.smooth_radius, 1)
        for tr in self.tracks:
            for k in [k for k in tr.obs if k < keep_from and k != tr.last_real and k != tr.last_output_frame]:
                del tr.obs[k]
        self.tracks = [tr for tr in self.tracks if tr.alive or any(k > t for k in tr.obs)]


def track_faces(
    frames: Iterable[np.ndarray], detector: Detector, config: TrackingConfig = TrackingConfig()
) -> Iterator[tuple[np.ndarray, list[TrackedFace]]]:
    """Yield ``(frame, faces)`` for every frame (uint8 RGB (H, W, 3)), in order.

    ``faces`` is a list of :class:`TrackedFace` sorted by ``track_id``. Output lags the input by
    ``config.lookahead`` frames; at most ``lookahead + 1`` frames are held at any time.
    ``detector`` is anything with ``detect(frame) -> list[Face]``.
    """
    tracker = _Tracker(detector, config)
    pending: collections.deque[tuple[int, np.ndarray]] = collections.deque()
    for t, frame in enumerate(frames):
        tracker.ingest(t, frame)
        pending.append((t, frame))
        if len(pending) > config.lookahead:
            yield tracker.emit(*pending.popleft())
    while pending:
        yield tracker.emit(*pending.popleft())
