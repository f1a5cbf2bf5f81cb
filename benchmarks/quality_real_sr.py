"""``ffv restore --upscale 2|4`` on real footage: shared clips reduced, encoded and enlarged back.

For each clip (default: four clean-ish shared clips of real faces), its first ``--seconds``
(cropped to a multiple of 8 px, so that both reductions have even sides) are the truth; they are
reduced by the factor (area) and encoded (x264 ``--crf``, 23), then enlarged back by

- ffmpeg's bicubic scaler (``scale=flags=bicubic``), encoded as ``ffv restore`` encodes (x264 CRF 18,
  veryfast by default): what a plain enlargement gives;
- ``ffv restore --upscale F`` (``batch.restore_paths``, default options otherwise).

Faces are found by ``faces.FaceDetector`` on the truth frames; the score is the PSNR over each face
box of each frame against the truth, mean over face-frames, per clip and factor.

    .venv/bin/python benchmarks/quality_real_sr.py                 # 4 clips x 2 factors; minutes
    .venv/bin/python benchmarks/quality_real_sr.py --write         # also into RESULTS.md (quality_real_sr)
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import common
import numpy as np

log = logging.getLogger("benchmarks.quality_real_sr")

CLIPS = ("selfie_glasses_headturn_512.mp4", "talking_head_mpeg4part2_512.mp4",
         "closeup_audio-first-stream_410x412.mp4", "phone_selfie_vertical_720x1280.mp4")


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg quietly; CalledProcessError on failure."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", *args],
                   check=True, stdin=subprocess.DEVNULL)


def make_inputs(clip: Path, work: Path, seconds: float, factor: int, crf: int, encoding) -> tuple[Path, Path, Path]:
    """(truth, reduced, bicubic) files of ``clip``: its first ``seconds`` cropped to a multiple of 8
    px (lossless), reduced by ``factor`` (area, x264 ``crf``), and that enlarged back by bicubic
    (encoded as ``ffv restore`` encodes its output with ``encoding``, a ``RestoreConfig``: the two
    differ only in how they enlarge)."""
    truth = work / f"{clip.stem}_truth.mkv"
    if not truth.exists():
        ffmpeg("-i", str(clip), "-t", str(seconds), "-map", "0:v:0", "-vf", "crop=iw-mod(iw\\,8):ih-mod(ih\\,8):0:0",
               "-c:v", "ffv1", str(truth))
    small = work / f"{clip.stem}_x{factor}.mp4"
    ffmpeg("-i", str(truth), "-vf", f"scale=iw/{factor}:ih/{factor}:flags=area", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), str(small))
    bicubic = work / f"{clip.stem}_x{factor}_bicubic.mp4"
    ffmpeg("-i", str(small), "-vf", f"scale=iw*{factor}:ih*{factor}:flags=bicubic", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", encoding.preset, "-crf", str(encoding.crf), str(bicubic))
    return truth, small, bicubic


def face_boxes(truth: Path) -> list[list[tuple[int, int, int, int]]]:
    """Per frame of ``truth``, the boxes (whole pixels) of the faces the detector finds there."""
    from framefusion_video.faces.detection import FaceDetector
    from synthetic_clip import read_video
    from framefusion_video.video.probe import probe

    info = probe(truth)
    out = []
    with FaceDetector() as detector:
        for frame in read_video(truth, (info.width, info.height)):
            out.append([(max(0, int(f.box[0])), max(0, int(f.box[1])), min(info.width, int(f.box[2])),
                         min(info.height, int(f.box[3]))) for f in detector.detect(frame)])
    return out


def face_psnr(video: Path, truth: Path, boxes: list) -> float:
    """Mean PSNR over the face boxes of every frame of ``video`` against ``truth``."""
    from synthetic_clip import _psnr, read_video
    from framefusion_video.video.probe import probe

    info = probe(truth)
    size = (info.width, info.height)
    scores = [_psnr(frame[y0:y1, x0:x1], ref[y0:y1, x0:x1])
              for frame, ref, frame_boxes in zip(read_video(video, size), read_video(truth, size), boxes)
              for x0, y0, x1, y1 in frame_boxes if x1 - x0 > 4 and y1 - y0 > 4]
    return float(np.mean(scores)) if scores else float("nan")


def run(clips: list[Path], work: Path, factors: list[int], seconds: float, crf: int,
        options: dict[str, str] | None = None) -> list[dict]:
    """One row per clip and factor: face PSNR of bicubic and of ffv restore (with ``options``,
    ``RestoreConfig`` fields as ``--restore`` strings, e.g. ``model_path`` a super-resolution
    generator of that factor instead of the shipped ones), and the gain."""
    from framefusion_video.restore.batch import restore_paths
    from synthetic_clip import restore_config_from

    rows = []
    for clip in clips:
        boxes = None
        for factor in factors:
            config = restore_config_from({**(options or {}), "upscale": str(factor)})
            truth, small, bicubic = make_inputs(clip, work, seconds, factor, crf, config)
            boxes = boxes if boxes is not None else face_boxes(truth)
            out = work / f"{clip.stem}_x{factor}_ffv.mp4"
            result = restore_paths([small], out, config, overwrite=True, quiet=True)[0]
            if result.status != "done":
                raise RuntimeError(f"ffv restore failed on {small}: {result.error}")
            plain, ffv = face_psnr(bicubic, truth, boxes), face_psnr(out, truth, boxes)
            rows.append({"clip": clip.name, "factor": factor, "face_frames": sum(len(b) for b in boxes),
                         "bicubic": plain, "ffv": ffv, "gain": ffv - plain, "restored": result.faces})
            log.info("%s x%d: bicubic %.2f ffv %.2f (%+.2f)", clip.name, factor, plain, ffv, ffv - plain)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", type=Path, help=f"default: {', '.join(CLIPS)} from the shared videos")
    parser.add_argument("--factors", default="2,4")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--crf", type=int, default=23, help="x264 CRF of the reduced clips")
    parser.add_argument("--restore", action="append", default=[], metavar="FIELD=VALUE",
                        help="a RestoreConfig field for ffv restore, e.g. safety=false, or model_path=FILE (a "
                             "super-resolution generator of the one factor given; default: the shipped networks)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write", action="store_true", help="replace the section quality_real_sr of RESULTS.md")
    args = parser.parse_args(argv)
    common.setup_logging()
    clips = args.clips or [common.SHARED_VIDEOS / name for name in CLIPS]
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        parser.error(f"no clip at {', '.join(missing)}")
    factors = [int(f) for f in args.factors.split(",")]
    with tempfile.TemporaryDirectory(prefix="ffv-real-sr-") as tmp:
        rows = run(clips, Path(tmp), factors, args.seconds, args.crf, common.parse_options(args.restore))
    command = common.command_line("quality_real_sr.py", argv)
    table = [[r["clip"], f"x{r['factor']}", r["face_frames"], r["restored"], f"{r['bicubic']:.2f}", f"{r['ffv']:.2f}",
              f"{r['gain']:+.2f}"] for r in rows]
    for factor in factors:
        mine = [r for r in rows if r["factor"] == factor]
        table.append([f"**mean x{factor}**", "", "", "", f"{np.mean([r['bicubic'] for r in mine]):.2f}",
                      f"{np.mean([r['ffv'] for r in mine]):.2f}", f"{np.mean([r['gain'] for r in mine]):+.2f}"])
    text = "\n".join([common.heading("ffv restore --upscale on real clips", command), "",
                      f"The first {args.seconds:g} s of each clip (cropped to a multiple of 8 px, so that both reductions have even sides) are the truth; "
                      f"reduced by the factor (area) and encoded (x264 CRF {args.crf}), then enlarged back by "
                      "ffmpeg's bicubic scaler or by `ffv restore --upscale` (default options), both encoded as "
                      "ffv restore encodes (x264, its CRF and preset). Face "
                      "PSNR (dB): mean over the face boxes found in the truth frames. Restored: face-frames "
                      "ffv restored.", "",
                      common.markdown_table(["clip", "upscale", "face-frames", "restored", "bicubic", "ffv", "gain"],
                                            table), ""])
    common.publish(text, "quality_real_sr" if args.write else None, args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
