#!/usr/bin/env bash
# Disk full: on a small tmpfs the spool runs out of space. Requests are answered 503 with
# Retry-After, no partial record is left behind, and once space returns new jobs are accepted
# again; every job that got a 202 is in the spool with its exact body.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl openssl python3

[[ $(id -u) -eq 0 ]] || skip "mounting a tmpfs needs root"
fs="$WORKDIR/fs"
mkdir -p "$fs"
mount -t tmpfs -o size=4m tmpfs "$fs" 2>/dev/null || skip "cannot mount a tmpfs here"
at_exit "umount -l '$fs' 2>/dev/null || true"

write_config "$WORKDIR/config.yaml" "$fs/spool"
sed -i 's/shards: 2/shards: 1/' "$WORKDIR/config.yaml"
export GH_SECRET=disk-full-secret GL_TOKEN=unused
start_server "$WORKDIR/config.yaml"

# Leave about 300 KiB free, then send 64 KiB bodies until the spool refuses.
fallocate -l $(($(stat -f -c '%a*%S' "$fs") - 300 * 1024)) "$fs/filler" 2>/dev/null ||
    dd if=/dev/zero of="$fs/filler" bs=1k count=$(($(stat -f -c '%a*%S/1024' "$fs") - 300)) status=none
accepted=()
refused=0
for i in $(seq 1 20); do
    body="$WORKDIR/body-$i"
    python3 -c "import sys; sys.stdout.write(('job %d ' % $i) * 9000)" >"$body"
    sig=$(hmac_sha256_hex_file "$GH_SECRET" "$body")
    post /webhooks/github "$body" -H "X-Hub-Signature-256: sha256=$sig"
    case "$HTTP_STATUS" in
    202) accepted+=("$i:$(json_field "$HTTP_BODY" id)") ;;
    503)
        refused=$((refused + 1))
        grep -qi '^Retry-After: [0-9]' "$HTTP_HEADERS" || fail "503 without Retry-After"
        expect_eq "503 body" '{"error":"unavailable"}' "$HTTP_BODY"
        ;;
    *) fail "request $i: expected 202 or 503, got $HTTP_STATUS $HTTP_BODY" ;;
    esac
done
echo "while filling: ${#accepted[@]} accepted, $refused refused"
[[ $refused -gt 0 ]] || fail "the disk never filled: no 503"
[[ ${#accepted[@]} -gt 0 ]] || fail "nothing was accepted before the disk filled"
wait_for_log "write failed" 1

# No partial record: the spool is intact while the disk is still full.
"$PORTCULLIS" spool verify --dir "$fs/spool" >"$WORKDIR/verify-full.txt" ||
    fail "spool verify after disk full: $(cat "$WORKDIR/verify-full.txt")"

# Space returns: after the back-off, jobs are accepted again without a restart.
rm -f "$fs/filler"
recovered=""
for attempt in $(seq 1 30); do
    body="$WORKDIR/body-after"
    printf '{"after":"disk full","attempt":%d}' "$attempt" >"$body"
    sig=$(hmac_sha256_hex_file "$GH_SECRET" "$body")
    post /webhooks/github "$body" -H "X-Hub-Signature-256: sha256=$sig"
    if [[ $HTTP_STATUS == 202 ]]; then
        recovered=$(json_field "$HTTP_BODY" id)
        break
    fi
    [[ $HTTP_STATUS == 503 ]] || fail "after freeing space: expected 202 or 503, got $HTTP_STATUS"
    sleep 0.2
done
[[ -n $recovered ]] || fail "no 202 within 6 s after space returned"
cp "$body" "$WORKDIR/body-recovered"
stop_server

"$PORTCULLIS" spool verify --dir "$fs/spool" >"$WORKDIR/verify.txt" ||
    fail "spool verify at the end: $(cat "$WORKDIR/verify.txt")"
spool_dump "$fs/spool" "$WORKDIR/dump.jsonl"
for entry in "${accepted[@]}"; do
    check_job "$WORKDIR/dump.jsonl" "${entry#*:}" github "$WORKDIR/body-${entry%%:*}"
done
check_job "$WORKDIR/dump.jsonl" "$recovered" github "$WORKDIR/body-recovered"
jobs=$(count_lines "$WORKDIR/dump.jsonl")
expect_eq "jobs in the spool (accepted + recovered)" $((${#accepted[@]} + 1)) "$jobs"
echo "disk_full: ${#accepted[@]} accepted before full, $refused refused with 503, recovered"
