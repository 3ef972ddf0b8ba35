#!/usr/bin/env bash
# The shopify scheme: X-Shopify-Hmac-Sha256 is the base64 HMAC-SHA256 of the body with the app's
# client secret. Shopify publishes no signing library (its libraries only verify), so requests
# are signed here with openssl dgst, as Shopify's documentation describes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
need python3 openssl base64

export SHOPIFY_SECRET="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"
export SHOPIFY_SECRET_OLD="shpss_0000previous1111secret2222aaaa"
provider_config "$WORKDIR/config.yaml" <<'EOF'
  shopify: {path: /webhooks/shopify, verify: {scheme: shopify, secrets: [{env: SHOPIFY_SECRET}]}}
  shopify_rotating: {path: /webhooks/shopify-rotating, verify: {scheme: shopify, secrets: [{env: SHOPIFY_SECRET_OLD}, {env: SHOPIFY_SECRET}]}}
EOF
start_server "$WORKDIR/config.yaml"

shopify_sign() { hmac_file sha256 "$1" base64 "" "$2"; }

post_shopify() {
    local path=$1 file=$2
    shift 2
    post "$path" "$file" -H 'Content-Type: application/json' -H 'X-Shopify-Topic: orders/create' \
        -H 'X-Shopify-Shop-Domain: example.myshopify.com' \
        -H "X-Shopify-Webhook-Id: $(cat /proc/sys/kernel/random/uuid)" "$@"
}

order_body() {
    new_body "$1"
    printf '{"id":820982911946154508,"email":"jöhn@example.com","note":"Lieferung an Straße 5 — 東京 🚚","case":"%s"}' \
        "$1" >"$BODY"
}

# Accepted ---------------------------------------------------------------------------------------
order_body order
post_shopify /webhooks/shopify "$BODY" -H "X-Shopify-Hmac-Sha256: $(shopify_sign "$SHOPIFY_SECRET" "$BODY")"
accept shopify "signed order" "$BODY"

# The scheme signs the raw bytes: a binary body too.
python3 -c 'import os, sys
sys.stdout.buffer.write(bytes(range(256)) + b"\r\n\x00\xff" + os.urandom(1024))' >"$WORKDIR/binary.bin"
post_shopify /webhooks/shopify "$WORKDIR/binary.bin" \
    -H "X-Shopify-Hmac-Sha256: $(shopify_sign "$SHOPIFY_SECRET" "$WORKDIR/binary.bin")"
accept shopify "binary body" "$WORKDIR/binary.bin"

for secret_var in SHOPIFY_SECRET_OLD SHOPIFY_SECRET; do
    order_body "rotation-$secret_var"
    post_shopify /webhooks/shopify-rotating "$BODY" \
        -H "X-Shopify-Hmac-Sha256: $(shopify_sign "${!secret_var}" "$BODY")"
    accept shopify_rotating "rotation: signed with $secret_var" "$BODY"
done

# Refused ----------------------------------------------------------------------------------------
refused_body missing
post_shopify /webhooks/shopify "$BODY"
refuse shopify "no X-Shopify-Hmac-Sha256" signature_missing "$BODY"

refused_body wrong-secret
sig=$(shopify_sign "shpss_not_the_secret" "$BODY")
post_shopify /webhooks/shopify "$BODY" -H "X-Shopify-Hmac-Sha256: $sig"
refuse shopify "signed with another secret" signature_mismatch "$BODY" "$SHOPIFY_SECRET" "$sig"

refused_body old-secret
post_shopify /webhooks/shopify "$BODY" -H "X-Shopify-Hmac-Sha256: $(shopify_sign "$SHOPIFY_SECRET_OLD" "$BODY")"
refuse shopify "old secret on a route that does not list it" signature_mismatch "$BODY" \
    "$SHOPIFY_SECRET_OLD"

order_body other
other_sig=$(shopify_sign "$SHOPIFY_SECRET" "$BODY")
refused_body other-body
post_shopify /webhooks/shopify "$BODY" -H "X-Shopify-Hmac-Sha256: $other_sig"
refuse shopify "the signature of another body" signature_mismatch "$BODY" "$SHOPIFY_SECRET" "$other_sig"

refused_body malformed
post_shopify /webhooks/shopify "$BODY" -H 'X-Shopify-Hmac-Sha256: !!!!not*base64!!!!'
refuse shopify "not base64" malformed "$BODY" "$SHOPIFY_SECRET"

post_shopify /webhooks/shopify "$BODY" -H "X-Shopify-Hmac-Sha256: $(head -c 16 /dev/urandom | base64 -w0)"
refuse shopify "base64 of 16 bytes (not a SHA-256)" malformed "$BODY" "$SHOPIFY_SECRET"

# The right HMAC in hex: 64 hex characters are base64 of 48 bytes, the wrong length.
hex=$(hmac_file sha256 "$SHOPIFY_SECRET" hex "" "$BODY")
post_shopify /webhooks/shopify "$BODY" -H "X-Shopify-Hmac-Sha256: $hex"
refuse shopify "the right HMAC in hex instead of base64" malformed "$BODY" "$SHOPIFY_SECRET" "$hex"

# The right HMAC with a prefix Shopify does not send.
good=$(shopify_sign "$SHOPIFY_SECRET" "$BODY")
post_shopify /webhooks/shopify "$BODY" -H "X-Shopify-Hmac-Sha256: sha256=$good"
refuse shopify "sha256= before the base64" 'malformed|signature_mismatch' "$BODY" "$SHOPIFY_SECRET" \
    "$good"

post_shopify /webhooks/shopify "$BODY" -H "X-Shopify-Hmac-Sha256: $good" \
    -H "X-Shopify-Hmac-Sha256: $good"
refuse shopify "the right signature sent twice" malformed "$BODY" "$SHOPIFY_SECRET" "$good"

stop_server
check_spool
echo "shopify_signature: ok (${#ACCEPTED[@]} accepted, $REJECTIONS refused)"
