#!/usr/bin/env bash
# A camera that shows people, for object detection: scripts/model/oracle.py's clip of seven
# photographs (an astronaut, a cat, a cup, a motorbike, a rocket, a cameraman, grass; 640x360,
# 10 fps, 7 s, H.264) served as the file mount `people` of its own RTSP server instance. A
# file mount plays once per client and ends; ingest's stall watchdog then reconnects, so the
# clip loops (set [ingest] stall_timeout_ms low, e.g. 2000). `make demo` and the deploy
# check's fleet run use it.
#
#   scripts/deploy/people-camera.sh up     make the clip if missing ($FW_STACK_DIR/people.mp4,
#                                          with the model venv's python: scripts/model.sh
#                                          makes that venv), start the server; prints the URL
#   scripts/deploy/people-camera.sh down   stop the server
#
# Env: PEOPLE_INSTANCE (people; RTSP_INSTANCE of the server), PEOPLE_PORT (8574),
#      FRAMEWIRE_CACHE (~/.cache/framewire: where scripts/model.sh keeps its venv).
set -euo pipefail
FW_COMPONENT=people-camera
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/stack/lib.sh
source "$HERE/../stack/lib.sh"
INSTANCE="${PEOPLE_INSTANCE:-people}"
PORT="${PEOPLE_PORT:-8574}"
CLIP="$FW_STACK_DIR/people.mp4"

rtsp() {
  RTSP_INSTANCE="$INSTANCE" RTSP_PORT="$PORT" RTSP_ONLY=people \
    RTSP_SERVER_ARGS="--mount people:kind=file,location=$CLIP" "$FW_SCRIPTS_DIR/stack/rtsp.sh" "$@"
}

make_clip() {
  [[ -s "$CLIP" ]] && return 0
  local py
  # The photographs come with scikit-image, which is in the model converter's venv.
  py="$(compgen -G "${FRAMEWIRE_CACHE:-$HOME/.cache/framewire}/venv/model-*/bin/python" | head -n1 || true)"
  [[ -n "$py" && -x "$py" ]] || { "$FW_SCRIPTS_DIR/model.sh" >&2; py="$(compgen -G "${FRAMEWIRE_CACHE:-$HOME/.cache/framewire}/venv/model-*/bin/python" | head -n1 || true)"; }
  [[ -n "$py" && -x "$py" ]] || fw_die "no model venv python (scripts/model.sh makes it)"
  fw_log "making $CLIP (scripts/model/oracle.py clip)" >&2
  "$py" "$FW_SCRIPTS_DIR/model/oracle.py" clip "$CLIP.$$.mp4" >"$FW_LOG_DIR/people-clip.log" 2>&1 \
    || { tail -5 "$FW_LOG_DIR/people-clip.log" >&2; rm -f "$CLIP.$$.mp4"; fw_die "oracle.py clip failed"; }
  mv "$CLIP.$$.mp4" "$CLIP"
}

case "${1:-}" in
  up) mkdir -p "$FW_LOG_DIR"; make_clip; rtsp up >&2; echo "rtsp://127.0.0.1:$PORT/people" ;;
  down) rtsp down >&2 ;;
  *) fw_die "usage: $0 up|down   (env PEOPLE_INSTANCE, PEOPLE_PORT)" ;;
esac
