#!/usr/bin/env bash
# A per-client rate limit holds for the whole appliance, not per shard: wrk hammers one route
# from one address over 16 connections, which SO_REUSEPORT spreads over both shards, far faster
# than the limit. The jobs accepted must be what one bucket allows over the time they span
# (burst + rate x seconds) within 5% (a limit kept per shard would let through about twice
# that), both shards must have taken part, and every other answer must be a 429.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need wrk python3

RATE=500
BURST=50
SPOOL="$WORKDIR/spool"
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 2}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: batch}
routes:
  flood:
    path: /webhooks/flood
    verify: {scheme: none}
    rate_limit: {per_ip: $RATE/s, burst: $BURST}
EOF
cat >"$WORKDIR/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"event":"flood"}'
wrk.headers["Content-Type"] = "application/json"
EOF

start_server "$WORKDIR/config.yaml"
wrk -t2 -c16 -d6s -s "$WORKDIR/post.lua" "http://127.0.0.1:$PORT/webhooks/flood" \
    >"$WORKDIR/wrk.txt" 2>&1 || fail "wrk failed: $(cat "$WORKDIR/wrk.txt")"
stop_server
spool_dump "$SPOOL" "$WORKDIR/dump.jsonl"
refusals=$(grep -F '"msg":"route refusals"' "$SERVER_LOG" | grep -F '"route":"flood"' || true)

python3 - "$WORKDIR/dump.jsonl" "$WORKDIR/wrk.txt" "$RATE" "$BURST" "$refusals" <<'PY' ||
import datetime, json, re, sys
dump, wrk_out, rate, burst, refusals = sys.argv[1], open(sys.argv[2]).read(), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5]
jobs = [json.loads(l) for l in open(dump) if l.strip()]

def shard_of(job_id):
    # 26 Crockford base32 characters = 128 bits; byte 6 is the shard (queue/job_id.hh).
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    n = 0
    for ch in job_id.lower():
        n = n * 32 + alphabet.index(ch)
    return n.to_bytes(17, "big")[-16:][6]

def when(job):
    return datetime.datetime.fromisoformat(job["received_at"].replace("Z", "+00:00")).timestamp()

times = sorted(when(j) for j in jobs)
span = times[-1] - times[0]
expected = burst + rate * span
accepted = len(jobs)
per_shard = [sum(1 for j in jobs if shard_of(j["id"]) == s) for s in (0, 1)]
total = int(re.search(r"(\d+) requests in", wrk_out).group(1))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk_out)
refused = int(m.group(1)) if m else 0
print(f"wrk: {total} requests, {refused} refused; accepted {accepted} over {span:.3f} s "
      f"(shard 0: {per_shard[0]}, shard 1: {per_shard[1]}); one bucket allows {expected:.0f}: "
      f"{100 * (accepted - expected) / expected:+.2f}%")
assert total > 4 * expected, "the load did not exceed the limit by far"
assert abs(accepted - expected) <= 0.05 * expected, "the limit is not held within 5%"
assert min(per_shard) >= accepted // 10, "both shards must have accepted jobs"
# wrk stops counting with up to one request per connection still in flight.
m = re.search(r'"rate_limited":(\d+)', refusals)
server_refused = int(m.group(1)) if m else 0
ok = total - refused
assert ok <= accepted <= ok + 16, f"wrk saw {ok} accepted, the spool holds {accepted}"
assert refused <= server_refused <= refused + 16, f"server counted {server_refused} refusals"
PY
    fail "per-client limit over two shards"
echo "rate_limit_shards: ok"
