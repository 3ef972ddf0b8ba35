#!/usr/bin/env python3
"""A NATS client for the JetStream sink's tests that is not portcullis: a few lines of Python
speaking the client protocol over a blocking socket (INFO, CONNECT, SUB, PUB, MSG/HMSG, PING/PONG)
and the JetStream API by request and reply. It creates the stream (portcullis never does) and
reads back what the stream holds.

  nats_client.py create PORT STREAM SUBJECT DUPLICATE_WINDOW_S [--user U --password P]
      the stream STREAM on SUBJECT (file storage, that duplicate window); prints its config
  nats_client.py dump PORT STREAM OUT [--user U --password P]
      every message of STREAM as JSON lines in OUT, in sequence order: "seq", "subject",
      "time" (Unix seconds, the server's store time), "headers" ([name, value] pairs in order),
      "headers_raw_b64" (the header block as stored) and "body_b64", the shape of receiver.py's
      log lines, so that providers/verify_received.mjs reads it as it is; prints the count
  nats_client.py count PORT STREAM [--user U --password P]
      the number of messages STREAM holds

Exits 1 with the server's words on an error (no stream, -ERR, no responders, a timeout).
"""
import argparse
import base64
import json
import os
import socket
import sys
from datetime import datetime, timezone


class NatsError(Exception):
    pass


class Client:
    def __init__(self, port, user=None, password=None, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.inbox = "_INBOX.test%s." % os.urandom(6).hex()
        self.serial = 0
        info = self.line()
        if not info.startswith(b"INFO "):
            raise NatsError("expected INFO, got %r" % info[:80])
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                   "name": "portcullis-test"}
        if user is not None:
            connect.update(user=user, **{"pass": password})
        self.send(b"CONNECT %s\r\nSUB %s* 1\r\nPING\r\n" %
                  (json.dumps(connect).encode(), self.inbox.encode()))
        while True:
            line = self.line()
            if line == b"PONG":
                return
            if line.startswith(b"-ERR"):
                raise NatsError("connect: %s" % line.decode(errors="replace"))

    def send(self, data):
        self.sock.sendall(data)

    def fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise NatsError("the server closed the connection")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def request(self, subject, payload):
        """The reply's (header block, payload); a 503 header status is no responders."""
        self.serial += 1
        reply = "%s%d" % (self.inbox, self.serial)
        self.send(b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(payload),
                                               payload))
        while True:
            line = self.line()
            if line == b"PING":
                self.send(b"PONG\r\n")
                continue
            if line.startswith(b"-ERR"):
                raise NatsError(line.decode(errors="replace"))
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                parts = line.split()
                if parts[0] == b"HMSG":
                    hdr_len, total = int(parts[-2]), int(parts[-1])
                else:
                    hdr_len, total = 0, int(parts[-1])
                data = self.exactly(total + 2)[:total]
                if parts[1].decode() != reply:
                    continue  # a late reply to an earlier request
                hdrs, body = data[:hdr_len], data[hdr_len:]
                if hdrs.startswith(b"NATS/1.0 503"):
                    raise NatsError("no responders for %s (no JetStream?)" % subject)
                return hdrs, body

    def api(self, subject, request):
        _, body = self.request(subject, json.dumps(request).encode())
        answer = json.loads(body)
        if "error" in answer:
            raise NatsError("%s: %s" % (subject, json.dumps(answer["error"])))
        return answer


def parse_headers(block):
    """[name, value] pairs of a NATS header block, in order (names as stored, values without the
    space after the colon)."""
    lines = block.split(b"\r\n")
    if not lines or not lines[0].startswith(b"NATS/1.0"):
        raise NatsError("header block does not start with NATS/1.0: %r" % block[:40])
    out = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise NatsError("header line without a colon: %r" % line)
        out.append([name.decode(), value.lstrip(b" \t").decode()])
    return out


def unix_time(text):
    """RFC 3339 with up to 9 fractional digits (the server's) as Unix seconds."""
    base, _, frac = text.rstrip("Z").partition(".")
    t = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def main():
    p = argparse.ArgumentParser(usage=__doc__)
    p.add_argument("command", choices=["create", "dump", "count"])
    p.add_argument("port", type=int)
    p.add_argument("stream")
    p.add_argument("rest", nargs="*")
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()
    try:
        c = Client(a.port, a.user, a.password)
        if a.command == "create":
            subject, window_s = a.rest[0], float(a.rest[1])
            answer = c.api("$JS.API.STREAM.CREATE." + a.stream, {
                "name": a.stream, "subjects": [subject], "storage": "file",
                "duplicate_window": int(window_s * 1e9)})
            print(json.dumps(answer["config"]))
        elif a.command == "count":
            print(c.api("$JS.API.STREAM.INFO." + a.stream, {})["state"]["messages"])
        else:
            state = c.api("$JS.API.STREAM.INFO." + a.stream, {})["state"]
            n = 0
            with open(a.rest[0], "w", encoding="utf-8") as out:
                if state["messages"]:
                    for seq in range(state["first_seq"], state["last_seq"] + 1):
                        m = c.api("$JS.API.STREAM.MSG.GET." + a.stream, {"seq": seq})["message"]
                        hdrs = base64.b64decode(m.get("hdrs", ""))
                        out.write(json.dumps({
                            "seq": m["seq"], "subject": m["subject"], "time": unix_time(m["time"]),
                            "headers": parse_headers(hdrs) if hdrs else [],
                            "headers_raw_b64": base64.b64encode(hdrs).decode(),
                            "body_b64": m.get("data", "")}) + "\n")
                        n += 1
            print(n)
    except (NatsError, OSError, ValueError, KeyError, IndexError) as e:
        sys.exit("nats_client.py %s: %s" % (a.command, e))


main()
