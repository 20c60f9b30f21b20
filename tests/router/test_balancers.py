"""Load balancers over endpoints with load and weights."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import trio
import trio.testing

from linkpy.metrics import Metrics
from linkpy.naming import AddrBound, Address
from linkpy.router.balancers import P2C, PeakEwma, RoundRobin
from linkpy.router.client import Client, Endpoint
from linkpy.router.resilience import Accrual, AccrualMetrics, ConsecutiveFailures, constant


def client(*weights: float, balancer: P2C | RoundRobin) -> Client:
    addrs = AddrBound([Address("127.0.0.1", 1000 + i, w) for i, w in enumerate(weights)])
    return Client("c", addrs, Metrics().scope("c"), balancer=balancer)


def test_p2c_prefers_the_less_loaded() -> None:
    c = client(1, 1, balancer=P2C(rnd=random.Random(1)))
    busy, idle = c.endpoints
    busy.load = 10
    picks = Counter(c.pick() for _ in range(200))
    assert picks[idle] == 200  # with two endpoints, both are always compared


def test_p2c_respects_weights() -> None:
    c = client(3, 1, balancer=P2C(rnd=random.Random(2)))
    heavy, _ = c.endpoints
    picks: Counter[object] = Counter()
    for _ in range(4000):
        e = c.pick()
        assert e is not None
        picks[e] += 1
        e.load += 1  # requests stay in flight: the balancer must spread by weight
    share = picks[heavy] / 4000
    assert 0.70 < share < 0.80


def test_p2c_skips_unavailable() -> None:
    c = client(1, 1, 1, balancer=P2C(rnd=random.Random(3)))
    for e in c.endpoints[:2]:
        e.available = False
    assert all(c.pick() is c.endpoints[2] for _ in range(100))


def test_p2c_sends_a_failing_endpoint_one_request_at_a_time() -> None:
    c = client(1, 1, balancer=P2C(rnd=random.Random(4)))
    busy, failing = c.endpoints
    busy.load = 3
    c.record(failing, 0.001, False, False)  # e.g. a connection refused
    failing.load = 1
    assert all(c.pick() is busy for _ in range(50))  # least loaded, but failing and busy
    failing.load = 0
    assert c.pick() is failing  # idle: it competes as any other (never starved)
    c.record(failing, 0.01, True, False)
    failing.load = 1
    assert c.pick() is failing  # a success ends the restriction


async def test_p2c_dead_endpoint_gets_no_more_attempts_than_accrual_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """1,000 requests/s (for 0.3 s) over 10 endpoints answering in 12 ms and one whose
    connections fail after 2 ms; failure accrual removes it after 5 failures in a row.  Least loaded
    favours the failing endpoint (nothing in flight), and a request arriving while an
    attempt on it is still failing went there too: with some draws the 5th failure
    left a 6th attempt in flight."""
    worst = 0
    for seed in range(20):
        accrual_metrics = AccrualMetrics(Metrics().scope("c"))
        c = Client(
            "c",
            AddrBound([Address("127.0.0.1", 1000 + i) for i in range(11)]),
            Metrics().scope("c"),
            balancer=P2C(rnd=random.Random(seed)),
            make_accrual=lambda ep: Accrual(
                ConsecutiveFailures(5),
                lambda: constant(60.0),
                trio.current_time,
                accrual_metrics,  # noqa: B023 - used at once, in this iteration
                ep,
            ),
        )
        dead = c.endpoints[-1]
        attempts = 0

        async def one(c: Client = c, dead: Endpoint = dead) -> None:
            nonlocal attempts
            ep = c.pick()
            assert ep is not None
            probe = c.started(ep)
            ep.load += 1
            if ep is dead:
                attempts += 1
                await trio.sleep(0.002)
                c.record(ep, 0.002, False, probe)
            else:
                await trio.sleep(0.012)
                c.record(ep, 0.012, True, probe)
            ep.load -= 1

        async with trio.open_nursery() as nursery:
            for _ in range(300):
                nursery.start_soon(one)
                await trio.sleep(0.001)
        assert not dead.available
        worst = max(worst, attempts)
    assert worst == 5


def test_round_robin_smooth_weights() -> None:
    c = client(2, 1, balancer=RoundRobin())
    a, b = c.endpoints
    order = [c.pick() for _ in range(6)]
    assert order.count(a) == 4 and order.count(b) == 2
    assert order[:3] in ([a, b, a], [a, a, b])


def test_zero_weight_endpoints_get_nothing() -> None:
    c = client(0, 1, balancer=RoundRobin())
    _, one = c.endpoints
    assert all(c.pick() is one for _ in range(10))
    c2 = client(0, 0, balancer=RoundRobin())
    assert {c2.pick() for _ in range(10)} == set(c2.endpoints)


def test_endpoints_follow_the_addr() -> None:
    from linkpy.activity import Var
    from linkpy.naming import Addr

    var: Var[Addr] = Var(Addr.Pending)
    c = Client("c", var, Metrics().scope("c"))
    assert c.pick() is None
    var.set(AddrBound([Address("127.0.0.1", 1), Address("127.0.0.1", 2)]))
    first = c.endpoints[0]
    assert len(c.endpoints) == 2
    var.set(AddrBound([Address("127.0.0.1", 1)]))
    assert c.endpoints == [first] and not first.removed
    var.set(Addr.Failed("down"))
    assert c.endpoints == [first]  # keeps the last good set
    var.set(Addr.Neg)
    assert c.endpoints == [] and first.removed


# --- peak EWMA (Finagle's PeakEwma) --------------------------------------------------


def ewma_client(n: int, seed: int) -> Client:
    """A client over ``n`` endpoints, its peak EWMA on trio's (virtual) clock."""
    addrs = AddrBound([Address("127.0.0.1", 1000 + i) for i in range(n)])
    lb = PeakEwma(decay=10.0, clock=trio.current_time, rnd=random.Random(seed))
    return Client("c", addrs, Metrics().scope("c"), balancer=lb)


async def test_peak_ewma_tries_again_an_endpoint_that_was_slow_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One slow answer must not keep an endpoint out of the traffic for good.

    Traffic at 100 requests/s: ``a`` answers once in 1 s, then as fast as ``b``.  Its
    cost decays while it is not picked (Finagle decays it at each look), so within
    about ``decay * ln(1 s / 10 ms)`` = 46 s it is tried again, and it then gets its
    share.  Without the decay its cost stayed at 1 s, a hundred times ``b``'s, and
    it was never picked again.
    """
    c = ewma_client(2, seed=7)
    a, b = c.endpoints
    c.record(a, 1.0, True, False)
    c.record(b, 0.01, True, False)
    picks: list[object] = []
    for _ in range(9000):  # 90 s
        await trio.sleep(0.01)
        e = c.pick()
        assert e is not None
        picks.append(e)
        c.record(e, 0.01, True, False)
    assert a not in picks[:3000]  # the first 30 s: still paying for its peak
    assert picks[-3000:].count(a) > 1000  # the last 30 s: back in the traffic


async def test_peak_ewma_cost_decays_by_half_in_decay_ln2(
    autojump_clock: trio.testing.MockClock,
) -> None:
    c = ewma_client(2, seed=1)
    a, _ = c.endpoints
    lb = c.balancer
    assert isinstance(lb, PeakEwma)
    c.record(a, 0.2, True, False)
    assert lb.cost(a) == pytest.approx(0.2, rel=1e-3)
    await trio.sleep(10.0 * math.log(2))  # not heard from: the cost decays
    assert lb.cost(a) == pytest.approx(0.1, rel=1e-3)
    c.record(a, 0.3, True, False)  # a peak replaces the average at once
    assert lb.cost(a) == pytest.approx(0.3, rel=1e-3)


def test_peak_ewma_does_not_pile_onto_an_endpoint_without_history() -> None:
    """A new endpoint (no answer yet) with a request in flight is not picked again
    before it answers: without the penalty its cost was zero times its load, so it
    took every request that compared it until its first answer came back."""
    c = Client(
        "c",
        AddrBound([Address("127.0.0.1", 1000), Address("127.0.0.1", 1001)]),
        Metrics().scope("c"),
        balancer=PeakEwma(clock=lambda: 0.0, rnd=random.Random(2)),
    )
    old, new = c.endpoints
    c.record(old, 0.05, True, False)
    old.load = 3
    assert c.pick() is new  # nothing in flight there yet: its first request
    new.load = 1
    assert all(c.pick() is old for _ in range(50))
    c.record(new, 0.01, True, False)  # its first answer: now it competes on cost
    new.load = 0
    assert c.pick() is new
