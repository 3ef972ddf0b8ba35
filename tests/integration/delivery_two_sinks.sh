#!/usr/bin/env bash
# One route, two sinks (SPEC section 8, issue 14): an HTTP sink (receiver.py) and an exec sink.
# Each (job, sink) is settled on its own: every job reaches each sink; while the application
# answers 500 the exec sink still gets every job at once, and while the command fails the HTTP
# sink still does; a job is done only once both have it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/delivery_lib.sh"
need python3 sha256sum
[[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is missing (the test's command runs with the sink's PATH)"

RUNS="$WORKDIR/runs"
mkdir -p "$RUNS"
FAIL_FLAG="$WORKDIR/exec-fails"
# The command: exit 1 while the flag file exists, else 0; one record per run.
cat >"$WORKDIR/cmd.py" <<'PY'
import base64, json, os, sys, time
out, flag = sys.argv[1], sys.argv[2]
body = sys.stdin.buffer.read()
code = 1 if os.path.exists(flag) else 0
with open(os.path.join(out, "records.jsonl"), "a") as f:
    f.write(json.dumps({"job": os.environ["PORTCULLIS_JOB_ID"], "attempt": int(os.environ["PORTCULLIS_ATTEMPT"]),
                        "t": time.time(), "code": code, "body_b64": base64.b64encode(body).decode()}) + "\n")
sys.exit(code)
PY

start_receiver app --plan '{"then": {"status": 500}}'
delivery_config "$WORKDIR/config.yaml" <<EOF
sinks:
  app:
    http: {url: "http://127.0.0.1:${RECV_PORT[app]}/hook", concurrency: 4}
    breaker: {failures: 5, cooldown: 2s}
  run:
    exec: {command: ["/usr/bin/python3", "$WORKDIR/cmd.py", "$RUNS", "$FAIL_FLAG"], concurrency: 2, timeout: 10s}
    breaker: {failures: 5, cooldown: 2s}
routes:
  jobs: {path: /webhooks/jobs, verify: {scheme: none}, deliver: [app, run], max_attempts: 50}
EOF
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
: >"$WORKDIR/sent.tsv"

post_batch() {
    local name=$1 i
    BATCH=()
    for i in 1 2 3 4 5 6; do
        printf '{"batch":"%s","n":%d,"text":"Grüße ✓"}' "$name" "$i" >"$WORKDIR/$name-$i.json"
        post_job /webhooks/jobs "$WORKDIR/$name-$i.json"
        BATCH+=("$JOB_ID")
    done
}

# job_state ID: the job's own state (done only once every sink settled it).
job_state() {
    api GET "/v1/jobs/$1"
    expect_api "GET /v1/jobs/$1" 200
    py 'j["state"]'
}

# --- A: the application answers 500; the command gets every job anyway ---
post_batch a
A_JOBS=("${BATCH[@]}")
for id in "${A_JOBS[@]}"; do
    wait_delivery "$id" run "done" 20
    expect_eq "A: exec attempts of $id" 1 "$DELIVERY_ATTEMPTS"
done
wait_requests app 1 10
for id in "${A_JOBS[@]}"; do
    state=$(delivery_state "$id" app)
    [[ $state != done\ * && $state != dead\ * && $state != none ]] ||
        fail "A: job $id: its delivery to app is '$state' while the application answers 500"
    [[ $(job_state "$id") != "done" ]] || fail "A: job $id is done while app has not taken it"
done
expect_eq "A: 2xx answers while the application fails" 0 "$(recv_count app 'r["status"] == 200')"
echo "A: exec took all ${#A_JOBS[@]} jobs while the application answered 500"

# --- B: the command fails; the application recovers and gets every job (A's too) ---
: >"$FAIL_FLAG"
receiver_control app '{"plan": {"then": {"status": 200}}}'
post_batch b
B_JOBS=("${BATCH[@]}")
for id in "${A_JOBS[@]}" "${B_JOBS[@]}"; do
    wait_delivery "$id" app "done" 45
done
for id in "${B_JOBS[@]}"; do
    state=$(delivery_state "$id" run)
    [[ $state != done\ * && $state != dead\ * && $state != none ]] ||
        fail "B: job $id: its delivery to run is '$state' while the command fails"
    [[ $(job_state "$id") != "done" ]] || fail "B: job $id is done while run has not taken it"
done
echo "B: the application took all $((${#A_JOBS[@]} + ${#B_JOBS[@]})) jobs while the command failed"

# --- the command recovers: everything done ---
rm -f "$FAIL_FLAG"
for id in "${B_JOBS[@]}"; do
    wait_delivery "$id" run "done" 45
done
for id in "${A_JOBS[@]}" "${B_JOBS[@]}"; do
    expect_eq "job $id once both sinks have it" "done" "$(job_state "$id")"
done

# Each sink got each job, byte for byte, and took it once.
recv_check app "$WORKDIR/sent.tsv" "$RUNS/records.jsonl" <<'PY'
sent = {}
for line in open(ARGS[0], encoding="utf-8"):
    i, f = line.split("\t")[:2]
    sent[i] = open(f, "rb").read()
for r in reqs:
    if job(r) not in sent:
        fail(f"app: a request for unknown job {job(r)}")
    if r["body"] != sent[job(r)]:
        fail(f"app: job {job(r)}: body differs from what was sent")
ok = sorted(job(r) for r in reqs if r["status"] == 200)
if ok != sorted(sent):
    fail(f"app: jobs answered 200 {ok}, expected each of the {len(sent)} jobs once")
runs = [json.loads(l) for l in open(ARGS[1])]
for r in runs:
    if base64.b64decode(r["body_b64"]) != sent.get(r["job"]):
        fail(f"run: job {r['job']}: stdin differs from the body sent")
done = sorted(r["job"] for r in runs if r["code"] == 0)
if done != sorted(sent):
    fail(f"run: jobs that exited 0 {done}, expected each of the {len(sent)} jobs once")
PY

stop_server
echo "delivery_two_sinks: ok"
