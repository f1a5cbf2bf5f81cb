"""Face detection and 5-point landmarks with MediaPipe (legacy ``mp.solutions`` API, 0.10.21).

Everything MediaPipe-specific lives here, behind :class:`FaceDetector`, so that the detector can be
swapped later. The rest of ffv only sees :class:`Face` values: a box, five landmarks in the order of
:mod:`framefusion_video.faces.alignment`, a score and a size.

Pipeline per frame:
1. the short-range detector (close faces) and the full-range detector (faces up to ~5 m) both run on
   the whole frame; optionally the full-range one also runs on overlapping tiles of big frames, which
   finds the small faces of a 1080p crowd that a 192-pixel model input cannot resolve;
2. the candidates are merged by non-maximum suppression;
3. faces big enough get their landmarks refined by FaceMesh on a crop around the box (eye centres =
   mean of the eye contour, nose tip, mouth corners 61/291); the others keep the detector key points,
   with the mouth corners estimated by :func:`alignment.five_points_from_keypoints`.

MediaPipe names eyes from the subject's point of view: its "RIGHT_EYE" is the eye on the image's
LEFT, which is landmark 0 in ffv.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import sys
import types
from dataclasses import dataclass

import cv2
import numpy as np

from framefusion_video.faces import alignment

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]

# MediaPipe FaceDetection key point indices (FaceKeyPoint enum): subject's right eye first.
_KP_RIGHT_EYE, _KP_LEFT_EYE, _KP_NOSE_TIP, _KP_MOUTH_CENTER = 0, 1, 2, 3

# FaceMesh (468 points) indices. "Right" = subject's right = image left.
_MESH_RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
_MESH_LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
_MESH_NOSE_TIP = 1
_MESH_MOUTH_IMAGE_LEFT, _MESH_MOUTH_IMAGE_RIGHT = 61, 291


@dataclass(frozen=True)
class FaceDetectorConfig:
    """Options of :class:`FaceDetector`; the defaults suit 360p-1080p footage at video speed.

    Attributes:
        min_confidence: detector score threshold in [0, 1].
        short_range: run MediaPipe's short-range model (faces within ~2 m: close-ups, selfies).
        full_range: run the full-range model (faces up to ~5 m, smaller in the frame).
        tile_grid: if > 1, also run the full-range model on ``tile_grid`` x ``tile_grid`` overlapping
            tiles of frames whose longer side is at least ``tile_min_side`` (1080p and up); finds
            small faces in crowds (about three times as many on the shared 1080p crowd clip) at
            ``tile_grid**2`` times the full-range cost (~5 ms a tile). 1 = off.
        tile_min_side: longer frame side (px) from which tiling applies.
        tile_overlap: overlap of neighbouring tiles, as a fraction of the tile side.
        nms_iou: candidates overlapping a better one by more than this IoU are dropped (also when
            more than ``nms_containment`` of the smaller box lies inside the better one: a face cut
            by a tile border).
        nms_containment: see ``nms_iou``.
        use_mesh: refine the landmarks of faces of at least ``mesh_min_face`` px with FaceMesh.
        mesh_min_face: box side (px) from which FaceMesh is used.
        mesh_margin: FaceMesh crop side as a multiple of the box side.
        min_face: faces whose box side (px) is smaller are ignored. 0 = keep all.
        max_faces: keep only the largest N faces. 0 = keep all.
    """

    min_confidence: float = 0.5
    short_range: bool = True
    full_range: bool = True
    tile_grid: int = 2
    tile_min_side: int = 1600
    tile_overlap: float = 0.25
    nms_iou: float = 0.3
    nms_containment: float = 0.7
    use_mesh: bool = True
    mesh_min_face: float = 40.0
    mesh_margin: float = 2.0
    min_face: float = 0.0
    max_faces: int = 0


@dataclass(frozen=True, eq=False)
class Face:
    """One face in one frame.

    Attributes:
        box: (x0, y0, x1, y1), float frame pixels.
        landmarks: float32 (5, 2) frame pixels, ffv order (image-left eye, image-right eye, nose tip,
            image-left mouth corner, image-right mouth corner).
        score: detector confidence in [0, 1].
        size: face scale in px, the side of the square with the box's area; computed from ``box``
            when left at 0.
    """

    box: Box
    landmarks: np.ndarray
    score: float = 1.0
    size: float = 0.0

    def __post_init__(self) -> None:
        lm = np.asarray(self.landmarks, dtype=np.float32)
        if lm.shape != (5, 2):
            raise ValueError(f"landmarks must be (5, 2), got {lm.shape}")
        object.__setattr__(self, "landmarks", lm)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        if not self.size:
            object.__setattr__(self, "size", box_side(self.box))


def box_side(box: Box) -> float:
    """Side (px) of the square with the area of ``box`` (x0, y0, x1, y1); 0 for an empty box."""
    w, h = max(0.0, box[2] - box[0]), max(0.0, box[3] - box[1])
    return math.sqrt(w * h)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes, in [0, 1]."""
    inter = _intersection(a, b)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _intersection(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def non_max_suppression(boxes: list[Box], scores: list[float], iou: float, containment: float = 1.0) -> list[int]:
    """Indices of the boxes kept, best score first.

    A box is dropped when it overlaps a kept one by IoU > ``iou`` or when more than ``containment`` of
    its own area lies inside a kept one (a partial face cut by a tile border).
    """
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        a = boxes[i]
        area = max(1e-9, (a[2] - a[0]) * (a[3] - a[1]))
        if all(box_iou(a, boxes[k]) <= iou and _intersection(a, boxes[k]) / area <= containment for k in kept):
            kept.append(i)
    return kept


def tile_windows(width: int, height: int, grid: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """``grid`` x ``grid`` overlapping windows (x0, y0, x1, y1) covering a width x height frame."""
    xs = [_span(width, grid, overlap, i) for i in range(grid)]
    ys = [_span(height, grid, overlap, i) for i in range(grid)]
    return [(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]


def _span(length: int, grid: int, overlap: float, index: int) -> tuple[int, int]:
    """(start, end) of tile ``index``: ``grid`` tiles of side t, overlapping by ``overlap * t``."""
    tile = length / (grid - (grid - 1) * overlap)
    start = index * tile * (1.0 - overlap)
    return int(round(start)), int(round(min(length, start + tile)))


def mesh_five_points(mesh_xy: np.ndarray) -> np.ndarray:
    """ffv's 5 landmarks (float32 (5, 2)) from FaceMesh points (float (468+, 2), same pixels).

    Eye centres are the mean of each eye contour (steadier than the iris, which follows the gaze).
    """
    pts = np.asarray(mesh_xy, dtype=np.float32)
    return np.stack([
        pts[list(_MESH_RIGHT_EYE)].mean(0),   # subject's right = image left
        pts[list(_MESH_LEFT_EYE)].mean(0),
        pts[_MESH_NOSE_TIP],
        pts[_MESH_MOUTH_IMAGE_LEFT],
        pts[_MESH_MOUTH_IMAGE_RIGHT],
    ]).astype(np.float32)


class _Deferred(types.ModuleType):
    """Stands in for a module while mediapipe loads; the real one is imported on first use."""

    def __getattr__(self, name: str):
        return getattr(importlib.import_module(self.__name__), name)


def import_mediapipe():
    """``import mediapipe``, without letting it import TensorFlow or matplotlib.

    mediapipe 0.10.21's ``tasks`` package imports TensorFlow (when installed) only for a
    documentation decorator and falls back to a no-op without it. That import costs 3-4 s, most of
    ``ffv restore``'s start-up when the generator runs on LiteRT, so TensorFlow is hidden while
    mediapipe loads, unless something has imported it already. Its drawing helpers import
    ``matplotlib.pyplot`` (0.45 s, a third of what is left of the start-up) for a plotting
    function ffv never calls: pyplot is deferred to its first use instead.
    """
    if "mediapipe" in sys.modules or "tensorflow" in sys.modules:
        import mediapipe

        return mediapipe
    hidden: dict[str, object] = {"tensorflow": None}  # None makes `import tensorflow` fail
    if "matplotlib" not in sys.modules:
        pyplot = _Deferred("matplotlib.pyplot")
        parent = _Deferred("matplotlib")
        parent.pyplot = pyplot  # `import matplotlib.pyplot as plt` takes the attribute
        hidden.update({"matplotlib": parent, "matplotlib.pyplot": pyplot})
    sys.modules.update(hidden)  # type: ignore[arg-type]
    try:
        import mediapipe
    finally:
        for name, stand_in in hidden.items():
            if sys.modules.get(name, 0) is stand_in:
                del sys.modules[name]
    return mediapipe


class FaceDetector:
    """MediaPipe face detection and landmarks; use as a context manager (closes the graphs).

    Not thread-safe: one detector per thread.
    """

    def __init__(self, config: FaceDetectorConfig = FaceDetectorConfig()) -> None:
        mp = import_mediapipe()
        self.config = config
        fd = mp.solutions.face_detection
        self._short = fd.FaceDetection(model_selection=0, min_detection_confidence=config.min_confidence) \
            if config.short_range else None
        self._full = fd.FaceDetection(model_selection=1, min_detection_confidence=config.min_confidence) \
            if (config.full_range or config.tile_grid > 1) else None
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False,
            min_detection_confidence=0.3) if config.use_mesh else None

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe graphs; idempotent."""
        for name in ("_short", "_full", "_mesh"):
            graph = getattr(self, name, None)
            if graph is not None:
                graph.close()
                setattr(self, name, None)

    def detect(self, frame: np.ndarray) -> list[Face]:
        """All faces in ``frame`` (uint8 RGB (H, W, 3)), largest first; [] when there is none."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB (H, W, 3) frame, got {frame.dtype} {frame.shape}")
        frame = np.ascontiguousarray(frame)
        cfg = self.config
        h, w = frame.shape[:2]
        candidates: list[tuple[Box, float, np.ndarray]] = []
        if self._short is not None:
            candidates += _run_detector(self._short, frame, (0, 0))
        if self._full is not None and cfg.full_range:
            candidates += _run_detector(self._full, frame, (0, 0))
        if self._full is not None and cfg.tile_grid > 1 and max(h, w) >= cfg.tile_min_side:
            for x0, y0, x1, y1 in tile_windows(w, h, cfg.tile_grid, cfg.tile_overlap):
                candidates += _run_detector(self._full, np.ascontiguousarray(frame[y0:y1, x0:x1]), (x0, y0))
        keep = non_max_suppression([c[0] for c in candidates], [c[1] for c in candidates],
                                   cfg.nms_iou, cfg.nms_containment)
        faces = []
        for i in keep:
            # Average the kept detection with its duplicates (the other model, the other tile): the
            # two models' boxes differ, and picking one or the other per frame would make it jitter.
            group = [c for c in candidates if box_iou(c[0], candidates[i][0]) > cfg.nms_iou]
            weights = np.array([c[1] for c in group])
            box = tuple(np.average(np.array([c[0] for c in group]), axis=0, weights=weights))
            landmarks = np.average(np.stack([c[2] for c in group]), axis=0, weights=weights)
            face = Face(box=box, landmarks=landmarks, score=candidates[i][1])
            if face.size < max(cfg.min_face, 1.0):
                continue
            faces.append(face)
        faces.sort(key=lambda f: -f.size)
        if cfg.max_faces > 0:
            faces = faces[: cfg.max_faces]
        if self._mesh is not None:
            faces = [self._refine(frame, f) if f.size >= cfg.mesh_min_face else f for f in faces]
        return faces

    def _refine(self, frame: np.ndarray, face: Face) -> Face:
        """``face`` with FaceMesh landmarks, or unchanged when the mesh does not find it."""
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = face.box
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        half = 0.5 * self.config.mesh_margin * max(x1 - x0, y1 - y0)
        cx0, cy0 = max(0, int(cx - half)), max(0, int(cy - half))
        cx1, cy1 = min(w, int(math.ceil(cx + half))), min(h, int(math.ceil(cy + half)))
        crop = frame[cy0:cy1, cx0:cx1]
        if crop.shape[0] < 8 or crop.shape[1] < 8:
            return face
        # FaceMesh's own detector needs a few pixels to work with: upscale small crops.
        scale = max(1.0, 192.0 / max(crop.shape[:2]))
        if scale > 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        result = self._mesh.process(np.ascontiguousarray(crop))
        if not result.multi_face_landmarks:
            return face
        ch, cw = crop.shape[:2]
        mesh = np.array([(p.x * cw, p.y * ch) for p in result.multi_face_landmarks[0].landmark], dtype=np.float32)
        points = mesh_five_points(mesh) / np.float32(scale) + np.float32([cx0, cy0])
        if not mesh_agrees(points, face):
            logger.debug("FaceMesh disagrees with the detector at %s; keeping key points", face.box)
            return face
        return dataclasses.replace(face, landmarks=points)


def mesh_agrees(points: np.ndarray, face: Face) -> bool:
    """Whether FaceMesh's five points (float (5, 2), frame pixels) may replace ``face``'s key points.

    The mesh may lock on another face in its crop, or scatter its points on a tilted or blurred
    head (a mouth corner far outside the face): its eyes must lie within a quarter of the face size
    of the detector's, its centre inside the box, and the five points must fit the box as a face
    (``alignment.landmark_problem``). Otherwise the detector's key points are kept.
    """
    x0, y0, x1, y1 = face.box
    if float(np.abs(points - face.landmarks)[[0, 1]].max()) > 0.25 * face.size:
        return False
    if not (x0 <= points[:, 0].mean() <= x1 and y0 <= points[:, 1].mean() <= y1):
        return False
    return alignment.landmark_problem(points, face.box) is None


def _run_detector(graph, image: np.ndarray, offset: tuple[int, int]) -> list[tuple[Box, float, np.ndarray]]:
    """(box, score, landmarks) of each detection of ``graph`` on ``image``, in frame pixels."""
    result = graph.process(image)
    if not result.detections:
        return []
    h, w = image.shape[:2]
    ox, oy = offset
    out = []
    for det in result.detections:
        rb = det.location_data.relative_bounding_box
        box = (ox + rb.xmin * w, oy + rb.ymin * h, ox + (rb.xmin + rb.width) * w, oy + (rb.ymin + rb.height) * h)
        kp = [(ox + k.x * w, oy + k.y * h) for k in det.location_data.relative_keypoints]
        landmarks = alignment.five_points_from_keypoints(
            kp[_KP_RIGHT_EYE], kp[_KP_LEFT_EYE], kp[_KP_NOSE_TIP], kp[_KP_MOUTH_CENTER])
        out.append((box, float(det.score[0]), landmarks))
    return out
