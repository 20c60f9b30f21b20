"""``check_namer``: the conformance suite every namer passes, built-in or third-party.

A namer test describes its backend with a :class:`NamerScenario` (how to build the
namer, which paths name an existing and a missing service, and how to add addresses,
break and mend the backend) and awaits :func:`check_namer`, which checks, over real
loopback sockets to the scenario's backend (an emulator):

1. a lookup starts Pending (before the backend answered) or is known at once;
2. it becomes Bound to the scenario's addresses when data arrives;
3. a missing service is Neg;
4. the last good answer is kept while the backend fails;
5. new addresses are seen again once the backend is back;
6. the namer's watches close when no lookup is followed any more.

Every wait is bounded (``timeout`` seconds); a broken rule raises AssertionError saying
which.  pytest is not required: the kit can run from any trio program.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from ..activity import Var
from ..naming import Addr, AddrBound, Bound, Leaf, Name, NameTree, Neg, Ok, Path, Pending, State
from ..plugin import Namer


class NamerScenario(Protocol):
    """What :func:`check_namer` needs to know about one namer and its backend."""

    def namer(self) -> Namer:
        """Build the namer (its ``prefix`` set), not yet running."""

    def existing(self) -> Path:
        """A path (after the namer's prefix) of the service the scenario controls."""

    def missing(self) -> Path:
        """A path of a service that does not exist."""

    async def set_addresses(self, addresses: list[tuple[str, int]]) -> None:
        """Make the backend list these addresses for the existing service."""

    async def break_backend(self) -> None:
        """Make the backend fail (errors, closed connections) until :meth:`mend_backend`."""

    async def mend_backend(self) -> None:
        """Make the backend answer again."""

    def open_watches(self) -> int:
        """How many watches (long polls, watch streams, pollers) the backend sees open."""


async def _until(
    var: Var[State[NameTree[Name]]],
    pred: Callable[[State[NameTree[Name]]], bool],
    what: str,
    timeout: float,
) -> None:
    with trio.move_on_after(timeout):
        while not pred(var.sample()):
            await var.wait_change(var.version)
        return
    raise AssertionError(f"{what} (after {timeout}s the lookup is {var.sample()!r})")


def _addresses(state: State[NameTree[Name]]) -> set[tuple[str, int]] | None:
    if not isinstance(state, Ok) or not isinstance(state.value, Leaf):
        return None
    bound = state.value.value
    if not isinstance(bound, Bound):
        return None
    addr = bound.sample()
    if not isinstance(addr, AddrBound):
        return None
    return {(a.host, a.port) for a in addr.addresses}


async def _addr_until(
    var: Var[State[NameTree[Name]]], want: set[tuple[str, int]], what: str, timeout: float
) -> None:
    """Wait until the lookup's bound name lists ``want`` (the tree or its Addr changing)."""
    with trio.move_on_after(timeout):
        while _addresses(var.sample()) != want:
            st = var.sample()
            waits: list[Callable[[], Awaitable[object]]] = [lambda: var.wait_change(var.version)]
            if (
                isinstance(st, Ok)
                and isinstance(st.value, Leaf)
                and isinstance(st.value.value, Bound)
            ):
                src = st.value.value.addr
                if isinstance(src, Var):
                    waits.append(lambda src=src: src.wait_change(src.version))  # type: ignore[misc]
            async with trio.open_nursery() as nursery:
                for w in waits:

                    async def one(w: Callable[[], Awaitable[object]] = w) -> None:
                        await w()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(one)
        return
    raise AssertionError(
        f"{what}: wanted {sorted(want)}, the lookup lists {_addresses(var.sample())}"
    )


async def check_namer(scenario: NamerScenario, *, timeout: float = 10.0) -> None:
    """Run the conformance checks; raise AssertionError on the first failure."""
    namer = scenario.namer()
    first = [("127.0.0.1", 18001), ("127.0.0.1", 18002)]
    async with trio.open_nursery() as nursery:
        await nursery.start(namer.run)
        # 1. before any data: Pending (or already an answer)
        var = namer.lookup(scenario.existing())
        st = var.sample()
        assert st is Pending or isinstance(st, Ok), f"a first lookup is Pending or Ok, not {st!r}"
        stop = var.observe(lambda _: None)

        # 2. bound when data arrives
        await scenario.set_addresses(first)
        await _addr_until(
            var, set(first), "the lookup becomes Bound to the backend's addresses", timeout
        )

        # 3. Neg for a missing service
        missing = namer.lookup(scenario.missing())
        stop_missing = missing.observe(lambda _: None)
        await _until(missing, lambda s: s == Ok(Neg), "a missing service is Neg", timeout)

        # 4. the last good answer survives a broken backend
        await scenario.break_backend()
        await trio.sleep(min(1.0, timeout / 4))
        assert _addresses(var.sample()) == set(first), (
            f"the last good answer is kept while the backend fails (got {var.sample()!r})"
        )
        bound = var.sample()
        assert isinstance(bound, Ok)
        leaf = bound.value
        assert isinstance(leaf, Leaf) and isinstance(leaf.value, Bound)
        assert not isinstance(leaf.value.sample(), Addr.Failed), "the addresses survive too"

        # 5. recovery
        await scenario.mend_backend()
        second = [("127.0.0.1", 18003)]
        await scenario.set_addresses(second)
        await _addr_until(var, set(second), "changes are seen once the backend is back", timeout)

        # 6. unused watches close
        stop()
        stop_missing()
        with trio.move_on_after(timeout * 4):
            while scenario.open_watches() > 0:  # noqa: ASYNC110 - the backend's count
                await trio.sleep(0.05)
        assert scenario.open_watches() == 0, (
            f"the namer's watches close when unused ({scenario.open_watches()} still open)"
        )
        nursery.cancel_scope.cancel()
