"""Failure accrual, retry budgets and backoffs (reference sections 6.2, 6.3, 7.1, 7.2).

Time comes from a clock function (trio's in the router), so that tests drive these
with ``autojump_clock`` and every transition happens at an exact virtual time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Final

from ..config.schema import Backoff, Budget, FailureAccrualConfig
from ..metrics import Scope

Clock = Callable[[], float]

# --- backoffs -----------------------------------------------------------------------


def constant(seconds: float) -> Iterator[float]:
    while True:
        yield seconds


def decorrelated_jittered(
    low: float, high: float, rnd: random.Random | None = None
) -> Iterator[float]:
    """Finagle's ``Backoff.decorrelatedJittered``: each delay in [low, 3 * previous], capped."""
    r = rnd or random.Random()
    prev = low
    while True:
        nxt = min(high, r.uniform(low, max(low, prev * 3)))
        prev = nxt
        yield nxt


def equal_jittered(low: float, high: float, rnd: random.Random | None = None) -> Iterator[float]:
    """Finagle's ``Backoff.equalJittered``: exponential from ``low``, half of it random."""
    r = rnd or random.Random()
    d = low
    while True:
        yield min(high, d / 2 + r.uniform(0, d / 2))
        d = min(high, d * 2)


#: Failure accrual's default backoff: equal jittered from 5 s to 300 s (Finagle's).
DEFAULT_ACCRUAL_BACKOFF: Final = (5.0, 300.0)


def backoff(
    cfg: Backoff | None, *, default: Callable[[], Iterator[float]]
) -> Callable[[], Iterator[float]]:
    """A factory of delay sequences for a ``backoff`` config object."""
    if cfg is None:
        return default
    if cfg.kind == "jittered":
        low = (cfg.minMs or 0) / 1000.0
        high = (cfg.maxMs or 0) / 1000.0
        return lambda: decorrelated_jittered(low, high)
    seconds = cfg.ms / 1000.0
    return lambda: constant(seconds)


# --- retry budgets --------------------------------------------------------------------


class WindowedCounter:
    """A sum over the last ``window`` seconds, kept in ``slices`` buckets."""

    __slots__ = ("window", "slice", "clock", "buckets", "starts", "_i", "_start", "_end")

    def __init__(self, window: float, clock: Clock, slices: int = 10) -> None:
        self.window = max(window, 1e-3)
        self.slice = self.window / slices
        self.clock = clock
        self.buckets = [0.0] * slices
        self.starts = [float("-inf")] * slices
        #: the bucket of the last add, and when its slice starts and ends
        self._i = 0
        self._start = self._end = float("-inf")

    def add(self, amount: float) -> None:
        now = self.clock()
        if self._start <= now < self._end:  # the last add's slice
            self.buckets[self._i] += amount
            return
        tick = int(now // self.slice)
        i = tick % len(self.buckets)
        start = tick * self.slice
        if self.starts[i] != start:  # the bucket held an older slice
            self.buckets[i] = 0.0
            self.starts[i] = start
        self.buckets[i] += amount
        self._i = i
        self._start = start
        self._end = start + self.slice

    def sum(self) -> float:
        horizon = self.clock() - self.window
        return sum(b for b, t in zip(self.buckets, self.starts, strict=True) if t > horizon)


class RetryBudget:
    """Finagle's token retry budget.

    Every request deposits ``percentCanRetry`` of a token; a retry withdraws one token.
    Deposits expire after ``ttlSecs``; a reserve of ``minRetriesPerSec * ttlSecs``
    tokens lets low-traffic services retry too.
    """

    def __init__(self, cfg: Budget | None, clock: Clock) -> None:
        cfg = cfg or Budget()
        self.percent = cfg.percentCanRetry
        self.reserve = cfg.minRetriesPerSec * cfg.ttlSecs
        self.bucket = WindowedCounter(float(cfg.ttlSecs), clock)

    def deposit(self) -> None:
        if self.percent:
            self.bucket.add(self.percent)

    def try_withdraw(self) -> bool:
        if self.bucket.sum() + self.reserve >= 1.0:
            self.bucket.add(-1.0)
            return True
        return False

    @property
    def balance(self) -> float:
        return max(0.0, self.bucket.sum() + self.reserve)


# --- failure accrual -----------------------------------------------------------------


class Policy:
    """Decides when an endpoint is dead, from the outcomes of its requests."""

    def record(self, success: bool) -> bool:
        """Record an outcome; True means: mark the endpoint dead now."""
        return False

    def revived(self) -> None:
        """The endpoint came back: forget its history."""


class ConsecutiveFailures(Policy):
    def __init__(self, failures: int) -> None:
        self.failures = max(1, failures)
        self.run = 0

    def record(self, success: bool) -> bool:
        if success:
            self.run = 0
            return False
        self.run += 1
        return self.run >= self.failures

    def revived(self) -> None:
        self.run = 0


class SuccessRate(Policy):
    """Dead when the success rate over about the last ``requests`` requests (an EWMA)
    falls below ``rate``."""

    def __init__(self, rate: float, requests: int) -> None:
        self.rate = rate
        self.requests = max(1, requests)
        self.alpha = 2.0 / (self.requests + 1)
        self.ewma = 1.0
        self.seen = 0

    def record(self, success: bool) -> bool:
        self.ewma += self.alpha * ((1.0 if success else 0.0) - self.ewma)
        self.seen += 1
        return self.seen >= self.requests and self.ewma < self.rate

    def revived(self) -> None:
        self.ewma = 1.0
        self.seen = 0


class SuccessRateWindowed(Policy):
    """Dead when the success rate over the last ``window`` seconds falls below ``rate``
    (with at least 5 requests in the window)."""

    MIN_REQUESTS: Final = 5

    def __init__(self, rate: float, window: float, clock: Clock) -> None:
        self.rate = rate
        self.ok = WindowedCounter(window, clock)
        self.all = WindowedCounter(window, clock)

    def record(self, success: bool) -> bool:
        self.all.add(1)
        if success:
            self.ok.add(1)
        total = self.all.sum()
        return total >= self.MIN_REQUESTS and self.ok.sum() / total < self.rate

    def revived(self) -> None:
        self.ok = WindowedCounter(self.ok.window, self.ok.clock)
        self.all = WindowedCounter(self.all.window, self.all.clock)


def policy(cfg: FailureAccrualConfig | None, clock: Clock) -> Policy | None:
    """The policy a config asks for (None: no failure accrual)."""
    if cfg is None:
        return ConsecutiveFailures(5)
    if cfg.kind == "none":
        return None
    if cfg.kind == "io.l5d.successRate":
        return SuccessRate(
            cfg.successRate if cfg.successRate is not None else 0.8, cfg.requests or 100
        )
    if cfg.kind == "io.l5d.successRateWindowed":
        return SuccessRateWindowed(
            cfg.successRate if cfg.successRate is not None else 0.8, float(cfg.window or 30), clock
        )
    return ConsecutiveFailures(cfg.failures if cfg.failures is not None else 5)


class AccrualMetrics:
    __slots__ = ("removals", "revivals", "probes", "removed_for_ms")

    def __init__(self, scope: Scope) -> None:
        s = scope.scope("failure_accrual")
        self.removals = s.counter("removals")
        self.revivals = s.counter("revivals")
        self.probes = s.counter("probes")
        self.removed_for_ms = s.counter("removed_for_ms")


ALIVE: Final = 0
DEAD: Final = 1
PROBE_OPEN: Final = 2
PROBING: Final = 3


class Accrual:
    """The failure-accrual state of one endpoint.

    Alive until its policy says dead; dead endpoints leave the balancer until their
    backoff has passed; then one request (the probe) is let through: success revives the
    endpoint, failure kills it again for the next (longer) backoff.
    """

    __slots__ = (
        "policy",
        "backoffs",
        "delays",
        "state",
        "until",
        "since",
        "clock",
        "metrics",
        "endpoint",
    )

    def __init__(
        self,
        policy: Policy,
        backoffs: Callable[[], Iterator[float]],
        clock: Clock,
        metrics: AccrualMetrics,
        endpoint: object,
    ) -> None:
        self.policy = policy
        self.backoffs = backoffs
        self.delays: Iterator[float] = backoffs()
        self.state = ALIVE
        self.until = 0.0
        self.since = 0.0
        self.clock = clock
        self.metrics = metrics
        self.endpoint = endpoint

    def check(self) -> bool:
        """Move a dead endpoint whose backoff is over to probe-open; True if available."""
        if self.state == DEAD and self.clock() >= self.until:
            self.state = PROBE_OPEN
        return self.state == ALIVE or self.state == PROBE_OPEN

    def started(self) -> bool:
        """A request is sent to the endpoint; True if it is the probe."""
        if self.state == PROBE_OPEN:
            self.state = PROBING
            self.metrics.probes.incr()
            return True
        return False

    def record(self, success: bool, probe: bool) -> None:
        if probe:
            if success:
                self._revive()
            else:
                self._kill()
            return
        if self.state != ALIVE:
            return  # a request the balancer had to send to a dead endpoint
        if self.policy.record(success):
            self._kill()

    def record_dead(self) -> None:
        """Mark the endpoint dead now (``failFast``)."""
        self._kill()

    def _kill(self) -> None:
        now = self.clock()
        if self.state == ALIVE:
            self.metrics.removals.incr()
            self.since = now
        self.state = DEAD
        self.until = now + next(self.delays)

    def _revive(self) -> None:
        self.metrics.revivals.incr()
        self.metrics.removed_for_ms.incr(int((self.clock() - self.since) * 1000))
        self.state = ALIVE
        self.policy.revived()
        self.delays = self.backoffs()

    @property
    def dead(self) -> bool:
        return self.state != ALIVE

    def describe(self) -> str:
        return {ALIVE: "alive", DEAD: "dead", PROBE_OPEN: "probe", PROBING: "probing"}[self.state]
