"""Training throughput of ``ffv train``: images per second and CPU use, before and after the critic.

Each measurement runs ``training.train`` in a fresh process twice, for ``--warmup`` batches and for
``--warmup + --steps`` batches, and takes the difference: set-up (loading the cached crops,
building and tracing the networks, the final checkpoint) cancels out, and what is left is the
steady-state cost of a batch, data making included. CPU use is the children's user + system time
over the same difference: 200 % means both cores of this machine busy.

Phases:

- ``fidelity``: the batches before the critic starts (no critic, reconstruction losses only);
- ``adversarial``: the batches after it (generator and critic both trained, R1 every 4 batches);
- ``bare``: the default generator alone in a plain hand-written step (L1 loss, Adam, one fixed
  batch; no data making, SSIM or critic): what the network's own forward and backward pass costs
  in TensorFlow on this CPU. A fidelity phase as fast as this has nothing left to gain around the
  network: data making and losses are hidden.

``--checkout DIR`` (repeatable) measures other checkouts of the project as well (e.g. a
``git worktree`` of an older commit), their runs interleaved with this one's so that the VM's drift
hits both alike; the table gives each one's images/s and its ratio to the first.

    .venv/bin/python benchmarks/bench_train.py                              # this checkout
    git worktree add /tmp/ffv-old 0da587c
    .venv/bin/python benchmarks/bench_train.py --checkout /tmp/ffv-old --write
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

log = logging.getLogger("benchmarks.train")

PHASES = ("fidelity", "adversarial", "bare")

# Run in the child: the same entry point as ``ffv train``, with the critic on from batch 0 for the
# adversarial phase. Only settings every checkout's TrainConfig has are passed.
_CHILD = """
import json, sys
from framefusion_video.training.trainer import TrainConfig, train
args = json.loads(sys.argv[1])
adv = args.pop("phase") == "adversarial"
train(TrainConfig(adv_start=0 if adv else 10**9, critic_warmup=0, checkpoint_minutes=1e9, **args))
"""

_BARE_CHILD = """
import json, sys
import numpy as np, keras, tensorflow as tf
from framefusion_video.training.model import GeneratorConfig, build_generator
args = json.loads(sys.argv[1])
generator = build_generator(GeneratorConfig())
for layer in generator.layers:  # as ffv train holds them: the gate is fitted afterwards
    layer.trainable = not layer.name.startswith("gate_")
optimizer = keras.optimizers.Adam(1e-4)
rng = np.random.default_rng(0)
size = GeneratorConfig().crop_size
x = tf.constant(rng.random((args["batch_size"], size, size, 3), dtype=np.float32))
y = tf.constant(rng.random((args["batch_size"], size, size, 3), dtype=np.float32))

@tf.function(jit_compile=False)
def step():
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(generator(x, training=True) - y))
    optimizer.apply_gradients(zip(tape.gradient(loss, generator.trainable_variables), generator.trainable_variables))
    return loss

for _ in range(args["max_steps"]):
    step().numpy()
"""


def run_child(checkout: Path, data: str, phase: str, steps: int, batch: int, limit: int) -> tuple[float, float]:
    """(wall s, CPU s) of one ``train`` run of ``steps`` batches in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="ffv-bench-train-") as out:
        args = {"phase": phase, "data_dir": data, "out_dir": out, "max_steps": steps, "batch_size": batch,
                "limit_images": limit}
        env = {**os.environ, "PYTHONPATH": str(checkout), "TF_CPP_MIN_LOG_LEVEL": "2"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        child = _BARE_CHILD if phase == "bare" else _CHILD
        proc = subprocess.run([sys.executable, "-c", child, json.dumps(args)], env=env, cwd=checkout,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"training in {checkout} failed:\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def measure(checkouts: list[Path], data: str, phase: str, warmup: int, steps: int, batch: int, limit: int,
            repeats: int) -> list[dict]:
    """Per checkout: the best (fastest) of ``repeats`` differences, interleaved across checkouts."""
    best: list[dict | None] = [None] * len(checkouts)
    for checkout in checkouts:  # untimed: the first start of a checkout reads its files from disk
        run_child(checkout, data, phase, 1, batch, limit)
    for r in range(repeats):
        for i, checkout in enumerate(checkouts):
            short = run_child(checkout, data, phase, warmup, batch, limit)
            long = run_child(checkout, data, phase, warmup + steps, batch, limit)
            wall, cpu = long[0] - short[0], long[1] - short[1]
            if wall <= 0:  # the short run was held up by something else: no figure from this pair
                log.warning("%s %s run %d: discarded (the short run took longer)", checkout, phase, r + 1)
                continue
            row = {"checkout": str(checkout), "phase": phase, "steps": steps, "batch": batch,
                   "s_per_batch": wall / steps, "images_per_s": steps * batch / wall, "cpu_percent": 100 * cpu / wall}
            log.info("%s %s run %d: %.3f s/batch, %.1f images/s, CPU %.0f %%", checkout, phase, r + 1,
                     row["s_per_batch"], row["images_per_s"], row["cpu_percent"])
            if best[i] is None or row["images_per_s"] > best[i]["images_per_s"]:
                best[i] = row
    return [b for b in best if b is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(common.SHARED_VIDEOS.parent / "faces" / "val"),
                        help="folder of face photos (aligned once and cached, as ffv train does)")
    parser.add_argument("--checkout", action="append", type=Path, default=[],
                        help="another checkout of the project to measure beside this one")
    parser.add_argument("--phase", choices=PHASES, action="append", help="default: all three")
    parser.add_argument("--warmup", type=int, default=5, help="batches of the short run")
    parser.add_argument("--steps", type=int, default=30, help="batches the long run adds")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=200, help="photos to load")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="update the 'train' section of RESULTS.md")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    common.setup_logging(args.verbose)
    if not Path(args.data).is_dir():
        print(f"{args.data}: no such folder of face photos (give --data)", file=sys.stderr)
        return 2
    checkouts = [common.REPO, *[c.resolve() for c in args.checkout]]
    rows = []
    for phase in args.phase or PHASES:
        rows += measure(checkouts, args.data, phase, args.warmup, args.steps, args.batch_size, args.limit,
                        args.repeats)
    first = {r["phase"]: r["images_per_s"] for r in rows if r["checkout"] == str(common.REPO)}
    table = common.markdown_table(
        ["checkout", "phase", "batch", "s/batch", "images/s", "CPU %", "vs this checkout"],
        [[Path(r["checkout"]).name, r["phase"], r["batch"], r["s_per_batch"], r["images_per_s"],
          round(r["cpu_percent"]), f"{r['images_per_s'] / first[r['phase']]:.2f}x"] for r in rows])
    body = (f"{common.heading('Training throughput', common.command_line('bench_train.py', argv))}\n\n"
            f"Best of {args.repeats}, {args.steps} batches after {args.warmup}.\n\n{table}\n")
    print(body)
    if args.write:
        common.write_section("train", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
