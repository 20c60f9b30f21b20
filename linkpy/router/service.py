"""The service stack of a logical name: total timeout, retries with a budget, classification.

Protocol-independent: the HTTP/1.1 and HTTP/2 routers give :meth:`Service.call` a
function that makes one attempt at a target (a bound name picked for this attempt) and
returns an :class:`Attempt` holding the response head (not yet streamed) or raises a
:class:`~linkpy.errors.RoutingError`.  The service classifies each attempt, records it
for the endpoint's failure accrual and the balancer, and retries retryable failures
while the request can be replayed, the retry budget allows and the total timeout has
time left; each retry may go to another branch of the name's union, as in Linkerd.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Final, Protocol

import trio

from ..config.schema import ServiceParams
from ..errors import RequestTimeout, RoutingError
from ..metrics import Scope
from ..naming import Path
from . import classifiers
from .client import Client, Endpoint, run_clock
from .resilience import RetryBudget, backoff, constant

DEFAULT_RETRY_BUFFER = 16383

#: What a ``with`` enters when a timeout is not set: nothing.  (A cancel scope costs on
#: every request; this one object is entered again and again.)
NO_SCOPE: Final[AbstractContextManager[None]] = nullcontext()


class Attempt(Protocol):
    """What one attempt produced, enough to classify it."""

    status: int
    client: Client
    endpoint: Endpoint
    probe: bool
    started: float
    #: seconds from ``started`` to the attempt's classification (set by the service)
    latency: float
    #: False if the response has no ``l5d-*`` header: the service then does not look
    #: for ``l5d-success-class`` and ``l5d-retryable``
    l5d: bool

    def header(self, name: bytes) -> bytes | None: ...

    def discard(self) -> None:
        """Drop this response (a retry follows): release or close its connection."""


class Service:
    """Parameters and state of one logical name (``rt/<router>/service/<name>``)."""

    def __init__(self, path: Path, params: ServiceParams, metrics: Scope) -> None:
        self.path = path
        self.params = params
        self.metrics = metrics
        self.classifier = classifiers.make(params.responseClassifier)
        retries = params.retries
        #: the time of attempts (the clients' clock: see :func:`run_clock`)
        self.clock = run_clock()
        self.budget = RetryBudget(retries.budget if retries else None, self.clock)
        self.backoffs: Callable[[], Iterator[float]] = backoff(
            retries.backoff if retries else None, default=lambda: constant(0.0)
        )
        self.total_timeout = (
            params.totalTimeoutMs / 1000.0 if params.totalTimeoutMs is not None else None
        )
        buffers = params.retryBufferSize
        self.retry_buffer = buffers.requestBytes if buffers else DEFAULT_RETRY_BUFFER
        self.requests = metrics.counter("requests")
        self.success = metrics.counter("success")
        self.failures = metrics.counter("failures")
        self.latency = metrics.stat("request_latency_ms")
        #: calls waiting for their response (attempts, retries and backoffs included)
        self.pending = 0
        metrics.gauge("pending", fn=lambda: float(self.pending))
        retries_scope = metrics.scope("retries")
        self.retries_total = retries_scope.counter("total")
        self.retries_per_request = retries_scope.stat("per_request")
        self.budget_exhausted = retries_scope.counter("budget_exhausted")
        retries_scope.gauge("budget", fn=lambda: self.budget.balance)

    async def call(
        self,
        method: bytes,
        replayable: bool | Callable[[], bool],
        attempt: Callable[[], Awaitable[Attempt]],
    ) -> tuple[Attempt, classifiers.ResponseClass]:
        """Attempts until a response that is final; raises the last failure.

        ``replayable``: whether the request can be sent again, or a function that
        tells (an HTTP/2 body streams while attempts are made, and stops being
        replayable once it outgrows the retry buffer).
        """
        self.budget.deposit()
        retries = 0
        delays: Iterator[float] | None = None  # (made on the first retry)
        self.pending += 1
        try:
            timeout = self.total_timeout
            with trio.fail_after(timeout) if timeout is not None else NO_SCOPE:
                while True:
                    try:
                        result = await attempt()
                    except RoutingError as e:
                        # (the attempt recorded the failure against its endpoint)
                        cls = self.classifier(method, None, error=e)
                        if not (cls.retryable and _replayable(replayable) and self._may_retry()):
                            raise
                    else:
                        if result.l5d:
                            cls = self.classifier(
                                method,
                                result.status,
                                success_class=result.header(classifiers.SUCCESS_CLASS),
                                retryable_header=result.header(classifiers.RETRYABLE) == b"true",
                                response=result,
                            )
                        else:
                            cls = self.classifier(method, result.status, response=result)
                        latency = result.latency = self.clock() - result.started
                        result.client.record(result.endpoint, latency, cls.success, result.probe)
                        if cls.success or not (
                            cls.retryable and _replayable(replayable) and self._may_retry()
                        ):
                            return result, cls
                        result.discard()
                    retries += 1
                    self.retries_total.incr()
                    if delays is None:
                        delays = self.backoffs()
                    delay = next(delays)
                    if delay > 0:
                        await trio.sleep(delay)
        except trio.TooSlowError:
            raise RequestTimeout(
                f"exceeded {self.params.totalTimeoutMs}ms total timeout for {self.path.show()}"
            ) from None
        finally:
            self.pending -= 1
            self.retries_per_request.add(retries)

    def close(self) -> None:
        self.metrics.remove()

    def _may_retry(self) -> bool:
        if self.budget.try_withdraw():
            return True
        self.budget_exhausted.incr()
        return False


def _replayable(replayable: bool | Callable[[], bool]) -> bool:
    return replayable() if callable(replayable) else replayable
