#!/usr/bin/env bash
# Smoke test of the local cluster tooling: fetches Kafka and Cassandra, starts one node of each
# in throw-away run dirs, checks them from the outside, stops them and prints a summary.
#   Kafka:     TopicCommand creates and lists a topic; ConsoleProducer/ConsoleConsumer round trip.
#   Cassandra: a CQL round trip (CREATE KEYSPACE, CREATE TABLE, INSERT, SELECT) through the
#              Python scylla-driver, installed on first use into a venv under the ops cache.
# Whatever happens (failure, Ctrl-C), nothing it started is left running. Exit 0 only if all
# checks pass; on failure the run dirs and their logs are kept for inspection.
#
# Uses the ports of kafka.sh (19092, 19192) and cassandra.sh (19042, 17000): a node already
# running there makes it fail rather than test someone else's server.
# Environment: COURIER_OPS_CACHE (see kafka.sh); the run dirs default to
# $COURIER_OPS_CACHE/smoke/{kafka,cassandra} (override with COURIER_KAFKA_DIR/COURIER_CASSANDRA_DIR).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh source-path=SCRIPTDIR
. "$HERE/common.sh"

export COURIER_OPS_CACHE
export COURIER_KAFKA_DIR=${COURIER_KAFKA_DIR:-$COURIER_OPS_CACHE/smoke/kafka}
export COURIER_CASSANDRA_DIR=${COURIER_CASSANDRA_DIR:-$COURIER_OPS_CACHE/smoke/cassandra}
VENV=$COURIER_OPS_CACHE/venv
KAFKA=$HERE/kafka.sh
CASSANDRA=$HERE/cassandra.sh
BOOTSTRAP=127.0.0.1:19092
TOPIC=courier-smoke
CQL_PORT=${COURIER_CASSANDRA_CQL_PORT:-19042}

step="setup"
summary=()
t0=$SECONDS

# On any exit: stop both servers (each stop is idempotent and by PID only), then report.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  "$KAFKA" stop >/dev/null 2>&1 || echo "warning: kafka.sh stop failed" >&2
  "$CASSANDRA" stop >/dev/null 2>&1 || echo "warning: cassandra.sh stop failed" >&2
  if ((rc != 0)); then
    echo >&2
    echo "SMOKE FAILED during: $step (exit $rc)" >&2
    echo "logs kept in $COURIER_KAFKA_DIR/node-1/kafka.log and $COURIER_CASSANDRA_DIR/cassandra.log" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

begin() {
  step=$1
  echo "== $step" >&2
}

# ---- fetch ----------------------------------------------------------------------------------
begin "fetch Kafka jars"
"$KAFKA" fetch
begin "fetch Cassandra jars"
"$CASSANDRA" fetch
kafka_version=$(find "$COURIER_OPS_CACHE/kafka/lib" -name 'kafka_2.13-*.jar' -printf '%f\n' | sed 's/^kafka_2.13-//; s/\.jar$//')
cassandra_version=$(find "$COURIER_OPS_CACHE/cassandra/lib" -name 'cassandra-all-*.jar' -printf '%f\n' | sed 's/^cassandra-all-//; s/\.jar$//')

# ---- fresh run dirs -------------------------------------------------------------------------
begin "clean smoke run dirs"
"$KAFKA" clean
"$CASSANDRA" clean

# ---- Kafka ----------------------------------------------------------------------------------
begin "start Kafka (1 node)"
t=$SECONDS
"$KAFKA" start --nodes 1
kafka_start=$((SECONDS - t))

begin "Kafka: create and list a topic (TopicCommand)"
"$KAFKA" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
  --create --topic "$TOPIC" --partitions 3 --replication-factor 1 </dev/null
topics=$("$KAFKA" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --list </dev/null)
echo "$topics" >&2
grep -qx "$TOPIC" <<<"$topics" || die "topic $TOPIC not in the list"

begin "Kafka: produce and consume 3 messages"
printf 'one\ntwo\nthree\n' |
  "$KAFKA" tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$BOOTSTRAP" \
    --topic "$TOPIC"
got=$("$KAFKA" tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" \
  --topic "$TOPIC" --from-beginning --max-messages 3 --timeout-ms 30000 </dev/null 2>/dev/null | sort | tr '\n' ' ')
[ "$got" = "one three two " ] || die "consumed '$got', expected one two three"
summary+=("kafka $kafka_version: PASS (ready in ${kafka_start}s; topic $TOPIC created and listed; 3 messages produced and consumed)")

# ---- Cassandra ------------------------------------------------------------------------------
begin "start Cassandra"
t=$SECONDS
"$CASSANDRA" start
cassandra_start=$((SECONDS - t))

begin "Python CQL driver (scylla-driver) in $VENV"
if ! "$VENV/bin/python" -c 'import cassandra' >/dev/null 2>&1; then
  require_cmd python3
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check scylla-driver </dev/null
fi

begin "Cassandra: CQL round trip"
"$VENV/bin/python" - 127.0.0.1 "$CQL_PORT" <<'EOF' 2>&1
import sys, uuid
from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.policies import DCAwareRoundRobinPolicy

host, port = sys.argv[1], int(sys.argv[2])
profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(local_dc="datacenter1"),
                           request_timeout=30)
cluster = Cluster([host], port=port, execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                  connect_timeout=30)
try:
    s = cluster.connect()
    version = s.execute("SELECT release_version FROM system.local").one().release_version
    s.execute("CREATE KEYSPACE IF NOT EXISTS courier_smoke WITH replication = "
              "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    s.execute("CREATE TABLE IF NOT EXISTS courier_smoke.messages "
              "(conversation uuid, seq bigint, body text, PRIMARY KEY (conversation, seq))")
    conv = uuid.uuid4()
    insert = s.prepare("INSERT INTO courier_smoke.messages (conversation, seq, body) VALUES (?, ?, ?)")
    for i, body in enumerate(["hello", "world"]):
        s.execute(insert, (conv, i, body))
    rows = list(s.execute("SELECT seq, body FROM courier_smoke.messages WHERE conversation = %s", (conv,)))
    got = [(r.seq, r.body) for r in rows]
    assert got == [(0, "hello"), (1, "world")], got
    s.execute("DROP KEYSPACE courier_smoke")
    print(f"CQL round trip OK against Cassandra {version}: {got}")
finally:
    cluster.shutdown()
EOF
summary+=("cassandra $cassandra_version: PASS (ready in ${cassandra_start}s; CREATE KEYSPACE/TABLE, INSERT, SELECT round trip)")

# ---- status and stop ------------------------------------------------------------------------
begin "status"
"$KAFKA" status
"$CASSANDRA" status

begin "stop both"
"$KAFKA" stop
"$CASSANDRA" stop
if "$KAFKA" status >/dev/null || "$CASSANDRA" status >/dev/null; then
  die "a server is still running after stop"
fi
summary+=("both stopped; nothing left running")

# Success: the throw-away run dirs go too.
rm -rf "$COURIER_KAFKA_DIR" "$COURIER_CASSANDRA_DIR"

echo
echo "== smoke summary ($((SECONDS - t0))s)"
printf '%s\n' "${summary[@]}"
echo "SMOKE PASSED"
