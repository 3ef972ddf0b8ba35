#!/usr/bin/env python3
"""A TCP proxy in front of redis-server that holds Redis's replies back for a while.

    redis_proxy.py --upstream PORT --port-file FILE [--delay SECONDS] [--fault FAULT]

What a client sends reaches Redis at once (so Redis stores an XADD at once); what Redis answers
reaches the client DELAY seconds later (in order). A client killed in that window has had its
entries stored without seeing the replies: the case where at-least-once delivery writes an
entry again. The proxy listens on a port the kernel picks (written to FILE).

SIGUSR1 takes the proxy "down": its connections are closed and new ones are closed as soon as
they are accepted (the client sees a connection that closes, as with a server going away).
SIGUSR2 brings it back up. FILE.state says "down" or "up" once the proxy has acted on it. The listening socket stays open throughout, so the port is never
lost to another program.

--fault FAULT breaks the reply to the first XADD through the proxy, once (the proxy follows the
commands and replies of each connection to know which reply is an XADD's); every other reply
passes as it is:
  cut-line     only the reply's first line, cut before its CRLF, then both sides are closed
  cut-bulk     the reply's first line and half of its bulk string (the entry id), then closed
  wrong-shape  the reply wrapped in an array of one (an array where the entry id is expected);
               the connection stays open
  garbage      a line that is no RESP at all ("?garbage") in its place; the connection stays open
               (the client is expected to close it)
It prints "fault FAULT REPLY" on stderr (the reply Redis sent, escaped) when it does.
"""
import argparse
import asyncio
import collections
import os
import signal
import sys
import time

FAULTS = ("cut-line", "cut-bulk", "wrong-shape", "garbage")


def resp_end(buf, pos=0):
    """The end of the RESP value starting at buf[pos], or None while it is incomplete."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None
    kind, head = buf[pos:pos + 1], buf[pos + 1:eol]
    if kind == b"$":
        n = int(head)
        if n < 0:
            return eol + 2
        return eol + 2 + n + 2 if len(buf) >= eol + 2 + n + 2 else None
    if kind == b"*":
        end = eol + 2
        for _ in range(max(0, int(head))):
            end = resp_end(buf, end)
            if end is None:
                return None
        return end
    return eol + 2


def command_name(buf, end):
    """The upper-case name of the command (an array of bulk strings) in buf[:end]."""
    first = buf.find(b"\r\n", buf.find(b"\r\n") + 2)
    name_at = first + 2
    return buf[name_at:buf.find(b"\r\n", name_at)].upper() if 0 < name_at < end else b""


class Proxy:
    def __init__(self, upstream, delay, fault=None):
        self.upstream = upstream
        self.delay = delay
        self.fault = fault
        self.up = True
        self.conns = set()

    async def handle(self, reader, writer):
        if not self.up:
            writer.close()
            return
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        conn = (writer, uwriter)
        self.conns.add(conn)
        queue = asyncio.Queue()
        # With a fault still to do: the names of the commands sent, whose replies are awaited.
        commands = collections.deque()
        sent = b""

        async def to_redis():
            nonlocal sent
            while data := await reader.read(65536):
                if self.fault:
                    sent += data
                    while (end := resp_end(sent)) is not None:
                        commands.append(command_name(sent, end))
                        sent = sent[end:]
                uwriter.write(data)
                await uwriter.drain()

        async def from_redis():
            got = b""
            while data := await ureader.read(65536):
                if self.fault or got:
                    got += data
                    data = b""
                    while self.fault and (end := resp_end(got)) is not None:
                        reply, got = got[:end], got[end:]
                        if commands and commands.popleft() == b"XADD":
                            reply, close = self.break_reply(reply)
                            if close:
                                queue.put_nowait((time.monotonic() + self.delay, data + reply))
                                queue.put_nowait((0, b""))
                                # to_client ends the connection once it has passed what is
                                # queued; ending here would end it before.
                                await asyncio.Future()
                        data += reply
                    if not self.fault:
                        data, got = data + got, b""
                if data:
                    queue.put_nowait((time.monotonic() + self.delay, data))
            queue.put_nowait((0, b""))

        async def to_client():
            while True:
                at, data = await queue.get()
                if not data:
                    return
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(t()) for t in (to_redis, from_redis, to_client)]
        try:
            # Whichever side ends or fails first ends the connection.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            self.conns.discard(conn)
            for w in conn:
                w.close()

    def break_reply(self, reply):
        """(what the client gets instead of Redis's reply to the first XADD, close after it)."""
        fault, self.fault = self.fault, None
        print(f"fault {fault} {reply!r}", file=sys.stderr, flush=True)
        eol = reply.find(b"\r\n")
        if fault == "cut-line":
            return reply[:eol], True
        if fault == "cut-bulk":
            return reply[:eol + 2 + (len(reply) - eol - 4) // 2], True
        if fault == "wrong-shape":
            return b"*1\r\n" + reply, False
        return b"?garbage\r\n", False

    def go_down(self):
        self.up = False
        for conn in list(self.conns):
            for w in conn:
                w.transport.abort()

    def go_up(self):
        self.up = True


def write_file(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--fault", choices=FAULTS)
    args = ap.parse_args()
    proxy = Proxy(args.upstream, args.delay, args.fault)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    # The state file says when a signal has been acted on.
    state = args.port_file + ".state"
    loop.add_signal_handler(signal.SIGUSR1, lambda: (proxy.go_down(), write_file(state, "down\n")))
    loop.add_signal_handler(signal.SIGUSR2, lambda: (proxy.go_up(), write_file(state, "up\n")))
    write_file(state, "up\n")
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    port = server.sockets[0].getsockname()[1]
    write_file(args.port_file, f"{port}\n")
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
