# shellcheck shell=bash
# Helpers shared by the push-delivery tests (delivery_*.sh: SPEC section 8, issue 14). Source it
# after lib.sh:
#
#   source "$here/lib.sh"
#   source "$here/delivery_lib.sh"
#   start_receiver app [--plan JSON] [--tls-cert PEM --tls-key PEM]
#                        # receiver.py: RECV_PORT[app], RECV_CTL[app] (control port), RECV_LOG[app]
#   delivery_config "$WORKDIR/config.yaml" <<EOF   # server, admin, spool, a jobs:* token; then
#   sinks: ...                                     # the sinks and routes given on stdin
#   routes: ...
#   EOF
#   start_server "$WORKDIR/config.yaml"
#   receiver_control app '{"path": "/x", "plan": {"then": {"status": 500}}}'
#   wait_requests app 3 20 'r["path"] == "/x"'     # 3 logged requests matching, within 20 s
#   recv_check app ARGS... <<'PY'                  # python over the log: reqs, hdr(), fail()
#   api GET "/v1/jobs/$id"; expect_api "job" 200; py 'j["deliveries"]["app"]["state"]'
#   wait_delivery "$id" app done 20                # GET /v1/jobs/{id} until that sink's state
#   sink_health app breaker                        # /healthz's sinks.app.breaker
#
# The receiver logs every request (receiver.py's docstring has the format and the plans); the
# checks read that log, never portcullis's own view, except where the contract is about that
# view (/v1/jobs/{id}'s deliveries, /healthz, the dead letters, the log lines).

need python3
# shellcheck disable=SC2154 # set by the test before it sources lib.sh
RECEIVER="$here/receiver.py"
declare -A RECV_PID=() RECV_PORT=() RECV_CTL=() RECV_LOG=()

# start_receiver NAME [receiver.py arguments...]: starts a receiver and waits (10 s) for its ports.
start_receiver() {
    local name=$1
    shift
    local dir="$WORKDIR/receiver-$name"
    mkdir -p "$dir"
    : >"$dir/requests.jsonl"
    python3 "$RECEIVER" --port-file "$dir/port" --control-port-file "$dir/control-port" \
        --log "$dir/requests.jsonl" "$@" 2>"$dir/stderr" &
    RECV_PID[$name]=$!
    at_exit "stop_receiver $name"
    local i
    for ((i = 0; i < 200; i++)); do
        if [[ -s $dir/port && -s $dir/control-port ]]; then
            # shellcheck disable=SC2034 # for the tests
            RECV_PORT[$name]=$(cat "$dir/port")
            RECV_CTL[$name]=$(cat "$dir/control-port")
            RECV_LOG[$name]="$dir/requests.jsonl"
            return 0
        fi
        kill -0 "${RECV_PID[$name]}" 2>/dev/null ||
            fail "receiver $name exited before listening: $(cat "$dir/stderr")"
        sleep 0.05
    done
    fail "receiver $name wrote no port within 10 s: $(cat "$dir/stderr")"
}

# stop_receiver NAME: SIGTERM, and SIGKILL after 5 s.
stop_receiver() {
    local pid=${RECV_PID[$1]:-}
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
    { wait "$pid"; } 2>/dev/null || true
    RECV_PID[$1]=""
}

# receiver_control NAME JSON: a control call; fails unless the receiver answers 200.
receiver_control() {
    local out status
    out="$WORKDIR/receiver-$1/control-answer"
    status=$(curl -sS -m 10 -o "$out" -w '%{http_code}' --data-binary "$2" \
        "http://127.0.0.1:${RECV_CTL[$1]}/__control") || status="curl-failed-$?"
    [[ $status == 200 ]] || fail "receiver $1: control call $2 answered $status: $(cat "$out" 2>/dev/null)"
}

# delivery_config FILE: the configuration the delivery tests start from: two shards, fsync, the
# spool in $SPOOL, the control plane with a token (TOKEN) holding jobs:* on every route, then
# stdin (top-level YAML: sinks and routes).
SPOOL="$WORKDIR/spool"
TOKEN=$("$PORTCULLIS" token new | sed -n 's/^token: *//p')
[[ $TOKEN == pct_* ]] || fail "portcullis token new printed no token"
delivery_config() {
    local sha
    sha=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
    {
        cat <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync}
tokens:
  tester: {sha256: "$sha", scopes: ["jobs:*"]}
EOF
        cat
    } >"$1"
}


# delivery_state ID SINK: "STATE ATTEMPTS" of that sink's delivery of job ID (GET /v1/jobs/{id}),
# "none" when the answer has no such delivery.
delivery_state() {
    api GET "/v1/jobs/$1"
    expect_api "GET /v1/jobs/$1" 200
    python3 -c '
import json, sys
d = json.loads(sys.argv[1]).get("deliveries", {}).get(sys.argv[2])
print("none" if not isinstance(d, dict) else "%s %s" % (d.get("state"), d.get("attempts")))' "$API_BODY" "$2"
}

# wait_delivery ID SINK STATE SECONDS: polls GET /v1/jobs/{id} until deliveries.SINK.state is
# STATE; sets DELIVERY_ATTEMPTS.
wait_delivery() {
    local id=$1 sink=$2 want=$3 limit=$4 got=""
    # A deadline in seconds, not a count of turns: each turn runs curl and python, which take
    # their own time on a loaded machine.
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        got=$(delivery_state "$id" "$sink")
        if [[ ${got%% *} == "$want" ]]; then
            # shellcheck disable=SC2034 # for the tests
            DELIVERY_ATTEMPTS=${got#* }
            return 0
        fi
        sleep 0.1
    done
    # delivery_state ran in a subshell: the answer is asked again here, for the message.
    api GET "/v1/jobs/$id"
    fail "job $id: its delivery to $sink should be $want within $limit s, is '$got' (GET /v1/jobs/$id: $API_BODY)"
}

# sink_health SINK FIELD: /healthz's sinks.SINK.FIELD (no token), "missing" when absent.
sink_health() {
    local body
    body=$(curl -sS -m 10 "http://127.0.0.1:$ADMIN_PORT/healthz") || fail "GET /healthz failed"
    python3 -c '
import json, sys
s = json.loads(sys.argv[1]).get("sinks", {}).get(sys.argv[2], {})
v = s.get(sys.argv[3], "missing") if isinstance(s, dict) else "missing"
print(v if isinstance(v, str) else json.dumps(v))' "$body" "$1" "$2" ||
        fail "/healthz is not the JSON expected: $body"
}

# The preamble of recv_check's scripts: the receiver's log as `reqs` (requests in the order they
# were received, each with "body" as bytes and "h" a dict of lowercased names to the list of
# their values), and helpers.
RECV_PREAMBLE='
import base64, json, sys
LOG, ARGS = sys.argv[1], sys.argv[2:]
def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)
def load(path):
    out = []
    for line in open(path, encoding="utf-8"):
        e = json.loads(line)
        if e.get("kind") != "request":
            continue
        e["body"] = base64.b64decode(e["body_b64"])
        h = {}
        for name, value in e["headers"]:
            h.setdefault(name.lower(), []).append(value)
        e["h"] = h
        out.append(e)
    return sorted(out, key=lambda e: e["seq"])
reqs = load(LOG)
def hdr(r, name):
    """The one value of a header; fails when it is missing or repeated."""
    v = r["h"].get(name.lower(), [])
    if len(v) != 1:
        seq, path, all_headers = r["seq"], r["path"], r["headers"]
        fail(f"request {seq} to {path}: {len(v)} {name} headers, expected 1 ({all_headers})")
    return v[0]
def job(r):
    return hdr(r, "portcullis-job-id")
def attempt(r):
    return int(hdr(r, "portcullis-attempt"))
def on(path):
    return [r for r in reqs if r["path"].split("?")[0] == path]
'

# recv_check NAME [ARGS...]: runs the python script on stdin after RECV_PREAMBLE over NAME's log
# (ARGS in ARGS); the test fails when it does.
recv_check() {
    local name=$1
    shift
    local script
    script=$(cat)
    python3 -c "$RECV_PREAMBLE
$script" "${RECV_LOG[$name]}" "$@" || fail "check over receiver $name's requests (see above)"
}

# recv_count NAME [PYTHON CONDITION over r]: how many logged requests match.
recv_count() {
    python3 -c "$RECV_PREAMBLE
print(sum(1 for r in reqs if (${2:-True})))" "${RECV_LOG[$1]}"
}

# wait_requests NAME COUNT SECONDS [CONDITION]: waits until NAME logged at least COUNT requests
# matching CONDITION (python over r).
wait_requests() {
    local name=$1 count=$2 limit=$3 cond=${4:-True} n=0 i
    for ((i = 0; i < limit * 5; i++)); do
        n=$(recv_count "$name" "$cond")
        ((n >= count)) && return 0
        sleep 0.2
    done
    fail "receiver $name: expected at least $count requests matching [$cond] within $limit s, got $n"
}

# post_job PATH FILE [curl arguments...]: posts to the public plane, expects 202; sets JOB_ID and
# appends "JOB_ID<TAB>FILE<TAB>PATH<TAB>T_BEFORE<TAB>T_AFTER" (Unix seconds around the request)
# to $WORKDIR/sent.tsv.
post_job() {
    local path=$1 file=$2 before after
    shift 2
    before=$(date +%s.%N)
    post "$path" "$file" "$@"
    after=$(date +%s.%N)
    expect_queued "POST $path"
    printf '%s\t%s\t%s\t%s\t%s\n' "$JOB_ID" "$file" "$path" "$before" "$after" >>"$WORKDIR/sent.tsv"
}

# log_line_with MESSAGE SINK: the server log's lines with "msg":"MESSAGE" and "sink":"SINK".
log_lines_with() {
    { grep -F "\"msg\":\"$1\"" "$SERVER_LOG" || true; } | { grep -F "\"sink\":\"$2\"" || true; }
}
