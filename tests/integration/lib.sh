# shellcheck shell=bash
# Shared helpers for the integration tests. Source it right after `set -euo pipefail`:
#
#   here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
#   source "$here/lib.sh"
#   need python3 openssl                        # exit 77 (skipped) when one is missing
#   write_config "$WORKDIR/config.yaml"         # the minimal github + gitlab configuration
#   start_server "$WORKDIR/config.yaml"         # sets SERVER_PID, PORT, ADMIN_PORT, SERVER_LOG
#                                               # (every listen address has port 0: see
#                                               # expect_ephemeral_ports)
#   sig=$(hmac_sha256_hex "$GH_SECRET" "$body")
#   post /webhooks/github "$file" -H "X-Hub-Signature-256: sha256=$sig"
#   expect_eq "status" 202 "$HTTP_STATUS"
#   stop_server                                 # SIGTERM; fails unless it exits 0
#
# WORKDIR is a fresh directory removed at exit, together with any server still running; set
# PORTCULLIS_KEEP_WORKDIR=1 to keep it for a post-mortem. Everything here talks to 127.0.0.1
# only and every wait is bounded.

skip() {
    echo "SKIP: $*" >&2
    exit 77
}

# Prints the failure and the end of the server's log (which never holds bodies or secrets).
fail() {
    echo "FAIL: $*" >&2
    if [[ -n ${SERVER_LOG:-} && -s ${SERVER_LOG:-} ]]; then
        echo "--- last lines of $SERVER_LOG ---" >&2
        tail -n 20 "$SERVER_LOG" >&2
    fi
    exit 1
}

need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
    done
}

[[ -n ${PORTCULLIS:-} && -x ${PORTCULLIS:-} ]] ||
    skip "PORTCULLIS does not name the portcullis binary (run through meson test)"
need curl mktemp

WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-it.XXXXXX")
SERVER_PID=""
SERVER_LOG=""
PORT=""
ADMIN_PORT=""
_server_count=0
_at_exit=()

# Registers a command run at exit, before the server is killed and WORKDIR removed.
at_exit() {
    _at_exit+=("$1")
}

_lib_cleanup() {
    local rc=$?
    local c
    for c in "${_at_exit[@]}"; do
        eval "$c" || true
    done
    if [[ -n $SERVER_PID ]]; then
        kill -9 "$SERVER_PID" 2>/dev/null || true
        { wait "$SERVER_PID"; } 2>/dev/null || true
    fi
    if [[ -n ${PORTCULLIS_KEEP_WORKDIR:-} ]]; then
        echo "work directory kept: $WORKDIR" >&2
    else
        rm -rf "$WORKDIR"
    fi
    exit "$rc"
}
trap _lib_cleanup EXIT

# The configuration every test starts from: two shards, fsync, a github and a gitlab route.
# write_config FILE [SPOOL_DIR]; append more YAML to FILE for more routes.
write_config() {
    local file=$1
    local spool=${2:-$WORKDIR/spool}
    cat >"$file" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $spool, durability: fsync}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
  gitlab: {path: /webhooks/gitlab, verify: {scheme: shared_secret, header: X-Gitlab-Token, secrets: [{env: GL_TOKEN}]}}
EOF
}

# expect_ephemeral_ports CONFIG: every address the configuration listens on, defaults included,
# has port 0, so that the kernel picks a free port and start_server reads it from the listening
# line. A test never leaves server.listen or admin.listen at its default (both defaults name a
# fixed port) nor names a fixed port: it would fail whenever another program holds that port.
# The addresses are read from `portcullis check`'s summary, which shows the defaults.
expect_ephemeral_ports() {
    local config=$1
    local out rc=0
    out=$("$PORTCULLIS" check -c "$config" 2>&1) || rc=$?
    [[ $rc == 0 ]] || fail "portcullis check -c $config exited $rc: $out"
    local line
    line=$(grep -m1 '^listen ' <<<"$out") || fail "portcullis check -c $config printed no listen line: $out"
    local word fixed=()
    for word in ${line//,/ }; do
        if [[ $word =~ :([0-9]+)$ && ${BASH_REMATCH[1]} != 0 ]]; then
            fixed+=("$word")
        fi
    done
    ((${#fixed[@]} == 0)) ||
        fail "$config listens on ${fixed[*]} ($line): a test binds port 0 only; set server.listen to [\"127.0.0.1:0\"] and admin.listen to \"127.0.0.1:0\" (their defaults name fixed ports)"
}

# start_server CONFIG [extra serve arguments]: runs `portcullis serve` in the background with
# its stderr in a new SERVER_LOG, and waits (up to 20 s) for the public listening line. The
# configuration must listen on port 0 only (expect_ephemeral_ports).
start_server() {
    _launch_server public "$@"
}

# _listening_port PLANE: the port of the first listening line of PLANE (public, admin, or
# public-tls: the public plane's TLS listeners, "transport":"tls") in SERVER_LOG ("" when there
# is none yet).
_listening_port() {
    local fields="\"plane\":\"$1\","
    [[ $1 != public-tls ]] || fields='"plane":"public","transport":"tls",'
    { grep -F "\"msg\":\"listening\",$fields\"address\":\"127.0.0.1:" "$SERVER_LOG" || true; } |
        sed -n 's/.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' | head -n 1
}

# _launch_server PLANE CONFIG [extra serve arguments]: start_server, ready once PLANE's
# listening line is written. Sets PORT (the plain public port, "" when the configuration has
# none), ADMIN_PORT and TLS_PORT (when there is a TLS listener).
_launch_server() {
    local plane=$1 config=$2
    shift 2
    [[ -z $SERVER_PID ]] || fail "start_server: a server is already running (pid $SERVER_PID)"
    _server_count=$((_server_count + 1))
    SERVER_LOG="$WORKDIR/server-$_server_count.log"
    PORT=""
    ADMIN_PORT=""
    TLS_PORT=""
    # Created here, not by the background redirection, so that polling it cannot race it.
    : >"$SERVER_LOG"
    expect_ephemeral_ports "$config"
    "$PORTCULLIS" serve -c "$config" "$@" 2>"$SERVER_LOG" &
    SERVER_PID=$!
    local i ready
    for ((i = 0; i < 400; i++)); do
        ready=$(_listening_port "$plane")
        if [[ -n $ready ]]; then
            # The listening lines are written one after the other: with a control plane, wait
            # (up to 2 s) for its line too, so that every port is known.
            local j
            for ((j = 0; j < 40; j++)); do
                grep -rq '^admin:' "$config" || break
                [[ -z $(_listening_port admin) ]] || break
                sleep 0.05
            done
            PORT=$(_listening_port public)
            # shellcheck disable=SC2034 # for the tests that use the control plane
            ADMIN_PORT=$(_listening_port admin)
            # shellcheck disable=SC2034 # for the TLS tests
            TLS_PORT=$(_listening_port public-tls)
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            local rc=0
            wait "$SERVER_PID" || rc=$?
            SERVER_PID=""
            fail "server exited with status $rc before listening"
        fi
        sleep 0.05
    done
    fail "server did not report a $plane listening address within 20 s"
}

# Waits (up to LIMIT seconds, then SIGKILL) for the server, so a hung drain fails the test
# instead of hanging the runner. Sets SERVER_STATUS (124 when it had to be killed).
_wait_server() {
    local limit=$1
    local pid=$SERVER_PID
    local i timed_out=0
    for ((i = 0; i < limit * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        timed_out=1
        kill -9 "$pid" 2>/dev/null || true
    fi
    SERVER_STATUS=0
    # The braces keep bash's "Killed" job report out of the test's output.
    { wait "$pid"; } 2>/dev/null || SERVER_STATUS=$?
    ((timed_out == 0)) || SERVER_STATUS=124
    SERVER_PID=""
}

# SIGTERM, wait up to 30 s, fail unless the server exits 0.
stop_server() {
    [[ -n $SERVER_PID ]] || fail "stop_server: no server running"
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    _wait_server 30
    [[ $SERVER_STATUS == 0 ]] ||
        fail "server exited with status $SERVER_STATUS after SIGTERM (expected 0; 124: still running after 30 s)"
}

# SIGKILL and reap; the exit status is not checked (it is 137).
kill9_server() {
    [[ -n $SERVER_PID ]] || fail "kill9_server: no server running"
    kill -9 "$SERVER_PID" 2>/dev/null || true
    _wait_server 10
}

# kill9_during_posts ROUNDS POSTS PATH TOKEN FIELDS STATE CHECK: ROUNDS times, kill -9 the server
# at a random moment (0.1 to 0.3 s in) while up to POSTS POSTs of {"name":"k<round>-<i>",FIELDS}
# to the admin plane's PATH (bearer TOKEN) follow one another, then start it again with
# $WORKDIR/config.yaml. The state file STATE (a version line, "<kind> <name> ..." records in the
# order of the POSTs, a checksum line) must parse (the start stops otherwise) and hold the names
# of before and then the round's first k, k >= 0: the old set or a newer one, never a mix or a
# torn one; and every name answered 201 (the answer came after the file was durable). Then runs
# CHECK ROUND NAMES (the names in STATE, space-separated). Sets KILLED_MID_STREAM: how many kills
# landed while POSTs were under way.
kill9_during_posts() {
    local rounds=$1 posts=$2 path=$3 token=$4 fields=$5 state=$6 check=$7
    local round i code before after answers answered poster
    KILLED_MID_STREAM=0
    for round in $(seq 1 "$rounds"); do
        before=$(_state_names "$state")
        answers="$WORKDIR/kill9-answered-$round"
        : >"$answers"
        for i in $(seq 1 "$posts"); do
            code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -X POST \
                -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
                --data-binary "{\"name\":\"k$round-$i\",$fields}" \
                "http://127.0.0.1:$ADMIN_PORT$path" 2>/dev/null) || break
            [[ $code == 201 ]] || { echo "POST $path k$round-$i: $code" >&2; break; }
            echo "k$round-$i" >>"$answers"
        done &
        poster=$!
        sleep "0.$((RANDOM % 3 + 1))"
        kill -0 "$poster" 2>/dev/null && KILLED_MID_STREAM=$((KILLED_MID_STREAM + 1))
        kill9_server
        wait "$poster" || true
        start_server "$WORKDIR/config.yaml"
        after=$(_state_names "$state")
        answered=$(tr '\n' ' ' <"$answers")
        python3 - "$before" "$after" "$round" "$answered" <<'PY' ||
import sys
before, after, rnd, answered = sys.argv[1].split(), sys.argv[2].split(), sys.argv[3], sys.argv[4].split()
k = len(after) - len(before)
assert k >= 0 and after == before + [f"k{rnd}-{i}" for i in range(1, k + 1)]
assert set(answered) <= set(after)
PY
            fail "$path round $round: before '$before', after '$after', answered '$answered'"
        "$check" "$round" "$after"
    done
}

# _state_names FILE: the second field of a state file's record lines, space-separated ("" when
# there is no file).
_state_names() {
    [[ -f $1 ]] || return 0
    sed '1d;$d' "$1" | cut -d' ' -f2 | tr '\n' ' '
}

# hmac_sha256_hex SECRET BODY: lowercase hex HMAC-SHA256 of BODY's bytes.
hmac_sha256_hex() {
    printf %s "$2" | openssl dgst -sha256 -hmac "$1" -hex | sed 's/^.*= *//'
}

# hmac_sha256_hex_file SECRET FILE: the same for a file (binary bodies).
hmac_sha256_hex_file() {
    openssl dgst -sha256 -hmac "$1" -hex <"$2" | sed 's/^.*= *//'
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
    [[ $2 == "$3" ]] || fail "$1: expected '$2', got '$3'"
}

# post PATH BODY_FILE [curl arguments...]: POSTs the file's bytes to the public plane.
# Sets HTTP_STATUS, HTTP_BODY (the answer's body), HTTP_HEADERS (a file) and HTTP_TRACE (a file
# holding curl's -v output, where interim answers such as 100 Continue show).
post() {
    local path=$1
    shift
    post_url "http://127.0.0.1:$PORT$path" "$@"
}

# post_url URL BODY_FILE [curl arguments...]: post to any URL (tls_post uses it).
post_url() {
    local url=$1
    local file=$2
    shift 2
    HTTP_HEADERS="$WORKDIR/last-headers"
    HTTP_TRACE="$WORKDIR/last-trace"
    local out="$WORKDIR/last-body"
    : >"$out"
    HTTP_STATUS=$(curl -sS -v -m 20 -o "$out" -D "$HTTP_HEADERS" -w '%{http_code}' \
        -X POST --data-binary "@$file" "$@" "$url" 2>"$HTTP_TRACE") ||
        HTTP_STATUS="curl-failed-$?"
    HTTP_BODY=$(cat "$out")
}

# json_field JSON KEY: one top-level string field of a JSON object ("" when absent).
json_field() {
    python3 -c 'import json, sys
v = json.loads(sys.argv[1]).get(sys.argv[2], "")
print(v if isinstance(v, str) else json.dumps(v))' "$1" "$2"
}

# expect_queued: the last answer is 202 {"id":"...","status":"queued"}; sets JOB_ID.
expect_queued() {
    local what=$1
    expect_eq "$what: status (answer: $HTTP_BODY)" 202 "$HTTP_STATUS"
    expect_eq "$what: answer status field" queued "$(json_field "$HTTP_BODY" status)"
    JOB_ID=$(json_field "$HTTP_BODY" id)
    [[ $JOB_ID =~ ^[A-Za-z0-9_-]+$ ]] || fail "$what: job id '$JOB_ID' is not URL-safe"
}

# expect_unauthorized WHAT: the last answer is exactly 401 {"error":"unauthorized"}.
expect_unauthorized() {
    expect_eq "$1: status (answer: $HTTP_BODY)" 401 "$HTTP_STATUS"
    expect_eq "$1: answer body" '{"error":"unauthorized"}' "$HTTP_BODY"
}

# spool_dump DIR OUT: `portcullis spool dump` into OUT; fails unless it exits 0.
spool_dump() {
    local rc=0
    "$PORTCULLIS" spool dump --dir "$1" >"$2" 2>"$2.err" || rc=$?
    [[ $rc == 0 ]] || fail "spool dump --dir $1 exited $rc: $(cat "$2.err")"
}

# check_job DUMP ID ROUTE BODY_FILE [name=value | !name ...]: the dump holds exactly one job
# with that id, for that route, from 127.0.0.1, whose body is the file's bytes; each name=value
# is a stored header (lowercased name) and each !name a header that must not be stored.
check_job() {
    python3 - "$@" <<'PY'
import base64, json, sys
dump, job_id, route, body_file, *headers = sys.argv[1:]
jobs = [json.loads(l) for l in open(dump, encoding="utf-8") if l.strip()]
found = [j for j in jobs if j.get("id") == job_id]
def fail(msg):
    print(f"FAIL: job {job_id}: {msg}", file=sys.stderr)
    sys.exit(1)
if len(found) != 1:
    fail(f"expected exactly 1 job with this id in the spool dump, found {len(found)}")
job = found[0]
if job.get("route") != route:
    fail(f"route: expected {route!r}, got {job.get('route')!r}")
if job.get("source_ip") != "127.0.0.1":
    fail(f"source_ip: expected '127.0.0.1', got {job.get('source_ip')!r}")
enc = job.get("body_encoding")
if enc == "utf8":
    body = job["body"].encode("utf-8")
elif enc == "base64":
    body = base64.b64decode(job["body"], validate=True)
else:
    fail(f"body_encoding: expected utf8 or base64, got {enc!r}")
want = open(body_file, "rb").read()
if body != want:
    fail(f"body ({enc}) differs from what was sent: {len(body)} bytes stored, {len(want)} sent")
try:
    want.decode("utf-8")
    want_enc = "utf8"
except UnicodeDecodeError:
    want_enc = "base64"
if enc != want_enc:
    fail(f"body_encoding: expected {want_enc}, got {enc}")
stored = job.get("headers", {})
for h in headers:
    if h.startswith("!"):
        if h[1:] in stored:
            fail(f"header {h[1:]!r} must not be stored, but the dump has it")
        continue
    name, value = h.split("=", 1)
    if stored.get(name) != value:
        fail(f"header {name!r}: expected {value!r}, got {stored.get(name)!r}")
PY
}

# count_lines FILE
count_lines() {
    local n
    n=$(wc -l <"$1")
    echo $((n))
}

# wait_for_log PATTERN COUNT: waits (up to 10 s) until SERVER_LOG has COUNT lines matching the
# fixed string PATTERN; log lines are written asynchronously by the shards.
wait_for_log() {
    local i n=0
    for ((i = 0; i < 200; i++)); do
        n=$(grep -cF -- "$1" "$SERVER_LOG" || true)
        ((n >= $2)) && return 0
        sleep 0.05
    done
    fail "expected $2 log lines containing '$1' in $SERVER_LOG, found $n"
}

# TLS --------------------------------------------------------------------------------------------
# A test CA and certificates made with openssl in $TLS_DIR ($WORKDIR/tls), and clients that trust
# it. The CA is a root (what clients trust, TLS_CA) and an intermediate that signs the leaves; a
# certificate file holds the leaf then the intermediate, as server.tls wants it, so a server that
# does not send the chain fails the clients' verification.
#
#   need_tls_tools                                 # exit 77 without openssl
#   tls_make_ca
#   tls_make_cert a "DNS:a.test"                   # $TLS_DIR/a.pem and a.key, ECDSA P-256
#   tls_make_cert b "DNS:b.test,DNS:*.wild.test" rsa   # ec (default) | rsa (2048) | ed25519
#   tls_renew_cert a                               # same key and names, new serial, same paths
#   { echo "server:"; ...; tls_yaml a b; } >config # the server.tls block, a is the default
#   start_tls_server CONFIG                        # ready at the TLS listening line: TLS_PORT
#   tls_post a.test /webhooks/github FILE -H ...   # post over https://a.test:TLS_PORT/...
#   tls_s_client OUT -servername a.test -tls1_3    # openssl s_client's output in OUT
#   tls_served_cert OUT -servername a.test         # the leaf the server sent, PEM
#   cert_fingerprint FILE                          # SHA-256 fingerprint of a PEM file's first cert
TLS_DIR="$WORKDIR/tls"
TLS_CA="$TLS_DIR/root.pem"
TLS_PORT=""

need_tls_tools() {
    need openssl
}

# _tls_key FILE TYPE: a new private key (PKCS#8 PEM).
_tls_key() {
    case $2 in
    ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null ;;
    ed25519) openssl genpkey -algorithm ED25519 -out "$1" 2>/dev/null ;;
    *) fail "tls key type $2: expected ec, rsa or ed25519" ;;
    esac || fail "openssl could not make a $2 key"
}

# _tls_sign CSR ISSUER EXTENSIONS DAYS OUT: a certificate with a fresh random serial.
_tls_sign() {
    local serial
    serial="0x1$(openssl rand -hex 15)"
    openssl x509 -req -in "$1" -CA "$TLS_DIR/$2.pem" -CAkey "$TLS_DIR/$2.key" -set_serial "$serial" \
        -days "$4" -extfile "$3" -out "$5" 2>"$5.err" || fail "openssl x509 -req: $(cat "$5.err")"
}

# tls_make_ca: the root (TLS_CA) and the intermediate that signs the leaves, ECDSA P-256.
tls_make_ca() {
    mkdir -p "$TLS_DIR"
    _tls_key "$TLS_DIR/root.key" ec
    openssl req -x509 -new -key "$TLS_DIR/root.key" -subj "/CN=portcullis test root" -days 60 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$TLS_CA" 2>/dev/null || fail "openssl could not make the test root"
    _tls_key "$TLS_DIR/intermediate.key" ec
    openssl req -new -key "$TLS_DIR/intermediate.key" -subj "/CN=portcullis test intermediate" \
        -out "$TLS_DIR/intermediate.csr" 2>/dev/null || fail "openssl req (intermediate)"
    printf '%s\n' "basicConstraints=critical,CA:TRUE,pathlen:0" \
        "keyUsage=critical,keyCertSign,cRLSign" "subjectKeyIdentifier=hash" \
        "authorityKeyIdentifier=keyid" >"$TLS_DIR/intermediate.ext"
    _tls_sign "$TLS_DIR/intermediate.csr" root "$TLS_DIR/intermediate.ext" 60 "$TLS_DIR/intermediate.pem"
}

# tls_make_cert NAME SANS [ec|rsa|ed25519] [DAYS]: a key and a leaf for SANS ("DNS:a.test,...")
# with CN=NAME, signed by the intermediate: $TLS_DIR/NAME.key, $TLS_DIR/NAME.pem (leaf, then the
# intermediate).
tls_make_cert() {
    local name=$1 sans=$2 type=${3:-ec} days=${4:-30}
    [[ -s $TLS_DIR/intermediate.pem ]] || fail "tls_make_cert: call tls_make_ca first"
    _tls_key "$TLS_DIR/$name.key" "$type"
    printf '%s\n%s\n' "$sans" "$days" >"$TLS_DIR/$name.params"
    _tls_issue "$name" "$TLS_DIR/$name.pem"
}

# tls_renew_cert NAME: a new leaf (new serial) for NAME's key and names, replacing NAME.pem at
# once (written aside, then renamed over it, as certificate tools do).
tls_renew_cert() {
    _tls_issue "$1" "$TLS_DIR/$1.pem.new"
    mv -f "$TLS_DIR/$1.pem.new" "$TLS_DIR/$1.pem"
}

_tls_issue() {
    local name=$1 out=$2 sans days usage=digitalSignature
    { read -r sans; read -r days; } <"$TLS_DIR/$name.params"
    # TLS 1.2's RSA key exchange encrypts to the key.
    openssl pkey -in "$TLS_DIR/$name.key" -noout -text 2>/dev/null | grep '^Private-Key: (2048' >/dev/null &&
        usage="digitalSignature,keyEncipherment"
    openssl req -new -key "$TLS_DIR/$name.key" -subj "/CN=$name" -out "$TLS_DIR/$name.csr" \
        2>/dev/null || fail "openssl req ($name)"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,$usage" \
        "extendedKeyUsage=serverAuth" "subjectAltName=$sans" "subjectKeyIdentifier=hash" \
        "authorityKeyIdentifier=keyid" >"$TLS_DIR/$name.ext"
    _tls_sign "$TLS_DIR/$name.csr" intermediate "$TLS_DIR/$name.ext" "$days" "$out.leaf"
    cat "$out.leaf" "$TLS_DIR/intermediate.pem" >"$out"
    rm -f "$out.leaf" "$out.leaf.err"
}

# tls_yaml NAME...: the server.tls block (indented for `server:`) listening on 127.0.0.1:0 with
# these certificates, the first the default. Add more keys after it with four spaces.
tls_yaml() {
    echo '  tls:'
    echo '    listen: ["127.0.0.1:0"]'
    echo '    certificates:'
    local n
    for n in "$@"; do
        echo "      - {cert: $TLS_DIR/$n.pem, key: $TLS_DIR/$n.key}"
    done
}

# start_tls_server CONFIG [extra serve arguments]: start_server, ready at the TLS listening line;
# sets TLS_PORT (and PORT when the configuration also listens in plain HTTP).
start_tls_server() {
    _launch_server public-tls "$@"
}

# tls_post NAME PATH BODY_FILE [curl arguments...]: post over https://NAME:TLS_PORT/PATH (NAME
# resolved to 127.0.0.1), trusting the test root only.
tls_post() {
    local name=$1 path=$2
    shift 2
    post_url "https://$name:$TLS_PORT$path" "$@" --cacert "$TLS_CA" \
        --resolve "$name:$TLS_PORT:127.0.0.1"
}

# tls_s_client OUT [s_client arguments...]: openssl s_client against the TLS port, trusting the
# test root, its output (stdout and stderr) in OUT; standard input from TLS_STDIN (default
# /dev/null: handshake, then close). Returns s_client's status.
tls_s_client() {
    local out=$1
    shift
    timeout 20 openssl s_client -connect "127.0.0.1:$TLS_PORT" -CAfile "$TLS_CA" "$@" \
        <"${TLS_STDIN:-/dev/null}" >"$out" 2>&1
}

# tls_served_cert OUT [s_client arguments...]: the leaf certificate the server sends, PEM, in
# OUT; fails when the handshake fails.
tls_served_cert() {
    local out=$1
    shift
    tls_s_client "$out.log" -showcerts "$@" ||
        fail "openssl s_client $* failed: $(tail -n 5 "$out.log")"
    sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/{p;/-----END CERTIFICATE-----/q}' \
        "$out.log" >"$out"
    [[ -s $out ]] || fail "openssl s_client $* showed no certificate: $(tail -n 5 "$out.log")"
}

# cert_fingerprint FILE: the SHA-256 fingerprint of the first certificate in a PEM file.
cert_fingerprint() {
    openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//'
}

# cert_subject FILE: the subject of the first certificate in a PEM file ("CN = a").
cert_subject() {
    openssl x509 -in "$1" -noout -subject -nameopt oneline | sed 's/^subject= *//'
}

# api METHOD PATH [JSON]: a control-plane call with $TOKEN (no Authorization header when it is
# empty or unset); sets API_STATUS (the HTTP status, or curl-failed-N) and API_BODY, and keeps the
# answer's headers in $WORKDIR/api-headers.
api() {
    local method=$1 path=$2 data=${3:-}
    local args=(-sS -m 30 -o "$WORKDIR/api-body" -D "$WORKDIR/api-headers" -w '%{http_code}'
        -X "$method")
    [[ -z ${TOKEN:-} ]] || args+=(-H "Authorization: Bearer $TOKEN")
    [[ -z $data ]] || args+=(-H "Content-Type: application/json" --data-binary "$data")
    API_STATUS=$(curl "${args[@]}" "http://127.0.0.1:$ADMIN_PORT$path") || API_STATUS="curl-failed-$?"
    API_BODY=$(cat "$WORKDIR/api-body")
}
# api_as TOKEN METHOD PATH [JSON]: the same with another token ("" for none).
api_as() {
    local TOKEN=$1
    shift
    api "$@"
}
expect_api() { expect_eq "$1: status (answer: $API_BODY)" "$2" "$API_STATUS"; }
# py EXPR: EXPR evaluated with j = the last answer's JSON ("" and a failure when it is not JSON).
py() {
    python3 -c "import json, sys; j = json.loads(sys.argv[1]); print($1)" "$API_BODY" 2>/dev/null ||
        fail "evaluating $1 over the answer to the last call ($API_STATUS): $API_BODY"
}
