#!/usr/bin/env bash
# The HTTP sink against a real application (receiver.py; SPEC section 8, issue 14), one portcullis
# with a sink per case, each on its own path of the receiver:
# - plain: GitHub (@octokit/webhooks-methods) and Stripe (stripe) signed jobs and a binary one
#   arrive byte for byte, and the provider's library verifies the forwarded request as it
#   arrived; the original headers pass except credentials, hop-by-hop fields and forged
#   Portcullis-* ones; the Portcullis-* headers are right; the sink's own headers are added.
# - s500: 500 for the first 3 attempts of each job: delivered at attempt 4, each wait within the
#   full-jitter bound 1 s x 2^(attempt-1) (and not all near zero).
# - s429 / s503: Retry-After: 2 is waited for (a jittered first retry waits at most 1 s).
# - s404: a dead letter at once (1 attempt, never retried), listed per sink, replayed per sink.
# - sstall: a stall past the sink's timeout is retried.
# - sdown: connections refused while the application is down; delivered once it is up.
# - ssign: `sign` adds Standard Webhooks headers that standardwebhooks' Webhook#verify accepts.
# - sbrk: the breaker opens after 5 consecutive failures (concurrency 1), sends nothing during
#   the cooldown, lets one probe through, closes on a 2xx; jobs wait without spending attempts.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
source "$here/delivery_lib.sh"
need python3 openssl sha256sum
need_signers

export GH_SECRET="delivery: it's a secret to everybody ✓"
STRIPE_SECRET="whsec_deliverytest$(openssl rand -hex 8)"
APP_SIGNING_SECRET="whsec_$(openssl rand -base64 32)"
export STRIPE_SECRET APP_SIGNING_SECRET
OTHER_SIGNING_SECRET="whsec_$(openssl rand -base64 32)"
VERIFIER="$PROVIDERS_DIR/verify.mjs"
RECEIVED_VERIFIER="$PROVIDERS_DIR/verify_received.mjs"
BREAKER_COOLDOWN=3

start_receiver app
start_receiver down
receiver_control down '{"listen": false}'
A="http://127.0.0.1:${RECV_PORT[app]}"
receiver_control app "$(
    cat <<'EOF'
{"plan": {"paths": {
  "/s500": {"first": [{"status": 500}, {"status": 500}, {"status": 500}]},
  "/s429": {"first": [{"status": 429, "retry_after": "2"}]},
  "/s503": {"first": [{"status": 503, "retry_after": "2"}]},
  "/s404": {"then": {"status": 404}},
  "/sstall": {"first": [{"stall": 3}]},
  "/sbrk": {"count": "all", "then": {"status": 500}}
}}}
EOF
)"

# Breakers that the retry cases must not trip: failures 100.
delivery_config "$WORKDIR/config.yaml" <<EOF
sinks:
  plain: {http: {url: "$A/plain?via=portcullis&n=1", headers: {X-Env: test}}}
  s500: {http: {url: "$A/s500"}, breaker: {failures: 100, cooldown: 1s}}
  s429: {http: {url: "$A/s429"}}
  s503: {http: {url: "$A/s503"}}
  s404: {http: {url: "$A/s404"}}
  sstall: {http: {url: "$A/sstall", timeout: 1s}}
  sdown: {http: {url: "http://127.0.0.1:${RECV_PORT[down]}/sdown"}, breaker: {failures: 100, cooldown: 1s}}
  ssign: {http: {url: "$A/ssign", sign: {secrets: [{env: APP_SIGNING_SECRET}]}}}
  sbrk: {http: {url: "$A/sbrk", concurrency: 1}, breaker: {failures: 5, cooldown: ${BREAKER_COOLDOWN}s}}
routes:
  gh: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}, deliver: [plain]}
  stripe: {path: /webhooks/stripe, verify: {scheme: stripe, secrets: [{env: STRIPE_SECRET}]}, deliver: [plain]}
  raw: {path: /webhooks/raw, verify: {scheme: none}, deliver: [plain]}
  r500: {path: /r/500, verify: {scheme: none}, deliver: [s500], max_attempts: 10}
  r429: {path: /r/429, verify: {scheme: none}, deliver: [s429], max_attempts: 10}
  r503: {path: /r/503, verify: {scheme: none}, deliver: [s503], max_attempts: 10}
  r404: {path: /r/404, verify: {scheme: none}, deliver: [s404], max_attempts: 10}
  rstall: {path: /r/stall, verify: {scheme: none}, deliver: [sstall], max_attempts: 10}
  rdown: {path: /r/down, verify: {scheme: none}, deliver: [sdown], max_attempts: 20}
  rsign: {path: /r/sign, verify: {scheme: none}, deliver: [ssign]}
  rbrk: {path: /r/brk, verify: {scheme: none}, deliver: [sbrk], max_attempts: 20}
EOF
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
: >"$WORKDIR/sent.tsv"

# --- the jobs of the cases that run on their own ---
new_body github-push
GH_BODY=$BODY
GH_DELIVERY=$(cat /proc/sys/kernel/random/uuid)
sign_with github --secret "$GH_SECRET" --body "$GH_BODY"
# Credentials, hop-by-hop fields and forged Portcullis-* fields must not pass; X-Custom must, as is.
post_job /webhooks/github "$GH_BODY" "${SIGNED[@]}" -H 'Content-Type: application/json' \
    -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: $GH_DELIVERY" \
    -H 'X-Custom: a; b $(touch /tmp/x) `id` "q"' -H 'Authorization: Bearer not-forwarded' \
    -H 'Cookie: session=not-forwarded' -H 'Proxy-Authorization: Basic bm90OmZvcndhcmRlZA==' \
    -H 'Connection: keep-alive, X-Hop' -H 'X-Hop: hop-by-hop' -H 'Keep-Alive: timeout=5' \
    -H 'Portcullis-Job-Id: forged' -H 'Portcullis-Attempt: 99' -H 'Portcullis-Route: forged'
GH_JOB=$JOB_ID
new_body stripe-event 'evt_1'
STRIPE_BODY=$BODY
sign_with stripe --secret "$STRIPE_SECRET" --body "$STRIPE_BODY"
post_job /webhooks/stripe "$STRIPE_BODY" "${SIGNED[@]}" -H 'Content-Type: application/json'
STRIPE_JOB=$JOB_ID
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) + b"\r\n\x00end")' >"$WORKDIR/binary.bin"
post_job /webhooks/raw "$WORKDIR/binary.bin" -H 'Content-Type: application/octet-stream'
RAW_JOB=$JOB_ID

S500_JOBS=()
for i in 1 2 3; do
    new_body "s500-$i"
    post_job /r/500 "$BODY"
    S500_JOBS+=("$JOB_ID")
done
new_body s429
post_job /r/429 "$BODY"
S429_JOB=$JOB_ID
new_body s503
post_job /r/503 "$BODY"
S503_JOB=$JOB_ID
new_body s404
post_job /r/404 "$BODY"
S404_JOB=$JOB_ID
new_body sstall
post_job /r/stall "$BODY"
STALL_JOB=$JOB_ID
new_body sign-json
SIGN_BODIES=("$BODY")
python3 -c 'import sys; sys.stdout.write("{\"items\":[" + ",".join(f"\"item {i} \u00e9\"" for i in range(8000)) + "]}")' \
    >"$WORKDIR/sign-large.json"
SIGN_BODIES+=("$WORKDIR/sign-large.json")
SIGN_JOBS=()
for f in "${SIGN_BODIES[@]}"; do
    post_job /r/sign "$f" -H 'Content-Type: application/json'
    SIGN_JOBS+=("$JOB_ID")
done

# --- sdown: refused connections, then the application comes up ---
new_body sdown
post_job /r/down "$BODY"
DOWN_JOB=$JOB_ID
for ((i = 0; i < 150; i++)); do
    state=$(delivery_state "$DOWN_JOB" sdown)
    [[ $state == queued\ * && ${state#* } -ge 2 ]] && break
    sleep 0.1
done
[[ $state == queued\ * && ${state#* } -ge 2 ]] ||
    fail "sdown: expected the job queued after at least 2 refused attempts within 15 s, is '$state'"
expect_eq "sdown: requests that reached the application while it was down" 0 "$(recv_count down)"
receiver_control down '{"listen": true}'
wait_delivery "$DOWN_JOB" sdown "done" 30
recv_check down "$DOWN_JOB" "$DELIVERY_ATTEMPTS" <<'PY'
want_job, attempts = ARGS[0], int(ARGS[1])
if len(reqs) != 1:
    fail(f"sdown: expected exactly 1 request once the application was up, got {len(reqs)}")
r = reqs[0]
if job(r) != want_job or r["status"] != 200:
    fail(f"sdown: got job {job(r)} answered {r['status']}, expected {want_job} answered 200")
if attempt(r) != attempts or attempts < 3:
    fail(f"sdown: Portcullis-Attempt {attempt(r)}, expected the recorded attempts {attempts} (>= 3: 2 refused before)")
PY
echo "sdown: delivered at attempt $DELIVERY_ATTEMPTS after refused connections"

# --- sbrk: the breaker ---
expect_eq "sbrk: breaker before any failure" closed "$(sink_health sbrk breaker)"
BRK_JOBS=()
for i in 1 2 3 4 5 6 7 8; do
    new_body "sbrk-$i"
    post_job /r/brk "$BODY"
    BRK_JOBS+=("$JOB_ID")
done
wait_requests app 5 20 'r["path"] == "/sbrk"'
for ((i = 0; i < 50; i++)); do
    [[ $(sink_health sbrk breaker) == open ]] && break
    sleep 0.1
done
expect_eq "sbrk: /healthz breaker after 5 failures" open "$(sink_health sbrk breaker)"
[[ -n $(log_lines_with "sink breaker opened" sbrk) ]] || fail "sbrk: no \"sink breaker opened\" log line for sink sbrk"
# The probe comes after the cooldown; it fails (500), and the breaker opens again.
wait_requests app 6 $((BREAKER_COOLDOWN + 15)) 'r["path"] == "/sbrk"'
[[ -n $(log_lines_with "sink breaker half-open" sbrk) ]] || fail "sbrk: no \"sink breaker half-open\" log line for sink sbrk"
for ((i = 0; i < 50; i++)); do
    [[ $(sink_health sbrk breaker) == open ]] && break
    sleep 0.1
done
expect_eq "sbrk: /healthz breaker after the failed probe" open "$(sink_health sbrk breaker)"
# The application recovers: the next probe succeeds and the waiting jobs follow.
receiver_control app '{"path": "/sbrk", "plan": {"then": {"status": 200}}}'
for id in "${BRK_JOBS[@]}"; do
    wait_delivery "$id" sbrk "done" $((BREAKER_COOLDOWN + 30))
    printf '%s %s\n' "$id" "$DELIVERY_ATTEMPTS"
done >"$WORKDIR/brk-attempts"
[[ -n $(log_lines_with "sink breaker closed" sbrk) ]] || fail "sbrk: no \"sink breaker closed\" log line for sink sbrk"
expect_eq "sbrk: /healthz breaker once the probe succeeded" closed "$(sink_health sbrk breaker)"
recv_check app "$BREAKER_COOLDOWN" "$WORKDIR/brk-attempts" <<'PY'
cooldown = float(ARGS[0])
recorded = dict(line.split() for line in open(ARGS[1]))
rs = on("/sbrk")
statuses = [r["status"] for r in rs]
# 5 failures, the failed probe, the good probe, then the other jobs: 8 successes in all.
if statuses[:6] != [500] * 6 or statuses[6:] != [200] * 8:
    fail(f"sbrk: answers in order {statuses}, expected 6 x 500 (5 failures and the failed probe) then 8 x 200")
for k in (5, 6):
    gap = rs[k]["t"] - rs[k - 1]["t_answer"]
    if gap < cooldown - 0.25:
        fail(f"sbrk: request {k + 1} came {gap:.2f} s after the failure before it: the breaker is open for {cooldown} s")
    if gap > cooldown + 5:
        fail(f"sbrk: the probe came {gap:.2f} s after the failure before it, expected about {cooldown} s")
per_job = {}
for r in rs:
    per_job.setdefault(job(r), []).append(attempt(r))
if set(per_job) != set(recorded):
    fail(f"sbrk: jobs seen {sorted(per_job)}, expected {sorted(recorded)}")
for j, attempts in per_job.items():
    if attempts != list(range(1, len(attempts) + 1)):
        fail(f"sbrk: job {j}: Portcullis-Attempt went {attempts}, expected 1, 2, ...")
    if int(recorded[j]) != len(attempts):
        fail(f"sbrk: job {j}: {recorded[j]} attempts recorded, {len(attempts)} requests made: attempts spent while open")
PY
echo "sbrk: opened after 5 failures, probed after ${BREAKER_COOLDOWN} s twice, closed; no attempt spent while open"

# --- plain: byte for byte, headers, provider signatures verified on arrival ---
for id in "$GH_JOB" "$STRIPE_JOB" "$RAW_JOB"; do
    wait_delivery "$id" plain "done" 20
    expect_eq "plain: attempts of $id" 1 "$DELIVERY_ATTEMPTS"
done
recv_check app "$WORKDIR/sent.tsv" "$GH_JOB" "$STRIPE_JOB" "$RAW_JOB" "$GH_DELIVERY" "${RECV_PORT[app]}" <<'PY'
import re
from datetime import datetime
sent = {}
for line in open(ARGS[0], encoding="utf-8"):
    i, f, path, before, after = line.rstrip("\n").split("\t")
    sent[i] = (open(f, "rb").read(), float(before), float(after))
gh, stripe, raw, delivery, port = ARGS[1:]
rs = on("/plain")
if sorted(job(r) for r in rs) != sorted([gh, stripe, raw]):
    fail(f"plain: jobs {[job(r) for r in rs]}, expected each of {gh}, {stripe}, {raw} once")
routes = {gh: "gh", stripe: "stripe", raw: "raw"}
for r in rs:
    j = job(r)
    body, before, after = sent[j]
    if r["body"] != body:
        fail(f"plain: job {j}: body of {len(r['body'])} bytes differs from the {len(body)} sent")
    if r["method"] != "POST" or r["path"] != "/plain?via=portcullis&n=1":
        fail(f"plain: job {j}: {r['method']} {r['path']}, expected POST /plain?via=portcullis&n=1")
    checks = {"portcullis-attempt": "1", "portcullis-route": routes[j], "x-env": "test",
              "content-length": str(len(body)), "host": f"127.0.0.1:{port}"}
    for name, want in checks.items():
        if hdr(r, name) != want:
            fail(f"plain: job {j}: {name} is {hdr(r, name)!r}, expected {want!r}")
    at = hdr(r, "portcullis-received-at")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", at):
        fail(f"plain: job {j}: Portcullis-Received-At {at!r} is not RFC 3339 UTC")
    t = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    if not before - 1 <= t <= after + 1:
        fail(f"plain: job {j}: Portcullis-Received-At {at} is not between the request's start and its 202")
    for name in ("authorization", "cookie", "proxy-authorization", "x-hop", "keep-alive", "transfer-encoding"):
        if name in r["h"]:
            fail(f"plain: job {j}: {name} was forwarded ({r['h'][name]})")
    for v in r["h"].get("connection", []):
        if "x-hop" in v.lower():
            fail(f"plain: job {j}: Connection {v!r} names the sender's hop-by-hop field")
g = next(r for r in rs if job(r) == gh)
for name, want in {"x-github-event": "push", "x-github-delivery": delivery, "content-type": "application/json",
                   "x-custom": 'a; b $(touch /tmp/x) `id` "q"'}.items():
    if hdr(g, name) != want:
        fail(f"plain: github job: {name} is {hdr(g, name)!r}, expected {want!r}")
if not hdr(g, "x-hub-signature-256").startswith("sha256="):
    fail("plain: github job: X-Hub-Signature-256 not forwarded")
if not hdr(next(r for r in rs if job(r) == stripe), "stripe-signature").startswith("t="):
    fail("plain: stripe job: Stripe-Signature not forwarded")
# The forwarded requests as files for the providers' libraries.
for name, j in (("github", gh), ("stripe", stripe)):
    with open(f"{LOG}.{name}.jsonl", "w", encoding="utf-8") as out:
        r = next(r for r in rs if job(r) == j)
        out.write(json.dumps({k: r[k] for k in ("seq", "headers", "body_b64")}) + "\n")
PY
out=$(node "$RECEIVED_VERIFIER" --scheme github --secret "$GH_SECRET" --requests "${RECV_LOG[app]}.github.jsonl" 2>&1) ||
    fail "plain: @octokit/webhooks-methods refused the forwarded GitHub request: $out"
out=$(node "$RECEIVED_VERIFIER" --scheme stripe --secret "$STRIPE_SECRET" --requests "${RECV_LOG[app]}.stripe.jsonl" 2>&1) ||
    fail "plain: stripe.webhooks.constructEvent refused the forwarded Stripe request: $out"
# The same check fails with another secret (it is a check).
! node "$RECEIVED_VERIFIER" --scheme github --secret "not the secret" --requests "${RECV_LOG[app]}.github.jsonl" >/dev/null 2>&1 ||
    fail "plain: the GitHub verifier accepted the request under another secret"
echo "plain: 3 jobs byte for byte; GitHub and Stripe signatures verified by their libraries on arrival"

# --- s500: retried with backoff ---
for id in "${S500_JOBS[@]}"; do
    wait_delivery "$id" s500 "done" 40
    expect_eq "s500: attempts of $id" 4 "$DELIVERY_ATTEMPTS"
done
recv_check app "${S500_JOBS[@]}" <<'PY'
# Full jitter: the wait before attempt k+1 is drawn from [0, 1 s x 2^(k-1)]. The bound is checked
# with 1.5 s for a loaded machine; the waits together must not be all near zero (no backoff).
slack = 1.5
total_wait = total_bound = 0.0
for j in ARGS:
    rs = [r for r in on("/s500") if job(r) == j]
    got = [(attempt(r), r["status"]) for r in rs]
    if got != [(1, 500), (2, 500), (3, 500), (4, 200)]:
        fail(f"s500: job {j}: (attempt, answer) {got}, expected attempts 1-3 answered 500, then 4 answered 200")
    for k in range(1, 4):
        wait = rs[k]["t"] - rs[k - 1]["t_answer"]
        bound = 2 ** (k - 1)
        if not -0.05 <= wait <= bound + slack:
            fail(f"s500: job {j}: attempt {k + 1} came {wait:.2f} s after attempt {k}'s 500, expected 0 to {bound} s (+{slack})")
        total_wait += wait
        total_bound += bound
if total_wait < 0.1 * total_bound:
    fail(f"s500: the 9 retries waited {total_wait:.2f} s in all, under a tenth of the jitter bounds' {total_bound} s: no backoff")
PY
echo "s500: 3 jobs delivered at attempt 4, waits within the backoff"

# --- s429, s503: Retry-After ---
for pair in "s429 $S429_JOB 429" "s503 $S503_JOB 503"; do
    read -r sink id code <<<"$pair"
    wait_delivery "$id" "$sink" "done" 20
    expect_eq "$sink: attempts" 2 "$DELIVERY_ATTEMPTS"
    recv_check app "$sink" "$id" "$code" <<'PY'
sink, j, code = ARGS[0], ARGS[1], int(ARGS[2])
rs = [r for r in on("/" + sink) if job(r) == j]
got = [(attempt(r), r["status"]) for r in rs]
if got != [(1, code), (2, 200)]:
    fail(f"{sink}: (attempt, answer) {got}, expected attempt 1 answered {code}, attempt 2 answered 200")
wait = rs[1]["t"] - rs[0]["t_answer"]
if not 1.9 <= wait <= 2 + 1.5:
    fail(f"{sink}: attempt 2 came {wait:.2f} s after a {code} with Retry-After: 2, expected 2 s")
PY
done
echo "s429, s503: Retry-After: 2 honoured"

# --- s404: dead at once, listed, replayed ---
wait_delivery "$S404_JOB" s404 dead 20
expect_eq "s404: attempts" 1 "$DELIVERY_ATTEMPTS"
sleep 1.5
expect_eq "s404: requests (a 404 is not retried)" 1 "$(recv_count app 'r["path"] == "/s404"')"
expect_eq "s404: /healthz dead" 1 "$(sink_health s404 dead)"
api GET "/v1/dead-letters?route=r404&sink=s404"
expect_api "dead letters of s404" 200
expect_eq "s404: dead letters" "$S404_JOB" "$(py '" ".join(x["id"] for x in j["jobs"])')"
api GET "/v1/dead-letters?route=r404&sink=plain"
expect_api "dead letters of another sink" 200
expect_eq "plain: dead letters of r404" 0 "$(py 'len(j["jobs"])')"
receiver_control app '{"path": "/s404", "plan": {"then": {"status": 200}}}'
api POST "/v1/dead-letters/$S404_JOB/replay?sink=s404"
expect_api "replay for s404" 200
wait_delivery "$S404_JOB" s404 "done" 20
expect_eq "s404: /healthz dead after the replay" 0 "$(sink_health s404 dead)"
recv_check app "$S404_JOB" <<'PY'
rs = on("/s404")
# A replay puts the job back with its attempts reset, as the pull API's replay does.
got = [(job(r), attempt(r), r["status"]) for r in rs]
if got != [(ARGS[0], 1, 404), (ARGS[0], 1, 200)]:
    fail(f"s404: (job, attempt, answer) {got}, expected the job answered 404 then, replayed, 200 (attempt 1 each)")
PY
echo "s404: dead after 1 attempt, replayed and delivered"

# --- sstall: the timeout ---
wait_delivery "$STALL_JOB" sstall "done" 30
expect_eq "sstall: attempts" 2 "$DELIVERY_ATTEMPTS"
recv_check app "$STALL_JOB" <<'PY'
rs = [r for r in on("/sstall") if job(r) == ARGS[0]]
if [attempt(r) for r in rs] != [1, 2]:
    fail(f"sstall: attempts {[attempt(r) for r in rs]}, expected 1 (stalled) then 2")
if not rs[0]["action"].get("stall"):
    fail("sstall: the first attempt was not the stalled one")
wait = rs[1]["t"] - rs[0]["t"]
if wait < 0.9:
    fail(f"sstall: attempt 2 came {wait:.2f} s after attempt 1 started: the timeout is 1 s")
PY
echo "sstall: a stall past the 1 s timeout was retried"

# --- ssign: Standard Webhooks headers checked by standardwebhooks ---
for id in "${SIGN_JOBS[@]}"; do
    wait_delivery "$id" ssign "done" 20
done
recv_check app "$WORKDIR/sign" "${SIGN_JOBS[@]}" <<'PY'
prefix, jobs = ARGS[0], ARGS[1:]
for n, j in enumerate(jobs):
    r = next((r for r in on("/ssign") if job(r) == j), None)
    if r is None:
        fail(f"ssign: job {j} did not arrive")
    if hdr(r, "webhook-id") != j:
        fail(f"ssign: webhook-id {hdr(r, 'webhook-id')!r}, expected the job id {j}")
    with open(f"{prefix}-{n}.body", "wb") as f:
        f.write(r["body"])
    with open(f"{prefix}-{n}.headers", "w", encoding="utf-8") as f:
        for name, value in r["headers"]:
            f.write(f"{name}: {value}\n")
PY
for n in "${!SIGN_JOBS[@]}"; do
    cmp -s "$WORKDIR/sign-$n.body" "${SIGN_BODIES[$n]}" || fail "ssign: job ${SIGN_JOBS[$n]}: body differs from what was sent"
    got=$(node "$VERIFIER" --secret "$APP_SIGNING_SECRET" --body "$WORKDIR/sign-$n.body" --headers "$WORKDIR/sign-$n.headers" 2>&1) || true
    expect_eq "ssign: standardwebhooks on job ${SIGN_JOBS[$n]}" verified "$got"
    got=$(node "$VERIFIER" --secret "$OTHER_SIGNING_SECRET" --body "$WORKDIR/sign-$n.body" --headers "$WORKDIR/sign-$n.headers" 2>&1) || true
    [[ $got == refused:* ]] || fail "ssign: standardwebhooks under another secret said '$got', expected a refusal"
done
echo "ssign: ${#SIGN_JOBS[@]} signed deliveries verified by standardwebhooks"

# --- /healthz: every sink, its kind, closed breakers, nothing left ---
body=$(curl -sS -m 10 "http://127.0.0.1:$ADMIN_PORT/healthz")
python3 - "$body" <<'PY' || fail "/healthz sinks: see above"
import json, sys
sinks = json.loads(sys.argv[1]).get("sinks")
want = {"plain", "s500", "s429", "s503", "s404", "sstall", "sdown", "ssign", "sbrk"}
if not isinstance(sinks, dict) or set(sinks) != want:
    sys.exit(f"FAIL: /healthz sinks {sinks}, expected {sorted(want)}")
for name, s in sinks.items():
    got = {k: s.get(k) for k in ("kind", "breaker", "in_flight", "queued", "dead")}
    if got != {"kind": "http", "breaker": "closed", "in_flight": 0, "queued": 0, "dead": 0}:
        sys.exit(f"FAIL: /healthz sinks.{name} is {got} once everything is delivered")
PY

stop_server
echo "delivery_http: ok"
