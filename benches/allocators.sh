#!/usr/bin/env bash
# The allocator comparison of issue 8: the gateway built with mimalloc (the default) and with glibc's malloc
# (`--features system-allocator`), both in front of the same mock upstream beside the plain Pingora pass-through, in
# alternating wrk rounds of one run, so the ratios are fair. Memory store, limits off, access log on.
#
# Usage: ./benches/allocators.sh [SECONDS_PER_ROUND] [CONNECTIONS]     (defaults: 8 s, 32 connections)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

DURATION=${1:-8}
CONNECTIONS=${2:-32}
ROUNDS=3
TARGET=${CARGO_TARGET_DIR:-target}

ensure_build_deps
command -v wrk >/dev/null 2>&1 || { echo "error: wrk is missing: run: sudo apt-get install -y wrk" >&2; exit 1; }

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

cargo build --release --locked --bin ib-oauth-gateway --example passthrough --features system-allocator
cp "$TARGET/release/ib-oauth-gateway" "$TMP/gateway-glibc"
cp "$TARGET/release/examples/passthrough" "$TMP/passthrough"
cargo build --release --locked --bin ib-oauth-gateway
cp "$TARGET/release/ib-oauth-gateway" "$TMP/gateway-mimalloc"

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "error: nothing listens on port $1" >&2
    exit 1
}

MOCK=$(free_port)
PT=$(free_port)
"$TMP/gateway-glibc" mock-platform --listen "127.0.0.1:$MOCK" >/dev/null &
PIDS+=($!)
"$TMP/passthrough" "127.0.0.1:$PT" "127.0.0.1:$MOCK" 2>"$TMP/passthrough.log" &
PIDS+=($!)
SECRET="load-test-secret-0123456789abcdef"

# start_gateway NAME: a gateway running the binary gateway-NAME; its port in $PORT
start_gateway() {
    local name=$1 port admin
    port=$(free_port)
    admin=$(free_port)
    mkdir -p "$TMP/$name"
    cat >"$TMP/$name/gateway.yaml" <<YAML
server:
  listen: ['127.0.0.1:$port']
  admin_listen: '127.0.0.1:$admin'
  public_url: http://127.0.0.1:$port
  threads: 2
  upgrade_sock: $TMP/$name/upgrade.sock
  pid_file: $TMP/$name/gateway.pid
platforms:
  allow_insecure_loopback: true
oauth:
  clients:
    - client_id: load-test
      client_secret: $SECRET
      redirect_uris: ['https://load.example/cb']
      allow_headless_login: true
rate_limits:
  per_session_per_minute: 0
  per_ip_per_minute: 0
logging:
  level: warn
YAML
    "$TMP/gateway-$name" --config "$TMP/$name/gateway.yaml" >/dev/null 2>"$TMP/$name/gateway.log" &
    PIDS+=($!)
    PORT=$port
}

json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
# login PORT NAME: a session through the real flow; its access token and IB sid in $TMP/NAME/{access,sid}
login() {
    local gw=$1 name=$2 start poll ib_token redirect code tokens
    start=$(curl -sf -H 'Accept: application/json' \
        "http://127.0.0.1:$gw/authorize?response_type=code&client_id=load-test&redirect_uri=https%3A%2F%2Fload.example%2Fcb&state=s&platform_url=http%3A%2F%2F127.0.0.1%3A$MOCK")
    poll=$(json_field token <<<"$start")
    ib_token=$(json_field loginUrl <<<"$start" | sed 's/.*token=//')
    curl -sf -X POST "http://127.0.0.1:$MOCK/_mock/complete?token=$ib_token" >/dev/null
    redirect=$(curl -sf "http://127.0.0.1:$gw/authorize/poll?token=$poll" | json_field redirect_url)
    code=$(sed -n 's/.*[?&]code=\([^&]*\).*/\1/p' <<<"$redirect")
    tokens=$(curl -sf -u "load-test:$SECRET" "http://127.0.0.1:$gw/token" \
        -d grant_type=authorization_code -d "code=$code" -d redirect_uri=https://load.example/cb)
    json_field access_token <<<"$tokens" >"$TMP/$name/access"
    json_field sid <<<"$tokens" >"$TMP/$name/sid"
}

start_gateway glibc
GLIBC=$PORT
start_gateway mimalloc
MIMALLOC=$PORT
wait_port "$MOCK"; wait_port "$PT"; wait_port "$GLIBC"; wait_port "$MIMALLOC"
login "$GLIBC" glibc
login "$MIMALLOC" mimalloc
GLIBC_TOKEN=$(cat "$TMP/glibc/access")
MIMALLOC_TOKEN=$(cat "$TMP/mimalloc/access")
SID=$(cat "$TMP/glibc/sid")
[[ -n $GLIBC_TOKEN && -n $MIMALLOC_TOKEN && -n $SID ]] || { echo "error: could not obtain tokens" >&2; exit 1; }

run() { # name url header -> requests/s
    local out rps p99
    out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$3" "$2")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    printf '%-18s %10s req/s   p99 %8s\n' "$1" "$rps" "$p99" >&2
    echo "$rps"
}

echo "== $ROUNDS rounds of ${DURATION}s, $CONNECTIONS connections, alternating (machine: $(nproc) cores)" >&2
PT_T=0; GL_T=0; MI_T=0
for round in $(seq 1 "$ROUNDS"); do
    echo "-- round $round" >&2
    pt=$(run passthrough "http://127.0.0.1:$PT/api/3.0.0/mockclient/resource" "sid: $SID")
    gl=$(run gateway-glibc "http://127.0.0.1:$GLIBC/api/v3/resource" "Authorization: Bearer $GLIBC_TOKEN")
    mi=$(run gateway-mimalloc "http://127.0.0.1:$MIMALLOC/api/v3/resource" "Authorization: Bearer $MIMALLOC_TOKEN")
    PT_T=$(awk -v a="$PT_T" -v b="$pt" 'BEGIN {print a + b}')
    GL_T=$(awk -v a="$GL_T" -v b="$gl" 'BEGIN {print a + b}')
    MI_T=$(awk -v a="$MI_T" -v b="$mi" 'BEGIN {print a + b}')
done
for name in glibc mimalloc; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$(pgrep -f "gateway-$name --config" | head -1)/status" 2>/dev/null || echo "?")
    echo "RSS gateway-$name: ${rss} kB" >&2
done
awk -v p="$PT_T" -v g="$GL_T" -v m="$MI_T" -v n="$ROUNDS" 'BEGIN {
    printf "\nmean req/s: pass-through %.0f, gateway glibc %.0f (%.2f), gateway mimalloc %.0f (%.2f); mimalloc/glibc = %.2f\n",
        p / n, g / n, g / p, m / n, m / p, m / g
}'
