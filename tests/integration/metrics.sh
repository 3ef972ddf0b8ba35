#!/usr/bin/env bash
# GET /metrics on the control plane (SPEC sections 5 and 9, issue 16): the scope metrics:read
# (401 without a token, 403 without the scope), the Prometheus text format checked by promtool,
# and counters that move exactly as this test's requests say: accepted, refused for known
# reasons, a path that matches no route, a rate-limited client; the oldest waiting job's age
# grows while no one leases and is 0 once the jobs are acked. /healthz reads the same sources:
# ok, then degraded once a sink's breaker opens (a sink whose port refuses connections), which
# /metrics shows too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 sha256sum openssl
command -v promtool >/dev/null 2>&1 ||
    skip "promtool is not installed (Debian package prometheus: scripts/deps --test)"

new_token() { "$PORTCULLIS" token new | sed -n 's/^token: *//p'; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
SCRAPER=$(new_token)
WORKER=$(new_token)
DENIED=$(new_token)
export GH_SECRET=metrics-secret
# A port bound but never listening: the sink's connects are refused, and no one else gets it.
coproc HOLDER { exec python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1], flush=True); time.sleep(3600)'; }
at_exit "kill $HOLDER_PID 2>/dev/null"
IFS= read -r -t 10 DOWN_PORT <&"${HOLDER[0]}" || fail "no port from the holder"
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/spool, durability: fsync}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
  limited: {path: /webhooks/limited, verify: {scheme: none}, rate_limit: {per_ip: 2/min, burst: 2}}
  pushed: {path: /webhooks/pushed, verify: {scheme: none}, deliver: [down]}
sinks:
  down:
    http: {url: "http://127.0.0.1:$DOWN_PORT/hook", timeout: 2s}
    breaker: {failures: 1, cooldown: 1h}
tokens:
  scraper: {sha256: "$(sha "$SCRAPER")", scopes: ["metrics:read"]}
  worker: {sha256: "$(sha "$WORKER")", scopes: ["jobs:*"]}
  denied: {sha256: "$(sha "$DENIED")", scopes: ["metrics:*", "!metrics:read"]}
EOF
expect_ephemeral_ports "$WORKDIR/config.yaml"
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"

# scrape [TOKEN]: GET /metrics into $WORKDIR/scrape; sets SCRAPE_STATUS and SCRAPE_TYPE.
scrape() {
    local args=(-sS -m 20 -o "$WORKDIR/scrape" -D "$WORKDIR/scrape-headers" -w '%{http_code}')
    [[ -z ${1:-} ]] || args+=(-H "Authorization: Bearer $1")
    SCRAPE_STATUS=$(curl "${args[@]}" "http://127.0.0.1:$ADMIN_PORT/metrics") ||
        SCRAPE_STATUS="curl-failed-$?"
    SCRAPE_TYPE=$(sed -n 's/^[Cc]ontent-[Tt]ype: *//p' "$WORKDIR/scrape-headers" | tr -d '\r')
}
# value SERIES: the value of one exact series line of the last scrape ("absent" when missing).
value() {
    python3 - "$1" "$WORKDIR/scrape" <<'PY'
import sys
want = sys.argv[1]
for line in open(sys.argv[2]):
    if line.startswith("#"):
        continue
    series, _, v = line.rstrip("\n").rpartition(" ")
    if series == want:
        print(v)
        break
else:
    print("absent")
PY
}
expect_value() { expect_eq "$1" "$2" "$(value "$1")"; }

# --- the scope -------------------------------------------------------------------------------
scrape
expect_eq "/metrics without a token" 401 "$SCRAPE_STATUS"
scrape "not-a-token"
expect_eq "/metrics with an unknown token" 401 "$SCRAPE_STATUS"
scrape "$WORKER"
expect_eq "/metrics with jobs:* only" 403 "$SCRAPE_STATUS"
scrape "$DENIED"
expect_eq "/metrics with !metrics:read" 403 "$SCRAPE_STATUS"

# --- before any webhook ----------------------------------------------------------------------
scrape "$SCRAPER"
expect_eq "/metrics status" 200 "$SCRAPE_STATUS"
expect_eq "/metrics Content-Type" "text/plain; version=0.0.4; charset=utf-8" "$SCRAPE_TYPE"
expect_value 'portcullis_requests_total{route="github",code="202"}' absent
expect_value 'portcullis_request_duration_seconds_count{route="github"}' 0
expect_value 'portcullis_jobs{route="github",state="queued"}' 0
expect_value 'portcullis_build_info{version="0.1.0"}' 1

# --- the requests ----------------------------------------------------------------------------
body='{"action":"opened","number":1}'
printf %s "$body" >"$WORKDIR/body.json"
sig=$(hmac_sha256_hex "$GH_SECRET" "$body")
for i in 1 2 3; do
    post /webhooks/github "$WORKDIR/body.json" -H "X-Hub-Signature-256: sha256=$sig"
    expect_queued "signed webhook $i"
done
post /webhooks/github "$WORKDIR/body.json" -H "X-Hub-Signature-256: sha256=$(hmac_sha256_hex wrong "$body")"
expect_unauthorized "badly signed webhook"
post /webhooks/github "$WORKDIR/body.json"
expect_unauthorized "unsigned webhook"
post /webhooks/nowhere "$WORKDIR/body.json"
expect_eq "unknown path" 404 "$HTTP_STATUS"
for i in 1 2 3 4; do
    post /webhooks/limited "$WORKDIR/body.json"
    if ((i <= 2)); then
        expect_queued "limited webhook $i (within the burst)"
    else
        expect_eq "limited webhook $i: status (answer: $HTTP_BODY)" 429 "$HTTP_STATUS"
    fi
done

# --- the counters moved exactly so -----------------------------------------------------------
# The answers are counted as they are written, before they reach curl: no wait is needed.
scrape "$SCRAPER"
expect_eq "/metrics status" 200 "$SCRAPE_STATUS"
expect_value 'portcullis_requests_total{route="github",code="202"}' 3
expect_value 'portcullis_requests_total{route="github",code="401"}' 2
expect_value 'portcullis_requests_total{route="(none)",code="404"}' 1
expect_value 'portcullis_requests_total{route="limited",code="202"}' 2
expect_value 'portcullis_requests_total{route="limited",code="429"}' 2
expect_value 'portcullis_rejections_total{route="github",reason="signature_mismatch"}' 1
expect_value 'portcullis_rejections_total{route="github",reason="signature_missing"}' 1
expect_value 'portcullis_rejections_total{route="limited",reason="rate_limited"}' 2
expect_value 'portcullis_rate_limited_total' 2
expect_value 'portcullis_jobs_accepted_total' 5
expect_value 'portcullis_request_duration_seconds_count{route="github"}' 5
expect_value 'portcullis_request_duration_seconds_bucket{route="github",le="+Inf"}' 5
expect_value 'portcullis_request_duration_seconds_count{route="limited"}' 4
expect_value 'portcullis_request_duration_seconds_count{route="(none)"}' 1
# Bodies are read only when the head lets them in: the unsigned request is refused from its head
# (signature_missing), and the limited route's per-IP limit is checked before the body too.
expect_value 'portcullis_received_body_bytes_total{route="github"}' $((4 * ${#body}))
expect_value 'portcullis_received_body_bytes_total{route="limited"}' $((2 * ${#body}))
# Five group commits at most (fsync), at least one; all durable.
commits=$(value 'portcullis_spool_commit_duration_seconds_count')
((commits >= 1 && commits <= 5)) || fail "spool commits: expected 1..5, got $commits"
expect_value 'portcullis_spool_refusing' 0
connections=$(value 'portcullis_connections_total')
((connections == 10)) || fail "connections accepted: expected 10 (one per curl), got $connections"

# The job table indexes the spool on the control plane's own schedule: wait for it.
for _ in $(seq 100); do
    scrape "$SCRAPER"
    [[ $(value 'portcullis_jobs{route="github",state="queued"}') == 3 ]] && break
    sleep 0.1
done
expect_value 'portcullis_jobs{route="github",state="queued"}' 3
expect_value 'portcullis_jobs{route="limited",state="queued"}' 2
# No one leases: the oldest waiting job's age grows (the first github job's).
age1=$(value 'portcullis_jobs_oldest_age_seconds{route="github"}')
sleep 1.1
scrape "$SCRAPER"
age2=$(value 'portcullis_jobs_oldest_age_seconds{route="github"}')
python3 -c 'import sys; a, b = map(float, sys.argv[1:]); assert 0 < a < 60 and b >= a + 1, (a, b)' \
    "$age1" "$age2" || fail "oldest github job's age: $age1, then $age2 1.1 s later"
# Leased and acked: none waits.
lease=$(curl -sS -m 10 -H "Authorization: Bearer $WORKER" --data-binary '{"route":"github","max":10}' \
    "http://127.0.0.1:$ADMIN_PORT/v1/lease")
ids=$(python3 -c 'import json, sys; print(json.dumps([j["id"] for j in json.loads(sys.argv[1])["jobs"]]))' "$lease")
expect_eq "github jobs leased" 3 "$(python3 -c 'import json, sys; print(len(json.loads(sys.argv[1])))' "$ids")"
scrape "$SCRAPER"
expect_value 'portcullis_jobs_oldest_age_seconds{route="github"}' 0
expect_value 'portcullis_jobs{route="github",state="leased"}' 3
expect_eq "bulk ack" 200 "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $WORKER" \
    --data-binary "{\"ids\":$ids}" "http://127.0.0.1:$ADMIN_PORT/v1/ack")"
scrape "$SCRAPER"
expect_value 'portcullis_jobs_oldest_age_seconds{route="github"}' 0
expect_value 'portcullis_jobs{route="github",state="leased"}' 0

# --- the format --------------------------------------------------------------------------------
promtool check metrics <"$WORKDIR/scrape" >"$WORKDIR/promtool.out" 2>&1 ||
    fail "promtool check metrics: $(cat "$WORKDIR/promtool.out")"
[[ ! -s $WORKDIR/promtool.out ]] || fail "promtool check metrics warned: $(cat "$WORKDIR/promtool.out")"
# Every name carries the prefix; counters end in _total.
python3 - "$WORKDIR/scrape" <<'PY' || fail "metric names"
import sys
for line in open(sys.argv[1]):
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split()
        assert name.startswith("portcullis_"), name
        assert kind != "counter" or name.endswith("_total"), name
    elif not line.startswith("#"):
        assert line.startswith("portcullis_"), line
PY

# --- /healthz ------------------------------------------------------------------------------------
health=$(curl -sS -m 10 "http://127.0.0.1:$ADMIN_PORT/healthz")
expect_eq "healthz status" ok "$(json_field "$health" status)"

# --- a sink whose breaker opens: /healthz degraded, /metrics shows the breaker and the wait -----
post /webhooks/pushed "$WORKDIR/body.json"
expect_queued "webhook for the sink"
for _ in $(seq 100); do
    health=$(curl -sS -m 10 "http://127.0.0.1:$ADMIN_PORT/healthz")
    [[ $(json_field "$health" status) == degraded ]] && break
    sleep 0.1
done
expect_eq "healthz status with the sink's breaker open ($health)" degraded "$(json_field "$health" status)"
scrape "$SCRAPER"
expect_value 'portcullis_sink_breaker_open{sink="down"}' 1
expect_value 'portcullis_deliveries_total{sink="down",outcome="retried"}' 1
expect_value 'portcullis_deliveries_total{sink="down",outcome="delivered"}' 0
expect_value 'portcullis_delivery_duration_seconds_count{sink="down"}' 1
age=$(value 'portcullis_jobs_oldest_age_seconds{route="pushed"}')
python3 -c 'import sys; assert 0 < float(sys.argv[1]) < 60' "$age" ||
    fail "the job waiting for the sink: oldest age $age"

# --- the stop line reads the same counters -------------------------------------------------------
stop_server
grep -F '"msg":"stopped"' "$SERVER_LOG" | grep -F '"jobs_queued":6,' >/dev/null ||
    fail "the stop line's jobs_queued is not the 6 /metrics counted: $(grep -F '"msg":"stopped"' "$SERVER_LOG")"
grep -F '"msg":"route refusals"' "$SERVER_LOG" | grep -F '"route":"limited"' | grep -F '"rate_limited":2' >/dev/null ||
    fail "the route refusals line does not count the 2 rate-limited requests"
echo "PASS: metrics"
