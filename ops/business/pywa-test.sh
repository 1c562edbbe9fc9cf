#!/usr/bin/env bash
# Tests the business API with an unmodified third-party Cloud API client, pywa (pinned in
# ops/business/requirements.txt): a debug build of courier-server on free 127.0.0.x ports
# with a fresh data directory, a business set up with `courier-business admin`, consumers
# registered with the `courier` CLI, then ops/business/pywa_test.py drives pywa against it.
# pywa lives in a virtualenv under ops/.cache (COURIER_OPS_CACHE), created on the first run
# and reused while the requirements stay the same.
# Exits non-zero on any failure; the last line sums up ("pywa: N passed, N failed").
set -euo pipefail
cd "$(dirname "$0")/../.."

cache=${COURIER_OPS_CACHE:-$PWD/ops/.cache}
venv=$cache/pywa-venv
requirements=ops/business/requirements.txt

work=$(mktemp -d)
server_pid=""
tested=false
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  # The closing line, also when the test could not run at all.
  if [ "$tested" = false ] && [ "$status" -ne 0 ]; then
    echo "pywa: 0 passed, 1 failed"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

./ops/dev/prerequisites.sh

# The virtualenv: reused when it was made from the same requirements by the same python3.
stamp="$(sha256sum "$requirements" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])')"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.stamp" 2>/dev/null || true)" != "$stamp" ]; then
  echo "== creating $venv" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  "$venv/bin/python" -m pip check >/dev/null
  echo "$stamp" >"$venv/.stamp"
fi

echo "== building courier-server, courier, courier-business (debug)" >&2
cargo build --quiet -p courier-server -p courier-client -p courier-business --bins
bin=$PWD/target/debug

# A loopback address of its own and three free ports on it: the consumer API, the business
# API and pywa's webhook receiver.
host=127.0.0.$((RANDOM % 200 + 20))
read -r platform_port business_port webhook_port < <(python3 - "$host" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(3)]
for s in sockets:
    s.bind((sys.argv[1], 0))
print(*(s.getsockname()[1] for s in sockets))
EOF
)

data=$work/data
mkdir -p "$data"
COURIER_SERVER__LISTEN=$host:$platform_port \
  COURIER_BUSINESS__LISTEN=$host:$business_port \
  COURIER_STORE__DATA_DIR=$data \
  COURIER_BUSINESS__WEBHOOKS__INITIAL_BACKOFF_MS=100 \
  COURIER_BUSINESS__WEBHOOKS__MAX_BACKOFF_SECS=2 \
  COURIER_LOG__FILTER=warn \
  "$bin/courier-server" >"$work/server.log" 2>&1 </dev/null &
server_pid=$!

status=0
tested=true
"$venv/bin/python" ops/business/pywa_test.py \
  --bin-dir "$bin" \
  --data-dir "$data" \
  --work-dir "$work" \
  --platform-url "http://$host:$platform_port" \
  --business-url "http://$host:$business_port" \
  --webhook-listen "$host:$webhook_port" \
  --server-pid "$server_pid" || status=$?
if [ "$status" -ne 0 ]; then
  echo "-- last lines of the server's log:" >&2
  tail -n 40 "$work/server.log" >&2 || true
fi
exit "$status"
