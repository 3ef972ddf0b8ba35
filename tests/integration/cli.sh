#!/usr/bin/env bash
# The operator's commands: --help everywhere, check's exit statuses and messages (the certificates
# of server.tls included), sign's headers checked against openssl and accepted by a running
# server (over TLS too), token new, probe, version.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl openssl

P=$PORTCULLIS
status_of() {
    local rc=0
    "$@" >"$WORKDIR/out" 2>"$WORKDIR/err" || rc=$?
    echo "$rc"
}

# --help on every command, exit 0, usage on stdout.
for cmd in serve check sign "spool verify" "spool dump" "token new" probe version; do
    # shellcheck disable=SC2086
    rc=$(status_of "$P" $cmd --help)
    expect_eq "portcullis $cmd --help exit status" 0 "$rc"
    grep -q "^usage: portcullis ${cmd%% *}" "$WORKDIR/out" || fail "portcullis $cmd --help: no usage line"
done
expect_eq "unknown command exit status" 2 "$(status_of "$P" frobnicate)"
expect_eq "unknown option exit status" 2 "$(status_of "$P" check --nope)"

# check: 0 on a valid configuration with its summary; 2 with file:line:column and key path.
export GH_SECRET=cli-secret GL_TOKEN=cli-token
write_config "$WORKDIR/ok.yaml"
expect_eq "check on a valid config" 0 "$(status_of "$P" check -c "$WORKDIR/ok.yaml")"
grep -q "configuration ok" "$WORKDIR/out" || fail "check printed no 'configuration ok'"
grep -q "github" "$WORKDIR/out" || fail "check's summary does not list the github route"
printf 'server:\n  listen: ["127.0.0.1:0"]\n  shardz: 2\n' >"$WORKDIR/bad.yaml"
expect_eq "check on an unknown key" 2 "$(status_of "$P" check -c "$WORKDIR/bad.yaml")"
grep -q "bad.yaml:3:3: server.shardz" "$WORKDIR/err" ||
    fail "check's error does not name file:line:column and key: $(cat "$WORKDIR/err")"
# Two routes whose paths share a request path without one being more specific: the router could
# only take whichever is declared first, so an unsigned route would shadow a signed one. check
# (and serve, which loads the same way) refuses them, naming both routes and a path both match.
cat >"$WORKDIR/overlap.yaml" <<YAML
server: {listen: ["127.0.0.1:0"]}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/overlap-spool}
routes:
  signed:
    path: /webhooks/{x}/y
    verify: {scheme: github, secrets: [{env: GH_SECRET}]}
  unsigned:
    path: /webhooks/z/{w}
    verify: {scheme: none}
YAML
overlap='overlap.yaml:9:11: routes.unsigned.path: "/webhooks/z/{w}" overlaps route signed'"'"'s path "/webhooks/{x}/y" (.*overlap.yaml:6:11): both match "/webhooks/z/y"'
for cmd in check serve; do
    expect_eq "$cmd on overlapping routes" 2 \
        "$(status_of timeout 20 "$P" "$cmd" -c "$WORKDIR/overlap.yaml")"
    grep -q "$overlap" "$WORKDIR/err" || fail "$cmd's error on overlapping routes: $(cat "$WORKDIR/err")"
done
[[ ! -e $WORKDIR/overlap-spool ]] || fail "serve created the spool of a refused configuration"
# Sinks: check validates them and lists them; a sink no route delivers to is a warning.
cat >"$WORKDIR/sinks.yaml" <<YAML
server: {listen: ["127.0.0.1:0"]}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/sinks-spool}
sinks:
  app:
    http: {url: "http://127.0.0.1:9/hooks"}
routes:
  github:
    path: /webhooks/github
    verify: {scheme: github, secrets: [{env: GH_SECRET}]}
    deliver: [app]
YAML
sed -e 's/deliver: \[app\]//' "$WORKDIR/sinks.yaml" >"$WORKDIR/sink-alone.yaml"
expect_eq "check on sinks" 0 "$(status_of "$P" check --strict -c "$WORKDIR/sinks.yaml")"
grep -q "^  app  http   POST http://127.0.0.1:9/hooks" "$WORKDIR/out" ||
    fail "check's summary does not list the sink: $(cat "$WORKDIR/out")"
grep -q "deliver app" "$WORKDIR/out" || fail "check's summary does not say where github delivers"
expect_eq "check on a sink no route delivers to" 0 \
    "$(status_of "$P" check -c "$WORKDIR/sink-alone.yaml")"
grep -q "sink-alone.yaml:5:3: sinks.app: sink app is not delivered to" "$WORKDIR/err" ||
    fail "check does not warn about an undelivered sink: $(cat "$WORKDIR/err")"
# A route name holding an ESC or a NUL is an error whose message shows the name escaped.
printf 'routes:\n  "a\\e[2Jb": {path: /a, verify: {scheme: none}}\n  "c\\0d": {path: /c, verify: {scheme: none}}\n' \
    >"$WORKDIR/names.yaml"
expect_eq "check on control bytes in route names" 2 "$(status_of "$P" check -c "$WORKDIR/names.yaml")"
grep -qF 'names.yaml:2:3: routes.a\x1b[2Jb: route names are 1 to 64 characters of [a-z0-9_-], found "a\x1b[2Jb"' \
    "$WORKDIR/err" || fail "check's error on an ESC in a route name: $(cat -v "$WORKDIR/err")"
grep -qF 'names.yaml:3:3: routes.c\x00d: route names are 1 to 64 characters of [a-z0-9_-], found "c\x00d"' \
    "$WORKDIR/err" || fail "check's error on a NUL in a route name: $(cat -v "$WORKDIR/err")"
! LC_ALL=C grep -qaP '[\x00-\x09\x0b-\x1f\x7f-\xff]' "$WORKDIR/err" ||
    fail "check's errors hold raw control bytes: $(cat -v "$WORKDIR/err")"

# An unset secret is a warning: fine normally, fatal with --strict.
unset GL_TOKEN
expect_eq "check with an unset secret" 0 "$(status_of "$P" check -c "$WORKDIR/ok.yaml")"
expect_eq "check --strict with an unset secret" 2 \
    "$(status_of "$P" check --strict -c "$WORKDIR/ok.yaml")"
grep -q "GL_TOKEN" "$WORKDIR/err" || fail "the warning does not name the variable"
export GL_TOKEN=cli-token

# check reads every certificate of server.tls, made here by openssl: a test CA, an intermediate
# and leaves for hooks.example.test and *.example.test. openssl 3.0's x509 and req take only a
# positive -days, so the expired certificate comes from `openssl ca -startdate/-enddate`.
tls=$WORKDIR/tls
mkdir -p "$tls/ca-db/new"
: >"$tls/ca-db/index.txt"
echo 01 >"$tls/ca-db/serial"
new_ec_key_csr() { # new_ec_key_csr NAME CN [openssl req options]: NAME.key and NAME.csr
    local name=$1 cn=$2
    shift 2
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/$name.key" \
        -out "$tls/$name.csr" -subj "/CN=$cn" "$@" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/ca.key" \
    -out "$tls/ca.pem" -subj "/CN=portcullis test CA" -days 30 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$tls/ca.ext"
printf 'subjectAltName=DNS:hooks.example.test,DNS:*.example.test\n' >"$tls/leaf.ext"
new_ec_key_csr int "portcullis test intermediate"
openssl x509 -req -in "$tls/int.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 30 -extfile "$tls/ca.ext" -out "$tls/int.pem" 2>/dev/null
leaf() { # leaf NAME DAYS: NAME.pem (the leaf, then the intermediate) and NAME.key
    new_ec_key_csr "$1" "$1.example.test"
    openssl x509 -req -in "$tls/$1.csr" -CA "$tls/int.pem" -CAkey "$tls/int.key" -CAcreateserial \
        -days "$2" -extfile "$tls/leaf.ext" -out "$tls/$1.leaf.pem" 2>/dev/null
    cat "$tls/$1.leaf.pem" "$tls/int.pem" >"$tls/$1.pem"
}
leaf good 90
leaf soon 10
cat "$tls/int.pem" "$tls/good.leaf.pem" >"$tls/reversed.pem"
cat >"$tls/ca.cnf" <<CNF
[ca]
default_ca = test_ca
[test_ca]
database = $tls/ca-db/index.txt
new_certs_dir = $tls/ca-db/new
serial = $tls/ca-db/serial
certificate = $tls/ca.pem
private_key = $tls/ca.key
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = copy
[any_name]
commonName = supplied
CNF
new_ec_key_csr expired expired.example.test -addext subjectAltName=DNS:expired.example.test
openssl ca -batch -notext -config "$tls/ca.cnf" -in "$tls/expired.csr" -out "$tls/expired.pem" \
    -startdate 20200101000000Z -enddate 20200201000000Z 2>/dev/null
# Ports the kernel gave and took back, for the URLs sign is asked about: check and sign only
# read the configuration, so nothing binds them here.
kernel_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
sign_port=$(kernel_port)
other_port=$(kernel_port)
[[ $sign_port != "$other_port" ]] || other_port=$((sign_port == 65535 ? sign_port - 1 : sign_port + 1))
# tls_config NAME CERT KEY: $WORKDIR/NAME.yaml serving CERT and KEY (paths relative to the
# configuration's folder), with a second TLS listener on $sign_port for sign's https:// URLs.
tls_config() {
    cat >"$WORKDIR/$1.yaml" <<YAML
server:
  listen: ["127.0.0.1:0"]
  tls:
    listen: ["127.0.0.1:0", "127.0.0.1:$sign_port"]
    certificates:
      - {cert: $2, key: $3}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/tls-spool}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
YAML
}
tls_config tls-good tls/good.pem tls/good.key
# From another working directory: the paths are the configuration's folder's.
expect_eq "check with a good certificate" 0 \
    "$(cd / && status_of "$P" check -c "$WORKDIR/tls-good.yaml")"
not_after=$(date -u -d "$(openssl x509 -in "$tls/good.pem" -noout -enddate | cut -d= -f2)" +%F)
grep -qF "listen   public 127.0.0.1:0 · tls 127.0.0.1:0, 127.0.0.1:$sign_port · admin 127.0.0.1:0" \
    "$WORKDIR/out" || fail "check's listen line: $(cat "$WORKDIR/out")"
# 90 days from its making: 90 days left within the same second, 89 after.
grep -qF "  $WORKDIR/tls/good.pem (key $WORKDIR/tls/good.key) · hooks.example.test, *.example.test · ECDSA P-256 · expires $not_after (" \
    "$WORKDIR/out" || fail "check's certificate line: $(cat "$WORKDIR/out")"
grep -qE " \((89|90) days left\) · chain of 2$" "$WORKDIR/out" ||
    fail "check's certificate line does not count the days: $(cat "$WORKDIR/out")"
[[ ! -s $WORKDIR/err ]] || fail "check with a good certificate said: $(cat "$WORKDIR/err")"
# tls_refused NAME CERT KEY MESSAGE: check exits 2 naming the certificate, its place and MESSAGE.
tls_refused() {
    tls_config "$1" "$2" "$3"
    expect_eq "check: $1" 2 "$(status_of "$P" check -c "$WORKDIR/$1.yaml")"
    grep -qF "error: $WORKDIR/$1.yaml:6:9: server.tls.certificates[0]: $WORKDIR/$2: $4" "$WORKDIR/err" ||
        fail "check's error on $1: $(cat "$WORKDIR/err")"
    grep -qF "$WORKDIR/$1.yaml: 1 certificate error" "$WORKDIR/err" ||
        fail "check's error count on $1: $(cat "$WORKDIR/err")"
}
tls_refused tls-expired tls/expired.pem tls/expired.key \
    "expired on 2020-02-01 00:00:00 UTC ("
grep -qF "· expired 2020-02-01 (" "$WORKDIR/out" || fail "check's summary of an expired certificate: $(cat "$WORKDIR/out")"
tls_refused tls-mismatch tls/good.pem tls/soon.key \
    "the key in $WORKDIR/tls/soon.key does not match the certificate"
tls_config tls-reversed tls/reversed.pem tls/good.key
expect_eq "check: chain in the wrong order" 2 "$(status_of "$P" check -c "$WORKDIR/tls-reversed.yaml")"
grep -qF "server.tls.certificates[0]: $WORKDIR/tls/reversed.pem: chain out of order: certificate 2 (/CN=good.example.test) did not issue certificate 1 (/CN=portcullis test intermediate" \
    "$WORKDIR/err" || fail "check's error on a reversed chain: $(cat "$WORKDIR/err")"
# Within 14 days of expiry: a warning, an error under --strict.
tls_config tls-soon tls/soon.pem tls/soon.key
expect_eq "check: expiring in 10 days" 0 "$(status_of "$P" check -c "$WORKDIR/tls-soon.yaml")"
grep -qF "warning: $WORKDIR/tls-soon.yaml:6:9: server.tls.certificates[0]: $WORKDIR/tls/soon.pem: expires on " \
    "$WORKDIR/err" || fail "check's warning on a certificate about to expire: $(cat "$WORKDIR/err")"
grep -qE "\(in (9|10) days\): renew it" "$WORKDIR/err" || fail "the warning does not count the days: $(cat "$WORKDIR/err")"
grep -q "configuration ok (1 warnings)" "$WORKDIR/out" || fail "check's last line: $(cat "$WORKDIR/out")"
expect_eq "check --strict: expiring in 10 days" 2 \
    "$(status_of "$P" check --strict -c "$WORKDIR/tls-soon.yaml")"
# serve refuses a certificate check refuses, before it binds or makes the spool.
tls_config tls-serve tls/expired.pem tls/expired.key
sed -i "s/, \"127.0.0.1:$sign_port\"//" "$WORKDIR/tls-serve.yaml"
expect_eq "serve with an expired certificate" 2 \
    "$(status_of timeout 20 "$P" serve -c "$WORKDIR/tls-serve.yaml")"
grep -qF "server.tls.certificates[0]: $WORKDIR/tls/expired.pem: expired on 2020-02-01" "$WORKDIR/err" ||
    fail "serve's refusal of an expired certificate: $(cat "$WORKDIR/err")"
grep -qF "1 certificate error: not serving" "$WORKDIR/err" ||
    fail "serve's last line on an expired certificate: $(cat "$WORKDIR/err")"
[[ ! -e $WORKDIR/tls-spool ]] || fail "serve created the spool with an unusable certificate"

# sign --curl: an http:// URL that reaches a TLS listener becomes https://, with --cacert.
expect_eq "sign --curl for a TLS listener" 0 "$(status_of "$P" sign -c "$WORKDIR/tls-good.yaml" \
    github --curl "http://localhost:$sign_port" --cacert "$tls/ca.pem")"
grep -qF "curl -sS -X POST 'https://localhost:$sign_port/webhooks/github' --cacert '$tls/ca.pem' -H " \
    "$WORKDIR/out" || fail "sign --curl --cacert printed: $(cat "$WORKDIR/out")"
grep -qF "localhost:$sign_port is a TLS listener (server.tls.listen): the command uses https://" \
    "$WORKDIR/err" || fail "sign did not say it switched to https: $(cat "$WORKDIR/err")"
# Another port, or port 0 (bound to whatever the kernel picks), stays as given.
for url in "http://127.0.0.1:$other_port" http://127.0.0.1:0 "https://127.0.0.1:$sign_port"; do
    expect_eq "sign --curl $url" 0 \
        "$(status_of "$P" sign -c "$WORKDIR/tls-good.yaml" github --curl "$url/webhooks/github")"
    grep -qF "curl -sS -X POST '$url/webhooks/github' -H " "$WORKDIR/out" ||
        fail "sign --curl $url printed: $(cat "$WORKDIR/out")"
    [[ ! -s $WORKDIR/err ]] || fail "sign --curl $url said: $(cat "$WORKDIR/err")"
done
expect_eq "sign --cacert without --curl" 2 \
    "$(status_of "$P" sign -c "$WORKDIR/tls-good.yaml" github --cacert "$tls/ca.pem")"
# The printed command, run as it is, gets a 202 over TLS from a running server that presents
# a leaf for localhost with its intermediate (curl checks them against the test CA). The server
# binds port 0; sign reads a copy of its configuration that names the port it got.
new_ec_key_csr local localhost
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/local.ext"
openssl x509 -req -in "$tls/local.csr" -CA "$tls/int.pem" -CAkey "$tls/int.key" -CAcreateserial \
    -days 30 -extfile "$tls/local.ext" -out "$tls/local.leaf.pem" 2>/dev/null
cat "$tls/local.leaf.pem" "$tls/int.pem" >"$tls/local.pem"
tls_config tls-serve-ok tls/local.pem tls/local.key
sed -i "s/, \"127.0.0.1:$sign_port\"//" "$WORKDIR/tls-serve-ok.yaml"
start_server "$WORKDIR/tls-serve-ok.yaml"
tls_port=$(sed -n 's/.*"msg":"listening","plane":"public","transport":"tls","address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' \
    "$SERVER_LOG" | head -n 1)
[[ -n $tls_port && $tls_port != 0 ]] || fail "no TLS listening line: $(cat "$SERVER_LOG")"
sed "s/^    listen: .*/    listen: [\"127.0.0.1:$tls_port\"]/" "$WORKDIR/tls-serve-ok.yaml" \
    >"$WORKDIR/tls-sign.yaml"
grep -q "127.0.0.1:$tls_port" "$WORKDIR/tls-sign.yaml" || fail "tls-sign.yaml names no TLS port"
for host in localhost 127.0.0.1; do
    "$P" sign -c "$WORKDIR/tls-sign.yaml" github --curl "http://$host:$tls_port" \
        --cacert "$tls/ca.pem" >"$WORKDIR/cmd" 2>"$WORKDIR/err" || fail "sign: $(cat "$WORKDIR/err")"
    grep -qF "'https://$host:$tls_port/webhooks/github'" "$WORKDIR/cmd" ||
        fail "sign --curl http://$host:$tls_port printed: $(cat "$WORKDIR/cmd")"
    answer=$(bash "$WORKDIR/cmd") || fail "the https command failed: $answer"
    [[ $answer == *'"status":"queued"'* ]] || fail "sign --curl over TLS to $host: $answer"
done
stop_server

# sign: the github header is the HMAC openssl computes over the same body.
printf '{"action":"opened","n":1}' >"$WORKDIR/body.json"
expect_eq "sign exit status" 0 \
    "$(status_of "$P" sign -c "$WORKDIR/ok.yaml" github --body "$WORKDIR/body.json")"
expected="X-Hub-Signature-256: sha256=$(hmac_sha256_hex_file "$GH_SECRET" "$WORKDIR/body.json")"
expect_eq "sign github header" "$expected" "$(cat "$WORKDIR/out")"
expect_eq "sign for an unknown route" 2 "$(status_of "$P" sign -c "$WORKDIR/ok.yaml" nope)"

# sign --curl: the printed command, run as it is, gets a 202 from a running server, for every
# scheme that can be signed with a shared secret.
export STRIPE_SECRET=whsec_cli0123456789abcdef SLACK_SECRET=cli-slack-secret
STANDARD_SECRET=whsec_$(printf 'cli standard key' | base64)
DISCORD_KEY=$(printf '%064d' 0 | tr 0 a)
export STANDARD_SECRET DISCORD_KEY SHOPIFY_SECRET=cli-shopify ACME_SECRET=cli-acme
cat >>"$WORKDIR/ok.yaml" <<'YAML'
  stripe: {path: /webhooks/stripe, verify: {scheme: stripe, secrets: [{env: STRIPE_SECRET}]}}
  slack: {path: /webhooks/slack, verify: {scheme: slack, secrets: [{env: SLACK_SECRET}]}}
  standard: {path: /webhooks/standard, verify: {scheme: standard, secrets: [{env: STANDARD_SECRET}]}}
  shopify: {path: /webhooks/shopify, verify: {scheme: shopify, secrets: [{env: SHOPIFY_SECRET}]}}
  acme:
    path: /webhooks/acme
    verify: {scheme: hmac, header: X-Acme-Signature, prefix: "sha512=", encoding: base64,
             algorithm: sha512, timestamp_header: X-Acme-Time, template: "v1:{timestamp}:{body}",
             secrets: [{env: ACME_SECRET}]}
  discord: {path: /webhooks/discord, verify: {scheme: ed25519, secrets: [{env: DISCORD_KEY}]}}
YAML
start_server "$WORKDIR/ok.yaml"
for route in github gitlab stripe slack standard shopify acme; do
    "$P" sign -c "$WORKDIR/ok.yaml" "$route" --curl "http://127.0.0.1:$PORT" >"$WORKDIR/cmd"
    answer=$(bash "$WORKDIR/cmd")
    [[ $answer == *'"status":"queued"'* ]] || fail "sign --curl for $route: $answer"
done
stop_server
# Only the sender holds an Ed25519 private key: sign says so instead of printing anything.
expect_eq "sign for an ed25519 route" 2 "$(status_of "$P" sign -c "$WORKDIR/ok.yaml" discord)"
grep -q "public key" "$WORKDIR/err" || fail "sign discord: $(cat "$WORKDIR/err")"
[[ ! -s $WORKDIR/out ]] || fail "sign discord printed headers"

# token new: a token and the SHA-256 of exactly that token.
expect_eq "token new exit status" 0 "$(status_of "$P" token new)"
token=$(sed -n 's/^token: *//p' "$WORKDIR/out")
hash=$(sed -n 's/^sha256: *//p' "$WORKDIR/out")
expect_eq "token hash" "$(printf %s "$token" | openssl dgst -sha256 -r | cut -d' ' -f1)" "$hash"

rc=$(status_of "$P" probe)
[[ $rc == 0 || $rc == 1 ]] || fail "probe exit status $rc"
grep -q "multishot recv" "$WORKDIR/out" || grep -q "io_uring" "$WORKDIR/out" || fail "probe printed nothing useful"
expect_eq "version exit status" 0 "$(status_of "$P" version)"
grep -q "^portcullis [0-9]" "$WORKDIR/out" || fail "version printed no version"
echo "cli: ok"
