#!/usr/bin/env bash
# Minted tokens (SPEC section 5, issue 17): POST /v1/tokens hands a token out once and keeps only
# its SHA-256 in <spool dir>/tokens.state; the token works at once (lease 200), GET /v1/tokens
# lists it without any digest, a minter cannot grant what it does not hold (403), a name taken by
# a configured token is a 409, DELETE revokes at once (also on a keep-alive connection already
# open), minted and revoked tokens stay so across kill -9, expires_in expires, and kill -9 at
# random moments during mints leaves a state file that parses and holds the old or the new set.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 sha256sum

SPOOL="$WORKDIR/spool"
STATE="$SPOOL/tokens.state"
new_token() { "$PORTCULLIS" token new | sed -n 's/^token: *//p'; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
ADMIN=$(new_token)
NARROW=$(new_token)
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 1}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync}
routes:
  github: {path: /webhooks/github, verify: {scheme: none}}
  stripe: {path: /webhooks/stripe, verify: {scheme: none}}
tokens:
  admin: {sha256: "$(sha "$ADMIN")", scopes: ["admin:tokens", "jobs:*"]}
  narrow: {sha256: "$(sha "$NARROW")", scopes: ["admin:tokens", "jobs:consume:github"]}
EOF

lease() { api_as "$1" POST /v1/lease '{"route":"github","max":1}'; }

start_server "$WORKDIR/config.yaml"

# --- mint, use, list ---
api_as "$ADMIN" POST /v1/tokens '{"name":"ci","scopes":["jobs:consume:github"]}'
expect_api "mint" 201
CI=$(py 'j["token"]')
[[ $CI == pct_* ]] || fail "mint: no token in $API_BODY"
expect_eq "mint: scopes" "jobs:consume:github" "$(py '",".join(j["minted"]["scopes"])')"
grep -q "$(sha "$CI")" "$STATE" || fail "the state file does not hold the token's digest"
! grep -q "$CI" "$STATE" || fail "the state file holds the plaintext token"
! grep -q "$CI" "$SERVER_LOG" || fail "the log holds the plaintext token"
lease "$CI"
expect_api "lease with the minted token" 200
api_as "$CI" POST /v1/lease '{"route":"stripe","max":1}'
[[ $API_STATUS == 403 || $API_STATUS == 404 ]] || fail "minted token leased outside its scope: $API_STATUS"
api_as "$ADMIN" GET /v1/tokens
expect_api "list" 200
expect_eq "list: names" "admin narrow ci" "$(py '" ".join(t["name"] for t in j["tokens"])')"
expect_eq "list: ci created_at set" True "$(py '[t for t in j["tokens"] if t["name"]=="ci"][0]["created_at"] is not None')"
for t in "$ADMIN" "$NARROW" "$CI"; do
    ! grep -q "$(sha "$t")" <<<"$API_BODY" || fail "the list shows a digest: $API_BODY"
done
grep -Eq '[0-9a-f]{64}' <<<"$API_BODY" && fail "the list shows something like a digest: $API_BODY"
api_as "$CI" GET /v1/tokens
expect_api "list without admin:tokens" 403

# --- escalation, bad requests, name clashes ---
api_as "$NARROW" POST /v1/tokens '{"name":"wider","scopes":["jobs:consume:*"]}'
expect_api "escalation" 403
grep -q 'jobs:consume:\*' <<<"$API_BODY" || fail "escalation: the answer does not name the scope: $API_BODY"
api_as "$NARROW" POST /v1/tokens '{"name":"meta","scopes":["metrics:read"]}'
expect_api "escalation to another resource" 403
api_as "$NARROW" POST /v1/tokens '{"name":"gh","scopes":["jobs:consume:github","!jobs:consume:github"]}'
expect_api "a narrower token from the narrow minter" 201
api_as "$ADMIN" POST /v1/tokens '{"name":"admin","scopes":["jobs:read"]}'
expect_api "name of a configured token" 409
api_as "$ADMIN" POST /v1/tokens '{"name":"ci","scopes":["jobs:read"]}'
expect_api "name of a minted token" 409
api_as "$ADMIN" POST /v1/tokens '{"name":"Bad Name","scopes":["jobs:read"]}'
expect_api "bad name" 400
api_as "$ADMIN" POST /v1/tokens '{"name":"x","scopes":["job:read"]}'
expect_api "bad scope" 400
api_as "$ADMIN" POST /v1/tokens '{"name":"x","scopes":["jobs:read"],"expires_in":"10"}'
expect_api "bad expires_in" 400
api_as "$ADMIN" DELETE /v1/tokens/admin
expect_api "revoke a configured token" 409
api_as "$ADMIN" DELETE /v1/tokens/nosuch
expect_api "revoke an unknown token" 404
api_as "$ADMIN" DELETE /v1/tokens
expect_api "DELETE of the collection" 405
grep -qi '^Allow: GET, POST' "$WORKDIR/api-headers" || fail "405 without Allow: GET, POST"
api_as "$ADMIN" POST /v1/tokens/ci '{}'
expect_api "POST to a token" 405
grep -qi '^Allow: DELETE' "$WORKDIR/api-headers" || fail "405 without Allow: DELETE"
grep -q '"reason":"token_refused"' "$SERVER_LOG" || fail "refusals are not logged"

# --- revoke while a keep-alive connection holds the token ---
api_as "$ADMIN" POST /v1/tokens '{"name":"held","scopes":["jobs:consume:github"]}'
expect_api "mint held" 201
HELD=$(py 'j["token"]')
python3 - "$ADMIN_PORT" "$HELD" "$ADMIN" >"$WORKDIR/keepalive.out" <<'PY'
import http.client, sys
port, held, admin = int(sys.argv[1]), sys.argv[2], sys.argv[3]
body = '{"route":"github","max":1}'
kept = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
def lease():
    kept.request("POST", "/v1/lease", body, {"Authorization": "Bearer " + held,
                                            "Content-Type": "application/json"})
    r = kept.getresponse()
    r.read()
    return r.status
first = lease()
other = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
other.request("DELETE", "/v1/tokens/held", headers={"Authorization": "Bearer " + admin})
rv = other.getresponse()
rv.read()
second = lease()
print(first, rv.status, second)
PY
expect_eq "keep-alive: lease, revoke, lease" "200 200 401" "$(cat "$WORKDIR/keepalive.out")"

# --- a minted token that revokes itself ---
api_as "$ADMIN" POST /v1/tokens '{"name":"selfish","scopes":["admin:tokens"]}'
expect_api "mint selfish" 201
SELFISH=$(py 'j["token"]')
api_as "$SELFISH" DELETE /v1/tokens/selfish
expect_api "a token revokes itself" 200
api_as "$SELFISH" GET /v1/tokens
expect_api "after revoking itself" 401
grep -q '"msg":"control plane: token revoked","name":"selfish","by":"selfish"' "$SERVER_LOG" ||
    fail "the self-revocation is not logged with its minter: $(grep selfish "$SERVER_LOG")"

# --- expiry ---
api_as "$ADMIN" POST /v1/tokens '{"name":"brief","scopes":["jobs:consume:github"],"expires_in":"2s"}'
expect_api "mint brief" 201
BRIEF=$(py 'j["token"]')
[[ $(py 'j["minted"]["expires_at"] is not None') == True ]] || fail "no expires_at: $API_BODY"
lease "$BRIEF"
expect_api "lease before expiry" 200
sleep 2.5
lease "$BRIEF"
expect_api "lease after expiry" 401

# --- kill -9 and start again ---
kill9_server
start_server "$WORKDIR/config.yaml"
lease "$CI"
expect_api "minted token after kill -9" 200
lease "$HELD"
expect_api "revoked token after kill -9" 401
lease "$BRIEF"
expect_api "expired token after kill -9" 401
api_as "$ADMIN" GET /v1/tokens
expect_eq "list after restart" "admin narrow ci gh brief" "$(py '" ".join(t["name"] for t in j["tokens"])')"

# --- kill -9 at random moments during mints ---
after_round() {
    api_as "$ADMIN" GET /v1/tokens
    expect_api "round $1: list" 200
}
kill9_during_posts 5 150 /v1/tokens "$ADMIN" '"scopes":["jobs:read"]' "$STATE" after_round
echo "kill -9 landed during a stream of mints in $KILLED_MID_STREAM of 5 rounds; $(grep -c '^token k' "$STATE") mints kept"
[[ $KILLED_MID_STREAM -ge 1 ]] || fail "no kill landed while mints were under way"
lease "$CI"
expect_api "minted token after the kills" 200

# --- a damaged state file stops the start, naming it ---
stop_server
sed -i 's/^token ci /token cj /' "$STATE"
if "$PORTCULLIS" serve -c "$WORKDIR/config.yaml" >"$WORKDIR/damaged.log" 2>&1; then
    fail "started with a damaged tokens.state"
fi
grep -q "tokens.state:[0-9]*: checksum" "$WORKDIR/damaged.log" ||
    fail "the damaged file is not named: $(tail -n 3 "$WORKDIR/damaged.log")"
echo "PASS: tokens"
