"""Temporal stability benchmark: restore the first seconds of each clip and measure its flicker.

For each clip (default: every video in ``../shared/data/videos``), the first ``--seconds`` are cut
without re-encoding into a temporary folder, restored with
:func:`framefusion_video.restore.clip.restore_video`, and compared with the cut by
:func:`framefusion_video.evaluation.flicker.measure_videos` (flow on the input, face regions from the input's
face tracks). Prints a markdown table: clip, frames, warping-error ratio (1 = as stable as the
input, > 1 = the restoration flickers), the metric's estimate of face frames left unrestored, the
exact count (faces the detector finds in each input frame that the pipeline did not restore, from
its own record: :func:`framefusion_video.evaluation.flicker.restoration_coverage`) with the longest run of
such frames, and restore seconds.

    .venv/bin/python benchmarks/flicker.py                       # all shared clips
    .venv/bin/python benchmarks/flicker.py CLIP.mp4 --seconds 2 --model run/generator.keras
    .venv/bin/python benchmarks/flicker.py CLIP.mp4 --stand-in noisy --temporal 0   # flicker, no fix

``--stand-in noisy`` replaces the model by :class:`NoisyStandIn`, a per-frame restorer that sharpens
each crop by a random amount and adds independent noise: the flicker per-frame restorers produce,
without needing trained weights. ``--temporal`` sets ``RestoreConfig.temporal`` (0 = off).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = REPO.parent / "shared" / "data" / "videos"

log = logging.getLogger("benchmarks.flicker")


def cut(src: Path, dst: Path, seconds: float) -> Path:
    """The first ``seconds`` of ``src`` (all streams, no re-encoding) written to ``dst``."""
    from framefusion_video.base.errors import FfvError
    from framefusion_video.video.ffmpeg import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", "-i", str(src), "-map", "0",
           "-t", str(seconds), "-c", "copy", str(dst)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FfvError(src, f"cannot cut the first {seconds} s: {proc.stderr.strip().splitlines()[-1:]}")
    return dst


class NoisyStandIn:
    """A flickering per-frame "restorer": float32 (N, S, S, 3) in [0, 1] -> the same.

    Each crop is sharpened by a random amount (unsharp mask, 0.3-1.0) and gets independent,
    slightly blurred Gaussian noise (``sigma`` in [0, 1] units), as a GAN invents texture anew in
    every frame. ``seed`` makes runs reproducible.
    """

    def __init__(self, crop_size: int = 128, sigma: float = 0.02, seed: int = 0) -> None:
        import numpy as np

        self.crop_size, self.sigma = crop_size, sigma
        self.rng = np.random.default_rng(seed)

    def restore(self, crops):
        import cv2
        import numpy as np

        out = np.empty_like(crops)
        for i, crop in enumerate(crops):
            amount = np.float32(self.rng.uniform(0.3, 1.0))
            blurred = cv2.GaussianBlur(crop, (0, 0), 1.5)
            noise = cv2.GaussianBlur(self.rng.normal(0.0, self.sigma * 1.5, crop.shape).astype(np.float32), (3, 3), 0)
            out[i] = crop + amount * (crop - blurred) + noise
        return np.clip(out, 0.0, 1.0)


def bench_clip(src: Path, workdir: Path, seconds: float, config, restorer, detector) -> dict:
    """Cut, restore and measure one clip; a dict of the table's columns plus the full report."""
    from framefusion_video.restore.clip import restore_video
    from framefusion_video.evaluation.flicker import measure_videos, restoration_coverage
    from framefusion_video.video.probe import probe
    from framefusion_video.video.decode import read_frames

    short = cut(src, workdir / f"{src.stem}_cut{src.suffix}", seconds)
    restored = workdir / f"{src.stem}_restored.mp4"
    done: list[list] = []  # per frame: the boxes of the faces the pipeline decided on, any status
    started = time.perf_counter()
    result = restore_video(short, restored, config, restorer=restorer, detector=detector,
                           on_frame=lambda f: done.append([o.box for o in f.outcomes]))
    restore_seconds = time.perf_counter() - started
    report = measure_videos(short, restored, detector=detector)
    visible = [[face.box for face in detector.detect(frame)] for frame in read_frames(short, probe(short))]
    coverage = restoration_coverage(visible, done)
    return {"clip": src.name, "frames": report.frames, "ratio": report.ratio,
            "unrestored": report.unrestored_fraction, "missed": coverage.missed_fraction,
            "longest_miss": coverage.longest_miss, "seconds": restore_seconds,
            "faces": result.faces, "faces_left_alone": result.faces_left_alone,
            "faces_refused": result.faces_refused, "report": report.to_dict()}


def markdown(rows: list[dict]) -> str:
    def fmt(v, digits=3):
        return "n/a" if v is None else f"{v:.{digits}f}"

    lines = ["| clip | frames | ratio | unchanged (metric's estimate) | visible faces missed (exact) "
             "| longest run missed | restored / left alone / refused | seconds |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['clip']} | failed: {r['error']} | | | | | | |")
        else:
            lines.append(f"| {r['clip']} | {r['frames']} | {fmt(r['ratio'])} | {fmt(r['unrestored'])} "
                         f"| {fmt(r['missed'])} | {r['longest_miss']} "
                         f"| {r['faces']} / {r['faces_left_alone']} / {r['faces_refused']} | {fmt(r['seconds'], 1)} |")
    ratios = [r["ratio"] for r in rows if r.get("ratio") is not None]
    if ratios:
        lines.append(f"\nMean ratio {sum(ratios) / len(ratios):.3f}, worst {max(ratios):.3f} "
                     f"(1 = as steady as the input); longest run of a visible face missed: "
                     f"{max(r['longest_miss'] for r in rows if 'error' not in r)} frames.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path, help=f"videos (default: all in {SHARED_VIDEOS})")
    parser.add_argument("--seconds", type=float, default=4.0, help="restore the first N seconds (default 4)")
    parser.add_argument("--model", help="generator weights (default: the shipped model)")
    parser.add_argument("--json", type=Path, help="also write every clip's full report here")
    parser.add_argument("--stand-in", choices=["noisy"], help="use a stand-in restorer instead of a model "
                        "(noisy: random sharpening + per-frame noise, i.e. flicker)")
    parser.add_argument("--temporal", type=float, help="RestoreConfig.temporal (0 = off; default: its default)")
    parser.add_argument("--no-safety", action="store_true", help="RestoreConfig.safety off (landmark checks, refusal)")
    parser.add_argument("--soft-faces", action="store_true", help="RestoreConfig.soft_faces on (soft_faces.py)")
    parser.add_argument("--write", action="store_true", help="replace the section 'flicker' of benchmarks/RESULTS.md "
                        "(all shared clips, default options only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("absl", "tensorflow", "h5py"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from framefusion_video.base.errors import FfvError
    from framefusion_video.faces.detection import FaceDetector
    from framefusion_video.restore.config import RestoreConfig
    from framefusion_video.restore.clip import load_default_restorer

    clips = args.clips or sorted(p for p in SHARED_VIDEOS.glob("*") if p.is_file())
    if not clips:
        log.error("no clips given and none found in %s", SHARED_VIDEOS)
        return 2
    config = RestoreConfig(model_path=args.model)
    if args.temporal is not None:
        config = dataclasses.replace(config, temporal=args.temporal)
    if args.no_safety:
        config = dataclasses.replace(config, safety=False)
    if args.soft_faces:
        config = dataclasses.replace(config, soft_faces=True)
    if args.stand_in == "noisy":
        restorer = NoisyStandIn()
    else:
        try:
            restorer = load_default_restorer(config)
        except FfvError as exc:
            log.error("%s", exc)
            return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="ffv-flicker-") as tmp, FaceDetector() as detector:
        for clip in clips:
            log.info("%s ...", clip.name)
            try:
                rows.append(bench_clip(clip, Path(tmp), args.seconds, config, restorer, detector))
            except FfvError as exc:
                log.error("%s", exc)
                rows.append({"clip": clip.name, "error": str(exc)})
    table = markdown(rows)
    print(table)
    if args.write:
        import common

        if args.clips or args.model or args.stand_in or args.temporal is not None or args.no_safety or args.soft_faces:
            log.error("--write records the default run only: all shared clips, default options")
            return 2
        heading = common.heading("Flicker of every shared clip, default options", common.command_line("flicker.py", argv))
        common.write_section("flicker", f"{heading}\n\n{table}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
