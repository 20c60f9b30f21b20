"""Response classifiers: which responses are failures, and which failures may be retried.

A classifier is a plugin in the ``linkpy.classifiers`` group (the entry name is the
config ``kind``): a config class whose ``mk()`` builds a :class:`Classifier`.  The
classification drives the success metrics, failure accrual and retries, and is written
into the ``l5d-success-class`` response header (``1.0`` success, ``0.0`` failure) so that
an upstream linker reuses it; an ``l5d-success-class`` already on the response (from a
downstream linker) wins over the local classifier, and an ``l5d-retryable: true``
header makes a failure retryable (reference section 7.3).

Exceptions (connection failures, timeouts, broken framing) are failures; they are
retryable under the same method rules as 5XX responses.  Whether a retry can happen also
depends on the request body: Linkerd never retried a chunked body; linkpy retries any
body that fits the service's retry buffer (``retryBufferSize.requestBytes``).
"""

from __future__ import annotations

import abc
from typing import Final, Protocol

import attrs

from ..config.schema import ClassifierConfig

SUCCESS_CLASS: Final = b"l5d-success-class"
RETRYABLE: Final = b"l5d-retryable"

READ_ONLY: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
IDEMPOTENT: Final = READ_ONLY | {b"PUT", b"DELETE"}
ALL_METHODS: Final = IDEMPOTENT | {b"POST", b"PATCH"}


@attrs.frozen
class ResponseClass:
    success: bool
    retryable: bool = False

    @property
    def header(self) -> bytes:
        return b"1.0" if self.success else b"0.0"


SUCCESS: Final = ResponseClass(True)
FAILURE: Final = ResponseClass(False)
RETRYABLE_FAILURE: Final = ResponseClass(False, True)


class Response(Protocol):
    """What a classifier may read of a response beyond its status (headers, trailers)."""

    def header(self, name: bytes) -> bytes | None: ...


class Classifier(abc.ABC):
    """Classifies one exchange (``status`` is None when an exception ended it)."""

    #: Whether the classification needs the end of the response stream (HTTP/2
    #: trailers, as gRPC's status): the h2 router then waits for it, up to the
    #: service's ``classificationTimeoutMs``.
    needs_trailers: bool = False

    @abc.abstractmethod
    def classify(self, method: bytes, status: int | None) -> ResponseClass: ...

    def classify_response(
        self,
        method: bytes,
        status: int | None,
        response: Response | None,
        error: Exception | None,
    ) -> ResponseClass:
        """Classify with the response (or the error that ended the exchange) at hand."""
        return self.classify(method, status)

    def __call__(
        self,
        method: bytes,
        status: int | None,
        *,
        success_class: bytes | None = None,
        retryable_header: bool = False,
        response: Response | None = None,
        error: Exception | None = None,
    ) -> ResponseClass:
        """Classify, honouring ``l5d-success-class`` and ``l5d-retryable`` first."""
        if success_class is not None:
            try:
                value = float(success_class)
            except ValueError:
                value = 0.0
            return SUCCESS if value > 0 else FAILURE
        c = self.classify_response(method, status, response, error)
        if not c.success and not c.retryable and retryable_header:
            return RETRYABLE_FAILURE
        return c


class Http5XX(Classifier):
    """5XX (and exceptions) are failures; retryable for ``methods``."""

    def __init__(self, methods: frozenset[bytes]) -> None:
        self.methods = methods

    def classify(self, method: bytes, status: int | None) -> ResponseClass:
        if status is not None and status < 500:
            return SUCCESS
        if method in self.methods:
            return RETRYABLE_FAILURE
        return FAILURE


class AllSuccessful(Classifier):
    def classify(self, method: bytes, status: int | None) -> ResponseClass:
        return SUCCESS if status is not None else FAILURE


class BuildsClassifier(abc.ABC):
    @abc.abstractmethod
    def mk(self) -> Classifier: ...


@attrs.frozen(kw_only=True)
class NonRetryable5XX(ClassifierConfig, BuildsClassifier):
    """``io.l5d.http.nonRetryable5XX`` (the default): 5XX are failures, never retried."""

    def mk(self) -> Classifier:
        return Http5XX(frozenset())


@attrs.frozen(kw_only=True)
class RetryableRead5XX(ClassifierConfig, BuildsClassifier):
    """``io.l5d.http.retryableRead5XX``: GET, HEAD, OPTIONS and TRACE may be retried."""

    def mk(self) -> Classifier:
        return Http5XX(READ_ONLY)


@attrs.frozen(kw_only=True)
class RetryableIdempotent5XX(ClassifierConfig, BuildsClassifier):
    """``io.l5d.http.retryableIdempotent5XX``: also PUT and DELETE."""

    def mk(self) -> Classifier:
        return Http5XX(IDEMPOTENT)


@attrs.frozen(kw_only=True)
class RetryableAll5XX(ClassifierConfig, BuildsClassifier):
    """``io.l5d.http.retryableAll5XX``: every method, POST and PATCH included."""

    def mk(self) -> Classifier:
        return Http5XX(ALL_METHODS)


@attrs.frozen(kw_only=True)
class AllSuccessfulConfig(ClassifierConfig, BuildsClassifier):
    """``io.l5d.http.allSuccessful``: every response is a success."""

    def mk(self) -> Classifier:
        return AllSuccessful()


DEFAULT: Final = NonRetryable5XX()


def make(config: ClassifierConfig | None) -> Classifier:
    if config is None:
        return DEFAULT.mk()
    if isinstance(config, BuildsClassifier):
        return config.mk()
    raise TypeError(f"{type(config).__name__} does not build a classifier")
