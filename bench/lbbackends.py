"""Backends for the balancing scenario: many HTTP/1.1 ports served by one trio process.

Each backend mostly sleeps (its latency) and answers 200 or, for a share of its
requests, 500; a schedule changes a backend's latency during a window of time (the
slow instance of performance.md 6.5).  One process serves every port, so eleven
backends cost one Python process on the loader's core.

    python -m bench.lbbackends SPEC.json

SPEC: ``{"control": PORT, "backends": [{"port": P, "latency_ms": 10, "sigma": 0.05,
"success": 1.0}, ...], "phases": [{"backend": I, "from": 15, "to": 45, "latency_ms":
200}]}``.  A backend's latency is log-normal around ``latency_ms`` (``sigma`` is the
spread of its logarithm; 0 means fixed).  The phases are in seconds after the start.

The control port answers ``GET /start`` (the clock of the phases starts now, the counts
are reset; the loader calls it just before its first request) and ``GET /stats``
(requests and 5xx answered by each backend, per second since the start, as JSON).
"""

from __future__ import annotations

import functools
import json
import math
import random
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httptools
import trio

HOST = "127.0.0.1"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
ERR = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n"
    b"Content-Type: text/plain\r\n\r\nerror"
)


class _Requests:
    """httptools callbacks: count the complete requests and remember their paths."""

    __slots__ = ("parser", "paths", "url")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.paths: list[bytes] = []
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        self.paths.append(self.url)
        self.url = b""


class Backends:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.backends: list[dict[str, Any]] = spec["backends"]
        self.phases: list[dict[str, Any]] = spec.get("phases", [])
        self.rnd = random.Random(spec.get("seed", 1))
        self.t0 = trio.current_time()
        self.started = False  # the phases apply once /start was called
        self.received: list[list[int]] = [[] for _ in self.backends]
        self.errors: list[list[int]] = [[] for _ in self.backends]

    def start(self) -> None:
        self.t0 = trio.current_time()
        self.started = True
        self.received = [[] for _ in self.backends]
        self.errors = [[] for _ in self.backends]

    def _count(self, series: list[int], second: int) -> None:
        while len(series) <= second:
            series.append(0)
        series[second] += 1

    def behaviour(self, i: int) -> tuple[float, bool]:
        """The latency (s) of backend ``i``'s next answer, and whether it succeeds."""
        b = self.backends[i]
        latency = float(b["latency_ms"])
        success = float(b.get("success", 1.0))
        now = trio.current_time() - self.t0 if self.started else -1.0
        for p in self.phases:
            if p["backend"] == i and p["from"] <= now < p["to"]:
                latency = float(p.get("latency_ms", latency))
                success = float(p.get("success", success))
        sigma = float(b.get("sigma", 0.0))
        if sigma and latency:
            latency *= math.exp(self.rnd.gauss(0.0, sigma))
        return latency / 1000.0, self.rnd.random() < success

    async def serve_backend(self, i: int, conn: socket.socket) -> None:
        req = _Requests()
        while True:
            await trio.lowlevel.wait_readable(conn)
            data = conn.recv(65536)
            if not data:
                return
            req.parser.feed_data(data)
            while req.paths:
                req.paths.pop(0)
                second = int(trio.current_time() - self.t0)
                self._count(self.received[i], second)
                delay, ok = self.behaviour(i)
                if delay > 0:
                    await trio.sleep(delay)
                else:
                    await trio.lowlevel.checkpoint()
                if not ok:
                    self._count(self.errors[i], second)
                await send_all(conn, OK if ok else ERR)

    async def serve_control(self, conn: socket.socket) -> None:
        req = _Requests()
        while True:
            await trio.lowlevel.wait_readable(conn)
            data = conn.recv(65536)
            if not data:
                return
            req.parser.feed_data(data)
            while req.paths:
                path = req.paths.pop(0)
                if path.startswith(b"/start"):
                    self.start()
                    body = b"started\n"
                else:
                    body = json.dumps(
                        {
                            "seconds": trio.current_time() - self.t0,
                            "ports": [b["port"] for b in self.backends],
                            "received": self.received,
                            "errors": self.errors,
                        }
                    ).encode()
                await send_all(
                    conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )


async def send_all(conn: socket.socket, data: bytes) -> None:
    while data:
        try:
            data = data[conn.send(data) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(conn)


Handler = Callable[[socket.socket], Awaitable[None]]


async def _serve_one(handler: Handler, conn: socket.socket) -> None:
    try:
        await handler(conn)
    except (OSError, httptools.HttpParserError):
        pass
    finally:
        trio.lowlevel.notify_closing(conn)
        conn.close()


async def serve(
    port: int, handler: Handler, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Accept connections on 127.0.0.1:``port``; each is served by ``handler`` in its task.

    Plain non-blocking sockets and ``trio.lowlevel.wait_readable``: the cheapest way to
    wait on trio, so that the backends leave the loader's core to the loader.
    """
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, port))
    lsock.listen(1024)
    lsock.setblocking(False)
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            await trio.lowlevel.wait_readable(lsock)
            while True:
                try:
                    conn, _ = lsock.accept()
                except BlockingIOError:
                    break
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                nursery.start_soon(_serve_one, handler, conn)


async def main(spec: dict[str, Any]) -> None:
    backends = Backends(spec)
    async with trio.open_nursery() as nursery:
        for i, b in enumerate(backends.backends):
            await nursery.start(serve, b["port"], functools.partial(backends.serve_backend, i))
        await nursery.start(serve, spec["control"], backends.serve_control)
        print("ready", flush=True)


if __name__ == "__main__":
    trio.run(main, json.loads(Path(sys.argv[1]).read_text()))
