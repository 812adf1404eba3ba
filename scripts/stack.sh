#!/usr/bin/env bash
# The local real stack: Kafka (KRaft), PostgreSQL, RTSP test cameras -- all on 127.0.0.1.
#
#   scripts/stack.sh up       install what is missing, start everything (idempotent)
#   scripts/stack.sh down     stop everything (data is kept)
#   scripts/stack.sh status   one line per component; exit 1 if any is down
#   scripts/stack.sh env      print `export ...` lines:  eval "$(scripts/stack.sh env)"
#   scripts/stack.sh verify   check the RTSP cameras with ffprobe/ffmpeg (not rtcponly: rtsp.sh)
#   scripts/stack.sh reset    stop everything and delete Kafka and PostgreSQL data
#
# Data, logs and pid files: ${FW_STACK_DIR:-<repo>/.stack} (logs in $FW_STACK_DIR/logs).
# Ports: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (19093), PG_PORT (55432), RTSP_PORT (8554).
# The single Kafka node also listens on 9094 (SASL_PLAINTEXT), 9096 (SASL_SSL) and 9098 (mutual
#   TLS), SCRAM-SHA-512 and ACLs, with certificates by scripts/stack/certs.sh in
#   $FW_STACK_DIR/certs (docs/kafka-security.md); `up` restarts a running Kafka node whose
#   configuration changed (new listeners, renewed certificates).
# Kafka: one KRaft node by default. KAFKA_NODES=3 scripts/stack.sh up (or KAFKA_NODES=3 make
#   stack-up) starts a 3-node cluster instead (broker+controller each, client ports 9092, 9094,
#   9096, RF 3, min ISR 2; the single node must be down first); down/status/env then follow the
#   cluster's last up (remembered in $FW_STACK_DIR/kafka/cluster.env: KAFKA_NODES=1 after down
#   goes back to one node). KAFKA_CLUSTER names another cluster (default kafka); more Kafka
#   settings and the fault-test commands (kill/stop/start I, groups, lag): scripts/stack/kafka.sh.
set -euo pipefail
FW_COMPONENT=stack
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh"
S="$FW_SCRIPTS_DIR/stack"

print_env() {
  local kafka
  kafka="$("$S/kafka.sh" bootstrap)"   # every node of the cluster (no JVM: from its settings)
  cat <<EOF
export FW_STACK_DIR='$FW_STACK_DIR'
export FW_KAFKA_BOOTSTRAP='$kafka'
export FW_PG_DSN='postgres://framewire:framewire@127.0.0.1:$PG_PORT/framewire'
export FW_RTSP_BASE='rtsp://127.0.0.1:$RTSP_PORT'
export FW_RTSP_MOVING='rtsp://127.0.0.1:$RTSP_PORT/moving'
export FW_RTSP_BLACK='rtsp://127.0.0.1:$RTSP_PORT/black'
export FW_RTSP_FROZEN='rtsp://127.0.0.1:$RTSP_PORT/frozen'
export FW_RTSP_SECURE='rtsp://127.0.0.1:$RTSP_PORT/secure'
export FW_RTSP_SECURE_USER='framewire'
export FW_RTSP_SECURE_PASSWORD='s3cret-cam'
export FW_RTSP_H265='rtsp://127.0.0.1:$RTSP_PORT/h265'
export FW_RTSP_MJPEG='rtsp://127.0.0.1:$RTSP_PORT/mjpeg'
export FW_RTSP_AUDIO='rtsp://127.0.0.1:$RTSP_PORT/audio'
export FW_RTSP_BIG='rtsp://127.0.0.1:$RTSP_PORT/big'
EOF
}

cmd_up() {
  local t0=$EPOCHREALTIME
  mkdir -p "$FW_LOG_DIR"
  "$FW_SCRIPTS_DIR/install-prereqs.sh" --no-rust-check
  # Kafka is the slow one (JVM): start it in parallel with the others.
  "$S/kafka.sh" up &
  local kpid=$! rc=0
  "$S/postgres.sh" up || rc=1
  "$S/rtsp.sh" up || rc=1
  wait "$kpid" || rc=1
  if (( rc )); then
    fw_die "stack did not come up (see the errors above and the logs in $FW_LOG_DIR)"
  fi
  print_env >"$FW_STACK_DIR/env"
  fw_log "stack up in $(fw_since "$t0") s"
  echo "  KAFKA  $("$S/kafka.sh" bootstrap)   topics: ${FW_TOPIC_FRAMES:-framewire.frames} ${FW_TOPIC_STATS:-framewire.stats} ${FW_TOPIC_DLQ:-framewire.dlq} ${FW_TOPIC_CONTROL:-framewire.control}"
  if [[ -s "$FW_STACK_DIR/certs/ca.crt" && "$("$S/kafka.sh" bootstrap)" != *,* ]]; then
    echo "         SASL_SSL 127.0.0.1:${KAFKA_SASL_SSL_PORT:-$(( KAFKA_PORT + 4 ))}, mTLS 127.0.0.1:${KAFKA_MTLS_PORT:-$(( KAFKA_PORT + 6 ))}   CA $FW_STACK_DIR/certs/ca.crt"
  fi
  echo "  PG     postgres://framewire:framewire@127.0.0.1:$PG_PORT/framewire"
  echo "  RTSP   rtsp://127.0.0.1:$RTSP_PORT/{$(paste -sd, "$FW_STACK_DIR/rtsp.mounts" 2>/dev/null || echo moving,black,frozen)}"
  echo "  env    source $FW_STACK_DIR/env    (or: eval \"\$(scripts/stack.sh env)\")"
}

cmd_down() {
  local rc=0
  "$S/rtsp.sh" down || rc=1
  "$S/postgres.sh" down || rc=1
  "$S/kafka.sh" down || rc=1
  return "$rc"
}

cmd_status() {
  local rc=0
  "$S/kafka.sh" status || rc=1
  "$S/postgres.sh" status || rc=1
  "$S/rtsp.sh" status || rc=1
  return "$rc"
}

cmd_reset() {
  cmd_down || true
  "$S/kafka.sh" reset
  "$S/postgres.sh" reset
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) print_env ;;
  verify) shift; exec "$S/rtsp.sh" verify "$@" ;;   # all mounts but rtcponly by default
  reset) cmd_reset ;;
  *) sed -n '2,22p' "$0" >&2; exit 2 ;;
esac
