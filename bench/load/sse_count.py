#!/usr/bin/env python3
"""The GET /events subscriber of bench/load/run --observe: reads the stream and counts it.

usage: sse_count.py HOST PORT READY_FILE   (the token in $BENCH_EVENTS_TOKEN)

Sends GET /events with the token, checks the answer is 200 text/event-stream, writes READY_FILE
once the head is in (the runner waits for it before the load starts), then reads the stream to
its end (the server closes it when it stops, or SIGTERM) and prints one line:

  sse-result bytes=N events=N received=N queued=N other=N lost_comments=N first_id=N last_id=N

events: every frame's "event:" line; received / queued: webhook.received and job.queued;
lost_comments: the server's ": N events lost" comments (a subscriber the buffer wrapped under).
It reads in large chunks and counts with bytes.count, so that the reader itself costs the
client's core little (curl -N into a file would write a few hundred MB per run).
"""

import os
import signal
import socket
import sys

host, port, ready_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
token = os.environ["BENCH_EVENTS_TOKEN"]

stop = False


def on_term(_signum, _frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)

sock = socket.create_connection((host, port), timeout=10)
sock.sendall(
    f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
    "Accept: text/event-stream\r\n\r\n".encode()
)
head = b""
while b"\r\n\r\n" not in head:
    chunk = sock.recv(65536)
    if not chunk:
        sys.exit(f"sse_count: the stream closed before its head: {head[:200]!r}")
    head += chunk
head, _, rest = head.partition(b"\r\n\r\n")
status_line = head.split(b"\r\n", 1)[0]
if not status_line.startswith(b"HTTP/1.1 200") or b"text/event-stream" not in head.lower():
    sys.exit(f"sse_count: not an event stream: {head[:300]!r}")
with open(ready_file, "w") as f:
    f.write("ready\n")
sock.settimeout(0.5)

total_bytes = len(rest)
events = received = queued = lost = 0
first_id = last_id = None


def count(part):
    """Counts the complete lines of part (it ends with a newline)."""
    global events, received, queued, lost, first_id, last_id
    events += part.count(b"event: ")
    received += part.count(b"event: webhook.received\n")
    queued += part.count(b"event: job.queued\n")
    lost += part.count(b" events lost (the buffer wrapped)")
    if first_id is None:
        at = part.find(b"id: ")
        if at >= 0 and (at == 0 or part[at - 1 : at] == b"\n"):
            first_id = int(part[at + 4 : part.index(b"\n", at)])
    at = part.rfind(b"\nid: ")
    if at >= 0:
        last_id = int(part[at + 5 : part.index(b"\n", at + 1)])
    elif part.startswith(b"id: "):
        last_id = int(part[4 : part.index(b"\n")])


buf = rest
while not stop:
    try:
        chunk = sock.recv(1 << 20)
    except socket.timeout:
        continue
    except OSError:
        break
    if not chunk:
        break
    total_bytes += len(chunk)
    buf += chunk
    cut = buf.rfind(b"\n") + 1
    if cut:
        count(buf[:cut])
        buf = buf[cut:]
if buf:
    count(buf + b"\n")
other = events - received - queued
print(
    f"sse-result bytes={total_bytes} events={events} received={received} queued={queued} "
    f"other={other} lost_comments={lost} first_id={first_id or 0} last_id={last_id or 0}"
)
