#!/usr/bin/env bash
# Benchmark (not a test): token-endpoint requests/s and latency for client_credentials, without and with a
# DPoP proof per request, at 32 connections, against a release build of `gatehouse serve` on loopback.
#
#   bench/token-endpoint.sh [DURATION_SECONDS]     # default 15
#
# Needs wrk (Debian package `wrk`: installed when missing). Prints one line per workload.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration="${1:-15}"
connections=32
threads=2

command -v wrk >/dev/null || { echo "installing wrk (apt-get)"; apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
bash scripts/ensure-tools.sh --no-npm >/dev/null
cargo build --release --bin gatehouse
cargo build --release -p gatehouse-proto --example dpop_proofs

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
export GATEHOUSE_IDP__LISTEN="127.0.0.1:$port" GATEHOUSE_IDP__ISSUER="http://127.0.0.1:$port" GATEHOUSE_IDP__DATA_DIR="$data"
export GATEHOUSE_LOG__LEVEL=warn GATEHOUSE_ADMIN__ENABLED=false
./target/release/gatehouse serve --config config/gatehouse.toml >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/.well-known/openid-configuration" >/dev/null && break; sleep 0.1; done

url="http://127.0.0.1:$port/token"
export BASIC_AUTH="Basic $(printf '%s' 'demo-m2m:demo-m2m-secret-0123456789abcdefghijklmnopqrstuv' | base64 -w0)"
export THREADS=$threads
echo "machine: $(nproc) cores, $(uname -r); gatehouse $(./target/release/gatehouse --version 2>/dev/null || echo dev); ${duration}s per run, $connections connections"

# Warm-up (connections, caches).
PROOFS= wrk -t$threads -c$connections -d3s -s bench/token-endpoint.lua "$url" >/dev/null

printf '%-44s ' "client_credentials (Bearer):"
PROOFS= wrk -t$threads -c$connections -d"${duration}s" -s bench/token-endpoint.lua "$url" | grep RESULT

# Enough unique proofs for the run (a replayed proof would be refused and counted as non-2xx).
count=$((duration * 40000))
./target/release/examples/dpop_proofs "$count" POST "$url" >"$data/proofs"
printf '%-44s ' "client_credentials + DPoP proof per request:"
PROOFS="$data/proofs" wrk -t$threads -c$connections -d"${duration}s" -s bench/token-endpoint.lua "$url" | grep RESULT
