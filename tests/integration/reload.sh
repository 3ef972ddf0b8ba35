#!/usr/bin/env bash
# Live reload under load (issue 17; RELOAD-CONTRACT): portcullis serves a configuration
# directory (-c DIR/) that the test rewrites between reloads (a new file written aside, then
# renamed over the old one, as an operator's tool would). While wrk posts signed webhooks to the
# route "stable" on 3 keep-alive connections for the whole test, and a side loop posts to the
# route "rotating" signed with the secret of the moment, 20 reloads alternate POST /v1/reload
# and SIGHUP; each adds the route new-K and removes new-(K-1), every 5th rotates rotating's
# secret (reload_client.py drive says how). After each reload's answer (POST) or its
# "configuration reloaded" log line (SIGHUP), at once: the new route answers 202 (never 404) on
# connections kept open across the reload and on new ones, the removed one 404, rotating 202
# with the current secret and 401 with the previous one.
# Then: wrk saw only 202s and no socket error (connect, read, write, timeout); the side loop saw
# 202s, and 401s only around a rotation, never a 5xx or a reset; /metrics counts for stable
# every 202 that wrk and curl got (never reset by a reload) and for rotating exactly those the
# clients got; /events told 20 config.reloaded, generations 2..21, and no config.rejected; the
# spool holds every job answered 202.
# Refused reloads are reload_refused.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 openssl wrk sha256sum

# wrk's connections, and the wait (ms) each one makes between an answer and its next request:
# about 3 x 1,000 webhooks/s at most, a steady load that leaves the machine's other work a core.
WRK_CONNECTIONS=3
WRK_DELAY_MS=${RELOAD_TEST_WRK_DELAY_MS:-1}

new_token() { "$PORTCULLIS" token new | sed -n 's/^token: *//p'; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
TOKEN=$(new_token)
STABLE_SECRET="reload-stable-$(openssl rand -hex 8)"
export STABLE_SECRET
CONF=$WORKDIR/conf.d
mkdir -p "$CONF"
cat >"$CONF/00-base.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/spool, durability: fsync}
tokens:
  ops: {sha256: "$(sha "$TOKEN")", scopes: ["admin:reload", "metrics:read", "events:read"]}
EOF
export RT_CONF=$CONF RT_WORK=$WORKDIR
RT_NONCE=$(openssl rand -hex 6)
export RT_NONCE
client() { python3 "$here/reload_client.py" "$@"; }
client init
start_server "$CONF/"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
export RT_PORT=$PORT RT_ADMIN_PORT=$ADMIN_PORT RT_TOKEN=$TOKEN RT_PID=$SERVER_PID RT_LOG=$SERVER_LOG
ADMIN="http://127.0.0.1:$ADMIN_PORT"

# metric NAME LABELS: the value of one series of /metrics ("0" when it is not shown).
metric() {
    curl -sS -m 10 -H "Authorization: Bearer $TOKEN" "$ADMIN/metrics" >"$WORKDIR/metrics.txt" ||
        fail "GET /metrics failed"
    awk -v s="$1{$2}" '$1 == s {print $2; found = 1} END {if (!found) print 0}' "$WORKDIR/metrics.txt"
}

# wait_metric NAME LABELS MIN: until the series reaches MIN (10 s).
wait_metric() {
    local i v
    for ((i = 0; i < 200; i++)); do
        v=$(metric "$1" "$2")
        ((v >= $3)) && return 0
        sleep 0.05
    done
    fail "$1{$2} is $v after 10 s, expected at least $3"
}

# The config.* events, from before the first reload (webhooks' events would wrap the replay
# buffer long before the end).
: >"$WORKDIR/events.head"
: >"$WORKDIR/events.sse"
curl -sS -N -m 150 -D "$WORKDIR/events.head" -H "Authorization: Bearer $TOKEN" \
    -o "$WORKDIR/events.sse" "$ADMIN/events?types=config.*" 2>"$WORKDIR/events.err" &
EVENTS_PID=$!
at_exit "kill $EVENTS_PID 2>/dev/null; wait $EVENTS_PID 2>/dev/null"
for ((i = 0; i < 100; i++)); do
    grep -q $'^\r$' "$WORKDIR/events.head" 2>/dev/null && break
    sleep 0.05
done
grep -q '^HTTP/1.1 200' "$WORKDIR/events.head" ||
    fail "GET /events: $(cat "$WORKDIR/events.head" "$WORKDIR/events.err")"

# The stable route's payload, signed once: wrk sends these exact bytes.
printf '%s' '{"action":"opened","number":17,"repository":{"full_name":"octo-org/reload"}}' >"$WORKDIR/stable.json"
STABLE_SIG="sha256=$(hmac_sha256_hex_file "$STABLE_SECRET" "$WORKDIR/stable.json")"
post /webhooks/stable "$WORKDIR/stable.json" -H "X-Hub-Signature-256: $STABLE_SIG"
expect_queued "stable, before the load"
CURL_STABLE_202=1

cat >"$WORKDIR/load.lua" <<'EOF'
-- POSTs the signed payload; tallies every status; prints them and the socket errors at the end.
local f = assert(io.open(os.getenv("RT_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Hub-Signature-256"] = os.getenv("RT_SIG")
local pause = tonumber(os.getenv("RT_DELAY_MS"))
local threads = {}
function setup(thread)
    table.insert(threads, thread)
end
function init(args)
    statuses = {}
end
function delay()
    return pause
end
function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
    local totals, codes = {}, {}
    for _, thread in ipairs(threads) do
        for status, n in pairs(thread:get("statuses")) do
            totals[status] = (totals[status] or 0) + n
        end
    end
    for status, n in pairs(totals) do
        table.insert(codes, status .. ":" .. n)
    end
    table.sort(codes)
    local e = summary.errors
    io.write(string.format("reload-wrk requests=%d connect=%d read=%d write=%d timeout=%d " ..
        "non2xx=%d max_ms=%.1f statuses=%s\n", summary.requests, e.connect, e.read, e.write,
        e.timeout, e.status, latency.max / 1000, #codes > 0 and table.concat(codes, ",") or "none"))
end
EOF
RT_BODY_FILE=$WORKDIR/stable.json RT_SIG=$STABLE_SIG RT_DELAY_MS=$WRK_DELAY_MS \
    wrk -t1 -c"$WRK_CONNECTIONS" -d120s --timeout 5s -s "$WORKDIR/load.lua" \
    "http://127.0.0.1:$PORT/webhooks/stable" >"$WORKDIR/wrk.txt" 2>&1 &
WRK_PID=$!
at_exit "kill $WRK_PID 2>/dev/null; wait $WRK_PID 2>/dev/null"
python3 "$here/reload_client.py" side 2>"$WORKDIR/side.err" &
SIDE_PID=$!
at_exit "kill $SIDE_PID 2>/dev/null; wait $SIDE_PID 2>/dev/null"
wait_metric portcullis_requests_total 'route="stable",code="202"' $((CURL_STABLE_202 + 50))
wait_metric portcullis_requests_total 'route="rotating",code="202"' 5

# --- 20 reloads under load ---
# A failure in the reloads is told at the end: the checks below still run, so that one defect
# does not hide another.
DRIVE_OK=1
client drive || DRIVE_OK=0
[[ -s $WORKDIR/drive-counts.txt ]] || fail "the reloads under load stopped early (see above)"
sleep 0.5 # the load goes on past the last reload

touch "$WORKDIR/side.stop"
for ((i = 0; i < 200; i++)); do
    kill -0 "$SIDE_PID" 2>/dev/null || break
    sleep 0.05
done
wait "$SIDE_PID" || fail "the side loop failed: $(cat "$WORKDIR/side.err")"
kill -INT "$WRK_PID"
for ((i = 0; i < 200; i++)); do
    kill -0 "$WRK_PID" 2>/dev/null || break
    sleep 0.05
done
wait "$WRK_PID" || fail "wrk failed: $(cat "$WORKDIR/wrk.txt")"
client check-side || fail "the side loop saw answers it should not have"

# --- wrk: only 202s, no socket error ---
WRK_LINE=$(grep '^reload-wrk ' "$WORKDIR/wrk.txt") || fail "no result line from wrk: $(cat "$WORKDIR/wrk.txt")"
echo "wrk (${WRK_CONNECTIONS} connections, ${WRK_DELAY_MS} ms between an answer and the next request):"
grep -E 'Requests/sec|Latency|requests in' "$WORKDIR/wrk.txt" | sed 's/^/    /'
echo "    ${WRK_LINE#reload-wrk }"
wrk_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$WRK_LINE"; }
for e in connect read write timeout non2xx; do
    expect_eq "wrk: $e errors ($WRK_LINE)" 0 "$(wrk_field "$e")"
done
[[ $(wrk_field statuses) =~ ^202:([0-9]+)$ ]] || fail "wrk got other answers than 202: $WRK_LINE"
WRK_202=${BASH_REMATCH[1]}
((WRK_202 >= 500)) || fail "wrk got only $WRK_202 answers: no load to speak of ($WRK_LINE)"

# --- /metrics: counters kept across the 20 reloads ---
# wrk stops with up to one request per connection written and not read: the server may have
# answered (and counted) those too.
STABLE=$(metric portcullis_requests_total 'route="stable",code="202"')
LOW=$((WRK_202 + CURL_STABLE_202))
((STABLE >= LOW && STABLE <= LOW + WRK_CONNECTIONS)) ||
    fail "/metrics counts $STABLE answers 202 on stable; wrk and curl got $LOW (+ at most $WRK_CONNECTIONS in flight when wrk stopped): a reload reset or lost the route's counters"
ROTATING=$(metric portcullis_requests_total 'route="rotating",code="202"')
side_202=$(sed -n 's/^side_202=//p' "$WORKDIR/side-counts.txt")
rotating_202=$(sed -n 's/^rotating_202=\([0-9]*\).*/\1/p' "$WORKDIR/drive-counts.txt")
expect_eq "/metrics: rotating's 202s against the side loop's ($side_202) and the checks' ($rotating_202)" \
    $((side_202 + rotating_202)) "$ROTATING"
echo "/metrics: stable 202 = $STABLE (wrk $WRK_202 + curl $CURL_STABLE_202), rotating 202 = $ROTATING"

# --- /events: 20 config.reloaded, generations 2..21 ---
for ((i = 0; i < 200; i++)); do
    (($(grep -c '^event: config.reloaded$' "$WORKDIR/events.sse" || true) >= 20)) && break
    sleep 0.05
done
python3 - "$WORKDIR/events.sse" <<'PY' || fail "/events: $(cat "$WORKDIR/events.sse")"
import json, sys
frames = [f for f in open(sys.argv[1]).read().split("\n\n") if f.strip()]
ev = []
for frame in frames:
    lines = [l for l in frame.split("\n") if l and not l.startswith(":")]
    if lines:
        f = dict(l.split(": ", 1) for l in lines)
        d = json.loads(f["data"])
        assert d["type"] == f["event"], frame
        ev.append(d)
types = [e["type"] for e in ev]
assert types == ["config.reloaded"] * 20, f"expected 20 config.reloaded and nothing else, got {types}"
gens = [e.get("generation") for e in ev]
assert gens == list(range(2, 22)), f"generations {gens}"
assert all(e.get("routes") == 3 for e in ev), [e.get("routes") for e in ev]
PY
kill "$EVENTS_PID" 2>/dev/null || true
echo "/events: 20 config.reloaded, generations 2..21"

# --- the log: no refusal, no secret ---
grep -F '"msg":"configuration reload refused"' "$SERVER_LOG" && fail "a reload was refused (above)"
grep -qF -e "$STABLE_SECRET" -e "rotating-$RT_NONCE" "$SERVER_LOG" && fail "a secret is in the log"

# --- the spool holds every job answered 202 ---
stop_server
spool_dump "$WORKDIR/spool" "$WORKDIR/dump.jsonl"
JOBS=$(python3 -c 'import json, sys
print(sum(json.loads(l)["route"] == "stable" for l in open(sys.argv[1]) if l.strip()))' "$WORKDIR/dump.jsonl")
((JOBS >= LOW && JOBS <= LOW + WRK_CONNECTIONS)) ||
    fail "the spool holds $JOBS jobs of stable; $LOW were answered 202 (+ at most $WRK_CONNECTIONS in flight)"
echo "spool: $JOBS jobs of stable"
((DRIVE_OK == 1)) || fail "the reloads under load failed (the FAIL lines of reload_client.py drive, above)"
echo "PASS"
