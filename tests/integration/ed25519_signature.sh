#!/usr/bin/env bash
# The ed25519 scheme (Discord interactions): X-Signature-Ed25519 is the hex Ed25519 signature of
# "{X-Signature-Timestamp}{body}", checked with the application's public key (64 hex characters
# in secrets). Requests are signed with tweetnacl (Discord publishes no signer; its documentation
# verifies with tweetnacl). A verified PING ({"type":1}) is answered 200 {"type":1} and not
# queued; Discord also sends PINGs with bad signatures and expects the 401.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
need python3
need_signers

SEED="c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"
SEED_OLD="0d4a05b07352a5436e180356da0ae6efa0345ff7fb1572575772e8005ed978e9"
SEED_OTHER="f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5"
DISCORD_PUBLIC_KEY=$(node "$SIGNER" public-key --seed "$SEED")
DISCORD_PUBLIC_KEY_OLD=$(node "$SIGNER" public-key --seed "$SEED_OLD")
export DISCORD_PUBLIC_KEY DISCORD_PUBLIC_KEY_OLD
unset DISCORD_PUBLIC_KEY_NEVER_SET
provider_config "$WORKDIR/config.yaml" <<EOF
  discord: {path: /webhooks/discord, verify: {scheme: ed25519, secrets: [{env: DISCORD_PUBLIC_KEY}]}}
  discord_unset: {path: /webhooks/discord-unset, verify: {scheme: ed25519, secrets: [{env: DISCORD_PUBLIC_KEY_NEVER_SET}]}}
  discord_rotating: {path: /webhooks/discord-rotating, verify: {scheme: ed25519, secrets: [{value: "$DISCORD_PUBLIC_KEY_OLD"}, {env: DISCORD_PUBLIC_KEY}]}}
EOF
start_server "$WORKDIR/config.yaml"

post_discord() {
    local path=$1 file=$2
    shift 2
    post "$path" "$file" -H 'Content-Type: application/json' \
        -H 'User-Agent: Discord-Interactions/1.0 (+https://discord.com)' "$@"
}

interaction_body() {
    new_body "$1"
    printf '{"application_id":"1109845125846917130","type":2,"data":{"name":"grüß","options":[{"name":"text","value":"漢字 🎲 %s"}]},"token":"aW50ZXJhY3Rpb246%s"}' \
        "$1" "$RANDOM" >"$BODY"
}

# Accepted ---------------------------------------------------------------------------------------
interaction_body command
sign_with ed25519 --seed "$SEED" --body "$BODY"
post_discord /webhooks/discord "$BODY" "${SIGNED[@]}"
accept discord "application command signed now" "$BODY"

python3 -c 'import os, sys
sys.stdout.buffer.write(bytes(range(256)) + b"\r\n\x00\xff" + os.urandom(512))' >"$WORKDIR/binary.bin"
sign_with ed25519 --seed "$SEED" --body "$WORKDIR/binary.bin"
post /webhooks/discord "$WORKDIR/binary.bin" -H 'Content-Type: application/octet-stream' "${SIGNED[@]}"
accept discord "binary body" "$WORKDIR/binary.bin"

# Ed25519 needs the whole message: a body of most of the 1 MiB limit, sent chunked with
# Expect: 100-continue, so that it arrives over many reads.
python3 -c 'import json
print(json.dumps({"type": 2, "data": {"rows": ["Grüße 漢字 🎲 %d" % i for i in range(30000)]}}, ensure_ascii=False))' \
    >"$WORKDIR/large.json"
sign_with ed25519 --seed "$SEED" --body "$WORKDIR/large.json"
post_discord /webhooks/discord "$WORKDIR/large.json" "${SIGNED[@]}" -H 'Transfer-Encoding: chunked' \
    -H 'Expect: 100-continue' --expect100-timeout 15
accept discord "a $(wc -c <"$WORKDIR/large.json")-byte body, chunked, 100-continue" "$WORKDIR/large.json"

interaction_body past
sign_with ed25519 --seed "$SEED" --body "$BODY" --timestamp $(($(now) - 240))
post_discord /webhooks/discord "$BODY" "${SIGNED[@]}"
accept discord "signed 240 s ago" "$BODY"

interaction_body future
sign_with ed25519 --seed "$SEED" --body "$BODY" --timestamp $(($(now) + 240))
post_discord /webhooks/discord "$BODY" "${SIGNED[@]}"
accept discord "timestamp 240 s ahead" "$BODY"

# Hex is case-insensitive: the signature in upper case.
interaction_body upper
sign_with ed25519 --seed "$SEED" --body "$BODY"
post_discord /webhooks/discord "$BODY" -H "X-Signature-Timestamp: $(signed_value X-Signature-Timestamp)" \
    -H "X-Signature-Ed25519: $(signed_value X-Signature-Ed25519 | tr a-f A-F)"
accept discord "signature in upper-case hex" "$BODY"

for seed_var in SEED_OLD SEED; do
    interaction_body "rotation-$seed_var"
    sign_with ed25519 --seed "${!seed_var}" --body "$BODY"
    post_discord /webhooks/discord-rotating "$BODY" "${SIGNED[@]}"
    accept discord_rotating "rotation: signed by the key of $seed_var" "$BODY"
done

# Handshake: PING is answered {"type":1}, not queued ---------------------------------------------
printf '{"type":1}' >"$WORKDIR/ping.json"
sign_with ed25519 --seed "$SEED" --body "$WORKDIR/ping.json"
post_discord /webhooks/discord "$WORKDIR/ping.json" "${SIGNED[@]}"
expect_json_answer "PING {\"type\":1}" 200 '{"type":1}'

# A PING as Discord sends it, with more fields.
printf '{"app_permissions":"562949953601536","application_id":"1109845125846917130","entitlements":[],"id":"1110000000000000001","token":"aW50ZXJhY3Rpb246cGluZw","type":1,"user":{"id":"1","username":"pïng"},"version":1}' \
    >"$WORKDIR/ping-full.json"
sign_with ed25519 --seed "$SEED_OLD" --body "$WORKDIR/ping-full.json"
post_discord /webhooks/discord-rotating "$WORKDIR/ping-full.json" "${SIGNED[@]}"
expect_json_answer "full PING signed by the old key" 200 '{"type":1}'

# Only a top-level type 1 is a PING: other verified interactions are queued.
for ping_like in '{"type":2,"data":{"type":1,"name":"nested"}}' '{"type":10}' '{"type":"1"}'; do
    new_body ping-like
    printf '%s' "$ping_like" >"$BODY"
    sign_with ed25519 --seed "$SEED" --body "$BODY"
    post_discord /webhooks/discord "$BODY" "${SIGNED[@]}"
    accept discord "not a PING: $ping_like" "$BODY"
done

# Discord checks that endpoints refuse PINGs with bad signatures.
cp "$WORKDIR/ping.json" "$WORKDIR/ping-bad.json"
sign_with ed25519 --seed "$SEED_OTHER" --body "$WORKDIR/ping-bad.json"
post_discord /webhooks/discord "$WORKDIR/ping-bad.json" "${SIGNED[@]}"
refuse discord "PING signed by another key" signature_mismatch "$WORKDIR/ping-bad.json"

sign_with ed25519 --seed "$SEED" --body "$WORKDIR/ping-bad.json" --timestamp $(($(now) - 600))
post_discord /webhooks/discord "$WORKDIR/ping-bad.json" "${SIGNED[@]}"
refuse discord "PING signed 600 s ago" timestamp_too_old "$WORKDIR/ping-bad.json"

post_discord /webhooks/discord "$WORKDIR/ping-bad.json"
refuse discord "unsigned PING" signature_missing "$WORKDIR/ping-bad.json"

# Refused ----------------------------------------------------------------------------------------
refused_body missing-timestamp
sign_with ed25519 --seed "$SEED" --body "$BODY"
sig=$(signed_value X-Signature-Ed25519)
post_discord /webhooks/discord "$BODY" -H "X-Signature-Ed25519: $sig"
refuse discord "no X-Signature-Timestamp" timestamp_missing "$BODY" "$sig"

post_discord /webhooks/discord "$BODY" -H "X-Signature-Timestamp: $(signed_value X-Signature-Timestamp)"
refuse discord "no X-Signature-Ed25519" signature_missing "$BODY"

refused_body other-key
sign_with ed25519 --seed "$SEED_OTHER" --body "$BODY"
post_discord /webhooks/discord "$BODY" "${SIGNED[@]}"
refuse discord "signed by another key" signature_mismatch "$BODY" "$(signed_value X-Signature-Ed25519)"

refused_body old-key
sign_with ed25519 --seed "$SEED_OLD" --body "$BODY"
post_discord /webhooks/discord "$BODY" "${SIGNED[@]}"
refuse discord "old key on a route that does not list it" signature_mismatch "$BODY"

refused_body too-old
sign_with ed25519 --seed "$SEED" --body "$BODY" --timestamp $(($(now) - 600))
post_discord /webhooks/discord "$BODY" "${SIGNED[@]}"
refuse discord "correctly signed 600 s ago" timestamp_too_old "$BODY"

refused_body too-new
sign_with ed25519 --seed "$SEED" --body "$BODY" --timestamp $(($(now) + 600))
post_discord /webhooks/discord "$BODY" "${SIGNED[@]}"
refuse discord "correctly signed 600 s in the future" timestamp_too_new "$BODY"

refused_body other-ts
ts=$(now)
sign_with ed25519 --seed "$SEED" --body "$BODY" --timestamp $((ts - 5))
sig=$(signed_value X-Signature-Ed25519)
post_discord /webhooks/discord "$BODY" -H "X-Signature-Timestamp: $ts" -H "X-Signature-Ed25519: $sig"
refuse discord "the signature of another timestamp" signature_mismatch "$BODY" "$sig"

post_discord /webhooks/discord "$BODY" -H "X-Signature-Timestamp: ${ts}.0" -H "X-Signature-Ed25519: $sig"
refuse discord "timestamp that is not digits" timestamp_malformed "$BODY" "$sig"

# No key configured: everything is refused, a correctly signed request too.
refused_body unset
sign_with ed25519 --seed "$SEED" --body "$BODY"
post_discord /webhooks/discord-unset "$BODY" "${SIGNED[@]}"
refuse discord_unset "a route whose only key's variable is unset" secret_unset "$BODY"

refused_body malformed
sign_with ed25519 --seed "$SEED" --body "$BODY"
ts=$(signed_value X-Signature-Timestamp)
sig=$(signed_value X-Signature-Ed25519)
post_discord /webhooks/discord "$BODY" -H "X-Signature-Timestamp: $ts" \
    -H "X-Signature-Ed25519: $(printf 'zz%.0s' {1..64})"
refuse discord "128 characters that are not hex" malformed "$BODY"

post_discord /webhooks/discord "$BODY" -H "X-Signature-Timestamp: $ts" \
    -H "X-Signature-Ed25519: ${sig:0:64}"
refuse discord "32 bytes of hex (an Ed25519 signature has 64)" malformed "$BODY"

post_discord /webhooks/discord "$BODY" -H "X-Signature-Timestamp: $ts" \
    -H "X-Signature-Ed25519: $(python3 -c 'import base64, sys; print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode())' "$sig")"
refuse discord "the right signature in base64 instead of hex" malformed "$BODY"

# A correct pair, but a field sent twice: which one counts would be the server's guess.
post_discord /webhooks/discord "$BODY" "${SIGNED[@]}" -H "X-Signature-Timestamp: $ts"
refuse discord "X-Signature-Timestamp sent twice" malformed "$BODY" "$sig"

post_discord /webhooks/discord "$BODY" "${SIGNED[@]}" -H "X-Signature-Ed25519: $sig"
refuse discord "X-Signature-Ed25519 sent twice" malformed "$BODY" "$sig"

stop_server
check_spool
echo "ed25519_signature: ok (${#ACCEPTED[@]} accepted, 2 PINGs answered, $REJECTIONS refused)"
