#!/usr/bin/env python3
"""An application for the delivery tests to push to: a threaded HTTP/1.1 server (stdlib only)
that logs every request it gets and answers by a plan the test sets and changes while it runs.

    receiver.py --port-file F --log F [--control-port-file F] [--plan JSON]
                [--tls-cert PEM --tls-key PEM]

It binds 127.0.0.1:0 (TLS with --tls-cert/--tls-key) and writes the port the kernel gave to
--port-file once it accepts connections. A second listener, plain HTTP on another kernel port
written to --control-port-file, takes the control calls, so that the delivery port can go down
(connection refused) and come back while the test still steers it. `/__control` is served on
both ports and is never logged as a request.

Log (--log): one JSON object a line, appended and flushed as it happens:
  {"kind":"request","seq":N,"conn":C,"t":RECEIVED,"t_answer":T,"method":"POST","path":"/x",
   "headers":[[name,value],...],"body_b64":"...","status":S|null,"action":{...}}
      seq counts requests in the order they were received (their head was read); t and t_answer
      are Unix seconds (float); status is what was answered, null when the connection was closed
      instead (the "close" action, or the client gone during a stall).
  {"kind":"tls_error","conn":C,"t":T,"error":"..."}   a TLS handshake that failed
Request lines are written when the answer is (or the close happens), so a stalled request is
logged after a later one: order by seq or t, not by line.

A plan (JSON):
  {"default": PATHPLAN, "paths": {"/path": PATHPLAN, ...}}
A request's path (without the query) picks its PATHPLAN, else "default" ({"then": {}} answers
200). A bare PATHPLAN given to --plan or to {"plan": ...} is taken as "default".
  PATHPLAN = {"first": [ACTION, ...], "count": "job" | "all", "then": ACTION,
              "random": {"p": 0.3, "seed": 7, "action": ACTION}}
  The k-th request (counted per Portcullis-Job-Id with "count":"job", the default, or over the
  path with "all") gets first[k-1] while there is one, then "then". With "random", a request
  past "first" gets "action" with probability p instead of "then"; the draw is a hash of the
  seed, the job id and the request's number for that job, so it does not depend on the order
  in which threads run, and the same job ids give the same draws.
  ACTION = {"status": 200, "stall": SECONDS, "retry_after": "2", "close": false,
            "headers": {"Name": "value"}, "body": "text"}
  All keys are optional: status 200, no stall, no Retry-After, a body of "ok\n". "stall" waits
  before answering (or before closing); "close" shuts the connection without answering.

Control calls (POST /__control, a JSON object; the answer is the state, as GET /__control):
  {"plan": PLAN}                   replace the plan and reset every counter
  {"path": "/x", "plan": PATHPLAN} replace one path's plan and reset its counters
  {"listen": false}                stop listening on the delivery port and close every open
                                   delivery connection: connections are refused until
  {"listen": true}                 listen again, on the same port
  GET /__control -> {"listening": bool, "port": N, "requests": N,
                     "by_status": {"200": N, ..., "closed": N}}

SIGTERM (or SIGINT) stops both listeners and exits 0 once the log is flushed.
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

_lock = threading.Lock()
_log_file = None
_plan = {"default": {"then": {}}, "paths": {}}
_counters = {}  # (path plan key, count key) -> requests so far
_seq = 0
_conn = 0
_by_status = {}
_listening = False
_delivery = None  # the delivery server, None while down
_delivery_port = 0
_open = set()  # delivery connections' sockets, closed when the port goes down
_tls_context = None
_stop = threading.Event()


def _write(entry):
    line = json.dumps(entry, separators=(",", ":")) + "\n"
    with _lock:
        _log_file.write(line)
        _log_file.flush()


def _normalise(plan):
    """A full plan from what a caller gave: {"default", "paths"} or a bare PATHPLAN."""
    if not isinstance(plan, dict):
        raise ValueError("a plan is a JSON object")
    if "default" in plan or "paths" in plan:
        full = {"default": plan.get("default", {"then": {}}), "paths": dict(plan.get("paths", {}))}
    else:
        full = {"default": plan, "paths": {}}
    for p in [full["default"], *full["paths"].values()]:
        _check_pathplan(p)
    return full


def _check_pathplan(p):
    if not isinstance(p, dict):
        raise ValueError("a path's plan is a JSON object")
    unknown = set(p) - {"first", "count", "then", "random"}
    if unknown:
        raise ValueError(f"unknown plan keys {sorted(unknown)}")
    if p.get("count", "job") not in ("job", "all"):
        raise ValueError('"count" is "job" or "all"')
    for a in [*p.get("first", []), p.get("then", {}), p.get("random", {}).get("action", {})]:
        unknown = set(a) - {"status", "stall", "retry_after", "close", "headers", "body"}
        if unknown:
            raise ValueError(f"unknown action keys {sorted(unknown)}")


def _choose(path, job_id):
    """The action for this request, and its number for its counter (1-based)."""
    with _lock:
        key = path if path in _plan["paths"] else None
        p = _plan["paths"][path] if key is not None else _plan["default"]
        count_key = (key, job_id if p.get("count", "job") == "job" else None)
        n = _counters.get(count_key, 0) + 1
        _counters[count_key] = n
    first = p.get("first", [])
    if n <= len(first):
        return first[n - 1], n
    r = p.get("random")
    if r:
        digest = hashlib.sha256(f"{r.get('seed', 0)}|{job_id}|{n}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 < float(r.get("p", 0)):
            return r.get("action", {"status": 500}), n
    return p.get("then", {}), n


def _state():
    with _lock:
        return {
            "listening": _listening,
            "port": _delivery_port,
            "requests": _seq,
            "by_status": dict(_by_status),
        }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "portcullis-test-receiver"
    sys_version = ""
    control_only = False

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def setup(self):
        super().setup()
        global _conn
        with _lock:
            _conn += 1
            self.conn_id = _conn
            if not self.control_only:
                _open.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with _lock:
                _open.discard(self.connection)

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _control(self, body):
        try:
            if self.command == "POST":
                req = json.loads(body or b"{}")
                if "path" in req:
                    _check_pathplan(req["plan"])
                    with _lock:
                        _plan["paths"][req["path"]] = req["plan"]
                        for k in [k for k in _counters if k[0] == req["path"]]:
                            del _counters[k]
                elif "plan" in req:
                    full = _normalise(req["plan"])
                    with _lock:
                        _plan.clear()
                        _plan.update(full)
                        _counters.clear()
                if req.get("listen") is False:
                    _go_down()
                elif req.get("listen") is True:
                    _go_up()
            self._answer(200, json.dumps(_state()).encode() + b"\n", [("Content-Type", "application/json")])
        except (ValueError, KeyError, TypeError, OSError) as e:
            self._answer(400, json.dumps({"error": str(e)}).encode() + b"\n")

    def _handle(self):
        global _seq
        t = time.time()
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if path == "/__control":
            self._control(body)
            return
        if self.control_only:
            self._answer(404, b"control port: /__control only\n")
            return
        with _lock:
            _seq += 1
            seq = _seq
        job_id = self.headers.get("Portcullis-Job-Id", "")
        action, _ = _choose(path, job_id)
        status = None
        try:
            if action.get("stall"):
                # In slices, so that SIGTERM does not wait for a long stall.
                end = time.monotonic() + float(action["stall"])
                while not _stop.is_set() and time.monotonic() < end:
                    time.sleep(min(0.05, max(0.0, end - time.monotonic())))
            if action.get("close"):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            else:
                code = int(action.get("status", 200))
                headers = [("Content-Type", "text/plain")]
                if action.get("retry_after") is not None:
                    headers.append(("Retry-After", str(action["retry_after"])))
                headers += list(action.get("headers", {}).items())
                self._answer(code, action.get("body", "ok\n").encode(), headers)
                status = code
        except OSError:
            # The client went away (its timeout during a stall): nothing was answered.
            self.close_connection = True
            status = None
        with _lock:
            key = "closed" if status is None else str(status)
            _by_status[key] = _by_status.get(key, 0) + 1
        _write({
            "kind": "request",
            "seq": seq,
            "conn": self.conn_id,
            "t": t,
            "t_answer": time.time(),
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_b64": base64.b64encode(body).decode(),
            "status": status,
            "action": action,
        })

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET


class ControlHandler(Handler):
    control_only = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def finish_request(self, request, client_address):
        # The TLS handshake in the connection's own thread, never in the accept loop.
        if _tls_context is not None and self.RequestHandlerClass is Handler:
            try:
                request.settimeout(10)
                request = _tls_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError) as e:
                _write({"kind": "tls_error", "conn": 0, "t": time.time(), "error": str(e)})
                try:
                    request.close()
                except OSError:
                    pass
                return
        super().finish_request(request, client_address)


def _serve(server):
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def _go_down():
    global _delivery, _listening
    with _lock:
        server, _delivery = _delivery, None
        _listening = False
        conns = list(_open)
    if server is not None:
        server.shutdown()
        server.server_close()
    for c in conns:
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _go_up():
    global _delivery, _listening, _delivery_port
    with _lock:
        if _delivery is not None:
            return
    server = Server(("127.0.0.1", _delivery_port), Handler)
    with _lock:
        _delivery = server
        _delivery_port = server.server_address[1]
        _listening = True
    _serve(server)


def _write_port(path, port):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def main():
    global _log_file, _tls_context, _plan
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--control-port-file")
    ap.add_argument("--plan", default="{}")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    try:
        _plan = _normalise(json.loads(args.plan) or {"then": {}})
    except ValueError as e:
        ap.error(f"--plan: {e}")
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.tls_cert:
        _tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _tls_context.load_cert_chain(args.tls_cert, args.tls_key)
    _log_file = open(args.log, "a", encoding="utf-8")

    def stop(*_):
        _stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _go_up()
    if args.control_port_file:
        control = Server(("127.0.0.1", 0), ControlHandler)
        _serve(control)
        _write_port(args.control_port_file, control.server_address[1])
    _write_port(args.port_file, _delivery_port)
    while not _stop.wait(0.2):
        pass
    _go_down()
    with _lock:
        _log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
