#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run):
#   rustfmt check, clippy -D warnings, the production build (no mock platform in it), then
#   `cargo test --all-targets` against a
#   private Redis (one standalone server + a 3-master cluster) started on free
#   ports and stopped on exit.
#
# Usage: ./scripts/test.sh [CARGO_TEST_ARG...]   e.g. ./scripts/test.sh redis_cluster::
# Environment:
#   IBGW_SKIP_LINT=1   skip fmt/clippy (quick local iterations; CI never sets it)
# Exported to the tests:
#   IBGW_TEST_REDIS_URL            redis://127.0.0.1:PORT
#   IBGW_TEST_REDIS_CLUSTER_URLS   redis://127.0.0.1:P1,redis://127.0.0.1:P2,redis://127.0.0.1:P3
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

SKIP_LINT=${IBGW_SKIP_LINT:-0}
TMP_DIR=""
SUMMARY=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $TMP_DIR ]]; then
        redis_stop_all "$TMP_DIR"
        rm -rf "$TMP_DIR"
    fi
    if ((${#SUMMARY[@]})); then
        printf '==> summary\n'
        printf '    %s\n' "${SUMMARY[@]}"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# phase NAME CMD...: run CMD, print and record how long it took and how it ended.
phase() {
    local name=$1 start=$SECONDS rc=0 result
    shift
    printf '==> %s\n' "$name"
    "$@" || rc=$?
    if ((rc == 0)); then result=ok; else result="FAILED (exit $rc)"; fi
    SUMMARY+=("$(printf '%-8s %-18s %4ss' "$name" "$result" "$((SECONDS - start))")")
    printf '==> %s: %s in %ss\n' "$name" "$result" "$((SECONDS - start))"
    return "$rc"
}

check_tools() {
    ensure_build_deps
    ensure_redis
    ensure_promtool
    ensure_systemd_analyze
    ensure_authlib
    ensure_walkthrough_tools
    if [[ $SKIP_LINT != 1 ]]; then ensure_lint_tools; fi
}

start_redis() {
    local url urls
    url=$(redis_start_standalone "$TMP_DIR/standalone") || return 1
    urls=$(redis_start_cluster "$TMP_DIR/cluster") || return 1
    export IBGW_TEST_REDIS_URL="$url"
    export IBGW_TEST_REDIS_CLUSTER_URLS="$urls"
    printf 'IBGW_TEST_REDIS_URL=%s\nIBGW_TEST_REDIS_CLUSTER_URLS=%s\n' "$url" "$urls"
}

phase tools check_tools || exit $?
# tests/deploy_files.rs and tests/deploy_systemd.rs fail rather than skip when promtool or systemd-analyze is
# missing.
export IBGW_REQUIRE_PROMTOOL=1 IBGW_REQUIRE_SYSTEMD_ANALYZE=1
TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ibgw-test.XXXXXX")
phase redis start_redis || exit $?
if [[ $SKIP_LINT == 1 ]]; then
    printf '==> IBGW_SKIP_LINT=1: skipping fmt and clippy\n'
else
    phase fmt cargo fmt --all -- --check || exit $?
    phase clippy cargo clippy --all-targets --locked -- -D warnings || exit $?
fi
# The production build (the Docker image, the systemd unit) leaves the mock platform out: no mock code in the
# binary, no mock-platform or demo command.
production_build() {
    cargo build --locked --no-default-features
    local bin="${CARGO_TARGET_DIR:-target}/debug/ib-oauth-gateway"
    if nm -C "$bin" | grep -q 'ib_oauth_gateway::mock::'; then
        printf 'error: the --no-default-features build contains mock code\n' >&2
        return 1
    fi
    if "$bin" mock-platform --help >/dev/null 2>&1; then
        printf 'error: the --no-default-features build still has the mock-platform command\n' >&2
        return 1
    fi
    printf 'production build: no mock code, no mock-platform command\n'
}
phase prodbuild production_build || exit $?
phase test cargo test --locked --all-targets "$@" || exit $?
