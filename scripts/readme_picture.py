"""Make the README's picture: face close-ups, original | restored, from ``ffv preview`` output.

Usage (``make readme-picture`` runs it with the demo's options; run it again when the shipped
networks change):

    .venv/bin/python scripts/readme_picture.py docs/readme_picture.png \\
        --clip samples/astronaut_small.mp4 --frame 50 --options "--upscale 4 --min-face 24" \\
        --label "demo clip" [--clip YOUR_CLIP.mp4 --frame 30 --options "--upscale 2" --label "real footage"]

Each ``--clip`` is previewed by ``ffv preview CLIP --frames FRAME OPTIONS`` (the command users
run, in a temporary folder); its close-up ``faces/frame_FRAME_face_FACE.png`` (original on the
left, restored on the right, enlarged with nearest-neighbour sampling) becomes one panel of the
picture under its label and options. Panels sit side by side, at one height.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("readme_picture")

#: Height (px) of a panel's close-up in the picture, and of each line of its label above it.
PANEL_HEIGHT = 200
LABEL_HEIGHT = 24
GAP = 8  # px between panels
BACKGROUND = 255


@dataclass(frozen=True)
class Panel:
    """One clip of the picture: which preview frame and face, the ``ffv preview`` options, and the
    label written above it."""

    clip: Path
    frame: int
    face: int
    options: tuple[str, ...]
    label: str


def preview_command(panel: Panel, out_dir: Path) -> list[str]:
    """The ``ffv preview`` command line (this Python) that writes ``panel``'s frame to ``out_dir``."""
    return [sys.executable, "-m", "framefusion_video", "-q", "preview", str(panel.clip), "-o", str(out_dir),
            "--frames", str(panel.frame), *panel.options]


def close_up_path(out_dir: Path, panel: Panel) -> Path:
    """Where ``ffv preview`` writes ``panel``'s face close-up in ``out_dir``."""
    return out_dir / "faces" / f"frame_{panel.frame:06d}_face_{panel.face}.png"


def labelled(close_up: np.ndarray, title: str, height: int = PANEL_HEIGHT) -> np.ndarray:
    """A close-up (uint8 RGB, original | restored, 4 px apart: ``preview.close_up``) resized to
    ``height`` (area filter) under two lines: ``title``, then "original" and "restored" over
    their halves."""
    scale = height / close_up.shape[0]
    width = max(1, round(close_up.shape[1] * scale))
    resized = cv2.resize(close_up, (width, height), interpolation=cv2.INTER_AREA)
    strip = np.full((2 * LABEL_HEIGHT, width, 3), BACKGROUND, np.uint8)
    right_half = round(((close_up.shape[1] - 4) // 2 + 4) * scale)
    for text, x, y in ((title, 4, LABEL_HEIGHT - 9), ("original", 4, 2 * LABEL_HEIGHT - 9),
                       ("restored", right_half + 4, 2 * LABEL_HEIGHT - 9)):
        cv2.putText(strip, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, resized], axis=0)


def compose(panels: Sequence[np.ndarray]) -> np.ndarray:
    """``panels`` (uint8 RGB, one height) side by side, :data:`GAP` px apart."""
    gap = np.full((panels[0].shape[0], GAP, 3), BACKGROUND, np.uint8)
    parts = []
    for k, panel in enumerate(panels):
        parts += [gap, panel] if k else [panel]
    return np.concatenate(parts, axis=1)


def make_picture(output: Path, panels: Sequence[Panel]) -> None:
    """Preview each panel's clip with ``ffv preview`` and write the labelled close-ups to ``output``."""
    from framefusion_video.base.outputs import write_image

    images = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, panel in enumerate(panels):
            out_dir = Path(tmp) / str(k)
            command = preview_command(panel, out_dir)
            log.info("%s", shlex.join(command[1:]))
            subprocess.run(command, check=True)
            path = close_up_path(out_dir, panel)
            if not path.is_file():
                raise SystemExit(f"{panel.clip}: no face {panel.face} in frame {panel.frame} (no {path.name})")
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            options = f" ({shlex.join(panel.options)})" if panel.options else ""
            images.append(labelled(image, f"{panel.label}{options}"))
    write_image(output, compose(images))
    log.info("wrote %s (%.0f kB)", output, output.stat().st_size / 1e3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--clip", type=Path, action="append", required=True, help="a clip to preview")
    parser.add_argument("--frame", type=int, action="append", required=True, help="its frame (0-based)")
    parser.add_argument("--face", type=int, action="append", help="its face in that frame (default 0)")
    parser.add_argument("--options", action="append", help="its ffv preview options, one string")
    parser.add_argument("--label", action="append", required=True, help="its label in the picture")
    args = parser.parse_args(argv)
    n = len(args.clip)
    faces, options = args.face or [0] * n, args.options or [""] * n
    if not len(args.frame) == len(faces) == len(options) == len(args.label) == n:
        parser.error("give --frame and --label (and --face, --options if any) once per --clip")
    missing = [str(c) for c in args.clip if not c.is_file()]
    if missing:
        parser.error(f"no such clip: {', '.join(missing)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    panels = [Panel(c, f, k, tuple(shlex.split(o)), label)
              for c, f, k, o, label in zip(args.clip, args.frame, faces, options, args.label)]
    make_picture(args.output, panels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
