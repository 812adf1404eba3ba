#!/usr/bin/env bash
# `make test`: everything, on a fresh machine or a warm one. Installs what is missing,
# checks formatting and lints, starts the real local stack, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The worker with both decoder backends (openh264 and libavcodec): what the image ships.
FEATURES=(--features framewire-worker/ffmpeg)

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

# A full build and the stacks need room: a full disk fails much later with a cryptic linker error.
need_gb=15
build_dir="${CARGO_TARGET_DIR:-$PWD}"
while [[ ! -d "$build_dir" ]]; do build_dir="$(dirname "$build_dir")"; done
free_gb=$(( $(df -Pk "$build_dir" | awk 'NR==2 {print $4}') / 1048576 ))
if (( free_gb < need_gb )); then
  echo "make test: only ${free_gb} GB free where the build goes (${CARGO_TARGET_DIR:-$PWD/target}); it needs about ${need_gb} GB" >&2
  exit 1
fi

step "prerequisites"
scripts/install-prereqs.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked "${FEATURES[@]}" -- -D warnings
# ... and the default build (openh264 only, no system libraries) of the crates the feature changes.
cargo clippy -p framewire-decode -p framewire-worker --all-targets --locked -- -D warnings

step "cargo deny: licences, bans, sources (offline; scripts/deny.sh)"
scripts/deny.sh

step "local stack (Kafka, PostgreSQL, RTSP server)"
scripts/stack.sh up

step "Kafka's SASL_SSL and mTLS listeners, by Java tools and librdkafka (scripts/stack/verify-kafka-security.sh)"
scripts/stack/verify-kafka-security.sh

step "build binaries"
cargo build --workspace --bins --locked "${FEATURES[@]}"

step "detector model (scripts/model.sh): libs/inference's model test, the detection oracle and fault tests"
FRAMEWIRE_MODEL_DIR="$(scripts/model.sh)"
export FRAMEWIRE_MODEL_DIR

step "tests: unit, property, integration, end-to-end, fault suite (tests/tests/chaos.rs)"
export FRAMEWIRE_TEST_PG_DSN="${FRAMEWIRE_TEST_PG_DSN:-postgres://framewire:framewire@127.0.0.1:55432/framewire}"
# The fault suite starts its own 3-node Kafka cluster and a second RTSP server; stop them once
# the tests are done (pass or fail), so that the deploy checks get the machine back.
stop_fault_stack() {
  KAFKA_CLUSTER=chaos KAFKA_NODES=3 KAFKA_PORT=29092 KAFKA_CONTROLLER_PORT=29192 \
    scripts/stack/kafka.sh down >/dev/null 2>&1 || true
  RTSP_INSTANCE=freeze RTSP_PORT=8654 scripts/stack/rtsp.sh down >/dev/null 2>&1 || true
}
trap stop_fault_stack EXIT
cargo test --workspace --locked --no-fail-fast "${FEATURES[@]}"
stop_fault_stack
trap - EXIT

step "API fuzz: schemathesis, every check, against the sink's OpenAPI document (scripts/api-fuzz.sh)"
FRAMEWIRE_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/debug" scripts/api-fuzz.sh

step "deploy checks: chart, kustomize, schemas, policy, alerts, dashboard, image, kube play (scripts/deploy/check.sh)"
scripts/deploy/check.sh

step "done in $((SECONDS - started)) s (the stack keeps running: make stack-down stops it)"
