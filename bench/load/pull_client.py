#!/usr/bin/env python3
"""Client side of bench/load/pull: fills a route with jobs and drains it through the pull API.

Used by bench/load/pull, which starts the server and prints the table; not meant to be run on its
own (but it can be: see --help of each subcommand). Every subcommand ends with one line
"bench-result key=value ..." for the runner to parse.

  fill     POST the same ~1 KiB JSON body N times to the public plane, from P processes with K
           keep-alive connections each and D requests in flight per connection (HTTP/1.1
           pipelining), so that the fill is quick even with durability fsync. Counts every
           status; the runner insists on N 202s.
  wait     polls GET /healthz until the route shows N jobs queued (the control plane tails the
           spool, so jobs appear there a little after their 202).
  drain    C consumer processes, one keep-alive connection each, loop over
           POST /v1/lease {"route","max":B,"visibility"} and POST /v1/ack {"ids":[...]} until a
           lease comes back empty. Only the ids are taken from the lease answer (a regex over
           '{"id":"<26 chars>"' at the start of each job object: a body's own "id" keys are
           escaped inside the body string and never match). The processes connect first and
           start together; the parent reads the server's CPU times (/proc/PID/stat and each
           thread's /proc/PID/task/TID/stat) just before and just after, so connection set-up
           and process start are not measured.
"""

import argparse
import http.client
import json
import multiprocessing as mp
import os
import re
import selectors
import socket
import sys
import time

ID_RE = re.compile(rb'\{"id":"([0-9a-z]{26})"')
STATUS_RE = re.compile(rb"HTTP/1\.1 (\d\d\d) ")


def result(**kv):
    print("bench-result " + " ".join(f"{k}={v}" for k, v in kv.items()), flush=True)


# ---- fill -----------------------------------------------------------------------------------


def make_body(size):
    """A JSON document of exactly `size` bytes, shaped like a small push delivery."""
    head = (
        '{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246",'
        '"after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","repository":{"id":700158922,'
        '"full_name":"octo-org/portcullis-demo","private":true},"pusher":{"name":"monalisa",'
        '"email":"monalisa@example.com"},"commits":[{"id":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",'
        '"message":"Fix the retry budget when a sink is slow","timestamp":"2024-06-10T09:13:20Z",'
        '"modified":["src/queue/retry.cc"]}],"note":"'
    )
    tail = '"}'
    pad = size - len(head) - len(tail)
    if pad < 0:
        raise SystemExit(f"--body-bytes must be at least {len(head) + len(tail)}")
    text = "lorem ipsum dolor sit amet " * (pad // 27 + 1)
    return (head + text[:pad] + tail).encode()


def fill_worker(host, port, request, count, conns, depth, out):
    """count requests over `conns` connections, each with up to `depth` in flight.

    The public plane answers a connection's pipelined requests one after the other, each after
    its own group commit, so with durability fsync the fill rate is about connections / fdatasync
    time: many connections, not deep pipelines, make it quick."""
    statuses = {}
    sel = selectors.DefaultSelector()
    quota = [count // conns + (1 if i < count % conns else 0) for i in range(conns)]
    state = {}
    for q in quota:
        if q == 0:
            continue
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        st = {"sock": sock, "quota": q, "sent": 0, "done": 0, "carry": b""}
        n = min(depth, q)
        sock.sendall(request * n)
        st["sent"] = n
        state[sock.fileno()] = st
        sel.register(sock, selectors.EVENT_READ, st)
    while state:
        for key, _ in sel.select():
            st = key.data
            sock = st["sock"]
            data = sock.recv(1 << 20)
            if not data:
                raise SystemExit("fill: the server closed a connection")
            buf = st["carry"] + data
            last = 0
            for m in STATUS_RE.finditer(buf):
                code = m.group(1).decode()
                statuses[code] = statuses.get(code, 0) + 1
                st["done"] += 1
                last = m.end()
            # A status line cut by the end of this read is matched in the next one: keep the
            # bytes after the last match, at most one status line short of a match.
            st["carry"] = buf[max(last, len(buf) - 12) :]
            if st["done"] >= st["quota"]:
                sel.unregister(sock)
                sock.close()
                del state[key.fd]
                continue
            room = min(depth - (st["sent"] - st["done"]), st["quota"] - st["sent"])
            if room > 0:
                sock.sendall(request * room)
                st["sent"] += room
    out.put(statuses)


def cmd_fill(a):
    body = make_body(a.body_bytes)
    request = (
        f"POST {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
        "User-Agent: portcullis-bench-pull\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out = mp.Queue()
    shares = [a.jobs // a.procs + (1 if i < a.jobs % a.procs else 0) for i in range(a.procs)]
    start = time.monotonic()
    procs = [
        mp.Process(target=fill_worker, args=("127.0.0.1", a.port, request, n, a.conns, a.depth, out))
        for n in shares
        if n > 0
    ]
    for p in procs:
        p.start()
    statuses = {}
    for _ in procs:
        for code, n in out.get().items():
            statuses[code] = statuses.get(code, 0) + n
    for p in procs:
        p.join()
    seconds = time.monotonic() - start
    ok = statuses.get("202", 0)
    result(
        accepted=ok,
        seconds=f"{seconds:.3f}",
        rps=f"{ok / seconds:.0f}",
        body_bytes=len(body),
        statuses=",".join(f"{k}:{v}" for k, v in sorted(statuses.items())) or "none",
    )


# ---- wait -----------------------------------------------------------------------------------


def healthz(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return doc


def cmd_wait(a):
    start = time.monotonic()
    queued = -1
    while time.monotonic() - start < a.timeout:
        r = healthz(a.port)["routes"][a.route]
        queued = r["queued"]
        if queued >= a.jobs:
            result(queued=queued, leased=r["leased"], seconds=f"{time.monotonic() - start:.3f}")
            return
        time.sleep(0.05)
    print(f"error: {queued} of {a.jobs} jobs queued after {a.timeout}s", file=sys.stderr)
    sys.exit(1)


# ---- drain ----------------------------------------------------------------------------------


def cpu_ticks(pid):
    """utime + stime of the process (all threads), in clock ticks, and per thread the
    nanoseconds on a CPU and waiting on a run queue (/proc/PID/task/TID/schedstat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            threads[tid] = schedstat(f"/proc/{pid}/task/{tid}/schedstat")
        except OSError:
            pass
    return int(fields[11]) + int(fields[12]), threads


def schedstat(path="/proc/thread-self/schedstat"):
    with open(path) as f:
        run, wait, _ = f.read().split()
    return int(run), int(wait)


def consumer(port, token, route, batch, visibility, go, out):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    lease_body = json.dumps({"route": route, "max": batch, "visibility": visibility}).encode()
    jobs = leases = acks = failed = 0
    lease_s = ack_s = 0.0
    lease_bytes = 0
    errors = []
    go.wait()
    cpu0 = time.process_time()
    wait0 = schedstat()[1]
    while True:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/lease", lease_body, headers)
        r = conn.getresponse()
        data = r.read()
        t1 = time.perf_counter()
        lease_s += t1 - t0
        leases += 1
        if r.status != 200:
            errors.append(f"lease:{r.status}")
            break
        lease_bytes += len(data)
        ids = ID_RE.findall(data)
        if not ids:
            break
        ack_body = b'{"ids":["' + b'","'.join(ids) + b'"]}'
        conn.request("POST", "/v1/ack", ack_body, headers)
        r = conn.getresponse()
        answer = r.read()
        ack_s += time.perf_counter() - t1
        acks += 1
        if r.status != 200:
            errors.append(f"ack:{r.status}")
            break
        if answer.endswith(b'"failed":[]}'):
            jobs += len(ids)
        else:
            doc = json.loads(answer)
            jobs += len(doc["settled"])
            failed += len(doc["failed"])
    cpu = time.process_time() - cpu0
    runq = (schedstat()[1] - wait0) / 1e9
    conn.close()
    out.put(
        dict(jobs=jobs, leases=leases, acks=acks, failed=failed, lease_s=lease_s, ack_s=ack_s,
             lease_bytes=lease_bytes, cpu=cpu, runq=runq, end=time.monotonic(), errors=errors)
    )


def cmd_drain(a):
    go = mp.Event()
    out = mp.Queue()
    procs = [
        mp.Process(target=consumer, args=(a.port, a.token, a.route, a.batch, a.visibility, go, out))
        for _ in range(a.consumers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)  # every consumer connected and waiting on the event
    hz = os.sysconf("SC_CLK_TCK")
    cpu_before, threads_before = cpu_ticks(a.pid)
    if a.started_file:
        open(a.started_file, "w").close()
    start = time.monotonic()
    go.set()
    stats = [out.get() for _ in procs]
    end = max(s["end"] for s in stats)
    cpu_after, threads_after = cpu_ticks(a.pid)
    for p in procs:
        p.join()
    seconds = end - start
    jobs = sum(s["jobs"] for s in stats)
    leases = sum(s["leases"] for s in stats)
    acks = sum(s["acks"] for s in stats)
    server_cpu = (cpu_after - cpu_before) / hz
    # The control plane is the thread that ran most during the drain.
    deltas = [
        (run - threads_before.get(t, (0, 0))[0], wait - threads_before.get(t, (0, 0))[1])
        for t, (run, wait) in threads_after.items()
    ]
    busiest_run, busiest_wait = max(deltas)
    server_runq = sum(w for _, w in deltas) / 1e9
    client_cpu = sum(s["cpu"] for s in stats)
    errors = [e for s in stats for e in s["errors"]]
    result(
        jobs=jobs,
        seconds=f"{seconds:.3f}",
        jobs_per_s=f"{jobs / seconds:.0f}",
        server_cpu_s=f"{server_cpu:.2f}",
        thread_cpu_s=f"{busiest_run / 1e9:.2f}",
        thread_runq_s=f"{busiest_wait / 1e9:.2f}",
        server_runq_s=f"{server_runq:.2f}",
        client_cpu_s=f"{client_cpu:.2f}",
        client_runq_s=f"{sum(s['runq'] for s in stats):.2f}",
        leases=leases,
        acks=acks,
        failed=sum(s["failed"] for s in stats),
        lease_ms=f"{1000 * sum(s['lease_s'] for s in stats) / max(leases, 1):.3f}",
        ack_ms=f"{1000 * sum(s['ack_s'] for s in stats) / max(acks, 1):.3f}",
        lease_kib=f"{sum(s['lease_bytes'] for s in stats) / max(leases, 1) / 1024:.1f}",
        errors=",".join(errors) or "none",
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--path", required=True)
    f.add_argument("--jobs", type=int, required=True)
    f.add_argument("--procs", type=int, default=2)
    f.add_argument("--conns", type=int, default=32, help="connections per process")
    f.add_argument("--depth", type=int, default=4)
    f.add_argument("--body-bytes", type=int, default=1024)
    w = sub.add_parser("wait")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--route", required=True)
    w.add_argument("--jobs", type=int, required=True)
    w.add_argument("--timeout", type=float, default=120)
    d = sub.add_parser("drain")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--route", required=True)
    d.add_argument("--batch", type=int, default=100)
    d.add_argument("--consumers", type=int, default=2)
    d.add_argument("--visibility", default="10m")
    d.add_argument("--pid", type=int, required=True, help="the server, for its CPU times")
    d.add_argument("--started-file", help="touched when the consumers are released")
    d.add_argument("--token", default=os.environ.get("BENCH_PULL_TOKEN"))
    a = p.parse_args()
    {"fill": cmd_fill, "wait": cmd_wait, "drain": cmd_drain}[a.cmd](a)


if __name__ == "__main__":
    main()
