"""DNS for ``/$/inet``: host names resolved off the event loop, re-resolved periodically.

:meth:`InetResolver.addr` gives the changing :class:`~linkpy.naming.Addr` of
``host:port``.  IP literals (and the empty host, the wildcard address) are answered at
once; other names start Pending, are resolved by ``getaddrinfo`` in a worker thread (as
trio does it, never blocking the loop) and, for ``/$/inet``, re-resolved every
``refresh`` seconds while anyone observes them.  An unknown name is ``Addr.Neg``; a
failed lookup keeps the last good answer.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

import trio

from ..activity import Var
from ..naming import Addr, AddrBound, Address, AddrSource

log = logging.getLogger("linkpy.inet")

#: Finagle re-resolves /$/inet names every 5 seconds.
DEFAULT_REFRESH = 5.0


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class InetResolver:
    """Resolves host names for the ``/$/inet`` system namer."""

    def __init__(self, refresh: float = DEFAULT_REFRESH) -> None:
        self.refresh = refresh
        self._vars: dict[tuple[str, int, bool], Var[Addr]] = {}
        self._scopes: dict[tuple[str, int, bool], trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._queued: list[tuple[str, int, bool]] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for key in self._queued:
                self._start(key)
            self._queued.clear()
            task_status.started()
            await trio.sleep_forever()

    def addr(self, host: str, port: int, fixed: bool) -> AddrSource:
        if not host:
            return AddrBound([Address("0.0.0.0", port)])
        if is_ip(host):
            return AddrBound([Address(host, port)])
        key = (host, port, fixed)
        var = self._vars.get(key)
        if var is None:
            var = Var(Addr.Pending)
            self._vars[key] = var
            self._start(key)
        return var

    def _start(self, key: tuple[str, int, bool]) -> None:
        if self._nursery is None:
            self._queued.append(key)
            return
        scope = trio.CancelScope()
        self._scopes[key] = scope
        self._nursery.start_soon(self._resolve_loop, key, scope)

    async def _resolve_loop(self, key: tuple[str, int, bool], scope: trio.CancelScope) -> None:
        host, port, fixed = key
        var = self._vars[key]
        with scope:
            while True:
                var.set(await resolve(host, port, var.sample()))
                if fixed and not isinstance(var.sample(), Addr.Failed):
                    return
                await trio.sleep(self.refresh)


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
