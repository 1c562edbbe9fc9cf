#!/usr/bin/env bash
# Installs what building Courier needs beyond a Rust toolchain, on Debian or Ubuntu:
#   protobuf-compiler     the .proto contract is compiled at build time (protoc)
#   cmake                 builds the bundled librdkafka (Kafka client of cluster mode)
#   libcurl4-openssl-dev  headers the librdkafka build looks for (nothing links curl)
#   linux-perf            CPU profiles of the server in load runs (courier-load --profile)
#   python3, python3-venv the virtualenv of the test with a third-party Cloud API client
#                         (ops/business/pywa-test.sh)
# Idempotent: does nothing when everything is already there.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need+=(libcurl4-openssl-dev)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v perf >/dev/null 2>&1 || need+=(linux-perf)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# Debian keeps ensurepip, which `python3 -m venv` needs, in python3-venv.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)

if ((${#need[@]})); then
  echo "installing: ${need[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install a Rust toolchain (1.90 or newer) first" >&2
  exit 1
fi
