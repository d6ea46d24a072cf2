#!/usr/bin/env bash
# Benchmark (not a test): requests/s and p50/p99 latency of the same tiny upstream reached through
#   (a) nginx (Debian package, 1 worker) as a plain reverse proxy,
#   (b) a bare pingora proxy (bff/examples/bare_proxy.rs, 2 threads, no Gatehouse code),
#   (c) the Gatehouse gateway, to the same upstream: a `token = "none"` route (its own proxy cost), and — the
#       figure the ≥ 85 %-of-bare-pingora target is about — `/up/` with a logged-in session: session cookie opened
#       (AES-GCM), session looked up, a fresh DPoP proof signed for the request, `Authorization: DPoP` + `DPoP`
#       forwarded. Last, `/api/whoami` through the gateway to the example API, which also *verifies* the token
#       and the proof (the whole path; the API's own cost is in that figure).
# Everything runs on this machine's loopback on free ports, one system at a time, wrk included; all processes
# started here are stopped on exit. The table also shows the CPU seconds per 1,000 requests and the peak RSS of
# the processes under test (nginx: master + worker; the gatehouse process holds the token service too; the
# /api/whoami row counts the example API's process as well).
# Shared machinery (processes, nginx, the gatehouse configuration, the login, wrk runs): bench/lib.sh.
#
#   bench/gateway.sh [DURATION_SECONDS] [--proxies-only]    # default 10 s per run after a 2 s warm-up
#
# ROUNDS=N (default 3) measures every system N times, alternating, and prints medians (and each round's figure):
# on a shared 2-core VM the speed drifts by tens of per cent between runs a minute apart.
#
# --proxies-only skips (c) (no gatehouse build, no login). Needs wrk and nginx (Debian packages `wrk`, `nginx`:
# installed with apt-get when missing), python3, and node for the login. Prints one table. PROXY_THREADS=N sets the pingora threads of
# (b) and (c) (default 2). PERF_DATA=FILE also records the gateway's /up/ run with `perf record` into FILE
# (read it with `perf report -i FILE`; PERF_ARGS adds options, e.g. "--call-graph dwarf"); the figures of that
# run include perf's overhead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=10
proxies_only=false
for argument in "$@"; do
  case "$argument" in
    --proxies-only) proxies_only=true ;;
    ''|*[!0-9]*) echo "usage: bench/gateway.sh [DURATION_SECONDS] [--proxies-only]" >&2; exit 2 ;;
    *) duration="$argument" ;;
  esac
done
warmup=2
rounds="${ROUNDS:-3}" # every system is measured once per round; the table shows medians
connections=64
proxy_threads="${PROXY_THREADS:-2}" # pingora threads of (b) and (c)

# shellcheck source=bench/lib.sh
. bench/lib.sh
install_package wrk wrk
install_package nginx nginx
$proxies_only || install_package node nodejs # the login (bench/login-driver.mjs)

if $proxies_only; then
  cargo build --release -p gatehouse-bff --example bare_proxy
else
  build_release
fi

# -------------------------------------------------------------------------------------- (a), (b) and upstream
start_origin
start_nginx_proxy
start_bare_pingora

# -------------------------------------------------------------------------------------- (c) the gateway
# `gatehouse serve` (token service + gateway in one process) with the configuration of bench/lib.sh: routes
# /plain/ and /up/ to the origin, /api/ to the example API, which verifies DPoP-bound access tokens from the
# token service (its htu base is the gateway's origin).
if ! $proxies_only; then
  idp_port=$(free_port)
  gateway_port=$(free_port)
  api_port=$(free_port)
  mkdir -p "$work/idp"
  { gatehouse_idp_toml "$idp_port" "$work/idp" "$gateway_port"
    gatehouse_bff_toml "$gateway_port" "http://localhost:$idp_port" "$work/idp/gateway-sessions.db" "$api_port"
  } >"$work/gatehouse.toml"
  start_gatehouse_process "$work/gatehouse.toml" "$work/gatehouse.log" \
    "http://127.0.0.1:$idp_port/.well-known/openid-configuration" "token service"
  gatehouse_pid=$started_pid
  wait_for_http "http://127.0.0.1:$gateway_port/bff/user" "gateway" "$work/gatehouse.log"
  GATEHOUSE_ISSUER="http://localhost:$idp_port" API_AUDIENCE="$api_audience" API_LISTEN="127.0.0.1:$api_port" \
    API_PUBLIC_BASE="http://localhost:$gateway_port" ./target/release/example-api >"$work/example-api.log" 2>&1 &
  api_pid=$!
  pids+=("$api_pid")
  wait_for_http "http://127.0.0.1:$api_port/api/whoami" "example API" "$work/example-api.log"
  session_cookies=$(login_once "http://localhost:$gateway_port/bff/login?returnUrl=/" __Host-gatehouse)
  whoami=$(curl -s -H "Cookie: $session_cookies" -H 'X-CSRF: 1' -H "Host: localhost:$gateway_port" \
    "http://127.0.0.1:$gateway_port/api/whoami")
  echo "logged in; /api/whoami through the gateway: $whoami" >&2
fi

# ------------------------------------------------------------------------------------------------- runs
echo "machine: $(nproc) cores, $(uname -r); $(nginx -v 2>&1 | sed 's/.*: //'); wrk -t$wrk_threads -c$connections;" \
  "${warmup}s warm-up + ${duration}s per run; upstream body $origin_body" >&2
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  under_test=("$origin_pid")
  run_wrk gateway "upstream direct (nginx, 1 worker)" "http://127.0.0.1:$origin_port/plain/x"
  under_test=("$nginx_proxy_pid")
  run_wrk gateway "nginx proxy (1 worker)" "http://127.0.0.1:$nginx_proxy_port/plain/x"
  under_test=("$bare_pid")
  run_wrk gateway "bare pingora ($proxy_threads threads)" "http://127.0.0.1:$bare_port/plain/x"
  if ! $proxies_only; then
    under_test=("$gatehouse_pid")
    # Connect to 127.0.0.1 (the listener) but name the public origin, as a browser at http://localhost:PORT does.
    run_wrk gateway "gatehouse /plain/ (no token)" "http://127.0.0.1:$gateway_port/plain/x" \
      -H "Host: localhost:$gateway_port"
    if [ -n "${PERF_DATA:-}" ] && [ "$round" = 1 ]; then
      # shellcheck disable=SC2086 # PERF_ARGS holds several options
      perf record ${PERF_ARGS:-} -o "$PERF_DATA" -p "$gatehouse_pid" -- sleep $((warmup + duration + 1)) >/dev/null 2>&1 &
      perf_pid=$!
    fi
    run_wrk gateway "gatehouse /up/ (session+DPoP proof)" "http://127.0.0.1:$gateway_port/up/x" \
      -H "Host: localhost:$gateway_port" -H "Cookie: $session_cookies" -H 'X-CSRF: 1'
    if [ -n "${PERF_DATA:-}" ] && [ "$round" = 1 ]; then wait "$perf_pid" || true; fi
    under_test=("$gatehouse_pid" "$api_pid")
    run_wrk gateway "gatehouse /api/whoami (+API verifies)" "http://127.0.0.1:$gateway_port/api/whoami" \
      -H "Host: localhost:$gateway_port" -H "Cookie: $session_cookies" -H 'X-CSRF: 1'
  fi
done

# ------------------------------------------------------------------------------------------------ table
# Medians over the rounds (this machine's speed drifts between runs; the systems alternate within a round).
printf '%s\n' "${results[@]}" | python3 bench/report.py table --reference "bare pingora"

# What one ES256 signature per request costs on this machine (the gateway signs a DPoP proof for every forwarded
# request; RFC 9449 §4.2 wants a fresh one): the ceiling it puts on the gateway relative to bare pingora, when
# the load generator, the upstream and the proxy share the cores.
if command -v openssl >/dev/null && ! $proxies_only; then
  signs=$(openssl speed -seconds 2 ecdsap256 2>/dev/null | awk '/nistp256/ { print $(NF-1) }')
  bare_rps=$(printf '%s\n' "${results[@]}" | awk -F'|' '$2 ~ /^bare pingora/ { print $3 }' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  if [ -n "$signs" ] && [ -n "$bare_rps" ]; then
    awk -v s="$signs" -v b="$bare_rps" -v c="$(nproc)" 'BEGIN {
      sign_us = 1e6 / s; per_request_us = 1e6 * c / b
      printf "\nES256 sign (openssl speed, one core): %.0f/s = %.1f us. Bare pingora uses %.1f us of CPU per request\n", s, sign_us, per_request_us
      printf "(all %d cores / its req/s, wrk and upstream included); one signature more per request caps any\n", c
      printf "DPoP-forwarding proxy here at %.0f%% of bare pingora, before any session or header work.\n", 100 * per_request_us / (per_request_us + sign_us)
    }'
  fi
fi
