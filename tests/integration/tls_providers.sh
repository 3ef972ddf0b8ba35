#!/usr/bin/env bash
# The providers' own signing libraries over HTTPS: requests signed by @octokit/webhooks-methods
# (GitHub), stripe (Stripe), standardwebhooks and svix (Standard Webhooks), tweetnacl (Discord's
# Ed25519) and, for Slack, which publishes no signer, openssl, are sent with node's https module
# trusting only the test CA (sign.mjs https), on one keep-alive TLS connection. Each is queued
# and stored byte for byte, a bad signature of each scheme gets the bare 401 with its reason
# logged, and the connection stays open after each 202.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
need python3
need_tls_tools
need_signers

export GH_SECRET="octokit over TLS: it's a secret ✓ $RANDOM"
export STRIPE_SECRET="whsec_4eC39HqLyjWDarjtT1zdp7dcQ2vNbHzR"
export STD_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
export SLACK_SECRET="8f742231b10e8888abcd99yyyzzz85a5"
ED_SEED="9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
DISCORD_SEED="c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"
STD_PUBLIC_KEY=$(node "$SIGNER" public-key --seed "$ED_SEED" --format whpk)
DISCORD_PUBLIC_KEY=$(node "$SIGNER" public-key --seed "$DISCORD_SEED")
export STD_PUBLIC_KEY DISCORD_PUBLIC_KEY

tls_make_ca
tls_make_cert hooks "DNS:hooks.test"
provider_config "$WORKDIR/config.yaml" hooks <<'EOF'
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
  stripe: {path: /webhooks/stripe, verify: {scheme: stripe, secrets: [{env: STRIPE_SECRET}]}}
  standard: {path: /webhooks/standard, verify: {scheme: standard, secrets: [{env: STD_SECRET}, {env: STD_PUBLIC_KEY}]}}
  discord: {path: /webhooks/discord, verify: {scheme: ed25519, secrets: [{env: DISCORD_PUBLIC_KEY}]}}
  slack: {path: /webhooks/slack, verify: {scheme: slack, secrets: [{env: SLACK_SECRET}]}}
EOF
start_tls_server "$WORKDIR/config.yaml"

REUSED_AFTER_202=0
SENT_AFTER_202=0
last_was_202=0
# send PATH FILE ARGS...: https_send to hooks.test, counting whether the request after a 202
# went on the same connection.
send() {
    https_send hooks.test "$@"
    [[ $TLS_PROTOCOL == TLSv1.3 ]] || fail "$1: node negotiated $TLS_PROTOCOL, expected TLSv1.3"
    if ((last_was_202)); then
        SENT_AFTER_202=$((SENT_AFTER_202 + 1))
        [[ $TLS_REUSED != true ]] || REUSED_AFTER_202=$((REUSED_AFTER_202 + 1))
    fi
    last_was_202=0
    [[ $HTTP_STATUS != 202 ]] || last_was_202=1
}

# GitHub: @octokit/webhooks-methods ---------------------------------------------------------------
gh=(--header 'Content-Type: application/json' --header 'X-GitHub-Event: push')
new_body github-unicode
send /webhooks/github "$BODY" "${gh[@]}" --sign github --secret "$GH_SECRET"
accept github "octokit over TLS" "$BODY"

printf '{"zen":"Keep it logically awesome.",\r\n"hook_id":1}\n' >"$WORKDIR/crlf.json"
send /webhooks/github "$WORKDIR/crlf.json" "${gh[@]}" --sign github --secret "$GH_SECRET"
accept github "octokit over TLS: CR LF and a final newline" "$WORKDIR/crlf.json"

# 200 KB: many TLS records each way of the server's reads.
python3 -c 'import json, os, sys
json.dump({"commits": [{"id": os.urandom(20).hex(), "message": "Grüße 漢字 🚀" * 8} for _ in range(1200)]},
          open(sys.argv[1], "w"), ensure_ascii=False)' "$WORKDIR/large.json"
send /webhooks/github "$WORKDIR/large.json" "${gh[@]}" --sign github --secret "$GH_SECRET"
accept github "octokit over TLS: $(wc -c <"$WORKDIR/large.json") bytes" "$WORKDIR/large.json"

refused_body github-wrong
send /webhooks/github "$BODY" "${gh[@]}" --sign github --secret "not the secret"
refuse github "octokit over TLS, another secret" signature_mismatch "$BODY" "$GH_SECRET" \
    "$(signed_value X-Hub-Signature-256)"

# Stripe: stripe.webhooks.generateTestHeaderString ------------------------------------------------
st=(--header 'Content-Type: application/json; charset=utf-8')
new_body stripe
send /webhooks/stripe "$BODY" "${st[@]}" --sign stripe --secret "$STRIPE_SECRET"
accept stripe "stripe over TLS" "$BODY"

refused_body stripe-old
send /webhooks/stripe "$BODY" "${st[@]}" --sign stripe --secret "$STRIPE_SECRET" \
    --timestamp $(($(now) - 600))
refuse stripe "stripe over TLS, signed 600 s ago" timestamp_too_old "$BODY" "$STRIPE_SECRET"

# Standard Webhooks: standardwebhooks, svix, and v1a (tweetnacl) ---------------------------------
msg_id() { echo "msg_tls${RANDOM}x${RANDOM}"; }
new_body standard
send /webhooks/standard "$BODY" --sign standard --secret "$STD_SECRET" --id "$(msg_id)"
accept standard "standardwebhooks over TLS" "$BODY"
new_body standard-svix
send /webhooks/standard "$BODY" --sign standard --headers svix --secret "$STD_SECRET" --id "$(msg_id)"
accept standard "svix over TLS" "$BODY"
new_body standard-v1a
send /webhooks/standard "$BODY" --sign standard --seed "$ED_SEED" --id "$(msg_id)"
accept standard "v1a (Ed25519) over TLS" "$BODY"

refused_body standard-wrong
send /webhooks/standard "$BODY" --sign standard --id "$(msg_id)" \
    --secret "whsec_$(printf 'not the route secret' | base64 -w0)"
refuse standard "standardwebhooks over TLS, another secret" signature_mismatch "$BODY" "$STD_SECRET"

# Discord: tweetnacl over raw bytes, a body that is not UTF-8 ----------------------------------------
head -c 3000 /dev/urandom >"$WORKDIR/binary.bin"
printf '\xff\xfe\x00' >>"$WORKDIR/binary.bin"
send /webhooks/discord "$WORKDIR/binary.bin" --header 'Content-Type: application/octet-stream' \
    --sign ed25519 --seed "$DISCORD_SEED"
accept discord "ed25519 over TLS, binary body" "$WORKDIR/binary.bin"

# Slack: no signing library; openssl signs, node sends -----------------------------------------------
new_body slack
ts=$(now)
send /webhooks/slack "$BODY" --header 'Content-Type: application/json' \
    --header "X-Slack-Request-Timestamp: $ts" \
    --header "X-Slack-Signature: v0=$(hmac_file sha256 "$SLACK_SECRET" hex "v0:$ts:" "$BODY")" \
    --sign none
accept slack "slack over TLS" "$BODY"

refused_body slack-missing
send /webhooks/slack "$BODY" --header "X-Slack-Request-Timestamp: $(now)" --sign none
refuse slack "slack over TLS, no signature" signature_missing "$BODY"

((SENT_AFTER_202 > 0 && REUSED_AFTER_202 == SENT_AFTER_202)) ||
    fail "keep-alive over TLS: $REUSED_AFTER_202 of the $SENT_AFTER_202 requests sent after a 202 went on the same connection"
echo "node https: ${#ACCEPTED[@]} queued, $REJECTIONS refused; the $SENT_AFTER_202 requests after a 202 all reused its connection"

stop_server
check_spool
echo "tls_providers: ok (${#ACCEPTED[@]} accepted byte for byte, $REJECTIONS refused)"
