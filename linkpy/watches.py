"""Shared, evictable watches for namers (part of the plugin API, see :mod:`linkpy.plugin`).

A namer that watches its backend per object (a Kubernetes Endpoints, a Consul service)
keeps one watch per object however many lookups and routers use it, and closes the
watches nobody follows any more (Linkerd 1.x kept them forever: issues #1361, #1766).

:class:`Watches` maps a key to a :class:`~linkpy.activity.Var` whose value a background
task (``watch(key, var)``) keeps current.  The task starts on the first ``get(key)`` and
is cancelled once the var has had no observer for ``idle`` seconds.  A watch that
raises (a bug in it) is logged, counted and restarted after a backoff, on the same var:
the names already bound to it stay current.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import trio

from .activity import Var

#: Restart backoff of a watch that raised: doubling from the first to the last.
RESTART_BACKOFF = (1.0, 30.0)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger("linkpy.watches")


class _Entry(Generic[V]):
    __slots__ = ("var", "scope", "idle_since")

    def __init__(self, var: Var[V]) -> None:
        self.var = var
        self.scope = trio.CancelScope()
        self.idle_since: float | None = None


class Watches(Generic[K, V]):
    """One background watch per key, while anybody observes its var."""

    def __init__(
        self,
        watch: Callable[[K, Var[V]], Awaitable[None]],
        initial: Callable[[K], V],
        *,
        idle: float = 30.0,
        name: str = "watch",
    ) -> None:
        self.watch = watch
        self.initial = initial
        self.idle = idle
        self.name = name
        self._entries: dict[K, _Entry[V]] = {}
        self._nursery: trio.Nursery | None = None
        self._pending: list[K] = []
        #: How many times a watch raised (and was restarted).
        self.crashes = 0

    def get(self, key: K) -> Var[V]:
        """The var of ``key``, starting its watch if there is none."""
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(Var(self.initial(key)))
            entry.idle_since = trio.current_time()
            self._entries[key] = entry
            self._start(key, entry)
        return entry.var

    def _start(self, key: K, entry: _Entry[V]) -> None:
        if self._nursery is None:
            self._pending.append(key)
        else:
            self._nursery.start_soon(self._run_one, key, entry, name=f"{self.name} {key!r}")

    async def _run_one(self, key: K, entry: _Entry[V]) -> None:
        delay, most = RESTART_BACKOFF
        with entry.scope:
            while True:
                try:
                    await self.watch(key, entry.var)
                    return  # done: the var keeps its value until the entry idles out
                except Exception:
                    self.crashes += 1
                    log.exception("%s of %r failed; restarting in %.0fs", self.name, key, delay)
                await trio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, most)

    @property
    def open(self) -> int:
        """How many watches are running."""
        return len(self._entries)

    def keys(self) -> list[K]:
        return list(self._entries)

    def vars(self) -> dict[K, Var[V]]:
        return {k: e.var for k, e in self._entries.items()}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the watch tasks; close the idle ones.  Run it in the namer's ``run``."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for key in self._pending:
                entry = self._entries.get(key)
                if entry is not None:
                    self._start(key, entry)
            self._pending.clear()
            task_status.started()
            while True:
                await trio.sleep(max(self.idle / 4, 0.01))
                self.close_idle()

    def close_idle(self) -> int:
        """Cancel the watches unobserved for ``idle`` seconds; return how many."""
        now = trio.current_time()
        closed = 0
        for key, entry in list(self._entries.items()):
            if entry.var.observed:
                entry.idle_since = None
                continue
            if entry.idle_since is None:
                entry.idle_since = now
            elif now - entry.idle_since >= self.idle:
                entry.scope.cancel()
                del self._entries[key]
                closed += 1
        return closed
