#!/usr/bin/env bash
# The benchmark cameras: scripts/bench/rtsp_bench_server.py serving the bench clip (made and
# cached by scripts/bench/make-clip.sh) at BENCH_CAMERAS looping live mounts.
#
#   scripts/bench/bench-rtsp.sh up|down|status
#   scripts/bench/bench-rtsp.sh load [rtsp_load.py args...]   e.g. load -n 50 --duration 30
#
# Env: FW_STACK_DIR, BENCH_CAMERAS (100), BENCH_RTSP_PORT (8654), BENCH_UDP_PORTS (40000-49999),
#      BENCH_SERVER_ARGS (extra args, word-split), BENCH_START_TIMEOUT (60: includes making the
#      clip the first time, ~35 s).
# Mounts: rtsp://127.0.0.1:8654/cam0 ... cam{BENCH_CAMERAS-1}. Log: $FW_STACK_DIR/logs/bench-rtsp.log
set -euo pipefail
FW_COMPONENT=bench-rtsp
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../stack/lib.sh"

SERVER="$FW_SCRIPTS_DIR/bench/rtsp_bench_server.py"
LOG="$(fw_logfile bench-rtsp)"
PIDFILE="$(fw_pidfile bench-rtsp)"
PY=/usr/bin/python3   # the system python: it has python3-gi (a pyenv python on PATH has not)
PID_MATCH="rtsp_bench_server.py"
PORT="${BENCH_RTSP_PORT:-8654}"
CAMS="${BENCH_CAMERAS:-100}"
BASE="rtsp://127.0.0.1:$PORT"
MOUNTS_FILE="$FW_STACK_DIR/bench-rtsp.mounts"

cmd_up() {
  local t0=$EPOCHREALTIME clip
  mkdir -p "$FW_LOG_DIR"
  if fw_pid_alive "$PIDFILE" "$PID_MATCH"; then
    fw_log "already running (pid $(fw_pid_of "$PIDFILE")) on $BASE with $(wc -l <"$MOUNTS_FILE" 2>/dev/null || echo '?') cameras"
    return 0
  fi
  fw_ensure_pkgs python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  clip="$("$FW_SCRIPTS_DIR/bench/make-clip.sh")"
  rm -f "$PIDFILE" "$MOUNTS_FILE"
  if fw_port_open 127.0.0.1 "$PORT"; then
    fw_die "port 127.0.0.1:$PORT is already in use by another process; stop it or set BENCH_RTSP_PORT"
  fi
  fw_log "starting $CAMS bench cameras on $BASE, log $LOG"
  echo "=== $(date -Is) start rtsp_bench_server.py ===" >>"$LOG"
  # shellcheck disable=SC2086
  (
    cd "$FW_STACK_DIR"
    exec setsid nohup "$PY" -u "$SERVER" --address 127.0.0.1 --port "$PORT" -n "$CAMS" --clip "$clip" \
      --mounts-file "$MOUNTS_FILE" --stats 30 ${BENCH_SERVER_ARGS:-} </dev/null >>"$LOG" 2>&1
  ) &
  echo "$!" >"$PIDFILE"
  fw_wait_until "${BENCH_START_TIMEOUT:-60}" "bench RTSP server (port $PORT)" "$LOG" "$PIDFILE" test -s "$MOUNTS_FILE"
  fw_wait_until 5 "bench RTSP server (port $PORT)" "$LOG" "$PIDFILE" fw_port_open 127.0.0.1 "$PORT"
  fw_log "ready: $BASE/cam{0..$((CAMS - 1))} (pid $(fw_pid_of "$PIDFILE")) in $(fw_since "$t0") s"
}

cmd_down() { fw_stop_pid "$PIDFILE" "bench RTSP server" 10 "$PID_MATCH"; rm -f "$MOUNTS_FILE"; }

cmd_status() {
  if fw_pid_alive "$PIDFILE" "$PID_MATCH" && fw_port_open 127.0.0.1 "$PORT"; then
    echo "bench-rtsp running  $BASE/cam{0..$(( $(wc -l <"$MOUNTS_FILE") - 1 ))}  pid $(fw_pid_of "$PIDFILE")  (log $LOG)"
    return 0
  fi
  echo "bench-rtsp stopped  $BASE"
  return 1
}

cmd_load() {
  local pid=""
  fw_pid_alive "$PIDFILE" "$PID_MATCH" && pid="$(fw_pid_of "$PIDFILE")"
  exec "$PY" "$FW_SCRIPTS_DIR/bench/rtsp_load.py" --base "$BASE/cam" ${pid:+--server-pid "$pid"} "$@"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  load) shift; cmd_load "$@" ;;
  *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
