#!/usr/bin/env bash
# Rehearse the README's two-node Ray recipe on one machine: a head node, a second node joined to
# it, token authentication on both, and `ffv restore in -o out --ray auto` run with relative paths
# from the folder that holds in/ (a worker's working folder is not the caller's).
#
#   scripts/ray_two_node.sh [WORK_DIR]      # default: a fresh temporary folder
#
# Needs ffv with the ray extra in the current Python (`.venv/bin/python`, or $PYTHON).
# Environment: RAY_PORT (default 6390, apart from a default local Ray), CLIPS (default 3),
# CPUS_PER_NODE (default 1). Uses its own token file, not ~/.ray/auth_token.
# On a real cluster the same steps run on separate machines: see README, "Running on a Ray cluster".
set -euo pipefail

PYTHON=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python
BIN=$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")
RAY="$BIN/ray"
PORT=${RAY_PORT:-6390}
CLIPS=${CLIPS:-3}
CPUS=${CPUS_PER_NODE:-1}
WORK=${1:-$(mktemp -d /tmp/ffv-ray-two-node.XXXXXX)}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$WORK/in"
cd "$WORK"

# Token authentication: the same mode and token on every node and in the shell that runs ffv.
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH="$WORK/ray_token"
[ -s "$RAY_AUTH_TOKEN_PATH" ] || "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$RAY_AUTH_TOKEN_PATH"
chmod 600 "$RAY_AUTH_TOKEN_PATH"

# Both nodes run in the foreground of background jobs (--block), so that stopping them stops this
# cluster only (`ray stop` would stop every Ray on the machine).
NODE_PIDS=()
stop() {
    for pid in "${NODE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT

echo "== clips ($CLIPS tiny clips with a face) in $WORK/in"
PYTHONPATH="$REPO/tests${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$CLIPS" <<'EOF'
import sys
from skimage import data
from media import make_clip
for i in range(int(sys.argv[1])):
    make_clip(f"in/clip{i}.mp4", (128, 128), 12, 10.0, face_image=data.astronaut())
EOF

echo "== head node (port $PORT)"
"$RAY" start --head --port="$PORT" --num-cpus="$CPUS" --include-dashboard=false --disable-usage-stats --block \
    > "$WORK/head.log" 2>&1 &
NODE_PIDS+=($!)
sleep 8
echo "== second node"
"$RAY" start --address="127.0.0.1:$PORT" --num-cpus="$CPUS" --disable-usage-stats --block > "$WORK/node2.log" 2>&1 &
NODE_PIDS+=($!)
"$PYTHON" - "$PORT" <<'EOF'
import sys, time, ray
ray.init(address=f"127.0.0.1:{sys.argv[1]}", logging_level="ERROR")
deadline = time.time() + 60
while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.time() < deadline:
    time.sleep(1)
print("nodes alive:", len([n for n in ray.nodes() if n["Alive"]]))
EOF

echo "== ffv restore in -o out --ray (relative paths, from $WORK)"
RAY_ADDRESS="127.0.0.1:$PORT" "$BIN/ffv" restore in -o out --report out/report.json --ray auto
"$PYTHON" - <<'EOF'
import json
report = json.load(open("out/report.json"))
for f in report["files"]:
    print(f["status"], f["input"], "->", f["output"], "on node", f.get("node"))
assert all(f["status"] == "done" for f in report["files"]), "some clips were not restored"
print("all", len(report["files"]), "clips restored")
EOF
