#!/usr/bin/env bash
# The pull API on the control plane (SPEC section 5) with curl as the consumer: tokens and
# scopes (401, 403, 404 without a leak), lease with max, visibility expiry and long polls, ack,
# nack with a delay, max_attempts and dead letters, replay, bulk ack, jobs byte for byte (base64
# for binary bodies), no credentials handed out unless the route keeps them, and state that
# survives a restart and kill -9: an answered ack is never undone, a lease that was never acked
# comes back.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 sha256sum

SPOOL="$WORKDIR/spool"
# Tokens as an operator makes them: random, only their SHA-256 in the configuration.
new_token() { "$PORTCULLIS" token new | sed -n 's/^token: *//p'; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
WORKER=$(new_token)
GITHUB_ONLY=$(new_token)
METRICS_ONLY=$(new_token)
[[ $WORKER == pct_* ]] || fail "token new printed no token"
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync}
routes:
  github: {path: /webhooks/github, verify: {scheme: none}, max_attempts: 2}
  stripe: {path: /webhooks/stripe, verify: {scheme: none}, keep_headers: [Proxy-Authorization]}
tokens:
  worker: {sha256: "$(sha "$WORKER")", scopes: ["jobs:*"]}
  github_only: {sha256: "$(sha "$GITHUB_ONLY")", scopes: ["jobs:consume:git*", "jobs:read:github"]}
  metrics_only: {sha256: "$(sha "$METRICS_ONLY")", scopes: ["metrics:read"]}
EOF


# webhook ROUTE FILE: posts a job; sets JOB_ID.
webhook() {
    post "/webhooks/$1" "$2"
    expect_queued "webhook to $1"
}

start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"

# --- health, and the planes kept apart ---
api GET /healthz
expect_api healthz 200
expect_eq "healthz status" ok "$(py 'j["status"]')"
expect_eq "healthz shards" 2 "$(py 'j["shards"]')"
expect_eq "healthz routes" "github stripe" "$(py '" ".join(sorted(j["routes"]))')"
[[ $(py 'j["spool"]["free_bytes"] > 0') == True ]] || fail "healthz: no free bytes"
post /v1/lease /dev/null
expect_eq "the public plane does not serve the pull API" 404 "$HTTP_STATUS"

# --- jobs in: a UTF-8 body and a binary one ---
printf '{"n":1,"text":"Grüße \\" \\u00e9"}' >"$WORKDIR/b1"
head -c 300 /dev/urandom >"$WORKDIR/b2"
printf '\xff\xfe\x00binary' >>"$WORKDIR/b2"
printf '{"n":3}' >"$WORKDIR/b3"
webhook github "$WORKDIR/b1"
J1=$JOB_ID
webhook github "$WORKDIR/b2"
J2=$JOB_ID
webhook stripe "$WORKDIR/b3"
J3=$JOB_ID

# --- tokens and scopes ---
api_as "" POST /v1/lease '{"route":"github"}'
expect_api "no token" 401
expect_eq "no token: answer" '{"error":"unauthorized"}' "$API_BODY"
api_as "pct_not-a-real-token" POST /v1/lease '{"route":"github"}'
expect_api "unknown token" 401
api_as "$METRICS_ONLY" POST /v1/lease '{"route":"github"}'
expect_api "token without jobs scopes" 403
api_as "$GITHUB_ONLY" POST /v1/lease '{"route":"stripe"}'
expect_api "lease on a route outside the token's scopes" 404
api_as "$GITHUB_ONLY" POST /v1/lease '{"route":"nosuchroute"}'
expect_api "lease on a route that does not exist" 404
api_as "$GITHUB_ONLY" GET "/v1/jobs/$J3"
expect_api "a job of another route is not found" 404
api_as "$GITHUB_ONLY" GET "/v1/jobs/$J1"
expect_api "a job of its own route" 200
expect_eq "state of a new job" queued "$(py 'j["state"]')"

# --- lease: max, order, bodies byte for byte ---
# Checks that depend on time are written so that a slow machine cannot fail them: a lease that
# must not expire is leased for an hour, and answers that must come before a delay passes are
# fetched first and checked afterwards.
api_as "$WORKER" POST /v1/lease '{"route":"github","max":1,"visibility":"1h"}'
expect_api "lease 1" 200
expect_eq "leased first: the oldest" "$J1" "$(py 'j["jobs"][0]["id"]')"
expect_eq "one job for max 1" 1 "$(py 'len(j["jobs"])')"
expect_eq "attempt" 1 "$(py 'j["jobs"][0]["attempt"]')"
python3 - "$API_BODY" "$WORKDIR/b1" <<'PY' || fail "leased body differs from what was sent"
import json, sys
job = json.loads(sys.argv[1])["jobs"][0]
assert job["body_encoding"] == "utf8", job["body_encoding"]
assert job["body"].encode("utf-8") == open(sys.argv[2], "rb").read()
assert job["route"] == "github" and job["source_ip"] == "127.0.0.1"
assert job["received_at"].endswith("Z")
PY
api_as "$WORKER" POST /v1/lease '{"route":"github","max":10}'
expect_eq "the rest of github" "$J2" "$(py '" ".join(x["id"] for x in j["jobs"])')"
python3 - "$API_BODY" "$WORKDIR/b2" <<'PY' || fail "binary body not returned byte for byte as base64"
import base64, json, sys
job = json.loads(sys.argv[1])["jobs"][0]
assert job["body_encoding"] == "base64", job["body_encoding"]
assert base64.b64decode(job["body"], validate=True) == open(sys.argv[2], "rb").read()
PY

# --- ack, idempotent; nack of a settled job refused ---
api_as "$WORKER" POST "/v1/jobs/$J2/ack"
expect_api "ack" 200
expect_eq "acked state" "done" "$(py 'j["state"]')"
api_as "$WORKER" POST "/v1/jobs/$J2/ack"
expect_api "ack again" 200
api_as "$WORKER" POST "/v1/jobs/$J2/nack"
expect_api "nack of a done job" 409
expect_eq "nack of a done job: answer" '{"error":"not_leased"}' "$API_BODY"
api_as "$WORKER" POST "/v1/jobs/01aaaaaaaaaaaaaaaaaaaaaaaa/ack"
expect_api "ack of an unknown job" 404
api_as "$WORKER" POST "/v1/jobs/not-an-id/ack"
expect_api "ack of a malformed id" 404

# --- visibility: a lease not acked in time ends; at max_attempts (2) the job goes dead ---
api_as "$WORKER" POST "/v1/jobs/$J1/nack" '{"delay":"0s"}'
expect_eq "nacked without delay: queued, attempts kept" "queued 1" "$(py 'j["state"] + " " + str(j["attempts"])')"
api_as "$WORKER" POST /v1/lease '{"route":"github","visibility":"1s"}'
expect_eq "leased again: second attempt" "$J1 2" "$(py 'j["jobs"][0]["id"] + " " + str(j["jobs"][0]["attempt"])')"
sleep 1.5
api_as "$WORKER" POST /v1/lease '{"route":"github"}'
expect_eq "an expired lease at max_attempts is not delivered again" 0 "$(py 'len(j["jobs"])')"
api_as "$WORKER" GET "/v1/jobs/$J1"
expect_eq "expired at max_attempts: dead" dead "$(py 'j["state"]')"
api_as "$WORKER" GET "/v1/dead-letters?route=github"
expect_eq "dead letters" "$J1" "$(py '" ".join(x["id"] for x in j["jobs"])')"
api_as "$GITHUB_ONLY" GET "/v1/dead-letters"
expect_api "dead letters need jobs:read" 200
api_as "$GITHUB_ONLY" POST "/v1/dead-letters/$J1/replay"
expect_api "replay needs jobs:replay" 403
api_as "$WORKER" POST "/v1/dead-letters/$J1/replay"
expect_api "replay" 200
expect_eq "replayed state" queued "$(py 'j["state"]')"
api_as "$WORKER" POST "/v1/dead-letters/$J1/replay"
expect_api "replay of a job that is not dead" 409

# --- nack with a delay: not leased before it passes; a long poll gets it when it has ---
api_as "$WORKER" POST /v1/lease '{"route":"github","visibility":"1h"}'
expect_eq "replayed job leased again, attempts from 1" "$J1 1" "$(py 'j["jobs"][0]["id"] + " " + str(j["jobs"][0]["attempt"])')"
api_as "$WORKER" POST "/v1/jobs/$J1/nack" '{"delay":"5s"}'
nack_answer=$API_BODY
api_as "$WORKER" POST /v1/lease '{"route":"github"}'
expect_eq "nothing before the delay" 0 "$(py 'len(j["jobs"])')"
API_BODY=$nack_answer
expect_eq "nacked with a delay" queued "$(py 'j["state"]')"
[[ $(py '"not_before" in j') == True ]] || fail "a delayed job shows no not_before: $API_BODY"
api_as "$WORKER" POST /v1/lease '{"route":"github","wait":"30s","visibility":"1h"}'
expect_eq "long poll gets the delayed job" "$J1 2" "$(py 'j["jobs"][0]["id"] + " " + str(j["jobs"][0]["attempt"])')"
api_as "$WORKER" POST "/v1/jobs/$J1/nack" '{"delay":"1h"}'
expect_eq "nack at max_attempts: dead" dead "$(py 'j["state"]')"
api_as "$WORKER" POST "/v1/dead-letters/$J1/replay"
expect_api "replay again" 200

# --- a long poll wakes for a new webhook ---
api_as "$WORKER" POST "/v1/ack" "{\"ids\":[\"$J1\",\"$J3\",\"01aaaaaaaaaaaaaaaaaaaaaaaa\"]}"
expect_api "bulk ack" 200
expect_eq "bulk ack: settled" "$J1 $J3" "$(py '" ".join(j["settled"])')"
expect_eq "bulk ack: failed" "01aaaaaaaaaaaaaaaaaaaaaaaa:not_found" \
    "$(py '" ".join(f["id"] + ":" + f["error"] for f in j["failed"])')"
(
    sleep 0.5
    printf '{"n":4}' >"$WORKDIR/b4"
    curl -sS -m 10 -o /dev/null --data-binary "@$WORKDIR/b4" "http://127.0.0.1:$PORT/webhooks/stripe"
) &
writer=$!
start=$(date +%s%N)
api_as "$WORKER" POST /v1/lease '{"route":"stripe","wait":"30s","visibility":"1h"}'
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
wait "$writer"
expect_eq "the long poll got the new job" 1 "$(py 'len(j["jobs"])')"
J4=$(py 'j["jobs"][0]["id"]')
((elapsed_ms < 25000)) || fail "the long poll took ${elapsed_ms} ms to see a new job"
api_as "$WORKER" POST /v1/lease '{"route":"stripe","wait":"300ms"}'
expect_eq "an empty long poll ends at its wait" 0 "$(py 'len(j["jobs"])')"

# --- restart: settled jobs stay settled, leases never acked come back ---
webhook stripe "$WORKDIR/b3"
J5=$JOB_ID
api_as "$WORKER" POST /v1/lease '{"route":"stripe","visibility":"1h"}'
expect_eq "J5 leased" "$J5" "$(py 'j["jobs"][0]["id"]')"
api_as "$WORKER" POST "/v1/jobs/$J5/ack"
expect_api "ack J5" 200
kill9_server
start_server "$WORKDIR/config.yaml"
for id in "$J1" "$J2" "$J3" "$J5"; do
    api_as "$WORKER" GET "/v1/jobs/$id"
    expect_eq "after kill -9, $id" "done" "$(py 'j["state"]')"
done
api_as "$WORKER" GET "/v1/jobs/$J4"
expect_eq "J4 (leased for 1h, never acked) after kill -9" leased "$(py 'j["state"]')"
api_as "$WORKER" POST "/v1/jobs/$J4/nack" '{"delay":"0s"}'
api_as "$WORKER" POST /v1/lease '{"route":"stripe","max":10}'
expect_eq "only J4 is delivered again" "$J4" "$(py '" ".join(x["id"] for x in j["jobs"])')"
api_as "$WORKER" POST "/v1/jobs/$J4/ack"
stop_server
start_server "$WORKDIR/config.yaml"
api GET /healthz
expect_eq "nothing queued after a clean restart" "0 0" "$(py 'str(j["routes"]["github"]["queued"] + j["routes"]["stripe"]["queued"]) + " " + str(j["routes"]["stripe"]["leased"])')"
api_as "$WORKER" POST /v1/lease '{"route":"github","max":10}'
expect_eq "no settled job is delivered again" 0 "$(py 'len(j["jobs"])')"

# --- credentials sent with a webhook are not handed out, unless the route keeps them ---
# lease_headers ROUTE: posts a job with credentials to ROUTE, leases it, sets LEASED_HEADERS to
# the names of its credential and custom headers (sorted) and acks it.
lease_headers() {
    printf '{"credentials":"%s"}' "$1" >"$WORKDIR/cred-$1"
    post "/webhooks/$1" "$WORKDIR/cred-$1" -H 'Authorization: Bearer tok-never-handed-out' \
        -H 'Proxy-Authorization: Basic cHJveHk6cGFzcw==' -H 'Cookie: session=ck-never-handed-out' \
        -H 'X-Custom-Field: kept'
    expect_queued "webhook with credentials to $1"
    local id=$JOB_ID
    api_as "$WORKER" POST /v1/lease "{\"route\":\"$1\",\"visibility\":\"1h\"}"
    expect_eq "leased the job with credentials ($1)" "$id" "$(py '" ".join(x["id"] for x in j["jobs"])')"
    LEASED_HEADERS=$(py '" ".join(sorted(n for n in j["jobs"][0]["headers"] if n in ("authorization", "proxy-authorization", "cookie", "x-custom-field")))')
    api_as "$WORKER" POST "/v1/jobs/$id/ack"
    expect_api "ack the job with credentials ($1)" 200
}
lease_headers github
expect_eq "a lease carries no credentials" "x-custom-field" "$LEASED_HEADERS"
lease_headers stripe
expect_eq "a lease carries the credentials its route keeps" "proxy-authorization x-custom-field" \
    "$LEASED_HEADERS"
stop_server
echo "ok: pull API"
