#!/usr/bin/env bash
# `make chaos`: the fault suite alone (make test runs it too, inside `cargo test`).
# Starts what it needs (the local stack for PostgreSQL and the RTSP cameras; the suite's own
# 3-node Kafka cluster `chaos` on 127.0.0.1:29092,29094,29096 and a second RTSP server), runs
# tests/tests/chaos.rs one scenario at a time, prints the table (also in
# target/artifacts/chaos.md) and stops the cluster again. CHAOS_ONLY=steady,broker-kill runs
# only the named scenarios; CHAOS_KEEP=1 leaves the cluster running.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "prerequisites and the local stack"
scripts/install-prereqs.sh
scripts/stack.sh up

step "build"
cargo build --workspace --bins --locked --features framewire-worker/ffmpeg

step "fault suite"
rc=0
cargo test -p framewire-e2e --locked --test chaos -- --nocapture || rc=$?

if [[ "${CHAOS_KEEP:-0}" != 1 ]]; then
  step "stopping the fault suite's Kafka cluster and RTSP server"
  KAFKA_CLUSTER=chaos KAFKA_NODES=3 KAFKA_PORT=29092 KAFKA_CONTROLLER_PORT=29192 scripts/stack/kafka.sh down || true
  RTSP_INSTANCE=freeze RTSP_PORT=8654 scripts/stack/rtsp.sh down || true
fi
step "done in $((SECONDS - started)) s (table: target/artifacts/chaos.md)"
exit "$rc"
