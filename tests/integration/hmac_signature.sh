#!/usr/bin/env bash
# The generic hmac scheme, for senders with no provider scheme of their own: header, prefix,
# hex or base64, sha256, sha512 or sha1, and optionally a signed timestamp header and a
# template. There is no provider library here: openssl dgst computes what such a sender sends.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
need python3 openssl base64

export ACME_SECRET="acme-sha512-secret-Ω-2024"
export ACME_SECRET_OLD="acme-sha512-secret-2023"
export LEGACY_SECRET="legacy sha1 secret"
export TIMED_SECRET="timed-template-secret-v1"
export PLAIN_SECRET="plain-defaults-secret"
provider_config "$WORKDIR/config.yaml" <<'EOF'
  acme:
    path: /webhooks/acme
    verify: {scheme: hmac, header: X-Acme-Signature, prefix: "sha512=", encoding: base64, algorithm: sha512, secrets: [{env: ACME_SECRET}]}
  acme_rotating:
    path: /webhooks/acme-rotating
    verify: {scheme: hmac, header: X-Acme-Signature, prefix: "sha512=", encoding: base64, algorithm: sha512, secrets: [{env: ACME_SECRET_OLD}, {env: ACME_SECRET}]}
  legacy:
    path: /webhooks/legacy
    verify: {scheme: hmac, header: X-Legacy-Signature, encoding: hex, algorithm: sha1, secrets: [{env: LEGACY_SECRET}]}
  timed:
    path: /webhooks/timed
    verify:
      scheme: hmac
      header: X-Timed-Signature
      prefix: "v1="
      encoding: hex
      algorithm: sha256
      timestamp_header: X-Timed-Timestamp
      template: "v1:{timestamp}:{body}"
      tolerance: 2m
      secrets: [{env: TIMED_SECRET}]
  timed_default:
    path: /webhooks/timed-default
    verify: {scheme: hmac, header: X-Td-Signature, timestamp_header: X-Td-Timestamp, secrets: [{env: TIMED_SECRET}]}
  plain:
    path: /webhooks/plain
    verify: {scheme: hmac, header: X-Plain-Signature, secrets: [{env: PLAIN_SECRET}]}
EOF
start_server "$WORKDIR/config.yaml"

acme_sign() { echo "sha512=$(hmac_file sha512 "$1" base64 "" "$2")"; }
timed_sign() { echo "v1=$(hmac_file sha256 "$1" hex "v1:$2:" "$3")"; }

post_json() {
    local path=$1 file=$2
    shift 2
    post "$path" "$file" -H 'Content-Type: application/json' "$@"
}

# Accepted ---------------------------------------------------------------------------------------
new_body acme
post_json /webhooks/acme "$BODY" -H "X-Acme-Signature: $(acme_sign "$ACME_SECRET" "$BODY")"
accept acme "sha512, base64, prefix sha512=" "$BODY"

python3 -c 'import os, sys
sys.stdout.buffer.write(bytes(range(256)) + b"\r\n\x00\xff" + os.urandom(2048))' >"$WORKDIR/binary.bin"
post /webhooks/acme "$WORKDIR/binary.bin" -H 'Content-Type: application/octet-stream' \
    -H "X-Acme-Signature: $(acme_sign "$ACME_SECRET" "$WORKDIR/binary.bin")"
accept acme "sha512 over a binary body" "$WORKDIR/binary.bin"

for secret_var in ACME_SECRET_OLD ACME_SECRET; do
    new_body "rotation-$secret_var"
    post_json /webhooks/acme-rotating "$BODY" \
        -H "X-Acme-Signature: $(acme_sign "${!secret_var}" "$BODY")"
    accept acme_rotating "rotation: signed with $secret_var" "$BODY"
done

new_body legacy
post_json /webhooks/legacy "$BODY" \
    -H "X-Legacy-Signature: $(hmac_file sha1 "$LEGACY_SECRET" hex "" "$BODY")"
accept legacy "sha1, hex, no prefix" "$BODY"

new_body plain
post_json /webhooks/plain "$BODY" \
    -H "X-Plain-Signature: $(hmac_file sha256 "$PLAIN_SECRET" hex "" "$BODY")"
accept plain "defaults: sha256, hex, no prefix, the body alone" "$BODY"

for offset in 0 -90 90; do
    new_body "timed$offset"
    ts=$(($(now) + offset))
    post_json /webhooks/timed "$BODY" -H "X-Timed-Timestamp: $ts" \
        -H "X-Timed-Signature: $(timed_sign "$TIMED_SECRET" "$ts" "$BODY")"
    accept timed "template v1:{timestamp}:{body}, timestamp now$offset s (tolerance 2m)" "$BODY"
done

# Without a template, a timestamp_header signs "{timestamp}.{body}".
new_body timed-default
ts=$(now)
post_json /webhooks/timed-default "$BODY" -H "X-Td-Timestamp: $ts" \
    -H "X-Td-Signature: $(hmac_file sha256 "$TIMED_SECRET" hex "$ts." "$BODY")"
accept timed_default "default template {timestamp}.{body}" "$BODY"

# Refused ----------------------------------------------------------------------------------------
refused_body acme-missing
post_json /webhooks/acme "$BODY"
refuse acme "no X-Acme-Signature" signature_missing "$BODY"

refused_body acme-wrong-secret
sig=$(acme_sign "not the acme secret" "$BODY")
post_json /webhooks/acme "$BODY" -H "X-Acme-Signature: $sig"
refuse acme "sha512 with another secret" signature_mismatch "$BODY" "$ACME_SECRET" "$sig"

refused_body acme-old-secret
post_json /webhooks/acme "$BODY" -H "X-Acme-Signature: $(acme_sign "$ACME_SECRET_OLD" "$BODY")"
refuse acme "old secret on a route that does not list it" signature_mismatch "$BODY" \
    "$ACME_SECRET_OLD"

refused_body acme-malformed
good=$(acme_sign "$ACME_SECRET" "$BODY")
post_json /webhooks/acme "$BODY" -H 'X-Acme-Signature: sha512=!!!!not*base64!!!!'
refuse acme "sha512= followed by something that is not base64" malformed "$BODY" "$ACME_SECRET"

post_json /webhooks/acme "$BODY" \
    -H "X-Acme-Signature: sha512=$(hmac_file sha256 "$ACME_SECRET" base64 "" "$BODY")"
refuse acme "a SHA-256 HMAC where SHA-512 is configured (32 bytes, not 64)" malformed "$BODY" \
    "$ACME_SECRET"

post_json /webhooks/acme "$BODY" \
    -H "X-Acme-Signature: sha512=$(hmac_file sha512 "$ACME_SECRET" hex "" "$BODY")"
refuse acme "the right HMAC in hex where base64 is configured" malformed "$BODY" "$ACME_SECRET"

post_json /webhooks/acme "$BODY" -H "X-Acme-Signature: ${good#sha512=}"
refuse acme "the right base64 without its prefix" 'malformed|signature_mismatch' "$BODY" \
    "$ACME_SECRET" "$good"

post_json /webhooks/acme "$BODY" -H "X-Acme-Signature: $good" -H "X-Acme-Signature: $good"
refuse acme "the right signature sent twice" malformed "$BODY" "$ACME_SECRET" "$good"

refused_body legacy-wrong
sig=$(hmac_file sha1 "not the legacy secret" hex "" "$BODY")
post_json /webhooks/legacy "$BODY" -H "X-Legacy-Signature: $sig"
refuse legacy "sha1 with another secret" signature_mismatch "$BODY" "$LEGACY_SECRET" "$sig"

post_json /webhooks/legacy "$BODY" -H "X-Legacy-Signature: $(printf 'q%.0s' {1..40})"
refuse legacy "40 characters that are not hex" malformed "$BODY" "$LEGACY_SECRET"

post_json /webhooks/legacy "$BODY" \
    -H "X-Legacy-Signature: $(hmac_file sha256 "$LEGACY_SECRET" hex "" "$BODY")"
refuse legacy "a SHA-256 HMAC where SHA-1 is configured" malformed "$BODY" "$LEGACY_SECRET"

refused_body timed-missing-ts
ts=$(now)
sig=$(timed_sign "$TIMED_SECRET" "$ts" "$BODY")
post_json /webhooks/timed "$BODY" -H "X-Timed-Signature: $sig"
refuse timed "no X-Timed-Timestamp" timestamp_missing "$BODY" "$TIMED_SECRET" "$sig"

post_json /webhooks/timed "$BODY" -H "X-Timed-Timestamp: $ts"
refuse timed "no X-Timed-Signature" signature_missing "$BODY" "$TIMED_SECRET"

post_json /webhooks/timed "$BODY" -H "X-Timed-Timestamp: 17e8" -H "X-Timed-Signature: $sig"
refuse timed "timestamp 17e8" timestamp_malformed "$BODY" "$TIMED_SECRET"

refused_body timed-old
ts=$(($(now) - 300))
post_json /webhooks/timed "$BODY" -H "X-Timed-Timestamp: $ts" \
    -H "X-Timed-Signature: $(timed_sign "$TIMED_SECRET" "$ts" "$BODY")"
refuse timed "correctly signed 300 s ago (tolerance 2m)" timestamp_too_old "$BODY" "$TIMED_SECRET"

refused_body timed-new
ts=$(($(now) + 300))
post_json /webhooks/timed "$BODY" -H "X-Timed-Timestamp: $ts" \
    -H "X-Timed-Signature: $(timed_sign "$TIMED_SECRET" "$ts" "$BODY")"
refuse timed "correctly signed 300 s in the future (tolerance 2m)" timestamp_too_new "$BODY" \
    "$TIMED_SECRET"

ts=$(now)
sig=$(timed_sign "$TIMED_SECRET" "$ts" "$BODY")
post_json /webhooks/timed "$BODY" -H "X-Timed-Timestamp: $ts" -H "X-Timed-Timestamp: $ts" \
    -H "X-Timed-Signature: $sig"
refuse timed "the timestamp header sent twice" malformed "$BODY" "$TIMED_SECRET" "$sig"

refused_body timed-template
ts=$(now)
post_json /webhooks/timed "$BODY" -H "X-Timed-Timestamp: $ts" \
    -H "X-Timed-Signature: v1=$(hmac_file sha256 "$TIMED_SECRET" hex "$ts." "$BODY")"
refuse timed "signed {timestamp}.{body} where the template is v1:{timestamp}:{body}" \
    signature_mismatch "$BODY" "$TIMED_SECRET"

post_json /webhooks/timed "$BODY" -H "X-Timed-Timestamp: $ts" \
    -H "X-Timed-Signature: v1=$(hmac_file sha256 "$TIMED_SECRET" hex "" "$BODY")"
refuse timed "signed the body alone where the template has the timestamp" signature_mismatch \
    "$BODY" "$TIMED_SECRET"

post_json /webhooks/timed "$BODY" -H "X-Timed-Timestamp: $((ts + 1))" \
    -H "X-Timed-Signature: $(timed_sign "$TIMED_SECRET" "$ts" "$BODY")"
refuse timed "the signature of another timestamp" signature_mismatch "$BODY" "$TIMED_SECRET"

refused_body plain-template
ts=$(now)
post_json /webhooks/plain "$BODY" \
    -H "X-Plain-Signature: $(hmac_file sha256 "$PLAIN_SECRET" hex "$ts." "$BODY")"
refuse plain "a timestamped signature where only the body is signed" signature_mismatch "$BODY" \
    "$PLAIN_SECRET"

stop_server
check_spool
echo "hmac_signature: ok (${#ACCEPTED[@]} accepted, $REJECTIONS refused)"
