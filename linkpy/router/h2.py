"""The HTTP/2 (and gRPC) router: a task per request stream, one connection per endpoint.

Naming, binding, target picking, clients, balancers, failure accrual and the service
stack are the HTTP/1.1 router's (:class:`H2Router` extends
:class:`~linkpy.router.http.HttpRouter`).  What differs is the transport:

- Downstream, each connection is a :class:`~linkpy.transport.h2.ServerConn` (h2c with
  prior knowledge, or TLS with ALPN ``h2``); each request stream is handled in its own
  task.  Draining sends GOAWAY and lets the streams in flight finish.
- Upstream, each endpoint holds one multiplexed
  :class:`~linkpy.transport.h2.ClientConn`, opened on first use in the router's
  nursery and replaced once it has received GOAWAY or closed.
- The request body streams to the endpoint while a copy of its beginning is kept, up
  to ``retryBufferSize.requestBytes``: while the copy is whole, a retry replays it and
  then goes on streaming.  The response streams back with backpressure (an item is
  taken from the upstream stream, so its window reopens, only once it is sent on);
  trailers pass through.
- A reset on either side resets the other side with the same code; a stream that
  ends on one side while the other is still open is reset there (no half-closed
  leftovers); a lost connection resets its streams' counterparts.
- Classifiers that need the trailers (gRPC) get them when the response ends within
  ``classificationTimeoutMs``.  Routing errors answer with ``:status``, ``l5d-err``
  and, for gRPC requests, ``grpc-status``/``grpc-message`` trailers.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Final
from urllib.parse import quote

import trio

from ..config.schema import RouterConfig, ServerConfig
from ..errors import (
    ConnectFailed,
    LinkpyError,
    RequestTimeout,
    RoutingError,
    UnidentifiedRequest,
    UpstreamError,
)
from ..metrics import Scope
from ..naming import Addr, Dtab, Ok, Path
from ..proto.h2 import (
    INTERNAL_ERROR,
    REFUSED_STREAM,
    WINDOW_UPDATE_RATIO,
    H2Settings,
    Headers,
    Request,
    check_response,
    check_trailers,
    error_name,
)
from ..proto.hpack import NeverIndexed
from ..telemetry import Telemetry
from ..transport.h2 import (
    DATA,
    END,
    GONE,
    HEADERS,
    RESET,
    TRAILERS,
    ClientConn,
    ConnectionGone,
    H2Stream,
    NotH2,
    ServerConn,
    StreamReset,
    sniff_preface,
)
from ..transport.server import ConnState
from ..transport.tls import handshake
from . import trace
from .classifiers import SUCCESS_CLASS
from .client import Client, Endpoint
from .http import HttpRouter, ServerCtx, _deadline, _err_header, _Rejected
from .identifiers import Identifier
from .interpreter import Binding, Interpreter
from .routing import Route, Target, no_hosts
from .service import NO_SCOPE, Service

log = logging.getLogger("linkpy.router.h2")

VIA: Final = b"2 linkpy"
#: Linkerd's h2 defaults (reference section 12.2).
DEFAULT_MAX_STREAMS: Final = 1000
DEFAULT_CALL_DEPTH: Final = 10
DEFAULT_CLASSIFICATION_TIMEOUT: Final = 0.1
DEFAULT_RESPONSE_BUFFER: Final = 16383

#: gRPC status for a routing error, by HTTP status (the gRPC spec's HTTP mapping).
GRPC_FOR_STATUS: Final = {400: 13, 404: 12, 405: 12, 429: 14, 502: 14, 503: 14, 504: 14}
GRPC_DEADLINE_EXCEEDED: Final = 4

#: Request headers the router sets itself (any incoming value is dropped).
_OWN: Final = frozenset(
    {b"l5d-dst-service", b"l5d-dst-client", b"l5d-dst-residual", b"l5d-reqid", b"via"}
)


_STATUS: dict[int, bytes] = {}


def _status_bytes(status: int) -> bytes:
    b = _STATUS.get(status)
    if b is None:
        b = _STATUS[status] = b"%d" % status
    return b


def _ratio(ratio: float | None) -> float:
    return WINDOW_UPDATE_RATIO if ratio is None else ratio


def server_settings(cfg: ServerConfig) -> H2Settings:
    return H2Settings(
        initial_stream_window=cfg.initialStreamWindowBytes,
        initial_connection_window=cfg.initialConnectionWindowBytes,
        max_frame=cfg.maxFrameBytes,
        max_header_list=cfg.maxHeaderListBytes,
        max_concurrent_streams=(
            cfg.maxConcurrentStreamsPerConnection
            if cfg.maxConcurrentStreamsPerConnection is not None
            else DEFAULT_MAX_STREAMS
        ),
        header_table=cfg.headerTableBytes,
        window_update_ratio=_ratio(cfg.windowUpdateRatio),
    )


class H2ServerCtx(ServerCtx):
    """A server of an h2 router: its HTTP/2 settings, TLS context and open streams."""

    def __init__(self, router: H2Router, cfg: ServerConfig, port: int) -> None:
        self.open_streams = 0
        super().__init__(router, cfg, port)
        self.settings = server_settings(cfg)
        self.max_call_depth = (
            cfg.maxCallDepth if cfg.maxCallDepth is not None else DEFAULT_CALL_DEPTH
        )

    def bind(self, port: int) -> None:
        super().bind(port)
        self.metrics.gauge("open_streams", fn=lambda: float(self.open_streams))

    def count(self, delta: int) -> None:
        self.open_streams += delta


class H2Router(HttpRouter):
    """A ``protocol: h2`` router."""

    alpn = ("h2",)

    def __init__(
        self,
        cfg: RouterConfig,
        interpreter: Interpreter,
        metrics: Scope,
        *,
        identifiers: list[Identifier] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        super().__init__(cfg, interpreter, metrics, identifiers=identifiers, telemetry=telemetry)
        self._nursery: trio.Nursery | None = None
        self._connecting: dict[Endpoint, trio.Event] = {}
        self._client_settings: dict[Client, tuple[H2Settings, Scope]] = {}
        self._counters: dict[Client, _StreamCount] = {}
        self.upstream_streams = 0
        metrics.gauge("h2", "upstream_streams", fn=lambda: float(self.upstream_streams))

    def server(self, cfg: ServerConfig, port: int) -> ServerCtx:
        ctx = H2ServerCtx(self, cfg, port)
        self.servers.append(ctx)
        return ctx

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The nursery of the upstream connections (until cancelled)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # -- downstream connections ----------------------------------------------------

    async def serve_connection(
        self, stream: trio.SocketStream, state: ConnState, srv: ServerCtx
    ) -> None:
        assert isinstance(srv, H2ServerCtx)
        state.set_idle(False)  # draining closes h2 connections with GOAWAY (on_drain)
        srv.connects.incr()
        srv.open_connections += 1
        try:
            transport: trio.abc.Stream = stream
            initial = b""
            if srv.tls is not None:
                tls = await handshake(stream, srv.tls)
                if tls is None:
                    srv.tls_failures.incr()
                    return
                if tls.selected_alpn_protocol() not in (None, "h2"):
                    return
                transport = tls
            else:
                try:
                    sniffed = await sniff_preface(stream)
                except NotH2 as e:
                    await self._not_h2(stream, e.data)
                    return
                if sniffed is None:
                    return
                initial = sniffed

            # (a partial, not a closure: no coroutine between the stream worker and
            # handle_stream, which every suspension would pass)
            handler = functools.partial(self.handle_stream, srv=srv)
            conn = ServerConn(transport, srv.settings, handler, on_count=srv.count)
            state.on_drain = conn.drain
            if state.should_close:
                conn.drain()
            await conn.serve(initial)
        finally:
            srv.open_connections -= 1

    async def _not_h2(self, stream: trio.SocketStream, data: bytes) -> None:
        """An HTTP/1 request on an h2c port: say so, in HTTP/1.1, and close."""
        if data[:1].isalpha():
            msg = b"This is an HTTP/2 (prior knowledge) router"
            with trio.move_on_after(1):
                try:
                    await stream.send_all(
                        b"HTTP/1.1 505 HTTP Version Not Supported\r\n"
                        b"l5d-err: " + msg.replace(b" ", b"+") + b"\r\n"
                        b"Content-Type: text/plain\r\nConnection: close\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(msg) + msg
                    )
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    # -- one request stream -----------------------------------------------------------

    async def handle_stream(self, s: H2Stream, srv: H2ServerCtx) -> None:
        req = s.request
        assert req is not None
        start = time.perf_counter()
        srv.requests.incr()
        srv.inflight += 1
        status = 0
        svc: Service | None = None
        ex = _Exchange(self, s, req, srv)
        try:
            path, local = self.name(req, srv)
            svc = self.service_for(path)
            svc.requests.incr()
            binding = self.interpreter.binding(path, local)
            if type(binding.var.sample()) is not Ok:  # pending, or failed
                await self.settle(binding)
            route, complete = ex.prepare(path, local, binding, svc)
            if complete:  # the whole request body is here (most unary calls)
                status = await ex.exchange(route, svc)
            else:
                status = await ex.forward_streaming(route, svc)
        except _UpstreamReset as e:
            status = e.status
            srv.failure_scope.counter("reset").incr()
            s.reset(e.code)
        except RoutingError as e:
            status = e.status
            await ex.respond_error(e, e.kind)
        except _Rejected as e:
            status = e.status
            await ex.respond_error(e, e.kind)
        except StreamReset as e:
            # the downstream went away, or the response broke off mid-stream
            status = 0
            s.reset(e.code)
        finally:
            srv.inflight -= 1
            ex.finish()
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        ok = (0 < status < 500 if ex.success is None else ex.success) and ex.clean
        self.account(srv, svc, status, ok, elapsed_ms)

    # -- upstream connections -------------------------------------------------------------

    def _settings_for(self, client: Client) -> tuple[H2Settings, Scope]:
        found = self._client_settings.get(client)
        if found is None:
            name = client.id if isinstance(client.id, Path) else Path.empty
            p, _ = self.client_params.resolve(name)
            settings = H2Settings(
                initial_stream_window=p.initialStreamWindowBytes,
                initial_connection_window=p.initialConnectionWindowBytes,
                max_frame=p.maxFrameBytes,
                max_header_list=p.maxHeaderListBytes,
                header_table=p.headerTableBytes,
                window_update_ratio=_ratio(p.windowUpdateRatio),
            )
            found = (settings, client.metrics)
            self._client_settings[client] = found
            counter = _StreamCount(self)
            client.metrics.gauge("open_streams", fn=lambda: float(counter.n))
            self._counters[client] = counter
        return found

    async def connection(self, ep: Endpoint, client: Client) -> ClientConn:
        """The endpoint's connection: the current one, or a new one (one connect at once)."""
        while True:
            conn = ep.mux
            if isinstance(conn, ClientConn) and conn.usable:
                return conn
            pending = self._connecting.get(ep)
            if pending is None:
                break
            await pending.wait()
        settings, _ = self._settings_for(client)
        counter = self._counters[client]
        done = trio.Event()
        self._connecting[ep] = done
        started = trio.current_time()
        try:
            conn = await ClientConn.connect(
                ep.host,
                ep.port,
                settings,
                client.pool.connect_timeout,
                on_count=counter.count,
                tls=client.tls,
            )
            client.connects.incr()
            client.connect_latency.add((trio.current_time() - started) * 1000.0)
            ep.mux = conn
            ep.open += 1
            assert self._nursery is not None, "H2Router.run is not running"
            self._nursery.start_soon(self._run_connection, ep, client, conn)
        finally:
            del self._connecting[ep]
            done.set()
        return conn

    async def _run_connection(self, ep: Endpoint, client: Client, conn: ClientConn) -> None:
        try:
            await conn.run()
        except Exception:  # an upstream connection never takes the router down
            log.exception("h2 connection to %s failed", ep.show())
        finally:
            ep.open -= 1
            client.closes.incr()
            if ep.mux is conn:
                ep.mux = None

    def close(self) -> None:
        super().close()
        self._client_settings.clear()
        self._counters.clear()


class _StreamCount:
    """Open upstream streams of one client (and of the router)."""

    __slots__ = ("router", "n")

    def __init__(self, router: H2Router) -> None:
        self.router = router
        self.n = 0

    def count(self, delta: int) -> None:
        self.n += delta
        self.router.upstream_streams += delta


class _UpstreamReset(UpstreamError):
    """The endpoint reset the stream before its response head."""

    kind = "reset"

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Requeue(LinkpyError):
    """The request never reached the endpoint (connect failure, refused stream).

    ``free``: the endpoint's connection went away under it (GOAWAY); sending it on a
    new connection does not draw on the requeue budget.
    """

    def __init__(self, error: RoutingError, free: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.free = free


class _Body:
    """The downstream request body: read once, its beginning kept for retries.

    ``chunks`` hold every byte taken from the downstream stream while they fit in
    ``limit``; past it they are dropped and the request is no longer replayable.
    """

    __slots__ = ("stream", "limit", "chunks", "size", "overflow", "ended", "trailers")

    def __init__(self, stream: H2Stream, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False
        self.ended = False
        self.trailers: Headers | None = None

    def replayable(self) -> bool:
        return not self.overflow

    def _keep(self, data: bytes) -> None:
        if self.overflow:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.overflow = True
            self.chunks = []
        else:
            self.chunks.append(data)

    def take(self, item: tuple[int, object, int]) -> None:
        kind, value, _ = item
        if kind == DATA:
            self._keep(value)  # type: ignore[arg-type]
        elif kind == TRAILERS:
            t = check_trailers(value)  # type: ignore[arg-type]
            if isinstance(t, str):
                raise StreamReset(INTERNAL_ERROR, f"malformed request trailers: {t}")
            self.trailers = t
        elif kind == END:
            self.ended = True
        elif kind == RESET:
            raise StreamReset(value)  # type: ignore[arg-type]

    def absorb(self) -> None:
        """Take what already arrived (the whole body of most unary requests)."""
        s = self.stream
        while s.items and not self.ended:
            kind, value, _ = s.items[0]
            if kind == DATA and self.size + len(value) > self.limit:  # type: ignore[arg-type]
                return  # (the pump sends it, once)
            self.take(s.take())


class _Attempt:
    """The response head from one endpoint, its body still in the upstream stream."""

    __slots__ = (
        "status",
        "headers",
        "up",
        "client",
        "endpoint",
        "probe",
        "started",
        "latency",
        "pump",
        "done",
    )

    #: (the headers are not looked through for l5d-*: header() always looks)
    l5d = True

    def __init__(
        self,
        status: int,
        headers: Headers,
        up: H2Stream,
        client: Client,
        ep: Endpoint,
        probe: bool,
        started: float,
        pump: trio.CancelScope | None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.up = up
        self.client = client
        self.endpoint = ep
        self.probe = probe
        self.started = started
        self.latency = 0.0
        self.pump = pump
        self.done = False

    def header(self, name: bytes) -> bytes | None:
        """A trailer (when the response already ended) or else a header."""
        for kind, value, _ in self.up.items:
            if kind == TRAILERS:
                for k, v in value:  # type: ignore[attr-defined]
                    if k == name:
                        return v  # type: ignore[no-any-return]
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.endpoint.load -= 1
            if self.pump is not None:
                self.pump.cancel()
            self.up.close()

    def discard(self) -> None:
        self.finish()


class _Exchange:
    """One downstream request stream on its way through the router."""

    __slots__ = (
        "router",
        "s",
        "req",
        "srv",
        "nursery",
        "body",
        "path",
        "local",
        "reqid",
        "span",
        "root_ctx",
        "deadline",
        "headers_sent",
        "clean",
        "attempts",
        "svc",
        "success",
    )

    def __init__(self, router: H2Router, s: H2Stream, req: Request, srv: H2ServerCtx) -> None:
        self.router = router
        self.s = s
        self.req = req
        self.srv = srv
        self.nursery: trio.Nursery | None = None
        self.body: _Body | None = None
        self.path = Path.empty
        self.local = Dtab.empty
        self.reqid = b""
        #: the span of the incoming trace; None for a new root trace, whose
        #: l5d-ctx-trace value is root_ctx
        self.span: trace.TraceId | None = None
        self.root_ctx = b""
        self.deadline: bytes | None = None
        self.headers_sent = False
        #: no reset ended the exchange
        self.clean = True
        self.attempts: list[_Attempt] = []
        self.svc: Service | None = None
        #: the classification of the response (None: no response came)
        self.success: bool | None = None

    def finish(self) -> None:
        for a in self.attempts:
            a.finish()

    # -- forwarding --------------------------------------------------------------------

    def prepare(
        self, path: Path, local: Dtab, binding: Binding, svc: Service
    ) -> tuple[Route, bool]:
        """Take what the request body has sent so far and the request's context: the
        route to forward it on, and whether the body has all come.  Then
        :meth:`exchange` if it has (most unary calls), else :meth:`forward_streaming`."""
        router = self.router
        self.path = path
        self.local = local
        self.svc = svc
        body = _Body(self.s, svc.retry_buffer)
        self.body = body
        body.absorb()
        req = self.req
        parent = trace.incoming(req.headers, router.zipkin) if req.has_trace else None
        if parent is None and not router.zipkin:  # a new root trace (no TraceId made)
            root, self.root_ctx = trace.new_root()
            self.reqid = b"%016x" % root
        else:
            span = self.span = parent.child() if parent is not None else trace.TraceId.root()
            self.reqid = b"%016x" % span.trace_id
        self.deadline = _deadline(req, svc.total_timeout)
        return router.route(binding), body.ended

    async def forward_streaming(self, route: Route, svc: Service) -> int:
        """:meth:`exchange`, with the request body still streaming in: its pump runs in
        a nursery of this exchange."""
        failure: Exception | None = None
        status = 0
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            try:
                status = await self.exchange(route, svc)
            except Exception as e:  # re-raised below, outside the nursery (no group)
                failure = e
            nursery.cancel_scope.cancel()  # a request body still streaming is done
        if failure is not None:
            raise failure
        return status

    async def exchange(self, route: Route, svc: Service) -> int:
        """The service stack's attempts, then the chosen response streamed back."""
        assert self.body is not None
        result, cls = await svc.call(
            self.req.method, self.body.replayable, lambda: self.attempt(route)
        )
        assert isinstance(result, _Attempt)
        self.success = cls.success
        client = result.client
        client.success.incr() if cls.success else client.failures.incr()
        client.statuses[result.status].incr()
        client.latency.add(result.latency * 1000.0)
        await self._respond(result, b"" if self.srv.clear_context else cls.header)
        return result.status

    def _outgoing(self, target: Target, end: bool) -> Headers:
        req = self.req
        out = req.pseudo()
        via = None
        has_trace = req.has_trace
        for k, v in req.headers:
            if k in _OWN:
                if k == b"via":
                    via = v if via is None else via + b", " + v
                continue
            if has_trace and k in trace.TRACE_HEADERS:
                continue  # written afresh below
            out.append((k, v))
        out.append((b"via", VIA if via is None else via + b", " + VIA))
        out.append((b"l5d-dst-service", self.router.path_header(self.path)))
        out.append((b"l5d-dst-client", target.client_header))
        if target.residual_header:
            out.append((b"l5d-dst-residual", target.residual_header))
        # a value new on every request: kept out of the HPACK table, which then holds
        # only values that repeat (and stays short to search)
        out.append(NeverIndexed(b"l5d-reqid", self.reqid))
        if self.span is not None:
            for k, v in trace.outgoing(self.span, self.router.zipkin):
                out.append(NeverIndexed(k, v))
        elif self.root_ctx:
            out.append(NeverIndexed(b"l5d-ctx-trace", self.root_ctx))
        if self.local.dentries:
            out.append((b"l5d-ctx-dtab", self.router.dtab_header(self.local)))
        if self.deadline is not None:
            out = [(k, v) for k, v in out if k != b"l5d-ctx-deadline"]
            out.append((b"l5d-ctx-deadline", self.deadline))
        return out

    async def attempt(self, route: Route) -> _Attempt:
        """Pick a target and an endpoint, open a stream, wait for the response head."""
        router = self.router
        target = route.pick()
        client = target.client
        client.requests.incr()
        if client.addr is Addr.Pending:
            await router._wait_addr(client, self.path)
        if not client.live:
            raise no_hosts(self.path, router.interpreter.base, self.local)
        requeues = 0
        tried: set[Endpoint] = set()
        try:
            while True:
                ep = client.pick()
                if ep is None:
                    raise no_hosts(self.path, router.interpreter.base, self.local)
                if ep in tried:
                    ep = next((e for e in client.live if e not in tried and e.available), ep)
                tried.add(ep)
                probe = client.started(ep)
                started = client.clock()
                ep.load += 1
                try:
                    return await self._on(ep, client, target, probe, started)
                except _Requeue as r:
                    ep.load -= 1
                    body = self.body
                    if (
                        body is not None
                        and body.replayable()
                        and requeues < 25
                        and (r.free or (requeues <= len(client.live) and client.may_requeue()))
                    ):
                        requeues += 1
                        continue
                    raise r.error from None
                except BaseException:
                    ep.load -= 1
                    raise
        finally:
            client.requeues_per_request.add(requeues)

    async def _on(
        self, ep: Endpoint, client: Client, target: Target, probe: bool, started: float
    ) -> _Attempt:
        timeout = client.attempt_timeout
        body = self.body
        assert body is not None
        up: H2Stream | None = None
        pump: trio.CancelScope | None = None
        attempt: _Attempt | None = None
        try:
            with trio.fail_after(timeout) if timeout is not None else NO_SCOPE:
                try:
                    conn = ep.mux
                    if not (isinstance(conn, ClientConn) and conn.usable):
                        conn = await self.router.connection(ep, client)
                except ConnectFailed as e:
                    client.record(ep, trio.current_time() - started, False, probe)
                    client.connect_failed(ep)
                    raise _Requeue(
                        ConnectFailed(
                            f"Unable to establish connection to {ep.show()}: {e}. "
                            f"service name: {self.path.show()}; client name: {client.id_show}"
                        )
                    ) from None
                complete = body.ended
                empty = complete and not body.chunks and body.trailers is None
                out = self._outgoing(target, empty)
                up = conn.try_open_stream(out, empty) or await conn.open_stream(out, empty)
                if not empty:
                    if complete:
                        await self._send_buffered(up, end=True)
                    else:
                        assert self.nursery is not None
                        pump = trio.CancelScope()
                        self.nursery.start_soon(self._pump, up, pump)
                headers = await self._response_head(up, ep, client)
                attempt = _Attempt(headers[0], headers[1], up, client, ep, probe, started, pump)
                self.attempts.append(attempt)
                svc = self.svc
                if svc is not None and svc.classifier.needs_trailers:
                    await self._await_classification(up)
                return attempt
        except trio.TooSlowError:
            self._drop(up, pump, attempt)
            client.record(ep, trio.current_time() - started, False, probe)
            raise RequestTimeout(
                f"exceeded {(timeout or 0) * 1000:.0f}ms request attempt timeout "
                f"to {ep.show()} ({client.id_show})"
            ) from None
        except _Requeue:
            self._drop(up, pump, attempt)
            raise
        except ConnectionGone as e:
            # the connection closed or sent GOAWAY before the endpoint saw the request
            self._drop(up, pump, attempt)
            raise _Requeue(
                UpstreamError(f"{ep.show()} ({client.id_show}): {e}"), free=True
            ) from None
        except StreamReset as e:
            self._drop(up, pump, attempt)
            if e.code == REFUSED_STREAM:
                # RFC 9113 section 8.7: refused streams were not processed
                raise _Requeue(
                    _UpstreamReset(e.code, f"{ep.show()} refused the stream ({client.id_show})")
                ) from None
            client.record(ep, trio.current_time() - started, False, probe)
            raise _UpstreamReset(
                e.code, f"{ep.show()} reset the stream: {error_name(e.code)} ({client.id_show})"
            ) from None
        except UpstreamError:
            self._drop(up, pump, attempt)
            client.record(ep, trio.current_time() - started, False, probe)
            raise
        except BaseException:
            self._drop(up, pump, attempt)
            raise

    def _drop(
        self, up: H2Stream | None, pump: trio.CancelScope | None, attempt: _Attempt | None
    ) -> None:
        if attempt is not None:
            self.attempts.remove(attempt)
        if pump is not None:
            pump.cancel()
        if up is not None:
            up.close()

    async def _send_buffered(self, up: H2Stream, end: bool) -> None:
        body = self.body
        assert body is not None
        chunks = body.chunks
        last = len(chunks) - 1
        no_trailers = body.trailers is None
        for i, c in enumerate(chunks):
            await up.send_data(c, end=end and no_trailers and i == last)
        if end:
            if body.trailers is not None:
                up.send_trailers(body.trailers)
            elif not chunks:
                await up.send_data(b"", end=True)

    async def _pump(self, up: H2Stream, scope: trio.CancelScope) -> None:
        """Stream the request body (replaying what was kept) to one attempt's stream."""
        body = self.body
        assert body is not None
        s = self.s
        with scope:
            try:
                await self._send_buffered(up, end=False)
                while not body.ended:
                    item = await s.receive()
                    body.take(item)
                    kind, value, _ = item
                    if kind == DATA:
                        await up.send_data(value)  # type: ignore[arg-type]
                    elif kind == TRAILERS:
                        up.send_trailers(body.trailers or [])
                        return
                if body.trailers is None:
                    await up.send_data(b"", end=True)
            except StreamReset as e:
                # Either side is gone: a downstream reset cancels the whole exchange,
                # an upstream one shows on the response side.
                log.debug("request body to upstream stream %d stopped: %s", up.id, e)

    async def _response_head(
        self, up: H2Stream, ep: Endpoint, client: Client
    ) -> tuple[int, Headers]:
        while True:
            kind, value, _ = await up.receive()
            if kind == HEADERS:
                checked = check_response(value)  # type: ignore[arg-type]
                if isinstance(checked, str):
                    up.reset(INTERNAL_ERROR)
                    raise UpstreamError(f"{ep.show()} ({client.id_show}): {checked}")
                return checked
            if kind == RESET:
                raise StreamReset(value)  # type: ignore[arg-type]
            if kind == GONE:
                raise ConnectionGone(f"{ep.show()} closed the connection (GOAWAY)")
            raise UpstreamError(f"{ep.show()} ({client.id_show}): data before a response head")

    async def _await_classification(self, up: H2Stream) -> None:
        """Let a classifier that reads trailers see them, when they come in time (the
        caller checks that the classifier reads trailers)."""
        svc = self.svc
        body = self.body
        if svc is None or body is None:
            return
        if up.finished or not body.replayable():
            return
        params = svc.params
        timeout = (
            params.classificationTimeoutMs / 1000.0
            if params.classificationTimeoutMs is not None
            else DEFAULT_CLASSIFICATION_TIMEOUT
        )
        limit = (
            params.retryBufferSize.responseBytes
            if params.retryBufferSize is not None
            else DEFAULT_RESPONSE_BUFFER
        )
        with trio.move_on_after(timeout):
            while not up.finished and up.buffered <= limit:
                await up.wait()

    # -- the response ------------------------------------------------------------------------

    async def _respond(self, result: _Attempt, success_class: bytes) -> None:
        s = self.s
        up = result.up
        out: Headers = [(b":status", _status_bytes(result.status))]
        for k, v in result.headers:
            if k != b"l5d-success-class":
                out.append((k, v))
        if success_class:
            out.append((SUCCESS_CLASS, success_class))
        items = up.items
        ends_now = bool(items) and items[0][0] == END
        s.send_headers(out, end=ends_now)
        self.headers_sent = True
        if ends_now:
            return
        while True:
            kind, value, _ = up.take() if items else await up.receive()
            if kind == DATA:
                if value:
                    end = bool(items) and items[0][0] == END
                    if not s.try_send_data(value, end):  # type: ignore[arg-type]
                        await s.send_data(value, end=end)  # type: ignore[arg-type]
                    if end:
                        return
            elif kind == TRAILERS:
                t = check_trailers(value)  # type: ignore[arg-type]
                if isinstance(t, str):
                    self.clean = False
                    s.reset(INTERNAL_ERROR)
                    return
                s.send_trailers(t)
                return
            elif kind == END:
                await s.send_data(b"", end=True)
                return
            elif kind in (RESET, GONE):
                self.clean = False
                s.reset(value)  # type: ignore[arg-type]
                return

    # -- errors ---------------------------------------------------------------------------------

    async def respond_error(self, e: LinkpyError, kind: str) -> None:
        router = self.router
        srv = self.srv
        s = self.s
        status = int(getattr(e, "status", 502))
        srv.failure_scope.counter(kind).incr()
        if isinstance(e, UnidentifiedRequest):
            router.unidentified.incr()
        if self.headers_sent or s.reset_code is not None:
            self.clean = False
            s.reset(INTERNAL_ERROR)
            return
        message = str(e)
        # gRPC clients read grpc-status only from a 200 response (the gRPC spec's
        # HTTP/2 mapping): a gRPC request's error is a trailers-only 200 whose
        # grpc-status stands for Linkerd's HTTP status.
        headers: Headers = [
            (b":status", b"200" if self.req.grpc else str(status).encode()),
            (b"l5d-err", _err_header(message, router.max_headers)),
            (b"via", VIA),
        ]
        if getattr(e, "retryable", False):
            headers.append((b"l5d-retryable", b"true"))
        try:
            if self.req.grpc:
                code = GRPC_FOR_STATUS.get(status, 2)
                if isinstance(e, RequestTimeout):
                    code = GRPC_DEADLINE_EXCEEDED
                headers.append((b"content-type", b"application/grpc"))
                headers.append((b"grpc-status", str(code).encode()))
                headers.append((b"grpc-message", _grpc_message(message)))
                s.send_headers(headers, end=True)
            else:
                payload = message.encode("utf-8", "replace")[: router.max_err]
                headers.append((b"content-type", b"text/plain"))
                headers.append((b"content-length", str(len(payload)).encode()))
                s.send_headers(headers, end=not payload)
                if payload:
                    await s.send_data(payload, end=True)
        except StreamReset:
            self.clean = False


def _grpc_message(text: str) -> bytes:
    """gRPC's percent-encoding of ``grpc-message`` (printable ASCII but ``%`` kept)."""
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode("ascii")[:4096]
