"""The namer: a config class (the YAML keys) and a Namer publishing activities."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import attrs
import httpx
import trio

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
from linkpy.plugin import Activity, Mapped, Namer, NamerConfig, NamerContext, Var, Watches

log = logging.getLogger("linkpy_example")

#: What a watch publishes: Pending, Ok(addr var) while the service exists, Ok(None)
#: while it does not, Failed if the registry failed before its first answer.
ServiceState = State[Var[Addr] | None]


@attrs.frozen(kw_only=True)
class RegistryConfig(NamerConfig):
    """``kind: com.example.registry``.  The fields are the YAML keys (camelCase, as in
    Linkerd); linkpy reads them strictly and reports bad ones with their YAML path."""

    #: the registry's base URL, e.g. http://127.0.0.1:8500
    url: str
    #: how often each watched service is read again
    pollIntervalMs: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    #: deadline of one request
    timeoutMs: int = attrs.field(default=5000, validator=attrs.validators.gt(0))

    default_prefix = "/com.example.registry"

    def mk(self, ctx: NamerContext) -> Namer:
        return RegistryNamer(self, ctx)


def parse_addresses(data: object) -> list[Address]:
    """The registry's JSON answer as addresses; raises ValueError if it is malformed.

    Keep parsing pure (no I/O): it is then easy to test on canned answers."""
    if not isinstance(data, dict) or not isinstance(data.get("addresses"), list):
        raise ValueError('expected {"addresses": [...]}')
    out = []
    for item in data["addresses"]:
        host, sep, port = str(item).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad address {item!r}")
        out.append(Address(host, int(port)))
    return out


class RegistryNamer(Namer):
    """One poller per watched service, shared by every lookup of it, closed when idle."""

    def __init__(self, config: RegistryConfig, ctx: NamerContext) -> None:
        self.config = config
        self.http: httpx.AsyncClient | None = None
        self.watches: Watches[str, ServiceState] = Watches(
            self._watch, lambda name: Pending, idle=30.0, name="registry watch"
        )
        self._lookups: dict[Path, tuple[Var[ServiceState], Mapped[State[NameTree[Name]]]]] = {}
        self._neg: Var[State[NameTree[Name]]] = Var(Ok(Neg))
        # metrics live under namer/<prefix>/ (ctx.metrics is that scope)
        self.lookups = ctx.metrics.counter("lookups")
        self.updates = ctx.metrics.counter("updates")
        self.errors = ctx.metrics.counter("errors")
        ctx.metrics.gauge("watches", fn=lambda: float(self.watches.open))

    def lookup(self, path: Path) -> Activity:
        """Called on the event loop for every binding: never block, never do I/O here."""
        self.lookups.incr()
        if not path.elems:
            return self._neg
        name = path.elems[0].decode("utf-8", "replace")
        source = self.watches.get(name)  # starts the watch on first use
        cached = self._lookups.get(path)
        if cached is not None and cached[0] is source:
            return cached[1]  # the same var for the same path while it is in use
        bound_id = self.prefix.concat(Path((path.elems[0],)))
        residual = path.drop(1)

        def tree(st: ServiceState) -> State[NameTree[Name]]:
            if isinstance(st, Ok):
                return (
                    Ok(Neg) if st.value is None else Ok(Leaf(Bound(bound_id, residual, st.value)))
                )
            return st

        mapped = Mapped(source, tree)  # follows the watch only while observed
        self._lookups = {p: v for p, v in self._lookups.items() if v[1].observed}
        self._lookups[path] = (source, mapped)
        return mapped

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """linkpy starts this in its nursery; everything the namer does runs inside it."""
        async with httpx.AsyncClient(trust_env=False) as http:
            self.http = http
            async with trio.open_nursery() as nursery:
                await nursery.start(self.watches.run)
                task_status.started()  # never wait for the backend before this

    async def _watch(self, name: str, var: Var[ServiceState]) -> None:
        """Keep ``var`` current until cancelled (when nobody looks at ``name`` any more)."""
        assert self.http is not None
        addr: Var[Addr] = Var(Addr.Pending)  # updated in place as addresses change
        good = False
        delay = 0.0
        url = f"{self.config.url.rstrip('/')}/v1/services/{name}"
        while True:
            try:
                r = await self.http.get(url, timeout=self.config.timeoutMs / 1000)
                if r.status_code == 404:
                    var.set(Ok(None))  # Neg: dtab alternates fall back
                    addr.set(Addr.Neg)
                elif r.status_code == 200:
                    addresses = parse_addresses(r.json())
                    if addr.sample() != AddrBound(addresses):
                        self.updates.incr()
                    addr.set(AddrBound(addresses))
                    var.set(Ok(addr))
                else:
                    raise ValueError(f"status {r.status_code}")
                good = True
                delay = 0.0
                await trio.sleep(self.config.pollIntervalMs / 1000)
            except (httpx.HTTPError, ValueError) as e:  # never BaseException: Cancelled passes
                self.errors.incr()
                log.warning("%s: %s: %s; keeping the last answer", self.prefix.show(), name, e)
                if not good:
                    var.set(Failed(e))
                delay = min(5.0, max(0.05, delay * 2))  # jittered exponential backoff
                await trio.sleep(random.uniform(delay / 2, delay))

    def bound_names(self) -> list[str]:
        return sorted(
            self.prefix.concat(Path.utf8(n)).show()
            for n, v in self.watches.vars().items()
            if isinstance(v.sample(), Ok) and v.sample() != Ok(None)
        )

    def state(self) -> Mapping[str, Any]:
        return {"url": self.config.url, "watches": sorted(self.watches.keys())}
