#!/usr/bin/env bash
# The control plane under hostile clients (its own listener, thread and ring): a missing or
# unknown token is answered 401 from the head, before the body is read, and the memory such
# requests take is bounded and given back; admin.max_connections caps its connections (the rest
# are closed at once and counted); server.timeouts cut stalled heads and bodies and idle
# connections; however many control-plane connections come, the public plane keeps the file
# descriptors it needs (the start-up budget against RLIMIT_NOFILE); two Authorization headers
# are a 400; numbers in JSON bodies must be integers in range; bodies past 64 KiB are 413.
#
# Each section starts its own server and reports on its own, so that one failure does not hide
# the others; the test fails when any section does.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3 sha256sum

TOKEN=$("$PORTCULLIS" token new | sed -n 's/^token: *//p')
[[ $TOKEN == pct_* ]] || fail "token new printed no token"
TOKEN_SHA=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
export PYTHONPATH="$here"

# config FILE [YAML lines appended to server:] [YAML lines appended to admin:]
config() {
    local file=$1 server_extra=${2:-} admin_extra=${3:-}
    cat >"$file" <<EOF
server:
  listen: ["127.0.0.1:0"]
  shards: 1
$server_extra
admin:
  listen: "127.0.0.1:0"
$admin_extra
spool: {dir: $WORKDIR/spool-$RANDOM$RANDOM, durability: fsync}
routes:
  hooks: {path: /webhooks/hooks, verify: {scheme: none}}
tokens:
  worker: {sha256: "$TOKEN_SHA", scopes: ["jobs:*"]}
EOF
}

# with_fd_limit SOFT HARD: makes PORTCULLIS a wrapper that sets RLIMIT_NOFILE before it execs
# the binary (HARD "-" keeps the hard limit), so start_server's pid is the server's.
with_fd_limit() {
    local wrapper="$WORKDIR/limited-$1-$2"
    {
        echo '#!/usr/bin/env bash'
        echo 'set -e'
        echo "ulimit -Sn $1"
        [[ $2 == - ]] || echo "ulimit -Hn $2"
        echo "exec \"$REAL_PORTCULLIS\" \"\$@\""
    } >"$wrapper"
    chmod +x "$wrapper"
    PORTCULLIS=$wrapper
}
REAL_PORTCULLIS=$PORTCULLIS

rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$SERVER_PID/status"; }
fd_count() { find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# stop_line_field NAME: a counter of the control plane's last log line.
admin_stop_field() {
    python3 - "$SERVER_LOG" "$1" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("msg") == "control plane stopped":
        print(j.get(sys.argv[2], "absent"))
        break
else:
    print("no 'control plane stopped' line")
PY
}

# --- 1: 401 from the head; the bodies are neither read nor kept ----------------------------
unauthenticated_bodies() {
    config "$WORKDIR/c1.yaml"
    start_server "$WORKDIR/c1.yaml"
    curl -sS -m 5 -o /dev/null "http://127.0.0.1:$ADMIN_PORT/healthz" || fail "healthz"
    local before after
    before=$(rss_kib)
    python3 - "$ADMIN_PORT" 100 <<'PY' || fail "unauthenticated requests with 1 MB bodies"
import socket, sys, time
from http_client import ProtocolError, Reader
port, n = int(sys.argv[1]), int(sys.argv[2])
body = 1_000_000
socks = []
for i in range(n):
    auth = "" if i % 2 == 0 else "Authorization: Bearer pct_not-a-known-token\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall((f"POST /v1/lease HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\n"
               f"Content-Length: {body}\r\n\r\n").encode())
    s.sendall(b"{" + b" " * 65535)  # the first 64 KiB of the body; the rest is never sent
    socks.append(s)
bad = []
deadline = time.monotonic() + 10
for i, s in enumerate(socks):
    r = Reader(s)
    try:
        a = r.read_response(deadline)
    except ProtocolError as e:
        a = None
        bad.append(f"#{i}: {e}")
        continue
    if a is None or a.status != 401 or a.body != b'{"error":"unauthorized"}':
        bad.append(f"#{i}: {a.describe() if a else 'no answer while the body was incomplete'}")
    elif a.header("connection") != "close":
        bad.append(f"#{i}: 401 without Connection: close: {a.describe()}")
    elif not r.wait_eof(deadline + 5):
        bad.append(f"#{i}: still open after its 401")
for s in socks:
    s.close()
if bad:
    print(f"FAIL: {len(bad)} of {n}: " + "; ".join(bad[:5]), file=sys.stderr)
    sys.exit(1)
print(f"ok   {n} requests announcing 1 MB bodies answered 401 after 64 KiB of each")
PY
    sleep 0.5
    after=$(rss_kib)
    echo "RSS of the server: ${before} KiB before, ${after} KiB after 100 connections closed" \
        "(grew $(((after - before) / 1024)) MiB)"
    ((after - before < 8 * 1024)) || fail "RSS grew by $((after - before)) KiB (bound: 8 MiB)"
    wait_for_log '"msg":"control plane: request refused"' 1
    stop_server
    local n
    n=$(admin_stop_field unauthorized_before_body)
    expect_eq "401s answered before the body (stop line)" 100 "$n"
}

# --- 2: admin.max_connections --------------------------------------------------------------
connection_cap() {
    config "$WORKDIR/c2.yaml" "" "  max_connections: 8"
    start_server "$WORKDIR/c2.yaml"
    python3 - "$ADMIN_PORT" "$WORKDIR/refused" <<'PY' || fail "admin.max_connections"
import socket, sys, time
from http_client import Reader
port, count_file = int(sys.argv[1]), sys.argv[2]
held = []
for i in range(8):
    held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    time.sleep(0.02)  # accepted in order
time.sleep(0.3)
extra = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(12)]
closed = sum(Reader(s).wait_eof(time.monotonic() + 3) for s in extra)
if closed != 12:
    print(f"FAIL: {closed} of the 12 connections past the cap of 8 were closed", file=sys.stderr)
    sys.exit(1)
open_ = sum(not Reader(s).wait_eof(time.monotonic() + 0.2) for s in held)
if open_ != 8:
    print(f"FAIL: only {open_} of the 8 connections under the cap stayed open", file=sys.stderr)
    sys.exit(1)
# Those 8 still work.
r = Reader(held[0])
held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
a = r.read_response(time.monotonic() + 5)
if a is None or a.status != 200:
    print(f"FAIL: a held connection got {a.describe() if a else 'nothing'}", file=sys.stderr)
    sys.exit(1)
for s in held + extra:
    s.close()
# Once they are gone, new connections are served again (as soon as the server has seen the
# closes through: until then a new one is still past the cap, and counted).
deadline = time.monotonic() + 5
refused = 12
while True:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    r = Reader(s)
    a = r.read_response(time.monotonic() + 2)
    s.close()
    if a is not None and a.status == 200:
        break
    refused += r.eof
    if time.monotonic() > deadline:
        print("FAIL: no connection served after the held ones closed", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.1)
open(count_file, "w").write(str(refused))
print(f"ok   8 connections held, 12 past the cap closed at once, served again afterwards "
      f"({refused - 12} refused while the 8 were closing)")
PY
    wait_for_log '"reason":"max_connections"' 1
    stop_server
    local n
    n=$(admin_stop_field refused_max_connections)
    expect_eq "connections refused past admin.max_connections (stop line)" "$(cat "$WORKDIR/refused")" "$n"
}

# --- 3: server.timeouts on the control plane -----------------------------------------------
timeouts() {
    config "$WORKDIR/c3.yaml" "  timeouts: {header: 1s, body: 1s, idle: 1s}"
    start_server "$WORKDIR/c3.yaml"
    python3 - "$ADMIN_PORT" "$TOKEN" <<'PY' || fail "control-plane timeouts"
import socket, sys, threading, time
from http_client import Reader
port, token = int(sys.argv[1]), sys.argv[2]
cases = {
    "stalled head": (b"GET /healthz HTTP/1.1\r\nHost: t\r\n", 408),
    "stalled body": (f"POST /v1/lease HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Length: 100\r\n\r\n{".encode(), 408),
    "silent connection": (b"", None),
    "idle keep-alive": (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 200),
}
results = {}
def run(name, data, want):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    r = Reader(s)
    start = time.monotonic()
    if data:
        s.sendall(data)
    answers = []
    while True:
        a = r.read_response(start + 6)
        if a is None:
            break
        answers.append(a.status)
    closed = r.eof
    results[name] = (answers, closed, round(time.monotonic() - start, 2))
threads = [threading.Thread(target=run, args=(n, d, w)) for n, (d, w) in cases.items()]
for t in threads:
    t.start()
for t in threads:
    t.join()
bad = []
for name, (data, want) in cases.items():
    answers, closed, took = results[name]
    print(f"     {name}: answers {answers}, closed={closed} after {took} s")
    if answers != ([] if want is None else [want]) or not closed or not 0.9 <= took <= 5:
        bad.append(name)
if bad:
    print(f"FAIL: {', '.join(bad)}: expected the answer shown and a close 1 to 5 s in",
          file=sys.stderr)
    sys.exit(1)
print("ok   stalled head and body got 408, silent and idle connections were closed")
PY
    wait_for_log '"reason":"header_timeout"' 1
    wait_for_log '"reason":"body_timeout"' 1
    stop_server
    expect_eq "header timeouts (stop line)" 1 "$(admin_stop_field header_timeouts)"
    expect_eq "body timeouts (stop line)" 1 "$(admin_stop_field body_timeouts)"
    expect_eq "idle closes (stop line)" 2 "$(admin_stop_field idle_closed)"
}

# --- 4: a flood of control-plane connections leaves the public plane its descriptors -------
fd_starvation() {
    # 1024 descriptors; the public plane may need 200 of them.
    config "$WORKDIR/c4.yaml" "  max_connections: 200"
    with_fd_limit 1024 1024
    start_server "$WORKDIR/c4.yaml"
    PORTCULLIS=$REAL_PORTCULLIS
    grep -q 'Max open files *1024 *1024' "/proc/$SERVER_PID/limits" ||
        fail "the server does not run with 1024 descriptors: $(grep 'open files' "/proc/$SERVER_PID/limits")"
    python3 - "$ADMIN_PORT" "$PORT" "$SERVER_PID" <<'PY' || fail "the public plane starved by control-plane connections"
import os, socket, sys, time
from http_client import Reader
admin, public, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
flood = []
for _ in range(1100):
    flood.append(socket.create_connection(("127.0.0.1", admin), timeout=5))
time.sleep(1)
fds = len(os.listdir(f"/proc/{pid}/fd"))
def ask(data):
    s = socket.create_connection(("127.0.0.1", public), timeout=5)
    s.sendall(data)
    a = Reader(s).read_response(time.monotonic() + 5)
    s.close()
    return a
health = ask(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
hook = ask(b"POST /webhooks/hooks HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
for s in flood:
    s.close()
print(f"     1100 control-plane connections: the server holds {fds} descriptors (limit 1024)")
if health is None or health.status != 200:
    print(f"FAIL: public /healthz: {health.describe() if health else 'no answer'}", file=sys.stderr)
    sys.exit(1)
if hook is None or hook.status != 202:
    print(f"FAIL: webhook: {hook.describe() if hook else 'no answer'}", file=sys.stderr)
    sys.exit(1)
print("ok   public /healthz 200 and a webhook 202 during the flood")
PY
    stop_server
}

# --- 5: the descriptor budget is checked at start ------------------------------------------
fd_budget() {
    # server.max_connections 10000 cannot fit in 256 descriptors: refused, saying why.
    config "$WORKDIR/c5.yaml"
    with_fd_limit 256 256
    local rc=0
    "$PORTCULLIS" serve -c "$WORKDIR/c5.yaml" 2>"$WORKDIR/c5.log" &
    local pid=$!
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid"
        wait "$pid" 2>/dev/null || true
        PORTCULLIS=$REAL_PORTCULLIS
        fail "started with 256 descriptors and server.max_connections 10000"
    fi
    wait "$pid" || rc=$?
    PORTCULLIS=$REAL_PORTCULLIS
    expect_eq "exit status with too few descriptors" 1 "$rc"
    grep -F '"msg":"cannot start: file descriptors:' "$WORKDIR/c5.log" | grep RLIMIT_NOFILE >/dev/null ||
        fail "no clear start-up error: $(cat "$WORKDIR/c5.log")"
    grep -o '"msg":"cannot start: file descriptors:[^"]*"' "$WORKDIR/c5.log"

    # A soft limit under the budget is raised to the hard limit.
    local hard
    hard=$(ulimit -Hn)
    if [[ $hard != unlimited ]] && ((hard < 2048)); then
        echo "     (hard limit $hard: the raise to the hard limit is not checked here)"
        return 0
    fi
    config "$WORKDIR/c5b.yaml" "  max_connections: 1000"
    with_fd_limit 256 -
    start_server "$WORKDIR/c5b.yaml"
    PORTCULLIS=$REAL_PORTCULLIS
    local soft
    soft=$(sed -n 's/^Max open files *\([0-9a-z]*\) .*/\1/p' "/proc/$SERVER_PID/limits")
    expect_eq "soft RLIMIT_NOFILE raised to the hard limit" "$hard" "$soft"
    grep -q '"msg":"file descriptors: soft limit raised"' "$SERVER_LOG" || fail "no log line for the raise"
    stop_server
}

# --- 6: two Authorization headers ----------------------------------------------------------
duplicate_authorization() {
    config "$WORKDIR/c6.yaml"
    start_server "$WORKDIR/c6.yaml"
    python3 - "$ADMIN_PORT" "$TOKEN" <<'PY' || fail "two Authorization headers"
import socket, sys, time
from http_client import Reader
port, token = int(sys.argv[1]), sys.argv[2]
def ask(head, body=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(head + body)
    a = Reader(s).read_response(time.monotonic() + 5)
    s.close()
    return a
good = f"Authorization: Bearer {token}\r\n".encode()
other = b"Authorization: Bearer pct_someone-else\r\n"
body = b'{"route":"hooks"}'
cl = b"Content-Length: %d\r\n" % len(body)
cases = {
    "the same token twice": (b"POST /v1/lease HTTP/1.1\r\nHost: t\r\n" + good + good + cl + b"\r\n", body, 400),
    "a good one, then another": (b"POST /v1/lease HTTP/1.1\r\nHost: t\r\n" + good + other + cl + b"\r\n", body, 400),
    "another, then a good one": (b"POST /v1/lease HTTP/1.1\r\nHost: t\r\n" + other + good + cl + b"\r\n", body, 400),
    "twice, body not sent yet": (b"POST /v1/lease HTTP/1.1\r\nHost: t\r\n" + good + good + b"Content-Length: 5000\r\n\r\n", b"", 400),
    "a GET, twice": (b"GET /v1/dead-letters HTTP/1.1\r\nHost: t\r\n" + good + good + b"\r\n", b"", 400),
    "once (control)": (b"POST /v1/lease HTTP/1.1\r\nHost: t\r\n" + good + cl + b"\r\n", body, 200),
}
bad = []
for name, (head, b, want) in cases.items():
    a = ask(head, b)
    if a is None or a.status != want:
        bad.append(f"{name}: expected {want}, got {a.describe() if a else 'nothing'}")
    elif want == 400 and b"authorization" not in a.body:
        bad.append(f"{name}: the 400 does not name the header: {a.body!r}")
if bad:
    print("FAIL: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1)
print("ok   two Authorization headers are a 400 naming the header")
PY
    stop_server
}

# --- 7: numbers in JSON bodies -------------------------------------------------------------
lease_numbers() {
    config "$WORKDIR/c7.yaml"
    start_server "$WORKDIR/c7.yaml"
    local v status body
    for v in 1e9 1.5 2.9 -1 '"3"' 0 1001 1.0 1e2 4294967297 99999999999999999999 null true; do
        status=$(curl -sS -m 5 -o "$WORKDIR/answer" -w '%{http_code}' \
            -H "Authorization: Bearer $TOKEN" --data-binary "{\"route\":\"hooks\",\"max\":$v}" \
            "http://127.0.0.1:$ADMIN_PORT/v1/lease") || status="curl-failed"
        body=$(cat "$WORKDIR/answer")
        expect_eq "lease with max $v: status (answer: $body)" 400 "$status"
        [[ $body == *'"detail":"max: '* ]] || fail "lease with max $v: the 400 does not name max: $body"
    done
    echo "     e.g. $body"
    for v in 1 3 1000; do
        status=$(curl -sS -m 5 -o "$WORKDIR/answer" -w '%{http_code}' \
            -H "Authorization: Bearer $TOKEN" --data-binary "{\"route\":\"hooks\",\"max\":$v}" \
            "http://127.0.0.1:$ADMIN_PORT/v1/lease") || status="curl-failed"
        expect_eq "lease with max $v: status (answer: $(cat "$WORKDIR/answer"))" 200 "$status"
    done
    echo "ok   max must be an integer from 1 to 1000 as written"
    stop_server
}

# --- 8: the body limit ---------------------------------------------------------------------
body_limit() {
    config "$WORKDIR/c8.yaml"
    start_server "$WORKDIR/c8.yaml"
    python3 - "$ADMIN_PORT" "$TOKEN" <<'PY' || fail "control-plane body limit"
import socket, sys, time
from http_client import Reader
port, token = int(sys.argv[1]), sys.argv[2]
limit = 64 * 1024
def ask(length, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall((f"POST /v1/lease HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Length: {length}\r\n\r\n").encode() + body)
    a = Reader(s).read_response(time.monotonic() + 5)
    s.close()
    return a
doc = b'{"route":"hooks"}'
at_limit = doc + b" " * (limit - len(doc))
a = ask(limit, at_limit)
if a is None or a.status != 200:
    sys.exit(f"FAIL: a {limit}-byte body: {a.describe() if a else 'nothing'}")
# Past the limit: 413 from the head, nothing of the body sent.
for length in (limit + 1, 1_000_000, 10**15):
    a = ask(length, b"")
    if a is None or a.status != 413:
        sys.exit(f"FAIL: Content-Length {length}: {a.describe() if a else 'no answer from the head'}")
print(f"ok   {limit} bytes served, {limit + 1} and more refused 413 from the head")
PY
    stop_server
}

failed=()
# ADMIN_LIMITS_SECTIONS="timeouts body_limit" runs only those (while working on one).
for section in ${ADMIN_LIMITS_SECTIONS:-unauthenticated_bodies connection_cap timeouts \
    fd_starvation fd_budget duplicate_authorization lease_numbers body_limit}; do
    echo "--- $section"
    # Each section's server logs go to their own files (server-<n>.log, n from 10, 20...).
    _server_count=$((_server_count + 10 - _server_count % 10))
    set +e
    (
        set -e
        trap '[[ -z $SERVER_PID ]] || { kill -9 "$SERVER_PID"; wait "$SERVER_PID"; } 2>/dev/null || true' EXIT
        "$section"
    )
    rc=$?
    set -e
    if ((rc != 0)); then
        failed+=("$section")
        echo "--- $section FAILED"
    fi
done
((${#failed[@]} == 0)) || fail "sections failed: ${failed[*]}"
echo "all sections passed"
