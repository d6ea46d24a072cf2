#!/usr/bin/env bash
# Benchmark (not a test): token-endpoint requests/s and latency for client_credentials, without and with a
# unique DPoP proof per request, at 32 connections, against a release build of `gatehouse serve` (token service
# only, the configuration of bench/lib.sh) on a free loopback port.
#
#   bench/token-endpoint.sh [DURATION_SECONDS]     # default 15, after a 3 s warm-up
#
# Needs wrk (Debian package `wrk`: installed when missing). Prints one table, with the CPU seconds per 1,000
# requests and the peak RSS of the token service. bench/peers.sh runs the same workloads beside oidc-provider.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration="${1:-15}"
warmup=3
connections=32

# shellcheck source=bench/lib.sh
. bench/lib.sh
install_package wrk wrk
bash scripts/ensure-tools.sh --no-npm >/dev/null
build_release

port=$(free_port)
mkdir -p "$work/idp"
gatehouse_idp_toml "$port" "$work/idp" "$(free_port)" >"$work/gatehouse.toml"
start_gatehouse_process "$work/gatehouse.toml" "$work/server.log" \
  "http://127.0.0.1:$port/.well-known/openid-configuration" "token service"
under_test=("$started_pid")

url="http://127.0.0.1:$port/token"
echo "machine: $(nproc) cores, $(uname -r); gatehouse $(./target/release/gatehouse --version 2>/dev/null || echo dev);" \
  "${warmup}s warm-up + ${duration}s per run, $connections connections" >&2
run_token_endpoint token "client_credentials (Bearer)" "$url"
# The proofs' htu is the issuer's token endpoint (http://localhost:PORT/token), whatever address wrk connects to.
run_token_endpoint token "client_credentials + DPoP proof per request" "$url" "http://localhost:$port/token" \
  "$(median_rps token "client_credentials (Bearer)")"
printf '%s\n' "${results[@]}" | python3 bench/report.py table
