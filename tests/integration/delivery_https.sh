#!/usr/bin/env bash
# The HTTP sink over https:// (SPEC section 8, issue 14) to receivers that serve certificates of
# a test CA made with openssl (lib.sh's tls_make_ca): with `ca:` naming the CA, a certificate for
# the URL's host name is trusted and the job is delivered byte for byte; a certificate for
# another host name is refused (never delivered, retried, the log says why), and so is the right
# certificate without `ca:` (the system's store does not hold the test CA). The URLs name
# localhost, which this test needs to resolve to 127.0.0.1 only (the receivers bind there).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/delivery_lib.sh"
need_tls_tools
need python3 sha256sum getent
[[ $(getent ahosts localhost | awk '{print $1}' | sort -u) == 127.0.0.1 ]] ||
    skip "localhost does not resolve to 127.0.0.1 alone here ($(getent ahosts localhost | awk '{print $1}' | sort -u | tr '\n' ' '))"

tls_make_ca
tls_make_cert good "DNS:localhost"
tls_make_cert other "DNS:other.test"
start_receiver good --tls-cert "$TLS_DIR/good.pem" --tls-key "$TLS_DIR/good.key"
start_receiver wrong --tls-cert "$TLS_DIR/other.pem" --tls-key "$TLS_DIR/other.key"
# The receivers' own TLS, checked with curl before portcullis is involved.
status=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' --cacert "$TLS_CA" -d x \
    "https://localhost:${RECV_PORT[good]}/probe") || status="curl-failed-$?"
expect_eq "curl to the good receiver with the test CA" 200 "$status"
receiver_control good '{"plan": {"then": {"status": 200}}}'
: >"${RECV_LOG[good]}"

delivery_config "$WORKDIR/config.yaml" <<EOF
sinks:
  good:
    http: {url: "https://localhost:${RECV_PORT[good]}/hook", ca: $TLS_CA}
  wrong:
    http: {url: "https://localhost:${RECV_PORT[wrong]}/hook", ca: $TLS_CA}
    breaker: {failures: 100, cooldown: 1s}
  noca:
    http: {url: "https://localhost:${RECV_PORT[good]}/noca"}
    breaker: {failures: 100, cooldown: 1s}
routes:
  good: {path: /webhooks/good, verify: {scheme: none}, deliver: [good]}
  wrong: {path: /webhooks/wrong, verify: {scheme: none}, deliver: [wrong], max_attempts: 20}
  noca: {path: /webhooks/noca, verify: {scheme: none}, deliver: [noca], max_attempts: 20}
EOF
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
: >"$WORKDIR/sent.tsv"

printf '{"tls":"good","text":"Grüße ✓"}' >"$WORKDIR/good.json"
post_job /webhooks/good "$WORKDIR/good.json"
GOOD_JOB=$JOB_ID
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 64)' >"$WORKDIR/good.bin"
post_job /webhooks/good "$WORKDIR/good.bin"
GOOD_BIN_JOB=$JOB_ID
printf '{"tls":"wrong name"}' >"$WORKDIR/wrong.json"
post_job /webhooks/wrong "$WORKDIR/wrong.json"
WRONG_JOB=$JOB_ID
printf '{"tls":"no ca"}' >"$WORKDIR/noca.json"
post_job /webhooks/noca "$WORKDIR/noca.json"
NOCA_JOB=$JOB_ID

for id in "$GOOD_JOB" "$GOOD_BIN_JOB"; do
    wait_delivery "$id" good "done" 20
    expect_eq "good: attempts of $id" 1 "$DELIVERY_ATTEMPTS"
done
recv_check good "$WORKDIR/sent.tsv" "${RECV_PORT[good]}" "$GOOD_JOB" "$GOOD_BIN_JOB" <<'PY'
port, want = ARGS[1], ARGS[2:]
sent = {}
for line in open(ARGS[0], encoding="utf-8"):
    i, f = line.split("\t")[:2]
    sent[i] = open(f, "rb").read()
rs = on("/hook")
if sorted(job(r) for r in rs) != sorted(want):
    fail(f"good: jobs {[job(r) for r in rs]}, expected {want} once each")
for r in rs:
    if r["body"] != sent[job(r)]:
        fail(f"good: job {job(r)}: body differs from what was sent")
    if hdr(r, "host") != f"localhost:{port}":
        fail(f"good: Host {hdr(r, 'host')!r}, expected 'localhost:{port}'")
PY
echo "good: delivered over https with the test CA"

# The wrong name and the missing CA: retried, never delivered.
for pair in "wrong $WRONG_JOB" "noca $NOCA_JOB"; do
    read -r sink id <<<"$pair"
    for ((i = 0; i < 150; i++)); do
        state=$(delivery_state "$id" "$sink")
        [[ $state == queued\ * && ${state#* } -ge 2 ]] && break
        sleep 0.1
    done
    [[ $state == queued\ * && ${state#* } -ge 2 ]] ||
        fail "$sink: expected the job queued after at least 2 refused attempts within 15 s, is '$state'"
    line=$({ grep -F "\"sink\":\"$sink\"" "$SERVER_LOG" || true; } | grep -iE 'certificate|host ?name|verif' | head -n 1 || true)
    [[ -n $line ]] || fail "$sink: no log line for sink $sink says why the server was refused (certificate, host name): $(grep -F "\"sink\":\"$sink\"" "$SERVER_LOG" | tail -n 3)"
    echo "$sink: refused and retried; the log says: $line"
done
expect_eq "wrong: requests the receiver with another name's certificate got" 0 "$(recv_count wrong)"
expect_eq "noca: requests that got through without the CA" 0 "$(recv_count good 'r["path"] == "/noca"')"
grep -q '"kind":"tls_error"' "${RECV_LOG[wrong]}" ||
    fail "wrong: the receiver saw no failed handshake: portcullis did not try it"

stop_server
echo "delivery_https: ok"
