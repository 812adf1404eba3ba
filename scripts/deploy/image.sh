#!/usr/bin/env bash
# Build and test the Framewire image with podman, from the repository's Dockerfile, with the
# local Debian stand-ins for its public base images (scripts/deploy/bases.sh).
#
#   scripts/deploy/image.sh prebuilt BIN_DIR   target `prebuilt`: BIN_DIR's binaries (debug info
#                                              stripped) on the runtime base; skipped when the
#                                              inputs' hash matches an existing image
#   scripts/deploy/image.sh full               the default target: the whole multi-stage build
#                                              (cargo-chef dependency layer, release build)
#   scripts/deploy/image.sh smoke IMAGE        run each binary as in Kubernetes: non-root,
#                                              read-only root, all capabilities dropped; no shell
#   scripts/deploy/image.sh compare IMAGE      the image's binaries = the workspace's binaries, same
#                                              --version as the host's `cargo build --release`
#
# prebuilt/full print the image name on stdout (localhost/framewire:<tag>).
set -euo pipefail
FW_COMPONENT=deploy-image
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/stack/lib.sh
source "$HERE/../stack/lib.sh"
log() { fw_log "$@" >&2; }
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"
ROOT="$FW_REPO_ROOT"
FW_CACHE="${FW_CACHE:-$HOME/.cache/framewire}"
BINS=(framewire-ingest framewire-worker framewire-sink)
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"
REVISION="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"

bases() {
  RUNTIME_BASE="$("$HERE/bases.sh" runtime)"
  DEBIAN_BASE="$("$HERE/bases.sh" debian)"
}

label() { podman image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null || true; }

prebuilt() {
  local bin_dir=$1 stage="$FW_CACHE/image-context" b key image
  bases
  rm -rf "$stage" && mkdir -p "$stage/data"
  for b in "${BINS[@]}"; do
    [[ -x "$bin_dir/$b" ]] || fw_die "$bin_dir/$b missing"
    objcopy --strip-debug "$bin_dir/$b" "$stage/$b"
  done
  key="$( (sha256sum "$ROOT/Dockerfile" "$stage"/framewire-*; podman image inspect --format '{{.Id}}' "$RUNTIME_BASE" "$DEBIAN_BASE") \
    | sha256sum | cut -c1-16)"
  image="localhost/framewire:prebuilt-$key"
  if [[ "$(label "$image" io.framewire.inputs)" == "$key" ]]; then
    log "image $image is up to date (inputs unchanged)"
  else
    log "podman build --target prebuilt → $image"
    podman build -q --pull=never --target prebuilt -f "$ROOT/Dockerfile" \
      --build-arg RUNTIME_IMAGE="$RUNTIME_BASE" --build-arg DEBIAN_IMAGE="$DEBIAN_BASE" \
      --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
      --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      --label io.framewire.inputs="$key" -t "$image" "$stage" >"$FW_CACHE/image-build.log" 2>&1 \
      || { tail -30 "$FW_CACHE/image-build.log" >&2; fw_die "podman build failed"; }
    # Keep the newest few prebuilt images only.
    podman images --format '{{.Repository}}:{{.Tag}}' --filter reference='localhost/framewire:prebuilt-*' \
      | grep -v "^$image$" | tail -n +3 | xargs -r podman rmi >/dev/null 2>&1 || true
  fi
  echo "$image"
}

full() {
  local build_base image=localhost/framewire:full
  bases
  build_base="$("$HERE/bases.sh" build)"
  local args=(--pull=never -f "$ROOT/Dockerfile"
    --build-arg RUST_IMAGE="$build_base" --build-arg RUNTIME_IMAGE="$RUNTIME_BASE"
    --build-arg DEBIAN_IMAGE="$DEBIAN_BASE" --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION")
  # The build stage is tagged so that its layers (the cargo-chef dependency layer: several GB of
  # target/) stay as the cache of the next build while older, untagged ones are pruned.
  log "podman build --target build (RUST_IMAGE=$build_base) → localhost/framewire:build-cache"
  podman build "${args[@]}" --target build -t localhost/framewire:build-cache "$ROOT" >"$FW_CACHE/image-full.log" 2>&1 \
    || { tail -40 "$FW_CACHE/image-full.log" >&2; buildah rm --all >/dev/null 2>&1 || true
         fw_die "podman build (full) failed; log: $FW_CACHE/image-full.log"; }
  log "podman build (default target) → $image"
  podman build "${args[@]}" -t "$image" "$ROOT" >>"$FW_CACHE/image-full.log" 2>&1 \
    || { tail -40 "$FW_CACHE/image-full.log" >&2; fw_die "podman build (full) failed; log: $FW_CACHE/image-full.log"; }
  grep -E 'STEP .*cargo (chef|build)|Using cache' "$FW_CACHE/image-full.log" | cut -c1-120 | sed 's/^/    /' | tail -12 >&2
  podman image prune -f >/dev/null 2>&1 || true
  echo "$image"
}

smoke() {
  local image=$1 b user out
  user="$(podman image inspect --format '{{.Config.User}}' "$image")"
  [[ "$user" == "65532:65532" ]] || fw_die "$image runs as '$user', not 65532:65532"
  for k in title source version revision licenses; do
    [[ -n "$(label "$image" "org.opencontainers.image.$k")" ]] || fw_die "$image: label org.opencontainers.image.$k missing"
  done
  for b in "${BINS[@]}"; do
    out="$(podman run --rm --network=none --read-only --cap-drop=ALL --security-opt=no-new-privileges \
      --user 65532:65532 "$image" "$b" --version 2>&1)" || fw_die "$b --version failed in $image: $out"
    printf '    ok  %-18s %s\n' "$b" "$out" >&2
  done
  # No shell in the runtime image: nothing can need one at run time.
  if podman run --rm --network=none "$image" /bin/sh -c true >/dev/null 2>&1; then
    fw_die "$image has a shell"
  fi
  local size glibc
  size="$(podman image inspect --format '{{.Size}}' "$image")"
  glibc="$(podman run --rm --network=none --entrypoint /usr/lib/x86_64-linux-gnu/libc.so.6 "$image" 2>&1 | head -1 || true)"
  printf '    ok  user 65532:65532, read-only root, no shell, %s MB, runtime %s\n' "$((size / 1000000))" "${glibc:-glibc ?}" >&2
}

compare() {
  local image=$1 target="${CARGO_TARGET_DIR:-$ROOT/target}" b in_image on_host listed
  log "cargo build --release --locked --bins (host) for the comparison"
  (cd "$ROOT" && cargo build --release --locked --bins -p framewire-ingest -p framewire-worker -p framewire-sink) >&2
  listed="$(podman run --rm --network=none --entrypoint /usr/local/bin/framewire-ingest "$image" --version >/dev/null 2>&1 && echo yes)"
  [[ "$listed" == yes ]] || fw_die "framewire-ingest missing in $image"
  for b in "${BINS[@]}"; do
    in_image="$(podman run --rm --network=none "$image" "$b" --version)"
    on_host="$("$target/release/$b" --version)"
    [[ "$in_image" == "$on_host" ]] || fw_die "$b: image says '$in_image', host release build says '$on_host'"
    printf '    ok  %-18s image = host release build: %s\n' "$b" "$in_image" >&2
  done
}

case "${1:-}" in
  prebuilt) prebuilt "${2:?BIN_DIR}" ;;
  full) full ;;
  smoke) smoke "${2:?IMAGE}" ;;
  compare) compare "${2:?IMAGE}" ;;
  *) fw_die "usage: $0 prebuilt BIN_DIR | full | smoke IMAGE | compare IMAGE" ;;
esac
