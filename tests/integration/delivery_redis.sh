#!/usr/bin/env bash
# The Redis Streams sink against real redis-servers (SPEC section 8, issue 15), one portcullis
# with a sink per case; what each sink wrote is read back with redis-cli and with a RESP client
# of the test's own (redis_lib.sh), never through portcullis:
# - main: a GitHub job signed by @octokit/webhooks-methods, a binary body and a JSON one land in
#   webhooks:{route} as XADD ... id, route, received_at, headers (JSON), body, byte for byte; the
#   GitHub signature still verifies, by the provider's library, on the headers and body read back.
# - db3: redis://host:port/3 writes to database 3.
# - trim: maxlen 10 on a server whose stream nodes hold 5 entries: MAXLEN ~ trims to 10..15 of
#   the 60 entries added.
# - pw, acl: a server with requirepass: AUTH password (the default user), AUTH user password (an
#   ACL user allowed nothing but XADD on acl:*).
# - badpw: a wrong password: a clear error in the log (the user named, no password), no crash,
#   the breaker opens (/healthz), nothing written; once the server takes that password, the
#   breaker closes and the jobs arrive.
# - noauth: no credentials against that server: the error says the server wants AUTH.
# - wt: the stream's key holds a string: WRONGTYPE, retried with Redis's text in the log; once
#   the key is gone the job arrives.
# shellcheck disable=SC2016 # wait_until conditions (and literal header values) are single-quoted
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
source "$here/delivery_lib.sh"
source "$here/redis_lib.sh"
need python3 openssl sha256sum
need_redis
need_signers

export GH_SECRET="redis: it's a secret to everybody ✓"
REDIS_PASSWORD="pw-$(openssl rand -hex 12)"
REDIS_ACL_PASSWORD="acl-$(openssl rand -hex 12)"
REDIS_WRONG_PASSWORD="wrong-$(openssl rand -hex 12)"
export REDIS_PASSWORD REDIS_ACL_PASSWORD REDIS_WRONG_PASSWORD
RECEIVED_VERIFIER="$PROVIDERS_DIR/verify_received.mjs"
TRIM_JOBS=60

# "open": no password; small stream nodes so that MAXLEN ~ 10 trims close to 10.
start_redis open --stream-node-max-entries 5
start_redis auth --requirepass "$REDIS_PASSWORD"
redis_auth auth "$REDIS_PASSWORD"
rcli auth ACL SETUSER hooks on ">$REDIS_ACL_PASSWORD" '~acl:*' -@all +xadd >/dev/null
O="redis://127.0.0.1:${REDIS_PORT[open]}"
P="redis://127.0.0.1:${REDIS_PORT[auth]}"

delivery_config "$WORKDIR/config.yaml" <<EOF
sinks:
  main: {redis: {url: "$O/0", stream: "webhooks:{route}", maxlen: 1000}}
  db3: {redis: {url: "$O/3", stream: "db3:{route}"}}
  trim: {redis: {url: "$O", stream: "trim:{route}", maxlen: 10}}
  wt: {redis: {url: "$O", stream: "wt:{route}"}, breaker: {failures: 100, cooldown: 1s}}
  pw: {redis: {url: "$P", stream: "pw:{route}", credentials: {password: {env: REDIS_PASSWORD}}}}
  acl: {redis: {url: "$P", stream: "acl:{route}", credentials: {user: hooks, password: {env: REDIS_ACL_PASSWORD}}}}
  badpw: {redis: {url: "$P", stream: "bad:{route}", credentials: {user: default, password: {env: REDIS_WRONG_PASSWORD}}}, breaker: {failures: 3, cooldown: 2s}}
  noauth: {redis: {url: "$P", stream: "noauth:{route}"}, breaker: {failures: 100, cooldown: 1s}}
routes:
  gh: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}, deliver: [main]}
  raw: {path: /webhooks/raw, verify: {scheme: none}, deliver: [main, db3, pw, acl]}
  many: {path: /r/trim, verify: {scheme: none}, deliver: [trim]}
  rwt: {path: /r/wt, verify: {scheme: none}, deliver: [wt], max_attempts: 20}
  rbad: {path: /r/bad, verify: {scheme: none}, deliver: [badpw], max_attempts: 50}
  rnoauth: {path: /r/noauth, verify: {scheme: none}, deliver: [noauth], max_attempts: 50}
EOF
# The stream of wt holds a string before anything is sent.
rcli open SET wt:rwt "not a stream" >/dev/null
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
: >"$WORKDIR/sent.tsv"

# --- the jobs ---
new_body github-push
GH_BODY=$BODY
GH_DELIVERY=$(cat /proc/sys/kernel/random/uuid)
sign_with github --secret "$GH_SECRET" --body "$GH_BODY"
GH_SIGNATURE=$(signed_value X-Hub-Signature-256)
post_job /webhooks/github "$GH_BODY" "${SIGNED[@]}" -H 'Content-Type: application/json' \
    -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: $GH_DELIVERY" \
    -H 'X-Custom: a; b $(touch /tmp/x) `id` "q" \ back' -H 'Authorization: Bearer not-stored'
GH_JOB=$JOB_ID
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) + b"\r\n\x00end\r\n*1\r\n$4\r\nPING\r\n")' \
    >"$WORKDIR/binary.bin"
post_job /webhooks/raw "$WORKDIR/binary.bin" -H 'Content-Type: application/octet-stream'
RAW_JOB=$JOB_ID
new_body raw-json
post_job /webhooks/raw "$BODY" -H 'Content-Type: application/json'
JSON_JOB=$JOB_ID
post_job /r/wt "$BODY"
WT_JOB=$JOB_ID
BAD_JOBS=()
for i in 1 2 3 4; do
    new_body "bad-$i"
    post_job /r/bad "$BODY"
    BAD_JOBS+=("$JOB_ID")
done
new_body noauth
post_job /r/noauth "$BODY"
NOAUTH_JOB=$JOB_ID
cp "$WORKDIR/sent.tsv" "$WORKDIR/sent-first.tsv"
post_many /r/trim "$TRIM_JOBS" trim

# --- main, db3, pw, acl: byte for byte, every field ---
for id in "$GH_JOB" "$RAW_JOB" "$JSON_JOB"; do
    wait_delivery "$id" main "done" 20
    expect_eq "main: attempts of $id" 1 "$DELIVERY_ATTEMPTS"
done
for sink in db3 pw acl; do
    for id in "$RAW_JOB" "$JSON_JOB"; do
        wait_delivery "$id" "$sink" "done" 20
    done
done
expect_eq "main: XLEN webhooks:gh (redis-cli)" 1 "$(rcli_int open XLEN webhooks:gh)"
expect_eq "main: XLEN webhooks:raw (redis-cli)" 2 "$(rcli_int open XLEN webhooks:raw)"
expect_eq "db3: EXISTS db3:raw in database 0" 0 "$(rcli_int open EXISTS db3:raw)"
redis_check open "$GH_JOB" "$RAW_JOB" "$JSON_JOB" "$GH_DELIVERY" "$GH_SIGNATURE" "$WORKDIR/gh-read.jsonl" <<'PY'
gh, raw, js, delivery, signature, out = ARGS
s = sent()
r = Redis()
got = entries(r, "webhooks:gh")
if len(got) != 1:
    fail(f"webhooks:gh holds {len(got)} entries, expected 1")
body, _, before, after = s[gh]
h = check_entry(got[0], gh, "gh", body, before, after)
want = {"x-github-event": "push", "x-github-delivery": delivery, "content-type": "application/json",
        "x-hub-signature-256": signature, "x-custom": "a; b $(touch /tmp/x) `id` \"q\" \\ back"}
for name, value in want.items():
    if h.get(name) != value:
        fail(f"webhooks:gh: header {name} is {h.get(name)!r}, expected {value!r} (headers {h})")
if "authorization" in h:
    fail("webhooks:gh: the Authorization header was written to the stream")
if any(k != k.lower() for k in h):
    fail(f"webhooks:gh: header names not lowercased: {sorted(h)}")
# The entry as a delivered request for the provider's library (verify_received.mjs's input).
with open(out, "w", encoding="utf-8") as f:
    f.write(json.dumps({"seq": 1, "headers": list(h.items()),
                        "body_b64": base64.b64encode(got[0][2][b"body"]).decode()}) + "\n")
got = {e[2][b"id"].decode(): e for e in entries(r, "webhooks:raw")}
if sorted(got) != sorted([raw, js]):
    fail(f"webhooks:raw holds jobs {sorted(got)}, expected {sorted([raw, js])}")
for j in (raw, js):
    body, _, before, after = s[j]
    check_entry(got[j], j, "raw", body, before, after)
# The same jobs in database 3.
d3 = {e[2][b"id"].decode(): e for e in entries(Redis(db=3), "db3:raw")}
if sorted(d3) != sorted([raw, js]):
    fail(f"db3:raw in database 3 holds jobs {sorted(d3)}, expected {sorted([raw, js])}")
for j in (raw, js):
    body, _, before, after = s[j]
    check_entry(d3[j], j, "raw", body, before, after)
print("main, db3: every field byte for byte")
PY
redis_check auth "$RAW_JOB" "$JSON_JOB" <<'PY'
raw, js = ARGS
s = sent()
r = Redis()
for stream in ("pw:raw", "acl:raw"):
    got = {e[2][b"id"].decode(): e for e in entries(r, stream)}
    if sorted(got) != sorted([raw, js]):
        fail(f"{stream} holds jobs {sorted(got)}, expected {sorted([raw, js])}")
    for j in (raw, js):
        body, _, before, after = s[j]
        check_entry(got[j], j, "raw", body, before, after)
print("pw, acl: both jobs written through AUTH password and AUTH user password")
PY
# redis-cli --no-raw shows the binary body escaped: its first bytes as redis-cli prints them.
rcli open XRANGE webhooks:raw - + COUNT 1 | grep -F '"\x00\x01\x02\x03' >/dev/null ||
    fail "main: redis-cli's XRANGE does not show the binary body's first bytes"
out=$(node "$RECEIVED_VERIFIER" --scheme github --secret "$GH_SECRET" --requests "$WORKDIR/gh-read.jsonl" 2>&1) ||
    fail "main: @octokit/webhooks-methods refused the GitHub job read back from the stream: $out"
! node "$RECEIVED_VERIFIER" --scheme github --secret "not the secret" --requests "$WORKDIR/gh-read.jsonl" >/dev/null 2>&1 ||
    fail "main: the GitHub verifier accepted the entry under another secret"
echo "main: 3 jobs byte for byte (binary included); the GitHub signature verifies on the entry read back"

# --- trim: MAXLEN ~ ---
wait_until 20 '[[ $(sink_health trim delivered) == "$TRIM_JOBS" ]]' || true
expect_eq "trim: /healthz sinks.trim.delivered" "$TRIM_JOBS" "$(sink_health trim delivered)"
redis_check open "$TRIM_JOBS" <<'PY'
count = int(ARGS[0])
r = Redis()
flat = r.call("XINFO", "STREAM", "trim:many")
info = dict(zip(flat[0::2], flat[1::2]))
added, length = info[b"entries-added"], info[b"length"]
if added != count:
    fail(f"trim:many: {added} entries added, expected {count} (one XADD per job)")
# MAXLEN ~ 10 with nodes of 5 entries: whole nodes go while at least 10 stay.
if not 10 <= length < 10 + 5:
    fail(f"trim:many holds {length} of the {added} entries added: MAXLEN ~ 10 keeps 10 to 14")
s = sent()
for e in entries(r, "trim:many"):
    j = e[2][b"id"].decode()
    if j not in s:
        fail(f"trim:many: entry {e[0]} of job {j}, which was not sent")
    body, _, before, after = s[j]
    check_entry(e, j, "many", body, before, after)
print(f"trim: {added} entries added, {length} kept (MAXLEN ~ 10)")
PY

# --- wt: WRONGTYPE retried, its text in the log ---
wait_until 15 'state=$(delivery_state "$WT_JOB" wt); [[ $state == queued\ * && ${state#* } -ge 2 ]]' ||
    fail "wt: expected the job queued after at least 2 refused XADDs within 15 s, is '$state'"
log_lines_with "delivery failed; will retry" wt | grep -F 'XADD refused: WRONGTYPE' >/dev/null ||
    fail "wt: no \"delivery failed; will retry\" line for sink wt with Redis's WRONGTYPE text"
expect_eq "wt: the key still holds the string" string "$(rcli open TYPE wt:rwt)"
rcli open DEL wt:rwt >/dev/null
wait_delivery "$WT_JOB" wt "done" 30
((DELIVERY_ATTEMPTS >= 3)) || fail "wt: delivered at attempt $DELIVERY_ATTEMPTS, expected after at least 2 refusals"
redis_check open "$WT_JOB" <<'PY'
got = entries(Redis(), "wt:rwt")
if [e[2][b"id"].decode() for e in got] != ARGS:
    fail(f"wt:rwt: entries {[e[2][b'id'] for e in got]}, expected the job {ARGS[0]} once")
PY
echo "wt: WRONGTYPE retried with its text logged; delivered at attempt $DELIVERY_ATTEMPTS once the key was free"

# --- badpw: a wrong password ---
wait_until 15 '[[ $(sink_health badpw breaker) == open ]]' || true
expect_eq "badpw: /healthz breaker" open "$(sink_health badpw breaker)"
[[ -n $(log_lines_with "sink breaker opened" badpw) ]] || fail "badpw: no \"sink breaker opened\" line for sink badpw"
log_lines_with "delivery failed; will retry" badpw |
    grep -qF "AUTH as user default refused by 127.0.0.1:${REDIS_PORT[auth]}: WRONGPASS" ||
    fail "badpw: no \"delivery failed; will retry\" line saying AUTH as user default was refused (WRONGPASS)"
kill -0 "$SERVER_PID" 2>/dev/null || fail "badpw: portcullis is gone"
expect_eq "badpw: EXISTS bad:rbad" 0 "$(rcli_int auth EXISTS bad:rbad)"
for id in "${BAD_JOBS[@]}"; do
    state=$(delivery_state "$id" badpw)
    [[ $state == queued\ * ]] || fail "badpw: job $id should wait in the queue, is '$state'"
done
# The server takes that password too now: the next probe gets through.
rcli auth ACL SETUSER default ">$REDIS_WRONG_PASSWORD" >/dev/null
for id in "${BAD_JOBS[@]}"; do
    wait_delivery "$id" badpw "done" 30
done
expect_eq "badpw: /healthz breaker once AUTH succeeds" closed "$(sink_health badpw breaker)"
[[ -n $(log_lines_with "sink breaker closed" badpw) ]] || fail "badpw: no \"sink breaker closed\" line"
redis_check auth "${BAD_JOBS[@]}" <<'PY'
s = sent()
got = entries(Redis(), "bad:rbad")
ids = [e[2][b"id"].decode() for e in got]
if sorted(set(ids)) != sorted(ARGS):
    fail(f"bad:rbad holds jobs {sorted(set(ids))}, expected {sorted(ARGS)}")
for e in got:
    j = e[2][b"id"].decode()
    body, _, before, after = s[j]
    check_entry(e, j, "rbad", body, before, after)
PY
echo "badpw: WRONGPASS logged, breaker opened, nothing written; delivered once the password was accepted"

# --- noauth: no credentials ---
wait_until 10 '[[ -n $(log_lines_with "delivery failed; will retry" noauth) ]]' || true
log_lines_with "delivery failed; will retry" noauth | grep -F 'the server wants AUTH' >/dev/null ||
    fail "noauth: no \"delivery failed; will retry\" line saying the server wants AUTH"
state=$(delivery_state "$NOAUTH_JOB" noauth)
[[ $state == queued\ * ]] || fail "noauth: the job should wait in the queue, is '$state'"
echo "noauth: refused with a message that says the server wants AUTH"

# --- no secret in the log; a clean stop ---
for s in "$REDIS_PASSWORD" "$REDIS_ACL_PASSWORD" "$REDIS_WRONG_PASSWORD" "$GH_SECRET"; do
    ! grep -qF -- "$s" "$SERVER_LOG" || fail "a password or secret appears in the log"
done
stop_server
echo "delivery_redis: ok"
