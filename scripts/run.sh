#!/usr/bin/env bash
# The project's run command: build the release binary and run the gateway.
# Usage: ./scripts/run.sh [CONFIG [GATEWAY_ARG...]]   (CONFIG defaults to conf/gateway.yaml)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
config=conf/gateway.yaml
if (($#)); then
    config=$1
    shift
    # A relative CONFIG is relative to where the command was typed.
    [[ $config == /* ]] || config="$PWD/$config"
fi
cd "$root"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_build_deps
cargo build --release --locked
exec "${CARGO_TARGET_DIR:-target}/release/ib-oauth-gateway" --config "$config" "$@"
