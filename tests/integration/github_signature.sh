#!/usr/bin/env bash
# The github scheme end to end: signed requests are queued and stored byte for byte (unicode,
# binary, chunked, 100-continue), every kind of bad signature gets the same bare 401 and leaves
# nothing in the spool, rejections are logged without body or secret (one JSON key per field, a
# repeated field's values joined), credentials (Authorization, Proxy-Authorization, Cookie) are
# not stored unless the route's keep_headers names them, and a route with two secrets accepts
# both (rotation).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3 openssl cmp

export GH_SECRET="it's a secret to everybody: gh-7f3a9c"
export GL_TOKEN="unused-gitlab-token"
SPOOL="$WORKDIR/spool"
write_config "$WORKDIR/config.yaml" "$SPOOL"
start_server "$WORKDIR/config.yaml"

accepted=0
declare -A expected_body=() # job id -> file holding the body sent

# post_github NAME BODY_FILE [curl arguments]: signs nothing, sends to the github route.
post_github() {
    local file=$2
    shift 2
    post /webhooks/github "$file" -H 'X-GitHub-Event: push' \
        -H "X-GitHub-Delivery: $(cat /proc/sys/kernel/random/uuid)" "$@"
}

# Accepted requests --------------------------------------------------------------------------

# Unicode, JSON-significant characters and a newline: the dump must escape them and give back
# the same bytes.
printf '%s\n%s' '{"zen":"Ünïcödé ✓ 漢字 🚀","quote":"\" \\ /","tab":"	"}' 'second line' \
    >"$WORKDIR/unicode.json"
sig=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/unicode.json")
post_github unicode "$WORKDIR/unicode.json" -H 'Content-Type: application/json' \
    -H "X-Hub-Signature-256: sha256=$sig"
expect_queued "unicode body"
expected_body[$JOB_ID]="$WORKDIR/unicode.json"
unicode_id=$JOB_ID
accepted=$((accepted + 1))

# Binary: NUL, invalid UTF-8, CR LF, every byte value, then random bytes.
python3 -c 'import os, sys
sys.stdout.buffer.write(bytes(range(256)) + b"\r\n\x00\xff\xfe" + os.urandom(4096))' \
    >"$WORKDIR/binary.bin"
sig=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/binary.bin")
post_github binary "$WORKDIR/binary.bin" -H 'Content-Type: application/octet-stream' \
    -H "X-Hub-Signature-256: sha256=$sig"
expect_queued "binary body"
expected_body[$JOB_ID]="$WORKDIR/binary.bin"
binary_id=$JOB_ID
accepted=$((accepted + 1))

# Chunked: curl streams the file as chunks, no Content-Length.
python3 -c 'import json
print(json.dumps({"chunked": True, "items": [{"n": i, "s": "ç" * (i % 7)} for i in range(3000)]}))' \
    >"$WORKDIR/chunked.json"
sig=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/chunked.json")
post_github chunked "$WORKDIR/chunked.json" -H 'Content-Type: application/json' \
    -H 'Transfer-Encoding: chunked' -H "X-Hub-Signature-256: sha256=$sig"
expect_queued "chunked body"
grep -qi '^> Transfer-Encoding: chunked' "$HTTP_TRACE" || fail "curl did not send the body chunked"
expected_body[$JOB_ID]="$WORKDIR/chunked.json"
chunked_id=$JOB_ID
accepted=$((accepted + 1))

# Expect: 100-continue with a 600 KiB body (under the 1 MiB default limit): the server must
# answer 100 Continue before curl sends the body. --expect100-timeout is long so that curl does
# not give up waiting and send the body anyway, which would hide a missing 100.
python3 -c 'import os, sys, base64
sys.stdout.write(base64.b64encode(os.urandom(450 * 1024)).decode())' >"$WORKDIR/large.txt"
sig=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/large.txt")
post_github expect "$WORKDIR/large.txt" -H 'Content-Type: text/plain' \
    -H 'Expect: 100-continue' --expect100-timeout 15 -H "X-Hub-Signature-256: sha256=$sig"
expect_queued "Expect: 100-continue"
grep -q '^< HTTP/1.1 100 Continue' "$HTTP_TRACE" ||
    fail "Expect: 100-continue: no interim '100 Continue' answer before the 202"
expected_body[$JOB_ID]="$WORKDIR/large.txt"
expect_id=$JOB_ID
accepted=$((accepted + 1))

# Chunked and 100-continue together.
sig=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/large.txt")
post_github chunked-expect "$WORKDIR/large.txt" -H 'Content-Type: text/plain' \
    -H 'Transfer-Encoding: chunked' -H 'Expect: 100-continue' --expect100-timeout 15 \
    -H "X-Hub-Signature-256: sha256=$sig"
expect_queued "chunked with Expect: 100-continue"
grep -q '^< HTTP/1.1 100 Continue' "$HTTP_TRACE" ||
    fail "chunked with Expect: 100-continue: no interim '100 Continue' answer"
expected_body[$JOB_ID]="$WORKDIR/large.txt"
accepted=$((accepted + 1))

# Credentials sent along with a signed webhook are accepted but not stored: the spool (and so
# every lease) never hands them to a consumer.
AUTH_VALUE="Bearer tok-$RANDOM$RANDOM-never-stored"
PROXY_AUTH_VALUE="Basic cHJveHk6$RANDOM$RANDOM"
COOKIE_VALUE="session=ck-$RANDOM$RANDOM; theme=dark"
echo -n '{"credentials":"sent along"}' >"$WORKDIR/credentials.json"
sig=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/credentials.json")
post_github credentials "$WORKDIR/credentials.json" -H "X-Hub-Signature-256: sha256=$sig" \
    -H "Authorization: $AUTH_VALUE" -H "Proxy-Authorization: $PROXY_AUTH_VALUE" \
    -H "Cookie: $COOKIE_VALUE" -H 'X-Custom-Field: kept'
expect_queued "signed webhook carrying credentials"
expected_body[$JOB_ID]="$WORKDIR/credentials.json"
credentials_id=$JOB_ID
accepted=$((accepted + 1))

# Refused requests ---------------------------------------------------------------------------
# Each refused body carries a marker that must never reach the spool or the log.
refused=0
refused_body() {
    printf '{"refused":"REFUSED-%s-%s","note":"must not be stored"}' "$1" "$RANDOM$RANDOM" \
        >"$WORKDIR/refused-$1.json"
    echo "$WORKDIR/refused-$1.json"
}

# check_rejection_log CASE REASON_REGEX SIGNATURE FILE [name=value ...]: the newest "webhook
# rejected" line is JSON with unique keys, the reason, route, peer and a request id, each
# name=value among its headers, and holds neither the body, nor the secret, nor the whole
# signature (values are cut to 12 characters).
check_rejection_log() {
    local what=$1 reasons=$2 signature=$3 file=$4
    shift 4
    wait_for_log '"msg":"webhook rejected"' "$refused"
    local line
    line=$(grep -F '"msg":"webhook rejected"' "$SERVER_LOG" | tail -n 1)
    python3 - "$what" "$reasons" "$line" "$signature" "$@" <<'PY' || exit 1
import json, re, sys
what, reasons, line, signature, *extra = sys.argv[1:]
# Python's json keeps the last of two equal keys silently: refuse them instead.
def unique_keys(pairs):
    keys = [k for k, _ in pairs]
    dups = sorted({k for k in keys if keys.count(k) > 1})
    if dups:
        raise ValueError(f"duplicate keys {dups}")
    return dict(pairs)
try:
    entry = json.loads(line, object_pairs_hook=unique_keys)
except ValueError as e:
    print(f"FAIL: {what}: rejection log line is not JSON with unique keys ({e}): {line}",
          file=sys.stderr)
    sys.exit(1)
def check(cond, msg):
    if not cond:
        print(f"FAIL: {what}: rejection log line: {msg}: {line}", file=sys.stderr)
        sys.exit(1)
check(re.fullmatch(reasons, str(entry.get("reason"))), f"reason should match {reasons}")
check(entry.get("route") == "github", "route should be 'github'")
check(entry.get("peer") == "127.0.0.1", "peer should be '127.0.0.1'")
check(isinstance(entry.get("request_id"), str) and entry["request_id"], "request_id missing")
headers = entry.get("headers")
check(isinstance(headers, dict), "no headers object")
check(str(headers.get("user-agent", "")).startswith("curl/"), "user-agent not among the headers")
if signature.startswith("sha256="):
    check(headers.get("x-hub-signature-256") == signature[:12],
          f"x-hub-signature-256 should be logged cut to {signature[:12]!r}")
for field in extra:
    name, value = field.split("=", 1)
    check(headers.get(name) == value, f"{name} should be logged as {value!r}")
PY
    local marker
    marker=$(grep -o 'REFUSED-[^"]*' "$file")
    ! grep -qF -- "$marker" "$SERVER_LOG" || fail "$what: the refused body appears in the log"
    ! grep -qF -- "$GH_SECRET" "$SERVER_LOG" || fail "$what: the secret appears in the log"
    if [[ ${#signature} -gt 12 ]]; then
        ! grep -qF -- "$signature" "$SERVER_LOG" ||
            fail "$what: the whole signature value appears in the log (at most 12 characters)"
    fi
}

# refuse CASE REASON_REGEX SIGNATURE_SENT [curl arguments]
refuse() {
    local what=$1 reasons=$2 signature=$3
    shift 3
    local file
    file=$(refused_body "$what")
    post_github "$what" "$file" -H 'Content-Type: application/json' "$@"
    expect_unauthorized "$what"
    refused=$((refused + 1))
    check_rejection_log "$what" "$reasons" "$signature" "$file"
}

good_sig() { hmac_sha256_hex_file "$GH_SECRET" "$1"; }

# A wrong signature of the right shape: the last hex digit of the right one changed.
file=$(refused_body wrong)
right=$(good_sig "$file")
last=${right: -1}
wrong="${right:0:63}$([[ $last == 0 ]] && echo 1 || echo 0)"
post_github wrong "$file" -H "X-Hub-Signature-256: sha256=$wrong"
expect_unauthorized "wrong signature"
refused=$((refused + 1))
check_rejection_log "wrong signature" signature_mismatch "sha256=$wrong" "$file"

refuse "missing header" signature_missing ""

# GitHub's legacy SHA-1 header alone, and a SHA-1 HMAC in the SHA-256 header: neither counts.
file=$(refused_body sha1)
sha1=$(openssl dgst -sha1 -hmac "$GH_SECRET" -hex <"$file" | sed 's/^.*= *//')
post_github sha1 "$file" -H "X-Hub-Signature: sha1=$sha1"
expect_unauthorized "only X-Hub-Signature: sha1="
refused=$((refused + 1))
check_rejection_log "only X-Hub-Signature: sha1=" signature_missing "sha1=$sha1" "$file"

file=$(refused_body sha1-in-256)
sha1=$(openssl dgst -sha1 -hmac "$GH_SECRET" -hex <"$file" | sed 's/^.*= *//')
post_github sha1-in-256 "$file" -H "X-Hub-Signature-256: sha1=$sha1"
expect_unauthorized "sha1= in X-Hub-Signature-256"
refused=$((refused + 1))
check_rejection_log "sha1= in X-Hub-Signature-256" 'signature_mismatch|malformed' "sha1=$sha1" \
    "$file"

# The right signature without its prefix, and with the prefix alone.
file=$(refused_body no-prefix)
sig=$(good_sig "$file")
post_github no-prefix "$file" -H "X-Hub-Signature-256: $sig"
expect_unauthorized "signature without sha256= prefix"
refused=$((refused + 1))
check_rejection_log "signature without sha256= prefix" 'signature_mismatch|malformed' "$sig" "$file"

refuse "empty signature" 'signature_missing|signature_mismatch|malformed' "" \
    -H "X-Hub-Signature-256: sha256="

# A valid signature, but of another body.
echo -n '{"other":"body"}' >"$WORKDIR/other.json"
sig=$(good_sig "$WORKDIR/other.json")
refuse "signature of another body" signature_mismatch "sha256=$sig" \
    -H "X-Hub-Signature-256: sha256=$sig"

# Signed with another secret.
file=$(refused_body other-secret)
sig=$(hmac_sha256_hex_file "not-the-secret" "$file")
post_github other-secret "$file" -H "X-Hub-Signature-256: sha256=$sig"
expect_unauthorized "signed with another secret"
refused=$((refused + 1))
check_rejection_log "signed with another secret" signature_mismatch "sha256=$sig" "$file"

# The signature header twice (and a repeated identifying field): malformed, and the log line
# still has one key per field, the values joined in order with ", " and cut to the field's
# bound as a whole (12 characters for a signature, so neither signature shows whole).
file=$(refused_body twice)
sig=$(good_sig "$file")
post_github twice "$file" -H "X-Hub-Signature-256: sha256=$sig" \
    -H "X-Hub-Signature-256: sha256=$wrong" -H 'X-GitHub-Event: ping'
expect_unauthorized "signature header twice"
refused=$((refused + 1))
check_rejection_log "signature header twice" malformed "sha256=$sig" "$file" \
    'x-github-event=push, ping'
! grep -qF -- "${wrong:5}" "$SERVER_LOG" ||
    fail "signature header twice: the second signature is logged whole"

# A refused request followed by a valid one in the same curl run (on the same connection when
# the server keeps it after a 401): the valid one is queued, the refused body is not stored.
file=$(refused_body keepalive)
echo -n '{"after":"a refusal on the same connection"}' >"$WORKDIR/after.json"
sig=$(good_sig "$WORKDIR/after.json")
url="http://127.0.0.1:$PORT/webhooks/github"
statuses=$(curl -sS -m 20 -o /dev/null -w '%{http_code}\n' -X POST \
    -H "X-Hub-Signature-256: sha256=$sig" --data-binary "@$file" "$url" \
    --next -sS -m 20 -o /dev/null -w '%{http_code}\n' -X POST \
    -H "X-Hub-Signature-256: sha256=$sig" --data-binary "@$WORKDIR/after.json" "$url" |
    tr '\n' ' ')
expect_eq "refused then valid request" "401 202 " "$statuses"
refused=$((refused + 1))
accepted=$((accepted + 1))

stop_server

# The spool ------------------------------------------------------------------------------------
spool_dump "$SPOOL" "$WORKDIR/dump.jsonl"
expect_eq "jobs in the spool (one per 202, none per 401)" "$accepted" \
    "$(count_lines "$WORKDIR/dump.jsonl")"
! grep -q 'REFUSED-' "$WORKDIR/dump.jsonl" || fail "a refused body is in the spool"
grep -qF '"body":"{\"after\":\"a refusal on the same connection\"}"' "$WORKDIR/dump.jsonl" ||
    fail "the valid request after a refusal on the same connection is not in the spool"

for id in "${!expected_body[@]}"; do
    check_job "$WORKDIR/dump.jsonl" "$id" github "${expected_body[$id]}" x-github-event=push
done
check_job "$WORKDIR/dump.jsonl" "$unicode_id" github "$WORKDIR/unicode.json" \
    content-type=application/json "x-hub-signature-256=sha256=$(good_sig "$WORKDIR/unicode.json")"
check_job "$WORKDIR/dump.jsonl" "$binary_id" github "$WORKDIR/binary.bin" \
    content-type=application/octet-stream
# Framing is the connection's business, not the webhook's.
check_job "$WORKDIR/dump.jsonl" "$chunked_id" github "$WORKDIR/chunked.json" '!transfer-encoding'
check_job "$WORKDIR/dump.jsonl" "$expect_id" github "$WORKDIR/large.txt" '!expect'
# Credentials are not stored; the other fields of that request are.
check_job "$WORKDIR/dump.jsonl" "$credentials_id" github "$WORKDIR/credentials.json" \
    '!authorization' '!proxy-authorization' '!cookie' x-custom-field=kept
for value in "$AUTH_VALUE" "$PROXY_AUTH_VALUE" "$COOKIE_VALUE"; do
    ! grep -qF -- "${value#* }" "$WORKDIR/dump.jsonl" || fail "a credential is in the spool dump"
    ! grep -qF -- "${value#* }" "$SERVER_LOG" || fail "a credential is in the log"
done

# The binary body is base64 in the dump: decode it and compare the bytes with cmp as well.
python3 - "$WORKDIR/dump.jsonl" "$binary_id" "$WORKDIR/binary.out" <<'PY'
import base64, json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    job = json.loads(line)
    if job["id"] == sys.argv[2]:
        assert job["body_encoding"] == "base64", job["body_encoding"]
        open(sys.argv[3], "wb").write(base64.b64decode(job["body"]))
PY
cmp "$WORKDIR/binary.bin" "$WORKDIR/binary.out" || fail "binary body differs after base64 decoding"

"$PORTCULLIS" spool verify --dir "$SPOOL" >"$WORKDIR/verify.txt" ||
    fail "spool verify after a clean stop: $(cat "$WORKDIR/verify.txt")"

# Rotation -------------------------------------------------------------------------------------
export GH_SECRET_OLD="old-secret-2023" GH_SECRET_NEW="new-secret-2024"
SPOOL2="$WORKDIR/spool-rotation"
cat >"$WORKDIR/rotation.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL2, durability: fsync}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET_OLD}, {env: GH_SECRET_NEW}]}}
EOF
start_server "$WORKDIR/rotation.yaml"
refused=0
declare -A rotation_id=()
for secret_var in GH_SECRET_OLD GH_SECRET_NEW; do
    echo -n "{\"signed_with\":\"$secret_var\"}" >"$WORKDIR/$secret_var.json"
    sig=$(hmac_sha256_hex_file "${!secret_var}" "$WORKDIR/$secret_var.json")
    post_github "$secret_var" "$WORKDIR/$secret_var.json" -H "X-Hub-Signature-256: sha256=$sig"
    expect_queued "rotation: signed with $secret_var"
    rotation_id[$secret_var]=$JOB_ID
done
# Neither the original secret nor anything else counts on this route.
file=$(refused_body rotation-other)
sig=$(hmac_sha256_hex_file "$GH_SECRET" "$file")
post_github rotation-other "$file" -H "X-Hub-Signature-256: sha256=$sig"
expect_unauthorized "rotation: signed with a secret not configured"
stop_server
# At stop, each route with refusals gets one line counting them by reason code.
refusals=$(grep -F '"msg":"route refusals"' "$SERVER_LOG" || true)
expect_eq "rotation: refusal summary lines" 1 "$(printf '%s\n' "$refusals" | grep -c .)"
printf '%s\n' "$refusals" | grep -F '"route":"github","rejected":{"signature_mismatch":1}' >/dev/null ||
    fail "rotation: refusal summary: $refusals"

spool_dump "$SPOOL2" "$WORKDIR/dump-rotation.jsonl"
expect_eq "rotation: jobs in the spool" 2 "$(count_lines "$WORKDIR/dump-rotation.jsonl")"
check_job "$WORKDIR/dump-rotation.jsonl" "${rotation_id[GH_SECRET_OLD]}" github "$WORKDIR/GH_SECRET_OLD.json"
check_job "$WORKDIR/dump-rotation.jsonl" "${rotation_id[GH_SECRET_NEW]}" github "$WORKDIR/GH_SECRET_NEW.json"

# Credentials kept on request ----------------------------------------------------------------
# A route whose consumer needs them names them in keep_headers; the others stay out.
SPOOL3="$WORKDIR/spool-keep"
cat >"$WORKDIR/keep.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL3, durability: fsync}
routes:
  github:
    path: /webhooks/github
    verify: {scheme: github, secrets: [{env: GH_SECRET}]}
    keep_headers: [Authorization, cookie]
EOF
start_server "$WORKDIR/keep.yaml"
sig=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/credentials.json")
post_github kept "$WORKDIR/credentials.json" -H "X-Hub-Signature-256: sha256=$sig" \
    -H "Authorization: $AUTH_VALUE" -H "Proxy-Authorization: $PROXY_AUTH_VALUE" \
    -H "Cookie: $COOKIE_VALUE"
expect_queued "keep_headers: signed webhook carrying credentials"
kept_id=$JOB_ID
stop_server
spool_dump "$SPOOL3" "$WORKDIR/dump-keep.jsonl"
check_job "$WORKDIR/dump-keep.jsonl" "$kept_id" github "$WORKDIR/credentials.json" \
    "authorization=$AUTH_VALUE" "cookie=$COOKIE_VALUE" '!proxy-authorization'

echo "github_signature: ok ($accepted accepted, 2 rotation, all refusals 401 and unstored)"
