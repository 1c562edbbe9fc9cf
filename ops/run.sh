#!/usr/bin/env bash
# Runs the Courier platform on this machine: embedded storage in ./data, no external service.
# Serves HTTP, the WebSocket gateway and /metrics on 127.0.0.1:8080, and the business API
# (WhatsApp Cloud API compatible) on 127.0.0.1:8090 (override with COURIER_SERVER__LISTEN and
# COURIER_BUSINESS__LISTEN, or any setting with COURIER_<SECTION>__<KEY>, or --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."

./ops/dev/prerequisites.sh
cargo build --release --bin courier-server --bin courier --bin courier-business
echo "courier CLI: $(pwd)/target/release/courier, business admin CLI: $(pwd)/target/release/courier-business  (see the README's quickstarts)" >&2
exec ./target/release/courier-server "$@"
