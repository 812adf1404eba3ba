#!/usr/bin/env bash
# `make test`: everything, on a fresh machine or a warm one. Installs what is missing,
# checks formatting and lints, starts the real local stack, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "prerequisites"
scripts/install-prereqs.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "local stack (Kafka, PostgreSQL, RTSP server)"
scripts/stack.sh up

step "build binaries"
cargo build --workspace --bins --locked

step "tests: unit, integration, end-to-end"
export FRAMEWIRE_TEST_PG_DSN="${FRAMEWIRE_TEST_PG_DSN:-postgres://framewire:framewire@127.0.0.1:55432/framewire}"
cargo test --workspace --locked --no-fail-fast

step "deploy checks: chart, kustomize, schemas, policy, alerts, dashboard, image, kube play (scripts/deploy/check.sh)"
scripts/deploy/check.sh

step "done in $((SECONDS - started)) s (the stack keeps running: make stack-down stops it)"
