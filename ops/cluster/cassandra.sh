#!/usr/bin/env bash
# Local Apache Cassandra 5.0 (one node) from Maven Central jars, on 127.0.0.1 only.
#
#   cassandra.sh fetch        copy cassandra-all and its dependencies (ops/cluster/cassandra/pom.xml)
#                             into the cache
#   cassandra.sh start        write cassandra.yaml, start the node, wait until CQL accepts connections
#   cassandra.sh stop         stop it (TERM, wait up to 60 s, then KILL); fine if not running
#   cassandra.sh status       one line; exit 0 only if it is up
#   cassandra.sh logs [-f]    tail the node log
#   cassandra.sh clean        delete the run dir (data and logs); refuses while running
#
# Ports (127.0.0.1): CQL 19042, internode/storage 17000. No JMX, hence no nodetool.
#
# Environment:
#   COURIER_OPS_CACHE               cache root (default ops/.cache); jars go to $COURIER_OPS_CACHE/cassandra/lib
#   COURIER_CASSANDRA_DIR           run dir (default $COURIER_OPS_CACHE/cassandra/run): cassandra.yaml,
#                                   data/ (the five directories), cassandra.log (+ .1, the previous one), pid
#   COURIER_CASSANDRA_COMMITLOG     periodic | group | batch (default group): see cassandra/cassandra.yaml.in
#   COURIER_CASSANDRA_GROUP_WINDOW  group commit window (default 2ms)
#   COURIER_CASSANDRA_HEAP          max heap (default 1g; the initial heap stays at 256m because
#                                   Cassandra mlocks its memory)
#   COURIER_CASSANDRA_CQL_PORT      default 19042
#   COURIER_CASSANDRA_STORAGE_PORT  default 17000
#   COURIER_CASSANDRA_START_TIMEOUT seconds to wait for the CQL port (default 120)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh source-path=SCRIPTDIR
. "$HERE/common.sh"

LIB=$COURIER_OPS_CACHE/cassandra/lib
RUN=${COURIER_CASSANDRA_DIR:-$COURIER_OPS_CACHE/cassandra/run}
COMMITLOG=${COURIER_CASSANDRA_COMMITLOG:-group}
GROUP_WINDOW=${COURIER_CASSANDRA_GROUP_WINDOW:-2ms}
HEAP=${COURIER_CASSANDRA_HEAP:-1g}
CQL_PORT=${COURIER_CASSANDRA_CQL_PORT:-19042}
STORAGE_PORT=${COURIER_CASSANDRA_STORAGE_PORT:-17000}
START_TIMEOUT=${COURIER_CASSANDRA_START_TIMEOUT:-120}
LOGFILE=$RUN/cassandra.log
# The daemon's command line contains its own config path: that identifies its PID.
MARKER="-Dcassandra.config=file://$RUN/cassandra.yaml"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

cmd_fetch() {
  mvn_fetch "$HERE/cassandra/pom.xml" "$LIB"
}

# write_config: renders cassandra/cassandra.yaml.in into the run dir (on every start, so that
# COURIER_CASSANDRA_COMMITLOG applies to the next start; the data is kept).
write_config() {
  local tmpl param
  case $COMMITLOG in
    group) param="commitlog_sync_group_window: $GROUP_WINDOW" ;;
    periodic) param="commitlog_sync_period: 10000ms" ;;
    batch) param="# batch: each write is fsynced before it is acknowledged" ;;
    *) die "COURIER_CASSANDRA_COMMITLOG must be periodic, group or batch (got '$COMMITLOG')" ;;
  esac
  mkdir -p "$RUN"/data/{data,commitlog,saved_caches,hints,cdc_raw} "$RUN/logs"
  tmpl=$(<"$HERE/cassandra/cassandra.yaml.in")
  # Quoted replacements: bash 5.2 would otherwise expand '&' in them to the matched text.
  tmpl=${tmpl//@CLUSTER_NAME@/"courier-local"}
  tmpl=${tmpl//@STORAGE_PORT@/"$STORAGE_PORT"}
  tmpl=${tmpl//@CQL_PORT@/"$CQL_PORT"}
  tmpl=${tmpl//@RUN@/"$RUN"}
  tmpl=${tmpl//@COMMITLOG_SYNC@/"$COMMITLOG"}
  tmpl=${tmpl//@COMMITLOG_PARAM@/"$param"}
  printf '%s\n' "$tmpl" >"$RUN/cassandra.yaml"
}

# jvm_options: the non-comment lines of cassandra/jvm17-server.options, one argument each.
# "--add-opens X" is written "--add-opens=X" so that each line stays a single argument.
jvm_options() {
  grep -Ev '^[[:space:]]*(#|$)' "$HERE/cassandra/jvm17-server.options" |
    sed -E 's/^[[:space:]]*(--[a-z-]+)[[:space:]]+/\1=/; s/[[:space:]]+$//'
}

cmd_start() {
  local pid opts=()
  require_cmd java
  [ -f "$LIB/.complete" ] || die "Cassandra jars missing in $LIB: run '$0 fetch' first"
  if pid=$(pid_of "$RUN" "$MARKER"); then
    log "cassandra: already running (PID $pid)"
    return 0
  fi
  port_free_or_die "$CQL_PORT" "Cassandra CQL"
  port_free_or_die "$STORAGE_PORT" "Cassandra storage"
  write_config
  mapfile -t opts < <(jvm_options)
  # Keep the previous log for post-mortems.
  if [ -f "$LOGFILE" ]; then mv -f "$LOGFILE" "$LOGFILE.1"; fi
  # -Xms stays small: Cassandra mlocks its memory at start-up, and a large initial heap would be
  # resident (and locked) at once. skip_wait_for_gossip_to_settle: one node has nothing to wait for.
  java -Xms256m -Xmx"$HEAP" \
    "${opts[@]}" \
    -XX:+ExitOnOutOfMemoryError \
    -Djava.net.preferIPv4Stack=true \
    -Djava.awt.headless=true \
    "$MARKER" \
    -Dcassandra-foreground=yes \
    -Dcassandra.storagedir="$RUN/data" \
    -Dcassandra.logdir="$RUN/logs" \
    -Dlogback.configurationFile="$HERE/cassandra/logback.xml" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -cp "$LIB/*" \
    org.apache.cassandra.service.CassandraDaemon </dev/null >"$LOGFILE" 2>&1 &
  echo $! >"$RUN/pid"
  log "cassandra: started PID $! (CQL 127.0.0.1:$CQL_PORT, storage 127.0.0.1:$STORAGE_PORT, commitlog_sync $COMMITLOG, log $LOGFILE)"
  if ! wait_ready cassandra "$RUN" "$MARKER" "$LOGFILE" "$START_TIMEOUT" port_open "$CQL_PORT"; then
    stop_pid cassandra "$RUN" "$MARKER" 10 || true
    die "Cassandra did not start"
  fi
  log "cassandra: ready on 127.0.0.1:$CQL_PORT"
}

cmd_stop() {
  # Cassandra drains on TERM (flushes memtables); give it time before the KILL.
  stop_pid cassandra "$RUN" "$MARKER" 60
}

cmd_status() {
  local pid
  if pid=$(pid_of "$RUN" "$MARKER"); then
    if port_open "$CQL_PORT"; then
      echo "cassandra: running (PID $pid, CQL 127.0.0.1:$CQL_PORT, storage 127.0.0.1:$STORAGE_PORT)"
      return 0
    fi
    echo "cassandra: starting or stopping (PID $pid, CQL port $CQL_PORT closed)"
    return 1
  fi
  echo "cassandra: not running"
  return 1
}

cmd_logs() {
  [ -f "$LOGFILE" ] || die "no Cassandra log at $LOGFILE"
  case ${1:-} in
    -f | --follow) exec tail -n 50 -F "$LOGFILE" ;;
    "") tail -n 50 "$LOGFILE" ;;
    *) usage ;;
  esac
}

cmd_clean() {
  if pid_of "$RUN" "$MARKER" >/dev/null; then
    die "cassandra is running: '$0 stop' first"
  fi
  remove_run_dir
}

(($#)) || usage
cmd=$1
shift
case $cmd in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  logs) cmd_logs "$@" ;;
  clean) cmd_clean ;;
  *) usage ;;
esac
