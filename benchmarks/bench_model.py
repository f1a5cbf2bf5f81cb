"""Generator throughput: crops per second at batch 1, 8 and 16 at the default crop size.

Variants:

- ``litert``: the shipped ``.tflite`` file run exactly as ``ffv restore`` runs it
  (``inference.LiteRestorer``: LiteRT with XNNPACK, one thread per core unless ``--litert-threads``);
- ``keras``: the ``.keras`` file run by ``inference.KerasRestorer`` (a ``tf.function`` traced once for a
  fixed batch shape; what ``--model X.keras`` uses);
- ``tflite``: the Keras graph converted here to TensorFlow Lite (float32), run by TensorFlow's own
  interpreter with the XNNPACK delegate;
- ``tflite-fp16`` / ``tflite-int8``: the same with fp16 weights, or dynamic-range int8 weights.

Each row is the best of ``--repeats`` timed runs of ``--crops`` crops (the best run is the one
least disturbed by other processes). Quality of a variant is not measured here: ``ffv eval``.

    .venv/bin/python benchmarks/bench_model.py                       # litert and keras
    .venv/bin/python benchmarks/bench_model.py --variants keras tflite tflite-int8 --write
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

import common

log = logging.getLogger("benchmarks.model")

BATCHES = (1, 8, 16)
VARIANTS = ("litert", "keras", "tflite", "tflite-fp16", "tflite-int8")


def crops_per_second(run, batch: int, crop_size: int, crops: int, repeats: int) -> float:
    """Best crops/s of ``run(float32 (batch, S, S, 3))`` over ``repeats`` passes of ``crops`` crops."""
    rng = np.random.default_rng(0)
    x = rng.random((batch, crop_size, crop_size, 3), dtype=np.float32)
    calls = max(1, crops // batch)
    run(x)  # warm-up: tracing, allocation, delegate set-up

    def one_pass() -> None:
        for _ in range(calls):
            run(x)

    best, _ = common.repeat_timing(one_pass, repeats=repeats, warmup=0)
    return calls * batch / best


def litert_runner(path, batch: int, threads: int | None = None):
    """The default production path: ``inference.LiteRestorer`` on the ``.tflite`` file."""
    from framefusion_video.restore.inference import LiteRestorer

    return LiteRestorer(path, batch_size=batch, threads=threads).restore


def keras_runner(model, batch: int):
    """The production path: ``inference.KerasRestorer`` with ``batch_size=batch``."""
    from framefusion_video.restore.inference import KerasRestorer

    restorer = KerasRestorer(model, batch_size=batch)
    return restorer.restore


def tflite_runner(model, batch: int, kind: str, threads: int = 1):
    """A TFLite interpreter (XNNPACK, ``threads`` threads) for ``model`` at a fixed batch size.

    One thread by default: on this shared 2-core machine XNNPACK's 2-thread pool spins against the
    other processes and ran 8 times slower than one thread.
    """
    import tensorflow as tf

    size = int(model.input_shape[1])
    spec = tf.TensorSpec((batch, size, size, 3), tf.float32)
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # Weights folded into constants: TFLite then sees a plain graph (no READ_VARIABLE ops).
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(concrete)])
    if kind == "tflite-fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif kind == "tflite-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic-range int8 weights
    started = time.perf_counter()
    flat = converter.convert()
    log.info("%s: converted in %.1f s, %.2f MB", kind, time.perf_counter() - started, len(flat) / 1e6)
    interpreter = tf.lite.Interpreter(model_content=flat, num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return run


def bench(model_file: str | None, variants: tuple[str, ...], batches: tuple[int, ...], crops: int,
          repeats: int, tflite_threads: int = 1, litert_threads: int | None = None) -> tuple[list[list], str]:
    """Rows (variant, batch, crops/s, ms per crop) and the model's description.

    ``model_file`` may be the ``.tflite`` or the ``.keras`` file of a pair (same name, same folder):
    ``litert`` runs the ``.tflite`` one, every other variant the ``.keras`` one.
    """
    from framefusion_video.restore.inference import LiteRestorer, load_generator

    path, description = common.model_path(model_file)
    lite_path, keras_path = path.with_suffix(".tflite"), path.with_suffix(".keras")
    # Both loaders raise a one-line FfvError naming the file when it is missing.
    model = load_generator(keras_path) if any(v != "litert" for v in variants) else None
    size = int(model.input_shape[1]) if model is not None else LiteRestorer(lite_path).crop_size
    rows = []
    for variant in variants:
        for batch in batches:
            if variant == "litert":
                run = litert_runner(lite_path, batch, litert_threads)
            elif variant == "keras":
                run = keras_runner(model, batch)
            else:
                run = tflite_runner(model, batch, variant, tflite_threads)
            rate = crops_per_second(run, batch, size, crops, repeats)
            rows.append([variant, batch, f"{size} px", round(rate, 1), round(1000.0 / rate, 2)])
            log.info("%s batch %d: %.1f crops/s", variant, batch, rate)
    return rows, description


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="generator .tflite or .keras (default: the shipped pair)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["litert", "keras"])
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--crops", type=int, default=96, help="crops per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tflite-threads", type=int, default=1, help="threads of the tflite* variants")
    parser.add_argument("--litert-threads", type=int, default=None,
                        help="threads of the litert variant (default: one per core, as ffv restore)")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    common.setup_logging()
    rows, description = bench(args.model, tuple(args.variants), tuple(args.batches), args.crops, args.repeats,
                              args.tflite_threads, args.litert_threads)
    table = common.markdown_table(["variant", "batch", "crop", "crops/s", "ms/crop"], rows)
    body = (f"{common.heading('Generator throughput', common.command_line('bench_model.py', argv))}\n\n"
            f"Model: {description}; best of {args.repeats} passes of {args.crops} crops.\n\n{table}")
    print(body)
    if args.write:
        common.write_section("model", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
