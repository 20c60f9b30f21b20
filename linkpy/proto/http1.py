"""HTTP/1.1 message framing: bytes in, events out; heads in, bytes out.  No I/O.

The parsing is llhttp's (through httptools).  A parser is fed the bytes read from a
connection and appends events to its ``events`` list (a list, not a deque: it holds
a few events at a time, and an empty deque costs 760 bytes per connection):

- ``(HEAD, RequestHead | ResponseHead)`` when a message head is complete,
- ``(DATA, bytes)`` for each piece of (de-chunked) body,
- ``(END, trailers)`` when the message is complete (``trailers`` is a list of header
  pairs, or None),
- ``(UPGRADE, bytes)`` when the head asked for a protocol switch (``Upgrade`` or
  ``CONNECT``): the bytes that followed the head belong to the new protocol.

Heads carry the header list as sent (original case) plus the few facts a proxy needs
(framing, keep-alive, ``Expect``, ``Host``), extracted while parsing so that the router
never scans headers twice.  Limits on the request line and on the header block give
414 and 431, as ``maxInitialLineKB`` and ``maxHeadersKB`` do in Linkerd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import httptools

from ..errors import RemoteProtocolError

HEAD: Final = 0
DATA: Final = 1
END: Final = 2
UPGRADE: Final = 3

Headers = list[tuple[bytes, bytes]]
Event = tuple[int, object]

#: Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


_ORDINARY = (
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Accept-Ranges",
    "Access-Control-Allow-Origin",
    "Age",
    "Authorization",
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Type",
    "Cookie",
    "Date",
    "ETag",
    "Expires",
    "If-Modified-Since",
    "If-None-Match",
    "Last-Modified",
    "Location",
    "Origin",
    "Pragma",
    "Referer",
    "Server",
    "Set-Cookie",
    "Strict-Transport-Security",
    "User-Agent",
    "Vary",
    "X-Content-Type-Options",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Frame-Options",
    "X-Request-Id",
)
#: Common header names, as they are usually spelled, that neither the parsers nor the
#: router look at (not hop-by-hop, not framing, not Host, Via or l5d-*): such a header
#: is kept as it is without lowering its name.  A name the ``Connection`` header lists
#: is still dropped (the router checks those first).
ORDINARY_NAMES: Final = frozenset(
    [n.encode() for n in _ORDINARY] + [n.lower().encode() for n in _ORDINARY]
)


class TooLarge(RemoteProtocolError):
    """A request line or header block over its limit."""


def quiet_bytes(max_headers: int) -> int:
    """The most bytes of a head that cannot hold over ``max_headers`` of headers.

    The parsers count a header as ``len(name) + len(value) + 4``, at most one byte
    more than its line ("n:v\r\n", and llhttp drops the blanks around the value);
    a line has at least four bytes, so the count is at most 5/4 of the head's bytes.
    """
    return max_headers * 4 // 5


def header_bytes(headers: Headers) -> int:
    """The size the parsers count for ``headers``."""
    return sum(len(k) + len(v) + 4 for k, v in headers)


#: the usual values of Connection (and Transfer-Encoding), and their tokens
_ONE_TOKEN: Final = {
    v: v.lower()
    for v in (b"keep-alive", b"Keep-Alive", b"close", b"Close", b"upgrade", b"Upgrade", b"chunked")
}


def _tokens(value: bytes) -> list[bytes]:
    token = _ONE_TOKEN.get(value)
    if token is not None:
        return [token]
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


class RequestHead:
    """A request's head.  ``headers`` is mutable: the router edits it in place."""

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "host",
        "content_length",
        "chunked",
        "keep_alive",
        "expect_continue",
        "connection_tokens",
        "has_l5d",
        "has_trace",
        "has_via",
        "upgrade",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        version: bytes = b"1.1",
    ) -> None:
        """A head made by hand (the parser sets every slot itself)."""
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.host: bytes | None = None
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = version == b"1.1"
        self.expect_continue = False
        self.connection_tokens: list[bytes] = []
        #: an l5d-* or dtab-local header is present
        self.has_l5d = False
        #: a trace context header (l5d-ctx-trace, l5d-sample, x-b3-*) is present
        self.has_trace = False
        #: a Via header is present
        self.has_via = False
        self.upgrade = False
        for k, _ in headers:  # what get() relies on
            lk = k.lower()
            if lk[:4] == b"l5d-" or lk == b"dtab-local":
                self.has_l5d = True
            elif lk == b"via":
                self.has_via = True

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    # get and get_all answer the lookups of most requests (Via, l5d-*) from the flags,
    # without a scan: the flags say what the parser saw, set() keeps them true, and
    # the router's edits of ``headers`` only remove headers.

    def get(self, name: bytes) -> bytes | None:
        """The first value of a header (``name`` in lower case)."""
        if (not self.has_via and name == b"via") or (not self.has_l5d and name[:4] == b"l5d-"):
            return None
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def get_all(self, name: bytes) -> list[bytes]:
        """Every value of a header (``name`` in lower case), in order."""
        if (not self.has_via and name == b"via") or (not self.has_l5d and name[:4] == b"l5d-"):
            return []
        return [v for k, v in self.headers if k.lower() == name]

    def remove(self, name: bytes) -> None:
        self.headers[:] = [(k, v) for k, v in self.headers if k.lower() != name]

    def set(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        self.headers[:] = [(k, v) for k, v in self.headers if k.lower() != lname]
        self.headers.append((name, value))
        if lname[:4] == b"l5d-" or lname == b"dtab-local":
            self.has_l5d = True
        elif lname == b"via":
            self.has_via = True

    def __repr__(self) -> str:
        return f"<RequestHead {self.method.decode()} {self.target!r} HTTP/{self.version.decode()}>"


class ResponseHead:
    __slots__ = (
        "status",
        "reason",
        "version",
        "headers",
        "content_length",
        "chunked",
        "keep_alive",
        "connection_tokens",
        "has_l5d",
    )

    def __init__(
        self,
        status: int,
        headers: Headers,
        reason: bytes = b"",
        version: bytes = b"1.1",
        has_l5d: bool = True,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = version == b"1.1"
        self.connection_tokens: list[bytes] = []
        #: an l5d-* header may be present (False: the parser saw none)
        self.has_l5d = has_l5d

    def get(self, name: bytes) -> bytes | None:
        """The first value of a header (``name`` in lower case)."""
        if not self.has_l5d and name[:4] == b"l5d-":
            return None  # (the answer of most lookups: l5d-success-class, l5d-retryable)
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def set(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        self.headers[:] = [(k, v) for k, v in self.headers if k.lower() != lname]
        self.headers.append((name, value))
        if lname[:4] == b"l5d-":
            self.has_l5d = True

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status}>"


#: the versions of heads, made once
_VERSIONS: Final = {"1.1": b"1.1", "1.0": b"1.0"}


def _parse_length(value: bytes) -> int:
    v = value.strip()
    if not v.isdigit() or len(v) > 18:
        raise RemoteProtocolError("invalid Content-Length")
    return int(v)


class RequestParser:
    """Parses the requests of one downstream connection (pipelining included)."""

    __slots__ = (
        "_p",
        "events",
        "_url",
        "_headers",
        "_trailers",
        "_in_head",
        "_head_fed",
        "_header_bytes",
        "_counting",
        "_head",
        "max_line",
        "max_headers",
        "_quiet",
        "_host",
        "_length",
        "_chunked",
        "_expect",
        "_conn",
        "_l5d",
        "_trace",
        "_via",
        "_upgrade",
        "at_rest",
    )

    def __init__(self, max_line: int = 4096, max_headers: int = 8192) -> None:
        self.max_line = max_line
        self.max_headers = max_headers
        #: a head of at most this many bytes cannot hold max_headers of headers
        self._quiet = quiet_bytes(max_headers)
        #: whether on_header counts the head's header bytes (see feed)
        self._counting = False
        self.events: list[Event] = []
        self._p = httptools.HttpRequestParser(self)
        self.on_message_begin()  # (the state of a message: none has begun yet)
        self._in_head = False
        #: Between two requests: no message parsed in part, no upgrade, no error (the
        #: parser could go on with another connection's requests).
        self.at_rest = True

    # -- httptools callbacks --------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_fed = 0
        self.at_rest = False
        self._url = b""
        self._headers: Headers = []
        self._trailers: Headers | None = None
        self._header_bytes = 0
        self._head: RequestHead | None = None
        self._host: bytes | None = None
        self._length: int | None = None
        self._chunked = False
        self._expect = False
        self._conn: list[bytes] = []
        self._l5d = False
        self._trace = False
        self._via = False
        self._upgrade = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.max_line:
            raise TooLarge("request line too long", 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head is not None:  # a trailer of a chunked body
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name, value))
            return
        if self._counting:
            self._header_bytes += len(name) + len(value) + 4
            if self._header_bytes > self.max_headers:
                raise TooLarge("request headers too large", 431)
        self._headers.append((name, value))
        if name in ORDINARY_NAMES:
            return
        lname = name.lower()
        if lname == b"host":
            self._host = value
        elif lname == b"content-length":
            length = _parse_length(value)
            if self._length is not None and self._length != length:
                raise RemoteProtocolError("conflicting Content-Length headers")
            self._length = length
        elif lname == b"transfer-encoding":
            self._chunked = _tokens(value)[-1:] == [b"chunked"]
        elif lname == b"connection":
            self._conn.extend(_tokens(value))
        elif lname == b"expect":
            self._expect = value.strip().lower() == b"100-continue"
        elif lname == b"upgrade":
            self._upgrade = True
        elif lname[:4] == b"l5d-":
            self._l5d = True
            if lname == b"l5d-ctx-trace" or lname == b"l5d-sample":
                self._trace = True
        elif lname[:5] == b"x-b3-":
            self._trace = True
        elif lname == b"via":
            self._via = True
        elif lname == b"dtab-local":  # Finagle's context header: clearContext strips it
            self._l5d = True

    def on_headers_complete(self) -> None:
        p = self._p
        v = p.get_http_version()
        # every slot set once, without RequestHead.__init__'s defaults and scan
        head = RequestHead.__new__(RequestHead)
        head.method = p.get_method()
        head.target = self._url
        head.version = _VERSIONS.get(v) or v.encode()
        head.headers = self._headers
        head.host = self._host
        head.chunked = chunked = self._chunked
        head.content_length = None if chunked else self._length
        head.keep_alive = p.should_keep_alive()
        head.expect_continue = self._expect
        head.connection_tokens = self._conn
        head.has_l5d = self._l5d
        head.has_trace = self._trace
        head.has_via = self._via
        head.upgrade = self._upgrade
        self._head = head
        self._in_head = False
        self.events.append((HEAD, head))

    def on_body(self, body: bytes) -> None:
        self.events.append((DATA, body))

    def on_message_complete(self) -> None:
        self.events.append((END, self._trailers))
        # llhttp parses no message after one that does not keep the connection alive
        head = self._head
        self.at_rest = head is not None and head.keep_alive

    # -- feeding --------------------------------------------------------------

    def feed(self, data: bytes | bytearray) -> None:
        """Parse ``data``; raises :class:`RemoteProtocolError` (with a status hint)."""
        # The headers' size is counted only while the head could be over the limit:
        # this head's bytes so far (an over-estimate), this chunk included.
        counting = (self._head_fed if self._in_head else 0) + len(data) > self._quiet
        if counting and not self._counting and self._head is None:
            self._header_bytes = header_bytes(self._headers)
        self._counting = counting
        try:
            self._p.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.at_rest = False
            offset = e.args[0] if e.args else len(data)
            self.events.append((UPGRADE, bytes(data[offset:])))
        except httptools.HttpParserCallbackError as e:
            self.at_rest = False
            if isinstance(e.__context__, RemoteProtocolError):
                raise e.__context__ from None
            raise RemoteProtocolError(f"bad request: {e}") from None
        except httptools.HttpParserError as e:
            self.at_rest = False
            raise RemoteProtocolError(f"bad request: {e}") from None
        if self._in_head:
            # llhttp buffers a header it has not finished: bound what we feed it
            self._head_fed += len(data)
            if self._head_fed > self.max_line + self.max_headers + 4096:
                raise TooLarge("request head too large", 431)


class ResponseParser:
    """Parses the responses on one upstream connection.

    ``expect_head_response()`` must be called before the response to a HEAD request:
    its head completes it (whatever its framing headers say), and the parser cannot be
    used afterwards (the connection is re-used with a new parser).
    """

    __slots__ = (
        "_p",
        "events",
        "_headers",
        "_trailers",
        "_reason",
        "_head",
        "_length",
        "_chunked",
        "_conn",
        "_l5d",
        "_head_only",
        "done",
        "max_headers",
        "_quiet",
        "_header_bytes",
        "_counting",
        "_in_head",
        "_head_fed",
    )

    def __init__(self, max_headers: int = 65536) -> None:
        self.max_headers = max_headers
        self._quiet = quiet_bytes(max_headers)
        self._counting = False
        self.events: list[Event] = []
        self._p = httptools.HttpResponseParser(self)
        self._head_only = False
        self.done = False
        self.on_message_begin()  # (the state of a message: none has begun yet)
        #: a head is being parsed (and _head_fed: how many bytes were fed while it
        #: was, at least its own)
        self._in_head = False

    def expect_head_response(self) -> None:
        self._head_only = True

    def on_message_begin(self) -> None:
        self._headers: Headers = []
        self._trailers: Headers | None = None
        self._reason = b""
        self._head: ResponseHead | None = None
        self._length: int | None = None
        self._chunked = False
        self._conn: list[bytes] | None = None  # (made for a Connection header)
        self._l5d = False
        self._header_bytes = 0
        self._in_head = True
        self._head_fed = 0

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head is not None:
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name, value))
            return
        if self._counting:
            self._header_bytes += len(name) + len(value) + 4
            if self._header_bytes > self.max_headers:
                raise RemoteProtocolError("response headers too large", 502)
        self._headers.append((name, value))
        if name in ORDINARY_NAMES:
            return
        lname = name.lower()
        if lname == b"content-length":
            self._length = _parse_length(value)
        elif lname == b"transfer-encoding":
            self._chunked = _tokens(value)[-1:] == [b"chunked"]
        elif lname == b"connection":
            if self._conn is None:
                self._conn = _tokens(value)
            else:
                self._conn.extend(_tokens(value))
        elif lname[:4] == b"l5d-":
            self._l5d = True

    def on_headers_complete(self) -> None:
        p = self._p
        v = p.get_http_version()
        # every slot set once, without ResponseHead.__init__'s defaults
        head = ResponseHead.__new__(ResponseHead)
        head.status = status = p.get_status_code()
        head.reason = self._reason
        head.version = _VERSIONS.get(v) or v.encode()
        head.headers = self._headers
        head.chunked = chunked = self._chunked
        head.content_length = None if chunked else self._length
        head.keep_alive = p.should_keep_alive()
        head.connection_tokens = [] if self._conn is None else self._conn
        head.has_l5d = self._l5d
        self._head = head
        self._in_head = False
        self.events.append((HEAD, head))
        if self._head_only and status >= 200:
            self.events.append((END, None))
            self.done = True

    def on_body(self, body: bytes) -> None:
        if not self.done:
            self.events.append((DATA, body))

    def on_message_complete(self) -> None:
        if not self.done:
            self.events.append((END, self._trailers))

    def feed(self, data: bytes | bytearray) -> None:
        if self.done:
            raise RemoteProtocolError("data after a HEAD response", 502)
        # (as RequestParser.feed)
        counting = (self._head_fed if self._in_head else 0) + len(data) > self._quiet
        if counting and not self._counting and self._head is None:
            self._header_bytes = header_bytes(self._headers)
        self._counting = counting
        try:
            self._p.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            offset = e.args[0] if e.args else len(data)
            self.events.append((UPGRADE, bytes(data[offset:])))
        except httptools.HttpParserCallbackError as e:
            if isinstance(e.__context__, RemoteProtocolError):
                raise e.__context__ from None
            raise RemoteProtocolError(f"bad response: {e}", 502) from None
        except httptools.HttpParserError as e:
            raise RemoteProtocolError(f"bad response: {e}", 502) from None
        if self._in_head:
            # llhttp buffers a header it has not finished: bound what we feed it
            self._head_fed += len(data)
            if self._head_fed > self.max_headers + 8192:
                raise RemoteProtocolError("response head too large", 502)

    def eof(self) -> None:
        """The connection closed: completes a body delimited by the close."""
        head = self._head
        if (
            head is not None
            and not self.done
            and not head.chunked
            and head.content_length is None
            and (not self.events or self.events[-1][0] != END)
            and body_allowed(head.status)
        ):
            self.events.append((END, None))
            return
        raise RemoteProtocolError("connection closed before the response was complete", 502)

    @property
    def close_delimited(self) -> bool:
        head = self._head
        return (
            head is not None
            and not head.chunked
            and head.content_length is None
            and body_allowed(head.status)
            and not self._head_only
        )


def body_allowed(status: int) -> bool:
    return status >= 200 and status != 204 and status != 304


# --- serialization ----------------------------------------------------------------


def request_head_bytes(head: RequestHead, extra: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    parts = [head.method, b" ", head.target, b" HTTP/1.1\r\n"]
    for k, v in head.headers:
        parts += (k, b": ", v, b"\r\n")
    for k, v in extra:
        parts += (k, b": ", v, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


_STATUS_LINES: dict[int, bytes] = {}
#: the lines of the (status, reason) pairs seen, up to a bound
_REASON_LINES: dict[tuple[int, bytes], bytes] = {}


def status_line(status: int, reason: bytes = b"") -> bytes:
    if not reason:
        line = _STATUS_LINES.get(status)
        if line is None:
            line = b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))
            _STATUS_LINES[status] = line
        return line
    key = (status, reason)
    line = _REASON_LINES.get(key)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % key
        if len(_REASON_LINES) < 1000:
            _REASON_LINES[key] = line
    return line


def response_head_bytes(head: ResponseHead, extra: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    parts = [status_line(head.status, head.reason)]
    for k, v in head.headers:
        parts += (k, b": ", v, b"\r\n")
    for k, v in extra:
        parts += (k, b": ", v, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def last_chunk(trailers: Headers | None = None) -> bytes:
    if not trailers:
        return b"0\r\n\r\n"
    return b"0\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in trailers) + b"\r\n"


def not_forwarded(connection_tokens: list[bytes]) -> frozenset[bytes]:
    """The (lower-case) names of the headers a proxy drops: the hop-by-hop ones, and
    those the ``Connection`` header names."""
    if not connection_tokens or (
        len(connection_tokens) == 1 and connection_tokens[0] in HOP_BY_HOP
    ):
        return HOP_BY_HOP  # (no set made for the usual "Connection: keep-alive")
    return HOP_BY_HOP.union(connection_tokens)


def strip_hop_by_hop(headers: Headers, connection_tokens: list[bytes]) -> Headers:
    """The headers without hop-by-hop ones (and those ``Connection`` names)."""
    drop = not_forwarded(connection_tokens)
    return [(k, v) for k, v in headers if k.lower() not in drop]


REASONS: Final[dict[int, bytes]] = {
    100: b"Continue",
    101: b"Switching Protocols",
    103: b"Early Hints",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    206: b"Partial Content",
    301: b"Moved Permanently",
    302: b"Found",
    304: b"Not Modified",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    411: b"Length Required",
    413: b"Content Too Large",
    414: b"URI Too Long",
    415: b"Unsupported Media Type",
    417: b"Expectation Failed",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
