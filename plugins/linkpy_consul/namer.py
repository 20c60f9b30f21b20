"""The Consul namer: one blocking-query loop per watched (datacenter, service, tag).

``/#/io.l5d.consul/<dc>/<service>[/residual]`` (or ``/<dc>/<tag>/<service>`` with
``includeTag``) binds to the instances of ``<service>`` in ``<dc>``; ``.local`` is the
agent's own datacenter (the request simply names no ``dc``).  Service and tag are
lower-cased, as Linkerd did (Consul matches both without regard to case).

Each watched key has one background loop (:class:`ServiceWatch`, shared by every
lookup and router through :class:`~linkpy.plugin.Watches`, closed when nobody has
looked at it for ``watchIdleSecs``).  The loop follows Consul's rules for blocking
queries (discovery-apis.md section 1.5): a first read without ``index``; then
``index=<last X-Consul-Index>&wait=<waitSecs>``; an index that goes backwards resets
the loop to a fresh read; an index of 0 is clamped to 1; answers are diffed and an
unchanged answer (an early wake-up) spends a token of a small bucket so that a
churning index degrades to about one read per second instead of a hot loop; errors
back off with jitter and restart without ``index`` (a restarted Consul's index means
nothing to us: Linkerd bugs #1230 and #2003).

What a lookup shows (its activity):

- ``Pending`` until the first answer (with ``failFast``: ``Failed`` at the first error);
- ``Ok(Leaf(Bound(/#/<prefix>/<dc>/[<tag>/]<service>, residual, addr)))`` while the
  service has instances that pass the filters; ``addr`` is a ``Var[Addr]`` that
  changes in place as instances come and go;
- ``Ok(Neg)`` when it has none (an unknown service or datacenter, or nothing
  healthy), so that dtab alternates fall back;
- ``Failed`` when Consul refuses the token (403) before any answer.

Once a key has had an answer, failures never change it: the last good answer stays
while the loop retries, and every failure is a log line and a metric.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import socket
import ssl
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import attrs
import httpx
import trio

from linkpy.activity import Mapped, Var
from linkpy.metrics import Scope
from linkpy.naming import (
    Addr,
    AddrBound,
    Address,
    Bound,
    Failed,
    Leaf,
    Name,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
)
from linkpy.plugin import Activity, Namer, NamerContext, Watches

from .api import (
    AgentInfo,
    ConsulError,
    Instance,
    MalformedAnswer,
    Parsed,
    TrioConsul,
    parse_agent,
    parse_catalog,
    parse_health,
)
from .config import ConsulConfig

log = logging.getLogger("linkpy.namer.consul")

#: Addr metadata key of the authority ``setHost`` asks the router to send as ``Host``
#: (Finagle's ``Metadata.authority``).
AUTHORITY_KEY = "authority"
#: Address metadata key of the instance's Consul node.
NODE_KEY = "nodeName"
LOCAL_DC = ".local"

#: Unchanged answers (early wake-ups) may come this many times in a row at once ...
QUIET_BURST = 2
#: ... and then at most this many per second.
QUIET_RATE = 1.0
#: Plain (non-blocking) reads in flight at once: a thousand watches starting together
#: (linkpy's start, or Consul coming back) are a queue, not a thundering herd.
PLAIN_READS = 32
#: Retry delays after errors: jittered exponential between these (seconds).
BACKOFF_MIN = 0.05
BACKOFF_MAX = 5.0

_DC = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NAME = re.compile(r"^[^\x00-\x20\x7f/?#]{1,256}$")

#: Value of a watch: Pending, Ok(addr var) while the service has instances, Ok(None)
#: while it has none, Failed before any answer.
SvcState = State[Var[Addr] | None]


@attrs.frozen
class SvcKey:
    """What one blocking-query loop watches."""

    dc: str  # the path segment (".local" stays ".local")
    service: str  # lower case
    tag: str | None = None  # lower case

    def show(self) -> str:
        tag = f"{self.tag}." if self.tag else ""
        return f"{tag}{self.service}@{self.dc}"


# --- pure helpers -------------------------------------------------------------------


def parse_path(path: Path, include_tag: bool) -> tuple[SvcKey, Path, Path] | None:
    """``(key, id, residual)`` of a lookup path (the id is the key's path: service and
    tag lower-cased, so every spelling shares one client), or None for a path that
    cannot name a Consul service (too short, or segments Consul would never accept)."""
    n = 3 if include_tag else 2
    if len(path.elems) < n:
        return None
    try:
        segs = [e.decode("utf-8") for e in path.elems[:n]]
    except UnicodeDecodeError:
        return None
    dc = segs[0]
    if not _DC.match(dc) or not all(_NAME.match(s) for s in segs[1:]):
        return None
    if include_tag:
        key = SvcKey(dc, segs[2].lower(), segs[1].lower())
        return key, Path.utf8(dc, key.tag or "", key.service), path.drop(n)
    key = SvcKey(dc, segs[1].lower())
    return key, Path.utf8(dc, key.service), path.drop(n)


@attrs.frozen
class Endpoint:
    host: str
    port: int
    weight: float
    metadata: tuple[tuple[str, str], ...] = ()


def endpoints(
    instances: Sequence[Instance],
    *,
    statuses: frozenset[str] | None,
    prefer_service_address: bool = True,
    tag_weights: Mapping[str, float] | None = None,
    consul_weights: bool = False,
    transfer_metadata: bool = False,
) -> tuple[list[Endpoint], list[str]]:
    """The endpoints of the instances that pass the health filter (``statuses``, or
    None for no filter), and a message per instance without an address."""
    out: list[Endpoint] = []
    problems: list[str] = []
    weights = tag_weights or {}
    for inst in instances:
        if statuses is not None and inst.status not in statuses:
            continue
        host = inst.service_address if prefer_service_address else ""
        host = host or inst.node_address
        if not host:
            problems.append(f"instance {inst.service_id or '?'} on {inst.node or '?'}: no address")
            continue
        tagged = [weights[t.lower()] for t in inst.tags if t.lower() in weights]
        weight = max(tagged) if tagged else 1.0
        if consul_weights:
            weight *= inst.weights[1] if inst.status == "warning" else inst.weights[0]
        meta: tuple[tuple[str, str], ...] = ((NODE_KEY, inst.node),) if inst.node else ()
        if transfer_metadata:
            meta = tuple(sorted({**dict(inst.node_meta), **dict(meta)}.items()))
        out.append(Endpoint(host, inst.port, weight, meta))
    return out, problems


def authority(key: SvcKey, dc: str, domain: str) -> str:
    """Linkerd's ``setHost`` authority: ``[<tag>.]<service>.service.<dc>.<domain>``."""
    tag = f"{key.tag}." if key.tag else ""
    return f"{tag}{key.service}.service.{dc}.{domain}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second (trio's clock)."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.tokens = float(burst)
        self.stamp: float | None = None

    async def take(self) -> bool:
        """Take a token, waiting for one if there is none; True if it had to wait."""
        now = trio.current_time()
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return False
        delay = (1.0 - self.tokens) / self.rate
        await trio.sleep(delay)
        self.tokens = 0.0
        self.stamp = trio.current_time()
        return True


class Backoff:
    """Jittered exponential delays ("equal jitter": between half and all of the step)."""

    def __init__(self, low: float = BACKOFF_MIN, high: float = BACKOFF_MAX) -> None:
        self.low = low
        self.high = high
        self.attempt = 0

    def next(self) -> float:
        step = min(self.high, self.low * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return random.uniform(step / 2, step)

    def reset(self) -> None:
        self.attempt = 0


# --- metrics ------------------------------------------------------------------------


class Stats:
    """The namer's metrics, under ``namer/<prefix>/``."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.lookups = scope.counter("lookups")
        svc = scope.scope("service")
        self.opens = svc.counter("opens")
        self.closes = svc.counter("closes")
        self.updates = svc.counter("updates")
        self.requests = svc.counter("requests")
        self.errors = svc.counter("errors")
        self.index_resets = svc.counter("index_resets")
        self.index_clamped = svc.counter("index_clamped")
        self.quiet_waits = svc.counter("rate_limited")
        self.bad_entries = svc.counter("bad_entries")
        self.resolve_failures = svc.counter("resolve_failures")
        self._errors_by = scope.scope("errors")
        agent = scope.scope("agent")
        self.agent_requests = agent.counter("requests")
        self.agent_errors = agent.counter("errors")

    def error(self, kind: str) -> None:
        self.errors.incr()
        self._errors_by.counter(kind).incr()


# --- the namer ----------------------------------------------------------------------


class ConsulNamer(Namer):
    """``io.l5d.consul``."""

    def __init__(self, config: ConsulConfig, ctx: NamerContext) -> None:
        self.config = config
        self.stats = Stats(ctx.metrics)
        self.include_tag = config.includeTag
        self.health = config.useHealthCheck
        statuses = frozenset(config.healthStatuses)
        self.statuses: frozenset[str] | None = statuses if self.health else None
        #: ask Consul to filter (``passing``) when only passing instances are wanted
        self.passing = self.health and statuses == {"passing"}
        self.tag_weights = config.tag_weights()
        self.wait = f"{config.waitSecs}s"
        self.timeout = config.requestTimeoutMs / 1000.0
        self.agent: AgentInfo | None = None
        #: never used for TLS (the namer speaks plain HTTP); one context for every
        #: client, instead of one built (and a CA bundle loaded) per client
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.plain_reads = trio.CapacityLimiter(PLAIN_READS)
        self.watches: Watches[SvcKey, SvcState] = Watches(
            self._watch, lambda key: Pending, idle=float(config.watchIdleSecs), name="consul watch"
        )
        self.live: dict[SvcKey, ServiceWatch] = {}
        self._lookups: dict[Path, tuple[Var[SvcState], Mapped[State[NameTree[Name]]]]] = {}
        self._neg: Var[State[NameTree[Name]]] = Var(Ok(Neg))
        ctx.metrics.gauge("service", "watches", fn=lambda: float(self.watches.open))

    # -- lookups --------------------------------------------------------------------

    def lookup(self, path: Path) -> Activity:
        self.stats.lookups.incr()
        parsed = parse_path(path, self.include_tag)
        if parsed is None:
            return self._neg
        key, id_elems, residual = parsed
        source = self.watches.get(key)
        cached = self._lookups.get(path)
        if cached is not None and cached[0] is source:
            return cached[1]
        bound_id = self.prefix.concat(id_elems)

        def tree(st: SvcState) -> State[NameTree[Name]]:
            if isinstance(st, Ok):
                if st.value is None:
                    return Ok(Neg)
                return Ok(Leaf(Bound(bound_id, residual, st.value)))
            return st  # Pending or Failed

        mapped: Mapped[State[NameTree[Name]]] = Mapped(source, tree)
        if len(self._lookups) >= 4096:
            self._forget_unused()
        self._lookups[path] = (source, mapped)
        return mapped

    def _forget_unused(self) -> None:
        for path in [p for p, (_, m) in self._lookups.items() if not m.observed]:
            del self._lookups[path]

    # -- running --------------------------------------------------------------------

    def http_client(self) -> httpx.AsyncClient:
        """An HTTP client of its own for one loop.

        Each watch has its own connection pool (of one connection): a blocking query
        holds its connection for minutes, and httpcore's pool scans every connection
        it holds on each request, so one pool shared by a thousand watches costs
        quadratic time.  The client lives exactly as long as its watch."""
        transport = httpx.AsyncHTTPTransport(
            verify=self._ssl, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
        )
        return httpx.AsyncClient(transport=transport, trust_env=False)

    def api(self, http: httpx.AsyncClient) -> TrioConsul:
        cfg = self.config
        return TrioConsul(
            http,
            host=cfg.host,
            port=cfg.port,
            token=cfg.token,
            consistency=cfg.consistencyMode,
            timeout=self.timeout,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        async with trio.open_nursery() as nursery:
            await nursery.start(self.watches.run)
            if cfg.setHost:
                nursery.start_soon(self._agent_loop)
            task_status.started()
            while True:
                await trio.sleep(max(cfg.watchIdleSecs / 2, 1.0))
                self._forget_unused()

    async def _agent_loop(self) -> None:
        """Learn the agent's datacenter and DNS domain (for ``setHost``), retrying until
        Consul answers (it may start after linkpy: Linkerd bug #2003)."""
        backoff = Backoff(high=30.0)
        failures = 0
        async with self.http_client() as http:
            api = self.api(http)
            while self.agent is None:
                self.stats.agent_requests.incr()
                try:
                    self.agent = parse_agent(await api.agent_self())
                except (ConsulError, MalformedAnswer) as e:
                    self.stats.agent_errors.incr()
                    failures += 1
                    level = logging.WARNING if failures == 1 else logging.DEBUG
                    log.log(
                        level,
                        "%s: cannot read the agent's datacenter and domain (GET /v1/agent/self): "
                        "%s; setHost uses the answers' datacenter and the domain 'consul' "
                        "meanwhile; retrying",
                        self.prefix.show(),
                        e,
                    )
                    await trio.sleep(backoff.next())
        log.info(
            "%s: agent datacenter %s, domain %s",
            self.prefix.show(),
            self.agent.datacenter,
            self.agent.domain,
        )
        for w in list(self.live.values()):
            w.refresh_metadata()

    async def _watch(self, key: SvcKey, var: Var[SvcState]) -> None:
        w = ServiceWatch(self, key, var)
        self.live[key] = w
        self.stats.opens.incr()
        try:
            await w.run()
        finally:
            self.stats.closes.incr()
            if self.live.get(key) is w:
                del self.live[key]

    # -- addresses ------------------------------------------------------------------

    def metadata(self, key: SvcKey, instances: Sequence[Instance]) -> dict[str, str]:
        """The Addr metadata of a service's answer."""
        out: dict[str, str] = {}
        if self.config.transferMetadata and instances:
            out.update(instances[0].service_meta)
        if self.config.setHost:
            if key.dc != LOCAL_DC:
                dc = key.dc
            elif self.agent is not None:
                dc = self.agent.datacenter
            else:
                dc = next((i.datacenter for i in instances if i.datacenter), "")
            domain = self.agent.domain if self.agent is not None else "consul"
            if dc:
                out[AUTHORITY_KEY] = authority(key, dc, domain)
        return out

    async def resolve(self, host: str) -> list[str]:
        """IP addresses of a host name (an IP literal is itself); [] if unknown."""
        if _is_ip(host):
            return [host]
        try:
            infos = await trio.socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return []
        return sorted({str(i[4][0]) for i in infos})

    # -- introspection --------------------------------------------------------------

    def bound_names(self) -> list[str]:
        names = []
        for key, w in self.live.items():
            if isinstance(w.var.sample(), Ok) and w.var.sample() != Ok(None):
                segs = [key.dc, key.tag, key.service] if key.tag else [key.dc, key.service]
                names.append(self.prefix.concat(Path.utf8(*[s for s in segs if s])).show())
        return sorted(names)

    def state(self) -> Mapping[str, Any]:
        return {
            "consul": f"{self.config.host}:{self.config.port}",
            "agent": attrs.asdict(self.agent) if self.agent is not None else None,
            "watches": {key.show(): w.describe() for key, w in sorted(self.live.items(), key=str)},
        }


class ServiceWatch:
    """The blocking-query loop of one key."""

    def __init__(self, namer: ConsulNamer, key: SvcKey, var: Var[SvcState]) -> None:
        self.namer = namer
        self.key = key
        self.var = var
        self.addr: Var[Addr] = Var(Addr.Pending)
        self.api: TrioConsul | None = None
        self.index = 0
        self.good = False
        self.failures = 0
        self.last_error: ConsulError | None = None
        self.instances: tuple[Instance, ...] = ()
        self.backoff = Backoff()
        self.quiet = TokenBucket(QUIET_BURST, QUIET_RATE)
        self._problems: frozenset[str] = frozenset()
        self._stats = namer.stats

    @property
    def where(self) -> str:
        tag = f" tag {self.key.tag}" if self.key.tag else ""
        return f"{self.namer.prefix.show()}: service {self.key.service}{tag} in {self.key.dc}"

    async def run(self) -> None:
        async with self.namer.http_client() as http:
            self.api = self.namer.api(http)
            await self._loop()

    async def _loop(self) -> None:
        while True:
            try:
                await self.poll()
            except ConsulError as e:
                await self.failed(e)
            except MalformedAnswer as e:
                await self.failed(ConsulError("malformed", f"unexpected answer: {e}"))
            except Exception as e:  # a bug must not end the watch (observers would hang)
                log.exception("%s: the watch loop failed", self.where)
                await self.failed(ConsulError("malformed", f"internal error: {e!r}"))

    async def poll(self) -> None:
        namer = self.namer
        api = self.api
        assert api is not None
        read = partial(
            api.service,
            self.key.service,
            dc=None if self.key.dc == LOCAL_DC else self.key.dc,
            tag=self.key.tag,
            index=self.index,
            wait=namer.wait,
            health=namer.health,
            passing=namer.passing,
        )
        self._stats.requests.incr()
        if self.index:
            index, data = await read()  # a blocking query: mostly waiting, not limited
        else:
            async with namer.plain_reads:
                index, data = await read()
        parsed = parse_health(data) if namer.health else parse_catalog(data)
        changed = await self.publish(parsed)
        self.advance(index)
        if self.failures:
            log.info(
                "%s: Consul answers again (after %d failed requests)", self.where, self.failures
            )
            self.failures = 0
            self.last_error = None
        self.backoff.reset()
        if not changed and await self.quiet.take():
            self._stats.quiet_waits.incr()

    async def publish(self, parsed: Parsed) -> bool:
        """Publish an answer; True if it changed what the namer shows."""
        namer = self.namer
        eps, problems = endpoints(
            parsed.instances,
            statuses=namer.statuses,
            prefer_service_address=namer.config.preferServiceAddress,
            tag_weights=namer.tag_weights,
            consul_weights=namer.config.useConsulWeights,
            transfer_metadata=namer.config.transferMetadata,
        )
        self._report(list(parsed.problems) + problems)
        best: dict[tuple[str, int], Address] = {}
        for ep in eps:
            ips = await namer.resolve(ep.host)
            if not ips:
                self._stats.resolve_failures.incr()
                log.warning("%s: cannot resolve %s; skipped", self.where, ep.host)
            for ip in ips:
                old = best.get((ip, ep.port))
                if old is None or old.weight < ep.weight:
                    best[(ip, ep.port)] = Address(ip, ep.port, ep.weight, dict(ep.metadata))
        self.instances = parsed.instances
        before = (self.var.version, self.addr.version)
        if best:
            self.addr.set(AddrBound(best.values(), namer.metadata(self.key, parsed.instances)))
            self.var.set(Ok(self.addr))
        else:
            self.var.set(Ok(None))
            self.addr.set(Addr.Neg)
        self.good = True
        changed = before != (self.var.version, self.addr.version)
        if changed:
            self._stats.updates.incr()
        return changed

    def refresh_metadata(self) -> None:
        """Recompute the Addr metadata (the agent's datacenter or domain arrived)."""
        addr = self.addr.sample()
        if isinstance(addr, AddrBound):
            meta = self.namer.metadata(self.key, self.instances)
            self.addr.set(AddrBound(addr.addresses, meta))

    def _report(self, problems: list[str]) -> None:
        if not problems:
            self._problems = frozenset()
            return
        self._stats.bad_entries.incr(len(problems))
        fresh = frozenset(problems)
        if fresh != self._problems:
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            shown = "; ".join(problems[:3]) + more
            log.warning("%s: skipped %d bad entries: %s", self.where, len(problems), shown)
        self._problems = fresh

    def advance(self, index: int) -> None:
        """Consul's index rules for the next blocking query."""
        if index <= 0:
            self._stats.index_clamped.incr()
            index = 1
        if index < self.index:
            self._stats.index_resets.incr()
            log.info(
                "%s: X-Consul-Index went backwards (%d after %d): reading afresh",
                self.where,
                index,
                self.index,
            )
            self.index = 0
        else:
            self.index = index

    async def failed(self, e: ConsulError) -> None:
        self._stats.error(e.kind)
        self.failures += 1
        self.last_error = e
        self.index = 0  # restart without an index: the server may have restarted
        if not self.good:
            if e.kind == "unknown_dc":
                self.var.set(Ok(None))
                self.addr.set(Addr.Neg)
            elif e.kind == "acl" or self.namer.config.failFast:
                self.var.set(Failed(e))
        if self.failures == 1:
            if self.good:
                shown = self.var.sample()
                kept = (
                    f"{len(a.addresses)} addresses"
                    if shown != Ok(None) and isinstance(a := self.addr.sample(), AddrBound)
                    else "no instances"
                )
                outcome = f"keeping the last good answer ({kept})"
            elif e.kind == "unknown_dc":
                outcome = "the name is Neg until the datacenter answers"
            elif isinstance(self.var.sample(), Failed):
                outcome = "lookups fail until Consul answers"
            else:
                outcome = "lookups wait until Consul answers"
            log.warning("%s: %s; %s; retrying", self.where, e, outcome)
        else:
            log.debug("%s: %s (failure %d in a row)", self.where, e, self.failures)
        await trio.sleep(self.backoff.next())

    def describe(self) -> dict[str, Any]:
        addr = self.addr.sample()
        return {
            "state": _show(self.var.sample()),
            "addresses": sorted(a.show() for a in addr.addresses)
            if isinstance(addr, AddrBound)
            else [],
            "index": self.index,
            "failures": self.failures,
            "lastError": str(self.last_error) if self.last_error else None,
        }


def _show(st: SvcState) -> str:
    if st is Pending:
        return "pending"
    if isinstance(st, Ok):
        return "neg" if st.value is None else "bound"
    return f"failed: {st.exc}" if isinstance(st, Failed) else repr(st)


__all__ = [
    "AUTHORITY_KEY",
    "ConsulNamer",
    "Endpoint",
    "ServiceWatch",
    "SvcKey",
    "authority",
    "endpoints",
    "parse_path",
]
