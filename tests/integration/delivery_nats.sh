#!/usr/bin/env bash
# The NATS JetStream sink against a real `nats-server -js` (SPEC section 8, issue 15), with user
# and password, one stream HOOKS on webhooks.> (file storage, duplicate window 2 minutes) that the
# test creates, and one portcullis with three nats sinks:
# - bus (subject webhooks.{route}): a GitHub job signed with @octokit/webhooks-methods (route gh,
#   with dedup) and a binary one (route raw) arrive in the stream, read back by
#   nats_client.py (not portcullis), with the body and the original headers byte for byte, the
#   Portcullis-* headers, Nats-Msg-Id = the dedup key of X-GitHub-Delivery (computed here with
#   libxxhash) for gh and the job id for raw; credentials and a sender's Nats-* and Portcullis-*
#   do not pass; the GitHub signature still verifies on the message read back.
# - nostream (subject nowhere.{route}, which no stream holds): the jobs are not settled, the log
#   says "no JetStream stream for subject nowhere.lost", the breaker opens (/healthz); once the
#   operator creates a stream for it, they are delivered.
# - badauth (a wrong password): "nats sink cannot connect" naming the Authorization Violation and
#   the credentials key, the job is not settled, no password in the log, portcullis serves on
#   and stops cleanly.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
source "$here/delivery_lib.sh"
source "$here/nats_lib.sh"
need python3 openssl sha256sum
need_signers
need_nats

export GH_SECRET="nats delivery: it's a secret to everybody ✓"
NATS_PASSWORD="pw-$(openssl rand -hex 12)"
NATS_WRONG_PASSWORD="wrong-$(openssl rand -hex 12)"
export NATS_PASSWORD NATS_WRONG_PASSWORD
# shellcheck disable=SC2034 # read by nats_lib.sh
NATS_AUTH=(--user portcullis --password "$NATS_PASSWORD")
RECEIVED_VERIFIER="$PROVIDERS_DIR/verify_received.mjs"
COOLDOWN=2

start_nats "authorization { user: portcullis, password: \"$NATS_PASSWORD\" }"
nats_client create HOOKS 'webhooks.>' 120 >/dev/null
URL="nats://127.0.0.1:$NATS_PORT"
CREDS='{user: portcullis, password: {env: NATS_PASSWORD}}'
delivery_config "$WORKDIR/config.yaml" <<EOF
sinks:
  bus: {nats: {url: "$URL", subject: "webhooks.{route}", credentials: $CREDS}}
  nostream:
    nats: {url: "$URL", subject: "nowhere.{route}", credentials: $CREDS}
    breaker: {failures: 3, cooldown: ${COOLDOWN}s}
  badauth:
    nats: {url: "$URL", subject: "webhooks.{route}", credentials: {user: portcullis, password: {env: NATS_WRONG_PASSWORD}}}
    breaker: {failures: 3, cooldown: ${COOLDOWN}s}
routes:
  gh: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}, dedup: {window: 24h}, deliver: [bus]}
  raw: {path: /webhooks/raw, verify: {scheme: none}, deliver: [bus]}
  lost: {path: /webhooks/lost, verify: {scheme: none}, deliver: [nostream], max_attempts: 50}
  locked: {path: /webhooks/locked, verify: {scheme: none}, deliver: [badauth], max_attempts: 50}
EOF
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
: >"$WORKDIR/sent.tsv"

# --- the jobs ---
new_body github-push
GH_BODY=$BODY
GH_DELIVERY=$(cat /proc/sys/kernel/random/uuid)
sign_with github --secret "$GH_SECRET" --body "$GH_BODY"
GH_SIGNATURE=$(signed_value X-Hub-Signature-256)
# shellcheck disable=SC2016 # a value that must stay text
CUSTOM='a; b $(touch /tmp/x) `id` "q" Grüße'
# Credentials, hop-by-hop fields and a sender's Portcullis-* and Nats-* fields must not pass (a
# forwarded Nats-Expected-Stream would fail the publish, a Nats-Msg-Id would choose the dedup key).
post_job /webhooks/github "$GH_BODY" "${SIGNED[@]}" -H 'Content-Type: application/json' \
    -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: $GH_DELIVERY" -H "X-Custom: $CUSTOM" \
    -H 'Authorization: Bearer not-forwarded' -H 'Cookie: session=not-forwarded' \
    -H 'Nats-Msg-Id: forged' -H 'Nats-Expected-Stream: OTHER' -H 'Portcullis-Job-Id: forged'
GH_JOB=$JOB_ID
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) + b"\r\n\x00end")' >"$WORKDIR/binary.bin"
post_job /webhooks/raw "$WORKDIR/binary.bin" -H 'Content-Type: application/octet-stream'
RAW_JOB=$JOB_ID
LOST_JOBS=()
for n in 1 2 3; do
    printf '{"lost":%d}' "$n" >"$WORKDIR/lost-$n.json"
    post_job /webhooks/lost "$WORKDIR/lost-$n.json"
    LOST_JOBS+=("$JOB_ID")
done
printf '{"locked":1}' >"$WORKDIR/locked.json"
post_job /webhooks/locked "$WORKDIR/locked.json"
LOCKED_JOB=$JOB_ID

# --- bus: byte for byte, headers, Nats-Msg-Id, the signature verified on what was read back ---
for id in "$GH_JOB" "$RAW_JOB"; do
    wait_delivery "$id" bus "done" 20
    expect_eq "bus: attempts of $id" 1 "$DELIVERY_ATTEMPTS"
done
expect_eq "/healthz sinks.bus.kind" nats "$(sink_health bus kind)"
nats_client dump HOOKS "$WORKDIR/stream.jsonl" >/dev/null
GH_MSG_ID=$(nats_msg_id gh "$GH_DELIVERY")
stream_check "$WORKDIR/stream.jsonl" "$WORKDIR/sent.tsv" "$GH_JOB" "$RAW_JOB" "$GH_MSG_ID" \
    "$GH_DELIVERY" "$GH_SIGNATURE" "$CUSTOM" "$WORKDIR/github.jsonl" <<'PY'
import re
from datetime import datetime
sent = {}
for line in open(ARGS[0], encoding="utf-8"):
    i, f, path, before, after = line.rstrip("\n").split("\t")
    sent[i] = (open(f, "rb").read(), float(before), float(after))
gh, raw, gh_msg_id, delivery, signature, custom, github_out = ARGS[1:]
if sorted(job(m) for m in msgs) != sorted([gh, raw]):
    fail(f"the stream holds jobs {[job(m) for m in msgs]}, expected {gh} and {raw} once each")
routes = {gh: "gh", raw: "raw"}
msg_ids = {gh: gh_msg_id, raw: raw}
for m in msgs:
    j = job(m)
    body, before, after = sent[j]
    if m["body"] != body:
        fail(f"job {j}: body of {len(m['body'])} bytes differs from the {len(body)} sent")
    if m["subject"] != "webhooks." + routes[j]:
        fail(f"job {j}: subject {m['subject']}, expected webhooks.{routes[j]}")
    checks = {"portcullis-attempt": "1", "portcullis-route": routes[j], "nats-msg-id": msg_ids[j]}
    for name, want in checks.items():
        if hdr(m, name) != want:
            fail(f"job {j}: {name} is {hdr(m, name)!r}, expected {want!r}")
    at = hdr(m, "portcullis-received-at")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", at):
        fail(f"job {j}: Portcullis-Received-At {at!r} is not RFC 3339 UTC")
    t = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    if not before - 1 <= t <= after + 1:
        fail(f"job {j}: Portcullis-Received-At {at} is not between the request's start and its 202")
    for name in ("authorization", "cookie", "nats-expected-stream", "content-length", "host"):
        if name in m["h"]:
            fail(f"job {j}: {name} was forwarded ({m['h'][name]})")
    if b"forged" in m["raw_headers"]:
        fail(f"job {j}: a sender's forged Nats-Msg-Id or Portcullis-Job-Id passed: {m['headers']}")
    if not m["raw_headers"].startswith(b"NATS/1.0\r\n") or not m["raw_headers"].endswith(b"\r\n\r\n"):
        fail(f"job {j}: the stored header block is not NATS/1.0 ... CRLF CRLF: {m['raw_headers'][:60]!r}")
g = next(m for m in msgs if job(m) == gh)
for name, want in {"x-github-event": "push", "x-github-delivery": delivery, "content-type": "application/json",
                   "x-custom": custom, "x-hub-signature-256": signature}.items():
    if hdr(g, name) != want:
        fail(f"github job: {name} is {hdr(g, name)!r}, expected {want!r}")
    # Byte for byte in the stored block (the value's UTF-8 bytes after "Name: ").
    if (": " + want + "\r\n").encode() not in g["raw_headers"]:
        fail(f"github job: the stored header block does not hold {name}'s value byte for byte")
if hdr(next(m for m in msgs if job(m) == raw), "content-type") != "application/octet-stream":
    fail("raw job: Content-Type not forwarded")
with open(github_out, "w", encoding="utf-8") as out:
    out.write(json.dumps({k: g[k] for k in ("seq", "headers", "body_b64")}) + "\n")
PY
out=$(node "$RECEIVED_VERIFIER" --scheme github --secret "$GH_SECRET" --requests "$WORKDIR/github.jsonl" 2>&1) ||
    fail "bus: @octokit/webhooks-methods refused the GitHub job read back from the stream: $out"
! node "$RECEIVED_VERIFIER" --scheme github --secret "not the secret" --requests "$WORKDIR/github.jsonl" >/dev/null 2>&1 ||
    fail "bus: the GitHub verifier accepted the message under another secret"
echo "bus: 2 jobs in the stream byte for byte; Nats-Msg-Id $GH_MSG_ID (the dedup key) and the job id;" \
    "the GitHub signature verified by @octokit/webhooks-methods on the message read back"

# --- nostream: not settled, the log line, the breaker; delivered once a stream holds it ---
for ((i = 0; i < 100; i++)); do
    [[ $(sink_health nostream breaker) == open ]] && break
    sleep 0.1
done
expect_eq "nostream: /healthz breaker after 3 publishes without a stream" open "$(sink_health nostream breaker)"
[[ -n $(log_lines_with "sink breaker opened" nostream) ]] ||
    fail "nostream: no \"sink breaker opened\" log line for sink nostream"
grep -F '"sink":"nostream"' "$SERVER_LOG" | grep -F 'no JetStream stream for subject nowhere.lost' >/dev/null ||
    fail "nostream: no log line says \"no JetStream stream for subject nowhere.lost\""
for id in "${LOST_JOBS[@]}"; do
    got=$(delivery_state "$id" nostream)
    [[ ${got%% *} == queued || ${got%% *} == leased ]] ||
        fail "nostream: job $id is '$got' while no stream holds its subject, expected queued or leased"
done
[[ $(nats_client count HOOKS) == 2 ]] || fail "nostream: the jobs went to the stream HOOKS"
nats_client create LOST 'nowhere.>' 120 >/dev/null
for id in "${LOST_JOBS[@]}"; do
    wait_delivery "$id" nostream "done" 40
done
nats_client dump LOST "$WORKDIR/lost.jsonl" >/dev/null
stream_check "$WORKDIR/lost.jsonl" "${LOST_JOBS[@]}" <<'PY'
if sorted(job(m) for m in msgs) != sorted(ARGS):
    fail(f"the stream LOST holds jobs {[job(m) for m in msgs]}, expected {sorted(ARGS)} once each")
PY
echo "nostream: not settled and the breaker open while no stream held nowhere.lost; delivered once one did"

# --- badauth: a clear error, no crash, no password in the log ---
for ((i = 0; i < 100; i++)); do
    [[ -n $(log_lines_with "nats sink cannot connect" badauth) ]] && break
    sleep 0.1
done
line=$(log_lines_with "nats sink cannot connect" badauth | head -n 1)
[[ -n $line ]] || fail "badauth: no \"nats sink cannot connect\" log line for sink badauth"
[[ $line == *"Authorization Violation"* && $line == *"sinks.badauth.nats.credentials"* ]] ||
    fail "badauth: the log line should name the Authorization Violation and sinks.badauth.nats.credentials: $line"
got=$(delivery_state "$LOCKED_JOB" badauth)
[[ ${got%% *} == queued || ${got%% *} == leased ]] ||
    fail "badauth: job $LOCKED_JOB is '$got' with wrong credentials, expected queued or leased"
grep -qF 'authentication error' "$NATS_LOG" || fail "badauth: nats-server logged no authentication error"
echo "badauth: $(sed -n 's/.*"error":"\([^"]*\)".*/\1/p' <<<"$line")"
kill -0 "$SERVER_PID" 2>/dev/null || fail "portcullis is gone"
for s in "$NATS_PASSWORD" "$NATS_WRONG_PASSWORD" "$GH_SECRET"; do
    ! grep -qF -- "$s" "$SERVER_LOG" || fail "a password or secret appears in portcullis's log"
done

stop_server
grep -F '"msg":"sink stopped"' "$SERVER_LOG" | grep -F '"sink":"bus"' >/dev/null ||
    fail "no \"sink stopped\" line for bus after SIGTERM"
echo "delivery_nats: ok"
