#!/usr/bin/env bash
# GET /events (SPEC sections 5 and 9) with curl -N as the subscriber: the events of the
# requests made during the test arrive in order with their fields; a reconnect with
# Last-Event-ID gets exactly the missed ones; ?types= filters; the scope events:read is needed
# (401 without a token, 403 with !events:read); a subscriber that stops reading is cut (and
# counted) while webhooks keep being answered and another subscriber keeps receiving; a job
# whose last lease ran out is told as job.dead; past admin.events.subscribers a stream is
# refused 503; a quiet stream gets a keep-alive comment every 15 s.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 sha256sum openssl

new_token() { "$PORTCULLIS" token new | sed -n 's/^token: *//p'; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
WATCHER=$(new_token)
DENIED=$(new_token)
WORKER=$(new_token)
export GH_SECRET=events-test-secret
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2}
admin: {listen: "127.0.0.1:0", events: {buffer: 100000, subscribers: 4, backlog: 256KiB}}
spool: {dir: $WORKDIR/spool, durability: fsync}
routes:
  open: {path: /webhooks/open, verify: {scheme: none}}
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
  fragile: {path: /webhooks/fragile, verify: {scheme: none}, max_attempts: 1}
tokens:
  watcher: {sha256: "$(sha "$WATCHER")", scopes: ["events:read"]}
  denied: {sha256: "$(sha "$DENIED")", scopes: ["*:*", "!events:read"]}
  worker: {sha256: "$(sha "$WORKER")", scopes: ["jobs:*"]}
EOF
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
EVENTS="http://127.0.0.1:$ADMIN_PORT/events"

# status URL [curl args]: the status of a GET that is given up after 2 s (a stream never ends).
status() {
    local url=$1
    shift
    curl -sS -m 2 -o /dev/null -w '%{http_code}' "$@" "$url" 2>/dev/null || true
}

# --- who may subscribe, and bad requests ---
expect_eq "no token" 401 "$(status "$EVENTS")"
expect_eq "!events:read" 403 "$(status "$EVENTS" -H "Authorization: Bearer $DENIED")"
expect_eq "bad types" 400 "$(status "$EVENTS?types=nothing.*" -H "Authorization: Bearer $WATCHER")"
expect_eq "empty types" 400 "$(status "$EVENTS?types=" -H "Authorization: Bearer $WATCHER")"
expect_eq "non-numeric Last-Event-ID" 400 \
    "$(status "$EVENTS" -H "Authorization: Bearer $WATCHER" -H "Last-Event-ID: abc")"
expect_eq "huge Last-Event-ID" 400 \
    "$(status "$EVENTS" -H "Authorization: Bearer $WATCHER" -H "Last-Event-ID: 99999999999999999999999")"
expect_eq "POST /events" 405 "$(status "$EVENTS" -X POST -H "Authorization: Bearer $WATCHER")"

# subscribe NAME [curl args]: curl -N in the background, its stream in $WORKDIR/NAME.sse, its
# head in NAME.head; returns once the head is in. SUB_PID is curl's. SUB_QUERY: a query string.
subscribe() {
    local name=$1
    shift
    : >"$WORKDIR/$name.sse"
    : >"$WORKDIR/$name.head"
    curl -sS -N -m 120 -D "$WORKDIR/$name.head" -H "Authorization: Bearer $WATCHER" "$@" \
        -o "$WORKDIR/$name.sse" "$EVENTS${SUB_QUERY:-}" 2>"$WORKDIR/$name.err" &
    SUB_PID=$!
    at_exit "kill $SUB_PID 2>/dev/null"
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q $'^\r$' "$WORKDIR/$name.head" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "$name: no answer head in 5 s: $(cat "$WORKDIR/$name.head" "$WORKDIR/$name.err")"
}

# wait_event FILE TYPE [COUNT]: until FILE holds COUNT (default 1) events of TYPE (20 s).
wait_event() {
    local i n
    for ((i = 0; i < 400; i++)); do
        n=$(grep -c "^event: $2\$" "$1" || true)
        ((n >= ${3:-1})) && return 0
        sleep 0.05
    done
    fail "no $2 event (${3:-1} wanted) in $1 within 20 s: $(tail -c 2000 "$1")"
}

# events FILE: the stream's events, one JSON object a line, after checking that each frame's
# id: and event: lines agree with its data.
events() {
    python3 - "$1" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
for frame in text.split("\n\n"):
    lines = [l for l in frame.split("\n") if l and not l.startswith(":")]
    if not lines:
        continue
    f = dict(l.split(": ", 1) for l in lines)
    d = json.loads(f["data"])
    assert str(d["id"]) == f["id"] and d["type"] == f["event"], frame
    print(json.dumps(d))
PY
}

stop_sub() {
    kill "$SUB_PID" 2>/dev/null || true
    wait "$SUB_PID" 2>/dev/null || true
}

# --- one subscriber sees the requests of the test, in order, with their fields ---
subscribe live
grep -qi '^content-type: text/event-stream' "$WORKDIR/live.head" ||
    fail "live: not an event stream: $(cat "$WORKDIR/live.head")"
printf '{"n":1}' >"$WORKDIR/b1"
post /webhooks/open "$WORKDIR/b1" -H 'User-Agent: events-test'
expect_queued "open webhook"
J1=$JOB_ID
post /webhooks/github "$WORKDIR/b1" -H 'X-Hub-Signature-256: sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' \
    -H 'X-GitHub-Delivery: d-1' -H 'User-Agent: events-test'
expect_eq "bad signature" 401 "$HTTP_STATUS"
curl -sS -m 10 -o "$WORKDIR/lease" -H "Authorization: Bearer $WORKER" \
    --data-binary '{"route":"open","max":1}' "http://127.0.0.1:$ADMIN_PORT/v1/lease"
grep -q "$J1" "$WORKDIR/lease" || fail "lease did not hand out $J1: $(cat "$WORKDIR/lease")"
expect_eq "ack" 200 "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $WORKER" "http://127.0.0.1:$ADMIN_PORT/v1/jobs/$J1/ack")"
wait_event "$WORKDIR/live.sse" job.acked
events "$WORKDIR/live.sse" >"$WORKDIR/live.json"
python3 - "$WORKDIR/live.json" "$J1" <<'PY' || fail "live stream: $(cat "$WORKDIR/live.json")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
j1 = sys.argv[2]
types = [e["type"] for e in ev]
want = ["webhook.received", "job.queued", "webhook.rejected", "job.leased", "job.acked"]
assert types == want, types
ids = [e["id"] for e in ev]
assert ids == list(range(ids[0], ids[0] + len(ids))), ids
r, q, rej, l, a = ev
assert r["route"] == "open" and r["request_id"] == j1 and r["status"] == 202, r
assert r["outcome"] == "queued" and r["bytes"] == 7 and r["peer"] == "127.0.0.1", r
assert q["route"] == "open" and q["job"] == j1 and "peer" not in q, q
assert rej["route"] == "github" and rej["status"] == 401, rej
assert rej["reason"] == "signature_mismatch" and rej["peer"] == "127.0.0.1", rej
# The allow-listed headers, the signature cut to 12 characters; never the body.
assert rej["headers"]["x-hub-signature-256"] == "sha256=01234", rej
assert rej["headers"]["x-github-delivery"] == "d-1", rej
assert rej["headers"]["user-agent"] == "events-test", rej
assert '{"n":1}' not in json.dumps(rej) and "n\\\":1" not in json.dumps(rej), rej
assert l["job"] == j1 and l["attempt"] == 1 and a["job"] == j1 and a["route"] == "open", (l, a)
for e in ev:
    assert e["ts"].endswith("Z") and len(e["ts"]) == 24, e
PY
stop_sub
LAST=$(tail -n 1 "$WORKDIR/live.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

# --- reconnect with Last-Event-ID: exactly the events missed meanwhile ---
post /webhooks/open "$WORKDIR/b1"
expect_queued "missed 1"
M1=$JOB_ID
post /webhooks/github "$WORKDIR/b1"
expect_eq "missed 2: no signature" 401 "$HTTP_STATUS"
post /webhooks/open "$WORKDIR/b1"
expect_queued "missed 3"
M3=$JOB_ID
subscribe again -H "Last-Event-ID: $LAST"
wait_event "$WORKDIR/again.sse" job.queued 2
sleep 0.3 # nothing more may come
events "$WORKDIR/again.sse" >"$WORKDIR/again.json"
python3 - "$WORKDIR/again.json" "$LAST" "$M1" "$M3" <<'PY' || fail "replay: $(cat "$WORKDIR/again.json")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
last, m1, m3 = int(sys.argv[2]), sys.argv[3], sys.argv[4]
assert [e["id"] for e in ev] == list(range(last + 1, last + 6)), [e["id"] for e in ev]
assert [e["type"] for e in ev] == ["webhook.received", "job.queued", "webhook.rejected",
                                   "webhook.received", "job.queued"], ev
assert ev[1]["job"] == m1 and ev[4]["job"] == m3, ev
assert ev[2]["reason"] == "signature_missing", ev[2]
PY
stop_sub

# --- ?types= filters (a replay of everything held, from id 0) ---
SUB_QUERY='?types=job.*,webhook.rejected' subscribe filtered -H "Last-Event-ID: 0"
wait_event "$WORKDIR/filtered.sse" job.queued 3
events "$WORKDIR/filtered.sse" >"$WORKDIR/filtered.json"
python3 - "$WORKDIR/filtered.json" <<'PY' || fail "filter: $(cat "$WORKDIR/filtered.json")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
types = [e["type"] for e in ev]
assert types == ["job.queued", "webhook.rejected", "job.leased", "job.acked", "job.queued",
                 "webhook.rejected", "job.queued"], types
assert ev[0]["id"] == 2, ev[0]
PY
stop_sub

# --- a subscriber that stops reading is cut; webhooks and another subscriber go on ---
subscribe steady -H "Last-Event-ID: 0"
python3 - "$ADMIN_PORT" "$WATCHER" "$PORT" >"$WORKDIR/slow.out" 2>&1 <<'PY' &
import http.client, socket, sys, time
admin, token, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", admin))
s.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
head = s.recv(200)
assert head.startswith(b"HTTP/1.1 200"), head
print("subscribed", flush=True)
# Webhooks while this subscriber reads nothing: refused ones (cheap, each a webhook.rejected
# event of about 500 bytes) and accepted ones, on one keep-alive connection.
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
codes = {}
ua = "slow-reader-test-" + "x" * 100
for i in range(4000):
    path, hdrs = ("/webhooks/open", {}) if i % 100 == 0 else ("/webhooks/github", {"User-Agent": ua})
    c.request("POST", path, body=b"{}", headers=hdrs)
    r = c.getresponse()
    r.read()
    codes[r.status] = codes.get(r.status, 0) + 1
print("codes", sorted(codes.items()), flush=True)
time.sleep(1)
# Now read: the stream must end (cut), well before everything was sent.
s.settimeout(10)
got = 0
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
except ConnectionResetError:
    pass
print("cut after", got, flush=True)
PY
SLOW_PID=$!
at_exit "kill $SLOW_PID 2>/dev/null"
wait "$SLOW_PID" || fail "slow reader client failed: $(cat "$WORKDIR/slow.out")"
grep -q '^codes \[(202, 40), (401, 3960)\]$' "$WORKDIR/slow.out" ||
    fail "webhooks were not all answered while a subscriber stalled: $(cat "$WORKDIR/slow.out")"
grep -q 'event stream cut' "$SERVER_LOG" || fail "no 'event stream cut' line: $(cat "$WORKDIR/slow.out")"
# The steady subscriber got every event, the last one included.
wait_event "$WORKDIR/steady.sse" job.queued 43
events "$WORKDIR/steady.sse" >"$WORKDIR/steady.json"
python3 - "$WORKDIR/steady.json" <<'PY' || fail "steady subscriber: $(tail -n 3 "$WORKDIR/steady.json")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
ids = [e["id"] for e in ev]
assert ids == list(range(1, len(ids) + 1)), "ids not contiguous"
assert sum(e["type"] == "webhook.rejected" for e in ev) == 3962, "rejections missing"
PY
CUT_AT=$(sed -n 's/^cut after //p' "$WORKDIR/slow.out")
TOTAL=$(wc -c <"$WORKDIR/steady.sse")
((CUT_AT < TOTAL / 2)) || fail "the slow reader got $CUT_AT bytes of $TOTAL: it was not cut"
stop_sub

# --- a job whose last lease runs out: job.dead, once the next lease finds it ---
post /webhooks/fragile "$WORKDIR/b1"
expect_queued "fragile webhook"
FRAGILE=$JOB_ID
lease_fragile() {
    curl -sS -m 10 -H "Authorization: Bearer $WORKER" \
        --data-binary '{"route":"fragile","visibility":"1s","wait":"5s"}' \
        "http://127.0.0.1:$ADMIN_PORT/v1/lease"
}
lease_fragile | grep "$FRAGILE" >/dev/null || fail "the fragile job was not leased"
sleep 1.2
lease_fragile >/dev/null # finds the lease run out: the job is dead (one attempt)
SUB_QUERY='?types=job.dead' subscribe dead -H "Last-Event-ID: 0"
wait_event "$WORKDIR/dead.sse" job.dead
events "$WORKDIR/dead.sse" >"$WORKDIR/dead.json"
python3 - "$WORKDIR/dead.json" "$FRAGILE" <<'PY' || fail "job.dead: $(cat "$WORKDIR/dead.json")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert len(ev) == 1, ev
d = ev[0]
assert d["job"] == sys.argv[2] and d["route"] == "fragile" and d["attempt"] == 1 and "sink" not in d, d
PY
stop_sub

# --- admin.events.subscribers (4): the fifth stream is refused; quiet streams get keep-alives ---
# (The streams stopped above may take the control plane a moment to see closed: a stream refused
# while they still count is opened again.)
pids=()
for n in 1 2 3 4; do
    for _ in $(seq 20); do
        : >"$WORKDIR/quiet-$n.head"
        curl -sS -N -m 40 -H "Authorization: Bearer $WATCHER" -o "$WORKDIR/quiet-$n.sse" \
            -D "$WORKDIR/quiet-$n.head" "$EVENTS?types=config.*" 2>"$WORKDIR/quiet-$n.err" &
        pid=$!
        for _ in $(seq 100); do
            grep -q $'^\r$' "$WORKDIR/quiet-$n.head" && break
            sleep 0.02
        done
        grep -q '^HTTP/1.1 200' "$WORKDIR/quiet-$n.head" && break
        kill "$pid" 2>/dev/null || true
        sleep 0.1
    done
    grep -q '^HTTP/1.1 200' "$WORKDIR/quiet-$n.head" ||
        fail "quiet stream $n: $(cat "$WORKDIR/quiet-$n.head" "$WORKDIR/quiet-$n.err")"
    pids+=("$pid")
    at_exit "kill $pid 2>/dev/null"
done
expect_eq "a fifth stream" 503 "$(status "$EVENTS" -H "Authorization: Bearer $WATCHER" -D "$WORKDIR/fifth.head")"
grep -qi '^Retry-After: 5' "$WORKDIR/fifth.head" || fail "the 503 has no Retry-After: 5"
# Nothing of type config.* happens: only keep-alive comments, the first within 15 s (+ a turn).
for _ in $(seq 180); do
    grep -q '^: keep-alive$' "$WORKDIR/quiet-1.sse" && break
    sleep 0.1
done
grep -q '^: keep-alive$' "$WORKDIR/quiet-1.sse" ||
    fail "no keep-alive on a quiet stream within 18 s: $(cat "$WORKDIR/quiet-1.sse")"
grep -qv '^: keep-alive$\|^$' "$WORKDIR/quiet-1.sse" && fail "a quiet stream got more than keep-alives"
kill "${pids[@]}" 2>/dev/null || true
stop_server
grep -F '"msg":"control plane stopped"' "$SERVER_LOG" | grep '"event_streams_cut":1,' >/dev/null ||
    fail "the stop line does not count one stream cut: $(grep -F 'control plane stopped' "$SERVER_LOG")"
grep -F '"msg":"control plane stopped"' "$SERVER_LOG" | grep -E '"event_streams_refused":[1-9][0-9]*[,}]' >/dev/null ||
    fail "the stop line does not count the stream refused: $(grep -F 'control plane stopped' "$SERVER_LOG")"
echo "events: ok"
