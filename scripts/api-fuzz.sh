#!/usr/bin/env bash
# Fuzz the sink's JSON API against its own OpenAPI document with schemathesis, every check on.
#
#   scripts/api-fuzz.sh            (`make api-fuzz`; a step of `make test`)
#
#  1. schemathesis (pinned below) in a venv under ${FRAMEWIRE_CACHE:-~/.cache/framewire}/venv,
#     made once (a warm run only checks its stamp);
#  2. Kafka of the local stack (scripts/stack/kafka.sh up: idempotent);
#  3. a real framewire-sink on loopback ports with a SQLite file in a temporary folder, on
#     topics of its own, fed by `api-fuzz-data produce` (tests/src/bin/api-fuzz-data.rs:
#     3 cameras, 30 s of statistics, detections, a black incident, a gap, dead letters);
#     the run starts once the API answers with all of it;
#  4. `st run <sink>/api/openapi.json --checks all` with at most API_FUZZ_EXAMPLES test cases
#     per operation and phase, in API_FUZZ_SECONDS at most; any failure fails the script;
#  5. the sink is stopped (SIGTERM; it must exit 0) and the topics are deleted.
#
# scripts/api-fuzz/framewire_hooks.py states the one rule the document cannot say in its
# schema language (a time range's two ends, see there). The JUnit report goes to
# target/artifacts/api-fuzz/.
#
# Env: API_FUZZ_EXAMPLES (200), API_FUZZ_SECONDS (600), API_FUZZ_SEED (random, printed: set it
# to replay a run), FRAMEWIRE_BIN_DIR (where framewire-sink and api-fuzz-data are; default:
# built here with cargo), FRAMEWIRE_CACHE, PYTHON3.
set -euo pipefail
FW_COMPONENT=api-fuzz
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh"
case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
  *) fw_die "unknown argument: $1" ;;
esac
cd "$FW_REPO_ROOT"
started=$EPOCHREALTIME

SCHEMATHESIS=schemathesis==4.32.5
EXAMPLES="${API_FUZZ_EXAMPLES:-200}"
BOUND="${API_FUZZ_SECONDS:-600}"
SEED="${API_FUZZ_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
CACHE="${FRAMEWIRE_CACHE:-$HOME/.cache/framewire}"
VENV="$CACHE/venv/${SCHEMATHESIS/==/-}"

# ---------------------------------------------------------------- 1. venv ---
if [[ ! -f "$VENV/.ok" ]]; then
  PYTHON=""
  for c in "${PYTHON3:-}" python3 python3.12 python3.11 python3.10 python3.9; do
    [[ -n "$c" ]] && command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys, ensurepip, venv; sys.exit(0 if sys.version_info[:2] >= (3, 9) else 1)' 2>/dev/null; then
      PYTHON="$c"
      break
    fi
  done
  [[ -n "$PYTHON" ]] || fw_die "no python3 >= 3.9 with the venv module: run scripts/install-prereqs.sh"
  fw_log "installing $SCHEMATHESIS into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SCHEMATHESIS" \
    || fw_die "pip install $SCHEMATHESIS failed"
  touch "$VENV/.ok"
fi
PY="$VENV/bin/python"

# ------------------------------------------------------- 2. Kafka, binaries ---
scripts/stack/kafka.sh up >/dev/null || fw_die "Kafka did not start (scripts/stack/kafka.sh up)"
if [[ -n "${FRAMEWIRE_BIN_DIR:-}" ]]; then
  BIN="$FRAMEWIRE_BIN_DIR"
else
  fw_log "building framewire-sink and api-fuzz-data"
  cargo build --quiet --locked --bin framewire-sink --bin api-fuzz-data
  BIN="${CARGO_TARGET_DIR:-$FW_REPO_ROOT/target}/debug"
fi
for b in framewire-sink api-fuzz-data; do
  [[ -x "$BIN/$b" ]] || fw_die "$BIN/$b not found (FRAMEWIRE_BIN_DIR, or cargo build --bins)"
done

# ------------------------------------------------------------ 3. the sink ---
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# GET URL: prints the status and the body; 000 when nothing answers.
http_get() {
  "$PY" - "$1" <<'EOF'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(r.status, r.read().decode(errors="replace"))
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode(errors="replace"))
except OSError as e:
    print("000", e)
EOF
}
# Waits up to $2 s until GET $1 answers 200 with a body containing every further argument.
wait_for() {
  local url=$1 deadline=$((SECONDS + $2)) answer
  shift 2
  while :; do
    answer="$(http_get "$url")"
    if [[ "$answer" == "200 "* ]]; then
      local missing=0 want
      for want in "$@"; do [[ "$answer" == *"$want"* ]] || missing=1; done
      (( missing == 0 )) && return 0
    fi
    (( SECONDS < deadline )) || { echo "${answer:0:400}"; return 1; }
    sleep 0.5
  done
}

WORK="$(mktemp -d)"
PREFIX="e2e-api-fuzz-$(date +%s)-$RANDOM"
ADMIN="127.0.0.1:$(free_port)"
HTTP="127.0.0.1:$(free_port)"
SINK_PID=""
finish() {
  local rc=$?
  if [[ -n "$SINK_PID" ]] && kill -0 "$SINK_PID" 2>/dev/null; then
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
  fi
  "$BIN/api-fuzz-data" delete "$PREFIX" >/dev/null 2>&1 || true
  if (( rc != 0 )) && [[ -f "$WORK/sink.log" ]]; then
    echo "--- sink log (last 30 lines) ---" >&2
    tail -n 30 "$WORK/sink.log" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap finish EXIT

cat >"$WORK/sink.toml" <<EOF
[admin]
listen = "$ADMIN"

[kafka]
brokers = "127.0.0.1:$KAFKA_PORT"

[topics]
frames = "$PREFIX.frames"
stats = "$PREFIX.stats"
detections = "$PREFIX.detections"
control = "$PREFIX.control"
dlq = "$PREFIX.dlq"
leases = "$PREFIX.leases"
partitions = 2
replication_factor = 1

[sink]
sqlite_path = "$WORK/summaries.sqlite"
http_listen = "$HTTP"
group_id = "$PREFIX"
preview = false
window_ms = 2000
flush_interval_ms = 200
EOF
FRAMEWIRE_LOG=info "$BIN/framewire-sink" --config "$WORK/sink.toml" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
wait_for "http://$ADMIN/readyz" 60 >/dev/null || fw_die "the sink did not get ready in 60 s"
mapfile -t CAMERAS < <("$BIN/api-fuzz-data" produce "$PREFIX")
(( ${#CAMERAS[@]} == 3 )) || fw_die "api-fuzz-data produced no cameras"
wait_for "http://$HTTP/api/cameras/${CAMERAS[0]}/detections/latest" 60 '"car"' >/dev/null \
  || fw_die "the sink did not store the detections in 60 s"
wait_for "http://$HTTP/api/cameras" 60 "${CAMERAS[@]}" '"kind":"black"' >/dev/null \
  || fw_die "the sink did not list the 3 cameras and the black incident in 60 s"
fw_log "sink on http://$HTTP with ${CAMERAS[*]} (admin http://$ADMIN)"

# --------------------------------------------------------- 4. schemathesis ---
mkdir -p target/artifacts/api-fuzz
fw_log "st run --checks all --max-examples $EXAMPLES --seed $SEED (at most $BOUND s)"
st_rc=0
PYTHONPATH="$FW_SCRIPTS_DIR/api-fuzz" SCHEMATHESIS_HOOKS=framewire_hooks NO_COLOR=1 \
  timeout "$BOUND" "$VENV/bin/st" run "http://$HTTP/api/openapi.json" \
    --checks all --max-examples "$EXAMPLES" --seed "$SEED" \
    --workers 2 --request-timeout 15 --no-color \
    --report junit --report-dir target/artifacts/api-fuzz \
  >"$WORK/st.log" 2>&1 || st_rc=$?
cat "$WORK/st.log"
if (( st_rc == 124 )); then
  fw_die "schemathesis did not finish within $BOUND s (API_FUZZ_SECONDS)"
elif (( st_rc != 0 )); then
  fw_die "schemathesis found failures (exit $st_rc); replay with API_FUZZ_SEED=$SEED"
fi
grep -q "Tested: 5" "$WORK/st.log" || fw_die "schemathesis did not test the API's 5 operations"

# The checks can fail: without the hooks, the coverage phase alone must find a range that
# breaks the rule (backwards, or too long: a 400 for schema-valid values).
canary_rc=0
NO_COLOR=1 timeout 120 "$VENV/bin/st" run "http://$HTTP/api/openapi.json" \
    --checks positive_data_acceptance --phases coverage --max-examples 50 --seed "$SEED" \
    --include-path '/api/cameras/{id}/summaries' --no-color \
  >"$WORK/canary.log" 2>&1 || canary_rc=$?
if (( canary_rc == 0 )) || ! grep -qE "must not be after to|sink.api.max_range_ms" "$WORK/canary.log"; then
  cat "$WORK/canary.log"
  fw_die "canary: without the hooks schemathesis should have found a range rejected (exit $canary_rc)"
fi
fw_log "canary: without the hooks, schemathesis finds the ranges the sink rejects (as it should)"

# ------------------------------------------------------------- 5. the end ---
kill -0 "$SINK_PID" 2>/dev/null || fw_die "the sink died during the run"
kill -TERM "$SINK_PID"
sink_rc=0
wait "$SINK_PID" || sink_rc=$?
SINK_PID=""
(( sink_rc == 0 )) || fw_die "the sink exited $sink_rc after SIGTERM"
if grep -q "panicked" "$WORK/sink.log"; then
  grep -m 3 "panicked" "$WORK/sink.log" >&2
  fw_die "the sink panicked during the run"
fi
cases="$(grep -A1 '^Test cases:' "$WORK/st.log" | tail -n 1 | sed 's/^ *//')"
took="$(grep -E '^=+ .* in [0-9.]+s =+$' "$WORK/st.log" | tail -n 1 | grep -oE 'in [0-9.]+s')"
fw_log "schemathesis: 0 failures, $cases, $took (seed $SEED); $(fw_since "$started") s in all"
