#!/usr/bin/env bash
# The NATS JetStream sink through crashes (SPEC sections 7 and 8, issue 15), against a real
# `nats-server -js` with the stream HOOKS on webhooks.> (file storage, duplicate window 2 minutes):
# - kill -9 of portcullis during publishing, 3 times, restarting it each time, while a client
#   posts jobs without pause. Before the second kill nats-server is frozen (SIGSTOP) for a moment,
#   so that publishes are on the wire, unacknowledged, when portcullis dies; it stores them after
#   the kill (SIGCONT), and the restarted portcullis, which never saw their acknowledgement,
#   publishes them again. At the end every job that got a 202 is in the stream exactly once
#   (JetStream's duplicate window drops the second copy by Nats-Msg-Id = the job id), with its
#   body; the copies stored after a kill were published again (their delivery has more attempts
#   than the stored copy's Portcullis-Attempt) and are still held once.
# - kill -9 of nats-server mid-load: the breaker opens (/healthz), the jobs wait unsettled, and
#   once nats-server is back (same port, same store) every job is in the stream exactly once.
# - Scale-out: a second portcullis (its own spool and ports) and the first both receive the same
#   GitHub deliveries (same X-GitHub-Delivery, same body, signed with @octokit/webhooks-methods)
#   and publish to the one stream: it holds each delivery once, with Nats-Msg-Id = the dedup key.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
source "$here/delivery_lib.sh"
source "$here/nats_lib.sh"
need python3 openssl sha256sum
need_signers
need_nats

CYCLES=${DELIVERY_NATS_CRASH_CYCLES:-3}
((CYCLES >= 2)) || fail "DELIVERY_NATS_CRASH_CYCLES must be 2 or more (the second kill freezes nats-server)"
export GH_SECRET="nats crash: it's a secret to everybody ✓"
RUN=$(openssl rand -hex 6)

start_nats ""
nats_client create HOOKS 'webhooks.>' 120 >/dev/null
# failures: 3 so that while nats-server is down the breaker holds the jobs back instead of every
# job spending attempts.
portcullis_config() {
    delivery_config "$1" <<EOF
sinks:
  bus:
    nats: {url: "nats://127.0.0.1:$NATS_PORT", subject: "webhooks.{route}"}
    breaker: {failures: 3, cooldown: 1s}
routes:
  jobs: {path: /webhooks/jobs, verify: {scheme: none}, deliver: [bus], max_attempts: 100}
  gh: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}, dedup: {window: 24h}, deliver: [bus]}
EOF
}
portcullis_config "$WORKDIR/config.yaml"

# The poster: POSTs job FIRST, FIRST+1, ... (COUNT at most, one keep-alive connection, 2 ms apart
# to spare the machine: a few hundred a second) until a
# request fails (portcullis killed) or STOP exists. Appends "ID<TAB>N" for each 202 to
# $WORKDIR/sent.tsv and "maybe<TAB>N" for the request that failed (stored or not: its answer was
# lost). Job N's body is body(N).
cat >"$WORKDIR/poster.py" <<'PY'
import http.client, os, sys, time
port, first, count, run, out, stop = sys.argv[1:]
def body(n):
    return ('{"n":%d,"run":"%s","text":"Grüße ✓"}' % (n, run)).encode()
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=20)
with open(out, "a") as f:
    for n in range(int(first), int(first) + int(count)):
        if os.path.exists(stop):
            break
        try:
            c.request("POST", "/webhooks/jobs", body(n), {"Content-Type": "application/json"})
            r = c.getresponse()
            answer = r.read()
        except (OSError, http.client.HTTPException):
            f.write("maybe\t%d\n" % n)
            break
        if r.status != 202:
            sys.exit(f"FAIL: job {n}: answer {r.status} {answer!r}")
        f.write("%s\t%d\n" % (answer.split(b'"id":"')[1].split(b'"')[0].decode(), n))
        f.flush()
        time.sleep(0.002)
PY
POSTER_PID=""
# shellcheck disable=SC2016 # expanded at exit
at_exit 'if [[ -n $POSTER_PID ]]; then kill "$POSTER_PID" 2>/dev/null; fi'
# start_poster FIRST COUNT
start_poster() {
    rm -f "$WORKDIR/stop"
    python3 "$WORKDIR/poster.py" "$PORT" "$1" "$2" "$RUN" "$WORKDIR/sent.tsv" "$WORKDIR/stop" &
    POSTER_PID=$!
}
wait_poster() {
    local rc=0
    # The braces keep bash's report of the server killed meanwhile out of the output.
    { wait "$POSTER_PID" || rc=$?; } 2>/dev/null
    POSTER_PID=""
    [[ $rc == 0 ]] || fail "the poster failed (see above)"
}

# wait_settled SECONDS: until the bus delivery of every job in sent.tsv is done (one keep-alive
# connection); prints "ID ATTEMPTS" per job into $WORKDIR/attempts.
wait_settled() {
    python3 - "$ADMIN_PORT" "$TOKEN" "$WORKDIR/sent.tsv" "$1" "$WORKDIR/attempts" <<'PY' || fail "waiting for the jobs to be delivered (see above)"
import http.client, json, sys, time
port, token, sent, limit, out = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
ids = [l.split("\t")[0] for l in open(sent) if not l.startswith("maybe\t")]
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
h = {"Authorization": "Bearer " + token}
end = time.monotonic() + limit
attempts = {}
pending = list(ids)
while pending:
    still = []
    for i in pending:
        c.request("GET", "/v1/jobs/" + i, headers=h)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            sys.exit(f"FAIL: GET /v1/jobs/{i}: {r.status} {body!r}")
        d = json.loads(body).get("deliveries", {}).get("bus")
        if isinstance(d, dict) and d.get("state") == "done":
            attempts[i] = d.get("attempts")
        else:
            still.append((i, d))
    pending = [i for i, _ in still]
    if pending and time.monotonic() > end:
        sys.exit(f"FAIL: {len(pending)} of {len(ids)} jobs not delivered within {limit} s, e.g. {still[:3]}")
    if pending:
        time.sleep(0.2)
open(out, "w").write("".join(f"{i} {a}\n" for i, a in attempts.items()))
PY
}

# check_stream WHAT: every job in sent.tsv is in the stream exactly once with its body and
# Nats-Msg-Id = its id; a job in the stream that is not in sent.tsv is one whose answer was lost
# (a "maybe" line); no job twice. Prints what it counted.
check_stream() {
    nats_client dump HOOKS "$WORKDIR/stream.jsonl" >/dev/null
    stream_check "$WORKDIR/stream.jsonl" "$1" "$RUN" "$WORKDIR/sent.tsv" "$WORKDIR/kills" "$WORKDIR/attempts" <<'PY'
what, run, sent_file, kills_file, attempts_file = ARGS
sent, maybe = {}, set()
for line in open(sent_file):
    i, n = line.rstrip("\n").split("\t")
    if i == "maybe":
        maybe.add(int(n))
    else:
        sent[i] = int(n)
def body(n):
    return ('{"n":%d,"run":"%s","text":"Grüße ✓"}' % (n, run)).encode()
jobs = [m for m in msgs if m["subject"] == "webhooks.jobs"]
per_job = {}
for m in jobs:
    per_job.setdefault(job(m), []).append(m)
twice = {j: [m["seq"] for m in ms] for j, ms in per_job.items() if len(ms) > 1}
if twice:
    fail(f"{what}: {len(twice)} jobs are in the stream more than once (job: stream seqs), e.g. {list(twice.items())[:3]}")
missing = [i for i in sent if i not in per_job]
if missing:
    fail(f"{what}: {len(missing)} of {len(sent)} jobs that got a 202 are not in the stream, e.g. {missing[:3]}")
extra = 0
for j, (m,) in per_job.items():
    if hdr(m, "nats-msg-id") != j:
        fail(f"{what}: job {j}: Nats-Msg-Id {hdr(m, 'nats-msg-id')!r}, expected the job id")
    if j in sent:
        if m["body"] != body(sent[j]):
            fail(f"{what}: job {j}: the stream holds body {m['body'][:60]!r}, expected job {sent[j]}'s")
    else:
        n = next((n for n in maybe if m["body"] == body(n)), None)
        if n is None:
            fail(f"{what}: job {j} is in the stream but got no 202 and is no request whose answer was lost: {m['body'][:60]!r}")
        extra += 1
# The copies stored between a kill and the restart: their publisher died before their
# acknowledgement, so they were not settled and the restarted portcullis published them again.
windows = [tuple(map(float, l.split())) for l in open(kills_file)]
attempts = dict(l.split() for l in open(attempts_file))
stored_after, republished = [0] * len(windows), 0
for j, (m,) in per_job.items():
    a = int(attempts[j]) if j in attempts else None
    stored_attempt = int(hdr(m, "portcullis-attempt"))
    for k, (killed, restarted) in enumerate(windows):
        if killed < m["time"] < restarted:
            stored_after[k] += 1
            if a is not None and a <= stored_attempt:
                fail(f"{what}: job {j} was stored after kill {k + 1}, yet its delivery has {a} attempts and the "
                     f"stored copy is attempt {stored_attempt}: it was not published again")
    republished += a is not None and a > stored_attempt
print(f"{what}: {len(sent)} jobs with a 202 in the stream once each (and {extra} whose answer was lost); "
      f"{republished} published more than once, held once; stored between each kill and the restart: {stored_after}")
print(republished, *stored_after, file=open(DUMP + ".counts", "w"))
PY
}

# --- kill -9 of portcullis during publishing ---
start_server "$WORKDIR/config.yaml"
: >"$WORKDIR/sent.tsv"
: >"$WORKDIR/kills"
for ((c = 1; c <= CYCLES; c++)); do
    start_poster $((c * 100000)) 5000
    sleep "$(python3 -c 'import random; print(round(random.uniform(0.4, 1.0), 2))')"
    frozen=0
    if ((c == 2)); then
        # Publishes on the wire, unacknowledged, when portcullis dies.
        kill -STOP "$NATS_PID"
        frozen=1
        sleep 0.5
    fi
    kill9_server
    kill_time=$(date +%s.%N)
    ((frozen == 0)) || kill -CONT "$NATS_PID"
    wait_poster
    sleep 0.3 # nats-server stores what it had read
    echo "$kill_time $(date +%s.%N)" >>"$WORKDIR/kills"
    start_server "$WORKDIR/config.yaml"
    echo "kill $c$( ((frozen == 0)) || echo ' (nats-server frozen)'): $(grep -vc '^maybe' "$WORKDIR/sent.tsv") jobs with a 202 so far"
done
wait_settled 60
check_stream "after $CYCLES kills of portcullis"
read -r republished _ frozen_after _ <<<"$(cat "$WORKDIR/stream.jsonl.counts")"
((frozen_after > 0)) ||
    fail "nothing was stored after the kill with nats-server frozen: the test did not catch publishes in flight"
((republished > 0)) || fail "no job was published twice: the duplicate window was not tested"

# --- kill -9 of nats-server mid-load ---
: >"$WORKDIR/kills"
start_poster 900000 100000
sleep 0.5
kill9_nats
for ((i = 0; i < 100; i++)); do
    [[ $(sink_health bus breaker) == open ]] && break
    sleep 0.1
done
expect_eq "/healthz breaker with nats-server down" open "$(sink_health bus breaker)"
sleep 1
touch "$WORKDIR/stop"
wait_poster
# Open again after each failed probe (half-open for the moment a probe takes).
for ((i = 0; i < 50; i++)); do
    [[ $(sink_health bus breaker) == open ]] && break
    sleep 0.1
done
expect_eq "/healthz breaker with nats-server still down" open "$(sink_health bus breaker)"
waiting=$(sink_health bus queued)
((waiting > 0)) || fail "no job waits while nats-server is down (queued: $waiting)"
restart_nats
echo "nats-server killed and restarted: $waiting jobs were waiting"
wait_settled 60
check_stream "after kill -9 of nats-server"
expect_eq "/healthz breaker once nats-server is back" closed "$(sink_health bus breaker)"

# --- scale-out: two appliances, one stream ---
A_PID=$SERVER_PID A_PORT=$PORT A_ADMIN=$ADMIN_PORT A_LOG=$SERVER_LOG
# shellcheck disable=SC2016 # expanded at exit
at_exit 'kill -9 "$A_PID" 2>/dev/null'
SERVER_PID=""
# shellcheck disable=SC2034 # read by delivery_lib.sh
SPOOL="$WORKDIR/spool-b"
portcullis_config "$WORKDIR/config-b.yaml"
start_server "$WORKDIR/config-b.yaml"
B_PORT=$PORT B_ADMIN=$ADMIN_PORT
[[ $A_PORT != "$B_PORT" ]] || fail "the two instances share a port"
DELIVERIES=()
: >"$WORKDIR/scale.tsv"
for k in 1 2; do
    new_body "scale-out-$k"
    delivery=$(cat /proc/sys/kernel/random/uuid)
    DELIVERIES+=("$delivery")
    sign_with github --secret "$GH_SECRET" --body "$BODY"
    for side in A B; do
        if [[ $side == A ]]; then PORT=$A_PORT; else PORT=$B_PORT; fi
        post /webhooks/github "$BODY" "${SIGNED[@]}" -H 'Content-Type: application/json' \
            -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: $delivery"
        expect_queued "scale-out delivery $k to $side"
        printf '%s\t%s\t%s\t%s\n' "$side" "$JOB_ID" "$delivery" "$BODY" >>"$WORKDIR/scale.tsv"
    done
done
while IFS=$'\t' read -r side id _ _; do
    if [[ $side == A ]]; then ADMIN_PORT=$A_ADMIN; else ADMIN_PORT=$B_ADMIN; fi
    wait_delivery "$id" bus "done" 20
done <"$WORKDIR/scale.tsv"
nats_client dump HOOKS "$WORKDIR/stream.jsonl" >/dev/null
ids=()
for d in "${DELIVERIES[@]}"; do
    ids+=("$d" "$(nats_msg_id gh "$d")")
done
stream_check "$WORKDIR/stream.jsonl" "$WORKDIR/scale.tsv" "${ids[@]}" <<'PY'
scale = [l.rstrip("\n").split("\t") for l in open(ARGS[0], encoding="utf-8")]
want = dict(zip(ARGS[1::2], ARGS[2::2]))  # delivery -> Nats-Msg-Id
gh = [m for m in msgs if m["subject"] == "webhooks.gh"]
for delivery, msg_id in want.items():
    held = [m for m in gh if hdr(m, "x-github-delivery") == delivery]
    if len(held) != 1:
        fail(f"delivery {delivery}, accepted by both instances, is {len(held)} times in the stream, expected once")
    m = held[0]
    if hdr(m, "nats-msg-id") != msg_id:
        fail(f"delivery {delivery}: Nats-Msg-Id {hdr(m, 'nats-msg-id')}, expected the dedup key {msg_id}")
    rows = [r for r in scale if r[2] == delivery]
    if job(m) not in [r[1] for r in rows]:
        fail(f"delivery {delivery}: the stream holds job {job(m)}, neither instance's ({rows})")
    if m["body"] != open(rows[0][3], "rb").read():
        fail(f"delivery {delivery}: the body differs from what was sent")
if len(gh) != len(want):
    fail(f"the stream holds {len(gh)} GitHub messages, expected {len(want)}")
PY
echo "scale-out: ${#DELIVERIES[@]} GitHub deliveries accepted by both instances, each once in the stream"

stop_server
SERVER_PID=$A_PID SERVER_LOG=$A_LOG
stop_server
echo "delivery_nats_crash: ok"
