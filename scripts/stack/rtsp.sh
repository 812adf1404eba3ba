#!/usr/bin/env bash
# RTSP test cameras (GStreamer RTSP server, scripts/stack/rtsp_server.py) for the local real stack.
#
#   scripts/stack/rtsp.sh up|down|status|verify
#
# Env: FW_STACK_DIR, RTSP_PORT (8554), RTSP_START_TIMEOUT (30),
#      RTSP_SERVER_ARGS (extra args for rtsp_server.py, word-split: no spaces inside a value,
#        e.g. "--mount hevc:codec=h265,pattern=ball --mount cam:user=admin,password=secret"),
#      RTSP_MOUNTS_JSON (a JSON file of extra mounts), RTSP_ONLY (comma-separated mount names),
#      RTSP_UDP_PORTS (30000-39999: server-side UDP ports, bound to 127.0.0.1),
#      RTSP_AUTH_METHODS (digest,basic).
# Mounts: rtsp://127.0.0.1:8554/{moving,black,frozen,secure,h265,mjpeg,audio,big}
#   secure needs user framewire, password s3cret-cam (Digest or Basic); see rtsp_server.py.
set -euo pipefail
FW_COMPONENT=rtsp
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVER="$FW_SCRIPTS_DIR/stack/rtsp_server.py"
LOG="$(fw_logfile rtsp)"
PIDFILE="$(fw_pidfile rtsp)"
START_TIMEOUT="${RTSP_START_TIMEOUT:-30}"
PY=/usr/bin/python3   # the system python: it has python3-gi (a pyenv python on PATH has not)
PID_MATCH="rtsp_server.py"
BASE="rtsp://127.0.0.1:$RTSP_PORT"

PKGS=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base
      gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly)

MOUNTS_FILE="$FW_STACK_DIR/rtsp.mounts"   # written by the server once it listens
mounts() { paste -sd, "$MOUNTS_FILE" 2>/dev/null || true; }

cmd_up() {
  local t0=$EPOCHREALTIME
  mkdir -p "$FW_LOG_DIR"
  fw_ensure_pkgs "${PKGS[@]}"
  [[ -x "$PY" ]] || fw_die "$PY not found (package python3)"
  if fw_pid_alive "$PIDFILE" "$PID_MATCH"; then
    fw_log "already running (pid $(fw_pid_of "$PIDFILE")) on $BASE"
  else
    rm -f "$PIDFILE"
    if fw_port_open 127.0.0.1 "$RTSP_PORT"; then
      fw_die "port 127.0.0.1:$RTSP_PORT is already in use by another process; stop it or set RTSP_PORT"
    fi
    fw_log "starting RTSP server on $BASE, log $LOG"
    rm -f "$MOUNTS_FILE"
    echo "=== $(date -Is) start rtsp_server.py ===" >>"$LOG"
    # GStreamer's RTSP server can abort on a g_assert under concurrent clients
    # (rtsp-media.c gst_rtsp_media_get_rates): a supervisor restarts it, so one crash does
    # not fail every test after it. Stopping the supervisor (SIGTERM) stops the server.
    # shellcheck disable=SC2086,SC2016
    (
      cd "$FW_STACK_DIR"
      exec setsid nohup bash -c '
        trap "kill \$child 2>/dev/null; wait \$child 2>/dev/null; exit 0" TERM INT
        while true; do
          "$@" & child=$!
          wait $child; rc=$?
          echo "=== $(date -Is) rtsp_server.py exited ($rc); restarting ===" >&2
          sleep 0.5
        done' rtsp_server.py "$PY" -u "$SERVER" --address 127.0.0.1 --port "$RTSP_PORT" \
        --mounts-file "$MOUNTS_FILE" ${RTSP_SERVER_ARGS:-} </dev/null >>"$LOG" 2>&1
    ) &
    echo "$!" >"$PIDFILE"
    fw_wait_until "$START_TIMEOUT" "RTSP server (port $RTSP_PORT)" "$LOG" "$PIDFILE" test -s "$MOUNTS_FILE"
    fw_wait_until 5 "RTSP server (port $RTSP_PORT)" "$LOG" "$PIDFILE" fw_port_open 127.0.0.1 "$RTSP_PORT"
  fi
  fw_log "ready: $BASE/{$(mounts)} (pid $(fw_pid_of "$PIDFILE")) in $(fw_since "$t0") s"
}

cmd_down() {
  fw_stop_pid "$PIDFILE" "RTSP server" "${RTSP_STOP_TIMEOUT:-10}" "$PID_MATCH"
}

cmd_status() {
  if fw_pid_alive "$PIDFILE" "$PID_MATCH" && fw_port_open 127.0.0.1 "$RTSP_PORT"; then
    echo "rtsp      running  $BASE/{$(mounts)}  pid $(fw_pid_of "$PIDFILE")  (log $LOG)"
    return 0
  fi
  echo "rtsp      stopped  $BASE"
  return 1
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  verify) shift; exec "$FW_SCRIPTS_DIR/stack/verify-rtsp.sh" "$@" ;;
  *) echo "usage: $0 {up|down|status|verify [MOUNT...]}" >&2; exit 2 ;;
esac
