#!/usr/bin/env bash
# POST /v1/routes/{route}/jobs on a spool that cannot take writes: on a small tmpfs filled up,
# an enqueue is answered 503 with Retry-After, like the public plane, and nothing half-written
# stays behind; once space returns the next enqueue is 202 and its job can be leased.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 sha256sum

[[ $(id -u) -eq 0 ]] || skip "mounting a tmpfs needs root"
fs="$WORKDIR/fs"
mkdir -p "$fs"
mount -t tmpfs -o size=4m tmpfs "$fs" 2>/dev/null || skip "cannot mount a tmpfs here"
at_exit "umount -l '$fs' 2>/dev/null || true"

OPS=$("$PORTCULLIS" token new | sed -n 's/^token: *//p')
cat >"$WORKDIR/config.yaml" <<EOC
server: {listen: ["127.0.0.1:0"], shards: 1}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $fs/spool, durability: fsync}
routes:
  manual: {path: /webhooks/manual, verify: {scheme: none}}
tokens:
  ops: {sha256: "$(printf %s "$OPS" | sha256sum | cut -d' ' -f1)", scopes: ["jobs:*"]}
EOC
start_server "$WORKDIR/config.yaml"

# enqueue FILE: sets API_STATUS, API_BODY and API_HEADERS.
enqueue() {
    API_HEADERS="$WORKDIR/api-headers"
    API_STATUS=$(curl -sS -m 30 -o "$WORKDIR/api-body" -D "$API_HEADERS" -w '%{http_code}' \
        -H "Authorization: Bearer $OPS" --data-binary "@$1" \
        "http://127.0.0.1:$ADMIN_PORT/v1/routes/manual/jobs") || API_STATUS="curl-failed-$?"
    API_BODY=$(cat "$WORKDIR/api-body")
}

# Leave about 300 KiB free, then enqueue 60 KiB bodies until the spool refuses.
fallocate -l $(($(stat -f -c '%a*%S' "$fs") - 300 * 1024)) "$fs/filler" 2>/dev/null ||
    dd if=/dev/zero of="$fs/filler" bs=1k count=$(($(stat -f -c '%a*%S/1024' "$fs") - 300)) status=none
accepted=0
refused=0
for i in $(seq 1 20); do
    python3 -c "import sys; sys.stdout.write(('job %d ' % $i) * 8500)" >"$WORKDIR/body"
    enqueue "$WORKDIR/body"
    case "$API_STATUS" in
    202) accepted=$((accepted + 1)) ;;
    503)
        refused=$((refused + 1))
        grep -qi '^Retry-After: [0-9]' "$API_HEADERS" || fail "503 without Retry-After"
        expect_eq "503 body" '{"error":"unavailable"}' "$API_BODY"
        ;;
    *) fail "enqueue $i: expected 202 or 503, got $API_STATUS $API_BODY" ;;
    esac
done
echo "while filling: $accepted accepted, $refused refused"
[[ $refused -gt 0 ]] || fail "the disk never filled: no 503"
[[ $accepted -gt 0 ]] || fail "nothing was accepted before the disk filled"
"$PORTCULLIS" spool verify --dir "$fs/spool" >"$WORKDIR/verify-full.txt" ||
    fail "spool verify after disk full: $(cat "$WORKDIR/verify-full.txt")"

# Space returns: after the spool's back-off, enqueues are taken again without a restart.
rm -f "$fs/filler"
printf '{"after":"disk full"}' >"$WORKDIR/after"
for _ in $(seq 1 30); do
    enqueue "$WORKDIR/after"
    [[ $API_STATUS == 202 ]] && break
    [[ $API_STATUS == 503 ]] || fail "after freeing space: expected 202 or 503, got $API_STATUS"
    sleep 0.2
done
expect_eq "an enqueue once space returned (answer: $API_BODY)" 202 "$API_STATUS"
id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$API_BODY")
state=$(curl -sS -m 10 -H "Authorization: Bearer $OPS" "http://127.0.0.1:$ADMIN_PORT/v1/jobs/$id")
expect_eq "the job's state" queued "$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["state"])' "$state")"
stop_server
echo "enqueue_disk_full: $accepted accepted, $refused refused with 503, recovered"
