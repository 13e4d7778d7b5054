#!/usr/bin/env bash
# Soak (not in CI): a release gateway process in front of a flapping `tim-gateway sim` process,
# driven for SOAK_SECONDS (default 600) with the S4 mix by benches/soak.rs, which judges every
# answer and samples the gateway's RSS and fds. Prints the figures BENCHMARKS.md ("Soak")
# reports, then the sim's counters: rate_limited must be 0 (the gateway never asked the sim
# for more than its limit). Exits non-zero if any check fails.
#
#   benches/soak.sh                      # 10 minutes (run it under `nice -n 10` on a shared box)
#   SOAK_SECONDS=120 SOAK_WARMUP=30 benches/soak.sh
#
# Warm-up defaults to 300 s: the answer cache (64 MiB of whole answers) is still filling before
# that, so RSS rises by design; after it, RSS must stay within 10 % and fds within 8.
#
# Setup: sim limit 200 calls/s (the gateway's default limits.requests_per_second), 20 ms
# latency, flapping every 30 s (502 burst, +400 ms latency spike, dropped connections, one
# answer padded past 16 MiB); gateway from config/tim-gateway.toml with auth.mode = none, the
# demo secret key and cache.ttl_seconds = 60 (SOAK_TTL_SECONDS), so the cache fills, expires and
# refills several times in the measured window; both on 127.0.0.1 (ports chosen by the OS).
# Everything it writes is under target/soak.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${SOAK_SECONDS:-600}
warmup=${SOAK_WARMUP:-300}
flap=${SOAK_FLAP_SECONDS:-30}
ttl=${SOAK_TTL_SECONDS:-60}
work=target/soak
mkdir -p "$work"

cargo build --release --locked --bin tim-gateway
cargo bench --locked --bench soak --no-run
bin=target/release/tim-gateway
key=tim-gateway-demo-key-not-a-secret

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# Waits up to 10 s for a line matching $2 in file $1 and prints the first match.
wait_for() {
  for _ in $(seq 100); do
    if line=$(grep -m1 -E "$2" "$1"); then echo "$line"; return 0; fi
    sleep 0.1
  done
  echo "soak: nothing matching '$2' in $1" >&2; cat "$1" >&2; return 1
}

TIM_GATEWAY__UPSTREAM__SECRET_KEY=$key "$bin" sim --listen 127.0.0.1:0 \
  --requests-per-second 200 --latency-ms 20 --flap-period-seconds "$flap" \
  >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!; pids+=("$sim_pid")
sim_url=$(wait_for "$work/sim.out" '^tim-gateway sim: listening on ' | sed 's/.* on //')

TIM_GATEWAY__UPSTREAM__SECRET_KEY=$key TIM_GATEWAY__UPSTREAM__BASE_URL=$sim_url \
TIM_GATEWAY__AUTH__MODE=none TIM_GATEWAY__SERVER__LISTEN=127.0.0.1:0 \
TIM_GATEWAY__CACHE__TTL_SECONDS=$ttl \
TIM_GATEWAY__LOG__FORMAT=json \
  "$bin" --config config/tim-gateway.toml >"$work/gateway.out" 2>"$work/gateway.log" &
gateway_pid=$!; pids+=("$gateway_pid")
gateway=$(wait_for "$work/gateway.log" '"listen":"127\.0\.0\.1:[0-9]+"' \
  | grep -oE '127\.0\.0\.1:[0-9]+' | head -n1)
echo "soak: sim $sim_url (pid $sim_pid), gateway http://$gateway (pid $gateway_pid)"

status=0
cargo bench --locked --bench soak -- --gateway "$gateway" --pid "$gateway_pid" \
  --seconds "$seconds" --warmup "$warmup" || status=$?

kill -TERM "$sim_pid"; wait "$sim_pid" || true
counters=$(tail -n1 "$work/sim.out")
echo "sim counters: $counters"
echo "$counters" | grep -q '"rate_limited":0[,}]' || { echo "soak: the sim refused calls over its limit" >&2; status=1; }
kill -TERM "$gateway_pid"; wait "$gateway_pid" || true
echo "gateway warnings/errors logged: $(grep -cE '"level":"(WARN|ERROR)"' "$work/gateway.log" || true)"
exit "$status"
