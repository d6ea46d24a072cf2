#!/usr/bin/env bash
# Installs what Gatehouse's build and tests need on a fresh Debian machine that already has Rust, and only what
# is missing; says what it installs. Safe to run again and again.
#
#   scripts/ensure-tools.sh            # cmake + C compiler, Node.js >= 20 + npm, tests/interop's npm packages,
#                                      # Chromium (/usr/bin/chromium) + tests/browser's npm packages
#   scripts/ensure-tools.sh --no-npm   # the same without Node.js, npm packages and Chromium (for the demo)
#
# With GATEHOUSE_NEED_SERVICES=1 it also makes sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379)
# are installed and running.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly repo_root
readonly min_node_major=20

want_npm=1

main() {
    for arg in "$@"; do
        case "$arg" in
            --no-npm) want_npm=0 ;;
            -h | --help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown argument: $arg (try --help)" ;;
        esac
    done

    ensure_rust
    ensure_build_tools
    if [[ $want_npm == 1 ]]; then
        ensure_node
        ensure_interop_packages
        ensure_chromium
        ensure_browser_packages
    fi
    if [[ ${GATEHOUSE_NEED_SERVICES:-0} == 1 ]]; then
        ensure_services
    fi
    say "ready: $(summary)"
}

summary() {
    local parts=("$(cargo --version)" "$(cmake --version | head -n 1)")
    if [[ $want_npm == 1 ]]; then
        parts+=("node $(node --version)" "npm $(npm --version 2>/dev/null)")
    fi
    local IFS=','
    printf '%s' "${parts[*]}" | sed 's/,/, /g'
}

ensure_rust() {
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) first"
}

# pingora's build (BoringSSL/zstd/…) needs cmake and a C compiler.
ensure_build_tools() {
    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    if ! command -v cc >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1; then
        missing+=(build-essential)
    fi
    if ((${#missing[@]})); then
        apt_install "build tools" "${missing[@]}"
    fi
}

ensure_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        apt_install "Node.js and npm (for the openid-client interop tests)" nodejs npm
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if ((major < min_node_major)); then
        die "Node.js $(node --version) is too old: the interop tests need Node.js >= ${min_node_major}" \
            "(Debian's package is older on this release; install a newer nodejs, e.g. from NodeSource)"
    fi
}

# npm ci when a lock file exists (exact versions), else npm install; skipped when node_modules is newer than
# package.json and the lock file (npm writes node_modules/.package-lock.json on every install).
ensure_interop_packages() {
    ensure_npm_packages "$repo_root/tests/interop" "the interop tests'"
}

# The browser tests (tests/browser) drive Debian's Chromium with playwright-core, which downloads no browser.
ensure_chromium() {
    [[ -x /usr/bin/chromium ]] && return 0
    apt_install "Chromium (for the browser tests in tests/browser)" chromium
}

ensure_browser_packages() {
    ensure_npm_packages "$repo_root/tests/browser" "the browser tests'"
}

# ensure_npm_packages DIR WHOSE : npm ci (or npm install without a lock file) in DIR when its node_modules is
# missing or older than package.json / package-lock.json.
ensure_npm_packages() {
    local dir="$1" whose="$2"
    [[ -f $dir/package.json ]] || return 0
    local stamp="$dir/node_modules/.package-lock.json"
    if [[ -f $stamp && ! $dir/package.json -nt $stamp && ! ( -f $dir/package-lock.json && $dir/package-lock.json -nt $stamp ) ]]; then
        return 0
    fi
    if [[ -f $dir/package-lock.json ]]; then
        say "installing ${whose} npm packages (npm ci in ${dir#"$repo_root"/})"
        (cd "$dir" && npm ci --no-audit --no-fund)
    else
        say "installing ${whose} npm packages (npm install in ${dir#"$repo_root"/})"
        (cd "$dir" && npm install --no-audit --no-fund)
    fi
}

# PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379: started when installed but down, installed when
# absent. Only with GATEHOUSE_NEED_SERVICES=1.
ensure_services() {
    ensure_postgres
    ensure_redis
}

ensure_postgres() {
    if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
        return 0
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z $(ls /etc/postgresql 2>/dev/null) ]]; then
        apt_install "PostgreSQL" postgresql
    fi
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        local version
        # shellcheck disable=SC2012 # the entries are plain version numbers (15, 16…)
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        say "starting PostgreSQL ${version} (cluster main)"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi
    wait_until "PostgreSQL on 127.0.0.1:5432" pg_isready -q -h 127.0.0.1 -p 5432
}

ensure_redis() {
    if command -v redis-cli >/dev/null 2>&1 && redis_up; then
        return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install "Redis" redis-server
    fi
    if ! redis_up; then
        say "starting Redis on 127.0.0.1:6379 (nothing kept on disk)"
        as_root mkdir -p /var/lib/redis /var/log/redis
        as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log
    fi
    wait_until "Redis on 127.0.0.1:6379" redis_up
}

redis_up() {
    [[ $(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null) == PONG ]]
}

# apt_install WHY PACKAGE... : apt-get update once, then install, as root or through sudo.
apt_updated=0
apt_install() {
    local why="$1"
    shift
    command -v apt-get >/dev/null 2>&1 || die "$why missing (${*}) and apt-get is not available: install them by hand"
    say "installing ${why}: ${*} (apt-get)"
    if [[ $apt_updated == 0 ]]; then
        as_root apt-get -qq update
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $* (not root and no sudo)"
    fi
}

wait_until() {
    local what="$1"
    shift
    for _ in $(seq 1 30); do
        if "$@"; then
            say "$what is up"
            return 0
        fi
        sleep 1
    done
    die "$what did not come up within 30 s"
}

say() { printf 'ensure-tools: %s\n' "$*" >&2; }
die() {
    printf 'ensure-tools: error: %s\n' "$*" >&2
    exit 1
}

main "$@"
