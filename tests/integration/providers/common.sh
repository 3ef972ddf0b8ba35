# shellcheck shell=bash
# Helpers shared by the provider signature tests (stripe_signature.sh, slack_signature.sh, ...).
# Source it after lib.sh:
#
#   source "$here/lib.sh"
#   source "$here/providers/common.sh"
#   need_signers                                  # exit 77 without node or node_modules
#   provider_config "$WORKDIR/config.yaml" <<'EOF'  # the routes, indented by two spaces
#     stripe: {path: /webhooks/stripe, verify: {scheme: stripe, secrets: [{env: STRIPE_SECRET}]}}
#   EOF
#   sign_with stripe --secret "$STRIPE_SECRET" --body "$file"    # sets SIGNED (curl -H args)
#   post /webhooks/stripe "$file" "${SIGNED[@]}"
#   accept stripe "unicode body" "$file"          # 202, remembered for check_spool
#   refuse stripe "wrong secret" signature_mismatch "$file"   # 401 + log line
#   check_spool                                   # after stop_server: 202s stored, 401s not
#
# Requests signed by the providers' own libraries come from providers/sign.mjs; schemes with
# no signing library (Slack, Shopify, generic hmac) are signed with openssl in the tests.

PROVIDERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SIGNER="$PROVIDERS_DIR/sign.mjs"
SPOOL="$WORKDIR/spool"

# Skips (77) when node or the npm packages are missing; fails when node_modules is there but
# does not match package-lock.json, which would test against other library versions than the
# pinned ones.
need_signers() {
    need node
    [[ -d $PROVIDERS_DIR/node_modules ]] ||
        skip "tests/integration/providers/node_modules is missing (run scripts/deps --test)"
    local out
    out=$(cd "$PROVIDERS_DIR" && node -e '
const fs = require("fs");
const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
const bad = [];
for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === "") continue;
    let installed;
    try { installed = JSON.parse(fs.readFileSync(path + "/package.json", "utf8")).version; }
    catch { installed = "missing"; }
    if (installed !== entry.version) bad.push(`${path}: ${installed}, lock ${entry.version}`);
}
if (bad.length) { console.log(bad.join("; ")); process.exit(1); }
' 2>&1) || fail "providers/node_modules does not match package-lock.json ($out): run scripts/deps --test"
}

# provider_config FILE [CERTIFICATE...]: a server on ephemeral ports with the spool in $SPOOL and
# the routes read from standard input (YAML, each route indented by two spaces); with
# certificate names (lib.sh's tls_make_cert), a TLS listener too (start it with start_tls_server).
provider_config() {
    local file=$1
    shift
    {
        echo 'server:'
        echo '  listen: ["127.0.0.1:0"]'
        echo '  shards: 2'
        (($# == 0)) || tls_yaml "$@"
        cat <<EOF
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync}
routes:
EOF
        cat
    } >"$file"
}

now() { date +%s; }

# sign_with ARGS...: signs with sign.mjs (one `sign.mjs serve` process per test, started on
# first use); sets SIGNED_LINES (the "Name: value" lines) and SIGNED (the same as curl -H
# arguments). Call it directly, not in $(...): the answer is read from the coprocess.
SIGNER_PID=""
sign_with() {
    if [[ -z $SIGNER_PID ]]; then
        coproc SIGNER_PROC { exec node "$SIGNER" serve; }
        SIGNER_PID=$SIGNER_PROC_PID
        SIGNER_IN=${SIGNER_PROC[1]}
        SIGNER_OUT=${SIGNER_PROC[0]}
        at_exit 'kill "$SIGNER_PID" 2>/dev/null'
    fi
    local a
    for a in "$@"; do
        [[ $a != *$'\n'* ]] || fail "sign_with: an argument holds a newline"
    done
    printf '%s\0' "$@" >&"$SIGNER_IN" && printf '\n' >&"$SIGNER_IN" ||
        fail "sign_with: sign.mjs serve is gone"
    local status
    IFS= read -r -t 60 status <&"$SIGNER_OUT" || fail "sign_with $1: no answer from sign.mjs serve"
    [[ $status == "OK "* ]] || fail "sign.mjs $*: ${status#ERR }"
    SIGNED_LINES=()
    SIGNED=()
    local i l
    for ((i = 0; i < ${status#OK }; i++)); do
        IFS= read -r -t 60 l <&"$SIGNER_OUT" || fail "sign_with $1: answer cut short"
        SIGNED_LINES+=("$l")
        SIGNED+=(-H "$l")
    done
}

# https_send NAME PATH BODY_FILE [--header "Name: value"]... --sign PROVIDER [its options]:
# signs like sign_with and POSTs over https://NAME:TLS_PORT/PATH with node's https module
# (trusting only TLS_CA, NAME as SNI and Host; keep-alive across calls). Sets HTTP_STATUS,
# HTTP_BODY, TLS_REUSED (true: on an earlier request's connection), TLS_PROTOCOL and, like
# sign_with, SIGNED_LINES / SIGNED (the signed headers). See lib.sh for the TLS helpers.
https_send() {
    local name=$1 path=$2 file=$3
    shift 3
    sign_with https --url "https://$name:$TLS_PORT$path" --ca "$TLS_CA" --body "$file" "$@"
    local meta=("${SIGNED_LINES[@]:0:5}")
    [[ ${meta[0]} == "Status: "* && ${meta[4]} == "Body: "* ]] ||
        fail "sign.mjs https printed no answer: ${SIGNED_LINES[*]}"
    HTTP_STATUS=${meta[0]#Status: }
    # shellcheck disable=SC2034 # for the tests
    TLS_REUSED=${meta[1]#Reused: }
    # shellcheck disable=SC2034 # for the tests
    TLS_PROTOCOL=${meta[2]#Protocol: }
    HTTP_BODY=${meta[4]#Body: }
    SIGNED_LINES=("${SIGNED_LINES[@]:5}")
    SIGNED=()
    local l
    for l in "${SIGNED_LINES[@]}"; do
        SIGNED+=(-H "$l")
    done
}

# signed_value NAME: the value of header NAME (case-insensitive) from the last sign_with.
signed_value() {
    local l name
    for l in "${SIGNED_LINES[@]}"; do
        name=${l%%:*}
        if [[ ${name,,} == "${1,,}" ]]; then
            echo "${l#*: }"
            return 0
        fi
    done
    fail "sign.mjs printed no $1 header"
}

# hmac_file ALGORITHM SECRET FORMAT PREFIX_TEXT FILE: HMAC of PREFIX_TEXT followed by FILE's
# bytes, as hex or base64 (FORMAT).
hmac_file() {
    local algorithm=$1 secret=$2 format=$3 prefix=$4 file=$5
    if [[ $format == hex ]]; then
        { printf %s "$prefix"; cat "$file"; } | openssl dgst "-$algorithm" -hmac "$secret" -hex |
            sed 's/^.*= *//'
    else
        { printf %s "$prefix"; cat "$file"; } | openssl dgst "-$algorithm" -hmac "$secret" -binary |
            base64 -w0
    fi
}

# flip_hex HEX: the same string with its last hex digit changed (a wrong value of the right shape).
flip_hex() {
    local s=$1 last=${1: -1}
    echo "${s:0:${#s}-1}$([[ $last == 0 ]] && echo 1 || echo 0)"
}

# Bodies ----------------------------------------------------------------------------------------

_body_count=0
# new_body CASE [TEXT]: a JSON body file naming the case, with non-ASCII text; sets BODY.
new_body() {
    _body_count=$((_body_count + 1))
    BODY="$WORKDIR/body-$_body_count.json"
    printf '{"case":"%s","n":%d,"text":"%s"}' "$1" "$_body_count" \
        "${2:-Grüße, 漢字, emoji 🚀, quote \\\" backslash \\\\}" >"$BODY"
}

# refused_body CASE: a body carrying a marker that must reach neither the spool nor the log.
refused_body() {
    _body_count=$((_body_count + 1))
    BODY="$WORKDIR/refused-$_body_count.json"
    printf '{"refused":"REFUSED-%s-%s","case":"%s","note":"ne doit pas être stocké"}' \
        "$_body_count" "$RANDOM$RANDOM" "$1" >"$BODY"
}

# Answers ----------------------------------------------------------------------------------------

declare -A ACCEPTED=() # job id -> "route|body file"
REJECTIONS=0

# accept ROUTE WHAT BODY_FILE: the last answer is 202 {"id":"<URL-safe>","status":"queued"};
# check_spool checks the job's body. (Bash matching rather than lib.sh's expect_queued: python
# start-up is slow on a loaded machine and these tests send many requests.)
accept() {
    local what=$2
    expect_eq "$what: status (answer: $HTTP_BODY)" 202 "$HTTP_STATUS"
    [[ $HTTP_BODY =~ ^\{\"id\":\"([A-Za-z0-9_-]+)\",\"status\":\"queued\"\}$ ]] ||
        fail "$what: answer body should be {\"id\":\"<URL-safe id>\",\"status\":\"queued\"}, is $HTTP_BODY"
    JOB_ID=${BASH_REMATCH[1]}
    [[ -z ${ACCEPTED[$JOB_ID]:-} ]] || fail "$what: job id $JOB_ID was given twice"
    ACCEPTED[$JOB_ID]="$1|$3"
}

# refuse ROUTE WHAT REASON_REGEX BODY_FILE [SENSITIVE...]: the last answer is the bare 401 and
# the newest rejection log line names the route, the peer, a request id and a reason matching
# REASON_REGEX, with signature fields cut to 12 characters; neither the body's marker nor any
# SENSITIVE string (secrets, whole signatures) is in the log.
refuse() {
    local route=$1 what=$2 reasons=$3 file=$4
    shift 4
    expect_unauthorized "$what"
    REJECTIONS=$((REJECTIONS + 1))
    wait_for_log '"msg":"webhook rejected"' "$REJECTIONS"
    local line
    line=$(grep -F '"msg":"webhook rejected"' "$SERVER_LOG" | tail -n 1)
    # The fields the server writes, matched as the JSON it writes (compact, no escapes needed).
    local reason
    reason=$(sed -n 's/.*"reason":"\([a-z_]*\)".*/\1/p' <<<"$line")
    [[ $reason =~ ^($reasons)$ ]] ||
        fail "$what: rejection log reason should be $reasons, is '$reason': $line"
    [[ $line == *"\"route\":\"$route\""* ]] || fail "$what: rejection log should name route $route: $line"
    [[ $line == *'"peer":"127.0.0.1"'* ]] || fail "$what: rejection log should name peer 127.0.0.1: $line"
    [[ $line =~ \"request_id\":\"[^\"]+\" ]] || fail "$what: rejection log has no request_id: $line"
    # Signature fields are logged cut to 12 characters at most.
    local name value
    for name in x-hub-signature-256 stripe-signature x-slack-signature webhook-signature \
        svix-signature x-shopify-hmac-sha256 x-signature-ed25519; do
        value=$(grep -o "\"$name\":\"[^\"]*\"" <<<"$line" | head -n 1 || true)
        value=${value#\"$name\":\"}
        value=${value%\"}
        ((${#value} <= 12)) || fail "$what: $name logged with ${#value} characters (at most 12): $line"
    done
    local marker
    marker=$(grep -o 'REFUSED-[^"]*' "$file" || true)
    [[ -z $marker ]] || ! grep -qF -- "$marker" "$SERVER_LOG" ||
        fail "$what: the refused body appears in the log"
    local s
    for s in "$@"; do
        [[ -z $s ]] || ! grep -qF -- "$s" "$SERVER_LOG" ||
            fail "$what: a secret or a whole signature appears in the log"
    done
}

# expect_json_answer WHAT STATUS JSON: the last answer has that status, a JSON content type and
# a body equal to JSON as a JSON value (spacing aside).
expect_json_answer() {
    local what=$1 status=$2 want=$3
    expect_eq "$what: status (answer: $HTTP_BODY)" "$status" "$HTTP_STATUS"
    python3 - "$what" "$want" "$HTTP_BODY" <<'PY' || fail "$what: see above"
import json, sys
what, want, got = sys.argv[1:]
try:
    value = json.loads(got)
except ValueError:
    sys.exit(f"FAIL: {what}: answer body is not JSON: {got!r}")
if value != json.loads(want):
    sys.exit(f"FAIL: {what}: answer body should be {want}, is {got}")
PY
    grep -qi '^content-type: *application/json' "$HTTP_HEADERS" ||
        fail "$what: answer has no Content-Type: application/json ($(tr -d '\r' <"$HTTP_HEADERS" | tr '\n' '|'))"
}

# check_spool [SPOOL]: after stop_server, the spool holds exactly the accepted jobs, each under
# its route with its body byte for byte, and no refused body; `spool verify` passes. Sets DUMP.
check_spool() {
    local spool=${1:-$SPOOL}
    local dump
    dump="$WORKDIR/dump-$(basename "$spool").jsonl"
    spool_dump "$spool" "$dump"
    expect_eq "jobs in the spool (one per 202, none per 401 or handshake)" "${#ACCEPTED[@]}" \
        "$(count_lines "$dump")"
    ! grep -q 'REFUSED-' "$dump" || fail "a refused body is in the spool"
    local id
    for id in "${!ACCEPTED[@]}"; do
        printf '%s\t%s\t%s\n' "$id" "${ACCEPTED[$id]%%|*}" "${ACCEPTED[$id]#*|}"
    done >"$WORKDIR/accepted.tsv"
    # One python run for every job (lib.sh's check_job does the same checks one job at a time).
    python3 - "$dump" "$WORKDIR/accepted.tsv" <<'PY' || fail "the spool does not hold what was accepted"
import base64, json, sys
jobs = {}
for line in open(sys.argv[1], encoding="utf-8"):
    job = json.loads(line)
    jobs.setdefault(job.get("id"), []).append(job)
bad = []
for row in open(sys.argv[2], encoding="utf-8"):
    job_id, route, body_file = row.rstrip("\n").split("\t")
    found = jobs.get(job_id, [])
    if len(found) != 1:
        bad.append(f"job {job_id}: {len(found)} jobs with this id in the dump, expected 1")
        continue
    job = found[0]
    want = open(body_file, "rb").read()
    try:
        want.decode("utf-8")
        want_enc = "utf8"
    except UnicodeDecodeError:
        want_enc = "base64"
    enc = job.get("body_encoding")
    if enc == "utf8":
        body = job.get("body", "").encode("utf-8")
    elif enc == "base64":
        body = base64.b64decode(job.get("body", ""), validate=True)
    else:
        body = None
    if job.get("route") != route:
        bad.append(f"job {job_id}: route {job.get('route')!r}, expected {route!r}")
    if job.get("source_ip") != "127.0.0.1":
        bad.append(f"job {job_id}: source_ip {job.get('source_ip')!r}")
    if enc != want_enc:
        bad.append(f"job {job_id}: body_encoding {enc!r}, expected {want_enc}")
    if body != want:
        bad.append(f"job {job_id}: body differs from {body_file} "
                   f"({None if body is None else len(body)} bytes stored, {len(want)} sent)")
for b in bad:
    print(f"FAIL: {b}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
    "$PORTCULLIS" spool verify --dir "$spool" >"$WORKDIR/verify.txt" 2>&1 ||
        fail "spool verify after a clean stop: $(cat "$WORKDIR/verify.txt")"
    DUMP=$dump
}
