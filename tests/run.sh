#!/usr/bin/env bash
# The README's test command: installs what the integration tests start on loopback when it is
# missing (Debian's redis-server for the fleet tests, prometheus/promtool for the operations
# tests), then runs `cargo test` with any arguments given. Installing needs apt-get and root
# (or sudo); elsewhere it says which package to install and stops.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  if ! command -v apt-get >/dev/null 2>&1 || { [ ${#as_root[@]} -gt 0 ] && ! command -v sudo >/dev/null 2>&1; }; then
    echo "tests/run.sh: the tests need ${need[*]} on PATH (Debian/Ubuntu packages of those names)" >&2
    exit 1
  fi
  echo "tests/run.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
exec cargo test "$@"
