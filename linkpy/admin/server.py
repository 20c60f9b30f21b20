"""The admin HTTP server (default 127.0.0.1:9990).

A small HTTP/1.1 server of its own (on the same framing code as the routers) that
dispatches on the request path to handlers returning a :class:`Response`.  Request
bodies are bounded; mutating endpoints accept POST only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import attrs
import trio

from ..errors import ProtocolError
from ..proto.http1 import DATA, END, RequestHead, status_line
from ..transport.http1 import ClientClosed, ServerConnection
from ..transport.server import ConnState, TcpServer

if TYPE_CHECKING:
    from ..linker import Linker

log = logging.getLogger("linkpy.admin")

MAX_BODY = 1 << 20


@attrs.frozen
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[0] if v else default


@attrs.frozen
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, obj: Any, status: int = 200, *, pretty: bool = False) -> Response:
        text = json.dumps(
            obj, indent=2 if pretty else None, separators=None if pretty else (",", ":")
        )
        return cls(status, text.encode(), "application/json")

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode())


Handler = Callable[[Request], Awaitable[Response]]


class AdminServer:
    """Serves the admin endpoints of a :class:`~linkpy.linker.Linker`."""

    def __init__(self, linker: Linker) -> None:
        from . import handlers

        self.linker = linker
        cfg = linker.config.admin
        self.routes: dict[str, Handler] = {}
        self.prefixes: list[tuple[str, Handler]] = []
        handlers.install(self, linker)
        self.server = TcpServer(cfg.ip, cfg.port, self._connection)

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def route_prefix(self, prefix: str, handler: Handler) -> None:
        self.prefixes.append((prefix, handler))

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await self.server.serve(task_status=task_status)

    def drain(self) -> None:
        self.server.abort()

    async def _connection(self, stream: trio.SocketStream, state: ConnState) -> None:
        conn = ServerConnection(stream, peer=state.peer, local=state.local)
        try:
            while True:
                state.set_idle(True)
                try:
                    head = await conn.receive_head()
                except ProtocolError as e:
                    await conn.send(_bytes(Response.text(str(e), e.status_hint), close=True))
                    return
                if head is None:
                    return
                state.set_idle(False)
                try:
                    body = await _read_body(conn, head)
                except _TooLarge:
                    await conn.send(
                        _bytes(Response.text("request body too large", 413), close=True)
                    )
                    return
                resp = await self.dispatch(head, body)
                keep = head.keep_alive and not state.should_close
                await conn.send(_bytes(resp, close=not keep, head_only=head.method == b"HEAD"))
                if not keep:
                    return
        except ClientClosed:
            return

    async def dispatch(self, head: RequestHead, body: bytes) -> Response:
        url = urlsplit(head.target.decode("latin-1"))
        req = Request(
            method=head.method.decode(),
            path=url.path or "/",
            query=parse_qs(url.query),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers},
            body=body,
        )
        handler = self.routes.get(req.path)
        if handler is None:
            for prefix, h in self.prefixes:
                if req.path.startswith(prefix):
                    handler = h
                    break
        if handler is None:
            return Response.text(f"not found: {req.path}\n", 404)
        try:
            return await handler(req)
        except Exception as e:
            log.exception("admin handler for %s failed", req.path)
            return Response.text(f"internal error: {e}\n", 500)


class _TooLarge(Exception):
    pass


async def _read_body(conn: ServerConnection, head: RequestHead) -> bytes:
    if not head.has_body:
        if head.expect_continue:
            pass
        return b""
    if head.content_length is not None and head.content_length > MAX_BODY:
        raise _TooLarge()
    if head.expect_continue:
        await conn.send(status_line(100) + b"\r\n")
        conn.sent_any = False
    parts: list[bytes] = []
    size = 0
    while True:
        kind, value = await conn.receive_body()
        if kind == DATA:
            size += len(value)  # type: ignore[arg-type]
            if size > MAX_BODY:
                raise _TooLarge()
            parts.append(value)  # type: ignore[arg-type]
        elif kind == END:
            return b"".join(parts)
        else:
            raise _TooLarge()


def _bytes(resp: Response, *, close: bool = False, head_only: bool = False) -> bytes:
    lines = [
        status_line(resp.status),
        b"Content-Type: " + resp.content_type.encode() + b"\r\n",
        b"Content-Length: %d\r\n" % len(resp.body),
        b"Cache-Control: no-store\r\n",
    ]
    for k, v in resp.headers:
        lines.append(f"{k}: {v}\r\n".encode("latin-1"))
    if close:
        lines.append(b"Connection: close\r\n")
    return b"".join(lines) + b"\r\n" + (b"" if head_only else resp.body)
