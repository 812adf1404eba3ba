# shellcheck shell=bash
# Shared helpers for the local real stack scripts (sourced, not executed).
#
#   FW_STACK_DIR   data dir for every component (default: <repo>/.stack)
#   logs           $FW_STACK_DIR/logs/<component>.log
#   pid files      $FW_STACK_DIR/<component>.pid

FW_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
FW_SCRIPTS_DIR="$FW_REPO_ROOT/scripts"
FW_STACK_DIR="${FW_STACK_DIR:-$FW_REPO_ROOT/.stack}"
mkdir -p "$FW_STACK_DIR"
FW_STACK_DIR="$(cd "$FW_STACK_DIR" && pwd)"
FW_LOG_DIR="$FW_STACK_DIR/logs"
export FW_STACK_DIR

# Default addresses (override with the env vars named here).
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
PG_PORT="${PG_PORT:-55432}"
RTSP_PORT="${RTSP_PORT:-8554}"

fw_ts() { date +%H:%M:%S; }
fw_log() { printf '%s [%s] %s\n' "$(fw_ts)" "${FW_COMPONENT:-stack}" "$*"; }
fw_warn() { printf '%s [%s] WARNING: %s\n' "$(fw_ts)" "${FW_COMPONENT:-stack}" "$*" >&2; }
fw_die() { printf '%s [%s] ERROR: %s\n' "$(fw_ts)" "${FW_COMPONENT:-stack}" "$*" >&2; exit 1; }

fw_logfile() { echo "$FW_LOG_DIR/$1.log"; }
fw_pidfile() { echo "$FW_STACK_DIR/$1.pid"; }

# Elapsed seconds with one decimal since $1 (an EPOCHREALTIME value).
fw_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- packages ---

fw_sudo() {
  if [[ $EUID -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else fw_die "need root (or sudo) to run: $*"
  fi
}

fw_pkg_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# Wait (bounded) for any other apt/dpkg run to finish.
fw_wait_apt() {
  local waited=0 limit="${FW_APT_WAIT:-900}"
  while pgrep -x apt-get >/dev/null || pgrep -x apt >/dev/null || pgrep -x dpkg >/dev/null \
        || pgrep -x unattended-upgr >/dev/null; do
    if (( waited == 0 )); then fw_log "waiting for another apt/dpkg run to finish ..."; fi
    if (( waited >= limit )); then fw_die "apt/dpkg still busy after ${limit}s"; fi
    sleep 3; waited=$((waited + 3))
  done
}

# fw_ensure_pkgs PKG... : apt-get install the ones that are not installed.
# `apt-get update` runs at most once per process tree (FW_APT_UPDATED).
fw_ensure_pkgs() {
  local missing=() p
  for p in "$@"; do fw_pkg_installed "$p" || missing+=("$p"); done
  (( ${#missing[@]} == 0 )) && return 0
  command -v apt-get >/dev/null 2>&1 || fw_die "missing packages (${missing[*]}) and no apt-get: install them by hand"
  fw_log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -y -q)
  fw_wait_apt
  if [[ "${FW_APT_UPDATED:-0}" != 1 ]]; then
    fw_sudo "${apt[@]}" update >/dev/null || fw_die "apt-get update failed"
    export FW_APT_UPDATED=1
  fi
  fw_wait_apt
  fw_sudo "${apt[@]}" install "${missing[@]}" >/dev/null \
    || fw_die "apt-get install ${missing[*]} failed"
  for p in "${missing[@]}"; do fw_pkg_installed "$p" || fw_die "package $p still not installed"; done
}

# fw_java_major JAVA_BINARY : the major version, from the JDK's `release` file (fast) or by
# asking the JVM (one start, ~0.3 s).
fw_java_major() {
  local real home v=""
  real="$(readlink -f "$1")" || return 0
  home="$(dirname "$(dirname "$real")")"
  if [[ -f "$home/release" ]]; then
    v="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$home/release")"
  fi
  if [[ -z "$v" ]]; then
    v="$("$1" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}')"
    v="${v%%.*}"
  fi
  echo "$v"
}

# Print the path of a java >= 17 (JAVA, JAVA_HOME, PATH, /usr/lib/jvm), or nothing.
fw_find_java() {
  local c v
  for c in "${JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java 2>/dev/null || true)" \
           /usr/lib/jvm/*/bin/java; do
    [[ -n "$c" && -x "$c" ]] || continue
    v="$(fw_java_major "$c")"
    if [[ "$v" =~ ^[0-9]+$ ]] && (( v >= 17 )); then echo "$c"; return 0; fi
  done
  return 0
}

fw_ensure_java() {
  FW_JAVA="$(fw_find_java)"
  if [[ -z "$FW_JAVA" ]]; then
    fw_ensure_pkgs openjdk-17-jre-headless
    FW_JAVA="$(fw_find_java)"
    [[ -n "$FW_JAVA" ]] || fw_die "no Java >= 17 found even after installing openjdk-17-jre-headless"
  fi
  export FW_JAVA
}

# ---------------------------------------------------------------- processes ---

# fw_proc_alive PID : the process exists and is not a zombie (a killed process can stay a zombie
# for a while when PID 1 is slow to reap).
fw_proc_alive() {
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [[ "$state" != Z && "$state" != X ]]
}

# fw_pid_alive PIDFILE [CMDLINE_SUBSTRING] : true if the pid in PIDFILE runs (and its
# command line contains the substring, to survive pid reuse after a reboot).
fw_pid_alive() {
  local pidfile="$1" match="${2:-}" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(head -n1 "$pidfile" 2>/dev/null | tr -dc '0-9')"
  [[ -n "$pid" ]] || return 1
  fw_proc_alive "$pid" || return 1
  if [[ -n "$match" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$match" || return 1
  fi
  return 0
}

fw_pid_of() { head -n1 "$1" 2>/dev/null | tr -dc '0-9'; }

# fw_stop_pid PIDFILE NAME [TIMEOUT] [CMDLINE_SUBSTRING] : SIGTERM, wait, then SIGKILL.
fw_stop_pid() {
  local pidfile="$1" name="$2" timeout="${3:-20}" match="${4:-}" pid i
  if ! fw_pid_alive "$pidfile" "$match"; then
    rm -f "$pidfile"
    fw_log "$name is not running"
    return 0
  fi
  pid="$(fw_pid_of "$pidfile")"
  fw_log "stopping $name (pid $pid) ..."
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < timeout * 10; i++ )); do
    fw_proc_alive "$pid" || break
    sleep 0.1
  done
  if fw_proc_alive "$pid"; then
    fw_warn "$name did not stop within ${timeout}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
  fw_log "$name stopped"
}

# ---------------------------------------------------------------- network ---

# fw_port_open HOST PORT : a TCP connect succeeds.
fw_port_open() {
  timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# fw_wait_until TIMEOUT NAME LOGFILE PIDFILE CMD... : poll CMD every 0.2 s; fail with a clear
# message if it does not succeed in TIMEOUT seconds or the process (PIDFILE) died.
fw_wait_until() {
  local timeout="$1" name="$2" logfile="$3" pidfile="$4"; shift 4
  local deadline=$(( SECONDS + timeout ))
  while ! "$@" >/dev/null 2>&1; do
    if [[ -n "$pidfile" ]] && ! fw_pid_alive "$pidfile"; then
      fw_tail_log "$logfile"
      fw_die "$name exited during start-up; see $logfile"
    fi
    if (( SECONDS >= deadline )); then
      fw_tail_log "$logfile"
      fw_die "$name not ready after ${timeout}s; see $logfile"
    fi
    sleep 0.2
  done
}

fw_tail_log() {
  [[ -f "$1" ]] || return 0
  echo "----- last lines of $1 -----" >&2
  tail -n 25 "$1" >&2 || true
  echo "-----" >&2
}
