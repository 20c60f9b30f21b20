"""DNS for /$/inet: names are re-resolved while observed and forgotten when not."""

from __future__ import annotations

import trio
import trio.lowlevel

from linkpy.activity import Var
from linkpy.naming import Addr, AddrBound, Address
from linkpy.router.inet import InetResolver


class Dns:
    """A DNS answering at once from a table, counting lookups (no thread, no clock drift)."""

    def __init__(self) -> None:
        self.lookups = 0

    async def __call__(self, host: str, port: int, last: Addr) -> Addr:
        self.lookups += 1
        await trio.lowlevel.checkpoint()
        return AddrBound([Address("127.0.0.1", port)]) if host == "localhost" else Addr.Neg


async def bound(var: Var[Addr]) -> AddrBound:
    while not isinstance(value := var.sample(), AddrBound):
        await var.wait_change(var.version)
    return value


async def test_ip_literals_need_no_lookup() -> None:
    resolver = InetResolver()
    assert resolver.addr("127.0.0.1", 80, False) == AddrBound([Address("127.0.0.1", 80)])
    assert resolver.addr("", 80, False) == AddrBound([Address("0.0.0.0", 80)])
    assert len(resolver) == 0


async def test_an_unobserved_name_is_forgotten_after_one_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dns = Dns()
    resolver = InetResolver(refresh=5.0, lookup=dns)
    async with trio.open_nursery() as nursery:
        await nursery.start(resolver.run)
        # one name per port: a router that routes on arbitrary Host headers asks for many
        vars_ = [resolver.addr("localhost", port, False) for port in range(8000, 8100)]
        assert len(resolver) == 100
        first = vars_[0]
        assert isinstance(first, Var)
        assert Address("127.0.0.1", 8000) in (await bound(first)).addresses
        await trio.sleep(11)
        assert len(resolver) == 0
        nursery.cancel_scope.cancel()


async def test_an_observed_name_is_kept_and_re_resolved(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dns = Dns()
    resolver = InetResolver(refresh=5.0, lookup=dns)
    async with trio.open_nursery() as nursery:
        await nursery.start(resolver.run)
        var = resolver.addr("localhost", 80, False)
        assert isinstance(var, Var)
        stop = var.observe(lambda _: None)
        await bound(var)
        await trio.sleep(62)
        assert len(resolver) == 1
        assert dns.lookups == 13  # once at first, then every 5 s
        assert resolver.addr("localhost", 80, False) is var
        stop()
        await trio.sleep(11)
        assert len(resolver) == 0
        # whoever still holds the forgotten var and observes it again revives it
        stop = var.observe(lambda _: None)
        assert len(resolver) == 1
        assert resolver.addr("localhost", 80, False) is var
        await trio.sleep(60)
        assert len(resolver) == 1
        stop()
        nursery.cancel_scope.cancel()


async def test_fixedinet_is_resolved_once_and_forgotten_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dns = Dns()
    resolver = InetResolver(refresh=5.0, lookup=dns)
    async with trio.open_nursery() as nursery:
        await nursery.start(resolver.run)
        var = resolver.addr("localhost", 80, True)
        assert isinstance(var, Var)
        stop = var.observe(lambda _: None)
        await bound(var)
        await trio.sleep(60)
        assert dns.lookups == 1
        assert len(resolver) == 1
        stop()
        await trio.sleep(11)
        assert len(resolver) == 0
        nursery.cancel_scope.cancel()


async def test_the_default_lookup_asks_the_system() -> None:
    resolver = InetResolver()
    async with trio.open_nursery() as nursery:
        await nursery.start(resolver.run)
        var = resolver.addr("localhost", 80, False)
        assert isinstance(var, Var)
        assert Address("127.0.0.1", 80) in (await bound(var)).addresses
        nursery.cancel_scope.cancel()
