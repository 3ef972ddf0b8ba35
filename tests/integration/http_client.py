#!/usr/bin/env python3
"""Raw-socket HTTP/1.1 client for byte-exact protocol checks against portcullis.

Subcommands (all talk to 127.0.0.1:PORT and exit 0 on success, 1 on a failed check with
what was expected and what came back):

  exchange  send bytes (with optional pauses), read the answers, check their statuses, an
            optional header/body of the last one, and whether the server closes afterwards.
            A connection expected to stay open must also answer a follow-up GET /healthz.
  stall     send bytes, then trickle or stay silent, and time how long the server takes to
            close the connection.
  drain     SIGTERM the server while requests are in flight and report what happened.

Bytes to send are written with Python escapes ("\\r\\n", "\\x00"); inside them, <WAIT> reads
one answer (interim 100 included) before sending the rest, and <PAUSE> sleeps 200 ms so the
rest goes out as a separate segment.
"""

import argparse
import codecs
import json
import os
import signal
import socket
import sys
import time

HOST = "127.0.0.1"


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (lowercased name, value)
        self.body = body

    def header(self, name):
        for n, v in self.headers:
            if n == name.lower():
                return v
        return None

    def describe(self):
        hdrs = "; ".join(f"{n}: {v}" for n, v in self.headers if n != "date")
        body = self.body[:120].decode("utf-8", "replace")
        return f"{self.status} {self.reason} [{hdrs}] {body!r}"


class ProtocolError(Exception):
    pass


class Reader:
    """Reads HTTP/1.1 responses from a socket; remembers when the peer closed."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False
        self.reset = False

    def _fill(self, deadline):
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_response(self, deadline, head_only=False):
        """One response, or None if the stream ended or the deadline passed first."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                if self.buf and self.eof:
                    raise ProtocolError(f"connection ended inside a response head: {self.buf!r}")
                return None
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers = []
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line!r}")
            headers.append((name.strip().lower(), value.strip()))
        length = 0
        if status >= 200 and not head_only:
            cl = [v for n, v in headers if n == "content-length"]
            if len(cl) != 1 or not cl[0].isdigit():
                raise ProtocolError(f"response without one valid Content-Length: {head!r}")
            length = int(cl[0])
        self.buf = rest
        while len(self.buf) < length:
            if not self._fill(deadline):
                raise ProtocolError(f"response body cut short: {self.buf!r}")
        body, self.buf = self.buf[:length], self.buf[length:]
        return Response(status, parts[2] if len(parts) > 2 else "", headers, body)

    def wait_eof(self, deadline):
        """True when the peer closed before the deadline; extra bytes are kept in buf."""
        while not self.eof:
            if not self._fill(deadline):
                break
        return self.eof


def decode_send(text):
    """Splits the escaped text into ('send', bytes), ('wait', None), ('pause', None) steps."""
    steps = []
    rest = text
    while rest:
        cut = min((i for i in (rest.find("<WAIT>"), rest.find("<PAUSE>")) if i >= 0),
                  default=-1)
        if cut < 0:
            steps.append(("send", rest))
            break
        if cut > 0:
            steps.append(("send", rest[:cut]))
        marker = "<WAIT>" if rest.startswith("<WAIT>", cut) else "<PAUSE>"
        steps.append(("wait" if marker == "<WAIT>" else "pause", None))
        rest = rest[cut + len(marker):]
    out = []
    for kind, value in steps:
        if kind == "send":
            out.append((kind, codecs.escape_decode(value.encode("utf-8"))[0]))
        else:
            out.append((kind, None))
    return out


def connect(port, timeout=5.0):
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def fail(name, message):
    print(f"FAIL {name}: {message}", file=sys.stderr)
    sys.exit(1)


def cmd_exchange(args):
    name = args.name
    expected = [int(s) for s in args.expect.split()]
    steps = decode_send(args.send)
    deadline = time.monotonic() + args.timeout
    sock = connect(args.port)
    reader = Reader(sock)
    got = []
    try:
        for kind, data in steps:
            if kind == "send":
                try:
                    sock.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    break  # the server refused early; what it answered is checked below
            elif kind == "pause":
                time.sleep(0.2)
            else:
                r = reader.read_response(deadline, head_only=args.head)
                if r is None:
                    fail(name, f"no answer before the rest of the request; expected {expected}")
                got.append(r)
        while len(got) < len(expected):
            r = reader.read_response(deadline, head_only=args.head)
            if r is None:
                break
            got.append(r)
    except ProtocolError as e:
        fail(name, f"unparsable answer: {e}")
    statuses = [r.status for r in got]
    if statuses != expected:
        detail = " | ".join(r.describe() for r in got) or "nothing"
        end = "closed" if reader.eof else "still open"
        fail(name, f"expected statuses {expected}, got {statuses} ({end}): {detail}")
    last = got[-1] if got else None
    for check in args.check:
        if check.startswith("body="):
            want = codecs.escape_decode(check[5:].encode("utf-8"))[0]
            if last.body != want:
                fail(name, f"expected body {want!r}, got {last.body!r}")
        else:
            hname, _, hvalue = check.partition(":")
            value = last.header(hname)
            if value != hvalue.strip():
                fail(name, f"expected header {hname}: {hvalue.strip()!r}, got {value!r}")
    if args.distinct_ids:
        ids = []
        for r in got:
            try:
                doc = json.loads(r.body)
            except ValueError:
                fail(name, f"202 body is not JSON: {r.body!r}")
            if doc.get("status") != "queued" or not doc.get("id"):
                fail(name, f"expected {{id, status: queued}}, got {r.body!r}")
            ids.append(doc["id"])
        if len(set(ids)) != len(ids):
            fail(name, f"expected distinct job ids, got {ids}")
    if args.ids_to:
        with open(args.ids_to, "a") as f:
            for r in got:
                if r.status == 202:
                    f.write(json.loads(r.body)["id"] + "\n")

    if args.close == "yes":
        if not reader.wait_eof(time.monotonic() + args.timeout):
            fail(name, f"expected the connection to be closed after {statuses}; still open")
        if reader.buf:
            fail(name, f"expected nothing after the last answer, got {reader.buf!r}")
        if last is not None and last.status >= 200 and last.header("connection") != "close":
            fail(name, f"closing answer lacks 'Connection: close': {last.describe()}")
    elif args.close == "no":
        if reader.eof:
            fail(name, f"expected the connection to stay open after {statuses}; it was closed")
        if last is not None and last.header("connection") == "close":
            fail(name, f"answer says 'Connection: close' on a kept-alive connection")
        # Still in sync: the next request on the same connection gets its own answer.
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            r = reader.read_response(time.monotonic() + args.timeout)
        except (BrokenPipeError, ConnectionResetError, ProtocolError) as e:
            fail(name, f"follow-up GET /healthz on the kept-alive connection failed: {e}")
        if r is None or r.status != 200 or r.body != b"ok":
            fail(name, "follow-up GET /healthz: expected 200 ok, got "
                 + (r.describe() if r else "nothing (closed)" if reader.eof else "nothing"))
    sock.close()
    print(f"ok   {name}: {' '.join(map(str, statuses))}"
          + {"yes": ", closed", "no": ", kept open", "any": ""}[args.close])


def cmd_stall(args):
    """Sends a prefix, then trickles one byte per interval (or nothing); prints the seconds
    from the first byte until the server closed, and the status it answered, if any."""
    steps = decode_send(args.send)
    sock = connect(args.port)
    reader = Reader(sock)
    start = time.monotonic()
    for kind, data in steps:
        if kind == "send":
            sock.sendall(data)
        elif kind == "pause":
            time.sleep(0.2)
    limit = start + args.max_seconds
    closed_at = None
    sent = 0
    while time.monotonic() < limit:
        wait_until = min(limit, time.monotonic() + args.trickle_interval)
        if reader.wait_eof(wait_until):
            closed_at = time.monotonic()
            break
        if args.trickle:
            try:
                sock.send(args.trickle.encode()[sent % len(args.trickle):][:1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                reader.wait_eof(time.monotonic() + 1)
                closed_at = time.monotonic()
                break
    statuses = []
    try:
        while True:
            r = reader.read_response(time.monotonic())
            if r is None:
                break
            statuses.append(r.status)
    except ProtocolError:
        statuses.append("garbled")
    elapsed = None if closed_at is None else round(closed_at - start, 3)
    print(json.dumps({"closed_after_s": elapsed, "statuses": statuses, "trickled": sent,
                      "reset": reader.reset}))


def process_finished(pid):
    """True once pid has exited (gone, or a zombie waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def connection_refused(port):
    try:
        s = socket.create_connection((HOST, port), timeout=1)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def cmd_drain(args):
    """SIGTERM while requests are in flight. Connection A has sent half a body and finishes
    it after the signal; B has sent half a body and never finishes; C is idle keep-alive.
    Prints one JSON object with what happened and when (seconds after SIGTERM)."""
    head = (b"POST /hook HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n"
            b"Content-Type: text/plain\r\n\r\n")
    a, b, c = connect(args.port), connect(args.port), connect(args.port)
    ra, rb, rc = Reader(a), Reader(b), Reader(c)
    a.sendall(head + b"drain")
    b.sendall(head + b"stuck")
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    r = rc.read_response(time.monotonic() + 5)
    out = {"idle_before": r.status if r else None}
    # Let the server take in both half bodies before the signal.
    time.sleep(0.3)
    t0 = time.monotonic()
    os.kill(args.pid, signal.SIGTERM)
    since = lambda: round(time.monotonic() - t0, 3)

    out["idle_closed_at"] = since() if rc.wait_eof(t0 + 2) else None
    out["refused_at"] = None
    while time.monotonic() < t0 + 2:
        if connection_refused(args.port):
            out["refused_at"] = since()
            break
        time.sleep(0.05)

    out["finished"] = None
    try:
        a.sendall(b"_request")
        ans = ra.read_response(time.monotonic() + 5)
        if ans is not None:
            doc = json.loads(ans.body) if ans.status == 202 else None
            out["finished"] = {"status": ans.status, "connection": ans.header("connection"),
                               "id": doc["id"] if doc else None}
    except (OSError, ProtocolError, ValueError) as e:
        out["finished"] = {"error": str(e)}
    out["finished_closed"] = ra.wait_eof(time.monotonic() + 3)

    limit = t0 + args.drain_timeout + 5
    out["stuck_closed_at"] = since() if rb.wait_eof(limit) else None
    out["stuck_statuses"] = []
    try:
        while True:
            ans = rb.read_response(time.monotonic())
            if ans is None:
                break
            out["stuck_statuses"].append(ans.status)
    except ProtocolError:
        out["stuck_statuses"].append("garbled")
    out["exited_at"] = None
    while time.monotonic() < limit:
        if process_finished(args.pid):
            out["exited_at"] = since()
            break
        time.sleep(0.05)
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    e = sub.add_parser("exchange")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--name", required=True)
    e.add_argument("--send", required=True)
    e.add_argument("--expect", required=True, help="space-separated statuses, interim included")
    e.add_argument("--close", choices=["yes", "no", "any"], required=True)
    e.add_argument("--check", action="append", default=[],
                   help="'Name: value' or 'body=...' checked on the last answer")
    e.add_argument("--distinct-ids", action="store_true")
    e.add_argument("--ids-to", help="append the ids answered 202 to this file")
    e.add_argument("--head", action="store_true", help="answers to HEAD carry no body")
    e.add_argument("--timeout", type=float, default=5.0)

    s = sub.add_parser("stall")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--send", required=True)
    s.add_argument("--trickle", default="", help="bytes sent one at a time after --send")
    s.add_argument("--trickle-interval", type=float, default=1.0)
    s.add_argument("--max-seconds", type=float, default=10.0)

    d = sub.add_parser("drain")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--pid", type=int, required=True)
    d.add_argument("--drain-timeout", type=float, required=True)

    args = p.parse_args()
    {"exchange": cmd_exchange, "stall": cmd_stall, "drain": cmd_drain}[args.cmd](args)


if __name__ == "__main__":
    main()
