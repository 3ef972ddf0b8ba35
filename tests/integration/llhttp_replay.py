#!/usr/bin/env python3
"""Replays llhttp's request test cases against a running portcullis, byte for byte.

  llhttp_replay.py config --spool DIR [--tls-cert PEM --tls-key KEY] > config.yaml
      A configuration whose routes (verify: none) cover every origin-form path of the corpus
      with every method in it, so that requests with a Host header are accepted (202) and any
      desync shows up as an accepted request that llhttp did not see. With a certificate, a TLS
      listener too (server.tls).
  llhttp_replay.py run --port PORT --pid PID --expect-jobs FILE [--tls-ca CA --tls-name NAME]
      Sends every case with meta.type == "request" on its own connection, reads until the
      server closes, and checks the answers against llhttp's reading (rules below). Then
      once more every "complete" case that lacks Host, with a Host field added after each
      request line, so that its bodies and pipelined requests get parsed too. Writes the jobs
      answered 202 with the route and body llhttp gives that message to FILE. With --tls-ca,
      every connection (the cases and the health checks) is TLS to PORT for NAME, trusting CA,
      and the case's bytes are what goes inside.
  llhttp_replay.py check-spool --expect-jobs FILE < `portcullis spool dump`
      Every job answered 202 is stored with the body and route llhttp reads for that message.

How a case is read (see $PORTCULLIS_SHARED/corpora/README.md):
  - "complete" (messages = m): whatever the statuses (most cases lack Host: 400), the server
    must not desync. At most m answers that leave the connection open; a closing 4xx or 408
    may follow (refusal of a request, or of trailing bytes llhttp would also stop at). Every
    2xx is the answer to a message llhttp saw (index < m), and its stored body is llhttp's.
  - "error": refused with a 4xx and the connection closed, except llhttp's
      code 22/23 (pause on CONNECT/Upgrade/PRI): CONNECT and PRI get a 4xx and a close; an
        Upgrade header is ignored, so the case is read as "complete";
      code 5 (data after Connection: close): exactly one answer, then the connection closes
        and the rest is never read.
  - "incomplete": no 2xx (llhttp saw no whole message), no crash.
After every case the process must be alive and answer GET /healthz with 200 ok.
"""

import argparse
import base64
import json
import os
import re
import socket
import ssl
import sys
import time

import tls_client

HOST = "127.0.0.1"
SPAN = re.compile(r"^off=(\d+) len=(\d+) span\[(\w+)\]=")
EVENT = re.compile(r"^off=(\d+) (.*)$")
ERROR_CODE = re.compile(r"code=(\d+)")
ROUTE_PATH = re.compile(r"^/([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$")
METHOD = re.compile(r"^[A-Z][A-Z-]*$")
# How long a case may take before the server is considered stuck. The replay configuration
# has 1 s header and body timeouts and a 500 ms idle timeout, so every connection ends well before this.
CASE_DEADLINE_S = 6.0
# (CA file, server name) when the replay goes over TLS (run --tls-ca).
TLS = None


def corpus_path():
    shared = os.environ.get("PORTCULLIS_SHARED", "/work/shared")
    return os.path.join(shared, "corpora", "llhttp-requests.jsonl")


def load_cases():
    with open(corpus_path()) as f:
        cases = [json.loads(line) for line in f if line.strip()]
    return [c for c in cases if c["meta"].get("type") == "request"]


class Message:
    def __init__(self):
        self.method = b""
        self.url = b""
        self.body = b""
        self.protocol = b""
        self.complete = False
        self.skipped_body = False  # the test harness told llhttp to skip the body
        self.version_end = None  # offset just past the HTTP version of the request line
        self.has_host = False


def messages_of(case, raw):
    """llhttp's messages, rebuilt from the spans of its log (offsets into raw)."""
    out = []
    cur = None
    for event in case["log"]:
        span = SPAN.match(event)
        if span:
            off, length, kind = int(span[1]), int(span[2]), span[3]
            if cur is None:
                continue
            data = raw[off:off + length]
            if kind == "method":
                cur.method += data
            elif kind == "url":
                cur.url += data
            elif kind == "protocol":
                cur.protocol += data
            elif kind == "body":
                cur.body += data
            elif kind == "header_field" and data.lower() == b"host":
                cur.has_host = True
            continue
        m = EVENT.match(event)
        if not m:
            continue
        what = m[2]
        if what == "message begin":
            cur = Message()
            out.append(cur)
        elif what == "message complete" and cur is not None:
            cur.complete = True
        elif what == "skip body" and cur is not None:
            cur.skipped_body = True
        elif what == "version complete" and cur is not None:
            cur.version_end = int(m[1])
    return out


def with_host(raw, msgs):
    """raw with a Host field added to every message that lacks one, or None when a request
    line cannot be found. Most llhttp cases have no Host, which stops portcullis at the first
    request; with one, their bodies and pipelined requests are parsed too."""
    if not msgs or all(msg.has_host for msg in msgs):
        return None
    out = b""
    at = 0
    for msg in msgs:
        if msg.has_host:
            continue
        end = msg.version_end
        if end is None or raw[end:end + 2] != b"\r\n":
            return None
        out += raw[at:end + 2] + b"Host: replay.test\r\n"
        at = end + 2
    return out + raw[at:]


def origin_path(url):
    if not url.startswith(b"/"):
        return None
    return url.split(b"?", 1)[0].split(b"#", 1)[0].decode("latin-1")


def route_table(cases):
    """{path: route name}, from every origin-form path seen, and the methods llhttp accepts
    in complete HTTP requests (not RTSP/ICE ones like ANNOUNCE, which it refuses over HTTP)."""
    paths, methods = set(), set()
    for case in cases:
        raw = base64.b64decode(case["raw_b64"])
        for msg in messages_of(case, raw):
            p = origin_path(msg.url)
            if p and p != "/healthz" and "//" not in p and ROUTE_PATH.match(p):
                paths.add(p)
            meth = msg.method.decode("latin-1")
            if case["expect"] == "complete" and msg.protocol == b"HTTP" and METHOD.match(meth):
                methods.add(meth)
    # CONNECT must be refused even on a route that lists it.
    methods.add("CONNECT")
    routes = {p: f"p{i}" for i, p in enumerate(sorted(paths))}
    return routes, sorted(methods)


def cmd_config(args):
    routes, methods = route_table(load_cases())
    print("# Generated by llhttp_replay.py config: every origin-form path of the llhttp corpus.")
    print("server:")
    print('  listen: ["127.0.0.1:0"]')
    print("  shards: 2")
    print("  timeouts: {header: 1s, body: 1s, idle: 500ms}")
    if args.tls_cert:
        print("  tls:")
        print('    listen: ["127.0.0.1:0"]')
        print(f"    certificates: [{{cert: {json.dumps(args.tls_cert)}, "
              f"key: {json.dumps(args.tls_key)}}}]")
    print('admin: {listen: "127.0.0.1:0"}')
    print(f"spool: {{dir: {json.dumps(args.spool)}, durability: fsync}}")
    print("routes:")
    method_list = ", ".join(json.dumps(m) for m in methods)
    for path, name in routes.items():
        print(f"  {name}: {{path: {json.dumps(path)}, methods: [{method_list}], "
              "verify: {scheme: none}}")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None


def parse_responses(data, methods=()):
    """Responses in data; the rest that is not a whole response is returned as garbage.
    methods: the requests' methods in order; the final answer to a HEAD request has no body,
    whatever its Content-Length says (RFC 9110 9.3.2)."""
    out = []
    finals = 0
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return out, data
        lines = head.split(b"\r\n")
        m = re.match(rb"^HTTP/1\.1 (\d{3}) ", lines[0] + b" ")
        if not m:
            return out, data
        status = int(m[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower().decode("latin-1"),
                            value.strip().decode("latin-1")))
        length = 0
        if status >= 200:
            cl = [v for n, v in headers if n == "content-length"]
            if len(cl) != 1 or not cl[0].isdigit():
                return out, data
            length = int(cl[0])
            if finals < len(methods) and methods[finals] == b"HEAD":
                # No body; unless the answer ends the connection (a malformed request, refused
                # before its method was trusted), when whatever follows is the rest of it.
                closes = any(n == "connection" and v.lower() == "close" for n, v in headers)
                length = min(length, len(rest)) if closes else 0
            finals += 1
        if len(rest) < length:
            return out, data
        out.append(Response(status, headers, rest[:length]))
        data = rest[length:]
    return out, b""


def exchange(port, raw):
    """Sends raw, reads until the server closes or the deadline. -> (bytes, closed).
    Over TLS, a session the server ends with an alert or without close_notify is closed too."""
    if TLS:
        sock = tls_client.connect(port, TLS[1], TLS[0], timeout=5)
    else:
        sock = socket.create_connection((HOST, port), timeout=5)
    deadline = time.monotonic() + CASE_DEADLINE_S
    received = b""
    closed = False
    try:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # refused before everything was sent; the answer is read below
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, ssl.SSLError):
                closed = True
                break
            if not data:
                closed = True
                break
            received += data
    finally:
        sock.close()
    return received, closed


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def healthy(port):
    try:
        data, _ = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    except OSError as e:
        return f"GET /healthz failed: {e}"
    responses, _ = parse_responses(data)
    if len(responses) != 1 or responses[0].status != 200 or responses[0].body != b"ok":
        return f"GET /healthz answered {data[:200]!r}"
    return None


def judge(name, case, msgs, responses, garbage, closed, routes):
    """Problems with how the server answered this case (empty list when it agrees), and the
    jobs it accepted with the route and body llhttp reads for them."""
    problems = []
    accepted = []
    expect = case["expect"]
    m = case["messages"]
    code = None
    if case.get("error"):
        found = ERROR_CODE.search(case["error"])
        code = int(found[1]) if found else None
    final = [r for r in responses if r.status >= 200]
    statuses = [r.status for r in final]
    if garbage:
        problems.append(f"unparsable bytes in the answer: {garbage[:80]!r}")

    method = msgs[0].method if msgs else b""
    if expect == "error" and code in (22, 23) and method not in (b"CONNECT", b"PRI"):
        expect = "complete"  # an Upgrade header is ignored: a plain request
    # The last answer may be a refusal that ends the connection (of a request, or of bytes
    # after the last message) or the server's own 408 on a partial request.
    closing = bool(closed and final and final[-1].status >= 400 and
                   final[-1].header("connection") == "close")
    kept = final[:-1] if closing else final
    refused_4xx = closing and final[-1].status < 500
    # A version other than HTTP/1.x is refused with 505 rather than a 4xx (RFC 9110 15.6.6).
    if closing and final[-1].status == 505 and "Invalid HTTP version" in (case["error"] or ""):
        refused_4xx = True

    if expect == "error" and code in (22, 23):
        if not (closed and len(final) == 1 and refused_4xx):
            problems.append(f"{method.decode()} must get one 4xx and a close; got {statuses}"
                            f"{'' if closed else ', connection left open'}")
    elif expect == "error" and code == 5:
        if len(final) != 1 or not closed:
            problems.append("data after Connection: close: expected exactly one answer then"
                            f" a close; got {statuses}{'' if closed else ', left open'}")
    elif expect == "error":
        if not refused_4xx:
            problems.append(f"expected a 4xx and a close; got {statuses}"
                            f"{'' if closed else ', connection left open'}")
        if len(kept) > m:
            problems.append(f"{len(kept)} answers before the refusal, llhttp read {m} messages")
    elif expect == "complete":
        if len(kept) > m:
            problems.append(f"{len(kept)} answers ({statuses}) for {m} messages: desync")
    elif expect == "incomplete":
        pass
    else:
        problems.append(f"unknown expect {expect!r}")

    for i, r in enumerate(final):
        if not 200 <= r.status < 300:
            continue
        if i >= len(msgs) or not msgs[i].complete:
            problems.append(f"answer {i} is {r.status} but llhttp has no complete message {i}")
            continue
        if msgs[i].skipped_body:
            problems.append(f"answer {i} is {r.status} for a message whose body llhttp skipped")
            continue
        if r.status == 202 and msgs[i].method == b"HEAD":
            continue  # answered without a body: its job is counted, its id is not shown
        if r.status == 202:
            try:
                job_id = json.loads(r.body)["id"]
            except (ValueError, KeyError):
                problems.append(f"202 without a job id: {r.body!r}")
                continue
            accepted.append({"case": name, "id": job_id,
                             "route": routes.get(origin_path(msgs[i].url)),
                             "body_b64": base64.b64encode(msgs[i].body).decode()})
    return problems, accepted


def replays(cases):
    """(name, case, bytes, llhttp's messages): every case as it is, then every complete case
    that lacks Host once more with a Host field added to each of its requests."""
    out = []
    extra = []
    for case in cases:
        raw = base64.b64decode(case["raw_b64"])
        msgs = messages_of(case, raw)
        out.append((case["name"], case, raw, msgs))
        if case["expect"] == "complete":
            hosted = with_host(raw, msgs)
            if hosted is not None:
                extra.append((case["name"] + " [+Host]", case, hosted, msgs))
    return out + extra


def cmd_run(args):
    global TLS
    if args.tls_ca:
        TLS = (args.tls_ca, args.tls_name)
    cases = load_cases()
    routes, _ = route_table(cases)
    counts = {"runs": 0, "refused": 0, "answered": 0, "timed_out": 0, "open": 0}
    disagreements = []
    jobs = []
    all_202 = 0
    runs = replays(cases)
    for name, case, raw, msgs in runs:
        counts["runs"] += 1
        try:
            data, closed = exchange(args.port, raw)
        except OSError as e:
            disagreements.append((name, [f"could not talk to the server: {e}"]))
            data, closed = b"", False
        responses, garbage = parse_responses(data, [m.method for m in msgs])
        final = [r for r in responses if r.status >= 200]
        all_202 += sum(1 for r in final if r.status == 202)
        if any(200 <= r.status < 300 for r in final):
            counts["answered"] += 1
        if final and final[-1].status == 408:
            counts["timed_out"] += 1
        elif final and final[-1].status >= 400:
            counts["refused"] += 1
        if not closed:
            counts["open"] += 1
        problems, accepted = judge(name, case, msgs, responses, garbage, closed, routes)
        jobs += accepted
        if not alive(args.pid):
            problems.append("the server process died")
            disagreements.append((name, problems))
            break
        health = healthy(args.port)
        if health:
            problems.append(f"server unhealthy afterwards: {health}")
        if problems:
            disagreements.append((name, problems))
        if args.verbose:
            print(f"{case['expect']:10} m={case['messages']} {[r.status for r in final]}"
                  f"{' closed' if closed else ' open'}  {name}")

    with open(args.expect_jobs, "w") as f:
        json.dump({"answered_202": all_202, "jobs": jobs}, f)
    print(f"llhttp replay{' over TLS' if TLS else ''}: {len(cases)} request cases, {counts['runs']} runs (with +Host "
          f"variants), {counts['refused']} refused, {counts['answered']} answered 2xx, "
          f"{counts['timed_out']} timed out (408), {counts['open']} left open past "
          f"{CASE_DEADLINE_S:.0f}s, {all_202} jobs queued")
    final_health = healthy(args.port) if alive(args.pid) else "the server process is gone"
    if final_health:
        disagreements.append(("(end of replay)", [final_health]))
    for name, problems in disagreements:
        print(f"DISAGREES {name}:", file=sys.stderr)
        for p in problems:
            print(f"    {p}", file=sys.stderr)
    if disagreements:
        print(f"{len(disagreements)} run(s) disagree", file=sys.stderr)
        sys.exit(1)
    print("every case agrees")


def cmd_check_spool(args):
    with open(args.expect_jobs) as f:
        run = json.load(f)
    expected = run["jobs"]
    stored = {}
    for line in sys.stdin:
        job = json.loads(line)
        if job.get("body_encoding") == "base64":
            body = base64.b64decode(job["body"])
        else:
            body = job["body"].encode("utf-8")
        stored[job["id"]] = (job.get("route"), body)
    bad = 0
    for job in expected:
        want = base64.b64decode(job["body_b64"])
        got = stored.get(job["id"])
        if got is None:
            print(f"DISAGREES {job['case']}: job {job['id']} answered 202 is not in the spool",
                  file=sys.stderr)
            bad += 1
        elif got != (job["route"], want):
            print(f"DISAGREES {job['case']}: job {job['id']} stored as route {got[0]!r} body "
                  f"{got[1][:80]!r}; llhttp reads route {job['route']!r} body {want[:80]!r}",
                  file=sys.stderr)
            bad += 1
    if len(stored) != run["answered_202"]:
        print(f"DISAGREES spool: {len(stored)} jobs stored, {run['answered_202']} answered 202",
              file=sys.stderr)
        bad += 1
    if bad:
        sys.exit(1)
    print(f"spool: all {len(expected)} accepted jobs stored with llhttp's body and route")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("config")
    c.add_argument("--spool", required=True)
    c.add_argument("--tls-cert")
    c.add_argument("--tls-key")
    r = sub.add_parser("run")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--expect-jobs", required=True)
    r.add_argument("--verbose", action="store_true")
    r.add_argument("--tls-ca")
    r.add_argument("--tls-name", default="replay.test")
    s = sub.add_parser("check-spool")
    s.add_argument("--expect-jobs", required=True)
    args = p.parse_args()
    {"config": cmd_config, "run": cmd_run, "check-spool": cmd_check_spool}[args.cmd](args)


if __name__ == "__main__":
    main()
