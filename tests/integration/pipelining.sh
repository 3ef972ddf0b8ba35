#!/usr/bin/env bash
# Pipelined requests are never dropped: a client sends many signed 20 KB webhooks in one send
# on one keep-alive connection and gets exactly one answer per request, in order (each 202 with
# its own job id), and the spool holds exactly those jobs. A refusal in the middle of the
# pipeline (401) does not stop the rest; a malformed request at its end, or the client's
# half-close, ends the connection only after the answers of the requests before it. A client
# that pipelines 200 requests and reads nothing for 2 s does not make the server buffer them
# (its RSS stays flat: the server stops reading while answers are pending), and then gets all
# 200 answers; 40 pipelines at once share the shard's receive buffers, and 2,048 requests at
# once (more than one group commit holds) are all accepted. A client that resets
# mid-pipeline is logged and counted, with the job whose answer it never got named.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3

export GH_SECRET="pipelining-secret-$RANDOM$RANDOM"
SPOOL="$WORKDIR/spool"
# One shard: the RSS check compares the same receive ring and buffer pool before and after.
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 1}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
EOF
# The slow reader's RSS bound: 5 MiB. A server that buffers what it cannot answer yet grew by
# +7.8 to +12.5 MiB here; one that does not grows by about 0.3 MiB, but the whole process's RSS
# now and then takes a step of its own while the test runs (+2.6 MiB once in 6 runs, with the
# receive buffers populated at start; before that they were faulted in as first used: +4.1 MiB).
# Under AddressSanitizer freed memory sits in its quarantine and every byte touched brings
# shadow memory, so the quarantine is turned off for this server and the bound is 6 MiB.
export RSS_LIMIT_KIB=5120
if "$PORTCULLIS" version | grep 'sanitize=address' >/dev/null; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    RSS_LIMIT_KIB=6144
fi
start_server "$WORKDIR/config.yaml"

# Each accepted job as "id tag n": the spool must hold exactly these, each with its own body.
JOBS="$WORKDIR/jobs.txt"
PYTHONPATH="$here" python3 - "$PORT" "$SERVER_PID" "$JOBS" <<'PY' || fail "pipelining"
import hashlib, hmac, json, os, socket, struct, sys, threading, time, uuid
from http_client import ProtocolError, Reader

port, server_pid, jobs_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
secret = os.environ["GH_SECRET"].encode()
jobs = open(jobs_file, "w")
seen_ids = set()
failed = []


class Failed(Exception):
    pass


def fail(msg):
    raise Failed(msg)


def scenario(f):
    """Runs one case; a failure is reported and the next case still runs."""
    try:
        f()
    except Failed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        failed.append(f.__name__)
    return f


def webhook(tag, n, signed=True, size=20000):
    """A GitHub webhook of about size bytes; its body names its tag and position."""
    body = json.dumps({"tag": tag, "n": n, "pad": "p" * size}).encode()
    sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not signed:  # the right shape, the last digit changed
        sig = sig[:-1] + ("1" if sig[-1] == "0" else "0")
    return (b"POST /webhooks/github HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Event: push\r\nX-GitHub-Delivery: " + str(uuid.uuid4()).encode() +
            b"\r\nX-Hub-Signature-256: sha256=" + sig.encode() +
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def runs(statuses):
    """[202, 202, 401, 202] as "202x2 401 202": a failure stays readable with 200 answers."""
    out = []
    for st in statuses:
        if out and out[-1][0] == st:
            out[-1][1] += 1
        else:
            out.append([st, 1])
    return " ".join(f"{st}x{k}" if k > 1 else str(st) for st, k in out) or "none"


def rss_kib():
    for line in open(f"/proc/{server_pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    fail("no VmRSS in /proc/PID/status")


def pipeline(name, requests, expected, close_at_end=False, quiet_s=0.0, on_quiet=None,
             half_close=False):
    """Sends every request in one send (from a thread, so that a server that stops reading
    cannot deadlock the client), then half-closes if asked, optionally reads nothing for
    quiet_s, then reads one answer per expected status. Returns the answers."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = b"".join(requests)
    send_error = []

    def send():
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            send_error.append(e)

    sender = threading.Thread(target=send)
    sender.start()
    if quiet_s:
        on_quiet(quiet_s)
    reader = Reader(s)
    deadline = time.monotonic() + 120
    got = []
    try:
        while len(got) < len(expected):
            r = reader.read_response(deadline)
            if r is None:
                break
            got.append(r)
    except ProtocolError as e:
        fail(f"{name}: unparsable answer after {len(got)} answers: {e}")
    sender.join(timeout=30)
    statuses = [r.status for r in got]
    if statuses != expected:
        end = ("was reset" if reader.reset else "was closed") if reader.eof else "is open"
        first = next(i for i in range(len(expected))
                     if i >= len(statuses) or statuses[i] != expected[i])
        fail(f"{name}: {len(requests)} pipelined requests, expected {len(expected)} answers, "
             f"got {len(got)} ({runs(statuses)}), then the connection {end}; the first one "
             f"missing or wrong is answer {first} (expected {expected[first]})"
             f"{'; the send failed: ' + str(send_error[0]) if send_error else ''}")
    if send_error:
        fail(f"{name}: the server answered everything but the send failed: {send_error[0]}")
    if close_at_end:
        if not reader.wait_eof(time.monotonic() + 10):
            fail(f"{name}: the connection stays open after the last answer")
        if reader.buf:
            fail(f"{name}: bytes after the last answer: {reader.buf[:200]!r}")
    else:
        # Still open, and nothing more than one answer per request.
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        r = reader.read_response(time.monotonic() + 10)
        if r is None or r.status != 200 or r.body != b"ok":
            fail(f"{name}: after the pipeline, GET /healthz got "
                 f"{r.describe() if r else 'nothing'} (an extra answer, or the connection closed)")
    s.close()
    return got


def record_accepted(name, tag, answers, accepted):
    """accepted: the positions answered 202; each answer has its own, new job id."""
    for n in accepted:
        r = answers[n]
        body = json.loads(r.body)
        if body.get("status") != "queued" or not body.get("id"):
            fail(f"{name}: answer {n}: {r.describe()}")
        if body["id"] in seen_ids:
            fail(f"{name}: answer {n}: job id {body['id']} given twice")
        seen_ids.add(body["id"])
        jobs.write(f"{body['id']} {tag} {n}\n")
    jobs.flush()


def sequential(name, tag, count, size):
    """One request at a time on one keep-alive connection, each answer read before the next."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    reader = Reader(s)
    answers = []
    for n in range(count):
        s.sendall(webhook(tag, n, size=size))
        r = reader.read_response(time.monotonic() + 30)
        if r is None or r.status != 202:
            fail(f"{name}: request {n}: {r.describe() if r else 'no answer'}")
        answers.append(r)
    s.close()
    record_accepted(name, tag, answers, range(count))


# The slow reader first, before anything was pipelined, after a warm-up that pipelines
# nothing, so that the RSS measured next is the steady state of a server that never buffered
# pipelined requests: one request at a time, 256 KB each so that receives fill whole buffers,
# until every page of the receive ring (4 MiB) is in use.
@scenario
def warm_up():
    sequential("warm-up", "warm", 24, 256 * 1024)


# A slow reader: 200 pipelined webhooks (4 MB), nothing read for 2 s. The server may hold a
# bounded amount of them (64 KiB and a receive buffer); buffering the 4 MB would add at least
# 4 MiB of RSS (today's code without its cut-off: +7.8 MiB). RSS is the whole process's, and
# the control plane reads the jobs the shard queues from the spool in bursts as large as the
# backlog since its last look, allocating as it goes (one job in ten queued moved RSS by up to
# 4 MiB in one run): so every webhook here is refused (401, after its body is read, on the same
# connection), which costs the shard the same reading and stores nothing. The other scenarios
# check that pipelined jobs are queued and answered.
@scenario
def slow_reader():
    before = rss_kib()
    peak = [before]

    def quiet(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak[0] = max(peak[0], rss_kib())
            time.sleep(0.02)

    reqs = [webhook("slow", n, signed=False) for n in range(200)]
    expected = [401] * 200
    pipeline("slow reader", reqs, expected, quiet_s=2.0, on_quiet=quiet)
    peak[0] = max(peak[0], rss_kib())
    growth = peak[0] - before
    print(f"slow reader: server RSS {before} KiB before, peak {peak[0]} KiB (+{growth} KiB) "
          f"while 4 MB were pipelined and unread")
    limit = int(os.environ["RSS_LIMIT_KIB"])
    if growth > limit:
        fail(f"slow reader: the server's RSS grew by {growth} KiB (limit {limit} KiB): it "
             f"buffers what it cannot answer yet")


@scenario
def pipelined_20_and_100():
    for count in (20, 100):
        name = f"{count} pipelined"
        tag = f"p{count}"
        answers = pipeline(name, [webhook(tag, n) for n in range(count)], [202] * count)
        record_accepted(name, tag, answers, range(count))


# A refusal in the middle (a wrong signature, found once the body is in) is answered 401 in its
# place; the requests after it are still read and queued.
@scenario
def refused_in_the_middle():
    reqs = [webhook("mixed", n, signed=(n != 4)) for n in range(10)]
    expected = [401 if n == 4 else 202 for n in range(10)]
    answers = pipeline("401 in the middle", reqs, expected)
    if answers[4].body != b'{"error":"unauthorized"}':
        fail(f"401 in the middle: {answers[4].describe()}")
    record_accepted("401 in the middle", "mixed", answers, [n for n in range(10) if n != 4])


# A malformed request at the end: the five before it are answered first, then its 400, then
# the server closes.
@scenario
def malformed_at_the_end():
    reqs = [webhook("malformed", n) for n in range(5)]
    reqs.append(b"POST /webhooks/github HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
    answers = pipeline("malformed at the end", reqs, [202] * 5 + [400], close_at_end=True)
    record_accepted("malformed at the end", "malformed", answers, range(5))


# The client half-closes after its pipeline: every request it sent is still answered, then the
# server closes.
@scenario
def half_close():
    answers = pipeline("half-close", [webhook("half", n) for n in range(10)], [202] * 10,
                       close_at_end=True, half_close=True)
    record_accepted("half-close", "half", answers, range(10))


def many_pipelines(label, tag, connections, count, size):
    """Pipelines of count webhooks on each of connections connections, all sent at once (the
    threads start together); every one gets all its answers, 202 in order."""
    results = {}
    start = threading.Barrier(connections)

    def one(k):
        try:
            start.wait()
            results[k] = pipeline(f"{label} {k}",
                                  [webhook(f"{tag}{k}", n, size=size) for n in range(count)],
                                  [202] * count)
        except Failed as e:
            results[k] = e

    threads = [threading.Thread(target=one, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [str(r) for r in results.values() if isinstance(r, Failed)]
    if errors:
        fail(f"{label}: {len(errors)} of {connections} connections failed, e.g. {errors[0]}")
    for k, answers in results.items():
        record_accepted(f"{label} {k}", f"{tag}{k}", answers, range(count))


# Pipelines on 40 connections at once (8 MB): every connection draws receive buffers from the
# shard's one ring, and each gets all its answers, in order.
@scenario
def concurrent_pipelines():
    many_pipelines("concurrent pipelines", "c", 40, 10, 20000)


# More pipelined requests at once than one group commit holds (1,024 records, the most one
# writev takes): 128 connections send 16 small webhooks each in one send, 2,048 in all. The
# records the spool has no room for wait for the next group; none is refused with a 503.
@scenario
def burst_past_a_group():
    many_pipelines("burst past a group", "b", 128, 16, 64)


# A client that resets its connection right after sending a pipeline gets nothing, and the
# server says so: the close is logged and counted, and the job that was being written (or
# whose 202 failed) is named in the log line (checked against the spool below).
@scenario
def reset_mid_pipeline():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"".join(webhook("reset", n) for n in range(5)))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


if failed:
    sys.exit(1)
PY

# The reset is logged (the only close for a reason here) before the server stops.
wait_for_log '"msg":"connection closed"' 1
stop_server

# The stopped line: the slow reader was paused (backpressure), no pipeline was cut, and the
# one connection error is the reset.
python3 - "$SERVER_LOG" <<'PY' || fail "stopped line"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if '"msg":"stopped"' in l]
s = lines[-1]
print("stopped: " + ", ".join(f"{k} {s[k]}" for k in ("jobs_queued", "pipeline_pauses",
      "pipeline_overflows", "connection_errors", "unanswered_jobs", "recv_no_buffers")))
assert s["pipeline_pauses"] > 0, "no connection was ever paused: nothing held the pipelines back"
assert s["pipeline_overflows"] == 0, "a pipelined connection was cut"
assert s["connection_errors"] == 1, "connection errors other than the one reset"
PY

spool_dump "$SPOOL" "$WORKDIR/dump.jsonl"
python3 - "$WORKDIR/dump.jsonl" "$JOBS" "$SERVER_LOG" <<'PY' ||
import json, sys
dump = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
want = {}
for line in open(sys.argv[2]):
    job_id, tag, n = line.split()
    want[job_id] = (tag, int(n))
closes = [json.loads(l) for l in open(sys.argv[3]) if '"msg":"connection closed"' in l]
if len(closes) != 1 or closes[0].get("reason") not in ("recv_failed", "send_failed"):
    print(f"FAIL: expected one 'connection closed' line for the reset, got {closes}",
          file=sys.stderr)
    sys.exit(1)
named = closes[0].get("unanswered_job")
stopped = [json.loads(l) for l in open(sys.argv[3]) if '"msg":"stopped"' in l][-1]
ids = [j["id"] for j in dump]
if len(ids) != len(set(ids)):
    print(f"FAIL: the spool holds a job id twice", file=sys.stderr)
    sys.exit(1)
def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)
# The reset connection's jobs: its requests are parsed and handed to the spool in the order
# sent, so the jobs are a prefix of its pipeline. Those whose 202 was written into the socket
# before the reset came were answered; from the oldest one whose answer never left (named in
# the close line) on, every job is counted in unanswered_jobs: still being written, or its 202
# owed or in flight when the connection went.
reset = sorted((json.loads(j["body"])["n"], j["id"]) for j in dump
               if json.loads(j["body"])["tag"] == "reset")
if [n for n, _ in reset] != list(range(len(reset))):
    fail(f"the reset connection's jobs are not a prefix of its pipeline: {reset}")
if named is None:
    unanswered = []
else:
    positions = [k for k, (_, i) in enumerate(reset) if i == named]
    if not positions:
        fail(f"the close line names job {named}, not one of the reset connection's: {reset}")
    unanswered = reset[positions[0]:]
if stopped["unanswered_jobs"] != len(unanswered):
    fail(f"unanswered_jobs {stopped['unanswered_jobs']}, but from the job the close line "
         f"names ({named!r}) on the reset connection has {len(unanswered)}: {reset}")
extra = set(ids) - set(want) - {i for _, i in reset}
missing = set(want) - set(ids)
if extra or missing:
    fail(f"spool: {len(ids)} jobs, {len(want)} answered 202; "
         f"{len(extra)} never answered (e.g. {sorted(extra)[:3]}), "
         f"{len(missing)} answered but absent (e.g. {sorted(missing)[:3]})")
for j in dump:
    body = json.loads(j["body"])
    if body["tag"] != "reset" and (body["tag"], body["n"]) != want[j["id"]]:
        fail(f"job {j['id']} was answered for request {want[j['id']]} but holds request "
             f"{(body['tag'], body['n'])}: answers out of order")
print(f"spool: exactly the {len(want)} jobs answered 202, each with its own request; "
      f"the reset connection's {len(reset)}, {len(unanswered)} of them unanswered "
      f"(the oldest named in the close line: {closes[0]['reason']})")
PY
    fail "the spool does not hold exactly the jobs answered 202"

echo "pipelining: ok"
