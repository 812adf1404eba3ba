#!/usr/bin/env bash
# Apache Kafka (KRaft) for the local real stack: by default ONE node (broker + controller); for
# fault tests a cluster of N combined broker+controller nodes; several named clusters can run
# side by side (e.g. the default single node on 9092 and a 3-node test cluster on other ports).
# Broker jars come from Maven Central (scripts/stack/kafka/pom.xml), run with the machine's JDK.
#
#   scripts/stack/kafka.sh up          start every node (in parallel), wait until every port is
#                                      open and every partition has a leader, create the stack's
#                                      topics; idempotent (running nodes are left alone)
#   scripts/stack/kafka.sh down        stop every node of the cluster (data is kept)
#   scripts/stack/kafka.sh status      one line per node; exit 1 if any node is down
#   scripts/stack/kafka.sh reset       stop the cluster and delete its data
#   scripts/stack/kafka.sh topics      describe the topics (internal ones excluded)
#   scripts/stack/kafka.sh bootstrap   print the bootstrap list: 127.0.0.1:P1,127.0.0.1:P2,...
#   scripts/stack/kafka.sh kill I      SIGKILL node I (no clean shutdown); returns once it is gone
#   scripts/stack/kafka.sh stop I      SIGTERM node I; returns once it has exited (bounded, then SIGKILL)
#   scripts/stack/kafka.sh start I     start node I again (same config and data); returns once its
#                                      port is open and it has rejoined: unfenced, every partition
#                                      led, I back in the ISR of every partition it replicates.
#                                      No-op if node I already runs.
#   scripts/stack/kafka.sh groups G    kafka-consumer-groups --describe --group G
#   scripts/stack/kafka.sh lag G       the group's total committed lag (sum of the LAG column, `-`
#                                      counts 0): one integer
#   scripts/stack/kafka.sh user NAME PASSWORD
#                                      create (or change) SCRAM-SHA-512 credentials of user NAME, for
#                                      the SASL_PLAINTEXT and SASL_SSL listeners (single node)
#   scripts/stack/kafka.sh deluser NAME   delete user NAME's SCRAM-SHA-512 credentials
#   scripts/stack/kafka.sh acl ARGS... kafka-acls (AclCommand) as the super user, e.g.
#                                      acl --add --allow-principal User:NAME --topic T --operation Read
#                                      (--list, --remove --force, ...; bootstrap and timeouts given)
# Exit codes: 0 ok (kill/stop: the node is not running afterwards, also if it was not running),
# 1 failure (a timeout, a tool error, an unknown group), 2 usage (unknown command, bad node number).
#
# Env: FW_STACK_DIR,
#      KAFKA_CLUSTER (kafka): the cluster's name ([a-z][a-z0-9_]*). Data in $FW_STACK_DIR/<name>/,
#        logs $FW_STACK_DIR/logs/<name>[-I].log, pid files $FW_STACK_DIR/<name>[-I].pid.
#        The jars ($FW_STACK_DIR/kafka/libs) and the class-data-sharing archive are shared.
#      KAFKA_NODES (1): nodes in the cluster. Node I (1..N): node.id=I, client port
#        KAFKA_PORT + 2*(I-1), controller port KAFKA_CONTROLLER_PORT + 2*(I-1), all on 127.0.0.1,
#        every node a voter (static quorum: controller.quorum.voters). One node keeps the layout it
#        always had ($FW_STACK_DIR/<name>/{config,data}, <name>.pid, <name>.log); N > 1 nodes live in
#        $FW_STACK_DIR/<name>/node-I/{config,data} with <name>-I.pid / <name>-I.log (admin tools
#        log to <name>-admin.log). Replication: RF = min(3, N) for the internal topics, the default
#        and the stack's topics; min.insync.replicas (and the transaction / share state min ISR)
#        2 with N >= 3, else 1. The node count of a formatted cluster cannot change: reset first.
#      KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (19093): the first node's ports.
#      KAFKA_SASL_PORT (KAFKA_PORT + 2): a single node's SASL_PLAINTEXT (SCRAM-SHA-512) listener,
#        where the StandardAuthorizer holds users to their ACLs (see `listeners` below).
#      KAFKA_SASL_SSL_PORT (KAFKA_PORT + 4): a single node's SASL_SSL (SCRAM-SHA-512) listener, and
#      KAFKA_MTLS_PORT (KAFKA_PORT + 6): its SSL listener with ssl.client.auth=required (mutual
#        TLS; a client certificate CN=X is the principal User:X). Certificates by
#        scripts/stack/certs.sh (`up` makes or renews them): clients trust
#        $FW_STACK_DIR/certs/ca.crt; the mTLS client uses certs/client.crt and client.key
#        (User:framewire-mtls). The SASL users are made with `kafka.sh user`, ACLs with `kafka.sh acl`.
#      `up` on a running single node whose configuration changed (new listeners, renewed
#        certificates) restarts it (data kept); a running multi-node cluster is only warned about.
#      `up` remembers KAFKA_NODES and the ports in $FW_STACK_DIR/<name>/cluster.env; every command
#        (`up` too) uses those when they are not given, so after `KAFKA_NODES=3 make stack-up`,
#        `make stack-down` stops the 3 nodes and `KAFKA_CLUSTER=x kafka.sh kill 2` needs no other
#        setting. A cluster never started (or reset) gets the defaults: one node on 9092.
#        `up` with other settings than the running cluster's fails: `down` first.
#      KAFKA_HEAP ("-Xms256m -Xmx512m"; "-Xms192m -Xmx384m" per node with N > 1),
#      KAFKA_JVM_OPTS (extra broker JVM flags), KAFKA_START_TIMEOUT (60 s: up, start),
#      KAFKA_STOP_TIMEOUT (20 s: down, stop; then SIGKILL), topics: FW_TOPIC_FRAMES / FW_TOPIC_STATS /
#      FW_TOPIC_DLQ / FW_TOPIC_CONTROL (names) and FW_TOPIC_*_PARTITIONS, FW_TOPIC_MAX_MESSAGE_BYTES
#      (8388608), KAFKA_RETENTION_BYTES (per partition, 1 GiB; -1 = time only).
# Example, a 3-node fault-test cluster next to the default node:
#   export KAFKA_CLUSTER=chaos KAFKA_NODES=3 KAFKA_PORT=29092 KAFKA_CONTROLLER_PORT=29192
#   scripts/stack/kafka.sh up; scripts/stack/kafka.sh kill 1; scripts/stack/kafka.sh start 1
set -euo pipefail
# Settings given explicitly (lib.sh fills in the defaults): see resolve_layout.
ARG_NODES="${KAFKA_NODES:-}"
ARG_PORT="${KAFKA_PORT:-}"
ARG_CPORT="${KAFKA_CONTROLLER_PORT:-}"
FW_COMPONENT=kafka
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER="${KAFKA_CLUSTER:-kafka}"
[[ "$CLUSTER" == kafka ]] || FW_COMPONENT="kafka:$CLUSTER"
# Lower case, no '-': '<name>-I' and '<name>-admin' can never be another cluster's file.
if [[ ! "$CLUSTER" =~ ^[a-z][a-z0-9_]{0,31}$ ]]; then
  fw_die "bad KAFKA_CLUSTER '$CLUSTER': want [a-z][a-z0-9_]* (at most 32 characters)"
fi
case "$CLUSTER" in logs | postgres | rtsp | env) fw_die "KAFKA_CLUSTER '$CLUSTER' is reserved (another component's name)" ;; esac

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$FW_SCRIPTS_DIR/stack/kafka/pom.xml")"
POM="$FW_SCRIPTS_DIR/stack/kafka/pom.xml"
KDIR="$FW_STACK_DIR/kafka"            # shared by every cluster: libs/, broker.jsa, tools/
LIBS="$KDIR/libs"
JSA="$KDIR/broker.jsa"
TOOLS_DIR="$KDIR/tools"
TOOLS_LOG4J="$TOOLS_DIR/log4j2.xml"
TOOLS_CLIENT="$TOOLS_DIR/client.properties"
CDIR="$FW_STACK_DIR/$CLUSTER"         # this cluster: cluster.id, cluster.env, node data
CERTS="$FW_STACK_DIR/certs"           # scripts/stack/certs.sh's files (the single node's TLS)
STATE="$CDIR/cluster.env"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-20}"

MAX_MSG="${FW_TOPIC_MAX_MESSAGE_BYTES:-8388608}"
# name partitions extra-configs
TOPICS=(
  "${FW_TOPIC_FRAMES:-framewire.frames}|${FW_TOPIC_FRAMES_PARTITIONS:-4}|"
  "${FW_TOPIC_STATS:-framewire.stats}|${FW_TOPIC_STATS_PARTITIONS:-4}|"
  "${FW_TOPIC_DLQ:-framewire.dlq}|${FW_TOPIC_DLQ_PARTITIONS:-1}|"
  "${FW_TOPIC_CONTROL:-framewire.control}|${FW_TOPIC_CONTROL_PARTITIONS:-1}|cleanup.policy=compact"
)

TOOL_JVM=(-Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
  -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true)

# ------------------------------------------------------------------ layout ---

# set_layout NODES PORT CONTROLLER_PORT: the per-node arrays (index 1..N) and the cluster values.
set_layout() {
  N="$1" PORT0="$2" CPORT0="$3"
  [[ "$N" =~ ^[1-9]$ ]] || fw_die "bad KAFKA_NODES '$N': want 1..9"
  if [[ ! "$PORT0" =~ ^[1-9][0-9]*$ ]] || (( PORT0 + 2 * (N - 1) > 65535 )); then fw_die "bad KAFKA_PORT '$PORT0'"; fi
  if [[ ! "$CPORT0" =~ ^[1-9][0-9]*$ ]] || (( CPORT0 + 2 * (N - 1) > 65535 )); then
    fw_die "bad KAFKA_CONTROLLER_PORT '$CPORT0'"
  fi
  NDIR=() NPORT=() NCPORT=() NPID=() NLOG=() NMATCH=() NLABEL=()
  local i name boot=() voters=()
  for (( i = 1; i <= N; i++ )); do
    if (( N == 1 )); then NDIR[i]="$CDIR" name="$CLUSTER" NLABEL[i]="Kafka"
    else NDIR[i]="$CDIR/node-$i" name="$CLUSTER-$i" NLABEL[i]="Kafka node $i"; fi
    NPORT[i]=$(( PORT0 + 2 * (i - 1) ))
    NCPORT[i]=$(( CPORT0 + 2 * (i - 1) ))
    NPID[i]="$(fw_pidfile "$name")"
    NLOG[i]="$(fw_logfile "$name")"
    # The node's own config path: tells the nodes (and the clusters) apart in `ps`.
    NMATCH[i]="kafka.Kafka ${NDIR[i]}/config/server.properties"
    boot+=("127.0.0.1:${NPORT[i]}")
    voters+=("$i@127.0.0.1:${NCPORT[i]}")
  done
  SASL_PORT="${KAFKA_SASL_PORT:-$(( PORT0 + 2 ))}"
  SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-$(( PORT0 + 4 ))}"
  MTLS_PORT="${KAFKA_MTLS_PORT:-$(( PORT0 + 6 ))}"
  # The ports a node listens on besides its client port (the single node's secure listeners).
  EXTRA_PORTS=()
  (( N > 1 )) || EXTRA_PORTS=("$SASL_PORT" "$SASL_SSL_PORT" "$MTLS_PORT")
  BOOTSTRAP="$(IFS=,; echo "${boot[*]}")"
  VOTERS="$(IFS=,; echo "${voters[*]}")"
  # Cluster-level output (storage tool, topic creation, probes): the node log with one node.
  if (( N == 1 )); then LOG="${NLOG[1]}"; else LOG="$(fw_logfile "$CLUSTER-admin")"; fi
  RF=$(( N < 3 ? N : 3 ))
  MIN_ISR=$(( N >= 3 ? 2 : 1 ))
  local heap="-Xms256m -Xmx512m"
  (( N == 1 )) || heap="-Xms192m -Xmx384m"
  # JVM flags tuned for a quick start of a small broker: a class data sharing archive of the
  # broker's own classes (recorded at the first clean stop) and the C1 JIT only
  # (-XX:TieredStopAtLevel=1: port open in ~1.9 s instead of ~3.1 s; producer throughput measured
  # the same here, ~55-60 MB/s of 8.5 KB records; KAFKA_JVM_OPTS=-XX:TieredStopAtLevel=4 restores C2).
  # shellcheck disable=SC2206  # KAFKA_HEAP / KAFKA_JVM_OPTS are word-split on purpose
  BROKER_JVM=(-server ${KAFKA_HEAP:-$heap} -XX:TieredStopAtLevel=1 -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+UseStringDeduplication
    -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true ${KAFKA_JVM_OPTS:-})
}

node_alive() { fw_pid_alive "${NPID[$1]}" "${NMATCH[$1]}"; }

any_node_alive() {
  local i
  for (( i = 1; i <= N; i++ )); do node_alive "$i" && return 0; done
  return 1
}

# The cluster's last `up`: S_NODES, S_PORT, S_CPORT (empty if never, or set up by an older script).
load_state() {
  S_NODES="" S_PORT="" S_CPORT=""
  [[ -f "$STATE" ]] || return 0
  local k v
  while IFS='=' read -r k v; do
    case "$k" in
      nodes) S_NODES="$v" ;;
      port) S_PORT="$v" ;;
      controller_port) S_CPORT="$v" ;;
    esac
  done <"$STATE"
}

save_state() {
  mkdir -p "$CDIR"
  printf 'nodes=%s\nport=%s\ncontroller_port=%s\n' "$N" "$PORT0" "$CPORT0" >"$STATE.tmp"
  mv "$STATE.tmp" "$STATE"
}

# resolve_layout: the settings given, else those of the cluster's last `up`, else the defaults.
resolve_layout() {
  load_state
  set_layout "${ARG_NODES:-${S_NODES:-1}}" "${ARG_PORT:-${S_PORT:-$KAFKA_PORT}}" \
    "${ARG_CPORT:-${S_CPORT:-$KAFKA_CONTROLLER_PORT}}"
}

# For `up`: a layout other than the one the cluster runs with is an error (`down` first).
check_layout_change() {
  [[ -n "$S_NODES" ]] || return 0
  [[ "$S_NODES $S_PORT $S_CPORT" != "$N $PORT0 $CPORT0" ]] || return 0
  local want=("$N" "$PORT0" "$CPORT0")
  set_layout "$S_NODES" "${S_PORT:-$KAFKA_PORT}" "${S_CPORT:-$KAFKA_CONTROLLER_PORT}"
  if any_node_alive; then
    fw_die "cluster $CLUSTER runs with $N node(s) on $BOOTSTRAP (controller port $CPORT0): run '$0 down' before starting it with KAFKA_NODES=${want[0]} KAFKA_PORT=${want[1]} KAFKA_CONTROLLER_PORT=${want[2]}"
  fi
  set_layout "${want[@]}"
}

# Every pid file of this cluster, whatever its layout: <name>.pid and <name>-I.pid.
cluster_pidfiles() {
  local f
  for f in "$FW_STACK_DIR/$CLUSTER.pid" "$FW_STACK_DIR/$CLUSTER"-*.pid; do
    [[ -f "$f" ]] || continue
    [[ "$f" == "$FW_STACK_DIR/$CLUSTER.pid" || "${f#"$FW_STACK_DIR/$CLUSTER"-}" =~ ^[0-9]+\.pid$ ]] || continue
    echo "$f"
  done
}

# The command line that identifies the node of pid file $1.
pidfile_match() {
  local name
  name="$(basename "$1" .pid)"
  if [[ "$name" == "$CLUSTER" ]]; then echo "kafka.Kafka $CDIR/config/server.properties"
  else echo "kafka.Kafka $CDIR/node-${name##*-}/config/server.properties"; fi
}

# node_arg CMD ARG: the node number for kill/stop/start (exit 2 if it is not one of 1..N).
node_arg() {
  if [[ ! "${2:-}" =~ ^[1-9][0-9]*$ ]] || (( $2 > N )); then
    echo "usage: $0 $1 I    (I = node number, 1..$N in cluster $CLUSTER)" >&2
    exit 2
  fi
  echo "$2"
}

# ------------------------------------------------------------------ jars, config ---

ensure_libs() {
  local marker="$LIBS/.complete" want
  want="$KAFKA_VERSION $(sha256sum "$POM" | cut -c1-16)"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then return 0; fi
  fw_ensure_java
  command -v mvn >/dev/null 2>&1 || fw_ensure_pkgs maven
  # One download for every cluster, also when two clusters start at once.
  local lock
  exec {lock}>"$KDIR/.libs.lock"
  flock -w 900 "$lock" || fw_die "another kafka.sh has been fetching the jars for 900 s ($KDIR/.libs.lock)"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then exec {lock}>&-; return 0; fi
  fw_log "fetching Kafka $KAFKA_VERSION jars from Maven Central (cached in ~/.m2) ..."
  local t0=$EPOCHREALTIME
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  if ! mvn -B -q -Dmaven.artifact.threads=8 -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIBS" \
        >"$FW_LOG_DIR/kafka-maven.log" 2>&1; then
    fw_tail_log "$FW_LOG_DIR/kafka-maven.log"
    fw_die "maven could not fetch the Kafka jars; see $FW_LOG_DIR/kafka-maven.log"
  fi
  [[ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" && -f "$LIBS/kafka-tools-$KAFKA_VERSION.jar" ]] \
    || fw_die "kafka jars missing in $LIBS after maven; see $FW_LOG_DIR/kafka-maven.log"
  rm -f "$JSA"   # class archive belongs to the old jars
  echo "$want" >"$marker"
  exec {lock}>&-
  fw_log "jars ready: $(find "$LIBS" -name '*.jar' | wc -l) files in $(fw_since "$t0") s"
}

# listeners I: node I's listeners. A single node also has, each with Kafka's StandardAuthorizer
# holding users to their ACLs:
# - SASL_PLAINTEXT with SCRAM-SHA-512 on SASL_PORT (KAFKA_SASL_PORT, default its client port + 2:
#   9094; the deploy check runs the chart's fleet there as a KafkaUser with only the ACLs the
#   chart renders);
# - SASL_SSL with SCRAM-SHA-512 on SASL_SSL_PORT (client port + 4: 9096), the same users over TLS;
# - SSL with ssl.client.auth=required (mutual TLS, listener name MTLS) on MTLS_PORT (client port +
#   6: 9098): a client certificate's CN is the principal (CN=framewire-mtls → User:framewire-mtls).
# The TLS listeners use scripts/stack/certs.sh's files as PEM key and trust stores; the config
# names their fingerprints, so renewed certificates change it (and `up` restarts the node).
# Everyone on the PLAINTEXT and CONTROLLER listeners is User:ANONYMOUS, a super user: nothing
# changes for them.
listeners() {
  local i="$1"
  if (( N == 1 )); then
    cat <<EOF
listeners=PLAINTEXT://127.0.0.1:${NPORT[i]},CONTROLLER://127.0.0.1:${NCPORT[i]},SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT,MTLS://127.0.0.1:$MTLS_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:${NPORT[i]},SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT,MTLS://127.0.0.1:$MTLS_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# TLS (SASL_SSL, MTLS): $(cert_fingerprints)
ssl.keystore.type=PEM
ssl.keystore.location=$CERTS/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$CERTS/ca.crt
ssl.enabled.protocols=TLSv1.3,TLSv1.2
listener.name.mtls.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)(,.*)?\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
EOF
  else
    cat <<EOF
listeners=PLAINTEXT://127.0.0.1:${NPORT[i]},CONTROLLER://127.0.0.1:${NCPORT[i]}
advertised.listeners=PLAINTEXT://127.0.0.1:${NPORT[i]}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
EOF
  fi
}

# The SHA-256 fingerprints (shortened) of the broker and CA certificates, for the config.
cert_fingerprints() {
  local f
  for f in broker.crt ca.crt; do
    printf '%s %s ' "$f" "$(openssl x509 -in "$CERTS/$f" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | cut -c1-16)"
  done
}

# ensure_certs: the single node's TLS files (scripts/stack/certs.sh up: made or renewed).
ensure_certs() {
  (( N == 1 )) || return 0
  "$FW_SCRIPTS_DIR/stack/certs.sh" up >>"$LOG" 2>&1 \
    || { fw_tail_log "$LOG"; fw_die "scripts/stack/certs.sh up failed; see $LOG"; }
  [[ -s "$CERTS/broker.pem" && -s "$CERTS/ca.crt" ]] || fw_die "no broker.pem / ca.crt in $CERTS after certs.sh up"
}

# render_config I: node I's server.properties, on stdout.
render_config() {
  local i="$1" data="${NDIR[$1]}/data"
  cat <<EOF
# Generated by scripts/stack/kafka.sh -- edits are overwritten on every 'up'.
# Cluster $CLUSTER: node $i of $N.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$VOTERS
$(listeners "$i")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=4
default.replication.factor=$RF
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$RF
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$MIN_ISR
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$RF
share.coordinator.state.topic.min.isr=$MIN_ISR
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
message.max.bytes=$MAX_MSG
replica.fetch.max.bytes=$MAX_MSG
log.retention.hours=24
log.retention.bytes=${KAFKA_RETENTION_BYTES:-1073741824}
log.segment.bytes=134217728
log.retention.check.interval.ms=60000
# After a crash (kill -9) the old registration of a node blocks its restart until its session
# expires (default 9 s), and with several nodes the controller moves a dead node's partition
# leadership only once its session expired: keep the session short on these local nodes.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=2500
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
}

# config_changed I: node I's server.properties differs from what render_config makes now.
config_changed() {
  ! cmp -s <(render_config "$1") "${NDIR[$1]}/config/server.properties"
}

# write_config I: node I's server.properties and log4j2.xml.
write_config() {
  local i="$1" conf="${NDIR[$1]}/config"
  mkdir -p "$conf" "${NDIR[$1]}/data"
  render_config "$i" >"$conf/server.properties.new"
  mv "$conf/server.properties.new" "$conf/server.properties"

  # Broker log: one file, INFO for kafka, quiet for the chatty loggers.
  cat >"$conf/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="out" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="out"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.authorizer.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
    <Logger name="kafka.server.KafkaConfig" level="WARN"/>
  </Loggers>
</Configuration>
EOF
}

# Admin CLI: errors only (stderr), and short client timeouts so that a probe never hangs for the
# admin client's default 60 s. Shared by every cluster.
write_tool_config() {
  mkdir -p "$TOOLS_DIR"
  cat >"$TOOLS_LOG4J.$$" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="ERROR">
  <Appenders><Console name="err" target="SYSTEM_ERR"><PatternLayout pattern="%p %m%n"/></Console></Appenders>
  <Loggers><Root level="ERROR"><AppenderRef ref="err"/></Root></Loggers>
</Configuration>
EOF
  printf '%s\n' "request.timeout.ms=5000" "default.api.timeout.ms=10000" \
    "reconnect.backoff.max.ms=500" >"$TOOLS_CLIENT.$$"
  mv "$TOOLS_LOG4J.$$" "$TOOLS_LOG4J"
  mv "$TOOLS_CLIENT.$$" "$TOOLS_CLIENT"
}

tool() { # tool MAINCLASS ARGS...
  [[ -f "$TOOLS_CLIENT" && -f "$TOOLS_LOG4J" ]] || write_tool_config
  local cds=()
  # The broker's class archive (same class path) also makes the admin CLI start ~40% faster.
  [[ -f "$JSA" ]] && cds=(-XX:SharedArchiveFile="$JSA" -Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off)
  "$FW_JAVA" "${TOOL_JVM[@]}" "${cds[@]}" -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
    -cp "$LIBS/*" "$@"
}

need_tools() {
  [[ -f "$LIBS/.complete" ]] || fw_die "no Kafka jars yet: run '$0 up' first"
  [[ -n "${FW_JAVA:-}" ]] || fw_ensure_java
}

ensure_cluster_id() {
  if [[ -s "$CDIR/cluster.id" ]]; then CLUSTER_ID="$(cat "$CDIR/cluster.id")"; return 0; fi
  CLUSTER_ID="$(tool kafka.tools.StorageTool random-uuid | tail -n1)"
  [[ "$CLUSTER_ID" =~ ^[A-Za-z0-9_-]{22}$ ]] || fw_die "StorageTool random-uuid gave '$CLUSTER_ID'"
  echo "$CLUSTER_ID" >"$CDIR/cluster.id"
}

# format_storage I: format node I's log dir with the cluster id (once).
format_storage() {
  local i="$1"
  if [[ -f "${NDIR[i]}/data/meta.properties" ]]; then return 0; fi
  fw_log "formatting storage of ${NLABEL[i],} (cluster id $CLUSTER_ID)"
  tool kafka.tools.StorageTool format --config "${NDIR[i]}/config/server.properties" --cluster-id "$CLUSTER_ID" \
    --ignore-formatted >>"${NLOG[i]}" 2>&1 || { fw_tail_log "${NLOG[i]}"; fw_die "storage format failed; see ${NLOG[i]}"; }
}

# The node count node-1's data was formatted for (the voters in its last config), or nothing.
formatted_nodes() {
  local conf="$CDIR/node-1/config/server.properties"
  [[ -f "$CDIR/node-1/data/meta.properties" && -f "$conf" ]] || return 0
  sed -n 's/^controller.quorum.voters=//p' "$conf" | tr ',' '\n' | grep -c @ || true
}

# launch_node I: node I's JVM in the background (does not wait); its log's line count before the
# start goes to LOG_START[I].
launch_node() {
  local i="$1" cds=()
  # Class data sharing: the first run records the broker's classes at exit (on 'down'), later
  # runs map them (start ~1.5 s faster). -Xlog:cds=off silences the dump's per-class warnings.
  # One recorder at a time (node 1): the others start without the archive.
  if [[ -f "$JSA" ]]; then cds=(-XX:SharedArchiveFile="$JSA" -Xshare:auto)
  elif (( i == 1 )); then cds=(-XX:ArchiveClassesAtExit="$JSA" -Xlog:cds=off); fi
  fw_log "starting ${NLABEL[i]} ($KAFKA_VERSION) on 127.0.0.1:${NPORT[i]} (controller 127.0.0.1:${NCPORT[i]}), log ${NLOG[i]}"
  echo "=== $(date -Is) start Kafka $KAFKA_VERSION ===" >>"${NLOG[i]}"
  LOG_START[i]=$(( $(wc -l <"${NLOG[i]}") + 1 ))
  rm -f "${NPID[i]}"
  (
    cd "${NDIR[i]}"
    # The broker must not inherit (and hold) this script's lock.
    if [[ -n "${LOCK_FD:-}" ]]; then exec {LOCK_FD}>&-; fi
    exec setsid nohup "$FW_JAVA" "${BROKER_JVM[@]}" "${cds[@]}" \
      -Dlog4j2.configurationFile="${NDIR[i]}/config/log4j2.xml" -Dkafka.logs.dir="$FW_LOG_DIR" \
      -cp "$LIBS/*" kafka.Kafka "${NDIR[i]}/config/server.properties" </dev/null >>"${NLOG[i]}" 2>&1
  ) &
  echo "$!" >"${NPID[i]}"
}

# After the port opened: a class archive the JVM could not map is stale (other jars or JDK).
check_archive() {
  local i="$1"
  if tail -n +"${LOG_START[i]}" "${NLOG[i]}" | grep -q 'Unable to use shared archive'; then
    fw_log "class archive $JSA is stale: removed (the next start records a new one)"
    rm -f "$JSA"
  fi
}

# Serialise the commands that start or stop nodes of this cluster (two `make test` runs calling
# `stack.sh up` at once). Bounded: a start takes at most START_TIMEOUT.
lock_cluster() {
  if [[ -n "${LOCK_FD:-}" ]]; then return 0; fi
  mkdir -p "$CDIR"
  exec {LOCK_FD}>"$CDIR/.lock"
  flock -w $(( START_TIMEOUT + STOP_TIMEOUT + 60 )) "$LOCK_FD" \
    || fw_die "another kafka.sh holds $CDIR/.lock for too long"
}

# cl_wait DEADLINE WHAT CMD... : poll CMD every 0.2 s until SECONDS reaches DEADLINE; fail if
# one of the nodes in WATCH exits meanwhile.
cl_wait() {
  local deadline="$1" what="$2" i; shift 2
  while ! "$@" >/dev/null 2>&1; do
    for i in "${WATCH[@]}"; do
      if ! node_alive "$i"; then
        fw_tail_log "${NLOG[i]}"
        fw_die "${NLABEL[i]} exited during start-up ($what); see ${NLOG[i]}"
      fi
    done
    if (( SECONDS >= deadline )); then
      [[ "$LOG" == "${NLOG[1]}" ]] || fw_tail_log "$LOG"
      for i in "${WATCH[@]}"; do fw_tail_log "${NLOG[i]}"; done
      fw_die "$what: not ready after ${START_TIMEOUT}s; see $LOG"
    fi
    sleep 0.2
  done
}

# ------------------------------------------------------------------ probes ---

# Readiness probe: metadata answers and every partition has a leader (after a crash the
# partitions stay leaderless until the broker has re-registered). Saves the topic names in
# $CDIR/topics.txt.
topics_probe() {
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$TOOLS_CLIENT" --describe --exclude-internal \
    >"$CDIR/topics.desc" 2>>"$LOG" || return 1
  if grep -qE $'\tLeader: (none|-1)\t' "$CDIR/topics.desc"; then return 1; fi
  awk -F'\t' '/^Topic: / { sub(/^Topic: /, "", $1); print $1 }' "$CDIR/topics.desc" >"$CDIR/topics.txt"
}

# Registered, unfenced brokers (one id a line) in $CDIR/brokers.txt.
brokers_list() {
  tool org.apache.kafka.tools.ClusterTool list-endpoints --bootstrap-server "$BOOTSTRAP" \
    --command-config "$TOOLS_CLIENT" --include-fenced-brokers >"$CDIR/endpoints.txt" 2>>"$LOG" || return 1
  awk '$5 == "unfenced" && $6 == "broker" { print $1 }' "$CDIR/endpoints.txt" >"$CDIR/brokers.txt"
}

# All N brokers are registered and unfenced (topics with RF = N need them all).
brokers_probe() {
  brokers_list || return 1
  (( $(wc -l <"$CDIR/brokers.txt") >= N ))
}

# rejoin_probe I: node I is an unfenced broker, every partition (internal ones too) has a leader,
# and I is in the ISR of every partition it is a replica of.
rejoin_probe() {
  local i="$1"
  brokers_list || return 1
  grep -qx "$i" "$CDIR/brokers.txt" || return 1
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$TOOLS_CLIENT" --describe >"$CDIR/rejoin.desc" 2>>"$LOG" || return 1
  awk -F'\t' -v id="$i" '
    /\tPartition: / {
      leader = "none"; reps = ""; isr = ""
      for (f = 1; f <= NF; f++) {
        if ($f ~ /^Leader: /) leader = substr($f, 9)
        else if ($f ~ /^Replicas: /) reps = substr($f, 11)
        else if ($f ~ /^Isr: /) isr = substr($f, 6)
      }
      if (leader == "none" || leader == "-1") bad++
      if (index("," reps ",", "," id ",") && !index("," isr ",", "," id ",")) bad++
    }
    END { exit (bad > 0) }' "$CDIR/rejoin.desc"
}

ensure_topics() {
  local existing t name parts extra pids=() cfg
  existing="$(cat "$CDIR/topics.txt")"
  for t in "${TOPICS[@]}"; do
    IFS='|' read -r name parts extra <<<"$t"
    if grep -qxF -- "$name" <<<"$existing"; then continue; fi
    cfg=(--config "max.message.bytes=$MAX_MSG")
    if (( MIN_ISR > 1 )); then cfg+=(--config "min.insync.replicas=$MIN_ISR"); fi
    if [[ -n "$extra" ]]; then cfg+=(--config "$extra"); fi
    fw_log "creating topic $name ($parts partitions, RF $RF${extra:+, $extra})"
    tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
      --command-config "$TOOLS_CLIENT" --create --if-not-exists \
      --topic "$name" --partitions "$parts" --replication-factor "$RF" "${cfg[@]}" >>"$LOG" 2>&1 &
    pids+=("$!:$name")
  done
  local p rc=0
  for p in "${pids[@]}"; do
    wait "${p%%:*}" || { fw_warn "creating topic ${p#*:} failed; see $LOG"; rc=1; }
  done
  (( rc == 0 )) || fw_die "topic creation failed; see $LOG"
}

# ------------------------------------------------------------------ commands ---

cmd_up() {
  local t0=$EPOCHREALTIME deadline
  mkdir -p "$FW_LOG_DIR" "$KDIR" "$CDIR"
  lock_cluster
  deadline=$(( SECONDS + START_TIMEOUT ))
  resolve_layout
  check_layout_change
  if [[ -z "$ARG_NODES" ]] && (( N > 1 )); then
    fw_log "KAFKA_NODES not set: $N nodes, as at this cluster's last 'up' (KAFKA_NODES=1 for one node, after '$0 down')"
  fi
  local i f stray=() start=()
  # A node of another layout of this cluster (say the single node while 3 are asked for).
  while IFS= read -r f; do
    [[ -n "$f" ]] || continue
    for (( i = 1; i <= N; i++ )); do [[ "$f" == "${NPID[i]}" ]] && continue 2; done
    if fw_pid_alive "$f" "$(pidfile_match "$f")"; then stray+=("$(basename "$f" .pid) (pid $(fw_pid_of "$f"))"); fi
  done < <(cluster_pidfiles)
  if (( ${#stray[@]} )); then
    fw_die "cluster $CLUSTER has other nodes running: ${stray[*]}; run '$0 down' first"
  fi
  ensure_certs
  for (( i = 1; i <= N; i++ )); do
    if ! node_alive "$i"; then start+=("$i")
    elif config_changed "$i"; then
      # Started with another configuration (an older kafka.sh without some listener, renewed
      # certificates): a single node restarts, keeping its data; a cluster is left alone.
      if (( N == 1 )); then
        fw_log "the running node's configuration changed (${NDIR[i]}/config/server.properties): restarting it"
        fw_stop_pid "${NPID[i]}" "${NLABEL[i]}" "$STOP_TIMEOUT" "${NMATCH[i]}"
        deadline=$(( SECONDS + START_TIMEOUT ))
        start+=("$i")
      else
        fw_warn "${NLABEL[i],} runs with an older configuration than '$0 up' would write: run '$0 down' then '$0 up' to switch"
      fi
    elif (( N == 1 )); then fw_log "already running (pid $(fw_pid_of "${NPID[i]}")) on $BOOTSTRAP"; fi
  done
  if (( ${#start[@]} < N )); then
    # Never swap the jars under a running broker.
    if [[ "$(cat "$LIBS/.complete" 2>/dev/null)" != "$KAFKA_VERSION $(sha256sum "$POM" | cut -c1-16)" ]]; then
      fw_warn "running broker uses jars from an older pom.xml: run '$0 down' then '$0 up' to switch"
    fi
    if (( N > 1 )); then fw_log "already running: $(( N - ${#start[@]} )) of $N nodes"; fi
  fi
  if (( ${#start[@]} )); then
    local k
    k="$(formatted_nodes)"
    if (( N > 1 )) && [[ -n "$k" && "$k" != "$N" ]]; then
      fw_die "cluster $CLUSTER's data ($CDIR/node-*) was formatted for $k nodes, not $N: use KAFKA_NODES=$k, or '$0 reset' it first"
    fi
    ensure_libs
    [[ -n "${FW_JAVA:-}" ]] || fw_ensure_java
    local port
    for i in "${start[@]}"; do
      for port in "${NPORT[i]}" "${NCPORT[i]}" "${EXTRA_PORTS[@]}"; do
        if fw_port_open 127.0.0.1 "$port"; then
          fw_die "port 127.0.0.1:$port is already in use by another process (not ${NLABEL[i],} of cluster $CLUSTER); stop it or set KAFKA_PORT/KAFKA_CONTROLLER_PORT (KAFKA_SASL_PORT, KAFKA_SASL_SSL_PORT, KAFKA_MTLS_PORT)"
        fi
      done
    done
    save_state
    ensure_cluster_id
    local pids=() rc=0
    for i in "${start[@]}"; do
      write_config "$i"
      if [[ ! -f "${NDIR[i]}/data/meta.properties" ]]; then format_storage "$i" & pids+=("$!"); fi
    done
    for f in "${pids[@]}"; do wait "$f" || rc=1; done
    (( rc == 0 )) || fw_die "storage format failed (see the errors above)"
    for i in "${start[@]}"; do launch_node "$i"; done
    WATCH=("${start[@]}")
    for i in "${start[@]}"; do
      for port in "${NPORT[i]}" "${EXTRA_PORTS[@]}"; do
        cl_wait "$deadline" "${NLABEL[i]} (port $port)" fw_port_open 127.0.0.1 "$port"
      done
    done
    fw_log "port$( (( ${#start[@]} == 1 )) || echo s) open after $(fw_since "$t0") s, waiting for metadata ..."
    for i in "${start[@]}"; do check_archive "$i"; done
  else
    save_state
    [[ -n "${FW_JAVA:-}" ]] || fw_ensure_java
  fi
  WATCH=()
  for (( i = 1; i <= N; i++ )); do WATCH+=("$i"); done
  rm -f "$CDIR/topics.txt"
  if (( N > 1 )); then
    cl_wait "$deadline" "Kafka cluster $CLUSTER ($N brokers registered, on $BOOTSTRAP)" brokers_probe
  fi
  cl_wait "$deadline" "Kafka metadata (all partitions led, on $BOOTSTRAP)" topics_probe
  ensure_topics
  if (( N == 1 )); then
    fw_log "ready on $BOOTSTRAP (pid $(fw_pid_of "${NPID[1]}")) in $(fw_since "$t0") s"
  else
    local pl=()
    for (( i = 1; i <= N; i++ )); do pl+=("$(fw_pid_of "${NPID[i]}")"); done
    fw_log "ready: $N nodes on $BOOTSTRAP (pids ${pl[*]}) in $(fw_since "$t0") s"
  fi
}

cmd_down() {
  lock_cluster
  resolve_layout
  local i f files=() pids=() rc=0
  for (( i = 1; i <= N; i++ )); do files+=("${NPID[i]}"); done
  # Also nodes of another layout of this cluster still running.
  while IFS= read -r f; do
    [[ -n "$f" ]] || continue
    for i in "${files[@]}"; do [[ "$f" == "$i" ]] && continue 2; done
    files+=("$f")
  done < <(cluster_pidfiles)
  # In parallel: the last node stopping alone would wait for a controller quorum that is gone.
  for f in "${files[@]}"; do
    local name match
    match="$(pidfile_match "$f")"
    name="$(basename "$f" .pid)"
    if [[ "$name" == "$CLUSTER" ]]; then name="Kafka"; else name="Kafka node ${name##*-}"; fi
    if (( ${#files[@]} > 1 )) && ! fw_pid_alive "$f" "$match"; then rm -f "$f"; continue; fi
    fw_stop_pid "$f" "$name" "$STOP_TIMEOUT" "$match" & pids+=("$!")
  done
  (( ${#pids[@]} )) || fw_log "Kafka cluster $CLUSTER is not running"
  for f in "${pids[@]}"; do wait "$f" || rc=1; done
  return "$rc"
}

cmd_status() {
  resolve_layout
  local i rc=0 label
  for (( i = 1; i <= N; i++ )); do
    label="$(basename "${NPID[i]}" .pid)"
    if node_alive "$i" && fw_port_open 127.0.0.1 "${NPORT[i]}"; then
      if (( N == 1 )); then
        printf '%-9s running  127.0.0.1:%s  pid %s  (Kafka %s, log %s)\n' "$label" "${NPORT[i]}" \
          "$(fw_pid_of "${NPID[i]}")" "$KAFKA_VERSION" "${NLOG[i]}"
      else
        printf '%-9s running  127.0.0.1:%s  pid %s  (Kafka %s, node %s of %s, controller 127.0.0.1:%s, log %s)\n' \
          "$label" "${NPORT[i]}" "$(fw_pid_of "${NPID[i]}")" "$KAFKA_VERSION" "$i" "$N" "${NCPORT[i]}" "${NLOG[i]}"
      fi
    else
      printf '%-9s stopped  127.0.0.1:%s\n' "$label" "${NPORT[i]}"
      rc=1
    fi
  done
  return "$rc"
}

cmd_reset() {
  cmd_down
  fw_log "removing the data of Kafka cluster $CLUSTER ($CDIR)"
  rm -rf "$CDIR/data" "$CDIR/config" "$CDIR"/node-* "$CDIR/cluster.id" "$STATE" \
    "$CDIR/topics.desc" "$CDIR/topics.txt" "$CDIR/endpoints.txt" "$CDIR/brokers.txt" "$CDIR/rejoin.desc"
  # A cluster of its own (not the shared kafka/ directory with the jars): remove the rest.
  if [[ "$CDIR" != "$KDIR" ]]; then rm -f "$CDIR/.lock"; rmdir "$CDIR" 2>/dev/null || true; fi
}

cmd_topics() {
  resolve_layout
  need_tools
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$TOOLS_CLIENT" --describe --exclude-internal
}

cmd_kill() {
  resolve_layout
  local i pid k
  i="$(node_arg kill "${1:-}")"
  if ! node_alive "$i"; then
    rm -f "${NPID[i]}"
    fw_log "${NLABEL[i]} is not running"
    return 0
  fi
  pid="$(fw_pid_of "${NPID[i]}")"
  kill -KILL "$pid" 2>/dev/null || true
  for (( k = 0; k < 100; k++ )); do fw_proc_alive "$pid" || break; sleep 0.1; done
  fw_proc_alive "$pid" && fw_die "${NLABEL[i]} (pid $pid) still alive 10 s after SIGKILL"
  rm -f "${NPID[i]}"
  echo "=== $(date -Is) killed (SIGKILL) by kafka.sh kill $i ===" >>"${NLOG[i]}"
  fw_log "${NLABEL[i]} (pid $pid) killed"
}

cmd_stop() {
  lock_cluster
  resolve_layout
  local i
  i="$(node_arg stop "${1:-}")"
  fw_stop_pid "${NPID[i]}" "${NLABEL[i]}" "$STOP_TIMEOUT" "${NMATCH[i]}"
}

cmd_start() {
  local t0=$EPOCHREALTIME deadline
  lock_cluster
  deadline=$(( SECONDS + START_TIMEOUT ))
  resolve_layout
  local i port
  i="$(node_arg start "${1:-}")"
  if node_alive "$i"; then
    fw_log "${NLABEL[i]} already running (pid $(fw_pid_of "${NPID[i]}")) on 127.0.0.1:${NPORT[i]}"
    return 0
  fi
  [[ -f "$CDIR/cluster.id" ]] || fw_die "cluster $CLUSTER was never started: run '$0 up' first"
  ensure_libs
  [[ -n "${FW_JAVA:-}" ]] || fw_ensure_java
  for port in "${NPORT[i]}" "${NCPORT[i]}" "${EXTRA_PORTS[@]}"; do
    if fw_port_open 127.0.0.1 "$port"; then
      fw_die "port 127.0.0.1:$port is already in use by another process; cannot start ${NLABEL[i],}"
    fi
  done
  ensure_cluster_id
  ensure_certs
  write_config "$i"
  format_storage "$i"   # only if its data was deleted (a lost disk)
  launch_node "$i"
  WATCH=("$i")
  cl_wait "$deadline" "${NLABEL[i]} (port ${NPORT[i]})" fw_port_open 127.0.0.1 "${NPORT[i]}"
  check_archive "$i"
  fw_log "port open after $(fw_since "$t0") s, waiting until ${NLABEL[i],} has rejoined ..."
  cl_wait "$deadline" "${NLABEL[i]} rejoining (unfenced, in the ISR of its partitions)" rejoin_probe "$i"
  fw_log "${NLABEL[i]} (pid $(fw_pid_of "${NPID[i]}")) rejoined in $(fw_since "$t0") s"
}

# groups_describe GROUP: the tool's output on stdout; exit 1 if it reports an error (it exits 0).
groups_describe() {
  local out
  out="$(tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$TOOLS_CLIENT" --describe --group "$1" 2>&1)" || { printf '%s\n' "$out" >&2; return 1; }
  if grep -q '^Error:' <<<"$out"; then
    # Without the Java stack trace that follows the message.
    grep -vE '^(java\.|Caused by:|[[:space:]]+at |[[:space:]]*\.\.\. [0-9]+ more)' <<<"$out" >&2
    return 1
  fi
  printf '%s\n' "$out"
}

cmd_groups() {
  [[ -n "${1:-}" ]] || { echo "usage: $0 groups GROUP" >&2; exit 2; }
  resolve_layout
  need_tools
  groups_describe "$1"
}

cmd_lag() {
  [[ -n "${1:-}" ]] || { echo "usage: $0 lag GROUP" >&2; exit 2; }
  resolve_layout
  need_tools
  local out
  out="$(groups_describe "$1")" || exit 1
  # The LAG column of every table row (located by the header); '-' (no committed offset) = 0.
  awk '
    $1 == "GROUP" { col = 0; for (f = 1; f <= NF; f++) if ($f == "LAG") col = f; next }
    col && NF >= col && $col ~ /^-?[0-9]+$/ { sum += $col }
    END { printf "%d\n", sum }' <<<"$out"
}

cmd_bootstrap() {
  resolve_layout
  echo "$BOOTSTRAP"
}

# user NAME PASSWORD: SCRAM-SHA-512 credentials (created, or the password changed), as the super
# user on the PLAINTEXT listener. ConfigCommand reads PASSWORD inside [...,password=...]: no
# ',', '[', ']' or whitespace in it.
cmd_user() {
  if [[ $# -ne 2 || ! "$1" =~ ^[A-Za-z0-9._-]+$ || ! "$2" =~ ^[^][,[:space:]]+$ ]]; then
    echo "usage: $0 user NAME PASSWORD    (NAME: [A-Za-z0-9._-]+; PASSWORD without , [ ] or spaces)" >&2
    exit 2
  fi
  resolve_layout
  need_tools
  tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --command-config "$TOOLS_CLIENT" \
    --alter --entity-type users --entity-name "$1" --add-config "SCRAM-SHA-512=[iterations=4096,password=$2]"
}

cmd_deluser() {
  [[ $# -eq 1 && -n "$1" ]] || { echo "usage: $0 deluser NAME" >&2; exit 2; }
  resolve_layout
  need_tools
  tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --command-config "$TOOLS_CLIENT" \
    --alter --entity-type users --entity-name "$1" --delete-config SCRAM-SHA-512
}

# acl ARGS...: kafka-acls as the super user (ANONYMOUS on the PLAINTEXT listener).
cmd_acl() {
  (( $# )) || { echo "usage: $0 acl {--add|--remove --force|--list} [AclCommand options]" >&2; exit 2; }
  resolve_layout
  need_tools
  tool org.apache.kafka.tools.AclCommand --bootstrap-server "$BOOTSTRAP" --command-config "$TOOLS_CLIENT" "$@"
}

usage() {
  echo "usage: $0 {up|down|status|reset|topics|bootstrap|kill I|stop I|start I|groups GROUP|lag GROUP|user NAME PASSWORD|deluser NAME|acl ARGS...}" >&2
  exit 2
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  topics) cmd_topics ;;
  bootstrap) cmd_bootstrap ;;
  kill) cmd_kill "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  start) cmd_start "${2:-}" ;;
  groups) cmd_groups "${2:-}" ;;
  lag) cmd_lag "${2:-}" ;;
  user) shift; cmd_user "$@" ;;
  deluser) shift; cmd_deluser "$@" ;;
  acl) shift; cmd_acl "$@" ;;
  *) usage ;;
esac
