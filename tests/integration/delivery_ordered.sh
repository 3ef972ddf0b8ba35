#!/usr/bin/env bash
# ordered: true (SPEC section 8, README "Sinks", issue 14): with an application that answers 500
# at random (p = 0.3, a fixed seed: receiver.py draws from the seed, the job id and the attempt),
# jobs that share an ordering key reach it one at a time in the order they were received: per
# key, a job is first sent only after the one before it was answered 2xx, and the 2xx answers
# come in receive order. Four keys are interleaved on one route (sink concurrency 8); a second
# route without ordering.key is one sequence as a whole.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/delivery_lib.sh"
need python3 sha256sum

PER_KEY=8
KEYS=(k1 k2 k3 k4)
start_receiver app --plan '{"count": "job", "then": {"status": 200}, "random": {"p": 0.3, "seed": 7, "action": {"status": 500}}}'
delivery_config "$WORKDIR/config.yaml" <<EOF
sinks:
  keyed:
    http: {url: "http://127.0.0.1:${RECV_PORT[app]}/keyed", concurrency: 8}
    breaker: {failures: 100, cooldown: 1s}
  whole:
    http: {url: "http://127.0.0.1:${RECV_PORT[app]}/whole", concurrency: 8}
    breaker: {failures: 100, cooldown: 1s}
routes:
  keyed:
    path: /webhooks/keyed
    verify: {scheme: none}
    ordering: {key: "header:X-Key", timestamp: "header:X-Seq"}
    ordered: true
    deliver: [keyed]
    max_attempts: 30
  whole: {path: /webhooks/whole, verify: {scheme: none}, ordered: true, deliver: [whole], max_attempts: 30}
EOF
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
: >"$WORKDIR/sent.tsv"

# Interleaved: k1's first, k2's first, ..., k1's second, ...; the "whole" route's jobs among them.
for ((i = 1; i <= PER_KEY; i++)); do
    for k in "${KEYS[@]}"; do
        printf '{"key":"%s","seq":%d}' "$k" "$i" >"$WORKDIR/$k-$i.json"
        post_job /webhooks/keyed "$WORKDIR/$k-$i.json" -H "X-Key: $k" -H "X-Seq: $i"
        printf '%s\t%s\t%s\n' "$k" "$i" "$JOB_ID" >>"$WORKDIR/order.tsv"
    done
    if ((i <= 6)); then
        printf '{"whole":%d}' "$i" >"$WORKDIR/whole-$i.json"
        post_job /webhooks/whole "$WORKDIR/whole-$i.json"
        printf '%s\t%s\t%s\n' "(whole)" "$i" "$JOB_ID" >>"$WORKDIR/order.tsv"
    fi
done
while IFS=$'\t' read -r k _ id; do
    if [[ $k == "(whole)" ]]; then
        wait_delivery "$id" whole "done" 90
    else
        wait_delivery "$id" keyed "done" 90
    fi
done <"$WORKDIR/order.tsv"

recv_check app "$WORKDIR/order.tsv" <<'PY'
order = {}
for line in open(ARGS[0]):
    k, i, j = line.rstrip("\n").split("\t")
    order.setdefault(k, []).append(j)
key_of = {j: k for k, js in order.items() for j in js}
failures = 0
for k, jobs in order.items():
    path = "/whole" if k == "(whole)" else "/keyed"
    rs = [r for r in on(path) if key_of.get(job(r)) == k]
    if len(rs) < len(jobs):
        fail(f"key {k}: {len(rs)} requests for {len(jobs)} jobs")
    # The requests of one key, in the order received: job 1's attempts, job 1's 2xx, job 2's ...
    at, seen = 0, [job(r) for r in rs]
    for n, r in enumerate(rs):
        j = job(r)
        if j != jobs[at]:
            fail(f"key {k}: request {n + 1} is for job {jobs.index(j) + 1 if j in jobs else j}, while job {at + 1} "
                 f"(of {len(jobs)}) is not yet settled; jobs in the order sent: {[jobs.index(x) + 1 for x in seen]}")
        if n and r["t"] < rs[n - 1]["t_answer"]:
            fail(f"key {k}: request {n + 1} came before request {n} was answered: two in flight for one key")
        if r["status"] == 200:
            at += 1
            if at == len(jobs) and n != len(rs) - 1:
                fail(f"key {k}: requests after the last job's 2xx")
        else:
            failures += 1
    if at != len(jobs):
        fail(f"key {k}: {at} of {len(jobs)} jobs answered 2xx")
    for j in jobs:
        attempts = [attempt(r) for r in rs if job(r) == j]
        if attempts != list(range(1, len(attempts) + 1)):
            fail(f"key {k}: job {jobs.index(j) + 1}: Portcullis-Attempt {attempts}, expected 1, 2, ...")
total = sum(len(v) for v in order.values())
if failures == 0:
    fail(f"the application failed no request of {total} jobs (p = 0.3): the test did not test retries")
print(f"{total} jobs in {len(order)} sequences, {failures} answers 500 retried in order")
PY

stop_server
echo "delivery_ordered: ok"
