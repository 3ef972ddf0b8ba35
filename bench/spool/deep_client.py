#!/usr/bin/env python3
"""Client side of bench/spool/deep: talks to the pull API of a server holding a deep spool.

Used by bench/spool/deep, which starts the server and prints the table; every subcommand ends
with one line "bench-result key=value ..." for the runner to parse (bench/load/pull_client.py's
convention, whose id regex and result() this reuses).

  ready    waits for the server's `job index ready` log line and prints its jobs count and the
           milliseconds from --t0 (Unix ms, taken just before the exec) to the line's ts.
  latency  one keep-alive connection: --count x (POST /v1/lease max 1, then POST
           /v1/jobs/{id}/ack), each request timed on its own; then --batches x (lease max 100,
           POST /v1/ack of those ids). Percentiles per kind.
  drain    C consumer processes (keep-alive each) lease up to --batch and settle them in bulk
           (ack, or nack with --nack) until --jobs are done or a lease comes back empty; the
           parent samples the spool (segments, bytes) and the server (VmRSS, RssAnon) every
           --interval seconds into --samples.
  pages    GET /v1/dead-letters?route=R, then &after=<next> until a page has no "next"; times
           each page and checks that the ids come strictly increasing (so none twice).
  health   one GET /healthz: the route's queued, leased and dead.
"""

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "load"))
from pull_client import ID_RE, result  # noqa: E402  (bench/load/pull_client.py)


def connect(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def headers(token):
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def percentiles(samples):
    """p50, p99, p99.9 and max of a list of seconds, in milliseconds (nearest rank)."""
    if not samples:
        return {"p50": "-", "p99": "-", "p999": "-", "max": "-"}
    s = sorted(samples)

    def rank(q):
        return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))]

    return {
        "p50": f"{1000 * rank(0.50):.3f}",
        "p99": f"{1000 * rank(0.99):.3f}",
        "p999": f"{1000 * rank(0.999):.3f}",
        "max": f"{1000 * s[-1]:.3f}",
    }


# ---- ready ----------------------------------------------------------------------------------


def parse_ts_ms(ts):
    """RFC 3339 UTC with milliseconds ("2024-06-10T09:13:20.123Z") to Unix milliseconds."""
    import calendar

    base, _, frac = ts.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1000 + (int(frac[:3].ljust(3, "0")) if frac else 0)


def cmd_ready(a):
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        try:
            with open(a.log) as f:
                for line in f:
                    if '"msg":"job index ready"' not in line:
                        continue
                    doc = json.loads(line)
                    result(
                        jobs=doc["jobs"],
                        ms=parse_ts_ms(doc["ts"]) - a.t0,
                        damaged=doc.get("damaged_regions", 0),
                        ledger_ops=doc.get("ledger_ops", 0),
                    )
                    return
        except FileNotFoundError:
            pass
        if a.pid and not os.path.exists(f"/proc/{a.pid}"):
            sys.exit("error: the server exited before its job index was ready")
        time.sleep(0.01)
    sys.exit(f"error: no `job index ready` line in {a.log} after {a.timeout}s")


# ---- latency --------------------------------------------------------------------------------


def timed(conn, method, path, body, h):
    """One request on the keep-alive connection: its status, its body and its round trip."""
    t0 = time.perf_counter()
    conn.request(method, path, body, h)
    r = conn.getresponse()
    data = r.read()
    return r.status, data, time.perf_counter() - t0


def cmd_latency(a):
    conn = connect(a.port)
    h = headers(a.token)
    one = json.dumps({"route": a.route, "max": 1, "visibility": "10m"}).encode()
    hundred = json.dumps({"route": a.route, "max": 100, "visibility": "10m"}).encode()
    lease_t, ack_t, blease_t, back_t = [], [], [], []
    errors = []
    acked = 0
    for _ in range(a.count):
        status, data, took = timed(conn, "POST", "/v1/lease", one, h)
        ids = ID_RE.findall(data)
        if status != 200 or len(ids) != 1:
            errors.append(f"lease:{status}:{len(ids)}")
            break
        lease_t.append(took)
        status, _, took = timed(conn, "POST", f"/v1/jobs/{ids[0].decode()}/ack", b"", h)
        ack_t.append(took)
        if status != 200:
            errors.append(f"ack:{status}")
            break
        acked += 1
    for _ in range(a.batches):
        status, data, took = timed(conn, "POST", "/v1/lease", hundred, h)
        ids = ID_RE.findall(data)
        if status != 200 or not ids:
            errors.append(f"batch-lease:{status}:{len(ids)}")
            break
        blease_t.append(took)
        status, data, took = timed(conn, "POST", "/v1/ack", b'{"ids":["' + b'","'.join(ids) + b'"]}', h)
        answer = json.loads(data)
        back_t.append(took)
        if status != 200 or answer["failed"]:
            errors.append(f"batch-ack:{status}:{len(answer.get('failed', []))}")
            break
        acked += len(answer["settled"])
    conn.close()
    out = {"acked": acked, "errors": ",".join(errors) or "none"}
    for name, samples in (("lease", lease_t), ("ack", ack_t), ("blease", blease_t), ("back", back_t)):
        out[f"{name}_n"] = len(samples)
        for k, v in percentiles(samples).items():
            out[f"{name}_{k}"] = v
    result(**out)


# ---- drain ----------------------------------------------------------------------------------


def consumer(port, token, route, batch, nack, budget, go, out):
    """Leases up to `batch` at a time, reserving them from the shared budget first, so that the
    consumers together settle at most the budget's jobs."""
    conn = connect(port)
    h = headers(token)
    settled = failed = 0
    errors = []
    go.wait()
    while True:
        with budget.get_lock():
            take = min(batch, budget.value)
            budget.value -= take
        if take == 0:
            break
        body = json.dumps({"route": route, "max": take, "visibility": "10m"}).encode()
        status, data, _ = timed(conn, "POST", "/v1/lease", body, h)
        if status != 200:
            errors.append(f"lease:{status}")
            break
        ids = ID_RE.findall(data)
        if len(ids) < take:
            with budget.get_lock():
                budget.value += take - len(ids)
        if not ids:
            break
        path = "/v1/nack" if nack else "/v1/ack"
        payload = b'{"ids":["' + b'","'.join(ids) + b'"]' + (b',"delay":"0s"}' if nack else b"}")
        status, answer, _ = timed(conn, "POST", path, payload, h)
        if status != 200:
            errors.append(f"{path}:{status}")
            break
        doc = json.loads(answer)
        settled += len(doc["settled"])
        failed += len(doc["failed"])
    conn.close()
    out.put({"settled": settled, "failed": failed, "errors": errors})


def spool_sample(spool):
    segments = size = 0
    for entry in os.scandir(spool):
        if entry.is_dir() and entry.name.startswith("shard-"):
            for seg in os.scandir(entry.path):
                if seg.name.endswith(".seg"):
                    try:
                        size += seg.stat().st_size
                        segments += 1
                    except FileNotFoundError:
                        pass  # retired while we looked
    return segments, size


def memory(pid):
    rss = anon = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
    return rss, anon


def cmd_drain(a):
    budget = mp.Value("q", a.jobs)
    go = mp.Event()
    out = mp.Queue()
    procs = [
        mp.Process(target=consumer, args=(a.port, a.token, a.route, a.batch, a.nack, budget, go, out))
        for _ in range(a.consumers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.3)  # connected and waiting
    samples = []

    def sample(t):
        segs, size = spool_sample(a.spool)
        rss, anon = memory(a.pid)
        samples.append((t, segs, size, rss, anon, a.jobs - budget.value))

    start = time.monotonic()
    sample(0.0)
    go.set()
    stats = []
    next_t = a.interval
    while len(stats) < len(procs):
        wait = max(0.0, start + next_t - time.monotonic())
        try:
            stats.append(out.get(timeout=wait))
            continue
        except Exception:  # queue.Empty: time for a sample
            pass
        sample(time.monotonic() - start)
        next_t += a.interval
    seconds = time.monotonic() - start
    for p in procs:
        p.join()
    sample(seconds)
    end_index = len(samples) - 1
    # Retention runs every 100 ms with a short spool.retention: give it time to catch up.
    time.sleep(a.settle)
    sample(time.monotonic() - start)
    with open(a.samples, "w") as f:
        f.write("# seconds segments spool_bytes vm_rss rss_anon jobs_taken\n")
        for s in samples:
            f.write("%.3f %d %d %d %d %d\n" % s)
    settled = sum(s["settled"] for s in stats)
    first_segs = samples[0][1]
    # Segments deleted while jobs were still being taken: by the last sample before the drain
    # ended (the sample at its end does not count).
    during = [s for s in samples[1:end_index] if s[5] < a.jobs]
    deleted_during = first_segs - min((s[1] for s in during), default=first_segs)
    first_delete = next((s[0] for s in samples if s[1] < first_segs), -1)
    result(
        jobs=settled,
        failed=sum(s["failed"] for s in stats),
        errors=",".join(e for s in stats for e in s["errors"]) or "none",
        seconds=f"{seconds:.3f}",
        jobs_per_s=f"{settled / seconds:.0f}",
        segments_start=first_segs,
        segments_end=samples[end_index][1],
        segments_settled=samples[-1][1],
        bytes_start=samples[0][2],
        bytes_settled=samples[-1][2],
        deleted_during=deleted_during,
        first_delete_s=f"{first_delete:.2f}",
        rss_end=samples[end_index][3],
        rss_settled=samples[-1][3],
        anon_settled=samples[-1][4],
        samples=len(samples),
    )


# ---- pages ----------------------------------------------------------------------------------


def cmd_pages(a):
    conn = connect(a.port)
    h = headers(a.token)
    times = []
    count = 0
    last = b""
    ordered = True
    after = None
    start = time.perf_counter()
    while True:
        path = f"/v1/dead-letters?route={a.route}" + (f"&after={after}" if after else "")
        t0 = time.perf_counter()
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        data = r.read()
        times.append(time.perf_counter() - t0)
        if r.status != 200:
            conn.close()
            result(pages=len(times), jobs=count, error=f"status:{r.status}")
            return
        ids = ID_RE.findall(data)
        for i in ids:
            ordered = ordered and i > last
            last = i
        count += len(ids)
        nxt = json.loads(data).get("next")
        if not nxt:
            break
        after = nxt
    total = time.perf_counter() - start
    conn.close()
    p = percentiles(times)
    result(
        pages=len(times),
        jobs=count,
        ordered=int(ordered),
        seconds=f"{total:.3f}",
        p50=p["p50"],
        p99=p["p99"],
        max=p["max"],
        error="none",
    )


def cmd_health(a):
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    conn.request("GET", "/healthz")
    doc = json.loads(conn.getresponse().read())
    conn.close()
    r = doc["routes"][a.route]
    result(queued=r["queued"], leased=r["leased"], dead=r["dead"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    token = os.environ.get("BENCH_PULL_TOKEN")
    r = sub.add_parser("ready")
    r.add_argument("--log", required=True)
    r.add_argument("--t0", type=int, required=True, help="Unix ms just before the exec")
    r.add_argument("--pid", type=int, default=0, help="give up when this process is gone")
    r.add_argument("--timeout", type=float, default=3600)
    lat = sub.add_parser("latency")
    lat.add_argument("--port", type=int, required=True)
    lat.add_argument("--route", required=True)
    lat.add_argument("--count", type=int, default=2000)
    lat.add_argument("--batches", type=int, default=20)
    lat.add_argument("--token", default=token)
    d = sub.add_parser("drain")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--route", required=True)
    d.add_argument("--jobs", type=int, required=True, help="settle at most this many")
    d.add_argument("--batch", type=int, default=1000)
    d.add_argument("--consumers", type=int, default=3)
    d.add_argument("--nack", action="store_true", help="nack instead of ack")
    d.add_argument("--pid", type=int, required=True, help="the server, for its memory")
    d.add_argument("--spool", required=True, help="the spool folder, for its segments")
    d.add_argument("--samples", required=True, help="where the samples go")
    d.add_argument("--interval", type=float, default=1.0)
    d.add_argument("--settle", type=float, default=2.0, help="seconds to wait after the drain")
    d.add_argument("--token", default=token)
    pg = sub.add_parser("pages")
    pg.add_argument("--port", type=int, required=True)
    pg.add_argument("--route", required=True)
    pg.add_argument("--token", default=token)
    hz = sub.add_parser("health")
    hz.add_argument("--port", type=int, required=True)
    hz.add_argument("--route", required=True)
    a = p.parse_args()
    {
        "ready": cmd_ready,
        "latency": cmd_latency,
        "drain": cmd_drain,
        "pages": cmd_pages,
        "health": cmd_health,
    }[a.cmd](a)


if __name__ == "__main__":
    main()
