#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine: the Redis tests need a
# redis-server binary (each test starts its own on a free port), so install
# Debian's if it is missing, then run every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "the Redis tests need redis-server: sudo apt-get install redis-server" >&2
    exit 1
  fi
fi

cargo test --workspace
