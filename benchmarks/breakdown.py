"""Where the networks' gain goes: the synthetic clip through ffv restore's pipeline, stage by stage.

Builds the seeded synthetic clip of unseen faces (``synthetic_clip.build_clip``, faces from
``--faces``, default ``../shared/data/faces/frl``) and takes each input:

- ``x1``: the damaged clip (faces blurred, reduced, noised, darkened... then x264 CRF 30), restored
  at the same size by the default generator;
- ``x2``, ``x4``: the clean clip reduced by 2 or 4 (area) and encoded (x264 CRF ``--sr-crf``),
  super-resolved by what ``ffv restore --upscale 2|4`` runs by default.

Every input is decoded once, its faces detected and tracked once (``tracking.track_faces``, as
``ffv restore`` does), and the frames are then scored after each stage, each row adding one:

1. **base**: the input itself (x1) or the pipeline's bicubic upscale of it (x2, x4); beside it
   ffmpeg's bicubic upscale, what a plain enlargement gives;
2. **network, true boxes, hard paste** (x2, x4): the network on each face's window
   (``windows.window_rect``) cut around the clip's known face box, its whole output pasted: what
   the network gains on the window it is given, with nothing between it and the frame;
3. **network, detected faces, hard paste**: the same around the faces the detector finds at the
   input's resolution: what detection loses; at x1, **network, detected faces, whole crop**: the
   generator's correction of each detected face's aligned crop (``cutting.CropCutter``) added to
   the frame over the whole crop, no mask: what the network gains on the crop it is given;
4. **pipeline: cut + paste mask** (safety, colour matching, stabilisation off);
5. **+ colour match**, 6. **+ review** (the safety checks), 7. **+ stabilisation**: the last row
   is ``ffv restore``'s defaults (before its output is encoded).

PSNR over each face box of each frame against the clean frames (mean over face-frames, and by face
size), with the share of face-frames that have a detected face, and the outcomes of the default
run.

    .venv/bin/python benchmarks/breakdown.py                 # 720p, 80 frames, 40 faces; minutes
    .venv/bin/python benchmarks/breakdown.py --small         # seconds, for tests
    .venv/bin/python benchmarks/breakdown.py --write         # also into RESULTS.md (section breakdown)
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import common
import numpy as np

log = logging.getLogger("benchmarks.breakdown")

DEFAULT_FACES = common.SHARED_VIDEOS.parent / "faces" / "frl"
#: The pipeline's stages, each row of the table adding one to the row before (RestoreConfig fields).
STAGES = (
    ("pipeline: cut + paste mask", dict(safety=False, colour_match=False, temporal=0.0)),
    ("+ colour match", dict(safety=False, colour_match=True, temporal=0.0)),
    ("+ review", dict(safety=True, colour_match=True, temporal=0.0)),
    ("+ stabilisation (ffv restore)", dict(safety=True, colour_match=True, temporal=None)),
)


def face_scores(frames: Sequence[np.ndarray], clean: Sequence[np.ndarray], clip) -> list[tuple[float, float]]:
    """(face size, PSNR) of every face box of every frame against the clean frames."""
    from synthetic_clip import _int_box, _psnr

    out = []
    for index, (frame, truth) in enumerate(zip(frames, clean)):
        height, width = truth.shape[:2]
        for plan, box in clip.faces_in_frame(index):
            x0, y0, x1, y1 = _int_box(box, width, height)
            out.append((plan.size, _psnr(frame[y0:y1, x0:x1], truth[y0:y1, x0:x1])))
    return out


def summary(scores: Sequence[tuple[float, float]], base: Sequence[tuple[float, float]]) -> dict:
    """Mean face PSNR, its gain over ``base`` (same face-frames), and the gain by face-size bin."""
    from synthetic_clip import size_bin

    psnr = np.array([p for _, p in scores])
    gain = psnr - np.array([p for _, p in base])
    bins: dict[str, list[float]] = {}
    for (size, _), g in zip(scores, gain):
        bins.setdefault(size_bin(size), []).append(float(g))
    return {"psnr": float(psnr.mean()), "gain": float(gain.mean()),
            "by_size": {k: float(np.mean(v)) for k, v in sorted(bins.items())}}


def hard_paste(frames: Sequence[np.ndarray], boxes: Callable[[int], list], restorer, scale: int) -> list[np.ndarray]:
    """Each frame's bicubic upscale with the network's whole output pasted over each face's window
    (``boxes(index)``: face boxes in the input frame's pixels)."""
    from framefusion_video.restore.blending import upscale_frame
    from framefusion_video.restore.windows import cut_window, paste_window, window_rect

    out = []
    for index, frame in enumerate(frames):
        base = upscale_frame(frame, scale)
        for box in boxes(index):
            rect = window_rect(box, frame.shape[:2], restorer.crop_size)
            if rect is None:
                continue
            restored = np.clip(restorer.restore(cut_window(frame, rect)[None])[0], 0.0, 1.0)
            paste_window(base, restored, rect, np.ones(restored.shape[:2], np.float32), scale)
        out.append(base)
    return out


def whole_crop_paste(tracked: Sequence[tuple[np.ndarray, list]], restorer) -> list[np.ndarray]:
    """Each frame plus the generator's correction of each of its detected faces' aligned crops,
    warped back over the whole crop (later faces over earlier ones)."""
    from framefusion_video.faces.alignment import warp_to_frame
    from framefusion_video.restore.blending import restored_at_frame_resolution
    from framefusion_video.restore.cutting import CropCutter

    cutter = CropCutter(restorer.crop_size)
    out = []
    for frame, faces in tracked:
        cuts = cutter.cut(frame, faces)
        result = frame.copy()
        if cuts.inputs:
            restored = np.clip(restorer.restore(np.stack(cuts.inputs)), 0.0, 1.0)
            size = (frame.shape[1], frame.shape[0])
            for crop, original, matrix in zip(restored, cuts.inputs, cuts.matrices):
                inside = warp_to_frame(np.ones(crop.shape[:2], np.float32), matrix, size) > 0.5
                new = restored_at_frame_resolution(frame, crop, original, matrix)
                result[inside] = new[inside]
        out.append(result)
    return out


def detected_share(tracked: Sequence[tuple[np.ndarray, list]], clip, scale: int) -> float:
    """Share of the clip's face-frames with a detected face whose centre lies in the true box."""
    hits = total = 0
    for index, (_, faces) in enumerate(tracked):
        centres = [(0.5 * (f.face.box[0] + f.face.box[2]) * scale, 0.5 * (f.face.box[1] + f.face.box[3]) * scale)
                   for f in faces]
        for _, (x0, y0, x1, y1) in clip.faces_in_frame(index):
            total += 1
            hits += any(x0 <= cx <= x1 and y0 <= cy <= y1 for cx, cy in centres)
    return hits / max(total, 1)


def run_input(clip, src: Path, clean: list[np.ndarray], scale: int, base_options: dict, plain: Path | None) -> dict:
    """The rows of one input (see the module docstring)."""
    from framefusion_video.restore.blending import upscale_frame
    from framefusion_video.restore.config import RestoreConfig
    from framefusion_video.faces.detection import FaceDetector
    from framefusion_video.restore.pipeline import restore_frames
    from synthetic_clip import read_video
    from framefusion_video.restore.clip import detector_config, load_default_restorer, tracking_config
    from framefusion_video.faces.tracking import track_faces
    from framefusion_video.video.probe import probe

    cfg = clip.config
    info = probe(src)
    frames = list(read_video(src, (info.width, info.height)))
    config = RestoreConfig(**{**base_options, "upscale": scale})
    with FaceDetector(detector_config(config)) as detector:
        tracked = [(f, list(faces)) for f, faces in track_faces(frames, detector, tracking_config(config))]
    restorer = load_default_restorer(config)
    base = [upscale_frame(f, scale) for f in frames]
    base_scores = face_scores(base, clean, clip)
    rows = {"base (the pipeline's bicubic)" if scale > 1 else "base (the input)": summary(base_scores, base_scores)}
    if plain is not None:
        rows["ffmpeg bicubic"] = summary(face_scores(list(read_video(plain, (cfg.width, cfg.height))), clean, clip),
                                         base_scores)
    if scale > 1:
        truth = hard_paste(frames, lambda i: [tuple(v / scale for v in b) for _, b in clip.faces_in_frame(i)],
                           restorer, scale)
        rows["network, true boxes, hard paste"] = summary(face_scores(truth, clean, clip), base_scores)
        found = hard_paste(frames, lambda i: [f.face.box for f in tracked[i][1]], restorer, scale)
        rows["network, detected faces, hard paste"] = summary(face_scores(found, clean, clip), base_scores)
    else:
        rows["network, detected faces, whole crop"] = summary(face_scores(whole_crop_paste(tracked, restorer), clean,
                                                                          clip), base_scores)
    counts: dict[str, int] = {}
    for name, options in STAGES:
        stage = replace(config, **{k: v for k, v in options.items() if v is not None})
        outputs = []
        for out in restore_frames(iter(tracked), restorer, stage):
            outputs.append(out.restored)
            if name.endswith("(ffv restore)"):
                for outcome in out.outcomes:
                    counts[outcome.status] = counts.get(outcome.status, 0) + 1
        rows[name] = summary(face_scores(outputs, clean, clip), base_scores)
    return {"rows": rows, "detected": detected_share(tracked, clip, scale), "outcomes": counts,
            "window": restorer.crop_size, "model": restorer_name(restorer)}


def restorer_name(restorer) -> str:
    """The file a restorer runs, the bicubic enlargement after it where there is one, and the file
    small windows go to where they go to another."""
    if hasattr(restorer, "network"):
        return f"{restorer_name(restorer.network)} then bicubic x{restorer.scale // restorer.network.scale}"
    if hasattr(restorer, "small"):
        return (f"{restorer_name(restorer.small)} on windows up to {restorer.largest_small} px, "
                f"{restorer_name(restorer.large)} above")
    return Path(str(getattr(restorer, "path", "in memory"))).name


def run(faces: Path, work: Path, clip_config, scales: Sequence[int], sr_crf: int, options: dict) -> dict:
    """Build the clip in ``work`` and run every input of ``scales``."""
    from synthetic_clip import build_clip, read_video, transcode

    clip = build_clip(faces, work / "clip", clip_config)
    cfg = clip.config
    clean = list(read_video(clip.clean, (cfg.width, cfg.height)))
    results = {"clip": {"config": clip.to_dict()["config"], "faces": len(clip.faces), "faces_dir": str(faces)},
               "sr_crf": sr_crf, "inputs": {}}
    for scale in scales:
        if scale == 1:
            src, plain = clip.damaged, None
        else:
            src = transcode(clip.clean, work / f"x{scale}.mp4", crf=sr_crf,
                            resize=f"iw/{scale}:ih/{scale}:flags=area")
            plain = transcode(src, work / f"x{scale}_bicubic.mp4", crf=12,
                              resize=f"iw*{scale}:ih*{scale}:flags=bicubic")
        results["inputs"][f"x{scale}"] = run_input(clip, src, clean, scale, options, plain)
        log.info("x%d: %s", scale, {k: round(v["gain"], 2) for k, v in results["inputs"][f"x{scale}"]["rows"].items()})
    return results


def to_markdown(results: dict, command: str) -> str:
    """One table per input: each stage's face PSNR, its gain over the base, and by face size."""
    cfg = results["clip"]["config"]
    lines = [common.heading("Stage by stage: where the networks' gain goes", command), "",
             f"Clip: {cfg['width']}x{cfg['height']}, {cfg['segments'] * cfg['frames_per_segment']} frames, "
             f"{results['clip']['faces']} faces of {cfg['min_face']}-{cfg['max_face']} px from "
             f"`{Path(results['clip']['faces_dir']).name}/` (never trained on, never used to choose), seed "
             f"{cfg['seed']}. x1: the damaged clip (x264 CRF {cfg['damaged_crf']}); x2, x4: the clean frames "
             f"reduced by 2 or 4 (area) and encoded with x264 CRF {results['sr_crf']}. Face PSNR (dB) over "
             "every face box of every frame against the clean frames, before the output is encoded; gain "
             "over the first row on the same face-frames. Each pipeline row adds one stage to the row above; "
             "the last is `ffv restore`'s defaults. ffmpeg bicubic: `scale=flags=bicubic` of the reduced "
             "clip (x264 CRF 12).", ""]
    for name, data in results["inputs"].items():
        bins = sorted({b for row in data["rows"].values() for b in row["by_size"]},
                      key=lambda b: float(b.strip("<+").split("-")[0]) if b[0] != "<" else -1)
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(data["outcomes"].items())) or "none"
        window = "any size" if data["window"] is None else f"{data['window']} px"
        lines += [f"**{name}** (network: `{data['model']}`, windows {window}; face-frames with a "
                  f"detected face: {100 * data['detected']:.0f}%; ffv restore's outcomes: {outcomes})", "",
                  common.markdown_table(["stage", "face PSNR", "gain", *[f"gain {b} px" for b in bins]],
                                        [[stage, f"{row['psnr']:.2f}", f"{row['gain']:+.2f}",
                                          *[f"{row['by_size'][b]:+.2f}" if b in row["by_size"] else "-" for b in bins]]
                                         for stage, row in data["rows"].items()]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="face photos for the clip (default: frl/)")
    parser.add_argument("--scales", default="1,2,4", help="inputs to run: 1 (damaged), 2 and 4 (reduced)")
    parser.add_argument("--sr-crf", type=int, default=20, help="x264 CRF of the reduced clips")
    parser.add_argument("--small", action="store_true", help="a tiny clip (seconds, for tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--restore", action="append", default=[], metavar="FIELD=VALUE",
                        help="a RestoreConfig option for every run, e.g. model_path=...")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--write", action="store_true", help="replace the section breakdown of RESULTS.md")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    common.setup_logging(args.verbose)
    from synthetic_clip import ClipConfig, restore_config_from

    from framefusion_video.restore.config import UPSCALE_FACTORS

    if not args.faces.is_dir():
        parser.error(f"no face folder at {args.faces} (--faces DIR)")
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    if not scales or any(s not in UPSCALE_FACTORS for s in scales):
        parser.error(f"--scales takes {', '.join(map(str, UPSCALE_FACTORS))}")
    options = {k: v for k, v in vars(restore_config_from(common.parse_options(args.restore))).items()
               if k != "upscale"}
    clip_config = ClipConfig.small(seed=args.seed) if args.small else ClipConfig(seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="ffv-breakdown-") as tmp:
        results = run(args.faces, Path(tmp), clip_config, scales, args.sr_crf, options)
    command = common.command_line("breakdown.py", argv)
    text = to_markdown(results, command.strip())
    common.publish(text, "breakdown" + ("_small" if args.small else "") if args.write else None, args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
