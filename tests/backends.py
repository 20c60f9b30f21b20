"""HTTP/1.1 backends for the tests, on h11 (an implementation independent of linkpy's).

A :class:`Backend` serves on a loopback port and answers each request with what its
``handler`` returns; it records every request it saw.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import h11
import trio


@attrs.define
class Seen:
    """A request as the backend received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    http_version: str = "1.1"

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


@attrs.define
class Reply:
    status: int = 200
    body: bytes | AsyncIterator[bytes] = b""
    headers: list[tuple[str, str]] = attrs.Factory(list)
    #: send the body chunked (no Content-Length)
    chunked: bool = False
    trailers: list[tuple[str, str]] = attrs.Factory(list)


Handler = Callable[[Seen], Awaitable[Reply]]


async def hello(name: str) -> Handler:
    async def handle(req: Seen) -> Reply:
        return Reply(200, f"{name} {req.method} {req.target}".encode())

    return handle


class Backend:
    """An h11 server; ``handler`` makes each reply (default: echo the target)."""

    def __init__(
        self,
        name: str = "backend",
        handler: Handler | None = None,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.host = host
        #: serve HTTPS with this context
        self.tls = tls
        self.handler = handler or self._default
        self.seen: list[Seen] = []
        self.port = 0
        self.connections = 0
        #: read the request body before calling the handler (else the handler gets it empty)
        self.read_body = True
        self.body_bytes = 0

    async def _default(self, req: Seen) -> Reply:
        return Reply(200, f"{self.name} {req.method} {req.target}".encode())

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        if self.tls is None:
            plain = await trio.open_tcp_listeners(0, host=self.host)
            self.port = plain[0].socket.getsockname()[1]
            task_status.started(self.port)
            await trio.serve_listeners(self._conn, plain)
        else:
            secure = await trio.open_ssl_over_tcp_listeners(0, self.tls, host=self.host)
            inner = secure[0].transport_listener
            assert isinstance(inner, trio.SocketListener)
            self.port = inner.socket.getsockname()[1]
            task_status.started(self.port)
            await trio.serve_listeners(self._conn, secure)

    async def _conn(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        try:
            while True:
                event = await self._next(conn, stream)
                if isinstance(event, h11.ConnectionClosed) or event is None:
                    return
                assert isinstance(event, h11.Request)
                seen = Seen(
                    event.method.decode(),
                    event.target.decode(),
                    [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers],
                    http_version=event.http_version.decode(),
                )
                parts: list[bytes] = []
                while True:
                    ev = await self._next(conn, stream)
                    if isinstance(ev, h11.Data):
                        self.body_bytes += len(ev.data)
                        if len(parts) < 4096:
                            parts.append(bytes(ev.data))
                    elif isinstance(ev, h11.EndOfMessage):
                        break
                    else:
                        return
                seen.body = b"".join(parts)
                self.seen.append(seen)
                reply = await self.handler(seen)
                await self._send(conn, stream, seen, reply)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _next(self, conn: h11.Connection, stream: trio.abc.Stream) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(bytes(data))
                continue
            if event is h11.PAUSED:
                return None
            return event

    async def _send(
        self, conn: h11.Connection, stream: trio.abc.Stream, req: Seen, reply: Reply
    ) -> None:
        headers = list(reply.headers)
        body = reply.body
        if isinstance(body, bytes) and not reply.chunked:
            headers.append(("Content-Length", str(len(body))))
        else:
            headers.append(("Transfer-Encoding", "chunked"))
        await stream.send_all(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        if req.method != "HEAD" and reply.status not in (204, 304):
            if isinstance(body, bytes):
                if body:
                    await stream.send_all(conn.send(h11.Data(data=body)))
            else:
                async for piece in body:
                    await stream.send_all(conn.send(h11.Data(data=piece)))
        await stream.send_all(conn.send(h11.EndOfMessage(headers=reply.trailers)))
