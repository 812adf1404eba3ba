#!/usr/bin/env bash
# RTSP test cameras (GStreamer RTSP server, scripts/stack/rtsp_server.py) for the local real stack.
#
#   scripts/stack/rtsp.sh up|down|status|verify [MOUNT...]
#   scripts/stack/rtsp.sh pid      print the pid of the python server process itself (not of its
#                                  restart supervisor): for `kill -STOP` / `kill -CONT` in fault
#                                  tests. Exit 1 if the instance does not run.
#
# A supervisor (bash) runs the server and restarts it when it exits. It only waits for its
# child: a server frozen with SIGSTOP stays frozen (bash without job control does not return
# from `wait` for a stopped child), its clients time out, and `kill -CONT` resumes it. `down`
# also stops a frozen server (SIGTERM + SIGCONT; SIGKILL after RTSP_STOP_TIMEOUT).
#
# RTSP_INSTANCE=<name> ([a-z0-9_-]; default empty: the main server) runs an independent second
# server with its own pid file (rtsp-<name>.pid), log (logs/rtsp-<name>.log) and mounts file
# (rtsp-<name>.mounts), e.g. a camera a fault test can freeze without freezing the others:
#   RTSP_INSTANCE=freeze RTSP_PORT=8654 RTSP_ONLY=moving scripts/stack/rtsp.sh up
#   kill -STOP "$(RTSP_INSTANCE=freeze scripts/stack/rtsp.sh pid)"   # ... kill -CONT
#   RTSP_INSTANCE=freeze scripts/stack/rtsp.sh down      (stops only that instance)
# Give every instance its own RTSP_PORT (and RTSP_UDP_PORTS if clients use UDP: an instance
# defaults to 40000-44999, the main server to 30000-39999).
#
# Env: FW_STACK_DIR, RTSP_INSTANCE (empty), RTSP_PORT (8554), RTSP_START_TIMEOUT (30),
#      RTSP_STOP_TIMEOUT (10),
#      RTSP_SERVER_ARGS (extra args for rtsp_server.py, word-split: no spaces inside a value,
#        e.g. "--mount hevc:codec=h265,pattern=ball --mount cam:user=admin,password=secret"),
#      RTSP_MOUNTS_JSON (a JSON file of extra mounts), RTSP_ONLY (comma-separated mount names),
#      RTSP_UDP_PORTS (30000-39999, an RTSP_INSTANCE 40000-44999: server-side UDP ports, bound to
#        127.0.0.1),
#      RTSP_AUTH_METHODS (digest,basic), RTSP_VERIFY_SKIP (rtcponly: mounts `verify` leaves out
#        unless named, comma- or space-separated).
# Mounts: rtsp://127.0.0.1:8554/{moving,black,frozen,secure,h265,mjpeg,audio,big,rtcponly}
#   secure needs user framewire, password s3cret-cam (Digest or Basic); rtcponly = moving whose
#   video stops 6 s into each client's playback while the session and RTCP go on (mount option
#   video_stops_after=SECONDS); see rtsp_server.py.
set -euo pipefail
FW_COMPONENT=rtsp
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVER="$FW_SCRIPTS_DIR/stack/rtsp_server.py"
INSTANCE="${RTSP_INSTANCE:-}"
if [[ -n "$INSTANCE" ]]; then
  [[ "$INSTANCE" =~ ^[a-z0-9][a-z0-9_-]{0,31}$ ]] || fw_die "bad RTSP_INSTANCE '$INSTANCE': want [a-z0-9][a-z0-9_-]*"
  NAME="rtsp-$INSTANCE"
  FW_COMPONENT="$NAME"
  export RTSP_UDP_PORTS="${RTSP_UDP_PORTS:-40000-44999}"
else
  NAME=rtsp
fi
LOG="$(fw_logfile "$NAME")"
PIDFILE="$(fw_pidfile "$NAME")"
START_TIMEOUT="${RTSP_START_TIMEOUT:-30}"
STOP_TIMEOUT="${RTSP_STOP_TIMEOUT:-10}"
PY=/usr/bin/python3   # the system python: it has python3-gi (a pyenv python on PATH has not)
BASE="rtsp://127.0.0.1:$RTSP_PORT"

PKGS=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base
      gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly)

MOUNTS_FILE="$FW_STACK_DIR/$NAME.mounts"   # written by the server once it listens
# The supervisor's command line names the instance's own mounts file (cmdline args end in a space).
PID_MATCH="--mounts-file $MOUNTS_FILE "
mounts() { paste -sd, "$MOUNTS_FILE" 2>/dev/null || true; }

# The python server's pid: the supervisor's child running rtsp_server.py (not a `sleep` between
# restarts). Fails if there is none right now.
server_pid() {
  local sup c
  fw_pid_alive "$PIDFILE" "$PID_MATCH" || return 1
  sup="$(fw_pid_of "$PIDFILE")"
  for c in $(pgrep -P "$sup" 2>/dev/null || true); do
    if tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null | grep -qF -- "$PY -u $SERVER "; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

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
      # On SIGTERM the supervisor also sends SIGCONT: a server stopped with SIGSTOP would otherwise
      # keep the TERM pending for ever.
      exec setsid nohup bash -c '
        trap "kill -TERM \$child 2>/dev/null; kill -CONT \$child 2>/dev/null; wait \$child 2>/dev/null; exit 0" TERM INT
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
  local child="" i
  child="$(server_pid || true)"
  fw_stop_pid "$PIDFILE" "RTSP server${INSTANCE:+ $INSTANCE}" "$STOP_TIMEOUT" "$PID_MATCH"
  # The supervisor is gone; its server too, unless it was frozen (SIGSTOP) under an older
  # supervisor or the supervisor was SIGKILLed: finish it.
  if [[ -n "$child" ]] && fw_proc_alive "$child"; then
    kill -TERM "$child" 2>/dev/null || true
    kill -CONT "$child" 2>/dev/null || true
    for (( i = 0; i < STOP_TIMEOUT * 10; i++ )); do fw_proc_alive "$child" || break; sleep 0.1; done
    if fw_proc_alive "$child"; then
      fw_warn "rtsp_server.py (pid $child) still running: SIGKILL"
      kill -KILL "$child" 2>/dev/null || true
    fi
  fi
}

cmd_status() {
  if fw_pid_alive "$PIDFILE" "$PID_MATCH" && fw_port_open 127.0.0.1 "$RTSP_PORT"; then
    printf '%-9s running  %s/{%s}  pid %s  (log %s)\n' "$NAME" "$BASE" "$(mounts)" "$(fw_pid_of "$PIDFILE")" "$LOG"
    return 0
  fi
  printf '%-9s stopped  %s\n' "$NAME" "$BASE"
  return 1
}

cmd_pid() {
  fw_pid_alive "$PIDFILE" "$PID_MATCH" || fw_die "RTSP server${INSTANCE:+ $INSTANCE} is not running ($PIDFILE)"
  # Between a crash and the restart (0.5 s) there is no server process: wait a little.
  local i pid
  for (( i = 0; i < 50; i++ )); do
    if pid="$(server_pid)"; then echo "$pid"; return 0; fi
    sleep 0.1
  done
  fw_die "the supervisor (pid $(fw_pid_of "$PIDFILE")) has no rtsp_server.py child"
}

# verify [MOUNT...]: by default the instance's own mounts but those in RTSP_VERIFY_SKIP
# (default rtcponly): verify-rtsp.sh reads 10 s of video per mount and stops its ffmpeg with ONE
# SIGTERM, which ffmpeg ignores while its input delivers no packet (it needs a second signal),
# so on a mount whose video stops by design it would wait for ever. Named mounts are always run.
cmd_verify() {
  if (( $# == 0 )) && [[ -s "$MOUNTS_FILE" ]]; then
    local m=() keep=() x skip=" ${RTSP_VERIFY_SKIP-rtcponly} "
    mapfile -t m <"$MOUNTS_FILE"
    for x in "${m[@]}"; do
      if [[ "${skip//,/ }" == *" $x "* ]]; then fw_log "skipping /$x (RTSP_VERIFY_SKIP: its video stops on purpose)"
      else keep+=("$x"); fi
    done
    (( ${#keep[@]} )) || fw_die "no mount left to verify (RTSP_VERIFY_SKIP='${RTSP_VERIFY_SKIP-rtcponly}')"
    set -- "${keep[@]}"
  fi
  RTSP_PORT="$RTSP_PORT" exec "$FW_SCRIPTS_DIR/stack/verify-rtsp.sh" "$@"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  pid) cmd_pid ;;
  verify) shift; cmd_verify "$@" ;;
  *) echo "usage: $0 {up|down|status|pid|verify [MOUNT...]}    (RTSP_INSTANCE=name for a second server)" >&2; exit 2 ;;
esac
