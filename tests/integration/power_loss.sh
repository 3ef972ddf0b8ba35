#!/usr/bin/env bash
# Power loss, not only kill -9 (issue 11): kill -9 keeps the page cache, so crash_durability and
# crash_pull cannot show that a 202 or an answered ack was really on the disk. Here the spool and
# the ledger live on lazyfs.py, a FUSE file system that keeps everything not yet fsynced in its
# own memory (directory entries too, until their directory is fsynced). A power cut is SIGKILL
# of that process, then of portcullis; the file system is mounted again from its durable image,
# portcullis restarts on it, and the test checks what survived.
#
#   fsync:      CUTS (>= 5) cuts under load (4 producers posting signed GitHub webhooks, a
#               consumer leasing and acking): 0 jobs answered 202 and 0 answered acks may be lost.
#   batch:      the same load; the jobs lost must all have been answered within the last
#               BATCH_BOUND_MS before the cut (the 10 ms window plus the time a sync takes
#               here); the figures are printed.
#   batch-idle: two jobs back to back, then nothing for 3 windows (30 ms), then the cut: the
#               second must survive, traffic or not.
#   none:       must lose jobs, or this file system does not drop unsynced data and the test
#               proves nothing.
#
# Segments are 1 MiB, so that the load rotates them several times a cycle and cuts land while
# the next segment is being prepared or renamed (it must never cost an answered job).
#
# Skipped (77) where FUSE cannot be mounted: no /dev/fuse, no fusepy, no fusermount3, or a
# mount that fails (a container without CAP_SYS_ADMIN).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3 sha256sum

CUTS=${POWER_CUTS:-5}
BATCH_CUTS=${POWER_BATCH_CUTS:-2}
BATCH_BOUND_MS=${POWER_BATCH_BOUND_MS:-30}
((CUTS >= 5)) || fail "POWER_CUTS must be at least 5 (got $CUTS)"
((BATCH_CUTS >= 1)) || fail "POWER_BATCH_CUTS must be at least 1 (got $BATCH_CUTS)"

[[ -c /dev/fuse ]] || skip "/dev/fuse is missing: no FUSE here"
if command -v fusermount3 >/dev/null 2>&1; then
    UNMOUNT=(fusermount3 -u -z)
elif command -v umount >/dev/null 2>&1; then
    UNMOUNT=(umount -l)
else
    skip "neither fusermount3 nor umount is installed"
fi
# Debian's python3-fusepy names the module fusepy (pip's: fuse) and installs it for Debian's own
# python3, which may not be the first python3 on PATH.
FUSE_PYTHON=""
for py in python3 /usr/bin/python3; do
    if "$py" -c 'import importlib, sys
for m in ("fusepy", "fuse"):
    try:
        if hasattr(importlib.import_module(m), "FUSE"): sys.exit(0)
    except Exception: pass
sys.exit(1)' 2>/dev/null; then
        FUSE_PYTHON=$py
        break
    fi
done
[[ -n $FUSE_PYTHON ]] || skip "fusepy is not installed (Debian: python3-fusepy; scripts/deps --test)"

export GH_SECRET="power-loss secret 4c1e"
TOKEN=$("$PORTCULLIS" token new | sed -n 's/^token: *//p')
MNT="$WORKDIR/mnt"
mkdir -p "$MNT"
LAZYFS_PID=""
LAZYFS_JOB=""
LAZYFS_LOG="$WORKDIR/lazyfs.log"
MOUNTED=0

# mount_lazyfs DISK [skip]: mounts DISK's durable image on MNT and waits (up to 10 s) for it.
mount_lazyfs() {
    local disk=$1
    local on_failure=${2:-fail}
    rm -f "$WORKDIR/lazyfs.pid"
    : >"$LAZYFS_LOG"
    # The wrapper reaps lazyfs when it is killed, so that bash reports no "Killed" job.
    (
        "$FUSE_PYTHON" "$here/lazyfs.py" "$disk" "$MNT" 2>"$LAZYFS_LOG" &
        echo $! >"$WORKDIR/lazyfs.pid"
        wait $!
    ) 2>/dev/null &
    LAZYFS_JOB=$!
    LAZYFS_PID=""
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -n $LAZYFS_PID || ! -s $WORKDIR/lazyfs.pid ]] || LAZYFS_PID=$(cat "$WORKDIR/lazyfs.pid")
        if [[ -n $LAZYFS_PID ]] && grep -qF " $MNT fuse" /proc/mounts; then
            MOUNTED=1
            return 0
        fi
        if ! kill -0 "$LAZYFS_JOB" 2>/dev/null; then
            wait "$LAZYFS_JOB" || true
            LAZYFS_JOB=""
            "$on_failure" "cannot mount lazyfs on $MNT: $(grep -v -m 2 '^Traceback\|^ ' "$LAZYFS_LOG")"
        fi
        sleep 0.05
    done
    "$on_failure" "lazyfs did not mount $MNT within 10 s"
}

# stop_lazyfs: SIGKILL to lazyfs if it still runs (its wrapper still waits for it), then detaches
# the mount. Whatever it held in memory is gone.
stop_lazyfs() {
    if [[ -n $LAZYFS_JOB ]]; then
        if [[ -n $LAZYFS_PID ]] && kill -0 "$LAZYFS_JOB" 2>/dev/null; then
            kill -9 "$LAZYFS_PID" 2>/dev/null || true
        fi
        wait "$LAZYFS_JOB" || true
    fi
    LAZYFS_JOB=""
    LAZYFS_PID=""
    if ((MOUNTED)) || grep -qF " $MNT fuse" /proc/mounts; then
        "${UNMOUNT[@]}" "$MNT" 2>/dev/null || true
    fi
    MOUNTED=0
}

cleanup_lazyfs() {
    if [[ -n $SERVER_PID ]]; then
        kill -9 "$SERVER_PID" 2>/dev/null || true
        { wait "$SERVER_PID"; } 2>/dev/null || true
        SERVER_PID=""
    fi
    stop_lazyfs
}
at_exit cleanup_lazyfs

# One cycle's clients: 4 producers posting signed GitHub webhooks and a consumer leasing and
# acking, for DURATION seconds; then the cut: SIGKILL to lazyfs (the power goes: from here on no
# fsync can succeed, so every 202 or ack answered at any time was made durable before), and
# "cut" on stdout, upon which the test kills portcullis; the answers that arrive meanwhile are
# recorded too. JSON lines: {"sent": id, "sha": sha256 of the body, "t": monotonic s} per 202,
# {"acked": id, "t": ..} per id an answered ack settled, {"cut": t} once.
cat >"$WORKDIR/load.py" <<'PY'
import hashlib, hmac, http.client, json, os, random, signal, sys, threading, time, uuid
port, admin, token, secret = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
pattern, duration, lazyfs_pid, out = sys.argv[5], float(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
lock = threading.Lock()
log = open(out, "a")
stop = threading.Event()
def note(**kv):
    with lock:
        log.write(json.dumps(kv) + "\n")
def post(c, p, n):
    """One signed webhook; False once the server is gone."""
    body = json.dumps({"producer": p, "n": n, "pad": os.urandom(random.randint(16, 400)).hex()}).encode()
    sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
    try:
        c.request("POST", "/webhooks/github", body=body, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": "sha256=" + sig})
        r = c.getresponse()
        answer = r.read()
    except Exception:
        return False
    if r.status == 202:
        note(sent=json.loads(answer)["id"], sha=hashlib.sha256(body).hexdigest(), t=time.monotonic())
    return True
def producer(p):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for n in range(1_000_000):
        if stop.is_set() or not post(c, p, n):
            return
def consumer():
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    for _ in range(1_000_000):
        if stop.is_set():
            return
        try:
            c.request("POST", "/v1/lease", body=json.dumps({"route": "github", "max": 20, "wait": "1s", "visibility": "1h"}), headers=h)
            r = c.getresponse()
            jobs = json.loads(r.read()).get("jobs", [])
            if not jobs:
                continue
            c.request("POST", "/v1/ack", body=json.dumps({"ids": [j["id"] for j in jobs]}), headers=h)
            r = c.getresponse()
            answer = json.loads(r.read())
            if r.status == 200:
                t = time.monotonic()
                for i in answer["settled"]:
                    note(acked=i, t=t)
        except Exception:
            return
threads = []
if pattern == "load":
    threads = [threading.Thread(target=producer, args=(p,), daemon=True) for p in range(4)]
    threads.append(threading.Thread(target=consumer, daemon=True))
    for t in threads: t.start()
    time.sleep(duration)
else:
    # idle: one job, a pause longer than the batch window (so that its sync comes at once), two
    # jobs back to back (the last written just after that sync), then nothing for DURATION
    # seconds before the cut.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    post(c, 0, 0)
    time.sleep(0.05)
    post(c, 0, 1)
    post(c, 0, 2)
    time.sleep(duration)
cut = time.monotonic()
os.kill(lazyfs_pid, signal.SIGKILL)
print("cut", flush=True)
stop.set()
for t in threads: t.join(15)
note(cut=cut)
log.close()
PY

# check.py NAME MODE CYCLE LOG DUMP ADMIN_PORT TOKEN STATE: after the restart that follows cut CYCLE,
# compares what the clients were promised (LOG, every cycle so far) with the disk (DUMP, taken
# before portcullis restarted) and with the job table (GET /v1/jobs/{id}). STATE keeps the ids
# lost at earlier cuts (batch and none only). Prints the cycle's figures; exits 1 when fsync lost
# anything, when batch lost a job answered before its window, or when none lost nothing.
cat >"$WORKDIR/check.py" <<'PY'
import base64, concurrent.futures, hashlib, http.client, json, os, sys
name, mode, cycle, log_path, dump_path, admin, token, state_path = sys.argv[1:9]
cycle, admin = int(cycle), int(admin)
bound_ms = float(os.environ.get("BATCH_BOUND_MS", "60"))
sent, acked, cuts = {}, {}, []
for line in open(log_path):
    e = json.loads(line)
    if "sent" in e: sent[e["sent"]] = (e["sha"], len(cuts))
    elif "acked" in e: acked.setdefault(e["acked"], len(cuts))
    elif "cut" in e: cuts.append(e["cut"])
assert len(cuts) == cycle, f"{len(cuts)} cuts logged, expected {cycle}"
cut = cuts[-1]
sent_t = {}
for line in open(log_path):
    e = json.loads(line)
    if "sent" in e: sent_t[e["sent"]] = e["t"]
on_disk = {}
for line in open(dump_path):
    if line.strip():
        j = json.loads(line)
        body = j["body"].encode() if j["body_encoding"] == "utf8" else base64.b64decode(j["body"])
        on_disk[j["id"]] = hashlib.sha256(body).hexdigest()
state = json.load(open(state_path)) if os.path.exists(state_path) else {"lost": []}
known_lost = set(state["lost"])
errors = []
this = [i for i, (_, c) in sent.items() if c == cycle - 1]
lost_now = [i for i in this if i not in on_disk]
lost_again = [i for i, (_, c) in sent.items() if c < cycle - 1 and i not in on_disk and i not in known_lost]
corrupt = [i for i, (sha, _) in sent.items() if i in on_disk and on_disk[i] != sha]
if lost_again:
    errors.append(f"{len(lost_again)} jobs that survived an earlier cut are gone now, e.g. {lost_again[:3]}")
if corrupt:
    errors.append(f"{len(corrupt)} jobs have another body than was sent, e.g. {corrupt[:3]}")
h = {"Authorization": "Bearer " + token}
def states(ids):
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=30)
    out = []
    for i in ids:
        c.request("GET", "/v1/jobs/" + i, headers=h)
        r = c.getresponse()
        got = json.loads(r.read())
        out.append((i, got.get("state") if r.status == 200 else f"HTTP {r.status}"))
    return out
# Every ack answered so far, on 8 connections at once (one at a time, the control plane's loop
# turns are the bottleneck).
ids = list(acked)
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    answers = [a for part in pool.map(states, [ids[k::8] for k in range(8)]) for a in part]
acks_lost, acks_of_lost_jobs, acks_never_202 = [], 0, 0
for i, st in answers:
    if st == "done":
        continue
    if i not in sent:
        # Leased before its own 202 went out (the control plane reads what the shards wrote
        # before their fdatasync completes), and lost with the rest of that group: no 202 was
        # promised for it, so the producer retries it.
        acks_never_202 += 1
    elif i not in on_disk:
        acks_of_lost_jobs += 1
    else:
        acks_lost.append((i, st))
state["lost"] = sorted(known_lost | set(lost_now))
json.dump(state, open(state_path, "w"))
this_acks = sum(1 for a in acked.values() if a == cycle - 1)
window = [i for i in this if sent_t[i] >= cut - 0.010]
after_cut = sum(1 for i in this if sent_t[i] > cut)
ages = sorted((cut - sent_t[i]) * 1000 for i in lost_now)
line = (f"{name} cut {cycle}: {len(this)} jobs answered 202 ({after_cut} after the cut), "
        f"{this_acks} acks answered; lost {len(lost_now)} jobs, {len(acks_lost)} acks "
        f"({acks_of_lost_jobs} acks of lost jobs, {acks_never_202} acked jobs never answered 202 and gone); "
        f"{len(window)} jobs answered in the last 10 ms before the cut or after it")
if ages:
    line += f"; lost jobs answered {ages[0]:.1f}..{ages[-1]:.1f} ms before the cut"
print(line, flush=True)
if acks_lost:
    errors.append(f"{len(acks_lost)} answered acks are not done after the cut, e.g. {acks_lost[:3]}")
if mode == "fsync":
    if lost_now:
        errors.append(f"{len(lost_now)} jobs answered 202 are gone after the cut, e.g. {lost_now[:3]}")
    if acks_of_lost_jobs:
        errors.append(f"{acks_of_lost_jobs} answered acks are of jobs gone after the cut")
elif mode == "batch":
    # Negative ages are answers that arrived after the cut: written before it, not yet synced.
    late = [a for a in ages if a > bound_ms]
    if late:
        errors.append(f"{len(late)} lost jobs were answered more than {bound_ms} ms before the cut "
                      f"(up to {late[-1]:.1f} ms)")
with open(state_path + ".figures", "a") as f:
    f.write(json.dumps({"name": name, "mode": mode, "cycle": cycle, "jobs": len(this), "acks": this_acks,
                        "lost": len(lost_now), "window_10ms": len(window),
                        "max_age_ms": ages[-1] if ages else None}) + "\n")
for e in errors:
    print(f"FAIL: {name} cut {cycle}: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

# run_phase NAME MODE CUTS PATTERN BOUND_MS: a fresh disk, the spool directory on it made
# durable first (as a package would install it), then CUTS cycles of clients (load.py PATTERN),
# cut, remount, dump, restart, check.
run_phase() {
    local name=$1 mode=$2 cuts=$3 pattern=$4 bound_ms=$5
    local disk="$WORKDIR/disk-$name"
    local log="$WORKDIR/seen-$name.jsonl"
    local state="$WORKDIR/state-$name.json"
    local config="$WORKDIR/config-$name.yaml"
    mkdir -p "$disk"
    : >"$log"
    mount_lazyfs "$disk"
    "$FUSE_PYTHON" -c 'import os, sys
os.mkdir(sys.argv[1] + "/spool")
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
os.fsync(fd)' "$MNT"
    cat >"$config" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $MNT/spool, durability: $mode, segment_size: 1MiB}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
tokens:
  consumer: {sha256: "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)", scopes: ["jobs:consume:github", "jobs:read:github"]}
EOF
    start_server "$config"
    local cycle load rc=0
    for ((cycle = 1; cycle <= cuts; cycle++)); do
        local duration=0.03 # idle: 3 batch windows
        [[ $pattern == idle ]] ||
            duration=$(python3 -c 'import random; print(round(random.uniform(0.8, 2.0), 3))')
        exec {load}< <(python3 "$WORKDIR/load.py" "$PORT" "$ADMIN_PORT" "$TOKEN" "$GH_SECRET" \
            "$pattern" "$duration" "$LAZYFS_PID" "$log")
        local load_pid=$! said=""
        read -r -t 30 -u "$load" said || true
        [[ $said == cut ]] || fail "load.py did not cut the power within 30 s"
        # Right after the power: portcullis dies too (waited for at once, so bash reports no
        # "Killed" job), then the dead mount goes.
        kill -9 "$SERVER_PID"
        { wait "$SERVER_PID"; } 2>/dev/null || true
        SERVER_PID=""
        wait "$load_pid" || fail "load.py failed"
        exec {load}<&-
        stop_lazyfs
        mount_lazyfs "$disk"
        spool_dump "$MNT/spool" "$WORKDIR/dump-$name-$cycle.jsonl"
        start_server "$config"
        BATCH_BOUND_MS=$bound_ms python3 "$WORKDIR/check.py" "$name" "$mode" "$cycle" "$log" \
            "$WORKDIR/dump-$name-$cycle.jsonl" "$ADMIN_PORT" "$TOKEN" "$state" || rc=1
    done
    stop_server
    stop_lazyfs
    return "$rc"
}

# Can FUSE be mounted here at all? A failure is a skip, not a failure.
mkdir -p "$WORKDIR/disk-probe"
mount_lazyfs "$WORKDIR/disk-probe" skip
stop_lazyfs

failed=0
run_phase fsync fsync "$CUTS" load 0 || failed=1
run_phase batch batch "$BATCH_CUTS" load "$BATCH_BOUND_MS" || failed=1
run_phase batch-idle batch 3 idle 20 || failed=1
run_phase none none 1 load 0 || true
none_lost=$(python3 -c 'import json, sys
print(sum(json.loads(l)["lost"] for l in open(sys.argv[1])))' "$WORKDIR/state-none.json.figures")
if ((none_lost == 0)); then
    echo "FAIL: durability none lost no job at a power cut: lazyfs kept unsynced data" >&2
    failed=1
fi
python3 - "$WORKDIR" <<'PY'
import json, sys
for name in ("fsync", "batch", "batch-idle", "none"):
    rows = [json.loads(l) for l in open(f"{sys.argv[1]}/state-{name}.json.figures")]
    ages = [r["max_age_ms"] for r in rows if r["max_age_ms"] is not None]
    print(f"{name}: {len(rows)} cuts, {sum(r['jobs'] for r in rows)} jobs answered 202, "
          f"{sum(r['acks'] for r in rows)} acks answered, {sum(r['lost'] for r in rows)} jobs lost"
          + (f" (the oldest answered {max(ages):.1f} ms before its cut)" if ages else "")
          + f", {sum(r['window_10ms'] for r in rows)} jobs answered in the 10 ms before a cut or after it")
PY
((failed == 0)) || fail "jobs or acks promised before a power cut were lost (see above)"
echo "ok: power loss"
