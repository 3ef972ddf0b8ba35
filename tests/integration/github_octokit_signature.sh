#!/usr/bin/env bash
# The github scheme against requests signed by GitHub's own library, @octokit/webhooks-methods
# (github_signature.sh covers the same scheme with openssl and the HTTP framing cases): a signed
# body is queued and stored byte for byte, both secrets of a rotating route are accepted, and
# every bad signature gets the bare 401 with its reason logged and nothing stored.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
need python3 openssl
need_signers

export GH_SECRET="octokit: it's a secret to everybody ✓"
export GH_SECRET_OLD="octokit-previous-secret-2023"
provider_config "$WORKDIR/config.yaml" <<'EOF'
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
  github_rotating: {path: /webhooks/github-rotating, verify: {scheme: github, secrets: [{env: GH_SECRET_OLD}, {env: GH_SECRET}]}}
EOF
start_server "$WORKDIR/config.yaml"

post_github() {
    local path=$1 file=$2
    shift 2
    post "$path" "$file" -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
        -H "X-GitHub-Delivery: $(cat /proc/sys/kernel/random/uuid)" "$@"
}

# Accepted ---------------------------------------------------------------------------------------
new_body unicode
sign_with github --secret "$GH_SECRET" --body "$BODY"
post_github /webhooks/github "$BODY" "${SIGNED[@]}"
accept github "octokit-signed unicode body" "$BODY"

# A body with a newline at the end and CR LF inside: signed and stored as is.
printf '{"zen":"Keep it logically awesome.",\r\n"hook_id":1}\n' >"$WORKDIR/crlf.json"
sign_with github --secret "$GH_SECRET" --body "$WORKDIR/crlf.json"
post_github /webhooks/github "$WORKDIR/crlf.json" "${SIGNED[@]}"
accept github "octokit-signed body with CR LF and a final newline" "$WORKDIR/crlf.json"

for secret_var in GH_SECRET_OLD GH_SECRET; do
    new_body "rotation-$secret_var"
    sign_with github --secret "${!secret_var}" --body "$BODY"
    post_github /webhooks/github-rotating "$BODY" "${SIGNED[@]}"
    accept github_rotating "rotation: signed with $secret_var" "$BODY"
done

# Refused ----------------------------------------------------------------------------------------
refused_body missing
post_github /webhooks/github "$BODY"
refuse github "missing X-Hub-Signature-256" signature_missing "$BODY"

refused_body wrong-secret
sign_with github --secret "not the secret" --body "$BODY"
post_github /webhooks/github "$BODY" "${SIGNED[@]}"
refuse github "signed with another secret" signature_mismatch "$BODY" "$GH_SECRET" \
    "$(signed_value X-Hub-Signature-256)"

# The old secret is accepted only on the route that lists it.
refused_body old-secret
sign_with github --secret "$GH_SECRET_OLD" --body "$BODY"
post_github /webhooks/github "$BODY" "${SIGNED[@]}"
refuse github "old secret on a route that no longer lists it" signature_mismatch "$BODY" \
    "$GH_SECRET_OLD"

refused_body bad-hex
sign_with github --secret "$GH_SECRET" --body "$BODY"
good=$(signed_value X-Hub-Signature-256)
post_github /webhooks/github "$BODY" -H "X-Hub-Signature-256: sha256=$(printf 'z%.0s' {1..64})"
refuse github "sha256= followed by 64 characters that are not hex" malformed "$BODY" "$GH_SECRET"

post_github /webhooks/github "$BODY" -H "X-Hub-Signature-256: ${good:0:40}"
refuse github "truncated signature" 'malformed|signature_mismatch' "$BODY" "$GH_SECRET"

post_github /webhooks/github "$BODY" -H "X-Hub-Signature-256: $(flip_hex "$good")"
refuse github "one hex digit changed" signature_mismatch "$BODY" "$GH_SECRET" "$(flip_hex "$good")"

stop_server
check_spool
echo "github_octokit_signature: ok (${#ACCEPTED[@]} accepted, $REJECTIONS refused)"
