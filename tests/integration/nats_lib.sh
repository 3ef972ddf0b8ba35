# shellcheck shell=bash
# Helpers of the NATS JetStream sink's tests (delivery_nats*.sh: SPEC section 8, issue 15). Source
# it after lib.sh and delivery_lib.sh:
#
#   need_nats                                  # exit 77 without nats-server
#   start_nats [CONFIG LINES]                  # nats-server -js, file store in $NATS_DIR/js:
#                                              # NATS_PORT, NATS_PID, NATS_LOG
#   nats_client create HOOKS 'webhooks.>' 120  # tests/integration/nats_client.py, with NATS_AUTH
#   nats_client dump HOOKS "$WORKDIR/stream.jsonl"
#   kill9_nats; restart_nats                   # SIGKILL; the same port and store again
#   nats_msg_id ROUTE VALUE                    # the Nats-Msg-Id of a dedup key's value
#
# NATS_AUTH: the test client's credentials (--user U --password P), empty without.

# shellcheck disable=SC2154 # set by the test before it sources lib.sh
NATS_CLIENT="$here/nats_client.py"
NATS_DIR="$WORKDIR/nats"
NATS_PORT=""
NATS_PID=""
NATS_LOG=""
NATS_EXTRA=""
NATS_AUTH=()
_nats_count=0

need_nats() {
    need python3
    command -v nats-server >/dev/null 2>&1 ||
        skip "nats-server is not installed (scripts/deps --test installs it)"
}

# _free_port: a port the kernel gave a socket that is closed again (nats-server takes no port 0
# with a way to learn it that works before it is ready): another program may take it first, so
# _nats_launch retries with a new one.
_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# _nats_launch: starts nats-server on NATS_PORT with $NATS_DIR/js; true once its log says it is
# ready (its own log, not a connection: another server may have taken the port), false when it
# exited (the port was taken) or took over 20 s.
_nats_launch() {
    mkdir -p "$NATS_DIR"
    _nats_count=$((_nats_count + 1))
    NATS_LOG="$NATS_DIR/nats-$_nats_count.log"
    printf 'listen: 127.0.0.1:%s\njetstream { store_dir: "%s/js" }\n%s\n' "$NATS_PORT" "$NATS_DIR" \
        "$NATS_EXTRA" >"$NATS_DIR/nats.conf"
    : >"$NATS_LOG"
    nats-server -c "$NATS_DIR/nats.conf" >"$NATS_LOG" 2>&1 &
    NATS_PID=$!
    local i
    for ((i = 0; i < 400; i++)); do
        if grep -q 'Server is ready' "$NATS_LOG"; then
            return 0
        fi
        if ! kill -0 "$NATS_PID" 2>/dev/null; then
            { wait "$NATS_PID"; } 2>/dev/null || true
            NATS_PID=""
            return 1
        fi
        sleep 0.05
    done
    kill -9 "$NATS_PID" 2>/dev/null || true
    { wait "$NATS_PID"; } 2>/dev/null || true
    NATS_PID=""
    return 1
}

# start_nats [CONFIG LINES]: a new nats-server -js on a free port (5 tries).
start_nats() {
    NATS_EXTRA=${1:-}
    local try
    for ((try = 0; try < 5; try++)); do
        NATS_PORT=$(_free_port)
        _nats_launch && return 0
    done
    fail "nats-server did not start on any of 5 ports: $(tail -n 5 "$NATS_LOG")"
}
at_exit 'kill9_nats'

# restart_nats: the same port and store (the sink's url names the port); the port was ours a
# moment ago, so a failure here is a failure of the test.
restart_nats() {
    [[ -z $NATS_PID ]] || fail "restart_nats: nats-server is running (pid $NATS_PID)"
    _nats_launch || fail "nats-server did not start again on port $NATS_PORT: $(tail -n 5 "$NATS_LOG")"
}

kill9_nats() {
    [[ -n $NATS_PID ]] || return 0
    kill -9 "$NATS_PID" 2>/dev/null || true
    { wait "$NATS_PID"; } 2>/dev/null || true
    NATS_PID=""
}

# nats_client COMMAND STREAM [ARGS...]: nats_client.py against the test's server.
nats_client() {
    local command=$1
    shift
    python3 "$NATS_CLIENT" "$command" "$NATS_PORT" "$@" "${NATS_AUTH[@]}" ||
        fail "nats_client.py $command $* failed (see above)"
}

# nats_msg_id ROUTE VALUE: the Nats-Msg-Id the sink must send for a job whose dedup key's value
# is VALUE: the hex of its fingerprint, XXH3-128 seeded with XXH3-64 of the route's name (see
# queue/fingerprint.hh), high half first, computed here with the system's libxxhash.
nats_msg_id() {
    python3 - "$1" "$2" <<'PY' || fail "computing the dedup key with libxxhash (see above)"
import ctypes, sys
lib = ctypes.CDLL("libxxhash.so.0")
class H128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]
lib.XXH3_64bits.restype = ctypes.c_uint64
lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
lib.XXH3_128bits_withSeed.restype = H128
lib.XXH3_128bits_withSeed.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
route, value = sys.argv[1].encode(), sys.argv[2].encode()
h = lib.XXH3_128bits_withSeed(value, len(value), lib.XXH3_64bits(route, len(route)))
print("%016x%016x" % (h.high64, h.low64))
PY
}

# The preamble of stream_check's scripts: the dump (nats_client.py dump) as `msgs` in sequence
# order, each with "body" as bytes and "h" a dict of lowercased names to the list of their values,
# and helpers.
STREAM_PREAMBLE='
import base64, json, sys
DUMP, ARGS = sys.argv[1], sys.argv[2:]
def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)
msgs = []
for line in open(DUMP, encoding="utf-8"):
    m = json.loads(line)
    m["body"] = base64.b64decode(m["body_b64"])
    m["raw_headers"] = base64.b64decode(m["headers_raw_b64"])
    m["h"] = {}
    for name, value in m["headers"]:
        m["h"].setdefault(name.lower(), []).append(value)
    msgs.append(m)
def hdr(m, name):
    """The one value of a header; fails when it is missing or repeated."""
    v = m["h"].get(name.lower(), [])
    if len(v) != 1:
        seq, subject, all_headers = m["seq"], m["subject"], m["headers"]
        fail(f"message {seq} on {subject}: {len(v)} {name} headers, expected 1 ({all_headers})")
    return v[0]
def job(m):
    return hdr(m, "portcullis-job-id")
'

# stream_check DUMP [ARGS...]: the python script on stdin after STREAM_PREAMBLE over DUMP (ARGS in
# ARGS); the test fails when it does.
stream_check() {
    local dump=$1
    shift
    local script
    script=$(cat)
    python3 -c "$STREAM_PREAMBLE
$script" "$dump" "$@" || fail "check over the stream's messages in $dump (see above)"
}
