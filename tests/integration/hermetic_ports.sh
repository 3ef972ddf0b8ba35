#!/usr/bin/env bash
# Tests bind port 0 only. start_server's check (expect_ephemeral_ports in lib.sh) refuses, before
# anything binds, every configuration that leaves server.listen or admin.listen at its default or
# names a fixed port (server.tls.listen too), naming the address; a configuration on port 0
# starts and serves. The test itself names no port: the defaults are what `portcullis check`
# reports for a configuration that leaves them out, and the fixed ports are ones the kernel handed
# out (and took back) just before.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/integration/lib.sh
source "$here/lib.sh"
need python3
need_tls_tools

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

# listen_in_summary CONFIG PLANE: the address `portcullis check` reports for public or admin.
listen_in_summary() {
    "$PORTCULLIS" check -c "$1" 2>/dev/null | sed -n "s/^listen .*$2 \([^ ]*\).*/\1/p" | head -n 1
}
# kernel_port: a free port the kernel picks, released again.
kernel_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

printf 'admin: {listen: "127.0.0.1:0"}\n%s\n' "$tail_yaml" >"$WORKDIR/server-default.yaml"
default_public=$(listen_in_summary "$WORKDIR/server-default.yaml" public)
[[ -n $default_public && $default_public != *:0 ]] ||
    fail "check reports no default public address: '$default_public'"
refused server-default "$default_public"
printf 'server: {listen: ["127.0.0.1:0"]}\n%s\n' "$tail_yaml" >"$WORKDIR/admin-default.yaml"
default_admin=$(listen_in_summary "$WORKDIR/admin-default.yaml" admin)
[[ -n $default_admin && $default_admin != *:0 ]] ||
    fail "check reports no default admin address: '$default_admin'"
refused admin-default "$default_admin"
taken=$(kernel_port)
printf 'server: {listen: ["127.0.0.1:0", "127.0.0.1:%s"]}\nadmin: {listen: "127.0.0.1:0"}\n%s\n' \
    "$taken" "$tail_yaml" >"$WORKDIR/server-fixed.yaml"
refused server-fixed "127.0.0.1:$taken"
taken=$(kernel_port)
printf 'server: {listen: ["127.0.0.1:0"]}\nadmin: {listen: "127.0.0.1:%s"}\n%s\n' \
    "$taken" "$tail_yaml" >"$WORKDIR/admin-fixed.yaml"
refused admin-fixed "127.0.0.1:$taken"
# A TLS listener (server.tls.listen) on a fixed port, next to port-0 ones.
tls_make_ca
tls_make_cert hermetic "DNS:hermetic.test"
taken=$(kernel_port)
{
    printf 'server:\n  listen: ["127.0.0.1:0"]\n'
    tls_yaml hermetic | sed "s/\"127.0.0.1:0\"/\"127.0.0.1:0\", \"127.0.0.1:$taken\"/"
    printf 'admin: {listen: "127.0.0.1:0"}\n%s\n' "$tail_yaml"
} >"$WORKDIR/tls-fixed.yaml"
refused tls-fixed "127.0.0.1:$taken"
echo "defaults and fixed ports refused before binding"

# Port 0 on both planes: the server starts and takes a webhook on ports the kernel picked.
write_config "$WORKDIR/config.yaml"
start_server "$WORKDIR/config.yaml"
[[ -n $PORT && $PORT != 0 && -n $ADMIN_PORT && $ADMIN_PORT != 0 ]] ||
    fail "ports from the kernel expected, got public $PORT, admin $ADMIN_PORT"
printf '{"hermetic":true}' >"$WORKDIR/body"
post /webhooks/github "$WORKDIR/body" -H "X-Hub-Signature-256: sha256=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/body")"
expect_queued "webhook on a port-0 server"
admin_status=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz") || true
expect_eq "control plane /healthz" 200 "$admin_status"
stop_server
echo "port-0 server served on public $PORT and admin $ADMIN_PORT"
