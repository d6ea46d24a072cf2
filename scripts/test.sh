#!/usr/bin/env bash
# Runs Gatehouse's whole test suite: installs missing tools, builds the binary, runs the Rust unit, component
# and system tests and doc tests, then the OpenID interop suite (tests/interop: the real `gatehouse` binary
# driven by openid-client, an OpenID-certified relying party library, under Node's built-in test runner), then
# the browser tests (tests/browser: the demo SPA behind the real binary in headless Chromium, via playwright-core;
# screenshots of each step in target/browser-artifacts/).
#
#   scripts/test.sh
#
# Exits non-zero on the first failing step and names it.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

step_number=0
current_step="start"
readonly total_steps=6

step() {
    step_number=$((step_number + 1))
    current_step="$*"
    printf '\n==> [%d/%d] %s\n' "$step_number" "$total_steps" "$*"
}

on_exit() {
    local status=$?
    if ((status != 0)); then
        printf '\n==> FAILED (exit %d) at step [%d/%d] %s\n' "$status" "$step_number" "$total_steps" "$current_step" >&2
    fi
}
trap on_exit EXIT

locked=()
if [[ -f Cargo.lock ]]; then
    locked=(--locked)
fi

step "tools (scripts/ensure-tools.sh)"
bash scripts/ensure-tools.sh

step "build: cargo build ${locked[*]} --bins"
cargo build "${locked[@]}" --bins

step "Rust tests: cargo test --workspace --all-targets"
cargo test "${locked[@]}" --workspace --all-targets

step "Rust doc tests: cargo test --workspace --doc"
cargo test "${locked[@]}" --workspace --doc

step "OpenID interop tests: node --test tests/interop/"
# The interop helpers start this binary (the one just built) on a free port with a fresh data directory.
export GATEHOUSE_BIN="${CARGO_TARGET_DIR:-$repo_root/target}/debug/gatehouse"
node --test tests/interop/

step "browser tests: node --test tests/browser/"
# The same binary, with the demo SPA, in Debian's headless Chromium; each step's screenshot is saved here.
export GATEHOUSE_BROWSER_ARTIFACTS="${CARGO_TARGET_DIR:-$repo_root/target}/browser-artifacts"
rm -rf "$GATEHOUSE_BROWSER_ARTIFACTS"
printf 'screenshots: %s\n' "$GATEHOUSE_BROWSER_ARTIFACTS"
node --test tests/browser/

printf '\n==> all %d steps passed\n' "$total_steps"
