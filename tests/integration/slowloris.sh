#!/usr/bin/env bash
# Slow clients against the real server: 300 connections from another address (127.0.0.2)
# trickle a byte a second, half of them a head that never ends (slowloris), half a body that
# never ends (slow POST), reopening whatever the server closes. Meanwhile curl sends signed
# webhooks from 127.0.0.1. The trickling connections are cut at timeouts.header (a head must be
# whole within it of its first byte) and timeouts.body (a body within it of its head), the ones
# over max_connections_per_ip are closed at once, all are counted, and the real client's
# requests keep getting 202 at the latency they had before the attack.
# With --tls (the slowloris_tls test) everything goes over TLS (server.tls, a test CA made here):
# each trickling connection first completes its handshake, then trickles inside the session; the
# real client is curl over HTTPS, a new handshake per request.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 openssl
tls=0
[[ ${1:-} != --tls ]] || tls=1
python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.2", 0))' 2>/dev/null ||
    skip "cannot bind 127.0.0.2 (the attacker needs an address of its own)"

if ((tls)); then
    need_tls_tools
    tls_make_ca
    tls_make_cert hooks "DNS:hooks.test"
fi
cat >"$WORKDIR/config.yaml" <<EOF
server:
  listen: ["127.0.0.1:0"]
  shards: 2
  max_connections_per_ip: 256
  timeouts: {header: 3s, body: 4s, idle: 60s}
$( ((tls == 0)) || tls_yaml hooks)
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/spool, durability: fsync}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
EOF
export GH_SECRET="slowloris-secret-$RANDOM"

# signed_requests COUNT OUT: COUNT signed webhooks from curl, one after another; OUT gets one
# "status seconds" line each (curl's time_total: connect to last byte).
signed_requests() {
    local i body sig
    : >"$2"
    for ((i = 0; i < $1; i++)); do
        body="{\"zen\":\"keep it logically awesome\",\"n\":$i,\"r\":$RANDOM}"
        sig=$(hmac_sha256_hex "$GH_SECRET" "$body")
        curl -sS -m 10 -o /dev/null -w '%{http_code} %{time_total}\n' -X POST \
            -H "Content-Type: application/json" -H "X-GitHub-Event: push" \
            -H "X-Hub-Signature-256: sha256=$sig" --data-binary "$body" \
            "${target[@]}" >>"$2" || echo "curl-failed 0" >>"$2"
    done
}

if ((tls)); then
    start_tls_server "$WORKDIR/config.yaml"
    target=(--cacert "$TLS_CA" --resolve "hooks.test:$TLS_PORT:127.0.0.1"
        "https://hooks.test:$TLS_PORT/webhooks/github")
    attacked=(--port "$TLS_PORT" --tls-ca "$TLS_CA")
else
    start_server "$WORKDIR/config.yaml"
    target=("http://127.0.0.1:$PORT/webhooks/github")
    attacked=(--port "$PORT")
fi
signed_requests 30 "$WORKDIR/before.txt"

export PYTHONPATH="$here"
python3 - "${attacked[@]}" --count 300 --seconds 12 --out "$WORKDIR/attack.json" <<'PY' &
import argparse, json, selectors, socket, ssl, sys, time
import tls_client
p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--count", type=int, required=True)
p.add_argument("--seconds", type=float, required=True)
p.add_argument("--out", required=True)
p.add_argument("--tls-ca")
args = p.parse_args()
port, count, duration, out = args.port, args.count, args.seconds, args.out
tls = tls_client.context(args.tls_ca) if args.tls_ca else None
HEAD = (b"POST /webhooks/github HTTP/1.1\r\nHost: t\r\nX-Padding-0: " + b"a" * 200)
BODY_HEAD = (b"POST /webhooks/github HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
             b"X-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\nContent-Length: 1000\r\n\r\n")
sel = selectors.DefaultSelector()
conns = {}
report = {"opened": 0, "refused_at_once": 0, "answered": {"header": [], "body": []},
          "closed_unanswered_late": 0, "other_answers": []}
start = time.monotonic()

def open_slot(slot):
    opened = time.monotonic()
    if tls:
        # The handshake first (blocking); one the server refuses at once is a connection over
        # max_connections_per_ip, closed before any byte.
        try:
            s = tls_client.connect(port, "hooks.test", None, ctx=tls, timeout=5, bind="127.0.0.2")
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            report["opened"] += 1
            report["refused_at_once"] += 1
            reopen.append(slot)
            return
    else:
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
    s.setblocking(False)
    kind = "header" if slot % 2 == 0 else "body"
    c = {"slot": slot, "kind": kind, "opened": opened, "sent": 0, "data": b""}
    if kind == "body":
        s.send(BODY_HEAD)  # the head is whole: the body's deadline starts now
    else:
        s.send(HEAD[:1])
        c["sent"] = 1
    conns[s] = c
    sel.register(s, selectors.EVENT_READ)
    report["opened"] += 1

def closed(s, c):
    sel.unregister(s)
    s.close()
    del conns[s]
    life = time.monotonic() - c["opened"]
    if c["data"].startswith(b"HTTP/1.1 408"):
        report["answered"][c["kind"]].append(life)
    elif c["data"]:
        report["other_answers"].append(c["data"][:40].decode(errors="replace"))
    elif life < 0.5:
        report["refused_at_once"] += 1
    else:
        report["closed_unanswered_late"] += 1
    reopen.append(c["slot"])

reopen = list(range(count))
next_round = time.monotonic()
while time.monotonic() - start < duration:
    now = time.monotonic()
    if now >= next_round:
        # Once a second: reopen what was closed, then one more byte on every connection.
        slots, reopen = reopen, []
        for slot in slots:
            open_slot(slot)
        for s, c in list(conns.items()):
            try:
                if c["kind"] == "header":
                    s.send(HEAD[c["sent"] % len(HEAD):][:1])
                else:
                    s.send(b"x")
                c["sent"] += 1
            except (BlockingIOError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass
        next_round += 1.0
    for key, _ in sel.select(timeout=0.05):
        s = key.fileobj
        c = conns[s]
        try:
            chunk = s.recv(4096)
            # Over TLS, what decrypted beyond 4096 bytes waits in the session, not the socket.
            while chunk and tls and s.pending():
                chunk += s.recv(s.pending())
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            continue  # part of a record: the rest comes with the next read
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        if chunk:
            c["data"] += chunk
        if not chunk or b"\r\n\r\n" in c["data"]:
            closed(s, c)
report["open_at_end"] = len(conns)
json.dump(report, open(out, "w"))
PY
attacker=$!
at_exit "kill $attacker 2>/dev/null"
sleep 2
signed_requests 40 "$WORKDIR/during.txt"
wait "$attacker" || fail "the attacking client failed"
stop_server

python3 - "$WORKDIR/before.txt" "$WORKDIR/during.txt" "$WORKDIR/attack.json" <<'PY' ||
import json, statistics, sys
def load(path):
    rows = [l.split() for l in open(path)]
    bad = [r for r in rows if r[0] != "202"]
    assert not bad, f"{path}: not every signed request got 202: {bad[:3]}"
    return [float(r[1]) for r in rows]
before, during = load(sys.argv[1]), load(sys.argv[2])
b, d = statistics.median(before), statistics.median(during)
print(f"signed requests: median {b * 1000:.2f} ms before, {d * 1000:.2f} ms under attack "
      f"(max {max(during) * 1000:.2f} ms)")
assert d <= 2 * b + 0.005, "the attack slowed real clients down"
assert max(during) < 1.0, "a real client waited over a second"
a = json.load(open(sys.argv[3]))
hdr, body = a["answered"]["header"], a["answered"]["body"]
print(f"attacker: {a['opened']} connections opened, {a['refused_at_once']} closed at once "
      f"(over max_connections_per_ip), {len(hdr)} slowloris heads cut after "
      f"{min(hdr):.2f}..{max(hdr):.2f} s, {len(body)} slow bodies cut after "
      f"{min(body):.2f}..{max(body):.2f} s")
assert not a["other_answers"], a["other_answers"]
assert a["closed_unanswered_late"] == 0, a
assert a["refused_at_once"] >= 44, "300 connections of one client, 256 allowed"
assert len(hdr) >= 128 and len(body) >= 128, "every held connection is cut"
assert 2.9 <= min(hdr) and max(hdr) <= 4.5, "slowloris: cut at timeouts.header (3 s)"
assert 3.9 <= min(body) and max(body) <= 5.5, "slow POST: cut at timeouts.body (4 s)"
json.dump({"header": len(hdr), "body": len(body), "refused": a["refused_at_once"]},
          open(sys.argv[3] + ".counts", "w"))
PY
    fail "slow clients"

# The server counted what the attacker saw (it may have cut a few more heads and bodies just as
# the attacker stopped).
stopped=$(grep -F '"msg":"stopped"' "$SERVER_LOG")
python3 - "$stopped" "$WORKDIR/attack.json.counts" <<'PY' || fail "stopped line: $stopped"
import json, sys
line, seen = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))
assert line["header_timeouts"] >= seen["header"], (line, seen)
assert line["body_timeouts"] >= seen["body"], (line, seen)
# Every connection closed at once was one of these: none was cut for another reason.
assert line["refused_per_ip"] == seen["refused"], (line, seen)
print(f"server counted {line['header_timeouts']} header timeouts, {line['body_timeouts']} body "
      f"timeouts, {line['refused_per_ip']} connections over max_connections_per_ip")
PY
echo "slowloris: ok"
