"""The "physical limit": a minimal HTTP/1.1 pass-through proxy on trio and httptools.

performance.md section 3.3's trio+httptools forwarder: one upstream keep-alive
connection per downstream connection, opened when the downstream connects; request
and response bytes are passed through unchanged, httptools only finds where each
message ends.  No routing, no headers added, no metrics, no load balancing: whatever
linkpy does per request beyond this is the price of being a router.

    python -m bench.passthrough --listen 127.0.0.1:14150 --upstream 127.0.0.1:18080

``--raw`` is an experiment for the profile (not the baseline): the same forwarder on
the bare sockets, trying each system call first and waiting for readiness only when it
would block, instead of trio's ``SocketStream`` (which enters a context manager and
passes through the scheduler at every ``send_all`` and ``receive_some``).
"""

from __future__ import annotations

import argparse
import socket
from functools import partial

import httptools
import trio


class _Ends:
    """Counts the messages a parser has completed."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = 0

    def on_message_complete(self) -> None:
        self.done += 1


async def _serve(upstream: tuple[str, int], down: trio.SocketStream) -> None:
    try:
        up = await trio.open_tcp_stream(*upstream)
    except OSError:
        await down.aclose()
        return
    requests, responses = _Ends(), _Ends()
    req_parser = httptools.HttpRequestParser(requests)
    resp_parser = httptools.HttpResponseParser(responses)
    try:
        async with down, up:
            while True:
                data = await down.receive_some(65536)
                if not data:
                    return
                req_parser.feed_data(data)
                await up.send_all(data)
                while responses.done < requests.done:
                    data = await up.receive_some(65536)
                    if not data:
                        return
                    resp_parser.feed_data(data)
                    await down.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, httptools.HttpParserError):
        return


async def _recv(s: socket.socket) -> bytes:
    while True:
        try:
            return s.recv(65536)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(s)


async def _send(s: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[s.send(view) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(s)


async def _serve_raw(upstream: tuple[str, int], stream: trio.SocketStream) -> None:
    down = socket.socket(fileno=stream.socket.detach())
    try:
        up = await trio.to_thread.run_sync(socket.create_connection, upstream)
    except OSError:
        down.close()
        return
    requests, responses = _Ends(), _Ends()
    req_parser = httptools.HttpRequestParser(requests)
    resp_parser = httptools.HttpResponseParser(responses)
    with down, up:
        for s in (down, up):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                data = await _recv(down)
                if not data:
                    return
                req_parser.feed_data(data)
                await _send(up, data)
                while responses.done < requests.done:
                    data = await _recv(up)
                    if not data:
                        return
                    resp_parser.feed_data(data)
                    await _send(down, data)
        except (OSError, httptools.HttpParserError):
            return


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:14150")
    p.add_argument("--upstream", default="127.0.0.1:18080")
    p.add_argument("--raw", action="store_true", help="the bare-socket experiment")
    args = p.parse_args()
    host, port = _addr(args.listen)
    handler = partial(_serve_raw if args.raw else _serve, _addr(args.upstream))
    trio.run(partial(trio.serve_tcp, handler, port, host=host, backlog=4096))


if __name__ == "__main__":
    main()
