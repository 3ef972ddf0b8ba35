#!/usr/bin/env bash
# The exec sink (SPEC section 8, README "The exec sink's runner", issue 14) with a small command
# that records each run: the body on stdin byte for byte, argv as written (no shell), exactly
# the documented environment, the headers as JSON in a 0600 file removed after the run, a header
# value full of shell metacharacters that stays text, exit 0 (done), 75 (retried), 1 (a failed
# attempt, retried until max_attempts, then a dead letter of that sink), the timeout (SIGTERM,
# and SIGKILL 5 s later for a command that ignores it) and the first 4 KiB of stdout and stderr
# in the log.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/delivery_lib.sh"
need python3 sha256sum
[[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is missing (the test's command runs with the sink's PATH)"

RUNS="$WORKDIR/runs"
mkdir -p "$RUNS"
# The command: what the body's "mode" says, on the attempt it names. Each run appends one line
# to runs/records.jsonl when it starts and one when it ends (or is signalled).
cat >"$WORKDIR/cmd.py" <<'PY'
import base64, json, os, signal, sys, time
out = sys.argv[1]
def record(**kv):
    with open(os.path.join(out, "records.jsonl"), "a") as f:
        f.write(json.dumps(kv) + "\n")
start = time.time()
body = sys.stdin.buffer.read()
job, attempt = os.environ.get("PORTCULLIS_JOB_ID", ""), int(os.environ.get("PORTCULLIS_ATTEMPT", "0"))
hfile = os.environ.get("PORTCULLIS_HEADERS_FILE", "")
try:
    headers, mode = json.load(open(hfile)), oct(os.stat(hfile).st_mode & 0o777)
except OSError as e:
    headers, mode = None, f"unreadable: {e}"
try:
    what = json.loads(body).get("mode", "ok")
except ValueError:
    what = "ok"
# The environment as exec'd: Python adds LC_CTYPE to os.environ when it starts in the C locale
# (PEP 538), /proc/self/environ keeps what portcullis passed.
with open("/proc/self/environ", "rb") as f:
    exec_env = dict(e.decode("latin-1").split("=", 1) for e in f.read().split(b"\0") if e)
record(event="start", job=job, attempt=attempt, t=start, pid=os.getpid(), argv=sys.argv[1:],
       env=exec_env, headers=headers, headers_mode=mode, body_b64=base64.b64encode(body).decode(),
       pgid_is_pid=os.getpgid(0) == os.getpid())
def finish(code, **kv):
    record(event="end", job=job, attempt=attempt, t=time.time(), code=code, **kv)
    sys.exit(code)
first = attempt == 1
if what == "tempfail-once" and first:
    finish(75)
if what in ("fail-once",) and first or what == "fail-always":
    finish(1)
if what == "slow" and first:
    # Exits 0 once it gets SIGTERM: the attempt still counts as timed out.
    signal.signal(signal.SIGTERM, lambda *_: finish(0, signal="SIGTERM"))
    time.sleep(30)
    finish(0, signal="none")
if what == "stubborn" and first:
    signal.signal(signal.SIGTERM, lambda *_: record(event="sigterm", job=job, attempt=attempt, t=time.time()))
    end = time.time() + 30
    while time.time() < end:
        time.sleep(0.05)
    finish(0, signal="none")
if what == "chatty":
    sys.stdout.write("STDOUT-FIRST-MARK " + "o" * 8192 + " STDOUT-LAST-MARK\n")
    sys.stderr.write("STDERR-FIRST-MARK " + "e" * 8192 + " STDERR-LAST-MARK\n")
    sys.stdout.flush()
    sys.stderr.flush()
finish(0)
PY

ARG2='two words $HOME `id` ; | > *'
delivery_config "$WORKDIR/config.yaml" <<EOF
sinks:
  run:
    exec:
      command: ["/usr/bin/python3", "$WORKDIR/cmd.py", "$RUNS", "two words \$HOME \`id\` ; | > *"]
      concurrency: 4
      timeout: 2s
    breaker: {failures: 100, cooldown: 1s}
routes:
  jobs: {path: /webhooks/jobs, verify: {scheme: none}, deliver: [run], max_attempts: 3}
EOF
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
: >"$WORKDIR/sent.tsv"

declare -A JOBS=()
job_with_mode() {
    printf '{"mode":"%s","text":"Grüße ✓"}' "$1" >"$WORKDIR/body-$1.json"
    post_job /webhooks/jobs "$WORKDIR/body-$1.json" "${@:2}"
    JOBS[$1]=$JOB_ID
}
# The header value a shell would run: it must arrive as text in the headers file.
EVIL='$(touch '"$WORKDIR"'/pwned1) `touch '"$WORKDIR"'/pwned2`; touch '"$WORKDIR"'/pwned3 && echo "quoted" '"'"'single'"'"' \x41 %s'
job_with_mode ok -H "X-Evil: $EVIL" -H 'X-GitHub-Event: push' -H 'Authorization: Bearer not-passed'
job_with_mode tempfail-once
job_with_mode fail-once
job_with_mode fail-always
job_with_mode slow
job_with_mode stubborn
job_with_mode chatty
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 8)' >"$WORKDIR/binary.bin"
post_job /webhooks/jobs "$WORKDIR/binary.bin"
JOBS[binary]=$JOB_ID

# --- outcomes as portcullis recorded them ---
expect_outcome() {
    wait_delivery "${JOBS[$1]}" run "$2" "$4"
    expect_eq "$1: attempts" "$3" "$DELIVERY_ATTEMPTS"
}
expect_outcome ok "done" 1 20
expect_outcome binary "done" 1 20
expect_outcome chatty "done" 1 20
expect_outcome tempfail-once "done" 2 20
expect_outcome fail-once "done" 2 20
expect_outcome fail-always dead 3 30
expect_outcome slow "done" 2 30
expect_outcome stubborn "done" 2 40
api GET "/v1/dead-letters?route=jobs&sink=run"
expect_api "dead letters of run" 200
expect_eq "dead letters of run" "${JOBS[fail-always]}" "$(py '" ".join(x["id"] for x in j["jobs"])')"
expect_eq "/healthz sinks.run.kind" exec "$(sink_health run kind)"
expect_eq "/healthz sinks.run.dead" 1 "$(sink_health run dead)"

# --- what the command saw ---
for m in "${!JOBS[@]}"; do
    printf '%s\t%s\n' "$m" "${JOBS[$m]}"
done >"$WORKDIR/jobs.tsv"
python3 - "$RUNS/records.jsonl" "$WORKDIR/jobs.tsv" "$WORKDIR/sent.tsv" "$WORKDIR/cmd.py" "$RUNS" "$ARG2" "$EVIL" <<'PY' || fail "exec: see above"
import base64, json, os, re, sys
records, jobs_tsv, sent_tsv, cmd, runs, arg2, evil = sys.argv[1:]
def fail(msg):
    sys.exit(f"FAIL: exec: {msg}")
jobs = dict(l.rstrip("\n").split("\t") for l in open(jobs_tsv))
bodies = {l.split("\t")[0]: open(l.split("\t")[1], "rb").read() for l in open(sent_tsv)}
recs = [json.loads(l) for l in open(records)]
starts = [r for r in recs if r["event"] == "start"]
ends = {(r["job"], r["attempt"]): r for r in recs if r["event"] == "end"}
terms = {(r["job"], r["attempt"]): r for r in recs if r["event"] == "sigterm"}
want_runs = {"ok": 1, "binary": 1, "chatty": 1, "tempfail-once": 2, "fail-once": 2, "fail-always": 3, "slow": 2, "stubborn": 2}
for mode, j in jobs.items():
    got = sorted(r["attempt"] for r in starts if r["job"] == j)
    if got != list(range(1, want_runs[mode] + 1)):
        fail(f"{mode} ({j}): runs with PORTCULLIS_ATTEMPT {got}, expected 1..{want_runs[mode]}")
env_names = {"PORTCULLIS_JOB_ID", "PORTCULLIS_ROUTE", "PORTCULLIS_ATTEMPT", "PORTCULLIS_RECEIVED_AT",
             "PORTCULLIS_SOURCE_IP", "PORTCULLIS_HEADERS_FILE", "PATH"}
for r in starts:
    j, a = r["job"], r["attempt"]
    if set(r["env"]) != env_names:
        fail(f"job {j} attempt {a}: environment names {sorted(r['env'])}, expected exactly {sorted(env_names)}")
    env = r["env"]
    if env["PATH"] != "/usr/local/bin:/usr/bin:/bin" or env["PORTCULLIS_ROUTE"] != "jobs" or env["PORTCULLIS_SOURCE_IP"] != "127.0.0.1":
        fail(f"job {j}: PATH {env['PATH']!r}, route {env['PORTCULLIS_ROUTE']!r}, source ip {env['PORTCULLIS_SOURCE_IP']!r}")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", env["PORTCULLIS_RECEIVED_AT"]):
        fail(f"job {j}: PORTCULLIS_RECEIVED_AT {env['PORTCULLIS_RECEIVED_AT']!r} is not RFC 3339 UTC with milliseconds")
    if r["argv"] != [runs, arg2]:
        fail(f"job {j}: arguments {r['argv']}, expected {[runs, arg2]} as written (no shell)")
    if not r["pgid_is_pid"]:
        fail(f"job {j}: the command does not lead its own process group")
    if base64.b64decode(r["body_b64"]) != bodies[j]:
        fail(f"job {j} attempt {a}: stdin differs from the body sent")
    if r["headers_mode"] != "0o600" or not isinstance(r["headers"], dict):
        fail(f"job {j}: headers file mode {r['headers_mode']}, headers {r['headers']!r}: expected a 0600 JSON object")
    if os.path.exists(env["PORTCULLIS_HEADERS_FILE"]):
        fail(f"job {j}: the headers file {env['PORTCULLIS_HEADERS_FILE']} is still there after the run")
    for v in env.values():
        if "pwned" in v or "touch" in v:
            fail(f"job {j}: a header value is in the environment: {v!r}")
ok = next(r for r in starts if r["job"] == jobs["ok"])
h = {k.lower(): v for k, v in ok["headers"].items()}
if h.get("x-evil") != evil or h.get("x-github-event") != "push":
    fail(f"ok: headers file has x-evil {h.get('x-evil')!r}, x-github-event {h.get('x-github-event')!r}; expected {evil!r}, 'push'")
if "authorization" in h:
    fail("ok: the Authorization header (not stored) is in the headers file")
for n in (1, 2, 3):
    if os.path.exists(os.path.join(os.path.dirname(runs), f"pwned{n}")):
        fail(f"a header value was run by a shell: pwned{n} exists")
codes = {m: [ends.get((jobs[m], a), {}).get("code") for a in range(1, want_runs[m] + 1)] for m in jobs}
want_codes = {"tempfail-once": [75, 0], "fail-once": [1, 0], "fail-always": [1, 1, 1], "slow": [0, 0]}
for m, want in want_codes.items():
    if codes[m] != want:
        fail(f"{m}: exit codes by attempt {codes[m]}, expected {want}")
# slow: SIGTERM at the 2 s timeout; its exit 0 afterwards did not deliver (attempt 2 ran).
s1 = next(r for r in starts if r["job"] == jobs["slow"] and r["attempt"] == 1)
e1 = ends[(jobs["slow"], 1)]
if e1.get("signal") != "SIGTERM" or not 1.8 <= e1["t"] - s1["t"] <= 4:
    fail(f"slow: attempt 1 ended {e1['t'] - s1['t']:.2f} s after it started with {e1.get('signal')}, expected SIGTERM at about 2 s")
# stubborn: ignores SIGTERM; SIGKILL 5 s later, so no end record for attempt 1 and attempt 2 starts
# at least 7 s after attempt 1 did.
k1 = (jobs["stubborn"], 1)
st1 = next(r for r in starts if (r["job"], r["attempt"]) == k1)
st2 = next(r for r in starts if (r["job"], r["attempt"]) == (jobs["stubborn"], 2))
if k1 not in terms or not 1.8 <= terms[k1]["t"] - st1["t"] <= 4:
    fail("stubborn: attempt 1 got no SIGTERM at about 2 s")
if k1 in ends:
    fail(f"stubborn: attempt 1 exited by itself ({ends[k1]}): it should have been killed")
if st2["t"] - st1["t"] < 6.8:
    fail(f"stubborn: attempt 2 started {st2['t'] - st1['t']:.2f} s after attempt 1: SIGKILL comes 5 s after the 2 s timeout's SIGTERM")
try:
    os.kill(st1["pid"], 0)
    fail(f"stubborn: attempt 1 (pid {st1['pid']}) is still running")
except ProcessLookupError:
    pass
PY

# chatty: the first 4 KiB of stdout and stderr are logged, not the rest.
for stream in STDOUT STDERR; do
    grep -qF "$stream-FIRST-MARK" "$SERVER_LOG" || fail "chatty: the start of its ${stream,,} is not in the log"
    ! grep -qF "$stream-LAST-MARK" "$SERVER_LOG" || fail "chatty: its ${stream,,} past 4 KiB is in the log"
done
! grep -qF 'Grüße' "$SERVER_LOG" || fail "a body is in the log"

stop_server
echo "delivery_exec: ok (${#JOBS[@]} jobs)"
