#!/usr/bin/env bash
# A 202 survives kill -9 (SPEC section 7). Three times on the same spool: concurrent clients fire
# signed requests at a server with durability fsync, the server is killed with SIGKILL while
# requests are in flight, the spool is checked offline (a torn tail is the only damage allowed),
# a new server recovers it and drains, and the dump must hold every job that got a 202, exactly
# once and byte for byte, and nothing that was never sent.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3 base64

CYCLES=${CRASH_CYCLES:-3}
CLIENTS=8
PER_CLIENT=100 # 800 requests planned per cycle
KILL_AFTER=520 # SIGKILL once this many requests have been sent, so about 280 never are

export GH_SECRET="crash-test-secret-$RANDOM$RANDOM"
export GL_TOKEN="unused-gitlab-token"
SPOOL="$WORKDIR/spool"
# write_config (lib.sh) puts both planes on port 0: server.listen and admin.listen "127.0.0.1:0".
write_config "$WORKDIR/config.yaml" "$SPOOL"
SENT="$WORKDIR/sent.jsonl" # one line per request sent: cycle, n, body, status, id
: >"$SENT"

# The clients: Python threads over http.client with keep-alive connections, HMAC computed with
# Python's own hmac module (not by portcullis). The thread that sends request KILL_AFTER kills
# the server right after writing it and before reading any answer, so at least that request,
# and usually one per client, is in flight when the server dies.
cat >"$WORKDIR/clients.py" <<'PY'
import base64, hashlib, hmac, http.client, json, os, random, signal, sys, threading

port, pid, cycle, clients, per_client, kill_after, out = sys.argv[1:]
port, pid, cycle = int(port), int(pid), int(cycle)
clients, per_client, kill_after = int(clients), int(per_client), int(kill_after)
secret = os.environ["GH_SECRET"].encode()

lock = threading.Lock()
started = 0
killed = threading.Event()
records = []
errors_before_kill = []


def make_body(n):
    rnd = random.Random(cycle * 1000003 + n)
    if n % 40 == 7:
        # Large records take longer to write, which widens the window for a torn tail.
        return b"\xff" + rnd.randbytes(rnd.randint(256 * 1024, 900 * 1024))
    if n % 5 == 0:
        # Binary: invalid UTF-8 on purpose, so the dump gives it back as base64.
        return b"\xff\xfe\x00" + rnd.randbytes(rnd.randint(1, 6000))
    pad = "ü€𝄞" * rnd.randint(0, 700)
    return json.dumps({"cycle": cycle, "n": n, "nonce": rnd.getrandbits(64), "pad": pad},
                      ensure_ascii=False).encode()


def client():
    global started
    conn = None
    for _ in range(per_client):
        if killed.is_set():
            break
        with lock:
            started += 1
            n = started
        body = make_body(n)
        sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
        rec = {"cycle": cycle, "n": n, "body": base64.b64encode(body).decode(),
               "status": None, "id": None}
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/webhooks/github", body=body, headers={
                "Content-Type": "application/octet-stream",
                "X-GitHub-Event": "push",
                "X-Hub-Signature-256": "sha256=" + sig,
            })
            if n == kill_after:
                os.kill(pid, signal.SIGKILL)
                killed.set()
            resp = conn.getresponse()
            answer = resp.read()
            rec["status"] = resp.status
            if resp.status == 202:
                rec["id"] = json.loads(answer)["id"]
            elif not killed.is_set():
                errors_before_kill.append(f"request {n}: status {resp.status}: {answer!r}")
        except Exception as e:  # the kill cuts connections; before it, nothing may fail
            rec["status"] = "error: " + type(e).__name__
            if conn is not None:
                conn.close()
            conn = None
            if not killed.is_set():
                errors_before_kill.append(f"request {n}: {type(e).__name__}: {e}")
        with lock:
            records.append(rec)
    if conn is not None:
        conn.close()


threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(out, "a") as f:
    for rec in sorted(records, key=lambda r: r["n"]):
        f.write(json.dumps(rec) + "\n")
accepted = sum(1 for r in records if r["status"] == 202)
in_flight = sum(1 for r in records if r["status"] != 202)
print(f"cycle {cycle}: sent {len(records)}, 202s {accepted}, "
      f"unanswered or cut by the kill {in_flight}, killed {killed.is_set()}")
if not killed.is_set():
    sys.exit(f"FAIL: cycle {cycle}: the server was never killed ({len(records)} sent)")
if errors_before_kill:
    sys.exit(f"FAIL: cycle {cycle}: failures before the kill: " + "; ".join(errors_before_kill[:5]))
PY

# Checks the dump against everything sent so far, and prints the counts.
cat >"$WORKDIR/check.py" <<'PY'
import base64, collections, json, sys

sent_file, dump_file, cycle = sys.argv[1], sys.argv[2], sys.argv[3]
sent = [json.loads(l) for l in open(sent_file)]
jobs = [json.loads(l) for l in open(dump_file, encoding="utf-8")]
problems = []


def body_of(job):
    if job["body_encoding"] == "utf8":
        return job["body"].encode("utf-8")
    if job["body_encoding"] == "base64":
        return base64.b64decode(job["body"], validate=True)
    problems.append(f"job {job['id']}: body_encoding {job['body_encoding']!r}")
    return b""


ids = collections.Counter(j["id"] for j in jobs)
for job_id, count in ids.items():
    if count > 1:
        problems.append(f"job id {job_id} appears {count} times in the dump")
by_id = {j["id"]: j for j in jobs}
bodies = collections.Counter(body_of(j) for j in jobs)
sent_bodies = {base64.b64decode(r["body"]): r for r in sent}

accepted = [r for r in sent if r["status"] == 202]
found = 0
for r in accepted:
    job = by_id.get(r["id"])
    if job is None:
        problems.append(f"cycle {r['cycle']} request {r['n']}: 202 with id {r['id']} "
                        "but the job is not in the spool")
        continue
    if body_of(job) != base64.b64decode(r["body"]):
        problems.append(f"job {r['id']}: stored body differs from the body sent")
        continue
    if job["route"] != "github" or job["source_ip"] != "127.0.0.1":
        problems.append(f"job {r['id']}: route {job['route']!r}, source_ip {job['source_ip']!r}")
        continue
    found += 1

# Jobs without a 202 are allowed (in flight at the kill), but each must be a body that was
# sent, and no body may be stored twice.
for body, count in bodies.items():
    if body not in sent_bodies:
        problems.append(f"the spool holds a body that was never sent ({len(body)} bytes)")
    elif count > 1:
        r = sent_bodies[body]
        problems.append(f"cycle {r['cycle']} request {r['n']}: body stored {count} times")

extra = len(jobs) - found
print(f"after cycle {cycle}: sent {len(sent)}, 202s {len(accepted)}, found {found} of them, "
      f"{extra} more stored without a 202 (in flight at a kill), {len(jobs)} jobs in the spool")
if problems:
    print("FAIL: " + "\nFAIL: ".join(problems[:20]), file=sys.stderr)
    sys.exit(1)
PY

# verify_after_kill CYCLE: `spool verify` may only report torn tails (exit 1); corrupt regions,
# bad headers or unreadable segments fail the test.
verify_after_kill() {
    local rc=0
    "$PORTCULLIS" spool verify --dir "$SPOOL" >"$WORKDIR/verify-kill-$1.txt" 2>&1 || rc=$?
    local total
    total=$(grep '^total:' "$WORKDIR/verify-kill-$1.txt" || true)
    case $rc in
    0) echo "cycle $1: spool verify after kill -9: intact" ;;
    1)
        [[ $total =~ \ 0\ corrupt\ regions.*\ 0\ bad\ headers,\ 0\ unreadable ]] ||
            fail "cycle $1: spool verify after kill -9 reports more than a torn tail: $(cat "$WORKDIR/verify-kill-$1.txt")"
        [[ $total =~ ([1-9][0-9]*)\ torn\ tail ]] ||
            fail "cycle $1: spool verify exited 1 without naming the damage: $(cat "$WORKDIR/verify-kill-$1.txt")"
        echo "cycle $1: spool verify after kill -9: ${BASH_REMATCH[1]} torn tail(s), nothing else"
        ;;
    *) fail "cycle $1: spool verify after kill -9 exited $rc: $(cat "$WORKDIR/verify-kill-$1.txt")" ;;
    esac
}

# A SIGKILL rarely lands inside a write, so the last cycle also leaves what one would: the
# start of a record cut short at the end of each shard's newest segment (at the end of its
# records, should the segment have preallocated zeros after them). Recovery must cut it and
# keep every record before it.
tear_tails() {
    "$PORTCULLIS" spool verify --dir "$SPOOL" >"$WORKDIR/verify-before-tear.txt" 2>&1 || true
    python3 - "$SPOOL" "$WORKDIR/verify-before-tear.txt" <<'TEAR'
import os, re, sys
spool, report = sys.argv[1], open(sys.argv[2]).read().splitlines()
# "shard-0/0000000000000002.seg: ..." then, maybe, "  preallocated space at offset N: ..."
zeros_at, current = {}, None
for line in report:
    m = re.match(r"^(shard-\d+/\d+\.seg): ", line)
    if m:
        current = m.group(1)
    m = re.match(r"^  preallocated space at offset (\d+)", line)
    if m and current:
        zeros_at[current] = int(m.group(1))
shards = sorted(d for d in os.listdir(spool) if d.startswith("shard-"))
if not shards:
    sys.exit("FAIL: no shard directory in the spool")
for shard in shards:
    segs = sorted(f for f in os.listdir(os.path.join(spool, shard)) if f.endswith(".seg"))
    if not segs:
        sys.exit(f"FAIL: no segment in {shard}")
    name = f"{shard}/{segs[-1]}"
    with open(os.path.join(spool, name), "r+b") as f:
        f.seek(zeros_at.get(name, os.path.getsize(os.path.join(spool, name))))
        f.write(b"\x01\x02\x03 a record cut short")
TEAR
}

for ((cycle = 1; cycle <= CYCLES; cycle++)); do
    start_server "$WORKDIR/config.yaml"
    echo "cycle $cycle: server $SERVER_PID on port $PORT (bash reports its kill -9 as 'Killed')"
    timeout 240 python3 "$WORKDIR/clients.py" "$PORT" "$SERVER_PID" "$cycle" "$CLIENTS" \
        "$PER_CLIENT" "$KILL_AFTER" "$SENT" ||
        fail "cycle $cycle: the clients failed (see above)"
    kill9_server
    [[ $SERVER_STATUS == 137 ]] ||
        fail "cycle $cycle: server status after SIGKILL: expected 137, got $SERVER_STATUS"

    verify_after_kill "$cycle"
    if ((cycle == CYCLES)); then
        tear_tails
        verify_after_kill "$cycle-torn"
        grep -q '^total:.* [1-9][0-9]* torn tail' "$WORKDIR/verify-kill-$cycle-torn.txt" ||
            fail "spool verify did not see the torn tails: $(cat "$WORKDIR/verify-kill-$cycle-torn.txt")"
    fi

    # Recovery: a new server on the same spool starts, still takes requests, and drains.
    start_server "$WORKDIR/config.yaml"
    printf '{"after_recovery":%d}' "$cycle" >"$WORKDIR/recovery-$cycle.json"
    sig=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/recovery-$cycle.json")
    post /webhooks/github "$WORKDIR/recovery-$cycle.json" -H "X-Hub-Signature-256: sha256=$sig"
    expect_queued "cycle $cycle: request after recovery"
    recovery_id=$JOB_ID
    stop_server

    "$PORTCULLIS" spool verify --dir "$SPOOL" >"$WORKDIR/verify-$cycle.txt" 2>&1 ||
        fail "cycle $cycle: spool verify after recovery and a clean stop: $(cat "$WORKDIR/verify-$cycle.txt")"
    spool_dump "$SPOOL" "$WORKDIR/dump-$cycle.jsonl"
    check_job "$WORKDIR/dump-$cycle.jsonl" "$recovery_id" github "$WORKDIR/recovery-$cycle.json"
    # From now on the recovery request is one more 202 the spool must keep.
    printf '{"cycle": %d, "n": 0, "body": "%s", "status": 202, "id": "%s"}\n' "$cycle" \
        "$(base64 -w 0 "$WORKDIR/recovery-$cycle.json")" "$recovery_id" >>"$SENT"
    python3 "$WORKDIR/check.py" "$SENT" "$WORKDIR/dump-$cycle.jsonl" "$cycle"
done

echo "crash_durability: ok ($CYCLES kill -9 cycles, every 202 found exactly once)"
