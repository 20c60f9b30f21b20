"""DNS for ``/$/inet``: host names resolved off the event loop, re-resolved periodically.

:meth:`InetResolver.addr` gives the changing :class:`~linkpy.naming.Addr` of
``host:port``.  IP literals (and the empty host, the wildcard address) are answered at
once; other names start Pending, are resolved by ``getaddrinfo`` in a worker thread (as
trio does it, never blocking the loop) and, for ``/$/inet``, re-resolved every
``refresh`` seconds while anyone observes them; names nobody observes are forgotten.
An unknown name is ``Addr.Neg``; a failed lookup keeps the last good answer.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable

import trio

from ..activity import Var
from ..naming import Addr, AddrBound, Address, AddrFailed, AddrSource

log = logging.getLogger("linkpy.inet")

#: Finagle re-resolves /$/inet names every 5 seconds.
DEFAULT_REFRESH = 5.0


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Name:
    """One resolved ``host:port``: its var and whether a task is resolving it."""

    __slots__ = ("key", "var", "running")

    def __init__(
        self, key: tuple[str, int, bool], on_active: Callable[[_Name, bool], None]
    ) -> None:
        self.key = key
        self.running = False
        self.var: Var[Addr] = Var(Addr.Pending, on_active=functools.partial(on_active, self))


class InetResolver:
    """Resolves host names for the ``/$/inet`` system namer.

    A name is resolved while it is observed (a client balances over it) and for one
    ``refresh`` period after it was asked for.  A name nobody observes through a whole
    period is forgotten: its task ends and the table no longer holds it, so routing on
    arbitrary host names cannot grow the table without bound.  Whoever still holds the
    forgotten var and observes it again restarts its resolution.
    """

    def __init__(
        self,
        refresh: float = DEFAULT_REFRESH,
        lookup: Callable[[str, int, Addr], Awaitable[Addr]] | None = None,
    ) -> None:
        self.refresh = refresh
        #: one lookup of a name (getaddrinfo in a thread; tests give their own DNS)
        self.lookup = lookup or resolve
        self._names: dict[tuple[str, int, bool], _Name] = {}
        self._nursery: trio.Nursery | None = None
        self._queued: list[_Name] = []

    def __len__(self) -> int:
        """How many names are held (resolved, or being resolved)."""
        return len(self._names)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for name in self._queued:
                self._start(name)
            self._queued.clear()
            task_status.started()
            await trio.sleep_forever()

    def addr(self, host: str, port: int, fixed: bool) -> AddrSource:
        if not host:
            return AddrBound([Address("0.0.0.0", port)])
        if is_ip(host):
            return AddrBound([Address(host, port)])
        key = (host, port, fixed)
        name = self._names.get(key)
        if name is None:
            name = _Name(key, self._activated)
            self._names[key] = name
            self._start(name)
        return name.var

    def _activated(self, name: _Name, active: bool) -> None:
        if active:
            self._names.setdefault(name.key, name)
            self._start(name)

    def _start(self, name: _Name) -> None:
        if name.running:
            return
        if self._nursery is None:
            if name not in self._queued:
                self._queued.append(name)
            return
        name.running = True
        self._nursery.start_soon(self._resolve_loop, name)

    async def _resolve_loop(self, name: _Name) -> None:
        host, port, fixed = name.key
        var = name.var
        try:
            while True:
                last = var.sample()
                if not fixed or last is Addr.Pending or isinstance(last, AddrFailed):
                    var.set(await self.lookup(host, port, last))
                await trio.sleep(self.refresh)
                if not var.observed:
                    if self._names.get(name.key) is name:
                        del self._names[name.key]
                    return
        finally:
            name.running = False


async def resolve(host: str, port: int, last: Addr = Addr.Pending) -> Addr:
    """One lookup of ``host``: Bound, Neg for an unknown name, else the last answer."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            return Addr.Neg
        log.warning("resolving %s failed: %s", host, e)
        return last if isinstance(last, AddrBound) else Addr.Failed(e)
    except OSError as e:
        log.warning("resolving %s failed: %s", host, e)
        return last if isinstance(last, AddrBound) else Addr.Failed(e)
    ips = sorted({str(info[4][0]) for info in infos})
    return AddrBound([Address(ip, port) for ip in ips])
