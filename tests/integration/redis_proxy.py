#!/usr/bin/env python3
"""A TCP proxy in front of redis-server that holds Redis's replies back for a while.

    redis_proxy.py --upstream PORT --port-file FILE [--delay SECONDS]

What a client sends reaches Redis at once (so Redis stores an XADD at once); what Redis answers
reaches the client DELAY seconds later (in order). A client killed in that window has had its
entries stored without seeing the replies: the case where at-least-once delivery writes an
entry again. The proxy listens on a port the kernel picks (written to FILE).

SIGUSR1 takes the proxy "down": its connections are closed and new ones are closed as soon as
they are accepted (the client sees a connection that closes, as with a server going away).
SIGUSR2 brings it back up. FILE.state says "down" or "up" once the proxy has acted on it. The listening socket stays open throughout, so the port is never
lost to another program.
"""
import argparse
import asyncio
import os
import signal
import time


class Proxy:
    def __init__(self, upstream, delay):
        self.upstream = upstream
        self.delay = delay
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

        async def to_redis():
            while data := await reader.read(65536):
                uwriter.write(data)
                await uwriter.drain()

        async def from_redis():
            while data := await ureader.read(65536):
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
    args = ap.parse_args()
    proxy = Proxy(args.upstream, args.delay)
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
