#!/usr/bin/env bash
# portcullis's own Standard Webhooks signer (verify::StandardSigner, which the HTTP sink's
# `sign` uses) checked by the standardwebhooks library's Webhook#verify, as an application
# receiving signed deliveries checks them (providers/verify.mjs). The signer is reached through
# `portcullis sign`, the one command that runs it today: its webhook-* headers for a standard
# route's first secret, over JSON, multi-byte UTF-8, empty and large bodies. A body that is not
# UTF-8 cannot go through the library (it verifies strings): openssl's HMAC over the raw bytes
# checks that one. With several secrets only the first signs: a receiver that knows only the
# second refuses.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
need openssl base64 od python3
need_signers

VERIFIER="$PROVIDERS_DIR/verify.mjs"
# Binary key bytes, so that the base64 holds '+', '/' and '=' padding; and the old key.
key_new_hex=$(printf '\xfb\xff\xbf new signing key \xfe\xff\x00\x01' | od -An -tx1 | tr -d ' \n')
NEW_SECRET="whsec_$(printf '\xfb\xff\xbf new signing key \xfe\xff\x00\x01' | base64 -w0)"
OLD_SECRET="whsec_$(printf 'the previous signing key, 32 b.' | base64 -w0)"
export NEW_SECRET OLD_SECRET
[[ $NEW_SECRET == *[+/=]* ]] || fail "the test key's base64 should hold + / or ="
provider_config "$WORKDIR/config.yaml" <<'EOF2'
  app: {path: /webhooks/app, verify: {scheme: standard, secrets: [{env: NEW_SECRET}, {env: OLD_SECRET}]}}
EOF2

# sign_body FILE: `portcullis sign`'s headers for FILE in $WORKDIR/headers.
sign_body() {
    "$PORTCULLIS" sign -c "$WORKDIR/config.yaml" app --body "$1" >"$WORKDIR/headers" \
        2>"$WORKDIR/err" || fail "sign --body $1: $(cat "$WORKDIR/err")"
    grep -Eq '^webhook-signature: v1,[A-Za-z0-9+/]{43}=$' "$WORKDIR/headers" ||
        fail "sign printed no v1 signature: $(cat "$WORKDIR/headers")"
}

# library WHAT SECRET FILE EXPECTED: the library's verdict ("verified" or "refused: ...").
library() {
    local what=$1 secret=$2 file=$3 want=$4 got
    got=$(node "$VERIFIER" --secret "$secret" --body "$file" --headers "$WORKDIR/headers" 2>&1) || true
    [[ $got == "$want"* ]] || fail "$what: standardwebhooks said '$got', expected '$want'"
}

checked=0
# Bodies: JSON with non-ASCII text, every kind of UTF-8 sequence, empty, and 256 KiB.
new_body "json"
bodies=("$BODY")
printf 'plain text: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80 \xef\xbf\xbd \xc2\x80 end\n' \
    >"$WORKDIR/utf8.txt"
bodies+=("$WORKDIR/utf8.txt")
: >"$WORKDIR/empty.json"
bodies+=("$WORKDIR/empty.json")
python3 -c 'import sys; sys.stdout.write("{\"items\":[" + ",".join(f"\"item {i} \u00e9\"" for i in range(20000)) + "]}")' \
    >"$WORKDIR/large.json"
(($(stat -c %s "$WORKDIR/large.json") > 256 * 1024)) || fail "large.json is not large"
bodies+=("$WORKDIR/large.json")

for file in "${bodies[@]}"; do
    name=$(basename "$file")
    sign_body "$file"
    library "$name signed with the first secret" "$NEW_SECRET" "$file" verified
    library "$name checked with the second secret only" "$OLD_SECRET" "$file" \
        "refused: No matching signature found"
    # The same headers do not carry another body.
    printf ' ' | cat "$file" - >"$WORKDIR/tampered"
    library "$name with a byte appended" "$NEW_SECRET" "$WORKDIR/tampered" \
        "refused: No matching signature found"
    checked=$((checked + 1))
done

# A body that is not UTF-8 (every byte value, NUL included): openssl's HMAC over the raw bytes.
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)))' >"$WORKDIR/binary.bin"
(($(stat -c %s "$WORKDIR/binary.bin") == 256)) || fail "binary.bin should be 256 bytes"
sign_body "$WORKDIR/binary.bin"
id=$(sed -n 's/^webhook-id: //p' "$WORKDIR/headers")
ts=$(sed -n 's/^webhook-timestamp: //p' "$WORKDIR/headers")
signature=$(sed -n 's/^webhook-signature: //p' "$WORKDIR/headers")
want=$({ printf '%s.%s.' "$id" "$ts"; cat "$WORKDIR/binary.bin"; } |
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_new_hex" -binary | base64 -w0)
expect_eq "binary body: signature" "v1,$want" "$signature"
checked=$((checked + 1))
# The library indeed cannot take it (so the openssl check above is not a shortcut).
got=$(node "$VERIFIER" --secret "$NEW_SECRET" --body "$WORKDIR/binary.bin" \
    --headers "$WORKDIR/headers" 2>&1) && fail "verify.mjs took a body that is not UTF-8: $got"

echo "ok: $checked bodies signed by portcullis and verified"
