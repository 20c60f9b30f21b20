"""Load balancers: pick one endpoint of a client for each request.

Every balancer honours endpoint weights (from the namer: a file line's ``* weight``, a
Consul tag weight) and skips endpoints that are not available (failure accrual marked
them dead), trying at most ``maxEffort`` times before taking the best it saw.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .client import Endpoint


class Balancer(Protocol):
    def pick(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        """Choose an endpoint; ``endpoints`` is never empty."""

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """The endpoint set changed."""


def _weighted_index(endpoints: Sequence[Endpoint], total: float, rnd: random.Random) -> int:
    x = rnd.random() * total
    for i, e in enumerate(endpoints):
        x -= e.weight
        if x < 0:
            return i
    return len(endpoints) - 1


class P2C:
    """Power of two choices, least loaded (Finagle's ``p2c``): of two endpoints drawn at
    random (in proportion to their weights), the one with the lower load per weight."""

    def __init__(self, max_effort: int = 5, rnd: random.Random | None = None) -> None:
        self.max_effort = max_effort
        self.rnd = rnd or random.Random()
        self._total = 0.0
        self._uniform = True

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._total = sum(e.weight for e in endpoints)
        self._uniform = (
            all(e.weight == endpoints[0].weight for e in endpoints) if endpoints else True
        )

    def _two(self, endpoints: Sequence[Endpoint]) -> tuple[Endpoint, Endpoint]:
        r = self.rnd.random
        if self._uniform:
            n = len(endpoints)
            i = int(r() * n)
            j = int(r() * (n - 1))
            if j >= i:
                j += 1
            return endpoints[i], endpoints[j]
        total = self._total
        return (
            endpoints[_weighted_index(endpoints, total, self.rnd)],
            endpoints[_weighted_index(endpoints, total, self.rnd)],
        )

    def pick(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        if len(endpoints) == 1:
            return endpoints[0]
        fallback: Endpoint | None = None
        for _ in range(max(1, self.max_effort)):
            a, b = self._two(endpoints)
            if b.load * a.weight < a.load * b.weight:
                a, b = b, a
            if a.available:
                return a
            if b.available:
                return b
            fallback = a
        assert fallback is not None
        return fallback


class RoundRobin:
    """Smooth weighted round robin: each endpoint gets its weight's share, interleaved."""

    def __init__(self, max_effort: int = 5) -> None:
        self.max_effort = max_effort
        self._current: dict[int, float] = {}

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        keep = {id(e) for e in endpoints}
        self._current = {k: v for k, v in self._current.items() if k in keep}

    def _next(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        total = 0.0
        best: Endpoint | None = None
        best_w = 0.0
        cur = self._current
        for e in endpoints:
            w = cur.get(id(e), 0.0) + e.weight
            cur[id(e)] = w
            total += e.weight
            if best is None or w > best_w:
                best, best_w = e, w
        assert best is not None
        cur[id(best)] = best_w - total
        return best

    def pick(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        if len(endpoints) == 1:
            return endpoints[0]
        first = None
        for _ in range(max(1, self.max_effort)):
            e = self._next(endpoints)
            if e.available:
                return e
            first = first or e
        assert first is not None
        return first
