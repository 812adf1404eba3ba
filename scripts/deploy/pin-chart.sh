#!/usr/bin/env bash
# Pins a chart to the images of a release, before `helm package` (the release workflow's chart
# job), then checks the result:
#   values.yaml  image.repository/digest and testCamera.image.repository/digest
#   Chart.yaml   artifacthub.io/images (both images at VERSION) and artifacthub.io/prerelease
# The chart rendered with the test camera on must run exactly the two images by digest, and
# every rewritten line must be there: a values.yaml or Chart.yaml that no longer has the lines
# rewritten here fails the release instead of shipping a chart that installs tags.
#
#   scripts/deploy/pin-chart.sh CHART VERSION PRERELEASE IMAGE@DIGEST CAMERA@DIGEST
#
# It rewrites CHART in place: check.sh runs it on a copy, with made-up digests, and on copies
# missing one of the lines, which it must reject.
set -euo pipefail
FW_COMPONENT=pin-chart
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/stack/lib.sh
source "$HERE/../stack/lib.sh"
# shellcheck source=scripts/deploy/versions.env
source "$HERE/versions.env"

(( $# == 5 )) || fw_die "usage: $0 CHART VERSION PRERELEASE IMAGE@DIGEST CAMERA@DIGEST"
chart=$1 version=$2 prerelease=$3
image=${4%@*} digest=${4#*@} camera=${5%@*} camera_digest=${5#*@}
for d in "$digest" "$camera_digest"; do
  [[ "$d" =~ ^sha256:[0-9a-f]{64}$ ]] || fw_die "not a digest: $d (want REPOSITORY@sha256:<64 hex>)"
done
values="$chart/values.yaml" meta="$chart/Chart.yaml"

# `digest: ""` is under both image blocks: each rewrite is confined to its top-level block
# (from `image:`/`testCamera:` to the next top-level key) and its indentation.
sed -i -e "/^image:/,/^[^ #]/{s|^  repository: .*|  repository: $image|;s|^  digest: .*|  digest: \"$digest\"|}" \
       -e "/^testCamera:/,/^[^ #]/{s|^    repository: .*|    repository: $camera|;s|^    digest: .*|    digest: \"$camera_digest\"|}" \
       "$values"
# Artifact Hub scans the images listed here and flags pre-releases.
sed -i -e "s|^      image: ghcr.io/framewire/framewire:.*|      image: $image:$version|" \
       -e "s|^      image: ghcr.io/framewire/framewire-camera:.*|      image: $camera:$version|" \
       -e "s|^  artifacthub.io/prerelease: .*|  artifacthub.io/prerelease: \"$prerelease\"|" "$meta"

missing=()
for line in "  repository: $image" "  digest: \"$digest\"" "    repository: $camera" "    digest: \"$camera_digest\""; do
  grep -qxF -- "$line" "$values" || missing+=("values.yaml: '$line'")
done
for line in "      image: $image:$version" "      image: $camera:$version" "  artifacthub.io/prerelease: \"$prerelease\""; do
  grep -qxF -- "$line" "$meta" || missing+=("Chart.yaml: '$line'")
done
(( ${#missing[@]} == 0 )) || fw_die "$chart no longer has the lines this script rewrites; missing: ${missing[*]}"

# What the chart runs (helm test pods aside): the two images, by digest, nothing else.
want="$(printf '%s\n' "$image@$digest" "$camera@$camera_digest" | sort)"
runs="$(helm template pin "$chart" --kube-version "$KUBERNETES_VERSION" --skip-tests --set testCamera.enabled=true \
  | sed -n 's/^ *\(- \)\{0,1\}image: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\2/p' | sort -u)"
[[ "$runs" == "$want" ]] || fw_die "the pinned chart runs [${runs//$'\n'/, }], not [${want//$'\n'/, }]"
fw_log "$chart pinned: $image@$digest, $camera@$camera_digest (Artifact Hub: :$version, prerelease $prerelease)"
