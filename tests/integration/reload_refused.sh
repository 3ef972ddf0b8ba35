#!/usr/bin/env bash
# Refused reloads (issue 17; RELOAD-CONTRACT): portcullis serves a configuration directory
# (-c DIR/) whose 00-base.yaml pins 20-pinned.yaml (integrity). Four broken configurations, each
# asked for once by POST /v1/reload and once by SIGHUP:
#   syntax     a YAML syntax error in 10-routes.yaml (which also adds a route)
#   integrity  20-pinned.yaml changed (a route added) while its pin stays
#   listen     server.listen changed (and a route added): a listen address needs a restart
#   env        stable's secret taken from an environment variable that is not set
# Each one: POST answers 422 {"error":"reload_refused","detail":...,"errors":[...]} whose detail
# names file:line:column and the key (or the key, for listen); each refusal (POST or SIGHUP)
# writes the error line "configuration reload refused" with that error; the old configuration
# keeps serving (stable and pinned 202 with the old secret on the same port, the route the
# broken files add 404); /events tells config.rejected with the error. Afterwards a good reload
# is generation 2 (no refusal counted as one) and its new route answers; no secret reached the
# log.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 openssl sha256sum

new_token() { "$PORTCULLIS" token new | sed -n 's/^token: *//p'; }
sha() { sha256sum "$@" | cut -d' ' -f1; }
TOKEN=$(new_token)
STABLE_SECRET="refused-stable-$(openssl rand -hex 8)"
export STABLE_SECRET
unset RELOAD_TEST_UNSET_VAR
CONF=$WORKDIR/conf.d
mkdir -p "$CONF" "$WORKDIR/tmp"
GH='verify: {scheme: github, secrets: [{env: STABLE_SECRET}]}'

# put FILE: standard input written aside, then renamed over CONF/FILE.
put() {
    cat >"$WORKDIR/tmp/$1"
    mv -f "$WORKDIR/tmp/$1" "$CONF/$1"
}
# base LISTEN: 00-base.yaml, pinning 20-pinned.yaml as it is when called.
base() {
    put 00-base.yaml <<EOF
server: {listen: ["$1"], shards: 2}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/spool, durability: fsync}
tokens:
  ops: {sha256: "$(printf %s "$TOKEN" | sha)", scopes: ["admin:reload", "metrics:read", "events:read"]}
integrity: {"20-pinned.yaml": "sha256:$(sha "$CONF/20-pinned.yaml")"}
EOF
}
routes() {
    put 10-routes.yaml <<EOF
routes:
  stable: {path: /webhooks/stable, $GH}
EOF
}
pinned() {
    put 20-pinned.yaml <<EOF
routes:
  pinned: {path: /webhooks/pinned, $GH}
EOF
}
good() {
    pinned
    routes
    base 127.0.0.1:0
}
good
start_server "$CONF/"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
ADMIN="http://127.0.0.1:$ADMIN_PORT"

: >"$WORKDIR/events.head"
: >"$WORKDIR/events.sse"
curl -sS -N -m 120 -D "$WORKDIR/events.head" -H "Authorization: Bearer $TOKEN" \
    -o "$WORKDIR/events.sse" "$ADMIN/events?types=config.*" 2>"$WORKDIR/events.err" &
EVENTS_PID=$!
at_exit "kill $EVENTS_PID 2>/dev/null; wait $EVENTS_PID 2>/dev/null"
for ((i = 0; i < 100; i++)); do
    grep -q $'^\r$' "$WORKDIR/events.head" 2>/dev/null && break
    sleep 0.05
done
grep -q '^HTTP/1.1 200' "$WORKDIR/events.head" ||
    fail "GET /events: $(cat "$WORKDIR/events.head" "$WORKDIR/events.err")"

printf '%s' '{"zen":"Keep it logically awesome."}' >"$WORKDIR/body.json"
SIG="sha256=$(hmac_sha256_hex_file "$STABLE_SECRET" "$WORKDIR/body.json")"

# serving WHAT PROBE: the configuration of the start still serves: stable and pinned 202 (the
# secret of the start, the port of the start, new connections), PROBE (the route the refused
# files add) 404.
serving() {
    post /webhooks/stable "$WORKDIR/body.json" -H "X-Hub-Signature-256: $SIG"
    expect_queued "$1: stable after the refusal"
    post /webhooks/pinned "$WORKDIR/body.json" -H "X-Hub-Signature-256: $SIG"
    expect_queued "$1: pinned after the refusal"
    post "/webhooks/$2" "$WORKDIR/body.json" -H "X-Hub-Signature-256: $SIG"
    expect_eq "$1: /webhooks/$2, which the refused files add (answer: $HTTP_BODY)" 404 "$HTTP_STATUS"
}

# contains WHAT TEXT SUBSTRING...: TEXT holds every SUBSTRING.
contains() {
    local what=$1 text=$2 s
    shift 2
    for s in "$@"; do
        [[ $text == *"$s"* ]] || fail "$what: '$text' does not name '$s'"
    done
}

# refusal_detail FILE: the detail of a 422 {"error":"reload_refused","detail":...,"errors":[...]}
# (errors: the list of every error, the detail first).
refusal_detail() {
    python3 - "$1" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
assert a.get("error") == "reload_refused", a
d, errs = a.get("detail"), a.get("errors")
assert isinstance(d, str) and d, a
assert isinstance(errs, list) and errs and all(isinstance(e, str) for e in errs), a
assert errs[0] == d, "errors[0] is not the detail"
print(d)
PY
}

REJECTED=0
ERRORS=()

# logged_refusal WHAT DETAIL: the REJECTED-th "configuration reload refused" line has come (the
# contract logs every refusal, asked by POST or by SIGHUP), level error, its error DETAIL.
logged_refusal() {
    local line
    wait_for_log '"msg":"configuration reload refused"' "$REJECTED"
    line=$(grep -F '"msg":"configuration reload refused"' "$SERVER_LOG" | sed -n "${REJECTED}p")
    python3 - "$line" "$2" <<'PY' || fail "$1: the log line: $line"
import json, sys
l = json.loads(sys.argv[1])
assert l.get("level") == "error", "level"
assert l.get("error") == sys.argv[2], f"error differs from POST's detail {sys.argv[2]!r}"
assert isinstance(l.get("errors"), int) and l["errors"] >= 1, "errors: a count"
PY
}

# refused CASE PROBE SUBSTRING...: the broken files are in place; asks for a reload by POST, then
# by SIGHUP, and checks both refusals (see the top).
refused() {
    local case=$1 probe=$2 status detail
    shift 2
    # POST /v1/reload -> 422 with the first error and the list.
    status=$(curl -sS -m 20 -o "$WORKDIR/reload.out" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $TOKEN" "$ADMIN/v1/reload") || status="curl-failed-$?"
    expect_eq "$case: POST /v1/reload (answer: $(cat "$WORKDIR/reload.out"))" 422 "$status"
    detail=$(refusal_detail "$WORKDIR/reload.out") || fail "$case: the 422's body: $(cat "$WORKDIR/reload.out")"
    contains "$case: POST /v1/reload's detail" "$detail" "$@"
    REJECTED=$((REJECTED + 1))
    ERRORS+=("$detail")
    logged_refusal "$case (POST)" "$detail"
    serving "$case (POST)" "$probe"

    # SIGHUP -> the same error in the log line.
    kill -HUP "$SERVER_PID"
    REJECTED=$((REJECTED + 1))
    ERRORS+=("$detail")
    logged_refusal "$case (SIGHUP)" "$detail"
    serving "$case (SIGHUP)" "$probe"
    echo "refused ($case, POST and SIGHUP): $detail"
    good
}

# --- a YAML syntax error (line 4, column 1: the flow mapping of line 3 never closes) ---
put 10-routes.yaml <<EOF
routes:
  stable: {path: /webhooks/stable, $GH}
  broken: {path: /webhooks/broken, verify: {scheme: github, secrets: [{env: STABLE_SECRET}]}
EOF
refused syntax broken "10-routes.yaml:4:1: routes.broken:"

# --- a pinned file that no longer matches its pin ---
put 20-pinned.yaml <<EOF
routes:
  pinned: {path: /webhooks/pinned, $GH}
  pinned-extra: {path: /webhooks/pinned-extra, $GH}
EOF
refused integrity pinned-extra "00-base.yaml:6:" "integrity.20-pinned.yaml:" "does not match its pin"

# --- server.listen changed ---
base 127.0.0.2:0
put 10-routes.yaml <<EOF
routes:
  stable: {path: /webhooks/stable, $GH}
  listen-probe: {path: /webhooks/listen-probe, $GH}
EOF
refused listen listen-probe "server.listen"

# --- a secret from an environment variable that is not set ---
put 10-routes.yaml <<EOF
routes:
  stable: {path: /webhooks/stable, verify: {scheme: github, secrets: [{env: RELOAD_TEST_UNSET_VAR}]}}
  env-probe: {path: /webhooks/env-probe, $GH}
EOF
refused env env-probe "10-routes.yaml:2:" "routes.stable.verify.secrets[0]" "RELOAD_TEST_UNSET_VAR"

# --- then a good reload: generation 2, its new route answers at once ---
put 10-routes.yaml <<EOF
routes:
  stable: {path: /webhooks/stable, $GH}
  after: {path: /webhooks/after, $GH}
EOF
status=$(curl -sS -m 20 -o "$WORKDIR/reload.out" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $TOKEN" "$ADMIN/v1/reload") || status="curl-failed-$?"
expect_eq "the good reload (answer: $(cat "$WORKDIR/reload.out"))" 200 "$status"
python3 - "$WORKDIR/reload.out" <<'PY' || fail "the good reload's answer: $(cat "$WORKDIR/reload.out")"
import json, sys
a = json.load(open(sys.argv[1]))
assert a.get("reloaded") is True and a.get("generation") == 2 and a.get("routes") == 3, a
PY
post /webhooks/after "$WORKDIR/body.json" -H "X-Hub-Signature-256: $SIG"
expect_queued "the good reload's new route"
post /webhooks/stable "$WORKDIR/body.json" -H "X-Hub-Signature-256: $SIG"
expect_queued "stable after the good reload"

# --- /events: the 8 config.rejected with their errors, then config.reloaded generation 2 ---
for ((i = 0; i < 200; i++)); do
    grep -q '^event: config.reloaded$' "$WORKDIR/events.sse" && break
    sleep 0.05
done
printf '%s\n' "${ERRORS[@]}" >"$WORKDIR/errors.txt"
python3 - "$WORKDIR/events.sse" "$WORKDIR/errors.txt" <<'PY' || fail "/events: $(cat "$WORKDIR/events.sse")"
import json, sys
frames = [f for f in open(sys.argv[1]).read().split("\n\n") if f.strip()]
want = open(sys.argv[2]).read().splitlines()
ev = []
for frame in frames:
    lines = [l for l in frame.split("\n") if l and not l.startswith(":")]
    if lines:
        f = dict(l.split(": ", 1) for l in lines)
        d = json.loads(f["data"])
        assert d["type"] == f["event"], frame
        ev.append(d)
types = [e["type"] for e in ev]
assert types == ["config.rejected"] * len(want) + ["config.reloaded"], types
for e, w in zip(ev, want):
    assert e.get("error") == w, f"config.rejected error {e.get('error')!r}, expected {w!r}"
assert ev[-1].get("generation") == 2 and ev[-1].get("routes") == 3, ev[-1]
PY
echo "/events: $REJECTED config.rejected with the errors, then config.reloaded generation 2"
(($(grep -cF '"msg":"configuration reloaded"' "$SERVER_LOG") == 1)) ||
    fail "expected one 'configuration reloaded' line (the good reload)"
grep -qF "$STABLE_SECRET" "$SERVER_LOG" && fail "the secret is in the log"
stop_server
echo "PASS"
