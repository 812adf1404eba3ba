#!/usr/bin/env bash
# Verify the local Kafka node's secure listeners (scripts/stack/kafka.sh: SASL_SSL with
# SCRAM-SHA-512 on 9096, mutual TLS on 9098, the StandardAuthorizer) with two independent clients:
# Kafka's own Java console tools and librdkafka (PyPI confluent-kafka, in a venv under
# ~/.cache/framewire). Each client must:
#   - SASL_SSL with the stack's CA (certs/ca.crt): create a topic, produce and consume in a group
#   - be refused with a wrong password, and without the CA (the broker's certificate is not trusted)
#   - mTLS with the client certificate (User:framewire-mtls): produce and consume
#   - be refused by the mTLS listener without a client certificate
#   - be denied by the authorizer: produce to a topic the user has no ACL for
# A user, a topic and ACLs of their own (removed at exit).
#
#   scripts/stack/verify-kafka-security.sh
#
# Env: FW_STACK_DIR, KAFKA_SASL_SSL_PORT (9096), KAFKA_MTLS_PORT (9098),
#      FW_CONFLUENT_KAFKA (2.16.1: the PyPI confluent-kafka version). Exits non-zero if a check fails.
set -euo pipefail
FW_COMPONENT=verify-kafka
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K="$FW_SCRIPTS_DIR/stack/kafka.sh"
CERTS="$FW_STACK_DIR/certs"
SSL_PORT="${KAFKA_SASL_SSL_PORT:-$(( KAFKA_PORT + 4 ))}"
MTLS_PORT="${KAFKA_MTLS_PORT:-$(( KAFKA_PORT + 6 ))}"
CK_VERSION="${FW_CONFLUENT_KAFKA:-2.16.1}"
VENV="${FW_CACHE:-$HOME/.cache/framewire}/venv/confluent-kafka-$CK_VERSION"

for p in "$SSL_PORT" "$MTLS_PORT"; do
  fw_port_open 127.0.0.1 "$p" || fw_die "nothing listens on 127.0.0.1:$p: run scripts/stack.sh up"
done
[[ -s "$CERTS/ca.crt" && -s "$CERTS/client.pem" ]] || fw_die "no certificates in $CERTS: run scripts/stack.sh up"

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
  fw_ensure_pkgs python3-venv
  fw_log "installing confluent-kafka $CK_VERSION (PyPI) in $VENV"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "confluent-kafka==$CK_VERSION" || fw_die "pip install confluent-kafka==$CK_VERSION failed"
fi
fw_ensure_java
JAVA=("$FW_JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.net.preferIPv4Stack=true)
# The broker's class archive (same class path) makes each tool start faster.
[[ -f "$FW_STACK_DIR/kafka/broker.jsa" ]] && JAVA+=(-XX:SharedArchiveFile="$FW_STACK_DIR/kafka/broker.jsa" -Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off)
JAVA+=(
  -Dlog4j2.configurationFile="$FW_STACK_DIR/kafka/tools/log4j2.xml" -cp "$FW_STACK_DIR/kafka/libs/*")

id="$(date +%s)-$$"
user="fw-verify-$id"
pass="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
topic="fw-verify-$id"
WORK="$(mktemp -d)"
acls=(
  "--allow-principal User:$user --topic $topic --operation Create --operation Write --operation Read --operation Describe"
  "--allow-principal User:$user --group $topic-sasl --operation Read --operation Describe"
  "--allow-principal User:framewire-mtls --topic $topic --operation Write --operation Read --operation Describe"
  "--allow-principal User:framewire-mtls --group $topic-mtls --operation Read --operation Describe"
)
cleanup() {
  local a
  for a in "${acls[@]}"; do
    # shellcheck disable=SC2086  # one ACL's arguments
    "$K" acl --remove --force $a >/dev/null 2>&1 || true
  done
  "$K" deluser "$user" >/dev/null 2>&1 || true
  "${JAVA[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --delete --if-exists --topic "$topic" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$K" user "$user" "$pass" >/dev/null
for a in "${acls[@]}"; do
  # shellcheck disable=SC2086
  "$K" acl --add $a >/dev/null
done
fw_log "user $user, topic $topic and their ACLs made; checking ..."

failed=0
ok() { printf '    ok    %-9s %s\n' "$1" "$2"; }
bad() { printf '    FAIL  %-9s %s\n' "$1" "$2"; failed=1; }

# ---- Java console tools ----
props() {  # FILE LINES...: a client properties file with short timeouts
  local f="$WORK/$1"; shift
  printf '%s\n' "$@" "request.timeout.ms=5000" "default.api.timeout.ms=8000" "max.block.ms=8000" >"$f"
  echo "$f"
}
jaas() { echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$user\" password=\"$1\";"; }
trust="ssl.truststore.type=PEM"$'\n'"ssl.truststore.location=$CERTS/ca.crt"
j_ok="$(props j-ok.properties security.protocol=SASL_SSL sasl.mechanism=SCRAM-SHA-512 "$(jaas "$pass")" "$trust")"
j_badpw="$(props j-badpw.properties security.protocol=SASL_SSL sasl.mechanism=SCRAM-SHA-512 "$(jaas "wrong-$pass")" "$trust")"
j_noca="$(props j-noca.properties security.protocol=SASL_SSL sasl.mechanism=SCRAM-SHA-512 "$(jaas "$pass")")"
j_mtls="$(props j-mtls.properties security.protocol=SSL "$trust" ssl.keystore.type=PEM "ssl.keystore.location=$CERTS/client.pem")"
j_nocert="$(props j-nocert.properties security.protocol=SSL "$trust")"
jtool() { "${JAVA[@]}" "$@" >"$WORK/java.out" 2>&1; }
jsays() { grep -v -E '^\s+at |^WARNING|deprecated' "$WORK/java.out" | grep -m1 -E "$1" | cut -c1-160; }
# j_roundtrip PORT PROPS GROUP VALUE N: ConsoleProducer, then ConsoleConsumer in GROUP reads the
# topic's N records from the beginning and finds VALUE.
j_roundtrip() {
  echo "$4" | "${JAVA[@]}" org.apache.kafka.tools.ConsoleProducer --bootstrap-server "127.0.0.1:$1" \
    --command-config "$2" --topic "$topic" >"$WORK/java.out" 2>&1 || return 1
  grep -qiE 'error|exception' "$WORK/java.out" && return 1
  jtool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "127.0.0.1:$1" --command-config "$2" \
    --topic "$topic" --group "$3" --from-beginning --max-messages "$5" --timeout-ms 15000 || true
  grep -qxF "$4" "$WORK/java.out"
}
# j_refused PORT PROPS PATTERN: describing the cluster fails with an error matching PATTERN.
j_refused() {
  if jtool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$1" --command-config "$2" --list; then return 1; fi
  jsays "$3" | grep -q .
}

if jtool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$SSL_PORT" --command-config "$j_ok" \
     --create --topic "$topic" --partitions 1 --replication-factor 1 \
   && j_roundtrip "$SSL_PORT" "$j_ok" "$topic-sasl" "java-sasl-ssl-$id" 1; then
  ok java "SASL_SSL (SCRAM-SHA-512, CA $CERTS/ca.crt): created $topic, produced and consumed as User:$user"
else bad java "SASL_SSL round trip: $(tail -3 "$WORK/java.out")"; fi
if j_refused "$SSL_PORT" "$j_badpw" 'invalid credentials'; then ok java "wrong password refused: $(jsays 'invalid credentials')"
else bad java "a wrong password was not refused: $(tail -3 "$WORK/java.out")"; fi
if j_refused "$SSL_PORT" "$j_noca" 'SSL handshake failed'; then ok java "no CA (JDK trust store) refused: $(jsays 'SSL handshake failed')"
else bad java "a client without the CA was not refused: $(tail -3 "$WORK/java.out")"; fi
if j_roundtrip "$MTLS_PORT" "$j_mtls" "$topic-mtls" "java-mtls-$id" 2; then ok java "mTLS with certs/client.pem: produced and consumed as User:framewire-mtls"
else bad java "mTLS round trip: $(tail -3 "$WORK/java.out")"; fi
if j_refused "$MTLS_PORT" "$j_nocert" 'Failed|SSL'; then ok java "mTLS without a client certificate refused: $(jsays 'Failed|SSL')"
else bad java "the mTLS listener let a client without a certificate in: $(tail -3 "$WORK/java.out")"; fi
echo "denied-$id" | "${JAVA[@]}" org.apache.kafka.tools.ConsoleProducer --bootstrap-server "127.0.0.1:$SSL_PORT" \
  --command-config "$j_ok" --topic "$topic-no-acl" >"$WORK/java.out" 2>&1 || true
if jsays 'Topic authorization failed|TopicAuthorizationException|Not authorized' | grep -q .; then
  ok java "authorizer denies a topic without ACL: $(jsays 'Topic authorization failed|TopicAuthorizationException|Not authorized')"
else bad java "producing to $topic-no-acl was not denied: $(tail -3 "$WORK/java.out")"; fi

# ---- librdkafka (confluent-kafka) ----
if ! "$VENV/bin/python" - "$topic" "$user" "$pass" "$CERTS" "$SSL_PORT" "$MTLS_PORT" "$id" <<'EOF'; then failed=1; fi
import sys, time
import confluent_kafka as ck

topic, user, password, certs, ssl_port, mtls_port, run = sys.argv[1:]
quiet = {"log_level": 0}  # the refusals below would log every retry
sasl = {**quiet, "bootstrap.servers": f"127.0.0.1:{ssl_port}", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": password,
        "ssl.ca.location": f"{certs}/ca.crt"}
mtls = {**quiet, "bootstrap.servers": f"127.0.0.1:{mtls_port}", "security.protocol": "SSL",
        "ssl.ca.location": f"{certs}/ca.crt", "ssl.certificate.location": f"{certs}/client.crt",
        "ssl.key.location": f"{certs}/client.key"}
failed = False

def report(good, what):
    global failed
    failed |= not good
    print(f"    {'ok  ' if good else 'FAIL'}  {'librdkafka':<9} {what}", flush=True)

def roundtrip(conf, group, value):
    errors = []
    p = ck.Producer({**conf, "error_cb": errors.append})
    p.produce(topic, value.encode(), on_delivery=lambda e, m: errors.append(e) if e else None)
    if p.flush(15) or errors:
        return f"produce: {errors or 'not delivered in 15 s'}"
    c = ck.Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest", "error_cb": errors.append})
    c.subscribe([topic])
    deadline = time.time() + 20
    try:
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None and m.value() == value.encode():
                return None
            if m is not None and m.error():
                errors.append(m.error())
        return f"consume: {value} not seen in 20 s {errors[:2]}"
    finally:
        c.close()

def refused(conf, expect):
    """The first error matching `expect` that librdkafka reports within 10 s, or None."""
    errors = []
    p = ck.Producer({**conf, "error_cb": errors.append})
    deadline = time.time() + 10
    while time.time() < deadline:
        p.poll(0.1)
        hit = [e for e in errors if expect in e.str()]
        if hit:
            return hit[0].str()[:140]
    print(f"    (errors seen: {[e.str() for e in errors][:3]})")
    return None

r = roundtrip(sasl, f"{topic}-sasl", f"rdkafka-sasl-ssl-{run}")
report(r is None, f"SASL_SSL with ssl.ca.location (librdkafka {ck.libversion()[0]}): produced and consumed as User:{user}" if r is None else r)
e = refused({**sasl, "sasl.password": "wrong-" + password}, "invalid credentials")
report(e is not None, f"wrong password refused: {e}")
e = refused({k: v for k, v in sasl.items() if k != "ssl.ca.location"}, "certificate verify failed")
report(e is not None, f"no CA (system trust store) refused: {e}")
r = roundtrip(mtls, f"{topic}-mtls", f"rdkafka-mtls-{run}")
report(r is None, "mTLS with certs/client.crt + client.key: produced and consumed as User:framewire-mtls" if r is None else r)
e = refused({k: v for k, v in mtls.items() if k not in ("ssl.certificate.location", "ssl.key.location")}, "certificate")
report(e is not None, f"mTLS without a client certificate refused: {e}")
errors = []
p = ck.Producer({**sasl, "error_cb": errors.append})
p.produce(f"{topic}-no-acl", b"x", on_delivery=lambda e, m: errors.append(e))
p.flush(15)
denied = [e for e in errors if e and e.code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED]
report(bool(denied), f"authorizer denies a topic without ACL: {denied[0].str() if denied else errors}")
sys.exit(1 if failed else 0)
EOF

(( failed == 0 )) || fw_die "some checks failed"
fw_log "all checks passed"
