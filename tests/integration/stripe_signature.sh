#!/usr/bin/env bash
# The stripe scheme against headers made by Stripe's own library
# (stripe.webhooks.generateTestHeaderString): Stripe-Signature t=..,v1=.. over "{t}.{body}" with
# the whole whsec_ string as the key; any v1 may match; a v0-only header, a bad signature, a
# timestamp outside the window (300 s, both directions, or verify.tolerance) are refused with
# the bare 401, their reason logged, nothing stored.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
need python3 openssl
need_signers

export STRIPE_SECRET="whsec_4eC39HqLyjWDarjtT1zdp7dcQ2vNbHzR"
export STRIPE_SECRET_OLD="whsec_oldPreviousEndpointSecret0123456789"
# Never set: a route whose only secret is missing refuses everything (secret_unset); next to a
# set one, it is skipped.
unset STRIPE_SECRET_NEVER_SET
provider_config "$WORKDIR/config.yaml" <<'EOF'
  stripe: {path: /webhooks/stripe, verify: {scheme: stripe, secrets: [{env: STRIPE_SECRET}]}}
  stripe_rotating: {path: /webhooks/stripe-rotating, verify: {scheme: stripe, secrets: [{env: STRIPE_SECRET_OLD}, {env: STRIPE_SECRET}]}}
  stripe_tight: {path: /webhooks/stripe-tight, verify: {scheme: stripe, secrets: [{env: STRIPE_SECRET}], tolerance: 30s}}
  stripe_unset: {path: /webhooks/stripe-unset, verify: {scheme: stripe, secrets: [{env: STRIPE_SECRET_NEVER_SET}]}}
  stripe_half_set: {path: /webhooks/stripe-half-set, verify: {scheme: stripe, secrets: [{env: STRIPE_SECRET_NEVER_SET}, {env: STRIPE_SECRET}]}}
EOF
start_server "$WORKDIR/config.yaml"

post_stripe() {
    local path=$1 file=$2
    shift 2
    post "$path" "$file" -H 'Content-Type: application/json; charset=utf-8' \
        -H 'User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)' "$@"
}

# stripe_body CASE: an event like Stripe's, with non-ASCII text; sets BODY.
stripe_body() {
    new_body "$1"
    printf '{\n  "id": "evt_%s",\n  "object": "event",\n  "type": "payment_intent.succeeded",\n  "data": {"object": {"description": "Café crème – 漢字 🚀", "case": "%s"}}\n}' \
        "$RANDOM$RANDOM" "$1" >"$BODY"
}

# v1_of HEADER: the v1 signature of a t=..,v1=.. header.
v1_of() { sed -n 's/.*v1=\([0-9a-f]*\).*/\1/p' <<<"$1"; }

# Accepted ---------------------------------------------------------------------------------------
stripe_body now
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY"
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}"
accept stripe "signed now" "$BODY"

stripe_body past
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp $(($(now) - 240))
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}"
accept stripe "signed 240 s ago (inside the 300 s window)" "$BODY"

stripe_body future
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp $(($(now) + 240))
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}"
accept stripe "timestamp 240 s ahead (inside the 300 s window)" "$BODY"

# While a secret is rolled, Stripe sends one v1 per secret: any may match. A v1 made with
# another secret before the good one, and one after it.
stripe_body two-v1
ts=$(now)
sign_with stripe --secret "whsec_someOtherEndpointSecret" --body "$BODY" --timestamp "$ts"
other=$(v1_of "$(signed_value Stripe-Signature)")
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp "$ts"
good=$(v1_of "$(signed_value Stripe-Signature)")
post_stripe /webhooks/stripe "$BODY" -H "Stripe-Signature: t=$ts,v1=$other,v1=$good"
accept stripe "a bad v1 before the good one" "$BODY"

stripe_body good-then-bad
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp "$ts"
good=$(v1_of "$(signed_value Stripe-Signature)")
post_stripe /webhooks/stripe "$BODY" -H "Stripe-Signature: t=$ts,v1=$good,v1=$other"
accept stripe "the good v1 before a bad one" "$BODY"

# A v1 that does not decode is skipped like any other bad entry.
stripe_body undecodable-then-good
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp "$ts"
good=$(v1_of "$(signed_value Stripe-Signature)")
post_stripe /webhooks/stripe "$BODY" -H "Stripe-Signature: t=$ts,v1=$(printf 'g%.0s' {1..64}),v1=$good"
accept stripe "a v1 that is not hex before the good one" "$BODY"

# Stripe's test-mode headers also carry a v0 entry next to v1: it is ignored.
stripe_body with-v0
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp "$ts"
good=$(v1_of "$(signed_value Stripe-Signature)")
post_stripe /webhooks/stripe "$BODY" \
    -H "Stripe-Signature: t=$ts,v1=$good,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
accept stripe "v1 next to a v0 entry" "$BODY"

# Keys Stripe may add later are ignored.
stripe_body unknown-keys
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp "$ts"
post_stripe /webhooks/stripe "$BODY" \
    -H "Stripe-Signature: $(signed_value Stripe-Signature),v2=00ff,x-future=1"
accept stripe "unknown v2= and x-future= entries after the v1" "$BODY"

for secret_var in STRIPE_SECRET_OLD STRIPE_SECRET; do
    stripe_body "rotation-$secret_var"
    sign_with stripe --secret "${!secret_var}" --body "$BODY"
    post_stripe /webhooks/stripe-rotating "$BODY" "${SIGNED[@]}"
    accept stripe_rotating "rotation: signed with $secret_var" "$BODY"
done

stripe_body half-set
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY"
post_stripe /webhooks/stripe-half-set "$BODY" "${SIGNED[@]}"
accept stripe_half_set "a route whose other secret's variable is unset" "$BODY"

stripe_body tight-now
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY"
post_stripe /webhooks/stripe-tight "$BODY" "${SIGNED[@]}"
accept stripe_tight "tolerance 30s: signed now" "$BODY"

# Refused ----------------------------------------------------------------------------------------
refused_body missing
post_stripe /webhooks/stripe "$BODY"
refuse stripe "no Stripe-Signature" signature_missing "$BODY"

refused_body v0-only
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --scheme v0
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}"
refuse stripe "only a v0 signature (made by the library with scheme v0)" malformed "$BODY" \
    "$STRIPE_SECRET"

refused_body wrong-secret
sign_with stripe --secret "whsec_notTheEndpointSecret9999" --body "$BODY"
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}"
refuse stripe "signed with another whsec_ secret" signature_mismatch "$BODY" "$STRIPE_SECRET" \
    "$(v1_of "$(signed_value Stripe-Signature)")"

# The key is the whole whsec_ string, not what follows the prefix.
refused_body key-without-prefix
sign_with stripe --secret "${STRIPE_SECRET#whsec_}" --body "$BODY"
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}"
refuse stripe "signed with the secret minus its whsec_ prefix" signature_mismatch "$BODY" \
    "$STRIPE_SECRET"

refused_body old-secret
sign_with stripe --secret "$STRIPE_SECRET_OLD" --body "$BODY"
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}"
refuse stripe "old secret on a route that does not list it" signature_mismatch "$BODY" \
    "$STRIPE_SECRET_OLD"

refused_body too-old
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp $(($(now) - 600))
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}"
refuse stripe "correctly signed 600 s ago" timestamp_too_old "$BODY" "$STRIPE_SECRET"

refused_body too-new
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp $(($(now) + 600))
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}"
refuse stripe "correctly signed 600 s in the future" timestamp_too_new "$BODY" "$STRIPE_SECRET"

refused_body tight-old
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp $(($(now) - 120))
post_stripe /webhooks/stripe-tight "$BODY" "${SIGNED[@]}"
refuse stripe_tight "tolerance 30s: signed 120 s ago" timestamp_too_old "$BODY" "$STRIPE_SECRET"

refused_body tight-new
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp $(($(now) + 120))
post_stripe /webhooks/stripe-tight "$BODY" "${SIGNED[@]}"
refuse stripe_tight "tolerance 30s: 120 s in the future" timestamp_too_new "$BODY" "$STRIPE_SECRET"

# A captured signature replayed with another t: the signed bytes differ.
refused_body replayed-t
ts=$(now)
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp $((ts - 10))
good=$(v1_of "$(signed_value Stripe-Signature)")
post_stripe /webhooks/stripe "$BODY" -H "Stripe-Signature: t=$ts,v1=$good"
refuse stripe "the signature of another t" signature_mismatch "$BODY" "$STRIPE_SECRET" "$good"

# The signature of another body.
stripe_body other-body
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY"
refused_body other-body
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}"
refuse stripe "the signature of another body" signature_mismatch "$BODY" "$STRIPE_SECRET"

# Malformed headers.
refused_body malformed
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY" --timestamp "$ts"
good=$(v1_of "$(signed_value Stripe-Signature)")
post_stripe /webhooks/stripe "$BODY" -H "Stripe-Signature: garbage"
refuse stripe "Stripe-Signature: garbage" malformed "$BODY" "$STRIPE_SECRET"

post_stripe /webhooks/stripe "$BODY" -H "Stripe-Signature: t=$ts,v1=$(printf 'g%.0s' {1..64})"
refuse stripe "v1 of 64 characters that are not hex" malformed "$BODY" "$STRIPE_SECRET"

post_stripe /webhooks/stripe "$BODY" -H "Stripe-Signature: t=$ts,v1=${good:0:32}"
refuse stripe "v1 of 16 bytes (half a SHA-256)" malformed "$BODY" "$STRIPE_SECRET"

post_stripe /webhooks/stripe "$BODY" -H "Stripe-Signature: t=$ts,v1="
refuse stripe "empty v1" malformed "$BODY" "$STRIPE_SECRET"

post_stripe /webhooks/stripe "$BODY" -H "Stripe-Signature: t=${ts}x,v1=$good"
refuse stripe "t is not digits" timestamp_malformed "$BODY" "$STRIPE_SECRET" "$good"

# Without t the signature cannot be checked (README: timestamp_missing).
post_stripe /webhooks/stripe "$BODY" -H "Stripe-Signature: v1=$good"
refuse stripe "no t= in the header" timestamp_missing "$BODY" "$STRIPE_SECRET" "$good"

# Two Stripe-Signature fields: which one counts would be the server's guess.
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY"
post_stripe /webhooks/stripe "$BODY" "${SIGNED[@]}" "${SIGNED[@]}"
refuse stripe "Stripe-Signature sent twice" malformed "$BODY" "$STRIPE_SECRET"

# No secret configured: everything is refused, a correctly signed request too.
refused_body unset
sign_with stripe --secret "$STRIPE_SECRET" --body "$BODY"
post_stripe /webhooks/stripe-unset "$BODY" "${SIGNED[@]}"
refuse stripe_unset "a route whose only secret's variable is unset" secret_unset "$BODY" \
    "$STRIPE_SECRET"

stop_server
check_spool
# The stored jobs keep Stripe's header (consumers may verify again).
python3 - "$DUMP" <<'PY' || fail "a stored stripe job lacks its stripe-signature header"
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    job = json.loads(line)
    if not job.get("headers", {}).get("stripe-signature", "").startswith("t="):
        sys.exit(f"FAIL: job {job.get('id')}: stored headers {job.get('headers')}")
PY
echo "stripe_signature: ok (${#ACCEPTED[@]} accepted, $REJECTIONS refused)"
