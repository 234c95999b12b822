#!/usr/bin/env bash
# The demo: build the release binary and start the mock IntelligenceBank platform (127.0.0.1:8181) with a
# development gateway (conf/dev.yaml: 127.0.0.1:8180, admin 127.0.0.1:9190), then print the URL to open.
# Its ports differ from ./scripts/run.sh's (8080, 9090): both can run at once.
# Usage: ./scripts/demo.sh [DEMO_ARG...]   e.g. ./scripts/demo.sh --mock-listen 127.0.0.1:8282
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_build_deps
cargo build --release --locked
exec "${CARGO_TARGET_DIR:-target}/release/ib-oauth-gateway" demo "$@"
