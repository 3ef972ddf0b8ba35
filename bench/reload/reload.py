#!/usr/bin/env python3
"""bench/reload/run's configuration, reload driver and report.

usage:
  reload.py config OUT ROUTES GENERATION   the configuration (settings in BENCH_* variables)
  reload.py drive OUT                      the reloads and control requests, times in OUT
  reload.py report WRK_OUT DRIVE_OUT       per reload and summary figures, the targets' inputs

config: ROUTES routes in one file: "github" (the route wrk loads) and ROUTES-1 generated ones
mixing what operators write (github, shared_secret with a {tenant} path parameter, github with
dedup and a rate limit). The last one's name and path carry GENERATION, so that every reload
removes one route and adds one: a real change, the count staying at ROUTES.

drive: BENCH_RELOADS reloads, each a POST /v1/reload, the first BENCH_WARMUP_S seconds after
the start, then every BENCH_INTERVAL_S; the configuration file is rewritten (written aside,
then renamed over) half an interval before each one, far from every reload. A third and two
thirds of an interval after each reload, a control request (GET /healthz on the control plane:
a request of the same client that reloads nothing) shows how low the windows around a request
go when nothing is reloaded: the noise of 100 ms windows on this machine, and the cost of the
driver's own wake-up. One line per request in OUT:
  start T
  reload I T_REQUEST T_ANSWER STATUS TOOK_MS GENERATION ROUTES
  control I T_REQUEST T_ANSWER STATUS
T_* are time.monotonic() (CLOCK_MONOTONIC, windows.lua's clock).

report: wrk's windows (bench-window lines of 100 ms) against those times:
  around a request: the windows that meet [its request, its answer + 100 ms] (an answer that a
    reload held back lands in one of them); its figure is the lowest of them
  far: windows at least FAR_S from every reload's request..answer, from a second after the
    driver's start (wrk's ramp), not the first or last window of wrk's run (partly measured);
    baseline = their median
  dip of a reload: its lowest window / baseline, min/median/max over the reloads; the same for
    the control requests; and "reloads against control requests": the reloads' median dip
    over the controls' (the lowest of two or three windows sits below the median of all of
    them by itself: the controls have that bias too, the reloads' cost is what remains)
Prints the table and "reload-result key=value ..." for the runner.
"""

import http.client
import json
import os
import statistics
import sys
import time

FAR_S = 0.5
WINDOW_S = 0.1


def config(out, routes, generation):
    env = os.environ
    lines = [
        "server:",
        '  listen: ["127.0.0.1:0"]',
        f"  shards: {env['BENCH_SHARDS']}",
        f"  max_connections: {env['BENCH_MAX_CONNECTIONS']}",
        f"  max_connections_per_ip: {env['BENCH_MAX_CONNECTIONS']}",
        'admin: {listen: "127.0.0.1:0"}',
        f"spool: {{dir: {env['BENCH_SPOOL']}, durability: {env['BENCH_DURABILITY']}}}",
        "tokens:",
        f"  bench: {{sha256: \"{env['BENCH_TOKEN_SHA256']}\", scopes: [\"admin:reload\"]}}",
        "routes:",
        "  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: BENCH_GITHUB_SECRET}]}}",
    ]
    github = "verify: {scheme: github, secrets: [{env: BENCH_GITHUB_SECRET}]}"
    for i in range(1, routes):
        name = f"r-{i:04d}" if i < routes - 1 else f"r-{i:04d}-g{generation}"
        if i % 3 == 0:
            lines.append(f"  {name}: {{path: /hooks/{name}, {github}}}")
        elif i % 3 == 1:
            lines.append(
                f"  {name}: {{path: \"/hooks/t/{{tenant}}/{name}\", verify: {{scheme: shared_secret, "
                f"header: X-Hook-Token, secrets: [{{env: BENCH_SHARED_SECRET}}]}}, max_attempts: 5}}")
        else:
            lines.append(
                f"  {name}: {{path: /hooks/{name}, {github}, dedup: {{window: 1h}}, "
                f"rate_limit: {{per_ip: 100/s, burst: 200}}}}")
    tmp = out + ".new"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, out)


def drive(out):
    env = os.environ
    reloads = int(env["BENCH_RELOADS"])
    warmup = float(env["BENCH_WARMUP_S"])
    interval = float(env["BENCH_INTERVAL_S"])
    routes = int(env["BENCH_ROUTES"])
    conf = env["BENCH_CONFIG"]
    admin = http.client.HTTPConnection("127.0.0.1", int(env["BENCH_ADMIN_PORT"]), timeout=30)
    auth = {"Authorization": f"Bearer {env['BENCH_TOKEN']}"}
    start = time.monotonic()
    rows = [f"start {start:.6f}"]

    def at(t):
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def control(n, t):
        at(t)
        t0 = time.monotonic()
        admin.request("GET", "/healthz")
        resp = admin.getresponse()
        resp.read()
        rows.append(f"control {n} {t0:.6f} {time.monotonic():.6f} {resp.status}")

    for i in range(1, reloads + 1):
        t_reload = start + warmup + (i - 1) * interval
        # The file is written half an interval before its reload: a sixth of an interval from
        # the control requests, half an interval from any reload.
        at(t_reload - interval / 2)
        config(conf, routes, i + 1)
        at(t_reload)
        t0 = time.monotonic()
        admin.request("POST", "/v1/reload", headers=auth)
        resp = admin.getresponse()
        text = resp.read().decode("utf-8", "replace")
        t1 = time.monotonic()
        try:
            a = json.loads(text)
        except ValueError:
            a = {}
        rows.append(f"reload {i} {t0:.6f} {t1:.6f} {resp.status} {a.get('took_ms', '-')} "
                    f"{a.get('generation', '-')} {a.get('routes', '-')}")
        if resp.status != 200:
            print(f"reload {i}: {resp.status} {text}", file=sys.stderr)
        control(2 * i - 1, t_reload + interval / 3)
        control(2 * i, t_reload + 2 * interval / 3)
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")


def report(wrk_out, drive_out):
    windows = {}
    for line in open(wrk_out, encoding="utf-8"):
        if line.startswith("bench-window "):
            _, w, n = line.split()
            windows[int(w)] = int(n)
    if len(windows) < 3:
        sys.exit("report: wrk printed fewer than 3 windows")
    first, last = min(windows), max(windows)
    # A window with no answer at all is a 0, not a gap.
    rate = {w: windows.get(w, 0) / WINDOW_S for w in range(first + 1, last)}
    reloads, controls, start = [], [], 0.0
    for line in open(drive_out, encoding="utf-8"):
        f = line.split()
        if f[0] == "start":
            # wrk starts just before the driver: its first second is its ramp, not a baseline.
            start = float(f[1]) + 1.0
        elif f[0] == "reload":
            reloads.append({"i": int(f[1]), "t0": float(f[2]), "t1": float(f[3]), "status": int(f[4]),
                            "took": f[5], "gen": f[6], "routes": f[7]})
        elif f[0] == "control":
            controls.append({"i": int(f[1]), "t0": float(f[2]), "t1": float(f[3]), "status": int(f[4])})

    def around(ev):
        # The windows that meet [request, answer + one window]: an answer that the reload held
        # back lands in one of them.
        lo, hi = int(ev["t0"] / WINDOW_S), int((ev["t1"] + WINDOW_S) / WINDOW_S)
        return [rate[w] for w in range(lo, hi + 1) if w in rate]

    def far(w):
        a, b = w * WINDOW_S, (w + 1) * WINDOW_S
        return all(b <= r["t0"] - FAR_S or a >= r["t1"] + FAR_S for r in reloads)

    far_rates = [r for w, r in rate.items() if w * WINDOW_S >= start and far(w)]
    if not far_rates:
        sys.exit("report: no window far from the reloads (a longer --interval?)")
    base = statistics.median(far_rates)
    for ev in reloads + controls:
        got = around(ev)
        ev["low"] = min(got) if got else 0.0
        ev["dip"] = ev["low"] / base if base > 0 else 0.0
    rd = [r["dip"] for r in reloads]
    cd = [c["dip"] for c in controls]
    print(f"{'reload':>6} {'status':>6} {'generation':>10} {'routes':>6} {'took_ms':>8} {'wall_ms':>8} "
          f"{'lowest window':>14} {'/ baseline':>10}")
    for r in reloads:
        wall = 1000 * (r["t1"] - r["t0"])
        print(f"{r['i']:>6} {r['status']:>6} {r['gen']:>10} {r['routes']:>6} {r['took']:>8} {wall:>8.1f} "
              f"{r['low']:>12.0f}/s {r['dip']:>10.2f}")
    took = [float(r["took"]) for r in reloads if r["took"] not in ("-", "None")]
    wall = [1000 * (r["t1"] - r["t0"]) for r in reloads]
    bad = [r for r in reloads if r["status"] != 200]

    def mmm(xs, fmt="{:.1f}"):
        if not xs:
            return "-/-/-"
        return "/".join(fmt.format(x) for x in (min(xs), statistics.median(xs), max(xs)))

    rd_med, cd_med = statistics.median(rd), statistics.median(cd)
    vs_control = rd_med / cd_med if cd_med > 0 else 0.0
    print(f"baseline: the median of {len(far_rates)} windows of 100 ms at least {FAR_S} s from every reload: "
          f"{base:.0f} requests/s (those windows min/max {min(far_rates):.0f}/{max(far_rates):.0f})")
    print(f"took_ms (the answer's) min/median/max: {mmm(took)}; request -> answer (wall) ms: {mmm(wall)}")
    print(f"lowest window around a reload / baseline, min/median/max over the {len(rd)} reloads: {mmm(rd, '{:.2f}')}")
    print(f"the same around the {len(cd)} control requests (GET /healthz, no reload): {mmm(cd, '{:.2f}')}")
    print(f"reloads against control requests (medians): {vs_control:.2f}")
    print("reload-result " + " ".join([
        f"reloads={len(reloads)}", f"failed={len(bad)}",
        f"took_min={min(took):.1f}" if took else "took_min=-",
        f"took_median={statistics.median(took):.1f}" if took else "took_median=-",
        f"took_max={max(took):.1f}" if took else "took_max=-",
        f"wall_median={statistics.median(wall):.1f}", f"wall_max={max(wall):.1f}",
        f"dip_min={min(rd):.2f}", f"dip_median={rd_med:.2f}",
        f"control_dip_min={min(cd):.2f}", f"control_dip_median={cd_med:.2f}",
        f"vs_control={vs_control:.2f}", f"baseline_rps={base:.0f}",
        "generations=" + ",".join(r["gen"] for r in reloads),
    ]))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "config" and len(sys.argv) == 5:
        config(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "drive" and len(sys.argv) == 3:
        drive(sys.argv[2])
    elif cmd == "report" and len(sys.argv) == 4:
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
