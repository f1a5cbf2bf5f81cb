"""``ffv preview``: before/after PNGs of chosen frames and an HTML contact sheet.

Runs the same pipeline as ``ffv restore`` (:func:`restore.iter_restored`) and writes, for each
chosen frame, a PNG with the original on the left and the restored frame on the right, plus
``index.html``: thumbnails linking to the full PNGs, with frame numbers.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .errors import FfvError
from .restore import Restorer, RestoreConfig, check_input, iter_restored, load_default_restorer

log = logging.getLogger(__name__)

#: Frames exported when neither ``every`` nor ``frames`` is given.
DEFAULT_PREVIEW_FRAMES = 10
THUMB_WIDTH = 480

_BOX_COLOUR = (0, 255, 0)
_CARRIED_COLOUR = (255, 200, 0)  # a face carried over from an earlier detection
_LANDMARK_COLOURS = ((255, 0, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255))


def annotate_frame(frame: np.ndarray, faces: Sequence, scale: float = 1.0) -> np.ndarray:
    """A copy of ``frame`` (uint8 RGB (H, W, 3)) with face boxes, track ids and the 5 landmarks drawn.

    ``faces`` are ``tracking.TrackedFace`` values in the original frame's pixels; ``scale`` maps
    them onto ``frame`` (the upscale factor).
    """
    out = np.ascontiguousarray(frame).copy()
    thickness = max(1, round(min(out.shape[:2]) / 360))
    for tracked in faces:
        face = tracked.face
        colour = _CARRIED_COLOUR if getattr(tracked, "carried", False) else _BOX_COLOUR
        x0, y0, x1, y1 = (int(round(v * scale)) for v in face.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thickness, cv2.LINE_AA)
        label = f"#{tracked.track_id} {face.score:.2f}"
        cv2.putText(out, label, (x0, max(y0 - 4 * thickness, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, colour, thickness, cv2.LINE_AA)
        for (x, y), point_colour in zip(np.asarray(face.landmarks) * scale, _LANDMARK_COLOURS):
            cv2.circle(out, (int(round(x)), int(round(y))), 2 * thickness, point_colour, -1, cv2.LINE_AA)
    return out


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left`` and ``right`` (uint8 (H, W, 3), same height) next to each other, 4 px apart."""
    gap = np.full((left.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def _write_image(path: Path, rgb: np.ndarray, params: Sequence[int] = ()) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params)):
        raise FfvError(path, "cannot write the image")


def _chosen_frames(n_frames: int, every: int | None, frames: Sequence[int] | None) -> set[int] | None:
    """The frame indices to export; None means every ``every``-th frame of an unknown-length clip."""
    if frames is not None:
        return {int(f) for f in frames}
    if every is None:
        every = max(1, -(-n_frames // DEFAULT_PREVIEW_FRAMES)) if n_frames else 30  # at most 10
    return None if not n_frames else set(range(0, n_frames, every))


def _write_index(out_dir: Path, entries: list[tuple[int, str, str, int]], title: str) -> Path:
    """Write ``index.html``: one thumbnail per (frame, png name, thumbnail name, faces) entry."""
    cells = "\n".join(
        f'<figure><a href="{html.escape(png)}"><img src="{html.escape(thumb)}" loading="lazy" '
        f'alt="frame {index}"></a><figcaption>frame {index} &middot; {faces} face(s)</figcaption></figure>'
        for index, png, thumb, faces in entries
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; background: #222; color: #eee; }}
main {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; }} img {{ width: {THUMB_WIDTH}px; display: block; }}
figcaption {{ font-size: 0.85em; padding: 2px 0; }} a {{ color: inherit; }}
</style></head>
<body><h1>{html.escape(title)}</h1><p>Original (left) and restored (right); click for the full frame.</p>
<main>
{cells}
</main></body></html>
"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def export_preview(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    every: int | None = None,
    frames: Sequence[int] | None = None,
    annotate: bool = False,
    config: RestoreConfig = RestoreConfig(),
    restorer: Restorer | None = None,
    detector=None,
) -> list[Path]:
    """Write before/after PNGs of some frames of ``src`` and ``index.html`` into ``out_dir``.

    Args:
        every: export frames 0, N, 2N, ...; ``frames``: export these 0-based frame numbers.
            Neither: about ``DEFAULT_PREVIEW_FRAMES`` frames spread over the clip.
        annotate: draw face boxes, track ids and landmarks on the original (left) half.
        config: the restoration options (as for ``ffv restore``).
        restorer: any object with ``crop_size`` and ``restore``; None loads ``config.model_path``.
        detector: a face detector the caller owns; None opens one for this clip.

    Returns:
        The PNG paths (``frame_000123.png``), in frame order; ``index.html`` sits beside them.

    Raises:
        FfvError: bad input video, an output folder that cannot be written, or none of the
            requested frames exists in the clip.
    """
    from .video_io import probe

    if every is not None and frames is not None:
        raise ValueError("give either every or frames, not both")
    if every is not None and every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    if frames is not None and any(int(f) < 0 for f in frames):
        raise ValueError(f"frame numbers must be 0 or more, got {list(frames)}")
    src, out_dir = Path(src), Path(out_dir)
    check_input(src)
    info = probe(src)
    try:
        (out_dir / "thumbs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FfvError(out_dir, f"cannot create the output folder ({exc.strerror or exc})") from exc
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise FfvError(out_dir, "cannot write to the output folder (permission denied)")

    n_frames = int(getattr(info, "n_frames", 0) or 0)
    chosen = _chosen_frames(n_frames, every, frames)
    step = every or 30
    wanted = (lambda i: i in chosen) if chosen is not None else (lambda i: i % step == 0)
    last = max(chosen) if chosen else None
    if restorer is None:
        restorer = load_default_restorer(config)

    written: list[Path] = []
    entries: list[tuple[int, str, str, int]] = []
    seen = 0
    stream = iter_restored(src, info, restorer, config, detector=detector, select=wanted)
    try:
        for item in stream:
            seen = item.index + 1
            if wanted(item.index):
                left = item.original
                if config.upscale != 1:
                    left = cv2.resize(left, item.restored.shape[1::-1], interpolation=cv2.INTER_CUBIC)
                if annotate:
                    left = annotate_frame(left, item.faces, scale=config.upscale)
                pair = side_by_side(left, item.restored)
                name = f"frame_{item.index:06d}.png"
                _write_image(out_dir / name, pair)
                thumb = cv2.resize(pair, (THUMB_WIDTH, max(1, round(pair.shape[0] * THUMB_WIDTH / pair.shape[1]))),
                                   interpolation=cv2.INTER_AREA)
                _write_image(out_dir / "thumbs" / f"frame_{item.index:06d}.jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 85])
                written.append(out_dir / name)
                entries.append((item.index, name, f"thumbs/frame_{item.index:06d}.jpg", item.restored_faces))
            if last is not None and item.index >= last:
                break  # the rest of the clip is not needed
    finally:
        stream.close()

    if frames is not None:
        missing = sorted(set(int(f) for f in frames) - {e[0] for e in entries})
        if missing:
            log.warning("%s: frame(s) %s not in the clip (it has %d frames)", src, missing, seen)
    if not written:
        raise FfvError(src, "none of the requested frames is in the clip")
    index = _write_index(out_dir, entries, f"ffv preview: {src.name}")
    log.info("%s: %d before/after frame(s); open %s", src, len(written), index)
    return written
