# shellcheck shell=bash disable=SC2034,SC2154 # variables set here for, and by, the scripts that source this file
# Shell functions shared by the benchmarks (bench/gateway.sh, bench/token-endpoint.sh, bench/peers.sh): sourced,
# not run. The sourcing script has already done `cd` to the repository root and `set -euo pipefail`.
#
# What they share: tools installed when missing, free loopback ports, processes started in the background and
# all stopped on exit, nginx instances in the foreground with their own prefix, the Gatehouse configuration and
# the browser login used against it, and one wrk run = warm-up + measured run, recorded as a result line with the
# CPU time and peak memory of the processes under test.
#
# Result lines (the array `results`, read by bench/report.py), one per measured run:
#   WORKLOAD|LABEL|REQUESTS_PER_S|P50_MS|P99_MS|NON_2XX|SOCKET_ERRORS|CPU_S_PER_1000_REQUESTS|PEAK_RSS_KIB
# (the last two empty when no process was named for the run).

# ------------------------------------------------------------------------------------------------------- tools
install_package() { # install_package COMMAND PACKAGE: apt-get install PACKAGE when COMMAND is missing
  command -v "$1" >/dev/null && return
  echo "installing $2 (apt-get)" >&2
  apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
}

# npm ci in DIR when its node_modules is missing or older than package.json / package-lock.json.
install_npm_packages() { # install_npm_packages DIR
  local stamp="$1/node_modules/.package-lock.json"
  if [ -f "$stamp" ] && [ ! "$1/package.json" -nt "$stamp" ] && [ ! "$1/package-lock.json" -nt "$stamp" ]; then
    return
  fi
  echo "installing the npm packages of $1 (npm ci)" >&2
  (cd "$1" && npm ci --no-audit --no-fund >/dev/null)
}

# One release build of everything the three benchmarks run, in one cargo invocation: the packages share one
# feature resolution, so no script rebuilds what another built (separate invocations resolve differently).
build_release() {
  cargo build --release -p gatehouse -p gatehouse-bff -p gatehouse-proto -p gatehouse-example-api --bins \
    --example bare_proxy --example dpop_proofs
}

# ------------------------------------------------------------------------------------------------- processes
# Everything started here goes into `pids` and is stopped on exit; `work` is this run's scratch directory.
work=$(mktemp -d)
chmod 755 "$work" # nginx workers may run as another user
pids=()
bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for_http() { # wait_for_http URL NAME LOG: until anything answers (any status), 30 s at most
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "error: $2 did not come up at $1; its log:" >&2
  tail -n 30 "$3" >&2 || true
  exit 1
}

# nginx in the foreground (daemon off) with its own prefix, config, pid file and temp paths: never the system
# service. start_nginx NAME SERVER_BLOCK; sets nginx_pid. NGINX_WORKERS (default 1) sets worker_processes.
start_nginx() {
  local dir="$work/nginx-$1"
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
worker_processes ${NGINX_WORKERS:-1};
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
$2
}
EOF
  "$(command -v nginx)" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/logs/stdout.log" 2>&1 &
  nginx_pid=$!
  pids+=("$nginx_pid")
}

# The tiny upstream all proxies forward to: its own nginx, a fixed 200 with an 11-byte JSON body for any path.
# start_origin; sets origin_port, origin_pid.
origin_body='{"ok":true}'
start_origin() {
  origin_port=$(free_port)
  start_nginx origin "  server {
    listen 127.0.0.1:$origin_port;
    location / { default_type application/json; return 200 '$origin_body'; }
  }"
  origin_pid=$nginx_pid
  wait_for_http "http://127.0.0.1:$origin_port/" "origin nginx" "$work/nginx-origin/logs/error.log"
}

# nginx as a plain reverse proxy to the origin, pooled keep-alive upstream connections like pingora's.
# start_nginx_proxy; sets nginx_proxy_port, nginx_proxy_pid.
start_nginx_proxy() {
  nginx_proxy_port=$(free_port)
  start_nginx proxy "  upstream origin { server 127.0.0.1:$origin_port; keepalive 128; }
  server {
    listen 127.0.0.1:$nginx_proxy_port;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
  nginx_proxy_pid=$nginx_pid
  wait_for_http "http://127.0.0.1:$nginx_proxy_port/" "nginx proxy" "$work/nginx-proxy/logs/error.log"
}

# The bare pingora proxy (bff/examples/bare_proxy.rs, no Gatehouse code) to the origin, PROXY_THREADS threads.
# start_bare_pingora; sets bare_port, bare_pid.
start_bare_pingora() {
  bare_port=$(free_port)
  ./target/release/examples/bare_proxy --listen "127.0.0.1:$bare_port" --upstream "127.0.0.1:$origin_port" \
    --threads "$proxy_threads" >"$work/bare_proxy.log" 2>&1 &
  bare_pid=$!
  pids+=("$bare_pid")
  wait_for_http "http://127.0.0.1:$bare_port/" "bare pingora" "$work/bare_proxy.log"
}

# ------------------------------------------------------------------------------------------------- gatehouse
# Configuration pieces; keys follow config/gatehouse.toml (adjust here when it changes). The bench secrets and
# passwords exist for these loopback runs only.
bff_client_secret="bench-bff-secret-0123456789abcdefghijklmnopqrstuv"
m2m_client_secret="bench-m2m-secret-0123456789abcdefghijklmnopqrstuv"
m2m_basic_auth="Basic $(printf '%s' "bench-m2m:$m2m_client_secret" | base64 -w0)"
api_audience="http://localhost:8080/api"

# The [idp] section: token service on $1 (issuer http://localhost:$1), data in $2, the API, the gateway's client
# (its callback on each gateway port in $3, space-separated), a client_credentials client (bench-m2m) and the
# user alice (password, or PHC hash when $4 is given).
# gatehouse_idp_toml IDP_PORT DATA_DIR "GATEWAY_PORT..." [ALICE_PASSWORD_HASH]
gatehouse_idp_toml() {
  local alice_password='password = "alice-password"' port callbacks="" logouts=""
  [ -n "${4:-}" ] && alice_password="password_hash = \"$4\""
  for port in $3; do
    callbacks+="${callbacks:+, }\"http://localhost:$port/bff/callback\""
    logouts+="${logouts:+, }\"http://localhost:$port/\""
  done
  cat <<EOF
[log]
format = "pretty"
level = "warn"

[idp]
issuer = "http://localhost:$1"
listen = "127.0.0.1:$1"
data_dir = "$2"

[[idp.apis]]
audience = "$api_audience"
scopes = ["api"]

[[idp.clients]]
client_id = "gatehouse-bff"
auth_method = "client_secret_basic"
secret = "$bff_client_secret"
redirect_uris = [$callbacks]
post_logout_redirect_uris = [$logouts]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "profile", "email", "offline_access", "api"]

[[idp.clients]]
client_id = "bench-m2m"
auth_method = "client_secret_basic"
secret = "$m2m_client_secret"
grant_types = ["client_credentials"]
scopes = ["api"]

[[idp.users]]
username = "alice"
$alice_password
name = "Alice Liddell"
EOF
}

# The [bff] section: gateway on $1 (public origin http://localhost:$1) logging in at the token service whose
# issuer is $2, $proxy_threads threads, sessions in the embedded store (file $3), routes:
#   /plain/ → the origin, no token, no CSRF header (its own proxy cost);
#   /up/    → the origin, the user's DPoP-bound token with a fresh proof, CSRF header required;
#   /api/   → http://127.0.0.1:$4 (the example API, which verifies token and proof), when $4 is given.
# gatehouse_bff_toml GATEWAY_PORT ISSUER STORE_FILE [API_PORT]
gatehouse_bff_toml() {
  cat <<EOF

[bff]
enabled = true
listen = "127.0.0.1:$1"
public_origin = "http://localhost:$1"
threads = $proxy_threads
grace_period_seconds = 0
graceful_shutdown_timeout_seconds = 0

[bff.oidc]
issuer = "$2"
client_id = "gatehouse-bff"
client_secret = "$bff_client_secret"
scopes = ["openid", "profile", "email", "offline_access", "api"]
use_par = true

[bff.cookie]
name = "__Host-gatehouse"

[bff.session]
store = "sqlite"
store_file = "$3"

[[bff.routes]]
path = "/plain/"
upstreams = ["http://127.0.0.1:$origin_port"]
token = "none"
require_csrf = false

[[bff.routes]]
path = "/up/"
upstreams = ["http://127.0.0.1:$origin_port"]
token = "user"
EOF
  if [ -n "${4:-}" ]; then
    cat <<EOF

[[bff.routes]]
path = "/api/"
upstreams = ["http://127.0.0.1:$4"]
token = "user"
public_base = "http://localhost:$1"
EOF
  fi
}

# Runs `gatehouse serve` with CONFIG_FILE, logging to LOG; waits until URL answers. Sets started_pid.
# start_gatehouse_process CONFIG_FILE LOG URL NAME
start_gatehouse_process() {
  GATEHOUSE_LOG__LEVEL=warn ./target/release/gatehouse serve --config "$1" >"$2" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
  wait_for_http "$3" "$4" "$2"
}

# One browser login through a BFF (bench/login-driver.mjs: start URL → the token service's form → callback);
# prints the Cookie header value of the BFF's origin. login_once START_URL COOKIE_NAME [CHECK_URL]
login_once() {
  node bench/login-driver.mjs once --start "$1" --cookie "$2" --username alice --password alice-password \
    ${3:+--check "$3"}
}

# ---------------------------------------------------------------------------------------------- measurement
# The processes of a system under test: the given PIDs and all their descendants (nginx workers, node cluster).
process_tree() { # process_tree PID...
  local pid child
  for pid in "$@"; do
    echo "$pid"
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do process_tree "$child"; done
  done
}

cpu_ticks() { # cpu_ticks PID...: utime + stime of the processes (all their threads), in clock ticks
  local pid total=0 stat
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) } # after "(comm) "; fields from 3 (state) on
    total=$((total + $(awk '{ print $12 + $13 }' <<<"$stat")))
  done
  echo "$total"
}

peak_rss_kib() { # peak_rss_kib PID...: the sum of VmHWM (peak resident set since the last reset)
  local pid total=0 hwm
  for pid in "$@"; do
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${hwm:-0}))
  done
  echo "$total"
}

rss_kib() { # rss_kib PID...: the sum of VmRSS now
  local pid total=0 rss
  for pid in "$@"; do
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${rss:-0}))
  done
  echo "$total"
}

# measure_begin PID...: resets the processes' peak RSS (clear_refs 5, Linux ≥ 4.0) and notes their CPU time.
# measure_end REQUESTS: sets measured="CPU_S_PER_1000|PEAK_RSS_KIB" for the processes named at the beginning.
measured_pids=()
measure_begin() {
  # shellcheck disable=SC2207 # PIDs are plain numbers
  measured_pids=($(process_tree "$@"))
  local pid
  for pid in "${measured_pids[@]}"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
  measure_ticks=$(cpu_ticks "${measured_pids[@]}")
}
measure_end() {
  local ticks hz
  ticks=$(($(cpu_ticks "${measured_pids[@]}") - measure_ticks))
  hz=$(getconf CLK_TCK)
  measured=$(awk -v t="$ticks" -v hz="$hz" -v n="$1" 'BEGIN { printf "%.4f", (n > 0 ? t / hz / n * 1000 : 0) }')
  measured="$measured|$(peak_rss_kib "${measured_pids[@]}")"
}

# Field of a RESULT line (bench/*.lua and bench/login-driver.mjs print the same one).
result_field() { # result_field LINE NAME
  sed -E "s/.*[ ]$2=([0-9.]+).*/\\1/" <<<"$1"
}

# record_result WORKLOAD LABEL RESULT_LINE [MEASURED]: appends to `results`.
results=()
record_result() {
  local line="$3"
  results+=("$1|$2|$(result_field "$line" rps)|$(result_field "$line" p50_ms)|$(result_field "$line" p99_ms)|$(result_field "$line" non2xx)|$(result_field "$line" socket_errors)|${4:-|}")
  echo "  measured: $1 $2: $(result_field "$line" rps)/s (p50 $(result_field "$line" p50_ms) ms," \
    "failures $(($(result_field "$line" non2xx) + $(result_field "$line" socket_errors))))" >&2
}

# run_wrk WORKLOAD LABEL URL [wrk options, e.g. -H ...]: a warm-up of $warmup s, then $duration s measured, with
# $wrk_threads threads, $connections connections and the script $wrk_script (default bench/gateway.lua).
# Checks first that URL answers 200 to curl with the same -H options (unless wrk_check=false: the token
# endpoint's POST is checked by its caller). With `under_test` set (PIDs), also CPU per 1,000 requests and
# peak RSS of those processes and their descendants. wrk_warmup_env / wrk_run_env: NAME=VALUE for wrk's script.
wrk_script=bench/gateway.lua
wrk_threads=2
wrk_check=true
under_test=()
wrk_warmup_env=()
wrk_run_env=()
run_wrk() {
  local workload="$1" label="$2" url="$3"
  shift 3
  if $wrk_check; then
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")
    [ "$status" = 200 ] || echo "warning: $label answers $status at $url (expected 200)" >&2
  fi
  env "${wrk_warmup_env[@]}" wrk -t"$wrk_threads" -c"$connections" -d"${warmup}s" "$@" -s "$wrk_script" "$url" >/dev/null
  ((${#under_test[@]})) && measure_begin "${under_test[@]}"
  local line
  line=$(env "${wrk_run_env[@]}" wrk -t"$wrk_threads" -c"$connections" -d"${duration}s" "$@" -s "$wrk_script" "$url" |
    grep '^RESULT') || { echo "error: wrk gave no result for $label at $url" >&2; exit 1; }
  measured="|"
  ((${#under_test[@]})) && measure_end "$(result_field "$line" requests)"
  record_result "$workload" "$label" "$line" "$measured"
}

# ES256 DPoP proofs, one fresh jti each: make_proofs COUNT METHOD URL FILE (proto/examples/dpop_proofs.rs).
make_proofs() {
  ./target/release/examples/dpop_proofs "$1" "$2" "$3" >"$4"
}

# run_token_endpoint WORKLOAD LABEL TOKEN_URL [DPOP_HTU MAX_RPS]: client_credentials (`scope=api`, client
# bench-m2m with client_secret_basic, the same body for every system) with bench/token-endpoint.lua. With
# DPOP_HTU, every request carries its own DPoP proof for POST DPOP_HTU: MAX_RPS × the run's seconds × 1.5 proofs
# are generated before the warm-up and before the run (a proof is single use: one replayed shows as non-2xx).
# Checks first that one request gets an access token (token_type DPoP with a proof).
run_token_endpoint() {
  local workload="$1" label="$2" url="$3" htu="${4:-}" max_rps="${5:-0}"
  local check expected=Bearer proof=()
  if [ -n "$htu" ]; then
    make_proofs 1 POST "$htu" "$work/check-proof"
    proof=(-H "DPoP: $(cat "$work/check-proof")")
    expected=DPoP
  fi
  check=$(curl -s -H "Authorization: $m2m_basic_auth" "${proof[@]}" -d 'grant_type=client_credentials&scope=api' "$url")
  case "$check" in
    *'"access_token":"ey'*'"token_type":"'"$expected"'"'* | *'"token_type":"'"$expected"'"'*'"access_token":"ey'*) ;;
    *) echo "warning: $label: no $expected JWT access token from $url: $check" >&2 ;;
  esac
  export BASIC_AUTH="$m2m_basic_auth" THREADS="$wrk_threads"
  local saved_script="$wrk_script" saved_check="$wrk_check"
  wrk_script=bench/token-endpoint.lua
  wrk_check=false
  if [ -n "$htu" ]; then
    make_proofs "$(awk -v r="$max_rps" -v s="$warmup" 'BEGIN { printf "%d", r * s * 1.5 + 100 }')" POST "$htu" \
      "$work/proofs-warmup"
    make_proofs "$(awk -v r="$max_rps" -v s="$duration" 'BEGIN { printf "%d", r * s * 1.5 + 100 }')" POST "$htu" \
      "$work/proofs-run"
    wrk_warmup_env=("PROOFS=$work/proofs-warmup")
    wrk_run_env=("PROOFS=$work/proofs-run")
    run_wrk "$workload" "$label" "$url"
    rm -f "$work/proofs-warmup" "$work/proofs-run"
  else
    wrk_warmup_env=(PROOFS=)
    wrk_run_env=(PROOFS=)
    run_wrk "$workload" "$label" "$url"
  fi
  wrk_warmup_env=()
  wrk_run_env=()
  wrk_script="$saved_script"
  wrk_check="$saved_check"
}

# The median requests/s recorded so far for WORKLOAD|LABEL (0 when none). median_rps WORKLOAD LABEL
median_rps() {
  printf '%s\n' "${results[@]}" | awk -F'|' -v w="$1" -v l="$2" '$1 == w && $2 == l { print $3 }' | sort -n |
    awk '{ a[NR] = $1 } END { print NR ? a[int((NR + 1) / 2)] : 0 }'
}
