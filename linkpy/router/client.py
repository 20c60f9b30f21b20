"""Clients: one per bound name, balancing over the endpoints its Addr lists.

A :class:`Client` follows its bound name's ``Var[Addr]``: endpoints appear and go as
the namer reports them, without failing requests in flight (a removed endpoint's busy
connections finish their request and close).  Each :class:`Endpoint` keeps a pool of
idle HTTP/1.1 connections (most recently used first), its load (requests in flight)
and its weight.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Callable
from typing import Protocol

import trio

from ..activity import Var
from ..config.schema import LoadBalancerConfig
from ..errors import ConnectFailed, Overloaded
from ..metrics import Counters, Scope
from ..naming import Addr, AddrBound, Address, AddrFailed, AddrSource, Path
from ..transport.errors import TRANSPORT_ERRORS, describe
from ..transport.http1 import ClientConnection, abort_stream
from ..transport.tls import connect_handshake
from .balancers import P2C, Aperture, Balancer, Heap, PeakEwma, RoundRobin
from .resilience import ALIVE, DEAD, Accrual, RetryBudget

log = logging.getLogger("linkpy.client")


def run_clock() -> Callable[[], float]:
    """The running trio clock's ``current_time``, bound once.

    It reads the same time as ``trio.current_time()`` (a test's ``MockClock`` too)
    without that function's two lookups of the run and its clock on every call: the
    routers read the time several times per request.  Outside a run it is
    ``trio.current_time`` itself.
    """
    try:
        return trio.lowlevel.current_clock().current_time
    except RuntimeError:
        return trio.current_time


class PoolConfig:
    """hostConnectionPool and clientSession settings of a client.

    Finagle's watermark pool: up to ``max_size`` connections per endpoint, requests past
    it wait (at most ``max_waiters`` of them); idle connections beyond ``min_size`` close
    after ``idle_time``; every connection, whatever the pool size, closes after
    ``session_idle`` idle or ``life_time`` since it opened.
    """

    __slots__ = (
        "min_size",
        "max_size",
        "max_idle",
        "idle_time",
        "max_waiters",
        "connect_timeout",
        "session_idle",
        "life_time",
        "read_timeout",
        "write_timeout",
    )

    def __init__(
        self,
        *,
        min_size: int = 0,
        max_size: int | None = None,
        max_idle: int = 64,
        idle_time: float | None = None,
        max_waiters: int | None = None,
        connect_timeout: float = 1.0,
        session_idle: float | None = None,
        life_time: float | None = None,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
    ) -> None:
        self.min_size = min_size
        self.max_size = max_size
        self.max_idle = max(max_idle, min_size)
        self.idle_time = idle_time
        self.max_waiters = max_waiters
        self.connect_timeout = connect_timeout
        self.session_idle = session_idle
        self.life_time = life_time
        #: socketOptions readTimeoutMs / writeTimeoutMs of each connection
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout

    def expired(self, conn: ClientConnection, now: float, open_: int) -> bool:
        """Whether an idle connection should close (``open_`` connections are open)."""
        idle = now - conn.idle_since
        if self.session_idle is not None and idle > self.session_idle:
            return True
        if self.life_time is not None and now - conn.born > self.life_time:
            return True
        return self.idle_time is not None and idle > self.idle_time and open_ > self.min_size


class Mux(Protocol):
    """One multiplexed connection (HTTP/2) an endpoint holds instead of a pool."""

    def close(self) -> None:
        """No new streams; close once the streams in flight are done."""


class Endpoint:
    """One address of a client: its pool (or multiplexed connection), load and health."""

    __slots__ = (
        "host",
        "port",
        "weight",
        "metadata",
        "idle",
        "mux",
        "load",
        "open",
        "waiters",
        "removed",
        "available",
        "client",
        "accrual",
        "latency_ewma",
        "latency_stamp",
        "requests",
        "failures",
    )

    def __init__(self, address: Address, client: Client) -> None:
        self.host = address.host
        self.port = address.port
        self.weight = address.weight if address.weight > 0 else 0.0
        self.metadata = address.metadata
        self.idle: list[ClientConnection] = []
        #: the HTTP/2 connection of an h2 router (opened on first use)
        self.mux: Mux | None = None
        #: requests in flight
        self.load = 0
        #: connections open (idle or busy)
        self.open = 0
        self.waiters = trio.lowlevel.ParkingLot()
        self.removed = False
        #: False while failure accrual has marked the endpoint dead
        self.available = True
        self.client = client
        self.accrual: Accrual | None = None
        self.latency_ewma = 0.0
        self.latency_stamp = 0.0
        self.requests = 0
        self.failures = 0

    @property
    def key(self) -> tuple[str, int]:
        return (self.host, self.port)

    def show(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"<Endpoint {self.show()} load={self.load}>"

    async def connection(self, now: float | None = None) -> ClientConnection:
        """A pooled connection, or a new one (waiting if the pool is at its maximum).

        ``now``: the clock's time, if the caller has just read it.
        """
        cfg = self.client.pool
        idle = self.idle
        if now is None:
            now = self.client.clock()
        while idle:
            conn = idle.pop()
            if cfg.expired(conn, now, self.open):
                self._discard(conn)
                continue
            return conn
        if cfg.max_size is not None:
            while self.open >= cfg.max_size:
                if cfg.max_waiters is not None and len(self.waiters) >= cfg.max_waiters:
                    raise Overloaded(f"connection pool for {self.show()} has too many waiters")
                await self.waiters.park()
                if idle:
                    return idle.pop()
        self.open += 1
        tls = self.client.tls
        stream: trio.abc.Stream | None = None
        started = trio.current_time()
        try:
            with trio.fail_after(cfg.connect_timeout):
                stream = await trio.open_tcp_stream(self.host, self.port)
                if tls is not None:
                    stream = await connect_handshake(stream, tls[0], tls[1])
        except BaseException as e:
            self.open -= 1
            self.waiters.unpark()
            if stream is not None:
                abort_stream(stream)
            if isinstance(e, trio.TooSlowError):
                raise ConnectFailed(f"connect to {self.show()} timed out") from None
            if tls is not None and stream is not None and isinstance(e, TRANSPORT_ERRORS):
                self.client.tls_failures.incr()
                raise ConnectFailed(
                    f"TLS handshake with {self.show()} failed: {describe(e)}"
                ) from None
            if isinstance(e, OSError):
                raise ConnectFailed(f"connect to {self.show()} failed: {describe(e)}") from None
            raise
        self.client.connects.incr()
        self.client.connect_latency.add((trio.current_time() - started) * 1000.0)
        return ClientConnection(stream, cfg.read_timeout, cfg.write_timeout)

    def release(self, conn: ClientConnection, reusable: bool) -> None:
        """Give a connection back: pooled if it can carry another request."""
        pool = self.client.pool
        if (
            reusable
            and not self.removed
            and conn.reusable
            and len(self.idle) < pool.max_idle
            and (pool.life_time is None or self.client.clock() - conn.born <= pool.life_time)
        ):
            conn.idle_since = self.client.clock()
            self.idle.append(conn)
            if self.waiters:
                self.waiters.unpark()
        else:
            self._discard(conn)

    def _discard(self, conn: ClientConnection) -> None:
        self.open -= 1
        self.waiters.unpark()
        self.client.closes.incr()
        conn.abort()

    def close_idle(self) -> None:
        while self.idle:
            self._discard(self.idle.pop())
        if self.mux is not None:
            self.mux.close()

    def expire_idle(self, now: float) -> None:
        """Close the idle connections past their idle time or lifetime, oldest first."""
        cfg = self.client.pool
        keep = []
        for conn in self.idle:  # released in order: the oldest come first
            if cfg.expired(conn, now, self.open):
                self._discard(conn)
            else:
                keep.append(conn)
        if len(keep) != len(self.idle):
            self.idle[:] = keep


class Client:
    """The load balancer and endpoints of one bound name."""

    def __init__(
        self,
        id_: Path | object,
        addr: AddrSource,
        metrics: Scope,
        *,
        balancer: Balancer | None = None,
        pool: PoolConfig | None = None,
        make_accrual: Callable[[Endpoint], Accrual | None] | None = None,
        requeue_budget: RetryBudget | None = None,
        attempt_timeout: float | None = None,
        fail_fast: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.id = id_
        #: the time of attempts, pools and budgets (:func:`run_clock` by default)
        self.clock = clock or run_clock()
        show = getattr(id_, "show", None)
        #: the id as shown (metrics, l5d-dst-client, the admin); the id never changes
        self.id_show: str = str(show()) if callable(show) else str(id_)
        self.addr_source = addr
        self.metrics = metrics
        self.balancer: Balancer = balancer or P2C()
        self.pool = pool or PoolConfig()
        self.make_accrual = make_accrual
        self.requeue_budget = requeue_budget or RetryBudget(None, self.clock)
        self.attempt_timeout = attempt_timeout
        self.fail_fast = fail_fast
        #: client TLS: the context and the name the endpoints' certificates must carry
        #: (also sent as SNI); None for plain TCP
        self.tls: tuple[ssl.SSLContext, str | None] | None = None
        self.endpoints: list[Endpoint] = []
        #: endpoints the balancer may pick (weight > 0)
        self.live: list[Endpoint] = []
        self._by_key: dict[tuple[str, int], Endpoint] = {}
        #: endpoints failure accrual marked dead (checked for their probe time on picks)
        self.dead: set[Endpoint] = set()
        self.addr: Addr = Addr.Pending
        self.last_used = 0.0
        self.requests = metrics.counter("requests")
        self.success = metrics.counter("success")
        self.failures = metrics.counter("failures")
        self.latency = metrics.stat("request_latency_ms")
        self.connects = metrics.counter("connects")
        #: how long opening a connection took (TCP, and the TLS handshake if any)
        self.connect_latency = metrics.stat("connect_latency_ms")
        self.tls_failures = metrics.counter("tls", "handshake_failures")
        self.closes = metrics.counter("closes")
        self.status_scope = metrics.scope("status")
        self.statuses = Counters(self.status_scope)
        retries = metrics.scope("retries")
        self.requeues = retries.counter("requeues")
        self.requeue_budget_exhausted = retries.counter("budget_exhausted")
        self.requeues_per_request = metrics.stat("requeues_per_request")
        metrics.gauge("loadbalancer", "size", fn=lambda: float(len(self.endpoints)))
        metrics.gauge(
            "loadbalancer",
            "available",
            fn=lambda: float(sum(1 for e in self.endpoints if e.available)),
        )
        metrics.gauge("load", fn=lambda: float(sum(e.load for e in self.endpoints)))
        # (Finagle's pending: requests dispatched and not answered, here the same as load)
        metrics.gauge("pending", fn=lambda: float(sum(e.load for e in self.endpoints)))
        metrics.gauge("connections", fn=lambda: float(sum(e.open for e in self.endpoints)))
        self._unobserve: Callable[[], None] | None = None
        if isinstance(addr, Var):
            self._unobserve = addr.observe(self._update)
        self._update(addr.sample())

    def _update(self, addr: Addr) -> None:
        if isinstance(addr, AddrFailed) and isinstance(self.addr, AddrBound):
            log.warning(
                "addresses of %s failed (%s); keeping the last ones", self.id_show, addr.message
            )
            return
        if addr is Addr.Pending and isinstance(self.addr, AddrBound):
            return
        self.addr = addr
        addresses = addr.addresses if isinstance(addr, AddrBound) else frozenset()
        new: list[Endpoint] = []
        by_key: dict[tuple[str, int], Endpoint] = {}
        for a in sorted(addresses, key=lambda a: (a.host, a.port)):
            key = (a.host, a.port)
            ep = self._by_key.get(key)
            if ep is None:
                ep = Endpoint(a, self)
                if self.make_accrual is not None:
                    ep.accrual = self.make_accrual(ep)
            else:
                ep.weight = a.weight if a.weight > 0 else 0.0
                ep.metadata = a.metadata
            by_key[key] = ep
            new.append(ep)
        for key, ep in self._by_key.items():
            if key not in by_key:
                ep.removed = True
                self.dead.discard(ep)
                ep.close_idle()
        self.endpoints = new
        self._by_key = by_key
        live = [e for e in new if e.weight > 0]
        if not live and new:  # all weights zero: share equally
            for e in new:
                e.weight = 1.0
            live = new
        self.live = live
        self.balancer.update(live)

    def pick(self) -> Endpoint | None:
        live = self.live
        if not live:
            return None
        if self.dead:
            for ep in self.dead:
                if ep.accrual is not None and ep.accrual.state == DEAD and ep.accrual.check():
                    ep.available = True  # its backoff is over: open for one probe
        return self.balancer.pick(live)

    def connect_failed(self, ep: Endpoint) -> None:
        """``failFast``: a connection failure takes the endpoint out at once."""
        if self.fail_fast and ep.accrual is not None and ep.accrual.state == ALIVE:
            ep.accrual.record_dead()
            self.dead.add(ep)
            ep.available = False

    def may_requeue(self) -> bool:
        if self.requeue_budget.try_withdraw():
            self.requeues.incr()
            return True
        self.requeue_budget_exhausted.incr()
        return False

    def started(self, ep: Endpoint) -> bool:
        """A request goes to ``ep``; True if it is the endpoint's probe."""
        acc = ep.accrual
        if acc is not None and acc.state != ALIVE and acc.started():
            ep.available = False  # one probe at a time
            return True
        return False

    def record(self, ep: Endpoint, latency: float, success: bool, probe: bool) -> None:
        """The outcome of a request to ``ep`` (for failure accrual and the balancer)."""
        ep.requests += 1
        if not success:
            ep.failures += 1
        self.balancer.observe(ep, latency, success)
        acc = ep.accrual
        if acc is None:
            return
        acc.record(success, probe)
        if acc.state == ALIVE:
            if ep in self.dead:
                self.dead.discard(ep)
                ep.available = True
        elif ep not in self.dead or acc.state == DEAD:
            if not ep.removed:
                self.dead.add(ep)
            ep.available = False

    def endpoint(self, key: tuple[str, int]) -> Endpoint | None:
        return self._by_key.get(key)

    def expire_idle(self, now: float) -> None:
        """Close the idle connections of every endpoint past their idle time or lifetime."""
        for ep in self.endpoints:
            if ep.idle:
                ep.expire_idle(now)

    def close(self) -> None:
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None
        for ep in self.endpoints:
            ep.removed = True
            ep.close_idle()
        self.metrics.remove()


def make_balancer(cfg: LoadBalancerConfig | None, clock: Callable[[], float]) -> Balancer:
    """The balancer a ``loadBalancer`` config asks for (p2c when absent)."""
    if cfg is None:
        return P2C()
    if cfg.kind == "roundRobin":
        return RoundRobin(cfg.maxEffort)
    if cfg.kind == "ewma":
        return PeakEwma(cfg.maxEffort, cfg.decayTimeMs / 1000.0, clock)
    if cfg.kind == "aperture":
        return Aperture(
            cfg.maxEffort,
            cfg.smoothWindowMs / 1000.0,
            cfg.lowLoad,
            cfg.highLoad,
            cfg.minAperture,
            clock,
        )
    if cfg.kind == "heap":
        return Heap()
    return P2C(cfg.maxEffort)


def ms(value: int | None) -> float | None:
    return None if value is None else value / 1000.0


def inf_or(value: int | None) -> float:
    return math.inf if value is None else float(value)
