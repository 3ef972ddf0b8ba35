#!/usr/bin/env bash
# server.client_ip.proxy_protocol with the real server, the PROXY headers written by a few lines
# of Python from the HAProxy specification (not by portcullis): versions 1 and 2 (IPv4, IPv6,
# TLVs, LOCAL), a header arriving byte by byte, a header and two pipelined requests in one
# segment. The named client is what the job stores and what server.deny and
# max_connections_per_ip see; a connection without a valid header, from a peer outside
# trusted_proxies, or whose header stalls past timeouts.header, is closed unanswered and
# counted. Then `proxy_protocol: v1` refuses v2.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3

SPOOL="$WORKDIR/spool"
cat >"$WORKDIR/config.yaml" <<EOF
server:
  listen: ["127.0.0.1:0"]
  shards: 2
  max_connections_per_ip: 3
  timeouts: {header: 2s}
  deny: ["203.0.113.0/24"]
  client_ip: {trusted_proxies: ["127.0.0.1/32"], proxy_protocol: any}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync}
routes:
  open: {path: /webhooks/open, verify: {scheme: none}}
EOF

cat >"$WORKDIR/proxy.py" <<'PY'
"""PROXY protocol headers as the HAProxy specification (proxy-protocol.txt) defines them, and a
client that sends one before its HTTP request."""
import ipaddress, socket, struct, sys, time
from http_client import Reader

SIG_V2 = b"\r\n\r\n\x00\r\nQUIT\n"

def v1(src, dst=None, sport=40000, dport=8080):
    fam = "TCP6" if ":" in src else "TCP4"
    if dst is None:
        dst = "2001:db8::1" if fam == "TCP6" else "192.0.2.1"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()

def v2(src, dst=None, sport=40000, dport=8080, tlvs=b"", local=False):
    a = ipaddress.ip_address(src)
    if dst is None:
        dst = "192.0.2.1" if a.version == 4 else "2001:db8::1"
    b = ipaddress.ip_address(dst)
    fam = 0x11 if a.version == 4 else 0x21
    block = a.packed + b.packed + struct.pack("!HH", sport, dport) + tlvs
    cmd = 0x20 if local else 0x21
    return SIG_V2 + bytes([cmd, fam]) + struct.pack("!H", len(block)) + block

def tlv(kind, value):
    return bytes([kind]) + struct.pack("!H", len(value)) + value

def request(n=1):
    body = b'{"n":%d}' % n
    return (b"POST /webhooks/open HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body

def connect(port, bind=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    if bind:
        s.bind((bind, 0))
    s.connect(("127.0.0.1", port))
    return s

def read_answers(s, count):
    """count answers as (status, body), or None when the connection ends first."""
    reader = Reader(s)
    out = []
    for _ in range(count):
        r = reader.read_response(time.monotonic() + 10)
        if r is None:
            return None
        out.append((r.status, r.body))
    return out

def closed_unanswered(s):
    """True when the server closes the connection without a byte."""
    reader = Reader(s)
    return reader.wait_eof(time.monotonic() + 10) and reader.buf == b""
PY

start_server "$WORKDIR/config.yaml"
export PYTHONPATH="$here:$WORKDIR"
python3 - "$PORT" "$WORKDIR" <<'PY' || fail "PROXY protocol (any)"
import json, sys, time
from proxy import *
port = int(sys.argv[1])
ids = {}

def one(name, header, send_bytewise=False, expect=202):
    s = connect(port)
    data = header + request()
    if send_bytewise:
        for i in range(len(header)):
            s.sendall(data[i:i + 1])
            time.sleep(0.002)
        s.sendall(data[len(header):])
    else:
        s.sendall(data)
    answers = read_answers(s, 1)
    assert answers is not None, f"{name}: connection closed unanswered"
    status, body = answers[0]
    assert status == expect, f"{name}: expected {expect}, got {status} {body!r}"
    if status == 202:
        ids[name] = json.loads(body)["id"]
    s.close()
    print(f"{name}: {status}")

one("v2 ipv4", v2("198.51.100.20"))
one("v2 ipv6", v2("2001:db8:20::7"))
one("v1 ipv4", v1("198.51.100.21"))
one("v1 ipv6", v1("2001:db8:21::7"))
one("v2 with TLVs", v2("198.51.100.22", tlvs=tlv(0x02, b"hooks.example.com") + tlv(0x03, b"\0\0\0\0")))
one("v2 byte by byte", v2("198.51.100.23"), send_bytewise=True)
one("v1 byte by byte", v1("198.51.100.24"), send_bytewise=True)
one("v2 LOCAL keeps the peer", v2("198.51.100.99", local=True))
one("server.deny sees the named client", v2("203.0.113.5"), expect=403)

# A header and two pipelined requests in one segment.
s = connect(port)
s.sendall(v2("198.51.100.25") + request(1) + request(2))
answers = read_answers(s, 2)
assert answers is not None and [a[0] for a in answers] == [202, 202], answers
ids["pipelined"] = json.loads(answers[0][1])["id"]
s.close()
print("header + 2 pipelined requests: 202 202")

# Refused: no header, a broken one, a peer that is not a trusted proxy (even with a valid one).
for name, data, bind in [
        ("plain HTTP", request(), None),
        ("bad v2 version", SIG_V2 + b"\x11\x11\x00\x0c" + bytes(12) + request(), None),
        ("v1 with a bad address", b"PROXY TCP4 198.51.100.300 192.0.2.1 1 2\r\n" + request(), None),
        ("untrusted peer", v2("198.51.100.26") + request(), "127.0.0.2")]:
    s = connect(port, bind)
    s.sendall(data)
    assert closed_unanswered(s), f"{name}: answered"
    s.close()
    print(f"{name}: closed unanswered")

# A header that stops half-way is cut at timeouts.header (2 s), unanswered.
s = connect(port)
s.sendall(v2("198.51.100.27")[:10])
started = time.monotonic()
assert closed_unanswered(s), "a stalled PROXY header was answered"
waited = time.monotonic() - started
assert 1.8 <= waited <= 4, f"a stalled PROXY header was cut after {waited:.2f} s, not 2 s"
s.close()
print(f"stalled header: closed unanswered after {waited:.2f} s")

# max_connections_per_ip (3) counts the client the balancer names, over both shards.
held = []
for i in range(3):
    s = connect(port)
    s.sendall(v2("198.51.100.30", sport=41000 + i) + request())
    assert read_answers(s, 1)[0][0] == 202, f"connection {i} of the client"
    held.append(s)
s = connect(port)
s.sendall(v2("198.51.100.30", sport=41003) + request())
assert closed_unanswered(s), "the 4th connection of one client was served"
s.close()
s = connect(port)
s.sendall(v2("198.51.100.31") + request())
assert read_answers(s, 1)[0][0] == 202, "another client behind the same balancer"
held.append(s)
held.pop(0).close()
deadline = time.time() + 5
while True:
    s = connect(port)
    s.sendall(v2("198.51.100.30", sport=41004) + request())
    a = read_answers(s, 1)
    s.close()
    if a is not None:
        assert a[0][0] == 202, a
        break
    assert time.time() < deadline, "the client was not served again after one connection closed"
    time.sleep(0.05)
print("max_connections_per_ip: 3 served, the 4th closed, served again after one closed")
for s in held:
    s.close()
json.dump(ids, open(sys.argv[2] + "/ids.json", "w"))
PY
stop_server
stopped=$(grep -F '"msg":"stopped"' "$SERVER_LOG")
[[ $stopped == *'"proxy_refused":4'* ]] || fail "stopped line does not count 4 PROXY refusals: $stopped"
[[ $stopped =~ \"refused_per_ip\":([0-9]+) ]] && ((BASH_REMATCH[1] >= 1)) ||
    fail "stopped line does not count the per-client refusal: $stopped"
grep -F '"msg":"PROXY header refused"' "$SERVER_LOG" | grep -F '"error":"bad_version"' >/dev/null ||
    fail "the log does not say why a PROXY header was refused"
[[ $stopped == *'"header_timeouts":1'* ]] || fail "the stalled header is not counted: $stopped"
grep -qF '"phase":"proxy"' "$SERVER_LOG" || fail "the stalled header's timeout is not logged"

spool_dump "$SPOOL" "$WORKDIR/dump.jsonl"
python3 - "$WORKDIR/dump.jsonl" "$WORKDIR/ids.json" <<'PY' || fail "stored client addresses"
import json, sys
jobs = {j["id"]: j for j in map(json.loads, open(sys.argv[1]))}
ids = json.load(open(sys.argv[2]))
want = {"v2 ipv4": "198.51.100.20", "v2 ipv6": "2001:db8:20::7", "v1 ipv4": "198.51.100.21",
        "v1 ipv6": "2001:db8:21::7", "v2 with TLVs": "198.51.100.22",
        "v2 byte by byte": "198.51.100.23", "v1 byte by byte": "198.51.100.24",
        "v2 LOCAL keeps the peer": "127.0.0.1", "pipelined": "198.51.100.25"}
for name, ip in want.items():
    got = jobs[ids[name]]["source_ip"]
    assert got == ip, f"{name}: source_ip {got}, expected {ip}"
print(f"{len(want)} jobs store the client the header named")
PY

# proxy_protocol: v1 refuses a v2 header; without trusted_proxies any peer may send one.
sed -i 's/client_ip: {.*}/client_ip: {proxy_protocol: v1}/' "$WORKDIR/config.yaml"
start_server "$WORKDIR/config.yaml"
python3 - "$PORT" <<'PY' || fail "PROXY protocol (v1 only)"
import sys
from proxy import *
port = int(sys.argv[1])
s = connect(port)
s.sendall(v2("198.51.100.40") + request())
assert closed_unanswered(s), "a v2 header was accepted under proxy_protocol: v1"
s = connect(port, "127.0.0.2")
s.sendall(v1("198.51.100.41") + request())
assert read_answers(s, 1)[0][0] == 202, "v1 from any peer without trusted_proxies"
print("v1 only: v2 refused, v1 served")
PY
stop_server
echo "proxy_protocol: ok"
