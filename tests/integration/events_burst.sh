#!/usr/bin/env bash
# GET /events under a burst (issue 16; found by bench/load/run --observe): a subscriber that reads
# everything it is sent is not cut, and it gets a webhook.received and a job.queued for each of
# 1,500 webhooks sent pipelined on 4 connections at once (about 600 KB of frames, 3,000 events:
# fewer than a shard's queue of 4,096 holds, so none may be dropped either).
#
# It failed before the fix (3 runs of 3: the stream cut, 0 events read): the control plane drained
# the shards' queues once per idle turn (50 ms) and cut a stream whose frames just collected passed
# 256 KiB even with no send in flight. Now a stream is cut only when frames pile up behind a send
# in flight, and the queues are drained every 2 ms while events flow.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3 sha256sum

WATCHER=$("$PORTCULLIS" token new | sed -n 's/^token: *//p')
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 1}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/spool, durability: none}
routes:
  open: {path: /webhooks/open, verify: {scheme: none}}
tokens:
  watcher: {sha256: "$(printf %s "$WATCHER" | sha256sum | cut -d' ' -f1)", scopes: ["events:read"]}
EOF
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"

# One process: a thread reads the stream as fast as it comes (and counts its frames), the main
# thread writes the burst and reads every answer, then waits (20 s at most) for the frames.
BENCH_TOKEN=$WATCHER python3 - "$PORT" "$ADMIN_PORT" >"$WORKDIR/burst.txt" 2>&1 <<'PY' ||
import os, socket, sys, threading, time

port, admin = int(sys.argv[1]), int(sys.argv[2])
CONNS, EACH = 4, 375
want = 2 * CONNS * EACH
seen = {"received": 0, "queued": 0, "eof": False}

sub = socket.create_connection(("127.0.0.1", admin), timeout=10)
sub.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {os.environ['BENCH_TOKEN']}\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    chunk = sub.recv(65536)
    assert chunk, "the stream closed before its head"
    head += chunk
head, _, first = head.partition(b"\r\n\r\n")
assert head.startswith(b"HTTP/1.1 200"), head


def read_stream(buf):
    while True:
        cut = buf.rfind(b"\n") + 1
        seen["received"] += buf[:cut].count(b"event: webhook.received\n")
        seen["queued"] += buf[:cut].count(b"event: job.queued\n")
        buf = buf[cut:]
        try:
            chunk = sub.recv(1 << 20)
        except OSError:
            chunk = b""
        if not chunk:
            seen["eof"] = True
            return
        buf += chunk


threading.Thread(target=read_stream, args=(first,), daemon=True).start()

body = b'{"n":1}'
req = (f"POST /webhooks/open HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
conns = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(CONNS)]
for c in conns:
    c.sendall(req * EACH)
for c in conns:
    got = b""
    while got.count(b"HTTP/1.1 ") < EACH:
        chunk = c.recv(1 << 20)
        assert chunk, f"a connection closed after {got.count(b'HTTP/1.1 ')} answers"
        got += chunk
    assert got.count(b"HTTP/1.1 202 ") == EACH, got[:300]
    c.close()
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not seen["eof"]:
    if seen["received"] + seen["queued"] >= want:
        break
    time.sleep(0.05)
print(f"received={seen['received']} queued={seen['queued']} want={want // 2} each eof={seen['eof']}")
PY
    fail "the burst client failed: $(cat "$WORKDIR/burst.txt")"
echo "burst: $(cat "$WORKDIR/burst.txt")"
stop_server
stopped=$(grep '"msg":"control plane stopped"' "$SERVER_LOG" | tail -1)
cut=$(grep -o '"event_streams_cut":[0-9]*' <<<"$stopped" | cut -d: -f2)
dropped=$(grep -o '"events_dropped":[0-9]*' <<<"$stopped" | cut -d: -f2)
expect_eq "streams cut (the subscriber read everything it was sent)" 0 "$cut"
expect_eq "events dropped (3,000 fit in a shard's queue)" 0 "$dropped"
expect_eq "frames read" "received=1500 queued=1500 want=1500 each eof=False" "$(cat "$WORKDIR/burst.txt")"
echo "PASS: a subscriber that keeps up gets every event of a burst"
