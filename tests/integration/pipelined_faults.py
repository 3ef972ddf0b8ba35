#!/usr/bin/env python3
"""Pipelined clients for pipelined_faults.sh, and the checker of what they were answered.

Subcommands:

  kill       CONNS raw-socket connections each pipeline batches of BATCH webhooks (at most two
             batches unanswered), reading answers as they come, until the server is killed: a
             thread sends SIGKILL to PID once KILL_AFTER 202s have been read. Writes what each
             connection sent and was answered to OUT (JSON).
  disk-full  the same, while the spool's file system fills up: each connection pipelines until
             it is answered a 503, then reads the rest of its answers; then FILLER is removed
             and each connection pipelines batches again until one batch is answered 202 in
             full; a connection still open must then answer GET /healthz with the next answer.
  check      checks OUT against a `portcullis spool dump` (see check()), then checks that the
             checker itself rejects this run's answers permuted, shifted or dropped, and this
             run's spool with an answered job removed or doubled.

Every request body is JSON naming its run, connection and position: {"run":R,"c":C,"n":N} (plus
padding for the disk-full run), so that a job in the spool says which request it came from.
"""

import argparse
import copy
import json
import os
import re
import signal
import socket
import sys
import threading
import time

from http_client import ProtocolError, Reader

HOST = "127.0.0.1"
PATH = "/webhooks/hooks"
ROUTE = "hooks"


def make_body(run, c, n, pad):
    doc = {"run": run, "c": c, "n": n}
    if pad:
        doc["pad"] = "p" * pad
    return json.dumps(doc, separators=(",", ":"))


def make_request(body):
    data = body.encode()
    return (f"POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


class Conn:
    """One keep-alive connection: what it sent, in order, and the answers, in order."""

    def __init__(self, port, run, c, pad):
        self.run, self.c, self.pad = run, c, pad
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = Reader(self.sock)
        self.sent = []     # request bodies, in the order sent
        self.answers = []  # {status, body, retry_after, connection}, in the order read
        self.end = None    # why the connection ended; None while it is open

    @property
    def outstanding(self):
        return len(self.sent) - len(self.answers)

    def send_batch(self, count):
        bodies = [make_body(self.run, self.c, len(self.sent) + i, self.pad) for i in range(count)]
        # Counted as sent before the send: part of a failed send may have reached the server.
        self.sent += bodies
        try:
            self.sock.sendall(b"".join(make_request(b) for b in bodies))
        except OSError as e:
            self.end = f"send failed: {type(e).__name__}"
            return False
        return True

    def read_one(self, seconds=15):
        try:
            r = self.reader.read_response(time.monotonic() + seconds)
        except ProtocolError as e:
            self.end = f"cut inside an answer: {e}"
            return None
        except OSError as e:
            self.end = f"receive failed: {type(e).__name__}"
            return None
        if r is None:
            self.end = ("reset" if self.reader.reset else "closed") if self.reader.eof \
                else f"no answer within {seconds} s"
            return None
        self.answers.append({"status": r.status, "body": r.body.decode("utf-8", "replace"),
                             "retry_after": r.header("retry-after"),
                             "connection": r.header("connection")})
        return r

    def result(self):
        return {"c": self.c, "sent": self.sent, "answers": self.answers,
                "end": self.end or "open"}


def run_threads(target, conns):
    errors = []

    def guarded(conn):
        try:
            target(conn)
        except Exception as e:  # reported, never swallowed
            errors.append(f"connection {conn.c}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=guarded, args=(conn,)) for conn in conns]
    for t in threads:
        t.start()
    return threads, errors


def cmd_kill(args):
    conns = [Conn(args.port, "kill", c, 0) for c in range(args.conns)]
    killed = threading.Event()
    lock = threading.Lock()
    accepted = [0]
    before_kill = []  # anything but a 202 before the kill is a failure

    def client(conn):
        while conn.end is None:
            if not killed.is_set() and conn.outstanding <= args.batch:
                conn.send_batch(args.batch)
            if conn.outstanding == 0:
                break
            r = conn.read_one()
            if r is None:
                break
            with lock:
                if r.status == 202:
                    accepted[0] += 1
                elif not killed.is_set():
                    before_kill.append(f"connection {conn.c} answer {len(conn.answers) - 1}: "
                                       f"{r.describe()}")
        if not killed.is_set() and conn.end is not None:
            before_kill.append(f"connection {conn.c} ended before the kill: {conn.end}")

    threads, errors = run_threads(client, conns)
    deadline = time.monotonic() + args.limit
    while accepted[0] < args.kill_after and time.monotonic() < deadline and not before_kill:
        time.sleep(0.002)
    in_flight = sum(conn.outstanding for conn in conns)  # a glance: the clients keep going
    # Set first, so that no client takes the connection's end for a failure before the kill.
    killed.set()
    os.kill(args.pid, signal.SIGKILL)
    for t in threads:
        t.join(60)
    sent = sum(len(conn.sent) for conn in conns)
    answered = sum(len(conn.answers) for conn in conns)
    print(f"kill: SIGKILL after {accepted[0]} 202s with about {in_flight} requests unanswered; "
          f"{args.conns} connections sent {sent} requests in batches of {args.batch}, "
          f"{answered} answered, {sent - answered} never answered")
    json.dump({"mode": "kill", "run": "kill", "connections": [c.result() for c in conns]},
              open(args.out, "w"))
    problems = errors + before_kill
    if any(t.is_alive() for t in threads):
        problems.append("a client was still reading 60 s after the kill")
    if accepted[0] < args.kill_after:
        problems.append(f"only {accepted[0]} 202s within {args.limit} s (wanted "
                        f"{args.kill_after} before the kill)")
    if sent == answered:
        problems.append("every request sent was answered: the kill did not land mid-pipeline")
    if problems:
        sys.exit("FAIL: " + "\nFAIL: ".join(problems[:10]))


def cmd_disk_full(args):
    conns = [Conn(args.port, "full", c, args.pad) for c in range(args.conns)]
    barrier = threading.Barrier(args.conns + 1, timeout=60)
    phase2_from = {}
    problems = []

    def client(conn):
        try:
            # Pipelining while the disk fills: until this connection is answered a 503.
            deadline = time.monotonic() + args.limit
            refused = False
            while conn.end is None and time.monotonic() < deadline:
                if not refused and conn.outstanding <= args.batch:
                    conn.send_batch(args.batch)
                if conn.outstanding == 0:
                    break
                r = conn.read_one()
                refused |= r is not None and r.status == 503
            if not refused and conn.end is None:
                problems.append(f"connection {conn.c}: no 503 within {args.limit} s")
            barrier.wait()  # the main thread frees space
            barrier.wait()
            # Space is back: batches until one is answered 202 in full.
            phase2_from[conn.c] = len(conn.sent)
            deadline = time.monotonic() + args.limit
            recovered = False
            while conn.end is None and not recovered and time.monotonic() < deadline:
                first = len(conn.answers)
                conn.send_batch(args.batch)
                while conn.outstanding > 0 and conn.read_one():
                    pass
                got = [a["status"] for a in conn.answers[first:]]
                recovered = got == [202] * args.batch
                if not recovered:
                    time.sleep(0.1)  # the spool refuses writes for a second after a failure
            if conn.end is None and not recovered:
                problems.append(f"connection {conn.c}: no batch answered 202 in full within "
                                f"{args.limit} s of space coming back")
            if conn.end is None:
                # Still in step: the next answer is the one to this request, and nothing more
                # came before it.
                conn.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                try:
                    r = conn.reader.read_response(time.monotonic() + 10)
                except ProtocolError as e:
                    r = None
                    problems.append(f"connection {conn.c}: GET /healthz: {e}")
                if r is None or r.status != 200 or r.body != b"ok":
                    problems.append(f"connection {conn.c}: after its pipelines, GET /healthz "
                                    f"got {r.describe() if r else 'nothing'}")
        except Exception:
            barrier.abort()
            raise

    threads, errors = run_threads(client, conns)
    try:
        barrier.wait()
        os.remove(args.filler)
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join(120)
    json.dump({"mode": "disk-full", "run": "full", "phase2_from": phase2_from,
               "connections": [c.result() for c in conns]}, open(args.out, "w"))
    def count(answers, status):
        return sum(1 for a in answers if a["status"] == status)

    for conn in conns:
        before = conn.answers[:phase2_from.get(conn.c, len(conn.answers))]
        after = conn.answers[len(before):]
        print(f"disk-full: connection {conn.c}: filling {count(before, 202)}x202 "
              f"{count(before, 503)}x503; space back: {count(after, 202)}x202 "
              f"{count(after, 503)}x503; {conn.end or 'open'}")
    problems = errors + problems
    if any(t.is_alive() for t in threads):
        problems.append("a client was still running after 120 s")
    if not any(conn.answers[k]["status"] == 202 and conn.answers[k + 1]["status"] == 503
               for conn in conns for k in range(len(conn.answers) - 1)):
        problems.append("no connection was answered a 202 then a 503: the disk did not fill "
                        "mid-pipeline")
    if problems:
        sys.exit("FAIL: " + "\nFAIL: ".join(problems[:10]))


# ---- the checker ---------------------------------------------------------------------------

def check(results, dump, foreign=0):
    """Returns the problems found (none: the answers and the spool agree).

    Per connection, the k-th answer belongs to the k-th request sent: a 202's job id is in the
    spool exactly once and that job holds exactly the k-th request's body; a 503 (disk-full run
    only) carries Retry-After and {"error":"unavailable"}, and no job holds its request's body;
    nothing else is answered. A connection that is still open was answered every request; one
    that the server closed got Connection: close on its last answer (the kill closes them
    without one). No job id and no body is stored twice, every job of this run holds a body
    that was sent, and besides them the spool holds `foreign` jobs. After a kill, the stored
    jobs of a connection are its first requests, without a gap: requests reach the spool in
    order."""
    problems = []
    mode, run = results["mode"], results["run"]
    ids = {}
    by_body = {}
    others = 0
    for j in dump:
        if j["id"] in ids:
            problems.append(f"job id {j['id']} is stored twice")
        ids[j["id"]] = j
        if j.get("body_encoding") != "utf8":
            others += 1
            continue
        try:
            tag = json.loads(j["body"])
        except ValueError:
            tag = None
        if not isinstance(tag, dict) or tag.get("run") != run:
            others += 1
            continue
        if j["body"] in by_body:
            problems.append(f"request c={tag['c']} n={tag['n']} is stored twice: jobs "
                            f"{by_body[j['body']]['id']} and {j['id']}")
        by_body[j["body"]] = j
    if others != foreign:
        problems.append(f"the spool holds {others} jobs from other runs, expected {foreign}")
    sent_bodies = set()
    answered_ids = set()
    for conn in results["connections"]:
        c, sent, answers = conn["c"], conn["sent"], conn["answers"]
        sent_bodies.update(sent)
        for k, (a, body) in enumerate(zip(answers, sent)):
            where = f"connection {c} answer {k}"
            if a["status"] == 202:
                try:
                    doc = json.loads(a["body"])
                except ValueError:
                    doc = {}
                job_id = doc.get("id")
                if doc.get("status") != "queued" or not job_id:
                    problems.append(f"{where}: 202 {a['body']!r}")
                    continue
                if job_id in answered_ids:
                    problems.append(f"{where}: job id {job_id} was answered before")
                answered_ids.add(job_id)
                job = ids.get(job_id)
                if job is None:
                    problems.append(f"{where}: 202 for job {job_id}, which is not in the spool")
                elif job["body"] != body or job["route"] != ROUTE:
                    problems.append(f"{where}: 202 for job {job_id}, which holds "
                                    f"{describe(job['body'])} (route {job['route']}) instead "
                                    f"of this request's {describe(body)}: answers out of step "
                                    f"with requests")
            elif a["status"] == 503 and mode == "disk-full":
                if not re.fullmatch(r"[0-9]+", a["retry_after"] or ""):
                    problems.append(f"{where}: 503 with Retry-After {a['retry_after']!r}")
                if a["body"] != '{"error":"unavailable"}':
                    problems.append(f"{where}: 503 {a['body']!r}")
                if body in by_body:
                    problems.append(f"{where}: 503, but job {by_body[body]['id']} holds this "
                                    f"request's {describe(body)}")
            else:
                problems.append(f"{where}: {a['status']} {a['body']!r}")
        if len(answers) > len(sent):
            problems.append(f"connection {c}: {len(answers)} answers to {len(sent)} requests")
        if conn["end"] == "open" and len(answers) != len(sent):
            problems.append(f"connection {c}: still open, {len(sent)} requests sent, "
                            f"{len(answers)} answered")
        if mode == "disk-full" and conn["end"] != "open" and \
                (not answers or answers[-1]["connection"] != "close"):
            problems.append(f"connection {c} ended ({conn['end']}) without an answer saying "
                            f"Connection: close")
        if mode == "kill":
            stored = sorted(json.loads(b)["n"] for b in by_body if json.loads(b)["c"] == c)
            if stored != list(range(len(stored))):
                problems.append(f"connection {c}: the stored requests are not its first ones: "
                                f"{compact(stored)}")
    for body, job in by_body.items():
        if body not in sent_bodies:
            problems.append(f"job {job['id']} holds {describe(body)}, which was never sent")
    return problems


def describe(body):
    try:
        doc = json.loads(body)
        return f"request c={doc['c']} n={doc['n']}"
    except (ValueError, KeyError, TypeError):
        return f"a body of {len(body)} bytes"


def compact(ns):
    """[0, 1, 2, 5, 6] as "0-2 5-6"."""
    out = []
    for n in ns:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return " ".join(f"{a}-{b}" if a != b else str(a) for a, b in out)


def mutants(results, dump):
    """This run's data made wrong in ways a broken server would make it: (what, results, dump)
    whose check must fail."""
    conns = results["connections"]
    out = []

    def changed(c, edit):
        r = copy.deepcopy(results)
        edit(r["connections"][c]["answers"])
        return r

    def swap(k):
        def edit(answers):
            answers[k], answers[k + 1] = answers[k + 1], answers[k]
        return edit

    def first(pred):
        return next(((i, k) for i, conn in enumerate(conns)
                     for k in range(len(conn["answers"]) - 1)
                     if pred(conn["answers"][k], conn["answers"][k + 1])), None)

    hit = first(lambda a, b: a["status"] == b["status"] == 202)
    if hit:
        i, k = hit
        out.append((f"answers {k} and {k + 1} of connection {conns[i]['c']} (two 202s) swapped",
                    changed(i, swap(k)), dump))
        out.append((f"answer {k} of connection {conns[i]['c']} lost (the later ones move up)",
                    changed(i, lambda answers: answers.pop(k)), dump))
        job_id = json.loads(conns[i]["answers"][k]["body"])["id"]
        out.append((f"the job of a 202 ({job_id}) missing from the spool", results,
                    [j for j in dump if j["id"] != job_id]))
        out.append((f"the job of a 202 ({job_id}) stored twice", results,
                    dump + [j for j in dump if j["id"] == job_id]))
    hit = first(lambda a, b: {a["status"], b["status"]} == {202, 503})
    if hit:
        i, k = hit
        out.append((f"answers {k} and {k + 1} of connection {conns[i]['c']} (a 202 and a 503) "
                    f"swapped", changed(i, swap(k)), dump))
    return out, hit is not None


def cmd_check(args):
    results = json.load(open(args.results))
    dump = [json.loads(line) for line in open(args.dump, encoding="utf-8") if line.strip()]
    problems = check(results, dump, args.foreign)
    if problems:
        print(f"FAIL: {len(problems)} problems; the first ones:", file=sys.stderr)
        for p in problems[:15]:
            print(f"FAIL: {p}", file=sys.stderr)
        sys.exit(1)
    conns = results["connections"]
    answered = sum(len(c["answers"]) for c in conns)
    sent = sum(len(c["sent"]) for c in conns)
    accepted = sum(1 for c in conns for a in c["answers"] if a["status"] == 202)
    stored = {j["body"] for j in dump}
    unanswered_stored = sum(1 for c in conns for b in c["sent"][len(c["answers"]):]
                            if b in stored)
    print(f"check: {len(conns)} connections, {sent} requests, {answered} answers in request "
          f"order ({accepted} 202s, each job in the spool with its own request's body, "
          f"{answered - accepted} others, none of them stored); of the {sent - answered} "
          f"never answered, {unanswered_stored} are in the spool; {len(dump)} jobs, no "
          f"duplicate")
    # The checker must bite: the same run, made wrong.
    cases, has_mixed = mutants(results, dump)
    if not cases or (results["mode"] == "disk-full" and not has_mixed):
        sys.exit("FAIL: too few answers in a row to check that the checker catches a "
                 "permutation")
    for what, r, d in cases:
        found = check(r, d, args.foreign)
        if not found:
            sys.exit(f"FAIL: the checker accepts this run with {what}")
        print(f"check rejects {what}: {found[0]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kill")
    k.add_argument("--port", type=int, required=True)
    k.add_argument("--pid", type=int, required=True)
    k.add_argument("--conns", type=int, default=8)
    k.add_argument("--batch", type=int, default=8)
    k.add_argument("--kill-after", type=int, required=True, help="202s read before SIGKILL")
    k.add_argument("--limit", type=float, default=20, help="seconds to reach --kill-after")
    k.add_argument("--out", required=True)
    d = sub.add_parser("disk-full")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--filler", required=True, help="removed to give the space back")
    d.add_argument("--conns", type=int, default=4)
    d.add_argument("--batch", type=int, default=8)
    d.add_argument("--pad", type=int, default=12000, help="bytes of padding in each body")
    d.add_argument("--limit", type=float, default=10, help="seconds for each phase")
    d.add_argument("--out", required=True)
    c = sub.add_parser("check")
    c.add_argument("--results", required=True)
    c.add_argument("--dump", required=True)
    c.add_argument("--foreign", type=int, default=0, help="jobs of other runs in the spool")
    args = p.parse_args()
    {"kill": cmd_kill, "disk-full": cmd_disk_full, "check": cmd_check}[args.cmd](args)


if __name__ == "__main__":
    main()
