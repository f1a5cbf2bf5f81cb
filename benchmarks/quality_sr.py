"""Super-resolution of aligned faces: bicubic against an upscaling network (e.g. SPAN), PSNR/SSIM,
and the network's speed per crop on LiteRT.

Each face of ``--data`` is aligned to a 128 px crop as ``ffv eval`` aligns it, downscaled by area
to 128/r px (r = the model's output/input size, 2 or 4), scaled back up by bicubic interpolation and
by the model (``evaluation.evaluate_super_resolution``), and compared with the 128 px crop. Speed:
the model converted to ``.tflite`` (``inference.export_tflite``), run by LiteRT (XNNPACK) one crop at
a time with ``--threads`` threads, the least wall and CPU time of ``--repeats`` passes of ``--crops``
crops, next to the shipped ``ffv_generator.tflite`` timed the same way just before: on a machine
others are using, the yardstick and the CPU times still compare where wall times do not.

The default models are SPAN's official weights as ``scripts/convert_span.py`` writes them:

    .venv/bin/python scripts/convert_span.py
    .venv/bin/python benchmarks/quality_sr.py [--data ../shared/data/faces/frl] [--model M.keras ...] [--write]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

import common

log = logging.getLogger("benchmarks.quality_sr")

DEFAULT_DATA = common.REPO.parent / "shared" / "data" / "faces" / "frl"
CROP = 128


def default_models() -> list[Path]:
    from framefusion_video.data.dataset import default_cache_dir

    return [default_cache_dir() / "pretrained" / f"span_x{r}.keras" for r in (2, 4)]


def ms_per_crop(model, sample: np.ndarray, threads: int, crops: int, repeats: int) -> tuple[float, float]:
    """:func:`timed` of ``model`` converted to ``.tflite`` and run by LiteRT at batch 1 on
    ``sample`` (float32 (1, s, s, 3)), after checking the conversion's output on it.

    The check uses a real face: on uniform noise, far from any photo, SPAN's activations are large
    and float32 rounding differences between kernels grow to 0.1-0.2 on a few pixels."""
    from ai_edge_litert.interpreter import Interpreter

    from framefusion_video.restore.inference import export_tflite

    with tempfile.TemporaryDirectory() as tmp:
        interpreter = Interpreter(model_path=str(export_tflite(model, Path(tmp) / "model.tflite")),
                                  num_threads=threads)
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        x = np.ascontiguousarray(sample, dtype=np.float32)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()  # warm-up
        if np.abs(interpreter.get_tensor(out["index"]) - model.predict_on_batch(x)).max() > 1e-4:
            raise RuntimeError("the .tflite conversion does not give the Keras model's outputs")

        def one() -> None:
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()

        return timed(one, crops, repeats)


def timed(fn, crops: int, repeats: int) -> tuple[float, float]:
    """(wall, CPU) milliseconds per call of ``fn``: the least of ``repeats`` passes of ``crops``
    calls each. CPU time (all threads of this process) is the figure that others' load disturbs less."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(crops):
            fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1000.0 * min(wall) / crops, 1000.0 * min(cpu) / crops


def shipped_ms_per_crop(crop: np.ndarray, threads: int, crops: int, repeats: int) -> tuple[float, float] | None:
    """:func:`timed` of the shipped ``.tflite`` generator on ``crop`` (float32 (1, 128, 128, 3))
    as ``ffv restore`` runs it with ``threads`` threads: a yardstick timed under the same load, for
    a machine others use too. None when it is not there."""
    from framefusion_video.restore.inference import DEFAULT_MODEL_NAME, LiteRestorer, shipped_weights_dir

    path = shipped_weights_dir() / DEFAULT_MODEL_NAME
    if not path.is_file():
        return None
    restorer = LiteRestorer(path, batch_size=1, threads=threads)
    restorer.restore(crop)  # warm-up
    return timed(lambda: restorer.restore(crop), crops, repeats)


RESTORER_FACTORS = (2, 4)


def _row(name: str, scale: str, flops: float, scores, ms, shipped) -> list:
    def pair(t):
        return ("-", "-") if t is None else (f"{t[0]:.1f}", f"{t[1]:.1f}")

    return [name, scale, f"{flops / 1e9:.2f}", scores.n, f"{scores.psnr['bicubic']:.2f}", f"{scores.psnr['model']:.2f}",
            f"{scores.ssim['bicubic']:.4f}", f"{scores.ssim['model']:.4f}", *pair(ms), *pair(shipped)]


def bench(data: Path, models: list[Path], limit: int | None, threads: int, crops: int, repeats: int) -> list[list]:
    """Rows: model, ×r, GFLOP per crop, faces, PSNR bicubic/model, SSIM bicubic/model, wall and CPU
    ms per crop, and the shipped generator's two timed just before (:func:`shipped_ms_per_crop`)."""
    from framefusion_video.data.dataset import load_aligned_crops
    from framefusion_video.base.errors import FfvError
    from framefusion_video.evaluation.images import downscale_area, evaluate_super_resolution, upscale_bicubic
    from framefusion_video.restore.inference import load_generator
    from framefusion_video.training.model import count_conv_flops

    clean = load_aligned_crops(data, CROP, limit=limit, progress=True).astype(np.float32) / np.float32(255.0)
    rows = []
    for path in models:
        try:
            model = load_generator(path)
        except FfvError as exc:
            raise SystemExit(f"{exc} (scripts/convert_span.py writes SPAN's)") from exc
        size, out_size = int(model.input_shape[1]), int(model.output_shape[1])
        if size == out_size == CROP:  # a restorer (the U-Net): bicubic first, then the network
            for factor in RESTORER_FACTORS:
                scores = evaluate_super_resolution(
                    clean, lambda batch, f=factor: model.predict_on_batch(upscale_bicubic(batch, f)), factor)
                rows.append(_row(f"{path.name} after bicubic", f"x{factor} ({CROP // factor} -> {CROP} px)",
                                 count_conv_flops(model), scores, None, None))
            continue
        factor = out_size // size
        if out_size != CROP or factor * size != out_size:
            raise SystemExit(f"{path}: {size} -> {out_size} px; expected an integer upscaling to {CROP} px")
        scores = evaluate_super_resolution(clean, lambda batch: model.predict_on_batch(batch), factor)
        shipped = shipped_ms_per_crop(clean[:1], threads, crops, repeats)
        ms = ms_per_crop(model, downscale_area(clean[:1], factor), threads, crops, repeats)
        log.info("%s: x%d, %.2f ms per crop (%.2f CPU)", path.name, factor, *ms)
        rows.append(_row(path.name, f"x{factor} ({size} -> {out_size} px)", count_conv_flops(model), scores, ms, shipped))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of face photos (default: frl)")
    parser.add_argument("--model", dest="models", type=Path, action="append",
                        help="upscaling .keras model, or a same-size restorer measured after bicubic at x2 and x4 "
                             "(repeatable; default: span_x2 and span_x4 from convert_span.py)")
    parser.add_argument("--limit", type=int, help="use only the first N photos")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads for the speed column")
    parser.add_argument("--crops", type=int, default=50, help="crops per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    command = common.command_line("quality_sr.py", argv)
    common.setup_logging()
    models = args.models or default_models()
    rows = bench(args.data, models, args.limit, args.threads, args.crops, args.repeats)
    table = common.markdown_table(["model", "scale", "GFLOP/crop", "faces", "PSNR bicubic", "PSNR model", "SSIM bicubic",
                                   "SSIM model", "ms/crop", "CPU ms/crop", "ffv_generator ms/crop",
                                   "ffv_generator CPU ms/crop"], rows)
    body = (f"{common.heading('Super-resolution of aligned faces', command)}\n\nFaces: "
            f"{args.data.name}{f' (first {args.limit})' if args.limit else ''}, aligned to {CROP} px, "
            f"area-downscaled, upscaled back. Speed: LiteRT, {args.threads} threads, batch 1, the least of "
            f"{args.repeats} passes of {args.crops} crops, wall and CPU (all threads); ffv_generator: the "
            f"shipped .tflite (128 px in and out) timed just before, the yardstick under the same load."
            f"\n\n{table}")
    print(body)
    if args.write:
        common.write_section("quality-sr", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
