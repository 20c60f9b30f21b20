"""gRPC response classifiers (``io.l5d.h2.grpc.*``, reference section 7.3).

A gRPC call's outcome is the ``grpc-status`` of its trailers (or of its headers, for a
trailers-only response): 0 is success, anything else a failure, retryable when its
code is in the classifier's set.  ``successStatusCodes`` (when given, it must list 0
itself) widens success.  A response without ``grpc-status`` (its stream did not end
within ``classificationTimeoutMs``) is judged by its HTTP status: 2XX success, other
statuses failures (``compliant`` retries 429, 502, 503 and 504).  An exchange ended by
an error (a reset, a lost connection) is a failure; ``alwaysRetryable`` retries it,
``compliant`` retries a stream refused with ``REFUSED_STREAM``.
"""

from __future__ import annotations

from typing import Final

import attrs

from ..config.schema import ClassifierConfig, ConfigValueError
from ..proto.h2 import REFUSED_STREAM
from .classifiers import (
    FAILURE,
    RETRYABLE_FAILURE,
    SUCCESS,
    BuildsClassifier,
    Classifier,
    Response,
    ResponseClass,
)

GRPC_STATUS: Final = b"grpc-status"
UNAVAILABLE: Final = 14
#: HTTP statuses the gRPC spec says a client may retry (compliant classifier).
RETRYABLE_HTTP: Final = frozenset({429, 502, 503, 504})


class GrpcClassifier(Classifier):
    """Success by ``grpc-status``; ``retryable`` codes (None: every failing code)."""

    needs_trailers = True

    def __init__(
        self,
        retryable: frozenset[int] | None,
        success: frozenset[int],
        *,
        retry_errors: bool = False,
        compliant: bool = False,
    ) -> None:
        self.retryable = retryable
        self.success = success
        self.retry_errors = retry_errors
        self.compliant = compliant

    def classify(self, method: bytes, status: int | None) -> ResponseClass:
        return self.classify_response(method, status, None, None)

    def classify_response(
        self,
        method: bytes,
        status: int | None,
        response: Response | None,
        error: Exception | None,
    ) -> ResponseClass:
        if status is None:
            if self.retry_errors:
                return RETRYABLE_FAILURE
            if self.compliant and getattr(error, "code", None) == REFUSED_STREAM:
                return RETRYABLE_FAILURE
            return FAILURE
        raw = response.header(GRPC_STATUS) if response is not None else None
        if raw is not None:
            try:
                code = int(raw)
            except ValueError:
                return FAILURE
            if code in self.success:
                return SUCCESS
            if self.retryable is None or code in self.retryable:
                return RETRYABLE_FAILURE
            return FAILURE
        if 200 <= status < 300:
            return SUCCESS  # the stream goes on: no status yet
        if self.retryable is None or (self.compliant and status in RETRYABLE_HTTP):
            return RETRYABLE_FAILURE
        return FAILURE


def _success(codes: list[int] | None) -> frozenset[int]:
    return frozenset(codes) if codes is not None else frozenset({0})


def _check_success(_: object, attribute: object, value: list[int] | None) -> None:
    if value is not None and 0 not in value:
        raise ConfigValueError("successStatusCodes must list 0 (OK) explicitly")


@attrs.frozen(kw_only=True)
class GrpcDefault(ClassifierConfig, BuildsClassifier):
    """``io.l5d.h2.grpc.default``: only UNAVAILABLE (14) is retryable."""

    successStatusCodes: list[int] | None = attrs.field(default=None, validator=_check_success)

    def mk(self) -> Classifier:
        return GrpcClassifier(frozenset({UNAVAILABLE}), _success(self.successStatusCodes))


@attrs.frozen(kw_only=True)
class GrpcRetryableStatusCodes(ClassifierConfig, BuildsClassifier):
    """``io.l5d.h2.grpc.retryableStatusCodes``: the codes of ``retryableStatusCodes``."""

    retryableStatusCodes: list[int] = attrs.field(factory=list)
    successStatusCodes: list[int] | None = attrs.field(default=None, validator=_check_success)

    def mk(self) -> Classifier:
        return GrpcClassifier(
            frozenset(self.retryableStatusCodes), _success(self.successStatusCodes)
        )


@attrs.frozen(kw_only=True)
class GrpcNeverRetryable(ClassifierConfig, BuildsClassifier):
    """``io.l5d.h2.grpc.neverRetryable``: failures are never retried."""

    successStatusCodes: list[int] | None = attrs.field(default=None, validator=_check_success)

    def mk(self) -> Classifier:
        return GrpcClassifier(frozenset(), _success(self.successStatusCodes))


@attrs.frozen(kw_only=True)
class GrpcAlwaysRetryable(ClassifierConfig, BuildsClassifier):
    """``io.l5d.h2.grpc.alwaysRetryable``: every failure (errors too) may be retried."""

    successStatusCodes: list[int] | None = attrs.field(default=None, validator=_check_success)

    def mk(self) -> Classifier:
        return GrpcClassifier(None, _success(self.successStatusCodes), retry_errors=True)


@attrs.frozen(kw_only=True)
class GrpcCompliant(ClassifierConfig, BuildsClassifier):
    """``io.l5d.h2.grpc.compliant``: UNAVAILABLE, REFUSED_STREAM, HTTP 429/502/503/504."""

    successStatusCodes: list[int] | None = attrs.field(default=None, validator=_check_success)

    def mk(self) -> Classifier:
        return GrpcClassifier(
            frozenset({UNAVAILABLE}), _success(self.successStatusCodes), compliant=True
        )
