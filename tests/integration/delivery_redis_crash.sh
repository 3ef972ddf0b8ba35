#!/usr/bin/env bash
# The Redis Streams sink through kill -9 (SPEC section 8, issue 15), against a redis-server with
# appendonly yes and appendfsync always (what Redis acknowledged survives its own kill -9):
# 1. portcullis killed with SIGKILL during publishing, several times. The sink reaches Redis
#    through redis_proxy.py, which passes commands at once and holds replies back 0.2 s (4 XADDs
#    in flight), so a kill leaves entries stored whose replies portcullis never saw. After each
#    kill portcullis restarts with the proxy down (nothing can be written) and GET /v1/jobs/{id}
#    says which deliveries the ledger holds as settled. At the end: every job is in the stream
#    with its body and fields, a job written more than once carries the same id and fields each
#    time, no job settled before a kill was written again after it (Redis's entry ids are its
#    clock), and after a clean restart nothing more arrives.
# 2. redis-server frozen (SIGSTOP) then killed with SIGKILL mid-load, XADDs in flight that it
#    never read: the breaker opens (/healthz, the log), jobs are
#    still accepted and wait, and once redis-server is back on the same folder every job is in
#    the stream: nothing settled was lost, nothing waiting was dropped.
# shellcheck disable=SC2016 # wait_until conditions (and literal header values) are single-quoted
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/delivery_lib.sh"
source "$here/redis_lib.sh"
need python3 sha256sum
need_redis

N=${DELIVERY_CRASH_JOBS:-100}
CYCLES=${DELIVERY_CRASH_CYCLES:-3}
LOAD=${DELIVERY_REDIS_LOAD_JOBS:-200}
start_redis store --appendonly yes --appendfsync always
start_proxy slow store 0.2
# slow: failures 1 so that while the proxy is down the breaker holds the jobs back instead of
# every job spending attempts on closed connections.
delivery_config "$WORKDIR/config.yaml" <<EOF
sinks:
  slow:
    redis: {url: "redis://127.0.0.1:${PROXY_PORT[slow]}", stream: "crash:{route}", max_in_flight: 4}
    breaker: {failures: 1, cooldown: 1s}
  direct:
    redis: {url: "redis://127.0.0.1:${REDIS_PORT[store]}", stream: "load:{route}"}
    breaker: {failures: 3, cooldown: 1s}
routes:
  jobs: {path: /webhooks/jobs, verify: {scheme: none}, deliver: [slow], max_attempts: 50}
  load: {path: /webhooks/load, verify: {scheme: none}, deliver: [direct], max_attempts: 50}
EOF

# --- 1. kill -9 of portcullis during publishing ---
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
: >"$WORKDIR/sent.tsv"
post_many /webhooks/jobs "$N" crash
: >"$WORKDIR/kills"
stored=0
for ((c = 1; c <= CYCLES; c++)); do
    # Publishing again (after a restart: the breaker's cooldown, a new connection) before the
    # random moment of the kill.
    wait_until 10 '(($(rcli_int store XLEN crash:jobs) > stored))' ||
        fail "kill $c: nothing written within 10 s of the restart"
    sleep "$(python3 -c 'import random; print(round(random.uniform(0.3, 1.2), 2))')"
    kill9_server
    kill_time=$(date +%s.%N)
    stored=$(rcli_int store XLEN crash:jobs)
    proxy_down slow
    start_server "$WORKDIR/config.yaml"
    deliveries_done slow "$WORKDIR/settled-$c"
    printf '%s\t%s\n' "$kill_time" "$WORKDIR/settled-$c" >>"$WORKDIR/kills"
    proxy_up slow
    echo "kill $c: $stored entries in the stream, $(count_lines "$WORKDIR/settled-$c") of $N deliveries settled in the ledger"
    (($(count_lines "$WORKDIR/settled-$c") < N)) || [[ $c -gt 1 ]] ||
        echo "note: every job was settled before the first kill (a fast machine): the later kills test less"
done
wait_all_done slow 60
redis_check store "$WORKDIR/kills" <<'PY'
s = sent()
kills = []
for line in open(ARGS[0]):
    t, f = line.rstrip("\n").split("\t")
    kills.append((float(t), {l.strip() for l in open(f) if l.strip()}))
per_job = {}
for e in entries(Redis(), "crash:jobs"):
    j = e[2][b"id"].decode()
    if j not in s:
        fail(f"crash:jobs: entry {e[0]} carries id {j!r}, which no 202 gave")
    body, _, before, after = s[j]
    check_entry(e, j, "jobs", body, before, after)
    per_job.setdefault(j, []).append(e)
missing = [j for j in s if j not in per_job]
if missing:
    fail(f"{len(missing)} of {len(s)} jobs are not in the stream: {missing[:5]}")
dups = 0
for j, es in per_job.items():
    # The same job written again is the same entry but for Redis's id: the same fields, same bytes.
    if any(e[2] != es[0][2] for e in es[1:]):
        fail(f"job {j}: its {len(es)} entries differ: {[e[2] for e in es]}")
    dups += len(es) - 1
for n, (t, settled) in enumerate(kills, 1):
    for j in settled:
        late = [e for e in per_job.get(j, []) if e[1] > t * 1000]
        if late:
            fail(f"job {j} was settled in the ledger before kill {n}, yet written again after it (entry {late[0][0]})")
print(f"{len(s)} jobs in the stream, {dups} entries more than once; "
      f"{sum(len(x) for _, x in kills)} settlements checked across {len(kills)} kills")
PY

# A clean restart: nothing more is written.
stop_server
before=$(rcli_int store XLEN crash:jobs)
start_server "$WORKDIR/config.yaml"
sleep 3
expect_eq "entries after a clean restart with every delivery settled" "$before" "$(rcli_int store XLEN crash:jobs)"
expect_eq "/healthz sinks.slow.queued" 0 "$(sink_health slow queued)"

# --- 2. kill -9 of redis-server mid-load ---
: >"$WORKDIR/sent-load.tsv"
post_many /webhooks/load "$LOAD" load "$WORKDIR/sent-load.tsv" 0.01 &
loader=$!
at_exit "kill $loader 2>/dev/null"
# shellcheck disable=SC2154 # n is set by the condition wait_until evaluates
wait_until 15 'n=$(rcli_int store XLEN load:load); ((n >= LOAD / 4))' ||
    fail "direct: $n entries after 15 s of load, expected $((LOAD / 4))"
# Frozen first, so that XADDs are in flight that Redis never reads: a server that hangs and is
# then killed. Their replies never come; they must be written again, not counted as written.
kill -STOP "${REDIS_PID[store]}"
sleep 0.5
in_flight=$(sink_health direct in_flight)
kill9_redis store
posted_at_kill=$(count_lines "$WORKDIR/sent-load.tsv")
((posted_at_kill < LOAD)) || fail "the load was over before redis-server was killed: raise DELIVERY_REDIS_LOAD_JOBS"
((in_flight > 0)) || fail "direct: no XADD in flight while redis-server was frozen, with the load still running"
wait_until 10 '[[ $(sink_health direct breaker) == open ]]' || true
expect_eq "direct: /healthz breaker with redis-server killed" open "$(sink_health direct breaker)"
[[ -n $(log_lines_with "sink breaker opened" direct) ]] || fail "direct: no \"sink breaker opened\" line"
[[ -n $(log_lines_with "delivery failed; will retry" direct) ]] || fail "direct: no \"delivery failed; will retry\" line"
wait "$loader" || fail "direct: posting failed while redis-server was down (see above)"
expect_eq "jobs accepted" "$LOAD" "$(count_lines "$WORKDIR/sent-load.tsv")"
sleep 1
waiting=$(sink_health direct queued)
((waiting > 0)) || fail "direct: /healthz queued is $waiting with redis-server down, expected the jobs to wait"
kill -0 "$SERVER_PID" 2>/dev/null || fail "portcullis is gone"
restart_redis store
wait_all_done direct 60 "$WORKDIR/sent-load.tsv"
wait_until 5 '[[ $(sink_health direct breaker) == closed ]]' || true
expect_eq "direct: /healthz breaker once redis-server is back" closed "$(sink_health direct breaker)"
redis_check store "$WORKDIR/sent-load.tsv" <<'PY'
s = sent(ARGS[0])
per_job = {}
for e in entries(Redis(), "load:load"):
    j = e[2][b"id"].decode()
    if j not in s:
        fail(f"load:load: entry {e[0]} carries id {j!r}, which no 202 gave")
    body, _, before, after = s[j]
    check_entry(e, j, "load", body, before, after)
    per_job.setdefault(j, []).append(e)
missing = [j for j in s if j not in per_job]
if missing:
    fail(f"{len(missing)} of {len(s)} jobs settled but not in the stream after redis-server's restart: {missing[:5]}")
dups = 0
for j, es in per_job.items():
    if any(e[2] != es[0][2] for e in es[1:]):
        fail(f"job {j}: its {len(es)} entries differ")
    dups += len(es) - 1
print(f"{len(s)} jobs in the stream after redis-server's kill -9 and restart, {dups} entries more than once")
PY
echo "redis kill: $posted_at_kill of $LOAD jobs posted at the kill, $in_flight XADDs in flight unread, $waiting jobs waiting while it was down"
stop_server
echo "delivery_redis_crash: ok"
