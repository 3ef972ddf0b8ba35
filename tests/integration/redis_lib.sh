# shellcheck shell=bash
# Helpers of the Redis sink's tests (delivery_redis*.sh: SPEC section 8, issue 15). Source it
# after lib.sh and delivery_lib.sh:
#
#   need_redis                                  # exit 77 without redis-server and redis-cli
#   start_redis NAME [redis-server options...]  # its own folder, a free port: REDIS_PORT[NAME]
#   redis_auth NAME PASSWORD                    # what rcli and redis_check authenticate with
#   rcli NAME ARGS...; rcli_int NAME ARGS...    # redis-cli --no-raw; fails on an error reply
#   kill9_redis NAME; restart_redis NAME        # the same folder, port and options
#   start_proxy NAME REDIS_NAME DELAY [--fault F] # redis_proxy.py: PROXY_PORT[NAME]; replies late
#   proxy_down NAME; proxy_up NAME              # its connections closed and refused, or let in
#   post_many PATH COUNT TAG [SENT [PAUSE]]     # COUNT jobs over one connection, as post_job
#   deliveries_done SINK OUT [SENT]             # the jobs of SENT whose delivery is done
#   wait_all_done SINK SECONDS [SENT]           # until every job of SENT is done for SINK
#   wait_until SECONDS 'CONDITION'              # a bash condition polled until a deadline
#   redis_check NAME [ARGS...] <<'PY'           # python with a RESP client of its own, see
#   ...                                         # REDIS_PREAMBLE; the test fails when it does
#   PY
#
# What the sink wrote is read back by clients that are not portcullis: redis-cli, and a few lines
# of python speaking RESP (XRANGE), so that a codec bug of the sink's cannot hide itself.

need_redis() {
    need redis-server redis-cli
}

# delivery_lib.sh's wait_delivery names API_BODY in its failure, which only its subshells set.
API_BODY=${API_BODY:-}

# wait_until SECONDS CONDITION: evaluates CONDITION (bash) every 0.1 s until it holds; returns 1
# once SECONDS have passed (a deadline, however slow each evaluation is on a loaded machine).
wait_until() {
    local deadline=$((SECONDS + $1))
    until eval "$2"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

declare -A REDIS_PID=() REDIS_PORT=() REDIS_DIR=() REDIS_ARGS=() REDIS_PASSWORD_OF=()

# free_port: a port nothing listens on now (bound, then closed; redis-server cannot take port 0,
# so start_redis retries when another program takes it in between).
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# _redis_launch NAME: starts redis-server with the saved port, folder and options; 0 once it is
# ready, 1 when the port was taken, a failure otherwise.
_redis_launch() {
    local name=$1 dir=${REDIS_DIR[$1]} port=${REDIS_PORT[$1]}
    local args=()
    eval "args=(${REDIS_ARGS[$name]})"
    : >"$dir/redis.log"
    # No snapshot and no AOF unless the test's options say otherwise (later options win).
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
        --daemonize no --logfile "$dir/redis.log" "${args[@]}" &
    REDIS_PID[$name]=$!
    local i
    for ((i = 0; i < 200; i++)); do
        grep -q 'Ready to accept connections' "$dir/redis.log" && return 0
        if ! kill -0 "${REDIS_PID[$name]}" 2>/dev/null; then
            { wait "${REDIS_PID[$name]}"; } 2>/dev/null || true
            REDIS_PID[$name]=""
            grep -q 'Address already in use' "$dir/redis.log" && return 1
            fail "redis-server $name exited at start: $(tail -n 5 "$dir/redis.log")"
        fi
        sleep 0.05
    done
    fail "redis-server $name was not ready within 10 s: $(tail -n 5 "$dir/redis.log")"
}

# start_redis NAME [redis-server options...]
start_redis() {
    local name=$1
    shift
    REDIS_DIR[$name]="$WORKDIR/redis-$name"
    mkdir -p "${REDIS_DIR[$name]}"
    REDIS_ARGS[$name]=$(printf '%q ' "$@")
    at_exit "stop_redis $name"
    local try
    for try in 1 2 3 4 5; do
        REDIS_PORT[$name]=$(free_port)
        _redis_launch "$name" && return 0
        echo "redis-server $name: port ${REDIS_PORT[$name]} taken meanwhile (try $try), another one" >&2
    done
    fail "redis-server $name: no free port after 5 tries"
}

# restart_redis NAME: on the same port and folder (waiting up to 10 s for the port).
restart_redis() {
    local i
    for ((i = 0; i < 20; i++)); do
        _redis_launch "$1" && return 0
        sleep 0.5
    done
    fail "redis-server $1: port ${REDIS_PORT[$1]} still taken after 10 s"
}

# stop_redis NAME: SIGTERM, SIGKILL after 5 s.
stop_redis() {
    local pid=${REDIS_PID[$1]:-}
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
    { wait "$pid"; } 2>/dev/null || true
    REDIS_PID[$1]=""
}

# kill9_redis NAME: SIGKILL and reap.
kill9_redis() {
    local pid=${REDIS_PID[$1]:-}
    [[ -n $pid ]] || fail "kill9_redis: redis-server $1 is not running"
    kill -9 "$pid" 2>/dev/null || true
    { wait "$pid"; } 2>/dev/null || true
    REDIS_PID[$1]=""
}

# redis_auth NAME PASSWORD: rcli and redis_check authenticate as the default user with it.
redis_auth() {
    REDIS_PASSWORD_OF[$1]=$2
}

# rcli NAME ARGS...: redis-cli --no-raw (the password through REDISCLI_AUTH, not argv); prints
# the reply, fails on an error reply.
rcli() {
    local name=$1 out env=()
    shift
    [[ -z ${REDIS_PASSWORD_OF[$name]:-} ]] || env=("REDISCLI_AUTH=${REDIS_PASSWORD_OF[$name]}")
    out=$(env "${env[@]}" redis-cli --no-raw -h 127.0.0.1 -p "${REDIS_PORT[$name]}" "$@" 2>&1) ||
        fail "redis-cli $* against $name failed: $out"
    [[ $out != "(error)"* ]] || fail "redis-cli $* against $name: $out"
    printf '%s\n' "$out"
}

# rcli_int NAME ARGS...: an integer reply's value ("(integer) 3" -> 3).
rcli_int() {
    local out
    out=$(rcli "$@")
    [[ $out =~ ^\(integer\)\ ([0-9]+)$ ]] || fail "redis-cli $* answered '$out', expected an integer"
    echo "${BASH_REMATCH[1]}"
}

# post_many PATH COUNT TAG [SENT [PAUSE]]: COUNT JSON jobs (each with its number, a nonce and
# non-ASCII text) over one keep-alive connection, PAUSE seconds apart (default 0); every answer
# must be a 202. Appends to SENT ($WORKDIR/sent.tsv) like post_job (bodies in $WORKDIR/TAG-N.json).
post_many() {
    # shellcheck disable=SC2153 # PORT: lib.sh's start_server sets it
    python3 - "$PORT" "$1" "$2" "$WORKDIR/$3" "${4:-$WORKDIR/sent.tsv}" "${5:-0}" <<'PY' || fail "posting $2 jobs to $1 (see above)"
import http.client, json, os, sys, time
port, path, count, prefix, sent = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
pause = float(sys.argv[6])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
for n in range(1, count + 1):
    body = json.dumps({"n": n, "nonce": os.urandom(8).hex(), "text": "Grüße ✓"}, ensure_ascii=False).encode()
    f = f"{prefix}-{n}.json"
    open(f, "wb").write(body)
    before = time.time()
    c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    answer = r.read()
    after = time.time()
    if r.status != 202:
        sys.exit(f"FAIL: POST {path} #{n}: {r.status} {answer!r}")
    job = json.loads(answer)["id"]
    with open(sent, "a", encoding="utf-8") as out:
        out.write(f"{job}\t{f}\t{path}\t{before}\t{after}\n")
    time.sleep(pause)
PY
}

# deliveries_done SINK OUT [SENT]: the ids of the jobs in SENT ($WORKDIR/sent.tsv) whose delivery
# to SINK is done, into OUT; fails when one is in another state than queued, leased or done.
deliveries_done() {
    python3 - "$ADMIN_PORT" "$TOKEN" "${3:-$WORKDIR/sent.tsv}" "$2" "$1" <<'PY' || fail "reading the jobs' states (see above)"
import http.client, json, sys
port, token, sent, out, sink = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
h = {"Authorization": "Bearer " + token}
done = []
for line in open(sent):
    i = line.split("\t")[0]
    c.request("GET", "/v1/jobs/" + i, headers=h)
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"FAIL: GET /v1/jobs/{i}: {r.status} {body!r}")
    d = json.loads(body).get("deliveries", {}).get(sink)
    if not isinstance(d, dict) or d.get("state") not in ("queued", "leased", "done"):
        sys.exit(f"FAIL: job {i}: deliveries.{sink} is {d!r}, expected queued, leased or done")
    if d["state"] == "done":
        done.append(i)
open(out, "w").write("".join(f"{i}\n" for i in done))
PY
}

# wait_all_done SINK SECONDS [SENT]: until every job of SENT is done for SINK.
wait_all_done() {
    local sink=$1 limit=$2 sent=${3:-$WORKDIR/sent.tsv} n=0 total deadline
    total=$(count_lines "$sent")
    deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        deliveries_done "$sink" "$WORKDIR/done-now" "$sent"
        n=$(count_lines "$WORKDIR/done-now")
        ((n == total)) && return 0
        sleep 0.5
    done
    fail "$sink: $n of $total deliveries done after $limit s"
}

# The preamble of redis_check's scripts: PORT, PASSWORD ("" for none), ARGS, fail(), a RESP
# client of its own (Redis) and entries() / check_entry() over what XRANGE returns.
# shellcheck disable=SC2016 # python source
REDIS_PREAMBLE='
import base64, json, os, re, socket, sys
from datetime import datetime
PORT, PASSWORD, ARGS = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)
class RedisError(Exception):
    pass
class Redis:
    """RESP2 over a socket: each argument a bulk string, replies decoded to python values."""
    def __init__(self, db=0):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        self.f = self.s.makefile("rb")
        if PASSWORD:
            self.call("AUTH", PASSWORD)
        if db:
            self.call("SELECT", db)
    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
        return self.read()
    def read(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise EOFError(f"connection closed mid-reply: {line!r}")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            if len(data) != n + 2 or data[-2:] != b"\r\n":
                raise EOFError("bulk string cut short")
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(f"unexpected reply {line!r}")
FIELDS = [b"id", b"route", b"received_at", b"headers", b"body"]
def entries(r, stream):
    """XRANGE stream - +: [(entry id text, entry ms, {field: bytes}, [field names in order])]."""
    out = []
    for eid, flat in r.call("XRANGE", stream, "-", "+"):
        names = flat[0::2]
        out.append((eid.decode(), int(eid.split(b"-")[0]), dict(zip(names, flat[1::2])), names))
    return out
def sent(path=None):
    """sent.tsv ($WORKDIR/sent.tsv unless given): {job id: (body, route path, t before, t after)}."""
    out = {}
    for line in open(path or os.environ["SENT_TSV"], encoding="utf-8"):
        i, f, p, before, after = line.rstrip("\n").split("\t")
        out[i] = (open(f, "rb").read(), p, float(before), float(after))
    return out
def check_entry(e, job, route, body, before, after):
    """The fields of one entry as the sink writes them; returns its headers as a dict."""
    eid, ms, f, names = e
    if names != FIELDS:
        fail(f"entry {eid}: fields {names}, expected {FIELDS} in that order")
    got_id, got_route, got_body = f[b"id"].decode(errors="replace"), f[b"route"], f[b"body"]
    if got_id != job:
        fail(f"entry {eid}: id {got_id!r}, expected {job}")
    if got_route != route.encode():
        fail(f"entry {eid} (job {job}): route {got_route!r}, expected {route!r}")
    if got_body != body:
        fail(f"entry {eid} (job {job}): body of {len(got_body)} bytes differs from the {len(body)} sent")
    at = f[b"received_at"].decode()
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", at):
        fail(f"entry {eid} (job {job}): received_at {at!r} is not RFC 3339 UTC with milliseconds")
    t = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    if not before - 1 <= t <= after + 1:
        fail(f"entry {eid} (job {job}): received_at {at} is not between the request start and its 202")
    if ms / 1000 < before - 1:
        fail(f"entry {eid} (job {job}): stored by Redis before the job was posted")
    h = json.loads(f[b"headers"])
    if not isinstance(h, dict) or not all(isinstance(v, str) for v in h.values()):
        fail(f"entry {eid} (job {job}): headers {h!r} is not a JSON object of strings")
    return h
'

# redis_check NAME [ARGS...]: runs the python script on stdin after REDIS_PREAMBLE against
# redis-server NAME (with its password).
redis_check() {
    local name=$1
    shift
    local script
    script=$(cat)
    SENT_TSV="$WORKDIR/sent.tsv" python3 -c "$REDIS_PREAMBLE
$script" "${REDIS_PORT[$name]}" "${REDIS_PASSWORD_OF[$name]:-}" "$@" ||
        fail "check over what redis-server $name holds (see above)"
}

# A proxy that delays Redis's replies (redis_proxy.py): start_proxy NAME REDIS_NAME DELAY
# [redis_proxy.py options, e.g. --fault cut-bulk] sets PROXY_PORT[NAME]; proxy_down NAME /
# proxy_up NAME close its connections and refuse new ones, or let them through again.
declare -A PROXY_PID=() PROXY_PORT=() PROXY_FILE=()
REDIS_PROXY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/redis_proxy.py"
start_proxy() {
    local name=$1 file="$WORKDIR/proxy-$1.port"
    python3 "$REDIS_PROXY" --upstream "${REDIS_PORT[$2]}" --port-file "$file" \
        --delay "$3" "${@:4}" 2>"$WORKDIR/proxy-$name.stderr" &
    PROXY_PID[$name]=$!
    PROXY_FILE[$name]=$file
    at_exit "kill ${PROXY_PID[$name]} 2>/dev/null"
    local i
    for ((i = 0; i < 200; i++)); do
        if [[ -s $file && -s $file.state ]]; then
            # shellcheck disable=SC2034 # for the tests
            PROXY_PORT[$name]=$(cat "$file")
            return 0
        fi
        kill -0 "${PROXY_PID[$name]}" 2>/dev/null ||
            fail "proxy $name exited: $(cat "$WORKDIR/proxy-$name.stderr")"
        sleep 0.05
    done
    fail "proxy $name wrote no port within 10 s"
}

# _proxy_signal NAME SIGNAL STATE: signals the proxy and waits (5 s) for it to say STATE.
_proxy_signal() {
    kill "-$2" "${PROXY_PID[$1]}" || fail "proxy $1 is gone: $(cat "$WORKDIR/proxy-$1.stderr")"
    local i
    for ((i = 0; i < 100; i++)); do
        [[ $(cat "${PROXY_FILE[$1]}.state") == "$3" ]] && return 0
        sleep 0.05
    done
    fail "proxy $1 did not go $3 within 5 s"
}
proxy_down() { _proxy_signal "$1" USR1 down; }
proxy_up() { _proxy_signal "$1" USR2 up; }
