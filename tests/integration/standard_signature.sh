#!/usr/bin/env bash
# The standard scheme (Standard Webhooks, Svix) against requests signed by the providers' own
# libraries: standardwebhooks' and svix's Webhook#sign for v1 (HMAC-SHA256, key = base64 after
# whsec_) and tweetnacl for v1a (Ed25519, public key whpk_<base64>; no official JavaScript
# signer exists for it). Signed bytes "{id}.{ts}.{body}", a space-separated signature list where
# any entry may match and unknown versions are skipped, webhook-* or svix-* headers, window
# 300 s both ways.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
need python3 openssl
need_signers

# The whsec_ example secret of the Standard Webhooks specification, and another one.
export STD_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Binary key bytes, so that its base64 holds '+', '/' and '=' padding.
STD_SECRET_OLD="whsec_$(printf '\xfb\xff\xbf previous secret \xfe\xff' | base64 -w0)"
# Ed25519 keys from fixed seeds (hex); the route knows only the public keys.
ED_SEED="9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
ED_SEED_OTHER="4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
STD_PUBLIC_KEY=$(node "$SIGNER" public-key --seed "$ED_SEED" --format whpk)
export STD_SECRET_OLD STD_PUBLIC_KEY
provider_config "$WORKDIR/config.yaml" <<'EOF'
  standard: {path: /webhooks/standard, verify: {scheme: standard, secrets: [{env: STD_SECRET}]}}
  standard_mixed: {path: /webhooks/standard-mixed, verify: {scheme: standard, secrets: [{env: STD_SECRET_OLD}, {env: STD_PUBLIC_KEY}, {env: STD_SECRET}]}}
  standard_ed: {path: /webhooks/standard-ed, verify: {scheme: standard, secrets: [{env: STD_PUBLIC_KEY}]}}
EOF
start_server "$WORKDIR/config.yaml"

msg_id() { echo "msg_2Lh${RANDOM}Xq${RANDOM}vT${RANDOM}"; }

post_std() {
    local path=$1 file=$2
    shift 2
    post "$path" "$file" -H 'Content-Type: application/json' "$@"
}

# signature_of: the webhook-signature (or svix-signature) value of the last sign_with.
signature_of() {
    local l
    for l in "${SIGNED_LINES[@]}"; do
        [[ $l != *-signature:* ]] || { echo "${l#*: }"; return 0; }
    done
    fail "sign.mjs printed no signature"
}

# Accepted ---------------------------------------------------------------------------------------
new_body v1
sign_with standard --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
accept standard "v1 signed by standardwebhooks" "$BODY"

new_body svix
sign_with standard --headers svix --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
accept standard "svix-id/svix-timestamp/svix-signature signed by svix" "$BODY"

new_body past
sign_with standard --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY" \
    --timestamp $(($(now) - 240))
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
accept standard "signed 240 s ago" "$BODY"

new_body future
sign_with standard --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY" \
    --timestamp $(($(now) + 240))
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
accept standard "timestamp 240 s ahead" "$BODY"

# Lists: the library signs with each secret; a bad v1 first, then the good one, and the reverse.
new_body bad-then-good
sign_with standard --secret "whsec_$(printf 'not the route secret' | base64 -w0)" \
    --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
accept standard "a bad v1 before the good one" "$BODY"

new_body good-then-bad
sign_with standard --secret "$STD_SECRET" \
    --secret "whsec_$(printf 'not the route secret' | base64 -w0)" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
accept standard "the good v1 before a bad one" "$BODY"

# Unknown versions are skipped, whatever they hold.
new_body unknown-version
id=$(msg_id)
sign_with standard --secret "$STD_SECRET" --id "$id" --body "$BODY"
good=$(signature_of)
ts=$(signed_value webhook-timestamp)
post_std /webhooks/standard "$BODY" -H "webhook-id: $id" -H "webhook-timestamp: $ts" \
    -H "webhook-signature: v2,c29tZXRoaW5nIGVsc2U= v0,!!notbase64 $good"
accept standard "unknown v2 and v0 entries before the good v1" "$BODY"

# An entry that does not decode is skipped; the good one after it wins.
new_body undecodable-then-good
id=$(msg_id)
sign_with standard --secret "$STD_SECRET" --id "$id" --body "$BODY"
post_std /webhooks/standard "$BODY" -H "webhook-id: $id" \
    -H "webhook-timestamp: $(signed_value webhook-timestamp)" \
    -H "webhook-signature: v1,!!not*base64!! $(signature_of)"
accept standard "a v1 that is not base64 before the good one" "$BODY"

# A v1a entry on a route without public keys is not usable; the good v1 after it wins.
new_body v1a-on-hmac-route
sign_with standard --seed "$ED_SEED" --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
accept standard "a v1a entry before the good v1 on a route without a public key" "$BODY"

# v1a: Ed25519, verified with the whpk_ public key.
new_body v1a
sign_with standard --seed "$ED_SEED" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard-ed "$BODY" "${SIGNED[@]}"
accept standard_ed "v1a only" "$BODY"

# Ed25519 signs bytes: a binary body.
python3 -c 'import os, sys
sys.stdout.buffer.write(bytes(range(256)) + b"\r\n\x00\xff" + os.urandom(512))' >"$WORKDIR/binary.bin"
sign_with standard --seed "$ED_SEED" --id "$(msg_id)" --body "$WORKDIR/binary.bin"
post "/webhooks/standard-ed" "$WORKDIR/binary.bin" -H 'Content-Type: application/octet-stream' \
    "${SIGNED[@]}"
accept standard_ed "v1a over a binary body" "$WORKDIR/binary.bin"

# A body of most of the 1 MiB limit, chunked: Ed25519 checks it whole, over many reads.
python3 -c 'import json
print(json.dumps({"type": "invoice.paid", "rows": ["Grüße 漢字 %d" % i for i in range(40000)]}, ensure_ascii=False))' \
    >"$WORKDIR/large.json"
sign_with standard --seed "$ED_SEED" --id "$(msg_id)" --body "$WORKDIR/large.json"
post_std /webhooks/standard-ed "$WORKDIR/large.json" "${SIGNED[@]}" -H 'Transfer-Encoding: chunked'
accept standard_ed "v1a over a $(wc -c <"$WORKDIR/large.json")-byte chunked body" "$WORKDIR/large.json"

new_body v1a-svix
sign_with standard --headers svix --seed "$ED_SEED" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard-ed "$BODY" "${SIGNED[@]}"
accept standard_ed "v1a in svix-* headers" "$BODY"

new_body v1a-other-then-good
sign_with standard --seed "$ED_SEED_OTHER" --seed "$ED_SEED" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard-ed "$BODY" "${SIGNED[@]}"
accept standard_ed "a v1a of another key before the good v1a" "$BODY"

# The mixed route lists an old whsec_, a whpk_ and the current whsec_: each signs alone.
new_body mixed-old
sign_with standard --secret "$STD_SECRET_OLD" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard-mixed "$BODY" "${SIGNED[@]}"
accept standard_mixed "mixed route: v1 with the old secret (rotation)" "$BODY"

new_body mixed-new
sign_with standard --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard-mixed "$BODY" "${SIGNED[@]}"
accept standard_mixed "mixed route: v1 with the current secret" "$BODY"

new_body mixed-v1a
sign_with standard --seed "$ED_SEED" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard-mixed "$BODY" "${SIGNED[@]}"
accept standard_mixed "mixed route: v1a" "$BODY"

new_body mixed-both
sign_with standard --secret "whsec_$(printf 'unrelated' | base64 -w0)" --seed "$ED_SEED" \
    --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard-mixed "$BODY" "${SIGNED[@]}"
accept standard_mixed "mixed route: a bad v1 and a good v1a" "$BODY"

# Refused ----------------------------------------------------------------------------------------
refused_body missing-signature
post_std /webhooks/standard "$BODY" -H "webhook-id: $(msg_id)" -H "webhook-timestamp: $(now)"
refuse standard "no webhook-signature" signature_missing "$BODY"

refused_body missing-timestamp
sign_with standard --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard "$BODY" -H "webhook-id: $(signed_value webhook-id)" \
    -H "webhook-signature: $(signature_of)"
refuse standard "no webhook-timestamp" timestamp_missing "$BODY" "$(signature_of)"

# Without the id the signed bytes are unknown (README: a missing or empty webhook-id is
# malformed).
post_std /webhooks/standard "$BODY" -H "webhook-timestamp: $(signed_value webhook-timestamp)" \
    -H "webhook-signature: $(signature_of)"
refuse standard "no webhook-id" malformed "$BODY" "$(signature_of)"

refused_body empty-id
sign_with standard --secret "$STD_SECRET" --id "" --body "$BODY"
post_std /webhooks/standard "$BODY" -H "webhook-id;" \
    -H "webhook-timestamp: $(signed_value webhook-timestamp)" -H "webhook-signature: $(signature_of)"
refuse standard "empty webhook-id (signed as empty by the library)" malformed "$BODY"

# The headers come from one family: a webhook-id and webhook-timestamp do not complete an
# svix-signature.
refused_body mixed-families
id=$(msg_id)
sign_with standard --headers svix --secret "$STD_SECRET" --id "$id" --body "$BODY"
post_std /webhooks/standard "$BODY" -H "webhook-id: $id" \
    -H "webhook-timestamp: $(signed_value svix-timestamp)" -H "svix-signature: $(signature_of)"
refuse standard "svix-signature with webhook-id and webhook-timestamp" \
    'malformed|timestamp_missing' "$BODY" "$STD_SECRET"

refused_body signature-twice
sign_with standard --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard "$BODY" "${SIGNED[@]}" -H "webhook-signature: $(signature_of)"
refuse standard "webhook-signature sent twice" malformed "$BODY" "$STD_SECRET"

refused_body wrong-secret
sign_with standard --secret "whsec_$(printf 'a different key' | base64 -w0)" --id "$(msg_id)" \
    --body "$BODY"
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
refuse standard "v1 with another secret" signature_mismatch "$BODY" "$STD_SECRET" "$(signature_of)"

refused_body old-secret
sign_with standard --secret "$STD_SECRET_OLD" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
refuse standard "old secret on a route that does not list it" signature_mismatch "$BODY" \
    "$STD_SECRET_OLD"

# Standard Webhooks signs the id: a signature captured for another message is refused.
refused_body other-id
sign_with standard --secret "$STD_SECRET" --id "msg_original" --body "$BODY"
post_std /webhooks/standard "$BODY" -H "webhook-id: msg_replayed" \
    -H "webhook-timestamp: $(signed_value webhook-timestamp)" -H "webhook-signature: $(signature_of)"
refuse standard "signature computed for another webhook-id" signature_mismatch "$BODY" \
    "$STD_SECRET" "$(signature_of)"

refused_body other-ts
ts=$(now)
sign_with standard --secret "$STD_SECRET" --id "msg_ts" --body "$BODY" --timestamp $((ts - 30))
post_std /webhooks/standard "$BODY" -H "webhook-id: msg_ts" -H "webhook-timestamp: $ts" \
    -H "webhook-signature: $(signature_of)"
refuse standard "signature computed for another timestamp" signature_mismatch "$BODY" "$STD_SECRET"

refused_body too-old
sign_with standard --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY" \
    --timestamp $(($(now) - 600))
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
refuse standard "correctly signed 600 s ago" timestamp_too_old "$BODY" "$STD_SECRET"

refused_body too-new
sign_with standard --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY" \
    --timestamp $(($(now) + 600))
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
refuse standard "correctly signed 600 s in the future" timestamp_too_new "$BODY" "$STD_SECRET"

refused_body svix-too-old
sign_with standard --headers svix --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY" \
    --timestamp $(($(now) - 600))
post_std /webhooks/standard "$BODY" "${SIGNED[@]}"
refuse standard "svix-* headers signed 600 s ago" timestamp_too_old "$BODY" "$STD_SECRET"

refused_body ts-malformed
sign_with standard --secret "$STD_SECRET" --id "msg_tsm" --body "$BODY"
post_std /webhooks/standard "$BODY" -H "webhook-id: msg_tsm" \
    -H "webhook-timestamp: $(signed_value webhook-timestamp).5" -H "webhook-signature: $(signature_of)"
refuse standard "timestamp with a fraction" timestamp_malformed "$BODY" "$STD_SECRET"

# Malformed signature lists.
refused_body malformed
id=$(msg_id)
sign_with standard --secret "$STD_SECRET" --id "$id" --body "$BODY"
ts=$(signed_value webhook-timestamp)
good=$(signature_of)
post_malformed() {
    post_std /webhooks/standard "$BODY" -H "webhook-id: $id" -H "webhook-timestamp: $ts" \
        -H "webhook-signature: $1"
}
post_malformed "garbage"
refuse standard "webhook-signature: garbage" malformed "$BODY" "$STD_SECRET"
post_malformed "${good#v1,}"
refuse standard "base64 without v1," malformed "$BODY" "$STD_SECRET"
post_malformed 'v1,!!!!not*base64!!!!'
refuse standard "v1 that is not base64" malformed "$BODY" "$STD_SECRET"
post_malformed "v1,$(head -c 16 /dev/urandom | base64 -w0)"
refuse standard "v1 of 16 bytes (not a SHA-256)" malformed "$BODY" "$STD_SECRET"
post_malformed "v2,${good#v1,} v1b,${good#v1,}"
refuse standard "only unknown versions" malformed "$BODY" "$STD_SECRET"

# Ed25519 refusals.
refused_body v1a-other-key
sign_with standard --seed "$ED_SEED_OTHER" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard-ed "$BODY" "${SIGNED[@]}"
refuse standard_ed "v1a by another key" signature_mismatch "$BODY" "$(signature_of)"

refused_body v1a-other-id
sign_with standard --seed "$ED_SEED" --id "msg_signed" --body "$BODY"
post_std /webhooks/standard-ed "$BODY" -H "webhook-id: msg_other" \
    -H "webhook-timestamp: $(signed_value webhook-timestamp)" -H "webhook-signature: $(signature_of)"
refuse standard_ed "v1a computed for another webhook-id" signature_mismatch "$BODY" "$(signature_of)"

refused_body v1a-short
sign_with standard --seed "$ED_SEED" --id "msg_short" --body "$BODY"
post_std /webhooks/standard-ed "$BODY" -H "webhook-id: msg_short" \
    -H "webhook-timestamp: $(signed_value webhook-timestamp)" \
    -H "webhook-signature: v1a,$(head -c 32 /dev/urandom | base64 -w0)"
refuse standard_ed "v1a of 32 bytes (an Ed25519 signature has 64)" malformed "$BODY"

refused_body v1a-too-old
sign_with standard --seed "$ED_SEED" --id "$(msg_id)" --body "$BODY" --timestamp $(($(now) - 600))
post_std /webhooks/standard-ed "$BODY" "${SIGNED[@]}"
refuse standard_ed "v1a signed 600 s ago" timestamp_too_old "$BODY"

# An HMAC v1 on the route that only has a public key: nothing to check it with.
refused_body v1-on-ed-route
sign_with standard --secret "$STD_SECRET" --id "$(msg_id)" --body "$BODY"
post_std /webhooks/standard-ed "$BODY" "${SIGNED[@]}"
refuse standard_ed "v1 on a route with only a whpk_ key" 'signature_mismatch|malformed' "$BODY"

stop_server
check_spool
echo "standard_signature: ok (${#ACCEPTED[@]} accepted, $REJECTIONS refused)"
