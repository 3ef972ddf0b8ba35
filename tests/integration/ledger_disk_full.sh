#!/usr/bin/env bash
# Ledger on a full disk (issue 11): the spool and its ledger.log on a small tmpfs that runs out
# of space. An ack, a nack, a bulk ack and a dead-letter replay whose ledger write fails are
# answered 503, and so is their retry: the change is rolled back in the job table, so the job
# keeps its state (leased, or dead) and is never shown done while ledger.log lacks the op. Once
# space returns, the retry is answered 200, ledger.log holds its op, and after kill -9 and a
# restart the job has the state that was answered. An /events subscriber sees a settlement's
# event (job.acked, job.nacked, job.replayed) only once it is durable: never for a refused one.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 sha256sum

[[ $(id -u) -eq 0 ]] || skip "mounting a tmpfs needs root"
fs="$WORKDIR/fs"
mkdir -p "$fs"
mount -t tmpfs -o size=4m tmpfs "$fs" 2>/dev/null || skip "cannot mount a tmpfs here"
at_exit "umount -l '$fs' 2>/dev/null || true"

SPOOL="$fs/spool"
TOKEN=$("$PORTCULLIS" token new | sed -n 's/^token: *//p')
# work: the jobs under test; fragile: one attempt, for a dead letter; pad: a job whose lease
# and nack fill the ledger's last page.
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 1}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync, segment_size: 1MiB}
routes:
  work: {path: /webhooks/work, verify: {scheme: none}}
  fragile: {path: /webhooks/fragile, verify: {scheme: none}, max_attempts: 1}
  pad: {path: /webhooks/pad, verify: {scheme: none}, max_attempts: 1000}
tokens:
  worker: {sha256: "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)", scopes: ["jobs:*", "events:read"]}
EOF

webhook() {
    printf '{"job":"%s"}' "$2" >"$WORKDIR/body"
    post "/webhooks/$1" "$WORKDIR/body"
    expect_queued "webhook to $1"
}
state_of() {
    api GET "/v1/jobs/$1"
    expect_api "GET job $1" 200
    py 'j["state"]'
}
# expect_refused WHAT: the last answer is the ledger's 503.
expect_refused() {
    expect_api "$1" 503
    expect_eq "$1: body" '{"error":"unavailable"}' "$API_BODY"
    grep -qi '^Retry-After: [0-9]' "$WORKDIR/api-headers" || fail "$1: 503 without Retry-After"
}
# ledger_has KIND ID: ledger.log holds a whole record of that kind for that job.
ledger_has() {
    python3 - "$SPOOL/ledger.log" "$1" "$2" <<'PY' || fail "ledger.log has no $1 record for $2"
import sys
path, kind, text = sys.argv[1:]
kinds = {"lease": 1, "ack": 2, "nack": 3, "dead": 4, "replay": 5, "expire": 6}
alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
n = 0
for ch in text.lower():
    n = n * 32 + alphabet.index(ch)
job = n.to_bytes(16, "big")
data = open(path, "rb").read()
for at in range(0, len(data) - 47, 48):
    rec = data[at:at + 48]
    if rec[:4] == b"PCL1" and rec[4] == kinds[kind] and rec[24:40] == job:
        sys.exit(0)
sys.exit(1)
PY
}

start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
curl -sS -N -m 300 -D "$WORKDIR/events.head" -H "Authorization: Bearer $TOKEN" \
    -o "$WORKDIR/events.sse" "http://127.0.0.1:$ADMIN_PORT/events?types=job.*" 2>"$WORKDIR/events.err" &
EVENTS_PID=$!
at_exit "kill $EVENTS_PID 2>/dev/null"
for _ in $(seq 1 100); do
    grep -q $'^\r$' "$WORKDIR/events.head" 2>/dev/null && break
    sleep 0.05
done
grep -q '^HTTP/1.1 200' "$WORKDIR/events.head" 2>/dev/null ||
    fail "no event stream: $(cat "$WORKDIR/events.head" "$WORKDIR/events.err" 2>/dev/null)"

webhook work ack
J_ACK=$JOB_ID
webhook work nack
J_NACK=$JOB_ID
webhook work bulk-1
J_BULK1=$JOB_ID
webhook work bulk-2
J_BULK2=$JOB_ID
webhook fragile replay
J_DEAD=$JOB_ID
webhook pad pad
J_PAD=$JOB_ID

# While there is space: the four work jobs leased for an hour, the fragile one dead.
# The control plane tails the spool: a job may be indexed a moment after its 202.
leased=()
for _ in $(seq 1 20); do
    api POST /v1/lease '{"route":"work","max":4,"visibility":"1h","wait":"1s"}'
    expect_api "lease work" 200
    read -r -a got <<<"$(py '" ".join(x["id"] for x in j["jobs"])')"
    leased+=("${got[@]}")
    ((${#leased[@]} >= 4)) && break
done
expect_eq "leased work jobs" "$(printf '%s\n' "$J_ACK" "$J_NACK" "$J_BULK1" "$J_BULK2" | LC_ALL=C sort)" \
    "$(printf '%s\n' "${leased[@]}" | LC_ALL=C sort)"
api POST /v1/lease '{"route":"fragile","visibility":"1h","wait":"5s"}'
expect_eq "fragile job leased" "$J_DEAD" "$(py 'j["jobs"][0]["id"]')"
api POST "/v1/jobs/$J_DEAD/nack"
expect_api "nack at max_attempts" 200
expect_eq "fragile job" dead "$(state_of "$J_DEAD")"

# Fill the file system, then lease and nack the pad job until the ledger's last page is full
# too: tmpfs allocates whole pages, so appends fail only once that page has no room for a record
# (the one that straddles its end is a short write, which must not be left torn in the file).
fallocate -l "$(($(stat -f -c '%a*%S' "$fs")))" "$fs/filler" 2>/dev/null ||
    dd if=/dev/zero of="$fs/filler" bs=4k status=none 2>/dev/null || true
pads=$(python3 - "$ADMIN_PORT" "$TOKEN" "$J_PAD" <<'PY'
import http.client, json, sys
port, token, pad = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
def call(path, body):
    c.request("POST", path, body=json.dumps(body), headers=h)
    r = c.getresponse()
    return r.status, r.getheader("Retry-After"), r.read()
for n in range(1, 201):
    status, _, answer = call("/v1/lease", {"route": "pad", "visibility": "1h", "wait": "2s"})
    if status != 200 or len(json.loads(answer)["jobs"]) != 1:
        sys.exit(f"FAIL: pad lease {n}: {status} {answer!r}")
    status, retry, answer = call(f"/v1/jobs/{pad}/nack", {"delay": "0s"})
    if status == 200:
        continue
    if status != 503 or answer != b'{"error":"unavailable"}' or not retry:
        sys.exit(f"FAIL: pad nack {n} on a full disk: {status} {answer!r}, Retry-After {retry}")
    print(n)
    sys.exit(0)
sys.exit("FAIL: the ledger never filled: 200 pad nacks answered 200")
PY
) || fail "filling the ledger's last page (see above)"
wait_for_log "ledger write failed" 1
ledger_size=$(stat -c %s "$SPOOL/ledger.log")
echo "ledger full after $pads pad rounds ($ledger_size bytes)"
((ledger_size % 48 == 0)) || fail "ledger.log ends in a torn record ($ledger_size bytes)"
expect_eq "pad job after its refused nack" leased "$(state_of "$J_PAD")"

# Each settling call is refused, and so is its retry: the first one's change was rolled back.
api POST "/v1/jobs/$J_ACK/ack"
expect_refused "ack on a full disk"
api POST "/v1/jobs/$J_ACK/ack"
expect_refused "ack retried on a full disk"
expect_eq "acked job while the disk is full" leased "$(state_of "$J_ACK")"

api POST "/v1/jobs/$J_NACK/nack" '{"delay":"1h"}'
expect_refused "nack on a full disk"
api POST "/v1/jobs/$J_NACK/nack" '{"delay":"1h"}'
expect_refused "nack retried on a full disk"
expect_eq "nacked job while the disk is full" leased "$(state_of "$J_NACK")"

api POST /v1/ack "{\"ids\":[\"$J_BULK1\",\"$J_BULK2\"]}"
expect_refused "bulk ack on a full disk"
api POST /v1/ack "{\"ids\":[\"$J_BULK1\",\"$J_BULK2\"]}"
expect_refused "bulk ack retried on a full disk"
expect_eq "bulk-acked job 1 while the disk is full" leased "$(state_of "$J_BULK1")"
expect_eq "bulk-acked job 2 while the disk is full" leased "$(state_of "$J_BULK2")"

api POST "/v1/dead-letters/$J_DEAD/replay"
expect_refused "replay on a full disk"
api POST "/v1/dead-letters/$J_DEAD/replay"
expect_refused "replay retried on a full disk"
expect_eq "replayed job while the disk is full" dead "$(state_of "$J_DEAD")"
api GET "/v1/dead-letters?route=fragile"
expect_eq "dead letters while the disk is full" "$J_DEAD" "$(py '" ".join(x["id"] for x in j["jobs"])')"

# Space returns: each retry is answered 200 and its op is in ledger.log.
rm -f "$fs/filler"
api POST "/v1/jobs/$J_ACK/ack"
expect_api "ack after space returned" 200
expect_eq "ack answer" "done" "$(py 'j["state"]')"
ledger_has ack "$J_ACK"
api POST "/v1/jobs/$J_NACK/nack" '{"delay":"1h"}'
expect_api "nack after space returned" 200
expect_eq "nack answer" queued "$(py 'j["state"]')"
ledger_has nack "$J_NACK"
api POST /v1/ack "{\"ids\":[\"$J_BULK1\",\"$J_BULK2\"]}"
expect_api "bulk ack after space returned" 200
expect_eq "bulk ack settled" "$J_BULK1 $J_BULK2" "$(py '" ".join(j["settled"])')"
expect_eq "bulk ack failed" 0 "$(py 'len(j["failed"])')"
ledger_has ack "$J_BULK1"
ledger_has ack "$J_BULK2"
api POST "/v1/dead-letters/$J_DEAD/replay"
expect_api "replay after space returned" 200
expect_eq "replay answer" queued "$(py 'j["state"]')"
ledger_has replay "$J_DEAD"

# The stream told of each settlement once, when it was durable: the refused ones not at all.
# (events.sh checks the stream's format; here only which settlements it shows.)
expected="$J_ACK job.acked
$J_BULK1 job.acked
$J_BULK2 job.acked
$J_DEAD job.dead
$J_DEAD job.replayed
$J_NACK job.nacked
$J_PAD job.nacked $((pads - 1))"
seen=""
for _ in $(seq 1 100); do
    seen=$(python3 - "$WORKDIR/events.sse" "$J_PAD" <<'PY'
import collections, json, sys
text, pad = open(sys.argv[1]).read(), sys.argv[2]
count = collections.Counter()
for frame in text.split("\n\n"):
    for line in frame.split("\n"):
        if line.startswith("data: "):
            d = json.loads(line[6:])
            if d["type"] not in ("job.queued", "job.leased"):
                count[(d["job"], d["type"])] += 1
rows = []
for (job, kind), n in sorted(count.items()):
    if job == pad:
        rows.append(f"{job} {kind} {n}")
    else:
        rows.extend([f"{job} {kind}"] * n)
print("\n".join(sorted(rows)))
PY
)
    [[ $seen == "$(LC_ALL=C sort <<<"$expected")" ]] && break
    sleep 0.05
done
expect_eq "settlement events (job, type[, count of the pad job's])" "$(LC_ALL=C sort <<<"$expected")" "$seen"

# kill -9: what was answered 200 is what the ledger rebuilds.
kill9_server
start_server "$WORKDIR/config.yaml"
expect_eq "acked job after kill -9" "done" "$(state_of "$J_ACK")"
expect_eq "nacked job after kill -9" queued "$(state_of "$J_NACK")"
expect_eq "bulk-acked job 1 after kill -9" "done" "$(state_of "$J_BULK1")"
expect_eq "bulk-acked job 2 after kill -9" "done" "$(state_of "$J_BULK2")"
expect_eq "replayed job after kill -9" queued "$(state_of "$J_DEAD")"
api POST /v1/lease '{"route":"work","max":10,"visibility":"1h"}'
expect_eq "work jobs leased again after kill -9 (none: acked, or nacked for an hour)" 0 \
    "$(py 'len(j["jobs"])')"
api POST /v1/lease '{"route":"fragile","visibility":"1h"}'
expect_eq "the replayed job is delivered again" "$J_DEAD" "$(py 'j["jobs"][0]["id"]')"
stop_server
echo "ledger_disk_full: $pads pad rounds filled the ledger; ack, nack, bulk ack and replay refused twice, then durable"
