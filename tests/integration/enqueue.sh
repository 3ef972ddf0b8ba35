#!/usr/bin/env bash
# POST /v1/routes/{route}/jobs: a job enqueued from inside, through the control plane. Tokens
# and scopes (401, 403, 404 alike for a route outside the scope and one that does not exist),
# 413 past server.limits.body_bytes (not the control plane's 64 KiB), 202 with the job's id and a
# lease right after it that hands out the body byte for byte with the token that sent it, the
# route's dedup (200 duplicate, 409 conflict), both shards taking the work, the job.enqueued
# event and the metric, and kill -9 right after the 202 losing nothing. (A spool that refuses
# writes: enqueue_disk_full.sh.)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 sha256sum

SPOOL="$WORKDIR/spool"
new_token() { "$PORTCULLIS" token new | sed -n 's/^token: *//p'; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
OPS=$(new_token)
GITHUB_ONLY=$(new_token)
READER=$(new_token)
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2, limits: {body_bytes: 200000}}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}, keep_headers: [Authorization]}
  once: {path: /webhooks/once, verify: {scheme: none}, dedup: {key: "json:/delivery", window: 1h}}
tokens:
  ops: {sha256: "$(sha "$OPS")", scopes: ["jobs:*", "events:read", "metrics:read"]}
  github_only: {sha256: "$(sha "$GITHUB_ONLY")", scopes: ["jobs:enqueue:github"]}
  reader: {sha256: "$(sha "$READER")", scopes: ["jobs:read"]}
EOF
export GH_SECRET=enqueue-test-secret

# enqueue ROUTE TOKEN FILE [curl arguments...]: POST /v1/routes/ROUTE/jobs with the file's bytes;
# sets API_STATUS, API_BODY (as lib.sh's api does, for expect_api and py).
# shellcheck disable=SC2034
enqueue() {
    local route=$1 token=$2 file=$3
    shift 3
    local args=(-sS -m 30 -o "$WORKDIR/api-body" -D "$WORKDIR/api-headers" -w '%{http_code}'
        -X POST --data-binary "@$file")
    [[ -z $token ]] || args+=(-H "Authorization: Bearer $token")
    API_STATUS=$(curl "${args[@]}" "$@" "http://127.0.0.1:$ADMIN_PORT/v1/routes/$route/jobs") ||
        API_STATUS="curl-failed-$?"
    API_BODY=$(cat "$WORKDIR/api-body")
}
# expect_enqueued WHAT: the last answer is 202 {"id":"...","status":"queued"}; sets JOB_ID.
expect_enqueued() {
    expect_api "$1" 202
    expect_eq "$1: answer's status field" queued "$(py 'j["status"]')"
    JOB_ID=$(py 'j["id"]')
    [[ $JOB_ID =~ ^[A-Za-z0-9_-]{26}$ ]] || fail "$1: job id '$JOB_ID' is not a job id"
}

start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"

# Every job.enqueued event of the run, for the shard check below.
curl -sS -N -m 60 -H "Authorization: Bearer $OPS" \
    "http://127.0.0.1:$ADMIN_PORT/events?types=job.enqueued" >"$WORKDIR/events.sse" 2>/dev/null &
events_pid=$!
at_exit "kill $events_pid 2>/dev/null || true"
sleep 0.3 # the stream is open before the first enqueue

# --- tokens and scopes: the same answers as the rest of the API ---
printf '{"manual":true}' >"$WORKDIR/small"
enqueue github "" "$WORKDIR/small"
expect_api "no token" 401
expect_eq "no token: answer" '{"error":"unauthorized"}' "$API_BODY"
enqueue github "pct_not-a-real-token" "$WORKDIR/small"
expect_api "unknown token" 401
enqueue github "$READER" "$WORKDIR/small"
expect_api "a token without jobs:enqueue anywhere" 403
expect_eq "403: answer" '{"error":"forbidden"}' "$API_BODY"
enqueue once "$GITHUB_ONLY" "$WORKDIR/small"
expect_api "a route outside the token's scopes" 404
outside=$API_BODY
enqueue nosuchroute "$GITHUB_ONLY" "$WORKDIR/small"
expect_api "a route that does not exist" 404
expect_eq "404 of a missing route = 404 of a route outside the scopes" "$outside" "$API_BODY"
enqueue nosuchroute "$OPS" "$WORKDIR/small"
expect_api "a route that does not exist, with jobs:*" 404
expect_eq "404 with jobs:* = 404 outside the scopes" "$outside" "$API_BODY"
api_as "$OPS" GET /v1/routes/github/jobs
expect_api "GET on the endpoint" 405
# Refused from the head: answered before the body is sent, and the connection closed.
python3 - "$ADMIN_PORT" "$GITHUB_ONLY" "$READER" <<'PY' || fail "refusals before the body"
import socket, sys
port, github_only, reader = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def head_only(route, token):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall((f"POST /v1/routes/{route}/jobs HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {token}\r\nContent-Length: 150000\r\n\r\n").encode())
    data = b""
    while True:  # the server closes after its answer: no body byte was sent
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode()
for route, token, status in [("once", github_only, "404"), ("nosuchroute", github_only, "404"),
                             ("github", reader, "403")]:
    got = head_only(route, token)
    assert got.startswith(f"HTTP/1.1 {status} "), (route, got)
    assert "connection: close" in got.lower(), (route, got)
PY

# --- 413: server.limits.body_bytes (200000 here), not the control plane's 64 KiB ---
python3 -c 'import sys; sys.stdout.write("x" * 200001)' >"$WORKDIR/too-big"
enqueue github "$OPS" "$WORKDIR/too-big"
expect_api "a body over server.limits.body_bytes" 413
python3 -c 'import sys; sys.stdout.write("y" * 150000)' >"$WORKDIR/big"
enqueue github "$OPS" "$WORKDIR/big"
expect_enqueued "a body of 150000 bytes (over 64 KiB, under body_bytes)"
BIG=$JOB_ID

# --- 202, then a lease right after it: the body byte for byte, the token that sent it ---
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) + b"\r\n\xff\x00 end")' >"$WORKDIR/binary"
enqueue github "$OPS" "$WORKDIR/binary" -H "X-Trigger: manual" -H "Content-Type: application/octet-stream"
expect_enqueued "a binary body to a route that verifies signatures (none needed here)"
J1=$JOB_ID
api_as "$OPS" POST /v1/lease '{"route":"github","max":10,"visibility":"1h"}'
expect_api "lease right after the 202" 200
printf %s "$API_BODY" >"$WORKDIR/lease.json"
python3 - "$WORKDIR/lease.json" "$J1" "$BIG" "$WORKDIR/binary" "$WORKDIR/big" <<'PY' || fail "lease: see the assertion above"
import base64, json, sys
jobs = {j["id"]: j for j in json.load(open(sys.argv[1]))["jobs"]}
assert set(jobs) == {sys.argv[2], sys.argv[3]}, f"leased {sorted(jobs)}"
job = jobs[sys.argv[2]]
assert job["body_encoding"] == "base64", job["body_encoding"]
assert base64.b64decode(job["body"], validate=True) == open(sys.argv[4], "rb").read(), "body"
assert job["enqueued_by"] == "ops", job.get("enqueued_by")
assert job["source_ip"] == "127.0.0.1", job["source_ip"]
assert job["headers"].get("x-trigger") == "manual", job["headers"]
assert job["headers"].get("content-type") == "application/octet-stream", job["headers"]
# The control plane's token is never stored, whatever the route's keep_headers says.
assert "authorization" not in job["headers"], job["headers"]
big = jobs[sys.argv[3]]
assert big["body"].encode() == open(sys.argv[5], "rb").read() and big["enqueued_by"] == "ops"
PY
api_as "$OPS" GET "/v1/jobs/$J1"
expect_api "job state" 200
expect_eq "job state: leased, enqueued by ops" "leased ops" "$(py 'j["state"] + " " + j["enqueued_by"]')"

# --- the route's dedup applies: a second copy is a duplicate, another body a conflict ---
printf '{"delivery":"d-1","n":1}' >"$WORKDIR/d1"
printf '{"delivery":"d-1","n":2}' >"$WORKDIR/d1-other"
enqueue once "$OPS" "$WORKDIR/d1"
expect_enqueued "first copy"
FIRST=$JOB_ID
enqueue once "$OPS" "$WORKDIR/d1"
expect_api "second copy" 200
expect_eq "second copy: answer" "{\"id\":\"$FIRST\",\"status\":\"duplicate\"}" "$API_BODY"
enqueue once "$OPS" "$WORKDIR/d1-other"
expect_api "same key, another body" 409
expect_eq "conflict: answer" '{"error":"conflict"}' "$API_BODY"
# A webhook on the public plane is deduplicated against the enqueued job too.
post /webhooks/once "$WORKDIR/d1"
expect_eq "the public plane's copy: status" 200 "$HTTP_STATUS"
expect_eq "the public plane's copy: answer" "{\"id\":\"$FIRST\",\"status\":\"duplicate\"}" "$HTTP_BODY"

# --- both shards take the work ---
for i in 1 2 3 4 5 6; do
    printf '{"n":%d}' "$i" >"$WORKDIR/s$i"
    enqueue github "$OPS" "$WORKDIR/s$i"
    expect_enqueued "job $i of 6"
done
python3 - "$WORKDIR/events.sse" <<'PY' || fail "job.enqueued events: $(cat "$WORKDIR/events.sse")"
import json, sys, time
for _ in range(100):
    events = [json.loads(l[6:]) for l in open(sys.argv[1]) if l.startswith("data: ")]
    if len(events) >= 10:
        break
    time.sleep(0.1)
# big, binary, once x2 (queued, duplicate), 6 jobs; the conflict is no event of this type
assert len(events) == 10, f"{len(events)} events"
shards = {e["shard"] for e in events}
assert shards == {0, 1}, f"shards {shards}"
assert all(e["token"] == "ops" for e in events), events
e = [e for e in events if e["route"] == "once"]
assert [x["outcome"] for x in e] == ["queued", "duplicate"], e
assert [x["status"] for x in e] == [202, 200], e
assert e[0]["job"] == e[1]["job"], e
assert all(x["peer"] == "127.0.0.1" for x in events), events
PY

# --- metrics: enqueues by route and outcome ---
api_as "$OPS" GET /metrics
expect_api "metrics" 200
grep -qx 'portcullis_enqueues_total{route="github",outcome="queued"} 8' "$WORKDIR/api-body" ||
    fail "metrics: github queued 8: $(grep portcullis_enqueues "$WORKDIR/api-body")"
grep -qx 'portcullis_enqueues_total{route="once",outcome="duplicate"} 1' "$WORKDIR/api-body" ||
    fail "metrics: once duplicate 1: $(grep portcullis_enqueues "$WORKDIR/api-body")"
grep -qx 'portcullis_enqueues_total{route="once",outcome="conflict"} 1' "$WORKDIR/api-body" ||
    fail "metrics: once conflict 1: $(grep portcullis_enqueues "$WORKDIR/api-body")"
grep -q 'portcullis_requests_total{route="github"' "$WORKDIR/api-body" &&
    fail "enqueues counted as public-plane requests: $(grep portcullis_requests_total "$WORKDIR/api-body")"

# --- kill -9 right after the 202: the job is there after the restart ---
printf '{"durable":"yes"}' >"$WORKDIR/durable"
enqueue github "$OPS" "$WORKDIR/durable"
expect_enqueued "the job before kill -9"
DURABLE=$JOB_ID
kill9_server
kill "$events_pid" 2>/dev/null || true
start_server "$WORKDIR/config.yaml"
api_as "$OPS" GET "/v1/jobs/$DURABLE"
expect_api "the job after kill -9" 200
expect_eq "after kill -9: queued, enqueued by ops" "queued ops" "$(py 'j["state"] + " " + j["enqueued_by"]')"
spool_dump "$SPOOL" "$WORKDIR/dump.jsonl"
check_job "$WORKDIR/dump.jsonl" "$DURABLE" github "$WORKDIR/durable" '!authorization'
# Dedup survives the restart as for public jobs.
enqueue once "$OPS" "$WORKDIR/d1"
expect_api "a copy after the restart" 200
expect_eq "a copy after the restart: answer" "{\"id\":\"$FIRST\",\"status\":\"duplicate\"}" "$API_BODY"
stop_server
grep -q 'enqueues' "$SERVER_LOG" || fail "the control plane's stop line counts no enqueues"
echo "enqueue: scopes, 413, 202 + lease byte for byte, dedup, two shards, events, metrics, kill -9"
