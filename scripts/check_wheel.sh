#!/usr/bin/env bash
# Check that ffv works as a real package, away from this checkout: build the wheel, install it with
# its dependencies into a fresh virtual environment, and run `ffv restore` on samples/astronaut.mp4
# from a folder outside the repository with the shipped generator (the one inside the wheel).
#
#   scripts/check_wheel.sh [WORK_DIR]      # default: a fresh temporary folder, removed at the end
#
# Downloads the dependencies from PyPI (about 1 GB, TensorFlow included; minutes, faster with a
# warm pip cache), so it is not part of `make test`; tests/test_package.py checks the wheel's file
# list offline in seconds. Environment: PYTHON, a Python 3.11 to make the environment with
# (default python3.11, else python3); KEEP=1 keeps WORK_DIR.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
WORK=${1:-$(mktemp -d /tmp/ffv-check-wheel.XXXXXX)}
[ -n "${1:-}" ] || [ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
step() { echo "== $*"; }

# Build from a copy of what the package is made of, so that no build/ or *.egg-info left in the
# checkout by an earlier build can add stale files. models/ is copied to show it stays out.
step "building the wheel"
rm -rf "$WORK/src" "$WORK/dist"
mkdir -p "$WORK/src"
cp -r "$REPO/framefusion_video" "$REPO/models" "$REPO/setup.cfg" "$REPO/pyproject.toml" "$REPO/README.md" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/framefusion_video-*.whl)
"$PYTHON" - "$WHEEL" <<'EOF'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
weights = {"framefusion_video/weights/ffv_generator.tflite", "framefusion_video/weights/ffv_generator.keras"}
missing = weights - set(names)
stray = [n for n in names if not n.startswith(("framefusion_video/", "framefusion_video-"))]
assert not missing, f"the wheel lacks {sorted(missing)}"
assert not stray, f"the wheel carries files outside the package: {stray}"
# Benchmark helpers and the SPAN weight conversion live in benchmarks/ and scripts/, never here.
tools = [n for n in names if n.rsplit("/", 1)[-1] in ("quality_clip.py", "synthetic_clip.py", "ncnn_format.py", "span_ncnn.py")]
assert not tools, f"the wheel carries benchmark or conversion code: {tools}"
print("\n".join(sorted(n for n in names if n.endswith(".py"))))
print(f"{sys.argv[1]}: {len(names)} files, the two shipped weight files, nothing of models/, benchmarks/ or scripts/")
EOF

step "installing it into a fresh virtual environment (dependencies from PyPI)"
rm -rf "$WORK/venv"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --upgrade pip
"$WORK/venv/bin/python" -m pip install --quiet "$WHEEL"

step "running ffv restore on the sample, outside the repository"
mkdir -p "$WORK/run"
cp "$REPO/samples/astronaut.mp4" "$WORK/run/"
cd "$WORK/run"
unset PYTHONPATH FFV_MODEL
"$WORK/venv/bin/ffv" --version
"$WORK/venv/bin/ffv" restore astronaut.mp4 -o astronaut_restored.mp4
"$WORK/venv/bin/python" - "$WORK/venv" <<'EOF'
import sys
from pathlib import Path

import imageio_ffmpeg

import framefusion_video
from framefusion_video.restore.inference import default_model_path

venv = Path(sys.argv[1]).resolve()
package = Path(framefusion_video.__file__).resolve()
model = default_model_path().resolve()
assert venv in package.parents, f"framefusion_video was imported from {package}, not from the installed wheel"
assert venv in model.parents and model.is_file(), f"the default model is {model}, not the wheel's"
frames_in, _ = imageio_ffmpeg.count_frames_and_secs("astronaut.mp4")
frames_out, _ = imageio_ffmpeg.count_frames_and_secs("astronaut_restored.mp4")
assert frames_in == frames_out > 0, f"{frames_in} frames in, {frames_out} out"
print(f"OK: the installed wheel restored {frames_out} frames with {model}")
EOF
