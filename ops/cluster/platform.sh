#!/usr/bin/env bash
# A Courier cluster of N nodes on this machine, on the local Kafka (kafka.sh) and Cassandra
# (cassandra.sh), which it starts if they are not running.
#
#   platform.sh start [--nodes N] [--kafka-nodes 1|3] [--binary PATH]
#                                 start nodes 1..N (default 3) and wait until each answers
#                                 /readyz with 200; nodes already running are left alone
#   platform.sh stop [--node N] [--all]
#                                 stop all nodes, or node N (TERM: the server drains; KILL after
#                                 30 s); --all then also stops Kafka and Cassandra
#   platform.sh kill --node N     SIGKILL node N (fault drills)
#   platform.sh restart --node N  stop node N, start it again, wait until it is ready
#   platform.sh status            one line per node; exit 0 only if every node is up and ready
#   platform.sh logs --node N [-f]
#   platform.sh clean             delete the run dir; refuses while a node runs (Kafka's and
#                                 Cassandra's data stay: kafka.sh clean, cassandra.sh clean)
#
# Node i listens on 127.0.0.1:$((18080 + i)) (HTTP, gateway, /metrics; node 1 on 18081), has the
# node id node-i, stores through CQL on 127.0.0.1:19042 (keyspace replication factor 1) and
# meets the others through Kafka on 127.0.0.1:19092 (or the three brokers with --kafka-nodes 3).
# Every node gets the same admin token, generated once into <run dir>/admin.token.
# Node 1 also serves the business API on 127.0.0.1:18070 (business.cluster_node); the others
# do not run it (business numbers have no owner in the cluster yet: every node running it would
# bring up every number).
#
# The binary defaults to target/release/courier-server, built with
# `cargo build --release -p courier-server` only if it is missing.
#
# Environment:
#   COURIER_OPS_CACHE               cache root (default ops/.cache)
#   COURIER_PLATFORM_DIR            run dir (default $COURIER_OPS_CACHE/platform/run): admin.token,
#                                   settings, node-i/{courier.toml,data/,courier.log (+ .1),pid}
#   COURIER_PLATFORM_START_TIMEOUT  seconds to wait for each node to be ready (default 120)
#   COURIER_KAFKA_DIR, COURIER_CASSANDRA_DIR and the other variables of kafka.sh / cassandra.sh
#   apply to the Kafka and Cassandra this script starts. Other COURIER_<SECTION>__<KEY>
#   variables reach every node (e.g. COURIER_LOG__FILTER=debug).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh source-path=SCRIPTDIR
. "$HERE/common.sh"

RUN=${COURIER_PLATFORM_DIR:-$COURIER_OPS_CACHE/platform/run}
START_TIMEOUT=${COURIER_PLATFORM_START_TIMEOUT:-120}
HTTP_BASE=18080
CQL=127.0.0.1:19042
DEFAULT_BINARY=$COURIER_ROOT/target/release/courier-server

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

node_dir() { echo "$RUN/node-$1"; }
node_port() { echo $((HTTP_BASE + $1)); }
# Each node runs with --config <its own courier.toml>: that names this run dir and the node.
node_marker() { echo "--config $(node_dir "$1")/courier.toml"; }
setting() { cat "$RUN/$1" 2>/dev/null || echo "$2"; }

# http_status PORT PATH: the HTTP status code of GET PATH on 127.0.0.1:PORT (empty if none).
http_status() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
    IFS=" " read -r _ code _ <&3 && echo "$code"' _ "$1" "$2" 2>/dev/null || true
}

node_ready() { [ "$(http_status "$(node_port "$1")" /readyz)" = 200 ]; }

# ensure_dependencies KAFKA_NODES: Kafka and Cassandra up, started (and fetched) if not.
ensure_dependencies() {
  local kafka_nodes=$1
  if "$HERE/kafka.sh" status --nodes "$kafka_nodes" >/dev/null 2>&1; then
    log "kafka: already running ($kafka_nodes node(s))"
  else
    "$HERE/kafka.sh" fetch
    "$HERE/kafka.sh" start --nodes "$kafka_nodes"
  fi
  if "$HERE/cassandra.sh" status >/dev/null 2>&1; then
    log "cassandra: already running"
  else
    "$HERE/cassandra.sh" fetch
    "$HERE/cassandra.sh" start
  fi
}

# resolve_binary PATH: the server binary; the default one is built if it is missing.
resolve_binary() {
  local binary=$1
  if [ -z "$binary" ]; then
    binary=$DEFAULT_BINARY
    if [ ! -x "$binary" ]; then
      log "building $binary (cargo build --release -p courier-server)"
      "$COURIER_ROOT/ops/dev/prerequisites.sh" >&2
      (cd "$COURIER_ROOT" && cargo build --release -p courier-server) </dev/null >&2
    fi
  fi
  [ -x "$binary" ] || die "no executable server binary at $binary"
  (cd "$(dirname "$binary")" && echo "$PWD/$(basename "$binary")")
}

# start_node N: launches node N in the background with the settings of the run dir.
start_node() {
  local n=$1 dir logfile brokers="" k kafka_nodes binary
  dir=$(node_dir "$n")
  logfile=$dir/courier.log
  kafka_nodes=$(setting kafka_nodes 1)
  binary=$(setting binary "$DEFAULT_BINARY")
  for ((k = 0; k < kafka_nodes; k++)); do brokers+="${brokers:+,}127.0.0.1:$((19092 + k))"; done
  port_free_or_die "$(node_port "$n")" "Courier node $n"
  mkdir -p "$dir/data"
  cat >"$dir/courier.toml" <<EOF
# Courier node $n of the local platform (ops/cluster/platform.sh). Its settings come from
# COURIER_<SECTION>__<KEY> environment variables set by the script; this file names the node's
# directory on its command line, which is how the script recognises its process.
EOF
  if [ -f "$logfile" ]; then mv -f "$logfile" "$logfile.1"; fi
  local settings=(
    "COURIER_SERVER__LISTEN=127.0.0.1:$(node_port "$n")"
    COURIER_STORE__BACKEND=cql
    "COURIER_STORE__CQL_CONTACT_POINTS=$CQL"
    COURIER_STORE__CQL_REPLICATION_FACTOR=1
    COURIER_STORE__CQL_SCYLLA=false
    "COURIER_STORE__DATA_DIR=$dir/data"
    COURIER_CLUSTER__BUS=kafka
    "COURIER_CLUSTER__NODE_ID=node-$n"
    "COURIER_CLUSTER__KAFKA_BROKERS=$brokers"
    # The topics the server creates get one replica per broker (3 brokers: min.insync 2).
    "COURIER_CLUSTER__KAFKA_REPLICATION_FACTOR=$kafka_nodes"
  )
  if [ "$n" = 1 ]; then
    settings+=(COURIER_BUSINESS__LISTEN=127.0.0.1:18070 COURIER_BUSINESS__CLUSTER_NODE=true)
  fi
  local token i
  token=$(cat "$RUN/admin.token")
  # The token goes through the environment, never a command line.
  COURIER_SERVER__ADMIN_TOKEN=$token \
    env "${settings[@]}" "$binary" --config "$dir/courier.toml" </dev/null >"$logfile" 2>&1 &
  echo $! >"$dir/pid"
  # Until the child has exec'd, its command line is this script's: give it a moment to become
  # the process that pid_of recognises, so that a wait does not take it for dead.
  for ((i = 0; i < 20; i++)); do
    pid_of "$dir" "$(node_marker "$n")" >/dev/null && break
    sleep 0.1
  done
  log "courier node $n: started PID $! (http://127.0.0.1:$(node_port "$n"), log $logfile)"
}

# wait_nodes N...: waits for each node's /readyz; on failure stops the given nodes and dies.
wait_nodes() {
  local n m
  for n in "$@"; do
    if ! wait_ready "courier node $n" "$(node_dir "$n")" "$(node_marker "$n")" \
      "$(node_dir "$n")/courier.log" "$START_TIMEOUT" node_ready "$n"; then
      for m in "$@"; do
        stop_pid "courier node $m" "$(node_dir "$m")" "$(node_marker "$m")" 10 || true
      done
      die "Courier did not start"
    fi
    log "courier node $n: ready on http://127.0.0.1:$(node_port "$n")"
  done
}

cmd_start() {
  local count=3 kafka_nodes="" binary="" dir n pid started=()
  while (($#)); do
    case $1 in
      --nodes) count=${2:?--nodes needs a number} && shift ;;
      --kafka-nodes) kafka_nodes=${2:?--kafka-nodes needs 1 or 3} && shift ;;
      --binary) binary=${2:?--binary needs a path} && shift ;;
      *) usage ;;
    esac
    shift
  done
  [[ $count =~ ^[1-9][0-9]?$ ]] || die "--nodes must be 1 to 99"
  kafka_nodes=${kafka_nodes:-$(setting kafka_nodes 1)}
  [[ $kafka_nodes =~ ^[13]$ ]] || die "--kafka-nodes must be 1 or 3"
  binary=$(resolve_binary "$binary")
  ensure_dependencies "$kafka_nodes"

  mkdir -p "$RUN"
  echo "$kafka_nodes" >"$RUN/kafka_nodes"
  echo "$binary" >"$RUN/binary"
  if [ ! -s "$RUN/admin.token" ]; then
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$RUN/admin.token")
    log "admin token written to $RUN/admin.token"
  fi
  for ((n = 1; n <= count; n++)); do
    if pid=$(pid_of "$(node_dir "$n")" "$(node_marker "$n")"); then
      log "courier node $n: already running (PID $pid)"
      continue
    fi
    start_node "$n"
    started+=("$n")
  done
  # All nodes are launched before waiting: they join the consumer group together.
  if ((${#started[@]})); then wait_nodes "${started[@]}"; fi
  for dir in "$RUN"/node-*; do
    n=${dir##*/node-}
    if ((n > count)) && pid_of "$dir" "$(node_marker "$n")" >/dev/null; then
      log "courier node $n: still running from an earlier start (stop it with: $0 stop --node $n)"
    fi
  done
}

# node_arg ARGS...: the N of --node N (required).
node_arg() {
  local node=""
  while (($#)); do
    case $1 in
      --node) node=${2:?--node needs a number} && shift ;;
      *) usage ;;
    esac
    shift
  done
  [[ $node =~ ^[1-9][0-9]?$ ]] || die "--node N is required (N = 1, 2, ...)"
  echo "$node"
}

cmd_stop() {
  local node="" all=0 dir n pids=() status=0
  while (($#)); do
    case $1 in
      --node) node=${2:?--node needs a number} && shift ;;
      --all) all=1 ;;
      *) usage ;;
    esac
    shift
  done
  if [ -n "$node" ]; then
    stop_pid "courier node $node" "$(node_dir "$node")" "$(node_marker "$node")" 30
  else
    # All at once: each drains for itself.
    for dir in "$RUN"/node-*; do
      [ -d "$dir" ] || continue
      n=${dir##*/node-}
      stop_pid "courier node $n" "$dir" "$(node_marker "$n")" 30 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || status=1; done
    ((${#pids[@]})) || log "courier: nothing to stop"
  fi
  if ((all)); then
    "$HERE/kafka.sh" stop || status=1
    "$HERE/cassandra.sh" stop || status=1
  fi
  return "$status"
}

cmd_kill() {
  local n pid deadline
  n=$(node_arg "$@")
  pid=$(pid_of "$(node_dir "$n")" "$(node_marker "$n")") || die "courier node $n is not running"
  kill -KILL "$pid"
  deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && die "courier node $n: PID $pid survived KILL"
  rm -f "$(node_dir "$n")/pid"
  log "courier node $n: killed (PID $pid)"
}

cmd_restart() {
  local n
  n=$(node_arg "$@")
  [ -f "$RUN/binary" ] || die "no platform in $RUN: run '$0 start' first"
  stop_pid "courier node $n" "$(node_dir "$n")" "$(node_marker "$n")" 30
  start_node "$n"
  wait_nodes "$n"
}

cmd_status() {
  local dir n pid port all=0 found=0
  for dir in "$RUN"/node-*; do
    [ -d "$dir" ] || continue
    found=1
    n=${dir##*/node-}
    port=$(node_port "$n")
    if pid=$(pid_of "$dir" "$(node_marker "$n")"); then
      if node_ready "$n"; then
        echo "courier node $n: running (PID $pid, http://127.0.0.1:$port, ready)"
      else
        echo "courier node $n: running but not ready (PID $pid, http://127.0.0.1:$port)"
        all=1
      fi
    else
      echo "courier node $n: not running"
      all=1
    fi
  done
  if ((!found)); then
    echo "courier: no node in $RUN"
    all=1
  fi
  return "$all"
}

cmd_logs() {
  local node="" follow=0 logfile
  while (($#)); do
    case $1 in
      --node) node=${2:?--node needs a number} && shift ;;
      -f | --follow) follow=1 ;;
      *) usage ;;
    esac
    shift
  done
  [ -n "$node" ] || die "--node N is required"
  logfile=$(node_dir "$node")/courier.log
  [ -f "$logfile" ] || die "no log at $logfile"
  if ((follow)); then exec tail -n 50 -F "$logfile"; fi
  tail -n 50 "$logfile"
}

cmd_clean() {
  clean_nodes courier
}

(($#)) || usage
cmd=$1
shift
case $cmd in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  kill) cmd_kill "$@" ;;
  restart) cmd_restart "$@" ;;
  status) cmd_status ;;
  logs) cmd_logs "$@" ;;
  clean) cmd_clean ;;
  *) usage ;;
esac
