"""The one exception root of linkpy and its branches.

Every error linkpy raises on purpose is a :class:`LinkpyError`.  Below it:

- :class:`ConfigError` -- a bad config file, reported with the YAML path before any
  socket opens.
- :class:`NamingError` -- the name algebra: parse errors, binding depth, unknown
  namers, names that bind to nothing.
- :class:`ProtocolError` -- a peer (or we) broke HTTP; ``Local``/``Remote`` say who.
- :class:`RoutingError` -- a request that linkpy could not route; each carries the
  HTTP status Linkerd answers with and the text that goes into ``l5d-err``.

Transport errors (trio's) are translated into these in one place,
``linkpy.transport.errors``.
"""

from __future__ import annotations


class LinkpyError(Exception):
    """Root of every error linkpy raises on purpose."""


class ConfigError(LinkpyError):
    """A config file that cannot be loaded.

    ``path`` is the YAML path of the offending value (``routers[0].servers[1].port``),
    empty when the error concerns the whole file.
    """

    def __init__(self, message: str, path: str = "") -> None:
        self.message = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


# --- naming -------------------------------------------------------------------


class NamingError(LinkpyError):
    """An error of the name algebra (paths, trees, dtabs, binding)."""


class ParseError(NamingError, ValueError):
    """A path, name tree, dentry or dtab that does not parse.

    The message is Finagle's, with the offending character in brackets:
    ``label char expected but '^' found at '/foo[^]bar'``.
    """


class BindDepthExceeded(NamingError):
    """Binding followed more than the maximum number of lookups (a dtab loop)."""


class UnknownNamer(NamingError):
    """A ``/$/<name>`` path names no system namer."""


class BindingBudgetExceeded(NamingError):
    """A binding needed more lookups in total than one binding may make."""


# --- protocol -----------------------------------------------------------------


class ProtocolError(LinkpyError):
    """HTTP framing was violated.  ``status_hint`` is the status to answer with."""

    status_hint: int = 400

    def __init__(self, message: str, status_hint: int | None = None) -> None:
        super().__init__(message)
        if status_hint is not None:
            self.status_hint = status_hint


class LocalProtocolError(ProtocolError):
    """We were about to break the protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol."""


# --- routing ------------------------------------------------------------------


class RoutingError(LinkpyError):
    """A request linkpy could not route.

    ``status`` is the HTTP status of the error response, and the message goes into
    the response body and the ``l5d-err`` header.  ``retryable`` says the request
    is known not to have reached any endpoint (``l5d-retryable``).
    """

    status: int = 502
    retryable: bool = False
    #: short metric name for this failure (``failures/<kind>``)
    kind: str = "routing"


class UnidentifiedRequest(RoutingError):
    status = 400
    kind = "unidentified"


class BadRequest(RoutingError):
    status = 400
    kind = "bad_request"


class NoBrokersAvailable(RoutingError):
    """The name bound to nothing (Neg), or to no endpoints."""

    status = 502
    kind = "no_brokers"


class BindingTimeout(RoutingError):
    status = 503
    kind = "binding_timeout"


class BindingFailed(RoutingError):
    status = 502
    kind = "binding_failed"


class ConnectFailed(RoutingError):
    status = 502
    retryable = True
    kind = "connect_failed"


class UpstreamError(RoutingError):
    """The endpoint broke the connection or the protocol mid-request."""

    status = 502
    kind = "upstream"


class RequestTimeout(RoutingError):
    status = 503
    kind = "timeout"


class Overloaded(RoutingError):
    status = 503
    retryable = True
    kind = "overloaded"
