#!/usr/bin/env bash
# The systemd notify protocol (issue 18, "The service"): portcullis serve under a NOTIFY_SOCKET
# that notify_receiver.py holds (systemd's side), with WATCHDOG_USEC=200000:
#   - READY=1 with MAINPID (the server's pid) and a STATUS, sent only once the listeners answer:
#     when it arrives both listening lines are logged, GET /healthz answers 200 and the admin
#     port accepts;
#   - WATCHDOG=1 keeps coming (every 100 ms: at least 3 in one second);
#   - SIGHUP: RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC, read by the receiver too), then
#     READY=1 whose STATUS says reloaded; POST /v1/reload the same with "(api)";
#   - a refused reload (the configuration broken) also ends with READY=1, its STATUS naming the
#     refusal and the error's file;
#   - SIGTERM: STOPPING=1 while the server still runs, then it exits 0;
#   - an abstract socket name ("@...") works the same;
#   - a NOTIFY_SOCKET nobody listens on is logged once and the server serves anyway.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3 sha256sum

TOKEN=$("$PORTCULLIS" token new | sed -n 's/^token: *//p')
export GH_SECRET=notify-test-secret GL_TOKEN=notify-test-token
CONFIG=$WORKDIR/config.yaml
good_config() {
    write_config "$CONFIG.new"
    cat >>"$CONFIG.new" <<EOF
tokens:
  ops: {sha256: "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)", scopes: ["admin:reload"]}
EOF
    mv -f "$CONFIG.new" "$CONFIG"
}

RECEIVER_PID=""
_receivers=0
# start_receiver NAME: notify_receiver.py bound to NAME (a path or "@name"), logging to NLOG.
start_receiver() {
    _receivers=$((_receivers + 1))
    NLOG=$WORKDIR/notify-$_receivers.log
    : >"$NLOG"
    python3 "$here/notify_receiver.py" --socket "$1" --log "$NLOG" \
        --server-logs "$WORKDIR" &
    RECEIVER_PID=$!
    at_exit "kill $RECEIVER_PID 2>/dev/null"
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -s $NLOG.ready ]] && return 0
        sleep 0.05
    done
    fail "notify_receiver.py did not bind $1"
}
stop_receiver() {
    kill "$RECEIVER_PID" 2>/dev/null || true
    wait "$RECEIVER_PID" 2>/dev/null || true
}

# messages: the notify log as "t<TAB>raw with newlines as |" lines, watchdog pings left out
# unless "all" is given.
messages() {
    python3 - "$NLOG" "${1:-}" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if sys.argv[2] != "all" and e["fields"].get("WATCHDOG") == "1":
        continue
    print(f'{e["t"]:.6f}\t' + e["raw"].replace("\n", "|"))
PY
}

# wait_message SUBSTRING COUNT: waits (up to 10 s) for COUNT messages holding SUBSTRING.
wait_message() {
    local i n=0
    for ((i = 0; i < 200; i++)); do
        n=$(grep -cF -- "$1" "$NLOG" || true)
        ((n >= $2)) && return 0
        sleep 0.05
    done
    fail "expected $2 notify messages holding '$1', got $n: $(messages all | tail -n 5)"
}

# check_last_ready WHAT STATUS_SUBSTRING...: the last READY=1 names our pid and its STATUS holds
# every substring.
check_last_ready() {
    local what=$1
    shift
    python3 - "$NLOG" "$SERVER_PID" "$what" "$@" <<'PY' || fail "$what"
import json, sys
log, pid, what, *want = sys.argv[1:]
ready = [json.loads(l) for l in open(log) if '"READY": "1"' in l][-1]["fields"]
assert ready.get("MAINPID") == pid, f"{what}: MAINPID {ready.get('MAINPID')} is not the server's pid {pid}"
for w in want:
    assert w in ready.get("STATUS", ""), f"{what}: STATUS {ready.get('STATUS')!r} does not hold {w!r}"
PY
}

# --- 1. a path socket, the watchdog, reloads and the stop --------------------------------------
good_config
start_receiver "$WORKDIR/notify.sock"
NOTIFY_SOCKET=$WORKDIR/notify.sock WATCHDOG_USEC=200000 start_server "$CONFIG"
[[ -n $ADMIN_PORT ]] || fail "no admin listening line"
wait_message "READY=1" 1
python3 - "$NLOG" "$SERVER_PID" <<'PY' || fail "the first READY=1"
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1])]
ready = [e for e in entries if e["fields"].get("READY") == "1"]
assert len(ready) == 1, f"{len(ready)} READY=1 at start"
r = ready[0]
f = r["fields"]
assert f.get("MAINPID") == sys.argv[2], f"MAINPID {f.get('MAINPID')} is not the server's pid {sys.argv[2]}"
assert "listening on 127.0.0.1:" in f.get("STATUS", ""), f"STATUS {f.get('STATUS')!r}"
assert r.get("listening") == 2, f"when READY=1 arrived the log had {r.get('listening')} listening lines, not 2"
assert r.get("healthz") == 200, f"when READY=1 arrived GET /healthz gave {r.get('healthz')!r}"
assert r.get("admin") is True, "when READY=1 arrived the admin port did not accept"
before = [e for e in entries if e["t"] < r["t"] and "WATCHDOG" not in e["fields"]]
assert not before, f"messages before READY=1: {before}"
PY
echo "READY=1 after the listeners answered, MAINPID=$SERVER_PID"

# The watchdog: at least 3 pings in one second (one every 100 ms).
pings_before=$(grep -c '"WATCHDOG": "1"' "$NLOG" || true)
sleep 1
pings_after=$(grep -c '"WATCHDOG": "1"' "$NLOG" || true)
pings=$((pings_after - pings_before))
((pings >= 3)) || fail "only $pings WATCHDOG=1 in 1 s with WATCHDOG_USEC=200000"
echo "WATCHDOG=1: $pings in 1 s"

# reload_round WHAT KIND STATUS...: after a reload asked by KIND (SIGHUP or api), one more
# RELOADING=1 whose MONOTONIC_USEC is the receiver's CLOCK_MONOTONIC within 2 s of its arrival,
# then READY=1 with STATUS holding each STATUS substring, and nothing else between the two.
reload_round() {
    local what=$1 kind=$2
    shift 2
    local n
    n=$(grep -c '"RELOADING": "1"' "$NLOG" || true)
    if [[ $kind == SIGHUP ]]; then
        kill -HUP "$SERVER_PID"
    else
        local code
        code=$(curl -sS -m 10 -o "$WORKDIR/reload.out" -w '%{http_code}' -X POST \
            -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT/v1/reload")
        [[ $code == 200 || $code == 422 ]] || fail "$what: POST /v1/reload answered $code: $(cat "$WORKDIR/reload.out")"
    fi
    wait_message '"RELOADING": "1"' $((n + 1))
    wait_message '"READY": "1"' $((n + 2))
    python3 - "$NLOG" "$what" <<'PY' || fail "$what"
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if '"WATCHDOG": "1"' not in l]
what = sys.argv[2]
last = entries[-2:]
assert last[0]["fields"].get("RELOADING") == "1", f"{what}: {last[0]['raw']!r} is not RELOADING=1"
assert last[1]["fields"].get("READY") == "1", f"{what}: {last[1]['raw']!r} does not follow with READY=1"
usec = int(last[0]["fields"]["MONOTONIC_USEC"])
delta = last[0]["t"] - usec / 1e6
assert 0 <= delta < 2, f"{what}: MONOTONIC_USEC={usec} is {delta:.3f} s from the receiver's CLOCK_MONOTONIC"
PY
    check_last_ready "$what" "$@"
    echo "$what: RELOADING=1 with MONOTONIC_USEC, then READY=1 ($(messages | tail -n 1 | sed 's/.*STATUS=//'))"
}

reload_round "SIGHUP reload" SIGHUP "reloaded (SIGHUP)" "generation 2"
reload_round "POST /v1/reload" api "reloaded (api)" "generation 3"
# A refused reload: the file broken. READY=1 all the same, naming the refusal and the file.
printf 'routes: [unclosed\n' >>"$CONFIG"
reload_round "refused SIGHUP reload" SIGHUP "refused" "generation 3 still serving" "config.yaml"
reload_round "refused POST /v1/reload" api "refused" "config.yaml"
good_config
reload_round "SIGHUP reload after the fix" SIGHUP "reloaded (SIGHUP)" "generation 4"
wait_for_log "configuration reload refused" 2

# The stop: STOPPING=1 while the server still runs, then exit 0.
stop_server
wait_message '"STOPPING": "1"' 1
python3 - "$NLOG" <<'PY' || fail "STOPPING=1"
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if '"WATCHDOG": "1"' not in l]
last = entries[-1]
assert last["fields"].get("STOPPING") == "1", f"the last message is {last['raw']!r}, not STOPPING=1"
assert "draining (SIGTERM)" in last["fields"].get("STATUS", ""), f"STATUS {last['fields'].get('STATUS')!r}"
assert last.get("alive") is True, "STOPPING=1 arrived after the server had exited"
PY
echo "STOPPING=1 before the exit"
grep -qF "systemd notification failed" "$SERVER_LOG" && fail "a notification failed"
stop_receiver

# --- 2. an abstract socket name ---------------------------------------------------------------
ABSTRACT="@portcullis-notify-test-$$-$RANDOM"
start_receiver "$ABSTRACT"
NOTIFY_SOCKET=$ABSTRACT start_server "$CONFIG"
wait_message '"READY": "1"' 1
check_last_ready "abstract socket READY=1" "listening on 127.0.0.1:"
kill -HUP "$SERVER_PID"
wait_message '"READY": "1"' 2
check_last_ready "abstract socket reload" "reloaded (SIGHUP)"
stop_server
wait_message '"STOPPING": "1"' 1
grep -qF '"WATCHDOG": "1"' "$NLOG" && fail "WATCHDOG=1 without WATCHDOG_USEC"
echo "abstract socket $ABSTRACT: READY=1, RELOADING=1, READY=1, STOPPING=1, no watchdog"
stop_receiver

# --- 3. nobody listening: logged once, served anyway -------------------------------------------
NOTIFY_SOCKET=$WORKDIR/nobody.sock WATCHDOG_USEC=100000 start_server "$CONFIG"
sleep 0.5
code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")
expect_eq "GET /healthz with a dead NOTIFY_SOCKET" 200 "$code"
kill -HUP "$SERVER_PID"
wait_for_log "configuration reloaded" 1
stop_server
n=$(grep -cF "systemd notification failed" "$SERVER_LOG" || true)
expect_eq "warnings about the dead NOTIFY_SOCKET (said once)" 1 "$n"
echo "dead NOTIFY_SOCKET: one warning, served, reloaded and stopped with exit 0"

# A WATCHDOG_PID naming another process: no pings.
start_receiver "$WORKDIR/notify-other.sock"
NOTIFY_SOCKET=$WORKDIR/notify-other.sock WATCHDOG_USEC=100000 WATCHDOG_PID=1 start_server "$CONFIG"
wait_message '"READY": "1"' 1
sleep 0.4
stop_server
grep -qF '"WATCHDOG": "1"' "$NLOG" && fail "WATCHDOG=1 although WATCHDOG_PID names another process"
echo "WATCHDOG_PID of another process: no pings"
stop_receiver
echo "PASS"
