#!/usr/bin/env bash
# Soak test with faults (not part of scripts/test.sh or CI): many logged-in sessions call the example API through
# the gateway for a while, and meanwhile
#   - access tokens live a few seconds, so every session refreshes every few seconds (refresh storms);
#   - the token service is killed with SIGKILL and restarted a few seconds later, several times;
#   - `gatehouse keys rotate` switches the token service to new signing keys while it runs;
#   - the gateway's cookie keys rotate: a new key is put in front of bff.cookie.keys_file (the previous one kept,
#     the one before retired) and the gateway gets SIGHUP;
#   - `gatehouse sessions revoke --user U` ends some users' sessions (back-channel logout to the gateway); their
#     next call is a 401 (expected) and they log in again.
# The token service, the gateway and the example API run as three `gatehouse serve` processes from one
# configuration file written here (free ports, a temporary data directory), switched apart by
# GATEHOUSE_*__ENABLED overrides. The driver (bench/soak, `gatehouse-soak`) prints a progress line every 10 s and
# a table at the end, and this script exits non-zero when a target is missed:
#   zero failed requests other than 503s while the token service is down, zero sessions lost across the
#   restarts, no memory growth after warm-up (gateway; the token service's last incarnation).
#
#   scripts/soak.sh [--minutes M] [--sessions N] [--access-ttl S] [--refresh-skew S] [--keep] [DRIVER OPTIONS…]
#
# Defaults: 3 minutes, 200 sessions, access tokens of 6 s refreshed 2 s before expiry. DRIVER OPTIONS go to the
# driver as they are (`cargo run -p gatehouse-soak -- --help`): --think-ms (mean pause between a session's calls,
# default 1000), --kills (3) and --down-seconds (5), --key-rotation-every (60), --cookie-rotation-every (45),
# --revoke-every (8), --warmup-seconds (60), --max-rss-growth-percent (10), --login-concurrency (4).
# The logs of the three processes and rss.csv (memory every 2 s) stay in the printed directory when a target is
# missed or with --keep. Release build; uses python3 to find free ports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

minutes=3
sessions=200
access_ttl=6
refresh_skew=2
keep=false
driver_options=()
while (($#)); do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --sessions) sessions="$2"; shift 2 ;;
    --access-ttl) access_ttl="$2"; shift 2 ;;
    --refresh-skew) refresh_skew="$2"; shift 2 ;;
    --keep) keep=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) driver_options+=("$1"); shift ;;
  esac
done
for number in "$minutes" "$sessions" "$access_ttl" "$refresh_skew"; do
  [[ "$number" =~ ^[0-9]+$ ]] || { echo "usage: scripts/soak.sh [--minutes M] [--sessions N] ... (whole numbers)" >&2; exit 2; }
done
((refresh_skew < access_ttl)) || { echo "--refresh-skew must be below --access-ttl" >&2; exit 2; }

# One cargo invocation for both binaries (one feature resolution).
cargo build --release -p gatehouse -p gatehouse-soak
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"

work=$(mktemp -d -t gatehouse-soak.XXXXXX)
mkdir -p "$work/data" "$work/logs"
status=1
cleanup() {
  # The driver stops what it started; after an interruption, end what it left behind: the pids it recorded,
  # if they still run with this run's configuration file.
  local pid_file pid
  for pid_file in "$work"/logs/*.pid; do
    [[ -f "$pid_file" ]] || continue
    pid=$(cat "$pid_file")
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$work/soak.toml"; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [[ $status == 0 ]] && ! $keep; then
    rm -rf "$work"
  else
    echo "soak: logs kept in $work/logs" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
idp_port=$(free_port)
gateway_port=$(free_port)
api_port=$(free_port)
secret="soak-bff-secret-$(head -c 24 /dev/urandom | basenc --base64url | tr -d =)"

# The first cookie key (the driver writes a fresh one before the gateway starts; admin commands read the file).
echo "c0:$(head -c 32 /dev/urandom | basenc --base64url | tr -d =)" >"$work/cookie.keys"

# Keys as documented in config/gatehouse.toml.
cat >"$work/soak.toml" <<EOF
[log]
format = "json"
level = "info"

[idp]
issuer = "http://localhost:$idp_port"
listen = "127.0.0.1:$idp_port"
data_dir = "data"

[idp.tokens]
access_token_ttl_seconds = $access_ttl

[idp.dpop]
# A short proof window keeps the replay caches (and so memory) at their steady size after the warm-up.
proof_max_age_seconds = 30
proof_future_skew_seconds = 10

[[idp.apis]]
audience = "http://localhost:$gateway_port/api"
scopes = ["api"]

[[idp.clients]]
client_id = "gatehouse-bff"
auth_method = "client_secret_basic"
secret = "$secret"
redirect_uris = ["http://localhost:$gateway_port/bff/callback"]
post_logout_redirect_uris = ["http://localhost:$gateway_port/"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "profile", "email", "offline_access", "api"]
backchannel_logout_uri = "http://localhost:$gateway_port/bff/backchannel"

[bff]
enabled = true
listen = "127.0.0.1:$gateway_port"
public_origin = "http://localhost:$gateway_port"
threads = 2
grace_period_seconds = 0
graceful_shutdown_timeout_seconds = 1

[bff.oidc]
client_id = "gatehouse-bff"
client_secret = "$secret"
scopes = ["openid", "profile", "email", "offline_access", "api"]
use_par = true

[bff.cookie]
keys_file = "cookie.keys"

[bff.session]
refresh_skew_seconds = $refresh_skew
store = "sqlite"

[[bff.routes]]
path = "/api/"
upstreams = ["http://127.0.0.1:$api_port"]
token = "user"
public_base = "http://localhost:$gateway_port"

[demo_api]
enabled = true
listen = "127.0.0.1:$api_port"
audience = "http://localhost:$gateway_port/api"
public_base = "http://localhost:$gateway_port"
EOF

# The users, with the admin command (the first alone: it creates the store).
echo "soak: creating $sessions users"
add_user() {
  printf '%s\n' "$1-password" | "$bin/gatehouse" users add "$1" --config "$work/soak.toml" >/dev/null
}
export -f add_user
export bin work
add_user soak-0000
if ((sessions > 1)); then
  seq 1 $((sessions - 1)) | xargs -I{} printf 'soak-%04d\n' {} | xargs -P 2 -I{} bash -c 'add_user "$1"' _ {}
fi

set +e
"$bin/gatehouse-soak" \
  --gatehouse "$bin/gatehouse" \
  --config "$work/soak.toml" \
  --cookie-keys-file "$work/cookie.keys" \
  --token-service-db "$work/data/gatehouse.db" \
  --gateway "http://localhost:$gateway_port" \
  --issuer "http://localhost:$idp_port" \
  --api "http://127.0.0.1:$api_port" \
  --logs "$work/logs" \
  --sessions "$sessions" \
  --seconds $((minutes * 60)) \
  --user-prefix soak- \
  "${driver_options[@]}"
status=$?
set -e
exit $status
