# shellcheck shell=bash
# Shared by bench/load/run, idle_memory and pull; sourced, never run.
# Starts and stops portcullis and nginx as plain child processes under a temp dir and reads
# their memory and CPU figures from /proc. Every server started here is stopped by the EXIT
# trap that bench_init installs, by its own pid.

BENCH_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_ROOT=$(cd "$BENCH_HERE/../.." && pwd)
BENCH_PIDS=()
BENCH_TMP=""
BENCH_KEEP=0
BENCH_TARGET_MISSES=0

bench_skip() {
    echo "SKIP: $*" >&2
    exit 77
}

bench_die() {
    echo "error: $*" >&2
    exit 1
}

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${BENCH_PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n "$BENCH_TMP" && "$BENCH_KEEP" == 0 ]]; then
        rm -rf "$BENCH_TMP"
    elif [[ -n "$BENCH_TMP" ]]; then
        echo "kept work dir: $BENCH_TMP" >&2
    fi
}

bench_init() {
    BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# The binary: $PORTCULLIS, else build/src/cli/portcullis under the source root.
bench_find_portcullis() {
    PORTCULLIS=${PORTCULLIS:-$BENCH_ROOT/build/src/cli/portcullis}
    if [[ "$PORTCULLIS" != /* ]]; then
        PORTCULLIS="$PWD/$PORTCULLIS"
    fi
    [[ -x "$PORTCULLIS" ]] || bench_skip "no portcullis binary at $PORTCULLIS (build it, or set PORTCULLIS=path)"
}

# Installs the Debian packages behind missing commands when we are root, else skips.
# Arguments: pairs "command:package".
bench_need() {
    local missing_pkgs=() missing_cmds=() pair
    for pair in "$@"; do
        if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
            missing_cmds+=("${pair%%:*}")
            missing_pkgs+=("${pair#*:}")
        fi
    done
    [[ ${#missing_cmds[@]} -eq 0 ]] && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing_pkgs[*]} ..." >&2
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing_pkgs[@]}" >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing_pkgs[@]}" >/dev/null 2>&1 ||
                bench_skip "could not install ${missing_pkgs[*]}"
        fi
        for pair in "$@"; do
            command -v "${pair%%:*}" >/dev/null 2>&1 || bench_skip "${pair%%:*} still missing after install"
        done
    else
        bench_skip "needs ${missing_cmds[*]} (apt-get install -y ${missing_pkgs[*]} as root)"
    fi
}

bench_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_start_portcullis CONFIG LOG [taskset prefix...]: sets PC_PID and PC_PORT.
bench_start_portcullis() {
    local config=$1 log=$2
    shift 2
    "$@" "$PORTCULLIS" serve -c "$config" 2>"$log" &
    PC_PID=$!
    BENCH_PIDS+=("$PC_PID")
    PC_PORT=""
    for _ in $(seq 100); do
        PC_PORT=$(grep -o '"msg":"listening","plane":"public","address":"127.0.0.1:[0-9]*' "$log" 2>/dev/null |
            head -1 | grep -o '[0-9]*$' || true)
        [[ -n "$PC_PORT" ]] && return 0
        kill -0 "$PC_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$log" >&2
    bench_die "portcullis did not report its listening address"
}

# SIGTERM drains; a clean exit is 0.
bench_stop_portcullis() {
    kill -TERM "$PC_PID" 2>/dev/null || true
    local rc=0
    wait "$PC_PID" || rc=$?
    [[ $rc == 0 ]] || echo "warning: portcullis exited with status $rc" >&2
}

# bench_start_nginx DIR PORT WORKERS CONNECTIONS [taskset prefix...]: sets NGINX_PID.
# nginx runs unprivileged-style from DIR: its own prefix, error log, pid and temp paths.
bench_start_nginx() {
    local dir=$1 port=$2 workers=$3 connections=$4
    shift 4
    mkdir -p "$dir/logs"
    local user_line=""
    if [[ $(id -u) == 0 ]]; then
        # As root nginx would drop its workers to "nobody", who cannot enter a 0700 mktemp dir.
        user_line="user root;"
    fi
    sed -e "s|@PREFIX@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$workers|g" \
        -e "s|@CONNECTIONS@|$connections|g" -e "s|@NOFILE@|$((connections * 2 + 64))|g" \
        -e "s|@USER@|$user_line|g" "$BENCH_HERE/nginx.conf.in" >"$dir/nginx.conf"
    "$@" nginx -e "$dir/logs/error.log" -p "$dir/" -c "$dir/nginx.conf" -g 'daemon off;' \
        2>>"$dir/logs/stderr.log" &
    NGINX_PID=$!
    BENCH_PIDS+=("$NGINX_PID")
    for _ in $(seq 100); do
        if curl -s -m 1 -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
            return 0
        fi
        kill -0 "$NGINX_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$dir/logs/error.log" "$dir/logs/stderr.log" >&2 2>/dev/null || true
    bench_die "nginx did not start"
}

bench_stop_nginx() {
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
}

# A process and its direct children (nginx: master + workers).
bench_pid_tree() {
    echo "$1"
    pgrep -P "$1" 2>/dev/null || true
}

# Resident memory of a process tree, in bytes.
bench_rss_bytes() {
    local total=0 pid kb
    for pid in $(bench_pid_tree "$1"); do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${kb:-0} * 1024))
    done
    echo "$total"
}

# User + system CPU time of a process tree, in clock ticks (all threads included).
bench_cpu_ticks() {
    local total=0 pid t
    for pid in $(bench_pid_tree "$1"); do
        # Fields 14 and 15 counted after the ")" that ends the command name.
        t=$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# bench_target LABEL MEASURED BOUND VERDICT: one line of a "targets" block. VERDICT is PASS, MISS,
# or "n/a (why)" when the figure could not be measured (neither a pass nor a miss). A miss is counted in BENCH_TARGET_MISSES (the scripts exit 3 on one only with
# --strict-targets). With BENCH_TARGETS_OUT set (bench/load/targets sets it), the line is also
# appended there as LABEL<TAB>MEASURED<TAB>BOUND<TAB>VERDICT for the driver's summary.
bench_target() {
    local label=$1 measured=$2 bound=$3 verdict=$4
    printf '  %-30s %-10s (target %s) %s\n' "$label:" "$measured" "$bound" "$verdict"
    [[ $verdict != MISS ]] || BENCH_TARGET_MISSES=$((BENCH_TARGET_MISSES + 1))
    if [[ -n "${BENCH_TARGETS_OUT:-}" ]]; then
        printf '%s\t%s\t%s\t%s\n' "$label" "$measured" "$bound" "$verdict" >>"$BENCH_TARGETS_OUT"
    fi
}

# bench_verdict AWK_CONDITION [VAR=VALUE...]: PASS when the condition over the variables holds,
# MISS otherwise (also when a figure is missing). Example: bench_verdict 'a >= 1.2 * b' a=3 b=2
bench_verdict() {
    local cond=$1 args=() kv
    shift
    for kv in "$@"; do
        if [[ ! ${kv#*=} =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
            echo MISS
            return 0
        fi
        args+=(-v "$kv")
    done
    awk "${args[@]}" "BEGIN {print (($cond) ? \"PASS\" : \"MISS\")}"
}
