#!/usr/bin/env bash
# wrk with a think time: a drop-in for compare.sh's load generator (`WRK_BIN`) that measures
# latency at an offered load below every system's capacity, instead of compare.sh's closed loop
# where each connection sends its next request the moment the last answer arrives. In that
# closed loop the server is saturated, p99 is queueing behind the other connections, and in
# State L's runs it moved with throughput (docs/benchmarks-history.md). Here every connection waits PACE_MS
# milliseconds (default 2) after each answer before its next request, so 64 connections offer
# about 64 / (PACE_MS + latency) requests per millisecond to whichever system is measured, and
# p99 is what a caller sees from a server that is not the bottleneck. wrk starts each request's
# clock when it writes it, so the wait is not counted in the latency. wrk's timers tick in whole
# milliseconds, so requests leave in bursts at each tick and the rate still moves a little with
# the server's latency: compare the req/s column too (docs/benchmarks-history.md, State M: 0.975-1.061x).
#
#   WRK_BIN=$PWD/benches/paced-wrk.sh PACE_MS=2 ../shared/bench/compare.sh ...
#
# It finds compare.sh's `-s SCRIPT`, wraps that script (same bodies, same RESULT line) with
# wrk's `delay()` hook, and runs the real wrk (`REAL_WRK`, default `wrk`) with the rest of the
# arguments unchanged.
set -euo pipefail
pace=${PACE_MS:-2}
[[ $pace =~ ^[0-9]+$ ]] || { echo "paced-wrk: PACE_MS must be whole milliseconds" >&2; exit 2; }
args=()
wrapped=""
trap '[ -z "$wrapped" ] || rm -f "$wrapped"' EXIT
while [ $# -gt 0 ]; do
  if [ "$1" = "-s" ] && [ $# -gt 1 ]; then
    [[ $2 != *[\"\\]* ]] || { echo "paced-wrk: quote or backslash in the script's path" >&2; exit 2; }
    wrapped=$(mktemp --suffix=.lua)
    printf 'dofile("%s")\nfunction delay() return %d end\n' "$2" "$pace" >"$wrapped"
    args+=(-s "$wrapped")
    shift 2
  else
    args+=("$1")
    shift
  fi
done
[ -n "$wrapped" ] || { echo "paced-wrk: no -s SCRIPT among the arguments" >&2; exit 2; }
"${REAL_WRK:-wrk}" "${args[@]}"
