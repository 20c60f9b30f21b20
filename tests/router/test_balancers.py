"""Load balancers over endpoints with load and weights."""

from __future__ import annotations

import random
from collections import Counter

from linkpy.metrics import Metrics
from linkpy.naming import AddrBound, Address
from linkpy.router.balancers import P2C, RoundRobin
from linkpy.router.client import Client


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
