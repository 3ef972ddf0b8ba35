#!/usr/bin/env bash
# server.max_connections holds over all shards: connections past it are closed at once, and
# once one of the open ones goes away a new one is served again.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3

write_config "$WORKDIR/config.yaml"
sed -i 's/shards: 2}/shards: 2, max_connections: 3}/' "$WORKDIR/config.yaml"
export GH_SECRET=unused GL_TOKEN=unused
start_server "$WORKDIR/config.yaml"

python3 - "$PORT" <<'PY' || fail "connection limit"
import socket, sys, time
port = int(sys.argv[1])

def healthz(s):
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while b"\r\n\r\nok" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return False
        data += chunk
    return data.startswith(b"HTTP/1.1 200")

def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s

held = [connect() for _ in range(3)]
for s in held:
    assert healthz(s), "a connection within the limit was not served"
extra = connect()
try:
    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    answer = extra.recv(4096)
except (ConnectionResetError, BrokenPipeError):
    answer = b""
assert answer == b"", f"the 4th connection was served: {answer[:40]!r}"
print("4th connection closed unanswered")
held.pop().close()
deadline = time.time() + 5
while True:
    s = connect()
    try:
        if healthz(s):
            break
    except (ConnectionResetError, BrokenPipeError):
        pass
    s.close()
    assert time.time() < deadline, "no connection served after one was freed"
    time.sleep(0.05)
print("served again after one connection was freed")
PY
stop_server
echo "connection_limit: ok"
