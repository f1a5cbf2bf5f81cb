"""How far a super-resolution network's output, reduced to its input's grid, lies from its input
over each face: raw and after a 1 px Gaussian on both, beside the allowance the damage estimate
gives and the gain over bicubic against the truth. The figures behind the super-resolution review
notes of ``docs/what-we-tried.md``.

For each clip, its first 2 s are the truth; reduced by ``--factor`` (area) and encoded (x264 CRF
23); every 10th frame's faces (tiled detection, as ``--upscale`` finds them) are cut as the pipeline
cuts them (``windows.window_rect``) and given to each network. One line per face window:
clip, face side (px), damage (grey levels), allowance, then per network: change, low-passed change,
face PSNR gain over bicubic (dB).

    .venv/bin/python scripts/review_bands.py --factor 2 --nets framefusion_video/weights/ffv_span2.tflite,/tmp/vs2/ffv_span2.tflite \\
        ../shared/data/videos/phone_selfie_vertical_720x1280.mp4 ../shared/data/videos/talking_head_mpeg4part2_512.mp4 \\
        ../shared/data/videos/selfie_glasses_headturn_512.mp4
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], check=True)


def frames(path: Path, step: int) -> list[np.ndarray]:
    """Every ``step``-th frame of ``path`` (uint8 RGB)."""
    from framefusion_video.video.decode import read_frames

    return [f for k, f in enumerate(read_frames(path)) if k % step == 0]


def main() -> None:
    from framefusion_video.faces.detection import FaceDetector, FaceDetectorConfig
    from framefusion_video.restore.inference import LiteRestorer
    from framefusion_video.restore.safety import SafetyConfig, change_size, estimate_damage, face_region
    from framefusion_video.restore.windows import box_weights, cut_window, reduce_output, window_rect

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--nets", required=True, help="comma-separated .tflite networks of that factor")
    args = parser.parse_args()
    factor, safety = args.factor, SafetyConfig()
    nets = [LiteRestorer(n) for n in args.nets.split(",")]
    work = Path(tempfile.mkdtemp(prefix="ffv-review-bands-"))
    for clip in args.clips:
        truth, small = work / "truth.mkv", work / "small.mp4"
        ffmpeg("-i", str(clip), "-t", "2", "-vf", "crop=iw-mod(iw\\,8):ih-mod(ih\\,8):0:0", "-c:v", "ffv1", str(truth))
        ffmpeg("-i", str(truth), "-vf", f"scale=iw/{factor}:ih/{factor}:flags=area", "-pix_fmt", "yuv420p",
               "-c:v", "libx264", "-crf", "23", str(small))
        with FaceDetector(FaceDetectorConfig(tile_grid=3, tile_min_side=0)) as detector:
            for big, low in zip(frames(truth, 10), frames(small, 10)):
                for face in detector.detect(low):
                    rect = window_rect(face.box, low.shape[:2])
                    if rect is None:
                        continue
                    window, weights = cut_window(low, rect), box_weights(rect, face.box)
                    x0, y0, x1, y1 = (factor * v for v in rect)
                    target = big[y0:y1, x0:x1].astype(np.float32) / 255.0
                    mask = cv2.resize(weights, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_NEAREST)
                    mask /= mask.sum()

                    def psnr(image: np.ndarray) -> float:
                        return -10 * np.log10(float((((image - target) ** 2).mean(-1) * mask).sum()) + 1e-12)

                    bicubic = cv2.resize(window, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_CUBIC)
                    damage = estimate_damage(*face_region(low, face.box), safety, 0.0)
                    row = [clip.name[:16], int(face.box[2] - face.box[0]), f"{damage:.2f}",
                           f"{safety.tolerance + safety.damage_factor * damage:.2f}"]
                    for net in nets:
                        out = np.clip(net.restore(window[None])[0], 0, 1)
                        reduced = reduce_output(out, factor)
                        coarse = change_size(cv2.GaussianBlur(reduced, (0, 0), 1.0),
                                             cv2.GaussianBlur(window, (0, 0), 1.0), weights)
                        row += [f"{change_size(reduced, window, weights):.2f}", f"{coarse:.2f}",
                                f"{psnr(out) - psnr(bicubic):+.2f}"]
                    print(*row, flush=True)


if __name__ == "__main__":
    main()
