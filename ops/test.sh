#!/usr/bin/env bash
# Runs the whole test suite: formatting and lint gates, then every test of the workspace
# (unit, storage conformance, crypto, end-to-end including the kill -9 test).
# Installs what it needs first. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

./ops/dev/prerequisites.sh
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test" >&2
cargo test --workspace
