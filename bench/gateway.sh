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
# started here are stopped on exit.
#
#   bench/gateway.sh [DURATION_SECONDS] [--proxies-only]    # default 10 s per run after a 2 s warm-up
#
# ROUNDS=N (default 3) measures every system N times, alternating, and prints medians (and each round's figure):
# on a shared 2-core VM the speed drifts by tens of per cent between runs a minute apart.
#
# --proxies-only skips (c) (no gatehouse build, no login). Needs wrk and nginx (Debian packages `wrk`, `nginx`:
# installed with apt-get when missing) and python3. Prints one table. PROXY_THREADS=N sets the pingora threads of
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
threads=2
proxy_threads="${PROXY_THREADS:-2}" # pingora threads of (b) and (c)
body='{"ok":true}'

# ---------------------------------------------------------------------------------------------------- tools
install_package() { # install_package COMMAND PACKAGE
  command -v "$1" >/dev/null && return
  echo "installing $2 (apt-get)"
  apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
}
install_package wrk wrk
install_package nginx nginx
nginx_bin=$(command -v nginx)

# One cargo invocation, so the packages share one feature resolution (separate builds rebuild dependencies).
if $proxies_only; then
  cargo build --release -p gatehouse-bff --example bare_proxy
else
  cargo build --release -p gatehouse -p gatehouse-example-api -p gatehouse-bff --bins --example bare_proxy
fi

# ------------------------------------------------------------------------------------------------ processes
work=$(mktemp -d)
chmod 755 "$work" # nginx workers may run as another user
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
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
# service. start_nginx NAME SERVER_BLOCK
start_nginx() {
  local dir="$work/nginx-$1"
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
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
  "$nginx_bin" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/logs/stdout.log" 2>&1 &
  pids+=($!)
}

# ------------------------------------------------------------------------------------------------- measure
results=()
run_wrk() { # run_wrk LABEL URL [wrk -H options...]: warm up, measure, record "label|rps|p50|p99|non2xx|errors"
  local label="$1" url="$2"
  shift 2
  local check
  check=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")
  [ "$check" = 200 ] || echo "warning: $label answers $check at $url (expected 200)" >&2
  wrk -t$threads -c$connections -d"${warmup}s" "$@" -s bench/gateway.lua "$url" >/dev/null
  local line
  line=$(wrk -t$threads -c$connections -d"${duration}s" "$@" -s bench/gateway.lua "$url" | grep '^RESULT')
  local rps p50 p99 non2xx errors
  rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$line")
  p50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")
  non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")
  errors=$(sed -E 's/.*socket_errors=([0-9]+).*/\1/' <<<"$line")
  results+=("$label|$rps|$p50|$p99|$non2xx|$errors")
  echo "  measured: $label: $rps req/s" >&2
}

# ------------------------------------------------------------------------------------------ the upstreams
# The tiny upstream: its own nginx (1 worker), a fixed 200 with an 11-byte JSON body for any path.
origin_port=$(free_port)
start_nginx origin "  server {
    listen 127.0.0.1:$origin_port;
    location / { default_type application/json; return 200 '$body'; }
  }"
wait_for_http "http://127.0.0.1:$origin_port/" "origin nginx" "$work/nginx-origin/logs/error.log"

# (a) nginx as a reverse proxy, pooled keep-alive connections to the upstream like pingora's.
nginx_port=$(free_port)
start_nginx proxy "  upstream origin { server 127.0.0.1:$origin_port; keepalive 128; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
wait_for_http "http://127.0.0.1:$nginx_port/" "nginx proxy" "$work/nginx-proxy/logs/error.log"

# (b) bare pingora.
bare_port=$(free_port)
./target/release/examples/bare_proxy --listen "127.0.0.1:$bare_port" --upstream "127.0.0.1:$origin_port" \
  --threads $proxy_threads >"$work/bare_proxy.log" 2>&1 &
pids+=($!)
wait_for_http "http://127.0.0.1:$bare_port/" "bare pingora" "$work/bare_proxy.log"

# -------------------------------------------------------------------------------------- (c) the gateway
# Starts `gatehouse serve` (token service + gateway) with a config written for this run:
#   - token service on $idp_port (issuer http://localhost:$idp_port), data in $work/idp, user alice;
#   - gateway on $gateway_port (public origin http://localhost:$gateway_port), $proxy_threads threads;
#   - route /api/   → the example API on $api_port, user token (DPoP), CSRF header required;
#   - route /plain/ → the tiny upstream on $origin_port, no token, no CSRF header;
#   - route /up/    → the tiny upstream on $origin_port, user token (DPoP), CSRF header required.
# Keys follow config/gatehouse.toml; adjust here when the [bff] section changes.
start_gatehouse() {
  mkdir -p "$work/idp"
  cat >"$work/gatehouse.toml" <<EOF
[log]
format = "pretty"
level = "warn"

[idp]
issuer = "http://localhost:$idp_port"
listen = "127.0.0.1:$idp_port"
data_dir = "$work/idp"

[[idp.apis]]
audience = "$api_audience"
scopes = ["api"]

[[idp.clients]]
client_id = "gatehouse-bff"
auth_method = "client_secret_basic"
secret = "bench-bff-secret-0123456789abcdefghijklmnopqrstuv"
redirect_uris = ["http://localhost:$gateway_port/bff/callback"]
post_logout_redirect_uris = ["http://localhost:$gateway_port/"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "profile", "email", "offline_access", "api"]

[[idp.users]]
username = "alice"
password = "alice-password"
name = "Alice Liddell"

[bff]
enabled = true
listen = "127.0.0.1:$gateway_port"
public_origin = "http://localhost:$gateway_port"
threads = $proxy_threads
grace_period_seconds = 0
graceful_shutdown_timeout_seconds = 0

[bff.oidc]
client_id = "gatehouse-bff"
client_secret = "bench-bff-secret-0123456789abcdefghijklmnopqrstuv"
scopes = ["openid", "profile", "email", "offline_access", "api"]
use_par = true

[bff.cookie]
name = "__Host-gatehouse"

[[bff.routes]]
path = "/api/"
upstreams = ["http://127.0.0.1:$api_port"]
token = "user"
public_base = "http://localhost:$gateway_port"

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
  GATEHOUSE_LOG__LEVEL=warn ./target/release/gatehouse serve --config "$work/gatehouse.toml" \
    >"$work/gatehouse.log" 2>&1 &
  pids+=($!)
  gatehouse_pid=$!
  wait_for_http "http://127.0.0.1:$idp_port/.well-known/openid-configuration" "token service" "$work/gatehouse.log"
  wait_for_http "http://127.0.0.1:$gateway_port/bff/user" "gateway" "$work/gatehouse.log"
}

# The example API: verifies DPoP-bound access tokens from the token service; its htu base is the gateway's origin.
start_example_api() {
  GATEHOUSE_ISSUER="http://localhost:$idp_port" API_AUDIENCE="$api_audience" API_LISTEN="127.0.0.1:$api_port" \
    API_PUBLIC_BASE="http://localhost:$gateway_port" ./target/release/example-api >"$work/example-api.log" 2>&1 &
  pids+=($!)
  wait_for_http "http://127.0.0.1:$api_port/api/whoami" "example API" "$work/example-api.log"
}

# Logs in as alice like a browser: /bff/login → the token service's login form → /bff/callback. curl keeps
# cookies in a jar and (since 7.79) stores and sends Secure / __Host- cookies over http to localhost.
# Prints the session cookie's value.
login_alice() {
  local jar="$work/cookies.txt" gateway="http://localhost:$gateway_port" location form
  location=$(curl -s -o /dev/null -w '%{redirect_url}' -b "$jar" -c "$jar" "$gateway/bff/login?returnUrl=/")
  [ -n "$location" ] || { echo "error: /bff/login did not redirect" >&2; exit 1; }
  form=$(curl -s -L -b "$jar" -c "$jar" "$location")
  # The form's hidden fields (HTML-escaped by the template), URL-encoded for the POST.
  local fields
  fields=$(python3 -c '
import html, re, sys, urllib.parse
page = sys.stdin.read()
fields = {name: html.unescape(value) for name, value in re.findall(r"name=\"(csrf|request)\" value=\"([^\"]*)\"", page)}
if set(fields) != {"csrf", "request"}:
    sys.exit("the login form was not found")
fields.update(username="alice", password="alice-password")
print(urllib.parse.urlencode(fields))' <<<"$form")
  location=$(curl -s -o /dev/null -w '%{redirect_url}' -b "$jar" -c "$jar" --data "$fields" \
    "http://localhost:$idp_port/login")
  case "$location" in
    "$gateway/bff/callback"*) ;;
    *) echo "error: the login did not return to the gateway's callback (got '$location')" >&2; exit 1 ;;
  esac
  curl -s -o /dev/null -b "$jar" -c "$jar" "$location"
  local cookie
  cookie=$(awk -F'\t' '$6 == "__Host-gatehouse" { print $7 }' "$jar")
  [ -n "$cookie" ] || { echo "error: no __Host-gatehouse cookie after the callback" >&2; exit 1; }
  printf '%s' "$cookie"
}

if ! $proxies_only; then
  idp_port=$(free_port)
  gateway_port=$(free_port)
  api_port=$(free_port)
  api_audience="http://localhost:8080/api"
  start_gatehouse
  start_example_api
  session_cookie=$(login_alice)
  whoami=$(curl -s -H "Cookie: __Host-gatehouse=$session_cookie" -H 'X-CSRF: 1' \
    "http://localhost:$gateway_port/api/whoami")
  echo "logged in; /api/whoami through the gateway: $whoami" >&2
fi

# ------------------------------------------------------------------------------------------------- runs
echo "machine: $(nproc) cores, $(uname -r); $(nginx -v 2>&1 | sed 's/.*: //'); wrk -t$threads -c$connections;" \
  "${warmup}s warm-up + ${duration}s per run; upstream body $body" >&2
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  run_wrk "upstream direct (nginx, 1 worker)" "http://127.0.0.1:$origin_port/plain/x"
  run_wrk "nginx proxy (1 worker)" "http://127.0.0.1:$nginx_port/plain/x"
  run_wrk "bare pingora ($proxy_threads threads)" "http://127.0.0.1:$bare_port/plain/x"
  if ! $proxies_only; then
    # Connect to 127.0.0.1 (the listener) but name the public origin, as a browser at http://localhost:PORT does.
    run_wrk "gatehouse /plain/ (no token)" "http://127.0.0.1:$gateway_port/plain/x" -H "Host: localhost:$gateway_port"
    if [ -n "${PERF_DATA:-}" ] && [ "$round" = 1 ]; then
      perf record ${PERF_ARGS:-} -o "$PERF_DATA" -p "$gatehouse_pid" -- sleep $((warmup + duration + 1)) >/dev/null 2>&1 &
      perf_pid=$!
    fi
    run_wrk "gatehouse /up/ (session+DPoP proof)" "http://127.0.0.1:$gateway_port/up/x" \
      -H "Host: localhost:$gateway_port" -H "Cookie: __Host-gatehouse=$session_cookie" -H 'X-CSRF: 1'
    if [ -n "${PERF_DATA:-}" ] && [ "$round" = 1 ]; then wait "$perf_pid" || true; fi
    run_wrk "gatehouse /api/whoami (+API verifies)" "http://127.0.0.1:$gateway_port/api/whoami" \
      -H "Host: localhost:$gateway_port" -H "Cookie: __Host-gatehouse=$session_cookie" -H 'X-CSRF: 1'
  fi
done

# ------------------------------------------------------------------------------------------------ table
# Medians over the rounds (this machine's speed drifts between runs; the systems alternate within a round).
cat >"$work/table.py" <<'PY'
import statistics, sys
rows = {}
for line in sys.stdin:
    label, rps, p50, p99, non2xx, errors = line.rstrip("\n").split("|")
    rows.setdefault(label, []).append((int(rps), float(p50), float(p99), int(non2xx) + int(errors)))
bare = next((statistics.median(r[0] for r in runs) for label, runs in rows.items() if label.startswith("bare pingora")), 0)
print()
print(f"{'system':38} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'of pingora':>10}  per round (req/s)     failures")
for label, runs in rows.items():
    rps = statistics.median(r[0] for r in runs)
    p50 = statistics.median(r[1] for r in runs)
    p99 = statistics.median(r[2] for r in runs)
    share = f"{100 * rps / bare:.0f}%" if bare else "-"
    failures = sum(r[3] for r in runs)
    each = "/".join(str(r[0]) for r in runs)
    print(f"{label:38} {rps:>8.0f} {p50:>7.2f} {p99:>7.2f} {share:>10}  {each:21} {failures or ''}")
PY
printf '%s\n' "${results[@]}" | python3 "$work/table.py"

# What one ES256 signature per request costs on this machine (the gateway signs a DPoP proof for every forwarded
# request; RFC 9449 §4.2 wants a fresh one): the ceiling it puts on the gateway relative to bare pingora, when
# the load generator, the upstream and the proxy share the cores.
if command -v openssl >/dev/null && ! $proxies_only; then
  signs=$(openssl speed -seconds 2 ecdsap256 2>/dev/null | awk '/nistp256/ { print $(NF-1) }')
  bare_rps=$(printf '%s\n' "${results[@]}" | awk -F'|' '/^bare pingora/ { print $2 }' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  if [ -n "$signs" ] && [ -n "$bare_rps" ]; then
    awk -v s="$signs" -v b="$bare_rps" -v c="$(nproc)" 'BEGIN {
      sign_us = 1e6 / s; per_request_us = 1e6 * c / b
      printf "\nES256 sign (openssl speed, one core): %.0f/s = %.1f us. Bare pingora uses %.1f us of CPU per request\n", s, sign_us, per_request_us
      printf "(all %d cores / its req/s, wrk and upstream included); one signature more per request caps any\n", c
      printf "DPoP-forwarding proxy here at %.0f%% of bare pingora, before any session or header work.\n", 100 * per_request_us / (per_request_us + sign_us)
    }'
  fi
fi
