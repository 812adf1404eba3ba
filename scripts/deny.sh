#!/usr/bin/env bash
# Supply chain, offline: `cargo deny check licenses bans sources` against deny.toml (every crate's
# licence allowed, no wildcard versions, crates.io only). Installs cargo-deny (pinned, from
# crates.io, cached under ~/.cache/framewire/tools) when missing, and proves the check can fail:
# a copy of deny.toml that allows no MIT must be refused.
#
#   scripts/deny.sh
#
# The advisories check needs the RustSec database from the network: `cargo deny check advisories`.
set -euo pipefail
FW_COMPONENT=deny
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh"

CARGO_DENY_VERSION=0.20.2
root="$HOME/.cache/framewire/tools/cargo-deny-$CARGO_DENY_VERSION"
deny="$root/bin/cargo-deny"
if [[ ! -x "$deny" ]]; then
  fw_log "installing cargo-deny $CARGO_DENY_VERSION (cargo install, ~2 min once)"
  cargo install --locked --quiet --version "$CARGO_DENY_VERSION" --root "$root" cargo-deny
fi
cd "$FW_REPO_ROOT"
# Every crate of Cargo.lock on disk (the checks read their manifests offline), including those
# of features no build in make test uses.
cargo fetch --locked --quiet
"$deny" --offline check licenses bans sources

canary="$(mktemp -d)"
trap 'rm -rf "$canary"' EXIT
grep -v '^  "MIT",$' deny.toml >"$canary/deny.toml"
if "$deny" --offline check --config "$canary/deny.toml" licenses >"$canary/log" 2>&1; then
  fw_die "cargo deny accepts a deny.toml without MIT: the licence check cannot fail"
fi
fw_log "licences, bans and sources ok; a deny.toml without MIT is refused (the check can fail)"
