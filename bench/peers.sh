#!/usr/bin/env bash
# Benchmark (not a test): Gatehouse side by side with the peers users would pick instead, on the same workloads,
# on this machine's loopback, in one run; prints one table with Gatehouse's ratio to each peer and the issue's
# targets met or missed, and writes the same to docs/PERFORMANCE.md (machine, versions, command).
#
#   bench/peers.sh [DURATION_SECONDS]      # default 10 s per run, after a 2 s warm-up; 3 rounds
#
# The systems (each started here, on free ports; all stopped on exit):
#   - the Gatehouse token service: `gatehouse serve`, token service only (the configuration of bench/lib.sh);
#   - the Gatehouse gateway: a second `gatehouse serve` whose gateway logs in at that token service (its own,
#     co-located token service stays idle), sessions in the embedded store; routes /up/ (session → DPoP-bound
#     token, a fresh proof per request) and /plain/ to the upstream;
#   - node oidc-provider (bench/peers/oidc-provider.mjs): client_credentials, resource indicators, ES256 JWT
#     access tokens, DPoP;
#   - a Node BFF (bench/peers/node-bff.mjs): express + express-openid-connect (logs in at the Gatehouse token
#     service; its own encrypted session cookie) + http-proxy-middleware (Bearer token forwarded);
#   - nginx as a plain reverse proxy (no auth: the ceiling), a bare pingora proxy (bff/examples/bare_proxy.rs);
#   - the tiny upstream behind every proxy: nginx returning 11 bytes.
# Workloads (the "What each workload measures" section of docs/PERFORMANCE.md says it in full):
#   1. token endpoint, client_credentials → ES256 JWT, 32 connections: Gatehouse vs oidc-provider (wrk);
#   2. the same with a unique pre-generated DPoP proof per request (proto/examples/dpop_proofs.rs);
#   3. an authenticated API call through each proxy, 64 connections: Gatehouse vs the Node BFF vs nginx vs pingora;
#      then the same at 1 connection (the latency each adds, without queueing);
#   4. the full browser login (bench/login-driver.mjs), logins/s: Gatehouse vs the Node BFF, both against the
#      Gatehouse token service (argon2id password check included); then the same when the token-service session
#      already exists (single sign-on: no form, no password hash);
#   5. memory per server-side session (RSS delta of a fresh gateway process over SESSIONS sessions) and cold
#      start to the first 200 (bench/cold-start.mjs) of Gatehouse, oidc-provider and the Node BFF.
# Per system: requests/s, p50, p99 (the load generator's), CPU seconds per 1,000 requests (utime + stime from
# /proc/PID/stat of the system's processes, children included) and peak RSS (VmHWM, reset before each run).
#
# Settings (environment): ROUNDS (3), WARMUP (2), DOC (docs/PERFORMANCE.md; DOC= writes none), PROXY_THREADS
# (pingora threads of the gateway and bare pingora, 2), NODE_WORKERS (node:cluster processes of each Node peer,
# 1), NGINX_WORKERS (1), LOGIN_CONCURRENCY (logins in flight in workload 4, 16), SESSIONS (workload 5, 10000),
# COLD_STARTS (5), BENCH_NOTE (a line put at the top of the document, e.g. that a run was made under load).
# Installs what is missing: wrk, nginx, Node.js (Debian packages), the npm packages of bench/peers (npm ci).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
  '') duration=10 ;;
  *[!0-9]*) echo "usage: bench/peers.sh [DURATION_SECONDS]" >&2; exit 2 ;;
  *) duration="$1" ;;
esac
warmup="${WARMUP:-2}"
rounds="${ROUNDS:-3}"
proxy_threads="${PROXY_THREADS:-2}"
node_workers="${NODE_WORKERS:-1}"
login_concurrency="${LOGIN_CONCURRENCY:-16}"
sessions="${SESSIONS:-10000}"
cold_runs="${COLD_STARTS:-5}"
doc="${DOC-docs/PERFORMANCE.md}"
command_line="$(for v in ROUNDS WARMUP PROXY_THREADS NODE_WORKERS NGINX_WORKERS LOGIN_CONCURRENCY SESSIONS COLD_STARTS; do
  [ -n "${!v:-}" ] && printf '%s=%s ' "$v" "${!v}"; done)bench/peers.sh${1:+ $1}"

# shellcheck source=bench/lib.sh
. bench/lib.sh
install_package wrk wrk
install_package nginx nginx
install_package node nodejs
install_package npm npm
install_npm_packages bench/peers
build_release

facts="$work/facts"
fact() { printf '%s=%s\n' "$1" "$2" >>"$facts"; }
fact load_before "$(cut -d' ' -f1-3 /proc/loadavg)"

# --------------------------------------------------------------------------------------------------- systems
start_origin
start_nginx_proxy
start_bare_pingora

idp_port=$(free_port)
gateway_port=$(free_port)
memory_gateway_port=$(free_port) # workload 5's fresh gateway
cold_idp_port=$(free_port)       # the cold starts' gatehouse
cold_gateway_port=$(free_port)
node_bff_port=$(free_port)
op_port=$(free_port)
node_bff_secret="bench-node-bff-secret-0123456789abcdefghijklmnop"

# The Gatehouse token service, with a client for the Node BFF too.
mkdir -p "$work/token-service"
{ gatehouse_idp_toml "$idp_port" "$work/token-service" "$gateway_port $memory_gateway_port"
  cat <<EOF

[[idp.clients]]
client_id = "node-bff"
auth_method = "client_secret_basic"
secret = "$node_bff_secret"
redirect_uris = ["http://localhost:$node_bff_port/callback"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "profile", "email", "offline_access", "api"]
EOF
} >"$work/token-service.toml"
start_gatehouse_process "$work/token-service.toml" "$work/token-service.log" \
  "http://127.0.0.1:$idp_port/.well-known/openid-configuration" "Gatehouse token service"
token_pid=$started_pid
issuer="http://localhost:$idp_port"

# The argon2id parameters the token service stored alice's password with (it hashes at seeding).
alice_hash=$(python3 -c '
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("select password_hash from users where username = ?", ("alice",)).fetchone()[0])' \
  "$work/token-service/gatehouse.db")
fact argon2 "$(cut -d'$' -f2-4 <<<"$alice_hash" | tr '$' ' ')"

# A gateway process: `gatehouse serve` with an idle co-located token service (PORT_IDP, DIR) and the gateway on
# PORT, logging in at the token service above. start_gateway NAME PORT PORT_IDP
start_gateway() {
  mkdir -p "$work/$1-idp"
  { gatehouse_idp_toml "$3" "$work/$1-idp" "$2" "$alice_hash"
    gatehouse_bff_toml "$2" "$issuer" "$work/$1-sessions.db"
  } >"$work/$1.toml"
  start_gatehouse_process "$work/$1.toml" "$work/$1.log" "http://127.0.0.1:$2/plain/x" "Gatehouse gateway ($1)"
}
start_gateway gateway "$gateway_port" "$(free_port)"
gateway_pid=$started_pid

# The Node peers (NODE_ENV=production, as deployed). One JWK Set for oidc-provider, made once.
node bench/peers/oidc-provider.mjs --generate-jwks >"$work/op-jwks.json"
start_oidc_provider() { # start_oidc_provider PORT: sets started_pid
  PORT="$1" WORKERS="$node_workers" JWKS="$(cat "$work/op-jwks.json")" NODE_ENV=production \
    node bench/peers/oidc-provider.mjs >"$work/oidc-provider-$1.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}
start_oidc_provider "$op_port"
op_pid=$started_pid
wait_for_http "http://127.0.0.1:$op_port/.well-known/openid-configuration" oidc-provider "$work/oidc-provider-$op_port.log"

node_bff_env=(PORT="$node_bff_port" ISSUER="$issuer" UPSTREAM="http://127.0.0.1:$origin_port" CLIENT_ID=node-bff
  CLIENT_SECRET="$node_bff_secret" SESSION_SECRET="bench-node-bff-session-secret-0123456789abcdef"
  WORKERS="$node_workers" NODE_ENV=production)
env "${node_bff_env[@]}" node bench/peers/node-bff.mjs >"$work/node-bff.log" 2>&1 &
node_bff_pid=$!
pids+=("$node_bff_pid")
wait_for_http "http://127.0.0.1:$node_bff_port/me" "Node BFF" "$work/node-bff.log"

# One login each; workload 3 sends the session cookies they got.
gatehouse_cookies=$(login_once "http://localhost:$gateway_port/bff/login?returnUrl=/" __Host-gatehouse \
  "http://localhost:$gateway_port/bff/user")
node_bff_cookies=$(login_once "http://localhost:$node_bff_port/login" appSession "http://localhost:$node_bff_port/me")
echo "logged in at the gateway (cookie header ${#gatehouse_cookies} bytes) and at the Node BFF" \
  "(${#node_bff_cookies} bytes)" >&2

# -------------------------------------------------------------------------------------------------- workloads
gatehouse_token="gatehouse token service"
op_token="oidc-provider ($node_workers process$([ "$node_workers" = 1 ] || echo es))"

# Workload 4: WORKLOAD LABEL START_URL COOKIE PIDS...: login-driver's own warm-up, then its measured run;
# workload w4s with --sso (the token-service session exists: no form, no password hash).
run_logins() {
  local workload="$1" label="$2" start="$3" cookie="$4" line
  shift 4
  local driver=(node bench/login-driver.mjs bench --start "$start" --cookie "$cookie" --username alice
    --password alice-password --concurrency "$login_concurrency")
  [ "$workload" = w4s ] && driver+=(--sso)
  "${driver[@]}" --duration "$warmup" >/dev/null
  measure_begin "$@"
  line=$("${driver[@]}" --duration "$duration" | grep '^RESULT')
  measure_end "$(result_field "$line" requests)"
  record_result "$workload" "$label" "$line" "$measured"
}

echo "machine: $(nproc) cores, $(uname -r); ${warmup}s warm-up + ${duration}s per run; $rounds round(s)" >&2
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  connections=32
  under_test=("$token_pid")
  run_token_endpoint w1 "$gatehouse_token" "http://127.0.0.1:$idp_port/token"
  under_test=("$op_pid")
  run_token_endpoint w1 "$op_token" "http://127.0.0.1:$op_port/token"

  # The proofs' htu: the issuer's token endpoint; as many as the Bearer figure allows (DPoP only costs more).
  under_test=("$token_pid")
  run_token_endpoint w2 "$gatehouse_token" "http://127.0.0.1:$idp_port/token" "$issuer/token" \
    "$(median_rps w1 "$gatehouse_token")"
  under_test=("$op_pid")
  run_token_endpoint w2 "$op_token" "http://127.0.0.1:$op_port/token" "http://127.0.0.1:$op_port/token" \
    "$(median_rps w1 "$op_token")"

  connections=64
  under_test=("$nginx_proxy_pid")
  run_wrk w3 "nginx proxy (no auth, ${NGINX_WORKERS:-1} worker)" "http://127.0.0.1:$nginx_proxy_port/up/x"
  under_test=("$bare_pid")
  run_wrk w3 "bare pingora ($proxy_threads threads, no auth)" "http://127.0.0.1:$bare_port/up/x"
  under_test=("$gateway_pid")
  run_wrk w3 "gatehouse gateway (session → DPoP)" "http://127.0.0.1:$gateway_port/up/x" \
    -H "Host: localhost:$gateway_port" -H "Cookie: $gatehouse_cookies" -H 'X-CSRF: 1'
  under_test=("$node_bff_pid")
  run_wrk w3 "Node BFF (session cookie → Bearer)" "http://127.0.0.1:$node_bff_port/up/x" \
    -H "Host: localhost:$node_bff_port" -H "Cookie: $node_bff_cookies"

  # The same four at 1 connection (wrk -t1 -c1): the latency of one request with no queue in front of it. At 64
  # connections a saturated closed loop makes p50 ≈ 64 / (requests/s), so the latency a proxy adds shows here.
  connections=1 wrk_threads=1
  under_test=("$nginx_proxy_pid")
  run_wrk w3l "nginx proxy (no auth, ${NGINX_WORKERS:-1} worker)" "http://127.0.0.1:$nginx_proxy_port/up/x"
  under_test=("$bare_pid")
  run_wrk w3l "bare pingora ($proxy_threads threads, no auth)" "http://127.0.0.1:$bare_port/up/x"
  under_test=("$gateway_pid")
  run_wrk w3l "gatehouse gateway (session → DPoP)" "http://127.0.0.1:$gateway_port/up/x" \
    -H "Host: localhost:$gateway_port" -H "Cookie: $gatehouse_cookies" -H 'X-CSRF: 1'
  under_test=("$node_bff_pid")
  run_wrk w3l "Node BFF (session cookie → Bearer)" "http://127.0.0.1:$node_bff_port/up/x" \
    -H "Host: localhost:$node_bff_port" -H "Cookie: $node_bff_cookies"
  wrk_threads=2

  for workload in w4 w4s; do
    run_logins "$workload" "gatehouse gateway + token service" \
      "http://localhost:$gateway_port/bff/login?returnUrl=/" __Host-gatehouse "$gateway_pid" "$token_pid"
    run_logins "$workload" "Node BFF + Gatehouse token service" "http://localhost:$node_bff_port/login" appSession \
      "$node_bff_pid" "$token_pid"
  done
done
under_test=()

# ---------------------------------------------------------------------------------------------- workload 5
# Memory per session: a fresh gateway process; WARM sessions first (allocator, caches, SQLite warmed), then its
# RSS, then SESSIONS more, then its RSS again. Every session is made by a whole login through the gateway that
# reuses one token-service session (no password hash: the gateway's side is the same) and read back once
# (/bff/user), so it is in the gateway's cache.
echo "workload 5: $sessions sessions in a fresh gateway" >&2
start_gateway memory "$memory_gateway_port" "$(free_port)"
memory_pid=$started_pid
make_sessions() { # make_sessions COUNT
  node bench/login-driver.mjs sessions --sso --count "$1" --concurrency 8 --username alice --password alice-password \
    --start "http://localhost:$memory_gateway_port/bff/login?returnUrl=/" --cookie __Host-gatehouse \
    --check "http://localhost:$memory_gateway_port/bff/user"
}
warm=$((sessions / 20 > 100 ? sessions / 20 : 100))
make_sessions "$warm" >/dev/null || echo "warning: some warm-up logins failed" >&2
sleep 1
mapfile -t memory_pids < <(process_tree "$memory_pid")
rss_before=$(rss_kib "${memory_pids[@]}")
line=$(make_sessions "$sessions") || echo "warning: some logins failed: the figure is per session made" >&2
sleep 1
rss_after=$(rss_kib "${memory_pids[@]}")
echo "  $line" >&2
made=$(result_field "${line:-RESULT requests=0}" requests)
case "$made" in '' | *[!0-9]*) made=0 ;; esac
kill "$memory_pid" 2>/dev/null || true
wait "$memory_pid" 2>/dev/null || true
# The store on disk, once the gateway has stopped: WAL checkpointed, used pages / sessions in it (warm-up included).
store_bytes_per_session=$(python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("pragma wal_checkpoint(truncate)")
pages = db.execute("pragma page_count").fetchone()[0] - db.execute("pragma freelist_count").fetchone()[0]
size = pages * db.execute("pragma page_size").fetchone()[0]
print(round(size / max(db.execute("select count(*) from gateway_sessions").fetchone()[0], 1)))' \
  "$work/memory-sessions.db")
if [ "$made" -gt 0 ]; then
  fact w5_sessions "$made"
  fact w5_warm "$warm"
  fact w5_rss_before_kib "$rss_before"
  fact w5_rss_after_kib "$rss_after"
  fact w5_bytes_per_session "$(awk -v a="$rss_after" -v b="$rss_before" -v n="$made" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')"
  fact w5_store_bytes_per_session "$store_bytes_per_session"
fi

# Cold start to the first 200: the first start on an empty data directory (keys and store created), then the
# median of the later starts. Gatehouse: token service + gateway in one process (the demo's shape), ready when
# the discovery document and a request proxied by the gateway (/plain/) both answer 200; alice's password given
# as a hash, as a deployment would. oidc-provider: its discovery document (keys given). The Node BFF: /me
# answers its login redirect (302), which needs the token service's discovery document fetched.
cold() { # cold NAME LABEL node bench/cold-start.mjs options...
  local name="$1" label="$2" line
  shift 2
  line=$(node bench/cold-start.mjs --runs "$cold_runs" "$@" | grep '^RESULT')
  echo "  cold start $label: $line" >&2
  fact "cold_${name}_ms" "$(result_field "$line" median_ms)"
  fact "cold_${name}_label" "$label (first start $(result_field "$line" first_ms) ms)"
}
echo "cold starts ($cold_runs each)" >&2
{ gatehouse_idp_toml "$cold_idp_port" "$work/cold" "$cold_gateway_port" "$alice_hash"
  gatehouse_bff_toml "$cold_gateway_port" "http://localhost:$cold_idp_port" "$work/cold/gateway-sessions.db"
} >"$work/cold.toml"
cold gatehouse "Gatehouse (token service + gateway, one process)" --fresh "$work/cold" \
  --expect "http://127.0.0.1:$cold_idp_port/.well-known/openid-configuration=200" \
  --expect "http://127.0.0.1:$cold_gateway_port/plain/x=200" \
  -- env GATEHOUSE_LOG__LEVEL=warn ./target/release/gatehouse serve --config "$work/cold.toml"
cold_op_port=$(free_port)
cold oidc_provider "oidc-provider" \
  --expect "http://127.0.0.1:$cold_op_port/.well-known/openid-configuration=200" \
  -- env PORT="$cold_op_port" WORKERS="$node_workers" JWKS="$(cat "$work/op-jwks.json")" NODE_ENV=production \
  node bench/peers/oidc-provider.mjs
cold_node_bff_port=$(free_port)
cold node_bff "Node BFF" --expect "http://127.0.0.1:$cold_node_bff_port/me=302" \
  -- env "${node_bff_env[@]}" PORT="$cold_node_bff_port" node bench/peers/node-bff.mjs

# ------------------------------------------------------------------------------------------------- report
fact load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
fact date "$(date -u '+%Y-%m-%d %H:%M UTC')"
fact command "$command_line"
fact rounds "$rounds"
fact warmup "$warmup"
fact duration "$duration"
fact nproc "$(nproc)"
fact cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
fact memory "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
fact kernel "$(uname -r)"
fact load_generator "wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }') (2 threads) for workloads 1-3, bench/login-driver.mjs ($login_concurrency logins in flight) for 4"
fact version_gatehouse "$(./target/release/gatehouse --version 2>/dev/null | awk '{ print $NF }') (git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src idp bff proto examples Cargo.toml Cargo.lock ||
  echo ', uncommitted changes to its code')), release build, $proxy_threads gateway threads; $(rustc --version)"
node_note=""
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 22 ] ||
  node_note="; oidc-provider 9 asks for Node.js 22 LTS or later and warns on this one"
fact version_node "$(node --version) (NODE_ENV=production, $node_workers process(es) per Node peer$node_note)"
for package in oidc-provider express express-openid-connect http-proxy-middleware jose; do
  fact "version_npm $package" "$(node -p "require('./bench/peers/node_modules/$package/package.json').version" 2>/dev/null || echo '?')"
done
fact version_nginx "$(nginx -v 2>&1 | sed 's/.*: //') (${NGINX_WORKERS:-1} worker)"
fact settings "proxy_threads=$proxy_threads node_workers=$node_workers login_concurrency=$login_concurrency"
note="${BENCH_NOTE:-}"
if [ "$duration" -lt 10 ] || [ "$rounds" -lt 3 ]; then
  note="${note:+$note }A short run: $rounds round(s) of $duration s (the default is 3 of 10 s)."
fi
fact note "$note"
fact login_concurrency "$login_concurrency"
fact cold_runs "$cold_runs"

# The raw figures stay in target/bench-peers/ (re-render: python3 bench/report.py peers --facts
# target/bench-peers/facts --doc FILE < target/bench-peers/results).
mkdir -p target/bench-peers "$(dirname "${doc:-docs/x}")"
printf '%s\n' "${results[@]}" >target/bench-peers/results
cp "$facts" target/bench-peers/facts
python3 bench/report.py peers --facts "$facts" ${doc:+--doc "$doc"} <target/bench-peers/results
