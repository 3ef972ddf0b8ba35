#!/usr/bin/env python3
"""A TCP proxy in front of nats-server that breaks one exchange, for the NATS sink's fault tests.

    nats_proxy.py --upstream PORT --port-file FILE --fault FAULT [--hold FILE]

It listens on a port the kernel picks (written to FILE) and passes every connection through to
nats-server on 127.0.0.1:PORT, except for one fault, done once:

  cut-control   the first JetStream publish acknowledgement (a MSG or HMSG to an _INBOX subject,
  cut-payload   the sink's reply inbox) is passed only in part: cut inside its control line, or
                after the control line inside its payload; then both sides are closed. Everything
                before it passes whole, everything on later connections passes through.
  bad-info      the first connection is a fake server's: an INFO whose JSON is cut short,
  long-line     a valid INFO then, after the client's CONNECT ... PING, a control line of 6000
                bytes (the sink's limit is 4096),
  garbage-op    a valid INFO then, after the client's PING, an operation NATS does not have;
                then it closes. Later connections pass through.

With --hold FILE, the fake server waits for FILE to exist before it sends its faulty bytes (the
test posts its job first, so that the job is in flight on the faulty connection).

It prints one line per event on stderr: "connection N", "cut FAULT SUBJECT ACK" (the
acknowledgement's payload as nats-server sent it), "fake FAULT", "ack SUBJECT ACK" for each
acknowledgement passed after the fault; the test reads them. SIGTERM stops it.
"""
import argparse
import asyncio
import os
import signal
import sys

CUTS = ("cut-control", "cut-payload")
FAKES = ("bad-info", "long-line", "garbage-op")
FAKE_INFO = (b'INFO {"server_id":"NFAKE","server_name":"fake","version":"2.9.0","proto":1,'
             b'"headers":true,"max_payload":1048576,"auth_required":true}\r\n')


def say(text):
    print(text, file=sys.stderr, flush=True)


class Proxy:
    def __init__(self, upstream, fault, hold):
        self.upstream = upstream
        self.fault = fault
        self.hold = hold
        self.armed = True
        self.connections = 0

    async def handle(self, reader, writer):
        self.connections += 1
        say(f"connection {self.connections}")
        try:
            if self.armed and self.fault in FAKES:
                await self.fake(reader, writer)
            else:
                await self.pass_through(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def fake(self, reader, writer):
        if self.hold:
            while not os.path.exists(self.hold):
                await asyncio.sleep(0.05)
        if self.fault == "bad-info":
            # A client sends nothing before INFO: nothing is left unread when the socket closes.
            out = b'INFO {"server_id":"NFAKE","headers":true,"max_payload":1048576\r\n'
        else:
            writer.write(FAKE_INFO)
            await writer.drain()
            # CONNECT, SUB, PING: all of it read, so that closing sends no reset ahead of the data.
            seen = b""
            while not seen.endswith(b"PING\r\n"):
                data = await reader.read(65536)
                if not data:
                    return  # the client gave up before the fault: it stays armed
                seen += data
            if self.fault == "long-line":
                out = b"PONG" + b"x" * 6000 + b"\r\n"
            else:
                out = b"HELLO there\r\n"
        writer.write(out)
        await writer.drain()
        self.armed = False
        say(f"fake {self.fault}")
        # A moment for the bytes to be read before the close.
        await asyncio.sleep(0.2)

    async def pass_through(self, reader, writer):
        ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def to_server():
            while data := await reader.read(65536):
                uwriter.write(data)
                await uwriter.drain()

        async def to_client():
            buf = b""
            while data := await ureader.read(65536):
                buf += data
                while True:
                    frame, cut = self.next_frame(buf)
                    if frame is None:
                        break
                    buf = buf[len(frame):]
                    if cut is not None:
                        writer.write(cut)
                        await writer.drain()
                        return  # closes both sides
                    writer.write(frame)
                await writer.drain()

        tasks = [asyncio.create_task(t()) for t in (to_server, to_client)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            uwriter.transport.abort()
            writer.transport.abort()

    def next_frame(self, buf):
        """(the first whole frame of buf or None, the bytes to send instead when it is cut)."""
        eol = buf.find(b"\r\n")
        if eol < 0:
            return None, None
        line = buf[:eol]
        words = line.split()
        op = words[0].upper() if words else b""
        if op not in (b"MSG", b"HMSG"):
            return buf[:eol + 2], None
        total = int(words[-1])
        end = eol + 2 + total + 2
        if len(buf) < end:
            return None, None
        frame = buf[:end]
        subject = words[1].decode()
        if not subject.startswith("_INBOX."):
            return frame, None
        head = int(words[-2]) if op == b"HMSG" else 0
        ack = frame[eol + 2 + head:end - 2].decode(errors="replace")
        if self.armed and self.fault in CUTS:
            self.armed = False
            say(f"cut {self.fault} {subject} {ack}")
            if self.fault == "cut-control":
                return frame, frame[:eol // 2]
            return frame, frame[:eol + 2 + head + (total - head) // 2]
        say(f"ack {subject} {ack}")
        return frame, None


def write_file(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--fault", choices=CUTS + FAKES, required=True)
    ap.add_argument("--hold")
    args = ap.parse_args()
    proxy = Proxy(args.upstream, args.fault, args.hold)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    write_file(args.port_file, f"{server.sockets[0].getsockname()[1]}\n")
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
