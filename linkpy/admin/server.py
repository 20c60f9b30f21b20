"""The admin HTTP server (default 127.0.0.1:9990).

A small HTTP/1.1 server of its own (on the same framing code as the routers) that
dispatches on the request path to handlers returning a :class:`Response`.

Safety: the server binds to loopback unless the config says otherwise; every request
passes ``admin.security`` first (a refused path is answered 404, as Linkerd does); a
method an endpoint does not take is answered 405; a request body is read only up to
:data:`MAX_BODY` bytes (413 past it) and within :data:`BODY_TIMEOUT`; a POST whose
``Origin`` is not the admin's own is refused (403), so that a web page elsewhere cannot
make the browser of an operator shut the process down (nor, for the control endpoints,
a page that rebinds its host name to the admin's address); idle connections close after
:data:`IDLE_TIMEOUT`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import attrs
import trio

from ..errors import ProtocolError
from ..proto.http1 import DATA, END, RequestHead, status_line
from ..transport.http1 import ClientClosed, ServerConnection
from ..transport.server import ConnState, TcpServer
from ..transport.tls import handshake, server_context
from .endpoints import ENDPOINTS, READ
from .security import CONTROL, Security

if TYPE_CHECKING:
    from ..linker import Linker

log = logging.getLogger("linkpy.admin")

#: The largest request body the admin reads (a dtab and a path fit many times over).
MAX_BODY = 256 * 1024
#: How long a request body may take to arrive.
BODY_TIMEOUT = 10.0
#: How long a connection may sit idle between requests.
IDLE_TIMEOUT = 60.0

#: Pages may load only what the admin itself serves.
HTML_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"


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
    #: Called once the response is written (``/admin/shutdown`` starts draining then).
    after: Callable[[], None] | None = attrs.field(default=None, eq=False)

    @classmethod
    def json(cls, obj: Any, status: int = 200, *, pretty: bool = False) -> Response:
        text = json.dumps(
            obj, indent=2 if pretty else None, separators=None if pretty else (",", ":")
        )
        return cls(status, text.encode(), "application/json")

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode())

    @classmethod
    def html(cls, text: str | bytes, status: int = 200) -> Response:
        body = text.encode() if isinstance(text, str) else text
        return cls(status, body, "text/html; charset=utf-8")


Handler = Callable[[Request], Awaitable[Response]]


@attrs.frozen
class Route:
    path: str
    handler: Handler
    methods: frozenset[str]
    help: str
    prefix: bool = False


class AdminServer:
    """Serves the admin endpoints of a :class:`~linkpy.linker.Linker`."""

    def __init__(self, linker: Linker) -> None:
        from . import handlers

        self.linker = linker
        cfg = linker.config.admin
        self.security = Security(cfg.security)
        self.routes: dict[str, Route] = {}
        self.prefixes: list[Route] = []
        handlers.install(self, linker)
        tls = cfg.tls
        #: admin.tls: the admin served over HTTPS
        self.tls = server_context(tls, ["http/1.1"]) if tls is not None and tls.enabled else None
        self.server = TcpServer(cfg.ip, cfg.port, self._connection, name="admin")

    # -- routes -----------------------------------------------------------------

    def route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: Iterable[str] = READ,
        help: str = "",
        prefix: bool = False,
    ) -> None:
        """Serve ``path`` (with ``prefix``, every path that starts with it)."""
        methods = frozenset(methods)
        if "GET" in methods:
            methods |= {"HEAD"}
        r = Route(path, handler, methods, help, prefix)
        if prefix:
            self.prefixes = [p for p in self.prefixes if p.path != path] + [r]
            self.prefixes.sort(key=lambda p: -len(p.path))
        else:
            self.routes[path] = r

    def builtin(self, path: str, handler: Handler) -> None:
        """Serve the built-in endpoint ``path`` as the table in :mod:`.endpoints` says."""
        e = next(e for e in ENDPOINTS if e.path == path)
        self.route(path, handler, methods=e.methods, help=e.help, prefix=e.prefix)

    def index(self) -> list[Route]:
        """Every endpoint, by path."""
        return sorted([*self.routes.values(), *self.prefixes], key=lambda r: r.path)

    def find(self, path: str) -> Route | None:
        r = self.routes.get(path)
        if r is None:
            r = next((p for p in self.prefixes if path.startswith(p.path)), None)
        return r

    # -- serving ----------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await self.server.serve(task_status=task_status)

    def drain(self) -> None:
        self.server.abort()

    async def _connection(self, stream: trio.SocketStream, state: ConnState) -> None:
        transport: trio.abc.Stream = stream
        if self.tls is not None:
            secured = await handshake(stream, self.tls)
            if secured is None:
                return
            transport = secured
        conn = ServerConnection(transport, peer=state.peer, local=state.local)
        try:
            while True:
                state.set_idle(True)
                head = None
                with trio.move_on_after(IDLE_TIMEOUT):
                    try:
                        head = await conn.receive_head()
                    except ProtocolError as e:
                        await conn.send(_bytes(Response.text(str(e), e.status_hint), close=True))
                        return
                if head is None:
                    return
                state.set_idle(False)
                body = b""
                error: Response | None = None
                with trio.move_on_after(BODY_TIMEOUT) as timeout:
                    try:
                        body = await _read_body(conn, head)
                    except _TooLarge:
                        error = Response.text(f"request body over {MAX_BODY} bytes\n", 413)
                if timeout.cancelled_caught:
                    error = Response.text("request body too slow\n", 408)
                if error is not None:
                    await conn.send(_bytes(error, close=True))
                    return
                resp = await self.dispatch(head, body)
                keep = head.keep_alive and not state.should_close and resp.after is None
                await conn.send(_bytes(resp, close=not keep, head_only=head.method == b"HEAD"))
                if resp.after is not None:
                    resp.after()
                if not keep:
                    return
        except ClientClosed:
            return

    async def dispatch(self, head: RequestHead, body: bytes) -> Response:
        url = urlsplit(head.target.decode("latin-1"))
        req = Request(
            method=head.method.decode("latin-1"),
            path=url.path or "/",
            query=parse_qs(url.query),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers},
            body=body,
        )
        return await self.handle(req)

    async def handle(self, req: Request) -> Response:
        """Security, routing, method and origin checks, then the handler."""
        if not self.security.allows(req.path):
            return Response.text(f"not found: {req.path}\n", 404)
        route = self.find(req.path)
        if route is None:
            return Response.text(f"not found: {req.path}\n", 404)
        if req.method not in route.methods:
            allow = ", ".join(sorted(route.methods))
            return Response(
                405,
                f"{req.method} not allowed; use {allow}\n".encode(),
                headers=(("Allow", allow),),
            )
        if req.method == "POST" and not _origin_ok(req, self.security.category(req.path)):
            return Response.text("cross-origin requests are refused\n", 403)
        try:
            return await route.handler(req)
        except Exception as e:
            log.exception("admin handler for %s failed", req.path)
            return Response.text(f"internal error: {e}\n", 500)


def _origin_ok(req: Request, category: str) -> bool:
    """Whether a POST may come from where its ``Origin`` says (browsers always send one).

    The origin must be the admin itself.  For the control endpoints, the admin must
    moreover be named by an IP address or ``localhost``: a page that rebinds its own host
    name to 127.0.0.1 (DNS rebinding) is same-origin with the name it rebound.
    """
    origin = req.headers.get("origin")
    if origin is None:
        return True  # not from a browser page (curl, scripts)
    host = req.headers.get("host", "").lower()
    if urlsplit(origin).netloc.lower() != host:
        return False
    if category != CONTROL:
        return True
    name = urlsplit("//" + host).hostname or ""
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class _TooLarge(Exception):
    pass


async def _read_body(conn: ServerConnection, head: RequestHead) -> bytes:
    if not head.has_body:
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
            assert isinstance(value, bytes)
            size += len(value)
            if size > MAX_BODY:
                raise _TooLarge()
            parts.append(value)
        elif kind == END:
            return b"".join(parts)
        else:
            raise _TooLarge()  # an upgrade: not for the admin


def _bytes(resp: Response, *, close: bool = False, head_only: bool = False) -> bytes:
    lines = [
        status_line(resp.status),
        b"Content-Type: " + resp.content_type.encode() + b"\r\n",
        b"Content-Length: %d\r\n" % len(resp.body),
        b"Cache-Control: no-store\r\n",
        b"X-Content-Type-Options: nosniff\r\n",
    ]
    if resp.content_type.startswith("text/html"):
        lines.append(b"Content-Security-Policy: " + HTML_CSP.encode() + b"\r\n")
        lines.append(b"Referrer-Policy: no-referrer\r\n")
    for k, v in resp.headers:
        lines.append(f"{k}: {v}\r\n".encode("latin-1"))
    if close:
        lines.append(b"Connection: close\r\n")
    return b"".join(lines) + b"\r\n" + (b"" if head_only else resp.body)
