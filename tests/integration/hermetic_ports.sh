#!/usr/bin/env bash
# Tests bind port 0 only. With the default ports 127.0.0.1:8080 and 127.0.0.1:9090 held by
# another program (a python3 process of this test, or whoever already holds them),
# start_server's check (expect_ephemeral_ports in lib.sh) refuses, before anything binds, every
# configuration that leaves server.listen or admin.listen at its default or names a fixed
# port, naming the address; and a configuration on port 0 starts and serves all the same.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/integration/lib.sh
source "$here/lib.sh"
need python3

# The holder writes which ports it took, then sleeps (bounded) until at_exit kills it by pid.
python3 - "$WORKDIR/held" <<'PY' &
import os, socket, sys, time
held, socks = [], []
for port in (8080, 9090):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        s.listen()
        socks.append(s)
        held.append(str(port))
    except OSError:
        pass  # another program holds it: just as good for this test
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(" ".join(held))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
PY
holder=$!
at_exit "kill $holder"
for ((i = 0; i < 200; i++)); do
    [[ -e $WORKDIR/held ]] && break
    sleep 0.05
done
[[ -e $WORKDIR/held ]] || fail "the port holder did not start"
echo "held by this test: $(cat "$WORKDIR/held") (the rest of 8080 9090 by another program)"
for port in 8080 9090; do
    if python3 -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
        fail "127.0.0.1:$port is free: the holder did not take it"
    fi
done

export GH_SECRET="hermetic-secret-$RANDOM" GL_TOKEN=unused

# refused NAME ADDRESS: expect_ephemeral_ports refuses $WORKDIR/NAME.yaml, naming ADDRESS.
refused() {
    local rc=0
    (expect_ephemeral_ports "$WORKDIR/$1.yaml") 2>"$WORKDIR/$1.err" || rc=$?
    expect_eq "$1: expect_ephemeral_ports exit status ($(cat "$WORKDIR/$1.err"))" 1 "$rc"
    grep -qF "listens on $2 " "$WORKDIR/$1.err" ||
        fail "$1: the refusal does not name $2: $(cat "$WORKDIR/$1.err")"
}
tail_yaml="spool: {dir: $WORKDIR/spool, durability: fsync}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}"

printf 'admin: {listen: "127.0.0.1:0"}\n%s\n' "$tail_yaml" >"$WORKDIR/server-default.yaml"
refused server-default 0.0.0.0:8080
printf 'server: {listen: ["127.0.0.1:0"]}\n%s\n' "$tail_yaml" >"$WORKDIR/admin-default.yaml"
refused admin-default 127.0.0.1:9090
printf 'server: {listen: ["127.0.0.1:0", "127.0.0.1:8080"]}\nadmin: {listen: "127.0.0.1:0"}\n%s\n' \
    "$tail_yaml" >"$WORKDIR/server-fixed.yaml"
refused server-fixed 127.0.0.1:8080
printf 'server: {listen: ["127.0.0.1:0"]}\nadmin: {listen: "127.0.0.1:9091"}\n%s\n' \
    "$tail_yaml" >"$WORKDIR/admin-fixed.yaml"
refused admin-fixed 127.0.0.1:9091
echo "defaults and fixed ports refused before binding"

# Port 0 on both planes: the server starts next to the held ports and takes a webhook.
write_config "$WORKDIR/config.yaml"
start_server "$WORKDIR/config.yaml"
[[ $PORT != 8080 && -n $ADMIN_PORT && $ADMIN_PORT != 9090 ]] ||
    fail "ports from the kernel expected, got public $PORT, admin $ADMIN_PORT"
printf '{"hermetic":true}' >"$WORKDIR/body"
post /webhooks/github "$WORKDIR/body" -H "X-Hub-Signature-256: sha256=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/body")"
expect_queued "webhook with the default ports held"
admin_status=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz") || true
expect_eq "control plane /healthz" 200 "$admin_status"
stop_server
echo "port-0 server on public $PORT and admin $ADMIN_PORT served while 8080 and 9090 were held"
