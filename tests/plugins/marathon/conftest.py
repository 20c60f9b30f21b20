"""Fixtures of the Marathon namer tests: the emulator on loopback, namers over it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from linkpy.activity import Var
from linkpy.metrics import Metrics, Scope
from linkpy.naming import AddrBound, Bound, Leaf, Name, NameTree, Ok, Path, State
from linkpy.plugin import NamerContext
from linkpy.testing import FakeMarathon
from linkpy_marathon import MarathonConfig, MarathonNamer
from linkpy_marathon.auth import Auth

PREFIX = Path.read("/#/io.l5d.marathon")


@pytest.fixture
async def marathon(nursery: trio.Nursery) -> FakeMarathon:
    fake = FakeMarathon(seed=1)
    await nursery.start(fake.serve)
    return fake


def build(
    fake: FakeMarathon, *, auth: Auth | None = None, **keys: Any
) -> tuple[MarathonNamer, Scope]:
    """A namer over ``fake`` (not running): short intervals unless ``keys`` say otherwise."""
    keys.setdefault("ttlMs", 200)
    keys.setdefault("jitterMs", 20)
    keys.setdefault("watchIdleTtlMs", 300)
    keys.setdefault("requestTimeoutMs", 2000)
    cfg = MarathonConfig(host="127.0.0.1", port=fake.port or 0, **keys)
    scope = Metrics().scope("namer", "io.l5d.marathon")
    namer = MarathonNamer(cfg, NamerContext(metrics=scope), auth=auth or Auth())
    namer.prefix = PREFIX
    return namer, scope


StartNamer = Callable[..., Awaitable[tuple[MarathonNamer, Scope]]]


@pytest.fixture
def start_namer(nursery: trio.Nursery, marathon: FakeMarathon) -> StartNamer:
    """``namer, metrics = await start_namer(**keys)``: a running namer over the emulator."""

    async def start(
        fake: FakeMarathon | None = None, auth: Auth | None = None, **keys: Any
    ) -> tuple[MarathonNamer, Scope]:
        namer, scope = build(fake or marathon, auth=auth, **keys)
        await nursery.start(namer.run)
        return namer, scope

    return start


async def eventually(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait until ``cond()`` holds (checked every 10 ms), at most ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while not cond():  # noqa: ASYNC110 - state of several objects, some in other tasks
            await trio.sleep(0.01)
        return
    raise AssertionError(f"{what}: still false after {timeout}s")


def addrs(var: Var[State[NameTree[Name]]]) -> set[tuple[str, int]] | None:
    """The (host, port)s a lookup is bound to, or None when it is not bound."""
    bound = bound_of(var)
    if bound is None:
        return None
    addr = bound.sample()
    return {(a.host, a.port) for a in addr.addresses} if isinstance(addr, AddrBound) else None


def bound_of(var: Var[State[NameTree[Name]]]) -> Bound | None:
    st = var.sample()
    if isinstance(st, Ok) and isinstance(st.value, Leaf) and isinstance(st.value.value, Bound):
        return st.value.value
    return None


def follow(var: Var[Any]) -> Callable[[], None]:
    """Observe a var (as a router would); returns the function that stops."""
    return var.observe(lambda _: None)
