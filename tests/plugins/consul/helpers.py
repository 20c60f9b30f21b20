"""Shared pieces of the Consul namer tests: a namer over a FakeConsul, waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from linkpy.activity import Var
from linkpy.config.registry import Registry
from linkpy.metrics import Metrics
from linkpy.naming import Addr, AddrBound, Bound, Leaf, Name, NameTree, Ok, Path, State
from linkpy.plugin import NamerContext
from linkpy.testing import FakeConsul
from linkpy_consul import ConsulConfig, ConsulNamer

PREFIX = "/#/io.l5d.consul"
Tree = State[NameTree[Name]]


def registry() -> Registry:
    """The discovered plugins plus io.l5d.consul (before its entry point exists)."""
    return Registry.discover().with_plugins("linkpy.namers", {"io.l5d.consul": ConsulConfig})


def make_namer(consul: FakeConsul, metrics: Metrics | None = None, **config: Any) -> ConsulNamer:
    """A namer on ``consul`` (not running yet)."""
    config.setdefault("host", "127.0.0.1")
    config.setdefault("port", consul.port)
    namer = ConsulConfig(**config).mk(NamerContext(metrics=metrics or Metrics()))
    assert isinstance(namer, ConsulNamer)
    namer.prefix = Path.read(PREFIX)
    return namer


def bound(state: Tree) -> Bound | None:
    if isinstance(state, Ok) and isinstance(state.value, Leaf):
        b = state.value.value
        if isinstance(b, Bound):
            return b
    return None


def addresses(state: Tree) -> set[tuple[str, int]] | None:
    """The (host, port) pairs a lookup's state is bound to, or None."""
    b = bound(state)
    if b is None:
        return None
    addr = b.sample()
    if not isinstance(addr, AddrBound):
        return None
    return {(a.host, a.port) for a in addr.addresses}


async def until(var: Var[Any], pred: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """Wait until ``pred(var.sample())`` (or until the bound Addr within satisfies it)."""
    with trio.fail_after(timeout):
        while True:
            st = var.sample()
            if pred(st):
                return st
            b = bound(st)
            addr = b.addr if b is not None else None
            async with trio.open_nursery() as nursery:

                async def tree_changed() -> None:
                    await var.wait_change(var.version)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(tree_changed)
                if isinstance(addr, Var):

                    async def addr_changed(v: Var[Addr] = addr) -> None:
                        await v.wait_change(v.version)
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(addr_changed)


async def until_addresses(var: Var[Any], want: set[tuple[str, int]], timeout: float = 10.0) -> None:
    await until(var, lambda st: addresses(st) == want, timeout)


async def eventually(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``pred()`` holds: for metrics and emulator state, which have no events."""
    with trio.fail_after(timeout):
        while not pred():  # noqa: ASYNC110 - a metric or the emulator's log, not an event
            await trio.sleep(0.02)


def requests_for(consul: FakeConsul, service: str, kind: str = "catalog") -> list[Any]:
    return consul.requests_to(f"/v1/{kind}/service/{service}")
