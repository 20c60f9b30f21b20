"""Load balancers: pick one endpoint of a client for each request.

Every balancer honours endpoint weights (from the namer: a file line's ``* weight``, a
Consul tag weight) and skips endpoints that are not available (failure accrual marked
them dead), trying at most ``maxEffort`` times before taking the best it saw.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .client import Endpoint


class Balancer(Protocol):
    def pick(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        """Choose an endpoint; ``endpoints`` is never empty."""

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """The endpoint set changed."""

    def observe(self, endpoint: Endpoint, latency: float, success: bool) -> None:
        """A request to ``endpoint`` took ``latency`` seconds."""


def _weighted_index(endpoints: Sequence[Endpoint], total: float, rnd: random.Random) -> int:
    x = rnd.random() * total
    for i, e in enumerate(endpoints):
        x -= e.weight
        if x < 0:
            return i
    return len(endpoints) - 1


class P2C:
    """Power of two choices, least loaded (Finagle's ``p2c``): of two endpoints drawn at
    random (in proportion to their weights), the one with the lower load (requests in
    flight) per weight.

    An endpoint whose latest answer was a failure gets one request at a time: while it
    has one in flight it loses to any endpoint that is not failing.  An endpoint that
    fails fast (connections refused, instant 5XX) has nothing in flight, so pure
    least-loaded sends it every request that compares it until failure accrual removes
    it, and several at once when it fails slower than requests arrive; then more than
    the accrual's ``failures`` reach it.  Once idle it competes as any other, so it is
    never starved, and its first success ends the restriction.
    """

    def __init__(self, max_effort: int = 5, rnd: random.Random | None = None) -> None:
        self.max_effort = max_effort
        self.rnd = rnd or random.Random()
        self._total = 0.0
        self._uniform = True
        #: the endpoints whose latest answer was a failure
        self._failing: set[Endpoint] = set()

    def observe(self, endpoint: Endpoint, latency: float, success: bool) -> None:
        if success:
            self._failing.discard(endpoint)
        else:
            self._failing.add(endpoint)

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._total = sum(e.weight for e in endpoints)
        self._uniform = (
            all(e.weight == endpoints[0].weight for e in endpoints) if endpoints else True
        )
        if self._failing:
            self._failing.intersection_update(endpoints)

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
        failing = self._failing
        for _ in range(max(1, self.max_effort)):
            a, b = self._two(endpoints)
            if failing and (a in failing or b in failing):
                # a failing endpoint with a request in flight loses
                la = math.inf if a.load and a in failing else a.load * b.weight
                lb = math.inf if b.load and b in failing else b.load * a.weight
                if lb < la:
                    a, b = b, a
            elif b.load * a.weight < a.load * b.weight:
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

    def observe(self, endpoint: Endpoint, latency: float, success: bool) -> None:
        pass

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


class PeakEwma(P2C):
    """P2C over a latency-aware cost (Finagle's ``ewma``): the endpoint's peak-sensitive
    exponentially weighted moving average of latency, times its load plus one.

    As Finagle's ``PeakEwma``: a sample above the average replaces it at once (the
    peak); a lower sample pulls it down with the weight of the time since the average
    was last updated (time constant ``decayTimeMs``); and the average also decays
    towards zero while the endpoint is not heard from, at each look, so that an endpoint
    that was slow once and is no longer picked becomes cheap again and is tried (without
    that, one slow answer would keep an endpoint out of the traffic for good, whatever
    its latency since).  An endpoint with requests in flight and no latency history yet
    costs a penalty: it gets one request until its first answer, not every request
    until then.  A failure counts as a slow response (at least twice the current
    average, and 50 ms), so that an endpoint failing fast does not look fast.
    """

    FAILURE_PENALTY = 0.05
    #: the cost of an endpoint with requests in flight and no latency history (Finagle:
    #: ``Long.MaxValue >> 16`` ns, plus the requests in flight)
    NO_HISTORY_PENALTY = float(2**47)

    def __init__(
        self,
        max_effort: int = 5,
        decay: float = 10.0,
        clock: Callable[[], float] | None = None,
        rnd: random.Random | None = None,
    ) -> None:
        super().__init__(max_effort, rnd)
        self.decay = max(decay, 1e-3)
        import time

        self.clock = clock or time.monotonic

    def _update(self, endpoint: Endpoint, latency: float, now: float) -> None:
        """Finagle's ``observe``: the peak, or a pull towards ``latency`` weighted by the
        time since the last update (``latency`` 0 is pure decay)."""
        old = endpoint.latency_ewma
        if latency > old:
            endpoint.latency_ewma = latency
        elif old:
            w = math.exp(-max(0.0, now - endpoint.latency_stamp) / self.decay)
            endpoint.latency_ewma = old * w + latency * (1 - w)
        endpoint.latency_stamp = now

    def observe(self, endpoint: Endpoint, latency: float, success: bool) -> None:
        now = self.clock()
        if not success:
            self._update(endpoint, 0.0, now)  # the average as of now
            latency = max(latency, 2 * endpoint.latency_ewma, self.FAILURE_PENALTY)
        self._update(endpoint, latency, now)

    def cost(self, e: Endpoint) -> float:
        self._update(e, 0.0, self.clock())  # decay since the last look
        if e.latency_ewma == 0.0:
            return self.NO_HISTORY_PENALTY + e.load / e.weight if e.load else 0.0
        return e.latency_ewma * (e.load + 1) / e.weight

    def pick(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        if len(endpoints) == 1:
            return endpoints[0]
        fallback: Endpoint | None = None
        cost = self.cost
        for _ in range(max(1, self.max_effort)):
            a, b = self._two(endpoints)
            if cost(b) < cost(a):
                a, b = b, a
            if a.available:
                return a
            if b.available:
                return b
            fallback = a
        assert fallback is not None
        return fallback


class Heap:
    """The least loaded endpoint (load per weight), ties broken in turn."""

    def __init__(self) -> None:
        self._turn = 0

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        pass

    def observe(self, endpoint: Endpoint, latency: float, success: bool) -> None:
        pass

    def pick(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        self._turn += 1
        n = len(endpoints)
        best: Endpoint | None = None
        best_cost = 0.0
        for k in range(n):
            e = endpoints[(self._turn + k) % n]
            if not e.available:
                continue
            c = e.load / e.weight
            if best is None or c < best_cost:
                best, best_cost = e, c
        return best if best is not None else endpoints[self._turn % n]


class Aperture(P2C):
    """P2C least-loaded over a window (the aperture) of the endpoints.

    The aperture starts at ``minAperture`` and grows when the average load per endpoint
    in it (smoothed over ``smoothWindowMs``) exceeds ``highLoad``, shrinking when it falls
    under ``lowLoad``.  Each client orders its endpoints at random, so different linkers
    spread over different subsets.
    """

    def __init__(
        self,
        max_effort: int = 5,
        smooth_window: float = 5.0,
        low_load: float = 0.5,
        high_load: float = 2.0,
        min_aperture: int = 1,
        clock: Callable[[], float] | None = None,
        rnd: random.Random | None = None,
    ) -> None:
        super().__init__(max_effort, rnd)
        import time

        self.clock = clock or time.monotonic
        self.smooth_window = max(smooth_window, 1e-3)
        self.low = low_load
        self.high = high_load
        self.min_aperture = max(1, min_aperture)
        self.aperture = self.min_aperture
        self.order: list[Endpoint] = []
        self.avg_load = 0.0
        self.stamp = self.clock()

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        kept = [e for e in self.order if e in endpoints]
        new = [e for e in endpoints if e not in kept]
        self.rnd.shuffle(new)
        self.order = kept + new
        self.aperture = max(self.min_aperture, min(self.aperture, len(self.order)))
        super().update(self.order[: self.aperture])

    def _adjust(self) -> None:
        window = self.order[: self.aperture]
        if not window:
            return
        load = sum(e.load for e in window) / len(window)
        now = self.clock()
        w = math.exp(-(now - self.stamp) / self.smooth_window)
        self.stamp = now
        self.avg_load = self.avg_load * w + load * (1 - w)
        if self.avg_load > self.high and self.aperture < len(self.order):
            self.aperture += 1
            super().update(self.order[: self.aperture])
        elif self.avg_load < self.low and self.aperture > self.min_aperture:
            self.aperture -= 1
            super().update(self.order[: self.aperture])

    def pick(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        if len(self.order) != len(endpoints):
            self.update(endpoints)
        self._adjust()
        window = self.order[: self.aperture]
        if not any(e.available for e in window):
            window = self.order  # nothing alive in the aperture: look at them all
        return super().pick(window)
