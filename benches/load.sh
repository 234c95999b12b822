#!/usr/bin/env bash
# Whole-gateway load test: ib-oauth-gateway (bearer check, session look-up, host binding, header rewrite)
# against a plain Pingora pass-through built from the same tree (examples/passthrough.rs), both in front of
# the same mock IntelligenceBank upstream, measured with wrk in one run, alternating, so the ratio is fair.
#
# Usage: ./benches/load.sh [SECONDS_PER_ROUND] [CONNECTIONS]     (defaults: 10 s, 32 connections)
# Needs: the Rust toolchain; installs cmake (build) and wrk (load generator) with apt-get when root.
# Everything listens on 127.0.0.1 only and stops when the script ends.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

DURATION=${1:-10}
CONNECTIONS=${2:-32}
ROUNDS=3

ensure_build_deps
if ! command -v wrk >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    else
        echo "error: wrk is missing: run: sudo apt-get install -y wrk" >&2
        exit 1
    fi
fi

cargo build --release --locked --bin ib-oauth-gateway --example passthrough
BIN=target/release/ib-oauth-gateway
PASSTHROUGH=target/release/examples/passthrough

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

MOCK=$(free_port)
GW=$(free_port)
ADMIN=$(free_port)
PT=$(free_port)

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "error: nothing listens on port $1" >&2
    exit 1
}

"$BIN" mock-platform --listen "127.0.0.1:$MOCK" >/dev/null &
PIDS+=($!)
SECRET="load-test-secret-0123456789abcdef"
cat >"$TMP/gateway.yaml" <<YAML
server:
  listen: ['127.0.0.1:$GW']
  admin_listen: '127.0.0.1:$ADMIN'
  public_url: http://127.0.0.1:$GW
  threads: 2
  upgrade_sock: $TMP/upgrade.sock
  pid_file: $TMP/gateway.pid
platforms:
  allow_insecure_loopback: true
oauth:
  clients:
    - client_id: load-test
      client_secret: $SECRET
      redirect_uris: ['https://load.example/cb']
      # The script starts its login without a browser (the sign-in page's binding needs one).
      allow_headless_login: true
rate_limits:
  per_session_per_minute: 0
  per_ip_per_minute: 0
logging:
  level: warn
YAML
"$BIN" --config "$TMP/gateway.yaml" 2>"$TMP/gateway.log" &
PIDS+=($!)
"$PASSTHROUGH" "127.0.0.1:$PT" "127.0.0.1:$MOCK" 2>"$TMP/passthrough.log" &
PIDS+=($!)
wait_port "$MOCK"
wait_port "$GW"
wait_port "$PT"

# A session, through the real flow (a confidential client, so no PKCE arithmetic in shell).
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
START=$(curl -sf -H 'Accept: application/json' \
    "http://127.0.0.1:$GW/authorize?response_type=code&client_id=load-test&redirect_uri=https%3A%2F%2Fload.example%2Fcb&state=s&platform_url=http%3A%2F%2F127.0.0.1%3A$MOCK")
POLL=$(json_field token <<<"$START")
IB_TOKEN=$(json_field loginUrl <<<"$START" | sed 's/.*token=//')
curl -sf -X POST "http://127.0.0.1:$MOCK/_mock/complete?token=$IB_TOKEN" >/dev/null
REDIRECT=$(curl -sf "http://127.0.0.1:$GW/authorize/poll?token=$POLL" | json_field redirect_url)
CODE=$(sed -n 's/.*[?&]code=\([^&]*\).*/\1/p' <<<"$REDIRECT")
TOKENS=$(curl -sf -u "load-test:$SECRET" "http://127.0.0.1:$GW/token" \
    -d grant_type=authorization_code -d "code=$CODE" -d redirect_uri=https://load.example/cb)
ACCESS=$(json_field access_token <<<"$TOKENS")
SID=$(json_field sid <<<"$TOKENS")
[[ -n $ACCESS && -n $SID ]] || { echo "error: could not obtain a token" >&2; exit 1; }
curl -sf -H "Authorization: Bearer $ACCESS" "http://127.0.0.1:$GW/api/v3/resource" >/dev/null

run() { # name url header -> requests/s
    local out
    out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$3" "$2")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    printf '%-12s %10s req/s   p50 %8s   p99 %8s\n' "$1" "$rps" "$p50" "$p99" >&2
    echo "$rps"
}

echo "== $ROUNDS rounds of ${DURATION}s, $CONNECTIONS connections, alternating (machine: $(nproc) cores)" >&2
GW_TOTAL=0
PT_TOTAL=0
for round in $(seq 1 "$ROUNDS"); do
    echo "-- round $round" >&2
    pt=$(run passthrough "http://127.0.0.1:$PT/api/3.0.0/mockclient/resource" "sid: $SID")
    gw=$(run gateway "http://127.0.0.1:$GW/api/v3/resource" "Authorization: Bearer $ACCESS")
    PT_TOTAL=$(awk -v a="$PT_TOTAL" -v b="$pt" 'BEGIN {print a + b}')
    GW_TOTAL=$(awk -v a="$GW_TOTAL" -v b="$gw" 'BEGIN {print a + b}')
done
awk -v g="$GW_TOTAL" -v p="$PT_TOTAL" -v n="$ROUNDS" 'BEGIN {
    printf "\nmean: gateway %.0f req/s, pass-through %.0f req/s, gateway/pass-through = %.2f\n", g / n, p / n, g / p
}'
