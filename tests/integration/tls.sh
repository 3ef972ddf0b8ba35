#!/usr/bin/env bash
# server.tls against the real binary with real clients (curl, openssl s_client, Python's ssl;
# all OpenSSL, none of them the server's BoringSSL), two shards, a test CA made here by openssl
# (a root the clients trust, an intermediate the server must send with each leaf):
#   - signed GitHub webhooks over HTTPS: 202, the job stored byte for byte (1 KB and 100 KB
#     bodies, over many records), a bad signature gets the bare 401;
#   - TLS 1.3 and 1.2 are served, 1.1 and 1.0 refused by the server (the client did send its
#     ClientHello); min_version "1.3" refuses 1.2;
#   - SNI picks the certificate (two names, a wildcard, any letter case); no SNI or an unknown
#     name gets the first one;
#   - ALPN: h2,http/1.1 gets http/1.1, h2 alone never gets h2;
#   - session resumption, TLS 1.3 and 1.2: 20 reconnects with one ticket are all resumed, on
#     both shards (each reconnect queues a job, and a job id names its shard); a session is not
#     resumed under another name (RFC 6066 section 3); tickets offer no 0-RTT;
#   - plain HTTP sent to the TLS port gets a plain 400 {"error":"tls_required"} and a close,
#     random bytes a close without an answer, both at once, both counted, and the server keeps
#     serving; half a ClientHello that stalls is cut at timeouts.header, unanswered; after the
#     handshake a head has a timeouts.header of its own (a 408, like plain HTTP);
#   - SIGHUP with a renewed certificate: the next handshakes get it, sessions made with the old
#     one are not resumed (those of unchanged certificates are), a connection opened before
#     keeps working; a broken file (or a key that does not match) on SIGHUP refuses the reload,
#     keeps the certificate in use and the log says why;
#   - session_tickets: false: no ticket; SIGTERM with TLS connections open: the
#     request in flight is answered, the idle ones closed, the server exits 0;
#   - a PROXY v1 header in plaintext before the ClientHello on a TLS-only server: served, and
#     the job stores the address the header names.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3 timeout
need_tls_tools
export PYTHONPATH="$here"

export GH_SECRET="tls: it's a secret to everybody $RANDOM"
SPOOL="$WORKDIR/spool"
HEADER_TIMEOUT_S=2

tls_make_ca
tls_make_cert a "DNS:a.test"                          # the default: first in the list
tls_make_cert b "DNS:b.test" rsa
tls_make_cert wild "DNS:*.wild.test" ed25519

# server_config FILE SPOOL [extra server.tls keys...]: plain and TLS listeners, two shards.
server_config() {
    local file=$1 spool=$2
    shift 2
    {
        cat <<EOF
server:
  listen: ["127.0.0.1:0"]
  shards: 2
  timeouts: {header: ${HEADER_TIMEOUT_S}s, body: 5s, idle: 30s}
EOF
        tls_yaml a b wild
        local extra
        for extra in "$@"; do
            echo "    $extra"
        done
        cat <<EOF
admin: {listen: "127.0.0.1:0"}
spool: {dir: $spool, durability: fsync}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
  open: {path: /webhooks/open, verify: {scheme: none}}
EOF
    } >"$file"
}

server_config "$WORKDIR/config.yaml" "$SPOOL" 'min_version: "1.2"' 'session_tickets: true'
start_tls_server "$WORKDIR/config.yaml"
[[ -n $PORT ]] || fail "no plain listening line next to the TLS one"
echo "TLS on port $TLS_PORT, plain HTTP on $PORT"

# GitHub webhooks over HTTPS -------------------------------------------------------------------
declare -A JOBS=() # job id -> body file
post_github() {
    local name=$1 file=$2
    local sig
    sig=$(hmac_sha256_hex_file "$GH_SECRET" "$file")
    tls_post "$name" /webhooks/github "$file" -H 'Content-Type: application/json' \
        -H 'X-GitHub-Event: push' -H "X-Hub-Signature-256: sha256=$sig"
}

printf '{"zen":"Keep it logically awesome.","text":"Grüße, 漢字, 🚀","pad":"%s"}' \
    "$(head -c 900 /dev/zero | tr '\0' 'x')" >"$WORKDIR/small.json"
python3 -c 'import json, os, sys
json.dump({"commits": [{"id": os.urandom(20).hex(), "message": "ü" * 50} for _ in range(600)]},
          open(sys.argv[1], "w"), ensure_ascii=False)' "$WORKDIR/large.json"
for case in "a.test small" "a.test large" "b.test small" "x.wild.test small"; do
    read -r name size <<<"$case"
    post_github "$name" "$WORKDIR/$size.json"
    expect_queued "https://$name ($size body, $(wc -c <"$WORKDIR/$size.json") bytes)"
    JOBS[$JOB_ID]="$WORKDIR/$size.json"
    grep -q 'SSL certificate verify ok' "$HTTP_TRACE" ||
        fail "curl did not verify the certificate of $name: $(grep '^\*' "$HTTP_TRACE" | head)"
done
echo "curl --cacert: 4 signed webhooks queued (a.test, b.test, x.wild.test; 1 KB and $(wc -c <"$WORKDIR/large.json") bytes)"

post_url "https://a.test:$TLS_PORT/webhooks/github" "$WORKDIR/small.json" \
    --cacert "$TLS_CA" --resolve "a.test:$TLS_PORT:127.0.0.1" \
    -H "X-Hub-Signature-256: sha256=$(printf '0%.0s' {1..64})"
expect_unauthorized "https: a wrong signature"
post_github no-such-name.test "$WORKDIR/small.json"
[[ $HTTP_STATUS == curl-failed-60 ]] ||
    fail "curl to a name no certificate has should fail verification (60), got $HTTP_STATUS"
echo "a bad signature over TLS: 401; a name the default certificate lacks: curl refuses it (60)"

# Versions --------------------------------------------------------------------------------------
printf 'GET /healthz HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n' >"$WORKDIR/healthz.req"

# expect_served OUT WHAT: the handshake in OUT (s_client's output) succeeded, was verified, and
# the request got its answer.
expect_served() {
    grep -q '^Verification: OK' "$1" || fail "$2: not verified: $(grep -i verif "$1" | head -3)"
    grep -q '^HTTP/1.1 200' "$1" || fail "$2: no 200 for GET /healthz: $(tail -n 5 "$1")"
}

for v in 1.3 1.2; do
    rc=0
    TLS_STDIN="$WORKDIR/healthz.req" tls_s_client "$WORKDIR/v$v.out" -servername a.test \
        "-tls${v/./_}" -ign_eof || rc=$?
    [[ $rc == 0 ]] || fail "TLS $v: s_client exited $rc: $(tail -n 5 "$WORKDIR/v$v.out")"
    grep -q "^New, TLSv$v," "$WORKDIR/v$v.out" ||
        fail "TLS $v: negotiated $(grep -m1 -E '^(New|Reused),' "$WORKDIR/v$v.out")"
    expect_served "$WORKDIR/v$v.out" "TLS $v"
    echo "TLS $v: served ($(grep -m1 -o 'Cipher is .*' "$WORKDIR/v$v.out"))"
done

# expect_refused_version FLAG VERSION_TEXT WHAT: s_client with only that version (and every
# cipher allowed, so that the client is willing) sends a ClientHello for it and the server
# refuses the handshake.
expect_refused_version() {
    local flag=$1 version=$2 what=$3 out="$WORKDIR/refused$1.out" rc=0
    tls_s_client "$out" -servername a.test "$flag" -cipher 'DEFAULT@SECLEVEL=0' -msg || rc=$?
    grep -q "^>>> $version, Handshake \[length [0-9a-f]*\], ClientHello" "$out" ||
        fail "$what: s_client sent no $version ClientHello, so this proves nothing: $(head -n 5 "$out")"
    [[ $rc != 0 ]] || fail "$what: the handshake succeeded: $(grep -m1 'Protocol *:' "$out")"
    ! grep -q "^ *Protocol *: $version" "$out" || fail "$what: negotiated"
    ! grep -q '^<<< .*ServerHello' "$out" || fail "$what: the server answered with a ServerHello"
    local answer
    answer=$(grep -m1 '^<<< .*Alert' "$out" || true)
    [[ -n $answer ]] || answer="closed without an alert ($(grep -m1 -i 'error' "$out" || true))"
    echo "$what: refused, the server's answer: $answer"
    REFUSAL_ALERT=$answer
}
expect_refused_version -tls1_1 "TLS 1.1" "TLS 1.1"
expect_refused_version -tls1 "TLS 1.0" "TLS 1.0"
[[ $REFUSAL_ALERT == *protocol_version* || $REFUSAL_ALERT == closed* ]] ||
    fail "TLS 1.0 refused with an unexpected alert: $REFUSAL_ALERT"

# SNI -------------------------------------------------------------------------------------------
# expect_cert WHAT PEM [s_client arguments]: the server sends the leaf of the PEM file (a name
# stands for $TLS_DIR/NAME.pem), followed by the intermediate, and the chain verifies.
expect_cert() {
    local what=$1 want=$2
    shift 2
    [[ $want == */* ]] || want="$TLS_DIR/$want.pem"
    tls_served_cert "$WORKDIR/served.pem" "$@"
    local got
    got=$(cert_fingerprint "$WORKDIR/served.pem")
    [[ $got == "$(cert_fingerprint "$want")" ]] ||
        fail "$what: served $(cert_subject "$WORKDIR/served.pem") ($got), expected $(cert_subject "$want") ($(cert_fingerprint "$want"))"
    grep -q '^Verification: OK' "$WORKDIR/served.pem.log" ||
        fail "$what: the chain does not verify: $(grep -m1 'Verify return code' "$WORKDIR/served.pem.log")"
    local chain
    chain=$(grep -c -- '-----BEGIN CERTIFICATE-----' "$WORKDIR/served.pem.log")
    [[ $chain == 2 ]] || fail "$what: the server sent $chain certificates, expected the leaf and the intermediate"
    echo "SNI $what: $(cert_subject "$WORKDIR/served.pem")"
}
expect_cert a.test a -servername a.test
expect_cert b.test b -servername b.test
expect_cert x.wild.test wild -servername x.wild.test
expect_cert "B.Test (upper case)" b -servername B.Test
expect_cert "TLS 1.2 b.test" b -servername b.test -tls1_2
expect_cert "TLS 1.2 y.wild.test" wild -servername y.wild.test -tls1_2
expect_cert "no SNI" a -noservername
expect_cert "unknown.test" a -servername unknown.test
expect_cert "a.b.wild.test (two labels under the wildcard)" a -servername a.b.wild.test
expect_cert "wild.test (the wildcard's parent)" a -servername wild.test
chain=$(grep -c -- '-----BEGIN CERTIFICATE-----' "$WORKDIR/served.pem.log")
[[ $chain == 2 ]] || fail "b.test: the server sent $chain certificates, expected the leaf and the intermediate"

# ALPN ------------------------------------------------------------------------------------------
alpn() {
    local out="$WORKDIR/alpn-${1//[\/,]/_}.out" rc=0
    TLS_STDIN="$WORKDIR/healthz.req" tls_s_client "$out" -servername a.test -alpn "$1" -ign_eof || rc=$?
    ALPN_RC=$rc
    ALPN=$(grep -m1 -E '^(ALPN protocol:|No ALPN negotiated)' "$out" || true)
    ALPN_OUT=$out
}
alpn h2,http/1.1
[[ $ALPN_RC == 0 && $ALPN == "ALPN protocol: http/1.1" ]] ||
    fail "ALPN h2,http/1.1: expected http/1.1, got '$ALPN' (s_client $ALPN_RC)"
expect_served "$ALPN_OUT" "ALPN h2,http/1.1"
alpn http/1.1
[[ $ALPN_RC == 0 && $ALPN == "ALPN protocol: http/1.1" ]] || fail "ALPN http/1.1: got '$ALPN'"
alpn h2
[[ $ALPN != *h2* ]] || fail "ALPN h2 alone: the server agreed to h2"
if [[ $ALPN_RC == 0 && $ALPN == "No ALPN negotiated" ]]; then
    expect_served "$ALPN_OUT" "ALPN h2 alone"
    echo "ALPN: h2,http/1.1 -> http/1.1; h2 alone -> no ALPN, served in HTTP/1.1"
else
    alert=$(grep -o 'alert [a-z][a-z ]*[a-z]' "$ALPN_OUT" | head -n 1 || true)
    [[ $ALPN_RC != 0 ]] || fail "ALPN h2 alone: '$ALPN' and s_client exited 0"
    echo "ALPN: h2,http/1.1 -> http/1.1; h2 alone -> handshake refused (${alert:-no alert})"
fi

# Session resumption over both shards -------------------------------------------------------------
# shard_of ID: the shard byte of a job id (queue/job_id.hh: byte 6 of the 16, Crockford base32).
shard_of() {
    python3 -c 'import sys
v = 0
for ch in sys.argv[1]:
    v = v * 32 + "0123456789abcdefghjkmnpqrstvwxyz".index(ch)
print(v.to_bytes(17, "big")[-16:][6])' "$1"
}

# One POST per connection, queued on the shard that accepted it.
printf 'POST /webhooks/open HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{"resume":1}\n' \
    >"$WORKDIR/resume.req"
RECONNECTS=20
for v in 1.3 1.2; do
    sess="$WORKDIR/session-$v.pem"
    TLS_STDIN="$WORKDIR/resume.req" tls_s_client "$WORKDIR/resume-$v-0.out" -servername a.test \
        "-tls${v/./_}" -sess_out "$sess" -ign_eof || fail "TLS $v: first connection failed"
    grep -q "^New, TLSv$v" "$WORKDIR/resume-$v-0.out" ||
        fail "TLS $v: first connection: $(grep -m1 -E '^(New|Reused),' "$WORKDIR/resume-$v-0.out")"
    [[ -s $sess ]] || fail "TLS $v: the server gave no session to resume (no ticket)"
    reused=0
    declare -A shards=()
    for ((i = 1; i <= RECONNECTS; i++)); do
        out="$WORKDIR/resume-$v-$i.out"
        TLS_STDIN="$WORKDIR/resume.req" tls_s_client "$out" -servername a.test "-tls${v/./_}" \
            -sess_in "$sess" -ign_eof || fail "TLS $v: reconnect $i failed: $(tail -n 3 "$out")"
        grep -q "^Reused, TLSv$v" "$out" && reused=$((reused + 1))
        id=$(sed -n 's/^{"id":"\([0-9a-z]*\)","status":"queued"}.*/\1/p' "$out" | head -n 1)
        [[ -n $id ]] || fail "TLS $v: reconnect $i was not answered 202: $(grep -m1 '^HTTP/' "$out")"
        shards[$(shard_of "$id")]=1
    done
    ((reused == RECONNECTS)) ||
        fail "TLS $v: $reused of $RECONNECTS reconnects resumed the session"
    [[ -n ${shards[0]:-} && -n ${shards[1]:-} ]] ||
        fail "TLS $v: the $RECONNECTS reconnects all landed on shard ${!shards[*]}, so resuming on the other shard is untested"
    echo "TLS $v: $reused of $RECONNECTS reconnects resumed, on shards ${!shards[*]}"
    unset shards
done

# A session belongs to the certificate it was made with: offered under another name (b.test),
# it is not resumed (RFC 6066 section 3: a server MUST NOT resume a session for another
# server_name), the handshake is a full one and b.test's certificate is sent.
for v in 1.3 1.2; do
    expect_cert "b.test offered a.test's TLS $v session" b -servername b.test "-tls${v/./_}" \
        -sess_in "$WORKDIR/session-$v.pem"
    grep -q "^New, TLSv$v" "$WORKDIR/served.pem.log" ||
        fail "TLS $v: a.test's session was resumed for b.test: $(grep -m1 -E '^(New|Reused),' "$WORKDIR/served.pem.log")"
done
# And 0-RTT is not offered: a webhook sent as early data could be replayed.
grep -q '^ *Max Early Data: 0$' "$WORKDIR/resume-1.3-0.out" ||
    fail "TLS 1.3 tickets allow early data: $(grep -m1 'Max Early Data' "$WORKDIR/resume-1.3-0.out")"
echo "TLS 1.3 tickets offer no early data"

# Not TLS, and a stalled handshake ------------------------------------------------------------------
python3 - "$TLS_PORT" "$TLS_CA" "$HEADER_TIMEOUT_S" <<'PY' || fail "not TLS / stalled handshakes"
import os, socket, sys, time
from http_client import Reader
from tls_client import client_hello, connect, read_until_closed
port, ca, header_s = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])

def healthy():
    s = connect(port, "a.test", ca)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a.test\r\n\r\n")
    r = Reader(s).read_response(time.monotonic() + 10)
    assert r is not None and r.status == 200, "GET /healthz over TLS afterwards"
    s.close()

def raw(data):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    return s

plain = (b"POST /webhooks/open HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\n"
         b"Content-Length: 2\r\n\r\n{}")
junk = bytearray(os.urandom(4096))
# The first byte is not a TLS content type (20..23), nor an SSLv2 hello's length (high bit):
# every byte after it is random, and the connection must be refused on its first record.
junk[0] &= 0x0F
for name, data in [("plain HTTP", plain), ("4 KiB of random bytes", bytes(junk))]:
    s = raw(data)
    answer, closed, took = read_until_closed(s, 10)
    s.close()
    assert closed, f"{name}: the connection is still open after 10 s"
    assert took < header_s - 0.5, f"{name}: closed after {took:.2f} s, not at once"
    if name == "plain HTTP":
        # Like nginx, a plain answer that says why; nothing of the request is served.
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), f"{name}: answered {answer[:80]!r}"
        assert b"\r\nConnection: close" in head, f"{name}: the 400 does not say it closes"
        assert body == b'{"error":"tls_required"}', f"{name}: answer body {body!r}"
        what = "400 {\"error\":\"tls_required\"}"
    else:
        assert not answer.startswith(b"HTTP/"), f"{name}: answered in plain HTTP: {answer[:60]!r}"
        what = f"{len(answer)} bytes back ({answer[:7].hex(' ') or 'none'})"
    print(f"{name} to the TLS port: closed after {took * 1000:.0f} ms, {what}")
    healthy()

# Half a ClientHello, then nothing: cut at timeouts.header, unanswered.
hello = client_hello("a.test")
s = raw(hello[:len(hello) // 2])
answer, closed, took = read_until_closed(s, header_s + 5)
s.close()
assert closed, "half a ClientHello: still open"
assert not answer.startswith(b"HTTP/"), f"half a ClientHello answered in plain HTTP: {answer!r}"
assert header_s - 0.1 <= took <= header_s + 1.5, \
    f"half a ClientHello ({len(hello) // 2} of {len(hello)} bytes) cut after {took:.2f} s, not {header_s} s"
print(f"half a ClientHello: cut after {took:.2f} s (timeouts.header {header_s:.0f} s)")

# Half a ClientHello, then the client goes: counted as an aborted handshake (stopped line).
s = raw(hello[:len(hello) // 2])
time.sleep(0.2)
s.close()
healthy()

# After the handshake, the head has a timeouts.header of its own, from its first byte (as in
# plain HTTP; between the two the connection may stay silent for timeouts.idle): a handshake, a
# second of silence, half a head, cut with a 408 timeouts.header after the head's first byte.
s = connect(port, "a.test", ca)
time.sleep(1)
start = time.monotonic()
s.sendall(b"POST /webhooks/open HTTP/1.1\r\nHost: a.te")
answer, closed, took = read_until_closed(s, header_s + 5)
s.close()
assert closed, "a stalled head after the handshake: still open"
assert answer.startswith(b"HTTP/1.1 408"), f"a stalled head after the handshake: {answer[:60]!r}"
assert header_s - 0.1 <= took <= header_s + 1.5, \
    f"handshake, 1 s, half a head: cut {took:.2f} s after the head began, not {header_s} s"
print(f"handshake + 1 s + half a head: 408 and closed {took:.2f} s after the head began")
healthy()
PY

# SIGHUP: a renewed certificate, then broken files -----------------------------------------------
old_fp=$(cert_fingerprint "$TLS_DIR/a.pem")
cat >"$WORKDIR/held.py" <<'PY'
import json, sys, time
from http_client import Reader
from tls_client import cert_fingerprint, connect
port, ca = int(sys.argv[1]), sys.argv[2]
s = connect(port, "a.test", ca, timeout=30)
reader = Reader(s)
def post(n):
    body = json.dumps({"held": n}).encode()
    s.sendall(b"POST /webhooks/open HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    r = reader.read_response(time.monotonic() + 10)
    return "closed" if r is None else f"{r.status} {cert_fingerprint(s)} {s.version()}"
print("before", post(1), flush=True)
sys.stdin.readline()
print("after", post(2), flush=True)
PY
coproc HELD { exec python3 -u "$WORKDIR/held.py" "$TLS_PORT" "$TLS_CA" 2>&1; }
# shellcheck disable=SC2153 # set by coproc
held_pid=$HELD_PID
at_exit "kill $held_pid 2>/dev/null"
IFS= read -r -t 20 line <&"${HELD[0]}" || fail "the held connection did not answer"
[[ $line == "before 202 $old_fp "* ]] || fail "held connection, before the reload: $line"

# Sessions made before the reload, TLS 1.3 and 1.2, for a.test (renewed) and b.test (unchanged).
for name in a b; do
    for v in 1.3 1.2; do
        TLS_STDIN="$WORKDIR/healthz.req" tls_s_client "$WORKDIR/pre-reload-$name-$v.out" \
            -servername "$name.test" "-tls${v/./_}" -sess_out "$WORKDIR/pre-reload-$name-$v.pem" \
            -ign_eof || fail "$name.test, TLS $v: a handshake before the reload failed"
    done
done

# cert_expiry_healthz NAME: the certificate's not_after as the control plane's /healthz shows it
# (the same store as /metrics' portcullis_certificate_expiry_timestamp_seconds).
cert_expiry_healthz() {
    curl -sS -m 10 "http://127.0.0.1:$ADMIN_PORT/healthz" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["certificates"][sys.argv[1]]["not_after"])' "$1"
}
cert_expiry_file() { date -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s; }
expect_eq "a.test's expiry on /healthz before the reload" "$(cert_expiry_file "$TLS_DIR/a.pem")" \
    "$(cert_expiry_healthz a.test)"
# The renewal runs 15 days longer, so that its expiry differs from the old one's.
sed -i '2s/.*/45/' "$TLS_DIR/a.params"
tls_renew_cert a
new_fp=$(cert_fingerprint "$TLS_DIR/a.pem")
[[ $new_fp != "$old_fp" ]] || fail "the renewed certificate has the old fingerprint"
# SIGHUP, then handshakes as soon as the reload is logged: every one gets the new certificate,
# whichever shard accepts it and however long that shard had been waiting for work.
python3 - "$SERVER_PID" "$SERVER_LOG" "$TLS_PORT" "$TLS_CA" "$new_fp" <<'PY' || fail "SIGHUP"
import os, signal, sys, time
from tls_client import cert_fingerprint, connect
pid, log, port, ca, new_fp = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def reloaded():
    with open(log) as f:
        return sum('"msg":"TLS certificate reloaded"' in line for line in f)
before = reloaded()
os.kill(pid, signal.SIGHUP)
deadline = time.monotonic() + 10
# One line per certificate of the list (a, b, wild).
while reloaded() < before + 3:
    assert time.monotonic() < deadline, "the reload was not logged within 10 s"
    time.sleep(0.001)
got = []
for _ in range(20):
    s = connect(port, "a.test", ca)
    got.append(cert_fingerprint(s))
    s.close()
old = sum(fp != new_fp for fp in got)
assert old == 0, f"{old} of the {len(got)} handshakes right after the reload got the old certificate"
print(f"SIGHUP: the {len(got)} handshakes right after the reload was logged all got the new certificate")
PY
expect_eq "a.test's expiry on /healthz after the reload (the renewed certificate's)" \
    "$(cert_expiry_file "$TLS_DIR/a.pem")" "$(cert_expiry_healthz a.test)"
for i in 1 2 3 4 5 6; do
    expect_cert "a.test after SIGHUP ($i)" a -servername a.test
done
# A session made with the replaced certificate is not resumed: the client gets the new one. One
# made with an unchanged certificate still is.
for v in 1.3 1.2; do
    expect_cert "a.test after SIGHUP, offering a session from before, TLS $v" a -servername a.test \
        "-tls${v/./_}" -sess_in "$WORKDIR/pre-reload-a-$v.pem"
    grep -q "^New, TLSv$v" "$WORKDIR/served.pem.log" ||
        fail "TLS $v: a session made with a.test's old certificate was resumed after the reload"
    TLS_STDIN="$WORKDIR/healthz.req" tls_s_client "$WORKDIR/post-reload-b-$v.out" \
        -servername b.test "-tls${v/./_}" -sess_in "$WORKDIR/pre-reload-b-$v.pem" -ign_eof ||
        fail "b.test, TLS $v: a handshake after the reload failed"
    grep -q "^Reused, TLSv$v" "$WORKDIR/post-reload-b-$v.out" ||
        fail "TLS $v: b.test's certificate did not change, yet its session was not resumed after the reload"
    expect_served "$WORKDIR/post-reload-b-$v.out" "b.test resumed after the reload"
done
printf 'go\n' >&"${HELD[1]}"
IFS= read -r -t 20 line <&"${HELD[0]}" || fail "the held connection did not answer after the reload"
[[ $line == "after 202 $old_fp "* ]] ||
    fail "the connection opened before the reload, after it: '$line' (expected 202 with the old certificate)"
wait "$held_pid" || fail "the held connection's client failed"
echo "SIGHUP with a renewed a.test: new handshakes get it (6 of 6), sessions made with the old one are not resumed (b.test's are), the open connection still answers on the old one"

# A file that cannot be used keeps the certificate in use (the renewed one).
cp "$TLS_DIR/a.pem" "$TLS_DIR/a.pem.good"
broken_case() {
    local what=$1 failures
    # A reload whose certificates cannot be used is refused whole (the error names the file).
    failures=$(grep -c '"msg":"configuration reload refused"' "$SERVER_LOG" || true)
    kill -HUP "$SERVER_PID"
    wait_for_log '"msg":"configuration reload refused"' $((failures + 1))
    local line
    line=$(grep '"msg":"configuration reload refused"' "$SERVER_LOG" | tail -n 1)
    [[ $line == *'"error":"server.tls: '* ]] || fail "$what: the refusal is not the certificates': $line"
    [[ $line == *"$TLS_DIR/a.pem"* ]] || fail "$what: the log does not name the file: $line"
    expect_cert "a.test after SIGHUP with $what" "$TLS_DIR/a.pem.good" -servername a.test
    echo "SIGHUP with $what: kept the certificate in use; log: $line"
}
printf -- '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n' \
    >"$TLS_DIR/a.pem"
broken_case "a broken a.pem"
cp "$TLS_DIR/b.pem" "$TLS_DIR/a.pem" # b's certificate: a's key does not match it
broken_case "a.pem holding another key's certificate"
cp "$TLS_DIR/a.pem.good" "$TLS_DIR/a.pem"

stop_server
stopped=$(grep -F '"msg":"stopped"' "$SERVER_LOG")
python3 - "$stopped" <<'PY' || fail "stopped line: $stopped"
import json, sys
line = json.loads(sys.argv[1])
tls = {k: v for k, v in line.items() if k.startswith("tls_")}
print(f"stopped: {tls}, header_timeouts {line['header_timeouts']}")
# Refused handshakes: TLS 1.1, TLS 1.0 (and ALPN h2 alone, when it is refused).
assert line["tls_handshake_failures"] >= 2, "every refused handshake is counted"
# Plain HTTP and random bytes.
assert line["tls_not_tls"] == 2, "plain HTTP and the random bytes are counted as not TLS"
# Half a ClientHello; the head that stalled after its handshake is a header timeout.
assert line["tls_handshake_timeouts"] == 1, "the stalled handshake is counted"
# Half a ClientHello and a close, only: the clients whose handshake was refused (and who then
# close) are failures, not aborts.
assert line["tls_handshake_aborted"] == 1, "the client that left mid-handshake is counted once"
assert line["header_timeouts"] == 1, "the stalled head after the handshake is counted"
# 40 reconnects with a session, b.test's sessions after the reload; not the sessions offered
# under another name nor those of a replaced certificate.
assert line["tls_resumed"] == 42, "the resumed handshakes are counted (40, and b.test twice)"
assert line["tls_certificate_reloads"] == 1, "one SIGHUP of three reloaded"
PY

spool_dump "$SPOOL" "$WORKDIR/dump.jsonl"
for id in "${!JOBS[@]}"; do
    check_job "$WORKDIR/dump.jsonl" "$id" github "${JOBS[$id]}" x-github-event=push ||
        fail "job $id over TLS"
done
echo "the ${#JOBS[@]} webhooks sent over TLS are stored byte for byte"

# min_version "1.3", session_tickets: false; a drain with TLS connections open -------------------
server_config "$WORKDIR/config13.yaml" "$WORKDIR/spool13" 'min_version: "1.3"' \
    'session_tickets: false'
start_tls_server "$WORKDIR/config13.yaml"
expect_refused_version -tls1_2 "TLS 1.2" 'min_version "1.3": TLS 1.2'
TLS_STDIN="$WORKDIR/healthz.req" tls_s_client "$WORKDIR/v13only.out" -servername a.test \
    -sess_out "$WORKDIR/no-tickets.pem" -ign_eof ||
    fail "min_version 1.3: a default client failed: $(tail -n 3 "$WORKDIR/v13only.out")"
grep -q '^New, TLSv1.3' "$WORKDIR/v13only.out" || fail "min_version 1.3: not TLS 1.3"
expect_served "$WORKDIR/v13only.out" 'min_version "1.3"'
echo 'min_version "1.3": TLS 1.3 served'
# Without tickets there is nothing to resume: in TLS 1.3 s_client saves a session only when a
# NewSessionTicket comes.
if [[ -s $WORKDIR/no-tickets.pem ]] || grep -q 'TLS session ticket:' "$WORKDIR/v13only.out"; then
    fail "session_tickets: false, yet the server sent a ticket"
fi
echo "session_tickets: false: no ticket sent"

# SIGTERM with five idle TLS connections and one in the middle of its body: the request is
# answered (Connection: close), the idle ones are closed, the server exits 0.
python3 - "$TLS_PORT" "$TLS_CA" "$SERVER_PID" <<'PY' || fail "drain with TLS connections"
import os, signal, sys, time
from http_client import Reader
from tls_client import connect, read_until_closed
port, ca, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
idle = [connect(port, "a.test", ca) for _ in range(5)]
busy = connect(port, "a.test", ca)
busy.sendall(b"POST /webhooks/open HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n12345")
time.sleep(0.2)
os.kill(pid, signal.SIGTERM)
time.sleep(0.3)
busy.sendall(b"67890")
r = Reader(busy).read_response(time.monotonic() + 8)
assert r is not None and r.status == 202, f"the request in flight: {r and r.status}"
assert r.header("connection") == "close", "the answer during the drain does not close"
for s in idle:
    _, closed, _ = read_until_closed(s, 8)
    assert closed, "an idle TLS connection is still open during the drain"
print("drain: the request in flight answered 202 (Connection: close), 5 idle TLS connections closed")
PY
_wait_server 30
[[ $SERVER_STATUS == 0 ]] || fail "the drain with TLS connections open ended with status $SERVER_STATUS"

# PROXY protocol before the handshake, TLS only -----------------------------------------------------
cat >"$WORKDIR/config-proxy.yaml" <<EOF
server:
  listen: []
  shards: 2
  timeouts: {header: ${HEADER_TIMEOUT_S}s}
  client_ip: {trusted_proxies: ["127.0.0.1/32"], proxy_protocol: v1}
$(tls_yaml a)
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/spool-proxy, durability: fsync}
routes:
  open: {path: /webhooks/open, verify: {scheme: none}}
EOF
start_tls_server "$WORKDIR/config-proxy.yaml"
[[ -z $PORT ]] || fail "server.listen: [] still listens in plain HTTP on $PORT"
python3 - "$TLS_PORT" "$TLS_CA" "$WORKDIR/proxy-id" <<'PY' || fail "PROXY before TLS"
import socket, ssl, sys, time
from http_client import Reader
from tls_client import connect, read_until_closed
port, ca = int(sys.argv[1]), sys.argv[2]
body = b'{"via":"proxy"}'
req = (b"POST /webhooks/open HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\n"
       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
s = connect(port, "a.test", ca, before=b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n")
s.sendall(req)
r = Reader(s).read_response(time.monotonic() + 10)
assert r is not None and r.status == 202, f"PROXY v1 then TLS: {r and r.status}"
open(sys.argv[3], "w").write(r.body.decode())
s.close()
print("PROXY v1 header, then the TLS handshake: 202")
# Without the header the ClientHello is not a PROXY header: closed unanswered.
try:
    s = connect(port, "a.test", ca)
    s.sendall(req)
    answer, closed, _ = read_until_closed(s, 10)
    assert closed and not answer, f"TLS without the PROXY header was served: {answer[:60]!r}"
except (ssl.SSLError, ConnectionResetError, socket.timeout) as e:
    print(f"TLS without the PROXY header: refused ({type(e).__name__})")
PY
stop_server
id=$(json_field "$(cat "$WORKDIR/proxy-id")" id)
spool_dump "$WORKDIR/spool-proxy" "$WORKDIR/dump-proxy.jsonl"
python3 - "$WORKDIR/dump-proxy.jsonl" "$id" <<'PY' || fail "the job sent behind a PROXY header"
import json, sys
jobs = [json.loads(l) for l in open(sys.argv[1])]
assert len(jobs) == 1 and jobs[0]["id"] == sys.argv[2], jobs
assert jobs[0]["source_ip"] == "198.51.100.7", f"source_ip {jobs[0]['source_ip']}"
print("the job stores the PROXY header's address 198.51.100.7")
PY
grep -F '"msg":"stopped"' "$SERVER_LOG" | grep -F '"proxy_refused":1' >/dev/null ||
    fail "the TLS connection without a PROXY header is not counted: $(grep -F '"msg":"stopped"' "$SERVER_LOG")"
echo "tls: ok"
