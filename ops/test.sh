#!/usr/bin/env bash
# Runs the whole test suite: formatting and lint gates, then every test of the workspace
# (unit, storage conformance, crypto, end-to-end including the kill -9 test).
# Installs what it needs first. Exits non-zero on any failure; the last line sums up.
set -euo pipefail
cd "$(dirname "$0")/.."

./ops/dev/prerequisites.sh
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
