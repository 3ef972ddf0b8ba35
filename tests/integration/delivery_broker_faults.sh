#!/usr/bin/env bash
# Brokers that close mid-frame or answer garbage (issue 15: "a server that closes mid-frame: clear
# errors, no crash"), through the real binary. One portcullis, one sink and one route per fault,
# each sink reaching the real server (nats-server -js with user and password, redis-server with
# requirepass) through a proxy that breaks one exchange, once:
# - NATS (nats_proxy.py):
#   cut-control, cut-payload: the JetStream publish acknowledgement of the sink's first publish is
#     passed only in part (cut inside its control line; cut inside its payload), then both sides
#     are closed. The publish was stored: the retry's acknowledgement says "duplicate":true and
#     the stream holds the job once, the message of attempt 1 (Nats-Msg-Id = the job id).
#   bad-info, long-line, garbage-op: the first connection is a fake server's (an INFO cut short;
#     a 6000-byte control line; an unknown operation), held until the job is in flight on it.
#     The error names the protocol fault; the job arrives once through the real server.
# - Redis (redis_proxy.py --fault): the reply to the first XADD cut inside its first line, or
#   inside its bulk string, then closed; an array where the entry id is expected; a line that is
#   no RESP. Each entry was stored by Redis: the retry writes the job again, with the same fields
#   (at least once, consumers dedup by the id field).
# For each: the log names the sink and what happened (no password in it), the job is not settled
# by the broken exchange (a "delivery failed; will retry" line, attempts >= 2), portcullis keeps
# serving (a second job per sink is delivered at its first attempt, the breakers are closed) and
# stops cleanly.
# shellcheck disable=SC2016 # python sources and literal values are single-quoted
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/delivery_lib.sh"
source "$here/nats_lib.sh"
source "$here/redis_lib.sh"
need python3 openssl sha256sum
need_nats
need_redis

NATS_PASSWORD="nats-pw-$(openssl rand -hex 12)"
REDIS_PASSWORD="redis-pw-$(openssl rand -hex 12)"
export NATS_PASSWORD REDIS_PASSWORD
# shellcheck disable=SC2034 # read by nats_lib.sh
NATS_AUTH=(--user portcullis --password "$NATS_PASSWORD")
NATS_FAULTS=(cut-control cut-payload bad-info long-line garbage-op)
REDIS_FAULTS=(cut-line cut-bulk wrong-shape garbage)
HOLD="$WORKDIR/fake-servers-go"

# What the log must say for each fault: the sink's message, then a fixed string of its error.
declare -A WANT_MSG=(
    [cut-control]="nats sink disconnected" [cut-payload]="nats sink disconnected"
    [bad-info]="nats sink cannot connect" [long-line]="nats sink cannot connect"
    [garbage-op]="nats sink cannot connect"
)
declare -A WANT_ERROR=(
    [cut-control]="the server closed the connection in the middle of a frame ("
    [cut-payload]="the server closed the connection in the middle of a frame ("
    [bad-info]="protocol error: INFO is not a JSON object"
    [long-line]="protocol error from the server: control line too long"
    [garbage-op]="protocol error from the server: unknown operation"
    [cut-line]="the server closed the connection in the middle of a reply ("
    [cut-bulk]="the server closed the connection in the middle of a reply ("
    [wrong-shape]="unexpected reply to XADD: array"
    [garbage]="bad reply from redis (unknown type byte)"
)

start_nats "authorization { user: portcullis, password: \"$NATS_PASSWORD\" }"
nats_client create FAULTS 'faults.>' 120 >/dev/null
start_redis store --requirepass "$REDIS_PASSWORD"
redis_auth store "$REDIS_PASSWORD"

# start_nats_proxy FAULT: nats_proxy.py in front of nats-server: NPROXY_PORT[FAULT].
declare -A NPROXY_PID=() NPROXY_PORT=()
start_nats_proxy() {
    local fault=$1 file="$WORKDIR/nproxy-$1.port"
    python3 "$here/nats_proxy.py" --upstream "$NATS_PORT" --port-file "$file" --fault "$fault" \
        --hold "$HOLD" 2>"$WORKDIR/nproxy-$fault.stderr" &
    NPROXY_PID[$fault]=$!
    at_exit "kill ${NPROXY_PID[$fault]} 2>/dev/null"
    wait_until 10 "[[ -s $file ]]" ||
        fail "nats_proxy.py $fault wrote no port within 10 s: $(cat "$WORKDIR/nproxy-$fault.stderr")"
    NPROXY_PORT[$fault]=$(cat "$file")
}

# sink and route names: nats_cut_control, redis_cut_line, ...
name_of() { echo "$1_${2//-/_}"; }

CREDS='{user: portcullis, password: {env: NATS_PASSWORD}}'
BREAKER='breaker: {failures: 5, cooldown: 1s}'
for f in "${NATS_FAULTS[@]}"; do
    start_nats_proxy "$f"
done
for f in "${REDIS_FAULTS[@]}"; do
    start_proxy "$f" store 0 --fault "$f"
done
{
    echo "sinks:"
    for f in "${NATS_FAULTS[@]}"; do
        echo "  $(name_of nats "$f"): {nats: {url: \"nats://127.0.0.1:${NPROXY_PORT[$f]}\", subject: \"faults.{route}\", credentials: $CREDS}, $BREAKER}"
    done
    for f in "${REDIS_FAULTS[@]}"; do
        echo "  $(name_of redis "$f"): {redis: {url: \"redis://127.0.0.1:${PROXY_PORT[$f]}\", stream: \"faults:{route}\", credentials: {password: {env: REDIS_PASSWORD}}}, $BREAKER}"
    done
    echo "routes:"
    for f in "${NATS_FAULTS[@]}"; do
        echo "  $(name_of nats "$f"): {path: /webhooks/nats/$f, verify: {scheme: none}, deliver: [$(name_of nats "$f")], max_attempts: 50}"
    done
    for f in "${REDIS_FAULTS[@]}"; do
        echo "  $(name_of redis "$f"): {path: /webhooks/redis/$f, verify: {scheme: none}, deliver: [$(name_of redis "$f")], max_attempts: 50}"
    done
} | delivery_config "$WORKDIR/config.yaml"
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
: >"$WORKDIR/sent.tsv"

# --- one job per fault ---
declare -A JOB=()
post_fault_job() {
    local kind=$1 f=$2 body="$WORKDIR/$1-$2.json"
    printf '{"kind":"%s","fault":"%s","nonce":"%s","text":"Grüße ✓"}' "$kind" "$f" \
        "$(openssl rand -hex 8)" >"$body"
    post_job "/webhooks/$kind/$f" "$body" -H 'Content-Type: application/json'
    JOB[$kind-$f]=$JOB_ID
}
# The fake servers' jobs first: the fake servers hold their faulty bytes, so these jobs wait on
# connections that never became ready (released well within the sink's 5 s connect timeout).
FAKES=(bad-info long-line garbage-op)
for f in "${FAKES[@]}"; do
    post_fault_job nats "$f"
done
for f in "${FAKES[@]}"; do
    got=$(delivery_state "${JOB[nats-$f]}" "$(name_of nats "$f")")
    [[ ${got%% *} == queued || ${got%% *} == leased ]] ||
        fail "nats $f: job ${JOB[nats-$f]} is '$got' before the fake server answered, expected queued or leased"
done
touch "$HOLD"
for f in cut-control cut-payload; do
    post_fault_job nats "$f"
done
for f in "${REDIS_FAULTS[@]}"; do
    post_fault_job redis "$f"
done

# --- each job arrives, after a failed attempt; the log says what happened ---
for kind in nats redis; do
    declare -n faults="${kind^^}_FAULTS"
    for f in "${faults[@]}"; do
        sink=$(name_of "$kind" "$f")
        job=${JOB[$kind-$f]}
        wait_delivery "$job" "$sink" "done" 40
        ((DELIVERY_ATTEMPTS >= 2)) ||
            fail "$kind $f: job $job was settled at attempt $DELIVERY_ATTEMPTS, by the broken exchange"
        if [[ $kind == nats ]]; then
            proxy_err="$WORKDIR/nproxy-$f.stderr"
            grep -qE "^(cut|fake) $f" "$proxy_err" || fail "nats $f: the proxy did not do its fault: $(cat "$proxy_err")"
            line=$(log_lines_with "${WANT_MSG[$f]}" "$sink" | grep -F -- "${WANT_ERROR[$f]}" | head -n 1) || true
            [[ -n $line ]] || fail "nats $f: no \"${WANT_MSG[$f]}\" line for sink $sink saying \"${WANT_ERROR[$f]}\": $(log_lines_with "${WANT_MSG[$f]}" "$sink")"
            [[ $line == *"\"url\":\"nats://127.0.0.1:${NPROXY_PORT[$f]}\""* ]] ||
                fail "nats $f: the log line does not name the sink's url: $line"
            echo "nats $f: $line"
        else
            grep -q "^fault $f " "$WORKDIR/proxy-$f.stderr" ||
                fail "redis $f: the proxy did not do its fault: $(cat "$WORKDIR/proxy-$f.stderr")"
        fi
        failed=$(log_lines_with "delivery failed; will retry" "$sink" | grep -F "\"job\":\"$job\"") ||
            fail "$kind $f: no \"delivery failed; will retry\" line for job $job"
        if [[ $kind == redis ]]; then
            grep -qF -- "${WANT_ERROR[$f]}" <<<"$failed" ||
                fail "redis $f: no \"delivery failed; will retry\" line for job $job saying \"${WANT_ERROR[$f]}\": $failed"
        fi
        echo "$kind $f: $(head -n 1 <<<"$failed"); done at attempt $DELIVERY_ATTEMPTS"
    done
    unset -n faults
done

# --- portcullis keeps serving: a second job per sink, delivered at its first attempt ---
kill -0 "$SERVER_PID" 2>/dev/null || fail "portcullis is gone"
declare -A AFTER=()
for kind in nats redis; do
    declare -n faults="${kind^^}_FAULTS"
    for f in "${faults[@]}"; do
        body="$WORKDIR/$kind-$f-after.json"
        printf '{"kind":"%s","fault":"%s","after":true}' "$kind" "$f" >"$body"
        post_job "/webhooks/$kind/$f" "$body" -H 'Content-Type: application/json'
        AFTER[$kind-$f]=$JOB_ID
    done
    unset -n faults
done
for kind in nats redis; do
    declare -n faults="${kind^^}_FAULTS"
    for f in "${faults[@]}"; do
        sink=$(name_of "$kind" "$f")
        wait_delivery "${AFTER[$kind-$f]}" "$sink" "done" 20
        expect_eq "$kind $f: attempts of the job posted after the fault" 1 "$DELIVERY_ATTEMPTS"
        expect_eq "$kind $f: /healthz breaker" closed "$(sink_health "$sink" breaker)"
    done
    unset -n faults
done

# --- JetStream: each job once (Nats-Msg-Id = the job id); after a cut acknowledgement, the
# message of attempt 1 and a retry acknowledged as a duplicate ---
nats_client dump FAULTS "$WORKDIR/stream.jsonl" >/dev/null
args=()
for f in "${NATS_FAULTS[@]}"; do
    args+=("$f" "${JOB[nats-$f]}" "${AFTER[nats-$f]}" "$WORKDIR/nproxy-$f.stderr")
done
stream_check "$WORKDIR/stream.jsonl" "${args[@]}" <<'PY'
import re
want = {}
for i in range(0, len(ARGS), 4):
    fault, first, after, proxy_log = ARGS[i:i + 4]
    subject = "faults.nats_" + fault.replace("-", "_")
    for j in (first, after):
        got = [m for m in msgs if job(m) == j]
        if len(got) != 1:
            fail(f"{fault}: job {j} is {len(got)} times in the stream, expected once")
        m = got[0]
        if hdr(m, "nats-msg-id") != j:
            fail(f"{fault}: job {j}: Nats-Msg-Id {hdr(m, 'nats-msg-id')!r}, expected the job id")
        if m["subject"] != subject:
            fail(f"{fault}: job {j}: subject {m['subject']}, expected {subject}")
        want[j] = fault
    if fault.startswith("cut-"):
        m = next(m for m in msgs if job(m) == first)
        if hdr(m, "portcullis-attempt") != "1":
            fail(f"{fault}: the stream holds attempt {hdr(m, 'portcullis-attempt')} of job {first}, "
                 "expected attempt 1, whose acknowledgement was cut")
        lines = open(proxy_log, encoding="utf-8").read().splitlines()
        cut = [l for l in lines if l.startswith("cut ")]
        acks = [l for l in lines if l.startswith("ack ")]
        if len(cut) != 1 or not re.search(r'"seq":%d\b' % m["seq"], cut[0]):
            fail(f"{fault}: the cut acknowledgement is not that of message {m['seq']}: {cut}")
        if not acks or not re.search(r'"duplicate":\s*true', acks[0]):
            fail(f"{fault}: the retry's acknowledgement is not a duplicate's: {acks[:1]}")
others = [job(m) for m in msgs if job(m) not in want]
if others:
    fail(f"the stream holds jobs nobody posted: {others}")
print(f"JetStream: {len(msgs)} messages, each job once")
PY

# --- Redis: each job at least once, every entry with the same fields; the broken reply's entry
# and its retry's ---
args=()
for f in "${REDIS_FAULTS[@]}"; do
    args+=("$f" "${JOB[redis-$f]}" "${AFTER[redis-$f]}")
done
redis_check store "${args[@]}" <<'PY'
s = sent()
for i in range(0, len(ARGS), 3):
    fault, first, after = ARGS[i:i + 3]
    route = "redis_" + fault.replace("-", "_")
    per_job = {}
    for e in entries(Redis(), "faults:" + route):
        j = e[2][b"id"].decode()
        if j not in (first, after):
            fail(f"faults:{route}: entry {e[0]} carries id {j!r}, not a job of this route")
        body, _, before, t_after = s[j]
        check_entry(e, j, route, body, before, t_after)
        per_job.setdefault(j, []).append(e)
    es = per_job.get(first, [])
    # Redis stored the XADD whose reply was broken, then the retry's.
    if len(es) < 2:
        fail(f"{fault}: job {first} has {len(es)} entries, expected the broken reply's and the retry's")
    if any(e[2] != es[0][2] for e in es[1:]):
        fail(f"{fault}: job {first}: its entries differ")
    if len(per_job.get(after, [])) != 1:
        fail(f"{fault}: job {after} (posted after the fault) has {len(per_job.get(after, []))} entries, expected 1")
    print(f"redis {fault}: job {first} in the stream {len(es)} times with the same fields, {after} once")
PY

for secret in "$NATS_PASSWORD" "$REDIS_PASSWORD"; do
    ! grep -qF -- "$secret" "$SERVER_LOG" || fail "a password appears in portcullis's log"
done
stop_server
echo "delivery_broker_faults: ok"
