# shellcheck shell=bash
# Shared by bench/load/run, idle_memory, pull and latency; sourced, never run.
# Starts and stops portcullis and nginx as plain child processes under a temp dir and reads
# their memory and CPU figures from /proc. Every server started here is stopped by the EXIT
# trap that bench_init installs, by its own pid.

BENCH_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_ROOT=$(cd "$BENCH_HERE/../.." && pwd)
BENCH_PIDS=()
BENCH_TMP=""
BENCH_KEEP=0
BENCH_TARGET_MISSES=0
# TLS (--tls): set by bench_tls_init. The servers then listen with the certificate below only,
# and every URL is https://. BENCH_TLS_SESSIONS=off makes every server refuse to resume a session
# (no tickets, no session cache), so that every handshake is a full one.
BENCH_TLS=0
BENCH_SCHEME=http
BENCH_TLS_SESSIONS=on
BENCH_CERT=""
BENCH_KEY=""

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

# bench_tls_init: an ECDSA P-256 certificate for localhost and 127.0.0.1 (self-signed, 2 days) in
# the temp dir, made with openssl; every server started afterwards serves it, and the clients trust
# it alone (curl --cacert, openssl -CAfile). Call after bench_init.
bench_tls_init() {
    local dir=$BENCH_TMP/tls
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" >"$dir/openssl.log" 2>&1 ||
        bench_die "openssl could not make the certificate: $(cat "$dir/openssl.log")"
    # HAProxy takes the certificate and its key from one file.
    cat "$dir/cert.pem" "$dir/key.pem" >"$dir/cert+key.pem"
    BENCH_CERT=$dir/cert.pem
    BENCH_KEY=$dir/key.pem
    BENCH_TLS=1
    BENCH_SCHEME=https
}

# curl with the benchmark's certificate as the only trusted one when TLS is on.
bench_curl() {
    if [[ $BENCH_TLS == 1 ]]; then
        curl --cacert "$BENCH_CERT" "$@"
    else
        curl "$@"
    fi
}

# bench_tls_probe HOST:PORT: what a TLS 1.3 client like wrk gets (openssl s_client, the same
# OpenSSL and defaults): prints "KIND PROTOCOL CIPHER GROUP", KIND being how a second connection
# that offers the session (ticket) of the first one is handled, "resumed" or "full", and the rest
# from the first, full handshake (e.g. "resumed TLSv1.3 TLS_AES_256_GCM_SHA384 X25519"). Both
# connections send a GET /healthz and read the answer, so that the client has read the server's
# tickets before it saves the session. KIND is "none" when no TLS 1.3 handshake was seen.
bench_tls_probe() {
    local addr=$1 sess=$BENCH_TMP/tls/probe.$RANDOM.sess first second kind=none
    local req='GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
    # shellcheck disable=SC2059
    first=$(printf "$req" | timeout 10 openssl s_client -connect "$addr" -servername localhost -tls1_3 \
        -CAfile "$BENCH_CERT" -ign_eof -sess_out "$sess" 2>&1) || true
    if [[ -s $sess ]]; then
        # shellcheck disable=SC2059
        second=$(printf "$req" | timeout 10 openssl s_client -connect "$addr" -servername localhost -tls1_3 \
            -CAfile "$BENCH_CERT" -ign_eof -sess_in "$sess" 2>&1) || true
        if grep -q '^Reused, TLSv1.3' <<<"$second"; then
            kind=resumed
        elif grep -q '^New, TLSv1.3' <<<"$second"; then
            kind=full
        fi
    elif grep -q '^New, TLSv1.3' <<<"$first"; then
        # No ticket came (s_client saves a TLS 1.3 session only from a NewSessionTicket): there is
        # nothing to offer, the next handshake is a full one.
        kind=full
    fi
    rm -f "$sess"
    local cipher group
    cipher=$(grep -m1 -o '^New, TLSv1.3, Cipher is [A-Z0-9_]*' <<<"$first" | awk '{print $NF}')
    group=$(grep -m1 -o 'Server Temp Key: [A-Za-z0-9-]*' <<<"$first" | awk '{print $NF}')
    echo "$kind TLSv1.3 ${cipher:-?} ${group:-?}"
}

# bench_github_payload: the GitHub push delivery every load script sends, signed as GitHub signs
# it. Writes the payload (a trimmed but realistic push, about 1.3 KB, no trailing newline, so that
# the signed bytes are exactly the file) to $BENCH_TMP/push.json and sets BODY_FILE, BODY_BYTES and
# SECRET; exports for github.lua and the route's configuration BENCH_BODY_FILE, BENCH_SIG256
# ("sha256=<hex HMAC>"), BENCH_SIG1 ("sha1=<hex HMAC>") and BENCH_GITHUB_SECRET. Call after
# bench_init.
bench_github_payload() {
    BODY_FILE=$BENCH_TMP/push.json
    printf '%s' '{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","repository":{"id":700158922,"node_id":"R_kgDOKbv7ig","name":"portcullis-demo","full_name":"octo-org/portcullis-demo","private":true,"owner":{"name":"octo-org","login":"octo-org","id":9919,"type":"Organization"},"html_url":"https://github.com/octo-org/portcullis-demo","default_branch":"main","pushed_at":1718000000},"pusher":{"name":"monalisa","email":"monalisa@example.com"},"sender":{"login":"monalisa","id":583231,"type":"User","site_admin":false},"created":false,"deleted":false,"forced":false,"compare":"https://github.com/octo-org/portcullis-demo/compare/6113728f27ae...0d1a26e67d8f","commits":[{"id":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","tree_id":"f9d2a07e9488b91af2641b26b9407fe22a451433","distinct":true,"message":"Fix the retry budget when a sink is slow","timestamp":"2024-06-10T09:13:20Z","url":"https://github.com/octo-org/portcullis-demo/commit/0d1a26e67d8f","author":{"name":"Mona Lisa","email":"monalisa@example.com","username":"monalisa"},"added":[],"removed":[],"modified":["src/queue/retry.cc"]}],"head_commit":{"id":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","message":"Fix the retry budget when a sink is slow","timestamp":"2024-06-10T09:13:20Z"}}' >"$BODY_FILE"
    # shellcheck disable=SC2034 # read by the callers
    BODY_BYTES=$(wc -c <"$BODY_FILE")
    SECRET="bench-only-secret-7f3e2b"
    local sig256 sig1
    sig256=$(openssl dgst -sha256 -hmac "$SECRET" -hex <"$BODY_FILE" | awk '{print $NF}')
    sig1=$(openssl dgst -sha1 -hmac "$SECRET" -hex <"$BODY_FILE" | awk '{print $NF}')
    [[ "$sig256" =~ ^[0-9a-f]{64}$ && "$sig1" =~ ^[0-9a-f]{40}$ ]] || bench_die "openssl did not give the HMACs"
    export BENCH_BODY_FILE=$BODY_FILE
    export BENCH_SIG256="sha256=$sig256"
    export BENCH_SIG1="sha1=$sig1"
    export BENCH_GITHUB_SECRET=$SECRET
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
        # A TLS listener's line has "transport":"tls" before its address.
        PC_PORT=$(grep -o '"msg":"listening","plane":"public",\("transport":"tls",\)\{0,1\}"address":"127.0.0.1:[0-9]*' "$log" 2>/dev/null |
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
    local ssl=""
    : >"$dir/server.conf"
    if [[ $BENCH_TLS == 1 ]]; then
        ssl="ssl "
        {
            echo "ssl_certificate $BENCH_CERT;"
            echo "ssl_certificate_key $BENCH_KEY;"
            echo "ssl_protocols TLSv1.2 TLSv1.3;"
            if [[ $BENCH_TLS_SESSIONS == on ]]; then
                echo "ssl_session_tickets on;"
            else
                # No ticket and no cache: a client that offers a session gets a full handshake.
                echo "ssl_session_tickets off;"
                echo "ssl_session_cache off;"
            fi
            # nginx_extra: a line for a verification run (an access log of $ssl_session_reused).
            [[ -z "${BENCH_NGINX_EXTRA:-}" ]] || echo "$BENCH_NGINX_EXTRA"
        } >"$dir/server.conf"
    fi
    sed -e "s|@PREFIX@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$workers|g" \
        -e "s|@CONNECTIONS@|$connections|g" -e "s|@NOFILE@|$((connections * 2 + 64))|g" \
        -e "s|@USER@|$user_line|g" -e "s|@SSL@|$ssl|g" "$BENCH_HERE/nginx.conf.in" >"$dir/nginx.conf"
    "$@" nginx -e "$dir/logs/error.log" -p "$dir/" -c "$dir/nginx.conf" -g 'daemon off;' \
        2>>"$dir/logs/stderr.log" &
    NGINX_PID=$!
    BENCH_PIDS+=("$NGINX_PID")
    for _ in $(seq 100); do
        if bench_curl -s -m 1 -o /dev/null "$BENCH_SCHEME://127.0.0.1:$port/healthz" 2>/dev/null; then
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

# bench_start_haproxy DIR PORT CONNECTIONS [taskset prefix...]: sets HAPROXY_PID. HAProxy is the
# peer that verifies the GitHub signature in its configuration: one thread (nbthread; or
# $BENCH_HAPROXY_THREADS, for run --shards) buffers the body (option http-buffer-request),
# computes HMAC-SHA256 over it with the converter hmac(sha256,<key in base64>) (HAProxy 2.6 or
# later, built with OpenSSL), compares "sha256=<hex>" with X-Hub-Signature-256 in constant time
# (secure_memcmp) and answers 202 or 401 itself: no backend, no disk. The secret is
# $BENCH_GITHUB_SECRET.
bench_start_haproxy() {
    local dir=$1 port=$2 connections=$3
    shift 3
    mkdir -p "$dir"
    local key bind_tls="" global_tls=""
    key=$(printf '%s' "$BENCH_GITHUB_SECRET" | base64 -w0)
    if [[ $BENCH_TLS == 1 ]]; then
        bind_tls="ssl crt $BENCH_TMP/tls/cert+key.pem ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3 alpn http/1.1"
        if [[ $BENCH_TLS_SESSIONS != on ]]; then
            # No ticket and no session cache: a client that offers a session gets a full handshake.
            bind_tls+=" no-tls-tickets"
            global_tls="tune.ssl.cachesize 0"
        fi
    fi
    cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread ${BENCH_HAPROXY_THREADS:-1}
    maxconn $((connections + 64))
    pidfile $dir/haproxy.pid
    $global_tls

defaults
    mode http
    timeout connect 5s
    timeout client 5m
    timeout http-request 5m
    timeout http-keep-alive 5m
    option http-buffer-request

frontend webhooks
    bind 127.0.0.1:$port $bind_tls backlog 4096
    maxconn $((connections + 64))
    http-request return status 200 content-type text/plain string ok if { path /healthz }
    http-request return status 404 content-type application/json string '{"error":"not_found"}' unless { path /webhooks/github } METH_POST
    http-request set-var(txn.mac) req.body,hmac(sha256,$key),hex,lower
    http-request set-var(txn.expected) str(sha256=),concat(,txn.mac,)
    http-request return status 401 content-type application/json string '{"error":"bad_signature"}' unless { req.fhdr(x-hub-signature-256),secure_memcmp(txn.expected) }
    http-request return status 202 content-type application/json string '{"id":"x","status":"queued"}'
EOF
    "$@" haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    BENCH_PIDS+=("$HAPROXY_PID")
    for _ in $(seq 100); do
        if bench_curl -s -m 1 -o /dev/null "$BENCH_SCHEME://127.0.0.1:$port/healthz" 2>/dev/null; then
            return 0
        fi
        kill -0 "$HAPROXY_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$dir/haproxy.log" >&2 2>/dev/null || true
    bench_die "haproxy did not start"
}

bench_stop_haproxy() {
    kill -TERM "$HAPROXY_PID" 2>/dev/null || true
    wait "$HAPROXY_PID" 2>/dev/null || true
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
    printf '  %-37s %-10s (target %s) %s\n' "$label:" "$measured" "$bound" "$verdict"
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
