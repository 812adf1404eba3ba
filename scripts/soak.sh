#!/usr/bin/env bash
# `make soak` (not in CI): SOAK_CAMERAS (50) cameras through ingest, two workers and the sink
# for SOAK_MINUTES (60) on the local stack; the RSS of every service each minute, and its slope
# after SOAK_WARMUP (10) minutes. Samples in target/artifacts/soak.csv. The services are release
# builds (what runs in production; SOAK_PROFILE=debug for debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-prereqs.sh
scripts/stack.sh up
profile="${SOAK_PROFILE:-release}"
if [[ "$profile" == release ]]; then
  cargo build --workspace --bins --locked --release --features framewire-worker/ffmpeg
  export FRAMEWIRE_BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
else
  cargo build --workspace --bins --locked --features framewire-worker/ffmpeg
fi
cargo run -p framewire-e2e --locked --bin soak -- \
  --cameras "${SOAK_CAMERAS:-50}" --minutes "${SOAK_MINUTES:-60}" --warmup "${SOAK_WARMUP:-10}"
