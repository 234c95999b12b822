# shellcheck shell=bash
# Shared helpers for scripts/*.sh. Source it (`. scripts/lib.sh`); the caller
# sets `set -euo pipefail`. Functions that produce a value print it on stdout;
# all progress and error messages go to stderr.
#
# It can also be run directly to call one helper, e.g.
#   scripts/lib.sh redis_start_standalone /tmp/r   # prints redis://127.0.0.1:PORT
#   scripts/lib.sh redis_stop_all /tmp/r
#
# Environment:
#   IBGW_ASSUME_NONROOT=1  behave as a non-root user: never apt-get install,
#                          print the command to run instead (used to test that path).

_IBGW_APT_UPDATED=${_IBGW_APT_UPDATED:-0}
_IBGW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

_ibgw_log() { printf '%s\n' "$*" >&2; }

# True when missing packages may be installed here: root, apt-get present.
_ibgw_can_apt() {
    [[ ${IBGW_ASSUME_NONROOT:-0} != 1 ]] &&
        [[ ${EUID:-$(id -u)} -eq 0 ]] &&
        command -v apt-get >/dev/null 2>&1
}

# _ibgw_apt_install PKG... : apt-get update (once per shell), then install.
_ibgw_apt_install() {
    if [[ $_IBGW_APT_UPDATED != 1 ]]; then
        _ibgw_log "+ apt-get update"
        apt-get update >&2 || return 1
        _IBGW_APT_UPDATED=1
    fi
    _ibgw_log "+ apt-get install -y --no-install-recommends $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
}

# _ibgw_missing CMD... : prints the commands that are not on PATH.
_ibgw_missing() {
    local cmd
    local -a missing=()
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    if ((${#missing[@]})); then printf '%s\n' "${missing[*]}"; fi
}

# _ibgw_require "PKG PKG..." CMD... : make sure every CMD is on PATH, installing
# the Debian packages PKG... when allowed, else exit 1 with the command to run.
_ibgw_require() {
    local pkgs=$1 missing
    shift
    local -a pkg_list
    read -ra pkg_list <<<"$pkgs"
    missing=$(_ibgw_missing "$@")
    [[ -z $missing ]] && return 0
    if ! _ibgw_can_apt; then
        _ibgw_log "error: missing $missing: run: sudo apt-get install -y $pkgs"
        exit 1
    fi
    _ibgw_log "missing $missing: installing Debian packages: $pkgs"
    if ! _ibgw_apt_install "${pkg_list[@]}"; then
        _ibgw_log "error: apt-get install $pkgs failed"
        exit 1
    fi
    hash -r
    missing=$(_ibgw_missing "$@")
    if [[ -n $missing ]]; then
        _ibgw_log "error: still missing after installing $pkgs: $missing"
        exit 1
    fi
}

# The `rust-version` of Cargo.toml (the oldest Rust the locked dependencies build with).
_ibgw_rust_version_needed() {
    sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$_IBGW_ROOT/Cargo.toml" | head -n 1
}

# True when version $1 >= version $2 (dotted numbers; a missing part counts as 0).
_ibgw_version_at_least() {
    local -a have need
    local i
    IFS=. read -ra have <<<"$1"
    IFS=. read -ra need <<<"$2"
    for i in 0 1 2; do
        if ((${have[i]:-0} != ${need[i]:-0})); then
            ((${have[i]:-0} > ${need[i]:-0}))
            return
        fi
    done
}

# cargo and rustc answer (rustup may have to fetch the toolchain rust-toolchain.toml pins) and are at least
# Cargo.toml's rust-version; otherwise say which version is needed and how to get it.
ensure_rust_version() {
    local need pinned version
    need=$(_ibgw_rust_version_needed)
    pinned=$(sed -n 's/^channel *= *"\([^"]*\)".*/\1/p' "$_IBGW_ROOT/rust-toolchain.toml" 2>/dev/null | head -n 1)
    local install="rustup toolchain install ${pinned:-$need} --component rustfmt,clippy"
    if ! cargo --version >/dev/null 2>&1 || ! version=$(rustc --version 2>/dev/null); then
        _ibgw_log "error: cargo/rustc do not run: Rust ${pinned:-$need} is needed (rust-toolchain.toml): run: $install"
        exit 1
    fi
    version=${version#rustc }
    version=${version%% *}
    if [[ -n $need ]] && ! _ibgw_version_at_least "${version%%-*}" "$need"; then
        _ibgw_log "error: Rust $version is too old: Rust $need or later is needed (rust-version in Cargo.toml): run: $install"
        exit 1
    fi
}

# Rust toolchain plus what aws-lc-sys & co. need to build their C code.
ensure_build_deps() {
    local cargo_bin="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
    if ! command -v cargo >/dev/null 2>&1 && [[ -x $cargo_bin/cargo ]]; then
        # rustup installed, but its bin dir is not on this shell's PATH.
        export PATH="$cargo_bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        _ibgw_log "error: Rust toolchain not found: install it with rustup (https://rustup.rs) and re-run"
        exit 1
    fi
    ensure_rust_version
    _ibgw_require "cmake build-essential pkg-config perl" cmake cc pkg-config make perl
}

# redis-server and redis-cli (Debian package redis-server pulls redis-tools).
# The packaged service (which may or may not start; systemd often does not run
# in containers) is never used: tests start their own servers on free ports.
ensure_redis() {
    _ibgw_require "redis-server" redis-server redis-cli
}

# promtool checks deploy/prometheus (Debian's `prometheus` package ships it).
ensure_promtool() {
    _ibgw_require "prometheus" promtool
}

# systemd-analyze verifies the systemd unit in tests/deploy_systemd.rs (Debian's `systemd` package ships it; the
# tests never start systemd itself).
ensure_systemd_analyze() {
    _ibgw_require "systemd" systemd-analyze
}

# ensure_cargo_tool CRATE VERSION: the cargo subcommand CRATE (cargo-deny, cargo-cyclonedx) at VERSION, installed
# from crates.io with `cargo install --locked` when missing or another version (minutes on a small machine).
ensure_cargo_tool() {
    local crate=$1 version=$2 have
    have=$(cargo "${crate#cargo-}" --version 2>/dev/null || true)
    if [[ $have == "$crate $version"* ]]; then
        return 0
    fi
    _ibgw_log "+ cargo install --locked $crate@$version    (${have:-not installed}; this takes a few minutes)"
    cargo install --locked "$crate@$version" >&2
}

# A standard OAuth library (authlib) validates the discovery documents in tests/oauth_flow.rs; it runs on
# Debian's own /usr/bin/python3, whatever python3 is first on PATH.
ensure_authlib() {
    if /usr/bin/python3 -c 'import authlib' >/dev/null 2>&1; then
        return 0
    fi
    if ! _ibgw_can_apt; then
        _ibgw_log "error: authlib missing: run: sudo apt-get install -y python3-authlib"
        exit 1
    fi
    _ibgw_apt_install python3-authlib || { _ibgw_log "error: apt-get install python3-authlib failed"; exit 1; }
}

# curl and python3 run the README's walk-through (tests/readme_walkthrough.rs runs it as a user would).
ensure_walkthrough_tools() {
    _ibgw_require "curl python3" curl python3
}

ensure_lint_tools() {
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        _ibgw_log "error: rustfmt/clippy missing: run: rustup component add rustfmt clippy"
        exit 1
    fi
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
_ibgw_port_in_use() {
    local rc=0
    if command -v timeout >/dev/null 2>&1; then
        # shellcheck disable=SC2016 # $1 is expanded by the inner bash
        timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null || rc=$?
        # 124: the connect hung (full backlog?): count the port as taken.
        [[ $rc -eq 0 || $rc -eq 124 ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# free_port [TAKEN_PORT...]: prints a port P in 20000..55535 such that nothing
# listens on P nor on P+10000 (the Redis Cluster bus port), and such that
# neither P nor P+10000 collides with TAKEN_PORT or TAKEN_PORT+10000.
free_port() {
    local attempt port taken clash
    for ((attempt = 0; attempt < 500; attempt++)); do
        port=$(((RANDOM * 32768 + RANDOM) % 35536 + 20000))
        clash=0
        for taken in "$@"; do
            if ((port == taken || port == taken + 10000 || port + 10000 == taken)); then
                clash=1
                break
            fi
        done
        ((clash)) && continue
        _ibgw_port_in_use "$port" && continue
        _ibgw_port_in_use "$((port + 10000))" && continue
        printf '%s\n' "$port"
        return 0
    done
    _ibgw_log "error: no free TCP port found on 127.0.0.1"
    return 1
}

# True when PID is a live (non-zombie) process. PID 1 of a container may not
# reap the daemonized servers, so a zombie counts as gone.
_ibgw_pid_alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/stat ]]; then
        state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
        [[ $state != Z && $state != X ]]
    fi
}

# True when PID is alive and is a redis-server (guards against a reused pid).
_ibgw_pid_is_redis() {
    local pid=$1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    _ibgw_pid_alive "$pid" || return 1
    if [[ -r /proc/$pid/comm ]]; then
        [[ $(<"/proc/$pid/comm") == redis-server* ]]
    fi
}

_ibgw_log_tail() {
    local f=$1
    [[ -f $f ]] || return 0
    _ibgw_log "--- last lines of $f:"
    tail -n 20 "$f" >&2 || true
}

# _ibgw_redis_launch DIR PORT [EXTRA_ARG...]: start one daemonized redis-server
# and wait until it answers. Returns 0 when up, 2 when the port turned out to
# be taken (the caller may retry on another port), 1 on any other failure.
_ibgw_redis_launch() {
    local dir=$1 port=$2
    shift 2
    local log="$dir/redis-$port.log" pidfile="$dir/redis-$port.pid"
    local pid="" reply deadline taken=0
    local busy_re='Could not create server TCP listening socket|Address already in use'
    mkdir -p "$dir" || return 1
    if ! redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize yes --dir "$dir" --logfile "$log" --pidfile "$pidfile" "$@" >&2; then
        _ibgw_log "error: redis-server failed to start on port $port"
        _ibgw_log_tail "$log"
        return 1
    fi
    deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
        if [[ -z $pid && -s $pidfile ]]; then
            pid=$(<"$pidfile")
        fi
        reply=$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)
        if [[ -n $pid && $reply == PONG* ]]; then
            # Make sure it is our server that answers, not someone else's.
            reply=$(redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null | tr -d '\r' |
                sed -n 's/^process_id://p' || true)
            [[ $reply == "$pid" ]] && return 0
            taken=1
            break
        fi
        if grep -qE "$busy_re" "$log" 2>/dev/null; then
            # Say which socket: a cluster node also binds its bus port (port + 10000).
            _ibgw_log "note: redis-server on port $port: $(grep -m 1 -E "$busy_re" "$log")"
            taken=1
            break
        fi
        sleep 0.1
    done
    if [[ -n $pid ]] && _ibgw_pid_is_redis "$pid"; then
        kill "$pid" 2>/dev/null || true
    fi
    ((taken)) && return 2
    _ibgw_log "error: redis-server on port $port did not answer within 10s"
    _ibgw_log_tail "$log"
    return 1
}

# _ibgw_redis_start_node DIR_PREFIX [TAKEN_PORT...] -- [EXTRA_ARG...]
# Picks a free port P (retrying on a lost race), starts a server in
# DIR_PREFIX (the literal "@PORT@" in it and in EXTRA_ARG is replaced by P)
# and prints P.
_ibgw_redis_start_node() {
    local dir_tmpl=$1
    shift
    local -a taken=() extra=()
    while (($#)) && [[ $1 != -- ]]; do
        taken+=("$1")
        shift
    done
    if (($#)); then shift; fi
    local try port rc dir arg
    # A port free when picked can be taken before the server binds it (another process's outgoing connection
    # uses the ephemeral range too): try ten.
    for ((try = 1; try <= 10; try++)); do
        port=$(free_port ${taken[@]+"${taken[@]}"}) || return 1
        dir=${dir_tmpl//@PORT@/$port}
        extra=()
        for arg in "$@"; do extra+=("${arg//@PORT@/$port}"); done
        rc=0
        _ibgw_redis_launch "$dir" "$port" ${extra[@]+"${extra[@]}"} || rc=$?
        if ((rc == 0)); then
            printf '%s\n' "$port"
            return 0
        fi
        ((rc == 2)) || return 1
        _ibgw_log "note: port $port was taken meanwhile, trying another one"
        taken+=("$port")
    done
    _ibgw_log "error: could not start redis-server after $((try - 1)) attempts"
    return 1
}

_ibgw_abs_dir() {
    mkdir -p "$1" && (cd "$1" && pwd -P)
}

# redis_start_standalone DIR: prints redis://127.0.0.1:PORT
redis_start_standalone() {
    local dir port
    dir=$(_ibgw_abs_dir "${1:?usage: redis_start_standalone DIR}") || return 1
    port=$(_ibgw_redis_start_node "$dir") || return 1
    _ibgw_log "redis standalone up on 127.0.0.1:$port (files in $dir)"
    printf 'redis://127.0.0.1:%s\n' "$port"
}

# redis_start_cluster DIR: three masters, no replicas, all 16384 slots served.
# Prints redis://127.0.0.1:P1,redis://127.0.0.1:P2,redis://127.0.0.1:P3
redis_start_cluster() {
    local dir port deadline ok p info urls
    local -a ports=() addrs=()
    dir=$(_ibgw_abs_dir "${1:?usage: redis_start_cluster DIR}") || return 1
    for _ in 1 2 3; do
        if ! port=$(_ibgw_redis_start_node "$dir/node-@PORT@" ${ports[@]+"${ports[@]}"} -- \
            --cluster-enabled yes \
            --cluster-config-file "$dir/node-@PORT@/nodes-@PORT@.conf" \
            --cluster-node-timeout 5000); then
            redis_stop_all "$dir"
            return 1
        fi
        ports+=("$port")
        addrs+=("127.0.0.1:$port")
    done
    if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
        >"$dir/cluster-create.log" 2>&1; then
        _ibgw_log "error: redis-cli --cluster create ${addrs[*]} failed"
        _ibgw_log_tail "$dir/cluster-create.log"
        redis_stop_all "$dir"
        return 1
    fi
    deadline=$((SECONDS + 20))
    while :; do
        ok=1
        for p in "${ports[@]}"; do
            info=$(redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | tr -d '\r' || true)
            if ! grep -qx 'cluster_state:ok' <<<"$info"; then
                ok=0
                break
            fi
        done
        ((ok)) && break
        if ((SECONDS >= deadline)); then
            _ibgw_log "error: redis cluster on ${addrs[*]} not ok after 20s"
            _ibgw_log "$info"
            redis_stop_all "$dir"
            return 1
        fi
        sleep 0.2
    done
    urls=$(printf 'redis://%s,' "${addrs[@]}")
    _ibgw_log "redis cluster up on ${addrs[*]} (files in $dir)"
    printf '%s\n' "${urls%,}"
}

# redis_stop_all DIR: stop every server whose pidfile is under DIR, wait for
# them to exit (SIGKILL after 10s). Never fails.
redis_stop_all() {
    local dir=${1:?usage: redis_stop_all DIR} f pid deadline
    local -a pids=() left=()
    [[ -d $dir ]] || return 0
    while IFS= read -r -d '' f; do
        pid=$(<"$f") || continue
        if _ibgw_pid_is_redis "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done < <(find "$dir" -type f -name '*.pid' -print0 2>/dev/null)
    ((${#pids[@]})) || return 0
    deadline=$((SECONDS + 10))
    while :; do
        left=()
        for pid in "${pids[@]}"; do
            if _ibgw_pid_alive "$pid"; then left+=("$pid"); fi
        done
        ((${#left[@]})) || return 0
        if ((SECONDS >= deadline)); then
            _ibgw_log "warning: redis-server ${left[*]} still running after 10s: SIGKILL"
            kill -KILL "${left[@]}" 2>/dev/null || true
            sleep 0.5
            return 0
        fi
        sleep 0.1
    done
}

# Run directly: call one helper.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    if (($# == 0)); then
        _ibgw_log "usage: $0 FUNCTION [ARG...]   (e.g. redis_start_standalone DIR)"
        exit 2
    fi
    "$@"
fi
