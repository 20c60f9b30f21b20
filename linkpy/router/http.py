"""The HTTP/1.1 router: one trio task per downstream connection.

For each request on a connection, in order (pipelined requests are answered in
order): read the local dtab from ``l5d-ctx-dtab`` / ``l5d-dtab``, name the request
(identifiers), take the name's cached :class:`~linkpy.router.interpreter.Binding`,
pick a target (weighted union branch, then an endpoint of its client), and forward:
the head, the body streamed with backpressure (``Expect: 100-continue`` honoured), then
the response streamed back.  No task is spawned per request, except to tunnel an
upgraded connection (WebSocket).

Errors a user can act on answer with Linkerd's status and an ``l5d-err`` header:
unidentifiable request 400, bad ``l5d-dtab`` 400, no hosts 502, binding timeout 503,
endpoint connect failure 502.
"""

from __future__ import annotations

import logging
import random
import time
from urllib.parse import quote_plus

import trio

from ..activity import Var
from ..config.schema import ClientParams, RouterConfig, ServerConfig, ServiceParams
from ..errors import (
    BadRequest,
    BindingFailed,
    BindingTimeout,
    ConnectFailed,
    LinkpyError,
    NoBrokersAvailable,
    ParseError,
    ProtocolError,
    RemoteProtocolError,
    RoutingError,
    UnidentifiedRequest,
    UpstreamError,
)
from ..metrics import Scope
from ..naming import Addr, Bound, Dtab, Failed, Ok, Path, Pending
from ..proto.http1 import (
    DATA,
    END,
    HOP_BY_HOP,
    UPGRADE,
    Headers,
    RequestHead,
    ResponseHead,
    chunk,
    last_chunk,
    status_line,
)
from ..transport.http1 import (
    ClientClosed,
    ClientConnection,
    ServerConnection,
    UpstreamClosed,
)
from ..transport.server import ConnState
from .client import Client, Endpoint, PoolConfig, make_balancer, ms
from .identifiers import BuildsIdentifier, HeaderTokenConfig, Identifier, identify
from .interpreter import Binding, Interpreter
from .params import Params
from .routing import Route, Target, build_route, no_hosts

log = logging.getLogger("linkpy.router")

VIA = b"1.1 linkpy"
#: A request body up to this size, already read, is sent with its head in one write.
INLINE_BODY = 65536


class ServerCtx:
    """One server (listening address) of a router, with its metrics."""

    metrics: Scope

    def __init__(self, router: HttpRouter, cfg: ServerConfig, port: int) -> None:
        self.router = router
        self.cfg = cfg
        self.ip = cfg.ip
        self.port = port
        self.open_connections = 0
        self.inflight = 0
        self.bind(port)
        self.clear_context = cfg.clearContext
        self.max_concurrent = cfg.maxConcurrentRequests
        self.max_call_depth = cfg.maxCallDepth if cfg.maxCallDepth is not None else 1000
        self.timestamp_header = cfg.timestampHeader.encode() if cfg.timestampHeader else b""
        self.forwarded = cfg.addForwardedHeader

    def bind(self, port: int) -> None:
        """(Re)name the metrics after the port actually bound (port 0 in tests)."""
        self.port = port
        if hasattr(self, "metrics"):
            self.metrics.remove()
        scope = self.router.metrics.labeled("server", f"{self.ip}/{port}")
        self.metrics = scope
        self.requests = scope.counter("requests")
        self.success = scope.counter("success")
        self.failures = scope.counter("failures")
        self.latency = scope.stat("request_latency_ms")
        self.connects = scope.counter("connects")
        self.status_scope = scope.scope("status")
        self.failure_scope = scope.scope("failures")
        scope.gauge("connections", fn=lambda: float(self.open_connections))
        scope.gauge("pending", fn=lambda: float(self.inflight))


class ServiceState:
    """The service stack of one logical name: parameters and metrics."""

    __slots__ = ("path", "params", "requests", "success", "failures", "latency", "metrics")

    def __init__(self, path: Path, params: ServiceParams, metrics: Scope) -> None:
        self.path = path
        self.params = params
        self.metrics = metrics
        self.requests = metrics.counter("requests")
        self.success = metrics.counter("success")
        self.failures = metrics.counter("failures")
        self.latency = metrics.stat("request_latency_ms")


def _label(path: Path | object) -> str:
    show = getattr(path, "show", None)
    text = str(show()) if callable(show) else str(path)
    return text[1:] if text.startswith("/") else text


def _err_header(message: str, limit: int) -> bytes:
    return quote_plus(message, safe="*")[:limit].encode("ascii")


class HttpRouter:
    """A ``protocol: http`` router."""

    def __init__(
        self,
        cfg: RouterConfig,
        interpreter: Interpreter,
        metrics: Scope,
        *,
        identifiers: list[Identifier] | None = None,
    ) -> None:
        self.cfg = cfg
        self.label = cfg.name
        self.interpreter = interpreter
        self.metrics = metrics
        self.dst_prefix = Path.read(cfg.dstPrefix)
        configs = cfg.identifier or [HeaderTokenConfig()]
        self.identifiers = identifiers or [
            c.mk(self.dst_prefix, cfg.protocol) for c in configs if isinstance(c, BuildsIdentifier)
        ]
        self.binding_timeout = cfg.bindingTimeoutMs / 1000.0
        self.max_line = cfg.maxInitialLineKB * 1024
        self.max_headers = cfg.maxHeadersKB * 1024
        self.max_err = cfg.maxErrResponseKB * 1024
        self.client_params = Params(cfg.client, ClientParams)
        self.service_params = Params(cfg.service, ServiceParams)
        self.clients: dict[object, Client] = {}
        self.services: dict[Path, ServiceState] = {}
        self._dtab_cache: dict[bytes, Dtab] = {}
        self.servers: list[ServerCtx] = []
        self.idle_ttl = float(cfg.bindingCache.idleTtlSecs)
        self.unidentified = metrics.counter("failures", "unidentified")

    # -- setup ---------------------------------------------------------------

    def server(self, cfg: ServerConfig, port: int) -> ServerCtx:
        ctx = ServerCtx(self, cfg, port)
        self.servers.append(ctx)
        return ctx

    def client_for(self, bound: Bound) -> Client:
        client = self.clients.get(bound.id)
        if client is None:
            client = self._new_client(bound)
            self.clients[bound.id] = client
        return client

    def _new_client(self, bound: Bound) -> Client:
        name = bound.id if isinstance(bound.id, Path) else Path.empty
        params, _ = self.client_params.resolve(name)
        lb = params.loadBalancer
        pool_cfg = params.hostConnectionPool
        session = params.clientSession
        pool = PoolConfig(
            max_size=pool_cfg.maxSize if pool_cfg else None,
            idle_time=ms(pool_cfg.idleTimeMs)
            if pool_cfg
            else (ms(session.idleTimeMs) if session else None),
            max_waiters=pool_cfg.maxWaiters if pool_cfg else None,
            connect_timeout=ms(params.connectTimeoutMs) or 1.0,
        )
        balancer = make_balancer(lb.kind, lb.maxEffort) if lb else None
        scope = self.metrics.labeled("client", _label(bound.id))
        client = Client(bound.id, bound.addr, scope, balancer=balancer, pool=pool)
        client.last_used = trio.current_time()
        return client

    def service_for(self, path: Path) -> ServiceState:
        svc = self.services.get(path)
        if svc is None:
            params, _ = self.service_params.resolve(path)
            svc = ServiceState(path, params, self.metrics.labeled("service", _label(path)))
            self.services[path] = svc
        return svc

    def route(self, binding: Binding) -> Route:
        route = binding.route
        if route is None:
            st = binding.var.sample()
            assert isinstance(st, Ok)

            def error() -> NoBrokersAvailable:
                return no_hosts(binding.path, self.interpreter.base, binding.local)

            route = build_route(st.value, self.client_for, error)
            binding.route = route
        return route  # type: ignore[return-value]

    # -- the local dtab --------------------------------------------------------

    def _read_dtab(self, value: bytes) -> Dtab:
        d = self._dtab_cache.get(value)
        if d is None:
            try:
                d = Dtab.read(value.decode("latin-1"))
            except ParseError as e:
                raise BadRequest(f"Invalid dtab: {e}") from None
            if len(self._dtab_cache) > 1000:
                self._dtab_cache.clear()
            self._dtab_cache[value] = d
        return d

    def local_dtab(self, head: RequestHead) -> Dtab:
        """``l5d-ctx-dtab`` then ``l5d-dtab`` values, parsed and removed from the request."""
        ctx: list[bytes] = []
        user: list[bytes] = []
        kept: Headers = []
        for k, v in head.headers:
            lk = k.lower()
            if lk == b"l5d-ctx-dtab":
                ctx.append(v)
            elif lk == b"l5d-dtab":
                user.append(v)
            else:
                kept.append((k, v))
        if not ctx and not user:
            return Dtab.empty
        head.headers = kept
        local = Dtab.empty
        for v in ctx + user:
            if v.strip():
                local = local + self._read_dtab(v)
        return local

    # -- connections -------------------------------------------------------------

    async def serve_connection(
        self, stream: trio.SocketStream, state: ConnState, srv: ServerCtx
    ) -> None:
        conn = ServerConnection(
            stream,
            max_line=self.max_line,
            max_headers=self.max_headers,
            peer=state.peer,
            local=state.local,
        )
        srv.connects.incr()
        srv.open_connections += 1
        try:
            while True:
                state.set_idle(True)
                try:
                    head = await conn.receive_head()
                except ProtocolError as e:
                    await self._reject(conn, srv, e)
                    return
                if head is None:
                    return
                state.set_idle(False)
                keep = await self.handle(conn, head, srv)
                if not keep or state.should_close or conn.eof:
                    if not keep and conn.parser.events:
                        await conn.linger()  # an unread request body
                    return
        except ClientClosed:
            return
        finally:
            srv.open_connections -= 1

    async def _reject(self, conn: ServerConnection, srv: ServerCtx, e: ProtocolError) -> None:
        """Answer a request that could not be parsed, then close."""
        srv.requests.incr()
        srv.failures.incr()
        srv.failure_scope.counter("bad_request").incr()
        status = e.status_hint
        srv.status_scope.counter(str(status)).incr()
        if not conn.sent_any:
            with trio.move_on_after(1):
                try:
                    await conn.send(self._error_bytes(status, str(e), close=True))
                except ClientClosed:
                    return
            await conn.linger()

    # -- one request ---------------------------------------------------------------

    async def handle(self, conn: ServerConnection, head: RequestHead, srv: ServerCtx) -> bool:
        """Route one request; True if the connection may carry another."""
        start = time.perf_counter()
        srv.requests.incr()
        srv.inflight += 1
        status = 0
        svc: ServiceState | None = None
        try:
            if srv.max_concurrent is not None and srv.inflight > srv.max_concurrent:
                raise _Rejected(503, "max concurrent requests exceeded", "overloaded")
            if head.method == b"CONNECT":
                raise _Rejected(405, "CONNECT tunnelling is not supported", "connect")
            local = Dtab.empty
            if head.has_l5d:
                if srv.clear_context:
                    head.headers = [(k, v) for k, v in head.headers if k[:4].lower() != b"l5d-"]
                else:
                    local = self.local_dtab(head)
            self._check_call_depth(head, srv)
            path = identify(self.identifiers, head)
            if not isinstance(path, Path):
                text = head.target.decode("latin-1")
                raise UnidentifiedRequest(
                    f"Unknown destination: {head.method.decode()} {text} / {path}"
                )
            svc = self.service_for(path)
            svc.requests.incr()
            binding = self.interpreter.binding(path, local)
            if binding.var.sample() is Pending:
                await self._wait_bound(binding)
            st = binding.var.sample()
            if isinstance(st, Failed):
                raise BindingFailed(f"binding {path.show()} failed: {st.exc}")
            target = self.route(binding).pick()
            status, keep = await self._forward(conn, head, srv, path, local, target)
        except RoutingError as e:
            status = e.status
            keep = await self._respond_error(conn, head, srv, e)
        except _Rejected as e:
            status = e.status
            srv.failure_scope.counter(e.kind).incr()
            keep = await self._respond_error(conn, head, srv, e)
        except ProtocolError as e:
            # the downstream broke the protocol in the body, or the upstream did after
            # we had started answering: nothing more can be said on this connection
            status = e.status_hint
            if not conn.sent_any and not isinstance(e, ClientClosed):
                keep = await self._respond_error(conn, head, srv, UpstreamError(str(e)))
            keep = False
        finally:
            srv.inflight -= 1
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        srv.latency.add(elapsed_ms)
        srv.status_scope.counter(str(status)).incr()
        ok = 0 < status < 500
        if ok:
            srv.success.incr()
        else:
            srv.failures.incr()
        if svc is not None:
            svc.latency.add(elapsed_ms)
            if ok:
                svc.success.incr()
            else:
                svc.failures.incr()
        return keep

    def _check_call_depth(self, head: RequestHead, srv: ServerCtx) -> None:
        vias = head.get_all(b"via")
        if vias:
            depth = sum(len([x for x in v.split(b",") if x.strip()]) for v in vias)
            if depth > srv.max_call_depth:
                raise _Rejected(
                    400,
                    f"Maximum number of calls ({srv.max_call_depth}) has been exceeded. "
                    "Please check for proxy loops.",
                    "max_call_depth",
                )

    async def _wait_bound(self, binding: Binding) -> None:
        with trio.move_on_after(self.binding_timeout) as scope:
            while binding.var.sample() is Pending:
                await binding.var.wait_change(binding.var.version)
        if scope.cancelled_caught:
            raise BindingTimeout(
                f"Exceeded {self.binding_timeout * 1000:.0f}ms binding timeout while resolving "
                f"name: {binding.path.show()}"
            )

    async def _wait_addr(self, client: Client, path: Path) -> None:
        var = client.addr_source
        assert isinstance(var, Var)  # a constant Addr is never Pending
        with trio.move_on_after(self.binding_timeout) as scope:
            while client.addr is Addr.Pending:
                await var.wait_change(var.version)
        if scope.cancelled_caught:
            raise BindingTimeout(
                f"Exceeded {self.binding_timeout * 1000:.0f}ms binding timeout while resolving "
                f"addresses of {client.id_show} for {path.show()}"
            )

    # -- forwarding ----------------------------------------------------------------

    def _outgoing_headers(
        self,
        head: RequestHead,
        srv: ServerCtx,
        path: Path,
        local: Dtab,
        target: Target,
        conn: ServerConnection,
    ) -> Headers:
        drop = HOP_BY_HOP.union(head.connection_tokens) if head.connection_tokens else HOP_BY_HOP
        if head.expect_continue:
            drop = drop | {b"expect"}
        upgrade = head.upgrade and b"upgrade" in head.connection_tokens
        out: Headers = []
        via = None
        for k, v in head.headers:
            lk = k.lower()
            if lk in drop:
                if upgrade and (lk == b"upgrade"):
                    out.append((k, v))
                continue
            if lk == b"via":
                via = v if via is None else via + b", " + v
                continue
            if lk[:8] == b"l5d-dst-" or lk == b"l5d-reqid":
                continue
            out.append((k, v))
        if upgrade:
            out.append((b"Connection", b"upgrade"))
        if head.host is None and head.target[:1] != b"/":
            authority = _authority(head.target)
            if authority:
                out.append((b"Host", authority))
        out.append((b"Via", VIA if via is None else via + b", " + VIA))
        out.append((b"l5d-dst-service", path.show().encode("latin-1", "replace")))
        out.append((b"l5d-dst-client", target.client_header))
        if target.residual_header:
            out.append((b"l5d-dst-residual", target.residual_header))
        out.append((b"l5d-reqid", b"%016x" % random.getrandbits(64)))
        if local.dentries:
            out.append((b"l5d-ctx-dtab", local.show().encode("latin-1", "replace")))
        if srv.timestamp_header:
            out.append((srv.timestamp_header, str(int(time.time() * 1000)).encode()))
        if srv.forwarded is not None:
            out.append((b"Forwarded", self._forwarded(srv, conn, head)))
        if head.chunked:
            out.append((b"Transfer-Encoding", b"chunked"))
        elif head.content_length is not None:
            pass  # Content-Length was kept
        return out

    def _forwarded(self, srv: ServerCtx, conn: ServerConnection, head: RequestHead) -> bytes:
        fwd = srv.forwarded
        assert fwd is not None

        def label(kind: str, static: str | None, addr: tuple[str, int]) -> str:
            ip, port = addr
            if kind == "ip":
                return f'"[{ip}]"' if ":" in ip else ip
            if kind == "ip:port":
                return f'"[{ip}]:{port}"' if ":" in ip else f'"{ip}:{port}"'
            if kind == "router":
                return "_" + _obfuscate(self.label)
            if kind == "static":
                return "_" + _obfuscate(static or "")
            if kind == "connectionRandom":
                return "_" + _token(id(conn))
            return "_" + _token(random.getrandbits(48))

        parts = [
            "by=" + label(fwd.by.kind, fwd.by.label, conn.local),
            "for=" + label(fwd.for_.kind, fwd.for_.label, conn.peer),
        ]
        if head.host:
            parts.append(f'host="{head.host.decode("latin-1")}"')
        parts.append("proto=http")
        return ";".join(parts).encode("latin-1")

    async def _forward(
        self,
        conn: ServerConnection,
        head: RequestHead,
        srv: ServerCtx,
        path: Path,
        local: Dtab,
        target: Target,
    ) -> tuple[int, bool]:
        client = target.client
        client.requests.incr()
        if client.addr is Addr.Pending:
            await self._wait_addr(client, path)
        if not client.live:
            raise no_hosts(path, self.interpreter.base, local)
        origin = head.target
        if origin[:1] != b"/" and origin != b"*":
            origin = _origin_form(origin)
        headers = self._outgoing_headers(head, srv, path, local, target, conn)
        head_bytes = b"".join(
            [head.method, b" ", origin, b" HTTP/1.1\r\n"]
            + [b"%s: %s\r\n" % kv for kv in headers]
            + [b"\r\n"]
        )
        body: bytes | None = b""
        if head.expect_continue:
            # Answer the client's Expect ourselves: the endpoint gets the body at once
            # (an endpoint that ignores Expect would otherwise wait for it forever).
            await conn.send(status_line(100) + b"\r\n")
            conn.sent_any = False
        if head.has_body:
            body = conn.buffered_body(INLINE_BODY)
        # Connection failures are retried on other endpoints (requeues); a reused
        # connection the endpoint had closed is retried on a new one.
        attempts = 0
        tried: set[int] = set()
        while True:
            attempts += 1
            ep = client.pick()
            if ep is None:
                raise no_hosts(path, self.interpreter.base, local)
            if id(ep) in tried and len(tried) < len(client.live):
                ep = next((e for e in client.live if id(e) not in tried), ep)
            tried.add(id(ep))
            try:
                up = await ep.connection()
            except ConnectFailed as e:
                client.metrics.counter("failures", "connect_failed").incr()
                if attempts < min(3, max(1, len(client.live))) + 1 and attempts <= len(client.live):
                    client.metrics.counter("retries", "requeues").incr()
                    continue
                raise ConnectFailed(
                    f"Unable to establish connection to {ep.show()}. "
                    f"service name: {path.show()} client name: {client.id_show} ({e})"
                ) from None
            reused = up.uses > 0
            try:
                return await self._exchange(conn, head, head_bytes, body, up, ep, client)
            except _StaleConnection:
                ep.release(up, reusable=False)
                if reused and body is not None and attempts < 3:
                    client.metrics.counter("retries", "requeues").incr()
                    continue
                raise UpstreamError(
                    f"connection to {ep.show()} closed before a response ({client.id_show})"
                ) from None

    async def _exchange(
        self,
        conn: ServerConnection,
        head: RequestHead,
        head_bytes: bytes,
        body: bytes | None,
        up: ClientConnection,
        ep: Endpoint,
        client: Client,
    ) -> tuple[int, bool]:
        """One request on one upstream connection; the response streamed back."""
        ep.load += 1
        reusable = False
        is_head = head.method == b"HEAD"
        try:
            up.start_request(is_head)
            chunked = head.chunked
            try:
                if body is None:
                    await up.send(head_bytes)
                    await self._pump_body(conn, up, chunked)
                elif body:
                    await up.send(head_bytes + (chunk(body) + last_chunk() if chunked else body))
                else:
                    await up.send(head_bytes + (last_chunk() if chunked else b""))
                resp = await up.receive_head()
            except UpstreamClosed as e:
                if not up.received_any:
                    raise _StaleConnection() from e
                raise
            # interim responses
            while resp.status < 200:
                if resp.status == 101:
                    return await self._tunnel(conn, head, up, resp, ep)
                if head.version == b"1.1" and resp.status != 100:
                    await conn.send(_response_head(resp, b""))
                    conn.sent_any = False
                resp = await up.receive_head()
            body_done = True
            status = resp.status
            keep = head.keep_alive and body_done and not conn.eof
            keep = await self._send_response(conn, head, resp, up, keep, is_head)
            reusable = body_done and resp.keep_alive and up.reusable
            if status >= 500:
                ep.failures += 1
            ep.requests += 1
            return status, keep
        finally:
            ep.load -= 1
            ep.release(up, reusable)

    async def _pump_body(self, conn: ServerConnection, up: ClientConnection, chunked: bool) -> None:
        """Stream the downstream request body to the upstream connection."""
        while True:
            kind, value = await conn.receive_body()
            if kind == DATA:
                if value:
                    await up.send(chunk(value) if chunked else value)  # type: ignore[arg-type]
            elif kind == END:
                if chunked:
                    await up.send(last_chunk(value))  # type: ignore[arg-type]
                return
            else:
                raise RemoteProtocolError("unexpected upgrade in a request body")

    async def _send_response(
        self,
        conn: ServerConnection,
        head: RequestHead,
        resp: ResponseHead,
        up: ClientConnection,
        keep: bool,
        is_head: bool,
    ) -> bool:
        """Stream the response downstream; return whether the connection stays open."""
        status = resp.status
        has_body = not is_head and status >= 200 and status not in (204, 304)
        close_delimited = has_body and not resp.chunked and resp.content_length is None
        chunked_out = resp.chunked or close_delimited
        if chunked_out and head.version != b"1.1":
            chunked_out = False
            keep = False  # an HTTP/1.0 client reads the body until we close
        framing = b""
        if has_body and chunked_out:
            framing = b"Transfer-Encoding: chunked\r\n"
        if not keep:
            framing += b"Connection: close\r\n"
        elif head.version == b"1.0":
            framing += b"Connection: keep-alive\r\n"
        out = _response_head(resp, framing)
        events = up.parser.events
        # Send what already arrived of the body together with the head.
        while True:
            while events:
                kind, value = events[0]
                if kind == DATA:
                    events.popleft()
                    if value:
                        out += chunk(value) if chunked_out else value  # type: ignore[arg-type,operator]
                elif kind == END:
                    events.popleft()
                    if has_body and chunked_out:
                        out += last_chunk(value)  # type: ignore[arg-type]
                    await conn.send(out)
                    return keep
                else:
                    raise UpstreamClosed("unexpected upgrade in a response")
            if out:
                await conn.send(out)
                out = b""
            up.parser.events.appendleft(await up.receive())

    async def _tunnel(
        self,
        conn: ServerConnection,
        head: RequestHead,
        up: ClientConnection,
        resp: ResponseHead,
        ep: Endpoint,
    ) -> tuple[int, bool]:
        """A 101 answer to an upgrade: pass bytes both ways until either side closes."""
        await conn.send(_response_head(resp, b"", keep_upgrade=True))
        leftover_down = b""
        events = conn.parser.events
        while events:
            kind, value = events.popleft()
            if kind == UPGRADE:
                leftover_down = value  # type: ignore[assignment]
        leftover_up = b""
        upevents = up.parser.events
        while upevents:
            kind, value = upevents.popleft()
            if kind == UPGRADE:
                leftover_up = value  # type: ignore[assignment]
        if leftover_up:
            await conn.send(leftover_up)
        if leftover_down:
            await up.send(leftover_down)
        up.closed = True

        async def copy(
            src: trio.abc.Stream, dst: trio.abc.Stream, cancel: trio.CancelScope
        ) -> None:
            try:
                while True:
                    data = await src.receive_some(65536)
                    if not data:
                        break
                    await dst.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            cancel.cancel()

        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(copy, conn.stream, up.stream, scope)
                nursery.start_soon(copy, up.stream, conn.stream, scope)
        return 101, False

    # -- errors ---------------------------------------------------------------------

    def _error_bytes(
        self, status: int, message: str, *, close: bool = False, retryable: bool = False
    ) -> bytes:
        body = message.encode("utf-8", "replace")[: self.max_err]
        headers = [
            status_line(status),
            b"l5d-err: " + _err_header(message, self.max_headers) + b"\r\n",
            b"Content-Type: text/plain\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Via: " + VIA + b"\r\n",
        ]
        if retryable:
            headers.append(b"l5d-retryable: true\r\n")
        if close:
            headers.append(b"Connection: close\r\n")
        return b"".join(headers) + b"\r\n" + body

    async def _respond_error(
        self, conn: ServerConnection, head: RequestHead, srv: ServerCtx, e: LinkpyError
    ) -> bool:
        status = getattr(e, "status", 502)
        kind = getattr(e, "kind", "error")
        srv.failure_scope.counter(kind).incr()
        if isinstance(e, UnidentifiedRequest):
            self.unidentified.incr()
        if conn.sent_any:
            return False
        # The request body (if any) is unread: the connection cannot be reused safely
        # unless the body was empty or already consumed.
        keep = head.keep_alive and not head.has_body
        if head.has_body and conn.buffered_body(INLINE_BODY) is not None:
            keep = head.keep_alive
        retryable = bool(getattr(e, "retryable", False))
        data = self._error_bytes(status, str(e), close=not keep, retryable=retryable)
        try:
            await conn.send(data)
        except ClientClosed:
            return False
        return keep

    # -- housekeeping -------------------------------------------------------------------

    def evict_idle(self, now: float) -> None:
        """Drop bindings, clients and services unused for ``idleTtlSecs``."""
        self.interpreter.evict_idle(now)

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()
        self.interpreter.close()


class _Rejected(LinkpyError):
    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class _StaleConnection(Exception):
    """The upstream connection closed before answering a single byte."""


def _response_head(resp: ResponseHead, framing: bytes, *, keep_upgrade: bool = False) -> bytes:
    drop = HOP_BY_HOP.union(resp.connection_tokens) if resp.connection_tokens else HOP_BY_HOP
    parts = [status_line(resp.status, resp.reason)]
    via = None
    for k, v in resp.headers:
        lk = k.lower()
        if lk in drop:
            if keep_upgrade and lk in (b"upgrade", b"connection"):
                parts.append(b"%s: %s\r\n" % (k, v))
            continue
        if lk == b"via":
            via = v if via is None else via + b", " + v
            continue
        parts.append(b"%s: %s\r\n" % (k, v))
    parts.append(b"Via: " + (VIA if via is None else via + b", " + VIA) + b"\r\n")
    parts.append(framing)
    parts.append(b"\r\n")
    return b"".join(parts)


def _authority(target: bytes) -> bytes:
    rest = target.split(b"://", 1)[-1]
    end = len(rest)
    for sep in (b"/", b"?", b"#"):
        i = rest.find(sep)
        if i >= 0:
            end = min(end, i)
    return rest[:end].rsplit(b"@", 1)[-1]


def _origin_form(target: bytes) -> bytes:
    """``http://host/path?q`` -> ``/path?q`` (absolute-form targets of proxy clients)."""
    if b"://" not in target:
        return target
    rest = target.split(b"://", 1)[1]
    for i, c in enumerate(rest):
        if c in b"/?":
            path = rest[i:]
            return path if path[:1] == b"/" else b"/" + path
    return b"/"


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _token(n: int) -> str:
    out = []
    for _ in range(7):
        out.append(_ALPHABET[n & 63])
        n >>= 6
    return "".join(out)


def _obfuscate(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)
