#!/usr/bin/env bash
# `make soak` (not in CI): SOAK_CAMERAS (50) cameras through ingest, two workers and the sink
# for SOAK_MINUTES (60) on the local stack; the RSS of every service each minute, and its slope
# after SOAK_WARMUP (10) minutes. Samples in target/artifacts/soak.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-prereqs.sh
scripts/stack.sh up
cargo build --workspace --bins --locked
cargo run -p framewire-e2e --locked --bin soak -- \
  --cameras "${SOAK_CAMERAS:-50}" --minutes "${SOAK_MINUTES:-60}" --warmup "${SOAK_WARMUP:-10}"
