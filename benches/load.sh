#!/usr/bin/env bash
# Whole-gateway load test (issue 8, "Benchmark"): ib-oauth-gateway next to two references, nginx `proxy_pass`
# with upstream keepalive and a plain Pingora pass-through built from the same tree (examples/passthrough.rs),
# all in front of the same upstream (the mock IntelligenceBank platform, `ib-oauth-gateway mock-platform`),
# measured with wrk in one run, in alternating rounds, so the ratios are fair. Scenarios:
#   (a) memory store;
#   (b) Redis store (a private redis-server): rate limits exact in Redis, approximate (when built), local with
#       the session cache, and local without the session cache (a Redis round trip per request);
#   (c) N live sessions (default 100,000) written by examples/session_loader.rs, every one requested once in a
#       warm-up (benches/random_token.lua, in order), then requests spread at random (the same script) in steady-state
#       rounds of IBGW_BENCH_STEADY_SECONDS (default 30 s), each gateway next to its 1-session control through
#       the same script: on Redis (each limit mode) and on a memory-store gateway holding them (the loader serves
#       its own store, `--serve`); gateway RSS with them; the memory store's cost per session;
#   (d) refresh grants per second on Redis (examples/refresh_load.rs: concurrent refresh chains);
#   (e) a 1 GiB body streamed down and up through the gateway, its RSS before and at peak;
#   (f) Redis a network hop away: gateways whose Redis is behind examples/delay_relay.rs (250 µs each way, so
#       0.5 ms more per round trip; no tc netem here), 1 session and N sessions, approximate and exact limits,
#       against the same rows on loopback Redis;
#   (g) HTTP/2 from clients: the memory-store gateway's TLS listener under h2load (Debian's nghttp2-client),
#       h2 with 8 streams on each of 4 connections against HTTP/1.1 on 32 connections, both over TLS.
# Writes the Markdown table to benches/results/latest.md (and prints it).
#
# Usage: ./benches/load.sh [SECONDS_PER_ROUND] [CONNECTIONS]     (defaults: 5 s, 32 connections)
# Environment: IBGW_BENCH_THREADS (server.threads of the gateway, the pass-through's threads and nginx's
#   worker_processes; default 2), IBGW_BENCH_SESSIONS (scenario c; default 100000), IBGW_BENCH_ROUNDS
#   (default 3), IBGW_BENCH_STEADY_SECONDS (each round of a (c)/(f) N-session row and its control; default 30),
#   IBGW_BENCH_RELAY_US (scenario f's delay each way; default 250), IBGW_BENCH_CHAINS (scenario d; default 32),
#   IBGW_BENCH_RESULTS (output file),
#   IBGW_BENCH_PROFILE=1 (after the rounds, one more (a) run and one more (c) run on Redis with approximate limits
#   under `perf record -g` on the gateway, not counted; the profiles' top entries go into the report; installs
#   linux-perf).
# Needs: the Rust toolchain; installs cmake & co. (build), wrk, nginx, nghttp2-client (h2load), openssl and
# redis-server with apt-get when root,
# else names the command to run. Everything listens on 127.0.0.1 only and stops when the script ends.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

DURATION=${1:-5}
CONNECTIONS=${2:-32}
THREADS=${IBGW_BENCH_THREADS:-2}
# As deployed (deploy/): mimalloc commits its arenas lazily (idle RSS about 20 MiB lower, same throughput).
export MIMALLOC_ARENA_EAGER_COMMIT=${MIMALLOC_ARENA_EAGER_COMMIT:-0}
SESSIONS=${IBGW_BENCH_SESSIONS:-100000}
ROUNDS=${IBGW_BENCH_ROUNDS:-3}
STEADY=${IBGW_BENCH_STEADY_SECONDS:-30}
RELAY_US=${IBGW_BENCH_RELAY_US:-250}
CHAINS=${IBGW_BENCH_CHAINS:-32}
RESULTS=${IBGW_BENCH_RESULTS:-benches/results/latest.md}
COMMAND="./benches/load.sh $DURATION $CONNECTIONS (threads $THREADS, sessions $SESSIONS, rounds $ROUNDS, steady rounds ${STEADY}s, relay ${RELAY_US}µs, refresh chains $CHAINS)"
GIB=1073741824
STARTED_AT=$SECONDS

# nginx lives in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"
ensure_build_deps
ensure_redis
_ibgw_require "wrk" wrk
_ibgw_require "nginx" nginx
_ibgw_require "nghttp2-client" h2load
_ibgw_require "openssl" openssl
PROFILE=${IBGW_BENCH_PROFILE:-0}
if [[ $PROFILE == 1 ]]; then _ibgw_require "linux-perf" perf; fi

# The allocator row of (a): the same gateway with glibc's malloc instead of mimalloc (feature system-allocator),
# built first and copied aside (cargo keeps both builds, so switching back is only a copy). The pass-through is
# built both ways too: the primary baseline has the gateway's allocator (mimalloc), the glibc pass-through is the
# baseline of the glibc row.
cargo build --release --locked --bin ib-oauth-gateway --example passthrough --features system-allocator
cp target/release/ib-oauth-gateway target/release/ib-oauth-gateway-glibc
cp target/release/examples/passthrough target/release/examples/passthrough-glibc
cargo build --release --locked --bin ib-oauth-gateway \
    --example passthrough --example session_loader --example refresh_load --example delay_relay
BIN=target/release/ib-oauth-gateway
BIN_GLIBC=target/release/ib-oauth-gateway-glibc
PASSTHROUGH=target/release/examples/passthrough
PASSTHROUGH_GLIBC=target/release/examples/passthrough-glibc
LOADER=target/release/examples/session_loader
REFRESH_LOAD=target/release/examples/refresh_load
RELAY=target/release/examples/delay_relay
BUILT_AT=$SECONDS

# Tokens, keys and the client secret stay in this directory (mode 0700), never on the terminal.
umask 077
TMP=$(mktemp -d)
PIDS=()
PINGORA_PIDS=()
cleanup() {
    # Pingora servers stop at once on SIGINT (SIGTERM would wait out a graceful shutdown of minutes); the
    # others on SIGTERM. Whatever is still there after 10 s is killed.
    local pid _
    for pid in ${PINGORA_PIDS[@]+"${PINGORA_PIDS[@]}"}; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 100); do
        pid=""
        for pid in ${PINGORA_PIDS[@]+"${PINGORA_PIDS[@]}"} ${PIDS[@]+"${PIDS[@]}"}; do
            _ibgw_pid_alive "$pid" && break
            pid=""
        done
        [[ -z $pid ]] && break
        sleep 0.1
    done
    for pid in ${PINGORA_PIDS[@]+"${PINGORA_PIDS[@]}"} ${PIDS[@]+"${PIDS[@]}"}; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    redis_stop_all "$TMP/redis"
    rm -rf "$TMP"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    log "error: nothing listens on port $1"
    exit 1
}

rss_kib() { # PID -> VmRSS in KiB (no fork: the sampler below calls it every 20 ms)
    local key value _
    while read -r key value _; do
        if [[ $key == VmRSS: ]]; then
            echo "$value"
            return
        fi
    done <"/proc/$1/status"
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# How busy the machine is, over 2 s (top's second frame): "idle N% (busiest: COMMAND CPU%, ...)".
machine_sample() {
    top -b -n 2 -d 2 -w 200 | awk '
        /^top -/ { frame++ }
        frame == 2 && /^%Cpu/ { for (i = 1; i <= NF; i++) if ($i ~ /^id,?$/) idle = $(i - 1) }
        frame == 2 && header && $9 + 0 >= 5 && shown < 4 { busy = busy sep $12 " " $9 "%"; sep = ", "; shown++ }
        frame == 2 && $1 == "PID" { header = 1 }
        END { printf "idle %s%% (processes at 5%% CPU or more: %s)", idle, (busy == "" ? "none" : busy) }'
}

MOCK=$(free_port)
"$BIN" mock-platform --listen "127.0.0.1:$MOCK" >/dev/null 2>"$TMP/mock.log" &
PIDS+=($!)

# The signing key all gateways share, so that the loader's tokens verify everywhere.
"$BIN" keygen --out "$TMP/keys" --kid bench >/dev/null

REDIS_URL=$(redis_start_standalone "$TMP/redis")
# (f): the same Redis a hop away, through the delaying relay.
RELAY_PORT=$(free_port)
"$RELAY" "127.0.0.1:$RELAY_PORT" "${REDIS_URL#redis://}" "$RELAY_US" >"$TMP/relay.log" 2>&1 &
PIDS+=($!)
SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
PUBLIC_URL="http://127.0.0.1:$(free_port)"
# The rate limits are on (production), but far above what the load reaches.
HIGH=1000000000

# (g): the memory-store gateway's TLS listener, with a throwaway self-signed certificate.
TLS_PORT=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
    -keyout "$TMP/tls.key" -out "$TMP/tls.pem" 2>/dev/null
TLS_SERVER="  tls:
    listen: ['127.0.0.1:$TLS_PORT']
    cert_file: $TMP/tls.pem
    key_file: $TMP/tls.key"

# gateway_config NAME PORT ADMIN STORE_YAML RATE_LIMIT_BACKEND [SERVER_YAML] -> writes $TMP/gw-NAME.yaml
gateway_config() {
    cat >"$TMP/gw-$1.yaml" <<YAML
server:
  listen: ['127.0.0.1:$2']
  admin_listen: '127.0.0.1:$3'
  public_url: $PUBLIC_URL
  threads: $THREADS
  upgrade_sock: $TMP/gw-$1.sock
  pid_file: $TMP/gw-$1.pid
${6:-}
platforms:
  allow_insecure_loopback: true
signing:
  algorithm: EdDSA
  current:
    kid: bench
    private_key: { file: $TMP/keys/bench.key }
oauth:
  clients:
    - client_id: load-test
      client_secret: $SECRET
      redirect_uris: ['https://load.example/cb']
      # The script starts its login without a browser (the sign-in page's binding needs one).
      allow_headless_login: true
tokens:
  # Scenario (d) runs each refresh chain for many grants.
  max_refresh_count: 10000000
rate_limits:
  backend: $5
  per_session_per_minute: $HIGH
  per_ip_per_minute: $HIGH
logging:
  level: warn
  access_log: true
$4
YAML
}

REDIS_STORE="store:
  backend: redis
  redis:
    urls: ['$REDIS_URL']"
NO_CACHE_STORE="$REDIS_STORE
    session_cache_max_entries: 0"
FAR_STORE="store:
  backend: redis
  redis:
    urls: ['redis://127.0.0.1:$RELAY_PORT']"

# name | store | rate-limit backend | label. All run at once; only the one under load is busy.
GATEWAYS=(memory memory_glibc redis_exact redis_approx redis_local redis_nocache redis_far_exact redis_far_approx)
declare -A GW_PORT GW_PID GW_LABEL GW_BUILT
GW_LABEL[memory]="memory store, local limits"
GW_LABEL[memory_glibc]="memory store, local limits, glibc malloc instead of mimalloc"
GW_LABEL[redis_exact]="Redis store, exact limits (backend: redis), session cache on"
GW_LABEL[redis_approx]="Redis store, approximate limits (backend: approximate), session cache on"
GW_LABEL[redis_local]="Redis store, local limits, session cache on"
GW_LABEL[redis_nocache]="Redis store, local limits, session cache off"
GW_LABEL[redis_far_exact]="Redis ${RELAY_US} µs away each way (0.5 ms RTT at the default), exact limits, session cache on"
GW_LABEL[redis_far_approx]="Redis ${RELAY_US} µs away each way (0.5 ms RTT at the default), approximate limits, session cache on"
for name in "${GATEWAYS[@]}"; do
    GW_PORT[$name]=$(free_port)
    case $name in
        memory) gateway_config "$name" "${GW_PORT[$name]}" "$(free_port)" "" local "$TLS_SERVER" ;;
        memory_glibc) gateway_config "$name" "${GW_PORT[$name]}" "$(free_port)" "" local ;;
        redis_exact) gateway_config "$name" "${GW_PORT[$name]}" "$(free_port)" "$REDIS_STORE" redis ;;
        redis_approx) gateway_config "$name" "${GW_PORT[$name]}" "$(free_port)" "$REDIS_STORE" approximate ;;
        redis_local) gateway_config "$name" "${GW_PORT[$name]}" "$(free_port)" "$REDIS_STORE" local ;;
        redis_nocache) gateway_config "$name" "${GW_PORT[$name]}" "$(free_port)" "$NO_CACHE_STORE" local ;;
        redis_far_exact) gateway_config "$name" "${GW_PORT[$name]}" "$(free_port)" "$FAR_STORE" redis ;;
        redis_far_approx) gateway_config "$name" "${GW_PORT[$name]}" "$(free_port)" "$FAR_STORE" approximate ;;
    esac
    if ! "$BIN" check-config "$TMP/gw-$name.yaml" >"$TMP/gw-$name.check" 2>&1; then
        if [[ $name == redis_approx || $name == redis_far_approx ]]; then
            GW_BUILT[$name]=0
            log "note: rate_limits.backend: approximate is not built in this tree: $(head -n 1 "$TMP/gw-$name.check")"
            continue
        fi
        cat "$TMP/gw-$name.check" >&2
        exit 1
    fi
    GW_BUILT[$name]=1
    binary=$BIN
    [[ $name == memory_glibc ]] && binary=$BIN_GLIBC
    "$binary" --config "$TMP/gw-$name.yaml" >/dev/null 2>"$TMP/gw-$name.log" &
    GW_PID[$name]=$!
    PINGORA_PIDS+=($!)
done

PT=$(free_port)
"$PASSTHROUGH" "127.0.0.1:$PT" "127.0.0.1:$MOCK" "$THREADS" 2>"$TMP/passthrough.log" &
PINGORA_PIDS+=($!)
PT_GLIBC=$(free_port)
"$PASSTHROUGH_GLIBC" "127.0.0.1:$PT_GLIBC" "127.0.0.1:$MOCK" "$THREADS" 2>"$TMP/passthrough-glibc.log" &
PINGORA_PIDS+=($!)

# nginx: workers equal to the gateway's threads, keepalive to the upstream, its access log on (buffered, as the
# gateway's is written off the request path). Its own prefix, pid and logs; in the foreground (daemon off). Run
# as root, its master stays root and its workers run as nobody (nginx's default user).
NGX=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<NGINX
worker_processes $THREADS;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log $TMP/nginx/logs/access.log combined buffer=64k flush=1s;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    upstream mock {
        server 127.0.0.1:$MOCK;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGX;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
nginx -e "$TMP/nginx/logs/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
PIDS+=($!)

wait_port "$MOCK"
wait_port "$PT"
wait_port "$NGX"
for name in "${GATEWAYS[@]}"; do
    if ((GW_BUILT[$name])); then wait_port "${GW_PORT[$name]}"; fi
done

# One session, through the real flow (a confidential client, so no PKCE arithmetic in shell): login PORT NAME
# writes the access token to $TMP/NAME.token and the IB sid to $TMP/NAME.sid.
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
login() {
    local port=$1 start poll ib_token redirect code tokens access sid
    start=$(curl -sf -H 'Accept: application/json' \
        "http://127.0.0.1:$port/authorize?response_type=code&client_id=load-test&redirect_uri=https%3A%2F%2Fload.example%2Fcb&state=s&platform_url=http%3A%2F%2F127.0.0.1%3A$MOCK")
    poll=$(json_field token <<<"$start")
    ib_token=$(json_field loginUrl <<<"$start" | sed 's/.*token=//')
    curl -sf -X POST "http://127.0.0.1:$MOCK/_mock/complete?token=$ib_token" >/dev/null
    redirect=$(curl -sf "http://127.0.0.1:$port/authorize/poll?token=$poll" | json_field redirect_url)
    code=$(sed -n 's/.*[?&]code=\([^&]*\).*/\1/p' <<<"$redirect")
    tokens=$(curl -sf -u "load-test:$SECRET" "http://127.0.0.1:$port/token" \
        -d grant_type=authorization_code -d "code=$code" -d redirect_uri=https://load.example/cb)
    access=$(json_field access_token <<<"$tokens")
    sid=$(json_field sid <<<"$tokens")
    if [[ -z $access || -z $sid ]]; then
        log "error: could not obtain a token from the gateway on port $port"
        exit 1
    fi
    printf '%s\n' "$access" >"$TMP/$2.token"
    printf '%s\n' "$sid" >"$TMP/$2.sid"
    curl -sf -o /dev/null -H "Authorization: Bearer $access" "http://127.0.0.1:$port/api/v3/resource"
}
login "${GW_PORT[memory]}" memory
login "${GW_PORT[memory_glibc]}" memory_glibc
login "${GW_PORT[redis_local]}" redis
SID=$(<"$TMP/memory.sid")
# Every Redis gateway serves the Redis session.
for name in redis_exact redis_approx redis_nocache redis_far_exact redis_far_approx; do
    if ((GW_BUILT[$name])); then
        curl -sf -o /dev/null -H "Authorization: Bearer $(<"$TMP/redis.token")" \
            "http://127.0.0.1:${GW_PORT[$name]}/api/v3/resource"
    fi
done
sleep 1
IDLE_RSS=$(rss_kib "${GW_PID[memory]}")

# (c): the sessions, written into Redis by the loader (which also measures what they cost a memory store).
# The loader puts the same sessions into a memory store of its own and then serves it, as a memory-store gateway
# (`--serve`, the same server): (c) on the memory store, throughput and RSS measured in one process.
log "== loading $SESSIONS sessions into Redis and into a memory-store gateway (examples/session_loader.rs)"
MEM100K_PORT=$(free_port)
gateway_config memory100k "$MEM100K_PORT" "$(free_port)" "" local
"$LOADER" --config "$TMP/gw-redis_local.yaml" --template-token "$TMP/redis.token" --count "$SESSIONS" \
    --access-out "$TMP/sessions.tokens" --refresh-out "$TMP/refresh.tokens" --refresh-count "$CHAINS" \
    --memory-rss --serve "$TMP/gw-memory100k.yaml" >"$TMP/loader.out" 2>"$TMP/gw-memory100k.log" &
MEM100K_PID=$!
PINGORA_PIDS+=("$MEM100K_PID")
for _ in $(seq 1 1200); do
    grep -q 'sessions_in_store=' "$TMP/loader.out" && break
    _ibgw_pid_alive "$MEM100K_PID" || break
    sleep 0.5
done
if ! grep -q 'sessions_in_store=' "$TMP/loader.out"; then
    log "error: the session loader did not finish:"
    cat "$TMP/loader.out" "$TMP/gw-memory100k.log" >&2
    exit 1
fi
wait_port "$MEM100K_PORT"
cat "$TMP/loader.out" >&2
head -n 1 "$TMP/sessions.tokens" >"$TMP/memory100k-one.token"
sleep 1
MEM100K_RSS_BEFORE=$(rss_kib "$MEM100K_PID")
kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" "$TMP/loader.out" | head -n 1; }
MEM_STORE_GROWTH=$(kv growth_kib)
MEM_STORE_BYTES_PER_SESSION=$(kv bytes_per_session)
MEM_STORE_COUNT=$(kv memory_store_sessions)
REDIS_SESSIONS=$(kv sessions_in_store)

declare -A RSS_BEFORE_C
for name in redis_exact redis_approx redis_local redis_nocache redis_far_exact redis_far_approx; do
    if ((GW_BUILT[$name])); then RSS_BEFORE_C[$name]=$(rss_kib "${GW_PID[$name]}"); fi
done

# The measured rows: name | url | header or "lua"
declare -A ROW_URL ROW_HEADER ROW_LABEL RPS P50 P99 ERRORS
ROWS=(nginx passthrough passthrough_glibc)
ROW_URL[nginx]="http://127.0.0.1:$NGX/api/3.0.0/mockclient/resource"
ROW_HEADER[nginx]="sid: $SID"
ROW_LABEL[nginx]="nginx proxy_pass (keepalive), reference"
ROW_URL[passthrough]="http://127.0.0.1:$PT/api/3.0.0/mockclient/resource"
ROW_HEADER[passthrough]="sid: $SID"
ROW_LABEL[passthrough]="Pingora pass-through (mimalloc, the gateway's allocator), reference"
ROW_URL[passthrough_glibc]="http://127.0.0.1:$PT_GLIBC/api/3.0.0/mockclient/resource"
ROW_HEADER[passthrough_glibc]="sid: $SID"
ROW_LABEL[passthrough_glibc]="Pingora pass-through with glibc malloc, reference of the glibc row"
for name in "${GATEWAYS[@]}"; do
    row="a_$name"
    [[ $name == memory* ]] || row="b_$name"
    [[ $name == redis_far* ]] && row="f_$name"
    ROWS+=("$row")
    ROW_URL[$row]="http://127.0.0.1:${GW_PORT[$name]}/api/v3/resource"
    token=$TMP/redis.token
    [[ $name == memory* ]] && token=$TMP/$name.token
    ROW_HEADER[$row]="Authorization: Bearer $(<"$token")"
    ROW_LABEL[$row]="(${row%%_*}) gateway, ${GW_LABEL[$name]}, 1 session"
done
# lua_row ROW PORT TOKEN_FILE LABEL: a (c) row, its requests spread by wrk's script over the file's tokens.
lua_row() {
    ROWS+=("$1")
    ROW_URL[$1]="http://127.0.0.1:$2/api/v3/resource"
    ROW_HEADER[$1]="lua:$3"
    ROW_LABEL[$1]=$4
}
lua_row c_memory "$MEM100K_PORT" "$TMP/sessions.tokens" \
    "(c) gateway, memory store holding $SESSIONS sessions (the loader serving it), local limits, $SESSIONS sessions at random"
lua_row c1_memory "$MEM100K_PORT" "$TMP/memory100k-one.token" \
    "(c) control: the same memory-store gateway, 1 of its sessions through the same wrk script"
# Each N-session row next to its control: the same wrk script (a Lua request() costs wrk more than a fixed
# request) with 1 token.
for name in redis_exact redis_approx redis_local; do
    lua_row "c_$name" "${GW_PORT[$name]}" "$TMP/sessions.tokens" \
        "(c) gateway, ${GW_LABEL[$name]}, $SESSIONS sessions at random"
    lua_row "c1_$name" "${GW_PORT[$name]}" "$TMP/redis.token" \
        "(c) control: gateway, ${GW_LABEL[$name]}, 1 session through the same wrk script"
done
for name in redis_far_exact redis_far_approx; do
    lua_row "fc_$name" "${GW_PORT[$name]}" "$TMP/sessions.tokens" \
        "(f) gateway, ${GW_LABEL[$name]}, $SESSIONS sessions at random"
done
row_gateway() { [[ $1 == nginx || $1 == passthrough* ]] && return 1; echo "${1#*_}"; }
# The N-session rows and their controls run for STEADY seconds a round, the others for DURATION.
row_seconds() { if [[ ${ROW_HEADER[$1]} == lua:* ]]; then echo "$STEADY"; else echo "$DURATION"; fi; }

to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n
    }'
}

# wrk_target ROW -> WRK_TARGET: what wrk requests for the row (one request with the row's header, or
# benches/random_token.lua spreading requests over the row's token file).
wrk_target() {
    if [[ ${ROW_HEADER[$1]} == lua:* ]]; then
        WRK_TARGET=(-s benches/random_token.lua "${ROW_URL[$1]}" -- "${ROW_HEADER[$1]#lua:}")
    else
        WRK_TARGET=(-H "${ROW_HEADER[$1]}" "${ROW_URL[$1]}")
    fi
}

run() { # ROW: one wrk round; appends req/s, p99 (ms) and failed responses to the row's lists
    local row=$1 out rps p50 p99 bad
    wrk_target "$row"
    out=$(wrk -t2 -c"$CONNECTIONS" -d"$(row_seconds "$row")s" --latency "${WRK_TARGET[@]}")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    # Non-2xx/3xx answers and socket errors: a row with failures measures the wrong thing.
    bad=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) n += $i} END {print n + 0}' <<<"$out")
    printf '%-22s %10s req/s   p50 %8s   p99 %8s   failed %s\n' "$row" "$rps" "$p50" "$p99" "$bad" >&2
    RPS[$row]+="$rps "
    P50[$row]+="$(to_ms "$p50") "
    P99[$row]+="$(to_ms "$p99") "
    ERRORS[$row]=$((${ERRORS[$row]:-0} + bad))
}

# Warm-up, not counted: every session requested at least once (benches/random_token.lua walks the file in order,
# each wrk thread its own half), filling each gateway's verified-token and session caches as a gateway serving
# these sessions for a while would have them; the rounds then measure the steady state.
warm_up() { # PORT LABEL
    local requests
    requests=$(wrk -t2 -c"$CONNECTIONS" -d"${STEADY}s" -s benches/random_token.lua \
        "http://127.0.0.1:$1/api/v3/resource" -- "$TMP/sessions.tokens" 2 | awk '/requests in/ {print $1}')
    log "-- warm-up: $2: $requests requests for $SESSIONS sessions"
    if ((${requests:-0} < SESSIONS)); then
        log "warning: the warm-up did not reach every session (raise IBGW_BENCH_STEADY_SECONDS)"
    fi
}
for name in redis_exact redis_approx redis_local redis_far_exact redis_far_approx; do
    if ((GW_BUILT[$name])); then warm_up "${GW_PORT[$name]}" "${GW_LABEL[$name]}"; fi
done
warm_up "$MEM100K_PORT" "the memory-store gateway holding $SESSIONS sessions"
# The hop (f) adds, as redis-benchmark sees it (one connection, PING after PING; p50 in ms).
rtt_p50() { redis-benchmark -p "$1" -c 1 -n 2000 -t ping -q 2>/dev/null | sed -n 's/.*p50=\([0-9.]*\).*/\1/p' | head -n 1; }
REDIS_PORT=${REDIS_URL##*:}
RTT_LOOPBACK=$(rtt_p50 "$REDIS_PORT")
RTT_RELAY=$(rtt_p50 "$RELAY_PORT")
log "-- Redis round trip (p50 of PING): loopback ${RTT_LOOPBACK:-?} ms, through the relay ${RTT_RELAY:-?} ms"

IDLE_BEFORE=$(machine_sample)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "== $ROUNDS rounds (${DURATION}s a row; ${STEADY}s for N-session rows and their controls), $CONNECTIONS connections, wrk -t2, alternating (machine: $(nproc) cores; before: $IDLE_BEFORE)"
for round in $(seq 1 "$ROUNDS"); do
    log "-- round $round"
    for row in "${ROWS[@]}"; do
        if gw=$(row_gateway "$row") && ((GW_BUILT[$gw] == 0)); then continue; fi
        run "$row"
    done
done

# (g) HTTP/2 from clients, on the memory-store gateway's TLS listener: h2load (nghttp2) drives both protocols,
# so the client's cost is alike; 32 requests in flight either way (h1: 32 connections; h2: 4 × 8 streams).
declare -A G_RPS G_MEAN G_FAILED G_PROTO
G_URL="https://127.0.0.1:$TLS_PORT/api/v3/resource"
h2load_round() { # ROW ARGS...: one h2load run; appends req/s and mean latency (ms) to the row's lists
    local row=$1 out rps mean failed proto status
    shift
    out=$(h2load "$@" -t 2 -D "$DURATION" -H "Authorization: Bearer $(<"$TMP/memory.token")" "$G_URL" 2>&1 || true)
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
    failed=$(awk '/^requests:/ {print $10 + $12}' <<<"$out")
    proto=$(awk '/^Application protocol:/ {print $3}' <<<"$out")
    status=$(awk '/^status codes:/ {print $3}' <<<"$out")
    printf '%-22s %10s req/s   mean %8s   failed %s   %s, %s 2xx\n' "$row" "${rps:-?}" "${mean:-?}" "${failed:-?}" \
        "${proto:-?}" "${status:-?}" >&2
    G_RPS[$row]+="${rps:-0} "
    G_MEAN[$row]+="$(to_ms "${mean:-0}") "
    G_FAILED[$row]=$((${G_FAILED[$row]:-0} + ${failed:-1}))
    G_PROTO[$row]=${proto:-?}
}
log "== (g) h2load on the TLS listener of the memory-store gateway: $ROUNDS alternating rounds of ${DURATION}s"
for round in $(seq 1 "$ROUNDS"); do
    h2load_round g_h1 --h1 -c "$CONNECTIONS" -m 1
    h2load_round g_h2 -c 4 -m 8
done

# The profiles: the memory-store gateway under (a)'s load, and the Redis gateway with approximate limits under
# (c)'s, each in a run of its own (perf slows what it samples, so no measured round carries it). `perf report` of
# the release binary (its debug symbols are kept).
# profile ROW PID -> PROFILE_TOP[ROW], PROFILE_USER[ROW]
declare -A PROFILE_TOP PROFILE_USER
profile() {
    local row=$1 pid=$2 all perf_pid
    wrk_target "$row"
    log "== profile: $row under perf record -g (not counted)"
    perf record -F 999 -g -o "$TMP/perf-$row.data" -p "$pid" -- sleep "$DURATION" >/dev/null 2>&1 &
    perf_pid=$!
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "${WRK_TARGET[@]}" >/dev/null
    wait "$perf_pid" || true
    all=$(perf report -i "$TMP/perf-$row.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | cut -c1-150 | sed 's/[[:space:]]*$//' || true)
    PROFILE_TOP[$row]=$(head -n 25 <<<"$all")
    PROFILE_USER[$row]=$(grep -v 'kernel.kallsyms' <<<"$all" | head -n 15 || true)
}
PROFILED=()
if [[ $PROFILE == 1 ]]; then
    profile a_memory "${GW_PID[memory]}"
    PROFILED+=(a_memory)
    if ((GW_BUILT[redis_approx])); then
        profile c_redis_approx "${GW_PID[redis_approx]}"
        PROFILED+=(c_redis_approx)
    fi
fi

declare -A RSS_AFTER_C
MEM100K_RSS_AFTER=$(rss_kib "$MEM100K_PID")
for name in redis_exact redis_approx redis_local redis_nocache redis_far_exact redis_far_approx; do
    if ((GW_BUILT[$name])); then RSS_AFTER_C[$name]=$(rss_kib "${GW_PID[$name]}"); fi
done

# (d) refresh grants per second on Redis, on the gateway of target (b) (approximate limits) when built, else
# local limits; the session cache is on, so every rotation also publishes an invalidation.
REFRESH_GW=redis_approx
((GW_BUILT[$REFRESH_GW])) || REFRESH_GW=redis_local
log "== (d) refresh grants: $CHAINS chains for $((DURATION * 2)) s on the ${GW_LABEL[$REFRESH_GW]}"
REFRESH_OUT=$(IBGW_BENCH_CLIENT_SECRET=$SECRET "$REFRESH_LOAD" "http://127.0.0.1:${GW_PORT[$REFRESH_GW]}/token" \
    load-test "$TMP/refresh.tokens" "$CHAINS" "$((DURATION * 2))")
log "$REFRESH_OUT"
GRANTS_PER_S=$(sed -n 's/.*grants_per_s=\([^ ]*\).*/\1/p' <<<"$REFRESH_OUT")
GRANTS_P99=$(sed -n 's/.*p99_ms=\([^ ]*\).*/\1/p' <<<"$REFRESH_OUT")
GRANTS_FAILED=$(sed -n 's/.*failed_chains=\([^ ]*\).*/\1/p' <<<"$REFRESH_OUT")

# (e) 1 GiB down and 1 GiB up through the memory-store gateway, its RSS sampled every 20 ms.
log "== (e) 1 GiB download and 1 GiB upload through the gateway (memory store)"
GW_MEM_PID=${GW_PID[memory]}
STREAM_BEFORE=$(rss_kib "$GW_MEM_PID")
(
    peak=0
    while [[ ! -e $TMP/sampler.stop ]]; do
        r=$(rss_kib "$GW_MEM_PID")
        if ((r > peak)); then
            peak=$r
            echo "$peak" >"$TMP/sampler.peak"
        fi
        sleep 0.02
    done
) &
SAMPLER=$!
MEM_TOKEN=$(<"$TMP/memory.token")
DOWN=$(curl -sf -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' \
    -H "Authorization: Bearer $MEM_TOKEN" \
    "http://127.0.0.1:${GW_PORT[memory]}/api/v3/asset/1?action=download&mock_bytes=$GIB")
UP_BODY=$(head -c "$GIB" /dev/zero | curl -sf -T - -X PUT -w ' %{http_code} %{size_upload} %{speed_upload}' \
    -H "Authorization: Bearer $MEM_TOKEN" "http://127.0.0.1:${GW_PORT[memory]}/api/v3/asset/1")
touch "$TMP/sampler.stop"
wait "$SAMPLER" || true
STREAM_PEAK=$(cat "$TMP/sampler.peak" 2>/dev/null || echo "$STREAM_BEFORE")
STREAM_AFTER=$(rss_kib "$GW_MEM_PID")
read -r DOWN_STATUS DOWN_BYTES DOWN_SPEED <<<"$DOWN"
UP_ECHOED=$(sed -n 's/.*"body_length":\([0-9]*\).*/\1/p' <<<"$UP_BODY")
read -r UP_STATUS UP_BYTES UP_SPEED <<<"$(awk '{print $(NF-2), $(NF-1), $NF}' <<<"$UP_BODY")"
log "download: HTTP $DOWN_STATUS, $DOWN_BYTES bytes; upload: HTTP $UP_STATUS, $UP_BYTES bytes sent, ${UP_ECHOED:-?} echoed"

IDLE_AFTER=$(machine_sample)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL=$((SECONDS - STARTED_AT))

# ---- the report
mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; if (NF) printf "%.1f", s / NF; else print "" }' <<<"$1"; }
declare -A M_RPS M_P50 M_P99
for row in "${ROWS[@]}"; do
    M_RPS[$row]=$(mean "${RPS[$row]:-}")
    M_P50[$row]=$(mean "${P50[$row]:-}")
    M_P99[$row]=$(mean "${P99[$row]:-}")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
thousands() { awk -v a="$1" 'BEGIN { if (a == "") print "-"; else printf "%.1fk", a / 1000 }'; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo "**met**"; else echo "**missed**"; fi; }

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
report() {
    echo "# Load benchmark: latest results"
    echo
    echo "Written by \`benches/load.sh\` (\`make bench\`); issue 8 describes the scenarios and targets."
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- Machine: $(nproc) cores ($CPU_MODEL), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM; shared."
    echo "  CPU over 2 s just before the rounds (bench processes idle): $IDLE_BEFORE;"
    echo "  just after everything: $IDLE_AFTER;"
    echo "  load average before $LOAD_BEFORE, after $LOAD_AFTER."
    echo "- Command: \`$COMMAND\`; wrk -t2 -c$CONNECTIONS, $ROUNDS alternating rounds of ${DURATION} s per row (${STEADY} s for"
    echo "  the (c)/(f) rows over $SESSIONS sessions and their 1-session controls, after a warm-up that requested every session); total $TOTAL s"
    echo "  ($((BUILT_AT - STARTED_AT)) s of it building)."
    echo "- Upstream for every row: the mock IntelligenceBank platform (\`ib-oauth-gateway mock-platform\`, hyper),"
    echo "  answering a small JSON echo; not a real IB. Gateways: \`server.threads: $THREADS\`, access log on,"
    echo "  \`logging.level: warn\`, rate limits on but far above the load ($HIGH/min). The pass-through runs"
    echo "  $THREADS threads, nginx $THREADS workers. Every process shares the $(nproc) cores with wrk."
    echo
    echo "| row | req/s (mean) | p50 ms (mean) | p99 ms (mean) | × pass-through | × nginx | failed responses |"
    echo "|---|---|---|---|---|---|---|"
    for row in "${ROWS[@]}"; do
        if gw=$(row_gateway "$row") && ((GW_BUILT[$gw] == 0)); then
            echo "| ${ROW_LABEL[$row]} | not built | - | - | - | - | - |"
            continue
        fi
        echo "| ${ROW_LABEL[$row]} | $(thousands "${M_RPS[$row]}") | ${M_P50[$row]} | ${M_P99[$row]} |" \
            "$(ratio "${M_RPS[$row]}" "${M_RPS[passthrough]}") | $(ratio "${M_RPS[$row]}" "${M_RPS[nginx]}") |" \
            "${ERRORS[$row]:-0} |"
    done
    echo
    echo "Per round (req/s): $(for row in "${ROWS[@]}"; do [[ -n ${RPS[$row]:-} ]] && printf '%s: %s; ' "$row" "${RPS[$row]% }"; done)"
    echo
    echo "(c) memory store: the loader put ${MEM_STORE_COUNT:-?} sessions into a \`MemoryStore\` of its own (its RSS grew"
    echo "by $(mib "${MEM_STORE_GROWTH:-0}") MiB, ${MEM_STORE_BYTES_PER_SESSION:-?} bytes per session), dropped everything else and"
    echo "served that store as a memory-store gateway (\`session_loader --serve\`, \`server::run_with_store\`: the same"
    echo "server). That process's RSS: $(mib "$MEM100K_RSS_BEFORE") MiB before the rounds, $(mib "$MEM100K_RSS_AFTER") MiB after them"
    echo "(it includes what the allocator kept from loading)."
    echo
    echo "(c) Redis: the loader wrote ${REDIS_SESSIONS:-?} sessions into Redis (the real one included). Gateway RSS, before"
    echo "the rounds → after them (sessions cached as they were requested; the session cache's defaults):"
    for name in redis_exact redis_approx redis_local redis_nocache redis_far_exact redis_far_approx; do
        if ((GW_BUILT[$name])); then
            echo "- ${GW_LABEL[$name]}: $(mib "${RSS_BEFORE_C[$name]}") MiB → $(mib "${RSS_AFTER_C[$name]}") MiB"
        fi
    done
    echo
    echo "(d) refresh grants on the ${GW_LABEL[$REFRESH_GW]} (\`examples/refresh_load.rs\`, $CHAINS"
    echo "concurrent refresh chains for $((DURATION * 2)) s, each grant rotating its token): **${GRANTS_PER_S:-?} grants/s**,"
    echo "p99 ${GRANTS_P99:-?} ms, chains that stopped on an error: ${GRANTS_FAILED:-?}."
    echo
    echo "(e) 1 GiB streamed through the gateway (memory store): download HTTP $DOWN_STATUS, $DOWN_BYTES bytes at"
    echo "$(awk -v s="$DOWN_SPEED" 'BEGIN { printf "%.0f", s / 1048576 }') MiB/s; upload (chunked) HTTP $UP_STATUS, $UP_BYTES bytes on the wire (chunked),"
    echo "${UP_ECHOED:-?} counted by the mock, at $(awk -v s="$UP_SPEED" 'BEGIN { printf "%.0f", s / 1048576 }') MiB/s."
    echo "Gateway RSS: idle after start $(mib "$IDLE_RSS") MiB; before streaming (after the load rounds)"
    echo "$(mib "$STREAM_BEFORE") MiB; peak while streaming $(mib "$STREAM_PEAK") MiB (sampled every 20 ms); after $(mib "$STREAM_AFTER") MiB."
    echo
    local row
    for row in ${PROFILED[@]+"${PROFILED[@]}"}; do
        echo "## Profile of ${ROW_LABEL[$row]%%,*}: ${ROW_LABEL[$row]#*, }"
        echo
        echo "\`perf record -F 999 -g -p <gateway>\` during one more run of ${DURATION} s of this row's load (not counted);"
        echo "\`perf report --no-children --sort dso,symbol\`, top entries:"
        echo
        echo '```'
        echo "${PROFILE_TOP[$row]}"
        echo '```'
        echo
        echo "The top 15 user-space entries (the kernel's left out):"
        echo
        echo '```'
        echo "${PROFILE_USER[$row]}"
        echo '```'
        echo
    done
    echo "(g) HTTP/2 from clients: h2load (nghttp2 $(h2load --version 2>/dev/null | awk '{print $2; exit}')) on the memory-store gateway's TLS listener"
    echo "(self-signed P-256 certificate), \`-t 2 -D $DURATION\`, $ROUNDS alternating rounds; 32 requests in flight either way."
    echo
    echo "| row | protocol | req/s (mean) | mean latency ms | × HTTP/1.1 | failed |"
    echo "|---|---|---|---|---|---|"
    local g
    for g in g_h1 g_h2; do
        local what="HTTP/1.1, $CONNECTIONS connections × 1 request"
        [[ $g == g_h2 ]] && what="h2, 4 connections × 8 streams"
        echo "| (g) $what | ${G_PROTO[$g]:-?} | $(thousands "$(mean "${G_RPS[$g]:-}")") | $(mean "${G_MEAN[$g]:-}") |" \
            "$(ratio "$(mean "${G_RPS[$g]:-}")" "$(mean "${G_RPS[g_h1]:-}")") | ${G_FAILED[$g]:-?} |"
    done
    echo
    echo "Per round (req/s): g_h1: ${G_RPS[g_h1]% }; g_h2: ${G_RPS[g_h2]% }"
    echo
    echo "(f) Redis a hop away: \`examples/delay_relay.rs\` holds every chunk ${RELAY_US} µs each way between the"
    echo "gateway and the same redis-server; PING round trip (redis-benchmark, one connection, p50): loopback"
    echo "${RTT_LOOPBACK:-?} ms, through the relay ${RTT_RELAY:-?} ms."
    echo
    echo "## Targets (issues 8 and 18)"
    echo
    echo "| target | measured | verdict |"
    echo "|---|---|---|"
    local a_ratio a_p99 b_ratio c_ratio growth f_ratio f_p99 name
    a_ratio=$(ratio "${M_RPS[a_memory]}" "${M_RPS[passthrough]}")
    a_p99=$(awk -v g="${M_P99[a_memory]}" -v p="${M_P99[passthrough]}" 'BEGIN { printf "%+.2f", g - p }')
    echo "| (a) memory ≥ 0.85× the pass-through with the same allocator, access log on | ${a_ratio}× | $(verdict "$a_ratio >= 0.85") |"
    echo "| (a) p99 within +0.5 ms of the pass-through's | ${M_P99[a_memory]} vs ${M_P99[passthrough]} ms (${a_p99} ms) | $(verdict "$a_p99 <= 0.5") |"
    echo "| (a) glibc pair: the glibc gateway against the glibc pass-through (reported, no target) | $(ratio "${M_RPS[a_memory_glibc]}" "${M_RPS[passthrough_glibc]}")× | - |"
    if ((GW_BUILT[redis_approx])); then
        b_ratio=$(ratio "${M_RPS[b_redis_approx]}" "${M_RPS[passthrough]}")
        echo "| (b) Redis, approximate limits ≥ 0.80× | ${b_ratio}× | $(verdict "$b_ratio >= 0.80") |"
    else
        echo "| (b) Redis, approximate limits ≥ 0.80× | approximate mode not built | not measured |"
    fi
    echo "| (b) Redis, exact limits (reported, no target) | $(ratio "${M_RPS[b_redis_exact]}" "${M_RPS[passthrough]}")× | - |"
    echo "| (b) Redis, local limits + session cache (no target) | $(ratio "${M_RPS[b_redis_local]}" "${M_RPS[passthrough]}")× | - |"
    for name in redis_approx redis_local redis_exact; do
        ((GW_BUILT[$name])) || continue
        c_ratio=$(ratio "${M_RPS[c_$name]}" "${M_RPS[c1_$name]}")
        if [[ $name == redis_exact ]]; then
            echo "| (c) $SESSIONS sessions, steady state, ${GW_LABEL[$name]} (reported, no target) | ${c_ratio}× of its control; p50/p99 ${M_P50[c_$name]}/${M_P99[c_$name]} ms vs ${M_P50[c1_$name]}/${M_P99[c1_$name]} | - |"
        else
            echo "| (c) $SESSIONS sessions, steady state ≥ 0.90× of 1 session, ${GW_LABEL[$name]} | ${c_ratio}× of its control; p50/p99 ${M_P50[c_$name]}/${M_P99[c_$name]} ms vs ${M_P50[c1_$name]}/${M_P99[c1_$name]} | $(verdict "$c_ratio >= 0.90") |"
        fi
    done
    c_ratio=$(ratio "${M_RPS[c_memory]}" "${M_RPS[c1_memory]}")
    echo "| (c) memory store, $SESSIONS sessions, steady state ≥ 0.90× of 1 session (same process) | ${c_ratio}× of the control; $(ratio "${M_RPS[c_memory]}" "${M_RPS[a_memory]}")× of (a); p50/p99 ${M_P50[c_memory]}/${M_P99[c_memory]} ms vs ${M_P50[c1_memory]}/${M_P99[c1_memory]} | $(verdict "$c_ratio >= 0.90") |"
    local rss_peak
    rss_peak=$(( MEM100K_RSS_AFTER > MEM100K_RSS_BEFORE ? MEM100K_RSS_AFTER : MEM100K_RSS_BEFORE ))
    echo "| (c) $SESSIONS sessions in the memory store within 250 MiB RSS after every one was served | $(mib "$rss_peak") MiB (the serving gateway's RSS, after the rounds) | $(verdict "$rss_peak <= 250 * 1024") |"
    for name in approx exact; do
        ((GW_BUILT[redis_far_$name])) || continue
        f_ratio=$(ratio "${M_RPS[f_redis_far_$name]}" "${M_RPS[b_redis_$name]}")
        f_p99=$(awk -v g="${M_P99[f_redis_far_$name]}" -v p="${M_P99[b_redis_$name]}" 'BEGIN { printf "%+.2f", g - p }')
        echo "| (f) 0.5 ms RTT Redis, 1 session, $name limits: ≥ 0.90× of loopback Redis | ${f_ratio}× | $(verdict "$f_ratio >= 0.90") |"
        echo "| (f) the same, p99 ≤ loopback + 1 ms | ${M_P99[f_redis_far_$name]} vs ${M_P99[b_redis_$name]} ms (${f_p99} ms) | $(verdict "$f_p99 <= 1.0") |"
        f_ratio=$(ratio "${M_RPS[fc_redis_far_$name]}" "${M_RPS[c_redis_$name]}")
        echo "| (f) 0.5 ms RTT Redis, $SESSIONS sessions, $name limits: ≥ 0.80× of loopback Redis | ${f_ratio}×; p99 ${M_P99[fc_redis_far_$name]} vs ${M_P99[c_redis_$name]} ms | $(verdict "$f_ratio >= 0.80") |"
    done
    echo "| (d) ≥ 5,000 refresh grants/s on Redis | ${GRANTS_PER_S:-?}/s | $(verdict "${GRANTS_PER_S:-0} >= 5000 && ${GRANTS_FAILED:-1} == 0") |"
    growth=$(awk -v a="$STREAM_PEAK" -v b="$STREAM_BEFORE" 'BEGIN { printf "%.1f", (a - b) / 1024 }')
    echo "| (e) RSS grows < 16 MiB while streaming | +${growth} MiB | $(verdict "$growth < 16 && \"$DOWN_BYTES\" == $GIB && \"${UP_ECHOED:-0}\" == $GIB") |"
    echo "| (e) idle RSS < 40 MiB | $(mib "$IDLE_RSS") MiB | $(verdict "$IDLE_RSS < 40 * 1024") |"
}
mkdir -p "$(dirname "$RESULTS")"
umask 022
report >"$RESULTS"
cat "$RESULTS"
log "results written to $RESULTS ($TOTAL s)"
