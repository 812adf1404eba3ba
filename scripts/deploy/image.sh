#!/usr/bin/env bash
# Build and test the Framewire image with podman, from the repository's Dockerfile, with the
# local Debian stand-ins for its public base images (scripts/deploy/bases.sh).
#
#   scripts/deploy/image.sh prebuilt BIN_DIR   target `prebuilt`: BIN_DIR's binaries (debug info
#                                              stripped) and the object detector from the host's
#                                              model cache (scripts/model.sh) on the runtime
#                                              base; skipped when the inputs' hash matches an
#                                              existing image
#   scripts/deploy/image.sh full               the default target: the whole multi-stage build
#                                              (cargo-chef dependency layer, release build, the
#                                              model made by scripts/model.sh inside the build)
#   scripts/deploy/image.sh model              only the Dockerfile's `model` stage; checks that
#                                              it made the same ONNX bytes as the host's cache
#   scripts/deploy/image.sh smoke IMAGE        run each binary as in Kubernetes: non-root,
#                                              read-only root, all capabilities dropped; no shell
#   scripts/deploy/image.sh compare IMAGE      the image's binaries = the workspace's binaries, same
#                                              --version as the host's `cargo build --release`
#   scripts/deploy/image.sh sbom IMAGE         the image's SBOM (SPDX JSON, syft), printed as a path:
#                                              $FW_CACHE/sbom/<image>.spdx.json
#   scripts/deploy/image.sh camera             the test camera (deploy/camera/Dockerfile, the
#                                              chart's testCamera) on the local Debian base;
#                                              skipped when the inputs' hash matches
#   scripts/deploy/image.sh camera-smoke IMAGE [STREAM...]
#                                              the camera as in Kubernetes (65532, read-only
#                                              root, no capabilities) answers an RTSP DESCRIBE
#                                              of each stream (default: its default streams)
#                                              with an H.264 SDP
#   scripts/deploy/image.sh push IMAGE REF CAMERA [CAMERA_REF]
#                                              tag and push IMAGE as REF and CAMERA as CAMERA_REF
#                                              (default REF's repository + "-camera", same tag:
#                                              reg/framewire:1.0 → reg/framewire-camera:1.0)
#
# prebuilt/full/camera print the image name on stdout (localhost/framewire[-camera]:<tag>).
set -euo pipefail
FW_COMPONENT=deploy-image
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/stack/lib.sh
source "$HERE/../stack/lib.sh"
log() { fw_log "$@" >&2; }
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"
ROOT="$FW_REPO_ROOT"
FW_CACHE="${FW_CACHE:-$HOME/.cache/framewire}"
BINS=(framewire-ingest framewire-worker framewire-sink framewire-loadgen)
CAMERA_DOCKERFILE=deploy/camera/Dockerfile
# The streams the camera image serves by default (its CMD).
CAMERA_STREAMS=(test-moving test-ball test-black)
# What the image ships of scripts/model.sh's output (/opt/framewire/models).
MODEL_FILES=(nanodet-g-416.onnx coco80.txt NOTICE.txt LICENSE.human-models.MIT.txt LICENSE.nanodet.Apache-2.0.txt)
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"
REVISION="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"

bases() {
  RUNTIME_BASE="$("$HERE/bases.sh" runtime)"
  DEBIAN_BASE="$("$HERE/bases.sh" debian)"
}

label() { podman image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null || true; }

# The host's model directory (scripts/model.sh: a sha256 check when warm, else npm + venv).
model_dir() {
  local dir
  # (its last line: a cold run also logs to stdout)
  dir="$("$ROOT/scripts/model.sh" | tail -n 1)" || fw_die "scripts/model.sh failed: the image ships the model it makes"
  [[ -f "$dir/nanodet-g-416.onnx" ]] || fw_die "scripts/model.sh printed '$dir', which has no nanodet-g-416.onnx"
  echo "$dir"
}

# The build secret for the model stage's downloads: the host's CA bundle, so npm and pip in
# the build trust what the host trusts (e.g. a TLS-intercepting proxy's CA).
ca_secret() {
  local ca=/etc/ssl/certs/ca-certificates.crt
  if [[ -s "$ca" ]]; then echo "--secret=id=extra_ca,src=$ca"; fi
}

# cached_build IMAGE KEY LOGNAME BUILD-ARGS...: podman build -t IMAGE (IMAGE = <repo>:<kind>-KEY,
# KEY the hash of the build's inputs, kept as label io.framewire.inputs) unless IMAGE already
# exists with that label; then only the newest few <repo>:<kind>-* images are kept.
cached_build() {
  local image=$1 key=$2 log="$FW_CACHE/$3.log"
  shift 3
  if [[ "$(label "$image" io.framewire.inputs)" == "$key" ]]; then
    log "image $image is up to date (inputs unchanged)"
    return 0
  fi
  log "podman build → $image (log: $log)"
  podman build -q --pull=never --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
    --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --label io.framewire.inputs="$key" -t "$image" "$@" >"$log" 2>&1 \
    || { tail -30 "$log" >&2; fw_die "podman build of $image failed (log: $log)"; }
  podman images --format '{{.Repository}}:{{.Tag}}' --filter reference="${image%-*}-*" \
    | grep -v "^$image$" | tail -n +3 | xargs -r podman rmi >/dev/null 2>&1 || true
}

prebuilt() {
  local bin_dir=$1 stage="$FW_CACHE/image-context" b f key image models
  bases
  models="$(model_dir)"
  rm -rf "$stage" && mkdir -p "$stage/data" "$stage/models"
  for b in "${BINS[@]}"; do
    [[ -x "$bin_dir/$b" ]] || fw_die "$bin_dir/$b missing"
    objcopy --strip-debug "$bin_dir/$b" "$stage/$b"
  done
  for f in "${MODEL_FILES[@]}"; do
    install -m 0644 "$models/$f" "$stage/models/$f"
  done
  key="$( (sha256sum "$ROOT/Dockerfile" "$stage"/framewire-* "$stage"/models/*; podman image inspect --format '{{.Id}}' "$RUNTIME_BASE" "$DEBIAN_BASE") \
    | sha256sum | cut -c1-16)"
  image="localhost/framewire:prebuilt-$key"
  cached_build "$image" "$key" image-build --target prebuilt -f "$ROOT/Dockerfile" \
    --build-arg RUNTIME_IMAGE="$RUNTIME_BASE" --build-arg DEBIAN_IMAGE="$DEBIAN_BASE" "$stage"
  echo "$image"
}

# model: the Dockerfile's `model` stage alone (apt, npm pack, the venv, the conversion); its ONNX
# must be byte-identical to the host's (both sha256-pinned by scripts/model.sh).
model() {
  local image=localhost/framewire:model host in_image
  bases
  log "podman build --target model → $image (npm + PyPI downloads the first time)"
  # shellcheck disable=SC2046
  podman build --pull=never -f "$ROOT/Dockerfile" --target model $(ca_secret) \
    --build-arg DEBIAN_IMAGE="$DEBIAN_BASE" -t "$image" "$ROOT" >"$FW_CACHE/image-model.log" 2>&1 \
    || { tail -40 "$FW_CACHE/image-model.log" >&2; fw_die "podman build --target model failed; log: $FW_CACHE/image-model.log"; }
  host="$(sha256sum "$(model_dir)/nanodet-g-416.onnx" | cut -d' ' -f1)"
  in_image="$(podman run --rm --network=none --entrypoint sha256sum "$image" /out/models/nanodet-g-416.onnx | cut -d' ' -f1)"
  [[ "$in_image" == "$host" ]] || fw_die "the model stage made nanodet-g-416.onnx with sha256 $in_image, the host's is $host"
  printf '    ok  model stage: %s\n' "$(podman run --rm --network=none --entrypoint ls "$image" /out/models | paste -sd' ')" >&2
  printf '    ok  nanodet-g-416.onnx sha256 %s = the host cache'"'"'s\n' "${host:0:16}…" >&2
  echo "$image"
}

full() {
  local build_base image=localhost/framewire:full
  bases
  build_base="$("$HERE/bases.sh" build)"
  local args=(--pull=never -f "$ROOT/Dockerfile"
    --build-arg RUST_IMAGE="$build_base" --build-arg RUNTIME_IMAGE="$RUNTIME_BASE"
    --build-arg DEBIAN_IMAGE="$DEBIAN_BASE" --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION")
  local ca; ca="$(ca_secret)"; [[ -z "$ca" ]] || args+=("$ca")
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
  # The object detector: every shipped file, byte-identical to scripts/model.sh's output, and a
  # worker configured with it (the chart's default) passes its config check as 65532.
  local cid tmp f models
  models="$(model_dir)"
  tmp="$(mktemp -d)"
  cid="$(podman create "$image" framewire-worker --version)"
  podman cp "$cid:/opt/framewire/models" "$tmp/" >/dev/null || { podman rm -f "$cid" >/dev/null; rm -rf "$tmp"; fw_die "$image has no /opt/framewire/models"; }
  podman rm -f "$cid" >/dev/null
  for f in "${MODEL_FILES[@]}"; do
    cmp -s "$tmp/models/$f" "$models/$f" || { rm -rf "$tmp"; fw_die "$image: /opt/framewire/models/$f missing or not the same as $models/$f"; }
  done
  rm -rf "$tmp"
  out="$(podman run --rm --network=none --read-only --cap-drop=ALL --user 65532:65532 \
    -e FRAMEWIRE_DETECT__MODEL=/opt/framewire/models/nanodet-g-416.onnx "$image" framewire-worker --print-config 2>&1)" \
    || fw_die "framewire-worker refuses [detect] model = /opt/framewire/models/nanodet-g-416.onnx in $image: $out"
  grep -q 'nanodet-g-416.onnx' <<<"$out" || fw_die "framewire-worker --print-config does not show the model: $out"
  printf '    ok  /opt/framewire/models: %s (= %s); the worker accepts [detect] model there\n' "${MODEL_FILES[*]}" "$models" >&2
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
  (cd "$ROOT" && cargo build --release --locked --bins -p framewire-ingest -p framewire-worker -p framewire-sink -p framewire-loadgen \
    --features framewire-worker/ffmpeg) >&2
  listed="$(podman run --rm --network=none --entrypoint /usr/local/bin/framewire-ingest "$image" --version >/dev/null 2>&1 && echo yes)"
  [[ "$listed" == yes ]] || fw_die "framewire-ingest missing in $image"
  for b in "${BINS[@]}"; do
    in_image="$(podman run --rm --network=none "$image" "$b" --version)"
    on_host="$("$target/release/$b" --version)"
    [[ "$in_image" == "$on_host" ]] || fw_die "$b: image says '$in_image', host release build says '$on_host'"
    printf '    ok  %-18s image = host release build: %s\n' "$b" "$in_image" >&2
  done
}

# The SBOM of an image as the release workflow makes it (syft, SPDX JSON). The crates come from
# the list cargo-auditable embeds in the binaries of the full build (host-built binaries have
# none); the local runtime base has no dpkg metadata, so the Debian packages of the real
# distroless base are listed in the release's SBOM only.
sbom() {
  local image=$1 out tmp
  "$HERE/install-tools.sh" --syft-only >&2 || fw_die "syft install failed"
  out="$FW_CACHE/sbom/$(basename "${image//:/-}").spdx.json"
  tmp="$(mktemp -d)"
  mkdir -p "$FW_CACHE/sbom"
  podman save -q --format oci-archive -o "$tmp/image.tar" "$image" || { rm -rf "$tmp"; fw_die "podman save $image failed"; }
  SYFT_CHECK_FOR_APP_UPDATE=false "${FW_TOOLS:-$HOME/.cache/framewire/tools}/bin/syft" scan -q "oci-archive:$tmp/image.tar" \
    --source-name framewire --source-version "$VERSION" -o "spdx-json=$out" \
    || { rm -rf "$tmp"; fw_die "syft scan $image failed"; }
  rm -rf "$tmp"
  echo "$out"
}

# camera: its build context is a folder holding rtsp_server.py alone (the Dockerfile's context
# is scripts/stack); apt downloads the packages the first time.
camera() {
  local stage="$FW_CACHE/camera-context" key image
  bases
  rm -rf "$stage" && mkdir -p "$stage"
  cp "$ROOT/scripts/stack/rtsp_server.py" "$stage/"
  key="$( (cd "$ROOT" && sha256sum "$CAMERA_DOCKERFILE" scripts/stack/rtsp_server.py; podman image inspect --format '{{.Id}}' "$DEBIAN_BASE") \
    | sha256sum | cut -c1-16)"
  image="localhost/framewire-camera:build-$key"
  cached_build "$image" "$key" image-camera -f "$ROOT/$CAMERA_DOCKERFILE" --build-arg DEBIAN_IMAGE="$DEBIAN_BASE" "$stage"
  echo "$image"
}

camera_smoke() {
  local image=$1 user cid s out size
  shift
  (( $# )) || set -- "${CAMERA_STREAMS[@]}"
  user="$(podman image inspect --format '{{.Config.User}}' "$image")"
  [[ "$user" == "65532:65532" ]] || fw_die "$image runs as '$user', not 65532:65532"
  cid="$(podman run -d --rm --network=none --read-only --cap-drop=ALL --security-opt=no-new-privileges \
    --user 65532:65532 "$image")"
  # DESCRIBE makes the server build and preroll the stream's pipeline (x264enc's caps go into
  # the SDP): the encoder, the payloader and the overlay's font all work as 65532 on a read-only root.
  for s in "$@"; do
    out="$(podman exec "$cid" python3 -c '
import socket, sys, time
url = "rtsp://127.0.0.1:8554/" + sys.argv[1]
for _ in range(100):
    try:
        c = socket.create_connection(("127.0.0.1", 8554), timeout=10)
        break
    except OSError:
        time.sleep(0.1)
c.sendall(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
time.sleep(3)
print(c.recv(65536).decode(errors="replace"))' "$s" 2>&1)" || true
    if ! grep -q '^RTSP/1.0 200 OK' <<<"$out" || ! grep -q 'a=rtpmap:96 H264/90000' <<<"$out"; then
      podman logs "$cid" >&2; podman rm -f "$cid" >/dev/null
      fw_die "$image: DESCRIBE /$s did not answer an H.264 SDP: $out"
    fi
  done
  podman rm -f "$cid" >/dev/null
  size="$(podman image inspect --format '{{.Size}}' "$image")"
  printf '    ok  camera %s: user 65532:65532, read-only root, no capabilities; DESCRIBE /%s → 200 with H.264 SDP; %s MB\n' \
    "$image" "$(IFS=,; echo "$*" | sed 's/,/, \//g')" "$((size / 1000000))" >&2
}

# The camera's reference next to REF: its repository + "-camera", the same tag.
camera_ref() {
  if [[ "${1##*/}" == *:* ]]; then echo "${1%:*}-camera:${1##*:}"; else echo "$1-camera"; fi
}

push() {
  local image=$1 ref=$2 camera=$3 camera_ref=${4:-}
  [[ -n "$camera_ref" ]] || camera_ref="$(camera_ref "$ref")"
  podman tag "$image" "$ref" && podman push "$ref" && echo "pushed $ref"
  podman tag "$camera" "$camera_ref" && podman push "$camera_ref" && echo "pushed $camera_ref"
}

case "${1:-}" in
  prebuilt) prebuilt "${2:?BIN_DIR}" ;;
  full) full ;;
  model) model ;;
  smoke) smoke "${2:?IMAGE}" ;;
  compare) compare "${2:?IMAGE}" ;;
  sbom) sbom "${2:?IMAGE}" ;;
  camera) camera ;;
  camera-smoke) shift; camera_smoke "${1:?IMAGE}" "${@:2}" ;;
  push) push "${2:?IMAGE}" "${3:?REF}" "${4:?CAMERA}" "${5:-}" ;;
  *) fw_die "usage: $0 prebuilt BIN_DIR | full | model | smoke IMAGE | compare IMAGE | sbom IMAGE | camera | camera-smoke IMAGE [STREAM...] | push IMAGE REF CAMERA [CAMERA_REF]" ;;
esac
