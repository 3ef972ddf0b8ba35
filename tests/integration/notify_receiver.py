#!/usr/bin/env python3
"""systemd's side of the notify protocol, for systemd_notify.sh: an AF_UNIX datagram socket that
logs every message it gets.

    notify_receiver.py --socket NAME --log FILE --server-logs DIR

NAME is a path, or an abstract name written "@name" (as $NOTIFY_SOCKET has it). Once bound it
writes "bound" to FILE.ready. Each datagram is appended to --log as one JSON object a line,
flushed at once:
  {"t": MONOTONIC_S, "fields": {"READY": "1", "MAINPID": "123", ...}, "raw": "..."}
At each READY=1 it also records what the server had done by then: "listening" (how many
"listening" lines the newest DIR/server-*.log holds: lib.sh's SERVER_LOG), "healthz" (the status of GET /healthz on the public port
those lines name, or the error) and "admin" (whether the admin port accepted a connection). At
each STOPPING=1, "alive": whether the MAINPID of the last READY=1 still runs.
"""
import argparse
import glob
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request


def listening_ports(server_logs):
    ports = {}
    logs = glob.glob(os.path.join(server_logs, "server-*.log"))
    if not logs:
        return ports
    server_log = max(logs, key=os.path.getmtime)
    try:
        with open(server_log, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.search(r'"msg":"listening","plane":"(\w+)",.*?"address":"127\.0\.0\.1:(\d+)"',
                              line)
                if m:
                    ports.setdefault(m.group(1), int(m.group(2)))
    except OSError:
        pass
    return ports


def probe(ports):
    out = {"listening": len(ports)}
    if "public" in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['public']}/healthz",
                                        timeout=1) as r:
                out["healthz"] = r.status
        except urllib.error.HTTPError as e:
            out["healthz"] = e.code
        except OSError as e:
            out["healthz"] = str(e)
    if "admin" in ports:
        try:
            socket.create_connection(("127.0.0.1", ports["admin"]), timeout=1).close()
            out["admin"] = True
        except OSError:
            out["admin"] = False
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--server-logs", required=True)
    a = p.parse_args()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + a.socket[1:] if a.socket.startswith("@") else a.socket)
    with open(a.log + ".ready", "w") as f:
        f.write("bound\n")
    main_pid = None
    with open(a.log, "a", encoding="utf-8") as log:
        while True:
            data = s.recv(65536)
            raw = data.decode("utf-8", errors="replace")
            fields = dict(l.split("=", 1) for l in raw.split("\n") if "=" in l)
            entry = {"t": time.monotonic(), "fields": fields, "raw": raw}
            if fields.get("READY") == "1":
                main_pid = fields.get("MAINPID", main_pid)
                entry.update(probe(listening_ports(a.server_logs)))
            if fields.get("STOPPING") == "1" and main_pid:
                entry["alive"] = os.path.exists(f"/proc/{main_pid}")
            log.write(json.dumps(entry) + "\n")
            log.flush()


if __name__ == "__main__":
    main()
