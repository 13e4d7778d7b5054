#!/usr/bin/env bash
# Single-system A/B (not in CI): server CPU per first-seen request of one or more gateway
# binaries, each alone, interleaved, so that a change of a few per cent shows through this
# machine's drift. The "what each change bought" tables of docs/benchmarks-history.md come from it.
#
#   BENCH_HARNESS=DIR benches/alone.sh ACCOUNTSxTAGS[:BODIES] ROUNDS SECONDS BINARY...
#   BENCH_HARNESS=/path/to/bench benches/alone.sh 20x4 5 3 /tmp/before /tmp/after
#
# BENCH_HARNESS is the side-by-side harness (compare.sh's directory: its wrk script, and the
# hyper-floor its setup.sh builds). Each round runs every binary in turn: `hyper-floor upstream`
# as the fake Tencent, the gateway pinned to CPU 0 with gateway-bench.toml and the
# answer cache off (every request takes the per-pair path), a 3 s warm-up, then
# `wrk -t1 -c64` on CPU 1 for SECONDS with one body of the shape (BODIES bodies, each with
# accounts of its own, as compare.sh's `20x4:16`). CPU per request is the gateway's utime +
# stime from /proc over the requests wrk counted. Prints one line per run (with wrk's p99) and
# the means per binary. AUTH_QUERY (a query string) and GATEWAY_CONFIG select usersig runs.
# WRK_BIN replaces wrk, as for compare.sh (benches/paced-wrk.sh: the same load below saturation).
# Copy each binary out of target/ first: `cargo bench` overwrites target/release/tim-gateway.
set -euo pipefail
shape=$1 rounds=$2 seconds=$3
shift 3
bench=$(cd "${BENCH_HARNESS:?set BENCH_HARNESS to the side-by-side harness directory}" && pwd)
floor=${HYPER_FLOOR_BIN:-${BENCH_BUILD_DIR:-/tmp/tim-gateway-bench}/target/release/hyper-floor}
config=${GATEWAY_CONFIG:-$bench/gateway-bench.toml}
wrk=${WRK_BIN:-wrk}
url="http://127.0.0.1:28180/v4/profile/portrait_get${AUTH_QUERY:+?$AUTH_QUERY}"
work=$(mktemp -d)
trap 'kill $upstream 2>/dev/null; rm -rf "$work"' EXIT

size=${shape%%:*} count=1
[[ $shape == *:* ]] && count=${shape#*:}
"$floor" bodies --accounts "${size%x*}" --tags "${size#*x}" --count "$count" >"$work/body.txt"
taskset -c 1 "$floor" upstream --listen 127.0.0.1:28183 --threads 1 >/dev/null 2>&1 &
upstream=$!
sleep 0.5

run() {
  local binary=$1 gateway u0 s0 u1 s1 out requests
  env TIM_GATEWAY__UPSTREAM__BASE_URL=http://127.0.0.1:28183 \
    TIM_GATEWAY__SERVER__LISTEN=127.0.0.1:28180 TIM_GATEWAY__CACHE__ANSWER_CACHE_BYTES=0 \
    taskset -c 0 "$binary" --config "$config" >"$work/gateway.log" 2>&1 &
  gateway=$!
  sleep 0.7
  TIM_BODIES=$work/body.txt taskset -c 1 "$wrk" -t1 -c64 -d3s -s "$bench/wrk/portrait.lua" "$url" >/dev/null
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$gateway/stat")
  out=$(TIM_BODIES=$work/body.txt taskset -c 1 "$wrk" -t1 -c64 -d"${seconds}s" -s "$bench/wrk/portrait.lua" "$url")
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$gateway/stat")
  kill -9 "$gateway"
  wait "$gateway" 2>/dev/null || true
  requests=$(awk '/requests in/{print $1}' <<<"$out")
  p99=$(grep -o 'p99_us=[0-9]*' <<<"$out" | cut -d= -f2)
  awk -v b="$binary" -v t=$((u1 - u0 + s1 - s0)) -v r="$requests" -v hz="$(getconf CLK_TCK)" -v p="$p99" \
    'BEGIN { printf "%s %.2f us/request (%d requests, p99 %d us)\n", b, t * 1e6 / hz / r, r, p }'
}

for _ in $(seq "$rounds"); do
  for binary in "$@"; do run "$binary"; done
done | tee "$work/runs.txt"
awk '{ sum[$1] += $2; n[$1]++; p99[$1] += $7 }
  END { for (b in sum) printf "mean %s %.2f us/request, p99 %d us\n", b, sum[b] / n[b], p99[b] / n[b] }' "$work/runs.txt"
