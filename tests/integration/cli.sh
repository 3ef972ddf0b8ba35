#!/usr/bin/env bash
# The operator's commands: --help everywhere, check's exit statuses and messages, sign's headers
# checked against openssl and accepted by a running server, token new, probe, version.
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
