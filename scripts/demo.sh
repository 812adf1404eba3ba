#!/usr/bin/env bash
# `make demo`: the local stack, the three services and three synthetic cameras, with the
# sink's live web page at http://127.0.0.1:8080/ (DEMO_WEB_PORT; opened in a browser when
# there is a desktop, DEMO_OPEN=0 never opens one) and a live per-camera table here. Ctrl-C (or
# DEMO_SECONDS=N) stops the services cleanly, and the stack too if this script started it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO_DIR="${FW_STACK_DIR:-$ROOT/.stack}/demo"
LOGS="${FW_STACK_DIR:-$ROOT/.stack}/logs"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
WEB_PORT="${DEMO_WEB_PORT:-8080}"
WEB_URL="http://127.0.0.1:$WEB_PORT/"
mkdir -p "$DEMO_DIR" "$LOGS"
rm -f "$DEMO_DIR"/framewire.sqlite*   # each demo counts its own frames

started_stack=0
scripts/stack.sh status >/dev/null 2>&1 || started_stack=1
scripts/stack.sh up
echo "==> building the services"
cargo build --workspace --bins --quiet

# Local ports: Kafka owns 9092, so the worker's admin server moves to 19092 here
# (in Kubernetes every pod has its own network and the defaults 9091/9092/9093 apply).
common='[topics]
partitions = 4
replication_factor = 1
'
cat >"$DEMO_DIR/ingest.toml" <<TOML
$common
[admin]
listen = "127.0.0.1:9091"
$(for cam in moving black frozen; do printf '\n[[cameras]]\nid = "%s"\nurl = "rtsp://127.0.0.1:8554/%s"\n' "$cam" "$cam"; done)
TOML
cat >"$DEMO_DIR/worker.toml" <<TOML
$common
[admin]
listen = "127.0.0.1:19092"
TOML
cat >"$DEMO_DIR/sink.toml" <<TOML
$common
[admin]
listen = "127.0.0.1:9093"
[sink]
sqlite_path = "$DEMO_DIR/framewire.sqlite"
http_listen = "127.0.0.1:$WEB_PORT"
TOML

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping the services"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((started_stack)); then scripts/stack.sh down; fi
  echo "logs: $LOGS/demo-*.log   summaries: $DEMO_DIR/framewire.sqlite"
}
trap stop INT TERM EXIT

for svc in worker sink ingest; do
  "$BIN/framewire-$svc" --config "$DEMO_DIR/$svc.toml" >>"$LOGS/demo-$svc.log" 2>&1 &
  pids+=($!)
done
echo "==> fleet running: admin http://127.0.0.1:9091 (ingest) :19092 (worker) :9093 (sink); Ctrl-C stops"

# The web page answers once the sink has its database and Kafka: wait for it (30 s at most).
for _ in $(seq 60); do
  /usr/bin/python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "$WEB_URL" 2>/dev/null && break
  sleep 0.5
done
cat <<BANNER

================================================================================
  Framewire web page:  $WEB_URL
  (cameras with thumbnails, fps, brightness and motion, incidents; refreshes live)
  API: ${WEB_URL}api/cameras    description: ${WEB_URL}api/openapi.json
================================================================================

BANNER
if [[ ${DEMO_OPEN:-1} != 0 && -n ${DISPLAY:-${WAYLAND_DISPLAY:-}} ]] && command -v xdg-open >/dev/null 2>&1; then
  xdg-open "$WEB_URL" >/dev/null 2>&1 || true
fi

deadline=$((SECONDS + ${DEMO_SECONDS:-0}))
while true; do
  sleep 3
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a service exited; see $LOGS/demo-*.log" >&2; exit 1; }
  done
  /usr/bin/python3 scripts/demo_table.py "$DEMO_DIR/framewire.sqlite" "$WEB_URL" || true
  if [[ -n ${DEMO_SECONDS:-} ]] && ((SECONDS >= deadline)); then break; fi
done
