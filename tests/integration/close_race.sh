#!/usr/bin/env bash
# Closing one connection never touches another: answers that close the connection (shut the
# sending side down, then linger) race clients that hang up as soon as they read them, while
# other clients open fresh connections, which reuse the descriptor numbers just freed, and must
# each get their whole answer. (A shutdown still in the kernel's worker when its descriptor was
# closed once hit whichever socket took the number next: the slowloris test found it.)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3

write_config "$WORKDIR/config.yaml"
export GH_SECRET=unused GL_TOKEN=unused
start_server "$WORKDIR/config.yaml"

PYTHONPATH="$here" python3 - "$PORT" <<'PY' || fail "a connection was cut by another one's close"
import socket, sys, threading, time
from http_client import ProtocolError, Reader
port = int(sys.argv[1])
stop = time.monotonic() + 4
counts = {"closers": 0, "served": 0}
failures = []

def read_answer(s):
    r = Reader(s).read_response(time.monotonic() + 5)
    return b"" if r is None else b"HTTP/1.1 %d %s" % (r.status, r.body)

def closer():
    # 404 with Connection: close and an unread body behind it: the server answers, shuts its
    # side down and lingers; this client hangs up as soon as it has the answer.
    while time.monotonic() < stop:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        read_answer(s)
        s.close()
        counts["closers"] += 1

def client():
    while time.monotonic() < stop:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            answer = read_answer(s)
        except (OSError, ProtocolError) as e:
            answer = repr(e).encode()
        s.close()
        if answer != b"HTTP/1.1 200 ok":
            failures.append(answer[:60])
        counts["served"] += 1

threads = [threading.Thread(target=closer) for _ in range(3)] + \
          [threading.Thread(target=client) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"{counts['closers']} closing answers raced {counts['served']} fresh connections; "
      f"{len(failures)} of those were cut: {failures[:3]}")
assert counts["closers"] > 500 and counts["served"] > 500, "too little traffic to race"
assert not failures
PY
stop_server
echo "close_race: ok"
