#!/usr/bin/env bash
# Push delivery through kill -9 (SPEC sections 7 and 8, issue 14): N jobs go to a slow-ish
# application (every answer after 0.2 s, 4 in flight) and portcullis is killed with SIGKILL at a
# random moment during delivery, several times. After each kill it restarts while the
# application is down (so nothing can be delivered), and GET /v1/jobs/{id} says which deliveries
# the ledger holds as settled: exactly those settled before the kill. Then the application comes
# back. At the end: every job reached the application with its body and the id of its 202; a job
# that came more than once came with the same id and a higher Portcullis-Attempt each time; no
# job settled before a kill was sent again after it; after a clean restart nothing more comes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/delivery_lib.sh"
need python3 sha256sum

N=${DELIVERY_CRASH_JOBS:-80}
CYCLES=${DELIVERY_CRASH_CYCLES:-3}
start_receiver app --plan '{"then": {"stall": 0.2}}'
# failures: 1 so that while the application is down the breaker holds the jobs back instead of
# every job spending attempts (and growing backoffs) on refused connections.
delivery_config "$WORKDIR/config.yaml" <<EOF
sinks:
  app:
    http: {url: "http://127.0.0.1:${RECV_PORT[app]}/hook", concurrency: 4, timeout: 5s}
    breaker: {failures: 1, cooldown: 1s}
routes:
  jobs: {path: /webhooks/jobs, verify: {scheme: none}, deliver: [app], max_attempts: 50}
EOF

# settled_now OUT: the ids of the jobs in $WORKDIR/sent.tsv whose delivery to app is done, one
# GET /v1/jobs/{id} each over one keep-alive connection.
settled_now() {
    python3 - "$ADMIN_PORT" "$TOKEN" "$WORKDIR/sent.tsv" "$1" <<'PY' || fail "reading the jobs' states (see above)"
import http.client, json, sys
port, token, sent, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
h = {"Authorization": "Bearer " + token}
done = []
for line in open(sent):
    i = line.split("\t")[0]
    c.request("GET", "/v1/jobs/" + i, headers=h)
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"FAIL: GET /v1/jobs/{i}: {r.status} {body!r}")
    d = json.loads(body).get("deliveries", {}).get("app")
    if not isinstance(d, dict) or d.get("state") not in ("queued", "leased", "done"):
        sys.exit(f"FAIL: job {i}: deliveries.app is {d!r}, expected queued, leased or done")
    if d["state"] == "done":
        done.append(i)
open(out, "w").write("".join(f"{i}\n" for i in done))
PY
}

start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
: >"$WORKDIR/sent.tsv"
for ((n = 1; n <= N; n++)); do
    printf '{"n":%d,"nonce":"%s","text":"Grüße ✓"}' "$n" "$(openssl rand -hex 8)" >"$WORKDIR/body-$n.json"
    post_job /webhooks/jobs "$WORKDIR/body-$n.json"
done
: >"$WORKDIR/kills"
for ((c = 1; c <= CYCLES; c++)); do
    sleep "$(python3 -c 'import random; print(round(random.uniform(0.3, 1.2), 2))')"
    before=$(recv_count app 'r["status"] == 200')
    kill9_server
    kill_time=$(date +%s.%N)
    receiver_control app '{"listen": false}'
    start_server "$WORKDIR/config.yaml"
    settled_now "$WORKDIR/settled-$c"
    printf '%s\t%s\n' "$kill_time" "$WORKDIR/settled-$c" >>"$WORKDIR/kills"
    receiver_control app '{"listen": true}'
    echo "kill $c: $before answers 200 before it, $(count_lines "$WORKDIR/settled-$c") of $N deliveries settled in the ledger"
    (($(count_lines "$WORKDIR/settled-$c") < N)) || [[ $c -gt 1 ]] ||
        echo "note: every job was settled before the first kill (a fast machine): the later kills test less"
done

# Everything delivered in the end.
for id in $(cut -f1 "$WORKDIR/sent.tsv"); do
    wait_delivery "$id" app "done" 60
done
recv_check app "$WORKDIR/sent.tsv" "$WORKDIR/kills" <<'PY'
sent, by_body = {}, {}
for line in open(ARGS[0], encoding="utf-8"):
    i, f = line.split("\t")[:2]
    sent[i] = open(f, "rb").read()
    by_body[sent[i]] = i
kills = []
for line in open(ARGS[1]):
    t, f = line.rstrip("\n").split("\t")
    kills.append((float(t), {l.strip() for l in open(f) if l.strip()}))
per_job = {}
for r in reqs:
    j = job(r)
    if by_body.get(r["body"]) != j:
        fail(f"request {r['seq']}: Portcullis-Job-Id {j}, but its body is that of job {by_body.get(r['body'])}")
    per_job.setdefault(j, []).append(r)
missing = [i for i in sent if not any(r["status"] == 200 for r in per_job.get(i, []))]
if missing:
    fail(f"{len(missing)} jobs never reached the application with a 200: {missing[:5]}")
dups = 0
for j, rs in per_job.items():
    attempts = [attempt(r) for r in rs]
    if any(b <= a for a, b in zip(attempts, attempts[1:])):
        fail(f"job {j}: Portcullis-Attempt in the order received {attempts}: each delivery again must carry a higher one")
    dups += len(rs) > 1
for n, (t, settled) in enumerate(kills, 1):
    for j in settled:
        again = [r for r in per_job.get(j, []) if r["t"] > t]
        if again:
            fail(f"job {j} was settled in the ledger before kill {n}, yet was sent again after it (attempt {attempt(again[0])})")
print(f"{len(sent)} jobs delivered, {dups} more than once; "
      f"{sum(len(s) for _, s in kills)} settlements checked across {len(kills)} kills")
PY

# A clean restart: nothing more is sent.
stop_server
before=$(recv_count app)
start_server "$WORKDIR/config.yaml"
sleep 3
expect_eq "requests after a clean restart with every delivery settled" "$before" "$(recv_count app)"
expect_eq "/healthz sinks.app.queued" 0 "$(sink_health app queued)"
stop_server
echo "delivery_crash: ok"
