#!/usr/bin/env bash
# `make bench`: whole-pipeline benchmarks on the real local stack, printed as tables.
#   BENCH_CAMERAS (100) cameras for BENCH_SECONDS (60) seconds through a release ingest.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_CAMERAS="${BENCH_CAMERAS:-100}"
seconds="${BENCH_SECONDS:-60}"
target="${CARGO_TARGET_DIR:-$PWD/target}"

scripts/stack.sh up
echo "==> release build of framewire-ingest"
cargo build --release --locked -p framewire-ingest
scripts/bench/bench-rtsp.sh up
trap 'scripts/bench/bench-rtsp.sh down' EXIT
echo "==> ingest: $BENCH_CAMERAS cameras for $seconds s"
FRAMEWIRE_BIN_DIR="$target/release" cargo run --quiet --locked -p framewire-e2e --bin bench-ingest -- \
  --cameras "$BENCH_CAMERAS" --seconds "$seconds" --rtsp-port "${BENCH_RTSP_PORT:-8654}"
