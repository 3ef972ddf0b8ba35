#!/usr/bin/env bash
# Registered consumers (SPEC section 10, issue 17): POST /v1/consumers mints, in one durable step
# (consumers.state), a token on exactly the given routes and an HTTP sink delivering them to the
# consumer's url, signed (Standard Webhooks v1) with a secret minted for it; both shown once.
# Checked with a real receiver (receiver.py) and real clients: only route alpha's jobs reach the
# consumer, their signature verifies with the secret, the token sees nothing of route beta (job,
# lease, dead letters, replay); a failing health probe (admin.consumers.health_interval: 1s) holds
# delivery (consumer.unhealthy on /events, /healthz, portcullis_consumer_healthy 0; no attempt
# spent) until it passes again (consumer.healthy, the jobs arrive); GET lists it without secrets;
# it survives a restart; kill -9 during registrations leaves the old or the new set; DELETE
# answers 401 to the token at once, on a connection already open, and stops the sink; 409, 422,
# 403 and 400 for the wrong requests.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/delivery_lib.sh"
need curl python3 sha256sum openssl

STATE="$SPOOL/consumers.state"
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
NARROW=$("$PORTCULLIS" token new | sed -n 's/^token: *//p')
GH_SECRET="consumers-test-$RANDOM$RANDOM"
export GH_SECRET
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 1}
admin: {listen: "127.0.0.1:0", consumers: {health_interval: 1s}}
spool: {dir: $SPOOL, durability: fsync}
routes:
  alpha: {path: /webhooks/alpha, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
  beta: {path: /webhooks/beta, verify: {scheme: github, secrets: [{env: GH_SECRET}]}, max_attempts: 1}
tokens:
  admin: {sha256: "$(sha "$TOKEN")", scopes: ["admin:consumers", "jobs:*", "events:read", "metrics:read"]}
  narrow: {sha256: "$(sha "$NARROW")", scopes: ["jobs:*"]}
EOF

# send ROUTE NAME: a signed webhook to ROUTE; sets JOB_ID.
send() {
    local file="$WORKDIR/body-$2.json"
    printf '{"event":"%s","n":%s}' "$2" "$RANDOM" >"$file"
    post_job "/webhooks/$1" "$file" \
        -H "X-Hub-Signature-256: sha256=$(hmac_sha256_hex_file "$GH_SECRET" "$file")"
}
hooks_with() { recv_count app "r[\"path\"] == \"/hooks\" and job(r) == \"$1\""; }
metric() {
    curl -sS -m 10 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT/metrics" |
        { grep -F "portcullis_consumer_healthy{consumer=\"$1\"}" || true; } | awk '{print $2}'
}
consumer_health() {
    curl -sS -m 10 "http://127.0.0.1:$ADMIN_PORT/healthz" | python3 -c '
import json, sys
c = json.load(sys.stdin).get("consumers", {}).get(sys.argv[1])
print("missing" if c is None else json.dumps(c["healthy"]))' "$1"
}
# wait_until SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        ((SECONDS < deadline)) || fail "$what: not within $limit s"
        sleep 0.1
    done
}
# open_events: GET /events?types=consumer.* of the server running now, into a fresh events.sse.
open_events() {
    : >"$WORKDIR/events.sse"
    curl -sS -N -m 120 -H "Authorization: Bearer $TOKEN" -o "$WORKDIR/events.sse" \
        "http://127.0.0.1:$ADMIN_PORT/events?types=consumer.*" 2>/dev/null &
    at_exit "kill $! 2>/dev/null || true"
    sleep 0.2
}
events_seen() { grep -c "\"type\":\"$1\"" "$WORKDIR/events.sse" || true; }
has_events() { (($(events_seen "$1") >= $2)); }

start_receiver app
start_server "$WORKDIR/config.yaml"
open_events
URL="http://127.0.0.1:${RECV_PORT[app]}/hooks"

# --- wrong requests ---
api_as "$NARROW" POST /v1/consumers '{"name":"x","routes":["alpha"]}'
expect_api "without admin:consumers" 403
api POST /v1/consumers '{"name":"x","routes":["alpha"'
expect_api "bad JSON" 400
api POST /v1/consumers '{"name":"x","routes":["alpha","gamma"]}'
expect_api "unknown route" 422
grep -q 'route gamma' <<<"$API_BODY" || fail "422 does not name the route: $API_BODY"
api POST /v1/consumers '{"name":"admin","routes":["alpha"]}'
expect_api "name of a configured token" 409
api POST /v1/consumers '{"name":"x","routes":["alpha"],"health_path":"/h"}'
expect_api "health_path without url" 400
api PUT /v1/consumers '{}'
expect_api "PUT on the collection" 405
grep -qi '^Allow: GET, POST' "$WORKDIR/api-headers" || fail "405 without Allow: GET, POST"
api GET /v1/consumers/x
expect_api "GET of a consumer" 405
grep -qi '^Allow: DELETE' "$WORKDIR/api-headers" || fail "405 without Allow: DELETE"
[[ ! -e $STATE ]] || fail "a refused registration wrote $STATE"

# --- register ---
api POST /v1/consumers "{\"name\":\"billing\",\"routes\":[\"alpha\"],\"url\":\"$URL\",\"health_path\":\"/health\"}"
expect_api "register" 201
CTOKEN=$(py 'j["token"]')
SECRET=$(py 'j["secret"]')
[[ $CTOKEN == pct_* && $SECRET == whsec_* ]] || fail "register: no token or secret in $API_BODY"
expect_eq "state file mode" 600 "$(stat -c %a "$STATE")"
grep -q "$(sha "$CTOKEN")" "$STATE" || fail "the state file does not hold the token's digest"
! grep -qF "$CTOKEN" "$STATE" || fail "the state file holds the plaintext token"
! grep -qF -e "$CTOKEN" -e "$SECRET" "$SERVER_LOG" || fail "the log holds the token or the secret"
api POST /v1/consumers '{"name":"billing","routes":["beta"]}'
expect_api "the same name again" 409
wait_until 10 "consumer.registered on /events" has_events consumer.registered 1

# --- only alpha's jobs reach it, signed with the secret ---
send alpha a1
A1=$JOB_ID
send beta b1
B1=$JOB_ID
wait_delivery "$A1" consumer:billing "done" 15
sleep 0.5
expect_eq "beta's job at the consumer" 0 "$(hooks_with "$B1")"
recv_check app "$SECRET" "$A1" <<'PY'
import hmac, hashlib
secret, a1 = ARGS
hooks = on("/hooks")
if [job(r) for r in hooks] != [a1]:
    fail(f"the consumer got {[job(r) for r in hooks]}, expected only {a1}")
r = hooks[0]
key = base64.b64decode(secret[len("whsec_"):])
signed = f"{hdr(r, 'webhook-id')}.{hdr(r, 'webhook-timestamp')}.".encode() + r["body"]
want = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
if hdr(r, "webhook-signature") != want or hdr(r, "webhook-id") != a1:
    fail(f"signature {hdr(r, 'webhook-signature')} does not verify with the secret")
PY

# --- the token sees nothing of beta ---
api_as "$CTOKEN" GET "/v1/jobs/$A1"
expect_api "own route's job" 200
api_as "$CTOKEN" GET "/v1/jobs/$B1"
expect_api "beta's job" 404
api_as "$CTOKEN" POST /v1/lease '{"route":"beta","max":1}'
[[ $API_STATUS == 403 || $API_STATUS == 404 ]] || fail "lease on beta: $API_STATUS"
api POST /v1/lease '{"route":"beta","max":1}'
expect_api "admin leases beta" 200
api POST "/v1/jobs/$B1/nack" '{"delay":"0s"}'
expect_api "nack beta's job into the dead letters" 200
api_as "$CTOKEN" GET "/v1/dead-letters"
expect_api "dead letters" 200
! grep -q "$B1" <<<"$API_BODY" || fail "the consumer lists beta's dead letter: $API_BODY"
api_as "$CTOKEN" GET "/v1/dead-letters?route=beta"
expect_api "beta's dead letters" 404
api_as "$CTOKEN" POST "/v1/dead-letters/$B1/replay"
[[ $API_STATUS == 403 || $API_STATUS == 404 ]] || fail "replay of beta's dead letter: $API_STATUS"

# --- GET lists it, without secrets ---
api GET /v1/consumers
expect_api "list" 200
expect_eq "list" "billing alpha $URL /health True" \
    "$(py '" ".join(str(x) for c in j["consumers"] for x in (c["name"], ",".join(c["routes"]), c["url"], c["health_path"], c["healthy"]))')"
! grep -qF -e "$CTOKEN" -e "$SECRET" -e "$(sha "$CTOKEN")" -e whsec_ <<<"$API_BODY" ||
    fail "the list shows a secret: $API_BODY"
api_as "$CTOKEN" GET /v1/consumers
expect_api "list with the consumer's token" 403

# --- health: a failing probe holds delivery without spending attempts ---
receiver_control app '{"path": "/health", "plan": {"count": "all", "then": {"status": 503}}}'
wait_until 10 "consumer.unhealthy on /events" has_events consumer.unhealthy 1
expect_eq "/healthz while unhealthy" false "$(consumer_health billing)"
expect_eq "metric while unhealthy" 0 "$(metric billing)"
send alpha a2
A2=$JOB_ID
sleep 2
expect_eq "a2 at the consumer while unhealthy" 0 "$(hooks_with "$A2")"
expect_eq "a2 while unhealthy" "queued 0" "$(delivery_state "$A2" consumer:billing)"
receiver_control app '{"path": "/health", "plan": {"count": "all", "then": {"status": 200}}}'
wait_until 10 "consumer.healthy on /events" has_events consumer.healthy 1
wait_delivery "$A2" consumer:billing "done" 10
expect_eq "a2 attempts" 1 "$DELIVERY_ATTEMPTS"
expect_eq "/healthz once healthy" true "$(consumer_health billing)"
expect_eq "metric once healthy" 1 "$(metric billing)"
grep -q '"consumer":"billing"' "$WORKDIR/events.sse" || fail "events do not name the consumer"

# --- restart ---
stop_server
start_server "$WORKDIR/config.yaml"
api_as "$CTOKEN" GET "/v1/jobs/$A2"
expect_api "the consumer's token after a restart" 200
send alpha a3
A3=$JOB_ID
wait_delivery "$A3" consumer:billing "done" 15

# --- kill -9 during registrations: the old set or the new one ---
after_round() {
    api GET /v1/consumers
    expect_eq "round $1: listed" "$2" "$(py '"".join(c["name"] + " " for c in j["consumers"])')"
}
kill9_during_posts 3 15 /v1/consumers "$TOKEN" '"routes":["beta"]' "$STATE" after_round
echo "kill -9 landed during registrations in $KILLED_MID_STREAM of 3 rounds"

# --- DELETE: 401 at once, on an open connection; the sink stops ---
open_events
python3 - "$ADMIN_PORT" "$CTOKEN" "$TOKEN" "$A3" <<'PY' || fail "DELETE on an open connection (above)"
import http.client, sys
port, ctoken, admin, job = sys.argv[1:]
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
def get():
    c.request("GET", f"/v1/jobs/{job}", headers={"Authorization": f"Bearer {ctoken}"})
    r = c.getresponse()
    r.read()
    return r.status, c.sock.getsockname()
before, conn_before = get()
d = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
d.request("DELETE", "/v1/consumers/billing", headers={"Authorization": f"Bearer {admin}"})
deleted = d.getresponse().status
after, conn_after = get()
if (before, deleted, after) != (200, 200, 401) or conn_before != conn_after:
    print(f"FAIL: before {before}, DELETE {deleted}, after {after}, "
          f"same connection {conn_before == conn_after}", file=sys.stderr)
    sys.exit(1)
PY
wait_until 10 "consumer.removed on /events" has_events consumer.removed 1
send alpha a4
A4=$JOB_ID
sleep 1.5
expect_eq "a4 at the removed consumer" 0 "$(hooks_with "$A4")"
api GET /v1/consumers
expect_eq "listed after DELETE" "" "$(py '" ".join(c["name"] for c in j["consumers"] if c["name"] == "billing")')"
expect_eq "/healthz after DELETE" missing "$(consumer_health billing)"
api DELETE /v1/consumers/billing
expect_api "DELETE again" 404
stop_server
start_server "$WORKDIR/config.yaml"
api_as "$CTOKEN" GET "/v1/jobs/$A3"
expect_api "the removed consumer's token after a restart" 401
stop_server
echo "ok"
