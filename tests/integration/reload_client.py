#!/usr/bin/env python3
"""The reloads and the clients of tests/integration/reload.sh (issue 17, live reload).

usage: reload_client.py init | drive | side | check-side      (settings in RT_* variables)

  init        writes the first routes file (stable, rotating, new-0) and rotating's secret
  drive       20 reloads, alternately POST /v1/reload (odd) and SIGHUP (even); each adds the
              route new-K and removes new-(K-1), every 5th rotates rotating's secret; after
              each one's answer (POST) or its "configuration reloaded" log line (SIGHUP), at
              once: the new route 202 (never 404), on connections kept open across the reload
              and on new ones; the removed route 404; rotating 202 with the current secret and
              401 with the previous one; the control plane takes the token reader-K and no
              longer reader-(K-1). Then the reload's log line and its fields.
  side        posts to rotating, signed with the secret of the moment (RT_WORK/secret.now),
              on one keep-alive connection, until RT_WORK/side.stop exists; one line per
              request in RT_WORK/side.txt: t_send t_answer secret_index status
  check-side  every side request was answered 202, or 401 only around a rotation of its
              secret; never another status or a reset

Times are time.monotonic() (CLOCK_MONOTONIC, one clock for every process of the machine), so
the side loop's requests and the driver's rotations can be put on one line.

The routes file is written aside and renamed over the old one, as an operator's tool would; so
is a secret file. Rotations 1 and 3 rewrite rotating's secret file in place (the configuration's
text does not change: the reload must read the file again), 2 and 4 point rotating at a new file.

Settings: RT_CONF (the configuration directory), RT_WORK (scratch), RT_PORT, RT_ADMIN_PORT,
RT_TOKEN (scope admin:reload), RT_PID (the server), RT_LOG (its stderr), RT_NONCE (makes the
secrets unique to the run), STABLE_SECRET (the stable and new-K routes' secret, from env).
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import sys
import time

RELOADS = 20
ROTATE_EVERY = 5
# Every wait is bounded: a reload that is neither answered nor logged within this fails.
WAIT_S = 10.0
BODY = b'{"action":"reload-test","n":1}'

env = os.environ
CONF = env.get("RT_CONF", "")
WORK = env.get("RT_WORK", "")


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def secret(r):
    return f"rotating-{env['RT_NONCE']}-{r}"


def secret_path(r):
    # 0 and 1 share a file (1 rewrites it), 2 and 3 another, 4 a third one.
    return os.path.join(WORK, "secrets", "rotating-a" if r < 2 else f"rotating-{r - r % 2}")


def write_atomically(path, text, mode=0o644):
    tmp = os.path.join(WORK, "tmp", os.path.basename(path) + ".new")
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def reader_token(k):
    # The shape of `portcullis token new`'s tokens; one per generation, unique to the run.
    raw = hashlib.sha256(f"reader-{env['RT_NONCE']}-{k}".encode()).digest()
    return "pct_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def write_routes(k, r):
    """The routes file of reload K (0: the start) with rotating's secret R. It also holds the
    control-plane token reader-K (metrics:read; maps of several files merge), which replaces
    reader-(K-1): the control plane's switch shows as that of the shards' does."""
    gh = "verify: {scheme: github, secrets: [{env: STABLE_SECRET}]}"
    digest = hashlib.sha256(reader_token(k).encode()).hexdigest()
    write_atomically(
        os.path.join(CONF, "10-routes.yaml"),
        "routes:\n"
        f"  stable: {{path: /webhooks/stable, {gh}}}\n"
        f"  rotating: {{path: /webhooks/rotating, verify: {{scheme: github, secrets: "
        f"[{{file: {secret_path(r)}}}]}}}}\n"
        f"  new-{k}: {{path: /webhooks/new-{k}, {gh}}}\n"
        "tokens:\n"
        f"  reader-{k}: {{sha256: \"{digest}\", scopes: [\"metrics:read\"]}}\n",
    )


def write_secret(r):
    os.makedirs(os.path.join(WORK, "secrets"), exist_ok=True)
    write_atomically(secret_path(r), secret(r), 0o600)


def publish_secret(r):
    write_atomically(os.path.join(WORK, "secret.now"), f"{r} {secret(r)}\n")


def signature(key):
    return "sha256=" + hmac.new(key.encode(), BODY, hashlib.sha256).hexdigest()


def post(conn, path, key, what):
    """One signed POST; returns (status, body) or ("reset: ...", "") when the connection failed."""
    try:
        conn.request("POST", path, body=BODY, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": signature(key)})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        return f"reset ({type(e).__name__}: {e}) [{what}]", ""


def new_conn():
    return http.client.HTTPConnection("127.0.0.1", int(env["RT_PORT"]), timeout=WAIT_S)


def init():
    write_secret(0)
    publish_secret(0)
    write_routes(0, 0)


class LogTail:
    """Reads the server's JSON log lines that follow a point."""

    def __init__(self, path):
        self.path = path
        self.offset = os.path.getsize(path)
        self.partial = b""

    def lines(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self.partial + data
        *whole, self.partial = data.split(b"\n")
        out = []
        for raw in whole:
            try:
                out.append(json.loads(raw))
            except ValueError:
                pass  # a warning printed before the JSON log starts
        return out


def wait_reload_line(tail, generation, kept):
    """The "configuration reloaded" line of GENERATION (lines read meanwhile go to KEPT)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for line in tail.lines():
            kept.append(line)
            if line.get("msg") == "configuration reload refused":
                return None, f"the reload was refused: {json.dumps(line)}"
            if line.get("msg") == "configuration reloaded" and line.get("generation") == generation:
                return line, None
        time.sleep(0.005)
    return None, f"no 'configuration reloaded' log line with generation {generation} within {WAIT_S} s"


def names(field):
    return sorted(n for n in (field or "").split(",") if n)


def drive():
    failures = []
    took, walls, first_check = [], [], []
    rotations = []
    counts = {"rotating_202": 0, "new_202": 0}
    pid = int(env["RT_PID"])
    admin = http.client.HTTPConnection("127.0.0.1", int(env["RT_ADMIN_PORT"]), timeout=WAIT_S)
    auth = {"Authorization": f"Bearer {env['RT_TOKEN']}"}
    tail = LogTail(env["RT_LOG"])
    stable = env["STABLE_SECRET"]
    # Connections opened before the reloads and kept open across them, idle during each one.
    kept = [new_conn(), new_conn()]
    r = 0

    def expect(k, what, got, want):
        if got[0] != want:
            failures.append(f"reload {k}: {what}: expected {want}, got {got[0]} {got[1]!r}")
            return False
        return True

    for c in kept:
        got = post(c, "/webhooks/new-0", stable, "kept, before the reloads")
        expect(0, "POST /webhooks/new-0 on a kept connection before the reloads", got, 202)
        counts["new_202"] += got[0] == 202
    for k in range(1, RELOADS + 1):
        rotate = k % ROTATE_EVERY == 0
        if rotate:
            r += 1
            write_secret(r)
        write_routes(k, r)
        via = "POST /v1/reload" if k % 2 == 1 else "SIGHUP"
        generation = k + 1
        seen = []
        t0 = time.monotonic()
        if via == "SIGHUP":
            os.kill(pid, signal.SIGHUP)
            line, err = wait_reload_line(tail, generation, seen)
            if err:
                fail(f"reload {k} ({via}): {err}")
        else:
            try:
                admin.request("POST", "/v1/reload", headers=auth)
                resp = admin.getresponse()
                status, text = resp.status, resp.read().decode("utf-8", "replace")
            except (OSError, http.client.HTTPException) as e:
                fail(f"reload {k} ({via}): no answer: {type(e).__name__}: {e}")
            if status != 200:
                fail(f"reload {k} ({via}): expected 200, got {status} {text}")
            try:
                answer = json.loads(text)
            except ValueError:
                fail(f"reload {k} ({via}): the answer is not JSON: {text!r}")
        t_answer = time.monotonic()
        if rotate:
            rotations.append([r, t0, t_answer, None])
        # At once: the new route, on a kept connection first (idle while the reload ran).
        for i, c in enumerate(kept):
            sock = c.sock
            got = post(c, f"/webhooks/new-{k}", stable, f"kept {i}")
            if i == 0:
                first_check.append(time.monotonic() - t_answer)
            if expect(k, f"POST /webhooks/new-{k} on kept connection {i} right after the {via}", got, 202):
                counts["new_202"] += 1
                if c.sock is not sock or sock is None:
                    failures.append(f"reload {k}: kept connection {i} was closed across the reload")
            got = post(c, "/webhooks/rotating", secret(r), f"kept {i}")
            if expect(k, f"rotating, current secret {r}, kept connection {i}", got, 202):
                counts["rotating_202"] += 1
        # New connections (a shard each, as the kernel spreads them).
        for i in range(2):
            c = new_conn()
            got = post(c, f"/webhooks/new-{k}", stable, f"new connection {i}")
            counts["new_202"] += expect(k, f"POST /webhooks/new-{k} on a new connection", got, 202)
            got = post(c, "/webhooks/rotating", secret(r), f"new connection {i}")
            counts["rotating_202"] += expect(k, f"rotating, current secret {r}, new connection", got, 202)
            old = secret(r - 1) if r > 0 else f"never-valid-{env['RT_NONCE']}"
            got = post(c, "/webhooks/rotating", old, f"new connection {i}")
            expect(k, f"rotating, previous secret {r - 1 if r > 0 else '(none)'}", got, 401)
            c.close()
            c = new_conn()
            got = post(c, f"/webhooks/new-{k - 1}", stable, "removed route")
            expect(k, f"POST /webhooks/new-{k - 1} (removed) on a new connection", got, 404)
            c.close()
        # The control plane: reader-K's token is good at once, reader-(K-1)'s no more.
        for tk, want in ((k, 200), (k - 1, 401)):
            c = http.client.HTTPConnection("127.0.0.1", int(env["RT_ADMIN_PORT"]), timeout=WAIT_S)
            try:
                c.request("GET", "/metrics", headers={"Authorization": f"Bearer {reader_token(tk)}"})
                resp = c.getresponse()
                got = (resp.status, resp.read()[:200].decode("utf-8", "replace"))
            except (OSError, http.client.HTTPException) as e:
                got = (f"reset ({type(e).__name__}: {e})", "")
            c.close()
            expect(k, f"GET /metrics with reader-{tk}'s token", got, want)
        if rotate:
            publish_secret(r)
            rotations[-1][3] = time.monotonic()
        # The answer's and the log line's fields (after the checks: they come first).
        if via == "POST /v1/reload":
            want = {"reloaded": True, "generation": generation, "routes": 3}
            if {key: answer.get(key) for key in want} != want or not isinstance(answer.get("took_ms"), (int, float)):
                failures.append(f"reload {k}: answer {text} (expected {want} and a number took_ms)")
            else:
                took.append(float(answer["took_ms"]))
            line, err = wait_reload_line(tail, generation, seen)
            if err:
                failures.append(f"reload {k} ({via}): {err}")
                continue
        walls.append(t_answer - t0)
        want_changed = ["rotating"] if rotate else []
        if (line.get("level") != "info" or line.get("routes") != 3
                or names(line.get("added")) != [f"new-{k}"]
                or names(line.get("removed")) != [f"new-{k - 1}"]
                or names(line.get("changed")) != want_changed
                or not isinstance(line.get("took_ms"), (int, float))):
            failures.append(
                f"reload {k}: log line {json.dumps(line)} (expected level info, routes 3, took_ms, "
                f"added new-{k}, removed new-{k - 1}, changed {','.join(want_changed) or '(none)'})")
        elif via == "SIGHUP":
            took.append(float(line["took_ms"]))
    with open(os.path.join(WORK, "rotations.txt"), "w", encoding="utf-8") as f:
        for rr, t_trigger, t_answer, t_published in rotations:
            f.write(f"{rr} {t_trigger:.6f} {t_answer:.6f} {t_published:.6f}\n")
    with open(os.path.join(WORK, "drive-counts.txt"), "w", encoding="utf-8") as f:
        f.write(f"rotating_202={counts['rotating_202']} new_202={counts['new_202']}\n")

    def spread(xs, unit, scale=1.0):
        xs = sorted(x * scale for x in xs)
        if not xs:
            return "-"
        return f"min {xs[0]:.1f}{unit} median {xs[len(xs) // 2]:.1f}{unit} max {xs[-1]:.1f}{unit}"

    print(f"reloads: {RELOADS} ({(RELOADS + 1) // 2} POST /v1/reload, {RELOADS // 2} SIGHUP), "
          f"{len(rotations)} secret rotations")
    print(f"took_ms (server): {spread(took, ' ms')}")
    print(f"trigger -> answer or log line (client): {spread(walls, ' ms', 1000)}")
    print(f"answer -> first request on the new route answered: {spread(first_check, ' ms', 1000)}")
    if failures:
        for f_ in failures:
            print(f"FAIL: {f_}", file=sys.stderr)
        sys.exit(1)


def side():
    stop = os.path.join(WORK, "side.stop")
    now = os.path.join(WORK, "secret.now")
    conn = new_conn()
    out = []
    while not os.path.exists(stop):
        with open(now, encoding="utf-8") as f:
            r, key = f.read().split()
        t_send = time.monotonic()
        status, _ = post(conn, "/webhooks/rotating", key, "side loop")
        out.append(f"{t_send:.6f} {time.monotonic():.6f} {r} {str(status).replace(' ', '_')}")
        # About 200 requests a second at most: enough to straddle every reload, little CPU.
        time.sleep(0.005)
    with open(os.path.join(WORK, "side.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def check_side():
    rotations = {}
    for line in open(os.path.join(WORK, "rotations.txt"), encoding="utf-8"):
        r, t_trigger, t_answer, _ = line.split()
        rotations[int(r)] = (float(t_trigger), float(t_answer))
    bad, n, n202, n401 = [], 0, 0, 0
    for line in open(os.path.join(WORK, "side.txt"), encoding="utf-8"):
        if not line.strip():
            continue
        t_send, t_answer, r, status = line.split()
        t_send, t_answer, r = float(t_send), float(t_answer), int(r)
        n += 1
        nxt = rotations.get(r + 1)
        if status == "202":
            n202 += 1
            # Signed with secret r: valid until the rotation to r+1 took effect, which its
            # answer (or log line) says it has; a request sent after that is under the new one.
            if nxt is not None and t_send > nxt[1]:
                bad.append(f"{line.strip()}: 202 for secret {r}, sent after the reload that rotated it to {r + 1} was answered")
        elif status == "401":
            n401 += 1
            # Only once the rotation away from secret r has been asked for.
            if nxt is None or t_answer < nxt[0]:
                bad.append(f"{line.strip()}: 401 for secret {r} outside a rotation")
        else:
            bad.append(f"{line.strip()}: neither 202 nor 401")
    print(f"side loop: {n} requests to rotating: {n202} x 202, {n401} x 401 (around the "
          f"{len(rotations)} rotations), {n - n202 - n401} other")
    with open(os.path.join(WORK, "side-counts.txt"), "w", encoding="utf-8") as f:
        f.write(f"side_202={n202}\n")
    if n < 50:
        bad.append(f"only {n} side requests: the loop did not run through the reloads")
    for b in bad[:20]:
        print(f"FAIL: side loop: {b}", file=sys.stderr)
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    commands = {"init": init, "drive": drive, "side": side, "check-side": check_side}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        fail(__doc__)
    commands[sys.argv[1]]()
