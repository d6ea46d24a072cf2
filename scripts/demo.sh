#!/usr/bin/env bash
# Runs the Gatehouse demo: installs missing build tools, then builds and starts `gatehouse serve` in release
# mode with the demo configuration (config/gatehouse.toml: users alice and bob, clients gatehouse-bff and
# demo-m2m). Stop it with Ctrl-C.
#
#   scripts/demo.sh                 # extra arguments go to `gatehouse serve`
#   GATEHOUSE_IDP__LISTEN=127.0.0.1:9100 scripts/demo.sh    # any config key can be overridden this way
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

bash scripts/ensure-tools.sh --no-npm

locked=()
if [[ -f Cargo.lock ]]; then
    locked=(--locked)
fi

exec cargo run "${locked[@]}" --release --bin gatehouse -- serve --config config/gatehouse.toml "$@"
