#!/usr/bin/env bash
# portcullis top (SPEC section 1, issue 16) against the real server, as an operator runs it:
# - usage: no token, a configuration whose admin.listen has port 0, a bad --url (exit 2);
# - the server refusing the token: unknown (401) or without metrics:read (403), exit 1 with a
#   message naming the URL and the status;
# - --once: a plain snapshot (no escape codes) with both routes, the counts this test caused,
#   the refusal reason, and the events of its interval; without events:read, no pane and a
#   status line saying why;
# - the live view in a pseudo-terminal (tmux, 120x40; script(1) records the raw output): the
#   routes, a non-zero request rate while requests come, the refusal reason, a webhook.rejected
#   line in the recent events; a redraw on SIGWINCH at the new size; "disconnected, retrying"
#   with the last screen kept when the server goes away; q exits 0 with the alternate screen
#   left, the cursor shown and the terminal's modes restored.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 sha256sum openssl script stty
command -v tmux >/dev/null 2>&1 || skip "tmux is not installed (Debian package tmux: scripts/deps --test)"

new_token() { "$PORTCULLIS" token new | sed -n 's/^token: *//p'; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
VIEWER=$(new_token)
METRICS_ONLY=$(new_token)
EVENTS_ONLY=$(new_token)
UNKNOWN=$(new_token)
export GH_SECRET=top-test-secret GL_TOKEN=top-test-gitlab-token
write_config "$WORKDIR/config.yaml"
cat >>"$WORKDIR/config.yaml" <<EOF
tokens:
  viewer: {sha256: "$(sha "$VIEWER")", scopes: ["metrics:read", "events:read"]}
  metrics_only: {sha256: "$(sha "$METRICS_ONLY")", scopes: ["metrics:read"]}
  events_only: {sha256: "$(sha "$EVENTS_ONLY")", scopes: ["events:read"]}
EOF
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
ADMIN_URL="http://127.0.0.1:$ADMIN_PORT"
# top -c reads admin.listen: the served configuration has port 0, so top gets a copy that names
# the port the server bound (the served one is refused below, with a message saying why).
sed "s|admin: {listen: \"127.0.0.1:0\"}|admin: {listen: \"127.0.0.1:$ADMIN_PORT\"}|" \
    "$WORKDIR/config.yaml" >"$WORKDIR/top.yaml"
grep -qF "127.0.0.1:$ADMIN_PORT" "$WORKDIR/top.yaml" || fail "top.yaml does not name the admin port"

body='{"zen":"Keep it logically awesome."}'
printf %s "$body" >"$WORKDIR/body.json"
good_sig=$(hmac_sha256_hex "$GH_SECRET" "$body")
bad_sig=$(hmac_sha256_hex wrong-secret "$body")
github_ok() {
    post /webhooks/github "$WORKDIR/body.json" -H "X-Hub-Signature-256: sha256=$good_sig"
    expect_eq "signed github webhook" 202 "$HTTP_STATUS"
}
github_bad() {
    post /webhooks/github "$WORKDIR/body.json" -H "X-Hub-Signature-256: sha256=$bad_sig"
    expect_eq "badly signed github webhook" 401 "$HTTP_STATUS"
}
gitlab_ok() {
    post /webhooks/gitlab "$WORKDIR/body.json" -H "X-Gitlab-Token: $GL_TOKEN"
    expect_eq "gitlab webhook" 202 "$HTTP_STATUS"
}
gitlab_bad() {
    post /webhooks/gitlab "$WORKDIR/body.json" -H "X-Gitlab-Token: not-the-token"
    expect_eq "gitlab webhook with a wrong token" 401 "$HTTP_STATUS"
}
# Before top: 3 + 2 on github, 2 + 1 on gitlab.
for _ in 1 2 3; do github_ok; done
for _ in 1 2; do github_bad; done
for _ in 1 2; do gitlab_ok; done
gitlab_bad

# run_top OUT [args...]: top with its stdout in OUT, stderr in OUT.err; sets TOP_STATUS.
run_top() {
    local out=$1
    shift
    TOP_STATUS=0
    timeout 30 "$PORTCULLIS" top "$@" >"$out" 2>"$out.err" || TOP_STATUS=$?
}

# --- usage --------------------------------------------------------------------------------------
(unset PORTCULLIS_TOKEN; run_top "$WORKDIR/u1" -c "$WORKDIR/top.yaml" --once; exit "$TOP_STATUS") &&
    fail "top without a token exited 0" || rc=$?
expect_eq "top without a token: exit status" 2 "$rc"
grep -qF "PORTCULLIS_TOKEN" "$WORKDIR/u1.err" || fail "top without a token: $(cat "$WORKDIR/u1.err")"
PORTCULLIS_TOKEN=$VIEWER run_top "$WORKDIR/u2" -c "$WORKDIR/config.yaml" --once
expect_eq "top -c with admin.listen on port 0: exit status" 2 "$TOP_STATUS"
grep -qF -- "--url" "$WORKDIR/u2.err" || fail "top -c with port 0 does not point to --url: $(cat "$WORKDIR/u2.err")"
PORTCULLIS_TOKEN=$VIEWER run_top "$WORKDIR/u3" --url "https://127.0.0.1:$ADMIN_PORT" --once
expect_eq "top --url https://: exit status" 2 "$TOP_STATUS"
PORTCULLIS_TOKEN=$VIEWER run_top "$WORKDIR/u4" --url "$ADMIN_URL"
expect_eq "the live view without a terminal: exit status" 2 "$TOP_STATUS"
"$PORTCULLIS" top --help | grep -F -- "--token-file" >/dev/null || fail "top --help does not list --token-file"

# --- the server refuses the token ---------------------------------------------------------------
PORTCULLIS_TOKEN=$UNKNOWN run_top "$WORKDIR/r401" -c "$WORKDIR/top.yaml" --once
expect_eq "top with an unknown token: exit status" 1 "$TOP_STATUS"
grep -qF "$ADMIN_URL/metrics answered 401" "$WORKDIR/r401.err" ||
    fail "top with an unknown token: the message does not name the URL and 401: $(cat "$WORKDIR/r401.err")"
if grep -qF "$UNKNOWN" "$WORKDIR/r401.err" "$WORKDIR/r401"; then
    fail "top printed the token"
fi
printf '%s\n' "$EVENTS_ONLY" >"$WORKDIR/events-only.token"
chmod 600 "$WORKDIR/events-only.token"
run_top "$WORKDIR/r403" --url "$ADMIN_URL" --token-file "$WORKDIR/events-only.token" --once
expect_eq "top with a token without metrics:read: exit status" 1 "$TOP_STATUS"
grep -qF "$ADMIN_URL/metrics answered 403" "$WORKDIR/r403.err" ||
    fail "top without metrics:read: $(cat "$WORKDIR/r403.err")"
grep -qF "metrics:read" "$WORKDIR/r403.err" || fail "top without metrics:read does not name the scope"

# --- --once ---------------------------------------------------------------------------------------
# Requests during the interval (2 s) show as rates and as events.
(sleep 1; github_bad; gitlab_ok) >/dev/null 2>&1 &
traffic=$!
PORTCULLIS_TOKEN=$VIEWER run_top "$WORKDIR/once" -c "$WORKDIR/top.yaml" --once --interval 2s
wait "$traffic" || fail "the requests during top --once failed"
expect_eq "top --once: exit status (stderr: $(cat "$WORKDIR/once.err"))" 0 "$TOP_STATUS"
if grep -q $'\x1b' "$WORKDIR/once"; then
    fail "top --once wrote escape codes"
fi
# row ROUTE FILE: the route's row of a screen, its columns split by spaces.
row() { grep -m1 -E "^$1 " "$2" || true; }
gh=$(row github "$WORKDIR/once")
gl=$(row gitlab "$WORKDIR/once")
[[ -n $gh && -n $gl ]] || fail "top --once does not show both routes: $(cat "$WORKDIR/once")"
# github: 3 + 3 answers (3 accepted, 3 refused), gitlab 3 + 1; the columns are route, req/s,
# 2xx/s, 4xx/s, 5xx/s, requests.
read -r _ gh_rate _ gh_4xx _ gh_total _ <<<"$gh"
read -r _ gl_rate gl_2xx _ _ gl_total _ <<<"$gl"
expect_eq "top --once: github's requests" 6 "$gh_total"
expect_eq "top --once: gitlab's requests" 4 "$gl_total"
# One refused github request and one gitlab one in the 2 s interval: 0.5/s each.
expect_eq "top --once: github's requests/s (one in 2 s)" 0.5 "$gh_rate"
expect_eq "top --once: github's 4xx/s" 0.5 "$gh_4xx"
expect_eq "top --once: gitlab's requests/s" 0.5 "$gl_rate"
expect_eq "top --once: gitlab's 2xx/s" 0.5 "$gl_2xx"
grep -qE "^github .*signature_mismatch 3 \(0\.5/s\)" "$WORKDIR/once" ||
    fail "top --once: github's refusal reason is not signature_mismatch 3 (0.5/s): $gh"
grep -qF "RECENT EVENTS" "$WORKDIR/once" || fail "top --once: no events pane: $(cat "$WORKDIR/once")"
grep -qE "^[0-9]{2}:[0-9]{2}:[0-9]{2} webhook\.rejected github 401 signature_mismatch$" "$WORKDIR/once" ||
    fail "top --once: the events pane has no webhook.rejected line for github: $(cat "$WORKDIR/once")"
grep -qE "^[0-9:]{8} webhook\.received gitlab 202 queued$" "$WORKDIR/once" ||
    fail "top --once: the events pane has no webhook.received line for gitlab: $(cat "$WORKDIR/once")"
grep -qE "^portcullis 0\.1\.0  up [0-9]+s  $ADMIN_URL  [0-9:]{8}Z$" "$WORKDIR/once" ||
    fail "top --once: the title line: $(head -n 1 "$WORKDIR/once")"

# Without events:read: the view without the pane, and a line saying why.
PORTCULLIS_TOKEN=$METRICS_ONLY run_top "$WORKDIR/once-noevents" --url "$ADMIN_URL/" --once --interval 100ms
expect_eq "top --once without events:read: exit status" 0 "$TOP_STATUS"
grep -qF "RECENT EVENTS" "$WORKDIR/once-noevents" && fail "top without events:read shows the pane"
grep -qF "/events answered 403 (the token lacks events:read)" "$WORKDIR/once-noevents" ||
    fail "top without events:read does not say why: $(cat "$WORKDIR/once-noevents")"
[[ -n $(row github "$WORKDIR/once-noevents") ]] || fail "top without events:read has no routes"

# --- the live view in a pseudo-terminal ----------------------------------------------------------
TMUX_SOCKET="portcullis-top-$$"
tmux_() { tmux -L "$TMUX_SOCKET" "$@"; }
at_exit "tmux -L '$TMUX_SOCKET' kill-server 2>/dev/null"
printf '%s\n' "$VIEWER" >"$WORKDIR/viewer.token"
chmod 600 "$WORKDIR/viewer.token"
# A pane runs a shell that prints a line, then runs top under script(1), which records every
# byte top writes; inside it, once top has exited, its status and the terminal's modes are
# written down. The shell then prints a last line and waits.
#   run-top.sh NAME [top arguments]: NAME.typescript, NAME.stty, NAME.status in WORKDIR.
cat >"$WORKDIR/inner.sh" <<'EOF'
#!/usr/bin/env bash
name=$1
shift
rc=0
"$PORTCULLIS" top -c "$WORKDIR/top.yaml" "$@" || rc=$?
stty -a >"$WORKDIR/$name.stty" 2>&1
echo "$rc" >"$WORKDIR/$name.status"
EOF
cat >"$WORKDIR/run-top.sh" <<'EOF'
#!/usr/bin/env bash
echo "shell before top"
PORTCULLIS_TOKEN=$(cat "$WORKDIR/${TOKEN_FILE:-viewer.token}")
export PORTCULLIS_TOKEN
script -q -c "$WORKDIR/inner.sh $*" "$WORKDIR/$1.typescript"
echo "shell after top: exited $(cat "$WORKDIR/$1.status")"
sleep 600
EOF
chmod +x "$WORKDIR/inner.sh" "$WORKDIR/run-top.sh"
# start_pane NAME WIDTH HEIGHT [top arguments]: a tmux session NAME running run-top.sh (with the
# token of $WORKDIR/$TOKEN_FILE, viewer.token by default).
start_pane() {
    local name=$1 width=$2 height=$3
    shift 3
    tmux_ new-session -d -s "$name" -x "$width" -y "$height" \
        "env PORTCULLIS=$(printf %q "$PORTCULLIS") WORKDIR=$(printf %q "$WORKDIR") TOKEN_FILE=${TOKEN_FILE:-viewer.token} $(printf %q "$WORKDIR/run-top.sh") $name $*"
}
# check_restored NAME: once top has exited in the pane NAME, the shell's screen is back (the
# alternate screen left: none of top's lines shows), the raw output left the alternate screen
# after its last drawing with the cursor shown, and the terminal's modes are canonical with echo.
check_restored() {
    local name=$1
    wait_screen "$name" "^shell after top: exited" "$name-after"
    grep -qF "shell before top" "$WORKDIR/$name-after" || fail "$name: the shell's screen is not back:
$(cat "$WORKDIR/$name-after")"
    if grep -qE "^ROUTE |RECENT EVENTS|\(q: quit\)" "$WORKDIR/$name-after"; then
        fail "$name: top's screen is still shown after it exited:
$(cat "$WORKDIR/$name-after")"
    fi
    python3 - "$WORKDIR/$name.typescript" <<'PY' || fail "$name: the raw output does not leave the alternate screen after its last drawing, or leaves the cursor hidden"
import sys
raw = open(sys.argv[1], "rb").read()
enter = raw.find(b"\x1b[?1049h")
leave = raw.rfind(b"\x1b[?1049l")
assert enter >= 0 and leave > enter, (enter, leave)
assert raw.rfind(b"\x1b[H") < leave, "drawn after leaving"
assert raw.rfind(b"\x1b[?25h") > raw.rfind(b"\x1b[?25l"), "cursor left hidden"
PY
    grep -qE "(^| )icanon( |$)" "$WORKDIR/$name.stty" && grep -qE "(^| )echo( |$)" "$WORKDIR/$name.stty" ||
        fail "$name: the terminal's modes were not restored: $(cat "$WORKDIR/$name.stty")"
}
# wait_status NAME: up to 10 s for top's exit status in the pane NAME; prints it.
wait_status() {
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -s "$WORKDIR/$1.status" ]] && break
        sleep 0.1
    done
    cat "$WORKDIR/$1.status" 2>/dev/null || echo "still running after 10 s"
}
# capture NAME: the pane's text now, into $WORKDIR/NAME.
capture() { tmux_ capture-pane -p -t "$1" >"$WORKDIR/$2"; }
# wait_screen SESSION PATTERN NAME: up to 10 s for the pane to show PATTERN (ERE); captures into
# NAME.
wait_screen() {
    local i
    for ((i = 0; i < 100; i++)); do
        capture "$1" "$3"
        grep -qE -- "$2" "$WORKDIR/$3" && return 0
        sleep 0.1
    done
    fail "the $1 pane never showed /$2/; it shows:
$(cat "$WORKDIR/$3")"
}

start_pane live 120 40
wait_screen live "^ROUTE " start
# Requests while it runs: every 0.2 s for 3 s, refused ones on github and accepted ones on gitlab.
# Half-way, with requests coming for 1.5 s, the rates are not 0.
for i in $(seq 15); do
    github_bad
    gitlab_ok
    sleep 0.2
    ((i != 8)) || capture live live-rate
done
gh=$(row github "$WORKDIR/live-rate")
gl=$(row gitlab "$WORKDIR/live-rate")
[[ -n $gh && -n $gl ]] || fail "the live view does not show both routes:
$(cat "$WORKDIR/live-rate")"
read -r _ gh_rate _ <<<"$gh"
read -r _ gl_rate _ <<<"$gl"
python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 and float(sys.argv[2]) > 0 else 1)' \
    "$gh_rate" "$gl_rate" || fail "live: no request rate while requests came (github $gh_rate, gitlab $gl_rate):
$(cat "$WORKDIR/live-rate")"
# Then every answer is counted: 6 + 15 on github, 4 + 15 on gitlab (the columns: route, req/s,
# 2xx/s, 4xx/s, 5xx/s, requests).
wait_screen live "^github +([0-9.]+ +){4}21 " live
wait_screen live "^gitlab +([0-9.]+ +){4}19 " live
screen=$(cat "$WORKDIR/live")
grep -qE "^github .*signature_mismatch 18" <<<"$screen" ||
    fail "live: github's refusal reason signature_mismatch 18 is not shown:
$screen"
grep -qE "^[0-9:]{8} webhook\.rejected github 401 signature_mismatch$" <<<"$screen" ||
    fail "live: no webhook.rejected line in the recent events:
$screen"
grep -qE "^portcullis 0\.1\.0  up .*  \(q: quit\)$" <<<"$screen" || fail "live: the title line:
$screen"
awk 'length > 120 { exit 1 }' "$WORKDIR/live" || fail "live: a line is wider than the terminal"

# SIGWINCH alone redraws: a view refreshed once an hour, drawn at 60x20, then the window grows.
start_pane winch 60 20 --interval 1h
wait_screen winch "^ROUTE " winch-before
awk 'length > 60 { exit 1 }' "$WORKDIR/winch-before" || fail "winch: a line wider than 60 columns"
tmux_ resize-window -t winch -x 150 -y 30
# The github row with its refusals is wider than 60 columns: it shows whole only if redrawn.
wait_screen winch "^github .*signature_mismatch 18" winch-after
tmux_ send-keys -t winch q
expect_eq "winch: top's exit status after q" 0 "$(wait_status winch)"

# Ctrl-C (SIGINT) quits as q does, the terminal restored.
start_pane sigint 100 30
wait_screen sigint "^ROUTE " sigint-before
tmux_ send-keys -t sigint C-c
expect_eq "Ctrl-C: top's exit status" 0 "$(wait_status sigint)"
check_restored sigint

# The token refused while the view runs: exit 1, the terminal restored, the reason on the
# shell's screen.
printf '%s\n' "$UNKNOWN" >"$WORKDIR/unknown.token"
TOKEN_FILE=unknown.token start_pane refused 100 30
expect_eq "a refused token in the live view: top's exit status" 1 "$(wait_status refused)"
check_restored refused
grep -qF "$ADMIN_URL/metrics answered 401" "$WORKDIR/refused-after" ||
    fail "refused: the shell's screen does not say why top stopped:
$(cat "$WORKDIR/refused-after")"

# The server goes away: the screen stays, with a line saying so.
stop_server
wait_screen live "^disconnected, retrying" gone
grep -qE "^github " "$WORKDIR/gone" || fail "disconnected: the last screen was not kept:
$(cat "$WORKDIR/gone")"

# q: top exits 0, and the terminal is as it was.
tmux_ send-keys -t live q
expect_eq "live: top's exit status after q" 0 "$(wait_status live)"
check_restored live

echo "PASS: top"
