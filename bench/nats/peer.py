#!/usr/bin/env python3
"""The peer of bench/nats_sink_load: the fastest publisher this machine runs against the same
nats-server, in Python asyncio speaking the NATS protocol itself (no client library, whose
per-message futures cost more than the protocol): `in_flight` HPUBs with the same headers and body
size as portcullis's kept in flight, each ack parsed and replaced by a new publish in one write.

  peer.py create PORT           # the stream BENCH on bench.> (file storage), made anew: an empty
                                # store and duplicate window (a Nats-Msg-Id seen before, e.g. in a
                                # previous run, is acknowledged as a duplicate without being stored)
  peer.py publish PORT [in_flight=256] [seconds=5] [body_bytes=1024]
"""
import asyncio
import json
import sys
import time


async def handshake(port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await r.readline()  # INFO
    w.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n'
            b"SUB _INBOX.peer.* 1\r\nPING\r\n")
    while (await r.readline()) != b"PONG\r\n":
        pass
    return r, w


async def create(port):
    r, w = await handshake(port)
    cfg = json.dumps({"name": "BENCH", "subjects": ["bench.>"], "storage": "file"}).encode()
    w.write(b"PUB $JS.API.STREAM.DELETE.BENCH _INBOX.peer.0 0\r\n\r\n")
    line = await r.readline()
    await r.readexactly(int(line.split()[-1]) + 2)  # deleted, or "stream not found"
    w.write(b"PUB $JS.API.STREAM.CREATE.BENCH _INBOX.peer.0 %d\r\n%s\r\n" % (len(cfg), cfg))
    line = await r.readline()
    size = int(line.split()[-1])
    payload = await r.readexactly(size + 2)
    if b'"error"' in payload:
        sys.exit("stream create: " + payload.decode())
    w.close()


async def publish(port, in_flight, seconds, body_bytes):
    r, w = await handshake(port)
    body = b"x" * body_bytes
    fixed = (b"NATS/1.0\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\n"
             b"Portcullis-Attempt: 1\r\nPortcullis-Route: github\r\n"
             b"Portcullis-Received-At: 2026-12-06T12:00:00.000Z\r\n")
    serial = 0

    def frame():
        nonlocal serial
        serial += 1
        hdr = b"%sPortcullis-Job-Id: 01jd3v8x7e0k4s9q2m%08d\r\nNats-Msg-Id: 01jd3v8x7e0k4s9q2m%08d\r\n\r\n" % (
            fixed, serial, serial)
        return b"HPUB bench.github _INBOX.peer.%d %d %d\r\n%s%s\r\n" % (
            serial, len(hdr), len(hdr) + len(body), hdr, body)

    w.write(b"".join(frame() for _ in range(in_flight)))
    buf = b""
    acked = failed = 0
    begin = time.monotonic()
    end = begin + seconds
    outstanding = in_flight
    while True:
        now = time.monotonic()
        if now >= end and outstanding == 0:
            break
        data = await r.read(1 << 16)
        if not data:
            sys.exit("connection closed")
        buf += data
        done = 0
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            line = buf[pos:eol]
            if line.startswith(b"MSG") or line.startswith(b"HMSG"):
                total = int(line.rsplit(b" ", 1)[1])
                if len(buf) < eol + 2 + total + 2:
                    break
                payload = buf[eol + 2:eol + 2 + total]
                if b'"seq"' in payload:
                    acked += 1
                else:
                    failed += 1
                done += 1
                pos = eol + 2 + total + 2
            else:
                if line == b"PING":
                    w.write(b"PONG\r\n")
                pos = eol + 2
        buf = buf[pos:]
        outstanding -= done
        if done and time.monotonic() < end:
            w.write(b"".join(frame() for _ in range(done)))
            outstanding += done
    elapsed = time.monotonic() - begin
    print(json.dumps({"publishes_per_s": round(acked / elapsed), "acknowledged": acked,
                      "failed": failed, "in_flight": in_flight, "body_bytes": body_bytes,
                      "seconds": round(elapsed, 2)}))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    port = int(sys.argv[2])
    if sys.argv[1] == "create":
        asyncio.run(create(port))
    else:
        args = [int(a) for a in sys.argv[3:]]
        in_flight, seconds, body_bytes = (args + [256, 5, 1024][len(args):])[:3]
        asyncio.run(publish(port, in_flight, seconds, body_bytes))


main()
