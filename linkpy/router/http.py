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
import math
import random
import socket
import ssl
import time
from functools import partial
from typing import Any, Final, Protocol, TypeVar
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
    RequestTimeout,
    RoutingError,
    UnidentifiedRequest,
    UpstreamError,
)
from ..metrics import Counter, Counters, Scope
from ..naming import Addr, AddrBound, Bound, Dtab, Failed, Ok, Path, Pending, substitute
from ..proto.http1 import (
    DATA,
    END,
    HOP_BY_HOP,
    ORDINARY_NAMES,
    UPGRADE,
    Headers,
    RequestHead,
    ResponseHead,
    chunk,
    last_chunk,
    not_forwarded,
    status_line,
)
from ..telemetry import AccessLog, Telemetry
from ..transport.http1 import (
    ClientClosed,
    ClientConnection,
    ClientTimedOut,
    RequestParsers,
    ServerConnection,
    UpstreamClosed,
    UpstreamTimedOut,
)
from ..transport.server import ConnState
from ..transport.tls import client_context, handshake, server_context
from . import classifiers, trace
from .client import Client, Endpoint, PoolConfig, make_balancer, ms, run_clock
from .identifiers import BuildsIdentifier, HeaderTokenConfig, Identifier, Message, identify
from .interpreter import Binding, Interpreter
from .params import Params
from .resilience import (
    DEFAULT_ACCRUAL_BACKOFF,
    Accrual,
    AccrualMetrics,
    RetryBudget,
    backoff,
    equal_jittered,
    policy,
)
from .routing import Route, Target, build_route, no_hosts
from .service import NO_SCOPE, Service
from .trace import TRACE_HEADERS

#: Addr metadata naming the ``Host`` to send to a bound name's addresses (Finagle's
#: ``Metadata.authority``; io.l5d.consul sets it with ``setHost: true``).
AUTHORITY_KEY = "authority"

log = logging.getLogger("linkpy.router")

VIA = b"1.1 linkpy"
_VIA_LINE: Final = b"Via: " + VIA + b"\r\n"
#: the l5d-success-class line of a response, by its classification
_SUCCESS_LINES: Final = {
    c.success: b"l5d-success-class: " + c.header + b"\r\n"
    for c in (classifiers.SUCCESS, classifiers.FAILURE)
}
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
        session = cfg.serverSession
        self.idle_time = (
            session.idleTimeMs / 1000.0 if session and session.idleTimeMs is not None else math.inf
        )
        self.life_time = (
            session.lifeTimeMs / 1000.0 if session and session.lifeTimeMs is not None else math.inf
        )
        opts = cfg.socketOptions
        self.keep_alive = bool(opts and opts.keepAlive)
        self.no_delay = opts.noDelay if opts else True
        self.read_timeout = ms(opts.readTimeoutMs if opts else None)
        self.write_timeout = ms(opts.writeTimeoutMs if opts else None)
        tls = cfg.tls
        self.tls = server_context(tls, router.alpn) if tls is not None and tls.enabled else None

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
        #: connections closed by socketOptions' readTimeoutMs / writeTimeoutMs
        self.socket_timeouts = scope.counter("socket_timeouts")
        #: TLS handshakes that failed or timed out
        self.tls_failures = scope.counter("tls", "handshake_failures")
        self.status_scope = scope.scope("status")
        self.statuses = Counters(self.status_scope)
        self.failure_scope = scope.scope("failures")
        scope.gauge("connections", fn=lambda: float(self.open_connections))
        scope.gauge("pending", fn=lambda: float(self.inflight))
        scope.gauge("load", fn=lambda: float(self.inflight))
        self.idle_closes = scope.counter("idle_closes")


def _label(path: Path | object) -> str:
    show = getattr(path, "show", None)
    text = str(show()) if callable(show) else str(path)
    return text[1:] if text.startswith("/") else text


def _err_header(message: str, limit: int) -> bytes:
    return quote_plus(message, safe="*")[:limit].encode("ascii")


class HttpRouter:
    """A ``protocol: http`` router."""

    #: the ALPN protocols offered by TLS servers and clients
    alpn: tuple[str, ...] = ("http/1.1",)

    def __init__(
        self,
        cfg: RouterConfig,
        interpreter: Interpreter,
        metrics: Scope,
        *,
        identifiers: list[Identifier] | None = None,
        telemetry: Telemetry | None = None,
        access_log: AccessLog | None = None,
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
        #: the parsers of the connections between requests (and the limits of all)
        self.parsers = RequestParsers(self.max_line, self.max_headers)
        self.max_err = cfg.maxErrResponseKB * 1024
        self.client_params = Params(cfg.client, ClientParams)
        self.client_tls = self.tls_contexts(cfg)
        self.service_params = Params(cfg.service, ServiceParams)
        self.clients: dict[object, Client] = {}
        self.services: dict[Path, Service] = {}
        self._dtab_cache: dict[bytes, Dtab] = {}
        #: l5d-dst-service and l5d-ctx-dtab values, printed once per name and local dtab
        self._path_headers: dict[Path, bytes] = {}
        self._dtab_headers: dict[Dtab, bytes] = {}
        self.servers: list[ServerCtx] = []
        self.idle_ttl = float(cfg.bindingCache.idleTtlSecs)
        #: (request count, when it last moved) of each client and service
        self._activity: dict[int, tuple[int, float]] = {}
        self.unidentified = metrics.counter("failures", "unidentified")
        self.telemetry = telemetry
        self.access_log = access_log
        propagator = cfg.tracePropagator
        self.zipkin = propagator is not None and propagator.kind == "io.l5d.zipkin"

    def tls_contexts(self, cfg: RouterConfig) -> dict[int, ssl.SSLContext]:
        """The client TLS context of each ``client`` entry with ``tls`` (by the id of its
        ``tls`` object), certificates read now: a bad file is a ConfigError here."""
        out: dict[int, ssl.SSLContext] = {}
        static = cfg.client.kind == "io.l5d.static"
        for k, entry in enumerate(cfg.client.entries):
            tls = entry.params.tls
            if tls is not None and tls.enabled:
                where = f"router {self.label}: client.{f'configs[{k}].' if static else ''}tls"
                out[id(tls)] = client_context(tls, self.alpn, where)
        return out

    def reconfigure(
        self, cfg: RouterConfig, client_tls: dict[int, ssl.SSLContext] | None = None
    ) -> None:
        """Apply a reloaded config (the same router: same protocol and servers).

        Clients and services are rebuilt when their parameters changed; requests in
        flight finish on the objects they started with.
        """
        old = self.cfg
        self.cfg = cfg
        self.dst_prefix = Path.read(cfg.dstPrefix)
        configs = cfg.identifier or [HeaderTokenConfig()]
        self.identifiers = [
            c.mk(self.dst_prefix, cfg.protocol) for c in configs if isinstance(c, BuildsIdentifier)
        ]
        self.binding_timeout = cfg.bindingTimeoutMs / 1000.0
        self.max_line = cfg.maxInitialLineKB * 1024
        self.max_headers = cfg.maxHeadersKB * 1024
        if (self.max_line, self.max_headers) != (self.parsers.max_line, self.parsers.max_headers):
            self.parsers = RequestParsers(self.max_line, self.max_headers)  # for new connections
        self.max_err = cfg.maxErrResponseKB * 1024
        if cfg.client != old.client:
            self.client_params = Params(cfg.client, ClientParams)
            self.client_tls = self.tls_contexts(cfg) if client_tls is None else client_tls
            for c in self.clients.values():
                c.close()
            self.clients.clear()
        if cfg.service != old.service:
            self.service_params = Params(cfg.service, ServiceParams)
            for s in self.services.values():
                s.close()
            self.services.clear()
        for b in self.interpreter.bindings():
            b.route = None

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
        params, variables = self.client_params.resolve(name)
        pool_cfg = params.hostConnectionPool
        session = params.clientSession
        sockopts = params.socketOptions
        pool = PoolConfig(
            min_size=pool_cfg.minSize if pool_cfg else 0,
            max_size=pool_cfg.maxSize if pool_cfg else None,
            idle_time=ms(pool_cfg.idleTimeMs if pool_cfg else None),
            max_waiters=pool_cfg.maxWaiters if pool_cfg else None,
            connect_timeout=ms(params.connectTimeoutMs) or 1.0,
            session_idle=ms(session.idleTimeMs if session else None),
            life_time=ms(session.lifeTimeMs if session else None),
            read_timeout=ms(sockopts.readTimeoutMs if sockopts else None),
            write_timeout=ms(sockopts.writeTimeoutMs if sockopts else None),
        )
        clock = run_clock()
        scope = self.metrics.labeled("client", _label(bound.id))
        accrual_cfg = params.failureAccrual
        accrual_metrics = AccrualMetrics(scope)
        backoffs = backoff(
            accrual_cfg.backoff if accrual_cfg else None,
            default=lambda: equal_jittered(*DEFAULT_ACCRUAL_BACKOFF),
        )

        def make_accrual(ep: Endpoint) -> Accrual | None:
            p = policy(accrual_cfg, clock)
            return None if p is None else Accrual(p, backoffs, clock, accrual_metrics, ep)

        client = Client(
            bound.id,
            bound.addr,
            scope,
            balancer=make_balancer(params.loadBalancer, clock),
            pool=pool,
            make_accrual=make_accrual,
            requeue_budget=RetryBudget(params.requeueBudget, clock),
            attempt_timeout=ms(params.requestAttemptTimeoutMs),
            fail_fast=bool(params.failFast),
            clock=clock,
        )
        tls = params.tls
        if tls is not None and tls.enabled:
            # commonName may use the prefix's {vars}; it is also the SNI name
            common = substitute(tls.commonName, variables) if tls.commonName else None
            client.tls = (self.client_tls[id(tls)], common)
        client.last_used = trio.current_time()
        return client

    def service_for(self, path: Path) -> Service:
        svc = self.services.get(path)
        if svc is None:
            params, _ = self.service_params.resolve(path)
            svc = Service(path, params, self.metrics.labeled("service", _label(path)))
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

    def path_header(self, path: Path) -> bytes:
        """``l5d-dst-service`` of a logical name (cached)."""
        value = self._path_headers.get(path)
        if value is None:
            if len(self._path_headers) > 10_000:
                self._path_headers.clear()
            value = self._path_headers[path] = path.show().encode("latin-1", "replace")
        return value

    def dtab_header(self, local: Dtab) -> bytes:
        """``l5d-ctx-dtab`` of a local dtab (cached, as the parsed dtabs are)."""
        value = self._dtab_headers.get(local)
        if value is None:
            if len(self._dtab_headers) > 1000:
                self._dtab_headers.clear()
            value = self._dtab_headers[local] = local.show().encode("latin-1", "replace")
        return value

    def local_dtab(self, head: Head) -> Dtab:
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
        transport: trio.abc.Stream = stream
        if srv.tls is not None:
            secured = await handshake(stream, srv.tls)
            if secured is None:
                srv.tls_failures.incr()
                return
            transport = secured
        conn = ServerConnection(
            transport,
            parsers=self.parsers,
            peer=state.peer,
            local=state.local,
            read_timeout=srv.read_timeout,
            write_timeout=srv.write_timeout,
        )
        srv.connects.incr()
        srv.open_connections += 1
        if srv.keep_alive:
            _keepalive(stream)
        if not srv.no_delay:  # trio sets TCP_NODELAY on every socket it opens
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        born = trio.current_time()
        # Without idleTimeMs and readTimeoutMs, a plain socket waits between requests
        # here, in the connection's outermost frame, without a parser (ServerConnection.idle):
        # an idle connection then holds the least memory.
        sock = conn.sock if srv.idle_time == math.inf and srv.read_timeout is None else None
        head: RequestHead | None = None
        try:
            while True:
                state.set_idle(True)
                try:
                    if sock is not None:
                        # Let the other connections run first: the client sends its
                        # next request once it has read our response, and when the
                        # router is busy the request is there by then (no wait for it,
                        # and no system calls to arm one).
                        head = None  # (the last request, while the connection waits)
                        await trio.lowlevel.checkpoint()
                        if conn.idle():
                            await trio.lowlevel.wait_readable(sock)
                            conn.wake()
                        head = conn.parsed_head()
                        if head is None:
                            head = await conn.receive_head(waited=True)
                    # A cancel scope only for serverSession.idleTimeMs: each costs on every
                    # request, and holds ~1 KB while the connection idles.
                    elif srv.idle_time == math.inf:
                        head = await conn.receive_head()
                    else:
                        with trio.move_on_after(srv.idle_time) as idle:
                            head = await conn.receive_head()
                        if idle.cancelled_caught:
                            srv.idle_closes.incr()
                            return
                except ClientTimedOut:
                    raise  # no answer: the client is not reading either
                except ClientClosed:
                    return  # the client went away (a reset keep-alive connection): no request
                except ProtocolError as e:
                    await self._reject(conn, srv, e)
                    return
                if head is None:
                    return
                state.set_idle(False)
                keep = await self.handle(conn, head, srv)
                expired = srv.life_time != math.inf and trio.current_time() - born > srv.life_time
                if not keep or state.should_close or conn.eof or expired:
                    if not keep and conn.parser.events:
                        await conn.linger()  # an unread request body
                    return
        except ClientTimedOut:
            srv.socket_timeouts.incr()
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
        srv.statuses[status].incr()
        if not conn.sent_any:
            with trio.move_on_after(1):
                try:
                    await conn.send(self._error_bytes(status, str(e), close=True))
                except ClientClosed:
                    return
            await conn.linger()

    # -- one request ---------------------------------------------------------------

    async def handle(self, conn: ServerConnection, head: RequestHead, srv: ServerCtx) -> bool:
        """Route one request; True if the connection may carry another.

        (On the path of every request a counter is counted with ``value += 1``, not
        ``incr()``: the same, without a call.)
        """
        start = time.perf_counter()
        srv.requests.value += 1
        srv.inflight += 1
        status = 0
        ok: bool | None = None  # the classification, when a response came back
        svc: Service | None = None
        path: Path | str = ""
        #: client id, the _Request (its trace span), response size: filled in by
        #: _forward, shown (as strings) only by the telemeters and the access log that
        #: want them
        info: list[Any] = ["", None, None]
        try:
            path, local = self.name(head, srv)
            svc = self.service_for(path)
            svc.requests.value += 1
            binding = self.interpreter.binding(path, local)
            if type(binding.var.sample()) is not Ok:  # (Pending, or Failed)
                await self.settle(binding)
            status, keep, ok = await self._forward(conn, head, srv, path, local, binding, svc, info)
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
        self.account(srv, svc, status, 0 < status < 500 if ok is None else ok, elapsed_ms)
        if self.telemetry is not None and self.telemetry.active:
            self._record(head, path, status, elapsed_ms, info)
        if self.access_log is not None:
            # the raw values: the log's task formats them (heads and paths are not
            # changed once parsed)
            self.access_log.add((conn.peer[0], time.time(), head, status, info[2], path))
        return keep

    def name(self, head: Head, srv: ServerCtx) -> tuple[Path, Dtab]:
        """A request's logical name and local dtab, once the server admits it.

        Raises _Rejected (over maxConcurrentRequests, CONNECT, a proxy loop) or a
        RoutingError (a bad ``l5d-dtab``, an unidentifiable request).
        """
        if srv.max_concurrent is not None and srv.inflight > srv.max_concurrent:
            raise _Rejected(503, "max concurrent requests exceeded", "overloaded")
        if head.method == b"CONNECT":
            raise _Rejected(405, "CONNECT tunnelling is not supported", "connect")
        local = Dtab.empty
        if head.has_l5d:
            if srv.clear_context:
                head.headers = [(k, v) for k, v in head.headers if not _is_context(k)]
            else:
                local = self.local_dtab(head)
        self._check_call_depth(head, srv)
        path = identify(self.identifiers, head)
        if not isinstance(path, Path):
            text = head.target.decode("latin-1")
            raise UnidentifiedRequest(
                f"Unknown destination: {head.method.decode()} {text} / {path}"
            )
        return path, local

    async def settle(self, binding: Binding) -> None:
        """Wait for a binding that is not bound yet: returns once it is, raises
        BindingTimeout, or BindingFailed if it failed.  (The routers call it only for
        a binding whose state is not Ok: most requests skip the coroutine.)"""
        st = binding.var.sample()
        if st is Pending:
            await self._wait_bound(binding)
            st = binding.var.sample()
        if isinstance(st, Failed):
            raise BindingFailed(f"binding {binding.path.show()} failed: {st.exc}")

    @staticmethod
    def account(
        srv: ServerCtx, svc: Service | None, status: int, ok: bool, elapsed_ms: float
    ) -> None:
        """A finished request in its server's and its service's metrics."""
        srv.latency.add(elapsed_ms)
        srv.statuses[status].value += 1
        if ok:
            srv.success.value += 1
        else:
            srv.failures.value += 1
        if svc is not None:
            svc.latency.add(elapsed_ms)
            if ok:
                svc.success.value += 1
            else:
                svc.failures.value += 1

    def _record(
        self, head: RequestHead, path: Path | str, status: int, elapsed_ms: float, info: list[Any]
    ) -> None:
        assert self.telemetry is not None
        state = info[1]
        span = state.trace_span() if state is not None else None
        self.telemetry.record(
            (time.time(), self.label, head, path, info[0], status, elapsed_ms, span)
        )

    def _check_call_depth(self, head: Head, srv: ServerCtx) -> None:
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
        parts: list[bytes],
        head: RequestHead,
        srv: ServerCtx,
        path: Path,
        local: Dtab,
        target: Target,
        conn: ServerConnection,
    ) -> None:
        """Append the forwarded request's header lines to ``parts`` (the pieces of the
        head's bytes), but for those of each request (l5d-reqid, trace, deadline)."""
        drop = not_forwarded(head.connection_tokens)
        if head.expect_continue:
            drop = drop | {b"expect"}
        upgrade = head.upgrade and b"upgrade" in head.connection_tokens
        via = None
        # a namer may name the authority of its addresses (io.l5d.consul's setHost)
        meta = target.client.addr
        rewrite = meta.metadata.get(AUTHORITY_KEY) if isinstance(meta, AddrBound) else None
        if isinstance(rewrite, str) and rewrite:
            drop = drop | {b"host"}
            parts += (b"Host: ", rewrite.encode("latin-1", "replace"), b"\r\n")
        ordinary = ORDINARY_NAMES if drop is HOP_BY_HOP else ()  # (kept without a look)
        for k, v in head.headers:
            if k in ordinary:
                parts += (k, b": ", v, b"\r\n")
                continue
            lk = k.lower()
            if lk in drop:
                if upgrade and (lk == b"upgrade"):
                    parts += (k, b": ", v, b"\r\n")
                continue
            if lk == b"via":
                via = v if via is None else via + b", " + v
                continue
            if (
                lk[:8] == b"l5d-dst-"
                or lk == b"l5d-reqid"
                or lk == b"l5d-ctx-deadline"
                or (head.has_trace and lk in TRACE_HEADERS)
            ):
                continue  # written afresh for each request
            parts += (k, b": ", v, b"\r\n")
        if upgrade:
            parts.append(b"Connection: upgrade\r\n")
        if head.host is None and head.target[:1] != b"/" and not rewrite:
            authority = _authority(head.target)
            if authority:
                parts += (b"Host: ", authority, b"\r\n")
        parts.append(_VIA_LINE if via is None else b"Via: " + via + b", " + VIA + b"\r\n")
        if target.dst_path is not path:
            target.dst_lines = self._dst_lines(path, target)
            target.dst_path = path
        parts.append(target.dst_lines)
        if local.dentries:
            parts += (b"l5d-ctx-dtab: ", self.dtab_header(local), b"\r\n")
        if srv.timestamp_header:
            ts = str(int(time.time() * 1000)).encode()
            parts += (srv.timestamp_header, b": ", ts, b"\r\n")
        if srv.forwarded is not None:
            parts += (b"Forwarded: ", self._forwarded(srv, conn, head), b"\r\n")
        if head.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        # (a Content-Length was kept)

    def _dst_lines(self, path: Path, target: Target) -> bytes:
        """The ``l5d-dst-*`` header lines of the requests to ``path`` through ``target``."""
        lines = b"l5d-dst-service: %s\r\nl5d-dst-client: %s\r\n" % (
            self.path_header(path),
            target.client_header,
        )
        if target.residual_header:
            lines += b"l5d-dst-residual: %s\r\n" % target.residual_header
        return lines

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
        binding: Binding,
        svc: Service,
        info: list[Any],
    ) -> tuple[int, bool, bool]:
        """Send the request through the service stack; stream the chosen response back.

        Returns the status, whether the connection stays open, and the classification.
        """
        route = self.route(binding)
        origin = head.target
        if origin[:1] != b"/" and origin != b"*":
            origin = _origin_form(origin)
        if head.expect_continue:
            # Answer the client's Expect ourselves: the endpoint gets the body at once
            # (an endpoint that ignores Expect would otherwise wait for it forever).
            await conn.send(status_line(100) + b"\r\n")
            conn.sent_any = False
        # Read the body up to the retry buffer: a body that fits can be sent again.
        body = await _Body.read(conn, head, svc.retry_buffer) if head.has_body else _NO_BODY
        deadline = _deadline(head, svc.total_timeout)
        state = _Request(self, conn, head, srv, path, local, origin, body, deadline)
        result, cls = await svc.call(head.method, body.complete, partial(state.attempt, route))
        assert isinstance(result, _H1Attempt)
        client = result.client
        info[0] = client.id_show
        info[1] = state
        info[2] = result.resp.content_length
        if cls.success:
            client.success.value += 1
        else:
            client.failures.value += 1
        client.statuses[result.status].value += 1
        client.latency.add(result.latency * 1000.0)
        if result.status == 101:
            status, keep = await self._tunnel(conn, head, result.up, result.resp, result.endpoint)
            return status, keep, True
        extra = b""
        if not srv.clear_context:
            extra = _SUCCESS_LINES[cls.success]
            resp = result.resp
            if resp.get(classifiers.SUCCESS_CLASS) is not None:
                resp.headers = [
                    (k, v) for k, v in resp.headers if k.lower() != classifiers.SUCCESS_CLASS
                ]
        keep = head.keep_alive and not conn.eof
        try:
            keep = await self._send_response(conn, head, result.resp, result.up, keep, extra)
            result.finish(reusable=result.resp.keep_alive)
        except BaseException:
            result.finish(reusable=False)
            raise
        return result.status, keep, cls.success

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
        extra: bytes = b"",
    ) -> bool:
        """Stream the response downstream; return whether the connection stays open."""
        status = resp.status
        is_head = head.method == b"HEAD"
        has_body = not is_head and status >= 200 and status not in (204, 304)
        close_delimited = has_body and not resp.chunked and resp.content_length is None
        chunked_out = resp.chunked or close_delimited
        if chunked_out and head.version != b"1.1":
            chunked_out = False
            keep = False  # an HTTP/1.0 client reads the body until we close
        framing = extra
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
                    del events[0]
                    if value:
                        out += chunk(value) if chunked_out else value  # type: ignore[arg-type,operator]
                elif kind == END:
                    del events[0]
                    if has_body and chunked_out:
                        out += last_chunk(value)  # type: ignore[arg-type]
                    sent = conn.try_send(out)
                    if sent < len(out):
                        await conn.send(out, sent)
                    return keep
                else:
                    raise UpstreamClosed("unexpected upgrade in a response")
            if out:
                await conn.send(out)
                out = b""
            up.parser.events.insert(0, await up.receive())

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
            kind, value = events.pop(0)
            if kind == UPGRADE:
                leftover_down = value  # type: ignore[assignment]
        leftover_up = b""
        upevents = up.parser.events
        while upevents:
            kind, value = upevents.pop(0)
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
        if srv.clear_context:
            # an untrusted edge learns nothing of the linker's internals (as in Linkerd)
            data = (
                status_line(status)
                + b"Content-Length: 0\r\n"
                + (b"Connection: close\r\n" if not keep else b"")
                + b"\r\n"
            )
        else:
            data = self._error_bytes(status, str(e), close=not keep, retryable=retryable)
        try:
            await conn.send(data)
        except ClientClosed:
            return False
        return keep

    # -- housekeeping -------------------------------------------------------------------

    def evict_idle(self, now: float) -> None:
        """Drop bindings, clients and services unused for ``idleTtlSecs``.

        A client or service is idle when its request counter did not move for that long.
        """
        self.interpreter.evict_idle(now)
        for client in self.clients.values():
            client.expire_idle(now)
        if self._idle(self.clients, now) | self._idle(self.services, now):
            # routes hold clients: let them be built again
            for b in self.interpreter.bindings():
                b.route = None

    def _idle(self, table: dict[K, E], now: float) -> bool:
        """Close and forget the entries whose request count stood still for ``idle_ttl``."""
        evicted = False
        for key, item in list(table.items()):
            count = item.requests.value
            seen = self._activity.get(id(item))
            if seen is None or seen[0] != count:
                self._activity[id(item)] = (count, now)
            elif now - seen[1] >= self.idle_ttl:
                del table[key]
                self._activity.pop(id(item), None)
                item.close()
                evicted = True
        return evicted

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()
        self.interpreter.close()


class _Evictable(Protocol):
    @property
    def requests(self) -> Counter: ...

    def close(self) -> None: ...


K = TypeVar("K")
E = TypeVar("E", bound=_Evictable)


class _Rejected(LinkpyError):
    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class _StaleConnection(Exception):
    """The upstream connection closed before answering a single byte."""


class _Body:
    """A request body as far as it was read before forwarding.

    ``complete``: all of it is in ``data`` (it can be sent again for a retry); else
    ``data`` is its beginning and the rest still streams from the client.
    """

    __slots__ = ("data", "complete", "trailers", "chunked", "present")

    def __init__(
        self, data: bytes, complete: bool, trailers: Headers | None, head: RequestHead
    ) -> None:
        self.data = data
        self.complete = complete
        self.trailers = trailers
        self.chunked = head.chunked
        self.present = head.has_body

    @classmethod
    async def read(cls, conn: ServerConnection, head: RequestHead, limit: int) -> _Body:
        """The body of a head that has one (``_NO_BODY`` stands for the others)."""
        if head.content_length is not None and head.content_length > limit:
            return cls(b"", False, None, head)  # too big to keep: stream it once
        parts: list[bytes] = []
        size = 0
        while True:
            kind, value = await conn.receive_body()
            if kind == DATA:
                parts.append(value)  # type: ignore[arg-type]
                size += len(value)  # type: ignore[arg-type]
                if size > limit:
                    return cls(b"".join(parts), False, None, head)
            elif kind == END:
                return cls(b"".join(parts), True, value, head)  # type: ignore[arg-type]
            else:
                raise RemoteProtocolError("unexpected upgrade in a request body")

    def framed(self) -> bytes:
        """What was read, framed for the upstream connection."""
        if not self.present:
            return b""
        if not self.chunked:
            return self.data
        out = chunk(self.data) if self.data else b""
        return out + last_chunk(self.trailers) if self.complete else out


_NO_BODY: Final = _Body(b"", True, None, RequestHead(b"GET", b"/", []))


class _HasHeaders(Protocol):
    def get_all(self, name: bytes) -> list[bytes]: ...


class Head(Message, _HasHeaders, Protocol):
    """A request head as the routers name it (HTTP/1.1's RequestHead, HTTP/2's Request)."""

    headers: Headers
    has_l5d: bool


def _is_context(name: bytes) -> bool:
    """An l5d context header, or Finagle's ``dtab-local`` (what clearContext strips)."""
    lname = name.lower()
    return lname[:4] == b"l5d-" or lname == b"dtab-local"


def _deadline(head: Head, timeout: float | None) -> bytes | None:
    """The outgoing ``l5d-ctx-deadline``: the strictest of the incoming ones and ours.

    The value is ``<start ns> <deadline ns>`` (epoch nanoseconds), as Finagle writes it.
    Deadlines are advisory, as in Linkerd: they are propagated, not enforced.
    """
    if timeout is None and not head.has_l5d:
        return None  # (most requests: no l5d-* header, no totalTimeoutMs)
    start = deadline = None
    for v in head.get_all(b"l5d-ctx-deadline"):
        try:
            ts, dl = (int(x) for x in v.split())
        except ValueError:
            continue
        start = ts if start is None else max(start, ts)
        deadline = dl if deadline is None else min(deadline, dl)
    if timeout is not None:
        now = time.time_ns()
        ours = now + int(timeout * 1e9)
        start = now if start is None else max(start, now)
        deadline = ours if deadline is None else min(deadline, ours)
    if deadline is None or start is None:
        return None
    return b"%d %d" % (start, deadline)


class _H1Attempt:
    """A response head from one endpoint, its body not yet read."""

    __slots__ = (
        "status",
        "resp",
        "up",
        "client",
        "endpoint",
        "probe",
        "started",
        "latency",
        "done",
        "l5d",
    )

    def __init__(
        self,
        resp: ResponseHead,
        up: ClientConnection,
        client: Client,
        ep: Endpoint,
        probe: bool,
        started: float,
    ) -> None:
        self.status = resp.status
        self.resp = resp
        self.up = up
        self.client = client
        self.endpoint = ep
        self.probe = probe
        self.started = started
        self.latency = 0.0
        self.done = False
        self.l5d = resp.has_l5d

    def header(self, name: bytes) -> bytes | None:
        return self.resp.get(name)

    def finish(self, reusable: bool) -> None:
        if not self.done:
            self.done = True
            self.endpoint.load -= 1
            self.endpoint.release(self.up, reusable and self.up.reusable)

    def discard(self) -> None:
        self.finish(reusable=False)


class _Request:
    """One downstream request on its way: what every attempt of it needs."""

    __slots__ = (
        "router",
        "conn",
        "head",
        "srv",
        "path",
        "local",
        "origin",
        "body",
        "deadline",
        "ids",
        "span",
        "root",
        "sent_body",
    )

    def __init__(
        self,
        router: HttpRouter,
        conn: ServerConnection,
        head: RequestHead,
        srv: ServerCtx,
        path: Path,
        local: Dtab,
        origin: bytes,
        body: _Body,
        deadline: bytes | None,
    ) -> None:
        self.router = router
        self.conn = conn
        self.head = head
        self.srv = srv
        self.path = path
        self.local = local
        self.origin = origin
        self.body = body
        self.deadline = deadline
        parent = trace.incoming(head.headers, router.zipkin) if head.has_trace else None
        # the header lines of this request's every attempt: l5d-reqid, trace, deadline
        #: the span, or None for a new root trace until trace_span() is asked
        self.span: trace.TraceId | None = None
        if parent is None and not router.zipkin:
            self.root, ctx = trace.new_root()
            ids = b"l5d-reqid: %016x\r\nl5d-ctx-trace: %s\r\n" % (self.root, ctx)
        else:
            self.root = 0
            span = self.span = parent.child() if parent is not None else trace.TraceId.root()
            if router.zipkin:
                ids = b"l5d-reqid: %016x\r\n" % span.trace_id + b"".join(
                    [b"%s: %s\r\n" % kv for kv in span.to_b3()]
                )
            else:
                ids = b"l5d-reqid: %016x\r\nl5d-ctx-trace: %s\r\n" % (
                    span.trace_id,
                    span.to_l5d(),
                )
        if deadline is not None:
            ids += b"l5d-ctx-deadline: %s\r\n" % deadline
        self.ids = ids + b"\r\n"
        #: the streamed part of the body went out already (no further attempt possible)
        self.sent_body = False

    def trace_span(self) -> trace.TraceId:
        """This request's span (of the incoming trace, or the root of a new one)."""
        if self.span is None:
            self.span = trace.TraceId.of_root(self.root)
        return self.span

    def head_bytes(self, target: Target) -> bytes:
        head = self.head
        parts = [head.method, b" ", self.origin, b" HTTP/1.1\r\n"]
        self.router._outgoing_headers(
            parts, head, self.srv, self.path, self.local, target, self.conn
        )
        parts.append(self.ids)
        return b"".join(parts)

    async def attempt(self, route: Route) -> _H1Attempt:
        """Pick a target and an endpoint; send the request; read the response head."""
        router = self.router
        target = route.pick()
        client = target.client
        client.requests.value += 1
        if client.addr is Addr.Pending:
            await router._wait_addr(client, self.path)
        if not client.live:
            raise no_hosts(self.path, router.interpreter.base, self.local)
        head_bytes = self.head_bytes(target)
        requeues = 0
        tried: set[Endpoint] | None = None  # (made on the first requeue)
        try:
            while True:
                ep = client.pick()
                if ep is None:
                    raise no_hosts(self.path, router.interpreter.base, self.local)
                if tried is not None:
                    if ep in tried:  # a requeue goes to an endpoint not tried yet
                        ep = next((e for e in client.live if e not in tried and e.available), ep)
                    tried.add(ep)
                probe = client.started(ep)
                started = client.clock()
                ep.load += 1
                try:
                    return await self._on(ep, client, probe, started, head_bytes)
                except _Requeue as e:
                    ep.load -= 1
                    if requeues < len(client.live) and requeues < 25 and client.may_requeue():
                        if tried is None:
                            tried = set()
                        tried.add(ep)
                        requeues += 1
                        continue
                    cause = f" ({e})" if str(e) else ""
                    raise ConnectFailed(
                        f"Unable to establish connection to {ep.show()}{cause}. "
                        f"service name: {self.path.show()}; client name: {client.id_show}; "
                        f"addresses: [{', '.join(e.show() for e in client.endpoints)}]"
                    ) from None
                except BaseException:
                    ep.load -= 1
                    raise
        finally:
            client.requeues_per_request.add(requeues)

    async def _on(
        self, ep: Endpoint, client: Client, probe: bool, started: float, head_bytes: bytes
    ) -> _H1Attempt:
        """One attempt on one endpoint (within the client's attempt timeout)."""
        timeout = client.attempt_timeout
        up: ClientConnection | None = None
        try:
            # (no cancel scope without a timeout: entering one costs on every request)
            with trio.fail_after(timeout) if timeout is not None else NO_SCOPE:
                for fresh in (False, True):
                    try:
                        up = await ep.connection(started)
                    except ConnectFailed as e:
                        client.record(ep, trio.current_time() - started, False, probe)
                        client.connect_failed(ep)
                        raise _Requeue(str(e)) from None
                    reused = up.uses > 0
                    try:
                        resp = await self._exchange(up, head_bytes)
                    except _StaleConnection:
                        ep.release(up, reusable=False)
                        up = None
                        if reused and not fresh and not self.sent_body:
                            continue  # the endpoint had closed the pooled connection
                        raise UpstreamError(
                            f"connection to {ep.show()} closed before a response ({client.id_show})"
                        ) from None
                    return _H1Attempt(resp, up, client, ep, probe, started)
                raise AssertionError("unreachable")
        except trio.TooSlowError:
            if up is not None:
                ep.release(up, reusable=False)
            client.record(ep, trio.current_time() - started, False, probe)
            raise RequestTimeout(
                f"exceeded {(timeout or 0) * 1000:.0f}ms request attempt timeout "
                f"to {ep.show()} ({client.id_show})"
            ) from None
        except RemoteProtocolError as e:
            if up is not None:
                ep.release(up, reusable=False)
            if isinstance(e, ClientClosed):
                raise
            client.record(ep, trio.current_time() - started, False, probe)
            raise UpstreamError(f"{ep.show()} ({client.id_show}): {e}") from None

    async def _exchange(self, up: ClientConnection, head_bytes: bytes) -> ResponseHead:
        head = self.head
        body = self.body
        up.start_request(head.method == b"HEAD")
        try:
            if body.complete:
                out = head_bytes + body.framed()
                sent = up.try_send(out)
                if sent < len(out):
                    await up.send(out, sent)
            else:
                await up.send(head_bytes + body.framed())
                self.sent_body = True
                await self.router._pump_body(self.conn, up, body.chunked)
            resp = await up.receive_head()
        except UpstreamClosed as e:
            if not up.received_any and not isinstance(e, UpstreamTimedOut):
                raise _StaleConnection() from e
            raise
        while resp.status < 200 and resp.status != 101:
            if head.version == b"1.1" and resp.status != 100:
                await self.conn.send(_response_head(resp, b""))
                self.conn.sent_any = False
            resp = await up.receive_head()
        return resp


class _Requeue(Exception):
    """A connection failure: the request never reached the endpoint."""


def _response_head(resp: ResponseHead, framing: bytes, *, keep_upgrade: bool = False) -> bytes:
    drop = not_forwarded(resp.connection_tokens)
    ordinary = ORDINARY_NAMES if drop is HOP_BY_HOP else ()  # (kept without a look)
    parts = [status_line(resp.status, resp.reason)]
    via = None
    for k, v in resp.headers:
        if k in ordinary:
            parts += (k, b": ", v, b"\r\n")
            continue
        lk = k.lower()
        if lk in drop:
            if keep_upgrade and lk in (b"upgrade", b"connection"):
                parts += (k, b": ", v, b"\r\n")
            continue
        if lk == b"via":
            via = v if via is None else via + b", " + v
            continue
        parts += (k, b": ", v, b"\r\n")
    parts.append(_VIA_LINE if via is None else b"Via: " + via + b", " + VIA + b"\r\n")
    parts.append(framing)
    parts.append(b"\r\n")
    return b"".join(parts)


def _keepalive(stream: trio.SocketStream) -> None:
    try:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError:
        pass


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
