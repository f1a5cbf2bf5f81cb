"""Tests of the shipped sample clips, the demo that `make demo` runs on them, and the README's
picture and the command that makes it.

``samples/astronaut_small.mp4`` (``scripts/make_sample.py --clip small``) is the demo: a small,
damaged face that ``make demo``'s options restore visibly. ``samples/astronaut.mp4`` is the clean
case: a large, sharp face the generator leaves alone.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "samples" / "astronaut_small.mp4"
CLEAN = REPO / "samples" / "astronaut.mp4"
PICTURE = REPO / "docs" / "readme_picture.png"
#: What a file committed to the repository for show may weigh (the issue's budget).
MAX_PICTURE_BYTES = 300_000


def _script(name: str):
    """The module of ``scripts/<name>.py``."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _make_variable(name: str) -> str:
    """The value of ``NAME := value`` in the Makefile."""
    match = re.search(rf"^{name} := (.*)$", (REPO / "Makefile").read_text(), re.M)
    assert match, f"the Makefile sets no {name}"
    return match.group(1).strip()


def _sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian: how much fine detail an image has."""
    import cv2

    return float(cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F).var())


def test_the_sample_script_is_deterministic_given_its_seed():
    make_sample = _script("make_sample")
    spec = dataclasses.replace(make_sample.CLIPS["small"], duration_s=3 / make_sample.CLIPS["small"].fps)

    def frames(seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        shake = make_sample.draw_shake(rng)
        return list(make_sample.render_frames(spec, shake, rng))

    first, again, other = frames(spec.seed), frames(spec.seed), frames(spec.seed + 1)
    assert len(first) == 3 and first[0].shape == (spec.height, spec.width, 3) and first[0].dtype == np.uint8
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def test_the_demo_clip_is_small_and_as_its_script_describes():
    from framefusion_video.video.probe import probe

    spec = _script("make_sample").CLIPS["small"]
    info = probe(DEMO)
    assert (info.width, info.height) == (spec.width, spec.height) and info.n_frames == spec.n_frames
    assert DEMO.stat().st_size < MAX_PICTURE_BYTES
    assert _make_variable("DEMO") == DEMO.relative_to(REPO).as_posix()


def _preview(clip: Path, out: Path, frame: int, options: list[str]) -> str:
    """``ffv preview CLIP --frames FRAME OPTIONS`` through the CLI; the page's HTML."""
    from framefusion_video.cli import main

    result = CliRunner().invoke(main, ["-q", "preview", str(clip), "-o", str(out), "--frames", str(frame),
                                       *options])
    assert result.exit_code == 0, result.output
    return (out / "index.html").read_text()


def test_make_demo_restores_the_demo_face_visibly(tmp_path):
    """`make demo`'s options on the demo clip: the face is restored and its close-up's restored
    half has more fine detail than its original half, and the page opens on the close-ups."""
    import cv2

    page = _preview(DEMO, tmp_path, 50, shlex.split(_make_variable("DEMO_OPTIONS")))
    assert "frame 50 &middot; 1 restored, 0 left alone, 0 refused" in page
    assert page.index('class="faces"><figure') < page.index('class="wipe"')  # close-ups first
    close_up = cv2.cvtColor(cv2.imread(str(tmp_path / "faces" / "frame_000050_face_0.png")), cv2.COLOR_BGR2GRAY)
    half = (close_up.shape[1] - 4) // 2
    original, restored = close_up[:, :half], close_up[:, half + 4:]
    assert _sharpness(restored) > _sharpness(original)


def test_the_clean_sample_face_is_left_alone(tmp_path):
    page = _preview(CLEAN, tmp_path, 0, [])
    assert "frame 0 &middot; 0 restored, 1 left alone, 0 refused" in page


def test_the_readme_shows_its_picture_near_the_top_and_the_command_that_makes_it():
    readme = (REPO / "README.md").read_text()
    top = readme[:readme.index("\n## ", readme.index("\n## ") + 1)]  # up to the second section
    assert f"]({PICTURE.relative_to(REPO).as_posix()})" in top
    assert "make readme-picture" in readme
    target = re.search(r"^readme-picture:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert target and "scripts/readme_picture.py" in target.group(1) and (REPO / "scripts/readme_picture.py").is_file()
    assert 0 < PICTURE.stat().st_size < MAX_PICTURE_BYTES


def test_the_readme_picture_puts_labelled_close_ups_side_by_side():
    picture = _script("readme_picture")
    rng = np.random.default_rng(0)
    close_ups = [rng.integers(0, 256, (256, 516, 3), dtype=np.uint8),
                 rng.integers(0, 256, (128, 200, 3), dtype=np.uint8)]
    panels = [picture.labelled(c, f"clip {k}") for k, c in enumerate(close_ups)]
    assert {p.shape[0] for p in panels} == {picture.PANEL_HEIGHT + 2 * picture.LABEL_HEIGHT}
    out = picture.compose(panels)
    assert out.shape[1] == sum(p.shape[1] for p in panels) + picture.GAP
    assert out.dtype == np.uint8
