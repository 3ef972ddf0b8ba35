#!/usr/bin/env bash
# Damage in the middle of a spool segment or of the ledger costs only the records it hits
# (issue "The queue keeps every promise under faults", items 1 and 3):
#   - a flipped bit in the length of a record in the middle of a segment makes that record
#     claim more bytes than the file holds: `spool verify`, `spool dump`, the shard's recovery
#     and the control plane's job index all skip that one record and keep every later job
#     (the index used to stop there: every later job answered 202 was never leased);
#   - a flipped byte in the middle of ledger.log costs that one op: serve keeps the ops after
#     it (it used to cut the file there, undoing every later ack), and `spool verify` reports
#     the damage.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3 sha256sum curl

SPOOL="$WORKDIR/spool"
TOKEN=$("$PORTCULLIS" token new | sed -n 's/^token: *//p')
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 1}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync}
routes:
  jobs: {path: /webhooks/jobs, verify: {scheme: none}}
tokens:
  consumer: {sha256: "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)", scopes: ["jobs:consume:jobs", "jobs:read:jobs"]}
EOF

JOBS=40
start_server "$WORKDIR/config.yaml"
: >"$WORKDIR/ids"
for n in $(seq 1 "$JOBS"); do
    answer=$(curl -sS -X POST --data-binary "job $n $(head -c 600 /dev/zero | tr '\0' x)" \
        "http://127.0.0.1:$PORT/webhooks/jobs")
    json_field "$answer" id >>"$WORKDIR/ids"
done
expect_eq "jobs answered 202" "$JOBS" "$(grep -c . "$WORKDIR/ids")"

# Lease every job and ack them one at a time: 40 lease ops, then 40 ack ops in the ledger.
python3 - "$ADMIN_PORT" "$TOKEN" "$WORKDIR/ids" <<'PY'
import http.client, json, sys
admin, token, ids = int(sys.argv[1]), sys.argv[2], open(sys.argv[3]).read().split()
c = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
c.request("POST", "/v1/lease", body=json.dumps({"route": "jobs", "max": 100, "visibility": "1h"}), headers=h)
leased = [j["id"] for j in json.loads(c.getresponse().read())["jobs"]]
assert sorted(leased) == sorted(ids), f"leased {len(leased)} of {len(ids)}"
for i in ids:
    c.request("POST", f"/v1/jobs/{i}/ack", headers=h)
    r = c.getresponse(); r.read()
    assert r.status == 200, f"ack {i}: {r.status}"
PY
stop_server

segment=$(ls "$SPOOL"/shard-0/*.seg | head -n 1)
ledger="$SPOOL/ledger.log"
expect_eq "ledger size (40 leases, 40 acks)" $((80 * 48)) "$(stat -c %s "$ledger")"

# Record 20 of the segment: a bit of its length that makes it run past the end of the file.
# Ledger op 50 (the ack of job 10): one byte in its checksummed part.
python3 - "$segment" "$ledger" <<'PY'
import struct, sys
seg, ledger = sys.argv[1], sys.argv[2]
data = bytearray(open(seg, "rb").read())
pos, offsets = 16, []
while pos + 16 <= len(data) and data[pos:pos + 4] == b"PCR1":
    offsets.append(pos)
    pos += 16 + struct.unpack_from("<I", data, pos + 4)[0]
assert len(offsets) == 40, f"{len(offsets)} records in {seg}"
length = struct.unpack_from("<I", data, offsets[19] + 4)[0]
assert offsets[19] + 16 + (length | 1 << 19) > len(data)
data[offsets[19] + 4 + 2] ^= 0x08  # bit 19 of the u32 length
open(seg, "wb").write(data)
led = bytearray(open(ledger, "rb").read())
led[49 * 48 + 30] ^= 0x01
open(ledger, "wb").write(led)
PY

status=0
"$PORTCULLIS" spool verify --dir "$SPOOL" >"$WORKDIR/verify.out" 2>&1 || status=$?
cat "$WORKDIR/verify.out"
[[ $status -ne 0 ]] || fail "spool verify exited 0 on a damaged spool"
grep -q "corrupt region at offset" "$WORKDIR/verify.out" || fail "spool verify: no corrupt region reported"
grep -q "39 records" "$WORKDIR/verify.out" || fail "spool verify: expected 39 valid records"
grep -q "ledger.log: 79 ops" "$WORKDIR/verify.out" || fail "spool verify: expected 79 valid ledger ops"
grep -q "  damaged region at offset $((49 * 48)): 48 bytes" "$WORKDIR/verify.out" ||
    fail "spool verify: the ledger's damaged record is not reported"

dumped=$("$PORTCULLIS" spool dump --dir "$SPOOL" 2>/dev/null | grep -c '"id"' || true)
expect_eq "jobs in spool dump" 39 "$dumped"

start_server "$WORKDIR/config.yaml"
wait_for_log '"msg":"job index ready"' 1
index_line=$(grep '"msg":"job index ready"' "$SERVER_LOG")
echo "$index_line"
grep -q '"jobs":39,' <<<"$index_line" || fail "job index: expected 39 jobs: $index_line"
grep -q '"ledger_ops":79,' <<<"$index_line" || fail "job index: expected 79 ledger ops: $index_line"
grep -q '"msg":"ledger: damaged records skipped"' "$SERVER_LOG" || fail "the ledger damage is not logged"
grep -q '"msg":"ledger: cut torn tail"' "$SERVER_LOG" && fail "the ledger's middle was cut as a torn tail"
expect_eq "ledger size after start (nothing cut)" $((80 * 48)) "$(stat -c %s "$ledger")"

# Every job but the damaged one is known; every ack but job 10's survived (job 10 is leased
# again: its lease op is intact), those after it included.
python3 - "$ADMIN_PORT" "$TOKEN" "$WORKDIR/ids" <<'PY'
import http.client, json, sys
admin, token, ids = int(sys.argv[1]), sys.argv[2], open(sys.argv[3]).read().split()
c = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
h = {"Authorization": "Bearer " + token}
states = {}
for n, i in enumerate(ids, 1):
    c.request("GET", f"/v1/jobs/{i}", headers=h)
    r = c.getresponse(); body = r.read()
    states[n] = json.loads(body).get("state") if r.status == 200 else r.status
bad = {n: s for n, s in states.items() if n not in (10, 20) and s != "done"}
assert not bad, f"jobs not done after the restart: {bad}"
assert states[10] == "leased", f"job 10 (its ack damaged) is {states[10]}"
assert states[20] == 404, f"job 20 (its record damaged) is {states[20]}"
print("ok: 39 of 40 jobs indexed, 38 done, job 10 leased again (its ack op damaged), "
      "job 20 unknown (its record damaged)")
PY
stop_server
