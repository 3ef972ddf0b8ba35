#!/usr/bin/env bash
# HTTP/1.1 behaviour of the public plane, byte for byte: keep-alive, pipelining, HTTP/1.0,
# 100-continue, chunked bodies, limits, malformed and smuggling-shaped input, timeouts and
# drain. Each protocol case is one row: name, expected statuses, whether the server closes,
# the bytes sent (Python escapes; <WAIT> reads an answer first, <PAUSE> splits segments).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/integration/lib.sh
source "$here/lib.sh"

need python3 openssl
client="$here/http_client.py"

export GH_SECRET="it's a secret to everybody"
cat >"$WORKDIR/config.yaml" <<EOF
server:
  listen: ["127.0.0.1:0"]
  shards: 2
  limits: {header_bytes: 2KiB, headers: 16, body_bytes: 1KiB}
  timeouts: {header: 2s, body: 2s, idle: 1s}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/spool, durability: fsync}
routes:
  open: {path: /hook, verify: {scheme: none}}
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
EOF

start_server "$WORKDIR/config.yaml"

failures=0
# row NAME EXPECTED_STATUSES CLOSE(yes|no|any) BYTES [extra http_client.py exchange options]
row() {
    local name=$1 expect=$2 close=$3 send=$4
    shift 4
    if ! python3 "$client" exchange --port "$PORT" --name "$name" --expect "$expect" \
        --close "$close" --send "$send" "$@"; then
        failures=$((failures + 1))
    fi
}

H='Host: portcullis.test\r\n'
post_hook="POST /hook HTTP/1.1\r\n${H}Content-Type: application/json\r\n"
ok_body='Content-Length: 11\r\n\r\n{"n":"one"}'
chunked='Transfer-Encoding: chunked\r\n\r\n'
# 1.5 KiB of body against limits.body_bytes 1 KiB, in three chunks of 512.
chunk512=$(head -c 512 /dev/zero | tr '\0' 'c')
# A 3000-byte field against limits.header_bytes 2 KiB.
long_value=$(head -c 3000 /dev/zero | tr '\0' 'v')
many_fields=""
for i in $(seq 1 20); do many_fields+="X-Field-$i: $i\r\n"; done

echo "== connection management"
row "keep-alive: two requests on one connection" "202 202" no \
    "${post_hook}${ok_body}<WAIT>${post_hook}${ok_body}" --distinct-ids
row "pipelining: three requests in one send" "202 202 202" no \
    "${post_hook}${ok_body}${post_hook}${ok_body}${post_hook}${ok_body}" --distinct-ids
row "pipelining: answers keep request order" "202 404 200 405" no \
    "${post_hook}${ok_body}GET /nope HTTP/1.1\r\n${H}\r\nGET /healthz HTTP/1.1\r\n${H}\r\nGET /hook HTTP/1.1\r\n${H}\r\n"
row "pipelining: request split across segments" "202" no \
    "POST /hook HT<PAUSE>TP/1.1\r\n${H}Content-Le<PAUSE>ngth: 11\r\n\r\n{\"n\":<PAUSE>\"one\"}"
row "HTTP/1.1 Connection: close" "202" yes \
    "${post_hook}Connection: close\r\n${ok_body}"
row "HTTP/1.0: answer then close" "202" yes \
    "POST /hook HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}"
row "HTTP/1.0 with Host: answer then close" "200" yes \
    "GET /healthz HTTP/1.0\r\n${H}\r\n"
row "HTTP/1.0 Connection: keep-alive stays open" "200" no \
    "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
row "HTTP/1.0 pipelined after close is never read" "202" yes \
    "POST /hook HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}GET /healthz HTTP/1.1\r\n${H}\r\n"
row "empty lines before the request line are skipped" "200" no \
    "\r\n\r\nGET /healthz HTTP/1.1\r\n${H}\r\n"

echo "== bodies"
row "Expect: 100-continue gets 100 before the final answer" "100 202" no \
    "${post_hook}Expect: 100-continue\r\n${ok_body%%\{*}<WAIT>{\"n\":\"one\"}"
row "Expect: 100-continue with a body too large: 413, no 100" "413" yes \
    "${post_hook}Expect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
row "chunked body" "202" no \
    "${post_hook}${chunked}5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" --ids-to "$WORKDIR/chunked.ids"
row "chunked body with extensions and trailers" "202" no \
    "${post_hook}${chunked}5;name=value\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n"
row "chunked body split across segments" "202" no \
    "${post_hook}${chunked}5\r<PAUSE>\nhel<PAUSE>lo\r\n0\r<PAUSE>\n\r\n"
row "chunked body then a pipelined request" "202 200" no \
    "${post_hook}${chunked}2\r\nok\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n${H}\r\n"
row "Content-Length: 0" "202" no \
    "${post_hook}Content-Length: 0\r\n\r\n"
row "body exactly at limits.body_bytes" "202" no \
    "${post_hook}Content-Length: 1024\r\n\r\n${chunk512}${chunk512}"
row "413 from Content-Length, decided before the body is sent" "413" yes \
    "${post_hook}Content-Length: 1025\r\n\r\n"
row "413 for a chunked body crossing body_bytes" "413" yes \
    "${post_hook}${chunked}200\r\n${chunk512}\r\n200\r\n${chunk512}\r\n200\r\n${chunk512}\r\n0\r\n\r\n"

echo "== routing"
row "GET /healthz: 200 ok" "200" no "GET /healthz HTTP/1.1\r\n${H}\r\n" --check "body=ok"
row "HEAD /healthz: 200 without a body" "200" no "HEAD /healthz HTTP/1.1\r\n${H}\r\n" --head
# Every answer to HEAD goes without its body (RFC 9110 9.3.2), refusals included: a body would
# be read as the start of the next answer on the connection.
row "HEAD to a POST route: 405 without a body" "405 200" no \
    "HEAD /hook HTTP/1.1\r\n${H}\r\nHEAD /healthz HTTP/1.1\r\n${H}\r\n" --head
row "HEAD to an unknown path: 404 without a body" "404 200" no \
    "HEAD /nope HTTP/1.1\r\n${H}\r\nHEAD /healthz HTTP/1.1\r\n${H}\r\n" --head
row "404 for an unknown path" "404" no "GET /nope HTTP/1.1\r\n${H}\r\n" \
    --check 'body={"error":"not_found"}'
row "404 for an unknown path with a body" "404" any "POST /nope HTTP/1.1\r\n${H}${ok_body}"
row "404 for a control-plane path on the public plane" "404" no \
    "GET /metrics HTTP/1.1\r\n${H}\r\n"
row "404 for the lease API on the public plane" "404" any \
    "POST /v1/lease HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\n{}"
row "405 with Allow for a wrong method" "405" no "GET /hook HTTP/1.1\r\n${H}\r\n" \
    --check "Allow: POST"
row "405 with Allow on /healthz" "405" any "POST /healthz HTTP/1.1\r\n${H}${ok_body}" \
    --check "Allow: GET, HEAD"

echo "== limits"
row "431 for a head over header_bytes" "431" yes \
    "GET /healthz HTTP/1.1\r\n${H}X-Long: ${long_value}\r\n\r\n"
row "431 for more fields than limits.headers" "431" yes \
    "GET /healthz HTTP/1.1\r\n${H}${many_fields}\r\n"

echo "== malformed and smuggling-shaped input: 400 and close"
row "Content-Length with Transfer-Encoding" "400" yes \
    "${post_hook}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
row "Transfer-Encoding with Content-Length, pipelined request never read" "400" yes \
    "${post_hook}Transfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n${H}\r\n"
row "two Content-Lengths (different)" "400" yes \
    "${post_hook}Content-Length: 2\r\nContent-Length: 11\r\n\r\n{\"n\":\"one\"}"
row "two Content-Lengths (equal)" "400" yes \
    "${post_hook}Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
row "Content-Length with a sign" "400" yes "${post_hook}Content-Length: +2\r\n\r\n{}"
row "Content-Length list" "400" yes "${post_hook}Content-Length: 2, 2\r\n\r\n{}"
row "Transfer-Encoding not ending in chunked" "400" yes \
    "${post_hook}Transfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
row "bare LF ending the request line" "400" yes "GET /healthz HTTP/1.1\n${H}\r\n"
row "bare LF ending a header line" "400" yes \
    "${post_hook}Content-Length: 2\n\r\n{}"
row "bare LF ending the head" "400" yes "GET /healthz HTTP/1.1\r\n${H}\n"
row "bare CR in a header line" "400" yes "GET /healthz HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n"
row "obs-fold" "400" yes "GET /healthz HTTP/1.1\r\n${H}X-Folded: a\r\n b\r\n\r\n"
row "obs-fold with a tab" "400" yes "GET /healthz HTTP/1.1\r\n${H}X-Folded: a\r\n\tb\r\n\r\n"
row "space before colon" "400" yes "GET /healthz HTTP/1.1\r\nHost : portcullis.test\r\n\r\n"
row "space before colon in Content-Length" "400" yes \
    "POST /hook HTTP/1.1\r\n${H}Content-Length : 2\r\n\r\n{}"
row "missing Host in HTTP/1.1" "400" yes "GET /healthz HTTP/1.1\r\n\r\n"
row "two Hosts" "400" yes "GET /healthz HTTP/1.1\r\n${H}${H}\r\n"
row "NUL in a header value" "400" yes "GET /healthz HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n"
row "bad chunk size" "400" yes "${post_hook}${chunked}zz\r\nhello\r\n0\r\n\r\n"
row "chunk size with trailing garbage" "400" yes "${post_hook}${chunked}5 x\r\nhello\r\n0\r\n\r\n"
row "chunk data longer than its size" "400" yes "${post_hook}${chunked}5\r\nhello!\r\n0\r\n\r\n"
row "chunk size overflowing 64 bits" "400" yes \
    "${post_hook}${chunked}10000000000000000a\r\nhello\r\n0\r\n\r\n"
row "absolute-form target" "400" yes "GET http://portcullis.test/healthz HTTP/1.1\r\n${H}\r\n"
row "505 for HTTP/2.0" "505" yes "GET /healthz HTTP/2.0\r\n${H}\r\n"
# An HTTP/2 client with prior knowledge opens with its connection preface: it is a well-formed
# request line of another version, so 505 (in HTTP/1.1) and a close; the rest of the preface
# ("SM") is drained unread.
row "505 for the HTTP/2 connection preface" "505" yes "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
row "505 for HTTP/2.0 with an absolute-form target" "505" yes \
    "GET http://portcullis.test/healthz HTTP/2.0\r\n${H}\r\n"
row "asterisk-form target in HTTP/1.1: 400" "400" yes "OPTIONS * HTTP/1.1\r\n${H}\r\n"
row "505 for HTTP/3.0" "505" yes "GET /healthz HTTP/3.0\r\n${H}\r\n"

echo "== signatures on a kept-alive connection (github route)"
gh_body='{"action":"opened","number":1}'
good_sig=$(hmac_sha256_hex "$GH_SECRET" "$gh_body")
bad_sig=$(hmac_sha256_hex "$GH_SECRET" "${gh_body} ")
gh() {
    printf '%s' "POST /webhooks/github HTTP/1.1\r\n${H}X-GitHub-Event: issues\r\n$1Content-Length: ${#gh_body}\r\n\r\n${gh_body//\"/\\\"}"
}
row "github: valid signature" "202" no "$(gh "X-Hub-Signature-256: sha256=${good_sig}\r\n")"
row "github: wrong signature, connection stays usable" "401" no \
    "$(gh "X-Hub-Signature-256: sha256=${bad_sig}\r\n")" --check 'body={"error":"unauthorized"}'
row "github: missing signature" "401" any "$(gh "")"
# The client sends its body without waiting for the interim answer: the 100 goes out first and
# the final answer follows it intact, on a connection that stays usable.
row "github: Expect 100-continue with the body at once, wrong signature" "100 401" no \
    "$(gh "Expect: 100-continue\r\nX-Hub-Signature-256: sha256=${bad_sig}\r\n")" \
    --check 'body={"error":"unauthorized"}'
row "github: Expect 100-continue with the body at once, valid" "100 202" no \
    "$(gh "Expect: 100-continue\r\nX-Hub-Signature-256: sha256=${good_sig}\r\n")"
row "github: pipelined valid then tampered" "202 401 202" no \
    "$(gh "X-Hub-Signature-256: sha256=${good_sig}\r\n")$(gh "X-Hub-Signature-256: sha256=${bad_sig}\r\n")$(gh "X-Hub-Signature-256: sha256=${good_sig}\r\n")"

echo "== timeouts"
# within MIN MAX VALUE: MIN <= VALUE <= MAX (VALUE may be null)
within() { python3 -c 'import sys; v=sys.argv[3]; sys.exit(0 if v!="None" and float(sys.argv[1])<=float(v)<=float(sys.argv[2]) else 1)' "$@"; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))' "$1" "$2"; }
timing() {
    local name=$1 min=$2 max=$3 statuses=$4 out=$5
    local at got
    at=$(field "$out" closed_after_s)
    got=$(field "$out" statuses)
    if within "$min" "$max" "$at" && [[ $got == "$statuses" ]]; then
        echo "ok   $name: closed after ${at}s, answered $got"
    else
        echo "FAIL $name: expected close between ${min}s and ${max}s with answers $statuses," \
            "got $out" >&2
        failures=$((failures + 1))
    fi
}
out=$(python3 "$client" stall --port "$PORT" --send "POST /hook HTTP/1.1\r\n${H}X-Slow: " \
    --trickle "abcdefghijklmnop" --trickle-interval 1 --max-seconds 8)
timing "header timeout (2s) for a head trickled a byte a second" 1.5 4 "[408]" "$out"
out=$(python3 "$client" stall --port "$PORT" --send "GET /heal" --max-seconds 8)
timing "header timeout (2s) for a silent half head" 1.5 4 "[408]" "$out"
out=$(python3 "$client" stall --port "$PORT" --send "${post_hook}Content-Length: 10\r\n\r\nabc" \
    --trickle "defghij" --trickle-interval 0.8 --max-seconds 8)
timing "body timeout (2s) for a body trickled slowly" 1.5 4 "[408]" "$out"
out=$(python3 "$client" stall --port "$PORT" --send "GET /healthz HTTP/1.1\r\n${H}\r\n" \
    --max-seconds 6)
timing "idle timeout (1s) after an answer on a keep-alive connection" 0.7 3 "[200]" "$out"
out=$(python3 "$client" stall --port "$PORT" --send "" --max-seconds 6)
timing "idle timeout (1s) for a connection that never sends" 0.7 3 "[]" "$out"

echo "== the server is still healthy"
row "healthz after everything" "200" no "GET /healthz HTTP/1.1\r\n${H}\r\n" --check "body=ok"

stop_server


# The chunked job was stored de-chunked, byte for byte.
chunked_id=$(head -n1 "$WORKDIR/chunked.ids" 2>/dev/null || true)
stored=$("$PORTCULLIS" spool dump --dir "$WORKDIR/spool" | python3 -c '
import json, sys
for line in sys.stdin:
    job = json.loads(line)
    if job["id"] == sys.argv[1]:
        print(job["body_encoding"], job["body"])' "$chunked_id")
if [[ $stored == "utf8 hello world" ]]; then
    echo "ok   chunked job $chunked_id stored as \"hello world\""
else
    echo "FAIL chunked body in the spool: expected \"utf8 hello world\", got \"$stored\"" >&2
    failures=$((failures + 1))
fi

echo "== drain"
cat >"$WORKDIR/drain.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2, drain_timeout: 3s}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/drain-spool, durability: fsync}
routes:
  open: {path: /hook, verify: {scheme: none}}
EOF
start_server "$WORKDIR/drain.yaml"
out=$(python3 "$client" drain --port "$PORT" --pid "$SERVER_PID" --drain-timeout 3)
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=""
echo "     drain: $out, exit status $rc"
# drain_check WHAT PYTHON_CONDITION_ON_d
drain_check() {
    if python3 -c 'import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if eval(sys.argv[2]) else 1)' "$out" "$2"; then
        echo "ok   drain: $1"
    else
        echo "FAIL drain: $1 (got $out)" >&2
        failures=$((failures + 1))
    fi
}
drain_check "an idle keep-alive connection is closed at once" \
    'd["idle_before"] == 200 and d["idle_closed_at"] is not None and d["idle_closed_at"] < 1'
drain_check "new connections are refused within 1s" \
    'd["refused_at"] is not None and d["refused_at"] < 1'
drain_check "the in-flight request finishes with 202 and Connection: close" \
    '(d["finished"] and d["finished"].get("status") == 202
      and d["finished"].get("connection") == "close" and d["finished_closed"])'
drain_check "a request that never finishes is cut off at drain_timeout (3s)" \
    'd["stuck_closed_at"] is not None and 2.5 <= d["stuck_closed_at"] <= 4.5'
drain_check "the server exits within drain_timeout (3s, plus 1.5s of slack)" \
    'd["exited_at"] is not None and d["exited_at"] <= 4.5'
if [[ $rc == 0 ]]; then
    echo "ok   drain: exit status 0"
else
    echo "FAIL drain: expected exit status 0, got $rc: $(tail -n 5 "$SERVER_LOG")" >&2
    failures=$((failures + 1))
fi
drain_id=$(python3 -c 'import json, sys
print((json.loads(sys.argv[1])["finished"] or {}).get("id"))' "$out")
if "$PORTCULLIS" spool dump --dir "$WORKDIR/drain-spool" | grep "\"$drain_id\"" >/dev/null; then
    echo "ok   drain: the job answered 202 during the drain is in the spool"
else
    echo "FAIL drain: job $drain_id answered 202 during the drain is not in the spool" >&2
    failures=$((failures + 1))
fi

if ((failures > 0)); then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all HTTP protocol checks passed"
