#!/usr/bin/env bash
# The shared_secret scheme (GitLab's X-Gitlab-Token): only the exact token is accepted, and the
# token header is a secret, so it is never stored with the job nor logged, while the other
# headers are stored.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3

export GH_SECRET="unused-github-secret"
export GL_TOKEN="glwt-Zq8_vX3.kP~r2Lm9"
SPOOL="$WORKDIR/spool"
write_config "$WORKDIR/config.yaml" "$SPOOL"
start_server "$WORKDIR/config.yaml"

n=0
new_body() {
    n=$((n + 1))
    printf '{"object_kind":"push","case":"%s","n":%d,"marker":"%s"}' "$1" "$n" "$2" \
        >"$WORKDIR/body-$n.json"
    BODY_FILE="$WORKDIR/body-$n.json"
}

post_gitlab() {
    local file=$1
    shift
    post /webhooks/gitlab "$file" -H 'Content-Type: application/json' \
        -H 'X-Gitlab-Event: Push Hook' -H 'X-Gitlab-Instance: https://gitlab.example.com' "$@"
}

# Accepted --------------------------------------------------------------------------------------
declare -A accepted_body=()

new_body exact ACCEPTED
post_gitlab "$BODY_FILE" -H "X-Gitlab-Token: $GL_TOKEN"
expect_queued "exact token"
accepted_body[$JOB_ID]=$BODY_FILE
exact_id=$JOB_ID

# Header names are case-insensitive; the lowercase spelling is the same secret header.
new_body lowercase-name ACCEPTED
post_gitlab "$BODY_FILE" -H "x-gitlab-token: $GL_TOKEN"
expect_queued "exact token, lowercase header name"
accepted_body[$JOB_ID]=$BODY_FILE

# Refused ---------------------------------------------------------------------------------------
rejections=0
# refuse CASE REASON_REGEX [curl arguments]
refuse() {
    local what=$1 reasons=$2
    shift 2
    new_body "$what" "REFUSED-$RANDOM$RANDOM"
    post_gitlab "$BODY_FILE" "$@"
    expect_unauthorized "$what"
    rejections=$((rejections + 1))
    wait_for_log '"msg":"webhook rejected"' "$rejections"
    local line
    line=$(grep -F '"msg":"webhook rejected"' "$SERVER_LOG" | tail -n 1)
    python3 - "$what" "$reasons" "$line" <<'PY' || exit 1
import json, re, sys
what, reasons, line = sys.argv[1:]
entry = json.loads(line)
for key, want in (("route", "gitlab"), ("peer", "127.0.0.1")):
    if entry.get(key) != want:
        sys.exit(f"FAIL: {what}: rejection log {key}: expected {want!r}: {line}")
if not re.fullmatch(reasons, str(entry.get("reason"))):
    sys.exit(f"FAIL: {what}: rejection log reason should match {reasons}: {line}")
if not entry.get("request_id"):
    sys.exit(f"FAIL: {what}: rejection log has no request_id: {line}")
PY
}

last=${GL_TOKEN: -1}
other_last=$([[ $last == x ]] && echo y || echo x)
refuse "missing token" signature_missing
refuse "different token, same length" signature_mismatch \
    -H "X-Gitlab-Token: ${GL_TOKEN%?}$other_last"
refuse "prefix of the token" signature_mismatch -H "X-Gitlab-Token: ${GL_TOKEN%?}"
refuse "first character only" signature_mismatch -H "X-Gitlab-Token: ${GL_TOKEN:0:1}"
refuse "token with a suffix" signature_mismatch -H "X-Gitlab-Token: ${GL_TOKEN}x"
refuse "token in another case" signature_mismatch -H "X-Gitlab-Token: ${GL_TOKEN^^}"
refuse "empty token" 'signature_missing|signature_mismatch' -H "X-Gitlab-Token;"
refuse "token in another header" signature_missing -H "X-Callback-Secret: $GL_TOKEN"
refuse "github secret" signature_mismatch -H "X-Gitlab-Token: $GH_SECRET"

stop_server

! grep -qF -- "$GL_TOKEN" "$SERVER_LOG" || fail "the token appears in the server log"
! grep -q 'REFUSED-' "$SERVER_LOG" || fail "a refused body appears in the server log"

# The spool -----------------------------------------------------------------------------------
spool_dump "$SPOOL" "$WORKDIR/dump.jsonl"
expect_eq "jobs in the spool (one per 202, none per 401)" "${#accepted_body[@]}" \
    "$(count_lines "$WORKDIR/dump.jsonl")"
! grep -q 'REFUSED-' "$WORKDIR/dump.jsonl" || fail "a refused body is in the spool"
# The secret must not be anywhere in the dump, under any header name or spelling.
! grep -qF -- "$GL_TOKEN" "$WORKDIR/dump.jsonl" || fail "the token is stored in the spool dump"
for id in "${!accepted_body[@]}"; do
    check_job "$WORKDIR/dump.jsonl" "$id" gitlab "${accepted_body[$id]}" \
        '!x-gitlab-token' 'x-gitlab-event=Push Hook' \
        'x-gitlab-instance=https://gitlab.example.com' content-type=application/json \
        "user-agent=$(curl --version | head -n 1 | cut -d ' ' -f 1-2 | tr ' ' /)"
done
check_job "$WORKDIR/dump.jsonl" "$exact_id" gitlab "${accepted_body[$exact_id]}" \
    "host=127.0.0.1:$PORT"

echo "shared_secret: ok (${#accepted_body[@]} accepted, $rejections refused, token never stored)"
