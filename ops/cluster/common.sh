# shellcheck shell=bash
# Helpers shared by ops/cluster/kafka.sh and ops/cluster/cassandra.sh. Sourced, not run.
#
# Conventions: each server process has a directory holding `pid` (its PID) and a log file that
# receives its stdout and stderr (stdin is /dev/null). A process counts as ours only while its
# PID is alive AND its command line still contains a marker string, so a recycled PID is never
# mistaken for (or killed as) a server.

# Root of the repository and of the download/run cache (ops/.cache is git-ignored).
COURIER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COURIER_OPS_CACHE=${COURIER_OPS_CACHE:-$COURIER_ROOT/ops/.cache}

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() {
  echo "error: $*" >&2
  exit 1
}

# Fails early with a clear message when a command the scripts rely on is missing.
require_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found (Java 17 and Maven are required)"
  done
}

# mvn_fetch POM OUTDIR: copies the runtime dependencies of POM into OUTDIR. The jars land in a
# temporary directory first, so that an interrupted download never leaves a half-filled OUTDIR
# that a later run would take for complete. A `.complete` stamp records the pom it came from.
mvn_fetch() {
  local pom=$1 out=$2 stamp tmp
  stamp=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -f "$out/.complete" ] && [ "$(cat "$out/.complete")" = "$stamp" ]; then
    log "jars already in $out ($(find "$out" -name '*.jar' | wc -l) jars)"
    return 0
  fi
  require_cmd mvn java
  mkdir -p "$(dirname "$out")"
  # Leftovers of an interrupted fetch.
  rm -rf "$out".tmp.*
  tmp=$(mktemp -d "$out.tmp.XXXXXX")
  log "fetching $(basename "$(dirname "$pom")") jars from Maven Central into $out"
  # mvn -q still prints colour codes on stdout, and its errors too: keep its output in a file and
  # show it only on failure.
  if ! mvn -B -q -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" </dev/null >"$tmp.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "mvn dependency:copy-dependencies failed for $pom"
  fi
  rm -f "$tmp.log"
  echo "$stamp" >"$tmp/.complete"
  rm -rf "$out"
  mv "$tmp" "$out"
  log "fetched $(find "$out" -name '*.jar' | wc -l) jars ($(du -sh "$out" | cut -f1))"
}

# pid_of DIR MARKER: prints the PID recorded in DIR/pid if that process is alive and its command
# line contains MARKER; returns 1 otherwise.
pid_of() {
  local dir=$1 marker=$2 pid
  [ -f "$dir/pid" ] || return 1
  pid=$(cat "$dir/pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  echo "$pid"
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# port_free_or_die PORT WHAT: refuses to start a server on a port someone else already holds.
port_free_or_die() {
  if port_open "$1"; then
    die "port 127.0.0.1:$1 ($2) is already in use by another process"
  fi
}

# log_tail FILE: the last lines of a server log, for error messages.
log_tail() {
  echo "---- last 40 lines of $1 ----" >&2
  tail -n 40 "$1" >&2 2>/dev/null || echo "(no log)" >&2
  echo "----" >&2
}

# wait_ready NAME DIR MARKER LOG TIMEOUT CHECK...: waits until the command CHECK succeeds while
# the process is alive. Fails, with the log tail, if the process dies or TIMEOUT seconds pass.
wait_ready() {
  local name=$1 dir=$2 marker=$3 logfile=$4 timeout=$5
  shift 5
  local deadline=$((SECONDS + timeout))
  while :; do
    if ! pid_of "$dir" "$marker" >/dev/null; then
      echo "error: $name exited during start-up" >&2
      log_tail "$logfile"
      return 1
    fi
    if "$@"; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      echo "error: $name not ready after ${timeout}s (log: $logfile)" >&2
      log_tail "$logfile"
      return 1
    fi
    sleep 0.5
  done
}

# stop_pid NAME DIR MARKER [GRACE]: TERM, wait up to GRACE seconds (default 30), then KILL.
# Idempotent: a missing or stale pid file is not an error.
stop_pid() {
  local name=$1 dir=$2 marker=$3 grace=${4:-30} pid deadline
  if ! pid=$(pid_of "$dir" "$marker"); then
    rm -f "$dir/pid"
    log "$name: not running"
    return 0
  fi
  log "$name: stopping PID $pid"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + grace))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name: still alive after ${grace}s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "error: $name: PID $pid survived KILL" >&2
      return 1
    fi
  fi
  rm -f "$dir/pid"
  log "$name: stopped"
}

# remove_run_dir: deletes the caller's run dir ($RUN) if there is one.
remove_run_dir() {
  if [ -e "$RUN" ]; then
    rm -rf "$RUN"
    log "removed $RUN"
  fi
}

# clean_nodes SERVICE: deletes $RUN unless one of its node-N dirs has a live process (the
# caller's node_marker N names it).
clean_nodes() {
  local service=$1 dir n
  for dir in "$RUN"/node-*; do
    [ -d "$dir" ] || continue
    n=${dir##*/node-}
    if pid_of "$dir" "$(node_marker "$n")" >/dev/null; then
      die "$service node $n is running: '$0 stop' first"
    fi
  done
  remove_run_dir
}
