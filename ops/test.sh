#!/usr/bin/env bash
# Runs the whole test suite: formatting and lint gates, the deployment manifests' validation,
# then every test of the workspace (unit, storage and bus conformance against the embedded
# store, Cassandra and Kafka, crypto, end-to-end including kill -9 and the cluster tests),
# then the business API with a third-party Cloud API client (ops/business/pywa-test.sh).
# Installs what it needs first (Debian packages, Kafka and Cassandra jars from Maven Central,
# the client's pinned Python packages from PyPI into ops/.cache) and starts Kafka and Cassandra
# on 127.0.0.1 for the duration of the run.
# Exits non-zero on any failure; the last line sums up.
set -euo pipefail
cd "$(dirname "$0")/.."

./ops/dev/prerequisites.sh
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
echo "== deployment manifests" >&2
./ops/deploy/validate.sh

echo "== Kafka and Cassandra (cluster tests)" >&2
export COURIER_OPS_CACHE=${COURIER_OPS_CACHE:-$PWD/ops/.cache}
export COURIER_KAFKA_DIR=$COURIER_OPS_CACHE/test/kafka
export COURIER_CASSANDRA_DIR=$COURIER_OPS_CACHE/test/cassandra
log=$(mktemp)
cleanup() {
  ./ops/cluster/kafka.sh stop >/dev/null 2>&1 || true
  ./ops/cluster/cassandra.sh stop >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT
# Fresh data for every run; jars stay cached.
./ops/cluster/kafka.sh stop >/dev/null 2>&1 || true
./ops/cluster/cassandra.sh stop >/dev/null 2>&1 || true
./ops/cluster/kafka.sh clean >/dev/null 2>&1 || true
./ops/cluster/cassandra.sh clean >/dev/null 2>&1 || true
./ops/cluster/kafka.sh fetch
./ops/cluster/cassandra.sh fetch
./ops/cluster/kafka.sh start
./ops/cluster/cassandra.sh start
export COURIER_TEST_KAFKA=127.0.0.1:19092
export COURIER_TEST_CQL=127.0.0.1:19042

echo "== cargo test" >&2
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?

echo "== pywa (a third-party Cloud API client)" >&2
./ops/business/pywa-test.sh 2>&1 | tee -a "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary, the pywa test its own).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     /^pywa: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
