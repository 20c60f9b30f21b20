"""An open-loop HTTP/1.1 load generator: a fixed rate, a timeout per request.

    python -m bench.openloop --target 127.0.0.1:14140 [--target ...] --rate 1000
        --seconds 60 --timeout 0.1 --host web --out results.json [--start URL]

Request ``i`` is due at ``t0 + i / rate`` and is sent then, whatever happened to the
others (open loop: a stalled server does not slow the load down and hide its stall,
performance.md 6.2).  Its latency is measured from the time it was due, and it fails
when no complete response has arrived ``timeout`` seconds after that time.

Connections are pooled per target (most recently used first); a request takes an idle
one or opens a new one.  A connection whose request timed out is never given to another
request while that request's answer is due: by default (``--on-timeout drain``) it reads
the late answer in the background and then goes back to the pool, so that timeouts do
not make the server accept a new connection for every abandoned request (which costs a
Python server more than the request itself); ``--on-timeout close`` closes it at once.
A connection that failed is closed.  With several targets the requests go to them in
turn (round robin, like DNS round robin in front of the backends).

``--start URL``: GET this URL just before the first request (the backends of the
balancing scenario start their clock then).  The output is JSON with one entry per
request in each list: ``due_us`` (after t0), ``latency_us`` (from due time to the end of
the response, or to the timeout), ``lag_us`` (how late it was sent), ``status`` (the
HTTP status; 0: timed out; -1: connection error; -2: the connection closed), ``target``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import urllib.request
from pathlib import Path

import httptools
import trio

TIMEOUT = 0
ERROR = -1
CLOSED = -2
#: how long a timed-out request's connection waits for its late response (drain)
DRAIN_LIMIT = 10.0


class _Response:
    __slots__ = ("parser", "done", "keep_alive")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done = False
        self.keep_alive = False

    def on_headers_complete(self) -> None:
        # (llhttp forgets keep-alive once the message is complete: ask here)
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.done = True


class Target:
    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.addr = (host, port)
        self.request = request
        self.idle: list[socket.socket] = []
        self.opened = 0


async def _connect(addr: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(addr)
        if err == errno.EINPROGRESS:
            await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
    except BaseException:
        _close(sock)
        raise
    return sock


async def _read(sock: socket.socket, resp: _Response) -> int:
    """Read until ``resp`` is complete: its status, or CLOSED."""
    while not resp.done:
        await trio.lowlevel.wait_readable(sock)
        data = sock.recv(65536)
        if not data:
            return CLOSED
        resp.parser.feed_data(data)
    return int(resp.parser.get_status_code())


def _close(sock: socket.socket) -> None:
    trio.lowlevel.notify_closing(sock)
    sock.close()


class Load:
    """Plain non-blocking sockets and ``trio.lowlevel.wait_readable``: the cheapest way
    to wait on trio, so that one core can send the load and still be on time."""

    def __init__(
        self, targets: list[Target], rate: float, seconds: float, timeout: float, drain: bool
    ) -> None:
        self.targets = targets
        self.drain = drain
        self.drained = 0
        self.nursery: trio.Nursery | None = None
        self.rate = rate
        self.timeout = timeout
        self.total = round(rate * seconds)
        self.due = [0] * self.total
        self.latency = [0] * self.total
        self.lag = [0] * self.total
        self.status = [0] * self.total
        self.target = [0] * self.total

    async def one(self, i: int, due: float, t0: float) -> None:
        k = i % len(self.targets)
        tgt = self.targets[k]
        self.target[i] = k
        self.due[i] = int((due - t0) * 1e6)
        self.lag[i] = int((trio.current_time() - due) * 1e6)
        sock: socket.socket | None = None
        resp: _Response | None = None
        status = TIMEOUT
        with trio.move_on_at(due + self.timeout):
            try:
                if tgt.idle:
                    sock = tgt.idle.pop()
                else:
                    sock = await _connect(tgt.addr)
                    tgt.opened += 1
                sock.send(tgt.request)  # a few bytes into an empty buffer: never short
                resp = _Response()
                status = await _read(sock, resp)
                if status > 0 and resp.keep_alive:
                    tgt.idle.append(sock)
                    sock = None
            except (OSError, httptools.HttpParserError):
                status = ERROR
        self.latency[i] = int((trio.current_time() - due) * 1e6)
        self.status[i] = status
        if sock is None:
            return
        if status == TIMEOUT and resp is not None and self.nursery is not None:
            self.nursery.start_soon(self._drain, tgt, sock, resp)
        else:
            _close(sock)

    async def _drain(self, tgt: Target, sock: socket.socket, resp: _Response) -> None:
        """Read the late response of a timed-out request, then pool the connection."""
        self.drained += 1
        with trio.move_on_after(DRAIN_LIMIT):
            try:
                if await _read(sock, resp) > 0 and resp.keep_alive:
                    tgt.idle.append(sock)
                    return
            except (OSError, httptools.HttpParserError):
                pass
        _close(sock)

    async def run(self, start_url: str | None) -> None:
        if start_url:
            await trio.to_thread.run_sync(lambda: urllib.request.urlopen(start_url).read())
        t0 = trio.current_time()
        rate = self.rate
        async with trio.open_nursery() as nursery:
            self.nursery = nursery if self.drain else None
            for i in range(self.total):
                due = t0 + i / rate
                if trio.current_time() < due:
                    await trio.sleep_until(due)
                nursery.start_soon(self.one, i, due, t0)

    def json(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "timeout_s": self.timeout,
            "targets": [f"{t.addr[0]}:{t.addr[1]}" for t in self.targets],
            "connections_opened": [t.opened for t in self.targets],
            "drained": self.drained,
            "due_us": self.due,
            "latency_us": self.latency,
            "lag_us": self.lag,
            "status": self.status,
            "target": self.target,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--target", action="append", required=True, help="HOST:PORT (repeatable)")
    ap.add_argument("--rate", type=float, required=True, help="requests per second")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--timeout", type=float, required=True, help="per request, in seconds")
    ap.add_argument("--host", default="web", help="the Host header")
    ap.add_argument("--path", default="/")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--start", help="URL to GET just before the first request")
    ap.add_argument(
        "--on-timeout",
        choices=("drain", "close"),
        default="drain",
        help="what becomes of the connection of a timed-out request (default: drain)",
    )
    args = ap.parse_args()
    request = b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (args.path.encode(), args.host.encode())
    targets = []
    for t in args.target:
        host, port = t.rsplit(":", 1)
        targets.append(Target(socket.gethostbyname(host), int(port), request))
    load = Load(targets, args.rate, args.seconds, args.timeout, args.on_timeout == "drain")
    trio.run(load.run, args.start)
    text = json.dumps(load.json(), separators=(",", ":"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
