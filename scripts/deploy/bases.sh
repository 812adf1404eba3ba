#!/usr/bin/env bash
# Local stand-ins for the Dockerfile's public base images, made from Debian 12 itself with
# debootstrap (there is no registry to pull from here). Cached: an image is rebuilt only when
# this script changes (its hash is the image's io.framewire.base-key label).
#
#   scripts/deploy/bases.sh runtime   localhost/framewire-base/distroless-cc:bookworm
#       what gcr.io/distroless/cc-debian12:nonroot is: the files of libc6, libgcc-s1, libgomp1,
#       libstdc++6, libssl3, ca-certificates (the bundle), tzdata, netbase and os-release,
#       /etc/passwd with nonroot = 65532, /tmp 1777 — no shell, no package manager.
#   scripts/deploy/bases.sh debian    localhost/framewire-base/debian:bookworm-slim
#       Debian 12 minbase, for the Dockerfile's runtime-libs stage (zlib).
#   scripts/deploy/bases.sh build     localhost/framewire-base/rust:1.95-bookworm
#       what rust:1.95-bookworm is for our build: Debian 12 minbase with build-essential,
#       cmake, nasm, pkg-config, libssl-dev, plus this machine's Rust toolchain (rustup cannot
#       download here), CARGO_HOME=/usr/local/cargo, and this machine's CA bundle (crates.io
#       is reached through whatever TLS proxy the machine trusts).
#
# Prints the image name on stdout. Rootfs work happens in $FW_CACHE/bases (~/.cache/framewire).
set -euo pipefail
FW_COMPONENT=deploy-bases
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/stack/lib.sh
source "$HERE/../stack/lib.sh"
log() { fw_log "$@" >&2; }  # stdout carries the image name
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"

FW_CACHE="${FW_CACHE:-$HOME/.cache/framewire}"
WORK="$FW_CACHE/bases"
SUITE=bookworm
RUNTIME_IMAGE=localhost/framewire-base/distroless-cc:bookworm
DEBIAN_IMAGE=localhost/framewire-base/debian:bookworm-slim
BUILD_IMAGE=localhost/framewire-base/rust:1.95-bookworm
KEY="$(sha256sum "$0" | cut -c1-16)"

mirror() {
  local m
  m="$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [[ -n "$m" ]] || m="$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  echo "${m:-http://deb.debian.org/debian}"
}

# current IMAGE: true when IMAGE exists and was made by this version of the script.
current() {
  [[ "$(podman image inspect --format '{{index .Labels "io.framewire.base-key"}}' "$1" 2>/dev/null)" == "$KEY" ]]
}

# import_image NAME ROOTFS CHANGE...: tar ROOTFS into the image NAME; the image it replaces
# (now untagged) is removed.
import_image() {
  local name=$1 dir=$2 old
  shift 2
  old="$(podman image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)"
  log "podman import $name ($(du -sh "$dir" | cut -f1))"
  local changes=()
  for c in "$@" "LABEL io.framewire.base-key=$KEY"; do changes+=(--change "$c"); done
  tar --numeric-owner -C "$dir" --exclude=./.complete -c . | podman import -q "${changes[@]}" - "$name" >/dev/null
  [[ -z "$old" ]] || podman rmi "$old" >/dev/null 2>&1 || true
}

# rootfs NAME INCLUDE: a debootstrap minbase rootfs in $WORK/NAME (kept until the key changes).
rootfs() {
  local include=$2 dir
  dir="$WORK/$1-$(echo "$SUITE $include" | sha256sum | cut -c1-12)"
  if [[ ! -f "$dir/.complete" ]]; then
    command -v debootstrap >/dev/null || fw_die "debootstrap missing: scripts/deploy/install-tools.sh installs it"
    rm -rf "$WORK/$1-"* && mkdir -p "$dir"
    log "debootstrap --variant=minbase $SUITE ($1: $include)"
    debootstrap --variant=minbase --include="$include" "$SUITE" "$dir" "$(mirror)" >"$WORK/$1.debootstrap.log" 2>&1 \
      || { tail -20 "$WORK/$1.debootstrap.log" >&2; fw_die "debootstrap failed (log: $WORK/$1.debootstrap.log)"; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    touch "$dir/.complete"
  fi
  echo "$dir"
}

make_runtime() {
  current "$RUNTIME_IMAGE" && { echo "$RUNTIME_IMAGE"; return; }
  local src out p f
  src="$(rootfs min libssl3,libstdc++6,libgomp1,ca-certificates,tzdata,netbase)"
  out="$WORK/distroless-cc-$KEY"
  rm -rf "$out" && mkdir -p "$out"/{etc,tmp,home/nonroot,usr/bin,usr/lib,usr/lib64,usr/sbin,var/lib}
  ln -s usr/bin "$out/bin"; ln -s usr/lib "$out/lib"; ln -s usr/lib64 "$out/lib64"; ln -s usr/sbin "$out/sbin"
  # Every regular file and symlink of the packages (docs excepted), at its merged-/usr path.
  for p in libc6 libgcc-s1 libgomp1 libstdc++6 libssl3 tzdata netbase; do chroot "$src" dpkg -L "$p"; done \
    | sed -E 's#^/(lib|lib64|bin|sbin)/#/usr/\1/#' \
    | grep -vE '^/usr/share/(doc|man|lintian|locale)/' | sort -u \
    | while IFS= read -r f; do [[ -f "$src$f" || -L "$src$f" ]] && echo ".$f"; done >"$out.list"
  tar -C "$src" -cf - --no-recursion -T "$out.list" | tar -C "$out" -xf -
  rm -f "$out.list"
  mkdir -p "$out/etc/ssl/certs"
  cp -aL "$src/etc/ssl/certs/ca-certificates.crt" "$out/etc/ssl/certs/"
  cp -a "$src/usr/lib/os-release" "$out/usr/lib/os-release"; ln -s ../usr/lib/os-release "$out/etc/os-release"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$out/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$out/etc/group"
  chmod 1777 "$out/tmp"; chown 65532:65532 "$out/home/nonroot"
  # distroless has no shell: make sure none slipped in.
  [[ ! -e "$out/usr/bin/sh" && ! -e "$out/usr/bin/bash" && ! -e "$out/usr/bin/dash" ]] || fw_die "a shell is in the runtime base"
  import_image "$RUNTIME_IMAGE" "$out" 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' 'USER 65532:65532' 'WORKDIR /home/nonroot'
  rm -rf "$out"
  echo "$RUNTIME_IMAGE"
}

make_debian() {
  current "$DEBIAN_IMAGE" && { echo "$DEBIAN_IMAGE"; return; }
  local src
  src="$(rootfs min libssl3,libstdc++6,libgomp1,ca-certificates,tzdata,netbase)"
  import_image "$DEBIAN_IMAGE" "$src" 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  echo "$DEBIAN_IMAGE"
}

make_build() {
  current "$BUILD_IMAGE" && { echo "$BUILD_IMAGE"; return; }
  local src toolchain
  src="$(rootfs build build-essential,cmake,nasm,pkg-config,libssl-dev,ca-certificates,git)"
  toolchain="$(rustc +1.95.0 --print sysroot 2>/dev/null || rustc --print sysroot)"
  [[ "$(rustc --version)" == "rustc 1.95."* ]] || fw_warn "host toolchain is $(rustc --version), not 1.95"
  log "copying the Rust toolchain $toolchain into the build base"
  rm -rf "$src/usr/local/rust" && mkdir -p "$src/usr/local/rust" "$src/usr/local/cargo/bin"
  cp -a "$toolchain/bin" "$toolchain/lib" "$src/usr/local/rust/"
  [[ -d "$toolchain/libexec" ]] && cp -a "$toolchain/libexec" "$src/usr/local/rust/"
  # The build downloads crates: trust what this machine trusts (a proxy's CA, if any).
  cp -L /etc/ssl/certs/ca-certificates.crt "$src/etc/ssl/certs/ca-certificates.crt"
  import_image "$BUILD_IMAGE" "$src" \
    'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV CARGO_HOME=/usr/local/cargo' 'ENV RUSTUP_HOME=/usr/local/rustup'
  rm -rf "$src/usr/local/rust"
  echo "$BUILD_IMAGE"
}

case "${1:-}" in
  runtime) make_runtime ;;
  debian) make_debian ;;
  build) make_build ;;
  *) fw_die "usage: $0 runtime|debian|build" ;;
esac
