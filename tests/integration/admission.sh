#!/usr/bin/env bash
# Admission with the real server: server.deny refuses everywhere, a route's allow list refuses
# everyone else (403, reason ip_denied), and X-Forwarded-For is believed only from
# server.client_ip.trusted_proxies (the right-most address that is not a trusted proxy). The
# job stores the client's address.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 openssl

SPOOL="$WORKDIR/spool"
cat >"$WORKDIR/config.yaml" <<EOF
server:
  listen: ["127.0.0.1:0"]
  shards: 2
  deny: ["203.0.113.0/24", "2001:db8:bad::/48"]
  client_ip: {trusted_proxies: ["127.0.0.1/32", "10.9.0.0/16"]}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync}
routes:
  open: {path: /webhooks/open, verify: {scheme: none}}
  office: {path: /webhooks/office, verify: {scheme: none}, allow: ["10.1.0.0/16", "2001:db8:1::/48"]}
  limited: {path: /webhooks/limited, verify: {scheme: none}, rate_limit: {per_ip: 5/min, burst: 5}}
  capped:
    path: /webhooks/capped
    verify: {scheme: github, secrets: [{env: GH_SECRET}]}
    rate_limit: {route: 3/min}
EOF
export GH_SECRET="admission-secret-$RANDOM"
printf '{"n":1}' >"$WORKDIR/body"

# call PATH [X-Forwarded-For value]
call() {
    if [[ -n ${2:-} ]]; then
        post "$1" "$WORKDIR/body" -H "X-Forwarded-For: $2"
    else
        post "$1" "$WORKDIR/body"
    fi
}
forbidden() {
    expect_eq "$1: status (answer: $HTTP_BODY)" 403 "$HTTP_STATUS"
    expect_eq "$1: answer" '{"error":"forbidden"}' "$HTTP_BODY"
}

start_server "$WORKDIR/config.yaml"
call /webhooks/open
expect_queued "open route, no proxy header"
call /webhooks/office
forbidden "allow list: the proxy itself is not a client of the office"
call /webhooks/office "10.1.2.3"
expect_queued "allow list: a client inside it, through the trusted proxy"
office_job=$JOB_ID
call /webhooks/office "198.51.100.7, 10.9.0.1"
forbidden "a client outside the list behind two trusted hops"
call /webhooks/office "10.1.2.3, 198.51.100.7"
forbidden "a spoofed left entry is not believed: the right-most untrusted address is the client"
call /webhooks/office "2001:db8:1::5"
expect_queued "an IPv6 client inside the list"
call /webhooks/open "203.0.113.9"
forbidden "server.deny refuses on every route"
call /webhooks/nosuchpath "203.0.113.9"
forbidden "server.deny refuses before any route is looked up"
call /webhooks/open "[2001:db8:bad::1]:443"
forbidden "server.deny, an IPv6 client with brackets and port"
call /webhooks/open "garbage, 10.1.2.3"
expect_queued "garbage left of a client: not believed, not refused"

# --- per-client limit: 5 at once, then one every 12 s; other clients have their own (the
# exact rates are unit-tested with an injected clock; here a slow machine must not matter) ---
statuses=""
for i in 1 2 3 4 5 6; do
    call /webhooks/limited "10.7.0.1"
    statuses+="$HTTP_STATUS "
done
expect_eq "per client: 5 at once, the 6th refused" "202 202 202 202 202 429 " "$statuses"
expect_eq "429 answer" '{"error":"rate_limited"}' "$HTTP_BODY"
retry=$(sed -n 's/^Retry-After: *\([0-9]*\).*/\1/ip' "$HTTP_HEADERS")
[[ -n $retry ]] && ((retry >= 1 && retry <= 12)) ||
    fail "per client: Retry-After '$retry' is not the 1..12 s until the next request fits"
call /webhooks/limited "10.7.0.2"
expect_queued "another client has its own bucket"
call /webhooks/limited
expect_queued "and so has the proxy's own address"

# --- route limit: counted after verification only ---
for i in 1 2 3 4 5; do
    post /webhooks/capped "$WORKDIR/body" -H "X-Hub-Signature-256: sha256=$(printf '0%.0s' {1..64})"
    expect_unauthorized "forged request $i"
done
sig=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/body")
statuses=""
for i in 1 2 3 4; do
    post /webhooks/capped "$WORKDIR/body" -H "X-Hub-Signature-256: sha256=$sig"
    statuses+="$HTTP_STATUS "
done
expect_eq "route limit 3/min: forged requests spent nothing" "202 202 202 429 " "$statuses"
retry=$(sed -n 's/^Retry-After: *\([0-9]*\).*/\1/ip' "$HTTP_HEADERS")
[[ -n $retry ]] && ((retry >= 1 && retry <= 20)) ||
    fail "route limit: Retry-After '$retry' is not the 1..20 s until the next request fits"
wait_for_log '"reason":"rate_limited"' 2
wait_for_log '"reason":"ip_denied"' 6
grep -F '"reason":"ip_denied"' "$SERVER_LOG" | grep -F '"client":"198.51.100.7"' >/dev/null ||
    fail "the refusal log does not name the forwarded client"
stop_server
grep -F '"msg":"route refusals"' "$SERVER_LOG" | grep -F '"route":"office"' | grep -F '"ip_denied":3' >/dev/null ||
    fail "the office route does not count its 3 refusals"

spool_dump "$SPOOL" "$WORKDIR/dump.jsonl"
python3 - "$WORKDIR/dump.jsonl" "$office_job" <<'PY' || fail "the office job does not store the forwarded client"
import json, sys
jobs = {j["id"]: j for j in map(json.loads, open(sys.argv[1]))}
assert jobs[sys.argv[2]]["source_ip"] == "10.1.2.3", jobs[sys.argv[2]]["source_ip"]
assert len(jobs) == 4 + 7 + 3, len(jobs)
PY

# Without trusted proxies the header is ignored: the peer is the client.
sed -i 's/client_ip: {trusted_proxies: \[.*\]}/client_ip: {trusted_proxies: []}/' "$WORKDIR/config.yaml"
start_server "$WORKDIR/config.yaml"
call /webhooks/open "203.0.113.9"
expect_queued "X-Forwarded-For from an untrusted peer is ignored"
call /webhooks/office "10.1.2.3"
forbidden "nor does it open an allow list"
stop_server
echo "ok: deny, allow and trusted proxies"
