"""Failure accrual, retry budgets, backoffs, the service stack and the balancers, on
virtual time (autojump_clock) or a scripted clock: every transition at an exact time."""

from __future__ import annotations

import itertools
import random

import pytest
import trio

from linkpy.config.schema import (
    Backoff,
    Budget,
    FailureAccrualConfig,
    RetriesConfig,
    ServiceParams,
)
from linkpy.errors import ConnectFailed, RequestTimeout
from linkpy.metrics import Metrics
from linkpy.naming import AddrBound, Address, Path
from linkpy.router.balancers import Aperture, Heap, PeakEwma
from linkpy.router.classifiers import (
    AllSuccessfulConfig,
    NonRetryable5XX,
    RetryableAll5XX,
    RetryableIdempotent5XX,
    RetryableRead5XX,
)
from linkpy.router.client import Client, Endpoint
from linkpy.router.resilience import (
    Accrual,
    AccrualMetrics,
    ConsecutiveFailures,
    RetryBudget,
    SuccessRate,
    SuccessRateWindowed,
    backoff,
    constant,
    decorrelated_jittered,
    equal_jittered,
    policy,
)
from linkpy.router.service import Service


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- failure accrual ------------------------------------------------------------------


def accrual(p: object, clock: Clock, delays: list[float]) -> tuple[Accrual, AccrualMetrics]:
    metrics = AccrualMetrics(Metrics().scope("c"))
    acc = Accrual(p, lambda: iter(delays), clock, metrics, None)  # type: ignore[arg-type]
    return acc, metrics


def is_dead(acc: Accrual) -> bool:
    return acc.dead


def test_consecutive_failures_kill_probe_and_revive() -> None:
    clock = Clock()
    acc, m = accrual(ConsecutiveFailures(3), clock, [5.0, 10.0, 20.0])
    for _ in range(2):
        acc.record(False, probe=False)
    acc.record(True, probe=False)  # a success resets the run
    for _ in range(2):
        acc.record(False, probe=False)
    assert acc.check()
    acc.record(False, probe=False)
    assert acc.dead and m.removals.value == 1
    assert not acc.check()
    clock.now = 4.999
    assert not acc.check()
    clock.now = 5.0
    assert acc.check()  # probe open
    assert acc.started()  # the probe goes out
    assert not acc.check()  # one probe at a time
    acc.record(False, probe=True)  # the probe fails: dead again, next backoff
    assert acc.dead and acc.until == 15.0
    clock.now = 15.0
    assert acc.check() and acc.started()
    acc.record(True, probe=True)
    assert not is_dead(acc)
    assert m.revivals.value == 1 and m.probes.value == 2
    assert m.removed_for_ms.value == 15000


def test_success_rate_policy() -> None:
    p = SuccessRate(0.9, requests=10)
    outcomes = [True] * 10 + [False] * 3
    assert [p.record(o) for o in outcomes][-1]
    p.revived()
    assert not p.record(False)  # too few requests since revival


def test_windowed_success_rate_policy() -> None:
    clock = Clock()
    p = SuccessRateWindowed(0.5, 10.0, clock)
    for _ in range(4):
        assert not p.record(False)  # fewer than 5 requests
    assert p.record(False)
    clock.now = 100.0  # the window forgot them
    assert not p.record(False)


def test_policy_from_config() -> None:
    clock = Clock()
    assert isinstance(policy(None, clock), ConsecutiveFailures)
    assert policy(FailureAccrualConfig(kind="none"), clock) is None
    p = policy(FailureAccrualConfig(kind="io.l5d.consecutiveFailures", failures=2), clock)
    assert isinstance(p, ConsecutiveFailures) and p.failures == 2
    assert isinstance(
        policy(FailureAccrualConfig(kind="io.l5d.successRate", successRate=0.9, requests=5), clock),
        SuccessRate,
    )


def test_backoffs() -> None:
    assert list(itertools.islice(constant(0.5), 3)) == [0.5, 0.5, 0.5]
    rnd = random.Random(7)
    delays = list(itertools.islice(decorrelated_jittered(0.01, 1.0, rnd), 100))
    assert all(0.01 <= d <= 1.0 for d in delays)
    eq = list(itertools.islice(equal_jittered(5.0, 300.0, random.Random(1)), 12))
    assert 2.5 <= eq[0] <= 5.0
    assert all(d <= 300.0 for d in eq) and max(eq) >= 150.0
    make = backoff(Backoff(kind="jittered", minMs=10, maxMs=100), default=lambda: constant(0))
    assert all(0.01 <= d <= 0.1 for d in itertools.islice(make(), 50))
    make = backoff(Backoff(kind="constant", ms=250), default=lambda: constant(0))
    assert next(make()) == 0.25


def test_retry_budget() -> None:
    clock = Clock()
    budget = RetryBudget(Budget(minRetriesPerSec=0, percentCanRetry=0.5, ttlSecs=10), clock)
    assert not budget.try_withdraw()
    for _ in range(4):
        budget.deposit()
    assert budget.try_withdraw() and budget.try_withdraw()
    assert not budget.try_withdraw()
    for _ in range(4):
        budget.deposit()
    clock.now = 11.0  # the deposits expired
    assert not budget.try_withdraw()
    reserve = RetryBudget(Budget(minRetriesPerSec=1, percentCanRetry=0.0, ttlSecs=3), clock)
    assert [reserve.try_withdraw() for _ in range(4)] == [True, True, True, False]


# --- classifiers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "method", "status", "success", "retryable"),
    [
        (NonRetryable5XX(), b"GET", 500, False, False),
        (NonRetryable5XX(), b"GET", 404, True, False),
        (RetryableRead5XX(), b"GET", 503, False, True),
        (RetryableRead5XX(), b"PUT", 503, False, False),
        (RetryableIdempotent5XX(), b"PUT", 502, False, True),
        (RetryableIdempotent5XX(), b"POST", 502, False, False),
        (RetryableAll5XX(), b"POST", 500, False, True),
        (RetryableRead5XX(), b"GET", None, False, True),  # an exception
        (AllSuccessfulConfig(), b"GET", 500, True, False),
    ],
)
def test_classifiers(
    config: object, method: bytes, status: int | None, success: bool, retryable: bool
) -> None:
    c = config.mk()  # type: ignore[attr-defined]
    cls = c(method, status)
    assert (cls.success, cls.retryable) == (success, retryable)


def test_success_class_and_retryable_headers_win() -> None:
    c = NonRetryable5XX().mk()
    assert c(b"GET", 500, success_class=b"1.0").success
    assert not c(b"GET", 200, success_class=b"0.0").success
    assert c(b"POST", 500, retryable_header=True).retryable


# --- the service stack ------------------------------------------------------------


class FakeAttempt:
    """What one attempt at a scripted status produced."""

    def __init__(self, status: int, client: Client) -> None:
        self.status = status
        self.client = client
        self.endpoint = client.endpoints[0]
        self.probe = False
        self.started = trio.current_time()
        self.latency = 0.0
        self.l5d = True  # (header() is asked, and has nothing)
        self.discarded = False

    def header(self, name: bytes) -> bytes | None:
        return None

    def discard(self) -> None:
        self.discarded = True


def one_client() -> Client:
    return Client("c", AddrBound([Address("127.0.0.1", 1)]), Metrics().scope("c"))


def service(**params: object) -> Service:
    return Service(Path.read("/svc/x"), ServiceParams(**params), Metrics().scope("s"))  # type: ignore[arg-type]


async def test_retries_with_constant_backoff_at_exact_times(autojump_clock: object) -> None:
    svc = service(
        responseClassifier=RetryableRead5XX(),
        retries=RetriesConfig(backoff=Backoff(kind="constant", ms=100)),
    )
    client = one_client()
    times: list[float] = []
    statuses = iter([503, 503, 200])

    async def attempt() -> FakeAttempt:
        times.append(trio.current_time())
        return FakeAttempt(next(statuses), client)

    result, cls = await svc.call(b"GET", True, attempt)
    assert result.status == 200 and cls.success
    assert times == pytest.approx([0.0, 0.1, 0.2])
    assert svc.retries_total.value == 2


async def test_non_retryable_and_unreplayable_are_not_retried(autojump_clock: object) -> None:
    svc = service(responseClassifier=RetryableRead5XX())
    client = one_client()
    calls = 0

    async def attempt() -> FakeAttempt:
        nonlocal calls
        calls += 1
        return FakeAttempt(503, client)

    result, cls = await svc.call(b"POST", True, attempt)
    assert result.status == 503 and not cls.success and calls == 1
    result, cls = await svc.call(b"GET", False, attempt)  # the body cannot be sent again
    assert calls == 2


async def test_retry_budget_stops_a_storm(autojump_clock: object) -> None:
    svc = service(
        responseClassifier=RetryableRead5XX(),
        retries=RetriesConfig(budget=Budget(minRetriesPerSec=0, percentCanRetry=0.2, ttlSecs=10)),
    )
    client = one_client()

    async def attempt() -> FakeAttempt:
        return FakeAttempt(500, client)

    for _ in range(100):
        await svc.call(b"GET", True, attempt)
    assert svc.retries_total.value <= 20
    assert svc.budget_exhausted.value >= 80


async def test_total_timeout_fires_at_the_exact_virtual_time(autojump_clock: object) -> None:
    svc = service(totalTimeoutMs=500)
    client = one_client()

    async def slow() -> FakeAttempt:
        await trio.sleep(10)
        return FakeAttempt(200, client)

    with pytest.raises(RequestTimeout, match="exceeded 500ms total timeout for /svc/x"):
        await svc.call(b"GET", True, slow)
    assert trio.current_time() == pytest.approx(0.5)


async def test_total_timeout_covers_retries(autojump_clock: object) -> None:
    svc = service(
        totalTimeoutMs=1000,
        responseClassifier=RetryableRead5XX(),
        retries=RetriesConfig(backoff=Backoff(kind="constant", ms=300)),
    )
    client = one_client()
    times: list[float] = []

    async def failing() -> FakeAttempt:
        times.append(trio.current_time())
        return FakeAttempt(503, client)

    with pytest.raises(RequestTimeout):
        await svc.call(b"GET", True, failing)
    assert times == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert trio.current_time() == pytest.approx(1.0)


async def test_exceptions_are_retried_by_method(autojump_clock: object) -> None:
    svc = service(responseClassifier=RetryableIdempotent5XX())
    client = one_client()
    outcomes: list[object] = [ConnectFailed("refused"), FakeAttempt(200, client)]

    async def attempt() -> FakeAttempt:
        o = outcomes.pop(0)
        if isinstance(o, Exception):
            raise o
        return o  # type: ignore[return-value]

    result, _ = await svc.call(b"PUT", True, attempt)
    assert result.status == 200
    outcomes[:] = [ConnectFailed("refused")]
    with pytest.raises(ConnectFailed):
        await svc.call(b"POST", True, attempt)


# --- balancers ----------------------------------------------------------------------


def endpoints(n: int, client: Client | None = None) -> list[Endpoint]:
    c = client or Client(
        "c", AddrBound([Address("127.0.0.1", 1000 + i) for i in range(n)]), Metrics().scope("c")
    )
    return c.endpoints


def test_peak_ewma_avoids_a_slow_endpoint() -> None:
    clock = Clock()
    lb = PeakEwma(decay=10.0, clock=clock, rnd=random.Random(3))
    eps = endpoints(5)
    lb.update(eps)
    slow = eps[0]
    for _ in range(50):
        clock.now += 0.01
        for e in eps:
            lb.observe(e, 2.0 if e is slow else 0.01, True)
    picks = [lb.pick(eps) for _ in range(1000)]
    assert picks.count(slow) == 0
    # the peak decays: once fast again, its cost comes back to the others'
    for _ in range(200):
        clock.now += 1.0
        for e in eps:
            lb.observe(e, 0.01, True)
    assert slow.latency_ewma == pytest.approx(0.01, rel=0.01)
    for e in eps[1:]:
        e.load = 1  # and then the least loaded wins again
    assert all(lb.pick(eps) in (slow, *eps[1:]) for _ in range(10))
    assert slow in {lb.pick(eps) for _ in range(200)}


def test_peak_ewma_penalises_failing_fast() -> None:
    clock = Clock()
    lb = PeakEwma(clock=clock, rnd=random.Random(4))
    a, b = endpoints(2)
    lb.update([a, b])
    lb.observe(a, 0.001, False)
    lb.observe(b, 0.010, True)
    assert lb.cost(a) > lb.cost(b)


def test_heap_picks_the_least_loaded() -> None:
    eps = endpoints(3)
    eps[0].load, eps[1].load, eps[2].load = 5, 1, 3
    lb = Heap()
    assert all(lb.pick(eps) is eps[1] for _ in range(10))
    eps[1].available = False
    assert lb.pick(eps) is eps[2]


def test_aperture_grows_under_load_and_shrinks_when_idle() -> None:
    clock = Clock()
    eps = endpoints(8)
    lb = Aperture(
        smooth_window=1.0,
        low_load=0.5,
        high_load=2.0,
        min_aperture=1,
        clock=clock,
        rnd=random.Random(5),
    )
    lb.update(eps)
    assert lb.aperture == 1
    for e in eps:
        e.load = 10
    for _ in range(20):
        clock.now += 1.0
        lb.pick(eps)
    assert lb.aperture == 8
    for e in eps:
        e.load = 0
    for _ in range(20):
        clock.now += 1.0
        lb.pick(eps)
    assert lb.aperture == 1
    picked = {lb.pick(eps) for _ in range(50)}
    assert len(picked) == 1  # only the aperture's endpoint
