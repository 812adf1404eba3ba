#!/usr/bin/env bash
# Run the chart's fleet for real on this host and check its monitoring:
#   1. helm template with deploy/test/local-values.yaml (image IMAGE, fresh consumer groups, the
#      fleet as a KafkaUser on the stack's SASL_PLAINTEXT listener: its SCRAM credentials and
#      the rendered ACLs are created as Strimzi's User Operator would, and the broker's
#      authorizer holds the pods to them; a user without ACLs must be refused)
#   2. a real Prometheus (Debian package) scrapes the three admin ports, labelled as the
#      Prometheus operator labels a ServiceMonitor's targets, with the chart's alert rules
#   3. podman kube play --network=host of its Deployments, ConfigMaps and the ingest
#      StatefulSet's pods (scripts/deploy/kube-play.py), against the local stack, a camera
#      that shows people (scripts/deploy/people-camera.sh, for object detection) and the
#      chart's own test camera (testCamera, image CAMERA_IMAGE): ingest, sink and test camera
#      first, the worker once frames flow (so it joins mid-GOP: the frames before each
#      camera's next keyframe have no reference and go to the DLQ as missing_reference);
#      every pod ready (/readyz 200), the sink's web page and API answer, and the sink shows
#      frames of every test camera stream; the admin token (adminToken's Secret) is in all three
#      pods and guards ingest's camera writes and the worker's live view (401, 403, 200); the
#      stack's camera behind RTSP auth streams with its password from the camera credentials
#      directory (a config camera's Secret key)
#   4. a few records without fw-* headers go to the frames topic (decode errors, DLQ); the
#      worker pod is killed (SIGKILL) and started again, as after a node failure: it
#      re-processes from its last commit and the sink counts re-delivered frames as duplicates
#   5. every dashboard query must return data (but the Kubernetes row's: no kubelet or
#      kube-state-metrics here; check.sh checks those statically); the alert rules evaluate
# Everything it started is removed at exit (pods, their volumes, Prometheus).
#
#   scripts/deploy/run-fleet.sh IMAGE CAMERA_IMAGE [--keep]
#                                   (--keep leaves the fleet and Prometheus up)
set -euo pipefail
FW_COMPONENT=deploy-run
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/stack/lib.sh
source "$HERE/../stack/lib.sh"
# shellcheck source=scripts/deploy/versions.env
source "$HERE/versions.env"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"
ROOT="$FW_REPO_ROOT"
cd "$ROOT"
IMAGE=${1:?IMAGE}
CAMERA_IMAGE=${2:?CAMERA_IMAGE}
keep=0; [[ "${3:-}" == --keep ]] && keep=1
FW_CACHE="${FW_CACHE:-$HOME/.cache/framewire}"
OUT="$FW_CACHE/deploy-check/run"
PROM_PORT="${FW_DEPLOY_PROM_PORT:-28090}"
PROM_URL="http://127.0.0.1:$PROM_PORT"
RELEASE=fwcheck
NS=framewire-check
ok() { printf '    ok  %s\n' "$*"; }
PY=fw-python

# A previous run that was interrupted may have left its Prometheus behind.
[[ -f "$OUT/prometheus.pid" ]] && kill "$(cat "$OUT/prometheus.pid")" 2>/dev/null && sleep 1
rm -rf "$OUT" && mkdir -p "$OUT"
run_id="$(date +%s)-$$"

cleanup() {
  local rc=$?
  if (( keep )); then echo "    (--keep: fleet and Prometheus left running; $PROM_URL)"; return; fi
  podman pod ps --format '{{.Name}}' | grep "^$RELEASE-" | xargs -r podman pod rm -f >/dev/null 2>&1 || true
  podman volume ls --format '{{.Name}}' | grep "^$RELEASE-" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
  if [[ -n "${kuser:-}" ]]; then  # the run's Kafka user and its ACLs
    while read -r -a acl; do
      kafka_tool org.apache.kafka.tools.AclCommand --bootstrap-server 127.0.0.1:9092 --remove --force "${acl[@]}" || true
    done <"$OUT/acls.txt" 2>/dev/null
    kafka_tool kafka.admin.ConfigCommand --bootstrap-server 127.0.0.1:9092 --alter --entity-type users \
      --entity-name "$kuser" --delete-config SCRAM-SHA-512 || true
  fi
  [[ -f "$OUT/prometheus.pid" ]] && kill "$(cat "$OUT/prometheus.pid")" 2>/dev/null || true
  people down >/dev/null 2>&1 || true
  return $rc
}
trap cleanup EXIT

scripts/stack.sh up >"$OUT/stack.log" 2>&1 || { tail -20 "$OUT/stack.log"; fw_die "local stack did not start"; }
# The camera `people` of deploy/test/local-values.yaml (its port is fixed there).
people() { PEOPLE_INSTANCE=deploycheck PEOPLE_PORT=8584 "$HERE/people-camera.sh" "$@"; }
people up >>"$OUT/stack.log" 2>&1 || { tail -20 "$OUT/stack.log"; fw_die "the people camera did not start"; }

# 1-2. Render and play. The fleet is a Kafka user of its own (kafka.user in
# deploy/test/local-values.yaml: the chart's KafkaUser, SCRAM-SHA-512) on the stack's
# SASL_PLAINTEXT listener, where Kafka's authorizer allows it only what the KafkaUser's ACLs
# say: its credentials and ACLs are made here from the rendered KafkaUser, as Strimzi's User
# Operator makes them, and its Secret is added for the pods.
kuser="fwcheck-$run_id"
helm template "$RELEASE" deploy/helm/framewire --namespace "$NS" --kube-version "$KUBERNETES_VERSION" -f deploy/test/local-values.yaml \
  --set image.tag="${IMAGE#localhost/framewire:}" --set testCamera.image.tag="${CAMERA_IMAGE#localhost/framewire-camera:}" \
  --set kafka.user.name="$kuser" \
  --set worker.autoscaling.keda.consumerGroup="fwcheck-worker-$run_id" --set sink.groupId="fwcheck-sink-$run_id" --set sink.config.preview_group_id="fwcheck-preview-$run_id" \
  >"$OUT/rendered.yaml"
java="$(fw_find_java)"
[[ -n "$java" ]] || fw_die "no JDK for Kafka's tools"
kafka_tool() { "$java" -Xmx128m -cp "$FW_STACK_DIR/kafka/libs/*" "$@" >>"$OUT/kafka-tools.log" 2>&1; }
kpass="$($PY -c 'import secrets; print(secrets.token_hex(16))')"
kafka_tool kafka.admin.ConfigCommand --bootstrap-server 127.0.0.1:9092 --alter --entity-type users --entity-name "$kuser" \
  --add-config "SCRAM-SHA-512=[iterations=4096,password=$kpass]" || { cat "$OUT/kafka-tools.log"; fw_die "could not create Kafka user $kuser"; }
# AclCommand arguments, one line per ACL of the rendered KafkaUser (what the User Operator applies).
$PY - "$OUT/rendered.yaml" "$kuser" >"$OUT/acls.txt" <<'EOF'
import sys, yaml
user = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "KafkaUser")
for acl in user["spec"]["authorization"]["acls"]:
    r = acl["resource"]
    kind = {"topic": "--topic", "group": "--group"}[r["type"]]
    pattern = {"literal": "literal", "prefix": "prefixed"}[r.get("patternType", "literal")]
    ops = " ".join(f"--operation {op}" for op in acl["operations"])
    print(f"--allow-principal User:{sys.argv[2]} {kind} {r['name']} --resource-pattern-type {pattern} {ops}")
EOF
while read -r -a acl; do
  kafka_tool org.apache.kafka.tools.AclCommand --bootstrap-server 127.0.0.1:9092 --add --force "${acl[@]}" \
    || { cat "$OUT/kafka-tools.log"; fw_die "could not add ACL: ${acl[*]}"; }
done <"$OUT/acls.txt"
printf -- '---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s}\nstringData: {password: "%s"}\n' "$kuser" "$kpass" >>"$OUT/rendered.yaml"
# The admin token of the three services (a fresh one per run) and the camera passwords, as a
# user creates them (deploy/test/local-values.yaml names them): the pods read the token as a
# file (FRAMEWIRE_ADMIN__TOKEN_FILE) and the password of the stack's camera behind RTSP auth
# (scripts/stack/rtsp_server.py's `secure`) in the camera credentials directory.
admin_token="$($PY -c 'import secrets; print(secrets.token_hex(16))')"
read -r token_secret cam_secret < <($PY -c 'import sys, yaml; v = yaml.safe_load(open(sys.argv[1])); print(v["adminToken"]["existingSecret"], v["ingest"]["credentialsSecret"])' deploy/test/local-values.yaml)
printf -- '---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s}\nstringData: {token: "%s"}\n' "$token_secret" "$admin_token" >>"$OUT/rendered.yaml"
printf -- '---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s}\nstringData: {secure: "s3cret-cam"}\n' "$cam_secret" >>"$OUT/rendered.yaml"
ok "Kafka user $kuser (SCRAM-SHA-512) with the $(wc -l <"$OUT/acls.txt") ACLs of the rendered KafkaUser; the fleet connects to $(sed -n 's/^  brokers: "\(.*\)"/\1/p' deploy/test/local-values.yaml) (SASL_PLAINTEXT)"
$PY "$HERE/kube-play.py" "$OUT/rendered.yaml" --except worker >"$OUT/play-ingest-sink.yaml"
$PY "$HERE/kube-play.py" "$OUT/rendered.yaml" --only worker >"$OUT/play-worker.yaml"
podman pod ps --format '{{.Name}}' | grep "^$RELEASE-" | xargs -r podman pod rm -f >/dev/null 2>&1 || true

# podman 4 logs (harmless) errors about systemd health-check timers; keep them out of the way.
play() {
  podman kube play --network=host "$1" >>"$OUT/play.log" 2>&1 || { cat "$OUT/play.log"; fw_die "podman kube play $1 failed"; }
}
wait_ready() {  # PORT...
  local p deadline=$((SECONDS + 120)) start=$SECONDS
  for p in "$@"; do
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/readyz")" == 200 ]]; do
      if (( SECONDS > deadline )); then
        {
          podman ps -a --format '{{.Names}} {{.Status}}'
          for c in $(podman ps -a --format '{{.Names}}' | grep "^$RELEASE-" | grep -v infra); do
            echo "== $c"; podman logs --tail 20 "$c" 2>&1
          done
          curl -s "http://127.0.0.1:$p/readyz"; echo
        } >&2
        fw_die "admin port $p not ready after 120 s"
      fi
      sleep 0.5
    done
  done
  echo $((SECONDS - start))
}
metric() {  # PORT NAME: the sum of a metric's samples on an admin port
  curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 ~ "^"n"({|$)" {s += $2} END {print s + 0}'
}
at_least() {  # PORT NAME N: wait (at most 60 s) until the metric's sum exceeds N
  local deadline=$((SECONDS + 60))
  until (( $(metric "$1" "$2" | cut -d. -f1) > $3 )); do
    (( SECONDS < deadline )) || fw_die "$2 on :$1 stayed at $(metric "$1" "$2") (≤ $3) for 60 s"
    sleep 0.5
  done
}

# Prometheus first, labelled like the Prometheus operator labels a ServiceMonitor's targets,
# so that it sees every process of the run (the first worker's counters too).
command -v prometheus >/dev/null || fw_die "prometheus missing (Debian package prometheus)"
target() {  # component port pod
  cat <<EOF
      - targets: ["127.0.0.1:$2"]
        labels: {namespace: $NS, service: $RELEASE-framewire-$1, job: $RELEASE-framewire-$1, pod: $3, container: $1, endpoint: admin}
EOF
}
cat >"$OUT/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files: ["$FW_CACHE/deploy-check/prometheus/rules.yaml"]
scrape_configs:
  - job_name: framewire
    honor_labels: true
    static_configs:
$(target ingest 28091 "$RELEASE-framewire-ingest-0")
$(target worker 28092 "$RELEASE-framewire-worker-pod-0")
$(target sink 28093 "$RELEASE-framewire-sink-0")
EOF
# The rules were rendered for namespace "framewire"; here the fleet runs as $NS.
sed "s/namespace=\\\\\"framewire\\\\\"/namespace=\\\\\"$NS\\\\\"/g; s/namespace=\"framewire\"/namespace=\"$NS\"/g" \
  "$FW_CACHE/deploy-check/prometheus/rules.yaml" >"$OUT/rules.yaml"
sed -i "s#$FW_CACHE/deploy-check/prometheus/rules.yaml#$OUT/rules.yaml#" "$OUT/prometheus.yml"
promtool check config "$OUT/prometheus.yml" >/dev/null || fw_die "prometheus config"
prometheus --config.file="$OUT/prometheus.yml" --storage.tsdb.path="$OUT/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$OUT/prometheus.log" 2>&1 &
echo $! >"$OUT/prometheus.pid"
until curl -sf "$PROM_URL/-/ready" >/dev/null; do
  kill -0 "$(cat "$OUT/prometheus.pid")" 2>/dev/null || { cat "$OUT/prometheus.log"; fw_die "prometheus exited"; }
  sleep 0.5
done
ok "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') on $PROM_URL scraping 3 targets"

# 3. Ready.
play "$OUT/play-ingest-sink.yaml"
t="$(wait_ready 28091 28093)"
ok "ingest and sink ready (/readyz 200 on 28091, 28093) after ${t} s"
at_least 28091 framewire_ingest_frames_total 100
play "$OUT/play-worker.yaml"
t="$(wait_ready 28092)"
ok "worker ready (/readyz 200 on 28092) after ${t} s; pods: $(podman pod ps --format '{{.Name}}' | grep "^$RELEASE-" | sort | tr '\n' ' ')"
for path in / /api/cameras /api/openapi.json; do
  code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:28080$path")"
  [[ "$code" == 200 ]] || fw_die "sink http :28080$path answered $code"
done
ok "sink web page, /api/cameras and /api/openapi.json answer 200 on :28080"
# The pods reach Kafka as the user, and the broker does hold users to their ACLs: the fleet's
# user may describe the frames topic, a user without ACLs may not.
for port in 28091 28092 28093; do
  curl -s "http://127.0.0.1:$port/config" | grep -q '"security.protocol": *"SASL_PLAINTEXT"' \
    || fw_die "the pod on :$port does not use SASL_PLAINTEXT ([kafka.options] security.protocol)"
done
frames_topic="$(sed -n 's/^  frames: //p' deploy/test/local-values.yaml)"
sasl_brokers="$(sed -n 's/^  brokers: "\(.*\)"/\1/p' deploy/test/local-values.yaml)"
describe_as() {  # USER PASSWORD: describe the frames topic over SASL as USER
  printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";\n' \
    "$1" "$2" >"$OUT/client-$1.properties"
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$sasl_brokers" \
    --command-config "$OUT/client-$1.properties" --describe --topic "$frames_topic"
}
describe_as "$kuser" "$kpass" || { tail -20 "$OUT/kafka-tools.log"; fw_die "user $kuser cannot describe $frames_topic"; }
kafka_tool kafka.admin.ConfigCommand --bootstrap-server 127.0.0.1:9092 --alter --entity-type users \
  --entity-name "$kuser-noacl" --add-config "SCRAM-SHA-512=[iterations=4096,password=$kpass]" || fw_die "could not create the ACL-less user"
if describe_as "$kuser-noacl" "$kpass"; then fw_die "Kafka let a user without ACLs describe $frames_topic: the authorizer is off"; fi
kafka_tool kafka.admin.ConfigCommand --bootstrap-server 127.0.0.1:9092 --alter --entity-type users \
  --entity-name "$kuser-noacl" --delete-config SCRAM-SHA-512 || true
ok "every pod talks SASL_PLAINTEXT as $kuser; the broker refuses a user without ACLs"
# The admin token reached the three pods from its Secret (FRAMEWIRE_ADMIN__TOKEN_FILE), and
# guards what it should: 401 without it, 403 with a wrong one.
for port in 28091 28092 28093; do
  curl -s "http://127.0.0.1:$port/config" | $PY -c 'import json, sys; sys.exit(json.load(sys.stdin)["admin"].get("token") != "[redacted]")' \
    || fw_die "the pod on :$port has no admin token ([admin] token from adminToken's Secret)"
done
code() { curl -s -o "$OUT/last-response" -w '%{http_code}' "$@"; }
expect() {  # CODE WHAT CURL-ARGS...: the request must answer CODE
  local want=$1 what=$2 got; shift 2
  got="$(code "$@")"
  [[ "$got" == "$want" ]] || { cat "$OUT/last-response" >&2; echo >&2; fw_die "$what answered $got, not $want"; }
}
# Ingest's camera writes: a spec whose password_file is outside the camera credentials
# directory is refused (400) once the token is accepted, so nothing reaches the control topic.
probe='{"url": "rtsp://127.0.0.1:8554/moving", "credentials": {"username": "x", "password_file": "/etc/framewire/secrets/admin-token"}}'
writes=http://127.0.0.1:28091/cameras/deploycheck-probe
expect 401 "PUT /cameras without the token" -X PUT -d "$probe" "$writes"
expect 403 "PUT /cameras with a wrong token" -X PUT -H "Authorization: Bearer wrong-0123456789abcdef" -d "$probe" "$writes"
expect 400 "PUT /cameras with the token and a password_file among the settings secrets" -X PUT -H "Authorization: Bearer $admin_token" -d "$probe" "$writes"
grep -q "ingest.credentials_dir" "$OUT/last-response" || { cat "$OUT/last-response" >&2; fw_die "the 400 does not name ingest.credentials_dir"; }
# The camera behind RTSP auth streams: its password reached ingest as a file of the camera
# credentials directory (config-camera-<i>, from the Secret).
deadline=$((SECONDS + 60))
until [[ "$(curl -s http://127.0.0.1:28091/cameras/secure | $PY -c 'import json, sys; print(json.load(sys.stdin).get("state"))' 2>/dev/null)" == streaming ]]; do
  (( SECONDS < deadline )) || { curl -s http://127.0.0.1:28091/cameras/secure >&2; fw_die "camera secure (RTSP auth, password from the camera credentials directory) is not streaming"; }
  sleep 1
done
# The worker's live view of it: 401/403 without the right token, a JPEG with it (Bearer, or
# Basic with the token as the password, as a browser sends it).
snap=http://127.0.0.1:28092/debug/cameras/secure/snapshot.jpg
expect 401 "the worker's snapshot without the token" "$snap"
expect 403 "the worker's snapshot with a wrong token" -H "Authorization: Bearer wrong-0123456789abcdef" "$snap"
deadline=$((SECONDS + 60))
until [[ "$(code -H "Authorization: Bearer $admin_token" "$snap")" == 200 ]]; do
  (( SECONDS < deadline )) || { cat "$OUT/last-response" >&2; echo >&2; fw_die "no snapshot of camera secure from the worker with the admin token"; }
  sleep 1
done
$PY -c 'import sys; sys.exit(open(sys.argv[1], "rb").read(3) != b"\xff\xd8\xff")' "$OUT/last-response" || fw_die "the snapshot is not a JPEG"
expect 200 "the worker's snapshot with the token as a Basic password" -u "anyone:$admin_token" "$snap"
ok "admin token in all three pods ([redacted] in /config); camera writes 401/403 without it, a password_file outside the camera credentials directory 400 with it; camera secure (RTSP auth) streams with its password from the camera credentials directory; its snapshot: 401, 403, then a JPEG with the token (Bearer and Basic)"
# The test camera's streams went through ingest and the worker to the sink.
streams="$($PY -c 'import sys, yaml; print(" ".join(s["name"] for s in yaml.safe_load(open(sys.argv[1]))["testCamera"]["streams"]))' deploy/test/local-values.yaml)"
deadline=$((SECONDS + 60))
until seen="$(curl -s http://127.0.0.1:28080/api/cameras | $PY -c '
import json, sys
d = json.load(sys.stdin)
cams = {c["id"]: c for c in d["cameras"]}
out = []
for s in sys.argv[1:]:
    c = cams.get(s) or {}
    w = c.get("last_window") or {}
    # Online, and a whole window at the stream rate of 25 fps: the first windows are cut short
    # (the worker starts decoding at the next keyframe).
    fps = (w.get("frames") or 0) * 1000 / d["window_ms"]
    if c.get("status") != "online" or fps < 20:
        sys.exit(1)
    out.append("{} {}x{}, {} frames in its last {} s window ({:.1f} fps)".format(
        s, c["width"], c["height"], w["frames"], d["window_ms"] // 1000, fps))
print(", ".join(out))' $streams)"; do
  (( SECONDS < deadline )) || { curl -s http://127.0.0.1:28080/api/cameras >&2; fw_die "the sink did not show frames of every test camera stream ($streams) within 60 s"; }
  sleep 1
done
camera_pod="$(podman pod ps --format '{{.Name}}' | grep "^$RELEASE-framewire-test-camera")"
camera_user="$(podman inspect --format '{{.Config.User}} ro={{.HostConfig.ReadonlyRootfs}}' "$camera_pod-camera")"
ok "test camera pod $camera_pod ($CAMERA_IMAGE, user $camera_user) → ingest → worker → sink: $seen"
user="$(podman inspect --format '{{.Config.User}} ro={{.HostConfig.ReadonlyRootfs}}' "$RELEASE-framewire-worker-pod-0-worker")"
ok "worker container runs as $user"

# The worker dies without a goodbye and comes back (rebalance, re-processing, duplicates).
at_least 28092 framewire_worker_frames_decoded_total 150
# ... once Prometheus has scraped the worker's per-camera skip counters twice (they exist from
# a camera's first frame on), so that rate() over the first process's samples has two points
# after the restart resets the counters.
deadline=$((SECONDS + 60))
until [[ "$(curl -s "$PROM_URL/api/v1/query" --data-urlencode 'query=max(count_over_time(framewire_worker_frames_skipped_total[1m])) >= 2' \
           | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["result"]))')" == 1 ]]; do
  (( SECONDS < deadline )) || fw_die "the first worker's per-camera counters were never scraped twice"
  sleep 1
done
podman pod kill --signal KILL "$RELEASE-framewire-worker-pod-0" >/dev/null
# Start again only once podman has finished with the killed container (its cleanup would
# otherwise stop the new one).
podman wait "$RELEASE-framewire-worker-pod-0-worker" >/dev/null 2>&1 || true
sleep 2
podman pod start "$RELEASE-framewire-worker-pod-0" >/dev/null 2>&1
t="$(wait_ready 28092)"
ok "worker killed (SIGKILL) and restarted: ready again after ${t} s"

# Poison, sent to the restarted worker: records without fw-* headers → decode error + DLQ.
for i in 1 2 3; do echo "deploy-check-poison:not-an-access-unit-$i"; done \
  | "$java" -Xmx128m -cp "$FW_STACK_DIR/kafka/libs/*" org.apache.kafka.tools.ConsoleProducer \
      --bootstrap-server 127.0.0.1:9092 --topic "$frames_topic" \
      --property parse.key=true --property key.separator=: >"$OUT/producer.log" 2>&1 \
  || { cat "$OUT/producer.log"; fw_die "could not produce the poison records"; }
ok "3 records without fw-* headers produced to $frames_topic"
at_least 28092 framewire_worker_dlq_records_total 2
ok "the worker counted them as decode errors and copied them to the DLQ"


sleep 6  # a few scrapes after the restart
$PY "$HERE/dashboard.py" query deploy/helm/framewire/dashboards/framewire.json "$PROM_URL" "$NS" --wait 150 \
  | tee "$OUT/dashboard.txt"
ok "every dashboard query but the cluster-only ones returned data (table: $OUT/dashboard.txt)"

# The alert rules load and evaluate in the same Prometheus (none should be firing errors).
bad="$(curl -s "$PROM_URL/api/v1/rules" | $PY -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(r["name"] for g in d["data"]["groups"] for r in g["rules"] if r.get("health") not in ("ok", "unknown")))')"
[[ -z "$bad" ]] || fw_die "alert rules that do not evaluate: $bad"
firing="$(curl -s "$PROM_URL/api/v1/alerts" | $PY -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(sorted({a["labels"]["alertname"]+"{"+a["labels"].get("camera","")+"}:"+a["state"] for a in d["data"]["alerts"]})))')"
ok "alert rules evaluate in Prometheus; pending/firing now: ${firing:-none}"
