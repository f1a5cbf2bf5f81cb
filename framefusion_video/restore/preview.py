"""``ffv preview``: what ``ffv restore`` does to chosen frames, as PNGs and an HTML page.

Runs the same pipeline as ``ffv restore`` (:func:`restore.iter_restored`) and writes, for each
chosen frame:

- ``frame_NNNNNN.png``: the original on the left, the restored frame on the right;
- ``frames/frame_NNNNNN_before.png`` and ``_after.png``, which ``index.html`` shows one over the
  other with a slider (drag it to wipe between before and after at full resolution);
- ``faces/frame_NNNNNN_face_K.png``: each face close up, original | restored, enlarged, which the
  page captions with its status: restored, left alone (the generator's gate returned it unchanged)
  or refused (a safety check kept the original, ``safety.py``).
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from framefusion_video.base.errors import FfvError
from framefusion_video.base.outputs import make_output_folder, write_file, write_image
from framefusion_video.restore.clip import checked_restorer, iter_restored, load_default_restorer
from framefusion_video.restore.config import RestoreConfig
from framefusion_video.restore.pipeline import Restorer
from framefusion_video.video.probe import check_input

log = logging.getLogger(__name__)

#: Frames exported when neither ``every`` nor ``frames`` is given.
DEFAULT_PREVIEW_FRAMES = 10
#: Height (px) of each half of a face close-up: faces are enlarged (or reduced) to it.
CLOSE_UP_HEIGHT = 256
#: The region of a close-up around the face box, as a multiple of the box side.
CLOSE_UP_MARGIN = 1.4
#: Widest a frame is shown on the page (CSS px); larger frames are scaled down to fit.
PAGE_FRAME_WIDTH = 960

_BOX_COLOUR = (0, 255, 0)
_CARRIED_COLOUR = (255, 200, 0)  # a face carried over from an earlier detection
#: Box colour of each face status on annotated frames (RGB) and on the page.
STATUS_COLOURS = {"restored": (0, 220, 0), "left alone": (90, 160, 255), "refused": (255, 60, 60)}
_LANDMARK_COLOURS = ((255, 0, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255))
#: The names ffv preview writes, per sub-folder of its output folder ("" = the folder itself).
_PREVIEW_NAMES = {"": re.compile(r"index\.html|frame_\d{6}\.png"),
                  "frames": re.compile(r"frame_\d{6}_(before|after)\.png"),
                  "faces": re.compile(r"frame_\d{6}_face_\d+\.png")}


def annotate_frame(frame: np.ndarray, faces: Sequence, scale: float = 1.0, outcomes: Sequence = ()) -> np.ndarray:
    """A copy of ``frame`` (uint8 RGB (H, W, 3)) with face boxes, track ids and the 5 landmarks drawn.

    ``faces`` are ``tracking.TrackedFace`` values in the original frame's pixels; ``scale`` maps
    them onto ``frame`` (the upscale factor). ``outcomes`` (``pipeline.FaceOutcome``, same pixels)
    colour each face's box by its status (:data:`STATUS_COLOURS`) and name it in the label; faces
    without an outcome (frames not restored) keep the detection colours.
    """
    out = np.ascontiguousarray(frame).copy()
    thickness = max(1, round(min(out.shape[:2]) / 360))
    for tracked in faces:
        face = tracked.face
        colour = _CARRIED_COLOUR if getattr(tracked, "carried", False) else _BOX_COLOUR
        label = f"#{tracked.track_id} {face.score:.2f}"
        outcome = _outcome_of(face.box, outcomes)
        if outcome is not None:
            colour = STATUS_COLOURS.get(outcome.status, colour)
            label = f"#{tracked.track_id} {outcome.status}"
        x0, y0, x1, y1 = (int(round(v * scale)) for v in face.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thickness, cv2.LINE_AA)
        cv2.putText(out, label, (x0, max(y0 - 4 * thickness, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, colour, thickness, cv2.LINE_AA)
        for (x, y), point_colour in zip(np.asarray(face.landmarks) * scale, _LANDMARK_COLOURS):
            cv2.circle(out, (int(round(x)), int(round(y))), 2 * thickness, point_colour, -1, cv2.LINE_AA)
    return out


def _outcome_of(box: Sequence[float], outcomes: Sequence):
    """The outcome in ``outcomes`` whose box is ``box`` (to 0.01 px), or None."""
    for outcome in outcomes:
        if np.allclose(outcome.box, box, atol=1e-2):
            return outcome
    return None


def close_up(original: np.ndarray, restored: np.ndarray, box: Sequence[float], scale: float = 1.0,
             height: int = CLOSE_UP_HEIGHT) -> np.ndarray:
    """One face, original | restored, side by side, each resized to ``height`` px: uint8 (h, w, 3).

    ``original`` and ``restored`` are uint8 RGB frames of the same size; ``box`` (x0, y0, x1, y1)
    is in the original's pixels before upscaling by ``scale``. The region is the box's square
    grown by :data:`CLOSE_UP_MARGIN`, clipped to the frame; it is enlarged with nearest-neighbour
    sampling, so that the pixels shown are the output's own, not an interpolation of them.
    """
    x0, y0, x1, y1 = (float(v) * scale for v in box)
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    half = 0.5 * CLOSE_UP_MARGIN * max(x1 - x0, y1 - y0, 1.0)
    h, w = original.shape[:2]
    left, top = max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half)))
    right, bottom = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
    if right <= left or bottom <= top:
        left, top, right, bottom = 0, 0, w, h
    width = max(1, round((right - left) * height / (bottom - top)))
    halves = [cv2.resize(np.ascontiguousarray(img[top:bottom, left:right]), (width, height),
                         interpolation=cv2.INTER_NEAREST) for img in (original, restored)]
    return side_by_side(*halves)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left`` and ``right`` (uint8 (H, W, 3), same height) next to each other, 4 px apart."""
    gap = np.full((left.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def _chosen_frames(n_frames: int, every: int | None, frames: Sequence[int] | None) -> set[int] | None:
    """The frame indices to export; None means every ``every``-th frame of an unknown-length clip."""
    if frames is not None:
        return {int(f) for f in frames}
    if every is None:
        every = max(1, -(-n_frames // DEFAULT_PREVIEW_FRAMES)) if n_frames else 30  # at most 10
    return None if not n_frames else set(range(0, n_frames, every))


@dataclass(frozen=True)
class FaceCard:
    """One face close-up of the page: the image (relative path), status, track id and reason."""

    image: str
    status: str
    track_id: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class FrameCard:
    """One frame of the page: its number, the side-by-side PNG, the before and after images
    (relative paths), their size, and its faces."""

    index: int
    pair: str
    before: str
    after: str
    size: tuple[int, int]  # width, height
    faces: tuple[FaceCard, ...] = ()


def _status_counts(faces: Sequence[FaceCard]) -> str:
    """``"1 restored, 0 left alone, 1 refused"``, or ``"no face restored"`` when there is none."""
    if not faces:
        return "no face"
    return ", ".join(f"{sum(f.status == s for f in faces)} {s}" for s in STATUS_COLOURS)


def _css_colour(status: str) -> str:
    r, g, b = STATUS_COLOURS.get(status, (200, 200, 200))
    return f"rgb({r},{g},{b})"


def page_html(cards: Sequence[FrameCard], title: str) -> str:
    """The preview page: per frame, the face close-ups (original | restored) with their status
    first, where the difference is visible, then a before/after slider over the full frame.
    Self-contained (inline CSS and a few lines of script)."""
    sections = []
    for card in cards:
        width, height = card.size
        faces = "\n".join(
            f'<figure class="face"><img src="{html.escape(f.image)}" alt="frame {card.index} face {k}: '
            f'original and restored"><figcaption><span class="status" style="background:{_css_colour(f.status)}">'
            f'{html.escape(f.status)}</span> face #{"-" if f.track_id is None else f.track_id}'
            f'{": " + html.escape(f.reason) if f.reason else ""}</figcaption></figure>'
            for k, f in enumerate(card.faces))
        sections.append(f"""<section>
<h2>frame {card.index} &middot; {html.escape(_status_counts(card.faces))}</h2>
<div class="faces">{faces or '<p>No face in this frame.</p>'}</div>
<div class="wipe" style="max-width:{min(width, PAGE_FRAME_WIDTH)}px; aspect-ratio:{width}/{height}">
<img class="after" src="{html.escape(card.after)}" alt="frame {card.index} restored">
<img class="before" src="{html.escape(card.before)}" alt="frame {card.index} original">
<div class="line"></div>
<input type="range" min="0" max="100" value="50" aria-label="before/after, frame {card.index}">
<span class="tag left">original</span><span class="tag right">restored</span>
</div>
<p class="links"><a href="{html.escape(card.pair)}">side by side, full size</a></p>
</section>""")
    body = "\n".join(sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; background: #222; color: #eee; }}
a {{ color: #9cf; }} h2 {{ font-size: 1.1em; margin: 1.2em 0 0.4em; }}
.wipe {{ position: relative; width: 100%; overflow: hidden; background: #000; --pos: 50%; }}
.wipe img {{ position: absolute; inset: 0; width: 100%; height: 100%; display: block; }}
.wipe .before {{ clip-path: inset(0 calc(100% - var(--pos)) 0 0); }}
.wipe .line {{ position: absolute; top: 0; bottom: 0; left: var(--pos); width: 2px; background: #fff; }}
.wipe input {{ position: absolute; inset: 0; width: 100%; height: 100%; margin: 0; opacity: 0;
  cursor: ew-resize; }}
.tag {{ position: absolute; top: 6px; padding: 1px 6px; background: rgba(0,0,0,0.6); font-size: 0.8em; }}
.tag.left {{ left: 6px; }} .tag.right {{ right: 6px; }}
.faces {{ display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 10px; }}
.face {{ margin: 0; }} .face img {{ display: block; height: {CLOSE_UP_HEIGHT}px; image-rendering: pixelated; }}
.face figcaption {{ font-size: 0.85em; padding: 3px 0; }}
.status {{ color: #000; padding: 0 5px; border-radius: 3px; }}
.links {{ font-size: 0.8em; margin: 0.3em 0; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Each frame opens on its faces close up, original (left) and restored (right), enlarged, where
the difference shows; below them, drag across the frame to wipe between the original (left of the
line) and the restored frame.
<span class="status" style="background:{_css_colour("restored")}">restored</span>: pasted;
<span class="status" style="background:{_css_colour("left alone")}">left alone</span>: the generator
found nothing to improve; <span class="status" style="background:{_css_colour("refused")}">refused</span>:
a safety check kept the original.</p>
{body}
<script>
for (const wipe of document.querySelectorAll('.wipe')) {{
  const range = wipe.querySelector('input');
  range.addEventListener('input', () => wipe.style.setProperty('--pos', range.value + '%'));
}}
</script>
</body></html>
"""


def _write_index(out_dir: Path, cards: Sequence[FrameCard], title: str) -> Path:
    """Write ``index.html`` (:func:`page_html`) into ``out_dir``."""
    path = out_dir / "index.html"
    write_file(path, page_html(cards, title).encode("utf-8"), "page")
    return path


def _write_frame(out_dir: Path, item, upscale: int, annotate: bool) -> FrameCard:
    """Write one frame's images (side by side, before, after, face close-ups); its page card."""
    stem = f"frame_{item.index:06d}"
    original = item.original
    if upscale != 1:
        original = cv2.resize(original, item.restored.shape[1::-1], interpolation=cv2.INTER_CUBIC)
    left = annotate_frame(original, item.faces, scale=upscale, outcomes=item.outcomes) if annotate else original
    write_image(out_dir / f"{stem}.png", side_by_side(left, item.restored))
    before, after = f"frames/{stem}_before.png", f"frames/{stem}_after.png"
    write_image(out_dir / before, left)
    write_image(out_dir / after, item.restored)
    faces = []
    for k, outcome in enumerate(item.outcomes):
        image = f"faces/{stem}_face_{k}.png"
        write_image(out_dir / image, close_up(original, item.restored, outcome.box, scale=upscale))
        faces.append(FaceCard(image, outcome.status, outcome.track_id, outcome.reason))
    height, width = item.restored.shape[:2]
    return FrameCard(item.index, f"{stem}.png", before, after, (width, height), tuple(faces))


def _check_not_written_over(out_dir: Path, files: Sequence[Path]) -> None:
    """Raise FfvError when one of the run's ``files`` (the input, the model) has a name the preview
    writes in ``out_dir`` (:data:`_PREVIEW_NAMES`): it would be replaced."""
    for path in files:
        folder = os.path.realpath(os.path.abspath(path.parent))
        for sub, names in _PREVIEW_NAMES.items():
            if folder == os.path.realpath(out_dir / sub) and names.fullmatch(path.name):
                raise FfvError(path, f"the preview in {out_dir} would replace this file of the run; "
                                     "choose another output folder")


def _make_folders(out_dir: Path) -> None:
    """Create ``out_dir`` and its ``frames``/``faces`` sub-folders; a link planted as a sub-folder
    is refused, so that nothing is written outside ``out_dir``.

    Raises:
        FfvError: a folder cannot be created or written, or a sub-folder is a link.
    """
    for sub in ("frames", "faces"):
        folder = out_dir / sub
        if folder.is_symlink():
            raise FfvError(folder, "is a link, which ffv preview never writes through; remove it")
        make_output_folder(folder, named=out_dir)
    make_output_folder(out_dir)


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
        annotate: draw face boxes (coloured by status), track ids and landmarks on the original.
        config: the restoration options (as for ``ffv restore``).
        restorer: any object with ``crop_size`` and ``restore``; None loads ``config.model_path``.
        detector: a face detector the caller owns; None opens one for this clip.

    Returns:
        The side-by-side PNG paths (``frame_000123.png``), in frame order; ``index.html``,
        ``frames/`` (before and after) and ``faces/`` (close-ups) sit beside them.

    Raises:
        FfvError: bad input video, an output folder that cannot be written, or none of the
            requested frames exists in the clip.
    """
    from framefusion_video.video.probe import probe

    if every is not None and frames is not None:
        raise ValueError("give either every or frames, not both")
    if every is not None and every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    if frames is not None and any(int(f) < 0 for f in frames):
        raise ValueError(f"frame numbers must be 0 or more, got {list(frames)}")
    src, out_dir = Path(src), Path(out_dir)
    check_input(src)
    info = probe(src)
    _check_not_written_over(out_dir, [src] + ([Path(config.model_path)] if config.model_path else []))
    _make_folders(out_dir)

    n_frames = int(getattr(info, "n_frames", 0) or 0)
    chosen = _chosen_frames(n_frames, every, frames)
    step = every or 30
    wanted = (lambda i: i in chosen) if chosen is not None else (lambda i: i % step == 0)
    last = max(chosen) if chosen else None
    if not config.passes_through:
        restorer = load_default_restorer(config) if restorer is None else \
            checked_restorer(restorer, config.upscale, "the given restorer")

    written: list[Path] = []
    cards: list[FrameCard] = []
    seen = 0
    stream = iter_restored(src, info, restorer, config, detector=detector, select=wanted)
    try:
        for item in stream:
            seen = item.index + 1
            if wanted(item.index):
                written.append(out_dir / f"frame_{item.index:06d}.png")
                cards.append(_write_frame(out_dir, item, config.upscale, annotate))
            if last is not None and item.index >= last:
                break  # the rest of the clip is not needed
    finally:
        stream.close()

    if frames is not None:
        missing = sorted(set(int(f) for f in frames) - {c.index for c in cards})
        if missing:
            log.warning("%s: frame(s) %s not in the clip (it has %d frames)", src, missing, seen)
    if not written:
        raise FfvError(src, "none of the requested frames is in the clip")
    index = _write_index(out_dir, cards, f"ffv preview: {src.name}")
    log.info("%s: %d before/after frame(s); open %s", src, len(written), index)
    return written
