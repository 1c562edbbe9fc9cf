#!/usr/bin/env bash
# Runs the Courier platform on this machine: embedded storage in ./data, no external service.
# Serves HTTP, the WebSocket gateway and /metrics on 127.0.0.1:8080 (override with
# COURIER_SERVER__LISTEN, or any setting with COURIER_<SECTION>__<KEY>, or --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."

./ops/dev/prerequisites.sh
cargo build --release --bin courier-server --bin courier
echo "courier CLI: $(pwd)/target/release/courier  (see the README's quickstart)" >&2
exec ./target/release/courier-server "$@"
